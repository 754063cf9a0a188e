//! App identities (`app_identities`, migration 7): the Unix uid each app's workers run as,
//! allocated once from a range and never freed. Several servers may allocate at once: the
//! UNIQUE uid and the app's primary key make a losing insert do nothing, and it retries.

use sqlx::AnyPool;
use sqlx::Row;

use super::app_key;
use crate::error::Ctx;
use crate::{AppKey, Result, StoreError};

/// The lowest uid of `[first, end)` that no app has: either `first` itself or one past a
/// taken uid. Binds: first, end. NULL when the range is full.
const LOWEST_FREE: &str = "SELECT MIN(c) FROM (\
     SELECT CAST($1 AS BIGINT) AS c \
     UNION ALL SELECT uid + 1 FROM app_identities WHERE uid >= $1 AND uid < $2\
     ) AS candidates \
     WHERE c < $2 AND NOT EXISTS (SELECT 1 FROM app_identities t WHERE t.uid = candidates.c)";

/// The exclusive end of `first..first + count`, kept below `u32::MAX` (which is `(uid_t)-1`,
/// "no uid", to the kernel).
fn range_end(first: u32, count: u32) -> i64 {
    (i64::from(first) + i64::from(count)).min(i64::from(u32::MAX))
}

fn to_uid(stored: i64) -> Result<u32> {
    u32::try_from(stored).map_err(|_| StoreError::Corrupt {
        column: "app_identities.uid",
        message: format!("{stored} is not a uid"),
    })
}

pub async fn app_uid(pool: &AnyPool, app: &AppKey, first: u32, count: u32) -> Result<u32> {
    let end = range_end(first, count);
    // A pass that does not return has seen another caller record a row in between (this
    // app's, or another app's with the candidate uid), so the passes are bounded by the
    // range's size.
    loop {
        if let Some(uid) = get(pool, app).await? {
            return Ok(uid);
        }
        let candidate: Option<i64> = sqlx::query_scalar(LOWEST_FREE)
            .bind(i64::from(first))
            .bind(end)
            .fetch_one(pool)
            .await
            .ctx("find a free uid")?;
        let Some(candidate) = candidate else {
            // A concurrent call for this same app may have taken the last uid.
            return match get(pool, app).await? {
                Some(uid) => Ok(uid),
                None => Err(StoreError::UidRangeExhausted { first, count }),
            };
        };
        // Conflicts on either key (this app recorded meanwhile, or the uid taken by another
        // app) insert nothing; the next pass sees which.
        let res = sqlx::query(
            "INSERT INTO app_identities (namespace, app, uid, created_at) VALUES ($1, $2, $3, $4) \
             ON CONFLICT DO NOTHING",
        )
        .bind(app.namespace.as_str())
        .bind(app.name.as_str())
        .bind(candidate)
        .bind(morel_core::time::now_ms())
        .execute(pool)
        .await
        .ctx("record app uid")?;
        if res.rows_affected() > 0 {
            return to_uid(candidate);
        }
    }
}

async fn get(pool: &AnyPool, app: &AppKey) -> Result<Option<u32>> {
    let uid: Option<i64> =
        sqlx::query_scalar("SELECT uid FROM app_identities WHERE namespace = $1 AND app = $2")
            .bind(app.namespace.as_str())
            .bind(app.name.as_str())
            .fetch_optional(pool)
            .await
            .ctx("get app uid")?;
    uid.map(to_uid).transpose()
}

pub async fn list(pool: &AnyPool) -> Result<Vec<(AppKey, u32)>> {
    sqlx::query("SELECT namespace, app, uid FROM app_identities ORDER BY uid")
        .fetch_all(pool)
        .await
        .ctx("list app uids")?
        .iter()
        .map(|r| Ok((app_key(r)?, to_uid(r.get("uid"))?)))
        .collect()
}
