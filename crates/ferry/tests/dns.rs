//! DNS clusters: `STRICT_DNS` and `LOGICAL_DNS` clusters whose endpoint is
//! `localhost`, resolved with `dns_lookup_family: V4_ONLY` to the test's backends.

use ferry_test_util::diff::send;
use ferry_test_util::{backend, rewrite_bootstrap, Flavor, Request};
use std::collections::BTreeMap;

fn bootstrap(strict_port: u16, logical_port: u16) -> String {
    format!(
        r#"
static_resources:
  listeners:
  - name: dns_listener
    address: {{socket_address: {{address: 0.0.0.0, port_value: 10000}}}}
    filter_chains:
    - filters:
      - name: envoy.filters.network.http_connection_manager
        typed_config:
          "@type": type.googleapis.com/envoy.extensions.filters.network.http_connection_manager.v3.HttpConnectionManager
          stat_prefix: ingress
          route_config:
            virtual_hosts:
            - name: all
              domains: ["*"]
              routes:
              - match: {{prefix: "/strict"}}
                route: {{cluster: strict}}
              - match: {{prefix: "/logical"}}
                route: {{cluster: logical}}
          http_filters:
          - name: envoy.filters.http.router
            typed_config:
              "@type": type.googleapis.com/envoy.extensions.filters.http.router.v3.Router
  clusters:
  - name: strict
    type: STRICT_DNS
    dns_lookup_family: V4_ONLY
    load_assignment:
      cluster_name: strict
      endpoints:
      - lb_endpoints:
        - endpoint: {{address: {{socket_address: {{address: localhost, port_value: {strict_port}}}}}}}
  - name: logical
    type: LOGICAL_DNS
    dns_lookup_family: V4_ONLY
    load_assignment:
      cluster_name: logical
      endpoints:
      - lb_endpoints:
        - endpoint: {{address: {{socket_address: {{address: localhost, port_value: {logical_port}}}}}}}
"#
    )
}

async fn check(flavor: Flavor) {
    let strict = backend::start("strict").await;
    let logical = backend::start("logical").await;
    // No endpoint is remapped: `localhost` must be resolved by the proxy.
    let rw = rewrite_bootstrap(
        &bootstrap(strict.addr().port(), logical.addr().port()),
        &BTreeMap::new(),
    )
    .unwrap_or_else(|e| panic!("{e:#}"));
    let proxy = ferry_test_util::proc::start(flavor, &rw.yaml)
        .await
        .unwrap_or_else(|e| panic!("{e:#}"));
    let port = proxy.listener_port().unwrap_or_default();
    for (path, want) in [("/strict/a", "strict"), ("/logical/b", "logical")] {
        // The first resolution may still be in flight when the proxy reports ready;
        // retry within a deadline until the backend answers.
        let deadline = tokio::time::Instant::now() + std::time::Duration::from_secs(10);
        let o = loop {
            let o = send(port, &Request::get(path))
                .await
                .unwrap_or_else(|e| panic!("{e:#}"));
            if o.status == 200 || tokio::time::Instant::now() >= deadline {
                break o;
            }
            tokio::time::sleep(std::time::Duration::from_millis(50)).await;
        };
        assert_eq!(
            o.status,
            200,
            "{flavor} {path}: {}\nlog:\n{}",
            o.body_text(),
            proxy.log()
        );
        assert_eq!(o.header("x-backend"), Some(want), "{flavor} {path}");
        let echo = o.echo().unwrap_or_else(|| panic!("{flavor}: no echo"));
        assert_eq!(echo["path"], path, "{flavor}");
    }
    assert!(
        strict.requests() >= 1 && logical.requests() >= 1,
        "{flavor}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn strict_and_logical_dns_clusters_resolve_localhost() {
    check(Flavor::Ferry).await;
    if ferry_test_util::require_envoy() {
        check(Flavor::Envoy).await;
    }
}
