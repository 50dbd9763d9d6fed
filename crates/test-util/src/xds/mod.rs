//! A scripted xDS server for tests, written from the xDS protocol document: ADS and
//! the per-type services (LDS, CDS, RDS, EDS), state of the world and delta. A test
//! sets the resources of a type (with a version); every stream subscribed to the type
//! gets them (state of the world: all of them; delta: what changed since, and what
//! was removed), with a fresh nonce. Resources may carry a TTL, and the test may send
//! heartbeats. Every request the proxy sends is recorded, and every ACK and NACK, for
//! the test to assert on.

pub use ferry_envoy_api::pb::envoy::config::core::v3::node::UserAgentVersionType;
use ferry_envoy_api::pb::envoy::service::discovery::v3::{DeltaDiscoveryRequest, DiscoveryRequest};
pub use ferry_envoy_api::pb::google::protobuf::Any;
use ferry_envoy_api::pb::google::rpc::Status;
use std::collections::HashMap;
use std::net::SocketAddr;
use std::sync::{Arc, Mutex};
use std::time::Duration;
use tokio::sync::{broadcast, watch, Notify};
use tokio::task::JoinHandle;

mod service;

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

/// How a proxy answered a response: an ACK (no `error_detail`) or a NACK. In state of
/// the world, `version_info` is the one the request carries (the version accepted
/// last); in delta, where requests carry none, it is the version of the response
/// answered (ACK) or of the last one the stream ACKed (NACK).
#[derive(Debug, Clone)]
pub struct Answer {
    /// The type answered.
    pub type_url: String,
    /// See above.
    pub version_info: String,
    /// The nonce of the response answered.
    pub response_nonce: String,
    /// Why the response was refused (a NACK).
    pub error_detail: Option<Status>,
    /// Whether it came on a delta stream.
    pub delta: bool,
}

#[derive(Default)]
struct Shared {
    /// Per type URL: the version and the resources.
    resources: HashMap<String, (String, Vec<Any>)>,
    /// Per type URL: the TTL its resources are sent with.
    ttls: HashMap<String, Duration>,
    requests: Vec<DiscoveryRequest>,
    delta_requests: Vec<DeltaDiscoveryRequest>,
    answers: Vec<Answer>,
    /// The gRPC methods of the streams opened, in order.
    methods: Vec<&'static str>,
    nonce: u64,
}

/// What the streams are told.
#[derive(Debug, Clone)]
enum Event {
    /// Resources changed.
    Changed,
    /// Send heartbeats of the resources of a type.
    Heartbeat(String),
}

#[derive(Clone)]
struct Service {
    shared: Arc<Mutex<Shared>>,
    events: broadcast::Sender<Event>,
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
            events: broadcast::channel(1024).0,
            request_seen: Arc::new(Notify::new()),
            stopping: watch::channel(false).0,
        };
        let task = tokio::spawn(service::serve(service.clone(), listener));
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
    /// subscribed to the type get them (delta streams: those that changed, and the
    /// names of those gone).
    pub fn set(&self, type_url: &str, version: &str, resources: Vec<Any>) {
        let mut shared = self.service.lock();
        shared
            .resources
            .insert(type_url.to_string(), (version.to_string(), resources));
        drop(shared);
        let _ = self.service.events.send(Event::Changed);
    }

    /// Sends the resources of `type_url` set from now on with `ttl` (state of the
    /// world: wrapped in `Resource`s).
    pub fn set_ttl(&self, type_url: &str, ttl: Duration) {
        self.service.lock().ttls.insert(type_url.to_string(), ttl);
    }

    /// Sends a heartbeat of every resource of `type_url` (its name and version, without
    /// the resource) to the streams subscribed to it.
    pub fn heartbeat(&self, type_url: &str) {
        let _ = self
            .service
            .events
            .send(Event::Heartbeat(type_url.to_string()));
    }

    /// Every state-of-the-world request received so far, in order.
    pub fn requests(&self) -> Vec<DiscoveryRequest> {
        self.service.lock().requests.clone()
    }

    /// Every delta request received so far, in order.
    pub fn delta_requests(&self) -> Vec<DeltaDiscoveryRequest> {
        self.service.lock().delta_requests.clone()
    }

    /// The gRPC methods of the streams opened so far, in order (e.g.
    /// `StreamAggregatedResources`, `DeltaListeners`).
    pub fn methods(&self) -> Vec<&'static str> {
        self.service.lock().methods.clone()
    }

    /// Streams opened so far.
    pub fn streams(&self) -> usize {
        self.service.lock().methods.len()
    }

    /// Waits until `pred` accepts what the server recorded (None after `deadline`).
    async fn wait<T>(&self, deadline: Duration, find: impl Fn(&Shared) -> Option<T>) -> Option<T> {
        let wait = async {
            loop {
                let seen = self.service.request_seen.notified();
                if let Some(found) = find(&self.service.lock()) {
                    return found;
                }
                seen.await;
            }
        };
        tokio::time::timeout(deadline, wait).await.ok()
    }

    /// Waits for a state-of-the-world request that `pred` accepts.
    pub async fn wait_request(
        &self,
        deadline: Duration,
        pred: impl Fn(&DiscoveryRequest) -> bool,
    ) -> Option<DiscoveryRequest> {
        self.wait(deadline, |s| s.requests.iter().find(|r| pred(r)).cloned())
            .await
    }

    /// Waits for a delta request that `pred` accepts.
    pub async fn wait_delta_request(
        &self,
        deadline: Duration,
        pred: impl Fn(&DeltaDiscoveryRequest) -> bool,
    ) -> Option<DeltaDiscoveryRequest> {
        self.wait(deadline, |s| {
            s.delta_requests.iter().find(|r| pred(r)).cloned()
        })
        .await
    }

    /// Waits for the ACK of `version` of `type_url` (on either protocol).
    pub async fn wait_ack(&self, type_url: &str, version: &str) -> Option<Answer> {
        self.wait(Duration::from_secs(10), |s| {
            s.answers
                .iter()
                .find(|a| {
                    a.type_url == type_url && a.version_info == version && a.error_detail.is_none()
                })
                .cloned()
        })
        .await
    }

    /// How many NACKs of `type_url` came so far.
    pub fn nacks(&self, type_url: &str) -> usize {
        let shared = self.service.lock();
        let nacks = shared.answers.iter();
        nacks
            .filter(|a| a.type_url == type_url && a.error_detail.is_some())
            .count()
    }

    /// Waits for a NACK of `type_url` (an answer with an `error_detail`).
    pub async fn wait_nack(&self, type_url: &str) -> Option<Answer> {
        self.wait(Duration::from_secs(10), |s| {
            s.answers
                .iter()
                .find(|a| a.type_url == type_url && a.error_detail.is_some())
                .cloned()
        })
        .await
    }
}

impl Service {
    fn lock(&self) -> std::sync::MutexGuard<'_, Shared> {
        self.shared.lock().unwrap_or_else(|e| e.into_inner())
    }
}
