//! Kubernetes manifests of the App Mesh controller (`appmesh.k8s.aws/v1beta2`: Mesh,
//! VirtualNode, VirtualService, VirtualRouter, VirtualGateway, GatewayRoute), read as
//! the controller reads them:
//!
//! - App Mesh names from `spec.awsName`, else the controller's defaults: a mesh its
//!   object's name, a virtual service `<name>.<namespace>`, every other kind
//!   `<name>_<namespace>`;
//! - the mesh from `spec.meshRef`, else the one Mesh of the files, else the Mesh
//!   whose `namespaceSelector` matches the labels of the object's Namespace (when the
//!   files have it);
//! - references by `virtualNodeRef` / `virtualServiceRef` / `virtualRouterRef` /
//!   `virtualGatewayRef` (`name`, `namespace` defaulting to the object's own) or by
//!   ARN (`virtualNodeARN`, …), resolved to App Mesh names;
//! - a VirtualRouter's `routes` become its Route resources (named by `routes[].name`);
//! - the CRDs' own spellings become the API's (`meshServiceDiscovery`,
//!   `certificateARN`, `certificateAuthorityARNs`);
//! - `podSelector`, `namespaceSelector`, `gatewayRouteSelector` and `backendGroups`
//!   select Kubernetes objects, which a control plane outside Kubernetes has not:
//!   noted, not applied.

use crate::manifest::{pascal, Manifest, Metadata};
use serde_json::{Map, Value};

/// The spec members that select Kubernetes objects (and `backendGroups`, which
/// groups VirtualService objects by Kubernetes name).
const SELECTORS: &[&str] = &[
    "podSelector",
    "namespaceSelector",
    "gatewayRouteSelector",
    "backendGroups",
];

/// The CRDs' members whose API names differ.
const RENAMED: &[(&str, &str)] = &[
    ("meshServiceDiscovery", "serviceDiscovery"),
    ("certificateARN", "certificateArn"),
    ("certificateAuthorityARNs", "certificateAuthorityArns"),
];

/// The kinds that reference others by `<kind>Ref`/`<kind>ARN`.
const REFERENCED: &[&str] = &[
    "virtualNode",
    "virtualService",
    "virtualRouter",
    "virtualGateway",
];

/// The App Mesh objects of an import, and the Namespaces (for their labels).
#[derive(Default)]
pub struct Objects {
    objects: Vec<Object>,
    namespaces: Vec<(String, Map<String, Value>)>,
}

struct Object {
    kind: String,
    name: String,
    namespace: String,
    spec: Map<String, Value>,
    at: String,
}

impl Object {
    /// Its App Mesh name.
    fn aws_name(&self) -> String {
        if let Some(n) = self.spec.get("awsName").and_then(Value::as_str) {
            return n.to_string();
        }
        match self.kind.as_str() {
            "Mesh" => self.name.clone(),
            "VirtualService" => format!("{}.{}", self.name, self.namespace),
            _ => format!("{}_{}", self.name, self.namespace),
        }
    }
}

impl Objects {
    /// Adds an `appmesh.k8s.aws` object.
    pub fn add(&mut self, obj: Map<String, Value>, at: &str) -> Result<(), String> {
        let kind = obj.get("kind").and_then(Value::as_str).unwrap_or("");
        let meta = obj.get("metadata");
        let name = meta
            .and_then(|m| m.get("name"))
            .and_then(Value::as_str)
            .ok_or_else(|| format!("{at}: metadata.name: is required"))?;
        let namespace = meta
            .and_then(|m| m.get("namespace"))
            .and_then(Value::as_str)
            .unwrap_or("default");
        if !crate::manifest::KIND_ORDER.contains(&kind) || kind == "Route" {
            return Err(format!(
                "{at}: kind {kind:?} is not an App Mesh controller kind (Mesh, VirtualNode, VirtualService, VirtualRouter, VirtualGateway, GatewayRoute)"
            ));
        }
        let spec = match obj.get("spec") {
            None => Map::new(),
            Some(Value::Object(s)) => s.clone(),
            Some(_) => return Err(format!("{at}: spec: must be an object")),
        };
        self.objects.push(Object {
            kind: kind.to_string(),
            name: name.to_string(),
            namespace: namespace.to_string(),
            spec,
            at: format!("{at}: {kind} {namespace}/{name}"),
        });
        Ok(())
    }

