//! Outlier detection (`Cluster.outlier_detection`): passive health checking from the
//! results of real requests, with Envoy's defaults.

use crate::util::duration;
use crate::Ctx;
use ferry_envoy_api::pb::envoy::config::cluster::v3 as pb;
use std::time::Duration;

/// A validated `OutlierDetection`. Percentages are 0–100.
#[derive(Debug, Clone, PartialEq)]
pub struct OutlierDetection {
    /// `consecutive_5xx` (default 5).
    pub consecutive_5xx: u32,
    /// `consecutive_gateway_failure` (default 5): 502, 503 or 504 in a row.
    pub consecutive_gateway_failure: u32,
    /// `consecutive_local_origin_failure` (default 5; with `split_external_local_origin_errors`).
    pub consecutive_local_origin_failure: u32,
    /// `interval` between ejection sweeps (default 10 s).
    pub interval: Duration,
    /// `base_ejection_time` (default 30 s), multiplied by the number of ejections.
    pub base_ejection_time: Duration,
    /// `max_ejection_time` (default 300 s, or `base_ejection_time` if larger).
    pub max_ejection_time: Duration,
    /// `max_ejection_time_jitter` (default 0): a random extra ejection time below this.
    pub max_ejection_time_jitter: Duration,
    /// `max_ejection_percent` (default 10).
    pub max_ejection_percent: u32,
    /// `always_eject_one_host`: eject one host even when that exceeds `max_ejection_percent`.
    pub always_eject_one_host: bool,
    /// `enforcing_consecutive_5xx` (default 100).
    pub enforcing_consecutive_5xx: u32,
    /// `enforcing_consecutive_gateway_failure` (default 0).
    pub enforcing_consecutive_gateway_failure: u32,
    /// `enforcing_consecutive_local_origin_failure` (default 100).
    pub enforcing_consecutive_local_origin_failure: u32,
    /// `enforcing_success_rate` (default 100).
    pub enforcing_success_rate: u32,
    /// `enforcing_local_origin_success_rate` (default 100).
    pub enforcing_local_origin_success_rate: u32,
    /// `enforcing_failure_percentage` (default 0).
    pub enforcing_failure_percentage: u32,
    /// `enforcing_failure_percentage_local_origin` (default 0).
    pub enforcing_failure_percentage_local_origin: u32,
    /// `success_rate_minimum_hosts` (default 5).
    pub success_rate_minimum_hosts: u32,
    /// `success_rate_request_volume` (default 100 per interval).
    pub success_rate_request_volume: u32,
    /// `success_rate_stdev_factor` (default 1900, i.e. 1.9 standard deviations).
    pub success_rate_stdev_factor: u32,
    /// `failure_percentage_threshold` (default 85).
    pub failure_percentage_threshold: u32,
    /// `failure_percentage_minimum_hosts` (default 5).
    pub failure_percentage_minimum_hosts: u32,
    /// `failure_percentage_request_volume` (default 50 per interval).
    pub failure_percentage_request_volume: u32,
    /// `split_external_local_origin_errors`: count connection failures, resets and
    /// timeouts apart from the upstream's own 5xx.
    pub split_external_local_origin_errors: bool,
    /// `successful_active_health_check_uneject_host` (default true).
    pub successful_active_health_check_uneject_host: bool,
}

impl Default for OutlierDetection {
    /// Envoy's defaults (an empty `outlier_detection: {}`).
    fn default() -> Self {
        OutlierDetection {
            consecutive_5xx: 5,
            consecutive_gateway_failure: 5,
            consecutive_local_origin_failure: 5,
            interval: Duration::from_secs(10),
            base_ejection_time: Duration::from_secs(30),
            max_ejection_time: Duration::from_secs(300),
            max_ejection_time_jitter: Duration::ZERO,
            max_ejection_percent: 10,
            always_eject_one_host: false,
            enforcing_consecutive_5xx: 100,
            enforcing_consecutive_gateway_failure: 0,
            enforcing_consecutive_local_origin_failure: 100,
            enforcing_success_rate: 100,
            enforcing_local_origin_success_rate: 100,
            enforcing_failure_percentage: 0,
            enforcing_failure_percentage_local_origin: 0,
            success_rate_minimum_hosts: 5,
            success_rate_request_volume: 100,
            success_rate_stdev_factor: 1900,
            failure_percentage_threshold: 85,
            failure_percentage_minimum_hosts: 5,
            failure_percentage_request_volume: 50,
            split_external_local_origin_errors: false,
            successful_active_health_check_uneject_host: true,
        }
    }
}

