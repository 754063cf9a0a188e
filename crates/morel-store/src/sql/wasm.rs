//! Seed 001's tables: compiled functions and their executions.

use sqlx::AnyPool;
use sqlx::Row;
use sqlx::any::{AnyExecutor, AnyRow};

use morel_core::ExecutionId;

use super::{SqlStore, queues};
use crate::error::Ctx;
use crate::{
    CompileOutcome, ExecutionRow, ExecutionStatus, FinishedJob, NewJob, Result, StoreError,
    WasmFunctionRow, WasmFunctionStatus,
};

fn function_from_row(r: &AnyRow, with_wasm: bool) -> Result<WasmFunctionRow> {
    let status: String = r.get("status");
    Ok(WasmFunctionRow {
        id: r.get("id"),
        name: r.get("name"),
        language: r.get("language"),
        source: r.get("source"),
        status: WasmFunctionStatus::parse(&status).ok_or(StoreError::Corrupt {
            column: "wasm_functions.status",
            message: status.clone(),
        })?,
        compile_error: r.get("compile_error"),
        wasm: if with_wasm { r.get("wasm") } else { None },
        wasm_size: r.get("wasm_size"),
        created_at: r.get("created_at"),
        updated_at: r.get("updated_at"),
    })
}

const FUNCTION_COLUMNS: &str = "id, name, language, source, status, compile_error, LENGTH(wasm) AS wasm_size, created_at, updated_at";

pub async fn insert_function<'e>(ex: impl AnyExecutor<'e>, row: &WasmFunctionRow) -> Result<()> {
    sqlx::query("INSERT INTO wasm_functions (id, name, language, source, status, compile_error, wasm, created_at, updated_at) VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9)")
        .bind(&row.id)
        .bind(&row.name)
        .bind(&row.language)
        .bind(&row.source)
        .bind(row.status.as_str())
        .bind(&row.compile_error)
        .bind(&row.wasm)
        .bind(row.created_at)
        .bind(row.updated_at)
        .execute(ex)
        .await
        .map_err(|e| insert_error(e, &row.name))?;
    Ok(())
}

/// A taken name (the unique `wasm_functions_by_name`) is [`StoreError::Duplicate`].
fn insert_error(source: sqlx::Error, name: &str) -> StoreError {
    match &source {
        sqlx::Error::Database(e) if e.is_unique_violation() => StoreError::Duplicate {
            what: "function",
            value: name.to_owned(),
        },
        _ => StoreError::Database {
            op: "insert function",
            source,
        },
    }
}

/// In one transaction: deletes the `FAILED` function named like `row` (and its executions),
/// if there is one, and inserts `row`. Returns the id it replaced. Of two concurrent
/// replacements, the second waits on the first's row lock (on PostgreSQL; SQLite has one
/// writer) and then fails on the name.
pub(super) async fn replace_failed_function(
    store: &SqlStore,
    row: &WasmFunctionRow,
) -> Result<Option<String>> {
    let mut tx = store.write.begin().await.ctx("begin replace function")?;
    let lock = if store.is_postgres() {
        " FOR UPDATE"
    } else {
        ""
    };
    let old: Option<String> = sqlx::query_scalar(&format!(
        "SELECT id FROM wasm_functions WHERE name = $1 AND status = 'FAILED'{lock}"
    ))
    .bind(&row.name)
    .fetch_optional(&mut *tx)
    .await
    .ctx("find the failed function")?;
    if let Some(old) = &old {
        delete_function_rows(&mut tx, old).await?;
    }
    insert_function(&mut *tx, row).await?;
    tx.commit().await.ctx("commit replace function")?;
    Ok(old)
}

/// Deletes a function and its executions in one transaction; false when it did not exist.
pub async fn delete_function(pool: &AnyPool, id: &str) -> Result<bool> {
    let mut tx = pool.begin().await.ctx("begin delete function")?;
    let deleted = delete_function_rows(&mut tx, id).await?;
    tx.commit().await.ctx("commit delete function")?;
    Ok(deleted)
}

async fn delete_function_rows(tx: &mut sqlx::AnyConnection, id: &str) -> Result<bool> {
    sqlx::query("DELETE FROM executions WHERE function_id = $1")
        .bind(id)
        .execute(&mut *tx)
        .await
        .ctx("delete function executions")?;
    Ok(sqlx::query("DELETE FROM wasm_functions WHERE id = $1")
        .bind(id)
        .execute(&mut *tx)
        .await
        .ctx("delete function")?
        .rows_affected()
        > 0)
}

