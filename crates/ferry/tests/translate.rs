//! The translator's output (`ferry_mesh::translate`) as a proxy's static configuration:
//! ferry and real Envoy 1.40 both take it (`ferry validate`, `envoy --mode validate`)
//! for every virtual node and virtual gateway of a colorapp-style mesh.

use ferry_mesh::import::import_text;
use ferry_mesh::translate::{virtual_gateway, virtual_node, MeshView, Options, Proxy, Resources};
use serde_json::json;
use std::process::{Command, Stdio};

const MESH: &str = include_str!("../../mesh/tests/golden/colorapp.yaml");

/// The bootstrap of proxy `id` with `resources` as static ones, and an ADS source for
/// its EDS clusters.
fn bootstrap(id: &str, resources: Resources) -> serde_json::Value {
    let mut clusters = resources.clusters;
    clusters.push(json!({
        "name": "xds",
        "type": "STATIC",
        "connect_timeout": "1s",
        "typed_extension_protocol_options": {
            "envoy.extensions.upstreams.http.v3.HttpProtocolOptions": {
                "@type": "type.googleapis.com/envoy.extensions.upstreams.http.v3.HttpProtocolOptions",
                "explicit_http_config": {"http2_protocol_options": {}}
            }
        },
        "load_assignment": {"cluster_name": "xds", "endpoints": [{"lb_endpoints": [{"endpoint": {
            "address": {"socket_address": {"address": "127.0.0.1", "port_value": 15010}}}}]}]}
    }));
    json!({
        "node": {"id": id, "cluster": id},
        "admin": {"address": {"socket_address": {"address": "127.0.0.1", "port_value": 0}}},
        "dynamic_resources": {"ads_config": {
            "api_type": "GRPC",
            "transport_api_version": "V3",
            "grpc_services": [{"envoy_grpc": {"cluster_name": "xds"}}]
        }},
        "static_resources": {"listeners": resources.listeners, "clusters": clusters},
    })
}

/// Every proxy of the mesh (its App Mesh node id) and its configuration for `options`.
fn proxies(view: &MeshView, options: &Options) -> Vec<(String, Resources)> {
    let nodes = view.nodes.keys().map(|n| {
        let r = virtual_node(view, n, options).unwrap_or_else(|e| panic!("{n}: {e}"));
        (format!("mesh/{}/virtualNode/{n}", view.name), r)
    });
    let gateways = view.gateways.keys().map(|g| {
        let r = virtual_gateway(view, g, options).unwrap_or_else(|e| panic!("{g}: {e}"));
        (format!("mesh/{}/virtualGateway/{g}", view.name), r)
    });
    nodes.chain(gateways).collect()
}

/// Runs `command` on `path`: whether it took the bootstrap, and what it said.
fn takes(mut command: Command, path: &std::path::Path) -> (bool, String) {
    let out = command
        .arg(path)
        .stdin(Stdio::null())
        .output()
        .unwrap_or_else(|e| panic!("{command:?}: {e}"));
    let said =
        String::from_utf8_lossy(&out.stdout).into_owned() + &String::from_utf8_lossy(&out.stderr);
    (out.status.success(), said)
}

#[test]
fn every_proxys_translation_runs_on_ferry_and_on_envoy() {
    let manifests = import_text(MESH, "colorapp.yaml")
        .unwrap_or_else(|e| panic!("{e}"))
        .resources;
    let view = MeshView::from_manifests("colorapp", &manifests).unwrap_or_else(|e| panic!("{e}"));
    assert!(!view.gateways.is_empty(), "the mesh has a gateway");
    let dir = tempfile::tempdir().unwrap_or_else(|e| panic!("{e}"));
    // What ferry does not have yet is left out of its proxies' configuration.
    let for_ferry = Options {
        proxy: Proxy::Ferry,
        ..Options::default()
    };
    for (id, resources) in proxies(&view, &for_ferry) {
        let path = dir.path().join("ferry.json");
        let text = serde_json::to_string_pretty(&bootstrap(&id, resources)).unwrap_or_default();
        std::fs::write(&path, &text).unwrap_or_else(|e| panic!("{e}"));
        let mut ferry = Command::new(env!("CARGO_BIN_EXE_ferry"));
        ferry.arg("validate");
        let (ok, said) = takes(ferry, &path);
        assert!(ok, "ferry validate {id}: {said}\n{text}");
    }
    if !ferry_test_util::require_envoy() {
        return;
    }
    for (id, resources) in proxies(&view, &Options::default()) {
        let path = dir.path().join("envoy.json");
        let text = serde_json::to_string_pretty(&bootstrap(&id, resources)).unwrap_or_default();
        std::fs::write(&path, &text).unwrap_or_else(|e| panic!("{e}"));
        let mut envoy = Command::new(ferry_test_util::proc::envoy_bin());
        envoy.args([
            "--disable-hot-restart",
            "-l",
            "error",
            "--mode",
            "validate",
            "-c",
        ]);
        let (ok, said) = takes(envoy, &path);
        assert!(ok, "envoy --mode validate {id}: {said}\n{text}");
    }
}
