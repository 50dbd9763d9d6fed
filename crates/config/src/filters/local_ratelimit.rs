//! `envoy.filters.http.local_ratelimit` and `envoy.filters.network.local_ratelimit`:
//! token buckets in the proxy itself.

use super::rate_limit_actions::{rules, RateLimitRule};
use crate::any::unpack;
use crate::fraction::{runtime_fraction, Fraction};
use crate::util::{duration, HeaderMutations};
use crate::Ctx;
use ferry_envoy_api::pb::envoy::extensions::filters::http::local_ratelimit::v3 as pb;
use ferry_envoy_api::pb::envoy::extensions::filters::network::local_ratelimit::v3 as net;
use ferry_envoy_api::pb::envoy::r#type::v3 as types;
use ferry_envoy_api::pb::google::protobuf::Any;
use std::time::Duration;

/// A `TokenBucket`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct TokenBucket {
    /// `max_tokens`: the bucket's size, and its content at start.
    pub max_tokens: u32,
    /// `tokens_per_fill` (default 1).
    pub tokens_per_fill: u32,
    /// `fill_interval` (at least 50 ms).
    pub fill_interval: Duration,
}

fn token_bucket(b: &Option<types::TokenBucket>, ctx: &mut Ctx) -> Option<TokenBucket> {
    let Some(b) = b else {
        ctx.error_at("token_bucket", "is required");
        return None;
    };
    ctx.at("token_bucket", |ctx| {
        if b.max_tokens == 0 {
            ctx.error_at("max_tokens", "must be at least 1");
        }
        let tokens_per_fill = b.tokens_per_fill.map(|v| v.value).unwrap_or(1);
        if tokens_per_fill == 0 {
            ctx.error_at("tokens_per_fill", "must be at least 1");
        }
        let fill_interval = match duration(&b.fill_interval, "fill_interval", ctx) {
            Some(d) if d >= Duration::from_millis(50) => d,
            Some(_) => {
                ctx.error_at("fill_interval", "must be at least 50ms");
                return None;
            }
            None => {
                ctx.error_at("fill_interval", "is required");
                return None;
            }
        };
        Some(TokenBucket {
            max_tokens: b.max_tokens.max(1),
            tokens_per_fill: tokens_per_fill.max(1),
            fill_interval,
        })
    })
}

/// A validated HTTP `LocalRateLimit`.
#[derive(Debug, Clone)]
pub struct LocalRateLimit {
    /// `stat_prefix`: stats under `<stat_prefix>.http_local_rate_limit.`.
    pub stat_prefix: String,
    /// `status` (default 429).
    pub status: http::StatusCode,
    /// `token_bucket` (None: no bucket, every request passes — a per-route config may
    /// turn the filter off this way).
    pub bucket: Option<TokenBucket>,
    /// `filter_enabled` (default 0%: off).
    pub enabled: Fraction,
    /// `filter_enforced` (default 0%: counted, not enforced).
    pub enforced: Fraction,
    /// `response_headers_to_add`: on rate-limited responses.
    pub response_headers: HeaderMutations,
    /// `request_headers_to_add_when_not_enforced`.
    pub request_headers_when_not_enforced: HeaderMutations,
    /// `local_rate_limit_per_downstream_connection`: a bucket per connection.
    pub per_connection: bool,
    /// `descriptors`: buckets for requests whose descriptors match.
    pub descriptors: Vec<Descriptor>,
    /// `rate_limits` of the filter (when set, the route's are not used).
    pub rate_limits: Vec<RateLimitRule>,
    /// `stage`: the route `rate_limits` of this stage apply.
    pub stage: u32,
    /// `always_consume_default_token_bucket` (default true).
    pub always_consume_default: bool,
}

/// `descriptors[]`: a bucket for requests whose descriptor has exactly these entries.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Descriptor {
    /// `entries` (key, value), in order.
    pub entries: Vec<(String, String)>,
    /// `token_bucket`.
    pub bucket: TokenBucket,
}

