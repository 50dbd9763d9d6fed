//! The translator: a mesh's resources into the Envoy v3 configuration of one proxy.
//! Pure functions, no I/O: a [`MeshView`] (the mesh's resources, typed, as one
//! consistent read gives them) and [`Options`] in, [`Resources`] out — listeners,
//! clusters and route configurations as Envoy's proto3 JSON (proto field names), which
//! the xDS server encodes and golden files keep readable.
//!
//! A virtual node's proxy (App Mesh's node id `mesh/<mesh>/virtualNode/<name>`), in
//! explicit-proxy mode (no traffic capture):
//!
//! - **inbound** ([`inbound`]): per listener of the node, an ingress listener (the
//!   first on `bind:ingress_port`, further ones on the next ports but the egress
//!   port) forwarding to the local app on `127.0.0.1:<port>`, with the
//!   listener's timeout, connection pool (circuit breakers) and health check of the
//!   local app;
//! - **outbound** ([`outbound`]): one egress listener on `bind:egress_port` whose
//!   virtual hosts are the node's backend virtual services (their name, with and without
//!   the port), routed as their provider says — a virtual router's routes (matches,
//!   weighted targets, retry policy, timeouts, in priority order) or a virtual node —
//!   to a cluster per target virtual node and port, discovered by DNS (`STRICT_DNS` for
//!   `ENDPOINTS`, `LOGICAL_DNS` for `LOADBALANCER`) or by EDS (registered instances,
//!   their assignments in [`Resources::endpoints`]), with the target listener's outlier
//!   detection.
//!
//! ferrymesh's extensions of the schema become Envoy's features ([`extensions`]): fault
//! injection, local rate limits and CORS as per-route filter configs, mirroring, header
//! changes, hash policies, retry back-off and budgets, load balancing policies, header
//! limits, further outlier detection settings.
//!
//! A virtual gateway's proxy is [`gateway`]'s: its listeners apply the gateway routes
//! and hand over to an egress listener built as a sidecar's.
//!
//! Cluster names are App Mesh's: `cds_ingress_<mesh>_<node>_<protocol>_<port>` (the
//! local app), `cds_egress_<mesh>_<node>_<protocol>_<port>` (a target); listeners and
//! route configurations are `lds_ingress_<port>`, `lds_egress`, `rds_ingress_<port>`,
//! `rds_egress`. As App Mesh, routes without a retry policy get its default one, and
//! every cluster its circuit breaker defaults (2,147,483,647 rather than Envoy's
//! 1,024) unless a connection pool says otherwise.

mod extensions;
pub mod gateway;
pub mod inbound;
pub mod outbound;
mod route;

pub use gateway::virtual_gateway;

use crate::manifest::Manifest;
use crate::model::gateway_route::GatewayRouteSpec;
use crate::model::instance::Instance;
use crate::model::kind::read_spec;
use crate::model::mesh::MeshSpec;
use crate::model::route::RouteSpec;
use crate::model::virtual_gateway::VirtualGatewaySpec;
use crate::model::virtual_node::{Duration, DurationUnit, Logging, VirtualNodeSpec};
use crate::model::virtual_router::VirtualRouterSpec;
use crate::model::virtual_service::VirtualServiceSpec;
use serde_json::{json, Value};
use std::collections::BTreeMap;
use std::net::SocketAddr;

/// A mesh's resources, typed.
#[derive(Debug, Clone, Default)]
pub struct MeshView {
    /// The mesh's name.
    pub name: String,
    /// Its spec.
    pub spec: MeshSpec,
    /// Virtual nodes by name.
    pub nodes: BTreeMap<String, VirtualNodeSpec>,
    /// Virtual services by name.
    pub services: BTreeMap<String, VirtualServiceSpec>,
    /// Virtual routers by name.
    pub routers: BTreeMap<String, VirtualRouterSpec>,
    /// Routes by router, then name.
    pub routes: BTreeMap<String, BTreeMap<String, RouteSpec>>,
    /// Virtual gateways by name.
    pub gateways: BTreeMap<String, VirtualGatewaySpec>,
    /// Gateway routes by gateway, then name.
    pub gateway_routes: BTreeMap<String, BTreeMap<String, GatewayRouteSpec>>,
    /// Registered instances by virtual node, then id.
    pub instances: BTreeMap<String, BTreeMap<String, Instance>>,
}

