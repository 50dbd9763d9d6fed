//! DNS clusters: `STRICT_DNS` and `LOGICAL_DNS` clusters whose endpoint is
//! `localhost`, resolved with `dns_lookup_family: V4_ONLY` to the test's backends.

use ferry_test_util::bootstrap::HcmBootstrap;
use ferry_test_util::diff::send;
use ferry_test_util::{backend, rewrite_bootstrap, Flavor, Request};
use std::collections::BTreeMap;

fn bootstrap(strict_port: u16, logical_port: u16) -> String {
    let dns = |name: &str, kind: &str, port: u16| {
        format!(
            "name: {name}
type: {kind}
dns_lookup_family: V4_ONLY
load_assignment:
  cluster_name: {name}
  endpoints:
  - lb_endpoints:
    - endpoint: {{address: {{socket_address: {{address: localhost, port_value: {port}}}}}}}"
        )
    };
    HcmBootstrap::new()
        .listener_name("dns_listener")
        .route("match: {prefix: \"/strict\"}\nroute: {cluster: strict}")
        .route("match: {prefix: \"/logical\"}\nroute: {cluster: logical}")
        .cluster_yaml(&dns("strict", "STRICT_DNS", strict_port))
        .cluster_yaml(&dns("logical", "LOGICAL_DNS", logical_port))
        .yaml()
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

/// A STRICT_DNS cluster asking the test's own DNS server (c-ares `resolvers`), with a
/// refresh rate of an hour: only `respect_dns_ttl` makes it see a changed answer.
fn ttl_bootstrap(dns: std::net::SocketAddr, port: u16) -> String {
    HcmBootstrap::new()
        .listener_name("ttl_listener")
        .cluster_yaml(&format!(
            r#"
            name: svc
            type: STRICT_DNS
            dns_lookup_family: V4_ONLY
            dns_refresh_rate: 3600s
            respect_dns_ttl: true
            typed_dns_resolver_config:
              name: envoy.network.dns_resolver.cares
              typed_config:
                "@type": type.googleapis.com/envoy.extensions.network.dns_resolver.cares.v3.CaresDnsResolverConfig
                resolvers:
                - socket_address: {{address: {ip}, port_value: {dns_port}}}
            load_assignment:
              cluster_name: svc
              endpoints:
              - lb_endpoints:
                - endpoint: {{address: {{socket_address: {{address: svc.ferry.test, port_value: {port}}}}}}}"#,
            ip = dns.ip(),
            dns_port = dns.port(),
        ))
        .yaml()
}

/// Sends GET / until `done` accepts what came back, or 20 s pass; returns the last answer.
async fn poll(
    port: u16,
    done: impl Fn(&ferry_test_util::Observed) -> bool,
) -> ferry_test_util::Observed {
    let deadline = tokio::time::Instant::now() + std::time::Duration::from_secs(20);
    loop {
        let o = send(port, &Request::get("/"))
            .await
            .unwrap_or_else(|e| panic!("{e:#}"));
        if done(&o) || tokio::time::Instant::now() >= deadline {
            return o;
        }
        tokio::time::sleep(std::time::Duration::from_millis(100)).await;
    }
}

async fn check_ttl(flavor: Flavor) {
    use ferry_test_util::dns::DnsServer;
    use std::net::{IpAddr, Ipv4Addr, SocketAddr};
    const NAME: &str = "svc.ferry.test";
    let dns = DnsServer::start().await.unwrap_or_else(|e| panic!("{e:#}"));
    // Two backends on one port, at 127.0.0.1 and 127.0.0.2: DNS decides which is used.
    let (a, b) = loop {
        let port = ferry_test_util::free_port();
        let Ok(a) = backend::try_start_at("a", SocketAddr::from(([127, 0, 0, 1], port))).await
        else {
            continue;
        };
        if let Ok(b) = backend::try_start_at("b", SocketAddr::from(([127, 0, 0, 2], port))).await {
            break (a, b);
        }
    };
    dns.set(NAME, &[IpAddr::V4(Ipv4Addr::new(127, 0, 0, 1))], 1);
    let rw = rewrite_bootstrap(&ttl_bootstrap(dns.addr, a.addr().port()), &BTreeMap::new())
        .unwrap_or_else(|e| panic!("{e:#}"));
    let proxy = ferry_test_util::proc::start(flavor, &rw.yaml)
        .await
        .unwrap_or_else(|e| panic!("{e:#}"));
    let port = proxy.listener_port().unwrap_or_default();

    let o = poll(port, |o| o.header("x-backend") == Some("a")).await;
    assert_eq!(
        o.header("x-backend"),
        Some("a"),
        "{flavor}: {} {}\nlog:\n{}",
        o.status,
        o.body_text(),
        proxy.log()
    );

    // The answer changes; its 1 s TTL, not the hour-long refresh rate, brings it in.
    dns.set(NAME, &[IpAddr::V4(Ipv4Addr::new(127, 0, 0, 2))], 1);
    let o = poll(port, |o| o.header("x-backend") == Some("b")).await;
    assert_eq!(
        o.header("x-backend"),
        Some("b"),
        "{flavor}: {} {}\nlog:\n{}",
        o.status,
        o.body_text(),
        proxy.log()
    );
    assert!(
        dns.queries(NAME) >= 2,
        "{flavor}: {} queries",
        dns.queries(NAME)
    );
    assert!(b.requests() >= 1, "{flavor}");

    // The name disappears (NXDOMAIN): a STRICT_DNS endpoint is left without hosts.
    dns.remove(NAME);
    let o = poll(port, |o| o.status == 503).await;
    assert_eq!(
        o.status,
        503,
        "{flavor}: {}\nlog:\n{}",
        o.body_text(),
        proxy.log()
    );
    assert_eq!(o.body_text(), "no healthy upstream", "{flavor}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn respect_dns_ttl_follows_the_answer_from_the_clusters_resolver() {
    check_ttl(Flavor::Ferry).await;
    if ferry_test_util::require_envoy() {
        check_ttl(Flavor::Envoy).await;
    }
}
