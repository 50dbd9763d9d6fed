//! Connection pool and DNS discovery against real hyper servers on 127.0.0.1:0.

#![allow(clippy::unwrap_used, clippy::expect_used)]

use bytes::Bytes;
use ferry_config::cluster::{
    Cluster as ClusterConfig, Discovery, Dns, DnsLookupFamily, Endpoint, LbPolicy, Locality,
    UpstreamProtocol,
};
use ferry_upstream::{Body, ClusterManager, UpstreamError};
use http_body_util::{BodyExt, Empty, Full};
use hyper::body::Incoming;
use hyper::service::service_fn;
use hyper_util::rt::{TokioExecutor, TokioIo};
use std::convert::Infallible;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::Duration;
use tokio::net::TcpListener;

/// Fails a test that would otherwise hang.
const DEADLINE: Duration = Duration::from_secs(20);

struct Server {
    addr: SocketAddr,
    connections: Arc<AtomicUsize>,
}

/// A server answering every request with "<authority or host header> <path>".
/// With `barrier: Some(n)`, the first `n` requests wait until all `n` are in flight.
async fn server(protocol: UpstreamProtocol, barrier: Option<usize>) -> Server {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let connections = Arc::new(AtomicUsize::new(0));
    let count = connections.clone();
    let barrier = barrier.map(|n| (n, Arc::new(tokio::sync::Barrier::new(n))));
    let requests = Arc::new(AtomicUsize::new(0));
    tokio::spawn(async move {
        loop {
            let (stream, _) = listener.accept().await.unwrap();
            count.fetch_add(1, Ordering::SeqCst);
            let barrier = barrier.clone();
            let requests = requests.clone();
            let svc = service_fn(move |req: hyper::Request<Incoming>| {
                let barrier = barrier.clone();
                let nth = requests.fetch_add(1, Ordering::SeqCst);
                async move {
                    if let Some((n, b)) = barrier {
                        if nth < n {
                            b.wait().await;
                        }
                    }
                    let host = req
                        .uri()
                        .authority()
                        .map(|a| a.to_string())
                        .or_else(|| {
                            req.headers()
                                .get("host")
                                .map(|h| h.to_str().unwrap().to_string())
                        })
                        .unwrap_or_default();
                    let text = format!("{host} {}", req.uri().path());
                    Ok::<_, Infallible>(hyper::Response::new(Full::new(Bytes::from(text))))
                }
            });
            let io = TokioIo::new(stream);
            tokio::spawn(async move {
                let _ = match protocol {
                    UpstreamProtocol::Http1 => {
                        hyper::server::conn::http1::Builder::new()
                            .serve_connection(io, svc)
                            .await
                    }
                    UpstreamProtocol::Http2 => {
                        hyper::server::conn::http2::Builder::new(TokioExecutor::new())
                            .serve_connection(io, svc)
                            .await
                    }
                };
            });
        }
    });
    Server { addr, connections }
}

fn config(
    host: &str,
    port: u16,
    discovery: Discovery,
    protocol: UpstreamProtocol,
    max_requests_per_connection: Option<u32>,
) -> ClusterConfig {
    ClusterConfig {
        name: "backend".into(),
        discovery,
        connect_timeout: Duration::from_secs(5),
        lb_policy: LbPolicy::RoundRobin,
        common_lb: Default::default(),
        health_check: None,
        outlier_detection: None,
        localities: vec![Locality {
            name: String::new(),
            priority: 0,
            weight: None,
            endpoints: vec![Endpoint {
                host: host.into(),
                port,
                weight: 1,
                hostname: None,
                health: Default::default(),
            }],
        }],
        protocol,
        idle_timeout: Some(Duration::from_secs(3600)),
        max_requests_per_connection,
        per_connection_buffer_limit_bytes: 1 << 20,
        circuit_breakers: Default::default(),
    }
}

fn request(path: &str) -> http::Request<Body> {
    http::Request::get(path)
        .body(Empty::new().map_err(|e| match e {}).boxed())
        .unwrap()
}

/// Sends `path` through the cluster's chosen host and reads the whole response body.
async fn get(cm: &ClusterManager, path: &str) -> Result<String, UpstreamError> {
    get_req(cm, request(path)).await
}

