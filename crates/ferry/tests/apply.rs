//! `ferry apply`, `delete`, `get`, `describe`, `export` and `status` against
//! `ferry control-plane`, on the corpus of `tests/fixtures/appmesh/` (the App Mesh
//! walkthroughs in the four formats `ferry apply` reads: AWS CLI input JSON,
//! CloudFormation, App Mesh controller manifests, ferrymesh's own YAML).

use ferry_test_util::control_plane::{aws, ControlPlane};
use serde_json::Value;
use std::process::Output;

const FIXTURES: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/tests/fixtures/appmesh");

fn fixture(dir: &str) -> String {
    format!("{FIXTURES}/{dir}")
}

fn stdout(out: &Output) -> String {
    assert!(
        out.status.success(),
        "{}\n{}",
        out.status,
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).into_owned()
}

/// What the control plane holds: `Kind mesh/parent/name tags`, in apply order.
async fn held(cp: &ControlPlane) -> Vec<String> {
    let export = cp.get_json("/ferry/v1/export").await;
    export["resources"]
        .as_array()
        .into_iter()
        .flatten()
        .map(|m| {
            let md = &m["metadata"];
            let path: Vec<&str> = [
                &md["mesh"],
                &md["virtualRouter"],
                &md["virtualGateway"],
                &md["name"],
            ]
            .iter()
            .filter_map(|v| v.as_str())
            .collect();
            let tags: Vec<String> = md["tags"]
                .as_array()
                .into_iter()
                .flatten()
                .map(|t| {
                    format!(
                        "{}={}",
                        t["key"].as_str().unwrap_or(""),
                        t["value"].as_str().unwrap_or("")
                    )
                })
                .collect();
            format!(
                "{} {} {}",
                m["kind"].as_str().unwrap_or(""),
                path.join("/"),
                tags.join(",")
            )
            .trim_end()
            .to_string()
        })
        .collect()
}

fn sorted(mut v: Vec<String>) -> Vec<String> {
    v.sort();
    v
}

