//! ferrymesh's extensions of App Mesh's schema ([`crate::model::extensions`]) as
//! Envoy configuration: per route, `typed_per_filter_config` of the fault, local rate
//! limit and CORS filters (which the connection manager then has, before its router),
//! request mirroring, header changes and hash policies; per retry policy, the back-off
//! and the retry budget of the targets' clusters; per listener, the load balancing
//! policy of the clusters that reach it, a local rate limit and header limits on its
//! ingress; Envoy's further outlier detection settings.

use super::route::string_match;
use super::{duration, typed, Options, Proxy};
use crate::model::extensions::listener::{LbPolicy, LoadBalancer};
use crate::model::extensions::route::{Cors, FaultInjection, HashPolicy, Headers};
use crate::model::extensions::{
    Denominator, HeaderCondition, ListenerExtensions, OutlierDetectionExtensions, Percentage,
    RateLimit, RetryExtensions, RouteExtensions,
};
use serde_json::{json, Value};

const FAULT: &str = "envoy.filters.http.fault";
const RATE_LIMIT: &str = "envoy.filters.http.local_ratelimit";
const CORS: &str = "envoy.filters.http.cors";

/// Which filters the routes of a connection manager need.
#[derive(Debug, Default, Clone, Copy)]
pub(super) struct Uses {
    fault: bool,
    rate_limit: bool,
    cors: bool,
}

/// The HTTP filters, before the router, that the routes' per-route configs need.
pub(super) fn http_filters(uses: Uses) -> Vec<Value> {
    let mut filters = Vec::new();
    if uses.cors {
        let config = typed("envoy.extensions.filters.http.cors.v3.Cors", json!({}));
        filters.push(json!({"name": CORS, "typed_config": config}));
    }
    if uses.fault {
        let config = typed(
            "envoy.extensions.filters.http.fault.v3.HTTPFault",
            json!({}),
        );
        filters.push(json!({"name": FAULT, "typed_config": config}));
    }
    if uses.rate_limit {
        // No bucket of its own: only routes with a rate limit are limited.
        let config = typed(
            "envoy.extensions.filters.http.local_ratelimit.v3.LocalRateLimit",
            json!({"stat_prefix": "route_rate_limit"}),
        );
        filters.push(json!({"name": RATE_LIMIT, "typed_config": config}));
    }
    filters
}

/// Envoy's `FractionalPercent`.
fn fraction(p: &Percentage) -> Value {
    let denominator = match p.denominator {
        None | Some(Denominator::Hundred) => "HUNDRED",
        Some(Denominator::TenThousand) => "TEN_THOUSAND",
        Some(Denominator::Million) => "MILLION",
    };
    json!({"numerator": p.numerator, "denominator": denominator})
}

/// A header condition as Envoy's `HeaderMatcher`.
fn header_condition(h: &HeaderCondition) -> Value {
    let mut out = json!({"name": h.name});
    match string_match(&h.exact, &h.prefix, &h.suffix, &h.regex) {
        Some(m) => out["string_match"] = m,
        None => out["present_match"] = json!(h.present.unwrap_or(true)),
    }
    if h.invert == Some(true) {
        out["invert_match"] = json!(true);
    }
    out
}

fn fault(f: &FaultInjection) -> Value {
    let mut config = json!({});
    if let Some(d) = &f.delay {
        config["delay"] = json!({
            "fixed_delay": duration(&d.fixed_delay),
            "percentage": fraction(&d.percentage),
        });
    }
    if let Some(a) = &f.abort {
        let mut abort = json!({"percentage": fraction(&a.percentage)});
        if let Some(s) = a.http_status {
            abort["http_status"] = json!(s);
        }
        if let Some(s) = a.grpc_status {
            abort["grpc_status"] = json!(s);
        }
        config["abort"] = abort;
    }
    if !f.headers.is_empty() {
        config["headers"] = json!(f.headers.iter().map(header_condition).collect::<Vec<_>>());
    }
    typed("envoy.extensions.filters.http.fault.v3.HTTPFault", config)
}

