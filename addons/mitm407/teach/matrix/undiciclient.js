// One request through a proxy with undici's ProxyAgent (run by the matrix).
//
//   UNDICI=/path/to/node_modules/undici node undiciclient.js URL PROXY_URL [--ca FILE] [--proxy-ca FILE]
//
// ProxyAgent takes the credentials from the proxy URL (it percent-decodes them
// and sends Basic preemptively); it tunnels every request with CONNECT, plain
// HTTP too, and treats a non-200 CONNECT answer as an error. Prints
// STATUS <code> or ERROR <code>: <message>. An https:// PROXY_URL is TLS to the
// proxy itself, verified with --proxy-ca (ProxyAgent's proxyTls option).
"use strict";
const { takeFile } = require("./nodeargs");
const { ProxyAgent, request } = require(process.env.UNDICI);

const args = process.argv.slice(2);
const ca = takeFile(args, "--ca");
const proxyCa = takeFile(args, "--proxy-ca");
const [target, proxyUrl] = args;
const dispatcher = new ProxyAgent({
  uri: proxyUrl,
  requestTls: ca ? { ca } : undefined,
  proxyTls: proxyCa ? { ca: proxyCa } : undefined,
});
setTimeout(() => { console.log("ERROR Timeout: no answer in 20 s"); process.exit(1); }, 20000).unref();
request(target, { dispatcher })
  .then(async (res) => { await res.body.text(); console.log(`STATUS ${res.statusCode}`); process.exit(0); })
  .catch((e) => {
    const cause = e.cause ? ` (${e.cause.message})` : "";
    console.log(`ERROR ${e.code || e.name}: ${e.message}${cause}`);
    process.exit(1);
  });
