//! The mesh operations: `CreateMesh` (`PUT /v20190125/meshes`), `ListMeshes` (`GET`),
//! `DescribeMesh`, `UpdateMesh` and `DeleteMesh` (`GET`, `PUT`, `DELETE`
//! `/v20190125/meshes/{meshName}`).

use super::{page, store_error, to_json, Api, Call, Stored};
use crate::model::mesh::{CreateMesh, MeshData, MeshStatus, MeshStatusCode, UpdateMesh};
use crate::model::{from_json, validate_name, validate_tags, ResourceMetadata};
use crate::store::Expect;
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
            (&Method::PUT, []) => self.create_mesh(&call.body).await,
            (&Method::GET, []) => self.list_meshes(call).await,
            (&Method::GET, [name]) => to_json(&self.mesh(name).await?.1.data),
            (&Method::PUT, [name]) => self.update_mesh(name, &call.body).await,
            (&Method::DELETE, [name]) => self.delete_mesh(name).await,
            _ => Err(ApiError::not_found(format!(
                "no operation {} /v20190125/{}",
                call.method,
                call.segments.join("/")
            ))),
        }
    }

    /// The mesh called `name` and its revision.
    pub(super) async fn mesh(&self, name: &str) -> Result<(u64, Stored<MeshData>), ApiError> {
        let found = self.store.get(&key(name)).await.map_err(store_error)?;
        let Some(found) = found else {
            return Err(ApiError::not_found(format!("mesh {name} does not exist")));
        };
        Ok((found.revision, Stored::decode(&found.value)?))
    }

    async fn create_mesh(&self, body: &[u8]) -> Result<Vec<u8>, ApiError> {
        let _write = self.writes.lock().await;
        let input: CreateMesh = from_json(body)?;
        validate_name(&input.mesh_name, "meshName")?;
        validate_tags(&input.tags, "tags")?;
        let name = &input.mesh_name;
        let exists = || ApiError::conflict(format!("mesh {name} already exists"));
        let found = self.store.get(&key(name)).await.map_err(store_error)?;
        if let Some(found) = found {
            let existing: Stored<MeshData> = Stored::decode(&found.value)?;
            // The same create sent again (its client token) gets the same answer.
            return match &input.client_token {
                Some(t) if existing.client_token.as_ref() == Some(t) => to_json(&existing.data),
                _ => Err(exists()),
            };
        }
        let stored = Stored {
            data: MeshData {
                mesh_name: name.clone(),
                metadata: ResourceMetadata::new(&self.account, &key(name)),
                spec: input.spec.unwrap_or_default(),
                status: MeshStatus {
                    status: MeshStatusCode::Active,
                },
            },
            tags: input.tags,
            client_token: input.client_token,
        };
        match self
            .store
            .put(&key(name), stored.encode()?, Expect::Absent)
            .await
        {
            Ok(_) => to_json(&stored.data),
            Err(crate::store::StoreError::Conflict) => Err(exists()),
            Err(e) => Err(store_error(e)),
        }
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

    async fn update_mesh(&self, name: &str, body: &[u8]) -> Result<Vec<u8>, ApiError> {
        let _write = self.writes.lock().await;
        let input: UpdateMesh = from_json(body)?;
        let (revision, mut stored) = self.mesh(name).await?;
        stored.data.spec = input.spec.unwrap_or_default();
        stored.data.metadata = stored.data.metadata.updated();
        self.store
            .put(&key(name), stored.encode()?, Expect::Revision(revision))
            .await
            .map_err(store_error)?;
        to_json(&stored.data)
    }

    async fn delete_mesh(&self, name: &str) -> Result<Vec<u8>, ApiError> {
        let _write = self.writes.lock().await;
        let (revision, mut stored) = self.mesh(name).await?;
        let resources = self.resources_of(name).await?;
        if !resources.is_empty() {
            return Err(ApiError::in_use(format!(
                "mesh {name} has resources; delete them first: {}",
                resources.join(", ")
            )));
        }
        self.store
            .delete(&key(name), revision)
            .await
            .map_err(store_error)?;
        stored.data.status.status = MeshStatusCode::Deleted;
        to_json(&stored.data)
    }
}
