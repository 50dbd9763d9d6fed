//! `ferry control-plane`: App Mesh's REST API, driven by the real clients — boto3
//! (`tests/py/appmesh_client.py`, which also checks every response against botocore's
//! model of the service) and the AWS CLI — on the embedded store and on a real etcd
//! (two replicas sharing it), what it stored still there after the process is killed
//! (in the middle of a stream of writes too), and with credentials configured, SigV4
//! signatures verified.

use ferry_test_util::admin::poll;
use ferry_test_util::control_plane::{appmesh_client, aws, boto3, boto3_with, ControlPlane};
use ferry_test_util::etcd::Etcd;
use std::time::Duration;

/// What the `meshes` scenario prints.
const MESHES: &[&str] = &[
    r#"{"arn":"arn:aws:appmesh:local:000000000000:mesh/m1","egress":"ALLOW_ALL","name":"m1","status":"ACTIVE","step":"create","version":1}"#,
    r#"{"error":["ConflictException",409],"step":"create again"}"#,
    r#"{"same":true,"step":"client token"}"#,
    r#"{"egress":"ALLOW_ALL","name":"m1","step":"describe"}"#,
    r#"{"egress":"DROP_ALL","step":"update","version":2}"#,
    r#"{"step":"update token","versions":[3,3]}"#,
    r#"{"error":["BadRequestException",400],"step":"bad token"}"#,
    r#"{"error":["NotFoundException",404],"step":"other owner"}"#,
    r#"{"name":"m1","step":"own owner"}"#,
    r#"{"error":["BadRequestException",400],"step":"duplicate tag keys"}"#,
    r#"{"names":["m1","m2","m3","m4","m5","t1"],"pages":3,"step":"list"}"#,
    r#"{"error":["NotFoundException",404],"step":"describe missing"}"#,
    r#"{"error":["BadRequestException",400],"step":"unknown field"}"#,
    r#"{"error":["BadRequestException",400],"step":"malformed json"}"#,
    r#"{"error":["BadRequestException",400],"step":"bad enum"}"#,
    r#"{"error":["BadRequestException",400],"step":"empty name"}"#,
    r#"{"error":["BadRequestException",400],"step":"bad limit"}"#,
    r#"{"status":"DELETED","step":"delete"}"#,
    r#"{"error":["NotFoundException",404],"step":"describe deleted"}"#,
    r#"{"operations":["CreateMesh","DeleteMesh","DescribeMesh","ListMeshes","UpdateMesh"],"step":"validated against botocore's model"}"#,
];

/// What the `resources` scenario prints.
const RESOURCES: &[&str] = &[
    r#"{"arn":"arn:aws:appmesh:local:000000000000:mesh/app/virtualRouter/r","name":"r","step":"router"}"#,
    r#"{"mesh":"app","name":"color.app.local","status":"ACTIVE","step":"service"}"#,
    r#"{"error":["NotFoundException",404],"step":"dangling provider"}"#,
    r#"{"error":["NotFoundException",404],"step":"no such mesh"}"#,
    r#"{"error":["BadRequestException",400],"step":"port 0"}"#,
    r#"{"error":["BadRequestException",400],"step":"bad protocol"}"#,
    r#"{"names":["r","r2"],"step":"list routers"}"#,
    r#"{"names":["color.app.local"],"step":"list services"}"#,
    r#"{"router":"r","step":"describe service"}"#,
    r#"{"error":["ResourceInUseException",409],"step":"delete router in use"}"#,
    r#"{"error":["ResourceInUseException",409],"step":"delete mesh in use"}"#,
    r#"{"step":"tags","tags":[["env","dev"],["team","colors"]]}"#,
    r#"{"error":["TooManyTagsException",400],"step":"too many tags"}"#,
    r#"{"step":"untagged","tags":[["team","colors"]]}"#,
    r#"{"router":"r2","step":"update service","version":2}"#,
    r#"{"status":"DELETED","step":"delete router"}"#,
    r#"{"status":"DELETED","step":"delete mesh"}"#,
    r#"{"operations":["CreateMesh","CreateVirtualRouter","CreateVirtualService","DeleteMesh","DeleteVirtualRouter","DeleteVirtualService","DescribeVirtualService","ListTagsForResource","ListVirtualRouters","ListVirtualServices","TagResource","UntagResource","UpdateVirtualService"],"step":"validated against botocore's model"}"#,
];

