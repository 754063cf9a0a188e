// Calls a core-ABI module (exports memory, alloc(len) -> ptr, handle(ptr, len) -> i64 packing
// (out_ptr << 32) | out_len) with no imports at all, once per input file, in one instance.
// Prints a JSON report: {"exports": [...], "outputs": [...]}.
// Usage: node run_core.mjs MODULE.wasm INPUT_FILE...
import fs from "node:fs";

const [modulePath, ...inputPaths] = process.argv.slice(2);
const module = await WebAssembly.compile(fs.readFileSync(modulePath));
const imports = WebAssembly.Module.imports(module);
if (imports.length > 0) {
  throw new Error(`a core-ABI module must import nothing, found ${JSON.stringify(imports)}`);
}
const { exports } = await WebAssembly.instantiate(module, {});
const outputs = [];
for (const path of inputPaths) {
  const input = fs.readFileSync(path);
  const ptr = exports.alloc(input.length);
  new Uint8Array(exports.memory.buffer, ptr, input.length).set(input);
  const packed = BigInt.asUintN(64, exports.handle(ptr, input.length));
  const outPtr = Number(packed >> 32n);
  const outLen = Number(packed & 0xffffffffn);
  const bytes = new Uint8Array(exports.memory.buffer, outPtr, outLen);
  outputs.push(new TextDecoder("utf-8", { fatal: true }).decode(bytes));
}
const exportNames = WebAssembly.Module.exports(module).map((e) => `${e.kind}:${e.name}`).sort();
process.stdout.write(JSON.stringify({ exports: exportNames, outputs }));
