//! `ferry control-plane`: App Mesh's REST API over the store (embedded by default).
//! Serving xDS to proxies comes with the translator (issue 14).

use anyhow::{bail, Context};
use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::Arc;

/// `ferry control-plane` flags.
#[derive(clap::Args, Debug)]
pub struct ControlPlaneArgs {
    /// Where App Mesh's REST API listens.
    #[arg(long = "api", default_value = "127.0.0.1:15080")]
    api: SocketAddr,
    /// Where the store keeps its data (default: the user's data directory,
    /// `$XDG_DATA_HOME/ferrymesh` or `~/.local/share/ferrymesh`).
    #[arg(long = "data-dir")]
    data_dir: Option<PathBuf>,
    /// The store: `embedded` (a durable file in the data directory).
    #[arg(long = "store", default_value = "embedded")]
    store: String,
    /// The region ARNs name.
    #[arg(long = "region", default_value = "local")]
    region: String,
    /// The 12-digit account id ARNs and owners name.
    #[arg(long = "account-id", default_value = "000000000000")]
    account_id: String,
    /// Log level: trace, debug, info, warn, error.
    #[arg(short = 'l', long = "log-level", default_value = "info")]
    log_level: String,
}

/// The user's data directory for ferrymesh.
fn default_data_dir() -> anyhow::Result<PathBuf> {
    if let Some(d) = std::env::var_os("XDG_DATA_HOME").filter(|d| !d.is_empty()) {
        return Ok(PathBuf::from(d).join("ferrymesh"));
    }
    let home = std::env::var_os("HOME").context("neither XDG_DATA_HOME nor HOME is set")?;
    Ok(PathBuf::from(home).join(".local/share/ferrymesh"))
}

/// Runs the control plane until it is killed.
pub fn run(args: ControlPlaneArgs) -> anyhow::Result<i32> {
    crate::init_logging(&args.log_level);
    if args.store != "embedded" {
        bail!("--store {}: only `embedded` is available yet", args.store);
    }
    if args.account_id.len() != 12 || !args.account_id.bytes().all(|b| b.is_ascii_digit()) {
        bail!("--account-id {}: must be 12 digits", args.account_id);
    }
    let data_dir = match args.data_dir {
        Some(d) => d,
        None => default_data_dir()?,
    };
    let path = data_dir.join("store.redb");
    let store = ferry_mesh::store::embedded::Embedded::open(&path)
        .map_err(|e| anyhow::anyhow!("{}: {e}", path.display()))?;
    let account = ferry_mesh::model::Account {
        region: args.region,
        id: args.account_id,
    };
    let api = ferry_mesh::api::Api::new(Arc::new(store), account);
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()?;
    runtime.block_on(async move {
        let listener = tokio::net::TcpListener::bind(args.api)
            .await
            .with_context(|| format!("--api {}", args.api))?;
        tracing::info!(api = %args.api, store = %path.display(), "control plane serving App Mesh's API");
        api.serve(listener).await;
        Ok(0)
    })
}
