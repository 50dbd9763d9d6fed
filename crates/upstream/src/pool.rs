//! Per-host upstream connection pools: HTTP/1.1 keep-alive connections and one shared
//! HTTP/2 connection, over tokio TCP streams with `TCP_NODELAY`.
//!
//! HTTP/1.1: every live connection of the host stays in a short `parking_lot` list;
//! a connection is free when hyper says its `SendRequest` is ready, which happens
//! only after the previous response body was read to its end (an abandoned body
//! closes the connection). HTTP/2: one `SendRequest` cloned per request, replaced
//! when closed or when `max_requests_per_connection` is reached; establishing it is
//! serialised by an async mutex so that a burst opens a single connection.
//! Idle connections are dropped after `idle_timeout` on checkout and by
//! [`Pool::reap`], which the cluster manager runs periodically (idle time is counted
//! from when a connection is first seen free, so it may run up to one reap period late).
//!
//! A response body that has ended marks its connection `finished`; hyper's connection
//! task (maybe on another worker thread) makes the sender ready a moment later. A
//! checkout that finds no ready connection but a finished one waits for that one to
//! become ready instead of opening another, so back-to-back requests reuse it.

use crate::circuit_breaker::{Admission, Breaker, Resource};
use crate::counted_io::CountedIo;
use crate::{Body, Cluster, Host, UpstreamError};
use ferry_config::cluster::{Cluster as ClusterConfig, UpstreamProtocol};
use http::uri::{Authority, Scheme};
use http::{header, Request, Response, Uri, Version};
use hyper::body::Incoming;
use hyper::client::conn::{http1, http2};
use hyper_util::rt::{TokioExecutor, TokioIo};
use parking_lot::Mutex;
use std::future::Future;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Weak};
use std::time::Duration;
use tokio::net::TcpStream;
use tokio::time::Instant;

/// The connections of one host.
#[derive(Default)]
pub(crate) struct Pool {
    http1: Mutex<Vec<H1Conn>>,
    http2: Mutex<Option<H2Conn>>,
    /// The HTTP/2 connection being established, shared by every request that finds no
    /// connection meanwhile: they all get it, or all fail with its error (as Envoy's
    /// pending requests do), instead of each waiting for a connect timeout in turn.
    http2_connecting: Mutex<Option<Arc<H2Attempt>>>,
    /// Connections open or being opened (each holds a [`ConnSlot`]), with the
    /// cluster's `max_connection_pools` admission held while there are any.
    slots: Mutex<(u64, Option<Admission>)>,
    /// Woken when a response ends or a connection closes: requests waiting for a
    /// connection (the `max_connections` breaker is open) look again.
    freed: tokio::sync::Notify,
    /// Requests waiting on `freed` (nobody is woken — no lock taken — when there are none).
    waiters: AtomicU64,
}

/// A connection's place in the circuit breakers: its `max_connections` admission and
/// its share of the host's pool, given back when the connection is gone.
pub(crate) struct ConnSlot {
    _admission: Admission,
    host: Weak<Host>,
}

impl Drop for ConnSlot {
    fn drop(&mut self) {
        if let Some(host) = self.host.upgrade() {
            {
                let mut slots = host.pool.slots.lock();
                slots.0 = slots.0.saturating_sub(1);
                if slots.0 == 0 {
                    slots.1 = None;
                }
            }
            host.pool.wake_waiters();
        }
    }
}

/// A request waiting for a connection (`upstream_rq_pending_active`).
struct Pending<'a> {
    _admission: Admission,
    stats: &'a crate::ClusterStats,
}

impl<'a> Pending<'a> {
    /// Admits a pending request within `max_pending_requests`.
    fn admit(cluster: &'a Cluster, breaker: &Arc<Breaker>) -> Result<Self, UpstreamError> {
        let Some(admission) = breaker.try_acquire(Resource::Pending) else {
            cluster.stats.upstream_rq_pending_overflow.inc();
            return Err(UpstreamError::Overflow(Resource::Pending));
        };
        cluster.stats.upstream_rq_pending_total.inc();
        cluster.stats.upstream_rq_pending_active.inc();
        Ok(Pending {
            _admission: admission,
            stats: &cluster.stats,
        })
    }
}

