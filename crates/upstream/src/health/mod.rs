//! Host health: Envoy's health flags, active health checking (one task per host, with
//! a connection of its own), and the cluster's health lifecycle — which hosts are
//! checked, when the cluster is warm, and republishing the host set when a host's
//! health changes.
//!
//! As in Envoy, a cluster with a health check starts every host as
//! `/failed_active_hc`; the first check result counts at once, later ones follow the
//! thresholds. The cluster becomes ready (warm) once every initial host has had one
//! check, passed or failed.

pub mod flags;
mod grpc;
mod http;
pub(crate) mod session;
mod tcp;

use crate::event_log::{HealthEvent, HealthLog};
use crate::log_file::Target;
use crate::outlier::Detector;
use crate::stats::HealthCheckStats;
use crate::{Cluster, Host};
use ferry_config::cluster::Cluster as ClusterConfig;
use ferry_config::health_check::{HealthCheck, HealthCheckKind};
use flags::{
    DEGRADED_ACTIVE_HC, EXCLUDED_VIA_IMMEDIATE_HC_FAIL, FAILED_ACTIVE_HC, FAILED_OUTLIER_CHECK,
    PENDING_ACTIVE_HC,
};
use parking_lot::Mutex;
use session::{next_interval, with_jitter, Failure, Transition};
use std::collections::HashMap;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Weak};
use std::time::Duration;
use tokio::task::AbortHandle;

/// The result of one check.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Verdict {
    /// The host passed (`degraded` if it said `x-envoy-degraded`).
    Healthy {
        /// `x-envoy-degraded` was in the answer.
        degraded: bool,
    },
    /// The host failed.
    Unhealthy {
        /// How.
        failure: Failure,
        /// A status in `retriable_statuses`.
        retriable: bool,
        /// The HTTP status answered (0 if none), for the event log.
        status: u16,
    },
}

impl Verdict {
    /// A failure without an answer to log.
    pub(crate) fn failed(failure: Failure) -> Verdict {
        Verdict::Unhealthy {
            failure,
            retriable: false,
            status: 0,
        }
    }
}

/// A cluster's health check with its stats.
#[derive(Debug)]
pub(crate) struct ActiveCheck {
    pub(crate) config: HealthCheck,
    pub(crate) stats: Arc<HealthCheckStats>,
    /// The event logs, if any.
    pub(crate) events: Option<HealthLog>,
}

impl ActiveCheck {
    /// Writes `event` of `host` to the event logs, if there are any.
    pub(crate) fn log(&self, host: &Host, event: HealthEvent) {
        if let Some(l) = &self.events {
            l.log(host, event);
        }
    }
}

#[derive(Debug, Default)]
struct Warming {
    /// The first host set is known.
    discovered: bool,
    /// Initial hosts whose first check has not completed.
    pending: usize,
    /// The cluster has become ready.
    warm: bool,
}

/// The health state of a cluster (one field of [`Cluster`]).
#[derive(Debug)]
pub(crate) struct ClusterHealth {
    this: Weak<Cluster>,
    /// `health_checks[0]`, if any.
    pub(crate) check: Option<Arc<ActiveCheck>>,
    /// `outlier_detection`, if any.
    pub(crate) detector: Option<Arc<Detector>>,
    /// Serialises host-set rebuilds, so that the last one published is the newest.
    pub(crate) publish: Mutex<()>,
    /// Health check task of each host (keyed by the host's address in memory).
    sessions: Mutex<HashMap<usize, AbortHandle>>,
    /// The outlier detector's task.
    tasks: Mutex<Vec<AbortHandle>>,
    warming: Mutex<Warming>,
    /// Tasks may be spawned (a tokio runtime was given).
    started: AtomicBool,
}

impl Drop for ClusterHealth {
    fn drop(&mut self) {
        self.stop();
    }
}

fn key(h: &Arc<Host>) -> usize {
    Arc::as_ptr(h) as usize
}

