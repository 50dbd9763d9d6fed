//! HTTP tracing: the connection manager's `tracing` block and its `provider`
//! (`envoy.tracers.zipkin`, `envoy.tracers.opentelemetry`).

use crate::Ctx;
use ferry_envoy_api::pb::envoy::config::trace::v3 as trace_pb;
use ferry_envoy_api::pb::envoy::extensions::filters::network::http_connection_manager::v3::http_connection_manager::Tracing as TracingPb;
use ferry_envoy_api::pb::envoy::r#type::tracing::v3::{custom_tag, CustomTag as CustomTagPb};
use std::time::Duration;

/// Envoy's default `max_path_tag_length`.
pub const DEFAULT_MAX_PATH_TAG_LENGTH: usize = 256;
/// Sampling percentages are kept in ten-thousandths, as Envoy converts them.
pub const SAMPLING_DENOMINATOR: u32 = 10_000;

/// A validated `tracing` block.
#[derive(Debug, Clone)]
pub struct Tracing {
    /// `client_sampling`, in ten-thousandths (default all).
    pub client_sampling: u32,
    /// `random_sampling`, in ten-thousandths (default all).
    pub random_sampling: u32,
    /// `overall_sampling`, in ten-thousandths (default all).
    pub overall_sampling: u32,
    /// `verbose` (accepted; ferry records no per-stream timing annotations).
    pub verbose: bool,
    /// `max_path_tag_length` (default 256): `http.url` is cut to this many path bytes.
    pub max_path_tag_length: usize,
    /// `custom_tags`.
    pub custom_tags: Vec<CustomTag>,
    /// `provider`: where spans go (None: sampling decisions only, as Envoy without a
    /// tracer).
    pub provider: Option<Provider>,
    /// The listener's `traffic_direction` is `OUTBOUND`: spans are egress (client)
    /// spans, and a route's decorator is passed on in `x-envoy-decorator-operation`.
    pub egress: bool,
}

/// A route's `decorator`.
#[derive(Debug, Clone)]
pub struct Decorator {
    /// `operation`: the span's name.
    pub operation: String,
    /// `propagate` (default true): egress requests carry it upstream in
    /// `x-envoy-decorator-operation`.
    pub propagate: bool,
}

/// A `custom_tags` entry.
#[derive(Debug, Clone)]
pub struct CustomTag {
    /// `tag`: the tag's name.
    pub tag: String,
    /// Where its value comes from.
    pub value: CustomTagValue,
}

/// A custom tag's source.
#[derive(Debug, Clone)]
pub enum CustomTagValue {
    /// `literal.value`, or an `environment` variable read once at config load.
    Literal(String),
    /// `request_header`: the request's header, else `default_value` (no tag when both
    /// are empty).
    RequestHeader {
        /// `name`.
        name: http::HeaderName,
        /// `default_value`.
        default_value: String,
    },
}

/// A tracing provider.
#[derive(Debug, Clone)]
pub enum Provider {
    /// `envoy.tracers.zipkin`.
    Zipkin(Zipkin),
    /// `envoy.tracers.opentelemetry`.
    OpenTelemetry(OpenTelemetry),
}

/// `envoy.config.trace.v3.ZipkinConfig` (HTTP_JSON only).
#[derive(Debug, Clone)]
pub struct Zipkin {
    /// `collector_cluster`.
    pub collector_cluster: String,
    /// `collector_endpoint` (the POST path).
    pub collector_endpoint: String,
    /// `collector_hostname` (default: the cluster's name).
    pub collector_hostname: String,
    /// `trace_id_128bit`: new traces get 128-bit ids.
    pub trace_id_128bit: bool,
    /// `shared_span_context` (default true): a server span shares the caller's span id.
    pub shared_span_context: bool,
    /// `trace_context_option: USE_B3_WITH_W3C_PROPAGATION`: W3C `traceparent` is read
    /// when no B3 header is present, and written beside B3.
    pub w3c: bool,
}

/// `envoy.config.trace.v3.OpenTelemetryConfig` (OTLP over gRPC).
#[derive(Debug, Clone)]
pub struct OpenTelemetry {
    /// `grpc_service.envoy_grpc.cluster_name`.
    pub cluster: String,
    /// `grpc_service.envoy_grpc.authority` (default: the cluster's name).
    pub authority: String,
    /// `grpc_service.timeout`.
    pub timeout: Option<Duration>,
    /// `service_name` (default `unknown_service:envoy`).
    pub service_name: String,
}

