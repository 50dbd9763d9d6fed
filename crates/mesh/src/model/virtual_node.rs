//! The virtual node: a workload of the mesh (its listeners, the virtual services it
//! calls, how its instances are found, its access log), App Mesh's `VirtualNodeSpec`.
//!
//! App Mesh's unions (exactly one member set) are structs of optional members here,
//! checked by [`one_of`](super::one_of), so that a missing or a second member is
//! refused with its field path. The TLS shapes are in [`tls`](super::tls).

use super::extensions::{ListenerExtensions, OutlierDetectionExtensions};
pub use super::service_discovery::{
    AwsCloudMapInstanceAttribute, AwsCloudMapServiceDiscovery, DnsResponseType,
    DnsServiceDiscovery, ServiceDiscovery,
};
use super::tls::{ClientPolicy, ListenerTls};
use super::{length, one_of, range, validate_name, PortMapping, PortProtocol};
use super::{Reference, Spec};
use crate::ApiError;
use serde::{Deserialize, Serialize};

/// `VirtualNodeSpec`.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct VirtualNodeSpec {
    /// `backendDefaults`: the client policy of every backend without its own.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub backend_defaults: Option<BackendDefaults>,
    /// `backends`: the virtual services it calls (they need not exist yet).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub backends: Vec<Backend>,
    /// `listeners`.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub listeners: Vec<Listener>,
    /// `logging`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub logging: Option<Logging>,
    /// `serviceDiscovery`: how its instances are found.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub service_discovery: Option<ServiceDiscovery>,
}

/// `BackendDefaults`.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct BackendDefaults {
    /// `clientPolicy`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub client_policy: Option<ClientPolicy>,
}

/// `Backend`.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct Backend {
    /// `virtualService`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub virtual_service: Option<VirtualServiceBackend>,
}

/// `VirtualServiceBackend`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct VirtualServiceBackend {
    /// `clientPolicy`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub client_policy: Option<ClientPolicy>,
    /// `virtualServiceName`.
    pub virtual_service_name: String,
}

/// `Listener`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct Listener {
    /// `connectionPool`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub connection_pool: Option<ConnectionPool>,
    /// `healthCheck`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub health_check: Option<HealthCheckPolicy>,
    /// `outlierDetection`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub outlier_detection: Option<OutlierDetection>,
    /// `portMapping`.
    pub port_mapping: PortMapping,
    /// `timeout`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub timeout: Option<ListenerTimeout>,
    /// `tls`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub tls: Option<ListenerTls>,
    /// ferrymesh's extensions ([`ListenerExtensions`]).
    #[serde(flatten, deserialize_with = "ListenerExtensions::flat")]
    pub extensions: ListenerExtensions,
}

/// `VirtualNodeConnectionPool`.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct ConnectionPool {
    /// `grpc`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub grpc: Option<MaxRequestsPool>,
    /// `http`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub http: Option<HttpConnectionPool>,
    /// `http2`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub http2: Option<MaxRequestsPool>,
    /// `tcp`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub tcp: Option<TcpConnectionPool>,
}

/// `VirtualNodeGrpcConnectionPool`, `VirtualNodeHttp2ConnectionPool`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct MaxRequestsPool {
    /// `maxRequests` (at least 1).
    pub max_requests: u32,
}

/// `VirtualNodeHttpConnectionPool`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct HttpConnectionPool {
    /// `maxConnections` (at least 1).
    pub max_connections: u32,
    /// `maxPendingRequests` (at least 1).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub max_pending_requests: Option<u32>,
}

/// `VirtualNodeTcpConnectionPool`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct TcpConnectionPool {
    /// `maxConnections` (at least 1).
    pub max_connections: u32,
}

/// `HealthCheckPolicy`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct HealthCheckPolicy {
    /// `healthyThreshold` (2–10).
    pub healthy_threshold: u32,
    /// `intervalMillis` (5,000–300,000).
    pub interval_millis: u64,
    /// `path` (HTTP and HTTP/2).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub path: Option<String>,
    /// `port` (default: the listener's).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub port: Option<u32>,
    /// `protocol`.
    pub protocol: PortProtocol,
    /// `timeoutMillis` (2,000–60,000).
    pub timeout_millis: u64,
    /// `unhealthyThreshold` (2–10).
    pub unhealthy_threshold: u32,
}

/// `OutlierDetection`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct OutlierDetection {
    /// `baseEjectionDuration`.
    pub base_ejection_duration: Duration,
    /// `interval`.
    pub interval: Duration,
    /// `maxEjectionPercent` (0–100).
    pub max_ejection_percent: u32,
    /// `maxServerErrors` (at least 1).
    pub max_server_errors: u64,
    /// ferrymesh's extensions: Envoy's other settings.
    #[serde(flatten, deserialize_with = "OutlierDetectionExtensions::flat")]
    pub extensions: OutlierDetectionExtensions,
}

