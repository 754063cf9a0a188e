// Runs a WASI command module the way Morel does: the input file on stdin, stdout to a file.
// Usage: node run_wasi.mjs MODULE.wasm STDIN_FILE STDOUT_FILE   (exit code = the module's)
import fs from "node:fs";
import { WASI } from "node:wasi";

const [modulePath, stdinPath, stdoutPath] = process.argv.slice(2);
const stdin = fs.openSync(stdinPath, "r");
const stdout = fs.openSync(stdoutPath, "w");
const wasi = new WASI({
  version: "preview1",
  args: ["function"],
  env: {},
  stdin,
  stdout,
  stderr: 2,
  returnOnExit: true,
});
const module = await WebAssembly.compile(fs.readFileSync(modulePath));
const instance = await WebAssembly.instantiate(module, wasi.getImportObject());
const code = wasi.start(instance);
fs.closeSync(stdout);
process.exit(code);
