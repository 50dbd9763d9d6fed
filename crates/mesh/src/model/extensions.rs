//! ferrymesh's extensions of App Mesh's schema: optional members that App Mesh specs
//! do not use, each mapping onto an Envoy feature (docs/mesh-api.md, "Beyond App
//! Mesh"). On an HTTP, HTTP/2 or gRPC route: `faultInjection`, `rateLimit`, `mirror`,
//! `cors` (not gRPC), `headers`, `hashPolicy`; on a retry policy: `budget`, `backOff`;
//! on a listener: `loadBalancer` (virtual nodes), `rateLimit`, `maxRequestHeadersKb`,
//! `maxHeadersCount`; on outlier detection, Envoy's other settings
//! ([`OutlierDetectionExtensions`]).

use super::virtual_node::{Duration, DurationUnit};
use super::{length, one_of, range, validate_name};
use crate::ApiError;
use serde::{Deserialize, Serialize};

/// A duration in milliseconds (`None`: unset).
fn millis(d: &Duration) -> Option<u64> {
    let v = d.value?;
    Some(match d.unit {
        Some(DurationUnit::S) => v.saturating_mul(1000),
        _ => v,
    })
}

/// Checks that a duration is set and at least `min_ms`.
fn at_least(d: &Duration, min_ms: u64, field: &str) -> Result<u64, ApiError> {
    match millis(d) {
        Some(ms) if ms >= min_ms => Ok(ms),
        Some(ms) => Err(ApiError::bad_request(format!(
            "{field}: must be at least {min_ms} ms, not {ms} ms"
        ))),
        None => Err(ApiError::bad_request(format!(
            "{field}: value and unit are required"
        ))),
    }
}

/// A fraction, as Envoy's `FractionalPercent`: `numerator` over `denominator`
/// (`HUNDRED`, the default, `TEN_THOUSAND` or `MILLION`).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct Percentage {
    /// `numerator`.
    pub numerator: u32,
    /// `denominator`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub denominator: Option<Denominator>,
}

/// `HUNDRED`, `TEN_THOUSAND`, `MILLION`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "SCREAMING_SNAKE_CASE")]
pub enum Denominator {
    /// 100.
    Hundred,
    /// 10,000.
    TenThousand,
    /// 1,000,000.
    Million,
}

impl Percentage {
    fn validate(&self, field: &str) -> Result<(), ApiError> {
        let max = match self.denominator {
            None | Some(Denominator::Hundred) => 100,
            Some(Denominator::TenThousand) => 10_000,
            Some(Denominator::Million) => 1_000_000,
        };
        range(
            u64::from(self.numerator),
            0,
            max,
            &format!("{field}.numerator"),
        )
    }
}

/// A header condition (Envoy's `HeaderMatcher`): `name` and one of `exact`, `prefix`,
/// `suffix`, `regex`, `present`; `invert`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct HeaderCondition {
    /// `name`.
    pub name: String,
    /// `exact`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub exact: Option<String>,
    /// `prefix`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub prefix: Option<String>,
    /// `suffix`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub suffix: Option<String>,
    /// `regex` (RE2 syntax, as Envoy's).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub regex: Option<String>,
    /// `present`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub present: Option<bool>,
    /// `invert`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub invert: Option<bool>,
}

impl HeaderCondition {
    fn validate(&self, field: &str) -> Result<(), ApiError> {
        length(&self.name, 1, 50, &format!("{field}.name"))?;
        one_of(
            field,
            &[
                ("exact", self.exact.is_some()),
                ("prefix", self.prefix.is_some()),
                ("suffix", self.suffix.is_some()),
                ("regex", self.regex.is_some()),
                ("present", self.present.is_some()),
            ],
        )
    }
}

/// `faultInjection` (Envoy's `envoy.filters.http.fault`): a delay, an abort or both,
/// each for a percentage of requests, only for requests that match every `headers`
/// condition.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct FaultInjection {
    /// `delay`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub delay: Option<FaultDelay>,
    /// `abort`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub abort: Option<FaultAbort>,
    /// `headers` (0–10).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub headers: Vec<HeaderCondition>,
}

