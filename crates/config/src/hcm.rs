//! The HTTP connection manager (`envoy.filters.network.http_connection_manager`).

use crate::access_log::AccessLog;
use crate::route::RouteConfig;
use crate::util::timeout;
use crate::Ctx;
use ferry_envoy_api::pb::envoy::extensions::filters::network::http_connection_manager::v3 as pb;
use std::sync::Arc;
use std::time::Duration;

/// Envoy's default `stream_idle_timeout`.
pub const DEFAULT_STREAM_IDLE_TIMEOUT: Duration = Duration::from_secs(300);
/// Envoy's default downstream connection `idle_timeout`.
pub const DEFAULT_IDLE_TIMEOUT: Duration = Duration::from_secs(3600);
/// Envoy's default `max_request_headers_kb`.
pub const DEFAULT_MAX_REQUEST_HEADERS_KB: u32 = 60;
/// Envoy's default `max_headers_count`.
pub const DEFAULT_MAX_HEADERS_COUNT: u32 = 100;
/// Envoy's default `server_name`.
pub const DEFAULT_SERVER_NAME: &str = "envoy";

/// `codec_type`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum CodecType {
    /// HTTP/1.1 or HTTP/2 prior knowledge, detected from the first bytes.
    Auto,
    /// HTTP/1.1 only.
    Http1,
    /// HTTP/2 only.
    Http2,
}

/// `server_header_transformation`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ServerHeader {
    /// `OVERWRITE`: always `server_name`.
    Overwrite,
    /// `APPEND_IF_ABSENT`: `server_name` unless the upstream sent one.
    AppendIfAbsent,
    /// `PASS_THROUGH`: never set.
    PassThrough,
}

/// A validated HTTP connection manager.
#[derive(Debug, Clone)]
pub struct HttpConnectionManager {
    /// `stat_prefix`.
    pub stat_prefix: String,
    /// `codec_type`.
    pub codec_type: CodecType,
    /// `route_config` (inline); with `rds`, an empty one named for it until RDS sends it.
    pub route_config: Arc<RouteConfig>,
    /// `rds`: the route configuration comes from a control plane.
    pub rds: Option<crate::dynamic::Rds>,
    /// `server_name` (default "envoy").
    pub server_name: http::HeaderValue,
    /// `server_header_transformation`.
    pub server_header: ServerHeader,
    /// `use_remote_address`.
    pub use_remote_address: bool,
    /// `xff_num_trusted_hops`.
    pub xff_num_trusted_hops: u32,
    /// `skip_xff_append`.
    pub skip_xff_append: bool,
    /// `via`: appended to `via` on requests and responses when set.
    pub via: Option<http::HeaderValue>,
    /// `generate_request_id` (default true).
    pub generate_request_id: bool,
    /// The terminal filter of `http_filters`: the router, with its config (read by the
    /// router, `proxy/src/http/router/config.rs`).
    pub router: crate::filters::Filter,
    /// `preserve_external_request_id`.
    pub preserve_external_request_id: bool,
    /// `always_set_request_id_in_response`.
    pub always_set_request_id_in_response: bool,
    /// `max_request_headers_kb` (default 60).
    pub max_request_headers_kb: u32,
    /// `common_http_protocol_options.max_headers_count` (default 100).
    pub max_headers_count: u32,
    /// `stream_idle_timeout` (default 5 min; None = disabled).
    pub stream_idle_timeout: Option<Duration>,
    /// `request_timeout` (default disabled).
    pub request_timeout: Option<Duration>,
    /// `common_http_protocol_options.idle_timeout` (default 1 h; None = disabled).
    pub idle_timeout: Option<Duration>,
    /// `common_http_protocol_options.max_connection_duration` (default none).
    pub max_connection_duration: Option<Duration>,
    /// `upgrade_configs` enabled upgrade types, lower-cased (e.g. `websocket`).
    pub upgrades: Vec<String>,
    /// `access_log`.
    pub access_logs: Vec<AccessLog>,
    /// `http2_protocol_options.max_concurrent_streams`.
    pub http2_max_concurrent_streams: Option<u32>,
    /// `http2_protocol_options.initial_stream_window_size`.
    pub http2_initial_stream_window_size: Option<u32>,
    /// `http2_protocol_options.initial_connection_window_size`.
    pub http2_initial_connection_window_size: Option<u32>,
    /// `http_filters` before the router, in order.
    pub http_filters: Vec<crate::filters::Filter>,
    /// `internal_address_config.cidr_ranges`: a request from one of these is internal
    /// (its `x-envoy-*` control headers are honoured); none: every request is external.
    pub internal_cidrs: Vec<(std::net::IpAddr, u8)>,
    /// `tracing`: sampling decisions, and spans when it names a `provider`.
    pub tracing: Option<Arc<crate::trace::Tracing>>,
}