    /// Keeps a Namespace's labels (a Mesh's `namespaceSelector` matches them).
    pub fn add_namespace(&mut self, obj: &Map<String, Value>) {
        let meta = obj.get("metadata");
        if let Some(name) = meta.and_then(|m| m.get("name")).and_then(Value::as_str) {
            let labels = meta
                .and_then(|m| m.get("labels"))
                .and_then(Value::as_object)
                .cloned()
                .unwrap_or_default();
            self.namespaces.push((name.to_string(), labels));
        }
    }

    /// The objects as manifests.
    pub fn into_manifests(self, notes: &mut Vec<String>) -> Result<Vec<Manifest>, String> {
        let mut out = Vec::new();
        for o in &self.objects {
            for s in SELECTORS {
                if o.spec.contains_key(*s) {
                    notes.push(format!(
                        "{}: spec.{s} not applicable (no Kubernetes here)",
                        o.at
                    ));
                }
            }
            let mut spec = o.spec.clone();
            for member in [
                "awsName",
                "meshRef",
                "meshOwner",
                "virtualGatewayRef",
                "routes",
            ]
            .iter()
            .chain(SELECTORS)
            {
                spec.remove(*member);
            }
            let mut spec = Value::Object(spec);
            self.resolve_refs(&mut spec, o)
                .map_err(|e| format!("{}: {e}", o.at))?;
            let mut metadata = Metadata {
                name: o.aws_name(),
                ..Metadata::default()
            };
            if o.kind != "Mesh" {
                metadata.mesh = Some(self.mesh_of(o)?);
            }
            if o.kind == "GatewayRoute" {
                metadata.virtual_gateway = Some(self.gateway_of(o)?);
            }
            if o.kind == "VirtualRouter" {
                out.extend(self.routes_of(o, &metadata)?);
                if let Some(listeners) = o.spec.get("listeners") {
                    spec["listeners"] = listeners.clone();
                }
            }
            out.push(Manifest {
                kind: o.kind.clone(),
                metadata,
                spec,
                source: o.at.clone(),
            });
        }
        Ok(out)
    }

    /// The App Mesh name of the object of `kind` that a reference names.
    fn referenced(&self, kind: &str, reference: &Value, from: &Object) -> Result<String, String> {
        let name = reference
            .get("name")
            .and_then(Value::as_str)
            .ok_or_else(|| format!("a reference to a {kind} without its name: {reference}"))?;
        let namespace = reference
            .get("namespace")
            .and_then(Value::as_str)
            .unwrap_or(&from.namespace);
        self.objects
            .iter()
            .find(|o| {
                o.kind == kind && o.name == name && (kind == "Mesh" || o.namespace == namespace)
            })
            .map(Object::aws_name)
            .ok_or_else(|| format!("{kind} {namespace}/{name} is not among the files"))
    }

    /// Rewrites `<kind>Ref` and `<kind>ARN` members into App Mesh names: `<kind>Name`
    /// inside a `<kind>` member (a provider, a backend, a gateway route's target),
    /// else `<kind>` (a weighted target).
    fn resolve_refs(&self, value: &mut Value, from: &Object) -> Result<(), String> {
        self.resolve_in(value, None, "spec", from)
    }

