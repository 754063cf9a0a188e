//! Store behaviour, written against the trait so every backend runs the same suite.

#![allow(clippy::unwrap_used)]

mod backend;
mod budgets;
mod environments;
mod identities;
mod placements;
mod queues;
mod transfer;
mod wasm_functions;

use std::sync::Arc;

use morel_core::{
    AppName, Digest, InstanceId, InstanceState, ReleaseStatus, ResourceStatus, Runtime,
};
use morel_store::*;

use backend::for_each_backend;

for_each_backend!(
    apps_and_releases_number_up,
    delete_app_removes_everything_it_owns,
    functions_instances_and_logs,
    blobs_keys_packages,
    bundle_bytes_are_shared_in_chunks_and_settings_are_set_once,
    concurrent_deploys_get_distinct_release_numbers,
);

pub(crate) fn key(name: &str) -> AppKey {
    AppKey::in_default(name.parse::<AppName>().unwrap())
}

pub(crate) fn digest(n: u8) -> Digest {
    Digest::from_sha256([n; 32])
}

async fn apps_and_releases_number_up(store: Arc<dyn Store>) {
    let app = key("hello");
    assert!(store.get_app(&app).await.unwrap().is_none());
    store.ensure_app(&app).await.unwrap();
    store.ensure_app(&app).await.unwrap();
    assert_eq!(store.list_apps().await.unwrap().len(), 1);
    let r1 = store
        .create_release(&app, "production", &digest(1), "{}", "{}")
        .await
        .unwrap();
    let r2 = store
        .create_release(&app, "production", &digest(2), "{}", "{}")
        .await
        .unwrap();
    assert_eq!((r1.number, r2.number), (1, 2));
    assert_eq!(r2.status, ReleaseStatus::Pending);
    store
        .set_release_status(&app, 2, ReleaseStatus::Failed, Some("pip failed"))
        .await
        .unwrap();
    let got = store.get_release(&app, 2).await.unwrap().unwrap();
    assert_eq!(got.status, ReleaseStatus::Failed);
    assert_eq!(got.error.as_deref(), Some("pip failed"));
    store.set_active_release(&app, Some(1)).await.unwrap();
    assert_eq!(
        store.get_app(&app).await.unwrap().unwrap().active_release,
        Some(1)
    );
    // Another app's numbering is independent.
    let other = key("other");
    store.ensure_app(&other).await.unwrap();
    assert_eq!(
        store
            .create_release(&other, "production", &digest(3), "{}", "{}")
            .await
            .unwrap()
            .number,
        1
    );
}

async fn delete_app_removes_everything_it_owns(store: Arc<dyn Store>) {
    let app = key("gone");
    let keep = key("kept");
    for a in [&app, &keep] {
        store.ensure_app(a).await.unwrap();
        store
            .create_release(a, "production", &digest(1), "{}", "{}")
            .await
            .unwrap();
        store
            .upsert_resource(&ResourceRow {
                app: a.clone(),
                name: "default".into(),
                runtime: Runtime::Python,
                config_hash: "h".into(),
                digest: digest(1),
                release: 1,
                status: ResourceStatus::Deployed,
                error: None,
                endpoint_url: "/x".into(),
                updated_at: 0,
            })
            .await
            .unwrap();
        store
            .append_logs(&[NewLogLine {
                app: a.clone(),
                ts: 1,
                stream: LogStream::Stdout,
                source: "i".into(),
                line: "hi".into(),
            }])
            .await
            .unwrap();
    }
    assert!(store.delete_app(&app).await.unwrap());
    assert!(!store.delete_app(&app).await.unwrap());
    assert!(store.list_releases(&app).await.unwrap().is_empty());
    assert!(store.list_resources(&app).await.unwrap().is_empty());
    assert!(store.read_logs(&app, 0, 0, 100).await.unwrap().is_empty());
    assert_eq!(store.list_releases(&keep).await.unwrap().len(), 1);
    assert_eq!(store.read_logs(&keep, 0, 0, 100).await.unwrap().len(), 1);
}

