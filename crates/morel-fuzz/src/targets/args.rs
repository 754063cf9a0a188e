//! Call arguments: `bind_args`, `check_depth` and `check_json` (morel-gateway's `args.rs`),
//! and the URL's arguments: `parse_query` and `decode_segment` (`query.rs`), bound with a body.

use morel_gateway::{
    BindError, Binding, MAX_DEPTH, UrlArgs, bind_args, check_depth, check_json, decode_segment,
    parse_query,
};
use morel_runtime_process::protocol::{Param, ParamKind};
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
    b"a=1&b=2",
    b"&a",
    b"=",
    b"%",
    b"%2",
    b"%C3%A9",
    b"%ff",
    b"+",
    b"a=1&a=2",
];

/// The signatures a body is bound against, as `(spec, metacall)`: `a`, `a=` (a default), `/a`
/// (positional-only), `*a`, `**a`, `:a` (keyword-only), `@a` (the request); `None`: unchecked.
const SIGNATURES: &[(Option<&[&str]>, bool)] = &[
    (Some(&[]), false),
    (Some(&["a"]), false),
    (Some(&["a", "b"]), false),
    (Some(&["name"]), false),
    (Some(&["x", "y=", "*rest", ":z", "**kw", "@request"]), false),
    (Some(&["/a", "b="]), false),
    (Some(&["a", "b"]), true),
    (None, false),
    (None, true),
];

fn param(spec: &str) -> Param {
    Param::from_spec(spec)
}

/// The binding for a [`SIGNATURES`] entry, and its parameters.
fn binding(spec: Option<&[&str]>, metacall: bool) -> (Binding, Option<Vec<Param>>) {
    let sig: Option<Vec<Param>> = spec.map(|s| s.iter().map(|p| param(p)).collect());
    let b = Binding::new("f", binding_names(spec), sig.clone(), metacall);
    // Seed 000's projects are not checked.
    (b, sig.filter(|_| !metacall))
}

/// Whether `positional` arguments and `named` keys fit `sig`: an independent model of the
/// rules `bind_args` checks.
fn fits(sig: &[Param], positional: usize, named: &[String]) -> bool {
    let by_position: Vec<&Param> = sig
        .iter()
        .filter(|p| {
            matches!(
                p.kind,
                ParamKind::PositionalOnly | ParamKind::PositionalOrKeyword
            )
        })
        .collect();
    let var = |k| sig.iter().any(|p| p.kind == k);
    if positional > by_position.len() && !var(ParamKind::VarPositional) {
        return false;
    }
    for key in named {
        match sig.iter().find(|p| &p.name == key) {
            Some(p) if matches!(p.kind, ParamKind::PositionalOnly | ParamKind::Request) => {
                return false;
            }
            Some(p) if matches!(p.kind, ParamKind::VarPositional | ParamKind::VarKeyword) => {
                if !var(ParamKind::VarKeyword) {
                    return false;
                }
            }
            Some(_) => {}
            None if var(ParamKind::VarKeyword) => {}
            None => return false,
        }
    }
    let given = |p: &&Param| named.contains(&p.name);
    by_position
        .iter()
        .skip(positional)
        .all(|p| p.default || given(p))
        && sig
            .iter()
            .filter(|p| p.kind == ParamKind::KeywordOnly)
            .all(|p| p.default || given(&p))
}

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
/// object named (by value order in a MetaCall project when its keys are not all parameter
/// names), anything else the single argument), and fitting the signature exactly when the
/// model says so. Whatever `bind_args` accepts, `check_json` accepts; `check_depth` refuses
/// exactly the valid bodies that nest deeper than the limit. The same bytes read as a query
/// string decode to pairs that encode back to themselves, and bind as named arguments.
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
    let none = UrlArgs::default();
    for (i, (spec, metacall)) in SIGNATURES.iter().enumerate() {
        let (binding, params) = binding(*spec, *metacall);
        match bind_args(data, &none, &binding) {
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
                    let names: Vec<String> = binding_names(*spec);
                    check_rules(
                        data,
                        blank,
                        &names,
                        *metacall,
                        &args,
                        &kwargs,
                        bound.args.get(),
                    );
                    if let Some(p) = &params {
                        let n = args.as_array().map_or(0, Vec::len);
                        let keys: Vec<String> = kwargs
                            .as_object()
                            .map(|o| o.keys().cloned().collect())
                            .unwrap_or_default();
                        assert!(
                            fits(p, n, &keys),
                            "bound {args} {kwargs}, which do not fit {spec:?}"
                        );
                    }
                }
            }
            Err(BindError::Arguments(m)) => {
                assert!(
                    json.is_ok(),
                    "arguments refused for a body that is not JSON"
                );
                assert!(
                    m.contains("(signature: f("),
                    "a refusal names the signature: {m}"
                );
                let params = params
                    .as_ref()
                    .expect("an unchecked function refused arguments");
                if let Ok(v) = &value {
                    let (n, keys) = match v {
                        Value::Array(a) => (a.len(), Vec::new()),
                        Value::Object(o)
                            if !(*metacall
                                && !o.is_empty()
                                && !o.keys().all(|k| binding_names(*spec).contains(k))) =>
                        {
                            (0, o.keys().cloned().collect())
                        }
                        Value::Object(o) => (o.len(), Vec::new()),
                        _ => (1, Vec::new()),
                    };
                    assert!(!fits(params, n, &keys), "refused arguments that fit: {m}");
                }
                sig = sig.num(i as u64).str("refused").message(&m);
            }
            // (`check_json` may take what a `Value` cannot hold, such as a string that is not
            // UTF-8: it only skips over it.)
            Err(BindError::Json(e)) => {
                if i == 0 {
                    sig = sig.str("not json").message(&e.to_string());
                }
            }
        }
    }
    query(data, sig).done()
}