/// `faultInjection.delay`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct FaultDelay {
    /// `fixedDelay`.
    pub fixed_delay: Duration,
    /// `percentage`.
    pub percentage: Percentage,
}

/// `faultInjection.abort`: exactly one of `httpStatus` (200–599) and `grpcStatus`
/// (0–16).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct FaultAbort {
    /// `httpStatus`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub http_status: Option<u32>,
    /// `grpcStatus`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub grpc_status: Option<u32>,
    /// `percentage`.
    pub percentage: Percentage,
}

impl FaultInjection {
    fn validate(&self, field: &str) -> Result<(), ApiError> {
        if self.delay.is_none() && self.abort.is_none() {
            return Err(ApiError::bad_request(format!(
                "{field}: delay, abort or both are required"
            )));
        }
        if let Some(d) = &self.delay {
            at_least(&d.fixed_delay, 0, &format!("{field}.delay.fixedDelay"))?;
            d.percentage
                .validate(&format!("{field}.delay.percentage"))?;
        }
        if let Some(a) = &self.abort {
            let at = format!("{field}.abort");
            one_of(
                &at,
                &[
                    ("httpStatus", a.http_status.is_some()),
                    ("grpcStatus", a.grpc_status.is_some()),
                ],
            )?;
            if let Some(s) = a.http_status {
                range(u64::from(s), 200, 599, &format!("{at}.httpStatus"))?;
            }
            if let Some(s) = a.grpc_status {
                range(u64::from(s), 0, 16, &format!("{at}.grpcStatus"))?;
            }
            a.percentage.validate(&format!("{at}.percentage"))?;
        }
        range(
            self.headers.len() as u64,
            0,
            10,
            &format!("{field}.headers (count)"),
        )?;
        for (i, h) in self.headers.iter().enumerate() {
            h.validate(&format!("{field}.headers[{i}]"))?;
        }
        Ok(())
    }
}

/// `rateLimit` (Envoy's `envoy.filters.http.local_ratelimit`): a token bucket of
/// `maxTokens`, refilled with `tokensPerFill` (default 1) every `fillInterval` (at
/// least 50 ms); a request without a token is answered `statusCode` (default 429).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct RateLimit {
    /// `maxTokens`.
    pub max_tokens: u32,
    /// `tokensPerFill`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub tokens_per_fill: Option<u32>,
    /// `fillInterval`.
    pub fill_interval: Duration,
    /// `statusCode` (400–599).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub status_code: Option<u32>,
}

impl RateLimit {
    /// Checks it; `field` is its path.
    pub(crate) fn validate(&self, field: &str) -> Result<(), ApiError> {
        let max = u64::from(u32::MAX);
        range(
            u64::from(self.max_tokens),
            1,
            max,
            &format!("{field}.maxTokens"),
        )?;
        if let Some(t) = self.tokens_per_fill {
            range(u64::from(t), 1, max, &format!("{field}.tokensPerFill"))?;
        }
        at_least(&self.fill_interval, 50, &format!("{field}.fillInterval"))?;
        if let Some(s) = self.status_code {
            range(u64::from(s), 400, 599, &format!("{field}.statusCode"))?;
        }
        Ok(())
    }
}

/// `mirror` (Envoy's `request_mirror_policies`): a copy of a percentage of requests
/// to a virtual node of the mesh, whose answers are dropped.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct Mirror {
    /// `virtualNode`.
    pub virtual_node: String,
    /// `percentage` (default: every request).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub percentage: Option<Percentage>,
}

impl Mirror {
    fn validate(&self, field: &str) -> Result<(), ApiError> {
        validate_name(&self.virtual_node, &format!("{field}.virtualNode"))?;
        if let Some(p) = &self.percentage {
            p.validate(&format!("{field}.percentage"))?;
        }
        Ok(())
    }
}

/// A string condition (Envoy's `StringMatcher`): one of `exact`, `prefix`, `suffix`,
/// `regex`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct StringMatch {
    /// `exact`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub exact: Option<String>,
    /// `prefix`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub prefix: Option<String>,
    /// `suffix`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub suffix: Option<String>,
    /// `regex`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub regex: Option<String>,
}

