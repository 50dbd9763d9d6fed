//! Upstream attempts of one request: the retry, per-try timeout and hedging state
//! machine of Envoy's router, bounded by the route timeout, the stream idle timeout
//! and the HCM request timeout.
//!
//! Requests whose route asks for none of this take the router's single-attempt path;
//! this one runs when a retry policy (route, virtual host or `x-envoy-retry-*`
//! headers), a per-try timeout or a mirror applies.

use crate::http::body::RequestTap;
use crate::http::local_reply::{self, LocalReason};
use crate::http::replay::Replay;
use crate::http::retry::{Decision, RetryState};
use crate::stream_info::StreamInfo;
use ferry_config::route::RouteAction;
use ferry_upstream::circuit_breaker::{Admission, Resource};
use ferry_upstream::{Body, Cluster, Host, UpstreamError};
use futures_util::future::{AbortHandle, Abortable};
use futures_util::stream::{FuturesUnordered, StreamExt};
use http::{HeaderMap, HeaderName, HeaderValue, Request, Response};
use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::time::{Duration, Instant};

const X_ENVOY_UPSTREAM_RQ_TIMEOUT_MS: &str = "x-envoy-upstream-rq-timeout-ms";
const X_ENVOY_UPSTREAM_RQ_PER_TRY_TIMEOUT_MS: &str = "x-envoy-upstream-rq-per-try-timeout-ms";
const X_ENVOY_EXPECTED_RQ_TIMEOUT_MS: &str = "x-envoy-expected-rq-timeout-ms";
const X_ENVOY_ATTEMPT_COUNT: &str = "x-envoy-attempt-count";
const GRPC_TIMEOUT: &str = "grpc-timeout";

/// The timeouts of one request, from the route, its retry policy and the request's
/// `x-envoy-upstream-rq-*` and `grpc-timeout` headers (Envoy's `finalTimeout`).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Timeouts {
    /// The route (global) timeout, from the end of the request (None: none).
    pub global: Option<Duration>,
    /// `per_try_timeout`.
    pub per_try: Option<Duration>,
    /// `per_try_idle_timeout`.
    pub per_try_idle: Option<Duration>,
    /// Whether anything differs from the route's own timeout (the precomputed
    /// `x-envoy-expected-rq-timeout-ms` then does not apply).
    pub custom: bool,
    /// The route's `max_stream_duration` (or the bounded `grpc-timeout`), from the
    /// start of the stream.
    pub stream_duration: Option<Duration>,
}

impl Timeouts {
    /// Computes the timeouts, removing the timeout headers Envoy consumes.
    pub fn of(ra: &RouteAction, h: &mut HeaderMap, grpc: bool) -> Timeouts {
        let policy = ra.retry_policy.as_deref();
        let mut t = Timeouts {
            global: ra.timeout,
            per_try: policy.and_then(|p| p.per_try_timeout),
            per_try_idle: policy.and_then(|p| p.per_try_idle_timeout),
            custom: false,
            stream_duration: None,
        };
        if let Some(msd) = &ra.max_stream_duration {
            // The stream's duration bounds it instead (the HCM's timer).
            t.global = None;
            t.custom = true;
            t.stream_duration = msd.max;
            if let (true, Some(cap)) = (grpc, msd.grpc_header_max) {
                let header = h
                    .get(GRPC_TIMEOUT)
                    .and_then(|v| v.to_str().ok())
                    .and_then(parse_grpc_timeout);
                if let Some(mut g) = header {
                    if let Some(cap) = cap {
                        g = g.min(cap);
                    }
                    if msd.grpc_header_offset < g {
                        g -= msd.grpc_header_offset;
                    }
                    t.stream_duration = Some(g);
                }
            }
        } else if let (true, Some((max, offset))) = (grpc, ra.max_grpc_timeout) {
            let mut g = h
                .get(GRPC_TIMEOUT)
                .and_then(|v| v.to_str().ok())
                .and_then(parse_grpc_timeout);
            if let Some(v) = g {
                if !offset.is_zero() && v > offset {
                    g = Some(v - offset);
                }
            }
            if let Some(max) = max {
                if g.is_none_or(|v| v > max) {
                    g = Some(max);
                }
            }
            t.global = g.filter(|d| !d.is_zero());
            t.custom = true;
        }
        let millis = |v: HeaderValue| {
            v.to_str()
                .ok()
                .and_then(|s| s.trim().parse::<u64>().ok())
                .map(Duration::from_millis)
        };
        if let Some(v) = h.remove(X_ENVOY_UPSTREAM_RQ_TIMEOUT_MS).and_then(millis) {
            t.global = (!v.is_zero()).then_some(v);
            t.custom = true;
        }
        if let Some(v) = h
            .remove(X_ENVOY_UPSTREAM_RQ_PER_TRY_TIMEOUT_MS)
            .and_then(millis)
        {
            t.per_try = (!v.is_zero()).then_some(v);
        }
        if let (Some(p), Some(g)) = (t.per_try, t.global) {
            if p >= g {
                t.per_try = None;
            }
        }
        if t.per_try.is_some() {
            t.custom = true;
        }
        t
    }