/// A token bucket as a local rate limit config that is enabled and enforced.
pub(super) fn rate_limit(r: &RateLimit, stat_prefix: &str) -> Value {
    let all = json!({"default_value": {"numerator": 100, "denominator": "HUNDRED"}, "runtime_key": format!("{stat_prefix}_enabled")});
    let enforced = json!({"default_value": {"numerator": 100, "denominator": "HUNDRED"}, "runtime_key": format!("{stat_prefix}_enforced")});
    let mut config = json!({
        "stat_prefix": stat_prefix,
        "token_bucket": {
            "max_tokens": r.max_tokens,
            "tokens_per_fill": r.tokens_per_fill.unwrap_or(1),
            "fill_interval": duration(&r.fill_interval),
        },
        "filter_enabled": all,
        "filter_enforced": enforced,
    });
    if let Some(code) = r.status_code {
        config["status"] = json!({"code": code});
    }
    typed(
        "envoy.extensions.filters.http.local_ratelimit.v3.LocalRateLimit",
        config,
    )
}

fn cors(c: &Cors) -> Value {
    let origins: Vec<Value> = c
        .allow_origins
        .iter()
        // Exactly one is set (checked when stored).
        .filter_map(|o| string_match(&o.exact, &o.prefix, &o.suffix, &o.regex))
        .collect();
    let mut config = json!({"allow_origin_string_match": origins});
    let lists = [
        ("allow_methods", &c.allow_methods),
        ("allow_headers", &c.allow_headers),
        ("expose_headers", &c.expose_headers),
    ];
    for (field, list) in lists {
        if !list.is_empty() {
            config[field] = json!(list.join(","));
        }
    }
    if let Some(ms) = c.max_age.as_ref().and_then(super::millis_of) {
        // Envoy's max_age: seconds, as a string.
        config["max_age"] = json!((ms / 1000).to_string());
    }
    if let Some(b) = c.allow_credentials {
        config["allow_credentials"] = json!(b);
    }
    typed("envoy.extensions.filters.http.cors.v3.CorsPolicy", config)
}

fn headers(h: &Headers, route: &mut Value) {
    let add = |list: &[crate::model::extensions::route::HeaderValue]| -> Vec<Value> {
        list.iter()
            .map(|v| {
                let action = if v.append.unwrap_or(true) {
                    "APPEND_IF_EXISTS_OR_ADD"
                } else {
                    "OVERWRITE_IF_EXISTS_OR_ADD"
                };
                json!({"header": {"key": v.name, "value": v.value}, "append_action": action})
            })
            .collect()
    };
    if !h.request_headers_to_add.is_empty() {
        route["request_headers_to_add"] = json!(add(&h.request_headers_to_add));
    }
    if !h.request_headers_to_remove.is_empty() {
        route["request_headers_to_remove"] = json!(h.request_headers_to_remove);
    }
    if !h.response_headers_to_add.is_empty() {
        route["response_headers_to_add"] = json!(add(&h.response_headers_to_add));
    }
    if !h.response_headers_to_remove.is_empty() {
        route["response_headers_to_remove"] = json!(h.response_headers_to_remove);
    }
}

fn hash_policy(p: &HashPolicy) -> Value {
    let mut out = match (&p.header, &p.cookie, p.source_ip, &p.query_parameter) {
        (Some(h), ..) => json!({"header": {"header_name": h.name}}),
        (_, Some(c), ..) => {
            let mut cookie = json!({"name": c.name});
            if let Some(ttl) = c.ttl.as_ref().and_then(duration) {
                cookie["ttl"] = json!(ttl);
            }
            if let Some(path) = &c.path {
                cookie["path"] = json!(path);
            }
            json!({"cookie": cookie})
        }
        (_, _, Some(_), _) => json!({"connection_properties": {"source_ip": true}}),
        (.., q) => json!({"query_parameter": {"name": q.as_ref().map(|q| q.name.clone())}}),
    };
    if p.terminal == Some(true) {
        out["terminal"] = json!(true);
    }
    out
}

