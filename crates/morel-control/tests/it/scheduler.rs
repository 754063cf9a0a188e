//! Scheduling passes on a real store (SQLite in memory): instances of the active release are
//! spread within capacity, a lost node's instances move, a new release replaces the old
//! release's placements, and what does not fit is counted, not forced.

use std::collections::HashSet;
use std::sync::Arc;

use morel_control::scheduler::{Pass, schedule_once};
use morel_core::{AppName, Digest, NodeState, PlacementState, ReleaseStatus};
use morel_store::{AppKey, NodeRow, SqlStore, Store};

fn node(id: &str, capacity: i64, heartbeat_at: i64) -> NodeRow {
    NodeRow {
        id: id.parse().unwrap(),
        address: format!("http://{id}:7000"),
        capacity,
        state: NodeState::Ready,
        registered_at: heartbeat_at,
        heartbeat_at,
    }
}

/// The hello-python example's manifest with its resource wanting `instances`.
fn manifest(instances: u32) -> String {
    let dir = morel_test_support::example("hello-python");
    let mut m =
        morel_manifest::build_manifest(&dir, &morel_manifest::BuildOptions::default()).unwrap();
    for spec in m.resources.values_mut() {
        spec.workers_min = instances;
        spec.workers_max = instances;
    }
    serde_json::to_string(&m).unwrap()
}

async fn release(store: &dyn Store, app: &AppKey, instances: u32) -> i64 {
    store.ensure_app(app).await.unwrap();
    let r = store
        .create_release(
            app,
            "production",
            &Digest::from_sha256([7; 32]),
            &manifest(instances),
            "{}",
        )
        .await
        .unwrap();
    store.set_active_release(app, Some(r.number)).await.unwrap();
    r.number
}

async fn nodes_of(store: &dyn Store) -> Vec<(String, i64)> {
    let mut v: Vec<(String, i64)> = store
        .list_placements(None)
        .await
        .unwrap()
        .into_iter()
        .map(|p| (p.node.into(), p.release))
        .collect();
    v.sort();
    v
}

#[tokio::test]
async fn places_spreads_moves_off_lost_nodes_and_follows_the_active_release() {
    let store: Arc<dyn Store> = Arc::new(SqlStore::in_memory().await.unwrap());
    let now = morel_core::time::now_ms();
    for id in ["a", "b", "c"] {
        store.register_node(&node(id, 2, now)).await.unwrap();
    }
    let app = AppKey::in_default("shop".parse::<AppName>().unwrap());
    let v1 = release(&*store, &app, 2).await;

    let pass = schedule_once(&*store).await.unwrap();
    assert_eq!(
        pass,
        Pass {
            placed: 2,
            removed: 0,
            unplaced: 0
        }
    );
    let placed = nodes_of(&*store).await;
    let distinct: HashSet<&str> = placed.iter().map(|(n, _)| n.as_str()).collect();
    assert_eq!(distinct.len(), 2, "spread: {placed:?}");
    // A second pass changes nothing.
    assert_eq!(schedule_once(&*store).await.unwrap(), Pass::default());

    // The node of the first instance goes silent and is marked lost: its instance moves.
    let gone = placed[0].0.clone();
    store
        .register_node(&node(&gone, 2, now - 60_000))
        .await
        .unwrap();
    assert_eq!(
        store.mark_lost_nodes(now - 10_000).await.unwrap(),
        vec![gone.parse::<morel_core::NodeId>().unwrap()]
    );
    assert_eq!(
        schedule_once(&*store).await.unwrap(),
        Pass {
            placed: 1,
            removed: 1,
            unplaced: 0
        }
    );
    let placed = nodes_of(&*store).await;
    assert_eq!(placed.len(), 2);
    assert!(
        placed.iter().all(|(n, r)| *n != gone && *r == v1),
        "{placed:?}"
    );
    let distinct: HashSet<&str> = placed.iter().map(|(n, _)| n.as_str()).collect();
    assert_eq!(distinct.len(), 2, "still spread: {placed:?}");

    // A release being activated (`starting`) gets its instances next to the active one's.
    store.ensure_app(&app).await.unwrap();
    let v2 = store
        .create_release(
            &app,
            "production",
            &Digest::from_sha256([8; 32]),
            &manifest(2),
            "{}",
        )
        .await
        .unwrap()
        .number;
    store
        .set_release_status(&app, v2, ReleaseStatus::Starting, None)
        .await
        .unwrap();
    assert_eq!(
        schedule_once(&*store).await.unwrap(),
        Pass {
            placed: 2,
            removed: 0,
            unplaced: 0
        }
    );
    let placed = nodes_of(&*store).await;
    assert_eq!(
        placed.iter().filter(|(_, r)| *r == v1).count(),
        2,
        "{placed:?}"
    );
    assert_eq!(
        placed.iter().filter(|(_, r)| *r == v2).count(),
        2,
        "{placed:?}"
    );
    // Still starting (nothing ready yet): v1 stays active.
    assert_eq!(schedule_once(&*store).await.unwrap(), Pass::default());
    assert_eq!(
        store.get_app(&app).await.unwrap().unwrap().active_release,
        Some(v1)
    );
    // Its agents report ready: it becomes active, and the old release's placements go.
    for p in store.list_placements(None).await.unwrap() {
        if p.release == v2 {
            let ok = store
                .report_placement(
                    p.id,
                    &p.node,
                    PlacementState::Ready,
                    Some("http://x:1"),
                    None,
                )
                .await
                .unwrap();
            assert!(ok);
        }
    }
    assert_eq!(
        schedule_once(&*store).await.unwrap(),
        Pass {
            placed: 0,
            removed: 2,
            unplaced: 0
        }
    );
    assert_eq!(
        store.get_app(&app).await.unwrap().unwrap().active_release,
        Some(v2)
    );
    let statuses: Vec<ReleaseStatus> = store
        .list_releases(&app)
        .await
        .unwrap()
        .iter()
        .map(|r| r.status)
        .collect();
    assert_eq!(
        statuses,
        vec![ReleaseStatus::Superseded, ReleaseStatus::Ready]
    );

    // A new release that wants 5 instances: the old placements go, 4 fit on the two ready
    // nodes (capacity 2 each), one does not.
    let v3 = release(&*store, &app, 5).await;
    assert_eq!(
        schedule_once(&*store).await.unwrap(),
        Pass {
            placed: 4,
            removed: 2,
            unplaced: 1
        }
    );
    let placed = nodes_of(&*store).await;
    assert_eq!(placed.len(), 4);
    assert!(
        placed.iter().all(|(n, r)| *n != gone && *r == v3),
        "{placed:?}"
    );

    // The app is deleted: its placements go.
    store.delete_app(&app).await.unwrap();
    assert_eq!(
        schedule_once(&*store).await.unwrap(),
        Pass {
            placed: 0,
            removed: 4,
            unplaced: 0
        }
    );
    assert!(nodes_of(&*store).await.is_empty());
}

