//! A virtual gateway's proxy (App Mesh's node id `mesh/<mesh>/virtualGateway/<name>`),
//! as App Mesh built it: per gateway listener, a listener on its port that applies the
//! gateway routes — their matches (with the `hostname` as `:authority`), in priority
//! order — rewrites the request for its target virtual service (the host to the
//! service's name, the matched prefix to `/` or a value, or the path) and sends it to
//! the gateway's own egress listener (the `self_redirect` cluster, which carries the
//! listener's connection pool); that egress listener routes to the virtual services
//! exactly as a sidecar's does (their routers' routes, weighted targets, retries), to
//! the same clusters.

use super::inbound::thresholds;
use super::route::{header, http_match, string_match};
use super::{http2_upstream, http_connection_manager, listener, MeshView, Options, Resources};
use crate::model::gateway_route::{
    DefaultRewrite, GatewayRouteHostnameMatch, GatewayRouteHostnameRewrite, GatewayRouteSpec,
    GatewayRouteTarget, GrpcGatewayRoute, HttpGatewayRoute,
};
use crate::model::http_match::HttpRouteMatch;
use crate::model::virtual_gateway::VirtualGatewayListener;
use crate::model::PortProtocol;
use serde_json::{json, Value};

/// The configuration of the proxy of virtual gateway `gateway`.
pub fn virtual_gateway(
    view: &MeshView,
    gateway: &str,
    options: &Options,
) -> Result<Resources, String> {
    let spec = view.gateways.get(gateway).ok_or_else(|| {
        format!(
            "virtualGateway {gateway} does not exist in mesh {}",
            view.name
        )
    })?;
    let empty = Default::default();
    let routes = view.gateway_routes.get(gateway).unwrap_or(&empty);
    let mut ordered: Vec<(&String, &GatewayRouteSpec)> = routes.iter().collect();
    ordered.sort_by_key(|(name, r)| {
        (
            r.priority.unwrap_or(u32::MAX),
            std::cmp::Reverse(specificity(r)),
            (*name).clone(),
        )
    });
    let mut out = Resources::default();
    for l in &spec.listeners {
        let port = l.port_mapping.port;
        if u16::try_from(port).ok() == Some(options.egress_port) {
            out.notes.push(format!(
                "listener {port}: the egress listener's port; give the gateway another (--egress-port)"
            ));
            continue;
        }
        let redirect = self_redirect(view, gateway, l, options);
        let cluster = redirect["name"].as_str().unwrap_or_default().to_string();
        out.clusters.push(redirect);
        let envoy_routes: Vec<Value> = ordered
            .iter()
            .filter_map(|(name, r)| route(name, r, l, &cluster))
            .collect();
        let route_config = json!({
            "name": format!("rds_ingress_{port}"),
            "virtual_hosts": [{"name": format!("ingress_{port}"), "domains": ["*"], "routes": envoy_routes}],
        });
        let stat_prefix = format!("ingress_{port}");
        let mut hcm = http_connection_manager(&stat_prefix, route_config, Vec::new());
        super::extensions::ingress(&l.extensions, port, &mut hcm["typed_config"]);
        let bind_port = u16::try_from(port).unwrap_or_default();
        out.listeners.push(listener(
            &format!("lds_ingress_{port}"),
            &options.bind,
            bind_port,
            vec![hcm],
        ));
    }
    let targets: Vec<&str> = routes
        .values()
        .filter_map(|r| target(r))
        .map(|t| t.virtual_service.virtual_service_name.as_str())
        .collect();
    super::outbound::egress(view, targets, options, &mut out);
    super::access_log(spec.logging.as_ref(), &mut out);
    out.sort();
    Ok(out)
}

/// The cluster back to the gateway's own egress listener, with the gateway listener's
/// connection pool (App Mesh's `cds_ingress_<mesh>_<gateway>_self_redirect_…`).
fn self_redirect(
    view: &MeshView,
    gateway: &str,
    l: &VirtualGatewayListener,
    options: &Options,
) -> Value {
    let protocol = serde_json::to_value(l.port_mapping.protocol).unwrap_or_default();
    let name = format!(
        "cds_ingress_{}_{gateway}_self_redirect_{}_{}",
        view.name,
        protocol.as_str().unwrap_or_default(),
        options.egress_port
    );
    // Reachable from the gateway itself, whatever its listeners bind.
    let address = match options.bind.as_str() {
        "0.0.0.0" => "127.0.0.1",
        "::" => "::1",
        other => other,
    };
    let mut cluster = json!({
        "name": name,
        "type": "STATIC",
        "connect_timeout": "1s",
        "load_assignment": {
            "cluster_name": name,
            "endpoints": [{"lb_endpoints": [{"endpoint": {"address": {"socket_address": {
                "address": address,
                "port_value": options.egress_port,
            }}}}]}],
        },
        "circuit_breakers": {"thresholds": [thresholds(l.connection_pool.as_ref())]},
    });
    if matches!(
        l.port_mapping.protocol,
        PortProtocol::Http2 | PortProtocol::Grpc
    ) {
        cluster["typed_extension_protocol_options"] = http2_upstream();
    }
    cluster
}

