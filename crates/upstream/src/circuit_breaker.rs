//! Circuit breakers: a cluster's resource limits per routing priority (connections,
//! pending requests, requests, retries, connection pools), as Envoy's resource manager.
//!
//! Each resource is an atomic count; admission is a compare-and-swap below the limit
//! and a guard gives the resource back when dropped. The `*_open` gauges say whether a
//! limit is reached, the `remaining_*` gauges (with `track_remaining`) how much is left.

use ferry_config::circuit_breaker::{CircuitBreakers, Thresholds};
use ferry_config::route::Priority;
use ferry_stats::{Gauge, Store};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;

ferry_stats::stat_group! {
    /// `cluster.<name>.circuit_breakers.<priority>.*_open`.
    pub struct OpenStats {
        counters: {}
        gauges: { cx_open, cx_pool_open, rq_pending_open, rq_open, rq_retry_open }
    }
}

ferry_stats::stat_group! {
    /// `cluster.<name>.circuit_breakers.<priority>.remaining_*` (with `track_remaining`).
    pub struct RemainingStats {
        counters: {}
        gauges: { remaining_cx, remaining_cx_pools, remaining_pending, remaining_rq, remaining_retries }
    }
}

/// The breakers of both priorities.
#[derive(Debug, Clone)]
pub struct Breakers {
    default: Arc<Breaker>,
    high: Arc<Breaker>,
}

impl Breakers {
    /// Builds the breakers and registers their gauges under `cluster.<name>.circuit_breakers.`.
    pub(crate) fn new(config: &CircuitBreakers, cluster: &str, store: &Store) -> Breakers {
        Breakers {
            default: Arc::new(Breaker::new(&config.default, cluster, "default", store)),
            high: Arc::new(Breaker::new(&config.high, cluster, "high", store)),
        }
    }

    /// The breaker of a routing priority.
    pub fn get(&self, priority: Priority) -> &Arc<Breaker> {
        match priority {
            Priority::Default => &self.default,
            Priority::High => &self.high,
        }
    }
}

/// Which limit a resource is checked against.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Resource {
    /// `max_connections`.
    Connections,
    /// `max_pending_requests`.
    Pending,
    /// `max_requests`.
    Requests,
    /// `max_retries` or the retry budget.
    Retries,
    /// `max_connection_pools`.
    Pools,
}

/// The limits of one priority with their current use.
#[derive(Debug)]
pub struct Breaker {
    limits: Thresholds,
    counts: [AtomicU64; 5],
    open: Arc<OpenStats>,
    remaining: Option<Arc<RemainingStats>>,
}

impl Breaker {
    fn new(limits: &Thresholds, cluster: &str, priority: &str, store: &Store) -> Breaker {
        let prefix = format!("cluster.{cluster}.circuit_breakers.{priority}.");
        let open = Arc::new(OpenStats::default());
        store.register(prefix.clone(), &open);
        let remaining = limits.track_remaining.then(|| {
            let r = Arc::new(RemainingStats::default());
            store.register(prefix, &r);
            r
        });
        let b = Breaker {
            limits: limits.clone(),
            counts: Default::default(),
            open,
            remaining,
        };
        // The remaining_* gauges start at the limits; the *_open gauges are first set
        // when their resource is first used (Envoy's: unused until then).
        for r in [
            Resource::Connections,
            Resource::Pending,
            Resource::Requests,
            Resource::Retries,
            Resource::Pools,
        ] {
            if let (_, Some(g)) = b.gauges(r) {
                g.set(b.limit(r));
            }
        }
        b
    }

    fn index(r: Resource) -> usize {
        match r {
            Resource::Connections => 0,
            Resource::Pending => 1,
            Resource::Requests => 2,
            Resource::Retries => 3,
            Resource::Pools => 4,
        }
    }

    /// The limit of `r` now (the retry budget depends on the requests in flight).
    pub fn limit(&self, r: Resource) -> u64 {
        match r {
            Resource::Connections => self.limits.max_connections.into(),
            Resource::Pending => self.limits.max_pending_requests.into(),
            Resource::Requests => self.limits.max_requests.into(),
            Resource::Pools => self.limits.max_connection_pools.map_or(u64::MAX, u64::from),
            Resource::Retries => match &self.limits.retry_budget {
                None => self.limits.max_retries.into(),
                Some(b) => {
                    let active = self.count(Resource::Requests) + self.count(Resource::Pending);
                    let budget = (active as f64 * b.budget_percent / 100.0) as u64;
                    budget.max(b.min_retry_concurrency.into())
                }
            },
        }
    }

    /// How much of `r` is in use.
    pub fn count(&self, r: Resource) -> u64 {
        self.counts[Self::index(r)].load(Ordering::Relaxed)
    }

