//! Binding a request to a function's arguments (DESIGN §3 "Call"; README, "Calling
//! functions").
//!
//! - The body: an array is positional arguments; an object is named arguments; any other
//!   value is the single positional argument; an empty body is no arguments.
//! - On an app route, the path's parameters (`/items/{item_id}`) and the query's are named
//!   arguments too, as strings (a repeated query parameter is a list of strings). They merge
//!   with an object body: the body wins over the query, and a path parameter the body also
//!   names is refused. They cannot be combined with positional arguments.
//! - Named arguments must be parameters of the function, and every parameter without a
//!   default must get an argument: a missing, extra or unknown argument is refused (400) with
//!   the parameter's name and the function's signature, before the call reaches a worker.
//! - Seed 000's projects (`metacall.json`) keep MetaCall FaaS's contract: an object whose keys
//!   are not all parameter names is bound by the order of its values, and the arguments are
//!   not checked (a missing one is the function's own error, as in MetaCall).
//!
//! The parameters come from the runner's `MetaData` ([`Param`]); a function whose runner could
//! not read them is called with what the client sent, unchecked.

use morel_runtime_process::protocol::{Param, ParamKind};
use serde::Deserialize;
use serde::de::{IgnoredAny, SeqAccess, Visitor};
use serde_json::value::RawValue;
use serde_json::{Map, Value};

pub struct CallArgs {
    pub args: Box<RawValue>,
    pub kwargs: Box<RawValue>,
}

/// How deeply a call body's arrays and objects may nest. Deeper bodies are refused before a
/// worker sees them: a runtime's decoder may recurse once per level.
pub const MAX_DEPTH: usize = 64;

/// Why a body cannot be a call's arguments (a 400 with this text).
#[derive(Debug, thiserror::Error)]
#[error("{0}")]
pub struct BadJson(String);

impl BadJson {
    fn invalid(e: impl std::fmt::Display) -> BadJson {
        BadJson(format!("request body is not valid JSON: {e}"))
    }
}

/// Why a request cannot be bound to the function's arguments: both are a 400.
#[derive(Debug, thiserror::Error)]
pub enum BindError {
    /// The body is not JSON, or nests too deeply (`BadRequest`).
    #[error(transparent)]
    Json(#[from] BadJson),
    /// The arguments do not fit the function's parameters (`BadArguments`); the text names
    /// the parameter and the signature.
    #[error("{0}")]
    Arguments(String),
}

/// What a function's arguments are checked against, resolved when its route is installed.
#[derive(Clone, Debug, Default)]
pub struct Binding {
    /// The function's name, for messages.
    name: String,
    /// Its parameters as people see them (`a`, `*args`, `**kwargs`): the signature in
    /// messages, and MetaCall's rule.
    params: Vec<String>,
    /// The parameters that take arguments (not the request's); `None`: unchecked.
    signature: Option<Vec<Param>>,
    /// The parameter the runner fills with the request, if the function has one.
    request: Option<String>,
    /// Seed 000's contract (see the module docs).
    metacall: bool,
}

impl Binding {
    /// `signature` is what the runner reported; a parameter kind this gateway does not know
    /// makes the whole signature unchecked, and so does seed 000's contract (`metacall`).
    pub fn new(
        name: &str,
        params: Vec<String>,
        signature: Option<Vec<Param>>,
        metacall: bool,
    ) -> Self {
        let signature = signature.filter(|s| s.iter().all(|p| p.kind != ParamKind::Unknown));
        let request = signature
            .as_ref()
            .and_then(|s| s.iter().find(|p| p.kind == ParamKind::Request))
            .map(|p| p.name.clone());
        Binding {
            name: name.to_owned(),
            params,
            signature: signature.filter(|_| !metacall).map(|s| {
                s.into_iter()
                    .filter(|p| p.kind != ParamKind::Request)
                    .collect()
            }),
            request,
            metacall,
        }
    }

    /// Whether the function takes the request (its `Invoke` frame carries it).
    pub fn wants_request(&self) -> bool {
        self.request.is_some()
    }

