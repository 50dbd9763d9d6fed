//! The gateway route of a virtual gateway: what requests it matches (HTTP, HTTP/2 or
//! gRPC, by hostname too), the virtual service it sends them to, and how it rewrites
//! their hostname, prefix or path. App Mesh's `GatewayRouteSpec`.

use super::http_match::{
    header_matchers, http_match, HeaderMatcher, HttpMethod, HttpPathMatch, QueryParameter,
};
use super::{length, one_of, range, validate_name, Reference, Spec};
use crate::ApiError;
use serde::{Deserialize, Serialize};

/// `GatewayRouteSpec`: exactly one of its routes.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct GatewayRouteSpec {
    /// `grpcRoute`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub grpc_route: Option<GrpcGatewayRoute>,
    /// `http2Route`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub http2_route: Option<HttpGatewayRoute>,
    /// `httpRoute`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub http_route: Option<HttpGatewayRoute>,
    /// `priority` (0–1,000).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub priority: Option<u32>,
}

/// `GatewayRouteTarget`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct GatewayRouteTarget {
    /// `port`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub port: Option<u32>,
    /// `virtualService`.
    pub virtual_service: GatewayRouteVirtualService,
}

/// `GatewayRouteVirtualService`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct GatewayRouteVirtualService {
    /// `virtualServiceName`: a virtual service of the mesh.
    pub virtual_service_name: String,
}

/// `GatewayRouteHostnameMatch`: exactly one of its members.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct GatewayRouteHostnameMatch {
    /// `exact` (1–253 characters).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub exact: Option<String>,
    /// `suffix` (1–253 characters).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub suffix: Option<String>,
}

/// `GatewayRouteHostnameRewrite`.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct GatewayRouteHostnameRewrite {
    /// `defaultTargetHostname`: `ENABLED` (the target's hostname) or `DISABLED`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub default_target_hostname: Option<DefaultRewrite>,
}

/// `DefaultGatewayRouteRewrite`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "UPPERCASE")]
pub enum DefaultRewrite {
    /// `ENABLED`.
    Enabled,
    /// `DISABLED`.
    Disabled,
}

/// `HttpGatewayRoute` (also `http2Route`).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct HttpGatewayRoute {
    /// `action`.
    pub action: HttpGatewayRouteAction,
    /// `match`.
    #[serde(rename = "match")]
    pub matcher: HttpGatewayRouteMatch,
}

/// `HttpGatewayRouteAction`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct HttpGatewayRouteAction {
    /// `rewrite`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub rewrite: Option<HttpGatewayRouteRewrite>,
    /// `target`.
    pub target: GatewayRouteTarget,
}

/// `HttpGatewayRouteRewrite`.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct HttpGatewayRouteRewrite {
    /// `hostname`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub hostname: Option<GatewayRouteHostnameRewrite>,
    /// `path`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub path: Option<PathRewrite>,
    /// `prefix`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub prefix: Option<PrefixRewrite>,
}

/// `HttpGatewayRoutePathRewrite`.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct PathRewrite {
    /// `exact`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub exact: Option<String>,
}

/// `HttpGatewayRoutePrefixRewrite`: the default (the match's prefix replaced by `/`)
/// or a value.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct PrefixRewrite {
    /// `defaultPrefix`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub default_prefix: Option<DefaultRewrite>,
    /// `value` (starts and ends with `/`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub value: Option<String>,
}

/// `HttpGatewayRouteMatch`.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct HttpGatewayRouteMatch {
    /// `headers` (1–10).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub headers: Option<Vec<HeaderMatcher>>,
    /// `hostname`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub hostname: Option<GatewayRouteHostnameMatch>,
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
}

/// `GrpcGatewayRoute`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct GrpcGatewayRoute {
    /// `action`.
    pub action: GrpcGatewayRouteAction,
    /// `match`.
    #[serde(rename = "match")]
    pub matcher: GrpcGatewayRouteMatch,
}

