//! Delta, or incremental, xDS (`api_type: DELTA_GRPC`): the client subscribes and
//! unsubscribes names as they come into and go out of use (a wildcard type is
//! subscribed whole); a response carries only the resources that changed, each with
//! its own version, and the names removed (`removed_resources`). Each response is
//! answered with its nonce (ACK), with an `error_detail` when refused (NACK). On a new
//! stream the client tells the server what it has (`initial_resource_versions`), so
//! that only what changed meanwhile is sent.
//!
//! A resource with a `ttl` is removed when it runs out unless the server sends it
//! again or a heartbeat (the resource's name and version without the resource).

use super::apply::Update;
use super::client::Client;
use super::sotw::INVALID_ARGUMENT;
use super::stream::{Protocol, Stream};
use super::ResourceType;
use ferry_envoy_api::pb::envoy::config::core::v3 as core;
use ferry_envoy_api::pb::envoy::service::discovery::v3::{
    DeltaDiscoveryRequest, DeltaDiscoveryResponse,
};
use ferry_envoy_api::pb::google::rpc::Status;
use std::collections::{BTreeSet, HashMap};
use std::sync::Arc;

/// The protocol's state on one stream.
pub(super) struct Delta {
    stream: Stream,
    wildcard: Vec<ResourceType>,
    /// The names subscribed of each named type on the current stream.
    subscribed: HashMap<ResourceType, BTreeSet<String>>,
}

impl Delta {
    pub(super) fn new(client: &Client, stream: Stream) -> Delta {
        Delta {
            wildcard: client.wildcard(&stream),
            stream,
            subscribed: HashMap::new(),
        }
    }

    /// The requests of named types whose names changed: what is new, what is gone.
    fn subscriptions(&mut self, client: &Client) -> Vec<DeltaDiscoveryRequest> {
        let mut out = Vec::new();
        for t in self.stream.named() {
            let wanted: BTreeSet<String> = client.names(&self.stream, t).into_iter().collect();
            let subscribed = self.subscribed.entry(t).or_default();
            let subscribe: Vec<String> = wanted.difference(subscribed).cloned().collect();
            let unsubscribe: Vec<String> = subscribed.difference(&wanted).cloned().collect();
            if subscribe.is_empty() && unsubscribe.is_empty() {
                continue;
            }
            *subscribed = wanted;
            out.push(DeltaDiscoveryRequest {
                type_url: t.type_url().to_string(),
                resource_names_subscribe: subscribe,
                resource_names_unsubscribe: unsubscribe,
                ..Default::default()
            });
        }
        out
    }
}

impl Delta {
    /// The ACK of a response, or its NACK with `error`.
    fn answer(
        &self,
        t: ResourceType,
        nonce: String,
        error: Option<String>,
    ) -> DeltaDiscoveryRequest {
        DeltaDiscoveryRequest {
            type_url: t.type_url().to_string(),
            response_nonce: nonce,
            error_detail: error.map(|message| Status {
                code: INVALID_ARGUMENT,
                message,
                details: Vec::new(),
            }),
            ..Default::default()
        }
    }
}

/// What makes Envoy refuse a whole delta response: a name twice among the resources
/// and the removed names, or a resource of another type than the response's.
fn well_formed(t: ResourceType, r: &DeltaDiscoveryResponse) -> Result<(), String> {
    let mut names = std::collections::HashSet::new();
    for resource in &r.resources {
        if !names.insert(resource.name.as_str()) {
            return Err(format!(
                "duplicate name {} found among added/updated resources",
                resource.name
            ));
        }
        if let Some(any) = &resource.resource {
            if any.type_url != t.type_url() {
                return Err(format!(
                    "{}: a resource of type {} in a response of type {}",
                    resource.name,
                    any.type_url,
                    t.type_url()
                ));
            }
        }
    }
    for name in &r.removed_resources {
        if !names.insert(name.as_str()) {
            return Err(format!(
                "duplicate name {name} found in the union of added+removed resources"
            ));
        }
    }
    Ok(())
}

impl Protocol for Delta {
    type Request = DeltaDiscoveryRequest;
    type Response = DeltaDiscoveryResponse;

    fn open(&mut self, client: &Arc<Client>) -> Vec<DeltaDiscoveryRequest> {
        self.subscribed.clear();
        let mut out: Vec<DeltaDiscoveryRequest> = self
            .wildcard
            .iter()
            .map(|&t| DeltaDiscoveryRequest {
                type_url: t.type_url().to_string(),
                initial_resource_versions: client.versions(t),
                ..Default::default()
            })
            .collect();
        // Named types: subscribed with what the client has of those names.
        for mut request in self.subscriptions(client) {
            let t = ResourceType::from_type_url(&request.type_url);
            let versions = t.map(|t| client.versions(t)).unwrap_or_default();
            request.initial_resource_versions = versions
                .into_iter()
                .filter(|(n, _)| request.resource_names_subscribe.contains(n))
                .collect();
            out.push(request);
        }
        out
    }

    fn on_response(
        &mut self,
        client: &Arc<Client>,
        r: DeltaDiscoveryResponse,
    ) -> Vec<DeltaDiscoveryRequest> {
        let Some(t) = self.stream.response_type(&self.wildcard, &r.type_url) else {
            return Vec::new();
        };
        if let Err(detail) = well_formed(t, &r) {
            client.refused(t);
            return vec![self.answer(t, r.nonce, Some(detail))];
        }
        let mut update = Update {
            removed: r.removed_resources.clone(),
            ..Default::default()
        };
        let mut ttls = Vec::new();
        let mut heartbeats = Vec::new();
        for resource in r.resources {
            let ttl = super::ttl(resource.ttl);
            match resource.resource {
                Some(any) => {
                    ttls.push((resource.name, ttl));
                    update.resources.push((resource.version, any));
                }
                None => heartbeats.push((resource.name, ttl)),
            }
        }
        let only_heartbeats =
            !heartbeats.is_empty() && update.resources.is_empty() && update.removed.is_empty();
        client.refresh(t, heartbeats);
        let result = if only_heartbeats {
            Ok(())
        } else {
            client.update(t, &r.system_version_info, update, ttls)
        };
        let mut out = vec![self.answer(t, r.nonce, result.err())];
        out.extend(self.subscriptions(client));
        out
    }

    fn on_change(&mut self, client: &Arc<Client>) -> Vec<DeltaDiscoveryRequest> {
        self.subscriptions(client)
    }

    fn set_node(request: &mut DeltaDiscoveryRequest, node: core::Node) {
        request.node = Some(node);
    }
}
