//! The node registry's API, what `morel agent --join` talks to: register a node with its
//! capacity, heartbeat, and list nodes with their state (`ready`, or `lost` once silent for
//! the TTL). Behind the control API's token.

use axum::Json;
use axum::extract::{Path, State};
use axum::http::StatusCode;
use morel_core::{NodeId, NodeState};
use morel_store::NodeRow;
use serde::{Deserialize, Serialize};

use super::AppState;
use crate::ApiError;
use crate::extract::ApiJson;

/// Largest capacity a node may announce (instance slots).
const MAX_CAPACITY: i64 = 100_000;

#[derive(Debug, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct RegisterNode {
    /// The agent's node name: 1 to 63 of `a-z 0-9 - _ .`.
    pub id: String,
    /// Where servers reach the agent: `http://host:port` or `https://…`.
    pub address: String,
    /// How many instances the node may run: 1 to 100000.
    pub capacity: i64,
}

#[derive(Debug, Serialize, utoipa::ToSchema)]
pub struct NodeView {
    pub id: String,
    pub address: String,
    pub capacity: i64,
    /// `ready`, or `lost` after the heartbeat TTL (10 s) without a heartbeat.
    #[schema(value_type = String, example = "ready")]
    pub state: NodeState,
    pub registered_at: i64,
    pub heartbeat_at: i64,
}

impl From<NodeRow> for NodeView {
    fn from(r: NodeRow) -> Self {
        NodeView {
            id: r.id.into(),
            address: r.address,
            capacity: r.capacity,
            state: r.state,
            registered_at: r.registered_at,
            heartbeat_at: r.heartbeat_at,
        }
    }
}

fn check_id(id: &str) -> Result<NodeId, ApiError> {
    id.parse()
        .map_err(|e: morel_core::NameError| ApiError::bad_request(e.to_string()))
}

#[utoipa::path(
    post,
    path = "/api/nodes",
    tag = "nodes",
    summary = "Register a node (or update its address and capacity): ready, heartbeat now",
    request_body = RegisterNode,
    responses(
        (status = 200, description = "the node as registered", body = NodeView),
        (status = 400, description = "bad id, address or capacity, named in the body", body = crate::openapi::ErrorBody),
        (status = 401, description = "missing or wrong token", body = crate::openapi::ErrorBody),
    ),
    security(("token" = [])),
)]
pub async fn register(
    State(st): State<AppState>,
    ApiJson(body): ApiJson<RegisterNode>,
) -> Result<Json<NodeView>, ApiError> {
    let id = check_id(&body.id)?;
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
            id: id.clone(),
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
        .find(|n| n.id == id)
        .ok_or_else(|| ApiError::not_found(format!("node {} vanished", body.id)))?;
    Ok(Json(row.into()))
}

#[utoipa::path(
    post,
    path = "/api/nodes/{id}/heartbeat",
    tag = "nodes",
    summary = "Record a node's heartbeat (a lost node becomes ready again)",
    params(("id" = String, Path, description = "node id")),
    responses(
        (status = 204, description = "recorded"),
        (status = 400, description = "bad node id", body = crate::openapi::ErrorBody),
        (status = 401, description = "missing or wrong token", body = crate::openapi::ErrorBody),
        (status = 404, description = "the node is not registered", body = crate::openapi::ErrorBody),
    ),
    security(("token" = [])),
)]
pub async fn heartbeat(
    State(st): State<AppState>,
    Path(id): Path<String>,
) -> Result<StatusCode, ApiError> {
    let node = check_id(&id)?;
    if st
        .deployer
        .store
        .heartbeat_node(&node, morel_core::time::now_ms())
        .await?
    {
        Ok(StatusCode::NO_CONTENT)
    } else {
        Err(ApiError::not_found(format!(
            "node {id} is not registered: register it first (POST /api/nodes)"
        )))
    }
}

