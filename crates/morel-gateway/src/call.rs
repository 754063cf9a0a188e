//! The call path handlers.

use std::sync::Arc;
use std::time::{Duration, Instant};

use axum::Router;
use axum::body::Body;
use axum::extract::{Path, State};
use axum::http::{HeaderName, HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::any;
use morel_agent::{CallError, Running, WasmResource};
use morel_runtime_process::protocol::{RequestInfo, ResponseMeta};
use morel_runtime_process::{Call, InvokeError};
use morel_runtime_wasm::{WasmError, WasmModule};
use serde_json::value::RawValue;

use crate::args::{BindError, UrlArgs};
use crate::routes::RouteMatch;
use crate::{FnRoute, RouteTable, bind_args};

#[derive(Clone, Copy, Debug)]
pub struct CallLimits {
    /// Largest request body accepted (413 beyond).
    pub max_body: usize,
}

impl Default for CallLimits {
    fn default() -> Self {
        CallLimits { max_body: 6 << 20 }
    }
}

#[derive(Clone)]
struct Gw {
    routes: Arc<RouteTable>,
    limits: CallLimits,
}

/// The call-path router; merge it into the server's router.
pub fn router(routes: Arc<RouteTable>, limits: CallLimits) -> Router {
    let gw = Gw { routes, limits };
    Router::new()
        .route("/{prefix}/{app}/{version}/call/{func}", any(call))
        .route("/{prefix}/{app}/{version}/await/{func}", any(await_call))
        .fallback(app_route)
        .with_state(gw)
}

pub(crate) fn error(status: StatusCode, kind: &str, message: impl Into<String>) -> Response {
    let body = serde_json::json!({ "error": message.into(), "type": kind });
    let mut resp = (status, axum::Json(body)).into_response();
    resp.headers_mut()
        .insert("x-morel-edge", HeaderValue::from_static("1"));
    resp
}

/// Calls a function and answers with its result. Any method works; no token is needed.
#[utoipa::path(
    post,
    path = "/{prefix}/{app}/{version}/call/{func}",
    tag = "calls",
    summary = "Call a function",
    params(
        ("prefix" = String, Path, description = "namespace: `default`"),
        ("app" = String, Path, description = "app name"),
        ("version" = String, Path, description = "the active release as vN, `latest`, or the environment name"),
        ("func" = String, Path, description = "function name"),
    ),
    request_body(content = Option<serde_json::Value>, description = "the arguments: an object of named arguments, a list of positional ones, or nothing for the defaults"),
    responses(
        (status = 200, description = "the function's JSON result", body = serde_json::Value),
        (status = 400, description = "the body is not valid JSON or does not fit the parameters", body = ErrorBody),
        (status = 404, description = "no such app, active version or function", body = ErrorBody),
        (status = 413, description = "the body is over 6 MiB", body = ErrorBody),
        (status = 500, description = "the function raised: `type` is the exception's type", body = ErrorBody),
        (status = 502, description = "the worker died during the call", body = ErrorBody),
        (status = 503, description = "no instance became ready in time", body = ErrorBody),
        (status = 504, description = "the function's deadline passed", body = ErrorBody),
    ),
)]
async fn call(
    State(gw): State<Gw>,
    Path((prefix, app, version, func)): Path<(String, String, String, String)>,
    req: axum::http::Request<Body>,
) -> Response {
    // An environment name other than the production one's addresses a preview.
    let preview = gw
        .routes
        .get(&prefix, &app)
        .is_none_or(|r| r.env != version)
        .then(|| gw.routes.get_env(&prefix, &app, &version))
        .flatten();
    let Some(routes) = preview.or_else(|| gw.routes.get(&prefix, &app)) else {
        // Not a function app: the path may belong to an http service named `{prefix}`.
        if let Some(svc) = gw.routes.edge().get("default", &prefix) {
            return to_edge(&gw, &svc, req).await;
        }
        if gw.routes.is_restoring(&prefix, &app) {
            let mut resp = error(
                StatusCode::SERVICE_UNAVAILABLE,
                "Unavailable",
                format!("app {prefix}/{app} is being restored after a restart; retry shortly"),
            );
            resp.headers_mut()
                .insert(header::RETRY_AFTER, HeaderValue::from_static("1"));
            return resp;
        }
        morel_metrics::global().unrouted_call();
        return error(
            StatusCode::NOT_FOUND,
            "NotFound",
            format!("app {prefix}/{app} is not deployed"),
        );
    };
    if let Err(message) = crate::check_version(&version, &app, routes.release, &routes.env) {
        morel_metrics::global().unrouted_call();
        return error(StatusCode::NOT_FOUND, "NotFound", message);
    }
    let Some(route) = routes.functions.get(&func) else {
        morel_metrics::global().unrouted_call();
        let mut names: Vec<&str> = routes.functions.keys().map(String::as_str).collect();
        names.sort_unstable();
        return error(
            StatusCode::NOT_FOUND,
            "NotFound",
            format!(
                "app {app} has no function {func:?} (functions: {})",
                names.join(", ")
            ),
        );
    };
    // The call path's arguments are the body's alone; its query reaches only a function that
    // takes the request.
    let request = match request_for(route, &req, None) {
        Ok(r) => r,
        Err(f) => return refused(route, f),
    };
    let bytes = match read_body(req.into_body(), &gw.limits).await {
        Ok(b) => b,
        Err(resp) => {
            route.stats.record(
                resp.status().as_u16(),
                Duration::ZERO,
                Some("PayloadTooLarge"),
            );
            return resp;
        }
    };
    invoke(
        route,
        &CallInput {
            body: &bytes,
            url: &NO_URL_ARGS,
            request,
        },
    )
    .await
}

