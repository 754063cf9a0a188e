use morel_core::Digest;

#[derive(Debug, thiserror::Error)]
pub enum AgentError {
    #[error("bundle {0} is not in the blob store")]
    MissingBundle(Digest),
    #[error("bundle {digest} was refused: {source}")]
    Bundle {
        digest: Digest,
        #[source]
        source: morel_bundle::BundleError,
    },
    #[error("installing dependencies of resource {resource}: {source}")]
    Deps {
        resource: String,
        #[source]
        source: morel_runtime_process::DepsError,
    },
    #[error("resource {resource} failed to start: {message}")]
    Start { resource: String, message: String },
    /// The control plane's plan for the release was refused (e.g. it does not fit the budget).
    #[error("{0}")]
    Plan(String),
    #[error("runtime {0} is not supported by this agent yet")]
    UnsupportedRuntime(morel_core::Runtime),
    #[error("{path}: {source}")]
    Io {
        path: std::path::PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error(transparent)]
    Store(#[from] morel_store::StoreError),
}

impl AgentError {
    pub(crate) fn io(path: &std::path::Path) -> impl FnOnce(std::io::Error) -> AgentError + '_ {
        move |source| AgentError::Io {
            path: path.to_owned(),
            source,
        }
    }
}