    /// `x-envoy-expected-rq-timeout-ms` after `elapsed`: the per-try timeout (the global
    /// one when hedging or when there is none), bounded by what is left of the global.
    pub fn expected(&self, hedging: bool, elapsed: Duration) -> Option<u64> {
        let global = self.global.map(|d| d.as_millis() as u64);
        let mut expected = match (self.per_try, hedging) {
            (Some(p), false) => Some(p.as_millis() as u64),
            _ => global,
        }?;
        if let Some(g) = global {
            let elapsed = elapsed.as_millis() as u64;
            expected = if elapsed >= g {
                1
            } else {
                expected.min(g - elapsed)
            };
        }
        (expected > 0).then_some(expected)
    }
}

/// A `grpc-timeout` value (`<digits><H|M|S|m|u|n>`), as Envoy parses it.
pub fn parse_grpc_timeout(v: &str) -> Option<Duration> {
    let v = v.trim();
    if v.len() < 2 || v.len() > 9 {
        return None;
    }
    let (digits, unit) = v.split_at(v.len() - 1);
    let n: u64 = digits.parse().ok()?;
    Some(match unit {
        "H" => Duration::from_secs(n.checked_mul(3600)?),
        "M" => Duration::from_secs(n.checked_mul(60)?),
        "S" => Duration::from_secs(n),
        "m" => Duration::from_millis(n),
        "u" => Duration::from_micros(n),
        "n" => Duration::from_nanos(n),
        _ => return None,
    })
}

/// What the attempts came to.
pub enum Attempted {
    /// A response to forward (the route deadline, once armed, bounds its body).
    Response {
        /// The response.
        resp: Response<Body>,
        /// When the route timeout fires, if armed.
        route_deadline: Option<tokio::time::Instant>,
        /// Attempts made.
        attempts: u32,
    },
    /// No usable response: answer locally.
    Local {
        /// Why.
        reason: LocalReason,
        /// `%UPSTREAM_TRANSPORT_FAILURE_REASON%`.
        failure: Option<String>,
    },
}

type AttemptFuture = Pin<
    Box<
        dyn Future<
                Output = Result<
                    (u32, Result<Response<Body>, UpstreamError>),
                    futures_util::future::Aborted,
                >,
            > + Send,
    >,
>;

struct Running {
    n: u32,
    /// When the attempt got its connection (its per-try timers start there).
    dispatch: Arc<ferry_upstream::Dispatch>,
    /// For outlier detection: a timed-out attempt is the host's local-origin timeout.
    host: Arc<Host>,
    abort: AbortHandle,
    /// A hedged attempt past its per-try timeout: it runs on without a deadline.
    timed_out: bool,
}

/// Everything an attempt needs, fixed for the request.
pub struct Plan<'a> {
    /// The route.
    pub ra: &'a RouteAction,
    /// The cluster.
    pub cluster: Arc<Cluster>,
    /// The first host (already picked, for host rewriting).
    pub first_host: Arc<Host>,
    /// The request hash for re-picking hosts.
    pub hash: Option<u64>,
    /// The upstream request head (cloned for each attempt).
    pub head: http::request::Parts,
    /// The request body: replayable when retries or hedging may need it again.
    pub body: PlanBody,
    /// The retry state, if anything asks for retries.
    pub retry: Option<RetryState>,
    /// Timeouts.
    pub timeouts: Timeouts,
    /// The stream idle timeout.
    pub idle: Option<Duration>,
    /// The HCM request timeout.
    pub request_timeout: Option<Duration>,
    /// Hedge on per-try timeouts (the route's `hedge_policy`, or an internal request's
    /// `x-envoy-hedge-on-per-try-timeout: true`).
    pub hedging: bool,
}

