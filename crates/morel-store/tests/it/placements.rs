//! Placements (many machines): inserted by the scheduler, listed per node, reported on by the
//! node's agent only, deleted when moved.

use std::sync::Arc;

use morel_core::PlacementState;
use morel_store::{PlacementRow, Store};

use crate::backend::for_each_backend;
use crate::key;

for_each_backend!(placements_are_listed_per_node_and_reported_by_their_node_only);

fn row(id: &str, node: &str) -> PlacementRow {
    PlacementRow {
        id: crate::instance(id),
        app: key("shop"),
        release: 3,
        resource: "api".into(),
        node: crate::node(node),
        state: PlacementState::Placed,
        endpoint: None,
        error: None,
        created_at: 1,
        updated_at: 1,
    }
}

async fn placements_are_listed_per_node_and_reported_by_their_node_only(store: Arc<dyn Store>) {
    store.insert_placement(&row("p1", "a")).await.unwrap();
    store.insert_placement(&row("p2", "b")).await.unwrap();
    assert!(store.insert_placement(&row("p1", "c")).await.is_err());
    assert_eq!(store.list_placements(None).await.unwrap().len(), 2);
    let on_a = store
        .list_placements(Some(&crate::node("a")))
        .await
        .unwrap();
    assert_eq!(on_a, vec![row("p1", "a")]);

    // Another node cannot report on p1.
    assert!(
        !store
            .report_placement(
                crate::instance("p1"),
                &crate::node("b"),
                PlacementState::Ready,
                Some("http://b"),
                None
            )
            .await
            .unwrap()
    );
    assert!(
        store
            .report_placement(
                crate::instance("p1"),
                &crate::node("a"),
                PlacementState::Ready,
                Some("http://a:1"),
                None
            )
            .await
            .unwrap()
    );
    let p1 = store
        .list_placements(Some(&crate::node("a")))
        .await
        .unwrap()
        .remove(0);
    assert_eq!(p1.state, PlacementState::Ready);
    assert_eq!(p1.endpoint.as_deref(), Some("http://a:1"));
    assert_eq!(
        (p1.app, p1.release, p1.resource),
        (key("shop"), 3, "api".into())
    );

    store.delete_placement(crate::instance("p1")).await.unwrap();
    assert!(
        store
            .list_placements(Some(&crate::node("a")))
            .await
            .unwrap()
            .is_empty()
    );
    assert!(
        !store
            .report_placement(
                crate::instance("p1"),
                &crate::node("a"),
                PlacementState::Failed,
                None,
                Some("gone")
            )
            .await
            .unwrap()
    );
}