impl Drop for Pending<'_> {
    fn drop(&mut self) {
        self.stats.upstream_rq_pending_active.dec();
    }
}

/// The outcome of a connect attempt. It holds no sender: a kept clone would keep the
/// connection open after the pool let it go (idle timeout, max requests).
type H2Attempt = tokio::sync::OnceCell<Result<(), Arc<UpstreamError>>>;

/// Which upstream connection a request went on (`%UPSTREAM_CONNECTION_ID%`,
/// `%UPSTREAM_LOCAL_ADDRESS%`), reported through its [`Dispatch`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ConnectionInfo {
    /// The connection's id (one sequence for every upstream connection).
    pub id: u64,
    /// The connection's local address.
    pub local: Option<std::net::SocketAddr>,
}

static CONNECTION_IDS: AtomicU64 = AtomicU64::new(1);

impl ConnectionInfo {
    fn of(stream: &TcpStream) -> ConnectionInfo {
        ConnectionInfo {
            id: CONNECTION_IDS.fetch_add(1, Ordering::Relaxed),
            local: stream.local_addr().ok(),
        }
    }
}

struct H1Conn {
    info: ConnectionInfo,
    sender: http1::SendRequest<Body>,
    requests: u32,
    /// When the connection was first seen ready again after a request (None while busy).
    idle_since: Option<Instant>,
    /// Set when the current response body has been read to its end.
    finished: Arc<AtomicBool>,
}

struct H2Conn {
    info: ConnectionInfo,
    sender: http2::SendRequest<Body>,
    requests: u32,
    last_used: Instant,
}

/// The outcome of looking for a free HTTP/1.1 connection.
// Lives on the stack for one call; boxing the request would cost an allocation per request.
#[allow(clippy::large_enum_variant)]
enum Checkout<F> {
    /// The request was dispatched on a pooled connection (with its `finished` flag and
    /// its `max_requests` admission).
    Sent(F, Arc<AtomicBool>, Admission),
    /// A connection was free but `max_requests` is reached.
    Overflow(UpstreamError),
    /// No connection was ready, but this one's response has ended: wait for it.
    Finishing(H1Conn, Request<Body>),
    /// No pooled connection was free; the request is given back.
    NoneFree(Request<Body>),
}

/// The longest a checkout waits for a finished connection to become ready.
const FINISHING_WAIT: Duration = Duration::from_millis(100);

type Responded = Result<Response<Incoming>, hyper::client::conn::TrySendError<Request<Body>>>;

/// Opens a TCP connection to the host with `TCP_NODELAY`, counting `cx_total` and `cx_connect_fail`.
pub(crate) async fn connect(host: &Host, cluster: &Cluster) -> Result<TcpStream, UpstreamError> {
    host.stats.cx_total.fetch_add(1, Ordering::Relaxed);
    cluster.stats.upstream_cx_total.inc();
    let timeout = cluster.config.connect_timeout;
    let began = std::time::Instant::now();
    let result = match tokio::time::timeout(timeout, TcpStream::connect(host.address)).await {
        Ok(Ok(stream)) => {
            cluster
                .stats
                .upstream_cx_connect_ms
                .record(began.elapsed().as_millis() as u64);
            if let Err(e) = stream.set_nodelay(true) {
                tracing::debug!(address = %host.address, error = %e, "cannot set TCP_NODELAY");
            }
            Ok(stream)
        }
        Ok(Err(e)) => Err(UpstreamError::ConnectFailure(e)),
        Err(_) => Err(UpstreamError::ConnectTimeout),
    };
    if let Err(e) = &result {
        host.stats.cx_connect_fail.fetch_add(1, Ordering::Relaxed);
        cluster.stats.upstream_cx_connect_fail.inc();
        if matches!(e, UpstreamError::ConnectTimeout) {
            cluster.stats.upstream_cx_connect_timeout.inc();
        }
    }
    result
}

