//! `dynamic_resources`: listeners and clusters that a control plane sends over xDS
//! (the proxy's client is `proxy/src/xds/`), and the resources it sends, converted one
//! at a time with the same converters as the bootstrap's.

use crate::grpc_service::GrpcTarget;
use crate::Ctx;
use ferry_envoy_api::pb::envoy::config::bootstrap::v3 as bpb;
use ferry_envoy_api::pb::envoy::config::core::v3 as core;
use std::time::Duration;

/// Envoy's `initial_fetch_timeout` default.
pub const DEFAULT_INITIAL_FETCH_TIMEOUT: Duration = Duration::from_secs(15);

/// A validated `dynamic_resources`.
#[derive(Debug, Clone, Default)]
pub struct DynamicResources {
    /// `ads_config`: the one stream that carries every type whose source is `ads`.
    pub ads: Option<ApiSource>,
    /// `lds_config`: where listeners come from.
    pub lds: Option<ConfigSource>,
    /// `cds_config`: where clusters come from.
    pub cds: Option<ConfigSource>,
}

/// An `ApiConfigSource` of gRPC: a stream to a control plane (`ads_config`, or an
/// `api_config_source` that has its own stream).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ApiSource {
    /// `api_type`: `DELTA_GRPC` (incremental) rather than `GRPC` (state of the world).
    pub delta: bool,
    /// `grpc_services[0].envoy_grpc`: the control plane's cluster.
    pub grpc: GrpcTarget,
    /// `set_node_on_first_message_only`: the node is sent on a stream's first request only.
    pub set_node_on_first_message_only: bool,
    /// `rate_limit_settings`: a token bucket on the requests the client sends.
    pub rate_limit: Option<RateLimit>,
}

/// `rate_limit_settings`: at most `max_tokens` requests at once, then one a
/// `fill_interval`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RateLimit {
    /// `max_tokens` (default 100).
    pub max_tokens: u32,
    /// 1 / `fill_rate` (default 10 per second; at least once a year).
    pub fill_interval: Duration,
}

/// A `ConfigSource`: where one type of resource comes from.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ConfigSource {
    /// `ads: {}`: the ADS stream.
    Ads {
        /// `initial_fetch_timeout` (default 15 s; None: wait without limit).
        initial_fetch_timeout: Option<Duration>,
    },
    /// `api_config_source`: a stream of its own for this type.
    Api {
        /// The stream.
        api: ApiSource,
        /// `initial_fetch_timeout` (default 15 s; None: wait without limit).
        initial_fetch_timeout: Option<Duration>,
    },
    /// `path_config_source` (or the deprecated `path`): a file holding a
    /// `DiscoveryResponse`, read again when it is moved into place.
    Path {
        /// `path`.
        path: std::path::PathBuf,
        /// `watched_directory.path`: a move into this directory re-reads the file
        /// (a Kubernetes ConfigMap's symlink swap).
        watched_directory: Option<std::path::PathBuf>,
    },
}

impl ConfigSource {
    /// How long the first fetch may take before the proxy goes on without it (a file
    /// is read at once).
    pub fn initial_fetch_timeout(&self) -> Option<Duration> {
        match self {
            ConfigSource::Ads {
                initial_fetch_timeout,
            }
            | ConfigSource::Api {
                initial_fetch_timeout,
                ..
            } => *initial_fetch_timeout,
            ConfigSource::Path { .. } => Some(Duration::ZERO),
        }
    }
}

/// Converts `dynamic_resources` (`ctx` is at it).
pub fn from_proto(d: &bpb::bootstrap::DynamicResources, ctx: &mut Ctx) -> DynamicResources {
    crate::fields!(ctx, d => bpb::bootstrap::DynamicResources {
        lds_config, cds_config, ads_config,
    } refused {
        lds_resources_locator, cds_resources_locator,
    });
    let ads = d
        .ads_config
        .as_ref()
        .and_then(|a| ctx.at("ads_config", |ctx| api_source(a, ctx)));
    let source = |s: &Option<core::ConfigSource>, field: &str, ctx: &mut Ctx| {
        s.as_ref()
            .and_then(|s| ctx.at(field, |ctx| config_source(s, ctx)))
    };
    let lds = source(&d.lds_config, "lds_config", ctx);
    let cds = source(&d.cds_config, "cds_config", ctx);
    if ads.is_none()
        && [&lds, &cds]
            .iter()
            .any(|s| matches!(s, Some(ConfigSource::Ads { .. })))
    {
        ctx.error("ads_config is required by a config source that is `ads`");
    }
    DynamicResources { ads, lds, cds }
}

