//! The HTTP filters that run before the router (`http_filters`), in config order.
//!
//! Each filter has one hook on the request headers, run after the route is matched (so
//! that per-route configs apply), which continues or answers locally; and it may leave
//! work for the response (a throughput limit, headers). Filters are registered by their
//! Envoy names in `ferry_config::filters`.

pub mod fault;
pub mod health_check;
pub mod local_ratelimit;

use crate::network::hcm::ConnInfo;
use crate::stream_info::StreamInfo;
use ferry_config::filters::{HttpFilter, HttpFilterConfig, PerRoute};
use ferry_config::route::Route;
use http::{HeaderMap, HeaderName, HeaderValue};
use std::sync::Arc;

/// A filter ready to run, with its state (token buckets, counters, stats).
pub enum Filter {
    /// `envoy.filters.http.fault`.
    Fault(fault::FaultFilter),
    /// `envoy.filters.http.local_ratelimit`.
    LocalRateLimit(local_ratelimit::LocalRateLimitFilter),
    /// `envoy.filters.http.health_check`.
    HealthCheck(health_check::HealthCheckFilter),
}

/// What the runtime needs to build filters.
pub struct Env<'a> {
    /// The HCM's `stat_prefix`.
    pub stat_prefix: &'a str,
    /// The stats store.
    pub stats: &'a ferry_stats::Store,
    /// Set by admin `/healthcheck/fail`.
    pub health_failed: Arc<std::sync::atomic::AtomicBool>,
    /// `node.cluster`.
    pub node_cluster: &'a str,
}

impl Filter {
    /// Builds a filter's runtime (`index`: its place in the chain).
    pub fn new(f: &HttpFilter, index: usize, env: &Env<'_>) -> Filter {
        match &f.config {
            HttpFilterConfig::Fault(c) => {
                Filter::Fault(fault::FaultFilter::new(&f.name, c.clone(), env))
            }
            HttpFilterConfig::LocalRateLimit(c) => Filter::LocalRateLimit(
                local_ratelimit::LocalRateLimitFilter::new(&f.name, index, c.clone(), env),
            ),
            HttpFilterConfig::HealthCheck(c) => Filter::HealthCheck(
                health_check::HealthCheckFilter::new(&f.name, c.clone(), env),
            ),
        }
    }

    /// The name routes use for this filter's per-route config.
    fn name(&self) -> &str {
        match self {
            Filter::Fault(f) => f.name(),
            Filter::LocalRateLimit(f) => f.name(),
            Filter::HealthCheck(f) => f.name(),
        }
    }

    /// Runs the request hook (unless the route disables the filter).
    pub async fn on_request(&self, rq: &mut FilterRequest<'_>) -> Verdict {
        if matches!(rq.override_for(self.name()), Some(RouteOverride::Disabled)) {
            return Verdict::Continue;
        }
        match self {
            Filter::Fault(f) => f.on_request(rq).await,
            Filter::LocalRateLimit(f) => f.on_request(rq),
            Filter::HealthCheck(f) => f.on_request(rq),
        }
    }
}

/// A per-route override resolved for the runtime (with its own state).
pub enum RouteOverride {
    /// The fault filter's config for this route.
    Fault(Arc<ferry_config::filters::fault::Fault>),
    /// The local rate limit for this route, with its own bucket.
    LocalRateLimit(Arc<local_ratelimit::Limiter>),
    /// The filter does not run on this route.
    Disabled,
}

impl std::fmt::Debug for RouteOverride {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            RouteOverride::Fault(c) => f.debug_tuple("Fault").field(c).finish(),
            RouteOverride::LocalRateLimit(_) => f.write_str("LocalRateLimit"),
            RouteOverride::Disabled => f.write_str("Disabled"),
        }
    }
}

/// Builds a route's overrides (once, with the route table).
pub fn route_overrides(route: &Route, env: &Env<'_>) -> Vec<(String, RouteOverride)> {
    route
        .per_filter
        .iter()
        .map(|(name, cfg)| {
            let o = match cfg {
                PerRoute::Fault(f) => RouteOverride::Fault(f.clone()),
                PerRoute::LocalRateLimit(l) => RouteOverride::LocalRateLimit(Arc::new(
                    local_ratelimit::Limiter::new(l.clone(), env),
                )),
                PerRoute::Disabled => RouteOverride::Disabled,
            };
            (name.clone(), o)
        })
        .collect()
}

