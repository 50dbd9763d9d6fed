//! The admin endpoint: readiness, server info, listeners, clusters, config dump,
//! health check failing, draining and quitting. The same checks run on ferry and,
//! when available, on real Envoy.

use ferry_test_util::bootstrap::HcmBootstrap;
use ferry_test_util::diff::send;
use ferry_test_util::{backend, rewrite_bootstrap, Flavor, Proxy, Request};
use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::time::Duration;
use tokio::net::TcpStream;

/// How long a condition may take to become true.
const DEADLINE: Duration = Duration::from_secs(10);

fn bootstrap() -> String {
    HcmBootstrap::new()
        .listener_name("main_listener")
        .route("match: {prefix: \"/svc\"}\nroute: {cluster: backend}")
        .cluster("backend", "")
        .yaml()
}

async fn start(flavor: Flavor, backend: SocketAddr) -> Proxy {
    start_yaml(flavor, backend, &bootstrap()).await
}

async fn start_yaml(flavor: Flavor, backend: SocketAddr, yaml: &str) -> Proxy {
    let mut map = BTreeMap::new();
    map.insert("backend".to_string(), backend);
    let rw = rewrite_bootstrap(yaml, &map).unwrap_or_else(|e| panic!("{e:#}"));
    ferry_test_util::proc::start(flavor, &rw.yaml)
        .await
        .unwrap_or_else(|e| panic!("{e:#}"))
}

/// One admin request on a new connection: `(status, body)`. (A full HTTP client:
/// Envoy's admin answers with chunked bodies.)
async fn admin(port: u16, method: &str, path: &str) -> (u16, String) {
    let o = send(port, &Request::new(method, path))
        .await
        .unwrap_or_else(|e| panic!("{method} {path}: {e:#}"));
    (o.status, o.body_text())
}

async fn get(port: u16, path: &str) -> (u16, String) {
    admin(port, "GET", path).await
}

async fn admin_post(port: u16, path: &str) -> (u16, String) {
    admin(port, "POST", path).await
}