#[utoipa::path(
    get,
    path = "/api/nodes",
    tag = "nodes",
    summary = "List nodes with their state, capacity and last heartbeat",
    responses(
        (status = 200, description = "nodes, by id", body = Vec<NodeView>),
        (status = 401, description = "missing or wrong token", body = crate::openapi::ErrorBody),
    ),
    security(("token" = [])),
)]
pub async fn list(State(st): State<AppState>) -> Result<Json<Vec<NodeView>>, ApiError> {
    let nodes = st.deployer.store.list_nodes().await?;
    Ok(Json(nodes.into_iter().map(NodeView::from).collect()))
}

/// Most lines one shipment may carry; an agent sends more in several.
pub const MAX_SHIPPED_LINES: usize = 1000;
/// Longest line kept; longer ones are cut (on a character boundary).
const MAX_LINE: usize = 16 << 10;

/// One line of an agent-run instance's output, as the agent ships it.
#[derive(Debug, Deserialize, Serialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct ShippedLine {
    pub namespace: String,
    pub app: String,
    /// Milliseconds since the epoch, when the agent read the line.
    pub ts: i64,
    /// `stdout`, `stderr` or `event`.
    pub stream: String,
    /// The instance id, or `platform` for events.
    pub source: String,
    pub line: String,
}

#[derive(Debug, Serialize, utoipa::ToSchema)]
pub struct ShippedLogs {
    /// Lines recorded.
    pub accepted: usize,
    /// Lines of apps that have no placement on this node (dropped).
    pub refused: usize,
}

#[utoipa::path(
    post,
    path = "/api/nodes/{id}/logs",
    tag = "nodes",
    summary = "An agent ships its instances' output, so `morel logs` shows it from any server",
    params(("id" = String, Path, description = "node id")),
    request_body = Vec<ShippedLine>,
    responses(
        (status = 200, description = "recorded", body = ShippedLogs),
        (status = 400, description = "bad node id, line or too many lines", body = crate::openapi::ErrorBody),
        (status = 401, description = "missing or wrong token", body = crate::openapi::ErrorBody),
    ),
    security(("token" = [])),
)]
pub async fn ship_logs(
    State(st): State<AppState>,
    Path(id): Path<String>,
    ApiJson(lines): ApiJson<Vec<ShippedLine>>,
) -> Result<Json<ShippedLogs>, ApiError> {
    let node = check_id(&id)?;
    if lines.len() > MAX_SHIPPED_LINES {
        return Err(ApiError::bad_request(format!(
            "{} lines in one shipment: send at most {MAX_SHIPPED_LINES}",
            lines.len()
        )));
    }
    let store = &st.deployer.store;
    // Only apps placed on this node: a node cannot write into another app's log.
    let placed: std::collections::HashSet<morel_store::AppKey> = store
        .list_placements(Some(&node))
        .await?
        .into_iter()
        .map(|p| p.app)
        .collect();
    let mut out = Vec::with_capacity(lines.len());
    let mut refused = 0;
    for l in lines {
        let app = morel_store::AppKey {
            namespace: l
                .namespace
                .parse()
                .map_err(|e: morel_core::NameError| ApiError::bad_request(e.to_string()))?,
            name: l
                .app
                .parse()
                .map_err(|e: morel_core::NameError| ApiError::bad_request(e.to_string()))?,
        };
        let stream = morel_store::LogStream::parse(&l.stream).ok_or_else(|| {
            ApiError::bad_request(format!(
                "invalid stream {:?}: expected stdout, stderr or event",
                l.stream
            ))
        })?;
        if !placed.contains(&app) {
            refused += 1;
            continue;
        }
        let mut line = l.line;
        if line.len() > MAX_LINE {
            let mut cut = MAX_LINE;
            while !line.is_char_boundary(cut) {
                cut -= 1;
            }
            line.truncate(cut);
        }
        out.push(morel_store::NewLogLine {
            app,
            ts: l.ts,
            stream,
            source: l.source.chars().take(64).collect(),
            line,
        });
    }
    let accepted = out.len();
    st.deployer.logs.append_shipped(out);
    Ok(Json(ShippedLogs { accepted, refused }))
}
