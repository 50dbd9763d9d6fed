//! Retry decisions as Envoy's `RetryStateImpl`: which outcomes are retried (`retry_on`
//! from the route and the `x-envoy-retry-*` headers), how many times, and how long to
//! back off (full-jitter exponential, or the upstream's rate-limit reset headers).

use crate::http::route_match::{header_matches, RequestView};
use ferry_config::retry::{ResetFormat, RetryOn, RetryPolicy};
use ferry_upstream::UpstreamError;
use http::HeaderMap;
use std::sync::Arc;
use std::time::Duration;

const X_ENVOY_RETRY_ON: &str = "x-envoy-retry-on";
const X_ENVOY_RETRY_GRPC_ON: &str = "x-envoy-retry-grpc-on";
const X_ENVOY_MAX_RETRIES: &str = "x-envoy-max-retries";
const X_ENVOY_RETRIABLE_STATUS_CODES: &str = "x-envoy-retriable-status-codes";
const X_ENVOY_RETRIABLE_HEADER_NAMES: &str = "x-envoy-retriable-header-names";
const X_ENVOY_RATELIMITED: &str = "x-envoy-ratelimited";

/// What to do after an attempt.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Decision {
    /// The outcome is final.
    No,
    /// Retry after this back-off (`rate_limited`: from the upstream's reset header).
    Retry {
        /// How long to wait.
        back_off: Duration,
        /// Whether the wait came from a rate-limit reset header.
        rate_limited: bool,
    },
    /// The outcome is retriable but no retry is left (`URX`).
    LimitExceeded,
}

/// The retry state of one request.
#[derive(Debug)]
pub struct RetryState {
    policy: Arc<RetryPolicy>,
    retry_on: RetryOn,
    remaining: u32,
    status_codes: Vec<u16>,
    header_names: Vec<http::HeaderName>,
    /// The next back-off's ceiling (doubles each time, up to `max_interval`).
    next_interval: Duration,
}

/// The default policy when only headers ask for retries.
fn header_only_policy() -> Arc<RetryPolicy> {
    static DEFAULT: std::sync::OnceLock<Arc<RetryPolicy>> = std::sync::OnceLock::new();
    DEFAULT
        .get_or_init(|| Arc::new(RetryPolicy::default()))
        .clone()
}

impl RetryState {
    /// The retry state of a request, or None when nothing asks for retries. `headers`
    /// are the request headers (the `x-envoy-retry-*` headers are read here).
    pub fn new(policy: Option<&Arc<RetryPolicy>>, req: &RequestView<'_>) -> Option<RetryState> {
        let h = req.headers;
        let header_on = |name: &str| {
            h.get(name)
                .and_then(|v| v.to_str().ok())
                .map(|v| RetryOn::parse(v).0 .0)
                .unwrap_or(0)
        };
        let from_headers = header_on(X_ENVOY_RETRY_ON) | header_on(X_ENVOY_RETRY_GRPC_ON);
        if policy.is_none() && from_headers == 0 {
            return None;
        }
        let policy = policy.cloned().unwrap_or_else(header_only_policy);
        let retry_on = RetryOn(policy.retry_on.0 | from_headers);
        if retry_on.0 == 0 {
            return None;
        }
        // retriable_request_headers: only matching requests are retried.
        if !policy.retriable_request_headers.is_empty()
            && !policy
                .retriable_request_headers
                .iter()
                .any(|m| header_matches(m, req))
        {
            return None;
        }
        let mut remaining = policy.num_retries;
        if let Some(n) = h
            .get(X_ENVOY_MAX_RETRIES)
            .and_then(|v| v.to_str().ok())
            .and_then(|v| v.trim().parse::<u32>().ok())
        {
            remaining = n;
        }
        let mut status_codes = policy.retriable_status_codes.clone();
        if let Some(v) = h
            .get(X_ENVOY_RETRIABLE_STATUS_CODES)
            .and_then(|v| v.to_str().ok())
        {
            status_codes.extend(
                v.split(',')
                    .filter_map(|c| c.trim().parse::<u16>().ok())
                    .filter(|c| (100..600).contains(c)),
            );
        }
        let header_names = h
            .get(X_ENVOY_RETRIABLE_HEADER_NAMES)
            .and_then(|v| v.to_str().ok())
            .map(|v| {
                v.split(',')
                    .filter_map(|n| {
                        http::HeaderName::from_bytes(n.trim().to_ascii_lowercase().as_bytes()).ok()
                    })
                    .collect()
            })
            .unwrap_or_default();
        Some(RetryState {
            next_interval: policy.back_off_base,
            policy,
            retry_on,
            remaining,
            status_codes,
            header_names,
        })
    }

