//! The filter manager's contract: every status of every phase, local replies from each
//! header phase, per-route configs and disabled filters, body pacing in paused time.

#![allow(clippy::unwrap_used, clippy::expect_used)]

use super::*;
use ferry_upstream::BoxError;
use http_body_util::{BodyExt, Full, StreamBody};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

/// What the test filters record, shared with the test.
#[derive(Default)]
struct Log(parking_lot::Mutex<Vec<String>>);

impl Log {
    fn push(&self, s: impl Into<String>) {
        self.0.lock().push(s.into());
    }
    fn take(&self) -> Vec<String> {
        std::mem::take(&mut *self.0.lock())
    }
}

/// A filter whose behaviour each test sets.
#[derive(Clone)]
struct Script {
    name: &'static str,
    log: Arc<Log>,
    request: fn() -> HeadersStatus,
    response: fn() -> HeadersStatus,
    /// What `on_*_data` do: a function of (call number, data) → status.
    data: fn(usize, &mut Bytes) -> DataStatus,
    hooks: Hooks,
}

impl Script {
    fn new(name: &'static str, log: &Arc<Log>) -> Script {
        Script {
            name,
            log: log.clone(),
            request: || HeadersStatus::Continue,
            response: || HeadersStatus::Continue,
            data: |_, _| DataStatus::Continue,
            hooks: Hooks::NONE,
        }
    }
}

struct ScriptStream {
    s: Script,
    per_route: Option<String>,
    calls: usize,
}

impl HttpFilter for Script {
    fn name(&self) -> &str {
        self.name
    }

    fn stream(&self, per_route: Option<&PerRouteConfig>) -> Box<dyn StreamFilter> {
        let per_route = per_route.and_then(|c| c.clone().downcast::<String>().ok());
        Box::new(ScriptStream {
            s: self.clone(),
            per_route: per_route.map(|s| (*s).clone()),
            calls: 0,
        })
    }

    fn route_config(
        &self,
        config: &ferry_config::filters::FilterConfig,
        _env: &Env<'_>,
    ) -> Option<PerRouteConfig> {
        // A route's config for the script is a marker string.
        config
            .downcast_ref::<&str>()
            .map(|_| Arc::new(format!("{}-route", self.name)) as PerRouteConfig)
    }
}

impl StreamFilter for ScriptStream {
    fn hooks(&self) -> Hooks {
        self.s.hooks
    }

    fn on_request_headers(&mut self, rq: &mut FilterRequest<'_>) -> HeadersStatus {
        let cfg = self.per_route.as_deref().unwrap_or("own");
        self.s.log.push(format!("{} request {cfg}", self.s.name));
        rq.headers
            .append("x-seen", HeaderValue::from_static(self.s.name));
        (self.s.request)()
    }

    fn on_request_data(&mut self, data: &mut Bytes, end_stream: bool) -> DataStatus {
        self.s.log.push(format!(
            "{} request data {} {end_stream}",
            self.s.name,
            data.len()
        ));
        self.calls += 1;
        (self.s.data)(self.calls, data)
    }

    fn on_request_trailers(&mut self, trailers: &mut HeaderMap) -> TrailersStatus {
        trailers.append("x-trailer", HeaderValue::from_static(self.s.name));
        TrailersStatus::Continue
    }

    fn on_response_headers(&mut self, rs: &mut FilterResponse<'_>) -> HeadersStatus {
        self.s
            .log
            .push(format!("{} response {}", self.s.name, rs.status.as_u16()));
        (self.s.response)()
    }

    fn on_response_data(&mut self, data: &mut Bytes, end_stream: bool) -> DataStatus {
        self.s.log.push(format!(
            "{} response data {} {end_stream}",
            self.s.name,
            data.len()
        ));
        self.calls += 1;
        (self.s.data)(self.calls, data)
    }

    fn on_response_trailers(&mut self, trailers: &mut HeaderMap) -> TrailersStatus {
        trailers.append("x-trailer", HeaderValue::from_static(self.s.name));
        TrailersStatus::Continue
    }

