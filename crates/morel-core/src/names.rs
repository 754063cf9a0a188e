//! Validated names. Names end up in URLs, file paths and process environments, so they are
//! checked once, at the edge, and carried as types afterwards.

use std::fmt;
use std::str::FromStr;

use serde::{Deserialize, Serialize};

#[derive(Debug, thiserror::Error)]
#[error("invalid {kind} {value:?}: {reason}")]
pub struct NameError {
    pub kind: &'static str,
    pub value: String,
    pub reason: &'static str,
}

/// DNS-label style: lowercase letters, digits and `-`/`_`, starting with a letter or digit.
fn check_label(kind: &'static str, s: &str, max: usize) -> Result<(), NameError> {
    let err = |reason| NameError {
        kind,
        value: s.to_owned(),
        reason,
    };
    if s.is_empty() {
        return Err(err("must not be empty"));
    }
    if s.len() > max {
        return Err(err("is too long"));
    }
    let first = s.as_bytes()[0];
    if !(first.is_ascii_lowercase() || first.is_ascii_digit()) {
        return Err(err("must start with a lowercase letter or digit"));
    }
    if !s
        .bytes()
        .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-' || b == b'_')
    {
        return Err(err(
            "may only contain lowercase letters, digits, '-' and '_'",
        ));
    }
    Ok(())
}

macro_rules! label_name {
    ($(#[$doc:meta])* $name:ident, $kind:literal, $max:expr) => {
        $(#[$doc])*
        #[derive(Clone, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
        #[serde(try_from = "String", into = "String")]
        pub struct $name(String);

        impl $name {
            pub fn as_str(&self) -> &str {
                &self.0
            }
        }

        impl FromStr for $name {
            type Err = NameError;
            fn from_str(s: &str) -> Result<Self, Self::Err> {
                check_label($kind, s, $max)?;
                Ok(Self(s.to_owned()))
            }
        }

        impl TryFrom<String> for $name {
            type Error = NameError;
            fn try_from(s: String) -> Result<Self, Self::Error> {
                check_label($kind, &s, $max)?;
                Ok(Self(s))
            }
        }

        impl From<$name> for String {
            fn from(n: $name) -> String {
                n.0
            }
        }

        impl fmt::Display for $name {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str(&self.0)
            }
        }

        impl fmt::Debug for $name {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                fmt::Debug::fmt(&self.0, f)
            }
        }

        impl AsRef<str> for $name {
            fn as_ref(&self) -> &str {
                &self.0
            }
        }
    };
}

label_name!(
    /// An app's name: the `suffix` of seed 000's call path.
    AppName, "app name", 63
);
label_name!(
    /// A tenant: the `prefix` of the call path.
    Namespace, "namespace", 63
);
label_name!(
    /// A resource (endpoint) of an app.
    ResourceName, "resource name", 63
);

impl Namespace {
    pub fn default_namespace() -> Self {
        Namespace("default".to_owned())
    }
}

impl AppName {
    /// Turns an arbitrary project or directory name into a valid app name
    /// (`Hello_World.py` → `hello_world-py`), or `None` when nothing usable is left.
    pub fn slugify(raw: &str) -> Option<Self> {
        let mut out = String::new();
        for c in raw.chars() {
            let c = c.to_ascii_lowercase();
            if c.is_ascii_lowercase() || c.is_ascii_digit() || c == '_' {
                out.push(c);
            } else if !out.ends_with('-') {
                out.push('-');
            }
        }
        let trimmed = out.trim_matches(|c| c == '-' || c == '_');
        let trimmed: String = trimmed.chars().take(63).collect();
        trimmed.parse().ok()
    }
}

/// A function's name inside an app: an identifier, optionally `Class.method`.
#[derive(Clone, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(try_from = "String", into = "String")]
pub struct FunctionName(String);

impl FunctionName {
    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl FromStr for FunctionName {
    type Err = NameError;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        let err = |reason| NameError {
            kind: "function name",
            value: s.to_owned(),
            reason,
        };
        if s.is_empty() || s.len() > 128 {
            return Err(err("must be 1 to 128 characters"));
        }
        let ident = |p: &str| {
            let mut chars = p.chars();
            matches!(chars.next(), Some(c) if c.is_ascii_alphabetic() || c == '_' || c == '$')
                && chars.all(|c| c.is_ascii_alphanumeric() || c == '_' || c == '$')
        };
        let parts: Vec<&str> = s.split('.').collect();
        if parts.len() > 2 || !parts.iter().all(|p| ident(p)) {
            return Err(err("must be an identifier or Class.method"));
        }
        Ok(FunctionName(s.to_owned()))
    }
}

impl TryFrom<String> for FunctionName {
    type Error = NameError;
    fn try_from(s: String) -> Result<Self, Self::Error> {
        s.parse()
    }
}

impl From<FunctionName> for String {
    fn from(n: FunctionName) -> String {
        n.0
    }
}

impl fmt::Display for FunctionName {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

impl fmt::Debug for FunctionName {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fmt::Debug::fmt(&self.0, f)
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    #[test]
    fn app_names() {
        assert!("hello-python".parse::<AppName>().is_ok());
        assert!("Hello".parse::<AppName>().is_err());
        assert!("../x".parse::<AppName>().is_err());
        assert!("".parse::<AppName>().is_err());
        assert_eq!(AppName::slugify("My App.py").unwrap().as_str(), "my-app-py");
        assert!(AppName::slugify("...").is_none());
    }

    #[test]
    fn function_names() {
        assert!("greet".parse::<FunctionName>().is_ok());
        assert!("Model.predict".parse::<FunctionName>().is_ok());
        assert!("a.b.c".parse::<FunctionName>().is_err());
        assert!("1abc".parse::<FunctionName>().is_err());
        assert!("a b".parse::<FunctionName>().is_err());
    }
}
