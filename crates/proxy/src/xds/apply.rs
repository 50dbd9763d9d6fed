//! One update applied: a state-of-the-world response, a delta response, a file, or a
//! resource whose TTL ran out. In a state-of-the-world update of listeners or clusters
//! every resource of the type is there, so one the client applied before and that is
//! missing now is removed; a delta update names what it removes. As in Envoy, a
//! removed route configuration stays with the connection managers that use it, and a
//! removed assignment leaves its clusters' hosts as they are. Each resource is
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
use ferry_config::dynamic::{ConfigSource, Rds, Refused};
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

/// The EDS services of the clusters the server has, with where they come from.
pub(crate) fn eds_in_use(server: &Server) -> Vec<(String, ConfigSource)> {
    let snapshot = server.snapshot.load();
    let clusters = snapshot.clusters.clusters();
    named(clusters.iter().filter_map(|c| eds(&c.config)))
}

fn eds(c: &Cluster) -> Option<(String, ConfigSource)> {
    match &c.discovery {
        Discovery::Eds(e) => Some((e.service_name.clone(), e.source.clone())),
        _ => None,
    }
}

/// The EDS clusters the server has, by service: built once per update of assignments
/// (each assignment then finds its clusters without a scan of them all).
type EdsClusters = HashMap<String, Vec<Arc<ferry_upstream::Cluster>>>;

fn eds_clusters(server: &Server, t: ResourceType) -> EdsClusters {
    let mut by_service = EdsClusters::new();
    if t != ResourceType::ClusterLoadAssignment {
        return by_service;
    }
    for c in server.snapshot.load().clusters.clusters() {
        if let Discovery::Eds(e) = &c.config.discovery {
            by_service
                .entry(e.service_name.clone())
                .or_default()
                .push(c);
        }
    }
    by_service
}

fn eds_name(c: &Cluster) -> Option<String> {
    eds(c).map(|(name, _)| name)
}

/// Names with their sources, sorted, each once (the first source it was seen with).
fn named(names: impl Iterator<Item = (String, ConfigSource)>) -> Vec<(String, ConfigSource)> {
    let mut names: Vec<(String, ConfigSource)> = names.collect();
    names.sort_by(|a, b| a.0.cmp(&b.0));
    names.dedup_by(|a, b| a.0 == b.0);
    names
}

impl Applied {
    /// What a named subscription must ask for, with where each comes from: the route
    /// configurations that connection managers use and that warming listeners wait
    /// for (RDS); the assignments of the EDS clusters, warming ones included (EDS).
    pub(crate) fn wanted(&self, server: &Server, t: ResourceType) -> Vec<(String, ConfigSource)> {
        match t {
            ResourceType::RouteConfiguration => {
                let in_use = server.snapshot.load().route_configs.names_in_use();
                let warming = self.warming_listeners.values().flat_map(rds_of);
                named(in_use.into_iter().chain(warming))
            }
            ResourceType::ClusterLoadAssignment => {
                let warming = self.warming_clusters.values().filter_map(eds);
                named(eds_in_use(server).into_iter().chain(warming))
            }
            ResourceType::Cluster | ResourceType::Listener => Vec::new(),
        }
    }

    /// Whether every resource of a named type in use has come.
    pub(crate) fn complete(&self, server: &Server, t: ResourceType) -> bool {
        let routes = server.snapshot.load().route_configs.clone();
        self.wanted(server, t).iter().all(|(n, _)| match t {
            ResourceType::RouteConfiguration => routes.has(n),
            _ => self.endpoints.contains_key(n),
        })
    }

    /// Whether listeners (clusters) are warming.
    pub(crate) fn warming(&self, t: ResourceType) -> bool {
        match t {
            ResourceType::Listener => !self.warming_listeners.is_empty(),
            ResourceType::Cluster => !self.warming_clusters.is_empty(),
            _ => false,
        }
    }

    /// Counts what warms in the server's stats.
    pub(crate) fn count_warming(&self, server: &Server) {
        server.set_warming(self.warming_listeners.len(), self.warming_clusters.len());
    }
}

/// One update of a type.
#[derive(Debug, Default)]
pub(crate) struct Update {
    /// The resources added or updated, each with its version (the response's
    /// `version_info` in state of the world, the resource's own in delta).
    pub(crate) resources: Vec<(String, Any)>,
    /// The names removed (delta's `removed_resources`, an expired TTL).
    pub(crate) removed: Vec<String>,
    /// State of the world: a listener or cluster not in `resources` is removed.
    pub(crate) complete: bool,
}

