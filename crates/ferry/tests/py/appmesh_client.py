#!/usr/bin/env python3
"""Drives ferry's App Mesh API with boto3 (the real SDK), as an App Mesh user's script
would, and checks every response body against botocore's own model of the service
(botocore/data/appmesh/2019-01-25/service-2.json): each member is one the model
declares, of the model's type, enum and length, and every required member is there.

Usage: appmesh_client.py ENDPOINT SCENARIO
Prints one JSON line per step: what the test asserts on. Exits 1 on a response that
does not validate.
"""
import json
import os
import sys

import boto3
import botocore.config
import botocore.exceptions

ENDPOINT, SCENARIO = sys.argv[1], sys.argv[2]
PROBLEMS = []
VALIDATED = []


def check(shape, value, path):
    """Checks a raw JSON value (restJson: timestamps are numbers) against a shape: its
    members, types, enums, and the model's min/max of strings, lists and numbers."""
    t = shape.type_name
    if t == "structure":
        if not isinstance(value, dict):
            return PROBLEMS.append(f"{path}: not an object")
        for name in value:
            if name not in shape.members:
                PROBLEMS.append(f"{path}.{name}: not in the model")
        for name in shape.required_members:
            if name not in value:
                PROBLEMS.append(f"{path}.{name}: required, missing")
        for name, member in shape.members.items():
            if name in value:
                check(member, value[name], f"{path}.{name}")
    elif t == "list":
        if not isinstance(value, list):
            return PROBLEMS.append(f"{path}: not a list")
        lo, hi = shape.metadata.get("min"), shape.metadata.get("max")
        if (lo is not None and len(value) < lo) or (hi is not None and len(value) > hi):
            PROBLEMS.append(f"{path}: {len(value)} items, outside {lo}..{hi}")
        for i, v in enumerate(value):
            check(shape.member, v, f"{path}[{i}]")
    elif t == "map":
        if not isinstance(value, dict):
            PROBLEMS.append(f"{path}: not a map")
    elif t == "string":
        if not isinstance(value, str):
            return PROBLEMS.append(f"{path}: not a string")
        if shape.enum and value not in shape.enum:
            PROBLEMS.append(f"{path}: {value!r} not one of {shape.enum}")
        lo, hi = shape.metadata.get("min"), shape.metadata.get("max")
        if (lo is not None and len(value) < lo) or (hi is not None and len(value) > hi):
            PROBLEMS.append(f"{path}: length {len(value)} outside {lo}..{hi}")
    elif t in ("long", "integer"):
        if not isinstance(value, int) or isinstance(value, bool):
            return PROBLEMS.append(f"{path}: not an integer")
        lo, hi = shape.metadata.get("min"), shape.metadata.get("max")
        if (lo is not None and value < lo) or (hi is not None and value > hi):
            PROBLEMS.append(f"{path}: {value} outside {lo}..{hi}")
    elif t == "timestamp":
        if not isinstance(value, (int, float)) or isinstance(value, bool):
            PROBLEMS.append(f"{path}: not epoch seconds")
    elif t == "boolean":
        if not isinstance(value, bool):
            PROBLEMS.append(f"{path}: not a boolean")


def client(validate=True, key=None, secret=None):
    c = boto3.client(
        "appmesh",
        endpoint_url=ENDPOINT,
        region_name="local",
        aws_access_key_id=key or os.environ.get("FERRY_TEST_KEY_ID", "test"),
        aws_secret_access_key=secret or os.environ.get("FERRY_TEST_SECRET", "test"),
        config=botocore.config.Config(
            parameter_validation=validate, retries={"max_attempts": 1}
        ),
    )
    model = c.meta.service_model

    def after_call(http_response, model, **_):
        if http_response.status_code >= 300:
            return
        body = json.loads(http_response.content or b"{}")
        output = model.output_shape
        payload = output.serialization.get("payload")
        shape = output.members[payload] if payload else output
        check(shape, body, model.name)
        VALIDATED.append(model.name)

    c.meta.events.register(f"after-call.{model.service_id.hyphenize()}", after_call)
    return c


def error(call):
    try:
        call()
        return None
    except botocore.exceptions.ClientError as e:
        return [e.response["Error"]["Code"], e.response["ResponseMetadata"]["HTTPStatusCode"]]


