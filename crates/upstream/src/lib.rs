//! The cluster manager of a ferry proxy: clusters built from the validated config,
//! host discovery (`STATIC`, `STRICT_DNS`, `LOGICAL_DNS`), load balancers
//! (`lb::*`) and per-host upstream connection pools (`pool`).
//!
//! Host health comes from active health checking (`health`), outlier detection
//! (`outlier`) and the endpoints' EDS status; the host set is rebuilt and republished
//! when it changes, with Envoy's priority loads and panic mode.
//!
//! Hot path: `Cluster::choose_host` reads an `ArcSwap` snapshot of the host set and
//! uses atomics; `Host::send` takes a short `parking_lot` critical section to check
//! out a pooled connection, and reports each attempt's outcome to outlier detection
//! with relaxed atomics.

pub mod circuit_breaker;
mod cluster;
mod cluster_manager;
pub mod counted_io;
mod discovery;
mod error;
mod event_log;
pub mod health;
mod host;
mod lb;
pub mod log_file;
mod outlier;
mod pool;
mod stats;

pub use cluster::Cluster;
pub use cluster_manager::{ClusterManager, ClusterSlot, Options as ClusterManagerOptions};
pub use error::UpstreamError;
pub use host::{Host, HostStats};
pub use pool::{ConnectionInfo, Dispatch};
pub use stats::{ClusterStats, HealthCheckStats, OutlierStats};

/// The boxed error type of request and response bodies.
pub type BoxError = Box<dyn std::error::Error + Send + Sync>;
/// The request body type sent upstream.
pub type Body = http_body_util::combinators::BoxBody<bytes::Bytes, BoxError>;
