//! The one implementation of [`Store`], on SQLite and on PostgreSQL alike: every statement is
//! written once, with `$n` placeholders (SQLite reads `$n` as the n-th bound value too), and
//! runs through sqlx's `Any` driver. One module per table family.
//!
//! Where the engines truly differ, the code says so in one place:
//! - opening: `sqlite.rs` (WAL, one writer connection beside the readers) and `postgres.rs`
//!   (the migration lock, the word translations of the shared migrations, pgmq);
//! - durable queues (`queues.rs`): a table on SQLite, pgmq on PostgreSQL;
//! - leadership leases: always granted on SQLite, an advisory lock on PostgreSQL;
//! - the async-jobs hot path on SQLite (`sqlite::enqueue_jobs`, `sqlite::finish_jobs`): one
//!   round trip to the one writer per batch;
//! - release numbering and uid allocation across processes (PostgreSQL locks, see there);
//! - export (from SQLite) and import (into PostgreSQL), by `morel export` / `morel import`.
//!
//! Values are only those `Any` carries: `BIGINT`, `TEXT`, `BLOB`/`BYTEA` (and booleans read
//! from PostgreSQL expressions). Columns that PostgreSQL returns as `INTEGER` decode as `i64`.

mod apps;
mod blobs;
mod budgets;
mod environments;
mod identities;
mod instances;
mod logs;
mod nodes;
mod placements;
mod postgres;
mod queues;
mod releases;
mod resources;
mod sqlite;
mod wasm;

use std::str::FromStr;
use std::sync::Arc;

use async_trait::async_trait;
use morel_core::{
    DeployId, Digest, ExecutionId, InstanceId, NodeId, PlacementState, ReleaseStatus,
};
use sqlx::AnyPool;
use sqlx::any::AnyRow;
use sqlx::{Connection, Row};

use crate::env_rows::*;
use crate::error::Ctx;
use crate::migrations::MIGRATIONS;
use crate::rows::*;
use crate::{AppKey, Result, Store, StoreError};

/// The store: SQLite ([`SqlStore::open_sqlite`], [`SqlStore::in_memory`]) or PostgreSQL
/// ([`SqlStore::connect_postgres`]), chosen once when it is opened.
#[derive(Clone, Debug)]
pub struct SqlStore {
    /// Reads. On SQLite, several connections (WAL lets them run beside the writer).
    read: AnyPool,
    /// Writes. On SQLite one connection: SQLite runs one writer at a time anyway, and writers
    /// that meet on the database lock wait in SQLite's busy handler, which sleeps whole
    /// milliseconds; queued here they are woken the moment the connection is free
    /// (bench/NOTES.md, async jobs). On PostgreSQL the same pool as `read`.
    write: AnyPool,
    backend: Backend,
}

#[derive(Clone, Debug)]
pub(crate) enum Backend {
    Sqlite,
    Postgres(Arc<postgres::Extras>),
}

impl SqlStore {
    /// Opens (creating if needed) a SQLite database file and applies pending migrations.
    pub async fn open_sqlite(path: &std::path::Path) -> Result<Self> {
        sqlite::open(path).await
    }

    /// A private in-memory SQLite database, for tests.
    pub async fn in_memory() -> Result<Self> {
        sqlite::in_memory().await
    }

    /// Connects to `url` (`postgres://user@host:port/db`) and applies pending migrations.
    /// Several processes may do this at once against one database.
    pub async fn connect_postgres(url: &str) -> Result<Self> {
        postgres::connect(url).await
    }

    /// The pool writes go through, for tests that run their own statements.
    pub fn pool(&self) -> &AnyPool {
        &self.write
    }

    pub fn is_postgres(&self) -> bool {
        matches!(self.backend, Backend::Postgres(_))
    }

    /// Closes every connection (waits for those in use to be returned).
    pub async fn close(&self) {
        self.read.close().await;
        self.write.close().await;
    }

