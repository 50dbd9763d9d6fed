//! Reading App Mesh resources from the files users have: each document's format is
//! detected, and every resource becomes a [`Manifest`].
//!
//! - ferrymesh's own YAML/JSON ([`crate::manifest`]): `kind` + `metadata` + `spec`;
//! - AWS CLI `--cli-input-json` files (`{"meshName": …, "virtualNodeName": …,
//!   "spec": {…}}`), the kind inferred from the name members; a JSON array of them;
//! - CloudFormation templates with `AWS::AppMesh::*` resources ([`cloudformation`]);
//! - Kubernetes manifests of the App Mesh controller, `appmesh.k8s.aws/v1beta2`
//!   ([`kubernetes`]).
//!
//! A directory is read for `*.json`, `*.yaml` and `*.yml`, in name order, other files
//! skipped with a note; a YAML file may hold several documents. Every error names the
//! file (and the document, resource and field).

pub mod cloudformation;
pub mod kubernetes;

use crate::manifest::{Manifest, Metadata};
use serde_json::{Map, Value};
use std::path::Path;

/// What an import read: the resources, and notes on what it skipped or could not apply.
#[derive(Debug, Default)]
pub struct Imported {
    /// The resources, in the files' order.
    pub resources: Vec<Manifest>,
    /// What was skipped, and why.
    pub notes: Vec<String>,
}

/// Reads a file, or every `*.json`, `*.yaml` and `*.yml` of a directory (and its
/// subdirectories).
pub fn import_path(path: &Path) -> Result<Imported, String> {
    let mut files = Vec::new();
    let mut notes = Vec::new();
    collect(path, &mut files, &mut notes)?;
    let mut imported = Imported {
        notes,
        ..Imported::default()
    };
    let mut k8s = kubernetes::Objects::default();
    for file in files {
        let source = file.display().to_string();
        let text =
            std::fs::read_to_string(&file).map_err(|e| format!("{source}: cannot read: {e}"))?;
        read_text(&text, &source, &mut imported, &mut k8s)?;
    }
    let from_k8s = k8s.into_manifests(&mut imported.notes)?;
    imported.resources.extend(from_k8s);
    Ok(imported)
}

/// Reads the resources of one file's text; `source` names it in messages.
pub fn import_text(text: &str, source: &str) -> Result<Imported, String> {
    let mut imported = Imported::default();
    let mut k8s = kubernetes::Objects::default();
    read_text(text, source, &mut imported, &mut k8s)?;
    let from_k8s = k8s.into_manifests(&mut imported.notes)?;
    imported.resources.extend(from_k8s);
    Ok(imported)
}

fn collect(
    path: &Path,
    files: &mut Vec<std::path::PathBuf>,
    notes: &mut Vec<String>,
) -> Result<(), String> {
    let meta = std::fs::metadata(path).map_err(|e| format!("{}: {e}", path.display()))?;
    if !meta.is_dir() {
        files.push(path.to_path_buf());
        return Ok(());
    }
    let mut entries: Vec<_> = std::fs::read_dir(path)
        .map_err(|e| format!("{}: {e}", path.display()))?
        .filter_map(Result::ok)
        .map(|e| e.path())
        .collect();
    entries.sort();
    for entry in entries {
        if entry.is_dir() {
            collect(&entry, files, notes)?;
            continue;
        }
        let ext = entry.extension().and_then(|e| e.to_str()).unwrap_or("");
        if matches!(ext, "json" | "yaml" | "yml") {
            files.push(entry);
        } else {
            notes.push(format!(
                "{}: skipped (not .json, .yaml or .yml)",
                entry.display()
            ));
        }
    }
    Ok(())
}

/// Reads one file's documents into `imported` (Kubernetes objects into `k8s`, which
/// are resolved together once every file is read).
fn read_text(
    text: &str,
    source: &str,
    imported: &mut Imported,
    k8s: &mut kubernetes::Objects,
) -> Result<(), String> {
    let docs = documents(text).map_err(|e| format!("{source}: {e}"))?;
    let several = docs.len() > 1;
    for (i, doc) in docs.into_iter().enumerate() {
        let at = if several {
            format!("{source} (document {})", i + 1)
        } else {
            source.to_string()
        };
        read_document(doc, &at, imported, k8s)?;
    }
    Ok(())
}

