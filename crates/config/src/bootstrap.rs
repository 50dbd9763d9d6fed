//! The bootstrap: the whole static configuration of a proxy.

use crate::cluster::Cluster;
use crate::listener::Listener;
use crate::{ConfigError, ConfigErrors, Ctx};
use ferry_envoy_api::pb::envoy::config::bootstrap::v3 as pb;
use ferry_envoy_api::pb::envoy::config::core::v3 as core;
use ferry_envoy_api::{Format, Warning};
use std::collections::HashSet;
use std::net::SocketAddr;

/// A validated bootstrap.
#[derive(Debug, Clone)]
pub struct Bootstrap {
    /// `node.id` (overridden by `--service-node`).
    pub node_id: String,
    /// `node.cluster` (overridden by `--service-cluster`).
    pub node_cluster: String,
    /// `node.locality.zone` (the `zone` span tag).
    pub node_zone: String,
    /// `static_resources.listeners`.
    pub listeners: Vec<Listener>,
    /// `static_resources.clusters`.
    pub clusters: Vec<Cluster>,
    /// `admin`.
    pub admin: Option<Admin>,
    /// `cluster_manager.outlier_detection.event_log_path`: where outlier ejections and
    /// unejections are logged, one JSON object per line.
    pub outlier_event_log: Option<std::path::PathBuf>,
    /// `stats_config`, `stats_sinks`, `stats_flush_interval`.
    pub stats: crate::stats::Stats,
    /// `dynamic_resources`: listeners and clusters from xDS.
    pub dynamic: crate::dynamic::DynamicResources,
    /// `node` as written (an xDS client sends it as its identity).
    pub node: core::Node,
}

/// The admin endpoint.
#[derive(Debug, Clone)]
pub struct Admin {
    /// `address`.
    pub address: SocketAddr,
    /// `address.socket_address.ipv4_compat`.
    pub ipv4_compat: bool,
    /// `access_log_path` (deprecated in Envoy, still honoured).
    pub access_log_path: Option<String>,
}

/// A loaded config: the model, the decoded bootstrap (for `/config_dump`) and warnings.
#[derive(Debug, Clone)]
pub struct Loaded {
    /// The validated model.
    pub bootstrap: Bootstrap,
    /// The decoded bootstrap as proto3 JSON, compact (for admin `/config_dump`; kept as
    /// text because a parsed tree of a large config costs several KiB per cluster).
    pub json: String,
    /// Warnings (v2 names upgraded...).
    pub warnings: Vec<Warning>,
}

/// Decodes and validates a bootstrap that has no HTTP filters but the router (see
/// [`load_with`]).
pub fn load(text: &str, format: Format) -> Result<Loaded, ConfigErrors> {
    load_with(text, format, &crate::filters::NoExtensions)
}

/// Decodes and validates a bootstrap, converting filters with the factories of
/// `extensions`; every problem is reported, with its path.
pub fn load_with(
    text: &str,
    format: Format,
    extensions: &'static dyn crate::filters::Extensions,
) -> Result<Loaded, ConfigErrors> {
    // One descriptor pool for the whole load (it is dropped afterwards).
    let _pool = ferry_envoy_api::pool();
    let decoded = ferry_envoy_api::decode_bootstrap(text, format).map_err(|e| {
        ConfigErrors(vec![match e {
            ferry_envoy_api::DecodeError::Schema { path, message } => ConfigError { path, message },
            other => ConfigError {
                path: String::new(),
                message: other.to_string(),
            },
        }])
    })?;
    let mut ctx = Ctx::new(extensions);
    let bootstrap = from_proto(&decoded.message, &mut ctx);
    if !ctx.errors.is_empty() {
        return Err(ConfigErrors(ctx.errors));
    }
    let json = ferry_envoy_api::to_json(&decoded.dynamic)
        .map(|v| v.to_string())
        .unwrap_or_else(|| "null".to_string());
    Ok(Loaded {
        bootstrap,
        json,
        warnings: decoded.warnings,
    })
}

