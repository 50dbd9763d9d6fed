//! `envoy.filters.network.tcp_proxy`: bytes both ways between the downstream connection
//! and a host of the chosen cluster, closed after `idle_timeout` without traffic.

use crate::access_log::Logger;
use crate::stream_info::StreamInfo;
use crate::Snapshot;
pub mod config;

use config::TcpProxy;
use ferry_upstream::ClusterManager;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Instant, SystemTime};
use tokio::io::{AsyncReadExt, AsyncWriteExt};

crate::filter_factory::filter_factory! {
    name: "envoy.filters.network.tcp_proxy",
    config_type: "envoy.extensions.filters.network.tcp_proxy.v3.TcpProxy",
    config: TcpProxy,
}

impl ferry_config::filters::NetworkFilterFactory for Factory {
    fn terminal(&self) -> bool {
        true
    }
    fn clusters(&self, config: &ferry_config::filters::FilterConfig) -> Vec<String> {
        config
            .downcast_ref::<TcpProxy>()
            .map(|t| t.clusters.iter().map(|(c, _)| c.clone()).collect())
            .unwrap_or_default()
    }
}

impl super::NetworkFilterFactory for Factory {
    fn build(
        &self,
        config: &ferry_config::filters::FilterConfig,
        snapshot: &Snapshot,
    ) -> Option<super::NetworkFilterRuntime> {
        let config = config.clone().downcast::<TcpProxy>().ok()?;
        Some(super::NetworkFilterRuntime::Terminal(Arc::new(
            TcpProxyRuntime::new(config, snapshot),
        )))
    }
}

impl super::TerminalFilter for TcpProxyRuntime {
    fn serve(
        self: Arc<Self>,
        downstream: super::Downstream,
    ) -> std::pin::Pin<Box<dyn std::future::Future<Output = ()> + Send>> {
        Box::pin(serve(self, downstream))
    }
}

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
            loggers: config
                .access_logs
                .iter()
                .map(|l| Logger::new(l, snapshot))
                .collect(),
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
pub(crate) async fn serve(rt: Arc<TcpProxyRuntime>, connection: super::Downstream) {
    let super::Downstream {
        stream: downstream,
        peer,
        local,
        buffer_limit,
        ..
    } = connection;
    let start = Instant::now();
    let mut info = StreamInfo {
        log_type: ferry_config::access_log_filter::LogType::TcpConnectionEnd,
        start_time: Some(SystemTime::now()),
        downstream_remote: Some(peer),
        downstream_local: Some(local),
        ..Default::default()
    };
    let cluster = rt.pick_cluster().and_then(|c| rt.clusters.get(c));
    let Some(cluster) = cluster else {
        info.response_flags
            .set(ferry_config::ResponseFlag::NoClusterFound);
        return log(&rt, info, start);
    };
    info.upstream_cluster = Some(cluster.name.clone());
    let Some(host) = cluster.choose_host(None) else {
        info.response_flags
            .set(ferry_config::ResponseFlag::NoHealthyUpstream);
        return log(&rt, info, start);
    };
    info.upstream_host = Some(host.address);
    info.attempt_count = 1;
    info.host = Some(host.clone());
    // The admission holds the connection's place in `max_connections` until it closes.
    let (upstream, _admission) = match host.connect_tcp(&cluster).await {
        Ok(s) => s,
        Err(e) => {
            tracing::debug!(%peer, error = %e, "tcp_proxy upstream connect failed");
            info.response_flags.set(e.response_flag());
            return log(&rt, info, start);
        }
    };
    let _ = upstream.set_nodelay(true);
    // The two directions run independently (a peer that stops reading stalls only its
    // own direction); a watchdog closes both after `idle_timeout` without traffic.
    let activity = Arc::new(AtomicU64::new(0));
    let (dr, dw) = downstream.into_split();
    let (ur, uw) = upstream.into_split();
    // Each direction holds at most one read of `chunk` bytes not yet written: the
    // listener's and the cluster's `per_connection_buffer_limit_bytes` both hold.
    let chunk = chunk_size(
        buffer_limit,
        cluster.config.per_connection_buffer_limit_bytes,
    );
    let up = pipe(dr, uw, activity.clone(), start, chunk);
    let down = pipe(ur, dw, activity.clone(), start, chunk);
    let both = async { tokio::join!(up, down) };
    let watchdog = async {
        let Some(idle) = rt.config.idle_timeout else {
            return std::future::pending().await;
        };
        loop {
            let last = start + std::time::Duration::from_nanos(activity.load(Ordering::Relaxed));
            let deadline = last.max(start) + idle;
            if deadline <= Instant::now() {
                return;
            }
            tokio::time::sleep_until(deadline.into()).await;
        }
    };
    tokio::select! {
        (received, sent) = both => {
            info.bytes_received = received;
            info.bytes_sent = sent;
            info.response_complete = true;
        }
        () = watchdog => {
            tracing::debug!(%peer, "tcp_proxy idle timeout");
        }
    }
    log(&rt, info, start);
}

/// Copies one direction until EOF or an error, then half-closes the writer. Returns the
/// bytes copied; records activity (nanoseconds since `start`) for the idle watchdog.
async fn pipe(
    mut from: tokio::net::tcp::OwnedReadHalf,
    mut to: tokio::net::tcp::OwnedWriteHalf,
    activity: Arc<AtomicU64>,
    start: Instant,
    chunk: usize,
) -> u64 {
    let mut buf = vec![0u8; chunk];
    let mut total = 0u64;
    loop {
        match from.read(&mut buf).await {
            Ok(0) | Err(_) => break,
            Ok(n) => {
                activity.store(start.elapsed().as_nanos() as u64, Ordering::Relaxed);
                if to.write_all(&buf[..n]).await.is_err() {
                    break;
                }
                total += n as u64;
                activity.store(start.elapsed().as_nanos() as u64, Ordering::Relaxed);
            }
        }
    }
    let _ = to.shutdown().await;
    total
}

/// The read size of a pipe: 16 KiB (Envoy's read slice), less when a connection's
/// buffer limit is smaller (0 means no limit).
fn chunk_size(listener_limit: u32, cluster_limit: u32) -> usize {
    [16 * 1024, listener_limit, cluster_limit]
        .into_iter()
        .filter(|l| *l > 0)
        .min()
        .unwrap_or(16 * 1024) as usize
}

fn log(rt: &TcpProxyRuntime, mut info: StreamInfo, start: Instant) {
    info.duration = Some(start.elapsed());
    for l in &rt.loggers {
        l.log(&info);
    }
}
