//! The OpenAPI document of Morel's HTTP API, generated from the handlers' `#[utoipa::path]`
//! attributes and served at `GET /api/openapi.json`. A copy is checked in at
//! `docs/openapi.json`, so an API change shows in review; a test fails when the two differ,
//! and another when the router serves a route the document lacks.
//!
//! Adding a route: put `#[utoipa::path(...)]` on its handler (copy a neighbour's) and add the
//! handler to the `paths(...)` list below: one line. Then regenerate the checked-in copy:
//! `MOREL_UPDATE_OPENAPI=1 cargo nextest run -p morel-control -E 'test(openapi)'`.

use std::sync::OnceLock;

use axum::http::{HeaderValue, header};
use axum::response::{IntoResponse, Response};
use utoipa::openapi::security::{Http, HttpAuthScheme, SecurityScheme};
use utoipa::{Modify, OpenApi};

pub use morel_gateway::ErrorBody;

use crate::api::{
    apps, compat, environments, functions, manifest, nodes, observe, placements, services,
};
use crate::deploy::Plan;
use crate::jobs;
use crate::views::{
    AppDetail, AppSummary, AppUrls, FunctionView, InstanceView, LogView, ReleaseView, ResourceView,
    RouteView,
};

#[derive(OpenApi)]
#[openapi(
    info(
        title = "Morel",
        description = "The HTTP API of Morel, a self-hosted serverless platform. \
            Routes marked with the `token` security scheme need `Authorization: Bearer <admin token>` \
            (printed by `morel up`, stored in `STATE/admin.token`). The call path, async runs, \
            readiness and this document need none. Besides the routes listed, a manifest's HTTP \
            routes are served at `/{app}{path}` (or `/{app}@{env}{path}`) with the request body as \
            the function's arguments, answering like the call path."
    ),
    paths(
        // Morel's own API (what the CLI and the dashboard use).
        apps::bundle_exists,
        apps::put_bundle,
        apps::list_apps,
        apps::get_app,
        apps::delete_app,
        apps::list_releases,
        apps::create_release,
        apps::get_release,
        apps::get_manifest,
        manifest::bare_manifest,
        apps::logs,
        apps::rollback,
        apps::plan,
        apps::list_keys,
        apps::trust_key,
        apps::remove_key,
        // HTTP services: budget, scale, instances.
        services::get_budget,
        services::put_budget,
        services::put_scale,
        services::instances,
        // Environments and git deploys (seed 003).
        environments::create_deploy,
        environments::get_deploy,
        environments::list_environments,
        environments::remove_environment,
        environments::set_config,
        environments::list_secrets,
        environments::set_secret,
        environments::remove_secret,
        environments::put_certificate,
        observe::function_executions,
        observe::metrics,
        observe::system,
        jobs::run,
        jobs::get_execution,
        jobs::cancel,
        openapi_json,
        // Many machines: the node registry.
        nodes::register,
        nodes::list,
        nodes::heartbeat,
        nodes::ship_logs,
        placements::list,
        placements::for_node,
        placements::report,
        placements::bundle_content,
        // Seed 001: compiled functions.
        functions::list,
        functions::create,
        functions::get,
        functions::delete,
        functions::execute,
        functions::executions,
        functions::execution,
        // Seed 000: the compatible API.
        compat::readiness,
        compat::validate,
        compat::deploy_enabled,
        compat::refresh_token,
        compat::list_subscriptions,
        compat::list_subscriptions_deploys,
        compat::package_create,
        compat::branch_list,
        compat::file_list,
        compat::repository_add,
        compat::deploy_create,
        compat::deploy_delete,
        compat::deploy_logs,
        compat::inspect,
    ),
    components(schemas(
        ErrorBody,
        AppSummary,
        AppUrls,
        RouteView,
        AppDetail,
        ReleaseView,
        ResourceView,
        FunctionView,
        InstanceView,
        LogView,
        Plan,
        observe::FunctionCalls,
        observe::CallView,
        observe::SystemView,
        observe::ProtectionView,
        nodes::RegisterNode,
        nodes::NodeView,
        nodes::ShippedLine,
        nodes::ShippedLogs,
        placements::PlacementView,
        placements::Assignment,
        placements::Report,
    )),
    modifiers(&TokenAuth),
    tags(
        (name = "apps", description = "Apps, their resources, functions and recent calls"),
        (name = "releases", description = "Releases: deploy, plan, rollback"),
        (name = "bundles", description = "Signed bundle uploads"),
        (name = "logs", description = "App logs and platform events"),
        (name = "keys", description = "Trusted signing keys"),
        (name = "services", description = "HTTP services: budget, scale and instances"),
        (name = "environments", description = "Environments, git deploys, config, secrets and certificates"),
        (name = "calls", description = "The public call path and async runs"),
        (name = "functions", description = "Seed 001: compiled (wasm) functions"),
        (name = "compat", description = "Seed 000: the compatible deploy API"),
        (name = "observability", description = "Metrics and this document"),
        (name = "nodes", description = "Machines that joined with `morel agent --join`"),
    )
)]
struct ControlApi;

struct TokenAuth;

impl Modify for TokenAuth {
    fn modify(&self, doc: &mut utoipa::openapi::OpenApi) {
        let components = doc.components.get_or_insert_with(Default::default);
        components.add_security_scheme(
            "token",
            SecurityScheme::Http(Http::new(HttpAuthScheme::Bearer)),
        );
    }
}

