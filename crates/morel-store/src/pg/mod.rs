//! The store on PostgreSQL: what `morel up --database-url postgres://…` uses, and what the
//! many-machine roles share (several processes may open one database at once). One module per
//! table family, mirroring `sqlite/` statement for statement; the trait impl below only
//! delegates. Dialect differences between the two are limited to `$n` placeholders, casts
//! where PostgreSQL returns `INTEGER`, and the migration words translated in `schema.rs`.
//! Queues are pgmq's (see `queues.rs`).

mod apps;
mod blobs;
mod budgets;
mod environments;
mod identities;
mod instances;
mod logs;
mod nodes;
mod placements;
mod queues;
mod releases;
mod resources;
mod schema;
mod transfer;
mod wasm;

use std::str::FromStr;
use std::time::Duration;

use async_trait::async_trait;
use morel_core::{Digest, InstanceId, ReleaseStatus};
use sqlx::postgres::{PgConnectOptions, PgPoolOptions, PgRow};
use sqlx::{Connection, PgPool, Row};

use crate::error::Ctx;
use crate::rows::*;
use crate::{AppKey, Result, Store, StoreError};
use crate::{CertificateRow, DeployRow, DeployStepRow, EnvironmentRow, SecretRow};

#[derive(Clone, Debug)]
pub struct PgStore {
    pool: PgPool,
    queues: queues::Queues,
    /// Kept for connections outside the pool (leadership leases).
    connect_options: PgConnectOptions,
    /// The connection of the last failed `try_lead`, reused by the next attempt so a follower
    /// polling for leadership does not connect anew each time.
    spare: std::sync::Arc<tokio::sync::Mutex<Option<sqlx::postgres::PgConnection>>>,
}

impl PgStore {
    /// Connects to `url` (`postgres://user@host:port/db`) and applies pending migrations.
    /// Several processes may do this at once against one database.
    pub async fn connect(url: &str) -> Result<Self> {
        let opts =
            PgConnectOptions::from_str(url).map_err(|e| StoreError::BadUrl(e.to_string()))?;
        let pool = PgPoolOptions::new()
            .max_connections(8)
            .acquire_timeout(Duration::from_secs(10))
            .connect_with(opts.clone())
            .await
            .ctx("connect to PostgreSQL")?;
        schema::migrate(&pool).await?;
        Ok(PgStore {
            queues: queues::Queues::new(pool.clone()),
            pool,
            connect_options: opts,
            spare: Default::default(),
        })
    }

    /// The connection pool, for callers that run their own statements on the same database
    /// (leader election, tests).
    pub fn pool(&self) -> &PgPool {
        &self.pool
    }

    /// Closes every connection (waits for those in use to be returned).
    pub async fn close(&self) {
        self.pool.close().await;
    }
}