/// Seed 000's synchronous `await` path: the same as `call`.
#[utoipa::path(
    post,
    path = "/{prefix}/{app}/{version}/await/{func}",
    tag = "calls",
    summary = "Call a function (seed 000's `await` spelling of `call`)",
    params(
        ("prefix" = String, Path, description = "namespace: `default`"),
        ("app" = String, Path, description = "app name"),
        ("version" = String, Path, description = "the active release as vN, `latest`, or the environment name"),
        ("func" = String, Path, description = "function name"),
    ),
    request_body(content = Option<serde_json::Value>, description = "the arguments: an object of named arguments, a list of positional ones, or nothing for the defaults"),
    responses(
        (status = 200, description = "the function's JSON result", body = serde_json::Value),
        (status = 400, description = "the body is not valid JSON or does not fit the parameters", body = ErrorBody),
        (status = 404, description = "no such app, active version or function", body = ErrorBody),
        (status = 413, description = "the body is over 6 MiB", body = ErrorBody),
        (status = 500, description = "the function raised: `type` is the exception's type", body = ErrorBody),
        (status = 502, description = "the worker died during the call", body = ErrorBody),
        (status = 503, description = "no instance became ready in time", body = ErrorBody),
        (status = 504, description = "the function's deadline passed", body = ErrorBody),
    ),
)]
async fn await_call(
    gw: State<Gw>,
    path: Path<(String, String, String, String)>,
    req: axum::http::Request<Body>,
) -> Response {
    call(gw, path, req).await
}

/// The call path in the OpenAPI document (merged into the control plane's document).
#[derive(utoipa::OpenApi)]
#[openapi(paths(call, await_call), components(schemas(ErrorBody)))]
pub struct GatewayApi;

/// Every error body Morel sends, on the call path and the control API alike.
#[derive(serde::Serialize, utoipa::ToSchema)]
pub struct ErrorBody {
    /// What went wrong, in words.
    pub error: String,
    /// A short kind, e.g. `NotFound`, or the exception's type when a function raised.
    #[serde(rename = "type")]
    pub kind: String,
    /// When a function raised: the id under which its traceback is in the app's log.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub id: Option<String>,
}

/// Splits `/{app}/rest?q` into the app segment and what the service sees (`/rest?q`).
fn split_app_path(uri: &axum::http::Uri) -> (String, String) {
    let path = uri.path();
    let (app, rest) = match path.trim_start_matches('/').split_once('/') {
        Some((a, r)) => (a.to_owned(), format!("/{r}")),
        None => (path.trim_start_matches('/').to_owned(), "/".to_owned()),
    };
    let rest = match uri.query() {
        Some(q) => format!("{rest}?{q}"),
        None => rest,
    };
    (app, rest)
}

