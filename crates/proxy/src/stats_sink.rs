//! The stats flush: every `stats_flush_interval` histograms end their interval and
//! each `stats_sinks` entry gets the stats, off the request path.
//!
//! - `envoy.stat_sinks.statsd`: full names with the prefix, no tags; counters as the
//!   delta since the last flush (`|c`, sent every flush once used), gauges (`|g`, once
//!   used), one datagram per line over UDP, or newline-ended lines over TCP to a host of
//!   `tcp_cluster_name`.
//! - `envoy.stat_sinks.dog_statsd`: tag-extracted names with `|#tag:value,...`, lines
//!   joined up to `max_bytes_per_datagram`.
//! - `envoy.stat_sinks.open_telemetry`: OTLP metrics over gRPC (see `otlp`).
//!
//! Histograms: Envoy sends each sample as it is recorded; ferry keeps the request path
//! free of I/O and sends, at each flush, one `|ms` line per bucket that received
//! samples in the interval, with the bucket's midpoint as value and a sample rate
//! (`|@0.25` for four samples) so that statsd servers count every sample.

use crate::server::Server;
use ferry_config::stats::{StatsSink, StatsdTarget};
use ferry_stats::{Counts, Value, BUCKETS};
use std::collections::{BTreeMap, HashMap};
use std::net::SocketAddr;
use std::sync::Arc;
use tokio::io::AsyncWriteExt;

/// Bytes a TCP sink may queue while its connection is down before it drops the flush.
const TCP_BUFFER_LIMIT: usize = 16 << 20;

/// Runs the flush loop until the server is gone.
pub(crate) async fn run(server: std::sync::Weak<Server>, interval: std::time::Duration) {
    let mut sinks: Vec<Sink> = match server.upgrade() {
        Some(s) => s
            .snapshot
            .load()
            .bootstrap
            .stats
            .sinks
            .iter()
            .map(Sink::new)
            .collect(),
        None => return,
    };
    let mut tick = tokio::time::interval(interval);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    tick.tick().await;
    loop {
        tick.tick().await;
        let Some(server) = server.upgrade() else {
            return;
        };
        server.stats.flush_histograms();
        if sinks.is_empty() {
            continue;
        }
        let snapshot = server.stats_snapshot();
        for sink in &mut sinks {
            sink.flush(&server, &snapshot, interval).await;
        }
    }
}

/// What a sink remembers between flushes.
struct Sink {
    config: StatsSink,
    /// Counters' values at the last flush.
    last: HashMap<String, u64>,
    udp: Option<tokio::net::UdpSocket>,
    tcp: Option<tokio::net::TcpStream>,
    otlp: Option<crate::otlp::MetricsSink>,
}

impl Sink {
    fn new(config: &StatsSink) -> Sink {
        Sink {
            config: config.clone(),
            last: HashMap::new(),
            udp: None,
            tcp: None,
            otlp: match config {
                StatsSink::OpenTelemetry(o) => Some(crate::otlp::MetricsSink::new(o)),
                _ => None,
            },
        }
    }

    async fn flush(
        &mut self,
        server: &Server,
        stats: &BTreeMap<String, Value>,
        interval: std::time::Duration,
    ) {
        if let Some(o) = &mut self.otlp {
            o.flush(server, stats, interval).await;
            return;
        }
        let lines = self.lines(server, stats);
        if lines.is_empty() {
            return;
        }
        match self.config.clone() {
            StatsSink::Statsd {
                target: StatsdTarget::Udp(addr),
                ..
            } => self.send_udp(addr, &lines, None).await,
            StatsSink::DogStatsd {
                address,
                max_bytes_per_datagram,
                ..
            } => self.send_udp(address, &lines, max_bytes_per_datagram).await,
            StatsSink::Statsd {
                target: StatsdTarget::Tcp(cluster),
                ..
            } => self.send_tcp(server, &cluster, &lines).await,
            StatsSink::OpenTelemetry(_) => {}
        }
    }

    /// The flush's lines: counters' deltas, gauges, histogram buckets.
    fn lines(&mut self, server: &Server, stats: &BTreeMap<String, Value>) -> Vec<String> {
        let (prefix, tagged) = match &self.config {
            StatsSink::Statsd { prefix, .. } => (prefix.clone(), false),
            StatsSink::DogStatsd { prefix, .. } => (prefix.clone(), true),
            StatsSink::OpenTelemetry(_) => return Vec::new(),
        };
        let mut out = Vec::new();
        for (name, v) in stats {
            let (metric, tags) = if tagged {
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

    async fn send_udp(&mut self, addr: SocketAddr, lines: &[String], max: Option<u64>) {
        if self.udp.is_none() {
            let bind: SocketAddr = if addr.is_ipv4() {
                ([0, 0, 0, 0], 0).into()
            } else {
                (std::net::Ipv6Addr::UNSPECIFIED, 0).into()
            };
            match tokio::net::UdpSocket::bind(bind).await {
                Ok(s) => self.udp = Some(s),
                Err(e) => {
                    tracing::warn!(error = %e, "statsd sink: cannot open a UDP socket");
                    return;
                }
            }
        }
        let Some(sock) = &self.udp else { return };
        for datagram in datagrams(lines, max) {
            // A statsd server that is down is not an error worth more than a debug line.
            if let Err(e) = sock.send_to(datagram.as_bytes(), addr).await {
                tracing::debug!(%addr, error = %e, "statsd sink: send failed");
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

/// Lines grouped into datagrams: one per line, or joined with `\n` up to `max` bytes.
fn datagrams(lines: &[String], max: Option<u64>) -> Vec<String> {
    let Some(max) = max.map(|m| m as usize) else {
        return lines.to_vec();
    };
    let mut out: Vec<String> = Vec::new();
    let mut cur = String::new();
    for l in lines {
        if !cur.is_empty() && cur.len() + 1 + l.len() > max {
            out.push(std::mem::take(&mut cur));
        }
        if !cur.is_empty() {
            cur.push('\n');
        }
        cur.push_str(l);
    }
    if !cur.is_empty() {
        out.push(cur);
    }
    out
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

/// Starts the flush loop of `server`.
pub(crate) fn start(server: &Arc<Server>) {
    let interval = server.snapshot.load().bootstrap.stats.flush_interval;
    tokio::spawn(run(Arc::downgrade(server), interval));
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn datagrams_join_lines_up_to_the_limit() {
        let lines: Vec<String> = ["a:1|c", "bb:2|c", "ccc:3|c"]
            .iter()
            .map(|s| s.to_string())
            .collect();
        assert_eq!(datagrams(&lines, None), lines);
        assert_eq!(datagrams(&lines, Some(12)), ["a:1|c\nbb:2|c", "ccc:3|c"]);
        assert_eq!(datagrams(&lines, Some(3)), ["a:1|c", "bb:2|c", "ccc:3|c"]);
    }

    #[test]
    fn buckets_become_weighted_samples() {
        let h = ferry_stats::Histogram::default();
        for v in [2, 3, 4, 40] {
            h.record(v);
        }
        assert_eq!(bucket_samples(&h.cumulative()), [(3.0, 3), (37.5, 1)]);
    }
}
