//! The edge: a reverse proxy from the public listener to the ready instances of apps' `http`
//! resources (seed 004 flow C).
//!
//! Requests reach an app by path, `/{app}/rest` → the service sees `/rest`, or by host name,
//! `{app}.{domain}` → the whole path, when a domain is configured. Instances are picked
//! round-robin among the ready ones; bodies stream both ways; hop-by-hop headers are dropped;
//! `X-Forwarded-For/-Host/-Proto` (and `-Prefix` for path routing) are set; every response
//! carries `X-Morel-Edge` and `X-Morel-Instance`. A request holds its instance's in-flight
//! guard until its response body ends, which is what a drain waits for. When no instance is
//! ready the edge waits (bounded) and answers 503; the per-request timeout answers 504.
//!
//! The edge table is written by the control plane when a release becomes active (blue/green
//! switches it in one write) and read by every request. This module decides nothing about
//! what runs.

use std::collections::HashMap;
use std::net::{IpAddr, SocketAddr};
use std::sync::{Arc, RwLock};
use std::time::Duration;

use std::pin::Pin;
use std::task::{Context, Poll};

use axum::body::{Body, HttpBody};
use axum::extract::ConnectInfo;
use axum::http::{HeaderMap, HeaderName, HeaderValue, Request, StatusCode, Uri, header};
use axum::response::{IntoResponse, Response};
use bytes::Bytes;
use hyper::body::{Frame, Incoming, SizeHint};
use hyper_util::client::legacy::Client;
use hyper_util::client::legacy::connect::HttpConnector;
use hyper_util::rt::TokioExecutor;
use morel_agent::HttpService;

/// How long a request waits for a ready instance before the edge answers 503.
pub const NO_INSTANCE_WAIT: Duration = Duration::from_secs(5);

/// Headers that describe one connection, not the message (RFC 9110 §7.6.1); never forwarded.
const HOP_BY_HOP: &[&str] = &[
    "connection",
    "keep-alive",
    "proxy-authenticate",
    "proxy-authorization",
    "proxy-connection",
    "te",
    "trailer",
    "transfer-encoding",
    "upgrade",
];

/// App → the http service the edge sends its traffic to.
#[derive(Default)]
pub struct EdgeTable {
    services: RwLock<HashMap<(String, String), Arc<HttpService>>>,
    /// `{app}.{domain}` host names route to apps when set.
    domain: RwLock<Option<String>>,
}

thread_local! {
    /// One pool of connections to the instances per thread: a connection's task runs on the
    /// thread that opened it, so a request on a serving thread (see morel-control's `listen`)
    /// only ever uses connections that live on that same thread.
    static CLIENT: Client<HttpConnector, Body> = {
        let mut connector = HttpConnector::new();
        connector.set_nodelay(true);
        connector.set_connect_timeout(Some(Duration::from_secs(2)));
        Client::builder(TokioExecutor::new())
            .pool_idle_timeout(Duration::from_secs(30))
            .build(connector)
    };
}

impl EdgeTable {
    /// Routes the app's traffic to `service` from now on; returns the service it replaced.
    pub fn install(
        &self,
        namespace: &str,
        app: &str,
        service: Arc<HttpService>,
    ) -> Option<Arc<HttpService>> {
        let mut s = self.services.write().unwrap_or_else(|e| e.into_inner());
        s.insert((namespace.to_owned(), app.to_owned()), service)
    }

    pub fn remove(&self, namespace: &str, app: &str) -> Option<Arc<HttpService>> {
        let mut s = self.services.write().unwrap_or_else(|e| e.into_inner());
        s.remove(&(namespace.to_owned(), app.to_owned()))
    }

    pub fn get(&self, namespace: &str, app: &str) -> Option<Arc<HttpService>> {
        let s = self.services.read().unwrap_or_else(|e| e.into_inner());
        s.get(&(namespace.to_owned(), app.to_owned())).cloned()
    }

    /// Sets the domain under which `{app}.{domain}` reaches an app (`None`: path routing only).
    pub fn set_domain(&self, domain: Option<String>) {
        let mut d = self.domain.write().unwrap_or_else(|e| e.into_inner());
        *d = domain.map(|d| d.trim_start_matches('.').to_ascii_lowercase());
    }

    /// The app a request's Host header names, if a domain is configured and it matches.
    pub fn app_for_host(&self, headers: &HeaderMap) -> Option<Arc<HttpService>> {
        self.app_for_host_name(headers.get(header::HOST)?.to_str().ok()?)
    }

