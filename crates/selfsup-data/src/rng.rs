//! Small seeded RNG (xoshiro256++ seeded by SplitMix64).  Per-sample streams are
//! derived from (seed, epoch, sample index, view) so results never depend on
//! which worker thread handles a sample.

/// Random stream for one (seed, epoch, sample, view).
#[derive(Clone, Debug)]
pub struct SampleRng {
    s: [u64; 4],
}

fn splitmix64(state: &mut u64) -> u64 {
    *state = state.wrapping_add(0x9E37_79B9_7F4A_7C15);
    let mut z = *state;
    z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
    z ^ (z >> 31)
}

impl SampleRng {
    /// Stream keyed by any list of numbers; each key word is mixed through SplitMix64
    /// so neighbouring keys give unrelated streams.
    pub fn from_key(key: &[u64]) -> Self {
        let mut state = 0x5E1F_5C9A_0D47_A1B3u64;
        for &k in key {
            state ^= k;
            state = splitmix64(&mut state);
        }
        let s = [
            splitmix64(&mut state),
            splitmix64(&mut state),
            splitmix64(&mut state),
            splitmix64(&mut state),
        ];
        SampleRng { s }
    }

    /// Stream for one augmented view of one sample.
    pub fn for_sample(seed: u64, epoch: u64, index: u64, view: u64) -> Self {
        Self::from_key(&[seed, epoch, index, view])
    }

    pub fn next_u64(&mut self) -> u64 {
        let s = &mut self.s;
        let result = s[0].wrapping_add(s[3]).rotate_left(23).wrapping_add(s[0]);
        let t = s[1] << 17;
        s[2] ^= s[0];
        s[3] ^= s[1];
        s[1] ^= s[2];
        s[0] ^= s[3];
        s[2] ^= t;
        s[3] = s[3].rotate_left(45);
        result
    }

    /// Uniform in [0, 1) with 53 random bits.
    pub fn unit(&mut self) -> f64 {
        (self.next_u64() >> 11) as f64 * (1.0 / (1u64 << 53) as f64)
    }

    /// Uniform in [lo, hi).
    pub fn uniform(&mut self, lo: f64, hi: f64) -> f64 {
        lo + (hi - lo) * self.unit()
    }

    /// Uniform integer in [0, n) (multiply-shift; bias is below 2^-32 for our n).
    pub fn below(&mut self, n: u64) -> u64 {
        ((self.next_u64() as u128 * n as u128) >> 64) as u64
    }

    /// True with probability p (torchvision's `torch.rand(1) < p`).
    pub fn chance(&mut self, p: f64) -> bool {
        self.unit() < p
    }

    pub fn shuffle<T>(&mut self, items: &mut [T]) {
        for i in (1..items.len()).rev() {
            let j = self.below(i as u64 + 1) as usize;
            items.swap(i, j);
        }
    }
}

/// Pass `pass` over `0..n` in shuffled batches of `min(batch, n)` (the last partial batch is
/// dropped); deterministic in `(seed, pass)`.
pub fn shuffled_batches(n: usize, batch: usize, seed: u64, pass: u64) -> Vec<Vec<usize>> {
    let batch = batch.min(n).max(1);
    let mut order: Vec<usize> = (0..n).collect();
    SampleRng::for_sample(seed, pass, u64::MAX, 0).shuffle(&mut order);
    order.chunks_exact(batch).map(<[usize]>::to_vec).collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn shuffled_batches_cover_each_index_once_per_pass() {
        let b = shuffled_batches(10, 3, 7, 0);
        assert_eq!(b.len(), 3);
        let mut seen: Vec<usize> = b.concat();
        seen.sort_unstable();
        seen.dedup();
        assert_eq!(seen.len(), 9);
        assert_ne!(shuffled_batches(10, 3, 7, 1), b, "a new order each pass");
        assert_eq!(shuffled_batches(4, 8, 0, 0).len(), 1, "batch capped at n");
    }
}
