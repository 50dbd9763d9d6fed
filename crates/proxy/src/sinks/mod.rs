//! Stats sinks (`stats_sinks`): every `stats_flush_interval` histograms end their
//! interval and each sink gets the stats, off the request path. One file per sink:
//!
//! - [`statsd`]: `envoy.stat_sinks.statsd`, over UDP or TCP to a cluster;
//! - [`dog_statsd`]: `envoy.stat_sinks.dog_statsd`, with tags;
//! - [`open_telemetry`]: `envoy.stat_sinks.open_telemetry`, OTLP metrics over gRPC.

mod dog_statsd;
mod open_telemetry;
mod statsd;

use crate::server::Server;
use ferry_config::stats::StatsSink;
use ferry_stats::Value;
use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Duration;

/// A configured sink with what it remembers between flushes.
enum Sink {
    Statsd(statsd::StatsdSink),
    DogStatsd(dog_statsd::DogStatsdSink),
    OpenTelemetry(open_telemetry::MetricsSink),
}

impl Sink {
    fn new(config: &StatsSink) -> Sink {
        match config {
            StatsSink::Statsd { target, prefix } => {
                Sink::Statsd(statsd::StatsdSink::new(target.clone(), prefix.clone()))
            }
            StatsSink::DogStatsd {
                address,
                prefix,
                max_bytes_per_datagram,
            } => Sink::DogStatsd(dog_statsd::DogStatsdSink::new(
                *address,
                prefix.clone(),
                *max_bytes_per_datagram,
            )),
            StatsSink::OpenTelemetry(o) => Sink::OpenTelemetry(open_telemetry::MetricsSink::new(o)),
        }
    }

    async fn flush(
        &mut self,
        server: &Server,
        stats: &BTreeMap<String, Value>,
        interval: Duration,
    ) {
        match self {
            Sink::Statsd(s) => s.flush(server, stats).await,
            Sink::DogStatsd(s) => s.flush(server, stats).await,
            Sink::OpenTelemetry(s) => s.flush(server, stats, interval).await,
        }
    }
}

/// Starts the flush loop of `server`.
pub(crate) fn start(server: &Arc<Server>) {
    let interval = server.snapshot.load().bootstrap.stats.flush_interval;
    tokio::spawn(run(Arc::downgrade(server), interval));
}

/// Runs the flush loop until the server is gone.
async fn run(server: std::sync::Weak<Server>, interval: Duration) {
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
