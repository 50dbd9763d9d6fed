//! The router (`envoy.filters.http.router`): the terminal step of every stream. For
//! the matched route it answers directly (`direct_response`, `redirect`) or picks the
//! cluster and host, rewrites the request ([`rewrite`]) and sends it through the one
//! upstream path — the attempts of `http/attempts.rs` (one request = one or more
//! attempts) — then shapes the upstream response for the client. Failures become
//! responses in `http/local_reply.rs`. It knows nothing of the HTTP filters.

pub mod config;
mod rewrite;

use crate::http::attempts::{Attempted, Plan, PlanBody};
use crate::http::body::{PerTryIdle, TimedResponse};
use crate::http::conn_manager::ActiveStream;
use crate::http::headers::{self, Side};
use crate::http::local_reply::{self, LocalReason};
use crate::http::request_headers;
use crate::http::retry::RetryState;
use crate::http::route_match::{Found, RequestView};
use crate::http::route_table::{RouteTable, RouteTarget};
use crate::http::timeouts::Timeouts;
use bytes::Bytes;
use ferry_config::route::{
    Action, ClusterSpecifier, Route, RouteAction, RouteConfig, VirtualHost, WeightedCluster,
};
use ferry_config::HeaderMutations;
use ferry_upstream::{Body, Cluster, Host};
use http::{HeaderName, HeaderValue, Request, Response};
use std::sync::Arc;
use std::time::Duration;

crate::filter_factory::filter_factory! {
    name: "envoy.filters.http.router",
    config_type: "envoy.extensions.filters.http.router.v3.Router",
    config: config::RouterConfig,
}

impl ferry_config::filters::HttpFilterFactory for Factory {
    fn terminal(&self) -> bool {
        true
    }
}

impl crate::http::filters::HttpFilterFactory for Factory {
    /// The router is the connection manager's terminal step, not a stream filter: the
    /// connection manager reads its config (`HcmRuntime::router`).
    fn build(
        &self,
        _: &str,
        _: usize,
        _: &ferry_config::filters::FilterConfig,
        _: &crate::http::filters::Env<'_>,
    ) -> Option<Arc<dyn crate::http::filter_manager::HttpFilter>> {
        None
    }
}

const X_ENVOY_HEDGE_ON_PER_TRY_TIMEOUT: &str = "x-envoy-hedge-on-per-try-timeout";
const X_ENVOY_ATTEMPT_COUNT: &str = "x-envoy-attempt-count";
/// Request headers the router consumes when it sets up retries.
const RETRY_CONTROL: &[&str] = &[
    "x-envoy-retry-on",
    "x-envoy-retry-grpc-on",
    "x-envoy-max-retries",
    "x-envoy-retriable-status-codes",
    "x-envoy-retriable-header-names",
];
const X_ENVOY_UPSTREAM_SERVICE_TIME: &str = "x-envoy-upstream-service-time";

/// For a route the runtime has no entry for (cannot happen: both come from one config).
static NO_TARGET: RouteTarget = RouteTarget {
    clusters: Vec::new(),
    expected_timeout: None,
    mirrors: Vec::new(),
    filters: crate::http::filter_manager::RouteFilterConfigs::EMPTY,
};

/// Header mutations, most specific first: weighted cluster, route, virtual host,
/// route configuration.
type Levels<'r> = [Option<&'r HeaderMutations>; 4];

/// The matched route and what it resolves to.
struct Matched<'r> {
    rc: &'r RouteConfig,
    vh: &'r VirtualHost,
    route: &'r Route,
    target: &'r RouteTarget,
}

