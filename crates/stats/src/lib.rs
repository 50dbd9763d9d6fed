//! ferry's stats: counters, gauges and histograms with Envoy's names.
//!
//! A component declares its stats together, as a struct of atomics ([`stat_group!`]):
//! the hot path bumps a field (no lookup by name, no lock). The struct is registered
//! once, with its scope prefix (`cluster.backend.`), in the process's [`Store`], which
//! lists every live group's values for admin `/stats` and the sinks. A group costs
//! eight bytes per stat plus its prefix, so that thousands of clusters stay cheap.

mod codes;
mod histogram;
pub mod render;
pub mod tags;

pub use codes::StatusCodes;
pub use histogram::{Counts, Histogram, BUCKETS, PERCENTS, QUANTILES};

use parking_lot::Mutex;
use std::collections::BTreeMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Weak};

/// The top bit of a counter's or gauge's word: set once the stat was used (Envoy's
/// `used()`: incremented, decremented or set at least once, even if back at zero).
const USED: u64 = 1 << 63;

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
        self.0.load(Ordering::Relaxed) & !USED
    }

    /// Whether it was ever incremented.
    pub fn used(&self) -> bool {
        self.0.load(Ordering::Relaxed) != 0
    }

    /// Sets the value to zero (admin `/reset_counters`); a used counter stays used.
    pub fn reset(&self) {
        let used = self.used();
        self.0.store(if used { USED } else { 0 }, Ordering::Relaxed);
    }
}

/// A value that goes up and down (Envoy gauge).
#[derive(Debug, Default)]
pub struct Gauge(AtomicU64);

impl Gauge {
    /// Adds one.
    #[inline]
    pub fn inc(&self) {
        let before = self.0.fetch_add(1, Ordering::Relaxed);
        if before & USED == 0 {
            self.0.fetch_or(USED, Ordering::Relaxed);
        }
    }

    /// Subtracts one (saturating at zero).
    #[inline]
    pub fn dec(&self) {
        let _ = self
            .0
            .fetch_update(Ordering::Relaxed, Ordering::Relaxed, |v| {
                (v & !USED).checked_sub(1).map(|n| n | USED)
            });
    }

    /// Sets the value.
    #[inline]
    pub fn set(&self, v: u64) {
        self.0.store(v | USED, Ordering::Relaxed);
    }

    /// The current value.
    pub fn value(&self) -> u64 {
        self.0.load(Ordering::Relaxed) & !USED
    }

    /// Whether it was ever set, incremented or decremented.
    pub fn used(&self) -> bool {
        self.0.load(Ordering::Relaxed) & USED != 0
    }
}

