//! A scripted HTTP/1.1 upstream for resilience tests: each request takes the next step
//! of a script (a status, a hang, a reset, a delay, a slow or stalled body), then the
//! default step. It records
//! every request (headers and whole body) and how many were in flight at once.
//!
//! ```no_run
//! # async fn f() {
//! use ferry_test_util::scripted::{Scripted, Step};
//! // Fails the first two requests with 503, then answers 200.
//! let up = Scripted::start(vec![Step::Status(503), Step::Status(503)]).await;
//! # let _ = up.addr();
//! # }
//! ```

use bytes::Bytes;
use futures_util::StreamExt;
use http::{HeaderMap, Response, StatusCode};
use http_body_util::combinators::UnsyncBoxBody;
use http_body_util::{BodyExt, Full, StreamBody};
use hyper::body::Frame;
use hyper::body::Incoming;
use hyper_util::rt::{TokioExecutor, TokioIo};
use std::collections::VecDeque;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;
use tokio::task::JoinHandle;

/// What the upstream does with one request.
#[derive(Debug, Clone)]
pub enum Step {
    /// Answer with this status (body `ok`).
    Status(u16),
    /// Answer with this status and these response headers.
    StatusWith(u16, Vec<(&'static str, String)>),
    /// Wait this long, then answer with the status.
    Delay(Duration, u16),
    /// Never answer (until the proxy gives up on the request).
    Hang,
    /// Close the connection without answering.
    Reset,
    /// Answer 200 with a body of `n` bytes `x`, one byte every `gap` (a slow drip).
    Drip(usize, Duration),
    /// Answer 200 with `content-length: 10`, send 5 bytes of it, and never the rest.
    Stall,
}

/// One request as the upstream saw it.
#[derive(Debug, Clone)]
pub struct Seen {
    /// Path and query.
    pub path: String,
    /// Headers.
    pub headers: HeaderMap,
    /// The whole body.
    pub body: Bytes,
}

#[derive(Debug)]
struct Shared {
    script: Mutex<VecDeque<Step>>,
    default: Mutex<Step>,
    seen: Mutex<Vec<Seen>>,
    in_flight: AtomicUsize,
    max_in_flight: AtomicUsize,
}

/// A running scripted upstream; stops on drop.
#[derive(Debug)]
pub struct Scripted {
    addr: SocketAddr,
    shared: Arc<Shared>,
    task: JoinHandle<()>,
}

impl Drop for Scripted {
    fn drop(&mut self) {
        self.task.abort();
    }
}

#[derive(Debug)]
struct ResetRequested;

impl std::fmt::Display for ResetRequested {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("reset requested by the script")
    }
}

impl std::error::Error for ResetRequested {}

/// Counts a request in flight until dropped.
struct InFlight(Arc<Shared>);

impl Drop for InFlight {
    fn drop(&mut self) {
        self.0.in_flight.fetch_sub(1, Ordering::SeqCst);
    }
}

impl Scripted {
    /// Starts on 127.0.0.1 (an ephemeral port); after `script`, every request gets 200.
    pub async fn start(script: Vec<Step>) -> Scripted {
        Self::start_with_default(script, Step::Status(200)).await
    }

    /// Starts with `default` for every request after the script.
    pub async fn start_with_default(script: Vec<Step>, default: Step) -> Scripted {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
            .await
            .unwrap_or_else(|e| panic!("binding a scripted upstream: {e}"));
        let addr = listener
            .local_addr()
            .unwrap_or_else(|e| panic!("scripted upstream address: {e}"));
        let shared = Arc::new(Shared {
            script: Mutex::new(script.into()),
            default: Mutex::new(default),
            seen: Mutex::new(Vec::new()),
            in_flight: AtomicUsize::new(0),
            max_in_flight: AtomicUsize::new(0),
        });
        let s = shared.clone();
        let task = tokio::spawn(async move {
            let mut conns = tokio::task::JoinSet::new();
            loop {
                let Ok((stream, _)) = listener.accept().await else {
                    continue;
                };
                let s = s.clone();
                conns.spawn(async move {
                    let svc = hyper::service::service_fn(move |req| handle(s.clone(), req));
                    let _ = hyper_util::server::conn::auto::Builder::new(TokioExecutor::new())
                        .serve_connection(TokioIo::new(stream), svc)
                        .await;
                });
            }
        });
        Scripted { addr, shared, task }
    }

    /// The address.
    pub fn addr(&self) -> SocketAddr {
        self.addr
    }

