//! Admin `/stats` in Envoy's formats: text (counters and gauges sorted, then
//! histograms as `P0(interval,cumulative)` …), JSON, and Prometheus text exposition
//! with tag-extracted names.

use crate::histogram::{Counts, BUCKETS, PERCENTS, QUANTILES};
use crate::tags::TagProducer;
use crate::Value;
use regex::Regex;
use std::collections::BTreeMap;
use std::fmt::Write;

/// Which stats `?type=` asks for.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Kinds {
    /// Every kind (the default).
    #[default]
    All,
    /// Counters only.
    Counters,
    /// Gauges only.
    Gauges,
    /// Histograms only.
    Histograms,
    /// Text readouts only (ferry has none).
    TextReadouts,
}

/// What a listing includes (`?filter`, `?usedonly`, `?type`).
#[derive(Debug, Clone, Default)]
pub struct Query {
    /// Stats whose full name the regex matches somewhere (RE2 partial match).
    pub filter: Option<Regex>,
    /// Only stats that were used.
    pub used_only: bool,
    /// Kinds listed.
    pub kinds: Kinds,
}

impl Query {
    fn wants(&self, name: &str, v: &Value) -> bool {
        let kind_ok = matches!(
            (self.kinds, v),
            (Kinds::All, _)
                | (Kinds::Counters, Value::Counter(_))
                | (Kinds::Gauges, Value::Gauge(_))
                | (Kinds::Histograms, Value::Histogram(_))
        );
        kind_ok
            && (!self.used_only || v.used())
            && self.filter.as_ref().is_none_or(|r| r.is_match(name))
    }
}

/// A quantile as Envoy prints it: shortest round-trip, `nan` when there is none.
fn number(v: Option<f64>) -> String {
    match v {
        Some(v) => format!("{v}"),
        None => "nan".to_string(),
    }
}

/// Envoy's text `/stats`.
pub fn text(stats: &BTreeMap<String, Value>, q: &Query) -> String {
    let mut out = String::new();
    let mut histograms = Vec::new();
    for (name, v) in stats.iter().filter(|(n, v)| q.wants(n, v)) {
        match v {
            Value::Counter(n) | Value::Gauge(n) => {
                let _ = writeln!(out, "{name}: {}", n.value);
            }
            Value::Histogram(h) => histograms.push((name, h)),
        }
    }
    for (name, h) in histograms {
        if h.cumulative.count() == 0 {
            let _ = writeln!(out, "{name}: No recorded values");
            continue;
        }
        let _ = write!(out, "{name}:");
        for (quantile, percent) in QUANTILES.into_iter().zip(PERCENTS) {
            let _ = write!(
                out,
                " P{percent}({},{})",
                number(h.interval.quantile(quantile)),
                number(h.cumulative.quantile(quantile))
            );
        }
        out.push('\n');
    }
    out
}

/// A JSON number (shortest form), or `null` for a missing quantile.
fn json_number(out: &mut String, v: Option<f64>) {
    match v.filter(|v| v.is_finite()) {
        Some(v) => {
            let _ = write!(out, "{v}");
        }
        None => out.push_str("null"),
    }
}

/// A JSON string.
fn json_string(out: &mut String, s: &str) {
    let _ = write!(out, "{}", serde_json::Value::from(s));
}

