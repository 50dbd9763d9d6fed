//! One state-of-the-world response applied: every resource of the type is in it, so a
//! resource the client applied before and that is missing now is removed. Each
//! resource is converted on its own; the valid ones are applied, the others are
//! reported in the NACK and keep what they had (as Envoy's CDS and LDS do). A resource
//! sent again unchanged is not applied again (its connections and pools stay as they
//! are).

use super::ResourceType;
use crate::extensions::EXTENSIONS;
use crate::server::Server;
use ferry_config::dynamic::Refused;
use ferry_envoy_api::pb::google::protobuf::Any;
use std::collections::{HashMap, HashSet};
use std::sync::Arc;

/// What the client applied, per type: each resource's name and the bytes it was
/// applied from.
#[derive(Debug, Default)]
pub(crate) struct Applied {
    by_type: HashMap<ResourceType, HashMap<String, Vec<u8>>>,
}

/// Applies the resources of one response of type `t`. `Err`: the NACK's detail.
pub(crate) fn apply(
    server: &Arc<Server>,
    t: ResourceType,
    resources: &[Any],
    applied: &mut Applied,
) -> Result<(), String> {
    let mine = applied.by_type.entry(t).or_default();
    let mut errors = Vec::new();
    let mut seen = HashSet::new();
    for any in resources {
        let outcome = match t {
            ResourceType::Cluster => cluster(server, any, mine),
            ResourceType::Listener => listener(server, any, mine),
        };
        // A refused resource keeps what it had: it is not removed below.
        let (name, error) = match outcome {
            Ok(name) => (name, None),
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
        match t {
            ResourceType::Cluster => server.remove_cluster(&name),
            ResourceType::Listener => server.remove_listener(&name),
        };
    }
    if errors.is_empty() {
        Ok(())
    } else {
        Err(errors.join("\n"))
    }
}

/// Converts and applies one cluster; its name.
fn cluster(
    server: &Arc<Server>,
    any: &Any,
    mine: &mut HashMap<String, Vec<u8>>,
) -> Result<String, Refused> {
    let c = ferry_config::dynamic::cluster(any, &EXTENSIONS)?;
    let snapshot = server.snapshot.load();
    if snapshot.bootstrap.clusters.iter().any(|s| s.name == c.name) {
        return Err(refused(
            &c.name,
            "a static cluster cannot be updated by CDS",
        ));
    }
    if mine.get(&c.name) != Some(&any.value) {
        server.add_or_update_cluster(&c);
        mine.insert(c.name.clone(), any.value.clone());
    }
    Ok(c.name)
}

/// Converts and applies one listener; its name.
fn listener(
    server: &Arc<Server>,
    any: &Any,
    mine: &mut HashMap<String, Vec<u8>>,
) -> Result<String, Refused> {
    let snapshot = server.snapshot.load();
    let clusters = snapshot.clusters.clusters();
    let names: HashSet<&str> = clusters.iter().map(|c| c.config.name.as_str()).collect();
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
    if mine.get(&name) != Some(&any.value) {
        server
            .add_or_update_listener(l)
            .map_err(|e| refused(&name, &e.to_string()))?;
        mine.insert(name.clone(), any.value.clone());
    }
    Ok(name)
}

fn refused(name: &str, message: &str) -> Refused {
    Refused {
        name: name.to_string(),
        message: format!("{name}: {message}"),
    }
}
