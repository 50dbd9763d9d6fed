//! The control plane's REST API and `ferry apply`, on the embedded store or on etcd:
//! create and describe throughput (App Mesh's `CreateVirtualNode` and
//! `DescribeVirtualNode`, by `--concurrency` clients on keep-alive connections), and the
//! time of `ferry apply` of a mesh of `--nodes` virtual nodes (with a router, a route
//! and a service per ten nodes), the first time (everything created, one transaction)
//! and again (everything unchanged), and of `ferry delete` of it (one transaction too).
//! Prints one JSON object.
//!
//! `FERRY_BIN` names the binary; `bench/mesh.sh` builds it in release.

use bytes::Bytes;
use clap::Parser;
use ferry_test_util::control_plane::ControlPlane;
use ferry_test_util::etcd::Etcd;
use http_body_util::{BodyExt, Full};
use std::time::{Duration, Instant};

#[derive(Parser)]
struct Args {
    /// `embedded` or `etcd` (a local etcd is started).
    #[arg(long, default_value = "embedded")]
    store: String,
    /// Virtual nodes created (and described) through the REST API.
    #[arg(long, default_value_t = 2000)]
    creates: usize,
    /// Concurrent clients.
    #[arg(long, default_value_t = 16)]
    concurrency: usize,
    /// Virtual nodes of the mesh `ferry apply` applies.
    #[arg(long, default_value_t = 1000)]
    nodes: usize,
}

type Client = hyper_util::client::legacy::Client<
    hyper_util::client::legacy::connect::HttpConnector,
    Full<Bytes>,
>;

async fn call(client: &Client, method: &str, uri: &str, body: String) -> anyhow::Result<u16> {
    let req = http::Request::builder()
        .method(method)
        .uri(uri)
        .header("content-type", "application/json")
        .body(Full::new(Bytes::from(body)))?;
    let resp = client.request(req).await?;
    let status = resp.status().as_u16();
    resp.into_body().collect().await?;
    Ok(status)
}

fn node_spec(i: usize) -> serde_json::Value {
    serde_json::json!({
        "listeners": [{"portMapping": {"port": 8080, "protocol": "http"},
            "healthCheck": {"protocol": "http", "path": "/ping", "healthyThreshold": 2,
                "unhealthyThreshold": 2, "intervalMillis": 5000, "timeoutMillis": 2000}}],
        "serviceDiscovery": {"dns": {"hostname": format!("node-{i}.bench.local")}},
        "backends": [{"virtualService": {"virtualServiceName": format!("svc-{}.bench.local", i / 10)}}]
    })
}

