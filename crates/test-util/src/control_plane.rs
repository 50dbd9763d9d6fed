//! `ferry control-plane` for tests, and its real clients: boto3 (through
//! `crates/ferry/tests/py/appmesh_client.py`, which checks every response against
//! botocore's model), the AWS CLI, and the `ferry` client commands.

use crate::free_port;
use crate::proc::ferry_bin;
use std::process::{Child, Command, Output, Stdio};
use std::time::Duration;

/// The boto3 driver's path: beside the crate under test at run time (cargo sets
/// `CARGO_MANIFEST_DIR` for a test binary), else beside this crate as it was built.
pub fn appmesh_client() -> String {
    const SCRIPT: &str = "../ferry/tests/py/appmesh_client.py";
    if let Ok(dir) = std::env::var("CARGO_MANIFEST_DIR") {
        let path = std::path::Path::new(&dir).join(SCRIPT);
        if path.exists() {
            return path.to_string_lossy().into_owned();
        }
    }
    format!("{}/{SCRIPT}", env!("CARGO_MANIFEST_DIR"))
}

/// A control plane process, killed when dropped.
pub struct ControlPlane {
    child: Child,
    /// Its API's URL (`http://127.0.0.1:<port>`).
    pub endpoint: String,
}

impl Drop for ControlPlane {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

impl ControlPlane {
    /// Starts `ferry control-plane` with its data in `data_dir` (the embedded store).
    pub async fn start(data_dir: &std::path::Path) -> ControlPlane {
        let dir = data_dir.to_string_lossy().into_owned();
        ControlPlane::start_with(&["--data-dir", &dir]).await
    }

    /// Starts `ferry control-plane ARGS...` on a free port; returns once its API
    /// accepts connections.
    pub async fn start_with(args: &[&str]) -> ControlPlane {
        let port = free_port();
        let child = Command::new(ferry_bin())
            .args(["control-plane", "--api", &format!("127.0.0.1:{port}")])
            .args(args)
            .args(["--log-level", "warn"])
            .stdin(Stdio::null())
            .spawn()
            .unwrap_or_else(|e| panic!("ferry control-plane: {e}"));
        let mut cp = ControlPlane {
            child,
            endpoint: format!("http://127.0.0.1:{port}"),
        };
        let up = crate::admin::poll(Duration::from_secs(20), || async move {
            tokio::net::TcpStream::connect(("127.0.0.1", port))
                .await
                .ok()
                .map(|_| ())
        })
        .await;
        if up.is_none() {
            let status = cp.child.try_wait();
            panic!("the control plane did not start ({status:?})");
        }
        cp
    }

    /// Kills it at once (no shutdown of any kind).
    pub fn kill(mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }

    /// Runs `ferry ARGS...` (a client command) against it.
    pub fn ferry(&self, args: &[&str]) -> Output {
        Command::new(ferry_bin())
            .args(args)
            .env("FERRY_CONTROL_PLANE", &self.endpoint)
            .stdin(Stdio::null())
            .output()
            .unwrap_or_else(|e| panic!("ferry {args:?}: {e}"))
    }

    /// GETs a path of its API: the JSON answer.
    pub async fn get_json(&self, path: &str) -> serde_json::Value {
        let port = self
            .endpoint
            .rsplit(':')
            .next()
            .and_then(|p| p.parse().ok())
            .unwrap_or(0);
        let (status, body) = crate::proc::admin_get(port, path)
            .await
            .unwrap_or_else(|e| panic!("GET {path}: {e}"));
        assert_eq!(status, 200, "GET {path}: {body}");
        serde_json::from_str(&body).unwrap_or_else(|e| panic!("GET {path}: {e}: {body}"))
    }
}

/// Runs a scenario of `appmesh_client.py` with `env`: its lines, as JSON.
pub fn boto3_with(endpoint: &str, scenario: &str, env: &[(&str, &str)]) -> Vec<serde_json::Value> {
    let script = appmesh_client();
    let out = Command::new("python3")
        .args([script.as_str(), endpoint, scenario])
        .envs(env.iter().copied())
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

/// Runs a scenario of `appmesh_client.py`: its lines, as JSON text.
pub fn boto3(endpoint: &str, scenario: &str) -> Vec<String> {
    boto3_with(endpoint, scenario, &[])
        .iter()
        .map(|l| l.to_string())
        .collect()
}

/// Runs `aws appmesh ARGS...` against `endpoint`: its JSON output.
pub fn aws(endpoint: &str, args: &[&str]) -> serde_json::Value {
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
