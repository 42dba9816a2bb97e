//! Rotary position embedding, as Hugging Face's `apply_rotary_pos_emb` with
//! `rotate_half`, in the epilogue of every kernel that computes a qkv projection (flag
//! [`ROTARY`], prelude `epilogue`): no dispatch of its own.
//!
//! `rotate_half` mixes dimension `i` of a head with dimension `i + HS/2`. On the device
//! each query and key head holds its halves interleaved instead ([`interleaved`]: the
//! projection's weight and bias columns permuted at load, [`interleave_heads`]), so a
//! pair is two neighbours in one vec4 and the lane that computes the vec4 rotates it.
//! Attention only takes dot products of a query head with key heads, which the same
//! permutation of both leaves unchanged, so the keys in the pool and everything read
//! from them are those of the model as given; the values are not permuted. The cos and
//! sin tables (`model::rope::rope_table`) are laid out for that ([`device_table`]).

/// Epilogue flag (prelude `epilogue`): rotate the query and key heads.
pub const ROTARY: u32 = 64;

/// The heads a qkv projection's epilogue rotates: the first `heads` heads (the query
/// heads, then the key heads) of `hs` dimensions, a multiple of 4.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct Rope {
    pub heads: usize,
    pub hs: usize,
}

impl Rope {
    /// The query and key heads of `heads`.
    pub fn of(heads: crate::config::Heads) -> Self {
        Rope {
            heads: heads.nh + heads.nkv,
            hs: heads.hs,
        }
    }

    /// The uniform's words for `rope`: `(flag, head4, rot4)` ([`ROTARY`], vec4s in a
    /// head, vec4s rotated in a row), zeros for `None`.
    pub fn params(rope: Option<Rope>) -> (u32, u32, u32) {
        rope.map_or((0, 0, 0), |r| {
            (ROTARY, (r.hs / 4) as u32, (r.heads * r.hs / 4) as u32)
        })
    }
}

/// The dimension of Hugging Face's head layout that dimension `d` of a rotated head on
/// the device holds, when its first `rot` dimensions are rotated (`rot` = HS but for a
/// partial rotation): the two halves of those interleaved (`2i` ← `i`, `2i + 1` ←
/// `i + rot/2`), the passed dimensions after them as they are. A passed pair's cos and
/// sin in the table are 1 and 0.
pub fn interleaved(d: usize, rot: usize) -> usize {
    match d < rot {
        true => d / 2 + (d % 2) * (rot / 2),
        false => d,
    }
}

/// `values` (`[rows, cols]`, a qkv projection's weights or bias, its columns the query
/// heads, the key heads, then the value heads) with the first `heads` heads of `hs`
/// columns permuted by [`interleaved`] (their first `rot` rotated); the rest as they are.
pub fn interleave_heads(
    values: &[f32],
    cols: usize,
    heads: usize,
    (hs, rot): (usize, usize),
) -> Vec<f32> {
    values
        .chunks(cols)
        .flat_map(|row| {
            (0..cols).map(move |c| match c < heads * hs {
                true => row[c - c % hs + interleaved(c % hs, rot)],
                false => row[c],
            })
        })
        .collect()
}

/// The inverse of [`interleave_heads`]: device rows back in Hugging Face's layout.
pub fn deinterleave_heads(
    values: &[f32],
    cols: usize,
    heads: usize,
    (hs, rot): (usize, usize),
) -> Vec<f32> {
    let mut out = values.to_vec();
    for (row, dst) in values.chunks(cols).zip(out.chunks_mut(cols)) {
        for c in 0..(heads * hs).min(cols) {
            dst[c - c % hs + interleaved(c % hs, rot)] = row[c];
        }
    }
    out
}

/// The cos and sin tables `[positions, HS/2]` each as the epilogue reads them,
/// `[positions, 2, HS]`: per position, for each pair of frequencies (i, i + 1) the
/// vec4 `(cos θi, cos θi, cos θi+1, cos θi+1)`, then the vec4s
/// `(-sin θi, sin θi, -sin θi+1, sin θi+1)` (a pair (x, y) of the interleaved head
/// becomes `(x cos - y sin, y cos + x sin)`).
pub fn device_table(cos: &[f32], sin: &[f32], hs: usize) -> Vec<f32> {
    let half = hs / 2;
    cos.chunks(half)
        .zip(sin.chunks(half))
        .flat_map(|(c, s)| {
            let c = c.iter().flat_map(|&v| [v, v]);
            let s = s.iter().flat_map(|&v| [-v, v]);
            c.chain(s).collect::<Vec<_>>()
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn heads_interleave_and_come_back() {
        let (hs, heads, cols) = (8, 2, 3 * 8);
        let row: Vec<f32> = (0..2 * cols).map(|v| v as f32).collect();
        let dev = interleave_heads(&row, cols, heads, (hs, hs));
        // a head's dimension 2i is i, 2i + 1 is i + 4; the third head (a value head) as is
        assert_eq!(&dev[..8], &[0.0, 4.0, 1.0, 5.0, 2.0, 6.0, 3.0, 7.0]);
        assert_eq!(&dev[8..10], &[8.0, 12.0]);
        assert_eq!(&dev[16..24], &row[16..24]);
        assert_eq!(&dev[24..26], &[24.0, 28.0]);
        assert_eq!(deinterleave_heads(&dev, cols, heads, (hs, hs)), row);
        // 4 of 8 rotated: pairs (0, 2) and (1, 3), then 4..8 as they are
        let dev = interleave_heads(&row, cols, heads, (hs, 4));
        assert_eq!(&dev[..8], &[0.0, 2.0, 1.0, 3.0, 4.0, 5.0, 6.0, 7.0]);
        assert_eq!(&dev[8..12], &[8.0, 10.0, 9.0, 11.0]);
        assert_eq!(&dev[16..24], &row[16..24]);
        assert_eq!(deinterleave_heads(&dev, cols, heads, (hs, 4)), row);
    }

    #[test]
    fn the_table_pairs_cos_and_signed_sin() {
        let (cos, sin) = (vec![0.5, 0.25, 1.5, 1.25], vec![2.0, 3.0, 4.0, 5.0]);
        let t = device_table(&cos, &sin, 4);
        assert_eq!(
            t,
            [
                [0.5, 0.5, 0.25, 0.25, -2.0, 2.0, -3.0, 3.0],
                [1.5, 1.5, 1.25, 1.25, -4.0, 4.0, -5.0, 5.0]
            ]
            .concat()
        );
    }
}
