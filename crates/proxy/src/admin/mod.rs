//! The admin endpoint (Envoy's `admin.address`): readiness, server info, listeners,
//! clusters, config dump, health check failing, draining and quitting. It answers
//! only on the address configured.

use crate::server::Server;
use bytes::Bytes;
use ferry_upstream::Body;
use http::{Method, Response, StatusCode};
use http_body_util::{BodyExt, Full};
use hyper_util::rt::{TokioExecutor, TokioIo};
use std::convert::Infallible;
use std::fmt::Write;
use std::sync::atomic::Ordering;
use std::sync::Arc;
use tokio::net::TcpListener;

/// Serves admin until the process exits (admin keeps answering while draining).
pub(crate) async fn serve(server: Arc<Server>, listener: TcpListener) {
    loop {
        let Ok((stream, _)) = listener.accept().await else {
            continue;
        };
        let server = server.clone();
        tokio::spawn(async move {
            let svc = hyper::service::service_fn(move |req| {
                let server = server.clone();
                async move { Ok::<_, Infallible>(handle(&server, req.method(), req.uri().path())) }
            });
            let _ = hyper_util::server::conn::auto::Builder::new(TokioExecutor::new())
                .serve_connection(TokioIo::new(stream), svc)
                .await;
        });
    }
}

fn text(status: StatusCode, body: String, content_type: &str) -> Response<Body> {
    let mut r = Response::new(
        Full::new(Bytes::from(body))
            .map_err(|never| match never {})
            .boxed(),
    );
    *r.status_mut() = status;
    if let Ok(v) = http::HeaderValue::from_str(content_type) {
        r.headers_mut().insert(http::header::CONTENT_TYPE, v);
    }
    r
}

fn ok(body: String) -> Response<Body> {
    text(StatusCode::OK, body, "text/plain; charset=UTF-8")
}

fn json(v: &serde_json::Value) -> Response<Body> {
    let body = serde_json::to_string_pretty(v).unwrap_or_default();
    text(StatusCode::OK, body, "application/json")
}

/// Answers one admin request.
pub fn handle(server: &Server, method: &Method, path: &str) -> Response<Body> {
    let post_only = |f: &dyn Fn() -> Response<Body>| {
        if method == Method::POST {
            f()
        } else {
            text(
                StatusCode::METHOD_NOT_ALLOWED,
                format!("Method {method} not allowed, POST required.\n"),
                "text/plain; charset=UTF-8",
            )
        }
    };
    match path {
        "/ready" => {
            if server.is_draining() || server.health_failed.load(Ordering::Relaxed) {
                text(StatusCode::SERVICE_UNAVAILABLE, "DRAINING\n".into(), "text/plain; charset=UTF-8")
            } else {
                ok("LIVE\n".into())
            }
        }
        "/server_info" => json(&server_info(server)),
        "/listeners" => {
            let mut s = String::new();
            for (name, addr) in &server.bound {
                let _ = writeln!(s, "{name}::{addr}");
            }
            ok(s)
        }
        "/clusters" => ok(clusters(server)),
        "/stats" => {
            let mut s = String::new();
            for (name, v) in server.stats.snapshot() {
                let _ = writeln!(s, "{name}: {}", v.value);
            }
            ok(s)
        }
        "/config_dump" => {
            let snap = server.snapshot.load();
            json(&serde_json::json!({
                "configs": [{
                    "@type": "type.googleapis.com/envoy.admin.v3.BootstrapConfigDump",
                    "bootstrap": serde_json::from_str::<serde_json::Value>(&snap.config_json)
                        .unwrap_or(serde_json::Value::Null),
                }]
            }))
        }
        "/healthcheck/fail" => post_only(&|| {
            server.health_failed.store(true, Ordering::Relaxed);
            ok("OK\n".into())
        }),
        "/healthcheck/ok" => post_only(&|| {
            server.health_failed.store(false, Ordering::Relaxed);
            ok("OK\n".into())
        }),
        "/drain_listeners" => post_only(&|| {
            server.drain_listeners();
            ok("OK\n".into())
        }),
        "/reopen_logs" => post_only(&|| {
            server.reopen_logs();
            ok("OK\n".into())
        }),
        "/quitquitquit" => post_only(&|| {
            server.request_shutdown();
            ok("OK\n".into())
        }),
        "/" | "/help" => ok(
            "admin commands are:\n  /clusters\n  /config_dump\n  /drain_listeners\n  /healthcheck/fail\n  /healthcheck/ok\n  /listeners\n  /quitquitquit\n  /ready\n  /server_info\n  /stats\n"
                .into(),
        ),
        _ => text(StatusCode::NOT_FOUND, "invalid path. admin commands are: /clusters /config_dump /drain_listeners /healthcheck/fail /healthcheck/ok /listeners /quitquitquit /ready /server_info /stats\n".into(), "text/plain; charset=UTF-8"),
    }
}

fn server_info(server: &Server) -> serde_json::Value {
    let snap = server.snapshot.load();
    let state = if server.is_draining() || server.health_failed.load(Ordering::Relaxed) {
        "DRAINING"
    } else {
        "LIVE"
    };
    serde_json::json!({
        "version": format!("ferry/{}", env!("CARGO_PKG_VERSION")),
        "state": state,
        "uptime_current_epoch": format!("{}s", server.started.elapsed().as_secs()),
        "command_line_options": {
            "concurrency": server.options.concurrency,
            "service_node": snap.bootstrap.node_id,
            "service_cluster": snap.bootstrap.node_cluster,
            "drain_time": format!("{}s", server.options.drain_time.as_secs()),
        },
        "node": { "id": snap.bootstrap.node_id, "cluster": snap.bootstrap.node_cluster },
    })
}

/// Envoy's text format: `cluster::host:port::stat::value`.
fn clusters(server: &Server) -> String {
    let snap = server.snapshot.load();
    let mut s = String::new();
    for c in snap.clusters.clusters() {
        let name = &c.config.name;
        let _ = writeln!(s, "{name}::observability_name::{name}");
        for (local, label) in [(false, ""), (true, "local_origin_")] {
            if let Some((average, threshold)) = c.outlier_success_rate(local) {
                let _ = writeln!(s, "{name}::outlier::{label}success_rate_average::{average}");
                let _ = writeln!(
                    s,
                    "{name}::outlier::{label}success_rate_ejection_threshold::{threshold}"
                );
            }
        }
        for h in c.hosts().iter() {
            let a = h.address;
            for (stat, value) in h.stats.counters() {
                let _ = writeln!(s, "{name}::{a}::{stat}::{value}");
            }
            let _ = writeln!(s, "{name}::{a}::hostname::{}", h.hostname);
            let _ = writeln!(s, "{name}::{a}::health_flags::{}", h.health_flags_string());
            let _ = writeln!(s, "{name}::{a}::weight::{}", h.weight);
            let _ = writeln!(s, "{name}::{a}::region::{}", h.locality);
            let _ = writeln!(s, "{name}::{a}::priority::{}", h.priority);
            let _ = writeln!(s, "{name}::{a}::success_rate::{}", h.success_rate(false));
            let _ = writeln!(
                s,
                "{name}::{a}::local_origin_success_rate::{}",
                h.success_rate(true)
            );
        }
    }
    s
}
