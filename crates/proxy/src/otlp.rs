//! What every OTLP export of ferry's shares (metrics: `sinks::open_telemetry`; logs:
//! `access_log::open_telemetry`; traces: `trace::otel`): string attributes, the SDK
//! resource attributes, and timestamps.

use opentelemetry_proto::tonic::common::v1::{any_value, AnyValue, KeyValue};
use opentelemetry_proto::tonic::resource::v1::Resource;
use std::time::{SystemTime, UNIX_EPOCH};

/// An attribute with a string value.
pub(crate) fn attribute(key: &str, value: impl Into<String>) -> KeyValue {
    KeyValue {
        key: key.to_string(),
        value: Some(AnyValue {
            value: Some(any_value::Value::StringValue(value.into())),
        }),
        ..Default::default()
    }
}

/// The SDK attributes of every OTLP resource ferry sends. They are Envoy's (`envoy`,
/// `cpp`), so that collectors and dashboards that select Envoy's telemetry keep
/// working; the version says `ferry/<version>`.
pub(crate) fn sdk_attributes() -> Vec<KeyValue> {
    vec![
        attribute("telemetry.sdk.language", "cpp"),
        attribute("telemetry.sdk.name", "envoy"),
        attribute(
            "telemetry.sdk.version",
            concat!("ferry/", env!("CARGO_PKG_VERSION")),
        ),
    ]
}

/// Nanoseconds since the Unix epoch.
pub(crate) fn nanos(t: SystemTime) -> u64 {
    t.duration_since(UNIX_EPOCH)
        .map(|d| d.as_nanos() as u64)
        .unwrap_or(0)
}

/// The resource every metrics export describes: this process.
pub(crate) fn resource() -> Resource {
    Resource {
        attributes: sdk_attributes(),
        ..Default::default()
    }
}
