use morel_core::{Digest, ResourceStatus, Runtime};
use sqlx::AnyPool;
use sqlx::Row;
use sqlx::any::AnyRow;

use super::{app_key, parse};
use crate::error::Ctx;
use crate::{AppKey, FunctionRow, ResourceRow, Result, StoreError};

fn from_row(r: &AnyRow) -> Result<ResourceRow> {
    Ok(ResourceRow {
        app: app_key(r)?,
        name: r.get("name"),
        runtime: parse::<Runtime>("resources.runtime", r.get("runtime"))?,
        config_hash: r.get("config_hash"),
        digest: parse::<Digest>("resources.digest", r.get("digest"))?,
        release: r.get("release"),
        status: parse::<ResourceStatus>("resources.status", r.get("status"))?,
        error: r.get("error"),
        endpoint_url: r.get("endpoint_url"),
        updated_at: r.get("updated_at"),
    })
}

pub async fn upsert(pool: &AnyPool, row: &ResourceRow) -> Result<()> {
    sqlx::query(
        "INSERT INTO resources (namespace, app, name, runtime, config_hash, digest, release, status, error, endpoint_url, updated_at) \
         VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11) \
         ON CONFLICT (namespace, app, name) DO UPDATE SET runtime = excluded.runtime, config_hash = excluded.config_hash, \
         digest = excluded.digest, release = excluded.release, status = excluded.status, error = excluded.error, \
         endpoint_url = excluded.endpoint_url, updated_at = excluded.updated_at",
    )
    .bind(row.app.namespace.as_str())
    .bind(row.app.name.as_str())
    .bind(&row.name)
    .bind(row.runtime.as_str())
    .bind(&row.config_hash)
    .bind(row.digest.as_str())
    .bind(row.release)
    .bind(row.status.as_str())
    .bind(&row.error)
    .bind(&row.endpoint_url)
    .bind(row.updated_at)
    .execute(pool)
    .await
    .ctx("upsert resource")?;
    Ok(())
}

pub async fn list(pool: &AnyPool, app: &AppKey) -> Result<Vec<ResourceRow>> {
    sqlx::query("SELECT * FROM resources WHERE namespace = $1 AND app = $2 ORDER BY name")
        .bind(app.namespace.as_str())
        .bind(app.name.as_str())
        .fetch_all(pool)
        .await
        .ctx("list resources")?
        .iter()
        .map(from_row)
        .collect()
}

pub async fn delete(pool: &AnyPool, app: &AppKey, resource: &str) -> Result<()> {
    let mut tx = pool.begin().await.ctx("begin delete resource")?;
    for table in ["resources", "functions"] {
        let col = if table == "resources" {
            "name"
        } else {
            "resource"
        };
        sqlx::query(&format!(
            "DELETE FROM {table} WHERE namespace = $1 AND app = $2 AND {col} = $3"
        ))
        .bind(app.namespace.as_str())
        .bind(app.name.as_str())
        .bind(resource)
        .execute(&mut *tx)
        .await
        .ctx("delete resource")?;
    }
    tx.commit().await.ctx("commit delete resource")?;
    Ok(())
}

pub async fn replace_functions(
    pool: &AnyPool,
    app: &AppKey,
    resource: &str,
    functions: &[FunctionRow],
) -> Result<()> {
    let mut tx = pool.begin().await.ctx("begin replace functions")?;
    sqlx::query("DELETE FROM functions WHERE namespace = $1 AND app = $2 AND resource = $3")
        .bind(app.namespace.as_str())
        .bind(app.name.as_str())
        .bind(resource)
        .execute(&mut *tx)
        .await
        .ctx("clear functions")?;
    for f in functions {
        let params = serde_json::to_string(&f.params).map_err(|e| StoreError::Corrupt {
            column: "functions.params",
            message: e.to_string(),
        })?;
        sqlx::query(
            "INSERT INTO functions (namespace, app, resource, name, params, is_async, http_method, http_path) VALUES ($1, $2, $3, $4, $5, $6, $7, $8) \
             ON CONFLICT (namespace, app, name) DO UPDATE SET resource = excluded.resource, params = excluded.params, \
             is_async = excluded.is_async, http_method = excluded.http_method, http_path = excluded.http_path",
        )
        .bind(app.namespace.as_str())
        .bind(app.name.as_str())
        .bind(resource)
        .bind(&f.name)
        .bind(params)
        .bind(f.is_async as i64)
        .bind(&f.http_method)
        .bind(&f.http_path)
        .execute(&mut *tx)
        .await
        .ctx("insert function")?;
    }
    tx.commit().await.ctx("commit functions")?;
    Ok(())
}

pub async fn list_functions(pool: &AnyPool, app: &AppKey) -> Result<Vec<FunctionRow>> {
    let rows =
        sqlx::query("SELECT * FROM functions WHERE namespace = $1 AND app = $2 ORDER BY name")
            .bind(app.namespace.as_str())
            .bind(app.name.as_str())
            .fetch_all(pool)
            .await
            .ctx("list functions")?;
    rows.iter()
        .map(|r| {
            let params: String = r.get("params");
            Ok(FunctionRow {
                name: r.get("name"),
                resource: r.get("resource"),
                params: serde_json::from_str(&params).map_err(|e| StoreError::Corrupt {
                    column: "functions.params",
                    message: e.to_string(),
                })?,
                is_async: r.get::<i64, _>("is_async") != 0,
                http_method: r.get("http_method"),
                http_path: r.get("http_path"),
            })
        })
        .collect()
}
