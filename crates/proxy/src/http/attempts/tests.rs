//! The attempt state machine in virtual time (`start_paused`): an upstream double
//! answers each attempt as a test scripts it, so retries and their back-off, per-try
//! timeouts (armed when the attempt gets its connection), hedging and the route timeout
//! are checked to the millisecond without a socket or a real wait.

#![allow(clippy::unwrap_used, clippy::expect_used)]

use super::*;
use crate::http::replay::Replay;
use crate::http::retry::RetryState;
use crate::http::timeouts::Timeouts;
use ferry_config::route::Action;
use ferry_config::route::Priority;
use ferry_upstream::Cluster;
use ferry_upstream::ClusterManager;
use http_body_util::{BodyExt, Empty};
use parking_lot::Mutex;
use std::time::Duration;

/// What the double does with one attempt.
#[derive(Clone, Copy, Debug)]
enum Answer {
    /// Gets its connection after `connect`, then answers `status` after `respond`.
    Status {
        connect: Duration,
        respond: Duration,
        status: u16,
    },
    /// Gets its connection at once, then never answers.
    Hang,
    /// Fails at once: the upstream reset the stream.
    Reset,
}

/// An upstream double: answers attempts in order from its script, and records when
/// each was sent.
struct Double {
    script: Mutex<Vec<Answer>>,
    sent: Mutex<Vec<(u32, Duration)>>,
    start: tokio::time::Instant,
}

impl Double {
    fn new(script: &[Answer]) -> Arc<Double> {
        Arc::new(Double {
            script: Mutex::new(script.iter().rev().copied().collect()),
            sent: Mutex::new(Vec::new()),
            start: tokio::time::Instant::now(),
        })
    }

    /// When each attempt was sent, in ms from the start, with its attempt count header.
    fn sent(&self) -> Vec<(u32, u64)> {
        self.sent
            .lock()
            .iter()
            .map(|(n, d)| (*n, d.as_millis() as u64))
            .collect()
    }
}

impl Upstream for Arc<Double> {
    fn send(
        &self,
        _cluster: Arc<Cluster>,
        _host: Arc<Host>,
        _priority: Priority,
        req: Request<Body>,
        dispatch: Option<Arc<ferry_upstream::Dispatch>>,
    ) -> SendFuture {
        let n = self.sent.lock().len() as u32 + 1;
        self.sent.lock().push((n, self.start.elapsed()));
        let _ = req;
        let answer = self.script.lock().pop().unwrap_or(Answer::Hang);
        let connection = ferry_upstream::ConnectionInfo {
            id: n as u64,
            local: None,
        };
        Box::pin(async move {
            match answer {
                Answer::Status {
                    connect,
                    respond,
                    status,
                } => {
                    tokio::time::sleep(connect).await;
                    if let Some(d) = &dispatch {
                        d.mark(connection);
                    }
                    tokio::time::sleep(respond).await;
                    let body = Empty::new().map_err(|never| match never {}).boxed();
                    let mut resp = Response::new(body);
                    *resp.status_mut() = http::StatusCode::from_u16(status).unwrap();
                    Ok(resp)
                }
                Answer::Hang => {
                    if let Some(d) = &dispatch {
                        d.mark(connection);
                    }
                    std::future::pending().await
                }
                Answer::Reset => Err(UpstreamError::RemoteReset {
                    refused: false,
                    message: "reset".into(),
                }),
            }
        })
    }
}

fn ok(status: u16) -> Answer {
    Answer::Status {
        connect: Duration::ZERO,
        respond: Duration::ZERO,
        status,
    }
}

/// A route (`route:` YAML fields besides the cluster) to cluster `backend`.
fn route_action(
    route: &str,
) -> (
    Arc<ferry_config::hcm::HttpConnectionManager>,
    Arc<ClusterManager>,
) {
    use crate::testing::{cluster, hcm_bootstrap, hcm_of};
    let action = format!("route: {{cluster: backend, {route}}}");
    let b = hcm_bootstrap("l", 1, &action, &format!("[{}]", cluster("backend", 2)));
    let clusters = ClusterManager::new(&b.clusters, &ferry_stats::Store::default());
    (hcm_of(&b), clusters)
}

