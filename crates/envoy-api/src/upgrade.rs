//! The v2 → v3 upgrade, run on the JSON tree before decoding.
//!
//! Envoy's v2 API is gone from Envoy itself, but configurations written for it (the
//! founding document's among them) still circulate. What is upgraded, each with a
//! warning naming its path:
//! - legacy extension names (`envoy.http_connection_manager`, `envoy.router`, ...);
//! - v2 type URLs (`envoy.config.filter.network.http_connection_manager.v2.HttpConnectionManager`, ...);
//! - `typed_config: {}` (or a v2 `config:`) without `@type`: the type is inferred from the
//!   filter's name;
//! - enum values in lower case (`strict_dns`, `round_robin`, `auto`);
//! - v2 field spellings: cluster `hosts`, route `host_rewrite`, HCM `idle_timeout`.

use crate::{pool, Warning, TYPE_URL_PREFIX};
use prost_reflect::{Kind, MessageDescriptor};
use serde_json::{Map, Value};

/// Legacy (v2-era) extension names and their v3 names.
const LEGACY_NAMES: &[(&str, &str)] = &[
    (
        "envoy.http_connection_manager",
        "envoy.filters.network.http_connection_manager",
    ),
    ("envoy.tcp_proxy", "envoy.filters.network.tcp_proxy"),
    ("envoy.redis_proxy", "envoy.filters.network.redis_proxy"),
    ("envoy.mongo_proxy", "envoy.filters.network.mongo_proxy"),
    ("envoy.echo", "envoy.filters.network.echo"),
    ("envoy.ratelimit", "envoy.filters.network.ratelimit"),
    ("envoy.router", "envoy.filters.http.router"),
    ("envoy.statsd", "envoy.stat_sinks.statsd"),
    ("envoy.dog_statsd", "envoy.stat_sinks.dog_statsd"),
    ("envoy.cors", "envoy.filters.http.cors"),
    ("envoy.fault", "envoy.filters.http.fault"),
    ("envoy.lua", "envoy.filters.http.lua"),
    ("envoy.buffer", "envoy.filters.http.buffer"),
    ("envoy.gzip", "envoy.filters.http.gzip"),
    ("envoy.health_check", "envoy.filters.http.health_check"),
    ("envoy.grpc_web", "envoy.filters.http.grpc_web"),
    (
        "envoy.grpc_json_transcoder",
        "envoy.filters.http.grpc_json_transcoder",
    ),
    ("envoy.ext_authz", "envoy.filters.http.ext_authz"),
    ("envoy.rate_limit", "envoy.filters.http.ratelimit"),
    ("envoy.file_access_log", "envoy.access_loggers.file"),
    (
        "envoy.listener.tls_inspector",
        "envoy.filters.listener.tls_inspector",
    ),
    (
        "envoy.listener.original_dst",
        "envoy.filters.listener.original_dst",
    ),
    (
        "envoy.listener.http_inspector",
        "envoy.filters.listener.http_inspector",
    ),
];

