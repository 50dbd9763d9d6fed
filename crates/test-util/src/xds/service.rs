//! The scripted server's gRPC services: ADS and the four per-type services, each
//! method served by one of two stream handlers, state of the world ([`sotw`]) and
//! delta ([`delta`]).

use super::{Answer, Event, Service, Shared};
use ferry_envoy_api::pb::envoy::service::cluster::v3::cluster_discovery_service_server::{
    ClusterDiscoveryService, ClusterDiscoveryServiceServer,
};
use ferry_envoy_api::pb::envoy::service::discovery::v3::aggregated_discovery_service_server::{
    AggregatedDiscoveryService, AggregatedDiscoveryServiceServer,
};
use ferry_envoy_api::pb::envoy::service::discovery::v3::{
    DeltaDiscoveryRequest, DeltaDiscoveryResponse, DiscoveryRequest, DiscoveryResponse, Resource,
};
use ferry_envoy_api::pb::envoy::service::endpoint::v3::endpoint_discovery_service_server::{
    EndpointDiscoveryService, EndpointDiscoveryServiceServer,
};
use ferry_envoy_api::pb::envoy::service::listener::v3::listener_discovery_service_server::{
    ListenerDiscoveryService, ListenerDiscoveryServiceServer,
};
use ferry_envoy_api::pb::envoy::service::route::v3::route_discovery_service_server::{
    RouteDiscoveryService, RouteDiscoveryServiceServer,
};
use ferry_envoy_api::pb::google::protobuf::Any;
use futures_util::Stream;
use prost::Message;
use std::collections::{HashMap, HashSet};
use std::pin::Pin;
use std::time::Duration;
use tokio::sync::{broadcast, mpsc};

/// Serves every service on `listener` until the server stops.
pub(super) async fn serve(service: Service, listener: tokio::net::TcpListener) {
    let mut stopping = service.stopping.subscribe();
    let incoming = futures_util::stream::unfold(listener, |l| async move {
        // Responses go out at once (no Nagle delay on the stream).
        let conn = l.accept().await.map(|(s, _)| {
            let _ = s.set_nodelay(true);
            s
        });
        Some((conn, l))
    });
    let _ = tonic::transport::Server::builder()
        .add_service(AggregatedDiscoveryServiceServer::new(service.clone()))
        .add_service(ListenerDiscoveryServiceServer::new(service.clone()))
        .add_service(ClusterDiscoveryServiceServer::new(service.clone()))
        .add_service(RouteDiscoveryServiceServer::new(service.clone()))
        .add_service(EndpointDiscoveryServiceServer::new(service))
        .serve_with_incoming_shutdown(incoming, async move {
            let _ = stopping.wait_for(|s| *s).await;
        })
        .await;
}

type Responses<T> = Pin<Box<dyn Stream<Item = Result<T, tonic::Status>> + Send>>;

/// The type URL of a resource wrapped with its TTL.
const RESOURCE: &str = "type.googleapis.com/envoy.service.discovery.v3.Resource";

/// The name of a listener, cluster, route configuration or assignment (field 1).
fn name_of(any: &Any) -> String {
    #[derive(Clone, PartialEq, prost::Message)]
    struct Named {
        #[prost(string, tag = "1")]
        name: String,
    }
    Named::decode(any.value.as_slice())
        .map(|n| n.name)
        .unwrap_or_default()
}

/// A resource's version in delta: a hash of its bytes (it changes when it does).
fn hash_version(any: &Any) -> String {
    use std::hash::{Hash, Hasher};
    let mut h = std::collections::hash_map::DefaultHasher::new();
    any.value.hash(&mut h);
    format!("{:016x}", h.finish())
}

fn ttl_proto(ttl: Duration) -> ferry_envoy_api::pb::google::protobuf::Duration {
    ferry_envoy_api::pb::google::protobuf::Duration {
        seconds: ttl.as_secs() as i64,
        nanos: ttl.subsec_nanos() as i32,
    }
}

impl Service {
    fn next_nonce(shared: &mut Shared) -> String {
        shared.nonce += 1;
        shared.nonce.to_string()
    }

    /// Records a request and wakes the waiters.
    fn seen(&self, record: impl FnOnce(&mut Shared)) {
        record(&mut self.lock());
        self.request_seen.notify_waiters();
    }