const OFF: Fraction = Fraction {
    numerator: 0,
    denominator: 100,
};

/// Converts an HTTP `LocalRateLimit` from its `Any`.
pub fn from_any(any: &Any, ctx: &mut Ctx) -> Option<LocalRateLimit> {
    let l: pb::LocalRateLimit = unpack(any, ctx)?;
    if l.stat_prefix.is_empty() {
        ctx.error_at("stat_prefix", "is required");
    }
    let status = match l.status.as_ref().map(|s| s.code) {
        None | Some(0) => http::StatusCode::TOO_MANY_REQUESTS,
        Some(code) => match u16::try_from(code)
            .ok()
            .and_then(|c| http::StatusCode::from_u16(c).ok())
        {
            Some(s) if s.as_u16() >= 400 => s,
            _ => {
                ctx.error_at("status.code", "must be an HTTP error status");
                http::StatusCode::TOO_MANY_REQUESTS
            }
        },
    };
    let bucket = if l.token_bucket.is_some() {
        Some(token_bucket(&l.token_bucket, ctx)?)
    } else {
        None
    };
    let response_headers =
        HeaderMutations::from_proto(&[], &[], &l.response_headers_to_add, &[], ctx);
    let request_headers_when_not_enforced = HeaderMutations::from_proto(
        &l.request_headers_to_add_when_not_enforced,
        &[],
        &[],
        &[],
        ctx,
    );
    Some(LocalRateLimit {
        stat_prefix: l.stat_prefix.clone(),
        status,
        bucket,
        enabled: l
            .filter_enabled
            .as_ref()
            .map(|f| ctx.at("filter_enabled", |c| runtime_fraction(f, c)))
            .unwrap_or(OFF),
        enforced: l
            .filter_enforced
            .as_ref()
            .map(|f| ctx.at("filter_enforced", |c| runtime_fraction(f, c)))
            .unwrap_or(OFF),
        response_headers,
        request_headers_when_not_enforced,
        per_connection: l.local_rate_limit_per_downstream_connection,
        descriptors: l
            .descriptors
            .iter()
            .enumerate()
            .filter_map(|(i, d)| {
                ctx.at(format!("descriptors[{i}]"), |ctx| {
                    if d.entries.is_empty() {
                        ctx.error_at("entries", "at least one entry is required");
                    }
                    Some(Descriptor {
                        entries: d
                            .entries
                            .iter()
                            .map(|e| (e.key.clone(), e.value.clone()))
                            .collect(),
                        bucket: token_bucket(&d.token_bucket, ctx)?,
                    })
                })
            })
            .collect(),
        rate_limits: rules(&l.rate_limits, ctx),
        stage: l.stage,
        always_consume_default: l
            .always_consume_default_token_bucket
            .map(|b| b.value)
            .unwrap_or(true),
    })
}

/// A validated network `LocalRateLimit` (connections per token bucket).
#[derive(Debug, Clone)]
pub struct NetworkLocalRateLimit {
    /// `stat_prefix`: stats under `local_rate_limit.<stat_prefix>.`.
    pub stat_prefix: String,
    /// `token_bucket`.
    pub bucket: TokenBucket,
    /// `runtime_enabled` (default true; ferry has no runtime: its default value).
    pub enabled: bool,
}

/// Converts a network `LocalRateLimit` from its `Any`.
pub fn network_from_any(any: &Any, ctx: &mut Ctx) -> Option<NetworkLocalRateLimit> {
    let l: net::LocalRateLimit = unpack(any, ctx)?;
    if l.stat_prefix.is_empty() {
        ctx.error_at("stat_prefix", "is required");
    }
    let bucket = token_bucket(&l.token_bucket, ctx)?;
    Some(NetworkLocalRateLimit {
        stat_prefix: l.stat_prefix.clone(),
        bucket,
        enabled: l
            .runtime_enabled
            .as_ref()
            .and_then(|r| r.default_value.map(|b| b.value))
            .unwrap_or(true),
    })
}
