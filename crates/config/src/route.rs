//! Route configuration: virtual hosts, route matches and actions, precompiled.

use crate::matcher::{header_matcher, regex_matcher, search_regex_matcher, string_matcher};
use crate::matcher::{HeaderMatcher, StringMatcher};
use crate::retry::{HedgePolicy, MirrorPolicy, RetryPolicy};
use crate::util::{duration, timeout, HeaderMutations};
use crate::Ctx;
use ferry_envoy_api::pb::envoy::config::route::v3 as pb;
use ferry_envoy_api::pb::envoy::r#type::matcher::v3 as type_matcher;
use std::collections::HashMap;
use std::sync::Arc;
use std::time::Duration;

/// Envoy's default route timeout.
pub const DEFAULT_ROUTE_TIMEOUT: Duration = Duration::from_secs(15);

/// A route configuration (`RouteConfiguration`).
#[derive(Debug, Clone)]
pub struct RouteConfig {
    /// `name`.
    pub name: String,
    /// `virtual_hosts`, in config order.
    pub virtual_hosts: Vec<VirtualHost>,
    /// Domain index into `virtual_hosts`.
    pub domains: DomainIndex,
    /// Header mutations at route-config level.
    pub headers: HeaderMutations,
}

/// Virtual host lookup by `Host`, with Envoy's precedence: exact, then the longest
/// `*.suffix` wildcard, then the longest `prefix.*` wildcard, then `*`.
#[derive(Debug, Clone, Default)]
pub struct DomainIndex {
    exact: HashMap<String, usize>,
    /// (suffix including the leading `.` or `-`, vhost), longest first.
    suffixes: Vec<(String, usize)>,
    /// (prefix, vhost), longest first.
    prefixes: Vec<(String, usize)>,
    default: Option<usize>,
}

impl DomainIndex {
    /// The virtual host for a lower-cased `:authority`. The port, when present, is part
    /// of the match (Envoy's default: `ignore_port_in_host_matching` is off).
    pub fn find(&self, host: &str) -> Option<usize> {
        self.find_exactly(host)
    }

    fn find_exactly(&self, host: &str) -> Option<usize> {
        if let Some(i) = self.exact.get(host) {
            return Some(*i);
        }
        // Wildcards must match at least one character.
        for (suffix, i) in &self.suffixes {
            if host.len() > suffix.len() && host.ends_with(suffix.as_str()) {
                return Some(*i);
            }
        }
        for (prefix, i) in &self.prefixes {
            if host.len() > prefix.len() && host.starts_with(prefix.as_str()) {
                return Some(*i);
            }
        }
        self.default
    }
}

/// `host:port` → `host`, leaving IPv6 literals (`[::1]:80` → `[::1]`) intact.
pub fn strip_port(host: &str) -> &str {
    if let Some(end) = host.rfind(']') {
        return &host[..=end];
    }
    match host.rfind(':') {
        Some(i) if host[i + 1..].chars().all(|c| c.is_ascii_digit()) => &host[..i],
        _ => host,
    }
}

/// A virtual host.
#[derive(Debug, Clone)]
pub struct VirtualHost {
    /// `name`.
    pub name: String,
    /// `routes`, first match wins.
    pub routes: Vec<Route>,
    /// Header mutations at virtual-host level.
    pub headers: HeaderMutations,
}

/// A route.
#[derive(Debug, Clone)]
pub struct Route {
    /// `name`.
    pub name: String,
    /// `match`.
    pub matcher: RouteMatch,
    /// `route` / `redirect` / `direct_response`.
    pub action: Action,
    /// Header mutations at route level.
    pub headers: HeaderMutations,
    /// `typed_per_filter_config` of the route, else of its virtual host, by filter name.
    pub per_filter: Vec<(String, crate::filters::PerRoute)>,
    /// `decorator`: the trace span's operation name on this route.
    pub decorator: Option<crate::trace::Decorator>,
}

/// `RouteMatch`.
#[derive(Debug, Clone)]
pub struct RouteMatch {
    /// The path specifier.
    pub path: PathMatch,
    /// `case_sensitive` (default true), for prefix and path.
    pub case_sensitive: bool,
    /// `headers`: all must match.
    pub headers: Vec<HeaderMatcher>,
    /// `query_parameters`: all must match.
    pub query_parameters: Vec<QueryParameterMatcher>,
    /// `grpc`: only requests with `content-type: application/grpc*`.
    pub grpc: bool,
}

/// The path part of a route match.
#[derive(Debug, Clone)]
pub enum PathMatch {
    /// `prefix`.
    Prefix(String),
    /// `path` (exact).
    Exact(String),
    /// `safe_regex` (matches the whole path, without the query).
    Regex(regex::Regex),
    /// `path_separated_prefix`: the prefix, then end of path, `?` or `/`.
    SeparatedPrefix(String),
}

/// `QueryParameterMatcher`.
#[derive(Debug, Clone)]
pub struct QueryParameterMatcher {
    /// Parameter name.
    pub name: String,
    /// None: present.
    pub value: Option<StringMatcher>,
}