/// What the `nodes` scenario prints.
const NODES: &[&str] = &[
    r#"{"name":"red","spec_round_trips":true,"step":"node"}"#,
    r#"{"spec_round_trips":true,"step":"describe node"}"#,
    r#"{"error":["BadRequestException",400],"step":"healthy threshold 1"}"#,
    r#"{"error":["BadRequestException",400],"step":"interval 1s"}"#,
    r#"{"error":["BadRequestException",400],"step":"ejection 101%"}"#,
    r#"{"error":["BadRequestException",400],"step":"two discoveries"}"#,
    r#"{"error":["BadRequestException",400],"step":"tls mode"}"#,
    r#"{"error":["BadRequestException",400],"step":"unknown listener field"}"#,
    r#"{"error":["ResourceInUseException",409],"step":"delete node in use"}"#,
    r#"{"port":9090,"step":"update node","version":2}"#,
    r#"{"names":["red"],"step":"list nodes"}"#,
    r#"{"status":"DELETED","step":"delete node"}"#,
    r#"{"operations":["CreateMesh","CreateVirtualNode","CreateVirtualService","DeleteVirtualNode","DeleteVirtualService","DescribeVirtualNode","ListVirtualNodes","UpdateVirtualNode"],"step":"validated against botocore's model"}"#,
];

/// What the `routes` scenario prints.
const ROUTES: &[&str] = &[
    r#"{"arn":"arn:aws:appmesh:local:000000000000:mesh/app/virtualRouter/r/route/canary","router":"r","spec_round_trips":true,"step":"route"}"#,
    r#"{"error":["NotFoundException",404],"step":"target missing"}"#,
    r#"{"error":["BadRequestException",400],"step":"11 targets"}"#,
    r#"{"error":["BadRequestException",400],"step":"weight 101"}"#,
    r#"{"error":["BadRequestException",400],"step":"priority 1001"}"#,
    r#"{"error":["BadRequestException",400],"step":"retry without events"}"#,
    r#"{"error":["BadRequestException",400],"step":"bad retry event"}"#,
    r#"{"error":["BadRequestException",400],"step":"prefix without /"}"#,
    r#"{"error":["BadRequestException",400],"step":"empty range"}"#,
    r#"{"error":["BadRequestException",400],"step":"two routes"}"#,
    r#"{"error":["NotFoundException",404],"step":"no such router"}"#,
    r#"{"routes":[["canary","r"]],"step":"list routes"}"#,
    r#"{"error":["ResourceInUseException",409],"step":"delete target in use"}"#,
    r#"{"error":["ResourceInUseException",409],"step":"delete router with routes"}"#,
    r#"{"step":"route tags","tags":[["release","canary"]]}"#,
    r#"{"step":"update route","version":2,"weights":[50,50]}"#,
    r#"{"step":"describe route","weights":[50,50]}"#,
    r#"{"status":"DELETED","step":"delete route"}"#,
    r#"{"operations":["CreateMesh","CreateRoute","CreateVirtualNode","CreateVirtualRouter","DeleteRoute","DeleteVirtualRouter","DescribeRoute","ListRoutes","ListTagsForResource","TagResource","UpdateRoute"],"step":"validated against botocore's model"}"#,
];