/// Envoy's `/stats?format=json`, written as it goes (a large listing never becomes a
/// tree of values).
pub fn json(stats: &BTreeMap<String, Value>, q: &Query) -> String {
    let mut out = String::with_capacity(64 * stats.len().min(1 << 20));
    out.push_str("{\"stats\":[");
    let mut first = true;
    let mut histograms = Vec::new();
    for (name, v) in stats.iter().filter(|(n, v)| q.wants(n, v)) {
        match v {
            Value::Counter(n) | Value::Gauge(n) => {
                if !first {
                    out.push(',');
                }
                first = false;
                out.push_str("{\"name\":");
                json_string(&mut out, name);
                let _ = write!(out, ",\"value\":{}}}", n.value);
            }
            Value::Histogram(h) => histograms.push((name, h)),
        }
    }
    if q.kinds == Kinds::All || q.kinds == Kinds::Histograms {
        if !first {
            out.push(',');
        }
        out.push_str("{\"histograms\":{\"supported_quantiles\":[");
        for (i, p) in PERCENTS.iter().enumerate() {
            if i > 0 {
                out.push(',');
            }
            json_number(&mut out, Some(*p));
        }
        out.push_str("],\"computed_quantiles\":[");
        for (i, (name, h)) in histograms.iter().enumerate() {
            if i > 0 {
                out.push(',');
            }
            out.push_str("{\"name\":");
            json_string(&mut out, name);
            out.push_str(",\"values\":[");
            for (j, quantile) in QUANTILES.iter().enumerate() {
                if j > 0 {
                    out.push(',');
                }
                out.push_str("{\"cumulative\":");
                json_number(&mut out, h.cumulative.quantile(*quantile));
                out.push_str(",\"interval\":");
                json_number(&mut out, h.interval.quantile(*quantile));
                out.push('}');
            }
            out.push_str("]}");
        }
        out.push_str("]}}");
    }
    out.push_str("]}");
    out
}

fn prometheus_name(s: &str) -> String {
    s.chars()
        .map(|c| {
            if c.is_ascii_alphanumeric() || c == '_' {
                c
            } else {
                '_'
            }
        })
        .collect()
}

fn label_value(v: &str) -> String {
    v.replace('\\', "\\\\")
        .replace('"', "\\\"")
        .replace('\n', "\\n")
}

fn labels(tags: &[(String, String)], extra: Option<(&str, &str)>) -> String {
    let mut parts: Vec<String> = tags
        .iter()
        .map(|(k, v)| format!("{}=\"{}\"", prometheus_name(k), label_value(v)))
        .collect();
    if let Some((k, v)) = extra {
        parts.push(format!("{k}=\"{v}\""));
    }
    parts.join(",")
}

/// A bucket bound as Envoy writes `le` (`0.5`, `1`, `3600000`).
fn bound(b: f64) -> String {
    format!("{b}")
}

/// Envoy's `/stats/prometheus`: `envoy_` + the tag-extracted name, tags as labels;
/// counters, then gauges, then histograms (`_bucket`, `_sum`, `_count`), each group
/// under one `# TYPE`, groups sorted by tag-extracted name and series by full name.
pub fn prometheus(stats: &BTreeMap<String, Value>, tags: &TagProducer, q: &Query) -> String {
    // (kind order, tag-extracted name) → the group's series lines, in full-name order
    // (the map's); each line is rendered at once, so only text is kept.
    let mut groups: BTreeMap<(u8, String), String> = BTreeMap::new();
    for (name, v) in stats.iter().filter(|(n, v)| q.wants(n, v)) {
        let (extracted, t) = tags.produce(name);
        let kind = match v {
            Value::Counter(_) => 0,
            Value::Gauge(_) => 1,
            Value::Histogram(_) => 2,
        };
        let metric = format!("envoy_{}", prometheus_name(&extracted));
        let lines = groups.entry((kind, extracted)).or_default();
        match v {
            Value::Counter(n) | Value::Gauge(n) => {
                let _ = writeln!(lines, "{metric}{{{}}} {}", labels(&t, None), n.value);
            }
            Value::Histogram(h) => write_histogram(lines, &metric, &t, &h.cumulative),
        }
    }
    let mut out = String::with_capacity(groups.values().map(|l| l.len() + 64).sum());
    for ((kind, extracted), lines) in groups {
        let metric = format!("envoy_{}", prometheus_name(&extracted));
        let ty = ["counter", "gauge", "histogram"][kind as usize];
        let _ = writeln!(out, "# TYPE {metric} {ty}");
        out.push_str(&lines);
    }
    out
}

