//! A proxy's outbound side: the egress listener, whose virtual hosts are the virtual
//! services it calls (a node's backends, a gateway's targets), routed as their
//! providers say, and a cluster per target virtual node and port.

use super::extensions::{self, Uses};
use super::route::{default_retry_policy, header, http_match, retry_policy, specificity, timeouts};
use super::{duration, http2_upstream, http_connection_manager, listener, typed, MeshView};
use super::{Options, Resources};
use crate::model::extensions::RouteExtensions;
use crate::model::route::{GrpcRoute, HttpRoute, RetryPolicy, RouteAction, RouteSpec};
use crate::model::virtual_node::{DnsResponseType, RequestTimeout, VirtualNodeSpec};
use crate::model::{IpPreference, PortProtocol};
use serde_json::{json, Value};

/// Adds the egress listener, its route configuration and the target clusters of the
/// node of `spec` to `out`.
pub(super) fn translate(
    view: &MeshView,
    spec: &VirtualNodeSpec,
    options: &Options,
    out: &mut Resources,
) {
    let backends: Vec<&str> = spec
        .backends
        .iter()
        .filter_map(|b| b.virtual_service.as_ref())
        .map(|b| b.virtual_service_name.as_str())
        .collect();
    egress(view, backends, options, out);
}

/// Adds an egress listener that routes to the virtual services `backends` (a node's
/// backends, a gateway's targets), its route configuration and their clusters.
pub(super) fn egress(view: &MeshView, backends: Vec<&str>, options: &Options, out: &mut Resources) {
    let mut egress = Egress {
        view,
        options,
        out,
        uses: Uses::default(),
    };
    let hosts = egress.virtual_hosts(backends);
    let filters = extensions::http_filters(egress.uses);
    let route_config = json!({"name": "rds_egress", "virtual_hosts": hosts});
    out.listeners.push(listener(
        "lds_egress",
        &options.bind,
        options.egress_port,
        vec![http_connection_manager("egress", route_config, filters)],
    ));
}

/// The egress side being translated: the mesh, the options, the resources so far, and
/// the filters its routes need.
struct Egress<'a> {
    view: &'a MeshView,
    options: &'a Options,
    out: &'a mut Resources,
    uses: Uses,
}

/// Where a route sends requests.
enum Target {
    /// A route action (`cluster` or `weighted_clusters`) and the clusters it names.
    Route(Value, Vec<String>),
    /// Nowhere: every weight is 0, which App Mesh allows and Envoy does not (a 503).
    Unavailable,
}

/// The domains of `service` on `port`: its name with the port, and without it when the
/// port is the provider's only one.
fn domains(service: &str, port: u32, only: bool) -> Value {
    if only {
        json!([service, format!("{service}:{port}")])
    } else {
        json!([format!("{service}:{port}")])
    }
}

