//! The router: for one request, choose the route and cluster, rewrite, forward upstream
//! and stream the response back — or answer locally (Envoy's codes and flags).

use crate::http::attempts::{Attempted, Plan, PlanBody, Timeouts};
use crate::http::body::{
    CountedRequest, LogOnEnd, LoggedResponse, PerTryIdle, RequestTap, TimedResponse,
};
use crate::http::filters::{FilterRequest, LocalReply as FilterReply, ResponseWork, Verdict};
use crate::http::headers::{self, Side};
use crate::http::local_reply::{self, LocalReason};
use crate::http::retry::RetryState;
use crate::http::route_match::{self, RequestView};
use crate::network::hcm::{ConnInfo, HcmRuntime, RouteTarget};
use crate::stream_info::StreamInfo;
use bytes::Bytes;
use ferry_config::hcm::ServerHeader;
use ferry_config::route::{
    Action, ClusterSpecifier, HashPolicyKind, HostRewrite, PathMatch, Redirect, RedirectPath,
    Route, RouteAction, WeightedCluster,
};
use ferry_upstream::Body;
use http::{HeaderMap, HeaderName, HeaderValue, Request, Response};
use http_body_util::BodyExt;
use std::sync::Arc;
use std::time::{Instant, SystemTime};

// Names of Envoy's headers. Inserted as `HeaderName::from_static` (no allocation; a
// `&str` name would be copied into a new `HeaderName` on every insert).
const X_REQUEST_ID: &str = "x-request-id";
const X_FORWARDED_FOR: &str = "x-forwarded-for";
const X_FORWARDED_PROTO: &str = "x-forwarded-proto";
const X_ENVOY_ORIGINAL_PATH: &str = "x-envoy-original-path";
const X_ENVOY_ORIGINAL_HOST: &str = "x-envoy-original-host";
const X_ENVOY_EXTERNAL_ADDRESS: &str = "x-envoy-external-address";

/// Control headers Envoy also removes from external requests at the edge
/// (`use_remote_address`), besides [`EXTERNAL_STRIPPED`].
const EDGE_STRIPPED: &[&str] = &[
    "x-envoy-decorator-operation",
    "x-envoy-downstream-service-cluster",
    "x-envoy-downstream-service-node",
    "x-envoy-external-address",
    "x-envoy-original-path",
    "x-envoy-upstream-stream-duration-ms",
];
/// Control headers Envoy removes from every external request, edge or not
/// (`cleanInternalHeaders`): a client outside may not steer retries or timeouts.
const EXTERNAL_STRIPPED: &[&str] = &[
    "x-envoy-expected-rq-timeout-ms",
    "x-envoy-force-trace",
    "x-envoy-hedge-on-per-try-timeout",
    "x-envoy-internal",
    "x-envoy-ip-tags",
    "x-envoy-max-retries",
    "x-envoy-original-url",
    "x-envoy-retriable-header-names",
    "x-envoy-retriable-status-codes",
    "x-envoy-retry-grpc-on",
    "x-envoy-retry-on",
    "x-envoy-upstream-alt-stat-name",
    "x-envoy-upstream-rq-per-try-timeout-ms",
    "x-envoy-upstream-rq-timeout-alt-response",
    "x-envoy-upstream-rq-timeout-ms",
];
const X_ENVOY_INTERNAL: &str = "x-envoy-internal";
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
const X_ENVOY_EXPECTED_RQ_TIMEOUT_MS: &str = "x-envoy-expected-rq-timeout-ms";
const X_ENVOY_UPSTREAM_SERVICE_TIME: &str = "x-envoy-upstream-service-time";

/// For a route the runtime has no entry for (cannot happen: both come from one config).
static NO_TARGET: RouteTarget = RouteTarget {
    clusters: Vec::new(),
    expected_timeout: None,
    mirrors: Vec::new(),
    overrides: Vec::new(),
};

/// Handles one request to completion of its response headers; the body streams after.
pub async fn handle(
    hcm: Arc<HcmRuntime>,
    conn: Arc<ConnInfo>,
    req: Request<hyper::body::Incoming>,
) -> Response<Body> {
    let start = Instant::now();
    let tap = Arc::new(RequestTap::default());
    let http2 = req.version() == http::Version::HTTP_2;
    conn.count_protocol(http2, &hcm.stats);
    let counted = RequestStats::open(&hcm, http2, start);
    // A stream counts as in flight until its response body ends: for the HTTP/2 idle
    // timeout and for the HTTP/1.1 framing guard's refusals.
    let guard = conn.open_stream(http2);
    let mut work = ResponseWork::default();
    let resp = route_request(&hcm, &conn, req, start, tap, &mut work).await;
    let (mut parts, mut body) = resp.into_parts();
    hcm.stats.response_class(parts.status.as_u16());
    hcm.listener_stats.response_class(parts.status.as_u16());
    // What the HTTP filters left for the response.
    for (name, value) in work.headers {
        parts.headers.insert(name, value);
    }
    if let Some(kbps) = work.throttle_kbps {
        body = crate::http::throttle::Throttled::new(body, kbps).boxed();
    }
    if !work.hold.is_empty() {
        body = crate::http::filters::Holding::new(body, work.hold).boxed();
    }
    Response::from_parts(
        parts,
        crate::http::body::Guarded::new(body, (guard, counted)).boxed(),
    )
}

/// The matched route's `decorator` (the trace span's operation name).
fn decorator_of<'a>(
    found: &Option<route_match::Found<'a>>,
) -> Option<&'a ferry_config::trace::Decorator> {
    found
        .as_ref()
        .and_then(|f| f.route.as_ref())
        .and_then(|(_, r)| r.decorator.as_ref())
}

