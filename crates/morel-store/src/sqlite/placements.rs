//! Placements (many machines): which node runs which instance, and what its agent reported.

use morel_core::PlacementState;
use sqlx::{Row, SqlitePool};

use super::{app_key, parse};
use crate::error::Ctx;
use crate::{PlacementRow, Result};

fn from_row(r: &sqlx::sqlite::SqliteRow) -> Result<PlacementRow> {
    Ok(PlacementRow {
        id: r.get("id"),
        app: app_key(r)?,
        release: r.get("release"),
        resource: r.get("resource"),
        node: r.get("node"),
        state: parse::<PlacementState>("placements.state", r.get("state"))?,
        endpoint: r.get("endpoint"),
        error: r.get("error"),
        created_at: r.get("created_at"),
        updated_at: r.get("updated_at"),
    })
}

pub async fn insert(pool: &SqlitePool, row: &PlacementRow) -> Result<()> {
    sqlx::query(
        "INSERT INTO placements (id, namespace, app, release, resource, node, state, endpoint, error, created_at, updated_at) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
    )
    .bind(&row.id)
    .bind(row.app.namespace.as_str())
    .bind(row.app.name.as_str())
    .bind(row.release)
    .bind(&row.resource)
    .bind(&row.node)
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

pub async fn list(pool: &SqlitePool, node: Option<&str>) -> Result<Vec<PlacementRow>> {
    let rows = match node {
        Some(n) => {
            sqlx::query("SELECT * FROM placements WHERE node = ? ORDER BY id")
                .bind(n)
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
    pool: &SqlitePool,
    id: &str,
    node: &str,
    state: PlacementState,
    endpoint: Option<&str>,
    error: Option<&str>,
) -> Result<bool> {
    let res = sqlx::query(
        "UPDATE placements SET state = ?, endpoint = ?, error = ?, updated_at = ? WHERE id = ? AND node = ?",
    )
    .bind(state.as_str())
    .bind(endpoint)
    .bind(error)
    .bind(morel_core::time::now_ms())
    .bind(id)
    .bind(node)
    .execute(pool)
    .await
    .ctx("report placement")?;
    Ok(res.rows_affected() > 0)
}

pub async fn delete(pool: &SqlitePool, id: &str) -> Result<()> {
    sqlx::query("DELETE FROM placements WHERE id = ?")
        .bind(id)
        .execute(pool)
        .await
        .ctx("delete placement")?;
    Ok(())
}
