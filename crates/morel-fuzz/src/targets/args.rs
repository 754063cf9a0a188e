//! Call bodies: `bind_args`, `check_depth` and `check_json` (morel-gateway's `args.rs`).

use morel_gateway::{MAX_DEPTH, bind_args, check_depth, check_json};
use serde_json::Value;

use crate::Sig;

pub(crate) const TOKENS: &[&[u8]] = &[
    b"{\"a\":1}",
    b"{\"name\":\"Ada\"}",
    b"{\"x\":1,\"y\":2,\"z\":3}",
    b"{\"a\":1,\"a\":2}",
    b"[[[[[[[[[[[[[[[[",
    b"]]]]]]]]]]]]]]]]",
    b"{\"a\":{\"a\":{\"a\":{\"a\":",
    b"\"[{\"",
    b"\"\\\"[\"",
    b"1e400",
    b"-1e400",
    b"12345678901234567890123",
    b"\\ud800\\udc00",
    b"\"\\ud800\"",
    b"\\u12",
];

/// Parameter lists the body is bound against: none, one, two, a name, three.
const PARAMS: &[&[&str]] = &[&[], &["a"], &["a", "b"], &["name"], &["x", "y", "z"]];

fn is_json_space(b: u8) -> bool {
    matches!(b, b' ' | b'\t' | b'\n' | b'\r')
}

/// How deeply arrays and objects nest in `v`.
fn depth(v: &Value) -> usize {
    match v {
        Value::Array(items) => 1 + items.iter().map(depth).max().unwrap_or(0),
        Value::Object(map) => 1 + map.values().map(depth).max().unwrap_or(0),
        _ => 0,
    }
}

/// Checks that `text` is one JSON value opening with `open`, and returns it when `Value` can
/// hold it (not a number out of `f64`'s range, which a worker's decoder may still take).
fn bound_value(text: &str, open: u8) -> Option<Value> {
    if let Err(e) = serde_json::from_str::<serde::de::IgnoredAny>(text) {
        panic!("bound arguments are not JSON ({e}): {text:?}");
    }
    let first = text.bytes().find(|b| !is_json_space(*b));
    assert_eq!(
        first,
        Some(open),
        "bound arguments open with {}",
        open as char
    );
    serde_json::from_str(text).ok()
}

/// Anything bound is valid JSON a worker can decode: `args` an array, `kwargs` an object,
/// both within the depth limit, built by the rules in `args.rs` (an array as written, an
/// object named when every key is a parameter, else positional, anything else the single
/// argument). Whatever `bind_args` accepts, `check_json` accepts; `check_depth` refuses
/// exactly the valid bodies that nest deeper than the limit.
pub(crate) fn call_args(data: &[u8]) -> u64 {
    let depth_ok = check_depth(data).is_ok();
    let json = check_json(data);
    let blank = data.iter().all(|b| is_json_space(*b));
    let value = serde_json::from_slice::<Value>(data);
    let mut sig = Sig::new("args")
        .flag(depth_ok)
        .flag(json.is_ok())
        .flag(blank)
        .flag(value.is_ok());
    if let Ok(v) = &value {
        assert_eq!(
            depth_ok,
            depth(v) <= MAX_DEPTH,
            "check_depth disagrees with the body's real depth {}",
            depth(v)
        );
        sig = sig.num(match v {
            Value::Null => 0,
            Value::Bool(_) => 1,
            Value::Number(_) => 2,
            Value::String(_) => 3,
            Value::Array(_) => 4,
            Value::Object(_) => 5,
        });
    }
    if !depth_ok {
        assert!(json.is_err(), "check_json took a body nested too deeply");
    }
    if let Err(e) = &json {
        sig = sig.message(&e.to_string());
    }
    for (i, params) in PARAMS.iter().enumerate() {
        let params: Vec<String> = params.iter().map(|p| (*p).to_owned()).collect();
        match bind_args(data, &params) {
            Ok(bound) => {
                assert!(
                    json.is_ok(),
                    "bind_args took a body check_json refuses: {json:?}"
                );
                let args = bound_value(bound.args.get(), b'[');
                let kwargs = bound_value(bound.kwargs.get(), b'{');
                assert!(check_depth(bound.args.get().as_bytes()).is_ok());
                assert!(check_depth(bound.kwargs.get().as_bytes()).is_ok());
                sig = sig.num(i as u64).flag(bound.kwargs.get() != "{}");
                if let (Some(args), Some(kwargs)) = (args, kwargs) {
                    check_rules(data, blank, &params, &args, &kwargs, bound.args.get());
                }
            }
            Err(e) => {
                if i == 0 {
                    sig = sig.str("refused").message(&e.to_string());
                }
            }
        }
    }
    sig.done()
}

/// `a == b`, but floats only to within a few units in the last place: serde_json (without
/// its `float_roundtrip` feature) does not round every long number to the nearest double, so
/// a number re-encoded for a worker can come back one or two units off (see
/// docs/fuzzing.md, "known findings").
fn same(a: &Value, b: &Value) -> bool {
    match (a, b) {
        (Value::Number(x), Value::Number(y)) if x.is_f64() || y.is_f64() => {
            match (x.as_f64(), y.as_f64()) {
                (Some(x), Some(y)) => x == y || (x - y).abs() <= 1e-15 * x.abs().max(y.abs()),
                _ => false,
            }
        }
        (Value::Array(x), Value::Array(y)) => {
            x.len() == y.len() && x.iter().zip(y).all(|(x, y)| same(x, y))
        }
        (Value::Object(x), Value::Object(y)) => {
            x.len() == y.len()
                && x.iter()
                    .zip(y)
                    .all(|((kx, vx), (ky, vy))| kx == ky && same(vx, vy))
        }
        _ => a == b,
    }
}

fn check_rules(
    data: &[u8],
    blank: bool,
    params: &[String],
    args: &Value,
    kwargs: &Value,
    args_text: &str,
) {
    if blank {
        assert_eq!(args, &Value::Array(vec![]));
        assert_eq!(kwargs, &Value::Object(Default::default()));
        return;
    }
    let Ok(body) = serde_json::from_slice::<Value>(data) else {
        // Only an array is passed on as written: it is checked, not rebuilt, so a body the
        // `Value` parser refuses (a number out of range) can still be bound.
        let first = data.iter().find(|b| !is_json_space(**b));
        assert_eq!(
            first,
            Some(&b'['),
            "a bound body that is not JSON: {args_text}"
        );
        return;
    };
    let empty = Value::Object(Default::default());
    match &body {
        Value::Array(_) => {
            let text = std::str::from_utf8(data).expect("a bound array is UTF-8");
            assert_eq!(
                args_text,
                text.trim_matches(|c: char| c.is_ascii() && is_json_space(c as u8)),
                "an array is passed on as written"
            );
            assert_eq!(kwargs, &empty);
        }
        Value::Object(map) => {
            let named = !map.is_empty() && map.keys().all(|k| params.contains(k));
            if named {
                assert_eq!(args, &Value::Array(vec![]));
                assert!(
                    same(kwargs, &body),
                    "named arguments are the object: {kwargs}"
                );
            } else {
                let values = Value::Array(map.values().cloned().collect());
                assert!(same(args, &values), "positional, in key order: {args}");
                assert_eq!(kwargs, &empty);
            }
        }
        other => {
            let one = Value::Array(vec![other.clone()]);
            assert!(same(args, &one), "the one argument: {args}");
            assert_eq!(kwargs, &empty);
        }
    }
}
