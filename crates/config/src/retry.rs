//! Retry, hedging and mirroring policies of routes and virtual hosts
//! (`RetryPolicy`, `HedgePolicy`, `RequestMirrorPolicy`), and fractional percentages.

use crate::fraction::{fraction, runtime_fraction, Fraction};
use crate::matcher::HeaderMatcher;
use crate::util::duration;
use crate::Ctx;
use ferry_envoy_api::pb::envoy::config::route::v3 as pb;
use std::time::Duration;

/// Envoy's default `retry_back_off.base_interval`.
pub const DEFAULT_BACK_OFF_BASE: Duration = Duration::from_millis(25);
/// Envoy's default `rate_limited_retry_back_off.max_interval`.
pub const DEFAULT_RATE_LIMITED_MAX: Duration = Duration::from_secs(300);

/// The conditions of `retry_on` / `x-envoy-retry-on` / `x-envoy-retry-grpc-on`, as bits.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct RetryOn(pub u32);

impl RetryOn {
    /// `5xx`: a 5xx response, a reset, a connect failure or a per-try timeout.
    pub const FIVE_XX: u32 = 1;
    /// `gateway-error`: 502, 503, 504, a reset, a connect failure or a per-try timeout.
    pub const GATEWAY_ERROR: u32 = 1 << 1;
    /// `reset`: no response (disconnect, reset, per-try timeout).
    pub const RESET: u32 = 1 << 2;
    /// `connect-failure`.
    pub const CONNECT_FAILURE: u32 = 1 << 3;
    /// `envoy-ratelimited`: the response carries `x-envoy-ratelimited`.
    pub const ENVOY_RATELIMITED: u32 = 1 << 4;
    /// `retriable-4xx`: 409.
    pub const RETRIABLE_4XX: u32 = 1 << 5;
    /// `refused-stream`: an HTTP/2 REFUSED_STREAM reset.
    pub const REFUSED_STREAM: u32 = 1 << 6;
    /// `retriable-status-codes`.
    pub const RETRIABLE_STATUS_CODES: u32 = 1 << 7;
    /// `retriable-headers`.
    pub const RETRIABLE_HEADERS: u32 = 1 << 8;
    /// `http3-post-connect-failure` (accepted; ferry has no HTTP/3 upstreams).
    pub const HTTP3_POST_CONNECT_FAILURE: u32 = 1 << 9;
    /// `reset-before-request`: a reset before the request was sent.
    pub const RESET_BEFORE_REQUEST: u32 = 1 << 10;
    /// gRPC `cancelled` (status 1).
    pub const GRPC_CANCELLED: u32 = 1 << 16;
    /// gRPC `deadline-exceeded` (4).
    pub const GRPC_DEADLINE_EXCEEDED: u32 = 1 << 17;
    /// gRPC `resource-exhausted` (8).
    pub const GRPC_RESOURCE_EXHAUSTED: u32 = 1 << 18;
    /// gRPC `unavailable` (14).
    pub const GRPC_UNAVAILABLE: u32 = 1 << 19;
    /// gRPC `internal` (13).
    pub const GRPC_INTERNAL: u32 = 1 << 20;

    /// One condition by its Envoy name (HTTP and gRPC names alike).
    pub fn bit(name: &str) -> Option<u32> {
        Some(match name {
            "5xx" => Self::FIVE_XX,
            "gateway-error" => Self::GATEWAY_ERROR,
            "reset" => Self::RESET,
            "reset-before-request" => Self::RESET_BEFORE_REQUEST,
            "connect-failure" => Self::CONNECT_FAILURE,
            "envoy-ratelimited" => Self::ENVOY_RATELIMITED,
            "retriable-4xx" => Self::RETRIABLE_4XX,
            "refused-stream" => Self::REFUSED_STREAM,
            "retriable-status-codes" => Self::RETRIABLE_STATUS_CODES,
            "retriable-headers" => Self::RETRIABLE_HEADERS,
            "http3-post-connect-failure" => Self::HTTP3_POST_CONNECT_FAILURE,
            "cancelled" => Self::GRPC_CANCELLED,
            "deadline-exceeded" => Self::GRPC_DEADLINE_EXCEEDED,
            "resource-exhausted" => Self::GRPC_RESOURCE_EXHAUSTED,
            "unavailable" => Self::GRPC_UNAVAILABLE,
            "internal" => Self::GRPC_INTERNAL,
            _ => return None,
        })
    }