    /// [`Objects::resolve_refs`] at `path` (for messages) inside the member `parent`.
    fn resolve_in(
        &self,
        value: &mut Value,
        parent: Option<&str>,
        path: &str,
        from: &Object,
    ) -> Result<(), String> {
        match value {
            Value::Object(obj) => {
                for (crd, api) in RENAMED {
                    if let Some(v) = obj.remove(*crd) {
                        obj.insert(api.to_string(), v);
                    }
                }
                for kind in REFERENCED {
                    let by_ref = obj.remove(&format!("{kind}Ref"));
                    let by_arn = obj.remove(&format!("{kind}ARN"));
                    let name = match (by_ref, by_arn) {
                        (Some(r), _) => Some(
                            self.referenced(&pascal(kind), &r, from)
                                .map_err(|e| format!("{path}.{kind}Ref: {e}"))?,
                        ),
                        (None, Some(Value::String(arn))) => {
                            Some(arn.rsplit('/').next().unwrap_or_default().to_string())
                        }
                        (None, Some(other)) => {
                            return Err(format!("{path}.{kind}ARN: must be a string, not {other}"))
                        }
                        (None, None) => None,
                    };
                    if let Some(name) = name {
                        let member = if parent == Some(*kind) {
                            format!("{kind}Name")
                        } else {
                            kind.to_string()
                        };
                        obj.insert(member, Value::String(name));
                    }
                }
                for (k, v) in obj.iter_mut() {
                    self.resolve_in(v, Some(k.as_str()), &format!("{path}.{k}"), from)?;
                }
            }
            Value::Array(items) => {
                for (i, item) in items.iter_mut().enumerate() {
                    self.resolve_in(item, parent, &format!("{path}[{i}]"), from)?;
                }
            }
            _ => {}
        }
        Ok(())
    }

    /// The App Mesh name of an object's mesh.
    fn mesh_of(&self, o: &Object) -> Result<String, String> {
        if let Some(r) = o.spec.get("meshRef") {
            return self
                .referenced("Mesh", r, o)
                .or_else(|_| {
                    // A mesh made outside these files: its name as given.
                    r.get("name")
                        .and_then(Value::as_str)
                        .map(str::to_string)
                        .ok_or(())
                })
                .map_err(|_| format!("{}: spec.meshRef.name: is required", o.at));
        }
        let meshes: Vec<&Object> = self.objects.iter().filter(|m| m.kind == "Mesh").collect();
        if let [mesh] = meshes.as_slice() {
            return Ok(mesh.aws_name());
        }
        let labels = self
            .namespaces
            .iter()
            .find(|(n, _)| *n == o.namespace)
            .map(|(_, l)| l);
        let matching: Vec<&&Object> = meshes
            .iter()
            .filter(|m| {
                let wanted = m
                    .spec
                    .get("namespaceSelector")
                    .and_then(|s| s.get("matchLabels"))
                    .and_then(Value::as_object);
                match (wanted, labels) {
                    (Some(wanted), Some(labels)) => {
                        wanted.iter().all(|(k, v)| labels.get(k) == Some(v))
                    }
                    _ => false,
                }
            })
            .collect();
        match matching.as_slice() {
            [mesh] => Ok(mesh.aws_name()),
            _ => Err(format!(
                "{}: which mesh? the files have {} Mesh objects and none is selected for namespace {} (give spec.meshRef)",
                o.at,
                meshes.len(),
                o.namespace
            )),
        }
    }

    /// The App Mesh name of a gateway route's virtual gateway.
    fn gateway_of(&self, o: &Object) -> Result<String, String> {
        if let Some(r) = o.spec.get("virtualGatewayRef") {
            return self
                .referenced("VirtualGateway", r, o)
                .map_err(|e| format!("{}: spec.virtualGatewayRef: {e}", o.at));
        }
        let gateways: Vec<&Object> = self
            .objects
            .iter()
            .filter(|g| g.kind == "VirtualGateway")
            .collect();
        match gateways.as_slice() {
            [g] => Ok(g.aws_name()),
            _ => Err(format!(
                "{}: which virtual gateway? the files have {} (give spec.virtualGatewayRef)",
                o.at,
                gateways.len()
            )),
        }
    }

    /// A VirtualRouter's `routes`, as Route resources.
    fn routes_of(&self, o: &Object, router: &Metadata) -> Result<Vec<Manifest>, String> {
        let Some(routes) = o.spec.get("routes") else {
            return Ok(Vec::new());
        };
        let routes = routes
            .as_array()
            .ok_or_else(|| format!("{}: spec.routes: must be a list", o.at))?;
        let mut out = Vec::new();
        for (i, route) in routes.iter().enumerate() {
            let at = format!("{}: spec.routes[{i}]", o.at);
            let mut spec = route
                .as_object()
                .cloned()
                .ok_or_else(|| format!("{at}: must be an object"))?;
            let name = match spec.remove("name") {
                Some(Value::String(n)) => n,
                _ => return Err(format!("{at}.name: is required")),
            };
            let mut spec = Value::Object(spec);
            self.resolve_refs(&mut spec, o)
                .map_err(|e| format!("{at}: {e}"))?;
            out.push(Manifest {
                kind: "Route".into(),
                metadata: Metadata {
                    name,
                    mesh: router.mesh.clone(),
                    virtual_router: Some(router.name.clone()),
                    ..Metadata::default()
                },
                spec,
                source: at,
            });
        }
        Ok(out)
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::expect_used)]
    use crate::import::import_text;
    use serde_json::json;

    const MANIFESTS: &str = r#"