def raw(method, path, body):
    """A request the SDK cannot make (it refuses unknown members): its error code and
    status, read as botocore reads them (the code from x-amzn-ErrorType)."""
    import urllib.error
    import urllib.request

    req = urllib.request.Request(ENDPOINT + path, data=body.encode(), method=method)
    req.add_header("content-type", "application/json")
    try:
        urllib.request.urlopen(req)
        return None
    except urllib.error.HTTPError as e:
        json.loads(e.read())["message"]
        return [e.headers["x-amzn-ErrorType"].split(":")[0], e.code]


def out(**kv):
    print(json.dumps(kv, sort_keys=True), flush=True)


def meshes():
    am = client()
    m = am.create_mesh(
        meshName="m1",
        spec={"egressFilter": {"type": "ALLOW_ALL"}},
        tags=[{"key": "team", "value": "payments"}],
    )["mesh"]
    out(
        step="create",
        name=m["meshName"],
        status=m["status"]["status"],
        version=m["metadata"]["version"],
        arn=m["metadata"]["arn"],
        egress=m["spec"]["egressFilter"]["type"],
    )
    out(step="create again", error=error(lambda: am.create_mesh(meshName="m1")))
    first = am.create_mesh(meshName="t1", clientToken="token-1")["mesh"]
    again = am.create_mesh(meshName="t1", clientToken="token-1")["mesh"]
    out(step="client token", same=first["metadata"]["uid"] == again["metadata"]["uid"])
    d = am.describe_mesh(meshName="m1")["mesh"]
    out(step="describe", name=d["meshName"], egress=d["spec"]["egressFilter"]["type"])
    u = am.update_mesh(meshName="m1", spec={"egressFilter": {"type": "DROP_ALL"}})["mesh"]
    out(step="update", version=u["metadata"]["version"], egress=u["spec"]["egressFilter"]["type"])
    # An update sent again with its client token is answered, not applied again.
    spec = {"egressFilter": {"type": "ALLOW_ALL"}}
    u1 = am.update_mesh(meshName="m1", spec=spec, clientToken="update-1")["mesh"]
    u2 = am.update_mesh(meshName="m1", spec=spec, clientToken="update-1")["mesh"]
    out(step="update token", versions=[u1["metadata"]["version"], u2["metadata"]["version"]])
    out(step="bad token", error=error(lambda: am.create_mesh(meshName="x", clientToken="not a token!")))
    out(step="other owner", error=error(lambda: am.describe_mesh(meshName="m1", meshOwner="123456789012")))
    out(step="own owner", name=am.describe_mesh(meshName="m1", meshOwner="000000000000")["mesh"]["meshName"])
    out(
        step="duplicate tag keys",
        error=error(lambda: am.create_mesh(meshName="x", tags=[{"key": "a", "value": "1"}, {"key": "a", "value": "2"}])),
    )
    for i in range(2, 6):
        am.create_mesh(meshName=f"m{i}")
    names, pages, token = [], 0, None
    while True:
        kw = {"limit": 2}
        if token:
            kw["nextToken"] = token
        page = am.list_meshes(**kw)
        pages += 1
        names += [m["meshName"] for m in page["meshes"]]
        token = page.get("nextToken")
        if not token:
            break
    out(step="list", names=names, pages=pages)
    out(step="describe missing", error=error(lambda: am.describe_mesh(meshName="nope")))
    loose = client(validate=False)
    out(
        step="unknown field",
        error=raw("PUT", "/v20190125/meshes", '{"meshName": "bad", "spec": {"egresFilter": {}}}'),
    )
    out(step="malformed json", error=raw("PUT", "/v20190125/meshes", '{"meshName": '))
    out(
        step="bad enum",
        error=error(lambda: loose.create_mesh(meshName="bad", spec={"egressFilter": {"type": "SOME"}})),
    )
    out(step="empty name", error=error(lambda: loose.create_mesh(meshName="")))
    out(step="bad limit", error=error(lambda: loose.list_meshes(limit=1000)))
    dl = am.delete_mesh(meshName="m1")["mesh"]
    out(step="delete", status=dl["status"]["status"])
    out(step="describe deleted", error=error(lambda: am.describe_mesh(meshName="m1")))
    out(step="validated against botocore's model", operations=sorted(set(VALIDATED)))


