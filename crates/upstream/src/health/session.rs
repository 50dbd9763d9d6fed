//! The state machine of one host's active health checking (Envoy's
//! `ActiveHealthCheckSession`): thresholds, the host's flags and the next interval.

use super::flags::{
    ACTIVE_HC_TIMEOUT, DEGRADED_ACTIVE_HC, EXCLUDED_VIA_IMMEDIATE_HC_FAIL, FAILED_ACTIVE_HC,
    PENDING_ACTIVE_HC,
};
use super::ActiveCheck;
use crate::event_log::{FailureType, HealthEvent};
use crate::Host;
use ferry_config::health_check::HealthCheck;
use rand::Rng;
use std::time::Duration;

/// What a check result did to the host's health.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Transition {
    /// Nothing changed.
    Unchanged,
    /// The host's health changed: the host set must be rebuilt.
    Changed,
    /// A threshold is being approached (the edge intervals apply).
    ChangePending,
}

/// Why a check failed (Envoy's `HealthCheckFailureType`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Failure {
    /// The host answered, wrongly (`ACTIVE`): unhealthy at once unless retriable.
    Active,
    /// The connection failed or closed (`NETWORK`): counts towards the threshold.
    Network,
    /// The check timed out (`NETWORK_TIMEOUT`): counts towards the threshold.
    Timeout,
    /// A request's response said `x-envoy-immediate-health-check-fail` (`PASSIVE`).
    Passive,
}

impl Failure {
    fn event_type(self) -> FailureType {
        match self {
            Failure::Active => FailureType::Active,
            Failure::Network => FailureType::Network,
            Failure::Timeout => FailureType::NetworkTimeout,
            Failure::Passive => FailureType::Passive,
        }
    }
}

/// Threshold counters of one host.
#[derive(Debug)]
pub(crate) struct Session {
    num_healthy: u32,
    num_unhealthy: u32,
    first_check: bool,
    /// The host left the cluster: results no longer count.
    pub(crate) retired: bool,
}

impl Default for Session {
    fn default() -> Self {
        Session {
            num_healthy: 0,
            num_unhealthy: 0,
            first_check: true,
            retired: false,
        }
    }
}

impl Session {
    /// Whether no check has completed yet.
    pub(crate) fn first_check(&self) -> bool {
        self.first_check
    }

    /// A passing check (`degraded` when the response said `x-envoy-degraded`).
    pub(crate) fn on_success(
        &mut self,
        host: &Host,
        degraded: bool,
        check: &ActiveCheck,
    ) -> Transition {
        let (config, stats) = (&check.config, &check.stats);
        self.num_unhealthy = 0;
        let mut t = Transition::Unchanged;
        if host.flag_get(FAILED_ACTIVE_HC) {
            // The first result of a host counts at once: startup is faster.
            self.num_healthy += 1;
            if self.first_check || self.num_healthy == config.healthy_threshold {
                host.flag_clear(
                    ACTIVE_HC_TIMEOUT | EXCLUDED_VIA_IMMEDIATE_HC_FAIL | FAILED_ACTIVE_HC,
                );
                stats.healthy.inc();
                t = Transition::Changed;
                check.log(
                    host,
                    HealthEvent::AddHealthy {
                        first_check: self.first_check,
                    },
                );
            } else {
                t = Transition::ChangePending;
            }
        }
        t = self.clear_pending(host, t);
        if degraded != host.flag_get(DEGRADED_ACTIVE_HC) {
            if degraded {
                host.flag_set(DEGRADED_ACTIVE_HC);
                stats.degraded.inc();
                check.log(host, HealthEvent::Degraded);
            } else {
                host.flag_clear(DEGRADED_ACTIVE_HC);
                stats.degraded.dec();
                check.log(host, HealthEvent::NoLongerDegraded);
            }
            if t == Transition::Unchanged {
                t = Transition::Changed;
            }
        }
        stats.success.inc();
        self.first_check = false;
        if t != Transition::Changed && config.always_log_health_check_success {
            check.log(host, HealthEvent::Success);
        }
        t
    }