    /// Parses a comma-separated list; unknown names are returned separately.
    pub fn parse(list: &str) -> (RetryOn, Vec<&str>) {
        let mut bits = 0;
        let mut unknown = Vec::new();
        for name in list.split(',').map(str::trim).filter(|s| !s.is_empty()) {
            match Self::bit(name) {
                Some(b) => bits |= b,
                None => unknown.push(name),
            }
        }
        (RetryOn(bits), unknown)
    }

    /// Whether any of `bits` is set.
    pub fn has(self, bits: u32) -> bool {
        self.0 & bits != 0
    }
}

/// `rate_limited_retry_back_off.reset_headers[].format`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ResetFormat {
    /// `SECONDS`: seconds to wait (`Retry-After: 30`).
    Seconds,
    /// `UNIX_TIMESTAMP`: when to retry (`X-RateLimit-Reset: 1700000000`).
    UnixTimestamp,
}

/// `rate_limited_retry_back_off`.
#[derive(Debug, Clone)]
pub struct RateLimitedBackOff {
    /// `reset_headers`, in order: the first usable one wins.
    pub reset_headers: Vec<(http::HeaderName, ResetFormat)>,
    /// `max_interval` (default 300 s): a longer reset interval is not waited for.
    pub max_interval: Duration,
}

/// A validated `RetryPolicy`.
#[derive(Debug, Clone)]
pub struct RetryPolicy {
    /// `retry_on`.
    pub retry_on: RetryOn,
    /// `num_retries` (default 1).
    pub num_retries: u32,
    /// `per_try_timeout` (None: none).
    pub per_try_timeout: Option<Duration>,
    /// `per_try_idle_timeout` (None: none).
    pub per_try_idle_timeout: Option<Duration>,
    /// `retry_back_off.base_interval` (default 25 ms).
    pub back_off_base: Duration,
    /// `retry_back_off.max_interval` (default 10 × base).
    pub back_off_max: Duration,
    /// `rate_limited_retry_back_off`.
    pub rate_limited_back_off: Option<RateLimitedBackOff>,
    /// `retriable_status_codes`.
    pub retriable_status_codes: Vec<u16>,
    /// `retriable_headers`: a response matching any is retried (`retriable-headers`).
    pub retriable_headers: Vec<HeaderMatcher>,
    /// `retriable_request_headers`: when set, only requests matching one are retried.
    pub retriable_request_headers: Vec<HeaderMatcher>,
    /// `retry_host_predicate` has `envoy.retry_host_predicates.previous_hosts`.
    pub previous_hosts: bool,
    /// `host_selection_retry_max_attempts` (default 1).
    pub host_selection_retry_max_attempts: u32,
}

impl Default for RetryPolicy {
    /// What a request gets from retry headers alone: one retry, default back-off.
    fn default() -> Self {
        RetryPolicy {
            retry_on: RetryOn::default(),
            num_retries: 1,
            per_try_timeout: None,
            per_try_idle_timeout: None,
            back_off_base: DEFAULT_BACK_OFF_BASE,
            back_off_max: DEFAULT_BACK_OFF_BASE * 10,
            rate_limited_back_off: None,
            retriable_status_codes: Vec::new(),
            retriable_headers: Vec::new(),
            retriable_request_headers: Vec::new(),
            previous_hosts: false,
            host_selection_retry_max_attempts: 1,
        }
    }
}

const PREVIOUS_HOSTS: &str = "envoy.retry_host_predicates.previous_hosts";