async fn get_req(cm: &ClusterManager, req: http::Request<Body>) -> Result<String, UpstreamError> {
    let cluster = cm.get("backend").unwrap();
    let host = cluster.choose_host(None).unwrap();
    let resp = tokio::time::timeout(DEADLINE, host.send(&cluster, Default::default(), req))
        .await
        .expect("deadline")?;
    assert_eq!(resp.status(), 200);
    let body = resp.into_body().collect().await.unwrap().to_bytes();
    Ok(String::from_utf8(body.to_vec()).unwrap())
}

fn static_manager(s: &Server, protocol: UpstreamProtocol, max: Option<u32>) -> Arc<ClusterManager> {
    ClusterManager::new(
        &[config(
            "127.0.0.1",
            s.addr.port(),
            Discovery::Static,
            protocol,
            max,
        )],
        &ferry_stats::Store::default(),
    )
}

#[tokio::test]
async fn http1_keep_alive_reuses_one_connection() {
    let s = server(UpstreamProtocol::Http1, None).await;
    let cm = static_manager(&s, UpstreamProtocol::Http1, None);
    for i in 0..10 {
        let body = get(&cm, &format!("/r{i}")).await.unwrap();
        // The Host header defaults to the host address.
        assert_eq!(body, format!("{} /r{i}", s.addr));
    }
    assert_eq!(s.connections.load(Ordering::SeqCst), 1);
    let host = cm.get("backend").unwrap().hosts()[0].clone();
    assert_eq!(host.stats.rq_total.load(Ordering::SeqCst), 10);
    assert_eq!(host.stats.rq_success.load(Ordering::SeqCst), 10);
    assert_eq!(host.stats.rq_active.load(Ordering::SeqCst), 0);
    assert_eq!(host.stats.cx_total.load(Ordering::SeqCst), 1);
    assert_eq!(host.stats.cx_active.load(Ordering::SeqCst), 1);
}

#[tokio::test]
async fn http1_concurrent_requests_open_parallel_connections() {
    let s = server(UpstreamProtocol::Http1, Some(3)).await;
    let cm = static_manager(&s, UpstreamProtocol::Http1, None);
    let (a, b, c) = tokio::join!(get(&cm, "/a"), get(&cm, "/b"), get(&cm, "/c"));
    assert!(a.is_ok() && b.is_ok() && c.is_ok());
    assert_eq!(s.connections.load(Ordering::SeqCst), 3);
    // All three are idle now and reused.
    for _ in 0..6 {
        get(&cm, "/again").await.unwrap();
    }
    assert_eq!(s.connections.load(Ordering::SeqCst), 3);
}

#[tokio::test]
async fn http1_max_requests_per_connection() {
    let s = server(UpstreamProtocol::Http1, None).await;
    let cm = static_manager(&s, UpstreamProtocol::Http1, Some(2));
    for _ in 0..10 {
        get(&cm, "/").await.unwrap();
    }
    assert_eq!(s.connections.load(Ordering::SeqCst), 5);
}

#[tokio::test]
async fn http1_idle_connections_past_idle_timeout_are_not_reused() {
    let s = server(UpstreamProtocol::Http1, None).await;
    let mut c = config(
        "127.0.0.1",
        s.addr.port(),
        Discovery::Static,
        UpstreamProtocol::Http1,
        None,
    );
    c.idle_timeout = Some(Duration::ZERO);
    let cm = ClusterManager::new(&[c], &ferry_stats::Store::default());
    for _ in 0..3 {
        get(&cm, "/").await.unwrap();
    }
    assert_eq!(s.connections.load(Ordering::SeqCst), 3);
}

#[tokio::test]
async fn http2_multiplexes_concurrent_requests_on_one_connection() {
    const N: usize = 10;
    let s = server(UpstreamProtocol::Http2, Some(N)).await;
    let cm = static_manager(&s, UpstreamProtocol::Http2, None);
    let mut set = tokio::task::JoinSet::new();
    for i in 0..N {
        let cm = cm.clone();
        set.spawn(async move {
            let mut req = request(&format!("/s{i}"));
            req.headers_mut()
                .insert("host", "example.com".parse().unwrap());
            get_req(&cm, req).await
        });
    }
    // The server answers only once all N requests are in flight at once.
    while let Some(r) = set.join_next().await {
        let body = r.unwrap().unwrap();
        assert!(body.starts_with("example.com /s"), "{body}");
    }
    assert_eq!(s.connections.load(Ordering::SeqCst), 1);
    // Later requests keep using it; without a Host header the authority is the address.
    assert_eq!(get(&cm, "/x").await.unwrap(), format!("{} /x", s.addr));
    assert_eq!(s.connections.load(Ordering::SeqCst), 1);
}