fn binding_names(spec: Option<&[&str]>) -> Vec<String> {
    match spec {
        Some(s) => s.iter().map(|p| param(p).name).collect(),
        None => vec!["a".into(), "b".into()],
    }
}

/// The bytes as a query string and as a path segment.
fn query(data: &[u8], mut sig: Sig) -> Sig {
    let Ok(text) = std::str::from_utf8(data) else {
        return sig.str("query not utf-8");
    };
    match decode_segment("p", text) {
        Ok(seg) => {
            assert!(
                seg.matches('+').count() >= text.matches('+').count(),
                "a path keeps its '+'"
            );
            sig = sig.str("segment");
        }
        Err(e) => sig = sig.str("bad segment").message(&e.to_string()),
    }
    let pairs = match parse_query(text) {
        Ok(p) => p,
        Err(e) => {
            let m = e.to_string();
            assert!(m.starts_with("query parameter"), "{m}");
            return sig.str("bad query").message(&m);
        }
    };
    assert!(pairs.len() <= text.split('&').count());
    // Encoded again, the pairs decode to themselves.
    let encoded: Vec<String> = pairs
        .iter()
        .map(|(k, v)| format!("{}={}", encode(k), encode(v)))
        .collect();
    assert_eq!(
        parse_query(&encoded.join("&")).expect("re-encoded pairs parse"),
        pairs,
        "re-encoded pairs decode to themselves"
    );
    // Bound with an empty body to a function taking anything, each name is an argument.
    let url = UrlArgs {
        path: Vec::new(),
        query: pairs.clone(),
    };
    let (any, _) = binding(Some(&["**kw"]), false);
    let bound = bind_args(b"", &url, &any).expect("query arguments bind to **kwargs");
    let kwargs: Value = serde_json::from_str(bound.kwargs.get()).expect("kwargs are JSON");
    for (k, v) in &pairs {
        match &kwargs[k] {
            Value::String(s) => assert_eq!(s, v),
            Value::Array(list) => assert!(list.contains(&Value::String(v.clone()))),
            other => panic!("query parameter {k:?} bound to {other}"),
        }
    }
    sig.str("query").size(pairs.len())
}

fn encode(s: &str) -> String {
    let mut out = String::new();
    for b in s.bytes() {
        if b.is_ascii_alphanumeric() || b"-._~".contains(&b) {
            out.push(b as char);
        } else {
            out.push_str(&format!("%{b:02X}"));
        }
    }
    out
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
    metacall: bool,
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
            let by_order = metacall && !map.is_empty() && !map.keys().all(|k| params.contains(k));
            if by_order {
                let values = Value::Array(map.values().cloned().collect());
                assert!(
                    same(args, &values),
                    "MetaCall: positional, in key order: {args}"
                );
                assert_eq!(kwargs, &empty);
            } else {
                assert_eq!(args, &Value::Array(vec![]));
                assert!(
                    same(kwargs, &body),
                    "named arguments are the object: {kwargs}"
                );
            }
        }
        other => {
            let one = Value::Array(vec![other.clone()]);
            assert!(same(args, &one), "the one argument: {args}");
            assert_eq!(kwargs, &empty);
        }
    }
}
