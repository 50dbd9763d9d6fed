//! `envoy.filters.network.local_ratelimit`: a token bucket of connections; a connection
//! that finds it empty is closed at once (`local_rate_limit.<stat_prefix>.rate_limited`).

use crate::token_bucket::Bucket;
use ferry_config::filters::local_ratelimit::NetworkLocalRateLimit;
use std::sync::Arc;
use std::time::Instant;

ferry_stats::stat_group! {
    /// `local_rate_limit.<stat_prefix>.*`.
    pub struct NetworkRateLimitStats {
        counters: { rate_limited }
        gauges: {}
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

    /// Whether a new connection may proceed (it takes a token).
    pub fn admit(&self) -> bool {
        if !self.config.enabled || self.bucket.try_take(Instant::now()) {
            return true;
        }
        self.stats.rate_limited.inc();
        false
    }
}
