//! The proxy's own stats with Envoy's names: `server.*`, `listener.<address>.*`,
//! `http.<stat_prefix>.*` (connection manager and router), and the per-listener
//! `listener.<address>.http.<stat_prefix>.*`. Each is a group of atomics that the
//! connection and request paths bump directly.

use std::net::SocketAddr;
use std::time::Instant;

ferry_stats::stat_group! {
    /// `server.*`.
    pub struct ServerStats {
        counters: {
            debug_assertion_failures,
            envoy_bug_failures,
            envoy_notifications,
            static_unknown_fields,
            dynamic_unknown_fields,
            dropped_stat_flushes,
            wip_protos,
            main_thread_watchdog_miss = "main_thread.watchdog_miss",
            main_thread_watchdog_mega_miss = "main_thread.watchdog_mega_miss",
            worker_watchdog_miss = "worker_0.watchdog_miss",
            worker_watchdog_mega_miss = "worker_0.watchdog_mega_miss",
        }
        gauges: {
            live,
            state,
            uptime,
            concurrency,
            memory_allocated,
            memory_heap_size,
            memory_physical_size,
            total_connections,
            parent_connections,
            version,
            hot_restart_epoch,
            days_until_first_cert_expiring,
            seconds_until_first_ocsp_response_expiring,
            stats_recent_lookups,
            compilation_settings_fips_mode = "compilation_settings.fips_mode",
        }
        histograms: { initialization_time_ms }
    }
}

ferry_stats::stat_group! {
    /// `cluster_manager.*`.
    pub struct ClusterManagerStats {
        counters: {
            cluster_added,
            cluster_modified,
            cluster_removed,
            cluster_updated,
            cluster_updated_via_merge,
            update_merge_cancelled,
            update_out_of_merge_window,
        }
        gauges: { active_clusters, warming_clusters }
    }
}

ferry_stats::stat_group! {
    /// `listener_manager.*`.
    pub struct ListenerManagerStats {
        counters: {
            listener_added,
            listener_modified,
            listener_removed,
            listener_stopped,
            listener_create_success,
            listener_create_failure,
            listener_in_place_updated,
        }
        gauges: {
            total_listeners_warming,
            total_listeners_active,
            total_listeners_draining,
            total_filter_chains_draining,
            workers_started,
            workers_pinned,
        }
    }
}

ferry_stats::stat_group! {
    /// `listener.<address>.*`.
    pub struct ListenerStats {
        counters: {
            downstream_cx_total,
            downstream_cx_destroy,
            downstream_cx_overflow,
            downstream_cx_overload_reject,
            downstream_global_cx_overflow,
            downstream_cx_transport_socket_connect_timeout,
            downstream_pre_cx_timeout,
            downstream_listener_filter_remote_close,
            downstream_listener_filter_error,
            no_filter_chain_match,
            extension_config_missing,
            network_extension_config_missing,
        }
        gauges: { downstream_cx_active, downstream_pre_cx_active }
        histograms: { downstream_cx_length_ms, connections_accepted_per_socket_event }
    }
}

ferry_stats::stat_group! {
    /// `listener.<address>.worker_0.*` (`listener.admin.main_thread.*` for admin): the
    /// connections of the thread that accepts them.
    pub struct ThreadConnectionStats {
        counters: { downstream_cx_total }
        gauges: { downstream_cx_active }
    }
}

/// A listener's stats groups.
#[derive(Debug, Clone)]
pub struct ListenerScope {
    /// `listener.<address>.*`.
    pub stats: std::sync::Arc<ListenerStats>,
    /// `listener.<address>.worker_0.*`.
    pub thread: std::sync::Arc<ThreadConnectionStats>,
}

impl ListenerScope {
    /// Registers a listener's groups under `scope` (`listener.<address>.`); `thread` is
    /// `worker_0` or `main_thread`.
    pub fn register(store: &ferry_stats::Store, scope: &str, thread: &str) -> ListenerScope {
        let l = ListenerScope {
            stats: std::sync::Arc::default(),
            thread: std::sync::Arc::default(),
        };
        store.register(scope.to_string(), &l.stats);
        store.register(format!("{scope}{thread}."), &l.thread);
        l
    }
}

