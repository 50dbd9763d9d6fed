//! Access log filters (`AccessLog.filter`, `envoy.config.accesslog.v3.AccessLogFilter`):
//! which streams a log writes a line for.

use crate::matcher::HeaderMatcher;
use crate::Ctx;
use ferry_envoy_api::pb::envoy::config::accesslog::v3 as pb;

/// `ComparisonFilter.op`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Op {
    /// `EQ`.
    Eq,
    /// `GE`.
    Ge,
    /// `LE`.
    Le,
    /// `NE`.
    Ne,
}

impl Op {
    /// Whether `lhs op value` holds.
    pub fn holds(self, lhs: u64, value: u64) -> bool {
        match self {
            Op::Eq => lhs == value,
            Op::Ge => lhs >= value,
            Op::Le => lhs <= value,
            Op::Ne => lhs != value,
        }
    }
}

/// Envoy's access log types (`envoy.data.accesslog.v3.AccessLogType`) that ferry writes.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub enum LogType {
    /// `TcpConnectionEnd`: a TCP proxy connection closed.
    TcpConnectionEnd,
    /// `DownstreamEnd`: an HTTP stream ended.
    #[default]
    DownstreamEnd,
}

impl LogType {
    /// Envoy's name (`%ACCESS_LOG_TYPE%`).
    pub fn name(self) -> &'static str {
        match self {
            LogType::TcpConnectionEnd => "TcpConnectionEnd",
            LogType::DownstreamEnd => "DownstreamEnd",
        }
    }

    /// The proto enum value.
    fn number(self) -> i32 {
        use ferry_envoy_api::pb::envoy::data::accesslog::v3::AccessLogType as T;
        match self {
            LogType::TcpConnectionEnd => T::TcpConnectionEnd as i32,
            LogType::DownstreamEnd => T::DownstreamEnd as i32,
        }
    }
}

/// One access log filter.
#[derive(Debug, Clone)]
pub enum Filter {
    /// `status_code_filter`: the response code (0 when none) compared with the value.
    StatusCode(Op, u64),
    /// `duration_filter`: the stream's duration in ms compared with the value.
    Duration(Op, u64),
    /// `not_health_check_filter`: not a request answered by the health check filter.
    NotHealthCheck,
    /// `traceable_filter`: the tracing decision said "trace".
    Traceable,
    /// `runtime_filter`: a sample of `numerator / denominator` (the runtime key is not
    /// looked up: ferry has no runtime, so `percent_sampled` applies), by the request
    /// id unless `use_independent_randomness`.
    Runtime {
        /// `percent_sampled` (default 0%).
        percent: crate::fraction::Fraction,
        /// `use_independent_randomness`.
        independent: bool,
    },
    /// `and_filter`: all hold.
    And(Vec<Filter>),
    /// `or_filter`: one holds.
    Or(Vec<Filter>),
    /// `header_filter`: the request headers match.
    Header(HeaderMatcher),
    /// `response_flag_filter`: one of these flags is set (any flag when empty).
    ResponseFlag(Vec<crate::response_flag::ResponseFlag>),
    /// `grpc_status_filter`: the gRPC status (from trailers, headers or the HTTP status)
    /// is one of these (or, with `exclude`, none of them).
    GrpcStatus {
        /// `statuses`.
        statuses: Vec<u32>,
        /// `exclude`.
        exclude: bool,
    },
    /// `log_type_filter`.
    LogType {
        /// `types`, as proto numbers.
        types: Vec<i32>,
        /// `exclude`.
        exclude: bool,
    },
}

impl Filter {
    /// Whether a `log_type_filter` lets a line of `ty` through.
    pub fn log_type_matches(types: &[i32], exclude: bool, ty: LogType) -> bool {
        types.contains(&ty.number()) != exclude
    }
}

