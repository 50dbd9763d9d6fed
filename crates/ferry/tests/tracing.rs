//! HTTP tracing (HCM `tracing` with a `provider`): the spans a Zipkin endpoint and an
//! OTLP/gRPC receiver in this process get from ferry and from real Envoy on the same
//! bootstrap, compared field by field (ids and times that are random are checked for
//! shape, then masked); the propagation headers the upstream sees; the sampling
//! decisions and their `tracing.*` stats; and a dead collector.

use ferry_test_util::admin;
use ferry_test_util::bootstrap::HcmBootstrap;
use ferry_test_util::collector::{Otlp, Zipkin};
use ferry_test_util::diff::send;
use ferry_test_util::proc::{self, Flavor};
use ferry_test_util::scripted::{Scripted, Seen};
use ferry_test_util::Request;
use serde_json::{json, Value};
use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::time::Duration;

/// Spans are flushed every 5 s or every 5 spans; this is well above that.
const DEADLINE: Duration = Duration::from_secs(30);

const NODE: &str = "node: {id: node-1, cluster: svc-a, locality: {zone: z1}}\n";

/// An address nothing listens on.
async fn dead_address() -> SocketAddr {
    let l = tokio::net::TcpListener::bind("127.0.0.1:0")
        .await
        .unwrap_or_else(|e| panic!("{e}"));
    l.local_addr().unwrap_or_else(|e| panic!("{e}"))
}

fn bootstrap(tracing: &str, collector: &str) -> String {
    let yaml = HcmBootstrap::new()
        .hcm(tracing)
        .route("match: {prefix: \"/dead\"}\nroute: {cluster: dead}")
        .route("match: {prefix: \"/\"}\nroute: {cluster: backend}")
        .cluster("backend", "")
        .cluster("dead", "")
        .cluster("collector", collector)
        .yaml();
    format!("{NODE}{yaml}")
}

const ZIPKIN: &str = r#"
tracing:
  custom_tags:
  - {tag: lit, literal: {value: v1}}
  - {tag: hdr, request_header: {name: x-foo, default_value: none}}
  - {tag: env, environment: {name: FERRY_TRACING_TEST_UNSET, default_value: dflt}}
  provider:
    name: envoy.tracers.zipkin
    typed_config:
      "@type": type.googleapis.com/envoy.config.trace.v3.ZipkinConfig
      collector_cluster: collector
      collector_endpoint: /api/v2/spans
      collector_endpoint_version: HTTP_JSON"#;

const OTLP: &str = r#"
tracing:
  custom_tags:
  - {tag: lit, literal: {value: v1}}
  provider:
    name: envoy.tracers.opentelemetry
    typed_config:
      "@type": type.googleapis.com/envoy.config.trace.v3.OpenTelemetryConfig
      service_name: svc-otel
      grpc_service:
        envoy_grpc: {cluster_name: collector}
        timeout: 2s"#;

const H2: &str = r#"
typed_extension_protocol_options:
  envoy.extensions.upstreams.http.v3.HttpProtocolOptions:
    "@type": type.googleapis.com/envoy.extensions.upstreams.http.v3.HttpProtocolOptions
    explicit_http_config: {http2_protocol_options: {}}"#;

fn header<'a>(seen: &'a Seen, name: &str) -> &'a str {
    seen.headers
        .get(name)
        .and_then(|v| v.to_str().ok())
        .unwrap_or("")
}

/// The request the upstream saw for `path`.
fn seen_for<'a>(up: &'a [Seen], path: &str) -> &'a Seen {
    up.iter()
        .find(|s| s.path == path)
        .unwrap_or_else(|| panic!("the upstream saw no {path}: {up:#?}"))
}

fn is_hex(s: &str, len: usize) -> bool {
    s.len() == len && s.bytes().all(|b| b.is_ascii_hexdigit())
}

/// Tracing stats of the connection manager, for comparison between proxies.
async fn tracing_stats(admin_port: u16) -> BTreeMap<String, u64> {
    admin::stats(admin_port)
        .await
        .into_iter()
        .filter(|(k, _)| k.starts_with("http.ingress.tracing."))
        .collect()
}

