//! The admin endpoint (Envoy's `admin.address`): readiness, server info, listeners,
//! clusters, config dump, health check failing, draining and quitting. It answers
//! only on the address configured.

mod config_dump;

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

/// Serves admin until the process exits (admin keeps answering while draining). Its
/// own traffic is counted under `listener.admin.*` and `http.admin.*`, as Envoy's.
pub(crate) async fn serve(server: Arc<Server>, listener: TcpListener) {
    let scope = crate::stats::ListenerScope {
        stats: Arc::default(),
        thread: Arc::default(),
    };
    // Admin has no router and no extension configs: Envoy lists fewer stats for it.
    let listener_listed = ferry_stats::Without::new(
        scope.stats.clone(),
        &[
            "extension_config_missing",
            "network_extension_config_missing",
        ],
    );
    server.stats.register("listener.admin.", &listener_listed);
    server
        .stats
        .register("listener.admin.main_thread.", &scope.thread);
    let hcm = Arc::new(crate::stats::HcmStats::default());
    let hcm_listed = ferry_stats::Without::new(hcm.clone(), crate::stats::ROUTER_STATS);
    server.stats.register("http.admin.", &hcm_listed);
    let per_listener = Arc::new(crate::stats::ListenerHttpStats::default());
    server
        .stats
        .register("listener.admin.http.admin.", &per_listener);
    loop {
        let Ok((stream, _)) = listener.accept().await else {
            continue;
        };
        let server = server.clone();
        let (scope, hcm, per_listener) = (scope.clone(), hcm.clone(), per_listener.clone());
        tokio::spawn(async move {
            let _counted = crate::stats::ConnectionStats::open(&scope);
            hcm.downstream_cx_total.inc();
            hcm.downstream_cx_active.inc();
            hcm.downstream_cx_http1_total.inc();
            hcm.downstream_cx_http1_active.inc();
            let start = std::time::Instant::now();
            let (h, l) = (hcm.clone(), per_listener.clone());
            let svc =
                hyper::service::service_fn(move |req: http::Request<hyper::body::Incoming>| {
                    let server = server.clone();
                    let (h, l) = (h.clone(), l.clone());
                    async move {
                        let began = std::time::Instant::now();
                        h.downstream_rq_total.inc();
                        h.downstream_rq_http1_total.inc();
                        let resp = handle(&server, req.method(), req.uri());
                        let status = resp.status().as_u16();
                        h.response_class(status);
                        l.response_class(status);
                        h.downstream_rq_completed.inc();
                        l.downstream_rq_completed.inc();
                        h.downstream_rq_time.record(crate::stats::ms_since(began));
                        Ok::<_, Infallible>(resp)
                    }
                });
            let _ = hyper_util::server::conn::auto::Builder::new(TokioExecutor::new())
                .serve_connection(TokioIo::new(stream), svc)
                .await;
            hcm.downstream_cx_active.dec();
            hcm.downstream_cx_http1_active.dec();
            hcm.downstream_cx_destroy.inc();
            hcm.downstream_cx_destroy_remote.inc();
            hcm.downstream_cx_length_ms
                .record(crate::stats::ms_since(start));
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

fn bad_request(body: String) -> Response<Body> {
    text(StatusCode::BAD_REQUEST, body, "text/plain; charset=UTF-8")
}

/// Decodes `%XX` escapes and `+` (a query string's encoding).
fn decode(s: &str) -> String {
    let b = s.as_bytes();
    let mut out = Vec::with_capacity(b.len());
    let mut i = 0;
    while i < b.len() {
        match b[i] {
            b'+' => out.push(b' '),
            b'%' if i + 2 < b.len() => {
                match s.get(i + 1..i + 3).map(|h| u8::from_str_radix(h, 16)) {
                    Some(Ok(v)) => {
                        out.push(v);
                        i += 2;
                    }
                    _ => out.push(b'%'),
                }
            }
            c => out.push(c),
        }
        i += 1;
    }
    String::from_utf8_lossy(&out).into_owned()
}

/// A query string's parameters, decoded (`usedonly` has an empty value).
fn params(query: Option<&str>) -> Vec<(String, String)> {
    query
        .unwrap_or_default()
        .split('&')
        .filter(|kv| !kv.is_empty())
        .map(|kv| {
            let (k, v) = kv.split_once('=').unwrap_or((kv, ""));
            (decode(k), decode(v))
        })
        .collect()
}

/// The listing a stats query asks for (`filter`, `usedonly`, `type`), or the 400's text.
fn stats_query(params: &[(String, String)]) -> Result<ferry_stats::render::Query, String> {
    use ferry_stats::render::{Kinds, Query};
    let mut q = Query::default();
    for (k, v) in params {
        match k.as_str() {
            "usedonly" => q.used_only = true,
            "filter" if !v.is_empty() => match regex::Regex::new(v) {
                Ok(r) => q.filter = Some(r),
                Err(e) => return Err(format!("Invalid re2 regex: {e}\n")),
            },
            "type" => {
                q.kinds = match v.as_str() {
                    "All" => Kinds::All,
                    "Counters" => Kinds::Counters,
                    "Gauges" => Kinds::Gauges,
                    "Histograms" => Kinds::Histograms,
                    "TextReadouts" => Kinds::TextReadouts,
                    _ => return Err("invalid &type= param\n".into()),
                }
            }
            _ => {}
        }
    }
    Ok(q)
}

fn stats(server: &Server, params: &[(String, String)], prometheus: bool) -> Response<Body> {
    let q = match stats_query(params) {
        Ok(q) => q,
        Err(e) => return bad_request(e),
    };
    let param = |name: &str| {
        params
            .iter()
            .find(|(k, _)| k == name)
            .map(|(_, v)| v.as_str())
    };
    let format = if prometheus {
        "prometheus"
    } else {
        param("format").unwrap_or("text")
    };
    match param("histogram_buckets") {
        None | Some("summary") => {}
        Some(other) => {
            return bad_request(format!(
                "histogram_buckets={other} is not supported (ferry lists quantiles)\n"
            ))
        }
    }
    let snapshot = server.stats_snapshot();
    match format {
        "text" | "html" | "active-html" => ok(ferry_stats::render::text(&snapshot, &q)),
        "json" => text(
            StatusCode::OK,
            ferry_stats::render::json(&snapshot, &q),
            "application/json",
        ),
        "prometheus" => ok(ferry_stats::render::prometheus(
            &snapshot,
            &server.stats_view.tags,
            &q,
        )),
        _ => bad_request("usage: /stats?format=(html|active-html|json|prometheus|text)\n".into()),
    }
}

fn memory(server: &Server) -> Response<Body> {
    let m = server.options.memory.map(|f| f()).unwrap_or_default();
    json(&serde_json::json!({
        "allocated": m.allocated.to_string(),
        "heap_size": m.heap_size.to_string(),
        "pageheap_unmapped": "0",
        "pageheap_free": "0",
        "total_thread_cache": "0",
        "total_physical_bytes": m.physical_size.to_string(),
    }))
}

/// Answers one admin request.
pub fn handle(server: &Server, method: &Method, uri: &http::Uri) -> Response<Body> {
    let path = uri.path();
    let params = params(uri.query());
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
            } else if server.is_initializing() {
                text(StatusCode::SERVICE_UNAVAILABLE, "INITIALIZING\n".into(), "text/plain; charset=UTF-8")
            } else {
                ok("LIVE\n".into())
            }
        }
        "/server_info" => json(&server_info(server)),
        "/listeners" => {
            let mut s = String::new();
            for (name, addr) in server.bound() {
                let _ = writeln!(s, "{name}::{addr}");
            }
            ok(s)
        }
        "/clusters" => ok(clusters(server)),
        "/stats" => stats(server, &params, false),
        "/stats/prometheus" => stats(server, &params, true),
        "/reset_counters" => post_only(&|| {
            server.stats.reset_counters();
            ok("OK\n".into())
        }),
        "/memory" => memory(server),
        "/runtime" => json(&serde_json::json!({ "entries": {}, "layers": [] })),
        "/config_dump" => {
            let param = |name: &str| params.iter().find(|(k, _)| k == name).map(|(_, v)| v);
            let query = config_dump::Query {
                include_eds: param("include_eds").is_some(),
                resource: param("resource").filter(|r| !r.is_empty()).cloned(),
                mask: param("mask").filter(|m| !m.is_empty()).cloned(),
            };
            match config_dump::config_dump(server, &query) {
                Ok(dump) => json(&dump),
                Err(e) => text(StatusCode::NOT_FOUND, e, "text/plain; charset=UTF-8"),
            }
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
            "admin commands are:\n  /clusters\n  /config_dump\n  /drain_listeners\n  /healthcheck/fail\n  /healthcheck/ok\n  /listeners\n  /memory\n  /quitquitquit\n  /ready\n  /reset_counters\n  /runtime\n  /server_info\n  /stats\n  /stats/prometheus\n"
                .into(),
        ),
        _ => text(StatusCode::NOT_FOUND, "invalid path. admin commands are: /clusters /config_dump /drain_listeners /healthcheck/fail /healthcheck/ok /listeners /memory /quitquitquit /ready /reset_counters /runtime /server_info /stats /stats/prometheus\n".into(), "text/plain; charset=UTF-8"),
    }
}

fn server_info(server: &Server) -> serde_json::Value {
    let snap = server.snapshot.load();
    let state = if server.is_draining() || server.health_failed.load(Ordering::Relaxed) {
        "DRAINING"
    } else if server.is_initializing() {
        "INITIALIZING"
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
