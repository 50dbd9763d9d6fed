//! gRPC through ferry: a tonic `grpc.health.v1.Health` server behind a cluster with
//! HTTP/2 upstream, a route matching `grpc: {}`, and a tonic client. Unary calls
//! need trailers end to end (`grpc-status`); `Watch` needs a response stream that
//! stays open and delivers messages as the server sends them.

use ferry_test_util::bootstrap::HcmBootstrap;
use ferry_test_util::{rewrite_bootstrap, start_ferry};
use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::time::Duration;
use tonic_health::pb::health_check_response::ServingStatus;
use tonic_health::pb::health_client::HealthClient;
use tonic_health::pb::{HealthCheckRequest, HealthCheckResponse};
use tonic_health::server::HealthReporter;

/// How long one gRPC call or stream message may take before the test fails.
const DEADLINE: Duration = Duration::from_secs(10);

/// The service whose status the tests set and read.
const SERVICE: &str = "ferry.test.Echo";

fn bootstrap() -> String {
    HcmBootstrap::new()
        .listener_name("grpc_listener")
        .hcm("codec_type: AUTO")
        .route("match: {prefix: \"/\", grpc: {}}\nroute: {cluster: grpc_backend}")
        .cluster(
            "grpc_backend",
            r#"
            typed_extension_protocol_options:
              envoy.extensions.upstreams.http.v3.HttpProtocolOptions:
                "@type": type.googleapis.com/envoy.extensions.upstreams.http.v3.HttpProtocolOptions
                explicit_http_config:
                  http2_protocol_options: {}"#,
        )
        .yaml()
}

/// A tonic server with the health service on 127.0.0.1:0; `SERVICE` is SERVING.
async fn health_backend() -> (SocketAddr, HealthReporter) {
    let (reporter, service) = tonic_health::server::health_reporter();
    reporter
        .set_service_status(SERVICE, tonic_health::ServingStatus::Serving)
        .await;
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
        .await
        .unwrap_or_else(|e| panic!("bind: {e}"));
    let addr = listener
        .local_addr()
        .unwrap_or_else(|e| panic!("local_addr: {e}"));
    let incoming = tonic::transport::server::TcpIncoming::from(listener);
    tokio::spawn(async move {
        let _ = tonic::transport::Server::builder()
            .add_service(service)
            .serve_with_incoming(incoming)
            .await;
    });
    (addr, reporter)
}

async fn client(port: u16) -> HealthClient<tonic::transport::Channel> {
    let channel = tonic::transport::Endpoint::from_shared(format!("http://127.0.0.1:{port}"))
        .unwrap_or_else(|e| panic!("{e}"))
        .connect_timeout(DEADLINE)
        .connect()
        .await
        .unwrap_or_else(|e| panic!("cannot connect to ferry: {e}"));
    HealthClient::new(channel)
}

async fn ferry_for(backend: SocketAddr) -> ferry_test_util::Proxy {
    let mut map = BTreeMap::new();
    map.insert("grpc_backend".to_string(), backend);
    let rw = rewrite_bootstrap(&bootstrap(), &map).unwrap_or_else(|e| panic!("{e:#}"));
    start_ferry(&rw.yaml)
        .await
        .unwrap_or_else(|e| panic!("{e:#}"))
}

