//! What the attempts of one request work from: the plan fixed for the request (route,
//! cluster, head, body, retry state, timeouts) and where the attempts go ([`Upstream`]:
//! the host's connection pool, or a test double).

use crate::http::replay::Replay;
use crate::http::retry::RetryState;
use crate::http::timeouts::Timeouts;
use ferry_config::route::{Priority, RouteAction};
use ferry_upstream::{Body, Cluster, Host, UpstreamError};
use http::{Request, Response};
use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::time::Duration;

/// Where attempts go: a host of the cluster over its pool ([`Pools`]), or — in tests —
/// a double, so that the state machine runs in virtual time.
pub trait Upstream: Send + Sync {
    /// Sends `req` to `host`; `dispatch`, when given, is marked when the request gets
    /// its connection.
    fn send(
        &self,
        cluster: Arc<Cluster>,
        host: Arc<Host>,
        priority: Priority,
        req: Request<Body>,
        dispatch: Option<Arc<ferry_upstream::Dispatch>>,
    ) -> SendFuture;
}

/// An attempt on its way.
pub type SendFuture = Pin<Box<dyn Future<Output = Result<Response<Body>, UpstreamError>> + Send>>;

/// The upstream of every routed request: the host's connection pool.
pub struct Pools;

impl Upstream for Pools {
    fn send(
        &self,
        cluster: Arc<Cluster>,
        host: Arc<Host>,
        priority: Priority,
        req: Request<Body>,
        dispatch: Option<Arc<ferry_upstream::Dispatch>>,
    ) -> SendFuture {
        Box::pin(async move {
            host.send_observed(&cluster, priority, req, dispatch.as_deref())
                .await
        })
    }
}

/// Everything an attempt needs, fixed for the request.
pub struct Plan<'a> {
    /// Where attempts go ([`Pools`]).
    pub upstream: &'a dyn Upstream,
    /// The route.
    pub ra: &'a RouteAction,
    /// The cluster.
    pub cluster: Arc<Cluster>,
    /// The first host (already picked, for host rewriting).
    pub first_host: Arc<Host>,
    /// The request hash for re-picking hosts.
    pub hash: Option<u64>,
    /// The upstream request head (cloned for each attempt but a lone one).
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
    /// Record which upstream connection the response came on (an access log reads it).
    pub record_connection: bool,
}

/// The body attempts send.
pub enum PlanBody {
    /// Read once: a single attempt.
    Once(Option<Body>),
    /// Shared: every attempt gets all of it (within the buffer limit).
    Replay(Arc<Replay>),
}

impl PlanBody {
    pub(super) fn take(&mut self) -> Option<Body> {
        match self {
            PlanBody::Once(b) => b.take(),
            PlanBody::Replay(r) => r.replayable().then(|| r.reader()),
        }
    }

    pub(super) fn replayable(&self) -> bool {
        match self {
            PlanBody::Once(b) => b.is_some(),
            PlanBody::Replay(r) => r.replayable(),
        }
    }
}

pub(super) fn head_clone(head: &http::request::Parts) -> Request<()> {
    let mut req = Request::new(());
    *req.method_mut() = head.method.clone();
    *req.uri_mut() = head.uri.clone();
    *req.version_mut() = head.version;
    *req.headers_mut() = head.headers.clone();
    req
}

/// Re-picks a host for a retry: with `previous_hosts`, hosts already tried are
/// avoided for up to `host_selection_retry_max_attempts` re-picks.
pub(super) fn pick(plan: &Plan<'_>, tried: &[Arc<Host>]) -> Option<Arc<Host>> {
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
