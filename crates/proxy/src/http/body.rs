//! Body wrappers: count request bytes, and write the access log when the response
//! body ends (or is abandoned).

use crate::access_log::Logger;
use crate::stream_info::StreamInfo;
use bytes::Bytes;
use ferry_config::ResponseFlag;
use ferry_upstream::{Body, BoxError};
use http_body::{Body as _, Frame, SizeHint};
use std::future::Future;
use std::pin::Pin;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::Instant;

/// Time since `start` on the runtime's clock (the timers' clock: in tests with paused
/// time it is virtual, and request times must agree with it).
fn since(start: Instant) -> std::time::Duration {
    tokio::time::Instant::now().saturating_duration_since(tokio::time::Instant::from_std(start))
}

/// Shared counters of the request body.
#[derive(Debug, Default)]
pub struct RequestTap {
    /// Bytes received.
    pub bytes: AtomicU64,
    /// Nanoseconds from stream start to the end of the request body (0: not yet).
    pub done_nanos: AtomicU64,
    /// The request body failed: 1 malformed (codec error), 2 the client went away.
    pub failed: std::sync::atomic::AtomicU8,
    /// Nanoseconds from stream start to the last request body frame.
    pub last_activity_nanos: AtomicU64,
    /// Signalled when the request body ends (arms the route timeout).
    pub completed: tokio::sync::Notify,
    /// A response body waiting for the request to end, to arm the route timeout.
    response: futures_util::task::AtomicWaker,
}

impl RequestTap {
    /// Records the end of the request body.
    pub(crate) fn complete(&self, start: Instant) {
        let n = since(start).as_nanos().max(1) as u64;
        if self
            .done_nanos
            .compare_exchange(0, n, Ordering::Relaxed, Ordering::Relaxed)
            .is_ok()
        {
            self.completed.notify_one();
            self.response.wake();
        }
    }

    /// When the request body ended, if it has.
    pub fn completed_at(&self, start: Instant) -> Option<Instant> {
        match self.done_nanos.load(Ordering::Relaxed) {
            0 => None,
            n => Some(start + std::time::Duration::from_nanos(n)),
        }
    }
}

impl RequestTap {
    /// Whether the downstream sent a malformed body.
    pub fn malformed(&self) -> bool {
        self.failed.load(Ordering::Relaxed) == 1
    }

    /// Whether the downstream went away mid-body.
    pub fn aborted(&self) -> bool {
        self.failed.load(Ordering::Relaxed) == 2
    }
}

pin_project_lite::pin_project! {
    /// The downstream request body as forwarded upstream, counted.
    pub struct CountedRequest {
        #[pin]
        inner: hyper::body::Incoming,
        tap: Arc<RequestTap>,
        start: Instant,
    }
}

impl CountedRequest {
    /// Wraps `inner`.
    pub fn new(inner: hyper::body::Incoming, tap: Arc<RequestTap>, start: Instant) -> Self {
        // A request without a body is complete with its headers; nobody polls it.
        if inner.is_end_stream() {
            tap.complete(start);
        }
        CountedRequest { inner, tap, start }
    }
}

impl http_body::Body for CountedRequest {
    type Data = Bytes;
    type Error = BoxError;

