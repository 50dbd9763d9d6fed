//! One state-of-the-world response applied. For listeners and clusters every resource
//! of the type is in it, so one the client applied before and that is missing now is
//! removed; route configurations are asked for by name and stay. Each resource is
//! converted on its own; the valid ones are applied, the others are reported in the
//! NACK and keep what they had (as Envoy's CDS and LDS do). A resource sent again
//! unchanged is not applied again (its connections and pools stay as they are).
//!
//! A listener whose connection managers wait for a route configuration from RDS warms:
//! it is held (its previous version, if any, serving on) until every route
//! configuration it names has come, then it is applied. An EDS cluster warms the same
//! way until its `ClusterLoadAssignment` has come; the latest assignment of each
//! service is kept, so that a cluster modified later takes it at once.

use super::ResourceType;
use crate::extensions::EXTENSIONS;
use crate::server::Server;
use ferry_config::cluster::{Cluster, Discovery, Locality};
use ferry_config::dynamic::Refused;
use ferry_config::listener::{Listener, TerminalFilter};
use ferry_envoy_api::pb::google::protobuf::Any;
use std::collections::{HashMap, HashSet};
use std::sync::Arc;

/// What the client applied, per type: each resource's name and the bytes it was
/// applied from; and the listeners and clusters warming.
#[derive(Default)]
pub(crate) struct Applied {
    by_type: HashMap<ResourceType, HashMap<String, Vec<u8>>>,
    warming_listeners: HashMap<String, Listener>,
    warming_clusters: HashMap<String, Cluster>,
    /// The latest assignment of each EDS service.
    endpoints: HashMap<String, Vec<Locality>>,
}

/// The service names of the EDS clusters the server has.
pub(crate) fn eds_names_in_use(server: &Server) -> Vec<String> {
    let mut names: Vec<String> = server
        .snapshot
        .load()
        .clusters
        .clusters()
        .iter()
        .filter_map(|c| eds_name(&c.config))
        .collect();
    names.sort();
    names.dedup();
    names
}

fn eds_name(c: &Cluster) -> Option<String> {
    match &c.discovery {
        Discovery::Eds(e) => Some(e.service_name.clone()),
        _ => None,
    }
}

impl Applied {
    /// The route configurations RDS must ask for: those that connection managers use,
    /// and those that warming listeners wait for.
    pub(crate) fn route_config_names(&self, server: &Server) -> Vec<String> {
        let mut names = server.snapshot.load().route_configs.names_in_use();
        names.extend(self.warming_listeners.values().flat_map(rds_names));
        names.sort();
        names.dedup();
        names
    }

    /// Whether listeners are warming.
    pub(crate) fn listeners_warming(&self) -> bool {
        !self.warming_listeners.is_empty()
    }

    /// Counts what warms in the server's stats.
    pub(crate) fn count_warming(&self, server: &Server) {
        server.set_warming(self.warming_listeners.len(), self.warming_clusters.len());
    }

    /// The assignments EDS must ask for: those of the EDS clusters the server has and
    /// of the warming ones.
    pub(crate) fn endpoint_names(&self, server: &Server) -> Vec<String> {
        let mut names = eds_names_in_use(server);
        names.extend(self.warming_clusters.values().filter_map(eds_name));
        names.sort();
        names.dedup();
        names
    }

    /// Whether clusters are warming.
    pub(crate) fn clusters_warming(&self) -> bool {
        !self.warming_clusters.is_empty()
    }

    /// Whether every EDS cluster has its assignment.
    pub(crate) fn endpoints_complete(&self, server: &Server) -> bool {
        eds_names_in_use(server)
            .iter()
            .all(|n| self.endpoints.contains_key(n))
    }
}

