//! Envoy's v3 API as ferry reads it: the generated protobuf types (from
//! `envoy-types`), a descriptor pool compiled from Envoy's own .proto files, and the
//! decoding of YAML/JSON bootstraps through the proto3 JSON mapping, with `@type`
//! resolution for `Any` and the upgrade of legacy v2 names. No logic beyond decoding.

mod decode;
mod upgrade;

pub use decode::{
    decode_bootstrap, decode_message, merge, parse_document, unpack, DecodeError, Decoded, Format,
};
pub use envoy_types::pb;
pub use prost_reflect::{self, DescriptorPool, DynamicMessage, MessageDescriptor};
pub use upgrade::{legacy_filter_name, type_url_for_name};

use std::sync::{Arc, Weak};

/// The descriptor set compiled by build.rs from Envoy's .proto files.
static DESCRIPTOR_SET: &[u8] = include_bytes!(concat!(env!("OUT_DIR"), "/envoy.bin"));

/// The pool of every Envoy v3 message and extension ferry can decode.
///
/// It takes ~15 MiB and is needed only while a config is decoded, so it is not kept for
/// the life of the process: it is built on first use, shared while anyone holds the
/// returned `Arc`, dropped with the last holder and built again when next needed. Hold
/// one `Arc` across a whole load so that it is built once.
pub fn pool() -> Arc<DescriptorPool> {
    static POOL: parking_lot::Mutex<Weak<DescriptorPool>> = parking_lot::Mutex::new(Weak::new());
    let mut slot = POOL.lock();
    if let Some(pool) = slot.upgrade() {
        return pool;
    }
    let pool = Arc::new(match DescriptorPool::decode(DESCRIPTOR_SET) {
        Ok(pool) => pool,
        // The set is produced by our own build script; failing to read it is a build bug.
        Err(e) => panic!("embedded Envoy descriptor set is corrupt: {e}"),
    });
    *slot = Arc::downgrade(&pool);
    pool
}

/// The type URL prefix that Envoy uses in `typed_config`.
pub const TYPE_URL_PREFIX: &str = "type.googleapis.com/";

/// A warning produced while loading a config (for example a legacy v2 name upgraded).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Warning {
    /// Field path in the config, e.g. `static_resources.listeners[0].filter_chains[0]`.
    pub path: String,
    /// What was done.
    pub message: String,
}

impl std::fmt::Display for Warning {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        if self.path.is_empty() {
            write!(f, "{}", self.message)
        } else {
            write!(f, "{}: {}", self.path, self.message)
        }
    }
}

/// A message as proto3 JSON with the proto field names (`cluster_name`), as Envoy's
/// admin writes them.
pub fn to_json(message: &DynamicMessage) -> Option<serde_json::Value> {
    let options = prost_reflect::SerializeOptions::new().use_proto_field_name(true);
    message
        .serialize_with_options(serde_json::value::Serializer, &options)
        .ok()
}

/// An `Any` as proto3 JSON, with its `@type` (for admin `/config_dump`); None when its
/// type is not in the pool or its bytes do not decode.
pub fn any_to_json(any: &pb::google::protobuf::Any) -> Option<serde_json::Value> {
    let name = any.type_url.rsplit('/').next()?;
    let desc = pool().get_message_by_name(name)?;
    let message = DynamicMessage::decode(desc, any.value.as_slice()).ok()?;
    let mut json = to_json(&message)?;
    if let serde_json::Value::Object(fields) = &mut json {
        let mut with_type = serde_json::Map::new();
        with_type.insert("@type".into(), any.type_url.clone().into());
        with_type.extend(std::mem::take(fields));
        *fields = with_type;
    }
    Some(json)
}
