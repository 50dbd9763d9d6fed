//! `RANDOM`: a uniformly random host (weights are ignored, as in Envoy).

use rand::Rng;

/// Picks a uniformly random index below `n`.
pub(crate) fn choose<R: Rng>(n: usize, rng: &mut R) -> Option<usize> {
    (n > 0).then(|| rng.random_range(0..n))
}

#[cfg(test)]
mod tests {
    use super::*;
    use rand::SeedableRng;

    #[test]
    fn uniform_within_tolerance() {
        let mut rng = rand::rngs::StdRng::seed_from_u64(7);
        let mut counts = [0u32; 4];
        for _ in 0..10_000 {
            counts[choose(4, &mut rng).unwrap_or(0)] += 1;
        }
        for c in counts {
            assert!((2300..=2700).contains(&c), "{counts:?}");
        }
        assert_eq!(choose(0, &mut rng), None);
    }
}
