#!/usr/bin/env bash
# xDS on ferry and Envoy (crates/bench/src/bin/bench_xds.rs), over ADS state of the world
# and delta: push-to-applied time of a route change (RDS), of 1,000 EDS clusters and of
# one assignment changed among them, and RSS with them loaded.
# Usage: bench/xds.sh [OUT.json] — builds ferry and bench-xds in release first.
set -euo pipefail
cd "$(dirname "$0")/.."
export CARGO_TARGET_DIR="${CARGO_TARGET_DIR:-$HOME/.cache/ferrymesh/target}"
out="${1:-bench/results/$(date -u +%Y%m%dT%H%M%SZ)-xds.json}"
cargo build --release -q -p ferry -p ferry-bench
export PATH="$(python3 -c 'import sysconfig; print(sysconfig.get_path("scripts"))'):$PATH"
export FERRY_BIN="$CARGO_TARGET_DIR/release/ferry"
{
    echo "["
    sep=""
    for protocol in sotw delta; do
        for target in ferry envoy; do
            echo "$sep"
            "$CARGO_TARGET_DIR/release/bench-xds" --target "$target" --protocol "$protocol"
            sep=","
        done
    done
    echo "]"
} > "$out"
cat "$out"
