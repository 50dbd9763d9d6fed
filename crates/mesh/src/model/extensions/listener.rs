//! The extensions of a listener: `loadBalancer`, `rateLimit`, `maxRequestHeadersKb`,
//! `maxHeadersCount` ([`ListenerExtensions`]), and of its outlier detection
//! ([`OutlierDetectionExtensions`]).

use super::{at_least, RateLimit};
use crate::model::range;
use crate::model::virtual_node::Duration;
use crate::ApiError;
use serde::{Deserialize, Serialize};

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
    /// Its members, as the API names them.
    const FIELDS: &'static [&'static str] = &[
        "loadBalancer",
        "rateLimit",
        "maxRequestHeadersKb",
        "maxHeadersCount",
    ];

    /// Deserializes it where it is flattened, naming the field a problem is at.
    pub(crate) fn flat<'de, D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        super::flattened(d, Self::FIELDS)
    }
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
    /// Its members, as the API names them.
    const FIELDS: &'static [&'static str] = &[
        "consecutiveGatewayFailure",
        "consecutiveLocalOriginFailure",
        "splitExternalLocalOriginErrors",
        "enforcingConsecutive5xx",
        "enforcingConsecutiveGatewayFailure",
        "enforcingSuccessRate",
        "successRateMinimumHosts",
        "successRateRequestVolume",
        "successRateStdevFactor",
        "failurePercentageThreshold",
        "enforcingFailurePercentage",
        "failurePercentageMinimumHosts",
        "failurePercentageRequestVolume",
        "maxEjectionTime",
    ];

    /// Deserializes it where it is flattened, naming the field a problem is at.
    pub(crate) fn flat<'de, D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        super::flattened(d, Self::FIELDS)
    }
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
    use crate::model::kind::VIRTUAL_NODE;
    use serde_json::json;

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
        bad["listeners"][0]["loadBalancer"]["policy"] = json!("FAST");
        let message = (VIRTUAL_NODE.spec)(&bad).unwrap_err().message;
        assert!(
            message.starts_with("spec.listeners[0].loadBalancer.policy: unknown variant `FAST`"),
            "{message}"
        );
        let mut bad = node.clone();
        bad["listeners"][0]["outlierDetection"]["bogus"] = json!(1);
        let message = (VIRTUAL_NODE.spec)(&bad).unwrap_err().message;
        assert!(message.contains("unknown field `bogus`"), "{message}");
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
