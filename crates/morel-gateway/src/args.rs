//! Binding a request body to a function's arguments (DESIGN §3 "Call"):
//! an array is positional; an object is named when every key is a parameter name, else
//! positional in key order (seed 000's clients send objects); any other value is the single
//! positional argument; an empty body is no arguments.

use serde_json::Value;
use serde_json::value::RawValue;

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

pub fn bind_args(body: &[u8], params: &[String]) -> Result<CallArgs, BadJson> {
    let raw = |v: &Value| RawValue::from_string(v.to_string()).map_err(BadJson::invalid);
    let empty_args = || RawValue::from_string("[]".into()).map_err(BadJson::invalid);
    let empty_kwargs = || RawValue::from_string("{}".into()).map_err(BadJson::invalid);
    if body.iter().all(|b| is_json_space(*b)) {
        return Ok(CallArgs {
            args: empty_args()?,
            kwargs: empty_kwargs()?,
        });
    }
    check_depth(body)?;
    // An array is passed on as the client wrote it: checked, not rebuilt.
    if body.iter().find(|b| !is_json_space(**b)) == Some(&b'[') {
        let text = std::str::from_utf8(body).map_err(BadJson::invalid)?;
        // `c as u8` alone would take a character such as U+D020 for a space and drop it.
        let space = |c: char| c.is_ascii() && is_json_space(c as u8);
        let args =
            RawValue::from_string(text.trim_matches(space).to_owned()).map_err(BadJson::invalid)?;
        return Ok(CallArgs {
            args,
            kwargs: empty_kwargs()?,
        });
    }
    let value: Value = serde_json::from_slice(body).map_err(BadJson::invalid)?;
    match value {
        Value::Array(_) => Ok(CallArgs {
            args: raw(&value)?,
            kwargs: empty_kwargs()?,
        }),
        Value::Object(ref map) => {
            let named = !map.is_empty() && map.keys().all(|k| params.iter().any(|p| p == k));
            if named {
                Ok(CallArgs {
                    args: empty_args()?,
                    kwargs: raw(&value)?,
                })
            } else {
                let values: Vec<Value> = map.values().cloned().collect();
                Ok(CallArgs {
                    args: raw(&Value::Array(values))?,
                    kwargs: empty_kwargs()?,
                })
            }
        }
        other => Ok(CallArgs {
            args: raw(&Value::Array(vec![other]))?,
            kwargs: empty_kwargs()?,
        }),
    }
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

    fn bind(body: &str, params: &[&str]) -> (String, String) {
        let p: Vec<String> = params.iter().map(|s| s.to_string()).collect();
        let a = bind_args(body.as_bytes(), &p).unwrap();
        (a.args.get().to_owned(), a.kwargs.get().to_owned())
    }

    #[test]
    fn rules() {
        assert_eq!(bind("", &["a"]), ("[]".into(), "{}".into()));
        assert_eq!(bind("[1,2]", &["a", "b"]), ("[1,2]".into(), "{}".into()));
        assert_eq!(
            bind(r#"{"name":"Ada"}"#, &["name"]),
            ("[]".into(), r#"{"name":"Ada"}"#.into())
        );
        // Keys that are not all parameters: positional, in the order the client sent them.
        assert_eq!(
            bind(r#"{"z":1,"a":2}"#, &["x", "y"]),
            ("[1,2]".into(), "{}".into())
        );
        assert_eq!(bind("42", &["n"]), ("[42]".into(), "{}".into()));
        assert_eq!(bind(r#""hi""#, &["s"]), (r#"["hi"]"#.into(), "{}".into()));
        assert!(bind_args(b"{nope", &[]).is_err());
        // Arrays are passed on as written (inner spacing kept, outer trimmed), and checked.
        assert_eq!(
            bind(" [1, [2]]\n", &["a"]),
            ("[1, [2]]".into(), "{}".into())
        );
        assert!(bind_args(b"[1,", &[]).is_err());
        assert!(bind_args(b"[1] [2]", &[]).is_err());
        assert!(bind_args(b"[\"\xff\"]", &[]).is_err());
    }

    #[test]
    fn nesting_is_bounded_and_brackets_in_strings_do_not_count() {
        let deep = |n: usize| format!("{}{}", "[".repeat(n), "]".repeat(n));
        assert!(bind_args(deep(MAX_DEPTH).as_bytes(), &[]).is_ok());
        for body in [
            deep(MAX_DEPTH + 1),
            deep(2000),
            format!("{{\"a\": {}}}", deep(MAX_DEPTH)),
        ] {
            let e = bind_args(body.as_bytes(), &["a".into()]).err().unwrap();
            assert!(e.to_string().contains("deeper than 64 levels"), "{e}");
            assert!(check_json(body.as_bytes()).is_err());
        }
        let in_string = format!("[\"{}\\\"{}\"]", "[".repeat(500), "{".repeat(500));
        assert!(bind_args(in_string.as_bytes(), &[]).is_ok(), "{in_string}");
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
