//! Durable queues on pgmq: every operation is a call to pgmq's own functions (`pgmq.send`,
//! `pgmq.read`, `pgmq.set_vt`, `pgmq.delete`, `pgmq.archive`), whether pgmq is the extension or the plain SQL
//! installed by `schema.rs`. Two differences from the SQLite queue, both invisible to callers:
//! - pgmq's visibility timeout is in whole seconds, so `vt_ms` is rounded up to the next second;
//! - message ids are numbered per queue (SQLite numbers them across queues).
//!
//! A queue's tables are created (`pgmq.create`) on its first use by this process.

use std::collections::HashSet;
use std::sync::{Arc, Mutex};

use sqlx::postgres::PgRow;
use sqlx::{PgExecutor, PgPool, Row};

use crate::error::Ctx;
use crate::{QueueMessage, Result, StoreError};

/// The pool plus the queues this process already created.
#[derive(Clone, Debug)]
pub struct Queues {
    pool: PgPool,
    created: Arc<Mutex<HashSet<String>>>,
}

impl Queues {
    pub fn new(pool: PgPool) -> Self {
        Queues {
            pool,
            created: Default::default(),
        }
    }

    pub fn pool(&self) -> &PgPool {
        &self.pool
    }

    /// Creates the queue's tables unless this process already did (pgmq's create is
    /// idempotent, so another process having created them is fine).
    pub async fn ensure(&self, queue: &str) -> Result<()> {
        if self.is_created(queue) {
            return Ok(());
        }
        table(queue, "q")?;
        sqlx::query("SELECT pgmq.create($1)")
            .bind(queue)
            .execute(&self.pool)
            .await
            .ctx("create queue")?;
        self.created
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .insert(queue.to_owned());
        Ok(())
    }

    fn is_created(&self, queue: &str) -> bool {
        self.created
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .contains(queue)
    }
}

/// pgmq's table for a queue (`pgmq.q_name` or `pgmq.a_name`), checked to be a safe identifier
/// with the same rule as `pgmq.format_table_name`.
pub(crate) fn table(queue: &str, prefix: &str) -> Result<String> {
    let ok = !queue.is_empty()
        && queue.len() <= 47
        && queue.chars().all(|c| c.is_ascii_alphanumeric() || c == '_');
    if !ok {
        return Err(StoreError::QueueName(queue.to_owned()));
    }
    Ok(format!("pgmq.{prefix}_{}", queue.to_ascii_lowercase()))
}

/// Milliseconds since the epoch of a `timestamptz` column, as SQL.
fn ms(column: &str) -> String {
    format!("(EXTRACT(EPOCH FROM {column}) * 1000)::BIGINT")
}

fn from_row(r: &PgRow) -> Result<QueueMessage> {
    Ok(QueueMessage {
        msg_id: r.get("msg_id"),
        read_ct: r.get::<i32, _>("read_ct").into(),
        enqueued_at: r.get("enqueued_at_ms"),
        vt: r.get("vt_ms"),
        message: match r.get::<Option<String>, _>("message_text") {
            Some(text) => serde_json::from_str(&text).map_err(|e| StoreError::Corrupt {
                column: "pgmq message",
                message: e.to_string(),
            })?,
            None => serde_json::Value::Null,
        },
    })
}

pub async fn send(queues: &Queues, queue: &str, message: &serde_json::Value) -> Result<i64> {
    queues.ensure(queue).await?;
    send_on(&queues.pool, queue, message).await
}

/// `send` on a connection or transaction, for a queue already [`Queues::ensure`]d.
pub(crate) async fn send_on<'e>(
    ex: impl PgExecutor<'e>,
    queue: &str,
    message: &serde_json::Value,
) -> Result<i64> {
    sqlx::query_scalar("SELECT * FROM pgmq.send($1, $2::jsonb)")
        .bind(queue)
        .bind(message.to_string())
        .fetch_one(ex)
        .await
        .ctx("queue send")
}

/// pgmq's visibility timeouts are whole seconds: `vt_ms` rounded up.
pub(crate) fn vt_seconds(vt_ms: i64) -> i32 {
    i32::try_from((vt_ms.max(0) + 999) / 1000).unwrap_or(i32::MAX)
}

