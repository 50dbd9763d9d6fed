//! Header mutations (`*_headers_to_add` / `*_headers_to_remove`) with Envoy's append
//! semantics, and the hop-by-hop headers a proxy must not forward.

use ferry_config::access_log::Values;
use ferry_config::route::WeightedCluster;
use ferry_config::{AppendAction, HeaderMutations, HeaderToAdd};
use http::{HeaderMap, HeaderValue};

/// Headers that describe one connection and are never forwarded.
pub const HOP_BY_HOP: &[http::HeaderName] = &[
    http::header::CONNECTION,
    http::header::TRANSFER_ENCODING,
    http::header::UPGRADE,
    http::header::TE,
    http::header::PROXY_AUTHENTICATE,
    http::header::PROXY_AUTHORIZATION,
    http::header::TRAILER,
];

/// Removes hop-by-hop headers, including those named in `connection`.
pub fn strip_hop_by_hop(h: &mut HeaderMap) {
    let named: Vec<String> = h
        .get_all(http::header::CONNECTION)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(',').map(|s| s.trim().to_ascii_lowercase()))
        .filter(|s| !s.is_empty())
        .collect();
    for n in named {
        if n != "te" {
            h.remove(n.as_str());
        }
    }
    let keep_te_trailers = h
        .get(http::header::TE)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|v| {
            v.split(',')
                .any(|t| t.trim().eq_ignore_ascii_case("trailers"))
        });
    for name in HOP_BY_HOP {
        h.remove(name);
    }
    h.remove("keep-alive");
    h.remove("proxy-connection");
    if keep_te_trailers {
        h.insert(http::header::TE, HeaderValue::from_static("trailers"));
    }
}

/// Which side of the stream a mutation applies to.
#[derive(Debug, Clone, Copy)]
pub enum Side {
    /// The request sent upstream.
    Request,
    /// The response sent downstream.
    Response,
}

/// Applies one level's mutations: removals first, then additions.
pub fn apply(m: &HeaderMutations, side: Side, headers: &mut HeaderMap, values: &dyn Values) {
    let (add, remove) = match side {
        Side::Request => (&m.request_add, &m.request_remove),
        Side::Response => (&m.response_add, &m.response_remove),
    };
    for name in remove {
        headers.remove(name);
    }
    for h in add {
        add_one(h, headers, values);
    }
}

fn add_one(h: &HeaderToAdd, headers: &mut HeaderMap, values: &dyn Values) {
    let rendered;
    let text = match h.value.as_literal() {
        Some(s) => s,
        None => {
            let mut s = String::new();
            h.value.render(values, "", &mut s);
            rendered = s;
            rendered.as_str()
        }
    };
    if text.is_empty() && !h.keep_empty_value {
        return;
    }
    let Ok(value) = HeaderValue::from_str(text) else {
        return;
    };
    let present = headers.contains_key(&h.name);
    match h.action {
        AppendAction::AppendIfExistsOrAdd => {
            headers.append(h.name.clone(), value);
        }
        AppendAction::AddIfAbsent => {
            if !present {
                headers.insert(h.name.clone(), value);
            }
        }
        AppendAction::OverwriteIfExistsOrAdd => {
            headers.insert(h.name.clone(), value);
        }
        AppendAction::OverwriteIfExists => {
            if present {
                headers.insert(h.name.clone(), value);
            }
        }
    }
}

/// Applies every level, most specific first (weighted cluster, route, virtual host,
/// route configuration), so that the least specific level wins on conflicts — Envoy's
/// default (`most_specific_header_mutations_wins: false`).
pub fn apply_all(
    levels: [Option<&HeaderMutations>; 4],
    side: Side,
    headers: &mut HeaderMap,
    values: &dyn Values,
) {
    for m in levels.into_iter().flatten() {
        if !m.is_empty() {
            apply(m, side, headers, values);
        }
    }
}

/// The mutations of a chosen weighted cluster, if any.
pub fn of_weighted(w: Option<&WeightedCluster>) -> Option<&HeaderMutations> {
    w.map(|w| &w.headers)
}