impl<'r> Matched<'r> {
    /// The mutations of every level (with the weighted cluster's, when one was picked).
    fn levels(&self, weighted: Option<&'r WeightedCluster>) -> Levels<'r> {
        [
            headers::of_weighted(weighted),
            Some(&self.route.headers),
            Some(&self.vh.headers),
            Some(&self.rc.headers),
        ]
    }
}

/// Routes one request: answers it, or forwards it upstream.
pub async fn route(
    stream: &mut ActiveStream<'_>,
    req: Request<Body>,
    table: &RouteTable,
    found: Option<Found<'_>>,
) -> Response<Body> {
    let hcm = stream.hcm;
    hcm.stats.rq_total.inc();
    let Some(Found {
        vh_index,
        vh,
        route: Some((route_index, route)),
    }) = found
    else {
        return local(stream, None, LocalReason::NoRoute, None);
    };
    if !route.name.is_empty() {
        stream.info.route_name = Some(route.name.clone());
    }
    let target = table.target(vh_index, route_index).unwrap_or(&NO_TARGET);
    let m = Matched {
        rc: &table.config,
        vh,
        route,
        target,
    };
    match &route.action {
        Action::DirectResponse(d) => {
            hcm.stats.rq_direct_response.inc();
            let body = d.body.as_ref().map(|b| Bytes::copy_from_slice(b));
            let resp = local_reply::response(d.status, body);
            direct(stream, &m, resp)
        }
        Action::Redirect(r) => {
            hcm.stats.rq_redirect.inc();
            let location = rewrite::redirect_location(r, route, &stream.info, req.headers());
            let mut resp = local_reply::response(r.status, None);
            if let Ok(v) = HeaderValue::from_str(&location) {
                resp.headers_mut().insert(http::header::LOCATION, v);
            }
            direct(stream, &m, resp)
        }
        Action::Route(ra) => forward(stream, &m, ra, req).await,
    }
}

/// A direct response or redirect, with the route's response header mutations.
fn direct(
    stream: &mut ActiveStream<'_>,
    m: &Matched<'_>,
    mut resp: Response<Body>,
) -> Response<Body> {
    headers::apply_all(
        m.levels(None),
        Side::Response,
        resp.headers_mut(),
        &stream.info,
    );
    stream.info.response_code_details = Some("direct_response");
    resp
}

/// Answers locally for `reason` (with the matched route's response header mutations,
/// once a route matched), counting it in the connection manager's stats.
fn local(
    stream: &mut ActiveStream<'_>,
    m: Option<&Matched<'_>>,
    reason: LocalReason,
    failure: Option<String>,
) -> Response<Body> {
    let stats = &stream.hcm.stats;
    match reason {
        LocalReason::MaxStreamDuration => stats.downstream_rq_max_duration_reached.inc(),
        LocalReason::NoRoute => stats.no_route.inc(),
        LocalReason::NoCluster(_) => stats.no_cluster.inc(),
        LocalReason::RequestTimeout => stats.downstream_rq_timeout.inc(),
        LocalReason::StreamIdleTimeout { .. } => stats.downstream_rq_idle_timeout.inc(),
        _ => {}
    }
    let mut resp = local_reply::reason_reply(reason, failure, &mut stream.info);
    if let Some(m) = m {
        let levels = m.levels(None);
        headers::apply_all(levels, Side::Response, resp.headers_mut(), &stream.info);
    }
    resp
}

/// The cluster and host a `route` action sends to, and how the request is charged.
struct Upstream<'r> {
    cluster: Arc<Cluster>,
    host: Arc<Host>,
    /// The request hash (RING_HASH, MAGLEV), for re-picking hosts on retries.
    hash: Option<u64>,
    /// The weighted cluster picked, whose header mutations apply.
    weighted: Option<&'r WeightedCluster>,
    /// Responses are charged to the cluster under `internal.` or `external.`.
    internal: bool,
}

