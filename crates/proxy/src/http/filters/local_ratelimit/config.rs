//! `envoy.filters.http.local_ratelimit` and `envoy.filters.network.local_ratelimit`:
//! token buckets in the proxy itself.

use crate::token_bucket::{token_bucket, TokenBucket};
use ferry_config::any::unpack;
use ferry_config::filters::rate_limit_actions::{rules, RateLimitRule};
use ferry_config::fraction::{runtime_fraction, Fraction};
use ferry_config::util::HeaderMutations;
use ferry_config::Ctx;
use ferry_envoy_api::pb::envoy::extensions::filters::http::local_ratelimit::v3 as pb;
use ferry_envoy_api::pb::google::protobuf::Any;

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
    ferry_config::fields!(ctx, &l => pb::LocalRateLimit as "envoy.filters.http.local_ratelimit" {
        stat_prefix, status, token_bucket, filter_enabled, filter_enforced,
        response_headers_to_add, descriptors, stage, request_headers_to_add_when_not_enforced,
        local_rate_limit_per_downstream_connection, always_consume_default_token_bucket,
        rate_limits,
    } refused {
        enable_x_ratelimit_headers, vh_rate_limits, rate_limited_as_resource_exhausted,
        local_cluster_rate_limit, max_dynamic_descriptors, enable_retry_after_header,
    });
    if let Some(s) = &l.status {
        ctx.at("status", |ctx| {
            ferry_config::fields!(ctx, s => ferry_envoy_api::pb::envoy::r#type::v3::HttpStatus {
                code,
            });
        });
    }
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
                    use ferry_envoy_api::pb::envoy::extensions::common::ratelimit::v3 as ratelimit;
                    ferry_config::fields!(ctx, d => ratelimit::LocalRateLimitDescriptor {
                        entries, token_bucket,
                    } refused {
                        shadow_mode,
                    });
                    for (i, e) in d.entries.iter().enumerate() {
                        ctx.at(format!("entries[{i}]"), |ctx| {
                            ferry_config::fields!(ctx, e => ratelimit::rate_limit_descriptor::Entry {
                                key, value,
                            });
                        });
                    }
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
