//! Route paths: what `@api.get("/items/{item_id}")` and `morel.toml`'s `routes` mean.
//!
//! A route path is `/` followed by segments separated by `/`. A segment is either literal text
//! or `{name}`, a path parameter: it matches one non-empty segment of the request path, whose
//! percent-decoded text is bound to the function's argument `name`. A parameter is a whole
//! segment (`/files/{name}.txt` is refused), its name is an identifier, and a path names each
//! parameter once. Literal segments are compared with the request path as sent, byte for byte.
//!
//! The manifest checks these rules when it is built and read; the gateway matches requests
//! with [`RoutePath::match_path`], one comparison per segment (no regular expression).

use std::cmp::Ordering;
use std::fmt;
use std::str::FromStr;

/// One segment of a route path.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Segment {
    /// Matches exactly this text.
    Literal(String),
    /// Matches any one non-empty segment; its value is the argument of this name.
    Param(String),
}

/// A validated route path such as `/items/{item_id}`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct RoutePath {
    text: String,
    segments: Vec<Segment>,
}

/// Why a route path is not valid (the message names the rule).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("route path {path:?}: {reason}")]
pub struct BadRoutePath {
    path: String,
    reason: String,
}

impl FromStr for RoutePath {
    type Err = BadRoutePath;

    fn from_str(path: &str) -> Result<Self, Self::Err> {
        let bad = |reason: String| BadRoutePath {
            path: path.to_owned(),
            reason,
        };
        let Some(rest) = path.strip_prefix('/') else {
            return Err(bad("must start with '/'".into()));
        };
        if path.contains(|c: char| c.is_whitespace() || c.is_control() || c == '?' || c == '#') {
            return Err(bad(
                "must hold no spaces, control characters, '?' or '#'".into()
            ));
        }
        let mut segments = Vec::new();
        for seg in rest.split('/') {
            let param = seg.strip_prefix('{').and_then(|s| s.strip_suffix('}'));
            match param {
                Some(name) => {
                    if !is_identifier(name) {
                        return Err(bad(format!(
                            "parameter {{{name}}} must be named like an argument (letters, digits, '_', not starting with a digit)"
                        )));
                    }
                    if segments
                        .iter()
                        .any(|s| matches!(s, Segment::Param(p) if p == name))
                    {
                        return Err(bad(format!("parameter {{{name}}} appears twice")));
                    }
                    segments.push(Segment::Param(name.to_owned()));
                }
                None if seg.contains(['{', '}']) => {
                    return Err(bad(format!(
                        "segment {seg:?}: a parameter must be a whole segment, like /items/{{id}}"
                    )));
                }
                None => segments.push(Segment::Literal(seg.to_owned())),
            }
        }
        Ok(RoutePath {
            text: path.to_owned(),
            segments,
        })
    }
}

fn is_identifier(s: &str) -> bool {
    let mut chars = s.chars();
    chars
        .next()
        .is_some_and(|c| c.is_ascii_alphabetic() || c == '_')
        && chars.all(|c| c.is_ascii_alphanumeric() || c == '_')
}

impl fmt::Display for RoutePath {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.text)
    }
}

impl RoutePath {
    /// The path as written.
    pub fn as_str(&self) -> &str {
        &self.text
    }

    pub fn segments(&self) -> &[Segment] {
        &self.segments
    }

    /// Whether the path has no parameter (it matches exactly its own text).
    pub fn is_literal(&self) -> bool {
        self.segments
            .iter()
            .all(|s| matches!(s, Segment::Literal(_)))
    }

    /// The names of its parameters, in order.
    pub fn params(&self) -> impl Iterator<Item = &str> {
        self.segments.iter().filter_map(|s| match s {
            Segment::Param(p) => Some(p.as_str()),
            Segment::Literal(_) => None,
        })
    }

    /// The path with every parameter written `{}`: two routes of one method with the same
    /// shape would match the same requests.
    pub fn shape(&self) -> String {
        let mut out = String::new();
        for s in &self.segments {
            out.push('/');
            match s {
                Segment::Literal(l) => out.push_str(l),
                Segment::Param(_) => out.push_str("{}"),
            }
        }
        out
    }

