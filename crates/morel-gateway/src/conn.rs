//! Limits on the public listener's connections: how long a request head, a pause in a request
//! body and an idle keep-alive connection may take, and how many connections are served at
//! once. Read once from the environment (`morel_core::env_vars`), with the defaults below.

use std::sync::OnceLock;
use std::time::Duration;

use morel_core::env_vars::{
    MOREL_BODY_TIMEOUT_MS, MOREL_HEADER_TIMEOUT_MS, MOREL_IDLE_TIMEOUT_MS, MOREL_MAX_CONNECTIONS,
};

#[derive(Clone, Copy, Debug, PartialEq)]
pub struct ConnLimits {
    /// From a request's first byte to the end of its head.
    pub header: Duration,
    /// The longest pause between reads of a request body (408 past it).
    pub body: Duration,
    /// The longest wait for the next request on a keep-alive connection.
    pub idle: Duration,
    /// Connections served at once; more are answered 503.
    pub max_connections: usize,
}

impl Default for ConnLimits {
    fn default() -> Self {
        ConnLimits {
            header: Duration::from_secs(10),
            body: Duration::from_secs(10),
            idle: Duration::from_secs(120),
            max_connections: 10_000,
        }
    }
}

impl ConnLimits {
    /// The defaults, overridden by the environment where it sets a positive number.
    pub fn from_env() -> ConnLimits {
        let d = ConnLimits::default();
        let ms = |name: &str, default: Duration| {
            std::env::var(name)
                .ok()
                .and_then(|v| v.trim().parse::<u64>().ok())
                .filter(|v| *v > 0)
                .map(Duration::from_millis)
                .unwrap_or(default)
        };
        ConnLimits {
            header: ms(MOREL_HEADER_TIMEOUT_MS, d.header),
            body: ms(MOREL_BODY_TIMEOUT_MS, d.body),
            idle: ms(MOREL_IDLE_TIMEOUT_MS, d.idle),
            max_connections: std::env::var(MOREL_MAX_CONNECTIONS)
                .ok()
                .and_then(|v| v.trim().parse::<usize>().ok())
                .filter(|v| *v > 0)
                .unwrap_or(d.max_connections),
        }
    }
}

/// This process's limits ([`ConnLimits::from_env`], read once).
pub fn conn_limits() -> &'static ConnLimits {
    static LIMITS: OnceLock<ConnLimits> = OnceLock::new();
    LIMITS.get_or_init(ConnLimits::from_env)
}

/// The answer to a request whose body ended before it was whole: 400, and the connection
/// closes.
pub const BODY_INCOMPLETE_ANSWER: &str = "the request body ended before it was whole (short of its Content-Length, or a malformed chunk)";

/// The answer to a request whose body stalled: 408, and the connection closes.
pub const BODY_TIMEOUT_ANSWER: &str =
    "the request body stopped arriving (a pause longer than the body timeout)";

/// The 408 answer to a request whose body stalled; the connection closes after it.
fn body_timeout_response() -> axum::response::Response {
    let mut resp = crate::call::error(
        axum::http::StatusCode::REQUEST_TIMEOUT,
        "RequestTimeout",
        BODY_TIMEOUT_ANSWER,
    );
    resp.headers_mut().insert(
        axum::http::header::CONNECTION,
        axum::http::HeaderValue::from_static("close"),
    );
    resp
}

/// Middleware for every listener's router: a request body that pauses longer than the body
/// timeout ends in an error for whatever reads it, and the request is answered 408 (the
/// connection then closes), whatever the handler made of the error.
pub async fn limit_body_pauses(
    req: axum::extract::Request,
    next: axum::middleware::Next,
) -> axum::response::Response {
    let stalled = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
    let req = req.map(|body| {
        axum::body::Body::new(PausingBody {
            inner: body,
            pause: conn_limits().body,
            due: None,
            stalled: stalled.clone(),
        })
    });
    let resp = next.run(req).await;
    if stalled.load(std::sync::atomic::Ordering::Relaxed) {
        return body_timeout_response();
    }
    resp
}

/// A request body whose reads fail once it pauses longer than `pause`.
struct PausingBody {
    inner: axum::body::Body,
    pause: Duration,
    due: Option<std::pin::Pin<Box<tokio::time::Sleep>>>,
    stalled: std::sync::Arc<std::sync::atomic::AtomicBool>,
}

impl hyper::body::Body for PausingBody {
    type Data = bytes::Bytes;
    type Error = axum::Error;

    fn poll_frame(
        mut self: std::pin::Pin<&mut Self>,
        cx: &mut std::task::Context<'_>,
    ) -> std::task::Poll<Option<Result<hyper::body::Frame<Self::Data>, Self::Error>>> {
        use std::future::Future;
        use std::task::Poll;
        let this = &mut *self;
        match std::pin::Pin::new(&mut this.inner).poll_frame(cx) {
            Poll::Ready(frame) => {
                this.due = None;
                Poll::Ready(frame)
            }
            Poll::Pending => {
                let pause = this.pause;
                let due = this
                    .due
                    .get_or_insert_with(|| Box::pin(tokio::time::sleep(pause)));
                if due.as_mut().poll(cx).is_ready() {
                    this.stalled
                        .store(true, std::sync::atomic::Ordering::Relaxed);
                    return Poll::Ready(Some(Err(axum::Error::new(BODY_TIMEOUT_ANSWER))));
                }
                Poll::Pending
            }
        }
    }

    fn is_end_stream(&self) -> bool {
        self.inner.is_end_stream()
    }

    fn size_hint(&self) -> hyper::body::SizeHint {
        self.inner.size_hint()
    }
}