#[tokio::test]
async fn http2_max_requests_per_connection() {
    let s = server(UpstreamProtocol::Http2, None).await;
    let cm = static_manager(&s, UpstreamProtocol::Http2, Some(2));
    for _ in 0..10 {
        get(&cm, "/").await.unwrap();
    }
    assert_eq!(s.connections.load(Ordering::SeqCst), 5);
    // Retired connections close: nothing else (a connect attempt's record) holds them.
    let host = cm.get("backend").unwrap().hosts()[0].clone();
    let deadline = tokio::time::Instant::now() + DEADLINE;
    while host.stats.cx_active.load(Ordering::SeqCst) > 0 {
        assert!(
            tokio::time::Instant::now() < deadline,
            "{} connections still open",
            host.stats.cx_active.load(Ordering::SeqCst)
        );
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
}

#[tokio::test]
async fn connect_failure_to_closed_port() {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let port = listener.local_addr().unwrap().port();
    drop(listener);
    let cm = ClusterManager::new(
        &[config(
            "127.0.0.1",
            port,
            Discovery::Static,
            UpstreamProtocol::Http1,
            None,
        )],
        &ferry_stats::Store::default(),
    );
    let err = get(&cm, "/").await.unwrap_err();
    assert!(matches!(err, UpstreamError::ConnectFailure(_)), "{err:?}");
    assert_eq!(
        err.response_flag(),
        ferry_config::ResponseFlag::UpstreamConnectionFailure
    );
    let cluster = cm.get("backend").unwrap();
    let host = cluster.hosts()[0].clone();
    assert_eq!(host.stats.cx_connect_fail.load(Ordering::SeqCst), 1);
    assert_eq!(host.stats.rq_error.load(Ordering::SeqCst), 1);
    let tcp = host.connect_tcp(&cluster).await.unwrap_err();
    assert!(matches!(tcp, UpstreamError::ConnectFailure(_)), "{tcp:?}");
}

#[tokio::test]
async fn connection_closed_before_response_is_uc() {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let port = listener.local_addr().unwrap().port();
    tokio::spawn(async move {
        loop {
            let (stream, _) = listener.accept().await.unwrap();
            drop(stream);
        }
    });
    let cm = ClusterManager::new(
        &[config(
            "127.0.0.1",
            port,
            Discovery::Static,
            UpstreamProtocol::Http1,
            None,
        )],
        &ferry_stats::Store::default(),
    );
    let err = get(&cm, "/").await.unwrap_err();
    assert!(
        matches!(err, UpstreamError::ConnectionTermination(_)),
        "{err:?}"
    );
    assert_eq!(
        err.response_flag(),
        ferry_config::ResponseFlag::UpstreamConnectionTermination
    );
}

#[tokio::test]
async fn connect_tcp() {
    let s = server(UpstreamProtocol::Http1, None).await;
    let cm = static_manager(&s, UpstreamProtocol::Http1, None);
    let cluster = cm.get("backend").unwrap();
    let host = cluster.choose_host(None).unwrap();
    let (stream, _admission) = host.connect_tcp(&cluster).await.unwrap();
    assert_eq!(stream.peer_addr().unwrap(), s.addr);
    assert!(stream.nodelay().unwrap());
}

fn dns(family: DnsLookupFamily) -> Dns {
    Dns {
        family,
        ..Dns::default()
    }
}

#[tokio::test]
async fn strict_dns_localhost() {
    let s = server(UpstreamProtocol::Http1, None).await;
    let cm = ClusterManager::new(
        &[config(
            "localhost",
            s.addr.port(),
            Discovery::StrictDns(dns(DnsLookupFamily::V4Only)),
            UpstreamProtocol::Http1,
            None,
        )],
        &ferry_stats::Store::default(),
    );
    let cluster = cm.get("backend").unwrap();
    tokio::time::timeout(DEADLINE, cluster.ready())
        .await
        .unwrap();
    let hosts = cluster.hosts();
    assert_eq!(hosts.len(), 1);
    assert_eq!(hosts[0].address, s.addr);
    assert_eq!(hosts[0].hostname, "localhost");
    assert_eq!(get(&cm, "/dns").await.unwrap(), format!("{} /dns", s.addr));
}

#[tokio::test]
async fn logical_dns_localhost_auto() {
    let s = server(UpstreamProtocol::Http1, None).await;
    let cm = ClusterManager::new(
        &[config(
            "localhost",
            s.addr.port(),
            Discovery::LogicalDns(dns(DnsLookupFamily::Auto)),
            UpstreamProtocol::Http1,
            None,
        )],
        &ferry_stats::Store::default(),
    );
    let cluster = cm.get("backend").unwrap();
    tokio::time::timeout(DEADLINE, cluster.ready())
        .await
        .unwrap();
    let hosts = cluster.hosts();
    assert_eq!(hosts.len(), 1);
    assert!(hosts[0].address.ip().is_loopback());
    assert_eq!(hosts[0].address.port(), s.addr.port());
}

#[tokio::test]
async fn dns_failure_is_ready_without_hosts() {
    let cm = ClusterManager::new(
        &[config(
            "no-such-host.invalid",
            80,
            Discovery::StrictDns(dns(DnsLookupFamily::Auto)),
            UpstreamProtocol::Http1,
            None,
        )],
        &ferry_stats::Store::default(),
    );
    let cluster = cm.get("backend").unwrap();
    tokio::time::timeout(DEADLINE, cluster.ready())
        .await
        .unwrap();
    assert!(cluster.hosts().is_empty());
    assert!(cluster.choose_host(None).is_none());
}

#[tokio::test]
async fn static_cluster_is_ready_immediately() {
    let cm = ClusterManager::new(
        &[config(
            "127.0.0.1",
            80,
            Discovery::Static,
            UpstreamProtocol::Http1,
            None,
        )],
        &ferry_stats::Store::default(),
    );
    assert!(cm.get("missing").is_none());
    assert_eq!(cm.clusters().len(), 1);
    let cluster = cm.get("backend").unwrap();
    cluster.ready().await;
    assert_eq!(cluster.hosts()[0].hostname, "127.0.0.1");
}

/// Requests that find no HTTP/2 connection while one is being established wait for that
/// one attempt: when it times out they all fail with it (one connect failure, as Envoy's
/// pending requests), instead of each trying — and timing out — in turn.
#[tokio::test]
async fn http2_requests_share_one_connect_attempt() {
    // A listener whose one-slot backlog is full: further connects get no answer.
    let socket = tokio::net::TcpSocket::new_v4().unwrap();
    socket.bind("127.0.0.1:0".parse().unwrap()).unwrap();
    let blackhole = socket.listen(0).unwrap();
    let addr = blackhole.local_addr().unwrap();
    let _occupant = std::net::TcpStream::connect(addr).unwrap();
    let mut cfg = config(
        "127.0.0.1",
        addr.port(),
        Discovery::Static,
        UpstreamProtocol::Http2,
        None,
    );
    cfg.connect_timeout = Duration::from_millis(500);
    let cm = ClusterManager::new(&[cfg], &ferry_stats::Store::default());
    let results = futures_util::future::join_all((0..4).map(|i| {
        let cm = cm.clone();
        async move { get(&cm, &format!("/{i}")).await }
    }))
    .await;
    for r in &results {
        assert!(matches!(r, Err(UpstreamError::ConnectTimeout)), "{r:?}");
    }
    let host = cm.get("backend").unwrap().hosts()[0].clone();
    assert_eq!(host.stats.cx_connect_fail.load(Ordering::SeqCst), 1);
    assert_eq!(host.stats.cx_total.load(Ordering::SeqCst), 1);
}

/// Waits (with a deadline) until `host` has been sent `n` requests.
async fn until_sent(host: &ferry_upstream::Host, n: u64) {
    let deadline = tokio::time::Instant::now() + DEADLINE;
    while host.stats.rq_total.load(Ordering::SeqCst) < n {
        assert!(
            tokio::time::Instant::now() < deadline,
            "only {} sent",
            host.stats.rq_total.load(Ordering::SeqCst)
        );
        tokio::time::sleep(Duration::from_millis(1)).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_cluster_replaced_under_load_keeps_its_hosts_pools_and_stats() {
    let s = server(UpstreamProtocol::Http1, None).await;
    let store = ferry_stats::Store::default();
    let port = s.addr.port();
    let base = config(
        "127.0.0.1",
        port,
        Discovery::Static,
        UpstreamProtocol::Http1,
        None,
    );
    let cm = ClusterManager::new(std::slice::from_ref(&base), &store);
    // What routes hold: the slot, which follows replacements.
    let slot = cm.slot("backend");
    let first = slot.get().unwrap();
    let host = first.hosts()[0].clone();
    // Four clients, each keeping one connection busy, 200 requests each.
    let mut clients = Vec::new();
    for _ in 0..4 {
        let slot = slot.clone();
        clients.push(tokio::spawn(async move {
            for i in 0..200 {
                let cluster = slot.get().expect("a cluster");
                let host = cluster.choose_host(None).expect("a host");
                let resp = host
                    .send(&cluster, Default::default(), request(&format!("/{i}")))
                    .await?;
                assert_eq!(resp.status(), 200);
                resp.into_body().collect().await.expect("a body");
            }
            Ok::<(), UpstreamError>(())
        }));
    }
    // Replaced five times while they run: another connect timeout, another balancer.
    for i in 1..=5u64 {
        until_sent(&host, i * 100).await;
        let mut changed = base.clone();
        changed.connect_timeout = Duration::from_secs(1 + i);
        changed.lb_policy = if i % 2 == 0 {
            LbPolicy::RoundRobin
        } else {
            LbPolicy::Random
        };
        let replaced = cm.add_or_update(&changed, &store);
        assert!(Arc::ptr_eq(&replaced, &slot.get().unwrap()));
        assert!(Arc::ptr_eq(&replaced.hosts()[0], &host), "the host is kept");
    }
    for c in clients {
        c.await.unwrap().expect("no request failed");
    }
    let last = slot.get().unwrap();
    assert!(!Arc::ptr_eq(&last, &first));
    assert_eq!(last.config.connect_timeout, Duration::from_secs(6));
    // The pool was kept: no more connections than clients, however many replacements.
    let connections = s.connections.load(Ordering::SeqCst);
    assert!((1..=4).contains(&connections), "{connections} connections");
    assert_eq!(
        host.stats.cx_total.load(Ordering::SeqCst),
        connections as u64
    );
    // The stats were kept: every request is counted in the cluster's stats.
    assert_eq!(last.stats.upstream_rq_total.value(), 800);
    // Another endpoint replaces the host; removing the cluster empties the slot, and a
    // cluster added again under the name fills it.
    let mut moved = base.clone();
    moved.localities[0].endpoints[0].port = port.wrapping_add(1);
    let other = cm.add_or_update(&moved, &store);
    assert!(!Arc::ptr_eq(&other.hosts()[0], &host));
    assert!(cm.remove("backend"));
    assert!(slot.get().is_none() && cm.get("backend").is_none());
    assert!(!cm.remove("backend"));
    cm.add_or_update(&base, &store);
    assert!(slot.get().is_some());
    assert_eq!(cm.clusters().len(), 1);
}

#[tokio::test]
async fn a_host_set_replaced_alone_keeps_the_hosts_that_stay() {
    let store = ferry_stats::Store::default();
    let base = config(
        "127.0.0.1",
        1001,
        Discovery::Static,
        UpstreamProtocol::Http1,
        None,
    );
    let cm = ClusterManager::new(std::slice::from_ref(&base), &store);
    let cluster = cm.get("backend").unwrap();
    let kept = cluster.hosts()[0].clone();
    let mut localities = base.localities.clone();
    let mut added = localities[0].endpoints[0].clone();
    added.port = 1002;
    localities[0].endpoints.push(added);
    assert!(cm.set_endpoints("backend", localities.clone()));
    // The same cluster, the kept host, one new host.
    assert!(Arc::ptr_eq(&cm.get("backend").unwrap(), &cluster));
    let hosts = cluster.hosts();
    assert_eq!(hosts.len(), 2);
    assert!(Arc::ptr_eq(&hosts[0], &kept));
    assert_eq!(hosts[1].address.port(), 1002);
    assert_eq!(cluster.stats.membership_total.value(), 2);
    // The first endpoint leaves.
    localities[0].endpoints.remove(0);
    assert!(cm.set_endpoints("backend", localities));
    let hosts = cluster.hosts();
    assert_eq!(hosts.len(), 1);
    assert_eq!(hosts[0].address.port(), 1002);
    assert!(!cm.set_endpoints("missing", Vec::new()));
}