fn read_document(
    doc: Value,
    at: &str,
    imported: &mut Imported,
    k8s: &mut kubernetes::Objects,
) -> Result<(), String> {
    let obj = match doc {
        Value::Null => return Ok(()),
        Value::Array(items) => {
            for (i, item) in items.into_iter().enumerate() {
                read_document(item, &format!("{at}[{i}]"), imported, k8s)?;
            }
            return Ok(());
        }
        Value::Object(obj) => obj,
        _ => return Err(format!("{at}: not an object")),
    };
    if cloudformation::is_template(&obj) {
        let template = cloudformation::read(&obj, at, &mut imported.notes)?;
        imported.resources.extend(template);
    } else if let Some(api_version) = obj.get("apiVersion").and_then(Value::as_str) {
        if api_version == "appmesh.k8s.aws/v1beta2" {
            k8s.add(obj, at)?;
        } else if api_version.starts_with("appmesh.k8s.aws/") {
            return Err(format!(
                "{at}: {api_version}: the App Mesh controller's v1beta2 is read (its earlier versions have another schema)"
            ));
        } else {
            let kind = obj.get("kind").and_then(Value::as_str).unwrap_or("?");
            if api_version == "v1" && kind == "Namespace" {
                k8s.add_namespace(&obj);
            }
            imported
                .notes
                .push(format!("{at}: {api_version} {kind} skipped (not App Mesh)"));
        }
    } else if obj.contains_key("kind") && obj.contains_key("metadata") {
        let mut m: Manifest = serde_path_to_error::deserialize(Value::Object(obj))
            .map_err(|e| format!("{at}: {}: {}", e.path(), e.inner()))?;
        m.source = at.to_string();
        m.api_kind().map_err(|e| format!("{at}: {e}"))?;
        imported.resources.push(m);
    } else {
        imported.resources.push(cli_input(obj, at)?);
    }
    Ok(())
}

/// The name members of `--cli-input-json` files, most specific first: the first a file
/// has gives its kind.
const CLI_KINDS: &[(&str, &str)] = &[
    ("gatewayRouteName", "GatewayRoute"),
    ("routeName", "Route"),
    ("virtualNodeName", "VirtualNode"),
    ("virtualServiceName", "VirtualService"),
    ("virtualRouterName", "VirtualRouter"),
    ("virtualGatewayName", "VirtualGateway"),
    ("meshName", "Mesh"),
];

/// An AWS CLI `--cli-input-json` file of a create (or update) operation.
fn cli_input(mut obj: Map<String, Value>, at: &str) -> Result<Manifest, String> {
    let Some(&(name_member, kind)) = CLI_KINDS.iter().find(|(m, _)| obj.contains_key(*m)) else {
        return Err(format!(
            "{at}: not a resource: no kind, apiVersion, Resources or App Mesh name member ({})",
            CLI_KINDS
                .iter()
                .map(|(m, _)| *m)
                .collect::<Vec<_>>()
                .join(", ")
        ));
    };
    let mut text = |member: &str| -> Result<Option<String>, String> {
        match obj.remove(member) {
            None => Ok(None),
            Some(Value::String(s)) => Ok(Some(s)),
            Some(_) => Err(format!("{at}: {member}: must be a string")),
        }
    };
    let name = text(name_member)?.unwrap_or_default();
    let mut metadata = Metadata {
        name,
        ..Metadata::default()
    };
    if kind != "Mesh" {
        metadata.mesh =
            Some(text("meshName")?.ok_or_else(|| format!("{at}: meshName: is required"))?);
    }
    if kind == "Route" {
        metadata.virtual_router = Some(
            text("virtualRouterName")?
                .ok_or_else(|| format!("{at}: virtualRouterName: is required"))?,
        );
    }
    if kind == "GatewayRoute" {
        metadata.virtual_gateway = Some(
            text("virtualGatewayName")?
                .ok_or_else(|| format!("{at}: virtualGatewayName: is required"))?,
        );
    }
    // Per request, not part of the resource.
    text("clientToken")?;
    text("meshOwner")?;
    let spec = obj.remove("spec").unwrap_or(Value::Null);
    if let Some(tags) = obj.remove("tags") {
        let tags = serde_json::from_value(tags).map_err(|e| format!("{at}: tags: {e}"))?;
        metadata.tags = Some(tags);
    }
    if let Some(unknown) = obj.keys().next() {
        return Err(format!("{at}: {unknown}: unknown member of a {kind} input"));
    }
    Ok(Manifest {
        kind: kind.to_string(),
        metadata,
        spec,
        source: at.to_string(),
    })
}

