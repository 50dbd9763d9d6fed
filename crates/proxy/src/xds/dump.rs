//! What the xDS client has applied or holds warming, for admin `/config_dump`'s dynamic
//! sections (Envoy's `dynamic_active_clusters`, `dynamic_warming_clusters`,
//! `dynamic_listeners`, `dynamic_route_configs`, `dynamic_endpoint_configs`).

use super::ResourceType;
use ferry_envoy_api::pb::google::protobuf::Any;
use serde_json::{json, Value};
use std::collections::BTreeMap;

/// One resource as the client has it.
#[derive(Debug, Clone)]
struct Entry {
    version_info: String,
    last_updated: String,
    resource: Any,
    warming: bool,
    /// Removed by LDS, its connections draining.
    draining: bool,
}

/// The dynamic resources, by type and name.
#[derive(Debug, Default)]
pub struct DynamicConfig {
    entries: BTreeMap<ResourceType, BTreeMap<String, Entry>>,
}

impl DynamicConfig {
    /// Records `resource` (applied, or held warming) at `version_info`.
    pub(crate) fn set(
        &mut self,
        t: ResourceType,
        name: &str,
        version_info: &str,
        resource: &Any,
        warming: bool,
    ) {
        let entries = self.entries.entry(t).or_default();
        if let Some(e) = entries.get_mut(name) {
            if e.resource == *resource && !e.draining {
                // Sent again unchanged: it keeps the version it was applied at.
                e.warming = warming;
                return;
            }
        }
        entries.insert(
            name.to_string(),
            Entry {
                version_info: version_info.to_string(),
                last_updated: chrono::Utc::now()
                    .to_rfc3339_opts(chrono::SecondsFormat::Millis, true),
                resource: resource.clone(),
                warming,
                draining: false,
            },
        );
    }

    /// The version of each resource of `t` the client has (a delta stream's
    /// `initial_resource_versions`).
    pub(crate) fn versions(&self, t: ResourceType) -> std::collections::HashMap<String, String> {
        self.of(t)
            .filter(|(_, e)| !e.draining)
            .map(|(name, e)| (name.clone(), e.version_info.clone()))
            .collect()
    }

    /// A warming resource became active.
    pub(crate) fn activate(&mut self, t: ResourceType, name: &str) {
        if let Some(e) = self.entries.get_mut(&t).and_then(|m| m.get_mut(name)) {
            e.warming = false;
        }
    }

    /// A listener was removed: its connections drain.
    pub(crate) fn drain(&mut self, name: &str) {
        let listeners = self.entries.entry(ResourceType::Listener).or_default();
        if let Some(e) = listeners.get_mut(name) {
            e.draining = true;
        }
    }

    /// A removed listener's connections have drained.
    pub(crate) fn drained(&mut self, name: &str) {
        let listeners = self.entries.entry(ResourceType::Listener).or_default();
        if listeners.get(name).is_some_and(|e| e.draining) {
            listeners.remove(name);
        }
    }

    /// A resource was removed.
    pub(crate) fn remove(&mut self, t: ResourceType, name: &str) {
        if let Some(m) = self.entries.get_mut(&t) {
            m.remove(name);
        }
    }

    fn of(&self, t: ResourceType) -> impl Iterator<Item = (&String, &Entry)> {
        self.entries.get(&t).into_iter().flatten()
    }

    /// The dynamic fields of `ClustersConfigDump`.
    pub fn clusters(&self) -> (Vec<Value>, Vec<Value>) {
        let mut active = Vec::new();
        let mut warming = Vec::new();
        for (_, e) in self.of(ResourceType::Cluster) {
            let v = json!({
                "version_info": e.version_info,
                "cluster": ferry_envoy_api::any_to_json(&e.resource),
                "last_updated": e.last_updated,
            });
            if e.warming {
                warming.push(v)
            } else {
                active.push(v)
            }
        }
        (active, warming)
    }

    /// `ListenersConfigDump.dynamic_listeners`.
    pub fn listeners(&self) -> Vec<Value> {
        self.of(ResourceType::Listener)
            .map(|(name, e)| {
                let state = json!({
                    "version_info": e.version_info,
                    "listener": ferry_envoy_api::any_to_json(&e.resource),
                    "last_updated": e.last_updated,
                });
                let key = if e.draining {
                    "draining_state"
                } else if e.warming {
                    "warming_state"
                } else {
                    "active_state"
                };
                json!({ "name": name, key: state })
            })
            .collect()
    }

    /// `RoutesConfigDump.dynamic_route_configs`.
    pub fn route_configs(&self) -> Vec<Value> {
        self.of(ResourceType::RouteConfiguration)
            .map(|(_, e)| {
                json!({
                    "version_info": e.version_info,
                    "route_config": ferry_envoy_api::any_to_json(&e.resource),
                    "last_updated": e.last_updated,
                })
            })
            .collect()
    }

    /// `EndpointsConfigDump.dynamic_endpoint_configs` (without `version_info`, as Envoy
    /// 1.40 writes them).
    pub fn endpoint_configs(&self) -> Vec<Value> {
        self.of(ResourceType::ClusterLoadAssignment)
            .map(|(_, e)| {
                json!({
                    "endpoint_config": ferry_envoy_api::any_to_json(&e.resource),
                    "last_updated": e.last_updated,
                })
            })
            .collect()
    }
}
