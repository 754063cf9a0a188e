//! Persistent state behind one trait, [`Store`]: apps, releases, resources, functions,
//! instances, logs, bundle metadata, trusted keys and uploaded packages.
//!
//! One implementation, [`SqlStore`], runs on SQLite (the embedded default) and on PostgreSQL
//! (pgmq for the queues), chosen by a database URL ([`open`]); every statement is written once
//! (`sql/`). [`transfer`] moves an installation from one to the other. Rows are typed (`rows.rs`) and separate from API
//! views and wire messages. This crate knows nothing about HTTP, processes or bundles' bytes
//! (those live on disk in the blob directory, owned by the control plane).

mod env_rows;
mod error;
mod lease;
mod migrations;
pub mod rows;
mod sql;
pub mod transfer;

use async_trait::async_trait;
use morel_core::{
    AppName, DeployId, Digest, ExecutionId, InstanceId, Namespace, NodeId, PlacementState,
    ReleaseStatus,
};

pub use env_rows::*;
pub use error::StoreError;
pub use lease::Lease;
pub use rows::*;
pub use sql::SqlStore;

pub type Result<T, E = StoreError> = std::result::Result<T, E>;

/// Opens the store a database URL names: `postgres://…` or `postgresql://…` for PostgreSQL,
/// `sqlite://PATH` or a bare file path for SQLite.
pub async fn open(url: &str) -> Result<std::sync::Arc<dyn Store>> {
    if is_postgres_url(url) {
        return Ok(std::sync::Arc::new(SqlStore::connect_postgres(url).await?));
    }
    let path = url.strip_prefix("sqlite://").unwrap_or(url);
    if path.is_empty() || path.contains("://") {
        return Err(StoreError::BadUrl(redact_url(url)));
    }
    Ok(std::sync::Arc::new(
        SqlStore::open_sqlite(std::path::Path::new(path)).await?,
    ))
}

pub fn is_postgres_url(url: &str) -> bool {
    url.starts_with("postgres://") || url.starts_with("postgresql://")
}

/// A database URL with any password replaced, fit for logs and error messages.
pub fn redact_url(url: &str) -> String {
    let Some((scheme, rest)) = url.split_once("://") else {
        return url.to_owned();
    };
    let (authority, tail) = match rest.find('/') {
        Some(i) => rest.split_at(i),
        None => (rest, ""),
    };
    match authority.rsplit_once('@') {
        Some((userinfo, host)) => {
            let user = userinfo.split(':').next().unwrap_or("");
            let hidden = if userinfo.contains(':') { ":***" } else { "" };
            format!("{scheme}://{user}{hidden}@{host}{tail}")
        }
        None => url.to_owned(),
    }
}

