// One request through a proxy with undici's ProxyAgent (run by the matrix).
//
//   UNDICI=/path/to/node_modules/undici node undiciclient.js URL PROXY_URL [--ca FILE]
//
// ProxyAgent takes the credentials from the proxy URL (it percent-decodes them
// and sends Basic preemptively); it tunnels every request with CONNECT, plain
// HTTP too, and treats a non-200 CONNECT answer as an error. Prints
// STATUS <code> or ERROR <code>: <message>.
"use strict";
const fs = require("fs");
const { ProxyAgent, request } = require(process.env.UNDICI);

const args = process.argv.slice(2);
let ca;
const caAt = args.indexOf("--ca");
if (caAt >= 0) { ca = fs.readFileSync(args[caAt + 1]); args.splice(caAt, 2); }
const [target, proxyUrl] = args;
const dispatcher = new ProxyAgent({ uri: proxyUrl, requestTls: ca ? { ca } : undefined });
setTimeout(() => { console.log("ERROR Timeout: no answer in 20 s"); process.exit(1); }, 20000).unref();
request(target, { dispatcher })
  .then(async (res) => { await res.body.text(); console.log(`STATUS ${res.statusCode}`); process.exit(0); })
  .catch((e) => {
    const cause = e.cause ? ` (${e.cause.message})` : "";
    console.log(`ERROR ${e.code || e.name}: ${e.message}${cause}`);
    process.exit(1);
  });