    fn poll_frame(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, BoxError>>> {
        let mut this = self.project();
        match this.inner.as_mut().poll_frame(cx) {
            Poll::Ready(Some(Ok(f))) => {
                if let Some(d) = f.data_ref() {
                    this.tap.bytes.fetch_add(d.len() as u64, Ordering::Relaxed);
                }
                let n = since(*this.start).as_nanos() as u64;
                this.tap.last_activity_nanos.store(n, Ordering::Relaxed);
                // hyper stops polling once the body says it has ended (Content-Length
                // reached, HTTP/2 END_STREAM): the end is seen here, not as `None`.
                if this.inner.is_end_stream() {
                    this.tap.complete(*this.start);
                }
                Poll::Ready(Some(Ok(f)))
            }
            Poll::Ready(None) => {
                this.tap.complete(*this.start);
                Poll::Ready(None)
            }
            Poll::Ready(Some(Err(e))) => {
                let kind = if e.is_parse() || e.is_parse_too_large() {
                    1
                } else {
                    2
                };
                this.tap.failed.store(kind, Ordering::Relaxed);
                Poll::Ready(Some(Err(Box::new(e))))
            }
            Poll::Pending => Poll::Pending,
        }
    }

    fn is_end_stream(&self) -> bool {
        self.inner.is_end_stream()
    }

    fn size_hint(&self) -> SizeHint {
        self.inner.size_hint()
    }
}

/// What is logged when a response ends.
pub struct LogOnEnd {
    /// The stream so far.
    pub info: StreamInfo,
    /// The loggers.
    pub loggers: Arc<[Logger]>,
    /// The tracer that ends the stream's span (`info.span`).
    pub tracer: Option<Arc<crate::trace::Tracer>>,
    /// Stream start.
    pub start: Instant,
    /// The request counters.
    pub tap: Arc<RequestTap>,
    /// The stream's HTTP filters, whose log hooks run before the access logs.
    pub filters: Option<crate::http::filter_manager::FilterChain>,
}

impl LogOnEnd {
    fn finish(mut self, bytes_sent: u64, trailers: Option<&http::HeaderMap>) {
        self.info.bytes_sent = bytes_sent;
        self.info.duration = Some(self.start.elapsed());
        self.info.bytes_received = self.tap.bytes.load(Ordering::Relaxed);
        let done = self.tap.done_nanos.load(Ordering::Relaxed);
        if done > 0 {
            self.info.request_duration = Some(std::time::Duration::from_nanos(done));
        }
        if let Some(t) = trailers {
            self.info.response_trailers = t.clone();
        }
        if let Some(f) = &self.filters {
            f.log(&self.info);
        }
        for l in self.loggers.iter() {
            l.log(&self.info);
        }
        if let Some(t) = &self.tracer {
            t.finish(&mut self.info);
        }
    }
}

pin_project_lite::pin_project! {
    /// A response body that writes the access log at its end.
    pub struct LoggedResponse {
        #[pin]
        inner: Body,
        sent: u64,
        log: Option<LogOnEnd>,
    }
    impl PinnedDrop for LoggedResponse {
        fn drop(this: Pin<&mut Self>) {
            let this = this.project();
            if let Some(log) = this.log.take() {
                // Abandoned before its end: the client went away (DC). An empty body
                // may be dropped without ever being polled; that is a normal end.
                let mut log = log;
                if this.inner.is_end_stream() {
                    log.info.response_complete = true;
                } else {
                    log.info.response_flags.set(ferry_config::ResponseFlag::DownstreamConnectionTermination);
                }
                log.finish(*this.sent, None);
            }
        }
    }
}

impl LoggedResponse {
    /// Wraps `inner`; `log` is None when no access log is configured.
    pub fn new(inner: Body, log: Option<LogOnEnd>) -> Self {
        LoggedResponse {
            inner,
            sent: 0,
            log,
        }
    }
}

impl http_body::Body for LoggedResponse {
    type Data = Bytes;
    type Error = BoxError;

