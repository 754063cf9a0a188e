//! Scratch PostgreSQL databases for tests: each test creates its own on the server named by
//! `MOREL_TEST_DATABASE_URL` (default `postgres://postgres@127.0.0.1:5432/test`) and drops it
//! when done, so tests run in parallel. An unreachable server fails the test with a message
//! saying so: PostgreSQL tests never skip.

use std::str::FromStr;
use std::sync::atomic::{AtomicU32, Ordering};

use sqlx::ConnectOptions;
use sqlx::postgres::PgConnectOptions;

pub use morel_core::env_vars::MOREL_TEST_DATABASE_URL;

pub const DEFAULT_TEST_DATABASE_URL: &str = "postgres://postgres@127.0.0.1:5432/test";

/// The server PostgreSQL tests use.
pub fn server_url() -> String {
    std::env::var(MOREL_TEST_DATABASE_URL).unwrap_or_else(|_| DEFAULT_TEST_DATABASE_URL.into())
}

/// A database of its own on the test server, dropped (with any open connections) on drop.
pub struct ScratchDb {
    pub name: String,
    /// URL of the scratch database, for `--database-url`.
    pub url: String,
    admin: PgConnectOptions,
}

impl ScratchDb {
    pub async fn create() -> ScratchDb {
        Self::create_on(&server_url()).await
    }

    pub async fn create_on(server: &str) -> ScratchDb {
        static SEQ: AtomicU32 = AtomicU32::new(0);
        let admin = PgConnectOptions::from_str(server).unwrap_or_else(|e| {
            panic!("{MOREL_TEST_DATABASE_URL}={server} is not a PostgreSQL URL: {e}")
        });
        let mut conn = admin.connect().await.unwrap_or_else(|e| {
            panic!(
                "PostgreSQL tests need a server, and none answers at {server}: {e}. \
                 Run scripts/test (it starts one) or set {MOREL_TEST_DATABASE_URL}."
            )
        });
        let nanos = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .unwrap()
            .subsec_nanos();
        let name = format!(
            "morel_t_{}_{}_{nanos}",
            std::process::id(),
            SEQ.fetch_add(1, Ordering::Relaxed)
        );
        sqlx::query(&format!("CREATE DATABASE {name}"))
            .execute(&mut conn)
            .await
            .unwrap();
        let url = with_database(server, &name);
        ScratchDb { name, url, admin }
    }
}

impl Drop for ScratchDb {
    fn drop(&mut self) {
        let admin = self.admin.clone();
        let name = self.name.clone();
        // Drop may run inside a test's runtime: do the async cleanup on a thread of its own.
        let done = std::thread::spawn(move || {
            let rt = tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()
                .unwrap();
            rt.block_on(async {
                if let Ok(mut conn) = admin.connect().await {
                    let _ = sqlx::query(&format!("DROP DATABASE IF EXISTS {name} WITH (FORCE)"))
                        .execute(&mut conn)
                        .await;
                }
            });
        });
        let _ = done.join();
    }
}

/// `url` with its database replaced by `name` (query parameters kept).
pub fn with_database(url: &str, name: &str) -> String {
    let (scheme, rest) = url.split_once("://").unwrap();
    let (before_query, query) = match rest.split_once('?') {
        Some((a, q)) => (a, format!("?{q}")),
        None => (rest, String::new()),
    };
    let authority = before_query.split('/').next().unwrap();
    format!("{scheme}://{authority}/{name}{query}")
}
