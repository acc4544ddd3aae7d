// Command-line helper shared by the matrix's Node clients (nodeclient.js, undiciclient.js).
"use strict";
const fs = require("fs");

// The contents of the file given after `name` (e.g. --ca FILE), removed from args; undefined without it.
exports.takeFile = (args, name) => {
  const at = args.indexOf(name);
  if (at < 0) return undefined;
  const value = fs.readFileSync(args[at + 1]);
  args.splice(at, 2);
  return value;
};
