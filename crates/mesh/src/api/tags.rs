//! The tag operations: `TagResource` (`PUT /v20190125/tag?resourceArn=`),
//! `UntagResource` (`PUT /v20190125/untag?resourceArn=`) and `ListTagsForResource`
//! (`GET /v20190125/tags?resourceArn=&limit=&nextToken=`), on any resource by its ARN.

use super::{store_error, Api, Call, Op, Stored, Txn};
use crate::model::kind::{Kind, Place};
use crate::model::{validate_tags, TagRef};
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
        let op = match (call.method, call.segments.as_slice()) {
            (&Method::GET, [op]) if op == "tags" => op.as_str(),
            (&Method::PUT, [op]) if op == "tag" || op == "untag" => op.as_str(),
            _ => return Err(ApiError::not_found("no such operation")),
        };
        let Some(arn) = call.query("resourceArn") else {
            return Err(ApiError::bad_request("resourceArn: is required"));
        };
        let key = self.key_of(arn)?;
        if op == "tags" {
            let stored = tagged(&mut Txn::new(&*self.store), &key, arn).await?;
            return list_tags(&stored.tags, call);
        }
        let change = if op == "tag" {
            let input: TagInput = crate::model::from_json(&call.body)?;
            TagChange::Tag(input.tags)
        } else {
            let input: UntagInput = crate::model::from_json(&call.body)?;
            TagChange::Untag(input.tag_keys)
        };
        self.write(&Op::Retag(&key, arn, &change)).await?;
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
}

/// What a tag operation does.
pub(super) enum TagChange {
    Tag(Vec<TagRef>),
    Untag(Vec<String>),
}

/// The resource at `key`, which `arn` names.
async fn tagged(txn: &mut Txn<'_>, key: &str, arn: &str) -> Result<Stored<Value>, ApiError> {
    match txn.get(key).await.map_err(store_error)? {
        Some(v) => Stored::decode(&v.value),
        None => Err(ApiError::not_found(format!(
            "resourceArn: {arn} does not exist"
        ))),
    }
}

/// Tags or untags the resource at `key`.
pub(super) async fn retag(
    txn: &mut Txn<'_>,
    key: &str,
    arn: &str,
    change: &TagChange,
) -> Result<(), ApiError> {
    let mut stored = tagged(txn, key, arn).await?;
    match change {
        TagChange::Tag(tags) => {
            if tags.len() > 50 {
                return Err(ApiError::too_many_tags(format!(
                    "tags: at most 50, not {}",
                    tags.len()
                )));
            }
            validate_tags(tags, "tags")?;
            for t in tags {
                match stored.tags.iter_mut().find(|have| have.key == t.key) {
                    Some(have) => have.value = t.value.clone(),
                    None => stored.tags.push(t.clone()),
                }
            }
            if stored.tags.len() > 50 {
                return Err(ApiError::too_many_tags(format!(
                    "tags: a resource has at most 50 tags, this one would have {}",
                    stored.tags.len()
                )));
            }
        }
        TagChange::Untag(keys) => {
            if keys.len() > 50 {
                return Err(ApiError::bad_request(format!(
                    "tagKeys: at most 50, not {}",
                    keys.len()
                )));
            }
            stored.tags.retain(|t| !keys.contains(&t.key));
        }
    }
    txn.put(key, stored.encode()?).await.map_err(store_error)
}

/// A page of tags (`limit` 1–50, default 50; `nextToken`: where the page starts).
fn list_tags(tags: &[TagRef], call: &Call<'_>) -> Result<Vec<u8>, ApiError> {
    let limit = super::limit(call, 50)?;
    let start = match call.query("nextToken") {
        None => 0,
        Some(t) => match t.parse::<usize>() {
            Ok(n) if n <= tags.len() => n,
            _ => return Err(ApiError::bad_request("nextToken: not a token of this list")),
        },
    };
    let end = start.saturating_add(limit).min(tags.len());
    let mut out = json!({ "tags": &tags[start..end] });
    if end < tags.len() {
        out["nextToken"] = json!(end.to_string());
    }
    serde_json::to_vec(&out).map_err(|e| ApiError::internal(e.to_string()))
}
