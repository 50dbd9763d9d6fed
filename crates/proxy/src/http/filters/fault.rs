//! `envoy.filters.http.fault`: injects delays (`DI`), aborts (`FI`) and response
//! throughput limits, by percentage or as the request's `x-envoy-fault-*` headers ask.

use super::{Env, FilterRequest, LocalReply, RouteOverride, Verdict};
use crate::http::route_match::header_matches;
use ferry_config::filters::fault::{AbortKind, DelayKind, Fault, RateLimitKind};
use ferry_config::retry::Fraction;
use std::sync::Arc;
use std::time::Duration;

const DELAY_REQUEST: &str = "x-envoy-fault-delay-request";
const DELAY_PERCENTAGE: &str = "x-envoy-fault-delay-request-percentage";
const ABORT_REQUEST: &str = "x-envoy-fault-abort-request";
const ABORT_GRPC_REQUEST: &str = "x-envoy-fault-abort-grpc-request";
const ABORT_PERCENTAGE: &str = "x-envoy-fault-abort-request-percentage";
const THROUGHPUT: &str = "x-envoy-fault-throughput-response";
const THROUGHPUT_PERCENTAGE: &str = "x-envoy-fault-throughput-response-percentage";
const DOWNSTREAM_NODE: &str = "x-envoy-downstream-service-node";

ferry_stats::stat_group! {
    /// `http.<stat_prefix>.fault.*`.
    pub struct FaultStats {
        counters: { delays_injected, aborts_injected, response_rl_injected, faults_overflow }
        gauges: { active_faults }
    }
}

/// The fault filter of one HCM.
pub struct FaultFilter {
    name: String,
    config: Arc<Fault>,
    stats: Arc<FaultStats>,
}

/// Counts an active fault while it lives.
/// A faulted stream, counted in `active_faults` until its response ends.
struct Active(Arc<FaultStats>);

impl Drop for Active {
    fn drop(&mut self) {
        self.0.active_faults.dec();
    }
}

fn header_u64(rq: &FilterRequest<'_>, name: &str) -> Option<u64> {
    rq.headers
        .get(name)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.trim().parse::<u64>().ok())
}

/// The fraction a fault applies to: the configured one, or — for header-controlled
/// faults — the request's percentage header, at most the configured numerator.
fn fraction(
    configured: Fraction,
    rq: &FilterRequest<'_>,
    header: &str,
    from_header: bool,
) -> Fraction {
    if !from_header {
        return configured;
    }
    match header_u64(rq, header) {
        Some(n) => Fraction {
            numerator: (n.min(u64::from(u32::MAX)) as u32).min(configured.numerator),
            denominator: configured.denominator,
        },
        None => configured,
    }
}

impl FaultFilter {
    /// Registers the stats under `http.<stat_prefix>.fault.`.
    pub fn new(name: &str, config: Arc<Fault>, env: &Env<'_>) -> FaultFilter {
        let stats = Arc::new(FaultStats::default());
        env.stats
            .register(format!("http.{}.fault.", env.stat_prefix), &stats);
        FaultFilter {
            name: name.to_string(),
            config,
            stats,
        }
    }

    /// The filter's name in `http_filters`.
    pub fn name(&self) -> &str {
        &self.name
    }

