//! The virtual router: where a virtual service's traffic is routed (its routes, by
//! `spec.listeners[].portMapping`).

use super::{PortMapping, Reference, Spec};
use crate::ApiError;
use serde::{Deserialize, Serialize};

/// `VirtualRouterSpec`.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct VirtualRouterSpec {
    /// `listeners`.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub listeners: Vec<VirtualRouterListener>,
}

/// `VirtualRouterListener`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct VirtualRouterListener {
    /// `portMapping`.
    pub port_mapping: PortMapping,
}

impl Spec for VirtualRouterSpec {
    fn validate(&self) -> Result<(), ApiError> {
        for (i, l) in self.listeners.iter().enumerate() {
            l.port_mapping
                .validate(&format!("spec.listeners[{i}].portMapping"))?;
        }
        Ok(())
    }

    fn references(&self) -> Vec<Reference> {
        Vec::new()
    }
}
