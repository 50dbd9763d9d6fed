//! The kinds of resources that live in a mesh, as the API and the store name them: a
//! kind's path segment, its name member, its list member, and how its spec is read.

use super::{Reference, Spec};
use crate::ApiError;
use serde_json::Value;

/// A kind of resource of a mesh.
#[derive(Debug)]
pub struct Kind {
    /// Its name in keys and ARNs (`virtualService`).
    pub name: &'static str,
    /// Its path segment (`virtualServices`), also the list member of its List output.
    pub collection: &'static str,
    /// The member that names a resource (`virtualServiceName`).
    pub name_member: &'static str,
    /// Reads a spec: the spec as stored (normalized) and the resources it names.
    pub spec: fn(&Value) -> Result<ReadSpec, ApiError>,
    /// The resources a stored spec names (not checked again: a rule made stricter later
    /// does not block deletions).
    pub references: fn(&Value) -> Vec<Reference>,
    /// The kinds its specs can name (what [`Kind::references`] may return).
    pub names: &'static [&'static str],
    /// The kind its resources live in (a route: its virtual router; in paths and ARNs
    /// by that kind's name, `virtualRouter/<name>`), if not the mesh alone.
    pub parent: Option<&'static Kind>,
}

/// Where a resource lives: its mesh, and its parent (a route's virtual router).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Place<'a> {
    /// The mesh.
    pub mesh: &'a str,
    /// The parent's name, for a kind that has one.
    pub parent: Option<&'a str>,
}

/// A spec as stored (normalized), and the resources it names.
pub type ReadSpec = (Value, Vec<Reference>);

/// Reads a spec of type `S`, its problems named from `spec.`.
pub fn read_spec<S: serde::de::DeserializeOwned>(value: &Value) -> Result<S, ApiError> {
    serde_path_to_error::deserialize(value).map_err(|e| {
        let path = e.path().to_string();
        let mut at = if path == "." {
            "spec".to_string()
        } else {
            format!("spec.{path}")
        };
        let mut message = e.into_inner().to_string();
        // A problem inside a flattened extension names its own path.
        let mark = super::extensions::PATH_MARK;
        if let Some((inner, rest)) = message.strip_prefix(mark).and_then(|m| m.split_once(mark)) {
            if inner != "." {
                at = format!("{at}.{inner}");
            }
            message = rest.to_string();
        }
        ApiError::bad_request(format!("{at}: {message}"))
    })
}

/// Reads a spec of type `S` (its problems named from `spec.`), checks it, and writes it
/// back as stored.
fn spec<S: Spec>(value: &Value) -> Result<ReadSpec, ApiError> {
    let spec: S = read_spec(value)?;
    spec.validate()?;
    let stored = serde_json::to_value(&spec).map_err(|e| ApiError::internal(e.to_string()))?;
    Ok((stored, spec.references()))
}

/// `VirtualNode`.
pub const VIRTUAL_NODE: Kind = Kind {
    name: "virtualNode",
    collection: "virtualNodes",
    name_member: "virtualNodeName",
    spec: spec::<super::virtual_node::VirtualNodeSpec>,
    references: references::<super::virtual_node::VirtualNodeSpec>,
    names: &[],
    parent: None,
};

/// The resources a stored spec of type `S` names.
fn references<S: Spec>(value: &Value) -> Vec<Reference> {
    serde_json::from_value::<S>(value.clone())
        .map(|s| s.references())
        .unwrap_or_default()
}

/// `VirtualService`.
pub const VIRTUAL_SERVICE: Kind = Kind {
    name: "virtualService",
    collection: "virtualServices",
    name_member: "virtualServiceName",
    spec: spec::<super::virtual_service::VirtualServiceSpec>,
    references: references::<super::virtual_service::VirtualServiceSpec>,
    names: &["virtualNode", "virtualRouter"],
    parent: None,
};

/// `VirtualRouter`.
pub const VIRTUAL_ROUTER: Kind = Kind {
    name: "virtualRouter",
    collection: "virtualRouters",
    name_member: "virtualRouterName",
    spec: spec::<super::virtual_router::VirtualRouterSpec>,
    references: references::<super::virtual_router::VirtualRouterSpec>,
    names: &[],
    parent: None,
};

/// `Route`, of a virtual router.
pub const ROUTE: Kind = Kind {
    name: "route",
    collection: "routes",
    name_member: "routeName",
    spec: spec::<super::route::RouteSpec>,
    references: references::<super::route::RouteSpec>,
    names: &["virtualNode"],
    parent: Some(&VIRTUAL_ROUTER),
};

/// `VirtualGateway`.
pub const VIRTUAL_GATEWAY: Kind = Kind {
    name: "virtualGateway",
    collection: "virtualGateways",
    name_member: "virtualGatewayName",
    spec: spec::<super::virtual_gateway::VirtualGatewaySpec>,
    references: references::<super::virtual_gateway::VirtualGatewaySpec>,
    names: &[],
    parent: None,
};

/// `GatewayRoute`, of a virtual gateway.
pub const GATEWAY_ROUTE: Kind = Kind {
    name: "gatewayRoute",
    collection: "gatewayRoutes",
    name_member: "gatewayRouteName",
    spec: spec::<super::gateway_route::GatewayRouteSpec>,
    references: references::<super::gateway_route::GatewayRouteSpec>,
    names: &["virtualService"],
    parent: Some(&VIRTUAL_GATEWAY),
};

/// Every kind of resource of a mesh.
pub const KINDS: &[&Kind] = &[
    &VIRTUAL_NODE,
    &VIRTUAL_SERVICE,
    &VIRTUAL_ROUTER,
    &ROUTE,
    &VIRTUAL_GATEWAY,
    &GATEWAY_ROUTE,
];

impl Kind {
    /// The kind whose path segment is `collection`.
    pub fn by_collection(collection: &str) -> Option<&'static Kind> {
        KINDS.iter().copied().find(|k| k.collection == collection)
    }

    /// The kind called `name` (`virtualNode`).
    pub fn by_name(name: &str) -> Option<&'static Kind> {
        KINDS.iter().copied().find(|k| k.name == name)
    }

    /// The store key of `name` at `place` (`route/<mesh>/<router>/<name>`).
    pub fn key(&self, place: &Place<'_>, name: &str) -> String {
        format!("{}{name}", self.prefix(place))
    }

    /// The store key prefix of this kind's resources at `place`.
    pub fn prefix(&self, place: &Place<'_>) -> String {
        match place.parent {
            Some(parent) => format!("{}/{}/{parent}/", self.name, place.mesh),
            None => self.mesh_prefix(place.mesh),
        }
    }

    /// The store key prefix of every resource of this kind in `mesh`.
    pub fn mesh_prefix(&self, mesh: &str) -> String {
        format!("{}/{mesh}/", self.name)
    }

    /// The path of `name` in ARNs (`mesh/<mesh>/virtualRouter/<router>/route/<name>`).
    pub fn arn_path(&self, place: &Place<'_>, name: &str) -> String {
        match (self.parent, place.parent) {
            (Some(p), Some(parent)) => format!(
                "mesh/{}/{}/{parent}/{}/{name}",
                place.mesh, p.name, self.name
            ),
            _ => format!("mesh/{}/{}/{name}", place.mesh, self.name),
        }
    }
}
