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
            upstream_cx_none_healthy,
            lb_healthy_panic,
            upstream_cx_destroy,
            upstream_cx_destroy_local,
            upstream_cx_destroy_remote,
            upstream_cx_destroy_with_active_rq,
            upstream_cx_destroy_local_with_active_rq,
            upstream_cx_destroy_remote_with_active_rq,
            upstream_cx_http1_total,
            upstream_cx_http2_total,
            upstream_cx_http3_total,
            upstream_cx_idle_timeout,
            upstream_cx_max_requests,
            upstream_cx_max_duration_reached,
            upstream_cx_protocol_error,
            upstream_cx_close_notify,
            upstream_cx_connect_attempts_exceeded,
            upstream_cx_rx_bytes_total,
            upstream_cx_tx_bytes_total,
            upstream_rq_cancelled,
            upstream_rq_maintenance_mode,
            upstream_flow_control_paused_reading_total,
            upstream_flow_control_resumed_reading_total,
            upstream_flow_control_backed_up_total,
            upstream_flow_control_drained_total,
            upstream_internal_redirect_failed_total,
            upstream_internal_redirect_succeeded_total,
            membership_change,
            update_attempt,
            update_success,
            update_failure,
            update_empty,
            update_no_rebuild,
            assignment_stale,
            assignment_timeout_received,
            bind_errors,
            original_dst_host_invalid,
            lb_local_cluster_not_ok,
            lb_recalculate_zone_structures,
            lb_zone_cluster_too_small,
            lb_zone_no_capacity_left,
            lb_zone_routing_all_directly,
            lb_zone_routing_cross_zone,
            lb_zone_routing_sampled,
            lb_subsets_created,
            lb_subsets_fallback,
            lb_subsets_fallback_panic,
            lb_subsets_removed,
            lb_subsets_selected,
            upstream_rq_0rtt,
            upstream_cx_connect_with_0_rtt,
            upstream_http3_broken,
            default_total_match_count = "default.total_match_count",
            assignment_use_cached,
            upstream_cx_preconnect_skipped,
            upstream_rq_rx_reset_no_error,
            http1_dropped_headers_with_underscores = "http1.dropped_headers_with_underscores",
            http1_metadata_not_supported_error = "http1.metadata_not_supported_error",
            http1_requests_rejected_with_underscores_in_headers = "http1.requests_rejected_with_underscores_in_headers",
            http1_response_flood = "http1.response_flood",
        }
        gauges: {
            upstream_cx_active,
            upstream_rq_active,
            upstream_rq_pending_active,
            membership_total,
            membership_healthy,
            membership_degraded,
            membership_excluded,
            upstream_cx_rx_bytes_buffered,
            upstream_cx_tx_bytes_buffered,
            max_host_weight,
            lb_subsets_active,
            upstream_queue_overloaded,
            version,
            warming_state,
        }
        histograms: { upstream_cx_connect_ms, upstream_cx_length_ms, upstream_rq_per_cx }
        dynamic: {
            codes: ferry_stats::StatusCodes = "upstream_rq_",
            external: ferry_stats::StatusCodes = "external.upstream_rq_",
            internal: ferry_stats::StatusCodes = "internal.upstream_rq_",
            retried: ferry_stats::StatusCodes = "retry.upstream_rq_",
        }
    }
}

impl ClusterStats {
    /// Charges a response status as Envoy's `CodeStats` does: `upstream_rq_<code>`, its
    /// class, `upstream_rq_completed` and `upstream_rq_time` (`ms`, for a response from
    /// upstream; None for a local 503/504), and the same under `internal.` or
    /// `external.` (by `x-envoy-internal`).
    pub fn charge(&self, status: u16, internal: bool, ms: Option<u64>) {
        self.upstream_rq_completed.inc();
        self.codes.inc(status);
        let by_origin = if internal {
            &self.internal
        } else {
            &self.external
        };
        by_origin.inc(status);
        by_origin.inc_completed();
        if let Some(ms) = ms {
            self.codes.record_time(ms);
            by_origin.record_time(ms);
        }
    }
}

ferry_stats::stat_group! {
    /// `cluster.<name>.*` of an EDS cluster beyond [`ClusterStats`]: its EDS
    /// subscription's (Envoy counts them in the cluster's scope).
    pub struct EdsStats {
        counters: { update_rejected, init_fetch_timeout }
        gauges: { update_time }
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
