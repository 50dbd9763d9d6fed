//! `envoy.filters.http.health_check`: answers health checks for this proxy (or passes
//! them through), failing while admin `/healthcheck/fail` is in force.

use ferry_config::any::unpack;
use ferry_config::matcher::HeaderMatcher;
use ferry_config::Ctx;
use ferry_envoy_api::pb::envoy::extensions::filters::http::health_check::v3 as pb;
use ferry_envoy_api::pb::google::protobuf::Any;

/// A validated `HealthCheck` filter.
#[derive(Debug, Clone)]
pub struct HealthCheck {
    /// `pass_through_mode` (required): forward health checks upstream instead of
    /// answering them.
    pub pass_through: bool,
    /// `headers`: what makes a request a health check (all must match).
    pub headers: Vec<HeaderMatcher>,
}

/// Converts a `HealthCheck` from its `Any`.
pub fn from_any(any: &Any, ctx: &mut Ctx) -> Option<HealthCheck> {
    let h: pb::HealthCheck = unpack(any, ctx)?;
    ferry_config::fields!(ctx, &h => pb::HealthCheck as "envoy.filters.http.health_check" {
        pass_through_mode, headers,
    } refused {
        cache_time, cluster_min_healthy_percentages,
    });
    let mut headers = Vec::new();
    for (i, m) in h.headers.iter().enumerate() {
        if let Some(m) = ctx.at(format!("headers[{i}]"), |c| {
            ferry_config::matcher::header_matcher(m, c)
        }) {
            headers.push(m);
        }
    }
    let Some(pass_through) = h.pass_through_mode.map(|b| b.value) else {
        ctx.error_at("pass_through_mode", "is required");
        return None;
    };
    Some(HealthCheck {
        pass_through,
        headers,
    })
}
