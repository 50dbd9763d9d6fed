//! HTTP filters before the router (`http_filters`), their per-route configs
//! (`typed_per_filter_config`), and the network local rate limit.

pub mod fault;
pub mod health_check;
pub mod local_ratelimit;
pub mod rate_limit_actions;

use crate::any::{type_name, unpack};
use crate::Ctx;
use ferry_envoy_api::pb::google::protobuf::Any;
use std::sync::Arc;

/// An HTTP filter's config, by kind.
#[derive(Debug, Clone)]
pub enum HttpFilterConfig {
    /// `envoy.filters.http.fault`.
    Fault(Arc<fault::Fault>),
    /// `envoy.filters.http.local_ratelimit`.
    LocalRateLimit(Arc<local_ratelimit::LocalRateLimit>),
    /// `envoy.filters.http.health_check`.
    HealthCheck(Arc<health_check::HealthCheck>),
}

/// An HTTP filter of the chain, with the name routes use for per-route configs.
#[derive(Debug, Clone)]
pub struct HttpFilter {
    /// `name`.
    pub name: String,
    /// Its config.
    pub config: HttpFilterConfig,
}

const FAULT: &str = "envoy.extensions.filters.http.fault.v3.HTTPFault";
const LOCAL_RATELIMIT: &str = "envoy.extensions.filters.http.local_ratelimit.v3.LocalRateLimit";
const HEALTH_CHECK: &str = "envoy.extensions.filters.http.health_check.v3.HealthCheck";

/// Converts an HTTP filter's `typed_config` (None: the router or an unsupported
/// filter, which the support walk names).
pub fn http_filter(name: &str, any: &Any, ctx: &mut Ctx) -> Option<HttpFilterConfig> {
    ctx.at("typed_config", |ctx| {
        Some(match type_name(any) {
            FAULT => HttpFilterConfig::Fault(Arc::new(fault::from_any(any, ctx)?)),
            LOCAL_RATELIMIT => {
                HttpFilterConfig::LocalRateLimit(Arc::new(local_ratelimit::from_any(any, ctx)?))
            }
            HEALTH_CHECK => {
                HttpFilterConfig::HealthCheck(Arc::new(health_check::from_any(any, ctx)?))
            }
            _ => {
                let _ = name;
                return None;
            }
        })
    })
}

/// A per-route filter config (`typed_per_filter_config`), by filter name.
#[derive(Debug, Clone)]
pub enum PerRoute {
    /// Replaces the fault filter's config on this route.
    Fault(Arc<fault::Fault>),
    /// Replaces the local rate limit's config (and bucket) on this route.
    LocalRateLimit(Arc<local_ratelimit::LocalRateLimit>),
    /// `envoy.config.route.v3.FilterConfig` with `disabled: true`: the filter does not
    /// run on this route.
    Disabled,
}

const FILTER_CONFIG: &str = "envoy.config.route.v3.FilterConfig";

/// Converts `typed_per_filter_config` (sorted by filter name, for stable lookups).
pub fn per_route(
    map: &std::collections::HashMap<String, Any>,
    ctx: &mut Ctx,
) -> Vec<(String, PerRoute)> {
    let mut out: Vec<(String, PerRoute)> = Vec::new();
    for (name, any) in map {
        ctx.at(format!("typed_per_filter_config[{name:?}]"), |ctx| {
            // The FilterConfig wrapper: `disabled`, or the config it holds.
            let wrapped;
            let any = if type_name(any) == FILTER_CONFIG {
                let fc: ferry_envoy_api::pb::envoy::config::route::v3::FilterConfig =
                    unpack(any, ctx)?;
                if fc.disabled {
                    out.push((name.clone(), PerRoute::Disabled));
                    return Some(());
                }
                wrapped = fc.config?;
                &wrapped
            } else {
                any
            };
            let cfg = match type_name(any) {
                FAULT => PerRoute::Fault(Arc::new(fault::from_any(any, ctx)?)),
                LOCAL_RATELIMIT => {
                    PerRoute::LocalRateLimit(Arc::new(local_ratelimit::from_any(any, ctx)?))
                }
                // Other types are named by the support walk.
                _ => return None,
            };
            out.push((name.clone(), cfg));
            Some(())
        });
    }
    out.sort_by(|a, b| a.0.cmp(&b.0));
    out
}