impl ClusterHealth {
    /// The health state of a cluster being built (`this` is the cluster's own pointer).
    /// With `previous` (the health of the cluster this one replaces), its health check
    /// and outlier stats are kept.
    pub(crate) fn new(
        this: Weak<Cluster>,
        config: &ClusterConfig,
        previous: Option<&ClusterHealth>,
        store: &ferry_stats::Store,
        logs: &crate::log_file::ClusterLogs,
    ) -> ClusterHealth {
        let outlier_log = logs.outlier.as_ref();
        let check = config.health_check.clone().map(|c| {
            let stats = match previous.and_then(|p| p.check.as_ref()) {
                Some(p) => p.stats.clone(),
                None => {
                    let stats = Arc::new(HealthCheckStats::default());
                    store.register(format!("cluster.{}.health_check.", config.name), &stats);
                    stats
                }
            };
            let events = (!c.event_logs.is_empty()).then(|| {
                let files = c
                    .event_logs
                    .iter()
                    .map(|p| logs.files.open(Target::path(p)));
                let checker = match c.kind {
                    HealthCheckKind::Http(_) => "HTTP",
                    HealthCheckKind::Tcp(_) => "TCP",
                    HealthCheckKind::Grpc(_) => "GRPC",
                };
                HealthLog::new(files.collect(), checker, &config.name)
            });
            Arc::new(ActiveCheck {
                config: c,
                stats,
                events,
            })
        });
        let previous_outlier = previous
            .and_then(|p| p.detector.as_ref())
            .map(|d| d.stats.clone());
        let detector = config
            .outlier_detection
            .clone()
            .map(|o| Detector::new(o, store, &config.name, outlier_log, previous_outlier));
        ClusterHealth {
            this,
            check,
            detector,
            publish: Mutex::new(()),
            sessions: Mutex::new(HashMap::new()),
            tasks: Mutex::new(Vec::new()),
            warming: Mutex::new(Warming::default()),
            started: AtomicBool::new(false),
        }
    }

    /// Prepares a host joining the cluster: failed active HC until its first check
    /// (and excluded until then with `ignore_new_hosts_until_first_hc` once warm), and
    /// attached to the outlier detector.
    pub(crate) fn adopt(&self, host: &Host, ignore_until_first_hc: bool) {
        if self.check.is_some() {
            host.flag_set(FAILED_ACTIVE_HC);
            if ignore_until_first_hc && self.warming.lock().warm {
                host.flag_set(PENDING_ACTIVE_HC);
            }
        }
        if let Some(d) = &self.detector {
            host.outlier.attach(d);
        }
    }

    /// Takes over a host of the cluster this one replaces: its health flags stay as they
    /// are (its checks go on in this cluster's sessions); it reports to this cluster's
    /// outlier detector.
    pub(crate) fn carry(&self, host: &Host) {
        if let Some(d) = &self.detector {
            host.outlier.attach(d);
        }
    }

    /// Starts checking `host` (if the cluster has a check and tasks may run).
    fn start_session(&self, host: &Arc<Host>, runtime: &tokio::runtime::Handle) {
        let Some(check) = &self.check else {
            return;
        };
        {
            // Warming waits for the first check of the hosts that have not had one (a
            // host carried over from a replaced cluster has).
            let mut w = self.warming.lock();
            if !w.warm && host.hc.lock().first_check() {
                w.pending += 1;
            }
        }
        let task = runtime.spawn(run_session(self.this.clone(), host.clone(), check.clone()));
        if let Some(old) = self.sessions.lock().insert(key(host), task.abort_handle()) {
            old.abort();
        }
    }

    /// Stops everything about a host that left the cluster.
    fn retire(&self, host: &Arc<Host>) {
        if let Some(t) = self.sessions.lock().remove(&key(host)) {
            t.abort();
        }
        if let Some(check) = &self.check {
            let mut s = host.hc.lock();
            if !s.retired {
                s.retired = true;
                if s.first_check() {
                    self.first_check_done();
                }
                if !host.flag_get(FAILED_ACTIVE_HC) {
                    check.stats.healthy.dec();
                }
                if host.flag_get(DEGRADED_ACTIVE_HC) {
                    check.stats.degraded.dec();
                }
            }
        }
        if let Some(d) = &self.detector {
            d.host_removed(host);
        }
    }

    /// An initial host had its first check.
    fn first_check_done(&self) {
        let ready = {
            let mut w = self.warming.lock();
            w.pending = w.pending.saturating_sub(1);
            Self::now_warm(&mut w)
        };
        if ready {
            if let Some(c) = self.this.upgrade() {
                c.set_ready();
            }
        }
    }