/// Everything Morel persists. Implementations must be safe to share between tasks and, for
/// the PostgreSQL one, between processes: every multi-row change is one transaction.
#[async_trait]
pub trait Store: Send + Sync + 'static {
    // Apps.
    /// Creates the app if it does not exist; returns it either way.
    async fn ensure_app(&self, app: &AppKey) -> Result<AppRow>;
    async fn get_app(&self, app: &AppKey) -> Result<Option<AppRow>>;
    async fn list_apps(&self) -> Result<Vec<AppRow>>;
    /// Deletes the app and everything that belongs to it (releases, resources, functions,
    /// instances, logs). Returns false when there was no such app. Its identity
    /// ([`Store::app_uid`]) is kept: an app created again under the same key runs as before.
    async fn delete_app(&self, app: &AppKey) -> Result<bool>;
    async fn set_active_release(&self, app: &AppKey, number: Option<i64>) -> Result<()>;

    // Releases.
    /// Creates the next release (`v{max+1}`) atomically.
    async fn create_release(
        &self,
        app: &AppKey,
        env: &str,
        digest: &Digest,
        manifest_json: &str,
        config_json: &str,
    ) -> Result<ReleaseRow>;
    async fn get_release(&self, app: &AppKey, number: i64) -> Result<Option<ReleaseRow>>;
    async fn list_releases(&self, app: &AppKey) -> Result<Vec<ReleaseRow>>;
    async fn set_release_status(
        &self,
        app: &AppKey,
        number: i64,
        status: ReleaseStatus,
        error: Option<&str>,
    ) -> Result<()>;

    // Resources (reconcile state, seed 002).
    async fn upsert_resource(&self, row: &ResourceRow) -> Result<()>;
    async fn list_resources(&self, app: &AppKey) -> Result<Vec<ResourceRow>>;
    async fn delete_resource(&self, app: &AppKey, resource: &str) -> Result<()>;

    // Functions (signatures as reported by the workers).
    async fn replace_functions(
        &self,
        app: &AppKey,
        resource: &str,
        functions: &[FunctionRow],
    ) -> Result<()>;
    async fn list_functions(&self, app: &AppKey) -> Result<Vec<FunctionRow>>;

    // Instances.
    async fn upsert_instance(&self, row: &InstanceRow) -> Result<()>;
    async fn list_instances(&self, app: Option<&AppKey>) -> Result<Vec<InstanceRow>>;
    async fn delete_instance(&self, id: InstanceId) -> Result<()>;

    // Logs.
    async fn append_logs(&self, lines: &[NewLogLine]) -> Result<()>;
    /// Lines of an app with id > `after_id` and timestamp >= `since_ms`, oldest first.
    async fn read_logs(
        &self,
        app: &AppKey,
        after_id: i64,
        since_ms: i64,
        limit: i64,
    ) -> Result<Vec<LogRow>>;
    /// Keeps the newest `keep` lines of the app and drops lines older than `min_ts`.
    async fn prune_logs(&self, app: &AppKey, keep: i64, min_ts: i64) -> Result<u64>;

    // Bundles (metadata; the bytes live in the blob directory).
    async fn put_blob(&self, row: &BlobRow) -> Result<()>;
    async fn get_blob(&self, digest: &Digest) -> Result<Option<BlobRow>>;

    /// Stores a bundle's bytes under its digest, in chunks, so that any server can serve it
    /// (idempotent: bytes already stored are kept).
    async fn put_blob_content(&self, digest: &Digest, bytes: &[u8]) -> Result<()>;
    /// A bundle's bytes; `None` when they are not (or no longer) stored.
    async fn get_blob_content(&self, digest: &Digest) -> Result<Option<Vec<u8>>>;
    async fn delete_blob_content(&self, digest: &Digest) -> Result<()>;

    // Platform settings every server shares (the admin token's hash, the sealed secrets key).
    /// Records `value` under `name` unless a value is there already; returns the value that
    /// is stored (this one, or the one another server recorded first).
    async fn put_setting_if_absent(&self, name: &str, value: &str) -> Result<String>;
    async fn get_setting(&self, name: &str) -> Result<Option<String>>;
    /// Records `value` under `name`, replacing what was there.
    async fn set_setting(&self, name: &str, value: &str) -> Result<()>;

    // Trusted signing keys.
    async fn trust_key(&self, row: &KeyRow) -> Result<()>;
    async fn list_keys(&self) -> Result<Vec<KeyRow>>;
    async fn remove_key(&self, key_id: &str) -> Result<bool>;

    // Seed 000 package uploads waiting for `deploy/create`.
    async fn put_package(&self, row: &PackageRow) -> Result<()>;
    async fn get_package(&self, app: &AppKey) -> Result<Option<PackageRow>>;
    async fn delete_package(&self, app: &AppKey) -> Result<()>;

    // Durable queues with pgmq semantics.
    async fn queue_send(&self, queue: &str, message: &serde_json::Value) -> Result<i64>;
    /// Reads up to `qty` visible messages, hiding each for `vt_ms` and counting the read.
    async fn queue_read(&self, queue: &str, vt_ms: i64, qty: i64) -> Result<Vec<QueueMessage>>;
    async fn queue_delete(&self, queue: &str, msg_id: i64) -> Result<bool>;
    /// Moves a message to the archive (`dead` marks a dead letter).
    async fn queue_archive(&self, queue: &str, msg_id: i64, dead: bool) -> Result<bool>;
    /// Messages waiting (visible or not) and the age in ms of the oldest.
    async fn queue_depth(&self, queue: &str) -> Result<(i64, i64)>;
    async fn queue_archived(&self, queue: &str) -> Result<Vec<(QueueMessage, bool)>>;
    /// Makes every hidden message of `queue` visible again (its readers are known to be gone:
    /// a restart of the only process reading it); returns how many.
    async fn queue_release_all(&self, queue: &str) -> Result<u64>;

    // Compiled (wasm) functions and their executions (seed 001).
    /// A name is unique: a second function of one name is [`StoreError::Duplicate`].
    async fn insert_wasm_function(&self, row: &WasmFunctionRow) -> Result<()>;
    /// Inserts `row` in place of the `FAILED` function of the same name, if there is one (it
    /// and its executions are deleted in the same transaction); returns the id it replaced. A
    /// function of that name in any other state is [`StoreError::Duplicate`], and nothing
    /// changes.
    async fn replace_failed_wasm_function(&self, row: &WasmFunctionRow) -> Result<Option<String>>;
    async fn get_wasm_function(&self, id: &str, with_wasm: bool)
    -> Result<Option<WasmFunctionRow>>;
    /// The function of that name, without its wasm binary.
    async fn get_wasm_function_by_name(&self, name: &str) -> Result<Option<WasmFunctionRow>>;
    /// Deletes a function and its executions; false when there was no such function.
    async fn delete_wasm_function(&self, id: &str) -> Result<bool>;
    async fn list_wasm_functions(&self) -> Result<Vec<WasmFunctionRow>>;
    async fn set_wasm_function_status(&self, id: &str, status: WasmFunctionStatus) -> Result<()>;
    /// Applies a compile result and deletes its queue message in one transaction. A function
    /// already `READY` or `FAILED` is left as it is, so a redelivered result changes nothing.
    /// Returns whether the function changed.
    async fn apply_compile_result(
        &self,
        id: &str,
        outcome: &CompileOutcome,
        queue: &str,
        msg_id: i64,
    ) -> Result<bool>;
    async fn insert_execution(&self, row: &ExecutionRow) -> Result<()>;
    /// Records the outcome of a `QUEUED` or `RUNNING` execution; one already finished or
    /// cancelled is left as it is (a late result of a cancelled job is discarded).
    async fn finish_execution(
        &self,
        id: ExecutionId,
        status: ExecutionStatus,
        output: Option<&str>,
        error: Option<&str>,
    ) -> Result<()>;
    /// Inserts the jobs' `QUEUED` executions and sends their messages to `queue`, all in one
    /// transaction (a job is never queued without its execution nor the other way round).
    /// Returns the message ids, in the order of `jobs`. Callers batch concurrent jobs into one
    /// call: one commit for many.
    async fn enqueue_jobs(&self, queue: &str, jobs: &[NewJob]) -> Result<Vec<i64>>;
    /// `QUEUED → RUNNING` for each of `ids`, in one statement; returns the ids that moved (the
    /// others were cancelled, already ran, or are running).
    async fn start_executions(&self, ids: &[ExecutionId]) -> Result<Vec<ExecutionId>>;
    /// Records each job's outcome (as `finish_execution`: a cancelled or finished execution is
    /// left as it is) and deletes its message, all in one transaction.
    async fn finish_jobs(&self, queue: &str, jobs: &[FinishedJob]) -> Result<()>;
    async fn get_execution(&self, id: ExecutionId) -> Result<Option<ExecutionRow>>;
    /// `QUEUED|RUNNING → CANCELLED`; false when it had already finished.
    async fn cancel_execution(&self, id: ExecutionId) -> Result<bool>;
    async fn list_executions(&self, function_id: &str, limit: i64) -> Result<Vec<ExecutionRow>>;

    // Budgets and scale of apps (seed 004).
    async fn get_budget(&self, app: &AppKey) -> Result<Option<BudgetRow>>;
    /// Inserts or replaces the app's whole row.
    async fn put_budget(&self, row: &BudgetRow) -> Result<()>;
    async fn delete_budget(&self, app: &AppKey) -> Result<()>;
    // Environments (seed 003): environments, git deploy requests, secrets, certificates.
    async fn upsert_environment(&self, row: &EnvironmentRow) -> Result<()>;
    async fn get_environment(&self, app: &AppKey, name: &str) -> Result<Option<EnvironmentRow>>;
    /// One app's environments, or every app's with `None`.
    async fn list_environments(&self, app: Option<&AppKey>) -> Result<Vec<EnvironmentRow>>;
    /// Deletes an environment with its secrets and certificate; false when it did not exist.
    async fn delete_environment(&self, app: &AppKey, name: &str) -> Result<bool>;
    async fn create_deploy(&self, row: &DeployRow) -> Result<()>;
    async fn get_deploy(&self, id: DeployId) -> Result<Option<DeployRow>>;
    /// Writes the worker-owned fields (env, digest, release, status, error, attempts).
    async fn update_deploy(&self, row: &DeployRow) -> Result<()>;
    /// Records a finished step once per (deploy, step); false when it was already recorded.
    async fn record_deploy_step(
        &self,
        deploy_id: DeployId,
        step: &str,
        detail: &str,
    ) -> Result<bool>;
    async fn list_deploy_steps(&self, deploy_id: DeployId) -> Result<Vec<DeployStepRow>>;
    async fn put_secret(&self, row: &SecretRow) -> Result<()>;
    async fn list_secrets(&self, app: &AppKey, env: &str) -> Result<Vec<SecretRow>>;
    async fn delete_secret(&self, app: &AppKey, env: &str, name: &str) -> Result<bool>;
    async fn put_certificate(&self, row: &CertificateRow) -> Result<()>;
    async fn list_certificates(&self) -> Result<Vec<CertificateRow>>;
    /// pgmq's `set_vt`: hides a message for `vt_ms` from now; false when it is gone.
    async fn queue_set_vt(&self, queue: &str, msg_id: i64, vt_ms: i64) -> Result<bool>;
    // Nodes (many machines): agents register, heartbeat, and are marked lost after a TTL.
    /// Registers a node or updates its address and capacity; it is `ready`, heartbeat now.
    async fn register_node(&self, row: &NodeRow) -> Result<()>;
    /// Records a heartbeat (a `lost` node becomes `ready` again); false for an unknown node.
    async fn heartbeat_node(&self, id: &NodeId, now_ms: i64) -> Result<bool>;
    async fn list_nodes(&self) -> Result<Vec<NodeRow>>;
    /// Marks `lost` every `ready` node whose last heartbeat is older than `before_ms`;
    /// returns their ids (each loss is reported once).
    async fn mark_lost_nodes(&self, before_ms: i64) -> Result<Vec<NodeId>>;
    /// Tries to become the one process that runs `role` (reconcile, schedule). On PostgreSQL
    /// this is a session advisory lock on a connection of its own: it is released when the
    /// holder's process or connection dies, so another server takes over. On SQLite (one
    /// process per file) it is always granted. `None` while someone else holds it.
    async fn try_lead(&self, role: &str) -> Result<Option<Lease>>;

    // Placements (many machines): the scheduler's decisions, reported on by agents.
    async fn insert_placement(&self, row: &PlacementRow) -> Result<()>;
    /// Every placement, or those of one node.
    async fn list_placements(&self, node: Option<&NodeId>) -> Result<Vec<PlacementRow>>;
    /// An agent's report on its placement; false when the placement is not (or no longer) on
    /// that node.
    async fn report_placement(
        &self,
        id: InstanceId,
        node: &NodeId,
        state: PlacementState,
        endpoint: Option<&str>,
        error: Option<&str>,
    ) -> Result<bool>;
    async fn delete_placement(&self, id: InstanceId) -> Result<()>;

    // App identities (`app_identities`, migration 7): the unprivileged Unix uid (and gid, the
    // same number) each app's workers run as. Identities are never freed, not even by
    // `delete_app`: an app created again gets its old uid back, and a uid once given to an
    // app is never handed to a different one (files it left behind stay out of others' reach).
    /// The uid recorded for `app`. If there is none, records and returns the lowest uid of
    /// `first..first + count` that no other app has (uids from `u32::MAX` on are never
    /// given). A recorded uid is returned as it is, even when the range has since changed.
    /// Safe under concurrency, across processes too: different apps never get the same uid
    /// and concurrent calls for one app all return the same one. A full range is
    /// [`StoreError::UidRangeExhausted`].
    async fn app_uid(&self, app: &AppKey, first: u32, count: u32) -> Result<u32>;
    /// Every recorded identity (deleted apps' included), lowest uid first.
    async fn list_app_uids(&self) -> Result<Vec<(AppKey, u32)>>;
}

/// An app's identity: namespace (the call path's prefix) and name (its suffix).
#[derive(
    Clone, Debug, PartialEq, Eq, Hash, PartialOrd, Ord, serde::Serialize, serde::Deserialize,
)]
pub struct AppKey {
    pub namespace: Namespace,
    pub name: AppName,
}

impl AppKey {
    pub fn new(namespace: Namespace, name: AppName) -> Self {
        AppKey { namespace, name }
    }

    pub fn in_default(name: AppName) -> Self {
        AppKey {
            namespace: Namespace::default_namespace(),
            name,
        }
    }
}

impl std::fmt::Display for AppKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}/{}", self.namespace, self.name)
    }
}

#[cfg(test)]
mod tests {
    #[test]
    fn redacts_passwords_only() {
        assert_eq!(
            super::redact_url("postgres://morel:s3cret@db:5432/morel"),
            "postgres://morel:***@db:5432/morel"
        );
        assert_eq!(
            super::redact_url("postgres://postgres@127.0.0.1/test"),
            "postgres://postgres@127.0.0.1/test"
        );
        assert_eq!(super::redact_url("/var/morel.db"), "/var/morel.db");
    }
}
