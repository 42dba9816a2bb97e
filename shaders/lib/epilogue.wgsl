// The epilogue of the matmul and matrix-vector kernels (after prelude `gelu`):
// out[at] (=|+=) act(o + bias[col]) by p.flags: bit 0 bias, bit 1 GELU, bit 2
// accumulate (the residual add), and KV_STORE. The kernel declares `p` (with `n4`,
// `kv_q4`, `kv4`), `bias`, `out` and the pool's `k_pool`, `v_pool`, `slots` (prelude
// `kv_write` stores to them). Returns the value stored.

// Flag: the output is a qkv projection of a prefill chunk or a decode step; its keys
// and values also go to the paged KV pool, row r's to pool row slots[r] (the kv_store
// kernel's work done in the epilogue, for models without rotary positions).
const KV_STORE: u32 = 8u;
// Flag, with KV_STORE: the pool holds half floats (prelude `kv_write`).
const KV_HALF: u32 = 16u;

// With KV_STORE, output vec4 `col` of row `row`, `o`, to its pool row when it is a key
// or a value (columns kv_q4 .. kv_q4 + kv4 the keys, the next kv4 the values).
fn store_kv(o: vec4<f32>, col: u32, row: u32) {
    if ((p.flags & KV_STORE) != 0u && col >= p.kv_q4) {
        let c = col - p.kv_q4;
        let half = (p.flags & KV_HALF) != 0u;
        if (c < p.kv4) {
            put_key(slots[row] * p.kv4 + c, o, half);
        } else if (c < 2u * p.kv4) {
            put_value(slots[row] * p.kv4 + c - p.kv4, o, half);
        }
    }
}

// `o` with column `col`'s bias added (bit 0).
fn biased(o: vec4<f32>, col: u32) -> vec4<f32> {
    if ((p.flags & 1u) != 0u) {
        return o + bias[col];
    }
    return o;
}

fn store_epilogue(acc: vec4<f32>, col: u32, at: u32) -> vec4<f32> {
    var o = biased(acc, col);
    if ((p.flags & 2u) != 0u) {
        o = gelu(o);
    }
    if ((p.flags & 4u) != 0u) {
        o += out[at];
    }
    out[at] = o;
    store_kv(o, col, at / p.n4);
    return o;
}
