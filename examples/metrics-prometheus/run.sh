#!/usr/bin/env bash
# Metrics for Prometheus: admin /stats/prometheus serves the proxy's stats with Envoy's
# tag-extracted names and labels, ready to scrape.
PROXY_PORT="${PROXY_PORT:-10000}"
ADMIN_PORT="${ADMIN_PORT:-9901}"
BACKEND_PORT="${BACKEND_PORT:-8081}"
source "$(dirname "$0")/../lib/common.sh"

step "backend 'orders'; its first 2 requests answer 503"
start_backend orders "$BACKEND_PORT" --fail-first 2 --fail-status 503

step "proxy: Prometheus scrapes admin 127.0.0.1:$ADMIN_PORT/stats/prometheus (prometheus.yml)"
render_config "$(dirname "$0")/envoy.yaml" "$WORK/envoy.yaml" \
    10000="$PROXY_PORT" 9901="$ADMIN_PORT" 8081="$BACKEND_PORT"
start_proxy "$WORK/envoy.yaml"

step "6 requests from a client"
for i in $(seq 1 6); do http_status "http://127.0.0.1:$PROXY_PORT/orders/$i" >/dev/null; done
wait_until "6 requests counted" 10 stat_is cluster.orders.upstream_rq_total 6

step "a scrape, as prometheus.yml asks for it"
# Envoy merges histogram samples at its stats flush (every 5 s): scrape until the six
# request times are in.
scraped() {
    admin "/stats/prometheus?usedonly" >"$WORK/scrape.txt"
    grep -qx 'envoy_cluster_upstream_rq_time_count{envoy_cluster_name="orders"} 6' "$WORK/scrape.txt"
}
wait_until "the request times in the scrape" 15 scraped
grep -E '^envoy_cluster_upstream_rq(_xx)?\{|^envoy_http_downstream_rq_xx\{|^envoy_cluster_upstream_rq_time_(count|bucket\{.*le="(5|\+Inf)")' \
    "$WORK/scrape.txt" | sed 's/^/    /'
check "per-code counters carry the code and the cluster as labels" \
    grep -qx 'envoy_cluster_upstream_rq{envoy_response_code="200",envoy_cluster_name="orders"} 4' "$WORK/scrape.txt"
check "and the 503s" \
    grep -qx 'envoy_cluster_upstream_rq{envoy_response_code="503",envoy_cluster_name="orders"} 2' "$WORK/scrape.txt"
check "request times are a histogram" \
    grep -qx 'envoy_cluster_upstream_rq_time_count{envoy_cluster_name="orders"} 6' "$WORK/scrape.txt"
check "# TYPE lines name each family" grep -qx '# TYPE envoy_cluster_upstream_rq_time histogram' "$WORK/scrape.txt"

step "parsed as Prometheus parses it"
if python3 -c 'import prometheus_client' 2>/dev/null; then
    python3 - "$WORK/scrape.txt" <<'PY'
import sys
from prometheus_client.parser import text_string_to_metric_families
families = list(text_string_to_metric_families(open(sys.argv[1]).read()))
samples = sum(len(f.samples) for f in families)
print(f"    {len(families)} families, {samples} samples, no parse error")
PY
    check "the exposition parses" true
else
    echo "    (pip install prometheus_client to parse the scrape as Prometheus does)"
fi

echo
echo "OK ($PROXY_NAME): /stats/prometheus serves labelled counters, gauges and histograms"
