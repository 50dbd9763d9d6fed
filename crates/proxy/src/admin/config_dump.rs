//! `/config_dump`: Envoy's sections — the bootstrap, clusters, listeners and route
//! configurations (static, then what the xDS client applied or holds warming), and
//! endpoint assignments with `?include_eds`.

use crate::server::Server;
use serde_json::{json, Value};

const TYPE: &str = "type.googleapis.com/envoy.admin.v3.";

/// The dump, as Envoy's `ConfigDump`.
pub(crate) fn config_dump(server: &Server, include_eds: bool) -> Value {
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
    json!({ "configs": configs })
}