/// Sends a path-routed request (`/{app}/rest`) to the app's http service.
async fn to_edge(
    gw: &Gw,
    svc: &morel_agent::HttpService,
    req: axum::http::Request<Body>,
) -> Response {
    let (segment, rest) = split_app_path(req.uri());
    let prefix = format!("/{segment}");
    gw.routes
        .edge()
        .proxy(svc, req, &rest, Some(prefix.as_str()))
        .await
}

/// Host-name routing (`{app}.{domain}`): takes precedence over every other route, so an app
/// on its own host name sees all of its paths. Wrap the server's whole router with it.
pub fn host_routing(router: Router, routes: Arc<RouteTable>) -> Router {
    router.layer(axum::middleware::from_fn(
        move |req: axum::http::Request<Body>, next: axum::middleware::Next| {
            let routes = routes.clone();
            async move {
                match routes.edge().app_for_host(req.headers()) {
                    Some(svc) => {
                        let pq = req
                            .uri()
                            .path_and_query()
                            .map(|p| p.as_str().to_owned())
                            .unwrap_or_else(|| "/".to_owned());
                        routes.edge().proxy(&svc, req, &pq, None).await
                    }
                    None => next.run(req).await,
                }
            }
        },
    ))
}

/// Seed 002's routes: `METHOD /{app}{path}` → the function the manifest maps it to, with the
/// request body as its arguments; paths the manifest does not route go to the app's http
/// service when it has one. Anything else is a JSON 404.
async fn app_route(State(gw): State<Gw>, req: axum::http::Request<Body>) -> Response {
    let path = req.uri().path().to_owned();
    // An environment's own host name (`{env}--{app}.{domain}`) serves its routes at `{path}`.
    if let Some(routes) = req
        .headers()
        .get(header::HOST)
        .and_then(|h| h.to_str().ok())
        .and_then(|h| gw.routes.by_host(h))
    {
        let label = format!("{}@{}", routes.env, req.uri().host().unwrap_or("host"));
        return serve_route(&gw, &routes, path, &label, None, req).await;
    }
    let (segment, _) = split_app_path(req.uri());
    let rest = match path.trim_start_matches('/').split_once('/') {
        Some((_, r)) => format!("/{r}"),
        None => "/".to_owned(),
    };
    // `app@env` addresses an environment explicitly.
    let (app, env) = segment
        .split_once('@')
        .map_or((segment.as_str(), None), |(a, e)| (a, Some(e)));
    let preview = env.and_then(|e| {
        gw.routes
            .get("default", app)
            .is_none_or(|r| r.env != e)
            .then(|| gw.routes.get_env("default", app, e))
            .flatten()
    });
    let routes = preview.or_else(|| gw.routes.get("default", app));
    let service = gw.routes.edge().get("default", app);
    let Some(routes) = routes else {
        if let Some(svc) = service {
            return to_edge(&gw, &svc, req).await;
        }
        return error(
            StatusCode::NOT_FOUND,
            "NotFound",
            format!("no route for {} {path}", req.method()),
        );
    };
    if env.is_some_and(|e| e != routes.env) {
        return error(
            StatusCode::NOT_FOUND,
            "NotFound",
            format!("app {app} has no environment {:?}", env.unwrap_or_default()),
        );
    }
    serve_route(&gw, &routes, rest, app, service, req).await
}