/// Sends `req`, expecting `status`.
async fn get(port: u16, req: Request, status: u16, flavor: Flavor) {
    let what = req.to_string();
    let o = send(port, &req).await.unwrap_or_else(|e| panic!("{e:#}"));
    assert_eq!(o.status, status, "{flavor}: {what}: {}", o.body_text());
}

/// A Zipkin span with what varies per run masked, keyed by its `http.url` path.
fn normalize_zipkin(mut span: Value, flavor: Flavor) -> (String, Value) {
    let o = span
        .as_object_mut()
        .unwrap_or_else(|| panic!("{flavor}: span is not an object"));
    for k in ["timestamp", "duration"] {
        let v = o.remove(k).unwrap_or_default();
        assert!(v.as_u64().is_some(), "{flavor}: {k} = {v}");
    }
    // One annotation at the end: `ss` (server send), or `cr` (client receive) on egress.
    let ann = o.remove("annotations").unwrap_or_default();
    assert!(ann[0]["timestamp"].as_u64().is_some(), "{flavor}: {ann}");
    o.insert("annotation".into(), ann[0]["value"].clone());
    let tags = o.get_mut("tags").and_then(Value::as_object_mut);
    let tags = tags.unwrap_or_else(|| panic!("{flavor}: no tags"));
    let rid = tags
        .insert("guid:x-request-id".into(), "<id>".into())
        .unwrap_or_default();
    assert!(
        rid.as_str().is_some_and(|s| s.len() == 36),
        "{flavor}: x-request-id {rid}"
    );
    let url = tags["http.url"].as_str().unwrap_or_default().to_string();
    let path = url.splitn(4, '/').nth(3).unwrap_or_default().to_string();
    // The proxy's port differs per run.
    tags.insert("http.url".into(), format!("/{path}").into());
    // The host (with the proxy's port, different per run) unless a decorator named it.
    if o.get("name")
        .and_then(Value::as_str)
        .is_some_and(|n| n.starts_with("127.0.0.1:") || n.starts_with("ferry.test"))
    {
        o.insert("name".into(), "<host>".into());
    }
    (format!("/{path}"), span)
}

/// Random ids of a root span are masked (after checking their shape).
fn mask_root_ids(span: &mut Value, flavor: Flavor) {
    let id = span["id"].as_str().unwrap_or_default().to_string();
    assert!(is_hex(&id, 16), "{flavor}: id {id}");
    assert_eq!(
        span["traceId"], id,
        "{flavor}: a root span's trace id is its id"
    );
    span["id"] = "<random>".into();
    span["traceId"] = "<random>".into();
}