/// Converts `outlier_detection`.
pub fn from_proto(o: &pb::OutlierDetection, ctx: &mut Ctx) -> OutlierDetection {
    crate::fields!(ctx, o => pb::OutlierDetection {
        consecutive_5xx, interval, base_ejection_time, max_ejection_percent,
        enforcing_consecutive_5xx, enforcing_success_rate, success_rate_minimum_hosts,
        success_rate_request_volume, success_rate_stdev_factor, consecutive_gateway_failure,
        enforcing_consecutive_gateway_failure, split_external_local_origin_errors,
        consecutive_local_origin_failure, enforcing_consecutive_local_origin_failure,
        enforcing_local_origin_success_rate, failure_percentage_threshold,
        enforcing_failure_percentage, enforcing_failure_percentage_local_origin,
        failure_percentage_minimum_hosts, failure_percentage_request_volume, max_ejection_time,
        max_ejection_time_jitter, successful_active_health_check_uneject_host,
        always_eject_one_host,
    } refused {
        monitors, detect_degraded_hosts,
    });
    let d = OutlierDetection::default();
    let count = |v: Option<u32>, default: u32| v.unwrap_or(default);
    let percent = |v: Option<u32>, default: u32, field: &str, ctx: &mut Ctx| match v {
        Some(p) if p > 100 => {
            ctx.error_at(field, format!("{p} is more than 100"));
            default
        }
        Some(p) => p,
        None => default,
    };
    let positive = |v: &Option<ferry_envoy_api::pb::google::protobuf::Duration>,
                    field: &str,
                    ctx: &mut Ctx| {
        let v = duration(v, field, ctx)?;
        if v.is_zero() {
            ctx.error_at(field, "must be greater than 0");
            return None;
        }
        Some(v)
    };
    let interval = positive(&o.interval, "interval", ctx).unwrap_or(d.interval);
    let base_ejection_time =
        positive(&o.base_ejection_time, "base_ejection_time", ctx).unwrap_or(d.base_ejection_time);
    let max_ejection_time = positive(&o.max_ejection_time, "max_ejection_time", ctx)
        .unwrap_or(d.max_ejection_time.max(base_ejection_time));
    if max_ejection_time < base_ejection_time {
        ctx.error_at(
            "max_ejection_time",
            "must not be smaller than base_ejection_time",
        );
    }
    OutlierDetection {
        consecutive_5xx: count(o.consecutive_5xx.map(|v| v.value), d.consecutive_5xx),
        consecutive_gateway_failure: count(
            o.consecutive_gateway_failure.map(|v| v.value),
            d.consecutive_gateway_failure,
        ),
        consecutive_local_origin_failure: count(
            o.consecutive_local_origin_failure.map(|v| v.value),
            d.consecutive_local_origin_failure,
        ),
        interval,
        base_ejection_time,
        max_ejection_time,
        max_ejection_time_jitter: duration(
            &o.max_ejection_time_jitter,
            "max_ejection_time_jitter",
            ctx,
        )
        .unwrap_or_default(),
        max_ejection_percent: percent(
            o.max_ejection_percent.map(|v| v.value),
            d.max_ejection_percent,
            "max_ejection_percent",
            ctx,
        ),
        always_eject_one_host: o.always_eject_one_host.map(|v| v.value).unwrap_or(false),
        enforcing_consecutive_5xx: percent(
            o.enforcing_consecutive_5xx.map(|v| v.value),
            d.enforcing_consecutive_5xx,
            "enforcing_consecutive_5xx",
            ctx,
        ),
        enforcing_consecutive_gateway_failure: percent(
            o.enforcing_consecutive_gateway_failure.map(|v| v.value),
            d.enforcing_consecutive_gateway_failure,
            "enforcing_consecutive_gateway_failure",
            ctx,
        ),
        enforcing_consecutive_local_origin_failure: percent(
            o.enforcing_consecutive_local_origin_failure
                .map(|v| v.value),
            d.enforcing_consecutive_local_origin_failure,
            "enforcing_consecutive_local_origin_failure",
            ctx,
        ),
        enforcing_success_rate: percent(
            o.enforcing_success_rate.map(|v| v.value),
            d.enforcing_success_rate,
            "enforcing_success_rate",
            ctx,
        ),
        enforcing_local_origin_success_rate: percent(
            o.enforcing_local_origin_success_rate.map(|v| v.value),
            d.enforcing_local_origin_success_rate,
            "enforcing_local_origin_success_rate",
            ctx,
        ),
        enforcing_failure_percentage: percent(
            o.enforcing_failure_percentage.map(|v| v.value),
            d.enforcing_failure_percentage,
            "enforcing_failure_percentage",
            ctx,
        ),
        enforcing_failure_percentage_local_origin: percent(
            o.enforcing_failure_percentage_local_origin.map(|v| v.value),
            d.enforcing_failure_percentage_local_origin,
            "enforcing_failure_percentage_local_origin",
            ctx,
        ),
        success_rate_minimum_hosts: count(
            o.success_rate_minimum_hosts.map(|v| v.value),
            d.success_rate_minimum_hosts,
        ),
        success_rate_request_volume: count(
            o.success_rate_request_volume.map(|v| v.value),
            d.success_rate_request_volume,
        ),
        success_rate_stdev_factor: count(
            o.success_rate_stdev_factor.map(|v| v.value),
            d.success_rate_stdev_factor,
        ),
        failure_percentage_threshold: percent(
            o.failure_percentage_threshold.map(|v| v.value),
            d.failure_percentage_threshold,
            "failure_percentage_threshold",
            ctx,
        ),
        failure_percentage_minimum_hosts: count(
            o.failure_percentage_minimum_hosts.map(|v| v.value),
            d.failure_percentage_minimum_hosts,
        ),
        failure_percentage_request_volume: count(
            o.failure_percentage_request_volume.map(|v| v.value),
            d.failure_percentage_request_volume,
        ),
        split_external_local_origin_errors: o.split_external_local_origin_errors,
        successful_active_health_check_uneject_host: o
            .successful_active_health_check_uneject_host
            .map(|v| v.value)
            .unwrap_or(true),
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::expect_used)]
    use super::*;
    use crate::bootstrap::load;
    use ferry_envoy_api::Format;

    fn od(extra: &str) -> Result<OutlierDetection, String> {
        let y = format!(
            r#"
static_resources:
  clusters:
  - name: svc
    outlier_detection: {extra}
    load_assignment:
      cluster_name: svc
      endpoints:
      - lb_endpoints:
        - endpoint: {{address: {{socket_address: {{address: 127.0.0.1, port_value: 80}}}}}}
"#
        );
        load(&y, Format::Yaml)
            .map(|l| {
                l.bootstrap.clusters[0]
                    .outlier_detection
                    .clone()
                    .expect("set")
            })
            .map_err(|e| e.to_string())
    }

    #[test]
    fn empty_means_envoys_defaults() {
        assert_eq!(od("{}").unwrap(), OutlierDetection::default());
        // A long base ejection time raises the default maximum with it.
        let o = od("{base_ejection_time: 600s}").unwrap();
        assert_eq!(o.max_ejection_time, Duration::from_secs(600));
    }

    #[test]
    fn bad_values_are_named() {
        let e = od("{base_ejection_time: 60s, max_ejection_time: 10s, max_ejection_percent: 101}")
            .unwrap_err();
        let p = "static_resources.clusters[0].outlier_detection";
        for want in [
            format!("{p}.max_ejection_time: must not be smaller than base_ejection_time"),
            format!("{p}.max_ejection_percent: 101 is more than 100"),
        ] {
            assert!(e.contains(&want), "{want}\nnot in:\n{e}");
        }
    }
}