#[tokio::test]
async fn a_release_that_does_not_fit_the_budget_is_failed_and_placed_nowhere() {
    let store: Arc<dyn Store> = Arc::new(SqlStore::in_memory().await.unwrap());
    let now = morel_core::time::now_ms();
    for id in ["a", "b", "c"] {
        store.register_node(&node(id, 4, now)).await.unwrap();
    }
    let app = AppKey::in_default("web".parse::<AppName>().unwrap());
    release(&*store, &app, 2).await;
    store
        .put_budget(&morel_store::BudgetRow {
            app: app.clone(),
            max_instances: Some(3),
            cpu_millis: None,
            memory_mb: None,
            scale_min: None,
            scale_max: None,
            updated_at: now,
        })
        .await
        .unwrap();
    assert_eq!(schedule_once(&*store).await.unwrap().placed, 2);

    // v2 wants 2 more beside the 2 running: 4 > 3, so it is failed, with the reason.
    let v2 = store
        .create_release(
            &app,
            "production",
            &Digest::from_sha256([9; 32]),
            &manifest(2),
            "{}",
        )
        .await
        .unwrap()
        .number;
    store
        .set_release_status(&app, v2, ReleaseStatus::Starting, None)
        .await
        .unwrap();
    assert_eq!(schedule_once(&*store).await.unwrap(), Pass::default());
    let r = store.get_release(&app, v2).await.unwrap().unwrap();
    assert_eq!(r.status, ReleaseStatus::Failed);
    let err = r.error.unwrap_or_default();
    assert!(
        err.contains("budget") && err.contains("max_instances is 3"),
        "{err}"
    );
    assert!(
        store
            .list_placements(None)
            .await
            .unwrap()
            .iter()
            .all(|p| p.release != v2),
        "nothing of v2 is placed"
    );

    // With room for both colours, the next release is placed.
    let v3 = store
        .create_release(
            &app,
            "production",
            &Digest::from_sha256([10; 32]),
            &manifest(1),
            "{}",
        )
        .await
        .unwrap()
        .number;
    store
        .set_release_status(&app, v3, ReleaseStatus::Starting, None)
        .await
        .unwrap();
    assert_eq!(schedule_once(&*store).await.unwrap().placed, 1);
}
