//! The timeouts of one request (Envoy's `FilterUtility::finalTimeout`): the route
//! timeout, the retry policy's per-try timeouts, `max_stream_duration` and
//! `max_grpc_timeout` with the request's `grpc-timeout`, and — for internal requests —
//! the `x-envoy-upstream-rq-*` headers, which are consumed here.

use ferry_config::route::RouteAction;
use http::{HeaderMap, HeaderValue};
use std::time::Duration;

const X_ENVOY_UPSTREAM_RQ_TIMEOUT_MS: &str = "x-envoy-upstream-rq-timeout-ms";
const X_ENVOY_UPSTREAM_RQ_PER_TRY_TIMEOUT_MS: &str = "x-envoy-upstream-rq-per-try-timeout-ms";
const GRPC_TIMEOUT: &str = "grpc-timeout";

/// The timeouts of one request, from the route, its retry policy and the request's
/// `x-envoy-upstream-rq-*` and `grpc-timeout` headers (Envoy's `finalTimeout`).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Timeouts {
    /// The route (global) timeout, from the end of the request (None: none).
    pub global: Option<Duration>,
    /// `per_try_timeout`.
    pub per_try: Option<Duration>,
    /// `per_try_idle_timeout`.
    pub per_try_idle: Option<Duration>,
    /// Whether anything differs from the route's own timeout (the precomputed
    /// `x-envoy-expected-rq-timeout-ms` then does not apply).
    pub custom: bool,
    /// The route's `max_stream_duration` (or the bounded `grpc-timeout`), from the
    /// start of the stream.
    pub stream_duration: Option<Duration>,
}

impl Timeouts {
    /// Computes the timeouts, removing the timeout headers Envoy consumes.
    pub fn of(ra: &RouteAction, h: &mut HeaderMap, grpc: bool) -> Timeouts {
        let policy = ra.retry_policy.as_deref();
        let mut t = Timeouts {
            global: ra.timeout,
            per_try: policy.and_then(|p| p.per_try_timeout),
            per_try_idle: policy.and_then(|p| p.per_try_idle_timeout),
            custom: false,
            stream_duration: None,
        };
        if let Some(msd) = &ra.max_stream_duration {
            // The stream's duration bounds it instead (the HCM's timer).
            t.global = None;
            t.custom = true;
            t.stream_duration = msd.max;
            if let (true, Some(cap)) = (grpc, msd.grpc_header_max) {
                let header = h
                    .get(GRPC_TIMEOUT)
                    .and_then(|v| v.to_str().ok())
                    .and_then(parse_grpc_timeout);
                if let Some(mut g) = header {
                    if let Some(cap) = cap {
                        g = g.min(cap);
                    }
                    if msd.grpc_header_offset < g {
                        g -= msd.grpc_header_offset;
                    }
                    t.stream_duration = Some(g);
                }
            }
        } else if let (true, Some((max, offset))) = (grpc, ra.max_grpc_timeout) {
            let mut g = h
                .get(GRPC_TIMEOUT)
                .and_then(|v| v.to_str().ok())
                .and_then(parse_grpc_timeout);
            if let Some(v) = g {
                if !offset.is_zero() && v > offset {
                    g = Some(v - offset);
                }
            }
            if let Some(max) = max {
                if g.is_none_or(|v| v > max) {
                    g = Some(max);
                }
            }
            t.global = g.filter(|d| !d.is_zero());
            t.custom = true;
        }
        let millis = |v: HeaderValue| {
            v.to_str()
                .ok()
                .and_then(|s| s.trim().parse::<u64>().ok())
                .map(Duration::from_millis)
        };
        if let Some(v) = h.remove(X_ENVOY_UPSTREAM_RQ_TIMEOUT_MS).and_then(millis) {
            t.global = (!v.is_zero()).then_some(v);
            t.custom = true;
        }
        if let Some(v) = h
            .remove(X_ENVOY_UPSTREAM_RQ_PER_TRY_TIMEOUT_MS)
            .and_then(millis)
        {
            t.per_try = (!v.is_zero()).then_some(v);
        }
        if let (Some(p), Some(g)) = (t.per_try, t.global) {
            if p >= g {
                t.per_try = None;
            }
        }
        if t.per_try.is_some() {
            t.custom = true;
        }
        t
    }

    /// `x-envoy-expected-rq-timeout-ms` after `elapsed`: the per-try timeout (the global
    /// one when hedging or when there is none), bounded by what is left of the global.
    pub fn expected(&self, hedging: bool, elapsed: Duration) -> Option<u64> {
        let global = self.global.map(|d| d.as_millis() as u64);
        let mut expected = match (self.per_try, hedging) {
            (Some(p), false) => Some(p.as_millis() as u64),
            _ => global,
        }?;
        if let Some(g) = global {
            let elapsed = elapsed.as_millis() as u64;
            expected = if elapsed >= g {
                1
            } else {
                expected.min(g - elapsed)
            };
        }
        (expected > 0).then_some(expected)
    }
}

/// A `grpc-timeout` value (`<digits><H|M|S|m|u|n>`), as Envoy parses it.
pub fn parse_grpc_timeout(v: &str) -> Option<Duration> {
    let v = v.trim();
    if v.len() < 2 || v.len() > 9 {
        return None;
    }
    let (digits, unit) = v.split_at(v.len() - 1);
    let n: u64 = digits.parse().ok()?;
    Some(match unit {
        "H" => Duration::from_secs(n.checked_mul(3600)?),
        "M" => Duration::from_secs(n.checked_mul(60)?),
        "S" => Duration::from_secs(n),
        "m" => Duration::from_millis(n),
        "u" => Duration::from_micros(n),
        "n" => Duration::from_nanos(n),
        _ => return None,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn grpc_timeouts_parse_with_their_units() {
        assert_eq!(parse_grpc_timeout("1S"), Some(Duration::from_secs(1)));
        assert_eq!(parse_grpc_timeout("250m"), Some(Duration::from_millis(250)));
        assert_eq!(parse_grpc_timeout("2H"), Some(Duration::from_secs(7200)));
        assert_eq!(parse_grpc_timeout("S"), None);
        assert_eq!(parse_grpc_timeout("1x"), None);
        assert_eq!(parse_grpc_timeout("1234567890S"), None);
    }

    #[test]
    fn expected_timeout_is_the_per_try_bounded_by_what_is_left() {
        let t = Timeouts {
            global: Some(Duration::from_millis(1000)),
            per_try: Some(Duration::from_millis(300)),
            ..Default::default()
        };
        assert_eq!(t.expected(false, Duration::ZERO), Some(300));
        assert_eq!(t.expected(true, Duration::ZERO), Some(1000));
        assert_eq!(t.expected(false, Duration::from_millis(800)), Some(200));
        assert_eq!(t.expected(false, Duration::from_millis(2000)), Some(1));
        assert_eq!(Timeouts::default().expected(false, Duration::ZERO), None);
    }
}
