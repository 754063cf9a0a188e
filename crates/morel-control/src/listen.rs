//! The public listener, served by one thread per core.
//!
//! Each serving thread runs a single-threaded tokio runtime and serves the connections it is
//! dealt, start to end: a request is read, routed, handled and answered on one thread. On a multi-threaded runtime the same request
//! hops between worker threads (the connection, a worker's reply reader, the waker of a parked
//! sibling), and every hop costs a thread wake-up; measured on the call path, that was a third
//! of the server's CPU per request (bench/NOTES.md, "one thread per core").
//!
//! The control API (`/api/…`) and the dashboard are handed to the main runtime, which stays
//! multi-threaded: their handlers write files, compile and start deploys whose tasks outlive
//! the request, none of which should hold up a serving thread. Tasks a call starts on its
//! serving thread (a worker started from zero, and its pipe readers) stay there; a serving
//! thread's runtime therefore runs until the process exits, also after `serve` returned.

use std::convert::Infallible;
use std::future::Future;
use std::net::SocketAddr;
use std::pin::Pin;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering};
use std::task::{Context, Poll};
use std::time::Duration;

use axum::Router;
use axum::body::Body;
use axum::extract::ConnectInfo;
use axum::response::IntoResponse;
use hyper::body::Incoming;
use hyper_util::rt::TokioIo;
use tokio::sync::{Notify, mpsc, watch};
use tower_service::Service;

/// How many serving threads: `MOREL_HTTP_THREADS`, else one per available core.
pub fn serving_threads() -> usize {
    std::env::var(morel_core::env_vars::MOREL_HTTP_THREADS)
        .ok()
        .and_then(|v| v.parse::<usize>().ok())
        .filter(|n| *n > 0)
        .unwrap_or_else(|| {
            std::thread::available_parallelism()
                .map(|n| n.get())
                .unwrap_or(1)
        })
}

/// Serves `router` on `listener` with [`serving_threads`] threads until `shutdown` resolves,
/// then stops accepting and waits (up to `grace`) for open requests to be answered.
///
/// Connections are accepted here and dealt to the serving threads in turn, so each thread gets
/// its share (threads accepting from one socket themselves can end up with all of them).
///
/// With a `lane`, each connection starts in it (function calls and edge requests answered
/// straight off the socket, see morel-gateway's `lane`) and moves to hyper and `router` at the
/// first request the lane hands back.
///
/// Every listener of Morel is served here (`morel up`, `server`, `gateway` and `agent`), so
/// each has the same connection limits (morel-gateway's `conn`): the cap on open connections,
/// the header timeout (the lane's, or [`Replay`]'s), the body timeout (the lane's, or
/// `limit_body_pauses` around `router`) and the idle timeout (the lane's, or hyper's).
pub async fn serve(
    listener: tokio::net::TcpListener,
    router: Router,
    lane: Option<morel_gateway::Lane>,
    shutdown: impl Future<Output = ()> + Send + 'static,
    grace: Duration,
) -> std::io::Result<()> {
    let lane = lane.filter(|_| lane_enabled()).map(Arc::new);
    let router = router.layer(axum::middleware::from_fn(morel_gateway::limit_body_pauses));
    serve_on(serving_threads(), listener, router, lane, shutdown, grace).await
}

/// `MOREL_FAST_LANE=0` turns the lane off (everything through hyper and the router).
fn lane_enabled() -> bool {
    std::env::var(morel_core::env_vars::MOREL_FAST_LANE).map_or(true, |v| v != "0")
}

