//! Reference token + position embedding.

/// `out[t, :] = wte[ids[t], :] + wpe[pos_offset + t, :]`
pub fn embedding(ids: &[u32], wte: &[f32], wpe: &[f32], c: usize, pos_offset: usize) -> Vec<f32> {
    let mut out = Vec::with_capacity(ids.len() * c);
    for (t, &id) in ids.iter().enumerate() {
        let id = id as usize;
        for j in 0..c {
            out.push((wte[id * c + j] as f64 + wpe[(pos_offset + t) * c + j] as f64) as f32);
        }
    }
    out
}
