//! `envoy.filters.http.health_check`: answers this proxy's own health checks — 200, or
//! 503 (flag `LH`) once admin `/healthcheck/fail` was called, so that peers drain it —
//! or passes them through upstream. While failing, every other response carries
//! `x-envoy-immediate-health-check-fail: true` (peers that see it through traffic
//! drain at once); health check responses carry `x-envoy-upstream-healthchecked-cluster`.

pub mod config;

use super::Env;
use crate::http::filter_manager::{
    FilterRequest, FilterResponse, HeadersStatus, HttpFilter, PerRouteConfig, StreamFilter,
};
use crate::http::local_reply::LocalReply;
use crate::http::route_match::header_matches;
use config::HealthCheck;
use http::{HeaderName, HeaderValue};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;

const IMMEDIATE_FAIL: &str = "x-envoy-immediate-health-check-fail";
const HEALTHCHECKED_CLUSTER: &str = "x-envoy-upstream-healthchecked-cluster";

super::http_filter_factory! {
    name: "envoy.filters.http.health_check",
    config_type: "envoy.extensions.filters.http.health_check.v3.HealthCheck",
    config: HealthCheck,
    per_route: false,
    build: |name: &str, _, config, env: &Env<'_>| Arc::new(HealthCheckFilter::new(name, config, env)),
}

/// The health check filter of one HCM.
pub struct HealthCheckFilter {
    name: String,
    config: Arc<HealthCheck>,
    failed: Arc<AtomicBool>,
    cluster: Option<HeaderValue>,
}

impl HealthCheckFilter {
    /// Reads the server's `/healthcheck/fail` state.
    pub fn new(name: &str, config: Arc<HealthCheck>, env: &Env<'_>) -> HealthCheckFilter {
        HealthCheckFilter {
            name: name.to_string(),
            config,
            failed: env.health_failed.clone(),
            cluster: HeaderValue::from_str(env.node_cluster).ok(),
        }
    }
}

impl HttpFilter for HealthCheckFilter {
    fn name(&self) -> &str {
        &self.name
    }

    fn stream(&self, _per_route: Option<&PerRouteConfig>) -> Box<dyn StreamFilter> {
        Box::new(HealthCheckStream {
            config: self.config.clone(),
            failed: self.failed.clone(),
            cluster: self.cluster.clone(),
            response_headers: Vec::new(),
        })
    }
}

/// The filter on one stream: what it adds to the response.
struct HealthCheckStream {
    config: Arc<HealthCheck>,
    failed: Arc<AtomicBool>,
    cluster: Option<HeaderValue>,
    response_headers: Vec<(HeaderName, HeaderValue)>,
}

impl StreamFilter for HealthCheckStream {
    /// Answers a health check, or lets it through (failing it while the server fails).
    fn on_request_headers(&mut self, rq: &mut FilterRequest<'_>) -> HeadersStatus {
        let failed = self.failed.load(Ordering::Relaxed);
        let view = rq.view();
        if !self.config.headers.iter().all(|m| header_matches(m, &view)) {
            if failed {
                self.response_headers.push((
                    HeaderName::from_static(IMMEDIATE_FAIL),
                    HeaderValue::from_static("true"),
                ));
            }
            return HeadersStatus::Continue;
        }
        // A health check request (Envoy marks the stream: `not_health_check_filter`).
        rq.info.health_check = true;
        if let Some(c) = &self.cluster {
            self.response_headers
                .push((HeaderName::from_static(HEALTHCHECKED_CLUSTER), c.clone()));
        }
        if failed {
            self.response_headers.push((
                HeaderName::from_static(IMMEDIATE_FAIL),
                HeaderValue::from_static("true"),
            ));
        }
        if self.config.pass_through && !failed {
            return HeadersStatus::Continue;
        }
        HeadersStatus::LocalReply(LocalReply {
            status: if failed {
                http::StatusCode::SERVICE_UNAVAILABLE
            } else {
                http::StatusCode::OK
            },
            body: None,
            grpc_status: None,
            flag: failed.then_some(ferry_config::ResponseFlag::FailedLocalHealthCheck),
            details: if failed {
                "health_check_failed"
            } else {
                "health_check_ok"
            },
            headers: Vec::new(),
        })
    }

    /// The headers the request hook decided on, on whatever response the stream gets.
    fn on_response_headers(&mut self, rs: &mut FilterResponse<'_>) -> HeadersStatus {
        for (name, value) in self.response_headers.drain(..) {
            rs.headers.insert(name, value);
        }
        HeadersStatus::Continue
    }
}
