//! Tag extraction as Envoy's `TagProducerImpl` does it: a stat's full name becomes a
//! tag-extracted name plus tags (`cluster.backend.upstream_rq_200` →
//! `cluster.upstream_rq` with `envoy.response_code=200`, `envoy.cluster_name=backend`),
//! for Prometheus and DogStatsD. Envoy's default extractors are here in Envoy's order;
//! `stats_config.stats_tags` adds regex or fixed-value tags before them.

use regex::Regex;

/// How one extractor finds its value.
#[derive(Debug, Clone)]
enum Matcher {
    /// A regex: the first group is removed from the name; the value is the second
    /// group if there is one, else the first.
    Regex {
        regex: Regex,
        /// A substring the name must contain (a cheap filter).
        substr: &'static str,
        /// A value that does not count as a match (`listener.admin.`).
        negative: &'static str,
    },
    /// A dot-separated pattern: `$` is the value, `*` one token, `**` any tokens.
    Tokens { tokens: Vec<String>, at: usize },
    /// A tag with a fixed value on every stat (`stats_tags` `fixed_value`).
    Fixed(String),
}

/// One tag extractor.
#[derive(Debug, Clone)]
pub struct Extractor {
    name: String,
    /// The first token the name must have (empty: any).
    prefix: String,
    matcher: Matcher,
}

/// A regex's literal first token, when it starts with `^token\.` (Envoy's
/// `extractRegexPrefix`): only names with that first token are tried.
fn regex_prefix(r: &str) -> String {
    let Some(rest) = r.strip_prefix('^') else {
        return String::new();
    };
    let end = rest
        .find(|c: char| !(c.is_ascii_alphanumeric() || c == '_'))
        .unwrap_or(rest.len());
    if end == 0 {
        return String::new();
    }
    let after = &rest[end..];
    if after.starts_with("\\.") || after.starts_with("(?=\\.)") || after == "$" {
        rest[..end].to_string()
    } else {
        String::new()
    }
}

fn expand(r: &str) -> String {
    r.replace(
        "<ADDRESS>",
        r"(?:(?:\d{1,3}\.\d{1,3}\.\d{1,3}\.\d{1,3}|\[[a-fA-F_\d]+\])_\d+)",
    )
    .replace("<CIPHER>", r"[\w-]+")
    .replace("<TLS_VERSION>", r"TLSv\d\.\d")
    .replace("<TAG_VALUE>", r"[^\.]+")
    .replace("<ROUTE_CONFIG_NAME>", r"[\w\-\./]+")
    .replace("<SCOPED_ROUTE_CONFIG_NAME>", r"[\w\-\.]+")
    .replace(
        "<LISTENER_OR_CLUSTER_WITH_NAME>",
        r"(?:listener|cluster)\..*?",
    )
    .replace("<PROXY_PROTOCOL_VERSION>", r"\d")
}

