//! The virtual node: a workload of the mesh (its listeners, the virtual services it
//! calls, how its instances are found, its access log), App Mesh's `VirtualNodeSpec`.
//!
//! App Mesh's unions (exactly one member set) are structs of optional members here,
//! checked by [`one_of`], so that a missing or a second member is refused with its
//! field path.

use super::{validate_name, IpPreference, PortMapping, PortProtocol, Reference, Spec};
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

/// `ClientPolicy`.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct ClientPolicy {
    /// `tls`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub tls: Option<ClientPolicyTls>,
}

/// `ClientPolicyTls`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct ClientPolicyTls {
    /// `certificate`: the client's certificate (mutual TLS).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub certificate: Option<TlsCertificate>,
    /// `enforce` (App Mesh's default: true).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub enforce: Option<bool>,
    /// `ports`: the ports it applies to (none: all).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub ports: Vec<u32>,
    /// `validation`.
    pub validation: TlsValidationContext,
}

/// `ClientTlsCertificate` and `ListenerTlsCertificate` (which alone has `acm`).
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct TlsCertificate {
    /// `acm` (listeners only).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub acm: Option<AcmCertificate>,
    /// `file`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub file: Option<FileCertificate>,
    /// `sds`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub sds: Option<SdsSecret>,
}

/// `ListenerTlsAcmCertificate`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct AcmCertificate {
    /// `certificateArn`.
    pub certificate_arn: String,
}

/// `ListenerTlsFileCertificate`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct FileCertificate {
    /// `certificateChain` (a file path, 1–255 characters).
    pub certificate_chain: String,
    /// `privateKey` (a file path).
    pub private_key: String,
}

/// `ListenerTlsSdsCertificate`, `TlsValidationContextSdsTrust`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct SdsSecret {
    /// `secretName`.
    pub secret_name: String,
}

/// `TlsValidationContext`, `ListenerTlsValidationContext` (whose trust has no `acm`).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct TlsValidationContext {
    /// `subjectAlternativeNames`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub subject_alternative_names: Option<SubjectAlternativeNames>,
    /// `trust`.
    pub trust: TlsValidationTrust,
}

/// `SubjectAlternativeNames`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct SubjectAlternativeNames {
    /// `match`.
    #[serde(rename = "match")]
    pub matchers: SubjectAlternativeNameMatchers,
}

/// `SubjectAlternativeNameMatchers`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct SubjectAlternativeNameMatchers {
    /// `exact`.
    pub exact: Vec<String>,
}

/// `TlsValidationContextTrust`.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct TlsValidationTrust {
    /// `acm` (clients only).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub acm: Option<AcmTrust>,
    /// `file`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub file: Option<FileTrust>,
    /// `sds`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub sds: Option<SdsSecret>,
}

/// `TlsValidationContextAcmTrust`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct AcmTrust {
    /// `certificateAuthorityArns` (1–3).
    pub certificate_authority_arns: Vec<String>,
}

/// `TlsValidationContextFileTrust`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct FileTrust {
    /// `certificateChain`.
    pub certificate_chain: String,
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

/// `ListenerTls`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct ListenerTls {
    /// `certificate`.
    pub certificate: TlsCertificate,
    /// `mode`.
    pub mode: ListenerTlsMode,
    /// `validation`: the clients' certificates (mutual TLS).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub validation: Option<TlsValidationContext>,
}

/// `ListenerTlsMode`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "UPPERCASE")]
pub enum ListenerTlsMode {
    /// `STRICT`: TLS only.
    Strict,
    /// `PERMISSIVE`: TLS or plain text.
    Permissive,
    /// `DISABLED`.
    Disabled,
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

/// `ServiceDiscovery`.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct ServiceDiscovery {
    /// `awsCloudMap`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub aws_cloud_map: Option<AwsCloudMapServiceDiscovery>,
    /// `dns`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub dns: Option<DnsServiceDiscovery>,
}

/// `AwsCloudMapServiceDiscovery`: instances registered under a namespace and a
/// service (with ferrymesh: registered with the control plane).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct AwsCloudMapServiceDiscovery {
    /// `attributes`: the instances' attributes to match.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub attributes: Vec<AwsCloudMapInstanceAttribute>,
    /// `ipPreference`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub ip_preference: Option<IpPreference>,
    /// `namespaceName` (1–1,024 characters).
    pub namespace_name: String,
    /// `serviceName` (1–1,024 characters).
    pub service_name: String,
}

