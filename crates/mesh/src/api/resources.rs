//! The operations of the resources of a mesh, one set for every kind ([`Kind`]):
//! `Create<Kind>` (`PUT /v20190125/meshes/{meshName}/<kinds>`), `List<Kinds>` (`GET`),
//! `Describe<Kind>`, `Update<Kind>`, `Delete<Kind>` (`GET`, `PUT`, `DELETE`
//! `/v20190125/meshes/{meshName}/<kinds>/{name}`). A resource is stored as the API
//! returns it (`meshName`, its name member, `metadata`, `spec`, `status`).
//!
//! Referential rules, as App Mesh's: the mesh must exist; what a spec names must exist
//! in the mesh (`NotFoundException`, naming the field); a resource that another one
//! names cannot be deleted (`ResourceInUseException`, naming which).

use super::{page, store_error, to_json, Api, Call, Op, Stored, Txn};
use crate::model::kind::{Kind, Place, KINDS};
use crate::model::{
    validate_client_token, validate_name, validate_tags, Reference, ResourceMetadata, TagRef,
};
use crate::ApiError;
use http::Method;
use serde_json::{json, Map, Value};

/// The body of a create or an update: its members, each known.
fn body(bytes: &[u8], allowed: &[&str]) -> Result<Map<String, Value>, ApiError> {
    let value: Value = crate::model::from_json(bytes)?;
    let Value::Object(members) = value else {
        return Err(ApiError::bad_request("the request body: not a JSON object"));
    };
    if let Some(unknown) = members.keys().find(|k| !allowed.contains(&k.as_str())) {
        return Err(ApiError::bad_request(format!(
            "{unknown}: unknown field, expected one of {}",
            allowed.join(", ")
        )));
    }
    Ok(members)
}

fn string<'a>(members: &'a Map<String, Value>, name: &str) -> Result<Option<&'a str>, ApiError> {
    match members.get(name) {
        None | Some(Value::Null) => Ok(None),
        Some(Value::String(s)) => Ok(Some(s)),
        Some(_) => Err(ApiError::bad_request(format!("{name}: must be a string"))),
    }
}

/// Where a resource is, in messages (`mesh app`, `virtualRouter r of mesh app`).
fn where_(kind: &Kind, place: &Place<'_>) -> String {
    match (kind.parent, place.parent) {
        (Some(p), Some(parent)) => format!("{} {parent} of mesh {}", p.name, place.mesh),
        _ => format!("mesh {}", place.mesh),
    }
}

/// The `ResourceRef` of a resource in lists: its metadata's members, the mesh, its
/// parent and its name.
fn reference(kind: &Kind, data: &Value) -> Value {
    let m = &data["metadata"];
    let mut r = json!({
        "arn": m["arn"],
        "createdAt": m["createdAt"],
        "lastUpdatedAt": m["lastUpdatedAt"],
        "meshName": data["meshName"],
        "meshOwner": m["meshOwner"],
        "resourceOwner": m["resourceOwner"],
        "version": m["version"],
        kind.name_member: data[kind.name_member],
    });
    if let Some(p) = kind.parent {
        r[p.name_member] = data[p.name_member].clone();
    }
    r
}