    fn on_log(&mut self, info: &StreamInfo) {
        self.s.log.push(format!(
            "{} log {}",
            self.s.name,
            info.response_code.unwrap_or(0)
        ));
    }
}

use http::HeaderValue;

fn chain(filters: &[Script]) -> FilterChain {
    let filters: Vec<Arc<dyn HttpFilter>> = filters
        .iter()
        .map(|f| Arc::new(f.clone()) as Arc<dyn HttpFilter>)
        .collect();
    FilterChain::new(&filters, &RouteFilterConfigs::EMPTY)
}

/// Runs the request header hooks; returns the reply's status, if any, and the
/// `x-seen` headers the filters left.
async fn request(chain: &FilterChain) -> (Option<u16>, Vec<String>) {
    let (reply, headers) = crate::testing::request_headers(chain).await;
    let seen = headers
        .get_all("x-seen")
        .iter()
        .map(|v| v.to_str().unwrap().to_string())
        .collect();
    (reply.map(|r| r.status.as_u16()), seen)
}

fn teapot() -> HeadersStatus {
    HeadersStatus::LocalReply(LocalReply {
        status: http::StatusCode::IM_A_TEAPOT,
        body: None,
        grpc_status: None,
        flag: Some(ferry_config::ResponseFlag::FaultInjected),
        details: "teapot",
        headers: Vec::new(),
    })
}

#[tokio::test]
async fn request_headers_run_in_order_and_a_local_reply_stops_the_chain() {
    let log = Arc::new(Log::default());
    let (a, mut b, c) = (
        Script::new("a", &log),
        Script::new("b", &log),
        Script::new("c", &log),
    );
    assert_eq!(
        request(&chain(&[a.clone(), b.clone(), c.clone()])).await,
        (None, vec!["a".into(), "b".into(), "c".into()])
    );
    b.request = teapot;
    assert_eq!(
        request(&chain(&[a, b, c])).await,
        (Some(418), vec!["a".into(), "b".into()])
    );
    assert_eq!(
        log.take(),
        [
            "a request own",
            "b request own",
            "c request own",
            "a request own",
            "b request own"
        ]
    );
}

#[tokio::test(start_paused = true)]
async fn stop_until_resumes_the_chain_or_replies_after_the_wait() {
    let log = Arc::new(Log::default());
    let mut a = Script::new("a", &log);
    a.request = || {
        HeadersStatus::StopUntil(Box::pin(async {
            tokio::time::sleep(Duration::from_secs(5)).await;
            HeadersStatus::Continue
        }))
    };
    let b = Script::new("b", &log);
    let start = tokio::time::Instant::now();
    assert_eq!(
        request(&chain(&[a.clone(), b.clone()])).await,
        (None, vec!["a".into(), "b".into()])
    );
    assert_eq!(start.elapsed(), Duration::from_secs(5));
    a.request = || {
        HeadersStatus::StopUntil(Box::pin(async {
            tokio::time::sleep(Duration::from_secs(1)).await;
            teapot()
        }))
    };
    assert_eq!(
        request(&chain(&[a, b])).await,
        (Some(418), vec!["a".into()])
    );
}

#[tokio::test]
async fn per_route_configs_are_handed_to_the_stream_and_disabled_filters_skipped() {
    use ferry_config::filters::PerRoute;
    let log = Arc::new(Log::default());
    let filters: Vec<Arc<dyn HttpFilter>> = vec![
        Arc::new(Script::new("a", &log)),
        Arc::new(Script::new("b", &log)),
        Arc::new(Script::new("c", &log)),
    ];
    let env = Env {
        stat_prefix: "t",
        stats: &ferry_stats::Store::default(),
        health_failed: Default::default(),
        node_cluster: "",
    };
    let fault = PerRoute::Config(Arc::new("per-route"));
    let route = RouteFilterConfigs::resolve(
        &filters,
        &[("b".into(), PerRoute::Disabled), ("c".into(), fault)],
        &env,
    );
    let chain = FilterChain::new(&filters, &route);
    assert_eq!(request(&chain).await, (None, vec!["a".into(), "c".into()]));
    assert_eq!(log.take(), ["a request own", "c request c-route"]);
}

