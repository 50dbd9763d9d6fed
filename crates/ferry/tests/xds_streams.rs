//! The xDS client's transports and sources beyond state-of-the-world ADS, each run on
//! Envoy 1.40 and on ferry with the same script: delta xDS (on ADS and on streams of
//! their own), `api_config_source` streams per type, resource TTLs and heartbeats,
//! `rate_limit_settings`, route configurations and assignments from files, and the
//! per-subscription stats Envoy keeps for them.

use ferry_test_util::admin::{poll, stat};
use ferry_test_util::diff::send;
use ferry_test_util::proc::{flavors, start, Flavor};
use ferry_test_util::xds::yaml::{
    assignment, backend_cluster, bootstrap_over, discovery_file, eds_cluster_from, http_listener,
    move_into_place, rds_listener_from, routes, Transport,
};
use ferry_test_util::xds::{
    cluster, cluster_load_assignment, listener, route_configuration, UserAgentVersionType,
    XdsServer, CLUSTER, ENDPOINTS, LISTENER, ROUTE,
};
use ferry_test_util::{backend, free_port, Request};
use std::time::Duration;

async fn backend_of(port: u16) -> String {
    match send(port, &Request::get("/")).await {
        Ok(o) => match o.header("x-backend") {
            Some(b) => b.to_string(),
            None => format!("status {}", o.status),
        },
        Err(_) => "no answer".to_string(),
    }
}

/// Polls until a request through `port` reaches `want` (or the deadline passes); what
/// it reached last.
async fn reaches(port: u16, want: &str) -> String {
    let reached = poll(Duration::from_secs(10), move || async move {
        let got = backend_of(port).await;
        (got == want).then_some(got)
    })
    .await;
    match reached {
        Some(got) => got,
        None => backend_of(port).await,
    }
}