    /// Applies the shared migrations not applied yet, all in one transaction. On PostgreSQL
    /// the transaction holds a lock so that servers starting at once apply each exactly once,
    /// and each migration is translated into its dialect first.
    async fn migrate(&self) -> Result<()> {
        let mut conn = self.write.acquire().await.ctx("begin migrations")?;
        let mut tx = conn.begin().await.ctx("begin migrations")?;
        if let Backend::Postgres(_) = self.backend {
            postgres::lock_migrations(&mut tx).await?;
        }
        sqlx::query("CREATE TABLE IF NOT EXISTS morel_migrations (version BIGINT PRIMARY KEY, applied_at BIGINT NOT NULL)")
            .execute(&mut *tx)
            .await
            .ctx("create migrations table")?;
        let applied: Vec<i64> = sqlx::query_scalar("SELECT version FROM morel_migrations")
            .fetch_all(&mut *tx)
            .await
            .ctx("read migrations")?;
        for (version, sql) in MIGRATIONS {
            if applied.contains(version) {
                continue;
            }
            let sql = match self.backend {
                Backend::Sqlite => (*sql).to_owned(),
                Backend::Postgres(_) => postgres::translate(sql),
            };
            sqlx::raw_sql(&sql)
                .execute(&mut *tx)
                .await
                .map_err(|source| StoreError::Migration {
                    version: *version,
                    source,
                })?;
            sqlx::query("INSERT INTO morel_migrations (version, applied_at) VALUES ($1, $2)")
                .bind(version)
                .bind(morel_core::time::now_ms())
                .execute(&mut *tx)
                .await
                .ctx("record migration")?;
            tracing::info!(version, "applied store migration");
        }
        if let Backend::Postgres(_) = self.backend {
            postgres::install_pgmq(&mut tx).await?;
        }
        tx.commit().await.ctx("commit migrations")?;
        Ok(())
    }
}

