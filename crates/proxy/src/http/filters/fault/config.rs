//! `envoy.filters.http.fault` (`HTTPFault`): delays, aborts and response rate limits,
//! by percentage or by request header.

use ferry_config::any::unpack;
use ferry_config::fraction::{fraction, Fraction};
use ferry_config::matcher::HeaderMatcher;
use ferry_config::util::duration;
use ferry_config::Ctx;
use ferry_envoy_api::pb::envoy::extensions::filters::common::fault::v3 as common;
use ferry_envoy_api::pb::envoy::extensions::filters::http::fault::v3 as pb;
use ferry_envoy_api::pb::google::protobuf::Any;
use std::time::Duration;

/// A validated `HTTPFault`.
#[derive(Debug, Clone, Default)]
pub struct Fault {
    /// `delay`.
    pub delay: Option<Delay>,
    /// `abort`.
    pub abort: Option<Abort>,
    /// `response_rate_limit`.
    pub response_rate_limit: Option<RateLimit>,
    /// `upstream_cluster`: faults apply only to requests routed to this cluster.
    pub upstream_cluster: Option<String>,
    /// `headers`: faults apply only to requests matching all of them.
    pub headers: Vec<HeaderMatcher>,
    /// `downstream_nodes`: faults apply only to requests whose
    /// `x-envoy-downstream-service-node` is one of these.
    pub downstream_nodes: Vec<String>,
    /// `max_active_faults` (None: unlimited).
    pub max_active_faults: Option<u64>,
}

/// How long a delay is.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum DelayKind {
    /// `fixed_delay`.
    Fixed(Duration),
    /// `header_delay`: `x-envoy-fault-delay-request` (milliseconds).
    Header,
}

/// `delay`.
#[derive(Debug, Clone, Copy)]
pub struct Delay {
    /// Fixed or from a header.
    pub kind: DelayKind,
    /// `percentage` (default 100%... of the header's percentage, with a header).
    pub percentage: Fraction,
}

/// What an abort answers.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum AbortKind {
    /// `http_status`.
    Http(u16),
    /// `grpc_status`.
    Grpc(u32),
    /// `header_abort`: `x-envoy-fault-abort-request` / `-abort-grpc-request`.
    Header,
}

/// `abort`.
#[derive(Debug, Clone)]
pub struct Abort {
    /// Status source.
    pub kind: AbortKind,
    /// `percentage`.
    pub percentage: Fraction,
    /// `response_body` (default "fault filter abort").
    pub body: Option<String>,
}

/// How fast a throttled response may go.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RateLimitKind {
    /// `fixed_limit.limit_kbps`.
    Fixed(u64),
    /// `header_limit`: `x-envoy-fault-throughput-response` (KiB/s).
    Header,
}

/// `response_rate_limit`.
#[derive(Debug, Clone, Copy)]
pub struct RateLimit {
    /// Fixed or from a header.
    pub kind: RateLimitKind,
    /// `percentage`.
    pub percentage: Fraction,
}

fn percentage(
    p: &Option<ferry_envoy_api::pb::envoy::r#type::v3::FractionalPercent>,
    ctx: &mut Ctx,
) -> Fraction {
    match p {
        Some(p) => ctx.at("percentage", |c| fraction(p, c)),
        // Envoy's default for an unset percentage: always.
        None => Fraction::ALL,
    }
}

fn runtime_key_unused(key: &str, field: &str, ctx: &mut Ctx) {
    // Runtime keys name overrides in Envoy's runtime, which ferry has none of: accepted
    // and without effect, as an Envoy without those runtime keys set.
    let _ = (key, field, ctx);
}