/// Envoy's `PROTOBUF_PERCENT_TO_ROUNDED_INTEGER_OR_DEFAULT(.., 10000, 10000)`.
fn percent(
    p: &Option<ferry_envoy_api::pb::envoy::r#type::v3::Percent>,
    field: &str,
    ctx: &mut Ctx,
) -> u32 {
    crate::fraction::percent_fields(p, field, ctx);
    match p {
        None => SAMPLING_DENOMINATOR,
        Some(p) if (0.0..=100.0).contains(&p.value) => {
            (p.value / 100.0 * f64::from(SAMPLING_DENOMINATOR)).round() as u32
        }
        Some(_) => {
            ctx.error_at(field, "must be in [0, 100]");
            SAMPLING_DENOMINATOR
        }
    }
}

/// Converts an HCM's `tracing`.
pub fn from_proto(t: &TracingPb, ctx: &mut Ctx) -> Tracing {
    crate::fields!(ctx, t => TracingPb {
        client_sampling, random_sampling, overall_sampling, verbose, max_path_tag_length,
        custom_tags, provider, spawn_upstream_span,
    } refused {
        operation, upstream_operation, no_context_propagation,
    });
    if t.spawn_upstream_span.is_some_and(|b| b.value) {
        ctx.error_at(
            "spawn_upstream_span",
            "is not supported (ferry writes one span per request)",
        );
    }
    let mut custom_tags = Vec::new();
    for (i, tag) in t.custom_tags.iter().enumerate() {
        ctx.at(format!("custom_tags[{i}]"), |ctx| {
            crate::fields!(ctx, tag => CustomTagPb {
                tag, r#type: ["literal", "environment", "request_header"],
            });
            if tag.tag.is_empty() {
                ctx.error_at("tag", "is required");
            }
            let value = match &tag.r#type {
                Some(custom_tag::Type::Literal(l)) => {
                    crate::fields!(ctx, l => custom_tag::Literal { value });
                    CustomTagValue::Literal(l.value.clone())
                }
                Some(custom_tag::Type::Environment(e)) => {
                    crate::fields!(ctx, e => custom_tag::Environment { name, default_value });
                    CustomTagValue::Literal(
                        std::env::var(&e.name).unwrap_or_else(|_| e.default_value.clone()),
                    )
                }
                Some(custom_tag::Type::RequestHeader(h)) => {
                    crate::fields!(ctx, h => custom_tag::Header { name, default_value });
                    match http::HeaderName::from_bytes(h.name.as_bytes()) {
                        Ok(name) => CustomTagValue::RequestHeader {
                            name,
                            default_value: h.default_value.clone(),
                        },
                        Err(_) => {
                            ctx.error_at("request_header.name", "is not a valid header name");
                            return;
                        }
                    }
                }
                // Refused by `fields!`.
                Some(custom_tag::Type::Metadata(_) | custom_tag::Type::Value(_)) => return,
                None => {
                    ctx.error("one of literal, environment or request_header is required");
                    return;
                }
            };
            custom_tags.push(CustomTag {
                tag: tag.tag.clone(),
                value,
            });
        });
    }
    let provider = t
        .provider
        .as_ref()
        .and_then(|p| ctx.at("provider", |ctx| provider(p, ctx)));
    Tracing {
        client_sampling: percent(&t.client_sampling, "client_sampling", ctx),
        random_sampling: percent(&t.random_sampling, "random_sampling", ctx),
        overall_sampling: percent(&t.overall_sampling, "overall_sampling", ctx),
        verbose: t.verbose,
        max_path_tag_length: t
            .max_path_tag_length
            .map(|v| v.value as usize)
            .unwrap_or(DEFAULT_MAX_PATH_TAG_LENGTH),
        custom_tags,
        provider,
        egress: false,
    }
}

fn provider(p: &trace_pb::tracing::Http, ctx: &mut Ctx) -> Option<Provider> {
    use trace_pb::tracing::http::ConfigType;
    crate::fields!(ctx, p => trace_pb::tracing::Http {
        name, config_type: ["typed_config"],
    });
    let Some(ConfigType::TypedConfig(any)) = &p.config_type else {
        ctx.error_at("typed_config", "is required");
        return None;
    };
    const ZIPKIN: &str = "envoy.config.trace.v3.ZipkinConfig";
    const OPEN_TELEMETRY: &str = "envoy.config.trace.v3.OpenTelemetryConfig";
    let ty = crate::support::known_type(ctx, &p.name, any, &[ZIPKIN, OPEN_TELEMETRY])?;
    ctx.at("typed_config", |ctx| match ty {
        ZIPKIN => {
            let z: trace_pb::ZipkinConfig = crate::any::unpack(any, ctx)?;
            zipkin(&z, ctx).map(Provider::Zipkin)
        }
        OPEN_TELEMETRY => {
            let o: trace_pb::OpenTelemetryConfig = crate::any::unpack(any, ctx)?;
            opentelemetry(&o, ctx).map(Provider::OpenTelemetry)
        }
        _ => None,
    })
}

