//! The aggregated discovery stream (ADS), state of the world: one gRPC stream to the
//! `ads_config` cluster carries every subscribed type. Each type is requested (wildcard:
//! all listeners, all clusters), each response applied and answered with an ACK (its
//! `version_info` and nonce) or a NACK (the last accepted version, the nonce and an
//! `error_detail` naming every problem). When the stream fails or the control plane
//! goes away, the client reconnects with jittered exponential back-off, asking again
//! for what it has (its last accepted versions) while the proxy keeps serving.

use super::apply::{apply, Applied};
use super::{Init, ResourceType, Stats};
use crate::grpc_client::ClusterChannels;
use crate::server::Server;
use ferry_config::dynamic::Ads;
use ferry_envoy_api::pb::envoy::config::core::v3 as core;
use ferry_envoy_api::pb::envoy::service::discovery::v3::aggregated_discovery_service_client::AggregatedDiscoveryServiceClient;
use ferry_envoy_api::pb::envoy::service::discovery::v3::{DiscoveryRequest, DiscoveryResponse};
use ferry_envoy_api::pb::google::rpc::Status;
use std::collections::HashMap;
use std::sync::Arc;
use std::time::{Duration, SystemTime};
use tokio::sync::mpsc;

/// Envoy's back-off between attempts to reach the control plane.
const BACKOFF_BASE: Duration = Duration::from_millis(500);
const BACKOFF_MAX: Duration = Duration::from_secs(30);

/// The gRPC status code of a NACK's `error_detail` (INVALID_ARGUMENT).
const INVALID_ARGUMENT: i32 = 3;

/// The client: what it talks to, and what it keeps across streams (the last accepted
/// version of each type and what it applied).
struct Client {
    server: Arc<Server>,
    ads: Ads,
    channels: ClusterChannels,
    types: Vec<ResourceType>,
    stats: Stats,
    init: Arc<Init>,
    versions: HashMap<ResourceType, String>,
    /// The last nonce of each type on the current stream.
    nonces: HashMap<ResourceType, String>,
    /// The names asked for of each named type (RDS, EDS) on the current stream.
    names: HashMap<ResourceType, Vec<String>>,
    /// Whether a listener (cluster) response came: that part of initialization then
    /// ends when none is warming.
    listeners_came: bool,
    clusters_came: bool,
    applied: Applied,
}

/// Runs the client for the life of the server.
pub(super) async fn run(
    server: Arc<Server>,
    ads: Ads,
    types: Vec<ResourceType>,
    stats: Stats,
    init: Arc<Init>,
) {
    let mut client = Client {
        channels: ClusterChannels::new(&ads.grpc),
        server,
        ads,
        types,
        stats,
        init,
        versions: HashMap::new(),
        nonces: HashMap::new(),
        names: HashMap::new(),
        listeners_came: false,
        clusters_came: false,
        applied: Applied::default(),
    };
    let mut failures = 0u32;
    loop {
        match client.stream().await {
            Ok(true) => failures = 0,
            Ok(false) => failures += 1,
            Err(e) => {
                tracing::warn!(cluster = %client.ads.grpc.cluster, "xDS stream: {e}");
                failures += 1;
            }
        }
        client.stats.control_plane.connected_state.set(0);
        if client.server.is_draining() {
            return;
        }
        tokio::time::sleep(backoff(failures)).await;
    }
}

/// Envoy's jittered exponential back-off: a random time up to base × 2^failures,
/// at most the maximum.
fn backoff(failures: u32) -> Duration {
    let ceiling = BACKOFF_BASE
        .saturating_mul(1u32 << failures.min(16))
        .min(BACKOFF_MAX);
    ceiling.mul_f64(rand::random_range(0.5..=1.0))
}

impl Client {
    /// One stream, until it ends; whether any response came.
    async fn stream(&mut self) -> Result<bool, String> {
        let snapshot = self.server.snapshot.load_full();
        let channel = self
            .channels
            .channel(&snapshot.clusters)
            .ok_or_else(|| format!("cluster {} has no host", self.ads.grpc.cluster))?;
        let mut grpc = AggregatedDiscoveryServiceClient::new(channel);
        let mut requests = Requests {
            node: node(&snapshot.bootstrap.node),
            node_once: self.ads.set_node_on_first_message_only,
            first: true,
        };
        let (tx, mut rx) = mpsc::channel::<DiscoveryRequest>(16);
        self.nonces.clear();
        self.names.clear();
        for &t in &self.types {
            let version = self.versions.get(&t).cloned().unwrap_or_default();
            let _ = tx.try_send(requests.next(t, &version, "", Vec::new(), None));
        }
        for request in self.named_subscriptions(&mut requests) {
            let _ = tx.try_send(request);
        }
        let outbound = futures_util::stream::poll_fn(move |cx| rx.poll_recv(cx));
        let mut responses = grpc
            .stream_aggregated_resources(outbound)
            .await
            .map_err(|e| e.to_string())?
            .into_inner();
        self.stats.control_plane.connected_state.set(1);
        let mut responded = false;
        while let Some(response) = responses.message().await.map_err(|e| e.to_string())? {
            responded = true;
            let Some(t) = ResourceType::from_type_url(&response.type_url) else {
                tracing::warn!(type_url = %response.type_url, "xDS: a response of a type not asked for");
                continue;
            };
            let error = self.on_response(t, &response);
            self.nonces.insert(t, response.nonce.clone());
            self.initialized(t);
            let version = self.versions.get(&t).cloned().unwrap_or_default();
            let names = self.names.get(&t).cloned().unwrap_or_default();
            let mut out = vec![requests.next(t, &version, &response.nonce, names, error)];
            out.extend(self.named_subscriptions(&mut requests));
            for request in out {
                if tx.send(request).await.is_err() {
                    return Ok(responded);
                }
            }
        }
        Ok(responded)
    }