/// What a matched route does.
#[derive(Debug, Clone)]
pub enum Action {
    /// Forward upstream.
    Route(Box<RouteAction>),
    /// Answer with a redirect.
    Redirect(Redirect),
    /// Answer directly.
    DirectResponse(DirectResponse),
}

/// `RouteAction`.
#[derive(Debug, Clone)]
pub struct RouteAction {
    /// Which cluster.
    pub cluster: ClusterSpecifier,
    /// `prefix_rewrite`.
    pub prefix_rewrite: Option<String>,
    /// `regex_rewrite`: (pattern, substitution with `\N` groups).
    pub regex_rewrite: Option<(regex::Regex, String)>,
    /// Host rewriting.
    pub host_rewrite: HostRewrite,
    /// `timeout` (default 15 s; zero disables).
    pub timeout: Option<Duration>,
    /// `idle_timeout` (stream idle timeout override; zero disables).
    pub idle_timeout: Option<Option<Duration>>,
    /// `hash_policy`, for RING_HASH and MAGLEV clusters.
    pub hash_policy: Vec<HashPolicy>,
    /// `cluster_not_found_response_code` (503 default, or 404, or 500).
    pub cluster_not_found_status: http::StatusCode,
    /// `retry_policy` of the route, else of its virtual host.
    pub retry_policy: Option<Arc<RetryPolicy>>,
    /// `hedge_policy` of the route, else of its virtual host.
    pub hedge_policy: HedgePolicy,
    /// `request_mirror_policies`.
    pub mirrors: Vec<MirrorPolicy>,
    /// `priority`: the circuit breakers' priority.
    pub priority: Priority,
    /// `per_request_buffer_limit_bytes` of the route, else of its virtual host (the
    /// listener's limit caps it).
    pub buffer_limit: Option<u32>,
    /// The virtual host's `include_request_attempt_count`.
    pub attempt_count_in_request: bool,
    /// The virtual host's `include_attempt_count_in_response`.
    pub attempt_count_in_response: bool,
    /// `max_stream_duration`, when set: the router's global timeout is off and the
    /// stream's duration is bounded instead.
    pub max_stream_duration: Option<MaxStreamDuration>,
    /// `max_grpc_timeout` (Some(None): unlimited), with `grpc_timeout_offset`.
    pub max_grpc_timeout: Option<(Option<Duration>, Duration)>,
    /// `rate_limits` of the route, else of its virtual host (descriptors for the local
    /// rate limit filter).
    pub rate_limits: Vec<crate::filters::rate_limit_actions::RateLimitRule>,
}

/// `RoutingPriority`.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub enum Priority {
    /// `DEFAULT`.
    #[default]
    Default,
    /// `HIGH`.
    High,
}

/// `RouteAction.max_stream_duration`.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct MaxStreamDuration {
    /// `max_stream_duration` (None: unbounded).
    pub max: Option<Duration>,
    /// `grpc_timeout_header_max`: when set, a `grpc-timeout` header bounds the stream,
    /// capped at this (Some(None): uncapped).
    pub grpc_header_max: Option<Option<Duration>>,
    /// `grpc_timeout_header_offset`: subtracted from `grpc-timeout`.
    pub grpc_header_offset: Duration,
}

/// What a route inherits from its virtual host.
#[derive(Debug, Default)]
struct VhostDefaults {
    retry_policy: Option<Arc<RetryPolicy>>,
    hedge_policy: HedgePolicy,
    buffer_limit: Option<u32>,
    attempt_count_in_request: bool,
    attempt_count_in_response: bool,
    per_filter: Vec<(String, crate::filters::PerRoute)>,
    rate_limits: Vec<crate::filters::rate_limit_actions::RateLimitRule>,
}

/// How the upstream cluster is chosen.
#[derive(Debug, Clone)]
pub enum ClusterSpecifier {
    /// `cluster`.
    Name(String),
    /// `cluster_header`: the cluster named by this request header.
    Header(http::HeaderName),
    /// `weighted_clusters`.
    Weighted(WeightedClusters),
}

/// `weighted_clusters`.
#[derive(Debug, Clone)]
pub struct WeightedClusters {
    /// The clusters with their weights and header mutations.
    pub clusters: Vec<WeightedCluster>,
    /// Sum of the weights (`total_weight` when given, which must equal it).
    pub total: u64,
}

/// One cluster of `weighted_clusters`.
#[derive(Debug, Clone)]
pub struct WeightedCluster {
    /// Cluster name.
    pub name: String,
    /// Weight.
    pub weight: u64,
    /// Per-cluster header mutations.
    pub headers: HeaderMutations,
}

/// Host header rewriting.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum HostRewrite {
    /// Keep the host.
    None,
    /// `host_rewrite_literal`.
    Literal(String),
    /// `auto_host_rewrite`: the upstream host's hostname (or address).
    Auto,
}

/// `hash_policy` entry.
#[derive(Debug, Clone)]
pub struct HashPolicy {
    /// What is hashed.
    pub kind: HashPolicyKind,
    /// `terminal`: stop at this policy when it produced a hash.
    pub terminal: bool,
}

/// The input of a hash policy.
#[derive(Debug, Clone)]
pub enum HashPolicyKind {
    /// A request header's value.
    Header(http::HeaderName),
    /// An existing cookie's value.
    Cookie {
        /// Cookie name.
        name: String,
    },
    /// The downstream source IP.
    SourceIp,
    /// A query parameter.
    QueryParameter(String),
}