    fn now_warm(w: &mut Warming) -> bool {
        if !w.warm && w.discovered && w.pending == 0 {
            w.warm = true;
            return true;
        }
        false
    }

    /// Aborts every task (the cluster or its manager is going away).
    pub(crate) fn stop(&self) {
        for (_, t) in self.sessions.lock().drain() {
            t.abort();
        }
        for t in self.tasks.lock().drain(..) {
            t.abort();
        }
    }
}

impl Cluster {
    /// Starts health checking of the current hosts and the outlier detector on
    /// `runtime`. Called once, right after the cluster is built.
    pub(crate) fn start_health(self: &Arc<Self>, runtime: &tokio::runtime::Handle) {
        let h = &self.health;
        h.started.store(true, Ordering::Release);
        let _g = h.publish.lock();
        for host in self.hosts().iter() {
            h.start_session(host, runtime);
        }
        if let Some(d) = &h.detector {
            let task = runtime.spawn(crate::outlier::run(Arc::downgrade(self), d.clone()));
            h.tasks.lock().push(task.abort_handle());
        }
    }

    /// Stops health checking and outlier detection (the cluster manager is dropped).
    pub(crate) fn stop_health(&self) {
        self.health.stop();
    }

    /// Adopts the hosts of `new` that are not in `old` (starting their checks) and
    /// retires the hosts of `old` that are not in `new`. Runs under the publish lock.
    pub(crate) fn change_members(&self, old: &[Arc<Host>], new: &[Arc<Host>]) {
        let h = &self.health;
        let runtime = tokio::runtime::Handle::try_current().ok();
        for host in new {
            if !old.iter().any(|o| Arc::ptr_eq(o, host)) {
                // The default transport socket is picked for the new host.
                self.stats.default_total_match_count.inc();
                h.adopt(host, self.config.common_lb.ignore_new_hosts_until_first_hc);
                if let (true, Some(rt)) = (h.started.load(Ordering::Acquire), &runtime) {
                    h.start_session(host, rt);
                }
            }
        }
        for host in old {
            if !new.iter().any(|n| Arc::ptr_eq(n, host)) {
                h.retire(host);
            }
        }
    }

    /// The first host set is known (discovery ran once): the cluster is ready unless
    /// initial health checks are still running.
    pub(crate) fn mark_ready(&self) {
        let ready = {
            let mut w = self.health.warming.lock();
            w.discovered = true;
            // Without tasks (no runtime), nothing would ever complete the checks.
            if !self.health.started.load(Ordering::Acquire) {
                w.pending = 0;
            }
            ClusterHealth::now_warm(&mut w)
        };
        if ready {
            self.set_ready();
        }
    }

    /// Republishes the host set after a host's health flags changed.
    pub(crate) fn health_changed(&self) {
        let _g = self.health.publish.lock();
        let hosts = self.hosts();
        self.publish(hosts);
    }

    /// A response carried `x-envoy-immediate-health-check-fail`: with active health
    /// checking, the host is excluded and fails at once (Envoy's passive failure).
    pub(crate) fn immediate_health_check_fail(&self, host: &Host) {
        let Some(check) = &self.health.check else {
            return;
        };
        let newly_excluded = !host.flag_get(EXCLUDED_VIA_IMMEDIATE_HC_FAIL);
        host.flag_set(EXCLUDED_VIA_IMMEDIATE_HC_FAIL);
        let t = {
            let mut s = host.hc.lock();
            if s.retired {
                return;
            }
            s.on_failure(host, Failure::Passive, false, 0, check)
        };
        if newly_excluded || t == Transition::Changed {
            self.health_changed();
        }
    }

    /// The outlier detector, if the cluster has one.
    pub(crate) fn detector(&self) -> Option<&Arc<Detector>> {
        self.health.detector.as_ref()
    }

    /// (average, ejection threshold) of the success rate (`local`: local origin) at the
    /// last outlier detection interval, -1 when not computed; None without outlier
    /// detection. For admin `/clusters`.
    pub fn outlier_success_rate(&self, local: bool) -> Option<(f64, f64)> {
        self.detector().map(|d| d.success_rate_summary(local))
    }
}