/// Serves `METHOD rest` from an app's (or environment's) manifest routes; what they do not
/// route goes to `service` when there is one.
async fn serve_route(
    gw: &Gw,
    routes: &crate::AppRoutes,
    rest: String,
    app: &str,
    service: Option<Arc<morel_agent::HttpService>>,
    req: axum::http::Request<Body>,
) -> Response {
    let method = req.method().clone();
    let (func, path_params) = match routes.http.find(method.as_str(), &rest) {
        RouteMatch::Found {
            function, params, ..
        } => (function, params),
        other => {
            // Manifest routes win; everything else under `/{app}/` is the http service's.
            if let Some(svc) = service {
                return to_edge(gw, &svc, req).await;
            }
            return match other {
                RouteMatch::OtherMethods(allowed) => error(
                    StatusCode::METHOD_NOT_ALLOWED,
                    "MethodNotAllowed",
                    format!("{rest} of {app} accepts {}", allowed.join(", ")),
                ),
                _ => error(
                    StatusCode::NOT_FOUND,
                    "NotFound",
                    format!("app {app} has no route {method} {rest}"),
                ),
            };
        }
    };
    let Some(route) = routes.functions.get(func) else {
        return error(
            StatusCode::SERVICE_UNAVAILABLE,
            "Unavailable",
            format!("function {func} of route {method} {rest} is not running"),
        );
    };
    let url = match url_args(&path_params, req.uri().query()) {
        Ok(u) => u,
        Err(e) => return bad_url(route, &e),
    };
    let request = match request_for(route, &req, Some(&url.query)) {
        Ok(r) => r,
        Err(f) => return refused(route, f),
    };
    let bytes = match read_body(req.into_body(), &gw.limits).await {
        Ok(b) => b,
        Err(resp) => {
            route.stats.record(
                resp.status().as_u16(),
                Duration::ZERO,
                Some("PayloadTooLarge"),
            );
            return resp;
        }
    };
    invoke(
        route,
        &CallInput {
            body: &bytes,
            url: &url,
            request,
        },
    )
    .await
}

/// The arguments a route's URL gives: its path parameters, then its query's (decoded).
pub(crate) fn url_args(
    path_params: &[(&str, &str)],
    query: Option<&str>,
) -> Result<UrlArgs, crate::query::BadUrl> {
    let mut path = Vec::with_capacity(path_params.len());
    for (name, raw) in path_params {
        path.push(((*name).to_owned(), crate::query::decode_segment(name, raw)?));
    }
    let query = match query {
        Some(q) => crate::query::parse_query(q)?,
        None => Vec::new(),
    };
    Ok(UrlArgs { path, query })
}

/// The 400 for a URL whose path parameters or query cannot be decoded, recorded as a call.
fn bad_url(route: &FnRoute, e: &crate::query::BadUrl) -> Response {
    refused(
        route,
        CallFailure::new(StatusCode::BAD_REQUEST, "BadRequest", e.to_string()),
    )
}

/// The answer to a call refused before it ran, recorded as a call.
fn refused(route: &FnRoute, f: CallFailure) -> Response {
    route.stats.record(
        f.status.as_u16(),
        Duration::ZERO,
        Some(&format!("{}: {}", f.kind, f.message)),
    );
    let mut resp = json_ok(f.body());
    *resp.status_mut() = f.status;
    resp
}

/// The `request` of the `Invoke` frame, for a function that takes it; `query` is the
/// request's query, decoded.
fn request_info(
    req: &axum::http::Request<Body>,
    query: &[(String, String)],
) -> Result<Box<RawValue>, CallFailure> {
    let info = RequestInfo {
        method: req.method().as_str(),
        path: req.uri().path(),
        headers: req
            .headers()
            .iter()
            .map(|(k, v)| (k.as_str(), String::from_utf8_lossy(v.as_bytes())))
            .collect(),
        query,
    };
    serde_json::value::to_raw_value(&info).map_err(|e| {
        CallFailure::new(
            StatusCode::INTERNAL_SERVER_ERROR,
            "Internal",
            format!("the request could not be described: {e}"),
        )
    })
}

/// The request for a function that takes it (`None` for the others), or why the call is
/// refused.
fn request_for(
    route: &FnRoute,
    req: &axum::http::Request<Body>,
    query: Option<&[(String, String)]>,
) -> Result<Option<Box<RawValue>>, CallFailure> {
    if !route.binding.wants_request() {
        return Ok(None);
    }
    let parsed;
    let query = match query {
        Some(q) => q,
        None => {
            parsed = req
                .uri()
                .query()
                .map(crate::query::parse_query)
                .transpose()
                .map_err(|e| {
                    CallFailure::new(StatusCode::BAD_REQUEST, "BadRequest", e.to_string())
                })?
                .unwrap_or_default();
            &parsed[..]
        }
    };
    request_info(req, query).map(Some)
}

