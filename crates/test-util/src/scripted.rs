//! A backend whose answers a test changes while it runs, for health checking and
//! outlier detection tests (HTTP/1.1 and h2c on 127.0.0.1:0).
//!
//! - `GET /healthz` answers the current health status (200 unless set), with
//!   `x-envoy-immediate-health-check-fail` when asked to;
//! - every other request answers the current traffic status (200 unless set) with
//!   `x-backend: <name>`, and is counted.

use std::net::SocketAddr;
use std::sync::atomic::{AtomicBool, AtomicU16, AtomicU64, Ordering};
use std::sync::{Arc, Mutex, PoisonError};

use bytes::Bytes;
use http::{HeaderMap, Response, StatusCode};
use http_body_util::Full;
use hyper::service::service_fn;
use hyper_util::rt::{TokioExecutor, TokioIo};
use hyper_util::server::conn::auto;
use tokio::net::TcpListener;
use tokio::task::{JoinHandle, JoinSet};

/// The path health checks should use.
pub const HEALTH_PATH: &str = "/healthz";

#[derive(Debug)]
struct State {
    name: String,
    health: AtomicU16,
    traffic: AtomicU16,
    immediate_fail: AtomicBool,
    health_checks: AtomicU64,
    requests: AtomicU64,
    last_check: Mutex<Option<(http::Method, String, HeaderMap)>>,
}

/// A running scripted backend; it stops on drop.
#[derive(Debug)]
pub struct Scripted {
    addr: SocketAddr,
    state: Arc<State>,
    task: JoinHandle<()>,
}

impl Drop for Scripted {
    fn drop(&mut self) {
        self.task.abort();
    }
}

impl Scripted {
    /// Starts a backend named `name`.
    pub async fn start(name: &str) -> std::io::Result<Scripted> {
        let listener = TcpListener::bind(("127.0.0.1", 0)).await?;
        let addr = listener.local_addr()?;
        let state = Arc::new(State {
            name: name.to_string(),
            health: AtomicU16::new(200),
            traffic: AtomicU16::new(200),
            immediate_fail: AtomicBool::new(false),
            health_checks: AtomicU64::new(0),
            requests: AtomicU64::new(0),
            last_check: Mutex::new(None),
        });
        let task = tokio::spawn(accept(listener, state.clone()));
        Ok(Scripted { addr, state, task })
    }

    /// The listening address.
    pub fn addr(&self) -> SocketAddr {
        self.addr
    }

    /// Sets the status `/healthz` answers.
    pub fn set_health(&self, status: u16) {
        self.state.health.store(status, Ordering::SeqCst);
    }

    /// Sets the status other requests get.
    pub fn set_traffic(&self, status: u16) {
        self.state.traffic.store(status, Ordering::SeqCst);
    }

    /// Adds (or stops adding) `x-envoy-immediate-health-check-fail` to every answer.
    pub fn set_immediate_fail(&self, on: bool) {
        self.state.immediate_fail.store(on, Ordering::SeqCst);
    }

    /// Health checks received.
    pub fn health_checks(&self) -> u64 {
        self.state.health_checks.load(Ordering::SeqCst)
    }

    /// Other requests received.
    pub fn requests(&self) -> u64 {
        self.state.requests.load(Ordering::SeqCst)
    }

    /// Method, authority (`Host` or `:authority`) and headers of the last health check.
    pub fn last_check(&self) -> Option<(http::Method, String, HeaderMap)> {
        self.state
            .last_check
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .clone()
    }
}

async fn accept(listener: TcpListener, state: Arc<State>) {
    let mut conns = JoinSet::new();
    loop {
        let stream = tokio::select! {
            a = listener.accept() => match a {
                Ok((s, _)) => s,
                Err(_) => continue,
            },
            Some(_) = conns.join_next(), if !conns.is_empty() => continue,
        };
        let state = state.clone();
        conns.spawn(async move {
            let svc = service_fn(move |req: http::Request<hyper::body::Incoming>| {
                let state = state.clone();
                async move { Ok::<_, std::convert::Infallible>(answer(&state, &req)) }
            });
            let _ = auto::Builder::new(TokioExecutor::new())
                .serve_connection(TokioIo::new(stream), svc)
                .await;
        });
    }
}

fn answer<B>(state: &State, req: &http::Request<B>) -> Response<Full<Bytes>> {
    let health = req.uri().path() == HEALTH_PATH;
    let status = if health {
        state.health_checks.fetch_add(1, Ordering::SeqCst);
        let authority = req
            .headers()
            .get(http::header::HOST)
            .and_then(|v| v.to_str().ok())
            .map(str::to_string)
            .or_else(|| req.uri().authority().map(|a| a.to_string()))
            .unwrap_or_default();
        *state
            .last_check
            .lock()
            .unwrap_or_else(PoisonError::into_inner) = Some((req.method().clone(), authority, req.headers().clone()));
        state.health.load(Ordering::SeqCst)
    } else {
        state.requests.fetch_add(1, Ordering::SeqCst);
        state.traffic.load(Ordering::SeqCst)
    };
    let mut resp = Response::new(Full::new(Bytes::from(state.name.clone())));
    *resp.status_mut() = StatusCode::from_u16(status).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR);
    if let Ok(v) = http::HeaderValue::from_str(&state.name) {
        resp.headers_mut().insert("x-backend", v);
    }
    if state.immediate_fail.load(Ordering::SeqCst) {
        resp.headers_mut().insert(
            "x-envoy-immediate-health-check-fail",
            http::HeaderValue::from_static("true"),
        );
    }
    resp
}