impl Api {
    /// Routes `/v20190125/meshes/{meshName}/<kinds>[/{name}]` and, for kinds that live
    /// in another (routes), `.../<parentKind>/{parentName}/<kinds>[/{name}]`.
    pub(super) async fn in_mesh(&self, call: &Call<'_>) -> Result<Vec<u8>, ApiError> {
        let no_such = || {
            ApiError::not_found(format!(
                "no operation {} /v20190125/{} (this control plane serves {})",
                call.method,
                call.segments.join("/"),
                KINDS
                    .iter()
                    .map(|k| k.collection)
                    .collect::<Vec<_>>()
                    .join(", ")
            ))
        };
        let (mesh, rest) = match &call.segments[1..] {
            [mesh, rest @ ..] => (mesh.as_str(), rest),
            _ => return Err(no_such()),
        };
        let (kind, place, rest) = match rest {
            [parent_kind, parent, collection, rest @ ..]
                if Kind::by_collection(collection)
                    .and_then(|k| k.parent)
                    .is_some_and(|p| p.name == parent_kind) =>
            {
                let kind = Kind::by_collection(collection).ok_or_else(no_such)?;
                (
                    kind,
                    Place {
                        mesh,
                        parent: Some(parent.as_str()),
                    },
                    rest,
                )
            }
            [collection, rest @ ..] => match Kind::by_collection(collection) {
                Some(kind) if kind.parent.is_none() => (kind, Place { mesh, parent: None }, rest),
                _ => return Err(no_such()),
            },
            _ => return Err(no_such()),
        };
        validate_name(mesh, "meshName")?;
        if let (Some(p), Some(parent)) = (kind.parent, place.parent) {
            validate_name(parent, p.name_member)?;
        }
        if let [name] = rest {
            validate_name(name, kind.name_member)?;
        }
        match (call.method, rest) {
            (&Method::PUT, []) => {
                let members = body(
                    &call.body,
                    &[kind.name_member, "spec", "tags", "clientToken"],
                )?;
                to_json(&self.write(&Op::Create(kind, place, &members)).await?)
            }
            (&Method::GET, []) => self.list(kind, &place, call).await,
            (&Method::GET, [name]) => {
                let mut txn = Txn::new(&*self.store);
                to_json(&self.get(&mut txn, kind, &place, name).await?.data)
            }
            (&Method::PUT, [name]) => {
                let members = body(&call.body, &["spec", "clientToken"])?;
                to_json(&self.write(&Op::Update(kind, place, name, &members)).await?)
            }
            (&Method::DELETE, [name]) => {
                to_json(&self.write(&Op::Delete(kind, place, name)).await?)
            }
            _ => Err(no_such()),
        }
    }

    /// A resource.
    pub(super) async fn get(
        &self,
        txn: &mut Txn<'_>,
        kind: &Kind,
        place: &Place<'_>,
        name: &str,
    ) -> Result<Stored<Value>, ApiError> {
        match txn.get(&kind.key(place, name)).await.map_err(store_error)? {
            Some(v) => {
                let stored: Stored<Value> = Stored::decode(&v.value)?;
                if !stored.data.is_object() {
                    let key = kind.key(place, name);
                    return Err(ApiError::internal(format!(
                        "the stored {key} is not an object"
                    )));
                }
                Ok(stored)
            }
            None => Err(ApiError::not_found(format!(
                "{} {name} does not exist in {}",
                kind.name,
                where_(kind, place)
            ))),
        }
    }

    /// Checks that the mesh and the parent exist, and that what a spec names does.
    async fn check_references(
        &self,
        txn: &mut Txn<'_>,
        kind: &Kind,
        place: &Place<'_>,
        refs: &[Reference],
    ) -> Result<(), ApiError> {
        let mesh = place.mesh;
        self.mesh(txn, mesh).await?;
        if let (Some(parent_kind), Some(parent)) = (kind.parent, place.parent) {
            let at = Place { mesh, parent: None };
            self.get(txn, parent_kind, &at, parent).await?;
        }
        for r in refs {
            let Some(kind) = Kind::by_name(r.kind) else {
                continue;
            };
            let at = Place { mesh, parent: None };
            let found = txn
                .get(&kind.key(&at, &r.name))
                .await
                .map_err(store_error)?;
            if found.is_none() {
                return Err(ApiError::not_found(format!(
                    "{}: {} {} does not exist in mesh {mesh}",
                    r.field, r.kind, r.name
                )));
            }
        }
        Ok(())
    }