/// `RedirectAction`.
#[derive(Debug, Clone)]
pub struct Redirect {
    /// `https_redirect` / `scheme_redirect`.
    pub scheme: Option<String>,
    /// `host_redirect`.
    pub host: Option<String>,
    /// `port_redirect`.
    pub port: Option<u16>,
    /// How the path changes.
    pub path: RedirectPath,
    /// `response_code` (301 default).
    pub status: http::StatusCode,
    /// `strip_query`.
    pub strip_query: bool,
}

/// The path of a redirect.
#[derive(Debug, Clone)]
pub enum RedirectPath {
    /// Keep the path.
    Keep,
    /// `path_redirect`.
    Path(String),
    /// `prefix_rewrite`: replaces the matched prefix.
    PrefixRewrite(String),
    /// `regex_rewrite`.
    Regex(regex::Regex, String),
}

/// `DirectResponseAction`.
#[derive(Debug, Clone)]
pub struct DirectResponse {
    /// `status`.
    pub status: http::StatusCode,
    /// `body`, if any.
    pub body: Option<bytes_body::Body>,
}

/// The body of a direct response, shared between requests.
pub mod bytes_body {
    /// Immutable body bytes.
    pub type Body = std::sync::Arc<[u8]>;
}

/// Converts a `RouteConfiguration`.
pub fn from_proto(rc: &pb::RouteConfiguration, ctx: &mut Ctx) -> RouteConfig {
    crate::fields!(ctx, rc => pb::RouteConfiguration {
        name, virtual_hosts, request_headers_to_add, request_headers_to_remove,
        response_headers_to_add, response_headers_to_remove, validate_clusters,
    } refused {
        internal_only_headers, vhds, most_specific_header_mutations_wins,
        max_direct_response_body_size_bytes, cluster_specifier_plugins, request_mirror_policies,
        ignore_port_in_host_matching, ignore_path_parameters_in_path_matching,
        typed_per_filter_config, metadata, vhost_header, route_specifiers,
    });
    let mut virtual_hosts = Vec::new();
    let mut domains = DomainIndex::default();
    let mut seen: HashMap<String, String> = HashMap::new();
    for (i, vh) in rc.virtual_hosts.iter().enumerate() {
        ctx.at(format!("virtual_hosts[{i}]"), |c| {
            crate::fields!(c, vh => pb::VirtualHost {
                name, domains, routes, request_headers_to_add, request_headers_to_remove,
                response_headers_to_add, response_headers_to_remove, retry_policy, hedge_policy,
                per_request_buffer_limit_bytes, include_request_attempt_count,
                include_attempt_count_in_response, typed_per_filter_config, rate_limits,
            } refused {
                require_tls, virtual_clusters, cors, retry_policy_typed_config, matcher,
                request_mirror_policies, include_is_timeout_retry_header, metadata,
                request_body_buffer_limit, route_specifiers,
            });
            let idx = virtual_hosts.len();
            if vh.domains.is_empty() {
                c.error_at("domains", "at least one domain is required");
            }
            for (j, d) in vh.domains.iter().enumerate() {
                let d = d.to_ascii_lowercase();
                if let Some(other) = seen.insert(d.clone(), vh.name.clone()) {
                    c.error_at(
                        &format!("domains[{j}]"),
                        format!("only unique values for domains are permitted: {d:?} is also in virtual host {other:?}"),
                    );
                    continue;
                }
                if d == "*" {
                    domains.default = Some(idx);
                } else if let Some(rest) = d.strip_prefix('*') {
                    domains.suffixes.push((rest.to_string(), idx));
                } else if let Some(rest) = d.strip_suffix('*') {
                    domains.prefixes.push((rest.to_string(), idx));
                } else {
                    domains.exact.insert(d, idx);
                }
            }
            let defaults = VhostDefaults {
                retry_policy: vh.retry_policy.as_ref().map(|p| {
                    Arc::new(c.at("retry_policy", |c| crate::retry::retry_policy(p, c)))
                }),
                hedge_policy: vh
                    .hedge_policy
                    .as_ref()
                    .map(|h| c.at("hedge_policy", |c| crate::retry::hedge_policy(h, c)))
                    .unwrap_or_default(),
                buffer_limit: vh.per_request_buffer_limit_bytes.map(|v| v.value),
                attempt_count_in_request: vh.include_request_attempt_count,
                attempt_count_in_response: vh.include_attempt_count_in_response,
                per_filter: crate::filters::per_route(&vh.typed_per_filter_config, c),
                rate_limits: crate::filters::rate_limit_actions::rules(&vh.rate_limits, c),
            };
            let routes = vh
                .routes
                .iter()
                .enumerate()
                .filter_map(|(j, r)| c.at(format!("routes[{j}]"), |c| route(r, &defaults, c)))
                .collect();
            let headers = HeaderMutations::from_proto(
                &vh.request_headers_to_add,
                &vh.request_headers_to_remove,
                &vh.response_headers_to_add,
                &vh.response_headers_to_remove,
                c,
            );
            virtual_hosts.push(VirtualHost {
                name: vh.name.clone(),
                routes,
                headers,
            });
        });
    }
    domains
        .suffixes
        .sort_by_key(|s| std::cmp::Reverse(s.0.len()));
    domains
        .prefixes
        .sort_by_key(|p| std::cmp::Reverse(p.0.len()));
    RouteConfig {
        name: rc.name.clone(),
        virtual_hosts,
        domains,
        headers: HeaderMutations::from_proto(
            &rc.request_headers_to_add,
            &rc.request_headers_to_remove,
            &rc.response_headers_to_add,
            &rc.response_headers_to_remove,
            ctx,
        ),
    }
}

