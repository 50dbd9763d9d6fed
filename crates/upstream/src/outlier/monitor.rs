//! The per-host side of outlier detection (Envoy's `DetectorHostMonitorImpl`): counters
//! that every request attempt updates with a few relaxed atomics, and the host's
//! ejection record, which only the detector's task touches.

use super::{Detector, EjectionType};
use crate::Host;
use parking_lot::Mutex;
use std::sync::atomic::{AtomicU32, AtomicU64, AtomicUsize, Ordering};
use std::sync::Arc;
use tokio::time::{Duration, Instant};

/// What an attempt to use a host came to (Envoy's `Outlier::Result`, plus HTTP codes).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Outcome {
    /// A connection was obtained (`LOCAL_ORIGIN_CONNECT_SUCCESS`).
    ConnectSuccess,
    /// No connection, or it failed before a response (`LOCAL_ORIGIN_CONNECT_FAILED`).
    ConnectFailed,
    /// The router gave up waiting (`LOCAL_ORIGIN_TIMEOUT`).
    Timeout,
    /// The upstream answered with this HTTP status.
    Status(u16),
}

/// Requests and successes of one interval.
#[derive(Debug, Default)]
struct Bucket {
    total: AtomicU64,
    success: AtomicU64,
}

/// Two buckets: the current interval is written, the previous one is read (Envoy's
/// `SuccessRateAccumulator`).
#[derive(Debug, Default)]
pub(crate) struct SuccessRate {
    current: AtomicUsize,
    buckets: [Bucket; 2],
}

impl SuccessRate {
    fn record(&self, success: bool) {
        let b = &self.buckets[self.current.load(Ordering::Relaxed) & 1];
        b.total.fetch_add(1, Ordering::Relaxed);
        if success {
            b.success.fetch_add(1, Ordering::Relaxed);
        }
    }

    /// Starts a new interval: the bucket just written becomes the one read.
    pub(crate) fn swap(&self) {
        let cur = self.current.load(Ordering::Relaxed) & 1;
        let next = &self.buckets[cur ^ 1];
        next.total.store(0, Ordering::Relaxed);
        next.success.store(0, Ordering::Relaxed);
        self.current.store(cur ^ 1, Ordering::Relaxed);
    }

    /// The success rate (percent) and request volume of the last full interval.
    pub(crate) fn rate_and_volume(&self) -> Option<(f64, u64)> {
        let b = &self.buckets[(self.current.load(Ordering::Relaxed) & 1) ^ 1];
        let total = b.total.load(Ordering::Relaxed);
        if total == 0 {
            return None;
        }
        Some((
            b.success.load(Ordering::Relaxed) as f64 * 100.0 / total as f64,
            total,
        ))
    }
}

/// When and how often a host was ejected.
#[derive(Debug, Default)]
pub(crate) struct Ejection {
    /// Ejections so far.
    pub num_ejections: u32,
    /// Multiplier of `base_ejection_time` for the current or next ejection.
    pub backoff: u32,
    /// Extra ejection time drawn at the last ejection.
    pub jitter: Duration,
    /// When the host was last ejected.
    pub last_ejection: Option<Instant>,
    /// When the host was last brought back.
    pub last_unejection: Option<Instant>,
}

/// A host's outlier-detection state.
#[derive(Debug)]
pub(crate) struct HostMonitor {
    /// The cluster's detector (set once when the host joins a cluster with detection).
    detector: arc_swap::ArcSwapOption<Detector>,
    consecutive_5xx: AtomicU32,
    consecutive_gateway_failure: AtomicU32,
    consecutive_local_origin_failure: AtomicU32,
    /// External-origin results (all results when errors are not split).
    pub(crate) external: SuccessRate,
    /// Local-origin results (with `split_external_local_origin_errors`).
    pub(crate) local: SuccessRate,
    /// Last computed success rates for admin `/clusters` (f64 bits; -1 = none).
    success_rate: [AtomicU64; 2],
    /// Ejection record (detector task only).
    pub(crate) ejection: Mutex<Ejection>,
}

