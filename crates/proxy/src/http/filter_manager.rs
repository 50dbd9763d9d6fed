//! The HTTP filter manager (Envoy's `FilterManager`): runs a connection manager's
//! `http_filters` over each stream, request side in config order, response side in
//! reverse, and knows nothing of what any filter does.
//!
//! A filter is built once per connection manager ([`HttpFilter`], Envoy's filter
//! factory) and makes a [`StreamFilter`] per stream, with the matched route's
//! per-filter config (`typed_per_filter_config`) already chosen by the manager. A
//! stream filter has one hook per phase, each with a default that lets the stream
//! through, and each returns an explicit status:
//!
//! | hook | statuses |
//! |---|---|
//! | [`StreamFilter::on_request_headers`], [`StreamFilter::on_response_headers`] | continue, stop until a future completes, or answer locally |
//! | [`StreamFilter::on_request_data`], [`StreamFilter::on_response_data`] | continue, stop and buffer, or pace (pass part now, the rest later) |
//! | [`StreamFilter::on_request_trailers`], [`StreamFilter::on_response_trailers`] | continue |
//! | [`StreamFilter::on_log`] | — (the stream has ended) |
//!
//! Bodies go through the data and trailer hooks ([`FilteredBody`]) only when a stream
//! filter asks for them once it has seen the request headers ([`Hooks`]), so
//! header-only filters cost nothing per frame (the response body still carries the
//! stream's filters, so that their state lives until it ends). Because the request body streams upstream while the response streams
//! downstream, the stream's filters sit behind one uncontended per-stream lock, taken
//! once per hook call.

use crate::http::connection::ConnInfo;
use crate::http::local_reply::LocalReply;
use crate::stream_info::StreamInfo;
use bytes::Bytes;
use ferry_upstream::Body;
use http::HeaderMap;
use parking_lot::Mutex;
use std::any::Any;
use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;

/// What filters are built with.
pub struct Env<'a> {
    /// The HCM's `stat_prefix`.
    pub stat_prefix: &'a str,
    /// The stats store.
    pub stats: &'a ferry_stats::Store,
    /// Set by admin `/healthcheck/fail`.
    pub health_failed: Arc<std::sync::atomic::AtomicBool>,
    /// `node.cluster`.
    pub node_cluster: &'a str,
}

/// A filter of a connection manager's `http_filters`, built once from its config.
pub trait HttpFilter: Send + Sync {
    /// `http_filters[].name`: routes name their per-filter configs by it.
    fn name(&self) -> &str;

    /// The filter of one stream; `per_route` is the matched route's config for this
    /// filter, as [`HttpFilter::route_config`] built it.
    fn stream(&self, per_route: Option<&PerRouteConfig>) -> Box<dyn StreamFilter>;

    /// Builds this filter's per-route config (once, with the route table). `None`:
    /// the route's entry is not for this filter.
    fn route_config(
        &self,
        config: &ferry_config::filters::FilterConfig,
        env: &Env<'_>,
    ) -> Option<PerRouteConfig> {
        let _ = (config, env);
        None
    }
}

/// A filter's per-route config, as the filter built it (it downcasts its own type).
pub type PerRouteConfig = Arc<dyn Any + Send + Sync>;

/// What a route says of each filter of the chain, by filter index (resolved once with
/// the route table, so that no request looks a filter config up by name).
#[derive(Clone, Default)]
pub struct RouteFilterConfigs(Option<Arc<[RouteFilterConfig]>>);

/// What a route says of one filter.
#[derive(Clone, Default)]
pub enum RouteFilterConfig {
    /// Nothing: the filter runs with its own config.
    #[default]
    Inherit,
    /// `disabled: true`: the filter does not run on this route.
    Disabled,
    /// The route's config for the filter.
    Config(PerRouteConfig),
}

impl RouteFilterConfigs {
    /// A route that says nothing of any filter.
    pub const EMPTY: RouteFilterConfigs = RouteFilterConfigs(None);

