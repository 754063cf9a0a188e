//! Decoding what a request's URL says about a call: its query string and the values of a
//! route's path parameters. Both come from the client as they are, so both are parsed here
//! with explicit errors (a 400), never lossily.

/// Why a query string or a path parameter cannot be decoded (a 400 with this text).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{0}")]
pub struct BadUrl(String);

/// Decodes a query string (`a=1&b=x%20y&c`, without the `?`) into its `(name, value)` pairs,
/// in order, repetitions kept: `+` is a space, `%XX` a byte, and the decoded bytes must be
/// UTF-8. Empty pieces (`a=1&&b=2`) are skipped; a piece without `=` is a name whose value is
/// empty; a piece with an empty name is refused.
pub fn parse_query(query: &str) -> Result<Vec<(String, String)>, BadUrl> {
    let mut out = Vec::new();
    for piece in query.split('&') {
        if piece.is_empty() {
            continue;
        }
        let (name, value) = piece.split_once('=').unwrap_or((piece, ""));
        let name =
            decode(name, true).map_err(|e| BadUrl(format!("query parameter {name:?}: {e}")))?;
        if name.is_empty() {
            return Err(BadUrl(format!("query parameter {piece:?} has no name")));
        }
        let value =
            decode(value, true).map_err(|e| BadUrl(format!("query parameter {name:?}: {e}")))?;
        out.push((name, value));
    }
    Ok(out)
}

/// Decodes one path segment (the value of a route's path parameter): `%XX` is a byte, `+`
/// stays a `+`, and the decoded bytes must be UTF-8.
pub fn decode_segment(name: &str, raw: &str) -> Result<String, BadUrl> {
    decode(raw, false).map_err(|e| BadUrl(format!("path parameter {name:?}: {e}")))
}

fn decode(text: &str, plus_is_space: bool) -> Result<String, &'static str> {
    if !text.contains(['%', '+']) {
        return Ok(text.to_owned());
    }
    let bytes = text.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        match bytes[i] {
            b'%' => {
                let hex = |b: Option<&u8>| b.and_then(|b| (*b as char).to_digit(16));
                match (hex(bytes.get(i + 1)), hex(bytes.get(i + 2))) {
                    (Some(hi), Some(lo)) => out.push((hi * 16 + lo) as u8),
                    _ => return Err("'%' must be followed by two hexadecimal digits"),
                }
                i += 3;
            }
            b'+' if plus_is_space => {
                out.push(b' ');
                i += 1;
            }
            b => {
                out.push(b);
                i += 1;
            }
        }
    }
    String::from_utf8(out).map_err(|_| "the decoded text is not UTF-8")
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    fn pairs(q: &str) -> Vec<(String, String)> {
        parse_query(q).unwrap()
    }

    #[test]
    fn queries_decode_in_order_with_repetitions() {
        let p = |a: &str, b: &str| (a.to_owned(), b.to_owned());
        assert_eq!(pairs(""), vec![]);
        assert_eq!(pairs("a=1&b=x%20y+z"), vec![p("a", "1"), p("b", "x y z")]);
        assert_eq!(
            pairs("tag=a&tag=b&&flag"),
            vec![p("tag", "a"), p("tag", "b"), p("flag", "")]
        );
        assert_eq!(pairs("q=a%3Db%26c"), vec![p("q", "a=b&c")]);
        assert_eq!(pairs("caf%C3%A9=%E2%82%AC"), vec![p("café", "€")]);
        assert_eq!(pairs("a==1"), vec![p("a", "=1")]);
    }

    #[test]
    fn bad_queries_are_refused_with_the_reason() {
        for (q, why) in [
            ("a=%zz", "two hexadecimal digits"),
            ("a=%4", "two hexadecimal digits"),
            ("a=%ff", "not UTF-8"),
            ("=1", "has no name"),
            ("%ff=1", "not UTF-8"),
        ] {
            let e = parse_query(q).unwrap_err().to_string();
            assert!(e.contains(why), "{q}: {e}");
        }
    }

    #[test]
    fn path_segments_keep_their_plus() {
        assert_eq!(decode_segment("x", "a+b%2Fc").unwrap(), "a+b/c");
        assert_eq!(decode_segment("x", "42").unwrap(), "42");
        let e = decode_segment("item_id", "%C3").unwrap_err().to_string();
        assert!(e.contains("path parameter \"item_id\""), "{e}");
    }
}
