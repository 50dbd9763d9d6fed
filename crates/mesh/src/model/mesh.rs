//! The mesh: `MeshSpec` (egress filter, IP preference), `MeshData` as App Mesh returns
//! it, `MeshRef` in lists, and the inputs of the mesh operations.

use super::{ResourceMetadata, TagRef};
use serde::{Deserialize, Serialize};

/// `MeshSpec`.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct MeshSpec {
    /// `egressFilter`: whether proxies may reach destinations outside the mesh
    /// (App Mesh's default: `DROP_ALL`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub egress_filter: Option<EgressFilter>,
    /// `serviceDiscovery`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub service_discovery: Option<MeshServiceDiscovery>,
}

/// `EgressFilter`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct EgressFilter {
    /// `type`.
    #[serde(rename = "type")]
    pub kind: EgressFilterType,
}

/// `EgressFilterType`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub enum EgressFilterType {
    /// `ALLOW_ALL`: any destination.
    #[serde(rename = "ALLOW_ALL")]
    AllowAll,
    /// `DROP_ALL`: destinations of the mesh only.
    #[serde(rename = "DROP_ALL")]
    DropAll,
}

/// `MeshServiceDiscovery`.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct MeshServiceDiscovery {
    /// `ipPreference`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub ip_preference: Option<IpPreference>,
}

/// `IpPreference`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub enum IpPreference {
    /// `IPv6_PREFERRED`.
    #[serde(rename = "IPv6_PREFERRED")]
    Ipv6Preferred,
    /// `IPv4_PREFERRED`.
    #[serde(rename = "IPv4_PREFERRED")]
    Ipv4Preferred,
    /// `IPv4_ONLY`.
    #[serde(rename = "IPv4_ONLY")]
    Ipv4Only,
    /// `IPv6_ONLY`.
    #[serde(rename = "IPv6_ONLY")]
    Ipv6Only,
}

/// `MeshStatus`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct MeshStatus {
    /// `status`.
    pub status: MeshStatusCode,
}

/// `MeshStatusCode`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub enum MeshStatusCode {
    /// `ACTIVE`.
    #[serde(rename = "ACTIVE")]
    Active,
    /// `INACTIVE`.
    #[serde(rename = "INACTIVE")]
    Inactive,
    /// `DELETED`: what a deletion returns.
    #[serde(rename = "DELETED")]
    Deleted,
}

/// `MeshData`: a mesh as `DescribeMesh` returns it.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct MeshData {
    /// `meshName`.
    pub mesh_name: String,
    /// `metadata`.
    pub metadata: ResourceMetadata,
    /// `spec`.
    pub spec: MeshSpec,
    /// `status`.
    pub status: MeshStatus,
}

impl MeshData {
    /// `MeshRef`: the mesh in `ListMeshes`.
    pub fn reference(&self) -> MeshRef {
        let m = &self.metadata;
        MeshRef {
            arn: m.arn.clone(),
            created_at: m.created_at,
            last_updated_at: m.last_updated_at,
            mesh_name: self.mesh_name.clone(),
            mesh_owner: m.mesh_owner.clone(),
            resource_owner: m.resource_owner.clone(),
            version: m.version,
        }
    }
}

/// `MeshRef`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct MeshRef {
    /// `arn`.
    pub arn: String,
    /// `createdAt`.
    pub created_at: f64,
    /// `lastUpdatedAt`.
    pub last_updated_at: f64,
    /// `meshName`.
    pub mesh_name: String,
    /// `meshOwner`.
    pub mesh_owner: String,
    /// `resourceOwner`.
    pub resource_owner: String,
    /// `version`.
    pub version: i64,
}

/// `CreateMeshInput` (its body).
#[derive(Debug, Clone, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct CreateMesh {
    /// `meshName`.
    pub mesh_name: String,
    /// `spec`.
    #[serde(default)]
    pub spec: Option<MeshSpec>,
    /// `tags`.
    #[serde(default)]
    pub tags: Vec<TagRef>,
    /// `clientToken`: a create sent again with the same token is the same create.
    #[serde(default)]
    pub client_token: Option<String>,
}

/// `UpdateMeshInput` (its body; the name is in the path).
#[derive(Debug, Clone, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct UpdateMesh {
    /// `spec`.
    #[serde(default)]
    pub spec: Option<MeshSpec>,
    /// `clientToken`.
    #[serde(default)]
    pub client_token: Option<String>,
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::expect_used)]
    use super::*;
    use crate::model::from_json;

    #[test]
    fn specs_take_app_mesh_names_and_refuse_unknown_fields() {
        let c: CreateMesh = from_json(
            br#"{"meshName": "m", "spec": {"egressFilter": {"type": "ALLOW_ALL"},
                 "serviceDiscovery": {"ipPreference": "IPv4_ONLY"}}}"#,
        )
        .unwrap();
        let spec = c.spec.unwrap();
        assert_eq!(
            spec.egress_filter,
            Some(EgressFilter {
                kind: EgressFilterType::AllowAll
            })
        );
        let e = from_json::<CreateMesh>(br#"{"meshName": "m", "spec": {"egresFilter": {}}}"#)
            .unwrap_err();
        assert!(
            e.message.starts_with("spec.egresFilter: unknown field"),
            "{}",
            e.message
        );
        let e = from_json::<CreateMesh>(
            br#"{"meshName": "m", "spec": {"egressFilter": {"type": "SOME"}}}"#,
        )
        .unwrap_err();
        assert!(
            e.message
                .starts_with("spec.egressFilter.type: unknown variant"),
            "{}",
            e.message
        );
    }
}
