//! Resources and bootstraps in YAML (Envoy's v3 JSON mapping), for the tests and the
//! benchmark of the xDS client.

use crate::free_port;
use std::net::SocketAddr;

/// How the proxy reaches the control plane.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Transport {
    /// ADS, state of the world.
    Ads,
    /// ADS, delta.
    DeltaAds,
    /// A stream of its own per type (`api_config_source`), state of the world.
    Own,
    /// A stream of its own per type, delta.
    DeltaOwn,
}

impl Transport {
    /// Every transport.
    pub const ALL: [Transport; 4] = [
        Transport::Ads,
        Transport::DeltaAds,
        Transport::Own,
        Transport::DeltaOwn,
    ];

    fn api_type(self) -> &'static str {
        match self {
            Transport::Ads | Transport::Own => "GRPC",
            Transport::DeltaAds | Transport::DeltaOwn => "DELTA_GRPC",
        }
    }

    /// A `ConfigSource` on one line: `ads`, or an `api_config_source` to `xds_cluster`.
    pub fn config_source(self) -> String {
        match self {
            Transport::Ads | Transport::DeltaAds => "{ads: {}, resource_api_version: V3}".into(),
            Transport::Own | Transport::DeltaOwn => format!(
                "{{api_config_source: {{api_type: {}, transport_api_version: V3, grpc_services: [{{envoy_grpc: {{cluster_name: xds_cluster}}}}]}}, resource_api_version: V3}}",
                self.api_type()
            ),
        }
    }

    /// `ads_config` (with its key), or nothing.
    fn ads_config(self) -> String {
        match self {
            Transport::Ads | Transport::DeltaAds => format!(
                "ads_config: {{api_type: {}, transport_api_version: V3, grpc_services: [{{envoy_grpc: {{cluster_name: xds_cluster}}}}]}}",
                self.api_type()
            ),
            Transport::Own | Transport::DeltaOwn => String::new(),
        }
    }
}

/// A bootstrap whose listeners and clusters come over ADS from `xds` (an HTTP/2
/// static cluster), with an admin endpoint on a free port.
pub fn bootstrap(xds: SocketAddr) -> String {
    bootstrap_over(xds, Transport::Ads)
}

/// A bootstrap whose listeners and clusters come from `xds` over `transport`.
pub fn bootstrap_over(xds: SocketAddr, transport: Transport) -> String {
    format!(
        r#"
node: {{id: node-1, cluster: mesh-a, locality: {{zone: z1}}}}
admin: {{address: {{socket_address: {{address: 127.0.0.1, port_value: {admin}}}}}}}
dynamic_resources:
  {ads}
  cds_config: {source}
  lds_config: {source}
static_resources:
  clusters:
  - name: xds_cluster
    type: STATIC
    typed_extension_protocol_options:
      envoy.extensions.upstreams.http.v3.HttpProtocolOptions:
        "@type": type.googleapis.com/envoy.extensions.upstreams.http.v3.HttpProtocolOptions
        explicit_http_config: {{http2_protocol_options: {{}}}}
    load_assignment:
      cluster_name: xds_cluster
      endpoints:
      - lb_endpoints:
        - endpoint: {{address: {{socket_address: {{address: 127.0.0.1, port_value: {port}}}}}}}
"#,
        admin = free_port(),
        port = xds.port(),
        ads = transport.ads_config(),
        source = transport.config_source(),
    )
}

/// A STATIC cluster `name` with the one host `addr` (on loopback).
pub fn backend_cluster(name: &str, addr: SocketAddr) -> String {
    format!(
        r#"
name: {name}
type: STATIC
connect_timeout: 1s
load_assignment:
  cluster_name: {name}
  endpoints:
  - lb_endpoints:
    - endpoint: {{address: {{socket_address: {{address: 127.0.0.1, port_value: {port}}}}}}}
"#,
        port = addr.port()
    )
}

