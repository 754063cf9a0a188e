//! Seed 001's tables: compiled functions and their executions.

use sqlx::sqlite::SqliteArguments;
use sqlx::sqlite::SqliteRow;
use sqlx::{Arguments, Row, SqliteExecutor, SqlitePool};

use crate::error::Ctx;
use crate::{
    CompileOutcome, ExecutionRow, ExecutionStatus, FinishedJob, NewJob, Result, StoreError,
    WasmFunctionRow, WasmFunctionStatus,
};

fn function_from_row(r: &SqliteRow, with_wasm: bool) -> Result<WasmFunctionRow> {
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

pub async fn insert_function<'e>(ex: impl SqliteExecutor<'e>, row: &WasmFunctionRow) -> Result<()> {
    sqlx::query("INSERT INTO wasm_functions (id, name, language, source, status, compile_error, wasm, created_at, updated_at) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?)")
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
/// if there is one, and inserts `row`. Returns the id it replaced.
pub async fn replace_failed_function(
    pool: &SqlitePool,
    row: &WasmFunctionRow,
) -> Result<Option<String>> {
    let mut tx = pool.begin().await.ctx("begin replace function")?;
    let old: Option<String> =
        sqlx::query_scalar("SELECT id FROM wasm_functions WHERE name = ? AND status = 'FAILED'")
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
pub async fn delete_function(pool: &SqlitePool, id: &str) -> Result<bool> {
    let mut tx = pool.begin().await.ctx("begin delete function")?;
    let deleted = delete_function_rows(&mut tx, id).await?;
    tx.commit().await.ctx("commit delete function")?;
    Ok(deleted)
}

async fn delete_function_rows(tx: &mut sqlx::SqliteConnection, id: &str) -> Result<bool> {
    sqlx::query("DELETE FROM executions WHERE function_id = ?")
        .bind(id)
        .execute(&mut *tx)
        .await
        .ctx("delete function executions")?;
    Ok(sqlx::query("DELETE FROM wasm_functions WHERE id = ?")
        .bind(id)
        .execute(&mut *tx)
        .await
        .ctx("delete function")?
        .rows_affected()
        > 0)
}

pub async fn get_function_by_name(
    pool: &SqlitePool,
    name: &str,
) -> Result<Option<WasmFunctionRow>> {
    sqlx::query(&format!(
        "SELECT {FUNCTION_COLUMNS} FROM wasm_functions WHERE name = ?"
    ))
    .bind(name)
    .fetch_optional(pool)
    .await
    .ctx("get function by name")?
    .map(|r| function_from_row(&r, false))
    .transpose()
}

pub async fn get_function(
    pool: &SqlitePool,
    id: &str,
    with_wasm: bool,
) -> Result<Option<WasmFunctionRow>> {
    let cols = if with_wasm {
        format!("{FUNCTION_COLUMNS}, wasm")
    } else {
        FUNCTION_COLUMNS.to_owned()
    };
    sqlx::query(&format!("SELECT {cols} FROM wasm_functions WHERE id = ?"))
        .bind(id)
        .fetch_optional(pool)
        .await
        .ctx("get function")?
        .map(|r| function_from_row(&r, with_wasm))
        .transpose()
}

pub async fn list_functions(pool: &SqlitePool) -> Result<Vec<WasmFunctionRow>> {
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

pub async fn set_status(pool: &SqlitePool, id: &str, status: WasmFunctionStatus) -> Result<()> {
    // Never move a finished function backwards.
    sqlx::query("UPDATE wasm_functions SET status = ?, updated_at = ? WHERE id = ? AND status NOT IN ('READY', 'FAILED')")
        .bind(status.as_str())
        .bind(morel_core::time::now_ms())
        .bind(id)
        .execute(pool)
        .await
        .ctx("set function status")?;
    Ok(())
}

pub async fn apply_compile_result(
    pool: &SqlitePool,
    id: &str,
    outcome: &CompileOutcome,
    queue: &str,
    msg_id: i64,
) -> Result<bool> {
    let mut tx = pool.begin().await.ctx("begin apply result")?;
    let (status, wasm, error) = match outcome {
        CompileOutcome::Ready(w) => (WasmFunctionStatus::Ready, Some(w.as_slice()), None),
        CompileOutcome::Failed(e) => (WasmFunctionStatus::Failed, None, Some(e.as_str())),
    };
    let changed = sqlx::query("UPDATE wasm_functions SET status = ?, wasm = ?, compile_error = ?, updated_at = ? WHERE id = ? AND status NOT IN ('READY', 'FAILED')")
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
    sqlx::query("DELETE FROM queue_messages WHERE queue = ? AND msg_id = ?")
        .bind(queue)
        .bind(msg_id)
        .execute(&mut *tx)
        .await
        .ctx("delete applied result")?;
    tx.commit().await.ctx("commit apply result")?;
    Ok(changed)
}

fn execution_from_row(r: &SqliteRow) -> Result<ExecutionRow> {
    let status: String = r.get("status");
    Ok(ExecutionRow {
        id: r.get("id"),
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

pub async fn insert_execution(pool: &SqlitePool, row: &ExecutionRow) -> Result<()> {
    sqlx::query("INSERT INTO executions (id, function_id, status, input, output, error, started_at, completed_at) VALUES (?, ?, ?, ?, ?, ?, ?, ?)")
        .bind(&row.id)
        .bind(&row.function_id)
        .bind(row.status.as_str())
        .bind(&row.input)
        .bind(&row.output)
        .bind(&row.error)
        .bind(row.started_at)
        .bind(row.completed_at)
        .execute(pool)
        .await
        .ctx("insert execution")?;
    Ok(())
}

/// The jobs' executions and messages in one transaction, one round trip: two multi-row inserts.
pub async fn enqueue_jobs(pool: &SqlitePool, queue: &str, jobs: &[NewJob]) -> Result<Vec<i64>> {
    if jobs.is_empty() {
        return Ok(Vec::new());
    }
    let now = morel_core::time::now_ms();
    let mut args = Args::default();
    for job in jobs {
        let row = &job.execution;
        args.text(&row.id)
            .text(&row.function_id)
            .text(row.status.as_str())
            .text(&row.input)
            .opt_text(row.output.as_deref())
            .opt_text(row.error.as_deref())
            .int(row.started_at)
            .opt_int(row.completed_at);
    }
    for job in jobs {
        args.text(queue)
            .int(now)
            .int(now)
            .text(&job.message.to_string());
    }
    let sql = format!(
        "BEGIN IMMEDIATE; \
         INSERT INTO executions (id, function_id, status, input, output, error, started_at, completed_at) VALUES {}; \
         INSERT INTO queue_messages (queue, read_ct, enqueued_at, vt, message) VALUES {} RETURNING msg_id; \
         COMMIT;",
        values(jobs.len(), "(?, ?, ?, ?, ?, ?, ?, ?)"),
        values(jobs.len(), "(?, 0, ?, ?, ?)"),
    );
    let rows = atomically(pool, sql, args, "enqueue jobs").await?;
    // One transaction on the one writer: the ids are consecutive, in insertion order.
    let mut ids: Vec<i64> = rows
        .iter()
        .filter_map(|r| r.try_get::<i64, _>("msg_id").ok())
        .collect();
    ids.sort_unstable();
    if ids.len() != jobs.len() {
        return Err(StoreError::Corrupt {
            column: "queue_messages.msg_id",
            message: format!("{} jobs inserted, {} ids returned", jobs.len(), ids.len()),
        });
    }
    Ok(ids)
}

pub async fn start_executions(pool: &SqlitePool, ids: &[String]) -> Result<Vec<String>> {
    if ids.is_empty() {
        return Ok(Vec::new());
    }
    let sql = format!(
        "UPDATE executions SET status = 'RUNNING' WHERE status = 'QUEUED' AND id IN ({}) RETURNING id",
        vec!["?"; ids.len()].join(", ")
    );
    let mut q = sqlx::query(&sql);
    for id in ids {
        q = q.bind(id);
    }
    Ok(q.fetch_all(pool)
        .await
        .ctx("start executions")?
        .iter()
        .map(|r| r.get("id"))
        .collect())
}

/// The jobs' outcomes and the deletion of their messages in one transaction, one round trip.
pub async fn finish_jobs(pool: &SqlitePool, queue: &str, jobs: &[FinishedJob]) -> Result<()> {
    if jobs.is_empty() {
        return Ok(());
    }
    let now = morel_core::time::now_ms();
    let mut args = Args::default();
    let mut sql = String::from("BEGIN IMMEDIATE; ");
    for job in jobs {
        sql.push_str("UPDATE executions SET status = ?, output = ?, error = ?, completed_at = ? WHERE id = ? AND status IN ('QUEUED', 'RUNNING'); ");
        args.text(job.status.as_str())
            .opt_text(job.output.as_deref())
            .opt_text(job.error.as_deref())
            .int(now)
            .text(&job.id);
    }
    sql.push_str(&format!(
        "DELETE FROM queue_messages WHERE queue = ? AND msg_id IN ({}); COMMIT;",
        vec!["?"; jobs.len()].join(", ")
    ));
    args.text(queue);
    for job in jobs {
        args.int(job.msg_id);
    }
    atomically(pool, sql, args, "finish jobs").await?;
    Ok(())
}

/// `n` copies of a `VALUES` tuple, comma-separated.
fn values(n: usize, tuple: &str) -> String {
    vec![tuple; n].join(", ")
}

/// Owned parameters for [`atomically`], bound to the `?`s of all its statements in order.
#[derive(Default)]
struct Args(SqliteArguments<'static>);

impl Args {
    fn push<T>(&mut self, value: T) -> &mut Self
    where
        T: sqlx::Encode<'static, sqlx::Sqlite> + sqlx::Type<sqlx::Sqlite> + 'static,
    {
        // Encoding a string or an integer for SQLite cannot fail.
        let _ = self.0.add(value);
        self
    }
    fn text(&mut self, v: &str) -> &mut Self {
        self.push(v.to_owned())
    }
    fn opt_text(&mut self, v: Option<&str>) -> &mut Self {
        self.push(v.map(str::to_owned))
    }
    fn int(&mut self, v: i64) -> &mut Self {
        self.push(v)
    }
    fn opt_int(&mut self, v: Option<i64>) -> &mut Self {
        self.push(v)
    }
}

/// Runs `sql`, several statements from `BEGIN IMMEDIATE` to `COMMIT`, in a single round trip to
/// the connection's thread; a sqlx transaction would cost one more each for `BEGIN` and
/// `COMMIT`, on the one writer connection every write queues for. A failed statement rolls
/// the transaction back. It runs on a task of its own, so a caller that goes away (a client
/// hanging up) cannot stop it halfway with the transaction still open. Returns the rows the
/// statements returned.
async fn atomically(
    pool: &SqlitePool,
    sql: String,
    args: Args,
    what: &'static str,
) -> Result<Vec<SqliteRow>> {
    let pool = pool.clone();
    let task = tokio::spawn(async move {
        let mut conn = pool.acquire().await.ctx(what)?;
        match sqlx::query_with(&sql, args.0).fetch_all(&mut *conn).await {
            Ok(rows) => Ok(rows),
            Err(e) => {
                // Nothing to undo when BEGIN itself failed; the error then is the first one.
                let _ = sqlx::query("ROLLBACK").execute(&mut *conn).await;
                Err(e).ctx(what)
            }
        }
    });
    task.await.map_err(|_| StoreError::Database {
        op: what,
        source: sqlx::Error::WorkerCrashed,
    })?
}

pub async fn finish_execution(
    pool: &SqlitePool,
    id: &str,
    status: ExecutionStatus,
    output: Option<&str>,
    error: Option<&str>,
) -> Result<()> {
    sqlx::query(
        "UPDATE executions SET status = ?, output = ?, error = ?, completed_at = ? WHERE id = ? AND status IN ('QUEUED', 'RUNNING')",
    )
    .bind(status.as_str())
    .bind(output)
    .bind(error)
    .bind(morel_core::time::now_ms())
    .bind(id)
    .execute(pool)
    .await
    .ctx("finish execution")?;
    Ok(())
}

pub async fn get_execution(pool: &SqlitePool, id: &str) -> Result<Option<ExecutionRow>> {
    sqlx::query("SELECT * FROM executions WHERE id = ?")
        .bind(id)
        .fetch_optional(pool)
        .await
        .ctx("get execution")?
        .map(|r| execution_from_row(&r))
        .transpose()
}

pub async fn list_executions(
    pool: &SqlitePool,
    function_id: &str,
    limit: i64,
) -> Result<Vec<ExecutionRow>> {
    sqlx::query(
        "SELECT * FROM executions WHERE function_id = ? ORDER BY started_at DESC, id DESC LIMIT ?",
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
    pool: &SqlitePool,
    id: &str,
    from: &[&str],
    to: ExecutionStatus,
) -> Result<bool> {
    let placeholders = vec!["?"; from.len()].join(", ");
    let sql = format!(
        "UPDATE executions SET status = ?, completed_at = CASE WHEN ? THEN ? ELSE completed_at END WHERE id = ? AND status IN ({placeholders})"
    );
    let mut q = sqlx::query(&sql)
        .bind(to.as_str())
        .bind(to == ExecutionStatus::Cancelled)
        .bind(morel_core::time::now_ms())
        .bind(id);
    for f in from {
        q = q.bind(*f);
    }
    Ok(q.execute(pool)
        .await
        .ctx("transition execution")?
        .rows_affected()
        > 0)
}