    /// The state-of-the-world response for `type_url` if its version, or the names
    /// asked for, are not those already sent on this stream. Listeners and clusters
    /// are sent whole; route configurations and assignments by the names asked for
    /// (none: none is wanted).
    fn response(
        &self,
        type_url: &str,
        names: &[String],
        sent: &mut HashMap<String, (String, Vec<String>)>,
    ) -> Option<DiscoveryResponse> {
        let mut shared = self.lock();
        let (version, mut resources) = shared.resources.get(type_url)?.clone();
        let now = (version.clone(), names.to_vec());
        if sent.get(type_url) == Some(&now) {
            return None;
        }
        sent.insert(type_url.to_string(), now);
        if type_url == super::ROUTE || type_url == super::ENDPOINTS {
            if names.is_empty() {
                return None;
            }
            resources.retain(|any| names.contains(&name_of(any)));
        }
        let resources = match shared.ttls.get(type_url) {
            Some(&ttl) => resources
                .into_iter()
                .map(|any| wrap(&version, any, ttl))
                .collect(),
            None => resources,
        };
        Some(DiscoveryResponse {
            version_info: version,
            resources,
            type_url: type_url.to_string(),
            nonce: Service::next_nonce(&mut shared),
            ..Default::default()
        })
    }

    /// A state-of-the-world heartbeat of every resource of `type_url`.
    fn heartbeat(&self, type_url: &str) -> Option<DiscoveryResponse> {
        let mut shared = self.lock();
        let (version, resources) = shared.resources.get(type_url)?.clone();
        let ttl = shared.ttls.get(type_url).copied().unwrap_or_default();
        let resources = resources
            .iter()
            .map(|any| Any {
                type_url: RESOURCE.to_string(),
                value: Resource {
                    name: name_of(any),
                    version: version.clone(),
                    ttl: Some(ttl_proto(ttl)),
                    ..Default::default()
                }
                .encode_to_vec(),
            })
            .collect();
        Some(DiscoveryResponse {
            version_info: version,
            resources,
            type_url: type_url.to_string(),
            nonce: Service::next_nonce(&mut shared),
            ..Default::default()
        })
    }
}

/// A resource wrapped in a `Resource` with its TTL.
fn wrap(version: &str, any: Any, ttl: Duration) -> Any {
    Any {
        type_url: RESOURCE.to_string(),
        value: Resource {
            name: name_of(&any),
            version: version.to_string(),
            resource: Some(any),
            ttl: Some(ttl_proto(ttl)),
            ..Default::default()
        }
        .encode_to_vec(),
    }
}

/// A state-of-the-world stream: each request recorded; a type's resources sent when
/// first asked for and whenever their version changes.
fn sotw(
    svc: &Service,
    method: &'static str,
    mut inbound: tonic::Streaming<DiscoveryRequest>,
) -> Responses<DiscoveryResponse> {
    let (tx, mut rx) = mpsc::channel::<Result<DiscoveryResponse, tonic::Status>>(16);
    let svc = svc.clone();
    svc.lock().methods.push(method);
    tokio::spawn(async move {
        let mut events = svc.events.subscribe();
        let mut stopping = svc.stopping.subscribe();
        // Type → the names asked for last.
        let mut subscribed: HashMap<String, Vec<String>> = HashMap::new();
        let mut sent: HashMap<String, (String, Vec<String>)> = HashMap::new();
        loop {
            let out: Vec<DiscoveryResponse> = tokio::select! {
                _ = async { let _ = stopping.wait_for(|s| *s).await; } => return,
                request = inbound.message() => {
                    let Ok(Some(request)) = request else { return };
                    let type_url = request.type_url.clone();
                    let names = request.resource_names.clone();
                    svc.seen(|s| {
                        if !request.response_nonce.is_empty() {
                            s.answers.push(Answer {
                                type_url: type_url.clone(),
                                version_info: request.version_info.clone(),
                                response_nonce: request.response_nonce.clone(),
                                error_detail: request.error_detail.clone(),
                                delta: false,
                            });
                        }
                        s.requests.push(request);
                    });
                    let response = svc.response(&type_url, &names, &mut sent);
                    subscribed.insert(type_url, names);
                    response.into_iter().collect()
                }
                event = events.recv() => match event {
                    Ok(Event::Changed) | Err(broadcast::error::RecvError::Lagged(_)) => subscribed
                        .iter()
                        .filter_map(|(t, names)| svc.response(t, names, &mut sent))
                        .collect(),
                    Ok(Event::Heartbeat(t)) if subscribed.contains_key(&t) => {
                        svc.heartbeat(&t).into_iter().collect()
                    }
                    Ok(Event::Heartbeat(_)) => Vec::new(),
                    Err(broadcast::error::RecvError::Closed) => return,
                },
            };
            for r in out {
                if tx.send(Ok(r)).await.is_err() {
                    return;
                }
            }
        }
    });
    Box::pin(futures_util::stream::poll_fn(move |cx| rx.poll_recv(cx)))
}

/// What a delta stream subscribed to of one type, and what the client has.
#[derive(Default)]
struct DeltaSub {
    wildcard: bool,
    names: HashSet<String>,
    /// Name → version the client has.
    known: HashMap<String, String>,
    /// Whether a response was sent (the first is sent even when empty).
    responded: bool,
}