/// Runs one request's attempts against `double` on `route`; the request is complete
/// from the start. Returns the outcome (status or local reason), when it came (ms),
/// and the stream's record.
async fn attempt(route: &str, double: &Arc<Double>) -> (Result<u16, LocalReason>, u64, StreamInfo) {
    let (hcm, clusters) = route_action(route);
    let ra = match &hcm.route_config.virtual_hosts[0].routes[0].action {
        Action::Route(ra) => ra.clone(),
        _ => panic!("not a route action"),
    };
    let cluster = clusters.get("backend").unwrap().clone();
    let host = cluster.choose_host(None).unwrap();
    let mut head = Request::new(()).into_parts().0;
    let timeouts = Timeouts::of(&ra, &mut head.headers, false);
    let view = crate::http::route_match::RequestView {
        method: "GET",
        path: "/",
        authority: "a",
        scheme: "http",
        headers: &head.headers,
        status: "",
    };
    let retry = RetryState::new(ra.retry_policy.as_ref(), &view);
    let replayable = retry.is_some();
    let body = Empty::new().map_err(|never| match never {}).boxed();
    let body = if replayable {
        PlanBody::Replay(Replay::new(body, 1 << 20))
    } else {
        PlanBody::Once(Some(body))
    };
    let plan = Plan {
        upstream: double,
        ra: &ra,
        cluster: cluster.clone(),
        first_host: host,
        hash: None,
        head,
        body,
        retry,
        timeouts,
        idle: None,
        request_timeout: None,
        hedging: ra.hedge_policy.hedge_on_per_try_timeout,
        record_connection: false,
    };
    let tap = RequestTap::default();
    // The stream's start on the runtime's (virtual) clock.
    let start = tokio::time::Instant::now().into_std();
    tap.complete(start);
    let begin = tokio::time::Instant::now();
    let mut info = StreamInfo::default();
    let outcome = match run(plan, &mut info, &tap, start).await {
        Attempted::Response { resp, .. } => Ok(resp.status().as_u16()),
        Attempted::Local { reason, .. } => Err(reason),
    };
    (outcome, begin.elapsed().as_millis() as u64, info)
}

#[tokio::test(start_paused = true)]
async fn one_attempt_without_a_retry_policy() {
    let double = Double::new(&[ok(200)]);
    let (outcome, at, info) = attempt("timeout: 1s", &double).await;
    assert_eq!((outcome, at, info.attempt_count), (Ok(200), 0, 1));
    assert_eq!(double.sent(), [(1, 0)]);
}

#[tokio::test(start_paused = true)]
async fn retries_wait_a_jittered_back_off_within_envoys_bounds() {
    let double = Double::new(&[ok(503), ok(503), ok(200)]);
    let route = "retry_policy: {retry_on: 5xx, num_retries: 3, retry_back_off: {base_interval: 0.1s, max_interval: 1s}}";
    let (outcome, _, info) = attempt(route, &double).await;
    assert_eq!((outcome, info.attempt_count), (Ok(200), 3));
    let sent = double.sent();
    // Full jitter: the first retry within [0, base), the second within [0, 2 x base).
    let first = sent[1].1 - sent[0].1;
    let second = sent[2].1 - sent[1].1;
    assert!(first < 100, "{sent:?}");
    assert!(second < 200, "{sent:?}");
}

