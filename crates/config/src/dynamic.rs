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
    /// `ads_config`: the one stream that carries every type (ADS).
    pub ads: Option<Ads>,
    /// `lds_config`: where listeners come from.
    pub lds: Option<ConfigSource>,
    /// `cds_config`: where clusters come from.
    pub cds: Option<ConfigSource>,
}

/// `ads_config` (an `ApiConfigSource`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Ads {
    /// `grpc_services[0].envoy_grpc`: the control plane's cluster.
    pub grpc: GrpcTarget,
    /// `set_node_on_first_message_only`: the node is sent on a stream's first request only.
    pub set_node_on_first_message_only: bool,
}

/// A `ConfigSource`: where one type of resource comes from.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ConfigSource {
    /// `ads: {}`: the ADS stream.
    Ads {
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
        .and_then(|a| ctx.at("ads_config", |ctx| ads(a, ctx)));
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

fn ads(a: &core::ApiConfigSource, ctx: &mut Ctx) -> Option<Ads> {
    use core::api_config_source::ApiType;
    crate::fields!(ctx, a => core::ApiConfigSource {
        api_type, transport_api_version, grpc_services, set_node_on_first_message_only,
    } refused {
        cluster_names, refresh_delay, request_timeout, rate_limit_settings, config_validators,
    });
    match ApiType::try_from(a.api_type) {
        Ok(ApiType::Grpc) => {}
        Ok(ApiType::DeltaGrpc) => ctx.error_at(
            "api_type",
            "DELTA_GRPC is not supported yet (use GRPC: state of the world)",
        ),
        _ => ctx.error_at("api_type", "only GRPC is supported"),
    }
    transport_v3(a.transport_api_version, "transport_api_version", ctx);
    if a.grpc_services.len() != 1 {
        ctx.error_at("grpc_services", "exactly one gRPC service is required");
    }
    let grpc = crate::grpc_service::grpc_cluster(
        &a.grpc_services.first().cloned(),
        "grpc_services[0]",
        ctx,
    )?;
    Some(Ads {
        grpc,
        set_node_on_first_message_only: a.set_node_on_first_message_only,
    })
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
    let source = ctx.at("config_source", |ctx| {
        ads_only(config_source(source, ctx)?, ctx)
    })?;
    Some(Rds {
        name: r.route_config_name.clone(),
        source,
    })
}

/// A config source of a named subscription (RDS, EDS): only ADS carries those yet.
pub fn ads_only(source: ConfigSource, ctx: &mut Ctx) -> Option<ConfigSource> {
    match source {
        ConfigSource::Ads { .. } => Some(source),
        ConfigSource::Path { .. } => {
            ctx.error("only ads is supported here yet (route configurations and endpoints come by name over ADS)");
            None
        }
    }
}

/// Converts a `ConfigSource` (`ctx` is at it).
pub fn config_source(s: &core::ConfigSource, ctx: &mut Ctx) -> Option<ConfigSource> {
    use core::config_source::ConfigSourceSpecifier as S;
    crate::fields!(ctx, s => core::ConfigSource {
        config_source_specifier: ["ads", "path", "path_config_source"], initial_fetch_timeout,
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