impl DeltaSub {
    fn wants(&self, name: &str) -> bool {
        self.wildcard || self.names.contains(name)
    }
}

/// A delta stream: each request recorded; what changed of what the stream subscribed
/// to is sent when it subscribes and whenever resources change, with the names gone.
fn delta(
    svc: &Service,
    method: &'static str,
    mut inbound: tonic::Streaming<DeltaDiscoveryRequest>,
) -> Responses<DeltaDiscoveryResponse> {
    let (tx, mut rx) = mpsc::channel::<Result<DeltaDiscoveryResponse, tonic::Status>>(16);
    let svc = svc.clone();
    svc.lock().methods.push(method);
    tokio::spawn(async move {
        let mut events = svc.events.subscribe();
        let mut stopping = svc.stopping.subscribe();
        let mut subs: HashMap<String, DeltaSub> = HashMap::new();
        // Nonce → the version it carried; type → the version ACKed last.
        let mut versions: HashMap<String, String> = HashMap::new();
        let mut acked: HashMap<String, String> = HashMap::new();
        loop {
            let out: Vec<DeltaDiscoveryResponse> = tokio::select! {
                _ = async { let _ = stopping.wait_for(|s| *s).await; } => return,
                request = inbound.message() => {
                    let Ok(Some(request)) = request else { return };
                    let t = request.type_url.clone();
                    if !request.response_nonce.is_empty() {
                        let version = versions.get(&request.response_nonce).cloned().unwrap_or_default();
                        let version = match request.error_detail {
                            None => {
                                acked.insert(t.clone(), version.clone());
                                version
                            }
                            Some(_) => acked.get(&t).cloned().unwrap_or_default(),
                        };
                        let answer = Answer {
                            type_url: t.clone(),
                            version_info: version,
                            response_nonce: request.response_nonce.clone(),
                            error_detail: request.error_detail.clone(),
                            delta: true,
                        };
                        svc.lock().answers.push(answer);
                    }
                    let first = !subs.contains_key(&t);
                    let sub = subs.entry(t.clone()).or_default();
                    if first {
                        sub.known = request.initial_resource_versions.clone();
                        sub.wildcard = request.resource_names_subscribe.is_empty();
                    }
                    for n in &request.resource_names_subscribe {
                        match n.as_str() {
                            "*" => sub.wildcard = true,
                            _ => { sub.names.insert(n.clone()); }
                        }
                    }
                    for n in &request.resource_names_unsubscribe {
                        match n.as_str() {
                            "*" => sub.wildcard = false,
                            _ => { sub.names.remove(n); sub.known.remove(n); }
                        }
                    }
                    svc.seen(|s| s.delta_requests.push(request));
                    svc.delta_response(&t, sub, &mut versions).into_iter().collect()
                }
                event = events.recv() => match event {
                    Ok(Event::Changed) | Err(broadcast::error::RecvError::Lagged(_)) => subs
                        .iter_mut()
                        .filter_map(|(t, sub)| svc.delta_response(t, sub, &mut versions))
                        .collect(),
                    Ok(Event::Heartbeat(t)) => match subs.get(&t) {
                        Some(sub) => svc.delta_heartbeat(&t, sub).into_iter().collect(),
                        None => Vec::new(),
                    },
                    Err(broadcast::error::RecvError::Closed) => return,
                },
            };
            for r in out {
                if tx.send(Ok(r)).await.is_err() {
                    return;
                }
            }
        }
    });
    Box::pin(futures_util::stream::poll_fn(move |cx| rx.poll_recv(cx)))
}

impl Service {
    /// What changed of `t` for a delta subscription (None: nothing).
    fn delta_response(
        &self,
        t: &str,
        sub: &mut DeltaSub,
        versions: &mut HashMap<String, String>,
    ) -> Option<DeltaDiscoveryResponse> {
        let mut shared = self.lock();
        let (version, resources) = shared.resources.get(t)?.clone();
        let ttl = shared.ttls.get(t).copied();
        let current: HashMap<String, Any> = resources
            .into_iter()
            .map(|any| (name_of(&any), any))
            .filter(|(name, _)| sub.wants(name))
            .collect();
        let mut changed = Vec::new();
        for (name, any) in &current {
            let v = hash_version(any);
            if sub.known.get(name) != Some(&v) {
                sub.known.insert(name.clone(), v.clone());
                changed.push(Resource {
                    name: name.clone(),
                    version: v,
                    resource: Some(any.clone()),
                    ttl: ttl.map(ttl_proto),
                    ..Default::default()
                });
            }
        }
        let removed: Vec<String> = sub
            .known
            .keys()
            .filter(|n| !current.contains_key(*n))
            .cloned()
            .collect();
        for n in &removed {
            sub.known.remove(n);
        }
        if changed.is_empty() && removed.is_empty() && sub.responded {
            return None;
        }
        sub.responded = true;
        changed.sort_by(|a, b| a.name.cmp(&b.name));
        let nonce = Service::next_nonce(&mut shared);
        versions.insert(nonce.clone(), version.clone());
        Some(DeltaDiscoveryResponse {
            system_version_info: version,
            resources: changed,
            type_url: t.to_string(),
            removed_resources: removed,
            nonce,
            ..Default::default()
        })
    }