    /// The policy in force.
    pub fn policy(&self) -> &RetryPolicy {
        &self.policy
    }

    /// Whether a response with these headers is retriable, by `retry_on`.
    fn response_retriable(&self, status: u16, headers: &HeaderMap) -> bool {
        let on = self.retry_on;
        if headers.contains_key(X_ENVOY_RATELIMITED) {
            return on.has(RetryOn::ENVOY_RATELIMITED);
        }
        if on.has(RetryOn::FIVE_XX) && status >= 500 {
            return true;
        }
        if on.has(RetryOn::GATEWAY_ERROR) && matches!(status, 502..=504) {
            return true;
        }
        if on.has(RetryOn::RETRIABLE_4XX) && status == 409 {
            return true;
        }
        if on.has(RetryOn::RETRIABLE_STATUS_CODES) && self.status_codes.contains(&status) {
            return true;
        }
        if on.has(RetryOn::RETRIABLE_HEADERS) {
            let status = status.to_string();
            let view = RequestView {
                method: "",
                path: "",
                authority: "",
                scheme: "",
                headers,
                status: &status,
            };
            if self
                .policy
                .retriable_headers
                .iter()
                .any(|m| header_matches(m, &view))
                || self.header_names.iter().any(|n| headers.contains_key(n))
            {
                return true;
            }
        }
        // gRPC: the status of a trailers-only response is in its headers.
        if let Some(code) = headers
            .get("grpc-status")
            .and_then(|v| v.to_str().ok())
            .and_then(|v| v.parse::<u32>().ok())
        {
            let bit = match code {
                1 => RetryOn::GRPC_CANCELLED,
                4 => RetryOn::GRPC_DEADLINE_EXCEEDED,
                8 => RetryOn::GRPC_RESOURCE_EXHAUSTED,
                13 => RetryOn::GRPC_INTERNAL,
                14 => RetryOn::GRPC_UNAVAILABLE,
                _ => 0,
            };
            if on.has(bit) {
                return true;
            }
        }
        false
    }

    /// After a response's headers.
    pub fn on_response(&mut self, status: u16, headers: &HeaderMap) -> Decision {
        if !self.response_retriable(status, headers) {
            return Decision::No;
        }
        let rate_limited = self.rate_limited_back_off(headers);
        self.take(rate_limited)
    }

    /// After an attempt failed without a response (connect failure, reset).
    pub fn on_failure(&mut self, e: &UpstreamError) -> Decision {
        let on = self.retry_on;
        let retriable = match e {
            UpstreamError::Overflow(_) | UpstreamError::RequestBody(_) => false,
            UpstreamError::ConnectFailure(_) | UpstreamError::ConnectTimeout => on.has(
                RetryOn::CONNECT_FAILURE
                    | RetryOn::FIVE_XX
                    | RetryOn::GATEWAY_ERROR
                    | RetryOn::RESET
                    | RetryOn::RESET_BEFORE_REQUEST,
            ),
            UpstreamError::ConnectionTermination(_) | UpstreamError::RemoteReset { .. } => {
                on.has(RetryOn::FIVE_XX | RetryOn::GATEWAY_ERROR | RetryOn::RESET)
                    || (on.has(RetryOn::REFUSED_STREAM) && e.is_refused_stream())
            }
            UpstreamError::Protocol(_) => {
                on.has(RetryOn::FIVE_XX | RetryOn::GATEWAY_ERROR | RetryOn::RESET)
            }
        };
        if !retriable {
            return Decision::No;
        }
        self.take(None)
    }

    /// After a per-try timeout with hedging: another attempt if a retry is left,
    /// whatever `retry_on` says (Envoy's hedge).
    pub fn on_hedge(&mut self) -> Decision {
        self.take(None)
    }

    /// After a per-try timeout (retried under `5xx`, `gateway-error` and `reset`).
    pub fn on_per_try_timeout(&mut self) -> Decision {
        if !self
            .retry_on
            .has(RetryOn::FIVE_XX | RetryOn::GATEWAY_ERROR | RetryOn::RESET)
        {
            return Decision::No;
        }
        self.take(None)
    }