    fn poll_frame(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, BoxError>>> {
        let this = self.project();
        let polled = this.inner.poll_frame(cx);
        match &polled {
            Poll::Ready(Some(Ok(f))) => {
                if let Some(d) = f.data_ref() {
                    *this.sent += d.len() as u64;
                }
                if let Some(t) = f.trailers_ref() {
                    if let Some(mut log) = this.log.take() {
                        log.info.response_complete = true;
                        log.finish(*this.sent, Some(t));
                    }
                }
            }
            Poll::Ready(None) => {
                if let Some(mut log) = this.log.take() {
                    log.info.response_complete = true;
                    log.finish(*this.sent, None);
                }
            }
            Poll::Ready(Some(Err(e))) => {
                if let Some(mut log) = this.log.take() {
                    match e.downcast_ref::<BodyTimeout>() {
                        Some(t) => {
                            let (flag, details) = t.flag_and_details();
                            log.info.response_flags.set(flag);
                            log.info.response_code_details = Some(details);
                        }
                        None => log
                            .info
                            .response_flags
                            .set(ferry_config::ResponseFlag::UpstreamRemoteReset),
                    }
                    log.finish(*this.sent, None);
                }
            }
            Poll::Pending => {}
        }
        polled
    }

    fn is_end_stream(&self) -> bool {
        self.inner.is_end_stream()
    }

    fn size_hint(&self) -> SizeHint {
        self.inner.size_hint()
    }
}

/// Why a response body was cut short by a timer.
#[derive(Debug, thiserror::Error)]
pub enum BodyTimeout {
    /// The route timeout elapsed while the body was streaming (UT).
    #[error("upstream request timeout")]
    Route,
    /// No body frame for the stream idle timeout (SI).
    #[error("stream idle timeout")]
    Idle,
    /// No body frame from the upstream for the route's `per_try_idle_timeout` (UT).
    #[error("upstream per-try idle timeout")]
    PerTryIdle,
}

impl BodyTimeout {
    /// The response flag and response code details of a stream cut short by `self`.
    pub fn flag_and_details(&self) -> (ResponseFlag, &'static str) {
        match self {
            BodyTimeout::Route => (ResponseFlag::UpstreamRequestTimeout, "response_timeout"),
            BodyTimeout::Idle => (ResponseFlag::StreamIdleTimeout, "stream_idle_timeout"),
            BodyTimeout::PerTryIdle => (
                ResponseFlag::UpstreamRequestTimeout,
                "upstream_per_try_idle_timeout",
            ),
        }
    }
}

/// A `per_try_idle_timeout` over a response body: the upstream must send a frame at
/// least this often.
#[derive(Debug, Clone)]
pub struct PerTryIdle {
    /// The timeout.
    pub timeout: std::time::Duration,
    /// The cluster's stats (`upstream_rq_per_try_idle_timeout`).
    pub stats: Arc<ferry_upstream::ClusterStats>,
}

pin_project_lite::pin_project! {
    /// An upstream response body bounded by the route timeout (a deadline) and the
    /// stream idle timeout (since the last frame either way). When one fires the body
    /// fails, and the codec resets the downstream stream — Envoy's behaviour once
    /// headers are sent. One timer serves both, created only when the body has to wait
    /// (a response that is ready at once costs no timer).
    pub struct TimedResponse {
        #[pin]
        inner: Body,
        timer: Option<Pin<Box<tokio::time::Sleep>>>,
        deadline: Option<tokio::time::Instant>,
        // The route timeout, not armed yet: the request has not ended.
        pending_timeout: Option<std::time::Duration>,
        idle: Option<std::time::Duration>,
        // Runs from the last upstream frame (or the headers) only.
        per_try_idle: Option<PerTryIdle>,
        last_frame: tokio::time::Instant,
        // Request-side activity also keeps the stream alive (Envoy's idle timer counts
        // both directions).
        tap: Arc<RequestTap>,
        start: Instant,
    }
}

impl TimedResponse {
    /// Wraps `inner`; `deadline` for the route timeout (or, while the request is still
    /// in flight, `route_timeout` to arm when it ends), `idle` for the stream idle
    /// timeout, `per_try_idle` for the attempt's idle timeout.
    pub fn new(
        inner: Body,
        deadline: Option<tokio::time::Instant>,
        route_timeout: Option<std::time::Duration>,
        idle: Option<std::time::Duration>,
        per_try_idle: Option<PerTryIdle>,
        tap: Arc<RequestTap>,
        start: Instant,
    ) -> Self {
        TimedResponse {
            inner,
            timer: None,
            deadline,
            pending_timeout: route_timeout.filter(|_| deadline.is_none()),
            idle,
            per_try_idle,
            last_frame: tokio::time::Instant::now(),
            tap,
            start,
        }
    }
}

impl http_body::Body for TimedResponse {
    type Data = Bytes;
    type Error = BoxError;

