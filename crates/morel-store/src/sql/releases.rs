use morel_core::{Digest, ReleaseId, ReleaseStatus};
use sqlx::AnyPool;
use sqlx::Row;
use sqlx::any::AnyRow;

use super::{app_key, parse};
use crate::error::Ctx;
use crate::{AppKey, ReleaseRow, Result};

fn from_row(r: &AnyRow) -> Result<ReleaseRow> {
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

pub(super) async fn create(
    store: &super::SqlStore,
    app: &AppKey,
    env: &str,
    digest: &Digest,
    manifest: &str,
    config: &str,
) -> Result<ReleaseRow> {
    let now = morel_core::time::now_ms();
    let id = ReleaseId::new();
    // One statement computes the next number. SQLite has one writer, so two concurrent
    // deploys cannot both get vN; PostgreSQL needs a lock for that (see there).
    let mut tx = store.write.begin().await.ctx("begin create release")?;
    if store.is_postgres() {
        super::postgres::lock_release_numbering(&mut tx, app).await?;
    }
    sqlx::query(
        "INSERT INTO releases (id, namespace, app, number, env, digest, manifest, config, status, error, created_at, updated_at) \
         SELECT $1, $2, $3, COALESCE(MAX(number), 0) + 1, $4, $5, $6, $7, $8, NULL, $9, $10 FROM releases WHERE namespace = $11 AND app = $12",
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
    .execute(&mut *tx)
    .await
    .ctx("create release")?;
    tx.commit().await.ctx("commit create release")?;
    let row = sqlx::query("SELECT * FROM releases WHERE id = $1")
        .bind(id.to_string())
        .fetch_one(&store.write)
        .await
        .ctx("read created release")?;
    from_row(&row)
}

pub async fn get(pool: &AnyPool, app: &AppKey, number: i64) -> Result<Option<ReleaseRow>> {
    sqlx::query("SELECT * FROM releases WHERE namespace = $1 AND app = $2 AND number = $3")
        .bind(app.namespace.as_str())
        .bind(app.name.as_str())
        .bind(number)
        .fetch_optional(pool)
        .await
        .ctx("get release")?
        .map(|r| from_row(&r))
        .transpose()
}

pub async fn list(pool: &AnyPool, app: &AppKey) -> Result<Vec<ReleaseRow>> {
    sqlx::query("SELECT * FROM releases WHERE namespace = $1 AND app = $2 ORDER BY number")
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
    pool: &AnyPool,
    app: &AppKey,
    number: i64,
    status: ReleaseStatus,
    error: Option<&str>,
) -> Result<()> {
    sqlx::query("UPDATE releases SET status = $1, error = $2, updated_at = $3 WHERE namespace = $4 AND app = $5 AND number = $6")
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
