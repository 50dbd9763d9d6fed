//! `ferry`: the ferrymesh binary. Thin: it parses flags and calls the crates.

mod client;
mod control_plane;
mod demo;
mod memory;

use anyhow::{bail, Context};
use clap::{Parser, Subcommand};
use std::path::PathBuf;
use std::time::Duration;

#[derive(Parser, Debug)]
#[command(
    name = "ferry",
    version,
    about = "ferrymesh: an Envoy-compatible proxy and an App Mesh-style control plane"
)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand, Debug)]
enum Command {
    /// Run the proxy on an Envoy v3 (or legacy v2) bootstrap file, as Envoy does.
    Proxy(ProxyArgs),
    /// Check a bootstrap file; print every problem with its field path.
    Validate {
        /// The bootstrap file (YAML, or JSON for `.json`).
        file: PathBuf,
    },
    /// Run the local demo: the founding document's configuration in front of a built-in backend.
    Demo(demo::DemoArgs),
    /// Run the control plane: App Mesh's REST API over its store.
    ControlPlane(control_plane::ControlPlaneArgs),
    /// Create or update the resources of files and directories in the control plane,
    /// all in one transaction (ferrymesh YAML/JSON, AWS CLI input JSON, CloudFormation,
    /// App Mesh controller manifests).
    Apply(client::ApplyArgs),
    /// Delete the resources of files and directories from the control plane, in one
    /// transaction.
    Delete(client::ApplyArgs),
    /// List resources of a kind.
    Get(client::GetArgs),
    /// Print a resource as App Mesh's Describe operation returns it.
    Describe(client::DescribeArgs),
    /// Print resources in a format `ferry apply` reads: ferrymesh, appmesh-cli or
    /// cloudformation.
    Export(client::ExportArgs),
    /// Print the control plane's store, what its watch has seen, and resource counts.
    Status(client::StatusArgs),
    /// Register an instance of a virtual node (address, port, attributes, health),
    /// which the proxies that call the node reach by EDS.
    Register(client::InstanceArgs),
    /// Deregister an instance of a virtual node.
    Deregister(client::InstanceArgs),
    /// List the registered instances of a virtual node.
    Instances(client::InstanceArgs),
    /// Print what ferry implements of Envoy's API: the extensions and, per message, the
    /// fields its converters accept (Markdown, as in docs/envoy-compat.md).
    Support,
}

/// Envoy's command line, as far as ferry implements it.
#[derive(Parser, Debug)]
struct ProxyArgs {
    /// Path to the bootstrap file (`-c`, `--config-path`).
    #[arg(short = 'c', long = "config-path")]
    config_path: Option<PathBuf>,
    /// Bootstrap as a YAML string, merged over the file (here: used when no file is given).
    #[arg(long = "config-yaml")]
    config_yaml: Option<String>,
    /// Log level: trace, debug, info, warning/warn, error, critical, off.
    #[arg(short = 'l', long = "log-level", default_value = "info")]
    log_level: String,
    /// Overrides `node.id`.
    #[arg(long = "service-node")]
    service_node: Option<String>,
    /// Overrides `node.cluster`.
    #[arg(long = "service-cluster")]
    service_cluster: Option<String>,
    /// `serve` (default) or `validate`.
    #[arg(long = "mode", default_value = "serve")]
    mode: String,
    /// Worker threads; default: the CPUs available to this process (cgroup quota and affinity).
    #[arg(long = "concurrency")]
    concurrency: Option<usize>,
    /// Seconds to let in-flight requests finish after SIGTERM.
    #[arg(long = "drain-time-s", default_value_t = 600)]
    drain_time_s: u64,
    /// Accepted for Envoy compatibility (ferry needs no shared memory).
    #[arg(long = "base-id")]
    base_id: Option<u64>,
    /// Accepted for Envoy compatibility.
    #[arg(long = "use-dynamic-base-id")]
    use_dynamic_base_id: bool,
}

fn main() {
    let cli = Cli::parse();
    let code = match run(cli) {
        Ok(code) => code,
        Err(e) => {
            eprintln!("error: {e:#}");
            1
        }
    };
    std::process::exit(code);
}

fn run(cli: Cli) -> anyhow::Result<i32> {
    match cli.command {
        Command::Validate { file } => Ok(validate(&file)),
        Command::Proxy(args) => proxy(args),
        Command::Demo(args) => demo::run(args),
        Command::ControlPlane(args) => control_plane::run(args),
        Command::Apply(args) => client::apply(args, false),
        Command::Delete(args) => client::apply(args, true),
        Command::Get(args) => client::get(args),
        Command::Describe(args) => client::describe(args),
        Command::Export(args) => client::export(args),
        Command::Status(args) => client::status(args),
        Command::Register(args) => client::register(args, false),
        Command::Deregister(args) => client::register(args, true),
        Command::Instances(args) => client::instances(args),
        Command::Support => {
            print!("{}", support());
            Ok(0)
        }
    }
}

