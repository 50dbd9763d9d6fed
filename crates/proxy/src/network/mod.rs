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

/// What a connection's listener asks of it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Drain {
    /// Serve on.
    Serving,
    /// The listener was updated in place (as Envoy drains over `--drain-time-s`): an
    /// HTTP/1.1 connection says `connection: close` on its next response and is closed
    /// when still idle at the end of the drain time, so that a client sending on a kept
    /// connection is not cut off; HTTP/2 gets its GOAWAY at once.
    Updated,
    /// The listener stops (removed, moved, the server drains): close gracefully now.
    Closing,
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
    /// Whether (and how) the connection must close: its listener was updated, or it
    /// stops.
    pub drain: tokio::sync::watch::Receiver<Drain>,
    /// `--drain-time-s`: how long an updated listener's HTTP/1.1 connections may stay
    /// idle before they are closed.
    pub drain_time: std::time::Duration,
    /// Turns true when the server drains (whatever became of the listener).
    pub shutdown: tokio::sync::watch::Receiver<bool>,
}
