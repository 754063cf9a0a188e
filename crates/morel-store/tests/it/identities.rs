//! App identities (the Unix uid each app's workers run as), on every backend: allocated once,
//! lowest free first, never shared, never freed, and safe to allocate concurrently.

use std::collections::BTreeSet;
use std::sync::Arc;

use morel_core::{AppName, Namespace};
use morel_store::{AppKey, Store, StoreError};

use crate::backend::for_each_backend;
use crate::key;

for_each_backend!(
    an_app_keeps_its_uid_and_others_get_the_lowest_free,
    namespaces_are_distinct_apps,
    a_full_range_is_a_clear_error,
    uids_survive_deleting_the_app,
    concurrent_allocations_never_share_a_uid,
);

const FIRST: u32 = 200_000;

async fn an_app_keeps_its_uid_and_others_get_the_lowest_free(store: Arc<dyn Store>) {
    assert!(store.list_app_uids().await.unwrap().is_empty());
    let (a, b, c) = (key("alpha"), key("beta"), key("gamma"));
    assert_eq!(store.app_uid(&a, FIRST, 10).await.unwrap(), FIRST);
    assert_eq!(store.app_uid(&a, FIRST, 10).await.unwrap(), FIRST);
    assert_eq!(store.app_uid(&b, FIRST, 10).await.unwrap(), FIRST + 1);
    assert_eq!(store.app_uid(&a, FIRST, 10).await.unwrap(), FIRST);
    // A recorded uid is kept when the range changes; new apps get the new range's lowest free.
    assert_eq!(store.app_uid(&a, 300_000, 10).await.unwrap(), FIRST);
    assert_eq!(store.app_uid(&c, 300_000, 10).await.unwrap(), 300_000);
    // A gap below the taken uids is filled first: the lowest free, not one past the highest.
    let d = key("delta");
    assert_eq!(store.app_uid(&d, FIRST - 2, 10).await.unwrap(), FIRST - 2);
    let e = key("epsilon");
    assert_eq!(store.app_uid(&e, FIRST - 2, 10).await.unwrap(), FIRST - 1);
    let f = key("zeta");
    assert_eq!(store.app_uid(&f, FIRST - 2, 10).await.unwrap(), FIRST + 2);
    assert_eq!(
        store.list_app_uids().await.unwrap(),
        vec![
            (d, FIRST - 2),
            (e, FIRST - 1),
            (a, FIRST),
            (b, FIRST + 1),
            (f, FIRST + 2),
            (c, 300_000),
        ]
    );
}

async fn namespaces_are_distinct_apps(store: Arc<dyn Store>) {
    let name: AppName = "shop".parse().unwrap();
    let default = AppKey::in_default(name.clone());
    let team = AppKey::new("team".parse::<Namespace>().unwrap(), name);
    let d = store.app_uid(&default, FIRST, 10).await.unwrap();
    let t = store.app_uid(&team, FIRST, 10).await.unwrap();
    assert_eq!((d, t), (FIRST, FIRST + 1));
    assert_eq!(store.app_uid(&team, FIRST, 10).await.unwrap(), FIRST + 1);
    assert_eq!(
        store.list_app_uids().await.unwrap(),
        vec![(default, FIRST), (team, FIRST + 1)]
    );
}

async fn a_full_range_is_a_clear_error(store: Arc<dyn Store>) {
    for i in 0..3 {
        let app = key(&format!("app{i}"));
        assert_eq!(store.app_uid(&app, FIRST, 3).await.unwrap(), FIRST + i);
    }
    let err = store.app_uid(&key("late"), FIRST, 3).await.unwrap_err();
    assert!(
        matches!(
            err,
            StoreError::UidRangeExhausted {
                first: FIRST,
                count: 3
            }
        ),
        "{err:?}"
    );
    assert_eq!(
        err.to_string(),
        "the uid range 200000..200003 is exhausted (3 apps); widen MOREL_UID_RANGE"
    );
    // Nothing was recorded for the refused app; the others still get theirs; a wider range
    // has room.
    assert_eq!(store.list_app_uids().await.unwrap().len(), 3);
    assert_eq!(
        store.app_uid(&key("app1"), FIRST, 3).await.unwrap(),
        FIRST + 1
    );
    assert_eq!(
        store.app_uid(&key("late"), FIRST, 4).await.unwrap(),
        FIRST + 3
    );
    // An empty range is full, and the range never reaches u32::MAX ((uid_t)-1, "no uid").
    assert!(matches!(
        store.app_uid(&key("none"), FIRST, 0).await,
        Err(StoreError::UidRangeExhausted { .. })
    ));
    let top = u32::MAX - 1;
    assert_eq!(store.app_uid(&key("top"), top, 10).await.unwrap(), top);
    assert!(matches!(
        store.app_uid(&key("over"), top, 10).await,
        Err(StoreError::UidRangeExhausted { .. })
    ));
}

