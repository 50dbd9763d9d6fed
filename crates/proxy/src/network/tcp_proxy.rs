//! `envoy.filters.network.tcp_proxy`: bytes both ways between the downstream connection
//! and a host of the chosen cluster, closed after `idle_timeout` without traffic.

use crate::access_log::{Logger, StreamInfo};
use crate::server::Server;
use crate::Snapshot;
use ferry_config::listener::TcpProxy;
use ferry_upstream::ClusterManager;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::{Instant, SystemTime};
use tokio::io::{AsyncReadExt, AsyncWriteExt};

/// A TCP proxy ready to serve.
pub struct TcpProxyRuntime {
    /// The validated config.
    pub config: Arc<TcpProxy>,
    /// Clusters of the snapshot.
    pub clusters: Arc<ClusterManager>,
    /// Access loggers.
    pub loggers: Vec<Logger>,
    total_weight: u64,
}

impl TcpProxyRuntime {
    /// Builds the runtime.
    pub fn new(config: Arc<TcpProxy>, snapshot: &Snapshot) -> TcpProxyRuntime {
        TcpProxyRuntime {
            total_weight: config.clusters.iter().map(|(_, w)| *w as u64).sum(),
            loggers: config.access_logs.iter().map(Logger::new).collect(),
            config,
            clusters: snapshot.clusters.clone(),
        }
    }

    fn pick_cluster(&self) -> Option<&str> {
        if self.config.clusters.len() == 1 {
            return self.config.clusters.first().map(|(c, _)| c.as_str());
        }
        let mut pick = rand::random_range(0..self.total_weight.max(1));
        for (c, w) in &self.config.clusters {
            if pick < *w as u64 {
                return Some(c);
            }
            pick -= *w as u64;
        }
        None
    }
}

/// Proxies one connection.
pub(crate) async fn serve(
    _server: &Arc<Server>,
    rt: Arc<TcpProxyRuntime>,
    mut downstream: tokio::net::TcpStream,
    peer: SocketAddr,
    local: SocketAddr,
) {
    let start = Instant::now();
    let mut info = StreamInfo {
        start_time: Some(SystemTime::now()),
        downstream_remote: Some(peer),
        downstream_local: Some(local),
        ..Default::default()
    };
    let cluster = rt.pick_cluster().and_then(|c| rt.clusters.get(c)).cloned();
    let Some(cluster) = cluster else {
        info.response_flags.push("NC");
        return log(&rt, info, start);
    };
    info.upstream_cluster = Some(cluster.config.name.clone());
    let Some(host) = cluster.choose_host(None) else {
        info.response_flags.push("UH");
        return log(&rt, info, start);
    };
    info.upstream_host = Some(host.address);
    let mut upstream = match host.connect_tcp(&cluster).await {
        Ok(s) => s,
        Err(e) => {
            tracing::debug!(%peer, error = %e, "tcp_proxy upstream connect failed");
            info.response_flags.push("UF");
            return log(&rt, info, start);
        }
    };
    let _ = upstream.set_nodelay(true);
    let (mut dr, mut dw) = downstream.split();
    let (mut ur, mut uw) = upstream.split();
    let mut down_buf = vec![0u8; 16 * 1024];
    let mut up_buf = vec![0u8; 16 * 1024];
    let (mut down_open, mut up_open) = (true, true);
    let idle = rt.config.idle_timeout;
    while down_open || up_open {
        let idle_sleep = async {
            match idle {
                Some(d) => tokio::time::sleep(d).await,
                None => std::future::pending().await,
            }
        };
        tokio::select! {
            r = dr.read(&mut down_buf), if down_open => match r {
                Ok(0) | Err(_) => { down_open = false; let _ = uw.shutdown().await; }
                Ok(n) => {
                    info.bytes_received += n as u64;
                    if uw.write_all(&down_buf[..n]).await.is_err() { break; }
                }
            },
            r = ur.read(&mut up_buf), if up_open => match r {
                Ok(0) | Err(_) => { up_open = false; let _ = dw.shutdown().await; }
                Ok(n) => {
                    info.bytes_sent += n as u64;
                    if dw.write_all(&up_buf[..n]).await.is_err() { break; }
                }
            },
            _ = idle_sleep => {
                tracing::debug!(%peer, "tcp_proxy idle timeout");
                break;
            }
        }
    }
    log(&rt, info, start);
}

fn log(rt: &TcpProxyRuntime, mut info: StreamInfo, start: Instant) {
    info.duration = Some(start.elapsed());
    for l in &rt.loggers {
        l.log(&info);
    }
}
