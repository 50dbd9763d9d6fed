//! CloudFormation templates (YAML or JSON) with `AWS::AppMesh::*` resources.
//!
//! Intrinsic functions are resolved among the template's own parameters (their
//! `Default`) and resources: `Ref`, `Fn::GetAtt` of a name attribute
//! (`X.VirtualNodeName`, `X.MeshName`, …), `Fn::Sub`, `Fn::Join`, `Fn::Select`, and the
//! pseudo parameters `AWS::Region` (`local`), `AWS::AccountId` (`000000000000`),
//! `AWS::StackName` (the file's name) and `AWS::NoValue`. `Ref` of an App Mesh resource
//! gives its name (CloudFormation gives its ARN, which no App Mesh property takes by
//! name). A `Number` parameter is a number, any other a string. Resources of other
//! types are skipped with a note.
//!
//! Properties are CloudFormation's: PascalCase, with a few acronyms (`DNS`, `TLS`,
//! `HTTP2`, …); they become the API's camelCase members ([`api_member`]).

use crate::manifest::{Manifest, Metadata};
use serde_json::{Map, Value};
use std::collections::HashSet;

/// The type prefix of App Mesh's resources.
const APPMESH: &str = "AWS::AppMesh::";

/// CloudFormation property names that are not the API's with the first letter in
/// lower case.
const ACRONYMS: &[(&str, &str)] = &[
    ("AWSCloudMap", "awsCloudMap"),
    ("DNS", "dns"),
    ("TLS", "tls"),
    ("HTTP", "http"),
    ("HTTP2", "http2"),
    ("GRPC", "grpc"),
    ("TCP", "tcp"),
    ("ACM", "acm"),
    ("SDS", "sds"),
];

/// The API's member for a CloudFormation property name.
pub fn api_member(property: &str) -> String {
    if let Some((_, api)) = ACRONYMS.iter().find(|(cfn, _)| *cfn == property) {
        return api.to_string();
    }
    crate::manifest::camel(property)
}

/// The CloudFormation property for an API member (the inverse of [`api_member`]).
pub fn cfn_property(member: &str) -> String {
    if let Some((cfn, _)) = ACRONYMS.iter().find(|(_, api)| *api == member) {
        return cfn.to_string();
    }
    crate::manifest::pascal(member)
}

/// Whether a document is a CloudFormation template.
pub fn is_template(obj: &Map<String, Value>) -> bool {
    obj.contains_key("AWSTemplateFormatVersion")
        || obj
            .get("Resources")
            .and_then(Value::as_object)
            .is_some_and(|r| r.values().any(|v| v.get("Type").is_some()))
}

/// The property that names a resource of each App Mesh type.
fn name_property(kind: &str) -> String {
    format!("{kind}Name")
}

struct Template<'a> {
    at: &'a str,
    stack: String,
    parameters: &'a Map<String, Value>,
    resources: &'a Map<String, Value>,
}

/// Reads a template's App Mesh resources.
pub fn read(
    obj: &Map<String, Value>,
    at: &str,
    notes: &mut Vec<String>,
) -> Result<Vec<Manifest>, String> {
    let empty = Map::new();
    let stack = std::path::Path::new(at.split(' ').next().unwrap_or(at))
        .file_stem()
        .and_then(|s| s.to_str())
        .unwrap_or("stack")
        .to_string();
    let t = Template {
        at,
        stack,
        parameters: obj
            .get("Parameters")
            .and_then(Value::as_object)
            .unwrap_or(&empty),
        resources: obj
            .get("Resources")
            .and_then(Value::as_object)
            .ok_or_else(|| format!("{at}: Resources: is required"))?,
    };
    let mut out = Vec::new();
    for (logical, resource) in t.resources {
        let ty = resource.get("Type").and_then(Value::as_str).unwrap_or("");
        let Some(kind) = ty.strip_prefix(APPMESH) else {
            notes.push(format!("{at}: {logical} ({ty}) skipped (not App Mesh)"));
            continue;
        };
        if !crate::manifest::KIND_ORDER.contains(&kind) {
            return Err(format!(
                "{at}: {logical}: Type {ty} is not an App Mesh resource type"
            ));
        }
        if let Some(condition) = resource.get("Condition") {
            notes.push(format!(
                "{at}: {logical} has Condition {condition}, which ferry apply does not evaluate: the resource is applied"
            ));
        }
        out.push(t.manifest(logical, kind, resource)?);
    }
    Ok(out)
}

