//! `envoy.filters.http.health_check`: answers this proxy's own health checks — 200, or
//! 503 (flag `LH`) once admin `/healthcheck/fail` was called, so that peers drain it —
//! or passes them through upstream. While failing, every other response carries
//! `x-envoy-immediate-health-check-fail: true` (peers that see it through traffic
//! drain at once); health check responses carry `x-envoy-upstream-healthchecked-cluster`.

use super::{Env, FilterRequest, LocalReply, Verdict};
use crate::http::route_match::header_matches;
use ferry_config::filters::health_check::HealthCheck;
use http::{HeaderName, HeaderValue};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;

const IMMEDIATE_FAIL: &str = "x-envoy-immediate-health-check-fail";
const HEALTHCHECKED_CLUSTER: &str = "x-envoy-upstream-healthchecked-cluster";

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

    /// The filter's name in `http_filters`.
    pub fn name(&self) -> &str {
        &self.name
    }

    /// Answers a health check, or lets it through (failing it while the server fails).
    pub fn on_request(&self, rq: &mut FilterRequest<'_>) -> Verdict {
        let failed = self.failed.load(Ordering::Relaxed);
        let view = rq.view();
        if !self.config.headers.iter().all(|m| header_matches(m, &view)) {
            if failed {
                rq.response.headers.push((
                    HeaderName::from_static(IMMEDIATE_FAIL),
                    HeaderValue::from_static("true"),
                ));
            }
            return Verdict::Continue;
        }
        // A health check request (Envoy marks the stream: `not_health_check_filter`).
        rq.info.health_check = true;
        if let Some(c) = &self.cluster {
            rq.response
                .headers
                .push((HeaderName::from_static(HEALTHCHECKED_CLUSTER), c.clone()));
        }
        if failed {
            rq.response.headers.push((
                HeaderName::from_static(IMMEDIATE_FAIL),
                HeaderValue::from_static("true"),
            ));
        }
        if self.config.pass_through && !failed {
            return Verdict::Continue;
        }
        Verdict::Reply(LocalReply {
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
}
