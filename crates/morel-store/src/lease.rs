//! Leadership leases: which server process runs the cluster-wide loops (reconcile, schedule,
//! node-loss detection). See [`crate::Store::try_lead`].

use sqlx::Connection;
use sqlx::postgres::PgConnection;

use crate::Result;
use crate::error::Ctx;

/// Held leadership of one role. Dropping it gives leadership up (on PostgreSQL the lock's
/// connection closes, which releases the lock).
#[derive(Debug)]
pub struct Lease {
    role: String,
    holder: Holder,
}

#[derive(Debug)]
enum Holder {
    /// SQLite: one process per database file, so it always leads.
    Local,
    /// The connection whose session holds the advisory lock.
    Postgres(Box<PgConnection>),
}

impl Lease {
    pub(crate) fn local(role: &str) -> Lease {
        Lease {
            role: role.to_owned(),
            holder: Holder::Local,
        }
    }

    pub(crate) fn postgres(role: &str, conn: PgConnection) -> Lease {
        Lease {
            role: role.to_owned(),
            holder: Holder::Postgres(Box::new(conn)),
        }
    }

    pub fn role(&self) -> &str {
        &self.role
    }

    /// Whether the lease is still held: on PostgreSQL, whether its connection still answers
    /// (a lost connection means the lock is gone and another server may lead).
    pub async fn check(&mut self) -> Result<()> {
        match &mut self.holder {
            Holder::Local => Ok(()),
            Holder::Postgres(conn) => conn.ping().await.ctx("check leadership"),
        }
    }
}

/// The advisory lock key of a role, computed by the server so every process agrees.
pub(crate) const LOCK_SQL: &str = "SELECT pg_try_advisory_lock(hashtext('morel lead ' || $1))";
