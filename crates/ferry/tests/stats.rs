//! Stats on ferry and on Envoy 1.40 with the same bootstrap and traffic: the names in
//! `/stats` for the scopes ferry implements, the values of deterministic counters,
//! `/stats/prometheus` (parsed by Python's `prometheus_client`, Prometheus's own text
//! parser, and compared by family, type and labels), the admin query parameters, and
//! the statsd and DogStatsD sinks received on a real UDP socket.

use ferry_test_util::bootstrap::HcmBootstrap;
use ferry_test_util::diff::{send, Request};
use ferry_test_util::proc::{admin_get, admin_post, flavors, Flavor, Proxy};
use ferry_test_util::scripted::{Scripted, Step};
use std::collections::{BTreeMap, BTreeSet};
use std::time::Duration;

/// The scopes compared (after the listener's port is replaced by `PORT`).
const SCOPES: &[&str] = &[
    "cluster.backend.",
    "http.ingress.",
    "listener.127.0.0.1_PORT.",
    "cluster_manager.",
    "listener_manager.",
    "server.",
];

fn bootstrap(top: &str) -> String {
    HcmBootstrap::new().cluster("backend", "").yaml() + top
}

async fn proxy(flavor: Flavor, top: &str, up: &Scripted) -> Proxy {
    ferry_test_util::proc::start_with(flavor, &bootstrap(top), &[("backend", up.addr())]).await
}

/// Three 200s and a 404 through the proxy.
async fn traffic(p: &Proxy, up: &Scripted) {
    let port = p.listener_port().unwrap_or_default();
    up.push([
        Step::Status(200),
        Step::Status(200),
        Step::Status(200),
        Step::Status(404),
    ]);
    for path in ["/a", "/b", "/c", "/missing"] {
        send(port, &Request::get(path))
            .await
            .unwrap_or_else(|e| panic!("{:?}: {e:#}", p.flavor()));
    }
}

async fn get(p: &Proxy, path: &str) -> (u16, String) {
    admin_get(p.admin_port(), path)
        .await
        .unwrap_or_else(|e| panic!("{:?} {path}: {e:#}", p.flavor()))
}

/// `/stats` lines as name → value text, the listener's port as `PORT`.
async fn listing(p: &Proxy) -> BTreeMap<String, String> {
    let port = p.listener_port().unwrap_or_default();
    let (_, body) = get(p, "/stats").await;
    body.lines()
        .filter_map(|l| l.split_once(": "))
        .map(|(k, v)| (k.replace(&format!("_{port}."), "_PORT."), v.to_string()))
        .filter(|(k, _)| SCOPES.iter().any(|s| k.starts_with(s)))
        .collect()
}

