//! `envoy.access_loggers.open_telemetry`: access log records as OTLP logs over gRPC to a
//! cluster, their body and attributes rendered from format strings.

use crate::format::Template;
use crate::util::duration;
use crate::Ctx;
use ferry_envoy_api::pb::envoy::extensions::access_loggers::grpc::v3::CommonGrpcAccessLogConfig;
use ferry_envoy_api::pb::envoy::extensions::access_loggers::open_telemetry::v3::OpenTelemetryAccessLogConfig;
use ferry_envoy_api::pb::opentelemetry::proto::common::v1::{
    any_value, AnyValue, ArrayValue, KeyValue, KeyValueList,
};
use std::time::Duration;

/// A value of the body or an attribute: format strings, nested lists and literals.
#[derive(Debug, Clone)]
pub enum OtelValue {
    /// A `string_value`: rendered with the command operators.
    Text(Template),
    /// A `kvlist_value`.
    List(Vec<(String, OtelValue)>),
    /// An `array_value`.
    Array(Vec<OtelValue>),
    /// `bool_value`.
    Bool(bool),
    /// `int_value`.
    Int(i64),
    /// `double_value`.
    Double(f64),
}

/// A validated `OpenTelemetryAccessLogConfig`.
#[derive(Debug, Clone)]
pub struct OtelAccessLog {
    /// `grpc_service` (or `common_config`'s).
    pub grpc: crate::grpc_service::GrpcTarget,
    /// `log_name` (a built-in resource attribute).
    pub log_name: String,
    /// `buffer_flush_interval` (default 1 s).
    pub flush_interval: Duration,
    /// `buffer_size_bytes` (default 16384): a batch this large is sent at once.
    pub buffer_size_bytes: u32,
    /// `!disable_builtin_labels`: `log_name`, `zone_name`, `cluster_name`, `node_name`
    /// as resource attributes.
    pub builtin_labels: bool,
    /// `resource_attributes`.
    pub resource_attributes: Vec<(String, OtelValue)>,
    /// `body`.
    pub body: Option<OtelValue>,
    /// `attributes`.
    pub attributes: Vec<(String, OtelValue)>,
}

fn value(v: &AnyValue, ctx: &mut Ctx) -> Option<OtelValue> {
    use any_value::Value as V;
    crate::fields!(ctx, v => AnyValue {
        value: [
            "string_value", "bool_value", "int_value", "double_value", "array_value",
            "kvlist_value",
        ],
    });
    Some(match &v.value {
        Some(V::StringValue(s)) => OtelValue::Text(Template::parse(s, ctx)),
        Some(V::BoolValue(b)) => OtelValue::Bool(*b),
        Some(V::IntValue(i)) => OtelValue::Int(*i),
        Some(V::DoubleValue(d)) => OtelValue::Double(*d),
        Some(V::KvlistValue(l)) => OtelValue::List(ctx.at("kvlist_value", |c| list(l, c))),
        Some(V::ArrayValue(a)) => OtelValue::Array(ctx.at("array_value", |c| {
            crate::fields!(c, a => ArrayValue { values });
            a.values
                .iter()
                .enumerate()
                .filter_map(|(i, v)| c.at(format!("values[{i}]"), |c| value(v, c)))
                .collect()
        })),
        // Refused by `fields!`.
        Some(V::BytesValue(_)) | Some(V::StringValueStrindex(_)) => return None,
        None => OtelValue::Text(Template::parse("", ctx)),
    })
}

fn list(l: &KeyValueList, ctx: &mut Ctx) -> Vec<(String, OtelValue)> {
    crate::fields!(ctx, l => KeyValueList { values });
    l.values
        .iter()
        .enumerate()
        .filter_map(|(i, kv)| {
            ctx.at(format!("values[{i}]"), |c| {
                crate::fields!(c, kv => KeyValue {
                    key, value,
                } refused {
                    key_strindex,
                });
                let v = c.at("value", |c| kv.value.as_ref().and_then(|v| value(v, c)))?;
                Some((kv.key.clone(), v))
            })
        })
        .collect()
}

/// Converts the logger's config (`c` is at its `typed_config`).
pub fn from_proto(o: &OpenTelemetryAccessLogConfig, c: &mut Ctx) -> Option<OtelAccessLog> {
    crate::fields!(c, o => OpenTelemetryAccessLogConfig as "envoy.access_loggers.open_telemetry" {
        common_config, grpc_service, disable_builtin_labels, resource_attributes, body,
        attributes, log_name, buffer_flush_interval, buffer_size_bytes,
    } refused {
        stat_prefix, formatters, http_service, filter_state_objects_to_log, custom_tags,
        resource_detectors,
    });
    if let Some(common) = &o.common_config {
        c.at("common_config", |c| {
            crate::fields!(c, common => CommonGrpcAccessLogConfig {
                log_name, grpc_service, transport_api_version, buffer_flush_interval,
                buffer_size_bytes,
            } refused {
                filter_state_objects_to_log, grpc_stream_retry_policy, custom_tags,
            });
        });
    }
    let common = o.common_config.clone().unwrap_or_default();
    let grpc = o.grpc_service.clone().or(common.grpc_service.clone());
    let field = if o.grpc_service.is_some() {
        "grpc_service"
    } else {
        "common_config.grpc_service"
    };
    // `?` at the end: the rest is converted (its errors reported) without a target.
    let grpc = crate::grpc_service::grpc_cluster(&grpc, field, c);
    if o.grpc_service.is_some() && common.grpc_service.is_some() {
        // Shadowed by `grpc_service`, still checked.
        let _ = crate::grpc_service::grpc_cluster(
            &common.grpc_service,
            "common_config.grpc_service",
            c,
        );
    }
    let log_name = if o.log_name.is_empty() {
        common.log_name.clone()
    } else {
        o.log_name.clone()
    };
    let flush_interval = duration(&o.buffer_flush_interval, "buffer_flush_interval", c)
        .or_else(|| {
            duration(
                &common.buffer_flush_interval,
                "common_config.buffer_flush_interval",
                c,
            )
        })
        .filter(|d| !d.is_zero())
        .unwrap_or(Duration::from_secs(1));
    let buffer_size_bytes = o
        .buffer_size_bytes
        .or(common.buffer_size_bytes)
        .map_or(16384, |v| v.value);
    let resource_attributes = o
        .resource_attributes
        .as_ref()
        .map(|l| c.at("resource_attributes", |c| list(l, c)))
        .unwrap_or_default();
    let body = o.body.as_ref().and_then(|b| c.at("body", |c| value(b, c)));
    let attributes = o
        .attributes
        .as_ref()
        .map(|l| c.at("attributes", |c| list(l, c)))
        .unwrap_or_default();
    Some(OtelAccessLog {
        grpc: grpc?,
        log_name,
        flush_interval,
        buffer_size_bytes,
        builtin_labels: !o.disable_builtin_labels,
        resource_attributes,
        body,
        attributes,
    })
}