/// The whole document: the control plane's routes and the gateway's call path.
pub fn document() -> utoipa::openapi::OpenApi {
    let mut doc = ControlApi::openapi();
    doc.merge(morel_gateway::GatewayApi::openapi());
    doc
}

/// The document as served and checked in: pretty JSON with a final newline.
pub fn document_json() -> String {
    let mut text = document()
        .to_pretty_json()
        .unwrap_or_else(|e| format!("{{\"error\": \"cannot encode the OpenAPI document: {e}\"}}"));
    text.push('\n');
    text
}

/// `GET /api/openapi.json`.
#[utoipa::path(
    get,
    path = "/api/openapi.json",
    tag = "observability",
    summary = "This OpenAPI document (no token needed)",
    responses((status = 200, description = "the document", body = serde_json::Value)),
)]
pub async fn openapi_json() -> Response {
    static DOC: OnceLock<String> = OnceLock::new();
    let mut resp = DOC.get_or_init(document_json).clone().into_response();
    resp.headers_mut().insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("application/json"),
    );
    resp
}

#[cfg(test)]
mod tests {
    use std::collections::{BTreeMap, BTreeSet};
    use std::path::PathBuf;

    use super::*;

    fn checked_in() -> PathBuf {
        PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../../docs/openapi.json")
    }

    /// `docs/openapi.json` is exactly what the code generates. To accept a change, run
    /// `MOREL_UPDATE_OPENAPI=1 cargo nextest run -p morel-control -E 'test(openapi)'`.
    #[test]
    fn openapi_checked_in_document_matches_the_code() {
        let generated = document_json();
        let path = checked_in();
        if std::env::var_os(morel_core::env_vars::MOREL_UPDATE_OPENAPI).is_some() {
            std::fs::write(&path, &generated).expect("write docs/openapi.json");
        }
        let stored = std::fs::read_to_string(&path).unwrap_or_default();
        assert!(
            stored == generated,
            "docs/openapi.json differs from the API the code serves. If the change is intended, \
             regenerate it: MOREL_UPDATE_OPENAPI=1 cargo nextest run -p morel-control -E 'test(openapi)'"
        );
    }

    /// Every `.route(PATH, METHODS)` the server registers, read from the router's source:
    /// axum cannot list a router's routes, and this is where engineers add them.
    fn served_routes() -> BTreeMap<String, BTreeSet<String>> {
        let sources = [
            include_str!("server.rs"),
            include_str!("../../morel-gateway/src/call.rs"),
        ];
        let method = regex::Regex::new(r"\b(get|post|put|delete|patch|head|any)\(").expect("regex");
        let mut out: BTreeMap<String, BTreeSet<String>> = BTreeMap::new();
        for src in sources {
            let mut rest = src;
            while let Some(at) = rest.find(".route(") {
                rest = &rest[at + ".route(".len()..];
                // The call's text up to its matching parenthesis.
                let mut depth = 1;
                let end = rest
                    .char_indices()
                    .find(|(_, c)| {
                        match c {
                            '(' => depth += 1,
                            ')' => depth -= 1,
                            _ => {}
                        }
                        depth == 0
                    })
                    .map(|(i, _)| i)
                    .expect("balanced .route(");
                let call = &rest[..end];
                let Some(path) = call
                    .trim_start()
                    .strip_prefix('"')
                    .and_then(|p| p.split('"').next())
                else {
                    continue;
                };
                let methods = out.entry(path.to_owned()).or_default();
                for m in method.captures_iter(call) {
                    match &m[1] {
                        // `any` serves every method; the document describes it as POST.
                        "any" => methods.insert("post".to_owned()),
                        // HEAD is answered by the GET handler; OpenAPI lists GET.
                        "head" => methods.insert("get".to_owned()),
                        other => methods.insert(other.to_owned()),
                    };
                }
            }
        }
        out
    }

    #[test]
    fn openapi_lists_every_route_the_router_serves() {
        let doc = serde_json::to_value(document()).expect("document as JSON");
        let paths = doc["paths"].as_object().expect("paths");
        let served = served_routes();
        assert!(
            served.len() > 30,
            "the route scan found too little: {served:?}"
        );
        let mut missing = Vec::new();
        for (path, methods) in &served {
            for m in methods {
                if paths.get(path).and_then(|p| p.get(m)).is_none() {
                    missing.push(format!("{} {path}", m.to_uppercase()));
                }
            }
        }
        assert!(
            missing.is_empty(),
            "served but missing from the OpenAPI document: {missing:?}. Add #[utoipa::path] to \
             each handler and list it in paths(...) in crates/morel-control/src/openapi.rs"
        );
        // Operation ids name client methods: they must be unique.
        let mut ids = BTreeSet::new();
        for item in paths.values() {
            for op in item.as_object().expect("path item").values() {
                let id = op["operationId"].as_str().expect("operationId");
                assert!(ids.insert(id.to_owned()), "operationId {id} is used twice");
            }
        }
        // And nothing documented that is not served.
        for (path, item) in paths {
            for m in item.as_object().expect("path item").keys() {
                assert!(
                    served.get(path).is_some_and(|s| s.contains(m)),
                    "documented but not served: {} {path}",
                    m.to_uppercase()
                );
            }
        }
    }
}