fn init_logging(level: &str) {
    let level = match level {
        "warning" => "warn",
        "critical" => "error",
        other => other,
    };
    let filter = tracing_subscriber::EnvFilter::try_new(level)
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info"));
    let _ = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr)
        .try_init();
}

/// Loads a config from a file, printing warnings; errors are printed one per line.
fn load_file(path: &std::path::Path) -> Result<ferry_config::Loaded, String> {
    let text = std::fs::read_to_string(path).map_err(|e| format!("{}: {e}", path.display()))?;
    load_text(&text, ferry_config::Format::from_path(path))
}

fn load_text(text: &str, format: ferry_config::Format) -> Result<ferry_config::Loaded, String> {
    let loaded = ferry_proxy::load(text, format).map_err(|e| e.to_string())?;
    for w in &loaded.warnings {
        eprintln!("warning: {w}");
    }
    Ok(loaded)
}

/// Runs a config load on a thread of its own and copies the result back.
///
/// Decoding allocates much that is freed right after (the descriptor pool, the
/// intermediate messages); on a thread of its own, that garbage stays apart from what
/// the main thread keeps, and `memory::release_freed` returns it once the server runs.
/// The thread gets the main thread's 8 MiB stack: deeply nested configs recurse.
pub(crate) fn off_thread(
    load: impl FnOnce() -> Result<ferry_config::Loaded, String> + Send + 'static,
) -> Result<ferry_config::Loaded, String> {
    let loaded = std::thread::Builder::new()
        .name("config-load".into())
        .stack_size(8 << 20)
        .spawn(load)
        .map_err(|e| format!("cannot start the config loading thread: {e}"))?
        .join()
        .unwrap_or_else(|_| Err("loading the configuration failed (panic)".to_string()))?;
    Ok(loaded)
}

/// `-c FILE --config-yaml STRING`: the string is merged over the file, as Envoy does.
fn merged(path: &std::path::Path, overlay: &str) -> Result<ferry_config::Loaded, String> {
    use ferry_config::envoy_api::{merge, parse_document};
    let text = std::fs::read_to_string(path).map_err(|e| format!("{}: {e}", path.display()))?;
    let mut base =
        parse_document(&text, ferry_config::Format::from_path(path)).map_err(|e| e.to_string())?;
    let over = parse_document(overlay, ferry_config::Format::Yaml)
        .map_err(|e| format!("--config-yaml: {e}"))?;
    merge(&mut base, over);
    load_text(&base.to_string(), ferry_config::Format::Json)
}

/// The two generated sections of docs/envoy-compat.md: the extension table's rows and
/// the accepted fields by message.
fn support() -> String {
    use ferry_config::support;
    format!(
        "{}{}\n{}",
        SUPPORT_EXTENSIONS_HEADER,
        support::extension_table(),
        support::field_list()
    )
}

const SUPPORT_EXTENSIONS_HEADER: &str = "| extension name | config type |\n|---|---|\n";

fn validate(file: &std::path::Path) -> i32 {
    match load_file(file) {
        Ok(_) => {
            println!("configuration '{}' OK", file.display());
            0
        }
        Err(e) => {
            println!("{e}");
            1
        }
    }
}

/// The CPUs this process may use: std reads the affinity mask and the cgroup quota.
fn available_cpus() -> usize {
    std::thread::available_parallelism()
        .map(|n| n.get())
        .unwrap_or(1)
}

fn proxy(args: ProxyArgs) -> anyhow::Result<i32> {
    init_logging(&args.log_level);
    let (path, yaml) = (args.config_path.clone(), args.config_yaml.clone());
    let loaded = match (path, yaml) {
        (None, None) => bail!("a bootstrap is required: -c FILE or --config-yaml STRING"),
        (Some(p), None) => off_thread(move || load_file(&p)),
        (None, Some(y)) => off_thread(move || load_text(&y, ferry_config::Format::Yaml)),
        (Some(p), Some(y)) => off_thread(move || merged(&p, &y)),
    };
    let loaded = match loaded {
        Ok(l) => l,
        Err(e) => {
            eprintln!("{e}");
            return Ok(1);
        }
    };
    if args.mode == "validate" {
        println!("configuration OK");
        return Ok(0);
    }
    if args.mode != "serve" {
        bail!("--mode {} is not supported (serve, validate)", args.mode);
    }
    let concurrency = args
        .concurrency
        .filter(|n| *n > 0)
        .unwrap_or_else(available_cpus);
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(concurrency)
        .enable_all()
        .build()
        .context("starting the runtime")?;
    let options = ferry_proxy::ServerOptions {
        service_node: args.service_node,
        service_cluster: args.service_cluster,
        drain_time: Duration::from_secs(args.drain_time_s),
        concurrency,
        memory: Some(memory::stats),
    };
    runtime.block_on(serve(loaded, options))
}

