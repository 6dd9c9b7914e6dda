//! The project's seeded random numbers, identical on every platform: [`SplitMix64`] (a
//! 64-bit counter through a bijective mix, Steele et al. 2014) and [`SampleRng`]
//! (xoshiro256++ seeded through SplitMix64). Per-sample streams are derived from
//! (seed, epoch, sample index, view) so results never depend on which worker thread
//! handles a sample.

/// SplitMix64: each call adds the golden-ratio increment to the state and mixes it.
/// Small and fast; the one generator behind every seeded choice outside data augmentation
/// (label subsets, probe shuffling, negative mining, patch masks) and behind
/// [`SampleRng`]'s seeding.
#[derive(Clone, Debug)]
pub struct SplitMix64 {
    state: u64,
}

impl SplitMix64 {
    /// The stream of `seed`, whitened by a fixed XOR (`seed ^ 0x5851_F42D_4C95_7F2D`) so that
    /// seed 0 does not start from state 0 (the evaluation crate's streams).
    pub fn new(seed: u64) -> Self {
        Self::from_state(seed ^ 0x5851_F42D_4C95_7F2D)
    }

    /// The stream starting from the raw state `state` (the first output mixes
    /// `state + 0x9E37_79B9_7F4A_7C15`): the textbook SplitMix64 of `state`.
    pub fn from_state(state: u64) -> Self {
        Self { state }
    }

    pub fn next_u64(&mut self) -> u64 {
        self.state = self.state.wrapping_add(0x9E37_79B9_7F4A_7C15);
        let mut z = self.state;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^ (z >> 31)
    }

    /// Uniform in `0..n` (n > 0), via 128-bit multiply-shift (negligible bias).
    pub fn below(&mut self, n: usize) -> usize {
        ((self.next_u64() as u128 * n as u128) >> 64) as usize
    }

    /// Fisher–Yates shuffle drawing with [`below`](Self::below).
    pub fn shuffle<T>(&mut self, v: &mut [T]) {
        for i in (1..v.len()).rev() {
            let j = self.below(i + 1);
            v.swap(i, j);
        }
    }
}

/// Random stream for one (seed, epoch, sample, view).
#[derive(Clone, Debug)]
pub struct SampleRng {
    s: [u64; 4],
}

impl SampleRng {
    /// Stream keyed by any list of numbers; each key word is mixed through SplitMix64
    /// so neighbouring keys give unrelated streams.
    pub fn from_key(key: &[u64]) -> Self {
        let mut state = 0x5E1F_5C9A_0D47_A1B3u64;
        for &k in key {
            state = SplitMix64::from_state(state ^ k).next_u64();
        }
        let mut seeder = SplitMix64::from_state(state);
        let s = std::array::from_fn(|_| seeder.next_u64());
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

    /// Outputs of the generators as they were before they were merged into this module
    /// (eval's `SplitMix64` with its XOR-whitened seed, triplet loss' raw `splitmix64`,
    /// `SampleRng`), computed with that code: every stream must stay bit-identical.
    #[test]
    fn streams_are_pinned() {
        let mut r = SplitMix64::new(0);
        let got = [r.next_u64(), r.next_u64(), r.next_u64()];
        assert_eq!(
            got,
            [
                0xba88_94fa_3be5_9747,
                0x0699_45de_a824_60da,
                0xf2b5_717d_b028_09ea
            ]
        );
        let mut r = SplitMix64::new(42);
        assert_eq!(
            [r.next_u64(), r.next_u64()],
            [0xdb26_f2b8_006b_e934, 0x1a5d_397a_7335_284a]
        );
        let mut r = SplitMix64::new(7);
        let below: Vec<usize> = (0..6).map(|_| r.below(10)).collect();
        assert_eq!(below, [9, 3, 6, 3, 9, 1]);
        let mut v: Vec<u32> = (0..10).collect();
        SplitMix64::new(3).shuffle(&mut v);
        assert_eq!(v, [9, 0, 4, 2, 5, 8, 6, 7, 3, 1]);

        // Raw state (triplet's and MAE's streams); state 0 is the reference SplitMix64 vector.
        let mut r = SplitMix64::from_state(0);
        assert_eq!(
            [r.next_u64(), r.next_u64(), r.next_u64()],
            [
                0xe220_a839_7b1d_cdaf,
                0x6e78_9e6a_a1b9_65f4,
                0x06c4_5d18_8009_454f
            ]
        );
        let mut r = SplitMix64::from_state(12345);
        assert_eq!(
            [r.next_u64(), r.next_u64()],
            [0x2211_8258_a9d1_11a0, 0x346e_dce5_f713_f8ed]
        );

        let mut r = SampleRng::for_sample(1, 2, 3, 4);
        assert_eq!(
            [r.next_u64(), r.next_u64(), r.next_u64()],
            [
                0xfd0c_d42d_d544_0fcf,
                0x6622_2658_45ff_f668,
                0x489a_299f_581c_660d
            ]
        );
        let mut r = SampleRng::from_key(&[]);
        assert_eq!(
            [r.next_u64(), r.next_u64()],
            [0x2531_64fe_0cea_c482, 0x52e8_534c_b1a7_d553]
        );
        assert_eq!(
            shuffled_batches(10, 3, 7, 0),
            [[0, 8, 9], [7, 2, 5], [1, 6, 4]]
        );
    }
}