    /// The app a `Host` header's value names, if a domain is configured and it matches.
    pub fn app_for_host_name(&self, host: &str) -> Option<Arc<HttpService>> {
        let app = {
            let domain = self.domain.read().unwrap_or_else(|e| e.into_inner());
            let domain = domain.as_deref()?;
            let host = host.split(':').next()?.to_ascii_lowercase();
            host.strip_suffix(domain)?.strip_suffix('.')?.to_owned()
        };
        if app.is_empty() || app.contains('.') {
            return None;
        }
        self.get("default", &app)
    }

    /// Proxies `req` to a ready instance of `svc`, sending it `path_and_query`. `prefix` is the
    /// path prefix the edge removed (`/{app}`), passed on as `X-Forwarded-Prefix`.
    pub async fn proxy(
        &self,
        svc: &HttpService,
        req: Request<Body>,
        path_and_query: &str,
        prefix: Option<&str>,
    ) -> Response {
        let (parts, body) = req.into_parts();
        let client_ip = parts
            .extensions
            .get::<ConnectInfo<SocketAddr>>()
            .map(|c| c.0.ip());
        // A request without a body can be retried on another instance when the first cannot
        // be connected to (it died between the pick and the connect).
        let bodyless = parts.headers.get(header::TRANSFER_ENCODING).is_none()
            && parts
                .headers
                .get(header::CONTENT_LENGTH)
                .is_none_or(|v| v.as_bytes() == b"0");
        let mut body = Some(body);
        let mut attempts = 0;
        loop {
            attempts += 1;
            let Some(endpoint) = svc.pick_within(NO_INSTANCE_WAIT).await else {
                return edge_error(
                    StatusCode::SERVICE_UNAVAILABLE,
                    "Unavailable",
                    format!(
                        "no ready instance of {}/{} within {NO_INSTANCE_WAIT:?}",
                        svc.app.name, svc.resource
                    ),
                );
            };
            let uri: Uri = match format!("http://{}{path_and_query}", endpoint.addr).parse() {
                Ok(u) => u,
                Err(e) => {
                    return edge_error(
                        StatusCode::BAD_REQUEST,
                        "BadRequest",
                        format!("cannot forward this path: {e}"),
                    );
                }
            };
            let mut out = Request::builder()
                .method(parts.method.clone())
                .uri(uri)
                .version(axum::http::Version::HTTP_11);
            if let Some(h) = out.headers_mut() {
                *h = forward_headers(&parts.headers, client_ip, prefix);
            }
            let this_body = if bodyless {
                Body::empty()
            } else {
                body.take().unwrap_or_else(Body::empty)
            };
            let out = match out.body(this_body) {
                Ok(r) => r,
                Err(e) => {
                    return edge_error(
                        StatusCode::BAD_REQUEST,
                        "BadRequest",
                        format!("cannot forward this request: {e}"),
                    );
                }
            };
            let sent =
                tokio::time::timeout(svc.request_timeout, CLIENT.with(|c| c.request(out))).await;
            let resp = match sent {
                Ok(Ok(r)) => r,
                Ok(Err(e)) if e.is_connect() && bodyless && attempts < 3 => {
                    tracing::debug!(instance = %endpoint.instance, error = %e, "edge: connect failed, retrying");
                    continue;
                }
                Ok(Err(e)) => {
                    // The client's words stay in the server log, not in a public body.
                    tracing::warn!(instance = %endpoint.instance, error = %e, "edge: instance failed to answer");
                    return edge_error(
                        StatusCode::BAD_GATEWAY,
                        "BadGateway",
                        format!(
                            "instance {} of {} failed to answer",
                            endpoint.instance, svc.resource
                        ),
                    );
                }
                Err(_) => {
                    return edge_error(
                        StatusCode::GATEWAY_TIMEOUT,
                        "Timeout",
                        format!(
                            "{} did not answer within {:?}",
                            svc.resource, svc.request_timeout
                        ),
                    );
                }
            };
            let (mut head, incoming) = resp.into_parts();
            strip_hop_by_hop(&mut head.headers);
            head.headers
                .insert("x-morel-edge", HeaderValue::from_static("1"));
            if let Ok(v) = HeaderValue::from_str(&endpoint.instance.to_string()) {
                head.headers.insert("x-morel-instance", v);
            }
            // The guard travels with the body: the instance counts this request until the
            // last byte is sent (or the client goes away).
            let body = Guarded {
                body: incoming,
                _guard: endpoint.guard,
            };
            return Response::from_parts(head, Body::new(body));
        }
    }
}

