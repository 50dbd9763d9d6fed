//! The bootstrap's stats settings: `stats_config` (tags, the stats matcher),
//! `stats_sinks` (statsd, DogStatsD) and `stats_flush_interval`.

use crate::grpc_service::{grpc_cluster, GrpcTarget};
use crate::matcher::{string_matcher, StringMatcher};
use crate::util::duration;
use crate::Ctx;
use ferry_envoy_api::pb::envoy::config::bootstrap::v3 as bpb;
use ferry_envoy_api::pb::envoy::config::metrics::v3 as pb;
use ferry_envoy_api::pb::envoy::r#type::matcher::v3 as type_matcher;
use std::net::SocketAddr;
use std::time::Duration;

/// Envoy's default `stats_flush_interval`.
pub const DEFAULT_FLUSH_INTERVAL: Duration = Duration::from_secs(5);

/// A `stats_tags` entry.
#[derive(Debug, Clone)]
pub enum TagValue {
    /// `regex`: the first capture group is removed, the value is the second (or first).
    Regex(String),
    /// `fixed_value`: the tag on every stat.
    Fixed(String),
    /// Neither: Envoy's default extractor of that tag name.
    Default,
}

/// Which stats exist (`stats_matcher`).
#[derive(Debug, Clone, Default)]
pub enum StatsMatcher {
    /// Every stat (no matcher).
    #[default]
    All,
    /// `reject_all: true`.
    None,
    /// `inclusion_list`: only stats matching one of these.
    Include(Vec<StringMatcher>),
    /// `exclusion_list`: every stat but those matching one of these.
    Exclude(Vec<StringMatcher>),
}

impl StatsMatcher {
    /// Whether the stat called `name` is kept.
    pub fn accepts(&self, name: &str) -> bool {
        match self {
            StatsMatcher::All => true,
            StatsMatcher::None => false,
            StatsMatcher::Include(m) => m.iter().any(|m| m.matches(name)),
            StatsMatcher::Exclude(m) => !m.iter().any(|m| m.matches(name)),
        }
    }
}

/// Where a statsd sink sends.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum StatsdTarget {
    /// `address`: UDP.
    Udp(SocketAddr),
    /// `tcp_cluster_name`: TCP to a host of this cluster.
    Tcp(String),
}

/// A `stats_sinks` entry.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum StatsSink {
    /// `envoy.stat_sinks.statsd`: full names, no tags.
    Statsd {
        /// Where to.
        target: StatsdTarget,
        /// `prefix` (default `envoy`).
        prefix: String,
    },
    /// `envoy.stat_sinks.dog_statsd`: tag-extracted names with `|#tag:value`.
    DogStatsd {
        /// `address` (UDP).
        address: SocketAddr,
        /// `prefix` (default `envoy`).
        prefix: String,
        /// `max_bytes_per_datagram`: lines joined per datagram up to this size (unset:
        /// one per datagram).
        max_bytes_per_datagram: Option<u64>,
    },
    /// `envoy.stat_sinks.open_telemetry`: OTLP metrics over gRPC to a cluster.
    OpenTelemetry(OtlpSink),
}

/// An `envoy.stat_sinks.open_telemetry` sink.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct OtlpSink {
    /// `grpc_service` (its timeout unset: an export is bounded by the flush interval).
    pub grpc: GrpcTarget,
    /// `report_counters_as_deltas`.
    pub counters_as_deltas: bool,
    /// `report_histograms_as_deltas`.
    pub histograms_as_deltas: bool,
    /// `emit_tags_as_attributes` (default true).
    pub emit_tags_as_attributes: bool,
    /// `use_tag_extracted_name` (default true).
    pub use_tag_extracted_name: bool,
    /// `prefix` (names become `<prefix>.<name>`; empty: none).
    pub prefix: String,
}

/// The bootstrap's stats settings.
#[derive(Debug, Clone)]
pub struct Stats {
    /// `stats_config.stats_tags`, in order.
    pub tags: Vec<(String, TagValue)>,
    /// `stats_config.use_all_default_tags` (default true).
    pub use_all_default_tags: bool,
    /// `stats_config.stats_matcher`.
    pub matcher: StatsMatcher,
    /// `stats_sinks`.
    pub sinks: Vec<StatsSink>,
    /// `stats_flush_interval` (default 5 s).
    pub flush_interval: Duration,
}

impl Default for Stats {
    fn default() -> Self {
        Stats {
            tags: Vec::new(),
            use_all_default_tags: true,
            matcher: StatsMatcher::All,
            sinks: Vec::new(),
            flush_interval: DEFAULT_FLUSH_INTERVAL,
        }
    }
}