impl Template<'_> {
    fn manifest(&self, logical: &str, kind: &str, resource: &Value) -> Result<Manifest, String> {
        let source = format!("{} {logical}", self.at);
        let err = |e: String| format!("{source}: {e}");
        let empty = Map::new();
        let props = resource
            .get("Properties")
            .and_then(Value::as_object)
            .unwrap_or(&empty);
        let mut guard = HashSet::new();
        let text = |prop: &str, guard: &mut HashSet<String>| -> Result<Option<String>, String> {
            match props.get(prop) {
                None => Ok(None),
                Some(v) => match self.resolve(v, guard)? {
                    Value::String(s) => Ok(Some(s)),
                    v if is_no_value(&v) => Ok(None),
                    other => Err(format!("Properties.{prop}: must be a string, not {other}")),
                },
            }
        };
        let name = self.name_of(logical, &mut guard).map_err(err)?;
        let mut metadata = Metadata {
            name,
            ..Metadata::default()
        };
        if kind != "Mesh" {
            metadata.mesh = Some(
                text("MeshName", &mut guard)
                    .map_err(err)?
                    .ok_or_else(|| err("Properties.MeshName: is required".into()))?,
            );
        }
        if kind == "Route" {
            metadata.virtual_router = Some(
                text("VirtualRouterName", &mut guard)
                    .map_err(err)?
                    .ok_or_else(|| err("Properties.VirtualRouterName: is required".into()))?,
            );
        }
        if kind == "GatewayRoute" {
            metadata.virtual_gateway = Some(
                text("VirtualGatewayName", &mut guard)
                    .map_err(err)?
                    .ok_or_else(|| err("Properties.VirtualGatewayName: is required".into()))?,
            );
        }
        let known = [
            "MeshName",
            "MeshOwner",
            "VirtualRouterName",
            "VirtualGatewayName",
            "Spec",
            "Tags",
            name_property(kind).as_str(),
        ]
        .map(str::to_string);
        if let Some(unknown) = props.keys().find(|k| !known.contains(k)) {
            return Err(err(format!(
                "Properties.{unknown}: unknown property of {APPMESH}{kind}"
            )));
        }
        // A property that resolves to `AWS::NoValue` is absent.
        let mut resolved = |prop: &str| -> Result<Option<Value>, String> {
            match props.get(prop) {
                Some(v) => {
                    let v = self.resolve(v, &mut guard).map_err(err)?;
                    Ok(Some(v).filter(|v| !is_no_value(v)).map(to_api))
                }
                None => Ok(None),
            }
        };
        let spec = resolved("Spec")?.unwrap_or(Value::Null);
        if let Some(tags) = resolved("Tags")? {
            let tags =
                serde_json::from_value(tags).map_err(|e| err(format!("Properties.Tags: {e}")))?;
            metadata.tags = Some(tags);
        }
        Ok(Manifest {
            kind: kind.to_string(),
            metadata,
            spec,
            source,
        })
    }

    /// The App Mesh name of the resource `logical`: its name property, else its
    /// logical id (as CloudFormation would generate one).
    fn name_of(&self, logical: &str, guard: &mut HashSet<String>) -> Result<String, String> {
        let resource = self
            .resources
            .get(logical)
            .ok_or_else(|| format!("{logical}: no such resource or parameter in the template"))?;
        let ty = resource.get("Type").and_then(Value::as_str).unwrap_or("");
        let Some(kind) = ty.strip_prefix(APPMESH) else {
            return Err(format!(
                "{logical} ({ty}) is not an App Mesh resource; its attributes are not known here"
            ));
        };
        let prop = name_property(kind);
        match resource.get("Properties").and_then(|p| p.get(&prop)) {
            Some(v) => match self.resolve(v, guard)? {
                Value::String(s) => Ok(s),
                other => Err(format!(
                    "{logical}.Properties.{prop}: must be a string, not {other}"
                )),
            },
            None => Ok(logical.to_string()),
        }
    }

    /// `value` with its intrinsic functions resolved (`AWS::NoValue` members removed).
    fn resolve(&self, value: &Value, guard: &mut HashSet<String>) -> Result<Value, String> {
        match value {
            Value::Object(obj) if obj.len() == 1 => {
                let (f, arg) = obj
                    .iter()
                    .next()
                    .map(|(k, v)| (k.as_str(), v))
                    .unwrap_or_default();
                match f {
                    "Ref" => self.reference(arg, guard),
                    "Fn::GetAtt" => self.get_att(arg, guard),
                    "Fn::Sub" => self.sub(arg, guard),
                    "Fn::Join" => self.join(arg, guard),
                    "Fn::Select" => self.select(arg, guard),
                    f if f.starts_with("Fn::") || f == "Condition" => {
                        Err(format!("{f} is not supported by ferry apply"))
                    }
                    _ => self.resolve_members(obj, guard),
                }
            }
            Value::Object(obj) => self.resolve_members(obj, guard),
            Value::Array(items) => {
                let mut out = Vec::with_capacity(items.len());
                for item in items {
                    let v = self.resolve(item, guard)?;
                    if !is_no_value(&v) {
                        out.push(v);
                    }
                }
                Ok(Value::Array(out))
            }
            other => Ok(other.clone()),
        }
    }

    fn resolve_members(
        &self,
        obj: &Map<String, Value>,
        guard: &mut HashSet<String>,
    ) -> Result<Value, String> {
        let mut out = Map::new();
        for (k, v) in obj {
            let v = self.resolve(v, guard).map_err(|e| format!("{k}: {e}"))?;
            if !is_no_value(&v) {
                out.insert(k.clone(), v);
            }
        }
        Ok(Value::Object(out))
    }

    /// `Ref`: a pseudo parameter, a parameter's default, an App Mesh resource's name.
    fn reference(&self, arg: &Value, guard: &mut HashSet<String>) -> Result<Value, String> {
        let Some(name) = arg.as_str() else {
            return Err(format!("Ref: takes a name, not {arg}"));
        };
        match name {
            "AWS::Region" => return Ok("local".into()),
            "AWS::AccountId" => return Ok("000000000000".into()),
            "AWS::StackName" => return Ok(self.stack.clone().into()),
            "AWS::Partition" => return Ok("aws".into()),
            "AWS::NoValue" => return Ok(no_value()),
            _ => {}
        }
        if let Some(p) = self.parameters.get(name) {
            // A `Number` parameter is a number (App Mesh's integer properties take it);
            // any other a string.
            let number = p.get("Type").and_then(Value::as_str) == Some("Number");
            return match p.get("Default") {
                Some(d) if number => scalar(d)
                    .and_then(|d| d.parse::<i64>().ok())
                    .map(Value::from)
                    .ok_or(format!(
                        "Ref {name}: the Number parameter's Default is not an integer"
                    )),
                Some(d) => Ok(scalar(d).map(Value::String).unwrap_or_else(|| d.clone())),
                None => Err(format!(
                    "Ref {name}: the parameter has no Default (ferry apply takes none)"
                )),
            };
        }
        self.guarded(name, guard, |t, g| t.name_of(name, g).map(Value::String))
    }

    /// `Fn::GetAtt [X, Attr]`: a name attribute of an App Mesh resource.
    fn get_att(&self, arg: &Value, guard: &mut HashSet<String>) -> Result<Value, String> {
        let parts: Vec<String> = match arg {
            Value::Array(a) => a
                .iter()
                .map(|v| v.as_str().unwrap_or("").to_string())
                .collect(),
            Value::String(s) => s.split('.').map(str::to_string).collect(),
            _ => Vec::new(),
        };
        let [logical, attr] = parts.as_slice() else {
            return Err(format!(
                "Fn::GetAtt: takes [resource, attribute], not {arg}"
            ));
        };
        let resource = self
            .resources
            .get(logical)
            .ok_or_else(|| format!("Fn::GetAtt: no resource {logical} in the template"))?;
        let ty = resource.get("Type").and_then(Value::as_str).unwrap_or("");
        let kind = ty.strip_prefix(APPMESH).ok_or_else(|| {
            format!("Fn::GetAtt {logical}.{attr}: {logical} ({ty}) is not an App Mesh resource")
        })?;
        if *attr == name_property(kind) {
            return self.guarded(logical, guard, |t, g| {
                t.name_of(logical, g).map(Value::String)
            });
        }
        if attr.ends_with("Name") {
            let Some(v) = resource.get("Properties").and_then(|p| p.get(attr)) else {
                return Err(format!(
                    "Fn::GetAtt {logical}.{attr}: {logical} has no {attr}"
                ));
            };
            return self.guarded(logical, guard, |t, g| t.resolve(v, g));
        }
        Err(format!(
            "Fn::GetAtt {logical}.{attr}: known only once the resource exists (ferry apply resolves name attributes)"
        ))
    }

    /// `Fn::Sub`: `${Name}` and `${X.Attr}` replaced; `${!x}` is a literal `${x}`.
    fn sub(&self, arg: &Value, guard: &mut HashSet<String>) -> Result<Value, String> {
        let (text, vars) = match arg {
            Value::String(s) => (s.as_str(), None),
            Value::Array(a) if a.len() == 2 => (
                a[0].as_str()
                    .ok_or("Fn::Sub: the first item must be a string")?,
                a[1].as_object(),
            ),
            _ => {
                return Err(format!(
                    "Fn::Sub: takes a string or [string, variables], not {arg}"
                ))
            }
        };
        let mut out = String::new();
        let mut rest = text;
        while let Some(start) = rest.find("${") {
            out.push_str(&rest[..start]);
            let after = &rest[start + 2..];
            let end = after
                .find('}')
                .ok_or_else(|| format!("Fn::Sub: an unclosed ${{ in {text:?}"))?;
            let var = &after[..end];
            if let Some(literal) = var.strip_prefix('!') {
                out.push_str("${");
                out.push_str(literal);
                out.push('}');
            } else {
                let value = match vars.and_then(|v| v.get(var)) {
                    Some(v) => self.resolve(v, guard)?,
                    None if var.contains('.') => {
                        self.get_att(&Value::String(var.to_string()), guard)?
                    }
                    None => self.reference(&Value::String(var.to_string()), guard)?,
                };
                out.push_str(
                    &scalar(&value).ok_or(format!("Fn::Sub: ${{{var}}} is not a string"))?,
                );
            }
            rest = &after[end + 1..];
        }
        out.push_str(rest);
        Ok(Value::String(out))
    }

    /// `Fn::Join [delimiter, [values]]`.
    fn join(&self, arg: &Value, guard: &mut HashSet<String>) -> Result<Value, String> {
        let (Some(delimiter), Some(items)) = (arg.get(0).and_then(Value::as_str), arg.get(1))
        else {
            return Err(format!("Fn::Join: takes [delimiter, [values]], not {arg}"));
        };
        let Value::Array(items) = self.resolve(items, guard)? else {
            return Err("Fn::Join: the second item must be a list".into());
        };
        let parts: Option<Vec<String>> = items.iter().map(scalar).collect();
        let parts = parts.ok_or("Fn::Join: every value must be a string")?;
        Ok(Value::String(parts.join(delimiter)))
    }

    /// `Fn::Select [index, [values]]`.
    fn select(&self, arg: &Value, guard: &mut HashSet<String>) -> Result<Value, String> {
        let index = arg.get(0).map(|i| self.resolve(i, guard)).transpose()?;
        let index = index
            .as_ref()
            .and_then(scalar)
            .and_then(|i| i.parse::<usize>().ok())
            .ok_or(format!("Fn::Select: takes [index, [values]], not {arg}"))?;
        let list = arg.get(1).map(|l| self.resolve(l, guard)).transpose()?;
        list.as_ref()
            .and_then(|l| l.get(index))
            .cloned()
            .ok_or(format!("Fn::Select: no item {index} in {arg}"))
    }

    /// Runs `f` for the resource `logical`, refusing a cycle of references.
    fn guarded(
        &self,
        logical: &str,
        guard: &mut HashSet<String>,
        f: impl FnOnce(&Self, &mut HashSet<String>) -> Result<Value, String>,
    ) -> Result<Value, String> {
        if !guard.insert(logical.to_string()) {
            return Err(format!("{logical}: its name refers to itself"));
        }
        let out = f(self, guard);
        guard.remove(logical);
        out
    }
}

