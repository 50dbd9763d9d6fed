#!/usr/bin/env bash
# Local rate limits: HTTP requests over the token bucket get 429; TCP connections
# over theirs are closed.
PROXY_PORT="${PROXY_PORT:-10000}"
PROXY_PORT2="${PROXY_PORT2:-10001}"
ADMIN_PORT="${ADMIN_PORT:-9901}"
BACKEND_PORT="${BACKEND_PORT:-8081}"
source "$(dirname "$0")/../lib/common.sh"

H=http_local_rate_limiter.http_local_rate_limit
step "backend 'api'"
start_backend api "$BACKEND_PORT"

step "proxy: HTTP token bucket of 3 per minute, TCP token bucket of 2 per minute"
render_config "$(dirname "$0")/envoy.yaml" "$WORK/envoy.yaml" \
    10000="$PROXY_PORT" 10001="$PROXY_PORT2" 9901="$ADMIN_PORT" 8081="$BACKEND_PORT"
start_proxy "$WORK/envoy.yaml"

step "HTTP: 5 requests in a row (listener 127.0.0.1:$PROXY_PORT)"
codes=()
for i in $(seq 1 5); do
    curl -s -o "$WORK/body$i" -D "$WORK/h$i" --max-time 5 "http://127.0.0.1:$PROXY_PORT/orders" || true
    codes+=("$(head -n 1 "$WORK/h$i" | cut -d' ' -f2)")
done
echo "status codes: ${codes[*]}"
echo "request 5: $(grep -i '^x-local-rate-limit' "$WORK/h5" | tr -d '\r'), body: $(cat "$WORK/body5")"
check "3 allowed, then 429" [ "${codes[*]}" = "200 200 200 429 429" ]
check "the 429s carry x-local-rate-limit: true" grep -qi '^x-local-rate-limit: true' "$WORK/h5"
show_stats "^$H\\.(enabled|ok|rate_limited|enforced)\$"
check "$H.rate_limited is 2" stat_is "$H.rate_limited" 2

step "TCP: 3 connections (listener 127.0.0.1:$PROXY_PORT2, tcp_proxy to the backend)"
codes=()
for i in 1 2 3; do codes+=("$(http_status "http://127.0.0.1:$PROXY_PORT2/orders")"); done
echo "status codes: ${codes[*]} (000: connection closed by the proxy)"
check "2 connections served, the third closed" [ "${codes[*]}" = "200 200 000" ]
show_stats "^local_rate_limit\\.tcp_ratelimit\\.rate_limited\$"
check "local_rate_limit.tcp_ratelimit.rate_limited is 1" stat_is local_rate_limit.tcp_ratelimit.rate_limited 1

echo
echo "OK ($PROXY_NAME): requests and connections over the token buckets were refused"