fn route(r: &pb::Route, defaults: &VhostDefaults, ctx: &mut Ctx) -> Option<Route> {
    use pb::route::Action as A;
    crate::fields!(ctx, r => pb::Route {
        name, r#match, action: ["route", "redirect", "direct_response"], request_headers_to_add,
        request_headers_to_remove, response_headers_to_add, response_headers_to_remove,
        per_request_buffer_limit_bytes, typed_per_filter_config, decorator,
    } refused {
        metadata, tracing, stat_prefix, request_body_buffer_limit, route_specifiers,
    });
    // The match and the action are both converted (and their errors reported) before
    // a failed one drops the route.
    let matcher = match &r.r#match {
        Some(m) => ctx.at("match", |c| route_match(m, c)),
        None => {
            ctx.error_at("match", "is required");
            None
        }
    };
    let action = match &r.action {
        Some(A::Route(ra)) => {
            ctx.at("route", |c| route_action(ra, defaults, c))
                .map(|mut action| {
                    if let Some(limit) = r.per_request_buffer_limit_bytes {
                        action.buffer_limit = Some(limit.value);
                    }
                    Action::Route(Box::new(action))
                })
        }
        Some(A::Redirect(rd)) => ctx
            .at("redirect", |c| redirect(rd, c))
            .map(Action::Redirect),
        Some(A::DirectResponse(d)) => ctx
            .at("direct_response", |c| direct_response(d, c))
            .map(Action::DirectResponse),
        // Refused by `fields!`.
        Some(A::FilterAction(_) | A::NonForwardingAction(_)) => None,
        None => {
            ctx.error("an action (route, redirect or direct_response) is required");
            None
        }
    };
    let headers = HeaderMutations::from_proto(
        &r.request_headers_to_add,
        &r.request_headers_to_remove,
        &r.response_headers_to_add,
        &r.response_headers_to_remove,
        ctx,
    );
    // The route's per-filter configs replace its virtual host's, filter by filter.
    let mut per_filter = crate::filters::per_route(&r.typed_per_filter_config, ctx);
    for (name, cfg) in &defaults.per_filter {
        if !per_filter.iter().any(|(n, _)| n == name) {
            per_filter.push((name.clone(), cfg.clone()));
        }
    }
    let decorator = r.decorator.as_ref().map(|d| {
        ctx.at("decorator", |c| {
            crate::fields!(c, d => pb::Decorator {
                operation, propagate,
            });
            if d.operation.is_empty() {
                c.error_at("operation", "is required");
            }
            crate::trace::Decorator {
                operation: d.operation.clone(),
                propagate: d.propagate.map(|b| b.value).unwrap_or(true),
            }
        })
    });
    Some(Route {
        name: r.name.clone(),
        matcher: matcher?,
        action: action?,
        headers,
        per_filter,
        decorator,
    })
}

fn route_match(m: &pb::RouteMatch, ctx: &mut Ctx) -> Option<RouteMatch> {
    use pb::route_match::PathSpecifier as P;
    crate::fields!(ctx, m => pb::RouteMatch {
        path_specifier: ["prefix", "path", "safe_regex", "path_separated_prefix"],
        case_sensitive, headers, query_parameters, grpc,
    } refused {
        runtime_fraction, tls_context, dynamic_metadata, filter_state, cookies,
    });
    let case_sensitive = m.case_sensitive.map(|b| b.value).unwrap_or(true);
    let fold = |s: &String| {
        if case_sensitive {
            s.clone()
        } else {
            s.to_ascii_lowercase()
        }
    };
    // The headers and query parameters are converted even when the path fails.
    let path = match &m.path_specifier {
        Some(P::Prefix(p)) => Some(PathMatch::Prefix(fold(p))),
        Some(P::Path(p)) => Some(PathMatch::Exact(fold(p))),
        Some(P::SafeRegex(r)) => ctx
            .at("safe_regex", |c| regex_matcher(r, c))
            .map(PathMatch::Regex),
        Some(P::PathSeparatedPrefix(p)) => {
            if p.contains(['?', '#']) || (p.ends_with('/') && p.len() > 1) {
                ctx.error_at(
                    "path_separated_prefix",
                    "must not contain ? or # nor end in /",
                );
            }
            Some(PathMatch::SeparatedPrefix(fold(p)))
        }
        // Refused by `fields!`.
        Some(P::ConnectMatcher(_) | P::PathMatchPolicy(_)) => None,
        None => {
            ctx.error(
                "a path specifier (prefix, path, safe_regex, path_separated_prefix) is required",
            );
            None
        }
    };
    let mut headers = Vec::new();
    for (i, h) in m.headers.iter().enumerate() {
        if let Some(h) = ctx.at(format!("headers[{i}]"), |c| header_matcher(h, c)) {
            headers.push(h);
        }
    }
    let mut query_parameters = Vec::new();
    for (i, q) in m.query_parameters.iter().enumerate() {
        use pb::query_parameter_matcher::QueryParameterMatchSpecifier as Q;
        ctx.at(format!("query_parameters[{i}]"), |c| {
            crate::fields!(c, q => pb::QueryParameterMatcher {
                name, query_parameter_match_specifier: ["string_match", "present_match"],
            });
            let value = match &q.query_parameter_match_specifier {
                Some(Q::StringMatch(s)) => Some(c.at("string_match", |c| string_matcher(s, c))?),
                Some(Q::PresentMatch(_)) | None => None,
            };
            query_parameters.push(QueryParameterMatcher {
                name: q.name.clone(),
                value,
            });
            Some(())
        });
    }
    if let Some(g) = &m.grpc {
        ctx.at("grpc", |ctx| {
            crate::fields!(ctx, g => pb::route_match::GrpcRouteMatchOptions {});
        });
    }
    Some(RouteMatch {
        path: path?,
        case_sensitive,
        headers,
        query_parameters,
        grpc: m.grpc.is_some(),
    })
}