    fn take(&mut self, rate_limited: Option<Duration>) -> Decision {
        if self.remaining == 0 {
            return Decision::LimitExceeded;
        }
        self.remaining -= 1;
        match rate_limited {
            Some(back_off) => Decision::Retry {
                back_off,
                rate_limited: true,
            },
            None => Decision::Retry {
                back_off: self.next_back_off(),
                rate_limited: false,
            },
        }
    }

    /// Envoy's `JitteredExponentialBackOffStrategy`: uniform in [0, interval), the
    /// interval starting at `base_interval` and doubling up to `max_interval`.
    fn next_back_off(&mut self) -> Duration {
        let max = self.policy.back_off_max.max(Duration::from_millis(1));
        let interval = self.next_interval.clamp(Duration::from_millis(1), max);
        self.next_interval = (interval * 2).min(max);
        let ms = interval.as_millis().max(1) as u64;
        Duration::from_millis(rand::random_range(0..ms))
    }

    /// The wait a rate-limited response asks for, when `rate_limited_retry_back_off`
    /// is configured and a reset header gives one within its `max_interval`.
    fn rate_limited_back_off(&self, headers: &HeaderMap) -> Option<Duration> {
        let r = self.policy.rate_limited_back_off.as_ref()?;
        for (name, format) in &r.reset_headers {
            let Some(v) = headers
                .get(name)
                .and_then(|v| v.to_str().ok())
                .and_then(|v| v.trim().parse::<u64>().ok())
            else {
                continue;
            };
            let wait = match format {
                ResetFormat::Seconds => Duration::from_secs(v),
                ResetFormat::UnixTimestamp => {
                    let now = std::time::SystemTime::now()
                        .duration_since(std::time::UNIX_EPOCH)
                        .unwrap_or_default();
                    match Duration::from_secs(v).checked_sub(now) {
                        Some(d) => d,
                        None => continue,
                    }
                }
            };
            if !wait.is_zero() && wait <= r.max_interval {
                // Envoy's JitteredLowerBoundBackOffStrategy: [wait, 1.5 × wait).
                let ms = wait.as_millis() as u64;
                let jitter = rand::random_range(0..(ms / 2).max(1));
                return Some(Duration::from_millis(ms + jitter));
            }
        }
        None
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;
    use ferry_config::matcher::{HeaderMatchKind, HeaderMatcher};

    fn present(name: &str) -> HeaderMatcher {
        HeaderMatcher {
            name: name.to_string(),
            kind: HeaderMatchKind::Present(true),
            invert: false,
        }
    }

    fn state(policy: RetryPolicy, headers: &[(&str, &str)]) -> Option<RetryState> {
        let mut h = HeaderMap::new();
        for (k, v) in headers {
            h.insert(
                http::HeaderName::from_bytes(k.as_bytes()).unwrap(),
                v.parse().unwrap(),
            );
        }
        let view = RequestView {
            method: "GET",
            path: "/",
            authority: "x",
            scheme: "http",
            headers: &h,
            status: "",
        };
        RetryState::new(Some(&Arc::new(policy)), &view)
    }

    fn on(list: &str) -> RetryPolicy {
        RetryPolicy {
            retry_on: RetryOn::parse(list).0,
            num_retries: 2,
            ..Default::default()
        }
    }

    #[test]
    fn conditions_select_what_is_retried() {
        let none = HeaderMap::new();
        let mut s = state(on("gateway-error"), &[]).unwrap();
        assert_eq!(s.on_response(500, &none), Decision::No);
        assert!(matches!(s.on_response(503, &none), Decision::Retry { .. }));
        let mut s = state(on("5xx"), &[]).unwrap();
        assert!(matches!(s.on_response(500, &none), Decision::Retry { .. }));
        assert!(matches!(
            s.on_failure(&UpstreamError::ConnectTimeout),
            Decision::Retry { .. }
        ));
        assert_eq!(s.on_response(500, &none), Decision::LimitExceeded);
        let mut s = state(on("retriable-4xx"), &[]).unwrap();
        assert_eq!(s.on_response(404, &none), Decision::No);
        assert!(matches!(s.on_response(409, &none), Decision::Retry { .. }));
        let mut s = state(on("connect-failure"), &[]).unwrap();
        let reset = UpstreamError::RemoteReset {
            refused: false,
            message: "remote reset".into(),
        };
        assert_eq!(s.on_failure(&reset), Decision::No);
        assert_eq!(s.on_per_try_timeout(), Decision::No);
        let mut s = state(on("refused-stream"), &[]).unwrap();
        let refused = UpstreamError::RemoteReset {
            refused: true,
            message: "stream error received: refused stream".into(),
        };
        assert!(matches!(s.on_failure(&refused), Decision::Retry { .. }));
        assert_eq!(s.on_failure(&reset), Decision::No);
        let mut s = state(on("unavailable"), &[]).unwrap();
        let mut grpc = HeaderMap::new();
        grpc.insert("grpc-status", "14".parse().unwrap());
        assert!(matches!(s.on_response(200, &grpc), Decision::Retry { .. }));
        grpc.insert("grpc-status", "2".parse().unwrap());
        assert_eq!(s.on_response(200, &grpc), Decision::No);
    }

    #[test]
    fn retriable_headers_match_response_headers_and_status() {
        let mut p = on("retriable-headers");
        p.retriable_headers = vec![
            HeaderMatcher {
                name: ":status".into(),
                kind: HeaderMatchKind::Range(500, 504),
                invert: false,
            },
            present("x-upstream-retry"),
        ];
        let mut s = state(p, &[]).unwrap();
        let none = HeaderMap::new();
        assert!(matches!(s.on_response(502, &none), Decision::Retry { .. }));
        assert_eq!(s.on_response(504, &none), Decision::No);
        let mut h = HeaderMap::new();
        h.insert("x-upstream-retry", "1".parse().unwrap());
        assert!(matches!(s.on_response(200, &h), Decision::Retry { .. }));
    }

    #[test]
    fn headers_add_conditions_and_set_the_retry_count() {
        assert!(state(RetryPolicy::default(), &[]).is_none());
        let mut s = state(
            RetryPolicy::default(),
            &[
                ("x-envoy-retry-on", "retriable-status-codes"),
                ("x-envoy-retriable-status-codes", "418"),
                ("x-envoy-max-retries", "3"),
            ],
        )
        .unwrap();
        let none = HeaderMap::new();
        for _ in 0..3 {
            assert!(matches!(s.on_response(418, &none), Decision::Retry { .. }));
        }
        assert_eq!(s.on_response(418, &none), Decision::LimitExceeded);
    }

    #[test]
    fn retriable_request_headers_limit_which_requests_retry() {
        let mut p = on("5xx");
        p.retriable_request_headers = vec![present("x-retry-me")];
        assert!(state(p.clone(), &[]).is_none());
        assert!(state(p, &[("x-retry-me", "1")]).is_some());
    }

    #[test]
    fn back_off_is_full_jitter_exponential_and_capped() {
        let mut p = on("5xx");
        p.num_retries = 100;
        p.back_off_base = Duration::from_millis(10);
        p.back_off_max = Duration::from_millis(50);
        let mut s = state(p, &[]).unwrap();
        let none = HeaderMap::new();
        let mut waits = Vec::new();
        for _ in 0..50 {
            match s.on_response(503, &none) {
                Decision::Retry {
                    back_off,
                    rate_limited: false,
                } => waits.push(back_off),
                d => panic!("{d:?}"),
            }
        }
        // [0, 10), [0, 20), [0, 40), then [0, 50) each time.
        assert!(waits[0] < Duration::from_millis(10));
        assert!(waits[1] < Duration::from_millis(20));
        assert!(waits[2] < Duration::from_millis(40));
        assert!(waits.iter().all(|w| *w < Duration::from_millis(50)));
        assert!(waits.iter().any(|w| *w > Duration::from_millis(30)));
    }

    #[test]
    fn rate_limited_back_off_uses_the_reset_header() {
        let mut p = on("5xx");
        p.rate_limited_back_off = Some(ferry_config::retry::RateLimitedBackOff {
            reset_headers: vec![(
                http::HeaderName::from_static("retry-after"),
                ResetFormat::Seconds,
            )],
            max_interval: Duration::from_secs(10),
        });
        let mut s = state(p, &[]).unwrap();
        let mut h = HeaderMap::new();
        h.insert("retry-after", "2".parse().unwrap());
        match s.on_response(503, &h) {
            Decision::Retry {
                back_off,
                rate_limited: true,
            } => assert!(
                back_off >= Duration::from_secs(2) && back_off < Duration::from_secs(3),
                "{back_off:?}"
            ),
            d => panic!("{d:?}"),
        }
        h.insert("retry-after", "60".parse().unwrap());
        assert!(matches!(
            s.on_response(503, &h),
            Decision::Retry {
                rate_limited: false,
                ..
            }
        ));
    }
}