apiVersion: v1
kind: Namespace
metadata: {name: howto, labels: {mesh: m}}
---
apiVersion: appmesh.k8s.aws/v1beta2
kind: Mesh
metadata: {name: m}
spec:
  namespaceSelector: {matchLabels: {mesh: m}}
---
apiVersion: appmesh.k8s.aws/v1beta2
kind: VirtualNode
metadata: {name: blue, namespace: howto}
spec:
  podSelector: {matchLabels: {app: blue}}
  listeners: [{portMapping: {port: 8080, protocol: http}}]
  serviceDiscovery: {dns: {hostname: blue.howto.svc.cluster.local}}
---
apiVersion: appmesh.k8s.aws/v1beta2
kind: VirtualNode
metadata: {name: front, namespace: howto}
spec:
  listeners: [{portMapping: {port: 8080, protocol: http}}]
  backends:
    - virtualService: {virtualServiceRef: {name: color}}
  serviceDiscovery: {dns: {hostname: front.howto.svc.cluster.local}}
---
apiVersion: appmesh.k8s.aws/v1beta2
kind: VirtualRouter
metadata: {name: color, namespace: howto}
spec:
  listeners: [{portMapping: {port: 8080, protocol: http}}]
  routes:
    - name: color-route
      httpRoute:
        match: {prefix: /}
        action:
          weightedTargets:
            - {virtualNodeRef: {name: blue}, weight: 1}
---
apiVersion: appmesh.k8s.aws/v1beta2
kind: VirtualService
metadata: {name: color, namespace: howto}
spec:
  awsName: color.howto.svc.cluster.local
  provider:
    virtualRouter: {virtualRouterRef: {name: color}}
"#;

    #[test]
    fn controller_manifests_are_read_as_the_controller_reads_them() {
        let got = import_text(MANIFESTS, "k8s.yaml").unwrap();
        let by_kind = |k: &str| {
            got.resources
                .iter()
                .filter(|m| m.kind == k)
                .collect::<Vec<_>>()
        };
        assert_eq!(by_kind("Mesh")[0].metadata.name, "m");
        let blue = by_kind("VirtualNode")[0];
        assert_eq!(blue.metadata.name, "blue_howto");
        assert_eq!(blue.metadata.mesh.as_deref(), Some("m"));
        assert!(blue.spec.get("podSelector").is_none());
        let front = by_kind("VirtualNode")[1];
        assert_eq!(
            front.spec["backends"],
            json!([{"virtualService": {"virtualServiceName": "color.howto.svc.cluster.local"}}])
        );
        let route = by_kind("Route")[0];
        assert_eq!(route.metadata.name, "color-route");
        assert_eq!(
            route.metadata.virtual_router.as_deref(),
            Some("color_howto")
        );
        assert_eq!(
            route.spec["httpRoute"]["action"]["weightedTargets"],
            json!([{"virtualNode": "blue_howto", "weight": 1}])
        );
        let service = by_kind("VirtualService")[0];
        assert_eq!(
            service.spec,
            json!({"provider": {"virtualRouter": {"virtualRouterName": "color_howto"}}})
        );
        assert!(by_kind("VirtualRouter")[0].spec.get("routes").is_none());
        assert!(got
            .notes
            .iter()
            .any(|n| n.contains("podSelector not applicable")));
    }

    #[test]
    fn a_reference_to_nothing_is_named() {
        let bad = MANIFESTS.replace(
            "virtualNodeRef: {name: blue}",
            "virtualNodeRef: {name: green}",
        );
        let e = import_text(&bad, "k8s.yaml").unwrap_err();
        assert!(
            e.contains("VirtualNode howto/green is not among the files"),
            "{e}"
        );
    }
}
