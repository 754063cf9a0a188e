//! Building blocks of Morel on many machines (the `morel server` / `morel agent` roles):
//! - [`place`]: where new instances of a resource go — ready nodes with free capacity, spread
//!   so a resource's instances land on different nodes first;
//! - [`run_node_watch`]: the leader-only loop that marks nodes `lost` once their agent missed
//!   heartbeats for the TTL. Every server runs it; a leadership lease
//!   ([`morel_store::Store::try_lead`]) makes exactly one of them act, and another takes over
//!   when that one dies. Everything works by polling (no NOTIFY needed).

use std::collections::HashMap;
use std::sync::Arc;
use std::time::Duration;

use morel_core::{NodeId, NodeState};
use morel_store::{NodeRow, Store};

/// How long a node may go without a heartbeat before it is marked lost.
pub const DEFAULT_NODE_TTL: Duration = Duration::from_secs(10);

/// The leadership role of the node-loss watch.
pub const NODE_WATCH_ROLE: &str = "node-watch";

#[derive(Debug, thiserror::Error, PartialEq, Eq)]
#[error("no capacity: placed {placed} of {wanted} instances (every ready node is full)")]
pub struct NoCapacity {
    pub placed: usize,
    pub wanted: usize,
}

/// Picks a node for each of `wanted` new instances of one resource.
///
/// `used` counts every instance already on a node (any app); `same` counts this resource's
/// instances per node. Each pick takes, among ready nodes with a free slot, the one with the
/// fewest instances of this resource, then the most free slots, then the smallest id (so the
/// result is deterministic). On too little capacity it places nothing and says how far it got.
pub fn place(
    nodes: &[NodeRow],
    used: &HashMap<NodeId, i64>,
    same: &HashMap<NodeId, i64>,
    wanted: usize,
) -> Result<Vec<NodeId>, NoCapacity> {
    let mut load: Vec<(&NodeRow, i64, i64)> = nodes
        .iter()
        .filter(|n| n.state == NodeState::Ready)
        .map(|n| {
            (
                n,
                used.get(&n.id).copied().unwrap_or(0),
                same.get(&n.id).copied().unwrap_or(0),
            )
        })
        .collect();
    let mut picks = Vec::with_capacity(wanted);
    for placed in 0..wanted {
        let best = load
            .iter_mut()
            .filter(|(n, used, _)| *used < n.capacity)
            .min_by(|a, b| {
                (a.2, b.0.capacity - b.1, &a.0.id).cmp(&(b.2, a.0.capacity - a.1, &b.0.id))
            });
        let Some((node, used, same)) = best else {
            return Err(NoCapacity { placed, wanted });
        };
        *used += 1;
        *same += 1;
        picks.push(node.id.clone());
    }
    Ok(picks)
}

/// Runs until `stop` turns true: waits to lead [`NODE_WATCH_ROLE`], then every `interval`
/// marks lost the nodes silent for longer than `ttl`, calling `on_lost` with their ids. If the
/// lease is lost (its connection died), it goes back to waiting.
pub async fn run_node_watch<F>(
    store: Arc<dyn Store>,
    ttl: Duration,
    interval: Duration,
    mut on_lost: F,
    mut stop: tokio::sync::watch::Receiver<bool>,
) where
    F: FnMut(Vec<NodeId>) + Send,
{
    let ttl_ms = i64::try_from(ttl.as_millis()).unwrap_or(i64::MAX);
    let mut lease = None;
    loop {
        if *stop.borrow() {
            return;
        }
        if lease.is_none() {
            match store.try_lead(NODE_WATCH_ROLE).await {
                Ok(Some(l)) => {
                    tracing::info!(role = NODE_WATCH_ROLE, "this server now leads");
                    lease = Some(l);
                }
                Ok(None) => {}
                Err(e) => tracing::warn!(error = %e, "trying to lead the node watch"),
            }
        }
        if let Some(l) = lease.as_mut() {
            if let Err(e) = l.check().await {
                tracing::warn!(error = %e, "lost the node-watch lease");
                lease = None;
            } else {
                let cutoff = morel_core::time::now_ms().saturating_sub(ttl_ms);
                match store.mark_lost_nodes(cutoff).await {
                    Ok(lost) if !lost.is_empty() => {
                        tracing::warn!(nodes = ?lost, "nodes missed their heartbeats: lost");
                        on_lost(lost);
                    }
                    Ok(_) => {}
                    Err(e) => tracing::warn!(error = %e, "marking lost nodes"),
                }
            }
        }
        tokio::select! {
            _ = tokio::time::sleep(interval) => {}
            _ = stop.changed() => {}
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn node(id: &str, capacity: i64) -> NodeRow {
        NodeRow {
            id: id.parse().unwrap(),
            address: String::new(),
            capacity,
            state: NodeState::Ready,
            registered_at: 0,
            heartbeat_at: 0,
        }
    }

    fn counts(pairs: &[(&str, i64)]) -> HashMap<NodeId, i64> {
        pairs
            .iter()
            .map(|(k, v)| (k.parse().unwrap(), *v))
            .collect()
    }

    fn ids(names: &[&str]) -> Vec<NodeId> {
        names.iter().map(|n| n.parse().unwrap()).collect()
    }

    #[test]
    fn spreads_a_resource_across_nodes_before_doubling_up() {
        let nodes = [node("a", 4), node("b", 4), node("c", 4)];
        let picks = place(&nodes, &counts(&[]), &counts(&[]), 3).unwrap();
        let mut sorted = picks.clone();
        sorted.sort();
        assert_eq!(sorted, ids(&["a", "b", "c"]));
        // With one already on b, two more go to a and c.
        let picks = place(&nodes, &counts(&[("b", 1)]), &counts(&[("b", 1)]), 2).unwrap();
        assert_eq!(picks, ids(&["a", "c"]));
    }

    #[test]
    fn prefers_free_capacity_and_never_exceeds_it() {
        let nodes = [node("a", 2), node("b", 3)];
        // Other apps fill a: everything goes to b, then capacity runs out.
        let used = counts(&[("a", 2)]);
        assert_eq!(
            place(&nodes, &used, &counts(&[]), 2).unwrap(),
            ids(&["b", "b"])
        );
        assert_eq!(
            place(&nodes, &used, &counts(&[]), 4),
            Err(NoCapacity {
                placed: 3,
                wanted: 4
            })
        );
    }

    #[test]
    fn lost_nodes_get_nothing() {
        let mut lost = node("a", 10);
        lost.state = NodeState::Lost;
        let nodes = [lost, node("b", 10)];
        assert_eq!(
            place(&nodes, &counts(&[]), &counts(&[]), 2).unwrap(),
            ids(&["b", "b"])
        );
        assert_eq!(
            place(&[node("x", 0)], &counts(&[]), &counts(&[]), 1),
            Err(NoCapacity {
                placed: 0,
                wanted: 1
            })
        );
    }
}