/// Converts the bootstrap's stats fields.
pub fn from_proto(b: &bpb::Bootstrap, ctx: &mut Ctx) -> Stats {
    let mut out = Stats::default();
    if let Some(sc) = &b.stats_config {
        ctx.at("stats_config", |c| config(sc, &mut out, c));
    }
    for (i, s) in b.stats_sinks.iter().enumerate() {
        if let Some(s) = ctx.at(format!("stats_sinks[{i}]"), |c| sink(s, c)) {
            out.sinks.push(s);
        }
    }
    if let Some(d) = duration(&b.stats_flush_interval, "stats_flush_interval", ctx) {
        if d < Duration::from_millis(1) || d > Duration::from_secs(300) {
            ctx.error_at(
                "stats_flush_interval",
                "must be at least 1 ms and at most 300 s",
            );
        } else {
            out.flush_interval = d;
        }
    }
    out
}

fn config(sc: &pb::StatsConfig, out: &mut Stats, ctx: &mut Ctx) {
    use pb::tag_specifier::TagValue as V;
    crate::fields!(ctx, sc => pb::StatsConfig {
        stats_tags, use_all_default_tags, stats_matcher,
    } refused {
        histogram_bucket_settings, allow_default_tag_overrides,
    });
    for (i, t) in sc.stats_tags.iter().enumerate() {
        ctx.at(format!("stats_tags[{i}]"), |c| {
            crate::fields!(c, t => pb::TagSpecifier {
                tag_name, tag_value: ["regex", "fixed_value"],
            });
            if t.tag_name.is_empty() {
                c.error_at("tag_name", "is required");
                return;
            }
            let value = match &t.tag_value {
                Some(V::Regex(r)) => match regex::Regex::new(r) {
                    Ok(re) if re.captures_len() >= 2 => TagValue::Regex(r.clone()),
                    Ok(_) => {
                        c.error_at("regex", "must have a capture group");
                        return;
                    }
                    Err(e) => {
                        c.error_at("regex", format!("invalid regex: {e}"));
                        return;
                    }
                },
                Some(V::FixedValue(v)) => TagValue::Fixed(v.clone()),
                // A default tag's name alone: Envoy uses its default regex.
                None => TagValue::Default,
            };
            out.tags.push((t.tag_name.clone(), value));
        });
    }
    out.use_all_default_tags = sc.use_all_default_tags.is_none_or(|v| v.value);
    if let Some(m) = &sc.stats_matcher {
        use pb::stats_matcher::StatsMatcher as M;
        out.matcher = ctx.at("stats_matcher", |c| {
            crate::fields!(c, m => pb::StatsMatcher {
                stats_matcher: ["reject_all", "exclusion_list", "inclusion_list"],
            });
            match &m.stats_matcher {
                Some(M::RejectAll(true)) => StatsMatcher::None,
                Some(M::RejectAll(false)) | None => StatsMatcher::All,
                Some(M::InclusionList(l)) => {
                    StatsMatcher::Include(c.at("inclusion_list", |c| matchers(l, c)))
                }
                Some(M::ExclusionList(l)) => {
                    StatsMatcher::Exclude(c.at("exclusion_list", |c| matchers(l, c)))
                }
            }
        });
    }
}

fn matchers(l: &type_matcher::ListStringMatcher, ctx: &mut Ctx) -> Vec<StringMatcher> {
    crate::fields!(ctx, l => type_matcher::ListStringMatcher {
        patterns,
    });
    l.patterns
        .iter()
        .enumerate()
        .filter_map(|(i, p)| ctx.at(format!("patterns[{i}]"), |c| string_matcher(p, c)))
        .collect()
}

fn prefix(p: &str) -> String {
    if p.is_empty() {
        "envoy".to_string()
    } else {
        p.to_string()
    }
}

