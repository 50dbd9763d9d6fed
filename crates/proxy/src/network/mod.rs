//! Network filters: the terminal filter of a filter chain.

pub(crate) mod h1_guard;
pub mod hcm;
pub mod local_ratelimit;
pub mod tcp_proxy;

use ferry_config::filters::FilterConfig;
use std::net::SocketAddr;
use std::sync::Arc;

/// A network filter before the terminal one (Envoy's read filter): it sees each new
/// connection first.
pub trait ReadFilter: Send + Sync {
    /// Whether the connection may proceed (false: it is closed at once).
    fn on_new_connection(&self) -> bool;
}

/// A read filter as registered: its config conversion and how its runtime is built.
pub trait ReadFilterFactory: ferry_config::filters::ReadFilterFactory {
    /// Builds the filter (None: `config` is not this filter's).
    fn build(
        &self,
        config: &FilterConfig,
        store: &ferry_stats::Store,
    ) -> Option<Arc<dyn ReadFilter>>;
}

/// Every network read filter, by Envoy name and config type.
pub static READ_FILTERS: &[&dyn ReadFilterFactory] = &[&local_ratelimit::Factory];

/// The registered read filter whose config type is `config_type`.
pub fn read_filter_factory(config_type: &str) -> Option<&'static dyn ReadFilterFactory> {
    READ_FILTERS
        .iter()
        .copied()
        .find(|f| f.config_type() == config_type)
}

/// Builds a filter chain's read filter.
pub fn build_read_filter(
    f: &ferry_config::filters::ReadFilter,
    store: &ferry_stats::Store,
) -> Option<Arc<dyn ReadFilter>> {
    read_filter_factory(f.config_type)?.build(&f.config, store)
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