    /// Matches a request path (as sent, before percent-decoding, without its query). On a
    /// match, `values` holds the raw text of each parameter, in the order of
    /// [`RoutePath::params`], and the answer is true; otherwise `values` is left empty.
    pub fn match_path<'a>(&self, path: &'a str, values: &mut Vec<&'a str>) -> bool {
        values.clear();
        let Some(rest) = path.strip_prefix('/') else {
            return false;
        };
        let mut parts = rest.split('/');
        for seg in &self.segments {
            let Some(part) = parts.next() else {
                values.clear();
                return false;
            };
            let ok = match seg {
                Segment::Literal(l) => l == part,
                Segment::Param(_) => {
                    values.push(part);
                    !part.is_empty()
                }
            };
            if !ok {
                values.clear();
                return false;
            }
        }
        if parts.next().is_some() {
            values.clear();
            return false;
        }
        true
    }

    /// Orders routes from the most specific: segment by segment, a literal before a
    /// parameter. The gateway tries routes with parameters in this order, so
    /// `/items/new` wins over `/items/{id}` and `/a/{x}/c` over `/a/{x}/{y}`.
    pub fn specificity(&self, other: &RoutePath) -> Ordering {
        for (a, b) in self.segments.iter().zip(&other.segments) {
            match (a, b) {
                (Segment::Literal(_), Segment::Param(_)) => return Ordering::Less,
                (Segment::Param(_), Segment::Literal(_)) => return Ordering::Greater,
                _ => {}
            }
        }
        other.segments.len().cmp(&self.segments.len())
    }
}

/// Splits a route key `"METHOD /path"` (the manifest's `routes` tables) into its method and
/// validated path.
pub fn parse_route_key(key: &str) -> Result<(&str, RoutePath), BadRoutePath> {
    let (method, path) = key.split_once(' ').ok_or_else(|| BadRoutePath {
        path: key.to_owned(),
        reason: "expected \"METHOD /path\"".into(),
    })?;
    Ok((method, path.parse()?))
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    fn p(s: &str) -> RoutePath {
        s.parse().unwrap()
    }

    fn matched<'a>(route: &str, path: &'a str) -> Option<Vec<&'a str>> {
        let mut v = Vec::new();
        p(route).match_path(path, &mut v).then_some(v)
    }

    #[test]
    fn parameters_match_one_non_empty_segment() {
        assert_eq!(matched("/items/{item_id}", "/items/42"), Some(vec!["42"]));
        assert_eq!(
            matched("/a/{x}/b/{y}", "/a/1%202/b/z"),
            Some(vec!["1%202", "z"])
        );
        assert_eq!(matched("/items/{item_id}", "/items/"), None);
        assert_eq!(matched("/items/{item_id}", "/items"), None);
        assert_eq!(matched("/items/{item_id}", "/items/42/x"), None);
        assert_eq!(matched("/items/{item_id}", "/other/42"), None);
        assert_eq!(matched("/checkout", "/checkout"), Some(vec![]));
        assert_eq!(matched("/checkout", "/checkout/"), None);
        assert_eq!(matched("/", "/"), Some(vec![]));
        assert_eq!(matched("/", ""), None);
    }

    #[test]
    fn bad_paths_say_why() {
        for (bad, why) in [
            ("items/{id}", "must start with '/'"),
            ("/items/{id}.json", "a whole segment"),
            ("/items/{}", "named like an argument"),
            ("/items/{1x}", "named like an argument"),
            ("/a/{x}/b/{x}", "appears twice"),
            ("/items/{id", "a whole segment"),
            ("/a b", "no spaces"),
            ("/a?b=1", "'?'"),
        ] {
            let e = bad.parse::<RoutePath>().unwrap_err().to_string();
            assert!(e.contains(why), "{bad}: {e}");
        }
        assert_eq!(
            p("/a/{x}/b/{y_2}").params().collect::<Vec<_>>(),
            ["x", "y_2"]
        );
        assert!(p("/a/b").is_literal());
        assert!(!p("/a/{b}").is_literal());
    }

    #[test]
    fn literal_segments_come_first() {
        let mut routes = [
            p("/items/{id}"),
            p("/items/new"),
            p("/{a}/{b}"),
            p("/{a}/x"),
        ];
        routes.sort_by(|a, b| a.specificity(b));
        let order: Vec<&str> = routes.iter().map(RoutePath::as_str).collect();
        assert_eq!(order, ["/items/new", "/items/{id}", "/{a}/x", "/{a}/{b}"]);
        assert_eq!(p("/items/{id}").shape(), p("/items/{item}").shape());
    }
}