    /// Resolves `per_filter` (a route's `typed_per_filter_config`, by filter name)
    /// against the chain.
    pub fn resolve(
        filters: &[Arc<dyn HttpFilter>],
        per_filter: &[(String, ferry_config::filters::PerRoute)],
        env: &Env<'_>,
    ) -> RouteFilterConfigs {
        if per_filter.is_empty() {
            return RouteFilterConfigs::default();
        }
        let configs: Vec<RouteFilterConfig> = filters
            .iter()
            .map(|f| match per_filter.iter().find(|(n, _)| n == f.name()) {
                None => RouteFilterConfig::Inherit,
                Some((_, ferry_config::filters::PerRoute::Disabled)) => RouteFilterConfig::Disabled,
                Some((_, ferry_config::filters::PerRoute::Config(c))) => f
                    .route_config(c, env)
                    .map_or(RouteFilterConfig::Inherit, RouteFilterConfig::Config),
            })
            .collect();
        RouteFilterConfigs(Some(configs.into()))
    }

    fn get(&self, index: usize) -> &RouteFilterConfig {
        static INHERIT: RouteFilterConfig = RouteFilterConfig::Inherit;
        self.0
            .as_ref()
            .and_then(|c| c.get(index))
            .unwrap_or(&INHERIT)
    }
}

impl std::fmt::Debug for RouteFilterConfigs {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let names: Vec<&str> = self
            .0
            .iter()
            .flat_map(|c| c.iter())
            .map(|c| match c {
                RouteFilterConfig::Inherit => "inherit",
                RouteFilterConfig::Disabled => "disabled",
                RouteFilterConfig::Config(_) => "config",
            })
            .collect();
        f.debug_tuple("RouteFilterConfigs").field(&names).finish()
    }
}

/// The body and trailer hooks a filter uses (header hooks always run).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Hooks(u8);

impl Hooks {
    /// Header hooks only.
    pub const NONE: Hooks = Hooks(0);
    /// [`StreamFilter::on_request_data`] and [`StreamFilter::on_request_trailers`].
    pub const REQUEST_BODY: Hooks = Hooks(1);
    /// [`StreamFilter::on_response_data`] and [`StreamFilter::on_response_trailers`].
    pub const RESPONSE_BODY: Hooks = Hooks(2);

    /// Both sets.
    pub const fn union(self, other: Hooks) -> Hooks {
        Hooks(self.0 | other.0)
    }

    /// Whether every hook of `other` is in `self`.
    pub const fn has(self, other: Hooks) -> bool {
        self.0 & other.0 == other.0 && other.0 != 0
    }
}

/// What a header hook decided.
pub enum HeadersStatus {
    /// Go on to the next filter.
    Continue,
    /// Stop iteration until the future completes, then act on what it returns
    /// (Envoy's `StopIteration` followed by `continueDecoding()` or a local reply): a
    /// fault delay.
    StopUntil(Pin<Box<dyn Future<Output = HeadersStatus> + Send>>),
    /// Answer now: on the request side the router is not reached; on the response side
    /// the response is replaced (the filters after this one see the reply).
    LocalReply(LocalReply),
}

impl std::fmt::Debug for HeadersStatus {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            HeadersStatus::Continue => f.write_str("Continue"),
            HeadersStatus::StopUntil(_) => f.write_str("StopUntil"),
            HeadersStatus::LocalReply(r) => f.debug_tuple("LocalReply").field(r).finish(),
        }
    }
}

