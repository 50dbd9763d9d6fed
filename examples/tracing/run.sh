#!/usr/bin/env bash
# Distributed tracing: the proxy continues a caller's W3C trace, starts new ones for
# the rest, tells the backend the span context (B3 and traceparent), and reports one
# span per request to a Zipkin collector.
PROXY_PORT="${PROXY_PORT:-10000}"
ADMIN_PORT="${ADMIN_PORT:-9901}"
BACKEND_PORT="${BACKEND_PORT:-8081}"
BACKEND2_PORT="${BACKEND2_PORT:-8082}"
source "$(dirname "$0")/../lib/common.sh"

step "backend 'shop' (records every request it receives), Zipkin collector stand-in"
start_backend shop "$BACKEND_PORT" --record "$WORK/shop.jsonl"
SPANS="$WORK/spans.jsonl"
spawn "$WORK/zipkin.log" python3 "$EXAMPLES_DIR/lib/zipkin.py" --port "$BACKEND2_PORT" --out "$SPANS"
collector_up() { [ "$(http_status "http://127.0.0.1:$BACKEND2_PORT/healthz")" = 200 ]; }
wait_until "zipkin collector on 127.0.0.1:$BACKEND2_PORT" 10 collector_up

step "proxy with HCM tracing (envoy.tracers.zipkin, B3 + W3C)"
render_config "$(dirname "$0")/envoy.yaml" "$WORK/envoy.yaml" \
    10000="$PROXY_PORT" 9901="$ADMIN_PORT" 8081="$BACKEND_PORT" 8082="$BACKEND2_PORT"
start_proxy "$WORK/envoy.yaml"
URL="http://127.0.0.1:$PROXY_PORT"

TRACE=4bf92f3577b34da6a3ce929d0e0e4736
PARENT=00f067aa0ba902b7
step "GET /checkout as part of the caller's trace (traceparent: 00-$TRACE-$PARENT-01)"
check "200" [ "$(http_status "$URL/checkout" -H "traceparent: 00-$TRACE-$PARENT-01" -H 'x-tenant: acme')" = 200 ]
step "GET /cart with no trace context: the proxy starts a trace"
check "200" [ "$(http_status "$URL/cart")" = 200 ]

step "what the backend received"
python3 - "$WORK/shop.jsonl" <<'PY'
import json, sys
for line in open(sys.argv[1]):
    r = json.loads(line)
    h = r["headers"]
    print(f"    {r['path']}: traceparent={h.get('traceparent')} x-b3-traceid={h.get('x-b3-traceid')} "
          f"x-b3-spanid={h.get('x-b3-spanid')} x-b3-sampled={h.get('x-b3-sampled')}")
PY
header_of() {
    python3 -c 'import json,sys; print(next(json.loads(l)["headers"].get(sys.argv[2], "") for l in open(sys.argv[1]) if json.loads(l)["path"] == sys.argv[3]))' \
        "$WORK/shop.jsonl" "$1" "$2"
}
check "/checkout continues the caller's trace" [ "$(header_of x-b3-traceid /checkout)" = "$TRACE" ]
check "/checkout carries traceparent with the same trace id" \
    contains "$(header_of traceparent /checkout)" "00-$TRACE-"
check "/cart starts a sampled trace" [ "$(header_of x-b3-sampled /cart)" = 1 ]

step "spans reported to the collector (the proxy flushes every 5 s, or every 5 spans)"
span_count() { [ -s "$SPANS" ] && [ "$(wc -l <"$SPANS")" -ge 2 ]; }
wait_until "2 spans at the collector" 20 span_count
python3 - "$SPANS" <<'PY'
import json, sys
for line in open(sys.argv[1]):
    s = json.loads(line)
    t = s["tags"]
    print(f"    {s['kind']} {s['name']} traceId={s['traceId']} id={s['id']} service={s['localEndpoint']['serviceName']}")
    print(f"      {t['http.method']} {t['http.url']} -> {t['http.status_code']}, upstream_cluster={t['upstream_cluster']}, "
          f"node_id={t['node_id']}, zone={t['zone']}, app.tenant={t['app.tenant']}")
PY
span_field() {
    python3 -c 'import json,sys; print(next(json.loads(l)[sys.argv[2]] for l in open(sys.argv[1]) if json.loads(l)["tags"]["http.url"].endswith(sys.argv[3])))' \
        "$SPANS" "$1" "$2"
}
check "the /checkout span is in the caller's trace" [ "$(span_field traceId /checkout)" = "$TRACE" ]
check "the /cart span's id is the one the backend was given" \
    [ "$(span_field id /cart)" = "$(header_of x-b3-spanid /cart)" ]
show_stats '^(http\.ingress\.tracing\.random_sampling|tracing\.zipkin\.(spans_sent|reports_sent))$'
check "http.ingress.tracing.random_sampling is 2" stat_is http.ingress.tracing.random_sampling 2
check "tracing.zipkin.spans_sent is 2" stat_is tracing.zipkin.spans_sent 2

echo
echo "OK ($PROXY_NAME): one trace continued, one started; the backend got the context and the collector the spans"