    /// `Create<Kind>`, from the request's members: the resource as created.
    pub(super) async fn create(
        &self,
        txn: &mut Txn<'_>,
        kind: &Kind,
        place: &Place<'_>,
        members: &Map<String, Value>,
    ) -> Result<Value, ApiError> {
        let mesh = place.mesh;
        let Some(name) = string(members, kind.name_member)? else {
            return Err(ApiError::bad_request(format!(
                "{}: is required",
                kind.name_member
            )));
        };
        validate_name(name, kind.name_member)?;
        let Some(spec) = members.get("spec") else {
            return Err(ApiError::bad_request("spec: is required"));
        };
        let (spec, refs) = (kind.spec)(spec)?;
        let tags: Vec<TagRef> = match members.get("tags") {
            Some(t) => serde_json::from_value(t.clone())
                .map_err(|e| ApiError::bad_request(format!("tags: {e}")))?,
            None => Vec::new(),
        };
        validate_tags(&tags, "tags")?;
        let client_token = string(members, "clientToken")?.map(str::to_string);
        validate_client_token(client_token.as_deref())?;
        self.check_references(txn, kind, place, &refs).await?;
        let key = kind.key(place, name);
        if let Some(found) = txn.get(&key).await.map_err(store_error)? {
            let existing: Stored<Value> = Stored::decode(&found.value)?;
            // The same create sent again (its client token) gets the same answer.
            return match &client_token {
                Some(t) if existing.client_token.as_ref() == Some(t) => Ok(existing.data),
                _ => Err(ApiError::conflict(format!(
                    "{} {name} already exists in {}",
                    kind.name,
                    where_(kind, place)
                ))),
            };
        }
        let metadata = ResourceMetadata::new(&self.account, &kind.arn_path(place, name));
        let mut data = json!({
            "meshName": mesh,
            kind.name_member: name,
            "metadata": metadata,
            "spec": spec,
            "status": {"status": "ACTIVE"},
        });
        if let (Some(p), Some(parent)) = (kind.parent, place.parent) {
            data[p.name_member] = json!(parent);
        }
        let stored = Stored {
            data,
            tags,
            client_token,
            update_token: None,
        };
        txn.put(&key, stored.encode()?).await.map_err(store_error)?;
        Ok(stored.data)
    }

    async fn list(
        &self,
        kind: &Kind,
        place: &Place<'_>,
        call: &Call<'_>,
    ) -> Result<Vec<u8>, ApiError> {
        let mut txn = Txn::new(&*self.store);
        self.check_references(&mut txn, kind, place, &[]).await?;
        let all = txn.list(&kind.prefix(place)).await.map_err(store_error)?;
        let (page, more) = page(call, &all, |name| kind.key(place, name))?;
        let refs = page
            .iter()
            .map(|(_, v)| Ok(reference(kind, &Stored::<Value>::decode(&v.value)?.data)))
            .collect::<Result<Vec<_>, ApiError>>()?;
        let last = refs.last().map(|r| r[kind.name_member].clone());
        let mut out = json!({ kind.collection: refs });
        if let (true, Some(last)) = (more, last) {
            out["nextToken"] = last;
        }
        to_json(&out)
    }

    /// `Update<Kind>`, from the request's members: the resource as updated.
    pub(super) async fn update(
        &self,
        txn: &mut Txn<'_>,
        kind: &Kind,
        place: &Place<'_>,
        name: &str,
        members: &Map<String, Value>,
    ) -> Result<Value, ApiError> {
        let Some(spec) = members.get("spec") else {
            return Err(ApiError::bad_request("spec: is required"));
        };
        let (spec, refs) = (kind.spec)(spec)?;
        let token = string(members, "clientToken")?;
        validate_client_token(token)?;
        self.check_references(txn, kind, place, &refs).await?;
        let mut stored = self.get(txn, kind, place, name).await?;
        if token.is_some() && stored.update_token.as_deref() == token {
            // The same update sent again: its answer, not a second update.
            return Ok(stored.data);
        }
        stored.update_token = token.map(str::to_string);
        let metadata: ResourceMetadata = serde_json::from_value(stored.data["metadata"].clone())
            .map_err(|e| ApiError::internal(e.to_string()))?;
        stored.data["metadata"] = json!(metadata.updated());
        stored.data["spec"] = spec;
        txn.put(&kind.key(place, name), stored.encode()?)
            .await
            .map_err(store_error)?;
        Ok(stored.data)
    }

