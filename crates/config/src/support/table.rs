//! The support table of the messages whose converters do not declare their fields yet,
//! and the walk that names everything else (being replaced by `fields!`).
//!
//! The decoded config is walked reflectively: every field that is set must be listed in
//! [`SUPPORTED`] for its message type (or declared by its converter), and every `Any`
//! must hold one of [`SUPPORTED_EXTENSIONS`]. Anything else is reported with its path.

use crate::ConfigError;
use ferry_envoy_api::prost_reflect::{MapKey, ReflectMessage, Value};
use ferry_envoy_api::{pool, DynamicMessage};

/// Supported fields, per message type. Types not listed support no fields, except the
/// `google.protobuf` well-known types, which are values.
pub const SUPPORTED: &[(&str, &[&str])] = &[
    (
        "envoy.config.bootstrap.v3.Bootstrap",
        &["node", "static_resources", "admin", "cluster_manager", "stats_config", "stats_sinks", "stats_flush_interval"],
    ),
    ("envoy.config.metrics.v3.StatsConfig", &["stats_tags", "use_all_default_tags", "stats_matcher"]),
    ("envoy.config.metrics.v3.TagSpecifier", &["tag_name", "regex", "fixed_value"]),
    ("envoy.config.metrics.v3.StatsMatcher", &["reject_all", "exclusion_list", "inclusion_list"]),
    ("envoy.type.matcher.v3.ListStringMatcher", &["patterns"]),
    ("envoy.config.metrics.v3.StatsSink", &["name", "typed_config"]),
    ("envoy.config.metrics.v3.StatsdSink", &["address", "tcp_cluster_name", "prefix"]),
    ("envoy.config.metrics.v3.DogStatsdSink", &["address", "prefix", "max_bytes_per_datagram"]),
    (
        "envoy.extensions.stat_sinks.open_telemetry.v3.SinkConfig",
        &["grpc_service", "report_counters_as_deltas", "report_histograms_as_deltas", "emit_tags_as_attributes", "use_tag_extracted_name", "prefix"],
    ),
    ("envoy.config.core.v3.GrpcService", &["envoy_grpc", "timeout"]),
    (
        "envoy.extensions.access_loggers.open_telemetry.v3.OpenTelemetryAccessLogConfig",
        &[
            "common_config", "grpc_service", "disable_builtin_labels", "resource_attributes", "body", "attributes",
            "log_name", "buffer_flush_interval", "buffer_size_bytes",
        ],
    ),
    (
        "envoy.extensions.access_loggers.grpc.v3.CommonGrpcAccessLogConfig",
        &["log_name", "grpc_service", "transport_api_version", "buffer_flush_interval", "buffer_size_bytes"],
    ),
    (
        "opentelemetry.proto.common.v1.AnyValue",
        &["string_value", "bool_value", "int_value", "double_value", "array_value", "kvlist_value"],
    ),
    ("opentelemetry.proto.common.v1.ArrayValue", &["values"]),
    ("opentelemetry.proto.common.v1.KeyValueList", &["values"]),
    ("opentelemetry.proto.common.v1.KeyValue", &["key", "value"]),
    ("envoy.config.core.v3.GrpcService.EnvoyGrpc", &["cluster_name", "authority"]),
    ("envoy.config.bootstrap.v3.ClusterManager", &["outlier_detection"]),
    ("envoy.config.bootstrap.v3.ClusterManager.OutlierDetection", &["event_log_path"]),
    ("envoy.config.bootstrap.v3.Bootstrap.StaticResources", &["listeners", "clusters"]),
    ("envoy.config.bootstrap.v3.Admin", &["access_log_path", "address"]),
    ("envoy.config.core.v3.Node", &["id", "cluster", "metadata", "locality"]),
    ("envoy.config.core.v3.Locality", &["region", "zone", "sub_zone"]),
    ("envoy.config.core.v3.Address", &["socket_address"]),
    ("envoy.config.core.v3.SocketAddress", &["protocol", "address", "port_value", "ipv4_compat"]),
    // Listeners
    (
        "envoy.config.listener.v3.Listener",
        &["name", "address", "stat_prefix", "filter_chains", "default_filter_chain", "per_connection_buffer_limit_bytes", "traffic_direction", "metadata"],
    ),
    ("envoy.config.listener.v3.FilterChain", &["filter_chain_match", "filters", "name", "metadata"]),
    (
        "envoy.config.listener.v3.FilterChainMatch",
        &["destination_port", "server_names", "transport_protocol", "application_protocols"],
    ),
    ("envoy.config.listener.v3.Filter", &["name", "typed_config"]),
    // HTTP connection manager
    (
        "envoy.extensions.filters.network.http_connection_manager.v3.HttpConnectionManager",
        &[
            "codec_type", "stat_prefix", "route_config", "http_filters", "common_http_protocol_options",
            "http_protocol_options", "http2_protocol_options", "server_name", "server_header_transformation",
            "max_request_headers_kb", "stream_idle_timeout", "request_timeout", "access_log",
            "use_remote_address", "xff_num_trusted_hops", "skip_xff_append", "via", "generate_request_id",
            "preserve_external_request_id", "always_set_request_id_in_response", "upgrade_configs",
            "internal_address_config", "tracing",
        ],
    ),
    (
        "envoy.extensions.filters.network.http_connection_manager.v3.HttpConnectionManager.Tracing",
        &["client_sampling", "random_sampling", "overall_sampling", "verbose", "max_path_tag_length", "custom_tags", "provider", "spawn_upstream_span"],
    ),
    ("envoy.type.tracing.v3.CustomTag", &["tag", "literal", "environment", "request_header"]),
    ("envoy.type.tracing.v3.CustomTag.Literal", &["value"]),
    ("envoy.type.tracing.v3.CustomTag.Environment", &["name", "default_value"]),
    ("envoy.type.tracing.v3.CustomTag.Header", &["name", "default_value"]),
    ("envoy.config.trace.v3.Tracing.Http", &["name", "typed_config"]),
    (
        "envoy.config.trace.v3.ZipkinConfig",
        &["collector_cluster", "collector_endpoint", "trace_id_128bit", "shared_span_context", "collector_endpoint_version", "collector_hostname", "trace_context_option"],
    ),
    ("envoy.config.trace.v3.OpenTelemetryConfig", &["grpc_service", "service_name"]),
    ("envoy.config.core.v3.GrpcService", &["envoy_grpc", "timeout"]),
    ("envoy.config.core.v3.GrpcService.EnvoyGrpc", &["cluster_name", "authority"]),
    (
        "envoy.extensions.filters.network.http_connection_manager.v3.HttpConnectionManager.InternalAddressConfig",
        &["cidr_ranges"],
    ),
    ("envoy.config.core.v3.CidrRange", &["address_prefix", "prefix_len"]),
    ("envoy.extensions.filters.network.http_connection_manager.v3.HttpFilter", &["name", "typed_config"]),
    ("envoy.extensions.filters.network.http_connection_manager.v3.HttpConnectionManager.UpgradeConfig", &["upgrade_type", "enabled"]),
    ("envoy.extensions.filters.http.router.v3.Router", &["dynamic_stats"]),
    // HTTP filters
    (
        "envoy.extensions.filters.http.fault.v3.HTTPFault",
        &[
            "delay", "abort", "upstream_cluster", "headers", "downstream_nodes", "max_active_faults", "response_rate_limit",
            "delay_percent_runtime", "abort_percent_runtime", "delay_duration_runtime", "abort_http_status_runtime",
            "max_active_faults_runtime", "response_rate_limit_percent_runtime", "abort_grpc_status_runtime",
        ],
    ),
    ("envoy.extensions.filters.http.fault.v3.FaultAbort", &["http_status", "grpc_status", "header_abort", "percentage", "response_body"]),
    ("envoy.extensions.filters.http.fault.v3.FaultAbort.HeaderAbort", &[]),
    ("envoy.extensions.filters.common.fault.v3.FaultDelay", &["fixed_delay", "header_delay", "percentage"]),
    ("envoy.extensions.filters.common.fault.v3.FaultDelay.HeaderDelay", &[]),
    ("envoy.extensions.filters.common.fault.v3.FaultRateLimit", &["fixed_limit", "header_limit", "percentage"]),
    ("envoy.extensions.filters.common.fault.v3.FaultRateLimit.FixedLimit", &["limit_kbps"]),
    ("envoy.extensions.filters.common.fault.v3.FaultRateLimit.HeaderLimit", &[]),
    (
        "envoy.extensions.filters.http.local_ratelimit.v3.LocalRateLimit",
        &[
            "stat_prefix", "status", "token_bucket", "filter_enabled", "filter_enforced",
            "request_headers_to_add_when_not_enforced", "response_headers_to_add", "local_rate_limit_per_downstream_connection",
            "descriptors", "rate_limits", "stage", "always_consume_default_token_bucket",
        ],
    ),
    ("envoy.extensions.common.ratelimit.v3.LocalRateLimitDescriptor", &["entries", "token_bucket"]),
    ("envoy.extensions.common.ratelimit.v3.RateLimitDescriptor.Entry", &["key", "value"]),
    ("envoy.type.v3.HttpStatus", &["code"]),
    ("envoy.config.route.v3.FilterConfig", &["config", "is_optional", "disabled"]),
    ("envoy.type.v3.TokenBucket", &["max_tokens", "tokens_per_fill", "fill_interval"]),
    ("envoy.extensions.filters.http.health_check.v3.HealthCheck", &["pass_through_mode", "headers"]),
    ("envoy.extensions.filters.network.local_ratelimit.v3.LocalRateLimit", &["stat_prefix", "token_bucket", "runtime_enabled"]),
    ("envoy.config.core.v3.RuntimeFeatureFlag", &["default_value", "runtime_key"]),
    (
        "envoy.config.core.v3.HttpProtocolOptions",
        &["idle_timeout", "max_connection_duration", "max_headers_count", "max_requests_per_connection"],
    ),
    ("envoy.config.core.v3.Http1ProtocolOptions", &[]),
    (
        "envoy.config.core.v3.Http2ProtocolOptions",
        &["max_concurrent_streams", "initial_stream_window_size", "initial_connection_window_size"],
    ),
    // Routes
    (
        "envoy.config.route.v3.RouteConfiguration",
        &["name", "virtual_hosts", "request_headers_to_add", "request_headers_to_remove", "response_headers_to_add", "response_headers_to_remove", "validate_clusters"],
    ),
    (
        "envoy.config.route.v3.VirtualHost",
        &[
            "name", "domains", "routes", "request_headers_to_add", "request_headers_to_remove", "response_headers_to_add", "response_headers_to_remove",
            "retry_policy", "hedge_policy", "per_request_buffer_limit_bytes", "include_request_attempt_count", "include_attempt_count_in_response",
            "typed_per_filter_config", "rate_limits",
        ],
    ),
    (
        "envoy.config.route.v3.Route",
        &[
            "name", "match", "route", "redirect", "direct_response", "request_headers_to_add", "request_headers_to_remove", "response_headers_to_add", "response_headers_to_remove",
            "per_request_buffer_limit_bytes", "typed_per_filter_config", "decorator",
        ],
    ),
    ("envoy.config.route.v3.Decorator", &["operation", "propagate"]),
    (
        "envoy.config.route.v3.RouteMatch",
        &["prefix", "path", "safe_regex", "path_separated_prefix", "case_sensitive", "headers", "query_parameters", "grpc"],
    ),
    ("envoy.config.route.v3.RouteMatch.GrpcRouteMatchOptions", &[]),
    (
        "envoy.config.route.v3.HeaderMatcher",
        &["name", "exact_match", "safe_regex_match", "range_match", "present_match", "prefix_match", "suffix_match", "contains_match", "string_match", "invert_match"],
    ),
    ("envoy.config.route.v3.QueryParameterMatcher", &["name", "string_match", "present_match"]),
    ("envoy.type.matcher.v3.StringMatcher", &["exact", "prefix", "suffix", "safe_regex", "contains", "ignore_case"]),
    ("envoy.type.matcher.v3.RegexMatcher", &["google_re2", "regex"]),
    ("envoy.type.matcher.v3.RegexMatcher.GoogleRE2", &["max_program_size"]),
    ("envoy.type.matcher.v3.RegexMatchAndSubstitute", &["pattern", "substitution"]),
    ("envoy.type.v3.Int64Range", &["start", "end"]),
    (
        "envoy.config.route.v3.RouteAction",
        &[
            "cluster", "cluster_header", "weighted_clusters", "prefix_rewrite", "regex_rewrite", "host_rewrite_literal", "auto_host_rewrite", "timeout", "idle_timeout", "hash_policy", "cluster_not_found_response_code",
            "retry_policy", "hedge_policy", "request_mirror_policies", "priority", "max_stream_duration", "max_grpc_timeout", "grpc_timeout_offset",
            "rate_limits",
        ],
    ),
    ("envoy.config.route.v3.RateLimit", &["stage", "actions"]),
    (
        "envoy.config.route.v3.RateLimit.Action",
        &["source_cluster", "destination_cluster", "request_headers", "remote_address", "generic_key", "header_value_match"],
    ),
    ("envoy.config.route.v3.RateLimit.Action.SourceCluster", &[]),
    ("envoy.config.route.v3.RateLimit.Action.DestinationCluster", &[]),
    ("envoy.config.route.v3.RateLimit.Action.RequestHeaders", &["header_name", "descriptor_key", "skip_if_absent"]),
    ("envoy.config.route.v3.RateLimit.Action.RemoteAddress", &[]),
    ("envoy.config.route.v3.RateLimit.Action.GenericKey", &["descriptor_value", "descriptor_key"]),
    ("envoy.config.route.v3.RateLimit.Action.HeaderValueMatch", &["descriptor_value", "descriptor_key", "expect_match", "headers"]),
    (
        "envoy.config.route.v3.RetryPolicy",
        &[
            "retry_on", "num_retries", "per_try_timeout", "per_try_idle_timeout", "retry_host_predicate", "host_selection_retry_max_attempts",
            "retriable_status_codes", "retry_back_off", "rate_limited_retry_back_off", "retriable_headers", "retriable_request_headers",
        ],
    ),
    ("envoy.config.route.v3.RetryPolicy.RetryHostPredicate", &["name", "typed_config"]),
    ("envoy.config.route.v3.RetryPolicy.RetryBackOff", &["base_interval", "max_interval"]),
    ("envoy.config.route.v3.RetryPolicy.RateLimitedRetryBackOff", &["reset_headers", "max_interval"]),
    ("envoy.config.route.v3.RetryPolicy.ResetHeader", &["name", "format"]),
    ("envoy.extensions.retry.host.previous_hosts.v3.PreviousHostsPredicate", &[]),
    ("envoy.config.route.v3.HedgePolicy", &["initial_requests", "additional_request_chance", "hedge_on_per_try_timeout"]),
    ("envoy.config.route.v3.RouteAction.RequestMirrorPolicy", &["cluster", "cluster_header", "runtime_fraction", "disable_shadow_host_suffix_append"]),
    ("envoy.config.route.v3.RouteAction.MaxStreamDuration", &["max_stream_duration", "grpc_timeout_header_max", "grpc_timeout_header_offset"]),
    ("envoy.config.core.v3.RuntimeFractionalPercent", &["default_value", "runtime_key"]),
    ("envoy.type.v3.FractionalPercent", &["numerator", "denominator"]),
    ("envoy.type.v3.Percent", &["value"]),
    ("envoy.config.route.v3.WeightedCluster", &["clusters", "total_weight"]),
    (
        "envoy.config.route.v3.WeightedCluster.ClusterWeight",
        &["name", "weight", "request_headers_to_add", "request_headers_to_remove", "response_headers_to_add", "response_headers_to_remove"],
    ),
    ("envoy.config.route.v3.RouteAction.HashPolicy", &["header", "cookie", "connection_properties", "query_parameter", "terminal"]),
    ("envoy.config.route.v3.RouteAction.HashPolicy.Header", &["header_name"]),
    ("envoy.config.route.v3.RouteAction.HashPolicy.Cookie", &["name", "ttl", "path"]),
    ("envoy.config.route.v3.RouteAction.HashPolicy.ConnectionProperties", &["source_ip"]),
    ("envoy.config.route.v3.RouteAction.HashPolicy.QueryParameter", &["name"]),
    (
        "envoy.config.route.v3.RedirectAction",
        &["https_redirect", "scheme_redirect", "host_redirect", "port_redirect", "path_redirect", "prefix_rewrite", "regex_rewrite", "response_code", "strip_query"],
    ),
    ("envoy.config.route.v3.DirectResponseAction", &["status", "body"]),
    ("envoy.config.core.v3.DataSource", &["filename", "inline_bytes", "inline_string"]),
    ("envoy.config.core.v3.HeaderValueOption", &["header", "append", "append_action", "keep_empty_value"]),
    ("envoy.config.core.v3.HeaderValue", &["key", "value", "raw_value"]),
    // TCP proxy
    ("envoy.extensions.filters.network.tcp_proxy.v3.TcpProxy", &["stat_prefix", "cluster", "weighted_clusters", "idle_timeout", "access_log"]),
    ("envoy.extensions.filters.network.tcp_proxy.v3.TcpProxy.WeightedCluster", &["clusters"]),
    ("envoy.extensions.filters.network.tcp_proxy.v3.TcpProxy.WeightedCluster.ClusterWeight", &["name", "weight"]),
    // Access logs
    ("envoy.config.accesslog.v3.AccessLog", &["name", "typed_config", "filter"]),
    (
        "envoy.config.accesslog.v3.AccessLogFilter",
        &[
            "status_code_filter", "duration_filter", "not_health_check_filter", "traceable_filter", "runtime_filter",
            "and_filter", "or_filter", "header_filter", "response_flag_filter", "grpc_status_filter", "log_type_filter",
        ],
    ),
    ("envoy.config.accesslog.v3.StatusCodeFilter", &["comparison"]),
    ("envoy.config.accesslog.v3.DurationFilter", &["comparison"]),
    ("envoy.config.accesslog.v3.ComparisonFilter", &["op", "value"]),
    ("envoy.config.core.v3.RuntimeUInt32", &["default_value", "runtime_key"]),
    ("envoy.config.accesslog.v3.NotHealthCheckFilter", &[]),
    ("envoy.config.accesslog.v3.TraceableFilter", &[]),
    ("envoy.config.accesslog.v3.RuntimeFilter", &["runtime_key", "percent_sampled", "use_independent_randomness"]),
    ("envoy.config.accesslog.v3.AndFilter", &["filters"]),
    ("envoy.config.accesslog.v3.OrFilter", &["filters"]),
    ("envoy.config.accesslog.v3.HeaderFilter", &["header"]),
    ("envoy.config.accesslog.v3.ResponseFlagFilter", &["flags"]),
    ("envoy.config.accesslog.v3.GrpcStatusFilter", &["statuses", "exclude"]),
    ("envoy.config.accesslog.v3.LogTypeFilter", &["types", "exclude"]),
    ("envoy.extensions.access_loggers.file.v3.FileAccessLog", &["path", "format", "json_format", "log_format"]),
    ("envoy.extensions.access_loggers.stream.v3.StdoutAccessLog", &["log_format"]),
    ("envoy.extensions.access_loggers.stream.v3.StderrAccessLog", &["log_format"]),
    ("envoy.config.core.v3.SubstitutionFormatString", &["text_format", "json_format", "text_format_source", "formatters"]),
    ("envoy.extensions.formatter.req_without_query.v3.ReqWithoutQuery", &[]),
    // Clusters
    (
        "envoy.config.cluster.v3.Cluster",
        &[
            "name", "type", "connect_timeout", "lb_policy", "load_assignment", "dns_refresh_rate", "respect_dns_ttl",
            "dns_lookup_family", "dns_failure_refresh_rate", "dns_jitter", "dns_resolvers", "use_tcp_for_dns_lookups",
            "dns_resolution_config", "typed_dns_resolver_config", "typed_extension_protocol_options", "http2_protocol_options", "http_protocol_options",
            "common_http_protocol_options", "max_requests_per_connection", "per_connection_buffer_limit_bytes",
            "ring_hash_lb_config", "maglev_lb_config", "least_request_lb_config", "metadata", "circuit_breakers",
            "health_checks", "outlier_detection", "common_lb_config",
        ],
    ),
    (
        "envoy.config.cluster.v3.Cluster.CommonLbConfig",
        &["healthy_panic_threshold", "ignore_new_hosts_until_first_hc", "zone_aware_lb_config"],
    ),
    ("envoy.config.cluster.v3.Cluster.CommonLbConfig.ZoneAwareLbConfig", &["fail_traffic_on_panic"]),
    // Health checking
    (
        "envoy.config.core.v3.HealthCheck",
        &[
            "timeout", "interval", "initial_jitter", "interval_jitter", "interval_jitter_percent",
            "unhealthy_threshold", "healthy_threshold", "alt_port", "reuse_connection", "http_health_check",
            "tcp_health_check", "grpc_health_check", "no_traffic_interval", "no_traffic_healthy_interval",
            "unhealthy_interval", "unhealthy_edge_interval", "healthy_edge_interval",
            "always_log_health_check_failures", "always_log_health_check_success", "event_log_path", "event_logger",
        ],
    ),
    ("envoy.extensions.health_check.event_sinks.file.v3.HealthCheckEventFileSink", &["event_log_path"]),
    (
        "envoy.config.core.v3.HealthCheck.HttpHealthCheck",
        &[
            "host", "path", "send", "receive", "response_buffer_size", "request_headers_to_add",
            "request_headers_to_remove", "expected_statuses", "retriable_statuses", "codec_client_type",
            "service_name_matcher", "method",
        ],
    ),
    ("envoy.config.core.v3.HealthCheck.TcpHealthCheck", &["send", "receive"]),
    ("envoy.config.core.v3.HealthCheck.GrpcHealthCheck", &["service_name", "authority", "initial_metadata"]),
    ("envoy.config.core.v3.HealthCheck.Payload", &["text", "binary"]),
    (
        "envoy.config.cluster.v3.OutlierDetection",
        &[
            "consecutive_5xx", "interval", "base_ejection_time", "max_ejection_percent", "enforcing_consecutive_5xx",
            "enforcing_success_rate", "success_rate_minimum_hosts", "success_rate_request_volume",
            "success_rate_stdev_factor", "consecutive_gateway_failure", "enforcing_consecutive_gateway_failure",
            "split_external_local_origin_errors", "consecutive_local_origin_failure",
            "enforcing_consecutive_local_origin_failure", "enforcing_local_origin_success_rate",
            "failure_percentage_threshold", "enforcing_failure_percentage", "enforcing_failure_percentage_local_origin",
            "failure_percentage_minimum_hosts", "failure_percentage_request_volume", "max_ejection_time",
            "max_ejection_time_jitter", "successful_active_health_check_uneject_host", "always_eject_one_host",
        ],
    ),
    ("envoy.config.cluster.v3.CircuitBreakers", &["thresholds"]),
    (
        "envoy.config.cluster.v3.CircuitBreakers.Thresholds",
        &["priority", "max_connections", "max_pending_requests", "max_requests", "max_retries", "retry_budget", "track_remaining", "max_connection_pools"],
    ),
    ("envoy.config.cluster.v3.CircuitBreakers.Thresholds.RetryBudget", &["budget_percent", "min_retry_concurrency"]),
    ("envoy.config.cluster.v3.Cluster.RefreshRate", &["base_interval", "max_interval"]),
    ("envoy.config.core.v3.DnsResolutionConfig", &["resolvers", "dns_resolver_options"]),
    ("envoy.config.core.v3.DnsResolverOptions", &["use_tcp_for_dns_lookups", "no_default_search_domain"]),
    ("envoy.config.core.v3.TypedExtensionConfig", &["name", "typed_config"]),
    (
        "envoy.extensions.network.dns_resolver.cares.v3.CaresDnsResolverConfig",
        &["resolvers", "use_resolvers_as_fallback", "dns_resolver_options", "query_timeout_seconds", "query_tries"],
    ),
    ("envoy.config.cluster.v3.Cluster.RingHashLbConfig", &["minimum_ring_size", "maximum_ring_size", "hash_function"]),
    ("envoy.config.cluster.v3.Cluster.MaglevLbConfig", &["table_size"]),
    ("envoy.config.cluster.v3.Cluster.LeastRequestLbConfig", &["choice_count"]),
    ("envoy.config.endpoint.v3.ClusterLoadAssignment", &["cluster_name", "endpoints"]),
    ("envoy.config.endpoint.v3.LocalityLbEndpoints", &["locality", "lb_endpoints", "load_balancing_weight", "priority"]),
    ("envoy.config.endpoint.v3.LbEndpoint", &["endpoint", "load_balancing_weight", "health_status", "metadata"]),
    ("envoy.config.endpoint.v3.Endpoint", &["address", "hostname"]),
    ("envoy.extensions.upstreams.http.v3.HttpProtocolOptions", &["explicit_http_config", "common_http_protocol_options"]),
    ("envoy.extensions.upstreams.http.v3.HttpProtocolOptions.ExplicitHttpConfig", &["http_protocol_options", "http2_protocol_options"]),
    ("envoy.config.core.v3.Metadata", &["filter_metadata"]),
];

