//! What can go wrong turning source into a module.

use std::time::Duration;

use crate::Language;

/// Why a compile produced no module.
///
/// `Failed` is the user's fault (their source does not compile) and its text is meant to be
/// shown to them as is; `Unavailable` and `Io` are the operator's (a toolchain is missing or
/// the machine misbehaves).
#[derive(Debug, thiserror::Error)]
pub enum CompileError {
    /// The source is larger than [`CompileLimits::max_source_bytes`](crate::CompileLimits).
    #[error("source is {size} bytes, over the limit of {limit} bytes")]
    TooLarge { size: usize, limit: usize },

    /// The toolchain for the language is not installed or not usable.
    #[error("cannot compile {language}: {reason}")]
    Unavailable { language: Language, reason: String },

    /// The compiler rejected the source. Holds its diagnostics (trimmed, at most about
    /// 16 KiB, with the scratch directory's path replaced by a neutral name).
    #[error("{0}")]
    Failed(String),

    /// The compiler ran longer than [`CompileLimits::timeout`](crate::CompileLimits) and was
    /// killed with its whole process group.
    #[error("compile timed out after {0:?}")]
    TimedOut(Duration),

    /// The module is larger than [`CompileLimits::max_output_bytes`](crate::CompileLimits).
    #[error("compiled module is {size} bytes, over the limit of {limit} bytes")]
    OutputTooLarge { size: u64, limit: u64 },

    /// The host failed around the compile (scratch directory, spawning, reading output).
    #[error("{context}")]
    Io {
        context: String,
        #[source]
        source: std::io::Error,
    },
}

impl CompileError {
    pub(crate) fn io(context: impl Into<String>, source: std::io::Error) -> Self {
        CompileError::Io {
            context: context.into(),
            source,
        }
    }
}