/// A gateway route's target.
fn target(r: &GatewayRouteSpec) -> Option<&GatewayRouteTarget> {
    match (&r.http_route, &r.http2_route, &r.grpc_route) {
        (Some(h), _, _) | (None, Some(h), _) => Some(&h.action.target),
        (None, None, Some(g)) => Some(&g.action.target),
        _ => None,
    }
}

/// How specific a gateway route's match is (within one priority, the more specific
/// first).
fn specificity(r: &GatewayRouteSpec) -> usize {
    match (&r.http_route, &r.http2_route, &r.grpc_route) {
        (Some(h), _, _) | (None, Some(h), _) => match (&h.matcher.path, &h.matcher.prefix) {
            (Some(_), _) => usize::MAX,
            (None, Some(p)) => p.len(),
            _ => 0,
        },
        (None, None, Some(g)) => usize::from(g.matcher.service_name.is_some()),
        _ => 0,
    }
}

/// Gateway route `name` on gateway listener `l` (`None` when it is for another listener
/// or protocol).
fn route(
    name: &str,
    r: &GatewayRouteSpec,
    l: &VirtualGatewayListener,
    cluster: &str,
) -> Option<Value> {
    let port = l.port_mapping.port;
    let protocol = l.port_mapping.protocol;
    match (&r.http_route, &r.http2_route, &r.grpc_route) {
        (Some(h), _, _) if protocol == PortProtocol::Http => http_route(name, h, port, cluster),
        (None, Some(h), _) if protocol == PortProtocol::Http2 => http_route(name, h, port, cluster),
        (None, None, Some(g)) if protocol == PortProtocol::Grpc => {
            grpc_route(name, g, port, cluster)
        }
        _ => None,
    }
}

/// The `:authority` condition of a hostname match.
fn hostname(h: &GatewayRouteHostnameMatch) -> Value {
    // Exactly one of them is set (checked when stored).
    let m = string_match(&h.exact, &None, &h.suffix, &None);
    json!({"name": ":authority", "string_match": m})
}

/// The route action: to the gateway's egress, with the host of the target unless the
/// rewrite says `DISABLED`.
fn action(
    target: &GatewayRouteTarget,
    host: Option<&GatewayRouteHostnameRewrite>,
    cluster: &str,
) -> Value {
    let mut action = json!({"cluster": cluster});
    let disabled = host.and_then(|h| h.default_target_hostname) == Some(DefaultRewrite::Disabled);
    if !disabled {
        let service = &target.virtual_service.virtual_service_name;
        let host = match target.port {
            Some(port) => format!("{service}:{port}"),
            None => service.clone(),
        };
        action["host_rewrite_literal"] = json!(host);
    }
    action
}

fn http_route(name: &str, r: &HttpGatewayRoute, port: u32, cluster: &str) -> Option<Value> {
    let m = &r.matcher;
    if m.port.is_some_and(|p| p != port) {
        return None;
    }
    let as_route_match = HttpRouteMatch {
        headers: m.headers.clone(),
        method: m.method,
        path: m.path.clone(),
        port: None,
        prefix: m.prefix.clone(),
        query_parameters: m.query_parameters.clone(),
        scheme: None,
    };
    let mut matcher = http_match(&as_route_match);
    if let Some(h) = &m.hostname {
        let mut headers = matcher["headers"].as_array().cloned().unwrap_or_default();
        headers.push(hostname(h));
        matcher["headers"] = json!(headers);
    }
    let rewrite = r.action.rewrite.as_ref();
    let mut action = action(
        &r.action.target,
        rewrite.and_then(|w| w.hostname.as_ref()),
        cluster,
    );
    if let Some(exact) = rewrite
        .and_then(|w| w.path.as_ref())
        .and_then(|p| p.exact.as_ref())
    {
        action["regex_rewrite"] = json!({"pattern": {"regex": "^.*$"}, "substitution": exact});
    } else if m.prefix.is_some() {
        // App Mesh's default: the matched prefix becomes `/`.
        let prefix = rewrite.and_then(|w| w.prefix.as_ref());
        match (
            prefix.and_then(|p| p.value.as_ref()),
            prefix.and_then(|p| p.default_prefix),
        ) {
            (Some(value), _) => action["prefix_rewrite"] = json!(value),
            (None, Some(DefaultRewrite::Disabled)) => {}
            (None, _) => action["prefix_rewrite"] = json!("/"),
        }
    }
    Some(json!({"name": name, "match": matcher, "route": action}))
}

fn grpc_route(name: &str, r: &GrpcGatewayRoute, port: u32, cluster: &str) -> Option<Value> {
    let m = &r.matcher;
    if m.port.is_some_and(|p| p != port) {
        return None;
    }
    let mut matcher = match &m.service_name {
        Some(s) => json!({"prefix": format!("/{s}/")}),
        None => json!({"prefix": "/"}),
    };
    matcher["grpc"] = json!({});
    let mut headers: Vec<Value> = m.metadata.iter().flatten().map(header).collect();
    if let Some(h) = &m.hostname {
        headers.push(hostname(h));
    }
    if !headers.is_empty() {
        matcher["headers"] = json!(headers);
    }
    let host = r.action.rewrite.as_ref().and_then(|w| w.hostname.as_ref());
    let action = action(&r.action.target, host, cluster);
    Some(json!({"name": name, "match": matcher, "route": action}))
}
