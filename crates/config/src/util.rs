//! Small conversions shared by the model: durations, wrappers, header options.

use crate::Ctx;
use ferry_envoy_api::pb::envoy::config::core::v3 as core;
use ferry_envoy_api::pb::envoy::r#type::v3 as types;
use ferry_envoy_api::pb::google::protobuf as pbwkt;
use std::time::Duration;

/// A protobuf Duration as a std Duration; negative values are errors.
pub fn duration(d: &Option<pbwkt::Duration>, field: &str, ctx: &mut Ctx) -> Option<Duration> {
    let d = d.as_ref()?;
    if d.seconds < 0 || d.nanos < 0 {
        ctx.error_at(field, "must not be negative");
        return None;
    }
    Some(Duration::new(d.seconds as u64, d.nanos as u32))
}

/// Envoy's convention for timeouts: unset = `default`, zero = disabled (None).
pub fn timeout(
    d: &Option<pbwkt::Duration>,
    default: Option<Duration>,
    field: &str,
    ctx: &mut Ctx,
) -> Option<Duration> {
    match d {
        None => default,
        Some(_) => duration(d, field, ctx).filter(|d| !d.is_zero()),
    }
}

/// How a header is added, as Envoy's `HeaderValueOption.append_action`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum AppendAction {
    /// Append a value (a new header line) or add the header.
    AppendIfExistsOrAdd,
    /// Add only if absent.
    AddIfAbsent,
    /// Replace existing values or add.
    OverwriteIfExistsOrAdd,
    /// Replace only if present.
    OverwriteIfExists,
}

/// A header to add, with a value that may contain `%VARIABLE%` substitutions.
#[derive(Debug, Clone)]
pub struct HeaderToAdd {
    /// Lower-cased header name.
    pub name: http::HeaderName,
    /// The value template.
    pub value: crate::format::Template,
    /// `append_action` (or the deprecated `append`).
    pub action: AppendAction,
    /// `keep_empty_value`: add even if the value formats to "".
    pub keep_empty_value: bool,
}

/// Header mutations of one level (route config, virtual host, route, weighted cluster).
#[derive(Debug, Clone, Default)]
pub struct HeaderMutations {
    /// `request_headers_to_add`.
    pub request_add: Vec<HeaderToAdd>,
    /// `request_headers_to_remove`.
    pub request_remove: Vec<http::HeaderName>,
    /// `response_headers_to_add`.
    pub response_add: Vec<HeaderToAdd>,
    /// `response_headers_to_remove`.
    pub response_remove: Vec<http::HeaderName>,
}

impl HeaderMutations {
    /// Whether there is nothing to do.
    pub fn is_empty(&self) -> bool {
        self.request_add.is_empty()
            && self.request_remove.is_empty()
            && self.response_add.is_empty()
            && self.response_remove.is_empty()
    }

    /// Builds the four lists, with errors at their field names.
    pub fn from_proto(
        request_add: &[core::HeaderValueOption],
        request_remove: &[String],
        response_add: &[core::HeaderValueOption],
        response_remove: &[String],
        ctx: &mut Ctx,
    ) -> HeaderMutations {
        HeaderMutations {
            request_add: ctx.at("request_headers_to_add", |c| headers_to_add(request_add, c)),
            request_remove: ctx.at("request_headers_to_remove", |c| {
                header_names(request_remove, c)
            }),
            response_add: ctx.at("response_headers_to_add", |c| {
                headers_to_add(response_add, c)
            }),
            response_remove: ctx.at("response_headers_to_remove", |c| {
                header_names(response_remove, c)
            }),
        }
    }
}

/// Envoy refuses header mutations of pseudo-headers and `host`.
fn modifiable(name: &str) -> bool {
    !name.starts_with(':') && !name.eq_ignore_ascii_case("host")
}

fn header_names(names: &[String], ctx: &mut Ctx) -> Vec<http::HeaderName> {
    let mut out = Vec::new();
    for (i, n) in names.iter().enumerate() {
        if !modifiable(n) {
            ctx.at(format!("[{i}]"), |c| {
                c.error(format!("{n:?} cannot be removed"))
            });
            continue;
        }
        match http::HeaderName::from_bytes(n.to_ascii_lowercase().as_bytes()) {
            Ok(h) => out.push(h),
            Err(_) => ctx.at(format!("[{i}]"), |c| {
                c.error(format!("invalid header name {n:?}"))
            }),
        }
    }
    out
}

