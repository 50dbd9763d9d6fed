//! The differential harness: the same requests through two proxies, compared.
//!
//! A scenario is a small bootstrap template plus a list of [`Request`]s. The
//! template's listeners and admin are moved to fresh loopback ports for each
//! proxy, and clusters are pointed at in-process echo backends, one per name
//! given (a name matches a cluster name or an endpoint's `host:port`). Each
//! request goes to both proxies on a new connection, one after the other, and
//! the [`normalize`]d responses are [`compare`]d.

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::time::Duration;

use anyhow::Context;
use bytes::Bytes;
use http_body_util::{BodyExt, Full};
use hyper_util::rt::{TokioExecutor, TokioIo};
use serde_json::Value as Json;
use tokio::net::TcpStream;

use crate::backend::{self, Backend};
use crate::ports::rewrite_bootstrap;
use crate::proc::{self, Flavor, Proxy};

/// The authority sent when a request has no `host` header. Both proxies get
/// the same one, so echoes and redirects do not differ by listener port.
pub const DEFAULT_AUTHORITY: &str = "ferry.test";

/// How long the client waits for a whole response.
pub const CLIENT_TIMEOUT: Duration = Duration::from_secs(30);

/// What a masked header or echo field shows instead of its value.
pub const MASKED: &str = "<masked>";

/// The status of an [`Observed`] when no response came (connection refused,
/// closed or reset, or [`CLIENT_TIMEOUT`]).
pub const NO_RESPONSE: u16 = 0;

/// One request of a scenario.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Request {
    /// Method, e.g. `GET`.
    pub method: String,
    /// Path and query, e.g. `/a?b=c`.
    pub path: String,
    /// Headers in order; a `host` header here becomes the authority in h2.
    pub headers: Vec<(String, String)>,
    /// Request body.
    pub body: Vec<u8>,
    /// h2c with prior knowledge instead of HTTP/1.1.
    pub http2: bool,
    /// Which listener (index in `static_resources.listeners`) to send to.
    pub listener: usize,
}

impl Request {
    /// A request with `method` and `path`, no headers or body, HTTP/1.1, listener 0.
    pub fn new(method: &str, path: &str) -> Self {
        Request {
            method: method.to_owned(),
            path: path.to_owned(),
            headers: Vec::new(),
            body: Vec::new(),
            http2: false,
            listener: 0,
        }
    }

    /// `GET path`.
    pub fn get(path: &str) -> Self {
        Self::new("GET", path)
    }

    /// Adds a header.
    pub fn header(mut self, name: &str, value: &str) -> Self {
        self.headers.push((name.to_owned(), value.to_owned()));
        self
    }

    /// Sets the body.
    pub fn body(mut self, body: impl Into<Vec<u8>>) -> Self {
        self.body = body.into();
        self
    }

    /// Sends it as h2c (prior knowledge).
    pub fn http2(mut self) -> Self {
        self.http2 = true;
        self
    }

    /// Sends it to listener `index`.
    pub fn listener(mut self, index: usize) -> Self {
        self.listener = index;
        self
    }
}

impl std::fmt::Display for Request {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let proto = if self.http2 { "h2c" } else { "HTTP/1.1" };
        write!(f, "{} {} ({proto}", self.method, self.path)?;
        if self.listener != 0 {
            write!(f, ", listener {}", self.listener)?;
        }
        for (k, v) in &self.headers {
            write!(f, ", {k}: {v}")?;
        }
        f.write_str(")")
    }
}

/// What a client saw.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Observed {
    /// Response status, or [`NO_RESPONSE`].
    pub status: u16,
    /// Response headers, names lowercased, values in order received.
    pub headers: BTreeMap<String, Vec<String>>,
    /// Response body.
    pub body: Vec<u8>,
    /// Requests each backend received while this request was in flight
    /// (only backends that received any; filled in by the scenario runner).
    pub upstream_requests: BTreeMap<String, u64>,
}

impl Observed {
    /// The first value of header `name`.
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .get(name)
            .and_then(|v| v.first())
            .map(String::as_str)
    }

    /// The body as (lossy) UTF-8.
    pub fn body_text(&self) -> String {
        String::from_utf8_lossy(&self.body).into_owned()
    }

    /// The body parsed as a backend's JSON echo, if it is one.
    pub fn echo(&self) -> Option<Json> {
        serde_json::from_slice::<Json>(&self.body)
            .ok()
            .filter(|j| j.get("backend").is_some() && j.get("headers").is_some())
    }
}

/// Sends `req` to `127.0.0.1:port` on a new connection and collects the response.
pub async fn send(port: u16, req: &Request) -> anyhow::Result<Observed> {
    tokio::time::timeout(CLIENT_TIMEOUT, send_inner(port, req))
        .await
        .with_context(|| format!("no response within {CLIENT_TIMEOUT:?}"))?
}