/// A string, number or boolean as text.
fn scalar(v: &Value) -> Option<String> {
    match v {
        Value::String(s) => Some(s.clone()),
        Value::Number(n) => Some(n.to_string()),
        Value::Bool(b) => Some(b.to_string()),
        _ => None,
    }
}

/// The marker `AWS::NoValue` resolves to (removed from its object or list).
fn no_value() -> Value {
    serde_json::json!({"AWS::NoValue": true})
}

fn is_no_value(v: &Value) -> bool {
    *v == no_value()
}

/// A resolved spec (or tags) with the API's member names.
fn to_api(value: Value) -> Value {
    match value {
        Value::Object(obj) => Value::Object(
            obj.into_iter()
                .map(|(k, v)| (api_member(&k), to_api(v)))
                .collect(),
        ),
        Value::Array(items) => Value::Array(items.into_iter().map(to_api).collect()),
        other => other,
    }
}

/// An API spec (or tags) with CloudFormation's property names.
pub fn to_cfn(value: &Value) -> Value {
    match value {
        Value::Object(obj) => Value::Object(
            obj.iter()
                .map(|(k, v)| (cfn_property(k), to_cfn(v)))
                .collect(),
        ),
        Value::Array(items) => Value::Array(items.iter().map(to_cfn).collect()),
        other => other.clone(),
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::expect_used)]
    use super::*;
    use crate::import::import_text;

    const TEMPLATE: &str = r#"
