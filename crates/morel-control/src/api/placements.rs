//! The placements API (many machines): what an agent runs (`GET /api/nodes/{id}/placements`,
//! with each release's bundle digest, environment and config), its reports
//! (`POST /api/nodes/{id}/placements/{placement}`), the whole list (`GET /api/placements`), and
//! bundle download by digest for agents (`GET /api/bundles/{digest}/content`, signature in
//! the `x-morel-signature` header). Behind the control API's token.

use std::collections::{BTreeMap, HashMap};

use axum::Json;
use axum::body::Body;
use axum::extract::{Path, State};
use axum::http::{HeaderValue, StatusCode, header};
use axum::response::Response;
use morel_core::{Digest, InstanceId, NodeId, PlacementState};
use morel_store::PlacementRow;
use serde::{Deserialize, Serialize};

use super::AppState;
use crate::ApiError;
use crate::extract::ApiJson;

#[derive(Debug, Serialize, utoipa::ToSchema)]
pub struct PlacementView {
    pub id: String,
    pub namespace: String,
    pub app: String,
    pub release: i64,
    pub resource: String,
    pub node: String,
    /// `placed`, `ready` or `failed`, as the agent last reported.
    #[schema(value_type = String)]
    pub state: PlacementState,
    pub endpoint: Option<String>,
    pub error: Option<String>,
    pub created_at: i64,
    pub updated_at: i64,
}

impl From<PlacementRow> for PlacementView {
    fn from(r: PlacementRow) -> Self {
        PlacementView {
            id: r.id.to_string(),
            namespace: r.app.namespace.as_str().to_owned(),
            app: r.app.name.as_str().to_owned(),
            release: r.release,
            resource: r.resource,
            node: r.node.into(),
            state: r.state,
            endpoint: r.endpoint,
            error: r.error,
            created_at: r.created_at,
            updated_at: r.updated_at,
        }
    }
}

/// A placement as its agent needs it: what to fetch and how to start it.
#[derive(Debug, Serialize, utoipa::ToSchema)]
pub struct Assignment {
    #[serde(flatten)]
    pub placement: PlacementView,
    pub env: String,
    #[schema(value_type = String)]
    pub digest: Digest,
    pub config: BTreeMap<String, String>,
    /// The uid (and gid) the app's workloads run as on every machine, recorded in the store;
    /// an agent that is not root runs them as itself.
    pub uid: u32,
}

#[derive(Debug, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct Report {
    #[schema(value_type = String)]
    pub state: PlacementState,
    #[serde(default)]
    pub endpoint: Option<String>,
    #[serde(default)]
    pub error: Option<String>,
}

#[utoipa::path(
    get,
    path = "/api/placements",
    operation_id = "list_placements",
    tag = "nodes",
    summary = "Every placement: which instance of which release runs on which node, and its state",
    responses(
        (status = 200, description = "the placements", body = Vec<PlacementView>),
        (status = 401, description = "missing or wrong token", body = crate::openapi::ErrorBody),
    ),
    security(("token" = [])),
)]
pub async fn list(State(st): State<AppState>) -> Result<Json<Vec<PlacementView>>, ApiError> {
    let rows = st.deployer.store.list_placements(None).await?;
    Ok(Json(rows.into_iter().map(PlacementView::from).collect()))
}

#[utoipa::path(
    get,
    path = "/api/nodes/{id}/placements",
    operation_id = "node_placements",
    tag = "nodes",
    summary = "What an agent runs: its placements with each release's bundle digest, environment and config",
    params(("id" = String, Path, description = "node id")),
    responses(
        (status = 200, description = "the node's placements", body = Vec<Assignment>),
        (status = 401, description = "missing or wrong token", body = crate::openapi::ErrorBody),
    ),
    security(("token" = [])),
)]
pub async fn for_node(
    State(st): State<AppState>,
    Path(node): Path<String>,
) -> Result<Json<Vec<Assignment>>, ApiError> {
    let store = &st.deployer.store;
    let node: NodeId = node
        .parse()
        .map_err(|e: morel_core::NameError| ApiError::bad_request(e.to_string()))?;
    let rows = store.list_placements(Some(&node)).await?;
    let mut releases = HashMap::new();
    let mut uids = HashMap::new();
    let mut configs: HashMap<_, BTreeMap<String, String>> = HashMap::new();
    let (first, count) = morel_runtime_process::Sandbox::current().uid_range();
    let mut out = Vec::with_capacity(rows.len());
    for row in rows {
        let k = (row.app.clone(), row.release);
        if !releases.contains_key(&k) {
            let r = store.get_release(&row.app, row.release).await?;
            releases.insert(k.clone(), r);
        }
        // A release deleted meanwhile: the scheduler removes its placements next pass.
        let Some(Some(release)) = releases.get(&k) else {
            continue;
        };
        let uid = match uids.get(&row.app) {
            Some(uid) => *uid,
            None => {
                let uid = store.app_uid(&row.app, first, count).await?;
                uids.insert(row.app.clone(), uid);
                uid
            }
        };
        // The environment's secrets go with the config, opened here: only to the agent the
        // app's placement is on, over the authenticated API.
        let config = match configs.get(&k) {
            Some(c) => c,
            None => {
                let plain = serde_json::from_str(&release.config_json).unwrap_or_default();
                let (config, _) = st
                    .deployer
                    .with_secrets(release, plain)
                    .await
                    .map_err(|e| ApiError::internal("opening an app's secrets", &e))?;
                configs.entry(k.clone()).or_insert(config)
            }
        };
        out.push(Assignment {
            uid,
            env: release.env.clone(),
            digest: release.digest.clone(),
            config: config.clone(),
            placement: row.into(),
        });
    }
    Ok(Json(out))
}

