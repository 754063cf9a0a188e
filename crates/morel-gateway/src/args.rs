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

#[derive(Debug, thiserror::Error)]
#[error("request body is not valid JSON: {0}")]
pub struct BadJson(String);

pub fn bind_args(body: &[u8], params: &[String]) -> Result<CallArgs, BadJson> {
    let raw = |v: &Value| RawValue::from_string(v.to_string()).map_err(|e| BadJson(e.to_string()));
    let empty_args = || RawValue::from_string("[]".into()).map_err(|e| BadJson(e.to_string()));
    let empty_kwargs = || RawValue::from_string("{}".into()).map_err(|e| BadJson(e.to_string()));
    if body.iter().all(|b| is_json_space(*b)) {
        return Ok(CallArgs {
            args: empty_args()?,
            kwargs: empty_kwargs()?,
        });
    }
    // An array is passed on as the client wrote it: checked, not rebuilt.
    if body.iter().find(|b| !is_json_space(**b)) == Some(&b'[') {
        let text = std::str::from_utf8(body).map_err(|e| BadJson(e.to_string()))?;
        let args = RawValue::from_string(text.trim_matches(|c| is_json_space(c as u8)).to_owned())
            .map_err(|e| BadJson(e.to_string()))?;
        return Ok(CallArgs {
            args,
            kwargs: empty_kwargs()?,
        });
    }
    let value: Value = serde_json::from_slice(body).map_err(|e| BadJson(e.to_string()))?;
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
    serde_json::from_slice::<serde::de::IgnoredAny>(body)
        .map(|_| ())
        .map_err(|e| BadJson(e.to_string()))
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
    fn check_json_accepts_one_value_or_nothing() {
        assert!(check_json(b"").is_ok());
        assert!(check_json(b" \n").is_ok());
        assert!(check_json(br#"{"a":[1,2,{"b":null}]}"#).is_ok());
        assert!(check_json(b"{nope").is_err());
        assert!(check_json(b"1 2").is_err());
    }
}