/// Every transport, on Envoy and on ferry, with the same script: clusters (one EDS),
/// their assignment, a listener whose routes come from RDS; a route change; the
/// assignment removed; a bad listener (NACKed at the version accepted last); an EDS
/// cluster removed (its assignment no longer asked for); then the control plane
/// restarts and the proxy says what it has.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_transport_delivers_acks_and_removes_as_envoy_does() {
    let a = backend::start("a").await;
    let b = backend::start("b").await;
    for transport in Transport::ALL {
        let mut seen: Vec<(Flavor, Vec<String>)> = Vec::new();
        for flavor in flavors() {
            let xds = XdsServer::start().await;
            let xds_addr = xds.addr();
            let port = free_port();
            let source = transport.config_source();
            let clusters = vec![
                cluster(&backend_cluster("backend", a.addr())),
                cluster(&eds_cluster_from("e", &source)),
            ];
            xds.set(CLUSTER, "1", clusters.clone());
            xds.set(
                ENDPOINTS,
                "1",
                vec![cluster_load_assignment(&assignment("e", &[b.addr()]))],
            );
            xds.set(
                ROUTE,
                "1",
                vec![route_configuration(&routes("route: {cluster: backend}"))],
            );
            let rds = listener(&rds_listener_from(port, &source));
            xds.set(LISTENER, "1", vec![rds.clone()]);
            let _proxy = start(flavor, &bootstrap_over(xds_addr, transport))
                .await
                .unwrap_or_else(|e| panic!("{flavor} {transport:?}: {e:#}"));
            let mut log = Vec::new();
            for t in [CLUSTER, ENDPOINTS, ROUTE, LISTENER] {
                let acked = xds.wait_ack(t, "1").await.is_some();
                log.push(format!("{} 1 acked: {acked}", short(t)));
            }
            log.push(format!("routes to {}", reaches(port, "a").await));
            log.push(format!("streams {:?}", sorted(xds.methods())));

            // A route change routes the next requests to the EDS cluster.
            xds.set(
                ROUTE,
                "2",
                vec![route_configuration(&routes("route: {cluster: e}"))],
            );
            log.push(format!(
                "rds 2 acked: {}",
                xds.wait_ack(ROUTE, "2").await.is_some()
            ));
            log.push(format!("routes to {}", reaches(port, "b").await));

            // The assignment goes away (delta: removed): the cluster keeps its hosts.
            xds.set(ENDPOINTS, "2", vec![]);
            log.push(format!(
                "eds 2 acked: {}",
                xds.wait_ack(ENDPOINTS, "2").await.is_some()
            ));
            log.push(format!("routes to {}", backend_of(port).await));

            // A listener routing to a cluster nobody sent: refused.
            xds.set(
                LISTENER,
                "2",
                vec![listener(&http_listener(port, "route: {cluster: nope}"))],
            );
            let nack = xds.wait_nack(LISTENER).await;
            log.push(format!(
                "lds 2 refused at version {:?}",
                nack.map(|n| n.version_info)
            ));

            // The EDS cluster goes away: requests to it find no cluster; its assignment
            // is no longer asked for (delta ADS: unsubscribed; on a stream of its own,
            // Envoy closes the cluster's stream where ferry unsubscribes on the one EDS
            // stream it keeps for that source).
            xds.set(CLUSTER, "2", clusters[..1].to_vec());
            log.push(format!(
                "cds 2 acked: {}",
                xds.wait_ack(CLUSTER, "2").await.is_some()
            ));
            log.push(format!("routes to {}", reaches(port, "status 503").await));
            if transport == Transport::DeltaAds {
                let unsubscribed = xds
                    .wait_delta_request(Duration::from_secs(10), |r| {
                        r.type_url == ENDPOINTS && r.resource_names_unsubscribe == ["e"]
                    })
                    .await
                    .is_some();
                log.push(format!("eds e unsubscribed: {unsubscribed}"));
            }

            // The control plane restarts: the proxy says what it has.
            xds.stop().await;
            let xds = XdsServer::restart_at(xds_addr).await;
            match transport {
                Transport::Ads | Transport::Own => {
                    let hello = xds
                        .wait_request(Duration::from_secs(30), |r| r.type_url == CLUSTER)
                        .await;
                    log.push(format!(
                        "cds asked again at {:?}",
                        hello.map(|h| (h.version_info, h.response_nonce))
                    ));
                }
                Transport::DeltaAds | Transport::DeltaOwn => {
                    let hello = xds
                        .wait_delta_request(Duration::from_secs(30), |r| r.type_url == CLUSTER)
                        .await;
                    log.push(format!(
                        "cds asked again having {:?}",
                        hello.map(|h| sorted(h.initial_resource_versions.into_keys().collect()))
                    ));
                }
            }
            xds.set(CLUSTER, "3", clusters[..1].to_vec());
            xds.set(
                ROUTE,
                "3",
                vec![route_configuration(&routes("route: {cluster: backend}"))],
            );
            xds.set(LISTENER, "3", vec![rds]);
            log.push(format!(
                "lds 3 acked: {}",
                xds.wait_ack(LISTENER, "3").await.is_some()
            ));
            log.push(format!("routes to {}", reaches(port, "a").await));
            seen.push((flavor, log));
        }
        for (flavor, log) in &seen {
            assert_eq!(
                log, &seen[0].1,
                "{transport:?}: {flavor} differs from {}",
                seen[0].0
            );
        }
    }
}

fn short(type_url: &str) -> &'static str {
    match type_url {
        CLUSTER => "cds",
        LISTENER => "lds",
        ROUTE => "rds",
        _ => "eds",
    }
}

fn sorted<T: Ord>(mut v: Vec<T>) -> Vec<T> {
    v.sort();
    v.dedup();
    v
}

/// A listener sent with a TTL is removed when the TTL runs out, on Envoy and ferry;
/// over delta, heartbeats (the resource's name and version without it) keep it past
/// the TTL. (Over state of the world a heartbeat is not a resource of the response, so
/// a listener only heartbeated is missing and removed, as in Envoy; and Envoy 1.40
/// crashes on a heartbeated assignment there, so only delta heartbeats are compared.)
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_listener_whose_ttl_runs_out_is_removed() {
    let a = backend::start("a").await;
    for transport in [Transport::DeltaAds, Transport::Ads] {
        let mut seen: Vec<(Flavor, Vec<String>)> = Vec::new();
        for flavor in flavors() {
            let xds = XdsServer::start().await;
            let port = free_port();
            xds.set(
                CLUSTER,
                "1",
                vec![cluster(&backend_cluster("backend", a.addr()))],
            );
            xds.set_ttl(LISTENER, Duration::from_secs(2));
            xds.set(
                LISTENER,
                "1",
                vec![listener(&http_listener(port, "route: {cluster: backend}"))],
            );
            let _proxy = start(flavor, &bootstrap_over(xds.addr(), transport))
                .await
                .unwrap_or_else(|e| panic!("{flavor} {transport:?}: {e:#}"));
            let mut log = Vec::new();
            log.push(format!(
                "lds acked: {}",
                xds.wait_ack(LISTENER, "1").await.is_some()
            ));
            log.push(format!("routes to {}", reaches(port, "a").await));
            if transport == Transport::DeltaAds {
                // Heartbeats well inside the TTL keep the listener past it.
                let mut kept = true;
                for _ in 0..8 {
                    xds.heartbeat(LISTENER);
                    tokio::time::sleep(Duration::from_millis(400)).await;
                    kept &= backend_of(port).await == "a";
                }
                log.push(format!("kept by heartbeats: {kept}"));
            }
            // Without them, it goes.
            log.push(format!("then {}", reaches(port, "no answer").await));
            seen.push((flavor, log));
        }
        for (flavor, log) in &seen {
            assert_eq!(
                log, &seen[0].1,
                "{transport:?}: {flavor} differs from {}",
                seen[0].0
            );
        }
    }
}