fn zipkin(z: &trace_pb::ZipkinConfig, ctx: &mut Ctx) -> Option<Zipkin> {
    use trace_pb::zipkin_config::CollectorEndpointVersion as V;
    crate::fields!(ctx, z => trace_pb::ZipkinConfig as "envoy.tracers.zipkin" {
        collector_cluster, collector_endpoint, trace_id_128bit, shared_span_context,
        collector_endpoint_version, collector_hostname, trace_context_option,
    } refused {
        split_spans_for_request, collector_service, timestamp_trace_ids,
    });
    if z.collector_cluster.is_empty() {
        ctx.error_at("collector_cluster", "is required");
    }
    if z.collector_endpoint.is_empty() {
        ctx.error_at("collector_endpoint", "is required");
    }
    match V::try_from(z.collector_endpoint_version) {
        Ok(V::HttpJson) => {}
        Ok(V::DeprecatedAndUnavailableDoNotUse) => ctx.error_at(
            "collector_endpoint_version",
            "must be set (HTTP_JSON is supported)",
        ),
        _ => ctx.error_at("collector_endpoint_version", "only HTTP_JSON is supported"),
    }
    if z.collector_endpoint
        .parse::<http::uri::PathAndQuery>()
        .is_err()
    {
        ctx.error_at("collector_endpoint", "is not a valid path");
        return None;
    }
    Some(Zipkin {
        collector_cluster: z.collector_cluster.clone(),
        collector_endpoint: z.collector_endpoint.clone(),
        collector_hostname: if z.collector_hostname.is_empty() {
            z.collector_cluster.clone()
        } else {
            z.collector_hostname.clone()
        },
        trace_id_128bit: z.trace_id_128bit,
        shared_span_context: z.shared_span_context.map(|b| b.value).unwrap_or(true),
        w3c: z.trace_context_option == 1,
    })
}