    /// `Delete<Kind>`: the resource as deleted.
    pub(super) async fn delete(
        &self,
        txn: &mut Txn<'_>,
        kind: &Kind,
        place: &Place<'_>,
        name: &str,
    ) -> Result<Value, ApiError> {
        let mesh = place.mesh;
        let mut stored = self.get(txn, kind, place, name).await?;
        // Nor with resources in it (a virtual router with routes).
        for child in KINDS
            .iter()
            .filter(|k| k.parent.is_some_and(|p| p.name == kind.name))
        {
            let inside = Place {
                mesh,
                parent: Some(name),
            };
            let children = txn
                .list(&child.prefix(&inside))
                .await
                .map_err(store_error)?;
            if let Some((key, _)) = children.first() {
                let child_name = key.rsplit('/').next().unwrap_or_default();
                return Err(ApiError::in_use(format!(
                    "{} {name} is in use: it has {} {child_name}",
                    kind.name, child.name
                )));
            }
        }
        if kind.name == "virtualNode" {
            let instances = txn
                .list(&super::instances::prefix(mesh, name))
                .await
                .map_err(store_error)?;
            if !instances.is_empty() {
                return Err(ApiError::in_use(format!(
                    "virtualNode {name} is in use: it has {} registered instances (ferry deregister them first)",
                    instances.len()
                )));
            }
        }
        if let Some(user) = self.user_of(txn, mesh, kind.name, name).await? {
            return Err(ApiError::in_use(format!(
                "{} {name} is in use: {user} names it",
                kind.name
            )));
        }
        txn.delete(&kind.key(place, name))
            .await
            .map_err(store_error)?;
        stored.data["status"] = json!({"status": "DELETED"});
        Ok(stored.data)
    }

    /// Every resource of `mesh`, of every kind, with its kind and key.
    async fn all_in(
        &self,
        txn: &mut Txn<'_>,
        mesh: &str,
    ) -> Result<Vec<(&'static Kind, String, crate::store::Versioned)>, ApiError> {
        let mut out = Vec::new();
        for kind in KINDS.iter().copied() {
            let all = txn
                .list(&kind.mesh_prefix(mesh))
                .await
                .map_err(store_error)?;
            out.extend(all.into_iter().map(|(k, v)| (kind, k, v)));
        }
        Ok(out)
    }

    /// A resource of `mesh` whose spec names `name` of kind `target` (`<kind> <name>`).
    /// Only the kinds whose specs can name `target` are read, and of those only the
    /// resources whose stored bytes hold `name` as a JSON string are parsed: a
    /// deletion costs a scan, not a parse of every spec of the mesh.
    async fn user_of(
        &self,
        txn: &mut Txn<'_>,
        mesh: &str,
        target: &str,
        name: &str,
    ) -> Result<Option<String>, ApiError> {
        let needle = serde_json::to_string(name).map_err(|e| ApiError::internal(e.to_string()))?;
        let needle = needle.as_bytes();
        for kind in KINDS.iter().filter(|k| k.names.contains(&target)) {
            let all = txn
                .list(&kind.mesh_prefix(mesh))
                .await
                .map_err(store_error)?;
            for (_, v) in all {
                if !v.value.windows(needle.len()).any(|w| w == needle) {
                    continue;
                }
                let stored: Stored<Value> = Stored::decode(&v.value)?;
                let refs = (kind.references)(&stored.data["spec"]);
                if refs.iter().any(|r| r.kind == target && r.name == name) {
                    let user = stored.data[kind.name_member].as_str().unwrap_or_default();
                    return Ok(Some(format!("{} {user}", kind.name)));
                }
            }
        }
        Ok(None)
    }

    /// The resources of `mesh` (`<kind> <name>`), for a deletion of the mesh.
    pub(super) async fn resources_of(
        &self,
        txn: &mut Txn<'_>,
        mesh: &str,
    ) -> Result<Vec<String>, ApiError> {
        let all = self.all_in(txn, mesh).await?;
        let named = all.into_iter().map(|(kind, k, _)| {
            let name = k.rsplit('/').next().unwrap_or_default().to_string();
            format!("{} {name}", kind.name)
        });
        Ok(named.collect())
    }
}
