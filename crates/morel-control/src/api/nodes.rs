//! The node registry's API, what `morel agent --join` talks to: register a node with its
//! capacity, heartbeat, and list nodes with their state (`ready`, or `lost` once silent for
//! the TTL). Behind the control API's token.

use axum::Json;
use axum::extract::{Path, State};
use axum::http::StatusCode;
use morel_core::NodeState;
use morel_store::NodeRow;
use serde::{Deserialize, Serialize};

use super::AppState;
use crate::ApiError;
use crate::extract::ApiJson;

/// Largest capacity a node may announce (instance slots).
const MAX_CAPACITY: i64 = 100_000;

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RegisterNode {
    /// The agent's node name: 1 to 63 of `a-z 0-9 - _ .`.
    pub id: String,
    /// Where servers reach the agent: `http://host:port` or `https://…`.
    pub address: String,
    pub capacity: i64,
}

#[derive(Debug, Serialize)]
pub struct NodeView {
    pub id: String,
    pub address: String,
    pub capacity: i64,
    pub state: NodeState,
    pub registered_at: i64,
    pub heartbeat_at: i64,
}

impl From<NodeRow> for NodeView {
    fn from(r: NodeRow) -> Self {
        NodeView {
            id: r.id,
            address: r.address,
            capacity: r.capacity,
            state: r.state,
            registered_at: r.registered_at,
            heartbeat_at: r.heartbeat_at,
        }
    }
}

fn check_id(id: &str) -> Result<(), ApiError> {
    let ok = (1..=63).contains(&id.len())
        && id
            .chars()
            .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || "-_.".contains(c));
    if ok {
        Ok(())
    } else {
        Err(ApiError::bad_request(format!(
            "invalid node id {id:?}: use 1 to 63 of a-z, 0-9, '-', '_', '.'"
        )))
    }
}

pub async fn register(
    State(st): State<AppState>,
    ApiJson(body): ApiJson<RegisterNode>,
) -> Result<Json<NodeView>, ApiError> {
    check_id(&body.id)?;
    if !(body.address.starts_with("http://") || body.address.starts_with("https://")) {
        return Err(ApiError::bad_request(format!(
            "invalid address {:?}: expected http://host:port",
            body.address
        )));
    }
    if !(1..=MAX_CAPACITY).contains(&body.capacity) {
        return Err(ApiError::bad_request(format!(
            "invalid capacity {}: expected 1 to {MAX_CAPACITY}",
            body.capacity
        )));
    }
    let now = morel_core::time::now_ms();
    let store = &st.deployer.store;
    store
        .register_node(&NodeRow {
            id: body.id.clone(),
            address: body.address,
            capacity: body.capacity,
            state: NodeState::Ready,
            registered_at: now,
            heartbeat_at: now,
        })
        .await?;
    tracing::info!(node = %body.id, "node registered");
    let row = store
        .list_nodes()
        .await?
        .into_iter()
        .find(|n| n.id == body.id)
        .ok_or_else(|| ApiError::not_found(format!("node {} vanished", body.id)))?;
    Ok(Json(row.into()))
}

pub async fn heartbeat(
    State(st): State<AppState>,
    Path(id): Path<String>,
) -> Result<StatusCode, ApiError> {
    check_id(&id)?;
    if st
        .deployer
        .store
        .heartbeat_node(&id, morel_core::time::now_ms())
        .await?
    {
        Ok(StatusCode::NO_CONTENT)
    } else {
        Err(ApiError::not_found(format!(
            "node {id} is not registered: register it first (POST /api/nodes)"
        )))
    }
}

pub async fn list(State(st): State<AppState>) -> Result<Json<Vec<NodeView>>, ApiError> {
    let nodes = st.deployer.store.list_nodes().await?;
    Ok(Json(nodes.into_iter().map(NodeView::from).collect()))
}