/// `rate_limit_settings`: with one token and a slow fill, the client's requests wait
/// for tokens (counted in `control_plane.rate_limit_enforced`) and still converge.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn rate_limit_settings_hold_requests_back() {
    let a = backend::start("a").await;
    for flavor in flavors() {
        let xds = XdsServer::start().await;
        let port = free_port();
        xds.set(
            CLUSTER,
            "1",
            vec![cluster(&backend_cluster("backend", a.addr()))],
        );
        xds.set(
            LISTENER,
            "1",
            vec![listener(&http_listener(port, "route: {cluster: backend}"))],
        );
        let yaml = bootstrap_over(xds.addr(), Transport::Ads).replace(
            "api_type: GRPC,",
            "api_type: GRPC, rate_limit_settings: {max_tokens: 1, fill_rate: 4},",
        );
        let (admin, _) =
            ferry_test_util::ports::ports_of(&yaml).unwrap_or_else(|e| panic!("{e:#}"));
        let _proxy = start(flavor, &yaml)
            .await
            .unwrap_or_else(|e| panic!("{flavor}: {e:#}"));
        assert!(xds.wait_ack(LISTENER, "1").await.is_some(), "{flavor}");
        assert_eq!(reaches(port, "a").await, "a", "{flavor}");
        let enforced = stat(admin, "control_plane.rate_limit_enforced").await;
        assert!(enforced >= 1, "{flavor}: rate_limit_enforced {enforced}");
    }
}

/// Route configurations and assignments from files (`path_config_source`), on Envoy
/// and ferry: a static listener's routes and a static EDS cluster's hosts are read at
/// start and again when a new file is moved into place; the per-subscription stats
/// (`http.<prefix>.rds.<name>.*`, `cluster.<name>.update_*`) count them.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn routes_and_endpoints_come_from_files() {
    let a = backend::start("a").await;
    let b = backend::start("b").await;
    let mut seen: Vec<(Flavor, Vec<String>)> = Vec::new();
    for flavor in flavors() {
        let dir = tempfile::tempdir().unwrap_or_else(|e| panic!("{e}"));
        let port = free_port();
        let rds_path = dir.path().join("rds.yaml");
        let eds_path = dir.path().join("eds.yaml");
        move_into_place(
            dir.path(),
            "rds.yaml",
            &discovery_file(ROUTE, &[routes("route: {cluster: e}")]),
        );
        move_into_place(
            dir.path(),
            "eds.yaml",
            &discovery_file(ENDPOINTS, &[assignment("e", &[a.addr()])]),
        );
        let path_source = |p: &std::path::Path| {
            format!(
                "{{path_config_source: {{path: {}}}, resource_api_version: V3}}",
                p.display()
            )
        };
        let admin = free_port();
        let yaml = format!(
            r#"
node: {{id: node-1, cluster: mesh-a}}
admin: {{address: {{socket_address: {{address: 127.0.0.1, port_value: {admin}}}}}}}
static_resources:
  listeners:
  - {listener}
  clusters:
  - {cluster}
"#,
            listener = rds_listener_from(port, &path_source(&rds_path))
                .trim()
                .replace('\n', "\n    "),
            cluster = eds_cluster_from("e", &path_source(&eds_path))
                .trim()
                .replace('\n', "\n    "),
        );
        let _proxy = start(flavor, &yaml)
            .await
            .unwrap_or_else(|e| panic!("{flavor}: {e:#}\n{yaml}"));
        let mut log = Vec::new();
        log.push(format!("routes to {}", reaches(port, "a").await));
        move_into_place(
            dir.path(),
            "eds.yaml",
            &discovery_file(ENDPOINTS, &[assignment("e", &[b.addr()])]),
        );
        log.push(format!("then {}", reaches(port, "b").await));
        move_into_place(
            dir.path(),
            "rds.yaml",
            &discovery_file(ROUTE, &[routes("direct_response: {status: 418}")]),
        );
        log.push(format!("then {}", reaches(port, "status 418").await));
        for name in [
            "http.ingress.rds.routes.update_success",
            "http.ingress.rds.routes.config_reload",
            "cluster.e.update_success",
        ] {
            log.push(format!("{name} counted: {}", stat(admin, name).await >= 2));
        }
        seen.push((flavor, log));
    }
    for (flavor, log) in &seen {
        assert_eq!(log, &seen[0].1, "{flavor} differs from {}", seen[0].0);
    }
    assert_eq!(
        seen[0].1,
        [
            "routes to a",
            "then b",
            "then status 418",
            "http.ingress.rds.routes.update_success counted: true",
            "http.ingress.rds.routes.config_reload counted: true",
            "cluster.e.update_success counted: true",
        ]
    );
}