/// Charges a local answer that stands for the upstream's (Envoy's `chargeUpstreamAbort`):
/// 504 for timeouts, 503 for failed connections, resets and overflows.
fn charge_local(
    hcm: &HcmRuntime,
    cluster: &ferry_upstream::Cluster,
    reason: LocalReason,
    internal: bool,
) {
    if !hcm.config.router_dynamic_stats {
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

/// A request's accounting in its connection manager's stats: counted when it arrives,
/// completed when its response body ends (or is dropped).
struct RequestStats {
    hcm: Arc<HcmRuntime>,
    start: Instant,
}

impl RequestStats {
    fn open(hcm: &Arc<HcmRuntime>, http2: bool, start: Instant) -> RequestStats {
        let s = &hcm.stats;
        s.downstream_rq_total.inc();
        if http2 {
            s.downstream_rq_http2_total.inc();
        } else {
            s.downstream_rq_http1_total.inc();
        }
        s.downstream_rq_active.inc();
        RequestStats {
            hcm: hcm.clone(),
            start,
        }
    }
}

impl Drop for RequestStats {
    fn drop(&mut self) {
        let s = &self.hcm.stats;
        s.downstream_rq_active.dec();
        s.downstream_rq_completed.inc();
        self.hcm.listener_stats.downstream_rq_completed.inc();
        s.downstream_rq_time
            .record(self.start.elapsed().as_millis() as u64);
    }
}

async fn route_request(
    hcm: &Arc<HcmRuntime>,
    conn: &Arc<ConnInfo>,
    mut req: Request<hyper::body::Incoming>,
    start: Instant,
    tap: Arc<RequestTap>,
    work: &mut ResponseWork,
) -> Response<Body> {
    let cfg = &hcm.config;
    let protocol = match req.version() {
        http::Version::HTTP_2 => "HTTP/2",
        http::Version::HTTP_10 => "HTTP/1.0",
        _ => "HTTP/1.1",
    };
    let mut authority = req
        .uri()
        .authority()
        .map(|a| a.as_str().to_string())
        .or_else(|| {
            req.headers()
                .get(http::header::HOST)
                .and_then(|h| h.to_str().ok())
                .map(str::to_string)
        })
        .unwrap_or_default();
    authority.make_ascii_lowercase();
    let path = req
        .uri()
        .path_and_query()
        .map(|p| p.as_str().to_string())
        .unwrap_or_else(|| "/".into());
    let method = req.method().as_str().to_string();
    conn.shared.request_started();
    // A request without a body is complete with its headers.
    if http_body::Body::is_end_stream(req.body()) {
        tap.complete(start);
    }

    // Standard request headers (Envoy's ConnectionManagerUtility::mutateRequestHeaders).
    // A request is internal when it comes from an `internal_address_config` range (the
    // peer with use_remote_address, else a single x-forwarded-for entry); internal
    // requests are marked `x-envoy-internal: true` and keep their control headers.
    // External ones lose them (and, at the edge — use_remote_address — a few more).
    {
        let h = req.headers_mut();
        let peer_ip = conn.peer.ip();
        let internal = !cfg.internal_cidrs.is_empty() && {
            let xff = headers::joined(h, X_FORWARDED_FOR);
            if cfg.use_remote_address {
                xff.is_none_or(|x| x.trim().is_empty()) && cfg.is_internal(peer_ip)
            } else {
                xff.and_then(|x| {
                    let mut entries = x.split(',');
                    let one = entries.next()?.trim().parse::<std::net::IpAddr>().ok()?;
                    entries.next().is_none().then_some(one)
                })
                .is_some_and(|ip| cfg.is_internal(ip))
            }
        };
        if internal {
            h.insert(
                HeaderName::from_static(X_ENVOY_INTERNAL),
                HeaderValue::from_static("true"),
            );
        } else if h.keys().any(|k| k.as_str().starts_with("x-envoy-")) {
            // (One pass over the names first: most requests carry no x-envoy-* header.)
            let edge: &[&str] = if cfg.use_remote_address {
                EDGE_STRIPPED
            } else {
                &[]
            };
            for name in EXTERNAL_STRIPPED.iter().chain(edge) {
                h.remove(*name);
            }
        }
        if cfg.use_remote_address {
            if !internal {
                if let Ok(v) = HeaderValue::from_str(&peer_ip.to_string()) {
                    h.insert(HeaderName::from_static(X_ENVOY_EXTERNAL_ADDRESS), v);
                }
            }
            if !cfg.skip_xff_append {
                // A loopback peer is recorded as this host's own address (Envoy).
                let ip = match (peer_ip.is_loopback(), hcm.local_address) {
                    (true, Some(local)) => local,
                    _ => peer_ip,
                };
                append_xff(h, &ip.to_string());
            }
        }
        if cfg.use_remote_address || !h.contains_key(X_FORWARDED_PROTO) {
            h.insert(
                HeaderName::from_static(X_FORWARDED_PROTO),
                HeaderValue::from_static("http"),
            );
        }
        let external = cfg.use_remote_address && !internal && !cfg.preserve_external_request_id;
        if cfg.generate_request_id && (external || !h.contains_key(X_REQUEST_ID)) {
            if let Ok(v) = HeaderValue::from_str(&uuid::Uuid::new_v4().to_string()) {
                h.insert(HeaderName::from_static(X_REQUEST_ID), v);
            }
        }
    }

    let mut info = StreamInfo {
        start_time: Some(SystemTime::now()),
        method,
        path,
        authority,
        scheme: "http",
        protocol,
        downstream_remote: Some(trusted_client_address(cfg, req.headers(), conn.peer)),
        downstream_direct_remote: Some(conn.peer),
        downstream_local: Some(conn.local),
        connection_id: conn.id,
        ..Default::default()
    };
    info.request_id = req.headers().get(X_REQUEST_ID).cloned();
    info.is_grpc = req
        .headers()
        .get(http::header::CONTENT_TYPE)
        .is_some_and(|v| v.as_bytes().starts_with(b"application/grpc"));

    let view = RequestView {
        method: &info.method,
        path: &info.path,
        authority: &info.authority,
        scheme: info.scheme,
        headers: req.headers(),
        status: "",
    };
    let rc = cfg.route_config.clone();
    let found = route_match::find(&rc, &view);
    // The HTTP filters, with the matched route's per-filter configs.
    if !hcm.filters.is_empty() {
        let (target, action) = match &found {
            Some(route_match::Found {
                vh_index,
                route: Some((route_index, route)),
                ..
            }) => (
                hcm.routes.get(*vh_index).and_then(|r| r.get(*route_index)),
                match &route.action {
                    Action::Route(ra) => Some(&**ra),
                    _ => None,
                },
            ),
            _ => (None, None),
        };
        let cluster = action.and_then(|ra| match &ra.cluster {
            ClusterSpecifier::Name(n) => Some(n.as_str()),
            _ => None,
        });
        let path = info.path.clone();
        let method = info.method.clone();
        let authority = info.authority.clone();
        let mut rq = FilterRequest {
            headers: req.headers_mut(),
            path: &path,
            method: &method,
            authority: &authority,
            overrides: target.map(|t| t.overrides.as_slice()).unwrap_or_default(),
            cluster,
            rate_limits: action
                .map(|ra| ra.rate_limits.as_slice())
                .unwrap_or_default(),
            source_cluster: &hcm.node_cluster,
            conn,
            info: &mut info,
            response: work,
        };
        for f in &hcm.filters {
            if let Verdict::Reply(reply) = f.on_request(&mut rq).await {
                if let Some(t) = &hcm.tracer {
                    t.start(
                        req.headers_mut(),
                        &mut info,
                        &hcm.stats,
                        !hcm.loggers.is_empty(),
                        decorator_of(&found),
                    );
                }
                return finish_filter_reply(hcm, info, req.headers(), reply, start, tap);
            }
        }
    }
    // The tracing decision, once the filters have said whether this is a health check;
    // the span context goes upstream with the request's headers.
    if let Some(t) = &hcm.tracer {
        t.start(
            req.headers_mut(),
            &mut info,
            &hcm.stats,
            !hcm.loggers.is_empty(),
            decorator_of(&found),
        );
    }
    // The request reaches the router filter.
    hcm.stats.rq_total.inc();
    let (vh_index, route_index, vh, route) = match found {
        Some(route_match::Found {
            vh_index,
            vh,
            route: Some((route_index, route)),
        }) => (vh_index, route_index, vh, route),
        _ => {
            return finish_local(
                hcm,
                info,
                req.headers(),
                [None; 4],
                LocalReason::NoRoute,
                None,
                start,
                tap,
            )
        }
    };
    if !route.name.is_empty() {
        info.route_name = Some(route.name.clone());
    }

    // Mutations of the matched route, most specific first.
    let levels = [
        Some(&route.headers),
        Some(&vh.headers),
        Some(&rc.headers),
        None,
    ];
    match &route.action {
        Action::DirectResponse(d) => {
            hcm.stats.rq_direct_response.inc();
            let body = d.body.as_ref().map(|b| Bytes::copy_from_slice(b));
            let resp = local_reply::response(d.status, body);
            finish_direct(hcm, info, req.headers(), levels, resp, start, tap)
        }
        Action::Redirect(r) => {
            hcm.stats.rq_redirect.inc();
            let location = redirect_location(r, route, &info, req.headers());
            let mut resp = local_reply::response(r.status, None);
            if let Ok(v) = HeaderValue::from_str(&location) {
                resp.headers_mut().insert(http::header::LOCATION, v);
            }
            finish_direct(hcm, info, req.headers(), levels, resp, start, tap)
        }
        Action::Route(ra) => {
            let target = hcm
                .routes
                .get(vh_index)
                .and_then(|r| r.get(route_index))
                .unwrap_or(&NO_TARGET);
            forward(
                hcm.clone(),
                conn.clone(),
                req,
                info,
                route,
                vh,
                &rc,
                ra,
                target,
                levels,
                start,
                tap,
            )
            .await
        }
    }
}

#[allow(clippy::too_many_arguments)]
async fn forward(
    hcm: Arc<HcmRuntime>,
    conn: Arc<ConnInfo>,
    mut req: Request<hyper::body::Incoming>,
    mut info: StreamInfo,
    route: &Route,
    vh: &ferry_config::route::VirtualHost,
    rc: &ferry_config::route::RouteConfig,
    ra: &RouteAction,
    target: &RouteTarget,
    // Local replies once a route matched carry its response header mutations.
    levels: [Option<&ferry_config::HeaderMutations>; 4],
    start: Instant,
    tap: Arc<RequestTap>,
) -> Response<Body> {
    // Cluster.
    let mut weighted: Option<&WeightedCluster> = None;
    let cluster = match &ra.cluster {
        ClusterSpecifier::Name(_) => target.clusters.first().cloned().flatten(),
        // Names only known per request: the one lookup by name that cannot be avoided.
        ClusterSpecifier::Header(h) => req
            .headers()
            .get(h)
            .and_then(|v| v.to_str().ok())
            .and_then(|n| hcm.clusters.get(n))
            .cloned(),
        ClusterSpecifier::Weighted(w) => {
            let mut pick = rand::random_range(0..w.total);
            let mut chosen = None;
            for (i, c) in w.clusters.iter().enumerate() {
                if pick < c.weight {
                    weighted = Some(c);
                    chosen = target.clusters.get(i).cloned().flatten();
                    break;
                }
                pick -= c.weight;
            }
            chosen
        }
    };
    let Some(cluster) = cluster else {
        return finish_local(
            &hcm,
            info,
            req.headers(),
            levels,
            LocalReason::NoCluster(ra.cluster_not_found_status),
            None,
            start,
            tap,
        );
    };
    info.upstream_cluster = Some(cluster.config.name.clone());
    // Responses are charged to the cluster under `internal.` or `external.`.
    let internal = req
        .headers()
        .get(X_ENVOY_INTERNAL)
        .is_some_and(|v| v.as_bytes() == b"true");

    // Upgrades (WebSocket...).
    let upgrade = upgrade_type(req.headers());
    if let Some(u) = &upgrade {
        if !hcm.config.upgrades.iter().any(|a| a == u) {
            return finish_local(
                &hcm,
                info,
                req.headers(),
                levels,
                LocalReason::UpgradeFailed,
                None,
                start,
                tap,
            );
        }
    }

    let hash = request_hash(ra, &req, &info, &conn);
    let Some(host) = cluster.choose_host(hash) else {
        return finish_local(
            &hcm,
            info,
            req.headers(),
            levels,
            LocalReason::NoHealthyUpstream,
            None,
            start,
            tap,
        );
    };
    info.upstream_host = Some(host.address);
    info.attempt_count = 1;
    info.upstream_protocol = Some(match cluster.config.protocol {
        ferry_config::cluster::UpstreamProtocol::Http1 => "HTTP/1.1",
        ferry_config::cluster::UpstreamProtocol::Http2 => "HTTP/2",
    });
    info.host = Some(host.clone());

    // Path and host rewrites (strings are built only when something is rewritten).
    let path = info.path.as_str();
    let new_path: Option<String> = if let Some(prefix) = &ra.prefix_rewrite {
        // The matched prefix is replaced; for `path` and `safe_regex` matches, the whole
        // path (the query string stays).
        let matched = match &route.matcher.path {
            PathMatch::Prefix(p) | PathMatch::SeparatedPrefix(p) => p.len(),
            PathMatch::Exact(_) | PathMatch::Regex(_) => path.find('?').unwrap_or(path.len()),
        };
        path.get(matched..).map(|rest| format!("{prefix}{rest}"))
    } else if let Some((re, sub)) = &ra.regex_rewrite {
        let (p, q) = path.split_at(path.find('?').unwrap_or(path.len()));
        Some(format!("{}{q}", re.replace_all(p, sub.as_str())))
    } else {
        None
    }
    .filter(|p| p != path);
    let new_authority: Option<String> = match &ra.host_rewrite {
        HostRewrite::None => None,
        HostRewrite::Literal(h) => Some(h.clone()),
        // Envoy rewrites only to a hostname (an endpoint `hostname` or a DNS name).
        HostRewrite::Auto if host.hostname.parse::<std::net::IpAddr>().is_err() => {
            Some(host.hostname.clone())
        }
        HostRewrite::Auto => None,
    }
    .filter(|a| *a != info.authority);

    // The upstream request.
    let upgrade_conn = upgrade.as_ref().map(|_| hyper::upgrade::on(&mut req));
    let (mut parts, body) = req.into_parts();
    if hcm.keep_request_headers {
        info.request_headers = parts.headers.clone();
    }
    let h = &mut parts.headers;
    let upgrade_headers = upgrade.as_ref().map(|_| {
        (
            h.get(http::header::UPGRADE).cloned(),
            h.get(http::header::CONNECTION).cloned(),
        )
    });
    headers::strip_hop_by_hop(h);
    if let Some((u, c)) = upgrade_headers {
        if let Some(u) = u {
            h.insert(http::header::UPGRADE, u);
        }
        if let Some(c) = c {
            h.insert(http::header::CONNECTION, c);
        }
    }
    if let Some(via) = &hcm.config.via {
        append_via(h, via);
    }
    if new_path.is_some() {
        if let Ok(v) = HeaderValue::from_str(&info.path) {
            h.insert(HeaderName::from_static(X_ENVOY_ORIGINAL_PATH), v);
        }
    }
    if new_authority.is_some() {
        if let Ok(v) = HeaderValue::from_str(&info.authority) {
            h.insert(HeaderName::from_static(X_ENVOY_ORIGINAL_HOST), v);
        }
    }
    // The upstream Host: the rewritten one, else the request's (lower-cased); an
    // HTTP/1.1 request's own header is kept when it already says exactly that.
    let upstream_host = new_authority.as_deref().unwrap_or(&info.authority);
    let mut hosts = h.get_all(http::header::HOST).iter();
    let same = matches!((hosts.next(), hosts.next()), (Some(v), None) if v.as_bytes() == upstream_host.as_bytes());
    if !same {
        if let Ok(v) = HeaderValue::from_str(upstream_host) {
            h.insert(http::header::HOST, v);
        }
    }
    // The request's timeouts (its x-envoy-upstream-rq-* headers are consumed here).
    let timeouts = Timeouts::of(ra, h, info.is_grpc);
    let stream_deadline = timeouts
        .stream_duration
        .map(|d| tokio::time::Instant::from_std(start) + d);
    let expected = if timeouts.custom {
        timeouts
            .expected(
                ra.hedge_policy.hedge_on_per_try_timeout,
                std::time::Duration::ZERO,
            )
            .map(HeaderValue::from)
    } else {
        target.expected_timeout.clone()
    };
    if let Some(v) = expected {
        // With max_grpc_timeout, the upstream learns the deadline in grpc-timeout too.
        if info.is_grpc && ra.max_grpc_timeout.is_some() && ra.max_stream_duration.is_none() {
            if let Ok(g) = HeaderValue::from_str(&format!("{}m", v.to_str().unwrap_or("0"))) {
                h.insert(HeaderName::from_static("grpc-timeout"), g);
            }
        }
        h.insert(HeaderName::from_static(X_ENVOY_EXPECTED_RQ_TIMEOUT_MS), v);
    }
    // Every level's mutations, most specific first (the weighted cluster's included).
    let all_levels = [
        headers::of_weighted(weighted),
        Some(&route.headers),
        Some(&vh.headers),
        Some(&rc.headers),
    ];
    headers::apply_all(all_levels, Side::Request, h, &info);
    // Logs see the request as it goes upstream (Envoy rewrites its headers in place).
    if hcm.keep_request_headers {
        info.rewritten_path = new_path.clone();
        info.rewritten_authority = new_authority.clone();
    }
    // Origin form upstream: the request's URI is kept when it already is just the path.
    let keep_uri =
        new_path.is_none() && parts.uri.scheme().is_none() && parts.uri.authority().is_none();
    parts.uri = match keep_uri {
        true => std::mem::take(&mut parts.uri),
        false => match new_path.as_deref().unwrap_or(&info.path).parse() {
            Ok(u) => u,
            Err(_) => {
                return finish_local(
                    &hcm,
                    info,
                    &HeaderMap::new(),
                    levels,
                    LocalReason::NoRoute,
                    None,
                    start,
                    tap,
                )
            }
        },
    };
    parts.version = http::Version::HTTP_11;

    if let (Some(on_upgrade), Some(_)) = (upgrade_conn, &upgrade) {
        let up_req = Request::from_parts(parts, ());
        return match crate::http::upgrade::proxy(&cluster, &host, up_req, on_upgrade, ra.timeout)
            .await
        {
            Ok(mut resp) => {
                headers::apply_all(all_levels, Side::Response, resp.headers_mut(), &info);
                finish_response(&hcm, info, resp, start, tap)
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
                finish_local(
                    &hcm,
                    info,
                    &HeaderMap::new(),
                    levels,
                    reason,
                    failure,
                    start,
                    tap,
                )
            }
        };
    }

    let body = CountedRequest::new(body, tap.clone(), start).boxed();
    let idle = match ra.idle_timeout {
        Some(per_route) => per_route,
        None => hcm.config.stream_idle_timeout,
    };
    let retry = {
        let view = RequestView {
            method: &info.method,
            path: &info.path,
            authority: &info.authority,
            scheme: info.scheme,
            headers: &parts.headers,
            status: "",
        };
        RetryState::new(ra.retry_policy.as_ref(), &view)
    };
    // The retry control headers are consumed here (internal requests only carry them).
    let mut hedging = ra.hedge_policy.hedge_on_per_try_timeout;
    if !hcm.config.internal_cidrs.is_empty() {
        let h = &mut parts.headers;
        if let Some(v) = h.remove(X_ENVOY_HEDGE_ON_PER_TRY_TIMEOUT) {
            hedging |= v.as_bytes() == b"true";
        }
        for name in RETRY_CONTROL {
            h.remove(*name);
        }
    }
    if retry.is_some()
        || timeouts.per_try.is_some()
        || timeouts.per_try_idle.is_some()
        || !ra.mirrors.is_empty()
    {
        // Retries, per-try timeouts, hedging or mirrors: the attempt state machine.
        let limit = ra
            .buffer_limit
            .unwrap_or(conn.buffer_limit)
            .min(conn.buffer_limit) as usize;
        let replayable = retry.is_some() || !ra.mirrors.is_empty();
        let per_try_idle = timeouts.per_try_idle.map(|timeout| PerTryIdle {
            timeout,
            stats: cluster.stats.clone(),
        });
        let body = if replayable {
            let replay = crate::http::replay::Replay::new(body, limit);
            crate::http::mirror::shadow(&hcm, target, ra, &parts, &replay);
            PlanBody::Replay(replay)
        } else {
            PlanBody::Once(Some(body))
        };
        let plan = Plan {
            ra,
            cluster: cluster.clone(),
            first_host: host.clone(),
            hash,
            head: parts,
            body,
            retry,
            timeouts,
            idle,
            request_timeout: hcm.config.request_timeout,
            hedging,
        };
        let run = crate::http::attempts::run(plan, &mut info, &tap, start);
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
        return match attempted {
            Attempted::Response {
                resp,
                route_deadline,
                attempts,
            } => {
                if hcm.config.router_dynamic_stats {
                    let ms = start.elapsed().as_millis() as u64;
                    cluster
                        .stats
                        .charge(resp.status().as_u16(), internal, Some(ms));
                }
                let resp = upstream_response(
                    &hcm,
                    &mut info,
                    resp,
                    all_levels,
                    earliest(route_deadline, stream_deadline),
                    timeouts.global,
                    idle,
                    per_try_idle,
                    &tap,
                    start,
                    ra.attempt_count_in_response.then_some(attempts),
                );
                finish_response(&hcm, info, resp, start, tap)
            }
            Attempted::Local { reason, failure } => {
                let reason = if tap.malformed() {
                    LocalReason::BadRequest
                } else if tap.aborted() {
                    LocalReason::DownstreamReset
                } else {
                    reason
                };
                charge_local(&hcm, &cluster, reason, internal);
                finish_local(
                    &hcm,
                    info,
                    &HeaderMap::new(),
                    levels,
                    reason,
                    failure,
                    start,
                    tap,
                )
            }
        };
    }
    if ra.attempt_count_in_request {
        parts.headers.insert(
            HeaderName::from_static(X_ENVOY_ATTEMPT_COUNT),
            HeaderValue::from_static("1"),
        );
    }
    let up_req = Request::from_parts(parts, body);
    // Which connection the request gets, when a log wants to know.
    let dispatch = hcm
        .log_upstream_connection
        .then(|| ferry_upstream::Dispatch::new(Arc::new(tokio::sync::Notify::new())));
    let sent = host.send_observed(&cluster, ra.priority, up_req, dispatch.as_ref());
    let waited = wait_for_headers(
        sent,
        timeouts.global,
        idle,
        hcm.config.request_timeout,
        &tap,
        start,
    );
    let waited = match stream_deadline {
        None => waited.await,
        Some(at) => tokio::select! {
            w = waited => w,
            _ = tokio::time::sleep_until(at) => (Waited::Timeout(LocalReason::MaxStreamDuration), None),
        },
    };
    let (result, route_deadline) = match waited {
        (Waited::Response(r), deadline) => (r, deadline),
        (Waited::Timeout(reason), _) => {
            if reason == LocalReason::UpstreamTimeout {
                cluster.stats.upstream_rq_timeout.inc();
                host.report_timeout();
            }
            charge_local(&hcm, &cluster, reason, internal);
            return finish_local(
                &hcm,
                info,
                &HeaderMap::new(),
                levels,
                reason,
                None,
                start,
                tap,
            );
        }
    };
    info.upstream_conn = dispatch.as_ref().and_then(|d| d.connection());
    let resp = match result {
        Ok(r) => r,
        Err(e) => {
            // A malformed request body is the client's fault: 400, as Envoy's codec.
            let reason = if tap.malformed() {
                LocalReason::BadRequest
            } else if tap.aborted() {
                LocalReason::DownstreamReset
            } else {
                LocalReason::from_upstream(&e)
            };
            charge_local(&hcm, &cluster, reason, internal);
            let failure = local_reply::transport_failure(&e);
            return finish_local(
                &hcm,
                info,
                &HeaderMap::new(),
                levels,
                reason,
                failure,
                start,
                tap,
            );
        }
    };
    if hcm.config.router_dynamic_stats {
        let ms = start.elapsed().as_millis() as u64;
        cluster
            .stats
            .charge(resp.status().as_u16(), internal, Some(ms));
    }
    let resp = upstream_response(
        &hcm,
        &mut info,
        resp,
        all_levels,
        earliest(route_deadline, stream_deadline),
        timeouts.global,
        idle,
        None,
        &tap,
        start,
        ra.attempt_count_in_response.then_some(1),
    );
    finish_response(&hcm, info, resp, start, tap)
}

/// An upstream response as it goes downstream: hop-by-hop headers removed,
/// `x-envoy-upstream-service-time` (and `x-envoy-attempt-count` when asked for), the
/// route's response header mutations, and the route and idle timeouts over its body.
#[allow(clippy::too_many_arguments)]
fn upstream_response(
    _hcm: &HcmRuntime,
    info: &mut StreamInfo,
    resp: Response<Body>,
    all_levels: [Option<&ferry_config::HeaderMutations>; 4],
    route_deadline: Option<tokio::time::Instant>,
    route_timeout: Option<std::time::Duration>,
    idle: Option<std::time::Duration>,
    per_try_idle: Option<PerTryIdle>,
    tap: &Arc<RequestTap>,
    start: Instant,
    attempt_count: Option<u32>,
) -> Response<Body> {
    info.response_duration = Some(start.elapsed());
    let (mut rparts, rbody) = resp.into_parts();
    headers::strip_hop_by_hop(&mut rparts.headers);
    rparts.headers.insert(
        HeaderName::from_static(X_ENVOY_UPSTREAM_SERVICE_TIME),
        HeaderValue::from(start.elapsed().as_millis() as u64),
    );
    // include_attempt_count_in_response.
    if let Some(n) = attempt_count {
        rparts.headers.insert(
            HeaderName::from_static(X_ENVOY_ATTEMPT_COUNT),
            HeaderValue::from(n),
        );
    }
    headers::apply_all(all_levels, Side::Response, &mut rparts.headers, info);
    info.response_code_details = Some("via_upstream");
    let timed = route_deadline.is_some()
        || route_timeout.is_some()
        || idle.is_some()
        || per_try_idle.is_some();
    let rbody = if timed {
        TimedResponse::new(
            rbody,
            route_deadline,
            route_timeout,
            idle,
            per_try_idle,
            tap.clone(),
            start,
        )
        .boxed()
    } else {
        rbody
    };
    Response::from_parts(rparts, rbody)
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

fn append_xff(h: &mut HeaderMap, ip: &str) {
    let value = match headers::joined(h, X_FORWARDED_FOR) {
        Some(existing) if !existing.is_empty() => format!("{existing},{ip}"),
        _ => ip.to_string(),
    };
    if let Ok(v) = HeaderValue::from_str(&value) {
        h.insert(HeaderName::from_static(X_FORWARDED_FOR), v);
    }
}

/// The upgrade requested (`connection: upgrade` + `upgrade: X`), lower-cased.
fn upgrade_type(h: &HeaderMap) -> Option<String> {
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

/// The request hash for RING_HASH / MAGLEV, from the route's `hash_policy`.
fn request_hash<B>(
    ra: &RouteAction,
    req: &Request<B>,
    info: &StreamInfo,
    conn: &ConnInfo,
) -> Option<u64> {
    use xxhash_rust::xxh64::xxh64;
    let mut hash: Option<u64> = None;
    for p in &ra.hash_policy {
        let h = match &p.kind {
            HashPolicyKind::Header(name) => req.headers().get(name).map(|v| xxh64(v.as_bytes(), 0)),
            HashPolicyKind::Cookie { name } => {
                cookie(req.headers(), name).map(|v| xxh64(v.as_bytes(), 0))
            }
            HashPolicyKind::SourceIp => Some(xxh64(conn.peer.ip().to_string().as_bytes(), 0)),
            HashPolicyKind::QueryParameter(name) => info.path.split_once('?').and_then(|(_, q)| {
                q.split('&').find_map(|kv| {
                    let (k, v) = kv.split_once('=').unwrap_or((kv, ""));
                    (k == name).then(|| xxh64(v.as_bytes(), 0))
                })
            }),
        };
        if let Some(h) = h {
            hash = Some(match hash {
                Some(prev) => prev.rotate_left(1) ^ h,
                None => h,
            });
            if p.terminal {
                break;
            }
        }
    }
    hash
}

fn cookie<'a>(h: &'a HeaderMap, name: &str) -> Option<&'a str> {
    h.get_all(http::header::COOKIE)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(';'))
        .find_map(|kv| {
            let (k, v) = kv.trim().split_once('=')?;
            (k == name).then_some(v)
        })
}

fn redirect_location(r: &Redirect, route: &Route, info: &StreamInfo, h: &HeaderMap) -> String {
    let orig_scheme = h
        .get(X_FORWARDED_PROTO)
        .and_then(|v| v.to_str().ok())
        .unwrap_or(info.scheme)
        .to_string();
    let scheme = r.scheme.clone().unwrap_or_else(|| orig_scheme.clone());
    let mut host = match &r.host {
        Some(h) => h.clone(),
        None => {
            // Envoy drops the request host's port when it is the default port of the
            // original scheme and the scheme changes.
            let bare = ferry_config::route::strip_port(&info.authority);
            let port = &info.authority[bare.len()..];
            let default_port = if orig_scheme == "https" {
                ":443"
            } else {
                ":80"
            };
            if r.scheme.is_some() && scheme != orig_scheme && port == default_port {
                bare.to_string()
            } else {
                info.authority.clone()
            }
        }
    };
    if let Some(port) = r.port {
        host = format!("{}:{port}", ferry_config::route::strip_port(&host));
    }
    let (path, query) = match info.path.find('?') {
        Some(i) => (&info.path[..i], &info.path[i..]),
        None => (info.path.as_str(), ""),
    };
    let query = if r.strip_query { "" } else { query };
    let new_path = match &r.path {
        RedirectPath::Keep => format!("{path}{query}"),
        RedirectPath::Path(p) => {
            if p.contains('?') || query.is_empty() {
                p.clone()
            } else {
                format!("{p}{query}")
            }
        }
        RedirectPath::PrefixRewrite(pre) => {
            let matched = match &route.matcher.path {
                PathMatch::Prefix(p) | PathMatch::SeparatedPrefix(p) => p.len().min(path.len()),
                PathMatch::Exact(_) | PathMatch::Regex(_) => path.len(),
            };
            format!("{pre}{}{query}", &path[matched..])
        }
        RedirectPath::Regex(re, sub) => format!("{}{query}", re.replace_all(path, sub.as_str())),
    };
    format!("{scheme}://{host}{new_path}")
}

/// A direct response or redirect: the route's response header mutations, then the
/// headers every response gets.
fn finish_direct(
    hcm: &HcmRuntime,
    mut info: StreamInfo,
    request_headers: &HeaderMap,
    levels: [Option<&ferry_config::HeaderMutations>; 4],
    mut resp: Response<Body>,
    start: Instant,
    tap: Arc<RequestTap>,
) -> Response<Body> {
    if hcm.keep_request_headers {
        info.request_headers = request_headers.clone();
    }
    headers::apply_all(levels, Side::Response, resp.headers_mut(), &info);
    info.response_code_details = Some("direct_response");
    finish_response(hcm, info, resp, start, tap)
}

/// Answers locally with Envoy's status, body and flag.
#[allow(clippy::too_many_arguments)]
fn finish_local(
    hcm: &HcmRuntime,
    mut info: StreamInfo,
    request_headers: &HeaderMap,
    levels: [Option<&ferry_config::HeaderMutations>; 4],
    reason: LocalReason,
    failure: Option<String>,
    start: Instant,
    tap: Arc<RequestTap>,
) -> Response<Body> {
    info.upstream_failure = failure;
    let stats = &hcm.stats;
    match reason {
        LocalReason::MaxStreamDuration => stats.downstream_rq_max_duration_reached.inc(),
        LocalReason::NoRoute => stats.no_route.inc(),
        LocalReason::NoCluster(_) => stats.no_cluster.inc(),
        LocalReason::RequestTimeout => stats.downstream_rq_timeout.inc(),
        LocalReason::StreamIdleTimeout { .. } => stats.downstream_rq_idle_timeout.inc(),
        _ => {}
    }
    let mut resp = if info.is_grpc && reason == LocalReason::MaxStreamDuration {
        // DEADLINE_EXCEEDED, as Envoy answers an expired gRPC stream.
        local_reply::grpc_response_with_code(4, reason.body())
    } else if info.is_grpc {
        local_reply::grpc_response(reason.status(), reason.body())
    } else {
        local_reply::response(
            reason.status(),
            reason.body().map(|b| Bytes::from_static(b.as_bytes())),
        )
    };
    if let Some(f) = reason.flag() {
        info.response_flags.set(f);
    }
    info.response_code_details = Some(reason.details());
    if hcm.keep_request_headers && info.request_headers.is_empty() {
        info.request_headers = request_headers.clone();
    }
    headers::apply_all(levels, Side::Response, resp.headers_mut(), &info);
    if reason == LocalReason::Overflow {
        resp.headers_mut().insert(
            HeaderName::from_static("x-envoy-overloaded"),
            HeaderValue::from_static("true"),
        );
    }
    if reason == LocalReason::BadRequest {
        // A protocol error: the connection is not reused (Envoy closes it).
        resp.headers_mut()
            .insert(http::header::CONNECTION, HeaderValue::from_static("close"));
    }
    finish_response(hcm, info, resp, start, tap)
}

/// Answers with an HTTP filter's local reply (fault abort, rate limit, health check).
fn finish_filter_reply(
    hcm: &HcmRuntime,
    mut info: StreamInfo,
    request_headers: &HeaderMap,
    reply: FilterReply,
    start: Instant,
    tap: Arc<RequestTap>,
) -> Response<Body> {
    let body = reply.body.as_deref();
    let mut resp = match (info.is_grpc, reply.grpc_status) {
        (true, Some(code)) => local_reply::grpc_response_with_code(code, body),
        (true, None) => local_reply::grpc_response(reply.status, body),
        (false, _) => local_reply::response(
            reply.status,
            body.map(|b| Bytes::copy_from_slice(b.as_bytes())),
        ),
    };
    if let Some(f) = reply.flag {
        info.response_flags.set(f);
    }
    info.response_code_details = Some(reply.details);
    if hcm.keep_request_headers {
        info.request_headers = request_headers.clone();
    }
    for (name, value) in reply.headers {
        resp.headers_mut().append(name, value);
    }
    finish_response(hcm, info, resp, start, tap)
}

/// Adds the headers every response gets and wraps the body for the access log.
fn finish_response(
    hcm: &HcmRuntime,
    mut info: StreamInfo,
    mut resp: Response<Body>,
    start: Instant,
    tap: Arc<RequestTap>,
) -> Response<Body> {
    let cfg = &hcm.config;
    let h = resp.headers_mut();
    match cfg.server_header {
        ServerHeader::Overwrite => {
            h.insert(http::header::SERVER, cfg.server_name.clone());
        }
        ServerHeader::AppendIfAbsent => {
            if !h.contains_key(http::header::SERVER) {
                h.insert(http::header::SERVER, cfg.server_name.clone());
            }
        }
        ServerHeader::PassThrough => {}
    }
    if let Some(via) = &cfg.via {
        append_via(h, via);
    }
    if cfg.always_set_request_id_in_response {
        if let Some(id) = &info.request_id {
            h.insert(HeaderName::from_static(X_REQUEST_ID), id.clone());
        }
    }
    info.response_code = Some(resp.status().as_u16());
    info.first_byte_sent = Some(start.elapsed());
    if hcm.loggers.is_empty() && info.span.is_none() {
        return resp;
    }
    if !hcm.loggers.is_empty() {
        info.response_headers = resp.headers().clone();
    }
    let (parts, body) = resp.into_parts();
    let log = LogOnEnd {
        info,
        tracer: hcm.tracer.clone(),
        loggers: hcm.loggers.clone(),
        start,
        tap,
    };
    Response::from_parts(parts, LoggedResponse::new(body, Some(log)).boxed())
}

fn append_via(h: &mut HeaderMap, via: &HeaderValue) {
    let value = match headers::joined(h, "via") {
        Some(existing) => format!("{existing}, {}", via.to_str().unwrap_or_default()),
        None => via.to_str().unwrap_or_default().to_string(),
    };
    if let Ok(v) = HeaderValue::from_str(&value) {
        h.insert(http::header::VIA, v);
    }
}

/// The outcome of waiting for upstream response headers.
enum Waited {
    Response(Result<http::Response<Body>, ferry_upstream::UpstreamError>),
    Timeout(LocalReason),
}

/// Waits for the upstream's response headers, bounded by Envoy's three timers: the
/// route timeout (504 UT; it runs from the end of the request), the stream idle timeout
/// (SI; request body frames count as activity) and the HCM request timeout (408 while
/// the request is incomplete). Returns the route deadline, once armed, for the body.
async fn wait_for_headers(
    sent: impl std::future::Future<Output = Result<http::Response<Body>, ferry_upstream::UpstreamError>>,
    route_timeout: Option<std::time::Duration>,
    idle: Option<std::time::Duration>,
    request_timeout: Option<std::time::Duration>,
    tap: &RequestTap,
    start: Instant,
) -> (Waited, Option<tokio::time::Instant>) {
    use std::sync::atomic::Ordering;
    let start_t = tokio::time::Instant::from_std(start);
    tokio::pin!(sent);
    loop {
        let completed = tap.completed_at(start).map(tokio::time::Instant::from_std);
        let route_at = route_timeout.zip(completed).map(|(t, done)| done + t);
        let idle_at = idle.map(|d| {
            let last = tap.last_activity_nanos.load(Ordering::Relaxed);
            start_t + std::time::Duration::from_nanos(last) + d
        });
        let request_at = request_timeout
            .filter(|_| completed.is_none())
            .map(|t| start_t + t);
        let now = tokio::time::Instant::now();
        tokio::select! {
            r = &mut sent => return (Waited::Response(r), route_at),
            _ = tokio::time::sleep_until(route_at.unwrap_or(now)), if route_at.is_some() => {
                return (Waited::Timeout(LocalReason::UpstreamTimeout), route_at);
            }
            _ = tokio::time::sleep_until(idle_at.unwrap_or(now)), if idle_at.is_some() => {
                // Body frames may have arrived meanwhile: re-check before giving up.
                if idle_at.is_some_and(|_| {
                    let last = tap.last_activity_nanos.load(Ordering::Relaxed);
                    idle.is_some_and(|d| start_t + std::time::Duration::from_nanos(last) + d <= tokio::time::Instant::now())
                }) {
                    let request_complete = tap.completed_at(start).is_some();
                    return (Waited::Timeout(LocalReason::StreamIdleTimeout { request_complete }), route_at);
                }
            }
            _ = tokio::time::sleep_until(request_at.unwrap_or(now)), if request_at.is_some() => {
                if tap.completed_at(start).is_none() {
                    return (Waited::Timeout(LocalReason::RequestTimeout), route_at);
                }
            }
            // The request just ended: arm the route timeout.
            _ = tap.completed.notified(), if completed.is_none() => {}
        }
    }
}

/// The downstream remote address as Envoy determines it: the peer when
/// `use_remote_address` is set; otherwise the `x-forwarded-for` entry
/// `xff_num_trusted_hops` from the right (the peer when there is none).
fn trusted_client_address(
    cfg: &ferry_config::hcm::HttpConnectionManager,
    h: &HeaderMap,
    peer: std::net::SocketAddr,
) -> std::net::SocketAddr {
    if cfg.use_remote_address {
        return peer;
    }
    let Some(xff) = headers::joined(h, X_FORWARDED_FOR) else {
        return peer;
    };
    let entries: Vec<&str> = xff.split(',').map(str::trim).collect();
    let hops = cfg.xff_num_trusted_hops as usize;
    entries
        .len()
        .checked_sub(1 + hops)
        .and_then(|i| entries[i].parse::<std::net::IpAddr>().ok())
        .map(|ip| std::net::SocketAddr::new(ip, 0))
        .unwrap_or(peer)
}