/// Envoy's regex extractors: (tag, regex, substr, negative match).
const DEFAULT_REGEXES: &[(&str, &str, &str, &str)] = &[
    ("envoy.response_code", r"_rq(_(\d{3}))$", "_rq_", ""),
    ("envoy.response_code_class", r"_rq_((\d))xx$", "_rq_", ""),
    (
        "envoy.dynamo_partition_id",
        r"^http\.<TAG_VALUE>\.dynamodb\.table\.<TAG_VALUE>\.capacity\.<TAG_VALUE>(\.__partition_id=(\w{7}))$",
        ".dynamodb.table.",
        "",
    ),
    (
        "envoy.dynamo_operation",
        r"^http\.<TAG_VALUE>\.dynamodb.(?:operation|table\.<TAG_VALUE>\.capacity)(\.(<TAG_VALUE>))(?:\.|$)",
        ".dynamodb.",
        "",
    ),
    (
        "envoy.dynamo_table",
        r"^http\.<TAG_VALUE>\.dynamodb.(?:table|error)\.((<TAG_VALUE>)\.)",
        ".dynamodb.",
        "",
    ),
    (
        "envoy.ssl_cipher",
        r"^listener\..*?\.ssl\.ciphers(\.(<CIPHER>))$",
        ".ssl.ciphers.",
        "",
    ),
    (
        "envoy.ssl_curve",
        r"^<LISTENER_OR_CLUSTER_WITH_NAME>\.ssl\.curves(\.(<CIPHER>))$",
        ".ssl.curves.",
        "",
    ),
    (
        "envoy.ssl_sigalg",
        r"^<LISTENER_OR_CLUSTER_WITH_NAME>\.ssl\.sigalgs(\.(<CIPHER>))$",
        ".ssl.sigalgs.",
        "",
    ),
    (
        "envoy.ssl_version",
        r"^<LISTENER_OR_CLUSTER_WITH_NAME>\.ssl\.versions(\.(<TLS_VERSION>))$",
        ".ssl.versions.",
        "",
    ),
    (
        "cipher_suite",
        r"^cluster\.<TAG_VALUE>\.ssl\.ciphers(\.(<CIPHER>))$",
        ".ssl.ciphers.",
        "",
    ),
    (
        "envoy.health_check_name",
        r"^cluster\.<TAG_VALUE>\.health_check(\.name\.(<TAG_VALUE>))\..+",
        ".health_check.",
        "",
    ),
    (
        "envoy.http_conn_manager_prefix",
        r"^listener\..*?\.http\.((<TAG_VALUE>)\.)",
        ".http.",
        "",
    ),
    (
        "envoy.worker_id",
        r"^(?:listener\.(?:<ADDRESS>|<TAG_VALUE>)|server|listener_manager|thread_local_cluster_manager)\.worker_((\d+)\.)",
        "",
        "",
    ),
    (
        "envoy.listener_address",
        r"^listener\.((<ADDRESS>|<TAG_VALUE>)\.)",
        "",
        "admin",
    ),
    (
        "envoy.rds_route_config",
        r"^http\.<TAG_VALUE>\.rds\.((<ROUTE_CONFIG_NAME>)\.)\w+?$",
        ".rds.",
        "",
    ),
    (
        "envoy.scoped_rds_config",
        r"^http\.<TAG_VALUE>\.scoped_rds\.((<SCOPED_ROUTE_CONFIG_NAME>)\.)\w+?$",
        ".scoped_rds.",
        "",
    ),
    (
        "envoy.rbac_policy_name",
        r"^http\.<TAG_VALUE>\.rbac\.(?:<TAG_VALUE>\.)?policy\.((<TAG_VALUE>)\.)(allowed|shadow_allowed|denied|shadow_denied)$",
        "",
        "",
    ),
    (
        "envoy.rbac_http_prefix",
        r"^http\.<TAG_VALUE>\.rbac\.((<TAG_VALUE>)\.).*?",
        "",
        "policy",
    ),
    (
        "envoy.proxy_protocol_prefix",
        r"^proxy_proto\.((<TAG_VALUE>)\.).+$",
        "",
        "versions",
    ),
    (
        "envoy.proxy_protocol_version",
        r"^proxy_proto\.((?:<TAG_VALUE>\.)?versions\.v(<PROXY_PROTOCOL_VERSION>)\.)\w+$",
        "",
        "",
    ),
    (
        "envoy.tls_certificate",
        r"^<LISTENER_OR_CLUSTER_WITH_NAME>\.ssl\.certificate\.((<TAG_VALUE>)\.).*$",
        ".ssl.certificate",
        "",
    ),
    (
        "envoy.xds_resource_name",
        r"^sds\.((<TAG_VALUE>)\.).+",
        "",
        "",
    ),
];

