//! What the router changes in a request before it goes upstream: path and host
//! rewrites (with `x-envoy-original-path`/`-host`), hop-by-hop headers, `via`, `Host`,
//! the request's timeouts and `x-envoy-expected-rq-timeout-ms`, header mutations; and
//! the two values it derives from a request: a redirect's `location` and the hash
//! policy's hash.

use super::{Levels, Matched};
use crate::http::conn_manager::ActiveStream;
use crate::http::connection::ConnInfo;
use crate::http::headers::{self, Side};
use crate::http::request_headers::X_FORWARDED_PROTO;
use crate::http::timeouts::Timeouts;
use crate::stream_info::StreamInfo;
use ferry_config::route::{
    HashPolicyKind, HostRewrite, PathMatch, Redirect, RedirectPath, Route, RouteAction,
};
use ferry_upstream::Host;
use http::{HeaderMap, HeaderName, HeaderValue, Request};

const X_ENVOY_ORIGINAL_PATH: &str = "x-envoy-original-path";
const X_ENVOY_ORIGINAL_HOST: &str = "x-envoy-original-host";
const X_ENVOY_EXPECTED_RQ_TIMEOUT_MS: &str = "x-envoy-expected-rq-timeout-ms";

/// Makes `head` the upstream request's head and settles its timeouts (consuming the
/// timeout headers Envoy consumes). None when the rewritten path is not a valid URI.
pub(super) fn upstream_head(
    stream: &mut ActiveStream<'_>,
    m: &Matched<'_>,
    ra: &RouteAction,
    host: &Host,
    head: &mut http::request::Parts,
    levels: Levels<'_>,
    upgrade: bool,
) -> Option<Timeouts> {
    let hcm = stream.hcm;
    let info = &mut stream.info;
    let new_path = rewritten_path(m.route, ra, &info.path);
    let new_authority = rewritten_authority(ra, host, &info.authority);
    let h = &mut head.headers;
    // An upgrade keeps its `upgrade` and `connection` headers.
    let upgrade_headers = upgrade.then(|| {
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
        headers::append_via(h, via);
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
    let expected = if timeouts.custom {
        let hedging = ra.hedge_policy.hedge_on_per_try_timeout;
        timeouts
            .expected(hedging, std::time::Duration::ZERO)
            .map(HeaderValue::from)
    } else {
        m.target.expected_timeout.clone()
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
    headers::apply_all(levels, Side::Request, h, info);
    // Logs see the request as it goes upstream (Envoy rewrites its headers in place).
    if stream.keep_request_headers {
        info.rewritten_path = new_path.clone();
        info.rewritten_authority = new_authority.clone();
    }
    // Origin form upstream: the request's URI is kept when it already is just the path.
    let keep_uri =
        new_path.is_none() && head.uri.scheme().is_none() && head.uri.authority().is_none();
    if !keep_uri {
        head.uri = new_path.as_deref().unwrap_or(&info.path).parse().ok()?;
    }
    head.version = http::Version::HTTP_11;
    Some(timeouts)
}

/// The path sent upstream when the route rewrites it (None: unchanged). The matched
/// prefix is replaced; for `path` and `safe_regex` matches, the whole path (the query
/// string stays).
fn rewritten_path(route: &Route, ra: &RouteAction, path: &str) -> Option<String> {
    if let Some(prefix) = &ra.prefix_rewrite {
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
    .filter(|p| p != path)
}

/// The authority sent upstream when the route rewrites it (None: unchanged).
fn rewritten_authority(ra: &RouteAction, host: &Host, authority: &str) -> Option<String> {
    match &ra.host_rewrite {
        HostRewrite::None => None,
        HostRewrite::Literal(h) => Some(h.clone()),
        // Envoy rewrites only to a hostname (an endpoint `hostname` or a DNS name).
        HostRewrite::Auto if host.hostname.parse::<std::net::IpAddr>().is_err() => {
            Some(host.hostname.clone())
        }
        HostRewrite::Auto => None,
    }
    .filter(|a| a != authority)
}

/// The request hash for RING_HASH / MAGLEV, from the route's `hash_policy`.
pub(super) fn request_hash<B>(
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

/// A redirect's `location`.
pub(super) fn redirect_location(
    r: &Redirect,
    route: &Route,
    info: &StreamInfo,
    h: &HeaderMap,
) -> String {
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
