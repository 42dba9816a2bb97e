//! Block-sparse attention layouts (plain data, below the kernels that read them and
//! the references that check them): which key blocks each query block attends to,
//! stored compactly (CSR: row offsets + key-block indices).
//!
//! Query block `qb` attends to key block `kb ≤ qb` when any of these holds:
//! - local window: `qb - kb < local` (the last `local` blocks, the diagonal included);
//! - global: `kb < global` (the first blocks of the sequence);
//! - strided: `stride > 0` and `(qb - kb) % stride == 0` (the Sparse Transformer's
//!   strided pattern).
//!
//! Causality holds everywhere: `kb ≤ qb` always, and inside a block keys after the
//! query are masked by the kernel.

/// A CSR block layout over `n_blocks` query blocks of `block` tokens.
#[derive(Clone, Debug, PartialEq)]
pub struct BlockLayout {
    pub block: usize,
    pub n_blocks: usize,
    pub row_offsets: Vec<u32>,
    pub cols: Vec<u32>,
}

impl BlockLayout {
    /// The pattern above for sequences of up to `context` tokens.
    pub fn new(context: usize, block: usize, local: usize, global: usize, stride: usize) -> Self {
        Self::from_rule(context, block, |qb, kb| {
            qb - kb < local || kb < global || (stride > 0 && (qb - kb) % stride == 0)
        })
    }

    /// Every causal block: equal to dense causal attention.
    pub fn dense_causal(context: usize, block: usize) -> Self {
        Self::from_rule(context, block, |_, _| true)
    }

    /// A layout listing `kb ≤ qb` where `keep(qb, kb)`.
    pub fn from_rule(context: usize, block: usize, keep: impl Fn(usize, usize) -> bool) -> Self {
        let block = block.max(1);
        let n_blocks = context.div_ceil(block);
        let mut row_offsets = vec![0u32];
        let mut cols = Vec::new();
        for qb in 0..n_blocks {
            for kb in 0..=qb {
                if keep(qb, kb) {
                    cols.push(kb as u32);
                }
            }
            row_offsets.push(cols.len() as u32);
        }
        BlockLayout {
            block,
            n_blocks,
            row_offsets,
            cols,
        }
    }

    /// Whether query position `i` may attend to key position `j`.
    pub fn allows(&self, i: usize, j: usize) -> bool {
        if j > i {
            return false;
        }
        let (qb, kb) = ((i / self.block) as u32, (j / self.block) as u32);
        let row = &self.cols
            [self.row_offsets[qb as usize] as usize..self.row_offsets[qb as usize + 1] as usize];
        row.contains(&kb)
    }

    /// Share of the (query block, key block) pairs of a `t`-token sequence that are
    /// listed: 1.0 lists all T² / block² pairs (causality alone gives about 0.5).
    pub fn density(&self, t: usize) -> f64 {
        let nb = t.div_ceil(self.block).min(self.n_blocks);
        if nb == 0 {
            return 0.0;
        }
        let listed = self.row_offsets[nb] as f64;
        listed / (nb * nb) as f64
    }

    /// Share of the causal block pairs that are listed (1.0 = dense causal).
    pub fn causal_density(&self, t: usize) -> f64 {
        let nb = t.div_ceil(self.block).min(self.n_blocks);
        if nb == 0 {
            return 0.0;
        }
        self.row_offsets[nb] as f64 / (nb * (nb + 1) / 2) as f64
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn pattern_and_causality() {
        let l = BlockLayout::new(256, 32, 2, 1, 0);
        assert_eq!(l.n_blocks, 8);
        // block 5 sees 0 (global), 4 and 5 (local)
        assert_eq!(
            &l.cols[l.row_offsets[5] as usize..l.row_offsets[6] as usize],
            &[0, 4, 5]
        );
        for i in 0..256 {
            for j in 0..256 {
                if j > i {
                    assert!(!l.allows(i, j));
                }
            }
            assert!(l.allows(i, i), "every query sees itself");
        }
        let s = BlockLayout::new(256, 32, 1, 0, 3);
        assert_eq!(
            &s.cols[s.row_offsets[7] as usize..s.row_offsets[8] as usize],
            &[1, 4, 7]
        );
        let d = BlockLayout::dense_causal(100, 32);
        assert_eq!(d.n_blocks, 4);
        assert_eq!(d.cols.len(), 10);
        assert!((d.causal_density(100) - 1.0).abs() < 1e-12);
        assert!((d.density(128) - 10.0 / 16.0).abs() < 1e-12);
    }

    #[test]
    fn default_pattern_at_gpt2_context_is_sparse() {
        let l = BlockLayout::new(1024, 32, 4, 1, 0);
        assert!(l.density(1024) <= 0.25, "{}", l.density(1024));
    }
}
