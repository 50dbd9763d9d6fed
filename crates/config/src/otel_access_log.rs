//! `envoy.access_loggers.open_telemetry`: access log records as OTLP logs over gRPC to a
//! cluster, their body and attributes rendered from format strings.

use crate::format::Template;
use crate::util::duration;
use crate::Ctx;
use ferry_envoy_api::pb::envoy::extensions::access_loggers::open_telemetry::v3::OpenTelemetryAccessLogConfig;
use ferry_envoy_api::pb::opentelemetry::proto::common::v1::{any_value, AnyValue, KeyValueList};
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
    Some(match &v.value {
        Some(V::StringValue(s)) => OtelValue::Text(Template::parse(s, ctx)),
        Some(V::BoolValue(b)) => OtelValue::Bool(*b),
        Some(V::IntValue(i)) => OtelValue::Int(*i),
        Some(V::DoubleValue(d)) => OtelValue::Double(*d),
        Some(V::KvlistValue(l)) => OtelValue::List(ctx.at("kvlist_value", |c| list(l, c))),
        Some(V::ArrayValue(a)) => OtelValue::Array(
            a.values
                .iter()
                .enumerate()
                .filter_map(|(i, v)| ctx.at(format!("array_value.values[{i}]"), |c| value(v, c)))
                .collect(),
        ),
        Some(V::BytesValue(_)) | Some(V::StringValueStrindex(_)) => {
            ctx.error("only string, bool, int, double, array and kvlist values are supported");
            return None;
        }
        None => OtelValue::Text(Template::parse("", ctx)),
    })
}

fn list(l: &KeyValueList, ctx: &mut Ctx) -> Vec<(String, OtelValue)> {
    l.values
        .iter()
        .enumerate()
        .filter_map(|(i, kv)| {
            ctx.at(format!("values[{i}]"), |c| {
                let v = c.at("value", |c| kv.value.as_ref().and_then(|v| value(v, c)))?;
                Some((kv.key.clone(), v))
            })
        })
        .collect()
}

/// Converts the logger's config (`c` is at its `typed_config`).
pub fn from_proto(o: &OpenTelemetryAccessLogConfig, c: &mut Ctx) -> Option<OtelAccessLog> {
    let common = o.common_config.clone().unwrap_or_default();
    let grpc = o.grpc_service.clone().or(common.grpc_service.clone());
    let field = if o.grpc_service.is_some() {
        "grpc_service"
    } else {
        "common_config.grpc_service"
    };
    let grpc = crate::grpc_service::grpc_cluster(&grpc, field, c)?;
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
    Some(OtelAccessLog {
        grpc,
        log_name,
        flush_interval,
        buffer_size_bytes,
        builtin_labels: !o.disable_builtin_labels,
        resource_attributes: o
            .resource_attributes
            .as_ref()
            .map(|l| c.at("resource_attributes", |c| list(l, c)))
            .unwrap_or_default(),
        body: o.body.as_ref().and_then(|b| c.at("body", |c| value(b, c))),
        attributes: o
            .attributes
            .as_ref()
            .map(|l| c.at("attributes", |c| list(l, c)))
            .unwrap_or_default(),
    })
}
