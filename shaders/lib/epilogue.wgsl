// The epilogue of the matmul and matrix-vector kernels (after prelude `gelu`):
// out[at] (=|+=) act(rotated(o + bias[col])) by p.flags: bit 0 bias, bit 1 GELU, bit 2
// accumulate (the residual add), bit 7 exact GELU (GELU_ERF), and in a kernel compiled with QKV (prelude `kv_write`)
// ROTARY and KV_STORE. The kernel declares `p` (with
// `n4`, `kv_q4`, `kv4`, `head4`, `rot4`), `bias`, `out`, the pool's `k_pool`, `v_pool`,
// `slots` (prelude `kv_write` stores to them), and the rows' `positions` and the
// rotary table `rope`. Returns the value stored.

// Flag: the output is a qkv projection of a prefill chunk or a decode step; its keys
// and values also go to the paged KV pool, row r's to pool row slots[r] (the kv_store
// kernel's work done in the epilogue, for models without rotary positions).
const KV_STORE: u32 = 8u;

// With KV_STORE, output vec4 `col` of row `row`, `o`, to its pool row when it is a key
// or a value (columns kv_q4 .. kv_q4 + kv4 the keys, the next kv4 the values).
fn store_kv(o: vec4<f32>, col: u32, row: u32) {
    if (QKV && (p.flags & KV_STORE) != 0u && col >= p.kv_q4) {
        let c = col - p.kv_q4;
        if (c < p.kv4) {
            put_key(slots[row] * p.kv4 + c, o);
        } else if (c < 2u * p.kv4) {
            put_value(slots[row] * p.kv4 + c - p.kv4, o);
        }
    }
}

// Flag: rotary positions on a qkv projection's query and key heads (`kernels::rotary`).
// Each rotated head is stored with its halves interleaved (the weights' columns
// permuted at load: dimension 2i is Hugging Face's i, 2i + 1 its i + HS/2), so the
// pairs rotate_half mixes are neighbours in one vec4 and the rotation needs nothing
// from other lanes; attention only takes dot products of queries with keys, which the
// same permutation of both leaves as they were.
const ROTARY: u32 = 64u;

// Output vec4 `col` of row `row`, rotated at the row's position where it belongs to a
// query or key head (columns below p.rot4) and ROTARY is set: the table holds, per
// position and vec4 of a head, (cos θi, cos θi, cos θi+1, cos θi+1) and then
// (-sin θi, sin θi, -sin θi+1, sin θi+1), so (x, y) becomes
// (x cos - y sin, y cos + x sin), Hugging Face's rotation of the pair.
fn rotated(o: vec4<f32>, col: u32, row: u32) -> vec4<f32> {
    if (!QKV || (p.flags & ROTARY) == 0u || col >= p.rot4) {
        return o;
    }
    let at = positions[row] * 2u * p.head4 + col % p.head4;
    return o * rope[at] + o.yxwz * rope[at + p.head4];
}

// `o` with column `col`'s bias added (bit 0).
fn biased(o: vec4<f32>, col: u32) -> vec4<f32> {
    if ((p.flags & 1u) != 0u) {
        return o + bias[col];
    }
    return o;
}

// Flag: the activation is exact GELU (an encoder's), not the tanh form of bit 1.
const GELU_ERF: u32 = 128u;

fn store_epilogue(acc: vec4<f32>, col: u32, at: u32) -> vec4<f32> {
    let row = at / p.n4;
    var o = rotated(biased(acc, col), col, row);
    if ((p.flags & 2u) != 0u) {
        o = gelu(o);
    } else if ((p.flags & GELU_ERF) != 0u) {
        o = gelu_erf(o);
    }
    if ((p.flags & 4u) != 0u) {
        o += out[at];
    }
    out[at] = o;
    store_kv(o, col, row);
    return o;
}
