//! HTTP health checks (HTTP/1.1 or HTTP/2 prior knowledge) on a connection of their own.
//!
//! The request is `method path` with `Host`/`:authority` = `host` or the cluster's name,
//! `user-agent: Envoy/HC` and the configured header changes. A status outside
//! `expected_statuses` fails the host at once (unless in `retriable_statuses`); with
//! `x-envoy-immediate-health-check-fail` it is also excluded from load balancing. A
//! passing answer with `x-envoy-degraded` marks the host degraded.

use super::flags::EXCLUDED_VIA_IMMEDIATE_HC_FAIL;
use super::session::Failure;
use super::tcp::{connect, contains_in_order};
use super::Verdict;
use crate::stats::HealthCheckStats;
use crate::Host;
use bytes::Bytes;
use ferry_config::health_check::HttpHealthCheck;
use ferry_config::AppendAction;
use http::{header, HeaderMap, Request, Response};
use http_body_util::{BodyExt, Full};
use hyper::body::Incoming;
use hyper::client::conn::{http1, http2};
use hyper_util::rt::{TokioExecutor, TokioIo};
use std::net::SocketAddr;
use std::sync::Arc;
use tokio::task::AbortHandle;

/// The user agent of Envoy's health checks.
pub(crate) const USER_AGENT: &str = "Envoy/HC";

enum Sender {
    H1(http1::SendRequest<Full<Bytes>>),
    H2(http2::SendRequest<Full<Bytes>>),
}

/// A health check connection; its task stops when the connection is dropped.
pub(crate) struct Conn {
    sender: Sender,
    task: AbortHandle,
}

impl Drop for Conn {
    fn drop(&mut self) {
        self.task.abort();
    }
}

impl Conn {
    /// Connects to `addr` with HTTP/1.1 or HTTP/2 prior knowledge.
    pub(crate) async fn open(addr: SocketAddr, http2: bool) -> Option<Conn> {
        let io = TokioIo::new(connect(addr).await.ok()?);
        if http2 {
            let (sender, conn) = http2::Builder::new(TokioExecutor::new())
                .handshake(io)
                .await
                .ok()?;
            let task = tokio::spawn(async move {
                let _ = conn.await;
            })
            .abort_handle();
            Some(Conn {
                sender: Sender::H2(sender),
                task,
            })
        } else {
            let (sender, conn) = http1::handshake(io).await.ok()?;
            let task = tokio::spawn(async move {
                let _ = conn.await;
            })
            .abort_handle();
            Some(Conn {
                sender: Sender::H1(sender),
                task,
            })
        }
    }

    /// Sends `req` (origin-form URI; `authority` becomes `Host` or `:authority`).
    pub(crate) async fn send(
        &mut self,
        mut req: Request<Full<Bytes>>,
        authority: &str,
    ) -> Result<Response<Incoming>, hyper::Error> {
        match &mut self.sender {
            Sender::H1(s) => {
                if let Ok(v) = header::HeaderValue::from_str(authority) {
                    req.headers_mut().insert(header::HOST, v);
                }
                s.ready().await?;
                s.send_request(req).await
            }
            Sender::H2(s) => {
                let pq = req
                    .uri()
                    .path_and_query()
                    .map(|p| p.as_str().to_string())
                    .unwrap_or_else(|| "/".into());
                if let Ok(uri) = format!("http://{authority}{pq}").parse() {
                    *req.uri_mut() = uri;
                }
                *req.version_mut() = http::Version::HTTP_2;
                s.ready().await?;
                s.send_request(req).await
            }
        }
    }
}

/// One host's HTTP checker.
pub(crate) struct HttpProbe {
    config: HttpHealthCheck,
    authority: String,
    addr: SocketAddr,
    reuse: bool,
    stats: Arc<HealthCheckStats>,
    conn: Option<Conn>,
}

/// Applies one header addition with its `append_action`.
pub(crate) fn add_header(
    h: &mut HeaderMap,
    name: &header::HeaderName,
    value: &header::HeaderValue,
    action: AppendAction,
) {
    match action {
        AppendAction::AppendIfExistsOrAdd => {
            h.append(name.clone(), value.clone());
        }
        AppendAction::AddIfAbsent => {
            if !h.contains_key(name) {
                h.insert(name.clone(), value.clone());
            }
        }
        AppendAction::OverwriteIfExistsOrAdd => {
            h.insert(name.clone(), value.clone());
        }
        AppendAction::OverwriteIfExists => {
            if h.contains_key(name) {
                h.insert(name.clone(), value.clone());
            }
        }
    }
}