/// Adds a route's extensions to its Envoy `route` (which has `route` or
/// `direct_response`); `mirror` is the cluster of its mirror's target, `cors` whether
/// the proxy takes CORS.
pub(super) fn route(
    ext: &RouteExtensions,
    route: &mut Value,
    mirror: Option<String>,
    options: &Options,
    uses: &mut Uses,
    notes: &mut Vec<String>,
) {
    let mut per_filter = serde_json::Map::new();
    if let Some(f) = &ext.fault_injection {
        per_filter.insert(FAULT.into(), fault(f));
        uses.fault = true;
    }
    if let Some(r) = &ext.rate_limit {
        // Stats of its own per route (`<route>.http_local_rate_limit.*`).
        let prefix = format!("route_{}", route["name"].as_str().unwrap_or_default());
        per_filter.insert(RATE_LIMIT.into(), rate_limit(r, &prefix));
        uses.rate_limit = true;
    }
    if let Some(c) = &ext.cors {
        if options.proxy == Proxy::Envoy {
            per_filter.insert(CORS.into(), cors(c));
            uses.cors = true;
        } else {
            notes.push(format!(
                "route {}: cors left out (ferry does not take CORS yet)",
                route["name"].as_str().unwrap_or_default()
            ));
        }
    }
    if !per_filter.is_empty() {
        route["typed_per_filter_config"] = Value::Object(per_filter);
    }
    if let Some(h) = &ext.headers {
        headers(h, route);
    }
    let name = route["name"].as_str().unwrap_or_default().to_string();
    let Some(action) = route.get_mut("route") else {
        return;
    };
    if let (Some(m), Some(cluster)) = (&ext.mirror, mirror) {
        let mut policy = json!({"cluster": cluster});
        if let Some(p) = &m.percentage {
            policy["runtime_fraction"] = json!({"default_value": fraction(p)});
        }
        action["request_mirror_policies"] = json!([policy]);
    }
    if !ext.hash_policy.is_empty() {
        let generated = ext
            .hash_policy
            .iter()
            .any(|p| p.cookie.as_ref().is_some_and(|c| c.ttl.is_some()));
        let policies: Vec<Value> = ext
            .hash_policy
            .iter()
            .map(|p| {
                let mut policy = hash_policy(p);
                if generated && options.proxy == Proxy::Ferry {
                    // ferry hashes an existing cookie; it does not set one yet.
                    if let Some(cookie) = policy["cookie"].as_object_mut() {
                        cookie.remove("ttl");
                    }
                }
                policy
            })
            .collect();
        if generated && options.proxy == Proxy::Ferry {
            notes.push(format!(
                "route {name}: hashPolicy cookie ttl left out (ferry does not set cookies yet: sessions stick once the client has the cookie)"
            ));
        }
        action["hash_policy"] = json!(policies);
    }
}

/// Adds a retry policy's back-off to Envoy's `retry_policy`.
pub(super) fn retry(ext: &RetryExtensions, policy: &mut Value) {
    if let Some(b) = &ext.back_off {
        let mut back_off = json!({"base_interval": duration(&b.base_interval)});
        if let Some(max) = b.max_interval.as_ref().and_then(duration) {
            back_off["max_interval"] = json!(max);
        }
        policy["retry_back_off"] = back_off;
    }
}

/// The retry budget of a retry policy, for the circuit breakers of its targets.
pub(super) fn retry_budget(ext: &RetryExtensions) -> Option<Value> {
    let b = ext.budget.as_ref()?;
    let mut budget = json!({});
    if let Some(p) = b.budget_percent {
        budget["budget_percent"] = json!({"value": f64::from(p)});
    }
    if let Some(m) = b.min_retry_concurrency {
        budget["min_retry_concurrency"] = json!(m);
    }
    Some(budget)
}

