//! `envoy.stat_sinks.statsd`: full names with the prefix, no tags; counters as the
//! delta since the last flush (`|c`, sent every flush once used), gauges (`|g`, once
//! used), one datagram per line over UDP, or newline-ended lines over TCP to a host of
//! `tcp_cluster_name`.
//!
//! Histograms: Envoy sends each sample as it is recorded; ferry keeps the request path
//! free of I/O and sends, at each flush, one `|ms` line per bucket that received
//! samples in the interval, with the bucket's midpoint as value and a sample rate
//! (`|@0.25` for four samples) so that statsd servers count every sample.
//!
//! The line format is shared with the DogStatsD sink, which adds tags.

use crate::server::Server;
use ferry_config::stats::StatsdTarget;
use ferry_stats::{Counts, Value, BUCKETS};
use std::collections::{BTreeMap, HashMap};
use std::net::SocketAddr;
use tokio::io::AsyncWriteExt;

/// Bytes a TCP sink may queue while its connection is down before it drops the flush.
const TCP_BUFFER_LIMIT: usize = 16 << 20;

/// A statsd sink's state between flushes.
pub(super) struct StatsdSink {
    target: StatsdTarget,
    lines: Lines,
    udp: Option<tokio::net::UdpSocket>,
    tcp: Option<tokio::net::TcpStream>,
}

impl StatsdSink {
    pub(super) fn new(target: StatsdTarget, prefix: String) -> StatsdSink {
        StatsdSink {
            target,
            lines: Lines::new(prefix, false),
            udp: None,
            tcp: None,
        }
    }

    pub(super) async fn flush(&mut self, server: &Server, stats: &BTreeMap<String, Value>) {
        let lines = self.lines.of(server, stats);
        if lines.is_empty() {
            return;
        }
        match &self.target {
            StatsdTarget::Udp(addr) => {
                let addr = *addr;
                send_udp(&mut self.udp, addr, lines).await
            }
            StatsdTarget::Tcp(cluster) => {
                let cluster = cluster.clone();
                self.send_tcp(server, &cluster, &lines).await
            }
        }
    }

    async fn send_tcp(&mut self, server: &Server, cluster: &str, lines: &[String]) {
        let mut buf = String::new();
        for l in lines {
            buf.push_str(l);
            buf.push('\n');
        }
        if buf.len() > TCP_BUFFER_LIMIT {
            return;
        }
        for attempt in 0..2 {
            if self.tcp.is_none() {
                let snap = server.snapshot.load();
                let Some(host) = snap
                    .clusters
                    .get(cluster)
                    .and_then(|c| c.hosts().first().cloned())
                else {
                    return;
                };
                match tokio::net::TcpStream::connect(host.address).await {
                    Ok(s) => self.tcp = Some(s),
                    Err(e) => {
                        tracing::debug!(%cluster, error = %e, "statsd sink: cannot connect");
                        return;
                    }
                }
            }
            let Some(s) = self.tcp.as_mut() else { return };
            match s.write_all(buf.as_bytes()).await {
                Ok(()) => return,
                Err(e) => {
                    tracing::debug!(%cluster, attempt, error = %e, "statsd sink: write failed");
                    self.tcp = None;
                }
            }
        }
    }
}

/// Sends each datagram to `addr` from `sock` (opened on first use).
pub(super) async fn send_udp(
    sock: &mut Option<tokio::net::UdpSocket>,
    addr: SocketAddr,
    datagrams: Vec<String>,
) {
    if sock.is_none() {
        let bind: SocketAddr = if addr.is_ipv4() {
            ([0, 0, 0, 0], 0).into()
        } else {
            (std::net::Ipv6Addr::UNSPECIFIED, 0).into()
        };
        match tokio::net::UdpSocket::bind(bind).await {
            Ok(s) => *sock = Some(s),
            Err(e) => {
                tracing::warn!(error = %e, "statsd sink: cannot open a UDP socket");
                return;
            }
        }
    }
    let Some(sock) = sock.as_ref() else { return };
    for datagram in datagrams {
        // A statsd server that is down is not an error worth more than a debug line.
        if let Err(e) = sock.send_to(datagram.as_bytes(), addr).await {
            tracing::debug!(%addr, error = %e, "statsd sink: send failed");
        }
    }
}

/// The statsd lines of a flush, and the counter values they are deltas from.
pub(super) struct Lines {
    prefix: String,
    /// DogStatsD: tag-extracted names and `|#tag:value,...`.
    tagged: bool,
    /// Counters' values at the last flush.
    last: HashMap<String, u64>,
}

impl Lines {
    pub(super) fn new(prefix: String, tagged: bool) -> Lines {
        Lines {
            prefix,
            tagged,
            last: HashMap::new(),
        }
    }

    /// The flush's lines: counters' deltas, gauges, histogram buckets.
    pub(super) fn of(&mut self, server: &Server, stats: &BTreeMap<String, Value>) -> Vec<String> {
        let prefix = &self.prefix;
        let mut out = Vec::new();
        for (name, v) in stats {
            let (metric, tags) = if self.tagged {
                let (n, t) = server.stats_view.tags.produce(name);
                let t: Vec<String> = t.iter().map(|(k, v)| format!("{k}:{v}")).collect();
                let tags = if t.is_empty() {
                    String::new()
                } else {
                    format!("|#{}", t.join(","))
                };
                (format!("{prefix}.{n}"), tags)
            } else {
                (format!("{prefix}.{name}"), String::new())
            };
            match v {
                Value::Counter(n) => {
                    // A counter is sent once it was ever incremented, then every flush.
                    if !n.used {
                        continue;
                    }
                    let now = n.value;
                    let last = self.last.get(name).copied().unwrap_or(0);
                    // After /reset_counters the value restarts from zero.
                    let delta = if now >= last { now - last } else { now };
                    self.last.insert(name.clone(), now);
                    out.push(format!("{metric}:{delta}|c{tags}"));
                }
                Value::Gauge(n) => {
                    if n.used {
                        out.push(format!("{metric}:{}|g{tags}", n.value));
                    }
                }
                Value::Histogram(h) => {
                    for (value, n) in bucket_samples(&h.interval) {
                        let rate = if n > 1 {
                            format!("|@{}", 1.0 / n as f64)
                        } else {
                            String::new()
                        };
                        out.push(format!("{metric}:{value}|ms{rate}{tags}"));
                    }
                }
            }
        }
        out
    }
}

/// (value, samples) per bucket that received samples: the midpoint of the bucket's
/// bounds, within the interval's extremes.
fn bucket_samples(c: &Counts) -> Vec<(f64, u64)> {
    let (min, max) = match c.min_max {
        Some((a, b)) => (a as f64, b as f64),
        None => return Vec::new(),
    };
    c.buckets
        .iter()
        .enumerate()
        .filter(|(_, n)| **n > 0)
        .map(|(i, n)| {
            let lower = if i == 0 { 0.0 } else { BUCKETS[i - 1] };
            let upper = BUCKETS.get(i).copied().unwrap_or(max);
            let mid = ((lower + upper) / 2.0).clamp(min, max.max(min));
            (mid, *n)
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn buckets_become_weighted_samples() {
        let h = ferry_stats::Histogram::default();
        for v in [2, 3, 4, 40] {
            h.record(v);
        }
        assert_eq!(bucket_samples(&h.cumulative()), [(3.0, 3), (37.5, 1)]);
    }
}
