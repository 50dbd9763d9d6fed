//! `RING_HASH` (Ketama), as Envoy builds it: each host contributes ring entries
//! hashed with xxHash64 of `"<address>_<i>"`, in proportion to its normalized
//! weight; the ring size is `ceil(min_weight * minimum_ring_size) / min_weight`
//! capped at `maximum_ring_size`. A request hash maps to the first entry whose hash
//! is `>=` it, wrapping to the first entry.

use xxhash_rust::xxh64::xxh64;

/// A consistent-hash ring of host indices.
pub(crate) struct Ring {
    entries: Vec<(u64, u32)>,
}

impl Ring {
    /// Builds the ring for `(address, weight)` hosts.
    pub(crate) fn new(
        hosts: &[(String, u32)],
        minimum_ring_size: u64,
        maximum_ring_size: u64,
    ) -> Ring {
        if hosts.is_empty() {
            return Ring {
                entries: Vec::new(),
            };
        }
        let weights: Vec<u32> = hosts.iter().map(|h| h.1).collect();
        let (normalized, min_weight, _) = super::normalize(&weights);
        let scale = ((min_weight * minimum_ring_size as f64).ceil() / min_weight)
            .min(maximum_ring_size as f64);
        let mut entries = Vec::with_capacity(scale.ceil() as usize);
        let mut current = 0.0f64;
        let mut target = 0.0f64;
        let mut key = String::new();
        for (index, ((address, _), weight)) in hosts.iter().zip(&normalized).enumerate() {
            target += scale * weight;
            let mut i = 0u64;
            while current < target {
                key.clear();
                key.push_str(address);
                key.push('_');
                key.push_str(&i.to_string());
                entries.push((xxh64(key.as_bytes(), 0), index as u32));
                i += 1;
                current += 1.0;
            }
        }
        entries.sort_by_key(|e| e.0);
        Ring { entries }
    }

    /// The host index for a request hash.
    pub(crate) fn choose(&self, hash: u64) -> Option<usize> {
        let i = self.entries.partition_point(|e| e.0 < hash);
        let entry = self.entries.get(i).or_else(|| self.entries.first())?;
        Some(entry.1 as usize)
    }

    /// Number of ring entries.
    #[cfg(test)]
    fn len(&self) -> usize {
        self.entries.len()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn hosts(n: usize) -> Vec<(String, u32)> {
        (1..=n).map(|i| (format!("10.0.0.{i}:80"), 1)).collect()
    }

    #[test]
    fn ring_size_follows_envoy() {
        assert_eq!(Ring::new(&hosts(3), 1024, 8 << 20).len(), 1026);
        assert_eq!(Ring::new(&hosts(4), 1024, 8 << 20).len(), 1024);
        assert_eq!(Ring::new(&hosts(4), 1024, 100).len(), 100);
        let weighted = vec![
            ("10.0.0.1:80".to_string(), 1),
            ("10.0.0.2:80".to_string(), 3),
        ];
        let ring = Ring::new(&weighted, 1024, 8 << 20);
        assert_eq!(ring.len(), 1024);
        let ones = ring.entries.iter().filter(|e| e.1 == 1).count();
        assert_eq!(ones, 768);
    }

    #[test]
    fn lookup_first_entry_at_or_above_and_wraps() {
        let ring = Ring::new(&hosts(3), 3, 3);
        let e = ring.entries.clone();
        assert_eq!(ring.choose(e[1].0), Some(e[1].1 as usize));
        assert_eq!(ring.choose(e[1].0 - 1), Some(e[1].1 as usize));
        assert_eq!(ring.choose(e[2].0 + 1), Some(e[0].1 as usize));
        assert_eq!(ring.choose(0), Some(e[0].1 as usize));
        assert_eq!(Ring::new(&[], 3, 3).choose(5), None);
    }

    #[test]
    fn consistent_and_minimal_disruption() {
        let all = hosts(5);
        let ring = Ring::new(&all, 1024, 8 << 20);
        let keys: Vec<u64> = (0..10_000u64)
            .map(|k| xxh64(&k.to_le_bytes(), 42))
            .collect();
        let before: Vec<usize> = keys.iter().filter_map(|k| ring.choose(*k)).collect();
        let again: Vec<usize> = keys.iter().filter_map(|k| ring.choose(*k)).collect();
        assert_eq!(before, again);
        // Roughly even spread.
        for h in 0..5 {
            let n = before.iter().filter(|i| **i == h).count();
            assert!((1200..=2800).contains(&n), "host {h}: {n}");
        }
        // Remove host 2 (index 2): only its keys move.
        let fewer: Vec<(String, u32)> = all
            .iter()
            .enumerate()
            .filter(|(i, _)| *i != 2)
            .map(|(_, h)| h.clone())
            .collect();
        let ring2 = Ring::new(&fewer, 1024, 8 << 20);
        let mut moved_other = 0;
        for (k, b) in keys.iter().zip(&before) {
            let after = ring2.choose(*k).map(|i| if i >= 2 { i + 1 } else { i });
            if *b != 2 && after != Some(*b) {
                moved_other += 1;
            }
        }
        // The remaining hosts get more entries each (256 instead of 205, as Envoy sizes the
        // ring), which moves a few of their keys among them; a modulo reshuffle would move ~80%.
        assert!(
            moved_other < 1200,
            "{moved_other} keys of remaining hosts moved"
        );
    }
}