/// What applying an update did.
pub(crate) struct Outcome {
    /// Whether a resource was added, changed or removed.
    pub(crate) changed: bool,
    /// `Err`: the NACK's detail.
    pub(crate) result: Result<(), String>,
}

/// Applies an update of type `t`.
pub(crate) fn apply(
    server: &Arc<Server>,
    t: ResourceType,
    update: &Update,
    applied: &mut Applied,
) -> Outcome {
    // Listeners leaving in this update hand their sockets to new ones at their
    // address; they are removed after the new ones are applied.
    let leaving = leaving(t, update, applied);
    let eds = eds_clusters(server, t);
    let mut errors = Vec::new();
    let mut seen = HashSet::new();
    let mut any_changed = false;
    for (version, any) in &update.resources {
        let outcome = one(server, t, any, &leaving, &eds, applied);
        count(server, t, version, &eds, &outcome);
        let (name, error) = match outcome {
            Ok((name, changed)) => {
                let warming = applied.warming_listeners.contains_key(&name)
                    || applied.warming_clusters.contains_key(&name);
                if changed {
                    any_changed = true;
                    server
                        .dynamic_config
                        .lock()
                        .set(t, &name, version, any, warming);
                }
                (name, None)
            }
            // A refused resource keeps what it had: it is not removed below.
            Err(Refused { name, message }) => (name, Some(message)),
        };
        if !name.is_empty() && !seen.insert(name.clone()) {
            errors.push(format!("{name}: duplicate resource name"));
        }
        errors.extend(error);
    }
    match t {
        ResourceType::RouteConfiguration => promote_listeners(server, applied),
        ResourceType::ClusterLoadAssignment => promote_clusters(server, applied),
        ResourceType::Cluster | ResourceType::Listener => {}
    }
    for name in &update.removed {
        any_changed |= remove(server, t, name, applied);
    }
    if update.complete && t.wildcard() {
        let gone: Vec<String> = applied
            .by_type
            .get(&t)
            .into_iter()
            .flat_map(|m| m.keys())
            .filter(|n| !seen.contains(*n))
            .cloned()
            .collect();
        for name in gone {
            any_changed |= remove(server, t, &name, applied);
        }
    }
    Outcome {
        changed: any_changed,
        result: outcome(errors),
    }
}

/// The listeners an update removes: those it names as removed and, in state of the
/// world, those it no longer has.
fn leaving(t: ResourceType, update: &Update, applied: &Applied) -> Vec<String> {
    if t != ResourceType::Listener {
        return Vec::new();
    }
    let mut leaving: Vec<String> = update
        .removed
        .iter()
        .filter(|n| applied.has(t, n))
        .cloned()
        .collect();
    if update.complete {
        let kept: HashSet<String> = update
            .resources
            .iter()
            .map(|(_, any)| super::resource_name(any))
            .collect();
        let applied = applied.by_type.get(&t).into_iter().flat_map(|m| m.keys());
        leaving.extend(applied.filter(|n| !kept.contains(*n)).cloned());
    }
    leaving
}

/// Converts and applies one resource (or holds it warming): its name, and whether it
/// changed (a resource sent again unchanged is left alone: its connections, pools and
/// routes stay as they are).
fn one(
    server: &Arc<Server>,
    t: ResourceType,
    any: &Any,
    leaving: &[String],
    eds: &EdsClusters,
    applied: &mut Applied,
) -> Result<(String, bool), Refused> {
    // Sent again unchanged (a state-of-the-world response repeats every resource):
    // known by its bytes, without converting it again.
    let name = super::resource_name(any);
    if applied.by_type.get(&t).and_then(|m| m.get(&name)) == Some(&any.value) {
        return Ok((name, false));
    }
    match t {
        ResourceType::Cluster => cluster(server, any, applied).map(|n| (n, true)),
        ResourceType::Listener => listener(server, any, leaving, applied).map(|n| (n, true)),
        ResourceType::RouteConfiguration => {
            let config = ferry_config::dynamic::route_configuration(any, &EXTENSIONS)?;
            let name = config.name.clone();
            applied.record(t, &name, any);
            let routes = &server.snapshot.load().route_configs;
            routes.update(&name, Arc::new(config));
            Ok((name, true))
        }
        ResourceType::ClusterLoadAssignment => {
            let (service, localities) = ferry_config::dynamic::cluster_load_assignment(any)?;
            applied.record(t, &service, any);
            // To the EDS clusters of that service; kept for those that come later.
            let clusters = &server.snapshot.load().clusters;
            for c in eds.get(&service).into_iter().flatten() {
                clusters.set_endpoints(&c.config.name, localities.clone());
            }
            applied.endpoints.insert(service.clone(), localities);
            Ok((service, true))
        }
    }
}

