#!/usr/bin/env bash
# Fault injection: aborts and delays asked for with request headers, and a fixed
# delay on one route; aborted requests never reach the backend.
PROXY_PORT="${PROXY_PORT:-10000}"
ADMIN_PORT="${ADMIN_PORT:-9901}"
BACKEND_PORT="${BACKEND_PORT:-8081}"
source "$(dirname "$0")/../lib/common.sh"

F=http.ingress.fault
step "backend 'shop' (records every request it receives)"
start_backend shop "$BACKEND_PORT" --record "$WORK/shop.jsonl"

step "proxy with envoy.filters.http.fault"
render_config "$(dirname "$0")/envoy.yaml" "$WORK/envoy.yaml" \
    10000="$PROXY_PORT" 9901="$ADMIN_PORT" 8081="$BACKEND_PORT"
start_proxy "$WORK/envoy.yaml"
URL="http://127.0.0.1:$PROXY_PORT"

# `request NAME PATH [curl args...]`: prints "<status> after <seconds> s: <body>".
request() {
    local name="$1" path="$2"
    shift 2
    curl -s -o "$WORK/$name.body" -w '%{http_code} %{time_total}\n' --max-time 5 "$@" "$URL$path" >"$WORK/$name.out" || true
    read -r code time <"$WORK/$name.out"
    echo "$code after $time s: $(head -c 60 "$WORK/$name.body" | tr -d '\n')"
}
status_of() { cut -d' ' -f1 "$WORK/$1.out"; }
# `took_at_least NAME SECONDS` (callers allow a margin: Envoy's timers may fire a
# millisecond or two early).
took_at_least() { awk -v t="$(cut -d' ' -f2 "$WORK/$1.out")" -v min="$2" 'BEGIN { exit !(t >= min) }'; }

step "GET /products, no fault asked for"
request plain /products
check "200" [ "$(status_of plain)" = 200 ]

step "GET /products with x-envoy-fault-abort-request: 503"
request abort /products -H 'x-envoy-fault-abort-request: 503'
check "503 'fault filter abort' from the proxy" \
    [ "$(status_of abort) $(cat "$WORK/abort.body")" = "503 fault filter abort" ]

step "GET /products with x-envoy-fault-delay-request: 300"
request delay /products -H 'x-envoy-fault-delay-request: 300'
check "200" [ "$(status_of delay)" = 200 ]
check "after about 0.3 s (>= 0.25 s)" took_at_least delay 0.25

step "GET /reviews (route with a fixed 500 ms delay)"
request reviews /reviews
check "200" [ "$(status_of reviews)" = 200 ]
check "after about 0.5 s (>= 0.45 s)" took_at_least reviews 0.45

step "what the backend received, and admin /stats"
record_paths() { python3 -c 'import json,sys; print(" ".join(json.loads(l)["path"] for l in sys.stdin))'; }
received="$(record_paths <"$WORK/shop.jsonl")"
echo "backend received: $received"
check "the aborted request never reached it" [ "$received" = "/products /products /reviews" ]
show_stats "^$F\\.(aborts_injected|delays_injected|active_faults)\$"
check "$F.aborts_injected is 1" stat_is "$F.aborts_injected" 1
check "$F.delays_injected is 2" stat_is "$F.delays_injected" 2

echo
echo "OK ($PROXY_NAME): the proxy injected an abort and two delays; the backend was untouched by the abort"
