//! Wiring: build the router (public call path + authenticated control API) and serve it on
//! a given listener until the shutdown future resolves.

use std::future::Future;
use std::sync::Arc;

use axum::Router;
use axum::extract::DefaultBodyLimit;
use axum::routing::{get, post};
use morel_gateway::{CallLimits, RouteTable};

use crate::api::{AppState, apps, compat, environments, functions, observe, services};
use crate::auth::{Token, require_token};
use crate::body_close::close_unless_body_read;
use crate::deploy::{Deployer, MAX_BUNDLE_BYTES};

pub struct Server {
    pub deployer: Arc<Deployer>,
    pub functions: Arc<crate::functions::Functions>,
    pub routes: Arc<RouteTable>,
    pub envs: Arc<crate::environments::Environments>,
    pub token: Token,
}

impl Server {
    pub fn router(&self) -> Router {
        let state = AppState {
            deployer: self.deployer.clone(),
            functions: self.functions.clone(),
            envs: self.envs.clone(),
            token: self.token.clone(),
        };
        let control = Router::new()
            .route(
                "/api/bundles/{digest}",
                get(apps::bundle_exists)
                    .head(apps::bundle_exists)
                    .put(apps::put_bundle),
            )
            .route("/api/apps", get(apps::list_apps))
            .route(
                "/api/apps/{app}",
                get(apps::get_app).delete(apps::delete_app),
            )
            .route(
                "/api/apps/{app}/releases",
                get(apps::list_releases).post(apps::create_release),
            )
            .route("/api/apps/{app}/releases/{version}", get(apps::get_release))
            .route("/api/apps/{app}/manifest", get(apps::get_manifest))
            .route("/manifest", get(crate::api::manifest::bare_manifest))
            .route("/api/apps/{app}/logs", get(apps::logs))
            .route("/api/apps/{app}/rollback", post(apps::rollback))
            .route("/api/apps/{app}/plan", get(apps::plan))
            .route(
                "/api/apps/{app}/budget",
                get(services::get_budget).put(services::put_budget),
            )
            .route(
                "/api/apps/{app}/scale",
                axum::routing::put(services::put_scale),
            )
            .route("/api/apps/{app}/instances", get(services::instances))
            // Environments and git deploys (seed 003).
            .route("/api/deploys", post(environments::create_deploy))
            .route("/api/deploys/{id}", get(environments::get_deploy))
            .route(
                "/api/apps/{app}/environments",
                get(environments::list_environments),
            )
            .route(
                "/api/apps/{app}/environments/{env}",
                axum::routing::delete(environments::remove_environment),
            )
            .route(
                "/api/apps/{app}/environments/{env}/config",
                post(environments::set_config),
            )
            .route(
                "/api/apps/{app}/environments/{env}/secrets",
                get(environments::list_secrets),
            )
            .route(
                "/api/apps/{app}/environments/{env}/secrets/{name}",
                axum::routing::put(environments::set_secret).delete(environments::remove_secret),
            )
            .route(
                "/api/apps/{app}/environments/{env}/certificate",
                axum::routing::put(environments::put_certificate),
            )
            .route(
                "/api/apps/{app}/functions/{function}/executions",
                get(observe::function_executions),
            )
            .route("/metrics", get(observe::metrics))
            .route("/api/system", get(observe::system))
            .route("/api/executions/{id}", get(crate::jobs::get_execution))
            .route("/api/executions/{id}/cancel", post(crate::jobs::cancel))
            .route("/api/keys", get(apps::list_keys).post(apps::trust_key))
            .route(
                "/api/nodes",
                get(crate::api::nodes::list).post(crate::api::nodes::register),
            )
            .route(
                "/api/nodes/{id}/heartbeat",
                post(crate::api::nodes::heartbeat),
            )
            .route(
                "/api/nodes/{id}/placements",
                get(crate::api::placements::for_node),
            )
            .route("/api/nodes/{id}/logs", post(crate::api::nodes::ship_logs))
            .route(
                "/api/nodes/{id}/placements/{placement}",
                post(crate::api::placements::report),
            )
            .route("/api/placements", get(crate::api::placements::list))
            .route(
                "/api/bundles/{digest}/content",
                get(crate::api::placements::bundle_content),
            )
            .route(
                "/api/keys/{key_id}",
                axum::routing::delete(apps::remove_key),
            )
            // Seed 001's routes: compiled functions.
            .route("/functions", get(functions::list).post(functions::create))
            .route(
                "/functions/{id}",
                get(functions::get).delete(functions::delete),
            )
            .route("/functions/{id}/execute", post(functions::execute))
            .route("/functions/{id}/executions", get(functions::executions))
            .route("/executions/{id}", get(functions::execution))
            // Seed 000's routes.
            .route("/validate", get(compat::validate))
            .route("/api/account/deploy-enabled", get(compat::deploy_enabled))
            .route("/api/account/refresh-token", get(compat::refresh_token))
            .route(
                "/api/billing/list-subscriptions",
                get(compat::list_subscriptions),
            )
            .route(
                "/api/billing/list-subscriptions-deploys",
                get(compat::list_subscriptions_deploys),
            )
            .route("/api/package/create", post(compat::package_create))
            .route("/api/repository/branchlist", post(compat::branch_list))
            .route("/api/repository/filelist", post(compat::file_list))
            .route("/api/repository/add", post(compat::repository_add))
            .route("/api/deploy/create", post(compat::deploy_create))
            .route("/api/deploy/delete", post(compat::deploy_delete))
            .route("/api/deploy/logs", post(compat::deploy_logs))
            .route("/api/inspect", get(compat::inspect))
            .route_layer(axum::middleware::from_fn_with_state(
                self.token.clone(),
                require_token,
            ))
            .layer(DefaultBodyLimit::max(MAX_BUNDLE_BYTES))
            .with_state(state.clone());
        // Async runs are public like the call path.
        let public = Router::new()
            .route(
                "/{prefix}/{app}/{version}/run/{func}",
                post(crate::jobs::run),
            )
            .route("/api/readiness", get(compat::readiness))
            .with_state(state);
        let all = Router::new()
            .route("/api/openapi.json", get(crate::openapi::openapi_json))
            .merge(control)
            .merge(public)
            .merge(morel_dashboard::router())
            .merge(morel_gateway::router(
                self.routes.clone(),
                CallLimits::default(),
            ));
        // `{app}.{domain}` host names reach http services before any other route.
        morel_gateway::host_routing(all, self.routes.clone())
            // Outermost, so it sees every answer: one given before its request's body was
            // read (a refusal, a 404, a 413) closes the connection.
            .layer(axum::middleware::from_fn(close_unless_body_read))
    }
}

/// Serves until `shutdown` resolves, on one thread per core (see `listen`); open requests get
/// up to 10 s to be answered after that.
pub async fn serve(
    listener: tokio::net::TcpListener,
    server: &Server,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> std::io::Result<()> {
    let lane = morel_gateway::Lane::new(server.routes.clone(), CallLimits::default());
    crate::listen::serve(
        listener,
        server.router(),
        Some(lane),
        shutdown,
        std::time::Duration::from_secs(10),
    )
    .await
}
