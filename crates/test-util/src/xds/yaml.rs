//! Resources and bootstraps in YAML (Envoy's v3 JSON mapping), for the tests and the
//! benchmark of the xDS client.

use crate::free_port;
use std::net::SocketAddr;

/// A bootstrap whose listeners and clusters come over ADS from `xds` (an HTTP/2
/// static cluster), with an admin endpoint on a free port.
pub fn bootstrap(xds: SocketAddr) -> String {
    format!(
        r#"
node: {{id: node-1, cluster: mesh-a, locality: {{zone: z1}}}}
admin: {{address: {{socket_address: {{address: 127.0.0.1, port_value: {admin}}}}}}}
dynamic_resources:
  ads_config:
    api_type: GRPC
    transport_api_version: V3
    grpc_services: [{{envoy_grpc: {{cluster_name: xds_cluster}}}}]
  cds_config: {{ads: {{}}, resource_api_version: V3}}
  lds_config: {{ads: {{}}, resource_api_version: V3}}
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
        port = xds.port()
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
    hcm_listener(
        port,
        "rds: {route_config_name: routes, config_source: {ads: {}, resource_api_version: V3}}",
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
    format!(
        r#"
name: {name}
type: EDS
connect_timeout: 1s
eds_cluster_config: {{eds_config: {{ads: {{}}, resource_api_version: V3}}}}
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