ferry_stats::stat_group! {
    /// `http.<stat_prefix>.*`: the connection manager's and the router's stats.
    pub struct HcmStats {
        counters: {
            downstream_cx_total,
            downstream_cx_ssl_total,
            downstream_cx_http1_total,
            downstream_cx_upgrades_total,
            downstream_cx_http2_total,
            downstream_cx_http3_total,
            downstream_cx_destroy,
            downstream_cx_destroy_remote,
            downstream_cx_destroy_local,
            downstream_cx_destroy_active_rq,
            downstream_cx_destroy_local_active_rq,
            downstream_cx_destroy_remote_active_rq,
            downstream_cx_protocol_error,
            downstream_cx_rx_bytes_total,
            downstream_cx_tx_bytes_total,
            downstream_cx_drain_close,
            downstream_cx_idle_timeout,
            downstream_cx_max_duration_reached,
            downstream_cx_max_requests_reached,
            downstream_cx_overload_disable_keepalive,
            downstream_cx_delayed_close_timeout,
            downstream_flow_control_paused_reading_total,
            downstream_flow_control_resumed_reading_total,
            downstream_rq_total,
            downstream_rq_http1_total,
            downstream_rq_http2_total,
            downstream_rq_http3_total,
            downstream_rq_response_before_rq_complete,
            downstream_rq_rx_reset,
            downstream_rq_tx_reset,
            downstream_rq_non_relative_path,
            downstream_rq_too_large,
            downstream_rq_completed,
            downstream_rq_failed_path_normalization,
            downstream_rq_1xx,
            downstream_rq_2xx,
            downstream_rq_3xx,
            downstream_rq_4xx,
            downstream_rq_5xx,
            downstream_rq_ws_on_non_ws_route,
            downstream_rq_idle_timeout,
            downstream_rq_overload_close,
            downstream_rq_redirected_with_normalized_path,
            downstream_rq_rejected_via_ip_detection,
            downstream_rq_timeout,
            downstream_rq_max_duration_reached,
            downstream_rq_header_timeout,
            downstream_rq_too_many_premature_resets,
            rs_too_large,
            no_route,
            no_cluster,
            rq_redirect,
            rq_direct_response,
            rq_total,
            rq_reset_after_downstream_response_started,
            rq_overload_local_reply,
            passthrough_internal_redirect_bad_location,
            passthrough_internal_redirect_no_route,
            passthrough_internal_redirect_predicate,
            passthrough_internal_redirect_too_many_redirects,
            passthrough_internal_redirect_unsafe_scheme,
            tracing_client_enabled = "tracing.client_enabled",
            tracing_health_check = "tracing.health_check",
            tracing_not_traceable = "tracing.not_traceable",
            tracing_random_sampling = "tracing.random_sampling",
            tracing_service_forced = "tracing.service_forced",
        }
        gauges: {
            downstream_cx_active,
            downstream_cx_ssl_active,
            downstream_cx_http1_active,
            downstream_cx_upgrades_active,
            downstream_cx_http2_active,
            downstream_cx_http3_active,
            downstream_cx_rx_bytes_buffered,
            downstream_cx_tx_bytes_buffered,
            downstream_rq_active,
            downstream_cx_http1_soft_drain,
        }
        histograms: { downstream_cx_length_ms, downstream_rq_time }
    }
}

/// The router filter's and tracing's stats in [`HcmStats`] (not listed for admin).
pub const ROUTER_STATS: &[&str] = &[
    "no_route",
    "no_cluster",
    "rq_redirect",
    "rq_direct_response",
    "rq_total",
    "rq_reset_after_downstream_response_started",
    "rq_overload_local_reply",
    "passthrough_internal_redirect_bad_location",
    "passthrough_internal_redirect_no_route",
    "passthrough_internal_redirect_predicate",
    "passthrough_internal_redirect_too_many_redirects",
    "passthrough_internal_redirect_unsafe_scheme",
    "tracing.client_enabled",
    "tracing.health_check",
    "tracing.not_traceable",
    "tracing.random_sampling",
    "tracing.service_forced",
];

