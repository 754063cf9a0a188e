use std::path::PathBuf;

/// Why a project could not be turned into a manifest. Every variant names the file and,
/// where there is one, the field, so the CLI can point the user at the fix.
#[derive(Debug, thiserror::Error)]
pub enum ManifestError {
    #[error("{path}: {source}")]
    Io {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("{file}: field `{field}`: {message}")]
    Field {
        file: String,
        field: String,
        message: String,
    },
    #[error("{file}:{line}: {message}")]
    Syntax {
        file: String,
        line: u64,
        message: String,
    },
    #[error(
        "no deployable functions found in {dir}: add Python files with top-level functions, a Node package (index.js or package.json \"main\"), a metacall.json or a morel.toml"
    )]
    Empty { dir: PathBuf },
    #[error("could not run {program} for discovery: {message}")]
    Tool { program: String, message: String },
    #[error("invalid manifest: {0}")]
    Invalid(String),
}

impl ManifestError {
    pub(crate) fn field(
        file: impl Into<String>,
        field: impl Into<String>,
        message: impl Into<String>,
    ) -> Self {
        ManifestError::Field {
            file: file.into(),
            field: field.into(),
            message: message.into(),
        }
    }
}
