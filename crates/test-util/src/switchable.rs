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

use crate::admin::{host_field, poll};
use crate::bootstrap::HcmBootstrap;
use crate::diff::send;
use crate::{rewrite_bootstrap, Flavor, Proxy, Request};
use bytes::Bytes;
use http::{HeaderMap, Response, StatusCode};
use http_body_util::Full;
use hyper::service::service_fn;
use hyper_util::rt::{TokioExecutor, TokioIo};
use hyper_util::server::conn::auto;
use std::collections::BTreeMap;
use std::time::Duration;
use tokio::net::TcpListener;
use tokio::task::{JoinHandle, JoinSet};

/// How long a scenario waits for health to change.
pub const DEADLINE: Duration = Duration::from_secs(20);

/// A STATIC cluster `backend` over `hosts`, with `extra` fields (block YAML at column 0).
pub fn cluster(extra: &str, hosts: &[SocketAddr]) -> String {
    let mut y = format!(
        "name: backend\ntype: STATIC\nconnect_timeout: 1s\n{}\n",
        extra.trim()
    );
    y.push_str("load_assignment:\n  cluster_name: backend\n  endpoints:\n  - lb_endpoints:\n");
    for a in hosts {
        y.push_str(&format!(
            "    - endpoint: {{address: {{socket_address: {{address: 127.0.0.1, port_value: {}}}}}}}\n",
            a.port()
        ));
    }
    y
}

/// Starts `flavor` on a bootstrap with one HCM listener routing to `cluster_yaml`.
pub async fn start(flavor: Flavor, cluster_yaml: &str) -> Proxy {
    let yaml = HcmBootstrap::new().cluster_yaml(cluster_yaml).yaml();
    let rw = rewrite_bootstrap(&yaml, &BTreeMap::new()).unwrap_or_else(|e| panic!("{e:#}"));
    crate::proc::start(flavor, &rw.yaml)
        .await
        .unwrap_or_else(|e| panic!("{e:#}"))
}

/// Starts scripted backends with these names.
pub async fn backends(names: &[&str]) -> Vec<Scripted> {
    let mut out = Vec::new();
    for n in names {
        out.push(Scripted::start(n).await.unwrap_or_else(|e| panic!("{e}")));
    }
    out
}

/// Who answers `n` requests in a row (`x-backend`, or the status when there is none).
pub async fn answers(proxy: &Proxy, n: usize) -> Vec<String> {
    let port = proxy.listener_port().unwrap_or_default();
    let mut out = Vec::new();
    for _ in 0..n {
        let o = send(port, &Request::get("/work"))
            .await
            .unwrap_or_else(|e| panic!("{e:#}"));
        out.push(match o.header("x-backend") {
            Some(b) => b.to_string(),
            None => format!("{} {}", o.status, o.body_text()),
        });
    }
    out
}

/// Waits until `n` requests in a row are all answered as `want` says; panics with the
/// proxy's log otherwise.
pub async fn wait_for_answers(
    proxy: &Proxy,
    n: usize,
    what: &str,
    want: impl Fn(&[String]) -> bool,
) {
    let got = poll(DEADLINE, || async {
        let a = answers(proxy, n).await;
        want(&a).then_some(a)
    })
    .await;
    assert!(
        got.is_some(),
        "{}: never {what}; last: {:?}\nlog:\n{}",
        proxy.flavor(),
        answers(proxy, n).await,
        proxy.log()
    );
}

/// Waits until admin `/clusters` shows `flags` for `host`.
pub async fn wait_for_flags(proxy: &Proxy, host: SocketAddr, flags: &str) {
    let admin = proxy.admin_port();
    let got = poll(DEADLINE, || async {
        let f = host_field(admin, "backend", &host.to_string(), "health_flags").await;
        (f.as_deref() == Some(flags)).then_some(())
    })
    .await;
    assert!(
        got.is_some(),
        "{}: {host} never had health_flags {flags}; now {:?}",
        proxy.flavor(),
        host_field(admin, "backend", &host.to_string(), "health_flags").await
    );
}

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
            .unwrap_or_else(PoisonError::into_inner) =
            Some((req.method().clone(), authority, req.headers().clone()));
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