impl HttpProbe {
    pub(crate) fn new(
        config: HttpHealthCheck,
        cluster_name: &str,
        addr: SocketAddr,
        reuse: bool,
        stats: Arc<HealthCheckStats>,
    ) -> HttpProbe {
        let authority = config
            .host
            .clone()
            .unwrap_or_else(|| cluster_name.to_string());
        HttpProbe {
            config,
            authority,
            addr,
            reuse,
            stats,
            conn: None,
        }
    }

    /// Drops the connection (after a timeout).
    pub(crate) fn reset(&mut self) {
        self.conn = None;
    }

    fn request(&self) -> Request<Full<Bytes>> {
        let c = &self.config;
        let body = c.send.clone().map(Bytes::from).unwrap_or_default();
        let mut req = Request::new(Full::new(body));
        *req.method_mut() = c.method.clone();
        if let Ok(uri) = c.path.parse() {
            *req.uri_mut() = uri;
        }
        let h = req.headers_mut();
        h.insert(
            header::USER_AGENT,
            header::HeaderValue::from_static(USER_AGENT),
        );
        for (name, value, action) in &c.request_headers_to_add {
            add_header(h, name, value, *action);
        }
        for name in &c.request_headers_to_remove {
            h.remove(name);
        }
        req
    }

    pub(crate) async fn check(&mut self, host: &Host) -> Verdict {
        let network = Verdict::failed(Failure::Network);
        let mut conn = match self.conn.take() {
            Some(c) => c,
            None => match Conn::open(self.addr, self.config.http2).await {
                Some(c) => c,
                None => return network,
            },
        };
        let resp = match conn.send(self.request(), &self.authority).await {
            Ok(r) => r,
            Err(_) => return network,
        };
        let (parts, mut body) = resp.into_parts();
        // Read the whole body (so that the connection can be reused), keeping what
        // `receive` looks at.
        let limit = match self.config.response_buffer_size {
            0 => usize::MAX,
            n => n,
        };
        let mut kept = Vec::new();
        while let Some(frame) = body.frame().await {
            let Ok(frame) = frame else {
                return network;
            };
            if let Some(d) = frame.data_ref() {
                if !self.config.receive.is_empty() && kept.len() < limit {
                    let take = d.len().min(limit - kept.len());
                    kept.extend_from_slice(&d[..take]);
                }
            }
        }
        let close = !self.reuse
            || parts.version == http::Version::HTTP_10
            || parts
                .headers
                .get(header::CONNECTION)
                .is_some_and(|v| v.as_bytes().eq_ignore_ascii_case(b"close"));
        if !close {
            self.conn = Some(conn);
        }
        self.verdict(host, parts.status.as_u16(), &parts.headers, &kept)
    }

    fn verdict(&self, host: &Host, status: u16, headers: &HeaderMap, body: &[u8]) -> Verdict {
        let c = &self.config;
        if !c.expected(status) {
            if headers.contains_key("x-envoy-immediate-health-check-fail") {
                host.flag_set(EXCLUDED_VIA_IMMEDIATE_HC_FAIL);
            }
            return Verdict::Unhealthy {
                failure: Failure::Active,
                retriable: c.retriable(status),
                status,
            };
        }
        let degraded = headers.contains_key("x-envoy-degraded");
        let failed = Verdict::Unhealthy {
            failure: Failure::Active,
            retriable: false,
            status,
        };
        if let Some(m) = &c.service_name_matcher {
            self.stats.verify_cluster.inc();
            let cluster = headers
                .get("x-envoy-upstream-healthchecked-cluster")
                .and_then(|v| v.to_str().ok())
                .unwrap_or("");
            if !m.matches(cluster) {
                return failed;
            }
        }
        if !c.receive.is_empty() && !contains_in_order(&c.receive, body) {
            return failed;
        }
        Verdict::Healthy { degraded }
    }
}