def resources():
    am = client()
    loose = client(validate=False)
    am.create_mesh(meshName="app")
    router_spec = {"listeners": [{"portMapping": {"port": 8080, "protocol": "http"}}]}
    r = am.create_virtual_router(meshName="app", virtualRouterName="r", spec=router_spec)
    out(step="router", name=r["virtualRouter"]["virtualRouterName"], arn=r["virtualRouter"]["metadata"]["arn"])
    provider = {"provider": {"virtualRouter": {"virtualRouterName": "r"}}}
    vs = am.create_virtual_service(
        meshName="app", virtualServiceName="color.app.local", spec=provider
    )["virtualService"]
    out(step="service", name=vs["virtualServiceName"], mesh=vs["meshName"], status=vs["status"]["status"])
    dangling = {"provider": {"virtualRouter": {"virtualRouterName": "nope"}}}
    out(
        step="dangling provider",
        error=error(lambda: am.create_virtual_service(meshName="app", virtualServiceName="x", spec=dangling)),
    )
    out(
        step="no such mesh",
        error=error(lambda: am.create_virtual_router(meshName="nomesh", virtualRouterName="r", spec=router_spec)),
    )
    port0 = {"listeners": [{"portMapping": {"port": 0, "protocol": "http"}}]}
    out(step="port 0", error=error(lambda: loose.create_virtual_router(meshName="app", virtualRouterName="r2", spec=port0)))
    ftp = {"listeners": [{"portMapping": {"port": 21, "protocol": "ftp"}}]}
    out(step="bad protocol", error=error(lambda: loose.create_virtual_router(meshName="app", virtualRouterName="r2", spec=ftp)))
    am.create_virtual_router(meshName="app", virtualRouterName="r2", spec=router_spec)
    names = [x["virtualRouterName"] for x in am.list_virtual_routers(meshName="app")["virtualRouters"]]
    out(step="list routers", names=names)
    names = [x["virtualServiceName"] for x in am.list_virtual_services(meshName="app")["virtualServices"]]
    out(step="list services", names=names)
    d = am.describe_virtual_service(meshName="app", virtualServiceName="color.app.local")["virtualService"]
    out(step="describe service", router=d["spec"]["provider"]["virtualRouter"]["virtualRouterName"])
    out(step="delete router in use", error=error(lambda: am.delete_virtual_router(meshName="app", virtualRouterName="r")))
    out(step="delete mesh in use", error=error(lambda: am.delete_mesh(meshName="app")))
    arn = vs["metadata"]["arn"]
    am.tag_resource(resourceArn=arn, tags=[{"key": "team", "value": "colors"}, {"key": "env", "value": "dev"}])
    tags = am.list_tags_for_resource(resourceArn=arn)["tags"]
    out(step="tags", tags=sorted((t["key"], t["value"]) for t in tags))
    many = [{"key": f"k{i}", "value": "v"} for i in range(49)]
    out(step="too many tags", error=error(lambda: loose.tag_resource(resourceArn=arn, tags=many)))
    am.untag_resource(resourceArn=arn, tagKeys=["env"])
    tags = am.list_tags_for_resource(resourceArn=arn)["tags"]
    out(step="untagged", tags=[(t["key"], t["value"]) for t in tags])
    moved = {"provider": {"virtualRouter": {"virtualRouterName": "r2"}}}
    u = am.update_virtual_service(meshName="app", virtualServiceName="color.app.local", spec=moved)["virtualService"]
    out(step="update service", version=u["metadata"]["version"], router=u["spec"]["provider"]["virtualRouter"]["virtualRouterName"])
    deleted = am.delete_virtual_router(meshName="app", virtualRouterName="r")["virtualRouter"]
    out(step="delete router", status=deleted["status"]["status"])
    am.delete_virtual_service(meshName="app", virtualServiceName="color.app.local")
    am.delete_virtual_router(meshName="app", virtualRouterName="r2")
    out(step="delete mesh", status=am.delete_mesh(meshName="app")["mesh"]["status"]["status"])
    out(step="validated against botocore's model", operations=sorted(set(VALIDATED)))


