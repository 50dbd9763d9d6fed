//! YAML/JSON → `DynamicMessage` → typed `envoy-types` message.

use crate::{pool, upgrade, Warning};
use prost_reflect::{DeserializeOptions, DynamicMessage, MessageDescriptor};

/// The text format of a config document.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Format {
    /// YAML (a superset of JSON; Envoy's default for `.yaml`/`.yml`).
    Yaml,
    /// JSON.
    Json,
}

impl Format {
    /// Picks the format from a file name, as Envoy does (`.json` is JSON, the rest YAML).
    pub fn from_path(path: &std::path::Path) -> Format {
        match path.extension().and_then(|e| e.to_str()) {
            Some("json") => Format::Json,
            _ => Format::Yaml,
        }
    }
}

/// Errors from decoding a config document.
#[derive(Debug, thiserror::Error)]
pub enum DecodeError {
    /// The text is not valid YAML or JSON.
    #[error("{format:?} syntax: {message}")]
    Syntax {
        /// Which parser failed.
        format: Format,
        /// The parser's message, with its line and column.
        message: String,
    },
    /// The document does not match Envoy's schema at `path`.
    #[error("{path}: {message}")]
    Schema {
        /// Field path, e.g. `static_resources.clusters[0].lb_policy`.
        path: String,
        /// What is wrong there.
        message: String,
    },
    /// A message type is not in the descriptor pool.
    #[error("unknown message type {0}")]
    UnknownType(String),
    /// The decoded message does not convert into the generated type.
    #[error("transcoding {type_name}: {message}")]
    Transcode {
        /// The message type.
        type_name: String,
        /// The decoder's message.
        message: String,
    },
}

/// A decoded document: the typed message, its reflective form (used to find fields
/// that are set but not supported), and what the v2 upgrade changed.
#[derive(Debug, Clone)]
pub struct Decoded<T> {
    /// The typed message.
    pub message: T,
    /// The same message as a `DynamicMessage`.
    pub dynamic: DynamicMessage,
    /// Warnings from the upgrade of legacy names.
    pub warnings: Vec<Warning>,
}

/// Decodes an Envoy v3 (or legacy v2) bootstrap from YAML or JSON text.
pub fn decode_bootstrap(
    text: &str,
    format: Format,
) -> Result<Decoded<crate::pb::envoy::config::bootstrap::v3::Bootstrap>, DecodeError> {
    decode_message(text, format, "envoy.config.bootstrap.v3.Bootstrap")
}

/// Parses YAML or JSON text into a JSON tree (no schema applied yet).
pub fn parse_document(text: &str, format: Format) -> Result<serde_json::Value, DecodeError> {
    let value: serde_json::Value = match format {
        Format::Yaml => serde_yaml::from_str(text).map_err(|e| DecodeError::Syntax {
            format,
            message: e.to_string(),
        })?,
        Format::Json => serde_json::from_str(text).map_err(|e| DecodeError::Syntax {
            format,
            message: e.to_string(),
        })?,
    };
    Ok(value)
}

/// Merges `overlay` into `base` as protobuf's `MergeFrom` does (Envoy's `--config-yaml`
/// over `-c`): messages merge field by field, repeated fields are appended, scalars
/// are replaced.
pub fn merge(base: &mut serde_json::Value, overlay: serde_json::Value) {
    use serde_json::Value;
    match (base, overlay) {
        (Value::Object(b), Value::Object(o)) => {
            for (k, v) in o {
                match b.get_mut(&k) {
                    Some(existing) => merge(existing, v),
                    None => {
                        b.insert(k, v);
                    }
                }
            }
        }
        (Value::Array(b), Value::Array(o)) => b.extend(o),
        (b, o) => *b = o,
    }
}

/// Decodes any message of the pool, by its full name, from YAML or JSON text.
pub fn decode_message<T: prost::Message + Default>(
    text: &str,
    format: Format,
    full_name: &str,
) -> Result<Decoded<T>, DecodeError> {
    let desc = pool()
        .get_message_by_name(full_name)
        .ok_or_else(|| DecodeError::UnknownType(full_name.to_string()))?;
    let mut value = parse_document(text, format)?;
    if value.is_null() {
        value = serde_json::Value::Object(Default::default());
    }
    let mut warnings = Vec::new();
    upgrade::upgrade(&mut value, &desc, "", &mut warnings);
    let dynamic = from_json_value(value, &desc)?;
    let message = dynamic
        .transcode_to::<T>()
        .map_err(|e| DecodeError::Transcode {
            type_name: full_name.to_string(),
            message: e.to_string(),
        })?;
    Ok(Decoded {
        message,
        dynamic,
        warnings,
    })
}

/// Decodes a JSON value through the proto3 JSON mapping, rejecting unknown fields and
/// reporting the path of the first problem.
fn from_json_value(
    value: serde_json::Value,
    desc: &MessageDescriptor,
) -> Result<DynamicMessage, DecodeError> {
    let mut track = serde_path_to_error::Track::new();
    let de = serde_path_to_error::Deserializer::new(value, &mut track);
    let options = DeserializeOptions::new().deny_unknown_fields(true);
    match DynamicMessage::deserialize_with_options(desc.clone(), de, &options) {
        Ok(m) => Ok(m),
        Err(e) => Err(DecodeError::Schema {
            path: clean_path(&track.path().to_string()),
            message: e.to_string(),
        }),
    }
}

/// serde_path_to_error writes `a.b[0].c`; a root path is `.`.
fn clean_path(path: &str) -> String {
    if path == "." {
        String::new()
    } else {
        path.to_string()
    }
}

/// Decodes the payload of an `Any` into a generated type, checking the type URL.
pub fn unpack<T: prost::Message + Default + prost::Name>(
    any: &crate::pb::google::protobuf::Any,
) -> Result<T, DecodeError> {
    let want = T::full_name();
    let got = any.type_url.rsplit('/').next().unwrap_or_default();
    if got != want {
        return Err(DecodeError::Transcode {
            type_name: want,
            message: format!("Any holds {got}"),
        });
    }
    T::decode(any.value.as_slice()).map_err(|e| DecodeError::Transcode {
        type_name: want,
        message: e.to_string(),
    })
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    #[test]
    fn merge_appends_lists_and_replaces_scalars() {
        let mut a = serde_json::json!({"a": {"x": 1, "l": [1]}, "s": "old"});
        merge(
            &mut a,
            serde_json::json!({"a": {"y": 2, "l": [2]}, "s": "new"}),
        );
        assert_eq!(
            a,
            serde_json::json!({"a": {"x": 1, "y": 2, "l": [1, 2]}, "s": "new"})
        );
    }

    #[test]
    fn schema_errors_carry_the_path() {
        let err = decode_bootstrap(
            "static_resources:\n  clusters:\n  - name: a\n    connect_timeout: soon\n",
            Format::Yaml,
        )
        .unwrap_err();
        let text = err.to_string();
        assert!(
            text.starts_with("static_resources.clusters[0].connect_timeout"),
            "{text}"
        );
    }
}
