//! `/config_dump`: Envoy's sections — the bootstrap, clusters, listeners and route
//! configurations (static, then what the xDS client applied or holds warming), and
//! endpoint assignments with `?include_eds`. `?resource=` lists the elements of one
//! repeated field of a section (e.g. `dynamic_active_clusters`), each with its type;
//! `?mask=` (a field mask: comma-separated dotted paths) keeps only those fields of
//! each section, or of each element with `?resource=`.

use crate::server::Server;
use serde_json::{json, Value};

const TYPE: &str = "type.googleapis.com/envoy.admin.v3.";

/// What `/config_dump` was asked for.
#[derive(Debug, Default)]
pub(crate) struct Query {
    /// `include_eds`.
    pub(crate) include_eds: bool,
    /// `resource`: a repeated field of a section.
    pub(crate) resource: Option<String>,
    /// `mask`: the fields to keep.
    pub(crate) mask: Option<String>,
}

/// The message type of the elements of each repeated field `?resource=` may name.
const RESOURCES: &[(&str, &str)] = &[
    ("static_clusters", "ClustersConfigDump.StaticCluster"),
    (
        "dynamic_active_clusters",
        "ClustersConfigDump.DynamicCluster",
    ),
    (
        "dynamic_warming_clusters",
        "ClustersConfigDump.DynamicCluster",
    ),
    ("static_listeners", "ListenersConfigDump.StaticListener"),
    ("dynamic_listeners", "ListenersConfigDump.DynamicListener"),
    (
        "dynamic_route_configs",
        "RoutesConfigDump.DynamicRouteConfig",
    ),
    (
        "dynamic_endpoint_configs",
        "EndpointsConfigDump.DynamicEndpointConfig",
    ),
];

/// The dump for `query`; `Err`: the 404's message.
pub(crate) fn config_dump(server: &Server, query: &Query) -> Result<Value, String> {
    let mask = query.mask.as_deref().map(|m| {
        m.split(',')
            .map(|p| p.trim().split('.').map(str::to_string).collect::<Vec<_>>())
            .collect::<Vec<_>>()
    });
    let Some(resource) = &query.resource else {
        let mut configs = sections(server, query.include_eds);
        if let Some(mask) = &mask {
            // A section the mask leaves nothing of is left out, as Envoy does.
            configs = configs
                .iter()
                .map(|c| masked(c, mask))
                .filter(|c| c.as_object().is_some_and(|o| o.len() > 1))
                .collect();
        }
        return Ok(json!({ "configs": configs }));
    };
    let Some((_, element)) = RESOURCES.iter().find(|(f, _)| f == resource) else {
        return Err(format!("{resource} not found in config dump\n"));
    };
    let configs: Vec<Value> = sections(server, true)
        .iter()
        .flat_map(|c| c[resource.as_str()].as_array().cloned().unwrap_or_default())
        .map(|mut r| {
            if let Some(mask) = &mask {
                r = masked(&r, mask);
            }
            if let Value::Object(o) = &mut r {
                o.insert("@type".into(), json!(format!("{TYPE}{element}")));
            }
            r
        })
        .collect();
    Ok(json!({ "configs": configs }))
}

/// `value` with only the fields at `paths` (and its `@type`); through a repeated
/// field, of each element.
fn masked(value: &Value, paths: &[Vec<String>]) -> Value {
    let o = match value {
        Value::Object(o) => o,
        Value::Array(a) => return Value::Array(a.iter().map(|v| masked(v, paths)).collect()),
        _ => return value.clone(),
    };
    let mut whole = std::collections::HashSet::new();
    let mut deeper: std::collections::HashMap<&str, Vec<Vec<String>>> = Default::default();
    for path in paths {
        match path.split_first() {
            Some((first, [])) => {
                whole.insert(first.as_str());
            }
            Some((first, rest)) => deeper
                .entry(first.as_str())
                .or_default()
                .push(rest.to_vec()),
            None => {}
        }
    }
    let kept = o.iter().filter_map(|(k, v)| {
        if k == "@type" || whole.contains(k.as_str()) {
            Some((k.clone(), v.clone()))
        } else {
            deeper
                .get(k.as_str())
                .map(|rest| (k.clone(), masked(v, rest)))
        }
    });
    Value::Object(kept.collect())
}

/// Each section of the dump.
fn sections(server: &Server, include_eds: bool) -> Vec<Value> {
    let snap = server.snapshot.load();
    let bootstrap: Value = serde_json::from_str(&snap.config_json).unwrap_or(Value::Null);
    let statics = |kind: &str, key: &str| -> Vec<Value> {
        bootstrap["static_resources"][kind]
            .as_array()
            .into_iter()
            .flatten()
            .map(|r| json!({ key: r }))
            .collect()
    };
    let dynamic = server.dynamic_config.lock();
    let (active_clusters, warming_clusters) = dynamic.clusters();
    let mut configs = vec![
        json!({
            "@type": format!("{TYPE}BootstrapConfigDump"),
            "bootstrap": bootstrap.clone(),
        }),
        json!({
            "@type": format!("{TYPE}ClustersConfigDump"),
            "static_clusters": statics("clusters", "cluster"),
            "dynamic_active_clusters": active_clusters,
            "dynamic_warming_clusters": warming_clusters,
        }),
        json!({
            "@type": format!("{TYPE}ListenersConfigDump"),
            "static_listeners": statics("listeners", "listener"),
            "dynamic_listeners": dynamic.listeners(),
        }),
        json!({
            "@type": format!("{TYPE}RoutesConfigDump"),
            "dynamic_route_configs": dynamic.route_configs(),
        }),
    ];
    if include_eds {
        configs.push(json!({
            "@type": format!("{TYPE}EndpointsConfigDump"),
            "dynamic_endpoint_configs": dynamic.endpoint_configs(),
        }));
    }
    configs
}