/// Forwards a request on a `route` action.
async fn forward(
    stream: &mut ActiveStream<'_>,
    m: &Matched<'_>,
    ra: &RouteAction,
    mut req: Request<Body>,
) -> Response<Body> {
    let hcm = stream.hcm;
    let Some((cluster, weighted)) = pick_cluster(stream, ra, m.target, req.headers()) else {
        let reason = LocalReason::NoCluster(ra.cluster_not_found_status);
        return local(stream, Some(m), reason, None);
    };
    stream.info.upstream_cluster = Some(cluster.name.clone());
    let internal = request_headers::marked_internal(req.headers());
    // Upgrades (WebSocket...).
    let upgrade = upgrade_type(req.headers());
    if let Some(u) = &upgrade {
        if !hcm.config.upgrades.iter().any(|a| a == u) {
            return local(stream, Some(m), LocalReason::UpgradeFailed, None);
        }
    }
    let hash = rewrite::request_hash(ra, &req, &stream.info, stream.conn);
    let Some(host) = cluster.choose_host(hash) else {
        return local(stream, Some(m), LocalReason::NoHealthyUpstream, None);
    };
    let info = &mut stream.info;
    info.upstream_host = Some(host.address);
    info.attempt_count = 1;
    info.upstream_protocol = Some(match cluster.config.protocol {
        ferry_config::cluster::UpstreamProtocol::Http1 => "HTTP/1.1",
        ferry_config::cluster::UpstreamProtocol::Http2 => "HTTP/2",
    });
    info.host = Some(host.clone());
    let upstream = Upstream {
        cluster,
        host,
        hash,
        weighted,
        internal,
    };
    let on_upgrade = upgrade.as_ref().map(|_| hyper::upgrade::on(&mut req));
    let (mut head, body) = req.into_parts();
    let levels = m.levels(weighted);
    let upgrading = on_upgrade.is_some();
    let rewritten =
        rewrite::upstream_head(stream, m, ra, &upstream.host, &mut head, levels, upgrading);
    let Some(timeouts) = rewritten else {
        return local(stream, Some(m), LocalReason::NoRoute, None);
    };
    match on_upgrade {
        Some(on_upgrade) => {
            let head = Request::from_parts(head, ());
            let sent = crate::http::upgrade::proxy(
                &upstream.cluster,
                &upstream.host,
                head,
                on_upgrade,
                ra.timeout,
            )
            .await;
            match sent {
                Ok(mut resp) => {
                    headers::apply_all(levels, Side::Response, resp.headers_mut(), &stream.info);
                    resp
                }
                Err(e) => {
                    let (reason, failure) = match &e {
                        crate::http::upgrade::UpgradeError::Timeout => {
                            (LocalReason::UpstreamTimeout, None)
                        }
                        crate::http::upgrade::UpgradeError::Upstream(e) => (
                            LocalReason::from_upstream(e),
                            local_reply::transport_failure(e),
                        ),
                    };
                    local(stream, Some(m), reason, failure)
                }
            }
        }
        None => send(stream, m, ra, upstream, head, body, timeouts).await,
    }
}

/// The cluster a `route` action names, and the weighted cluster picked, if any.
fn pick_cluster<'r>(
    stream: &ActiveStream<'_>,
    ra: &'r RouteAction,
    target: &RouteTarget,
    h: &http::HeaderMap,
) -> Option<(Arc<Cluster>, Option<&'r WeightedCluster>)> {
    match &ra.cluster {
        ClusterSpecifier::Name(_) => target
            .clusters
            .first()
            .and_then(|slot| slot.get())
            .map(|c| (c, None)),
        // Names only known per request: the one lookup by name that cannot be avoided.
        ClusterSpecifier::Header(name) => h
            .get(name)
            .and_then(|v| v.to_str().ok())
            .and_then(|n| stream.hcm.clusters.get(n))
            .map(|c| (c, None)),
        ClusterSpecifier::Weighted(w) => {
            let mut pick = rand::random_range(0..w.total);
            for (i, c) in w.clusters.iter().enumerate() {
                if pick < c.weight {
                    return target
                        .clusters
                        .get(i)
                        .and_then(|slot| slot.get())
                        .map(|cl| (cl, Some(c)));
                }
                pick -= c.weight;
            }
            None
        }
    }
}