/// Extension names whose config type can be inferred when `@type` is missing.
const NAME_TO_TYPE: &[(&str, &str)] = &[
    (
        "envoy.filters.network.http_connection_manager",
        "envoy.extensions.filters.network.http_connection_manager.v3.HttpConnectionManager",
    ),
    (
        "envoy.filters.network.tcp_proxy",
        "envoy.extensions.filters.network.tcp_proxy.v3.TcpProxy",
    ),
    (
        "envoy.filters.network.redis_proxy",
        "envoy.extensions.filters.network.redis_proxy.v3.RedisProxy",
    ),
    (
        "envoy.filters.http.router",
        "envoy.extensions.filters.http.router.v3.Router",
    ),
    (
        "envoy.filters.http.cors",
        "envoy.extensions.filters.http.cors.v3.Cors",
    ),
    (
        "envoy.filters.http.fault",
        "envoy.extensions.filters.http.fault.v3.HTTPFault",
    ),
    (
        "envoy.filters.http.lua",
        "envoy.extensions.filters.http.lua.v3.Lua",
    ),
    (
        "envoy.filters.http.buffer",
        "envoy.extensions.filters.http.buffer.v3.Buffer",
    ),
    (
        "envoy.filters.http.health_check",
        "envoy.extensions.filters.http.health_check.v3.HealthCheck",
    ),
    (
        "envoy.filters.http.grpc_web",
        "envoy.extensions.filters.http.grpc_web.v3.GrpcWeb",
    ),
    (
        "envoy.filters.http.ext_authz",
        "envoy.extensions.filters.http.ext_authz.v3.ExtAuthz",
    ),
    (
        "envoy.filters.http.ratelimit",
        "envoy.extensions.filters.http.ratelimit.v3.RateLimit",
    ),
    (
        "envoy.filters.http.local_ratelimit",
        "envoy.extensions.filters.http.local_ratelimit.v3.LocalRateLimit",
    ),
    (
        "envoy.access_loggers.file",
        "envoy.extensions.access_loggers.file.v3.FileAccessLog",
    ),
    (
        "envoy.access_loggers.stdout",
        "envoy.extensions.access_loggers.stream.v3.StdoutAccessLog",
    ),
    (
        "envoy.access_loggers.stderr",
        "envoy.extensions.access_loggers.stream.v3.StderrAccessLog",
    ),
    (
        "envoy.filters.listener.tls_inspector",
        "envoy.extensions.filters.listener.tls_inspector.v3.TlsInspector",
    ),
    (
        "envoy.filters.listener.original_dst",
        "envoy.extensions.filters.listener.original_dst.v3.OriginalDst",
    ),
    (
        "envoy.filters.listener.http_inspector",
        "envoy.extensions.filters.listener.http_inspector.v3.HttpInspector",
    ),
    (
        "envoy.network.dns_resolver.cares",
        "envoy.extensions.network.dns_resolver.cares.v3.CaresDnsResolverConfig",
    ),
    (
        "envoy.retry_host_predicates.previous_hosts",
        "envoy.extensions.retry.host.previous_hosts.v3.PreviousHostsPredicate",
    ),
    (
        "envoy.filters.network.local_ratelimit",
        "envoy.extensions.filters.network.local_ratelimit.v3.LocalRateLimit",
    ),
    (
        "envoy.stat_sinks.statsd",
        "envoy.config.metrics.v3.StatsdSink",
    ),
    (
        "envoy.stat_sinks.dog_statsd",
        "envoy.config.metrics.v3.DogStatsdSink",
    ),
    (
        "envoy.stat_sinks.open_telemetry",
        "envoy.extensions.stat_sinks.open_telemetry.v3.SinkConfig",
    ),
    (
        "envoy.access_loggers.open_telemetry",
        "envoy.extensions.access_loggers.open_telemetry.v3.OpenTelemetryAccessLogConfig",
    ),
    (
        "envoy.health_check.event_sink.file",
        "envoy.extensions.health_check.event_sinks.file.v3.HealthCheckEventFileSink",
    ),
    (
        "envoy.formatter.req_without_query",
        "envoy.extensions.formatter.req_without_query.v3.ReqWithoutQuery",
    ),
    ("envoy.tracers.zipkin", "envoy.config.trace.v3.ZipkinConfig"),
    (
        "envoy.tracers.opentelemetry",
        "envoy.config.trace.v3.OpenTelemetryConfig",
    ),
];

/// Whole v2 messages that moved under another name in v3.
const V2_TYPES: &[(&str, &str)] = &[
    ("envoy.api.v2.Cluster", "envoy.config.cluster.v3.Cluster"),
    ("envoy.api.v2.Listener", "envoy.config.listener.v3.Listener"),
    (
        "envoy.api.v2.RouteConfiguration",
        "envoy.config.route.v3.RouteConfiguration",
    ),
    (
        "envoy.api.v2.ClusterLoadAssignment",
        "envoy.config.endpoint.v3.ClusterLoadAssignment",
    ),
    (
        "envoy.api.v2.auth.DownstreamTlsContext",
        "envoy.extensions.transport_sockets.tls.v3.DownstreamTlsContext",
    ),
    (
        "envoy.api.v2.auth.UpstreamTlsContext",
        "envoy.extensions.transport_sockets.tls.v3.UpstreamTlsContext",
    ),
    (
        "envoy.config.accesslog.v2.FileAccessLog",
        "envoy.extensions.access_loggers.file.v3.FileAccessLog",
    ),
];

/// The v3 name of a legacy extension name, if it is one.
pub fn legacy_filter_name(name: &str) -> Option<&'static str> {
    LEGACY_NAMES
        .iter()
        .find(|(old, _)| *old == name)
        .map(|(_, new)| *new)
}

/// The config message type of an extension, inferred from its (v3) name.
pub fn type_url_for_name(name: &str) -> Option<&'static str> {
    NAME_TO_TYPE
        .iter()
        .find(|(n, _)| *n == name)
        .map(|(_, t)| *t)
}

