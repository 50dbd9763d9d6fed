//! The client commands of the control plane: `ferry apply`, `delete`, `get`,
//! `describe`, `export` and `status`. They find it with `--control-plane URL` or
//! `FERRY_CONTROL_PLANE` (default `http://127.0.0.1:15080`); `--token` (or
//! `FERRY_TOKEN`) is sent as a bearer token.

use anyhow::{bail, Context};
use bytes::Bytes;
use ferry_mesh::manifest::{camel, Manifest};
use http_body_util::{BodyExt, Full};
use serde_json::{json, Value};
use std::path::PathBuf;

/// How every client command finds the control plane.
#[derive(clap::Args, Debug)]
pub struct Target {
    /// The control plane's API.
    #[arg(
        long = "control-plane",
        env = "FERRY_CONTROL_PLANE",
        default_value = "http://127.0.0.1:15080"
    )]
    control_plane: String,
    /// A bearer token for a control plane started with `--token-file`.
    #[arg(long = "token", env = "FERRY_TOKEN", hide_env_values = true)]
    token: Option<String>,
}

/// `ferry apply` / `ferry delete`.
#[derive(clap::Args, Debug)]
pub struct ApplyArgs {
    /// Files or directories of resources (ferrymesh YAML/JSON, AWS CLI input JSON,
    /// CloudFormation templates, App Mesh controller manifests); repeatable.
    #[arg(short = 'f', long = "filename", required = true)]
    files: Vec<PathBuf>,
    /// Check everything; write nothing.
    #[arg(long = "dry-run")]
    dry_run: bool,
    #[command(flatten)]
    target: Target,
}

/// `ferry get`.
#[derive(clap::Args, Debug)]
pub struct GetArgs {
    /// The kind: mesh, virtualnode (vn), virtualservice (vs), virtualrouter (vr), route,
    /// virtualgateway (vg), gatewayroute (gr); plural or App Mesh's spelling too.
    kind: String,
    /// Only the resource of this name.
    name: Option<String>,
    /// Only the resources of this mesh.
    #[arg(long = "mesh")]
    mesh: Option<String>,
    /// `table` (default), `yaml` or `json` (ferrymesh manifests, as `ferry apply` takes).
    #[arg(short = 'o', long = "output", default_value = "table")]
    output: String,
    #[command(flatten)]
    target: Target,
}

/// `ferry describe`.
#[derive(clap::Args, Debug)]
pub struct DescribeArgs {
    /// The kind (as `ferry get` takes it).
    kind: String,
    /// The resource's name.
    name: String,
    /// Its mesh (not for a mesh).
    #[arg(long = "mesh")]
    mesh: Option<String>,
    /// A route's virtual router.
    #[arg(long = "virtual-router")]
    virtual_router: Option<String>,
    /// A gateway route's virtual gateway.
    #[arg(long = "virtual-gateway")]
    virtual_gateway: Option<String>,
    #[command(flatten)]
    target: Target,
}

/// `ferry export`.
#[derive(clap::Args, Debug)]
pub struct ExportArgs {
    /// `ferrymesh` (YAML), `appmesh-cli` (a JSON array of create inputs) or
    /// `cloudformation` (a template).
    #[arg(long = "format", default_value = "ferrymesh")]
    format: String,
    /// Only this mesh.
    #[arg(long = "mesh")]
    mesh: Option<String>,
    #[command(flatten)]
    target: Target,
}

/// `ferry register`, `ferry deregister`, `ferry instances`: a virtual node's instances.
#[derive(clap::Args, Debug)]
pub struct InstanceArgs {
    /// The mesh.
    #[arg(long = "mesh")]
    mesh: String,
    /// The virtual node.
    #[arg(long = "virtual-node")]
    virtual_node: String,
    /// The instance's id (register, deregister).
    #[arg(long = "id")]
    id: Option<String>,
    /// Its IP address (register).
    #[arg(long = "address")]
    address: Option<String>,
    /// Its port (register).
    #[arg(long = "port")]
    port: Option<u32>,
    /// An attribute `KEY=VALUE` (register; repeatable), as a node's
    /// `awsCloudMap.attributes` select them.
    #[arg(long = "attribute")]
    attributes: Vec<String>,
    /// `HEALTHY` (default), `UNHEALTHY` or `DRAINING` (register).
    #[arg(long = "health", default_value = "HEALTHY")]
    health: String,
    #[command(flatten)]
    target: Target,
}