/// What the `gateways` scenario prints.
const GATEWAYS: &[&str] = &[
    r#"{"name":"ingress","spec_round_trips":true,"step":"gateway"}"#,
    r#"{"error":["BadRequestException",400],"step":"tcp gateway"}"#,
    r#"{"error":["BadRequestException",400],"step":"no listener"}"#,
    r#"{"arn":"arn:aws:appmesh:local:000000000000:mesh/app/virtualGateway/ingress/gatewayRoute/web","gateway":"ingress","spec_round_trips":true,"step":"gateway route"}"#,
    r#"{"error":["NotFoundException",404],"step":"target missing"}"#,
    r#"{"error":["BadRequestException",400],"step":"prefix rewrite value"}"#,
    r#"{"error":["BadRequestException",400],"step":"two hostname matches"}"#,
    r#"{"routes":[["web","ingress"]],"step":"list gateway routes"}"#,
    r#"{"names":["ingress"],"step":"list gateways"}"#,
    r#"{"error":["ResourceInUseException",409],"step":"delete target in use"}"#,
    r#"{"error":["ResourceInUseException",409],"step":"delete gateway with routes"}"#,
    r#"{"priority":5,"step":"describe gateway route"}"#,
    r#"{"priority":7,"step":"update gateway route","version":2}"#,
    r#"{"step":"update gateway","version":2}"#,
    r#"{"status":"DELETED","step":"delete gateway"}"#,
    r#"{"operations":["CreateGatewayRoute","CreateMesh","CreateVirtualGateway","CreateVirtualNode","CreateVirtualService","DeleteGatewayRoute","DeleteVirtualGateway","DescribeGatewayRoute","DescribeVirtualGateway","ListGatewayRoutes","ListVirtualGateways","UpdateGatewayRoute","UpdateVirtualGateway"],"step":"validated against botocore's model"}"#,
];

