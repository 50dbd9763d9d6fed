//! The instances of a virtual node (ferrymesh's own operations, beside App Mesh's): the
//! replicas that proxies calling the node reach by EDS, registered and deregistered as
//! they come and go (the role Cloud Map played).
//!
//! - `PUT /ferry/v1/meshes/{mesh}/virtualNodes/{node}/instances/{id}` registers (or
//!   replaces) instance `id`: `{"address", "port", "attributes", "health"}`;
//! - `DELETE …/instances/{id}` deregisters it;
//! - `GET …/virtualNodes/{node}/instances` lists them.
//!
//! Keys: `instance/<mesh>/<node>/<id>`. A node with instances cannot be deleted.

use super::{store_error, to_json, Api, Call, Op, Txn};
use crate::model::instance::{validate_id, Instance};
use crate::model::kind::{Place, VIRTUAL_NODE};
use crate::model::validate_name;
use crate::ApiError;
use http::Method;
use serde_json::{json, Value};

/// The key prefix of `node`'s instances.
pub(super) fn prefix(mesh: &str, node: &str) -> String {
    format!("instance/{mesh}/{node}/")
}

impl Api {
    /// Routes `meshes/{mesh}/virtualNodes/{node}/instances[/{id}]` (the segments after
    /// `/ferry/v1/`).
    pub(super) async fn instances(&self, call: &Call<'_>) -> Result<Vec<u8>, ApiError> {
        let (mesh, node, id) = match call.segments.as_slice() {
            [_, mesh, _, node, _] => (mesh, node, None),
            [_, mesh, _, node, _, id] => (mesh, node, Some(id)),
            _ => return Err(ApiError::not_found("no such operation")),
        };
        validate_name(mesh, "meshName")?;
        validate_name(node, "virtualNodeName")?;
        if let Some(id) = id {
            validate_id(id)?;
        }
        match (call.method, id) {
            (&Method::GET, None) => self.list_instances(mesh, node).await,
            (&Method::PUT, Some(id)) => {
                let instance: Instance = crate::model::from_json(&call.body)?;
                instance.validate()?;
                to_json(&self.write(&Op::Register(mesh, node, id, &instance)).await?)
            }
            (&Method::DELETE, Some(id)) => {
                to_json(&self.write(&Op::Deregister(mesh, node, id)).await?)
            }
            _ => Err(ApiError::not_found(format!(
                "no operation {} on instances",
                call.method
            ))),
        }
    }

    /// Registers (or replaces) an instance of an existing node.
    pub(super) async fn register(
        &self,
        txn: &mut Txn<'_>,
        mesh: &str,
        node: &str,
        id: &str,
        instance: &Instance,
    ) -> Result<Value, ApiError> {
        let at = Place { mesh, parent: None };
        self.get(txn, &VIRTUAL_NODE, &at, node).await?;
        let bytes = serde_json::to_vec(instance).map_err(|e| ApiError::internal(e.to_string()))?;
        txn.put(&format!("{}{id}", prefix(mesh, node)), bytes)
            .await
            .map_err(store_error)?;
        Ok(json!({"instanceId": id, "instance": instance}))
    }

    /// Deregisters an instance.
    pub(super) async fn deregister(
        &self,
        txn: &mut Txn<'_>,
        mesh: &str,
        node: &str,
        id: &str,
    ) -> Result<Value, ApiError> {
        let key = format!("{}{id}", prefix(mesh, node));
        if txn.get(&key).await.map_err(store_error)?.is_none() {
            return Err(ApiError::not_found(format!(
                "instance {id} of virtualNode {node} in mesh {mesh} is not registered"
            )));
        }
        txn.delete(&key).await.map_err(store_error)?;
        Ok(json!({"instanceId": id}))
    }

    async fn list_instances(&self, mesh: &str, node: &str) -> Result<Vec<u8>, ApiError> {
        let mut txn = Txn::new(&*self.store);
        let at = Place { mesh, parent: None };
        self.get(&mut txn, &VIRTUAL_NODE, &at, node).await?;
        let instances = self.instances_of(&mut txn, mesh, node).await?;
        let out: Vec<Value> = instances
            .into_iter()
            .map(|(id, i)| json!({"instanceId": id, "instance": i}))
            .collect();
        to_json(&json!({ "instances": out }))
    }

    /// The instances of `node`, by id.
    pub(super) async fn instances_of(
        &self,
        txn: &mut Txn<'_>,
        mesh: &str,
        node: &str,
    ) -> Result<Vec<(String, Instance)>, ApiError> {
        let prefix = prefix(mesh, node);
        txn.list(&prefix)
            .await
            .map_err(store_error)?
            .into_iter()
            .map(|(k, v)| {
                let id = k.strip_prefix(&prefix).unwrap_or_default().to_string();
                let i: Instance = serde_json::from_slice(&v.value)
                    .map_err(|e| ApiError::internal(format!("instance {k}: {e}")))?;
                Ok((id, i))
            })
            .collect()
    }
}