fn sink(s: &pb::StatsSink, ctx: &mut Ctx) -> Option<StatsSink> {
    crate::fields!(ctx, s => pb::StatsSink {
        name, config_type: ["typed_config"],
    });
    let Some(pb::stats_sink::ConfigType::TypedConfig(any)) = &s.config_type else {
        ctx.error_at("typed_config", "is required");
        return None;
    };
    let ty = crate::support::known_type(ctx, &s.name, any, &[STATSD, DOG_STATSD, OPEN_TELEMETRY])?;
    ctx.at("typed_config", |c| match ty {
        STATSD => {
            let s: pb::StatsdSink = crate::any::unpack(any, c)?;
            crate::fields!(c, &s => pb::StatsdSink as "envoy.stat_sinks.statsd" {
                statsd_specifier: ["address", "tcp_cluster_name"], prefix,
            });
            use pb::statsd_sink::StatsdSpecifier as S;
            let target = match &s.statsd_specifier {
                Some(S::Address(a)) => StatsdTarget::Udp(c.at("address", |c| {
                    crate::util::udp_socket_addr(&Some(a.clone()), c)
                })?),
                Some(S::TcpClusterName(n)) if !n.is_empty() => StatsdTarget::Tcp(n.clone()),
                _ => {
                    c.error("one of address or tcp_cluster_name is required");
                    return None;
                }
            };
            Some(StatsSink::Statsd {
                target,
                prefix: prefix(&s.prefix),
            })
        }
        DOG_STATSD => {
            let s: pb::DogStatsdSink = crate::any::unpack(any, c)?;
            crate::fields!(c, &s => pb::DogStatsdSink as "envoy.stat_sinks.dog_statsd" {
                dog_statsd_specifier: ["address"], prefix, max_bytes_per_datagram,
            });
            use pb::dog_statsd_sink::DogStatsdSpecifier as S;
            let Some(S::Address(a)) = &s.dog_statsd_specifier else {
                c.error_at("address", "is required");
                return None;
            };
            let address = c.at("address", |c| {
                crate::util::udp_socket_addr(&Some(a.clone()), c)
            })?;
            Some(StatsSink::DogStatsd {
                address,
                prefix: prefix(&s.prefix),
                max_bytes_per_datagram: s.max_bytes_per_datagram.map(|v| v.value),
            })
        }
        OPEN_TELEMETRY => {
            use ferry_envoy_api::pb::envoy::extensions::stat_sinks::open_telemetry::v3::{
                sink_config::ProtocolSpecifier, SinkConfig,
            };
            let s: SinkConfig = crate::any::unpack(any, c)?;
            crate::fields!(c, &s => SinkConfig as "envoy.stat_sinks.open_telemetry" {
                protocol_specifier: ["grpc_service"], report_counters_as_deltas,
                report_histograms_as_deltas, emit_tags_as_attributes, use_tag_extracted_name,
                prefix,
            } refused {
                resource_detectors, custom_metric_conversions, max_data_points_per_request,
            });
            let grpc = match &s.protocol_specifier {
                Some(ProtocolSpecifier::GrpcService(g)) => Some(g.clone()),
                // Refused by fields! above.
                Some(ProtocolSpecifier::HttpService(_)) => return None,
                None => None,
            };
            let grpc = grpc_cluster(&grpc, "grpc_service", c)?;
            Some(StatsSink::OpenTelemetry(OtlpSink {
                grpc,
                counters_as_deltas: s.report_counters_as_deltas,
                histograms_as_deltas: s.report_histograms_as_deltas,
                emit_tags_as_attributes: s.emit_tags_as_attributes.is_none_or(|v| v.value),
                use_tag_extracted_name: s.use_tag_extracted_name.is_none_or(|v| v.value),
                prefix: s.prefix.clone(),
            }))
        }
        _ => None,
    })
}

const STATSD: &str = "envoy.config.metrics.v3.StatsdSink";
const DOG_STATSD: &str = "envoy.config.metrics.v3.DogStatsdSink";
const OPEN_TELEMETRY: &str = "envoy.extensions.stat_sinks.open_telemetry.v3.SinkConfig";

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::expect_used)]
    use crate::bootstrap::load;
    use crate::stats::{StatsSink, StatsdTarget};
    use ferry_envoy_api::Format;

    fn statsd(protocol: &str) -> Result<StatsSink, String> {
        let yaml = format!(
            r#"
stats_sinks:
- name: envoy.stat_sinks.statsd
  typed_config:
    "@type": type.googleapis.com/envoy.config.metrics.v3.StatsdSink
    address: {{socket_address: {{{protocol}address: 127.0.0.1, port_value: 8125}}}}
"#
        );
        match load(&yaml, Format::Yaml) {
            Ok(l) => Ok(l.bootstrap.stats.sinks[0].clone()),
            Err(e) => Err(e.to_string()),
        }
    }

    #[test]
    fn a_statsd_address_may_say_udp_or_leave_the_default() {
        let udp = StatsSink::Statsd {
            target: StatsdTarget::Udp(([127, 0, 0, 1], 8125).into()),
            prefix: "envoy".into(),
        };
        assert_eq!(statsd("protocol: UDP, "), Ok(udp.clone()));
        assert_eq!(statsd(""), Ok(udp.clone()));
        assert_eq!(statsd("protocol: TCP, "), Ok(udp));
    }

    #[test]
    fn a_listener_address_still_refuses_udp() {
        let yaml = r#"
static_resources:
  listeners:
  - address: {socket_address: {protocol: UDP, address: 127.0.0.1, port_value: 10000}}
    filter_chains: [{filters: [{name: envoy.filters.network.tcp_proxy, typed_config: {"@type": type.googleapis.com/envoy.extensions.filters.network.tcp_proxy.v3.TcpProxy, stat_prefix: t, cluster: c}}]}]
"#;
        let Err(err) = load(yaml, Format::Yaml) else {
            panic!("a UDP listener was accepted");
        };
        let err = err.to_string();
        assert!(
            err.contains("address.socket_address.protocol: only TCP is supported"),
            "{err}"
        );
    }
}
