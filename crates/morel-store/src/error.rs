#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    #[error("database error during {op}")]
    Database {
        op: &'static str,
        #[source]
        source: sqlx::Error,
    },
    #[error("migration {version} failed")]
    Migration {
        version: i64,
        #[source]
        source: sqlx::Error,
    },
    #[error("stored value in {column} is corrupt: {message}")]
    Corrupt {
        column: &'static str,
        message: String,
    },
    #[error("{0} not found")]
    NotFound(String),
    /// A row would break a uniqueness rule, e.g. a second compiled function of one name.
    #[error("{what} {value:?} already exists")]
    Duplicate { what: &'static str, value: String },
    #[error(
        "unsupported database URL ({0}): use postgres://user@host:port/db or a SQLite file path"
    )]
    BadUrl(String),
    #[error("invalid queue name {0:?}: use 1 to 47 letters, digits or _")]
    QueueName(String),
    #[error("cannot import: {0}")]
    Import(String),
    /// Every uid of the range `first..first + count` belongs to an app (`Store::app_uid`).
    #[error(
        "the uid range {first}..{end} is exhausted ({count} apps); widen MOREL_UID_RANGE",
        end = u64::from(*.first) + u64::from(*.count)
    )]
    UidRangeExhausted { first: u32, count: u32 },
}

pub(crate) trait Ctx<T> {
    fn ctx(self, op: &'static str) -> Result<T, StoreError>;
}

impl<T> Ctx<T> for Result<T, sqlx::Error> {
    fn ctx(self, op: &'static str) -> Result<T, StoreError> {
        self.map_err(|source| StoreError::Database { op, source })
    }
}
