//! Collectors in the test process: a Zipkin v2 HTTP endpoint (hyper) that keeps every
//! JSON span posted to it, and an OTLP/gRPC receiver (tonic, with opentelemetry-proto's
//! trace, metrics and logs services) that keeps every decoded export.

use http_body_util::BodyExt;
use hyper_util::rt::{TokioExecutor, TokioIo};
use opentelemetry_proto::tonic::collector::logs::v1::logs_service_server::{
    LogsService, LogsServiceServer,
};
use opentelemetry_proto::tonic::collector::logs::v1::{
    ExportLogsServiceRequest, ExportLogsServiceResponse,
};
use opentelemetry_proto::tonic::collector::metrics::v1::metrics_service_server::{
    MetricsService, MetricsServiceServer,
};
use opentelemetry_proto::tonic::collector::metrics::v1::{
    ExportMetricsServiceRequest, ExportMetricsServiceResponse,
};
use opentelemetry_proto::tonic::collector::trace::v1::trace_service_server::{
    TraceService, TraceServiceServer,
};
use opentelemetry_proto::tonic::collector::trace::v1::{
    ExportTraceServiceRequest, ExportTraceServiceResponse,
};
use std::net::SocketAddr;
use std::sync::{Arc, Mutex};
use std::time::Duration;
use tokio::task::JoinHandle;

/// One POST the Zipkin endpoint received.
#[derive(Debug, Clone)]
pub struct ZipkinPost {
    /// The request path.
    pub path: String,
    /// Its headers.
    pub headers: http::HeaderMap,
    /// The spans (the body's JSON array).
    pub spans: Vec<serde_json::Value>,
}

/// A Zipkin collector stand-in; answers 202 to every POST. Stops on drop.
#[derive(Debug)]
pub struct Zipkin {
    addr: SocketAddr,
    posts: Arc<Mutex<Vec<ZipkinPost>>>,
    task: JoinHandle<()>,
}

impl Drop for Zipkin {
    fn drop(&mut self) {
        self.task.abort();
    }
}

impl Zipkin {
    /// Starts on 127.0.0.1, an ephemeral port.
    pub async fn start() -> Zipkin {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
            .await
            .unwrap_or_else(|e| panic!("binding the zipkin collector: {e}"));
        let addr = listener
            .local_addr()
            .unwrap_or_else(|e| panic!("zipkin collector address: {e}"));
        let posts: Arc<Mutex<Vec<ZipkinPost>>> = Arc::default();
        let p = posts.clone();
        let task = tokio::spawn(async move {
            loop {
                let Ok((stream, _)) = listener.accept().await else {
                    continue;
                };
                let p = p.clone();
                tokio::spawn(async move {
                    let svc = hyper::service::service_fn(
                        move |req: http::Request<hyper::body::Incoming>| {
                            let p = p.clone();
                            async move {
                                let (parts, body) = req.into_parts();
                                let bytes = body
                                    .collect()
                                    .await
                                    .map(|b| b.to_bytes())
                                    .unwrap_or_default();
                                let spans =
                                    serde_json::from_slice::<Vec<serde_json::Value>>(&bytes)
                                        .unwrap_or_default();
                                if let Ok(mut posts) = p.lock() {
                                    posts.push(ZipkinPost {
                                        path: parts.uri.path().to_string(),
                                        headers: parts.headers,
                                        spans,
                                    });
                                }
                                Ok::<_, std::convert::Infallible>(
                                    http::Response::builder()
                                        .status(202)
                                        .body(http_body_util::Full::new(bytes::Bytes::new()))
                                        .unwrap_or_default(),
                                )
                            }
                        },
                    );
                    let _ = hyper_util::server::conn::auto::Builder::new(TokioExecutor::new())
                        .serve_connection(TokioIo::new(stream), svc)
                        .await;
                });
            }
        });
        Zipkin { addr, posts, task }
    }

    /// The address.
    pub fn addr(&self) -> SocketAddr {
        self.addr
    }

    /// Every POST so far.
    pub fn posts(&self) -> Vec<ZipkinPost> {
        self.posts.lock().map(|p| p.clone()).unwrap_or_default()
    }

    /// Every span so far.
    pub fn spans(&self) -> Vec<serde_json::Value> {
        self.posts().into_iter().flat_map(|p| p.spans).collect()
    }

