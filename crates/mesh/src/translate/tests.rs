#![allow(clippy::unwrap_used, clippy::expect_used)]
//! The translation of a colorapp-style mesh, kept as a golden file
//! (`crates/mesh/tests/golden/`; `FERRY_UPDATE_GOLDEN=1` writes it again), and every
//! resource decoded through Envoy's own descriptors (a field Envoy does not have, a
//! value of the wrong type, fails).

use super::*;
use crate::import::import_text;
use crate::model::instance::Health;

/// The mesh: a front node with a router-provided, a node-provided and a gRPC backend.
const MESH: &str = include_str!("../../tests/golden/colorapp.yaml");

fn view() -> MeshView {
    let manifests = import_text(MESH, "colorapp.yaml").unwrap().resources;
    let mut view = MeshView::from_manifests("colorapp", &manifests).unwrap();
    // red's registered instances: one of another version (not selected), one draining.
    let instance = |address: &str, version: &str, health| Instance {
        address: address.into(),
        port: 9080,
        attributes: [("version".to_string(), version.to_string())].into(),
        health,
    };
    view.instances.insert(
        "red".into(),
        [
            (
                "r1".to_string(),
                instance("127.0.0.11", "v2", Health::Healthy),
            ),
            (
                "r2".to_string(),
                instance("127.0.0.12", "v1", Health::Healthy),
            ),
            (
                "r3".to_string(),
                instance("127.0.0.13", "v2", Health::Draining),
            ),
        ]
        .into(),
    );
    view
}

/// Compares `got` with the golden file `name` (or writes it).
fn golden(name: &str, got: &Value) {
    let path = format!("{}/tests/golden/{name}.json", env!("CARGO_MANIFEST_DIR"));
    let text = serde_json::to_string_pretty(got).unwrap() + "\n";
    if std::env::var_os("FERRY_UPDATE_GOLDEN").is_some() {
        std::fs::write(&path, &text).unwrap();
        return;
    }
    let want = std::fs::read_to_string(&path)
        .unwrap_or_else(|e| panic!("{path}: {e} (FERRY_UPDATE_GOLDEN=1 writes it)"));
    assert_eq!(
        text, want,
        "{path} differs (FERRY_UPDATE_GOLDEN=1 writes it again)"
    );
}

/// Decodes every resource through Envoy's descriptors.
fn decodes(r: &Resources) {
    use ferry_envoy_api::pb::envoy::config;
    each_decodes::<config::listener::v3::Listener>(
        &r.listeners,
        "envoy.config.listener.v3.Listener",
    );
    each_decodes::<config::cluster::v3::Cluster>(&r.clusters, "envoy.config.cluster.v3.Cluster");
    each_decodes::<config::endpoint::v3::ClusterLoadAssignment>(
        &r.endpoints,
        "envoy.config.endpoint.v3.ClusterLoadAssignment",
    );
    each_decodes::<config::route::v3::RouteConfiguration>(
        &r.route_configurations,
        "envoy.config.route.v3.RouteConfiguration",
    );
}

/// Decodes each of `values` as the message `full_name`; a failure names the resource.
fn each_decodes<T: prost::Message + Default>(values: &[Value], full_name: &str) {
    use ferry_envoy_api::{decode_message, Format};
    for v in values {
        let name = v.get("name").or(v.get("cluster_name"));
        decode_message::<T>(&v.to_string(), Format::Json, full_name)
            .unwrap_or_else(|e| panic!("{name:?}: {e}"));
    }
}

