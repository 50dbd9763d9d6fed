//! Route selection: virtual host by authority, then the first route whose match holds.

use ferry_config::matcher::{HeaderMatchKind, HeaderMatcher};
use ferry_config::route::{PathMatch, Route, RouteConfig, RouteMatch, VirtualHost};
use http::HeaderMap;

/// The parts of a request that routes match on.
#[derive(Debug)]
pub struct RequestView<'a> {
    /// `:method`.
    pub method: &'a str,
    /// `:path` (with query).
    pub path: &'a str,
    /// `:authority`, lower-cased.
    pub authority: &'a str,
    /// `:scheme`.
    pub scheme: &'a str,
    /// Headers.
    pub headers: &'a HeaderMap,
    /// `:status`, when the view is of response headers ("" for requests).
    pub status: &'a str,
}

impl<'a> RequestView<'a> {
    /// The request of a stream's record, with `headers`.
    pub fn of(info: &'a crate::stream_info::StreamInfo, headers: &'a HeaderMap) -> Self {
        RequestView {
            method: &info.method,
            path: &info.path,
            authority: &info.authority,
            scheme: info.scheme,
            headers,
            status: "",
        }
    }

    fn path_only(&self) -> &str {
        self.path.split(['?', '#']).next().unwrap_or_default()
    }

    fn query(&self) -> Option<&str> {
        self.path
            .split_once('?')
            .map(|(_, q)| q.split('#').next().unwrap_or_default())
    }

    /// A header's value; several values are joined with "," as Envoy does.
    fn header(&self, name: &str) -> Option<std::borrow::Cow<'_, str>> {
        use std::borrow::Cow;
        match name {
            ":method" => return Some(Cow::Borrowed(self.method)),
            ":path" => return Some(Cow::Borrowed(self.path)),
            ":authority" | "host" => return Some(Cow::Borrowed(self.authority)),
            ":scheme" => return Some(Cow::Borrowed(self.scheme)),
            ":status" if !self.status.is_empty() => return Some(Cow::Borrowed(self.status)),
            _ => {}
        }
        let mut values = self.headers.get_all(name).iter();
        let first = values.next()?;
        let first = String::from_utf8_lossy(first.as_bytes());
        match values.next() {
            None => Some(first),
            Some(second) => {
                let mut s = first.into_owned();
                s.push(',');
                s.push_str(&String::from_utf8_lossy(second.as_bytes()));
                for v in values {
                    s.push(',');
                    s.push_str(&String::from_utf8_lossy(v.as_bytes()));
                }
                Some(Cow::Owned(s))
            }
        }
    }
}

/// The virtual host and route for a request.
pub fn find<'c>(rc: &'c RouteConfig, req: &RequestView<'_>) -> Option<Found<'c>> {
    let vh_index = rc.domains.find(req.authority)?;
    let vh = rc.virtual_hosts.get(vh_index)?;
    let route = vh
        .routes
        .iter()
        .enumerate()
        .find(|(_, r)| matches(&r.matcher, req));
    Some(Found {
        vh_index,
        vh,
        route,
    })
}

/// The virtual host a request belongs to and the route it matched, with their indexes
/// (which address the per-route runtime state).
#[derive(Debug)]
pub struct Found<'c> {
    /// Index of the virtual host in the route configuration.
    pub vh_index: usize,
    /// The virtual host.
    pub vh: &'c VirtualHost,
    /// (index, route) of the first matching route.
    pub route: Option<(usize, &'c Route)>,
}

/// Whether a route's match holds.
pub fn matches(m: &RouteMatch, req: &RequestView<'_>) -> bool {
    let ok = match &m.path {
        PathMatch::Prefix(p) => starts_with(req.path, p, m.case_sensitive),
        PathMatch::Exact(p) => eq(req.path_only(), p, m.case_sensitive),
        PathMatch::Regex(r) => r.is_match(req.path_only()),
        PathMatch::SeparatedPrefix(p) => {
            let path = req.path_only();
            starts_with(path, p, m.case_sensitive)
                && (path.len() == p.len() || path.as_bytes()[p.len()] == b'/')
        }
    };
    if !ok {
        return false;
    }
    if m.grpc
        && !req
            .headers
            .get(http::header::CONTENT_TYPE)
            .and_then(|v| v.to_str().ok())
            .is_some_and(|v| v.starts_with("application/grpc"))
    {
        return false;
    }
    if !m.headers.iter().all(|h| header_matches(h, req)) {
        return false;
    }
    m.query_parameters.iter().all(|q| {
        let value = req.query().and_then(|query| {
            query.split('&').find_map(|kv| {
                let (k, v) = kv.split_once('=').unwrap_or((kv, ""));
                (k == q.name).then_some(v)
            })
        });
        match (&q.value, value) {
            (_, None) => false,
            (None, Some(_)) => true,
            (Some(sm), Some(v)) => sm.matches(v),
        }
    })
}

fn starts_with(s: &str, prefix: &str, case_sensitive: bool) -> bool {
    if case_sensitive {
        s.starts_with(prefix)
    } else {
        s.len() >= prefix.len()
            && s.as_bytes()[..prefix.len()].eq_ignore_ascii_case(prefix.as_bytes())
    }
}

fn eq(a: &str, b: &str, case_sensitive: bool) -> bool {
    if case_sensitive {
        a == b
    } else {
        a.eq_ignore_ascii_case(b)
    }
}

/// Whether a header matcher holds for a request (or for response headers in `req.headers`).
pub fn header_matches(h: &HeaderMatcher, req: &RequestView<'_>) -> bool {
    let value = req.header(&h.name);
    let matched = match (&h.kind, value) {
        (HeaderMatchKind::Present(want), v) => v.is_some() == *want,
        // A missing header matches nothing, inverted or not (Envoy).
        (_, None) => return false,
        (HeaderMatchKind::Range(start, end), Some(v)) => v
            .trim()
            .parse::<i64>()
            .is_ok_and(|n| n >= *start && n < *end),
        (HeaderMatchKind::String(sm), Some(v)) => sm.matches(&v),
    };
    matched != h.invert
}
