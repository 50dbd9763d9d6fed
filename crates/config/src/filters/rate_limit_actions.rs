//! Route `rate_limits` (`envoy.config.route.v3.RateLimit`): actions that turn a request
//! into rate limit descriptors, for the local rate limit filter's `descriptors`.

use crate::matcher::HeaderMatcher;
use crate::Ctx;
use ferry_envoy_api::pb::envoy::config::route::v3 as pb;

/// One `RateLimit`: its actions produce one descriptor, or none if any action does not
/// apply.
#[derive(Debug, Clone)]
pub struct RateLimitRule {
    /// `stage` (default 0): only filters of the same stage use it.
    pub stage: u32,
    /// `actions`, in order.
    pub actions: Vec<Action>,
}

/// A descriptor entry source.
#[derive(Debug, Clone)]
pub enum Action {
    /// `source_cluster`: (`source_cluster`, the local service cluster).
    SourceCluster,
    /// `destination_cluster`: (`destination_cluster`, the route's cluster).
    DestinationCluster,
    /// `request_headers`: (`descriptor_key`, the header's value).
    RequestHeaders {
        /// `header_name`.
        header: http::HeaderName,
        /// `descriptor_key`.
        key: String,
        /// `skip_if_absent`: the action is left out rather than voiding the descriptor.
        skip_if_absent: bool,
    },
    /// `remote_address`: (`remote_address`, the trusted client address).
    RemoteAddress,
    /// `generic_key`: (`descriptor_key` or `generic_key`, `descriptor_value`).
    GenericKey {
        /// Key.
        key: String,
        /// Value.
        value: String,
    },
    /// `header_value_match`: (`descriptor_key` or `header_match`, `descriptor_value`)
    /// when the headers match (or do not, with `expect_match: false`).
    HeaderValueMatch {
        /// Key.
        key: String,
        /// Value.
        value: String,
        /// `expect_match` (default true).
        expect_match: bool,
        /// `headers`: all must match.
        headers: Vec<HeaderMatcher>,
    },
}

/// Converts a list of `RateLimit`s.
pub fn rules(list: &[pb::RateLimit], ctx: &mut Ctx) -> Vec<RateLimitRule> {
    let mut out = Vec::new();
    for (i, r) in list.iter().enumerate() {
        ctx.at(format!("rate_limits[{i}]"), |ctx| {
            crate::fields!(ctx, r => pb::RateLimit {
                stage, actions,
            } refused {
                disable_key, limit, hits_addend, apply_on_stream_done, x_ratelimit_option,
            });
            let mut actions = Vec::new();
            for (j, a) in r.actions.iter().enumerate() {
                if let Some(a) = ctx.at(format!("actions[{j}]"), |c| action(a, c)) {
                    actions.push(a);
                }
            }
            if actions.is_empty() {
                ctx.error_at("actions", "at least one action is required");
            }
            out.push(RateLimitRule {
                stage: r.stage.map(|s| s.value).unwrap_or(0),
                actions,
            });
        });
    }
    out
}

fn non_empty(s: &str, default: &str) -> String {
    if s.is_empty() {
        default.to_string()
    } else {
        s.to_string()
    }
}

fn action(a: &pb::rate_limit::Action, ctx: &mut Ctx) -> Option<Action> {
    use action::ActionSpecifier as S;
    use pb::rate_limit::action;
    crate::fields!(ctx, a => pb::rate_limit::Action {
        action_specifier: [
            "source_cluster", "destination_cluster", "request_headers", "remote_address",
            "generic_key", "header_value_match"
        ],
    });
    Some(match &a.action_specifier {
        Some(S::SourceCluster(s)) => {
            ctx.at("source_cluster", |ctx| {
                crate::fields!(ctx, s => action::SourceCluster {});
            });
            Action::SourceCluster
        }
        Some(S::DestinationCluster(d)) => {
            ctx.at("destination_cluster", |ctx| {
                crate::fields!(ctx, d => action::DestinationCluster {});
            });
            Action::DestinationCluster
        }
        Some(S::RequestHeaders(h)) => ctx.at("request_headers", |ctx| {
            crate::fields!(ctx, h => action::RequestHeaders {
                header_name, descriptor_key, skip_if_absent,
            });
            let header =
                match http::HeaderName::from_bytes(h.header_name.to_ascii_lowercase().as_bytes()) {
                    Ok(n) => n,
                    Err(_) => {
                        ctx.error_at("header_name", "is not a valid header name");
                        return None;
                    }
                };
            if h.descriptor_key.is_empty() {
                ctx.error_at("descriptor_key", "is required");
            }
            Some(Action::RequestHeaders {
                header,
                key: h.descriptor_key.clone(),
                skip_if_absent: h.skip_if_absent,
            })
        })?,
        Some(S::RemoteAddress(r)) => {
            ctx.at("remote_address", |ctx| {
                crate::fields!(ctx, r => action::RemoteAddress {});
            });
            Action::RemoteAddress
        }
        Some(S::GenericKey(g)) => ctx.at("generic_key", |ctx| {
            crate::fields!(ctx, g => action::GenericKey {
                descriptor_value, descriptor_key,
            } refused {
                default_value,
            });
            if g.descriptor_value.is_empty() {
                ctx.error_at("descriptor_value", "is required");
            }
            Action::GenericKey {
                key: non_empty(&g.descriptor_key, "generic_key"),
                value: g.descriptor_value.clone(),
            }
        }),
        Some(S::HeaderValueMatch(m)) => ctx.at("header_value_match", |ctx| {
            crate::fields!(ctx, m => action::HeaderValueMatch {
                descriptor_value, descriptor_key, expect_match, headers,
            } refused {
                default_value,
            });
            if m.descriptor_value.is_empty() {
                ctx.error_at("descriptor_value", "is required");
            }
            let mut headers = Vec::new();
            for (i, h) in m.headers.iter().enumerate() {
                if let Some(h) = ctx.at(format!("headers[{i}]"), |c| {
                    crate::matcher::header_matcher(h, c)
                }) {
                    headers.push(h);
                }
            }
            Action::HeaderValueMatch {
                key: non_empty(&m.descriptor_key, "header_match"),
                value: m.descriptor_value.clone(),
                expect_match: m.expect_match.map(|b| b.value).unwrap_or(true),
                headers,
            }
        }),
        // Refused by `fields!`.
        Some(_) => return None,
        None => {
            ctx.error("an action is required");
            return None;
        }
    })
}
