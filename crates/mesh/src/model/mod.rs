//! App Mesh's resource model, API version 2019-01-25, with App Mesh's field names: the
//! specs as the API takes them (unknown fields refused, as App Mesh refuses them), the
//! metadata App Mesh returns, and the validation of names and ranges. Each resource's
//! shapes are in its own module ([`mesh`], [`virtual_node`], [`virtual_service`],
//! [`virtual_router`], [`route`], [`virtual_gateway`], [`gateway_route`]); [`kind`]
//! lists the kinds of a mesh's resources.

pub mod extensions;
pub mod gateway_route;
pub mod http_match;
pub mod instance;
pub mod kind;
pub mod mesh;
pub mod route;
pub mod service_discovery;
pub mod tls;
pub mod virtual_gateway;
pub mod virtual_node;
pub mod virtual_router;
pub mod virtual_service;

pub use mesh::IpPreference;

use crate::ApiError;
use serde::{Deserialize, Serialize};

/// Where resources live in ARNs: the region and account ferrymesh names itself with
/// (`arn:aws:appmesh:<region>:<account>:mesh/<name>`), and the owner of every resource.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Account {
    /// The region part of ARNs.
    pub region: String,
    /// The 12-digit account id: ARNs, `meshOwner`, `resourceOwner`.
    pub id: String,
}

impl Default for Account {
    fn default() -> Account {
        Account {
            region: "local".to_string(),
            id: "000000000000".to_string(),
        }
    }
}

impl Account {
    /// The ARN of a resource at `path` (`mesh/<name>`, `mesh/<mesh>/virtualNode/<name>`).
    pub fn arn(&self, path: &str) -> String {
        format!("arn:aws:appmesh:{}:{}:{path}", self.region, self.id)
    }
}

/// `ResourceMetadata`: what App Mesh says of every resource.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct ResourceMetadata {
    /// `arn`.
    pub arn: String,
    /// `createdAt`, seconds since the epoch.
    pub created_at: f64,
    /// `lastUpdatedAt`, seconds since the epoch.
    pub last_updated_at: f64,
    /// `meshOwner`: the account that owns the mesh.
    pub mesh_owner: String,
    /// `resourceOwner`: the account that owns the resource.
    pub resource_owner: String,
    /// `uid`: unique among every resource ever created.
    pub uid: String,
    /// `version`: 1 when created, one more at each update.
    pub version: i64,
}

impl ResourceMetadata {
    /// The metadata of a resource created now at `path`.
    pub fn new(account: &Account, path: &str) -> ResourceMetadata {
        let now = now();
        ResourceMetadata {
            arn: account.arn(path),
            created_at: now,
            last_updated_at: now,
            mesh_owner: account.id.clone(),
            resource_owner: account.id.clone(),
            uid: uid(),
            version: 1,
        }
    }

    /// The metadata after an update.
    pub fn updated(&self) -> ResourceMetadata {
        ResourceMetadata {
            last_updated_at: now(),
            version: self.version + 1,
            ..self.clone()
        }
    }
}

/// Now, in seconds since the epoch, to the millisecond (as App Mesh's timestamps).
fn now() -> f64 {
    (chrono::Utc::now().timestamp_millis() as f64) / 1000.0
}

/// A request's id (`x-amzn-RequestId`).
pub fn request_id() -> String {
    uid()
}

/// A random UUID (version 4), App Mesh's `uid` format.
fn uid() -> String {
    let b: [u8; 16] = rand::random();
    let hex: String = b.iter().map(|x| format!("{x:02x}")).collect();
    format!(
        "{}-{}-4{}-{:x}{}-{}",
        &hex[0..8],
        &hex[8..12],
        &hex[13..16],
        8 | (b[8] & 0x3),
        &hex[17..20],
        &hex[20..32]
    )
}

/// `TagRef`: a tag of a resource.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct TagRef {
    /// `key` (1–128 characters).
    pub key: String,
    /// `value` (0–256 characters).
    #[serde(default)]
    pub value: String,
}

/// Checks tags as App Mesh does: at most 50, keys 1–128 characters, values at most 256.
pub fn validate_tags(tags: &[TagRef], field: &str) -> Result<(), ApiError> {
    if tags.len() > 50 {
        return Err(ApiError::bad_request(format!(
            "{field}: at most 50 tags, not {}",
            tags.len()
        )));
    }
    for (i, t) in tags.iter().enumerate() {
        length(&t.key, 1, 128, &format!("{field}[{i}].key"))?;
        length(&t.value, 0, 256, &format!("{field}[{i}].value"))?;
        if tags[..i].iter().any(|earlier| earlier.key == t.key) {
            return Err(ApiError::bad_request(format!(
                "{field}[{i}].key: {:?} is given twice",
                t.key
            )));
        }
    }
    Ok(())
}