/// Sends the request upstream through the attempts (retries, per-try timeouts,
/// hedging and mirrors when the route asks; a single attempt otherwise) and shapes
/// what comes back.
async fn send(
    stream: &mut ActiveStream<'_>,
    m: &Matched<'_>,
    ra: &RouteAction,
    upstream: Upstream<'_>,
    mut head: http::request::Parts,
    body: Body,
    timeouts: Timeouts,
) -> Response<Body> {
    let hcm = stream.hcm;
    let idle = match ra.idle_timeout {
        Some(per_route) => per_route,
        None => hcm.config.stream_idle_timeout,
    };
    let view = RequestView::of(&stream.info, &head.headers);
    let retry = RetryState::new(ra.retry_policy.as_ref(), &view);
    // The retry control headers are consumed here (internal requests only carry them).
    let mut hedging = ra.hedge_policy.hedge_on_per_try_timeout;
    if !hcm.config.internal_cidrs.is_empty() {
        let h = &mut head.headers;
        if let Some(v) = h.remove(X_ENVOY_HEDGE_ON_PER_TRY_TIMEOUT) {
            hedging |= v.as_bytes() == b"true";
        }
        for name in RETRY_CONTROL {
            h.remove(*name);
        }
    }
    // Retries and mirrors need the body again: it is kept up to the buffer limit.
    let body = if retry.is_some() || !ra.mirrors.is_empty() {
        let limit = ra
            .buffer_limit
            .unwrap_or(stream.conn.buffer_limit)
            .min(stream.conn.buffer_limit) as usize;
        let replay = crate::http::replay::Replay::new(body, limit);
        crate::http::mirror::shadow(hcm, m.target, ra, &head, &replay);
        PlanBody::Replay(replay)
    } else {
        PlanBody::Once(Some(body))
    };
    let stream_deadline = timeouts
        .stream_duration
        .map(|d| tokio::time::Instant::from_std(stream.start) + d);
    let plan = Plan {
        upstream: &crate::http::attempts::Pools,
        ra,
        cluster: upstream.cluster.clone(),
        first_host: upstream.host.clone(),
        hash: upstream.hash,
        head,
        body,
        retry,
        timeouts,
        idle,
        request_timeout: hcm.config.request_timeout,
        hedging,
        record_connection: hcm.log_upstream_connection,
    };
    let run = crate::http::attempts::run(plan, &mut stream.info, &stream.tap, stream.start);
    let attempted = match stream_deadline {
        None => run.await,
        Some(at) => tokio::select! {
            a = run => a,
            _ = tokio::time::sleep_until(at) => Attempted::Local {
                reason: LocalReason::MaxStreamDuration,
                failure: None,
            },
        },
    };
    match attempted {
        Attempted::Response {
            resp,
            route_deadline,
            attempts,
        } => {
            if hcm.router.dynamic_stats {
                let ms = stream.start.elapsed().as_millis() as u64;
                let status = resp.status().as_u16();
                upstream
                    .cluster
                    .stats
                    .charge(status, upstream.internal, Some(ms));
            }
            let timers = BodyTimers {
                route_deadline: earliest(route_deadline, stream_deadline),
                route_timeout: timeouts.global,
                idle,
                per_try_idle: timeouts.per_try_idle.map(|timeout| PerTryIdle {
                    timeout,
                    stats: upstream.cluster.stats.clone(),
                }),
            };
            let count = ra.attempt_count_in_response.then_some(attempts);
            upstream_response(stream, resp, m.levels(upstream.weighted), timers, count)
        }
        Attempted::Local { reason, failure } => {
            // A failed request body is the client's doing: 400, or nobody to answer.
            let reason = if stream.tap.malformed() {
                LocalReason::BadRequest
            } else if stream.tap.aborted() {
                LocalReason::DownstreamReset
            } else {
                reason
            };
            charge_local(stream, &upstream.cluster, reason, upstream.internal);
            local(stream, Some(m), reason, failure)
        }
    }
}