/// Runs `count` requests made by `request(i)` over `concurrency` clients: requests per
/// second.
async fn throughput(
    client: &Client,
    count: usize,
    concurrency: usize,
    request: impl Fn(usize) -> (&'static str, String, String) + Send + Sync + 'static,
) -> anyhow::Result<f64> {
    let request = std::sync::Arc::new(request);
    let next = std::sync::Arc::new(std::sync::atomic::AtomicUsize::new(0));
    let started = Instant::now();
    let mut tasks = Vec::new();
    for _ in 0..concurrency {
        let (client, request, next) = (client.clone(), request.clone(), next.clone());
        tasks.push(tokio::spawn(async move {
            loop {
                let i = next.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
                if i >= count {
                    return anyhow::Ok(());
                }
                let (method, uri, body) = request(i);
                let status = call(&client, method, &uri, body).await?;
                anyhow::ensure!(status == 200, "{method} {uri}: {status}");
            }
        }));
    }
    for t in tasks {
        t.await??;
    }
    Ok(count as f64 / started.elapsed().as_secs_f64())
}

/// A mesh of `nodes` virtual nodes as ferrymesh YAML: a router, a route and a service
/// per ten nodes.
fn mesh_file(nodes: usize) -> String {
    let mut out = String::from("kind: Mesh\nmetadata: {name: applied}\n");
    for i in 0..nodes {
        out.push_str(&format!(
            "---\nkind: VirtualNode\nmetadata: {{mesh: applied, name: node-{i}}}\nspec: {}\n",
            node_spec(i)
        ));
    }
    for g in 0..nodes.div_ceil(10) {
        let targets: Vec<serde_json::Value> = (g * 10..(g * 10 + 10).min(nodes))
            .map(|i| serde_json::json!({"virtualNode": format!("node-{i}"), "weight": 1}))
            .collect();
        out.push_str(&format!(
            "---\nkind: VirtualRouter\nmetadata: {{mesh: applied, name: router-{g}}}\nspec: {{listeners: [{{portMapping: {{port: 8080, protocol: http}}}}]}}\n\
             ---\nkind: Route\nmetadata: {{mesh: applied, virtualRouter: router-{g}, name: route}}\nspec: {}\n\
             ---\nkind: VirtualService\nmetadata: {{mesh: applied, name: svc-{g}.bench.local}}\nspec: {{provider: {{virtualRouter: {{virtualRouterName: router-{g}}}}}}}\n",
            serde_json::json!({"httpRoute": {"match": {"prefix": "/"}, "action": {"weightedTargets": targets}}})
        ));
    }
    out
}

/// Runs `ferry apply -f file` (or `ferry delete`): seconds, and what it printed.
fn apply(cp: &ControlPlane, file: &std::path::Path, verb: &str) -> anyhow::Result<(f64, String)> {
    let started = Instant::now();
    let out = cp.ferry(&[verb, "-f", &file.to_string_lossy()]);
    let secs = started.elapsed().as_secs_f64();
    anyhow::ensure!(
        out.status.success(),
        "ferry apply: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    Ok((secs, String::from_utf8_lossy(&out.stdout).into_owned()))
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let args = Args::parse();
    let data = tempfile::tempdir()?;
    let etcd;
    let cp = match args.store.as_str() {
        "embedded" => ControlPlane::start(data.path()).await,
        "etcd" => {
            etcd = Etcd::start();
            let url = etcd.url();
            ControlPlane::start_with(&["--store", "etcd", "--etcd-endpoints", &url]).await
        }
        other => anyhow::bail!("--store {other}: embedded or etcd"),
    };
    let client: Client =
        hyper_util::client::legacy::Client::builder(hyper_util::rt::TokioExecutor::new())
            .pool_idle_timeout(Duration::from_secs(30))
            .build_http();
    let base = cp.endpoint.clone();
    let status = call(
        &client,
        "PUT",
        &format!("{base}/v20190125/meshes"),
        r#"{"meshName":"bench"}"#.into(),
    )
    .await?;
    anyhow::ensure!(status == 200, "CreateMesh: {status}");
    let b = base.clone();
    let creates = throughput(&client, args.creates, args.concurrency, move |i| {
        let body =
            serde_json::json!({"virtualNodeName": format!("node-{i}"), "spec": node_spec(i)});
        (
            "PUT",
            format!("{b}/v20190125/meshes/bench/virtualNodes"),
            body.to_string(),
        )
    })
    .await?;
    let b = base.clone();
    let describes = throughput(&client, args.creates, args.concurrency, move |i| {
        (
            "GET",
            format!("{b}/v20190125/meshes/bench/virtualNodes/node-{i}"),
            String::new(),
        )
    })
    .await?;
    let file = data.path().join("mesh.yaml");
    std::fs::write(&file, mesh_file(args.nodes))?;
    let (first, printed) = apply(&cp, &file, "apply")?;
    let created = printed.lines().filter(|l| l.starts_with("created")).count();
    let (again, printed) = apply(&cp, &file, "apply")?;
    let unchanged = printed
        .lines()
        .filter(|l| l.starts_with("unchanged"))
        .count();
    anyhow::ensure!(
        created == unchanged,
        "created {created}, unchanged {unchanged}"
    );
    let (delete, printed) = apply(&cp, &file, "delete")?;
    let deleted = printed.lines().filter(|l| l.starts_with("deleted")).count();
    anyhow::ensure!(created == deleted, "created {created}, deleted {deleted}");
    println!(
        "{}",
        serde_json::json!({
            "store": args.store,
            "concurrency": args.concurrency,
            "create_virtual_node_per_s": creates.round(),
            "describe_virtual_node_per_s": describes.round(),
            "apply_resources": created,
            "apply_nodes": args.nodes,
            "apply_first_s": (first * 1000.0).round() / 1000.0,
            "apply_again_s": (again * 1000.0).round() / 1000.0,
            "delete_s": (delete * 1000.0).round() / 1000.0,
        })
    );
    Ok(())
}
