#!/usr/bin/env bash
# Instructions per proxied HTTP/1.1 request, counted by callgrind (repeatable for the
# same binary and inputs, whatever else the machine does):
#
#   bench/callgrind.sh [FERRY_BINARY] [SECONDS]
#
# Runs the scenario 1-5 config (bench/configs.py envoy_main) on one worker under
# `valgrind --tool=callgrind`, warms up, zeroes the counters, sends `wrk -c10` for
# SECONDS (default 10), dumps, and divides the instructions by the requests the
# proxy's own /stats counted in that window; CALLGRIND_OUT=FILE keeps the profile.
# Loopback only.
set -euo pipefail
cd "$(dirname "$0")/.."
export CARGO_TARGET_DIR="${CARGO_TARGET_DIR:-$HOME/.cache/ferrymesh/target}"
FERRY="${1:-$CARGO_TARGET_DIR/release/ferry}"
SECONDS_RUN="${2:-10}"
BACKEND="$CARGO_TARGET_DIR/release/bench-backend"
command -v wrk >/dev/null && command -v valgrind >/dev/null && command -v callgrind_control >/dev/null || {
  echo "needs wrk and valgrind (apt-get install wrk valgrind)" >&2; exit 1; }
[ -x "$BACKEND" ] || cargo build --release -p ferry-bench >&2

WORK=$(mktemp -d)
PIDS=()
cleanup() { for p in "${PIDS[@]}"; do kill "$p" 2>/dev/null || true; done; wait 2>/dev/null || true; rm -rf "$WORK"; }
trap cleanup EXIT

BACKEND_PORT=18090 LISTEN_PORT=18091 ADMIN_PORT=18092
"$BACKEND" --listen "127.0.0.1:$BACKEND_PORT" --threads 1 >"$WORK/backend.log" 2>&1 &
PIDS+=($!)
python3 -c "import sys; sys.path.insert(0, 'bench'); import configs; print(configs.envoy_main($LISTEN_PORT, $ADMIN_PORT, $BACKEND_PORT, for_envoy=False))" >"$WORK/ferry.json"
valgrind --tool=callgrind --callgrind-out-file="$WORK/callgrind.out.%p" \
  "$FERRY" proxy -c "$WORK/ferry.json" --concurrency 1 -l error >"$WORK/ferry.log" 2>&1 &
VG=$!
PIDS+=($VG)

requests() { curl -s "http://127.0.0.1:$ADMIN_PORT/stats?filter=^http.ingress_http.downstream_rq_total$" | awk '{print $2}'; }
for _ in $(seq 1 600); do
  curl -sf -o /dev/null "http://127.0.0.1:$LISTEN_PORT/" 2>/dev/null && break
  sleep 0.1
done
wrk -c10 -t1 -d2s "http://127.0.0.1:$LISTEN_PORT/" >/dev/null   # warm-up
callgrind_control -z "$VG" >/dev/null
before=$(requests)
wrk -c10 -t1 -d"${SECONDS_RUN}s" "http://127.0.0.1:$LISTEN_PORT/" >"$WORK/wrk.txt"
after=$(requests)
callgrind_control -d "$VG" >/dev/null
# The dump (callgrind.out.<pid>.1) is written asynchronously: wait for its totals.
for _ in $(seq 1 100); do
  f=$(ls -t "$WORK"/callgrind.out.*.* 2>/dev/null | head -1 || true)
  [ -n "$f" ] && grep -q '^totals:' "$f" && break
  sleep 0.2
done
total=$(grep '^totals:' "$f" | awk '{print $2}')
# CALLGRIND_OUT=path keeps the profile (for callgrind_annotate --inclusive=yes).
[ -n "${CALLGRIND_OUT:-}" ] && cp "$f" "$CALLGRIND_OUT"
n=$((after - before))
echo "binary: $FERRY"
echo "requests: $n"
echo "instructions: $total"
echo "instructions per request: $((total / n))"