/// Converts a `RetryPolicy`.
pub fn retry_policy(p: &pb::RetryPolicy, ctx: &mut Ctx) -> RetryPolicy {
    crate::fields!(ctx, p => pb::RetryPolicy {
        retry_on, num_retries, per_try_timeout, per_try_idle_timeout, retry_host_predicate,
        host_selection_retry_max_attempts, retriable_status_codes, retry_back_off,
        rate_limited_retry_back_off, retriable_headers, retriable_request_headers,
    } refused {
        retry_options_predicates, refresh_cluster_on_retry,
    } refused_extensions {
        retry_priority,
    });
    let mut out = RetryPolicy::default();
    let (retry_on, unknown) = RetryOn::parse(&p.retry_on);
    if !unknown.is_empty() {
        ctx.error_at(
            "retry_on",
            format!("unknown retry condition(s) {unknown:?}"),
        );
    }
    out.retry_on = retry_on;
    if let Some(n) = p.num_retries {
        out.num_retries = n.value;
    }
    out.per_try_timeout =
        duration(&p.per_try_timeout, "per_try_timeout", ctx).filter(|d| !d.is_zero());
    out.per_try_idle_timeout =
        duration(&p.per_try_idle_timeout, "per_try_idle_timeout", ctx).filter(|d| !d.is_zero());
    if let Some(b) = &p.retry_back_off {
        ctx.at("retry_back_off", |ctx| {
            crate::fields!(ctx, b => pb::retry_policy::RetryBackOff {
                base_interval, max_interval,
            });
            match duration(&b.base_interval, "base_interval", ctx) {
                Some(base) if base >= Duration::from_millis(1) => out.back_off_base = base,
                Some(_) => ctx.error_at("base_interval", "must be at least 1ms"),
                None => ctx.error_at("base_interval", "is required"),
            }
            out.back_off_max = match duration(&b.max_interval, "max_interval", ctx) {
                Some(max) if max < out.back_off_base => {
                    ctx.error_at(
                        "max_interval",
                        "must be greater than or equal to base_interval",
                    );
                    out.back_off_base
                }
                Some(max) if max.is_zero() => out.back_off_base * 10,
                Some(max) => max,
                None => out.back_off_base * 10,
            };
        });
    }
    if let Some(r) = &p.rate_limited_retry_back_off {
        ctx.at("rate_limited_retry_back_off", |ctx| {
            crate::fields!(ctx, r => pb::retry_policy::RateLimitedRetryBackOff {
                reset_headers, max_interval,
            });
            if r.reset_headers.is_empty() {
                ctx.error_at("reset_headers", "at least one reset header is required");
            }
            let mut reset_headers = Vec::new();
            for (i, h) in r.reset_headers.iter().enumerate() {
                ctx.at(format!("reset_headers[{i}]"), |ctx| {
                    crate::fields!(ctx, h => pb::retry_policy::ResetHeader {
                        name, format,
                    });
                    match http::HeaderName::from_bytes(h.name.to_ascii_lowercase().as_bytes()) {
                        Ok(n) => reset_headers.push((
                            n,
                            if h.format == 1 {
                                ResetFormat::UnixTimestamp
                            } else {
                                ResetFormat::Seconds
                            },
                        )),
                        Err(_) => ctx.error_at("name", "invalid header name"),
                    }
                });
            }
            let max_interval = duration(&r.max_interval, "max_interval", ctx)
                .filter(|d| !d.is_zero())
                .unwrap_or(DEFAULT_RATE_LIMITED_MAX);
            out.rate_limited_back_off = Some(RateLimitedBackOff {
                reset_headers,
                max_interval,
            });
        });
    }
    for (i, code) in p.retriable_status_codes.iter().enumerate() {
        match u16::try_from(*code) {
            Ok(c) if (100..600).contains(&c) => out.retriable_status_codes.push(c),
            _ => ctx.error_at(
                &format!("retriable_status_codes[{i}]"),
                "is not an HTTP status",
            ),
        }
    }
    out.retriable_headers = matchers(&p.retriable_headers, "retriable_headers", ctx);
    out.retriable_request_headers = matchers(
        &p.retriable_request_headers,
        "retriable_request_headers",
        ctx,
    );
    for (i, pred) in p.retry_host_predicate.iter().enumerate() {
        ctx.at(format!("retry_host_predicate[{i}]"), |ctx| {
            crate::fields!(ctx, pred => pb::retry_policy::RetryHostPredicate {
                name, config_type: ["typed_config"],
            });
            if pred.name == PREVIOUS_HOSTS {
                out.previous_hosts = true;
                previous_hosts_predicate(pred, ctx);
            } else {
                ctx.error_at("name", format!("only {PREVIOUS_HOSTS} is supported"));
            }
        });
    }
    if p.host_selection_retry_max_attempts < 0 {
        ctx.error_at("host_selection_retry_max_attempts", "must not be negative");
    } else if p.host_selection_retry_max_attempts > 0 {
        out.host_selection_retry_max_attempts =
            u32::try_from(p.host_selection_retry_max_attempts).unwrap_or(u32::MAX);
    }
    out
}

/// The `typed_config` of a `previous_hosts` predicate (the only one ferry has).
fn previous_hosts_predicate(pred: &pb::retry_policy::RetryHostPredicate, ctx: &mut Ctx) {
    use ferry_envoy_api::pb::envoy::extensions::retry::host::previous_hosts::v3 as previous_hosts;
    use pb::retry_policy::retry_host_predicate::ConfigType;
    let Some(ConfigType::TypedConfig(any)) = &pred.config_type else {
        return;
    };
    let known = ["envoy.extensions.retry.host.previous_hosts.v3.PreviousHostsPredicate"];
    if crate::support::known_type(ctx, &pred.name, any, &known).is_none() {
        return;
    }
    ctx.at("typed_config", |ctx| {
        if let Some(p) = crate::any::unpack::<previous_hosts::PreviousHostsPredicate>(any, ctx) {
            crate::fields!(ctx, p => previous_hosts::PreviousHostsPredicate as "envoy.retry_host_predicates.previous_hosts" {});
        }
    });
}