    /// Delays, then aborts or sets up a throughput limit, as the config and headers say.
    pub async fn on_request(&self, rq: &mut FilterRequest<'_>) -> Verdict {
        let config = match rq.override_for(&self.name) {
            Some(RouteOverride::Fault(f)) => f.clone(),
            _ => self.config.clone(),
        };
        let cfg = &*config;
        if let Some(c) = &cfg.upstream_cluster {
            if rq.cluster != Some(c.as_str()) {
                return Verdict::Continue;
            }
        }
        if !cfg.headers.is_empty() {
            let view = rq.view();
            if !cfg.headers.iter().all(|m| header_matches(m, &view)) {
                return Verdict::Continue;
            }
        }
        if !cfg.downstream_nodes.is_empty() {
            let node = rq
                .headers
                .get(DOWNSTREAM_NODE)
                .and_then(|v| v.to_str().ok());
            if !node.is_some_and(|n| cfg.downstream_nodes.iter().any(|d| d == n)) {
                return Verdict::Continue;
            }
        }
        // One active fault per faulted stream, held until its response ends.
        let mut active: Option<Active> = None;
        // Delay.
        if let Some(d) = &cfg.delay {
            let header = matches!(d.kind, DelayKind::Header);
            let duration = match d.kind {
                DelayKind::Fixed(t) => Some(t),
                DelayKind::Header => header_u64(rq, DELAY_REQUEST).map(Duration::from_millis),
            };
            if let Some(duration) = duration {
                if fraction(d.percentage, rq, DELAY_PERCENTAGE, header).sample()
                    && self.admit(cfg, &mut active)
                {
                    self.stats.delays_injected.inc();
                    rq.info
                        .response_flags
                        .set(ferry_config::ResponseFlag::DelayInjected);
                    tokio::time::sleep(duration).await;
                }
            }
        }
        // Abort.
        if let Some(a) = &cfg.abort {
            let header = matches!(a.kind, AbortKind::Header);
            let status = match a.kind {
                AbortKind::Http(s) => Some((s, None)),
                AbortKind::Grpc(g) => Some((200, Some(g))),
                AbortKind::Header => match (
                    header_u64(rq, ABORT_REQUEST),
                    header_u64(rq, ABORT_GRPC_REQUEST),
                ) {
                    (Some(s), _) if (200..600).contains(&s) => Some((s as u16, None)),
                    (_, Some(g)) => Some((200, Some(g as u32))),
                    _ => None,
                },
            };
            if let Some((status, grpc)) = status {
                if fraction(a.percentage, rq, ABORT_PERCENTAGE, header).sample()
                    && self.admit(cfg, &mut active)
                {
                    self.stats.aborts_injected.inc();
                    rq.info
                        .response_flags
                        .set(ferry_config::ResponseFlag::FaultInjected);
                    if let Some(held) = active.take() {
                        rq.response.hold.push(Box::new(held));
                    }
                    return Verdict::Reply(LocalReply {
                        status: http::StatusCode::from_u16(status)
                            .unwrap_or(http::StatusCode::SERVICE_UNAVAILABLE),
                        body: Some(
                            a.body
                                .clone()
                                .unwrap_or_else(|| "fault filter abort".into()),
                        ),
                        grpc_status: grpc,
                        flag: None,
                        details: "fault_filter_abort",
                        headers: Vec::new(),
                    });
                }
            }
        }
        // Response throughput.
        if let Some(r) = &cfg.response_rate_limit {
            let header = matches!(r.kind, RateLimitKind::Header);
            let kbps = match r.kind {
                RateLimitKind::Fixed(k) => Some(k),
                RateLimitKind::Header => header_u64(rq, THROUGHPUT).filter(|k| *k > 0),
            };
            if let Some(kbps) = kbps {
                if fraction(r.percentage, rq, THROUGHPUT_PERCENTAGE, header).sample()
                    && self.admit(cfg, &mut active)
                {
                    self.stats.response_rl_injected.inc();
                    rq.response.throttle_kbps = Some(kbps);
                }
            }
        }
        if let Some(held) = active {
            rq.response.hold.push(Box::new(held));
        }
        Verdict::Continue
    }

    /// Whether a fault may be injected: the stream already counts as faulted, or
    /// becomes so within `max_active_faults` (else `faults_overflow`).
    fn admit(&self, cfg: &Fault, active: &mut Option<Active>) -> bool {
        if active.is_some() {
            return true;
        }
        if let Some(max) = cfg.max_active_faults {
            if self.stats.active_faults.value() >= max {
                self.stats.faults_overflow.inc();
                return false;
            }
        }
        self.stats.active_faults.inc();
        *active = Some(Active(self.stats.clone()));
        true
    }
}