async fn serve_on(
    threads_wanted: usize,
    listener: tokio::net::TcpListener,
    router: Router,
    lane: Option<Arc<morel_gateway::Lane>>,
    shutdown: impl Future<Output = ()> + Send + 'static,
    grace: Duration,
) -> std::io::Result<()> {
    let main = tokio::runtime::Handle::current();
    let (stop_tx, stop_rx) = watch::channel(false);
    let mut drained = Vec::new();
    let mut homes = Vec::new();
    let (threads, receivers): (Vec<_>, Vec<_>) = (0..threads_wanted.max(1))
        .map(|_| mpsc::unbounded_channel::<Dealt>())
        .unzip();
    let threads = Arc::new(threads);
    for (i, conn_rx) in receivers.into_iter().enumerate() {
        let served = Served {
            router: router.clone(),
            main: main.clone(),
            lane: lane.clone(),
            threads: threads.clone(),
        };
        let stop = stop_rx.clone();
        let (done_tx, done_rx) = tokio::sync::oneshot::channel::<()>();
        drained.push(done_rx);
        let rt = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()?;
        homes.push(rt.handle().clone());
        std::thread::Builder::new()
            .name(format!("morel-http-{i}"))
            .spawn(move || {
                morel_runtime_process::serve_replies_here(i);
                rt.block_on(async move {
                    tokio::spawn(keep_timer_wheel_armed());
                    serve_thread(conn_rx, served, stop, grace).await;
                    let _ = done_tx.send(());
                    // Tasks started here (workers' pipe readers) run until the process exits.
                    std::future::pending::<()>().await;
                })
            })?;
    }
    morel_runtime_process::read_replies_on(homes);
    let mut next = 0;
    tokio::pin!(shutdown);
    loop {
        tokio::select! {
            accepted = listener.accept() => match accepted {
                Ok((stream, peer)) => {
                    // Past the cap: a clear refusal, then the socket closes.
                    if OPEN_CONNECTIONS.load(Ordering::Relaxed)
                        >= morel_gateway::conn_limits().max_connections
                    {
                        let _ = stream.try_write(TOO_MANY);
                        continue;
                    }
                    let _ = stream.set_nodelay(true);
                    // Handed over as a plain socket: it registers with its thread's runtime.
                    match stream.into_std() {
                        Ok(stream) => {
                            let _ = threads[next % threads.len()].send((stream, peer));
                            next += 1;
                        }
                        Err(e) => tracing::warn!(error = %e, "cannot hand a connection over"),
                    }
                }
                // Out of file descriptors and the like: wait a little rather than spin.
                Err(e) => {
                    tracing::warn!(error = %e, "accept failed");
                    tokio::time::sleep(Duration::from_millis(50)).await;
                }
            },
            () = &mut shutdown => break,
        }
    }
    drop(listener);
    let _ = stop_tx.send(true);
    for d in drained {
        let _ = d.await;
    }
    Ok(())
}

/// A connection dealt to a serving thread: by the accept loop, or moved by another thread.
type Dealt = (std::net::TcpStream, SocketAddr);

/// What a serving thread answers with: the lane, the router, the main runtime for the
/// control API, and every serving thread's queue, to move a connection to (see the lane's
/// `LaneEnd::Move`).
#[derive(Clone)]
struct Served {
    router: Router,
    main: tokio::runtime::Handle,
    lane: Option<Arc<morel_gateway::Lane>>,
    threads: Arc<Vec<mpsc::UnboundedSender<Dealt>>>,
}

/// Keeps a timer due within a second on this thread's timer wheel, for as long as the thread
/// runs. Every call arms a deadline (seconds away); tokio's driver writes to its own `eventfd`
/// to re-plan its sleep whenever a timer is armed earlier than the wheel's next wake-up, which
/// is every time the wheel was empty when the thread last went to sleep: 0.14 extra `write`s
/// and `epoll_wait`s per Python call under load (bench/NOTES.md). With this timer the next
/// wake-up is never further than a second away, so a call's deadline never moves it.
async fn keep_timer_wheel_armed() {
    loop {
        tokio::time::sleep(Duration::from_millis(500)).await;
    }
}

/// One serving thread: serves the connections it is dealt until told to stop, then drains them.
async fn serve_thread(
    mut conns: mpsc::UnboundedReceiver<Dealt>,
    served: Served,
    mut stop: watch::Receiver<bool>,
    grace: Duration,
) {
    let open = Arc::new(Open::default());
    let conn_stop = stop.clone();
    let serve = |(stream, peer): Dealt| match tokio::net::TcpStream::from_std(stream) {
        Ok(stream) => {
            tokio::spawn(serve_connection(
                stream,
                peer,
                served.clone(),
                conn_stop.clone(),
                open.clone(),
            ));
        }
        Err(e) => tracing::warn!(error = %e, "cannot serve a connection"),
    };
    loop {
        tokio::select! {
            conn = conns.recv() => match conn {
                Some(dealt) => serve(dealt),
                None => break,
            },
            _ = stop.changed() => break,
        }
    }
    // A connection another thread moved here just before the stop is still served (it sees
    // the stop and closes between requests); nothing more can be queued after `close`.
    conns.close();
    while let Ok(dealt) = conns.try_recv() {
        serve(dealt);
    }
    let _ = tokio::time::timeout(grace, open.idle()).await;
}

