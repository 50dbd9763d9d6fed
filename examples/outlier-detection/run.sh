#!/usr/bin/env bash
# Outlier detection: of two hosts, one answers 500 to everything. After 3 consecutive
# 5xx it is ejected and every request goes to the good one.
PROXY_PORT="${PROXY_PORT:-10000}"
ADMIN_PORT="${ADMIN_PORT:-9901}"
BACKEND_PORT="${BACKEND_PORT:-8081}"
BACKEND2_PORT="${BACKEND2_PORT:-8082}"
source "$(dirname "$0")/../lib/common.sh"

C=cluster.catalog
step "backends: 'good' answers 200, 'bad' answers 500 to everything"
start_backend good "$BACKEND_PORT"
start_backend bad "$BACKEND2_PORT" --fail-first 1000000 --fail-status 500

step "proxy: round robin over both, outlier_detection {consecutive_5xx: 3}"
render_config "$(dirname "$0")/envoy.yaml" "$WORK/envoy.yaml" \
    10000="$PROXY_PORT" 9901="$ADMIN_PORT" 8081="$BACKEND_PORT" 8082="$BACKEND2_PORT"
start_proxy "$WORK/envoy.yaml"
URL="http://127.0.0.1:$PROXY_PORT"

# `get`: one request; prints "<status>:<backend>".
get() {
    curl -s -o /dev/null -D "$WORK/h" --max-time 5 "$URL/items" >/dev/null || true
    local status backend
    status="$(head -n 1 "$WORK/h" | cut -d' ' -f2)"
    backend="$(grep -i '^x-backend:' "$WORK/h" | cut -d' ' -f2 | tr -d '\r')"
    echo "${status:-000}:${backend:--}"
}

step "requests until 'bad' is ejected"
ejected() { stat_is "$C.outlier_detection.ejections_active" 1; }
before=()
for i in $(seq 1 20); do
    before+=("$(get)")
    ejected && break
done
echo "${before[*]}"
check "'bad' was ejected" ejected
failures=$(printf '%s\n' "${before[@]}" | grep -c '^500:bad$' || true)
check "after 3 consecutive 5xx from it ($failures 500s seen)" [ "$failures" -ge 3 ]

step "10 more requests"
after=()
for i in $(seq 1 10); do after+=("$(get)"); done
echo "${after[*]}"
check "all answered 200 by 'good'" [ "$(printf '%s\n' "${after[@]}" | grep -vc '^200:good$')" -eq 0 ]

step "admin /clusters and /stats"
admin /clusters | grep -E "^catalog::127\\.0\\.0\\.1:($BACKEND_PORT|$BACKEND2_PORT)::health_flags::" | sed 's/^/    /'
check "/clusters flags 'bad' /failed_outlier_check" \
    grep -q "failed_outlier_check" <(admin /clusters | grep -F "catalog::127.0.0.1:$BACKEND2_PORT::health_flags::")
show_stats "^$C\\.outlier_detection\\.(ejections_active|ejections_enforced_consecutive_5xx|ejections_detected_consecutive_5xx|ejections_enforced_total)\$"
check "ejections_enforced_consecutive_5xx is 1" stat_is "$C.outlier_detection.ejections_enforced_consecutive_5xx" 1

echo
echo "OK ($PROXY_NAME): the failing host was ejected after 3 errors; the good one took all traffic"