/// One flavor's Zipkin run: spans by path, and the tracing stats.
async fn zipkin_run(flavor: Flavor) -> (BTreeMap<String, Value>, BTreeMap<String, u64>) {
    let zipkin = Zipkin::start().await;
    let up = Scripted::start(vec![]).await;
    let dead = dead_address().await;
    let yaml = bootstrap(ZIPKIN, "");
    let proxy = proc::start_with(
        flavor,
        &yaml,
        &[
            ("backend", up.addr()),
            ("dead", dead),
            ("collector", zipkin.addr()),
        ],
    )
    .await;
    let port = proxy.listener_port().unwrap_or_default();
    get(
        port,
        Request::get("/a/b?q=1")
            .header("user-agent", "UA")
            .header("x-foo", "bar"),
        200,
        flavor,
    )
    .await;
    get(
        port,
        Request::get("/b3")
            .header("x-b3-traceid", "0000000000000001000000000000000a")
            .header("x-b3-spanid", "000000000000000b")
            .header("x-b3-parentspanid", "000000000000000c")
            .header("x-b3-sampled", "1"),
        200,
        flavor,
    )
    .await;
    let single = "80f198ee56343ba864fe8b2a57d3eff7-e457b5a2e4d86bd1-1-05e3ac9a4f6e3b90";
    get(
        port,
        Request::get("/b3single").header("b3", single),
        200,
        flavor,
    )
    .await;
    // The caller said "not sampled": the context goes on, no span is recorded.
    get(
        port,
        Request::get("/unsampled")
            .header("x-b3-traceid", "00000000000000ff")
            .header("x-b3-spanid", "00000000000000ee")
            .header("x-b3-sampled", "0"),
        200,
        flavor,
    )
    .await;
    get(
        port,
        Request::get("/cid").header("x-client-trace-id", "abc"),
        200,
        flavor,
    )
    .await;
    get(port, Request::get("/dead/x"), 503, flavor).await;

    let spans = zipkin.wait_spans(5, DEADLINE).await;
    let post = &zipkin.posts()[0];
    assert_eq!(post.path, "/api/v2/spans", "{flavor}");
    assert_eq!(
        post.headers
            .get("content-type")
            .and_then(|v| v.to_str().ok()),
        Some("application/json"),
        "{flavor}"
    );
    let upstream = up.seen();
    let mut by_path = BTreeMap::new();
    for span in spans {
        let (full, mut span) = normalize_zipkin(span, flavor);
        let path = full.split('?').next().unwrap_or_default().to_string();
        match path.as_str() {
            "/b3" => {
                // Shared span context: the server span is the caller's span.
                assert_eq!(span["traceId"], "0000000000000001000000000000000a");
                assert_eq!(span["id"], "000000000000000b", "{flavor}");
                assert_eq!(span["parentId"], "000000000000000c", "{flavor}");
                let seen = seen_for(&upstream, "/b3");
                assert_eq!(
                    header(seen, "x-b3-traceid"),
                    "0000000000000001000000000000000a"
                );
                assert_eq!(header(seen, "x-b3-spanid"), "000000000000000b", "{flavor}");
                assert_eq!(header(seen, "x-b3-parentspanid"), "000000000000000c");
                assert_eq!(header(seen, "x-b3-sampled"), "1", "{flavor}");
            }
            "/b3single" => {
                assert_eq!(span["traceId"], "80f198ee56343ba864fe8b2a57d3eff7");
                assert_eq!(span["parentId"], "05e3ac9a4f6e3b90", "{flavor}");
                let seen = seen_for(&upstream, "/b3single");
                assert_eq!(header(seen, "b3"), single, "{flavor}");
                assert_eq!(header(seen, "x-b3-traceid"), "", "{flavor}");
            }
            "/dead/x" => {
                mask_root_ids(&mut span, flavor);
            }
            _ => {
                let seen = seen_for(&upstream, &full);
                assert_eq!(
                    span["id"].as_str().unwrap_or_default(),
                    header(seen, "x-b3-spanid"),
                    "{flavor}: {path}: the upstream continues the span"
                );
                assert_eq!(header(seen, "x-b3-sampled"), "1", "{flavor}");
                mask_root_ids(&mut span, flavor);
            }
        }
        by_path.insert(path, span);
    }
    let seen = seen_for(&upstream, "/unsampled");
    assert_eq!(header(seen, "x-b3-traceid"), "00000000000000ff", "{flavor}");
    assert_eq!(header(seen, "x-b3-sampled"), "0", "{flavor}");
    assert!(
        !by_path.contains_key("/unsampled"),
        "{flavor}: {by_path:#?}"
    );
    // The sampled request's id carries the decision (Envoy's UUID trace bit).
    let rid = header(seen_for(&upstream, "/a/b?q=1"), "x-request-id");
    assert_eq!(rid.as_bytes().get(14), Some(&b'9'), "{flavor}: {rid}");
    let rid = header(seen_for(&upstream, "/cid"), "x-request-id");
    assert_eq!(rid.as_bytes().get(14), Some(&b'b'), "{flavor}: {rid}");
    let stats = tracing_stats(proxy.admin_port()).await;
    (by_path, stats)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn zipkin_spans_match_envoy() {
    let mut runs = Vec::new();
    for flavor in proc::flavors() {
        let (spans, stats) = zipkin_run(flavor).await;
        // What every span says, whoever wrote it.
        let plain = &spans["/a/b"];
        assert_eq!(plain["kind"], "SERVER", "{flavor}");
        assert_eq!(plain["annotation"], "ss", "{flavor}");
        assert_eq!(plain["shared"], true, "{flavor}");
        assert_eq!(plain["localEndpoint"]["serviceName"], "svc-a", "{flavor}");
        let tags = &plain["tags"];
        for (k, v) in [
            ("node_id", "node-1"),
            ("zone", "z1"),
            ("http.method", "GET"),
            ("http.protocol", "HTTP/1.1"),
            ("http.status_code", "200"),
            ("upstream_cluster", "backend"),
            ("component", "proxy"),
            ("user_agent", "UA"),
            ("lit", "v1"),
            ("hdr", "bar"),
            ("env", "dflt"),
            ("peer.address", "127.0.0.1"),
            ("response_flags", "-"),
        ] {
            assert_eq!(tags[k], v, "{flavor}: tag {k}: {tags}");
        }
        assert_eq!(spans["/dead/x"]["tags"]["error"], "true", "{flavor}");
        assert_eq!(spans["/dead/x"]["tags"]["response_flags"], "UF", "{flavor}");
        assert_eq!(spans["/cid"]["tags"]["guid:x-client-trace-id"], "abc");
        runs.push((flavor, spans, stats));
    }
    if let [(_, ferry, ferry_stats), (_, envoy, envoy_stats)] = runs.as_slice() {
        assert_eq!(
            ferry,
            envoy,
            "ferry's spans (left) differ from Envoy's (right):\n{}\n{}",
            serde_json::to_string_pretty(ferry).unwrap_or_default(),
            serde_json::to_string_pretty(envoy).unwrap_or_default()
        );
        assert_eq!(ferry_stats, envoy_stats);
    }
}

fn hex(b: &[u8]) -> String {
    b.iter().map(|x| format!("{x:02x}")).collect()
}

fn attr_value(v: &Option<opentelemetry_proto::tonic::common::v1::AnyValue>) -> Value {
    use opentelemetry_proto::tonic::common::v1::any_value::Value as V;
    match v.as_ref().and_then(|v| v.value.as_ref()) {
        Some(V::StringValue(s)) => s.clone().into(),
        Some(V::BoolValue(b)) => (*b).into(),
        Some(V::IntValue(i)) => (*i).into(),
        other => format!("{other:?}").into(),
    }
}

fn attrs(kv: &[opentelemetry_proto::tonic::common::v1::KeyValue]) -> BTreeMap<String, Value> {
    kv.iter()
        .map(|a| (a.key.clone(), attr_value(&a.value)))
        .collect()
}

/// One flavor's OTLP run: spans by path (masked), and the resource and scope.
async fn otlp_run(flavor: Flavor) -> (BTreeMap<String, Value>, Value) {
    let otlp = Otlp::start().await;
    let up = Scripted::start(vec![]).await;
    let dead = dead_address().await;
    let yaml = bootstrap(OTLP, H2);
    let proxy = proc::start_with(
        flavor,
        &yaml,
        &[
            ("backend", up.addr()),
            ("dead", dead),
            ("collector", otlp.addr()),
        ],
    )
    .await;
    let port = proxy.listener_port().unwrap_or_default();
    let parent = "00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01";
    get(port, Request::get("/plain"), 200, flavor).await;
    get(
        port,
        Request::get("/w3c")
            .header("traceparent", parent)
            .header("tracestate", "k=v"),
        200,
        flavor,
    )
    .await;
    get(
        port,
        Request::get("/unsampled").header(
            "traceparent",
            "00-0af7651916cd43dd8448eb211c80319d-b7ad6b7169203332-00",
        ),
        200,
        flavor,
    )
    .await;
    get(
        port,
        Request::get("/cid").header("x-client-trace-id", "abc"),
        200,
        flavor,
    )
    .await;
    get(port, Request::get("/dead/x"), 503, flavor).await;
    get(port, Request::get("/plain2"), 200, flavor).await;
    let spans = otlp.wait_spans(5, DEADLINE).await;
    let upstream = up.seen();
    let mut by_path = BTreeMap::new();
    for s in spans {
        let mut a = attrs(&s.attributes);
        let url = a["http.url"].as_str().unwrap_or_default().to_string();
        let path = format!("/{}", url.splitn(4, '/').nth(3).unwrap_or_default());
        a.insert("http.url".into(), path.clone().into());
        a.insert("guid:x-request-id".into(), "<id>".into());
        let trace = hex(&s.trace_id);
        let span_id = hex(&s.span_id);
        assert!(
            is_hex(&trace, 32) && is_hex(&span_id, 16),
            "{flavor}: {s:?}"
        );
        assert!(s.end_time_unix_nano >= s.start_time_unix_nano, "{flavor}");
        let mut v = json!({
            "name": s.name,
            "kind": s.kind,
            "trace_state": s.trace_state,
            "attributes": a,
            "status": s.status.as_ref().map(|st| json!({"code": st.code, "message": st.message})),
            "flags": s.flags,
            "events": s.events.len(),
            "links": s.links.len(),
        });
        if path == "/w3c" {
            assert_eq!(trace, "0af7651916cd43dd8448eb211c80319c", "{flavor}");
            v["parent"] = hex(&s.parent_span_id).into();
        } else {
            v["parent"] = hex(&s.parent_span_id).into();
            if let Some(seen) = upstream.iter().find(|u| u.path == path) {
                let tp = header(seen, "traceparent");
                assert_eq!(
                    tp,
                    format!("00-{trace}-{span_id}-01"),
                    "{flavor}: {path}: the upstream continues the span"
                );
            }
        }
        if path == "/w3c" {
            let seen = seen_for(&upstream, "/w3c");
            let tp = header(seen, "traceparent");
            assert_eq!(tp, format!("00-{trace}-{span_id}-01"), "{flavor}");
            assert_eq!(header(seen, "tracestate"), "k=v", "{flavor}");
        }
        by_path.insert(path, v);
    }
    let seen = seen_for(&upstream, "/unsampled");
    let tp = header(seen, "traceparent");
    assert!(
        tp.starts_with("00-0af7651916cd43dd8448eb211c80319d-") && tp.ends_with("-00"),
        "{flavor}: {tp}"
    );
    assert!(!by_path.contains_key("/unsampled"), "{flavor}");
    let req = &otlp.requests()[0];
    let rs = &req.resource_spans[0];
    let resource = rs
        .resource
        .as_ref()
        .map(|r| attrs(&r.attributes))
        .unwrap_or_default();
    let scope = rs.scope_spans[0]
        .scope
        .as_ref()
        .map(|s| json!({"name": s.name, "version": s.version}));
    (
        by_path,
        json!({"resource": resource, "scope": scope, "schema": rs.schema_url}),
    )
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn opentelemetry_spans_match_envoy() {
    let mut runs = Vec::new();
    for flavor in proc::flavors() {
        let (spans, resource) = otlp_run(flavor).await;
        eprintln!(
            "{flavor}: {}\n{}",
            serde_json::to_string_pretty(&spans).unwrap_or_default(),
            resource
        );
        assert_eq!(resource["resource"]["service.name"], "svc-otel", "{flavor}");
        let plain = &spans["/plain"];
        assert_eq!(plain["attributes"]["node_id"], "node-1", "{flavor}");
        assert_eq!(plain["attributes"]["lit"], "v1", "{flavor}");
        assert_eq!(spans["/w3c"]["parent"], "b7ad6b7169203331", "{flavor}");
        assert_eq!(spans["/w3c"]["trace_state"], "k=v", "{flavor}");
        assert_eq!(spans["/dead/x"]["attributes"]["error"], "true", "{flavor}");
        runs.push((flavor, spans, resource));
    }
    if let [(_, ferry, ferry_res), (_, envoy, envoy_res)] = runs.as_slice() {
        assert_eq!(
            ferry, envoy,
            "ferry's spans (left) differ from Envoy's (right)"
        );
        // The SDK and scope versions differ by nature (Envoy writes its own build
        // version); the rest matches.
        let strip = |v: &Value| {
            let mut v = v.clone();
            if let Some(r) = v["resource"].as_object_mut() {
                r.remove("telemetry.sdk.version");
            }
            v["scope"]["version"] = Value::Null;
            v
        };
        assert_eq!(strip(ferry_res), strip(envoy_res));
    }
}

const SAMPLING: &str = r#"
access_log:
- name: envoy.access_loggers.file
  typed_config:
    "@type": type.googleapis.com/envoy.extensions.access_loggers.file.v3.FileAccessLog
    path: ACCESS_LOG
    log_format: {text_format_source: {inline_string: "%REQ(:PATH)% %TRACE_ID%\n"}}
use_remote_address: true
internal_address_config: {cidr_ranges: [{address_prefix: 127.0.0.1, prefix_len: 32}]}
tracing:
  random_sampling: {value: 0}
  provider:
    name: envoy.tracers.zipkin
    typed_config:
      "@type": type.googleapis.com/envoy.config.trace.v3.ZipkinConfig
      collector_cluster: collector
      collector_endpoint: /api/v2/spans
      collector_endpoint_version: HTTP_JSON"#;

/// The health check filter, inserted before the router.
const HEALTH_CHECK: &str = r#"          http_filters:
          - name: envoy.filters.http.health_check
            typed_config:
              "@type": type.googleapis.com/envoy.extensions.filters.http.health_check.v3.HealthCheck
              pass_through_mode: false
              headers: [{name: ":path", string_match: {exact: "/hc"}}]
"#;

/// `random_sampling: 0` samples nothing; `x-envoy-force-trace` (from an internal
/// address) and `x-client-trace-id` still trace; health checks never do. The request
/// id carries the decision upstream.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sampling_decisions_match_envoy() {
    let mut runs = Vec::new();
    for flavor in proc::flavors() {
        let zipkin = Zipkin::start().await;
        let up = Scripted::start(vec![]).await;
        let dead = dead_address().await;
        let dir = tempfile::tempdir().unwrap_or_else(|e| panic!("{e}"));
        let log = dir.path().join("access.log");
        let yaml = bootstrap(SAMPLING, "")
            .replacen("          http_filters:\n", HEALTH_CHECK, 1)
            .replace("ACCESS_LOG", &log.display().to_string());
        let proxy = proc::start_with(
            flavor,
            &yaml,
            &[
                ("backend", up.addr()),
                ("dead", dead),
                ("collector", zipkin.addr()),
            ],
        )
        .await;
        let port = proxy.listener_port().unwrap_or_default();
        for i in 0..3 {
            get(port, Request::get(&format!("/plain{i}")), 200, flavor).await;
        }
        get(
            port,
            Request::get("/forced").header("x-envoy-force-trace", "1"),
            200,
            flavor,
        )
        .await;
        get(
            port,
            Request::get("/client").header("x-client-trace-id", "c1"),
            200,
            flavor,
        )
        .await;
        get(
            port,
            Request::get("/hc").header("x-envoy-force-trace", "1"),
            200,
            flavor,
        )
        .await;
        let spans = zipkin.wait_spans(2, DEADLINE).await;
        let mut urls: Vec<String> = spans
            .iter()
            .map(|s| {
                let u = s["tags"]["http.url"].as_str().unwrap_or_default();
                format!("/{}", u.splitn(4, '/').nth(3).unwrap_or_default())
            })
            .collect();
        urls.sort();
        assert_eq!(urls, ["/client", "/forced"], "{flavor}");
        let upstream = up.seen();
        let trace_digit = |path: &str| {
            header(seen_for(&upstream, path), "x-request-id")
                .as_bytes()
                .get(14)
                .copied()
                .map(char::from)
        };
        assert_eq!(trace_digit("/forced"), Some('a'), "{flavor}");
        assert_eq!(trace_digit("/client"), Some('b'), "{flavor}");
        assert_eq!(
            trace_digit("/plain0"),
            Some('4'),
            "{flavor}: left as generated"
        );
        assert_eq!(
            header(seen_for(&upstream, "/plain0"), "x-b3-sampled"),
            "0",
            "{flavor}"
        );
        // %TRACE_ID%: the span's trace id, sampled or not (Zipkin: 16 digits).
        let lines = admin::poll(DEADLINE, || async {
            let text = std::fs::read_to_string(&log).unwrap_or_default();
            (text.lines().count() >= 6).then_some(text)
        })
        .await
        .unwrap_or_else(|| panic!("{flavor}: the access log has no 6 lines"));
        for line in lines.lines() {
            let (path, id) = line.split_once(' ').unwrap_or_default();
            let expected = match path {
                "/forced" | "/client" => spans
                    .iter()
                    .find(|s| {
                        s["tags"]["http.url"]
                            .as_str()
                            .is_some_and(|u| u.ends_with(path))
                    })
                    .and_then(|s| s["traceId"].as_str())
                    .unwrap_or_default()
                    .to_string(),
                "/hc" => id.to_string(),
                p => header(seen_for(&upstream, p), "x-b3-traceid").to_string(),
            };
            assert!(is_hex(id, 16), "{flavor}: {line}");
            assert_eq!(id, expected, "{flavor}: {line}");
        }
        let stats = tracing_stats(proxy.admin_port()).await;
        let expected: BTreeMap<String, u64> = [
            ("client_enabled", 1),
            ("health_check", 1),
            ("not_traceable", 4),
            ("random_sampling", 0),
            ("service_forced", 1),
        ]
        .into_iter()
        .map(|(k, v)| (format!("http.ingress.tracing.{k}"), v))
        .collect();
        assert_eq!(stats, expected, "{flavor}");
        runs.push(urls);
    }
}

/// A collector that refuses connections costs no request anything: every request is
/// answered, and the reports are counted as dropped (Envoy's async client turns the
/// connection failure into a local 503, which its reporter counts as dropped).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn dead_collector_costs_requests_nothing() {
    for flavor in proc::flavors() {
        let up = Scripted::start(vec![]).await;
        let dead = dead_address().await;
        let yaml = bootstrap(ZIPKIN, "");
        let proxy = proc::start_with(
            flavor,
            &yaml,
            &[("backend", up.addr()), ("dead", dead), ("collector", dead)],
        )
        .await;
        let port = proxy.listener_port().unwrap_or_default();
        for i in 0..20 {
            get(port, Request::get(&format!("/r{i}")), 200, flavor).await;
        }
        let admin = proxy.admin_port();
        let failed = admin::stat_when(admin, "tracing.zipkin.reports_dropped", |v| v > 0).await;
        assert!(failed > 0, "{flavor}: no dropped report counted");
        let sent = admin::stat(admin, "tracing.zipkin.spans_sent").await;
        let dropped = admin::stat(admin, "tracing.zipkin.spans_dropped").await;
        assert_eq!(
            sent + dropped,
            20,
            "{flavor}: every span is sent or counted dropped"
        );
        assert_eq!(admin::stat(admin, "tracing.zipkin.reports_sent").await, 0);
    }
}

