#!/usr/bin/env bash
# Retries: a backend that fails its first two requests; the client still gets 200.
# A backend that always fails: the client gets its 503 after 1 + 3 attempts.
PROXY_PORT="${PROXY_PORT:-10000}"
ADMIN_PORT="${ADMIN_PORT:-9901}"
BACKEND_PORT="${BACKEND_PORT:-8081}"
BACKEND2_PORT="${BACKEND2_PORT:-8082}"
source "$(dirname "$0")/../lib/common.sh"

step "backends: 'flaky' fails its first 2 requests with 503, 'broken' always does"
start_backend flaky "$BACKEND_PORT" --fail-first 2 --fail-status 503
start_backend broken "$BACKEND2_PORT" --fail-first 1000000 --fail-status 503

step "proxy with retry_policy {retry_on: 5xx,reset,connect-failure, num_retries: 3}"
render_config "$(dirname "$0")/envoy.yaml" "$WORK/envoy.yaml" \
    10000="$PROXY_PORT" 9901="$ADMIN_PORT" 8081="$BACKEND_PORT" 8082="$BACKEND2_PORT"
start_proxy "$WORK/envoy.yaml"

step "GET / (cluster flaky): two 503s upstream, then 200"
curl -s -D "$WORK/h1" -o "$WORK/b1" --max-time 10 "http://127.0.0.1:$PROXY_PORT/"
head -n 1 "$WORK/h1"
grep -i '^x-envoy-attempt-count' "$WORK/h1" || true
cat "$WORK/b1"
check "the client got 200" grep -q '^HTTP/1.1 200' "$WORK/h1"
check "it took 3 attempts (x-envoy-attempt-count: 3)" grep -qi '^x-envoy-attempt-count: 3' "$WORK/h1"

step "GET /broken (cluster broken): every attempt fails"
curl -s -D "$WORK/h2" -o "$WORK/b2" --max-time 10 "http://127.0.0.1:$PROXY_PORT/broken"
head -n 1 "$WORK/h2"
grep -i '^x-envoy-attempt-count' "$WORK/h2" || true
check "the client got the last 503" grep -q '^HTTP/1.1 503' "$WORK/h2"
check "after 1 + num_retries = 4 attempts" grep -qi '^x-envoy-attempt-count: 4' "$WORK/h2"

step "admin /stats"
show_stats '^cluster\.(flaky|broken)\.upstream_rq_(retry|retry_success|retry_limit_exceeded|completed|503|200)$'
check "cluster.flaky.upstream_rq_retry is 2" stat_is cluster.flaky.upstream_rq_retry 2
check "cluster.flaky.upstream_rq_retry_success is 1" stat_is cluster.flaky.upstream_rq_retry_success 1
check "cluster.broken.upstream_rq_retry is 3" stat_is cluster.broken.upstream_rq_retry 3
check "cluster.broken.upstream_rq_retry_limit_exceeded is 1" stat_is cluster.broken.upstream_rq_retry_limit_exceeded 1

echo
echo "OK ($PROXY_NAME): retries turned two upstream failures into one 200 for the client"
