//! An answer given before its request's body was read to the end (a refusal without a token, a
//! 404, a 413) either finishes reading the body or says `Connection: close`.
//!
//! hyper cannot read the next request on a connection until the previous body is consumed.
//! When a handler drops a body unread, hyper reads what it has at hand and otherwise closes
//! the connection, but only after it may already have written the answer's head without
//! `Connection: close`; a client can pool the connection in that instant and its next request
//! fails ("connection closed before message completed"). So this layer, outermost on the
//! router, takes an unread body back once the handler has answered: a small remainder
//! (up to [`DRAIN_BYTES`], arriving within [`DRAIN_TIME`]) is read and the connection kept;
//! anything more is left unread and the answer says `Connection: close`.

use std::pin::Pin;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex, PoisonError};
use std::task::{Context, Poll};
use std::time::Duration;

use axum::body::{Body, Bytes};
use axum::extract::Request;
use axum::http::{HeaderValue, header};
use axum::middleware::Next;
use axum::response::Response;
use http_body::{Body as HttpBody, Frame, SizeHint};
use http_body_util::BodyExt;

/// Most of an unread body read to keep its connection.
const DRAIN_BYTES: u64 = 64 << 10;
/// Longest wait for that remainder to arrive.
const DRAIN_TIME: Duration = Duration::from_millis(100);

pub async fn close_unless_body_read(req: Request, next: Next) -> Response {
    let (parts, body) = req.into_parts();
    if body.is_end_stream() {
        return next.run(Request::from_parts(parts, body)).await;
    }
    let watch = Arc::new(Watch::default());
    let body = Body::new(Watched {
        inner: body,
        watch: watch.clone(),
    });
    let mut response = next.run(Request::from_parts(parts, body)).await;
    if !watch.read.load(Ordering::Acquire) {
        let unread = watch
            .unread
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .take();
        let drained = match unread {
            Some(body) => drain(body).await,
            // Still held (a handler that goes on reading after it answered): no telling.
            None => false,
        };
        if !drained {
            response
                .headers_mut()
                .insert(header::CONNECTION, HeaderValue::from_static("close"));
        }
    }
    response
}

/// Reads `body` to its end if that is at most [`DRAIN_BYTES`] arriving within [`DRAIN_TIME`].
async fn drain(mut body: Body) -> bool {
    if body.size_hint().lower() > DRAIN_BYTES {
        return false;
    }
    let read = async {
        let mut seen = 0u64;
        while let Some(frame) = body.frame().await {
            let Ok(frame) = frame else { return false };
            seen += frame.data_ref().map_or(0, |d| d.len() as u64);
            if seen > DRAIN_BYTES {
                return false;
            }
        }
        true
    };
    tokio::time::timeout(DRAIN_TIME, read)
        .await
        .unwrap_or(false)
}

/// What the layer learns of a body the handler had.
#[derive(Default)]
struct Watch {
    /// The body was read to its end.
    read: AtomicBool,
    /// The body, when the handler dropped it before its end.
    unread: Mutex<Option<Body>>,
}

/// A request body that records whether it was read to its end, and hands itself back to the
/// layer when dropped before.
struct Watched {
    inner: Body,
    watch: Arc<Watch>,
}

impl HttpBody for Watched {
    type Data = Bytes;
    type Error = axum::Error;

    fn poll_frame(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, axum::Error>>> {
        let polled = Pin::new(&mut self.inner).poll_frame(cx);
        if matches!(polled, Poll::Ready(None)) || self.inner.is_end_stream() {
            self.watch.read.store(true, Ordering::Release);
        }
        polled
    }

    fn is_end_stream(&self) -> bool {
        self.inner.is_end_stream()
    }

    fn size_hint(&self) -> SizeHint {
        self.inner.size_hint()
    }
}

impl Drop for Watched {
    fn drop(&mut self) {
        if !self.watch.read.load(Ordering::Acquire) {
            let body = std::mem::replace(&mut self.inner, Body::empty());
            *self
                .watch
                .unread
                .lock()
                .unwrap_or_else(PoisonError::into_inner) = Some(body);
        }
    }
}