    /// A failing check; `retriable` for a status in `retriable_statuses`; `status` is
    /// the HTTP status answered (0 if none).
    pub(crate) fn on_failure(
        &mut self,
        host: &Host,
        kind: Failure,
        retriable: bool,
        status: u16,
        check: &ActiveCheck,
    ) -> Transition {
        let (config, stats) = (&check.config, &check.stats);
        let failure = kind.event_type();
        self.num_healthy = 0;
        let network = matches!(kind, Failure::Network | Failure::Timeout);
        let mut t = Transition::Unchanged;
        if !host.flag_get(FAILED_ACTIVE_HC) {
            self.num_unhealthy += 1;
            if (!network && !retriable) || self.num_unhealthy == config.unhealthy_threshold {
                host.flag_set(FAILED_ACTIVE_HC);
                stats.healthy.dec();
                t = Transition::Changed;
                check.log(host, HealthEvent::EjectUnhealthy { failure, status });
            } else {
                t = Transition::ChangePending;
            }
        }
        if kind == Failure::Timeout && host.flag_get(FAILED_ACTIVE_HC) {
            host.flag_set(ACTIVE_HC_TIMEOUT);
        } else {
            host.flag_clear(ACTIVE_HC_TIMEOUT);
        }
        t = self.clear_pending(host, t);
        if self.first_check || config.always_log_health_check_failures {
            check.log(
                host,
                HealthEvent::Failure {
                    failure,
                    first_check: self.first_check,
                    status,
                },
            );
        }
        stats.failure.inc();
        match kind {
            Failure::Network | Failure::Timeout => stats.network_failure.inc(),
            Failure::Passive => stats.passive_failure.inc(),
            Failure::Active => {}
        }
        self.first_check = false;
        t
    }

    fn clear_pending(&self, host: &Host, t: Transition) -> Transition {
        if host.flag_get(PENDING_ACTIVE_HC) {
            host.flag_clear(PENDING_ACTIVE_HC);
            // The host leaves the excluded list even if its health is the same.
            return Transition::Changed;
        }
        t
    }
}

/// How long to wait before the next check (Envoy's `HealthCheckerImplBase::interval`):
/// `healthy` is the last result, `had_traffic` whether the cluster ever had upstream
/// connections (otherwise the no-traffic intervals apply).
pub(crate) fn next_interval<R: Rng>(
    config: &HealthCheck,
    had_traffic: bool,
    healthy: bool,
    t: Transition,
    rng: &mut R,
) -> Duration {
    let pending = t == Transition::ChangePending;
    let base = if had_traffic {
        match (healthy, pending) {
            (false, true) => config.unhealthy_edge_interval,
            (false, false) => config.unhealthy_interval,
            (true, true) => config.healthy_edge_interval,
            (true, false) => config.interval,
        }
    } else if healthy && !pending {
        config.no_traffic_healthy_interval
    } else {
        config.no_traffic_interval
    };
    with_jitter(
        base,
        config.interval_jitter,
        config.interval_jitter_percent,
        rng,
    )
}

