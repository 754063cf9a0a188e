use morel_core::{Digest, InstanceId, InstanceState};
use sqlx::AnyPool;
use sqlx::Row;
use sqlx::any::AnyRow;

use super::{app_key, parse};
use crate::error::Ctx;
use crate::{AppKey, InstanceRow, Result};

fn from_row(r: &AnyRow) -> Result<InstanceRow> {
    Ok(InstanceRow {
        id: parse::<InstanceId>("instances.id", r.get("id"))?,
        app: app_key(r)?,
        resource: r.get("resource"),
        release: r.get("release"),
        digest: parse::<Digest>("instances.digest", r.get("digest"))?,
        node: r.get("node"),
        state: parse::<InstanceState>("instances.state", r.get("state"))?,
        pid: r.get("pid"),
        port: r.get("port"),
        restarts: r.get("restarts"),
        last_error: r.get("last_error"),
        started_at: r.get("started_at"),
        updated_at: r.get("updated_at"),
    })
}

pub async fn upsert(pool: &AnyPool, row: &InstanceRow) -> Result<()> {
    sqlx::query(
        "INSERT INTO instances (id, namespace, app, resource, release, digest, node, state, pid, port, restarts, last_error, started_at, updated_at) \
         VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12, $13, $14) \
         ON CONFLICT (id) DO UPDATE SET state = excluded.state, pid = excluded.pid, port = excluded.port, \
         restarts = excluded.restarts, last_error = excluded.last_error, release = excluded.release, \
         digest = excluded.digest, updated_at = excluded.updated_at",
    )
    .bind(row.id.to_string())
    .bind(row.app.namespace.as_str())
    .bind(row.app.name.as_str())
    .bind(&row.resource)
    .bind(row.release)
    .bind(row.digest.as_str())
    .bind(&row.node)
    .bind(row.state.as_str())
    .bind(row.pid)
    .bind(row.port)
    .bind(row.restarts)
    .bind(&row.last_error)
    .bind(row.started_at)
    .bind(row.updated_at)
    .execute(pool)
    .await
    .ctx("upsert instance")?;
    Ok(())
}

pub async fn list(pool: &AnyPool, app: Option<&AppKey>) -> Result<Vec<InstanceRow>> {
    let rows = match app {
        Some(app) => sqlx::query(
            "SELECT * FROM instances WHERE namespace = $1 AND app = $2 ORDER BY resource, started_at",
        )
        .bind(app.namespace.as_str())
        .bind(app.name.as_str())
        .fetch_all(pool)
        .await,
        None => {
            sqlx::query("SELECT * FROM instances ORDER BY namespace, app, resource, started_at")
                .fetch_all(pool)
                .await
        }
    }
    .ctx("list instances")?;
    rows.iter().map(from_row).collect()
}

pub async fn delete(pool: &AnyPool, id: InstanceId) -> Result<()> {
    sqlx::query("DELETE FROM instances WHERE id = $1")
        .bind(id.to_string())
        .execute(pool)
        .await
        .ctx("delete instance")?;
    Ok(())
}
