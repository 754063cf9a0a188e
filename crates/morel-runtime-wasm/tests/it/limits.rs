//! Deadlines, the memory cap and concurrency.

use std::time::{Duration, Instant};

use morel_runtime_wasm::{EngineConfig, WasmEngine, WasmError};

use crate::{ECHO, call, core_guest, engine, engine_with, load};

#[tokio::test]
async fn infinite_loop_times_out() {
    let dir = tempfile::tempdir().unwrap();
    let engine = engine(dir.path());
    let module = load(
        &engine,
        &core_guest("(loop $spin (br $spin)) (unreachable)", ""),
    );
    let deadline = Duration::from_millis(200);
    let started = Instant::now();
    let err = engine.call(&module, b"{}", deadline).await.unwrap_err();
    assert!(
        matches!(err, WasmError::Timeout(d) if d == deadline),
        "{err:?}"
    );
    assert_eq!(err.status(), "TIMED_OUT");
    // Only a generous bound: the loop must have been interrupted, not run forever.
    assert!(started.elapsed() < Duration::from_secs(30));

    // The engine is still usable afterwards.
    let echo = load(&engine, &core_guest(ECHO, ""));
    assert_eq!(call(&engine, &echo, "[]").await.unwrap(), "[]");
}

#[tokio::test]
async fn wasi_infinite_loop_times_out() {
    let dir = tempfile::tempdir().unwrap();
    let engine = engine(dir.path());
    let wat =
        r#"(module (memory (export "memory") 1) (func (export "_start") (loop $spin (br $spin))))"#;
    let module = load(&engine, wat);
    let err = engine
        .call(&module, b"", Duration::from_millis(100))
        .await
        .unwrap_err();
    assert!(matches!(err, WasmError::Timeout(_)), "{err:?}");
}

#[tokio::test]
async fn growing_past_the_cap_is_a_memory_limit() {
    let dir = tempfile::tempdir().unwrap();
    let engine = engine_with(dir.path(), |c| c.max_memory_bytes = 1 << 20); // 16 pages
    // Growing to 8 pages is fine...
    let within = core_guest(
        &format!(
            "(if (i32.lt_s (memory.grow (i32.const 7)) (i32.const 0)) (then (unreachable))) {ECHO}"
        ),
        "",
    );
    let module = load(&engine, &within);
    assert_eq!(call(&engine, &module, "1").await.unwrap(), "1");
    // ...to 101 pages is not.
    let past = core_guest(&format!("(drop (memory.grow (i32.const 100))) {ECHO}"), "");
    let module = load(&engine, &past);
    let err = call(&engine, &module, "1").await.unwrap_err();
    assert!(
        matches!(err, WasmError::MemoryLimit { limit } if limit == 1 << 20),
        "{err:?}"
    );
    assert!(err.to_string().contains("memory limit"), "{err}");
}

#[tokio::test]
async fn modules_declaring_more_memory_than_the_cap_do_not_load() {
    let dir = tempfile::tempdir().unwrap();
    let engine = engine_with(dir.path(), |c| c.max_memory_bytes = 1 << 20);
    let wat = core_guest(ECHO, "").replace(
        "(memory (export \"memory\") 1)",
        "(memory (export \"memory\") 17)",
    );
    let err = engine.load(wat.as_bytes()).unwrap_err();
    assert!(matches!(err, WasmError::Invalid(_)), "{err:?}");
}

#[tokio::test]
async fn deep_recursion_is_a_trap() {
    let dir = tempfile::tempdir().unwrap();
    let engine = engine(dir.path());
    let extra =
        "(func $down (param i32) (result i32) (call $down (i32.add (local.get 0) (i32.const 1))))";
    let module = load(
        &engine,
        &core_guest("(drop (call $down (i32.const 0))) (i64.const 0)", extra),
    );
    let err = call(&engine, &module, "1").await.unwrap_err();
    assert!(
        matches!(&err, WasmError::Trap(msg) if msg.contains("stack")),
        "{err:?}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_hundred_concurrent_calls_succeed() {
    let dir = tempfile::tempdir().unwrap();
    // The production pool size: 1000 slots of 64 MiB each.
    let engine = WasmEngine::new(EngineConfig::new(dir.path())).unwrap();
    let module = load(&engine, &core_guest(ECHO, ""));
    let calls: Vec<_> = (0..200)
        .map(|i| {
            let engine = engine.clone();
            let module = module.clone();
            tokio::spawn(async move {
                let input = format!("{{\"call\":{i}}}");
                let out = engine
                    .call(&module, input.as_bytes(), Duration::from_secs(30))
                    .await;
                (input, out)
            })
        })
        .collect();
    let all = tokio::time::timeout(Duration::from_secs(120), async {
        let mut done = Vec::new();
        for call in calls {
            done.push(call.await.unwrap());
        }
        done
    })
    .await
    .expect("200 calls finish");
    for (input, out) in all {
        assert_eq!(out.unwrap(), input.into_bytes());
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn calls_beyond_the_pool_wait_for_a_slot() {
    let dir = tempfile::tempdir().unwrap();
    let engine = engine_with(dir.path(), |c| c.max_instances = 2);
    let module = load(&engine, &core_guest(ECHO, ""));
    let calls: Vec<_> = (0..20)
        .map(|_| {
            let (engine, module) = (engine.clone(), module.clone());
            tokio::spawn(async move { engine.call(&module, b"7", Duration::from_secs(30)).await })
        })
        .collect();
    for call in calls {
        assert_eq!(call.await.unwrap().unwrap(), b"7");
    }
}