fn write_histogram(out: &mut String, metric: &str, t: &[(String, String)], c: &Counts) {
    for (b, n) in BUCKETS.iter().zip(c.cumulative()) {
        let _ = writeln!(
            out,
            "{metric}_bucket{{{}}} {n}",
            labels(t, Some(("le", &bound(*b))))
        );
    }
    let _ = writeln!(
        out,
        "{metric}_bucket{{{}}} {}",
        labels(t, Some(("le", "+Inf"))),
        c.count()
    );
    let _ = writeln!(out, "{metric}_sum{{{}}} {}", labels(t, None), c.sum);
    let _ = writeln!(out, "{metric}_count{{{}}} {}", labels(t, None), c.count());
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::{Histogram, HistogramValue, Number};

    fn sample() -> BTreeMap<String, Value> {
        let h = Histogram::default();
        for v in [1, 44, 46, 47] {
            h.record(v);
        }
        let mut m = BTreeMap::new();
        m.insert(
            "cluster.backend.upstream_rq_200".into(),
            Value::Counter(Number::used(3)),
        );
        m.insert(
            "cluster.backend.upstream_rq_404".into(),
            Value::Counter(Number::used(1)),
        );
        m.insert("server.live".into(), Value::Gauge(Number::used(1)));
        m.insert(
            "cluster.backend.upstream_rq_time".into(),
            Value::Histogram(Box::new(HistogramValue {
                interval: Counts::default(),
                cumulative: h.cumulative(),
            })),
        );
        m.insert(
            "cluster.backend.upstream_cx_length_ms".into(),
            Value::Histogram(Box::default()),
        );
        m
    }

    #[test]
    fn text_lists_numbers_then_histograms() {
        let t = text(&sample(), &Query::default());
        let lines: Vec<&str> = t.lines().collect();
        assert_eq!(lines[0], "cluster.backend.upstream_rq_200: 3");
        assert_eq!(lines[2], "server.live: 1");
        assert_eq!(
            lines[3],
            "cluster.backend.upstream_cx_length_ms: No recorded values"
        );
        assert!(
            lines[4].starts_with("cluster.backend.upstream_rq_time: P0(nan,1) P25(nan,"),
            "{}",
            lines[4]
        );
        assert!(lines[4].ends_with(" P100(nan,47)"), "{}", lines[4]);
        let q = Query {
            filter: Regex::new("rq_2").ok(),
            ..Query::default()
        };
        assert_eq!(text(&sample(), &q), "cluster.backend.upstream_rq_200: 3\n");
    }

    #[test]
    fn prometheus_groups_by_tag_extracted_name() {
        let p = prometheus(&sample(), &TagProducer::default(), &Query::default());
        let want_start = "# TYPE envoy_cluster_upstream_rq counter\n\
envoy_cluster_upstream_rq{envoy_response_code=\"200\",envoy_cluster_name=\"backend\"} 3\n\
envoy_cluster_upstream_rq{envoy_response_code=\"404\",envoy_cluster_name=\"backend\"} 1\n\
# TYPE envoy_server_live gauge\n\
envoy_server_live{} 1\n\
# TYPE envoy_cluster_upstream_cx_length_ms histogram\n";
        assert!(p.starts_with(want_start), "{p}");
        assert!(p.contains(
            "envoy_cluster_upstream_rq_time_bucket{envoy_cluster_name=\"backend\",le=\"1\"} 1\n"
        ));
        assert!(p.contains(
            "envoy_cluster_upstream_rq_time_bucket{envoy_cluster_name=\"backend\",le=\"50\"} 4\n"
        ));
        assert!(p.contains(
            "envoy_cluster_upstream_rq_time_bucket{envoy_cluster_name=\"backend\",le=\"+Inf\"} 4\n"
        ));
        assert!(
            p.contains("envoy_cluster_upstream_rq_time_sum{envoy_cluster_name=\"backend\"} 138\n")
        );
        assert!(
            p.contains("envoy_cluster_upstream_rq_time_count{envoy_cluster_name=\"backend\"} 4\n")
        );
    }

    #[test]
    fn json_puts_histograms_last() {
        let j: serde_json::Value =
            serde_json::from_str(&json(&sample(), &Query::default())).unwrap_or_default();
        let stats = j["stats"].as_array().cloned().unwrap_or_default();
        assert_eq!(stats[0]["name"], "cluster.backend.upstream_rq_200");
        let h = &stats[stats.len() - 1]["histograms"];
        assert_eq!(h["supported_quantiles"][7], 99.5);
        assert_eq!(
            h["computed_quantiles"][1]["name"],
            "cluster.backend.upstream_rq_time"
        );
        assert_eq!(h["computed_quantiles"][1]["values"][9]["cumulative"], 47.0);
        assert!(h["computed_quantiles"][1]["values"][9]["interval"].is_null());
    }
}