/// Runs Python's prometheus_client parser on `text`: (family, type, sorted label
/// names of each sample) for every family; panics on a parse error.
fn parse_prometheus(text: &str) -> BTreeSet<String> {
    let script = r#"
import sys
from prometheus_client.parser import text_string_to_metric_families
for f in text_string_to_metric_families(sys.stdin.read()):
    for s in f.samples:
        print(f.name, f.type, s.name, ",".join(sorted(s.labels)))
"#;
    let mut child = std::process::Command::new("python3")
        .args(["-c", script])
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap_or_else(|e| panic!("python3: {e}"));
    {
        use std::io::Write;
        let mut stdin = child.stdin.take().unwrap_or_else(|| panic!("no stdin"));
        stdin
            .write_all(text.as_bytes())
            .unwrap_or_else(|e| panic!("{e}"));
    }
    let out = child.wait_with_output().unwrap_or_else(|e| panic!("{e}"));
    assert!(
        out.status.success(),
        "prometheus_client rejected the exposition: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout)
        .lines()
        .map(str::to_string)
        .collect()
}

struct Seen {
    names: BTreeSet<String>,
    values: BTreeMap<String, String>,
    prometheus: BTreeSet<String>,
}

async fn observe(flavor: Flavor) -> Seen {
    let up = Scripted::start(vec![]).await;
    let p = proxy(flavor, "", &up).await;
    traffic(&p, &up).await;
    // Every request's stats are counted by the time its response has ended.
    ferry_test_util::admin::stat_when(
        p.admin_port(),
        "http.ingress.downstream_rq_completed",
        |v| v == 4,
    )
    .await;
    let all = listing(&p).await;
    let deterministic = [
        "cluster.backend.upstream_rq_200",
        "cluster.backend.upstream_rq_404",
        "cluster.backend.upstream_rq_2xx",
        "cluster.backend.upstream_rq_4xx",
        "cluster.backend.upstream_rq_total",
        "cluster.backend.upstream_rq_completed",
        "cluster.backend.external.upstream_rq_200",
        "cluster.backend.external.upstream_rq_completed",
        "cluster.backend.membership_total",
        "cluster.backend.membership_healthy",
        "cluster.backend.membership_change",
        "cluster.backend.upstream_cx_total",
        "cluster.backend.upstream_cx_http1_total",
        "http.ingress.downstream_rq_total",
        "http.ingress.downstream_rq_http1_total",
        "http.ingress.downstream_rq_2xx",
        "http.ingress.downstream_rq_4xx",
        "http.ingress.downstream_rq_completed",
        "http.ingress.rq_total",
        "http.ingress.downstream_cx_total",
        "listener.127.0.0.1_PORT.downstream_cx_total",
        "listener.127.0.0.1_PORT.http.ingress.downstream_rq_2xx",
        "listener.127.0.0.1_PORT.http.ingress.downstream_rq_completed",
        "cluster_manager.cluster_added",
        "cluster_manager.active_clusters",
        "listener_manager.listener_added",
        "listener_manager.total_listeners_active",
        "server.live",
        "server.state",
        "server.concurrency",
        "server.days_until_first_cert_expiring",
    ];
    let values = deterministic
        .iter()
        .map(|n| {
            let v = all.get(*n).cloned();
            assert!(v.is_some(), "{flavor:?}: no {n}");
            (n.to_string(), v.unwrap_or_default())
        })
        .collect();
    let (_, prom) = get(&p, "/stats/prometheus").await;
    let port = p.listener_port().unwrap_or_default().to_string();
    let prometheus = parse_prometheus(&prom)
        .into_iter()
        .filter(|l| {
            [
                "envoy_cluster_",
                "envoy_http_",
                "envoy_listener_",
                "envoy_server_",
            ]
            .iter()
            .any(|p| l.starts_with(p))
                && !l.starts_with("envoy_http_admin")
        })
        .map(|l| l.replace(&port, "PORT"))
        .collect();
    // JSON: counters and gauges, then one histograms object.
    let (_, j) = get(&p, "/stats?format=json").await;
    let j: serde_json::Value =
        serde_json::from_str(&j).unwrap_or_else(|e| panic!("{flavor:?}: {e}"));
    let list = j["stats"].as_array().cloned().unwrap_or_default();
    assert!(list.len() > 100, "{flavor:?}");
    let h = &list[list.len() - 1]["histograms"];
    assert_eq!(
        h["supported_quantiles"].as_array().map(Vec::len),
        Some(10),
        "{flavor:?}"
    );
    assert!(
        h["computed_quantiles"].as_array().is_some_and(|q| q
            .iter()
            .any(|q| q["name"] == "cluster.backend.upstream_rq_time")),
        "{flavor:?}"
    );
    Seen {
        names: all.keys().cloned().collect(),
        values,
        prometheus,
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn stat_names_values_and_prometheus_series_match_envoy() {
    let mut seen: Vec<(Flavor, Seen)> = Vec::new();
    for flavor in flavors() {
        seen.push((flavor, observe(flavor).await));
    }
    let ferry = &seen[0].1;
    assert_eq!(ferry.values["cluster.backend.upstream_rq_200"], "3");
    assert_eq!(ferry.values["cluster.backend.upstream_rq_404"], "1");
    assert_eq!(ferry.values["http.ingress.downstream_rq_total"], "4");
    if let Some((_, envoy)) = seen.get(1) {
        let only_envoy: Vec<&String> = envoy.names.difference(&ferry.names).collect();
        let only_ferry: Vec<&String> = ferry.names.difference(&envoy.names).collect();
        assert!(
            only_envoy.is_empty() && only_ferry.is_empty(),
            "stat names differ:\nonly Envoy: {only_envoy:#?}\nonly ferry: {only_ferry:#?}"
        );
        assert_eq!(ferry.values, envoy.values);
        let only_envoy: Vec<&String> = envoy.prometheus.difference(&ferry.prometheus).collect();
        let only_ferry: Vec<&String> = ferry.prometheus.difference(&envoy.prometheus).collect();
        assert!(
            only_envoy.is_empty() && only_ferry.is_empty(),
            "Prometheus series differ:\nonly Envoy: {only_envoy:#?}\nonly ferry: {only_ferry:#?}"
        );
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn stats_queries_filter_used_only_type_and_reset() {
    for flavor in flavors() {
        let up = Scripted::start(vec![]).await;
        let p = proxy(flavor, "", &up).await;
        traffic(&p, &up).await;
        ferry_test_util::admin::stat_when(
            p.admin_port(),
            "cluster.backend.upstream_rq_total",
            |v| v == 4,
        )
        .await;
        let (_, body) = get(
            &p,
            "/stats?filter=%5Ecluster%5C.backend%5C.upstream_rq_total%24",
        )
        .await;
        assert_eq!(body, "cluster.backend.upstream_rq_total: 4\n", "{flavor:?}");
        // A partial match; usedonly leaves out what stayed zero.
        let (_, body) = get(
            &p,
            "/stats?usedonly&filter=cluster.backend.upstream_rq_[0-9]",
        )
        .await;
        assert_eq!(
            body,
            "cluster.backend.upstream_rq_200: 3\ncluster.backend.upstream_rq_2xx: 3\n\
cluster.backend.upstream_rq_404: 1\ncluster.backend.upstream_rq_4xx: 1\n",
            "{flavor:?}"
        );
        let (_, body) = get(&p, "/stats?type=Gauges&filter=backend.membership_total").await;
        assert_eq!(body, "cluster.backend.membership_total: 1\n", "{flavor:?}");
        let (_, body) = get(&p, "/stats?type=Counters&filter=backend.membership_total").await;
        assert_eq!(body, "", "{flavor:?}");
        let (_, body) = get(&p, "/stats?filter=cluster.backend.upstream_cx_length_ms").await;
        assert_eq!(
            body, "cluster.backend.upstream_cx_length_ms: No recorded values\n",
            "{flavor:?}"
        );
        let (status, _) = get(&p, "/stats?type=Bogus").await;
        assert_eq!(status, 400, "{flavor:?}");
        let (status, _) = get(&p, "/stats?filter=(").await;
        assert_eq!(status, 400, "{flavor:?}");
        let (status, _) = get(&p, "/stats?format=yaml").await;
        assert_eq!(status, 400, "{flavor:?}");
        // /reset_counters zeroes counters (not gauges).
        let (status, _) = admin_post(p.admin_port(), "/reset_counters")
            .await
            .unwrap_or_else(|e| panic!("{e:#}"));
        assert_eq!(status, 200, "{flavor:?}");
        let (_, body) = get(
            &p,
            "/stats?filter=backend.(upstream_rq_total|membership_total)$",
        )
        .await;
        assert_eq!(
            body, "cluster.backend.membership_total: 1\ncluster.backend.upstream_rq_total: 0\n",
            "{flavor:?}"
        );
        let (status, body) = get(&p, "/memory").await;
        assert_eq!(status, 200, "{flavor:?}");
        let m: serde_json::Value = serde_json::from_str(&body).unwrap_or_default();
        assert!(
            m["allocated"]
                .as_str()
                .is_some_and(|a| a.parse::<u64>().is_ok_and(|n| n > 0)),
            "{flavor:?}: {body}"
        );
    }
}

/// Collects statsd lines until `done` holds for them (or 10 s pass).
async fn collect(sock: &tokio::net::UdpSocket, done: impl Fn(&[String]) -> bool) -> Vec<String> {
    let mut lines = Vec::new();
    let mut buf = vec![0u8; 65536];
    let end = tokio::time::Instant::now() + Duration::from_secs(10);
    while !done(&lines) {
        let Ok(Ok(n)) = tokio::time::timeout_at(end, sock.recv(&mut buf)).await else {
            break;
        };
        let text = String::from_utf8_lossy(&buf[..n]).into_owned();
        lines.extend(text.lines().map(str::to_string));
    }
    lines
}

/// The sum of the `|c` deltas of `metric` (with `suffix` after the type, for tags).
fn counted(lines: &[String], metric: &str, suffix: &str) -> u64 {
    lines
        .iter()
        .filter_map(|l| {
            let rest = l.strip_prefix(&format!("{metric}:"))?;
            let v = rest.strip_suffix(&format!("|c{suffix}"))?;
            v.parse::<u64>().ok()
        })
        .sum()
}

async fn statsd(flavor: Flavor, dog: bool) -> Vec<String> {
    let sock = tokio::net::UdpSocket::bind("127.0.0.1:0")
        .await
        .unwrap_or_else(|e| panic!("{e}"));
    let port = sock.local_addr().map(|a| a.port()).unwrap_or_default();
    let (name, ty) = if dog {
        (
            "envoy.stat_sinks.dog_statsd",
            "envoy.config.metrics.v3.DogStatsdSink",
        )
    } else {
        (
            "envoy.stat_sinks.statsd",
            "envoy.config.metrics.v3.StatsdSink",
        )
    };
    // The plain sink's address is spelled as statsd and CloudWatch agent setups write
    // it, `protocol: UDP`; DogStatsD's leaves the protocol at its default (TCP), and
    // both send datagrams.
    let protocol = if dog { "" } else { "protocol: UDP, " };
    let top = format!(
        "stats_flush_interval: 0.2s\nstats_sinks:\n- name: {name}\n  typed_config:\n    \"@type\": type.googleapis.com/{ty}\n    address: {{socket_address: {{{protocol}address: 127.0.0.1, port_value: {port}}}}}\n"
    );
    let up = Scripted::start(vec![]).await;
    let p = proxy(flavor, &top, &up).await;
    traffic(&p, &up).await;
    let (metric, suffix) = if dog {
        (
            "envoy.cluster.upstream_rq",
            "|#envoy.response_code:200,envoy.cluster_name:backend",
        )
    } else {
        ("envoy.cluster.backend.upstream_rq_200", "")
    };
    let time = if dog {
        "envoy.cluster.upstream_rq_time:"
    } else {
        "envoy.cluster.backend.upstream_rq_time:"
    };
    let gauge = if dog {
        "envoy.cluster.membership_total:1|g|#envoy.cluster_name:backend"
    } else {
        "envoy.cluster.backend.membership_total:1|g"
    };
    let lines = collect(&sock, |l| {
        counted(l, metric, suffix) >= 3
            && l.iter().any(|l| l.starts_with(time))
            && l.iter().any(|l| l == gauge)
    })
    .await;
    // Then until the gauge (sent every flush) comes again: the flush that was being
    // received is then complete.
    let mut lines = lines;
    lines.append(&mut collect(&sock, |l| l.iter().any(|l| l == gauge)).await);
    assert_eq!(counted(&lines, metric, suffix), 3, "{flavor:?}: {lines:#?}");
    let grammar = regex::Regex::new(r"^envoy\.[^:|]+:[0-9.]+\|(c|g|ms)(\|@[0-9.]+)?(\|#[^|]+)?$")
        .unwrap_or_else(|e| panic!("{e}"));
    for l in &lines {
        assert!(grammar.is_match(l), "{flavor:?}: bad statsd line {l:?}");
        assert!(
            dog || !l.contains("|#"),
            "{flavor:?}: tags in plain statsd: {l}"
        );
    }
    assert!(
        lines
            .iter()
            .any(|l| l.starts_with(time) && l.contains("|ms")),
        "{flavor:?}"
    );
    // A gauge that was set: membership.
    assert!(
        lines.iter().any(|l| l == gauge),
        "{flavor:?}: no {gauge} in {lines:#?}"
    );
    // The names sent for the cluster (values aside).
    lines
        .iter()
        .filter(|l| l.contains("cluster.backend.") || l.contains("envoy.cluster_name:backend"))
        .filter(|l| l.contains("|c"))
        .filter_map(|l| l.split(':').next().map(str::to_string))
        .collect::<BTreeSet<_>>()
        .into_iter()
        .collect()
}

/// The statsd (or DogStatsD) sink on every flavor; the counters sent for the cluster
/// must be the same.
async fn sink_matches_envoy(dog: bool) {
    let mut names = Vec::new();
    for flavor in flavors() {
        names.push(statsd(flavor, dog).await);
    }
    if names.len() == 2 {
        assert_eq!(names[0], names[1], "counters sent (ferry, then Envoy)");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn statsd_sink_sends_counter_deltas_gauges_and_timers() {
    sink_matches_envoy(false).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn dog_statsd_sink_sends_tag_extracted_names_with_tags() {
    sink_matches_envoy(true).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn router_dynamic_stats_false_charges_no_per_code_stats() {
    for flavor in flavors() {
        let up = Scripted::start(vec![]).await;
        let router =
            "\"@type\": type.googleapis.com/envoy.extensions.filters.http.router.v3.Router\n";
        let yaml = bootstrap("").replacen(
            router,
            &format!("{router}              dynamic_stats: false\n"),
            1,
        );
        assert!(yaml.contains("dynamic_stats: false"), "{yaml}");
        let p = ferry_test_util::proc::start_with(flavor, &yaml, &[("backend", up.addr())]).await;
        traffic(&p, &up).await;
        ferry_test_util::admin::stat_when(
            p.admin_port(),
            "cluster.backend.upstream_rq_total",
            |v| v == 4,
        )
        .await;
        let (_, body) = get(
            &p,
            "/stats?filter=cluster.backend.(upstream_rq_[0-9]xx|upstream_rq_[0-9]{3}|upstream_rq_completed|external)",
        )
        .await;
        assert_eq!(
            body, "cluster.backend.upstream_rq_completed: 0\n",
            "{flavor:?}"
        );
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn stats_config_tags_and_matcher_shape_the_listings() {
    let top = r#"stats_config:
  stats_tags:
  - tag_name: mesh
    fixed_value: demo
  - tag_name: route_prefix
    regex: "^cluster\\.((.+?)\\.)upstream_rq_total$"
  stats_matcher:
    exclusion_list:
      patterns:
      - prefix: cluster.backend.upstream_cx_
      - safe_regex: {regex: ".*_overflow$"}
"#;
    let mut seen = Vec::new();
    for flavor in flavors() {
        let up = Scripted::start(vec![]).await;
        let p = proxy(flavor, top, &up).await;
        traffic(&p, &up).await;
        ferry_test_util::admin::stat_when(
            p.admin_port(),
            "cluster.backend.upstream_rq_total",
            |v| v == 4,
        )
        .await;
        let (_, body) = get(
            &p,
            "/stats?filter=cluster%5C.backend%5C.upstream_(cx_total|rq_total|rq_pending_overflow)",
        )
        .await;
        // Excluded stats are gone from the listing.
        assert_eq!(body, "cluster.backend.upstream_rq_total: 4\n", "{flavor:?}");
        let (_, prom) = get(&p, "/stats/prometheus").await;
        let family: Vec<&str> = prom
            .lines()
            .filter(|l| {
                l.starts_with("envoy_cluster_upstream_rq_total")
                    || l.starts_with("envoy_server_live")
            })
            .collect();
        assert!(
            parse_prometheus(&prom).iter().any(|l| l.contains("mesh")),
            "{flavor:?}"
        );
        seen.push(family.join("\n"));
    }
    // The fixed tag is on every stat, first; the default cluster name tag comes before
    // the custom regex's (defaults are added first; every extractor sees the full name).
    assert_eq!(
        seen[0],
        "envoy_cluster_upstream_rq_total{mesh=\"demo\",envoy_cluster_name=\"backend\",route_prefix=\"backend\"} 4\nenvoy_server_live{mesh=\"demo\"} 1"
    );
    if seen.len() == 2 {
        assert_eq!(seen[0], seen[1], "(ferry, then Envoy)");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn statsd_over_tcp_to_a_cluster() {
    for flavor in flavors() {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
            .await
            .unwrap_or_else(|e| panic!("{e}"));
        let addr = listener.local_addr().unwrap_or_else(|e| panic!("{e}"));
        let received = std::sync::Arc::new(std::sync::Mutex::new(String::new()));
        let sink = received.clone();
        let server = tokio::spawn(async move {
            loop {
                let Ok((mut s, _)) = listener.accept().await else {
                    return;
                };
                let sink = sink.clone();
                tokio::spawn(async move {
                    use tokio::io::AsyncReadExt;
                    let mut buf = vec![0u8; 65536];
                    while let Ok(n) = s.read(&mut buf).await {
                        if n == 0 {
                            return;
                        }
                        if let Ok(mut r) = sink.lock() {
                            r.push_str(&String::from_utf8_lossy(&buf[..n]));
                        }
                    }
                });
            }
        });
        // Envoy needs the node's id and cluster for a TCP statsd sink (and so does ferry).
        let top = "node: {id: proxy-1, cluster: edge}\nstats_flush_interval: 0.2s\nstats_sinks:\n- name: envoy.stat_sinks.statsd\n  typed_config:\n    \"@type\": type.googleapis.com/envoy.config.metrics.v3.StatsdSink\n    tcp_cluster_name: statsd\n    prefix: tcp\n";
        let yaml = HcmBootstrap::new()
            .cluster("backend", "")
            .cluster("statsd", "")
            .yaml()
            + top;
        let up = Scripted::start(vec![]).await;
        let p = ferry_test_util::proc::start_with(
            flavor,
            &yaml,
            &[("backend", up.addr()), ("statsd", addr)],
        )
        .await;
        traffic(&p, &up).await;
        let got = ferry_test_util::admin::poll(Duration::from_secs(10), || {
            let received = received.clone();
            async move {
                let text = received.lock().ok()?.clone();
                let lines: Vec<String> = text.lines().map(str::to_string).collect();
                (counted(&lines, "tcp.cluster.backend.upstream_rq_200", "") >= 3).then_some(text)
            }
        })
        .await
        .unwrap_or_else(|| panic!("{flavor:?}: no upstream_rq_200 over TCP\n{}", p.log()));
        // Newline-ended lines, the prefix given.
        assert!(got.ends_with('\n'), "{flavor:?}");
        assert!(
            got.lines().all(|l| l.starts_with("tcp.")),
            "{flavor:?}: {got}"
        );
        server.abort();
    }
}