impl Default for HostMonitor {
    fn default() -> Self {
        HostMonitor {
            detector: arc_swap::ArcSwapOption::empty(),
            consecutive_5xx: AtomicU32::new(0),
            consecutive_gateway_failure: AtomicU32::new(0),
            consecutive_local_origin_failure: AtomicU32::new(0),
            external: SuccessRate::default(),
            local: SuccessRate::default(),
            success_rate: [
                AtomicU64::new((-1f64).to_bits()),
                AtomicU64::new((-1f64).to_bits()),
            ],
            ejection: Mutex::new(Ejection::default()),
        }
    }
}

fn is_gateway_error(status: u16) -> bool {
    matches!(status, 502..=504)
}

impl HostMonitor {
    /// Attaches the cluster's detector (a host carried into a replaced cluster is
    /// attached to the new cluster's).
    pub(crate) fn attach(&self, detector: &Arc<Detector>) {
        self.detector.store(Some(detector.clone()));
    }

    /// Records an outcome of `host` (a no-op without a detector).
    pub(crate) fn put(&self, host: &Host, outcome: Outcome) {
        let d = self.detector.load();
        let Some(d) = d.as_ref() else {
            return;
        };
        if d.config.split_external_local_origin_errors {
            match outcome {
                Outcome::ConnectSuccess => self.local_origin_success(),
                Outcome::ConnectFailed | Outcome::Timeout => self.local_origin_failure(d, host),
                Outcome::Status(s) => self.http_status(d, host, s),
            }
        } else {
            match outcome {
                // Connecting is not a result of its own when errors are not split.
                Outcome::ConnectSuccess => {}
                Outcome::ConnectFailed => self.http_status(d, host, 503),
                Outcome::Timeout => self.http_status(d, host, 504),
                Outcome::Status(s) => self.http_status(d, host, s),
            }
        }
    }

    fn http_status(&self, d: &Detector, host: &Host, status: u16) {
        let c = &d.config;
        if (500..600).contains(&status) {
            self.external.record(false);
            if is_gateway_error(status) {
                if self
                    .consecutive_gateway_failure
                    .fetch_add(1, Ordering::Relaxed)
                    + 1
                    == c.consecutive_gateway_failure
                {
                    d.notify(host, EjectionType::ConsecutiveGatewayFailure);
                }
            } else {
                self.consecutive_gateway_failure.store(0, Ordering::Relaxed);
            }
            if self.consecutive_5xx.fetch_add(1, Ordering::Relaxed) + 1 == c.consecutive_5xx {
                d.notify(host, EjectionType::Consecutive5xx);
            }
        } else {
            self.external.record(true);
            self.consecutive_5xx.store(0, Ordering::Relaxed);
            self.consecutive_gateway_failure.store(0, Ordering::Relaxed);
        }
    }

    fn local_origin_failure(&self, d: &Detector, host: &Host) {
        self.local.record(false);
        if self
            .consecutive_local_origin_failure
            .fetch_add(1, Ordering::Relaxed)
            + 1
            == d.config.consecutive_local_origin_failure
        {
            d.notify(host, EjectionType::ConsecutiveLocalOriginFailure);
        }
    }

    fn local_origin_success(&self) {
        self.local.record(true);
        self.consecutive_local_origin_failure
            .store(0, Ordering::Relaxed);
    }

    /// Resets the consecutive counter of `kind` (after it caused an ejection attempt).
    pub(crate) fn reset_consecutive(&self, kind: EjectionType) {
        let c = match kind {
            EjectionType::Consecutive5xx => &self.consecutive_5xx,
            EjectionType::ConsecutiveGatewayFailure => &self.consecutive_gateway_failure,
            EjectionType::ConsecutiveLocalOriginFailure => &self.consecutive_local_origin_failure,
            _ => return,
        };
        c.store(0, Ordering::Relaxed);
    }

    /// Resets every consecutive counter (on unejection).
    pub(crate) fn reset_all_consecutive(&self) {
        self.consecutive_5xx.store(0, Ordering::Relaxed);
        self.consecutive_gateway_failure.store(0, Ordering::Relaxed);
        self.consecutive_local_origin_failure
            .store(0, Ordering::Relaxed);
    }

    /// The success rate shown in admin (`local` for the local-origin one); -1 if none.
    pub(crate) fn success_rate(&self, local: bool) -> f64 {
        f64::from_bits(self.success_rate[usize::from(local)].load(Ordering::Relaxed))
    }

    pub(crate) fn set_success_rate(&self, local: bool, v: f64) {
        self.success_rate[usize::from(local)].store(v.to_bits(), Ordering::Relaxed);
    }
}
