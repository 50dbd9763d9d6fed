//! The virtual gateway: the mesh's ingress (its listeners, the client policy towards
//! the virtual services it routes to, its access log), App Mesh's
//! `VirtualGatewaySpec`. Its shapes are the virtual node's, without TCP and without a
//! listener's outlier detection and timeouts.

use super::extensions::ListenerExtensions;
use super::tls::{ClientPolicy, ListenerTls};
use super::virtual_node::{ConnectionPool, HealthCheckPolicy, Logging};
use super::{PortMapping, PortProtocol, Reference, Spec};
use crate::ApiError;
use serde::{Deserialize, Serialize};

/// `VirtualGatewaySpec`.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct VirtualGatewaySpec {
    /// `backendDefaults`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub backend_defaults: Option<VirtualGatewayBackendDefaults>,
    /// `listeners` (required).
    pub listeners: Vec<VirtualGatewayListener>,
    /// `logging`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub logging: Option<Logging>,
}

/// `VirtualGatewayBackendDefaults`.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct VirtualGatewayBackendDefaults {
    /// `clientPolicy`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub client_policy: Option<ClientPolicy>,
}

/// `VirtualGatewayListener`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct VirtualGatewayListener {
    /// `connectionPool` (no `tcp`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub connection_pool: Option<ConnectionPool>,
    /// `healthCheck` (protocol `http`, `http2` or `grpc`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub health_check: Option<HealthCheckPolicy>,
    /// `portMapping` (protocol `http`, `http2` or `grpc`).
    pub port_mapping: PortMapping,
    /// `tls`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub tls: Option<ListenerTls>,
    /// ferrymesh's extensions ([`ListenerExtensions`]; no `loadBalancer`).
    #[serde(flatten, deserialize_with = "ListenerExtensions::flat")]
    pub extensions: ListenerExtensions,
}

/// A gateway speaks HTTP, HTTP/2 or gRPC.
fn not_tcp(protocol: PortProtocol, field: &str) -> Result<(), ApiError> {
    match protocol {
        PortProtocol::Tcp => Err(ApiError::bad_request(format!(
            "{field}: a virtual gateway speaks http, http2 or grpc, not tcp"
        ))),
        _ => Ok(()),
    }
}

impl Spec for VirtualGatewaySpec {
    fn validate(&self) -> Result<(), ApiError> {
        if self.listeners.is_empty() {
            return Err(ApiError::bad_request("spec.listeners: one is required"));
        }
        if let Some(p) = self
            .backend_defaults
            .as_ref()
            .and_then(|d| d.client_policy.as_ref())
        {
            p.validate("spec.backendDefaults.clientPolicy")?;
        }
        for (i, l) in self.listeners.iter().enumerate() {
            let at = format!("spec.listeners[{i}]");
            l.port_mapping.validate(&format!("{at}.portMapping"))?;
            not_tcp(
                l.port_mapping.protocol,
                &format!("{at}.portMapping.protocol"),
            )?;
            if let Some(p) = &l.connection_pool {
                if p.tcp.is_some() {
                    return Err(ApiError::bad_request(format!(
                        "{at}.connectionPool.tcp: a virtual gateway has no TCP pool"
                    )));
                }
                p.validate(&format!("{at}.connectionPool"))?;
            }
            if let Some(h) = &l.health_check {
                h.validate(&format!("{at}.healthCheck"))?;
                not_tcp(h.protocol, &format!("{at}.healthCheck.protocol"))?;
            }
            if let Some(tls) = &l.tls {
                tls.validate(&format!("{at}.tls"))?;
            }
            l.extensions.validate(&at, true)?;
        }
        if let Some(log) = &self.logging {
            log.validate("spec.logging")?;
        }
        Ok(())
    }

    fn references(&self) -> Vec<Reference> {
        Vec::new()
    }
}