/// `cors` (Envoy's `CorsPolicy` with `envoy.filters.http.cors`).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct Cors {
    /// `allowOrigins` (1 or more).
    pub allow_origins: Vec<StringMatch>,
    /// `allowMethods`.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub allow_methods: Vec<String>,
    /// `allowHeaders`.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub allow_headers: Vec<String>,
    /// `exposeHeaders`.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub expose_headers: Vec<String>,
    /// `maxAge`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub max_age: Option<Duration>,
    /// `allowCredentials`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub allow_credentials: Option<bool>,
}

impl Cors {
    fn validate(&self, field: &str) -> Result<(), ApiError> {
        if self.allow_origins.is_empty() {
            return Err(ApiError::bad_request(format!(
                "{field}.allowOrigins: at least one is required"
            )));
        }
        for (i, o) in self.allow_origins.iter().enumerate() {
            one_of(
                &format!("{field}.allowOrigins[{i}]"),
                &[
                    ("exact", o.exact.is_some()),
                    ("prefix", o.prefix.is_some()),
                    ("suffix", o.suffix.is_some()),
                    ("regex", o.regex.is_some()),
                ],
            )?;
        }
        if let Some(m) = &self.max_age {
            at_least(m, 0, &format!("{field}.maxAge"))?;
        }
        Ok(())
    }
}

/// A header to add.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct HeaderValue {
    /// `name`.
    pub name: String,
    /// `value`.
    pub value: String,
    /// `append`: add beside a value already there (default), or replace it.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub append: Option<bool>,
}

/// `headers`: request and response headers to add and remove (Envoy's
/// `request_headers_to_add`, …).
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct Headers {
    /// `requestHeadersToAdd`.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub request_headers_to_add: Vec<HeaderValue>,
    /// `requestHeadersToRemove`.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub request_headers_to_remove: Vec<String>,
    /// `responseHeadersToAdd`.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub response_headers_to_add: Vec<HeaderValue>,
    /// `responseHeadersToRemove`.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub response_headers_to_remove: Vec<String>,
}

impl Headers {
    fn validate(&self, field: &str) -> Result<(), ApiError> {
        let adds = [
            ("requestHeadersToAdd", &self.request_headers_to_add),
            ("responseHeadersToAdd", &self.response_headers_to_add),
        ];
        for (name, list) in adds {
            for (i, h) in list.iter().enumerate() {
                let at = format!("{field}.{name}[{i}]");
                length(&h.name, 1, 100, &format!("{at}.name"))?;
                if h.name.starts_with(':') || h.name.eq_ignore_ascii_case("host") {
                    return Err(ApiError::bad_request(format!(
                        "{at}.name: {} cannot be set (Envoy refuses pseudo-headers and host)",
                        h.name
                    )));
                }
            }
        }
        let removes = [
            ("requestHeadersToRemove", &self.request_headers_to_remove),
            ("responseHeadersToRemove", &self.response_headers_to_remove),
        ];
        for (name, list) in removes {
            for (i, h) in list.iter().enumerate() {
                length(h, 1, 100, &format!("{field}.{name}[{i}]"))?;
            }
        }
        Ok(())
    }
}

/// One way to hash a request onto a target's endpoint (Envoy's `HashPolicy`), for
/// `RING_HASH` and `MAGLEV` load balancing: exactly one of `header`, `cookie` (sticky
/// sessions: with a `ttl`, Envoy sets the cookie when the request has none),
/// `sourceIp`, `queryParameter`; `terminal` stops at the first that gives a hash.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct HashPolicy {
    /// `header`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub header: Option<NameOnly>,
    /// `cookie`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub cookie: Option<CookieHash>,
    /// `sourceIp`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub source_ip: Option<bool>,
    /// `queryParameter`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub query_parameter: Option<NameOnly>,
    /// `terminal`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub terminal: Option<bool>,
}

/// `{name}`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct NameOnly {
    /// `name`.
    pub name: String,
}

/// `cookie`: its `name`, and for sticky sessions a `ttl` (and `path`).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct CookieHash {
    /// `name`.
    pub name: String,
    /// `ttl`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub ttl: Option<Duration>,
    /// `path`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub path: Option<String>,
}