/// Converts a gRPC `ApiConfigSource` (`ads_config` or `api_config_source`).
fn api_source(a: &core::ApiConfigSource, ctx: &mut Ctx) -> Option<ApiSource> {
    use core::api_config_source::ApiType;
    crate::fields!(ctx, a => core::ApiConfigSource {
        api_type, transport_api_version, grpc_services, set_node_on_first_message_only,
        rate_limit_settings,
    } refused {
        cluster_names, refresh_delay, request_timeout, config_validators,
    });
    let delta = match ApiType::try_from(a.api_type) {
        Ok(ApiType::Grpc) => false,
        Ok(ApiType::DeltaGrpc) => true,
        Ok(t) => {
            ctx.error_at(
                "api_type",
                format!("{} is not supported (GRPC or DELTA_GRPC)", t.as_str_name()),
            );
            false
        }
        Err(_) => {
            ctx.error_at("api_type", "is not a known API type");
            false
        }
    };
    transport_v3(a.transport_api_version, "transport_api_version", ctx);
    if a.grpc_services.len() != 1 {
        ctx.error_at("grpc_services", "exactly one gRPC service is required");
    }
    let rate_limit = a
        .rate_limit_settings
        .as_ref()
        .map(|r| ctx.at("rate_limit_settings", |ctx| rate_limit(r, ctx)));
    let grpc = crate::grpc_service::grpc_cluster(
        &a.grpc_services.first().cloned(),
        "grpc_services[0]",
        ctx,
    )?;
    Some(ApiSource {
        delta,
        grpc,
        set_node_on_first_message_only: a.set_node_on_first_message_only,
        rate_limit,
    })
}

fn rate_limit(r: &core::RateLimitSettings, ctx: &mut Ctx) -> RateLimit {
    crate::fields!(ctx, r => core::RateLimitSettings { max_tokens, fill_rate });
    const YEAR: Duration = Duration::from_secs(365 * 24 * 3600);
    let fill_rate = r.fill_rate.map_or(10.0, |f| f.value);
    let fill_interval = if fill_rate > 0.0 && fill_rate.is_finite() {
        Duration::try_from_secs_f64(1.0 / fill_rate)
            .unwrap_or(YEAR)
            .min(YEAR)
    } else {
        ctx.error_at("fill_rate", "must be a number greater than 0");
        YEAR
    };
    RateLimit {
        max_tokens: r.max_tokens.map_or(100, |m| m.value),
        fill_interval,
    }
}

/// An HCM's `rds`: the route configuration a control plane sends by name.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Rds {
    /// `route_config_name`.
    pub name: String,
    /// `config_source`.
    pub source: ConfigSource,
}

/// Converts an HCM's `rds` (`ctx` is at it).
pub fn rds(
    r: &ferry_envoy_api::pb::envoy::extensions::filters::network::http_connection_manager::v3::Rds,
    ctx: &mut Ctx,
) -> Option<Rds> {
    use ferry_envoy_api::pb::envoy::extensions::filters::network::http_connection_manager::v3 as hcm;
    crate::fields!(ctx, r => hcm::Rds { config_source, route_config_name });
    if r.route_config_name.is_empty() {
        ctx.error_at("route_config_name", "is required");
    }
    let Some(source) = &r.config_source else {
        ctx.error_at("config_source", "is required");
        return None;
    };
    let source = ctx.at("config_source", |ctx| config_source(source, ctx))?;
    Some(Rds {
        name: r.route_config_name.clone(),
        source,
    })
}

