//! Earliest-deadline-first scheduling, as Envoy's `EdfScheduler`: each entry's next
//! deadline is the current time plus `1 / weight`; ties go to the earliest added.

use std::cmp::Ordering;
use std::collections::BinaryHeap;

/// An EDF scheduler over indices.
#[derive(Debug, Default)]
pub(crate) struct Edf {
    heap: BinaryHeap<Entry>,
    current_time: f64,
    order: u64,
}

#[derive(Debug)]
struct Entry {
    deadline: f64,
    order: u64,
    index: usize,
}

impl PartialEq for Entry {
    fn eq(&self, other: &Self) -> bool {
        self.cmp(other) == Ordering::Equal
    }
}

impl Eq for Entry {}

impl PartialOrd for Entry {
    fn partial_cmp(&self, other: &Self) -> Option<Ordering> {
        Some(self.cmp(other))
    }
}

impl Ord for Entry {
    // Reversed: `BinaryHeap` is a max-heap and we pop the earliest deadline.
    fn cmp(&self, other: &Self) -> Ordering {
        other
            .deadline
            .total_cmp(&self.deadline)
            .then_with(|| other.order.cmp(&self.order))
    }
}

impl Edf {
    /// Adds `index` with `weight` (> 0).
    pub(crate) fn add(&mut self, index: usize, weight: f64) {
        let deadline = self.current_time + 1.0 / weight;
        self.heap.push(Entry {
            deadline,
            order: self.order,
            index,
        });
        self.order += 1;
    }

    /// Removes and returns the entry with the earliest deadline; the caller re-adds it.
    pub(crate) fn pick(&mut self) -> Option<usize> {
        let e = self.heap.pop()?;
        self.current_time = e.deadline;
        Some(e.index)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn weighted_order() {
        let mut edf = Edf::default();
        edf.add(0, 1.0);
        edf.add(1, 2.0);
        let mut picks = Vec::new();
        for _ in 0..6 {
            let i = edf.pick().unwrap_or(usize::MAX);
            picks.push(i);
            edf.add(i, if i == 0 { 1.0 } else { 2.0 });
        }
        assert_eq!(picks, vec![1, 0, 1, 1, 0, 1]);
    }
}