/// One call's input, read from its request.
pub struct CallInput<'a> {
    /// JSON text, or nothing.
    pub body: &'a [u8],
    /// What an app route's URL gives: path and query parameters.
    pub url: &'a UrlArgs,
    /// The request, for a function that takes it (`Binding::wants_request`).
    pub request: Option<Box<RawValue>>,
}

/// The URL arguments of a call that has none (the call path's).
pub(crate) static NO_URL_ARGS: UrlArgs = UrlArgs {
    path: Vec::new(),
    query: Vec::new(),
};

impl<'a> CallInput<'a> {
    /// A call whose arguments are its body's alone.
    pub fn body(body: &'a [u8]) -> Self {
        CallInput {
            body,
            url: &NO_URL_ARGS,
            request: None,
        }
    }
}

/// The answer to a call whose function returned: its JSON result, or the response it asked
/// for (an SDK `Response`: status, headers, body).
#[derive(Debug)]
pub struct CallOutput {
    pub status: StatusCode,
    /// `application/json` unless the function set its own.
    pub content_type: HeaderValue,
    /// Further headers the function set.
    pub headers: Vec<(HeaderName, HeaderValue)>,
    pub body: Vec<u8>,
}

impl CallOutput {
    fn json(body: Vec<u8>) -> Self {
        CallOutput {
            status: StatusCode::OK,
            content_type: HeaderValue::from_static("application/json"),
            headers: Vec::new(),
            body,
        }
    }

    /// Whether the answer has no body (and so no content headers): 204 and 304.
    pub fn bodiless(&self) -> bool {
        matches!(self.status.as_u16(), 204 | 304)
    }

    fn into_response(self) -> Response {
        let bodiless = self.bodiless();
        let mut resp = Response::new(if bodiless {
            Body::empty()
        } else {
            Body::from(self.body)
        });
        *resp.status_mut() = self.status;
        let h = resp.headers_mut();
        if !bodiless {
            h.insert(header::CONTENT_TYPE, self.content_type);
        }
        h.insert("x-morel-edge", HeaderValue::from_static("1"));
        for (name, value) in self.headers {
            h.append(name, value);
        }
        resp
    }
}

/// Headers a function's response may not set: the connection's and the body's framing are
/// Morel's to write.
const RESERVED_HEADERS: [&str; 4] = ["content-length", "date", "x-morel-edge", "x-morel-instance"];

/// The answer a function asked for with an SDK `Response`; a status or header HTTP cannot
/// carry fails the call (500 `InvalidResponse`), naming it.
fn response_output(
    result: Box<RawValue>,
    meta: Option<ResponseMeta>,
) -> Result<CallOutput, CallFailure> {
    let text = String::from(Box::<str>::from(result));
    let Some(meta) = meta else {
        return Ok(CallOutput::json(text.into_bytes()));
    };
    let invalid = |what: String| {
        CallFailure::new(
            StatusCode::INTERNAL_SERVER_ERROR,
            "InvalidResponse",
            format!("the function's response is not valid: {what}"),
        )
    };
    let status = StatusCode::from_u16(meta.status)
        .ok()
        .filter(|s| (200..=599).contains(&s.as_u16()))
        .ok_or_else(|| invalid(format!("status {} is not between 200 and 599", meta.status)))?;
    let mut out = CallOutput {
        status,
        ..CallOutput::json(Vec::new())
    };
    let mut content_type = None;
    for (name, value) in meta.headers {
        let n = HeaderName::from_bytes(name.as_bytes())
            .map_err(|_| invalid(format!("{name:?} is not a header name")))?;
        if RESERVED_HEADERS.contains(&n.as_str()) || crate::is_hop_by_hop(n.as_str()) {
            return Err(invalid(format!("header {n} is set by Morel")));
        }
        let v = HeaderValue::from_str(&value).map_err(|_| {
            invalid(format!(
                "the value of header {n} is not a valid header value"
            ))
        })?;
        if n == header::CONTENT_TYPE {
            content_type = Some(v);
        } else {
            out.headers.push((n, v));
        }
    }
    out.body = if meta.raw {
        // A text body travels as a JSON string.
        serde_json::from_str::<String>(&text)
            .map_err(|_| invalid("a raw body must be text".into()))?
            .into_bytes()
    } else {
        text.into_bytes()
    };
    out.content_type = match (content_type, meta.raw) {
        (Some(ct), _) => ct,
        (None, true) => HeaderValue::from_static("text/plain; charset=utf-8"),
        (None, false) => HeaderValue::from_static("application/json"),
    };
    Ok(out)
}