/// Spans of one run with what varies masked (ids checked for shape, or kept when they
/// come from the request), keyed by path; and the upstream's view of each request.
async fn zipkin_spans(
    flavor: Flavor,
    yaml: &str,
    requests: Vec<Request>,
    spans: usize,
) -> (BTreeMap<String, Value>, Vec<Seen>) {
    let zipkin = Zipkin::start().await;
    let up = Scripted::start(vec![]).await;
    let dead = dead_address().await;
    let proxy = proc::start_with(
        flavor,
        yaml,
        &[
            ("backend", up.addr()),
            ("dead", dead),
            ("collector", zipkin.addr()),
        ],
    )
    .await;
    let port = proxy.listener_port().unwrap_or_default();
    for r in requests {
        get(port, r, 200, flavor).await;
    }
    let mut out = BTreeMap::new();
    for span in zipkin.wait_spans(spans, DEADLINE).await {
        let (path, mut span) = normalize_zipkin(span, flavor);
        for k in ["id", "traceId", "parentId"] {
            if let Some(v) = span.get(k).and_then(Value::as_str) {
                if !v.starts_with("0000000000") {
                    assert!(is_hex(v, 16), "{flavor}: {k} {v}");
                    span[k] = "<random>".into();
                }
            }
        }
        out.insert(path, span);
    }
    (out, up.seen())
}

