//! `ferry proxy` as an xDS client (ADS, state of the world) against the scripted
//! server of `ferry_test_util::xds`: clusters and listeners arrive, are ACKed and serve
//! traffic; a bad update is NACKed with the resource's name and field path while the
//! last good config keeps serving; routes change and clusters go away at the next
//! request; the client comes back after the control plane restarts.

use ferry_test_util::diff::send;
use ferry_test_util::proc::{flavors, start, Flavor};
use ferry_test_util::xds::yaml::{
    assignment, backend_cluster, bootstrap, bootstrap_over, discovery_file, eds_cluster,
    http_listener, move_into_place, rds_listener, routes, Transport,
};
use ferry_test_util::xds::{
    cluster, cluster_load_assignment, listener, route_configuration, XdsServer, CLUSTER, ENDPOINTS,
    LISTENER, ROUTE,
};
use ferry_test_util::{backend, free_port, start_ferry, Request};
use std::net::SocketAddr;
use std::time::Duration;

async fn status(port: u16) -> u16 {
    send(port, &Request::get("/"))
        .await
        .map(|o| o.status)
        .unwrap_or(0)
}

async fn backend_of(port: u16) -> Option<String> {
    let o = send(port, &Request::get("/")).await.ok()?;
    o.header("x-backend").map(str::to_string)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn ads_delivers_clusters_and_listeners_acks_and_nacks() {
    let a = backend::start("a").await;
    let b = backend::start("b").await;
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
    let _proxy = start_ferry(&bootstrap(xds.addr()))
        .await
        .unwrap_or_else(|e| panic!("{e:#}"));

    // Both types are ACKed at their version and the listener serves through the cluster.
    assert!(xds.wait_ack(CLUSTER, "1").await.is_some(), "no CDS ACK");
    assert!(xds.wait_ack(LISTENER, "1").await.is_some(), "no LDS ACK");
    assert_eq!(backend_of(port).await.as_deref(), Some("a"));
    // The node is sent as Envoy sends it.
    let first = xds.requests()[0].clone();
    let node = first
        .node
        .unwrap_or_else(|| panic!("no node on the first request"));
    assert_eq!(
        (node.id.as_str(), node.cluster.as_str()),
        ("node-1", "mesh-a")
    );
    assert_eq!(node.user_agent_name, "envoy");
    assert_eq!(node.locality.map(|l| l.zone), Some("z1".to_string()));

    // A bad cluster: NACKed with its name and field path, at the last good version;
    // the good cluster of the same response is applied (Envoy's CDS), and traffic goes on.
    let bad = format!("{}alt_stat_name: x\n", backend_cluster("bad", b.addr()));
    xds.set(
        CLUSTER,
        "2",
        vec![
            cluster(&backend_cluster("backend", b.addr())),
            cluster(&bad),
        ],
    );
    let nack = xds
        .wait_nack(CLUSTER)
        .await
        .unwrap_or_else(|| panic!("no NACK"));
    assert_eq!(nack.version_info, "1");
    let detail = nack.error_detail.unwrap_or_default();
    assert_eq!(detail.message, "bad: alt_stat_name: field is not supported");
    assert_eq!(backend_of(port).await.as_deref(), Some("b"));

    // A good update after the bad one is applied and ACKed.
    xds.set(
        CLUSTER,
        "3",
        vec![cluster(&backend_cluster("backend", a.addr()))],
    );
    assert!(xds.wait_ack(CLUSTER, "3").await.is_some(), "no ACK of 3");
    assert_eq!(backend_of(port).await.as_deref(), Some("a"));

    // The listener replaced on its port: the next request gets the new route.
    xds.set(
        LISTENER,
        "2",
        vec![listener(&http_listener(
            port,
            "direct_response: {status: 418}",
        ))],
    );
    assert!(
        xds.wait_ack(LISTENER, "2").await.is_some(),
        "no ACK of listener 2"
    );
    assert_eq!(status(port).await, 418);

    // A cluster missing from a CDS response is removed: its route answers 503.
    xds.set(
        LISTENER,
        "3",
        vec![listener(&http_listener(port, "route: {cluster: backend}"))],
    );
    assert!(
        xds.wait_ack(LISTENER, "3").await.is_some(),
        "no ACK of listener 3"
    );
    assert_eq!(backend_of(port).await.as_deref(), Some("a"));
    xds.set(CLUSTER, "4", vec![]);
    assert!(xds.wait_ack(CLUSTER, "4").await.is_some(), "no ACK of 4");
    assert_eq!(status(port).await, 503);

    // A listener missing from an LDS response is removed: its port closes.
    xds.set(LISTENER, "4", vec![]);
    assert!(
        xds.wait_ack(LISTENER, "4").await.is_some(),
        "no ACK of listener 4"
    );
    let closed = ferry_test_util::admin::poll(Duration::from_secs(10), || async move {
        tokio::net::TcpStream::connect(("127.0.0.1", port))
            .await
            .is_err()
            .then_some(())
    })
    .await;
    assert!(closed.is_some(), "the removed listener still accepts");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_last_good_config_serves_while_the_control_plane_is_away() {
    let a = backend::start("a").await;
    let xds = XdsServer::start().await;
    let xds_addr = xds.addr();
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
    let _proxy = start_ferry(&bootstrap(xds_addr))
        .await
        .unwrap_or_else(|e| panic!("{e:#}"));
    assert!(xds.wait_ack(LISTENER, "1").await.is_some(), "no LDS ACK");
    assert_eq!(backend_of(port).await.as_deref(), Some("a"));

    // The control plane goes away: traffic goes on with the last config.
    xds.stop().await;
    for _ in 0..20 {
        assert_eq!(backend_of(port).await.as_deref(), Some("a"));
    }

    // It comes back knowing nothing: the proxy reconnects, says which versions it has
    // (state of the world), and takes the new config.
    let xds = XdsServer::restart_at(xds_addr).await;
    let hello = xds
        .wait_request(Duration::from_secs(30), |r| r.type_url == LISTENER)
        .await
        .unwrap_or_else(|| panic!("the proxy did not reconnect"));
    assert_eq!(hello.version_info, "1");
    assert!(hello.response_nonce.is_empty());
    xds.set(
        CLUSTER,
        "2",
        vec![cluster(&backend_cluster("backend", a.addr()))],
    );
    xds.set(
        LISTENER,
        "2",
        vec![listener(&http_listener(
            port,
            "direct_response: {status: 418}",
        ))],
    );
    assert!(
        xds.wait_ack(LISTENER, "2").await.is_some(),
        "no LDS ACK after reconnecting"
    );
    assert_eq!(status(port).await, 418);
}

/// The same xDS stream drives Envoy 1.40 and ferry: they take and refuse the same
/// updates (a route to a cluster nobody sent, duplicate clusters in one response) and
/// clients see the same routing after each.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn envoy_and_ferry_take_and_refuse_the_same_updates() {
    let a = backend::start("a").await;
    let b = backend::start("b").await;
    let mut seen: Vec<(Flavor, Vec<String>)> = Vec::new();
    for flavor in flavors() {
        let xds = XdsServer::start().await;
        let port = free_port();
        let mut log = Vec::new();
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
        let _proxy = start(flavor, &bootstrap(xds.addr()))
            .await
            .unwrap_or_else(|e| panic!("{flavor}: {e:#}"));
        log.push(format!(
            "cds 1 acked: {}",
            xds.wait_ack(CLUSTER, "1").await.is_some()
        ));
        log.push(format!(
            "lds 1 acked: {}",
            xds.wait_ack(LISTENER, "1").await.is_some()
        ));
        log.push(format!("routes to {:?}", backend_of(port).await));

        // A route to a cluster that does not exist: refused (Envoy validates an inline
        // route configuration's clusters), the old listener serves on.
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
        log.push(format!("routes to {:?}", backend_of(port).await));

        // Two clusters of one name in a response: refused.
        xds.set(
            CLUSTER,
            "2",
            vec![
                cluster(&backend_cluster("backend", b.addr())),
                cluster(&backend_cluster("backend", b.addr())),
            ],
        );
        let nack = xds.wait_nack(CLUSTER).await;
        log.push(format!(
            "cds 2 refused at version {:?}",
            nack.map(|n| n.version_info)
        ));

        // The cluster moves to b, then goes away.
        xds.set(
            CLUSTER,
            "3",
            vec![cluster(&backend_cluster("backend", b.addr()))],
        );
        log.push(format!(
            "cds 3 acked: {}",
            xds.wait_ack(CLUSTER, "3").await.is_some()
        ));
        log.push(format!("routes to {:?}", backend_of(port).await));
        xds.set(CLUSTER, "4", vec![]);
        log.push(format!(
            "cds 4 acked: {}",
            xds.wait_ack(CLUSTER, "4").await.is_some()
        ));
        log.push(format!("status {}", status(port).await));
        seen.push((flavor, log));
    }
    for (flavor, log) in &seen {
        assert_eq!(log, &seen[0].1, "{flavor} differs from {}", seen[0].0);
    }
    let expected = [
        "cds 1 acked: true",
        "lds 1 acked: true",
        "routes to Some(\"a\")",
        "lds 2 refused at version Some(\"1\")",
        "routes to Some(\"a\")",
        "cds 2 refused at version Some(\"1\")",
        "cds 3 acked: true",
        "routes to Some(\"b\")",
        "cds 4 acked: true",
        "status 503",
    ];
    assert_eq!(seen[0].1, expected);
}

/// While the first responses are awaited the server is INITIALIZING: `/ready` answers
/// 503, as Envoy's does, until the listeners arrive.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_server_is_initializing_until_the_first_responses() {
    let a = backend::start("a").await;
    let xds = XdsServer::start().await;
    let port = free_port();
    xds.set(
        CLUSTER,
        "1",
        vec![cluster(&backend_cluster("backend", a.addr()))],
    );
    let yaml = bootstrap(xds.addr());
    let (admin, _) = ferry_test_util::ports::ports_of(&yaml).unwrap_or_else(|e| panic!("{e:#}"));
    let starting = tokio::spawn(async move { start_ferry(&yaml).await });
    // Clusters came; listeners are asked for and withheld.
    assert!(xds.wait_ack(CLUSTER, "1").await.is_some(), "no CDS ACK");
    assert!(
        xds.wait_request(Duration::from_secs(10), |r| r.type_url == LISTENER)
            .await
            .is_some(),
        "no LDS subscription"
    );
    let (code, body) = ferry_test_util::proc::admin_get(admin, "/ready")
        .await
        .unwrap_or_else(|e| panic!("{e:#}"));
    assert_eq!((code, body.as_str()), (503, "INITIALIZING\n"));
    // The listeners arrive: the server is ready and serves.
    xds.set(
        LISTENER,
        "1",
        vec![listener(&http_listener(port, "route: {cluster: backend}"))],
    );
    let _proxy = starting
        .await
        .unwrap_or_else(|e| panic!("{e}"))
        .unwrap_or_else(|e| panic!("{e:#}"));
    assert_eq!(backend_of(port).await.as_deref(), Some("a"));
}