/// `Duration`: `{value, unit}`.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct Duration {
    /// `unit`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub unit: Option<DurationUnit>,
    /// `value` (at least 0).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub value: Option<u64>,
}

/// `DurationUnit`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum DurationUnit {
    /// `s`.
    S,
    /// `ms`.
    Ms,
}

/// `ListenerTimeout`.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct ListenerTimeout {
    /// `grpc`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub grpc: Option<RequestTimeout>,
    /// `http`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub http: Option<RequestTimeout>,
    /// `http2`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub http2: Option<RequestTimeout>,
    /// `tcp`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub tcp: Option<TcpTimeout>,
}

/// `GrpcTimeout`, `HttpTimeout`.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct RequestTimeout {
    /// `idle`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub idle: Option<Duration>,
    /// `perRequest`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub per_request: Option<Duration>,
}

/// `TcpTimeout`.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct TcpTimeout {
    /// `idle`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub idle: Option<Duration>,
}

/// `Logging`.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct Logging {
    /// `accessLog`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub access_log: Option<AccessLog>,
}

/// `AccessLog`.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct AccessLog {
    /// `file`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub file: Option<FileAccessLog>,
}

/// `FileAccessLog`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct FileAccessLog {
    /// `format`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub format: Option<LoggingFormat>,
    /// `path` (1–255 characters; `/dev/stdout` as App Mesh's examples).
    pub path: String,
}

/// `LoggingFormat`.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct LoggingFormat {
    /// `json`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub json: Option<Vec<JsonFormatRef>>,
    /// `text` (1–1,000 characters).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub text: Option<String>,
}

/// `JsonFormatRef`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct JsonFormatRef {
    /// `key` (1–100 characters).
    pub key: String,
    /// `value` (1–100 characters).
    pub value: String,
}

impl ConnectionPool {
    /// Checks it; `field` is its path.
    pub(crate) fn validate(&self, field: &str) -> Result<(), ApiError> {
        one_of(
            field,
            &[
                ("grpc", self.grpc.is_some()),
                ("http", self.http.is_some()),
                ("http2", self.http2.is_some()),
                ("tcp", self.tcp.is_some()),
            ],
        )?;
        let min1 = |v: u32, f: &str| {
            range(
                u64::from(v),
                1,
                u64::from(u32::MAX),
                &format!("{field}.{f}"),
            )
        };
        if let Some(g) = &self.grpc {
            min1(g.max_requests, "grpc.maxRequests")?;
        }
        if let Some(h) = &self.http2 {
            min1(h.max_requests, "http2.maxRequests")?;
        }
        if let Some(h) = &self.http {
            min1(h.max_connections, "http.maxConnections")?;
            if let Some(m) = h.max_pending_requests {
                min1(m, "http.maxPendingRequests")?;
            }
        }
        if let Some(t) = &self.tcp {
            min1(t.max_connections, "tcp.maxConnections")?;
        }
        Ok(())
    }
}

impl HealthCheckPolicy {
    /// Checks its ranges; `field` is its path.
    pub(crate) fn validate(&self, field: &str) -> Result<(), ApiError> {
        let threshold = |v: u32, f: &str| range(u64::from(v), 2, 10, &format!("{field}.{f}"));
        threshold(self.healthy_threshold, "healthyThreshold")?;
        threshold(self.unhealthy_threshold, "unhealthyThreshold")?;
        range(
            self.interval_millis,
            5000,
            300_000,
            &format!("{field}.intervalMillis"),
        )?;
        range(
            self.timeout_millis,
            2000,
            60_000,
            &format!("{field}.timeoutMillis"),
        )?;
        if let Some(p) = self.port {
            range(u64::from(p), 1, 65535, &format!("{field}.port"))?;
        }
        Ok(())
    }
}

impl Logging {
    /// Checks it; `field` is its path.
    pub(crate) fn validate(&self, field: &str) -> Result<(), ApiError> {
        let Some(log) = &self.access_log else {
            return Ok(());
        };
        let Some(file) = &log.file else {
            return Err(ApiError::bad_request(format!(
                "{field}.accessLog: exactly one of file is required"
            )));
        };
        length(&file.path, 1, 255, &format!("{field}.accessLog.file.path"))?;
        if let Some(f) = &file.format {
            let at = &format!("{field}.accessLog.file.format");
            one_of(
                at,
                &[("json", f.json.is_some()), ("text", f.text.is_some())],
            )?;
            if let Some(t) = &f.text {
                length(t, 1, 1000, &format!("{at}.text"))?;
            }
            for (i, j) in f.json.iter().flatten().enumerate() {
                length(&j.key, 1, 100, &format!("{at}.json[{i}].key"))?;
                length(&j.value, 1, 100, &format!("{at}.json[{i}].value"))?;
            }
        }
        Ok(())
    }
}

