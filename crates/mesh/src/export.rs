//! Writing resources out in the formats they can be read from ([`crate::import`]), so
//! that what goes in comes out: ferrymesh's YAML, AWS CLI `--cli-input-json` inputs
//! (a JSON array, one create input per resource), and a CloudFormation template.

use crate::import::cloudformation::to_cfn;
use crate::manifest::Manifest;
use serde_json::{json, Map, Value};

/// The formats of `ferry export`.
pub const FORMATS: &[&str] = &["ferrymesh", "appmesh-cli", "cloudformation"];

/// `resources` in `format`, as text.
pub fn export(resources: &[Manifest], format: &str) -> Result<String, String> {
    match format {
        "ferrymesh" => {
            let mut out = String::new();
            for m in resources {
                out.push_str("---\n");
                out.push_str(&serde_yaml::to_string(m).map_err(|e| e.to_string())?);
            }
            Ok(out)
        }
        "appmesh-cli" => {
            let inputs: Vec<Value> = resources.iter().map(cli_input).collect();
            serde_json::to_string_pretty(&inputs).map_err(|e| e.to_string())
        }
        "cloudformation" => serde_yaml::to_string(&template(resources)).map_err(|e| e.to_string()),
        other => Err(format!(
            "--format {other}: must be one of {}",
            FORMATS.join(", ")
        )),
    }
}

/// The member that names a resource of `kind` (`virtualNodeName`).
fn name_member(kind: &str) -> String {
    crate::manifest::camel(&format!("{kind}Name"))
}

/// The create operation's input for `m` (`aws appmesh create-… --cli-input-json`).
fn cli_input(m: &Manifest) -> Value {
    let mut input = Map::new();
    if let Some(mesh) = &m.metadata.mesh {
        input.insert("meshName".into(), json!(mesh));
    }
    if let Some(router) = &m.metadata.virtual_router {
        input.insert("virtualRouterName".into(), json!(router));
    }
    if let Some(gateway) = &m.metadata.virtual_gateway {
        input.insert("virtualGatewayName".into(), json!(gateway));
    }
    input.insert(name_member(&m.kind), json!(m.metadata.name));
    if !m.spec.is_null() {
        input.insert("spec".into(), m.spec.clone());
    }
    if let Some(tags) = m.metadata.tags.as_ref().filter(|t| !t.is_empty()) {
        input.insert("tags".into(), json!(tags));
    }
    Value::Object(input)
}

/// A CloudFormation logical id for `m`: its kind and names, alphanumeric.
fn logical_id(m: &Manifest) -> String {
    let mut id = m.kind.clone();
    let names = [
        m.metadata.mesh.as_deref(),
        m.metadata.virtual_router.as_deref(),
        m.metadata.virtual_gateway.as_deref(),
        Some(m.metadata.name.as_str()),
    ];
    for name in names.into_iter().flatten() {
        let mut upper = true;
        for c in name.chars() {
            if c.is_ascii_alphanumeric() {
                id.push(if upper { c.to_ascii_uppercase() } else { c });
                upper = false;
            } else {
                upper = true;
            }
        }
    }
    id
}

/// A template with one `AWS::AppMesh::*` resource per manifest; each depends on what it
/// lives in (its mesh, its virtual router or gateway), so CloudFormation creates them
/// in order.
fn template(resources: &[Manifest]) -> Value {
    let mut out = Map::new();
    // Logical ids keep only letters and digits, so `a-b` and `a_b` would meet: the
    // second gets a number.
    let mut ids: Vec<String> = Vec::with_capacity(resources.len());
    for m in resources {
        let base = logical_id(m);
        let mut id = base.clone();
        let mut n = 2;
        while ids.contains(&id) {
            id = format!("{base}{n}");
            n += 1;
        }
        ids.push(id);
    }
    let id_of = |kind: &str, mesh: Option<&str>, name: &str| {
        resources
            .iter()
            .position(|r| {
                r.kind == kind && r.metadata.mesh.as_deref() == mesh && r.metadata.name == name
            })
            .map(|i| ids[i].clone())
    };
    for (m, id) in resources.iter().zip(&ids) {
        let mut props = Map::new();
        let input = cli_input(m);
        for (k, v) in input.as_object().into_iter().flatten() {
            props.insert(crate::import::cloudformation::cfn_property(k), to_cfn(v));
        }
        let mut resource = json!({
            "Type": format!("AWS::AppMesh::{}", m.kind),
            "Properties": props,
        });
        let mesh = m.metadata.mesh.as_deref();
        let parents = [
            mesh.and_then(|mesh| id_of("Mesh", None, mesh)),
            m.metadata
                .virtual_router
                .as_deref()
                .and_then(|r| id_of("VirtualRouter", mesh, r)),
            m.metadata
                .virtual_gateway
                .as_deref()
                .and_then(|g| id_of("VirtualGateway", mesh, g)),
        ];
        let depends: Vec<String> = parents.into_iter().flatten().collect();
        if !depends.is_empty() {
            resource["DependsOn"] = json!(depends);
        }
        out.insert(id.clone(), resource);
    }
    json!({
        "AWSTemplateFormatVersion": "2010-09-09",
        "Description": "App Mesh resources exported by ferry export",
        "Resources": out,
    })
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::expect_used)]
    use super::*;
    use crate::import::import_text;

    #[test]
    fn what_is_exported_imports_as_it_was() {
        let text = r#"
kind: Mesh
metadata: {name: m, tags: [{key: a, value: b}]}
spec: {egressFilter: {type: ALLOW_ALL}}
---
kind: VirtualNode
metadata: {mesh: m, name: node_1}
spec: {listeners: [{portMapping: {port: 81, protocol: http}}]}
---
kind: VirtualNode
metadata: {mesh: m, name: node-1}
spec:
  listeners: [{portMapping: {port: 80, protocol: http2}, tls: {mode: STRICT, certificate: {sds: {secretName: s}}}}]
  serviceDiscovery: {dns: {hostname: n.local}}
---
kind: Route
metadata: {mesh: m, virtualRouter: r, name: x}
spec: {http2Route: {match: {prefix: /}, action: {weightedTargets: [{virtualNode: node-1, weight: 1}]}}}
"#;
        let by_kind = |mut r: Vec<Manifest>| {
            r.sort_by_key(|m| (m.order(), m.metadata.name.clone()));
            r
        };
        let original = by_kind(import_text(text, "in.yaml").unwrap().resources);
        for format in FORMATS {
            let out = export(&original, format).unwrap();
            let back = by_kind(import_text(&out, "out").unwrap().resources);
            assert_eq!(back.len(), original.len(), "{format}");
            for (a, b) in original.iter().zip(&back) {
                assert_eq!((&a.kind, &a.spec), (&b.kind, &b.spec), "{format}:\n{out}");
                assert_eq!(a.metadata.name, b.metadata.name, "{format}");
                assert_eq!(a.metadata.mesh, b.metadata.mesh, "{format}");
                assert_eq!(a.metadata.virtual_router, b.metadata.virtual_router);
                assert_eq!(a.metadata.tags, b.metadata.tags, "{format}");
            }
        }
        assert!(export(&original, "terraform").is_err());
    }
}
