#!/usr/bin/env bash
# Health checks: (1) the proxy checks its upstream hosts; a host whose /healthz fails
# is taken out of load balancing and put back when it passes again. (2) The proxy's
# own health endpoint, failed with admin POST /healthcheck/fail to drain it.
PROXY_PORT="${PROXY_PORT:-10000}"
ADMIN_PORT="${ADMIN_PORT:-9901}"
BACKEND_PORT="${BACKEND_PORT:-8081}"
BACKEND2_PORT="${BACKEND2_PORT:-8082}"
source "$(dirname "$0")/../lib/common.sh"

C=cluster.web
step "backends 'a' and 'b' (b's /healthz answers 503 while $WORK/b-sick exists)"
start_backend a "$BACKEND_PORT"
start_backend b "$BACKEND2_PORT" --unhealthy-if-exists "$WORK/b-sick"

step "proxy: health_checks {http_health_check: {path: /healthz}, interval: 0.2s}"
render_config "$(dirname "$0")/envoy.yaml" "$WORK/envoy.yaml" \
    10000="$PROXY_PORT" 9901="$ADMIN_PORT" 8081="$BACKEND_PORT" 8082="$BACKEND2_PORT"
start_proxy "$WORK/envoy.yaml"
URL="http://127.0.0.1:$PROXY_PORT"

# `backends N`: sends N requests and prints which backend answered each.
backends() {
    local i out=()
    for i in $(seq 1 "$1"); do
        out+=("$(curl -s -o /dev/null -D - --max-time 5 "$URL/page" | grep -i '^x-backend:' | cut -d' ' -f2 | tr -d '\r')")
    done
    echo "${out[*]}"
}
show_hosts() {
    admin /clusters | grep -E "^web::127\\.0\\.0\\.1:[0-9]+::health_flags::" | sed 's/^/    /'
}

step "1. both hosts healthy"
wait_until "2 healthy hosts" 10 stat_is "$C.membership_healthy" 2
show_hosts
both_serve() { seen="$(backends 6)"; contains "$seen a" "b a"; }
wait_until "both a and b serve" 10 both_serve
echo "answered by: $seen"

step "b's health check starts failing"
touch "$WORK/b-sick"
wait_until "b taken out (membership_healthy = 1)" 10 stat_is "$C.membership_healthy" 1
show_hosts
check "/clusters flags b /failed_active_hc" \
    grep -q failed_active_hc <(admin /clusters | grep -F "web::127.0.0.1:$BACKEND2_PORT::health_flags::")
# The proxy's workers learn of the change just after the stat (Envoy posts it to them).
only_a() { seen="$(backends 6)"; [ "$seen" = "a a a a a a" ]; }
wait_until "only a serves" 10 only_a
echo "answered by: $seen"

step "b passes again"
rm -f "$WORK/b-sick"
wait_until "b back (membership_healthy = 2)" 10 stat_is "$C.membership_healthy" 2
b_serves() { seen="$(backends 6)"; contains "$seen" b; }
wait_until "b serves again" 10 b_serves
echo "answered by: $seen"
show_stats "^$C\\.(health_check\\.(attempt|success|failure|healthy)|membership_healthy)\$"
check "health_check.failure counted" stat_at_least "$C.health_check.failure" 1

step "2. the proxy's own health endpoint (envoy.filters.http.health_check)"
s="$(http_status "$URL/healthz")"
echo "GET /healthz on the listener: $s"
check "answered 200 by the proxy" [ "$s" = 200 ]
admin /healthcheck/fail -X POST >/dev/null
curl -s -o /dev/null -D "$WORK/h" --max-time 5 "$URL/healthz"
echo "after POST /healthcheck/fail: $(head -n 1 "$WORK/h" | tr -d '\r'), $(grep -i '^x-envoy-immediate-health-check-fail' "$WORK/h" | tr -d '\r')"
check "503 with x-envoy-immediate-health-check-fail: true" \
    grep -qi '^x-envoy-immediate-health-check-fail: true' "$WORK/h"
check "other requests still go through" [ "$(http_status "$URL/page")" = 200 ]
admin /healthcheck/ok -X POST >/dev/null
s="$(http_status "$URL/healthz")"
echo "after POST /healthcheck/ok: $s"
check "200 again" [ "$s" = 200 ]

echo
echo "OK ($PROXY_NAME): an unhealthy host left load balancing and came back; the proxy's own health check failed on demand"