async fn functions_instances_and_logs(store: Arc<dyn Store>) {
    let app = key("fx");
    store.ensure_app(&app).await.unwrap();
    let f = |n: &str| FunctionRow {
        name: n.into(),
        resource: "default".into(),
        params: vec!["a".into(), "b".into()],
        is_async: true,
        http_method: None,
        http_path: None,
    };
    store
        .replace_functions(&app, "default", &[f("sum"), f("mul")])
        .await
        .unwrap();
    store
        .replace_functions(&app, "default", &[f("sum")])
        .await
        .unwrap();
    let fns = store.list_functions(&app).await.unwrap();
    assert_eq!(fns.len(), 1);
    assert_eq!(fns[0].params, vec!["a", "b"]);
    assert!(fns[0].is_async);

    let id = InstanceId::new();
    let mut row = InstanceRow {
        id,
        app: app.clone(),
        resource: "default".into(),
        release: 1,
        digest: digest(1),
        node: "local".into(),
        state: InstanceState::Launching,
        pid: Some(42),
        port: None,
        restarts: 0,
        last_error: None,
        started_at: 1,
        updated_at: 1,
    };
    store.upsert_instance(&row).await.unwrap();
    row.state = InstanceState::Ready;
    row.restarts = 2;
    store.upsert_instance(&row).await.unwrap();
    let listed = store.list_instances(Some(&app)).await.unwrap();
    assert_eq!(listed, vec![row.clone()]);
    store.delete_instance(id).await.unwrap();
    assert!(store.list_instances(None).await.unwrap().is_empty());

    let lines: Vec<_> = (0..10)
        .map(|i| NewLogLine {
            app: app.clone(),
            ts: 1000 + i,
            stream: LogStream::Stderr,
            source: "x".into(),
            line: format!("line {i}"),
        })
        .collect();
    store.append_logs(&lines).await.unwrap();
    let all = store.read_logs(&app, 0, 0, 100).await.unwrap();
    assert_eq!(all.len(), 10);
    let after = store.read_logs(&app, all[4].id, 0, 100).await.unwrap();
    assert_eq!(after[0].line, "line 5");
    assert_eq!(store.read_logs(&app, 0, 1008, 100).await.unwrap().len(), 2);
    // Keep the newest 3.
    store.prune_logs(&app, 3, 0).await.unwrap();
    let kept: Vec<_> = store
        .read_logs(&app, 0, 0, 100)
        .await
        .unwrap()
        .into_iter()
        .map(|l| l.line)
        .collect();
    assert_eq!(kept, vec!["line 7", "line 8", "line 9"]);
    // And drop by age.
    store.prune_logs(&app, 100, 1009).await.unwrap();
    assert_eq!(store.read_logs(&app, 0, 0, 100).await.unwrap().len(), 1);
}

async fn bundle_bytes_are_shared_in_chunks_and_settings_are_set_once(store: Arc<dyn Store>) {
    // 2.5 chunks of varied bytes, so a chunk out of order or missing changes the result.
    let bytes: Vec<u8> = (0..(5 << 19) + 7).map(|i: u32| (i % 251) as u8).collect();
    let d = digest(9);
    assert_eq!(store.get_blob_content(&d).await.unwrap(), None);
    store.put_blob_content(&d, &bytes).await.unwrap();
    // A second put (another server uploading the same bundle) keeps the first.
    store.put_blob_content(&d, b"other").await.unwrap();
    assert_eq!(store.get_blob_content(&d).await.unwrap(), Some(bytes));
    store.put_blob_content(&digest(10), b"").await.unwrap();
    assert_eq!(
        store.get_blob_content(&digest(10)).await.unwrap(),
        Some(Vec::new())
    );
    store.delete_blob_content(&d).await.unwrap();
    assert_eq!(store.get_blob_content(&d).await.unwrap(), None);

    assert_eq!(store.get_setting("admin").await.unwrap(), None);
    assert_eq!(
        store.put_setting_if_absent("admin", "first").await.unwrap(),
        "first"
    );
    assert_eq!(
        store
            .put_setting_if_absent("admin", "second")
            .await
            .unwrap(),
        "first",
        "the value recorded first stays"
    );
    assert_eq!(
        store.get_setting("admin").await.unwrap().as_deref(),
        Some("first")
    );
    store.set_setting("admin", "rotated").await.unwrap();
    assert_eq!(
        store.get_setting("admin").await.unwrap().as_deref(),
        Some("rotated")
    );
}

