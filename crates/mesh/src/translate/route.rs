//! A route's parts as Envoy's: its match (HTTP and gRPC, headers), its retry policy
//! (or App Mesh's default one), its timeouts, and how specific it is (for the order of
//! routes within one priority).

use super::{duration, typed};
use crate::model::http_match::{HeaderMatcher, HttpRouteMatch};
use crate::model::route::{RetryPolicy, RouteSpec};
use crate::model::virtual_node::RequestTimeout;
use serde_json::{json, Value};

/// How specific a route's path match is: an exact or regex path above any prefix, a
/// longer prefix above a shorter one.
pub(super) fn specificity(r: &RouteSpec) -> usize {
    let m = r
        .http_route
        .as_ref()
        .or(r.http2_route.as_ref())
        .map(|h| &h.matcher);
    match m {
        Some(m) if m.path.is_some() => usize::MAX,
        Some(m) => m.prefix.as_ref().map_or(0, String::len),
        None => {
            let g = r.grpc_route.as_ref().map(|g| &g.matcher);
            match g {
                Some(g) if g.method_name.is_some() => usize::MAX,
                Some(g) if g.service_name.is_some() => 1,
                _ => 0,
            }
        }
    }
}

/// The route's timeouts (`perRequest`, `idle`).
pub(super) fn timeouts(action: &mut Value, timeout: Option<&RequestTimeout>) {
    let Some(t) = timeout else { return };
    if let Some(d) = t.per_request.as_ref().and_then(duration) {
        action["timeout"] = json!(d);
    }
    if let Some(d) = t.idle.as_ref().and_then(duration) {
        action["idle_timeout"] = json!(d);
    }
}

/// The retry policy App Mesh gives a route that has none: twice, on another host, when
/// the request cannot have been processed (connection failures, refused streams, 503,
/// gRPC `unavailable`).
pub(super) fn default_retry_policy() -> Value {
    json!({
        "retry_on": "connect-failure,refused-stream,unavailable,retriable-status-codes",
        "retriable_status_codes": [503],
        "num_retries": 2,
        "retry_host_predicate": [{
            "name": "envoy.retry_host_predicates.previous_hosts",
            "typed_config": typed(
                "envoy.extensions.retry.host.previous_hosts.v3.PreviousHostsPredicate",
                json!({}),
            ),
        }],
        "host_selection_retry_max_attempts": "5",
    })
}

/// App Mesh's retry events as Envoy's `retry_on`.
pub(super) fn retry_policy(p: &RetryPolicy, grpc: bool) -> Value {
    let mut on: Vec<&str> = Vec::new();
    let http = p
        .http_retry_events
        .iter()
        .flatten()
        .map(|e| match e.as_str() {
            "server-error" => "5xx",
            "gateway-error" => "gateway-error",
            "client-error" => "retriable-4xx",
            _ => "refused-stream",
        });
    // A connection error is one before any processing of the request started.
    let tcp = p.tcp_retry_events.iter().map(|_| "connect-failure");
    let grpc_events = p
        .grpc_retry_events
        .iter()
        .flatten()
        .filter(|_| grpc)
        .map(String::as_str);
    for e in http.chain(tcp).chain(grpc_events) {
        if !on.contains(&e) {
            on.push(e);
        }
    }
    let mut policy = json!({"retry_on": on.join(","), "num_retries": p.max_retries});
    if let Some(d) = duration(&p.per_retry_timeout) {
        policy["per_try_timeout"] = json!(d);
    }
    policy
}

/// An HTTP route match as Envoy's `RouteMatch`.
pub(super) fn http_match(m: &HttpRouteMatch) -> Value {
    let mut out = match (&m.prefix, &m.path) {
        (_, Some(p)) if p.exact.is_some() => json!({"path": p.exact}),
        (_, Some(p)) if p.regex.is_some() => json!({"safe_regex": {"regex": p.regex}}),
        (Some(prefix), _) => json!({"prefix": prefix}),
        _ => json!({"prefix": "/"}),
    };
    let mut headers: Vec<Value> = m.headers.iter().flatten().map(header).collect();
    if let Some(method) = &m.method {
        let method = serde_json::to_value(method).unwrap_or_default();
        headers.push(json!({"name": ":method", "string_match": {"exact": method}}));
    }
    if let Some(scheme) = &m.scheme {
        let scheme = serde_json::to_value(scheme).unwrap_or_default();
        headers.push(json!({"name": ":scheme", "string_match": {"exact": scheme}}));
    }
    if !headers.is_empty() {
        out["headers"] = json!(headers);
    }
    if let Some(q) = &m.query_parameters {
        let params: Vec<Value> = q
            .iter()
            .map(
                |p| match p.matcher.as_ref().and_then(|m| m.exact.as_ref()) {
                    Some(exact) => json!({"name": p.name, "string_match": {"exact": exact}}),
                    None => json!({"name": p.name, "present_match": true}),
                },
            )
            .collect();
        out["query_parameters"] = json!(params);
    }
    out
}

/// A header (or gRPC metadata) match as Envoy's `HeaderMatcher`.
pub(super) fn header(h: &HeaderMatcher) -> Value {
    let mut out = json!({"name": h.name});
    match &h.matcher {
        None => out["present_match"] = json!(true),
        Some(m) => {
            if let Some(r) = &m.range {
                out["range_match"] =
                    json!({"start": r.start.to_string(), "end": r.end.to_string()});
            } else {
                out["string_match"] = string_match(&m.exact, &m.prefix, &m.suffix, &m.regex)
                    .unwrap_or_else(|| json!({"prefix": ""}));
            }
        }
    }
    if h.invert == Some(true) {
        out["invert_match"] = json!(true);
    }
    out
}

/// The first of `exact`, `prefix`, `suffix` and `regex` that is set, as Envoy's
/// `StringMatcher`; `None` when none is.
pub(super) fn string_match(
    exact: &Option<String>,
    prefix: &Option<String>,
    suffix: &Option<String>,
    regex: &Option<String>,
) -> Option<Value> {
    Some(match (exact, prefix, suffix, regex) {
        (Some(v), ..) => json!({"exact": v}),
        (_, Some(v), ..) => json!({"prefix": v}),
        (_, _, Some(v), _) => json!({"suffix": v}),
        (.., Some(v)) => json!({"safe_regex": {"regex": v}}),
        _ => return None,
    })
}
