//! The repository's `examples/`: every `examples/*/run.sh` runs to exit status 0 on
//! ferry and on real Envoy 1.40 (the scripts check the effect they show and exit
//! non-zero when it is missing), with free loopback ports passed in the environment.
//! Each example also has a README and an `envoy.yaml` that listens on 127.0.0.1 only.

use std::fs::File;
use std::io::{Read, Seek, SeekFrom};
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::{Command, ExitStatus, Stdio};
use std::time::{Duration, Instant};

use ferry_test_util::proc::{envoy_bin, ferry_bin};
use ferry_test_util::{free_port, require_envoy, Flavor};
use nix::sys::signal::{killpg, Signal};
use nix::unistd::Pid;

/// How long one example may run before it is stopped (they take a few seconds).
const DEADLINE: Duration = Duration::from_secs(120);

/// The examples the issue asks for; more may exist and are run too.
const REQUIRED: [&str; 10] = [
    "retries",
    "circuit-breaker",
    "outlier-detection",
    "health-checks",
    "fault-injection",
    "rate-limiting",
    "mirroring",
    "metrics-statsd",
    "metrics-prometheus",
    "tracing",
];

/// The port variables a run script reads (each has a default for running by hand).
const PORT_VARS: [&str; 6] = [
    "PROXY_PORT",
    "PROXY_PORT2",
    "ADMIN_PORT",
    "BACKEND_PORT",
    "BACKEND2_PORT",
    "STATSD_PORT",
];

fn examples_dir() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../../examples")
}

/// Every directory of `examples/` with a `run.sh`, sorted by name.
fn examples() -> Vec<PathBuf> {
    let dir = examples_dir();
    let entries =
        std::fs::read_dir(&dir).unwrap_or_else(|e| panic!("reading {}: {e}", dir.display()));
    let mut found: Vec<PathBuf> = entries
        .filter_map(Result::ok)
        .map(|e| e.path())
        .filter(|p| p.join("run.sh").is_file())
        .collect();
    found.sort();
    found
}

fn name_of(example: &Path) -> String {
    example
        .file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_default()
}

/// What one run of a script produced.
struct Run {
    status: Option<ExitStatus>,
    elapsed: Duration,
    output: String,
}

/// Runs `example/run.sh` against `flavor` with fresh ports; stops its process group
/// (the script then stops what it started) if it outlives [`DEADLINE`].
fn run(example: &Path, flavor: Flavor) -> Run {
    let log = tempfile::tempfile().unwrap_or_else(|e| panic!("log file: {e}"));
    let mut cmd = Command::new("bash");
    cmd.arg(example.join("run.sh"))
        .current_dir(example)
        .env("FERRY", ferry_bin())
        .env_remove("ENVOY")
        .env_remove("KEEP_WORK");
    if flavor == Flavor::Envoy {
        cmd.env("ENVOY", envoy_bin());
    }
    for var in PORT_VARS {
        cmd.env(var, free_port().to_string());
    }
    let clone = |f: &File| f.try_clone().unwrap_or_else(|e| panic!("log file: {e}"));
    cmd.stdin(Stdio::null())
        .stdout(clone(&log))
        .stderr(clone(&log))
        .process_group(0);

    let started = Instant::now();
    let mut child = cmd
        .spawn()
        .unwrap_or_else(|e| panic!("starting bash for {}: {e}", example.display()));
    let group = Pid::from_raw(i32::try_from(child.id()).unwrap_or(i32::MAX));
    let mut status = None;
    let mut timed_out = false;
    loop {
        match child.try_wait() {
            Ok(Some(s)) => {
                status = Some(s);
                break;
            }
            Ok(None) => {}
            Err(e) => panic!("waiting for {}: {e}", example.display()),
        }
        if started.elapsed() >= DEADLINE && !timed_out {
            // SIGTERM lets the script's trap stop its backends and proxy.
            timed_out = true;
            let _ = killpg(group, Signal::SIGTERM);
        }
        if started.elapsed() >= DEADLINE + Duration::from_secs(10) {
            let _ = killpg(group, Signal::SIGKILL);
            let _ = child.wait();
            break;
        }
        // Poll interval of a condition wait (the script's exit).
        std::thread::sleep(Duration::from_millis(20));
    }
    let elapsed = started.elapsed();

    let mut output = String::new();
    let mut f = clone(&log);
    let _ = f.seek(SeekFrom::Start(0));
    let _ = f.read_to_string(&mut output);
    if timed_out {
        output.push_str(&format!("\n[stopped after {DEADLINE:?}]\n"));
    }
    Run {
        status,
        elapsed,
        output,
    }
}

/// Runs every example on `flavor`; fails with each failing script's output.
fn run_all(flavor: Flavor) {
    let mut failures = Vec::new();
    for example in examples() {
        let name = name_of(&example);
        let r = run(&example, flavor);
        let ok = r.status.is_some_and(|s| s.success());
        eprintln!(
            "examples/{name} on {flavor}: {} in {:.1?}",
            if ok { "ok" } else { "FAILED" },
            r.elapsed
        );
        if !ok {
            failures.push(format!(
                "examples/{name}/run.sh on {flavor} exited with {:?}; its output:\n{}",
                r.status, r.output
            ));
        }
    }
    assert!(failures.is_empty(), "{}", failures.join("\n\n"));
}

#[test]
fn examples_run_on_ferry() {
    run_all(Flavor::Ferry);
}

#[test]
fn examples_run_on_envoy() {
    if !require_envoy() {
        return;
    }
    run_all(Flavor::Envoy);
}

#[test]
fn every_example_is_complete_and_listens_on_loopback_only() {
    let found: Vec<String> = examples().iter().map(|p| name_of(p)).collect();
    for name in REQUIRED {
        assert!(
            found.iter().any(|f| f == name),
            "examples/{name} is missing"
        );
    }
    let index = std::fs::read_to_string(examples_dir().join("README.md"))
        .unwrap_or_else(|e| panic!("examples/README.md: {e}"));
    for example in examples() {
        let name = name_of(&example);
        assert!(
            index.contains(&format!("]({name}/)")),
            "examples/README.md does not link {name}/"
        );
        assert!(
            example.join("README.md").is_file(),
            "examples/{name}/README.md is missing"
        );
        let path = example.join("envoy.yaml");
        let yaml = std::fs::read_to_string(&path)
            .unwrap_or_else(|e| panic!("examples/{name}/envoy.yaml: {e}"));
        let root: serde_yaml::Value = serde_yaml::from_str(&yaml)
            .unwrap_or_else(|e| panic!("examples/{name}/envoy.yaml: {e}"));
        let mut addresses = Vec::new();
        socket_addresses(&root, &mut addresses);
        assert!(
            !addresses.is_empty(),
            "examples/{name}/envoy.yaml has no socket_address"
        );
        for address in addresses {
            assert_eq!(
                address, "127.0.0.1",
                "examples/{name}/envoy.yaml: every socket_address must be 127.0.0.1"
            );
        }
    }
}

/// Every `socket_address.address` in a YAML tree.
fn socket_addresses(value: &serde_yaml::Value, out: &mut Vec<String>) {
    match value {
        serde_yaml::Value::Mapping(map) => {
            for (k, v) in map {
                if k.as_str() == Some("socket_address") {
                    out.push(
                        v.get("address")
                            .and_then(serde_yaml::Value::as_str)
                            .unwrap_or("<none>")
                            .to_owned(),
                    );
                }
                socket_addresses(v, out);
            }
        }
        serde_yaml::Value::Sequence(seq) => seq.iter().for_each(|v| socket_addresses(v, out)),
        _ => {}
    }
}