/// RDS, on Envoy and ferry: a listener naming a route configuration warms (does not
/// accept) until it comes, is asked for by name, then serves; a new version of the
/// route configuration routes the next request.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_listener_warms_until_its_route_configuration_comes() {
    let a = backend::start("a").await;
    let b = backend::start("b").await;
    for flavor in flavors() {
        let xds = XdsServer::start().await;
        let port = free_port();
        xds.set(
            CLUSTER,
            "1",
            vec![
                cluster(&backend_cluster("a", a.addr())),
                cluster(&backend_cluster("b", b.addr())),
            ],
        );
        let yaml = bootstrap(xds.addr());
        let starting = tokio::spawn(async move { start(flavor, &yaml).await });
        assert!(
            xds.wait_ack(CLUSTER, "1").await.is_some(),
            "{flavor}: no CDS ACK"
        );
        xds.set(LISTENER, "1", vec![listener(&rds_listener(port))]);
        // The route configuration is asked for by the name the listener gives.
        let asked = xds
            .wait_request(Duration::from_secs(10), |r| {
                r.type_url == ROUTE && r.resource_names == ["routes"]
            })
            .await;
        assert!(asked.is_some(), "{flavor}: no RDS request for routes");
        assert!(
            tokio::net::TcpStream::connect(("127.0.0.1", port))
                .await
                .is_err(),
            "{flavor}: a warming listener accepts"
        );
        xds.set(
            ROUTE,
            "1",
            vec![route_configuration(&routes("route: {cluster: a}"))],
        );
        assert!(
            xds.wait_ack(ROUTE, "1").await.is_some(),
            "{flavor}: no RDS ACK"
        );
        let _proxy = starting
            .await
            .unwrap_or_else(|e| panic!("{e}"))
            .unwrap_or_else(|e| panic!("{flavor}: {e:#}"));
        assert_eq!(backend_of(port).await.as_deref(), Some("a"), "{flavor}");
        xds.set(
            ROUTE,
            "2",
            vec![route_configuration(&routes("route: {cluster: b}"))],
        );
        assert!(
            xds.wait_ack(ROUTE, "2").await.is_some(),
            "{flavor}: no RDS ACK of 2"
        );
        assert_eq!(backend_of(port).await.as_deref(), Some("b"), "{flavor}");
    }
}

