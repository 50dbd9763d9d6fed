#!/usr/bin/env bash
# Metrics in statsd format: the proxy's stats reach a statsd listener (standing in for
# the CloudWatch agent) without any change to the service.
PROXY_PORT="${PROXY_PORT:-10000}"
ADMIN_PORT="${ADMIN_PORT:-9901}"
BACKEND_PORT="${BACKEND_PORT:-8081}"
STATSD_PORT="${STATSD_PORT:-8125}"
source "$(dirname "$0")/../lib/common.sh"

step "statsd listener on UDP 127.0.0.1:$STATSD_PORT (what the CloudWatch agent would run)"
spawn "$WORK/statsd.log" python3 "$EXAMPLES_DIR/lib/statsd.py" --port "$STATSD_PORT" --out "$WORK/statsd.txt"
touch "$WORK/statsd.txt"

step "backend 'orders'"
start_backend orders "$BACKEND_PORT"

step "proxy: stats_sinks [envoy.stat_sinks.statsd] to 127.0.0.1:$STATSD_PORT, flushed every 1 s"
render_config "$(dirname "$0")/envoy.yaml" "$WORK/envoy.yaml" \
    10000="$PROXY_PORT" 9901="$ADMIN_PORT" 8081="$BACKEND_PORT" 8125="$STATSD_PORT"
start_proxy "$WORK/envoy.yaml"

step "5 requests from a client"
for i in $(seq 1 5); do http_status "http://127.0.0.1:$PROXY_PORT/orders/$i" >/dev/null; done

# The sum of the deltas of counter $1 received so far.
counted() { awk -F'[:|]' -v n="$1" '$1 == n && $3 == "c" { s += $2 } END { print s + 0 }' "$WORK/statsd.txt"; }
step "what the statsd listener received"
wait_until "5 upstream 200s counted" 15 eval '[ "$(counted envoy.cluster.orders.upstream_rq_200)" -eq 5 ]'
wait_until "a request time" 15 grep -q '^envoy\.cluster\.orders\.upstream_rq_time:.*|ms' "$WORK/statsd.txt"
grep -E '^envoy\.(cluster\.orders\.(upstream_rq_(200|2xx|completed|time)|membership_healthy)|http\.ingress\.downstream_rq_(2xx|total)):' \
    "$WORK/statsd.txt" | sort | uniq -c | sed 's/^/    /' | head -20
check "counter deltas (|c) add up to what admin /stats shows" stat_is cluster.orders.upstream_rq_200 5
check "gauges are sent (|g)" grep -q '^envoy\.cluster\.orders\.membership_healthy:1|g$' "$WORK/statsd.txt"
check "every line is statsd: name:value|type[|@rate]" \
    awk '!/^[A-Za-z0-9_.-]+:[0-9.]+\|(c|g|ms)(\|@[0-9.]+)?$/ { print "bad line: " $0; exit 1 }' "$WORK/statsd.txt"

echo
echo "OK ($PROXY_NAME): the statsd listener received the proxy's counters, gauges and timers"
