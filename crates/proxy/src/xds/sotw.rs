//! State of the world (`api_type: GRPC`): every request of a type carries the whole
//! list of names wanted (none: all of a wildcard type), every response all the
//! resources of the type (listeners, clusters) or of the names asked for. Each
//! response is answered with an ACK (its `version_info` and nonce) or a NACK (the last
//! accepted version, the nonce and an `error_detail` naming every problem). On a new
//! stream the client asks again with its last accepted versions.
//!
//! A resource may come wrapped in a `Resource` with a `ttl`: without a newer response
//! or a heartbeat (the wrapper without its resource, at the version accepted last)
//! before the TTL runs out, the resource is removed. As in Envoy, a heartbeat is not a
//! resource of the response: a listener or cluster only heartbeated in a response is
//! missing from it, and removed (heartbeats serve named types: EDS, RDS).

use super::apply::Update;
use super::client::Client;
use super::stream::{Protocol, Stream};
use super::ResourceType;
use ferry_envoy_api::pb::envoy::config::core::v3 as core;
use ferry_envoy_api::pb::envoy::service::discovery::v3::{
    DiscoveryRequest, DiscoveryResponse, Resource,
};
use ferry_envoy_api::pb::google::rpc::Status;
use prost::Message;
use std::collections::HashMap;
use std::sync::Arc;
use std::time::Duration;

/// The gRPC status code of a NACK's `error_detail` (INVALID_ARGUMENT).
pub(super) const INVALID_ARGUMENT: i32 = 3;

/// The type URL of a resource wrapped with its TTL.
const RESOURCE: &str = "type.googleapis.com/envoy.service.discovery.v3.Resource";

/// The protocol's state on one stream (versions last across streams).
pub(super) struct Sotw {
    stream: Stream,
    wildcard: Vec<ResourceType>,
    /// The last accepted version of each type.
    versions: HashMap<ResourceType, String>,
    /// The last nonce of each type on the current stream.
    nonces: HashMap<ResourceType, String>,
    /// The names asked for of each named type on the current stream.
    names: HashMap<ResourceType, Vec<String>>,
}

impl Sotw {
    pub(super) fn new(client: &Client, stream: Stream) -> Sotw {
        Sotw {
            wildcard: client.wildcard(&stream),
            stream,
            versions: HashMap::new(),
            nonces: HashMap::new(),
            names: HashMap::new(),
        }
    }

    fn request(
        &self,
        t: ResourceType,
        names: Vec<String>,
        error: Option<String>,
    ) -> DiscoveryRequest {
        DiscoveryRequest {
            version_info: self.versions.get(&t).cloned().unwrap_or_default(),
            resource_names: names,
            type_url: t.type_url().to_string(),
            response_nonce: self.nonces.get(&t).cloned().unwrap_or_default(),
            error_detail: error.map(|message| Status {
                code: INVALID_ARGUMENT,
                message,
                details: Vec::new(),
            }),
            ..Default::default()
        }
    }

    /// The requests of named types whose names changed: each is the whole list (an
    /// empty one once names were asked for: none is wanted any more).
    fn subscriptions(&mut self, client: &Client) -> Vec<DiscoveryRequest> {
        let mut out = Vec::new();
        for t in self.stream.named() {
            let names = client.names(&self.stream, t);
            let asked = self.names.get(&t);
            if asked == Some(&names) || (names.is_empty() && asked.is_none()) {
                continue;
            }
            self.names.insert(t, names.clone());
            out.push(self.request(t, names, None));
        }
        out
    }
}

impl Protocol for Sotw {
    type Request = DiscoveryRequest;
    type Response = DiscoveryResponse;

    fn open(&mut self, client: &Arc<Client>) -> Vec<DiscoveryRequest> {
        self.nonces.clear();
        self.names.clear();
        let mut out: Vec<DiscoveryRequest> = self
            .wildcard
            .iter()
            .map(|&t| self.request(t, Vec::new(), None))
            .collect();
        out.extend(self.subscriptions(client));
        out
    }

    fn on_response(&mut self, client: &Arc<Client>, r: DiscoveryResponse) -> Vec<DiscoveryRequest> {
        let Some(t) = self.stream.response_type(&self.wildcard, &r.type_url) else {
            return Vec::new();
        };
        self.nonces.insert(t, r.nonce.clone());
        let accepted = self.versions.get(&t).map_or("", String::as_str);
        let result = match unwrap(&r, accepted) {
            Ok((update, ttls, heartbeats)) => {
                client.refresh(t, heartbeats);
                client.update(t, &r.version_info, update, ttls)
            }
            Err(e) => {
                client.refused(t);
                Err(e)
            }
        };
        if result.is_ok() {
            self.versions.insert(t, r.version_info.clone());
        }
        let names = self.names.get(&t).cloned().unwrap_or_default();
        let mut out = vec![self.request(t, names, result.err())];
        out.extend(self.subscriptions(client));
        out
    }

    fn on_change(&mut self, client: &Arc<Client>) -> Vec<DiscoveryRequest> {
        self.subscriptions(client)
    }

    fn set_node(request: &mut DiscoveryRequest, node: core::Node) {
        request.node = Some(node);
    }
}

/// A response as an update (its resources unwrapped from `Resource`s), each resource's
/// TTL, and the TTLs that heartbeats refresh (a `Resource` without its resource at
/// the version `accepted` last).
fn unwrap(r: &DiscoveryResponse, accepted: &str) -> Result<(Update, Ttls, Ttls), String> {
    let mut update = Update {
        complete: true,
        ..Default::default()
    };
    let mut ttls = Vec::new();
    let mut heartbeats = Vec::new();
    for any in &r.resources {
        if any.type_url != RESOURCE {
            ttls.push((super::resource_name(any), None));
            update.resources.push((r.version_info.clone(), any.clone()));
            continue;
        }
        let wrapped = Resource::decode(any.value.as_slice())
            .map_err(|e| format!("a Resource that cannot be decoded: {e}"))?;
        let ttl = super::ttl(wrapped.ttl);
        match wrapped.resource {
            Some(inner) => {
                let name = match wrapped.name.is_empty() {
                    true => super::resource_name(&inner),
                    false => wrapped.name,
                };
                ttls.push((name, ttl));
                update.resources.push((r.version_info.clone(), inner));
            }
            None if wrapped.version == accepted => heartbeats.push((wrapped.name, ttl)),
            None => {
                return Err(format!(
                    "{}: a Resource without its resource is a heartbeat only at the version accepted last ({accepted:?})",
                    wrapped.name
                ))
            }
        }
    }
    Ok((update, ttls, heartbeats))
}

/// Resources' names with their TTLs.
type Ttls = Vec<(String, Option<Duration>)>;