/// Applies the resources of one response of type `t`. `Err`: the NACK's detail.
pub(crate) fn apply(
    server: &Arc<Server>,
    t: ResourceType,
    version: &str,
    resources: &[Any],
    applied: &mut Applied,
) -> Result<(), String> {
    match t {
        ResourceType::RouteConfiguration => {
            return route_configurations(server, version, resources, applied)
        }
        ResourceType::ClusterLoadAssignment => {
            return endpoints(server, version, resources, applied)
        }
        ResourceType::Cluster | ResourceType::Listener => {}
    }
    let Applied {
        by_type,
        warming_listeners,
        warming_clusters,
        endpoints,
    } = applied;
    let mine = by_type.entry(t).or_default();
    let mut errors = Vec::new();
    let mut seen = HashSet::new();
    for any in resources {
        let outcome = match t {
            ResourceType::Cluster => cluster(server, any, mine, warming_clusters, endpoints),
            ResourceType::Listener => {
                // Routes may name warming clusters too (as Envoy validates them).
                let known: HashSet<String> = warming_clusters.keys().cloned().collect();
                listener(server, any, mine, warming_listeners, &known)
            }
            _ => continue,
        };
        // A refused resource keeps what it had: it is not removed below.
        let (name, error) = match outcome {
            Ok(name) => {
                let warming =
                    warming_listeners.contains_key(&name) || warming_clusters.contains_key(&name);
                server
                    .dynamic_config
                    .lock()
                    .set(t, &name, version, any, warming);
                (name, None)
            }
            Err(Refused { name, message }) => (name, Some(message)),
        };
        if !name.is_empty() && !seen.insert(name.clone()) {
            errors.push(format!("{name}: duplicate resource name"));
        }
        errors.extend(error);
    }
    let gone: Vec<String> = mine
        .keys()
        .filter(|n| !seen.contains(*n))
        .cloned()
        .collect();
    for name in gone {
        mine.remove(&name);
        server.dynamic_config.lock().remove(t, &name);
        match t {
            ResourceType::Cluster => {
                warming_clusters.remove(&name);
                server.remove_cluster(&name)
            }
            ResourceType::Listener => {
                warming_listeners.remove(&name);
                server.remove_listener(&name)
            }
            _ => false,
        };
    }
    outcome(errors)
}

/// Converts and applies one cluster (or holds it warming); its name.
fn cluster(
    server: &Arc<Server>,
    any: &Any,
    mine: &mut HashMap<String, Vec<u8>>,
    warming: &mut HashMap<String, Cluster>,
    endpoints: &HashMap<String, Vec<Locality>>,
) -> Result<String, Refused> {
    let mut c = ferry_config::dynamic::cluster(any, &EXTENSIONS)?;
    let snapshot = server.snapshot.load();
    if snapshot.bootstrap.clusters.iter().any(|s| s.name == c.name) {
        return Err(refused(
            &c.name,
            "a static cluster cannot be updated by CDS",
        ));
    }
    if mine.get(&c.name) == Some(&any.value) {
        return Ok(c.name);
    }
    mine.insert(c.name.clone(), any.value.clone());
    if let Some(service) = eds_name(&c) {
        match endpoints.get(&service) {
            Some(localities) => c.localities = localities.clone(),
            None => {
                let name = c.name.clone();
                warming.insert(name.clone(), c);
                return Ok(name);
            }
        }
    }
    warming.remove(&c.name);
    server.add_or_update_cluster(&c);
    Ok(c.name)
}

/// Converts and applies assignments (EDS): to the EDS clusters of their service, then
/// to the clusters that were warming for them.
fn endpoints(
    server: &Arc<Server>,
    version: &str,
    resources: &[Any],
    applied: &mut Applied,
) -> Result<(), String> {
    let snapshot = server.snapshot.load_full();
    let mine = applied
        .by_type
        .entry(ResourceType::ClusterLoadAssignment)
        .or_default();
    let mut errors = Vec::new();
    for any in resources {
        match ferry_config::dynamic::cluster_load_assignment(any) {
            Ok((service, localities)) => {
                if mine.get(&service) == Some(&any.value) {
                    continue;
                }
                mine.insert(service.clone(), any.value.clone());
                server.dynamic_config.lock().set(
                    ResourceType::ClusterLoadAssignment,
                    &service,
                    version,
                    any,
                    false,
                );
                for c in snapshot.clusters.clusters() {
                    if eds_name(&c.config).as_ref() == Some(&service) {
                        snapshot
                            .clusters
                            .set_endpoints(&c.config.name, localities.clone());
                    }
                }
                applied.endpoints.insert(service, localities);
            }
            Err(refused) => errors.push(refused.message),
        }
    }
    let ready: Vec<String> = applied
        .warming_clusters
        .iter()
        .filter(|(_, c)| eds_name(c).is_some_and(|s| applied.endpoints.contains_key(&s)))
        .map(|(n, _)| n.clone())
        .collect();
    for name in ready {
        if let Some(mut c) = applied.warming_clusters.remove(&name) {
            if let Some(localities) = eds_name(&c).and_then(|s| applied.endpoints.get(&s)) {
                c.localities = localities.clone();
            }
            server.add_or_update_cluster(&c);
            server
                .dynamic_config
                .lock()
                .activate(ResourceType::Cluster, &name);
        }
    }
    outcome(errors)
}