    /// The spans once there are at least `n`, waiting up to `deadline`; panics after.
    pub async fn wait_spans(&self, n: usize, deadline: Duration) -> Vec<serde_json::Value> {
        let until = tokio::time::Instant::now() + deadline;
        loop {
            let spans = self.spans();
            if spans.len() >= n {
                return spans;
            }
            assert!(
                tokio::time::Instant::now() < until,
                "zipkin collector: wanted {n} spans, have {}: {spans:#?}",
                spans.len()
            );
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }
}

#[derive(Debug, Default, Clone)]
struct Receiver {
    requests: Arc<Mutex<Vec<ExportTraceServiceRequest>>>,
    metrics: Arc<Mutex<Vec<ExportMetricsServiceRequest>>>,
    logs: Arc<Mutex<Vec<ExportLogsServiceRequest>>>,
}

#[tonic::async_trait]
impl MetricsService for Receiver {
    async fn export(
        &self,
        request: tonic::Request<ExportMetricsServiceRequest>,
    ) -> Result<tonic::Response<ExportMetricsServiceResponse>, tonic::Status> {
        if let Ok(mut m) = self.metrics.lock() {
            m.push(request.into_inner());
        }
        Ok(tonic::Response::new(ExportMetricsServiceResponse::default()))
    }
}

#[tonic::async_trait]
impl LogsService for Receiver {
    async fn export(
        &self,
        request: tonic::Request<ExportLogsServiceRequest>,
    ) -> Result<tonic::Response<ExportLogsServiceResponse>, tonic::Status> {
        if let Ok(mut l) = self.logs.lock() {
            l.push(request.into_inner());
        }
        Ok(tonic::Response::new(ExportLogsServiceResponse::default()))
    }
}

#[tonic::async_trait]
impl TraceService for Receiver {
    async fn export(
        &self,
        request: tonic::Request<ExportTraceServiceRequest>,
    ) -> Result<tonic::Response<ExportTraceServiceResponse>, tonic::Status> {
        if let Ok(mut r) = self.requests.lock() {
            r.push(request.into_inner());
        }
        Ok(tonic::Response::new(ExportTraceServiceResponse::default()))
    }
}

/// An OTLP/gRPC receiver of traces, metrics and logs. Stops on drop.
#[derive(Debug)]
pub struct Otlp {
    addr: SocketAddr,
    receiver: Receiver,
    task: JoinHandle<()>,
}

impl Drop for Otlp {
    fn drop(&mut self) {
        self.task.abort();
    }
}

impl Otlp {
    /// Starts on 127.0.0.1, an ephemeral port.
    pub async fn start() -> Otlp {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
            .await
            .unwrap_or_else(|e| panic!("binding the OTLP receiver: {e}"));
        let addr = listener
            .local_addr()
            .unwrap_or_else(|e| panic!("OTLP receiver address: {e}"));
        let receiver = Receiver::default();
        let services = receiver.clone();
        let incoming = tokio_stream_from(listener);
        let task = tokio::spawn(async move {
            let _ = tonic::transport::Server::builder()
                .add_service(TraceServiceServer::new(services.clone()))
                .add_service(MetricsServiceServer::new(services.clone()))
                .add_service(LogsServiceServer::new(services))
                .serve_with_incoming(incoming)
                .await;
        });
        Otlp {
            addr,
            receiver,
            task,
        }
    }

    /// The address.
    pub fn addr(&self) -> SocketAddr {
        self.addr
    }

    /// Every trace export request so far.
    pub fn requests(&self) -> Vec<ExportTraceServiceRequest> {
        self.receiver
            .requests
            .lock()
            .map(|r| r.clone())
            .unwrap_or_default()
    }

    /// Every metrics export request so far.
    pub fn metric_requests(&self) -> Vec<ExportMetricsServiceRequest> {
        self.receiver
            .metrics
            .lock()
            .map(|r| r.clone())
            .unwrap_or_default()
    }

    /// Every logs export request so far.
    pub fn log_requests(&self) -> Vec<ExportLogsServiceRequest> {
        self.receiver
            .logs
            .lock()
            .map(|r| r.clone())
            .unwrap_or_default()
    }

    /// Every span so far, with the resource attributes of its request.
    pub fn spans(&self) -> Vec<opentelemetry_proto::tonic::trace::v1::Span> {
        self.requests()
            .into_iter()
            .flat_map(|r| r.resource_spans)
            .flat_map(|rs| rs.scope_spans)
            .flat_map(|ss| ss.spans)
            .collect()
    }

    /// The spans once there are at least `n`, waiting up to `deadline`; panics after.
    pub async fn wait_spans(
        &self,
        n: usize,
        deadline: Duration,
    ) -> Vec<opentelemetry_proto::tonic::trace::v1::Span> {
        let until = tokio::time::Instant::now() + deadline;
        loop {
            let spans = self.spans();
            if spans.len() >= n {
                return spans;
            }
            assert!(
                tokio::time::Instant::now() < until,
                "OTLP receiver: wanted {n} spans, have {}: {spans:#?}",
                spans.len()
            );
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }
}

/// The accepted connections of `listener` as a stream (what tonic serves).
fn tokio_stream_from(
    listener: tokio::net::TcpListener,
) -> impl futures_util::Stream<Item = std::io::Result<tokio::net::TcpStream>> {
    futures_util::stream::unfold(listener, |l| async move {
        let conn = l.accept().await.map(|(s, _)| s);
        Some((conn, l))
    })
}