NODE_SPEC = {
    "listeners": [
        {
            "portMapping": {"port": 8080, "protocol": "http"},
            "healthCheck": {
                "protocol": "http",
                "path": "/ping",
                "healthyThreshold": 2,
                "unhealthyThreshold": 2,
                "timeoutMillis": 2000,
                "intervalMillis": 5000,
            },
            "outlierDetection": {
                "maxServerErrors": 5,
                "maxEjectionPercent": 50,
                "interval": {"value": 10, "unit": "s"},
                "baseEjectionDuration": {"value": 30, "unit": "s"},
            },
            "connectionPool": {"http": {"maxConnections": 10, "maxPendingRequests": 5}},
            "timeout": {"http": {"perRequest": {"value": 5, "unit": "s"}}},
            "tls": {
                "mode": "STRICT",
                "certificate": {
                    "file": {"certificateChain": "/certs/chain.pem", "privateKey": "/certs/key.pem"}
                },
            },
        }
    ],
    "serviceDiscovery": {
        "dns": {"hostname": "colorteller-red.default.svc.cluster.local", "responseType": "ENDPOINTS"}
    },
    "backends": [{"virtualService": {"virtualServiceName": "colorteller.app.local"}}],
    "backendDefaults": {
        "clientPolicy": {
            "tls": {"validation": {"trust": {"file": {"certificateChain": "/certs/ca.pem"}}}}
        }
    },
    "logging": {"accessLog": {"file": {"path": "/dev/stdout", "format": {"text": "%START_TIME%"}}}},
}


def nodes():
    am = client()
    loose = client(validate=False)
    am.create_mesh(meshName="app")
    n = am.create_virtual_node(meshName="app", virtualNodeName="red", spec=NODE_SPEC)["virtualNode"]
    out(step="node", name=n["virtualNodeName"], spec_round_trips=n["spec"] == NODE_SPEC)
    d = am.describe_virtual_node(meshName="app", virtualNodeName="red")["virtualNode"]
    out(step="describe node", spec_round_trips=d["spec"] == NODE_SPEC)
    import copy

    def bad(edit):
        spec = copy.deepcopy(NODE_SPEC)
        edit(spec)
        return error(lambda: loose.create_virtual_node(meshName="app", virtualNodeName="bad", spec=spec))

    out(step="healthy threshold 1", error=bad(lambda s: s["listeners"][0]["healthCheck"].update(healthyThreshold=1)))
    out(step="interval 1s", error=bad(lambda s: s["listeners"][0]["healthCheck"].update(intervalMillis=1000)))
    out(step="ejection 101%", error=bad(lambda s: s["listeners"][0]["outlierDetection"].update(maxEjectionPercent=101)))
    out(
        step="two discoveries",
        error=bad(lambda s: s["serviceDiscovery"].update(awsCloudMap={"namespaceName": "n", "serviceName": "s"})),
    )
    out(step="tls mode", error=bad(lambda s: s["listeners"][0]["tls"].update(mode="SOMETIMES")))
    unknown = copy.deepcopy(NODE_SPEC)
    unknown["listeners"][0]["portMaping"] = {}
    body = json.dumps({"virtualNodeName": "bad", "spec": unknown})
    out(step="unknown listener field", error=raw("PUT", "/v20190125/meshes/app/virtualNodes", body))
    provider = {"provider": {"virtualNode": {"virtualNodeName": "red"}}}
    am.create_virtual_service(meshName="app", virtualServiceName="colorteller.app.local", spec=provider)
    out(step="delete node in use", error=error(lambda: am.delete_virtual_node(meshName="app", virtualNodeName="red")))
    spec = copy.deepcopy(NODE_SPEC)
    spec["listeners"][0]["portMapping"]["port"] = 9090
    u = am.update_virtual_node(meshName="app", virtualNodeName="red", spec=spec)["virtualNode"]
    out(step="update node", version=u["metadata"]["version"], port=u["spec"]["listeners"][0]["portMapping"]["port"])
    names = [x["virtualNodeName"] for x in am.list_virtual_nodes(meshName="app")["virtualNodes"]]
    out(step="list nodes", names=names)
    am.delete_virtual_service(meshName="app", virtualServiceName="colorteller.app.local")
    dn = am.delete_virtual_node(meshName="app", virtualNodeName="red")["virtualNode"]
    out(step="delete node", status=dn["status"]["status"])
    out(step="validated against botocore's model", operations=sorted(set(VALIDATED)))