/// The resources each directory of the corpus gives (its README's tables).
fn expected(dir: &str) -> Vec<String> {
    let rows: &[&str] = match dir {
        "cli" => &[
            "Mesh colorapp project=colorapp,walkthrough=mtls-file-provided",
            "VirtualNode colorapp/colorteller-blue color=blue",
            "VirtualNode colorapp/colorteller-red",
            "VirtualRouter colorapp/colorteller-vr",
            "Route colorapp/colorteller-vr/colorteller-route",
            "VirtualService colorapp/colorteller.colorapp.local",
            "VirtualGateway colorapp/ingress-gw",
            "GatewayRoute colorapp/ingress-gw/colorteller-gr exposure=public",
        ],
        "cloudformation" => &[
            "Mesh colorapp-cfn project=colorapp-cfn",
            "VirtualRouter colorapp-cfn/color-router",
            "VirtualService colorapp-cfn/color.colorapp.local",
            "VirtualNode colorapp-cfn/front-node",
            "VirtualNode colorapp-cfn/blue-node color=blue",
            "VirtualNode colorapp-cfn/red-node",
            "Route colorapp-cfn/color-router/color-route",
            "Route colorapp-cfn/color-router/color-route-canary",
            "Mesh colorapp-ingress",
            "VirtualNode colorapp-ingress/colorteller-white",
            "VirtualService colorapp-ingress/colorteller.ingress.local team=color",
            "VirtualGateway colorapp-ingress/ingress-gw",
            "GatewayRoute colorapp-ingress/ingress-gw/color-gr",
            "GatewayRoute colorapp-ingress/ingress-gw/ping-gr",
        ],
        "k8s" => &[
            "Mesh colorapp-k8s",
            "VirtualNode colorapp-k8s/front_howto-k8s",
            "VirtualNode colorapp-k8s/blue_howto-k8s",
            "VirtualNode colorapp-k8s/red-node",
            "VirtualService colorapp-k8s/color.howto-k8s.svc.cluster.local",
            "VirtualService colorapp-k8s/front.howto-k8s",
            "VirtualRouter colorapp-k8s/color_howto-k8s",
            "Route colorapp-k8s/color_howto-k8s/color-route-canary",
            "Route colorapp-k8s/color_howto-k8s/color-route",
            "VirtualGateway colorapp-k8s/ingress-gw_howto-k8s",
            "GatewayRoute colorapp-k8s/ingress-gw_howto-k8s/gateway-route-front_howto-k8s",
        ],
        "ferrymesh" => &[
            "Mesh colorapp-ferry project=colorapp",
            "VirtualNode colorapp-ferry/colorgateway",
            "VirtualNode colorapp-ferry/colorteller-white",
            "VirtualNode colorapp-ferry/colorteller-black color=black",
            "VirtualNode colorapp-ferry/color-grpc",
            "VirtualRouter colorapp-ferry/colorteller-vr",
            "Route colorapp-ferry/colorteller-vr/colorteller-route",
            "Route colorapp-ferry/colorteller-vr/colorteller-black-route",
            "VirtualService colorapp-ferry/colorteller.colorapp-ferry.local",
            "VirtualRouter colorapp-ferry/color-grpc-vr",
            "Route colorapp-ferry/color-grpc-vr/color-grpc-route",
            "VirtualService colorapp-ferry/color-grpc.colorapp-ferry.local",
            "VirtualGateway colorapp-ferry/grpc-gw",
            "GatewayRoute colorapp-ferry/grpc-gw/color-grpc-gr",
        ],
        _ => &[],
    };
    sorted(rows.iter().map(|r| r.to_string()).collect())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_format_of_the_corpus_applies_idempotently_and_deletes() {
    for dir in ["cli", "cloudformation", "k8s", "ferrymesh"] {
        let data = tempfile::tempdir().unwrap_or_else(|e| panic!("{e}"));
        let cp = ControlPlane::start(data.path()).await;
        let out = stdout(&cp.ferry(&["apply", "-f", &fixture(dir)]));
        let want = expected(dir);
        assert_eq!(
            out.lines().filter(|l| l.starts_with("created")).count(),
            want.len(),
            "{dir}:\n{out}"
        );
        assert_eq!(sorted(held(&cp).await), want, "{dir}");
        // Again: nothing changes.
        let again = stdout(&cp.ferry(&["apply", "-f", &fixture(dir)]));
        assert!(
            again.lines().all(|l| l.starts_with("unchanged")),
            "{dir}:\n{again}"
        );
        // Deleted as applied, in the reverse order; then nothing is left.
        let deleted = stdout(&cp.ferry(&["delete", "-f", &fixture(dir)]));
        assert!(
            deleted.lines().all(|l| l.starts_with("deleted")),
            "{dir}:\n{deleted}"
        );
        assert!(held(&cp).await.is_empty(), "{dir}");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn what_the_corpus_says_is_what_is_stored() {
    let data = tempfile::tempdir().unwrap_or_else(|e| panic!("{e}"));
    let cp = ControlPlane::start(data.path()).await;
    // The whole corpus at once: 47 resources in five meshes, one transaction.
    let out = cp.ferry(&["apply", "-f", FIXTURES]);
    stdout(&out);
    assert!(String::from_utf8_lossy(&out.stderr).contains("README.md: skipped"));
    assert_eq!(held(&cp).await.len(), 47);
    let describe = |args: &[&str]| -> Value {
        serde_json::from_str(&stdout(&cp.ferry(args))).unwrap_or_else(|e| panic!("{e}"))
    };
    // CloudFormation: acronyms, Number parameters, Fn::Sub with variables, Fn::Join.
    let blue = describe(&["describe", "vn", "blue-node", "--mesh", "colorapp-cfn"]);
    let listener = &blue["spec"]["listeners"][0];
    assert!(listener["connectionPool"]["http"].is_object(), "{blue}");
    assert!(
        listener["tls"]["certificate"]["acm"]["certificateArn"].is_string(),
        "{blue}"
    );
    let route = describe(&[
        "describe",
        "route",
        "color-route",
        "--mesh",
        "colorapp-cfn",
        "--virtual-router",
        "color-router",
    ]);
    assert_eq!(route["spec"]["httpRoute"]["retryPolicy"]["maxRetries"], 4);
    let red = describe(&[
        "describe",
        "virtualnode",
        "red-node",
        "--mesh",
        "colorapp-cfn",
    ]);
    assert_eq!(
        red["spec"]["serviceDiscovery"]["dns"]["hostname"],
        "red.colorapp.local"
    );
    let white = describe(&[
        "describe",
        "vn",
        "colorteller-white",
        "--mesh",
        "colorapp-ingress",
    ]);
    assert_eq!(white["spec"]["listeners"][0]["portMapping"]["port"], 9080);
    let gr = describe(&[
        "describe",
        "gr",
        "color-gr",
        "--mesh",
        "colorapp-ingress",
        "--virtual-gateway",
        "ingress-gw",
    ]);
    assert_eq!(
        gr["spec"]["httpRoute"]["match"]["hostname"]["suffix"],
        ".ingress.local"
    );
    // Kubernetes: references become App Mesh names; the CRDs' spellings the API's.
    let front = describe(&[
        "describe",
        "vn",
        "front_howto-k8s",
        "--mesh",
        "colorapp-k8s",
    ]);
    assert_eq!(
        front["spec"]["backends"][0]["virtualService"]["virtualServiceName"],
        "color.howto-k8s.svc.cluster.local"
    );
    let mesh = describe(&["describe", "mesh", "colorapp-k8s"]);
    assert_eq!(
        mesh["spec"]["serviceDiscovery"]["ipPreference"],
        "IPv4_ONLY"
    );
    let canary = describe(&[
        "describe",
        "route",
        "color-route-canary",
        "--mesh",
        "colorapp-k8s",
        "--virtual-router",
        "color_howto-k8s",
    ]);
    assert_eq!(
        canary["spec"]["httpRoute"]["action"]["weightedTargets"][0]["virtualNode"],
        "red-node"
    );
    // ferry get: a table, and manifests.
    let table = stdout(&cp.ferry(&["get", "routes", "--mesh", "colorapp-ferry"]));
    assert_eq!(table.lines().count(), 4, "{table}");
    let yaml = stdout(&cp.ferry(&["get", "mesh", "colorapp-ferry", "-o", "yaml"]));
    assert!(
        yaml.contains("kind: Mesh") && yaml.contains("project"),
        "{yaml}"
    );
    // ferry status counts them.
    let status: Value = serde_json::from_str(&stdout(&cp.ferry(&["status"]))).unwrap_or_default();
    let all: Vec<String> = ["cli", "cloudformation", "k8s", "ferrymesh"]
        .iter()
        .flat_map(|d| expected(d))
        .collect();
    let count = |kind: &str| {
        all.iter()
            .filter(|r| r.starts_with(&format!("{kind} ")))
            .count()
    };
    assert_eq!(status["resources"]["meshes"], count("Mesh"));
    assert_eq!(status["resources"]["virtualNodes"], count("VirtualNode"));
    assert_eq!(status["resources"]["routes"], count("Route"));
    assert!(status["store"]
        .as_str()
        .unwrap_or("")
        .starts_with("embedded "));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_corpus_applies_as_one_etcd_transaction() {
    let etcd = ferry_test_util::etcd::Etcd::start();
    let url = etcd.url();
    let cp = ControlPlane::start_with(&["--store", "etcd", "--etcd-endpoints", &url]).await;
    stdout(&cp.ferry(&["apply", "-f", FIXTURES]));
    let all: Vec<String> = ["cli", "cloudformation", "k8s", "ferrymesh"]
        .iter()
        .flat_map(|d| expected(d))
        .collect();
    assert_eq!(sorted(held(&cp).await), sorted(all));
    let again = stdout(&cp.ferry(&["apply", "-f", FIXTURES]));
    assert!(again.lines().all(|l| l.starts_with("unchanged")), "{again}");
    stdout(&cp.ferry(&["delete", "-f", FIXTURES]));
    assert!(held(&cp).await.is_empty());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn what_goes_in_comes_out_in_every_format() {
    let data = tempfile::tempdir().unwrap_or_else(|e| panic!("{e}"));
    let cp = ControlPlane::start(data.path()).await;
    stdout(&cp.ferry(&["apply", "-f", FIXTURES]));
    let before = cp.get_json("/ferry/v1/export").await;
    let files = tempfile::tempdir().unwrap_or_else(|e| panic!("{e}"));
    for (format, file) in [
        ("ferrymesh", "all.yaml"),
        ("appmesh-cli", "all.json"),
        ("cloudformation", "template.yaml"),
    ] {
        let text = stdout(&cp.ferry(&["export", "--format", format]));
        let path = files.path().join(file);
        std::fs::write(&path, text).unwrap_or_else(|e| panic!("{e}"));
        let path = path.to_string_lossy().into_owned();
        // Deleted with the export, applied again from it: the same resources.
        stdout(&cp.ferry(&["delete", "-f", &path]));
        assert!(held(&cp).await.is_empty(), "{format}");
        stdout(&cp.ferry(&["apply", "-f", &path]));
        let after = cp.get_json("/ferry/v1/export").await;
        assert_eq!(after, before, "{format}");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_apply_with_any_error_writes_nothing_and_names_the_file_resource_and_field() {
    let data = tempfile::tempdir().unwrap_or_else(|e| panic!("{e}"));
    let cp = ControlPlane::start(data.path()).await;
    let files = tempfile::tempdir().unwrap_or_else(|e| panic!("{e}"));
    let good = files.path().join("a-good.yaml");
    std::fs::write(
        &good,
        "kind: Mesh\nmetadata: {name: m}\n---\nkind: VirtualNode\nmetadata: {mesh: m, name: n}\nspec: {listeners: [{portMapping: {port: 80, protocol: http}}]}\n",
    )
    .unwrap_or_else(|e| panic!("{e}"));
    let cases = [
        (
            "kind: VirtualService\nmetadata: {mesh: m, name: s}\nspec: {provider: {virtualNode: {virtualNodeName: nope}}}\n",
            "z-bad.yaml: VirtualService m/s: spec.provider.virtualNode.virtualNodeName: virtualNode nope does not exist",
        ),
        (
            "kind: VirtualNode\nmetadata: {mesh: m, name: x}\nspec: {listeners: [{portMapping: {port: 0, protocol: http}}]}\n",
            "z-bad.yaml: VirtualNode m/x: spec.listeners[0].portMapping.port: must be 1 to 65535, not 0",
        ),
        (
            r#"{"meshName": "m", "virtualRouterName": "r", "spec": {"listeners": []}, "color": 1}"#,
            "z-bad.yaml: color: unknown member of a VirtualRouter input",
        ),
        ("kind: Mesh\nmetadata: {name: [x]\n", "z-bad.yaml: YAML"),
    ];
    for (text, message) in cases {
        let bad = files.path().join("z-bad.yaml");
        std::fs::write(&bad, text).unwrap_or_else(|e| panic!("{e}"));
        let out = cp.ferry(&["apply", "-f", &files.path().to_string_lossy()]);
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert!(!out.status.success());
        assert!(stderr.contains(message), "want {message:?} in:\n{stderr}");
        assert!(
            held(&cp).await.is_empty(),
            "{message}: something was written"
        );
    }
    // Dry run: checked, not written.
    let dry = stdout(&cp.ferry(&["apply", "--dry-run", "-f", &good.to_string_lossy()]));
    assert!(dry.contains("created") && dry.contains("dry run"), "{dry}");
    assert!(held(&cp).await.is_empty());
    // The AWS CLI takes the corpus's CLI files as they are.
    let mesh = format!("file://{FIXTURES}/cli/mesh.json");
    let created = aws(&cp.endpoint, &["create-mesh", "--cli-input-json", &mesh]);
    assert_eq!(created["mesh"]["meshName"], "colorapp");
    let node = format!("file://{FIXTURES}/cli/colorteller-blue-vn.json");
    let created = aws(
        &cp.endpoint,
        &["create-virtual-node", "--cli-input-json", &node],
    );
    assert_eq!(
        created["virtualNode"]["virtualNodeName"],
        "colorteller-blue"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn instances_are_registered_listed_and_deregistered_and_hold_their_node() {
    let data = tempfile::tempdir().unwrap_or_else(|e| panic!("{e}"));
    let cp = ControlPlane::start(data.path()).await;
    let files = tempfile::tempdir().unwrap_or_else(|e| panic!("{e}"));
    let mesh = files.path().join("mesh.yaml");
    std::fs::write(
        &mesh,
        "kind: Mesh\nmetadata: {name: m}\n---\nkind: VirtualNode\nmetadata: {mesh: m, name: red}\nspec:\n  listeners: [{portMapping: {port: 9080, protocol: http}}]\n  serviceDiscovery: {awsCloudMap: {namespaceName: m.local, serviceName: red}}\n",
    )
    .unwrap_or_else(|e| panic!("{e}"));
    let mesh = mesh.to_string_lossy().into_owned();
    stdout(&cp.ferry(&["apply", "-f", &mesh]));
    let node = ["--mesh", "m", "--virtual-node", "red"];
    let register = |extra: &[&str]| cp.ferry(&[&["register"][..], &node[..], extra].concat());
    let out = stdout(&register(&[
        "--id",
        "r1",
        "--address",
        "127.0.0.11",
        "--port",
        "9080",
        "--attribute",
        "version=v2",
    ]));
    assert_eq!(out.trim(), "registered r1");
    stdout(&register(&[
        "--id",
        "r2",
        "--address",
        "::1",
        "--port",
        "9081",
        "--health",
        "draining",
    ]));
    let bad = register(&["--id", "r3", "--address", "red.local", "--port", "9080"]);
    assert!(String::from_utf8_lossy(&bad.stderr).contains("address: an IPv4 or IPv6 address"));
    let missing = cp.ferry(&[
        "register",
        "--mesh",
        "m",
        "--virtual-node",
        "blue",
        "--id",
        "b1",
        "--address",
        "127.0.0.1",
        "--port",
        "1",
    ]);
    assert!(String::from_utf8_lossy(&missing.stderr).contains("NotFoundException"));
    let listed = stdout(&cp.ferry(&[&["instances"][..], &node[..]].concat()));
    assert!(
        listed.contains("r1")
            && listed.contains("127.0.0.11:9080")
            && listed.contains("version=v2"),
        "{listed}"
    );
    assert!(
        listed.contains("r2") && listed.contains("DRAINING"),
        "{listed}"
    );
    // A node with instances is in use.
    let refused = cp.ferry(&["delete", "-f", &mesh]);
    assert!(String::from_utf8_lossy(&refused.stderr).contains("registered instances"));
    assert_eq!(held(&cp).await.len(), 2, "nothing deleted");
    for id in ["r1", "r2"] {
        stdout(&cp.ferry(&[&["deregister"][..], &node[..], &["--id", id][..]].concat()));
    }
    let again = cp.ferry(&[&["deregister"][..], &node[..], &["--id", "r1"][..]].concat());
    assert!(String::from_utf8_lossy(&again.stderr).contains("NotFoundException"));
    stdout(&cp.ferry(&["delete", "-f", &mesh]));
    assert!(held(&cp).await.is_empty());
}
