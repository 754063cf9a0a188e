//! Nodes of a many-machine installation: registration, heartbeats, loss after a TTL.

use morel_core::{NodeId, NodeState};
use sqlx::AnyPool;
use sqlx::Row;
use sqlx::any::AnyRow;

use super::parse;
use crate::error::Ctx;
use crate::{NodeRow, Result};

fn from_row(r: &AnyRow) -> Result<NodeRow> {
    Ok(NodeRow {
        id: parse("nodes.id", r.get("id"))?,
        address: r.get("address"),
        capacity: r.get("capacity"),
        state: parse::<NodeState>("nodes.state", r.get("state"))?,
        registered_at: r.get("registered_at"),
        heartbeat_at: r.get("heartbeat_at"),
    })
}

pub async fn register(pool: &AnyPool, row: &NodeRow) -> Result<()> {
    sqlx::query(
        "INSERT INTO nodes (id, address, capacity, state, registered_at, heartbeat_at) VALUES ($1, $2, $3, $4, $5, $6) \
         ON CONFLICT (id) DO UPDATE SET address = excluded.address, capacity = excluded.capacity, \
         state = excluded.state, heartbeat_at = excluded.heartbeat_at",
    )
    .bind(row.id.as_str())
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

pub async fn heartbeat(pool: &AnyPool, id: &NodeId, now_ms: i64) -> Result<bool> {
    let res = sqlx::query("UPDATE nodes SET heartbeat_at = $1, state = $2 WHERE id = $3")
        .bind(now_ms)
        .bind(NodeState::Ready.as_str())
        .bind(id.as_str())
        .execute(pool)
        .await
        .ctx("node heartbeat")?;
    Ok(res.rows_affected() > 0)
}

pub async fn list(pool: &AnyPool) -> Result<Vec<NodeRow>> {
    sqlx::query("SELECT * FROM nodes ORDER BY id")
        .fetch_all(pool)
        .await
        .ctx("list nodes")?
        .iter()
        .map(from_row)
        .collect()
}

pub async fn mark_lost(pool: &AnyPool, before_ms: i64) -> Result<Vec<NodeId>> {
    let ids: Vec<String> = sqlx::query_scalar(
        "UPDATE nodes SET state = $1 WHERE state = $2 AND heartbeat_at < $3 RETURNING id",
    )
    .bind(NodeState::Lost.as_str())
    .bind(NodeState::Ready.as_str())
    .bind(before_ms)
    .fetch_all(pool)
    .await
    .ctx("mark lost nodes")?;
    let mut ids = ids
        .iter()
        .map(|id| parse("nodes.id", id))
        .collect::<Result<Vec<NodeId>>>()?;
    ids.sort();
    Ok(ids)
}
