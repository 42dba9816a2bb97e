//! Reference KV append to the paged pool.

/// Copy the K and V parts of row `t` of `qkv [T, 3C]` into row `slots[t]` of
/// `k_pool` / `v_pool` `[rows, C]`.
pub fn kv_store(qkv: &[f32], k_pool: &mut [f32], v_pool: &mut [f32], c: usize, slots: &[u32]) {
    for (row, &s) in qkv.chunks(3 * c).zip(slots) {
        let s = s as usize;
        k_pool[s * c..(s + 1) * c].copy_from_slice(&row[c..2 * c]);
        v_pool[s * c..(s + 1) * c].copy_from_slice(&row[2 * c..]);
    }
}