impl MeshView {
    /// The view of the mesh `name` among `manifests` (as an export or an import gives
    /// them; other meshes' are skipped).
    pub fn from_manifests(name: &str, manifests: &[Manifest]) -> Result<MeshView, String> {
        let mut view = MeshView {
            name: name.to_string(),
            ..MeshView::default()
        };
        for m in manifests {
            let of_mesh = match m.kind.as_str() {
                "Mesh" => m.metadata.name == name,
                _ => m.metadata.mesh.as_deref() == Some(name),
            };
            if !of_mesh {
                continue;
            }
            let spec = if m.spec.is_null() {
                json!({})
            } else {
                m.spec.clone()
            };
            let err = |e: crate::ApiError| format!("{}: {}", m.label(), e.message);
            let key = m.metadata.name.clone();
            match m.kind.as_str() {
                "Mesh" => view.spec = read_spec(&spec).map_err(err)?,
                "VirtualNode" => {
                    view.nodes.insert(key, read_spec(&spec).map_err(err)?);
                }
                "VirtualService" => {
                    view.services.insert(key, read_spec(&spec).map_err(err)?);
                }
                "VirtualRouter" => {
                    view.routers.insert(key, read_spec(&spec).map_err(err)?);
                }
                "Route" => {
                    let router = m.metadata.virtual_router.clone().unwrap_or_default();
                    let route = read_spec(&spec).map_err(err)?;
                    view.routes.entry(router).or_default().insert(key, route);
                }
                "VirtualGateway" => {
                    view.gateways.insert(key, read_spec(&spec).map_err(err)?);
                }
                "GatewayRoute" => {
                    let gateway = m.metadata.virtual_gateway.clone().unwrap_or_default();
                    let route = read_spec(&spec).map_err(err)?;
                    view.gateway_routes
                        .entry(gateway)
                        .or_default()
                        .insert(key, route);
                }
                _ => {}
            }
        }
        Ok(view)
    }
}

/// How proxies are set up (`ferry bootstrap` and `ferry control-plane` flags).
#[derive(Debug, Clone)]
pub struct Options {
    /// The address the ingress and egress listeners bind (explicit-proxy mode:
    /// `127.0.0.1`).
    pub bind: String,
    /// The first ingress listener's port (further listeners take the next ports, but
    /// not the egress port).
    pub ingress_port: u16,
    /// The egress listener's port.
    pub egress_port: u16,
    /// DNS resolvers for the generated DNS clusters (`--dns-resolver`); empty: the
    /// system's.
    pub dns_resolvers: Vec<SocketAddr>,
    /// Which proxy it is for: what ferry's data plane does not have yet (CORS,
    /// generated hash cookies) is left out of its configuration, with a note.
    pub proxy: Proxy,
}

/// The proxy a configuration is for.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Proxy {
    /// Envoy (1.40).
    Envoy,
    /// ferry.
    Ferry,
}

impl Default for Options {
    fn default() -> Options {
        Options {
            bind: "127.0.0.1".into(),
            ingress_port: 15000,
            egress_port: 15001,
            dns_resolvers: Vec::new(),
            proxy: Proxy::Envoy,
        }
    }
}

/// A proxy's configuration: Envoy v3 resources as proto3 JSON, each sorted by name.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Resources {
    /// `envoy.config.listener.v3.Listener`s.
    pub listeners: Vec<Value>,
    /// `envoy.config.cluster.v3.Cluster`s.
    pub clusters: Vec<Value>,
    /// `envoy.config.route.v3.RouteConfiguration`s.
    pub route_configurations: Vec<Value>,
    /// `envoy.config.endpoint.v3.ClusterLoadAssignment`s of the EDS clusters (from
    /// registered instances).
    pub endpoints: Vec<Value>,
    /// What could not be translated, and why (a TCP backend behind the HTTP egress
    /// listener, a service without a provider, …).
    pub notes: Vec<String>,
}

impl Resources {
    fn sort(&mut self) {
        let name = |v: &Value| v["name"].as_str().unwrap_or_default().to_string();
        self.listeners.sort_by_key(name);
        self.clusters.sort_by_key(name);
        self.route_configurations.sort_by_key(name);
        self.clusters.dedup_by(|a, b| a["name"] == b["name"]);
        let cluster_name = |v: &Value| v["cluster_name"].as_str().unwrap_or_default().to_string();
        self.endpoints.sort_by_key(cluster_name);
        self.endpoints
            .dedup_by(|a, b| a["cluster_name"] == b["cluster_name"]);
    }

    /// As one JSON document (for golden files and `ferry status`).
    pub fn to_json(&self) -> Value {
        json!({
            "listeners": self.listeners,
            "clusters": self.clusters,
            "route_configurations": self.route_configurations,
            "endpoints": self.endpoints,
            "notes": self.notes,
        })
    }
}

