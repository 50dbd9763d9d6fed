//! A virtual node's inbound side: per listener, an ingress listener that forwards to
//! the local app, with the listener's timeout and its connection pool as the local
//! cluster's circuit breakers.

use super::{
    duration, http2_upstream, http_connection_manager, listener, millis, typed, Options, Resources,
};
use crate::model::virtual_node::{ConnectionPool, HealthCheckPolicy, Listener, VirtualNodeSpec};
use crate::model::PortProtocol;
use serde_json::{json, Value};

/// Adds the ingress listeners and local clusters of `spec` to `out`.
pub(super) fn translate(
    mesh: &str,
    node: &str,
    spec: &VirtualNodeSpec,
    options: &Options,
    out: &mut Resources,
) {
    // The first listener at the ingress port, further ones at the next ports (never
    // the egress listener's).
    let mut ports = (options.ingress_port..=u16::MAX).filter(|p| *p != options.egress_port);
    for (i, l) in spec.listeners.iter().enumerate() {
        let port = l.port_mapping.port;
        let Some(ingress_port) = ports.next() else {
            out.notes.push(format!(
                "listeners[{i}]: no ingress port left above {}",
                options.ingress_port
            ));
            continue;
        };
        let protocol = serde_json::to_value(l.port_mapping.protocol).unwrap_or_default();
        let protocol = protocol.as_str().unwrap_or_default();
        let cluster = format!("cds_ingress_{mesh}_{node}_{protocol}_{port}");
        let filter = match l.port_mapping.protocol {
            PortProtocol::Tcp => tcp_proxy(l, &cluster),
            _ => {
                let stat_prefix = format!("ingress_{port}");
                let mut hcm =
                    http_connection_manager(&stat_prefix, route_config(l, &cluster), Vec::new());
                super::extensions::ingress(&l.extensions, port, &mut hcm["typed_config"]);
                hcm
            }
        };
        out.listeners.push(listener(
            &format!("lds_ingress_{port}"),
            &options.bind,
            ingress_port,
            vec![filter],
        ));
        out.clusters.push(local_cluster(l, &cluster));
    }
}

/// The ingress route configuration: everything to the local app, with the listener's
/// HTTP timeouts.
fn route_config(l: &Listener, cluster: &str) -> Value {
    let mut action = json!({"cluster": cluster});
    let timeout = l
        .timeout
        .as_ref()
        .and_then(|t| match l.port_mapping.protocol {
            PortProtocol::Http => t.http.as_ref(),
            PortProtocol::Http2 => t.http2.as_ref(),
            PortProtocol::Grpc => t.grpc.as_ref(),
            PortProtocol::Tcp => None,
        });
    if let Some(t) = timeout {
        if let Some(d) = t.per_request.as_ref().and_then(duration) {
            action["timeout"] = json!(d);
        }
        if let Some(d) = t.idle.as_ref().and_then(duration) {
            action["idle_timeout"] = json!(d);
        }
    }
    let port = l.port_mapping.port;
    json!({
        "name": format!("rds_ingress_{port}"),
        "virtual_hosts": [{
            "name": format!("ingress_{port}"),
            "domains": ["*"],
            "routes": [{"match": {"prefix": "/"}, "route": action}],
        }],
    })
}

/// A TCP listener's proxy to the local app, with its idle timeout.
fn tcp_proxy(l: &Listener, cluster: &str) -> Value {
    let mut config = json!({
        "stat_prefix": format!("ingress_{}", l.port_mapping.port),
        "cluster": cluster,
    });
    let idle = l
        .timeout
        .as_ref()
        .and_then(|t| t.tcp.as_ref())
        .and_then(|t| t.idle.as_ref())
        .and_then(duration);
    if let Some(idle) = idle {
        config["idle_timeout"] = json!(idle);
    }
    json!({
        "name": "envoy.filters.network.tcp_proxy",
        "typed_config": typed("envoy.extensions.filters.network.tcp_proxy.v3.TcpProxy", config),
    })
}

/// The local app's cluster: `127.0.0.1:<port>`, with the listener's connection pool
/// (App Mesh's defaults otherwise). The listener's health check is the callers'
/// (their clusters for this node check it), as App Mesh does.
fn local_cluster(l: &Listener, name: &str) -> Value {
    let mut cluster = json!({
        "name": name,
        "type": "STATIC",
        "connect_timeout": "1s",
        "load_assignment": {
            "cluster_name": name,
            "endpoints": [{"lb_endpoints": [{"endpoint": {"address": {"socket_address": {
                "address": "127.0.0.1",
                "port_value": l.port_mapping.port,
            }}}}]}],
        },
    });
    if matches!(
        l.port_mapping.protocol,
        PortProtocol::Http2 | PortProtocol::Grpc
    ) {
        cluster["typed_extension_protocol_options"] = http2_upstream();
    }
    cluster["circuit_breakers"] = json!({"thresholds": [thresholds(l.connection_pool.as_ref())]});
    cluster
}

/// What App Mesh sets every circuit breaker threshold to (rather than Envoy's 1,024)
/// unless a connection pool says otherwise.
pub(super) const UNLIMITED: u32 = 2_147_483_647;

/// App Mesh's circuit breaker thresholds: its defaults, with the connection pool's
/// limits (an HTTP pool without `maxPendingRequests` leaves it unlimited, as App Mesh).
pub(super) fn thresholds(pool: Option<&ConnectionPool>) -> Value {
    let mut t = json!({
        "max_connections": UNLIMITED,
        "max_pending_requests": UNLIMITED,
        "max_requests": UNLIMITED,
        "max_retries": UNLIMITED,
    });
    let Some(pool) = pool else {
        return t;
    };
    if let Some(h) = &pool.http {
        t["max_connections"] = json!(h.max_connections);
        if let Some(p) = h.max_pending_requests {
            t["max_pending_requests"] = json!(p);
        }
    }
    if let Some(h) = pool.http2.as_ref().or(pool.grpc.as_ref()) {
        t["max_requests"] = json!(h.max_requests);
    }
    if let Some(tcp) = &pool.tcp {
        t["max_connections"] = json!(tcp.max_connections);
    }
    t
}

/// App Mesh's health check as Envoy's active health check (its `port` is the
/// listener's, which App Mesh requires).
pub(super) fn health_check(h: &HealthCheckPolicy) -> Value {
    let mut check = json!({
        "timeout": millis(h.timeout_millis),
        "interval": millis(h.interval_millis),
        "healthy_threshold": h.healthy_threshold,
        "unhealthy_threshold": h.unhealthy_threshold,
    });
    let path = h.path.clone().unwrap_or_else(|| "/".into());
    match h.protocol {
        PortProtocol::Http => check["http_health_check"] = json!({"path": path}),
        PortProtocol::Http2 => {
            check["http_health_check"] = json!({"path": path, "codec_client_type": "HTTP2"})
        }
        PortProtocol::Grpc => check["grpc_health_check"] = json!({}),
        PortProtocol::Tcp => check["tcp_health_check"] = json!({}),
    }
    check
}
