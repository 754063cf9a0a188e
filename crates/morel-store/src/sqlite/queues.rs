//! Durable queues with pgmq semantics on SQLite: `read` hides messages for a visibility
//! timeout and counts reads, in one statement, so two consumers never get the same message
//! while it is hidden.

use sqlx::sqlite::SqliteRow;
use sqlx::{Row, SqlitePool};

use crate::error::Ctx;
use crate::{QueueMessage, Result, StoreError};

fn from_row(r: &SqliteRow) -> Result<QueueMessage> {
    let text: String = r.get("message");
    Ok(QueueMessage {
        msg_id: r.get("msg_id"),
        read_ct: r.get("read_ct"),
        enqueued_at: r.get("enqueued_at"),
        vt: r.try_get("vt").unwrap_or(0),
        message: serde_json::from_str(&text).map_err(|e| StoreError::Corrupt {
            column: "queue_messages.message",
            message: e.to_string(),
        })?,
    })
}

pub async fn send(pool: &SqlitePool, queue: &str, message: &serde_json::Value) -> Result<i64> {
    let now = morel_core::time::now_ms();
    let res = sqlx::query("INSERT INTO queue_messages (queue, read_ct, enqueued_at, vt, message) VALUES (?, 0, ?, ?, ?)")
        .bind(queue)
        .bind(now)
        .bind(now)
        .bind(message.to_string())
        .execute(pool)
        .await
        .ctx("queue send")?;
    Ok(res.last_insert_rowid())
}

pub async fn read(
    pool: &SqlitePool,
    queue: &str,
    vt_ms: i64,
    qty: i64,
) -> Result<Vec<QueueMessage>> {
    let now = morel_core::time::now_ms();
    let rows = sqlx::query(
        "UPDATE queue_messages SET vt = ?1 + ?2, read_ct = read_ct + 1 \
         WHERE msg_id IN (SELECT msg_id FROM queue_messages WHERE queue = ?3 AND vt <= ?1 ORDER BY msg_id LIMIT ?4) \
         RETURNING msg_id, read_ct, enqueued_at, vt, message",
    )
    .bind(now)
    .bind(vt_ms)
    .bind(queue)
    .bind(qty)
    .fetch_all(pool)
    .await
    .ctx("queue read")?;
    let mut out: Vec<QueueMessage> = rows.iter().map(from_row).collect::<Result<_>>()?;
    out.sort_by_key(|m| m.msg_id);
    Ok(out)
}

pub async fn delete(pool: &SqlitePool, queue: &str, msg_id: i64) -> Result<bool> {
    let res = sqlx::query("DELETE FROM queue_messages WHERE queue = ? AND msg_id = ?")
        .bind(queue)
        .bind(msg_id)
        .execute(pool)
        .await
        .ctx("queue delete")?;
    Ok(res.rows_affected() > 0)
}

pub async fn archive(pool: &SqlitePool, queue: &str, msg_id: i64, dead: bool) -> Result<bool> {
    let mut tx = pool.begin().await.ctx("begin archive")?;
    let moved = sqlx::query(
        "INSERT INTO queue_archive (msg_id, queue, read_ct, enqueued_at, archived_at, dead, message) \
         SELECT msg_id, queue, read_ct, enqueued_at, ?, ?, message FROM queue_messages WHERE queue = ? AND msg_id = ?",
    )
    .bind(morel_core::time::now_ms())
    .bind(dead as i64)
    .bind(queue)
    .bind(msg_id)
    .execute(&mut *tx)
    .await
    .ctx("queue archive")?;
    sqlx::query("DELETE FROM queue_messages WHERE queue = ? AND msg_id = ?")
        .bind(queue)
        .bind(msg_id)
        .execute(&mut *tx)
        .await
        .ctx("queue archive delete")?;
    tx.commit().await.ctx("commit archive")?;
    Ok(moved.rows_affected() > 0)
}

pub async fn depth(pool: &SqlitePool, queue: &str) -> Result<(i64, i64)> {
    let row = sqlx::query(
        "SELECT COUNT(*) AS n, MIN(enqueued_at) AS oldest FROM queue_messages WHERE queue = ?",
    )
    .bind(queue)
    .fetch_one(pool)
    .await
    .ctx("queue depth")?;
    let n: i64 = row.get("n");
    let oldest: Option<i64> = row.get("oldest");
    Ok((
        n,
        oldest.map(|o| morel_core::time::now_ms() - o).unwrap_or(0),
    ))
}

pub async fn release_all(pool: &SqlitePool, queue: &str) -> Result<u64> {
    let now = morel_core::time::now_ms();
    let res = sqlx::query("UPDATE queue_messages SET vt = ? WHERE queue = ? AND vt > ?")
        .bind(now)
        .bind(queue)
        .bind(now)
        .execute(pool)
        .await
        .ctx("queue release")?;
    Ok(res.rows_affected())
}

pub async fn archived(pool: &SqlitePool, queue: &str) -> Result<Vec<(QueueMessage, bool)>> {
    let rows = sqlx::query("SELECT msg_id, read_ct, enqueued_at, archived_at AS vt, message, dead FROM queue_archive WHERE queue = ? ORDER BY msg_id")
        .bind(queue)
        .fetch_all(pool)
        .await
        .ctx("queue archived")?;
    rows.iter()
        .map(|r| Ok((from_row(r)?, r.get::<i64, _>("dead") != 0)))
        .collect()
}