/// The checker of one kind.
enum Probe {
    Http(Box<http::HttpProbe>),
    Tcp(tcp::TcpProbe),
    Grpc(grpc::GrpcProbe),
    /// A test double: answers from a script, and records when it was asked.
    #[cfg(test)]
    Scripted(tests::Script),
}

impl Probe {
    async fn check(&mut self, host: &Host) -> Verdict {
        match self {
            Probe::Http(p) => p.check(host).await,
            Probe::Tcp(p) => p.check().await,
            Probe::Grpc(p) => p.check().await,
            #[cfg(test)]
            Probe::Scripted(p) => p.check().await,
        }
    }

    fn reset(&mut self) {
        match self {
            Probe::Http(p) => p.reset(),
            Probe::Tcp(p) => p.reset(),
            Probe::Grpc(p) => p.reset(),
            #[cfg(test)]
            Probe::Scripted(_) => {}
        }
    }
}

/// Checks one host until the cluster is gone or the task is aborted.
async fn run_session(cluster: Weak<Cluster>, host: Arc<Host>, check: Arc<ActiveCheck>) {
    let cfg = &check.config;
    let Some(name) = cluster.upgrade().map(|c| c.config.name.clone()) else {
        return;
    };
    let mut addr = host.address;
    if let Some(p) = cfg.alt_port {
        addr.set_port(p);
    }
    let probe = match &cfg.kind {
        HealthCheckKind::Http(h) => Probe::Http(Box::new(http::HttpProbe::new(
            h.clone(),
            &name,
            addr,
            cfg.reuse_connection,
            check.stats.clone(),
        ))),
        HealthCheckKind::Tcp(t) => {
            Probe::Tcp(tcp::TcpProbe::new(t.clone(), addr, cfg.reuse_connection))
        }
        HealthCheckKind::Grpc(g) => Probe::Grpc(grpc::GrpcProbe::new(
            g.clone(),
            &name,
            addr,
            cfg.reuse_connection,
        )),
    };
    run_checks(cluster, host, check, probe).await
}

/// The check loop of one host: check, apply the verdict, wait the interval that the
/// verdict and the cluster's traffic call for.
async fn run_checks(
    cluster: Weak<Cluster>,
    host: Arc<Host>,
    check: Arc<ActiveCheck>,
    mut probe: Probe,
) {
    let cfg = &check.config;
    if !cfg.initial_jitter.is_zero() {
        let wait = with_jitter(Duration::ZERO, cfg.initial_jitter, 0, &mut rand::rng());
        tokio::time::sleep(wait).await;
    }
    loop {
        check.stats.attempt.inc();
        let verdict = match tokio::time::timeout(cfg.timeout, probe.check(&host)).await {
            Ok(v) => v,
            Err(_) => {
                probe.reset();
                Verdict::failed(Failure::Timeout)
            }
        };
        let Some(c) = cluster.upgrade() else {
            return;
        };
        let healthy = matches!(verdict, Verdict::Healthy { .. });
        let t = {
            let mut s = host.hc.lock();
            if s.retired {
                return;
            }
            let first = s.first_check();
            let t = match verdict {
                Verdict::Healthy { degraded } => s.on_success(&host, degraded, &check),
                Verdict::Unhealthy {
                    failure,
                    retriable,
                    status,
                } => s.on_failure(&host, failure, retriable, status, &check),
            };
            if first {
                c.health.first_check_done();
            }
            t
        };
        let mut changed = t == Transition::Changed;
        if healthy && !host.flag_get(FAILED_ACTIVE_HC) && host.flag_get(FAILED_OUTLIER_CHECK) {
            if let Some(d) = c.detector() {
                if d.config.successful_active_health_check_uneject_host {
                    d.uneject(&host, tokio::time::Instant::now());
                    changed = true;
                }
            }
        }
        if changed {
            c.health_changed();
        }
        let had_traffic = c.stats.upstream_cx_total.value() > 0;
        drop(c);
        let wait = next_interval(cfg, had_traffic, healthy, t, &mut rand::rng());
        tokio::time::sleep(wait).await;
    }
}

#[cfg(test)]
mod tests;