/// Polls `cond` until it holds, failing with `what` after [`DEADLINE`].
async fn eventually<F, Fut>(what: &str, mut cond: F)
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = bool>,
{
    let deadline = tokio::time::Instant::now() + DEADLINE;
    while !cond().await {
        assert!(
            tokio::time::Instant::now() < deadline,
            "not within {DEADLINE:?}: {what}"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

async fn refuses(port: u16) -> bool {
    TcpStream::connect(("127.0.0.1", port)).await.is_err()
}

/// Whether process `pid` has exited (gone, or a zombie waiting to be reaped).
fn exited(pid: u32) -> bool {
    match std::fs::read_to_string(format!("/proc/{pid}/stat")) {
        Err(_) => true,
        Ok(stat) => stat
            .rsplit_once(')')
            .and_then(|(_, rest)| rest.split_whitespace().next())
            .is_some_and(|state| state == "Z" || state == "X"),
    }
}

async fn introspection(flavor: Flavor) {
    let be = backend::start("admin").await;
    let proxy = start(flavor, be.addr()).await;
    let admin = proxy.admin_port();
    let port = proxy.listener_port().unwrap_or_default();

    let (status, body) = get(admin, "/ready").await;
    assert_eq!((status, body.trim()), (200, "LIVE"), "{flavor} /ready");

    let (status, body) = get(admin, "/server_info").await;
    assert_eq!(status, 200, "{flavor} /server_info");
    let info: serde_json::Value =
        serde_json::from_str(&body).unwrap_or_else(|e| panic!("{flavor}: {e}: {body}"));
    assert_eq!(info["state"], "LIVE", "{flavor}: {info}");

    let (status, body) = get(admin, "/listeners").await;
    assert_eq!(status, 200, "{flavor} /listeners");
    assert!(
        body.lines()
            .any(|l| l == format!("main_listener::127.0.0.1:{port}")),
        "{flavor} /listeners: {body}"
    );

    const N: u64 = 3;
    for _ in 0..N {
        let o = send(port, &Request::get("/svc/a"))
            .await
            .unwrap_or_else(|e| panic!("{e:#}"));
        assert_eq!(o.status, 200, "{flavor}");
    }
    let want = format!("backend::{}::rq_total::{N}", be.addr());
    eventually(&format!("{flavor} /clusters shows {want}"), || async {
        get(admin, "/clusters").await.1.lines().any(|l| l == want)
    })
    .await;

    let (status, body) = get(admin, "/config_dump").await;
    assert_eq!(status, 200, "{flavor} /config_dump");
    let dump: serde_json::Value =
        serde_json::from_str(&body).unwrap_or_else(|e| panic!("{flavor}: {e}: {body}"));
    assert!(
        dump.to_string().contains("\"name\":\"backend\""),
        "{flavor} /config_dump lacks the cluster: {body}"
    );

    // Admin answers only on its own address: on the listener, /ready is routed
    // like any request and finds no route.
    let o = send(port, &Request::get("/ready"))
        .await
        .unwrap_or_else(|e| panic!("{e:#}"));
    assert_eq!(o.status, 404, "{flavor}: /ready on the listener");
    assert_eq!(
        be.requests(),
        N,
        "{flavor}: /ready must not reach the backend"
    );
}

async fn health_check_drain_and_quit(flavor: Flavor) {
    let be = backend::start("admin").await;
    let proxy = start(flavor, be.addr()).await;
    let admin = proxy.admin_port();
    let port = proxy.listener_port().unwrap_or_default();

    // Mutations need POST.
    let (status, _) = get(admin, "/healthcheck/fail").await;
    assert_ne!(
        status, 200,
        "{flavor}: GET /healthcheck/fail must be refused"
    );
    assert_eq!(get(admin, "/ready").await.0, 200, "{flavor}");

    assert_eq!(
        admin_post(admin, "/healthcheck/fail").await.0,
        200,
        "{flavor}"
    );
    let (status, body) = get(admin, "/ready").await;
    assert_eq!(
        status, 503,
        "{flavor} /ready after healthcheck/fail: {body}"
    );
    // Failing health checks does not stop traffic; a listener of the DEFAULT
    // `drain_type` drains: its HTTP/1.1 responses close their connections.
    let o = send(port, &Request::get("/svc/still"))
        .await
        .unwrap_or_else(|e| panic!("{e:#}"));
    assert_eq!(o.status, 200, "{flavor}");
    assert_eq!(o.header("connection"), Some("close"), "{flavor}");

    assert_eq!(
        admin_post(admin, "/healthcheck/ok").await.0,
        200,
        "{flavor}"
    );
    let (status, body) = get(admin, "/ready").await;
    assert_eq!((status, body.trim()), (200, "LIVE"), "{flavor}");

    assert_eq!(
        admin_post(admin, "/drain_listeners").await.0,
        200,
        "{flavor}"
    );
    eventually(
        &format!("{flavor} listener refuses after /drain_listeners"),
        || refuses(port),
    )
    .await;
    // Admin keeps answering while the listeners are drained.
    assert!(get(admin, "/server_info").await.0 == 200, "{flavor}");

    assert_eq!(admin_post(admin, "/quitquitquit").await.0, 200, "{flavor}");
    let pid = proxy.pid();
    eventually(
        &format!("{flavor} exits after /quitquitquit"),
        || async move { exited(pid) && refuses(admin).await },
    )
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn admin_reports_readiness_info_listeners_clusters_and_config() {
    introspection(Flavor::Ferry).await;
    if ferry_test_util::require_envoy() {
        introspection(Flavor::Envoy).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn admin_fails_health_checks_drains_listeners_and_quits() {
    health_check_drain_and_quit(Flavor::Ferry).await;
    if ferry_test_util::require_envoy() {
        health_check_drain_and_quit(Flavor::Envoy).await;
    }
}

/// A listener of `drain_type: MODIFY_ONLY` does not drain while the server is health
/// check failed: its responses keep their connections, on Envoy and ferry.
async fn modify_only_listeners_do_not_drain_on_health_check_failure(flavor: Flavor) {
    let be = backend::start("admin").await;
    let yaml = bootstrap().replacen(
        "  - name: main_listener\n",
        "  - name: main_listener\n    drain_type: MODIFY_ONLY\n",
        1,
    );
    let proxy = start_yaml(flavor, be.addr(), &yaml).await;
    let admin = proxy.admin_port();
    let port = proxy.listener_port().unwrap_or_default();
    assert_eq!(
        admin_post(admin, "/healthcheck/fail").await.0,
        200,
        "{flavor}"
    );
    let o = send(port, &Request::get("/svc/still"))
        .await
        .unwrap_or_else(|e| panic!("{e:#}"));
    assert_eq!(o.status, 200, "{flavor}");
    assert_eq!(o.header("connection"), None, "{flavor}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn modify_only_listeners_keep_connections_when_health_checks_fail() {
    modify_only_listeners_do_not_drain_on_health_check_failure(Flavor::Ferry).await;
    if ferry_test_util::require_envoy() {
        modify_only_listeners_do_not_drain_on_health_check_failure(Flavor::Envoy).await;
    }
}
