//! The backends every store test runs on: a SQLite file, SQLite in memory, and PostgreSQL.
//!
//! Each PostgreSQL test gets a scratch database of its own (`morel_test_support::postgres`),
//! dropped when the test ends, so tests run in parallel; an unreachable server fails the test.

use std::sync::Arc;

use morel_store::{SqlStore, Store};
pub use morel_test_support::postgres::ScratchDb;

/// A store plus whatever must outlive it (a temp dir, a scratch database).
pub struct TestStore {
    pub store: Arc<dyn Store>,
    _dir: Option<tempfile::TempDir>,
    _db: Option<ScratchDb>,
}

pub async fn sqlite_file() -> TestStore {
    let dir = tempfile::tempdir().unwrap();
    let store = SqlStore::open_sqlite(&dir.path().join("morel.db"))
        .await
        .unwrap();
    TestStore {
        store: Arc::new(store),
        _dir: Some(dir),
        _db: None,
    }
}

pub async fn sqlite_memory() -> TestStore {
    TestStore {
        store: Arc::new(SqlStore::in_memory().await.unwrap()),
        _dir: None,
        _db: None,
    }
}

pub async fn postgres() -> TestStore {
    let db = ScratchDb::create().await;
    let store = SqlStore::connect_postgres(&db.url).await.unwrap();
    TestStore {
        store: Arc::new(store),
        _dir: None,
        _db: Some(db),
    }
}

/// Instantiates test bodies (each an `async fn(Arc<dyn Store>)` in the calling module) once
/// per backend, as `sqlite_file::NAME`, `sqlite_memory::NAME` and `postgres::NAME`.
macro_rules! for_each_backend {
    ($($test:ident),* $(,)?) => {
        mod sqlite_file {
            $(#[tokio::test]
            async fn $test() {
                let b = crate::backend::sqlite_file().await;
                super::$test(b.store.clone()).await;
            })*
        }
        mod sqlite_memory {
            $(#[tokio::test]
            async fn $test() {
                let b = crate::backend::sqlite_memory().await;
                super::$test(b.store.clone()).await;
            })*
        }
        mod postgres {
            $(#[tokio::test]
            async fn $test() {
                let b = crate::backend::postgres().await;
                super::$test(b.store.clone()).await;
            })*
        }
    };
}
pub(crate) use for_each_backend;

/// Polls for leadership of `role` (a released lock frees at once, but the server notices a
/// closed connection asynchronously), with a bound.
pub async fn wait_lease(store: &SqlStore, role: &str) -> morel_store::Lease {
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(10);
    loop {
        if let Some(lease) = store.try_lead(role).await.unwrap() {
            return lease;
        }
        assert!(
            std::time::Instant::now() < deadline,
            "no leadership of {role} within 10 s after the leader died"
        );
        tokio::time::sleep(std::time::Duration::from_millis(50)).await;
    }
}