async fn blobs_keys_packages(store: Arc<dyn Store>) {
    let b = BlobRow {
        digest: digest(9),
        size: 10,
        signature: "k:sig".into(),
        key_id: "k".into(),
        created_at: 1,
    };
    store.put_blob(&b).await.unwrap();
    store.put_blob(&b).await.unwrap();
    assert_eq!(store.get_blob(&digest(9)).await.unwrap(), Some(b));
    assert!(store.get_blob(&digest(8)).await.unwrap().is_none());

    store
        .trust_key(&KeyRow {
            key_id: "k1".into(),
            public_key: "pk".into(),
            name: "local".into(),
            created_at: 1,
        })
        .await
        .unwrap();
    assert_eq!(store.list_keys().await.unwrap().len(), 1);
    assert!(store.remove_key("k1").await.unwrap());
    assert!(!store.remove_key("k1").await.unwrap());

    let app = key("pkg");
    store
        .put_package(&PackageRow {
            app: app.clone(),
            digest: digest(1),
            created_at: 1,
        })
        .await
        .unwrap();
    store
        .put_package(&PackageRow {
            app: app.clone(),
            digest: digest(2),
            created_at: 2,
        })
        .await
        .unwrap();
    assert_eq!(
        store.get_package(&app).await.unwrap().unwrap().digest,
        digest(2)
    );
    store.delete_package(&app).await.unwrap();
    assert!(store.get_package(&app).await.unwrap().is_none());
}

#[tokio::test]
async fn reopening_keeps_state_and_migrations_are_idempotent() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("morel.db");
    {
        let store = SqlStore::open_sqlite(&path).await.unwrap();
        store.ensure_app(&key("persist")).await.unwrap();
        store
            .create_release(&key("persist"), "production", &digest(1), "{\"a\":1}", "{}")
            .await
            .unwrap();
    }
    let store = SqlStore::open_sqlite(&path).await.unwrap();
    let r = store
        .get_release(&key("persist"), 1)
        .await
        .unwrap()
        .unwrap();
    assert_eq!(r.manifest_json, "{\"a\":1}");
}

async fn concurrent_deploys_get_distinct_release_numbers(store: Arc<dyn Store>) {
    let app = key("race");
    store.ensure_app(&app).await.unwrap();
    let tasks: Vec<_> = (0..8u8)
        .map(|i| {
            let store = store.clone();
            let app = app.clone();
            tokio::spawn(async move {
                store
                    .create_release(&app, "production", &digest(i), "{}", "{}")
                    .await
                    .unwrap()
                    .number
            })
        })
        .collect();
    let mut numbers = Vec::new();
    for t in tasks {
        numbers.push(t.await.unwrap());
    }
    numbers.sort();
    assert_eq!(numbers, (1..=8).collect::<Vec<i64>>());
}

#[tokio::test]
async fn postgres_starts_at_once_migrate_once_and_reopen_keeps_state() {
    let db = backend::ScratchDb::create().await;
    // Two servers starting together against one new database.
    let (a, b) = tokio::join!(
        SqlStore::connect_postgres(&db.url),
        SqlStore::connect_postgres(&db.url)
    );
    let (a, b) = (a.unwrap(), b.unwrap());
    let versions: Vec<i64> =
        sqlx::query_scalar("SELECT version FROM morel_migrations ORDER BY version")
            .fetch_all(a.pool())
            .await
            .unwrap();
    let mut unique = versions.clone();
    unique.dedup();
    assert_eq!(versions, unique, "each migration recorded once");
    assert!(
        versions.contains(&1) && versions.contains(&5),
        "{versions:?}"
    );
    a.ensure_app(&key("persist")).await.unwrap();
    a.create_release(&key("persist"), "production", &digest(1), "{\"a\":1}", "{}")
        .await
        .unwrap();
    // The other process sees it at once; a later start keeps it.
    assert_eq!(b.list_apps().await.unwrap().len(), 1);
    a.close().await;
    b.close().await;
    let c = SqlStore::connect_postgres(&db.url).await.unwrap();
    let r = c.get_release(&key("persist"), 1).await.unwrap().unwrap();
    assert_eq!(r.manifest_json, "{\"a\":1}");
    c.close().await;
}

#[tokio::test]
#[should_panic(
    expected = "PostgreSQL tests need a server, and none answers at postgres://postgres@127.0.0.1:1/test"
)]
async fn postgres_tests_fail_loudly_when_the_server_is_unreachable() {
    backend::ScratchDb::create_on("postgres://postgres@127.0.0.1:1/test").await;
}

#[tokio::test]
async fn a_bad_database_url_is_refused_with_its_reason() {
    let err = morel_store::open("mysql://db/x").await.err().unwrap();
    assert!(
        err.to_string().contains("unsupported database URL"),
        "{err}"
    );
    let err = morel_store::open("postgres://postgres@127.0.0.1:1/test")
        .await
        .err()
        .unwrap();
    assert!(err.to_string().contains("connect to PostgreSQL"), "{err}");
}

