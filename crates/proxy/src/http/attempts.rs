//! Upstream attempts of one request: the retry, per-try timeout and hedging state
//! machine of Envoy's router, bounded by the route timeout, the stream idle timeout
//! and the HCM request timeout.
//!
//! The attempts' inputs (the plan, where attempts go) are in [`plan`].
//!
//! Every routed request comes through here (Envoy's `UpstreamRequest`s with the retry
//! state): one request is one attempt, or more when a retry policy (route, virtual
//! host or `x-envoy-retry-*` headers), a per-try timeout, hedging or a mirror applies.

use crate::http::body::RequestTap;
use crate::http::local_reply::{self, LocalReason};
use crate::http::retry::Decision;
use crate::stream_info::StreamInfo;
use ferry_config::ResponseFlag;
use ferry_upstream::circuit_breaker::{Admission, Resource};
use ferry_upstream::{Body, Host, UpstreamError};
use http::{HeaderName, HeaderValue, Request, Response};
use std::pin::Pin;
use std::sync::Arc;
use std::time::{Duration, Instant};

mod plan;

use plan::{head_clone, pick};
pub use plan::{Plan, PlanBody, Pools, SendFuture, Upstream};

const X_ENVOY_EXPECTED_RQ_TIMEOUT_MS: &str = "x-envoy-expected-rq-timeout-ms";
const X_ENVOY_ATTEMPT_COUNT: &str = "x-envoy-attempt-count";

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

/// An attempt on its way. Cancelling it is dropping it.
struct Running {
    n: u32,
    sent: SendFuture,
    /// When the attempt got its connection (its per-try timers start there), and which
    /// connection it was; watched only when a per-try timer or a log needs it.
    dispatch: Option<Arc<ferry_upstream::Dispatch>>,
    /// For outlier detection: a timed-out attempt is the host's local-origin timeout.
    host: Arc<Host>,
    /// A hedged attempt past its per-try timeout: it runs on without a deadline.
    timed_out: bool,
}

/// Runs attempts until one gives a final response or none is left. Every routed
/// request comes through here: without a retry policy, per-try timeout or mirror it is
/// one attempt, bounded by the same timers.
pub async fn run(
    plan: Plan<'_>,
    info: &mut StreamInfo,
    tap: &RequestTap,
    start: Instant,
) -> Attempted {
    let mut a = Attempts::new(plan, info, tap, start);
    // Woken when an attempt gets its connection, to arm its per-try timers (only
    // watched when there are per-try timers).
    let dispatched = a.dispatched.clone();
    // One timer, set to the earliest deadline each turn.
    let timer = tokio::time::sleep_until(tokio::time::Instant::now());
    tokio::pin!(timer);
    let mut armed: Option<tokio::time::Instant> = None;
    loop {
        let connected = dispatched.as_deref().map(tokio::sync::Notify::notified);
        tokio::pin!(connected);
        if let Some(c) = connected.as_mut().as_pin_mut() {
            c.enable();
        }
        if let Some(done) = a.start_due() {
            return done;
        }
        let next = a.next_timer();
        if let Some((at, _)) = next {
            if armed != Some(at) {
                timer.as_mut().reset(at);
                armed = Some(at);
            }
        }
        let request_done = a.tap.completed_at(start).is_some();
        let now = tokio::time::Instant::now();
        let step = tokio::select! {
            (pos, result) = std::future::poll_fn(|cx| poll_attempts(&mut a.running, cx)), if !a.running.is_empty() => {
                a.on_attempt_end(pos, result, now)
            }
            _ = &mut timer, if next.is_some() => {
                armed = None;
                match next {
                    Some((_, which)) => a.on_timer(which, now),
                    None => Step::Continue,
                }
            }
            // The request just ended: arm the route and per-try timeouts.
            _ = tap.completed.notified(), if !request_done => Step::Continue,
            // An attempt got its connection: arm its per-try timers.
            _ = connection_made(connected.as_mut().as_pin_mut()), if dispatched.is_some() => Step::Continue,
        };
        if let Step::Done(done) = step {
            return done;
        }
    }
}

