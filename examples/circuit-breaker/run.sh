#!/usr/bin/env bash
# Circuit breaking in the proxy: (1) over max_connections + max_pending_requests,
# requests are refused at once with 503 + x-envoy-overloaded; (2) after consecutive 5xx the host is ejected
# (requests fail fast), and it comes back once it is healthy and base_ejection_time
# has passed.
PROXY_PORT="${PROXY_PORT:-10000}"
ADMIN_PORT="${ADMIN_PORT:-9901}"
BACKEND_PORT="${BACKEND_PORT:-8081}"
source "$(dirname "$0")/../lib/common.sh"

C=cluster.orders
step "backend 'orders' (fails with 500 while $WORK/orders-down exists)"
start_backend orders "$BACKEND_PORT" --fail-if-exists "$WORK/orders-down" --fail-status 500

step "proxy: circuit_breakers {max_connections: 1, max_pending_requests: 1} and outlier_detection {consecutive_5xx: 3}"
render_config "$(dirname "$0")/envoy.yaml" "$WORK/envoy.yaml" \
    10000="$PROXY_PORT" 9901="$ADMIN_PORT" 8081="$BACKEND_PORT"
start_proxy "$WORK/envoy.yaml"
URL="http://127.0.0.1:$PROXY_PORT"

step "1. concurrency breaker: A (slow, 2 s) holds the only connection, B waits, C is refused"
curl -s -o /dev/null -w '%{http_code}' --max-time 10 "$URL/slow?delay_ms=2000" >"$WORK/a.status" &
A=$!
wait_until "A in flight (cx_open = 1)" 10 stat_is "$C.circuit_breakers.default.cx_open" 1
curl -s -o /dev/null -w '%{http_code}' --max-time 10 "$URL/b" >"$WORK/b.status" &
B=$!
wait_until "B waiting (rq_pending_open = 1)" 10 stat_is "$C.circuit_breakers.default.rq_pending_open" 1
show_stats "^$C\\.circuit_breakers\\.default\\.(cx_open|rq_pending_open|remaining_cx|remaining_pending)\$"
curl -s -D "$WORK/hc" -o "$WORK/bc" -w '%{time_total}' --max-time 5 "$URL/c" >"$WORK/c.time"
echo "C: $(head -n 1 "$WORK/hc" | tr -d '\r'), $(grep -i '^x-envoy-overloaded' "$WORK/hc" | tr -d '\r'), after $(cat "$WORK/c.time") s: $(cat "$WORK/bc")"
check "C refused at once: 503 with x-envoy-overloaded: true" grep -qi '^x-envoy-overloaded: true' "$WORK/hc"
wait "$A" "$B" || true
echo "A: $(cat "$WORK/a.status"), B: $(cat "$WORK/b.status")"
check "A and B completed with 200" [ "$(cat "$WORK/a.status") $(cat "$WORK/b.status")" = "200 200" ]
show_stats "^$C\\.upstream_rq_pending_overflow\$"
check "one overflow counted (upstream_rq_pending_overflow = 1)" stat_is "$C.upstream_rq_pending_overflow" 1
check "with nothing waiting, the next request gets 200" [ "$(http_status "$URL/d")" = 200 ]

step "2. error breaker: orders starts failing with 500"
touch "$WORK/orders-down"
codes=()
ejected() { stat_is "$C.outlier_detection.ejections_active" 1; }
for i in $(seq 1 10); do
    codes+=("$(http_status "$URL/fast")")
    ejected && break
done
echo "status codes until the host was ejected: ${codes[*]}"
check "3 consecutive 500s ejected the host" ejected
show_stats "^$C\\.outlier_detection\\.(ejections_active|ejections_enforced_consecutive_5xx|ejections_enforced_total)\$"
curl -s -D "$WORK/h-open" -o "$WORK/b-open" --max-time 5 "$URL/fast"
echo "while ejected: $(head -n 1 "$WORK/h-open" | tr -d '\r'): $(cat "$WORK/b-open")"
check "requests fail fast with 503 'no healthy upstream'" grep -q 'no healthy upstream' "$WORK/b-open"

step "orders recovers; after base_ejection_time (1 s) the host is back"
rm -f "$WORK/orders-down"
wait_until "the host back in (ejections_active = 0)" 15 stat_is "$C.outlier_detection.ejections_active" 0
check "requests get 200 again" [ "$(http_status "$URL/fast")" = 200 ]

echo
echo "OK ($PROXY_NAME): the proxy refused overload at once and stopped calling a failing host until it recovered"