impl HttpConnectionManager {
    /// Whether `ip` is an internal address (`internal_address_config`).
    pub fn is_internal(&self, ip: std::net::IpAddr) -> bool {
        self.internal_cidrs
            .iter()
            .any(|(prefix, len)| in_cidr(ip, *prefix, *len))
    }
}

fn in_cidr(ip: std::net::IpAddr, prefix: std::net::IpAddr, len: u8) -> bool {
    use std::net::IpAddr;
    match (ip, prefix) {
        (IpAddr::V4(a), IpAddr::V4(p)) => {
            let mask = u32::MAX
                .checked_shl(32 - u32::from(len.min(32)))
                .unwrap_or(0);
            u32::from(a) & mask == u32::from(p) & mask
        }
        (IpAddr::V6(a), IpAddr::V6(p)) => {
            let mask = u128::MAX
                .checked_shl(128 - u32::from(len.min(128)))
                .unwrap_or(0);
            u128::from(a) & mask == u128::from(p) & mask
        }
        _ => false,
    }
}

/// Converts an HCM.
pub fn from_proto(h: &pb::HttpConnectionManager, ctx: &mut Ctx) -> Option<HttpConnectionManager> {
    use pb::http_connection_manager::RouteSpecifier;
    crate::fields!(ctx, h => pb::HttpConnectionManager as "envoy.filters.network.http_connection_manager" {
        codec_type, stat_prefix, route_specifier: ["route_config", "rds"], http_filters,
        common_http_protocol_options, http_protocol_options, http2_protocol_options,
        server_name, server_header_transformation, max_request_headers_kb,
        stream_idle_timeout, request_timeout, access_log, use_remote_address,
        xff_num_trusted_hops, skip_xff_append, via, generate_request_id,
        preserve_external_request_id, always_set_request_id_in_response, upgrade_configs,
        internal_address_config, tracing,
    } refused {
        add_user_agent, drain_timeout, forward_client_cert_details,
        set_current_client_cert_details, proxy_100_continue,
        represent_ipv4_remote_address_as_ipv4_mapped_ipv6, delayed_close_timeout,
        normalize_path, merge_slashes, request_id_extension, local_reply_config,
        strip_matching_host_port, stream_error_on_invalid_http_message,
        request_headers_timeout, path_normalization_options, http3_protocol_options,
        path_with_escaped_slashes_action, original_ip_detection_extensions,
        strip_trailing_host_dot, scheme_header_transformation, proxy_status_config,
        append_x_forwarded_port, early_header_mutation_extensions,
        add_proxy_protocol_connection_state, access_log_flush_interval,
        flush_access_log_on_new_request, access_log_options, append_local_overload,
        http1_safe_max_connection_duration, stream_flush_timeout, forward_client_cert_matcher,
        forward_proto_config, drain_timeout_jitter,
    } refused_oneofs {
        strip_port_mode,
    } refused_extensions {
        typed_header_validation_config,
    });
    if h.stat_prefix.is_empty() {
        ctx.error_at("stat_prefix", "is required");
    }
    let codec_type = match h.codec_type {
        0 => CodecType::Auto,
        1 => CodecType::Http1,
        2 => CodecType::Http2,
        _ => {
            ctx.error_at("codec_type", "HTTP3 is not supported");
            CodecType::Auto
        }
    };
    // Without a route config the rest is still converted (its errors reported).
    crate::util::protocol_options_fields(
        h.common_http_protocol_options.as_ref(),
        h.http_protocol_options.as_ref(),
        h.http2_protocol_options.as_ref(),
        ctx,
    );
    let mut rds = None;
    let route_config = match &h.route_specifier {
        Some(RouteSpecifier::RouteConfig(rc)) => {
            Some(ctx.at("route_config", |c| crate::route::from_proto(rc, c)))
        }
        Some(RouteSpecifier::Rds(r)) => {
            rds = ctx.at("rds", |c| crate::dynamic::rds(r, c));
            // No route until RDS sends one (the listener warms meanwhile).
            let empty = crate::route::from_proto(&Default::default(), ctx);
            rds.as_ref().map(|r| crate::route::RouteConfig {
                name: r.name.clone(),
                ..empty
            })
        }
        // Refused by `fields!`.
        Some(RouteSpecifier::ScopedRoutes(_)) => None,
        None => {
            ctx.error("route_config or rds is required");
            None
        }
    };
    // http_filters: the router must be present and last (Envoy's rule).
    if h.http_filters.is_empty() {
        ctx.error_at(
            "http_filters",
            "the router filter (envoy.filters.http.router) is required",
        );
    }
    let mut http_filters = Vec::new();
    let mut router = None;
    for (i, f) in h.http_filters.iter().enumerate() {
        let last = i + 1 == h.http_filters.len();
        ctx.at(format!("http_filters[{i}]"), |ctx| {
            crate::fields!(ctx, f => pb::HttpFilter {
                name, config_type: ["typed_config"],
            } refused {
                is_optional, disabled,
            });
            // As Envoy: no filter is found by its name alone.
            let Some(pb::http_filter::ConfigType::TypedConfig(any)) = &f.config_type else {
                ctx.error_at("typed_config", "is required");
                return;
            };
            let Some(filter) = crate::filters::http_filter(&f.name, any, ctx) else {
                return;
            };
            let terminal = ctx
                .extensions
                .http_filter(filter.config_type)
                .is_some_and(|f| f.terminal());
            match (last, terminal) {
                (true, true) => router = Some(filter),
                (false, false) => http_filters.push(filter),
                (true, false) => {
                    ctx.error("the last filter must be the router (envoy.filters.http.router)")
                }
                (false, true) => ctx.error("the router must be the last filter"),
            }
        });
    }
    let server_name = if h.server_name.is_empty() {
        http::HeaderValue::from_static(DEFAULT_SERVER_NAME)
    } else {
        match http::HeaderValue::from_str(&h.server_name) {
            Ok(v) => v,
            Err(_) => {
                ctx.error_at("server_name", "is not a valid header value");
                http::HeaderValue::from_static(DEFAULT_SERVER_NAME)
            }
        }
    };
    let server_header = match h.server_header_transformation {
        0 => ServerHeader::Overwrite,
        1 => ServerHeader::AppendIfAbsent,
        2 => ServerHeader::PassThrough,
        other => {
            ctx.error_at(
                "server_header_transformation",
                format!("unknown value {other}"),
            );
            ServerHeader::Overwrite
        }
    };
    let via = if h.via.is_empty() {
        None
    } else {
        match http::HeaderValue::from_str(&h.via) {
            Ok(v) => Some(v),
            Err(_) => {
                ctx.error_at("via", "is not a valid header value");
                None
            }
        }
    };
    let common = h.common_http_protocol_options.unwrap_or_default();
    let max_request_headers_kb = h
        .max_request_headers_kb
        .map(|v| v.value)
        .unwrap_or(DEFAULT_MAX_REQUEST_HEADERS_KB);
    if !(1..=8192).contains(&max_request_headers_kb) {
        ctx.error_at("max_request_headers_kb", "must be in [1, 8192]");
    }
    let max_headers_count = common
        .max_headers_count
        .map(|v| v.value)
        .unwrap_or(DEFAULT_MAX_HEADERS_COUNT);
    if max_headers_count < 1 {
        ctx.error_at(
            "common_http_protocol_options.max_headers_count",
            "must be at least 1",
        );
    }
    let (idle_timeout, max_connection_duration) = ctx.at("common_http_protocol_options", |c| {
        if common.max_requests_per_connection.is_some() {
            c.error_at(
                "max_requests_per_connection",
                "is not supported on downstream connections",
            );
        }
        (
            timeout(
                &common.idle_timeout,
                Some(DEFAULT_IDLE_TIMEOUT),
                "idle_timeout",
                c,
            ),
            timeout(
                &common.max_connection_duration,
                None,
                "max_connection_duration",
                c,
            ),
        )
    });
    let mut upgrades = Vec::new();
    for (i, u) in h.upgrade_configs.iter().enumerate() {
        ctx.at(format!("upgrade_configs[{i}]"), |ctx| {
            crate::fields!(ctx, u => pb::http_connection_manager::UpgradeConfig {
                upgrade_type, enabled,
            } refused {
                filters,
            });
            if u.upgrade_type.is_empty() {
                ctx.error_at("upgrade_type", "is required");
            }
        });
        if u.enabled.map(|b| b.value).unwrap_or(true) {
            upgrades.push(u.upgrade_type.to_ascii_lowercase());
        }
    }
    let access_logs = ctx.at("access_log", |c| {
        crate::access_log::from_proto(&h.access_log, c)
    });
    let tracing = h
        .tracing
        .as_ref()
        .map(|t| Arc::new(ctx.at("tracing", |c| crate::trace::from_proto(t, c))));
    let internal_cidrs = h
        .internal_address_config
        .as_ref()
        .map(|c| ctx.at("internal_address_config", |ctx| internal_cidrs(c, ctx)))
        .unwrap_or_default();
    let route_config = route_config?;
    Some(HttpConnectionManager {
        tracing,
        stat_prefix: h.stat_prefix.clone(),
        codec_type,
        route_config: Arc::new(route_config),
        rds,
        server_name,
        server_header,
        use_remote_address: h.use_remote_address.map(|b| b.value).unwrap_or(false),
        xff_num_trusted_hops: h.xff_num_trusted_hops,
        skip_xff_append: h.skip_xff_append,
        via,
        generate_request_id: h.generate_request_id.map(|b| b.value).unwrap_or(true),
        router: router?,
        preserve_external_request_id: h.preserve_external_request_id,
        always_set_request_id_in_response: h.always_set_request_id_in_response,
        max_request_headers_kb,
        max_headers_count,
        stream_idle_timeout: timeout(
            &h.stream_idle_timeout,
            Some(DEFAULT_STREAM_IDLE_TIMEOUT),
            "stream_idle_timeout",
            ctx,
        ),
        request_timeout: timeout(&h.request_timeout, None, "request_timeout", ctx),
        idle_timeout,
        max_connection_duration,
        upgrades,
        access_logs,
        http2_max_concurrent_streams: h
            .http2_protocol_options
            .as_ref()
            .and_then(|o| o.max_concurrent_streams.map(|v| v.value)),
        http2_initial_stream_window_size: h
            .http2_protocol_options
            .as_ref()
            .and_then(|o| o.initial_stream_window_size.map(|v| v.value)),
        http2_initial_connection_window_size: h
            .http2_protocol_options
            .as_ref()
            .and_then(|o| o.initial_connection_window_size.map(|v| v.value)),
        http_filters,
        internal_cidrs,
    })
}