/// The shape of a JSON value: its keys, recursively, with `@type` and `name`s as they
/// are and other leaves elided (times and versions differ between runs).
fn shape(v: &serde_json::Value) -> serde_json::Value {
    use serde_json::Value;
    match v {
        Value::Object(o) => Value::Object(
            o.iter()
                .filter(|(k, _)| *k != "last_updated")
                .map(|(k, v)| {
                    let kept = matches!(k.as_str(), "@type" | "name" | "cluster_name");
                    (k.clone(), if kept { v.clone() } else { shape(v) })
                })
                .collect(),
        ),
        Value::Array(a) => Value::Array(a.iter().map(shape).collect()),
        _ => Value::Null,
    }
}

async fn admin_json(admin: u16, path: &str) -> (u16, serde_json::Value) {
    let (code, body) = ferry_test_util::proc::admin_get(admin, path)
        .await
        .unwrap_or_else(|e| panic!("{e:#}"));
    (code, serde_json::from_str(&body).unwrap_or_default())
}

/// `/config_dump?resource=` and `?mask=`, and a removed listener shown draining
/// (`draining_state`, `listener_manager.total_listeners_draining`), on Envoy and
/// ferry.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn config_dump_resource_and_mask_and_draining_listeners_as_envoy() {
    let a = backend::start("a").await;
    let mut seen: Vec<(Flavor, Vec<String>)> = Vec::new();
    for flavor in flavors() {
        let xds = XdsServer::start().await;
        let port = free_port();
        let source = Transport::Ads.config_source();
        xds.set(
            CLUSTER,
            "c1",
            vec![cluster(&eds_cluster_from("svc", &source))],
        );
        xds.set(
            ENDPOINTS,
            "e1",
            vec![cluster_load_assignment(&assignment("svc", &[a.addr()]))],
        );
        xds.set(
            LISTENER,
            "l1",
            vec![listener(&rds_listener_from(port, &source))],
        );
        xds.set(
            ROUTE,
            "r1",
            vec![route_configuration(&routes("route: {cluster: svc}"))],
        );
        let yaml = bootstrap_over(xds.addr(), Transport::Ads);
        let (admin, _) =
            ferry_test_util::ports::ports_of(&yaml).unwrap_or_else(|e| panic!("{e:#}"));
        let _proxy = start(flavor, &yaml)
            .await
            .unwrap_or_else(|e| panic!("{flavor}: {e:#}"));
        let mut log = vec![format!("routes to {}", reaches(port, "a").await)];
        for path in [
            "/config_dump?resource=dynamic_active_clusters",
            "/config_dump?resource=dynamic_listeners&mask=name",
            "/config_dump?resource=dynamic_route_configs&mask=version_info,route_config.name",
            "/config_dump?mask=dynamic_active_clusters",
        ] {
            let (code, dump) = admin_json(admin, path).await;
            log.push(format!("{path}: {code} {}", shape(&dump)));
        }
        let (code, _) = admin_json(admin, "/config_dump?resource=no_such_field").await;
        log.push(format!("no_such_field: {code}"));

        // The listener goes away: it drains.
        xds.set(LISTENER, "l2", vec![]);
        log.push(format!(
            "lds l2 acked: {}",
            xds.wait_ack(LISTENER, "l2").await.is_some()
        ));
        let draining = ferry_test_util::admin::stat_when(
            admin,
            "listener_manager.total_listeners_draining",
            |v| v == 1,
        )
        .await;
        log.push(format!("total_listeners_draining {draining}"));
        let (_, dump) = admin_json(admin, "/config_dump?resource=dynamic_listeners").await;
        log.push(format!("draining: {}", shape(&dump)));
        seen.push((flavor, log));
    }
    for (flavor, log) in &seen {
        assert_eq!(log, &seen[0].1, "{flavor} differs from {}", seen[0].0);
    }
}