/// Runs one call on the function's resource, records it in the function's metrics and
/// recent calls, and maps the outcome to an HTTP response.
async fn invoke(route: &FnRoute, input: &CallInput<'_>) -> Response {
    match run_call(route, input).await {
        Ok(out) => out.into_response(),
        Err(f) => {
            let mut resp = json_ok(f.body());
            *resp.status_mut() = f.status;
            resp
        }
    }
}

/// Runs one call and records it in the function's metrics and recent calls: the call path's
/// work between reading the body and writing the answer (also the lane's, `lane.rs`).
pub(crate) async fn run_call(
    route: &FnRoute,
    input: &CallInput<'_>,
) -> Result<CallOutput, CallFailure> {
    let started = Instant::now();
    let outcome = call_function_with(route, input).await;
    let took = started.elapsed();
    match &outcome {
        Ok(out) => route.stats.record(out.status.as_u16(), took, None),
        Err(f) => route.stats.record(
            f.status.as_u16(),
            took,
            Some(&format!("{}: {}", f.kind, f.message)),
        ),
    }
    outcome
}

/// The JSON body of an error answer, as [`ErrorBody`] words it.
pub(crate) fn error_body(kind: &str, message: &str) -> Vec<u8> {
    serde_json::to_vec(&ErrorBody {
        error: message.to_owned(),
        kind: kind.to_owned(),
        id: None,
    })
    .unwrap_or_default()
}

/// Why a call failed, already in HTTP terms.
#[derive(Debug)]
pub struct CallFailure {
    pub status: StatusCode,
    pub kind: String,
    pub message: String,
    /// When the function raised: the id of its traceback in the app's log.
    pub id: Option<String>,
}

impl CallFailure {
    /// The JSON body of the answer.
    pub fn body(&self) -> Vec<u8> {
        serde_json::to_vec(&ErrorBody {
            error: self.message.clone(),
            kind: self.kind.clone(),
            id: self.id.clone(),
        })
        .unwrap_or_default()
    }

    fn new(status: StatusCode, kind: &str, message: String) -> Self {
        CallFailure {
            id: None,
            status,
            kind: kind.to_owned(),
            message,
        }
    }
}

/// Reads a request body within the limit (413 beyond).
async fn read_body(body: Body, limits: &CallLimits) -> Result<axum::body::Bytes, Response> {
    use http_body_util::BodyExt;
    let too_large = || {
        error(
            StatusCode::PAYLOAD_TOO_LARGE,
            "PayloadTooLarge",
            format!(
                "request body exceeds the limit of {} bytes",
                limits.max_body
            ),
        )
    };
    // A body that stalls is cut by `limit_body_pauses`, around every router Morel serves:
    // its error arrives here, and that layer answers 408 instead.
    let mut body = body;
    let mut out = bytes::BytesMut::new();
    loop {
        match body.frame().await {
            None => return Ok(out.freeze()),
            // Short of its length, or a malformed chunk: 400, and the connection closes.
            Some(Err(_)) => {
                let mut resp = error(
                    StatusCode::BAD_REQUEST,
                    "BadRequest",
                    crate::conn::BODY_INCOMPLETE_ANSWER,
                );
                resp.headers_mut()
                    .insert(header::CONNECTION, HeaderValue::from_static("close"));
                return Err(resp);
            }
            Some(Ok(frame)) => {
                if let Ok(data) = frame.into_data() {
                    if out.len() + data.len() > limits.max_body {
                        return Err(too_large());
                    }
                    out.extend_from_slice(&data);
                }
            }
        }
    }
}

/// Runs one call of the route's function with `body` (JSON text) on its resource and returns the
/// JSON result (the body of the answer, for a function that returned a response).
/// Async jobs run their calls with it.
pub async fn call_function(route: &FnRoute, bytes: &[u8]) -> Result<Vec<u8>, CallFailure> {
    call_function_with(route, &CallInput::body(bytes))
        .await
        .map(|out| out.body)
}