/// Connections open on one serving thread, for the drain at shutdown.
#[derive(Default)]
struct Open {
    count: AtomicUsize,
    closed: Notify,
}

impl Open {
    async fn idle(&self) {
        loop {
            let notified = self.closed.notified();
            if self.count.load(Ordering::SeqCst) == 0 {
                return;
            }
            notified.await;
        }
    }
}

async fn serve_connection(
    mut stream: tokio::net::TcpStream,
    peer: SocketAddr,
    served: Served,
    mut stop: watch::Receiver<bool>,
    open: Arc<Open>,
) {
    open.count.fetch_add(1, Ordering::SeqCst);
    OPEN_CONNECTIONS.fetch_add(1, Ordering::Relaxed);
    let handed_off = match &served.lane {
        Some(lane) => loop {
            match lane.serve(&mut stream, peer, &mut stop).await {
                morel_gateway::LaneEnd::Closed => break None,
                morel_gateway::LaneEnd::HandOff(read) => break Some((read, stream)),
                morel_gateway::LaneEnd::Move(to) => match move_to(&served, to, stream, peer) {
                    None => break None,
                    // The thread is gone (stopping): go on serving here.
                    Some(back) => stream = back,
                },
            }
        },
        None => Some((Vec::new(), stream)),
    };
    if let Some((read, stream)) = handed_off {
        serve_with_hyper(read, stream, peer, served, stop).await;
    }
    OPEN_CONNECTIONS.fetch_sub(1, Ordering::Relaxed);
    if open.count.fetch_sub(1, Ordering::SeqCst) == 1 {
        open.closed.notify_waiters();
    }
}

/// Connections being served, on every serving thread (moves between threads keep counting).
static OPEN_CONNECTIONS: AtomicUsize = AtomicUsize::new(0);

/// What a connection past the cap gets before it is closed.
const TOO_MANY: &[u8] = b"HTTP/1.1 503 Service Unavailable\r\ncontent-type: application/json\r\nretry-after: 1\r\nconnection: close\r\ncontent-length: 73\r\n\r\n{\"error\":\"the server has too many open connections\",\"type\":\"Unavailable\"}";

/// Moves a connection to serving thread `to`; gives it back when that thread takes no more.
fn move_to(
    served: &Served,
    to: usize,
    stream: tokio::net::TcpStream,
    peer: SocketAddr,
) -> Option<tokio::net::TcpStream> {
    let Some(queue) = served.threads.get(to) else {
        return Some(stream);
    };
    // Leaves this thread's reactor; the socket stays non-blocking for the next one.
    let std_stream = match stream.into_std() {
        Ok(s) => s,
        Err(e) => {
            tracing::warn!(error = %e, "cannot move a connection");
            return None;
        }
    };
    match queue.send((std_stream, peer)) {
        Ok(()) => {
            morel_metrics::global().connection_moved();
            None
        }
        Err(mpsc::error::SendError((std_stream, _))) => {
            tokio::net::TcpStream::from_std(std_stream).ok()
        }
    }
}

/// Serves a connection with hyper and the router until it closes or the server stops.
async fn serve_with_hyper(
    read: Vec<u8>,
    stream: tokio::net::TcpStream,
    peer: SocketAddr,
    served: Served,
    mut stop: watch::Receiver<bool>,
) {
    let clock = Arc::new(HeadClock::default());
    let stream = Replay::new(read, stream, clock.clone());
    let service = hyper::service::service_fn(move |mut req: hyper::Request<Incoming>| {
        // The peer address is what the edge forwards as X-Forwarded-For.
        req.extensions_mut().insert(ConnectInfo(peer));
        let mut router = served.router.clone();
        // Control-plane requests (the API, seed 001's function API, seed 000's routes outside
        // `/api/`, `/metrics`, the dashboard) run on the main runtime; only where a request
        // runs depends on this, not how it is routed.
        let main = morel_gateway::is_control_path(req.uri().path()).then(|| served.main.clone());
        let clock = clock.clone();
        async move {
            let req = req.map(Body::new);
            let answer = async move {
                match main {
                    None => router.call(req).await.unwrap_or_else(|e| match e {}),
                    Some(main) => match main.spawn(async move { router.call(req).await }).await {
                        Ok(resp) => resp.unwrap_or_else(|e| match e {}),
                        Err(e) => crate::ApiError::internal("running the request's handler", &e)
                            .into_response(),
                    },
                }
            };
            Ok::<_, Infallible>(clock.answering(answer).await)
        }
    });
    let conn = hyper::server::conn::http1::Builder::new()
        .timer(hyper_util::rt::TokioTimer::new())
        // hyper's header timeout also bounds the wait for the next request on a kept-alive
        // connection, so it is the idle timeout here (clients pool connections for a minute
        // or more); a head arriving slowly is cut at the header timeout by `Replay`.
        .header_read_timeout({
            let l = morel_gateway::conn_limits();
            l.idle.max(l.header)
        })
        .serve_connection(TokioIo::new(stream), service)
        .with_upgrades();
    tokio::pin!(conn);
    let mut stopping = *stop.borrow();
    if stopping {
        conn.as_mut().graceful_shutdown();
    }
    loop {
        tokio::select! {
            _ = conn.as_mut() => break,
            _ = stop.changed(), if !stopping => {
                stopping = true;
                conn.as_mut().graceful_shutdown();
            }
        }
    }
}

