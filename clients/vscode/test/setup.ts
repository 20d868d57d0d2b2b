// Loaded with `node --require` before the tests: `require("vscode")` gets the mock.

import * as path from "path";

// eslint-disable-next-line @typescript-eslint/no-require-imports
const Module = require("module") as {
  _resolveFilename: (request: string, ...rest: unknown[]) => string;
};
const mockPath = path.join(__dirname, "mock", "vscode.js");
const original = Module._resolveFilename;
Module._resolveFilename = function (request: string, ...rest: unknown[]): string {
  if (request === "vscode") {
    return mockPath;
  }
  return original.call(this, request, ...rest);
};