/// Polls every attempt out; the first that ends, by its place.
fn poll_attempts(
    running: &mut [Running],
    cx: &mut std::task::Context<'_>,
) -> std::task::Poll<(usize, Result<Response<Body>, UpstreamError>)> {
    for (pos, r) in running.iter_mut().enumerate() {
        if let std::task::Poll::Ready(result) = r.sent.as_mut().poll(cx) {
            return std::task::Poll::Ready((pos, result));
        }
    }
    std::task::Poll::Pending
}

/// Resolves when the watched notification comes (never when nothing is watched).
async fn connection_made(notified: Option<Pin<&mut tokio::sync::futures::Notified<'_>>>) {
    match notified {
        Some(n) => n.await,
        None => std::future::pending().await,
    }
}

/// What a turn of the attempt loop came to.
enum Step {
    /// Keep going.
    Continue,
    /// The request's outcome.
    Done(Attempted),
}

/// Which timer is the next to fire.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Timer {
    /// An attempt's per-try timeout (`idle`: its per-try idle timeout).
    PerTry {
        /// The attempt.
        n: u32,
        /// Whether it is `per_try_idle_timeout`.
        idle: bool,
    },
    /// The route timeout (from the end of the request).
    Route,
    /// The stream idle timeout (from the last request body frame).
    Idle,
    /// The HCM request timeout, while the request is incomplete.
    Request,
    /// A retry's back-off is over.
    NextAttempt,
}

/// The attempt state machine of one request (Envoy's router with its
/// `UpstreamRequest`s and retry state).
struct Attempts<'p, 'i> {
    plan: Plan<'p>,
    info: &'i mut StreamInfo,
    tap: &'i RequestTap,
    start: Instant,
    /// The attempts out (one, unless hedging): inline, no allocation per request.
    running: smallvec::SmallVec<[Running; 1]>,
    /// Hosts tried (for `previous_hosts`).
    tried: Vec<Arc<Host>>,
    next_host: Option<Arc<Host>>,
    /// When the next attempt starts, if one is due.
    next_at: Option<tokio::time::Instant>,
    /// Attempts started.
    n: u32,
    /// The `max_retries` resource, held from a retry's scheduling to the next decision.
    retry_admission: Option<Admission>,
    /// Woken when an attempt gets its connection (only with per-try timers).
    dispatched: Option<Arc<tokio::sync::Notify>>,
}

impl<'p, 'i> Attempts<'p, 'i> {
    fn new(plan: Plan<'p>, info: &'i mut StreamInfo, tap: &'i RequestTap, start: Instant) -> Self {
        let per_try_timers =
            plan.timeouts.per_try.is_some() || plan.timeouts.per_try_idle.is_some();
        Attempts {
            dispatched: per_try_timers.then(|| Arc::new(tokio::sync::Notify::new())),
            next_host: Some(plan.first_host.clone()),
            plan,
            info,
            tap,
            start,
            running: smallvec::SmallVec::new(),
            tried: Vec::new(),
            next_at: Some(tokio::time::Instant::now()),
            n: 0,
            retry_admission: None,
        }
    }

    /// The cluster's stats.
    fn stats(&self) -> &ferry_upstream::ClusterStats {
        &self.plan.cluster.stats
    }

    /// Starts the next attempt when it is due; the outcome when none can start and none
    /// is out.
    fn start_due(&mut self) -> Option<Attempted> {
        if self
            .next_at
            .is_none_or(|at| at > tokio::time::Instant::now())
        {
            return None;
        }
        self.next_at = None;
        let host = self
            .next_host
            .take()
            .or_else(|| pick(&self.plan, &self.tried));
        let body = self.plan.body.take();
        let (host, body) = match (host, body) {
            (Some(host), Some(body)) => (host, body),
            (None, _) if self.running.is_empty() => {
                return Some(Attempted::Local {
                    reason: LocalReason::NoHealthyUpstream,
                    failure: None,
                })
            }
            // The body outgrew the buffer while the retry waited.
            (_, None) if self.running.is_empty() => {
                return Some(Attempted::Local {
                    reason: LocalReason::RetryBufferOverflow,
                    failure: None,
                })
            }
            _ => return None,
        };
        self.start_attempt(host, body);
        None
    }

