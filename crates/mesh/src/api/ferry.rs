//! ferrymesh's own operations, beside App Mesh's (under `/ferry/v1/`), for the `ferry`
//! client commands:
//!
//! - `POST /ferry/v1/apply` (`ferry apply`, `ferry delete`): many resources
//!   ([`Manifest`]s) created, updated or deleted in one transaction — any error and
//!   nothing is written. Body `{"resources": [...], "delete": false, "dryRun": false}`;
//!   answer `{"results": [{"resource", "action"}], "revision"}`, the action one of
//!   `created`, `updated`, `unchanged`, `deleted`, `absent`.
//! - `GET /ferry/v1/export[?mesh=NAME]`: every resource (of one mesh) as manifests, in
//!   the order an apply creates them.
//! - `GET /ferry/v1/status`: the store, what this replica's watch has seen of it, and
//!   how many resources of each kind there are;
//! - a virtual node's instances ([`super::instances`]).

use super::{store_error, to_json, Api, Call, Op, Stored, Txn};
use crate::manifest::{sort_for_apply, Manifest, Metadata};
use crate::model::kind::{Kind, KINDS};
use crate::model::mesh::{CreateMesh, MeshData, MeshSpec, UpdateMesh};
use crate::ApiError;
use http::Method;
use serde::Deserialize;
use serde_json::{json, Map, Value};
use std::sync::atomic::Ordering;

/// The input of `/ferry/v1/apply`.
#[derive(Debug, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub(super) struct ApplyInput {
    resources: Vec<Manifest>,
    /// Deletes the resources instead (`ferry delete -f`).
    #[serde(default)]
    delete: bool,
    /// Checks everything, writes nothing.
    #[serde(default)]
    pub(super) dry_run: bool,
}

/// An error about `m`: its source and name first.
fn about(m: &Manifest, e: ApiError) -> ApiError {
    ApiError {
        message: format!("{}: {}", m.label(), e.message),
        ..e
    }
}

impl Api {
    /// Routes `/ferry/v1/...`.
    pub(super) async fn ferry(&self, call: &Call<'_>) -> Result<Vec<u8>, ApiError> {
        match (call.method, call.segments.as_slice()) {
            (&Method::POST, [op]) if op == "apply" => {
                let input: ApplyInput = crate::model::from_json(&call.body)?;
                to_json(&self.write(&Op::Apply(&input)).await?)
            }
            (&Method::GET, [op]) if op == "export" => self.export(call.query("mesh")).await,
            (&Method::GET, [op]) if op == "status" => self.status().await,
            (_, [meshes, _, nodes, _, instances, ..])
                if meshes == "meshes" && nodes == "virtualNodes" && instances == "instances" =>
            {
                self.instances(call).await
            }
            _ => Err(ApiError::not_found(format!(
                "no operation {} /ferry/v1/{} (apply, export, status, meshes/…/virtualNodes/…/instances)",
                call.method,
                call.segments.join("/")
            ))),
        }
    }

    /// Applies (or deletes) every resource of `input` in `txn`.
    pub(super) async fn apply(
        &self,
        txn: &mut Txn<'_>,
        input: &ApplyInput,
    ) -> Result<Value, ApiError> {
        let mut resources = input.resources.clone();
        sort_for_apply(&mut resources);
        if input.delete {
            resources.reverse();
        }
        let mut results = Vec::with_capacity(resources.len());
        for m in &resources {
            let action = if input.delete {
                self.delete_one(txn, m).await
            } else {
                self.apply_one(txn, m).await
            };
            let action = action.map_err(|e| about(m, e))?;
            results.push(json!({"resource": m.label(), "action": action}));
        }
        Ok(json!({ "results": results }))
    }

