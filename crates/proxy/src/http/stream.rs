//! One HTTP stream through a connection manager (Envoy's `ActiveStream`), top to
//! bottom: the connection manager's request headers, the stream's record
//! ([`StreamInfo`]), the route match, the HTTP filters' request hooks
//! ([`FilterChain`]), the tracing decision, the router (the terminal step), the
//! filters' response hooks, and the headers every response gets; the response body
//! then carries the access log, the trace span and the stream's accounting to its end.

use crate::http::body::{CountedRequest, Guarded, LogOnEnd, LoggedResponse, RequestTap};
use crate::http::conn_manager::{ActiveStream, HcmRuntime};
use crate::http::connection::ConnInfo;
use crate::http::filter_manager::{FilterChain, FilterRequest, RouteFilterConfigs};
use crate::http::headers;
use crate::http::request_headers::{self, X_REQUEST_ID};
use crate::http::route_match::{self, Found, RequestView};
use crate::http::router;
use crate::stream_info::StreamInfo;
use ferry_config::hcm::ServerHeader;
use ferry_config::route::{Action, ClusterSpecifier};
use ferry_upstream::Body;
use http::{HeaderName, Request, Response};
use http_body_util::BodyExt;
use std::sync::Arc;
use std::time::{Instant, SystemTime};

/// Handles one request to its response headers; the body streams after.
pub async fn handle(
    hcm: Arc<HcmRuntime>,
    conn: Arc<ConnInfo>,
    req: Request<hyper::body::Incoming>,
) -> Response<Body> {
    let start = Instant::now();
    let http2 = req.version() == http::Version::HTTP_2;
    conn.count_protocol(http2, &hcm.stats);
    let counted = RequestStats::open(&hcm, http2, start);
    // A stream counts as in flight until its response body ends: for the HTTP/2 idle
    // timeout and for the HTTP/1.1 framing guard's refusals.
    let guard = conn.open_stream(http2);
    let mut resp = respond(&hcm, &conn, req, start).await;
    if hcm.drain_close() {
        // The server is health check failed (Envoy's drain close of a DEFAULT
        // listener): HTTP/1.1 closes after this response, HTTP/2 sends its GOAWAY.
        conn.start_draining();
        if http2 {
            conn.go_away.notify_one();
        }
    }
    if !http2 && conn.is_draining() {
        resp.headers_mut().insert(
            http::header::CONNECTION,
            http::HeaderValue::from_static("close"),
        );
    }
    let status = resp.status().as_u16();
    hcm.stats.response_class(status);
    hcm.listener_stats.response_class(status);
    resp.map(|body| Guarded::new(body, (guard, counted)).boxed())
}

/// The stream from its request to its finished response (headers).
async fn respond(
    hcm: &Arc<HcmRuntime>,
    conn: &Arc<ConnInfo>,
    mut req: Request<hyper::body::Incoming>,
    start: Instant,
) -> Response<Body> {
    let tap = Arc::new(RequestTap::default());
    conn.shared.request_started();
    // A request without a body is complete with its headers.
    if http_body::Body::is_end_stream(req.body()) {
        tap.complete(start);
    }
    request_headers::mutate(hcm, conn, req.headers_mut());
    let info = stream_info(hcm, conn, &req);
    // The route table this stream keeps, whatever replaces it meanwhile.
    let table = hcm.routes.load_full();
    let mut stream = ActiveStream {
        hcm,
        conn,
        info,
        tap,
        start,
        keep_request_headers: hcm.keeps_request_headers(&table),
    };
    let rc = &table.config;
    let found = route_match::find(rc, &RequestView::of(&stream.info, req.headers()));
    // The HTTP filters, with the matched route's configs for them.
    let chain = (!hcm.filters.is_empty()).then(|| {
        let target = found
            .as_ref()
            .and_then(|f| f.route.map(|(ri, _)| (f.vh_index, ri)))
            .and_then(|(vi, ri)| table.target(vi, ri));
        let none = RouteFilterConfigs::default();
        FilterChain::new(&hcm.filters, target.map_or(&none, |t| &t.filters))
    });
    let reply = match &chain {
        Some(chain) => request_filters(&mut stream, chain, &mut req, found.as_ref()).await,
        None => None,
    };
    // The tracing decision, once the filters have said whether this is a health check;
    // the span context goes upstream with the request's headers.
    if let Some(t) = &hcm.tracer {
        let decorator = found
            .as_ref()
            .and_then(|f| f.route)
            .and_then(|(_, r)| r.decorator.as_ref());
        t.start(
            req.headers_mut(),
            &mut stream.info,
            &hcm.stats,
            !hcm.loggers.is_empty(),
            decorator,
        );
    }
    if stream.keep_request_headers {
        stream.info.request_headers = req.headers().clone();
    }
    let mut resp = match reply {
        Some(reply) => crate::http::local_reply::filter_reply(reply, &mut stream.info),
        None => {
            let (parts, body) = req.into_parts();
            let body = CountedRequest::new(body, stream.tap.clone(), start).boxed();
            let body = match &chain {
                Some(c) => c.request_body(body, conn.buffer_limit as usize),
                None => body,
            };
            let req = Request::from_parts(parts, body);
            router::route(&mut stream, req, &table, found).await
        }
    };
    if let Some(chain) = &chain {
        chain.response_headers(&mut resp, &mut stream.info).await;
        // Through the response data hooks; the stream's filters (their per-stream
        // state) live as long as the body.
        let limit = conn.buffer_limit as usize;
        resp = resp.map(|body| chain.response_body(body, limit));
    }
    finish(stream, resp, chain)
}