/// `GrpcGatewayRouteAction`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct GrpcGatewayRouteAction {
    /// `rewrite` (the hostname only).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub rewrite: Option<GrpcGatewayRouteRewrite>,
    /// `target`.
    pub target: GatewayRouteTarget,
}

/// `GrpcGatewayRouteRewrite`.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct GrpcGatewayRouteRewrite {
    /// `hostname`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub hostname: Option<GatewayRouteHostnameRewrite>,
}

/// `GrpcGatewayRouteMatch`.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct GrpcGatewayRouteMatch {
    /// `hostname`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub hostname: Option<GatewayRouteHostnameMatch>,
    /// `metadata` (1–10).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub metadata: Option<Vec<HeaderMatcher>>,
    /// `port`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub port: Option<u32>,
    /// `serviceName`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub service_name: Option<String>,
}

impl GatewayRouteTarget {
    fn validate(&self, field: &str) -> Result<(), ApiError> {
        let name = &self.virtual_service.virtual_service_name;
        validate_name(name, &format!("{field}.virtualService.virtualServiceName"))?;
        if let Some(p) = self.port {
            range(u64::from(p), 1, 65535, &format!("{field}.port"))?;
        }
        Ok(())
    }
}

fn hostname(h: &Option<GatewayRouteHostnameMatch>, field: &str) -> Result<(), ApiError> {
    let Some(h) = h else {
        return Ok(());
    };
    one_of(
        field,
        &[("exact", h.exact.is_some()), ("suffix", h.suffix.is_some())],
    )?;
    for (name, v) in [("exact", &h.exact), ("suffix", &h.suffix)] {
        if let Some(v) = v {
            length(v, 1, 253, &format!("{field}.{name}"))?;
        }
    }
    Ok(())
}

impl HttpGatewayRoute {
    fn validate(&self, field: &str) -> Result<(), ApiError> {
        self.action
            .target
            .validate(&format!("{field}.action.target"))?;
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
        hostname(&m.hostname, &format!("{at}.hostname"))?;
        if let Some(prefix) = self.action.rewrite.as_ref().and_then(|r| r.prefix.as_ref()) {
            let at = format!("{field}.action.rewrite.prefix");
            if prefix.default_prefix.is_some() == prefix.value.is_some() {
                return Err(ApiError::bad_request(format!(
                    "{at}: exactly one of defaultPrefix, value is required"
                )));
            }
            if let Some(v) = &prefix.value {
                length(v, 1, 255, &format!("{at}.value"))?;
                if !v.starts_with('/') || !v.ends_with('/') {
                    return Err(ApiError::bad_request(format!(
                        "{at}.value: must start and end with /, not {v:?}"
                    )));
                }
            }
        }
        Ok(())
    }
}

impl Spec for GatewayRouteSpec {
    fn validate(&self) -> Result<(), ApiError> {
        one_of(
            "spec",
            &[
                ("grpcRoute", self.grpc_route.is_some()),
                ("http2Route", self.http2_route.is_some()),
                ("httpRoute", self.http_route.is_some()),
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
            r.action.target.validate("spec.grpcRoute.action.target")?;
            hostname(&r.matcher.hostname, "spec.grpcRoute.match.hostname")?;
            header_matchers(&r.matcher.metadata, "spec.grpcRoute.match.metadata")?;
        }
        Ok(())
    }

    /// Its target: a virtual service of the mesh.
    fn references(&self) -> Vec<Reference> {
        let targets = [
            (
                self.http_route.as_ref().map(|r| &r.action.target),
                "spec.httpRoute.action.target.virtualService.virtualServiceName",
            ),
            (
                self.http2_route.as_ref().map(|r| &r.action.target),
                "spec.http2Route.action.target.virtualService.virtualServiceName",
            ),
            (
                self.grpc_route.as_ref().map(|r| &r.action.target),
                "spec.grpcRoute.action.target.virtualService.virtualServiceName",
            ),
        ];
        targets
            .into_iter()
            .filter_map(|(t, field)| {
                Some(Reference {
                    kind: "virtualService",
                    name: t?.virtual_service.virtual_service_name.clone(),
                    field,
                })
            })
            .collect()
    }
}
