//! The connection manager's own request headers (Envoy's
//! `ConnectionManagerUtility::mutateRequestHeaders`): internal or external request,
//! `x-forwarded-for`/`-proto`, `x-envoy-external-address`, `x-request-id`, and the
//! control headers an external client may not send; and the trusted client address.

use crate::http::conn_manager::HcmRuntime;
use crate::http::connection::ConnInfo;
use crate::http::headers;
use ferry_config::hcm::HttpConnectionManager;
use http::{HeaderMap, HeaderName, HeaderValue};
use std::net::{IpAddr, SocketAddr};

/// `x-request-id`.
pub const X_REQUEST_ID: &str = "x-request-id";
/// `x-forwarded-for`.
pub const X_FORWARDED_FOR: &str = "x-forwarded-for";
/// `x-forwarded-proto`.
pub const X_FORWARDED_PROTO: &str = "x-forwarded-proto";
/// `x-envoy-internal`.
pub const X_ENVOY_INTERNAL: &str = "x-envoy-internal";
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

/// Mutates a request's headers as Envoy's connection manager does before its filters.
/// A request is internal when it comes from an `internal_address_config` range (the
/// peer with `use_remote_address`, else a single `x-forwarded-for` entry); internal
/// requests are marked `x-envoy-internal: true` and keep their control headers.
/// External ones lose them (and, at the edge — `use_remote_address` — a few more).
pub fn mutate(hcm: &HcmRuntime, conn: &ConnInfo, h: &mut HeaderMap) {
    let cfg = &hcm.config;
    let peer_ip = conn.peer.ip();
    let internal = is_internal(cfg, h, peer_ip);
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

/// Whether the request comes from an `internal_address_config` range.
fn is_internal(cfg: &HttpConnectionManager, h: &HeaderMap, peer_ip: IpAddr) -> bool {
    if cfg.internal_cidrs.is_empty() {
        return false;
    }
    let xff = headers::joined(h, X_FORWARDED_FOR);
    if cfg.use_remote_address {
        xff.is_none_or(|x| x.trim().is_empty()) && cfg.is_internal(peer_ip)
    } else {
        xff.and_then(|x| {
            let mut entries = x.split(',');
            let one = entries.next()?.trim().parse::<IpAddr>().ok()?;
            entries.next().is_none().then_some(one)
        })
        .is_some_and(|ip| cfg.is_internal(ip))
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

/// The downstream remote address as Envoy determines it: the peer when
/// `use_remote_address` is set; otherwise the `x-forwarded-for` entry
/// `xff_num_trusted_hops` from the right (the peer when there is none).
pub fn trusted_client_address(
    cfg: &HttpConnectionManager,
    h: &HeaderMap,
    peer: SocketAddr,
) -> SocketAddr {
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
        .and_then(|i| entries[i].parse::<IpAddr>().ok())
        .map(|ip| SocketAddr::new(ip, 0))
        .unwrap_or(peer)
}

/// Whether the connection manager marked the request internal.
pub fn marked_internal(h: &HeaderMap) -> bool {
    h.get(X_ENVOY_INTERNAL)
        .is_some_and(|v| v.as_bytes() == b"true")
}
