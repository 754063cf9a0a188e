//! The node-loss watch on a real PostgreSQL shared by two "servers": exactly one (the leader)
//! marks silent nodes lost, and when it stops the other takes over.

use std::sync::Arc;
use std::time::Duration;

use morel_control::cluster::run_node_watch;
use morel_core::NodeState;
use morel_store::{NodeRow, SqlStore, Store};
use morel_test_support::postgres::ScratchDb;
use tokio::sync::mpsc;

fn silent_node(id: &str) -> NodeRow {
    let long_ago = morel_core::time::now_ms() - 60_000;
    NodeRow {
        id: id.parse().unwrap(),
        address: "http://127.0.0.1:1".into(),
        capacity: 2,
        state: NodeState::Ready,
        registered_at: long_ago,
        heartbeat_at: long_ago,
    }
}

type Reports = mpsc::UnboundedReceiver<Vec<String>>;

fn watcher(store: Arc<dyn Store>) -> (tokio::sync::watch::Sender<bool>, Reports) {
    let (tx, rx) = mpsc::unbounded_channel();
    let (stop_tx, stop) = tokio::sync::watch::channel(false);
    tokio::spawn(run_node_watch(
        store,
        Duration::from_secs(1),
        Duration::from_millis(100),
        move |lost| {
            let _ = tx.send(lost.into_iter().map(String::from).collect());
        },
        stop,
    ));
    (stop_tx, rx)
}

async fn next(rx: &mut Reports, who: &str) -> Vec<String> {
    tokio::time::timeout(Duration::from_secs(10), rx.recv())
        .await
        .unwrap_or_else(|_| panic!("{who} reported no lost node within 10 s"))
        .unwrap()
}

#[tokio::test(flavor = "multi_thread")]
async fn one_server_marks_lost_nodes_and_another_takes_over_when_it_stops() {
    let db = ScratchDb::create().await;
    let a: Arc<dyn Store> = Arc::new(SqlStore::connect_postgres(&db.url).await.unwrap());
    let b: Arc<dyn Store> = Arc::new(SqlStore::connect_postgres(&db.url).await.unwrap());

    a.register_node(&silent_node("n1")).await.unwrap();
    let (stop_a, mut from_a) = watcher(a.clone());
    assert_eq!(next(&mut from_a, "the first server").await, vec!["n1"]);

    // A second server joins; the first still leads, so it alone reports the next loss.
    let (_stop_b, mut from_b) = watcher(b.clone());
    b.register_node(&silent_node("n2")).await.unwrap();
    assert_eq!(next(&mut from_a, "the leader").await, vec!["n2"]);
    assert!(from_b.try_recv().is_err(), "a follower never acts");

    // The leader stops (its lease is dropped): the other server takes over.
    stop_a.send(true).unwrap();
    b.register_node(&silent_node("n3")).await.unwrap();
    assert_eq!(next(&mut from_b, "the second server").await, vec!["n3"]);
    let states: Vec<_> = b
        .list_nodes()
        .await
        .unwrap()
        .into_iter()
        .map(|n| n.state)
        .collect();
    assert_eq!(states, vec![NodeState::Lost; 3]);
}