#[test]
fn a_virtual_node_becomes_its_proxys_listeners_clusters_and_routes() {
    let view = view();
    let front = virtual_node(&view, "front", &Options::default()).unwrap();
    decodes(&front);
    golden("colorapp-front", &front.to_json());
    assert_eq!(
        front.notes,
        ["backend missing.colorapp.local: not a virtual service of mesh colorapp with a provider; not routed"]
    );
    // The routes of the router in App Mesh's order: by priority, then without one.
    let egress = &front
        .listeners
        .iter()
        .find(|l| l["name"] == "lds_egress")
        .unwrap();
    let hosts =
        &egress["filter_chains"][0]["filters"][0]["typed_config"]["route_config"]["virtual_hosts"];
    let color = hosts
        .as_array()
        .unwrap()
        .iter()
        .find(|h| h["name"] == "color.colorapp.local_9080")
        .unwrap();
    let names: Vec<&str> = color["routes"]
        .as_array()
        .unwrap()
        .iter()
        .map(|r| r["name"].as_str().unwrap())
        .collect();
    assert_eq!(names, ["canary", "default", "dark"]);
    // A route without a retry policy gets App Mesh's default one.
    assert_eq!(
        color["routes"][0]["route"]["retry_policy"]["retry_on"],
        "connect-failure,refused-stream,unavailable,retriable-status-codes"
    );
    // Clusters have App Mesh's circuit breaker defaults; DNS clusters the lookup
    // family of the IP preference; outlier detection without success-rate ejection.
    let blue = front
        .clusters
        .iter()
        .find(|c| c["name"] == "cds_egress_colorapp_blue_http2_9080")
        .unwrap();
    assert_eq!(
        blue["circuit_breakers"]["thresholds"][0]["max_requests"],
        2_147_483_647u32
    );
    assert_eq!(blue["dns_lookup_family"], "AUTO");
    assert_eq!(blue["outlier_detection"]["enforcing_success_rate"], 0);
    assert_eq!(
        blue["outlier_detection"]["enforcing_consecutive_gateway_failure"],
        100
    );
    assert_eq!(
        color["domains"],
        json!(["color.colorapp.local", "color.colorapp.local:9080"])
    );
    // The node's access log, in its JSON format, on every listener (inbound and out).
    for l in &front.listeners {
        let log = &l["filter_chains"][0]["filters"][0]["typed_config"]["access_log"][0];
        assert_eq!(
            log["typed_config"]["log_format"]["json_format"]["status"], "%RESPONSE_CODE%",
            "{}",
            l["name"]
        );
    }
    // The extensions: the egress manager has the filters its routes use, before its
    // router; the retry budget is on the targets' clusters.
    let filters: Vec<&str> = egress["filter_chains"][0]["filters"][0]["typed_config"]
        ["http_filters"]
        .as_array()
        .unwrap()
        .iter()
        .map(|f| f["name"].as_str().unwrap())
        .collect();
    assert_eq!(
        filters,
        [
            "envoy.filters.http.cors",
            "envoy.filters.http.fault",
            "envoy.filters.http.local_ratelimit",
            "envoy.filters.http.router"
        ]
    );
    let blue = front
        .clusters
        .iter()
        .find(|c| c["name"] == "cds_egress_colorapp_blue_http2_9080")
        .unwrap();
    assert_eq!(
        blue["circuit_breakers"]["thresholds"][0]["retry_budget"]["min_retry_concurrency"],
        2
    );
    assert_eq!(blue["lb_policy"], "RING_HASH");
    // red's instances of its version, with their health, by EDS.
    let red = &front.endpoints[0];
    assert_eq!(red["cluster_name"], "colorapp/red/9080");
    let addresses: Vec<(&str, &str)> = red["endpoints"][0]["lb_endpoints"]
        .as_array()
        .unwrap()
        .iter()
        .map(|e| {
            (
                e["endpoint"]["address"]["socket_address"]["address"]
                    .as_str()
                    .unwrap(),
                e["health_status"].as_str().unwrap(),
            )
        })
        .collect();
    assert_eq!(
        addresses,
        [("127.0.0.11", "HEALTHY"), ("127.0.0.13", "DRAINING")]
    );
    // ferry's proxies get what ferry has, and notes.
    let no_cors = Options {
        proxy: Proxy::Ferry,
        ..Options::default()
    };
    let front = virtual_node(&view, "front", &no_cors).unwrap();
    decodes(&front);
    assert!(front
        .notes
        .iter()
        .any(|n| n.contains("route canary: cors left out")));
}

#[test]
fn a_node_without_backends_has_an_empty_egress_and_dns_resolvers_are_given() {
    let view = view();
    let options = Options {
        dns_resolvers: vec!["127.0.0.53:5353".parse().unwrap()],
        ..Options::default()
    };
    let blue = virtual_node(&view, "blue", &options).unwrap();
    decodes(&blue);
    let names: Vec<&str> = blue
        .listeners
        .iter()
        .map(|l| l["name"].as_str().unwrap())
        .collect();
    assert_eq!(names, ["lds_egress", "lds_ingress_9080"]);
    let front = virtual_node(&view, "front", &options).unwrap();
    let dns = front
        .clusters
        .iter()
        .find(|c| c["name"] == "cds_egress_colorapp_blue_http2_9080")
        .unwrap();
    assert_eq!(
        dns["typed_dns_resolver_config"]["typed_config"]["resolvers"][0]["socket_address"]
            ["port_value"],
        5353
    );
    assert_eq!(
        virtual_node(&view, "nope", &options).unwrap_err(),
        "virtualNode nope does not exist in mesh colorapp"
    );
}

#[test]
fn a_virtual_gateway_applies_its_routes_then_routes_as_a_sidecar() {
    let view = view();
    let gateway = virtual_gateway(&view, "ingress", &Options::default()).unwrap();
    decodes(&gateway);
    golden("colorapp-ingress", &gateway.to_json());
    let ingress = gateway
        .listeners
        .iter()
        .find(|l| l["name"] == "lds_ingress_8088")
        .unwrap();
    assert_eq!(ingress["address"]["socket_address"]["port_value"], 8088);
    let routes = &ingress["filter_chains"][0]["filters"][0]["typed_config"]["route_config"]
        ["virtual_hosts"][0]["routes"];
    let names: Vec<&str> = routes
        .as_array()
        .unwrap()
        .iter()
        .map(|r| r["name"].as_str().unwrap())
        .collect();
    // By priority, then the more specific (an exact path, then the longer prefix).
    assert_eq!(names, ["to-color", "to-red", "to-color-v2"]);
    let to_color = &routes[0]["route"];
    assert_eq!(to_color["host_rewrite_literal"], "color.colorapp.local");
    assert_eq!(to_color["prefix_rewrite"], "/");
    assert_eq!(
        to_color["cluster"],
        "cds_ingress_colorapp_ingress_self_redirect_http_15001"
    );
    let to_red = &routes[1]["route"];
    assert!(to_red.get("host_rewrite_literal").is_none());
    assert_eq!(to_red["regex_rewrite"]["substitution"], "/color");
    assert_eq!(
        routes[2]["route"]["host_rewrite_literal"],
        "color.colorapp.local:9080"
    );
    assert_eq!(routes[2]["route"]["prefix_rewrite"], "/color/");
    // The gateway's access log, on its listeners.
    let log = &ingress["filter_chains"][0]["filters"][0]["typed_config"]["access_log"][0];
    assert_eq!(log["typed_config"]["path"], "/dev/stdout");
    // The egress side is a sidecar's: the targets' virtual hosts and clusters.
    assert!(gateway.listeners.iter().any(|l| l["name"] == "lds_egress"));
    assert!(gateway
        .clusters
        .iter()
        .any(|c| c["name"] == "cds_egress_colorapp_blue_http2_9080"));
}
