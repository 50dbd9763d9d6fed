//! The mesh operations: `CreateMesh` (`PUT /v20190125/meshes`), `ListMeshes` (`GET`),
//! `DescribeMesh`, `UpdateMesh` and `DeleteMesh` (`GET`, `PUT`, `DELETE`
//! `/v20190125/meshes/{meshName}`).

use super::{page, store_error, to_json, Api, Call, Op, Stored, Txn};
use crate::model::mesh::{CreateMesh, MeshData, MeshStatus, MeshStatusCode, UpdateMesh};
use crate::model::{
    from_json, validate_client_token, validate_name, validate_tags, ResourceMetadata,
};
use crate::ApiError;
use http::Method;

fn key(name: &str) -> String {
    format!("mesh/{name}")
}

impl Api {
    /// Routes `/v20190125/meshes[/{meshName}]`.
    pub(super) async fn meshes(&self, call: &Call<'_>) -> Result<Vec<u8>, ApiError> {
        if let [_, name] = call.segments.as_slice() {
            validate_name(name, "meshName")?;
        }
        match (call.method, &call.segments[1..]) {
            (&Method::PUT, []) => {
                let input: CreateMesh = from_json(&call.body)?;
                to_json(&self.write(&Op::CreateMesh(&input)).await?)
            }
            (&Method::GET, []) => self.list_meshes(call).await,
            (&Method::GET, [name]) => {
                let mut txn = Txn::new(&*self.store);
                to_json(&self.mesh(&mut txn, name).await?.data)
            }
            (&Method::PUT, [name]) => {
                let input: UpdateMesh = from_json(&call.body)?;
                to_json(&self.write(&Op::UpdateMesh(name, &input)).await?)
            }
            (&Method::DELETE, [name]) => to_json(&self.write(&Op::DeleteMesh(name)).await?),
            _ => Err(ApiError::not_found(format!(
                "no operation {} /v20190125/{}",
                call.method,
                call.segments.join("/")
            ))),
        }
    }

    /// The mesh called `name`.
    pub(super) async fn mesh(
        &self,
        txn: &mut Txn<'_>,
        name: &str,
    ) -> Result<Stored<MeshData>, ApiError> {
        let found = txn.get(&key(name)).await.map_err(store_error)?;
        let Some(found) = found else {
            return Err(ApiError::not_found(format!("mesh {name} does not exist")));
        };
        Stored::decode(&found.value)
    }

    /// `CreateMesh`: the mesh as created.
    pub(super) async fn create_mesh(
        &self,
        txn: &mut Txn<'_>,
        input: &CreateMesh,
    ) -> Result<MeshData, ApiError> {
        validate_name(&input.mesh_name, "meshName")?;
        validate_tags(&input.tags, "tags")?;
        validate_client_token(input.client_token.as_deref())?;
        let name = &input.mesh_name;
        if let Some(found) = txn.get(&key(name)).await.map_err(store_error)? {
            let existing: Stored<MeshData> = Stored::decode(&found.value)?;
            // The same create sent again (its client token) gets the same answer.
            return match &input.client_token {
                Some(t) if existing.client_token.as_ref() == Some(t) => Ok(existing.data),
                _ => Err(ApiError::conflict(format!("mesh {name} already exists"))),
            };
        }
        let stored = Stored {
            data: MeshData {
                mesh_name: name.clone(),
                metadata: ResourceMetadata::new(&self.account, &key(name)),
                spec: input.spec.clone().unwrap_or_default(),
                status: MeshStatus {
                    status: MeshStatusCode::Active,
                },
            },
            tags: input.tags.clone(),
            client_token: input.client_token.clone(),
            update_token: None,
        };
        txn.put(&key(name), stored.encode()?)
            .await
            .map_err(store_error)?;
        Ok(stored.data)
    }

    async fn list_meshes(&self, call: &Call<'_>) -> Result<Vec<u8>, ApiError> {
        let all = self.store.list("mesh/").await.map_err(store_error)?;
        let (page, more) = page(call, &all, key)?;
        let meshes = page
            .iter()
            .map(|(_, v)| Ok(Stored::<MeshData>::decode(&v.value)?.data.reference()))
            .collect::<Result<Vec<_>, ApiError>>()?;
        let mut out = serde_json::json!({ "meshes": meshes });
        if let (true, Some(last)) = (more, meshes.last()) {
            out["nextToken"] = serde_json::Value::String(last.mesh_name.clone());
        }
        to_json(&out)
    }

    /// `UpdateMesh`: the mesh as updated.
    pub(super) async fn update_mesh(
        &self,
        txn: &mut Txn<'_>,
        name: &str,
        input: &UpdateMesh,
    ) -> Result<MeshData, ApiError> {
        validate_client_token(input.client_token.as_deref())?;
        let mut stored = self.mesh(txn, name).await?;
        let token = input.client_token.as_deref();
        if token.is_some() && stored.update_token.as_deref() == token {
            // The same update sent again: its answer, not a second update.
            return Ok(stored.data);
        }
        stored.update_token = token.map(str::to_string);
        stored.data.spec = input.spec.clone().unwrap_or_default();
        stored.data.metadata = stored.data.metadata.updated();
        txn.put(&key(name), stored.encode()?)
            .await
            .map_err(store_error)?;
        Ok(stored.data)
    }

    /// `DeleteMesh`: the mesh as deleted.
    pub(super) async fn delete_mesh(
        &self,
        txn: &mut Txn<'_>,
        name: &str,
    ) -> Result<MeshData, ApiError> {
        let mut stored = self.mesh(txn, name).await?;
        let resources = self.resources_of(txn, name).await?;
        if !resources.is_empty() {
            return Err(ApiError::in_use(format!(
                "mesh {name} has resources; delete them first: {}",
                resources.join(", ")
            )));
        }
        txn.delete(&key(name)).await.map_err(store_error)?;
        stored.data.status.status = MeshStatusCode::Deleted;
        Ok(stored.data)
    }
}