/// What `scenario` prints against a control plane on a new embedded store.
async fn on_embedded(scenario: &str) -> Vec<String> {
    let dir = tempfile::tempdir().unwrap_or_else(|e| panic!("{e}"));
    let cp = ControlPlane::start(dir.path()).await;
    boto3(&cp.endpoint, scenario)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn boto3_drives_the_mesh_operations() {
    assert_eq!(on_embedded("meshes").await, MESHES);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn boto3_drives_virtual_services_routers_and_tags_with_app_mesh_rules() {
    assert_eq!(on_embedded("resources").await, RESOURCES);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn boto3_drives_virtual_nodes_with_app_mesh_ranges() {
    assert_eq!(on_embedded("nodes").await, NODES);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn boto3_drives_routes_with_app_mesh_rules() {
    assert_eq!(on_embedded("routes").await, ROUTES);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn boto3_drives_virtual_gateways_and_gateway_routes() {
    assert_eq!(on_embedded("gateways").await, GATEWAYS);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_aws_cli_drives_the_api_and_what_it_stored_survives_a_kill() {
    let dir = tempfile::tempdir().unwrap_or_else(|e| panic!("{e}"));
    let cp = ControlPlane::start(dir.path()).await;
    // An AWS CLI input file, as App Mesh users keep them.
    let input = dir.path().join("mesh.json");
    std::fs::write(
        &input,
        r#"{"meshName": "colorapp", "spec": {"egressFilter": {"type": "ALLOW_ALL"}}}"#,
    )
    .unwrap_or_else(|e| panic!("{e}"));
    let created = aws(
        &cp.endpoint,
        &[
            "create-mesh",
            "--cli-input-json",
            &format!("file://{}", input.display()),
        ],
    );
    assert_eq!(created["mesh"]["meshName"], "colorapp");
    assert_eq!(created["mesh"]["status"]["status"], "ACTIVE");
    aws(&cp.endpoint, &["create-mesh", "--mesh-name", "other"]);
    let listed = aws(&cp.endpoint, &["list-meshes"]);
    let names: Vec<&str> = listed["meshes"]
        .as_array()
        .into_iter()
        .flatten()
        .filter_map(|m| m["meshName"].as_str())
        .collect();
    assert_eq!(names, ["colorapp", "other"]);

    // Killed at once, started again on the same data: everything acknowledged is there.
    cp.kill();
    let cp = ControlPlane::start(dir.path()).await;
    let lines = boto3(&cp.endpoint, "list");
    assert_eq!(lines[0], r#"{"names":["colorapp","other"],"step":"list"}"#);
    let described = aws(&cp.endpoint, &["describe-mesh", "--mesh-name", "colorapp"]);
    assert_eq!(
        described["mesh"]["spec"]["egressFilter"]["type"],
        "ALLOW_ALL"
    );
}

/// Starts a control plane on `etcd`, its keys under `prefix`.
async fn on_etcd(etcd: &Etcd, prefix: &str) -> ControlPlane {
    let url = etcd.url();
    let args = [
        "--store",
        "etcd",
        "--etcd-endpoints",
        &url,
        "--etcd-prefix",
        prefix,
    ];
    ControlPlane::start_with(&args).await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_same_boto3_scenarios_pass_on_etcd() {
    let etcd = Etcd::start();
    let scenarios = [
        ("meshes", MESHES),
        ("resources", RESOURCES),
        ("nodes", NODES),
        ("routes", ROUTES),
        ("gateways", GATEWAYS),
    ];
    for (scenario, expected) in scenarios {
        // A prefix of its own: each scenario starts from an empty store.
        let cp = on_etcd(&etcd, &format!("/{scenario}/")).await;
        assert_eq!(
            boto3(&cp.endpoint, scenario),
            expected,
            "{scenario} on etcd"
        );
    }
}

/// The revision a control plane's watch of its store has reached.
async fn watched(cp: &ControlPlane) -> u64 {
    let status = cp.get_json("/ferry/v1/status").await;
    status["watch"]["revision"].as_u64().unwrap_or(0)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_replicas_on_one_etcd_share_the_mesh_and_its_rules() {
    let etcd = Etcd::start();
    let a = on_etcd(&etcd, "/shared/").await;
    let b = on_etcd(&etcd, "/shared/").await;
    aws(&a.endpoint, &["create-mesh", "--mesh-name", "shared"]);
    // B reads what A wrote at once, and its watch reports A's commit.
    let described = aws(&b.endpoint, &["describe-mesh", "--mesh-name", "shared"]);
    assert_eq!(described["mesh"]["status"]["status"], "ACTIVE");
    let written = poll(Duration::from_secs(10), || async {
        Some(watched(&a).await).filter(|r| *r > 0)
    })
    .await
    .unwrap_or_else(|| panic!("A's watch never saw its own write"));
    let seen = poll(Duration::from_secs(10), || async {
        Some(watched(&b).await).filter(|r| *r >= written)
    })
    .await;
    assert_eq!(seen, Some(written), "B's watch did not see A's commit");
    let status = b.get_json("/ferry/v1/status").await;
    assert!(status["store"].as_str().unwrap_or("").starts_with("etcd "));
    assert_eq!(status["resources"]["meshes"], 1);

    // A node, and two replicas racing: B deletes it while A creates a route naming it.
    // Whichever commits first, the other's check runs again on what it wrote: never a
    // route to a deleted node.
    let node = r#"{"listeners":[{"portMapping":{"port":80,"protocol":"http"}}],"serviceDiscovery":{"dns":{"hostname":"n.local"}}}"#;
    aws(
        &a.endpoint,
        &[
            "create-virtual-node",
            "--mesh-name",
            "shared",
            "--virtual-node-name",
            "n",
            "--spec",
            node,
        ],
    );
    aws(
        &a.endpoint,
        &[
            "create-virtual-router",
            "--mesh-name",
            "shared",
            "--virtual-router-name",
            "r",
            "--spec",
            r#"{"listeners":[{"portMapping":{"port":80,"protocol":"http"}}]}"#,
        ],
    );
    let route = r#"{"httpRoute":{"match":{"prefix":"/"},"action":{"weightedTargets":[{"virtualNode":"n","weight":1}]}}}"#;
    let (a_end, b_end) = (a.endpoint.clone(), b.endpoint.clone());
    let create = std::thread::spawn(move || {
        aws_result(
            &a_end,
            &[
                "create-route",
                "--mesh-name",
                "shared",
                "--virtual-router-name",
                "r",
                "--route-name",
                "to-n",
                "--spec",
                route,
            ],
        )
    });
    let delete = std::thread::spawn(move || {
        aws_result(
            &b_end,
            &[
                "delete-virtual-node",
                "--mesh-name",
                "shared",
                "--virtual-node-name",
                "n",
            ],
        )
    });
    let (created, deleted) = (
        create.join().unwrap_or(false),
        delete.join().unwrap_or(false),
    );
    assert!(
        created != deleted,
        "exactly one of the two wins (created {created}, deleted {deleted})"
    );
    let routes = aws(
        &b.endpoint,
        &[
            "list-routes",
            "--mesh-name",
            "shared",
            "--virtual-router-name",
            "r",
        ],
    );
    let nodes = aws(
        &a.endpoint,
        &["list-virtual-nodes", "--mesh-name", "shared"],
    );
    assert_eq!(
        routes["routes"].as_array().map(Vec::len),
        Some(usize::from(created))
    );
    assert_eq!(
        nodes["virtualNodes"].as_array().map(Vec::len),
        Some(usize::from(!deleted))
    );

    // One replica killed, the other serves on; the killed one comes back with it all.
    a.kill();
    aws(
        &b.endpoint,
        &["create-mesh", "--mesh-name", "while-a-was-down"],
    );
    let a = on_etcd(&etcd, "/shared/").await;
    let listed = aws(&a.endpoint, &["list-meshes"]);
    let names: Vec<&str> = listed["meshes"]
        .as_array()
        .into_iter()
        .flatten()
        .filter_map(|m| m["meshName"].as_str())
        .collect();
    assert_eq!(names, ["shared", "while-a-was-down"]);
}

/// Runs `aws appmesh ARGS...`: whether it succeeded.
fn aws_result(endpoint: &str, args: &[&str]) -> bool {
    std::process::Command::new("aws")
        .arg("appmesh")
        .args(args)
        .args(["--endpoint-url", endpoint, "--region", "local"])
        .env("AWS_ACCESS_KEY_ID", "test")
        .env("AWS_SECRET_ACCESS_KEY", "test")
        .stdin(std::process::Stdio::null())
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::null())
        .status()
        .map(|s| s.success())
        .unwrap_or(false)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_acknowledged_write_survives_a_kill_in_the_middle_of_a_stream_of_writes() {
    use std::io::BufRead;
    let dir = tempfile::tempdir().unwrap_or_else(|e| panic!("{e}"));
    let cp = ControlPlane::start(dir.path()).await;
    let mut writer = std::process::Command::new("python3")
        .args([appmesh_client().as_str(), &cp.endpoint, "stream"])
        .stdin(std::process::Stdio::null())
        .stdout(std::process::Stdio::piped())
        .spawn()
        .unwrap_or_else(|e| panic!("python3: {e}"));
    let stdout = writer.stdout.take().unwrap_or_else(|| panic!("no stdout"));
    let mut lines = std::io::BufReader::new(stdout).lines();
    let mut acknowledged = Vec::new();
    // Killed while the writer is in full flow, after some writes were acknowledged.
    for line in lines.by_ref() {
        let line = line.unwrap_or_default();
        let v: serde_json::Value = serde_json::from_str(&line).unwrap_or_default();
        acknowledged.push(v["name"].as_str().unwrap_or_default().to_string());
        if acknowledged.len() == 25 {
            break;
        }
    }
    cp.kill();
    for line in lines {
        let v: serde_json::Value =
            serde_json::from_str(&line.unwrap_or_default()).unwrap_or_default();
        acknowledged.push(v["name"].as_str().unwrap_or_default().to_string());
    }
    let _ = writer.wait();
    let cp = ControlPlane::start(dir.path()).await;
    let stored = cp.get_json("/ferry/v1/export").await;
    let names: Vec<&str> = stored["resources"]
        .as_array()
        .into_iter()
        .flatten()
        .filter_map(|m| m["metadata"]["name"].as_str())
        .collect();
    for name in &acknowledged {
        assert!(
            names.contains(&name.as_str()),
            "{name} was acknowledged, then lost"
        );
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn with_credentials_configured_signatures_are_verified_and_tokens_taken() {
    let dir = tempfile::tempdir().unwrap_or_else(|e| panic!("{e}"));
    let credentials = dir.path().join("credentials");
    std::fs::write(
        &credentials,
        "[default]\naws_access_key_id = AKIDFERRYTEST\naws_secret_access_key = Zm9vYmFy/secret\n[ci]\naws_access_key_id = AKIDOTHER\naws_secret_access_key = other\n",
    )
    .unwrap_or_else(|e| panic!("{e}"));
    let tokens = dir.path().join("tokens");
    std::fs::write(&tokens, "# ferry's client commands\nt0ken-for-ferry\n")
        .unwrap_or_else(|e| panic!("{e}"));
    let data = dir.path().join("data");
    let (credentials, tokens, data) = (
        credentials.to_string_lossy().into_owned(),
        tokens.to_string_lossy().into_owned(),
        data.to_string_lossy().into_owned(),
    );
    let cp = ControlPlane::start_with(&[
        "--data-dir",
        &data,
        "--credentials-file",
        &credentials,
        "--token-file",
        &tokens,
    ])
    .await;
    let env = [
        ("FERRY_TEST_KEY_ID", "AKIDFERRYTEST"),
        ("FERRY_TEST_SECRET", "Zm9vYmFy/secret"),
    ];
    let got: Vec<String> = boto3_with(&cp.endpoint, "auth", &env)
        .iter()
        .map(|l| l.to_string())
        .collect();
    assert_eq!(
        got,
        [
            r#"{"names":["signed"],"step":"signed"}"#,
            r#"{"error":["InvalidSignatureException",403],"step":"wrong secret"}"#,
            r#"{"error":["UnrecognizedClientException",403],"step":"unknown key"}"#,
            r#"{"error":["MissingAuthenticationTokenException",403],"step":"unsigned"}"#,
            r#"{"as_signed":null,"step":"swapped body","swapped":["InvalidSignatureException",403]}"#,
        ]
    );
    // The ferry commands with the token, and without.
    let with = cp.ferry(&["get", "mesh", "--token", "t0ken-for-ferry"]);
    assert!(
        with.status.success(),
        "{}",
        String::from_utf8_lossy(&with.stderr)
    );
    assert!(String::from_utf8_lossy(&with.stdout).contains("signed"));
    let without = cp.ferry(&["get", "mesh"]);
    assert!(!without.status.success());
    assert!(
        String::from_utf8_lossy(&without.stderr).contains("MissingAuthenticationTokenException")
    );
    let wrong = cp.ferry(&["status", "--token", "nope"]);
    assert!(String::from_utf8_lossy(&wrong.stderr).contains("UnrecognizedClientException"));
}

/// Sends `head` (and nothing more) on a new connection, and reads what comes back
/// until the server answers or closes.
async fn slow_client(port: u16, head: &str) -> String {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let mut s = tokio::net::TcpStream::connect(("127.0.0.1", port))
        .await
        .unwrap_or_else(|e| panic!("{e}"));
    s.write_all(head.as_bytes())
        .await
        .unwrap_or_else(|e| panic!("{e}"));
    let mut got = Vec::new();
    // Bounded: the server's client timeout is 1 s here.
    let read = tokio::time::timeout(Duration::from_secs(20), s.read_to_end(&mut got)).await;
    assert!(read.is_ok(), "the server never let the slow client go");
    String::from_utf8_lossy(&got).into_owned()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn slow_and_oversized_requests_get_app_meshs_errors_while_the_server_serves_on() {
    let dir = tempfile::tempdir().unwrap_or_else(|e| panic!("{e}"));
    let data = dir.path().to_string_lossy().into_owned();
    let cp = ControlPlane::start_with(&["--data-dir", &data, "--client-timeout-s", "1"]).await;
    let port: u16 = cp
        .endpoint
        .rsplit(':')
        .next()
        .and_then(|p| p.parse().ok())
        .unwrap_or(0);
    // A body that never ends, and a head that never ends, while others are served.
    let body = slow_client(
        port,
        "PUT /v20190125/meshes HTTP/1.1\r\nHost: cp\r\nContent-Type: application/json\r\nContent-Length: 50\r\n\r\n{\"meshName\"",
    );
    let head = slow_client(port, "GET /v20190125/mes");
    let served = aws(&cp.endpoint, &["create-mesh", "--mesh-name", "a b ü"]);
    assert_eq!(served["mesh"]["meshName"], "a b ü");
    let (body, head) = tokio::join!(body, head);
    assert!(body.starts_with("HTTP/1.1 400"), "{body}");
    assert!(
        body.contains("x-amzn-errortype: BadRequestException"),
        "{body}"
    );
    assert!(!head.contains("200 OK"), "{head}");
    // A body over the limit: refused, nothing written.
    let big = format!(
        r#"{{"meshName": "big", "spec": {{}}, "tags": [{{"key": "k", "value": "{}"}}]}}"#,
        "x".repeat(2 << 20)
    );
    let out = std::process::Command::new("curl")
        .args(["-s", "-o", "/dev/null", "-w", "%{http_code}", "-X", "PUT"])
        .args([
            "-H",
            "content-type: application/json",
            "--data-binary",
            "@-",
        ])
        .arg(format!("{}/v20190125/meshes", cp.endpoint))
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::piped())
        .spawn()
        .and_then(|mut c| {
            use std::io::Write;
            if let Some(mut stdin) = c.stdin.take() {
                stdin.write_all(big.as_bytes())?;
            }
            c.wait_with_output()
        })
        .unwrap_or_else(|e| panic!("curl: {e}"));
    assert_eq!(String::from_utf8_lossy(&out.stdout), "400");
    // Names that need encoding, and a mesh's list in pages.
    let described = aws(&cp.endpoint, &["describe-mesh", "--mesh-name", "a b ü"]);
    assert_eq!(described["mesh"]["meshName"], "a b ü");
    let router = r#"{"listeners":[{"portMapping":{"port":80,"protocol":"http"}}]}"#;
    for name in ["r1", "r2", "r3", "r4", "r5"] {
        aws(
            &cp.endpoint,
            &[
                "create-virtual-router",
                "--mesh-name",
                "a b ü",
                "--virtual-router-name",
                name,
                "--spec",
                router,
            ],
        );
    }
    let mut names = Vec::new();
    let mut token: Option<String> = None;
    let mut pages = 0;
    loop {
        let mut path = "/v20190125/meshes/a%20b%20%C3%BC/virtualRouters?limit=2".to_string();
        if let Some(t) = &token {
            path.push_str(&format!("&nextToken={t}"));
        }
        let page = cp.get_json(&path).await;
        pages += 1;
        for r in page["virtualRouters"].as_array().into_iter().flatten() {
            names.push(r["virtualRouterName"].as_str().unwrap_or("").to_string());
        }
        token = page["nextToken"].as_str().map(str::to_string);
        if token.is_none() {
            break;
        }
    }
    assert_eq!((names.join(","), pages), ("r1,r2,r3,r4,r5".to_string(), 3));
    let listed = aws(&cp.endpoint, &["list-meshes"]);
    assert_eq!(
        listed["meshes"].as_array().map(Vec::len),
        Some(1),
        "nothing else written"
    );
}