fn matchers(list: &[pb::HeaderMatcher], field: &str, ctx: &mut Ctx) -> Vec<HeaderMatcher> {
    list.iter()
        .enumerate()
        .filter_map(|(i, h)| {
            ctx.at(format!("{field}[{i}]"), |c| {
                crate::matcher::header_matcher(h, c)
            })
        })
        .collect()
}

/// A validated `HedgePolicy` (only `hedge_on_per_try_timeout`; one initial request).
#[derive(Debug, Clone, Copy, Default)]
pub struct HedgePolicy {
    /// `hedge_on_per_try_timeout`: a per-try timeout starts another attempt and keeps
    /// the first; the first good response wins.
    pub hedge_on_per_try_timeout: bool,
}

/// Converts a `HedgePolicy`.
pub fn hedge_policy(h: &pb::HedgePolicy, ctx: &mut Ctx) -> HedgePolicy {
    crate::fields!(ctx, h => pb::HedgePolicy {
        initial_requests, additional_request_chance, hedge_on_per_try_timeout,
    });
    if h.initial_requests.is_some_and(|n| n.value > 1) {
        ctx.error_at("initial_requests", "only 1 is supported");
    }
    if let Some(p) = &h.additional_request_chance {
        ctx.at("additional_request_chance", |c| {
            if fraction(p, c).numerator > 0 {
                c.error("is not supported");
            }
        });
    }
    HedgePolicy {
        hedge_on_per_try_timeout: h.hedge_on_per_try_timeout,
    }
}

/// Where a mirror copy goes.
#[derive(Debug, Clone)]
pub enum MirrorCluster {
    /// `cluster`.
    Name(String),
    /// `cluster_header`: the cluster named by this request header (no copy when the
    /// header is absent or names no cluster).
    Header(http::HeaderName),
}

/// A validated `RequestMirrorPolicy`.
#[derive(Debug, Clone)]
pub struct MirrorPolicy {
    /// `cluster` or `cluster_header`.
    pub cluster: MirrorCluster,
    /// `runtime_fraction` (default: every request).
    pub fraction: Fraction,
    /// `disable_shadow_host_suffix_append`: keep the authority as is.
    pub keep_host: bool,
}

/// Converts a `RequestMirrorPolicy`.
pub fn mirror_policy(m: &pb::route_action::RequestMirrorPolicy, ctx: &mut Ctx) -> MirrorPolicy {
    crate::fields!(ctx, m => pb::route_action::RequestMirrorPolicy {
        cluster, cluster_header, runtime_fraction, disable_shadow_host_suffix_append,
    } refused {
        trace_sampled, request_headers_mutations, host_rewrite_literal,
    });
    let cluster = match (m.cluster.is_empty(), m.cluster_header.is_empty()) {
        (false, true) => MirrorCluster::Name(m.cluster.clone()),
        (true, false) => {
            match http::HeaderName::from_bytes(m.cluster_header.to_ascii_lowercase().as_bytes()) {
                Ok(h) => MirrorCluster::Header(h),
                Err(_) => {
                    ctx.error_at("cluster_header", "is not a valid header name");
                    MirrorCluster::Name(String::new())
                }
            }
        }
        _ => {
            ctx.error("exactly one of cluster and cluster_header is required");
            MirrorCluster::Name(m.cluster.clone())
        }
    };
    let fraction = match &m.runtime_fraction {
        Some(f) => ctx.at("runtime_fraction", |c| runtime_fraction(f, c)),
        None => Fraction::ALL,
    };
    MirrorPolicy {
        cluster,
        fraction,
        keep_host: m.disable_shadow_host_suffix_append,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn retry_on_parses_http_and_grpc_names() {
        let (on, unknown) = RetryOn::parse("5xx, reset,unavailable,bogus");
        assert!(
            on.has(RetryOn::FIVE_XX) && on.has(RetryOn::RESET) && on.has(RetryOn::GRPC_UNAVAILABLE)
        );
        assert!(!on.has(RetryOn::CONNECT_FAILURE));
        assert_eq!(unknown, vec!["bogus"]);
    }

    #[test]
    fn fractions_sample_their_share() {
        assert!(Fraction::ALL.sample());
        let none = Fraction {
            numerator: 0,
            denominator: 100,
        };
        assert!(!(0..1000).any(|_| none.sample()));
        let half = Fraction {
            numerator: 5000,
            denominator: 10_000,
        };
        let hits = (0..10_000).filter(|_| half.sample()).count();
        assert!((4500..5500).contains(&hits), "{hits}");
    }
}
