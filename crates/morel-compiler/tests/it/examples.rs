//! Every language compiles its example, and the module does its job under Node.

use morel_compiler::Language;
use serde_json::json;

use crate::support::{compile, example, json, ready_toolchains, run_core, run_wasi};

const CORE_EXPORTS: [&str; 3] = ["function:alloc", "function:handle", "memory:memory"];

#[tokio::test]
async fn wat_echo_round_trips_through_the_core_abi() {
    let toolchains = ready_toolchains().await;
    let module = compile(&toolchains, Language::Wat, &example("wasm-wat/echo.wat")).await;
    assert!(module.starts_with(b"\0asm"));

    // The second input does not fit the first page: alloc must grow the memory.
    let big = format!("{{\"data\": \"{}\"}}", "x".repeat(200_000));
    let run = run_core(&module, &[r#"{"hello": "wörld"}"#, &big, "[]"]);
    assert_eq!(run.exports, CORE_EXPORTS);
    assert_eq!(run.outputs, [r#"{"hello": "wörld"}"#, big.as_str(), "[]"]);
}

#[tokio::test]
async fn c_sum_runs_as_a_wasi_command() {
    let toolchains = ready_toolchains().await;
    let module = compile(&toolchains, Language::C, &example("wasm-c/sum.c")).await;
    assert!(module.starts_with(b"\0asm"));

    let run = run_wasi(&module, "[1, 2.5, -3]");
    assert_eq!(run.code, Some(0), "{run:?}");
    assert_eq!(json(&run.stdout), json!({"sum": 0.5, "count": 3}));

    let run = run_wasi(&module, " [ ] ");
    assert_eq!(json(&run.stdout), json!({"sum": 0, "count": 0}));

    let run = run_wasi(&module, r#"{"not": "an array"}"#);
    assert_eq!(run.code, Some(1), "{run:?}");
    assert!(run.stderr.contains("JSON array"), "{run:?}");
}

#[tokio::test]
async fn rust_fib_runs_as_a_wasi_command() {
    let toolchains = ready_toolchains().await;
    let module = compile(&toolchains, Language::Rust, &example("wasm-rust/fib.rs")).await;
    assert!(module.starts_with(b"\0asm"));

    let run = run_wasi(&module, "10\n");
    assert_eq!(run.code, Some(0), "{run:?}");
    assert_eq!(json(&run.stdout), json!({"n": 10, "fib": 55}));

    let run = run_wasi(&module, "90");
    assert_eq!(
        json(&run.stdout),
        json!({"n": 90, "fib": 2_880_067_194_370_816_120u64})
    );

    let run = run_wasi(&module, "\"ten\"");
    assert_eq!(run.code, Some(1), "{run:?}");
    assert!(run.stderr.contains("whole number"), "{run:?}");
}

#[tokio::test]
async fn assemblyscript_greet_round_trips_through_the_core_abi() {
    let toolchains = ready_toolchains().await;
    let module = compile(
        &toolchains,
        Language::Assemblyscript,
        &example("wasm-assemblyscript/greet.ts"),
    )
    .await;
    assert!(module.starts_with(b"\0asm"));

    // Several calls in one instance: the pinned buffers must survive the collector.
    let long_name = "é".repeat(50_000);
    let long_input = format!(r#"{{"name": "{long_name}"}}"#);
    let run = run_core(
        &module,
        &[
            r#"{"name": "Ada"}"#,
            r#""Zoë ✓""#,
            "{}",
            &long_input,
            r#"{"name": "q\"uote"}"#,
        ],
    );
    assert_eq!(run.exports, CORE_EXPORTS, "only the core ABI is exported");
    let outputs: Vec<serde_json::Value> = run.outputs.iter().map(|o| json(o)).collect();
    assert_eq!(outputs[0], json!({"greeting": "Hello, Ada!"}));
    assert_eq!(outputs[1], json!({"greeting": "Hello, Zoë ✓!"}));
    assert_eq!(outputs[2], json!({"greeting": "Hello, world!"}));
    assert_eq!(
        outputs[3],
        json!({"greeting": format!("Hello, {long_name}!")})
    );
    assert_eq!(outputs[4], json!({"greeting": "Hello, q\"uote!"}));
}

#[tokio::test]
async fn assemblyscript_handle_receives_and_returns_raw_text() {
    let toolchains = ready_toolchains().await;
    let source = r#"
export function handle(input: string): string {
  return '{"length": ' + input.length.toString() + ', "echo": ' + input + '}';
}
"#;
    let module = compile(&toolchains, Language::Assemblyscript, source).await;
    let run = run_core(&module, &[r#"[1,"ü"]"#]);
    assert_eq!(
        json(&run.outputs[0]),
        json!({"length": 7, "echo": [1, "ü"]})
    );
}
