//! Header mutations (`*_headers_to_add` / `*_headers_to_remove`) with Envoy's append
//! semantics, and the hop-by-hop headers a proxy must not forward.

use ferry_config::format::Values;
use ferry_config::route::WeightedCluster;
use ferry_config::{AppendAction, HeaderMutations, HeaderToAdd};
use http::{HeaderMap, HeaderValue};

/// The connection-specific headers Envoy removes before forwarding (in either
/// direction). Envoy does not remove headers merely named in `connection`, so a client
/// cannot strip what the proxy adds (`x-forwarded-for`...).
pub const HOP_BY_HOP: &[&str] = &[
    "connection",
    "keep-alive",
    "proxy-connection",
    "transfer-encoding",
    "upgrade",
];

/// Removes connection-specific headers; `te` survives only as `trailers`.
pub fn strip_hop_by_hop(h: &mut HeaderMap) {
    for name in HOP_BY_HOP {
        h.remove(*name);
    }
    if let Some(te) = h.remove(http::header::TE) {
        let trailers = te.to_str().is_ok_and(|v| {
            v.split(',')
                .any(|t| t.trim().eq_ignore_ascii_case("trailers"))
        });
        if trailers {
            h.insert(http::header::TE, HeaderValue::from_static("trailers"));
        }
    }
}

/// All values of a header joined with `,` (Envoy joins repeated inline headers), or
/// None when absent.
pub fn joined(h: &HeaderMap, name: &str) -> Option<String> {
    let mut values = h.get_all(name).iter().filter_map(|v| v.to_str().ok());
    let first = values.next()?.to_string();
    Some(values.fold(first, |mut acc, v| {
        acc.push(',');
        acc.push_str(v);
        acc
    }))
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

/// Appends the connection manager's `via` value to `h`'s `via`.
pub fn append_via(h: &mut HeaderMap, via: &HeaderValue) {
    let value = match joined(h, "via") {
        Some(existing) => format!("{existing}, {}", via.to_str().unwrap_or_default()),
        None => via.to_str().unwrap_or_default().to_string(),
    };
    if let Ok(v) = HeaderValue::from_str(&value) {
        h.insert(http::header::VIA, v);
    }
}
