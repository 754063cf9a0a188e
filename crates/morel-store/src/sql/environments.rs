//! Environments, git deploy requests and their steps, sealed secrets and certificates.

use sqlx::AnyPool;
use sqlx::Row;
use sqlx::any::AnyRow;

use super::app_key;
use super::{parse, parse_state};
use crate::error::Ctx;
use crate::{
    AppKey, CertificateRow, DeployRow, DeployStatus, DeployStepRow, EnvironmentKind,
    EnvironmentRow, EnvironmentStatus, Result, SecretRow,
};
use morel_core::DeployId;

fn env_from_row(r: &AnyRow) -> Result<EnvironmentRow> {
    Ok(EnvironmentRow {
        app: AppKey {
            namespace: super::parse("namespace", r.get("namespace"))?,
            name: super::parse("app", r.get("app"))?,
        },
        name: r.get("name"),
        kind: parse_state("environments.kind", r.get("kind"), EnvironmentKind::parse)?,
        branch: r.get("branch"),
        repo_url: r.get("repo_url"),
        status: parse_state(
            "environments.status",
            r.get("status"),
            EnvironmentStatus::parse,
        )?,
        url: r.get("url"),
        error: r.get("error"),
        created_at: r.get("created_at"),
        updated_at: r.get("updated_at"),
    })
}

pub async fn upsert_environment(pool: &AnyPool, e: &EnvironmentRow) -> Result<()> {
    sqlx::query(
        "INSERT INTO environments (namespace, app, name, kind, branch, repo_url, status, url, error, created_at, updated_at) \
         VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11) \
         ON CONFLICT (namespace, app, name) DO UPDATE SET kind = excluded.kind, branch = excluded.branch, \
         repo_url = excluded.repo_url, status = excluded.status, url = excluded.url, error = excluded.error, \
         updated_at = excluded.updated_at",
    )
    .bind(e.app.namespace.as_str())
    .bind(e.app.name.as_str())
    .bind(&e.name)
    .bind(e.kind.as_str())
    .bind(&e.branch)
    .bind(&e.repo_url)
    .bind(e.status.as_str())
    .bind(&e.url)
    .bind(&e.error)
    .bind(e.created_at)
    .bind(e.updated_at)
    .execute(pool)
    .await
    .ctx("upsert environment")?;
    Ok(())
}

pub async fn get_environment(
    pool: &AnyPool,
    app: &AppKey,
    name: &str,
) -> Result<Option<EnvironmentRow>> {
    sqlx::query("SELECT * FROM environments WHERE namespace = $1 AND app = $2 AND name = $3")
        .bind(app.namespace.as_str())
        .bind(app.name.as_str())
        .bind(name)
        .fetch_optional(pool)
        .await
        .ctx("get environment")?
        .map(|r| env_from_row(&r))
        .transpose()
}

pub async fn list_environments(
    pool: &AnyPool,
    app: Option<&AppKey>,
) -> Result<Vec<EnvironmentRow>> {
    let rows = match app {
        Some(app) => sqlx::query(
            "SELECT * FROM environments WHERE namespace = $1 AND app = $2 ORDER BY kind DESC, name",
        )
        .bind(app.namespace.as_str())
        .bind(app.name.as_str())
        .fetch_all(pool)
        .await,
        None => {
            sqlx::query("SELECT * FROM environments ORDER BY namespace, app, name")
                .fetch_all(pool)
                .await
        }
    }
    .ctx("list environments")?;
    rows.iter().map(env_from_row).collect()
}