/// EDS, on Envoy and ferry: an EDS cluster warms until its assignment comes (asked for
/// by the cluster's name), then its hosts serve; a new assignment moves traffic at once.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_eds_cluster_serves_the_hosts_its_assignment_names() {
    let a = backend::start("a").await;
    let b = backend::start("b").await;
    for flavor in flavors() {
        let xds = XdsServer::start().await;
        let port = free_port();
        xds.set(CLUSTER, "1", vec![cluster(&eds_cluster("svc"))]);
        xds.set(
            LISTENER,
            "1",
            vec![listener(&http_listener(port, "route: {cluster: svc}"))],
        );
        let yaml = bootstrap(xds.addr());
        let starting = tokio::spawn(async move { start(flavor, &yaml).await });
        let asked = xds
            .wait_request(Duration::from_secs(10), |r| {
                r.type_url == ENDPOINTS && r.resource_names == ["svc"]
            })
            .await;
        assert!(asked.is_some(), "{flavor}: no EDS request for svc");
        xds.set(
            ENDPOINTS,
            "1",
            vec![cluster_load_assignment(&assignment("svc", &[a.addr()]))],
        );
        assert!(
            xds.wait_ack(ENDPOINTS, "1").await.is_some(),
            "{flavor}: no EDS ACK"
        );
        let _proxy = starting
            .await
            .unwrap_or_else(|e| panic!("{e}"))
            .unwrap_or_else(|e| panic!("{flavor}: {e:#}"));
        assert!(
            xds.wait_ack(LISTENER, "1").await.is_some(),
            "{flavor}: no LDS ACK"
        );
        assert_eq!(backend_of(port).await.as_deref(), Some("a"), "{flavor}");
        xds.set(
            ENDPOINTS,
            "2",
            vec![cluster_load_assignment(&assignment("svc", &[b.addr()]))],
        );
        assert!(
            xds.wait_ack(ENDPOINTS, "2").await.is_some(),
            "{flavor}: no EDS ACK of 2"
        );
        assert_eq!(backend_of(port).await.as_deref(), Some("b"), "{flavor}");
    }
}

