//! The route of a virtual router: what requests it matches (HTTP, HTTP/2, gRPC or
//! TCP), the virtual nodes it sends them to by weight, its retry policy and timeouts,
//! and its priority among the router's routes. App Mesh's `RouteSpec`.

use super::extensions::{RetryExtensions, RouteExtensions};
use super::http_match::{header_matchers, http_match, port, HeaderMatcher, HttpRouteMatch};
use super::virtual_node::{Duration, RequestTimeout, TcpTimeout};
use super::{length, one_of, range, validate_name, Reference, Spec};
use crate::ApiError;
use serde::{Deserialize, Serialize};

/// `RouteSpec`: exactly one of its routes.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct RouteSpec {
    /// `grpcRoute`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub grpc_route: Option<GrpcRoute>,
    /// `http2Route`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub http2_route: Option<HttpRoute>,
    /// `httpRoute`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub http_route: Option<HttpRoute>,
    /// `priority` (0–1,000; lower first).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub priority: Option<u32>,
    /// `tcpRoute`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub tcp_route: Option<TcpRoute>,
}

/// `WeightedTarget`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct WeightedTarget {
    /// `port`: the target's listener (when it has several).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub port: Option<u32>,
    /// `virtualNode`: a virtual node of the mesh.
    pub virtual_node: String,
    /// `weight` (0–100).
    pub weight: u32,
}

/// `HttpRouteAction`, `GrpcRouteAction`, `TcpRouteAction`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct RouteAction {
    /// `weightedTargets` (1–10).
    pub weighted_targets: Vec<WeightedTarget>,
}

/// `HttpRoute` (also `http2Route`).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct HttpRoute {
    /// `action`.
    pub action: RouteAction,
    /// `match`.
    #[serde(rename = "match")]
    pub matcher: HttpRouteMatch,
    /// `retryPolicy`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub retry_policy: Option<RetryPolicy>,
    /// `timeout`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub timeout: Option<RequestTimeout>,
    /// ferrymesh's extensions ([`RouteExtensions`]).
    #[serde(flatten, deserialize_with = "RouteExtensions::flat")]
    pub extensions: RouteExtensions,
}

/// `HttpRetryPolicy` and `GrpcRetryPolicy` (which alone has `grpcRetryEvents`).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct RetryPolicy {
    /// `grpcRetryEvents` (gRPC routes): `cancelled`, `deadline-exceeded`, `internal`,
    /// `resource-exhausted`, `unavailable`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub grpc_retry_events: Option<Vec<String>>,
    /// `httpRetryEvents`: `server-error`, `gateway-error`, `client-error`,
    /// `stream-error`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub http_retry_events: Option<Vec<String>>,
    /// `maxRetries`.
    pub max_retries: u64,
    /// `perRetryTimeout`.
    pub per_retry_timeout: Duration,
    /// `tcpRetryEvents`: `connection-error`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub tcp_retry_events: Option<Vec<String>>,
    /// ferrymesh's extensions ([`RetryExtensions`]).
    #[serde(flatten, deserialize_with = "RetryExtensions::flat")]
    pub extensions: RetryExtensions,
}

/// `GrpcRoute`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct GrpcRoute {
    /// `action`.
    pub action: RouteAction,
    /// `match`.
    #[serde(rename = "match")]
    pub matcher: GrpcRouteMatch,
    /// `retryPolicy`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub retry_policy: Option<RetryPolicy>,
    /// `timeout`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub timeout: Option<RequestTimeout>,
    /// ferrymesh's extensions ([`RouteExtensions`]; no `cors`).
    #[serde(flatten, deserialize_with = "RouteExtensions::flat")]
    pub extensions: RouteExtensions,
}

/// `GrpcRouteMatch`.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct GrpcRouteMatch {
    /// `metadata` (1–10).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub metadata: Option<Vec<HeaderMatcher>>,
    /// `methodName` (with `serviceName` only).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub method_name: Option<String>,
    /// `port`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub port: Option<u32>,
    /// `serviceName`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub service_name: Option<String>,
}

/// `TcpRoute`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct TcpRoute {
    /// `action`.
    pub action: RouteAction,
    /// `match`.
    #[serde(rename = "match", default, skip_serializing_if = "Option::is_none")]
    pub matcher: Option<TcpRouteMatch>,
    /// `timeout`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub timeout: Option<TcpTimeout>,
}