/// Envoy's tokenized extractors: (tag, pattern).
const DEFAULT_TOKENS: &[(&str, &str)] = &[
    (
        "envoy.mongo_callsite",
        "mongo.*.collection.*.callsite.$.query.**",
    ),
    ("envoy.mongo_collection", "mongo.*.collection.$.**.query.*"),
    ("envoy.mongo_cmd", "mongo.*.cmd.$.**"),
    ("envoy.grpc_bridge_method", "cluster.*.grpc.*.$.**"),
    ("envoy.http_user_agent", "http.*.user_agent.$.**"),
    ("envoy.virtual_cluster", "vhost.*.vcluster.$.**"),
    ("envoy.fault_downstream_cluster", "http.*.fault.$.**"),
    ("envoy.grpc_bridge_service", "cluster.*.grpc.$.**"),
    ("envoy.tcp_prefix", "tcp.$.**"),
    ("envoy.udp_prefix", "udp.$.**"),
    ("envoy.clientssl_prefix", "auth.clientssl.$.**"),
    ("envoy.ratelimit_prefix", "ratelimit.$.**"),
    ("envoy.cluster_name", "cluster.$.**"),
    ("envoy.ext_authz_prefix", "cluster.*.ext_authz.$.**"),
    ("envoy.ext_authz_prefix", "http.*.ext_authz.$.**"),
    ("envoy.http_conn_manager_prefix", "http.$.**"),
    ("envoy.virtual_host", "vhost.$.**"),
    ("envoy.mongo_prefix", "mongo.$.**"),
    ("envoy.route", "vhost.*.route.$.**"),
    ("envoy.thrift_prefix", "thrift.$.**"),
    ("envoy.redis_prefix", "redis.$.**"),
    (
        "envoy.local_http_ratelimit_prefix",
        "$.http_local_rate_limit.**",
    ),
    (
        "envoy.local_network_ratelimit_prefix",
        "local_rate_limit.$.**",
    ),
    (
        "envoy.local_listener_ratelimit_prefix",
        "listener_local_ratelimit.$.**",
    ),
    ("envoy.dns_filter_prefix", "dns_filter.$.**"),
    ("envoy.connection_limit_prefix", "connection_limit.$.**"),
    ("envoy.rbac_prefix", "$.rbac.**"),
    ("envoy.google_grpc_client_prefix", "grpc.$.**"),
];

impl Extractor {
    /// A regex extractor (`stats_tags` `regex`); the error names a bad regex or one
    /// without a capture group.
    pub fn regex(name: &str, regex: &str) -> Result<Extractor, String> {
        Self::regex_with(name, regex, "", "")
    }

    fn regex_with(
        name: &str,
        regex: &str,
        substr: &'static str,
        negative: &'static str,
    ) -> Result<Extractor, String> {
        let r = expand(regex);
        let compiled = Regex::new(&r).map_err(|e| e.to_string())?;
        if compiled.captures_len() < 2 {
            return Err(format!("{regex} has no capture group"));
        }
        Ok(Extractor {
            name: name.to_string(),
            prefix: regex_prefix(&r),
            matcher: Matcher::Regex {
                regex: compiled,
                substr,
                negative,
            },
        })
    }

    /// A tokenized extractor (`cluster.$.**`).
    fn tokens(name: &str, pattern: &str) -> Extractor {
        let tokens: Vec<String> = pattern.split('.').map(str::to_string).collect();
        let at = tokens.iter().position(|t| t == "$").unwrap_or(0);
        let prefix = match tokens[0].as_str() {
            "$" | "*" | "**" => String::new(),
            t => t.to_string(),
        };
        Extractor {
            name: name.to_string(),
            prefix,
            matcher: Matcher::Tokens { tokens, at },
        }
    }

    /// A tag with the same value on every stat (`stats_tags` `fixed_value`).
    pub fn fixed(name: &str, value: &str) -> Extractor {
        Extractor {
            name: name.to_string(),
            prefix: String::new(),
            matcher: Matcher::Fixed(value.to_string()),
        }
    }

    /// The tag's name.
    pub fn name(&self) -> &str {
        &self.name
    }

    /// Tries the extractor on `name`: the tag's value and the byte range to remove.
    fn extract(&self, name: &str) -> Option<(String, std::ops::Range<usize>)> {
        match &self.matcher {
            Matcher::Fixed(v) => Some((v.clone(), 0..0)),
            Matcher::Regex {
                regex,
                substr,
                negative,
            } => {
                if !substr.is_empty() && !name.contains(substr) {
                    return None;
                }
                let caps = regex.captures(name)?;
                let remove = caps.get(1)?;
                if remove.as_str().is_empty() {
                    return None;
                }
                let value = caps
                    .get(2)
                    .filter(|m| !m.as_str().is_empty())
                    .unwrap_or(remove)
                    .as_str();
                if !negative.is_empty() && value == *negative {
                    return None;
                }
                Some((value.to_string(), remove.range()))
            }
            Matcher::Tokens { tokens, at } => {
                let parts: Vec<&str> = name.split('.').collect();
                let (index, start) = token_search(&parts, tokens, *at, 0, 0, 0)?;
                let value = parts[index];
                let (mut from, mut to) = (start, start + value.len());
                if index < parts.len() - 1 {
                    to += 1;
                } else {
                    from = from.saturating_sub(1);
                }
                Some((value.to_string(), from..to))
            }
        }
    }
}