/// Runs one call of the route's function on its resource: binds `input` to its arguments
/// (`args.rs`), calls it, and returns its answer. Shared by the call path, app routes and
/// the fast lane.
pub async fn call_function_with(
    route: &FnRoute,
    input: &CallInput<'_>,
) -> Result<CallOutput, CallFailure> {
    let func = route.name.as_str();
    let bytes = input.body;
    let bad_request = |e: crate::args::BadJson| {
        CallFailure::new(StatusCode::BAD_REQUEST, "BadRequest", e.to_string())
    };
    let (pool, args) = match &route.target {
        Running::Process(pool) => {
            let args = bind_args(bytes, input.url, &route.binding).map_err(|e| match e {
                BindError::Json(e) => bad_request(e),
                BindError::Arguments(m) => {
                    CallFailure::new(StatusCode::BAD_REQUEST, "BadArguments", m)
                }
            })?;
            (pool, args)
        }
        // A wasm function gets the body as it is: it only has to be JSON.
        Running::Wasm(w) => {
            crate::args::check_json(bytes).map_err(bad_request)?;
            // Set for every wasm function when its route is installed.
            let Some(module) = &route.module else {
                return Err(CallFailure::new(
                    StatusCode::NOT_FOUND,
                    "NotFound",
                    format!("no wasm function {func:?}"),
                ));
            };
            return call_wasm(w, module, func, bytes)
                .await
                .map(CallOutput::json);
        }
        Running::Http(h) => {
            crate::args::check_json(bytes).map_err(bad_request)?;
            return Err(CallFailure::new(
                StatusCode::NOT_FOUND,
                "NotFound",
                format!(
                    "{} is an http service, not a function: send requests to /{}/…",
                    h.resource, h.app.name
                ),
            ));
        }
    };
    let call = Call {
        name: func,
        args: &args.args,
        kwargs: &args.kwargs,
        request: input.request.as_deref(),
    };
    match pool.invoke(&call, pool.timeout).await {
        Ok(returned) => response_output(returned.result, returned.response),
        Err(CallError::Invoke(InvokeError::Raised {
            message, kind, id, ..
        })) => Err(CallFailure {
            id: Some(id),
            ..CallFailure::new(StatusCode::INTERNAL_SERVER_ERROR, &kind, message)
        }),
        Err(CallError::Invoke(InvokeError::NotFound(_))) => Err(CallFailure::new(
            StatusCode::NOT_FOUND,
            "NotFound",
            format!("function {func:?} is not loaded"),
        )),
        Err(CallError::Invoke(e @ InvokeError::InvalidResponse(_))) => Err(CallFailure::new(
            StatusCode::INTERNAL_SERVER_ERROR,
            "InvalidResponse",
            e.to_string(),
        )),
        Err(CallError::Invoke(InvokeError::Timeout(d))) => Err(CallFailure::new(
            StatusCode::GATEWAY_TIMEOUT,
            "Timeout",
            format!(
                "{func} did not return within its deadline of {}",
                fmt_duration(d)
            ),
        )),
        Err(CallError::Invoke(InvokeError::WorkerDied(why))) => Err(CallFailure::new(
            StatusCode::BAD_GATEWAY,
            "WorkerDied",
            format!(
                "the worker running {func} died during the call ({why}); it is being restarted"
            ),
        )),
        Err(e @ CallError::WaitTimeout { .. }) => Err(CallFailure::new(
            StatusCode::GATEWAY_TIMEOUT,
            "Timeout",
            e.to_string(),
        )),
        Err(e @ CallError::NoInstance { .. }) => Err(CallFailure::new(
            StatusCode::SERVICE_UNAVAILABLE,
            "Unavailable",
            e.to_string(),
        )),
    }
}

fn json_ok(body: impl Into<Body>) -> Response {
    let mut resp = Response::new(body.into());
    let h = resp.headers_mut();
    h.insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("application/json"),
    );
    h.insert("x-morel-edge", HeaderValue::from_static("1"));
    resp
}