/// The body attempts send.
pub enum PlanBody {
    /// Read once: a single attempt.
    Once(Option<Body>),
    /// Shared: every attempt gets all of it (within the buffer limit).
    Replay(Arc<Replay>),
}

impl PlanBody {
    fn take(&mut self) -> Option<Body> {
        match self {
            PlanBody::Once(b) => b.take(),
            PlanBody::Replay(r) => r.replayable().then(|| r.reader()),
        }
    }

    fn replayable(&self) -> bool {
        match self {
            PlanBody::Once(b) => b.is_some(),
            PlanBody::Replay(r) => r.replayable(),
        }
    }
}

fn head_clone(head: &http::request::Parts) -> Request<()> {
    let mut req = Request::new(());
    *req.method_mut() = head.method.clone();
    *req.uri_mut() = head.uri.clone();
    *req.version_mut() = head.version;
    *req.headers_mut() = head.headers.clone();
    req
}

/// Runs attempts until one gives a final response or none is left.
pub async fn run(
    mut plan: Plan<'_>,
    info: &mut StreamInfo,
    tap: &RequestTap,
    start: Instant,
) -> Attempted {
    use std::sync::atomic::Ordering;
    let ra = plan.ra;
    let stats = plan.cluster.stats.clone();
    let breaker = plan.cluster.breakers.get(ra.priority).clone();
    let hedging = plan.hedging;
    let start_t = tokio::time::Instant::from_std(start);
    let mut inflight: FuturesUnordered<AttemptFuture> = FuturesUnordered::new();
    let mut running: Vec<Running> = Vec::new();
    let mut tried: Vec<Arc<Host>> = Vec::new();
    let mut next_host = Some(plan.first_host.clone());
    let mut next_at = Some(tokio::time::Instant::now());
    let mut n: u32 = 0;
    // The `max_retries` resource, held from a retry's scheduling to the next decision.
    let mut retry_admission: Option<Admission> = None;
    // Woken when an attempt gets its connection, to arm its per-try timers.
    let dispatched = Arc::new(tokio::sync::Notify::new());

    loop {
        let connected = dispatched.notified();
        tokio::pin!(connected);
        connected.as_mut().enable();
        let now = tokio::time::Instant::now();
        if next_at.is_some_and(|at| at <= now) {
            next_at = None;
            let host = next_host.take().or_else(|| pick(&plan, &tried));
            let body = plan.body.take();
            match (host, body) {
                (Some(host), Some(body)) => {
                    n += 1;
                    info.upstream_host = Some(host.address);
                    info.host = Some(host.clone());
                    info.attempt_count = n;
                    tried.push(host.clone());
                    let mut req = head_clone(&plan.head);
                    if ra.attempt_count_in_request {
                        req.headers_mut().insert(
                            HeaderName::from_static(X_ENVOY_ATTEMPT_COUNT),
                            HeaderValue::from(n),
                        );
                    }
                    if n > 1 || plan.timeouts.custom {
                        let h = req.headers_mut();
                        // What is left of the global timeout counts from the end of the
                        // request, as the route timeout does.
                        let since_done = tap
                            .completed_at(start)
                            .map(|done| done.elapsed())
                            .unwrap_or_default();
                        match plan.timeouts.expected(hedging, since_done) {
                            Some(ms) => {
                                h.insert(
                                    HeaderName::from_static(X_ENVOY_EXPECTED_RQ_TIMEOUT_MS),
                                    HeaderValue::from(ms),
                                );
                            }
                            None => {
                                h.remove(X_ENVOY_EXPECTED_RQ_TIMEOUT_MS);
                            }
                        }
                    }
                    let (parts, ()) = req.into_parts();
                    let req = Request::from_parts(parts, body);
                    let (abort, reg) = AbortHandle::new_pair();
                    let (cluster, h2) = (plan.cluster.clone(), host.clone());
                    let priority = ra.priority;
                    let k = n;
                    let dispatch = Arc::new(ferry_upstream::Dispatch::new(dispatched.clone()));
                    let d2 = dispatch.clone();
                    inflight.push(Box::pin(Abortable::new(
                        async move {
                            (
                                k,
                                h2.send_observed(&cluster, priority, req, Some(&d2)).await,
                            )
                        },
                        reg,
                    )));
                    running.push(Running {
                        n,
                        dispatch,
                        host: host.clone(),
                        abort,
                        timed_out: false,
                    });
                }
                (None, _) if running.is_empty() => {
                    return Attempted::Local {
                        reason: LocalReason::NoHealthyUpstream,
                        failure: None,
                    };
                }
                (_, None) if running.is_empty() => {
                    // The body outgrew the buffer while the retry waited.
                    return Attempted::Local {
                        reason: LocalReason::RetryBufferOverflow,
                        failure: None,
                    };
                }
                _ => {}
            }
        }

        // Deadlines, recomputed each turn (the request may have ended meanwhile).
        let completed = tap.completed_at(start).map(tokio::time::Instant::from_std);
        let route_at = plan
            .timeouts
            .global
            .zip(completed)
            .map(|(t, done)| done + t);
        let idle_at = plan.idle.map(|d| {
            let last = tap.last_activity_nanos.load(Ordering::Relaxed);
            start_t + Duration::from_nanos(last) + d
        });
        let request_at = plan
            .request_timeout
            .filter(|_| completed.is_none())
            .map(|t| start_t + t);
        // The earliest per-try deadline: per_try_timeout and per_try_idle_timeout run
        // from when both the attempt had its connection and the request ended (Envoy
        // arms them at pool ready). Until the response headers nothing comes back, so
        // the idle timer is not reset; over the body it is (see `TimedResponse`).
        let mut per_try_at: Option<(tokio::time::Instant, u32, bool)> = None;
        for r in running.iter().filter(|r| !r.timed_out) {
            let Some(ready) = r.dispatch.at() else {
                continue;
            };
            let candidates = [
                plan.timeouts
                    .per_try
                    .zip(completed)
                    .map(|(t, done)| (ready.max(done) + t, false)),
                plan.timeouts
                    .per_try_idle
                    .zip(completed)
                    .map(|(t, done)| (ready.max(done) + t, true)),
            ];
            for (at, idle) in candidates.into_iter().flatten() {
                if per_try_at.is_none_or(|(best, _, _)| at < best) {
                    per_try_at = Some((at, r.n, idle));
                }
            }
        }
        let now = tokio::time::Instant::now();
        tokio::select! {
            Some(done) = inflight.next(), if !inflight.is_empty() => {
                let Ok((k, result)) = done else { continue }; // aborted
                let Some(pos) = running.iter().position(|r| r.n == k) else { continue };
                let ended = running.swap_remove(pos);
                drop(retry_admission.take());
                match result {
                    Ok(resp) => {
                        let decision = match plan.retry.as_mut() {
                            Some(rs) => rs.on_response(resp.status().as_u16(), resp.headers()),
                            None => Decision::No,
                        };
                        let mut exhausted = false;
                        match decision {
                            Decision::Retry { back_off, rate_limited } => {
                                if schedule(&plan, &breaker, &stats, info, &mut retry_admission, rate_limited) {
                                    // A response given up for a retry (Envoy's retry.upstream_rq_*).
                                    stats.retried.inc(resp.status().as_u16());
                                    next_at = Some(now + back_off);
                                    continue;
                                }
                                // Not retried: with a hedged attempt still out, wait for it.
                                if !running.is_empty() {
                                    continue;
                                }
                            }
                            Decision::LimitExceeded => {
                                stats.upstream_rq_retry_limit_exceeded.inc();
                                if !running.is_empty() {
                                    continue;
                                }
                                exhausted = true;
                            }
                            Decision::No => {
                                if n > 1 {
                                    stats.upstream_rq_retry_success.inc();
                                }
                            }
                        }
                        if exhausted {
                            info.response_flags.set(ferry_config::ResponseFlag::UpstreamRetryLimitExceeded);
                        }
                        abort_all(&running);
                        // The attempt whose response goes downstream (hedging may have
                        // started another since).
                        info.upstream_host = Some(ended.host.address);
                        info.upstream_conn = ended.dispatch.connection();
                        info.host = Some(ended.host);
                        return Attempted::Response { resp, route_deadline: route_at, attempts: n };
                    }
                    Err(e) => {
                        // The client's body failed: nothing to retry (the router
                        // answers 400 or logs the client gone).
                        if tap.malformed() || tap.aborted() {
                            abort_all(&running);
                            return Attempted::Local {
                                reason: LocalReason::from_upstream(&e),
                                failure: None,
                            };
                        }
                        let decision = match plan.retry.as_mut() {
                            Some(rs) => rs.on_failure(&e),
                            None => Decision::No,
                        };
                        if let Some(at) = retry_at(decision, &plan, &breaker, &stats, info, &mut retry_admission, now) {
                            next_at = Some(at);
                            continue;
                        }
                        if running.is_empty() && next_at.is_none() {
                            return Attempted::Local {
                                reason: LocalReason::from_upstream(&e),
                                failure: local_reply::transport_failure(&e),
                            };
                        }
                    }
                }
            }
            _ = tokio::time::sleep_until(per_try_at.map_or(now, |p| p.0)), if per_try_at.is_some() => {
                let Some((_, k, idle)) = per_try_at else { continue };
                let Some(pos) = running.iter().position(|r| r.n == k) else { continue };
                let reason = if idle { LocalReason::PerTryIdleTimeout } else { LocalReason::PerTryTimeout };
                running[pos].host.report_timeout();
                if hedging {
                    // A soft timeout (Envoy's hedge): the attempt runs on; another
                    // starts if a retry is left, whatever retry_on says.
                    running[pos].timed_out = true;
                } else {
                    if idle {
                        stats.upstream_rq_per_try_idle_timeout.inc();
                    } else {
                        stats.upstream_rq_per_try_timeout.inc();
                    }
                    let r = running.swap_remove(pos);
                    r.abort.abort();
                }
                drop(retry_admission.take());
                let decision = match plan.retry.as_mut() {
                    Some(rs) if hedging => rs.on_hedge(),
                    Some(rs) => rs.on_per_try_timeout(),
                    None => Decision::No,
                };
                if let Some(at) = retry_at(decision, &plan, &breaker, &stats, info, &mut retry_admission, now) {
                    next_at = Some(at);
                    continue;
                }
                if running.is_empty() && next_at.is_none() {
                    return Attempted::Local { reason, failure: None };
                }
            }
            _ = tokio::time::sleep_until(route_at.unwrap_or(now)), if route_at.is_some() => {
                stats.upstream_rq_timeout.inc();
                for r in &running {
                    // Attempts past a soft per-try timeout were reported then.
                    if !r.timed_out {
                        r.host.report_timeout();
                    }
                    r.abort.abort();
                }
                return Attempted::Local { reason: LocalReason::UpstreamTimeout, failure: None };
            }
            _ = tokio::time::sleep_until(idle_at.unwrap_or(now)), if idle_at.is_some() => {
                // Body frames may have arrived meanwhile: re-check before giving up.
                let last = tap.last_activity_nanos.load(Ordering::Relaxed);
                if plan.idle.is_some_and(|d| start_t + Duration::from_nanos(last) + d <= tokio::time::Instant::now()) {
                    let request_complete = tap.completed_at(start).is_some();
                    return Attempted::Local { reason: LocalReason::StreamIdleTimeout { request_complete }, failure: None };
                }
            }
            _ = tokio::time::sleep_until(request_at.unwrap_or(now)), if request_at.is_some() => {
                if tap.completed_at(start).is_none() {
                    return Attempted::Local { reason: LocalReason::RequestTimeout, failure: None };
                }
            }
            _ = tokio::time::sleep_until(next_at.unwrap_or(now)), if next_at.is_some() => {}
            // The request just ended: arm the route and per-try timeouts.
            _ = tap.completed.notified(), if completed.is_none() => {}
            // An attempt got its connection: arm its per-try timers.
            _ = &mut connected => {}
        }
    }
}