/// Where a hyper-served connection stands, shared by its service and its [`Replay`]: hyper's
/// own timer bounds the wait for a request's first byte (the idle timeout), this bounds a head
/// from its first byte to the service's call (the header timeout).
#[derive(Default)]
struct HeadClock {
    /// Requests handed to the service so far.
    started: AtomicU64,
    /// A request is being answered (bytes read now are its body, not a head), or the
    /// connection was upgraded (to a WebSocket, say) and carries no more HTTP.
    answering: AtomicBool,
}

impl HeadClock {
    /// Runs the answer to one request.
    async fn answering(
        &self,
        answer: impl Future<Output = axum::response::Response>,
    ) -> axum::response::Response {
        self.started.fetch_add(1, Ordering::Relaxed);
        self.answering.store(true, Ordering::Relaxed);
        let resp = answer.await;
        if resp.status() != hyper::StatusCode::SWITCHING_PROTOCOLS {
            self.answering.store(false, Ordering::Relaxed);
        }
        resp
    }
}

/// A connection whose first bytes were already read (by the lane): reads give those back
/// first, then read from the socket. A request head must be whole within the header timeout
/// of its first byte ([`HeadClock`]); past it, reads fail and hyper closes the connection.
struct Replay {
    read: Vec<u8>,
    at: usize,
    stream: tokio::net::TcpStream,
    clock: Arc<HeadClock>,
    /// The head being read must be whole by then; with the request count when it started.
    head_due: Option<(Pin<Box<tokio::time::Sleep>>, u64)>,
}

impl Replay {
    fn new(read: Vec<u8>, stream: tokio::net::TcpStream, clock: Arc<HeadClock>) -> Self {
        let mut replay = Replay {
            read,
            at: 0,
            stream,
            clock,
            head_due: None,
        };
        // Bytes the lane read are the start of a head.
        if !replay.read.is_empty() {
            replay.head_started();
        }
        replay
    }

    fn head_started(&mut self) {
        let due = tokio::time::sleep(morel_gateway::conn_limits().header);
        self.head_due = Some((Box::pin(due), self.clock.started.load(Ordering::Relaxed)));
    }

    /// Keeps the head deadline true to the connection's state after a read that was `ready`
    /// with `got` bytes (or pending); says whether the head is overdue.
    fn head_overdue(&mut self, cx: &mut Context<'_>, ready: bool, got: bool) -> bool {
        let started = self.clock.started.load(Ordering::Relaxed);
        if self.head_due.as_ref().is_some_and(|(_, at)| *at != started)
            || self.clock.answering.load(Ordering::Relaxed)
        {
            // The head was whole (its request reached the service), or this is a body.
            self.head_due = None;
            return false;
        }
        if ready {
            if got && self.head_due.is_none() {
                self.head_started();
            }
            return false;
        }
        match &mut self.head_due {
            Some((due, _)) => due.as_mut().poll(cx).is_ready(),
            None => false,
        }
    }
}

