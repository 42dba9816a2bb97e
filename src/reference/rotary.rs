//! Reference rotary position embedding (Hugging Face's `apply_rotary_pos_emb` with
//! `rotate_half`), from the same cos / sin tables the kernel reads.

/// Rotate the first `heads` heads (of `hs` dimensions, the first `rot` of them rotated:
/// `rot` = `hs` but for a partial rotation) of each row of `x [T, row]` at
/// `positions[t]`: `x·cos + rotate_half(x)·sin` over those `rot` dimensions, the rest
/// as they are, in f64 from the tables `[positions, hs/2]` (their first `rot/2`
/// columns).
pub fn rotary(
    x: &[f32],
    (row, heads, hs, rot): (usize, usize, usize, usize),
    (cos, sin): (&[f32], &[f32]),
    positions: &[u32],
) -> Vec<f32> {
    let (width, half) = (hs / 2, rot / 2);
    let mut out = x.to_vec();
    for (t, &pos) in positions.iter().enumerate() {
        for h in 0..heads {
            let base = t * row + h * hs;
            for i in 0..half {
                let (c, s) = (
                    cos[pos as usize * width + i] as f64,
                    sin[pos as usize * width + i] as f64,
                );
                let (x1, x2) = (x[base + i] as f64, x[base + half + i] as f64);
                out[base + i] = (x1 * c - x2 * s) as f32;
                out[base + half + i] = (x2 * c + x1 * s) as f32;
            }
        }
    }
    out
}
