//! Typed rows for environments (seed 003): environments of an app, git deploy requests and
//! their recorded steps, sealed secrets and TLS certificates.

use morel_core::DeployId;
pub use morel_core::{DeployStatus, EnvironmentKind, EnvironmentStatus};

use crate::AppKey;

/// One environment of an app. Its releases, resources and instances are stored under its
/// host app key (the app itself for production, `{app}--{env}` for a preview).
#[derive(Clone, Debug, PartialEq)]
pub struct EnvironmentRow {
    pub app: AppKey,
    pub name: String,
    pub kind: EnvironmentKind,
    pub branch: Option<String>,
    pub repo_url: Option<String>,
    pub status: EnvironmentStatus,
    pub url: Option<String>,
    pub error: Option<String>,
    pub created_at: i64,
    pub updated_at: i64,
}

/// A git deploy request. Written by the API (created) and the deploy worker (everything
/// else); the worker records what each step produced here so a resumed deploy reuses it.
#[derive(Clone, Debug, PartialEq)]
pub struct DeployRow {
    pub id: DeployId,
    pub app: AppKey,
    pub repo_url: String,
    /// The requested branch; `None` means the app's main branch.
    pub branch: Option<String>,
    /// Set by the request to change the app's main branch.
    pub main_branch: Option<String>,
    /// Resolved by the worker's first step.
    pub env: Option<String>,
    pub digest: Option<String>,
    pub release: Option<i64>,
    pub status: DeployStatus,
    pub error: Option<String>,
    /// How many times a worker picked the request up (more than 1 after a crash).
    pub attempts: i64,
    pub created_at: i64,
    pub updated_at: i64,
}

/// A finished step of a deploy; at most one per (deploy, step).
#[derive(Clone, Debug, PartialEq)]
pub struct DeployStepRow {
    pub deploy_id: DeployId,
    pub seq: i64,
    pub step: String,
    pub detail: String,
    pub at: i64,
}

/// A secret, sealed by the control plane's key; the store never sees its value.
#[derive(Clone, Debug, PartialEq)]
pub struct SecretRow {
    pub app: AppKey,
    pub env: String,
    pub name: String,
    pub sealed: String,
    pub updated_at: i64,
}

/// An environment's TLS certificate chain (PEM) and its private key, sealed.
#[derive(Clone, Debug, PartialEq)]
pub struct CertificateRow {
    pub app: AppKey,
    pub env: String,
    pub cert_pem: String,
    pub key_sealed: String,
    pub updated_at: i64,
}
