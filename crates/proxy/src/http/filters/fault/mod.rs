//! `envoy.filters.http.fault`: injects delays (`DI`), aborts (`FI`) and response
//! throughput limits, by percentage or as the request's `x-envoy-fault-*` headers ask.

pub mod config;

use super::Env;
use crate::http::filter_manager::{
    DataStatus, FilterRequest, HeadersStatus, Hooks, HttpFilter, PerRouteConfig, StreamFilter,
};
use crate::http::local_reply::LocalReply;
use crate::http::route_match::header_matches;
use bytes::Bytes;
use config::{AbortKind, DelayKind, Fault, RateLimitKind};
use ferry_config::filters::FilterConfig;
use ferry_config::fraction::Fraction;
use ferry_config::ResponseFlag;
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

/// The response throughput limit releases a sixteenth of a second's worth of bytes
/// every 1/16 s, as Envoy's stream rate limiter.
const TICK: Duration = Duration::from_micros(62_500);

ferry_stats::stat_group! {
    /// `http.<stat_prefix>.fault.*`.
    pub struct FaultStats {
        counters: { delays_injected, aborts_injected, response_rl_injected, faults_overflow }
        gauges: { active_faults }
    }
}

super::http_filter_factory! {
    name: "envoy.filters.http.fault",
    config_type: "envoy.extensions.filters.http.fault.v3.HTTPFault",
    config: Fault,
    per_route: true,
    build: |name: &str, _, config, env: &Env<'_>| Arc::new(FaultFilter::new(name, config, env)),
}

/// The fault filter of one HCM.
pub struct FaultFilter {
    name: String,
    config: Arc<Fault>,
    stats: Arc<FaultStats>,
}

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
}

impl HttpFilter for FaultFilter {
    fn name(&self) -> &str {
        &self.name
    }

    fn stream(&self, per_route: Option<&PerRouteConfig>) -> Box<dyn StreamFilter> {
        let config = per_route
            .and_then(|c| c.clone().downcast::<Fault>().ok())
            .unwrap_or_else(|| self.config.clone());
        Box::new(FaultStream {
            config,
            stats: self.stats.clone(),
            active: None,
            throttle: None,
        })
    }

    fn route_config(&self, config: &FilterConfig, _env: &Env<'_>) -> Option<PerRouteConfig> {
        Some(config.clone())
    }
}

/// The fault filter on one stream.
struct FaultStream {
    config: Arc<Fault>,
    stats: Arc<FaultStats>,
    /// Held from the first fault injected until the response ends.
    active: Option<Active>,
    throttle: Option<Throttle>,
}

/// A response throughput limit in force.
struct Throttle {
    /// Bytes released per tick.
    per_tick: usize,
    /// When the next bytes may go (None: at once).
    next: Option<tokio::time::Instant>,
}

impl Throttle {
    fn new(kbps: u64) -> Throttle {
        let per_tick = (kbps.saturating_mul(1024) / 16).max(1);
        Throttle {
            per_tick: usize::try_from(per_tick).unwrap_or(usize::MAX),
            next: None,
        }
    }

    /// Releases this tick's share of `data` and paces the rest.
    fn release(&mut self, data: &mut Bytes) -> DataStatus {
        let now = tokio::time::Instant::now();
        if let Some(next) = self.next.filter(|n| *n > now) {
            return DataStatus::Pace {
                rest: std::mem::take(data),
                at: next,
            };
        }
        let rest = data.split_off(self.per_tick.min(data.len()));
        let next = now + TICK;
        self.next = Some(next);
        if rest.is_empty() {
            DataStatus::Continue
        } else {
            DataStatus::Pace { rest, at: next }
        }
    }
}

impl FaultStream {
    /// Whether a fault may be injected: the stream already counts as faulted, or
    /// becomes so within `max_active_faults` (else `faults_overflow`).
    fn admit(&mut self) -> bool {
        if self.active.is_some() {
            return true;
        }
        if let Some(max) = self.config.max_active_faults {
            if self.stats.active_faults.value() >= max {
                self.stats.faults_overflow.inc();
                return false;
            }
        }
        self.stats.active_faults.inc();
        self.active = Some(Active(self.stats.clone()));
        true
    }

    /// Whether the fault applies to this request at all.
    fn applies(&self, rq: &FilterRequest<'_>) -> bool {
        let cfg = &*self.config;
        if let Some(c) = &cfg.upstream_cluster {
            if rq.cluster != Some(c.as_str()) {
                return false;
            }
        }
        if !cfg.headers.is_empty() {
            let view = rq.view();
            if !cfg.headers.iter().all(|m| header_matches(m, &view)) {
                return false;
            }
        }
        if !cfg.downstream_nodes.is_empty() {
            let node = rq
                .headers
                .get(DOWNSTREAM_NODE)
                .and_then(|v| v.to_str().ok());
            if !node.is_some_and(|n| cfg.downstream_nodes.iter().any(|d| d == n)) {
                return false;
            }
        }
        true
    }

    /// The delay to inject, if sampled.
    fn delay(&mut self, rq: &FilterRequest<'_>) -> Option<Duration> {
        let config = self.config.clone();
        let d = config.delay.as_ref()?;
        let header = matches!(d.kind, DelayKind::Header);
        let duration = match d.kind {
            DelayKind::Fixed(t) => Some(t),
            DelayKind::Header => header_u64(rq, DELAY_REQUEST).map(Duration::from_millis),
        }?;
        (fraction(d.percentage, rq, DELAY_PERCENTAGE, header).sample() && self.admit())
            .then_some(duration)
    }