fn from_proto(b: &pb::Bootstrap, ctx: &mut Ctx) -> Bootstrap {
    crate::fields!(ctx, b => pb::Bootstrap {
        node, static_resources, dynamic_resources, admin, cluster_manager, stats_config,
        stats_sinks, stats_flush_interval,
    } refused {
        flags_path, watchdog, tracing, hds_config, overload_manager,
        enable_dispatcher_stats, layered_runtime, header_prefix, stats_server_version_override,
        use_tcp_for_dns_lookups, bootstrap_extensions, config_sources, default_config_source,
        default_socket_interface, certificate_provider_instances, node_context_params, watchdogs,
        fatal_actions, dns_resolution_config, inline_headers, perf_tracing_file_path,
        application_log_config, deferred_stat_options, grpc_async_client_manager_config,
        memory_allocator_manager, enable_worker_cpu_affinity,
    } refused_oneofs {
        stats_flush, stats_eviction,
    } refused_extensions {
        typed_dns_resolver_config, default_regex_engine, xds_delegate_extension,
        xds_config_tracker_extension, listener_manager,
    });
    let node = b.node.clone().unwrap_or_default();
    if let Some(n) = &b.node {
        ctx.at("node", |ctx| node_fields(n, ctx));
    }
    let sr = b.static_resources.clone().unwrap_or_default();
    let mut listeners: Vec<Listener> = Vec::new();
    let mut clusters: Vec<Cluster> = Vec::new();
    ctx.at("static_resources", |ctx| {
        crate::fields!(ctx, &sr => pb::bootstrap::StaticResources {
            listeners, clusters,
        } refused {
            secrets,
        });
        for (i, c) in sr.clusters.iter().enumerate() {
            if let Some(c) = ctx.at(format!("clusters[{i}]"), |ctx| {
                crate::cluster::from_proto(c, ctx)
            }) {
                if clusters.iter().any(|o| o.name == c.name) {
                    ctx.error_at(
                        &format!("clusters[{i}].name"),
                        format!("duplicate cluster {}", c.name),
                    );
                }
                clusters.push(c);
            }
        }
        let names: HashSet<&str> = clusters.iter().map(|c| c.name.as_str()).collect();
        for (i, l) in sr.listeners.iter().enumerate() {
            ctx.at(format!("listeners[{i}]"), |ctx| {
                let Some(l) = crate::listener::from_proto(l, i, ctx) else {
                    return;
                };
                check_clusters(&l, &names, ctx);
                if listeners.iter().any(|o| o.name == l.name) {
                    ctx.error_at("name", format!("duplicate listener {}", l.name));
                }
                if l.address.port() != 0 && listeners.iter().any(|o| o.address == l.address) {
                    ctx.error_at(
                        "address",
                        format!("{} is already used by another listener", l.address),
                    );
                }
                listeners.push(l);
            });
        }
    });
    let admin = b.admin.as_ref().and_then(|a| {
        ctx.at("admin", |ctx| {
            crate::fields!(ctx, a => pb::Admin {
                access_log_path, address,
            } refused {
                profile_path, socket_options, access_log, ignore_global_conn_limit, allow_paths,
            });
            let (address, ipv4_compat) =
                ctx.at("address", |c| crate::util::listen_addr(&a.address, c))?;
            Some(Admin {
                address,
                ipv4_compat,
                access_log_path: (!a.access_log_path.is_empty()).then(|| a.access_log_path.clone()),
            })
        })
    });
    let outlier_event_log = b.cluster_manager.as_ref().and_then(|cm| {
        ctx.at("cluster_manager", |ctx| {
            crate::fields!(ctx, cm => pb::ClusterManager {
                outlier_detection,
            } refused {
                local_cluster_name, upstream_bind_config, load_stats_config,
                enable_deferred_cluster_creation,
            });
            let o = cm.outlier_detection.as_ref()?;
            ctx.at("outlier_detection", |ctx| {
                crate::fields!(ctx, o => pb::cluster_manager::OutlierDetection {
                    event_log_path,
                } refused {
                    event_service,
                });
            });
            (!o.event_log_path.is_empty()).then(|| o.event_log_path.clone().into())
        })
    });
    let stats = crate::stats::from_proto(b, ctx);
    let dynamic = b
        .dynamic_resources
        .as_ref()
        .map(|d| {
            ctx.at("dynamic_resources", |ctx| {
                crate::dynamic::from_proto(d, ctx)
            })
        })
        .unwrap_or_default();
    for (i, s) in stats.sinks.iter().enumerate() {
        let (name, field) = match s {
            crate::stats::StatsSink::Statsd {
                target: crate::stats::StatsdTarget::Tcp(name),
                ..
            } => (name, "tcp_cluster_name"),
            crate::stats::StatsSink::OpenTelemetry(o) => {
                (&o.grpc.cluster, "grpc_service.envoy_grpc.cluster_name")
            }
            _ => continue,
        };
        if !clusters.iter().any(|c| c.name == *name) {
            ctx.error_at(
                &format!("stats_sinks[{i}].typed_config.{field}"),
                format!("unknown cluster {name}"),
            );
        }
    }
    Bootstrap {
        stats,
        node_id: node.id,
        node_zone: node
            .locality
            .as_ref()
            .map(|l| l.zone.clone())
            .unwrap_or_default(),
        node_cluster: node.cluster,
        listeners,
        clusters,
        admin,
        outlier_event_log,
        dynamic,
        node: b.node.clone().unwrap_or_default(),
    }
}

