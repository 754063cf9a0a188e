use morel_core::{Digest, ReleaseId, ReleaseStatus};
use sqlx::sqlite::SqliteRow;
use sqlx::{Row, SqlitePool};

use super::{app_key, parse};
use crate::error::Ctx;
use crate::{AppKey, ReleaseRow, Result};

fn from_row(r: &SqliteRow) -> Result<ReleaseRow> {
    Ok(ReleaseRow {
        id: parse::<ReleaseId>("releases.id", r.get("id"))?,
        app: app_key(r)?,
        number: r.get("number"),
        env: r.get("env"),
        digest: parse::<Digest>("releases.digest", r.get("digest"))?,
        manifest_json: r.get("manifest"),
        config_json: r.get("config"),
        status: parse::<ReleaseStatus>("releases.status", r.get("status"))?,
        error: r.get("error"),
        created_at: r.get("created_at"),
        updated_at: r.get("updated_at"),
    })
}

pub async fn create(
    pool: &SqlitePool,
    app: &AppKey,
    env: &str,
    digest: &Digest,
    manifest: &str,
    config: &str,
) -> Result<ReleaseRow> {
    let now = morel_core::time::now_ms();
    let id = ReleaseId::new();
    // One statement computes the next number, so two concurrent deploys cannot both get vN.
    sqlx::query(
        "INSERT INTO releases (id, namespace, app, number, env, digest, manifest, config, status, error, created_at, updated_at) \
         SELECT ?, ?, ?, COALESCE(MAX(number), 0) + 1, ?, ?, ?, ?, ?, NULL, ?, ? FROM releases WHERE namespace = ? AND app = ?",
    )
    .bind(id.to_string())
    .bind(app.namespace.as_str())
    .bind(app.name.as_str())
    .bind(env)
    .bind(digest.as_str())
    .bind(manifest)
    .bind(config)
    .bind(ReleaseStatus::Pending.as_str())
    .bind(now)
    .bind(now)
    .bind(app.namespace.as_str())
    .bind(app.name.as_str())
    .execute(pool)
    .await
    .ctx("create release")?;
    let row = sqlx::query("SELECT * FROM releases WHERE id = ?")
        .bind(id.to_string())
        .fetch_one(pool)
        .await
        .ctx("read created release")?;
    from_row(&row)
}

pub async fn get(pool: &SqlitePool, app: &AppKey, number: i64) -> Result<Option<ReleaseRow>> {
    sqlx::query("SELECT * FROM releases WHERE namespace = ? AND app = ? AND number = ?")
        .bind(app.namespace.as_str())
        .bind(app.name.as_str())
        .bind(number)
        .fetch_optional(pool)
        .await
        .ctx("get release")?
        .map(|r| from_row(&r))
        .transpose()
}

pub async fn list(pool: &SqlitePool, app: &AppKey) -> Result<Vec<ReleaseRow>> {
    sqlx::query("SELECT * FROM releases WHERE namespace = ? AND app = ? ORDER BY number")
        .bind(app.namespace.as_str())
        .bind(app.name.as_str())
        .fetch_all(pool)
        .await
        .ctx("list releases")?
        .iter()
        .map(from_row)
        .collect()
}

pub async fn set_status(
    pool: &SqlitePool,
    app: &AppKey,
    number: i64,
    status: ReleaseStatus,
    error: Option<&str>,
) -> Result<()> {
    sqlx::query("UPDATE releases SET status = ?, error = ?, updated_at = ? WHERE namespace = ? AND app = ? AND number = ?")
        .bind(status.as_str())
        .bind(error)
        .bind(morel_core::time::now_ms())
        .bind(app.namespace.as_str())
        .bind(app.name.as_str())
        .bind(number)
        .execute(pool)
        .await
        .ctx("set release status")?;
    Ok(())
}
