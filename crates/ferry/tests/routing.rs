//! Load balancing and routing through the running proxy: weighted clusters within
//! statistical bounds, each LB policy's distribution, hash-policy stickiness, IPv6
//! listeners and HTTP/1.1 pipelining.

use ferry_test_util::diff::send;
use ferry_test_util::{backend, rewrite_bootstrap, start_ferry, Backend, Request};
use std::collections::{BTreeMap, HashMap};
use std::io::{Read, Write};
use std::time::Duration;

fn bootstrap(lb_policy: &str, hash_policy: &str, weighted: bool) -> String {
    let route = if weighted {
        r#"
                route:
                  weighted_clusters:
                    clusters:
                    - { name: pool, weight: 80 }
                    - { name: other, weight: 20 }"#
            .to_string()
    } else {
        format!("\n                route:\n                  cluster: pool\n{hash_policy}")
    };
    format!(
        r#"
static_resources:
  listeners:
  - name: main
    address: {{ socket_address: {{ address: 127.0.0.1, port_value: 1 }} }}
    filter_chains:
    - filters:
      - name: envoy.filters.network.http_connection_manager
        typed_config:
          "@type": type.googleapis.com/envoy.extensions.filters.network.http_connection_manager.v3.HttpConnectionManager
          stat_prefix: ingress
          route_config:
            virtual_hosts:
            - name: main
              domains: ["*"]
              routes:
              - match: {{ prefix: "/" }}{route}
          http_filters:
          - name: envoy.filters.http.router
            typed_config:
              "@type": type.googleapis.com/envoy.extensions.filters.http.router.v3.Router
  clusters:
  - name: pool
    lb_policy: {lb_policy}
    load_assignment:
      cluster_name: pool
      endpoints:
      - lb_endpoints:
        - endpoint: {{ address: {{ socket_address: {{ address: 127.0.0.1, port_value: 1 }} }} }}
        - endpoint: {{ address: {{ socket_address: {{ address: 127.0.0.2, port_value: 1 }} }} }}
        - endpoint: {{ address: {{ socket_address: {{ address: 127.0.0.3, port_value: 1 }} }} }}
  - name: other
    load_assignment:
      cluster_name: other
      endpoints:
      - lb_endpoints:
        - endpoint: {{ address: {{ socket_address: {{ address: 127.0.0.4, port_value: 1 }} }} }}
admin:
  address: {{ socket_address: {{ address: 127.0.0.1, port_value: 1 }} }}
"#
    )
}

/// Starts backends b1..b3 (cluster `pool`) and b4 (cluster `other`) and ferry.
async fn start(yaml: &str) -> (Vec<Backend>, ferry_test_util::Proxy) {
    let mut backends = Vec::new();
    let mut map = BTreeMap::new();
    for i in 1..=4 {
        let b = backend::start(&format!("b{i}")).await;
        map.insert(format!("127.0.0.{i}:1"), b.addr());
        backends.push(b);
    }
    let rw = rewrite_bootstrap(yaml, &map).unwrap_or_else(|e| panic!("{e:#}"));
    let proxy = start_ferry(&rw.yaml)
        .await
        .unwrap_or_else(|e| panic!("{e:#}"));
    (backends, proxy)
}

async fn tally(port: u16, n: usize, req: impl Fn(usize) -> Request) -> HashMap<String, usize> {
    let mut counts = HashMap::new();
    for i in 0..n {
        let o = send(port, &req(i))
            .await
            .unwrap_or_else(|e| panic!("{e:#}"));
        assert_eq!(o.status, 200, "{}", o.body_text());
        *counts
            .entry(o.header("x-backend").unwrap_or("?").to_string())
            .or_default() += 1;
    }
    counts
}