/// The configuration of the proxy of virtual node `node`.
pub fn virtual_node(view: &MeshView, node: &str, options: &Options) -> Result<Resources, String> {
    let spec = view
        .nodes
        .get(node)
        .ok_or_else(|| format!("virtualNode {node} does not exist in mesh {}", view.name))?;
    let mut out = Resources::default();
    inbound::translate(&view.name, node, spec, options, &mut out);
    outbound::translate(view, spec, options, &mut out);
    access_log(spec.logging.as_ref(), &mut out);
    out.sort();
    Ok(out)
}

/// A proxy's `logging.accessLog` on every connection manager and TCP proxy of its
/// listeners, inbound and outbound (as App Mesh): Envoy's file access log, with the
/// `text` format or the `json` one (Envoy's default format without either).
pub(crate) fn access_log(logging: Option<&Logging>, out: &mut Resources) {
    let Some(file) = logging
        .and_then(|l| l.access_log.as_ref())
        .and_then(|a| a.file.as_ref())
    else {
        return;
    };
    let mut config = json!({"path": file.path});
    if let Some(format) = &file.format {
        if let Some(text) = &format.text {
            config["log_format"] = json!({"text_format_source": {"inline_string": text}});
        } else if let Some(fields) = &format.json {
            let fields: serde_json::Map<String, Value> = fields
                .iter()
                .map(|f| (f.key.clone(), Value::String(f.value.clone())))
                .collect();
            config["log_format"] = json!({"json_format": fields});
        }
    }
    let log = json!([{
        "name": "envoy.access_loggers.file",
        "typed_config": typed("envoy.extensions.access_loggers.file.v3.FileAccessLog", config),
    }]);
    for listener in &mut out.listeners {
        for chain in listener["filter_chains"]
            .as_array_mut()
            .into_iter()
            .flatten()
        {
            for filter in chain["filters"].as_array_mut().into_iter().flatten() {
                filter["typed_config"]["access_log"] = log.clone();
            }
        }
    }
}

/// An App Mesh duration in milliseconds; `None` when unset.
pub(crate) fn millis_of(d: &Duration) -> Option<u64> {
    let value = d.value?;
    Some(match d.unit {
        Some(DurationUnit::S) => value.saturating_mul(1000),
        _ => value,
    })
}

/// An App Mesh duration as Envoy's (`"1.500s"`); `None` when unset.
pub(crate) fn duration(d: &Duration) -> Option<String> {
    let ms = millis_of(d)?;
    Some(if ms % 1000 == 0 {
        format!("{}s", ms / 1000)
    } else {
        format!("{}.{:03}s", ms / 1000, ms % 1000)
    })
}

/// Milliseconds as an Envoy duration.
pub(crate) fn millis(ms: u64) -> String {
    duration(&Duration {
        unit: Some(DurationUnit::Ms),
        value: Some(ms),
    })
    .unwrap_or_default()
}

/// An `Any` of Envoy's type `name` with `fields`.
pub(crate) fn typed(name: &str, fields: Value) -> Value {
    let mut out = json!({ "@type": format!("type.googleapis.com/{name}") });
    if let (Value::Object(out), Value::Object(fields)) = (&mut out, fields) {
        out.extend(fields);
    }
    out
}

/// The router filter, last of every HTTP filter chain.
pub(crate) fn router_filter() -> Value {
    json!({
        "name": "envoy.filters.http.router",
        "typed_config": typed("envoy.extensions.filters.http.router.v3.Router", json!({})),
    })
}

/// An HTTP connection manager with `route_config`, and `filters` before its router.
pub(crate) fn http_connection_manager(
    stat_prefix: &str,
    route_config: Value,
    mut filters: Vec<Value>,
) -> Value {
    filters.push(router_filter());
    json!({
        "name": "envoy.filters.network.http_connection_manager",
        "typed_config": typed(
            "envoy.extensions.filters.network.http_connection_manager.v3.HttpConnectionManager",
            json!({
                "stat_prefix": stat_prefix,
                "route_config": route_config,
                "http_filters": filters,
            }),
        ),
    })
}

/// A listener on `address:port` with one filter chain of `filters`.
pub(crate) fn listener(name: &str, address: &str, port: u16, filters: Vec<Value>) -> Value {
    json!({
        "name": name,
        "address": {"socket_address": {"address": address, "port_value": port}},
        "filter_chains": [{"filters": filters}],
    })
}

/// The cluster options that make its upstream connections HTTP/2.
pub(crate) fn http2_upstream() -> Value {
    json!({
        "envoy.extensions.upstreams.http.v3.HttpProtocolOptions": typed(
            "envoy.extensions.upstreams.http.v3.HttpProtocolOptions",
            json!({"explicit_http_config": {"http2_protocol_options": {}}}),
        )
    })
}

#[cfg(test)]
mod tests;