/// `AwsCloudMapInstanceAttribute`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct AwsCloudMapInstanceAttribute {
    /// `key` (1–255 characters).
    pub key: String,
    /// `value` (1–1,024 characters).
    pub value: String,
}

/// `DnsServiceDiscovery`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct DnsServiceDiscovery {
    /// `hostname`.
    pub hostname: String,
    /// `ipPreference`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub ip_preference: Option<IpPreference>,
    /// `responseType`: `LOADBALANCER` (one address, as a load balancer's) or
    /// `ENDPOINTS` (every address).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub response_type: Option<DnsResponseType>,
}

/// `DnsResponseType`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "UPPERCASE")]
pub enum DnsResponseType {
    /// `LOADBALANCER`.
    Loadbalancer,
    /// `ENDPOINTS`.
    Endpoints,
}

/// Checks that exactly one member of a union is set.
fn one_of(field: &str, members: &[(&str, bool)]) -> Result<(), ApiError> {
    let set: Vec<&str> = members
        .iter()
        .filter(|(_, s)| *s)
        .map(|(n, _)| *n)
        .collect();
    if set.len() == 1 {
        return Ok(());
    }
    let names: Vec<&str> = members.iter().map(|(n, _)| *n).collect();
    Err(ApiError::bad_request(format!(
        "{field}: exactly one of {} is required{}",
        names.join(", "),
        if set.is_empty() {
            String::new()
        } else {
            format!(", not {}", set.join(" and "))
        }
    )))
}

fn range(value: u64, min: u64, max: u64, field: &str) -> Result<(), ApiError> {
    if value < min || value > max {
        return Err(ApiError::bad_request(format!(
            "{field}: must be {min} to {max}, not {value}"
        )));
    }
    Ok(())
}

fn text(value: &str, min: usize, max: usize, field: &str) -> Result<(), ApiError> {
    super::length(value, min, max, field)
}

impl TlsCertificate {
    fn validate(&self, field: &str, acm_allowed: bool) -> Result<(), ApiError> {
        let mut members = vec![("file", self.file.is_some()), ("sds", self.sds.is_some())];
        if acm_allowed || self.acm.is_some() {
            members.insert(0, ("acm", self.acm.is_some()));
        }
        if !acm_allowed && self.acm.is_some() {
            return Err(ApiError::bad_request(format!(
                "{field}.acm: a client certificate is a file or an SDS secret"
            )));
        }
        one_of(field, &members)?;
        if let Some(f) = &self.file {
            text(
                &f.certificate_chain,
                1,
                255,
                &format!("{field}.file.certificateChain"),
            )?;
            text(&f.private_key, 1, 255, &format!("{field}.file.privateKey"))?;
        }
        Ok(())
    }
}

impl TlsValidationContext {
    fn validate(&self, field: &str, acm_allowed: bool) -> Result<(), ApiError> {
        let t = &self.trust;
        let at = format!("{field}.trust");
        if !acm_allowed && t.acm.is_some() {
            return Err(ApiError::bad_request(format!(
                "{at}.acm: a listener trusts a file or an SDS secret"
            )));
        }
        one_of(
            &at,
            &[
                ("acm", t.acm.is_some()),
                ("file", t.file.is_some()),
                ("sds", t.sds.is_some()),
            ],
        )?;
        if let Some(acm) = &t.acm {
            let n = acm.certificate_authority_arns.len() as u64;
            range(
                n,
                1,
                3,
                &format!("{at}.acm.certificateAuthorityArns (count)"),
            )?;
        }
        if let Some(f) = &t.file {
            text(
                &f.certificate_chain,
                1,
                255,
                &format!("{at}.file.certificateChain"),
            )?;
        }
        if let Some(san) = &self.subject_alternative_names {
            for (i, name) in san.matchers.exact.iter().enumerate() {
                let field = format!("{field}.subjectAlternativeNames.match.exact[{i}]");
                text(name, 1, 254, &field)?;
            }
        }
        Ok(())
    }
}