/// `TcpRouteMatch`.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct TcpRouteMatch {
    /// `port`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub port: Option<u32>,
}

const HTTP_RETRY_EVENTS: &[&str] = &[
    "server-error",
    "gateway-error",
    "client-error",
    "stream-error",
];
const GRPC_RETRY_EVENTS: &[&str] = &[
    "cancelled",
    "deadline-exceeded",
    "internal",
    "resource-exhausted",
    "unavailable",
];

impl RouteAction {
    fn validate(&self, field: &str) -> Result<(), ApiError> {
        let n = self.weighted_targets.len() as u64;
        range(n, 1, 10, &format!("{field}.weightedTargets (count)"))?;
        for (i, t) in self.weighted_targets.iter().enumerate() {
            let at = format!("{field}.weightedTargets[{i}]");
            validate_name(&t.virtual_node, &format!("{at}.virtualNode"))?;
            range(u64::from(t.weight), 0, 100, &format!("{at}.weight"))?;
            port(t.port, &format!("{at}.port"))?;
        }
        Ok(())
    }
}

impl RetryPolicy {
    fn validate(&self, field: &str, grpc: bool) -> Result<(), ApiError> {
        let lists = [
            (
                "grpcRetryEvents",
                &self.grpc_retry_events,
                GRPC_RETRY_EVENTS,
                5,
            ),
            (
                "httpRetryEvents",
                &self.http_retry_events,
                HTTP_RETRY_EVENTS,
                25,
            ),
            (
                "tcpRetryEvents",
                &self.tcp_retry_events,
                &["connection-error"][..],
                1,
            ),
        ];
        if !grpc && self.grpc_retry_events.is_some() {
            return Err(ApiError::bad_request(format!(
                "{field}.grpcRetryEvents: only a gRPC route has them"
            )));
        }
        for (name, list, allowed, max) in lists {
            let Some(list) = list else { continue };
            range(
                list.len() as u64,
                1,
                max,
                &format!("{field}.{name} (count)"),
            )?;
            for (i, e) in list.iter().enumerate() {
                if !allowed.contains(&e.as_str()) {
                    return Err(ApiError::bad_request(format!(
                        "{field}.{name}[{i}]: {e:?} is not one of {}",
                        allowed.join(", ")
                    )));
                }
            }
        }
        if lists.iter().all(|(_, l, _, _)| l.is_none()) {
            return Err(ApiError::bad_request(format!(
                "{field}: at least one kind of retry event is required ({})",
                if grpc {
                    "grpcRetryEvents, httpRetryEvents or tcpRetryEvents"
                } else {
                    "httpRetryEvents or tcpRetryEvents"
                }
            )));
        }
        self.extensions.validate(field)
    }
}

impl HttpRoute {
    fn validate(&self, field: &str) -> Result<(), ApiError> {
        self.action.validate(&format!("{field}.action"))?;
        let m = &self.matcher;
        let at = format!("{field}.match");
        http_match(
            &m.prefix,
            &m.path,
            &m.headers,
            &m.query_parameters,
            m.port,
            &at,
        )?;
        if let Some(r) = &self.retry_policy {
            r.validate(&format!("{field}.retryPolicy"), false)?;
        }
        self.extensions.validate(field, false)
    }
}

impl GrpcRoute {
    fn validate(&self, field: &str) -> Result<(), ApiError> {
        self.action.validate(&format!("{field}.action"))?;
        let m = &self.matcher;
        let at = format!("{field}.match");
        if m.method_name.is_some() && m.service_name.is_none() {
            return Err(ApiError::bad_request(format!(
                "{at}.methodName: only with serviceName"
            )));
        }
        if let Some(name) = &m.method_name {
            length(name, 1, 50, &format!("{at}.methodName"))?;
        }
        header_matchers(&m.metadata, &format!("{at}.metadata"))?;
        port(m.port, &format!("{at}.port"))?;
        if let Some(r) = &self.retry_policy {
            r.validate(&format!("{field}.retryPolicy"), true)?;
        }
        self.extensions.validate(field, true)?;
        Ok(())
    }
}

