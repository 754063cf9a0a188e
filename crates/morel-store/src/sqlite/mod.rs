//! The embedded store: one SQLite file in WAL mode. One module per table family; the trait
//! impl below only delegates.

mod apps;
mod blobs;
mod budgets;
mod environments;
pub(crate) mod identities;
mod instances;
mod logs;
mod nodes;
mod placements;
mod queues;
mod releases;
mod resources;
mod transfer;
mod wasm;

use std::path::Path;
use std::str::FromStr;
use std::time::Duration;

use async_trait::async_trait;
use morel_core::{Digest, InstanceId, ReleaseStatus};
use sqlx::sqlite::{SqliteConnectOptions, SqliteJournalMode, SqlitePoolOptions, SqliteSynchronous};
use sqlx::{Row, SqlitePool};

use crate::env_rows::*;
use crate::error::Ctx;
use crate::migrations::MIGRATIONS;
use crate::rows::*;
use crate::{AppKey, Result, Store, StoreError};

#[derive(Clone, Debug)]
pub struct SqliteStore {
    /// Reads (several connections; WAL lets them run beside a write).
    pool: SqlitePool,
    /// Writes, on one connection: SQLite runs one writer at a time anyway, and writers that
    /// meet on the database lock wait in SQLite's busy handler, which sleeps whole
    /// milliseconds. Queued here they wait on the pool instead, and are woken the moment
    /// the connection is free (bench/NOTES.md, async jobs).
    writer: SqlitePool,
}

impl SqliteStore {
    /// Opens (creating if needed) the database file and applies pending migrations.
    pub async fn open(path: &Path) -> Result<Self> {
        let opts = SqliteConnectOptions::new()
            .filename(path)
            .create_if_missing(true)
            .journal_mode(SqliteJournalMode::Wal)
            .synchronous(SqliteSynchronous::Normal)
            .busy_timeout(Duration::from_secs(10))
            .foreign_keys(true);
        let writer = Self::pool(opts.clone(), 1).await?;
        let pool = Self::pool(opts, 4).await?;
        Self::with_pools(pool, writer).await
    }

    /// A private in-memory database, for tests.
    pub async fn in_memory() -> Result<Self> {
        let opts =
            SqliteConnectOptions::from_str("sqlite::memory:").ctx("open in-memory database")?;
        // One connection: every connection to :memory: would be its own database.
        let pool = Self::pool(opts, 1).await?;
        Self::with_pools(pool.clone(), pool).await
    }

    async fn pool(opts: SqliteConnectOptions, max: u32) -> Result<SqlitePool> {
        SqlitePoolOptions::new()
            .max_connections(max)
            .connect_with(opts)
            .await
            .ctx("open database")
    }

    async fn with_pools(pool: SqlitePool, writer: SqlitePool) -> Result<Self> {
        let store = SqliteStore { pool, writer };
        store.migrate().await?;
        Ok(store)
    }