/// Converts a `ConfigSource` (`ctx` is at it).
pub fn config_source(s: &core::ConfigSource, ctx: &mut Ctx) -> Option<ConfigSource> {
    use core::config_source::ConfigSourceSpecifier as S;
    crate::fields!(ctx, s => core::ConfigSource {
        config_source_specifier: ["ads", "api_config_source", "path", "path_config_source"],
        initial_fetch_timeout,
        resource_api_version,
    } refused {
        authorities,
    });
    transport_v3(s.resource_api_version, "resource_api_version", ctx);
    let initial_fetch_timeout = crate::util::timeout(
        &s.initial_fetch_timeout,
        Some(DEFAULT_INITIAL_FETCH_TIMEOUT),
        "initial_fetch_timeout",
        ctx,
    );
    match &s.config_source_specifier {
        Some(S::Ads(a)) => {
            ctx.at("ads", |ctx| {
                crate::fields!(ctx, a => core::AggregatedConfigSource {});
            });
            Some(ConfigSource::Ads {
                initial_fetch_timeout,
            })
        }
        Some(S::ApiConfigSource(a)) => {
            let api = ctx.at("api_config_source", |ctx| api_source(a, ctx))?;
            Some(ConfigSource::Api {
                api,
                initial_fetch_timeout,
            })
        }
        Some(S::Path(p)) => Some(ConfigSource::Path {
            path: p.into(),
            watched_directory: None,
        }),
        Some(S::PathConfigSource(p)) => ctx.at("path_config_source", |ctx| {
            crate::fields!(ctx, p => core::PathConfigSource {
                path, watched_directory,
            } refused {
                poll_interval,
            });
            if p.path.is_empty() {
                ctx.error_at("path", "is required");
                return None;
            }
            let watched_directory = p.watched_directory.as_ref().map(|w| {
                ctx.at("watched_directory", |ctx| {
                    crate::fields!(ctx, w => core::WatchedDirectory { path } refused { watch_modify });
                });
                std::path::PathBuf::from(&w.path)
            });
            Some(ConfigSource::Path {
                path: (&p.path).into(),
                watched_directory,
            })
        }),
        // Refused by fields! above.
        Some(_) => None,
        None => {
            ctx.error("ads, path or path_config_source is required");
            None
        }
    }
}

/// `transport_api_version` / `resource_api_version`: V3 (or AUTO, which is V3 now).
fn transport_v3(version: i32, field: &str, ctx: &mut Ctx) {
    use core::ApiVersion;
    match ApiVersion::try_from(version) {
        Ok(ApiVersion::Auto | ApiVersion::V3) => {}
        _ => ctx.error_at(field, "only V3 is supported"),
    }
}

/// A resource a control plane sent, converted, or why it was refused.
pub type Converted<T> = Result<T, Refused>;

/// A refused resource: its name (empty when it could not be decoded) and every problem
/// with the field's path, as `ferry validate` reports them.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Refused {
    /// The resource's name.
    pub name: String,
    /// What is wrong, one problem a line (`name: path: message`).
    pub message: String,
}

/// A `Listener` resource, converted as the bootstrap's listeners are; `clusters` are
/// the clusters its routes may name (Envoy validates an inline route configuration's
/// clusters).
pub fn listener(
    any: &ferry_envoy_api::pb::google::protobuf::Any,
    clusters: &std::collections::HashSet<&str>,
    extensions: &'static dyn crate::filters::Extensions,
) -> Converted<crate::listener::Listener> {
    use ferry_envoy_api::pb::envoy::config::listener::v3 as lpb;
    let l: lpb::Listener = decode(any)?;
    let mut ctx = Ctx::new(extensions);
    let listener = crate::listener::from_proto(&l, 0, &mut ctx);
    if let Some(listener) = &listener {
        crate::bootstrap::check_clusters(listener, clusters, &mut ctx);
    }
    finish(&l.name, listener, ctx)
}

/// A `RouteConfiguration` resource (RDS), converted as an inline `route_config` is.
pub fn route_configuration(
    any: &ferry_envoy_api::pb::google::protobuf::Any,
    extensions: &'static dyn crate::filters::Extensions,
) -> Converted<crate::route::RouteConfig> {
    use ferry_envoy_api::pb::envoy::config::route::v3 as rpb;
    let r: rpb::RouteConfiguration = decode(any)?;
    let mut ctx = Ctx::new(extensions);
    let config = crate::route::from_proto(&r, &mut ctx);
    finish(&r.name, Some(config), ctx)
}

/// A `ClusterLoadAssignment` resource (EDS): its `cluster_name` and its localities
/// (IP addresses, as an EDS cluster takes them).
pub fn cluster_load_assignment(
    any: &ferry_envoy_api::pb::google::protobuf::Any,
) -> Converted<(String, Vec<crate::cluster::Locality>)> {
    use ferry_envoy_api::pb::envoy::config::endpoint::v3 as epb;
    let la: epb::ClusterLoadAssignment = decode(any)?;
    let mut ctx = Ctx::default();
    let eds = crate::cluster::Discovery::Eds(crate::cluster::Eds {
        service_name: la.cluster_name.clone(),
        source: ConfigSource::Ads {
            initial_fetch_timeout: None,
        },
    });
    let localities = crate::cluster::load_assignment(&la, Some(&eds), &mut ctx);
    finish(
        &la.cluster_name,
        Some((la.cluster_name.clone(), localities)),
        ctx,
    )
}

