//! Reference KV append to the paged pool.

use crate::config::Heads;

/// Copy the K and V parts of row `t` of `qkv [T, Q + 2 KV]` into row `slots[t]` of
/// `k_pool` / `v_pool` `[rows, KV]` (Q, KV: the query and key widths of `heads`).
pub fn kv_store(qkv: &[f32], k_pool: &mut [f32], v_pool: &mut [f32], heads: Heads, slots: &[u32]) {
    let (q, kv) = (heads.q_width(), heads.kv_width());
    for (row, &s) in qkv.chunks(heads.qkv_width()).zip(slots) {
        let s = s as usize;
        k_pool[s * kv..(s + 1) * kv].copy_from_slice(&row[q..q + kv]);
        v_pool[s * kv..(s + 1) * kv].copy_from_slice(&row[q + kv..]);
    }
}