/// Re-picks a host for a retry: with `previous_hosts`, hosts already tried are
/// avoided for up to `host_selection_retry_max_attempts` re-picks.
fn pick(plan: &Plan<'_>, tried: &[Arc<Host>]) -> Option<Arc<Host>> {
    let mut host = plan.cluster.choose_host(plan.hash)?;
    if let Some(p) = plan.retry.as_ref().map(RetryState::policy) {
        if p.previous_hosts {
            for _ in 0..p.host_selection_retry_max_attempts {
                if !tried.iter().any(|t| Arc::ptr_eq(t, &host)) {
                    break;
                }
                host = plan.cluster.choose_host(plan.hash)?;
            }
        }
    }
    Some(host)
}

/// Cancels every attempt still out.
fn abort_all(running: &[Running]) {
    for r in running {
        r.abort.abort();
    }
}

/// Acts on the retry decision after an attempt ended without a usable response (a
/// failure or a per-try timeout): when the next attempt starts, or None when there is
/// none (the limit is reached — `URX` — or the retry was refused).
#[allow(clippy::too_many_arguments)]
fn retry_at(
    decision: Decision,
    plan: &Plan<'_>,
    breaker: &Arc<ferry_upstream::circuit_breaker::Breaker>,
    stats: &ferry_upstream::ClusterStats,
    info: &mut StreamInfo,
    admission: &mut Option<Admission>,
    now: tokio::time::Instant,
) -> Option<tokio::time::Instant> {
    match decision {
        Decision::Retry {
            back_off,
            rate_limited,
        } => schedule(plan, breaker, stats, info, admission, rate_limited).then(|| now + back_off),
        Decision::LimitExceeded => {
            stats.upstream_rq_retry_limit_exceeded.inc();
            info.response_flags
                .set(ferry_config::ResponseFlag::UpstreamRetryLimitExceeded);
            None
        }
        Decision::No => None,
    }
}