fn opentelemetry(o: &trace_pb::OpenTelemetryConfig, ctx: &mut Ctx) -> Option<OpenTelemetry> {
    crate::fields!(ctx, o => trace_pb::OpenTelemetryConfig as "envoy.tracers.opentelemetry" {
        grpc_service, service_name,
    } refused {
        http_service, resource_detectors, max_cache_size, set_telemetry_sdk_resource_attributes,
        set_service_name_resource_attribute, set_instrumentation_scope,
    } refused_extensions {
        sampler, exporter,
    });
    if o.grpc_service.is_none() {
        ctx.error_at(
            "grpc_service",
            "is required (http_service is not supported)",
        );
        return None;
    }
    let target = crate::grpc_service::grpc_cluster(&o.grpc_service, "grpc_service", ctx)?;
    Some(OpenTelemetry {
        cluster: target.cluster,
        authority: target.authority,
        timeout: target.timeout,
        service_name: if o.service_name.is_empty() {
            "unknown_service:envoy".into()
        } else {
            o.service_name.clone()
        },
    })
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::expect_used)]
    use crate::listener::TerminalFilter;
    use crate::trace::*;
    use ferry_envoy_api::Format;

    fn bootstrap(tracing: &str, direction: &str) -> String {
        format!(
            r#"
static_resources:
  listeners:
  - name: l
    address: {{socket_address: {{address: 127.0.0.1, port_value: 10000}}}}
    {direction}
    filter_chains:
    - filters:
      - name: envoy.filters.network.http_connection_manager
        typed_config:
          "@type": type.googleapis.com/envoy.extensions.filters.network.http_connection_manager.v3.HttpConnectionManager
          stat_prefix: ingress
          tracing:
{tracing}
          route_config:
            virtual_hosts:
            - name: all
              domains: ["*"]
              routes:
              - match: {{prefix: "/"}}
                route: {{cluster: zipkin}}
          http_filters:
          - name: envoy.filters.http.router
            typed_config: {{"@type": type.googleapis.com/envoy.extensions.filters.http.router.v3.Router}}
  clusters:
  - name: zipkin
    load_assignment:
      cluster_name: zipkin
      endpoints:
      - lb_endpoints:
        - endpoint: {{address: {{socket_address: {{address: 127.0.0.1, port_value: 9411}}}}}}
"#
        )
    }

    fn loaded(tracing: &str, direction: &str) -> Result<Tracing, String> {
        match crate::filters::testing::load(&bootstrap(tracing, direction), Format::Yaml) {
            Ok(l) => match &l.bootstrap.listeners[0].filter_chains[0].filter {
                TerminalFilter::Http(h) => Ok((**h.tracing.as_ref().unwrap()).clone()),
                TerminalFilter::Filter(_) => Err("not an HCM".into()),
            },
            Err(e) => Err(e.to_string()),
        }
    }

    const ZIPKIN: &str = r#"            provider:
              name: envoy.tracers.zipkin
              typed_config:
                "@type": type.googleapis.com/envoy.config.trace.v3.ZipkinConfig
                collector_cluster: zipkin
                collector_endpoint: /api/v2/spans
                collector_endpoint_version: HTTP_JSON"#;

    #[test]
    fn zipkin_with_sampling_and_tags() {
        let t = loaded(
            &format!(
                r#"            random_sampling: {{value: 12.5}}
            client_sampling: {{value: 0}}
            max_path_tag_length: 10
            verbose: true
            custom_tags:
            - {{tag: a, literal: {{value: x}}}}
            - {{tag: b, request_header: {{name: x-b, default_value: d}}}}
{ZIPKIN}"#
            ),
            "",
        )
        .unwrap();
        assert_eq!(t.random_sampling, 1250);
        assert_eq!(t.client_sampling, 0);
        assert_eq!(t.overall_sampling, SAMPLING_DENOMINATOR);
        assert_eq!(t.max_path_tag_length, 10);
        assert_eq!(t.custom_tags.len(), 2);
        let Some(Provider::Zipkin(z)) = &t.provider else {
            panic!("{:?}", t.provider)
        };
        assert!(z.shared_span_context && !z.trace_id_128bit && !z.w3c);
        assert_eq!(z.collector_hostname, "zipkin");
    }

    #[test]
    fn an_outbound_listener_traces_egress() {
        assert!(!loaded(ZIPKIN, "").unwrap().egress);
        assert!(
            loaded(ZIPKIN, "traffic_direction: OUTBOUND")
                .unwrap()
                .egress
        );
    }

    #[test]
    fn opentelemetry_over_envoy_grpc() {
        let t = loaded(
            r#"            provider:
              name: envoy.tracers.opentelemetry
              typed_config:
                "@type": type.googleapis.com/envoy.config.trace.v3.OpenTelemetryConfig
                grpc_service: {envoy_grpc: {cluster_name: zipkin}, timeout: 1s}"#,
            "",
        )
        .unwrap();
        let Some(Provider::OpenTelemetry(o)) = &t.provider else {
            panic!("{:?}", t.provider)
        };
        assert_eq!(o.service_name, "unknown_service:envoy");
        assert_eq!(o.authority, "zipkin");
        assert_eq!(o.timeout, Some(std::time::Duration::from_secs(1)));
    }

    #[test]
    fn refused_with_their_path() {
        let cases = [
            (
                format!("            spawn_upstream_span: true\n{ZIPKIN}"),
                "",
                "tracing.spawn_upstream_span: is not supported",
            ),
            (
                format!("            custom_tags: [{{tag: m, metadata: {{default_value: x}}}}]\n{ZIPKIN}"),
                "",
                "custom_tags[0].metadata",
            ),
            (
                ZIPKIN.replace("HTTP_JSON", "HTTP_PROTO"),
                "",
                "typed_config.collector_endpoint_version: only HTTP_JSON is supported",
            ),
            (
                r#"            provider:
              name: envoy.tracers.opentelemetry
              typed_config:
                "@type": type.googleapis.com/envoy.config.trace.v3.OpenTelemetryConfig
                grpc_service: {envoy_grpc: {cluster_name: zipkin}}
                resource_detectors: [{name: x, typed_config: {"@type": type.googleapis.com/envoy.extensions.tracers.opentelemetry.resource_detectors.v3.EnvironmentResourceDetectorConfig}}]"#
                    .to_string(),
                "",
                "resource_detectors",
            ),
            (
                format!("            random_sampling: {{value: 101}}\n{ZIPKIN}"),
                "",
                "random_sampling: must be in [0, 100]",
            ),
        ];
        for (tracing, direction, want) in cases {
            let err = loaded(&tracing, direction).unwrap_err();
            assert!(err.contains(want), "want {want:?} in:\n{err}");
        }
    }
}