/// What a data hook decided.
#[derive(Debug)]
pub enum DataStatus {
    /// Pass the data (as the hook left it) on to the next filter.
    Continue,
    /// Keep this data, and what follows, until a later call returns something else
    /// (Envoy's `StopIterationAndBuffer`): a filter that needs the whole body. The
    /// buffer is bounded by the listener's `per_connection_buffer_limit_bytes`; past
    /// it the stream is reset.
    StopIterationAndBuffer,
    /// Pass on the data as the hook left it now, and hand `rest` back to this filter
    /// (as new data) at `at` (Envoy's `StopIterationNoBuffer` with a timer that injects
    /// the rest): a throughput limit.
    Pace {
        /// The data held back.
        rest: Bytes,
        /// When to offer it again.
        at: tokio::time::Instant,
    },
}

/// What a trailers hook decided.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum TrailersStatus {
    /// Pass the trailers on.
    Continue,
}

/// One filter's view of one stream. Every hook has a default that lets the stream
/// through untouched.
pub trait StreamFilter: Send {
    /// The body and trailer hooks this stream needs, asked once the request headers
    /// were seen (so that the manager wraps bodies only for streams that need it).
    fn hooks(&self) -> Hooks {
        Hooks::NONE
    }

    /// The request headers, after the route is matched (so per-route configs apply).
    fn on_request_headers(&mut self, rq: &mut FilterRequest<'_>) -> HeadersStatus {
        let _ = rq;
        HeadersStatus::Continue
    }

    /// A chunk of the request body as it streams upstream (`end_stream`: the last).
    /// Called only when the filter declares [`Hooks::REQUEST_BODY`].
    fn on_request_data(&mut self, data: &mut Bytes, end_stream: bool) -> DataStatus {
        let _ = (data, end_stream);
        DataStatus::Continue
    }

    /// The request trailers ([`Hooks::REQUEST_BODY`]).
    fn on_request_trailers(&mut self, trailers: &mut HeaderMap) -> TrailersStatus {
        let _ = trailers;
        TrailersStatus::Continue
    }

    /// The response headers, upstream's or a local reply's.
    fn on_response_headers(&mut self, rs: &mut FilterResponse<'_>) -> HeadersStatus {
        let _ = rs;
        HeadersStatus::Continue
    }

    /// A chunk of the response body ([`Hooks::RESPONSE_BODY`]).
    fn on_response_data(&mut self, data: &mut Bytes, end_stream: bool) -> DataStatus {
        let _ = (data, end_stream);
        DataStatus::Continue
    }

    /// The response trailers ([`Hooks::RESPONSE_BODY`]).
    fn on_response_trailers(&mut self, trailers: &mut HeaderMap) -> TrailersStatus {
        let _ = trailers;
        TrailersStatus::Continue
    }

    /// The stream has ended; `info` is final (called before the access logs write).
    fn on_log(&mut self, info: &StreamInfo) {
        let _ = info;
    }
}

/// The request as filters see it.
pub struct FilterRequest<'a> {
    /// Request headers (filters may change them).
    pub headers: &'a mut HeaderMap,
    /// `:path`.
    pub path: &'a str,
    /// `:method`.
    pub method: &'a str,
    /// `:authority`, lower-cased.
    pub authority: &'a str,
    /// The matched route's cluster name, when it names one.
    pub cluster: Option<&'a str>,
    /// The matched route's `rate_limits` (descriptor rules).
    pub rate_limits: &'a [ferry_config::filters::rate_limit_actions::RateLimitRule],
    /// This proxy's service cluster (`node.cluster`), for `source_cluster` descriptors.
    pub source_cluster: &'a str,
    /// The connection.
    pub conn: &'a ConnInfo,
    /// The stream's record (filters add response flags).
    pub info: &'a mut StreamInfo,
}

impl FilterRequest<'_> {
    /// The request as route matchers see it.
    pub fn view(&self) -> crate::http::route_match::RequestView<'_> {
        crate::http::route_match::RequestView {
            method: self.method,
            path: self.path,
            authority: self.authority,
            scheme: "http",
            headers: self.headers,
            status: "",
        }
    }
}