/// A listener replaced by one of another name on the same port in one update (state
/// of the world and delta): the new one serves, on Envoy and ferry.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_listener_replaced_under_another_name_on_its_port_serves() {
    for transport in [Transport::Ads, Transport::DeltaAds] {
        let mut seen: Vec<(Flavor, Vec<String>)> = Vec::new();
        for flavor in flavors() {
            let xds = XdsServer::start().await;
            let port = free_port();
            xds.set(CLUSTER, "1", vec![]);
            xds.set(
                LISTENER,
                "1",
                vec![listener(&http_listener(
                    port,
                    "direct_response: {status: 201}",
                ))],
            );
            let _proxy = start(flavor, &bootstrap_over(xds.addr(), transport))
                .await
                .unwrap_or_else(|e| panic!("{flavor} {transport:?}: {e:#}"));
            let mut log = vec![format!("first: {}", reaches(port, "status 201").await)];
            let renamed = http_listener(port, "direct_response: {status: 202}")
                .replace("name: ingress", "name: renamed");
            xds.set(LISTENER, "2", vec![listener(&renamed)]);
            let acked = xds.wait_ack(LISTENER, "2").await.is_some();
            log.push(format!("lds 2 acked: {acked}"));
            log.push(format!("then: {}", reaches(port, "status 202").await));
            seen.push((flavor, log));
        }
        for (flavor, log) in &seen {
            assert_eq!(
                log, &seen[0].1,
                "{transport:?}: {flavor} differs from {}",
                seen[0].0
            );
        }
    }
}

/// The node as Envoy sends it: the same identity, user agent and client features, on
/// Envoy and ferry, over state of the world and delta.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_node_is_sent_as_envoy_sends_it() {
    for transport in [Transport::Ads, Transport::DeltaAds] {
        let mut seen: Vec<(Flavor, Vec<String>)> = Vec::new();
        for flavor in flavors() {
            let xds = XdsServer::start().await;
            xds.set(CLUSTER, "1", vec![]);
            xds.set(LISTENER, "1", vec![]);
            let _proxy = start(flavor, &bootstrap_over(xds.addr(), transport))
                .await
                .unwrap_or_else(|e| panic!("{flavor} {transport:?}: {e:#}"));
            let node = match transport {
                Transport::Ads => xds
                    .wait_request(Duration::from_secs(10), |r| r.node.is_some())
                    .await
                    .and_then(|r| r.node),
                _ => xds
                    .wait_delta_request(Duration::from_secs(10), |r| r.node.is_some())
                    .await
                    .and_then(|r| r.node),
            };
            let node = node.unwrap_or_else(|| panic!("{flavor}: no node"));
            let version = match node.user_agent_version_type {
                Some(UserAgentVersionType::UserAgentBuildVersion(b)) => {
                    b.version.map(|v| (v.major_number, v.minor_number))
                }
                _ => None,
            };
            let log = vec![
                format!("id {} cluster {}", node.id, node.cluster),
                format!("locality {:?}", node.locality.map(|l| l.zone)),
                format!("user agent {} {version:?}", node.user_agent_name),
                format!("client features {:?}", sorted(node.client_features)),
            ];
            seen.push((flavor, log));
        }
        for (flavor, log) in &seen {
            assert_eq!(
                log, &seen[0].1,
                "{transport:?}: {flavor} differs from {}",
                seen[0].0
            );
        }
        assert_eq!(
            seen[0].1[..3],
            [
                "id node-1 cluster mesh-a",
                "locality Some(\"z1\")",
                "user agent envoy Some((1, 40))",
            ],
            "{transport:?}: {:?}",
            seen[0].1
        );
    }
}