/// Runs a connection task, keeping `cx_active` while it lives and counting its
/// protocol, length and end.
fn spawn_connection<F>(host: &Host, cluster: &Cluster, slot: ConnSlot, conn: F, http2: bool)
where
    F: Future<Output = Result<(), hyper::Error>> + Send + 'static,
{
    host.stats.cx_active.fetch_add(1, Ordering::Relaxed);
    cluster.stats.upstream_cx_active.inc();
    if http2 {
        cluster.stats.upstream_cx_http2_total.inc();
    } else {
        cluster.stats.upstream_cx_http1_total.inc();
    }
    let opened = std::time::Instant::now();
    let cluster_stats = cluster.stats.clone();
    let weak: Weak<Host> = host.this.clone();
    let address = host.address;
    tokio::spawn(async move {
        if let Err(e) = conn.await {
            tracing::debug!(%address, error = %e, "upstream connection closed with an error");
        }
        if let Some(host) = weak.upgrade() {
            host.stats.cx_active.fetch_sub(1, Ordering::Relaxed);
        }
        cluster_stats.upstream_cx_active.dec();
        cluster_stats.upstream_cx_destroy.inc();
        cluster_stats
            .upstream_cx_length_ms
            .record(opened.elapsed().as_millis() as u64);
        drop(slot);
    });
}

/// Counts a request waiting on a pool's `freed` while it lives.
struct Waiting<'a>(&'a AtomicU64);

impl<'a> Waiting<'a> {
    fn new(counter: &'a AtomicU64) -> Self {
        counter.fetch_add(1, Ordering::AcqRel);
        Waiting(counter)
    }
}

impl Drop for Waiting<'_> {
    fn drop(&mut self) {
        self.0.fetch_sub(1, Ordering::AcqRel);
    }
}

/// A response with its connection's `finished` flag (HTTP/1.1) and the request's
/// `max_requests` admission.
pub(crate) type Sent = (Response<Incoming>, Option<Arc<AtomicBool>>, Admission);

/// The request's `max_requests` admission, taken when it is given a connection (as
/// Envoy's pool attaches a stream): a request waiting for a connection is pending, not
/// active.
fn attach(
    cluster: &Cluster,
    gate: &Gate<'_>,
    conn: ConnectionInfo,
) -> Result<Admission, UpstreamError> {
    let admission = gate
        .breaker
        .try_acquire(Resource::Requests)
        .ok_or_else(|| {
            cluster.stats.upstream_rq_active_overflow.inc();
            UpstreamError::Overflow(Resource::Requests)
        })?;
    if let Some(d) = gate.dispatch {
        d.mark(conn);
    }
    Ok(admission)
}

/// What a request passes through on its way to a connection: the breaker of its
/// priority, and who wants to know when it gets a connection.
pub(crate) struct Gate<'a> {
    pub(crate) breaker: &'a Arc<Breaker>,
    pub(crate) dispatch: Option<&'a Dispatch>,
}

/// When a request was given a connection (Envoy's "pool ready", where per-try timers
/// start). The router waits on `wake`, shared by its attempts.
#[derive(Debug)]
pub struct Dispatch {
    at: std::sync::OnceLock<Instant>,
    conn: std::sync::OnceLock<ConnectionInfo>,
    wake: Option<Arc<tokio::sync::Notify>>,
}

impl Dispatch {
    /// A signal that wakes `wake` (if any) when it fires.
    pub fn new(wake: Option<Arc<tokio::sync::Notify>>) -> Dispatch {
        Dispatch {
            at: std::sync::OnceLock::new(),
            conn: std::sync::OnceLock::new(),
            wake,
        }
    }

    /// Marks the request as given its connection (the pool does it; a test double of
    /// an upstream may too).
    pub fn mark(&self, conn: ConnectionInfo) {
        let _ = self.conn.set(conn);
        if self.at.set(Instant::now()).is_ok() {
            if let Some(w) = &self.wake {
                w.notify_waiters();
            }
        }
    }

    /// When the request got its connection, if it has.
    pub fn at(&self) -> Option<Instant> {
        self.at.get().copied()
    }

