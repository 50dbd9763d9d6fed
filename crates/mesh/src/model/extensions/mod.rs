//! ferrymesh's extensions of App Mesh's schema: optional members that App Mesh specs
//! do not use, each mapping onto an Envoy feature (docs/mesh-api.md, "Beyond App
//! Mesh"). On an HTTP, HTTP/2 or gRPC route: `faultInjection`, `rateLimit`, `mirror`,
//! `cors` (not gRPC), `headers`, `hashPolicy`; on a retry policy: `budget`, `backOff`;
//! on a listener: `loadBalancer` (virtual nodes), `rateLimit`, `maxRequestHeadersKb`,
//! `maxHeadersCount`; on outlier detection, Envoy's other settings
//! ([`OutlierDetectionExtensions`]). The route's in [`route`], the listener's in
//! [`listener`]; what both use here.

pub mod listener;
pub mod route;

pub use listener::{ListenerExtensions, OutlierDetectionExtensions};
pub use route::{RetryExtensions, RouteExtensions};

use super::virtual_node::{Duration, DurationUnit};
use super::{length, one_of, range};
use crate::ApiError;
use serde::{Deserialize, Serialize};

/// Marks a path inside an error message of a flattened extension: `<MARK>path<MARK>
/// message`, which [`crate::model::kind::read_spec`] joins to the path of the member
/// the extension is flattened into.
pub(crate) const PATH_MARK: char = '\u{1}';

/// Deserializes an extension flattened into an App Mesh shape (`#[serde(flatten,
/// deserialize_with = ...)]`) from its `fields`, naming the field a problem is at:
/// serde reads a flattened member from a buffer the path tracking cannot see into.
pub(crate) fn flattened<'de, D, T>(d: D, fields: &'static [&'static str]) -> Result<T, D::Error>
where
    D: serde::Deserializer<'de>,
    T: serde::de::DeserializeOwned,
{
    struct Members;
    impl<'de> serde::de::Visitor<'de> for Members {
        type Value = serde_json::Map<String, serde_json::Value>;
        fn expecting(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
            f.write_str("an object")
        }
        fn visit_map<A: serde::de::MapAccess<'de>>(
            self,
            mut a: A,
        ) -> Result<Self::Value, A::Error> {
            let mut members = serde_json::Map::new();
            while let Some((k, v)) = a.next_entry::<String, serde_json::Value>()? {
                members.insert(k, v);
            }
            Ok(members)
        }
    }
    let members = d.deserialize_struct("extensions", fields, Members)?;
    serde_path_to_error::deserialize(serde_json::Value::Object(members)).map_err(|e| {
        let path = e.path().to_string();
        serde::de::Error::custom(format!("{PATH_MARK}{path}{PATH_MARK}{}", e.into_inner()))
    })
}

/// A duration in milliseconds (`None`: unset).
pub(crate) fn millis(d: &Duration) -> Option<u64> {
    let v = d.value?;
    Some(match d.unit {
        Some(DurationUnit::S) => v.saturating_mul(1000),
        _ => v,
    })
}

/// Checks that a duration is set and at least `min_ms`.
pub(crate) fn at_least(d: &Duration, min_ms: u64, field: &str) -> Result<u64, ApiError> {
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
    pub(crate) fn validate(&self, field: &str) -> Result<(), ApiError> {
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
    pub(crate) fn validate(&self, field: &str) -> Result<(), ApiError> {
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