pub async fn get_function_by_name(pool: &AnyPool, name: &str) -> Result<Option<WasmFunctionRow>> {
    sqlx::query(&format!(
        "SELECT {FUNCTION_COLUMNS} FROM wasm_functions WHERE name = $1"
    ))
    .bind(name)
    .fetch_optional(pool)
    .await
    .ctx("get function by name")?
    .map(|r| function_from_row(&r, false))
    .transpose()
}

pub async fn get_function(
    pool: &AnyPool,
    id: &str,
    with_wasm: bool,
) -> Result<Option<WasmFunctionRow>> {
    let cols = if with_wasm {
        format!("{FUNCTION_COLUMNS}, wasm")
    } else {
        FUNCTION_COLUMNS.to_owned()
    };
    sqlx::query(&format!("SELECT {cols} FROM wasm_functions WHERE id = $1"))
        .bind(id)
        .fetch_optional(pool)
        .await
        .ctx("get function")?
        .map(|r| function_from_row(&r, with_wasm))
        .transpose()
}

pub async fn list_functions(pool: &AnyPool) -> Result<Vec<WasmFunctionRow>> {
    sqlx::query(&format!(
        "SELECT {FUNCTION_COLUMNS} FROM wasm_functions ORDER BY created_at"
    ))
    .fetch_all(pool)
    .await
    .ctx("list functions")?
    .iter()
    .map(|r| function_from_row(r, false))
    .collect()
}

pub async fn set_status(pool: &AnyPool, id: &str, status: WasmFunctionStatus) -> Result<()> {
    // Never move a finished function backwards.
    sqlx::query("UPDATE wasm_functions SET status = $1, updated_at = $2 WHERE id = $3 AND status NOT IN ('READY', 'FAILED')")
        .bind(status.as_str())
        .bind(morel_core::time::now_ms())
        .bind(id)
        .execute(pool)
        .await
        .ctx("set function status")?;
    Ok(())
}

pub(super) async fn apply_compile_result(
    store: &SqlStore,
    id: &str,
    outcome: &CompileOutcome,
    queue: &str,
    msg_id: i64,
) -> Result<bool> {
    let mut tx = store.write.begin().await.ctx("begin apply result")?;
    let (status, wasm, error) = match outcome {
        CompileOutcome::Ready(w) => (WasmFunctionStatus::Ready, Some(w.as_slice()), None),
        CompileOutcome::Failed(e) => (WasmFunctionStatus::Failed, None, Some(e.as_str())),
    };
    let changed = sqlx::query("UPDATE wasm_functions SET status = $1, wasm = $2, compile_error = $3, updated_at = $4 WHERE id = $5 AND status NOT IN ('READY', 'FAILED')")
        .bind(status.as_str())
        .bind(wasm)
        .bind(error)
        .bind(morel_core::time::now_ms())
        .bind(id)
        .execute(&mut *tx)
        .await
        .ctx("apply compile result")?
        .rows_affected()
        > 0;
    // The message goes in the same transaction as the update.
    queues::delete_on(store, &mut tx, queue, msg_id).await?;
    tx.commit().await.ctx("commit apply result")?;
    Ok(changed)
}

fn execution_from_row(r: &AnyRow) -> Result<ExecutionRow> {
    let status: String = r.get("status");
    Ok(ExecutionRow {
        id: super::parse("executions.id", r.get("id"))?,
        function_id: r.get("function_id"),
        status: ExecutionStatus::parse(&status).ok_or(StoreError::Corrupt {
            column: "executions.status",
            message: status.clone(),
        })?,
        input: r.get("input"),
        output: r.get("output"),
        error: r.get("error"),
        started_at: r.get("started_at"),
        completed_at: r.get("completed_at"),
    })
}

pub async fn insert_execution<'e>(ex: impl AnyExecutor<'e>, row: &ExecutionRow) -> Result<()> {
    sqlx::query("INSERT INTO executions (id, function_id, status, input, output, error, started_at, completed_at) VALUES ($1, $2, $3, $4, $5, $6, $7, $8)")
        .bind(row.id.to_string())
        .bind(&row.function_id)
        .bind(row.status.as_str())
        .bind(&row.input)
        .bind(&row.output)
        .bind(&row.error)
        .bind(row.started_at)
        .bind(row.completed_at)
        .execute(ex)
        .await
        .ctx("insert execution")?;
    Ok(())
}

