"""Configuration of every target, generated per scenario.

Envoy and ferry get the *same* Envoy v3 bootstrap (written as JSON, which is YAML),
except for what ferry does not implement yet and refuses (see ENVOY_ONLY below);
haproxy and nginx get the equivalent from bench/templates/.

Everything listens on 127.0.0.1 only.
"""

from __future__ import annotations

import json
import re
from pathlib import Path
from string import Template

HERE = Path(__file__).resolve().parent
TEMPLATES = HERE / "templates"

HCM_TYPE = "type.googleapis.com/envoy.extensions.filters.network.http_connection_manager.v3.HttpConnectionManager"
ROUTER_TYPE = "type.googleapis.com/envoy.extensions.filters.http.router.v3.Router"
UPSTREAM_HTTP_TYPE = "type.googleapis.com/envoy.extensions.upstreams.http.v3.HttpProtocolOptions"

# What Envoy's config has and ferry's does not (ferry refuses these fields today): now
# nothing. Both follow Envoy's benchmarking FAQ (generate_request_id: false, no access
# log, circuit breaker thresholds raised to 1e9, router dynamic_stats: false, one worker
# per core given).
ENVOY_ONLY: list[str] = []

BIG = 1_000_000_000


def _cluster(name: str, port: int, *, h2: bool = False, for_envoy: bool, raise_limits: bool = True) -> dict:
    cluster = {
        "name": name,
        "type": "STATIC",
        "connect_timeout": "1s",
        "lb_policy": "ROUND_ROBIN",
        "load_assignment": {
            "cluster_name": name,
            "endpoints": [
                {"lb_endpoints": [{"endpoint": {"address": {"socket_address": {"address": "127.0.0.1", "port_value": port}}}}]}
            ],
        },
    }
    if h2:
        cluster["typed_extension_protocol_options"] = {
            "envoy.extensions.upstreams.http.v3.HttpProtocolOptions": {
                "@type": UPSTREAM_HTTP_TYPE,
                "explicit_http_config": {"http2_protocol_options": {}},
            }
        }
    if raise_limits:
        limits = {"max_connections": BIG, "max_pending_requests": BIG, "max_requests": BIG, "max_retries": BIG}
        cluster["circuit_breakers"] = {
            "thresholds": [dict(priority="DEFAULT", **limits), dict(priority="HIGH", **limits)]
        }
    return cluster


def _hcm(routes: list[dict], *, for_envoy: bool) -> dict:
    router: dict = {"@type": ROUTER_TYPE}
    router["dynamic_stats"] = False
    return {
        "name": "envoy.filters.network.http_connection_manager",
        "typed_config": {
            "@type": HCM_TYPE,
            "stat_prefix": "ingress_http",
            "codec_type": "AUTO",
            "generate_request_id": False,
            "route_config": {
                "name": "local_route",
                "virtual_hosts": [{"name": "all", "domains": ["*"], "routes": routes}],
            },
            "http_filters": [{"name": "envoy.filters.http.router", "typed_config": router}],
        },
    }


def _bootstrap(listen_port: int, admin_port: int, routes: list[dict], clusters: list[dict], *, for_envoy: bool) -> dict:
    return {
        "admin": {"address": {"socket_address": {"address": "127.0.0.1", "port_value": admin_port}}},
        "static_resources": {
            "listeners": [
                {
                    "name": "ingress",
                    "address": {"socket_address": {"address": "127.0.0.1", "port_value": listen_port}},
                    "filter_chains": [{"filters": [_hcm(routes, for_envoy=for_envoy)]}],
                }
            ],
            "clusters": clusters,
        },
    }


def _route(prefix: str, cluster: str) -> dict:
    return {"match": {"prefix": prefix}, "route": {"cluster": cluster}}


def envoy_main(listen_port: int, admin_port: int, backend_port: int, *, for_envoy: bool) -> str:
    """Scenarios 1-5: `/bench.Echo/` to an HTTP/2 cluster (gRPC), the rest to HTTP/1.1."""
    routes = [_route("/bench.Echo/", "backend_h2"), _route("/", "backend")]
    clusters = [
        _cluster("backend", backend_port, for_envoy=for_envoy),
        _cluster("backend_h2", backend_port, h2=True, for_envoy=for_envoy),
    ]
    return json.dumps(_bootstrap(listen_port, admin_port, routes, clusters, for_envoy=for_envoy), indent=1)


def envoy_observed(listen_port: int, admin_port: int, backend_port: int, *, traced: bool) -> str:
    """The tracing scenario: the main config with request ids (tracing samples on them)
    and, when `traced`, HCM tracing to a Zipkin collector at 1% random sampling. The
    collector is the bench backend (it answers any POST)."""
    boot = json.loads(envoy_main(listen_port, admin_port, backend_port, for_envoy=True))
    hcm = boot["static_resources"]["listeners"][0]["filter_chains"][0]["filters"][0]["typed_config"]
    hcm["generate_request_id"] = True
    if traced:
        hcm["tracing"] = {
            "random_sampling": {"value": 1},
            "provider": {
                "name": "envoy.tracers.zipkin",
                "typed_config": {
                    "@type": "type.googleapis.com/envoy.config.trace.v3.ZipkinConfig",
                    "collector_cluster": "zipkin",
                    "collector_endpoint": "/api/v2/spans",
                    "collector_endpoint_version": "HTTP_JSON",
                },
            },
        }
        boot["static_resources"]["clusters"].append(_cluster("zipkin", backend_port, for_envoy=True))
    return json.dumps(boot, indent=1)


