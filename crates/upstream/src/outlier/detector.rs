//! The cluster-wide side of outlier detection: ejection decisions, unejection, and the
//! success-rate and failure-percentage algorithms, run by one task per cluster.

use super::EjectionType;
use crate::event_log::{EjectDetail, OutlierLog};
use crate::health::flags::FAILED_OUTLIER_CHECK;
use crate::log_file::LogFile;
use crate::stats::OutlierStats;
use crate::{Cluster, Host};
use ferry_config::outlier::OutlierDetection;
use parking_lot::Mutex;
use rand::Rng;
use std::sync::{Arc, Weak};
use tokio::sync::mpsc;
use tokio::time::{Duration, Instant};

type Event = (Weak<Host>, EjectionType);

/// A cluster's outlier detector.
#[derive(Debug)]
pub(crate) struct Detector {
    /// The validated `outlier_detection`.
    pub(crate) config: OutlierDetection,
    /// `cluster.<name>.outlier_detection.*`.
    pub(crate) stats: Arc<OutlierStats>,
    events: mpsc::UnboundedSender<Event>,
    receiver: Mutex<Option<mpsc::UnboundedReceiver<Event>>>,
    /// (average, ejection threshold) of the external and local-origin success rates
    /// computed at the last interval; -1 when not computed.
    success_rates: Mutex<[(f64, f64); 2]>,
    /// `cluster_manager.outlier_detection.event_log_path`, if set.
    log: Option<OutlierLog>,
}

/// `mean - factor × stdev` of `rates` (Envoy's `successRateEjectionThreshold`):
/// returns (mean, threshold).
pub(crate) fn ejection_threshold(rates: &[f64], stdev_factor: f64) -> (f64, f64) {
    let n = rates.len() as f64;
    let mean = rates.iter().sum::<f64>() / n;
    let variance = rates.iter().map(|r| (r - mean).powi(2)).sum::<f64>() / n;
    (mean, mean - stdev_factor * variance.sqrt())
}

impl Detector {
    /// A detector with its stats registered under `cluster.<name>.outlier_detection.`.
    pub(crate) fn new(
        config: OutlierDetection,
        store: &ferry_stats::Store,
        cluster: &str,
        log: Option<&LogFile>,
        previous: Option<Arc<OutlierStats>>,
    ) -> Arc<Detector> {
        let stats = match previous {
            Some(s) => s,
            None => {
                let stats = Arc::new(OutlierStats::default());
                store.register(format!("cluster.{cluster}.outlier_detection."), &stats);
                stats
            }
        };
        let (events, receiver) = mpsc::unbounded_channel();
        Arc::new(Detector {
            config,
            stats,
            events,
            receiver: Mutex::new(Some(receiver)),
            success_rates: Mutex::new([(-1.0, -1.0); 2]),
            log: log.map(|f| OutlierLog::new(f.clone(), cluster)),
        })
    }

    /// Posts a consecutive-error threshold reached by `host` to the detector's task.
    pub(crate) fn notify(&self, host: &Host, kind: EjectionType) {
        let _ = self.events.send((host.this.clone(), kind));
    }

    /// (average, ejection threshold) of the external (`local` false) or local-origin
    /// success rate, for admin `/clusters`.
    pub(crate) fn success_rate_summary(&self, local: bool) -> (f64, f64) {
        self.success_rates.lock()[usize::from(local)]
    }

    fn detected(&self, kind: EjectionType) {
        let s = &self.stats;
        match kind {
            EjectionType::Consecutive5xx => s.ejections_detected_consecutive_5xx.inc(),
            EjectionType::ConsecutiveGatewayFailure => {
                s.ejections_detected_consecutive_gateway_failure.inc()
            }
            EjectionType::ConsecutiveLocalOriginFailure => {
                s.ejections_detected_consecutive_local_origin_failure.inc()
            }
            EjectionType::SuccessRate => s.ejections_detected_success_rate.inc(),
            EjectionType::SuccessRateLocalOrigin => {
                s.ejections_detected_local_origin_success_rate.inc()
            }
            EjectionType::FailurePercentage => s.ejections_detected_failure_percentage.inc(),
            EjectionType::FailurePercentageLocalOrigin => {
                s.ejections_detected_local_origin_failure_percentage.inc()
            }
        }
    }