/// The response as filters see it.
pub struct FilterResponse<'a> {
    /// `:status`.
    pub status: http::StatusCode,
    /// Response headers (filters may change them).
    pub headers: &'a mut HeaderMap,
    /// The stream's record.
    pub info: &'a mut StreamInfo,
}

type Filters = Vec<Box<dyn StreamFilter>>;

/// The filters of one stream.
#[derive(Clone)]
pub struct FilterChain {
    filters: Arc<Mutex<Filters>>,
}

impl FilterChain {
    /// The stream filters of `filters` for a stream on a route that says `route` of
    /// them (a disabled filter gets none).
    pub fn new(filters: &[Arc<dyn HttpFilter>], route: &RouteFilterConfigs) -> FilterChain {
        let mut stream: Filters = Vec::with_capacity(filters.len());
        for (i, f) in filters.iter().enumerate() {
            let per_route = match route.get(i) {
                RouteFilterConfig::Disabled => continue,
                RouteFilterConfig::Inherit => None,
                RouteFilterConfig::Config(c) => Some(c),
            };
            stream.push(f.stream(per_route));
        }
        FilterChain {
            filters: Arc::new(Mutex::new(stream)),
        }
    }

    /// The body hooks the stream's filters need now.
    fn hooks(&self) -> Hooks {
        self.filters
            .lock()
            .iter()
            .fold(Hooks::NONE, |h, f| h.union(f.hooks()))
    }

    /// Runs the request header hooks in order; `Some` when one answers locally.
    pub async fn request_headers(&self, rq: &mut FilterRequest<'_>) -> Option<LocalReply> {
        let n = self.filters.lock().len();
        for i in 0..n {
            let mut status = match self.filters.lock().get_mut(i) {
                Some(f) => f.on_request_headers(rq),
                None => HeadersStatus::Continue,
            };
            loop {
                match status {
                    HeadersStatus::Continue => break,
                    HeadersStatus::LocalReply(r) => return Some(r),
                    HeadersStatus::StopUntil(resume) => status = resume.await,
                }
            }
        }
        None
    }

    /// Runs the response header hooks in reverse order over `resp`; a hook's local
    /// reply replaces the response, and the filters after it see the reply.
    pub async fn response_headers(&self, resp: &mut http::Response<Body>, info: &mut StreamInfo) {
        let n = self.filters.lock().len();
        for i in (0..n).rev() {
            let mut status = {
                let mut rs = FilterResponse {
                    status: resp.status(),
                    headers: resp.headers_mut(),
                    info,
                };
                match self.filters.lock().get_mut(i) {
                    Some(f) => f.on_response_headers(&mut rs),
                    None => HeadersStatus::Continue,
                }
            };
            loop {
                match status {
                    HeadersStatus::Continue => break,
                    HeadersStatus::LocalReply(r) => {
                        *resp = crate::http::local_reply::filter_reply(r, info);
                        break;
                    }
                    HeadersStatus::StopUntil(resume) => status = resume.await,
                }
            }
        }
    }

    /// The request body as the upstream gets it: through the request body hooks
    /// when a filter has them.
    pub fn request_body(&self, body: Body, limit: usize) -> Body {
        if !self.hooks().has(Hooks::REQUEST_BODY) {
            return body;
        }
        use http_body_util::BodyExt;
        FilteredBody::new(body, self.clone(), Direction::Request, limit).boxed()
    }

    /// The response body as the client gets it: through the response body hooks when
    /// a filter has them. The stream's filters live until the body ends.
    pub fn response_body(&self, body: Body, limit: usize) -> Body {
        use http_body_util::BodyExt;
        FilteredBody::new(body, self.clone(), Direction::Response, limit).boxed()
    }

    /// Runs the log hooks (the stream has ended).
    pub fn log(&self, info: &StreamInfo) {
        for f in self.filters.lock().iter_mut() {
            f.on_log(info);
        }
    }
}

mod body;

use body::Direction;
pub use body::{BufferOverflow, FilteredBody};

#[cfg(test)]
mod tests;