/// `ferry status`.
#[derive(clap::Args, Debug)]
pub struct StatusArgs {
    #[command(flatten)]
    target: Target,
}

/// A kind as the commands take it (`vn`, `virtualnodes`, `VirtualNode`): App Mesh's
/// type name.
fn kind_name(kind: &str) -> anyhow::Result<&'static str> {
    let k = kind.to_ascii_lowercase();
    // The short names first (`vs` is not a plural of `v`), then plurals.
    let k = match k.as_str() {
        "vn" | "vs" | "vr" | "vg" | "gr" => k.as_str(),
        _ => k.strip_suffix('s').unwrap_or(&k),
    };
    Ok(match k {
        "mesh" | "meshe" => "Mesh",
        "virtualnode" | "vn" => "VirtualNode",
        "virtualservice" | "vs" => "VirtualService",
        "virtualrouter" | "vr" => "VirtualRouter",
        "route" => "Route",
        "virtualgateway" | "vg" => "VirtualGateway",
        "gatewayroute" | "gr" => "GatewayRoute",
        _ => bail!(
            "{kind}: not a kind (mesh, virtualnode, virtualservice, virtualrouter, route, virtualgateway, gatewayroute)"
        ),
    })
}

/// Sends a request to the control plane: the answer's JSON, or its error.
fn call(target: &Target, method: &str, path: &str, body: Option<Value>) -> anyhow::Result<Value> {
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()?;
    runtime.block_on(async {
        let base = target.control_plane.trim_end_matches('/');
        let uri: http::Uri = format!("{base}{path}")
            .parse()
            .with_context(|| format!("--control-plane {base}"))?;
        let mut req = http::Request::builder().method(method).uri(&uri);
        if let Some(token) = &target.token {
            req = req.header(http::header::AUTHORIZATION, format!("Bearer {token}"));
        }
        let body = match body {
            Some(b) => {
                req = req.header(http::header::CONTENT_TYPE, "application/json");
                Full::new(Bytes::from(b.to_string()))
            }
            None => Full::new(Bytes::new()),
        };
        let client =
            hyper_util::client::legacy::Client::builder(hyper_util::rt::TokioExecutor::new())
                .build_http::<Full<Bytes>>();
        let resp = client.request(req.body(body)?).await.with_context(|| {
            format!("the control plane at {base} (--control-plane, FERRY_CONTROL_PLANE)")
        })?;
        let status = resp.status();
        let code = resp
            .headers()
            .get("x-amzn-ErrorType")
            .and_then(|v| v.to_str().ok())
            .unwrap_or("")
            .to_string();
        let bytes = resp.into_body().collect().await?.to_bytes();
        let value: Value = serde_json::from_slice(&bytes).unwrap_or(Value::Null);
        if !status.is_success() {
            let message = value["message"].as_str().unwrap_or("").to_string();
            bail!("{status} {code}: {message}");
        }
        Ok(value)
    })
}

/// Reads every file named, with the import's notes on stderr.
fn read_files(files: &[PathBuf]) -> anyhow::Result<Vec<Manifest>> {
    let mut resources = Vec::new();
    for path in files {
        let imported = ferry_mesh::import::import_path(path).map_err(anyhow::Error::msg)?;
        for note in imported.notes {
            eprintln!("note: {note}");
        }
        resources.extend(imported.resources);
    }
    Ok(resources)
}

