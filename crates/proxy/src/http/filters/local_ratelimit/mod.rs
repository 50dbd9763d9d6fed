//! `envoy.filters.http.local_ratelimit`: a token bucket per filter (or per route with a
//! per-route config, or per downstream connection); over it, 429 `RL`.
//! The buckets are `crate::token_bucket`'s.

pub mod config;

use super::Env;
use crate::http::filter_manager::{
    FilterRequest, HeadersStatus, HttpFilter, PerRouteConfig, StreamFilter,
};
use crate::http::headers::{self, Side};
use crate::http::local_reply::LocalReply;
use crate::http::route_match::header_matches;
use crate::token_bucket::Bucket;
use config::LocalRateLimit;
use ferry_config::filters::rate_limit_actions::{Action, RateLimitRule};
use ferry_config::filters::FilterConfig;
use std::sync::Arc;
use std::time::Instant;

ferry_stats::stat_group! {
    /// `<stat_prefix>.http_local_rate_limit.*`.
    pub struct LocalRateLimitStats {
        counters: { enabled, enforced, rate_limited, ok }
        gauges: {}
    }
}

/// A config with its buckets and stats.
pub struct Limiter {
    config: Arc<LocalRateLimit>,
    bucket: Option<Bucket>,
    /// One bucket per configured descriptor, in config order.
    descriptors: Vec<Bucket>,
    stats: Arc<LocalRateLimitStats>,
}

/// The descriptors a request produces under `rules` of `stage` (Envoy's rate limit
/// actions): each rule gives one descriptor, or none when an action does not apply.
fn request_descriptors(
    rules: &[RateLimitRule],
    stage: u32,
    rq: &FilterRequest<'_>,
) -> Vec<Vec<(String, String)>> {
    let mut out = Vec::new();
    'rules: for rule in rules.iter().filter(|r| r.stage == stage) {
        let mut entries = Vec::with_capacity(rule.actions.len());
        for a in &rule.actions {
            let entry = match a {
                Action::SourceCluster => {
                    ("source_cluster".to_string(), rq.source_cluster.to_string())
                }
                Action::DestinationCluster => match rq.cluster {
                    Some(c) => ("destination_cluster".to_string(), c.to_string()),
                    None => continue 'rules,
                },
                Action::RequestHeaders {
                    header,
                    key,
                    skip_if_absent,
                } => match rq.headers.get(header).and_then(|v| v.to_str().ok()) {
                    Some(v) => (key.clone(), v.to_string()),
                    None if *skip_if_absent => continue,
                    None => continue 'rules,
                },
                Action::RemoteAddress => match rq.info.downstream_remote {
                    Some(a) => ("remote_address".to_string(), a.ip().to_string()),
                    None => continue 'rules,
                },
                Action::GenericKey { key, value } => (key.clone(), value.clone()),
                Action::HeaderValueMatch {
                    key,
                    value,
                    expect_match,
                    headers,
                } => {
                    let view = rq.view();
                    let matched = headers.iter().all(|m| header_matches(m, &view));
                    if matched != *expect_match {
                        continue 'rules;
                    }
                    (key.clone(), value.clone())
                }
            };
            entries.push(entry);
        }
        if !entries.is_empty() {
            out.push(entries);
        }
    }
    out
}

impl Limiter {
    /// Registers the stats under `<stat_prefix>.http_local_rate_limit.`.
    pub fn new(config: Arc<LocalRateLimit>, env: &Env<'_>) -> Limiter {
        let stats = Arc::new(LocalRateLimitStats::default());
        env.stats.register(
            format!("{}.http_local_rate_limit.", config.stat_prefix),
            &stats,
        );
        Limiter {
            bucket: config.bucket.map(Bucket::new),
            descriptors: config
                .descriptors
                .iter()
                .map(|d| Bucket::new(d.bucket))
                .collect(),
            config,
            stats,
        }
    }

    /// Takes the request's tokens: from the bucket of every configured descriptor the
    /// request's descriptors match and — when none matches, or with
    /// `always_consume_default_token_bucket` — from the default bucket.
    fn admit(&self, bucket: Option<&Bucket>, rq: &FilterRequest<'_>) -> bool {
        let now = Instant::now();
        let mut admitted = true;
        let mut matched = false;
        if !self.descriptors.is_empty() {
            let rules = if self.config.rate_limits.is_empty() {
                rq.rate_limits
            } else {
                &self.config.rate_limits
            };
            for d in request_descriptors(rules, self.config.stage, rq) {
                if let Some(i) = self.config.descriptors.iter().position(|c| c.entries == d) {
                    matched = true;
                    if let Some(b) = self.descriptors.get(i) {
                        admitted &= b.try_take(now);
                    }
                }
            }
        }
        if !matched || self.config.always_consume_default {
            if let Some(b) = bucket {
                admitted &= b.try_take(now);
            }
        }
        admitted
    }

