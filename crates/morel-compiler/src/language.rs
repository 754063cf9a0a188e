//! The source languages a compiled function may be written in.

use std::fmt;
use std::str::FromStr;

use serde::{Deserialize, Serialize};

/// A source language Morel can compile to WebAssembly.
///
/// The guest ABI follows from the language: `c` and `rust` produce WASI command modules
/// (JSON input on stdin, JSON output on stdout); `assemblyscript` produces a core-ABI module
/// (exports `memory`, `alloc`, `handle`); `wat` produces whatever the author wrote, usually
/// the core ABI. The runtime tells them apart by their exports (`_start` vs `handle`).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Language {
    /// WebAssembly text format, assembled in process.
    Wat,
    /// C (C17 with wasi-libc), compiled by clang.
    C,
    /// Rust (edition 2021, one file with `fn main`), compiled by a rustc with a wasm32 WASI target.
    Rust,
    /// AssemblyScript (one file exporting `handle(input: string): string`), compiled by `asc`.
    #[serde(alias = "as")]
    Assemblyscript,
}

impl Language {
    /// Every supported language, in a stable order (the one `doctor` reports in).
    pub const ALL: [Language; 4] = [
        Language::Wat,
        Language::C,
        Language::Rust,
        Language::Assemblyscript,
    ];

    /// The canonical name, as accepted by [`FromStr`] and used on the wire.
    pub fn as_str(self) -> &'static str {
        match self {
            Language::Wat => "wat",
            Language::C => "c",
            Language::Rust => "rust",
            Language::Assemblyscript => "assemblyscript",
        }
    }

    /// The usual file extension of a source file, without the dot.
    pub fn extension(self) -> &'static str {
        match self {
            Language::Wat => "wat",
            Language::C => "c",
            Language::Rust => "rs",
            Language::Assemblyscript => "ts",
        }
    }

    /// The language a file extension (without the dot) suggests, if any.
    pub fn from_extension(ext: &str) -> Option<Language> {
        match ext {
            "wat" => Some(Language::Wat),
            "c" => Some(Language::C),
            "rs" => Some(Language::Rust),
            "ts" => Some(Language::Assemblyscript),
            _ => None,
        }
    }
}

impl fmt::Display for Language {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// A language name that is not one of the supported ones.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("unknown language `{0}`: supported languages are wat, c, rust, assemblyscript (or `as`)")]
pub struct UnknownLanguage(pub String);

impl FromStr for Language {
    type Err = UnknownLanguage;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        match s.trim().to_ascii_lowercase().as_str() {
            "wat" => Ok(Language::Wat),
            "c" => Ok(Language::C),
            "rust" => Ok(Language::Rust),
            "assemblyscript" | "as" => Ok(Language::Assemblyscript),
            _ => Err(UnknownLanguage(s.to_owned())),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_names_and_alias() {
        for lang in Language::ALL {
            assert_eq!(lang.as_str().parse::<Language>(), Ok(lang));
            assert_eq!(lang.to_string(), lang.as_str());
            assert_eq!(Language::from_extension(lang.extension()), Some(lang));
        }
        assert_eq!("as".parse::<Language>(), Ok(Language::Assemblyscript));
        assert_eq!("Rust".parse::<Language>(), Ok(Language::Rust));
    }

    #[test]
    fn unknown_language_lists_supported_ones() {
        let err = "cobol".parse::<Language>().unwrap_err();
        let msg = err.to_string();
        assert!(msg.contains("cobol"), "{msg}");
        for name in ["wat", "c", "rust", "assemblyscript"] {
            assert!(msg.contains(name), "{msg} lacks {name}");
        }
    }

    #[test]
    fn serde_is_lowercase_and_accepts_as() {
        assert_eq!(
            serde_json::to_string(&Language::Assemblyscript).unwrap(),
            "\"assemblyscript\""
        );
        let lang: Language = serde_json::from_str("\"as\"").unwrap();
        assert_eq!(lang, Language::Assemblyscript);
        let lang: Language = serde_json::from_str("\"wat\"").unwrap();
        assert_eq!(lang, Language::Wat);
    }
}