/// A listener's load balancer on a cluster that reaches it.
pub(super) fn load_balancer(lb: &LoadBalancer, cluster: &mut Value) {
    cluster["lb_policy"] = json!(match lb.policy {
        LbPolicy::RoundRobin => "ROUND_ROBIN",
        LbPolicy::LeastRequest => "LEAST_REQUEST",
        LbPolicy::RingHash => "RING_HASH",
        LbPolicy::Maglev => "MAGLEV",
        LbPolicy::Random => "RANDOM",
    });
    if let Some(c) = lb.choice_count {
        cluster["least_request_lb_config"] = json!({"choice_count": c});
    }
    if lb.minimum_ring_size.is_some() || lb.maximum_ring_size.is_some() {
        let mut ring = json!({});
        if let Some(min) = lb.minimum_ring_size {
            ring["minimum_ring_size"] = json!(min.to_string());
        }
        if let Some(max) = lb.maximum_ring_size {
            ring["maximum_ring_size"] = json!(max.to_string());
        }
        cluster["ring_hash_lb_config"] = ring;
    }
}

/// A listener's rate limit and header limits on its ingress connection manager
/// (`config` is the manager's typed config).
pub(super) fn ingress(ext: &ListenerExtensions, port: u32, config: &mut Value) {
    if let Some(kb) = ext.max_request_headers_kb {
        config["max_request_headers_kb"] = json!(kb);
    }
    if let Some(n) = ext.max_headers_count {
        config["common_http_protocol_options"] = json!({"max_headers_count": n});
    }
    if let Some(r) = &ext.rate_limit {
        let filter = json!({"name": RATE_LIMIT, "typed_config": rate_limit(r, &format!("ingress_{port}_rate_limit"))});
        if let Some(filters) = config["http_filters"].as_array_mut() {
            filters.insert(0, filter);
        }
    }
}

/// Envoy's further outlier detection settings.
pub(super) fn outlier(ext: &OutlierDetectionExtensions, detection: &mut Value) {
    let numbers = [
        (
            "consecutive_gateway_failure",
            ext.consecutive_gateway_failure,
        ),
        (
            "consecutive_local_origin_failure",
            ext.consecutive_local_origin_failure,
        ),
        ("enforcing_consecutive_5xx", ext.enforcing_consecutive_5xx),
        (
            "enforcing_consecutive_gateway_failure",
            ext.enforcing_consecutive_gateway_failure,
        ),
        ("enforcing_success_rate", ext.enforcing_success_rate),
        ("success_rate_minimum_hosts", ext.success_rate_minimum_hosts),
        (
            "success_rate_request_volume",
            ext.success_rate_request_volume,
        ),
        ("success_rate_stdev_factor", ext.success_rate_stdev_factor),
        (
            "failure_percentage_threshold",
            ext.failure_percentage_threshold,
        ),
        (
            "enforcing_failure_percentage",
            ext.enforcing_failure_percentage,
        ),
        (
            "failure_percentage_minimum_hosts",
            ext.failure_percentage_minimum_hosts,
        ),
        (
            "failure_percentage_request_volume",
            ext.failure_percentage_request_volume,
        ),
    ];
    for (field, value) in numbers {
        if let Some(v) = value {
            detection[field] = json!(v);
        }
    }
    // A gateway failure count ejects (Envoy enforces it at 0% unless told).
    if ext.consecutive_gateway_failure.is_some()
        && ext.enforcing_consecutive_gateway_failure.is_none()
    {
        detection["enforcing_consecutive_gateway_failure"] = json!(100);
    }
    if let Some(b) = ext.split_external_local_origin_errors {
        detection["split_external_local_origin_errors"] = json!(b);
    }
    if let Some(d) = ext.max_ejection_time.as_ref().and_then(duration) {
        detection["max_ejection_time"] = json!(d);
    }
}