#[utoipa::path(
    post,
    path = "/api/nodes/{id}/placements/{placement}",
    operation_id = "report_placement",
    tag = "nodes",
    summary = "An agent reports a placement's state (and, when ready, the endpoint serving it)",
    params(
        ("id" = String, Path, description = "node id"),
        ("placement" = String, Path, description = "placement id"),
    ),
    request_body = Report,
    responses(
        (status = 204, description = "recorded"),
        (status = 400, description = "an endpoint that is not an http(s) URL", body = crate::openapi::ErrorBody),
        (status = 401, description = "missing or wrong token", body = crate::openapi::ErrorBody),
        (status = 404, description = "the placement is not (any more) on this node: the agent stops it", body = crate::openapi::ErrorBody),
        (status = 415, description = "the body is not sent as JSON", body = crate::openapi::ErrorBody),
        (status = 422, description = "the body does not fit the schema", body = crate::openapi::ErrorBody),
    ),
    security(("token" = [])),
)]
pub async fn report(
    State(st): State<AppState>,
    Path((node, id)): Path<(String, String)>,
    ApiJson(body): ApiJson<Report>,
) -> Result<StatusCode, ApiError> {
    if let Some(ep) = &body.endpoint
        && !(ep.starts_with("http://") || ep.starts_with("https://"))
    {
        return Err(ApiError::bad_request(format!(
            "invalid endpoint {ep:?}: expected http://host:port"
        )));
    }
    let gone = || {
        ApiError::not_found(format!(
            "placement {id} is not on node {node} (any more): stop it"
        ))
    };
    let (Ok(placement), Ok(node_id)) = (id.parse::<InstanceId>(), node.parse::<NodeId>()) else {
        return Err(gone());
    };
    let found = st
        .deployer
        .store
        .report_placement(
            placement,
            &node_id,
            body.state,
            body.endpoint.as_deref(),
            body.error.as_deref(),
        )
        .await?;
    if found {
        Ok(StatusCode::NO_CONTENT)
    } else {
        Err(gone())
    }
}

#[utoipa::path(
    get,
    path = "/api/bundles/{digest}/content",
    tag = "nodes",
    summary = "A bundle's bytes by digest, for agents; its signature is in the X-Morel-Signature header",
    params(("digest" = String, Path, description = "the bundle's sha256 digest")),
    responses(
        (status = 200, description = "the bundle (a zip)", content_type = "application/zip", body = Vec<u8>),
        (status = 400, description = "not a digest", body = crate::openapi::ErrorBody),
        (status = 401, description = "missing or wrong token", body = crate::openapi::ErrorBody),
        (status = 404, description = "the server does not have the bundle", body = crate::openapi::ErrorBody),
    ),
    security(("token" = [])),
)]
pub async fn bundle_content(
    State(st): State<AppState>,
    Path(digest): Path<String>,
) -> Result<Response, ApiError> {
    let digest = digest
        .parse::<Digest>()
        .map_err(|e| ApiError::bad_request(e.to_string()))?;
    st.deployer.ensure_bundle(&digest).await?;
    let (bytes, sig) = st
        .deployer
        .blobs
        .read(&digest)
        .await
        .map_err(|_| ApiError::not_found(format!("bundle {digest} is not on this server")))?;
    let mut resp = Response::new(Body::from(bytes));
    resp.headers_mut().insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("application/zip"),
    );
    let sig = HeaderValue::from_str(sig.trim())
        .map_err(|e| ApiError::internal("reading a bundle signature", &e))?;
    resp.headers_mut()
        .insert(super::apps::SIGNATURE_HEADER, sig);
    Ok(resp)
}
