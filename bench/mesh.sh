#!/usr/bin/env bash
# The control plane (crates/bench/src/bin/bench_mesh.rs) on the embedded store and on
# etcd: CreateVirtualNode and DescribeVirtualNode throughput through App Mesh's REST
# API, and the time of `ferry apply` of a 1,000-virtual-node mesh (first: everything
# created in one transaction; again: everything unchanged).
# Usage: bench/mesh.sh [OUT.json] — builds ferry and bench-mesh in release first.
set -euo pipefail
cd "$(dirname "$0")/.."
export CARGO_TARGET_DIR="${CARGO_TARGET_DIR:-$HOME/.cache/ferrymesh/target}"
out="${1:-bench/results/$(date -u +%Y%m%dT%H%M%SZ)-mesh.json}"
cargo build --release -q -p ferry -p ferry-bench
export FERRY_BIN="$CARGO_TARGET_DIR/release/ferry"
{
    echo "["
    "$CARGO_TARGET_DIR/release/bench-mesh" --store embedded
    echo ","
    "$CARGO_TARGET_DIR/release/bench-mesh" --store etcd
    echo "]"
} > "$out"
cat "$out"