/// The stream's record as the request arrives.
fn stream_info<B>(hcm: &HcmRuntime, conn: &ConnInfo, req: &Request<B>) -> StreamInfo {
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
    let h = req.headers();
    StreamInfo {
        start_time: Some(SystemTime::now()),
        method: req.method().as_str().to_string(),
        path,
        authority,
        scheme: "http",
        protocol,
        downstream_remote: Some(request_headers::trusted_client_address(
            &hcm.config,
            h,
            conn.peer,
        )),
        downstream_direct_remote: Some(conn.peer),
        downstream_local: Some(conn.local),
        connection_id: conn.id,
        request_id: h.get(X_REQUEST_ID).cloned(),
        is_grpc: h
            .get(http::header::CONTENT_TYPE)
            .is_some_and(|v| v.as_bytes().starts_with(b"application/grpc")),
        ..Default::default()
    }
}

/// Runs the filters' request header hooks; `Some` when one answers locally.
async fn request_filters<B>(
    stream: &mut ActiveStream<'_>,
    chain: &FilterChain,
    req: &mut Request<B>,
    found: Option<&Found<'_>>,
) -> Option<crate::http::local_reply::LocalReply> {
    let action = found
        .and_then(|f| f.route)
        .and_then(|(_, route)| match &route.action {
            Action::Route(ra) => Some(&**ra),
            _ => None,
        });
    let cluster = action.and_then(|ra| match &ra.cluster {
        ClusterSpecifier::Name(n) => Some(n.as_str()),
        _ => None,
    });
    let info = &mut stream.info;
    let (path, method, authority) = (
        info.path.clone(),
        info.method.clone(),
        info.authority.clone(),
    );
    let mut rq = FilterRequest {
        headers: req.headers_mut(),
        path: &path,
        method: &method,
        authority: &authority,
        cluster,
        rate_limits: action
            .map(|ra| ra.rate_limits.as_slice())
            .unwrap_or_default(),
        source_cluster: &stream.hcm.node_cluster,
        conn: stream.conn,
        info,
    };
    chain.request_headers(&mut rq).await
}

/// Adds the headers every response gets (`server`, `via`, `x-request-id`) and wraps
/// the body for the access log and the trace span.
fn finish(
    stream: ActiveStream<'_>,
    mut resp: Response<Body>,
    filters: Option<FilterChain>,
) -> Response<Body> {
    let ActiveStream {
        hcm,
        mut info,
        tap,
        start,
        ..
    } = stream;
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
        headers::append_via(h, via);
    }
    if cfg.always_set_request_id_in_response {
        if let Some(id) = &info.request_id {
            h.insert(HeaderName::from_static(X_REQUEST_ID), id.clone());
        }
    }
    info.response_code = Some(resp.status().as_u16());
    info.first_byte_sent = Some(start.elapsed());
    // Nothing reads the record when the stream ends: no access log, span or filter.
    if hcm.loggers.is_empty() && info.span.is_none() && filters.is_none() {
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
        filters,
    };
    Response::from_parts(parts, LoggedResponse::new(body, Some(log)).boxed())
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