/// Column decoding helpers shared by the table modules.
pub(crate) fn parse<T: FromStr>(column: &'static str, s: &str) -> Result<T>
where
    T::Err: std::fmt::Display,
{
    s.parse::<T>().map_err(|e| StoreError::Corrupt {
        column,
        message: e.to_string(),
    })
}

/// Decodes a state enum column.
pub(crate) fn parse_state<T>(
    column: &'static str,
    s: String,
    parse: fn(&str) -> Option<T>,
) -> Result<T> {
    parse(&s).ok_or_else(|| StoreError::Corrupt {
        column,
        message: format!("unknown state {s:?}"),
    })
}

pub(crate) fn app_key(row: &AnyRow) -> Result<AppKey> {
    Ok(AppKey {
        namespace: parse("namespace", row.get("namespace"))?,
        name: parse("app", row.get("app"))?,
    })
}

/// `$from, $from + 1, …`: `n` placeholders for an `IN (…)` list.
pub(crate) fn placeholders(from: usize, n: usize) -> String {
    (from..from + n)
        .map(|i| format!("${i}"))
        .collect::<Vec<_>>()
        .join(", ")
}

#[async_trait]
impl Store for SqlStore {
    async fn ensure_app(&self, app: &AppKey) -> Result<AppRow> {
        apps::ensure(&self.write, app).await
    }
    async fn get_app(&self, app: &AppKey) -> Result<Option<AppRow>> {
        apps::get(&self.read, app).await
    }
    async fn list_apps(&self) -> Result<Vec<AppRow>> {
        apps::list(&self.read).await
    }
    async fn delete_app(&self, app: &AppKey) -> Result<bool> {
        apps::delete(&self.write, app).await
    }
    async fn set_active_release(&self, app: &AppKey, number: Option<i64>) -> Result<()> {
        apps::set_active(&self.write, app, number).await
    }
    async fn create_release(
        &self,
        app: &AppKey,
        env: &str,
        digest: &Digest,
        manifest_json: &str,
        config_json: &str,
    ) -> Result<ReleaseRow> {
        releases::create(self, app, env, digest, manifest_json, config_json).await
    }
    async fn get_release(&self, app: &AppKey, number: i64) -> Result<Option<ReleaseRow>> {
        releases::get(&self.read, app, number).await
    }
    async fn list_releases(&self, app: &AppKey) -> Result<Vec<ReleaseRow>> {
        releases::list(&self.read, app).await
    }
    async fn set_release_status(
        &self,
        app: &AppKey,
        number: i64,
        status: ReleaseStatus,
        error: Option<&str>,
    ) -> Result<()> {
        releases::set_status(&self.write, app, number, status, error).await
    }
    async fn upsert_resource(&self, row: &ResourceRow) -> Result<()> {
        resources::upsert(&self.write, row).await
    }
    async fn list_resources(&self, app: &AppKey) -> Result<Vec<ResourceRow>> {
        resources::list(&self.read, app).await
    }
    async fn delete_resource(&self, app: &AppKey, resource: &str) -> Result<()> {
        resources::delete(&self.write, app, resource).await
    }
    async fn replace_functions(
        &self,
        app: &AppKey,
        resource: &str,
        functions: &[FunctionRow],
    ) -> Result<()> {
        resources::replace_functions(&self.write, app, resource, functions).await
    }
    async fn list_functions(&self, app: &AppKey) -> Result<Vec<FunctionRow>> {
        resources::list_functions(&self.read, app).await
    }
    async fn upsert_instance(&self, row: &InstanceRow) -> Result<()> {
        instances::upsert(&self.write, row).await
    }
    async fn list_instances(&self, app: Option<&AppKey>) -> Result<Vec<InstanceRow>> {
        instances::list(&self.read, app).await
    }
    async fn delete_instance(&self, id: InstanceId) -> Result<()> {
        instances::delete(&self.write, id).await
    }
    async fn append_logs(&self, lines: &[NewLogLine]) -> Result<()> {
        logs::append(&self.write, lines).await
    }
    async fn read_logs(
        &self,
        app: &AppKey,
        after_id: i64,
        since_ms: i64,
        limit: i64,
    ) -> Result<Vec<LogRow>> {
        logs::read(&self.read, app, after_id, since_ms, limit).await
    }
    async fn prune_logs(&self, app: &AppKey, keep: i64, min_ts: i64) -> Result<u64> {
        logs::prune(&self.write, app, keep, min_ts).await
    }
    async fn put_blob(&self, row: &BlobRow) -> Result<()> {
        blobs::put_blob(&self.write, row).await
    }
    async fn get_blob(&self, digest: &Digest) -> Result<Option<BlobRow>> {
        blobs::get_blob(&self.read, digest).await
    }
    async fn put_blob_content(&self, digest: &Digest, bytes: &[u8]) -> Result<()> {
        blobs::put_content(&self.write, digest, bytes).await
    }
    async fn get_blob_content(&self, digest: &Digest) -> Result<Option<Vec<u8>>> {
        blobs::get_content(&self.read, digest).await
    }
    async fn delete_blob_content(&self, digest: &Digest) -> Result<()> {
        blobs::delete_content(&self.write, digest).await
    }
    async fn put_setting_if_absent(&self, name: &str, value: &str) -> Result<String> {
        blobs::put_setting_if_absent(&self.write, name, value).await
    }
    async fn get_setting(&self, name: &str) -> Result<Option<String>> {
        blobs::get_setting(&self.read, name).await
    }
    async fn set_setting(&self, name: &str, value: &str) -> Result<()> {
        blobs::set_setting(&self.write, name, value).await
    }
    async fn trust_key(&self, row: &KeyRow) -> Result<()> {
        blobs::trust_key(&self.write, row).await
    }
    async fn list_keys(&self) -> Result<Vec<KeyRow>> {
        blobs::list_keys(&self.read).await
    }
    async fn remove_key(&self, key_id: &str) -> Result<bool> {
        blobs::remove_key(&self.write, key_id).await
    }
    async fn put_package(&self, row: &PackageRow) -> Result<()> {
        blobs::put_package(&self.write, row).await
    }
    async fn get_package(&self, app: &AppKey) -> Result<Option<PackageRow>> {
        blobs::get_package(&self.read, app).await
    }
    async fn delete_package(&self, app: &AppKey) -> Result<()> {
        blobs::delete_package(&self.write, app).await
    }
    async fn queue_send(&self, queue: &str, message: &serde_json::Value) -> Result<i64> {
        queues::send(self, queue, message).await
    }
    async fn queue_read(&self, queue: &str, vt_ms: i64, qty: i64) -> Result<Vec<QueueMessage>> {
        queues::read(self, queue, vt_ms, qty).await
    }
    async fn queue_delete(&self, queue: &str, msg_id: i64) -> Result<bool> {
        queues::delete(self, queue, msg_id).await
    }
    async fn queue_archive(&self, queue: &str, msg_id: i64, dead: bool) -> Result<bool> {
        queues::archive(self, queue, msg_id, dead).await
    }
    async fn queue_depth(&self, queue: &str) -> Result<(i64, i64)> {
        queues::depth(self, queue).await
    }
    async fn queue_archived(&self, queue: &str) -> Result<Vec<(QueueMessage, bool)>> {
        queues::archived(self, queue).await
    }
    async fn queue_release_all(&self, queue: &str) -> Result<u64> {
        queues::release_all(self, queue).await
    }
    async fn queue_set_vt(&self, queue: &str, msg_id: i64, vt_ms: i64) -> Result<bool> {
        queues::set_vt(self, queue, msg_id, vt_ms).await
    }
    async fn insert_wasm_function(&self, row: &WasmFunctionRow) -> Result<()> {
        wasm::insert_function(&self.write, row).await
    }
    async fn replace_failed_wasm_function(&self, row: &WasmFunctionRow) -> Result<Option<String>> {
        wasm::replace_failed_function(self, row).await
    }
    async fn get_wasm_function_by_name(&self, name: &str) -> Result<Option<WasmFunctionRow>> {
        wasm::get_function_by_name(&self.read, name).await
    }
    async fn delete_wasm_function(&self, id: &str) -> Result<bool> {
        wasm::delete_function(&self.write, id).await
    }
    async fn get_wasm_function(
        &self,
        id: &str,
        with_wasm: bool,
    ) -> Result<Option<WasmFunctionRow>> {
        wasm::get_function(&self.read, id, with_wasm).await
    }
    async fn list_wasm_functions(&self) -> Result<Vec<WasmFunctionRow>> {
        wasm::list_functions(&self.read).await
    }
    async fn set_wasm_function_status(&self, id: &str, status: WasmFunctionStatus) -> Result<()> {
        wasm::set_status(&self.write, id, status).await
    }
    async fn apply_compile_result(
        &self,
        id: &str,
        outcome: &CompileOutcome,
        queue: &str,
        msg_id: i64,
    ) -> Result<bool> {
        wasm::apply_compile_result(self, id, outcome, queue, msg_id).await
    }
    async fn insert_execution(&self, row: &ExecutionRow) -> Result<()> {
        wasm::insert_execution(&self.write, row).await
    }
    async fn finish_execution(
        &self,
        id: ExecutionId,
        status: ExecutionStatus,
        output: Option<&str>,
        error: Option<&str>,
    ) -> Result<()> {
        wasm::finish_execution(&self.write, id, status, output, error).await
    }
    async fn enqueue_jobs(&self, queue: &str, jobs: &[NewJob]) -> Result<Vec<i64>> {
        match &self.backend {
            Backend::Sqlite => sqlite::enqueue_jobs(&self.write, queue, jobs).await,
            Backend::Postgres(_) => wasm::enqueue_jobs(self, queue, jobs).await,
        }
    }
    async fn start_executions(&self, ids: &[ExecutionId]) -> Result<Vec<ExecutionId>> {
        wasm::start_executions(&self.write, ids).await
    }
    async fn finish_jobs(&self, queue: &str, jobs: &[FinishedJob]) -> Result<()> {
        match &self.backend {
            Backend::Sqlite => sqlite::finish_jobs(&self.write, queue, jobs).await,
            Backend::Postgres(_) => wasm::finish_jobs(self, queue, jobs).await,
        }
    }
    async fn get_execution(&self, id: ExecutionId) -> Result<Option<ExecutionRow>> {
        wasm::get_execution(&self.read, id).await
    }
    async fn cancel_execution(&self, id: ExecutionId) -> Result<bool> {
        wasm::transition_execution(
            &self.write,
            id,
            &["QUEUED", "RUNNING"],
            ExecutionStatus::Cancelled,
        )
        .await
    }
    async fn list_executions(&self, function_id: &str, limit: i64) -> Result<Vec<ExecutionRow>> {
        wasm::list_executions(&self.read, function_id, limit).await
    }
    async fn get_budget(&self, app: &AppKey) -> Result<Option<BudgetRow>> {
        budgets::get(&self.read, app).await
    }
    async fn put_budget(&self, row: &BudgetRow) -> Result<()> {
        budgets::put(&self.write, row).await
    }
    async fn delete_budget(&self, app: &AppKey) -> Result<()> {
        budgets::delete(&self.write, app).await
    }
    async fn upsert_environment(&self, row: &EnvironmentRow) -> Result<()> {
        environments::upsert_environment(&self.write, row).await
    }
    async fn get_environment(&self, app: &AppKey, name: &str) -> Result<Option<EnvironmentRow>> {
        environments::get_environment(&self.read, app, name).await
    }
    async fn list_environments(&self, app: Option<&AppKey>) -> Result<Vec<EnvironmentRow>> {
        environments::list_environments(&self.read, app).await
    }
    async fn delete_environment(&self, app: &AppKey, name: &str) -> Result<bool> {
        environments::delete_environment(&self.write, app, name).await
    }
    async fn create_deploy(&self, row: &DeployRow) -> Result<()> {
        environments::create_deploy(&self.write, row).await
    }
    async fn get_deploy(&self, id: DeployId) -> Result<Option<DeployRow>> {
        environments::get_deploy(&self.read, id).await
    }
    async fn update_deploy(&self, row: &DeployRow) -> Result<()> {
        environments::update_deploy(&self.write, row).await
    }
    async fn record_deploy_step(
        &self,
        deploy_id: DeployId,
        step: &str,
        detail: &str,
    ) -> Result<bool> {
        environments::record_deploy_step(&self.write, deploy_id, step, detail).await
    }
    async fn list_deploy_steps(&self, deploy_id: DeployId) -> Result<Vec<DeployStepRow>> {
        environments::list_deploy_steps(&self.read, deploy_id).await
    }
    async fn put_secret(&self, row: &SecretRow) -> Result<()> {
        environments::put_secret(&self.write, row).await
    }
    async fn list_secrets(&self, app: &AppKey, env: &str) -> Result<Vec<SecretRow>> {
        environments::list_secrets(&self.read, app, env).await
    }
    async fn delete_secret(&self, app: &AppKey, env: &str, name: &str) -> Result<bool> {
        environments::delete_secret(&self.write, app, env, name).await
    }
    async fn put_certificate(&self, row: &CertificateRow) -> Result<()> {
        environments::put_certificate(&self.write, row).await
    }
    async fn list_certificates(&self) -> Result<Vec<CertificateRow>> {
        environments::list_certificates(&self.read).await
    }
    async fn register_node(&self, row: &NodeRow) -> Result<()> {
        nodes::register(&self.write, row).await
    }
    async fn heartbeat_node(&self, id: &NodeId, now_ms: i64) -> Result<bool> {
        nodes::heartbeat(&self.write, id, now_ms).await
    }
    async fn list_nodes(&self) -> Result<Vec<NodeRow>> {
        nodes::list(&self.read).await
    }
    async fn mark_lost_nodes(&self, before_ms: i64) -> Result<Vec<NodeId>> {
        nodes::mark_lost(&self.write, before_ms).await
    }
    async fn try_lead(&self, role: &str) -> Result<Option<crate::Lease>> {
        match &self.backend {
            Backend::Sqlite => Ok(Some(crate::Lease::local(role))),
            Backend::Postgres(extras) => extras.try_lead(role).await,
        }
    }
    async fn insert_placement(&self, row: &PlacementRow) -> Result<()> {
        placements::insert(&self.write, row).await
    }
    async fn list_placements(&self, node: Option<&NodeId>) -> Result<Vec<PlacementRow>> {
        placements::list(&self.read, node).await
    }
    async fn report_placement(
        &self,
        id: InstanceId,
        node: &NodeId,
        state: PlacementState,
        endpoint: Option<&str>,
        error: Option<&str>,
    ) -> Result<bool> {
        placements::report(&self.write, id, node, state, endpoint, error).await
    }
    async fn delete_placement(&self, id: InstanceId) -> Result<()> {
        placements::delete(&self.write, id).await
    }
    async fn app_uid(&self, app: &AppKey, first: u32, count: u32) -> Result<u32> {
        identities::app_uid(&self.write, app, first, count).await
    }
    async fn list_app_uids(&self) -> Result<Vec<(AppKey, u32)>> {
        identities::list(&self.read).await
    }
}