async fn uids_survive_deleting_the_app(store: Arc<dyn Store>) {
    let (gone, other) = (key("gone"), key("other"));
    store.ensure_app(&gone).await.unwrap();
    assert_eq!(store.app_uid(&gone, FIRST, 10).await.unwrap(), FIRST);
    assert!(store.delete_app(&gone).await.unwrap());
    // The deleted app's uid is still its own: never handed to another app...
    assert_eq!(
        store.list_app_uids().await.unwrap(),
        vec![(gone.clone(), FIRST)]
    );
    assert_eq!(store.app_uid(&other, FIRST, 10).await.unwrap(), FIRST + 1);
    // ...and the app created again runs as before.
    store.ensure_app(&gone).await.unwrap();
    assert_eq!(store.app_uid(&gone, FIRST, 10).await.unwrap(), FIRST);
}

async fn concurrent_allocations_never_share_a_uid(store: Arc<dyn Store>) {
    // Twenty apps at once, in a range of exactly twenty: each gets one, all distinct.
    let tasks: Vec<_> = (0..20)
        .map(|i| {
            let store = store.clone();
            tokio::spawn(async move {
                let app = key(&format!("app{i}"));
                let uid = store.app_uid(&app, FIRST, 20).await.unwrap();
                (app, uid)
            })
        })
        .collect();
    let mut got = Vec::new();
    for t in tasks {
        got.push(t.await.unwrap());
    }
    let uids: BTreeSet<u32> = got.iter().map(|(_, uid)| *uid).collect();
    assert_eq!(uids, (FIRST..FIRST + 20).collect::<BTreeSet<_>>());
    let mut listed = store.list_app_uids().await.unwrap();
    listed.sort();
    got.sort();
    assert_eq!(listed, got);

    // Twenty calls at once for one new app: one uid, recorded once.
    let one = key("one");
    let tasks: Vec<_> = (0..20)
        .map(|_| {
            let store = store.clone();
            let one = one.clone();
            tokio::spawn(async move { store.app_uid(&one, FIRST, 30).await.unwrap() })
        })
        .collect();
    let mut uids = BTreeSet::new();
    for t in tasks {
        uids.insert(t.await.unwrap());
    }
    assert_eq!(uids, BTreeSet::from([FIRST + 20]));
    assert_eq!(store.list_app_uids().await.unwrap().len(), 21);
}

#[tokio::test]
async fn two_servers_on_one_postgres_never_share_a_uid() {
    let db = crate::backend::ScratchDb::create().await;
    let a = Arc::new(
        morel_store::SqlStore::connect_postgres(&db.url)
            .await
            .unwrap(),
    );
    let b = Arc::new(
        morel_store::SqlStore::connect_postgres(&db.url)
            .await
            .unwrap(),
    );
    // Each server allocates for 10 apps of its own and for 5 apps both allocate.
    let mut tasks = Vec::new();
    for (server, store) in [("a", a.clone()), ("b", b.clone())] {
        for i in 0..15 {
            let store = store.clone();
            let app = if i < 10 {
                key(&format!("{server}{i}"))
            } else {
                key(&format!("both{i}"))
            };
            tasks.push(tokio::spawn(async move {
                let uid = store.app_uid(&app, FIRST, 25).await.unwrap();
                (app, uid)
            }));
        }
    }
    let mut got = BTreeSet::new();
    for t in tasks {
        got.insert(t.await.unwrap());
    }
    // 25 apps: the shared ones agreed on their uid on both servers, and no uid has two apps.
    assert_eq!(got.len(), 25, "{got:?}");
    let uids: BTreeSet<u32> = got.iter().map(|(_, uid)| *uid).collect();
    assert_eq!(uids, (FIRST..FIRST + 25).collect::<BTreeSet<_>>());
    assert_eq!(
        a.list_app_uids().await.unwrap(),
        b.list_app_uids().await.unwrap()
    );
    a.close().await;
    b.close().await;
}