/// Counts a route configuration's update in its subscription's stats
/// (`http.<prefix>.rds.<name>.*`) and an assignment's in its clusters'
/// (`cluster.<name>.update_*`), as Envoy does; listeners and clusters are counted per
/// response (`listener_manager.lds.*`, `cluster_manager.cds.*`).
fn count(
    server: &Server,
    t: ResourceType,
    version: &str,
    eds: &EdsClusters,
    outcome: &Result<(String, bool), Refused>,
) {
    let (name, ok) = match outcome {
        Ok((name, _)) => (name, true),
        Err(refused) => (&refused.name, false),
    };
    let snapshot = server.snapshot.load();
    match t {
        ResourceType::RouteConfiguration => {
            let Some(stats) = snapshot.route_configs.stats(name) else {
                return;
            };
            stats.update_attempt.inc();
            if ok {
                stats.update_success.inc();
                stats.version.set(super::version_hash(version));
                stats.update_time.set(super::now_ms());
            } else {
                stats.update_rejected.inc();
            }
        }
        ResourceType::ClusterLoadAssignment => {
            for c in eds.get(name).into_iter().flatten() {
                c.stats.update_attempt.inc();
                if ok {
                    c.stats.update_success.inc();
                }
                if let Some(eds) = &c.eds_stats {
                    match ok {
                        true => eds.update_time.set(super::now_ms()),
                        false => eds.update_rejected.inc(),
                    }
                }
            }
        }
        ResourceType::Cluster | ResourceType::Listener => {}
    }
}

impl Applied {
    /// Whether the client applied (or holds warming) `name` of `t`.
    fn has(&self, t: ResourceType, name: &str) -> bool {
        self.by_type.get(&t).is_some_and(|m| m.contains_key(name))
    }

    /// Records `any` as the bytes `name` is applied from (or held warming).
    fn record(&mut self, t: ResourceType, name: &str, any: &Any) {
        let mine = self.by_type.entry(t).or_default();
        mine.insert(name.to_string(), any.value.clone());
    }
}

/// Removes a resource the client applied (or holds warming).
/// Whether it did.
fn remove(server: &Arc<Server>, t: ResourceType, name: &str, applied: &mut Applied) -> bool {
    // Only what came from xDS: a static listener or cluster is not the control
    // plane's to remove (Envoy ignores such removals too).
    if !applied.has(t, name) {
        return false;
    }
    match t {
        ResourceType::Cluster => {
            applied.warming_clusters.remove(name);
            server.remove_cluster(name);
        }
        ResourceType::Listener => {
            applied.warming_listeners.remove(name);
            if let Some(mine) = applied.by_type.get_mut(&t) {
                mine.remove(name);
            }
            // `/config_dump` shows it draining until its connections have drained.
            if !server.remove_listener(name) {
                server.dynamic_config.lock().remove(t, name);
            }
            return true;
        }
        ResourceType::RouteConfiguration => {
            // Envoy ignores an RDS removal: connection managers keep their routes.
            tracing::warn!(name, "xDS: removal of a route configuration ignored");
            return false;
        }
        ResourceType::ClusterLoadAssignment => {
            // As in Envoy, an empty update of its clusters: they keep their hosts
            // (`update_empty`), and those warming for it start without any.
            applied.endpoints.remove(name);
            let snapshot = server.snapshot.load();
            for c in snapshot.clusters.clusters() {
                if eds_name(&c.config).as_deref() == Some(name) {
                    c.stats.update_empty.inc();
                }
            }
            let starting: Vec<String> = applied
                .warming_clusters
                .iter()
                .filter(|(_, c)| eds_name(c).as_deref() == Some(name))
                .map(|(n, _)| n.clone())
                .collect();
            for cluster in starting {
                if let Some(mut c) = applied.warming_clusters.remove(&cluster) {
                    c.localities.clear();
                    server.add_or_update_cluster(&c);
                    server
                        .dynamic_config
                        .lock()
                        .activate(ResourceType::Cluster, &cluster);
                }
            }
        }
    }
    if let Some(mine) = applied.by_type.get_mut(&t) {
        mine.remove(name);
    }
    server.dynamic_config.lock().remove(t, name);
    true
}