/// Matches `parts` from `pi` against `tokens` from `ti`; `offset` is the byte offset
/// of `parts[pi]`. Returns the index and byte offset of the `$` token.
fn token_search(
    parts: &[&str],
    tokens: &[String],
    at: usize,
    mut pi: usize,
    mut ti: usize,
    mut offset: usize,
) -> Option<(usize, usize)> {
    let mut found = None;
    while pi < parts.len() && ti < tokens.len() {
        if ti == at {
            found = Some((pi, offset));
        } else {
            let t = tokens[ti].as_str();
            if t == "**" {
                if ti == tokens.len() - 1 {
                    return found;
                }
                ti += 1;
                while pi < parts.len() {
                    if let Some(f) = token_search(parts, tokens, at, pi, ti, offset) {
                        return found.or(Some(f));
                    }
                    offset += parts[pi].len() + 1;
                    pi += 1;
                }
                return None;
            }
            if t != "*" && t != parts[pi] {
                return None;
            }
        }
        offset += parts[pi].len() + 1;
        pi += 1;
        ti += 1;
    }
    (ti == tokens.len() && pi == parts.len())
        .then_some(found)
        .flatten()
}

/// The extractors of a process, as Envoy's `TagProducerImpl` builds them: Envoy's
/// defaults (with `use_all_default_tags`, the default), then `stats_config.stats_tags`.
#[derive(Debug, Clone)]
pub struct TagProducer {
    extractors: Vec<Extractor>,
}

impl Default for TagProducer {
    /// Envoy's defaults alone.
    fn default() -> Self {
        TagProducer {
            extractors: defaults().collect(),
        }
    }
}

/// Envoy's default extractors, in Envoy's order.
fn defaults() -> impl Iterator<Item = Extractor> {
    DEFAULT_REGEXES
        .iter()
        .filter_map(|(n, r, s, neg)| Extractor::regex_with(n, r, s, neg).ok())
        .chain(DEFAULT_TOKENS.iter().map(|(n, p)| Extractor::tokens(n, p)))
}

/// A `stats_tags` entry.
#[derive(Debug, Clone)]
pub enum Custom {
    /// A regex or fixed-value extractor.
    Extractor(Extractor),
    /// A tag name alone: Envoy's default extractors of that name.
    DefaultOf(String),
}

impl TagProducer {
    /// Envoy's defaults if `use_defaults`, then `custom`. A tag name given twice (by
    /// two entries, or by an entry and a default) is an error, as in Envoy.
    pub fn new(custom: Vec<Custom>, use_defaults: bool) -> Result<TagProducer, String> {
        let mut extractors: Vec<Extractor> = Vec::new();
        let mut names: Vec<String> = Vec::new();
        if use_defaults {
            extractors.extend(defaults());
            names.extend(extractors.iter().map(|e| e.name.clone()));
        }
        for c in custom {
            let name = match &c {
                Custom::Extractor(e) => e.name.clone(),
                Custom::DefaultOf(n) => n.clone(),
            };
            if names.contains(&name) {
                return Err(format!("Tag name '{name}' specified twice."));
            }
            names.push(name.clone());
            match c {
                Custom::Extractor(e) => extractors.push(e),
                Custom::DefaultOf(n) => {
                    let before = extractors.len();
                    extractors.extend(defaults().filter(|e| e.name == n));
                    if extractors.len() == before {
                        return Err(format!(
                            "No regex specified for tag specifier and no default regex for name: '{n}'"
                        ));
                    }
                }
            }
        }
        Ok(TagProducer { extractors })
    }