/// A response body holding its instance's in-flight guard until the body ends or is dropped.
/// Frames and the size hint pass through as they are, so an answer with a `Content-Length`
/// keeps it (a stream adapter would lose the hint and re-encode the body as chunked).
struct Guarded<G> {
    body: Incoming,
    _guard: G,
}

impl<G: Unpin> HttpBody for Guarded<G> {
    type Data = Bytes;
    type Error = hyper::Error;

    fn poll_frame(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, hyper::Error>>> {
        Pin::new(&mut self.get_mut().body).poll_frame(cx)
    }

    fn is_end_stream(&self) -> bool {
        self.body.is_end_stream()
    }

    fn size_hint(&self) -> SizeHint {
        self.body.size_hint()
    }
}

/// Whether a header describes one connection rather than the message.
/// Whether `name` is a hop-by-hop header (never forwarded), in any case.
pub fn is_hop_by_hop(name: &str) -> bool {
    HOP_BY_HOP.iter().any(|h| h.eq_ignore_ascii_case(name))
}

fn strip_hop_by_hop(headers: &mut HeaderMap) {
    // Headers named by Connection are hop-by-hop too.
    let named: Vec<HeaderName> = headers
        .get_all(header::CONNECTION)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(','))
        .filter_map(|n| HeaderName::from_bytes(n.trim().as_bytes()).ok())
        .collect();
    for n in named {
        headers.remove(n);
    }
    for n in HOP_BY_HOP {
        headers.remove(*n);
    }
}

/// The client's headers as the instance should see them.
fn forward_headers(
    incoming: &HeaderMap,
    client_ip: Option<IpAddr>,
    prefix: Option<&str>,
) -> HeaderMap {
    let mut h = incoming.clone();
    strip_hop_by_hop(&mut h);
    if let Some(ip) = client_ip {
        let xff = match incoming
            .get("x-forwarded-for")
            .and_then(|v| v.to_str().ok())
        {
            Some(prev) if !prev.trim().is_empty() => format!("{prev}, {ip}"),
            _ => ip.to_string(),
        };
        if let Ok(v) = HeaderValue::from_str(&xff) {
            h.insert("x-forwarded-for", v);
        }
    }
    if let Some(host) = incoming.get(header::HOST) {
        h.insert("x-forwarded-host", host.clone());
    }
    h.insert("x-forwarded-proto", HeaderValue::from_static("http"));
    if let Some(p) = prefix.and_then(|p| HeaderValue::from_str(p).ok()) {
        h.insert("x-forwarded-prefix", p);
    }
    h
}

fn edge_error(status: StatusCode, kind: &str, message: String) -> Response {
    let body = serde_json::json!({ "error": message, "type": kind });
    let mut resp = (status, axum::Json(body)).into_response();
    resp.headers_mut()
        .insert("x-morel-edge", HeaderValue::from_static("1"));
    resp
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    #[test]
    fn hop_by_hop_headers_are_dropped_and_forwarding_headers_set() {
        let mut h = HeaderMap::new();
        h.insert(
            header::CONNECTION,
            HeaderValue::from_static("close, x-secret-hop"),
        );
        h.insert("x-secret-hop", HeaderValue::from_static("1"));
        h.insert("keep-alive", HeaderValue::from_static("timeout=5"));
        h.insert("x-forwarded-for", HeaderValue::from_static("10.1.2.3"));
        h.insert(header::HOST, HeaderValue::from_static("web.example.test"));
        h.insert("x-app", HeaderValue::from_static("kept"));
        let out = forward_headers(&h, Some("127.0.0.9".parse().unwrap()), Some("/web"));
        assert!(out.get(header::CONNECTION).is_none());
        assert!(out.get("x-secret-hop").is_none());
        assert!(out.get("keep-alive").is_none());
        assert_eq!(out["x-forwarded-for"], "10.1.2.3, 127.0.0.9");
        assert_eq!(out["x-forwarded-host"], "web.example.test");
        assert_eq!(out["x-forwarded-prefix"], "/web");
        assert_eq!(out["x-app"], "kept");
    }

    #[test]
    fn host_names_map_to_apps_only_under_the_domain() {
        let t = EdgeTable::default();
        let mut h = HeaderMap::new();
        h.insert(header::HOST, HeaderValue::from_static("web.apps.test:8080"));
        // No domain configured: no host routing at all.
        assert!(t.app_for_host(&h).is_none());
        t.set_domain(Some("apps.test".into()));
        // Configured, but no such app is routed.
        assert!(t.app_for_host(&h).is_none());
    }
}