    /// Appends steps to the script.
    pub fn push(&self, steps: impl IntoIterator<Item = Step>) {
        if let Ok(mut s) = self.shared.script.lock() {
            s.extend(steps);
        }
    }

    /// Replaces the step taken after the script.
    pub fn set_default(&self, step: Step) {
        if let Ok(mut d) = self.shared.default.lock() {
            *d = step;
        }
    }

    /// Requests received so far.
    pub fn seen(&self) -> Vec<Seen> {
        self.shared
            .seen
            .lock()
            .map(|s| s.clone())
            .unwrap_or_default()
    }

    /// How many requests were received.
    pub fn count(&self) -> usize {
        self.shared.seen.lock().map(|s| s.len()).unwrap_or(0)
    }

    /// Requests being answered now.
    pub fn in_flight(&self) -> usize {
        self.shared.in_flight.load(Ordering::SeqCst)
    }

    /// Waits (up to 10 s) until at least `n` requests are in flight; returns how many are.
    pub async fn wait_in_flight(&self, n: usize) -> usize {
        crate::admin::poll(Duration::from_secs(10), || async {
            (self.in_flight() >= n).then_some(())
        })
        .await;
        self.in_flight()
    }

    /// Waits (up to 10 s) until at least `n` requests were received; returns how many were.
    pub async fn wait_count(&self, n: usize) -> usize {
        crate::admin::poll(Duration::from_secs(10), || async {
            (self.count() >= n).then_some(())
        })
        .await;
        self.count()
    }

    /// The most requests in flight at once so far.
    pub fn max_in_flight(&self) -> usize {
        self.shared.max_in_flight.load(Ordering::SeqCst)
    }
}

type ScriptedBody = UnsyncBoxBody<Bytes, std::convert::Infallible>;

/// `n` bytes `x`, one every `gap`, then (if `stall`) nothing more, ever.
fn drip(n: usize, gap: Duration, stall: bool) -> ScriptedBody {
    let bytes = futures_util::stream::unfold(0usize, move |i| async move {
        if i == n {
            if stall {
                std::future::pending::<()>().await;
            }
            return None;
        }
        if i > 0 {
            tokio::time::sleep(gap).await;
        }
        Some((Ok(Frame::data(Bytes::from_static(b"x"))), i + 1))
    });
    BodyExt::boxed_unsync(StreamBody::new(bytes.boxed()))
}

async fn handle(
    s: Arc<Shared>,
    req: http::Request<Incoming>,
) -> Result<Response<ScriptedBody>, ResetRequested> {
    let n = s.in_flight.fetch_add(1, Ordering::SeqCst) + 1;
    s.max_in_flight.fetch_max(n, Ordering::SeqCst);
    let _guard = InFlight(s.clone());
    let (parts, body) = req.into_parts();
    let body = body
        .collect()
        .await
        .map(|b| b.to_bytes())
        .unwrap_or_default();
    let step = {
        let next = s.script.lock().ok().and_then(|mut q| q.pop_front());
        match next {
            Some(step) => step,
            None => s
                .default
                .lock()
                .map(|d| d.clone())
                .unwrap_or(Step::Status(200)),
        }
    };
    if let Ok(mut seen) = s.seen.lock() {
        seen.push(Seen {
            path: parts
                .uri
                .path_and_query()
                .map(|p| p.to_string())
                .unwrap_or_default(),
            headers: parts.headers,
            body,
        });
    }
    let (status, headers) = match step {
        Step::Status(c) => (c, Vec::new()),
        Step::StatusWith(c, h) => (c, h),
        Step::Delay(d, c) => {
            tokio::time::sleep(d).await;
            (c, Vec::new())
        }
        Step::Hang => std::future::pending().await,
        Step::Reset => return Err(ResetRequested),
        Step::Drip(n, gap) => {
            let mut resp = Response::new(drip(n, gap, false));
            resp.headers_mut()
                .insert(http::header::CONTENT_LENGTH, http::HeaderValue::from(n));
            return Ok(resp);
        }
        Step::Stall => {
            let mut resp = Response::new(drip(5, Duration::ZERO, true));
            resp.headers_mut()
                .insert(http::header::CONTENT_LENGTH, http::HeaderValue::from(10));
            return Ok(resp);
        }
    };
    let mut resp = Response::new(BodyExt::boxed_unsync(Full::new(Bytes::from_static(b"ok"))));
    *resp.status_mut() = StatusCode::from_u16(status).unwrap_or(StatusCode::OK);
    for (k, v) in headers {
        if let Ok(v) = http::HeaderValue::from_str(&v) {
            resp.headers_mut().insert(k, v);
        }
    }
    Ok(resp)
}
