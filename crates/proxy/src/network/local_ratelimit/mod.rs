//! `envoy.filters.network.local_ratelimit`: a token bucket of connections; a connection
//! that finds it empty is closed at once (`local_rate_limit.<stat_prefix>.rate_limited`).

pub mod config;

use crate::token_bucket::Bucket;
use config::NetworkLocalRateLimit;
use std::sync::Arc;
use std::time::Instant;

ferry_stats::stat_group! {
    /// `local_rate_limit.<stat_prefix>.*`.
    pub struct NetworkRateLimitStats {
        counters: { rate_limited }
        gauges: {}
    }
}

crate::filter_factory::filter_factory! {
    name: "envoy.filters.network.local_ratelimit",
    config_type: "envoy.extensions.filters.network.local_ratelimit.v3.LocalRateLimit",
    config: NetworkLocalRateLimit,
}

impl ferry_config::filters::NetworkFilterFactory for Factory {
    fn terminal(&self) -> bool {
        false
    }
}

impl super::NetworkFilterFactory for Factory {
    fn build(
        &self,
        config: &ferry_config::filters::FilterConfig,
        snapshot: &crate::Snapshot,
    ) -> Option<super::NetworkFilterRuntime> {
        let config = config.clone().downcast::<NetworkLocalRateLimit>().ok()?;
        Some(super::NetworkFilterRuntime::Read(Arc::new(
            NetworkLimiter::new(config, &snapshot.stats),
        )))
    }
}

/// One network local rate limit of a filter chain.
pub struct NetworkLimiter {
    config: Arc<NetworkLocalRateLimit>,
    bucket: Bucket,
    stats: Arc<NetworkRateLimitStats>,
}

impl NetworkLimiter {
    /// A full bucket; stats registered.
    pub fn new(config: Arc<NetworkLocalRateLimit>, store: &ferry_stats::Store) -> NetworkLimiter {
        let stats = Arc::new(NetworkRateLimitStats::default());
        store.register(format!("local_rate_limit.{}.", config.stat_prefix), &stats);
        NetworkLimiter {
            bucket: Bucket::new(config.bucket),
            config,
            stats,
        }
    }
}

impl super::ReadFilter for NetworkLimiter {
    /// Whether a new connection may proceed (it takes a token).
    fn on_new_connection(&self) -> bool {
        if !self.config.enabled || self.bucket.try_take(Instant::now()) {
            return true;
        }
        self.stats.rate_limited.inc();
        false
    }
}
