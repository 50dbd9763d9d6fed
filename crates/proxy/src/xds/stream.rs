//! One gRPC stream to a control plane: the aggregated one (ADS, `ads_config`), or a
//! type's own (`api_config_source`: `ListenerDiscoveryService`,
//! `ClusterDiscoveryService`, `RouteDiscoveryService`, `EndpointDiscoveryService`).
//! The stream speaks state of the world ([`Sotw`]) or delta ([`Delta`]) as its
//! `api_type` says; this module opens it, sends what the protocol asks (the node on
//! the first request or on each, the requests through the `rate_limit_settings` token
//! bucket), hands it each response and each change of the names in use, and when the
//! stream fails or the control plane goes away reconnects with jittered exponential
//! back-off while the proxy keeps serving what it has.

use super::client::Client;
use super::delta::Delta;
use super::sotw::Sotw;
use super::ResourceType;
use crate::grpc_client::ClusterChannels;
use ferry_config::dynamic::{ApiSource, ConfigSource, RateLimit};
use ferry_envoy_api::pb::envoy::config::core::v3 as core;
use std::sync::Arc;
use std::time::Duration;
use tokio::sync::mpsc;
use tokio::time::Instant;

/// Envoy's back-off between attempts to reach the control plane.
const BACKOFF_BASE: Duration = Duration::from_millis(500);
const BACKOFF_MAX: Duration = Duration::from_secs(30);

/// A stream: ADS, or the stream of one type to an `api_config_source`.
#[derive(Debug, Clone, PartialEq)]
pub(super) enum Stream {
    /// `ads_config`: every type whose source is `ads`.
    Ads,
    /// A type's own stream.
    Own(ApiSource, ResourceType),
}

impl Stream {
    /// Whether this stream carries resources of `t` that come from `source`.
    pub(super) fn serves(&self, t: ResourceType, source: &ConfigSource) -> bool {
        match (self, source) {
            (Stream::Ads, ConfigSource::Ads { .. }) => true,
            (Stream::Own(api, own), ConfigSource::Api { api: a, .. }) => *own == t && api == a,
            _ => false,
        }
    }

    /// The types whose names it may carry.
    pub(super) fn named(&self) -> Vec<ResourceType> {
        let named = [
            ResourceType::RouteConfiguration,
            ResourceType::ClusterLoadAssignment,
        ];
        match self {
            Stream::Ads => named.to_vec(),
            Stream::Own(_, t) => named.into_iter().filter(|n| n == t).collect(),
        }
    }

    /// The type of a response on this stream, which carries `wildcard` and its named
    /// types; None (logged) for a type it did not ask for.
    pub(super) fn response_type(
        &self,
        wildcard: &[ResourceType],
        url: &str,
    ) -> Option<ResourceType> {
        let t = ResourceType::from_type_url(url)
            .filter(|t| wildcard.contains(t) || self.named().contains(t));
        if t.is_none() {
            tracing::warn!(type_url = %url, "xDS: a response of a type not asked for");
        }
        t
    }

    /// The gRPC method.
    fn path(&self, delta: bool) -> &'static str {
        let t = match self {
            Stream::Ads => {
                return match delta {
                    false => "/envoy.service.discovery.v3.AggregatedDiscoveryService/StreamAggregatedResources",
                    true => "/envoy.service.discovery.v3.AggregatedDiscoveryService/DeltaAggregatedResources",
                }
            }
            Stream::Own(_, t) => t,
        };
        match (t, delta) {
            (ResourceType::Listener, false) => {
                "/envoy.service.listener.v3.ListenerDiscoveryService/StreamListeners"
            }
            (ResourceType::Listener, true) => {
                "/envoy.service.listener.v3.ListenerDiscoveryService/DeltaListeners"
            }
            (ResourceType::Cluster, false) => {
                "/envoy.service.cluster.v3.ClusterDiscoveryService/StreamClusters"
            }
            (ResourceType::Cluster, true) => {
                "/envoy.service.cluster.v3.ClusterDiscoveryService/DeltaClusters"
            }
            (ResourceType::RouteConfiguration, false) => {
                "/envoy.service.route.v3.RouteDiscoveryService/StreamRoutes"
            }
            (ResourceType::RouteConfiguration, true) => {
                "/envoy.service.route.v3.RouteDiscoveryService/DeltaRoutes"
            }
            (ResourceType::ClusterLoadAssignment, false) => {
                "/envoy.service.endpoint.v3.EndpointDiscoveryService/StreamEndpoints"
            }
            (ResourceType::ClusterLoadAssignment, true) => {
                "/envoy.service.endpoint.v3.EndpointDiscoveryService/DeltaEndpoints"
            }
        }
    }
}

/// A protocol of a stream: what it sends when the stream opens, in answer to a
/// response, and when the names in use change.
pub(super) trait Protocol: Send + 'static {
    type Request: prost::Message + Default + Send + 'static;
    type Response: prost::Message + Default + Send + 'static;
    /// The requests that open a stream (asking again for what the client has).
    fn open(&mut self, client: &Arc<Client>) -> Vec<Self::Request>;
    /// The requests that answer a response: its ACK or NACK, and the subscriptions
    /// that the update changed.
    fn on_response(&mut self, client: &Arc<Client>, r: Self::Response) -> Vec<Self::Request>;
    /// The requests for subscriptions that changed.
    fn on_change(&mut self, client: &Arc<Client>) -> Vec<Self::Request>;
    /// Puts the node on a request.
    fn set_node(request: &mut Self::Request, node: core::Node);
}