#[tokio::test(start_paused = true)]
async fn exhausted_retries_answer_the_last_response_and_flag_urx() {
    let double = Double::new(&[ok(503), ok(503)]);
    let route =
        "retry_policy: {retry_on: 5xx, num_retries: 1, retry_back_off: {base_interval: 0.01s}}";
    let (outcome, _, info) = attempt(route, &double).await;
    assert_eq!((outcome, info.attempt_count), (Ok(503), 2));
    assert!(info
        .response_flags
        .has(ResponseFlag::UpstreamRetryLimitExceeded));
    // A reset that is not retried answers locally: 503 UC.
    let double = Double::new(&[Answer::Reset]);
    let (outcome, _, _) = attempt("retry_policy: {retry_on: connect-failure}", &double).await;
    assert_eq!(outcome, Err(LocalReason::UpstreamReset));
}

#[tokio::test(start_paused = true)]
async fn the_per_try_timeout_starts_when_the_attempt_has_its_connection() {
    let slow = Answer::Status {
        connect: Duration::from_millis(50),
        respond: Duration::from_secs(10),
        status: 200,
    };
    let double = Double::new(&[slow, ok(200)]);
    let route = "timeout: 5s, retry_policy: {retry_on: 5xx, num_retries: 1, per_try_timeout: 0.1s, retry_back_off: {base_interval: 0.001s}}";
    let (outcome, at, info) = attempt(route, &double).await;
    assert_eq!((outcome, info.attempt_count), (Ok(200), 2));
    // Connected at 50 ms, timed out at 150 ms; the retry within a 1 ms back-off.
    let retry_at = double.sent()[1].1;
    assert!((150..=151).contains(&retry_at), "{:?}", double.sent());
    assert_eq!(at, retry_at);
}

#[tokio::test(start_paused = true)]
async fn hedging_keeps_the_slow_attempt_and_takes_the_first_answer() {
    let slow = Answer::Status {
        connect: Duration::ZERO,
        respond: Duration::from_millis(300),
        status: 201,
    };
    let fast = Answer::Status {
        connect: Duration::ZERO,
        respond: Duration::from_millis(50),
        status: 202,
    };
    let double = Double::new(&[slow, fast]);
    let route = "hedge_policy: {hedge_on_per_try_timeout: true}, retry_policy: {retry_on: 5xx, num_retries: 1, per_try_timeout: 0.1s, retry_back_off: {base_interval: 0.001s}}";
    let (outcome, at, _) = attempt(route, &double).await;
    // The hedged attempt starts at ~100 ms and answers 50 ms later, before the first.
    assert_eq!(outcome, Ok(202));
    assert!((150..=151).contains(&at), "{at} {:?}", double.sent());
    // Without hedging the first attempt is cancelled at its per-try timeout.
    let double = Double::new(&[slow, fast]);
    let route = "retry_policy: {retry_on: 5xx, num_retries: 1, per_try_timeout: 0.1s, retry_back_off: {base_interval: 0.001s}}";
    let (outcome, _, _) = attempt(route, &double).await;
    assert_eq!(outcome, Ok(202));
}

#[tokio::test(start_paused = true)]
async fn the_route_timeout_ends_every_attempt() {
    let double = Double::new(&[Answer::Hang]);
    let (outcome, at, _) = attempt("timeout: 0.25s", &double).await;
    // (The timer wheel fires on the millisecond after the deadline.)
    assert_eq!(outcome, Err(LocalReason::UpstreamTimeout));
    assert!((250..=251).contains(&at), "{at}");
    // It bounds retries too: per-try timeouts at 100 and 200 ms, the route at 250.
    let double = Double::new(&[Answer::Hang, Answer::Hang, Answer::Hang]);
    let route = "timeout: 0.25s, retry_policy: {retry_on: 5xx, num_retries: 5, per_try_timeout: 0.1s, retry_back_off: {base_interval: 0.001s}}";
    let (outcome, at, info) = attempt(route, &double).await;
    assert_eq!(outcome, Err(LocalReason::UpstreamTimeout));
    assert!((250..=251).contains(&at), "{at}");
    assert_eq!(info.attempt_count, 3);
}
