#!/usr/bin/env python3
"""An ADS server (state of the world and delta) on grpcio and xds-protos, sharing no
code with ferry: the independent peer of ferry's xDS client in crates/ferry/tests/xds.rs.

Usage: ads_server.py RESOURCES.json
RESOURCES.json: {"<type url>": [<resource in Envoy's JSON mapping>, ...], ...}
Prints the port it listens on (127.0.0.1), then one JSON line per request received:
{"delta", "type_url", "version_info", "response_nonce", "resource_names", "error"}
(delta: "resource_names" are those subscribed, "version_info" is empty). Each type is
answered once, at version "1", when first asked for.
"""
import json
import sys
import threading
from concurrent import futures

import grpc
from google.protobuf import any_pb2, json_format
from envoy.service.discovery.v3 import ads_pb2_grpc, discovery_pb2
# Message types the resources use, registered in the default pool.
from envoy.config.cluster.v3 import cluster_pb2  # noqa: F401
from envoy.config.listener.v3 import listener_pb2  # noqa: F401
from envoy.config.route.v3 import route_pb2  # noqa: F401
from envoy.config.endpoint.v3 import endpoint_pb2  # noqa: F401
from envoy.extensions.filters.network.http_connection_manager.v3 import http_connection_manager_pb2  # noqa: F401
from envoy.extensions.filters.http.router.v3 import router_pb2  # noqa: F401
from google.protobuf import symbol_database

MESSAGES = {
    "type.googleapis.com/envoy.config.cluster.v3.Cluster": "envoy.config.cluster.v3.Cluster",
    "type.googleapis.com/envoy.config.listener.v3.Listener": "envoy.config.listener.v3.Listener",
    "type.googleapis.com/envoy.config.route.v3.RouteConfiguration": "envoy.config.route.v3.RouteConfiguration",
    "type.googleapis.com/envoy.config.endpoint.v3.ClusterLoadAssignment": "envoy.config.endpoint.v3.ClusterLoadAssignment",
}

LOCK = threading.Lock()


def log(obj):
    with LOCK:
        print(json.dumps(obj), flush=True)


def pack(type_url, resource):
    cls = symbol_database.Default().GetSymbol(MESSAGES[type_url])
    message = json_format.ParseDict(resource, cls())
    any_ = any_pb2.Any()
    any_.Pack(message)
    return any_


class Ads(ads_pb2_grpc.AggregatedDiscoveryServiceServicer):
    def __init__(self, resources):
        self.resources = {t: [pack(t, r) for r in rs] for t, rs in resources.items()}
        self.names = {t: [r.get("name") or r.get("cluster_name") for r in rs]
                      for t, rs in resources.items()}

    def StreamAggregatedResources(self, requests, context):
        answered = set()
        nonce = 0
        for request in requests:
            log({
                "delta": False,
                "type_url": request.type_url,
                "version_info": request.version_info,
                "response_nonce": request.response_nonce,
                "resource_names": list(request.resource_names),
                "error": request.error_detail.message if request.HasField("error_detail") else None,
            })
            if request.type_url in answered or request.type_url not in self.resources:
                continue
            answered.add(request.type_url)
            nonce += 1
            yield discovery_pb2.DiscoveryResponse(
                version_info="1",
                resources=self.resources[request.type_url],
                type_url=request.type_url,
                nonce=str(nonce),
            )

    def DeltaAggregatedResources(self, requests, context):
        answered = set()
        nonce = 0
        for request in requests:
            log({
                "delta": True,
                "type_url": request.type_url,
                "version_info": "",
                "response_nonce": request.response_nonce,
                "resource_names": list(request.resource_names_subscribe),
                "error": request.error_detail.message if request.HasField("error_detail") else None,
            })
            if request.type_url in answered or request.type_url not in self.resources:
                continue
            answered.add(request.type_url)
            nonce += 1
            yield discovery_pb2.DeltaDiscoveryResponse(
                system_version_info="1",
                resources=[
                    discovery_pb2.Resource(name=name, version="1", resource=any_)
                    for name, any_ in zip(self.names[request.type_url],
                                          self.resources[request.type_url])
                ],
                type_url=request.type_url,
                nonce=str(nonce),
            )


def main():
    with open(sys.argv[1]) as f:
        resources = json.load(f)
    server = grpc.server(futures.ThreadPoolExecutor(max_workers=4))
    ads_pb2_grpc.add_AggregatedDiscoveryServiceServicer_to_server(Ads(resources), server)
    port = server.add_insecure_port("127.0.0.1:0")
    server.start()
    print(port, flush=True)
    server.wait_for_termination()


if __name__ == "__main__":
    main()