/// Deletes the environment and its secrets and certificate, in one transaction.
pub async fn delete_environment(pool: &AnyPool, app: &AppKey, name: &str) -> Result<bool> {
    let mut tx = pool.begin().await.ctx("begin delete environment")?;
    let mut existed = false;
    for table in ["environments", "secrets", "certificates"] {
        let column = if table == "environments" {
            "name"
        } else {
            "env"
        };
        let sql =
            format!("DELETE FROM {table} WHERE namespace = $1 AND app = $2 AND {column} = $3");
        let res = sqlx::query(&sql)
            .bind(app.namespace.as_str())
            .bind(app.name.as_str())
            .bind(name)
            .execute(&mut *tx)
            .await
            .ctx("delete environment")?;
        if table == "environments" {
            existed = res.rows_affected() > 0;
        }
    }
    tx.commit().await.ctx("commit delete environment")?;
    Ok(existed)
}

fn deploy_from_row(r: &AnyRow) -> Result<DeployRow> {
    Ok(DeployRow {
        id: parse("deploys.id", r.get("id"))?,
        app: app_key(r)?,
        repo_url: r.get("repo_url"),
        branch: r.get("branch"),
        main_branch: r.get("main_branch"),
        env: r.get("env"),
        digest: r.get("digest"),
        release: r.get("release"),
        status: parse_state("deploys.status", r.get("status"), DeployStatus::parse)?,
        error: r.get("error"),
        attempts: r.get("attempts"),
        created_at: r.get("created_at"),
        updated_at: r.get("updated_at"),
    })
}

pub async fn create_deploy(pool: &AnyPool, d: &DeployRow) -> Result<()> {
    sqlx::query(
        "INSERT INTO deploys (id, namespace, app, repo_url, branch, main_branch, env, digest, release, status, error, attempts, created_at, updated_at) \
         VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12, $13, $14)",
    )
    .bind(d.id.to_string())
    .bind(d.app.namespace.as_str())
    .bind(d.app.name.as_str())
    .bind(&d.repo_url)
    .bind(&d.branch)
    .bind(&d.main_branch)
    .bind(&d.env)
    .bind(&d.digest)
    .bind(d.release)
    .bind(d.status.as_str())
    .bind(&d.error)
    .bind(d.attempts)
    .bind(d.created_at)
    .bind(d.updated_at)
    .execute(pool)
    .await
    .ctx("create deploy")?;
    Ok(())
}

pub async fn get_deploy(pool: &AnyPool, id: DeployId) -> Result<Option<DeployRow>> {
    sqlx::query("SELECT * FROM deploys WHERE id = $1")
        .bind(id.to_string())
        .fetch_optional(pool)
        .await
        .ctx("get deploy")?
        .map(|r| deploy_from_row(&r))
        .transpose()
}

/// Writes the worker-owned fields of a deploy.
pub async fn update_deploy(pool: &AnyPool, d: &DeployRow) -> Result<()> {
    sqlx::query(
        "UPDATE deploys SET env = $1, digest = $2, release = $3, status = $4, error = $5, attempts = $6, updated_at = $7 WHERE id = $8",
    )
    .bind(&d.env)
    .bind(&d.digest)
    .bind(d.release)
    .bind(d.status.as_str())
    .bind(&d.error)
    .bind(d.attempts)
    .bind(morel_core::time::now_ms())
    .bind(d.id.to_string())
    .execute(pool)
    .await
    .ctx("update deploy")?;
    Ok(())
}

pub async fn record_deploy_step(
    pool: &AnyPool,
    deploy_id: DeployId,
    step: &str,
    detail: &str,
) -> Result<bool> {
    let deploy_id = deploy_id.to_string();
    let res = sqlx::query(
        "INSERT INTO deploy_steps (deploy_id, seq, step, detail, at) \
         SELECT $1, COALESCE(MAX(seq), 0) + 1, $2, $3, $4 FROM deploy_steps WHERE deploy_id = $5 \
         ON CONFLICT (deploy_id, step) DO NOTHING",
    )
    .bind(&deploy_id)
    .bind(step)
    .bind(detail)
    .bind(morel_core::time::now_ms())
    .bind(&deploy_id)
    .execute(pool)
    .await
    .ctx("record deploy step")?;
    Ok(res.rows_affected() > 0)
}