/// Column decoding helpers shared by the table modules.
pub(crate) fn parse<T: FromStr>(column: &'static str, s: &str) -> Result<T>
where
    T::Err: std::fmt::Display,
{
    crate::sqlite::parse(column, s)
}

pub(crate) fn app_key(row: &PgRow) -> Result<AppKey> {
    Ok(AppKey {
        namespace: parse("namespace", row.get("namespace"))?,
        name: parse("app", row.get("app"))?,
    })
}

#[async_trait]
impl Store for PgStore {
    async fn ensure_app(&self, app: &AppKey) -> Result<AppRow> {
        apps::ensure(&self.pool, app).await
    }
    async fn get_app(&self, app: &AppKey) -> Result<Option<AppRow>> {
        apps::get(&self.pool, app).await
    }
    async fn list_apps(&self) -> Result<Vec<AppRow>> {
        apps::list(&self.pool).await
    }
    async fn delete_app(&self, app: &AppKey) -> Result<bool> {
        apps::delete(&self.pool, app).await
    }
    async fn set_active_release(&self, app: &AppKey, number: Option<i64>) -> Result<()> {
        apps::set_active(&self.pool, app, number).await
    }
    async fn create_release(
        &self,
        app: &AppKey,
        env: &str,
        digest: &Digest,
        manifest_json: &str,
        config_json: &str,
    ) -> Result<ReleaseRow> {
        releases::create(&self.pool, app, env, digest, manifest_json, config_json).await
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
        releases::set_status(&self.pool, app, number, status, error).await
    }
    async fn upsert_resource(&self, row: &ResourceRow) -> Result<()> {
        resources::upsert(&self.pool, row).await
    }
    async fn list_resources(&self, app: &AppKey) -> Result<Vec<ResourceRow>> {
        resources::list(&self.pool, app).await
    }
    async fn delete_resource(&self, app: &AppKey, resource: &str) -> Result<()> {
        resources::delete(&self.pool, app, resource).await
    }
    async fn replace_functions(
        &self,
        app: &AppKey,
        resource: &str,
        functions: &[FunctionRow],
    ) -> Result<()> {
        resources::replace_functions(&self.pool, app, resource, functions).await
    }
    async fn list_functions(&self, app: &AppKey) -> Result<Vec<FunctionRow>> {
        resources::list_functions(&self.pool, app).await
    }
    async fn upsert_instance(&self, row: &InstanceRow) -> Result<()> {
        instances::upsert(&self.pool, row).await
    }
    async fn list_instances(&self, app: Option<&AppKey>) -> Result<Vec<InstanceRow>> {
        instances::list(&self.pool, app).await
    }
    async fn delete_instance(&self, id: InstanceId) -> Result<()> {
        instances::delete(&self.pool, id).await
    }
    async fn append_logs(&self, lines: &[NewLogLine]) -> Result<()> {
        logs::append(&self.pool, lines).await
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
        logs::prune(&self.pool, app, keep, min_ts).await
    }
    async fn put_blob(&self, row: &BlobRow) -> Result<()> {
        blobs::put_blob(&self.pool, row).await
    }
    async fn get_blob(&self, digest: &Digest) -> Result<Option<BlobRow>> {
        blobs::get_blob(&self.pool, digest).await
    }
    async fn trust_key(&self, row: &KeyRow) -> Result<()> {
        blobs::trust_key(&self.pool, row).await
    }
    async fn list_keys(&self) -> Result<Vec<KeyRow>> {
        blobs::list_keys(&self.pool).await
    }
    async fn remove_key(&self, key_id: &str) -> Result<bool> {
        blobs::remove_key(&self.pool, key_id).await
    }
    async fn put_package(&self, row: &PackageRow) -> Result<()> {
        blobs::put_package(&self.pool, row).await
    }
    async fn get_package(&self, app: &AppKey) -> Result<Option<PackageRow>> {
        blobs::get_package(&self.pool, app).await
    }
    async fn delete_package(&self, app: &AppKey) -> Result<()> {
        blobs::delete_package(&self.pool, app).await
    }
    async fn queue_send(&self, queue: &str, message: &serde_json::Value) -> Result<i64> {
        queues::send(&self.queues, queue, message).await
    }
    async fn queue_read(&self, queue: &str, vt_ms: i64, qty: i64) -> Result<Vec<QueueMessage>> {
        queues::read(&self.queues, queue, vt_ms, qty).await
    }
    async fn queue_delete(&self, queue: &str, msg_id: i64) -> Result<bool> {
        queues::delete(&self.queues, queue, msg_id).await
    }
    async fn queue_archive(&self, queue: &str, msg_id: i64, dead: bool) -> Result<bool> {
        queues::archive(&self.queues, queue, msg_id, dead).await
    }
    async fn queue_depth(&self, queue: &str) -> Result<(i64, i64)> {
        queues::depth(&self.queues, queue).await
    }
    async fn queue_archived(&self, queue: &str) -> Result<Vec<(QueueMessage, bool)>> {
        queues::archived(&self.queues, queue).await
    }
    async fn queue_release_all(&self, queue: &str) -> Result<u64> {
        queues::release_all(&self.queues, queue).await
    }
    async fn insert_wasm_function(&self, row: &WasmFunctionRow) -> Result<()> {
        wasm::insert_function(&self.pool, row).await
    }
    async fn replace_failed_wasm_function(&self, row: &WasmFunctionRow) -> Result<Option<String>> {
        wasm::replace_failed_function(&self.pool, row).await
    }
    async fn get_wasm_function_by_name(&self, name: &str) -> Result<Option<WasmFunctionRow>> {
        wasm::get_function_by_name(&self.pool, name).await
    }
    async fn delete_wasm_function(&self, id: &str) -> Result<bool> {
        wasm::delete_function(&self.pool, id).await
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
        wasm::set_status(&self.pool, id, status).await
    }
    async fn apply_compile_result(
        &self,
        id: &str,
        outcome: &CompileOutcome,
        queue: &str,
        msg_id: i64,
    ) -> Result<bool> {
        wasm::apply_compile_result(&self.queues, id, outcome, queue, msg_id).await
    }
    async fn insert_execution(&self, row: &ExecutionRow) -> Result<()> {
        wasm::insert_execution(&self.pool, row).await
    }
    async fn finish_execution(
        &self,
        id: &str,
        status: ExecutionStatus,
        output: Option<&str>,
        error: Option<&str>,
    ) -> Result<()> {
        wasm::finish_execution(&self.pool, id, status, output, error).await
    }
    async fn enqueue_jobs(&self, queue: &str, jobs: &[NewJob]) -> Result<Vec<i64>> {
        wasm::enqueue_jobs(&self.queues, queue, jobs).await
    }
    async fn start_executions(&self, ids: &[String]) -> Result<Vec<String>> {
        wasm::start_executions(self.queues.pool(), ids).await
    }
    async fn finish_jobs(&self, queue: &str, jobs: &[FinishedJob]) -> Result<()> {
        wasm::finish_jobs(&self.queues, queue, jobs).await
    }
    async fn get_execution(&self, id: &str) -> Result<Option<ExecutionRow>> {
        wasm::get_execution(&self.pool, id).await
    }
    async fn cancel_execution(&self, id: &str) -> Result<bool> {
        wasm::transition_execution(
            &self.pool,
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
        budgets::put(&self.pool, row).await
    }
    async fn delete_budget(&self, app: &AppKey) -> Result<()> {
        budgets::delete(&self.pool, app).await
    }
    async fn upsert_environment(&self, row: &EnvironmentRow) -> Result<()> {
        environments::upsert_environment(&self.pool, row).await
    }
    async fn get_environment(&self, app: &AppKey, name: &str) -> Result<Option<EnvironmentRow>> {
        environments::get_environment(&self.pool, app, name).await
    }
    async fn list_environments(&self, app: Option<&AppKey>) -> Result<Vec<EnvironmentRow>> {
        environments::list_environments(&self.pool, app).await
    }
    async fn delete_environment(&self, app: &AppKey, name: &str) -> Result<bool> {
        environments::delete_environment(&self.pool, app, name).await
    }
    async fn create_deploy(&self, row: &DeployRow) -> Result<()> {
        environments::create_deploy(&self.pool, row).await
    }
    async fn get_deploy(&self, id: &str) -> Result<Option<DeployRow>> {
        environments::get_deploy(&self.pool, id).await
    }
    async fn update_deploy(&self, row: &DeployRow) -> Result<()> {
        environments::update_deploy(&self.pool, row).await
    }
    async fn record_deploy_step(&self, deploy_id: &str, step: &str, detail: &str) -> Result<bool> {
        environments::record_deploy_step(&self.pool, deploy_id, step, detail).await
    }
    async fn list_deploy_steps(&self, deploy_id: &str) -> Result<Vec<DeployStepRow>> {
        environments::list_deploy_steps(&self.pool, deploy_id).await
    }
    async fn put_secret(&self, row: &SecretRow) -> Result<()> {
        environments::put_secret(&self.pool, row).await
    }
    async fn list_secrets(&self, app: &AppKey, env: &str) -> Result<Vec<SecretRow>> {
        environments::list_secrets(&self.pool, app, env).await
    }
    async fn delete_secret(&self, app: &AppKey, env: &str, name: &str) -> Result<bool> {
        environments::delete_secret(&self.pool, app, env, name).await
    }
    async fn put_certificate(&self, row: &CertificateRow) -> Result<()> {
        environments::put_certificate(&self.pool, row).await
    }
    async fn list_certificates(&self) -> Result<Vec<CertificateRow>> {
        environments::list_certificates(&self.pool).await
    }
    async fn queue_set_vt(&self, queue: &str, msg_id: i64, vt_ms: i64) -> Result<bool> {
        environments::queue_set_vt(&self.queues, queue, msg_id, vt_ms).await
    }

    async fn register_node(&self, row: &NodeRow) -> Result<()> {
        nodes::register(&self.pool, row).await
    }
    async fn heartbeat_node(&self, id: &str, now_ms: i64) -> Result<bool> {
        nodes::heartbeat(&self.pool, id, now_ms).await
    }
    async fn list_nodes(&self) -> Result<Vec<NodeRow>> {
        nodes::list(&self.pool).await
    }
    async fn mark_lost_nodes(&self, before_ms: i64) -> Result<Vec<String>> {
        nodes::mark_lost(&self.pool, before_ms).await
    }
    async fn insert_placement(&self, row: &crate::PlacementRow) -> Result<()> {
        placements::insert(&self.pool, row).await
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
        placements::report(&self.pool, id, node, state, endpoint, error).await
    }
    async fn delete_placement(&self, id: &str) -> Result<()> {
        placements::delete(&self.pool, id).await
    }
    async fn app_uid(&self, app: &AppKey, first: u32, count: u32) -> Result<u32> {
        identities::app_uid(&self.pool, app, first, count).await
    }
    async fn list_app_uids(&self) -> Result<Vec<(AppKey, u32)>> {
        identities::list(&self.pool).await
    }
    async fn try_lead(&self, role: &str) -> Result<Option<crate::Lease>> {
        // A connection of its own, outside the pool: the lock lives exactly as long as it.
        let mut spare = self.spare.lock().await;
        let mut conn = match spare.take() {
            Some(c) => c,
            None => sqlx::postgres::PgConnection::connect_with(&self.connect_options)
                .await
                .ctx("connect for leadership")?,
        };
        // On an error the connection is dropped (not kept as the spare).
        let got: bool = sqlx::query_scalar(crate::lease::LOCK_SQL)
            .bind(role)
            .fetch_one(&mut conn)
            .await
            .ctx("try leadership")?;
        if got {
            Ok(Some(crate::Lease::postgres(role, conn)))
        } else {
            *spare = Some(conn);
            Ok(None)
        }
    }
}
