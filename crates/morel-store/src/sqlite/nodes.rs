//! Nodes of a many-machine installation: registration, heartbeats, loss after a TTL.

use morel_core::NodeState;
use sqlx::sqlite::SqliteRow;
use sqlx::{Row, SqlitePool};

use super::parse;
use crate::error::Ctx;
use crate::{NodeRow, Result};

fn from_row(r: &SqliteRow) -> Result<NodeRow> {
    Ok(NodeRow {
        id: r.get("id"),
        address: r.get("address"),
        capacity: r.get("capacity"),
        state: parse::<NodeState>("nodes.state", r.get("state"))?,
        registered_at: r.get("registered_at"),
        heartbeat_at: r.get("heartbeat_at"),
    })
}

pub async fn register(pool: &SqlitePool, row: &NodeRow) -> Result<()> {
    sqlx::query(
        "INSERT INTO nodes (id, address, capacity, state, registered_at, heartbeat_at) VALUES (?, ?, ?, ?, ?, ?) \
         ON CONFLICT (id) DO UPDATE SET address = excluded.address, capacity = excluded.capacity, \
         state = excluded.state, heartbeat_at = excluded.heartbeat_at",
    )
    .bind(&row.id)
    .bind(&row.address)
    .bind(row.capacity)
    .bind(NodeState::Ready.as_str())
    .bind(row.registered_at)
    .bind(row.heartbeat_at)
    .execute(pool)
    .await
    .ctx("register node")?;
    Ok(())
}

pub async fn heartbeat(pool: &SqlitePool, id: &str, now_ms: i64) -> Result<bool> {
    let res = sqlx::query("UPDATE nodes SET heartbeat_at = ?, state = ? WHERE id = ?")
        .bind(now_ms)
        .bind(NodeState::Ready.as_str())
        .bind(id)
        .execute(pool)
        .await
        .ctx("node heartbeat")?;
    Ok(res.rows_affected() > 0)
}

pub async fn list(pool: &SqlitePool) -> Result<Vec<NodeRow>> {
    sqlx::query("SELECT * FROM nodes ORDER BY id")
        .fetch_all(pool)
        .await
        .ctx("list nodes")?
        .iter()
        .map(from_row)
        .collect()
}

pub async fn mark_lost(pool: &SqlitePool, before_ms: i64) -> Result<Vec<String>> {
    let mut ids: Vec<String> = sqlx::query_scalar(
        "UPDATE nodes SET state = ? WHERE state = ? AND heartbeat_at < ? RETURNING id",
    )
    .bind(NodeState::Lost.as_str())
    .bind(NodeState::Ready.as_str())
    .bind(before_ms)
    .fetch_all(pool)
    .await
    .ctx("mark lost nodes")?;
    ids.sort();
    Ok(ids)
}
