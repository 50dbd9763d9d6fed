//! `ferry validate` over every file of `../shared/envoy-examples/` matches the committed
//! expectation (`envoy-examples.expected`): accepted, or rejected with each unsupported
//! feature named by its path. Regenerate with `FERRY_UPDATE_EXPECT=1`.

use std::path::PathBuf;
use std::process::Command;

fn shared() -> PathBuf {
    match std::env::var("FERRY_SHARED") {
        Ok(p) => PathBuf::from(p),
        Err(_) => PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../../../shared"),
    }
}

fn validate(path: &std::path::Path) -> (bool, String) {
    let out = Command::new(env!("CARGO_BIN_EXE_ferry"))
        .arg("validate")
        .arg(path)
        .output()
        .unwrap_or_else(|e| panic!("running ferry: {e}"));
    (
        out.status.success(),
        String::from_utf8_lossy(&out.stdout).into_owned(),
    )
}

#[test]
fn envoy_examples_match_expectations() {
    let dir = shared().join("envoy-examples");
    let mut files: Vec<PathBuf> = std::fs::read_dir(&dir)
        .unwrap_or_else(|e| {
            panic!(
                "{}: {e} (shared/ must sit beside the checkout)",
                dir.display()
            )
        })
        .filter_map(|e| e.ok().map(|e| e.path()))
        .filter(|p| {
            p.extension()
                .is_some_and(|x| x == "yaml" || x == "yml" || x == "json")
        })
        .collect();
    files.sort();
    assert!(
        files.len() >= 20,
        "expected the envoy-examples corpus, found {} files",
        files.len()
    );
    let mut actual = String::new();
    for f in &files {
        let (ok, stdout) = validate(f);
        let name = f
            .file_name()
            .map(|n| n.to_string_lossy().into_owned())
            .unwrap_or_default();
        actual.push_str(&format!("== {name}\n"));
        if ok {
            actual.push_str("accepted\n");
        } else {
            actual.push_str("rejected\n");
            for line in stdout.lines() {
                actual.push_str(&format!("  {line}\n"));
            }
        }
    }
    let expected_path =
        PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("tests/envoy-examples.expected");
    if std::env::var("FERRY_UPDATE_EXPECT").is_ok() {
        std::fs::write(&expected_path, &actual).unwrap_or_else(|e| panic!("{e}"));
        return;
    }
    let expected = std::fs::read_to_string(&expected_path).unwrap_or_default();
    assert_eq!(actual, expected, "ferry validate output changed; if intended, rerun with FERRY_UPDATE_EXPECT=1 and update docs/envoy-compat.md");
}

#[test]
fn the_seed_validates_with_warnings_for_v2_names() {
    let seed = shared().join("fixtures/seed-front-proxy-v2.yaml");
    let out = Command::new(env!("CARGO_BIN_EXE_ferry"))
        .arg("validate")
        .arg(&seed)
        .output()
        .unwrap_or_else(|e| panic!("running ferry: {e}"));
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stdout)
    );
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        stderr.contains("legacy name envoy.http_connection_manager upgraded"),
        "{stderr}"
    );
    assert!(
        stderr.contains("legacy name envoy.router upgraded"),
        "{stderr}"
    );
    assert!(
        stderr.contains("enum value strict_dns upgraded to STRICT_DNS"),
        "{stderr}"
    );
}

#[test]
fn validate_reports_every_problem_with_its_path() {
    let dir = tempdir();
    let path = dir.join("bad.yaml");
    std::fs::write(
        &path,
        r#"
static_resources:
  listeners:
  - address: { socket_address: { address: 127.0.0.1, port_value: 1 } }
    filter_chains:
    - filters:
      - name: envoy.filters.network.http_connection_manager
        typed_config:
          "@type": type.googleapis.com/envoy.extensions.filters.network.http_connection_manager.v3.HttpConnectionManager
          stat_prefix: x
          route_config:
            virtual_hosts:
            - name: a
              domains: ["*"]
              routes:
              - match: { safe_regex: { regex: "(" } }
                route: { cluster: c }
              - match: { prefix: "/" }
                route: { cluster: missing }
          http_filters:
          - name: envoy.filters.http.lua
            typed_config:
              "@type": type.googleapis.com/envoy.extensions.filters.http.lua.v3.Lua
          - name: envoy.filters.http.router
            typed_config:
              "@type": type.googleapis.com/envoy.extensions.filters.http.router.v3.Router
  clusters:
  - name: c
    lb_policy: CLUSTER_PROVIDED
    lb_subset_config: {}
"#,
    )
    .unwrap_or_else(|e| panic!("{e}"));
    let (ok, out) = validate(&path);
    assert!(!ok);
    for want in [
        "static_resources.listeners[0].filter_chains[0].filters[0].typed_config.http_filters[0]: envoy.filters.http.lua is not supported",
        "static_resources.clusters[0].lb_subset_config: field is not supported",
        "static_resources.clusters[0].lb_policy: CLUSTER_PROVIDED is not supported",
        "route_config.virtual_hosts[0].routes[0].match.safe_regex.regex: invalid regex",
        "unknown cluster 'missing'",
    ] {
        assert!(out.contains(want), "missing {want:?} in:\n{out}");
    }
}

#[test]
fn unknown_fields_are_errors_with_their_path() {
    let dir = tempdir();
    let path = dir.join("unknown.yaml");
    std::fs::write(
        &path,
        "static_resources:\n  clusters:\n  - name: a\n    bogus_field: 1\n",
    )
    .unwrap_or_else(|e| panic!("{e}"));
    let (ok, out) = validate(&path);
    assert!(!ok);
    assert!(out.contains("static_resources.clusters[0]"), "{out}");
    assert!(out.contains("bogus_field"), "{out}");
}

fn tempdir() -> PathBuf {
    let d = std::env::temp_dir().join(format!(
        "ferry-test-{}-{}",
        std::process::id(),
        rand_suffix()
    ));
    std::fs::create_dir_all(&d).unwrap_or_else(|e| panic!("{e}"));
    d
}

fn rand_suffix() -> u64 {
    use std::hash::{BuildHasher, Hasher};
    let mut h = std::collections::hash_map::RandomState::new().build_hasher();
    h.write_u64(0);
    h.finish()
}

#[test]
fn config_yaml_is_merged_over_the_file_and_mode_validate_checks_only() {
    let seed = shared().join("fixtures/seed-front-proxy-v2.yaml");
    let run = |extra: &[&str]| {
        Command::new(env!("CARGO_BIN_EXE_ferry"))
            .args(["proxy", "--mode", "validate", "-c"])
            .arg(&seed)
            .args(extra)
            .output()
            .unwrap_or_else(|e| panic!("running ferry: {e}"))
    };
    let ok = run(&["--config-yaml", "node: { id: from-overlay }"]);
    assert!(
        ok.status.success(),
        "{}",
        String::from_utf8_lossy(&ok.stderr)
    );
    // The overlay appends a second cluster with a bad policy: the merged config fails.
    let bad = run(&[
        "--config-yaml",
        "static_resources: { clusters: [ { name: extra, lb_policy: CLUSTER_PROVIDED } ] }",
    ]);
    assert!(!bad.status.success());
    let text = String::from_utf8_lossy(&bad.stderr);
    assert!(
        text.contains("static_resources.clusters[1].lb_policy: CLUSTER_PROVIDED is not supported"),
        "{text}"
    );
}