    fn poll_frame(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, BoxError>>> {
        let this = self.project();
        match this.inner.poll_frame(cx) {
            Poll::Pending => {}
            Poll::Ready(Some(Ok(frame))) => {
                if this.idle.is_some() || this.per_try_idle.is_some() {
                    *this.last_frame = tokio::time::Instant::now();
                }
                return Poll::Ready(Some(Ok(frame)));
            }
            other => return other,
        }
        // The route timeout runs from the end of the request (Envoy), which may come
        // after the response headers.
        if let Some(timeout) = *this.pending_timeout {
            this.tap.response.register(cx.waker());
            if let Some(done) = this.tap.completed_at(*this.start) {
                *this.deadline = Some(tokio::time::Instant::from_std(done) + timeout);
                *this.pending_timeout = None;
            }
        }
        loop {
            let now = tokio::time::Instant::now();
            if this.deadline.is_some_and(|d| d <= now) {
                return Poll::Ready(Some(Err(Box::new(BodyTimeout::Route))));
            }
            // Idle since the last frame in either direction.
            let idle_at = this.idle.map(|d| {
                let request = tokio::time::Instant::from_std(*this.start)
                    + std::time::Duration::from_nanos(
                        this.tap.last_activity_nanos.load(Ordering::Relaxed),
                    );
                (*this.last_frame).max(request) + d
            });
            if idle_at.is_some_and(|at| at <= now) {
                return Poll::Ready(Some(Err(Box::new(BodyTimeout::Idle))));
            }
            let per_try_at = this
                .per_try_idle
                .as_ref()
                .map(|p| *this.last_frame + p.timeout);
            if per_try_at.is_some_and(|at| at <= now) {
                if let Some(p) = this.per_try_idle.take() {
                    p.stats.upstream_rq_per_try_idle_timeout.inc();
                }
                return Poll::Ready(Some(Err(Box::new(BodyTimeout::PerTryIdle))));
            }
            let Some(next) = [*this.deadline, idle_at, per_try_at]
                .into_iter()
                .flatten()
                .min()
            else {
                return Poll::Pending;
            };
            let timer = match this.timer.as_mut() {
                Some(t) => {
                    if t.deadline() != next {
                        t.as_mut().reset(next);
                    }
                    t
                }
                None => this.timer.insert(Box::pin(tokio::time::sleep_until(next))),
            };
            if timer.as_mut().poll(cx).is_pending() {
                return Poll::Pending;
            }
        }
    }

    fn is_end_stream(&self) -> bool {
        self.inner.is_end_stream()
    }

    fn size_hint(&self) -> SizeHint {
        self.inner.size_hint()
    }
}

pin_project_lite::pin_project! {
    /// A response body that holds a guard until it ends or is dropped.
    pub struct Guarded<G> {
        #[pin]
        inner: Body,
        guard: G,
    }
}

impl<G> Guarded<G> {
    /// Wraps `inner`, keeping `guard` alive as long as the body.
    pub fn new(inner: Body, guard: G) -> Self {
        Guarded { inner, guard }
    }
}

impl<G> http_body::Body for Guarded<G> {
    type Data = Bytes;
    type Error = BoxError;

    fn poll_frame(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, BoxError>>> {
        self.project().inner.poll_frame(cx)
    }

    fn is_end_stream(&self) -> bool {
        self.inner.is_end_stream()
    }

    fn size_hint(&self) -> SizeHint {
        self.inner.size_hint()
    }
}

#[cfg(test)]
mod tests {
    //! The body timers in virtual time: the route deadline, the stream idle timeout
    //! (either direction) and the per-try idle timeout cut a stalled body as Envoy's
    //! timers reset a stream, to the millisecond.

    #![allow(clippy::unwrap_used)]
    use super::*;
    use http_body_util::{BodyExt, StreamBody};
    use std::time::Duration;
    use tokio::sync::mpsc;

    /// A body whose frames the test sends when it likes.
    fn body() -> (mpsc::UnboundedSender<&'static str>, Body) {
        let (tx, rx) = mpsc::unbounded_channel::<&'static str>();
        let frames = futures_util::stream::unfold(rx, |mut rx| async move {
            let s = rx.recv().await?;
            Some((
                Ok::<_, BoxError>(Frame::data(Bytes::from_static(s.as_bytes()))),
                rx,
            ))
        });
        (tx, StreamBody::new(frames).boxed())
    }

