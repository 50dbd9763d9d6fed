//! Counters created on first use for each response status (`upstream_rq_200`) and
//! class (`upstream_rq_2xx`), and the response time histogram (`upstream_rq_time`),
//! as Envoy's `CodeStats` charges them. A status is counted
//! without a lock: the first statuses seen take one of a few fixed slots; the rare
//! further ones go to a locked list.

use crate::{Counter, Histogram, Stat};
use parking_lot::Mutex;
use std::sync::atomic::{AtomicU32, AtomicU8, Ordering};
use std::sync::OnceLock;

const SLOTS: usize = 6;

#[derive(Debug, Default)]
struct Slot {
    /// The status counted here (0: free).
    code: AtomicU32,
    count: Counter,
}

/// Per-status and per-class counters under one name prefix (given when listed),
/// allocated at first use (one pointer until then).
#[derive(Debug, Default)]
pub struct StatusCodes(OnceLock<Box<Codes>>);

#[derive(Debug, Default)]
struct Codes {
    classes: [Counter; 5],
    /// Bit `c - 1` set once class `c` was counted.
    used_classes: AtomicU8,
    slots: [Slot; SLOTS],
    more: Mutex<Vec<(u16, Box<Counter>)>>,
    /// `<prefix>time`, listed once recorded.
    time: Histogram,
    /// `<prefix>completed`, listed once counted.
    completed: Counter,
}

impl StatusCodes {
    fn codes(&self) -> &Codes {
        self.0.get_or_init(Box::default)
    }

    /// Records a response time in `<prefix>time`.
    #[inline]
    pub fn record_time(&self, ms: u64) {
        self.codes().time.record(ms);
    }

    /// Counts `status` in its own counter and its class's.
    #[inline]
    pub fn inc(&self, status: u16) {
        self.codes().inc(status);
    }

    /// Counts a completed request in `<prefix>completed`.
    #[inline]
    pub fn inc_completed(&self) {
        self.codes().completed.inc();
    }

    /// The count of one class (1–5), for tests and tools.
    pub fn class(&self, class: u16) -> u64 {
        match (self.0.get(), class) {
            (Some(c), 1..=5) => c.classes[class as usize - 1].value(),
            _ => 0,
        }
    }

    /// Lists `<prefix><code>` and `<prefix><class>xx` for those counted so far, and
    /// `<prefix>time` once recorded.
    pub fn visit(&self, prefix: &str, f: &mut dyn FnMut(&str, Stat<'_>)) {
        if let Some(c) = self.0.get() {
            c.visit(prefix, f);
        }
    }
}

impl Codes {
    fn inc(&self, status: u16) {
        let class = (status / 100) as usize;
        if (1..=5).contains(&class) {
            self.classes[class - 1].inc();
            let bit = 1u8 << (class - 1);
            if self.used_classes.load(Ordering::Relaxed) & bit == 0 {
                self.used_classes.fetch_or(bit, Ordering::Relaxed);
            }
        }
        let code = u32::from(status);
        for s in &self.slots {
            let c = s.code.load(Ordering::Acquire);
            if c == code {
                s.count.inc();
                return;
            }
            if c == 0 {
                match s
                    .code
                    .compare_exchange(0, code, Ordering::AcqRel, Ordering::Acquire)
                {
                    Ok(_) => {
                        s.count.inc();
                        return;
                    }
                    Err(c) if c == code => {
                        s.count.inc();
                        return;
                    }
                    Err(_) => {}
                }
            }
        }
        let mut more = self.more.lock();
        match more.iter().find(|(c, _)| *c == status) {
            Some((_, n)) => n.inc(),
            None => {
                let n = Box::<Counter>::default();
                n.inc();
                more.push((status, n));
            }
        }
    }

    fn visit(&self, prefix: &str, f: &mut dyn FnMut(&str, Stat<'_>)) {
        if self.completed.value() > 0 {
            f(
                &format!("{prefix}completed"),
                Stat::Counter(&self.completed),
            );
        }
        if self.time.used() {
            f(&format!("{prefix}time"), Stat::Histogram(&self.time));
        }
        let used = self.used_classes.load(Ordering::Relaxed);
        for (i, c) in self.classes.iter().enumerate() {
            if used & (1 << i) != 0 {
                f(&format!("{prefix}{}xx", i + 1), Stat::Counter(c));
            }
        }
        for s in &self.slots {
            let code = s.code.load(Ordering::Acquire);
            if code != 0 {
                f(&format!("{prefix}{code}"), Stat::Counter(&s.count));
            }
        }
        for (code, n) in self.more.lock().iter() {
            f(&format!("{prefix}{code}"), Stat::Counter(n));
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn statuses_and_classes_appear_once_counted() {
        let s = StatusCodes::default();
        let list = |s: &StatusCodes| {
            let mut out = Vec::new();
            s.visit("upstream_rq_", &mut |n, st| {
                if let Stat::Counter(c) = st {
                    out.push(format!("{n}={}", c.value()));
                }
            });
            out.sort();
            out
        };
        assert!(list(&s).is_empty());
        for code in [200, 200, 503, 201, 202, 203, 204, 205, 206] {
            s.inc(code);
        }
        assert_eq!(s.class(2), 8);
        assert_eq!(
            list(&s),
            [
                "upstream_rq_200=2",
                "upstream_rq_201=1",
                "upstream_rq_202=1",
                "upstream_rq_203=1",
                "upstream_rq_204=1",
                "upstream_rq_205=1",
                "upstream_rq_206=1",
                "upstream_rq_2xx=8",
                "upstream_rq_503=1",
                "upstream_rq_5xx=1",
            ]
        );
    }
}
