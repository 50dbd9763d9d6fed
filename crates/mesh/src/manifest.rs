//! A resource as files declare it: ferrymesh's own format, which every import format
//! is read into ([`crate::import`]), `ferry apply` sends, and `ferry export` writes:
//!
//! ```yaml
//! kind: VirtualNode            # Mesh, VirtualNode, VirtualService, VirtualRouter,
//!                              # Route, VirtualGateway, GatewayRoute
//! metadata:
//!   mesh: color-mesh           # not for a Mesh
//!   name: colorteller-white
//!   virtualRouter: colorteller # for a Route: its virtual router
//!   virtualGateway: ingress    # for a GatewayRoute: its virtual gateway
//!   tags: [{key: team, value: color}]   # optional; when given, the resource's tags
//! spec: { ... }                # App Mesh's spec, as the API takes it
//! ```

use crate::model::kind::{Kind, Place};
use crate::model::TagRef;
use serde::{Deserialize, Serialize};
use serde_json::Value;

/// The kinds of a manifest, in the order an apply creates them (each after what it
/// may name); a deletion goes the other way.
pub const KIND_ORDER: &[&str] = &[
    "Mesh",
    "VirtualNode",
    "VirtualRouter",
    "VirtualService",
    "Route",
    "VirtualGateway",
    "GatewayRoute",
];

/// One resource.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct Manifest {
    /// `Mesh`, `VirtualNode`, … (App Mesh's type names).
    pub kind: String,
    /// Its names and tags.
    pub metadata: Metadata,
    /// App Mesh's spec.
    #[serde(default)]
    pub spec: Value,
    /// Where it was read (`dir/file.yaml`, document 2), for messages.
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub source: String,
}

/// A manifest's names and tags.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct Metadata {
    /// Its name.
    pub name: String,
    /// Its mesh (every kind but `Mesh`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub mesh: Option<String>,
    /// A route's virtual router.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub virtual_router: Option<String>,
    /// A gateway route's virtual gateway.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub virtual_gateway: Option<String>,
    /// Its tags; absent: the tags are left as they are.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub tags: Option<Vec<TagRef>>,
}

impl Manifest {
    /// Its place in [`KIND_ORDER`] (past the end for an unknown kind).
    pub fn order(&self) -> usize {
        KIND_ORDER
            .iter()
            .position(|k| *k == self.kind)
            .unwrap_or(KIND_ORDER.len())
    }

    /// The API's kind (`None` for a mesh), or an error naming the kinds.
    pub fn api_kind(&self) -> Result<Option<&'static Kind>, String> {
        if self.kind == "Mesh" {
            return Ok(None);
        }
        match Kind::by_name(&camel(&self.kind)) {
            Some(k) if KIND_ORDER.contains(&self.kind.as_str()) => Ok(Some(k)),
            _ => Err(format!(
                "kind: {:?} is not one of {}",
                self.kind,
                KIND_ORDER.join(", ")
            )),
        }
    }

    /// Its mesh, or an error.
    pub fn mesh(&self) -> Result<&str, String> {
        self.metadata
            .mesh
            .as_deref()
            .ok_or_else(|| "metadata.mesh: is required".to_string())
    }

    /// Where it lives (its mesh and parent), for a kind of a mesh.
    pub fn place(&self, kind: &Kind) -> Result<Place<'_>, String> {
        let mesh = self.mesh()?;
        let parent =
            match kind.parent.map(|p| p.name) {
                Some("virtualRouter") => Some(
                    self.metadata
                        .virtual_router
                        .as_deref()
                        .ok_or("metadata.virtualRouter: is required for a Route".to_string())?,
                ),
                Some(_) => Some(self.metadata.virtual_gateway.as_deref().ok_or(
                    "metadata.virtualGateway: is required for a GatewayRoute".to_string(),
                )?),
                None => None,
            };
        Ok(Place { mesh, parent })
    }

    /// How messages name it: `<source>: <Kind> <mesh>/<name>`.
    pub fn label(&self) -> String {
        let name = match (&self.metadata.mesh, self.kind.as_str()) {
            (Some(mesh), k) if k != "Mesh" => {
                let parent = self
                    .metadata
                    .virtual_router
                    .as_ref()
                    .or(self.metadata.virtual_gateway.as_ref());
                match parent {
                    Some(p) => format!("{mesh}/{p}/{}", self.metadata.name),
                    None => format!("{mesh}/{}", self.metadata.name),
                }
            }
            _ => self.metadata.name.clone(),
        };
        if self.source.is_empty() {
            format!("{} {name}", self.kind)
        } else {
            format!("{}: {} {name}", self.source, self.kind)
        }
    }
}

/// `VirtualNode` → `virtualNode`: App Mesh's type names and the API's names of kinds
/// and members differ by their first letter.
pub fn camel(name: &str) -> String {
    let mut out = name.to_string();
    if let Some(first) = out.get_mut(..1) {
        first.make_ascii_lowercase();
    }
    out
}

/// `virtualNode` → `VirtualNode` (the inverse of [`camel`]).
pub fn pascal(name: &str) -> String {
    let mut out = name.to_string();
    if let Some(first) = out.get_mut(..1) {
        first.make_ascii_uppercase();
    }
    out
}

/// Sorts manifests into the order an apply creates them (stable: the files' order
/// within a kind).
pub fn sort_for_apply(manifests: &mut [Manifest]) {
    manifests.sort_by_key(Manifest::order);
}