/// Extensions that ferry implements, by name. Their config types come from the one
/// name → type table in `ferry-envoy-api` ([`extension_type`]).
pub const SUPPORTED_EXTENSIONS: &[&str] = &[
    "envoy.filters.network.http_connection_manager",
    "envoy.filters.network.tcp_proxy",
    "envoy.filters.http.router",
    "envoy.access_loggers.file",
    "envoy.access_loggers.stdout",
    "envoy.access_loggers.stderr",
    "envoy.extensions.upstreams.http.v3.HttpProtocolOptions",
    "envoy.network.dns_resolver.cares",
    "envoy.retry_host_predicates.previous_hosts",
    "envoy.filters.http.fault",
    "envoy.filters.http.local_ratelimit",
    "envoy.filters.http.health_check",
    "envoy.filters.network.local_ratelimit",
    "envoy.config.route.v3.FilterConfig",
    "envoy.health_check.event_sink.file",
    "envoy.stat_sinks.statsd",
    "envoy.stat_sinks.dog_statsd",
    "envoy.stat_sinks.open_telemetry",
    "envoy.access_loggers.open_telemetry",
    "envoy.formatter.req_without_query",
    "envoy.tracers.zipkin",
    "envoy.tracers.opentelemetry",
];

/// The config type of a supported extension (`typed_extension_protocol_options` keys are
/// the type itself).
pub fn extension_type(name: &str) -> &str {
    ferry_envoy_api::type_url_for_name(name).unwrap_or(name)
}

