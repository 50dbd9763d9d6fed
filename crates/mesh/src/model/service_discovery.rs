//! How a virtual node's instances are found: App Mesh's `ServiceDiscovery` (DNS, with
//! its response type and IP preference, or Cloud Map — with ferrymesh, instances
//! registered with the control plane), and its checks.

use super::{length, one_of, IpPreference};
use crate::ApiError;
use serde::{Deserialize, Serialize};

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

impl ServiceDiscovery {
    /// Checks it; `field` is its path.
    pub(crate) fn validate(&self, field: &str) -> Result<(), ApiError> {
        one_of(
            field,
            &[
                ("awsCloudMap", self.aws_cloud_map.is_some()),
                ("dns", self.dns.is_some()),
            ],
        )?;
        if let Some(c) = &self.aws_cloud_map {
            let at = format!("{field}.awsCloudMap");
            length(&c.namespace_name, 1, 1024, &format!("{at}.namespaceName"))?;
            length(&c.service_name, 1, 1024, &format!("{at}.serviceName"))?;
            for (i, a) in c.attributes.iter().enumerate() {
                length(&a.key, 1, 255, &format!("{at}.attributes[{i}].key"))?;
                length(&a.value, 1, 1024, &format!("{at}.attributes[{i}].value"))?;
                // App Mesh's patterns: printable ASCII; no space in a key, none at
                // either end of a value.
                let printable = |s: &str, spaces: bool| {
                    s.bytes()
                        .all(|b| (b'!'..=b'~').contains(&b) || (spaces && b == b' '))
                };
                if !printable(&a.key, false) {
                    return Err(ApiError::bad_request(format!(
                        "{at}.attributes[{i}].key: printable ASCII without spaces, not {:?}",
                        a.key
                    )));
                }
                if !printable(&a.value, true) || a.value.starts_with(' ') || a.value.ends_with(' ')
                {
                    return Err(ApiError::bad_request(format!(
                        "{at}.attributes[{i}].value: printable ASCII, no space at either end, not {:?}",
                        a.value
                    )));
                }
            }
        }
        if let Some(d) = &self.dns {
            length(&d.hostname, 1, 253, &format!("{field}.dns.hostname"))?;
        }
        Ok(())
    }
}
