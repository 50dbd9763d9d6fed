#!/usr/bin/env bash
# Mirroring: every request to shop is copied to shop_v2, which is slow and fails;
# clients see only shop's fast 200s, while shop_v2 receives the same requests.
PROXY_PORT="${PROXY_PORT:-10000}"
ADMIN_PORT="${ADMIN_PORT:-9901}"
BACKEND_PORT="${BACKEND_PORT:-8081}"
BACKEND2_PORT="${BACKEND2_PORT:-8082}"
source "$(dirname "$0")/../lib/common.sh"

step "backends: 'shop' (v1), and 'shop_v2', which takes 800 ms and answers 500"
start_backend shop "$BACKEND_PORT" --record "$WORK/shop.jsonl"
start_backend shop_v2 "$BACKEND2_PORT" --record "$WORK/shop_v2.jsonl" \
    --delay-ms 800 --fail-first 1000000 --fail-status 500

step "proxy: route to shop with request_mirror_policies [{cluster: shop_v2}]"
render_config "$(dirname "$0")/envoy.yaml" "$WORK/envoy.yaml" \
    10000="$PROXY_PORT" 9901="$ADMIN_PORT" 8081="$BACKEND_PORT" 8082="$BACKEND2_PORT"
start_proxy "$WORK/envoy.yaml"
URL="http://127.0.0.1:$PROXY_PORT"

step "3 requests from a client (Host: shop.local)"
send() {
    curl -s -o /dev/null -w '%{http_code} %{time_total}\n' --max-time 5 -H 'Host: shop.local' "$@"
}
{
    send "$URL/cart"
    send "$URL/items?page=2"
    send -X POST -H 'content-type: application/json' --data '{"item": 42}' "$URL/orders"
} >"$WORK/client.txt"
sed 's/^\([0-9]*\) \(.*\)/    \1 after \2 s/' "$WORK/client.txt"
check "all three got 200" [ "$(cut -d' ' -f1 "$WORK/client.txt" | tr '\n' ' ')" = "200 200 200 " ]
check "none waited for shop_v2 (each under 0.5 s)" \
    awk '$2 >= 0.5 { exit 1 }' "$WORK/client.txt"

step "what shop_v2 received"
lines() { [ -f "$1" ] && wc -l <"$1" || echo 0; }
wait_until "3 copies at shop_v2" 10 eval '[ "$(lines "$WORK/shop_v2.jsonl")" -ge 3 ]'
summary() {
    python3 -c '
import json, sys
for line in open(sys.argv[1]):
    r = json.loads(line)
    print("    %s %s host=%s body=%s" % (r["method"], r["path"], r["headers"].get("host"), r["body"]))
' "$1"
}
summary "$WORK/shop_v2.jsonl" | tee "$WORK/shadow.txt"
echo "  (shop received:)"
summary "$WORK/shop.jsonl"
check "the same requests, Host shop.local-shadow" \
    [ "$(grep -c 'host=shop.local-shadow' "$WORK/shadow.txt")" -eq 3 ]
check "the POST body was copied too" grep -q 'POST /orders .* body={"item": 42}' "$WORK/shadow.txt"
wait_until "shop_v2's 500s counted" 10 stat_is cluster.shop_v2.upstream_rq_5xx 3
show_stats '^cluster\.(shop|shop_v2)\.upstream_rq_(2xx|5xx|completed)$'
check "cluster.shop.upstream_rq_2xx is 3" stat_is cluster.shop.upstream_rq_2xx 3

echo
echo "OK ($PROXY_NAME): shop_v2 got a copy of every request; clients only ever saw shop"
