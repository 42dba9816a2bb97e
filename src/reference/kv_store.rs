//! Reference KV-cache append.

/// Copy the K and V parts of `qkv [T, 3C]` into `k_cache`/`v_cache` `[rows, C]` at row `pos`.
pub fn kv_store(qkv: &[f32], k_cache: &mut [f32], v_cache: &mut [f32], c: usize, pos: usize) {
    for (t, row) in qkv.chunks(3 * c).enumerate() {
        k_cache[(pos + t) * c..(pos + t + 1) * c].copy_from_slice(&row[c..2 * c]);
        v_cache[(pos + t) * c..(pos + t + 1) * c].copy_from_slice(&row[2 * c..]);
    }
}