/// A stat handed to a visitor.
#[derive(Debug, Clone, Copy)]
pub enum Stat<'a> {
    /// A counter.
    Counter(&'a Counter),
    /// A gauge.
    Gauge(&'a Gauge),
    /// A histogram.
    Histogram(&'a Histogram),
}

/// A set of stats that lists itself (implemented by [`stat_group!`]).
pub trait Group: Send + Sync {
    /// Calls `f` with each stat's name (relative to the group's prefix) and the stat.
    fn visit(&self, f: &mut dyn FnMut(&str, Stat<'_>));
}

/// Declares a struct of stats with Envoy's names and implements [`Group`] for it.
/// `histograms` and `dynamic` (stats created on first use, listed under a name
/// prefix, e.g. [`StatusCodes`]) are optional.
///
/// ```
/// ferry_stats::stat_group! {
///     /// Stats of a widget.
///     pub struct WidgetStats {
///         counters: { made, broken = "broken.total" }
///         gauges: { active }
///         histograms: { build_ms }
///         dynamic: { results: ferry_stats::StatusCodes = "result_" }
///     }
/// }
/// let s = WidgetStats::default();
/// s.made.inc();
/// s.build_ms.record(3);
/// s.results.inc(200);
/// ```
#[macro_export]
macro_rules! stat_group {
    (
        $(#[$meta:meta])*
        $vis:vis struct $name:ident {
            counters: { $($c:ident $(= $cn:literal)?),* $(,)? }
            gauges: { $($g:ident $(= $gn:literal)?),* $(,)? }
            $(histograms: { $($h:ident $(= $hn:literal)?),* $(,)? })?
            $(dynamic: { $($d:ident : $dt:ty = $dn:literal),* $(,)? })?
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
            $($(
                #[doc = concat!("Histogram `", $crate::stat_group!(@name $h $(, $hn)?), "`.")]
                pub $h: $crate::Histogram,
            )*)?
            $($(
                #[doc = concat!("Stats `", $dn, "*`, created on first use.")]
                pub $d: $dt,
            )*)?
        }

        impl $crate::Group for $name {
            fn visit(&self, f: &mut dyn FnMut(&str, $crate::Stat<'_>)) {
                $( f($crate::stat_group!(@name $c $(, $cn)?), $crate::Stat::Counter(&self.$c)); )*
                $( f($crate::stat_group!(@name $g $(, $gn)?), $crate::Stat::Gauge(&self.$g)); )*
                $($( f($crate::stat_group!(@name $h $(, $hn)?), $crate::Stat::Histogram(&self.$h)); )*)?
                $($( self.$d.visit($dn, f); )*)?
            }
        }
    };
    (@name $field:ident) => { stringify!($field) };
    (@name $field:ident, $name:literal) => { $name };
}

/// A group listed without some of its stats (a component that has fewer stats than
/// the group it shares, such as the admin's connection manager without a router).
pub struct Without<G> {
    inner: Arc<G>,
    skip: &'static [&'static str],
}

impl<G> Without<G> {
    /// `inner` without the stats named in `skip` (relative names).
    pub fn new(inner: Arc<G>, skip: &'static [&'static str]) -> Arc<Without<G>> {
        Arc::new(Without { inner, skip })
    }
}

impl<G: Group> Group for Without<G> {
    fn visit(&self, f: &mut dyn FnMut(&str, Stat<'_>)) {
        self.inner.visit(&mut |name, stat| {
            if !self.skip.contains(&name) {
                f(name, stat);
            }
        });
    }
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

/// A histogram's counts at listing time.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct HistogramValue {
    /// The last complete flush interval.
    pub interval: Counts,
    /// All time.
    pub cumulative: Counts,
}

/// A counter's or gauge's value at listing time, and whether it was ever used.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Number {
    /// The value.
    pub value: u64,
    /// Ever incremented or set (Envoy's `used()`).
    pub used: bool,
}

impl Number {
    /// A used stat's value (for tests and tools).
    pub fn used(value: u64) -> Number {
        Number { value, used: true }
    }
}

/// One stat's value at listing time.
#[derive(Debug, Clone, PartialEq)]
pub enum Value {
    /// A counter's value.
    Counter(Number),
    /// A gauge's value.
    Gauge(Number),
    /// A histogram's counts.
    Histogram(Box<HistogramValue>),
}

impl Value {
    /// A counter's or gauge's value (None for histograms).
    pub fn number(&self) -> Option<u64> {
        match self {
            Value::Counter(n) | Value::Gauge(n) => Some(n.value),
            Value::Histogram(_) => None,
        }
    }

    /// Whether the stat was used (Envoy's `usedonly`): a counter or gauge ever
    /// written, a histogram with a sample.
    pub fn used(&self) -> bool {
        match self {
            Value::Counter(n) | Value::Gauge(n) => n.used,
            Value::Histogram(h) => h.cumulative.count() > 0,
        }
    }
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

    /// Calls `f` with every live stat's full name and the stat.
    pub fn visit(&self, f: &mut dyn FnMut(&str, Stat<'_>)) {
        let live: Vec<(String, Arc<dyn Group>)> = {
            let mut groups = self.groups.lock();
            groups.retain(|r| r.group.strong_count() > 0);
            groups
                .iter()
                .filter_map(|r| Some((r.prefix.clone(), r.group.upgrade()?)))
                .collect()
        };
        let mut name = String::new();
        for (prefix, group) in live {
            group.visit(&mut |n, stat| {
                name.clear();
                name.push_str(&prefix);
                name.push_str(n);
                f(&name, stat);
            });
        }
    }

    /// Every live stat by full name, sorted. Stats of several groups with the same
    /// name (two listeners with one `stat_prefix`) are summed, as Envoy shares one stat.
    pub fn snapshot(&self) -> BTreeMap<String, Value> {
        let mut out: BTreeMap<String, Value> = BTreeMap::new();
        self.visit(&mut |name, stat| {
            let v = match stat {
                Stat::Counter(c) => Value::Counter(Number {
                    value: c.value(),
                    used: c.used(),
                }),
                Stat::Gauge(g) => Value::Gauge(Number {
                    value: g.value(),
                    used: g.used(),
                }),
                Stat::Histogram(h) => Value::Histogram(Box::new(HistogramValue {
                    interval: h.interval(),
                    cumulative: h.cumulative(),
                })),
            };
            match out.get_mut(name) {
                None => {
                    out.insert(name.to_string(), v);
                }
                Some(Value::Counter(a)) | Some(Value::Gauge(a)) => {
                    if let Value::Counter(b) | Value::Gauge(b) = v {
                        a.value += b.value;
                        a.used |= b.used;
                    }
                }
                Some(Value::Histogram(a)) => {
                    if let Value::Histogram(b) = v {
                        a.interval.merge(&b.interval);
                        a.cumulative.merge(&b.cumulative);
                    }
                }
            }
        });
        out
    }

    /// The value of one counter or gauge, for tests and tools (a full listing; not for
    /// hot paths).
    pub fn get(&self, name: &str) -> Option<u64> {
        self.snapshot().get(name).and_then(Value::number)
    }

    /// Sets every counter to zero (admin `/reset_counters`).
    pub fn reset_counters(&self) {
        self.visit(&mut |_, stat| {
            if let Stat::Counter(c) = stat {
                c.reset();
            }
        });
    }

    /// Ends a flush interval of every histogram (see [`Histogram::flush`]).
    pub fn flush_histograms(&self) {
        self.visit(&mut |_, stat| {
            if let Stat::Histogram(h) = stat {
                h.flush();
            }
        });
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
        assert_eq!(snap["cluster.a.hits"], Value::Counter(Number::used(3)));
        assert_eq!(
            snap["cluster.a.cache.misses"],
            Value::Counter(Number::used(1))
        );
        assert_eq!(snap["cluster.a.open"], Value::Gauge(Number::used(1)));
        store.reset_counters();
        assert_eq!(store.get("cluster.a.hits"), Some(0));
        assert_eq!(store.get("cluster.a.open"), Some(1));
        // Used stays used at zero; never written is not used.
        let snap = store.snapshot();
        assert!(snap["cluster.a.hits"].used());
        let fresh = Arc::new(TestStats::default());
        store.register("cluster.b.", &fresh);
        fresh.open.inc();
        fresh.open.dec();
        let snap = store.snapshot();
        assert!(snap["cluster.b.open"].used() && !snap["cluster.b.hits"].used());
        assert_eq!(snap["cluster.b.open"].number(), Some(0));
        drop(fresh);
        drop(a);
        drop(b);
        assert!(store.snapshot().is_empty());
    }
}