fn response(status: u16) -> http::Response<Body> {
    let mut r = http::Response::new(
        Full::new(Bytes::from_static(b"x"))
            .map_err(|n| match n {})
            .boxed(),
    );
    *r.status_mut() = http::StatusCode::from_u16(status).unwrap();
    r
}

#[tokio::test]
async fn response_headers_run_in_reverse_and_a_local_reply_replaces_the_response() {
    let log = Arc::new(Log::default());
    let a = Script::new("a", &log);
    let mut b = Script::new("b", &log);
    let c = Script::new("c", &log);
    let mut info = StreamInfo::default();
    let mut resp = response(200);
    chain(&[a.clone(), b.clone(), c.clone()])
        .response_headers(&mut resp, &mut info)
        .await;
    assert_eq!(
        log.take(),
        ["c response 200", "b response 200", "a response 200"]
    );
    b.response = teapot;
    chain(&[a, b, c])
        .response_headers(&mut resp, &mut info)
        .await;
    // The filter before b (in response order) sees b's reply.
    assert_eq!(
        log.take(),
        ["c response 200", "b response 200", "a response 418"]
    );
    assert_eq!(resp.status(), 418);
    assert_eq!(info.response_code_details, Some("teapot"));
    assert!(info
        .response_flags
        .has(ferry_config::ResponseFlag::FaultInjected));
}