/// `ferry apply -f` (or, with `delete`, `ferry delete -f`): one transaction.
pub fn apply(args: ApplyArgs, delete: bool) -> anyhow::Result<i32> {
    let resources = read_files(&args.files)?;
    if resources.is_empty() {
        bail!("no App Mesh resources in {:?}", args.files);
    }
    let body = json!({"resources": resources, "delete": delete, "dryRun": args.dry_run});
    let out = call(&args.target, "POST", "/ferry/v1/apply", Some(body))?;
    for r in out["results"].as_array().into_iter().flatten() {
        println!(
            "{:<10} {}",
            r["action"].as_str().unwrap_or(""),
            r["resource"].as_str().unwrap_or("")
        );
    }
    if args.dry_run {
        println!("(dry run: nothing written)");
    }
    Ok(0)
}

/// The manifests of `mesh` (or of every mesh).
fn export_of(target: &Target, mesh: Option<&str>) -> anyhow::Result<Vec<Manifest>> {
    let path = match mesh {
        Some(m) => format!("/ferry/v1/export?mesh={}", percent_encode(m)),
        None => "/ferry/v1/export".to_string(),
    };
    let out = call(target, "GET", &path, None)?;
    Ok(serde_json::from_value(out["resources"].clone())?)
}

/// `ferry get`.
pub fn get(args: GetArgs) -> anyhow::Result<i32> {
    let kind = kind_name(&args.kind)?;
    let mut resources = export_of(&args.target, args.mesh.as_deref())?;
    resources
        .retain(|m| m.kind == kind && args.name.as_ref().is_none_or(|n| *n == m.metadata.name));
    if let (Some(name), true) = (&args.name, resources.is_empty()) {
        bail!("{kind} {name}: not found");
    }
    match args.output.as_str() {
        "json" => println!("{}", serde_json::to_string_pretty(&resources)?),
        "yaml" => print!(
            "{}",
            ferry_mesh::export::export(&resources, "ferrymesh").map_err(anyhow::Error::msg)?
        ),
        "table" => {
            println!("{:<16} {:<24} {:<24} NAME", "KIND", "MESH", "IN");
            for m in &resources {
                let parent = m
                    .metadata
                    .virtual_router
                    .as_deref()
                    .or(m.metadata.virtual_gateway.as_deref())
                    .unwrap_or("-");
                println!(
                    "{:<16} {:<24} {:<24} {}",
                    m.kind,
                    m.metadata.mesh.as_deref().unwrap_or("-"),
                    parent,
                    m.metadata.name
                );
            }
        }
        other => bail!("-o {other}: must be table, yaml or json"),
    }
    Ok(0)
}

/// `ferry describe`: App Mesh's `Describe<Kind>` answer.
pub fn describe(args: DescribeArgs) -> anyhow::Result<i32> {
    let kind = kind_name(&args.kind)?;
    let name = percent_encode(&args.name);
    let path = if kind == "Mesh" {
        format!("/v20190125/meshes/{name}")
    } else {
        let mesh = args
            .mesh
            .as_deref()
            .context("--mesh: is required for a resource of a mesh")?;
        let mesh = percent_encode(mesh);
        let collection = ferry_mesh::model::kind::Kind::by_name(&camel(kind))
            .map(|k| k.collection)
            .unwrap_or_default();
        match kind {
            "Route" => {
                let r = args
                    .virtual_router
                    .as_deref()
                    .context("--virtual-router: is required for a route")?;
                format!(
                    "/v20190125/meshes/{mesh}/virtualRouter/{}/routes/{name}",
                    percent_encode(r)
                )
            }
            "GatewayRoute" => {
                let g = args
                    .virtual_gateway
                    .as_deref()
                    .context("--virtual-gateway: is required for a gateway route")?;
                format!(
                    "/v20190125/meshes/{mesh}/virtualGateway/{}/gatewayRoutes/{name}",
                    percent_encode(g)
                )
            }
            _ => format!("/v20190125/meshes/{mesh}/{collection}/{name}"),
        }
    };
    let out = call(&args.target, "GET", &path, None)?;
    println!("{}", serde_json::to_string_pretty(&out)?);
    Ok(0)
}