/// Converts an `AccessLog.filter`.
pub fn from_proto(f: &pb::AccessLogFilter, ctx: &mut Ctx) -> Option<Filter> {
    use pb::access_log_filter::FilterSpecifier as F;
    let comparison = |c: &Option<pb::ComparisonFilter>, ctx: &mut Ctx| {
        let Some(c) = c else {
            ctx.error_at("comparison", "is required");
            return None;
        };
        ctx.at("comparison", |ctx| {
            crate::fields!(ctx, c => pb::ComparisonFilter { op, value });
            if let Some(v) = &c.value {
                ctx.at("value", |ctx| crate::util::runtime_uint32_fields(v, ctx));
            }
            let op = match pb::comparison_filter::Op::try_from(c.op) {
                Ok(pb::comparison_filter::Op::Eq) => Op::Eq,
                Ok(pb::comparison_filter::Op::Ge) => Op::Ge,
                Ok(pb::comparison_filter::Op::Le) => Op::Le,
                Ok(pb::comparison_filter::Op::Ne) => Op::Ne,
                Err(_) => {
                    ctx.error_at("op", format!("unknown value {}", c.op));
                    return None;
                }
            };
            // The runtime key is not looked up (no runtime): the default applies.
            let value = c.value.as_ref().map_or(0, |v| v.default_value as u64);
            Some((op, value))
        })
    };
    crate::fields!(ctx, f => pb::AccessLogFilter {
        filter_specifier: [
            "status_code_filter", "duration_filter", "not_health_check_filter",
            "traceable_filter", "runtime_filter", "and_filter", "or_filter", "header_filter",
            "response_flag_filter", "grpc_status_filter", "log_type_filter",
        ],
    });
    match &f.filter_specifier {
        None => {
            ctx.error("one of the filters must be set");
            None
        }
        Some(F::StatusCodeFilter(s)) => ctx.at("status_code_filter", |c| {
            crate::fields!(c, s => pb::StatusCodeFilter { comparison });
            comparison(&s.comparison, c).map(|(op, v)| Filter::StatusCode(op, v))
        }),
        Some(F::DurationFilter(d)) => ctx.at("duration_filter", |c| {
            crate::fields!(c, d => pb::DurationFilter { comparison });
            comparison(&d.comparison, c).map(|(op, v)| Filter::Duration(op, v))
        }),
        // These filters refuse nothing: declared without a path of their own.
        Some(F::NotHealthCheckFilter(n)) => {
            crate::fields!(ctx, n => pb::NotHealthCheckFilter {});
            Some(Filter::NotHealthCheck)
        }
        Some(F::TraceableFilter(t)) => {
            crate::fields!(ctx, t => pb::TraceableFilter {});
            Some(Filter::Traceable)
        }
        Some(F::RuntimeFilter(r)) => ctx.at("runtime_filter", |c| {
            crate::fields!(c, r => pb::RuntimeFilter {
                runtime_key, percent_sampled, use_independent_randomness,
            });
            if r.runtime_key.is_empty() {
                c.error_at("runtime_key", "is required");
            }
            let percent = match &r.percent_sampled {
                None => crate::fraction::Fraction {
                    numerator: 0,
                    denominator: 100,
                },
                Some(p) => c.at("percent_sampled", |c| crate::fraction::fraction(p, c)),
            };
            Some(Filter::Runtime {
                percent,
                independent: r.use_independent_randomness,
            })
        }),
        Some(F::AndFilter(a)) => ctx.at("and_filter", |c| {
            crate::fields!(c, a => pb::AndFilter { filters });
            list(&a.filters, c).map(Filter::And)
        }),
        Some(F::OrFilter(o)) => ctx.at("or_filter", |c| {
            crate::fields!(c, o => pb::OrFilter { filters });
            list(&o.filters, c).map(Filter::Or)
        }),
        Some(F::HeaderFilter(h)) => ctx.at("header_filter", |c| {
            crate::fields!(c, h => pb::HeaderFilter { header });
            match &h.header {
                None => {
                    c.error_at("header", "is required");
                    None
                }
                Some(m) => c
                    .at("header", |c| crate::matcher::header_matcher(m, c))
                    .map(Filter::Header),
            }
        }),
        Some(F::ResponseFlagFilter(r)) => ctx.at("response_flag_filter", |c| {
            crate::fields!(c, r => pb::ResponseFlagFilter { flags });
            let mut flags = Vec::with_capacity(r.flags.len());
            for (i, flag) in r.flags.iter().enumerate() {
                match crate::response_flag::ResponseFlag::from_short(flag) {
                    Some(f) => flags.push(f),
                    None => c.error_at(
                        &format!("flags[{i}]"),
                        format!("unknown response flag {flag:?}"),
                    ),
                }
            }
            Some(Filter::ResponseFlag(flags))
        }),
        Some(F::GrpcStatusFilter(g)) => {
            crate::fields!(ctx, g => pb::GrpcStatusFilter { statuses, exclude });
            Some(Filter::GrpcStatus {
                statuses: g.statuses.iter().map(|s| *s as u32).collect(),
                exclude: g.exclude,
            })
        }
        Some(F::LogTypeFilter(l)) => {
            crate::fields!(ctx, l => pb::LogTypeFilter { types, exclude });
            Some(Filter::LogType {
                types: l.types.clone(),
                exclude: l.exclude,
            })
        }
        // Refused by `fields!`.
        Some(F::ExtensionFilter(_) | F::MetadataFilter(_)) => None,
    }
}

fn list(filters: &[pb::AccessLogFilter], ctx: &mut Ctx) -> Option<Vec<Filter>> {
    if filters.len() < 2 {
        ctx.error_at("filters", "needs at least 2 filters");
    }
    let out: Vec<Filter> = filters
        .iter()
        .enumerate()
        .filter_map(|(i, f)| ctx.at(format!("filters[{i}]"), |c| from_proto(f, c)))
        .collect();
    (out.len() == filters.len()).then_some(out)
}