/// Starts a stream for the life of the server.
pub(super) fn spawn(client: &Arc<Client>, stream: Stream, api: ApiSource) {
    let client = client.clone();
    if api.delta {
        let protocol = Delta::new(&client, stream.clone());
        tokio::spawn(run(client, stream, api, protocol));
    } else {
        let protocol = Sotw::new(&client, stream.clone());
        tokio::spawn(run(client, stream, api, protocol));
    }
}

async fn run<P: Protocol>(client: Arc<Client>, stream: Stream, api: ApiSource, mut protocol: P) {
    let channels = ClusterChannels::new(&api.grpc);
    let mut sender = Sender {
        limiter: Limiter::new(api.rate_limit),
        node_once: api.set_node_on_first_message_only,
        first: true,
        node: node(&client.server.snapshot.load().bootstrap.node),
    };
    let path = stream.path(api.delta);
    let mut failures = 0u32;
    loop {
        match once(&client, &channels, path, &mut protocol, &mut sender).await {
            Ok(true) => failures = 0,
            Ok(false) => failures += 1,
            Err(e) => {
                tracing::warn!(cluster = %api.grpc.cluster, "xDS stream: {e}");
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

/// One stream, until it ends; whether any response came.
async fn once<P: Protocol>(
    client: &Arc<Client>,
    channels: &ClusterChannels,
    path: &'static str,
    protocol: &mut P,
    sender: &mut Sender,
) -> Result<bool, String> {
    let snapshot = client.server.snapshot.load_full();
    let channel = channels
        .channel(&snapshot.clusters)
        .ok_or_else(|| format!("cluster {} has no host", channels.cluster()))?;
    let mut grpc = tonic::client::Grpc::new(channel);
    grpc.ready().await.map_err(|e| e.to_string())?;
    let (tx, mut rx) = mpsc::channel::<P::Request>(16);
    sender.first = true;
    let mut changes = client.changes();
    for request in protocol.open(client) {
        sender.send::<P>(&tx, request, client).await?;
    }
    let outbound = futures_util::stream::poll_fn(move |cx| rx.poll_recv(cx));
    let codec = tonic_prost::ProstCodec::<P::Request, P::Response>::default();
    let path = http::uri::PathAndQuery::from_static(path);
    let mut responses = grpc
        .streaming(tonic::Request::new(outbound), path, codec)
        .await
        .map_err(|e| e.to_string())?
        .into_inner();
    client.stats.control_plane.connected_state.set(1);
    let mut responded = false;
    loop {
        let out = tokio::select! {
            response = responses.message() => {
                match response.map_err(|e| e.to_string())? {
                    Some(r) => {
                        responded = true;
                        protocol.on_response(client, r)
                    }
                    None => return Ok(responded),
                }
            }
            changed = changes.changed() => {
                if changed.is_err() {
                    return Ok(responded);
                }
                protocol.on_change(client)
            }
        };
        for request in out {
            sender.send::<P>(&tx, request, client).await?;
        }
    }
}

/// What goes out on a stream: the node, and the rate limit.
struct Sender {
    limiter: Limiter,
    node_once: bool,
    first: bool,
    node: core::Node,
}

impl Sender {
    async fn send<P: Protocol>(
        &mut self,
        tx: &mpsc::Sender<P::Request>,
        mut request: P::Request,
        client: &Client,
    ) -> Result<(), String> {
        if self.first || !self.node_once {
            P::set_node(&mut request, self.node.clone());
        }
        self.first = false;
        self.limiter.acquire(client).await;
        tx.send(request)
            .await
            .map_err(|_| "the stream closed".to_string())
    }
}

/// `rate_limit_settings`: a token bucket; a request without a token waits for one
/// (counted in `control_plane.rate_limit_enforced`, and `pending_requests` while it
/// waits).
struct Limiter {
    limit: Option<RateLimit>,
    tokens: f64,
    last: Instant,
}

impl Limiter {
    fn new(limit: Option<RateLimit>) -> Limiter {
        Limiter {
            limit,
            tokens: limit.map_or(0.0, |l| f64::from(l.max_tokens)),
            last: Instant::now(),
        }
    }

    fn refill(&mut self, limit: RateLimit) {
        let now = Instant::now();
        let earned = (now - self.last).as_secs_f64() / limit.fill_interval.as_secs_f64();
        self.tokens = (self.tokens + earned).min(f64::from(limit.max_tokens));
        self.last = now;
    }

    async fn acquire(&mut self, client: &Client) {
        let Some(limit) = self.limit else {
            return;
        };
        self.refill(limit);
        if self.tokens < 1.0 {
            let stats = &client.stats.control_plane;
            stats.rate_limit_enforced.inc();
            stats.pending_requests.inc();
            tokio::time::sleep(limit.fill_interval.mul_f64(1.0 - self.tokens)).await;
            stats.pending_requests.dec();
            self.refill(limit);
        }
        self.tokens = (self.tokens - 1.0).max(0.0);
    }
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