    /// `name(a, b)`, as `morel inspect` shows it.
    pub fn signature_text(&self) -> String {
        format!("{}({})", self.name, self.params.join(", "))
    }

    fn refuse(&self, what: String) -> BindError {
        BindError::Arguments(format!("{what} (signature: {})", self.signature_text()))
    }
}

/// Named arguments from a request's URL: a route's path parameters and the query's
/// parameters, decoded, in order.
#[derive(Debug, Default)]
pub struct UrlArgs {
    pub path: Vec<(String, String)>,
    pub query: Vec<(String, String)>,
}

impl UrlArgs {
    pub fn is_empty(&self) -> bool {
        self.path.is_empty() && self.query.is_empty()
    }
}

/// A call body, read.
enum Body<'a> {
    Empty,
    /// An array, passed on as the client wrote it: checked, not rebuilt.
    Array {
        text: &'a str,
        len: usize,
    },
    Object(Map<String, Value>),
    /// Any other value: the single positional argument.
    One(Value),
}

/// Binds a body (and, on an app route, the URL's arguments) to the function's arguments by
/// the rules in the module docs.
pub fn bind_args(body: &[u8], url: &UrlArgs, binding: &Binding) -> Result<CallArgs, BindError> {
    let (positional, named) = match read_body(body, binding.signature.is_some())? {
        Body::Array { text, len } if url.is_empty() => {
            check(binding, len, &Map::new())?;
            return Ok(CallArgs {
                args: RawValue::from_string(text.to_owned()).map_err(BadJson::invalid)?,
                kwargs: raw_text("{}")?,
            });
        }
        Body::One(v) if url.is_empty() => (vec![v], Map::new()),
        Body::Array { .. } | Body::One(_) => {
            return Err(binding.refuse(
                "a body of positional arguments cannot be combined with path or query \
                 parameters: send the other arguments as an object"
                    .into(),
            ));
        }
        Body::Object(map)
            if binding.metacall
                && url.is_empty()
                && !map.is_empty()
                && !map.keys().all(|k| binding.params.contains(k)) =>
        {
            (map.into_iter().map(|(_, v)| v).collect(), Map::new())
        }
        Body::Object(map) => (Vec::new(), merge_url(map, url, binding)?),
        Body::Empty => (Vec::new(), merge_url(Map::new(), url, binding)?),
    };
    check(binding, positional.len(), &named)?;
    Ok(CallArgs {
        args: raw_value(&Value::Array(positional))?,
        kwargs: raw_value(&Value::Object(named))?,
    })
}

/// The body's shape; an array's elements are counted only when they are to be checked.
fn read_body(body: &[u8], count: bool) -> Result<Body<'_>, BadJson> {
    if body.iter().all(|b| is_json_space(*b)) {
        return Ok(Body::Empty);
    }
    check_depth(body)?;
    if body.iter().find(|b| !is_json_space(**b)) == Some(&b'[') {
        let text = std::str::from_utf8(body).map_err(BadJson::invalid)?;
        // `c as u8` alone would take a character such as U+D020 for a space and drop it.
        let space = |c: char| c.is_ascii() && is_json_space(c as u8);
        let text = text.trim_matches(space);
        let len = if count {
            serde_json::from_str::<Count>(text)
                .map_err(BadJson::invalid)?
                .0
        } else {
            0
        };
        return Ok(Body::Array { text, len });
    }
    match serde_json::from_slice::<Value>(body).map_err(BadJson::invalid)? {
        Value::Object(map) => Ok(Body::Object(map)),
        other => Ok(Body::One(other)),
    }
}

