//! What only SQLite does: opening a file in WAL mode with one writer connection beside the
//! readers, the async-jobs hot path in one round trip to that writer, and the export half of
//! `morel export`.

use std::path::Path;

use sqlx::AnyPool;
use sqlx::any::{AnyArguments, AnyConnectOptions, AnyPoolOptions, AnyRow};
use sqlx::{Arguments, Column, ConnectOptions, Executor, Row, TypeInfo, ValueRef};

use super::{Backend, SqlStore};
use crate::error::Ctx;
use crate::transfer::{
    Cell, DUMP_FORMAT, Dump, NOT_EXPORTED, QueuedMessage, TableDump, is_identifier, to_hex,
};
use crate::{FinishedJob, NewJob, Result, StoreError};

/// Set on every connection. `synchronous = NORMAL` is safe in WAL mode (a power loss may lose
/// the last commits, never corrupt the file).
const PRAGMAS: &str = "PRAGMA journal_mode = WAL; PRAGMA synchronous = NORMAL; \
                       PRAGMA busy_timeout = 10000; PRAGMA foreign_keys = ON;";

pub(super) async fn open(path: &Path) -> Result<SqlStore> {
    let url = sqlx::sqlite::SqliteConnectOptions::new()
        .filename(path)
        .create_if_missing(true)
        .to_url_lossy();
    let opts = AnyConnectOptions::from_url(&url).ctx("open database")?;
    let write = pool(&opts, 1).await?;
    let read = pool(&opts, 4).await?;
    store(read, write).await
}

pub(super) async fn in_memory() -> Result<SqlStore> {
    let opts: AnyConnectOptions = "sqlite::memory:".parse().ctx("open in-memory database")?;
    // One connection, kept for good: every connection to :memory: is a database of its own.
    let pool = pool(&opts, 1).await?;
    store(pool.clone(), pool).await
}

async fn pool(opts: &AnyConnectOptions, max: u32) -> Result<AnyPool> {
    sqlx::any::install_default_drivers();
    AnyPoolOptions::new()
        .max_connections(max)
        .idle_timeout(None)
        .max_lifetime(None)
        .after_connect(|conn, _| Box::pin(async move { conn.execute(PRAGMAS).await.map(drop) }))
        .connect_with(opts.clone())
        .await
        .ctx("open database")
}

async fn store(read: AnyPool, write: AnyPool) -> Result<SqlStore> {
    let store = SqlStore {
        read,
        write,
        backend: Backend::Sqlite,
    };
    store.migrate().await?;
    Ok(store)
}

/// The jobs' executions and messages in one transaction, one round trip: two multi-row inserts.
pub(super) async fn enqueue_jobs(pool: &AnyPool, queue: &str, jobs: &[NewJob]) -> Result<Vec<i64>> {
    if jobs.is_empty() {
        return Ok(Vec::new());
    }
    let now = morel_core::time::now_ms();
    let mut args = Args::default();
    for job in jobs {
        let row = &job.execution;
        args.text(&row.id.to_string())
            .text(&row.function_id)
            .text(row.status.as_str())
            .text(&row.input)
            .opt_text(row.output.as_deref())
            .opt_text(row.error.as_deref())
            .int(row.started_at)
            .opt_int(row.completed_at);
    }
    for job in jobs {
        args.text(queue)
            .int(now)
            .int(now)
            .text(&job.message.to_string());
    }
    let sql = format!(
        "BEGIN IMMEDIATE; \
         INSERT INTO executions (id, function_id, status, input, output, error, started_at, completed_at) VALUES {}; \
         INSERT INTO queue_messages (queue, read_ct, enqueued_at, vt, message) VALUES {} RETURNING msg_id; \
         COMMIT;",
        values(jobs.len(), "(?, ?, ?, ?, ?, ?, ?, ?)"),
        values(jobs.len(), "(?, 0, ?, ?, ?)"),
    );
    let rows = atomically(pool, sql, args, "enqueue jobs").await?;
    // One transaction on the one writer: the ids are consecutive, in insertion order.
    let mut ids: Vec<i64> = rows
        .iter()
        .filter_map(|r| r.try_get::<i64, _>("msg_id").ok())
        .collect();
    ids.sort_unstable();
    if ids.len() != jobs.len() {
        return Err(StoreError::Corrupt {
            column: "queue_messages.msg_id",
            message: format!("{} jobs inserted, {} ids returned", jobs.len(), ids.len()),
        });
    }
    Ok(ids)
}

