//! `envoy.stat_sinks.dog_statsd`: statsd lines (see [`super::statsd`]) with
//! tag-extracted names and `|#tag:value,...`, over UDP, joined into datagrams of up to
//! `max_bytes_per_datagram`.

use super::statsd::{send_udp, Lines};
use crate::server::Server;
use ferry_stats::Value;
use std::collections::BTreeMap;
use std::net::SocketAddr;

/// A DogStatsD sink's state between flushes.
pub(super) struct DogStatsdSink {
    address: SocketAddr,
    max_bytes_per_datagram: Option<u64>,
    lines: Lines,
    udp: Option<tokio::net::UdpSocket>,
}

impl DogStatsdSink {
    pub(super) fn new(
        address: SocketAddr,
        prefix: String,
        max_bytes_per_datagram: Option<u64>,
    ) -> DogStatsdSink {
        DogStatsdSink {
            address,
            max_bytes_per_datagram,
            lines: Lines::new(prefix, true),
            udp: None,
        }
    }

    pub(super) async fn flush(&mut self, server: &Server, stats: &BTreeMap<String, Value>) {
        let lines = self.lines.of(server, stats);
        if lines.is_empty() {
            return;
        }
        let datagrams = datagrams(lines, self.max_bytes_per_datagram);
        send_udp(&mut self.udp, self.address, datagrams).await
    }
}

/// Lines grouped into datagrams: one per line, or joined with `\n` up to `max` bytes.
fn datagrams(lines: Vec<String>, max: Option<u64>) -> Vec<String> {
    let Some(max) = max.map(|m| m as usize) else {
        return lines;
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
        cur.push_str(&l);
    }
    if !cur.is_empty() {
        out.push(cur);
    }
    out
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
        assert_eq!(datagrams(lines.clone(), None), lines);
        assert_eq!(
            datagrams(lines.clone(), Some(12)),
            ["a:1|c\nbb:2|c", "ccc:3|c"]
        );
        assert_eq!(datagrams(lines, Some(3)), ["a:1|c", "bb:2|c", "ccc:3|c"]);
    }
}