const DECORATED: &str = "match: {prefix: \"/dec\"}\nroute: {cluster: backend}\ndecorator: {operation: checkAvailability}";

/// On an `OUTBOUND` listener the spans are client spans (a child of the caller's span,
/// never shared); a route's `decorator` names the span and, on egress, goes upstream in
/// `x-envoy-decorator-operation`; on ingress that header from the caller names the span.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn egress_spans_and_decorators_match_envoy() {
    let mut runs = Vec::new();
    for flavor in proc::flavors() {
        let bootstrap = |outbound: bool| {
            let yaml = HcmBootstrap::new()
                .hcm(ZIPKIN)
                .route(DECORATED)
                .route("match: {prefix: \"/\"}\nroute: {cluster: backend}")
                .cluster("backend", "")
                .cluster("dead", "")
                .cluster("collector", "")
                .yaml();
            let yaml = format!("{NODE}{yaml}");
            if outbound {
                yaml.replacen(
                    "  - name: main\n",
                    "  - name: main\n    traffic_direction: OUTBOUND\n",
                    1,
                )
            } else {
                yaml
            }
        };
        let b3 = |r: Request| {
            r.header("x-b3-traceid", "00000000000000aa")
                .header("x-b3-spanid", "00000000000000bb")
                .header("x-b3-sampled", "1")
        };
        let (egress, seen) = zipkin_spans(
            flavor,
            &bootstrap(true),
            vec![
                Request::get("/plain"),
                b3(Request::get("/dec")),
                Request::get("/dec2").header("x-envoy-decorator-operation", "fromCaller"),
            ],
            3,
        )
        .await;
        assert_eq!(egress["/plain"]["kind"], "CLIENT", "{flavor}");
        assert_eq!(egress["/plain"]["annotation"], "cr", "{flavor}");
        assert_eq!(egress["/dec"]["name"], "checkAvailability", "{flavor}");
        assert_eq!(egress["/dec"]["parentId"], "00000000000000bb", "{flavor}");
        let dec = seen_for(&seen, "/dec");
        assert_eq!(
            header(dec, "x-envoy-decorator-operation"),
            "checkAvailability"
        );
        assert_ne!(
            header(dec, "x-b3-spanid"),
            "00000000000000bb",
            "{flavor}: a child span"
        );
        assert_eq!(
            header(dec, "x-b3-parentspanid"),
            "00000000000000bb",
            "{flavor}"
        );
        let (ingress, seen) = zipkin_spans(
            flavor,
            &bootstrap(false),
            vec![
                Request::get("/dec"),
                Request::get("/other").header("x-envoy-decorator-operation", "fromCaller"),
            ],
            2,
        )
        .await;
        assert_eq!(ingress["/dec"]["name"], "checkAvailability", "{flavor}");
        assert_eq!(ingress["/other"]["name"], "fromCaller", "{flavor}");
        let other = seen_for(&seen, "/other");
        assert_eq!(
            header(other, "x-envoy-decorator-operation"),
            "",
            "{flavor}: consumed"
        );
        runs.push((egress, ingress));
    }
    if let [ferry, envoy] = runs.as_slice() {
        assert_eq!(
            ferry, envoy,
            "ferry's spans (left) differ from Envoy's (right)"
        );
    }
}