    /// The abort to answer with, if sampled.
    fn abort(&mut self, rq: &FilterRequest<'_>) -> Option<LocalReply> {
        let config = self.config.clone();
        let a = config.abort.as_ref()?;
        let header = matches!(a.kind, AbortKind::Header);
        let (status, grpc) = match a.kind {
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
        }?;
        if !(fraction(a.percentage, rq, ABORT_PERCENTAGE, header).sample() && self.admit()) {
            return None;
        }
        Some(LocalReply {
            status: http::StatusCode::from_u16(status)
                .unwrap_or(http::StatusCode::SERVICE_UNAVAILABLE),
            body: Some(
                a.body
                    .clone()
                    .unwrap_or_else(|| "fault filter abort".into()),
            ),
            grpc_status: grpc,
            flag: Some(ResponseFlag::FaultInjected),
            details: "fault_filter_abort",
            headers: Vec::new(),
        })
    }

    /// The response throughput limit, if sampled.
    fn throughput(&mut self, rq: &FilterRequest<'_>) -> Option<u64> {
        let config = self.config.clone();
        let r = config.response_rate_limit.as_ref()?;
        let header = matches!(r.kind, RateLimitKind::Header);
        let kbps = match r.kind {
            RateLimitKind::Fixed(k) => Some(k),
            RateLimitKind::Header => header_u64(rq, THROUGHPUT).filter(|k| *k > 0),
        }?;
        (fraction(r.percentage, rq, THROUGHPUT_PERCENTAGE, header).sample() && self.admit())
            .then_some(kbps)
    }
}

impl StreamFilter for FaultStream {
    fn hooks(&self) -> Hooks {
        match self.throttle {
            Some(_) => Hooks::RESPONSE_BODY,
            None => Hooks::NONE,
        }
    }

    /// Delays, then aborts or sets up a throughput limit, as the config and headers
    /// say. The sampling is done now; the abort is answered after the delay.
    fn on_request_headers(&mut self, rq: &mut FilterRequest<'_>) -> HeadersStatus {
        if !self.applies(rq) {
            return HeadersStatus::Continue;
        }
        let delay = self.delay(rq);
        if delay.is_some() {
            self.stats.delays_injected.inc();
            rq.info.response_flags.set(ResponseFlag::DelayInjected);
        }
        let abort = self.abort(rq);
        if abort.is_none() {
            if let Some(kbps) = self.throughput(rq) {
                self.stats.response_rl_injected.inc();
                self.throttle = Some(Throttle::new(kbps));
            }
        }
        let stats = self.stats.clone();
        let then = move || match abort {
            Some(reply) => {
                stats.aborts_injected.inc();
                HeadersStatus::LocalReply(reply)
            }
            None => HeadersStatus::Continue,
        };
        match delay {
            Some(d) => HeadersStatus::StopUntil(Box::pin(async move {
                tokio::time::sleep(d).await;
                then()
            })),
            None => then(),
        }
    }

    fn on_response_data(&mut self, data: &mut Bytes, _end_stream: bool) -> DataStatus {
        match &mut self.throttle {
            Some(t) => t.release(data),
            None => DataStatus::Continue,
        }
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::config::RateLimit;
    use super::*;
    use crate::http::filter_manager::FilterChain;
    use http_body_util::{BodyExt, Full};

    #[tokio::test(start_paused = true)]
    async fn one_kib_per_second_takes_a_second_per_kib() {
        let store = ferry_stats::Store::default();
        let env = Env {
            stat_prefix: "t",
            stats: &store,
            health_failed: Default::default(),
            node_cluster: "",
        };
        let fault = Fault {
            response_rate_limit: Some(RateLimit {
                kind: RateLimitKind::Fixed(1),
                percentage: Fraction::ALL,
            }),
            ..Default::default()
        };
        let filter: Arc<dyn HttpFilter> = Arc::new(FaultFilter::new("f", Arc::new(fault), &env));
        let chain = FilterChain::new(&[filter], &Default::default());
        let (reply, _) = crate::testing::request_headers(&chain).await;
        assert!(reply.is_none());
        let body = Full::new(Bytes::from(vec![0u8; 2048]))
            .map_err(|never| match never {})
            .boxed();
        let start = tokio::time::Instant::now();
        let all = chain
            .response_body(body, 1 << 20)
            .collect()
            .await
            .unwrap()
            .to_bytes();
        assert_eq!(all.len(), 2048);
        // 2 KiB at 64 bytes per 1/16 s: 32 ticks, the first at once.
        let took = start.elapsed();
        assert!(
            took >= Duration::from_millis(1900) && took <= Duration::from_millis(2100),
            "{took:?}"
        );
    }

    #[tokio::test(start_paused = true)]
    async fn the_throttle_releases_a_tick_of_bytes_at_once_then_one_per_tick() {
        // 1 KiB/s: 64 bytes per 1/16 s.
        let mut t = Throttle::new(1);
        let start = tokio::time::Instant::now();
        let mut data = Bytes::from(vec![0u8; 200]);
        let DataStatus::Pace { rest, at } = t.release(&mut data) else {
            panic!("not paced");
        };
        assert_eq!((data.len(), rest.len()), (64, 136));
        assert_eq!(at, start + TICK);
        // Offered again before its time, it all waits.
        let mut early = rest;
        let DataStatus::Pace { rest, at } = t.release(&mut early) else {
            panic!("not paced");
        };
        assert_eq!((early.len(), rest.len(), at), (0, 136, start + TICK));
        tokio::time::advance(TICK).await;
        let mut again = rest;
        assert!(matches!(t.release(&mut again), DataStatus::Pace { .. }));
        assert_eq!(again.len(), 64);
    }
}
