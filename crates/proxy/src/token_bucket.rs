//! Token buckets of the local rate limits (HTTP and network): Envoy's
//! `AtomicTokenBucket`, and the buckets a downstream connection owns.
//!
//! The bucket refills continuously, as Envoy's (since 1.31) does: one compare-and-swap
//! per request, no lock and no timer task.

use ferry_config::util::duration;
use ferry_config::Ctx;
use ferry_envoy_api::pb::envoy::r#type::v3 as types;
use parking_lot::Mutex;
use std::sync::atomic::{AtomicI64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

/// A `TokenBucket`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct TokenBucket {
    /// `max_tokens`: the bucket's size, and its content at start.
    pub max_tokens: u32,
    /// `tokens_per_fill` (default 1).
    pub tokens_per_fill: u32,
    /// `fill_interval` (at least 50 ms).
    pub fill_interval: Duration,
}

pub fn token_bucket(b: &Option<types::TokenBucket>, ctx: &mut Ctx) -> Option<TokenBucket> {
    let Some(b) = b else {
        ctx.error_at("token_bucket", "is required");
        return None;
    };
    ctx.at("token_bucket", |ctx| {
        ferry_config::fields!(ctx, b => types::TokenBucket {
            max_tokens, tokens_per_fill, fill_interval,
        });
        if b.max_tokens == 0 {
            ctx.error_at("max_tokens", "must be at least 1");
        }
        let tokens_per_fill = b.tokens_per_fill.map(|v| v.value).unwrap_or(1);
        if tokens_per_fill == 0 {
            ctx.error_at("tokens_per_fill", "must be at least 1");
        }
        let fill_interval = match duration(&b.fill_interval, "fill_interval", ctx) {
            Some(d) if d >= Duration::from_millis(50) => d,
            Some(_) => {
                ctx.error_at("fill_interval", "must be at least 50ms");
                return None;
            }
            None => {
                ctx.error_at("fill_interval", "is required");
                return None;
            }
        };
        Some(TokenBucket {
            max_tokens: b.max_tokens.max(1),
            tokens_per_fill: tokens_per_fill.max(1),
            fill_interval,
        })
    })
}

/// A token bucket that refills continuously at `tokens_per_fill / fill_interval`, as
/// Envoy's `AtomicTokenBucket`: one atomic holds the time at which the bucket was (or
/// would have been) empty; the tokens are the time since then times the fill rate, at
/// most `max_tokens`. Taking a token moves that time forward by one token's worth.
#[derive(Debug)]
pub struct Bucket {
    max_tokens: f64,
    /// Nanoseconds per token.
    per_token: f64,
    start: Instant,
    /// When the bucket was empty, in nanoseconds from `start` (negative: before it).
    empty_at: AtomicI64,
}

impl Bucket {
    /// A full bucket.
    pub fn new(config: TokenBucket) -> Bucket {
        let per_token =
            config.fill_interval.as_nanos() as f64 / f64::from(config.tokens_per_fill.max(1));
        let max_tokens = f64::from(config.max_tokens.max(1));
        Bucket {
            max_tokens,
            per_token,
            start: Instant::now(),
            empty_at: AtomicI64::new(-((max_tokens * per_token) as i64)),
        }
    }

    /// Takes a token if there is one at `now`.
    pub fn try_take(&self, now: Instant) -> bool {
        let now = now.saturating_duration_since(self.start).as_nanos() as f64;
        let mut old = self.empty_at.load(Ordering::Acquire);
        loop {
            let tokens = ((now - old as f64) / self.per_token).min(self.max_tokens);
            if tokens < 1.0 {
                return false;
            }
            let new = (now - (tokens - 1.0) * self.per_token) as i64;
            match self
                .empty_at
                .compare_exchange_weak(old, new, Ordering::AcqRel, Ordering::Acquire)
            {
                Ok(_) => return true,
                Err(current) => old = current,
            }
        }
    }
}

/// Token buckets of one downstream connection (`local_rate_limit_per_downstream_connection`),
/// by filter index.
#[derive(Debug, Default)]
pub struct ConnectionBuckets(Mutex<Vec<(usize, Arc<Bucket>)>>);

impl ConnectionBuckets {
    /// The connection's bucket for filter `index`, created full on first use.
    pub fn get(&self, index: usize, config: TokenBucket) -> Arc<Bucket> {
        let mut v = self.0.lock();
        if let Some((_, b)) = v.iter().find(|(i, _)| *i == index) {
            return b.clone();
        }
        let b = Arc::new(Bucket::new(config));
        v.push((index, b.clone()));
        b
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    #[test]
    fn a_bucket_admits_its_size_then_its_fill_rate() {
        let b = Bucket::new(TokenBucket {
            max_tokens: 2,
            tokens_per_fill: 1,
            fill_interval: Duration::from_secs(1),
        });
        let t0 = b.start;
        assert!(b.try_take(t0));
        assert!(b.try_take(t0));
        assert!(!b.try_take(t0 + Duration::from_millis(999)));
        assert!(b.try_take(t0 + Duration::from_millis(1000)));
        assert!(!b.try_take(t0 + Duration::from_millis(1500)));
        // Ten intervals later the bucket holds at most max_tokens.
        let later = t0 + Duration::from_secs(11);
        assert!(b.try_take(later));
        assert!(b.try_take(later));
        assert!(!b.try_take(later));
    }

    #[test]
    fn the_refill_is_continuous() {
        // 10 tokens per minute: one every 6 s once the bucket is empty.
        let b = Bucket::new(TokenBucket {
            max_tokens: 10,
            tokens_per_fill: 10,
            fill_interval: Duration::from_secs(60),
        });
        let t0 = b.start;
        for _ in 0..10 {
            assert!(b.try_take(t0));
        }
        assert!(!b.try_take(t0 + Duration::from_millis(5900)));
        assert!(b.try_take(t0 + Duration::from_millis(6000)));
        assert!(!b.try_take(t0 + Duration::from_millis(11_900)));
        assert!(b.try_take(t0 + Duration::from_millis(12_000)));
    }
}