impl Egress<'_> {
    fn note(&mut self, note: String) {
        self.out.notes.push(note);
    }

    /// The virtual hosts of the virtual services `backends`.
    fn virtual_hosts(&mut self, mut backends: Vec<&str>) -> Vec<Value> {
        backends.sort_unstable();
        backends.dedup();
        let mut hosts = Vec::new();
        for service in backends {
            let provider = self
                .view
                .services
                .get(service)
                .and_then(|s| s.provider.as_ref());
            match provider {
                Some(p) if p.virtual_router.is_some() => {
                    let router = p.virtual_router.as_ref().map(|r| r.virtual_router_name.as_str());
                    self.router_hosts(service, router.unwrap_or_default(), &mut hosts);
                }
                Some(p) if p.virtual_node.is_some() => {
                    let node = p.virtual_node.as_ref().map(|n| n.virtual_node_name.as_str());
                    self.node_hosts(service, node.unwrap_or_default(), &mut hosts);
                }
                _ => self.note(format!(
                    "backend {service}: not a virtual service of mesh {} with a provider; not routed",
                    self.view.name
                )),
            }
        }
        hosts
    }

    /// The virtual hosts of a service a virtual router provides: one per router
    /// listener, its routes in App Mesh's order.
    fn router_hosts(&mut self, service: &str, router: &str, hosts: &mut Vec<Value>) {
        let view = self.view;
        let Some(spec) = view.routers.get(router) else {
            self.note(format!(
                "backend {service}: virtualRouter {router} does not exist"
            ));
            return;
        };
        let empty = Default::default();
        let routes = view.routes.get(router).unwrap_or(&empty);
        // By priority (0 first; without one, after those with one); within one
        // priority the more specific first, as App Mesh ordered routes before it had
        // priorities (exact paths, then longer prefixes), then by name.
        let mut ordered: Vec<(&String, &RouteSpec)> = routes.iter().collect();
        ordered.sort_by_key(|(name, r)| {
            (
                r.priority.unwrap_or(u32::MAX),
                std::cmp::Reverse(specificity(r)),
                (*name).clone(),
            )
        });
        let only = spec.listeners.len() == 1;
        for l in &spec.listeners {
            let port = l.port_mapping.port;
            let mut envoy_routes = Vec::new();
            for (name, r) in &ordered {
                let translated = match (&r.http_route, &r.http2_route, &r.grpc_route) {
                    (Some(h), _, _) | (None, Some(h), _) => self.http_route(name, h, port),
                    (None, None, Some(g)) => self.grpc_route(name, g, port),
                    _ => {
                        self.note(format!(
                            "route {router}/{name}: a TCP route is not reachable through the HTTP egress listener"
                        ));
                        None
                    }
                };
                envoy_routes.extend(translated);
            }
            hosts.push(json!({
                "name": format!("{service}_{port}"),
                "domains": domains(service, port, only),
                "routes": envoy_routes,
            }));
        }
    }

    /// The virtual hosts of a service a virtual node provides: everything to the
    /// node, on each of its listeners.
    fn node_hosts(&mut self, service: &str, node: &str, hosts: &mut Vec<Value>) {
        let Some(spec) = self.view.nodes.get(node) else {
            self.note(format!(
                "backend {service}: virtualNode {node} does not exist"
            ));
            return;
        };
        let only = spec.listeners.len() == 1;
        for l in &spec.listeners {
            let port = l.port_mapping.port;
            let Some(cluster) = self.target_cluster(node, Some(port)) else {
                continue;
            };
            hosts.push(json!({
                "name": format!("{service}_{port}"),
                "domains": domains(service, port, only),
                "routes": [{"match": {"prefix": "/"}, "route": {
                    "cluster": cluster,
                    "retry_policy": default_retry_policy(),
                }}],
            }));
        }
    }

    /// An HTTP or HTTP/2 route on router listener `port` (`None` when its `match.port`
    /// is another).
    fn http_route(&mut self, name: &str, r: &HttpRoute, port: u32) -> Option<Value> {
        if r.matcher.port.is_some_and(|p| p != port) {
            return None;
        }
        let matcher = http_match(&r.matcher);
        self.route(
            name,
            matcher,
            &r.action,
            r.retry_policy.as_ref(),
            r.timeout.as_ref(),
            &r.extensions,
            false,
        )
    }

    /// A gRPC route on router listener `port`.
    fn grpc_route(&mut self, name: &str, r: &GrpcRoute, port: u32) -> Option<Value> {
        if r.matcher.port.is_some_and(|p| p != port) {
            return None;
        }
        let m = &r.matcher;
        let mut matcher = match (&m.service_name, &m.method_name) {
            (Some(s), Some(method)) => json!({"path": format!("/{s}/{method}")}),
            (Some(s), None) => json!({"prefix": format!("/{s}/")}),
            _ => json!({"prefix": "/"}),
        };
        matcher["grpc"] = json!({});
        if let Some(metadata) = &m.metadata {
            matcher["headers"] = json!(metadata.iter().map(header).collect::<Vec<_>>());
        }
        self.route(
            name,
            matcher,
            &r.action,
            r.retry_policy.as_ref(),
            r.timeout.as_ref(),
            &r.extensions,
            true,
        )
    }

    /// A route: its match, targets, retry policy, timeouts and extensions.
    #[allow(clippy::too_many_arguments)]
    fn route(
        &mut self,
        name: &str,
        matcher: Value,
        action: &RouteAction,
        retry: Option<&RetryPolicy>,
        timeout: Option<&RequestTimeout>,
        ext: &RouteExtensions,
        grpc: bool,
    ) -> Option<Value> {
        // A target that cannot be reached makes the route a 503 (noted), rather than
        // let its requests fall through to routes after it.
        let target = self.weighted(action).unwrap_or(Target::Unavailable);
        let mut route = match target {
            Target::Unavailable => {
                json!({"name": name, "match": matcher, "direct_response": {"status": 503}})
            }
            Target::Route(mut action, clusters) => {
                if retry.is_none() {
                    action["retry_policy"] = default_retry_policy();
                }
                if let Some(p) = retry {
                    action["retry_policy"] = retry_policy(p, grpc);
                    extensions::retry(&p.extensions, &mut action["retry_policy"]);
                    if let Some(budget) = extensions::retry_budget(&p.extensions) {
                        self.retry_budget(&clusters, budget);
                    }
                }
                timeouts(&mut action, timeout);
                json!({"name": name, "match": matcher, "route": action})
            }
        };
        // A mirror that cannot be reached is left out (noted); the route stays.
        let mirror = match &ext.mirror {
            Some(m) => self.target_cluster(&m.virtual_node, None),
            None => None,
        };
        let (options, out) = (self.options, &mut *self.out);
        extensions::route(
            ext,
            &mut route,
            mirror,
            options,
            &mut self.uses,
            &mut out.notes,
        );
        Some(route)
    }

    /// A route's weighted targets as Envoy's `weighted_clusters` (a single target with
    /// a weight as its `cluster`).
    fn weighted(&mut self, action: &RouteAction) -> Option<Target> {
        let mut clusters = Vec::new();
        for t in &action.weighted_targets {
            let name = self.target_cluster(&t.virtual_node, t.port)?;
            if t.weight > 0 {
                clusters.push((name, t.weight));
            }
        }
        let names: Vec<String> = clusters.iter().map(|(n, _)| n.clone()).collect();
        Some(match clusters.as_slice() {
            [] => Target::Unavailable,
            [(one, _)] => Target::Route(json!({"cluster": one}), names),
            _ => {
                let weighted: Vec<Value> = clusters
                    .iter()
                    .map(|(name, weight)| json!({"name": name, "weight": weight}))
                    .collect();
                Target::Route(json!({"weighted_clusters": {"clusters": weighted}}), names)
            }
        })
    }

    /// Gives `clusters` the retry budget of a route that retries to them (the first
    /// route's, when several routes reach one cluster).
    fn retry_budget(&mut self, clusters: &[String], budget: Value) {
        for c in self.out.clusters.iter_mut() {
            let named = c["name"]
                .as_str()
                .is_some_and(|n| clusters.iter().any(|x| x == n));
            if !named {
                continue;
            }
            let thresholds = &mut c["circuit_breakers"]["thresholds"];
            if !thresholds.is_array() {
                *thresholds = json!([{}]);
            }
            if thresholds[0].get("retry_budget").is_none() {
                thresholds[0]["retry_budget"] = budget.clone();
            }
        }
    }

    /// Adds the cluster of virtual node `node` on `port` (its first listener's when not
    /// given): its name, or `None` (with a note) when there is no such node or listener.
    fn target_cluster(&mut self, node: &str, port: Option<u32>) -> Option<String> {
        let (view, options) = (self.view, self.options);
        let out = &mut *self.out;
        let Some(spec) = view.nodes.get(node) else {
            out.notes
                .push(format!("target virtualNode {node} does not exist"));
            return None;
        };
        let listener = match port {
            Some(p) => spec.listeners.iter().find(|l| l.port_mapping.port == p),
            None => spec.listeners.first(),
        };
        let Some(listener) = listener else {
            out.notes.push(format!(
                "target virtualNode {node}: no listener on {port:?}"
            ));
            return None;
        };
        let port = listener.port_mapping.port;
        let protocol = serde_json::to_value(listener.port_mapping.protocol).unwrap_or_default();
        let name = format!(
            "cds_egress_{}_{node}_{}_{port}",
            view.name,
            protocol.as_str().unwrap_or_default()
        );
        let discovery = spec.service_discovery.as_ref();
        let mut cluster = match discovery.and_then(|d| d.dns.as_ref()) {
            Some(dns) => {
                let kind = match dns.response_type {
                    Some(DnsResponseType::Endpoints) => "STRICT_DNS",
                    _ => "LOGICAL_DNS",
                };
                // The node's IP preference, else the mesh's.
                let preference = dns.ip_preference.or_else(|| {
                    view.spec
                        .service_discovery
                        .as_ref()
                        .and_then(|d| d.ip_preference)
                });
                let family = match preference {
                    Some(IpPreference::Ipv4Only) => "V4_ONLY",
                    Some(IpPreference::Ipv6Only) => "V6_ONLY",
                    Some(IpPreference::Ipv4Preferred) => "V4_PREFERRED",
                    Some(IpPreference::Ipv6Preferred) | None => "AUTO",
                };
                let mut c = json!({
                    "name": name,
                    "type": kind,
                    "dns_lookup_family": family,
                    "load_assignment": {
                        "cluster_name": name,
                        "endpoints": [{"lb_endpoints": [{"endpoint": {"address": {"socket_address": {
                            "address": dns.hostname,
                            "port_value": port,
                        }}}}]}],
                    },
                });
                if !options.dns_resolvers.is_empty() {
                    let resolvers: Vec<Value> = options
                    .dns_resolvers
                    .iter()
                    .map(|a| json!({"socket_address": {"address": a.ip().to_string(), "port_value": a.port()}}))
                    .collect();
                    c["typed_dns_resolver_config"] = json!({
                        "name": "envoy.network.dns_resolver.cares",
                        "typed_config": typed(
                            "envoy.extensions.network.dns_resolver.cares.v3.CaresDnsResolverConfig",
                            json!({"resolvers": resolvers}),
                        ),
                    });
                }
                c
            }
            // Registered instances (App Mesh's Cloud Map), by EDS.
            None => {
                let service = format!("{}/{node}/{port}", view.name);
                out.endpoints
                    .push(assignment(view, node, spec, &service, port));
                json!({
                    "name": name,
                    "type": "EDS",
                    "eds_cluster_config": {
                        "service_name": service,
                        "eds_config": {"ads": {}, "resource_api_version": "V3"},
                    },
                })
            }
        };
        cluster["connect_timeout"] = json!("1s");
        if matches!(
            listener.port_mapping.protocol,
            PortProtocol::Http2 | PortProtocol::Grpc
        ) {
            cluster["typed_extension_protocol_options"] = http2_upstream();
        }
        // App Mesh's circuit breaker defaults (callers' side), and the target
        // listener's health check, checked by the callers as App Mesh does.
        cluster["circuit_breakers"] = json!({"thresholds": [super::inbound::thresholds(None)]});
        if let Some(h) = &listener.health_check {
            cluster["health_checks"] = json!([super::inbound::health_check(h)]);
        }
        if let Some(o) = &listener.outlier_detection {
            // App Mesh's four settings describe consecutive 5xx ejection only: Envoy's
            // success-rate ejection (on by default) stays off unless asked for.
            let mut detection = json!({
                "consecutive_5xx": o.max_server_errors,
                "max_ejection_percent": o.max_ejection_percent,
                "enforcing_success_rate": 0,
            });
            if let Some(d) = duration(&o.interval) {
                detection["interval"] = json!(d);
            }
            if let Some(d) = duration(&o.base_ejection_duration) {
                detection["base_ejection_time"] = json!(d);
            }
            extensions::outlier(&o.extensions, &mut detection);
            cluster["outlier_detection"] = detection;
        }
        if let Some(lb) = &listener.extensions.load_balancer {
            extensions::load_balancer(lb, &mut cluster);
        }
        if !out.clusters.iter().any(|c| c["name"] == name) {
            out.clusters.push(cluster);
        }
        Some(name)
    }
}

/// The assignment of EDS service `service`: the node's registered instances that have
/// its `awsCloudMap.attributes`, with their health; each on its own port when the node
/// has one listener, else on the listener's `port`.
fn assignment(
    view: &MeshView,
    node: &str,
    spec: &VirtualNodeSpec,
    service: &str,
    port: u32,
) -> Value {
    let wanted: Vec<(String, String)> = spec
        .service_discovery
        .as_ref()
        .and_then(|d| d.aws_cloud_map.as_ref())
        .map(|c| {
            c.attributes
                .iter()
                .map(|a| (a.key.clone(), a.value.clone()))
                .collect()
        })
        .unwrap_or_default();
    let one_listener = spec.listeners.len() == 1;
    let endpoints: Vec<Value> = view
        .instances
        .get(node)
        .into_iter()
        .flatten()
        .filter(|(_, i)| i.matches(&wanted))
        .map(|(_, i)| {
            let port = if one_listener { i.port } else { port };
            json!({
                "endpoint": {"address": {"socket_address": {"address": i.address, "port_value": port}}},
                "health_status": i.health.envoy(),
            })
        })
        .collect();
    json!({"cluster_name": service, "endpoints": [{"lb_endpoints": endpoints}]})
}
