//! A scripted xDS server for tests, written from the xDS protocol document: ADS, state
//! of the world. A test sets the resources of a type (with a version); every stream
//! that subscribed to the type gets them, with a fresh nonce. Every request the proxy
//! sends (subscriptions, ACKs, NACKs) is recorded for the test to assert on.

use ferry_envoy_api::pb::envoy::service::discovery::v3::aggregated_discovery_service_server::{
    AggregatedDiscoveryService, AggregatedDiscoveryServiceServer,
};
use ferry_envoy_api::pb::envoy::service::discovery::v3::{
    DeltaDiscoveryRequest, DeltaDiscoveryResponse, DiscoveryRequest, DiscoveryResponse,
};
use ferry_envoy_api::pb::google::protobuf::Any;
use futures_util::Stream;
use std::collections::{HashMap, HashSet};
use std::net::SocketAddr;
use std::pin::Pin;
use std::sync::{Arc, Mutex};
use std::time::Duration;
use tokio::sync::{mpsc, watch, Notify};
use tokio::task::JoinHandle;

/// The type URL of listeners.
pub const LISTENER: &str = "type.googleapis.com/envoy.config.listener.v3.Listener";
/// The type URL of clusters.
pub const CLUSTER: &str = "type.googleapis.com/envoy.config.cluster.v3.Cluster";
/// The type URL of cluster load assignments.
pub const ENDPOINTS: &str = "type.googleapis.com/envoy.config.endpoint.v3.ClusterLoadAssignment";
/// The type URL of route configurations.
pub const ROUTE: &str = "type.googleapis.com/envoy.config.route.v3.RouteConfiguration";

/// Packs a resource written in YAML (Envoy's v3 JSON mapping) as an `Any` of
/// `full_name` (`envoy.config.listener.v3.Listener`...).
pub fn resource<T: prost::Message + Default>(yaml: &str, full_name: &str) -> Any {
    let message: T =
        ferry_envoy_api::decode_message(yaml, ferry_envoy_api::Format::Yaml, full_name)
            .unwrap_or_else(|e| panic!("{full_name}: {e}\n{yaml}"))
            .message;
    Any {
        type_url: format!("type.googleapis.com/{full_name}"),
        value: message.encode_to_vec(),
    }
}

/// A listener resource from YAML.
pub fn listener(yaml: &str) -> Any {
    resource::<ferry_envoy_api::pb::envoy::config::listener::v3::Listener>(
        yaml,
        "envoy.config.listener.v3.Listener",
    )
}

/// A route configuration resource from YAML.
pub fn route_configuration(yaml: &str) -> Any {
    resource::<ferry_envoy_api::pb::envoy::config::route::v3::RouteConfiguration>(
        yaml,
        "envoy.config.route.v3.RouteConfiguration",
    )
}

/// A cluster load assignment resource from YAML.
pub fn cluster_load_assignment(yaml: &str) -> Any {
    resource::<ferry_envoy_api::pb::envoy::config::endpoint::v3::ClusterLoadAssignment>(
        yaml,
        "envoy.config.endpoint.v3.ClusterLoadAssignment",
    )
}

/// A cluster resource from YAML.
pub fn cluster(yaml: &str) -> Any {
    resource::<ferry_envoy_api::pb::envoy::config::cluster::v3::Cluster>(
        yaml,
        "envoy.config.cluster.v3.Cluster",
    )
}

pub mod yaml;

#[derive(Default)]
struct Shared {
    /// Per type URL: the version and the resources.
    resources: HashMap<String, (String, Vec<Any>)>,
    requests: Vec<DiscoveryRequest>,
    nonce: u64,
    streams: usize,
}

#[derive(Clone)]
struct Service {
    shared: Arc<Mutex<Shared>>,
    /// Bumped whenever resources change.
    changed: watch::Sender<u64>,
    request_seen: Arc<Notify>,
    /// Turns true when the server stops: streams end, connections close.
    stopping: watch::Sender<bool>,
}

/// The server: 127.0.0.1, an ephemeral port; stopped when dropped.
pub struct XdsServer {
    addr: SocketAddr,
    service: Service,
    task: Option<JoinHandle<()>>,
}

impl Drop for XdsServer {
    fn drop(&mut self) {
        self.service.stopping.send_replace(true);
    }
}

impl XdsServer {
    /// Starts the server.
    pub async fn start() -> XdsServer {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
            .await
            .unwrap_or_else(|e| panic!("binding the xDS server: {e}"));
        XdsServer::serve(listener)
    }

    /// Starts the server again at `addr` (a control plane restarting), keeping nothing.
    pub async fn restart_at(addr: SocketAddr) -> XdsServer {
        let listener = tokio::net::TcpListener::bind(addr)
            .await
            .unwrap_or_else(|e| panic!("binding the xDS server at {addr}: {e}"));
        XdsServer::serve(listener)
    }

    fn serve(listener: tokio::net::TcpListener) -> XdsServer {
        let addr = listener
            .local_addr()
            .unwrap_or_else(|e| panic!("xDS server address: {e}"));
        let service = Service {
            shared: Arc::default(),
            changed: watch::channel(0).0,
            request_seen: Arc::new(Notify::new()),
            stopping: watch::channel(false).0,
        };
        let svc = service.clone();
        let mut stopping = service.stopping.subscribe();
        let incoming = futures_util::stream::unfold(listener, |l| async move {
            // Responses go out at once (no Nagle delay on the stream).
            let conn = l.accept().await.map(|(s, _)| {
                let _ = s.set_nodelay(true);
                s
            });
            Some((conn, l))
        });
        let task = tokio::spawn(async move {
            let _ = tonic::transport::Server::builder()
                .add_service(AggregatedDiscoveryServiceServer::new(svc))
                .serve_with_incoming_shutdown(incoming, async move {
                    let _ = stopping.wait_for(|s| *s).await;
                })
                .await;
        });
        XdsServer {
            addr,
            service,
            task: Some(task),
        }
    }

