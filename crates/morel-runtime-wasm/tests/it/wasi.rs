//! WASI command guests: stdin in, stdout out, exit codes, and what the sandbox withholds.

use morel_runtime_wasm::{Abi, WasmError};

use crate::{GENEROUS, call, engine, load};

const FD_READ: &str = r#"(import "wasi_snapshot_preview1" "fd_read" (func $fd_read (param i32 i32 i32 i32) (result i32)))"#;
const FD_WRITE: &str = r#"(import "wasi_snapshot_preview1" "fd_write" (func $fd_write (param i32 i32 i32 i32) (result i32)))"#;
const PROC_EXIT: &str =
    r#"(import "wasi_snapshot_preview1" "proc_exit" (func $proc_exit (param i32)))"#;

/// Reads all of stdin to offset 1024, writes "note from the guest\n" to stderr, then
/// writes everything read to stdout. Iovec at 0, byte counts at 8.
fn echo_guest() -> String {
    format!(
        r#"(module
  {FD_READ}
  {FD_WRITE}
  (memory (export "memory") 1)
  (data (i32.const 16) "note from the guest\n")
  (func (export "_start")
    (local $total i32) (local $n i32)
    (block $eof
      (loop $more
        (i32.store (i32.const 0) (i32.add (i32.const 1024) (local.get $total)))
        (i32.store (i32.const 4) (i32.sub (i32.const 60000) (local.get $total)))
        (if (call $fd_read (i32.const 0) (i32.const 0) (i32.const 1) (i32.const 8))
          (then (unreachable)))
        (local.set $n (i32.load (i32.const 8)))
        (br_if $eof (i32.eqz (local.get $n)))
        (local.set $total (i32.add (local.get $total) (local.get $n)))
        (br $more)))
    (i32.store (i32.const 0) (i32.const 16))
    (i32.store (i32.const 4) (i32.const 20))
    (drop (call $fd_write (i32.const 2) (i32.const 0) (i32.const 1) (i32.const 8)))
    (i32.store (i32.const 0) (i32.const 1024))
    (i32.store (i32.const 4) (local.get $total))
    (drop (call $fd_write (i32.const 1) (i32.const 0) (i32.const 1) (i32.const 8)))))"#
    )
}

/// Writes `text` (ASCII, no quotes needing escapes beyond `\"`) to stdout, then `exit_call`.
fn print_then(text: &str, exit_call: &str) -> String {
    format!(
        r#"(module
  {FD_WRITE}
  {PROC_EXIT}
  (memory (export "memory") 1)
  (data (i32.const 100) "{text}")
  (func (export "_start")
    (i32.store (i32.const 0) (i32.const 100))
    (i32.store (i32.const 4) (i32.const {len}))
    (drop (call $fd_write (i32.const 1) (i32.const 0) (i32.const 1) (i32.const 8)))
    {exit_call}))"#,
        len = text.replace("\\\"", "\"").len()
    )
}

#[tokio::test]
async fn wasi_echo_reads_stdin_and_writes_stdout() {
    let dir = tempfile::tempdir().unwrap();
    let engine = engine(dir.path());
    let module = load(&engine, &echo_guest());
    assert_eq!(module.abi(), Abi::WasiCommand);
    let input = r#"{"items":["a","b"],"n":42}"#;
    assert_eq!(call(&engine, &module, input).await.unwrap(), input);

    let done = engine.invoke(&module, b"[]", GENEROUS).await.unwrap();
    assert_eq!(done.output, b"[]");
    assert_eq!(done.stderr, "note from the guest\n");
}

#[tokio::test]
async fn wasi_output_must_be_json() {
    let dir = tempfile::tempdir().unwrap();
    let engine = engine(dir.path());
    let module = load(&engine, &echo_guest());
    let err = call(&engine, &module, "not json").await.unwrap_err();
    assert!(
        matches!(&err, WasmError::BadOutput(msg) if msg.starts_with("output is not JSON")),
        "{err:?}"
    );
}

#[tokio::test]
async fn nonzero_exit_fails_with_the_code() {
    let dir = tempfile::tempdir().unwrap();
    let engine = engine(dir.path());
    let module = load(
        &engine,
        &print_then("{}", "(call $proc_exit (i32.const 3))"),
    );
    let err = call(&engine, &module, "").await.unwrap_err();
    assert!(matches!(err, WasmError::Exit { code: 3, .. }), "{err:?}");
    assert_eq!(err.status(), "FAILED");
}