/// The v3 message name for a v2 type name (`envoy.config.filter.network.X.v2.Y` →
/// `envoy.extensions.filters.network.X.v3.Y`), if it is one.
fn upgrade_type_name(name: &str) -> Option<String> {
    if let Some((_, new)) = V2_TYPES.iter().find(|(old, _)| *old == name) {
        return Some((*new).to_string());
    }
    let rest = name.strip_prefix("envoy.config.filter.")?;
    let (pkg, msg) = rest.rsplit_once('.')?;
    let pkg = pkg
        .strip_suffix(".v2")
        .or_else(|| pkg.strip_suffix(".v2alpha"))
        .or_else(|| pkg.strip_suffix(".v2alpha1"))?;
    let candidate = format!("envoy.extensions.filters.{pkg}.v3.{msg}");
    pool().get_message_by_name(&candidate).map(|_| candidate)
}

fn join(path: &str, key: &str) -> String {
    if path.is_empty() {
        key.to_string()
    } else {
        format!("{path}.{key}")
    }
}

/// Upgrades `value` in place, guided by `desc`; warnings carry the field path.
pub(crate) fn upgrade(
    value: &mut Value,
    desc: &MessageDescriptor,
    path: &str,
    out: &mut Vec<Warning>,
) {
    let Value::Object(obj) = value else { return };
    let warn = |out: &mut Vec<Warning>, p: String, m: String| {
        out.push(Warning {
            path: p,
            message: m,
        })
    };

    if desc.full_name() == "google.protobuf.Any" {
        let Some(Value::String(url)) = obj.get("@type").cloned() else {
            return;
        };
        let name = url.rsplit('/').next().unwrap_or_default().to_string();
        let resolved = if pool().get_message_by_name(&name).is_some() {
            Some(name)
        } else if let Some(new) = upgrade_type_name(&name) {
            warn(
                out,
                join(path, "@type"),
                format!("v2 type {name} upgraded to {new}"),
            );
            obj.insert(
                "@type".into(),
                Value::String(format!("{TYPE_URL_PREFIX}{new}")),
            );
            Some(new)
        } else {
            None
        };
        if let Some(inner) = resolved.and_then(|n| pool().get_message_by_name(&n)) {
            upgrade_fields(obj, &inner, path, out);
        }
        return;
    }
    // Extension configs: `name` + `typed_config` (filters, access logs, sockets...).
    if desc.get_field_by_name("name").is_some() && desc.get_field_by_name("typed_config").is_some()
    {
        if let Some(Value::String(name)) = obj.get("name").cloned() {
            if let Some(new) = legacy_filter_name(&name) {
                warn(
                    out,
                    join(path, "name"),
                    format!("legacy name {name} upgraded to {new}"),
                );
                obj.insert("name".into(), Value::String(new.to_string()));
            }
        }
        let name = obj
            .get("name")
            .and_then(Value::as_str)
            .unwrap_or_default()
            .to_string();
        // v2 `config:` (a Struct) becomes `typed_config` with the inferred type.
        if desc.get_field_by_name("config").is_none() {
            if let Some(cfg) = obj.remove("config") {
                warn(
                    out,
                    join(path, "config"),
                    "v2 `config` moved to `typed_config`".into(),
                );
                obj.insert("typed_config".into(), cfg);
            }
        }
        if let Some(Value::Object(tc)) = obj.get_mut("typed_config") {
            if !tc.contains_key("@type") {
                if let Some(t) = type_url_for_name(&name) {
                    warn(
                        out,
                        join(path, "typed_config"),
                        format!("`@type` missing: inferred {t} from the name {name}"),
                    );
                    tc.insert(
                        "@type".into(),
                        Value::String(format!("{TYPE_URL_PREFIX}{t}")),
                    );
                }
            }
        }
    }
    upgrade_fields(obj, desc, path, out);
}

