//! Durable queues with pgmq semantics: a table on SQLite (`sqlite::queue`), pgmq itself on
//! PostgreSQL (`postgres::queue`). Two differences, both invisible to callers: pgmq's
//! visibility timeout is in whole seconds (`vt_ms` is rounded up), and pgmq numbers messages
//! per queue (SQLite numbers them across queues).

use sqlx::AnyConnection;
use sqlx::Row;
use sqlx::any::AnyRow;

use super::{Backend, SqlStore, postgres, sqlite};
use crate::{QueueMessage, Result, StoreError};

/// A message from a row with `msg_id`, `read_ct`, `enqueued_at` and `vt` (ms since the epoch)
/// and `message` (JSON text; NULL reads as JSON null).
pub(super) fn message_from_row(r: &AnyRow) -> Result<QueueMessage> {
    Ok(QueueMessage {
        msg_id: r.get("msg_id"),
        read_ct: r.get("read_ct"),
        enqueued_at: r.get("enqueued_at"),
        vt: r.try_get("vt").unwrap_or(0),
        message: match r.get::<Option<String>, _>("message") {
            Some(text) => serde_json::from_str(&text).map_err(|e| StoreError::Corrupt {
                column: "queue message",
                message: e.to_string(),
            })?,
            None => serde_json::Value::Null,
        },
    })
}

pub(super) async fn send(
    store: &SqlStore,
    queue: &str,
    message: &serde_json::Value,
) -> Result<i64> {
    match &store.backend {
        Backend::Sqlite => sqlite::queue::send(&store.write, queue, message).await,
        Backend::Postgres(pg) => {
            pg.ensure_queue(&store.write, queue).await?;
            postgres::queue::send(&store.write, queue, message).await
        }
    }
}

pub(super) async fn read(
    store: &SqlStore,
    queue: &str,
    vt_ms: i64,
    qty: i64,
) -> Result<Vec<QueueMessage>> {
    match &store.backend {
        Backend::Sqlite => sqlite::queue::read(&store.write, queue, vt_ms, qty).await,
        Backend::Postgres(pg) => {
            pg.ensure_queue(&store.write, queue).await?;
            postgres::queue::read(&store.write, queue, vt_ms, qty).await
        }
    }
}

pub(super) async fn delete(store: &SqlStore, queue: &str, msg_id: i64) -> Result<bool> {
    let mut conn = store
        .write
        .acquire()
        .await
        .map_err(|source| StoreError::Database {
            op: "queue delete",
            source,
        })?;
    delete_on(store, &mut conn, queue, msg_id).await
}

/// `delete` on a connection or in a transaction (applying a result and deleting its message
/// together).
pub(super) async fn delete_on(
    store: &SqlStore,
    conn: &mut AnyConnection,
    queue: &str,
    msg_id: i64,
) -> Result<bool> {
    match &store.backend {
        Backend::Sqlite => sqlite::queue::delete(conn, queue, msg_id).await,
        Backend::Postgres(pg) => {
            pg.ensure_queue(&store.write, queue).await?;
            postgres::queue::delete(conn, queue, msg_id).await
        }
    }
}

/// `send` in a transaction.
pub(super) async fn send_on(
    store: &SqlStore,
    conn: &mut AnyConnection,
    queue: &str,
    message: &serde_json::Value,
) -> Result<i64> {
    match &store.backend {
        Backend::Sqlite => sqlite::queue::send(conn, queue, message).await,
        Backend::Postgres(pg) => {
            pg.ensure_queue(&store.write, queue).await?;
            postgres::queue::send(conn, queue, message).await
        }
    }
}

pub(super) async fn archive(
    store: &SqlStore,
    queue: &str,
    msg_id: i64,
    dead: bool,
) -> Result<bool> {
    match &store.backend {
        Backend::Sqlite => sqlite::queue::archive(&store.write, queue, msg_id, dead).await,
        Backend::Postgres(pg) => {
            pg.ensure_queue(&store.write, queue).await?;
            postgres::queue::archive(&store.write, queue, msg_id, dead).await
        }
    }
}

/// Messages waiting (visible or not) and the age in ms of the oldest.
pub(super) async fn depth(store: &SqlStore, queue: &str) -> Result<(i64, i64)> {
    let (n, oldest) = match &store.backend {
        Backend::Sqlite => sqlite::queue::depth(&store.read, queue).await?,
        Backend::Postgres(pg) => {
            pg.ensure_queue(&store.write, queue).await?;
            postgres::queue::depth(&store.read, queue).await?
        }
    };
    Ok((
        n,
        oldest.map(|o| morel_core::time::now_ms() - o).unwrap_or(0),
    ))
}

pub(super) async fn release_all(store: &SqlStore, queue: &str) -> Result<u64> {
    match &store.backend {
        Backend::Sqlite => sqlite::queue::release_all(&store.write, queue).await,
        Backend::Postgres(pg) => {
            pg.ensure_queue(&store.write, queue).await?;
            postgres::queue::release_all(&store.write, queue).await
        }
    }
}

pub(super) async fn set_vt(store: &SqlStore, queue: &str, msg_id: i64, vt_ms: i64) -> Result<bool> {
    match &store.backend {
        Backend::Sqlite => sqlite::queue::set_vt(&store.write, queue, msg_id, vt_ms).await,
        Backend::Postgres(pg) => {
            pg.ensure_queue(&store.write, queue).await?;
            postgres::queue::set_vt(&store.write, queue, msg_id, vt_ms).await
        }
    }
}

pub(super) async fn archived(store: &SqlStore, queue: &str) -> Result<Vec<(QueueMessage, bool)>> {
    match &store.backend {
        Backend::Sqlite => sqlite::queue::archived(&store.read, queue).await,
        Backend::Postgres(pg) => {
            pg.ensure_queue(&store.write, queue).await?;
            postgres::queue::archived(&store.read, queue).await
        }
    }
}