    /// The tag-extracted name of `name` and its tags, in extraction order.
    pub fn produce(&self, name: &str) -> (String, Vec<(String, String)>) {
        let first = name.split_once('.').map(|(f, _)| f);
        let mut tags: Vec<(String, String)> = Vec::new();
        let mut remove: Vec<std::ops::Range<usize>> = Vec::new();
        // Extractors without a first token, then those for this name's first token.
        let unprefixed = self.extractors.iter().filter(|e| e.prefix.is_empty());
        let prefixed = self
            .extractors
            .iter()
            .filter(|e| !e.prefix.is_empty() && Some(e.prefix.as_str()) == first);
        for e in unprefixed.chain(prefixed) {
            // A tag name extracted once is not extracted again.
            if tags.iter().any(|(n, _)| *n == e.name) {
                continue;
            }
            if let Some((value, range)) = e.extract(name) {
                tags.push((e.name.clone(), value));
                remove.push(range);
            }
        }
        if remove.iter().all(|r| r.is_empty()) {
            return (name.to_string(), tags);
        }
        let mut out = String::with_capacity(name.len());
        for (i, c) in name.char_indices() {
            if !remove.iter().any(|r| r.contains(&i)) {
                out.push(c);
            }
        }
        (out, tags)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn produce(name: &str) -> String {
        let (n, tags) = TagProducer::default().produce(name);
        let tags: Vec<String> = tags.iter().map(|(k, v)| format!("{k}={v}")).collect();
        format!("{n} {}", tags.join(","))
    }

    #[test]
    fn envoys_default_tags() {
        // Expectations observed on Envoy 1.40's /stats/prometheus.
        assert_eq!(
            produce("cluster.backend.upstream_rq_200"),
            "cluster.upstream_rq envoy.response_code=200,envoy.cluster_name=backend"
        );
        assert_eq!(
            produce("cluster.backend.external.upstream_rq_2xx"),
            "cluster.external.upstream_rq_xx envoy.response_code_class=2,envoy.cluster_name=backend"
        );
        assert_eq!(
            produce("cluster.backend.upstream_rq_total"),
            "cluster.upstream_rq_total envoy.cluster_name=backend"
        );
        assert_eq!(
            produce("http.ingress.downstream_rq_2xx"),
            "http.downstream_rq_xx envoy.response_code_class=2,envoy.http_conn_manager_prefix=ingress"
        );
        assert_eq!(
            produce("listener.127.0.0.1_10000.downstream_cx_total"),
            "listener.downstream_cx_total envoy.listener_address=127.0.0.1_10000"
        );
        assert_eq!(
            produce("listener.127.0.0.1_10000.http.ingress.downstream_rq_2xx"),
            "listener.http.downstream_rq_xx envoy.response_code_class=2,envoy.http_conn_manager_prefix=ingress,envoy.listener_address=127.0.0.1_10000"
        );
        assert_eq!(
            produce("listener.127.0.0.1_10000.worker_0.downstream_cx_total"),
            "listener.worker_downstream_cx_total envoy.worker_id=0,envoy.listener_address=127.0.0.1_10000"
        );
        assert_eq!(
            produce("listener.admin.downstream_cx_total"),
            "listener.admin.downstream_cx_total "
        );
        assert_eq!(produce("server.live"), "server.live ");
        assert_eq!(
            produce("http.ingress.fault.aborts_injected"),
            "http.fault.aborts_injected envoy.http_conn_manager_prefix=ingress"
        );
        assert_eq!(
            produce("lrl.http_local_rate_limit.rate_limited"),
            "http_local_rate_limit.rate_limited envoy.local_http_ratelimit_prefix=lrl"
        );
    }

    #[test]
    fn custom_tags_come_after_the_defaults() {
        let cluster = || {
            Custom::Extractor(
                Extractor::regex("envoy.cluster_name", r"^cluster\.((.+?)\.)")
                    .unwrap_or_else(|e| panic!("{e}")),
            )
        };
        // A default's name again is an error, as in Envoy.
        assert!(TagProducer::new(vec![cluster()], true).is_err());
        let p = TagProducer::new(
            vec![
                cluster(),
                Custom::Extractor(Extractor::fixed("mesh", "demo")),
            ],
            false,
        )
        .unwrap_or_else(|e| panic!("{e}"));
        let (n, tags) = p.produce("cluster.a.upstream_rq_total");
        assert_eq!(n, "cluster.upstream_rq_total");
        // Fixed tags first (they need no first token), then the rest in order.
        assert_eq!(
            tags,
            [
                ("mesh".to_string(), "demo".to_string()),
                ("envoy.cluster_name".to_string(), "a".to_string())
            ]
        );
        // A name alone takes Envoy's default extractor of that name.
        let p = TagProducer::new(vec![Custom::DefaultOf("envoy.cluster_name".into())], false)
            .unwrap_or_else(|e| panic!("{e}"));
        assert_eq!(p.produce("cluster.a.upstream_rq_200").1.len(), 1);
        assert!(TagProducer::new(vec![Custom::DefaultOf("nope".into())], false).is_err());
        assert!(Extractor::regex("x", "no_group").is_err());
    }
}