impl ferry_upstream::counted_io::CountBytes for HcmStats {
    fn read(&self, n: u64) {
        self.downstream_cx_rx_bytes_total.add(n);
    }

    fn written(&self, n: u64) {
        self.downstream_cx_tx_bytes_total.add(n);
    }
}

/// The counter of `status`'s class among `downstream_rq_1xx` … `5xx`.
fn by_class(status: u16, classes: [&ferry_stats::Counter; 5]) -> Option<&ferry_stats::Counter> {
    classes
        .get(usize::from(status / 100).checked_sub(1)?)
        .copied()
}

impl HcmStats {
    /// Counts a response status in `downstream_rq_<class>xx`.
    pub fn response_class(&self, status: u16) {
        let classes = [
            &self.downstream_rq_1xx,
            &self.downstream_rq_2xx,
            &self.downstream_rq_3xx,
            &self.downstream_rq_4xx,
            &self.downstream_rq_5xx,
        ];
        if let Some(c) = by_class(status, classes) {
            c.inc();
        }
    }
}

ferry_stats::stat_group! {
    /// `listener.<address>.http.<stat_prefix>.*`: what one listener's connection
    /// manager answered.
    pub struct ListenerHttpStats {
        counters: {
            downstream_rq_1xx,
            downstream_rq_2xx,
            downstream_rq_3xx,
            downstream_rq_4xx,
            downstream_rq_5xx,
            downstream_rq_completed,
        }
        gauges: {}
    }
}

impl ListenerHttpStats {
    /// Counts a response status in `downstream_rq_<class>xx`.
    pub fn response_class(&self, status: u16) {
        let classes = [
            &self.downstream_rq_1xx,
            &self.downstream_rq_2xx,
            &self.downstream_rq_3xx,
            &self.downstream_rq_4xx,
            &self.downstream_rq_5xx,
        ];
        if let Some(c) = by_class(status, classes) {
            c.inc();
        }
    }
}

/// A listener's stat scope name: its `stat_prefix`, or its address with `:` as `_`
/// (Envoy's `listener.127.0.0.1_10000.`).
pub fn listener_scope(stat_prefix: &str, address: SocketAddr) -> String {
    if !stat_prefix.is_empty() {
        return format!("listener.{stat_prefix}.");
    }
    format!("listener.{}.", address.to_string().replace(':', "_"))
}

/// Milliseconds since `start`, for histograms.
pub fn ms_since(start: Instant) -> u64 {
    start.elapsed().as_millis() as u64
}

/// A connection's accounting in its listener's stats: counted at accept, and closed
/// when dropped.
#[derive(Debug)]
pub struct ConnectionStats {
    scope: ListenerScope,
    start: Instant,
}

impl ConnectionStats {
    /// Counts an accepted connection.
    pub fn open(scope: &ListenerScope) -> ConnectionStats {
        scope.stats.downstream_cx_total.inc();
        scope.stats.downstream_cx_active.inc();
        scope.thread.downstream_cx_total.inc();
        scope.thread.downstream_cx_active.inc();
        ConnectionStats {
            scope: scope.clone(),
            start: Instant::now(),
        }
    }
}

impl Drop for ConnectionStats {
    fn drop(&mut self) {
        let s = &self.scope.stats;
        s.downstream_cx_active.dec();
        self.scope.thread.downstream_cx_active.dec();
        s.downstream_cx_destroy.inc();
        s.downstream_cx_length_ms.record(ms_since(self.start));
    }
}

/// The process's memory as the allocator sees it (admin `/memory`, `server.memory_*`).
#[derive(Debug, Clone, Copy, Default)]
pub struct Memory {
    /// Bytes allocated by the program.
    pub allocated: u64,
    /// Bytes the allocator has mapped.
    pub heap_size: u64,
    /// Bytes resident in physical memory.
    pub physical_size: u64,
}