fn validate_hash_policy(policies: &[HashPolicy], field: &str) -> Result<(), ApiError> {
    for (i, p) in policies.iter().enumerate() {
        let at = format!("{field}[{i}]");
        one_of(
            &at,
            &[
                ("header", p.header.is_some()),
                ("cookie", p.cookie.is_some()),
                ("sourceIp", p.source_ip.is_some()),
                ("queryParameter", p.query_parameter.is_some()),
            ],
        )?;
        let names = [
            ("header", p.header.as_ref().map(|h| &h.name)),
            ("cookie", p.cookie.as_ref().map(|c| &c.name)),
            (
                "queryParameter",
                p.query_parameter.as_ref().map(|q| &q.name),
            ),
        ];
        for (member, name) in names {
            if let Some(name) = name {
                length(name, 1, 100, &format!("{at}.{member}.name"))?;
            }
        }
        if let Some(ttl) = p.cookie.as_ref().and_then(|c| c.ttl.as_ref()) {
            at_least(ttl, 0, &format!("{at}.cookie.ttl"))?;
        }
    }
    Ok(())
}

/// The extensions of an HTTP, HTTP/2 or gRPC route (flattened into it).
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct RouteExtensions {
    /// `faultInjection`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub fault_injection: Option<FaultInjection>,
    /// `rateLimit`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub rate_limit: Option<RateLimit>,
    /// `mirror`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub mirror: Option<Mirror>,
    /// `cors` (HTTP and HTTP/2 routes).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub cors: Option<Cors>,
    /// `headers`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub headers: Option<Headers>,
    /// `hashPolicy` (0–10).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub hash_policy: Vec<HashPolicy>,
}

impl RouteExtensions {
    /// Checks them; `field` is the route's path.
    pub(crate) fn validate(&self, field: &str, grpc: bool) -> Result<(), ApiError> {
        if let Some(f) = &self.fault_injection {
            f.validate(&format!("{field}.faultInjection"))?;
        }
        if let Some(r) = &self.rate_limit {
            r.validate(&format!("{field}.rateLimit"))?;
        }
        if let Some(m) = &self.mirror {
            m.validate(&format!("{field}.mirror"))?;
        }
        if let Some(c) = &self.cors {
            if grpc {
                return Err(ApiError::bad_request(format!(
                    "{field}.cors: only an HTTP or HTTP/2 route has it"
                )));
            }
            c.validate(&format!("{field}.cors"))?;
        }
        if let Some(h) = &self.headers {
            h.validate(&format!("{field}.headers"))?;
        }
        range(
            self.hash_policy.len() as u64,
            0,
            10,
            &format!("{field}.hashPolicy (count)"),
        )?;
        validate_hash_policy(&self.hash_policy, &format!("{field}.hashPolicy"))
    }
}

/// Retry policy extensions: `budget` (Envoy's retry budget: at most `budgetPercent`
/// of active requests may be retries, but always `minRetryConcurrency`) and `backOff`
/// (Envoy's `retry_back_off`).
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct RetryExtensions {
    /// `budget`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub budget: Option<RetryBudget>,
    /// `backOff`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub back_off: Option<BackOff>,
}

/// `budget`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct RetryBudget {
    /// `budgetPercent` (0–100; Envoy's default 20).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub budget_percent: Option<u32>,
    /// `minRetryConcurrency` (Envoy's default 3).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub min_retry_concurrency: Option<u32>,
}

/// `backOff`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct BackOff {
    /// `baseInterval` (at least 1 ms).
    pub base_interval: Duration,
    /// `maxInterval` (at least `baseInterval`; Envoy's default 10× it).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub max_interval: Option<Duration>,
}

impl RetryExtensions {
    /// Checks them; `field` is the retry policy's path.
    pub(crate) fn validate(&self, field: &str) -> Result<(), ApiError> {
        if let Some(b) = &self.budget {
            if let Some(p) = b.budget_percent {
                range(
                    u64::from(p),
                    0,
                    100,
                    &format!("{field}.budget.budgetPercent"),
                )?;
            }
        }
        if let Some(b) = &self.back_off {
            let base = at_least(
                &b.base_interval,
                1,
                &format!("{field}.backOff.baseInterval"),
            )?;
            if let Some(max) = &b.max_interval {
                at_least(max, base, &format!("{field}.backOff.maxInterval"))?;
            }
        }
        Ok(())
    }
}

