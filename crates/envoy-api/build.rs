#![allow(clippy::expect_used, clippy::unwrap_used)] // a build script fails by panicking
//! Compiles Envoy's .proto files, shipped inside the `envoy-types` package, into one
//! descriptor set at build time (with protox: no protoc needed). The runtime decodes
//! YAML/JSON bootstraps against this set with prost-reflect.
//!
//! The .proto files are not copied into this repository: the package is found with
//! `cargo metadata`, or through `FERRY_ENVOY_PROTO_DIR`.

use std::path::{Path, PathBuf};
use std::process::Command;

fn main() {
    println!("cargo:rerun-if-changed=build.rs");
    println!("cargo:rerun-if-env-changed=FERRY_ENVOY_PROTO_DIR");
    let proto = proto_dir();
    let includes: Vec<PathBuf> = [
        "data-plane-api",
        "xds",
        "googleapis",
        "protoc-gen-validate",
        "cel-spec/proto",
        "opentelemetry-proto",
        "client_model",
    ]
    .iter()
    .map(|d| proto.join(d))
    .filter(|p| p.exists())
    .collect();

    let api = proto.join("data-plane-api");
    let mut files = Vec::new();
    // The discovery service: a file config source holds a `DiscoveryResponse`.
    for sub in [
        "envoy/config",
        "envoy/extensions",
        "envoy/type",
        "envoy/service/discovery/v3",
    ] {
        collect(&api.join(sub), &api, &mut files);
    }
    files.sort();
    // Envoy compiles each package on its own (bazel), so a relative name such as
    // `common.ratelimit.v3.X` may resolve differently when every package is in one
    // compile: protox, like protoc, picks the innermost scope that has a `common`. When
    // a file fails that way, it and the files that import it are compiled one by one
    // (each sees only its own imports, as under bazel) and the sets are merged.
    let mut group = files;
    let mut singles: Vec<String> = Vec::new();
    let mut set = loop {
        match try_compile(&includes, &group) {
            Ok(set) => break set,
            Err(e) => {
                let msg = format!("{e:?}");
                let failing = msg
                    .split(':')
                    .next()
                    .unwrap_or_default()
                    .trim_matches('"')
                    .to_string();
                let moved: Vec<String> = group
                    .iter()
                    .filter(|f| imports_transitively(&api, &includes, f, &failing))
                    .cloned()
                    .collect();
                assert!(!moved.is_empty(), "compiling Envoy protos: {msg}");
                group.retain(|f| !moved.contains(f));
                singles.extend(moved);
            }
        }
    };
    let mut known: std::collections::HashSet<String> =
        set.file.iter().map(|f| f.name().to_string()).collect();
    for f in &singles {
        // A few files fail even alone (protox is stricter than protoc about a relative
        // name whose first part names an imported package); they are extensions ferry
        // does not implement, and configs naming them are refused as unknown types.
        let more = match try_compile(&includes, std::slice::from_ref(f)) {
            Ok(more) => more,
            Err(e) => {
                println!("cargo:warning=skipped {f}: {e}");
                continue;
            }
        };
        for file in more.file {
            if known.insert(file.name().to_string()) {
                set.file.push(file);
            }
        }
    }
    let out = PathBuf::from(std::env::var("OUT_DIR").expect("OUT_DIR")).join("envoy.bin");
    std::fs::write(&out, prost::Message::encode_to_vec(&set)).expect("write descriptor set");
}

/// Whether `file` is `target` or imports it, directly or not.
fn imports_transitively(api: &Path, includes: &[PathBuf], file: &str, target: &str) -> bool {
    let mut seen = std::collections::HashSet::new();
    let mut stack = vec![file.to_string()];
    while let Some(f) = stack.pop() {
        if f == target {
            return true;
        }
        if !seen.insert(f.clone()) {
            continue;
        }
        let text = std::iter::once(api.to_path_buf())
            .chain(includes.iter().cloned())
            .find_map(|dir| std::fs::read_to_string(dir.join(&f)).ok())
            .unwrap_or_default();
        for line in text.lines() {
            let line = line.trim();
            if let Some(rest) = line.strip_prefix("import ") {
                let rest = rest
                    .trim_start_matches("public ")
                    .trim_start_matches("weak ");
                if let Some(path) = rest.split('"').nth(1) {
                    stack.push(path.to_string());
                }
            }
        }
    }
    false
}

fn try_compile(
    includes: &[PathBuf],
    files: &[String],
) -> Result<prost_types::FileDescriptorSet, protox::Error> {
    let mut compiler = protox::Compiler::new(includes)?;
    compiler.include_imports(true);
    compiler.include_source_info(false);
    compiler.open_files(files)?;
    Ok(compiler.file_descriptor_set())
}

fn collect(dir: &Path, root: &Path, out: &mut Vec<String>) {
    let Ok(entries) = std::fs::read_dir(dir) else {
        return;
    };
    for e in entries.flatten() {
        let p = e.path();
        if p.is_dir() {
            collect(&p, root, out);
        } else if p.extension().is_some_and(|x| x == "proto") {
            if let Ok(rel) = p.strip_prefix(root) {
                out.push(rel.to_string_lossy().replace('\\', "/"));
            }
        }
    }
}

fn proto_dir() -> PathBuf {
    if let Ok(dir) = std::env::var("FERRY_ENVOY_PROTO_DIR") {
        return PathBuf::from(dir);
    }
    let cargo = std::env::var("CARGO").unwrap_or_else(|_| "cargo".into());
    let manifest = PathBuf::from(std::env::var("CARGO_MANIFEST_DIR").expect("manifest dir"))
        .join("Cargo.toml");
    let out = Command::new(cargo)
        .args([
            "metadata",
            "--format-version",
            "1",
            "--offline",
            "--manifest-path",
        ])
        .arg(&manifest)
        // Without a platform filter, cargo wants every platform's packages downloaded.
        .arg("--filter-platform")
        .arg(std::env::var("TARGET").expect("TARGET"))
        .output()
        .expect("run cargo metadata");
    assert!(
        out.status.success(),
        "cargo metadata failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    let meta: serde_json::Value = serde_json::from_slice(&out.stdout).expect("metadata json");
    let pkgs = meta["packages"].as_array().expect("packages");
    let pkg = pkgs
        .iter()
        .find(|p| p["name"] == "envoy-types")
        .expect("envoy-types in the dependency graph");
    let manifest_path = PathBuf::from(pkg["manifest_path"].as_str().expect("manifest_path"));
    manifest_path.parent().expect("package dir").join("proto")
}