/// A control plane answering garbage — bytes that are no protobuf, a resource of
/// another type — is NACKed and counted; the last good config serves on and a later
/// good update is applied, on Envoy and ferry, over state of the world and delta.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn garbage_from_the_control_plane_is_nacked_and_the_last_good_config_serves() {
    let a = backend::start("a").await;
    let b = backend::start("b").await;
    for transport in [Transport::Ads, Transport::DeltaAds] {
        let mut seen: Vec<(Flavor, Vec<String>)> = Vec::new();
        for flavor in flavors() {
            let xds = XdsServer::start().await;
            let port = free_port();
            let good = cluster(&backend_cluster("backend", a.addr()));
            xds.set(CLUSTER, "1", vec![good.clone()]);
            xds.set(
                LISTENER,
                "1",
                vec![listener(&http_listener(port, "route: {cluster: backend}"))],
            );
            let yaml = bootstrap_over(xds.addr(), transport);
            let (admin, _) =
                ferry_test_util::ports::ports_of(&yaml).unwrap_or_else(|e| panic!("{e:#}"));
            let _proxy = start(flavor, &yaml)
                .await
                .unwrap_or_else(|e| panic!("{flavor} {transport:?}: {e:#}"));
            let mut log = vec![format!("routes to {}", reaches(port, "a").await)];
            let garbage = ferry_test_util::xds::Any {
                type_url: CLUSTER.to_string(),
                value: vec![0xff, 0xff, 0xff, 0xff, 0x0f],
            };
            let wrong_type = listener(&http_listener(
                free_port(),
                "direct_response: {status: 200}",
            ));
            for (what, bad) in [("garbage", garbage), ("a listener", wrong_type)] {
                let before = xds.nacks(CLUSTER);
                xds.set(CLUSTER, &format!("bad-{what}"), vec![good.clone(), bad]);
                let nacked = poll(Duration::from_secs(10), || async {
                    (xds.nacks(CLUSTER) > before).then_some(())
                })
                .await
                .is_some();
                log.push(format!("{what} nacked: {nacked}"));
                log.push(format!("routes to {}", backend_of(port).await));
            }
            let rejected = stat(admin, "cluster_manager.cds.update_rejected").await;
            log.push(format!("update_rejected counted: {}", rejected >= 1));
            xds.set(
                CLUSTER,
                "2",
                vec![cluster(&backend_cluster("backend", b.addr()))],
            );
            log.push(format!(
                "cds 2 acked: {}",
                xds.wait_ack(CLUSTER, "2").await.is_some()
            ));
            log.push(format!("routes to {}", reaches(port, "b").await));
            seen.push((flavor, log));
        }
        for (flavor, log) in &seen {
            assert_eq!(
                log, &seen[0].1,
                "{transport:?}: {flavor} differs from {}",
                seen[0].0
            );
        }
        assert_eq!(
            seen[0].1,
            [
                "routes to a",
                "garbage nacked: true",
                "routes to a",
                "a listener nacked: true",
                "routes to a",
                "update_rejected counted: true",
                "cds 2 acked: true",
                "routes to b",
            ],
            "{transport:?}"
        );
    }
}