/// `loadBalancer`: how callers spread requests over the virtual node's endpoints
/// (Envoy's `lb_policy`): `ROUND_ROBIN` (the default), `LEAST_REQUEST` (with
/// `choiceCount`, default 2), `RING_HASH` (with `minimumRingSize`/`maximumRingSize`),
/// `MAGLEV`, `RANDOM`. The hashing policies hash what a route's `hashPolicy` says.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct LoadBalancer {
    /// `policy`.
    pub policy: LbPolicy,
    /// `choiceCount` (`LEAST_REQUEST`, at least 2).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub choice_count: Option<u32>,
    /// `minimumRingSize` (`RING_HASH`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub minimum_ring_size: Option<u64>,
    /// `maximumRingSize` (`RING_HASH`, at most 8,388,608).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub maximum_ring_size: Option<u64>,
}

/// `loadBalancer.policy`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "SCREAMING_SNAKE_CASE")]
pub enum LbPolicy {
    /// Round robin (weighted).
    RoundRobin,
    /// The least loaded of `choiceCount` random endpoints.
    LeastRequest,
    /// Consistent hashing on a ring (Ketama).
    RingHash,
    /// Maglev consistent hashing.
    Maglev,
    /// A random endpoint.
    Random,
}

impl LoadBalancer {
    fn validate(&self, field: &str) -> Result<(), ApiError> {
        if let Some(c) = self.choice_count {
            if self.policy != LbPolicy::LeastRequest {
                return Err(ApiError::bad_request(format!(
                    "{field}.choiceCount: only for LEAST_REQUEST"
                )));
            }
            range(u64::from(c), 2, 100, &format!("{field}.choiceCount"))?;
        }
        let ring = [self.minimum_ring_size, self.maximum_ring_size];
        if ring.iter().any(Option::is_some) && self.policy != LbPolicy::RingHash {
            return Err(ApiError::bad_request(format!(
                "{field}: minimumRingSize and maximumRingSize are only for RING_HASH"
            )));
        }
        let max = self.maximum_ring_size.unwrap_or(8_388_608);
        range(max, 1, 8_388_608, &format!("{field}.maximumRingSize"))?;
        if let Some(min) = self.minimum_ring_size {
            range(min, 1, max, &format!("{field}.minimumRingSize"))?;
        }
        Ok(())
    }
}

/// The extensions of a listener (flattened into it).
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct ListenerExtensions {
    /// `loadBalancer` (virtual nodes).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub load_balancer: Option<LoadBalancer>,
    /// `rateLimit`: a token bucket for the whole listener.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub rate_limit: Option<RateLimit>,
    /// `maxRequestHeadersKb` (1–8,192; Envoy's default 60).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub max_request_headers_kb: Option<u32>,
    /// `maxHeadersCount` (at least 1; Envoy's default 100).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub max_headers_count: Option<u32>,
}

impl ListenerExtensions {
    /// Checks them; `field` is the listener's path.
    pub(crate) fn validate(&self, field: &str, gateway: bool) -> Result<(), ApiError> {
        if let Some(lb) = &self.load_balancer {
            if gateway {
                return Err(ApiError::bad_request(format!(
                    "{field}.loadBalancer: only a virtual node's listener has it"
                )));
            }
            lb.validate(&format!("{field}.loadBalancer"))?;
        }
        if let Some(r) = &self.rate_limit {
            r.validate(&format!("{field}.rateLimit"))?;
        }
        if let Some(kb) = self.max_request_headers_kb {
            range(
                u64::from(kb),
                1,
                8192,
                &format!("{field}.maxRequestHeadersKb"),
            )?;
        }
        if let Some(n) = self.max_headers_count {
            range(
                u64::from(n),
                1,
                u64::from(u32::MAX),
                &format!("{field}.maxHeadersCount"),
            )?;
        }
        Ok(())
    }
}