impl tokio::io::AsyncRead for Replay {
    fn poll_read(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut tokio::io::ReadBuf<'_>,
    ) -> Poll<std::io::Result<()>> {
        let this = self.get_mut();
        if this.at < this.read.len() {
            let n = (this.read.len() - this.at).min(buf.remaining());
            buf.put_slice(&this.read[this.at..this.at + n]);
            this.at += n;
            if this.at == this.read.len() {
                this.read = Vec::new();
                this.at = 0;
            }
            return Poll::Ready(Ok(()));
        }
        let before = buf.filled().len();
        let read = Pin::new(&mut this.stream).poll_read(cx, buf);
        let got = buf.filled().len() > before;
        if this.head_overdue(cx, read.is_ready(), got) {
            return Poll::Ready(Err(std::io::Error::new(
                std::io::ErrorKind::TimedOut,
                "the request head did not arrive within the header timeout",
            )));
        }
        read
    }
}

impl tokio::io::AsyncWrite for Replay {
    fn poll_write(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<std::io::Result<usize>> {
        Pin::new(&mut self.get_mut().stream).poll_write(cx, buf)
    }

    fn poll_write_vectored(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[std::io::IoSlice<'_>],
    ) -> Poll<std::io::Result<usize>> {
        Pin::new(&mut self.get_mut().stream).poll_write_vectored(cx, bufs)
    }

    fn is_write_vectored(&self) -> bool {
        self.stream.is_write_vectored()
    }

    fn poll_flush(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        Pin::new(&mut self.get_mut().stream).poll_flush(cx)
    }

    fn poll_shutdown(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        Pin::new(&mut self.get_mut().stream).poll_shutdown(cx)
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;
    use axum::routing::get;

    fn thread_name() -> String {
        std::thread::current()
            .name()
            .unwrap_or("unnamed")
            .to_owned()
    }

    async fn get_text(client: &reqwest::Client, url: String) -> String {
        client.get(url).send().await.unwrap().text().await.unwrap()
    }

    async fn start(
        threads: usize,
    ) -> (
        String,
        tokio::sync::oneshot::Sender<()>,
        tokio::task::JoinHandle<std::io::Result<()>>,
    ) {
        let router = Router::new()
            .route("/where", get(|| async { thread_name() }))
            .route("/api/where", get(|| async { thread_name() }))
            .route("/functions/where", get(|| async { thread_name() }))
            .route(
                "/slow",
                get(|| async {
                    tokio::time::sleep(Duration::from_millis(300)).await;
                    "done"
                }),
            );
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let url = format!("http://{}", listener.local_addr().unwrap());
        let (stop_tx, stop_rx) = tokio::sync::oneshot::channel::<()>();
        let server = tokio::spawn(serve_on(
            threads,
            listener,
            router,
            None,
            async move {
                let _ = stop_rx.await;
            },
            Duration::from_secs(5),
        ));
        (url, stop_tx, server)
    }

    /// Connections are dealt to the serving threads in turn; the control API runs on the main
    /// runtime, not on a serving thread.
    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn connections_are_dealt_to_every_thread_and_the_api_runs_on_main() {
        let (url, stop, server) = start(3).await;
        // No pooling: every request is a new connection.
        let client = reqwest::Client::builder()
            .pool_max_idle_per_host(0)
            .build()
            .unwrap();
        let mut seen = std::collections::BTreeSet::new();
        for _ in 0..6 {
            seen.insert(get_text(&client, format!("{url}/where")).await);
        }
        let want: std::collections::BTreeSet<String> =
            (0..3).map(|i| format!("morel-http-{i}")).collect();
        assert_eq!(seen, want);
        for path in ["/api/where", "/functions/where"] {
            let ran_on = get_text(&client, format!("{url}{path}")).await;
            assert!(!ran_on.starts_with("morel-http-"), "{path} ran on {ran_on}");
        }
        stop.send(()).unwrap();
        server.await.unwrap().unwrap();
    }

    /// A request in flight when shutdown starts is answered; new connections are refused.
    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn shutdown_answers_the_requests_in_flight() {
        let (url, stop, server) = start(2).await;
        let client = reqwest::Client::new();
        let slow = tokio::spawn({
            let client = client.clone();
            let url = url.clone();
            async move { get_text(&client, format!("{url}/slow")).await }
        });
        tokio::time::sleep(Duration::from_millis(100)).await;
        stop.send(()).unwrap();
        assert_eq!(slow.await.unwrap(), "done");
        server.await.unwrap().unwrap();
        let refused = reqwest::Client::new()
            .get(format!("{url}/where"))
            .send()
            .await;
        assert!(refused.is_err(), "a connection after shutdown was served");
    }
}