    async fn migrate(&self) -> Result<()> {
        sqlx::query("CREATE TABLE IF NOT EXISTS morel_migrations (version BIGINT PRIMARY KEY, applied_at BIGINT NOT NULL)")
            .execute(&self.writer)
            .await
            .ctx("create migrations table")?;
        let applied: Vec<i64> = sqlx::query("SELECT version FROM morel_migrations")
            .fetch_all(&self.writer)
            .await
            .ctx("read migrations")?
            .iter()
            .map(|r| r.get::<i64, _>(0))
            .collect();
        for (version, sql) in MIGRATIONS {
            if applied.contains(version) {
                continue;
            }
            let mut tx = self.writer.begin().await.ctx("begin migration")?;
            sqlx::raw_sql(sql)
                .execute(&mut *tx)
                .await
                .map_err(|source| StoreError::Migration {
                    version: *version,
                    source,
                })?;
            sqlx::query("INSERT INTO morel_migrations (version, applied_at) VALUES (?, ?)")
                .bind(version)
                .bind(morel_core::time::now_ms())
                .execute(&mut *tx)
                .await
                .ctx("record migration")?;
            tx.commit().await.ctx("commit migration")?;
            tracing::info!(version, "applied store migration");
        }
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

pub(crate) fn app_key(row: &sqlx::sqlite::SqliteRow) -> Result<AppKey> {
    Ok(AppKey {
        namespace: parse("namespace", row.get("namespace"))?,
        name: parse("app", row.get("app"))?,
    })
}

#[async_trait]
impl Store for SqliteStore {
    async fn ensure_app(&self, app: &AppKey) -> Result<AppRow> {
        apps::ensure(&self.writer, app).await
    }
    async fn get_app(&self, app: &AppKey) -> Result<Option<AppRow>> {
        apps::get(&self.pool, app).await
    }
    async fn list_apps(&self) -> Result<Vec<AppRow>> {
        apps::list(&self.pool).await
    }
    async fn delete_app(&self, app: &AppKey) -> Result<bool> {
        apps::delete(&self.writer, app).await
    }
    async fn set_active_release(&self, app: &AppKey, number: Option<i64>) -> Result<()> {
        apps::set_active(&self.writer, app, number).await
    }
    async fn create_release(
        &self,
        app: &AppKey,
        env: &str,
        digest: &Digest,
        manifest_json: &str,
        config_json: &str,
    ) -> Result<ReleaseRow> {
        releases::create(&self.writer, app, env, digest, manifest_json, config_json).await
    }
    async fn get_release(&self, app: &AppKey, number: i64) -> Result<Option<ReleaseRow>> {
        releases::get(&self.pool, app, number).await
    }
    async fn list_releases(&self, app: &AppKey) -> Result<Vec<ReleaseRow>> {
        releases::list(&self.pool, app).await
    }
    async fn set_release_status(
        &self,
        app: &AppKey,
        number: i64,
        status: ReleaseStatus,
        error: Option<&str>,
    ) -> Result<()> {
        releases::set_status(&self.writer, app, number, status, error).await
    }
    async fn upsert_resource(&self, row: &ResourceRow) -> Result<()> {
        resources::upsert(&self.writer, row).await
    }
    async fn list_resources(&self, app: &AppKey) -> Result<Vec<ResourceRow>> {
        resources::list(&self.pool, app).await
    }
    async fn delete_resource(&self, app: &AppKey, resource: &str) -> Result<()> {
        resources::delete(&self.writer, app, resource).await
    }
    async fn replace_functions(
        &self,
        app: &AppKey,
        resource: &str,
        functions: &[FunctionRow],
    ) -> Result<()> {
        resources::replace_functions(&self.writer, app, resource, functions).await
    }
    async fn list_functions(&self, app: &AppKey) -> Result<Vec<FunctionRow>> {
        resources::list_functions(&self.pool, app).await
    }
    async fn upsert_instance(&self, row: &InstanceRow) -> Result<()> {
        instances::upsert(&self.writer, row).await
    }
    async fn list_instances(&self, app: Option<&AppKey>) -> Result<Vec<InstanceRow>> {
        instances::list(&self.pool, app).await
    }
    async fn delete_instance(&self, id: InstanceId) -> Result<()> {
        instances::delete(&self.writer, id).await
    }
    async fn append_logs(&self, lines: &[NewLogLine]) -> Result<()> {
        logs::append(&self.writer, lines).await
    }
    async fn read_logs(
        &self,
        app: &AppKey,
        after_id: i64,
        since_ms: i64,
        limit: i64,
    ) -> Result<Vec<LogRow>> {
        logs::read(&self.pool, app, after_id, since_ms, limit).await
    }
    async fn prune_logs(&self, app: &AppKey, keep: i64, min_ts: i64) -> Result<u64> {
        logs::prune(&self.writer, app, keep, min_ts).await
    }
    async fn put_blob(&self, row: &BlobRow) -> Result<()> {
        blobs::put_blob(&self.writer, row).await
    }
    async fn get_blob(&self, digest: &Digest) -> Result<Option<BlobRow>> {
        blobs::get_blob(&self.pool, digest).await
    }
    async fn trust_key(&self, row: &KeyRow) -> Result<()> {
        blobs::trust_key(&self.writer, row).await
    }
    async fn list_keys(&self) -> Result<Vec<KeyRow>> {
        blobs::list_keys(&self.pool).await
    }
    async fn remove_key(&self, key_id: &str) -> Result<bool> {
        blobs::remove_key(&self.writer, key_id).await
    }
    async fn put_package(&self, row: &PackageRow) -> Result<()> {
        blobs::put_package(&self.writer, row).await
    }
    async fn get_package(&self, app: &AppKey) -> Result<Option<PackageRow>> {
        blobs::get_package(&self.pool, app).await
    }
    async fn delete_package(&self, app: &AppKey) -> Result<()> {
        blobs::delete_package(&self.writer, app).await
    }
    async fn queue_send(&self, queue: &str, message: &serde_json::Value) -> Result<i64> {
        queues::send(&self.writer, queue, message).await
    }
    async fn queue_read(&self, queue: &str, vt_ms: i64, qty: i64) -> Result<Vec<QueueMessage>> {
        queues::read(&self.writer, queue, vt_ms, qty).await
    }
    async fn queue_delete(&self, queue: &str, msg_id: i64) -> Result<bool> {
        queues::delete(&self.writer, queue, msg_id).await
    }
    async fn queue_archive(&self, queue: &str, msg_id: i64, dead: bool) -> Result<bool> {
        queues::archive(&self.writer, queue, msg_id, dead).await
    }
    async fn queue_depth(&self, queue: &str) -> Result<(i64, i64)> {
        queues::depth(&self.pool, queue).await
    }
    async fn queue_archived(&self, queue: &str) -> Result<Vec<(QueueMessage, bool)>> {
        queues::archived(&self.pool, queue).await
    }
    async fn queue_release_all(&self, queue: &str) -> Result<u64> {
        queues::release_all(&self.writer, queue).await
    }
    async fn insert_wasm_function(&self, row: &WasmFunctionRow) -> Result<()> {
        wasm::insert_function(&self.writer, row).await
    }
    async fn replace_failed_wasm_function(&self, row: &WasmFunctionRow) -> Result<Option<String>> {
        wasm::replace_failed_function(&self.writer, row).await
    }
    async fn get_wasm_function_by_name(&self, name: &str) -> Result<Option<WasmFunctionRow>> {
        wasm::get_function_by_name(&self.pool, name).await
    }
    async fn delete_wasm_function(&self, id: &str) -> Result<bool> {
        wasm::delete_function(&self.writer, id).await
    }
    async fn get_wasm_function(
        &self,
        id: &str,
        with_wasm: bool,
    ) -> Result<Option<WasmFunctionRow>> {
        wasm::get_function(&self.pool, id, with_wasm).await
    }
    async fn list_wasm_functions(&self) -> Result<Vec<WasmFunctionRow>> {
        wasm::list_functions(&self.pool).await
    }
    async fn set_wasm_function_status(&self, id: &str, status: WasmFunctionStatus) -> Result<()> {
        wasm::set_status(&self.writer, id, status).await
    }
    async fn apply_compile_result(
        &self,
        id: &str,
        outcome: &CompileOutcome,
        queue: &str,
        msg_id: i64,
    ) -> Result<bool> {
        wasm::apply_compile_result(&self.writer, id, outcome, queue, msg_id).await
    }
    async fn insert_execution(&self, row: &ExecutionRow) -> Result<()> {
        wasm::insert_execution(&self.writer, row).await
    }
    async fn finish_execution(
        &self,
        id: &str,
        status: ExecutionStatus,
        output: Option<&str>,
        error: Option<&str>,
    ) -> Result<()> {
        wasm::finish_execution(&self.writer, id, status, output, error).await
    }
    async fn enqueue_jobs(&self, queue: &str, jobs: &[NewJob]) -> Result<Vec<i64>> {
        wasm::enqueue_jobs(&self.writer, queue, jobs).await
    }
    async fn start_executions(&self, ids: &[String]) -> Result<Vec<String>> {
        wasm::start_executions(&self.writer, ids).await
    }
    async fn finish_jobs(&self, queue: &str, jobs: &[FinishedJob]) -> Result<()> {
        wasm::finish_jobs(&self.writer, queue, jobs).await
    }
    async fn get_execution(&self, id: &str) -> Result<Option<ExecutionRow>> {
        wasm::get_execution(&self.pool, id).await
    }
    async fn cancel_execution(&self, id: &str) -> Result<bool> {
        wasm::transition_execution(
            &self.writer,
            id,
            &["QUEUED", "RUNNING"],
            ExecutionStatus::Cancelled,
        )
        .await
    }
    async fn list_executions(&self, function_id: &str, limit: i64) -> Result<Vec<ExecutionRow>> {
        wasm::list_executions(&self.pool, function_id, limit).await
    }

    async fn get_budget(&self, app: &AppKey) -> Result<Option<BudgetRow>> {
        budgets::get(&self.pool, app).await
    }

    async fn put_budget(&self, row: &BudgetRow) -> Result<()> {
        budgets::put(&self.writer, row).await
    }

    async fn delete_budget(&self, app: &AppKey) -> Result<()> {
        budgets::delete(&self.writer, app).await
    }

    async fn upsert_environment(&self, row: &EnvironmentRow) -> Result<()> {
        environments::upsert_environment(&self.writer, row).await
    }
    async fn get_environment(&self, app: &AppKey, name: &str) -> Result<Option<EnvironmentRow>> {
        environments::get_environment(&self.pool, app, name).await
    }
    async fn list_environments(&self, app: Option<&AppKey>) -> Result<Vec<EnvironmentRow>> {
        environments::list_environments(&self.pool, app).await
    }
    async fn delete_environment(&self, app: &AppKey, name: &str) -> Result<bool> {
        environments::delete_environment(&self.writer, app, name).await
    }
    async fn create_deploy(&self, row: &DeployRow) -> Result<()> {
        environments::create_deploy(&self.writer, row).await
    }
    async fn get_deploy(&self, id: &str) -> Result<Option<DeployRow>> {
        environments::get_deploy(&self.pool, id).await
    }
    async fn update_deploy(&self, row: &DeployRow) -> Result<()> {
        environments::update_deploy(&self.writer, row).await
    }
    async fn record_deploy_step(&self, deploy_id: &str, step: &str, detail: &str) -> Result<bool> {
        environments::record_deploy_step(&self.writer, deploy_id, step, detail).await
    }
    async fn list_deploy_steps(&self, deploy_id: &str) -> Result<Vec<DeployStepRow>> {
        environments::list_deploy_steps(&self.pool, deploy_id).await
    }
    async fn put_secret(&self, row: &SecretRow) -> Result<()> {
        environments::put_secret(&self.writer, row).await
    }
    async fn list_secrets(&self, app: &AppKey, env: &str) -> Result<Vec<SecretRow>> {
        environments::list_secrets(&self.pool, app, env).await
    }
    async fn delete_secret(&self, app: &AppKey, env: &str, name: &str) -> Result<bool> {
        environments::delete_secret(&self.writer, app, env, name).await
    }
    async fn put_certificate(&self, row: &CertificateRow) -> Result<()> {
        environments::put_certificate(&self.writer, row).await
    }
    async fn list_certificates(&self) -> Result<Vec<CertificateRow>> {
        environments::list_certificates(&self.pool).await
    }
    async fn queue_set_vt(&self, queue: &str, msg_id: i64, vt_ms: i64) -> Result<bool> {
        environments::queue_set_vt(&self.writer, queue, msg_id, vt_ms).await
    }
    async fn register_node(&self, row: &NodeRow) -> Result<()> {
        nodes::register(&self.writer, row).await
    }
    async fn heartbeat_node(&self, id: &str, now_ms: i64) -> Result<bool> {
        nodes::heartbeat(&self.writer, id, now_ms).await
    }
    async fn list_nodes(&self) -> Result<Vec<NodeRow>> {
        nodes::list(&self.pool).await
    }
    async fn mark_lost_nodes(&self, before_ms: i64) -> Result<Vec<String>> {
        nodes::mark_lost(&self.writer, before_ms).await
    }
    async fn insert_placement(&self, row: &crate::PlacementRow) -> Result<()> {
        placements::insert(&self.writer, row).await
    }
    async fn list_placements(&self, node: Option<&str>) -> Result<Vec<crate::PlacementRow>> {
        placements::list(&self.pool, node).await
    }
    async fn report_placement(
        &self,
        id: &str,
        node: &str,
        state: morel_core::PlacementState,
        endpoint: Option<&str>,
        error: Option<&str>,
    ) -> Result<bool> {
        placements::report(&self.writer, id, node, state, endpoint, error).await
    }
    async fn delete_placement(&self, id: &str) -> Result<()> {
        placements::delete(&self.writer, id).await
    }
    async fn app_uid(&self, app: &AppKey, first: u32, count: u32) -> Result<u32> {
        identities::app_uid(&self.writer, app, first, count).await
    }
    async fn list_app_uids(&self) -> Result<Vec<(AppKey, u32)>> {
        identities::list(&self.pool).await
    }
    async fn try_lead(&self, role: &str) -> Result<Option<crate::Lease>> {
        Ok(Some(crate::Lease::local(role)))
    }
}
