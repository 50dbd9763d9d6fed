//! What an HTTP request is matched by, in routes and gateway routes: App Mesh's
//! `HttpRouteMatch` and its parts (header, path and query parameter matches), and
//! their checks.

use super::{length, one_of, range};
use crate::ApiError;
use serde::{Deserialize, Serialize};

/// `HttpRouteMatch`.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct HttpRouteMatch {
    /// `headers` (1–10).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub headers: Option<Vec<HeaderMatcher>>,
    /// `method`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub method: Option<HttpMethod>,
    /// `path`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub path: Option<HttpPathMatch>,
    /// `port`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub port: Option<u32>,
    /// `prefix` (starts with `/`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub prefix: Option<String>,
    /// `queryParameters` (1–10).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub query_parameters: Option<Vec<QueryParameter>>,
    /// `scheme`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub scheme: Option<HttpScheme>,
}

/// `HttpRouteHeader`, `GrpcRouteMetadata`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct HeaderMatcher {
    /// `invert`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub invert: Option<bool>,
    /// `match`.
    #[serde(rename = "match", default, skip_serializing_if = "Option::is_none")]
    pub matcher: Option<HeaderMatchMethod>,
    /// `name` (1–50 characters).
    pub name: String,
}

/// `HeaderMatchMethod`, `GrpcRouteMetadataMatchMethod`.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct HeaderMatchMethod {
    /// `exact`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub exact: Option<String>,
    /// `prefix`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub prefix: Option<String>,
    /// `range`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub range: Option<MatchRange>,
    /// `regex`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub regex: Option<String>,
    /// `suffix`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub suffix: Option<String>,
}

/// `MatchRange`: `start` included, `end` not.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct MatchRange {
    /// `end`.
    pub end: i64,
    /// `start`.
    pub start: i64,
}

/// `HttpMethod`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "UPPERCASE")]
pub enum HttpMethod {
    /// `GET`.
    Get,
    /// `HEAD`.
    Head,
    /// `POST`.
    Post,
    /// `PUT`.
    Put,
    /// `DELETE`.
    Delete,
    /// `CONNECT`.
    Connect,
    /// `OPTIONS`.
    Options,
    /// `TRACE`.
    Trace,
    /// `PATCH`.
    Patch,
}

/// `HttpScheme`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum HttpScheme {
    /// `http`.
    Http,
    /// `https`.
    Https,
}

/// `HttpPathMatch`.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct HttpPathMatch {
    /// `exact`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub exact: Option<String>,
    /// `regex`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub regex: Option<String>,
}

/// `HttpQueryParameter`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct QueryParameter {
    /// `match`.
    #[serde(rename = "match", default, skip_serializing_if = "Option::is_none")]
    pub matcher: Option<QueryParameterMatch>,
    /// `name`.
    pub name: String,
}

/// `QueryParameterMatch`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct QueryParameterMatch {
    /// `exact`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub exact: Option<String>,
}

/// Checks a port (1–65535) if there is one.
pub(crate) fn port(p: Option<u32>, field: &str) -> Result<(), ApiError> {
    match p {
        Some(p) => range(u64::from(p), 1, 65535, field),
        None => Ok(()),
    }
}

/// Checks 1–10 header (or metadata) matchers; `field` is their path.
pub(crate) fn header_matchers(
    list: &Option<Vec<HeaderMatcher>>,
    field: &str,
) -> Result<(), ApiError> {
    let Some(list) = list else {
        return Ok(());
    };
    range(list.len() as u64, 1, 10, &format!("{field} (count)"))?;
    for (i, h) in list.iter().enumerate() {
        let at = format!("{field}[{i}]");
        length(&h.name, 1, 50, &format!("{at}.name"))?;
        if let Some(m) = &h.matcher {
            let at = format!("{at}.match");
            one_of(
                &at,
                &[
                    ("exact", m.exact.is_some()),
                    ("prefix", m.prefix.is_some()),
                    ("range", m.range.is_some()),
                    ("regex", m.regex.is_some()),
                    ("suffix", m.suffix.is_some()),
                ],
            )?;
            for (name, v) in [
                ("exact", &m.exact),
                ("prefix", &m.prefix),
                ("regex", &m.regex),
                ("suffix", &m.suffix),
            ] {
                if let Some(v) = v {
                    length(v, 1, 255, &format!("{at}.{name}"))?;
                }
            }
            if let Some(r) = &m.range {
                if r.start >= r.end {
                    return Err(ApiError::bad_request(format!(
                        "{at}.range: start ({}) must be below end ({}; the end is excluded)",
                        r.start, r.end
                    )));
                }
            }
        }
    }
    Ok(())
}

/// The parts of an HTTP match that routes and gateway routes share: `prefix` (starts
/// with `/`), `path` (exactly one of `exact`, `regex`), 1–10 `headers`, 1–10
/// `queryParameters`, `port`; `at` is the match's path.
pub(crate) fn http_match(
    prefix: &Option<String>,
    path: &Option<HttpPathMatch>,
    headers: &Option<Vec<HeaderMatcher>>,
    query_parameters: &Option<Vec<QueryParameter>>,
    listener_port: Option<u32>,
    at: &str,
) -> Result<(), ApiError> {
    if let Some(prefix) = prefix {
        if !prefix.starts_with('/') {
            return Err(ApiError::bad_request(format!(
                "{at}.prefix: must start with /, not {prefix:?}"
            )));
        }
    }
    if let Some(p) = path {
        one_of(
            &format!("{at}.path"),
            &[("exact", p.exact.is_some()), ("regex", p.regex.is_some())],
        )?;
        for (name, v) in [("exact", &p.exact), ("regex", &p.regex)] {
            if let Some(v) = v {
                length(v, 1, 255, &format!("{at}.path.{name}"))?;
            }
        }
    }
    header_matchers(headers, &format!("{at}.headers"))?;
    if let Some(q) = query_parameters {
        range(
            q.len() as u64,
            1,
            10,
            &format!("{at}.queryParameters (count)"),
        )?;
    }
    port(listener_port, &format!("{at}.port"))
}