async fn send_inner(port: u16, req: &Request) -> anyhow::Result<Observed> {
    let stream = TcpStream::connect(("127.0.0.1", port))
        .await
        .with_context(|| format!("cannot connect to 127.0.0.1:{port}"))?;
    let io = TokioIo::new(stream);
    let host = req
        .headers
        .iter()
        .find(|(k, _)| k.eq_ignore_ascii_case("host"))
        .map(|(_, v)| v.as_str())
        .unwrap_or(DEFAULT_AUTHORITY);

    let uri = if req.http2 {
        format!("http://{host}{}", req.path)
    } else {
        req.path.clone()
    };
    let mut builder = http::Request::builder()
        .method(req.method.as_str())
        .uri(uri);
    if !req.http2 {
        builder = builder.header(http::header::HOST, host);
    }
    for (k, v) in &req.headers {
        if !k.eq_ignore_ascii_case("host") {
            builder = builder.header(k.as_str(), v.as_str());
        }
    }
    let request = builder
        .body(Full::new(Bytes::from(req.body.clone())))
        .context("invalid request")?;

    let response = if req.http2 {
        let (mut sender, conn) =
            hyper::client::conn::http2::handshake(TokioExecutor::new(), io).await?;
        tokio::spawn(conn);
        sender.send_request(request).await?
    } else {
        let (mut sender, conn) = hyper::client::conn::http1::handshake(io).await?;
        tokio::spawn(conn);
        sender.send_request(request).await?
    };

    let status = response.status().as_u16();
    let mut headers: BTreeMap<String, Vec<String>> = BTreeMap::new();
    for (k, v) in response.headers() {
        headers
            .entry(k.as_str().to_ascii_lowercase())
            .or_default()
            .push(String::from_utf8_lossy(v.as_bytes()).into_owned());
    }
    let body = response.into_body().collect().await?.to_bytes().to_vec();
    Ok(Observed {
        status,
        headers,
        body,
        upstream_requests: BTreeMap::new(),
    })
}

/// Masks what legitimately differs between two runs, in place.
///
/// - `date` is dropped;
/// - `x-envoy-upstream-service-time` and `x-request-id` keep their presence but
///   their values become [`MASKED`];
/// - in a backend's JSON echo: `x-request-id` is masked, ports are removed from
///   `x-forwarded-for` entries, and the echo is re-serialized canonically.
///
/// `server`, `content-length`, `x-envoy-expected-rq-timeout-ms` and the rest
/// are kept: they must agree.
pub fn normalize(o: &mut Observed) {
    o.headers.remove("date");
    for name in ["x-envoy-upstream-service-time", "x-request-id"] {
        if let Some(values) = o.headers.get_mut(name) {
            for v in values.iter_mut() {
                *v = MASKED.to_owned();
            }
        }
    }
    if let Some(mut echo) = o.echo() {
        if let Some(headers) = echo.get_mut("headers").and_then(Json::as_object_mut) {
            if let Some(v) = headers.get_mut("x-request-id") {
                *v = Json::from(MASKED);
            }
            if let Some(Json::String(xff)) = headers.get_mut("x-forwarded-for") {
                *xff = xff
                    .split(',')
                    .map(|e| strip_port(e.trim()))
                    .collect::<Vec<_>>()
                    .join(",");
            }
        }
        if let Ok(body) = serde_json::to_vec(&echo) {
            o.body = body;
        }
    }
}

/// `1.2.3.4:5678` → `1.2.3.4`, `[::1]:80` → `::1`; anything else unchanged.
fn strip_port(entry: &str) -> String {
    match entry.parse::<SocketAddr>() {
        Ok(sa) => sa.ip().to_string(),
        Err(_) => entry.to_owned(),
    }
}

/// Human-readable differences between two (normalized) observations, labelled
/// `left` and `right`; empty when they agree.
pub fn compare(a: &Observed, b: &Observed) -> Vec<String> {
    compare_labeled(a, b, "left", "right")
}

/// [`compare`] with the two sides named, e.g. `envoy` and `ferry`.
pub fn compare_labeled(a: &Observed, b: &Observed, la: &str, lb: &str) -> Vec<String> {
    let mut out = Vec::new();
    if a.status != b.status {
        out.push(format!("status: {la}={} {lb}={}", a.status, b.status));
    }
    let names: std::collections::BTreeSet<&String> =
        a.headers.keys().chain(b.headers.keys()).collect();
    for name in names {
        let (va, vb) = (a.headers.get(name), b.headers.get(name));
        if va != vb {
            out.push(format!(
                "header {name}: {la}={} {lb}={}",
                show_values(va),
                show_values(vb)
            ));
        }
    }
    if a.body != b.body {
        out.push(format!(
            "body: {la}={} {lb}={}",
            show_body(&a.body),
            show_body(&b.body)
        ));
    }
    if a.upstream_requests != b.upstream_requests {
        out.push(format!(
            "upstream requests: {la}={:?} {lb}={:?}",
            a.upstream_requests, b.upstream_requests
        ));
    }
    out
}

