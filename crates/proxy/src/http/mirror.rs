//! Request mirroring (`request_mirror_policies`): a copy of the request goes to each
//! mirror cluster, fire and forget, with `-shadow` appended to its host (Envoy's
//! shadowing). The copy's response is read and dropped; it never delays the request.

use crate::http::conn_manager::HcmRuntime;
use crate::http::replay::Replay;
use crate::http::route_table::RouteTarget;
use ferry_config::retry::MirrorCluster;
use ferry_config::route::RouteAction;
use http::{HeaderValue, Request};
use http_body_util::BodyExt;
use std::sync::Arc;

/// `host:port` → `host-shadow:port` (Envoy puts the suffix before the port).
pub fn shadow_host(authority: &str) -> String {
    let host = ferry_config::route::strip_port(authority);
    let port = &authority[host.len()..];
    format!("{host}-shadow{port}")
}

/// Sends the mirror copies of a request whose body is `replay`.
pub fn shadow(
    hcm: &HcmRuntime,
    target: &RouteTarget,
    ra: &RouteAction,
    head: &http::request::Parts,
    replay: &Arc<Replay>,
) {
    for (policy, cluster) in ra.mirrors.iter().zip(&target.mirrors) {
        let cluster = match &policy.cluster {
            MirrorCluster::Name(_) => cluster.as_ref().and_then(|s| s.get()),
            // Named per request: the one lookup by name that cannot be avoided.
            MirrorCluster::Header(h) => head
                .headers
                .get(h)
                .and_then(|v| v.to_str().ok())
                .and_then(|n| hcm.clusters.get(n)),
        };
        let Some(cluster) = cluster else {
            continue;
        };
        if !policy.fraction.sample() {
            continue;
        }
        let Some(host) = cluster.choose_host(None) else {
            continue;
        };
        let mut req = Request::new(replay.follower());
        *req.method_mut() = head.method.clone();
        *req.uri_mut() = head.uri.clone();
        *req.headers_mut() = head.headers.clone();
        if !policy.keep_host {
            let authority = head
                .headers
                .get(http::header::HOST)
                .and_then(|v| v.to_str().ok())
                .unwrap_or_default();
            if let Ok(v) = HeaderValue::from_str(&shadow_host(authority)) {
                req.headers_mut().insert(http::header::HOST, v);
            }
        }
        let priority = ra.priority;
        // Bounded by the route timeout, as Envoy bounds its shadows.
        let timeout = ra.timeout;
        let internal = head
            .headers
            .get("x-envoy-internal")
            .is_some_and(|v| v.as_bytes() == b"true");
        tokio::spawn(async move {
            let copy = async {
                let start = std::time::Instant::now();
                match host.send(&cluster, priority, req).await {
                    Ok(resp) => {
                        // The shadow's own router charges the response (Envoy's
                        // async client).
                        let ms = start.elapsed().as_millis() as u64;
                        cluster
                            .stats
                            .charge(resp.status().as_u16(), internal, Some(ms));
                        // Read to the end so that the connection is reused.
                        let _ = resp.into_body().collect().await;
                    }
                    Err(e) => {
                        tracing::debug!(cluster = %cluster.config.name, error = %e, "mirror request failed");
                    }
                }
            };
            match timeout {
                Some(t) => {
                    let _ = tokio::time::timeout(t, copy).await;
                }
                None => copy.await,
            }
        });
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_suffix_goes_before_the_port() {
        assert_eq!(shadow_host("example.com"), "example.com-shadow");
        assert_eq!(shadow_host("example.com:8080"), "example.com-shadow:8080");
        assert_eq!(shadow_host("[::1]:80"), "[::1]-shadow:80");
    }
}