fn route_action(
    ra: &pb::RouteAction,
    defaults: &VhostDefaults,
    ctx: &mut Ctx,
) -> Option<RouteAction> {
    use pb::route_action::ClusterSpecifier as C;
    use pb::route_action::HostRewriteSpecifier as HR;
    crate::fields!(ctx, ra => pb::RouteAction {
        cluster_specifier: ["cluster", "cluster_header", "weighted_clusters"], prefix_rewrite,
        regex_rewrite, host_rewrite_specifier: ["host_rewrite_literal", "auto_host_rewrite"],
        timeout, idle_timeout, hash_policy, cluster_not_found_response_code, retry_policy,
        hedge_policy, request_mirror_policies, priority, max_stream_duration, max_grpc_timeout,
        grpc_timeout_offset, rate_limits,
    } refused {
        metadata_match, include_vh_rate_limits, cors, upgrade_configs, internal_redirect_action,
        max_internal_redirects, retry_policy_typed_config, internal_redirect_policy,
        append_x_forwarded_host, flush_timeout, path_rewrite,
    } refused_extensions {
        early_data_policy, path_rewrite_policy,
    });
    // The rest of the action is converted (and its errors reported) even without a
    // cluster: `cluster?` comes last.
    let cluster = match &ra.cluster_specifier {
        Some(C::Cluster(name)) => {
            if name.is_empty() {
                ctx.error_at("cluster", "must not be empty");
            }
            Some(ClusterSpecifier::Name(name.clone()))
        }
        Some(C::ClusterHeader(h)) => {
            match http::HeaderName::from_bytes(h.to_ascii_lowercase().as_bytes()) {
                Ok(h) => Some(ClusterSpecifier::Header(h)),
                Err(_) => {
                    ctx.error_at("cluster_header", format!("invalid header name {h:?}"));
                    None
                }
            }
        }
        Some(C::WeightedClusters(w)) => ctx
            .at("weighted_clusters", |c| weighted(w, c))
            .map(ClusterSpecifier::Weighted),
        // Refused by `fields!`.
        Some(C::ClusterSpecifierPlugin(_) | C::InlineClusterSpecifierPlugin(_)) => None,
        None => {
            ctx.error("one of cluster, cluster_header or weighted_clusters is required");
            None
        }
    };
    let regex_rewrite = ra
        .regex_rewrite
        .as_ref()
        .and_then(|r| ctx.at("regex_rewrite", |c| regex_rewrite(r, c)));
    let host_rewrite = match &ra.host_rewrite_specifier {
        None => HostRewrite::None,
        Some(HR::HostRewriteLiteral(h)) => HostRewrite::Literal(h.clone()),
        Some(HR::AutoHostRewrite(b)) => {
            if b.value {
                HostRewrite::Auto
            } else {
                HostRewrite::None
            }
        }
        // Refused by `fields!`.
        Some(_) => HostRewrite::None,
    };
    let mut hash_policy = Vec::new();
    for (i, h) in ra.hash_policy.iter().enumerate() {
        use pb::route_action::hash_policy;
        use pb::route_action::hash_policy::PolicySpecifier as P;
        ctx.at(format!("hash_policy[{i}]"), |c| {
            crate::fields!(c, h => pb::route_action::HashPolicy {
                policy_specifier: ["header", "cookie", "connection_properties", "query_parameter"],
                terminal,
            });
            let kind = match &h.policy_specifier {
                Some(P::Header(hd)) => c.at("header", |c| {
                    crate::fields!(c, hd => hash_policy::Header {
                        header_name,
                    } refused {
                        regex_rewrite,
                    });
                    match http::HeaderName::from_bytes(
                        hd.header_name.to_ascii_lowercase().as_bytes(),
                    ) {
                        Ok(n) => Some(HashPolicyKind::Header(n)),
                        Err(_) => {
                            c.error_at("header_name", "invalid header name");
                            None
                        }
                    }
                }),
                Some(P::Cookie(ck)) => c.at("cookie", |c| {
                    crate::fields!(c, ck => hash_policy::Cookie {
                        name, ttl, path,
                    } refused {
                        attributes,
                    });
                    if ck.ttl.is_some() {
                        // With a ttl Envoy generates the cookie when it is missing.
                        c.error_at("ttl", "generating hash cookies is not supported (hash an existing cookie: leave ttl unset)");
                    }
                    Some(HashPolicyKind::Cookie { name: ck.name.clone() })
                }),
                Some(P::ConnectionProperties(cp)) => c.at("connection_properties", |_c| {
                    crate::fields!(_c, cp => hash_policy::ConnectionProperties {
                        source_ip,
                    });
                    cp.source_ip.then_some(HashPolicyKind::SourceIp)
                }),
                Some(P::QueryParameter(q)) => c.at("query_parameter", |_c| {
                    crate::fields!(_c, q => hash_policy::QueryParameter {
                        name,
                    });
                    Some(HashPolicyKind::QueryParameter(q.name.clone()))
                }),
                // Refused by `fields!`.
                Some(P::FilterState(_)) => None,
                None => {
                    c.error("a policy specifier is required");
                    None
                }
            };
            let Some(kind) = kind else {
                return;
            };
            hash_policy.push(HashPolicy {
                kind,
                terminal: h.terminal,
            });
        });
    }
    let cluster_not_found_status = match ra.cluster_not_found_response_code {
        0 => http::StatusCode::SERVICE_UNAVAILABLE,
        1 => http::StatusCode::NOT_FOUND,
        2 => http::StatusCode::INTERNAL_SERVER_ERROR,
        other => {
            ctx.error_at(
                "cluster_not_found_response_code",
                format!("unknown value {other}"),
            );
            http::StatusCode::SERVICE_UNAVAILABLE
        }
    };
    Some(RouteAction {
        prefix_rewrite: (!ra.prefix_rewrite.is_empty()).then(|| ra.prefix_rewrite.clone()),
        regex_rewrite,
        host_rewrite,
        timeout: timeout(&ra.timeout, Some(DEFAULT_ROUTE_TIMEOUT), "timeout", ctx),
        idle_timeout: ra
            .idle_timeout
            .as_ref()
            .map(|_| timeout(&ra.idle_timeout, None, "idle_timeout", ctx)),
        hash_policy,
        cluster_not_found_status,
        retry_policy: match &ra.retry_policy {
            Some(p) => Some(Arc::new(
                ctx.at("retry_policy", |c| crate::retry::retry_policy(p, c)),
            )),
            None => defaults.retry_policy.clone(),
        },
        hedge_policy: match &ra.hedge_policy {
            Some(h) => ctx.at("hedge_policy", |c| crate::retry::hedge_policy(h, c)),
            None => defaults.hedge_policy,
        },
        mirrors: ra
            .request_mirror_policies
            .iter()
            .enumerate()
            .map(|(i, m)| {
                ctx.at(format!("request_mirror_policies[{i}]"), |c| {
                    crate::retry::mirror_policy(m, c)
                })
            })
            .collect(),
        priority: match ra.priority {
            0 => Priority::Default,
            1 => Priority::High,
            other => {
                ctx.error_at("priority", format!("unknown value {other}"));
                Priority::Default
            }
        },
        buffer_limit: defaults.buffer_limit,
        attempt_count_in_request: defaults.attempt_count_in_request,
        attempt_count_in_response: defaults.attempt_count_in_response,
        max_stream_duration: ra.max_stream_duration.as_ref().map(|m| {
            ctx.at("max_stream_duration", |c| {
                crate::fields!(c, m => pb::route_action::MaxStreamDuration {
                    max_stream_duration, grpc_timeout_header_max, grpc_timeout_header_offset,
                });
                MaxStreamDuration {
                    max: timeout(&m.max_stream_duration, None, "max_stream_duration", c),
                    grpc_header_max: m.grpc_timeout_header_max.as_ref().map(|_| {
                        timeout(
                            &m.grpc_timeout_header_max,
                            None,
                            "grpc_timeout_header_max",
                            c,
                        )
                    }),
                    grpc_header_offset: duration(
                        &m.grpc_timeout_header_offset,
                        "grpc_timeout_header_offset",
                        c,
                    )
                    .unwrap_or_default(),
                }
            })
        }),
        rate_limits: if ra.rate_limits.is_empty() {
            defaults.rate_limits.clone()
        } else {
            crate::filters::rate_limit_actions::rules(&ra.rate_limits, ctx)
        },
        max_grpc_timeout: ra.max_grpc_timeout.as_ref().map(|_| {
            (
                timeout(&ra.max_grpc_timeout, None, "max_grpc_timeout", ctx),
                duration(&ra.grpc_timeout_offset, "grpc_timeout_offset", ctx).unwrap_or_default(),
            )
        }),
        cluster: cluster?,
    })
}