fn port(p: &ferry_test_util::Proxy) -> u16 {
    p.listener_port().unwrap_or_else(|| panic!("no listener"))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn weighted_clusters_split_within_bounds() {
    let (_b, proxy) = start(&bootstrap("ROUND_ROBIN", "", true)).await;
    let counts = tally(port(&proxy), 1000, |_| Request::get("/w")).await;
    let other = counts.get("b4").copied().unwrap_or(0);
    // 20% of 1000: binomial sd ≈ 12.6; ±6 sd.
    assert!((125..=275).contains(&other), "80/20 split gave {counts:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn round_robin_spreads_evenly() {
    let (_b, proxy) = start(&bootstrap("ROUND_ROBIN", "", false)).await;
    let counts = tally(port(&proxy), 30, |_| Request::get("/rr")).await;
    for b in ["b1", "b2", "b3"] {
        assert_eq!(counts.get(b), Some(&10), "{counts:?}");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn random_and_least_request_use_every_host() {
    for policy in ["RANDOM", "LEAST_REQUEST"] {
        let (_b, proxy) = start(&bootstrap(policy, "", false)).await;
        let counts = tally(port(&proxy), 300, |_| Request::get("/x")).await;
        for b in ["b1", "b2", "b3"] {
            let n = counts.get(b).copied().unwrap_or(0);
            // Uniform: 100 each; ±6 sd (≈ 8.2) for RANDOM; LEAST_REQUEST is at least as even.
            assert!((50..=150).contains(&n), "{policy}: {counts:?}");
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn hash_policies_are_sticky() {
    for policy in ["RING_HASH", "MAGLEV"] {
        let hash =
            "                  hash_policy:\n                  - header: { header_name: x-user }\n";
        let (_b, proxy) = start(&bootstrap(policy, hash, false)).await;
        let p = port(&proxy);
        let mut seen_hosts = std::collections::HashSet::new();
        for user in 0..20 {
            let req = |_: usize| Request::get("/h").header("x-user", &format!("user-{user}"));
            let counts = tally(p, 5, req).await;
            assert_eq!(
                counts.len(),
                1,
                "{policy}: user-{user} was not sticky: {counts:?}"
            );
            seen_hosts.extend(counts.into_keys());
        }
        assert!(
            seen_hosts.len() >= 2,
            "{policy}: 20 users all hashed to {seen_hosts:?}"
        );
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn ipv6_listener_serves() {
    let be = backend::start("v6").await;
    let yaml = bootstrap("ROUND_ROBIN", "", false).replacen(
        "address: 127.0.0.1, port_value: 1 } } }\n    filter_chains",
        "address: '::1', port_value: 1 } } }\n    filter_chains",
        1,
    );
    let mut map = BTreeMap::new();
    for i in 1..=4 {
        map.insert(format!("127.0.0.{i}:1"), be.addr());
    }
    let rw = rewrite_bootstrap(&yaml, &map).unwrap_or_else(|e| panic!("{e:#}"));
    // The harness binds listeners on 127.0.0.1; put this one back on [::1].
    let lport = rw.listener_ports[0];
    let v6 = rw.yaml.replacen(
        &format!("address: 127.0.0.1\n        port_value: {lport}"),
        &format!("address: '::1'\n        port_value: {lport}"),
        1,
    );
    assert_ne!(
        v6, rw.yaml,
        "listener address was not rewritten to ::1:\n{}",
        rw.yaml
    );
    let dir = std::env::temp_dir().join(format!("ferry-v6-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap_or_else(|e| panic!("{e}"));
    let path = dir.join("v6.yaml");
    std::fs::write(&path, &v6).unwrap_or_else(|e| panic!("{e}"));
    let out = std::process::Command::new(env!("CARGO_BIN_EXE_ferry"))
        .arg("validate")
        .arg(&path)
        .output()
        .unwrap_or_else(|e| panic!("{e}"));
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stdout)
    );
    let mut child = std::process::Command::new(env!("CARGO_BIN_EXE_ferry"))
        .args(["proxy", "--concurrency", "1", "-c"])
        .arg(&path)
        .stdin(std::process::Stdio::null())
        .spawn()
        .unwrap_or_else(|e| panic!("{e}"));
    let deadline = std::time::Instant::now() + Duration::from_secs(20);
    let stream = loop {
        match std::net::TcpStream::connect(("::1", lport)) {
            Ok(s) => break s,
            Err(e) => {
                assert!(
                    std::time::Instant::now() < deadline,
                    "[::1]:{lport} never accepted: {e}"
                );
                std::thread::sleep(Duration::from_millis(20));
            }
        }
    };
    let reply = tokio::task::spawn_blocking(move || {
        let mut s = stream;
        s.set_read_timeout(Some(Duration::from_secs(10))).ok();
        s.write_all(b"GET /six HTTP/1.1\r\nHost: v6\r\nConnection: close\r\n\r\n")
            .ok();
        let mut out = String::new();
        let _ = s.read_to_string(&mut out);
        out
    })
    .await
    .unwrap_or_default();
    let _ = child.kill();
    let _ = child.wait();
    assert!(reply.starts_with("HTTP/1.1 200"), "{reply}");
    assert!(reply.contains("x-backend: v6"), "{reply}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn pipelined_requests_are_answered_in_order() {
    let (_b, proxy) = start(&bootstrap("ROUND_ROBIN", "", false)).await;
    let p = port(&proxy);
    let reply = tokio::task::spawn_blocking(move || {
        let mut s = std::net::TcpStream::connect(("127.0.0.1", p)).unwrap_or_else(|e| panic!("{e}"));
        s.set_read_timeout(Some(Duration::from_secs(10))).ok();
        s.write_all(
            b"GET /first HTTP/1.1\r\nHost: a\r\n\r\nGET /second HTTP/1.1\r\nHost: a\r\n\r\nGET /third HTTP/1.1\r\nHost: a\r\nConnection: close\r\n\r\n",
        )
        .unwrap_or_else(|e| panic!("{e}"));
        let mut out = String::new();
        let _ = s.read_to_string(&mut out);
        out
    })
    .await
    .unwrap_or_default();
    let first = reply.find("\"path\":\"/first\"");
    let second = reply.find("\"path\":\"/second\"");
    let third = reply.find("\"path\":\"/third\"");
    assert!(
        first.is_some() && second.is_some() && third.is_some(),
        "{reply}"
    );
    assert!(first < second && second < third, "out of order: {reply}");
    assert_eq!(reply.matches("HTTP/1.1 200").count(), 3, "{reply}");
}