/// Converts and applies one cluster (or holds it warming); its name.
fn cluster(server: &Arc<Server>, any: &Any, applied: &mut Applied) -> Result<String, Refused> {
    let mut c = ferry_config::dynamic::cluster(any, &EXTENSIONS)?;
    let snapshot = server.snapshot.load();
    if snapshot.bootstrap.clusters.iter().any(|s| s.name == c.name) {
        return Err(refused(
            &c.name,
            "a static cluster cannot be updated by CDS",
        ));
    }
    applied.record(ResourceType::Cluster, &c.name, any);
    if let Some(service) = eds_name(&c) {
        match applied.endpoints.get(&service) {
            Some(localities) => c.localities = localities.clone(),
            None => {
                let name = c.name.clone();
                applied.warming_clusters.insert(name.clone(), c);
                return Ok(name);
            }
        }
    }
    applied.warming_clusters.remove(&c.name);
    server.add_or_update_cluster(&c);
    Ok(c.name)
}

/// Applies the warming clusters whose assignment has come.
fn promote_clusters(server: &Arc<Server>, applied: &mut Applied) {
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
}

/// Converts and applies one listener (or holds it warming); its name. A new listener
/// at the address of one `leaving` takes over its socket.
fn listener(
    server: &Arc<Server>,
    any: &Any,
    leaving: &[String],
    applied: &mut Applied,
) -> Result<String, Refused> {
    let snapshot = server.snapshot.load();
    let clusters = snapshot.clusters.clusters();
    // Routes may name warming clusters too (as Envoy validates them).
    let names: HashSet<&str> = clusters
        .iter()
        .map(|c| c.config.name.as_str())
        .chain(applied.warming_clusters.keys().map(String::as_str))
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
    let routes = &snapshot.route_configs;
    if rds_names(&l).iter().all(|n| routes.has(n)) {
        applied.warming_listeners.remove(&name);
        let handed = leaving
            .iter()
            .find(|old| server.hand_over_listener(old, &l))
            .cloned();
        // A listener that cannot be applied (its address in use) is tried again when
        // it is sent again, even unchanged; a socket handed over goes back.
        if let Err(e) = server.add_or_update_listener(l) {
            if let Some(old) = &handed {
                server.rename_listener(&name, old);
            }
            return Err(refused(&name, &e.to_string()));
        }
        if let Some(old) = handed {
            tracing::info!(listener = %name, from = %old, "xDS: a new listener took over a leaving one's socket");
        }
    } else {
        applied.warming_listeners.insert(name.clone(), l);
    }
    applied.record(ResourceType::Listener, &name, any);
    Ok(name)
}

/// The route configurations a listener's connection managers take from RDS, with
/// where they come from.
fn rds_of(l: &Listener) -> Vec<(String, ConfigSource)> {
    l.filter_chains
        .iter()
        .chain(l.default_filter_chain.as_ref())
        .filter_map(|fc| match &fc.filter {
            TerminalFilter::Http(h) => h
                .rds
                .as_ref()
                .map(|r: &Rds| (r.name.clone(), r.source.clone())),
            TerminalFilter::Filter(_) => None,
        })
        .collect()
}

fn rds_names(l: &Listener) -> Vec<String> {
    rds_of(l).into_iter().map(|(n, _)| n).collect()
}

/// Applies the warming listeners whose route configurations have all come. One that
/// cannot be applied (its address taken meanwhile) is dropped, as Envoy drops a
/// listener that fails once warm (`listener_create_failure`): sent again, it is tried
/// again.
fn promote_listeners(server: &Arc<Server>, applied: &mut Applied) {
    let routes = server.snapshot.load().route_configs.clone();
    let ready: Vec<String> = applied
        .warming_listeners
        .iter()
        .filter(|(_, l)| rds_names(l).iter().all(|n| routes.has(n)))
        .map(|(n, _)| n.clone())
        .collect();
    for name in ready {
        if let Some(l) = applied.warming_listeners.remove(&name) {
            match server.add_or_update_listener(l) {
                Ok(()) => server
                    .dynamic_config
                    .lock()
                    .activate(ResourceType::Listener, &name),
                Err(e) => {
                    tracing::warn!(listener = %name, "xDS: a warm listener cannot be applied: {e}");
                    if let Some(mine) = applied.by_type.get_mut(&ResourceType::Listener) {
                        mine.remove(&name);
                    }
                    server
                        .dynamic_config
                        .lock()
                        .remove(ResourceType::Listener, &name);
                }
            }
        }
    }
}

fn refused(name: &str, message: &str) -> Refused {
    Refused {
        name: name.to_string(),
        message: format!("{name}: {message}"),
    }
}

/// The outcome of an update: applied, or the NACK's detail (a problem a line).
fn outcome(errors: Vec<String>) -> Result<(), String> {
    if errors.is_empty() {
        Ok(())
    } else {
        Err(errors.join("\n"))
    }
}
