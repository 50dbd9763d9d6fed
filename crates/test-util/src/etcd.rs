//! A real etcd for the control plane's tests (Debian's `etcd-server`, installed by the
//! test command): one member on free loopback ports with its data in a temporary
//! directory, killed with its process group when dropped.

use crate::ports::free_port;
use std::io::{Read, Write};
use std::net::TcpStream;
use std::os::unix::process::CommandExt;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

/// How long etcd may take to start answering.
const READY_DEADLINE: Duration = Duration::from_secs(30);

/// A running etcd.
pub struct Etcd {
    child: Child,
    client_port: u16,
    _dir: tempfile::TempDir,
    log: std::path::PathBuf,
}

impl Etcd {
    /// Starts etcd, taking transactions of up to 8,192 operations (the control plane
    /// commits an apply as one), and waits until it answers `/health`. Panics if it
    /// cannot (a test that needs etcd cannot run without it).
    pub fn start() -> Etcd {
        Etcd::start_with(&["--max-txn-ops", "8192"])
    }

    /// Starts etcd with `args` added.
    pub fn start_with(args: &[&str]) -> Etcd {
        let dir =
            tempfile::tempdir().unwrap_or_else(|e| panic!("a temporary directory for etcd: {e}"));
        let (client_port, peer_port) = (free_port(), free_port());
        let client = format!("http://127.0.0.1:{client_port}");
        let peer = format!("http://127.0.0.1:{peer_port}");
        let log = dir.path().join("etcd.log");
        let out = std::fs::File::create(&log).unwrap_or_else(|e| panic!("etcd's log file: {e}"));
        let err = out
            .try_clone()
            .unwrap_or_else(|e| panic!("etcd's log file: {e}"));
        let child = Command::new("etcd")
            .args(["--name", "test", "--data-dir"])
            .arg(dir.path().join("data"))
            .args(["--listen-client-urls", &client])
            .args(["--advertise-client-urls", &client])
            .args(["--listen-peer-urls", &peer])
            .args(["--initial-advertise-peer-urls", &peer])
            .args(["--initial-cluster", &format!("test={peer}")])
            .args(args)
            .stdin(Stdio::null())
            .stdout(out)
            .stderr(err)
            .process_group(0)
            .spawn()
            .unwrap_or_else(|e| {
                panic!("cannot start etcd ({e}); install Debian's etcd-server (scripts/install-test-deps.sh)")
            });
        let mut etcd = Etcd {
            child,
            client_port,
            _dir: dir,
            log,
        };
        let deadline = Instant::now() + READY_DEADLINE;
        while !etcd.healthy() {
            if let Ok(Some(status)) = etcd.child.try_wait() {
                panic!("etcd exited ({status}): {}", etcd.output());
            }
            if Instant::now() > deadline {
                panic!(
                    "etcd did not answer within {READY_DEADLINE:?}: {}",
                    etcd.output()
                );
            }
            // Poll interval of a condition wait.
            std::thread::sleep(Duration::from_millis(20));
        }
        etcd
    }

    /// Its client URL (`http://127.0.0.1:<port>`).
    pub fn url(&self) -> String {
        format!("http://127.0.0.1:{}", self.client_port)
    }

    fn healthy(&self) -> bool {
        let Ok(mut s) = TcpStream::connect(("127.0.0.1", self.client_port)) else {
            return false;
        };
        let _ = s.set_read_timeout(Some(Duration::from_secs(2)));
        let req = "GET /health HTTP/1.1\r\nHost: 127.0.0.1\r\nConnection: close\r\n\r\n";
        if s.write_all(req.as_bytes()).is_err() {
            return false;
        }
        let mut body = String::new();
        let _ = s.read_to_string(&mut body);
        body.contains("\"health\":\"true\"")
    }

    fn output(&self) -> String {
        std::fs::read_to_string(&self.log).unwrap_or_default()
    }
}

impl Drop for Etcd {
    fn drop(&mut self) {
        let pgid = nix::unistd::Pid::from_raw(-(self.child.id() as i32));
        let _ = nix::sys::signal::kill(pgid, nix::sys::signal::Signal::SIGKILL);
        let _ = self.child.wait();
    }
}