    fn enforced(&self, kind: EjectionType) {
        let s = &self.stats;
        s.ejections_enforced_total.inc();
        match kind {
            EjectionType::Consecutive5xx => s.ejections_enforced_consecutive_5xx.inc(),
            EjectionType::ConsecutiveGatewayFailure => {
                s.ejections_enforced_consecutive_gateway_failure.inc()
            }
            EjectionType::ConsecutiveLocalOriginFailure => {
                s.ejections_enforced_consecutive_local_origin_failure.inc()
            }
            EjectionType::SuccessRate => s.ejections_enforced_success_rate.inc(),
            EjectionType::SuccessRateLocalOrigin => {
                s.ejections_enforced_local_origin_success_rate.inc()
            }
            EjectionType::FailurePercentage => s.ejections_enforced_failure_percentage.inc(),
            EjectionType::FailurePercentageLocalOrigin => {
                s.ejections_enforced_local_origin_failure_percentage.inc()
            }
        }
    }

    fn enforcing(&self, kind: EjectionType) -> u32 {
        let c = &self.config;
        match kind {
            EjectionType::Consecutive5xx => c.enforcing_consecutive_5xx,
            EjectionType::ConsecutiveGatewayFailure => c.enforcing_consecutive_gateway_failure,
            EjectionType::ConsecutiveLocalOriginFailure => {
                c.enforcing_consecutive_local_origin_failure
            }
            EjectionType::SuccessRate => c.enforcing_success_rate,
            EjectionType::SuccessRateLocalOrigin => c.enforcing_local_origin_success_rate,
            EjectionType::FailurePercentage => c.enforcing_failure_percentage,
            EjectionType::FailurePercentageLocalOrigin => {
                c.enforcing_failure_percentage_local_origin
            }
        }
    }

    /// Handles a consecutive-error threshold reached by `host`, one of `hosts` (the
    /// cluster's). Returns whether the host was ejected.
    pub(crate) fn on_consecutive<R: Rng>(
        &self,
        hosts: &[Arc<Host>],
        host: &Arc<Host>,
        kind: EjectionType,
        now: Instant,
        rng: &mut R,
    ) -> bool {
        // The host may have left the cluster (DNS) or been ejected meanwhile.
        if !hosts.iter().any(|h| Arc::ptr_eq(h, host)) || host.flag_get(FAILED_OUTLIER_CHECK) {
            return false;
        }
        self.detected(kind);
        let ejected = self.eject(hosts.len(), host, kind, EjectDetail::Consecutive, now, rng);
        if kind == EjectionType::Consecutive5xx {
            self.stats.ejections_consecutive_5xx.inc();
        }
        // The counter starts again, so that another run of errors is detected even if
        // no success came in between.
        host.outlier.reset_consecutive(kind);
        ejected
    }

    /// Ejects `host` if `max_ejection_percent` and the enforcement odds allow.
    fn eject<R: Rng>(
        &self,
        n_hosts: usize,
        host: &Host,
        kind: EjectionType,
        detail: EjectDetail,
        now: Instant,
        rng: &mut R,
    ) -> bool {
        if host.flag_get(FAILED_OUTLIER_CHECK) {
            return false;
        }
        let c = &self.config;
        let active = self.stats.ejections_active.value();
        let percent = 100.0 * (active + 1) as f64 / n_hosts.max(1) as f64;
        let mut should = percent <= f64::from(c.max_ejection_percent.min(100));
        if c.always_eject_one_host {
            should = should || active == 0;
        }
        if !should {
            self.stats.ejections_overflow.inc();
            return false;
        }
        if matches!(
            kind,
            EjectionType::Consecutive5xx | EjectionType::SuccessRate
        ) {
            self.stats.ejections_total.inc();
        }
        let log = |e: &super::monitor::Ejection, enforced: bool| {
            if let Some(l) = &self.log {
                let since = e.last_unejection.map(|t| now.duration_since(t));
                l.eject(host, kind, enforced, e.num_ejections, since, detail);
            }
        };
        if rng.random_range(0..100) >= self.enforcing(kind) {
            log(&host.outlier.ejection.lock(), false);
            return false;
        }
        self.stats.ejections_active.inc();
        self.enforced(kind);
        host.flag_set(FAILED_OUTLIER_CHECK);
        let mut e = host.outlier.ejection.lock();
        e.num_ejections += 1;
        e.last_ejection = Some(now);
        let max_jitter = c.max_ejection_time_jitter.as_millis() as u64;
        e.jitter = Duration::from_millis(rng.random_range(0..=max_jitter));
        if c.base_ejection_time * e.backoff < c.max_ejection_time + c.base_ejection_time {
            e.backoff += 1;
        }
        log(&e, true);
        tracing::debug!(address = %host.address, ?kind, ejections = e.num_ejections, "outlier ejected");
        true
    }

