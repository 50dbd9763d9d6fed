//! A cluster's `circuit_breakers`: limits per routing priority, with Envoy's defaults.

use crate::Ctx;
use ferry_envoy_api::pb::envoy::config::cluster::v3 as pb;

/// Envoy's default `max_connections`, `max_pending_requests` and `max_requests`.
pub const DEFAULT_LIMIT: u32 = 1024;
/// Envoy's default `max_retries`.
pub const DEFAULT_MAX_RETRIES: u32 = 3;

/// `circuit_breakers.thresholds`: one entry per priority (`DEFAULT`, `HIGH`).
#[derive(Debug, Clone, Default, PartialEq)]
pub struct CircuitBreakers {
    /// For `priority: DEFAULT` routes.
    pub default: Thresholds,
    /// For `priority: HIGH` routes.
    pub high: Thresholds,
}

/// The limits of one priority.
#[derive(Debug, Clone, PartialEq)]
pub struct Thresholds {
    /// `max_connections` (default 1024).
    pub max_connections: u32,
    /// `max_pending_requests` (default 1024).
    pub max_pending_requests: u32,
    /// `max_requests` (default 1024).
    pub max_requests: u32,
    /// `max_retries` (default 3); replaced by the budget when `retry_budget` is set.
    pub max_retries: u32,
    /// `retry_budget`.
    pub retry_budget: Option<RetryBudget>,
    /// `track_remaining`: publish the `remaining_*` gauges.
    pub track_remaining: bool,
    /// `max_connection_pools` (default unlimited).
    pub max_connection_pools: Option<u32>,
}

impl Default for Thresholds {
    fn default() -> Self {
        Thresholds {
            max_connections: DEFAULT_LIMIT,
            max_pending_requests: DEFAULT_LIMIT,
            max_requests: DEFAULT_LIMIT,
            max_retries: DEFAULT_MAX_RETRIES,
            retry_budget: None,
            track_remaining: false,
            max_connection_pools: None,
        }
    }
}

/// `retry_budget`: concurrent retries allowed as a share of active requests.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct RetryBudget {
    /// `budget_percent` (default 20%).
    pub budget_percent: f64,
    /// `min_retry_concurrency` (default 3).
    pub min_retry_concurrency: u32,
}

/// Converts `circuit_breakers`.
pub fn from_proto(cb: &pb::CircuitBreakers, ctx: &mut Ctx) -> CircuitBreakers {
    let mut out = CircuitBreakers::default();
    crate::fields!(ctx, cb => pb::CircuitBreakers {
        thresholds,
    } refused {
        per_host_thresholds,
    });
    let mut seen = [false; 2];
    for (i, t) in cb.thresholds.iter().enumerate() {
        ctx.at(format!("thresholds[{i}]"), |ctx| {
            crate::fields!(ctx, t => pb::circuit_breakers::Thresholds {
                priority, max_connections, max_pending_requests, max_requests, max_retries,
                retry_budget, track_remaining, max_connection_pools,
            });
            let slot = match t.priority {
                0 => 0,
                1 => 1,
                other => {
                    ctx.error_at("priority", format!("unknown value {other}"));
                    return;
                }
            };
            if std::mem::replace(&mut seen[slot], true) {
                ctx.error_at("priority", "is given twice");
            }
            let mut th = Thresholds::default();
            let u = |v: &Option<ferry_envoy_api::pb::google::protobuf::UInt32Value>, d| {
                v.map(|v| v.value).unwrap_or(d)
            };
            th.max_connections = u(&t.max_connections, DEFAULT_LIMIT);
            th.max_pending_requests = u(&t.max_pending_requests, DEFAULT_LIMIT);
            th.max_requests = u(&t.max_requests, DEFAULT_LIMIT);
            th.max_retries = u(&t.max_retries, DEFAULT_MAX_RETRIES);
            th.track_remaining = t.track_remaining;
            th.max_connection_pools = t.max_connection_pools.map(|v| v.value);
            if let Some(b) = &t.retry_budget {
                ctx.at("retry_budget", |ctx| {
                    crate::fraction::percent_fields(&b.budget_percent, "budget_percent", ctx);
                    crate::fields!(ctx, b => pb::circuit_breakers::thresholds::RetryBudget {
                        budget_percent, min_retry_concurrency,
                    } refused {
                        budget_interval,
                    });
                    let budget_percent = b.budget_percent.as_ref().map(|p| p.value).unwrap_or(20.0);
                    if !(0.0..=100.0).contains(&budget_percent) {
                        ctx.error_at("budget_percent", "must be in [0, 100]");
                    }
                    th.retry_budget = Some(RetryBudget {
                        budget_percent,
                        min_retry_concurrency: b
                            .min_retry_concurrency
                            .map(|v| v.value)
                            .unwrap_or(3),
                    });
                });
            }
            if slot == 0 {
                out.default = th;
            } else {
                out.high = th;
            }
        });
    }
    out
}