/// `ferry export`.
pub fn export(args: ExportArgs) -> anyhow::Result<i32> {
    if !ferry_mesh::export::FORMATS.contains(&args.format.as_str()) {
        bail!(
            "--format {}: must be one of {}",
            args.format,
            ferry_mesh::export::FORMATS.join(", ")
        );
    }
    let resources = export_of(&args.target, args.mesh.as_deref())?;
    let text = ferry_mesh::export::export(&resources, &args.format).map_err(anyhow::Error::msg)?;
    print!("{text}");
    if !text.ends_with('\n') {
        println!();
    }
    Ok(0)
}

/// The path of a node's instances (`/ferry/v1/meshes/M/virtualNodes/N/instances`).
fn instances_path(args: &InstanceArgs) -> String {
    format!(
        "/ferry/v1/meshes/{}/virtualNodes/{}/instances",
        percent_encode(&args.mesh),
        percent_encode(&args.virtual_node)
    )
}

/// `ferry register` (or, with `deregister`, `ferry deregister`).
pub fn register(args: InstanceArgs, deregister: bool) -> anyhow::Result<i32> {
    let id = args.id.as_deref().context("--id: is required")?;
    let path = format!("{}/{}", instances_path(&args), percent_encode(id));
    if deregister {
        call(&args.target, "DELETE", &path, None)?;
        println!("deregistered {id}");
        return Ok(0);
    }
    let mut attributes = serde_json::Map::new();
    for a in &args.attributes {
        let (k, v) = a
            .split_once('=')
            .with_context(|| format!("--attribute {a}: KEY=VALUE"))?;
        attributes.insert(k.to_string(), json!(v));
    }
    let body = json!({
        "address": args.address.as_deref().context("--address: is required")?,
        "port": args.port.context("--port: is required")?,
        "attributes": attributes,
        "health": args.health.to_ascii_uppercase(),
    });
    call(&args.target, "PUT", &path, Some(body))?;
    println!("registered {id}");
    Ok(0)
}

/// `ferry instances`.
pub fn instances(args: InstanceArgs) -> anyhow::Result<i32> {
    let out = call(&args.target, "GET", &instances_path(&args), None)?;
    println!("{:<24} {:<40} {:<10} ATTRIBUTES", "ID", "ADDRESS", "HEALTH");
    for i in out["instances"].as_array().into_iter().flatten() {
        let instance = &i["instance"];
        let attributes: Vec<String> = instance["attributes"]
            .as_object()
            .into_iter()
            .flatten()
            .map(|(k, v)| format!("{k}={}", v.as_str().unwrap_or_default()))
            .collect();
        println!(
            "{:<24} {:<40} {:<10} {}",
            i["instanceId"].as_str().unwrap_or_default(),
            format!(
                "{}:{}",
                instance["address"].as_str().unwrap_or_default(),
                instance["port"]
            ),
            instance["health"].as_str().unwrap_or_default(),
            attributes.join(",")
        );
    }
    Ok(0)
}

/// `ferry status`.
pub fn status(args: StatusArgs) -> anyhow::Result<i32> {
    let out = call(&args.target, "GET", "/ferry/v1/status", None)?;
    println!("{}", serde_json::to_string_pretty(&out)?);
    Ok(0)
}

/// A path segment or query value, percent-encoded.
fn percent_encode(s: &str) -> String {
    ferry_mesh::api::auth::uri_encode(s, false)
}

#[cfg(test)]
mod tests {
    #[test]
    fn kinds_by_every_name() {
        for (given, kind) in [
            ("vs", "VirtualService"),
            ("virtualservices", "VirtualService"),
            ("VirtualNode", "VirtualNode"),
            ("meshes", "Mesh"),
            ("gr", "GatewayRoute"),
            ("routes", "Route"),
        ] {
            assert_eq!(super::kind_name(given).ok(), Some(kind), "{given}");
        }
        assert!(super::kind_name("pods").is_err());
    }
}
