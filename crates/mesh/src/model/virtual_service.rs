//! The virtual service: a name callers use (`spec.provider`: the virtual node or
//! virtual router behind it).

use super::{Reference, Spec};
use crate::ApiError;
use serde::{Deserialize, Serialize};

/// `VirtualServiceSpec`.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct VirtualServiceSpec {
    /// `provider`: none (a service nothing serves yet), a virtual node or a virtual
    /// router.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub provider: Option<VirtualServiceProvider>,
}

/// `VirtualServiceProvider`: exactly one of its members.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct VirtualServiceProvider {
    /// `virtualNode`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub virtual_node: Option<VirtualNodeServiceProvider>,
    /// `virtualRouter`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub virtual_router: Option<VirtualRouterServiceProvider>,
}

/// `VirtualNodeServiceProvider`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct VirtualNodeServiceProvider {
    /// `virtualNodeName`.
    pub virtual_node_name: String,
}

/// `VirtualRouterServiceProvider`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct VirtualRouterServiceProvider {
    /// `virtualRouterName`.
    pub virtual_router_name: String,
}

impl Spec for VirtualServiceSpec {
    fn validate(&self) -> Result<(), ApiError> {
        if let Some(p) = &self.provider {
            match (&p.virtual_node, &p.virtual_router) {
                (Some(n), None) => super::validate_name(
                    &n.virtual_node_name,
                    "spec.provider.virtualNode.virtualNodeName",
                )?,
                (None, Some(r)) => super::validate_name(
                    &r.virtual_router_name,
                    "spec.provider.virtualRouter.virtualRouterName",
                )?,
                _ => {
                    return Err(ApiError::bad_request(
                        "spec.provider: exactly one of virtualNode and virtualRouter is required",
                    ))
                }
            }
        }
        Ok(())
    }

    fn references(&self) -> Vec<Reference> {
        let Some(p) = &self.provider else {
            return Vec::new();
        };
        let node = p.virtual_node.as_ref().map(|n| Reference {
            kind: "virtualNode",
            name: n.virtual_node_name.clone(),
            field: "spec.provider.virtualNode.virtualNodeName",
        });
        let router = p.virtual_router.as_ref().map(|r| Reference {
            kind: "virtualRouter",
            name: r.virtual_router_name.clone(),
            field: "spec.provider.virtualRouter.virtualRouterName",
        });
        node.into_iter().chain(router).collect()
    }
}
