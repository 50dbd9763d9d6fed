//! gRPC clients of `envoy_grpc` clusters (Envoy's `Grpc::AsyncClientManager`): the
//! channels that OTLP metrics, OTLP access logs and the OpenTelemetry tracer use, and
//! that any other gRPC service of ferry's (an xDS client) can use the same way.

use ferry_config::grpc_service::GrpcTarget;
use ferry_upstream::ClusterManager;
use std::collections::HashMap;
use std::net::SocketAddr;
use tonic::transport::{Channel, Endpoint};

/// gRPC channels to the hosts of an `envoy_grpc` cluster: each call goes to a host the
/// cluster's load balancer picks; a host's channel is made once and kept. Calls carry
/// the configured `:authority` (the cluster's name by default), as Envoy's.
#[derive(Debug)]
pub(crate) struct ClusterChannels {
    cluster: String,
    authority: String,
    channels: parking_lot::Mutex<HashMap<SocketAddr, Channel>>,
}

impl ClusterChannels {
    pub(crate) fn new(target: &GrpcTarget) -> ClusterChannels {
        ClusterChannels {
            cluster: target.cluster.clone(),
            authority: target.authority.clone(),
            channels: Default::default(),
        }
    }

    /// The cluster's name.
    pub(crate) fn cluster(&self) -> &str {
        &self.cluster
    }

    /// A channel to a host of the cluster (None when it has none).
    pub(crate) fn channel(&self, clusters: &ClusterManager) -> Option<Channel> {
        let cluster = clusters.get(&self.cluster)?;
        let host = cluster.choose_host(None)?;
        let mut channels = self.channels.lock();
        if let Some(ch) = channels.get(&host.address) {
            return Some(ch.clone());
        }
        let ch = Endpoint::from_shared(format!("http://{}", host.address))
            .ok()?
            .origin(format!("http://{}", self.authority).parse().ok()?)
            .connect_timeout(cluster.config.connect_timeout)
            .connect_lazy();
        channels.insert(host.address, ch.clone());
        Some(ch)
    }
}