/// Admits a retry: the body must still be replayable and the `max_retries` breaker
/// (or retry budget) must have room. Counts Envoy's retry stats.
fn schedule(
    plan: &Plan<'_>,
    breaker: &Arc<ferry_upstream::circuit_breaker::Breaker>,
    stats: &ferry_upstream::ClusterStats,
    info: &mut StreamInfo,
    admission: &mut Option<Admission>,
    rate_limited: bool,
) -> bool {
    if !plan.body.replayable() {
        stats.retry_or_shadow_abandoned.inc();
        return false;
    }
    match breaker.try_acquire(Resource::Retries) {
        Some(a) => *admission = Some(a),
        None => {
            stats.upstream_rq_retry_overflow.inc();
            info.response_flags
                .set(ferry_config::ResponseFlag::UpstreamOverflow);
            return false;
        }
    }
    stats.upstream_rq_retry.inc();
    if rate_limited {
        stats.upstream_rq_retry_backoff_ratelimited.inc();
    } else {
        stats.upstream_rq_retry_backoff_exponential.inc();
    }
    true
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn grpc_timeouts_parse_with_their_units() {
        assert_eq!(parse_grpc_timeout("1S"), Some(Duration::from_secs(1)));
        assert_eq!(parse_grpc_timeout("250m"), Some(Duration::from_millis(250)));
        assert_eq!(parse_grpc_timeout("2H"), Some(Duration::from_secs(7200)));
        assert_eq!(parse_grpc_timeout("S"), None);
        assert_eq!(parse_grpc_timeout("1x"), None);
        assert_eq!(parse_grpc_timeout("1234567890S"), None);
    }

    #[test]
    fn expected_timeout_is_the_per_try_bounded_by_what_is_left() {
        let t = Timeouts {
            global: Some(Duration::from_millis(1000)),
            per_try: Some(Duration::from_millis(300)),
            ..Default::default()
        };
        assert_eq!(t.expected(false, Duration::ZERO), Some(300));
        assert_eq!(t.expected(true, Duration::ZERO), Some(1000));
        assert_eq!(t.expected(false, Duration::from_millis(800)), Some(200));
        assert_eq!(t.expected(false, Duration::from_millis(2000)), Some(1));
        assert_eq!(Timeouts::default().expected(false, Duration::ZERO), None);
    }
}