/// The URL's arguments merged into an object body's: the body wins over the query; a path
/// parameter the body also names is refused.
fn merge_url(
    mut named: Map<String, Value>,
    url: &UrlArgs,
    binding: &Binding,
) -> Result<Map<String, Value>, BindError> {
    for (name, value) in &url.path {
        if named.contains_key(name) {
            return Err(binding.refuse(format!(
                "argument {name:?} is given both in the path and in the body"
            )));
        }
        named.insert(name.clone(), Value::String(value.clone()));
    }
    let from_body_or_path: Vec<bool> = url
        .query
        .iter()
        .map(|(name, _)| named.contains_key(name))
        .collect();
    for ((name, value), taken) in url.query.iter().zip(from_body_or_path) {
        if taken {
            continue;
        }
        // A repeated query parameter is a list of its values, in order.
        match named.get_mut(name) {
            Some(Value::Array(list)) => list.push(Value::String(value.clone())),
            Some(first) => {
                let first = first.take();
                named.insert(
                    name.clone(),
                    Value::Array(vec![first, Value::String(value.clone())]),
                );
            }
            None => {
                named.insert(name.clone(), Value::String(value.clone()));
            }
        }
    }
    Ok(named)
}

/// Checks `positional` arguments and the `named` ones against the signature.
fn check(
    binding: &Binding,
    positional: usize,
    named: &Map<String, Value>,
) -> Result<(), BindError> {
    let Some(sig) = &binding.signature else {
        return Ok(());
    };
    let by_position: Vec<&Param> = sig
        .iter()
        .filter(|p| {
            matches!(
                p.kind,
                ParamKind::PositionalOnly | ParamKind::PositionalOrKeyword
            )
        })
        .collect();
    let has = |kind| sig.iter().any(|p| p.kind == kind);
    if positional > by_position.len() && !has(ParamKind::VarPositional) {
        return Err(binding.refuse(format!(
            "{}() takes {} positional argument{} but {positional} were given",
            binding.name,
            by_position.len(),
            if by_position.len() == 1 { "" } else { "s" },
        )));
    }
    let mut unknown = Vec::new();
    for key in named.keys() {
        // The request's parameter is the runner's to fill, even beside `**kwargs`.
        if binding.request.as_ref() == Some(key) {
            return Err(binding.refuse(format!(
                "argument {key:?} of {}() is the HTTP request, which Morel passes: it cannot be sent",
                binding.name
            )));
        }
        let param = sig.iter().find(|p| {
            &p.name == key && !matches!(p.kind, ParamKind::VarPositional | ParamKind::VarKeyword)
        });
        match param {
            Some(p) if p.kind == ParamKind::PositionalOnly => {
                return Err(binding.refuse(format!(
                    "argument {key:?} of {}() is positional-only: send the arguments as an array",
                    binding.name
                )));
            }
            Some(_) => {}
            None if has(ParamKind::VarKeyword) => {}
            None => unknown.push(format!("{key:?}")),
        }
    }
    if !unknown.is_empty() {
        return Err(binding.refuse(format!(
            "{}() has no parameter{} {}",
            binding.name,
            if unknown.len() == 1 { "" } else { "s" },
            unknown.join(", ")
        )));
    }
    let keyword_only = sig.iter().filter(|p| p.kind == ParamKind::KeywordOnly);
    let missing: Vec<String> = by_position
        .iter()
        .skip(positional)
        .copied()
        .chain(keyword_only)
        .filter(|p| !p.default && !named.contains_key(&p.name))
        .map(|p| format!("{:?}", p.name))
        .collect();
    if !missing.is_empty() {
        return Err(binding.refuse(format!(
            "{}() is missing argument{} {}",
            binding.name,
            if missing.len() == 1 { "" } else { "s" },
            missing.join(", ")
        )));
    }
    Ok(())
}

/// The number of elements of a JSON array, read without building them.
struct Count(usize);

impl<'de> Deserialize<'de> for Count {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct Elements;
        impl<'de> Visitor<'de> for Elements {
            type Value = Count;
            fn expecting(&self, f: &mut std::fmt::Formatter) -> std::fmt::Result {
                f.write_str("a JSON array")
            }
            fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<Count, A::Error> {
                let mut n = 0;
                while seq.next_element::<IgnoredAny>()?.is_some() {
                    n += 1;
                }
                Ok(Count(n))
            }
        }
        d.deserialize_seq(Elements)
    }
}

fn raw_value(v: &Value) -> Result<Box<RawValue>, BadJson> {
    RawValue::from_string(v.to_string()).map_err(BadJson::invalid)
}