    fn check(&self, bucket: Option<&Bucket>, rq: &mut FilterRequest<'_>) -> HeadersStatus {
        let cfg = &self.config;
        if !cfg.enabled.sample() {
            return HeadersStatus::Continue;
        }
        self.stats.enabled.inc();
        if self.admit(bucket, rq) {
            self.stats.ok.inc();
            return HeadersStatus::Continue;
        }
        self.stats.rate_limited.inc();
        if !cfg.enforced.sample() {
            let levels = [
                Some(&cfg.request_headers_when_not_enforced),
                None,
                None,
                None,
            ];
            headers::apply_all(levels, Side::Request, rq.headers, rq.info);
            return HeadersStatus::Continue;
        }
        self.stats.enforced.inc();
        rq.info
            .response_flags
            .set(ferry_config::ResponseFlag::RateLimited);
        let mut added = http::HeaderMap::new();
        headers::apply_all(
            [Some(&cfg.response_headers), None, None, None],
            Side::Response,
            &mut added,
            rq.info,
        );
        let mut headers = Vec::new();
        let mut last = None;
        for (name, value) in added {
            if let Some(n) = name {
                last = Some(n);
            }
            if let Some(n) = &last {
                headers.push((n.clone(), value));
            }
        }
        HeadersStatus::LocalReply(LocalReply {
            status: cfg.status,
            body: Some("local_rate_limited".into()),
            grpc_status: None,
            flag: None,
            details: "local_rate_limited",
            headers,
        })
    }
}

super::http_filter_factory! {
    name: "envoy.filters.http.local_ratelimit",
    config_type: "envoy.extensions.filters.http.local_ratelimit.v3.LocalRateLimit",
    config: LocalRateLimit,
    per_route: true,
    build: |name: &str, index, config, env: &Env<'_>| {
        Arc::new(LocalRateLimitFilter::new(name, index, config, env))
    },
}

/// The local rate limit filter of one HCM.
pub struct LocalRateLimitFilter {
    name: String,
    index: usize,
    limiter: Arc<Limiter>,
}

impl LocalRateLimitFilter {
    /// Builds the filter's own limiter (`index`: its place in the chain, which keys
    /// per-connection buckets).
    pub fn new(
        name: &str,
        index: usize,
        config: Arc<LocalRateLimit>,
        env: &Env<'_>,
    ) -> LocalRateLimitFilter {
        LocalRateLimitFilter {
            name: name.to_string(),
            index,
            limiter: Arc::new(Limiter::new(config, env)),
        }
    }
}

impl HttpFilter for LocalRateLimitFilter {
    fn name(&self) -> &str {
        &self.name
    }

    fn stream(&self, per_route: Option<&PerRouteConfig>) -> Box<dyn StreamFilter> {
        // A route's own limiter (with its own bucket) replaces the filter's.
        let route = per_route.and_then(|c| c.clone().downcast::<Limiter>().ok());
        Box::new(LocalRateLimitStream {
            limiter: self.limiter.clone(),
            index: self.index,
            route,
        })
    }

    fn route_config(&self, config: &FilterConfig, env: &Env<'_>) -> Option<PerRouteConfig> {
        let config = config.clone().downcast::<LocalRateLimit>().ok()?;
        Some(Arc::new(Limiter::new(config, env)))
    }
}

/// The filter on one stream.
struct LocalRateLimitStream {
    limiter: Arc<Limiter>,
    index: usize,
    route: Option<Arc<Limiter>>,
}

impl StreamFilter for LocalRateLimitStream {
    /// Takes a token from the route's, the connection's or the filter's bucket.
    fn on_request_headers(&mut self, rq: &mut FilterRequest<'_>) -> HeadersStatus {
        if let Some(l) = &self.route {
            return l.check(l.bucket.as_ref(), rq);
        }
        let limiter = &self.limiter;
        if limiter.config.per_connection {
            let bucket = limiter
                .config
                .bucket
                .map(|b| rq.conn.local_bucket(self.index, b));
            return limiter.check(bucket.as_deref(), rq);
        }
        limiter.check(limiter.bucket.as_ref(), rq)
    }
}