/// Converts an `HTTPFault` from its `Any`.
pub fn from_any(any: &Any, ctx: &mut Ctx) -> Option<Fault> {
    let f: pb::HttpFault = unpack(any, ctx)?;
    ferry_config::fields!(ctx, &f => pb::HttpFault as "envoy.filters.http.fault" {
        delay, abort, upstream_cluster, headers, downstream_nodes, max_active_faults,
        response_rate_limit, delay_percent_runtime, abort_percent_runtime,
        delay_duration_runtime, abort_http_status_runtime, max_active_faults_runtime,
        response_rate_limit_percent_runtime, abort_grpc_status_runtime,
    } refused {
        disable_downstream_cluster_stats, filter_metadata,
    });
    let mut out = Fault::default();
    if let Some(d) = &f.delay {
        ctx.at("delay", |ctx| {
            use common::fault_delay::FaultDelaySecifier as S;
            ferry_config::fields!(ctx, d => common::FaultDelay {
                fault_delay_secifier: ["fixed_delay", "header_delay"], percentage,
            });
            let kind = match &d.fault_delay_secifier {
                Some(S::FixedDelay(v)) => match duration(&Some(*v), "fixed_delay", ctx) {
                    Some(d) => DelayKind::Fixed(d),
                    None => return,
                },
                Some(S::HeaderDelay(h)) => {
                    ferry_config::fields!(ctx, h => common::fault_delay::HeaderDelay {});
                    DelayKind::Header
                }
                None => {
                    ctx.error("fixed_delay or header_delay is required");
                    return;
                }
            };
            out.delay = Some(Delay {
                kind,
                percentage: percentage(&d.percentage, ctx),
            });
        });
    }
    if let Some(a) = &f.abort {
        ctx.at("abort", |ctx| {
            use pb::fault_abort::ErrorType as E;
            ferry_config::fields!(ctx, a => pb::FaultAbort {
                error_type: ["http_status", "header_abort", "grpc_status"], percentage,
                response_body,
            });
            let kind = match &a.error_type {
                Some(E::HttpStatus(s)) => {
                    if !(200..600).contains(s) {
                        ctx.error_at("http_status", "must be in [200, 600)");
                        return;
                    }
                    AbortKind::Http(*s as u16)
                }
                Some(E::GrpcStatus(s)) => AbortKind::Grpc(*s),
                Some(E::HeaderAbort(h)) => {
                    ferry_config::fields!(ctx, h => pb::fault_abort::HeaderAbort {});
                    AbortKind::Header
                }
                None => {
                    ctx.error("http_status, grpc_status or header_abort is required");
                    return;
                }
            };
            out.abort = Some(Abort {
                kind,
                percentage: percentage(&a.percentage, ctx),
                body: (!a.response_body.is_empty()).then(|| a.response_body.clone()),
            });
        });
    }
    if let Some(r) = &f.response_rate_limit {
        ctx.at("response_rate_limit", |ctx| {
            use common::fault_rate_limit::LimitType as L;
            ferry_config::fields!(ctx, r => common::FaultRateLimit {
                limit_type: ["fixed_limit", "header_limit"], percentage,
            });
            let kind = match &r.limit_type {
                Some(L::FixedLimit(l)) => {
                    ferry_config::fields!(ctx, l => common::fault_rate_limit::FixedLimit {
                        limit_kbps,
                    });
                    if l.limit_kbps == 0 {
                        ctx.error_at("fixed_limit.limit_kbps", "must be at least 1");
                        return;
                    }
                    RateLimitKind::Fixed(l.limit_kbps)
                }
                Some(L::HeaderLimit(h)) => {
                    ferry_config::fields!(ctx, h => common::fault_rate_limit::HeaderLimit {});
                    RateLimitKind::Header
                }
                None => {
                    ctx.error("fixed_limit or header_limit is required");
                    return;
                }
            };
            out.response_rate_limit = Some(RateLimit {
                kind,
                percentage: percentage(&r.percentage, ctx),
            });
        });
    }
    out.upstream_cluster = (!f.upstream_cluster.is_empty()).then(|| f.upstream_cluster.clone());
    for (i, h) in f.headers.iter().enumerate() {
        if let Some(m) = ctx.at(format!("headers[{i}]"), |c| {
            ferry_config::matcher::header_matcher(h, c)
        }) {
            out.headers.push(m);
        }
    }
    out.downstream_nodes = f.downstream_nodes.clone();
    out.max_active_faults = f.max_active_faults.map(|v| u64::from(v.value));
    for (key, field) in [
        (&f.delay_percent_runtime, "delay_percent_runtime"),
        (&f.abort_percent_runtime, "abort_percent_runtime"),
        (&f.delay_duration_runtime, "delay_duration_runtime"),
        (&f.abort_http_status_runtime, "abort_http_status_runtime"),
        (&f.max_active_faults_runtime, "max_active_faults_runtime"),
        (
            &f.response_rate_limit_percent_runtime,
            "response_rate_limit_percent_runtime",
        ),
        (&f.abort_grpc_status_runtime, "abort_grpc_status_runtime"),
    ] {
        runtime_key_unused(key, field, ctx);
    }
    Some(out)
}
