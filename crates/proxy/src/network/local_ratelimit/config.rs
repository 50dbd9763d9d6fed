//! The config of `envoy.filters.network.local_ratelimit`.

use crate::token_bucket::{token_bucket, TokenBucket};
use ferry_config::any::unpack;
use ferry_config::fraction::runtime_feature_flag;
use ferry_config::Ctx;
use ferry_envoy_api::pb::envoy::extensions::filters::network::local_ratelimit::v3 as net;
use ferry_envoy_api::pb::google::protobuf::Any;

/// A validated network `LocalRateLimit` (connections per token bucket).
#[derive(Debug, Clone)]
pub struct NetworkLocalRateLimit {
    /// `stat_prefix`: stats under `local_rate_limit.<stat_prefix>.`.
    pub stat_prefix: String,
    /// `token_bucket`.
    pub bucket: TokenBucket,
    /// `runtime_enabled` (default true; ferry has no runtime: its default value).
    pub enabled: bool,
}

/// Converts a network `LocalRateLimit` from its `Any`.
pub fn from_any(any: &Any, ctx: &mut Ctx) -> Option<NetworkLocalRateLimit> {
    let l: net::LocalRateLimit = unpack(any, ctx)?;
    ferry_config::fields!(ctx, &l => net::LocalRateLimit as "envoy.filters.network.local_ratelimit" {
        stat_prefix, token_bucket, runtime_enabled,
    } refused {
        share_key,
    });
    if l.stat_prefix.is_empty() {
        ctx.error_at("stat_prefix", "is required");
    }
    let enabled = match &l.runtime_enabled {
        Some(r) => ctx.at("runtime_enabled", |c| runtime_feature_flag(r, c)),
        None => true,
    };
    let bucket = token_bucket(&l.token_bucket, ctx)?;
    Some(NetworkLocalRateLimit {
        stat_prefix: l.stat_prefix.clone(),
        bucket,
        enabled,
    })
}
