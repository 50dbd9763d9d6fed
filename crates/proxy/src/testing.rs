//! What the proxy's unit tests build their inputs from: a bootstrap with one HTTP
//! connection manager, its HCM config, a loopback connection, and a run of a filter
//! chain's request header hooks.

#![allow(clippy::unwrap_used, clippy::expect_used)]

use crate::http::connection::ConnInfo;
use crate::http::filter_manager::{FilterChain, FilterRequest};
use crate::http::local_reply::LocalReply;
use crate::stream_info::StreamInfo;
use ferry_config::hcm::HttpConnectionManager;
use ferry_config::listener::TerminalFilter;
use http::HeaderMap;
use std::sync::Arc;

/// A bootstrap with one listener `name` on 127.0.0.1:`port` whose connection manager
/// has one route, `match: {prefix: /}` plus `action` (e.g. `route: {cluster: a}`), and
/// the `clusters` YAML list (indented as under `static_resources`).
pub(crate) fn hcm_bootstrap(
    name: &str,
    port: u16,
    action: &str,
    clusters: &str,
) -> ferry_config::Bootstrap {
    let yaml = format!(
        r#"
static_resources:
  listeners:
  - name: {name}
    address: {{socket_address: {{address: 127.0.0.1, port_value: {port}}}}}
    filter_chains:
    - filters:
      - name: envoy.filters.network.http_connection_manager
        typed_config:
          "@type": type.googleapis.com/envoy.extensions.filters.network.http_connection_manager.v3.HttpConnectionManager
          stat_prefix: t
          http_filters: [{{name: envoy.filters.http.router, typed_config: {{"@type": type.googleapis.com/envoy.extensions.filters.http.router.v3.Router}}}}]
          route_config:
            virtual_hosts:
            - name: all
              domains: ["*"]
              routes: [{{match: {{prefix: /}}, {action}}}]
  clusters: {clusters}
"#
    );
    match crate::load(&yaml, ferry_config::Format::Yaml) {
        Ok(l) => l.bootstrap,
        Err(e) => panic!("{e}"),
    }
}

/// A static cluster `name` with one endpoint at 127.0.0.1:`port`, as a YAML flow item.
pub(crate) fn cluster(name: &str, port: u16) -> String {
    format!(
        "{{name: {name}, load_assignment: {{cluster_name: {name}, endpoints: [{{lb_endpoints: [{{endpoint: {{address: {{socket_address: {{address: 127.0.0.1, port_value: {port}}}}}}}}}]}}]}}}}"
    )
}

/// The connection manager of the bootstrap's first listener.
pub(crate) fn hcm_of(b: &ferry_config::Bootstrap) -> Arc<HttpConnectionManager> {
    match &b.listeners[0].filter_chains[0].filter {
        TerminalFilter::Http(h) => h.clone(),
        TerminalFilter::Filter(_) => panic!("not an HCM"),
    }
}

/// A downstream connection from and to 127.0.0.1:1.
pub(crate) fn loopback_conn() -> ConnInfo {
    let a: std::net::SocketAddr = ([127, 0, 0, 1], 1).into();
    ConnInfo::new(a, a, 1 << 20)
}

/// Runs `chain`'s request header hooks on `GET /` (authority `a`): the local reply,
/// if one answered, and the request headers the filters left.
pub(crate) async fn request_headers(chain: &FilterChain) -> (Option<LocalReply>, HeaderMap) {
    let conn = loopback_conn();
    let mut info = StreamInfo::default();
    let mut headers = HeaderMap::new();
    let mut rq = FilterRequest {
        headers: &mut headers,
        path: "/",
        method: "GET",
        authority: "a",
        cluster: None,
        rate_limits: &[],
        source_cluster: "",
        conn: &conn,
        info: &mut info,
    };
    let reply = chain.request_headers(&mut rq).await;
    (reply, headers)
}