fn request(service: &str) -> HealthCheckRequest {
    HealthCheckRequest {
        service: service.to_owned(),
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn unary_check_returns_serving_and_errors_keep_their_grpc_status() {
    let (backend, _reporter) = health_backend().await;
    let proxy = ferry_for(backend).await;
    let mut client = client(proxy.listener_port().unwrap_or_default()).await;

    let resp = tokio::time::timeout(DEADLINE, client.check(request(SERVICE)))
        .await
        .unwrap_or_else(|_| panic!("Check timed out; ferry log:\n{}", proxy.log()))
        .unwrap_or_else(|s| panic!("Check failed: {s:?}\nferry log:\n{}", proxy.log()));
    assert_eq!(resp.get_ref().status(), ServingStatus::Serving);

    // An unknown service is a gRPC error carried only in trailers (grpc-status 5).
    let err = tokio::time::timeout(DEADLINE, client.check(request("no.such.Service")))
        .await
        .unwrap_or_else(|_| panic!("Check timed out"))
        .err()
        .unwrap_or_else(|| panic!("an unknown service must be NOT_FOUND"));
    assert_eq!(err.code(), tonic::Code::NotFound, "{err:?}");

    // The route matches gRPC requests only: a plain GET finds no route.
    let plain = ferry_test_util::diff::send(
        proxy.listener_port().unwrap_or_default(),
        &ferry_test_util::Request::get("/grpc.health.v1.Health/Check"),
    )
    .await
    .unwrap_or_else(|e| panic!("{e:#}"));
    assert_eq!(plain.status, 404, "{}", plain.body_text());
}

/// The next message of a Watch stream, within the deadline.
async fn next(stream: &mut tonic::Streaming<HealthCheckResponse>) -> HealthCheckResponse {
    tokio::time::timeout(DEADLINE, stream.message())
        .await
        .unwrap_or_else(|_| panic!("no Watch message within {DEADLINE:?}"))
        .unwrap_or_else(|s| panic!("Watch stream failed: {s:?}"))
        .unwrap_or_else(|| panic!("Watch stream ended early"))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn server_streaming_watch_delivers_status_changes() {
    let (backend, reporter) = health_backend().await;
    let proxy = ferry_for(backend).await;
    let mut client = client(proxy.listener_port().unwrap_or_default()).await;

    let mut stream = tokio::time::timeout(DEADLINE, client.watch(request(SERVICE)))
        .await
        .unwrap_or_else(|_| panic!("Watch timed out; ferry log:\n{}", proxy.log()))
        .unwrap_or_else(|s| panic!("Watch failed: {s:?}\nferry log:\n{}", proxy.log()))
        .into_inner();
    let first = next(&mut stream).await;
    assert_eq!(first.status(), ServingStatus::Serving);

    // The change is only sent after the first message arrived: it must flow
    // through the already open stream, not be buffered until the stream ends.
    reporter
        .set_service_status(SERVICE, tonic_health::ServingStatus::NotServing)
        .await;
    let second = next(&mut stream).await;
    assert_eq!(second.status(), ServingStatus::NotServing);

    reporter
        .set_service_status(SERVICE, tonic_health::ServingStatus::Serving)
        .await;
    let third = next(&mut stream).await;
    assert_eq!(third.status(), ServingStatus::Serving);
}

/// A Check through `flavor` to a cluster whose host refuses connections.
async fn check_with_backend_down(flavor: ferry_test_util::Flavor) -> tonic::Status {
    let closed: SocketAddr = format!("127.0.0.1:{}", ferry_test_util::free_port())
        .parse()
        .unwrap_or_else(|e| panic!("{e}"));
    let mut map = BTreeMap::new();
    map.insert("grpc_backend".to_string(), closed);
    let rw = rewrite_bootstrap(&bootstrap(), &map).unwrap_or_else(|e| panic!("{e:#}"));
    let proxy = ferry_test_util::proc::start(flavor, &rw.yaml)
        .await
        .unwrap_or_else(|e| panic!("{e:#}"));
    let mut client = client(proxy.listener_port().unwrap_or_default()).await;
    tokio::time::timeout(DEADLINE, client.check(request(SERVICE)))
        .await
        .unwrap_or_else(|_| panic!("{flavor}: Check timed out"))
        .err()
        .unwrap_or_else(|| panic!("{flavor}: Check must fail with the backend down"))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn upstream_connect_failure_is_a_grpc_unavailable() {
    // Envoy answers a gRPC request's local reply as gRPC: HTTP 200 with
    // grpc-status 14 (UNAVAILABLE) and the reason in grpc-message.
    let envoy = if ferry_test_util::require_envoy() {
        Some(check_with_backend_down(ferry_test_util::Flavor::Envoy).await)
    } else {
        None
    };
    let ferry = check_with_backend_down(ferry_test_util::Flavor::Ferry).await;
    assert_eq!(
        ferry.code(),
        tonic::Code::Unavailable,
        "ferry {ferry:?}\nenvoy {envoy:?}"
    );
    if let Some(envoy) = envoy {
        assert_eq!(
            ferry.code(),
            envoy.code(),
            "ferry {ferry:?}\nenvoy {envoy:?}"
        );
        assert_eq!(
            ferry.message(),
            envoy.message(),
            "ferry {ferry:?}\nenvoy {envoy:?}"
        );
    }
}