impl RouteSpec {
    /// Every weighted target, with the field that names it.
    fn targets(&self) -> Vec<(&WeightedTarget, &'static str)> {
        let actions = [
            (
                self.http_route.as_ref().map(|r| &r.action),
                "spec.httpRoute.action.weightedTargets[].virtualNode",
            ),
            (
                self.http2_route.as_ref().map(|r| &r.action),
                "spec.http2Route.action.weightedTargets[].virtualNode",
            ),
            (
                self.grpc_route.as_ref().map(|r| &r.action),
                "spec.grpcRoute.action.weightedTargets[].virtualNode",
            ),
            (
                self.tcp_route.as_ref().map(|r| &r.action),
                "spec.tcpRoute.action.weightedTargets[].virtualNode",
            ),
        ];
        actions
            .into_iter()
            .filter_map(|(a, field)| Some((a?, field)))
            .flat_map(|(a, field)| a.weighted_targets.iter().map(move |t| (t, field)))
            .collect()
    }
}

impl Spec for RouteSpec {
    fn validate(&self) -> Result<(), ApiError> {
        one_of(
            "spec",
            &[
                ("grpcRoute", self.grpc_route.is_some()),
                ("http2Route", self.http2_route.is_some()),
                ("httpRoute", self.http_route.is_some()),
                ("tcpRoute", self.tcp_route.is_some()),
            ],
        )?;
        if let Some(p) = self.priority {
            range(u64::from(p), 0, 1000, "spec.priority")?;
        }
        if let Some(r) = &self.http_route {
            r.validate("spec.httpRoute")?;
        }
        if let Some(r) = &self.http2_route {
            r.validate("spec.http2Route")?;
        }
        if let Some(r) = &self.grpc_route {
            r.validate("spec.grpcRoute")?;
        }
        if let Some(r) = &self.tcp_route {
            r.action.validate("spec.tcpRoute.action")?;
            port(
                r.matcher.as_ref().and_then(|m| m.port),
                "spec.tcpRoute.match.port",
            )?;
        }
        Ok(())
    }

    /// Its targets and mirrors: virtual nodes of the mesh.
    fn references(&self) -> Vec<Reference> {
        let targets = self.targets().into_iter().map(|(t, field)| Reference {
            kind: "virtualNode",
            name: t.virtual_node.clone(),
            field,
        });
        let extensions = [
            (
                self.http_route.as_ref().map(|r| &r.extensions),
                "spec.httpRoute.mirror.virtualNode",
            ),
            (
                self.http2_route.as_ref().map(|r| &r.extensions),
                "spec.http2Route.mirror.virtualNode",
            ),
            (
                self.grpc_route.as_ref().map(|r| &r.extensions),
                "spec.grpcRoute.mirror.virtualNode",
            ),
        ];
        let mirrors = extensions.into_iter().filter_map(|(e, field)| {
            let mirror = e?.mirror.as_ref()?;
            Some(Reference {
                kind: "virtualNode",
                name: mirror.virtual_node.clone(),
                field,
            })
        });
        targets.chain(mirrors).collect()
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::expect_used)]
    use crate::model::kind::ROUTE;
    use serde_json::json;

    fn problem(spec: serde_json::Value) -> String {
        (ROUTE.spec)(&spec).unwrap_err().message
    }

    #[test]
    fn problems_name_their_field_and_targets_are_references() {
        let http = |action: serde_json::Value| json!({"httpRoute": {"match": {"prefix": "/"}, "action": action}});
        assert_eq!(
            problem(http(
                json!({"weightedTargets": [{"virtualNode": "a", "weight": 101}]})
            )),
            "spec.httpRoute.action.weightedTargets[0].weight: must be 0 to 100, not 101"
        );
        assert_eq!(
            problem(http(json!({"weightedTargets": []}))),
            "spec.httpRoute.action.weightedTargets (count): must be 1 to 10, not 0"
        );
        assert_eq!(
            problem(json!({})),
            "spec: exactly one of grpcRoute, http2Route, httpRoute, tcpRoute is required"
        );
        let grpc = json!({"grpcRoute": {"match": {"methodName": "Get"},
            "action": {"weightedTargets": [{"virtualNode": "a", "weight": 1}]}}});
        assert_eq!(
            problem(grpc),
            "spec.grpcRoute.match.methodName: only with serviceName"
        );
        let (_, refs) = (ROUTE.spec)(&http(json!({"weightedTargets": [
            {"virtualNode": "a", "weight": 1}, {"virtualNode": "b", "weight": 2}]})))
        .unwrap();
        let names: Vec<&str> = refs.iter().map(|r| r.name.as_str()).collect();
        assert_eq!(names, ["a", "b"]);
        assert!(refs.iter().all(|r| r.kind == "virtualNode"));
    }
}
