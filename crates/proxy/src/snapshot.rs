//! An immutable view of the running configuration.

use ferry_config::Bootstrap;
use ferry_upstream::ClusterManager;
use std::sync::Arc;

/// What a connection needs from the config, fixed for its lifetime.
#[derive(Clone)]
pub struct Snapshot {
    /// The validated bootstrap.
    pub bootstrap: Arc<Bootstrap>,
    /// Clusters built from it.
    pub clusters: Arc<ClusterManager>,
    /// The decoded bootstrap as JSON, for `/config_dump`.
    pub config_json: Arc<serde_json::Value>,
}

impl std::fmt::Debug for Snapshot {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Snapshot")
            .field("listeners", &self.bootstrap.listeners.len())
            .field("clusters", &self.bootstrap.clusters.len())
            .finish()
    }
}
