//! Network filters: the terminal filter of a filter chain.

pub(crate) mod h1_guard;
pub mod hcm;
pub mod local_ratelimit;
pub mod tcp_proxy;

use std::net::SocketAddr;

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
