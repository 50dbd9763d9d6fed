//! The config of `envoy.filters.http.router`, the terminal filter of every connection
//! manager (`Router`).

use ferry_config::any::unpack;
use ferry_config::Ctx;
use ferry_envoy_api::pb::envoy::extensions::filters::http::router::v3 as pb;
use ferry_envoy_api::pb::google::protobuf::Any;

/// A validated `Router`.
#[derive(Debug, Clone)]
pub struct RouterConfig {
    /// `dynamic_stats` (default true): charge responses to the cluster's per-code stats
    /// and `upstream_rq_time`.
    pub dynamic_stats: bool,
}

impl Default for RouterConfig {
    fn default() -> RouterConfig {
        RouterConfig {
            dynamic_stats: true,
        }
    }
}

/// Converts a `Router` from its `Any`.
pub fn from_any(any: &Any, ctx: &mut Ctx) -> Option<RouterConfig> {
    let r: pb::Router = unpack(any, ctx)?;
    ferry_config::fields!(ctx, &r => pb::Router as "envoy.filters.http.router" {
        dynamic_stats,
    } refused {
        start_child_span, upstream_log, upstream_log_options, suppress_envoy_headers,
        strict_check_headers, respect_expected_rq_timeout, suppress_grpc_request_failure_code_stats,
        upstream_http_filters, reject_connect_request_early_data,
    });
    Some(RouterConfig {
        dynamic_stats: r.dynamic_stats.is_none_or(|v| v.value),
    })
}