/// What `/config_dump?include_eds` says of the dynamic resources: per section, each
/// resource's name and version.
async fn dump_summary(admin: u16) -> Vec<String> {
    let (code, body) = ferry_test_util::proc::admin_get(admin, "/config_dump?include_eds")
        .await
        .unwrap_or_else(|e| panic!("{e:#}"));
    assert_eq!(code, 200, "{body}");
    let dump: serde_json::Value = serde_json::from_str(&body).unwrap_or_else(|e| panic!("{e}"));
    let mut out = Vec::new();
    for config in dump["configs"].as_array().into_iter().flatten() {
        let ty = config["@type"].as_str().unwrap_or_default();
        let entries = |key: &str, inner: &str, name: &str| -> Vec<String> {
            config[key]
                .as_array()
                .into_iter()
                .flatten()
                .map(|e| {
                    let state = if inner.is_empty() { e } else { &e[inner] };
                    format!(
                        "{key} {} {}",
                        state[name.split('.').next().unwrap_or_default()]
                            [name.split('.').nth(1).unwrap_or_default()],
                        state["version_info"]
                    )
                })
                .collect()
        };
        match ty.rsplit('.').next().unwrap_or_default() {
            "ClustersConfigDump" => {
                out.extend(entries("dynamic_active_clusters", "", "cluster.name"))
            }
            "ListenersConfigDump" => out.extend(entries(
                "dynamic_listeners",
                "active_state",
                "listener.name",
            )),
            "RoutesConfigDump" => {
                out.extend(entries("dynamic_route_configs", "", "route_config.name"))
            }
            "EndpointsConfigDump" => out.extend(entries(
                "dynamic_endpoint_configs",
                "",
                "endpoint_config.cluster_name",
            )),
            _ => {}
        }
    }
    out.sort();
    out
}

/// `/config_dump` lists what came over xDS in Envoy's sections, on Envoy and ferry.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn config_dump_lists_the_dynamic_resources_as_envoy_does() {
    let a = backend::start("a").await;
    let mut seen = Vec::new();
    for flavor in flavors() {
        let xds = XdsServer::start().await;
        let port = free_port();
        xds.set(CLUSTER, "c1", vec![cluster(&eds_cluster("svc"))]);
        xds.set(
            ENDPOINTS,
            "e1",
            vec![cluster_load_assignment(&assignment("svc", &[a.addr()]))],
        );
        xds.set(LISTENER, "l1", vec![listener(&rds_listener(port))]);
        xds.set(
            ROUTE,
            "r1",
            vec![route_configuration(&routes("route: {cluster: svc}"))],
        );
        let yaml = bootstrap(xds.addr());
        let (admin, _) =
            ferry_test_util::ports::ports_of(&yaml).unwrap_or_else(|e| panic!("{e:#}"));
        let _proxy = start(flavor, &yaml)
            .await
            .unwrap_or_else(|e| panic!("{flavor}: {e:#}"));
        assert_eq!(backend_of(port).await.as_deref(), Some("a"), "{flavor}");
        seen.push((flavor, dump_summary(admin).await));
    }
    for (flavor, summary) in &seen {
        assert_eq!(summary, &seen[0].1, "{flavor} differs from {}", seen[0].0);
    }
    assert_eq!(
        seen[0].1,
        [
            "dynamic_active_clusters \"svc\" \"c1\"",
            "dynamic_endpoint_configs \"svc\" null",
            "dynamic_listeners \"ingress\" \"l1\"",
            "dynamic_route_configs \"routes\" \"r1\"",
        ]
    );
}