/// A listener on `port` whose one route is `action` (a `route:` or `direct_response:`).
pub fn http_listener(port: u16, action: &str) -> String {
    hcm_listener(
        port,
        &format!(
            "route_config: {{virtual_hosts: [{{name: all, domains: [\"*\"], routes: [{{match: {{prefix: \"/\"}}, {action}}}]}}]}}"
        ),
    )
}

/// A listener with a connection manager on `rds: {route_config_name: routes}`.
pub fn rds_listener(port: u16) -> String {
    rds_listener_from(port, &Transport::Ads.config_source())
}

/// A listener whose route configuration `routes` comes from `source` (a
/// `ConfigSource` on one line).
pub fn rds_listener_from(port: u16, source: &str) -> String {
    hcm_listener(
        port,
        &format!("rds: {{route_config_name: routes, config_source: {source}}}"),
    )
}

/// A listener `ingress` on `port` with a connection manager whose routes come from
/// `routes` (its `route_config:` or `rds:`, on one line).
fn hcm_listener(port: u16, routes: &str) -> String {
    format!(
        r#"
name: ingress
address: {{socket_address: {{address: 127.0.0.1, port_value: {port}}}}}
filter_chains:
- filters:
  - name: envoy.filters.network.http_connection_manager
    typed_config:
      "@type": type.googleapis.com/envoy.extensions.filters.network.http_connection_manager.v3.HttpConnectionManager
      stat_prefix: ingress
      {routes}
      http_filters:
      - name: envoy.filters.http.router
        typed_config: {{"@type": type.googleapis.com/envoy.extensions.filters.http.router.v3.Router}}
"#
    )
}

/// The route configuration `routes`, whose one route is `action`.
pub fn routes(action: &str) -> String {
    format!(
        r#"
name: routes
virtual_hosts:
- name: all
  domains: ["*"]
  routes: [{{match: {{prefix: "/"}}, {action}}}]
"#
    )
}

/// An EDS cluster `name`, its assignment from ADS.
pub fn eds_cluster(name: &str) -> String {
    eds_cluster_from(name, &Transport::Ads.config_source())
}

/// An EDS cluster `name`, its assignment from `source` (a `ConfigSource` on one line).
pub fn eds_cluster_from(name: &str, source: &str) -> String {
    format!(
        r#"
name: {name}
type: EDS
connect_timeout: 1s
eds_cluster_config: {{eds_config: {source}}}
"#
    )
}

/// The assignment of `name`: one locality with `backends` (on loopback).
pub fn assignment(name: &str, backends: &[SocketAddr]) -> String {
    let endpoints: Vec<String> = backends
        .iter()
        .map(|a| {
            format!(
                "    - endpoint: {{address: {{socket_address: {{address: 127.0.0.1, port_value: {}}}}}}}",
                a.port()
            )
        })
        .collect();
    format!(
        "cluster_name: {name}\nendpoints:\n- lb_endpoints:\n{}\n",
        endpoints.join("\n")
    )
}

/// Writes `text` to `dir/name` by moving a temporary file into place, as Envoy's file
/// sources expect an update to be made.
pub fn move_into_place(dir: &std::path::Path, name: &str, text: &str) {
    let tmp = dir.join(format!(".{name}.tmp"));
    std::fs::write(&tmp, text).unwrap_or_else(|e| panic!("{e}"));
    std::fs::rename(&tmp, dir.join(name)).unwrap_or_else(|e| panic!("{e}"));
}

/// A file source's `DiscoveryResponse` (`resources:`), from resources written in YAML
/// at an indent of 2.
pub fn discovery_file(type_url: &str, resources: &[String]) -> String {
    let mut out = String::from("resources:\n");
    for r in resources {
        let mut lines = r.trim_start_matches('\n').lines();
        out.push_str(&format!("- \"@type\": {type_url}\n"));
        for line in lines.by_ref() {
            out.push_str(&format!("  {line}\n"));
        }
    }
    out
}