mod nodes {
    //! Node registry and leadership, on every backend.

    use std::sync::Arc;

    use morel_core::NodeState;
    use morel_store::*;

    use crate::backend::for_each_backend;

    for_each_backend!(nodes_register_heartbeat_and_are_lost_after_the_ttl);

    fn node(id: &str, at: i64) -> NodeRow {
        NodeRow {
            id: crate::node(id),
            address: format!("http://127.0.0.1:1/{id}"),
            capacity: 4,
            state: NodeState::Ready,
            registered_at: at,
            heartbeat_at: at,
        }
    }

    async fn nodes_register_heartbeat_and_are_lost_after_the_ttl(store: Arc<dyn Store>) {
        store.register_node(&node("a", 1_000)).await.unwrap();
        store.register_node(&node("b", 1_000)).await.unwrap();
        assert!(
            store
                .heartbeat_node(&crate::node("a"), 5_000)
                .await
                .unwrap()
        );
        assert!(
            !store
                .heartbeat_node(&crate::node("nobody"), 5_000)
                .await
                .unwrap()
        );
        // b's last heartbeat (1 s) is older than the cut-off (3 s): lost, and reported once.
        assert_eq!(
            store.mark_lost_nodes(3_000).await.unwrap(),
            vec![crate::node("b")]
        );
        assert!(store.mark_lost_nodes(3_000).await.unwrap().is_empty());
        let states: Vec<_> = store
            .list_nodes()
            .await
            .unwrap()
            .into_iter()
            .map(|n| (String::from(n.id), n.state, n.heartbeat_at))
            .collect();
        assert_eq!(
            states,
            vec![
                ("a".to_owned(), NodeState::Ready, 5_000),
                ("b".to_owned(), NodeState::Lost, 1_000)
            ]
        );
        // A lost node that heartbeats again is ready again; re-registering updates capacity.
        assert!(
            store
                .heartbeat_node(&crate::node("b"), 6_000)
                .await
                .unwrap()
        );
        let mut bigger = node("b", 7_000);
        bigger.capacity = 9;
        store.register_node(&bigger).await.unwrap();
        let b = store.list_nodes().await.unwrap().pop().unwrap();
        assert_eq!(
            (b.state, b.capacity, b.registered_at),
            (NodeState::Ready, 9, 1_000)
        );
    }

    #[tokio::test]
    async fn one_server_leads_and_another_takes_over_when_it_dies() {
        let db = crate::backend::ScratchDb::create().await;
        let a = SqlStore::connect_postgres(&db.url).await.unwrap();
        let b = SqlStore::connect_postgres(&db.url).await.unwrap();
        let mut lease = a
            .try_lead("scheduler")
            .await
            .unwrap()
            .expect("first one leads");
        assert!(
            b.try_lead("scheduler").await.unwrap().is_none(),
            "only one leader"
        );
        // Roles are independent.
        let other = b.try_lead("reconciler").await.unwrap();
        assert!(other.is_some());
        lease.check().await.unwrap();
        // The leader's process dies (its lock connection closes): the other takes over.
        drop(lease);
        let taken = crate::backend::wait_lease(&b, "scheduler").await;
        assert_eq!(taken.role(), "scheduler");
        assert!(a.try_lead("scheduler").await.unwrap().is_none());
        a.close().await;
        b.close().await;
    }

    #[tokio::test]
    async fn sqlite_always_leads() {
        let store = SqlStore::in_memory().await.unwrap();
        assert!(store.try_lead("scheduler").await.unwrap().is_some());
    }
}

/// A fixed execution id named by a short tag (ids are UUIDs; tests name them).
pub fn exec(tag: &str) -> morel_core::ExecutionId {
    tag_uuid(tag).parse().unwrap()
}

/// A fixed deploy id named by a short tag.
pub fn deploy(tag: &str) -> morel_core::DeployId {
    tag_uuid(tag).parse().unwrap()
}

/// A fixed instance (placement) id named by a short tag.
pub fn instance(tag: &str) -> morel_core::InstanceId {
    tag_uuid(tag).parse().unwrap()
}

/// A UUID whose last 12 hex digits spell `tag` (at most 6 bytes), so ids sort like tags.
fn tag_uuid(tag: &str) -> String {
    let hex: String = tag.bytes().map(|b| format!("{b:02x}")).collect();
    format!("00000000-0000-7000-8000-{hex:0<12}")
}

pub fn node(name: &str) -> morel_core::NodeId {
    name.parse().unwrap()
}