/// Charges a local answer that stands for the upstream's (Envoy's `chargeUpstreamAbort`):
/// 504 for timeouts, 503 for failed connections, resets and overflows.
fn charge_local(stream: &ActiveStream<'_>, cluster: &Cluster, reason: LocalReason, internal: bool) {
    if !stream.hcm.router.dynamic_stats {
        return;
    }
    let status = match reason {
        LocalReason::UpstreamTimeout
        | LocalReason::PerTryTimeout
        | LocalReason::PerTryIdleTimeout => 504,
        LocalReason::ConnectFailure | LocalReason::UpstreamReset | LocalReason::Overflow => 503,
        _ => return,
    };
    cluster.stats.charge(status, internal, None);
}

/// The timers over an upstream response's body.
struct BodyTimers {
    /// When the route timeout fires (armed once the request ended).
    route_deadline: Option<tokio::time::Instant>,
    /// The route timeout, to arm when the request ends.
    route_timeout: Option<Duration>,
    /// The stream idle timeout.
    idle: Option<Duration>,
    /// The attempt's `per_try_idle_timeout`.
    per_try_idle: Option<PerTryIdle>,
}

/// An upstream response as it goes downstream: hop-by-hop headers removed,
/// `x-envoy-upstream-service-time` (and `x-envoy-attempt-count` when asked for), the
/// route's response header mutations, and the timers over its body.
fn upstream_response(
    stream: &mut ActiveStream<'_>,
    resp: Response<Body>,
    levels: Levels<'_>,
    timers: BodyTimers,
    attempt_count: Option<u32>,
) -> Response<Body> {
    let start = stream.start;
    let info = &mut stream.info;
    info.response_duration = Some(start.elapsed());
    let (mut parts, body) = resp.into_parts();
    headers::strip_hop_by_hop(&mut parts.headers);
    parts.headers.insert(
        HeaderName::from_static(X_ENVOY_UPSTREAM_SERVICE_TIME),
        HeaderValue::from(start.elapsed().as_millis() as u64),
    );
    // include_attempt_count_in_response.
    if let Some(n) = attempt_count {
        parts.headers.insert(
            HeaderName::from_static(X_ENVOY_ATTEMPT_COUNT),
            HeaderValue::from(n),
        );
    }
    headers::apply_all(levels, Side::Response, &mut parts.headers, info);
    info.response_code_details = Some("via_upstream");
    let timed = timers.route_deadline.is_some()
        || timers.route_timeout.is_some()
        || timers.idle.is_some()
        || timers.per_try_idle.is_some();
    let body = if timed {
        use http_body_util::BodyExt;
        TimedResponse::new(
            body,
            timers.route_deadline,
            timers.route_timeout,
            timers.idle,
            timers.per_try_idle,
            stream.tap.clone(),
            start,
        )
        .boxed()
    } else {
        body
    };
    Response::from_parts(parts, body)
}

/// The earlier of two optional deadlines.
fn earliest(
    a: Option<tokio::time::Instant>,
    b: Option<tokio::time::Instant>,
) -> Option<tokio::time::Instant> {
    match (a, b) {
        (Some(a), Some(b)) => Some(a.min(b)),
        (a, b) => a.or(b),
    }
}

/// The upgrade requested (`connection: upgrade` + `upgrade: X`), lower-cased.
fn upgrade_type(h: &http::HeaderMap) -> Option<String> {
    let conn_upgrade = h
        .get_all(http::header::CONNECTION)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .any(|v| {
            v.split(',')
                .any(|t| t.trim().eq_ignore_ascii_case("upgrade"))
        });
    if !conn_upgrade {
        return None;
    }
    h.get(http::header::UPGRADE)
        .and_then(|v| v.to_str().ok())
        .map(|v| v.trim().to_ascii_lowercase())
}