    /// Brings `host` back (its ejection time is over, or an active health check passed).
    pub(crate) fn uneject(&self, host: &Host, now: Instant) {
        self.stats.ejections_active.dec();
        host.flag_clear(FAILED_OUTLIER_CHECK);
        host.outlier.reset_all_consecutive();
        let mut e = host.outlier.ejection.lock();
        e.last_unejection = Some(now);
        if let Some(l) = &self.log {
            let since = e.last_ejection.map(|t| now.duration_since(t));
            l.uneject(host, e.num_ejections, since);
        }
        drop(e);
        tracing::debug!(address = %host.address, "outlier unejected");
    }

    /// Forgets a host that left the cluster.
    pub(crate) fn host_removed(&self, host: &Host) {
        if host.flag_get(FAILED_OUTLIER_CHECK) {
            self.stats.ejections_active.dec();
        }
    }

    /// The periodic sweep. Returns whether any host was ejected or brought back.
    pub(crate) fn on_interval<R: Rng>(
        &self,
        hosts: &[Arc<Host>],
        now: Instant,
        rng: &mut R,
    ) -> bool {
        let c = &self.config;
        let mut changed = false;
        for h in hosts {
            if h.flag_get(FAILED_OUTLIER_CHECK) {
                let due = {
                    let e = h.outlier.ejection.lock();
                    let time =
                        (c.base_ejection_time * e.backoff).min(c.max_ejection_time) + e.jitter;
                    e.last_ejection
                        .is_none_or(|t| now.duration_since(t) >= time)
                };
                if due {
                    self.uneject(h, now);
                    changed = true;
                }
            }
            h.outlier.external.swap();
            h.outlier.local.swap();
            h.outlier.set_success_rate(false, -1.0);
            h.outlier.set_success_rate(true, -1.0);
        }
        changed |= self.success_rate_ejections(hosts, false, now, rng);
        changed |= self.success_rate_ejections(hosts, true, now, rng);
        // A host that stayed in for an interval since it came back earns back one step.
        for h in hosts {
            if !h.flag_get(FAILED_OUTLIER_CHECK) {
                let mut e = h.outlier.ejection.lock();
                if e.last_unejection
                    .is_some_and(|t| now.duration_since(t) >= c.interval)
                {
                    e.backoff = e.backoff.saturating_sub(1);
                }
            }
        }
        changed
    }

    fn success_rate_ejections<R: Rng>(
        &self,
        hosts: &[Arc<Host>],
        local: bool,
        now: Instant,
        rng: &mut R,
    ) -> bool {
        let c = &self.config;
        self.success_rates.lock()[usize::from(local)] = (-1.0, -1.0);
        let n = hosts.len();
        if n < c.success_rate_minimum_hosts as usize
            && n < c.failure_percentage_minimum_hosts as usize
        {
            return false;
        }
        let sr_volume = u64::from(c.success_rate_request_volume);
        let fp_volume = u64::from(c.failure_percentage_request_volume);
        let mut sr_hosts: Vec<(&Arc<Host>, f64)> = Vec::new();
        let mut fp_hosts: Vec<(&Arc<Host>, f64)> = Vec::new();
        for h in hosts {
            if h.flag_get(FAILED_OUTLIER_CHECK) {
                continue;
            }
            let acc = if local {
                &h.outlier.local
            } else {
                &h.outlier.external
            };
            let Some((rate, volume)) = acc.rate_and_volume() else {
                continue;
            };
            if volume >= sr_volume.min(fp_volume) {
                h.outlier.set_success_rate(local, rate);
            }
            if volume >= sr_volume {
                sr_hosts.push((h, rate));
            }
            if volume >= fp_volume {
                fp_hosts.push((h, rate));
            }
        }
        let mut changed = false;
        if !sr_hosts.is_empty() && sr_hosts.len() >= c.success_rate_minimum_hosts as usize {
            let rates: Vec<f64> = sr_hosts.iter().map(|(_, r)| *r).collect();
            let (mean, threshold) =
                ejection_threshold(&rates, f64::from(c.success_rate_stdev_factor) / 1000.0);
            self.success_rates.lock()[usize::from(local)] = (mean, threshold);
            let kind = if local {
                EjectionType::SuccessRateLocalOrigin
            } else {
                EjectionType::SuccessRate
            };
            for (h, rate) in &sr_hosts {
                if *rate < threshold {
                    self.stats.ejections_success_rate.inc();
                    self.detected(kind);
                    let detail = EjectDetail::SuccessRate {
                        host: *rate,
                        average: mean,
                        threshold,
                    };
                    changed |= self.eject(n, h, kind, detail, now, rng);
                }
            }
        }
        if !fp_hosts.is_empty() && fp_hosts.len() >= c.failure_percentage_minimum_hosts as usize {
            let kind = if local {
                EjectionType::FailurePercentageLocalOrigin
            } else {
                EjectionType::FailurePercentage
            };
            for (h, rate) in &fp_hosts {
                if 100.0 - rate >= f64::from(c.failure_percentage_threshold) {
                    self.detected(kind);
                    let detail = EjectDetail::FailurePercentage { host: *rate };
                    changed |= self.eject(n, h, kind, detail, now, rng);
                }
            }
        }
        changed
    }
}