/// A file's documents: one JSON value, or YAML documents (YAML tags such as
/// CloudFormation's `!Ref x` become `{"Ref": x}`, `!GetAtt a.b` `{"Fn::GetAtt": [a,
/// b]}`, any other `!F x` `{"Fn::F": x}`).
pub fn documents(text: &str) -> Result<Vec<Value>, String> {
    if text.trim_start().starts_with(['{', '[']) {
        let value: Value = serde_json::from_str(text).map_err(|e| format!("JSON: {e}"))?;
        return Ok(vec![value]);
    }
    let mut out = Vec::new();
    for doc in serde_yaml::Deserializer::from_str(text) {
        let value = serde_yaml::Value::deserialize(doc).map_err(|e| format!("YAML: {e}"))?;
        out.push(from_yaml(value)?);
    }
    Ok(out)
}

use serde::Deserialize;

fn from_yaml(value: serde_yaml::Value) -> Result<Value, String> {
    use serde_yaml::Value as Y;
    Ok(match value {
        Y::Null => Value::Null,
        Y::Bool(b) => Value::Bool(b),
        Y::Number(n) => {
            if let Some(i) = n.as_i64() {
                Value::from(i)
            } else if let Some(u) = n.as_u64() {
                Value::from(u)
            } else {
                n.as_f64()
                    .and_then(serde_json::Number::from_f64)
                    .map(Value::Number)
                    .ok_or_else(|| format!("YAML: {n} is not a JSON number"))?
            }
        }
        Y::String(s) => Value::String(s),
        Y::Sequence(items) => {
            Value::Array(items.into_iter().map(from_yaml).collect::<Result<_, _>>()?)
        }
        Y::Mapping(map) => {
            let mut out = Map::new();
            for (k, v) in map {
                let key = match k {
                    Y::String(s) => s,
                    Y::Number(n) => n.to_string(),
                    Y::Bool(b) => b.to_string(),
                    other => return Err(format!("YAML: a key that is not a string: {other:?}")),
                };
                out.insert(key, from_yaml(v)?);
            }
            Value::Object(out)
        }
        Y::Tagged(tagged) => {
            let tag = tagged.tag.to_string();
            let tag = tag.trim_start_matches('!');
            let inner = from_yaml(tagged.value)?;
            let (name, inner) = match tag {
                "Ref" | "Condition" => (tag.to_string(), inner),
                "GetAtt" => {
                    let inner = match inner {
                        Value::String(s) => match s.split_once('.') {
                            Some((a, b)) => Value::Array(vec![a.into(), b.into()]),
                            None => Value::String(s),
                        },
                        other => other,
                    };
                    ("Fn::GetAtt".to_string(), inner)
                }
                _ => (format!("Fn::{tag}"), inner),
            };
            let mut out = Map::new();
            out.insert(name, inner);
            Value::Object(out)
        }
    })
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::expect_used)]
    use super::*;

    #[test]
    fn a_cli_input_file_is_read_by_its_name_members() {
        let text = r#"{"meshName": "m", "virtualRouterName": "r", "routeName": "x",
            "spec": {"httpRoute": {}}, "clientToken": "t"}"#;
        let got = import_text(text, "route.json").unwrap();
        let m = &got.resources[0];
        assert_eq!(m.kind, "Route");
        assert_eq!(m.metadata.name, "x");
        assert_eq!(m.metadata.virtual_router.as_deref(), Some("r"));
        let bad = import_text(
            r#"{"meshName": "m", "virtualNodeName": "n", "spek": {}}"#,
            "f",
        );
        assert!(bad.unwrap_err().contains("spek: unknown member"));
    }

    #[test]
    fn ferrymesh_documents_and_other_documents() {
        let text = "kind: Mesh\nmetadata: {name: m}\n---\napiVersion: v1\nkind: Namespace\nmetadata: {name: x}\n";
        let got = import_text(text, "f.yaml").unwrap();
        assert_eq!(got.resources.len(), 1);
        assert!(
            got.notes[0].contains("v1 Namespace skipped"),
            "{:?}",
            got.notes
        );
        let bad = import_text("kind: Mesh\nmetadata: {name: m, color: red}\n", "f.yaml");
        assert!(bad.unwrap_err().contains("metadata"), "field path named");
    }

    #[test]
    fn yaml_tags_become_cloudformation_functions() {
        let docs =
            documents("a: !Ref X\nb: !GetAtt N.VirtualNodeName\nc: !Sub 'x-${Y}'\n").unwrap();
        assert_eq!(
            docs[0],
            serde_json::json!({"a": {"Ref": "X"}, "b": {"Fn::GetAtt": ["N", "VirtualNodeName"]},
                "c": {"Fn::Sub": "x-${Y}"}})
        );
    }
}