/// `internal_address_config`'s ranges (`ctx` is at it).
fn internal_cidrs(
    c: &pb::http_connection_manager::InternalAddressConfig,
    ctx: &mut Ctx,
) -> Vec<(std::net::IpAddr, u8)> {
    crate::fields!(ctx, c => pb::http_connection_manager::InternalAddressConfig {
        cidr_ranges,
    } refused {
        unix_sockets,
    });
    let mut out = Vec::new();
    for (i, r) in c.cidr_ranges.iter().enumerate() {
        ctx.at(format!("cidr_ranges[{i}]"), |ctx| {
            crate::fields!(ctx, r => ferry_envoy_api::pb::envoy::config::core::v3::CidrRange {
                address_prefix, prefix_len,
            });
            let len = r.prefix_len.map(|v| v.value).unwrap_or(0);
            match r.address_prefix.parse::<std::net::IpAddr>() {
                Ok(ip) if len <= if ip.is_ipv4() { 32 } else { 128 } => out.push((ip, len as u8)),
                _ => ctx.error("is not a valid address prefix and length"),
            }
        });
    }
    out
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::expect_used)]

    /// As Envoy 1.40 ("Didn't find a registered implementation for 'X' with type URL:
    /// ''"), no HTTP filter is found by its name alone, the router included.
    #[test]
    fn an_http_filter_needs_its_typed_config() {
        let yaml = r#"
static_resources:
  listeners:
  - address: {socket_address: {address: 127.0.0.1, port_value: 10000}}
    filter_chains:
    - filters:
      - name: envoy.filters.network.http_connection_manager
        typed_config:
          "@type": type.googleapis.com/envoy.extensions.filters.network.http_connection_manager.v3.HttpConnectionManager
          stat_prefix: h
          route_config: {}
          http_filters: [{name: envoy.filters.http.fault}, {name: envoy.filters.http.router}]
"#;
        let err = crate::filters::testing::load(yaml, crate::Format::Yaml)
            .unwrap_err()
            .to_string();
        let p =
            "static_resources.listeners[0].filter_chains[0].filters[0].typed_config.http_filters";
        assert_eq!(
            err,
            format!("{p}[0].typed_config: is required\n{p}[1].typed_config: is required")
        );
    }
}
