//! Placements (many machines): which node runs which instance, and what its agent reported.

use morel_core::{InstanceId, NodeId, PlacementState};
use sqlx::AnyPool;
use sqlx::Row;

use super::{app_key, parse};
use crate::error::Ctx;
use crate::{PlacementRow, Result};

fn from_row(r: &sqlx::any::AnyRow) -> Result<PlacementRow> {
    Ok(PlacementRow {
        id: parse("placements.id", r.get("id"))?,
        app: app_key(r)?,
        release: r.get("release"),
        resource: r.get("resource"),
        node: parse("placements.node", r.get("node"))?,
        state: parse::<PlacementState>("placements.state", r.get("state"))?,
        endpoint: r.get("endpoint"),
        error: r.get("error"),
        created_at: r.get("created_at"),
        updated_at: r.get("updated_at"),
    })
}

pub async fn insert(pool: &AnyPool, row: &PlacementRow) -> Result<()> {
    sqlx::query(
        "INSERT INTO placements (id, namespace, app, release, resource, node, state, endpoint, error, created_at, updated_at) VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11)",
    )
    .bind(row.id.to_string())
    .bind(row.app.namespace.as_str())
    .bind(row.app.name.as_str())
    .bind(row.release)
    .bind(&row.resource)
    .bind(row.node.as_str())
    .bind(row.state.as_str())
    .bind(&row.endpoint)
    .bind(&row.error)
    .bind(row.created_at)
    .bind(row.updated_at)
    .execute(pool)
    .await
    .ctx("insert placement")?;
    Ok(())
}

pub async fn list(pool: &AnyPool, node: Option<&NodeId>) -> Result<Vec<PlacementRow>> {
    let rows = match node {
        Some(n) => {
            sqlx::query("SELECT * FROM placements WHERE node = $1 ORDER BY id")
                .bind(n.as_str())
                .fetch_all(pool)
                .await
        }
        None => {
            sqlx::query("SELECT * FROM placements ORDER BY id")
                .fetch_all(pool)
                .await
        }
    }
    .ctx("list placements")?;
    rows.iter().map(from_row).collect()
}

pub async fn report(
    pool: &AnyPool,
    id: InstanceId,
    node: &NodeId,
    state: PlacementState,
    endpoint: Option<&str>,
    error: Option<&str>,
) -> Result<bool> {
    let res = sqlx::query(
        "UPDATE placements SET state = $1, endpoint = $2, error = $3, updated_at = $4 WHERE id = $5 AND node = $6",
    )
    .bind(state.as_str())
    .bind(endpoint)
    .bind(error)
    .bind(morel_core::time::now_ms())
    .bind(id.to_string())
    .bind(node.as_str())
    .execute(pool)
    .await
    .ctx("report placement")?;
    Ok(res.rows_affected() > 0)
}

pub async fn delete(pool: &AnyPool, id: InstanceId) -> Result<()> {
    sqlx::query("DELETE FROM placements WHERE id = $1")
        .bind(id.to_string())
        .execute(pool)
        .await
        .ctx("delete placement")?;
    Ok(())
}