    /// Reads `body` to its end or failure: the frames with when they came (ms), and
    /// the failure, if any.
    async fn read(mut body: TimedResponse) -> (Vec<(u64, String)>, Option<String>, u64) {
        let start = tokio::time::Instant::now();
        let mut got = Vec::new();
        loop {
            let frame = body.frame().await;
            let at = start.elapsed().as_millis() as u64;
            match frame {
                None => return (got, None, at),
                Some(Ok(f)) => {
                    let d = f.into_data().unwrap();
                    got.push((at, String::from_utf8(d.to_vec()).unwrap()));
                }
                Some(Err(e)) => return (got, Some(e.to_string()), at),
            }
        }
    }

    fn tap_done() -> (Arc<RequestTap>, Instant) {
        let start = tokio::time::Instant::now().into_std();
        let tap = Arc::new(RequestTap::default());
        tap.complete(start);
        (tap, start)
    }

    /// Sends `frames` at their times (ms), then keeps the body open (stalled).
    fn script(tx: mpsc::UnboundedSender<&'static str>, frames: &'static [(u64, &'static str)]) {
        tokio::spawn(async move {
            let start = tokio::time::Instant::now();
            for (at, s) in frames {
                tokio::time::sleep_until(start + Duration::from_millis(*at)).await;
                let _ = tx.send(s);
            }
            std::future::pending::<()>().await;
        });
    }

    #[tokio::test(start_paused = true)]
    async fn the_stream_idle_timeout_runs_from_the_last_frame() {
        let (tx, inner) = body();
        script(tx, &[(0, "a"), (50, "b")]);
        let (tap, start) = tap_done();
        let idle = Some(Duration::from_millis(100));
        let timed = TimedResponse::new(inner, None, None, idle, None, tap, start);
        let (got, err, at) = read(timed).await;
        assert_eq!(got, [(0, "a".into()), (50, "b".into())]);
        assert_eq!(err.as_deref(), Some("stream idle timeout"));
        assert!((150..=151).contains(&at), "{at}");
    }

    #[tokio::test(start_paused = true)]
    async fn the_route_deadline_cuts_a_body_that_keeps_coming() {
        let (tx, inner) = body();
        script(tx, &[(0, "a"), (100, "b"), (200, "c"), (300, "d")]);
        let (tap, start) = tap_done();
        let deadline = Some(tokio::time::Instant::now() + Duration::from_millis(250));
        let timed = TimedResponse::new(inner, deadline, None, None, None, tap, start);
        let (got, err, at) = read(timed).await;
        assert_eq!(got.len(), 3);
        assert_eq!(err.as_deref(), Some("upstream request timeout"));
        assert!((250..=251).contains(&at), "{at}");
    }

    #[tokio::test(start_paused = true)]
    async fn the_route_timeout_waits_for_the_end_of_the_request() {
        let (tx, inner) = body();
        script(tx, &[(0, "a")]);
        let start = tokio::time::Instant::now().into_std();
        let tap = Arc::new(RequestTap::default());
        let ends = tap.clone();
        tokio::spawn(async move {
            tokio::time::sleep(Duration::from_millis(300)).await;
            ends.complete(start);
        });
        let route = Some(Duration::from_millis(100));
        let timed = TimedResponse::new(inner, None, route, None, None, tap, start);
        let (_, err, at) = read(timed).await;
        assert_eq!(err.as_deref(), Some("upstream request timeout"));
        assert!((400..=401).contains(&at), "{at}");
    }

    #[tokio::test(start_paused = true)]
    async fn the_per_try_idle_timeout_counts_and_cuts_a_stalled_upstream() {
        let (tx, inner) = body();
        script(tx, &[(0, "a"), (50, "b"), (100, "c")]);
        let (tap, start) = tap_done();
        let stats = Arc::new(ferry_upstream::ClusterStats::default());
        let per_try = PerTryIdle {
            timeout: Duration::from_millis(80),
            stats: stats.clone(),
        };
        let timed = TimedResponse::new(inner, None, None, None, Some(per_try), tap, start);
        let (got, err, at) = read(timed).await;
        assert_eq!(got.len(), 3);
        assert_eq!(err.as_deref(), Some("upstream per-try idle timeout"));
        assert!((180..=181).contains(&at), "{at}");
        assert_eq!(stats.upstream_rq_per_try_idle_timeout.value(), 1);
    }
}