/// The jobs' outcomes and the deletion of their messages in one transaction, one round trip.
pub(super) async fn finish_jobs(pool: &AnyPool, queue: &str, jobs: &[FinishedJob]) -> Result<()> {
    if jobs.is_empty() {
        return Ok(());
    }
    let now = morel_core::time::now_ms();
    let mut args = Args::default();
    let mut sql = String::from("BEGIN IMMEDIATE; ");
    for job in jobs {
        sql.push_str("UPDATE executions SET status = ?, output = ?, error = ?, completed_at = ? WHERE id = ? AND status IN ('QUEUED', 'RUNNING'); ");
        args.text(job.status.as_str())
            .opt_text(job.output.as_deref())
            .opt_text(job.error.as_deref())
            .int(now)
            .text(&job.id.to_string());
    }
    sql.push_str(&format!(
        "DELETE FROM queue_messages WHERE queue = ? AND msg_id IN ({}); COMMIT;",
        vec!["?"; jobs.len()].join(", ")
    ));
    args.text(queue);
    for job in jobs {
        args.int(job.msg_id);
    }
    atomically(pool, sql, args, "finish jobs").await?;
    Ok(())
}

/// `n` copies of a `VALUES` tuple, comma-separated.
fn values(n: usize, tuple: &str) -> String {
    vec![tuple; n].join(", ")
}

