//! Moving an installation between backends (`morel export` / `morel import`): a [`Dump`] is
//! every persistent table's rows as plain cells, plus the messages waiting on durable queues.
//!
//! Tables are found by listing the source database, not named here, so tables added by later
//! migrations move without changes to this code. Left out on purpose:
//! - `morel_migrations` (the target applies its own), `instances` (processes of the old machine;
//!   the target starts its own at boot), the SQLite queue tables (their waiting messages are
//!   carried in [`Dump::queue_messages`] and sent to the target's pgmq queues, with new ids).
//!
//! The bytes of bundles are files, not rows: the CLI copies them beside the dump.

use serde::{Deserialize, Serialize};

/// The dump format's version; an importer refuses other versions.
pub const DUMP_FORMAT: u32 = 1;

/// Tables that are never exported (see the module docs).
pub const NOT_EXPORTED: &[&str] = &[
    "morel_migrations",
    "instances",
    "queue_messages",
    "queue_archive",
    "queue_dead_letters",
];

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Dump {
    pub format: u32,
    /// Migration versions the source had applied; the target must have applied them all.
    pub migrations: Vec<i64>,
    pub tables: Vec<TableDump>,
    pub queue_messages: Vec<QueuedMessage>,
}

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct TableDump {
    pub name: String,
    pub columns: Vec<String>,
    pub rows: Vec<Vec<Cell>>,
}

impl TableDump {
    /// The values of one column, by name (for callers that need, say, every blob digest).
    pub fn column(&self, name: &str) -> Vec<&Cell> {
        match self.columns.iter().position(|c| c == name) {
            Some(i) => self.rows.iter().filter_map(|r| r.get(i)).collect(),
            None => Vec::new(),
        }
    }
}

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct QueuedMessage {
    pub queue: String,
    pub message: serde_json::Value,
}

/// One stored value. Bytes travel as lowercase hex.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Cell {
    Null,
    Int(i64),
    Text(String),
    Bytes(String),
}

impl Cell {
    pub fn as_text(&self) -> Option<&str> {
        match self {
            Cell::Text(s) => Some(s),
            _ => None,
        }
    }
}

/// What an import wrote.
#[derive(Clone, Debug, Default, PartialEq, Serialize)]
pub struct ImportSummary {
    /// Rows per table, in import order.
    pub tables: Vec<(String, u64)>,
    pub queue_messages: u64,
}

/// True when `name` is a plain SQL identifier (tables and columns read from a dump are spliced
/// into statements, so nothing else is accepted).
pub fn is_identifier(name: &str) -> bool {
    !name.is_empty()
        && name.len() <= 63
        && name.starts_with(|c: char| c.is_ascii_lowercase() || c == '_')
        && name
            .chars()
            .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '_')
}

pub(crate) fn to_hex(bytes: &[u8]) -> String {
    const HEX: &[u8; 16] = b"0123456789abcdef";
    let mut s = String::with_capacity(bytes.len() * 2);
    for b in bytes {
        s.push(HEX[(b >> 4) as usize] as char);
        s.push(HEX[(b & 15) as usize] as char);
    }
    s
}

pub(crate) fn from_hex(s: &str) -> Option<Vec<u8>> {
    if !s.len().is_multiple_of(2) {
        return None;
    }
    (0..s.len())
        .step_by(2)
        .map(|i| u8::from_str_radix(s.get(i..i + 2)?, 16).ok())
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn hex_round_trips_and_identifiers_are_strict() {
        let bytes = vec![0u8, 1, 127, 128, 255];
        assert_eq!(from_hex(&to_hex(&bytes)), Some(bytes));
        assert_eq!(from_hex("abc"), None);
        assert_eq!(from_hex("zz"), None);
        assert!(is_identifier("wasm_functions"));
        assert!(!is_identifier("apps; DROP TABLE x"));
        assert!(!is_identifier("Apps"));
        assert!(!is_identifier(""));
    }
}