/// The jobs' executions and messages in one transaction (SQLite has its own, in one round
/// trip: `sqlite::enqueue_jobs`).
pub(super) async fn enqueue_jobs(
    store: &SqlStore,
    queue: &str,
    jobs: &[NewJob],
) -> Result<Vec<i64>> {
    if jobs.is_empty() {
        return Ok(Vec::new());
    }
    let mut tx = store.write.begin().await.ctx("begin enqueue")?;
    let mut ids = Vec::with_capacity(jobs.len());
    for job in jobs {
        insert_execution(&mut *tx, &job.execution).await?;
        ids.push(queues::send_on(store, &mut tx, queue, &job.message).await?);
    }
    tx.commit().await.ctx("commit enqueue")?;
    Ok(ids)
}

pub async fn start_executions(pool: &AnyPool, ids: &[ExecutionId]) -> Result<Vec<ExecutionId>> {
    if ids.is_empty() {
        return Ok(Vec::new());
    }
    let sql = format!(
        "UPDATE executions SET status = 'RUNNING' WHERE status = 'QUEUED' AND id IN ({}) RETURNING id",
        super::placeholders(1, ids.len())
    );
    let mut q = sqlx::query_scalar(&sql);
    for id in ids {
        q = q.bind(id.to_string());
    }
    let started: Vec<String> = q.fetch_all(pool).await.ctx("start executions")?;
    started
        .iter()
        .map(|id| super::parse("executions.id", id))
        .collect()
}

/// The jobs' outcomes and the deletion of their messages in one transaction (SQLite has its
/// own, in one round trip: `sqlite::finish_jobs`).
pub(super) async fn finish_jobs(store: &SqlStore, queue: &str, jobs: &[FinishedJob]) -> Result<()> {
    if jobs.is_empty() {
        return Ok(());
    }
    let mut tx = store.write.begin().await.ctx("begin finish jobs")?;
    for job in jobs {
        finish_execution(
            &mut *tx,
            job.id,
            job.status,
            job.output.as_deref(),
            job.error.as_deref(),
        )
        .await?;
    }
    for job in jobs {
        queues::delete_on(store, &mut tx, queue, job.msg_id).await?;
    }
    tx.commit().await.ctx("commit finish jobs")?;
    Ok(())
}

pub async fn finish_execution<'e>(
    ex: impl AnyExecutor<'e>,
    id: ExecutionId,
    status: ExecutionStatus,
    output: Option<&str>,
    error: Option<&str>,
) -> Result<()> {
    sqlx::query(
        "UPDATE executions SET status = $1, output = $2, error = $3, completed_at = $4 WHERE id = $5 AND status IN ('QUEUED', 'RUNNING')",
    )
    .bind(status.as_str())
    .bind(output)
    .bind(error)
    .bind(morel_core::time::now_ms())
    .bind(id.to_string())
    .execute(ex)
    .await
    .ctx("finish execution")?;
    Ok(())
}

pub async fn get_execution(pool: &AnyPool, id: ExecutionId) -> Result<Option<ExecutionRow>> {
    sqlx::query("SELECT * FROM executions WHERE id = $1")
        .bind(id.to_string())
        .fetch_optional(pool)
        .await
        .ctx("get execution")?
        .map(|r| execution_from_row(&r))
        .transpose()
}

pub async fn list_executions(
    pool: &AnyPool,
    function_id: &str,
    limit: i64,
) -> Result<Vec<ExecutionRow>> {
    sqlx::query(
        "SELECT * FROM executions WHERE function_id = $1 ORDER BY started_at DESC, id DESC LIMIT $2",
    )
    .bind(function_id)
    .bind(limit)
    .fetch_all(pool)
    .await
    .ctx("list executions")?
    .iter()
    .map(execution_from_row)
    .collect()
}

pub async fn transition_execution(
    pool: &AnyPool,
    id: ExecutionId,
    from: &[&str],
    to: ExecutionStatus,
) -> Result<bool> {
    // $1..$4 are fixed; the allowed source states follow from $5.
    let sql = format!(
        "UPDATE executions SET status = $1, completed_at = CASE WHEN $2 THEN $3 ELSE completed_at END WHERE id = $4 AND status IN ({})",
        super::placeholders(5, from.len())
    );
    let mut q = sqlx::query(&sql)
        .bind(to.as_str())
        .bind(to == ExecutionStatus::Cancelled)
        .bind(morel_core::time::now_ms())
        .bind(id.to_string());
    for f in from {
        q = q.bind(*f);
    }
    Ok(q.execute(pool)
        .await
        .ctx("transition execution")?
        .rows_affected()
        > 0)
}