impl Listener {
    fn validate(&self, field: &str) -> Result<(), ApiError> {
        self.port_mapping
            .validate(&format!("{field}.portMapping"))?;
        if let Some(p) = &self.connection_pool {
            p.validate(&format!("{field}.connectionPool"))?;
        }
        if let Some(h) = &self.health_check {
            h.validate(&format!("{field}.healthCheck"))?;
        }
        if let Some(o) = &self.outlier_detection {
            let at = format!("{field}.outlierDetection");
            range(
                u64::from(o.max_ejection_percent),
                0,
                100,
                &format!("{at}.maxEjectionPercent"),
            )?;
            range(
                o.max_server_errors,
                1,
                u64::MAX,
                &format!("{at}.maxServerErrors"),
            )?;
            o.extensions.validate(&at)?;
        }
        if let Some(t) = &self.timeout {
            one_of(
                &format!("{field}.timeout"),
                &[
                    ("grpc", t.grpc.is_some()),
                    ("http", t.http.is_some()),
                    ("http2", t.http2.is_some()),
                    ("tcp", t.tcp.is_some()),
                ],
            )?;
        }
        if let Some(tls) = &self.tls {
            tls.validate(&format!("{field}.tls"))?;
        }
        self.extensions.validate(field, false)
    }
}

impl Spec for VirtualNodeSpec {
    fn validate(&self) -> Result<(), ApiError> {
        if let Some(p) = self
            .backend_defaults
            .as_ref()
            .and_then(|d| d.client_policy.as_ref())
        {
            p.validate("spec.backendDefaults.clientPolicy")?;
        }
        for (i, b) in self.backends.iter().enumerate() {
            let at = format!("spec.backends[{i}]");
            let Some(vs) = &b.virtual_service else {
                return Err(ApiError::bad_request(format!(
                    "{at}: exactly one of virtualService is required"
                )));
            };
            validate_name(
                &vs.virtual_service_name,
                &format!("{at}.virtualService.virtualServiceName"),
            )?;
            if let Some(p) = &vs.client_policy {
                p.validate(&format!("{at}.virtualService.clientPolicy"))?;
            }
        }
        for (i, l) in self.listeners.iter().enumerate() {
            l.validate(&format!("spec.listeners[{i}]"))?;
        }
        if let Some(log) = &self.logging {
            log.validate("spec.logging")?;
        }
        if let Some(sd) = &self.service_discovery {
            sd.validate("spec.serviceDiscovery")?;
        }
        Ok(())
    }

    /// None: App Mesh lets a node name backends that do not exist yet (walkthroughs
    /// create nodes before their services).
    fn references(&self) -> Vec<Reference> {
        Vec::new()
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::expect_used)]
    use crate::model::kind::VIRTUAL_NODE;
    use serde_json::json;

    fn problem(spec: serde_json::Value) -> String {
        (VIRTUAL_NODE.spec)(&spec).unwrap_err().message
    }

    #[test]
    fn problems_name_their_field() {
        let listener = |extra: serde_json::Value| {
            let mut l = json!({"portMapping": {"port": 8080, "protocol": "http"}});
            l.as_object_mut()
                .unwrap()
                .extend(extra.as_object().unwrap().clone());
            json!({ "listeners": [l] })
        };
        let hc = json!({"healthCheck": {"protocol": "http", "healthyThreshold": 1,
            "unhealthyThreshold": 2, "timeoutMillis": 2000, "intervalMillis": 5000}});
        assert_eq!(
            problem(listener(hc)),
            "spec.listeners[0].healthCheck.healthyThreshold: must be 2 to 10, not 1"
        );
        assert_eq!(
            problem(json!({"serviceDiscovery": {}})),
            "spec.serviceDiscovery: exactly one of awsCloudMap, dns is required"
        );
        assert_eq!(
            problem(listener(json!({"connectionPool": {"http": {"maxConnections": 1}, "tcp": {"maxConnections": 1}}}))),
            "spec.listeners[0].connectionPool: exactly one of grpc, http, http2, tcp is required, not http and tcp"
        );
        assert!(problem(listener(
            json!({"tls": {"mode": "STRICT", "certificate": {}}})
        ))
        .starts_with("spec.listeners[0].tls.certificate: exactly one of acm, file, sds"),);
        assert!(
            problem(json!({"listeners": [{"portMapping": {"port": 1, "protocol": "udp"}}]}))
                .starts_with("spec.listeners[0].portMapping.protocol: unknown variant `udp`")
        );
        let (stored, refs) = (VIRTUAL_NODE.spec)(&json!({
            "serviceDiscovery": {"dns": {"hostname": "red.local"}},
            "backends": [{"virtualService": {"virtualServiceName": "blue.local"}}],
        }))
        .unwrap();
        assert_eq!(stored["serviceDiscovery"]["dns"]["hostname"], "red.local");
        assert!(refs.is_empty(), "backends need not exist");
    }
}
