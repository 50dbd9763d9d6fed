//! `MAGLEV`, as Envoy builds it: each host gets an offset `xxh64(address, 0) % M`
//! and a skip `xxh64(address, 1) % (M - 1) + 1`; hosts take turns filling their
//! next free slot of their permutation, a host of lower weight skipping turns in
//! proportion. A request hash maps to `table[hash % M]`.

use xxhash_rust::xxh64::xxh64;

/// A Maglev lookup table of host indices.
pub(crate) struct Maglev {
    table: Vec<u32>,
}

struct BuildEntry {
    offset: u64,
    skip: u64,
    weight: f64,
    target_weight: f64,
    next: u64,
}

impl Maglev {
    /// Builds the table of prime size `table_size` for `(address, weight)` hosts.
    pub(crate) fn new(hosts: &[(String, u32)], table_size: u64) -> Maglev {
        if hosts.is_empty() || table_size < 2 {
            return Maglev { table: Vec::new() };
        }
        let m = table_size;
        let weights: Vec<u32> = hosts.iter().map(|h| h.1).collect();
        let (normalized, _, max_weight) = super::normalize(&weights);
        let mut entries: Vec<BuildEntry> = hosts
            .iter()
            .zip(&normalized)
            .map(|((address, _), weight)| BuildEntry {
                offset: xxh64(address.as_bytes(), 0) % m,
                skip: xxh64(address.as_bytes(), 1) % (m - 1) + 1,
                weight: *weight,
                target_weight: 0.0,
                next: 0,
            })
            .collect();
        let permutation = |e: &BuildEntry| {
            ((e.offset as u128 + e.skip as u128 * e.next as u128) % m as u128) as usize
        };
        let mut table = vec![u32::MAX; m as usize];
        let mut filled = 0u64;
        let mut iteration = 1u64;
        while filled < m {
            for (index, entry) in entries.iter_mut().enumerate() {
                if filled >= m {
                    break;
                }
                // A host of the largest weight takes every turn; one of a third of it every third.
                if (iteration as f64) * entry.weight < entry.target_weight {
                    continue;
                }
                entry.target_weight += max_weight;
                let mut c = permutation(entry);
                while table[c] != u32::MAX {
                    entry.next += 1;
                    c = permutation(entry);
                }
                table[c] = index as u32;
                entry.next += 1;
                filled += 1;
            }
            iteration += 1;
        }
        Maglev { table }
    }

    /// The host index for a request hash.
    pub(crate) fn choose(&self, hash: u64) -> Option<usize> {
        if self.table.is_empty() {
            return None;
        }
        Some(self.table[(hash % self.table.len() as u64) as usize] as usize)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn hosts(n: usize) -> Vec<(String, u32)> {
        (1..=n).map(|i| (format!("10.0.0.{i}:80"), 1)).collect()
    }

    fn share(t: &Maglev, h: u32) -> usize {
        t.table.iter().filter(|i| **i == h).count()
    }

    #[test]
    fn table_is_full_and_balanced() {
        let t = Maglev::new(&hosts(3), 65537);
        assert_eq!(t.table.len(), 65537);
        for h in 0..3 {
            let n = share(&t, h);
            assert!((21_000..=22_700).contains(&n), "host {h}: {n}");
        }
    }

    #[test]
    fn weighted() {
        let hosts = vec![
            ("10.0.0.1:80".to_string(), 1),
            ("10.0.0.2:80".to_string(), 3),
        ];
        let t = Maglev::new(&hosts, 65537);
        let (a, b) = (share(&t, 0), share(&t, 1));
        assert!((15_500..=17_300).contains(&a), "{a} {b}");
        assert_eq!(a + b, 65537);
    }

    #[test]
    fn lookup_is_modulo() {
        let t = Maglev::new(&hosts(2), 7);
        assert_eq!(t.choose(3), Some(t.table[3] as usize));
        assert_eq!(t.choose(7 + 3), Some(t.table[3] as usize));
        assert_eq!(Maglev::new(&[], 7).choose(1), None);
    }

    #[test]
    fn consistent_and_minimal_disruption() {
        let all = hosts(5);
        let t = Maglev::new(&all, 65537);
        let fewer: Vec<(String, u32)> = all
            .iter()
            .enumerate()
            .filter(|(i, _)| *i != 2)
            .map(|(_, h)| h.clone())
            .collect();
        let t2 = Maglev::new(&fewer, 65537);
        let mut moved_other = 0;
        let keys = 10_000u64;
        for k in 0..keys {
            let hash = xxh64(&k.to_le_bytes(), 42);
            let before = t.choose(hash);
            assert_eq!(before, t.choose(hash));
            let after = t2.choose(hash).map(|i| if i >= 2 { i + 1 } else { i });
            if before != Some(2) && after != before {
                moved_other += 1;
            }
        }
        // Maglev trades a little disruption for balance; stay well below a reshuffle.
        assert!(
            moved_other < 1000,
            "{moved_other} keys of remaining hosts moved"
        );
    }
}