/// File config sources, on Envoy and ferry: listeners and clusters read from files at
/// start, read again when a new file is moved into place; a bad file is refused
/// (counted in `update_rejected`) and the last good config serves on.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn file_sources_are_read_again_when_a_file_is_moved_into_place() {
    let a = backend::start("a").await;
    for flavor in flavors() {
        let dir = tempfile::tempdir().unwrap_or_else(|e| panic!("{e}"));
        let port = free_port();
        move_into_place(
            dir.path(),
            "cds.yaml",
            &discovery_file(CLUSTER, &[backend_cluster("backend", a.addr())]),
        );
        move_into_place(
            dir.path(),
            "lds.yaml",
            &discovery_file(
                LISTENER,
                &[http_listener(port, "route: {cluster: backend}")],
            ),
        );
        let admin = free_port();
        let yaml = format!(
            r#"
node: {{id: node-1, cluster: mesh-a}}
admin: {{address: {{socket_address: {{address: 127.0.0.1, port_value: {admin}}}}}}}
dynamic_resources:
  cds_config: {{path_config_source: {{path: {cds}}}, resource_api_version: V3}}
  lds_config: {{path_config_source: {{path: {lds}}}, resource_api_version: V3}}
"#,
            cds = dir.path().join("cds.yaml").display(),
            lds = dir.path().join("lds.yaml").display(),
        );
        let _proxy = start(flavor, &yaml)
            .await
            .unwrap_or_else(|e| panic!("{flavor}: {e:#}"));
        let served = ferry_test_util::admin::poll(Duration::from_secs(10), || async move {
            backend_of(port).await.filter(|b| b == "a")
        })
        .await;
        assert!(
            served.is_some(),
            "{flavor}: the listener from the file does not serve"
        );

        // A new listener file moved into place changes the routing.
        move_into_place(
            dir.path(),
            "lds.yaml",
            &discovery_file(
                LISTENER,
                &[http_listener(port, "direct_response: {status: 418}")],
            ),
        );
        let changed = ferry_test_util::admin::poll(Duration::from_secs(10), || async move {
            (status(port).await == 418).then_some(())
        })
        .await;
        assert!(changed.is_some(), "{flavor}: the moved file was not read");

        // A bad cluster file is refused; the cluster stays.
        move_into_place(
            dir.path(),
            "cds.yaml",
            &discovery_file(
                CLUSTER,
                &[format!(
                    "{}lb_policy: 99\n",
                    backend_cluster("backend", a.addr())
                )],
            ),
        );
        let rejected =
            ferry_test_util::admin::stat_when(admin, "cluster_manager.cds.update_rejected", |v| {
                v >= 1
            })
            .await;
        assert_eq!(rejected, 1, "{flavor}");
        move_into_place(
            dir.path(),
            "lds.yaml",
            &discovery_file(
                LISTENER,
                &[http_listener(port, "route: {cluster: backend}")],
            ),
        );
        let back = ferry_test_util::admin::poll(Duration::from_secs(10), || async move {
            backend_of(port).await.filter(|b| b == "a")
        })
        .await;
        assert!(
            back.is_some(),
            "{flavor}: the last good cluster does not serve"
        );
    }
}

const EXAMPLES: &str = concat!(
    env!("CARGO_MANIFEST_DIR"),
    "/../../../shared/envoy-examples"
);

fn example(name: &str) -> String {
    std::fs::read_to_string(format!("{EXAMPLES}/{name}")).unwrap_or_else(|e| panic!("{name}: {e}"))
}

