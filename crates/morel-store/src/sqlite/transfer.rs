//! The export half of `morel export`: every persistent table of the SQLite store as a [`Dump`].

use sqlx::sqlite::SqliteRow;
use sqlx::{Column, Row, TypeInfo, ValueRef};

use super::SqliteStore;
use crate::error::Ctx;
use crate::transfer::{
    Cell, DUMP_FORMAT, Dump, NOT_EXPORTED, QueuedMessage, TableDump, is_identifier, to_hex,
};
use crate::{Result, StoreError};

impl SqliteStore {
    /// Reads everything a move to another backend needs, in one read transaction so the dump
    /// is consistent even while the store is in use.
    pub async fn export(&self) -> Result<Dump> {
        let mut tx = self.pool.begin().await.ctx("begin export")?;
        let migrations: Vec<i64> =
            sqlx::query_scalar("SELECT version FROM morel_migrations ORDER BY version")
                .fetch_all(&mut *tx)
                .await
                .ctx("read migrations")?;
        let names: Vec<String> = sqlx::query_scalar(
            "SELECT name FROM sqlite_master WHERE type = 'table' AND name NOT LIKE 'sqlite_%' ORDER BY name",
        )
        .fetch_all(&mut *tx)
        .await
        .ctx("list tables")?;
        let mut tables = Vec::new();
        for name in names {
            if NOT_EXPORTED.contains(&name.as_str()) {
                continue;
            }
            if !is_identifier(&name) {
                return Err(StoreError::Import(format!(
                    "unexpected table name {name:?}"
                )));
            }
            let rows = sqlx::query(&format!("SELECT * FROM {name}"))
                .fetch_all(&mut *tx)
                .await
                .ctx("export table")?;
            let columns = match rows.first() {
                Some(r) => r.columns().iter().map(|c| c.name().to_owned()).collect(),
                None => Vec::new(),
            };
            let rows = rows.iter().map(cells).collect::<Result<Vec<_>>>()?;
            tables.push(TableDump {
                name,
                columns,
                rows,
            });
        }
        let queue_messages =
            sqlx::query("SELECT queue, message FROM queue_messages ORDER BY msg_id")
                .fetch_all(&mut *tx)
                .await
                .ctx("export queue messages")?
                .iter()
                .map(|r| {
                    let text: String = r.get("message");
                    Ok(QueuedMessage {
                        queue: r.get("queue"),
                        message: serde_json::from_str(&text).map_err(|e| StoreError::Corrupt {
                            column: "queue_messages.message",
                            message: e.to_string(),
                        })?,
                    })
                })
                .collect::<Result<Vec<_>>>()?;
        tx.commit().await.ctx("end export")?;
        Ok(Dump {
            format: DUMP_FORMAT,
            migrations,
            tables,
            queue_messages,
        })
    }
}

/// A row's values by their stored SQLite type (SQLite types values, not columns).
fn cells(row: &SqliteRow) -> Result<Vec<Cell>> {
    (0..row.columns().len())
        .map(|i| {
            let raw = row.try_get_raw(i).ctx("read cell")?;
            if raw.is_null() {
                return Ok(Cell::Null);
            }
            let kind = raw.type_info().name().to_owned();
            Ok(match kind.as_str() {
                "INTEGER" => Cell::Int(row.try_get(i).ctx("read integer")?),
                "TEXT" => Cell::Text(row.try_get(i).ctx("read text")?),
                "BLOB" => Cell::Bytes(to_hex(&row.try_get::<Vec<u8>, _>(i).ctx("read blob")?)),
                other => {
                    return Err(StoreError::Corrupt {
                        column: "export",
                        message: format!("cannot export a {other} value"),
                    });
                }
            })
        })
        .collect()
}