#[tokio::test]
async fn exit_zero_is_success() {
    let dir = tempfile::tempdir().unwrap();
    let engine = engine(dir.path());
    let module = load(
        &engine,
        &print_then(
            r#"{\"ok\":true}"#,
            "(call $proc_exit (i32.const 0)) (unreachable)",
        ),
    );
    assert_eq!(call(&engine, &module, "").await.unwrap(), r#"{"ok":true}"#);
}

#[tokio::test]
async fn wasi_traps_carry_stderr() {
    let dir = tempfile::tempdir().unwrap();
    let engine = engine(dir.path());
    let wat = format!(
        r#"(module
  {FD_WRITE}
  (memory (export "memory") 1)
  (data (i32.const 100) "panicked at lib.rs:7")
  (func (export "_start")
    (i32.store (i32.const 0) (i32.const 100))
    (i32.store (i32.const 4) (i32.const 20))
    (drop (call $fd_write (i32.const 2) (i32.const 0) (i32.const 1) (i32.const 8)))
    (unreachable)))"#
    );
    let module = load(&engine, &wat);
    let err = call(&engine, &module, "").await.unwrap_err();
    let WasmError::Trap(msg) = &err else {
        panic!("{err:?}")
    };
    assert!(msg.contains("unreachable"), "{msg}");
    assert!(msg.contains("panicked at lib.rs:7"), "{msg}");
}

#[tokio::test]
async fn guests_get_no_files_env_or_extra_args() {
    // Outputs `[argc, envc, errno of fd_prestat_get(3)]` as single digits.
    let wat = r#"(module
  (import "wasi_snapshot_preview1" "args_sizes_get" (func $args (param i32 i32) (result i32)))
  (import "wasi_snapshot_preview1" "environ_sizes_get" (func $env (param i32 i32) (result i32)))
  (import "wasi_snapshot_preview1" "fd_prestat_get" (func $prestat (param i32 i32) (result i32)))
  (import "wasi_snapshot_preview1" "fd_write" (func $fd_write (param i32 i32 i32 i32) (result i32)))
  (memory (export "memory") 1)
  (data (i32.const 100) "[0,0,0]")
  (func $digit (param $at i32) (param $value i32)
    (i32.store8 (local.get $at) (i32.add (i32.const 48) (local.get $value))))
  (func (export "_start")
    (drop (call $args (i32.const 200) (i32.const 204)))
    (drop (call $env (i32.const 208) (i32.const 212)))
    (call $digit (i32.const 101) (i32.load (i32.const 200)))
    (call $digit (i32.const 103) (i32.load (i32.const 208)))
    (call $digit (i32.const 105) (call $prestat (i32.const 3) (i32.const 216)))
    (i32.store (i32.const 0) (i32.const 100))
    (i32.store (i32.const 4) (i32.const 7))
    (drop (call $fd_write (i32.const 1) (i32.const 0) (i32.const 1) (i32.const 8)))))"#;
    let dir = tempfile::tempdir().unwrap();
    let engine = engine(dir.path());
    let module = load(&engine, wat);
    // One argument (the program name), no environment, fd 3 is not a preopen (EBADF = 8).
    assert_eq!(call(&engine, &module, "").await.unwrap(), "[1,0,8]");
}

#[tokio::test]
async fn guests_cannot_sleep() {
    // poll_oneoff's errno becomes the exit code; ENOTSUP = 58.
    let wat = format!(
        r#"(module
  (import "wasi_snapshot_preview1" "poll_oneoff" (func $poll (param i32 i32 i32 i32) (result i32)))
  {PROC_EXIT}
  (memory (export "memory") 1)
  (func (export "_start")
    (call $proc_exit (call $poll (i32.const 0) (i32.const 64) (i32.const 1) (i32.const 128)))))"#
    );
    let dir = tempfile::tempdir().unwrap();
    let engine = engine(dir.path());
    let module = load(&engine, &wat);
    let err = call(&engine, &module, "").await.unwrap_err();
    assert!(matches!(err, WasmError::Exit { code: 58, .. }), "{err:?}");
}

#[tokio::test]
async fn imports_the_host_lacks_are_named() {
    let dir = tempfile::tempdir().unwrap();
    let engine = engine(dir.path());
    for (module_name, name) in [("env", "foo"), ("wasi_snapshot_preview1", "no_such_call")] {
        let wat = format!(
            r#"(module (import "{module_name}" "{name}" (func)) (memory (export "memory") 1) (func (export "_start")))"#
        );
        let err = engine.load(wat.as_bytes()).unwrap_err();
        assert!(
            matches!(&err, WasmError::UnsupportedImport { module, name: n } if module == module_name && n == name),
            "{err:?}"
        );
    }
}