/// A body of these chunks, then these trailers.
fn body(chunks: &[&'static str], trailers: bool) -> Body {
    let mut frames: Vec<Result<http_body::Frame<Bytes>, BoxError>> = chunks
        .iter()
        .map(|c| Ok(http_body::Frame::data(Bytes::from_static(c.as_bytes()))))
        .collect();
    if trailers {
        frames.push(Ok(http_body::Frame::trailers(HeaderMap::new())));
    }
    StreamBody::new(futures_util::stream::iter(frames)).boxed()
}

/// Every frame of `body`: data as text, trailers as `trailers:<x-trailer values>`.
async fn frames(mut body: Body) -> Result<Vec<String>, BoxError> {
    let mut out = Vec::new();
    while let Some(f) = body.frame().await {
        let f = f?;
        match f.into_data() {
            Ok(d) => out.push(String::from_utf8(d.to_vec()).unwrap()),
            Err(f) => {
                let t = f.into_trailers().unwrap();
                let names: Vec<&str> = t
                    .get_all("x-trailer")
                    .iter()
                    .map(|v| v.to_str().unwrap())
                    .collect();
                out.push(format!("trailers:{}", names.join(",")));
            }
        }
    }
    Ok(out)
}

#[tokio::test]
async fn body_hooks_run_only_when_a_stream_filter_asks() {
    let log = Arc::new(Log::default());
    let mut a = Script::new("a", &log);
    a.data = |_, d| {
        *d = Bytes::from(d.to_ascii_uppercase());
        DataStatus::Continue
    };
    // Without the hooks declared, nothing is called.
    let plain = chain(&[a.clone()]).response_body(body(&["ab"], true), 1024);
    assert_eq!(frames(plain).await.unwrap(), ["ab", "trailers:"]);
    assert!(log.take().is_empty());
    a.hooks = Hooks::RESPONSE_BODY.union(Hooks::REQUEST_BODY);
    let b = Script {
        hooks: Hooks::RESPONSE_BODY,
        ..Script::new("b", &log)
    };
    let resp = chain(&[a.clone(), b.clone()]).response_body(body(&["ab", "cd"], true), 1024);
    assert_eq!(frames(resp).await.unwrap(), ["AB", "CD", "trailers:b,a"]);
    assert_eq!(
        log.take(),
        [
            "b response data 2 false",
            "a response data 2 false",
            "b response data 2 false",
            "a response data 2 false"
        ]
    );
    // The request side runs in config order, and only filters that ask take part.
    let req = chain(&[a, b]).request_body(body(&["ab"], true), 1024);
    assert_eq!(frames(req).await.unwrap(), ["AB", "trailers:a,b"]);
}

#[tokio::test]
async fn stop_iteration_and_buffer_holds_data_until_the_filter_continues() {
    let log = Arc::new(Log::default());
    let mut a = Script::new("a", &log);
    a.hooks = Hooks::RESPONSE_BODY;
    // Buffers the first two chunks, lets the third go with them.
    a.data = |n, _| match n {
        1 | 2 => DataStatus::StopIterationAndBuffer,
        _ => DataStatus::Continue,
    };
    let resp = chain(&[a.clone()]).response_body(body(&["ab", "cd", "ef", "gh"], false), 1024);
    assert_eq!(frames(resp).await.unwrap(), ["abcdef", "gh"]);
    // Still buffering when the body ends: what is held goes out.
    a.data = |_, _| DataStatus::StopIterationAndBuffer;
    let resp = chain(&[a.clone()]).response_body(body(&["ab", "cd"], false), 1024);
    assert_eq!(frames(resp).await.unwrap(), ["abcd"]);
    // Still buffering when the trailers come: the data goes out first.
    let resp = chain(&[a.clone()]).response_body(body(&["ab", "cd"], true), 1024);
    assert_eq!(frames(resp).await.unwrap(), ["abcd", "trailers:a"]);
    // Past the limit the body fails.
    let resp = chain(&[a]).response_body(body(&["ab", "cd"], false), 3);
    let err = frames(resp).await.unwrap_err();
    assert!(err.to_string().contains("buffer limit (3 bytes)"), "{err}");
}

#[tokio::test(start_paused = true)]
async fn pace_passes_part_now_and_offers_the_rest_again_later() {
    static CALLS: AtomicUsize = AtomicUsize::new(0);
    let log = Arc::new(Log::default());
    let mut a = Script::new("a", &log);
    a.hooks = Hooks::RESPONSE_BODY;
    // Two bytes per second.
    a.data = |_, d| {
        CALLS.fetch_add(1, Ordering::Relaxed);
        let rest = d.split_off(2.min(d.len()));
        if rest.is_empty() {
            DataStatus::Continue
        } else {
            DataStatus::Pace {
                rest,
                at: tokio::time::Instant::now() + Duration::from_secs(1),
            }
        }
    };
    let b = Script {
        hooks: Hooks::RESPONSE_BODY,
        ..Script::new("b", &log)
    };
    let start = tokio::time::Instant::now();
    let mut resp = chain(&[b, a]).response_body(body(&["abcde"], true), 1024);
    let mut seen = Vec::new();
    while let Some(f) = resp.frame().await {
        let f = f.unwrap();
        let at = start.elapsed().as_secs();
        match f.into_data() {
            Ok(d) => seen.push(format!("{at}:{}", String::from_utf8(d.to_vec()).unwrap())),
            Err(_) => seen.push(format!("{at}:trailers")),
        }
    }
    assert_eq!(seen, ["0:ab", "1:cd", "2:e", "2:trailers"]);
    assert_eq!(CALLS.load(Ordering::Relaxed), 3);
    // The pacer is offered what it held back; the filter after it (in response
    // order: b is first in the chain) sees each part as it goes.
    assert_eq!(
        log.take(),
        [
            "a response data 5 false",
            "b response data 2 false",
            "a response data 3 false",
            "b response data 2 false",
            "a response data 1 false",
            "b response data 1 false"
        ]
    );
}

#[tokio::test]
async fn log_hooks_see_the_final_record() {
    let log = Arc::new(Log::default());
    let chain = chain(&[Script::new("a", &log), Script::new("b", &log)]);
    let info = StreamInfo {
        response_code: Some(503),
        ..Default::default()
    };
    chain.log(&info);
    assert_eq!(log.take(), ["a log 503", "b log 503"]);
}
