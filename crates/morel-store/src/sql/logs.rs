use sqlx::AnyPool;
use sqlx::Row;

use crate::error::Ctx;
use crate::{AppKey, LogRow, LogStream, NewLogLine, Result, StoreError};

pub async fn append(pool: &AnyPool, lines: &[NewLogLine]) -> Result<()> {
    if lines.is_empty() {
        return Ok(());
    }
    // One transaction per batch: the log pump batches lines so the hot path never waits on it.
    let mut tx = pool.begin().await.ctx("begin append logs")?;
    for l in lines {
        sqlx::query(
            "INSERT INTO logs (namespace, app, ts, stream, source, line) VALUES ($1, $2, $3, $4, $5, $6)",
        )
        .bind(l.app.namespace.as_str())
        .bind(l.app.name.as_str())
        .bind(l.ts)
        .bind(l.stream.as_str())
        .bind(&l.source)
        .bind(&l.line)
        .execute(&mut *tx)
        .await
        .ctx("append log")?;
    }
    tx.commit().await.ctx("commit logs")?;
    Ok(())
}

pub async fn read(
    pool: &AnyPool,
    app: &AppKey,
    after_id: i64,
    since_ms: i64,
    limit: i64,
) -> Result<Vec<LogRow>> {
    let rows = sqlx::query("SELECT id, ts, stream, source, line FROM logs WHERE namespace = $1 AND app = $2 AND id > $3 AND ts >= $4 ORDER BY id LIMIT $5")
        .bind(app.namespace.as_str())
        .bind(app.name.as_str())
        .bind(after_id)
        .bind(since_ms)
        .bind(limit)
        .fetch_all(pool)
        .await
        .ctx("read logs")?;
    rows.iter()
        .map(|r| {
            let stream: String = r.get("stream");
            Ok(LogRow {
                id: r.get("id"),
                ts: r.get("ts"),
                stream: LogStream::parse(&stream).ok_or(StoreError::Corrupt {
                    column: "logs.stream",
                    message: stream.clone(),
                })?,
                source: r.get("source"),
                line: r.get("line"),
            })
        })
        .collect()
}

pub async fn prune(pool: &AnyPool, app: &AppKey, keep: i64, min_ts: i64) -> Result<u64> {
    let res = sqlx::query(
        "DELETE FROM logs WHERE namespace = $1 AND app = $2 AND (ts < $3 OR id <= \
         (SELECT id FROM logs WHERE namespace = $1 AND app = $2 ORDER BY id DESC LIMIT 1 OFFSET $4))",
    )
    .bind(app.namespace.as_str())
    .bind(app.name.as_str())
    .bind(min_ts)
    .bind(keep)
    .execute(pool)
    .await
    .ctx("prune logs")?;
    Ok(res.rows_affected())
}