/// Owned parameters for [`atomically`], bound to the `?`s of all its statements in order.
#[derive(Default)]
struct Args(AnyArguments<'static>);

impl Args {
    fn push<T>(&mut self, value: T) -> &mut Self
    where
        T: sqlx::Encode<'static, sqlx::Any> + sqlx::Type<sqlx::Any> + 'static,
    {
        // Encoding a string or an integer cannot fail.
        let _ = self.0.add(value);
        self
    }
    fn text(&mut self, v: &str) -> &mut Self {
        self.push(v.to_owned())
    }
    fn opt_text(&mut self, v: Option<&str>) -> &mut Self {
        self.push(v.map(str::to_owned))
    }
    fn int(&mut self, v: i64) -> &mut Self {
        self.push(v)
    }
    fn opt_int(&mut self, v: Option<i64>) -> &mut Self {
        self.push(v)
    }
}

/// Runs `sql`, several statements from `BEGIN IMMEDIATE` to `COMMIT`, in a single round trip to
/// the connection's thread; a sqlx transaction would cost one more each for `BEGIN` and
/// `COMMIT`, on the one writer connection every write queues for. A failed statement rolls
/// the transaction back. It runs on a task of its own, so a caller that goes away (a client
/// hanging up) cannot stop it halfway with the transaction still open. Returns the rows the
/// statements returned.
async fn atomically(
    pool: &AnyPool,
    sql: String,
    args: Args,
    what: &'static str,
) -> Result<Vec<AnyRow>> {
    let pool = pool.clone();
    let task = tokio::spawn(async move {
        let mut conn = pool.acquire().await.ctx(what)?;
        match sqlx::query_with(&sql, args.0).fetch_all(&mut *conn).await {
            Ok(rows) => Ok(rows),
            Err(e) => {
                // Nothing to undo when BEGIN itself failed; the error then is the first one.
                let _ = sqlx::query("ROLLBACK").execute(&mut *conn).await;
                Err(e).ctx(what)
            }
        }
    });
    task.await.map_err(|_| StoreError::Database {
        op: what,
        source: sqlx::Error::WorkerCrashed,
    })?
}

impl SqlStore {
    /// Reads everything a move to another backend needs, in one read transaction so the dump
    /// is consistent even while the store is in use. SQLite stores only.
    pub async fn export(&self) -> Result<Dump> {
        if self.is_postgres() {
            return Err(StoreError::Import(
                "export reads a SQLite store; this one is PostgreSQL".into(),
            ));
        }
        let mut tx = self.read.begin().await.ctx("begin export")?;
        let migrations: Vec<i64> =
            sqlx::query_scalar("SELECT version FROM morel_migrations ORDER BY version")
                .fetch_all(&mut *tx)
                .await
                .ctx("read migrations")?;
        let names: Vec<String> = sqlx::query_scalar(
            "SELECT name FROM sqlite_master WHERE type = 'table' AND name NOT LIKE 'sqlite_%' ORDER BY name",
        )
        .fetch_all(&mut *tx)
        .await
        .ctx("list tables")?;
        let mut tables = Vec::new();
        for name in names {
            if NOT_EXPORTED.contains(&name.as_str()) {
                continue;
            }
            if !is_identifier(&name) {
                return Err(StoreError::Import(format!(
                    "unexpected table name {name:?}"
                )));
            }
            let rows = sqlx::query(&format!("SELECT * FROM {name}"))
                .fetch_all(&mut *tx)
                .await
                .ctx("export table")?;
            let columns = match rows.first() {
                Some(r) => r.columns().iter().map(|c| c.name().to_owned()).collect(),
                None => Vec::new(),
            };
            let rows = rows.iter().map(cells).collect::<Result<Vec<_>>>()?;
            tables.push(TableDump {
                name,
                columns,
                rows,
            });
        }
        let queue_messages =
            sqlx::query("SELECT queue, message FROM queue_messages ORDER BY msg_id")
                .fetch_all(&mut *tx)
                .await
                .ctx("export queue messages")?
                .iter()
                .map(|r| {
                    let text: String = r.get("message");
                    Ok(QueuedMessage {
                        queue: r.get("queue"),
                        message: serde_json::from_str(&text).map_err(|e| StoreError::Corrupt {
                            column: "queue_messages.message",
                            message: e.to_string(),
                        })?,
                    })
                })
                .collect::<Result<Vec<_>>>()?;
        tx.commit().await.ctx("end export")?;
        Ok(Dump {
            format: DUMP_FORMAT,
            migrations,
            tables,
            queue_messages,
        })
    }
}

/// A row's values by their stored type (SQLite types values, not columns).
fn cells(row: &AnyRow) -> Result<Vec<Cell>> {
    (0..row.columns().len())
        .map(|i| {
            let raw = row.try_get_raw(i).ctx("read cell")?;
            if raw.is_null() {
                return Ok(Cell::Null);
            }
            let kind = raw.type_info().name().to_owned();
            Ok(match kind.as_str() {
                "BIGINT" | "INTEGER" | "SMALLINT" => Cell::Int(row.try_get(i).ctx("read integer")?),
                "TEXT" => Cell::Text(row.try_get(i).ctx("read text")?),
                "BLOB" => Cell::Bytes(to_hex(&row.try_get::<Vec<u8>, _>(i).ctx("read blob")?)),
                other => {
                    return Err(StoreError::Corrupt {
                        column: "export",
                        message: format!("cannot export a {other} value"),
                    });
                }
            })
        })
        .collect()
}

/// Durable queues with pgmq semantics on a table: `read` hides messages for a visibility
/// timeout and counts reads, in one statement, so two consumers never get the same message
/// while it is hidden.
pub(super) mod queue {
    use sqlx::AnyPool;
    use sqlx::Row;
    use sqlx::any::AnyExecutor;

    use super::super::queues::message_from_row;
    use crate::error::Ctx;
    use crate::{QueueMessage, Result};

    pub async fn send<'e>(
        ex: impl AnyExecutor<'e>,
        queue: &str,
        message: &serde_json::Value,
    ) -> Result<i64> {
        let now = morel_core::time::now_ms();
        sqlx::query_scalar("INSERT INTO queue_messages (queue, read_ct, enqueued_at, vt, message) VALUES ($1, 0, $2, $2, $3) RETURNING msg_id")
            .bind(queue)
            .bind(now)
            .bind(message.to_string())
            .fetch_one(ex)
            .await
            .ctx("queue send")
    }

    pub async fn read(
        pool: &AnyPool,
        queue: &str,
        vt_ms: i64,
        qty: i64,
    ) -> Result<Vec<QueueMessage>> {
        let now = morel_core::time::now_ms();
        let rows = sqlx::query(
            "UPDATE queue_messages SET vt = $1 + $2, read_ct = read_ct + 1 \
             WHERE msg_id IN (SELECT msg_id FROM queue_messages WHERE queue = $3 AND vt <= $1 ORDER BY msg_id LIMIT $4) \
             RETURNING msg_id, read_ct, enqueued_at, vt, message",
        )
        .bind(now)
        .bind(vt_ms)
        .bind(queue)
        .bind(qty)
        .fetch_all(pool)
        .await
        .ctx("queue read")?;
        let mut out: Vec<QueueMessage> =
            rows.iter().map(message_from_row).collect::<Result<_>>()?;
        out.sort_by_key(|m| m.msg_id);
        Ok(out)
    }

    pub async fn delete<'e>(ex: impl AnyExecutor<'e>, queue: &str, msg_id: i64) -> Result<bool> {
        let res = sqlx::query("DELETE FROM queue_messages WHERE queue = $1 AND msg_id = $2")
            .bind(queue)
            .bind(msg_id)
            .execute(ex)
            .await
            .ctx("queue delete")?;
        Ok(res.rows_affected() > 0)
    }

    pub async fn archive(pool: &AnyPool, queue: &str, msg_id: i64, dead: bool) -> Result<bool> {
        let mut tx = pool.begin().await.ctx("begin archive")?;
        let moved = sqlx::query(
            "INSERT INTO queue_archive (msg_id, queue, read_ct, enqueued_at, archived_at, dead, message) \
             SELECT msg_id, queue, read_ct, enqueued_at, $1, $2, message FROM queue_messages WHERE queue = $3 AND msg_id = $4",
        )
        .bind(morel_core::time::now_ms())
        .bind(i64::from(dead))
        .bind(queue)
        .bind(msg_id)
        .execute(&mut *tx)
        .await
        .ctx("queue archive")?;
        delete(&mut *tx, queue, msg_id).await?;
        tx.commit().await.ctx("commit archive")?;
        Ok(moved.rows_affected() > 0)
    }

    pub async fn depth(pool: &AnyPool, queue: &str) -> Result<(i64, Option<i64>)> {
        let row = sqlx::query(
            "SELECT COUNT(*) AS n, MIN(enqueued_at) AS oldest FROM queue_messages WHERE queue = $1",
        )
        .bind(queue)
        .fetch_one(pool)
        .await
        .ctx("queue depth")?;
        Ok((row.get("n"), row.get("oldest")))
    }

    pub async fn release_all(pool: &AnyPool, queue: &str) -> Result<u64> {
        let now = morel_core::time::now_ms();
        let res = sqlx::query("UPDATE queue_messages SET vt = $1 WHERE queue = $2 AND vt > $1")
            .bind(now)
            .bind(queue)
            .execute(pool)
            .await
            .ctx("queue release")?;
        Ok(res.rows_affected())
    }

    pub async fn set_vt(pool: &AnyPool, queue: &str, msg_id: i64, vt_ms: i64) -> Result<bool> {
        let res = sqlx::query("UPDATE queue_messages SET vt = $1 WHERE queue = $2 AND msg_id = $3")
            .bind(morel_core::time::now_ms() + vt_ms)
            .bind(queue)
            .bind(msg_id)
            .execute(pool)
            .await
            .ctx("queue set vt")?;
        Ok(res.rows_affected() > 0)
    }

    pub async fn archived(pool: &AnyPool, queue: &str) -> Result<Vec<(QueueMessage, bool)>> {
        sqlx::query("SELECT msg_id, read_ct, enqueued_at, archived_at AS vt, message, dead FROM queue_archive WHERE queue = $1 ORDER BY msg_id")
            .bind(queue)
            .fetch_all(pool)
            .await
            .ctx("queue archived")?
            .iter()
            .map(|r| Ok((message_from_row(r)?, r.get::<i64, _>("dead") != 0)))
            .collect()
    }
}