    /// Stops the server (a control plane going away): its streams end, its
    /// connections close and its port is free again when this returns.
    pub async fn stop(mut self) {
        self.service.stopping.send_replace(true);
        if let Some(task) = self.task.take() {
            let _ = task.await;
        }
    }

    /// The address.
    pub fn addr(&self) -> SocketAddr {
        self.addr
    }

    /// Sets every resource of `type_url` (state of the world) at `version`; streams
    /// subscribed to the type get them.
    pub fn set(&self, type_url: &str, version: &str, resources: Vec<Any>) {
        let mut shared = self.service.lock();
        shared
            .resources
            .insert(type_url.to_string(), (version.to_string(), resources));
        drop(shared);
        self.service.changed.send_modify(|g| *g += 1);
    }

    /// Every request received so far, in order.
    pub fn requests(&self) -> Vec<DiscoveryRequest> {
        self.service.lock().requests.clone()
    }

    /// Streams opened so far.
    pub fn streams(&self) -> usize {
        self.service.lock().streams
    }

    /// Waits for a request that `pred` accepts (None after `deadline`).
    pub async fn wait_request(
        &self,
        deadline: Duration,
        pred: impl Fn(&DiscoveryRequest) -> bool,
    ) -> Option<DiscoveryRequest> {
        let wait = async {
            loop {
                let seen = self.service.request_seen.notified();
                if let Some(r) = self.requests().into_iter().find(|r| pred(r)) {
                    return r;
                }
                seen.await;
            }
        };
        tokio::time::timeout(deadline, wait).await.ok()
    }

    /// Waits for the ACK of `version` of `type_url`.
    pub async fn wait_ack(&self, type_url: &str, version: &str) -> Option<DiscoveryRequest> {
        self.wait_request(Duration::from_secs(10), |r| {
            r.type_url == type_url
                && r.version_info == version
                && !r.response_nonce.is_empty()
                && r.error_detail.is_none()
        })
        .await
    }

    /// Waits for a NACK of `type_url` (a request with an `error_detail`).
    pub async fn wait_nack(&self, type_url: &str) -> Option<DiscoveryRequest> {
        self.wait_request(Duration::from_secs(10), |r| {
            r.type_url == type_url && r.error_detail.is_some()
        })
        .await
    }
}

impl Service {
    fn lock(&self) -> std::sync::MutexGuard<'_, Shared> {
        self.shared.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// The response for `type_url` if its version is not the one already sent.
    fn response(
        &self,
        type_url: &str,
        sent: &mut HashMap<String, String>,
    ) -> Option<DiscoveryResponse> {
        let mut shared = self.lock();
        let (version, resources) = shared.resources.get(type_url)?.clone();
        if sent.get(type_url) == Some(&version) {
            return None;
        }
        sent.insert(type_url.to_string(), version.clone());
        shared.nonce += 1;
        Some(DiscoveryResponse {
            version_info: version,
            resources,
            type_url: type_url.to_string(),
            nonce: shared.nonce.to_string(),
            ..Default::default()
        })
    }
}

type Responses<T> = Pin<Box<dyn Stream<Item = Result<T, tonic::Status>> + Send>>;

#[tonic::async_trait]
impl AggregatedDiscoveryService for Service {
    type StreamAggregatedResourcesStream = Responses<DiscoveryResponse>;
    type DeltaAggregatedResourcesStream = Responses<DeltaDiscoveryResponse>;

    async fn stream_aggregated_resources(
        &self,
        request: tonic::Request<tonic::Streaming<DiscoveryRequest>>,
    ) -> Result<tonic::Response<Self::StreamAggregatedResourcesStream>, tonic::Status> {
        let mut inbound = request.into_inner();
        let (tx, mut rx) = mpsc::channel::<Result<DiscoveryResponse, tonic::Status>>(16);
        let svc = self.clone();
        svc.lock().streams += 1;
        tokio::spawn(async move {
            let mut changed = svc.changed.subscribe();
            let mut stopping = svc.stopping.subscribe();
            let mut subscribed: HashSet<String> = HashSet::new();
            let mut sent: HashMap<String, String> = HashMap::new();
            loop {
                tokio::select! {
                    _ = async { let _ = stopping.wait_for(|s| *s).await; } => return,
                    request = inbound.message() => {
                        let Ok(Some(request)) = request else { return };
                        let type_url = request.type_url.clone();
                        svc.lock().requests.push(request);
                        svc.request_seen.notify_waiters();
                        subscribed.insert(type_url.clone());
                        if let Some(r) = svc.response(&type_url, &mut sent) {
                            if tx.send(Ok(r)).await.is_err() { return; }
                        }
                    }
                    change = changed.changed() => {
                        if change.is_err() { return; }
                        for type_url in subscribed.clone() {
                            if let Some(r) = svc.response(&type_url, &mut sent) {
                                if tx.send(Ok(r)).await.is_err() { return; }
                            }
                        }
                    }
                }
            }
        });
        let outbound = futures_util::stream::poll_fn(move |cx| rx.poll_recv(cx));
        Ok(tonic::Response::new(Box::pin(outbound)))
    }

    async fn delta_aggregated_resources(
        &self,
        _request: tonic::Request<tonic::Streaming<DeltaDiscoveryRequest>>,
    ) -> Result<tonic::Response<Self::DeltaAggregatedResourcesStream>, tonic::Status> {
        Err(tonic::Status::unimplemented(
            "delta xDS is not scripted yet",
        ))
    }
}