/// Converts a `RegexMatchAndSubstitute` (`regex_rewrite`): the pattern, searched, and
/// the substitution in the regex crate's syntax.
fn regex_rewrite(
    r: &type_matcher::RegexMatchAndSubstitute,
    ctx: &mut Ctx,
) -> Option<(regex::Regex, String)> {
    crate::fields!(ctx, r => type_matcher::RegexMatchAndSubstitute {
        pattern, substitution,
    });
    let pattern = ctx.at("pattern", |c| match &r.pattern {
        Some(p) => search_regex_matcher(p, c),
        None => {
            c.error("is required");
            None
        }
    })?;
    Some((pattern, convert_substitution(&r.substitution)))
}

/// Envoy (RE2) writes groups as `\1`; the regex crate as `${1}`.
fn convert_substitution(s: &str) -> String {
    let mut out = String::new();
    let mut chars = s.chars().peekable();
    while let Some(c) = chars.next() {
        match c {
            '\\' => match chars.peek() {
                Some(d) if d.is_ascii_digit() => {
                    out.push_str(&format!("${{{d}}}"));
                    chars.next();
                }
                Some('\\') => {
                    out.push('\\');
                    chars.next();
                }
                _ => out.push('\\'),
            },
            '$' => out.push_str("$$"),
            other => out.push(other),
        }
    }
    out
}