    /// The connection the request was given, if it has one.
    pub fn connection(&self) -> Option<ConnectionInfo> {
        self.conn.get().copied()
    }
}

impl Pool {
    /// Wakes requests waiting for a connection, if there are any.
    pub(crate) fn wake_waiters(&self) {
        if self.waiters.load(Ordering::Acquire) > 0 {
            self.freed.notify_waiters();
        }
    }

    /// Sends a request on a pooled or new connection of `host`.
    pub(crate) async fn send(
        &self,
        host: &Host,
        cluster: &Cluster,
        gate: &Gate<'_>,
        req: Request<Body>,
    ) -> Result<Sent, UpstreamError> {
        match cluster.config.protocol {
            UpstreamProtocol::Http1 => {
                self.send_http1(host, cluster, gate, prepare_http1(req, host))
                    .await
            }
            UpstreamProtocol::Http2 => {
                let (resp, admission) = self
                    .send_http2(host, cluster, gate, prepare_http2(req, host)?)
                    .await?;
                Ok((resp, None, admission))
            }
        }
    }

    /// A place for a new connection within `max_connections` and
    /// `max_connection_pools`. A host without connections always gets one, as in
    /// Envoy (other hosts may hold every connection the cluster may have). None: wait.
    fn new_connection_slot(
        &self,
        host: &Host,
        cluster: &Cluster,
        breaker: &Arc<Breaker>,
    ) -> Result<Option<ConnSlot>, UpstreamError> {
        let mut slots = self.slots.lock();
        let admission = if slots.0 == 0 {
            breaker.force_acquire(Resource::Connections)
        } else {
            match breaker.try_acquire(Resource::Connections) {
                Some(a) => a,
                None => {
                    cluster.stats.upstream_cx_overflow.inc();
                    return Ok(None);
                }
            }
        };
        if slots.1.is_none() {
            match breaker.try_acquire(Resource::Pools) {
                Some(a) => slots.1 = Some(a),
                None => {
                    cluster.stats.upstream_cx_pool_overflow.inc();
                    return Err(UpstreamError::Overflow(Resource::Pools));
                }
            }
        }
        slots.0 += 1;
        Ok(Some(ConnSlot {
            _admission: admission,
            host: host.this.clone(),
        }))
    }

    async fn send_http1(
        &self,
        host: &Host,
        cluster: &Cluster,
        gate: &Gate<'_>,
        req: Request<Body>,
    ) -> Result<Sent, UpstreamError> {
        let config = &cluster.config;
        let mut req = req;
        let mut pending = None;
        let slot = loop {
            // Registered before looking, so that a connection freed meanwhile wakes us.
            let freed = self.freed.notified();
            tokio::pin!(freed);
            freed.as_mut().enable();
            let _waiting = Waiting::new(&self.waiters);
            req = match self.try_pooled_http1(cluster, gate, req).await {
                Ok(sent) => return sent,
                Err(req) => req,
            };
            if pending.is_none() {
                pending = Some(Pending::admit(cluster, gate.breaker)?);
            }
            match self.new_connection_slot(host, cluster, gate.breaker)? {
                Some(slot) => break slot,
                // Every connection the breaker allows is busy: wait for one to free up
                // (and look again now and then: a finished connection becomes ready
                // without a notification).
                None => {
                    let _ = tokio::time::timeout(FINISHING_WAIT, freed).await;
                }
            }
        };
        // A new connection.
        let stream = connect(host, cluster).await?;
        let info = ConnectionInfo::of(&stream);
        // hyper's read buffer grows up to 64 KiB: a response head up to Envoy's 60 KiB
        // `max_response_headers_kb` default must fit whatever the buffer limit; bodies
        // stream through it.
        let (sender, conn) = http1::Builder::new()
            .max_buf_size(64 * 1024)
            .handshake(TokioIo::new(CountedIo::new(stream, cluster.stats.clone())))
            .await
            .map_err(|e| UpstreamError::Protocol(e.to_string()))?;
        spawn_connection(host, cluster, slot, conn, false);
        drop(pending);
        let conn = H1Conn {
            info,
            sender,
            requests: 0,
            idle_since: None,
            finished: Arc::new(AtomicBool::new(false)),
        };
        let admission = match attach(cluster, gate, conn.info) {
            Ok(a) => a,
            Err(e) => {
                self.http1.lock().push(conn);
                return Err(e);
            }
        };
        let (sent, finished) = self.dispatch(config, conn, req);
        let resp = sent
            .await
            .map_err(|e| UpstreamError::from_hyper(e.error()))?;
        Ok((resp, Some(finished), admission))
    }