/// The request as filters see it.
pub struct FilterRequest<'a> {
    /// Request headers (filters may change them).
    pub headers: &'a mut HeaderMap,
    /// `:path`.
    pub path: &'a str,
    /// `:method`.
    pub method: &'a str,
    /// `:authority`, lower-cased.
    pub authority: &'a str,
    /// The matched route's overrides (empty when none or no route).
    pub overrides: &'a [(String, RouteOverride)],
    /// The route's cluster name, when it names one.
    pub cluster: Option<&'a str>,
    /// The route's `rate_limits` (descriptor rules).
    pub rate_limits: &'a [ferry_config::filters::rate_limit_actions::RateLimitRule],
    /// This proxy's service cluster (`node.cluster`), for `source_cluster` descriptors.
    pub source_cluster: &'a str,
    /// The connection.
    pub conn: &'a ConnInfo,
    /// The access-log record (filters add response flags).
    pub info: &'a mut StreamInfo,
    /// Work for the response.
    pub response: &'a mut ResponseWork,
}

impl FilterRequest<'_> {
    /// The override of the filter called `name`, if the route has one.
    pub fn override_for(&self, name: &str) -> Option<&RouteOverride> {
        self.overrides
            .iter()
            .find(|(n, _)| n == name)
            .map(|(_, o)| o)
    }

    /// The request as route matchers see it.
    pub fn view(&self) -> crate::http::route_match::RequestView<'_> {
        crate::http::route_match::RequestView {
            method: self.method,
            path: self.path,
            authority: self.authority,
            scheme: "http",
            headers: self.headers,
            status: "",
        }
    }
}

/// What filters leave for the response.
#[derive(Default)]
pub struct ResponseWork {
    /// Limit the response body to this many KiB per second (fault filter).
    pub throttle_kbps: Option<u64>,
    /// Headers to add to the response.
    pub headers: Vec<(HeaderName, HeaderValue)>,
    /// Kept until the response body ends (an active fault's count).
    pub hold: Vec<Box<dyn Send + Sync>>,
}

/// A response body that keeps filter state alive until it ends.
pub struct Holding {
    inner: ferry_upstream::Body,
    _held: Vec<Box<dyn Send + Sync>>,
}

impl Holding {
    /// Wraps `inner`, keeping `held` until the body is dropped.
    pub fn new(inner: ferry_upstream::Body, held: Vec<Box<dyn Send + Sync>>) -> Holding {
        Holding { inner, _held: held }
    }
}

impl http_body::Body for Holding {
    type Data = bytes::Bytes;
    type Error = ferry_upstream::BoxError;

    fn poll_frame(
        mut self: std::pin::Pin<&mut Self>,
        cx: &mut std::task::Context<'_>,
    ) -> std::task::Poll<Option<Result<http_body::Frame<bytes::Bytes>, Self::Error>>> {
        std::pin::Pin::new(&mut self.inner).poll_frame(cx)
    }

    fn is_end_stream(&self) -> bool {
        self.inner.is_end_stream()
    }

    fn size_hint(&self) -> http_body::SizeHint {
        self.inner.size_hint()
    }
}

/// A filter's decision.
pub enum Verdict {
    /// Go on to the next filter (and the router).
    Continue,
    /// Answer now.
    Reply(LocalReply),
}

/// A local reply made by a filter.
#[derive(Debug)]
pub struct LocalReply {
    /// HTTP status (for gRPC requests, mapped to a gRPC status unless `grpc_status`).
    pub status: http::StatusCode,
    /// Body text.
    pub body: Option<String>,
    /// An explicit gRPC status (fault filter `grpc_status`).
    pub grpc_status: Option<u32>,
    /// Response flag.
    pub flag: Option<ferry_config::ResponseFlag>,
    /// `%RESPONSE_CODE_DETAILS%`.
    pub details: &'static str,
    /// Extra response headers.
    pub headers: Vec<(HeaderName, HeaderValue)>,
}
