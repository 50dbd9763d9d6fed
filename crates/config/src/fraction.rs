//! Fractions of requests (`FractionalPercent`, `RuntimeFractionalPercent`): sampled
//! per request by retry, mirror, fault, rate limit and access-log configs; and runtime
//! feature flags (`RuntimeFeatureFlag`), which ferry reads as their default.

use crate::Ctx;
use ferry_envoy_api::pb::envoy::config::core::v3 as core;
use ferry_envoy_api::pb::envoy::r#type::v3 as types;

/// A fraction as Envoy's `FractionalPercent`: `numerator` out of `denominator`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Fraction {
    /// `numerator` (capped at the denominator).
    pub numerator: u32,
    /// 100, 10 000 or 1 000 000.
    pub denominator: u32,
}

impl Fraction {
    /// Always.
    pub const ALL: Fraction = Fraction {
        numerator: 100,
        denominator: 100,
    };

    /// Draws: true with probability numerator/denominator.
    pub fn sample(&self) -> bool {
        self.numerator >= self.denominator
            || (self.numerator > 0 && rand::random_range(0..self.denominator) < self.numerator)
    }
}

/// Converts a `FractionalPercent`.
pub fn fraction(p: &types::FractionalPercent, ctx: &mut Ctx) -> Fraction {
    crate::fields!(ctx, p => types::FractionalPercent {
        numerator, denominator,
    });
    let denominator = match p.denominator {
        0 => 100,
        1 => 10_000,
        2 => 1_000_000,
        other => {
            ctx.error_at("denominator", format!("unknown value {other}"));
            100
        }
    };
    Fraction {
        numerator: p.numerator.min(denominator),
        denominator,
    }
}

/// Converts a `RuntimeFractionalPercent` (ferry has no runtime: the default value).
pub fn runtime_fraction(p: &core::RuntimeFractionalPercent, ctx: &mut Ctx) -> Fraction {
    crate::fields!(ctx, p => core::RuntimeFractionalPercent {
        default_value, runtime_key,
    });
    match &p.default_value {
        Some(v) => ctx.at("default_value", |c| fraction(v, c)),
        None => Fraction::ALL,
    }
}

/// Converts a `RuntimeFeatureFlag` (ferry has no runtime: the default value, true when
/// unset).
pub fn runtime_feature_flag(f: &core::RuntimeFeatureFlag, ctx: &mut Ctx) -> bool {
    crate::fields!(ctx, f => core::RuntimeFeatureFlag {
        default_value, runtime_key,
    });
    f.default_value.map(|b| b.value).unwrap_or(true)
}

/// Declares a `Percent` (at `field`); the one place for every message that holds one.
pub(crate) fn percent_fields(
    p: &Option<ferry_envoy_api::pb::envoy::r#type::v3::Percent>,
    field: &str,
    ctx: &mut Ctx,
) {
    if let Some(p) = p {
        ctx.at(field, |ctx| {
            crate::fields!(ctx, p => ferry_envoy_api::pb::envoy::r#type::v3::Percent {
                value,
            });
        });
    }
}