impl ClientPolicy {
    fn validate(&self, field: &str) -> Result<(), ApiError> {
        let Some(tls) = &self.tls else {
            return Ok(());
        };
        if let Some(c) = &tls.certificate {
            c.validate(&format!("{field}.tls.certificate"), false)?;
        }
        for (i, p) in tls.ports.iter().enumerate() {
            range(u64::from(*p), 1, 65535, &format!("{field}.tls.ports[{i}]"))?;
        }
        tls.validation
            .validate(&format!("{field}.tls.validation"), true)
    }
}

impl Listener {
    fn validate(&self, field: &str) -> Result<(), ApiError> {
        self.port_mapping
            .validate(&format!("{field}.portMapping"))?;
        if let Some(p) = &self.connection_pool {
            let at = format!("{field}.connectionPool");
            one_of(
                &at,
                &[
                    ("grpc", p.grpc.is_some()),
                    ("http", p.http.is_some()),
                    ("http2", p.http2.is_some()),
                    ("tcp", p.tcp.is_some()),
                ],
            )?;
            let min1 =
                |v: u32, f: &str| range(u64::from(v), 1, u64::from(u32::MAX), &format!("{at}.{f}"));
            if let Some(g) = &p.grpc {
                min1(g.max_requests, "grpc.maxRequests")?;
            }
            if let Some(h) = &p.http2 {
                min1(h.max_requests, "http2.maxRequests")?;
            }
            if let Some(h) = &p.http {
                min1(h.max_connections, "http.maxConnections")?;
                if let Some(m) = h.max_pending_requests {
                    min1(m, "http.maxPendingRequests")?;
                }
            }
            if let Some(t) = &p.tcp {
                min1(t.max_connections, "tcp.maxConnections")?;
            }
        }
        if let Some(h) = &self.health_check {
            let at = format!("{field}.healthCheck");
            range(
                u64::from(h.healthy_threshold),
                2,
                10,
                &format!("{at}.healthyThreshold"),
            )?;
            range(
                u64::from(h.unhealthy_threshold),
                2,
                10,
                &format!("{at}.unhealthyThreshold"),
            )?;
            range(
                h.interval_millis,
                5000,
                300_000,
                &format!("{at}.intervalMillis"),
            )?;
            range(
                h.timeout_millis,
                2000,
                60_000,
                &format!("{at}.timeoutMillis"),
            )?;
            if let Some(p) = h.port {
                range(u64::from(p), 1, 65535, &format!("{at}.port"))?;
            }
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
            tls.certificate
                .validate(&format!("{field}.tls.certificate"), true)?;
            if let Some(v) = &tls.validation {
                v.validate(&format!("{field}.tls.validation"), false)?;
            }
        }
        Ok(())
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
        if let Some(log) = self.logging.as_ref().and_then(|l| l.access_log.as_ref()) {
            let Some(file) = &log.file else {
                return Err(ApiError::bad_request(
                    "spec.logging.accessLog: exactly one of file is required",
                ));
            };
            text(&file.path, 1, 255, "spec.logging.accessLog.file.path")?;
            if let Some(f) = &file.format {
                let at = "spec.logging.accessLog.file.format";
                one_of(
                    at,
                    &[("json", f.json.is_some()), ("text", f.text.is_some())],
                )?;
                if let Some(t) = &f.text {
                    text(t, 1, 1000, &format!("{at}.text"))?;
                }
                for (i, j) in f.json.iter().flatten().enumerate() {
                    text(&j.key, 1, 100, &format!("{at}.json[{i}].key"))?;
                    text(&j.value, 1, 100, &format!("{at}.json[{i}].value"))?;
                }
            }
        }
        if let Some(sd) = &self.service_discovery {
            one_of(
                "spec.serviceDiscovery",
                &[
                    ("awsCloudMap", sd.aws_cloud_map.is_some()),
                    ("dns", sd.dns.is_some()),
                ],
            )?;
            if let Some(c) = &sd.aws_cloud_map {
                let at = "spec.serviceDiscovery.awsCloudMap";
                text(&c.namespace_name, 1, 1024, &format!("{at}.namespaceName"))?;
                text(&c.service_name, 1, 1024, &format!("{at}.serviceName"))?;
                for (i, a) in c.attributes.iter().enumerate() {
                    text(&a.key, 1, 255, &format!("{at}.attributes[{i}].key"))?;
                    text(&a.value, 1, 1024, &format!("{at}.attributes[{i}].value"))?;
                }
            }
            if let Some(d) = &sd.dns {
                text(&d.hostname, 1, 253, "spec.serviceDiscovery.dns.hostname")?;
            }
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