/// Envoy's `dynamic-config-fs` example as written, its files in a temporary directory,
/// its listener on a free loopback port and its `service1` at a test backend.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_dynamic_config_fs_example_runs() {
    let a = backend::start("service1").await;
    for flavor in flavors() {
        let dir = tempfile::tempdir().unwrap_or_else(|e| panic!("{e}"));
        let port = free_port();
        let lds = example("dynamic-config-fs__configs__lds.yaml")
            .replace("address: 0.0.0.0", "address: 127.0.0.1")
            .replace("port_value: 10000", &format!("port_value: {port}"));
        let cds = example("dynamic-config-fs__configs__cds.yaml")
            .replace("address: service1", "address: 127.0.0.1")
            .replace(
                "port_value: 8080",
                &format!("port_value: {}", a.addr().port()),
            );
        move_into_place(dir.path(), "lds.yaml", &lds);
        move_into_place(dir.path(), "cds.yaml", &cds);
        let bootstrap = example("dynamic-config-fs__envoy.yaml")
            .replace("/var/lib/envoy", &dir.path().display().to_string())
            .replace("address: 0.0.0.0", "address: 127.0.0.1")
            .replace("port_value: 19000", &format!("port_value: {}", free_port()));
        let _proxy = start(flavor, &bootstrap)
            .await
            .unwrap_or_else(|e| panic!("{flavor}: {e:#}"));
        let served = ferry_test_util::admin::poll(Duration::from_secs(10), || async move {
            backend_of(port).await.filter(|b| b == "service1")
        })
        .await;
        assert!(
            served.is_some(),
            "{flavor}: the example does not route to service1"
        );
    }
}

/// Envoy's `dynamic-config-cp` example as written, its `go-control-plane` being the
/// scripted xDS server.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_dynamic_config_cp_example_runs() {
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
        let bootstrap = example("dynamic-config-cp__envoy.yaml")
            .replace("address: go-control-plane", "address: 127.0.0.1")
            .replace(
                "port_value: 18000",
                &format!("port_value: {}", xds.addr().port()),
            )
            .replace("address: 0.0.0.0", "address: 127.0.0.1")
            .replace("port_value: 19000", &format!("port_value: {}", free_port()));
        let _proxy = start(flavor, &bootstrap)
            .await
            .unwrap_or_else(|e| panic!("{flavor}: {e:#}"));
        assert!(
            xds.wait_ack(LISTENER, "1").await.is_some(),
            "{flavor}: no LDS ACK"
        );
        assert_eq!(backend_of(port).await.as_deref(), Some("a"), "{flavor}");
    }
}

/// A listener on `port` splitting traffic between clusters `a` and `b` by weight.
fn weighted_listener(port: u16, a: u32, b: u32) -> String {
    http_listener(
        port,
        &format!(
            "route: {{weighted_clusters: {{clusters: [{{name: a, weight: {a}}}, {{name: b, weight: {b}}}]}}}}"
        ),
    )
}