/// A wasm function gets the request body (JSON text; `null` when empty) as its input, in this
/// process.
async fn call_wasm(
    w: &WasmResource,
    module: &WasmModule,
    func: &str,
    body: &[u8],
) -> Result<Vec<u8>, CallFailure> {
    let input: &[u8] = if body.iter().all(|b| b.is_ascii_whitespace()) {
        b"null"
    } else {
        body
    };
    match w.call(module, input).await {
        Ok(out) => Ok(out),
        Err(WasmError::Timeout(d)) => Err(CallFailure::new(
            StatusCode::GATEWAY_TIMEOUT,
            "Timeout",
            format!(
                "{func} did not return within its deadline of {}",
                fmt_duration(d)
            ),
        )),
        Err(e) => Err(CallFailure::new(
            StatusCode::INTERNAL_SERVER_ERROR,
            "WasmError",
            e.to_string(),
        )),
    }
}

fn fmt_duration(d: Duration) -> String {
    if d.subsec_millis() == 0 {
        format!("{}s", d.as_secs())
    } else {
        format!("{}ms", d.as_millis())
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    fn out(result: &str, meta: Option<ResponseMeta>) -> Result<CallOutput, CallFailure> {
        response_output(RawValue::from_string(result.to_owned()).unwrap(), meta)
    }

    fn meta(status: u16, headers: &[(&str, &str)], raw: bool) -> Option<ResponseMeta> {
        Some(ResponseMeta {
            status,
            headers: headers
                .iter()
                .map(|(k, v)| ((*k).to_owned(), (*v).to_owned()))
                .collect(),
            raw,
        })
    }

    #[test]
    fn a_plain_result_is_a_json_200() {
        let o = out(r#"{"a":1}"#, None).unwrap();
        assert_eq!(o.status, StatusCode::OK);
        assert_eq!(o.content_type, "application/json");
        assert_eq!(o.body, br#"{"a":1}"#);
        assert!(o.headers.is_empty());
    }

    #[test]
    fn a_response_sets_status_headers_and_body() {
        let o = out(
            r#"{"id":7}"#,
            meta(
                201,
                &[
                    ("Location", "/items/7"),
                    ("set-cookie", "a=1"),
                    ("set-cookie", "b=2"),
                ],
                false,
            ),
        )
        .unwrap();
        assert_eq!(o.status, StatusCode::CREATED);
        assert_eq!(o.content_type, "application/json");
        assert_eq!(o.body, br#"{"id":7}"#);
        let names: Vec<&str> = o.headers.iter().map(|(n, _)| n.as_str()).collect();
        assert_eq!(names, ["location", "set-cookie", "set-cookie"]);
        let resp = o.into_response();
        assert_eq!(resp.headers().get_all("set-cookie").iter().count(), 2);

        let o = out(
            r#""<p>hi</p>""#,
            meta(200, &[("Content-Type", "text/html")], true),
        )
        .unwrap();
        assert_eq!(
            (o.content_type.to_str().unwrap(), &o.body[..]),
            ("text/html", &b"<p>hi</p>"[..])
        );
        let o = out(r#""plain""#, meta(200, &[], true)).unwrap();
        assert_eq!(o.content_type, "text/plain; charset=utf-8");
        let o = out("null", meta(204, &[], false)).unwrap();
        assert!(o.bodiless());
        let resp = o.into_response();
        assert!(resp.headers().get(header::CONTENT_TYPE).is_none());
    }

    #[test]
    fn a_response_http_cannot_carry_fails_the_call() {
        for (m, why) in [
            (meta(99, &[], false), "status 99"),
            (meta(600, &[], false), "status 600"),
            (
                meta(200, &[("content-length", "3")], false),
                "content-length is set by Morel",
            ),
            (
                meta(200, &[("Connection", "close")], false),
                "connection is set by Morel",
            ),
            (
                meta(200, &[("bad name", "x")], false),
                "is not a header name",
            ),
            (
                meta(200, &[("x-a", "a\r\nb")], false),
                "not a valid header value",
            ),
            (meta(200, &[], true), "a raw body must be text"),
        ] {
            let f = out("[1]", m).unwrap_err();
            assert_eq!(
                (f.status, f.kind.as_str()),
                (StatusCode::INTERNAL_SERVER_ERROR, "InvalidResponse")
            );
            assert!(f.message.contains(why), "{why}: {}", f.message);
        }
    }
}