pub async fn list_deploy_steps(pool: &AnyPool, deploy_id: DeployId) -> Result<Vec<DeployStepRow>> {
    let rows = sqlx::query("SELECT * FROM deploy_steps WHERE deploy_id = $1 ORDER BY seq")
        .bind(deploy_id.to_string())
        .fetch_all(pool)
        .await
        .ctx("list deploy steps")?;
    rows.iter()
        .map(|r| {
            Ok(DeployStepRow {
                deploy_id: parse("deploy_steps.deploy_id", r.get("deploy_id"))?,
                seq: r.get("seq"),
                step: r.get("step"),
                detail: r.get("detail"),
                at: r.get("at"),
            })
        })
        .collect()
}

pub async fn put_secret(pool: &AnyPool, s: &SecretRow) -> Result<()> {
    sqlx::query(
        "INSERT INTO secrets (namespace, app, env, name, sealed, updated_at) VALUES ($1, $2, $3, $4, $5, $6) \
         ON CONFLICT (namespace, app, env, name) DO UPDATE SET sealed = excluded.sealed, updated_at = excluded.updated_at",
    )
    .bind(s.app.namespace.as_str())
    .bind(s.app.name.as_str())
    .bind(&s.env)
    .bind(&s.name)
    .bind(&s.sealed)
    .bind(s.updated_at)
    .execute(pool)
    .await
    .ctx("put secret")?;
    Ok(())
}

pub async fn list_secrets(pool: &AnyPool, app: &AppKey, env: &str) -> Result<Vec<SecretRow>> {
    let rows = sqlx::query(
        "SELECT * FROM secrets WHERE namespace = $1 AND app = $2 AND env = $3 ORDER BY name",
    )
    .bind(app.namespace.as_str())
    .bind(app.name.as_str())
    .bind(env)
    .fetch_all(pool)
    .await
    .ctx("list secrets")?;
    rows.iter()
        .map(|r| {
            Ok(SecretRow {
                app: app_key(r)?,
                env: r.get("env"),
                name: r.get("name"),
                sealed: r.get("sealed"),
                updated_at: r.get("updated_at"),
            })
        })
        .collect()
}

pub async fn delete_secret(pool: &AnyPool, app: &AppKey, env: &str, name: &str) -> Result<bool> {
    let res = sqlx::query(
        "DELETE FROM secrets WHERE namespace = $1 AND app = $2 AND env = $3 AND name = $4",
    )
    .bind(app.namespace.as_str())
    .bind(app.name.as_str())
    .bind(env)
    .bind(name)
    .execute(pool)
    .await
    .ctx("delete secret")?;
    Ok(res.rows_affected() > 0)
}

pub async fn put_certificate(pool: &AnyPool, c: &CertificateRow) -> Result<()> {
    sqlx::query(
        "INSERT INTO certificates (namespace, app, env, cert_pem, key_sealed, updated_at) VALUES ($1, $2, $3, $4, $5, $6) \
         ON CONFLICT (namespace, app, env) DO UPDATE SET cert_pem = excluded.cert_pem, key_sealed = excluded.key_sealed, \
         updated_at = excluded.updated_at",
    )
    .bind(c.app.namespace.as_str())
    .bind(c.app.name.as_str())
    .bind(&c.env)
    .bind(&c.cert_pem)
    .bind(&c.key_sealed)
    .bind(c.updated_at)
    .execute(pool)
    .await
    .ctx("put certificate")?;
    Ok(())
}

pub async fn list_certificates(pool: &AnyPool) -> Result<Vec<CertificateRow>> {
    let rows = sqlx::query("SELECT * FROM certificates ORDER BY namespace, app, env")
        .fetch_all(pool)
        .await
        .ctx("list certificates")?;
    rows.iter()
        .map(|r| {
            Ok(CertificateRow {
                app: app_key(r)?,
                env: r.get("env"),
                cert_pem: r.get("cert_pem"),
                key_sealed: r.get("key_sealed"),
                updated_at: r.get("updated_at"),
            })
        })
        .collect()
}
