//! The core ABI, ABI detection, import checks and output checks.

use std::time::Duration;

use morel_runtime_wasm::{Abi, WasmError};

use crate::{ECHO, GENEROUS, call, core_guest, engine, load};

#[tokio::test]
async fn core_echo_returns_the_input() {
    let dir = tempfile::tempdir().unwrap();
    let engine = engine(dir.path());
    let module = load(&engine, &core_guest(ECHO, ""));
    assert_eq!(module.abi(), Abi::Core);
    let out = call(&engine, &module, r#"{"name":"morel","n":[1,2,3]}"#)
        .await
        .unwrap();
    assert_eq!(out, r#"{"name":"morel","n":[1,2,3]}"#);
}

#[tokio::test]
async fn core_transform_wraps_the_input() {
    // Writes `{"echo":` + input + `}` right after the input and returns that region.
    let body = r#"
    (local $out i32)
    (local.set $out (i32.add (local.get $ptr) (local.get $len)))
    (memory.copy (local.get $out) (i32.const 0) (i32.const 8))
    (memory.copy (i32.add (local.get $out) (i32.const 8)) (local.get $ptr) (local.get $len))
    (i32.store8 (i32.add (i32.add (local.get $out) (i32.const 8)) (local.get $len)) (i32.const 125))
    (i64.or
      (i64.shl (i64.extend_i32_u (local.get $out)) (i64.const 32))
      (i64.extend_i32_u (i32.add (local.get $len) (i32.const 9))))"#;
    let dir = tempfile::tempdir().unwrap();
    let engine = engine(dir.path());
    let module = load(
        &engine,
        &core_guest(body, r#"(data (i32.const 0) "{\"echo\":")"#),
    );
    let out = call(&engine, &module, "[1,\"two\"]").await.unwrap();
    assert_eq!(out, r#"{"echo":[1,"two"]}"#);
}

#[tokio::test]
async fn every_call_gets_a_fresh_instance() {
    // A global counter, incremented per call, returned as one ASCII digit.
    let body = r#"
    (global.set $calls (i32.add (global.get $calls) (i32.const 1)))
    (i64.or (i64.shl (i64.extend_i32_u (global.get $calls)) (i64.const 32)) (i64.const 1))"#;
    let extra = r#"(global $calls (mut i32) (i32.const 0)) (data (i32.const 0) "0123456789")"#;
    let dir = tempfile::tempdir().unwrap();
    let engine = engine(dir.path());
    let module = load(&engine, &core_guest(body, extra));
    for _ in 0..5 {
        assert_eq!(call(&engine, &module, "null").await.unwrap(), "1");
    }
}

#[tokio::test]
async fn binary_and_text_load_to_the_same_module() {
    let dir = tempfile::tempdir().unwrap();
    let engine = engine(dir.path());
    let text = core_guest(ECHO, "");
    let binary = wat::parse_str(&text).unwrap();
    let from_binary = engine.load(&binary).unwrap();
    let from_text = engine.load(text.as_bytes()).unwrap();
    assert_eq!(from_binary.digest(), from_text.digest());
    assert_eq!(from_binary.digest().len(), 64);
    assert_eq!(call(&engine, &from_binary, "true").await.unwrap(), "true");
}

#[tokio::test]
async fn an_unbounded_deadline_is_accepted() {
    let dir = tempfile::tempdir().unwrap();
    let engine = engine(dir.path());
    let module = load(&engine, &core_guest(ECHO, ""));
    let out = engine.call(&module, b"[]", Duration::MAX).await.unwrap();
    assert_eq!(out, b"[]");
}

#[tokio::test]
async fn unreachable_is_a_trap() {
    let dir = tempfile::tempdir().unwrap();
    let engine = engine(dir.path());
    let module = load(&engine, &core_guest("(unreachable)", ""));
    let err = call(&engine, &module, "{}").await.unwrap_err();
    assert!(
        matches!(&err, WasmError::Trap(msg)
            if msg.starts_with("wasm trap: wasm `unreachable` instruction executed")),
        "{err:?}"
    );
    assert_eq!(err.status(), "FAILED");
}

#[tokio::test]
async fn non_json_output_is_bad_output() {
    let dir = tempfile::tempdir().unwrap();
    let engine = engine(dir.path());
    let module = load(&engine, &core_guest(ECHO, ""));
    let err = call(&engine, &module, "hello").await.unwrap_err();
    assert!(
        matches!(&err, WasmError::BadOutput(msg) if msg.starts_with("output is not JSON")),
        "{err:?}"
    );
}

#[tokio::test]
async fn output_pointers_outside_memory_break_the_abi() {
    let dir = tempfile::tempdir().unwrap();
    let engine = engine(dir.path());
    // ptr 65530, len 100: runs off the single page.
    let module = load(&engine, &core_guest("(i64.const 0x0000fffa00000064)", ""));
    let err = call(&engine, &module, "1").await.unwrap_err();
    assert!(matches!(err, WasmError::Abi(_)), "{err:?}");
}

#[tokio::test]
async fn oversized_output_is_bad_output() {
    let dir = tempfile::tempdir().unwrap();
    let engine = engine(dir.path());
    // len 7 MiB.
    let module = load(&engine, &core_guest("(i64.const 0x700000)", ""));
    let err = call(&engine, &module, "1").await.unwrap_err();
    assert!(
        matches!(&err, WasmError::BadOutput(msg) if msg.contains("larger than")),
        "{err:?}"
    );
}

#[tokio::test]
async fn missing_exports_are_named() {
    let dir = tempfile::tempdir().unwrap();
    let engine = engine(dir.path());
    let err = engine
        .load(br#"(module (memory (export "memory") 1))"#)
        .unwrap_err();
    let WasmError::BadExport(msg) = &err else {
        panic!("{err:?}")
    };
    for name in ["alloc", "handle", "_start"] {
        assert!(msg.contains(&format!("`{name}`")), "{msg}");
    }
    assert!(!msg.contains("`memory`"), "{msg}");
}

#[tokio::test]
async fn mistyped_exports_are_named_with_their_types() {
    let dir = tempfile::tempdir().unwrap();
    let engine = engine(dir.path());
    let wat = r#"(module
      (memory (export "memory") 1)
      (func (export "alloc") (param i32) (result i32) (local.get 0))
      (func (export "handle") (param i32) (result i32) (local.get 0)))"#;
    let err = engine.load(wat.as_bytes()).unwrap_err();
    let WasmError::BadExport(msg) = &err else {
        panic!("{err:?}")
    };
    assert!(
        msg.contains("`handle` has type (i32) -> i32, expected (i32, i32) -> i64"),
        "{msg}"
    );
}

#[tokio::test]
async fn core_modules_may_import_nothing() {
    let dir = tempfile::tempdir().unwrap();
    let engine = engine(dir.path());
    // Imports come before definitions in the text format.
    let wat = core_guest(ECHO, "").replacen("(module", r#"(module (import "env" "foo" (func))"#, 1);
    let err = engine.load(wat.as_bytes()).unwrap_err();
    assert!(
        matches!(&err, WasmError::UnsupportedImport { module, name } if module == "env" && name == "foo"),
        "{err:?}"
    );
    assert_eq!(
        err.to_string(),
        "module imports env.foo, which the host does not provide"
    );
}

#[tokio::test]
async fn garbage_is_invalid() {
    let dir = tempfile::tempdir().unwrap();
    let engine = engine(dir.path());
    for bytes in [
        &b"\xff\xfe\x00binary junk"[..],
        b"(module (func (result i32)))",
        b"\0asm\x01\0\0\0\x7f",
    ] {
        let err = engine.load(bytes).unwrap_err();
        assert!(matches!(err, WasmError::Invalid(_)), "{err:?}");
    }
    assert_eq!(engine.compiled_count(), 0);
}

#[tokio::test]
async fn modules_belong_to_their_engine() {
    let dir = tempfile::tempdir().unwrap();
    let first = engine(dir.path());
    let second = engine(dir.path());
    let module = load(&first, &core_guest(ECHO, ""));
    let err = second.call(&module, b"1", GENEROUS).await.unwrap_err();
    assert!(matches!(err, WasmError::Engine(_)), "{err:?}");
}