/// Checks a `clientToken` as App Mesh documents it: up to 36 letters, digits, hyphens
/// and underscores.
pub fn validate_client_token(token: Option<&str>) -> Result<(), ApiError> {
    let Some(token) = token else {
        return Ok(());
    };
    let ok = (1..=36).contains(&token.len())
        && token
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_');
    if ok {
        Ok(())
    } else {
        Err(ApiError::bad_request(format!(
            "clientToken: up to 36 letters, digits, hyphens and underscores, not {token:?}"
        )))
    }
}

/// Checks a resource name: 1–255 characters (and no `/`, which would make its path
/// another one).
pub fn validate_name(name: &str, field: &str) -> Result<(), ApiError> {
    length(name, 1, 255, field)?;
    if name.contains('/') {
        return Err(ApiError::bad_request(format!(
            "{field}: must not contain /"
        )));
    }
    Ok(())
}

/// A resource's spec: checked beyond what its shape says, and the resources of the same
/// mesh it names (which must exist).
pub trait Spec: Serialize + serde::de::DeserializeOwned {
    /// Checks ranges and rules; the error names the field.
    fn validate(&self) -> Result<(), ApiError>;
    /// The resources of the mesh it names.
    fn references(&self) -> Vec<Reference>;
}

/// A resource a spec names.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Reference {
    /// Its kind (`virtualNode`).
    pub kind: &'static str,
    /// Its name.
    pub name: String,
    /// The field that names it.
    pub field: &'static str,
}

/// `PortMapping`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct PortMapping {
    /// `port` (1–65535).
    pub port: u32,
    /// `protocol`.
    pub protocol: PortProtocol,
}

impl PortMapping {
    /// Checks the port's range.
    pub fn validate(&self, field: &str) -> Result<(), ApiError> {
        if !(1..=65535).contains(&self.port) {
            return Err(ApiError::bad_request(format!(
                "{field}.port: must be 1 to 65535, not {}",
                self.port
            )));
        }
        Ok(())
    }
}

/// `PortProtocol`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum PortProtocol {
    /// `http`.
    Http,
    /// `tcp`.
    Tcp,
    /// `http2`.
    Http2,
    /// `grpc`.
    Grpc,
}

/// Checks that `value` has `min`–`max` characters.
pub fn length(value: &str, min: usize, max: usize, field: &str) -> Result<(), ApiError> {
    let n = value.chars().count();
    if n < min || n > max {
        return Err(ApiError::bad_request(format!(
            "{field}: must have {min} to {max} characters, not {n}"
        )));
    }
    Ok(())
}

/// Checks that exactly one member of a union is set.
pub(crate) fn one_of(field: &str, members: &[(&str, bool)]) -> Result<(), ApiError> {
    let set: Vec<&str> = members
        .iter()
        .filter(|(_, s)| *s)
        .map(|(n, _)| *n)
        .collect();
    if set.len() == 1 {
        return Ok(());
    }
    let names: Vec<&str> = members.iter().map(|(n, _)| *n).collect();
    Err(ApiError::bad_request(format!(
        "{field}: exactly one of {} is required{}",
        names.join(", "),
        if set.is_empty() {
            String::new()
        } else {
            format!(", not {}", set.join(" and "))
        }
    )))
}

/// Checks that `value` is `min`–`max`.
pub(crate) fn range(value: u64, min: u64, max: u64, field: &str) -> Result<(), ApiError> {
    if value < min || value > max {
        return Err(ApiError::bad_request(format!(
            "{field}: must be {min} to {max}, not {value}"
        )));
    }
    Ok(())
}

/// Reads a request body as `T`, naming the field a problem is at (unknown fields are
/// refused, as App Mesh refuses them).
pub fn from_json<T: serde::de::DeserializeOwned>(body: &[u8]) -> Result<T, ApiError> {
    let body: &[u8] = if body.iter().all(u8::is_ascii_whitespace) {
        b"{}"
    } else {
        body
    };
    let de = &mut serde_json::Deserializer::from_slice(body);
    serde_path_to_error::deserialize(de).map_err(|e| {
        let path = e.path().to_string();
        let inner = e.into_inner();
        if path == "." || path.is_empty() {
            ApiError::bad_request(format!("the request body: {inner}"))
        } else {
            ApiError::bad_request(format!("{path}: {inner}"))
        }
    })
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::expect_used)]
    use super::*;

    #[test]
    fn uids_are_version_4_uuids() {
        let u = uid();
        assert_eq!(u.len(), 36, "{u}");
        assert_eq!(&u[14..15], "4", "{u}");
        assert!("89ab".contains(&u[19..20]), "{u}");
        assert_ne!(uid(), u);
    }

    #[test]
    fn names_and_tags_are_checked_with_their_fields() {
        assert!(validate_name("a", "meshName").is_ok());
        let e = validate_name("", "meshName").unwrap_err();
        assert_eq!(e.code, "BadRequestException");
        assert!(e.message.starts_with("meshName: "), "{}", e.message);
        let tags = vec![TagRef {
            key: String::new(),
            value: "v".into(),
        }];
        let e = validate_tags(&tags, "tags").unwrap_err();
        assert!(e.message.starts_with("tags[0].key: "), "{}", e.message);
    }
}