ROUTE_SPEC = {
    "priority": 10,
    "httpRoute": {
        "match": {"prefix": "/", "headers": [{"name": "x-canary", "match": {"exact": "yes"}}]},
        "action": {
            "weightedTargets": [
                {"virtualNode": "blue", "weight": 90},
                {"virtualNode": "green", "weight": 10},
            ]
        },
        "retryPolicy": {
            "maxRetries": 2,
            "perRetryTimeout": {"value": 1, "unit": "s"},
            "httpRetryEvents": ["server-error", "gateway-error"],
            "tcpRetryEvents": ["connection-error"],
        },
        "timeout": {"perRequest": {"value": 15, "unit": "s"}},
    },
}


def routes():
    import copy

    am = client()
    loose = client(validate=False)
    am.create_mesh(meshName="app")
    node = {"listeners": [{"portMapping": {"port": 8080, "protocol": "http"}}]}
    for n in ["blue", "green"]:
        am.create_virtual_node(meshName="app", virtualNodeName=n, spec=node)
    router = {"listeners": [{"portMapping": {"port": 8080, "protocol": "http"}}]}
    am.create_virtual_router(meshName="app", virtualRouterName="r", spec=router)
    r = am.create_route(meshName="app", virtualRouterName="r", routeName="canary", spec=ROUTE_SPEC)["route"]
    out(
        step="route",
        arn=r["metadata"]["arn"],
        router=r["virtualRouterName"],
        spec_round_trips=r["spec"] == ROUTE_SPEC,
    )

    def bad(edit, validate=False):
        spec = copy.deepcopy(ROUTE_SPEC)
        edit(spec)
        c = am if validate else loose
        return error(lambda: c.create_route(meshName="app", virtualRouterName="r", routeName="bad", spec=spec))

    targets = lambda s: s["httpRoute"]["action"]["weightedTargets"]  # noqa: E731
    out(step="target missing", error=bad(lambda s: targets(s).append({"virtualNode": "nope", "weight": 1})))
    out(step="11 targets", error=bad(lambda s: targets(s).extend([{"virtualNode": "blue", "weight": 0}] * 9)))
    out(step="weight 101", error=bad(lambda s: targets(s)[0].update(weight=101)))
    out(step="priority 1001", error=bad(lambda s: s.update(priority=1001)))
    out(
        step="retry without events",
        error=bad(lambda s: s["httpRoute"]["retryPolicy"].pop("httpRetryEvents") and s["httpRoute"]["retryPolicy"].pop("tcpRetryEvents")),
    )
    out(step="bad retry event", error=bad(lambda s: s["httpRoute"]["retryPolicy"].update(httpRetryEvents=["sometimes"])))
    out(step="prefix without /", error=bad(lambda s: s["httpRoute"]["match"].update(prefix="api")))
    out(
        step="empty range",
        error=bad(lambda s: s["httpRoute"]["match"].update(headers=[{"name": "x-n", "match": {"range": {"start": 5, "end": 5}}}])),
    )
    out(step="two routes", error=bad(lambda s: s.update(tcpRoute={"action": {"weightedTargets": [{"virtualNode": "blue", "weight": 1}]}})))
    out(
        step="no such router",
        error=error(lambda: am.create_route(meshName="app", virtualRouterName="nor", routeName="x", spec=ROUTE_SPEC)),
    )
    listed = am.list_routes(meshName="app", virtualRouterName="r")["routes"]
    out(step="list routes", routes=[(x["routeName"], x["virtualRouterName"]) for x in listed])
    out(step="delete target in use", error=error(lambda: am.delete_virtual_node(meshName="app", virtualNodeName="blue")))
    out(step="delete router with routes", error=error(lambda: am.delete_virtual_router(meshName="app", virtualRouterName="r")))
    am.tag_resource(resourceArn=r["metadata"]["arn"], tags=[{"key": "release", "value": "canary"}])
    tags = am.list_tags_for_resource(resourceArn=r["metadata"]["arn"])["tags"]
    out(step="route tags", tags=[(t["key"], t["value"]) for t in tags])
    moved = copy.deepcopy(ROUTE_SPEC)
    targets(moved)[0]["weight"], targets(moved)[1]["weight"] = 50, 50
    u = am.update_route(meshName="app", virtualRouterName="r", routeName="canary", spec=moved)["route"]
    out(step="update route", version=u["metadata"]["version"], weights=[t["weight"] for t in targets(u["spec"])])
    d = am.describe_route(meshName="app", virtualRouterName="r", routeName="canary")["route"]
    out(step="describe route", weights=[t["weight"] for t in targets(d["spec"])])
    dr = am.delete_route(meshName="app", virtualRouterName="r", routeName="canary")["route"]
    out(step="delete route", status=dr["status"]["status"])
    am.delete_virtual_router(meshName="app", virtualRouterName="r")
    out(step="validated against botocore's model", operations=sorted(set(VALIDATED)))