fn supported_type(ty: &str) -> bool {
    SUPPORTED_EXTENSIONS.iter().any(|n| extension_type(n) == ty)
}

fn supported_fields(message: &str) -> Option<&'static [&'static str]> {
    SUPPORTED
        .iter()
        .find(|(m, _)| *m == message)
        .map(|(_, f)| *f)
}

/// Every field or extension set in `msg` that ferry does not implement.
pub fn unsupported(msg: &DynamicMessage) -> Vec<ConfigError> {
    let mut out = Vec::new();
    walk(msg, "", &mut out);
    out
}

fn join(path: &str, seg: &str) -> String {
    if path.is_empty() {
        seg.to_string()
    } else if seg.starts_with('[') {
        format!("{path}{seg}")
    } else {
        format!("{path}.{seg}")
    }
}

/// The extension name in a `{name, typed_config}` message, if it has one.
fn extension_name(msg: &DynamicMessage) -> Option<String> {
    let name = msg.get_field_by_name("name")?;
    let s = name.as_str()?.to_string();
    (!s.is_empty() && msg.descriptor().get_field_by_name("typed_config").is_some()).then_some(s)
}

fn walk(msg: &DynamicMessage, path: &str, out: &mut Vec<ConfigError>) {
    let desc = msg.descriptor();
    let full = desc.full_name();
    if full.starts_with("google.protobuf.") {
        if full == "google.protobuf.Any" {
            walk_any(msg, path, None, out);
        }
        return;
    }
    // A message its converter declares: the converter refuses what it does not accept.
    let declared = super::accepted().get(full);
    let allowed = match declared {
        Some(fields) => fields.as_slice(),
        None => supported_fields(full).unwrap_or(&[]),
    };
    for (field, value) in msg.fields() {
        let fpath = join(path, field.name());
        if !allowed.contains(&field.name()) {
            if declared.is_some() {
                continue;
            }
            let what = match value {
                Value::Message(m) => extension_name(m).map(|n| format!("{n} is not supported")),
                _ => None,
            };
            out.push(ConfigError {
                path: fpath,
                message: what.unwrap_or_else(|| "field is not supported".to_string()),
            });
            continue;
        }
        // A `{name, typed_config}` element: judge the extension by its config type.
        if field.name() == "typed_config" {
            if let Value::Message(any) = value {
                let name = extension_name(msg);
                walk_any(any, path, name.as_deref(), out);
            }
            continue;
        }
        walk_value(value, &fpath, out);
    }
}