    /// The RDS and EDS requests whose names changed (what listeners and clusters use
    /// now): each subscription is the whole list of names of its type.
    fn named_subscriptions(&mut self, requests: &mut Requests) -> Vec<DiscoveryRequest> {
        let mut out = Vec::new();
        for t in [
            ResourceType::RouteConfiguration,
            ResourceType::ClusterLoadAssignment,
        ] {
            let names = match t {
                ResourceType::RouteConfiguration => self.applied.route_config_names(&self.server),
                _ => self.applied.endpoint_names(&self.server),
            };
            if names.is_empty() || self.names.get(&t) == Some(&names) {
                continue;
            }
            self.names.insert(t, names.clone());
            let version = self.versions.get(&t).cloned().unwrap_or_default();
            let nonce = self.nonces.get(&t).cloned().unwrap_or_default();
            out.push(requests.next(t, &version, &nonce, names, None));
        }
        out
    }

    /// Tells initialization what came: listeners and clusters count once none is
    /// warming; route configurations and assignments once every one in use has come.
    fn initialized(&mut self, t: ResourceType) {
        match t {
            ResourceType::Listener => self.listeners_came = true,
            ResourceType::Cluster => self.clusters_came = true,
            ResourceType::RouteConfiguration => {
                let routes = self.server.snapshot.load().route_configs.clone();
                if routes.names_in_use().iter().all(|n| routes.has(n)) {
                    self.init.received(t);
                }
            }
            ResourceType::ClusterLoadAssignment => {
                if self.applied.endpoints_complete(&self.server) {
                    self.init.received(t);
                }
            }
        }
        if self.clusters_came && !self.applied.clusters_warming() {
            self.init.received(ResourceType::Cluster);
        }
        if self.listeners_came && !self.applied.listeners_warming() {
            self.init.received(ResourceType::Listener);
        }
    }

    /// Applies a response; the NACK's detail when it is refused.
    fn on_response(&mut self, t: ResourceType, response: &DiscoveryResponse) -> Option<String> {
        let sub = self.stats.of(t);
        sub.update_attempt.inc();
        if response.resources.is_empty() {
            sub.update_empty.inc();
        }
        let version = &response.version_info;
        let applied = apply(
            &self.server,
            t,
            version,
            &response.resources,
            &mut self.applied,
        );
        self.applied.count_warming(&self.server);
        match applied {
            Ok(()) => {
                self.versions.insert(t, response.version_info.clone());
                sub.update_success.inc();
                sub.version.set(version_hash(&response.version_info));
                let now = SystemTime::now()
                    .duration_since(SystemTime::UNIX_EPOCH)
                    .unwrap_or_default();
                sub.update_time.set(now.as_millis() as u64);
                None
            }
            Err(detail) => {
                tracing::warn!(type_url = %response.type_url, version = %response.version_info, "xDS update rejected: {detail}");
                sub.update_rejected.inc();
                Some(detail)
            }
        }
    }
}

/// The requests of one stream: the node goes on every one, or on the first only
/// (`set_node_on_first_message_only`).
struct Requests {
    node: core::Node,
    node_once: bool,
    first: bool,
}

impl Requests {
    /// A subscription (empty nonce), an ACK, or a NACK (with `error`); `names`: the
    /// resources asked for (none: all of the type).
    fn next(
        &mut self,
        t: ResourceType,
        version: &str,
        nonce: &str,
        names: Vec<String>,
        error: Option<String>,
    ) -> DiscoveryRequest {
        let send_node = self.first || !self.node_once;
        self.first = false;
        DiscoveryRequest {
            version_info: version.to_string(),
            node: send_node.then(|| self.node.clone()),
            resource_names: names,
            type_url: t.type_url().to_string(),
            response_nonce: nonce.to_string(),
            error_detail: error.map(|message| Status {
                code: INVALID_ARGUMENT,
                message,
                details: Vec::new(),
            }),
            ..Default::default()
        }
    }
}

/// Envoy's `version` stat: a hash of `version_info`.
fn version_hash(version: &str) -> u64 {
    use std::hash::{Hash, Hasher};
    let mut h = std::collections::hash_map::DefaultHasher::new();
    version.hash(&mut h);
    h.finish()
}

/// The node as the client sends it: the bootstrap's, with the user agent Envoy sends.
fn node(bootstrap: &core::Node) -> core::Node {
    let mut node = bootstrap.clone();
    node.user_agent_name = "envoy".to_string();
    node.user_agent_version_type = Some(core::node::UserAgentVersionType::UserAgentBuildVersion(
        core::BuildVersion {
            version: Some(ferry_envoy_api::pb::envoy::r#type::v3::SemanticVersion {
                major_number: 1,
                minor_number: 40,
                patch: 0,
            }),
            metadata: None,
        },
    ));
    node
}
