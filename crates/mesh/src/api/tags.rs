//! The tag operations: `TagResource` (`PUT /v20190125/tag?resourceArn=`),
//! `UntagResource` (`PUT /v20190125/untag?resourceArn=`) and `ListTagsForResource`
//! (`GET /v20190125/tags?resourceArn=&limit=&nextToken=`), on any resource by its ARN.

use super::{store_error, Api, Call, Stored};
use crate::model::kind::{Kind, Place};
use crate::model::{validate_tags, TagRef};
use crate::store::Expect;
use crate::ApiError;
use http::Method;
use serde::Deserialize;
use serde_json::{json, Value};

#[derive(Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
struct TagInput {
    tags: Vec<TagRef>,
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
struct UntagInput {
    tag_keys: Vec<String>,
}

impl Api {
    /// Routes `/v20190125/{tag,untag,tags}`.
    pub(super) async fn tags(&self, call: &Call<'_>) -> Result<Vec<u8>, ApiError> {
        let Some(arn) = call.query("resourceArn") else {
            return Err(ApiError::bad_request("resourceArn: is required"));
        };
        let key = self.key_of(arn)?;
        let (revision, mut stored) = self.tagged(&key, arn).await?;
        let op = call.segments.first().map(String::as_str);
        match (call.method, op) {
            (&Method::GET, Some("tags")) => {
                let limit = match call.query("limit") {
                    None => 50,
                    Some(l) => match l.parse::<usize>() {
                        Ok(n @ 1..=50) => n,
                        _ => {
                            return Err(ApiError::bad_request(format!(
                                "limit: must be a number from 1 to 50, not {l:?}"
                            )))
                        }
                    },
                };
                let start: usize = match call.query("nextToken") {
                    None => 0,
                    Some(t) => t.parse().map_err(|_| {
                        ApiError::bad_request("nextToken: not a token of this list")
                    })?,
                };
                let page: Vec<&TagRef> = stored.tags.iter().skip(start).take(limit).collect();
                let mut out = json!({ "tags": page });
                if start + limit < stored.tags.len() {
                    out["nextToken"] = json!((start + limit).to_string());
                }
                return serde_json::to_vec(&out).map_err(|e| ApiError::internal(e.to_string()));
            }
            (&Method::PUT, Some("tag")) => {
                let input: TagInput = crate::model::from_json(&call.body)?;
                validate_tags(&input.tags, "tags")?;
                for t in input.tags {
                    match stored.tags.iter_mut().find(|have| have.key == t.key) {
                        Some(have) => have.value = t.value,
                        None => stored.tags.push(t),
                    }
                }
                validate_tags(&stored.tags, "tags")?;
            }
            (&Method::PUT, Some("untag")) => {
                let input: UntagInput = crate::model::from_json(&call.body)?;
                stored.tags.retain(|t| !input.tag_keys.contains(&t.key));
            }
            _ => return Err(ApiError::not_found("no such operation")),
        }
        self.store
            .put(&key, stored.encode()?, Expect::Revision(revision))
            .await
            .map_err(store_error)?;
        Ok(b"{}".to_vec())
    }

    /// The store key of the resource an ARN of this control plane names.
    fn key_of(&self, arn: &str) -> Result<String, ApiError> {
        let not_ours = || {
            ApiError::not_found(format!(
                "resourceArn: {arn} names no resource of this control plane"
            ))
        };
        let path = arn
            .strip_prefix(&self.account.arn(""))
            .ok_or_else(not_ours)?;
        let parts: Vec<&str> = path.split('/').collect();
        match parts.as_slice() {
            ["mesh", mesh] => Ok(format!("mesh/{mesh}")),
            ["mesh", mesh, kind, name] => Kind::by_name(kind)
                .filter(|k| k.parent.is_none())
                .map(|k| k.key(&Place { mesh, parent: None }, name))
                .ok_or_else(not_ours),
            ["mesh", mesh, parent_kind, parent, kind, name] => Kind::by_name(kind)
                .filter(|k| k.parent.is_some_and(|p| p.name == *parent_kind))
                .map(|k| {
                    k.key(
                        &Place {
                            mesh,
                            parent: Some(parent),
                        },
                        name,
                    )
                })
                .ok_or_else(not_ours),
            _ => Err(not_ours()),
        }
    }

    async fn tagged(&self, key: &str, arn: &str) -> Result<(u64, Stored<Value>), ApiError> {
        match self.store.get(key).await.map_err(store_error)? {
            Some(v) => Ok((v.revision, Stored::decode(&v.value)?)),
            None => Err(ApiError::not_found(format!(
                "resourceArn: {arn} does not exist"
            ))),
        }
    }
}