    fn gauges(&self, r: Resource) -> (&Gauge, Option<&Gauge>) {
        let rem = self.remaining.as_deref();
        match r {
            Resource::Connections => (&self.open.cx_open, rem.map(|s| &s.remaining_cx)),
            Resource::Pending => (
                &self.open.rq_pending_open,
                rem.map(|s| &s.remaining_pending),
            ),
            Resource::Requests => (&self.open.rq_open, rem.map(|s| &s.remaining_rq)),
            Resource::Retries => (&self.open.rq_retry_open, rem.map(|s| &s.remaining_retries)),
            Resource::Pools => (&self.open.cx_pool_open, rem.map(|s| &s.remaining_cx_pools)),
        }
    }

    fn publish(&self, r: Resource, count: u64) {
        let limit = self.limit(r);
        let (open, remaining) = self.gauges(r);
        open.set(u64::from(count >= limit));
        if let Some(g) = remaining {
            g.set(limit.saturating_sub(count));
        }
    }

    /// Takes one unit of `r` if below its limit; the guard gives it back.
    pub fn try_acquire(self: &Arc<Self>, r: Resource) -> Option<Admission> {
        let limit = self.limit(r);
        let counter = &self.counts[Self::index(r)];
        let taken = counter
            .fetch_update(Ordering::AcqRel, Ordering::Relaxed, |n| {
                (n < limit).then_some(n + 1)
            })
            .ok()?;
        let _ = taken;
        // The count now (others may have moved it since): gauges converge on it.
        self.publish(r, self.count(r));
        Some(Admission {
            breaker: self.clone(),
            resource: r,
        })
    }

    /// Takes one unit of `r` whatever the limit (Envoy opens a host's first connection
    /// even when others hold every connection the cluster may have).
    pub fn force_acquire(self: &Arc<Self>, r: Resource) -> Admission {
        self.counts[Self::index(r)].fetch_add(1, Ordering::AcqRel);
        self.publish(r, self.count(r));
        Admission {
            breaker: self.clone(),
            resource: r,
        }
    }

    fn release(&self, r: Resource) {
        let counter = &self.counts[Self::index(r)];
        let _ = counter.fetch_update(Ordering::AcqRel, Ordering::Relaxed, |n| n.checked_sub(1));
        self.publish(r, self.count(r));
    }
}

/// One unit of a resource, given back on drop.
#[derive(Debug)]
pub struct Admission {
    breaker: Arc<Breaker>,
    resource: Resource,
}

impl Drop for Admission {
    fn drop(&mut self) {
        self.breaker.release(self.resource);
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;
    use ferry_config::circuit_breaker::RetryBudget;

    fn breaker(limits: Thresholds) -> (Arc<Breaker>, Arc<Store>) {
        let store = Store::new();
        (
            Arc::new(Breaker::new(&limits, "c", "default", &store)),
            store,
        )
    }

    #[test]
    fn a_limit_admits_up_to_its_value_and_recovers_when_released() {
        let (b, store) = breaker(Thresholds {
            max_requests: 2,
            track_remaining: true,
            ..Default::default()
        });
        let one = b.try_acquire(Resource::Requests).unwrap();
        assert_eq!(
            store.get("cluster.c.circuit_breakers.default.remaining_rq"),
            Some(1)
        );
        let two = b.try_acquire(Resource::Requests).unwrap();
        assert!(b.try_acquire(Resource::Requests).is_none());
        assert_eq!(
            store.get("cluster.c.circuit_breakers.default.rq_open"),
            Some(1)
        );
        assert_eq!(
            store.get("cluster.c.circuit_breakers.default.remaining_rq"),
            Some(0)
        );
        drop(one);
        assert_eq!(
            store.get("cluster.c.circuit_breakers.default.rq_open"),
            Some(0)
        );
        let _three = b.try_acquire(Resource::Requests).unwrap();
        drop(two);
        assert_eq!(b.count(Resource::Requests), 1);
    }

    #[test]
    fn the_retry_budget_is_a_share_of_active_requests_with_a_floor() {
        let (b, _store) = breaker(Thresholds {
            retry_budget: Some(RetryBudget {
                budget_percent: 20.0,
                min_retry_concurrency: 3,
            }),
            ..Default::default()
        });
        assert_eq!(b.limit(Resource::Retries), 3);
        let held: Vec<_> = (0..50)
            .map(|_| b.try_acquire(Resource::Requests).unwrap())
            .collect();
        assert_eq!(b.limit(Resource::Retries), 10);
        drop(held);
        assert_eq!(b.limit(Resource::Retries), 3);
    }

    #[test]
    fn without_track_remaining_no_remaining_gauges() {
        let (_b, store) = breaker(Thresholds::default());
        let snap = store.snapshot();
        assert!(snap.contains_key("cluster.c.circuit_breakers.default.cx_open"));
        assert!(!snap.keys().any(|k| k.contains("remaining")));
    }
}