    /// Sends attempt `n + 1` to `host`.
    fn start_attempt(&mut self, host: Arc<Host>, body: Body) {
        self.n += 1;
        let n = self.n;
        let info = &mut *self.info;
        info.upstream_host = Some(host.address);
        info.host = Some(host.clone());
        info.attempt_count = n;
        if self.plan.retry.is_some() {
            self.tried.push(host.clone());
        }
        let mut req = self.head(n);
        if self.plan.ra.attempt_count_in_request {
            req.headers_mut().insert(
                HeaderName::from_static(X_ENVOY_ATTEMPT_COUNT),
                HeaderValue::from(n),
            );
        }
        if n > 1 || self.plan.timeouts.custom {
            // What is left of the global timeout counts from the end of the request, as
            // the route timeout does.
            let since_done = self
                .tap
                .completed_at(self.start)
                .map(|done| tokio::time::Instant::from_std(done).elapsed())
                .unwrap_or_default();
            let h = req.headers_mut();
            match self.plan.timeouts.expected(self.plan.hedging, since_done) {
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
        let dispatch = match &self.dispatched {
            Some(wake) => Some(Arc::new(ferry_upstream::Dispatch::new(Some(wake.clone())))),
            None if self.plan.record_connection => {
                Some(Arc::new(ferry_upstream::Dispatch::new(None)))
            }
            None => None,
        };
        let sent = self.plan.upstream.send(
            self.plan.cluster.clone(),
            host.clone(),
            self.plan.ra.priority,
            req,
            dispatch.clone(),
        );
        self.running.push(Running {
            n,
            sent,
            dispatch,
            host,
            timed_out: false,
        });
    }

    /// The head of attempt `n`: a lone attempt (no retry state: no second one can
    /// follow) takes the head itself, others a copy.
    fn head(&mut self, n: u32) -> Request<()> {
        if self.plan.retry.is_none() && n == 1 {
            let head = std::mem::replace(&mut self.plan.head, Request::new(()).into_parts().0);
            return Request::from_parts(head, ());
        }
        head_clone(&self.plan.head)
    }

    /// When the request ended, on the timers' clock.
    fn completed(&self) -> Option<tokio::time::Instant> {
        self.tap
            .completed_at(self.start)
            .map(tokio::time::Instant::from_std)
    }

    /// When the route timeout fires, once the request has ended.
    fn route_deadline(&self) -> Option<tokio::time::Instant> {
        self.plan
            .timeouts
            .global
            .zip(self.completed())
            .map(|(t, done)| done + t)
    }

    /// The next timer to fire, recomputed each turn (the request may have ended, an
    /// attempt may have got its connection, a body frame may have come).
    fn next_timer(&self) -> Option<(tokio::time::Instant, Timer)> {
        use std::sync::atomic::Ordering;
        let start_t = tokio::time::Instant::from_std(self.start);
        let t = &self.plan.timeouts;
        let completed = self.completed();
        let mut next: Option<(tokio::time::Instant, Timer)> = None;
        let mut consider = |at: Option<tokio::time::Instant>, which: Timer| {
            if let Some(at) = at {
                if next.is_none_or(|(best, _)| at < best) {
                    next = Some((at, which));
                }
            }
        };
        consider(self.route_deadline(), Timer::Route);
        let idle = self.plan.idle.map(|d| {
            let last = self.tap.last_activity_nanos.load(Ordering::Relaxed);
            start_t + Duration::from_nanos(last) + d
        });
        consider(idle, Timer::Idle);
        let request = self.plan.request_timeout.filter(|_| completed.is_none());
        consider(request.map(|t| start_t + t), Timer::Request);
        consider(self.next_at, Timer::NextAttempt);
        // per_try_timeout and per_try_idle_timeout run from when both the attempt had
        // its connection and the request ended (Envoy arms them at pool ready). Until
        // the response headers nothing comes back, so the idle timer is not reset;
        // over the body it is (see `TimedResponse`).
        for r in self.running.iter().filter(|r| !r.timed_out) {
            let ready = r.dispatch.as_ref().and_then(|d| d.at());
            let (Some(ready), Some(done)) = (ready, completed) else {
                continue;
            };
            let from = ready.max(done);
            consider(
                t.per_try.map(|t| from + t),
                Timer::PerTry {
                    n: r.n,
                    idle: false,
                },
            );
            consider(
                t.per_try_idle.map(|t| from + t),
                Timer::PerTry { n: r.n, idle: true },
            );
        }
        next
    }

    /// The timer `which` fired.
    fn on_timer(&mut self, which: Timer, now: tokio::time::Instant) -> Step {
        match which {
            Timer::PerTry { n, idle } => self.on_per_try_timeout(n, idle, now),
            Timer::Route => Step::Done(self.on_route_timeout()),
            Timer::Idle => self.on_idle(),
            Timer::Request => self.on_request_timeout(),
            Timer::NextAttempt => Step::Continue,
        }
    }

    /// The attempt at `pos` ended with a response or a failure.
    fn on_attempt_end(
        &mut self,
        pos: usize,
        result: Result<Response<Body>, UpstreamError>,
        now: tokio::time::Instant,
    ) -> Step {
        let ended = self.running.swap_remove(pos);
        drop(self.retry_admission.take());
        match result {
            Ok(resp) => self.on_response(ended, resp, now),
            Err(e) => self.on_failure(&e, now),
        }
    }

    /// An attempt's response: final, or given up for a retry.
    fn on_response(
        &mut self,
        ended: Running,
        resp: Response<Body>,
        now: tokio::time::Instant,
    ) -> Step {
        let decision = match self.plan.retry.as_mut() {
            Some(rs) => rs.on_response(resp.status().as_u16(), resp.headers()),
            None => Decision::No,
        };
        match decision {
            Decision::Retry {
                back_off,
                rate_limited,
            } => {
                if self.schedule(rate_limited) {
                    // A response given up for a retry (Envoy's retry.upstream_rq_*).
                    self.stats().retried.inc(resp.status().as_u16());
                    self.next_at = Some(now + back_off);
                    return Step::Continue;
                }
                // Not retried: with a hedged attempt still out, wait for it.
                if !self.running.is_empty() {
                    return Step::Continue;
                }
            }
            Decision::LimitExceeded => {
                self.stats().upstream_rq_retry_limit_exceeded.inc();
                if !self.running.is_empty() {
                    return Step::Continue;
                }
                self.info
                    .response_flags
                    .set(ResponseFlag::UpstreamRetryLimitExceeded);
            }
            Decision::No => {
                if self.n > 1 {
                    self.stats().upstream_rq_retry_success.inc();
                }
            }
        }
        // The others are cancelled (dropped with the state machine). The attempt whose
        // response goes downstream (hedging may have started another since):
        self.info.upstream_host = Some(ended.host.address);
        self.info.upstream_conn = ended.dispatch.as_ref().and_then(|d| d.connection());
        self.info.host = Some(ended.host);
        Step::Done(Attempted::Response {
            resp,
            route_deadline: self.route_deadline(),
            attempts: self.n,
        })
    }

    /// An attempt failed without a response.
    fn on_failure(&mut self, e: &UpstreamError, now: tokio::time::Instant) -> Step {
        // The client's body failed: nothing to retry (the router answers 400 or logs
        // the client gone).
        if self.tap.malformed() || self.tap.aborted() {
            return Step::Done(Attempted::Local {
                reason: LocalReason::from_upstream(e),
                failure: None,
            });
        }
        let decision = match self.plan.retry.as_mut() {
            Some(rs) => rs.on_failure(e),
            None => Decision::No,
        };
        let outcome = Attempted::Local {
            reason: LocalReason::from_upstream(e),
            failure: local_reply::transport_failure(e),
        };
        self.retry_or(decision, now, outcome)
    }

    /// Attempt `n`'s per-try (`idle`: per-try idle) timeout passed.
    fn on_per_try_timeout(&mut self, n: u32, idle: bool, now: tokio::time::Instant) -> Step {
        let Some(pos) = self.running.iter().position(|r| r.n == n) else {
            return Step::Continue;
        };
        let reason = if idle {
            LocalReason::PerTryIdleTimeout
        } else {
            LocalReason::PerTryTimeout
        };
        self.running[pos].host.report_timeout();
        if self.plan.hedging {
            // A soft timeout (Envoy's hedge): the attempt runs on; another starts if a
            // retry is left, whatever retry_on says.
            self.running[pos].timed_out = true;
        } else {
            if idle {
                self.stats().upstream_rq_per_try_idle_timeout.inc();
            } else {
                self.stats().upstream_rq_per_try_timeout.inc();
            }
            // Cancelled: dropped.
            self.running.swap_remove(pos);
        }
        drop(self.retry_admission.take());
        let hedging = self.plan.hedging;
        let decision = match self.plan.retry.as_mut() {
            Some(rs) if hedging => rs.on_hedge(),
            Some(rs) => rs.on_per_try_timeout(),
            None => Decision::No,
        };
        let outcome = Attempted::Local {
            reason,
            failure: None,
        };
        self.retry_or(decision, now, outcome)
    }

    /// After an attempt ended without a usable response: the retry the decision allows,
    /// or else `outcome` once no attempt is out or due.
    fn retry_or(
        &mut self,
        decision: Decision,
        now: tokio::time::Instant,
        outcome: Attempted,
    ) -> Step {
        if let Some(at) = self.retry_at(decision, now) {
            self.next_at = Some(at);
            return Step::Continue;
        }
        if self.running.is_empty() && self.next_at.is_none() {
            return Step::Done(outcome);
        }
        Step::Continue
    }

    /// The route timeout: every attempt is cancelled; 504 `UT`.
    fn on_route_timeout(&mut self) -> Attempted {
        self.stats().upstream_rq_timeout.inc();
        for r in self.running.drain(..) {
            // Attempts past a soft per-try timeout were reported then.
            if !r.timed_out {
                r.host.report_timeout();
            }
        }
        Attempted::Local {
            reason: LocalReason::UpstreamTimeout,
            failure: None,
        }
    }

    /// The stream idle timer fired: `SI`, unless body frames arrived meanwhile.
    fn on_idle(&mut self) -> Step {
        use std::sync::atomic::Ordering;
        let start_t = tokio::time::Instant::from_std(self.start);
        let last = self.tap.last_activity_nanos.load(Ordering::Relaxed);
        let idle_since = start_t + Duration::from_nanos(last);
        let idle_for = tokio::time::Instant::now().saturating_duration_since(idle_since);
        if self.plan.idle.is_none_or(|d| idle_for < d) {
            return Step::Continue;
        }
        let request_complete = self.tap.completed_at(self.start).is_some();
        Step::Done(Attempted::Local {
            reason: LocalReason::StreamIdleTimeout { request_complete },
            failure: None,
        })
    }

    /// The HCM request timeout fired: 408, unless the request ended meanwhile.
    fn on_request_timeout(&mut self) -> Step {
        if self.tap.completed_at(self.start).is_some() {
            return Step::Continue;
        }
        Step::Done(Attempted::Local {
            reason: LocalReason::RequestTimeout,
            failure: None,
        })
    }

    /// Acts on the retry decision after an attempt ended without a usable response (a
    /// failure or a per-try timeout): when the next attempt starts, or None when there
    /// is none (the limit is reached — `URX` — or the retry was refused).
    fn retry_at(
        &mut self,
        decision: Decision,
        now: tokio::time::Instant,
    ) -> Option<tokio::time::Instant> {
        match decision {
            Decision::Retry {
                back_off,
                rate_limited,
            } => self.schedule(rate_limited).then(|| now + back_off),
            Decision::LimitExceeded => {
                self.stats().upstream_rq_retry_limit_exceeded.inc();
                self.info
                    .response_flags
                    .set(ResponseFlag::UpstreamRetryLimitExceeded);
                None
            }
            Decision::No => None,
        }
    }

    /// Admits a retry: the body must still be replayable and the `max_retries` breaker
    /// (or retry budget) must have room. Counts Envoy's retry stats.
    fn schedule(&mut self, rate_limited: bool) -> bool {
        if !self.plan.body.replayable() {
            self.stats().retry_or_shadow_abandoned.inc();
            return false;
        }
        let breaker = self.plan.cluster.breakers.get(self.plan.ra.priority);
        match breaker.try_acquire(Resource::Retries) {
            Some(a) => self.retry_admission = Some(a),
            None => {
                self.stats().upstream_rq_retry_overflow.inc();
                self.info.response_flags.set(ResponseFlag::UpstreamOverflow);
                return false;
            }
        }
        self.stats().upstream_rq_retry.inc();
        if rate_limited {
            self.stats().upstream_rq_retry_backoff_ratelimited.inc();
        } else {
            self.stats().upstream_rq_retry_backoff_exponential.inc();
        }
        true
    }
}

#[cfg(test)]
mod tests;