fn headers_to_add(opts: &[core::HeaderValueOption], ctx: &mut Ctx) -> Vec<HeaderToAdd> {
    let mut out = Vec::new();
    for (i, o) in opts.iter().enumerate() {
        ctx.at(format!("[{i}]"), |c| {
            crate::fields!(c, o => core::HeaderValueOption {
                header, append, append_action, keep_empty_value,
            });
            let Some(h) = &o.header else {
                c.error_at("header", "is required");
                return;
            };
            // Nothing is refused: the declaration reports nothing.
            c.at("header", |_c| {
                crate::fields!(_c, h => core::HeaderValue {
                    key, value, raw_value,
                });
            });
            if !modifiable(&h.key) {
                c.error_at("header.key", format!("{:?} cannot be modified", h.key));
                return;
            }
            let name = match http::HeaderName::from_bytes(h.key.to_ascii_lowercase().as_bytes()) {
                Ok(n) => n,
                Err(_) => {
                    c.error_at("header.key", format!("invalid header name {:?}", h.key));
                    return;
                }
            };
            let raw;
            let value_text = if h.raw_value.is_empty() {
                h.value.as_str()
            } else {
                raw = String::from_utf8_lossy(&h.raw_value).into_owned();
                raw.as_str()
            };
            let value = c.at("header.value", |c| {
                crate::format::Template::parse(value_text, c)
            });
            let action = match (o.append, o.append_action) {
                (Some(_), a) if a != 0 => {
                    c.error("only one of append and append_action may be set");
                    AppendAction::AppendIfExistsOrAdd
                }
                (Some(b), _) => {
                    if b.value {
                        AppendAction::AppendIfExistsOrAdd
                    } else {
                        AppendAction::OverwriteIfExistsOrAdd
                    }
                }
                (None, 0) => AppendAction::AppendIfExistsOrAdd,
                (None, 1) => AppendAction::AddIfAbsent,
                (None, 2) => AppendAction::OverwriteIfExistsOrAdd,
                (None, 3) => AppendAction::OverwriteIfExists,
                (None, other) => {
                    c.error_at("append_action", format!("unknown value {other}"));
                    AppendAction::AppendIfExistsOrAdd
                }
            };
            out.push(HeaderToAdd {
                name,
                value,
                action,
                keep_empty_value: o.keep_empty_value,
            });
        });
    }
    out
}

/// Declares a `DataSource` (`ctx` at it); the caller reads the accepted members.
pub fn data_source_fields(d: &core::DataSource, ctx: &mut Ctx) {
    crate::fields!(ctx, d => core::DataSource {
        specifier: ["filename", "inline_bytes", "inline_string"],
    } refused {
        watched_directory,
    });
}

/// Declares an `Int64Range` (`ctx` at it); the caller reads `start` and `end` (all
/// accepted: nothing is reported).
pub fn int64_range_fields(r: &types::Int64Range, ctx: &mut Ctx) {
    crate::fields!(ctx, r => types::Int64Range {
        start, end,
    });
}

/// Declares a `RuntimeUInt32` (`ctx` at it; all accepted: nothing is reported). The
/// caller reads `default_value`; ferry has no runtime, `runtime_key` is never looked up.
pub fn runtime_uint32_fields(v: &core::RuntimeUInt32, ctx: &mut Ctx) {
    crate::fields!(ctx, v => core::RuntimeUInt32 {
        default_value, runtime_key,
    });
}

/// Declares a `TypedExtensionConfig` (`ctx` at it; all accepted: nothing is reported).
/// The caller reads `name` and `typed_config` (an extension ferry does not implement is
/// named by the support walk).
pub fn typed_extension_config_fields(e: &core::TypedExtensionConfig, ctx: &mut Ctx) {
    crate::fields!(ctx, e => core::TypedExtensionConfig {
        name, typed_config,
    });
}