/// A `Cluster` resource, converted as the bootstrap's clusters are.
pub fn cluster(
    any: &ferry_envoy_api::pb::google::protobuf::Any,
    extensions: &'static dyn crate::filters::Extensions,
) -> Converted<crate::cluster::Cluster> {
    use ferry_envoy_api::pb::envoy::config::cluster::v3 as cpb;
    let c: cpb::Cluster = decode(any)?;
    let mut ctx = Ctx::new(extensions);
    let cluster = crate::cluster::from_proto(&c, &mut ctx);
    finish(&c.name, cluster, ctx)
}

fn decode<T: prost::Message + Default + prost::Name>(
    any: &ferry_envoy_api::pb::google::protobuf::Any,
) -> Converted<T> {
    let refused = |message: String| Refused {
        name: String::new(),
        message,
    };
    if crate::any::type_name(any) != T::full_name() {
        return Err(refused(format!(
            "a resource of type {} where {} was expected",
            crate::any::type_name(any),
            T::full_name()
        )));
    }
    ferry_envoy_api::unpack(any).map_err(|e| refused(e.to_string()))
}

fn finish<T>(name: &str, value: Option<T>, ctx: Ctx) -> Converted<T> {
    if ctx.errors.is_empty() {
        if let Some(v) = value {
            return Ok(v);
        }
    }
    let errors: Vec<String> = ctx.errors.iter().map(|e| format!("{name}: {e}")).collect();
    Err(Refused {
        name: name.to_string(),
        message: if errors.is_empty() {
            format!("{name}: invalid")
        } else {
            errors.join("\n")
        },
    })
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::expect_used)]
    use super::*;
    use crate::bootstrap::load;
    use ferry_envoy_api::Format;

    fn dynamic(yaml: &str) -> Result<DynamicResources, String> {
        let text = format!("dynamic_resources:\n{yaml}");
        load(&text, Format::Yaml)
            .map(|l| l.bootstrap.dynamic)
            .map_err(|e| e.to_string())
    }

    const GRPC: &str = "grpc_services: [{envoy_grpc: {cluster_name: xds}}]";

    #[test]
    fn delta_ads_with_rate_limit_settings() {
        let d = dynamic(&format!(
            "  ads_config: {{api_type: DELTA_GRPC, transport_api_version: V3, {GRPC}, rate_limit_settings: {{max_tokens: 5, fill_rate: 2}}}}\n  lds_config: {{ads: {{}}}}\n"
        ))
        .unwrap();
        let ads = d.ads.unwrap();
        assert!(ads.delta);
        assert_eq!(
            ads.rate_limit,
            Some(RateLimit {
                max_tokens: 5,
                fill_interval: Duration::from_millis(500)
            })
        );
        // Envoy's defaults: 100 tokens, 10 a second.
        let d = dynamic(&format!(
            "  ads_config: {{api_type: GRPC, {GRPC}, rate_limit_settings: {{}}}}\n"
        ))
        .unwrap();
        assert_eq!(
            d.ads.unwrap().rate_limit,
            Some(RateLimit {
                max_tokens: 100,
                fill_interval: Duration::from_millis(100)
            })
        );
    }

    #[test]
    fn api_config_source_is_a_stream_of_its_own() {
        let d = dynamic(&format!(
            "  cds_config: {{api_config_source: {{api_type: GRPC, transport_api_version: V3, {GRPC}}}, initial_fetch_timeout: 2s}}\n"
        ))
        .unwrap();
        match d.cds.unwrap() {
            ConfigSource::Api {
                api,
                initial_fetch_timeout,
            } => {
                assert!(!api.delta);
                assert_eq!(api.grpc.cluster, "xds");
                assert_eq!(initial_fetch_timeout, Some(Duration::from_secs(2)));
            }
            other => panic!("{other:?}"),
        }
    }

    #[test]
    fn rest_and_bad_rates_are_refused_with_their_paths() {
        let e = dynamic(&format!(
            "  cds_config: {{api_config_source: {{api_type: REST, {GRPC}}}}}\n"
        ))
        .unwrap_err();
        assert!(
            e.contains(
                "dynamic_resources.cds_config.api_config_source.api_type: REST is not supported"
            ),
            "{e}"
        );
        let e = dynamic(&format!(
            "  ads_config: {{api_type: GRPC, {GRPC}, rate_limit_settings: {{fill_rate: 0}}}}\n"
        ))
        .unwrap_err();
        assert!(
            e.contains("dynamic_resources.ads_config.rate_limit_settings.fill_rate"),
            "{e}"
        );
    }
}