def envoy_routes(listen_port: int, admin_port: int, backend_port: int, n_routes: int, n_clusters: int, *, for_envoy: bool) -> str:
    """Scenario 6: routes `/r<i>/` → cluster `c<i mod n_clusters>`, all to the backend."""
    routes = [_route(f"/r{i}/", f"c{i % n_clusters}") for i in range(n_routes)]
    clusters = [_cluster(f"c{j}", backend_port, for_envoy=for_envoy) for j in range(n_clusters)]
    return json.dumps(_bootstrap(listen_port, admin_port, routes, clusters, for_envoy=for_envoy))


def envoy_clusters(listen_port: int, admin_port: int, backend_port: int, n_clusters: int, *, for_envoy: bool) -> str:
    """Scenario 7, RSS per cluster: n clusters as a user would write them (default
    limits), one route `/` → c0."""
    clusters = [_cluster(f"c{j}", backend_port, for_envoy=for_envoy, raise_limits=False) for j in range(n_clusters)]
    return json.dumps(_bootstrap(listen_port, admin_port, [_route("/", "c0")], clusters, for_envoy=for_envoy))


def seed(seed_text: str, listen_port: int, admin_port: int, backend_port: int) -> str:
    """Scenario 7: the founding document's v2 configuration, as written, with its
    addresses moved to loopback: listener :80 → listen_port, admin :8081 →
    admin_port, the endpoint 127.0.0.1:8080 → the backend."""
    text = seed_text
    for old, new in [
        (r"port_value: 80\n", f"port_value: {listen_port}\n"),
        (r"port_value: 8080\n", f"port_value: {backend_port}\n"),
        (r"port_value: 8081\n", f"port_value: {admin_port}\n"),
    ]:
        text, n = re.subn(old, new, text)
        if n != 1:
            raise ValueError(f"seed config: expected one {old!r}, found {n}")
    text = text.replace("address: 0.0.0.0", "address: 127.0.0.1")
    if "0.0.0.0" in text:
        raise ValueError("seed config: an address was not moved to loopback")
    return text


def seed_v3(seed_text: str, listen_port: int, admin_port: int, backend_port: int) -> str:
    """The same configuration for Envoy 1.40, which no longer reads v2 type URLs: the
    v3 spelling of the HCM and router types and names, upper-case enum values;
    nothing else changes."""
    text = seed(seed_text, listen_port, admin_port, backend_port)
    for old, new in [
        ("envoy.config.filter.network.http_connection_manager.v2.HttpConnectionManager", HCM_TYPE.split("/", 1)[1]),
        ("name: envoy.http_connection_manager", "name: envoy.filters.network.http_connection_manager"),
        ("name: envoy.router", "name: envoy.filters.http.router"),
        ("typed_config: {}", 'typed_config: {"@type": "' + ROUTER_TYPE + '"}'),
        ("codec_type: auto", "codec_type: AUTO"),
        ("type: strict_dns", "type: STRICT_DNS"),
        ("lb_policy: round_robin", "lb_policy: ROUND_ROBIN"),
    ]:
        if text.count(old) != 1:
            raise ValueError(f"seed config: expected one {old!r}")
        text = text.replace(old, new)
    return text


# --- haproxy and nginx -------------------------------------------------------


def _render(name: str, **values) -> str:
    return Template((TEMPLATES / name).read_text()).substitute(**values)


def haproxy(kind: str, *, workers: int, h1_port: int, backend_port: int, n_routes: int = 0, n_clusters: int = 1,
            map_path: str = "") -> str:
    """kind: main | routes | seed | clusters."""
    if kind == "main":
        return _render("haproxy-main.cfg", workers=workers, port=h1_port, backend_port=backend_port)
    if kind == "seed":
        return _render("haproxy-seed.cfg", workers=workers, port=h1_port, backend_port=backend_port)
    backends = "\n".join(
        f"backend c{j}\n    server s1 127.0.0.1:{backend_port}\n" for j in range(n_clusters)
    )
    if kind == "routes":
        return _render("haproxy-routes.cfg", workers=workers, port=h1_port, map_path=map_path, backends=backends)
    if kind == "clusters":
        return _render("haproxy-clusters.cfg", workers=workers, port=h1_port, backends=backends)
    raise ValueError(kind)


def haproxy_route_map(n_routes: int, n_clusters: int) -> str:
    return "".join(f"/r{i}/ c{i % n_clusters}\n" for i in range(n_routes))


def nginx(kind: str, *, workers: int, prefix: str, h1_port: int, h2_port: int, backend_port: int,
          n_routes: int = 0, n_clusters: int = 1) -> str:
    """kind: main | routes | seed | clusters."""
    common = dict(workers=workers, prefix=prefix, port=h1_port, h2_port=h2_port, backend_port=backend_port)
    if kind == "main":
        return _render("nginx-main.conf", **common)
    if kind == "seed":
        return _render("nginx-seed.conf", **common)
    upstreams = "\n".join(
        f"    upstream c{j} {{ server 127.0.0.1:{backend_port}; keepalive 16; keepalive_requests 100000000; }}"
        for j in range(n_clusters)
    )
    if kind == "routes":
        locations = "\n".join(
            f"        location /r{i}/ {{ proxy_pass http://c{i % n_clusters}; }}" for i in range(n_routes)
        )
        return _render("nginx-routes.conf", upstreams=upstreams, locations=locations, **common)
    if kind == "clusters":
        return _render("nginx-clusters.conf", upstreams=upstreams, **common)
    raise ValueError(kind)