/// Envoy's outlier detection settings beyond App Mesh's four (flattened into
/// `outlierDetection`); each optional, Envoy's default when absent.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct OutlierDetectionExtensions {
    /// `consecutiveGatewayFailure`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub consecutive_gateway_failure: Option<u32>,
    /// `consecutiveLocalOriginFailure`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub consecutive_local_origin_failure: Option<u32>,
    /// `splitExternalLocalOriginErrors`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub split_external_local_origin_errors: Option<bool>,
    /// `enforcingConsecutive5xx` (0–100).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub enforcing_consecutive_5xx: Option<u32>,
    /// `enforcingConsecutiveGatewayFailure` (0–100).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub enforcing_consecutive_gateway_failure: Option<u32>,
    /// `enforcingSuccessRate` (0–100).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub enforcing_success_rate: Option<u32>,
    /// `successRateMinimumHosts`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub success_rate_minimum_hosts: Option<u32>,
    /// `successRateRequestVolume`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub success_rate_request_volume: Option<u32>,
    /// `successRateStdevFactor` (in thousandths, as Envoy's).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub success_rate_stdev_factor: Option<u32>,
    /// `failurePercentageThreshold` (0–100).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub failure_percentage_threshold: Option<u32>,
    /// `enforcingFailurePercentage` (0–100).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub enforcing_failure_percentage: Option<u32>,
    /// `failurePercentageMinimumHosts`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub failure_percentage_minimum_hosts: Option<u32>,
    /// `failurePercentageRequestVolume`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub failure_percentage_request_volume: Option<u32>,
    /// `maxEjectionTime`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub max_ejection_time: Option<Duration>,
}

impl OutlierDetectionExtensions {
    /// Checks them; `field` is the outlier detection's path.
    pub(crate) fn validate(&self, field: &str) -> Result<(), ApiError> {
        let percents = [
            ("enforcingConsecutive5xx", self.enforcing_consecutive_5xx),
            (
                "enforcingConsecutiveGatewayFailure",
                self.enforcing_consecutive_gateway_failure,
            ),
            ("enforcingSuccessRate", self.enforcing_success_rate),
            (
                "failurePercentageThreshold",
                self.failure_percentage_threshold,
            ),
            (
                "enforcingFailurePercentage",
                self.enforcing_failure_percentage,
            ),
        ];
        for (name, p) in percents {
            if let Some(p) = p {
                range(u64::from(p), 0, 100, &format!("{field}.{name}"))?;
            }
        }
        if let Some(t) = &self.max_ejection_time {
            at_least(t, 1, &format!("{field}.maxEjectionTime"))?;
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::expect_used)]
    use crate::model::kind::{ROUTE, VIRTUAL_NODE};
    use serde_json::json;

