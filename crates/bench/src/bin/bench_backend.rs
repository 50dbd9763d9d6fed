//! `bench-backend`: the upstream of every benchmark scenario.
//!
//! One port serves HTTP/1.1 and h2c (prior knowledge) with hyper:
//! - `content-type: application/grpc…` → gRPC unary echo: the request's message comes
//!   back framed, then trailers `grpc-status: 0`;
//! - a path starting with `/echo` → the request body streamed back as the response body
//!   (the large-body scenario: nothing is buffered whole);
//! - anything else → `200` with a small fixed body.

use std::convert::Infallible;
use std::net::SocketAddr;

use anyhow::Context;
use bytes::Bytes;
use clap::Parser;
use http::{HeaderMap, HeaderValue, Request, Response};
use http_body_util::{combinators::BoxBody, BodyExt, Full, StreamBody};
use hyper::body::{Frame, Incoming};
use hyper::service::service_fn;
use hyper_util::rt::{TokioExecutor, TokioIo};
use hyper_util::server::conn::auto;
use tokio::net::TcpListener;

/// The small response body (13 bytes), the same for every target.
const SMALL_BODY: &[u8] = b"hello, ferry\n";

type BoxError = Box<dyn std::error::Error + Send + Sync>;
type Body = BoxBody<Bytes, BoxError>;

#[derive(Parser, Debug)]
#[command(about = "Loopback backend for bench/: HTTP/1.1 + h2c, echo and gRPC unary echo")]
struct Args {
    /// Address to listen on (loopback only).
    #[arg(long, default_value = "127.0.0.1:62080")]
    listen: SocketAddr,
    /// Tokio worker threads.
    #[arg(long, default_value_t = 1)]
    threads: usize,
}

fn main() -> anyhow::Result<()> {
    let args = Args::parse();
    anyhow::ensure!(
        args.listen.ip().is_loopback(),
        "bench-backend listens on loopback only, not {}",
        args.listen
    );
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(args.threads.max(1))
        .enable_all()
        .build()
        .context("building the tokio runtime")?;
    runtime.block_on(serve(args.listen))
}

async fn serve(addr: SocketAddr) -> anyhow::Result<()> {
    let listener = TcpListener::bind(addr)
        .await
        .with_context(|| format!("binding {addr}"))?;
    println!("bench-backend listening on {addr}");
    let mut builder = auto::Builder::new(TokioExecutor::new());
    builder.http2().max_concurrent_streams(1024);
    loop {
        let (stream, _) = match listener.accept().await {
            Ok(accepted) => accepted,
            Err(e) => {
                eprintln!("accept: {e}");
                continue;
            }
        };
        let _ = stream.set_nodelay(true);
        let builder = builder.clone();
        tokio::spawn(async move {
            let io = TokioIo::new(stream);
            // Errors here are clients going away mid-request; nothing to do.
            let _ = builder.serve_connection(io, service_fn(handle)).await;
        });
    }
}

async fn handle(req: Request<Incoming>) -> Result<Response<Body>, Infallible> {
    let is_grpc = req
        .headers()
        .get(http::header::CONTENT_TYPE)
        .is_some_and(|v| v.as_bytes().starts_with(b"application/grpc"));
    if is_grpc {
        return Ok(grpc_echo(req).await);
    }
    if req.uri().path().starts_with("/echo") {
        let body = req.into_body().map_err(BoxError::from).boxed();
        return Ok(Response::new(body));
    }
    // Drain whatever request body there is so the connection stays reusable.
    let _ = req.into_body().collect().await;
    let mut resp = Response::new(
        Full::new(Bytes::from_static(SMALL_BODY))
            .map_err(|never| match never {})
            .boxed(),
    );
    resp.headers_mut().insert(
        http::header::CONTENT_TYPE,
        HeaderValue::from_static("text/plain"),
    );
    Ok(resp)
}

/// Unary echo: returns the request's bytes (already a framed message) and `grpc-status: 0`.
async fn grpc_echo(req: Request<Incoming>) -> Response<Body> {
    let (message, status) = match req.into_body().collect().await {
        Ok(collected) => (collected.to_bytes(), "0"),
        Err(_) => (Bytes::new(), "13"),
    };
    let mut trailers = HeaderMap::new();
    trailers.insert("grpc-status", HeaderValue::from_static(status));
    let frames: Vec<Result<Frame<Bytes>, BoxError>> =
        vec![Ok(Frame::data(message)), Ok(Frame::trailers(trailers))];
    let body = StreamBody::new(futures_util::stream::iter(frames)).boxed();
    let mut resp = Response::new(body);
    resp.headers_mut().insert(
        http::header::CONTENT_TYPE,
        HeaderValue::from_static("application/grpc"),
    );
    resp
}