fn upgrade_fields(
    obj: &mut Map<String, Value>,
    desc: &MessageDescriptor,
    path: &str,
    out: &mut Vec<Warning>,
) {
    rename_v2_fields(obj, desc, path, out);
    let keys: Vec<String> = obj.keys().cloned().collect();
    for key in keys {
        if key == "@type" {
            continue;
        }
        let field = desc
            .get_field_by_name(&key)
            .or_else(|| desc.get_field_by_json_name(&key));
        let Some(field) = field else { continue };
        let fpath = join(path, &key);
        let Some(v) = obj.get_mut(&key) else { continue };
        // Envoy's JSON parser takes a single value where a list is expected (Envoy's
        // own examples write `filters:` so).
        if field.is_list() && !v.is_array() && !v.is_null() {
            out.push(Warning {
                path: fpath.clone(),
                message: "a single value where a list is expected: read as a list of one".into(),
            });
            *v = Value::Array(vec![v.take()]);
        }
        match field.kind() {
            Kind::Enum(e) => {
                let fix = |v: &mut Value, p: String, out: &mut Vec<Warning>| {
                    if let Value::String(s) = v {
                        if e.get_value_by_name(s).is_none() {
                            let up = s.to_ascii_uppercase();
                            if e.get_value_by_name(&up).is_some() {
                                out.push(Warning {
                                    path: p,
                                    message: format!("enum value {s} upgraded to {up}"),
                                });
                                *s = up;
                            }
                        }
                    }
                };
                match v {
                    Value::Array(items) => {
                        for (i, item) in items.iter_mut().enumerate() {
                            fix(item, format!("{fpath}[{i}]"), out);
                        }
                    }
                    other => fix(other, fpath, out),
                }
            }
            Kind::Message(m) if field.is_map() => {
                let value_field = m.map_entry_value_field();
                if let (Kind::Message(vm), Value::Object(entries)) = (value_field.kind(), v) {
                    for (k, item) in entries.iter_mut() {
                        upgrade(item, &vm, &format!("{fpath}[{k}]"), out);
                    }
                }
            }
            Kind::Message(m) => {
                if m.full_name().starts_with("google.protobuf.")
                    && m.full_name() != "google.protobuf.Any"
                {
                    continue;
                }
                match v {
                    Value::Array(items) => {
                        for (i, item) in items.iter_mut().enumerate() {
                            upgrade(item, &m, &format!("{fpath}[{i}]"), out);
                        }
                    }
                    other => upgrade(other, &m, &fpath, out),
                }
            }
            _ => {}
        }
    }
}

/// v2 field spellings that v3 renamed or restructured.
fn rename_v2_fields(
    obj: &mut Map<String, Value>,
    desc: &MessageDescriptor,
    path: &str,
    out: &mut Vec<Warning>,
) {
    let mut moved = |obj: &mut Map<String, Value>, old: &str, new: &str| {
        if let Some(v) = obj.remove(old) {
            out.push(Warning {
                path: join(path, old),
                message: format!("v2 field `{old}` upgraded to `{new}`"),
            });
            obj.insert(new.to_string(), v);
        }
    };
    match desc.full_name() {
        "envoy.config.route.v3.RouteAction" => moved(obj, "host_rewrite", "host_rewrite_literal"),
        "envoy.config.cluster.v3.Cluster" => {
            if let Some(Value::Array(hosts)) = obj.remove("hosts") {
                let name = obj
                    .get("name")
                    .cloned()
                    .unwrap_or(Value::String(String::new()));
                let lb_endpoints: Vec<Value> = hosts
                    .into_iter()
                    .map(|h| serde_json::json!({ "endpoint": { "address": h } }))
                    .collect();
                out.push(Warning {
                    path: join(path, "hosts"),
                    message: "v2 field `hosts` upgraded to `load_assignment`".into(),
                });
                obj.insert(
                    "load_assignment".into(),
                    serde_json::json!({ "cluster_name": name, "endpoints": [ { "lb_endpoints": lb_endpoints } ] }),
                );
            }
        }
        "envoy.extensions.filters.network.http_connection_manager.v3.HttpConnectionManager" => {
            if let Some(v) = obj.remove("idle_timeout") {
                out.push(Warning {
                    path: join(path, "idle_timeout"),
                    message: "v2 field `idle_timeout` upgraded to `common_http_protocol_options.idle_timeout`".into(),
                });
                let opts = obj
                    .entry("common_http_protocol_options")
                    .or_insert_with(|| Value::Object(Map::new()));
                if let Value::Object(o) = opts {
                    o.insert("idle_timeout".into(), v);
                }
            }
        }
        "envoy.config.route.v3.RouteMatch" => {
            if let Some(v) = obj.remove("regex") {
                out.push(Warning {
                    path: join(path, "regex"),
                    message: "v2 field `regex` upgraded to `safe_regex`".into(),
                });
                obj.insert("safe_regex".into(), serde_json::json!({ "regex": v }));
            }
        }
        _ => {}
    }
}