    /// Sends `req` on a pooled connection if one is (or is about to be) free; gives
    /// the request back otherwise.
    #[allow(clippy::type_complexity)]
    async fn try_pooled_http1(
        &self,
        cluster: &Cluster,
        gate: &Gate<'_>,
        req: Request<Body>,
    ) -> Result<Result<Sent, UpstreamError>, Request<Body>> {
        let config = &cluster.config;
        let req = match self.checkout_http1(cluster, gate, req) {
            Checkout::Overflow(e) => return Ok(Err(e)),
            Checkout::Sent(sent, finished, admission) => match sent.await {
                Ok(resp) => return Ok(Ok((resp, Some(finished), admission))),
                Err(mut e) => match e.take_message() {
                    // The connection closed before the request was written: use a new one.
                    Some(back) => back,
                    None => return Ok(Err(UpstreamError::from_hyper(e.error()))),
                },
            },
            Checkout::Finishing(mut conn, req) => {
                match tokio::time::timeout(FINISHING_WAIT, conn.sender.ready()).await {
                    Ok(Ok(())) => {
                        let admission = match attach(cluster, gate, conn.info) {
                            Ok(a) => a,
                            Err(e) => {
                                self.http1.lock().push(conn);
                                return Ok(Err(e));
                            }
                        };
                        let (sent, finished) = self.dispatch(config, conn, req);
                        match sent.await {
                            Ok(resp) => return Ok(Ok((resp, Some(finished), admission))),
                            Err(mut e) => match e.take_message() {
                                Some(back) => back,
                                None => return Ok(Err(UpstreamError::from_hyper(e.error()))),
                            },
                        }
                    }
                    // Closed, or still busy after all: keep it pooled if open, use a new one.
                    Ok(Err(_)) => req,
                    Err(_) => {
                        self.http1.lock().push(conn);
                        req
                    }
                }
            }
            Checkout::NoneFree(req) => req,
        };
        Err(req)
    }

    /// Sends `req` on `conn` (which must be ready) and puts the connection back in the
    /// pool unless it has reached `max_requests_per_connection`.
    fn dispatch(
        &self,
        config: &ClusterConfig,
        mut conn: H1Conn,
        req: Request<Body>,
    ) -> (impl Future<Output = Responded>, Arc<AtomicBool>) {
        conn.requests += 1;
        conn.idle_since = None;
        conn.finished = Arc::new(AtomicBool::new(false));
        let finished = conn.finished.clone();
        let sent = conn.sender.try_send_request(req);
        if config
            .max_requests_per_connection
            .is_none_or(|max| conn.requests < max)
        {
            self.http1.lock().push(conn);
        }
        // Otherwise dropping the sender closes the connection after this response.
        (sent, finished)
    }

    /// Dispatches `req` on a ready pooled connection; otherwise hands out a connection
    /// whose response has just ended, or gives `req` back.
    fn checkout_http1(
        &self,
        cluster: &Cluster,
        gate: &Gate<'_>,
        req: Request<Body>,
    ) -> Checkout<impl Future<Output = Responded>> {
        let config = &cluster.config;
        let now = Instant::now();
        let mut conns = self.http1.lock();
        prune_http1(&mut conns, now, config.idle_timeout);
        if let Some(i) = conns.iter().position(|c| c.sender.is_ready()) {
            let admission = match attach(cluster, gate, conns[i].info) {
                Ok(a) => a,
                Err(e) => return Checkout::Overflow(e),
            };
            let conn = conns.swap_remove(i);
            drop(conns);
            let (sent, finished) = self.dispatch(config, conn, req);
            return Checkout::Sent(sent, finished, admission);
        }
        match conns
            .iter()
            .position(|c| c.finished.load(Ordering::Acquire))
        {
            Some(i) => Checkout::Finishing(conns.swap_remove(i), req),
            None => Checkout::NoneFree(req),
        }
    }