/// Serves until SIGTERM/SIGINT (drain, then exit 0) or `/quitquitquit` (exit 0);
/// SIGUSR1 reopens the log files.
pub(crate) async fn serve(
    loaded: ferry_config::Loaded,
    options: ferry_proxy::ServerOptions,
) -> anyhow::Result<i32> {
    use tokio::signal::unix::{signal, SignalKind};
    memory::init();
    // Installed before the listeners open, so that a SIGUSR1 never finds the default
    // action (exit) in place.
    let mut usr1 = signal(SignalKind::user_defined1()).context("SIGUSR1 handler")?;
    let server = ferry_proxy::Server::start(loaded, options).await?;
    // SIGUSR1 reopens the log files (logrotate's move-then-signal), as in Envoy.
    let reopener = server.clone();
    tokio::spawn(async move {
        while usr1.recv().await.is_some() {
            tracing::info!("SIGUSR1: reopening log files");
            reopener.reopen_logs();
        }
    });
    // Start-up garbage (the config's decoding) goes back to the system now.
    memory::release_freed();
    for (name, addr) in server.bound() {
        tracing::info!(listener = %name, %addr, "listening");
    }
    if let Some(a) = server.admin_addr {
        tracing::info!(%a, "admin listening");
    }
    let mut term = signal(SignalKind::terminate()).context("SIGTERM handler")?;
    let mut int = signal(SignalKind::interrupt()).context("SIGINT handler")?;
    tokio::select! {
        _ = term.recv() => {
            tracing::info!("SIGTERM: draining");
            server.drain_and_wait().await;
        }
        _ = int.recv() => {
            tracing::info!("SIGINT: draining");
            server.drain_and_wait().await;
        }
        _ = server.shutdown_requested() => {
            tracing::info!("quitquitquit: exiting");
        }
    }
    Ok(0)
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::expect_used)]

    /// docs/envoy-compat.md shows what the converters declare, verbatim
    /// (`scripts/gen-supported-fields.py` rewrites it from `ferry support`).
    #[test]
    fn compat_doc_is_generated_from_the_converters() {
        let doc = std::fs::read_to_string(concat!(
            env!("CARGO_MANIFEST_DIR"),
            "/../../docs/envoy-compat.md"
        ))
        .unwrap();
        let generated = super::support();
        let (extensions, fields) = generated.split_once("\n\n").unwrap();
        for section in [extensions, fields] {
            assert!(
                doc.contains(section),
                "docs/envoy-compat.md is stale: run scripts/gen-supported-fields.py"
            );
        }
    }

    /// Every message a config can reach through accepted fields (from the bootstrap, and
    /// from each accepted extension's config) is declared by a converter: none is let
    /// through unchecked. `google.protobuf` types are values.
    #[test]
    fn every_reachable_message_is_declared() {
        let accepted = ferry_config::support::accepted();
        let pool = ferry_config::envoy_api::pool();
        let mut todo: Vec<String> = vec!["envoy.config.bootstrap.v3.Bootstrap".into()];
        todo.extend(
            ferry_config::support::extensions()
                .into_iter()
                .map(|(_, t)| t),
        );
        let mut seen = std::collections::HashSet::new();
        let mut missing = Vec::new();
        while let Some(name) = todo.pop() {
            if !seen.insert(name.clone()) || name.starts_with("google.protobuf.") {
                continue;
            }
            let Some(fields) = accepted.get(&name) else {
                missing.push(name);
                continue;
            };
            let desc = pool.get_message_by_name(&name).unwrap();
            for f in fields {
                let field = desc.get_field_by_name(f).unwrap();
                if let ferry_config::envoy_api::prost_reflect::Kind::Message(m) = field.kind() {
                    // A map's entries: its value type.
                    let m = if m.is_map_entry() {
                        match m.map_entry_value_field().kind() {
                            ferry_config::envoy_api::prost_reflect::Kind::Message(v) => v,
                            _ => continue,
                        }
                    } else {
                        m
                    };
                    todo.push(m.full_name().to_string());
                }
            }
        }
        missing.sort();
        assert!(
            missing.is_empty(),
            "accepted but not declared: {missing:#?}"
        );
    }

    /// A message declared in several places accepts the same fields everywhere.
    #[test]
    fn declarations_of_a_message_agree() {
        for (message, places) in ferry_config::support::declarations() {
            for p in &places {
                let mut a = p.clone();
                let mut b = places[0].clone();
                a.sort();
                b.sort();
                assert_eq!(a, b, "{message} is declared differently in two places");
            }
        }
    }
}