fn raw_text(text: &str) -> Result<Box<RawValue>, BadJson> {
    RawValue::from_string(text.to_owned()).map_err(BadJson::invalid)
}

/// Checks that `body` is one JSON value (or only whitespace), without building it.
pub fn check_json(body: &[u8]) -> Result<(), BadJson> {
    if body.iter().all(|b| is_json_space(*b)) {
        return Ok(());
    }
    check_depth(body)?;
    serde_json::from_slice::<serde::de::IgnoredAny>(body)
        .map(|_| ())
        .map_err(BadJson::invalid)
}

/// Refuses a body whose arrays and objects nest deeper than [`MAX_DEPTH`]: one pass over the
/// bytes, brackets inside strings not counted. Says nothing of validity (the parse does).
pub fn check_depth(body: &[u8]) -> Result<(), BadJson> {
    let (mut depth, mut in_string, mut escaped) = (0usize, false, false);
    for &b in body {
        if in_string {
            match b {
                _ if escaped => escaped = false,
                b'\\' => escaped = true,
                b'"' => in_string = false,
                _ => {}
            }
            continue;
        }
        match b {
            b'"' => in_string = true,
            b'[' | b'{' => {
                depth += 1;
                if depth > MAX_DEPTH {
                    return Err(BadJson(format!(
                        "request body nests arrays and objects deeper than {MAX_DEPTH} levels (the limit)"
                    )));
                }
            }
            b']' | b'}' => depth = depth.saturating_sub(1),
            _ => {}
        }
    }
    Ok(())
}