    async fn send_http2(
        &self,
        host: &Host,
        cluster: &Cluster,
        gate: &Gate<'_>,
        req: Request<Body>,
    ) -> Result<(Response<Incoming>, Admission), UpstreamError> {
        let config = &cluster.config;
        let mut req = req;
        if let Some((mut sender, info)) = self.checkout_http2(config) {
            let admission = attach(cluster, gate, info)?;
            match sender.try_send_request(req).await {
                Ok(resp) => return Ok((resp, admission)),
                Err(mut e) => match e.take_message() {
                    Some(back) => req = back,
                    None => return Err(UpstreamError::from_hyper(e.error())),
                },
            }
        }
        // Waiting for a connection: a pending request.
        let pending = Pending::admit(cluster, gate.breaker)?;
        let (mut sender, info) = loop {
            let attempt = {
                let mut slot = self.http2_connecting.lock();
                match slot.as_ref() {
                    Some(a) if !a.initialized() => a.clone(),
                    _ => {
                        let a = Arc::new(H2Attempt::new());
                        *slot = Some(a.clone());
                        a
                    }
                }
            };
            // The request that runs the attempt uses the connection it made (it may not
            // be pooled: max_requests_per_connection 1); the others check it out.
            let mut made = None;
            let result = attempt
                .get_or_init(|| async {
                    if let Some(sender) = self.checkout_http2(config) {
                        made = Some(sender);
                        return Ok(());
                    }
                    let sender = self
                        .connect_http2(host, cluster, gate.breaker)
                        .await
                        .map_err(Arc::new)?;
                    made = Some(sender);
                    Ok(())
                })
                .await;
            if let Some(sender) = made {
                break sender;
            }
            match result {
                Err(e) => return Err(e.as_ref().duplicate()),
                Ok(_) => {
                    if let Some(sender) = self.checkout_http2(config) {
                        break sender;
                    }
                    // Not shareable (max_requests_per_connection): a new attempt.
                }
            }
        };
        drop(pending);
        let admission = attach(cluster, gate, info)?;
        let resp = sender
            .try_send_request(req)
            .await
            .map_err(|e| UpstreamError::from_hyper(e.error()))?;
        Ok((resp, admission))
    }

    /// Connects to `host` and starts an HTTP/2 connection, pooled unless
    /// `max_requests_per_connection` is 1.
    async fn connect_http2(
        &self,
        host: &Host,
        cluster: &Cluster,
        breaker: &Arc<Breaker>,
    ) -> Result<(http2::SendRequest<Body>, ConnectionInfo), UpstreamError> {
        let config = &cluster.config;
        // A host's HTTP/2 requests share one connection; a second one (the first
        // retired by max_requests_per_connection) must fit the breaker.
        let Some(slot) = self.new_connection_slot(host, cluster, breaker)? else {
            return Err(UpstreamError::Overflow(Resource::Connections));
        };
        let stream = connect(host, cluster).await?;
        let info = ConnectionInfo::of(&stream);
        // The cluster's buffer limit is the flow-control window: what the upstream may
        // send before we read it.
        let window = config
            .per_connection_buffer_limit_bytes
            .clamp(65_535, (1 << 31) - 1);
        let (sender, conn) = http2::Builder::new(TokioExecutor::new())
            .initial_stream_window_size(window)
            .initial_connection_window_size(window)
            .handshake(TokioIo::new(CountedIo::new(stream, cluster.stats.clone())))
            .await
            .map_err(|e| UpstreamError::Protocol(e.to_string()))?;
        spawn_connection(host, cluster, slot, conn, true);
        if config.max_requests_per_connection != Some(1) {
            *self.http2.lock() = Some(H2Conn {
                info,
                sender: sender.clone(),
                requests: 1,
                last_used: Instant::now(),
            });
        }
        Ok((sender, info))
    }