pub async fn read(queues: &Queues, queue: &str, vt_ms: i64, qty: i64) -> Result<Vec<QueueMessage>> {
    queues.ensure(queue).await?;
    let vt_s = vt_seconds(vt_ms);
    let qty = i32::try_from(qty.max(0)).unwrap_or(i32::MAX);
    let sql = format!(
        "SELECT msg_id, read_ct, {} AS enqueued_at_ms, {} AS vt_ms, message::text AS message_text FROM pgmq.read($1, $2, $3) ORDER BY msg_id",
        ms("enqueued_at"),
        ms("vt")
    );
    sqlx::query(&sql)
        .bind(queue)
        .bind(vt_s)
        .bind(qty)
        .fetch_all(&queues.pool)
        .await
        .ctx("queue read")?
        .iter()
        .map(from_row)
        .collect()
}

pub async fn delete(queues: &Queues, queue: &str, msg_id: i64) -> Result<bool> {
    queues.ensure(queue).await?;
    delete_on(&queues.pool, queue, msg_id).await
}

/// `delete` on a connection or transaction, for a queue already [`Queues::ensure`]d.
pub(crate) async fn delete_on<'e>(
    ex: impl PgExecutor<'e>,
    queue: &str,
    msg_id: i64,
) -> Result<bool> {
    sqlx::query_scalar("SELECT pgmq.delete($1, $2)")
        .bind(queue)
        .bind(msg_id)
        .fetch_one(ex)
        .await
        .ctx("queue delete")
}

pub async fn archive(queues: &Queues, queue: &str, msg_id: i64, dead: bool) -> Result<bool> {
    queues.ensure(queue).await?;
    let mut tx = queues.pool.begin().await.ctx("begin archive")?;
    let moved: bool = sqlx::query_scalar("SELECT pgmq.archive($1, $2)")
        .bind(queue)
        .bind(msg_id)
        .fetch_one(&mut *tx)
        .await
        .ctx("queue archive")?;
    if moved && dead {
        sqlx::query(
            "INSERT INTO queue_dead_letters (queue, msg_id) VALUES ($1, $2) ON CONFLICT DO NOTHING",
        )
        .bind(queue)
        .bind(msg_id)
        .execute(&mut *tx)
        .await
        .ctx("mark dead letter")?;
    }
    tx.commit().await.ctx("commit archive")?;
    Ok(moved)
}

pub async fn depth(queues: &Queues, queue: &str) -> Result<(i64, i64)> {
    queues.ensure(queue).await?;
    let sql = format!(
        "SELECT COUNT(*) AS n, {} AS oldest FROM {}",
        ms("MIN(enqueued_at)"),
        table(queue, "q")?
    );
    let row = sqlx::query(&sql)
        .fetch_one(&queues.pool)
        .await
        .ctx("queue depth")?;
    let n: i64 = row.get("n");
    let oldest: Option<i64> = row.get("oldest");
    Ok((
        n,
        oldest.map(|o| morel_core::time::now_ms() - o).unwrap_or(0),
    ))
}

pub async fn release_all(queues: &Queues, queue: &str) -> Result<u64> {
    queues.ensure(queue).await?;
    let sql = format!(
        "UPDATE {} SET vt = clock_timestamp() WHERE vt > clock_timestamp()",
        table(queue, "q")?
    );
    let res = sqlx::query(&sql)
        .execute(&queues.pool)
        .await
        .ctx("queue release")?;
    Ok(res.rows_affected())
}

pub async fn archived(queues: &Queues, queue: &str) -> Result<Vec<(QueueMessage, bool)>> {
    queues.ensure(queue).await?;
    let sql = format!(
        "SELECT a.msg_id, a.read_ct, {} AS enqueued_at_ms, {} AS vt_ms, a.message::text AS message_text, d.msg_id IS NOT NULL AS dead \
         FROM {} a LEFT JOIN queue_dead_letters d ON d.queue = $1 AND d.msg_id = a.msg_id ORDER BY a.msg_id",
        ms("a.enqueued_at"),
        ms("a.archived_at"),
        table(queue, "a")?
    );
    sqlx::query(&sql)
        .bind(queue)
        .fetch_all(&queues.pool)
        .await
        .ctx("queue archived")?
        .iter()
        .map(|r| Ok((from_row(r)?, r.get::<bool, _>("dead"))))
        .collect()
}
