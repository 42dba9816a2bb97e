//! Reference per-head RMSNorm of the queries and keys (Qwen3's `q_norm` and `k_norm`,
//! before the rotation), in Hugging Face's head layout.

use super::layer_norm::rms_norm;
use crate::config::Heads;

/// `qkv [T, Q + 2 KV]` with each query head normalised by `q_w [HS]` and each key head
/// by `k_w [HS]` (RMSNorm over the head, epsilon `eps`); the value heads as they are.
pub fn head_norm(qkv: &[f32], heads: Heads, (q_w, k_w): (&[f32], &[f32]), eps: f64) -> Vec<f32> {
    let hs = heads.hs;
    let mut out = qkv.to_vec();
    for row in out.chunks_mut(heads.qkv_width()) {
        for (h, head) in row.chunks_mut(hs).take(heads.nh + heads.nkv).enumerate() {
            let w = if h < heads.nh { q_w } else { k_w };
            let normed = rms_norm(head, w, hs, eps);
            head.copy_from_slice(&normed);
        }
    }
    out
}

/// `qkv [T, Q + 2 KV]` with all its query heads normalised together by `q_w [Q]` and
/// all its key heads by `k_w [KV]` (one RMSNorm over each span, a weight a channel:
/// OLMo 2's `q_norm` and `k_norm`); the value heads as they are.
pub fn head_norm_whole(
    qkv: &[f32],
    heads: Heads,
    (q_w, k_w): (&[f32], &[f32]),
    eps: f64,
) -> Vec<f32> {
    let (q, kv) = (heads.q_width(), heads.kv_width());
    let mut out = qkv.to_vec();
    for row in out.chunks_mut(heads.qkv_width()) {
        let normed = rms_norm(&row[..q], q_w, q, eps);
        row[..q].copy_from_slice(&normed);
        let normed = rms_norm(&row[q..q + kv], k_w, kv, eps);
        row[q..q + kv].copy_from_slice(&normed);
    }
    out
}