/// `base` plus a random part below `interval_jitter_percent` of it and a random part
/// below `interval_jitter`, at least 1 ms (whole milliseconds, as Envoy).
pub(crate) fn with_jitter<R: Rng>(
    base: Duration,
    jitter: Duration,
    percent: u32,
    rng: &mut R,
) -> Duration {
    let mut ms = base.as_millis() as u64;
    let percent_part = u64::from(percent) * ms / 100;
    if percent_part > 0 {
        ms += rng.random_range(0..percent_part);
    }
    let jitter = jitter.as_millis() as u64;
    if jitter > 0 {
        ms += rng.random_range(0..jitter);
    }
    Duration::from_millis(ms.max(1))
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;
    use ferry_config::health_check::{HealthCheckKind, TcpHealthCheck};
    use rand::SeedableRng;
    use std::sync::Arc;

    fn config(unhealthy: u32, healthy: u32) -> HealthCheck {
        let s = Duration::from_secs;
        HealthCheck {
            timeout: s(1),
            interval: s(10),
            initial_jitter: Duration::ZERO,
            interval_jitter: Duration::ZERO,
            interval_jitter_percent: 0,
            unhealthy_threshold: unhealthy,
            healthy_threshold: healthy,
            alt_port: None,
            reuse_connection: true,
            no_traffic_interval: s(60),
            no_traffic_healthy_interval: s(70),
            unhealthy_interval: s(20),
            unhealthy_edge_interval: s(5),
            healthy_edge_interval: s(3),
            always_log_health_check_failures: false,
            always_log_health_check_success: false,
            event_logs: vec![],
            kind: HealthCheckKind::Tcp(TcpHealthCheck {
                send: vec![],
                receive: vec![],
            }),
        }
    }

    fn active(config: HealthCheck) -> ActiveCheck {
        ActiveCheck {
            config,
            stats: Arc::default(),
            events: None,
        }
    }

    fn host() -> Arc<Host> {
        let h = Host::new(
            "10.0.0.1:80".parse().unwrap(),
            "h".into(),
            1,
            0,
            String::new(),
        );
        h.flag_set(FAILED_ACTIVE_HC);
        h
    }

    #[test]
    fn first_success_is_enough_then_thresholds_apply() {
        let check = active(config(3, 2));
        let stats = &check.stats;
        let h = host();
        let mut s = Session::default();
        assert_eq!(s.on_success(&h, false, &check), Transition::Changed);
        assert!(!h.flag_get(FAILED_ACTIVE_HC));
        assert_eq!(stats.healthy.value(), 1);
        // Network failures count towards unhealthy_threshold (3).
        assert_eq!(
            s.on_failure(&h, Failure::Network, false, 0, &check),
            Transition::ChangePending
        );
        assert_eq!(
            s.on_failure(&h, Failure::Timeout, false, 0, &check),
            Transition::ChangePending
        );
        // A success in between starts the count again.
        assert_eq!(s.on_success(&h, false, &check), Transition::Unchanged);
        for _ in 0..2 {
            assert_eq!(
                s.on_failure(&h, Failure::Timeout, false, 0, &check),
                Transition::ChangePending
            );
        }
        assert_eq!(
            s.on_failure(&h, Failure::Timeout, false, 0, &check),
            Transition::Changed
        );
        assert!(h.flag_get(FAILED_ACTIVE_HC) && h.flag_get(ACTIVE_HC_TIMEOUT));
        assert_eq!(stats.healthy.value(), 0);
        assert_eq!(stats.network_failure.value(), 5);
        // Back: healthy_threshold (2) successes.
        assert_eq!(s.on_success(&h, false, &check), Transition::ChangePending);
        assert_eq!(s.on_success(&h, false, &check), Transition::Changed);
        assert_eq!(h.health_flags(), 0);
    }

    #[test]
    fn a_wrong_answer_fails_at_once_unless_retriable() {
        let check = active(config(3, 1));
        let stats = &check.stats;
        let h = host();
        let mut s = Session::default();
        s.on_success(&h, false, &check);
        assert_eq!(
            s.on_failure(&h, Failure::Active, true, 0, &check),
            Transition::ChangePending
        );
        assert_eq!(
            s.on_failure(&h, Failure::Active, false, 0, &check),
            Transition::Changed
        );
        assert!(h.flag_get(FAILED_ACTIVE_HC));
        s.on_success(&h, false, &check);
        assert_eq!(
            s.on_failure(&h, Failure::Passive, false, 0, &check),
            Transition::Changed
        );
        assert_eq!(stats.passive_failure.value(), 1);
        assert_eq!(stats.failure.value(), 3);
    }

    #[test]
    fn degraded_and_pending_flags() {
        let check = active(config(1, 1));
        let stats = &check.stats;
        let h = host();
        h.flag_set(PENDING_ACTIVE_HC);
        let mut s = Session::default();
        // A failing first check still clears the pending flag (the host is no longer excluded).
        assert_eq!(
            s.on_failure(&h, Failure::Network, false, 0, &check),
            Transition::Changed
        );
        assert!(!h.flag_get(PENDING_ACTIVE_HC) && h.flag_get(FAILED_ACTIVE_HC));
        assert_eq!(s.on_success(&h, true, &check), Transition::Changed);
        assert!(h.flag_get(DEGRADED_ACTIVE_HC));
        assert_eq!(stats.degraded.value(), 1);
        assert_eq!(s.on_success(&h, true, &check), Transition::Unchanged);
        assert_eq!(s.on_success(&h, false, &check), Transition::Changed);
        assert_eq!(stats.degraded.value(), 0);
    }

    #[test]
    fn intervals_follow_health_edges_and_traffic() {
        let cfg = config(3, 3);
        let mut rng = rand::rngs::StdRng::seed_from_u64(1);
        let s = Duration::from_secs;
        let i = |traffic, healthy, t| {
            next_interval(
                &cfg,
                traffic,
                healthy,
                t,
                &mut rand::rngs::StdRng::seed_from_u64(1),
            )
        };
        assert_eq!(i(true, true, Transition::Unchanged), s(10));
        assert_eq!(i(true, true, Transition::ChangePending), s(3));
        assert_eq!(i(true, false, Transition::ChangePending), s(5));
        assert_eq!(i(true, false, Transition::Changed), s(20));
        assert_eq!(i(false, true, Transition::Unchanged), s(70));
        assert_eq!(i(false, true, Transition::ChangePending), s(60));
        assert_eq!(i(false, false, Transition::Unchanged), s(60));
        // Jitter: up to 10% and up to 500 ms more, never less.
        for _ in 0..100 {
            let d = with_jitter(s(10), Duration::from_millis(500), 10, &mut rng);
            assert!(
                d >= s(10) && d < s(10) + Duration::from_millis(1500),
                "{d:?}"
            );
        }
        assert_eq!(
            with_jitter(Duration::ZERO, Duration::ZERO, 0, &mut rng),
            Duration::from_millis(1)
        );
    }
}
