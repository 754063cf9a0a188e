//! App budgets and scale (`budgets`, migration 3).

use sqlx::AnyPool;
use sqlx::Row;
use sqlx::any::AnyRow;

use super::app_key;
use crate::error::Ctx;
use crate::{AppKey, BudgetRow, Result};

fn from_row(r: &AnyRow) -> Result<BudgetRow> {
    Ok(BudgetRow {
        app: app_key(r)?,
        max_instances: r.get("max_instances"),
        cpu_millis: r.get("cpu_millis"),
        memory_mb: r.get("memory_mb"),
        scale_min: r.get("scale_min"),
        scale_max: r.get("scale_max"),
        updated_at: r.get("updated_at"),
    })
}

pub async fn get(pool: &AnyPool, app: &AppKey) -> Result<Option<BudgetRow>> {
    sqlx::query("SELECT * FROM budgets WHERE namespace = $1 AND app = $2")
        .bind(app.namespace.as_str())
        .bind(app.name.as_str())
        .fetch_optional(pool)
        .await
        .ctx("get budget")?
        .as_ref()
        .map(from_row)
        .transpose()
}

pub async fn put(pool: &AnyPool, row: &BudgetRow) -> Result<()> {
    sqlx::query(
        "INSERT INTO budgets (namespace, app, max_instances, cpu_millis, memory_mb, scale_min, scale_max, updated_at) \
         VALUES ($1, $2, $3, $4, $5, $6, $7, $8) \
         ON CONFLICT (namespace, app) DO UPDATE SET max_instances = excluded.max_instances, \
         cpu_millis = excluded.cpu_millis, memory_mb = excluded.memory_mb, scale_min = excluded.scale_min, \
         scale_max = excluded.scale_max, updated_at = excluded.updated_at",
    )
    .bind(row.app.namespace.as_str())
    .bind(row.app.name.as_str())
    .bind(row.max_instances)
    .bind(row.cpu_millis)
    .bind(row.memory_mb)
    .bind(row.scale_min)
    .bind(row.scale_max)
    .bind(row.updated_at)
    .execute(pool)
    .await
    .ctx("put budget")?;
    Ok(())
}

pub async fn delete(pool: &AnyPool, app: &AppKey) -> Result<()> {
    sqlx::query("DELETE FROM budgets WHERE namespace = $1 AND app = $2")
        .bind(app.namespace.as_str())
        .bind(app.name.as_str())
        .execute(pool)
        .await
        .ctx("delete budget")?;
    Ok(())
}
