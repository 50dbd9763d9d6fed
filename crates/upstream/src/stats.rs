//! A cluster's stats, under `cluster.<name>.` with Envoy's names (one place for all of
//! them; the circuit breaker gauges live with the breakers).

ferry_stats::stat_group! {
    /// `cluster.<name>.*`.
    pub struct ClusterStats {
        counters: {
            upstream_cx_total,
            upstream_cx_connect_fail,
            upstream_cx_connect_timeout,
            upstream_cx_overflow,
            upstream_cx_pool_overflow,
            upstream_rq_total,
            upstream_rq_completed,
            upstream_rq_pending_total,
            upstream_rq_pending_overflow,
            upstream_rq_active_overflow,
            upstream_rq_pending_failure_eject,
            upstream_rq_timeout,
            upstream_rq_per_try_timeout,
            upstream_rq_per_try_idle_timeout,
            upstream_rq_rx_reset,
            upstream_rq_tx_reset,
            upstream_rq_retry,
            upstream_rq_retry_success,
            upstream_rq_retry_overflow,
            upstream_rq_retry_limit_exceeded,
            upstream_rq_retry_backoff_exponential,
            upstream_rq_retry_backoff_ratelimited,
            upstream_rq_max_duration_reached,
            retry_or_shadow_abandoned,
            upstream_rq_2xx,
            upstream_rq_3xx,
            upstream_rq_4xx,
            upstream_rq_5xx,
            upstream_cx_none_healthy,
            lb_healthy_panic,
        }
        gauges: {
            upstream_cx_active,
            upstream_rq_active,
            upstream_rq_pending_active,
            membership_total,
            membership_healthy,
            membership_degraded,
            membership_excluded,
        }
    }
}

impl ClusterStats {
    /// Counts a response status in its `upstream_rq_<class>xx` counter.
    pub fn response_class(&self, status: u16) {
        match status / 100 {
            2 => self.upstream_rq_2xx.inc(),
            3 => self.upstream_rq_3xx.inc(),
            4 => self.upstream_rq_4xx.inc(),
            5 => self.upstream_rq_5xx.inc(),
            _ => {}
        }
    }
}

ferry_stats::stat_group! {
    /// `cluster.<name>.health_check.*` (only for clusters with a health check).
    pub struct HealthCheckStats {
        counters: {
            attempt,
            success,
            failure,
            network_failure,
            passive_failure,
            verify_cluster,
        }
        gauges: {
            healthy,
            degraded,
        }
    }
}

ferry_stats::stat_group! {
    /// `cluster.<name>.outlier_detection.*` (only for clusters with outlier detection).
    pub struct OutlierStats {
        counters: {
            ejections_enforced_total,
            ejections_overflow,
            ejections_enforced_consecutive_5xx,
            ejections_detected_consecutive_5xx,
            ejections_enforced_success_rate,
            ejections_detected_success_rate,
            ejections_enforced_consecutive_gateway_failure,
            ejections_detected_consecutive_gateway_failure,
            ejections_enforced_consecutive_local_origin_failure,
            ejections_detected_consecutive_local_origin_failure,
            ejections_enforced_local_origin_success_rate,
            ejections_detected_local_origin_success_rate,
            ejections_enforced_failure_percentage,
            ejections_detected_failure_percentage,
            ejections_enforced_local_origin_failure_percentage,
            ejections_detected_local_origin_failure_percentage,
            ejections_detected_degradation,
            ejections_total,
            ejections_consecutive_5xx,
            ejections_success_rate,
        }
        gauges: {
            ejections_active,
        }
    }
}