/// Declares the `node` (`ctx` at it); `from_proto` reads its `id`, `cluster` and
/// `locality.zone`.
fn node_fields(n: &core::Node, ctx: &mut Ctx) {
    crate::fields!(ctx, n => core::Node {
        id, cluster, metadata, locality,
    } refused {
        user_agent_name, extensions, client_features, listening_addresses, dynamic_parameters,
    } refused_oneofs {
        user_agent_version_type,
    });
    if let Some(l) = &n.locality {
        ctx.at("locality", |ctx| crate::cluster::locality_fields(l, ctx));
    }
}

/// Routes and TCP proxies must name clusters that exist (Envoy's `validate_clusters`
/// default for static route configs).
pub fn check_clusters(l: &Listener, names: &HashSet<&str>, ctx: &mut Ctx) {
    use crate::listener::TerminalFilter;
    use crate::route::{Action, ClusterSpecifier};
    for (i, fc) in l.filter_chains.iter().enumerate() {
        match &fc.filter {
            TerminalFilter::Filter(f) => {
                let Some(factory) = ctx.extensions.network_filter(f.config_type) else {
                    continue;
                };
                let short = factory.name().trim_start_matches("envoy.filters.network.");
                for c in factory.clusters(&f.config) {
                    if !names.contains(c.as_str()) {
                        ctx.error_at(
                            &format!("filter_chains[{i}]"),
                            format!("{short}: unknown cluster '{c}'"),
                        );
                    }
                }
            }
            TerminalFilter::Http(h) => {
                for log in &h.access_logs {
                    if let crate::access_log::Sink::OpenTelemetry(o) = &log.sink {
                        if !names.contains(o.grpc.cluster.as_str()) {
                            ctx.error_at(
                                &format!("filter_chains[{i}]"),
                                format!(
                                    "access_log open_telemetry: unknown cluster '{}'",
                                    o.grpc.cluster
                                ),
                            );
                        }
                    }
                }
                for vh in &h.route_config.virtual_hosts {
                    for r in &vh.routes {
                        let Action::Route(ra) = &r.action else {
                            continue;
                        };
                        let wanted: Vec<&str> = match &ra.cluster {
                            ClusterSpecifier::Name(n) => vec![n.as_str()],
                            ClusterSpecifier::Weighted(w) => {
                                w.clusters.iter().map(|c| c.name.as_str()).collect()
                            }
                            ClusterSpecifier::Header(_) => vec![],
                        };
                        for c in wanted {
                            if !names.contains(c) {
                                ctx.error_at(
                                    &format!("filter_chains[{i}]"),
                                    format!("route config {:?}: virtual host {:?}: unknown cluster '{c}'", h.route_config.name, vh.name),
                                );
                            }
                        }
                    }
                }
            }
        }
    }
}