GATEWAY_SPEC = {
    "listeners": [
        {
            "portMapping": {"port": 8080, "protocol": "http"},
            "healthCheck": {
                "protocol": "http",
                "path": "/ping",
                "healthyThreshold": 2,
                "unhealthyThreshold": 3,
                "timeoutMillis": 2000,
                "intervalMillis": 5000,
            },
            "connectionPool": {"http": {"maxConnections": 100}},
        }
    ],
    "logging": {"accessLog": {"file": {"path": "/dev/stdout"}}},
}

GATEWAY_ROUTE_SPEC = {
    "priority": 5,
    "httpRoute": {
        "match": {"prefix": "/web/", "hostname": {"suffix": ".example.com"}},
        "action": {
            "target": {"virtualService": {"virtualServiceName": "web.app.local"}},
            "rewrite": {"prefix": {"value": "/"}, "hostname": {"defaultTargetHostname": "ENABLED"}},
        },
    },
}


def gateways():
    import copy

    am = client()
    loose = client(validate=False)
    am.create_mesh(meshName="app")
    am.create_virtual_node(
        meshName="app", virtualNodeName="web", spec={"listeners": [{"portMapping": {"port": 80, "protocol": "http"}}]}
    )
    am.create_virtual_service(
        meshName="app", virtualServiceName="web.app.local", spec={"provider": {"virtualNode": {"virtualNodeName": "web"}}}
    )
    g = am.create_virtual_gateway(meshName="app", virtualGatewayName="ingress", spec=GATEWAY_SPEC)["virtualGateway"]
    out(step="gateway", name=g["virtualGatewayName"], spec_round_trips=g["spec"] == GATEWAY_SPEC)
    tcp = copy.deepcopy(GATEWAY_SPEC)
    tcp["listeners"][0]["portMapping"]["protocol"] = "tcp"
    out(step="tcp gateway", error=error(lambda: loose.create_virtual_gateway(meshName="app", virtualGatewayName="g2", spec=tcp)))
    out(
        step="no listener",
        error=error(lambda: loose.create_virtual_gateway(meshName="app", virtualGatewayName="g2", spec={"listeners": []})),
    )
    r = am.create_gateway_route(
        meshName="app", virtualGatewayName="ingress", gatewayRouteName="web", spec=GATEWAY_ROUTE_SPEC
    )["gatewayRoute"]
    out(
        step="gateway route",
        arn=r["metadata"]["arn"],
        gateway=r["virtualGatewayName"],
        spec_round_trips=r["spec"] == GATEWAY_ROUTE_SPEC,
    )

    def bad(edit):
        spec = copy.deepcopy(GATEWAY_ROUTE_SPEC)
        edit(spec)
        return error(
            lambda: loose.create_gateway_route(meshName="app", virtualGatewayName="ingress", gatewayRouteName="bad", spec=spec)
        )

    action = lambda s: s["httpRoute"]["action"]  # noqa: E731
    out(step="target missing", error=bad(lambda s: action(s)["target"]["virtualService"].update(virtualServiceName="nope")))
    out(step="prefix rewrite value", error=bad(lambda s: action(s)["rewrite"]["prefix"].update(value="/v2")))
    out(step="two hostname matches", error=bad(lambda s: s["httpRoute"]["match"]["hostname"].update(exact="a.example.com")))
    routes = am.list_gateway_routes(meshName="app", virtualGatewayName="ingress")["gatewayRoutes"]
    out(step="list gateway routes", routes=[(x["gatewayRouteName"], x["virtualGatewayName"]) for x in routes])
    gateways_ = am.list_virtual_gateways(meshName="app")["virtualGateways"]
    out(step="list gateways", names=[x["virtualGatewayName"] for x in gateways_])
    out(step="delete target in use", error=error(lambda: am.delete_virtual_service(meshName="app", virtualServiceName="web.app.local")))
    out(step="delete gateway with routes", error=error(lambda: am.delete_virtual_gateway(meshName="app", virtualGatewayName="ingress")))
    d = am.describe_gateway_route(meshName="app", virtualGatewayName="ingress", gatewayRouteName="web")["gatewayRoute"]
    out(step="describe gateway route", priority=d["spec"]["priority"])
    moved = copy.deepcopy(GATEWAY_ROUTE_SPEC)
    moved["priority"] = 7
    u = am.update_gateway_route(meshName="app", virtualGatewayName="ingress", gatewayRouteName="web", spec=moved)["gatewayRoute"]
    out(step="update gateway route", version=u["metadata"]["version"], priority=u["spec"]["priority"])
    dg = am.describe_virtual_gateway(meshName="app", virtualGatewayName="ingress")["virtualGateway"]
    gspec = copy.deepcopy(dg["spec"])
    gspec["listeners"][0]["portMapping"]["port"] = 9090
    ug = am.update_virtual_gateway(meshName="app", virtualGatewayName="ingress", spec=gspec)["virtualGateway"]
    out(step="update gateway", version=ug["metadata"]["version"])
    am.delete_gateway_route(meshName="app", virtualGatewayName="ingress", gatewayRouteName="web")
    out(step="delete gateway", status=am.delete_virtual_gateway(meshName="app", virtualGatewayName="ingress")["virtualGateway"]["status"]["status"])
    out(step="validated against botocore's model", operations=sorted(set(VALIDATED)))