fn show_values(v: Option<&Vec<String>>) -> String {
    match v {
        None => "(absent)".to_owned(),
        Some(v) => format!("{v:?}"),
    }
}

fn show_body(body: &[u8]) -> String {
    const MAX: usize = 400;
    let text = String::from_utf8_lossy(body);
    if text.chars().count() > MAX {
        let cut: String = text.chars().take(MAX).collect();
        format!("{cut:?}… ({} bytes)", body.len())
    } else {
        format!("{text:?}")
    }
}

/// The full outcome of a scenario.
#[derive(Debug, Clone, Default)]
pub struct Report {
    /// Every difference, each prefixed with the request it came from.
    pub differences: Vec<String>,
    /// The normalized observations, `(left, right)` per request.
    pub observed: Vec<(Observed, Observed)>,
}

/// Runs a scenario through real Envoy and ferry and returns every difference a
/// client would see (empty when they agree).
///
/// `backends` names the echo backends to start; each name maps to the cluster
/// of that name, or to cluster endpoints written as that `host:port`.
pub async fn run_scenario(
    yaml_template: &str,
    requests: &[Request],
    backends: &[&str],
) -> anyhow::Result<Vec<String>> {
    let report = run_scenario_with(
        Flavor::Envoy,
        Flavor::Ferry,
        yaml_template,
        requests,
        backends,
    )
    .await?;
    Ok(report.differences)
}

/// Runs a scenario through `left` and `right` (e.g. Envoy twice, to check the
/// harness itself) and reports the differences and what was observed.
pub async fn run_scenario_with(
    left: Flavor,
    right: Flavor,
    yaml_template: &str,
    requests: &[Request],
    backends: &[&str],
) -> anyhow::Result<Report> {
    let mut started: Vec<Backend> = Vec::new();
    let mut endpoints = BTreeMap::new();
    for &name in backends {
        let b = backend::try_start(name)
            .await
            .with_context(|| format!("cannot start backend {name}"))?;
        endpoints.insert(name.to_owned(), b.addr());
        started.push(b);
    }

    let left_yaml = rewrite_bootstrap(yaml_template, &endpoints)?;
    let right_yaml = rewrite_bootstrap(yaml_template, &endpoints)?;
    let left_proxy = proc::start(left, &left_yaml.yaml).await?;
    let right_proxy = proc::start(right, &right_yaml.yaml).await?;
    let (la, lb) = if left == right {
        (format!("{left}#1"), format!("{right}#2"))
    } else {
        (left.to_string(), right.to_string())
    };

    let mut report = Report::default();
    for (i, req) in requests.iter().enumerate() {
        let a = observe(&left_proxy, req, &started).await?;
        let b = observe(&right_proxy, req, &started).await?;
        for d in compare_labeled(&a, &b, &la, &lb) {
            report.differences.push(format!("request {i} {req}: {d}"));
        }
        report.observed.push((a, b));
    }
    Ok(report)
}

/// Sends `req` to `proxy`, normalizes the response and records which backends
/// it reached. A transport failure becomes status [`NO_RESPONSE`].
async fn observe(proxy: &Proxy, req: &Request, backends: &[Backend]) -> anyhow::Result<Observed> {
    let Some(&port) = proxy.listener_ports().get(req.listener) else {
        anyhow::bail!(
            "request {req}: the bootstrap has only {} listener(s)",
            proxy.listener_ports().len()
        );
    };
    let before: Vec<u64> = backends.iter().map(Backend::requests).collect();
    let mut o = match send(port, req).await {
        Ok(o) => o,
        Err(e) => Observed {
            status: NO_RESPONSE,
            body: format!("<no response: {}>", error_kind(&e)).into_bytes(),
            ..Observed::default()
        },
    };
    for (b, before) in backends.iter().zip(before) {
        let n = b.requests().saturating_sub(before);
        if n > 0 {
            o.upstream_requests.insert(b.name().to_owned(), n);
        }
    }
    normalize(&mut o);
    Ok(o)
}

/// A coarse, implementation-independent name for a client-side failure.
fn error_kind(e: &anyhow::Error) -> &'static str {
    let text = format!("{e:#}");
    if text.contains("cannot connect") {
        "connect failed"
    } else if text.contains("no response within") {
        "timeout"
    } else {
        "connection closed or reset"
    }
}