fn walk_value(value: &Value, path: &str, out: &mut Vec<ConfigError>) {
    match value {
        Value::Message(m) => walk(m, path, out),
        Value::List(items) => {
            for (i, v) in items.iter().enumerate() {
                walk_value(v, &format!("{path}[{i}]"), out);
            }
        }
        Value::Map(entries) => {
            for (k, v) in entries {
                let key = match k {
                    MapKey::String(s) => s.clone(),
                    other => format!("{other:?}"),
                };
                // typed_extension_protocol_options: the key names the extension.
                if let Value::Message(m) = v {
                    if m.descriptor().full_name() == "google.protobuf.Any" {
                        walk_any(m, &format!("{path}[{key}]"), Some(&key), out);
                        continue;
                    }
                }
                walk_value(v, &format!("{path}[{key}]"), out);
            }
        }
        _ => {}
    }
}

/// An `Any`: supported only if its type is; `owner_path` is where an error is reported
/// (the element that names the extension), `name` the extension's name.
fn walk_any(
    any: &DynamicMessage,
    owner_path: &str,
    name: Option<&str>,
    out: &mut Vec<ConfigError>,
) {
    let url = any
        .get_field_by_name("type_url")
        .and_then(|v| v.as_str().map(str::to_string))
        .unwrap_or_default();
    let ty = url.rsplit('/').next().unwrap_or_default().to_string();
    if !supported_type(&ty) {
        let what = name.map(str::to_string).unwrap_or_else(|| ty.clone());
        out.push(ConfigError {
            path: owner_path.to_string(),
            message: format!("{what} is not supported"),
        });
        return;
    }
    let Some(desc) = pool().get_message_by_name(&ty) else {
        return;
    };
    let bytes = any
        .get_field_by_name("value")
        .and_then(|v| v.as_bytes().cloned())
        .unwrap_or_default();
    match DynamicMessage::decode(desc, bytes) {
        Ok(inner) => walk(&inner, &join(owner_path, "typed_config"), out),
        Err(e) => out.push(ConfigError {
            path: join(owner_path, "typed_config"),
            message: format!("cannot decode {ty}: {e}"),
        }),
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::expect_used)]
    use super::*;

    /// Every listed message and field exists in Envoy's API (no typos in the table).
    #[test]
    fn table_names_real_fields() {
        for (message, fields) in SUPPORTED {
            let desc = pool()
                .get_message_by_name(message)
                .unwrap_or_else(|| panic!("no message {message}"));
            for f in *fields {
                assert!(
                    desc.get_field_by_name(f).is_some(),
                    "{message} has no field {f}"
                );
            }
        }
    }
}