    /// A delta heartbeat of what a subscription has of `t`.
    fn delta_heartbeat(&self, t: &str, sub: &DeltaSub) -> Option<DeltaDiscoveryResponse> {
        let mut shared = self.lock();
        let (version, _) = shared.resources.get(t)?.clone();
        let ttl = shared.ttls.get(t).copied().unwrap_or_default();
        let mut resources: Vec<Resource> = sub
            .known
            .iter()
            .map(|(name, v)| Resource {
                name: name.clone(),
                version: v.clone(),
                ttl: Some(ttl_proto(ttl)),
                ..Default::default()
            })
            .collect();
        resources.sort_by(|a, b| a.name.cmp(&b.name));
        Some(DeltaDiscoveryResponse {
            system_version_info: version,
            resources,
            type_url: t.to_string(),
            nonce: Service::next_nonce(&mut shared),
            ..Default::default()
        })
    }
}

#[tonic::async_trait]
impl AggregatedDiscoveryService for Service {
    type StreamAggregatedResourcesStream = Responses<DiscoveryResponse>;
    type DeltaAggregatedResourcesStream = Responses<DeltaDiscoveryResponse>;

    async fn stream_aggregated_resources(
        &self,
        request: tonic::Request<tonic::Streaming<DiscoveryRequest>>,
    ) -> Result<tonic::Response<Self::StreamAggregatedResourcesStream>, tonic::Status> {
        let stream = sotw(self, "StreamAggregatedResources", request.into_inner());
        Ok(tonic::Response::new(stream))
    }

    async fn delta_aggregated_resources(
        &self,
        request: tonic::Request<tonic::Streaming<DeltaDiscoveryRequest>>,
    ) -> Result<tonic::Response<Self::DeltaAggregatedResourcesStream>, tonic::Status> {
        let stream = delta(self, "DeltaAggregatedResources", request.into_inner());
        Ok(tonic::Response::new(stream))
    }
}

/// A per-type discovery service: its two streaming methods served by the handlers
/// above; the unary fetch (REST-like polling) is not scripted.
macro_rules! per_type_service {
    ($service:ident, $stream:ident, $stream_ty:ident, $delta:ident, $delta_ty:ident, $fetch:ident) => {
        #[tonic::async_trait]
        impl $service for Service {
            type $stream_ty = Responses<DiscoveryResponse>;
            type $delta_ty = Responses<DeltaDiscoveryResponse>;

            async fn $stream(
                &self,
                request: tonic::Request<tonic::Streaming<DiscoveryRequest>>,
            ) -> Result<tonic::Response<Self::$stream_ty>, tonic::Status> {
                let method = stringify!($stream_ty).trim_end_matches("Stream");
                Ok(tonic::Response::new(sotw(
                    self,
                    method,
                    request.into_inner(),
                )))
            }

            async fn $delta(
                &self,
                request: tonic::Request<tonic::Streaming<DeltaDiscoveryRequest>>,
            ) -> Result<tonic::Response<Self::$delta_ty>, tonic::Status> {
                let method = stringify!($delta_ty).trim_end_matches("Stream");
                Ok(tonic::Response::new(delta(
                    self,
                    method,
                    request.into_inner(),
                )))
            }

            async fn $fetch(
                &self,
                _request: tonic::Request<DiscoveryRequest>,
            ) -> Result<tonic::Response<DiscoveryResponse>, tonic::Status> {
                Err(tonic::Status::unimplemented("fetch is not scripted"))
            }
        }
    };
}

per_type_service!(
    ListenerDiscoveryService,
    stream_listeners,
    StreamListenersStream,
    delta_listeners,
    DeltaListenersStream,
    fetch_listeners
);
per_type_service!(
    ClusterDiscoveryService,
    stream_clusters,
    StreamClustersStream,
    delta_clusters,
    DeltaClustersStream,
    fetch_clusters
);
per_type_service!(
    RouteDiscoveryService,
    stream_routes,
    StreamRoutesStream,
    delta_routes,
    DeltaRoutesStream,
    fetch_routes
);
per_type_service!(
    EndpointDiscoveryService,
    stream_endpoints,
    StreamEndpointsStream,
    delta_endpoints,
    DeltaEndpointsStream,
    fetch_endpoints
);
