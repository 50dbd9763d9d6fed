//! The ferry data plane.
//!
//! ```text
//! accept (listener) → filter-chain match → network filter
//!    tcp_proxy ───────────────────────────────► upstream TCP
//!    http_connection_manager: codec (HTTP/1.1 | HTTP/2 | auto) → per stream:
//!      router: route match (vhost → route) → cluster → LB pick → pool → upstream
//!    access log written and trace span ended when the response body ends
//! ```
//!
//! Config arrives as an immutable [`Snapshot`], published through an `ArcSwap`; a
//! connection keeps the snapshot it was accepted with.

pub mod access_log;
pub mod admin;
pub mod extensions;
mod filter_factory;
mod grpc_client;
pub mod grpc_status;
pub mod http;
pub mod listener;
pub mod network;
mod otlp;
mod server;
mod sinks;
mod snapshot;
pub mod stats;
pub mod stream_info;
#[cfg(test)]
mod testing;
pub mod token_bucket;
pub mod trace;
mod xds;

pub use extensions::load;
pub use server::{Server, ServerOptions};
pub use snapshot::Snapshot;
