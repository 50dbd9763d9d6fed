//! The translator's output (`ferry_mesh::translate`) as a proxy's static configuration:
//! ferry and real Envoy 1.40 both take it (`ferry validate`, `envoy --mode validate`)
//! for every virtual node of a colorapp-style mesh.

use ferry_mesh::import::import_text;
use ferry_mesh::translate::{virtual_node, MeshView, Options, Proxy};
use serde_json::json;
use std::process::{Command, Stdio};

const MESH: &str = include_str!("../../mesh/tests/golden/colorapp.yaml");

/// The bootstrap of `node`'s proxy with its translated resources as static ones, and
/// an ADS source for its EDS clusters.
fn bootstrap(view: &MeshView, node: &str, options: &Options) -> serde_json::Value {
    let resources = virtual_node(view, node, options).unwrap_or_else(|e| panic!("{node}: {e}"));
    let mut clusters = resources.clusters.clone();
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
        "node": {"id": format!("mesh/{}/virtualNode/{node}", view.name), "cluster": node},
        "admin": {"address": {"socket_address": {"address": "127.0.0.1", "port_value": 0}}},
        "dynamic_resources": {"ads_config": {
            "api_type": "GRPC",
            "transport_api_version": "V3",
            "grpc_services": [{"envoy_grpc": {"cluster_name": "xds"}}]
        }},
        "static_resources": {"listeners": resources.listeners, "clusters": clusters},
    })
}

#[test]
fn every_nodes_translation_runs_on_ferry_and_on_envoy() {
    let manifests = import_text(MESH, "colorapp.yaml")
        .unwrap_or_else(|e| panic!("{e}"))
        .resources;
    let view = MeshView::from_manifests("colorapp", &manifests).unwrap_or_else(|e| panic!("{e}"));
    let dir = tempfile::tempdir().unwrap_or_else(|e| panic!("{e}"));
    let envoy = ferry_test_util::require_envoy();
    // What ferry does not have yet is left out of its proxies' configuration.
    let for_ferry = Options {
        proxy: Proxy::Ferry,
        ..Options::default()
    };
    for node in view.nodes.keys() {
        let path = dir.path().join(format!("{node}.json"));
        let text =
            serde_json::to_string_pretty(&bootstrap(&view, node, &for_ferry)).unwrap_or_default();
        std::fs::write(&path, &text).unwrap_or_else(|e| panic!("{e}"));
        let ferry = Command::new(env!("CARGO_BIN_EXE_ferry"))
            .arg("validate")
            .arg(&path)
            .stdin(Stdio::null())
            .output()
            .unwrap_or_else(|e| panic!("ferry: {e}"));
        assert!(
            ferry.status.success(),
            "ferry validate {node}: {}\n{text}",
            String::from_utf8_lossy(&ferry.stdout)
        );
        if envoy {
            let text = serde_json::to_string_pretty(&bootstrap(&view, node, &Options::default()))
                .unwrap_or_default();
            std::fs::write(&path, &text).unwrap_or_else(|e| panic!("{e}"));
            let out = Command::new(ferry_test_util::proc::envoy_bin())
                .args(["--mode", "validate", "-c"])
                .arg(&path)
                .args(["--disable-hot-restart", "-l", "error"])
                .stdin(Stdio::null())
                .output()
                .unwrap_or_else(|e| panic!("envoy: {e}"));
            assert!(
                out.status.success(),
                "envoy --mode validate {node}: {}{}\n{text}",
                String::from_utf8_lossy(&out.stdout),
                String::from_utf8_lossy(&out.stderr)
            );
        }
    }
}