/// JSON's whitespace (RFC 8259 §2).
fn is_json_space(b: u8) -> bool {
    matches!(b, b' ' | b'\t' | b'\n' | b'\r')
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    fn param(spec: &str) -> Param {
        Param::from_spec(spec)
    }

    fn binding(specs: &[&str]) -> Binding {
        let sig: Vec<Param> = specs.iter().map(|s| param(s)).collect();
        let params = sig.iter().map(|p| p.name.clone()).collect();
        Binding::new("f", params, Some(sig), false)
    }

    fn unchecked(params: &[&str]) -> Binding {
        Binding::new(
            "f",
            params.iter().map(|p| p.to_string()).collect(),
            None,
            false,
        )
    }

    fn bind(body: &str, b: &Binding) -> (String, String) {
        bind_url(body, &UrlArgs::default(), b)
    }

    fn bind_url(body: &str, url: &UrlArgs, b: &Binding) -> (String, String) {
        let a = bind_args(body.as_bytes(), url, b).unwrap();
        (a.args.get().to_owned(), a.kwargs.get().to_owned())
    }

    fn refused(body: &str, url: &UrlArgs, b: &Binding) -> String {
        match bind_args(body.as_bytes(), url, b) {
            Err(BindError::Arguments(m)) => m,
            Err(e) => panic!("{body}: refused as JSON: {e}"),
            Ok(a) => panic!("{body}: bound to {} {}", a.args.get(), a.kwargs.get()),
        }
    }

    fn url(path: &[(&str, &str)], query: &[(&str, &str)]) -> UrlArgs {
        let own = |l: &[(&str, &str)]| {
            l.iter()
                .map(|(a, b)| (a.to_string(), b.to_string()))
                .collect()
        };
        UrlArgs {
            path: own(path),
            query: own(query),
        }
    }

    #[test]
    fn bodies_bind_by_shape() {
        let ab = binding(&["a", "b"]);
        assert_eq!(bind("", &binding(&[])), ("[]".into(), "{}".into()));
        assert_eq!(bind("[1,2]", &ab), ("[1,2]".into(), "{}".into()));
        assert_eq!(
            bind(r#"{"b":1,"a":2}"#, &ab),
            ("[]".into(), r#"{"b":1,"a":2}"#.into())
        );
        assert_eq!(bind("42", &binding(&["n"])), ("[42]".into(), "{}".into()));
        assert_eq!(
            bind(r#""hi""#, &binding(&["s"])),
            (r#"["hi"]"#.into(), "{}".into())
        );
        assert_eq!(bind("{}", &binding(&["a="])), ("[]".into(), "{}".into()));
        assert!(bind_args(b"{nope", &UrlArgs::default(), &ab).is_err());
        // Arrays are passed on as written (inner spacing kept, outer trimmed), and checked.
        assert_eq!(
            bind(" [1, [2]]\n", &binding(&["a", "b"])),
            ("[1, [2]]".into(), "{}".into())
        );
        for bad in [&b"[1,"[..], b"[1] [2]", b"[\"\xff\"]"] {
            assert!(matches!(
                bind_args(bad, &UrlArgs::default(), &unchecked(&[])),
                Err(BindError::Json(_))
            ));
        }
    }

    /// Missing, extra and unknown arguments are refused naming the parameter and the
    /// signature; an object whose keys are not parameters is never bound by position.
    #[test]
    fn arguments_must_fit_the_signature() {
        let add = binding(&["a", "b"]);
        let none = UrlArgs::default();
        let e = refused("[1]", &none, &add);
        assert_eq!(e, "f() is missing argument \"b\" (signature: f(a, b))");
        assert!(refused("[]", &none, &add).contains("missing arguments \"a\", \"b\""));
        let e = refused("[1,2,3]", &none, &add);
        assert_eq!(
            e,
            "f() takes 2 positional arguments but 3 were given (signature: f(a, b))"
        );
        let e = refused(r#"{"a":1,"bb":2}"#, &none, &add);
        assert_eq!(e, "f() has no parameter \"bb\" (signature: f(a, b))");
        assert!(refused(r#"{"y":1,"x":5}"#, &none, &add).contains("no parameters \"y\", \"x\""));
        assert!(refused(r#"{"a":1}"#, &none, &add).contains("missing argument \"b\""));
        assert!(refused("7", &none, &binding(&[])).contains("takes 0 positional arguments but 1"));

        // Defaults, *args, **kwargs, keyword-only and positional-only parameters.
        let f = binding(&["a", "b=", "*rest", ":k", ":opt=", "**kw"]);
        assert_eq!(
            bind(r#"[1,2,3,4]"#, &binding(&["a", "*rest"])).0,
            "[1,2,3,4]"
        );
        assert_eq!(
            bind(r#"{"a":1,"k":2,"zz":3}"#, &f).1,
            r#"{"a":1,"k":2,"zz":3}"#
        );
        assert!(refused(r#"{"a":1}"#, &none, &f).contains("missing argument \"k\""));
        assert!(
            refused(
                r#"{"rest":1,"a":1,"k":1}"#,
                &none,
                &binding(&["a", "*rest", ":k"])
            )
            .contains("no parameter \"rest\"")
        );
        let e = refused(r#"{"a":1}"#, &none, &binding(&["/a"]));
        assert!(e.contains("\"a\" of f() is positional-only"), "{e}");
        assert_eq!(bind("[1]", &binding(&["/a"])).0, "[1]");

        // The request parameter is the runner's to fill, never an argument.
        let r = binding(&["a", "@request"]);
        assert!(r.wants_request());
        assert_eq!(bind(r#"{"a":1}"#, &r).1, r#"{"a":1}"#);
        assert!(refused(r#"{"a":1,"request":2}"#, &none, &r).contains("is the HTTP request"));
        let rk = binding(&["a", "@request", "**kw"]);
        assert!(refused(r#"{"request":2}"#, &none, &rk).contains("is the HTTP request"));
    }

    #[test]
    fn without_a_signature_arguments_pass_unchecked() {
        let f = unchecked(&["a", "b"]);
        assert_eq!(bind("[1,2,3]", &f).0, "[1,2,3]");
        assert_eq!(bind(r#"{"z":1}"#, &f), ("[]".into(), r#"{"z":1}"#.into()));
        let unknown_kind = Param {
            name: "a".into(),
            kind: ParamKind::Unknown,
            default: false,
        };
        let f = Binding::new("f", vec!["a".into()], Some(vec![unknown_kind]), false);
        assert_eq!(bind("[1,2]", &f).0, "[1,2]");
    }

    /// Seed 000's projects bind an object whose keys are not all parameters by value order,
    /// and leave the arguments unchecked, as MetaCall FaaS does.
    #[test]
    fn metacall_projects_keep_positional_objects_unchecked() {
        let sig: Vec<Param> = ["a", "b"].iter().map(|s| param(s)).collect();
        let mc = Binding::new("sub", vec!["a".into(), "b".into()], Some(sig), true);
        assert_eq!(bind(r#"{"y":1,"x":5}"#, &mc), ("[1,5]".into(), "{}".into()));
        assert_eq!(
            bind(r#"{"b":1,"a":5}"#, &mc),
            ("[]".into(), r#"{"b":1,"a":5}"#.into())
        );
        assert_eq!(bind(r#"{"y":1}"#, &mc), ("[1]".into(), "{}".into()));
        assert_eq!(bind("[1,2,3]", &mc).0, "[1,2,3]");
        assert_eq!(bind("", &mc), ("[]".into(), "{}".into()));
    }

    #[test]
    fn url_arguments_merge_with_the_body() {
        let f = binding(&["item_id", "q=", "tag="]);
        let u = url(
            &[("item_id", "42")],
            &[("q", "x"), ("tag", "a"), ("tag", "b")],
        );
        assert_eq!(
            bind_url("", &u, &f).1,
            r#"{"item_id":"42","q":"x","tag":["a","b"]}"#
        );
        // The body wins over the query.
        assert_eq!(
            bind_url(r#"{"q":1}"#, &u, &f).1,
            r#"{"q":1,"item_id":"42","tag":["a","b"]}"#
        );
        let e = refused(r#"{"item_id":1}"#, &u, &f);
        assert!(
            e.contains("\"item_id\" is given both in the path and in the body"),
            "{e}"
        );
        let e = refused("[1]", &u, &f);
        assert!(
            e.contains("cannot be combined with path or query parameters"),
            "{e}"
        );
        let e = refused("", &url(&[], &[("nope", "1")]), &binding(&["a="]));
        assert!(e.contains("no parameter \"nope\""), "{e}");
        // MetaCall's rule is for bodies alone.
        let sig: Vec<Param> = ["a", "b"].iter().map(|s| param(s)).collect();
        let mc = Binding::new("f", vec!["a".into(), "b".into()], Some(sig), true);
        assert_eq!(
            bind_url(r#"{"x":1}"#, &url(&[("a", "1")], &[]), &mc).1,
            r#"{"x":1,"a":"1"}"#
        );
    }

    #[test]
    fn nesting_is_bounded_and_brackets_in_strings_do_not_count() {
        let deep = |n: usize| format!("{}{}", "[".repeat(n), "]".repeat(n));
        let any = unchecked(&["a"]);
        let none = UrlArgs::default();
        assert!(bind_args(deep(MAX_DEPTH).as_bytes(), &none, &any).is_ok());
        for body in [
            deep(MAX_DEPTH + 1),
            deep(2000),
            format!("{{\"a\": {}}}", deep(MAX_DEPTH)),
        ] {
            let e = bind_args(body.as_bytes(), &none, &any).err().unwrap();
            assert!(e.to_string().contains("deeper than 64 levels"), "{e}");
            assert!(check_json(body.as_bytes()).is_err());
        }
        let in_string = format!("[\"{}\\\"{}\"]", "[".repeat(500), "{".repeat(500));
        assert!(
            bind_args(in_string.as_bytes(), &none, &binding(&["a"])).is_ok(),
            "{in_string}"
        );
    }

    #[test]
    fn check_json_accepts_one_value_or_nothing() {
        assert!(check_json(b"").is_ok());
        assert!(check_json(b" \n").is_ok());
        assert!(check_json(br#"{"a":[1,2,{"b":null}]}"#).is_ok());
        assert!(check_json(b"{nope").is_err());
        assert!(check_json(b"1 2").is_err());
    }
}