/// Converts and applies one listener (or holds it warming); its name.
fn listener(
    server: &Arc<Server>,
    any: &Any,
    mine: &mut HashMap<String, Vec<u8>>,
    warming: &mut HashMap<String, Listener>,
    warming_clusters: &HashSet<String>,
) -> Result<String, Refused> {
    let snapshot = server.snapshot.load();
    let clusters = snapshot.clusters.clusters();
    let names: HashSet<&str> = clusters
        .iter()
        .map(|c| c.config.name.as_str())
        .chain(warming_clusters.iter().map(String::as_str))
        .collect();
    let l = ferry_config::dynamic::listener(any, &names, &EXTENSIONS)?;
    if snapshot
        .bootstrap
        .listeners
        .iter()
        .any(|s| s.name == l.name)
    {
        return Err(refused(
            &l.name,
            "a static listener cannot be updated by LDS",
        ));
    }
    let name = l.name.clone();
    if mine.get(&name) == Some(&any.value) {
        return Ok(name);
    }
    let routes = &snapshot.route_configs;
    if rds_names(&l).iter().all(|n| routes.has(n)) {
        warming.remove(&name);
        // A listener that cannot be applied (its address in use) is tried again when
        // it is sent again, even unchanged.
        server
            .add_or_update_listener(l)
            .map_err(|e| refused(&name, &e.to_string()))?;
    } else {
        warming.insert(name.clone(), l);
    }
    mine.insert(name.clone(), any.value.clone());
    Ok(name)
}

/// The route configurations a listener's connection managers take from RDS.
fn rds_names(l: &Listener) -> Vec<String> {
    l.filter_chains
        .iter()
        .chain(l.default_filter_chain.as_ref())
        .filter_map(|fc| match &fc.filter {
            TerminalFilter::Http(h) => h.rds.as_ref().map(|r| r.name.clone()),
            TerminalFilter::Filter(_) => None,
        })
        .collect()
}

/// Converts and applies route configurations (RDS), then the listeners that were
/// warming for them.
fn route_configurations(
    server: &Arc<Server>,
    version: &str,
    resources: &[Any],
    applied: &mut Applied,
) -> Result<(), String> {
    let snapshot = server.snapshot.load_full();
    let mine = applied
        .by_type
        .entry(ResourceType::RouteConfiguration)
        .or_default();
    let mut errors = Vec::new();
    for any in resources {
        match ferry_config::dynamic::route_configuration(any, &EXTENSIONS) {
            Ok(config) => {
                if mine.get(&config.name) != Some(&any.value) {
                    mine.insert(config.name.clone(), any.value.clone());
                    let name = config.name.clone();
                    server.dynamic_config.lock().set(
                        ResourceType::RouteConfiguration,
                        &name,
                        version,
                        any,
                        false,
                    );
                    snapshot.route_configs.update(&name, Arc::new(config));
                }
            }
            Err(refused) => errors.push(refused.message),
        }
    }
    let ready: Vec<String> = applied
        .warming_listeners
        .iter()
        .filter(|(_, l)| rds_names(l).iter().all(|n| snapshot.route_configs.has(n)))
        .map(|(n, _)| n.clone())
        .collect();
    for name in ready {
        if let Some(l) = applied.warming_listeners.remove(&name) {
            match server.add_or_update_listener(l) {
                Ok(()) => server
                    .dynamic_config
                    .lock()
                    .activate(ResourceType::Listener, &name),
                Err(e) => errors.push(format!("{name}: {e}")),
            }
        }
    }
    outcome(errors)
}

fn refused(name: &str, message: &str) -> Refused {
    Refused {
        name: name.to_string(),
        message: format!("{name}: {message}"),
    }
}

/// The outcome of a response: applied, or the NACK's detail (a problem a line).
fn outcome(errors: Vec<String>) -> Result<(), String> {
    if errors.is_empty() {
        Ok(())
    } else {
        Err(errors.join("\n"))
    }
}
