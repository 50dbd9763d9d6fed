//! ferry's stats: counters and gauges with Envoy's names.
//!
//! A component declares its stats together, as a struct of atomics ([`stat_group!`]):
//! the hot path bumps a field (no lookup by name, no lock). The struct is registered
//! once, with its scope prefix (`cluster.backend.`), in the process's [`Store`], which
//! lists every live group's values for admin `/stats` and the sinks. A group costs
//! eight bytes per stat plus its prefix, so that thousands of clusters stay cheap.

use parking_lot::Mutex;
use std::collections::BTreeMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Weak};

/// A monotonically increasing count (Envoy counter).
#[derive(Debug, Default)]
pub struct Counter(AtomicU64);

impl Counter {
    /// Adds one.
    #[inline]
    pub fn inc(&self) {
        self.0.fetch_add(1, Ordering::Relaxed);
    }

    /// Adds `n`.
    #[inline]
    pub fn add(&self, n: u64) {
        self.0.fetch_add(n, Ordering::Relaxed);
    }

    /// The current value.
    pub fn value(&self) -> u64 {
        self.0.load(Ordering::Relaxed)
    }
}

/// A value that goes up and down (Envoy gauge).
#[derive(Debug, Default)]
pub struct Gauge(AtomicU64);

impl Gauge {
    /// Adds one.
    #[inline]
    pub fn inc(&self) {
        self.0.fetch_add(1, Ordering::Relaxed);
    }

    /// Subtracts one (saturating at zero).
    #[inline]
    pub fn dec(&self) {
        let _ = self
            .0
            .fetch_update(Ordering::Relaxed, Ordering::Relaxed, |v| v.checked_sub(1));
    }

    /// Sets the value.
    #[inline]
    pub fn set(&self, v: u64) {
        self.0.store(v, Ordering::Relaxed);
    }

    /// The current value.
    pub fn value(&self) -> u64 {
        self.0.load(Ordering::Relaxed)
    }
}

/// Whether a stat is a counter or a gauge.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Kind {
    /// Monotonic; sinks send deltas.
    Counter,
    /// Absolute.
    Gauge,
}

/// A set of stats that lists itself (implemented by [`stat_group!`]).
pub trait Group: Send + Sync {
    /// Calls `f` with each stat's name (relative to the group's prefix), kind and value.
    fn visit(&self, f: &mut dyn FnMut(&str, Kind, u64));
}

/// Declares a struct of stats with Envoy's names and implements [`Group`] for it.
///
/// ```
/// ferry_stats::stat_group! {
///     /// Stats of a widget.
///     pub struct WidgetStats {
///         counters: { made, broken = "broken.total" }
///         gauges: { active }
///     }
/// }
/// let s = WidgetStats::default();
/// s.made.inc();
/// ```
#[macro_export]
macro_rules! stat_group {
    (
        $(#[$meta:meta])*
        $vis:vis struct $name:ident {
            counters: { $($c:ident $(= $cn:literal)?),* $(,)? }
            gauges: { $($g:ident $(= $gn:literal)?),* $(,)? }
        }
    ) => {
        $(#[$meta])*
        #[derive(Debug, Default)]
        $vis struct $name {
            $(
                #[doc = concat!("Counter `", $crate::stat_group!(@name $c $(, $cn)?), "`.")]
                pub $c: $crate::Counter,
            )*
            $(
                #[doc = concat!("Gauge `", $crate::stat_group!(@name $g $(, $gn)?), "`.")]
                pub $g: $crate::Gauge,
            )*
        }

        impl $crate::Group for $name {
            fn visit(&self, f: &mut dyn FnMut(&str, $crate::Kind, u64)) {
                $( f($crate::stat_group!(@name $c $(, $cn)?), $crate::Kind::Counter, self.$c.value()); )*
                $( f($crate::stat_group!(@name $g $(, $gn)?), $crate::Kind::Gauge, self.$g.value()); )*
            }
        }
    };
    (@name $field:ident) => { stringify!($field) };
    (@name $field:ident, $name:literal) => { $name };
}

struct Registered {
    prefix: String,
    group: Weak<dyn Group>,
}

/// Every registered group of the process. Groups are held weakly: a group dropped
/// with its component (a removed cluster) disappears from the listing.
#[derive(Default)]
pub struct Store {
    groups: Mutex<Vec<Registered>>,
}

impl std::fmt::Debug for Store {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Store")
            .field("groups", &self.groups.lock().len())
            .finish()
    }
}

/// One stat's value at listing time.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Value {
    /// Counter or gauge.
    pub kind: Kind,
    /// Its value (the sum over groups that share the name, as Envoy shares one stat).
    pub value: u64,
}

impl Store {
    /// A new, empty store.
    pub fn new() -> Arc<Store> {
        Arc::new(Store::default())
    }

    /// Registers `group` under `prefix` (which ends in `.`, e.g. `cluster.backend.`).
    pub fn register<G: Group + 'static>(&self, prefix: impl Into<String>, group: &Arc<G>) {
        let weak: Weak<G> = Arc::downgrade(group);
        let mut groups = self.groups.lock();
        // Forget dropped groups now and then, so that the list does not grow with reloads.
        if groups.len() >= 64 && groups.len().is_power_of_two() {
            groups.retain(|r| r.group.strong_count() > 0);
        }
        groups.push(Registered {
            prefix: prefix.into(),
            group: weak,
        });
    }

    /// Every live stat by full name, sorted. Stats of several groups with the same
    /// name (two listeners with one `stat_prefix`) are summed.
    pub fn snapshot(&self) -> BTreeMap<String, Value> {
        let live: Vec<(String, Arc<dyn Group>)> = {
            let mut groups = self.groups.lock();
            groups.retain(|r| r.group.strong_count() > 0);
            groups
                .iter()
                .filter_map(|r| Some((r.prefix.clone(), r.group.upgrade()?)))
                .collect()
        };
        let mut out: BTreeMap<String, Value> = BTreeMap::new();
        for (prefix, group) in live {
            group.visit(&mut |name, kind, value| {
                let e = out
                    .entry(format!("{prefix}{name}"))
                    .or_insert(Value { kind, value: 0 });
                e.value += value;
            });
        }
        out
    }

    /// The value of one stat, for tests and tools (a full listing; not for hot paths).
    pub fn get(&self, name: &str) -> Option<u64> {
        self.snapshot().get(name).map(|v| v.value)
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    stat_group! {
        /// Test stats.
        struct TestStats {
            counters: { hits, misses = "cache.misses" }
            gauges: { open }
        }
    }

    #[test]
    fn groups_list_their_stats_under_their_prefix_and_go_away_when_dropped() {
        let store = Store::new();
        let a = Arc::new(TestStats::default());
        let b = Arc::new(TestStats::default());
        store.register("cluster.a.", &a);
        store.register("cluster.a.", &b);
        a.hits.add(2);
        b.hits.inc();
        a.misses.inc();
        a.open.inc();
        a.open.inc();
        a.open.dec();
        b.open.dec(); // saturates at zero
        let snap = store.snapshot();
        assert_eq!(
            snap["cluster.a.hits"],
            Value {
                kind: Kind::Counter,
                value: 3
            }
        );
        assert_eq!(snap["cluster.a.cache.misses"].value, 1);
        assert_eq!(
            snap["cluster.a.open"],
            Value {
                kind: Kind::Gauge,
                value: 1
            }
        );
        drop(a);
        drop(b);
        assert!(store.snapshot().is_empty());
    }
}