/// The xDS stats Envoy keeps, by name, on Envoy and ferry: the control plane's, the
/// CDS and LDS subscriptions', the listener and cluster managers', a route
/// configuration's (`http.<prefix>.rds.<name>.*`) and an EDS cluster's.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn xds_stat_names_are_envoys() {
    let a = backend::start("a").await;
    let mut seen: Vec<(Flavor, Vec<String>)> = Vec::new();
    for flavor in flavors() {
        let xds = XdsServer::start().await;
        let port = free_port();
        let source = Transport::Ads.config_source();
        xds.set(
            CLUSTER,
            "1",
            vec![cluster(&eds_cluster_from("svc", &source))],
        );
        xds.set(
            ENDPOINTS,
            "1",
            vec![cluster_load_assignment(&assignment("svc", &[a.addr()]))],
        );
        xds.set(
            LISTENER,
            "1",
            vec![listener(&rds_listener_from(port, &source))],
        );
        xds.set(
            ROUTE,
            "1",
            vec![route_configuration(&routes("route: {cluster: svc}"))],
        );
        let yaml = bootstrap_over(xds.addr(), Transport::Ads);
        let (admin, _) =
            ferry_test_util::ports::ports_of(&yaml).unwrap_or_else(|e| panic!("{e:#}"));
        let _proxy = start(flavor, &yaml)
            .await
            .unwrap_or_else(|e| panic!("{flavor}: {e:#}"));
        assert_eq!(reaches(port, "a").await, "a", "{flavor}");
        let xds_stat = |name: &str| {
            [
                "control_plane.",
                "cluster_manager.cds.",
                "listener_manager.lds.",
                "http.ingress.rds.",
                "cluster.svc.update_",
                "cluster.svc.init_fetch_timeout",
                "listener_manager.total_listeners",
                "listener_manager.listener_",
                "cluster_manager.cluster_",
                "cluster_manager.active_clusters",
                "cluster_manager.warming_clusters",
            ]
            .iter()
            .any(|p| name.starts_with(p))
        };
        let names: Vec<String> = ferry_test_util::admin::stats(admin)
            .await
            .into_keys()
            .filter(|n| xds_stat(n))
            .collect();
        seen.push((flavor, names));
    }
    let (first, names) = &seen[0];
    for (flavor, other) in &seen[1..] {
        let only = |a: &[String], b: &[String]| -> Vec<String> {
            a.iter().filter(|n| !b.contains(n)).cloned().collect()
        };
        assert!(
            names == other,
            "only {first}: {:?}\nonly {flavor}: {:?}",
            only(names, other),
            only(other, names)
        );
    }
}

/// An EDS update moves traffic at once by the endpoints' `health_status`, on Envoy
/// and ferry: unhealthy and draining endpoints take no requests.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_eds_update_moves_traffic_by_health_status() {
    let a = backend::start("a").await;
    let b = backend::start("b").await;
    let assignment_with = |a_health: &str, b_health: &str| {
        let endpoint = |addr: std::net::SocketAddr, health: &str| {
            format!(
                "    - endpoint: {{address: {{socket_address: {{address: 127.0.0.1, port_value: {}}}}}}}\n      health_status: {health}",
                addr.port()
            )
        };
        cluster_load_assignment(&format!(
            "cluster_name: e\nendpoints:\n- lb_endpoints:\n{}\n{}\n",
            endpoint(a.addr(), a_health),
            endpoint(b.addr(), b_health)
        ))
    };
    let mut seen: Vec<(Flavor, Vec<String>)> = Vec::new();
    for flavor in flavors() {
        let xds = XdsServer::start().await;
        let port = free_port();
        let source = Transport::Ads.config_source();
        xds.set(CLUSTER, "1", vec![cluster(&eds_cluster_from("e", &source))]);
        xds.set(
            ENDPOINTS,
            "1",
            vec![assignment_with("UNHEALTHY", "HEALTHY")],
        );
        xds.set(
            LISTENER,
            "1",
            vec![listener(&http_listener(port, "route: {cluster: e}"))],
        );
        let _proxy = start(flavor, &bootstrap_over(xds.addr(), Transport::Ads))
            .await
            .unwrap_or_else(|e| panic!("{flavor}: {e:#}"));
        let mut log = vec![format!("routes to {}", reaches(port, "b").await)];
        let mut to = std::collections::BTreeMap::<String, u32>::new();
        for _ in 0..20 {
            *to.entry(backend_of(port).await).or_default() += 1;
        }
        log.push(format!("spread {to:?}"));
        xds.set(ENDPOINTS, "2", vec![assignment_with("HEALTHY", "DRAINING")]);
        log.push(format!(
            "eds 2 acked: {}",
            xds.wait_ack(ENDPOINTS, "2").await.is_some()
        ));
        let mut to = std::collections::BTreeMap::<String, u32>::new();
        for _ in 0..20 {
            *to.entry(backend_of(port).await).or_default() += 1;
        }
        log.push(format!("spread {to:?}"));
        seen.push((flavor, log));
    }
    for (flavor, log) in &seen {
        assert_eq!(log, &seen[0].1, "{flavor} differs from {}", seen[0].0);
    }
    assert_eq!(
        seen[0].1,
        [
            "routes to b",
            "spread {\"b\": 20}",
            "eds 2 acked: true",
            "spread {\"a\": 20}"
        ]
    );
}
