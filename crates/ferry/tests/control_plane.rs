//! `ferry control-plane`: App Mesh's REST API, driven by the real clients — boto3
//! (`tests/py/appmesh_client.py`, which also checks every response against botocore's
//! model of the service) and the AWS CLI — on the embedded store, and what it stored
//! still there after the process is killed and started again.

use ferry_test_util::free_port;
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::time::Duration;

/// A control plane process, killed when dropped.
struct ControlPlane {
    child: Child,
    endpoint: String,
}

impl Drop for ControlPlane {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

impl ControlPlane {
    /// Starts `ferry control-plane` with its data in `data_dir`; returns once its API
    /// accepts connections.
    async fn start(data_dir: &Path) -> ControlPlane {
        let port = free_port();
        let child = Command::new(env!("CARGO_BIN_EXE_ferry"))
            .args(["control-plane", "--api", &format!("127.0.0.1:{port}")])
            .arg("--data-dir")
            .arg(data_dir)
            .args(["--log-level", "warn"])
            .stdin(Stdio::null())
            .spawn()
            .unwrap_or_else(|e| panic!("ferry control-plane: {e}"));
        let cp = ControlPlane {
            child,
            endpoint: format!("http://127.0.0.1:{port}"),
        };
        let up = ferry_test_util::admin::poll(Duration::from_secs(20), || async move {
            tokio::net::TcpStream::connect(("127.0.0.1", port))
                .await
                .ok()
                .map(|_| ())
        })
        .await;
        assert!(up.is_some(), "the control plane did not start");
        cp
    }

    /// Kills it at once (no shutdown of any kind).
    fn kill(mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// Runs a scenario of `appmesh_client.py`: its lines, as JSON.
fn boto3(endpoint: &str, scenario: &str) -> Vec<serde_json::Value> {
    let script = concat!(env!("CARGO_MANIFEST_DIR"), "/tests/py/appmesh_client.py");
    let out = Command::new("python3")
        .args([script, endpoint, scenario])
        .stdin(Stdio::null())
        .output()
        .unwrap_or_else(|e| panic!("python3 {script}: {e}"));
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "{scenario}: {}\n{stdout}\n{}",
        out.status,
        String::from_utf8_lossy(&out.stderr)
    );
    stdout
        .lines()
        .map(|l| serde_json::from_str(l).unwrap_or_else(|e| panic!("{e}: {l}")))
        .collect()
}

/// Runs `aws appmesh ARGS...` against `endpoint`: its JSON output.
fn aws(endpoint: &str, args: &[&str]) -> serde_json::Value {
    let out = Command::new("aws")
        .arg("appmesh")
        .args(args)
        .args([
            "--endpoint-url",
            endpoint,
            "--region",
            "local",
            "--output",
            "json",
        ])
        .env("AWS_ACCESS_KEY_ID", "test")
        .env("AWS_SECRET_ACCESS_KEY", "test")
        .env("AWS_PAGER", "")
        .stdin(Stdio::null())
        .output()
        .unwrap_or_else(|e| panic!("aws: {e}"));
    assert!(
        out.status.success(),
        "aws {args:?}: {}\n{}",
        out.status,
        String::from_utf8_lossy(&out.stderr)
    );
    serde_json::from_slice(&out.stdout).unwrap_or_else(|e| panic!("aws {args:?}: {e}"))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn boto3_drives_the_mesh_operations() {
    let dir = tempfile::tempdir().unwrap_or_else(|e| panic!("{e}"));
    let cp = ControlPlane::start(dir.path()).await;
    let lines = boto3(&cp.endpoint, "meshes");
    let expected = [
        r#"{"arn":"arn:aws:appmesh:local:000000000000:mesh/m1","egress":"ALLOW_ALL","name":"m1","status":"ACTIVE","step":"create","version":1}"#,
        r#"{"error":["ConflictException",409],"step":"create again"}"#,
        r#"{"same":true,"step":"client token"}"#,
        r#"{"egress":"ALLOW_ALL","name":"m1","step":"describe"}"#,
        r#"{"egress":"DROP_ALL","step":"update","version":2}"#,
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
    let got: Vec<String> = lines.iter().map(|l| l.to_string()).collect();
    assert_eq!(got, expected);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn boto3_drives_virtual_services_routers_and_tags_with_app_mesh_rules() {
    let dir = tempfile::tempdir().unwrap_or_else(|e| panic!("{e}"));
    let cp = ControlPlane::start(dir.path()).await;
    let got: Vec<String> = boto3(&cp.endpoint, "resources")
        .iter()
        .map(|l| l.to_string())
        .collect();
    let expected = [
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
    assert_eq!(got, expected);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn boto3_drives_virtual_nodes_with_app_mesh_ranges() {
    let dir = tempfile::tempdir().unwrap_or_else(|e| panic!("{e}"));
    let cp = ControlPlane::start(dir.path()).await;
    let got: Vec<String> = boto3(&cp.endpoint, "nodes")
        .iter()
        .map(|l| l.to_string())
        .collect();
    let expected = [
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
    assert_eq!(got, expected);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn boto3_drives_routes_with_app_mesh_rules() {
    let dir = tempfile::tempdir().unwrap_or_else(|e| panic!("{e}"));
    let cp = ControlPlane::start(dir.path()).await;
    let got: Vec<String> = boto3(&cp.endpoint, "routes")
        .iter()
        .map(|l| l.to_string())
        .collect();
    let expected = [
        r#"{"arn":"arn:aws:appmesh:local:000000000000:mesh/app/virtualRouter/r/route/canary","router":"r","spec_round_trips":true,"step":"route"}"#,
        r#"{"error":["NotFoundException",404],"step":"target missing"}"#,
        r#"{"error":["BadRequestException",400],"step":"11 targets"}"#,
        r#"{"error":["BadRequestException",400],"step":"weight 101"}"#,
        r#"{"error":["BadRequestException",400],"step":"priority 1001"}"#,
        r#"{"error":["BadRequestException",400],"step":"retry without events"}"#,
        r#"{"error":["BadRequestException",400],"step":"bad retry event"}"#,
        r#"{"error":["BadRequestException",400],"step":"prefix without /"}"#,
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
    assert_eq!(got, expected);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn boto3_drives_virtual_gateways_and_gateway_routes() {
    let dir = tempfile::tempdir().unwrap_or_else(|e| panic!("{e}"));
    let cp = ControlPlane::start(dir.path()).await;
    let got: Vec<String> = boto3(&cp.endpoint, "gateways")
        .iter()
        .map(|l| l.to_string())
        .collect();
    let expected = [
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
    assert_eq!(got, expected);
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
    assert_eq!(
        lines[0].to_string(),
        r#"{"names":["colorapp","other"],"step":"list"}"#
    );
    let described = aws(&cp.endpoint, &["describe-mesh", "--mesh-name", "colorapp"]);
    assert_eq!(
        described["mesh"]["spec"]["egressFilter"]["type"],
        "ALLOW_ALL"
    );
}
