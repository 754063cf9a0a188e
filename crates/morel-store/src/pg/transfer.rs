//! The import half of `morel import`: loads a [`Dump`] into this (empty) PostgreSQL store in
//! one transaction, so a failed import leaves nothing behind.

use sqlx::Row;

use super::PgStore;
use crate::error::Ctx;
use crate::transfer::{Cell, DUMP_FORMAT, Dump, ImportSummary, from_hex, is_identifier};
use crate::{Result, StoreError};

impl PgStore {
    pub async fn import(&self, dump: &Dump) -> Result<ImportSummary> {
        if dump.format != DUMP_FORMAT {
            return Err(StoreError::Import(format!(
                "dump format {} is not {DUMP_FORMAT}",
                dump.format
            )));
        }
        let mut tx = self.pool.begin().await.ctx("begin import")?;
        let here: Vec<i64> = sqlx::query_scalar("SELECT version FROM morel_migrations")
            .fetch_all(&mut *tx)
            .await
            .ctx("read migrations")?;
        if let Some(v) = dump.migrations.iter().find(|v| !here.contains(v)) {
            return Err(StoreError::Import(format!(
                "the export has migration {v}, which this morel does not know: upgrade it first"
            )));
        }
        let apps: i64 = sqlx::query_scalar("SELECT COUNT(*) FROM apps")
            .fetch_one(&mut *tx)
            .await
            .ctx("count apps")?;
        if apps > 0 {
            return Err(StoreError::Import(format!(
                "the target database already has {apps} app(s); import only into a new database"
            )));
        }
        let mut summary = ImportSummary::default();
        for table in &dump.tables {
            let valid =
                is_identifier(&table.name) && table.columns.iter().all(|c| is_identifier(c));
            if !valid {
                return Err(StoreError::Import(format!(
                    "table {:?} has names that are not plain identifiers",
                    table.name
                )));
            }
            let exists: bool = sqlx::query_scalar("SELECT to_regclass($1) IS NOT NULL")
                .bind(&table.name)
                .fetch_one(&mut *tx)
                .await
                .ctx("look up table")?;
            if !exists {
                return Err(StoreError::Import(format!(
                    "table {} from the export does not exist here",
                    table.name
                )));
            }
            let mut written = 0;
            for row in &table.rows {
                written += insert_row(&mut tx, &table.name, &table.columns, row).await?;
            }
            reset_identities(&mut tx, &table.name).await?;
            summary.tables.push((table.name.clone(), written));
        }
        for m in &dump.queue_messages {
            super::queues::table(&m.queue, "q")?;
            sqlx::query("SELECT pgmq.create($1)")
                .bind(&m.queue)
                .execute(&mut *tx)
                .await
                .ctx("create queue")?;
            sqlx::query("SELECT * FROM pgmq.send($1, $2::jsonb)")
                .bind(&m.queue)
                .bind(m.message.to_string())
                .execute(&mut *tx)
                .await
                .ctx("import queue message")?;
            summary.queue_messages += 1;
        }
        tx.commit().await.ctx("commit import")?;
        Ok(summary)
    }
}

/// Inserts one row; NULLs are written as literals so every bound value has its own type.
/// Rows already present (keys the target trusted at its first start) are left as they are.
async fn insert_row(
    tx: &mut sqlx::PgConnection,
    table: &str,
    columns: &[String],
    row: &[Cell],
) -> Result<u64> {
    if row.len() != columns.len() {
        return Err(StoreError::Import(format!(
            "a row of {table} has {} values for {} columns",
            row.len(),
            columns.len()
        )));
    }
    let mut n = 0;
    let values: Vec<String> = row
        .iter()
        .map(|c| match c {
            Cell::Null => "NULL".to_owned(),
            _ => {
                n += 1;
                format!("${n}")
            }
        })
        .collect();
    let sql = format!(
        "INSERT INTO {table} ({}) VALUES ({}) ON CONFLICT DO NOTHING",
        columns.join(", "),
        values.join(", ")
    );
    let mut q = sqlx::query(&sql);
    for cell in row {
        q = match cell {
            Cell::Null => q,
            Cell::Int(i) => q.bind(*i),
            Cell::Text(s) => q.bind(s.as_str()),
            Cell::Bytes(hex) => q.bind(from_hex(hex).ok_or_else(|| {
                StoreError::Import(format!("a byte value in {table} is not hex"))
            })?),
        };
    }
    Ok(q.execute(&mut *tx).await.ctx("import row")?.rows_affected())
}

/// Moves identity sequences past the imported ids, so new rows do not collide with them.
async fn reset_identities(tx: &mut sqlx::PgConnection, table: &str) -> Result<()> {
    let columns = sqlx::query(
        "SELECT column_name::text AS name FROM information_schema.columns \
         WHERE table_schema = current_schema() AND table_name = $1 AND is_identity = 'YES'",
    )
    .bind(table)
    .fetch_all(&mut *tx)
    .await
    .ctx("find identity columns")?;
    for c in columns {
        let column: String = c.get("name");
        if !is_identifier(&column) {
            continue;
        }
        sqlx::query(&format!(
            "SELECT setval(pg_get_serial_sequence($1, $2), COALESCE((SELECT MAX({column}) FROM {table}), 0) + 1, false)"
        ))
        .bind(table)
        .bind(&column)
        .execute(&mut *tx)
        .await
        .ctx("reset identity")?;
    }
    Ok(())
}
