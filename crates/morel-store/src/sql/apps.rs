use sqlx::AnyPool;
use sqlx::Row;
use sqlx::any::AnyRow;

use super::parse;
use crate::error::Ctx;
use crate::{AppKey, AppRow, Result};

fn from_row(r: &AnyRow) -> Result<AppRow> {
    Ok(AppRow {
        key: AppKey {
            namespace: parse("namespace", r.get("namespace"))?,
            name: parse("name", r.get("name"))?,
        },
        active_release: r.get("active_release"),
        created_at: r.get("created_at"),
        updated_at: r.get("updated_at"),
    })
}

pub async fn ensure(pool: &AnyPool, app: &AppKey) -> Result<AppRow> {
    let now = morel_core::time::now_ms();
    sqlx::query("INSERT INTO apps (namespace, name, active_release, created_at, updated_at) VALUES ($1, $2, NULL, $3, $4) ON CONFLICT (namespace, name) DO NOTHING")
        .bind(app.namespace.as_str())
        .bind(app.name.as_str())
        .bind(now)
        .bind(now)
        .execute(pool)
        .await
        .ctx("create app")?;
    get(pool, app)
        .await?
        .ok_or_else(|| crate::StoreError::NotFound(format!("app {app}")))
}

pub async fn get(pool: &AnyPool, app: &AppKey) -> Result<Option<AppRow>> {
    sqlx::query("SELECT * FROM apps WHERE namespace = $1 AND name = $2")
        .bind(app.namespace.as_str())
        .bind(app.name.as_str())
        .fetch_optional(pool)
        .await
        .ctx("get app")?
        .map(|r| from_row(&r))
        .transpose()
}

pub async fn list(pool: &AnyPool) -> Result<Vec<AppRow>> {
    sqlx::query("SELECT * FROM apps ORDER BY namespace, name")
        .fetch_all(pool)
        .await
        .ctx("list apps")?
        .iter()
        .map(from_row)
        .collect()
}

pub async fn delete(pool: &AnyPool, app: &AppKey) -> Result<bool> {
    let mut tx = pool.begin().await.ctx("begin delete app")?;
    let mut deleted = false;
    for table in [
        "releases",
        "resources",
        "functions",
        "instances",
        "logs",
        "packages",
    ] {
        sqlx::query(&format!(
            "DELETE FROM {table} WHERE namespace = $1 AND app = $2"
        ))
        .bind(app.namespace.as_str())
        .bind(app.name.as_str())
        .execute(&mut *tx)
        .await
        .ctx("delete app rows")?;
    }
    let res = sqlx::query("DELETE FROM apps WHERE namespace = $1 AND name = $2")
        .bind(app.namespace.as_str())
        .bind(app.name.as_str())
        .execute(&mut *tx)
        .await
        .ctx("delete app")?;
    deleted |= res.rows_affected() > 0;
    tx.commit().await.ctx("commit delete app")?;
    Ok(deleted)
}

pub async fn set_active(pool: &AnyPool, app: &AppKey, number: Option<i64>) -> Result<()> {
    sqlx::query(
        "UPDATE apps SET active_release = $1, updated_at = $2 WHERE namespace = $3 AND name = $4",
    )
    .bind(number)
    .bind(morel_core::time::now_ms())
    .bind(app.namespace.as_str())
    .bind(app.name.as_str())
    .execute(pool)
    .await
    .ctx("set active release")?;
    Ok(())
}