/// [`protocol_options_fields`] for a cluster's (upstream) options: the fields ferry
/// implements on connection managers only are refused.
pub fn upstream_protocol_options_fields(
    common: Option<&core::HttpProtocolOptions>,
    http1: Option<&core::Http1ProtocolOptions>,
    http2: Option<&core::Http2ProtocolOptions>,
    ctx: &mut Ctx,
) {
    protocol_options_fields(common, http1, http2, ctx);
    let downstream_only = "is not supported on a cluster (only on a connection manager)";
    if let Some(o) = common {
        ctx.at("common_http_protocol_options", |ctx| {
            for (field, set) in [
                (
                    "max_connection_duration",
                    o.max_connection_duration.is_some(),
                ),
                ("max_headers_count", o.max_headers_count.is_some()),
            ] {
                if set {
                    ctx.error_at(field, downstream_only);
                }
            }
        });
    }
    if let Some(o) = http2 {
        ctx.at("http2_protocol_options", |ctx| {
            for (field, set) in [
                ("max_concurrent_streams", o.max_concurrent_streams.is_some()),
                (
                    "initial_stream_window_size",
                    o.initial_stream_window_size.is_some(),
                ),
                (
                    "initial_connection_window_size",
                    o.initial_connection_window_size.is_some(),
                ),
            ] {
                if set {
                    ctx.error_at(field, downstream_only);
                }
            }
        });
    }
}

/// Declares the HTTP protocol options a cluster, its upstream options and a connection
/// manager share, each at its usual field name below `ctx`:
/// `common_http_protocol_options`, `http_protocol_options` (HTTP/1: ferry speaks it with
/// Envoy's defaults, none of its fields is supported) and `http2_protocol_options`. The
/// callers read the accepted fields.
pub fn protocol_options_fields(
    common: Option<&core::HttpProtocolOptions>,
    http1: Option<&core::Http1ProtocolOptions>,
    http2: Option<&core::Http2ProtocolOptions>,
    ctx: &mut Ctx,
) {
    if let Some(o) = common {
        ctx.at("common_http_protocol_options", |ctx| {
            crate::fields!(ctx, o => core::HttpProtocolOptions {
                idle_timeout, max_connection_duration, max_headers_count,
                max_requests_per_connection,
            } refused {
                max_stream_duration, headers_with_underscores_action, max_response_headers_kb,
                max_connection_duration_jitter,
            });
        });
    }
    if let Some(o) = http1 {
        ctx.at("http_protocol_options", |ctx| {
            crate::fields!(ctx, o => core::Http1ProtocolOptions {
            } refused {
                allow_absolute_url, accept_http_10, default_host_for_http_10, header_key_format,
                enable_trailers, allow_chunked_length,
                override_stream_error_on_invalid_http_message, send_fully_qualified_url,
                use_balsa_parser, allow_custom_methods, ignore_http_11_upgrade,
            });
        });
    }
    if let Some(o) = http2 {
        ctx.at("http2_protocol_options", |ctx| {
            crate::fields!(ctx, o => core::Http2ProtocolOptions {
                max_concurrent_streams, initial_stream_window_size, initial_connection_window_size,
            } refused {
                hpack_table_size, allow_connect, allow_metadata, max_outbound_frames,
                max_outbound_control_frames, max_consecutive_inbound_frames_with_empty_payload,
                max_inbound_priority_frames_per_stream,
                max_inbound_window_update_frames_per_data_frame_sent,
                stream_error_on_invalid_http_messaging, custom_settings_parameters,
                override_stream_error_on_invalid_http_message, connection_keepalive,
                use_oghttp2_codec, max_metadata_size, enable_huffman_encoding,
                max_header_field_size_kb, disallow_obs_text, stream_reset_burst, stream_reset_rate,
            });
        });
    }
}

/// The socket address of an `Address`, resolved for listening or for a STATIC host
/// (TCP: ferry has no UDP listeners or clusters).
pub fn socket_addr(addr: &Option<core::Address>, ctx: &mut Ctx) -> Option<std::net::SocketAddr> {
    ip_port(addr, Transport::Tcp, ctx)
}

/// The socket address a datagram goes to (a statsd sink's `address`): the address's
/// `protocol` may say UDP or be left at its default, TCP; either way datagrams are
/// sent, as Envoy sends them.
pub fn udp_socket_addr(
    addr: &Option<core::Address>,
    ctx: &mut Ctx,
) -> Option<std::net::SocketAddr> {
    ip_port(addr, Transport::Udp, ctx)
}

