//! Network filters: the terminal filter of a filter chain.

pub(crate) mod h1_guard;
pub mod hcm;
pub mod local_ratelimit;
pub mod tcp_proxy;

use crate::Snapshot;
use ferry_config::filters::FilterConfig;
use std::net::SocketAddr;
use std::sync::Arc;

/// A network filter before the terminal one (Envoy's read filter): it sees each new
/// connection first.
pub trait ReadFilter: Send + Sync {
    /// Whether the connection may proceed (false: it is closed at once).
    fn on_new_connection(&self) -> bool;
}

/// The last network filter of a chain: it serves the connection.
pub trait TerminalFilter: Send + Sync {
    /// Serves one connection to its end.
    fn serve(
        self: Arc<Self>,
        downstream: Downstream,
    ) -> std::pin::Pin<Box<dyn std::future::Future<Output = ()> + Send>>;
}

/// A network filter's runtime, as its factory built it.
pub enum NetworkFilterRuntime {
    /// Before the terminal filter.
    Read(Arc<dyn ReadFilter>),
    /// The last filter.
    Terminal(Arc<dyn TerminalFilter>),
}

/// A network filter as registered: its config conversion and how its runtime is built.
pub trait NetworkFilterFactory: ferry_config::filters::NetworkFilterFactory {
    /// Builds the filter against `snapshot` (None: `config` is not this filter's).
    fn build(&self, config: &FilterConfig, snapshot: &Snapshot) -> Option<NetworkFilterRuntime>;
}

/// Every network filter (but the HTTP connection manager, which is the core's), by
/// Envoy name and config type.
pub static NETWORK_FILTERS: &[&dyn NetworkFilterFactory] =
    &[&local_ratelimit::Factory, &tcp_proxy::Factory];

/// The registered network filter whose config type is `config_type`.
pub fn factory(config_type: &str) -> Option<&'static dyn NetworkFilterFactory> {
    NETWORK_FILTERS
        .iter()
        .copied()
        .find(|f| f.config_type() == config_type)
}

/// Builds a filter chain's network filter.
pub fn build(
    f: &ferry_config::filters::Filter,
    snapshot: &Snapshot,
) -> Option<NetworkFilterRuntime> {
    factory(f.config_type)?.build(&f.config, snapshot)
}

/// An accepted downstream connection as its network filter gets it: the socket, its
/// addresses, and the handles the filter uses — not the whole server.
#[derive(Debug)]
pub struct Downstream {
    /// The socket.
    pub stream: tokio::net::TcpStream,
    /// The client's address.
    pub peer: SocketAddr,
    /// Our address.
    pub local: SocketAddr,
    /// The listener's `per_connection_buffer_limit_bytes`.
    pub buffer_limit: u32,
    /// Turns true when the server starts draining.
    pub drain: tokio::sync::watch::Receiver<bool>,
}
