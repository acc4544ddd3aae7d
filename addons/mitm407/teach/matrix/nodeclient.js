// One request through a proxy with Node's built-in http module (run by the matrix).
//
//   node nodeclient.js URL PROXY_PORT [USER PASSWORD] [--ca FILE] [--proxy-ca FILE]
//
// node:http has no proxy support of its own: like most Node code without a
// proxy library, this sends the request in absolute form (plain HTTP) or opens
// a CONNECT tunnel (HTTPS) itself, with a Proxy-Authorization header built from
// the credentials as Buffer.from(`${user}:${password}`) (UTF-8). It never
// answers a 407: whatever the proxy says is printed as STATUS <code>.
// --proxy-ca: TLS to the proxy itself, which such code does by opening the
// proxy connection with node:https instead of node:http (trusting that CA).
"use strict";
const http = require("http");
const https = require("https");
const tls = require("tls");
const { takeFile } = require("./nodeargs");

const args = process.argv.slice(2);
const ca = takeFile(args, "--ca");
const proxyCa = takeFile(args, "--proxy-ca");
const toProxy = proxyCa ? (options) => https.request({ ...options, ca: proxyCa }) : http.request;
const [target, proxyPort, user, password] = args;
const url = new URL(target);
const headers = {};
if (user !== undefined) {
  headers["Proxy-Authorization"] = "Basic " + Buffer.from(`${user}:${password}`).toString("base64");
}
const done = (line, code) => { console.log(line); process.exit(code); };
const fail = (e) => done(`ERROR ${e.code || e.name}: ${e.message}`, 1);
setTimeout(() => done("ERROR Timeout: no answer in 20 s", 1), 20000).unref();

if (url.protocol === "http:") {
  const req = toProxy({ host: "127.0.0.1", port: proxyPort, path: target, headers: { ...headers, Host: url.host } });
  req.on("response", (res) => { res.resume(); res.on("end", () => done(`STATUS ${res.statusCode}`, 0)); });
  req.on("error", fail);
  req.end();
} else {
  const req = toProxy({ host: "127.0.0.1", port: proxyPort, method: "CONNECT", path: url.host, headers });
  req.on("connect", (res, socket) => {
    if (res.statusCode !== 200) { socket.destroy(); return done(`STATUS ${res.statusCode}`, 0); }
    const secure = tls.connect({ socket, ca, servername: undefined, host: url.hostname }, () => {
      secure.write(`GET ${url.pathname} HTTP/1.1\r\nHost: ${url.host}\r\nConnection: close\r\n\r\n`);
    });
    let head = "";
    secure.on("data", (chunk) => { head += chunk.toString("latin1"); });
    secure.on("end", () => done(`STATUS ${head.split(" ")[1]}`, 0));
    secure.on("error", fail);
  });
  req.on("error", fail);
  req.end();
}