/// What an address is used for, which decides the `socket_address.protocol`s it takes.
#[derive(Clone, Copy, PartialEq, Eq)]
enum Transport {
    Tcp,
    Udp,
}

fn ip_port(
    addr: &Option<core::Address>,
    transport: Transport,
    ctx: &mut Ctx,
) -> Option<std::net::SocketAddr> {
    let (host, port) = host_port_for(addr, transport, ctx)?;
    Some(std::net::SocketAddr::new(ip(&host, ctx)?, port))
}

/// The (host, port) of a `socket_address` (TCP).
pub fn host_port(addr: &Option<core::Address>, ctx: &mut Ctx) -> Option<(String, u16)> {
    host_port_for(addr, Transport::Tcp, ctx)
}

fn host_port_for(
    addr: &Option<core::Address>,
    transport: Transport,
    ctx: &mut Ctx,
) -> Option<(String, u16)> {
    socket_address(addr, transport, ctx).map(|(host, port, _)| (host, port))
}

/// The address and port of an `Address`'s `socket_address`, and its `ipv4_compat`.
fn socket_address(
    addr: &Option<core::Address>,
    transport: Transport,
    ctx: &mut Ctx,
) -> Option<(String, u16, bool)> {
    use core::address::Address as A;
    use core::socket_address::PortSpecifier;
    use core::socket_address::Protocol;
    let Some(addr) = addr else {
        ctx.error("is required");
        return None;
    };
    crate::fields!(ctx, addr => core::Address {
        address: ["socket_address"],
    });
    let sa = match &addr.address {
        Some(A::SocketAddress(sa)) => sa,
        Some(_) => return None,
        None => {
            ctx.error("socket_address is required");
            return None;
        }
    };
    ctx.at("socket_address", |ctx| {
        crate::fields!(ctx, sa => core::SocketAddress {
            protocol, address, port_specifier: ["port_value"], ipv4_compat,
        } refused {
            resolver_name, network_namespace_filepath,
        });
        let udp = sa.protocol == Protocol::Udp as i32;
        if sa.protocol != Protocol::Tcp as i32 && !(udp && transport == Transport::Udp) {
            let only = match transport {
                Transport::Tcp => "only TCP is supported",
                Transport::Udp => "only UDP (or the default, TCP) is supported",
            };
            ctx.error_at("protocol", only);
        }
        let port = match sa.port_specifier {
            Some(PortSpecifier::PortValue(p)) if p <= 65535 => p as u16,
            Some(PortSpecifier::PortValue(p)) => {
                ctx.error_at("port_value", format!("{p} is not a port"));
                return None;
            }
            Some(PortSpecifier::NamedPort(_)) => return None,
            None => 0,
        };
        Some((sa.address.clone(), port, sa.ipv4_compat))
    })
}

/// A listening address (a listener's or the admin's): the socket address and its
/// `ipv4_compat` (an IPv6 wildcard also takes IPv4 connections only when it is set).
pub fn listen_addr(
    addr: &Option<core::Address>,
    ctx: &mut Ctx,
) -> Option<(std::net::SocketAddr, bool)> {
    let (host, port, ipv4_compat) = socket_address(addr, Transport::Tcp, ctx)?;
    let ip = ip(&host, ctx)?;
    Some((std::net::SocketAddr::new(ip, port), ipv4_compat))
}

fn ip(host: &str, ctx: &mut Ctx) -> Option<std::net::IpAddr> {
    match host.parse::<std::net::IpAddr>() {
        Ok(ip) => Some(ip),
        Err(_) => {
            ctx.error_at(
                "socket_address.address",
                format!("{host:?} is not an IP address"),
            );
            None
        }
    }
}

/// Declares a `metadata` field's `Metadata` (accepted, not used: ferry has no filter that
/// reads metadata); the one place for every message that holds one.
pub(crate) fn metadata(m: &Option<core::Metadata>, ctx: &mut Ctx) {
    if let Some(m) = m {
        ctx.at("metadata", |ctx| {
            crate::fields!(ctx, m => core::Metadata {
                filter_metadata,
            } refused {
                typed_filter_metadata,
            });
        });
    }
}
