//! `ferry control-plane`: App Mesh's REST API (and ferrymesh's own operations, which
//! the `ferry` client commands use) over the store: embedded by default, or etcd for
//! several replicas. Serving xDS to proxies comes with the translator (issue 14).

use anyhow::{bail, Context};
use ferry_mesh::api::auth::Auth;
use ferry_mesh::store::embedded::Embedded;
use ferry_mesh::store::etcd::Etcd;
use ferry_mesh::store::Store;
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
    /// The store: `embedded` (a durable file in the data directory) or `etcd` (an etcd
    /// cluster that several control-plane replicas share).
    #[arg(long = "store", default_value = "embedded")]
    store: String,
    /// The etcd cluster's client URLs, comma-separated (with `--store etcd`).
    #[arg(
        long = "etcd-endpoints",
        value_delimiter = ',',
        default_value = "http://127.0.0.1:2379"
    )]
    etcd_endpoints: Vec<String>,
    /// The prefix of the control plane's keys in etcd.
    #[arg(long = "etcd-prefix", default_value = ferry_mesh::store::etcd::DEFAULT_PREFIX)]
    etcd_prefix: String,
    /// The region ARNs name.
    #[arg(long = "region", default_value = "local")]
    region: String,
    /// The 12-digit account id ARNs and owners name.
    #[arg(long = "account-id", default_value = "000000000000")]
    account_id: String,
    /// AWS's shared credentials file (`[profile]` sections with `aws_access_key_id`
    /// and `aws_secret_access_key`): requests must then be signed (SigV4) by one of its
    /// keys, or carry a token of `--token-file`.
    #[arg(long = "credentials-file")]
    credentials_file: Option<PathBuf>,
    /// A file of bearer tokens, one per line: requests may then carry
    /// `Authorization: Bearer <token>` (the `ferry` commands' `--token`).
    #[arg(long = "token-file")]
    token_file: Option<PathBuf>,
    /// How long a client may take to send a request's body (and, up to 10 s, its
    /// head) before it is answered 400 or disconnected.
    #[arg(long = "client-timeout-s", default_value_t = ferry_mesh::api::CLIENT_TIMEOUT.as_secs())]
    client_timeout_s: u64,
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

/// Opens the store the flags name.
async fn open_store(args: &ControlPlaneArgs) -> anyhow::Result<Arc<dyn Store>> {
    match args.store.as_str() {
        "embedded" => {
            let data_dir = match &args.data_dir {
                Some(d) => d.clone(),
                None => default_data_dir()?,
            };
            let path = data_dir.join("store.redb");
            let store =
                Embedded::open(&path).map_err(|e| anyhow::anyhow!("{}: {e}", path.display()))?;
            Ok(Arc::new(store))
        }
        "etcd" => {
            let store = Etcd::connect(&args.etcd_endpoints, &args.etcd_prefix)
                .await
                .map_err(|e| anyhow::anyhow!("--store etcd: {e}"))?;
            Ok(Arc::new(store))
        }
        other => bail!("--store {other}: must be `embedded` or `etcd`"),
    }
}

/// Who may call, from the flags.
fn auth(args: &ControlPlaneArgs) -> anyhow::Result<Auth> {
    let credentials = match &args.credentials_file {
        Some(path) => {
            let text = std::fs::read_to_string(path)
                .with_context(|| format!("--credentials-file {}", path.display()))?;
            ferry_mesh::api::auth::parse_credentials(&text)
                .map_err(|e| anyhow::anyhow!("--credentials-file {}: {e}", path.display()))?
        }
        None => Vec::new(),
    };
    let tokens = match &args.token_file {
        Some(path) => {
            let text = std::fs::read_to_string(path)
                .with_context(|| format!("--token-file {}", path.display()))?;
            let tokens: Vec<String> = text
                .lines()
                .map(str::trim)
                .filter(|l| !l.is_empty() && !l.starts_with('#'))
                .map(str::to_string)
                .collect();
            if tokens.is_empty() {
                bail!("--token-file {}: no token in it", path.display());
            }
            tokens
        }
        None => Vec::new(),
    };
    let auth = Auth::new(credentials, tokens);
    if auth.is_open() && !args.api.ip().is_loopback() {
        tracing::warn!(
            api = %args.api,
            "the API listens beyond loopback and takes every request: give --credentials-file or --token-file"
        );
    }
    Ok(auth)
}

/// Runs the control plane until it is killed.
pub fn run(args: ControlPlaneArgs) -> anyhow::Result<i32> {
    crate::init_logging(&args.log_level);
    if args.account_id.len() != 12 || !args.account_id.bytes().all(|b| b.is_ascii_digit()) {
        bail!("--account-id {}: must be 12 digits", args.account_id);
    }
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()?;
    runtime.block_on(async move {
        let store = open_store(&args).await?;
        let account = ferry_mesh::model::Account {
            region: args.region.clone(),
            id: args.account_id.clone(),
        };
        let described = store.describe();
        let timeout = std::time::Duration::from_secs(args.client_timeout_s.max(1));
        let api = ferry_mesh::api::Api::new(store, account, auth(&args)?, timeout);
        let listener = tokio::net::TcpListener::bind(args.api)
            .await
            .with_context(|| format!("--api {}", args.api))?;
        tracing::info!(api = %args.api, store = %described, "control plane serving App Mesh's API");
        api.serve(listener).await;
        Ok(0)
    })
}
