//! `morel-bench-ref`: the HTTP limit reference of the benchmarks. A minimal hyper server that
//! answers every request with its own body (as `application/json`), over HTTP/1.1 keep-alive.
//! Prints `listening on ADDR` once bound; `--listen 127.0.0.1:0` picks a free port. Without
//! `--listen`, a set `PORT` ([`PORT_ENV`]) means `127.0.0.1:$PORT`, so that Morel can run it as
//! an `http` resource (the backend of the edge rows); it answers any path, `/health` included.

#![allow(clippy::print_stdout, clippy::print_stderr)]

use std::convert::Infallible;
use std::io::Write;
use std::net::SocketAddr;

use bytes::Bytes;
use http_body_util::{BodyExt, Full};
use hyper::body::Incoming;
use hyper::header::{CONTENT_TYPE, HeaderValue};
use hyper::server::conn::http1;
use hyper::service::service_fn;
use hyper::{Request, Response, StatusCode};
use hyper_util::rt::TokioIo;

async fn echo(req: Request<Incoming>) -> Result<Response<Full<Bytes>>, Infallible> {
    let mut resp = match req.into_body().collect().await {
        Ok(body) => Response::new(Full::new(body.to_bytes())),
        Err(_) => {
            let mut r = Response::new(Full::new(Bytes::from_static(b"{\"error\":\"bad body\"}")));
            *r.status_mut() = StatusCode::BAD_REQUEST;
            r
        }
    };
    resp.headers_mut()
        .insert(CONTENT_TYPE, HeaderValue::from_static("application/json"));
    Ok(resp)
}

/// The port an `http` resource is given by Morel's agent.
const PORT_ENV: &str = "PORT";

fn main() -> std::process::ExitCode {
    let port = std::env::var(PORT_ENV)
        .ok()
        .and_then(|p| p.parse::<u16>().ok())
        .unwrap_or(0);
    let mut listen: SocketAddr = ([127, 0, 0, 1], port).into();
    let mut args = std::env::args().skip(1);
    while let Some(a) = args.next() {
        match (a.as_str(), args.next().map(|v| v.parse())) {
            ("--listen", Some(Ok(v))) => listen = v,
            _ => {
                eprintln!("usage: morel-bench-ref [--listen 127.0.0.1:0]");
                return std::process::ExitCode::FAILURE;
            }
        }
    }
    let rt = match tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
    {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!("morel-bench-ref: {e}");
            return std::process::ExitCode::FAILURE;
        }
    };
    if let Err(e) = rt.block_on(serve(listen)) {
        eprintln!("morel-bench-ref: {e}");
        return std::process::ExitCode::FAILURE;
    }
    std::process::ExitCode::SUCCESS
}

async fn serve(listen: SocketAddr) -> std::io::Result<()> {
    let listener = tokio::net::TcpListener::bind(listen).await?;
    println!("listening on {}", listener.local_addr()?);
    std::io::stdout().flush()?;
    loop {
        let (stream, _) = listener.accept().await?;
        let _ = stream.set_nodelay(true);
        tokio::spawn(async move {
            let _ = http1::Builder::new()
                .serve_connection(TokioIo::new(stream), service_fn(echo))
                .await;
        });
    }
}