AWSTemplateFormatVersion: '2010-09-09'
Parameters:
  MeshName: {Type: String, Default: color-mesh}
  Port: {Type: Number, Default: 8080}
Resources:
  Mesh:
    Type: AWS::AppMesh::Mesh
    Properties:
      MeshName: !Ref MeshName
      Spec: {EgressFilter: {Type: DROP_ALL}}
  Node:
    Type: AWS::AppMesh::VirtualNode
    Properties:
      MeshName: !GetAtt Mesh.MeshName
      VirtualNodeName: !Sub '${MeshName}-node'
      Spec:
        Listeners:
          - PortMapping: {Port: !Ref Port, Protocol: http}
            TLS: {Mode: DISABLED}
        ServiceDiscovery:
          DNS: {Hostname: !Join ['.', [node, !Ref 'AWS::StackName', local]]}
      Tags: [{Key: team, Value: color}]
  Logs:
    Type: AWS::Logs::LogGroup
    Properties: {LogGroupName: x}
"#;

    #[test]
    fn a_template_resolves_among_its_parameters_and_resources() {
        let got = import_text(TEMPLATE, "stack.yaml").unwrap();
        assert_eq!(got.resources.len(), 2);
        let node = &got.resources[1];
        assert_eq!(node.metadata.name, "color-mesh-node");
        assert_eq!(node.metadata.mesh.as_deref(), Some("color-mesh"));
        assert_eq!(
            node.spec,
            serde_json::json!({
                "listeners": [{"portMapping": {"port": 8080, "protocol": "http"},
                               "tls": {"mode": "DISABLED"}}],
                "serviceDiscovery": {"dns": {"hostname": "node.stack.local"}}
            })
        );
        assert_eq!(node.metadata.tags.as_ref().unwrap()[0].key, "team");
        assert!(got.notes[0].contains("Logs (AWS::Logs::LogGroup) skipped"));
    }

    #[test]
    fn what_a_template_cannot_resolve_is_named() {
        let bad = TEMPLATE.replace("!Ref Port", "!GetAtt Node.Arn");
        let e = import_text(&bad, "stack.yaml").unwrap_err();
        assert!(
            e.contains("stack.yaml Node") && e.contains("Node.Arn"),
            "{e}"
        );
        let bad = TEMPLATE.replace("!Ref Port", "!If [c, 1, 2]");
        let e = import_text(&bad, "stack.yaml").unwrap_err();
        assert!(e.contains("Fn::If is not supported"), "{e}");
    }

    #[test]
    fn member_names_go_both_ways() {
        for (cfn, api) in ACRONYMS {
            assert_eq!(api_member(cfn), *api);
            assert_eq!(cfn_property(api), *cfn);
        }
        assert_eq!(api_member("PortMapping"), "portMapping");
        assert_eq!(cfn_property("http2Route"), "Http2Route");
    }
}
