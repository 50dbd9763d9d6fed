//! A registered instance of a virtual node: where one of its replicas answers, the
//! role Cloud Map's service instances played for App Mesh. Registered with the control
//! plane (`ferry register`), fed to the proxies that call the node by EDS.

use super::length;
use crate::ApiError;
use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;

/// An instance: its address, port, attributes (which a node's `awsCloudMap.attributes`
/// select) and health.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct Instance {
    /// An IPv4 or IPv6 address.
    pub address: String,
    /// Its port (1–65535).
    pub port: u32,
    /// Up to 30 attributes.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub attributes: BTreeMap<String, String>,
    /// `HEALTHY` (the default), `UNHEALTHY` or `DRAINING`.
    #[serde(default)]
    pub health: Health,
}

/// An instance's health, as EDS carries it.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "SCREAMING_SNAKE_CASE")]
pub enum Health {
    /// Takes traffic.
    #[default]
    Healthy,
    /// Takes none.
    Unhealthy,
    /// Finishing what it has; takes no new traffic.
    Draining,
}

impl Health {
    /// Envoy's `health_status`.
    pub fn envoy(self) -> &'static str {
        match self {
            Health::Healthy => "HEALTHY",
            Health::Unhealthy => "UNHEALTHY",
            Health::Draining => "DRAINING",
        }
    }
}

/// Checks an instance id: 1–64 letters, digits, `.`, `_` and `-`.
pub fn validate_id(id: &str) -> Result<(), ApiError> {
    let ok = (1..=64).contains(&id.len())
        && id
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b"._-".contains(&b));
    if ok {
        Ok(())
    } else {
        Err(ApiError::bad_request(format!(
            "instanceId: 1 to 64 letters, digits, '.', '_' and '-', not {id:?}"
        )))
    }
}

impl Instance {
    /// Checks it.
    pub fn validate(&self) -> Result<(), ApiError> {
        if self.address.parse::<std::net::IpAddr>().is_err() {
            return Err(ApiError::bad_request(format!(
                "address: an IPv4 or IPv6 address, not {:?}",
                self.address
            )));
        }
        super::range(u64::from(self.port), 1, 65535, "port")?;
        if self.attributes.len() > 30 {
            return Err(ApiError::bad_request(format!(
                "attributes: at most 30, not {}",
                self.attributes.len()
            )));
        }
        for (k, v) in &self.attributes {
            length(k, 1, 255, &format!("attributes.{k}"))?;
            length(v, 1, 1024, &format!("attributes.{k}"))?;
        }
        Ok(())
    }

    /// Whether it has every attribute of `wanted` with its value.
    pub fn matches(&self, wanted: &[(String, String)]) -> bool {
        wanted
            .iter()
            .all(|(k, v)| self.attributes.get(k) == Some(v))
    }
}