/// OpenTelemetry on an `OUTBOUND` listener: client spans, named `egress <host>` or by the
/// route's decorator.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn opentelemetry_egress_spans_match_envoy() {
    let mut runs = Vec::new();
    for flavor in proc::flavors() {
        let otlp = Otlp::start().await;
        let up = Scripted::start(vec![]).await;
        let yaml = HcmBootstrap::new()
            .hcm(OTLP)
            .route(DECORATED)
            .route("match: {prefix: \"/\"}\nroute: {cluster: backend}")
            .cluster("backend", "")
            .cluster("collector", H2)
            .yaml()
            .replacen(
                "  - name: main\n",
                "  - name: main\n    traffic_direction: OUTBOUND\n",
                1,
            );
        let proxy = proc::start_with(
            flavor,
            &format!("{NODE}{yaml}"),
            &[("backend", up.addr()), ("collector", otlp.addr())],
        )
        .await;
        let port = proxy.listener_port().unwrap_or_default();
        for path in ["/a", "/b", "/c", "/d", "/dec"] {
            get(
                port,
                Request::get(path).header("host", "shop.local"),
                200,
                flavor,
            )
            .await;
        }
        let mut names: Vec<(String, i32)> = otlp
            .wait_spans(5, DEADLINE)
            .await
            .into_iter()
            .map(|s| (s.name, s.kind))
            .collect();
        names.sort();
        assert!(
            names.contains(&("checkAvailability".into(), 3)),
            "{flavor}: {names:?}"
        );
        runs.push(names);
    }
    if let [ferry, envoy] = runs.as_slice() {
        assert_eq!(ferry, envoy);
    }
}
