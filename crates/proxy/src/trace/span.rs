//! A recorded span: what a sampled request's trace says of it, filled in as the
//! stream goes and handed to the provider's exporter when it ends.

use super::context::SpanContext;
use std::borrow::Cow;
use std::time::SystemTime;

/// A recorded span (sampled requests only), allocated once when the request is traced.
#[derive(Debug, Clone)]
pub struct Span {
    /// This span's trace, span and parent ids.
    pub context: SpanContext,
    /// Write the trace id in 32 digits even when its high half is zero.
    pub wide_trace_id: bool,
    /// The operation name.
    pub name: String,
    /// When the request started.
    pub start: SystemTime,
    /// When the response ended.
    pub end: SystemTime,
    /// Zipkin `shared`: this server span shares the caller's span id.
    pub shared: bool,
    /// An egress (client) span, on an `OUTBOUND` listener; else a server span.
    pub client: bool,
    /// The caller's W3C `tracestate`, kept for the span (OpenTelemetry).
    pub tracestate: Option<String>,
    /// Tags, in the order Envoy sets them.
    pub tags: Vec<(Cow<'static, str>, String)>,
}

impl Span {
    pub(crate) fn tag(&mut self, key: impl Into<Cow<'static, str>>, value: impl Into<String>) {
        self.tags.push((key.into(), value.into()));
    }
}
