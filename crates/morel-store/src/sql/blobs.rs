//! Bundle metadata, trusted keys and seed 000 package uploads: the small tables around bundles.

use morel_core::Digest;
use sqlx::AnyPool;
use sqlx::Row;

use super::{app_key, parse};
use crate::error::Ctx;
use crate::{AppKey, BlobRow, KeyRow, PackageRow, Result};

pub async fn put_blob(pool: &AnyPool, row: &BlobRow) -> Result<()> {
    sqlx::query("INSERT INTO blobs (digest, size, signature, key_id, created_at) VALUES ($1, $2, $3, $4, $5) ON CONFLICT (digest) DO NOTHING")
        .bind(row.digest.as_str())
        .bind(row.size)
        .bind(&row.signature)
        .bind(&row.key_id)
        .bind(row.created_at)
        .execute(pool)
        .await
        .ctx("put blob")?;
    Ok(())
}

pub async fn get_blob(pool: &AnyPool, digest: &Digest) -> Result<Option<BlobRow>> {
    sqlx::query("SELECT * FROM blobs WHERE digest = $1")
        .bind(digest.as_str())
        .fetch_optional(pool)
        .await
        .ctx("get blob")?
        .map(|r| {
            Ok(BlobRow {
                digest: parse("blobs.digest", r.get("digest"))?,
                size: r.get("size"),
                signature: r.get("signature"),
                key_id: r.get("key_id"),
                created_at: r.get("created_at"),
            })
        })
        .transpose()
}

pub async fn trust_key(pool: &AnyPool, row: &KeyRow) -> Result<()> {
    sqlx::query("INSERT INTO trusted_keys (key_id, public_key, name, created_at) VALUES ($1, $2, $3, $4) ON CONFLICT (key_id) DO UPDATE SET name = excluded.name")
        .bind(&row.key_id)
        .bind(&row.public_key)
        .bind(&row.name)
        .bind(row.created_at)
        .execute(pool)
        .await
        .ctx("trust key")?;
    Ok(())
}

pub async fn list_keys(pool: &AnyPool) -> Result<Vec<KeyRow>> {
    let rows = sqlx::query("SELECT * FROM trusted_keys ORDER BY created_at")
        .fetch_all(pool)
        .await
        .ctx("list keys")?;
    Ok(rows
        .iter()
        .map(|r| KeyRow {
            key_id: r.get("key_id"),
            public_key: r.get("public_key"),
            name: r.get("name"),
            created_at: r.get("created_at"),
        })
        .collect())
}

pub async fn remove_key(pool: &AnyPool, key_id: &str) -> Result<bool> {
    let res = sqlx::query("DELETE FROM trusted_keys WHERE key_id = $1")
        .bind(key_id)
        .execute(pool)
        .await
        .ctx("remove key")?;
    Ok(res.rows_affected() > 0)
}

pub async fn put_package(pool: &AnyPool, row: &PackageRow) -> Result<()> {
    sqlx::query("INSERT INTO packages (namespace, app, digest, created_at) VALUES ($1, $2, $3, $4) ON CONFLICT (namespace, app) DO UPDATE SET digest = excluded.digest, created_at = excluded.created_at")
        .bind(row.app.namespace.as_str())
        .bind(row.app.name.as_str())
        .bind(row.digest.as_str())
        .bind(row.created_at)
        .execute(pool)
        .await
        .ctx("put package")?;
    Ok(())
}

pub async fn get_package(pool: &AnyPool, app: &AppKey) -> Result<Option<PackageRow>> {
    sqlx::query("SELECT * FROM packages WHERE namespace = $1 AND app = $2")
        .bind(app.namespace.as_str())
        .bind(app.name.as_str())
        .fetch_optional(pool)
        .await
        .ctx("get package")?
        .map(|r| {
            Ok(PackageRow {
                app: app_key(&r)?,
                digest: parse("packages.digest", r.get("digest"))?,
                created_at: r.get("created_at"),
            })
        })
        .transpose()
}

pub async fn delete_package(pool: &AnyPool, app: &AppKey) -> Result<()> {
    sqlx::query("DELETE FROM packages WHERE namespace = $1 AND app = $2")
        .bind(app.namespace.as_str())
        .bind(app.name.as_str())
        .execute(pool)
        .await
        .ctx("delete package")?;
    Ok(())
}