    /// Creates or updates one resource: what was done.
    async fn apply_one(&self, txn: &mut Txn<'_>, m: &Manifest) -> Result<&'static str, ApiError> {
        let name = &m.metadata.name;
        let Some(kind) = m.api_kind().map_err(ApiError::bad_request)? else {
            let spec: MeshSpec = if m.spec.is_null() {
                MeshSpec::default()
            } else {
                crate::model::kind::read_spec(&m.spec)?
            };
            let key = format!("mesh/{name}");
            let Some(found) = txn.get(&key).await.map_err(store_error)? else {
                let input = CreateMesh {
                    mesh_name: name.clone(),
                    spec: Some(spec),
                    tags: m.metadata.tags.clone().unwrap_or_default(),
                    client_token: None,
                };
                self.create_mesh(txn, &input).await?;
                return Ok("created");
            };
            let mut stored: Stored<MeshData> = Stored::decode(&found.value)?;
            let tags_change = m.metadata.tags.as_ref().filter(|t| **t != stored.tags);
            if stored.data.spec == spec && tags_change.is_none() {
                return Ok("unchanged");
            }
            if stored.data.spec != spec {
                let input = UpdateMesh {
                    spec: Some(spec),
                    client_token: None,
                };
                stored.data = self.update_mesh(txn, name, &input).await?;
            }
            if let Some(tags) = tags_change {
                stored.tags = tags.clone();
                crate::model::validate_tags(tags, "metadata.tags")?;
                txn.put(&key, stored.encode()?).await.map_err(store_error)?;
            }
            return Ok("updated");
        };
        let place = m.place(kind).map_err(ApiError::bad_request)?;
        let key = kind.key(&place, name);
        let Some(found) = txn.get(&key).await.map_err(store_error)? else {
            let mut members = Map::new();
            members.insert(kind.name_member.into(), json!(name));
            members.insert("spec".into(), m.spec.clone());
            if let Some(tags) = &m.metadata.tags {
                members.insert("tags".into(), json!(tags));
            }
            self.create(txn, kind, &place, &members).await?;
            return Ok("created");
        };
        let mut stored: Stored<Value> = Stored::decode(&found.value)?;
        let (spec, _) = (kind.spec)(&m.spec)?;
        let tags_change = m.metadata.tags.as_ref().filter(|t| **t != stored.tags);
        if stored.data["spec"] == spec && tags_change.is_none() {
            return Ok("unchanged");
        }
        if stored.data["spec"] != spec {
            let mut members = Map::new();
            members.insert("spec".into(), m.spec.clone());
            stored.data = self.update(txn, kind, &place, name, &members).await?;
        }
        if let Some(tags) = tags_change {
            crate::model::validate_tags(tags, "metadata.tags")?;
            stored.tags = tags.clone();
            txn.put(&key, stored.encode()?).await.map_err(store_error)?;
        }
        Ok("updated")
    }

    /// Deletes one resource if it is there: what was done.
    async fn delete_one(&self, txn: &mut Txn<'_>, m: &Manifest) -> Result<&'static str, ApiError> {
        let name = &m.metadata.name;
        let Some(kind) = m.api_kind().map_err(ApiError::bad_request)? else {
            if txn
                .get(&format!("mesh/{name}"))
                .await
                .map_err(store_error)?
                .is_none()
            {
                return Ok("absent");
            }
            self.delete_mesh(txn, name).await?;
            return Ok("deleted");
        };
        let place = m.place(kind).map_err(ApiError::bad_request)?;
        if txn
            .get(&kind.key(&place, name))
            .await
            .map_err(store_error)?
            .is_none()
        {
            return Ok("absent");
        }
        self.delete(txn, kind, &place, name).await?;
        Ok("deleted")
    }

    /// Every resource (of `mesh`, or of every mesh) as manifests: each mesh as one
    /// consistent view (read again if a commit wrote in it meanwhile).
    async fn export(&self, mesh: Option<&str>) -> Result<Vec<u8>, ApiError> {
        let names: Vec<String> = match mesh {
            Some(name) => vec![name.to_string()],
            None => self
                .store
                .list("mesh/")
                .await
                .map_err(store_error)?
                .into_iter()
                .filter_map(|(k, _)| k.strip_prefix("mesh/").map(str::to_string))
                .collect(),
        };
        let mut out = Vec::new();
        for name in names {
            out.extend(self.export_mesh(&name, mesh.is_some()).await?);
        }
        sort_for_apply(&mut out);
        to_json(&json!({ "resources": out }))
    }

    /// The manifests of one mesh, read as one view; a mesh deleted meanwhile has none,
    /// unless it was asked for by name.
    async fn export_mesh(&self, name: &str, asked: bool) -> Result<Vec<Manifest>, ApiError> {
        for _ in 0..super::WRITE_ATTEMPTS {
            let mut txn = Txn::new(&*self.store);
            let mesh = match self.mesh(&mut txn, name).await {
                Ok(mesh) => mesh,
                Err(e) if !asked && e.code == "NotFoundException" => return Ok(Vec::new()),
                Err(e) => return Err(e),
            };
            let mut out = vec![Manifest {
                kind: "Mesh".into(),
                metadata: Metadata {
                    name: name.to_string(),
                    tags: Some(mesh.tags).filter(|t| !t.is_empty()),
                    ..Metadata::default()
                },
                spec: serde_json::to_value(&mesh.data.spec)
                    .map_err(|e| ApiError::internal(e.to_string()))?,
                source: String::new(),
            }];
            for kind in KINDS.iter().copied() {
                for (_, v) in txn
                    .list(&kind.mesh_prefix(name))
                    .await
                    .map_err(store_error)?
                {
                    let stored: Stored<Value> = Stored::decode(&v.value)?;
                    out.push(manifest_of(kind, stored));
                }
            }
            if txn.still_current().await.map_err(store_error)? {
                return Ok(out);
            }
        }
        Err(ApiError::conflict(format!(
            "mesh {name} kept changing while it was read; export it again"
        )))
    }

    /// The store, what the watch has seen, and counts of resources.
    async fn status(&self) -> Result<Vec<u8>, ApiError> {
        let mut counts = Map::new();
        let meshes = self.store.list("mesh/").await.map_err(store_error)?;
        counts.insert("meshes".into(), json!(meshes.len()));
        for kind in KINDS.iter().copied() {
            let n = self
                .store
                .list(&format!("{}/", kind.name))
                .await
                .map_err(store_error)?
                .len();
            counts.insert(kind.collection.into(), json!(n));
        }
        to_json(&json!({
            "store": self.store.describe(),
            "watch": {
                "revision": self.watched.revision.load(Ordering::Relaxed),
                "events": self.watched.events.load(Ordering::Relaxed),
                "restarts": self.watched.restarts.load(Ordering::Relaxed),
            },
            "resources": counts,
        }))
    }
}

/// A stored resource of `kind` as a manifest.
fn manifest_of(kind: &Kind, stored: Stored<Value>) -> Manifest {
    let data = stored.data;
    let text = |member: &str| data[member].as_str().map(str::to_string);
    let parent = kind.parent.and_then(|p| text(p.name_member));
    Manifest {
        kind: crate::manifest::pascal(kind.name),
        metadata: Metadata {
            name: text(kind.name_member).unwrap_or_default(),
            mesh: text("meshName"),
            virtual_router: parent.clone().filter(|_| kind.name == "route"),
            virtual_gateway: parent.filter(|_| kind.name == "gatewayRoute"),
            tags: Some(stored.tags).filter(|t| !t.is_empty()),
        },
        spec: data["spec"].clone(),
        source: String::new(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::manifest::KIND_ORDER;

    #[test]
    fn kinds_in_apply_order_are_the_api_kinds() {
        for k in KIND_ORDER.iter().skip(1) {
            let m = Manifest {
                kind: k.to_string(),
                metadata: Metadata::default(),
                spec: Value::Null,
                source: String::new(),
            };
            assert!(matches!(m.api_kind(), Ok(Some(_))), "{k}");
        }
    }
}
