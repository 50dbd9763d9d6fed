//! The cluster manager of a ferry proxy: clusters built from the validated config,
//! host discovery (`STATIC`, `STRICT_DNS`, `LOGICAL_DNS`), load balancers
//! (`lb::*`) and per-host upstream connection pools (`pool`).
//!
//! Hot path: `Cluster::choose_host` reads an `ArcSwap` snapshot of the host set and
//! uses atomics; `Host::send` takes a short `parking_lot` critical section to check
//! out a pooled connection.

pub mod circuit_breaker;
mod cluster;
mod cluster_manager;
mod discovery;
mod error;
mod host;
mod lb;
mod pool;
mod stats;

pub use cluster::Cluster;
pub use cluster_manager::ClusterManager;
pub use error::UpstreamError;
pub use host::{Host, HostStats};
pub use stats::ClusterStats;

/// The boxed error type of request and response bodies.
pub type BoxError = Box<dyn std::error::Error + Send + Sync>;
/// The request body type sent upstream.
pub type Body = http_body_util::combinators::BoxBody<bytes::Bytes, BoxError>;
