//! The extensions of a route: `faultInjection`, `rateLimit`, `mirror`, `cors`,
//! `headers`, `hashPolicy` ([`RouteExtensions`]), and of its retry policy: `budget`,
//! `backOff` ([`RetryExtensions`]).

use super::{at_least, HeaderCondition, Percentage, RateLimit};
use crate::model::virtual_node::Duration;
use crate::model::{length, one_of, range, validate_name};
use crate::ApiError;
use serde::{Deserialize, Serialize};

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
    /// Its members, as the API names them.
    const FIELDS: &'static [&'static str] = &[
        "faultInjection",
        "rateLimit",
        "mirror",
        "cors",
        "headers",
        "hashPolicy",
    ];

    /// Deserializes it where it is flattened, naming the field a problem is at.
    pub(crate) fn flat<'de, D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        super::flattened(d, Self::FIELDS)
    }
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

impl RetryExtensions {
    /// Its members, as the API names them.
    const FIELDS: &'static [&'static str] = &["budget", "backOff"];

    /// Deserializes it where it is flattened, naming the field a problem is at.
    pub(crate) fn flat<'de, D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        super::flattened(d, Self::FIELDS)
    }
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

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::expect_used)]
    use crate::model::kind::ROUTE;
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
        // Problems found while reading name their field too, and unknown members are
        // refused, beside App Mesh's members as in the extensions.
        assert!(problem("/httpRoute/rateLimit/maxTokens", json!("x"))
            .starts_with("spec.httpRoute.rateLimit.maxTokens: invalid type: string"));
        assert!(problem(
            "/httpRoute/faultInjection/delay/percentage/numerator",
            json!(-1)
        )
        .starts_with("spec.httpRoute.faultInjection.delay.percentage.numerator: invalid value"));
        assert!(problem(
            "/httpRoute/retryPolicy/backOff/baseInterval/unit",
            json!("h")
        )
        .starts_with("spec.httpRoute.retryPolicy.backOff.baseInterval.unit: unknown variant"));
        assert!(problem("/httpRoute/bogus", json!(1)).contains("unknown field `bogus`"));
        assert!(problem("/httpRoute/cors/bogus", json!(1))
            .starts_with("spec.httpRoute.cors.bogus: unknown field `bogus`"));
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
}