    /// A clone of the shared HTTP/2 connection's sender, if it is usable.
    fn checkout_http2(
        &self,
        config: &ClusterConfig,
    ) -> Option<(http2::SendRequest<Body>, ConnectionInfo)> {
        let now = Instant::now();
        let mut slot = self.http2.lock();
        prune_http2(&mut slot, now, config.idle_timeout);
        let conn = slot.as_mut()?;
        conn.requests += 1;
        conn.last_used = now;
        let sender = (conn.sender.clone(), conn.info);
        if config
            .max_requests_per_connection
            .is_some_and(|max| conn.requests >= max)
        {
            *slot = None;
        }
        Some(sender)
    }

    /// Drops closed connections and those idle for longer than `idle_timeout`.
    pub(crate) fn reap(&self, idle_timeout: Option<Duration>) {
        let now = Instant::now();
        prune_http1(&mut self.http1.lock(), now, idle_timeout);
        prune_http2(&mut self.http2.lock(), now, idle_timeout);
    }
}

fn prune_http1(conns: &mut Vec<H1Conn>, now: Instant, idle_timeout: Option<Duration>) {
    conns.retain_mut(|c| {
        if c.sender.is_closed() {
            return false;
        }
        if !c.sender.is_ready() {
            c.idle_since = None;
            return true;
        }
        let since = *c.idle_since.get_or_insert(now);
        idle_timeout.is_none_or(|t| now.duration_since(since) < t)
    });
}

fn prune_http2(slot: &mut Option<H2Conn>, now: Instant, idle_timeout: Option<Duration>) {
    let keep = slot.as_ref().is_some_and(|c| {
        !c.sender.is_closed() && idle_timeout.is_none_or(|t| now.duration_since(c.last_used) < t)
    });
    if !keep {
        *slot = None;
    }
}

/// HTTP/1.1 request: origin-form URI and a `Host` header.
fn prepare_http1(req: Request<Body>, host: &Host) -> Request<Body> {
    let (mut parts, body) = req.into_parts();
    parts.version = Version::HTTP_11;
    if !parts.headers.contains_key(header::HOST) {
        let authority = parts
            .uri
            .authority()
            .map(|a| a.to_string())
            .unwrap_or_else(|| host.address.to_string());
        if let Ok(v) = header::HeaderValue::from_str(&authority) {
            parts.headers.insert(header::HOST, v);
        }
    }
    if parts.uri.authority().is_some() {
        let pq = parts
            .uri
            .path_and_query()
            .cloned()
            .unwrap_or_else(|| http::uri::PathAndQuery::from_static("/"));
        parts.uri = Uri::from(pq);
    }
    Request::from_parts(parts, body)
}

/// HTTP/2 request: absolute URI (scheme `http`, authority from `Host` or the address).
fn prepare_http2(req: Request<Body>, host: &Host) -> Result<Request<Body>, UpstreamError> {
    let (mut parts, body) = req.into_parts();
    parts.version = Version::HTTP_2;
    let authority = match parts.headers.remove(header::HOST) {
        Some(v) => Authority::try_from(v.as_bytes())
            .map_err(|e| UpstreamError::Protocol(format!("invalid host header: {e}")))?,
        None => match parts.uri.authority() {
            Some(a) => a.clone(),
            None => Authority::try_from(host.address.to_string().as_str())
                .map_err(|e| UpstreamError::Protocol(e.to_string()))?,
        },
    };
    let mut uri = http::uri::Parts::default();
    uri.scheme = Some(parts.uri.scheme().cloned().unwrap_or(Scheme::HTTP));
    uri.authority = Some(authority);
    uri.path_and_query = Some(
        parts
            .uri
            .path_and_query()
            .cloned()
            .unwrap_or_else(|| http::uri::PathAndQuery::from_static("/")),
    );
    parts.uri = Uri::from_parts(uri).map_err(|e| UpstreamError::Protocol(e.to_string()))?;
    Ok(Request::from_parts(parts, body))
}
