//! Bundles (metadata, and their bytes in chunks), trusted keys, seed 000 package uploads and
//! the platform settings servers share.

use morel_core::Digest;
use sqlx::AnyPool;
use sqlx::Row;

use super::{app_key, parse};
use crate::error::Ctx;
use crate::{AppKey, BlobRow, KeyRow, PackageRow, Result, StoreError};

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

/// Bundle bytes are stored in chunks of this size: small enough for any driver's parameter
/// and row limits, large enough that a bundle is a handful of rows.
const CHUNK: usize = 1 << 20;

/// Chunks first, the `blob_contents` row last, all in one transaction: a reader that finds
/// the row finds every chunk.
pub async fn put_content(pool: &AnyPool, digest: &Digest, bytes: &[u8]) -> Result<()> {
    let mut tx = pool.begin().await.ctx("begin put bundle content")?;
    let present: Option<i64> =
        sqlx::query_scalar("SELECT chunks FROM blob_contents WHERE digest = $1")
            .bind(digest.as_str())
            .fetch_optional(&mut *tx)
            .await
            .ctx("look up bundle content")?;
    if present.is_some() {
        return Ok(());
    }
    let mut chunks = 0i64;
    for (seq, chunk) in bytes.chunks(CHUNK).enumerate() {
        sqlx::query(
            "INSERT INTO blob_chunks (digest, seq, data) VALUES ($1, $2, $3) \
             ON CONFLICT (digest, seq) DO UPDATE SET data = excluded.data",
        )
        .bind(digest.as_str())
        .bind(seq as i64)
        .bind(chunk)
        .execute(&mut *tx)
        .await
        .ctx("store bundle chunk")?;
        chunks += 1;
    }
    sqlx::query(
        "INSERT INTO blob_contents (digest, size, chunks, created_at) VALUES ($1, $2, $3, $4) \
         ON CONFLICT (digest) DO NOTHING",
    )
    .bind(digest.as_str())
    .bind(bytes.len() as i64)
    .bind(chunks)
    .bind(morel_core::time::now_ms())
    .execute(&mut *tx)
    .await
    .ctx("store bundle content")?;
    tx.commit().await.ctx("commit bundle content")?;
    Ok(())
}

pub async fn get_content(pool: &AnyPool, digest: &Digest) -> Result<Option<Vec<u8>>> {
    let Some(head) = sqlx::query("SELECT size, chunks FROM blob_contents WHERE digest = $1")
        .bind(digest.as_str())
        .fetch_optional(pool)
        .await
        .ctx("look up bundle content")?
    else {
        return Ok(None);
    };
    let (size, chunks): (i64, i64) = (head.get("size"), head.get("chunks"));
    let rows = sqlx::query("SELECT seq, data FROM blob_chunks WHERE digest = $1 ORDER BY seq")
        .bind(digest.as_str())
        .fetch_all(pool)
        .await
        .ctx("read bundle chunks")?;
    let mut bytes = Vec::with_capacity(usize::try_from(size).unwrap_or(0));
    for (i, r) in rows.iter().enumerate() {
        if r.get::<i64, _>("seq") != i as i64 {
            break;
        }
        bytes.extend_from_slice(&r.get::<Vec<u8>, _>("data"));
    }
    if rows.len() as i64 != chunks || bytes.len() as i64 != size {
        return Err(StoreError::Corrupt {
            column: "blob_chunks.data",
            message: format!(
                "bundle {digest}: {} of {chunks} chunks, {} of {size} bytes",
                rows.len(),
                bytes.len()
            ),
        });
    }
    Ok(Some(bytes))
}

pub async fn delete_content(pool: &AnyPool, digest: &Digest) -> Result<()> {
    let mut tx = pool.begin().await.ctx("begin delete bundle content")?;
    for sql in [
        "DELETE FROM blob_contents WHERE digest = $1",
        "DELETE FROM blob_chunks WHERE digest = $1",
    ] {
        sqlx::query(sql)
            .bind(digest.as_str())
            .execute(&mut *tx)
            .await
            .ctx("delete bundle content")?;
    }
    tx.commit().await.ctx("commit delete bundle content")?;
    Ok(())
}

pub async fn put_setting_if_absent(pool: &AnyPool, name: &str, value: &str) -> Result<String> {
    sqlx::query(
        "INSERT INTO platform_settings (name, value, created_at) VALUES ($1, $2, $3) \
         ON CONFLICT (name) DO NOTHING",
    )
    .bind(name)
    .bind(value)
    .bind(morel_core::time::now_ms())
    .execute(pool)
    .await
    .ctx("record setting")?;
    get_setting(pool, name)
        .await?
        .ok_or_else(|| StoreError::NotFound(format!("setting {name}")))
}

pub async fn get_setting(pool: &AnyPool, name: &str) -> Result<Option<String>> {
    sqlx::query_scalar("SELECT value FROM platform_settings WHERE name = $1")
        .bind(name)
        .fetch_optional(pool)
        .await
        .ctx("read setting")
}

pub async fn set_setting(pool: &AnyPool, name: &str, value: &str) -> Result<()> {
    sqlx::query(
        "INSERT INTO platform_settings (name, value, created_at) VALUES ($1, $2, $3) \
         ON CONFLICT (name) DO UPDATE SET value = excluded.value, created_at = excluded.created_at",
    )
    .bind(name)
    .bind(value)
    .bind(morel_core::time::now_ms())
    .execute(pool)
    .await
    .ctx("record setting")?;
    Ok(())
}