    #[test]
    fn route_extensions_round_trip_and_name_their_problems() {
        let route = json!({"httpRoute": {
            "match": {"prefix": "/"},
            "action": {"weightedTargets": [{"virtualNode": "a", "weight": 1}]},
            "retryPolicy": {"maxRetries": 2, "perRetryTimeout": {"value": 1, "unit": "s"},
                "httpRetryEvents": ["server-error"],
                "budget": {"budgetPercent": 25, "minRetryConcurrency": 2},
                "backOff": {"baseInterval": {"value": 25, "unit": "ms"}}},
            "faultInjection": {
                "delay": {"fixedDelay": {"value": 100, "unit": "ms"}, "percentage": {"numerator": 10}},
                "abort": {"httpStatus": 503, "percentage": {"numerator": 5, "denominator": "TEN_THOUSAND"}},
                "headers": [{"name": "x-fault", "exact": "on"}]},
            "rateLimit": {"maxTokens": 100, "fillInterval": {"value": 1, "unit": "s"}},
            "mirror": {"virtualNode": "shadow", "percentage": {"numerator": 50}},
            "cors": {"allowOrigins": [{"suffix": ".example.com"}], "allowMethods": ["GET"],
                "maxAge": {"value": 600, "unit": "s"}, "allowCredentials": true},
            "headers": {"requestHeadersToAdd": [{"name": "x-mesh", "value": "ferry"}],
                "responseHeadersToRemove": ["server"]},
            "hashPolicy": [{"cookie": {"name": "session", "ttl": {"value": 3600, "unit": "s"}}}]
        }});
        let (stored, refs) = (ROUTE.spec)(&route).unwrap();
        assert_eq!(stored, route, "every extension is kept as given");
        let names: Vec<(&str, &str)> = refs.iter().map(|r| (r.name.as_str(), r.field)).collect();
        assert_eq!(
            names,
            [
                ("a", "spec.httpRoute.action.weightedTargets[].virtualNode"),
                ("shadow", "spec.httpRoute.mirror.virtualNode")
            ]
        );
        let problem = |pointer: &str, value: serde_json::Value| {
            let mut r = route.clone();
            let (parent, key) = pointer.rsplit_once('/').unwrap();
            let parent = r.pointer_mut(parent).unwrap();
            match parent {
                serde_json::Value::Array(items) => items[key.parse::<usize>().unwrap()] = value,
                _ => parent[key] = value,
            }
            (ROUTE.spec)(&r).unwrap_err().message
        };
        assert_eq!(
            problem("/httpRoute/faultInjection/abort/httpStatus", json!(700)),
            "spec.httpRoute.faultInjection.abort.httpStatus: must be 200 to 599, not 700"
        );
        assert_eq!(
            problem(
                "/httpRoute/rateLimit/fillInterval",
                json!({"value": 10, "unit": "ms"})
            ),
            "spec.httpRoute.rateLimit.fillInterval: must be at least 50 ms, not 10 ms"
        );
        assert_eq!(
            problem("/httpRoute/mirror/percentage/numerator", json!(101)),
            "spec.httpRoute.mirror.percentage.numerator: must be 0 to 100, not 101"
        );
        assert!(problem("/httpRoute/hashPolicy/0", json!({})).starts_with(
            "spec.httpRoute.hashPolicy[0]: exactly one of header, cookie, sourceIp, queryParameter"
        ));
        assert!(problem(
            "/httpRoute/retryPolicy/backOff/maxInterval",
            json!({"value": 1, "unit": "ms"})
        )
        .starts_with("spec.httpRoute.retryPolicy.backOff.maxInterval: must be at least 25 ms"));
    }

    #[test]
    fn listener_extensions_round_trip_and_name_their_problems() {
        let node = json!({
            "listeners": [{
                "portMapping": {"port": 8080, "protocol": "http"},
                "loadBalancer": {"policy": "LEAST_REQUEST", "choiceCount": 3},
                "rateLimit": {"maxTokens": 10, "tokensPerFill": 10, "fillInterval": {"value": 1, "unit": "s"}, "statusCode": 503},
                "maxRequestHeadersKb": 96,
                "maxHeadersCount": 50,
                "outlierDetection": {"baseEjectionDuration": {"value": 30, "unit": "s"},
                    "interval": {"value": 10, "unit": "s"}, "maxEjectionPercent": 50, "maxServerErrors": 5,
                    "consecutiveGatewayFailure": 3, "enforcingSuccessRate": 0,
                    "maxEjectionTime": {"value": 300, "unit": "s"}}
            }],
            "serviceDiscovery": {"dns": {"hostname": "a.local"}}
        });
        let (stored, _) = (VIRTUAL_NODE.spec)(&node).unwrap();
        assert_eq!(stored, node);
        let mut bad = node.clone();
        bad["listeners"][0]["loadBalancer"] = json!({"policy": "MAGLEV", "choiceCount": 3});
        assert_eq!(
            (VIRTUAL_NODE.spec)(&bad).unwrap_err().message,
            "spec.listeners[0].loadBalancer.choiceCount: only for LEAST_REQUEST"
        );
        let mut bad = node.clone();
        bad["listeners"][0]["maxRequestHeadersKb"] = json!(9000);
        assert_eq!(
            (VIRTUAL_NODE.spec)(&bad).unwrap_err().message,
            "spec.listeners[0].maxRequestHeadersKb: must be 1 to 8192, not 9000"
        );
        let mut bad = node;
        bad["listeners"][0]["outlierDetection"]["enforcingSuccessRate"] = json!(101);
        assert_eq!(
            (VIRTUAL_NODE.spec)(&bad).unwrap_err().message,
            "spec.listeners[0].outlierDetection.enforcingSuccessRate: must be 0 to 100, not 101"
        );
    }
}