/// Hitless updates: while clients send a steady stream of requests over kept-alive
/// HTTP/1.1 and HTTP/2 connections, 100 updates change route weights, modify the
/// listener in place or replace it under another name on its port, add, modify and
/// remove clusters; then the control plane goes away and comes back: no request
/// fails, and at the end the split follows the last weights.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_hundred_updates_under_load_fail_no_request() {
    use hyper_util::client::legacy::Client;
    use hyper_util::rt::TokioExecutor;
    use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
    use std::sync::Arc;

    let ba = backend::start("a").await;
    let bb = backend::start("b").await;
    let xds = XdsServer::start().await;
    let port = free_port();
    let clusters = |extra: Option<&str>, timeout: &str| {
        let mut v = vec![
            cluster(&backend_cluster("a", ba.addr()).replace(
                "connect_timeout: 1s",
                &format!("connect_timeout: {timeout}"),
            )),
            cluster(&backend_cluster("b", bb.addr())),
        ];
        if let Some(name) = extra {
            v.push(cluster(&backend_cluster(name, bb.addr())));
        }
        v
    };
    xds.set(CLUSTER, "0", clusters(None, "1s"));
    xds.set(
        LISTENER,
        "0",
        vec![listener(&weighted_listener(port, 50, 50))],
    );
    let _proxy = start_ferry(&bootstrap(xds.addr()))
        .await
        .unwrap_or_else(|e| panic!("{e:#}"));
    assert!(xds.wait_ack(LISTENER, "0").await.is_some(), "no LDS ACK");

    let stop = Arc::new(AtomicBool::new(false));
    let ok = Arc::new(AtomicU64::new(0));
    let failed = Arc::new(std::sync::Mutex::new(Vec::<String>::new()));
    let mut clients = Vec::new();
    for h2 in [false, false, true] {
        let (stop, ok, failed) = (stop.clone(), ok.clone(), failed.clone());
        clients.push(tokio::spawn(async move {
            let mut builder = Client::builder(TokioExecutor::new());
            builder.http2_only(h2);
            let client = builder.build_http::<http_body_util::Empty<bytes::Bytes>>();
            while !stop.load(Ordering::Relaxed) {
                let uri: http::Uri = format!("http://127.0.0.1:{port}/")
                    .parse()
                    .unwrap_or_else(|e| panic!("{e}"));
                let mut response = client.get(uri.clone()).await;
                // A stream the proxy's GOAWAY refused was not processed (RFC 9113
                // section 6.8): a client sends it again, as HTTP/2 clients do (hyper's
                // pool may hand out a connection whose GOAWAY has just come).
                if let Err(e) = &response {
                    if format!("{e:?}").contains("GoAway(b\"\", NO_ERROR, Remote)") {
                        response = client.get(uri).await;
                    }
                }
                match response {
                    Ok(resp) if resp.status() == 200 => {
                        let _ = http_body_util::BodyExt::collect(resp.into_body()).await;
                        ok.fetch_add(1, Ordering::Relaxed);
                    }
                    Ok(resp) => failed
                        .lock()
                        .unwrap_or_else(|e| e.into_inner())
                        .push(format!("h2={h2}: status {}", resp.status())),
                    Err(e) => failed
                        .lock()
                        .unwrap_or_else(|e| e.into_inner())
                        .push(format!("h2={h2}: {e:?}")),
                }
            }
        }));
    }
    for i in 1..=100u32 {
        let version = i.to_string();
        match i % 4 {
            // Every other listener update replaces it by one of another name on its
            // port (its socket is handed over).
            0 => {
                let name = if i % 8 == 0 { "ingress-b" } else { "ingress" };
                let l = weighted_listener(port, i % 100, 100 - i % 100)
                    .replace("name: ingress", &format!("name: {name}"));
                xds.set(LISTENER, &version, vec![listener(&l)])
            }
            1 => xds.set(CLUSTER, &version, clusters(Some("c"), "1s")),
            2 => xds.set(CLUSTER, &version, clusters(None, "1s")),
            _ => xds.set(
                CLUSTER,
                &version,
                clusters(None, if i % 8 == 3 { "2s" } else { "1s" }),
            ),
        }
        let t = if i % 4 == 0 { LISTENER } else { CLUSTER };
        assert!(
            xds.wait_ack(t, &version).await.is_some(),
            "no ACK of update {i}"
        );
    }

    // The control plane goes away mid-run: traffic goes on with the last config; it
    // comes back knowing nothing, and the proxy reconnects and converges.
    let xds_addr = xds.addr();
    xds.stop().await;
    let served = ok.load(Ordering::Relaxed);
    let going_on = ferry_test_util::admin::poll(Duration::from_secs(10), || async {
        (ok.load(Ordering::Relaxed) > served + 200).then_some(())
    })
    .await;
    assert!(going_on.is_some(), "traffic stopped with the control plane");
    let xds = XdsServer::restart_at(xds_addr).await;
    xds.set(CLUSTER, "again", clusters(None, "1s"));
    xds.set(
        LISTENER,
        "again",
        vec![listener(&weighted_listener(port, 50, 50))],
    );
    assert!(
        xds.wait_ack(LISTENER, "again").await.is_some(),
        "no ACK after the control plane came back"
    );
    stop.store(true, Ordering::Relaxed);
    for c in clients {
        let _ = c.await;
    }
    let failures = failed.lock().unwrap_or_else(|e| e.into_inner()).clone();
    assert!(
        failures.is_empty(),
        "{} failed requests: {:?}",
        failures.len(),
        &failures[..failures.len().min(5)]
    );
    assert!(
        ok.load(Ordering::Relaxed) > 100,
        "too few requests went through"
    );

    // The split follows the last weights: 80/20.
    xds.set(
        LISTENER,
        "final",
        vec![listener(&weighted_listener(port, 80, 20))],
    );
    assert!(
        xds.wait_ack(LISTENER, "final").await.is_some(),
        "no final ACK"
    );
    let mut to_a = 0;
    for _ in 0..500 {
        if backend_of(port).await.as_deref() == Some("a") {
            to_a += 1;
        }
    }
    // 500 draws at 0.8: mean 400, sd 9; ±6 sd.
    assert!((346..=454).contains(&to_a), "{to_a} of 500 to a at 80%");
}

/// The xDS client against a peer it did not write: an ADS server on Python's grpcio
/// and xds-protos (`tests/py/ads_server.py`), state of the world and delta. Clusters
/// and listeners come, are ACKed (at their version in state of the world) with the
/// server's nonce, and serve.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_independent_grpcio_ads_server_drives_ferry() {
    grpcio_ads_server_drives_ferry(Transport::Ads, "\"1\"").await;
    grpcio_ads_server_drives_ferry(Transport::DeltaAds, "\"\"").await;
}