fn weighted(w: &pb::WeightedCluster, ctx: &mut Ctx) -> Option<WeightedClusters> {
    crate::fields!(ctx, w => pb::WeightedCluster {
        clusters, total_weight,
    } refused {
        runtime_key_prefix,
    } refused_oneofs {
        random_value_specifier,
    });
    let mut clusters = Vec::new();
    for (i, cw) in w.clusters.iter().enumerate() {
        ctx.at(format!("clusters[{i}]"), |c| {
            crate::fields!(c, cw => pb::weighted_cluster::ClusterWeight {
                name, weight, request_headers_to_add, request_headers_to_remove,
                response_headers_to_add, response_headers_to_remove,
            } refused {
                metadata_match, typed_per_filter_config, cluster_header,
            } refused_oneofs {
                host_rewrite_specifier,
            });
            if cw.name.is_empty() {
                c.error_at("name", "is required (cluster_header is not supported)");
            }
            let headers = HeaderMutations::from_proto(
                &cw.request_headers_to_add,
                &cw.request_headers_to_remove,
                &cw.response_headers_to_add,
                &cw.response_headers_to_remove,
                c,
            );
            clusters.push(WeightedCluster {
                name: cw.name.clone(),
                weight: cw.weight.map(|v| v.value as u64).unwrap_or(0),
                headers,
            });
        });
    }
    if clusters.is_empty() {
        ctx.error_at("clusters", "at least one cluster is required");
        return None;
    }
    let sum: u64 = clusters.iter().map(|c| c.weight).sum();
    if let Some(total) = w.total_weight {
        if total.value as u64 != sum {
            ctx.error_at(
                "total_weight",
                format!(
                    "sum of weights in the weighted_cluster ({sum}) should match total_weight ({})",
                    total.value
                ),
            );
        }
    }
    if sum == 0 {
        ctx.error_at("clusters", "sum of weights must be greater than 0");
        return None;
    }
    Some(WeightedClusters {
        clusters,
        total: sum,
    })
}

fn redirect(r: &pb::RedirectAction, ctx: &mut Ctx) -> Option<Redirect> {
    use pb::redirect_action::PathRewriteSpecifier as P;
    use pb::redirect_action::SchemeRewriteSpecifier as S;
    crate::fields!(ctx, r => pb::RedirectAction {
        scheme_rewrite_specifier: ["https_redirect", "scheme_redirect"], host_redirect,
        port_redirect,
        path_rewrite_specifier: ["path_redirect", "prefix_rewrite", "regex_rewrite"],
        response_code, strip_query,
    });
    let scheme = match &r.scheme_rewrite_specifier {
        Some(S::HttpsRedirect(true)) => Some("https".to_string()),
        Some(S::HttpsRedirect(false)) | None => None,
        Some(S::SchemeRedirect(s)) => Some(s.to_ascii_lowercase()),
    };
    let path = match &r.path_rewrite_specifier {
        None => RedirectPath::Keep,
        Some(P::PathRedirect(p)) => RedirectPath::Path(p.clone()),
        Some(P::PrefixRewrite(p)) => RedirectPath::PrefixRewrite(p.clone()),
        Some(P::RegexRewrite(rr)) => {
            let (re, substitution) = ctx.at("regex_rewrite", |c| regex_rewrite(rr, c))?;
            RedirectPath::Regex(re, substitution)
        }
        // Refused by `fields!`.
        Some(P::PathRewrite(_)) => RedirectPath::Keep,
    };
    let status = match r.response_code {
        0 => http::StatusCode::MOVED_PERMANENTLY,
        1 => http::StatusCode::FOUND,
        2 => http::StatusCode::SEE_OTHER,
        3 => http::StatusCode::TEMPORARY_REDIRECT,
        4 => http::StatusCode::PERMANENT_REDIRECT,
        other => {
            ctx.error_at("response_code", format!("unknown value {other}"));
            http::StatusCode::MOVED_PERMANENTLY
        }
    };
    let port = match r.port_redirect {
        0 => None,
        p if p <= 65535 => Some(p as u16),
        p => {
            ctx.error_at("port_redirect", format!("{p} is not a port"));
            None
        }
    };
    Some(Redirect {
        scheme,
        host: (!r.host_redirect.is_empty()).then(|| r.host_redirect.clone()),
        port,
        path,
        status,
        strip_query: r.strip_query,
    })
}