def listing():
    am = client()
    names = [m["meshName"] for m in am.list_meshes()["meshes"]]
    out(step="list", names=names)


def auth():
    """Against a control plane with credentials configured (FERRY_TEST_KEY_ID and
    FERRY_TEST_SECRET are among them): signed requests pass, others get App Mesh's
    403s."""
    am = client()
    am.create_mesh(meshName="signed", spec={"egressFilter": {"type": "ALLOW_ALL"}})
    am.tag_resource(
        resourceArn=am.describe_mesh(meshName="signed")["mesh"]["metadata"]["arn"],
        tags=[{"key": "a b", "value": "c/d"}],
    )
    out(step="signed", names=[m["meshName"] for m in am.list_meshes(limit=5)["meshes"]])
    out(step="wrong secret", error=error(lambda: client(secret="wrong").list_meshes()))
    out(step="unknown key", error=error(lambda: client(key="AKIDUNKNOWN").list_meshes()))
    out(step="unsigned", error=raw("GET", "/v20190125/meshes", ""))
    out(step="swapped body", **swapped_body())


def swapped_body():
    """A request signed by botocore, sent as signed (taken), then again with another
    body and the first body's hash claimed in X-Amz-Content-Sha256 (refused)."""
    import hashlib
    import urllib.error
    import urllib.request

    from botocore.auth import SigV4Auth
    from botocore.awsrequest import AWSRequest
    from botocore.credentials import Credentials

    body = json.dumps({"meshName": "as-signed"})
    req = AWSRequest(
        method="PUT",
        url=ENDPOINT + "/v20190125/meshes",
        data=body,
        headers={"content-type": "application/json"},
    )
    creds = Credentials(os.environ["FERRY_TEST_KEY_ID"], os.environ["FERRY_TEST_SECRET"])
    SigV4Auth(creds, "appmesh", "local").add_auth(req)
    headers = dict(req.headers.items())

    def send(data, extra):
        r = urllib.request.Request(
            ENDPOINT + "/v20190125/meshes", data=data.encode(), method="PUT"
        )
        for k, v in {**headers, **extra}.items():
            r.add_header(k, v)
        try:
            urllib.request.urlopen(r)
            return None
        except urllib.error.HTTPError as e:
            return [e.headers["x-amzn-ErrorType"].split(":")[0], e.code]

    claimed = {"X-Amz-Content-Sha256": hashlib.sha256(body.encode()).hexdigest()}
    return {
        "as_signed": send(body, {}),
        "swapped": send(json.dumps({"meshName": "forged"}), claimed),
    }


def stream():
    """Creates meshes w0, w1, ... until the control plane goes away, printing each
    acknowledged create as it is acknowledged."""
    am = client()
    for i in range(100000):
        try:
            am.create_mesh(meshName=f"w{i}")
        except Exception:
            return
        out(step="acknowledged", name=f"w{i}")


{"meshes": meshes, "resources": resources, "nodes": nodes, "routes": routes, "gateways": gateways, "list": listing, "auth": auth, "stream": stream}[SCENARIO]()
if PROBLEMS:
    print(json.dumps({"problems": PROBLEMS}), flush=True)
    sys.exit(1)