/// The Python server drives ferry over `transport`; ACKs carry `version` (JSON).
async fn grpcio_ads_server_drives_ferry(transport: Transport, version: &str) {
    use std::io::BufRead;
    let a = backend::start("a").await;
    let port = free_port();
    let to_json = |yaml: &str| -> serde_json::Value {
        let v: serde_yaml::Value = serde_yaml::from_str(yaml).unwrap_or_else(|e| panic!("{e}"));
        serde_json::to_value(v).unwrap_or_else(|e| panic!("{e}"))
    };
    let resources = serde_json::json!({
        CLUSTER: [to_json(&backend_cluster("backend", a.addr()))],
        LISTENER: [to_json(&http_listener(port, "route: {cluster: backend}"))],
    });
    let dir = tempfile::tempdir().unwrap_or_else(|e| panic!("{e}"));
    let file = dir.path().join("resources.json");
    std::fs::write(&file, resources.to_string()).unwrap_or_else(|e| panic!("{e}"));
    let script = concat!(env!("CARGO_MANIFEST_DIR"), "/tests/py/ads_server.py");
    let mut server = std::process::Command::new("python3")
        .arg(script)
        .arg(&file)
        .stdin(std::process::Stdio::null())
        .stdout(std::process::Stdio::piped())
        .spawn()
        .unwrap_or_else(|e| panic!("python3 {script}: {e}"));
    let stdout = server.stdout.take().unwrap_or_else(|| panic!("no stdout"));
    let (lines_tx, mut lines) = tokio::sync::mpsc::unbounded_channel::<String>();
    std::thread::spawn(move || {
        for line in std::io::BufReader::new(stdout)
            .lines()
            .map_while(Result::ok)
        {
            if lines_tx.send(line).is_err() {
                return;
            }
        }
    });
    let xds_port: u16 = tokio::time::timeout(Duration::from_secs(30), lines.recv())
        .await
        .ok()
        .flatten()
        .and_then(|l| l.trim().parse().ok())
        .unwrap_or_else(|| panic!("the Python ADS server did not start"));
    let xds_addr: SocketAddr = ([127, 0, 0, 1], xds_port).into();
    let proxy = start_ferry(&bootstrap_over(xds_addr, transport)).await;
    let proxy = match proxy {
        Ok(p) => p,
        Err(e) => {
            let _ = server.kill();
            panic!("{e:#}");
        }
    };
    let served = ferry_test_util::admin::poll(Duration::from_secs(10), || async move {
        backend_of(port).await.filter(|b| b == "a")
    })
    .await;
    // The ACKs the server saw: version 1, with its nonce, no error.
    let mut acks = Vec::new();
    while acks.len() < 2 {
        let Ok(Some(line)) = tokio::time::timeout(Duration::from_secs(10), lines.recv()).await
        else {
            break;
        };
        let r: serde_json::Value = serde_json::from_str(&line).unwrap_or_default();
        if r["response_nonce"].as_str().is_some_and(|n| !n.is_empty()) {
            acks.push(format!(
                "{} {} {}",
                r["type_url"]
                    .as_str()
                    .unwrap_or_default()
                    .rsplit('.')
                    .next()
                    .unwrap_or_default(),
                r["version_info"],
                r["error"]
            ));
        }
    }
    let _ = server.kill();
    let _ = server.wait();
    drop(proxy);
    assert!(
        served.is_some(),
        "ferry does not serve what the Python server sent"
    );
    acks.sort();
    assert_eq!(
        acks,
        [
            format!("Cluster {version} null"),
            format!("Listener {version} null")
        ],
        "{transport:?}"
    );
}

/// A listener whose address is taken is refused (NACKed with its name) and keeps
/// nothing; sent again, unchanged, once the address is free, it is applied.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_listener_that_cannot_bind_is_refused_then_applied_when_sent_again() {
    let xds = XdsServer::start().await;
    let blocker = std::net::TcpListener::bind("127.0.0.1:0").unwrap_or_else(|e| panic!("{e}"));
    let port = blocker
        .local_addr()
        .unwrap_or_else(|e| panic!("{e}"))
        .port();
    let resource = listener(&http_listener(port, "direct_response: {status: 418}"));
    xds.set(CLUSTER, "1", vec![]);
    xds.set(LISTENER, "1", vec![resource.clone()]);
    let _proxy = start_ferry(&bootstrap(xds.addr()))
        .await
        .unwrap_or_else(|e| panic!("{e:#}"));
    let nack = xds
        .wait_nack(LISTENER)
        .await
        .unwrap_or_else(|| panic!("no NACK"));
    let detail = nack.error_detail.unwrap_or_default().message;
    assert!(detail.starts_with("ingress: "), "{detail}");
    drop(blocker);
    xds.set(LISTENER, "2", vec![resource]);
    assert!(
        xds.wait_ack(LISTENER, "2").await.is_some(),
        "not applied when sent again"
    );
    assert_eq!(status(port).await, 418);
}