fn direct_response(d: &pb::DirectResponseAction, ctx: &mut Ctx) -> Option<DirectResponse> {
    use ferry_envoy_api::pb::envoy::config::core::v3::data_source::Specifier;
    crate::fields!(ctx, d => pb::DirectResponseAction {
        status, body,
    } refused {
        body_format,
    });
    // The body is converted (and its errors reported) even with a bad status.
    if let Some(b) = &d.body {
        ctx.at("body", |c| crate::util::data_source_fields(b, c));
    }
    let status = match http::StatusCode::from_u16(d.status as u16) {
        Ok(s) if (200..600).contains(&d.status) => Some(s),
        _ => {
            ctx.error_at(
                "status",
                format!("{} is not a status in [200, 600)", d.status),
            );
            None
        }
    };
    let body = match &d.body {
        None => None,
        Some(b) => ctx.at("body", |c| match &b.specifier {
            Some(Specifier::InlineString(s)) => Some(std::sync::Arc::from(s.as_bytes())),
            Some(Specifier::InlineBytes(v)) => Some(std::sync::Arc::from(v.as_slice())),
            Some(Specifier::Filename(f)) => match std::fs::read(f) {
                Ok(v) => Some(std::sync::Arc::from(v.as_slice())),
                Err(e) => {
                    c.error_at("filename", format!("{f}: {e}"));
                    None
                }
            },
            _ => {
                c.error("only inline_string, inline_bytes and filename are supported");
                None
            }
        }),
    };
    Some(DirectResponse {
        status: status?,
        body,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Declared route messages refuse what they do not accept once, at the field's path,
    /// and a route whose match fails still has its action converted.
    #[test]
    fn route_refusals_are_reported_once_at_their_field() {
        let yaml = "static_resources:
  listeners:
  - address: {socket_address: {address: 127.0.0.1, port_value: 1}}
    filter_chains:
    - filters:
      - name: envoy.filters.network.http_connection_manager
        typed_config:
          '@type': type.googleapis.com/envoy.extensions.filters.network.http_connection_manager.v3.HttpConnectionManager
          stat_prefix: s
          http_filters: [{name: envoy.filters.http.router, typed_config: {'@type': type.googleapis.com/envoy.extensions.filters.http.router.v3.Router}}]
          route_config:
            virtual_hosts:
            - name: v
              domains: ['*']
              routes:
              - match: {prefix: /, runtime_fraction: {default_value: {numerator: 1}}}
                non_forwarding_action: {}
              - match: {safe_regex: {regex: '('}}
                route:
                  cluster: c
                  hash_policy: [{filter_state: {key: k}}, {cookie: {name: a, attributes: [{name: b}]}}]
                  retry_policy: {retry_priority: {name: p}}
  clusters: [{name: c, connect_timeout: 1s}]
";
        let err = crate::filters::testing::load(yaml, ferry_envoy_api::Format::Yaml)
            .err()
            .map(|e| e.to_string())
            .unwrap_or_default();
        let vh = "static_resources.listeners[0].filter_chains[0].filters[0].typed_config.route_config.virtual_hosts[0]";
        let expected = [
            "routes[0].non_forwarding_action: field is not supported",
            "routes[0].match.runtime_fraction: field is not supported",
            "routes[1].match.safe_regex.regex: invalid regex \"(\": error: unclosed group",
            "routes[1].route.hash_policy[0].filter_state: field is not supported",
            "routes[1].route.hash_policy[1].cookie.attributes: field is not supported",
            "routes[1].route.retry_policy.retry_priority: p is not supported",
        ]
        .map(|e| format!("{vh}.{e}"));
        assert_eq!(err.lines().collect::<Vec<_>>(), expected);
    }

    #[test]
    fn substitution_groups() {
        assert_eq!(convert_substitution(r"/v2/\1/x$"), "/v2/${1}/x$$");
    }

    #[test]
    fn strips_ports() {
        assert_eq!(strip_port("a.com:80"), "a.com");
        assert_eq!(strip_port("[::1]:80"), "[::1]");
        assert_eq!(strip_port("[::1]"), "[::1]");
        assert_eq!(strip_port("a.com"), "a.com");
    }

    #[test]
    fn domain_precedence() {
        let mut idx = DomainIndex::default();
        idx.exact.insert("a.example.com".into(), 0);
        idx.suffixes.push((".example.com".into(), 1));
        idx.prefixes.push(("a.".into(), 2));
        idx.default = Some(3);
        assert_eq!(idx.find("a.example.com"), Some(0));
        assert_eq!(idx.find("b.example.com"), Some(1));
        assert_eq!(idx.find("a.other"), Some(2));
        assert_eq!(idx.find("zzz"), Some(3));
        // The port takes part in matching: not the exact domain, but the `a.` prefix.
        assert_eq!(idx.find("a.example.com:8080"), Some(2));
        assert_eq!(idx.find("b.example.com:8080"), Some(3));
    }
}
