// Morel's AssemblyScript entry (generated; compiled next to the user's main.ts).
//
// The user writes `export function handle(input: string): string` (JSON text in, JSON text
// out). This file adapts it to Morel's core ABI, the only exports of the module:
//   memory
//   alloc(len: i32) -> i32               a buffer of `len` bytes for the host to write the input into
//   handle(ptr: i32, len: i32) -> i64    (out_ptr << 32) | out_len of the UTF-8 output
// Both buffers stay reachable from the globals below, so the garbage collector keeps them
// (and never moves them) until the next call.
import { handle as userHandle } from "./main";

let input: ArrayBuffer | null = null;
let output: ArrayBuffer | null = null;

export function alloc(len: i32): i32 {
  if (len < 0) unreachable();
  const buffer = new ArrayBuffer(len);
  input = buffer;
  return changetype<i32>(buffer);
}

export function handle(ptr: i32, len: i32): i64 {
  const text = String.UTF8.decodeUnsafe(<usize>ptr, <usize>len);
  input = null;
  const bytes = String.UTF8.encode(userHandle(text));
  output = bytes;
  return (i64(changetype<u32>(bytes)) << 32) | i64(u32(bytes.byteLength));
}