/// The detector's task: handles posted consecutive-error events and runs the sweep
/// every `interval`, until the cluster is gone.
pub(crate) async fn run(cluster: Weak<Cluster>, detector: Arc<Detector>) {
    let Some(mut events) = detector.receiver.lock().take() else {
        return;
    };
    let interval = detector.config.interval;
    let mut next = Instant::now() + interval;
    loop {
        tokio::select! {
            _ = tokio::time::sleep_until(next) => {
                let Some(c) = cluster.upgrade() else {
                    return;
                };
                let hosts = c.hosts();
                if detector.on_interval(&hosts, Instant::now(), &mut rand::rng()) {
                    c.health_changed();
                }
                next = Instant::now() + interval;
            }
            event = events.recv() => {
                let Some((host, kind)) = event else {
                    return;
                };
                let Some(c) = cluster.upgrade() else {
                    return;
                };
                let Some(host) = host.upgrade() else {
                    continue;
                };
                let hosts = c.hosts();
                if detector.on_consecutive(&hosts, &host, kind, Instant::now(), &mut rand::rng()) {
                    c.health_changed();
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::expect_used)]
    use super::*;
    use crate::outlier::Outcome;
    use rand::SeedableRng;

    fn hosts(n: usize) -> Vec<Arc<Host>> {
        (0..n)
            .map(|i| {
                Host::new(
                    format!("10.0.0.{}:80", i + 1).parse().unwrap(),
                    String::new(),
                    1,
                    0,
                    String::new(),
                )
            })
            .collect()
    }

    fn detector(config: OutlierDetection, hosts: &[Arc<Host>]) -> Arc<Detector> {
        let d = Detector::new(config, &ferry_stats::Store::new(), "c", None, None);
        for h in hosts {
            h.outlier.attach(&d);
        }
        d
    }

    fn rng() -> rand::rngs::StdRng {
        rand::rngs::StdRng::seed_from_u64(3)
    }

    /// The events the hot path posted.
    fn posted(rx: &mut mpsc::UnboundedReceiver<Event>) -> Vec<EjectionType> {
        let mut out = Vec::new();
        while let Ok((_, k)) = rx.try_recv() {
            out.push(k);
        }
        out
    }

    #[tokio::test(start_paused = true)]
    async fn consecutive_errors_are_posted_at_the_threshold() {
        let hs = hosts(1);
        let d = detector(
            OutlierDetection {
                consecutive_5xx: 3,
                consecutive_gateway_failure: 2,
                ..OutlierDetection::default()
            },
            &hs,
        );
        let mut rx = d.receiver.lock().take().unwrap();
        let h = &hs[0];
        h.outlier.put(h, Outcome::Status(500));
        h.outlier.put(h, Outcome::Status(200));
        h.outlier.put(h, Outcome::Status(500));
        assert!(posted(&mut rx).is_empty());
        // A connect failure counts as a 503: gateway and 5xx.
        h.outlier.put(h, Outcome::ConnectFailed);
        h.outlier.put(h, Outcome::Timeout);
        assert_eq!(
            posted(&mut rx),
            vec![
                EjectionType::ConsecutiveGatewayFailure,
                EjectionType::Consecutive5xx
            ]
        );
        // Without split, connecting is no result at all.
        h.outlier.put(h, Outcome::ConnectSuccess);
        assert!(posted(&mut rx).is_empty());
    }

    #[tokio::test(start_paused = true)]
    async fn split_local_origin_errors() {
        let hs = hosts(1);
        let d = detector(
            OutlierDetection {
                split_external_local_origin_errors: true,
                consecutive_local_origin_failure: 2,
                consecutive_5xx: 2,
                ..OutlierDetection::default()
            },
            &hs,
        );
        let mut rx = d.receiver.lock().take().unwrap();
        let h = &hs[0];
        h.outlier.put(h, Outcome::ConnectFailed);
        h.outlier.put(h, Outcome::ConnectSuccess);
        h.outlier.put(h, Outcome::ConnectFailed);
        assert!(posted(&mut rx).is_empty());
        h.outlier.put(h, Outcome::Timeout);
        assert_eq!(
            posted(&mut rx),
            vec![EjectionType::ConsecutiveLocalOriginFailure]
        );
        // Local failures are not 5xx.
        h.outlier.put(h, Outcome::Status(503));
        assert!(posted(&mut rx).is_empty());
    }

    #[tokio::test(start_paused = true)]
    async fn ejection_time_grows_with_ejections_and_is_capped() {
        let hs = hosts(1);
        let d = detector(
            OutlierDetection {
                interval: Duration::from_secs(1),
                base_ejection_time: Duration::from_secs(10),
                max_ejection_time: Duration::from_secs(25),
                max_ejection_percent: 100,
                ..OutlierDetection::default()
            },
            &hs,
        );
        let h = &hs[0];
        let mut r = rng();
        // Ejects, then sweeps every second until the host is back: returns the seconds.
        let mut ejected_for = || {
            assert!(d.on_consecutive(&hs, h, EjectionType::Consecutive5xx, Instant::now(), &mut r));
            assert!(h.flag_get(FAILED_OUTLIER_CHECK));
            let mut secs = 0;
            while h.flag_get(FAILED_OUTLIER_CHECK) {
                secs += 1;
                let now = Instant::now() + Duration::from_secs(secs);
                d.on_interval(&hs, now, &mut r);
                assert!(secs < 100);
            }
            // Time moves on to the unejection.
            secs
        };
        assert_eq!(ejected_for(), 10);
        assert_eq!(d.stats.ejections_active.value(), 0);
        assert_eq!(ejected_for(), 20);
        assert_eq!(ejected_for(), 25);
        assert_eq!(ejected_for(), 25);
        assert_eq!(d.stats.ejections_enforced_consecutive_5xx.value(), 4);
        assert_eq!(d.stats.ejections_detected_consecutive_5xx.value(), 4);
        assert_eq!(h.outlier.ejection.lock().num_ejections, 4);
    }

    #[tokio::test(start_paused = true)]
    async fn backoff_shrinks_while_the_host_stays_in() {
        let hs = hosts(1);
        let d = detector(
            OutlierDetection {
                interval: Duration::from_secs(1),
                base_ejection_time: Duration::from_secs(10),
                max_ejection_percent: 100,
                ..OutlierDetection::default()
            },
            &hs,
        );
        let h = &hs[0];
        let mut r = rng();
        let t0 = Instant::now();
        d.on_consecutive(&hs, h, EjectionType::Consecutive5xx, t0, &mut r);
        d.on_interval(&hs, t0 + Duration::from_secs(10), &mut r);
        d.on_consecutive(
            &hs,
            h,
            EjectionType::Consecutive5xx,
            t0 + Duration::from_secs(10),
            &mut r,
        );
        assert_eq!(h.outlier.ejection.lock().backoff, 2);
        d.on_interval(&hs, t0 + Duration::from_secs(30), &mut r);
        assert!(!h.flag_get(FAILED_OUTLIER_CHECK));
        // Two quiet sweeps, each at least an interval after the unejection.
        d.on_interval(&hs, t0 + Duration::from_secs(31), &mut r);
        d.on_interval(&hs, t0 + Duration::from_secs(32), &mut r);
        assert_eq!(h.outlier.ejection.lock().backoff, 0);
    }

    #[tokio::test(start_paused = true)]
    async fn max_ejection_percent_and_always_eject_one_host() {
        let hs = hosts(2);
        let d = detector(OutlierDetection::default(), &hs);
        let mut r = rng();
        let now = Instant::now();
        // One of two hosts is 50% > 10%: not ejected.
        assert!(!d.on_consecutive(&hs, &hs[0], EjectionType::Consecutive5xx, now, &mut r));
        assert_eq!(d.stats.ejections_overflow.value(), 1);
        assert_eq!(d.stats.ejections_detected_consecutive_5xx.value(), 1);
        let d = detector(
            OutlierDetection {
                always_eject_one_host: true,
                ..OutlierDetection::default()
            },
            &hs,
        );
        assert!(d.on_consecutive(&hs, &hs[0], EjectionType::Consecutive5xx, now, &mut r));
        assert!(!d.on_consecutive(&hs, &hs[1], EjectionType::Consecutive5xx, now, &mut r));
        assert_eq!(d.stats.ejections_active.value(), 1);
        // A host that is not (or no longer) in the cluster is ignored.
        let other = hosts(1);
        assert!(!d.on_consecutive(&hs, &other[0], EjectionType::Consecutive5xx, now, &mut r));
    }

    #[tokio::test(start_paused = true)]
    async fn enforcement_odds() {
        let hs = hosts(1);
        // Gateway failures are detected but not enforced by default (0%).
        let d = detector(
            OutlierDetection {
                max_ejection_percent: 100,
                ..OutlierDetection::default()
            },
            &hs,
        );
        let now = Instant::now();
        assert!(!d.on_consecutive(
            &hs,
            &hs[0],
            EjectionType::ConsecutiveGatewayFailure,
            now,
            &mut rng()
        ));
        assert_eq!(
            d.stats
                .ejections_detected_consecutive_gateway_failure
                .value(),
            1
        );
        assert_eq!(d.stats.ejections_enforced_total.value(), 0);
        assert!(!hs[0].flag_get(FAILED_OUTLIER_CHECK));
    }

    #[test]
    fn success_rate_threshold_math() {
        // Envoy's example: mean 90, stdev 20, factor 1.9: threshold 52.
        let (mean, t) = ejection_threshold(&[50.0, 100.0, 100.0, 100.0, 100.0], 1.9);
        assert_eq!(mean, 90.0);
        assert!((t - 52.0).abs() < 1e-9, "{t}");
    }

    /// Feeds each host `requests` results, `ok` of which succeed.
    fn feed(h: &Host, requests: u32, ok: u32) {
        for i in 0..requests {
            h.outlier
                .put(h, Outcome::Status(if i < ok { 200 } else { 500 }));
        }
    }

    #[tokio::test(start_paused = true)]
    async fn success_rate_and_failure_percentage_sweeps() {
        let hs = hosts(5);
        let d = detector(
            OutlierDetection {
                consecutive_5xx: 1000,
                max_ejection_percent: 20,
                failure_percentage_minimum_hosts: 4,
                ..OutlierDetection::default()
            },
            &hs,
        );
        let mut r = rng();
        let t0 = Instant::now();
        feed(&hs[0], 100, 50);
        for h in &hs[1..] {
            feed(h, 100, 100);
        }
        // The first sweep moves this interval's counts to the readable bucket.
        d.on_interval(&hs, t0, &mut r);
        assert!(hs[0].flag_get(FAILED_OUTLIER_CHECK));
        assert_eq!(d.success_rate_summary(false), (90.0, 52.0));
        assert_eq!(d.stats.ejections_enforced_success_rate.value(), 1);
        assert_eq!(d.stats.ejections_total.value(), 1);
        assert_eq!(hs[1].success_rate(false), 100.0);
        assert_eq!(hs[0].success_rate(false), 50.0);
        // Failure percentage (enforced at 0% by default): detected only.
        feed(&hs[1], 50, 0);
        for h in &hs[2..] {
            feed(h, 50, 50);
        }
        d.on_interval(&hs, t0 + Duration::from_secs(1), &mut r);
        // Ejected hosts are left out of the sweep.
        assert_eq!(hs[0].success_rate(false), -1.0);
        assert_eq!(d.stats.ejections_detected_failure_percentage.value(), 1);
        assert!(!hs[1].flag_get(FAILED_OUTLIER_CHECK));
        // Too few hosts with enough requests: nothing computed.
        d.on_interval(&hs, t0 + Duration::from_secs(2), &mut r);
        assert_eq!(d.success_rate_summary(false), (-1.0, -1.0));
    }
}
