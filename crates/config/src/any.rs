//! `google.protobuf.Any` in configs (`typed_config`, `typed_per_filter_config`...):
//! its type name, and unpacking it into the message it names with a decoding error
//! reported at the current field path.

use crate::Ctx;
use ferry_envoy_api::pb::google::protobuf::Any;

/// The type name of an `Any` (its type URL without the `type.googleapis.com/` part).
pub fn type_name(any: &Any) -> &str {
    any.type_url.rsplit('/').next().unwrap_or_default()
}

/// Unpacks `any`, reporting a decoding error at the current path.
pub fn unpack<T: prost::Message + Default + prost::Name>(any: &Any, ctx: &mut Ctx) -> Option<T> {
    match ferry_envoy_api::unpack(any) {
        Ok(v) => Some(v),
        Err(e) => {
            ctx.error(e.to_string());
            None
        }
    }
}
