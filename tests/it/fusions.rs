//! The fused dispatches of a step against the kernels they replace: a qkv projection
//! (matrix-vector or matmul) that stores its keys and values in the pool (`kv_store`)
//! and rotates the rotary families' queries and keys, the hardware kernels'
//! norm prologue (`layer_norm_workgroup`, then the product), the device's draw against
//! the host's sampler, the dispatches a step takes with each kernel class, steps
//! mixing decode rows and prompts, and a burst of short prompts' attention.

use crate::common;

use common::{assert_close, gpu, rand_vec};
use wgformer::config::Heads;
use wgformer::gpu::buffers;
use wgformer::kernels::layer_norm::{self, Norm};
use wgformer::kernels::matvec::{self, Fusion, FusionBuffers};
use wgformer::kernels::{matmul, rotary, seen_by, submit_pass, LinearBuffers};
use wgformer::model::{MixedRows, Model};
use wgformer::reference;

/// Every matrix-vector kernel compiled here, f32 and half-float weights.
fn matvec_variants() -> Vec<&'static str> {
    let pl = &gpu().pipelines;
    let mut all = pl.variants("matvec");
    all.extend(pl.variants("matvec_f16"));
    all
}

/// The split-K matrix-vector kernels (f32 and half-float weights), which fold the
/// norm in.
fn split_k_variants() -> Vec<&'static str> {
    let all: Vec<_> = matvec_variants()
        .into_iter()
        .filter(|v| matvec::fuses_norm(v))
        .collect();
    assert!(all.len() >= 2, "f32 and f16 split-K kernels: {all:?}");
    all
}

/// A KV pool of `rows` rows and the pool rows a step's `t` rows store to (distinct,
/// not in order: a batch's generations each write their own page's row): the buffers a
/// fused store writes, and the check that they hold what `kv_store` would copy (as
/// half floats in a `half` pool).
struct Pool {
    heads: Heads,
    rows: usize,
    half: bool,
    slots: Vec<u32>,
    k: wgpu::Buffer,
    v: wgpu::Buffer,
    s: wgpu::Buffer,
}

impl Pool {
    fn new(heads: Heads, rows: usize, t: usize, half: bool) -> Pool {
        let ctx = &gpu().ctx;
        let slots: Vec<u32> = (0..t).map(|r| ((r * 7 + 3) % rows) as u32).collect();
        Pool {
            heads,
            rows,
            half,
            k: buffers::storage(ctx, "k_pool", rows * heads.kv_width()),
            v: buffers::storage(ctx, "v_pool", rows * heads.kv_width()),
            s: buffers::upload(ctx, "slots", bytemuck::cast_slice(&slots)),
            slots,
        }
    }

    fn bind(&self) -> (&wgpu::Buffer, &wgpu::Buffer, &wgpu::Buffer) {
        (&self.k, &self.v, &self.s)
    }

    /// Read back the step's qkv rows in `out` and the pool; the pool must hold exactly
    /// those rows' keys and values at their slots, every other row untouched. The qkv
    /// rows.
    fn read_checked(&self, out: &wgpu::Buffer, name: &str) -> Vec<f32> {
        let (t, c) = (self.slots.len(), self.heads.kv_width());
        // a half pool: two half floats a word, in order
        let words = if self.half {
            self.rows * c / 2
        } else {
            self.rows * c
        };
        let ranges = [
            (out, 0, t * self.heads.qkv_width()),
            (&self.k, 0, words),
            (&self.v, 0, words),
        ];
        let mut got = buffers::read_many(&gpu().ctx, &ranges).unwrap();
        let (mut v_got, mut k_got, qkv) =
            (got.pop().unwrap(), got.pop().unwrap(), got.pop().unwrap());
        let (mut k_want, mut v_want) = (vec![0.0; self.rows * c], vec![0.0; self.rows * c]);
        reference::kv_store::kv_store(&qkv, &mut k_want, &mut v_want, self.heads, &self.slots);
        if self.half {
            let unpack = |w: Vec<f32>| -> Vec<f32> {
                w.iter()
                    .flat_map(|x| {
                        let b = x.to_bits();
                        [b & 0xffff, b >> 16].map(|h| wgformer::gpu::f16::f16_to_f32(h as u16))
                    })
                    .collect()
            };
            (k_got, v_got) = (unpack(k_got), unpack(v_got));
            k_want = wgformer::gpu::f16::round_to_f16(&k_want);
            v_want = wgformer::gpu::f16::round_to_f16(&v_want);
        }
        assert_eq!(k_got, k_want, "{name}: keys in the pool");
        assert_eq!(v_got, v_want, "{name}: values in the pool");
        qkv
    }
}

/// The kernels that compute a qkv projection: every matrix-vector kernel (`None`) and
/// every matmul with K split and whole (`Some(split)`), f32 and half-float weights.
fn qkv_cases() -> Vec<(&'static str, Option<bool>)> {
    let pl = &gpu().pipelines;
    let mut matmuls = pl.variants("matmul");
    matmuls.extend(pl.variants("matmul_f16"));
    let matmuls = matmuls
        .into_iter()
        .flat_map(|v| [(v, Some(false)), (v, Some(true))]);
    matvec_variants()
        .into_iter()
        .map(|v| (v, None))
        .chain(matmuls)
        .collect()
}

/// Run a qkv projection of `rows` rows with `variant` as [`qkv_cases`] gives it, bound
/// with `fused` and recorded with `fusion`.
fn run_qkv(
    (variant, split): (&'static str, Option<bool>),
    io: &LinearBuffers,
    fused: FusionBuffers,
    fusion: Fusion,
    (rows, n, k): (usize, usize, usize),
    flags: u32,
) {
    let (ctx, pl) = (&gpu().ctx, &*gpu().pipelines);
    match split {
        None => {
            let op = matvec::matvec_fused_op(ctx, pl, variant, io, fused);
            submit_pass(ctx, "matvec", |pass| {
                matvec::encode_matvec_fused(pass, &op, rows, n, k, flags, fusion)
            })
        }
        Some(split) => {
            let part = buffers::storage(ctx, "part", matmul::split_floats(n, k, rows).max(4));
            let split = Some((&part, if split { rows } else { 0 }));
            let op = matmul::matmul_fused_op(ctx, pl, variant, io, split, fused);
            submit_pass(ctx, "matmul", |pass| {
                matmul::encode_matmul_fused(pass, &op, (rows, n, k), flags, fusion)
            })
        }
    }
    .unwrap();
}

#[test]
fn a_qkv_projection_stores_its_keys_and_values_in_the_pool() {
    let g = gpu();
    let ctx = &g.ctx;
    let heads = |nh: usize, nkv, hs| Heads::mha(nh * hs, nh).grouped(nkv);
    // grouped-query heads and GPT-2's even split; a K of several slices, so the tiled
    // matmuls split it (the store then happens in matmul_split_sum) or run it whole
    for (heads, k) in [
        (heads(4, 2, 8), 24),
        (heads(2, 1, 4), 24), // an odd number of vec4s a pool row
        (heads(3, 3, 16), 40),
        (heads(2, 2, 16), 1000),
    ] {
        let n = heads.qkv_width();
        let kv = Some((heads.q_width(), heads.kv_width()));
        for rows in [1, 7, 33] {
            let x = rand_vec(rows * k, 41, 1.0);
            let w = rand_vec(k * n, 42, 0.3);
            let bias = rand_vec(n, 43, 0.5);
            // a half-float pool with the 7-row steps
            let half = rows == 7;
            let flags = matmul::BIAS;
            for case @ (variant, split) in qkv_cases() {
                let name = format!("{variant} {heads:?} {rows} rows split {split:?} half {half}");
                let pool = Pool::new(heads, 40, rows, half);
                let xb = buffers::upload(ctx, "x", &x);
                let wb = buffers::upload(ctx, "w", &matmul::store_weights(variant, &w, k, n));
                let bb = buffers::upload(ctx, "bias", &bias);
                let out = buffers::storage(ctx, "out", rows * n);
                let io = LinearBuffers {
                    x: &xb,
                    w: &wb,
                    bias: &bb,
                    out: &out,
                };
                let fused = FusionBuffers {
                    kv: Some(pool.bind()),
                    kv_half: half,
                    ..Default::default()
                };
                let fusion = Fusion {
                    kv,
                    ..Default::default()
                };
                run_qkv(case, &io, fused, fusion, (rows, n, k), flags);
                let qkv = pool.read_checked(&out, &name);
                // the tensor-core kernel takes its activations in half precision too
                let tol = if variant == "matmul_coop" { 2e-2 } else { 1e-4 };
                let seen = seen_by(variant, &w);
                let want =
                    reference::matmul::matmul(&x, &seen, Some(&bias), None, rows, n, k, false);
                assert_close(&name, &qkv, &want, tol, tol);
            }
        }
    }
}

/// (query heads, key heads, head size, dimensions rotated, rows, a half-float pool, K):
/// grouped heads, heads of 8 to 128, partial rotations (Phi-4-mini's three quarters,
/// and pairs that end mid-vec4), rows past a matmul tile, a K the tiled matmuls split
/// (the rotation then in matmul_split_sum).
const ROPE_CASES: [(usize, usize, usize, usize, usize, bool, usize); 8] = [
    (4, 2, 16, 16, 1, false, 48),
    (6, 2, 32, 24, 5, true, 48),
    (4, 4, 64, 64, 3, false, 48),
    (2, 2, 8, 8, 2, true, 48),
    (2, 1, 128, 128, 3, false, 48),
    (6, 2, 128, 96, 70, false, 40),
    (2, 2, 16, 16, 7, true, 1000),
    (4, 2, 16, 12, 3, false, 48),
];

/// Rotary heads (the first `rot` dimensions of each rotated) and `t` rows' positions
/// (out of order, one of them past the scaling's original context), with the cos and
/// sin tables on the host and as the kernels read them: llama3's scaling for a whole
/// rotation, longrope's (cos and sin scaled) for a partial one.
struct RopeCase {
    heads: Heads,
    rot: usize,
    cos: Vec<f32>,
    sin: Vec<f32>,
    positions: Vec<u32>,
    device: Vec<f32>,
    table: wgpu::Buffer,
    pb: wgpu::Buffer,
}

impl RopeCase {
    fn new(nh: usize, nkv: usize, (hs, rot): (usize, usize), t: usize) -> RopeCase {
        use wgformer::config::RopeScaling;
        use wgformer::model::rope::{inv_freq, rope_table};
        let ctx = &gpu().ctx;
        let (scaling, scale) = match rot == hs {
            true => (
                RopeScaling::Llama3 {
                    factor: 8.0,
                    low_freq_factor: 1.0,
                    high_freq_factor: 4.0,
                    original_max_position_embeddings: 64,
                },
                1.0,
            ),
            false => (
                RopeScaling::LongRope {
                    short_factor: (0..rot / 2).map(|i| 1.0 + i as f32 / 4.0).collect(),
                    long_factor: (0..rot / 2).map(|i| 2.0 + i as f32).collect(),
                    original_max_position_embeddings: 64,
                    attention_factor: 1.19,
                },
                1.19,
            ),
        };
        let f = inv_freq(rot, 500_000.0, &scaling, 512);
        let (cos, sin) = rope_table(&f, hs / 2, 512, scale);
        let positions: Vec<u32> = (0..t as u32).map(|r| (r * 37 + 5) % 512).collect();
        let device = rotary::device_table(&cos, &sin, hs);
        RopeCase {
            heads: Heads::mha(nh * hs, nh).grouped(nkv),
            rot,
            table: buffers::upload(ctx, "rope", &device),
            pb: buffers::upload(ctx, "positions", bytemuck::cast_slice(&positions)),
            device,
            cos,
            sin,
            positions,
        }
    }

    /// The reference rotation of `x`'s rows (`[t, qkv width]`, Hugging Face's layout).
    fn rotated(&self, x: &[f32]) -> Vec<f32> {
        let h = self.heads;
        let shape = (h.qkv_width(), h.nh + h.nkv, h.hs, self.rot);
        reference::rotary::rotary(x, shape, (&self.cos, &self.sin), &self.positions)
    }

    /// Device rows (heads interleaved) rotated on the host with the epilogue's
    /// operations: each vec4 o of a query or key head becomes o · cos + o.yxwz · sin
    /// from the device table.
    fn rotated_as_the_epilogue(&self, qkv: &[f32]) -> Vec<f32> {
        let (h, hs) = (self.heads, self.heads.hs);
        let mut out = qkv.to_vec();
        for (row, &pos) in out.chunks_mut(h.qkv_width()).zip(&self.positions) {
            let at = pos as usize * 2 * hs;
            for c in (0..(h.nh + h.nkv) * hs).step_by(4) {
                let (cs, sn) = (
                    &self.device[at + c % hs..],
                    &self.device[at + hs + c % hs..],
                );
                let o = [row[c], row[c + 1], row[c + 2], row[c + 3]];
                let swapped = [o[1], o[0], o[3], o[2]];
                for i in 0..4 {
                    row[c + i] = o[i] * cs[i] + swapped[i] * sn[i];
                }
            }
        }
        out
    }
}

/// Qwen3's norm of each query and key head (`head_norm`, recorded after a qkv
/// projection without ROTARY and KV_STORE): in Hugging Face's layout against the
/// reference norm and then rotate_half; the pool holds the normed, rotated keys and the
/// values as they came; without a rotation or a pool, the norm alone. Heads of
/// different scales, so that a norm over the wrong span shows.
#[test]
fn the_head_norm_normalises_rotates_and_stores() {
    use wgformer::kernels::head_norm::{run_head_norm, HeadNormSpan};
    use wgformer::kernels::rotary::{deinterleave_heads, interleave_heads};
    let g = gpu();
    for (nh, nkv, (hs, rot), rows) in [
        (4, 2, (16, 16), 3),
        (2, 1, (128, 128), 5),
        (8, 8, (64, 48), 1),
        (16, 8, (128, 128), 2),
        (2, 1, (256, 256), 3),
    ] {
        let rope = RopeCase::new(nh, nkv, (hs, rot), rows);
        let heads = rope.heads;
        let (n, rotated_heads, q, kv) = (
            heads.qkv_width(),
            nh + nkv,
            heads.q_width(),
            heads.kv_width(),
        );
        let qkv: Vec<f32> = rand_vec(rows * n, 61, 1.0)
            .iter()
            .enumerate()
            .map(|(i, v)| v * (1 + i / hs % 5) as f32)
            .collect();
        let w = rand_vec(2 * hs, 62, 1.0);
        let eps = 1e-6;
        let normed = reference::head_norm::head_norm(&qkv, heads, (&w[..hs], &w[hs..]), eps as f64);
        let dev = interleave_heads(&qkv, n, rotated_heads, (hs, rot));
        let w_dev = interleave_heads(&w, hs, 1, (hs, rot));
        let pool_rows = 16;
        let slots: Vec<u32> = (0..rows as u32).map(|r| (r * 7 + 3) % 16).collect();
        let name = format!("head_norm nh {nh} nkv {nkv} hs {hs} rows {rows}");
        let run = |w_dev: &[f32], span, rope_table: &[f32], slots: &[u32]| {
            let pool = (slots, if slots.is_empty() { 0 } else { pool_rows });
            run_head_norm(
                &g.ctx,
                &g.pipelines,
                &dev,
                w_dev,
                heads,
                (eps, span),
                (&rope.positions, rope_table),
                pool,
            )
            .unwrap()
        };
        // normed and rotated as `want` says, the value heads as they were, the pool
        // holding the row's keys and values
        let check = |run: &wgformer::kernels::head_norm::HeadNormRun, want: &[f32], name: &str| {
            let got = deinterleave_heads(&run.qkv, n, rotated_heads, (hs, rot));
            assert_close(name, &got, &rope.rotated(want), 1e-5, 1e-5);
            assert_eq!(
                &got[q + kv..n],
                &qkv[q + kv..n],
                "{name}: a value head changed"
            );
            for (r, &s) in slots.iter().enumerate() {
                let (s, row) = (s as usize, &run.qkv[r * n..(r + 1) * n]);
                assert_eq!(&run.k_pool[s * kv..(s + 1) * kv], &row[q..q + kv], "{name}");
                assert_eq!(&run.v_pool[s * kv..(s + 1) * kv], &row[q + kv..n], "{name}");
            }
        };
        check(
            &run(&w_dev, HeadNormSpan::Head, &rope.device, &slots),
            &normed,
            &name,
        );
        let alone = run(&w_dev, HeadNormSpan::Head, &[], &[]);
        let got = deinterleave_heads(&alone.qkv, n, rotated_heads, (hs, rot));
        assert_close(
            &format!("{name}, the norm alone"),
            &got,
            &normed,
            1e-5,
            1e-5,
        );
        // OLMo 2's: one norm over all the query heads and one over all the key heads,
        // a weight a channel (laid out as the heads are), rotated and stored as above
        let w = rand_vec(q + kv, 63, 1.0);
        let normed =
            reference::head_norm::head_norm_whole(&qkv, heads, (&w[..q], &w[q..]), eps as f64);
        let w_dev = interleave_heads(&w, q + kv, rotated_heads, (hs, rot));
        let whole = run(&w_dev, HeadNormSpan::Whole, &rope.device, &slots);
        check(&whole, &normed, &format!("{name}, whole"));
        // (the per-head norm differs: the spans matter)
        let per_head =
            reference::head_norm::head_norm(&qkv, heads, (&w[..hs], &w[hs..2 * hs]), 1e-6);
        assert!(per_head
            .iter()
            .zip(&normed)
            .any(|(a, b)| (a - b).abs() > 1e-2));
    }
}

/// Every kernel that computes a qkv projection rotates its query and key heads in its
/// epilogue (flag `ROTARY`, prelude `epilogue`; each head's halves interleaved on the
/// device, `kernels::rotary`), so no step of the rotary families has a rotary dispatch:
/// bit for bit the unrotated product rotated on the host with the epilogue's
/// operations, the pool holding the rotated keys, and in Hugging Face's layout against
/// the reference (rotate_half), with and without a bias (added before the rotation).
#[test]
fn every_qkv_kernel_rotates_queries_and_keys_in_its_epilogue() {
    use wgformer::kernels::rotary::{deinterleave_heads, interleave_heads};
    let ctx = &gpu().ctx;
    for (nh, nkv, hs, rot, rows, half, k) in ROPE_CASES {
        let rope = RopeCase::new(nh, nkv, (hs, rot), rows);
        let heads = rope.heads;
        let (n, rotated) = (heads.qkv_width(), nh + nkv);
        let x = rand_vec(rows * k, 51, 1.0);
        let w = rand_vec(k * n, 53, 0.3);
        let bias = rand_vec(n, 54, 0.5);
        // the weights as the model uploads them
        let w_dev = interleave_heads(&w, n, rotated, (hs, rot));
        let bias_dev = interleave_heads(&bias, n, rotated, (hs, rot));
        let bias_flag = if rows % 2 == 1 { matmul::BIAS } else { 0 };
        let flags = bias_flag;
        let kv = Some((heads.q_width(), heads.kv_width()));
        for case @ (variant, split) in qkv_cases() {
            let name = format!(
                "{variant} split {split:?} {heads:?} {rows} rows k {k} flags {flags} half {half}"
            );
            let xb = buffers::upload(ctx, "x", &x);
            let wb = buffers::upload(ctx, "w", &matmul::store_weights(variant, &w_dev, k, n));
            let bb = buffers::upload(ctx, "bias", &bias_dev);
            let outs = [0, 1].map(|_| buffers::storage(ctx, "qkv", rows * n));
            let io = |out| LinearBuffers {
                x: &xb,
                w: &wb,
                bias: &bb,
                out,
            };
            // (97 pool rows: distinct slots for up to 97 rows)
            let pool = Pool::new(heads, 97, rows, half);
            let fused = FusionBuffers {
                kv: Some(pool.bind()),
                kv_half: half,
                positions: Some(&rope.pb),
                rope: Some(&rope.table),
                ..Default::default()
            };
            let fusion = Fusion {
                kv,
                rope: Some(matvec::Rope::of(heads)),
                ..Default::default()
            };
            run_qkv(case, &io(&outs[0]), fused, fusion, (rows, n, k), flags);
            let plain = FusionBuffers::default();
            run_qkv(
                case,
                &io(&outs[1]),
                plain,
                Fusion::default(),
                (rows, n, k),
                bias_flag,
            );
            let got = pool.read_checked(&outs[0], &name);
            let unrotated = buffers::read_floats(ctx, &outs[1], 0, rows * n).unwrap();
            let want = rope.rotated_as_the_epilogue(&unrotated);
            assert!(
                got == want,
                "{name}: not the epilogue's rotation of the product"
            );
            let tol = if variant == "matmul_coop" { 2e-2 } else { 1e-4 };
            let b = (bias_flag != 0).then_some(&bias[..]);
            let seen = seen_by(variant, &w);
            let product = reference::matmul::matmul(&x, &seen, b, None, rows, n, k, false);
            let got = deinterleave_heads(&got, n, rotated, (hs, rot));
            assert_close(&name, &got, &rope.rotated(&product), tol, tol);
        }
    }
}

/// The norms a fused kernel is tested with: LayerNorm with and without bias, RMSNorm.
const NORMS: [Norm; 3] = [
    Norm {
        rms: false,
        bias: true,
        eps: 1e-5,
    },
    Norm {
        rms: false,
        bias: false,
        eps: 1e-5,
    },
    Norm {
        rms: true,
        bias: false,
        eps: 1e-6,
    },
];

/// A norm folded into a projection, from `seed`: `rows` rows of a residual stream of `k`
/// with a mean far from 0 (the LayerNorm's first pass matters), the norm's weight
/// (around 1) and bias, the projection's `[k, n]` weights and bias.
struct NormCase {
    x: Vec<f32>,
    gw: Vec<f32>,
    gb: Vec<f32>,
    w: Vec<f32>,
    bias: Vec<f32>,
}

impl NormCase {
    fn new(rows: usize, n: usize, k: usize, seed: u64) -> Self {
        NormCase {
            x: rand_vec(rows * k, seed, 2.0)
                .iter()
                .map(|v| v + 3.0)
                .collect(),
            gw: rand_vec(k, seed + 1, 0.3).iter().map(|v| v + 1.0).collect(),
            gb: rand_vec(k, seed + 2, 0.5),
            w: rand_vec(k * n, seed + 3, 0.5),
            bias: rand_vec(n, seed + 4, 0.5),
        }
    }
}

/// Rows `x` of `k` through `norm` (weight `gw`, bias `gb` where it has one), on the CPU.
fn normed_rows(x: &[f32], norm: Norm, gw: &[f32], gb: &[f32], k: usize) -> Vec<f32> {
    if norm.rms {
        reference::layer_norm::rms_norm(x, gw, k, norm.eps as f64)
    } else {
        reference::layer_norm::layer_norm(x, gw, norm.bias.then_some(gb), k)
    }
}

#[test]
fn the_norm_prologue_equals_the_norm_then_the_product() {
    let g = gpu();
    let (ctx, pl) = (&g.ctx, &*g.pipelines);
    let fusing = split_k_variants();
    for (n, k) in [(64, 48), (72, 1024), (768, 192)] {
        for rows in [1, 3] {
            let NormCase { x, gw, gb, w, bias } = NormCase::new(rows, n, k, 45);
            for norm in NORMS {
                let normed = normed_rows(&x, norm, &gw, &gb, k);
                for &variant in &fusing {
                    let name = format!("{variant} {norm:?} {rows}x{n}x{k}");
                    let xb = buffers::upload(ctx, "x", &x);
                    let gb_ = buffers::upload(ctx, "norm w", &gw);
                    let bb_ = buffers::upload(ctx, "norm b", &gb);
                    let wb = buffers::upload(ctx, "w", &matmul::store_weights(variant, &w, k, n));
                    let biasb = buffers::upload(ctx, "bias", &bias);
                    let ln = buffers::storage(ctx, "ln", rows * k);
                    let fused_out = buffers::storage(ctx, "fused", rows * n);
                    let plain_out = buffers::storage(ctx, "plain", rows * n);
                    let fused_op = matvec::matvec_fused_op(
                        ctx,
                        pl,
                        variant,
                        &LinearBuffers {
                            x: &xb,
                            w: &wb,
                            bias: &biasb,
                            out: &fused_out,
                        },
                        FusionBuffers {
                            norm: Some((&gb_, &bb_)),
                            ..Default::default()
                        },
                    );
                    let plain_op = matvec::matvec_variant_op(
                        ctx,
                        pl,
                        variant,
                        &LinearBuffers {
                            x: &ln,
                            w: &wb,
                            bias: &biasb,
                            out: &plain_out,
                        },
                    );
                    let ln_op = layer_norm::layer_norm_op(
                        ctx,
                        pl,
                        "layer_norm_workgroup",
                        &xb,
                        &gb_,
                        &bb_,
                        &ln,
                    );
                    let flags = matmul::BIAS | matmul::GELU;
                    let fusion = Fusion {
                        norm: Some(norm),
                        ..Default::default()
                    };
                    submit_pass(ctx, "norm fusion", |pass| {
                        matvec::encode_matvec_fused(pass, &fused_op, rows, n, k, flags, fusion);
                        layer_norm::encode_layer_norm(pass, &ln_op, rows, k, norm);
                        matvec::encode_matvec(pass, &plain_op, rows, n, k, flags);
                    })
                    .unwrap();
                    let got = buffers::read_floats(ctx, &fused_out, 0, rows * n).unwrap();
                    let plain = buffers::read_floats(ctx, &plain_out, 0, rows * n).unwrap();
                    let want = reference::matmul::matmul(
                        &normed,
                        &seen_by(variant, &w),
                        Some(&bias),
                        None,
                        rows,
                        n,
                        k,
                        true,
                    );
                    assert_close(&name, &got, &want, 1e-4, 1e-4);
                    // the same statistics as the norm kernel's, so the same numbers as
                    // the two dispatches (to the compiler's rounding)
                    assert_close(&format!("{name} against unfused"), &got, &plain, 1e-6, 1e-6);
                }
            }
        }
    }
}

/// The tile matmul variants compiled here (f32 and half-float weights), which fold the
/// op before their product into their staging of `a`.
fn staging_variants() -> Vec<&'static str> {
    let pl = &gpu().pipelines;
    let fusing: Vec<_> = [pl.variants("matmul"), pl.variants("matmul_f16")]
        .concat()
        .into_iter()
        .filter(|v| matmul::fuses_staging(v))
        .collect();
    assert!(
        fusing.len() >= 2,
        "the tile kernels, f32 and f16: {fusing:?}"
    );
    fusing
}

/// The tile matmuls (the hardware kernels' prefill chunks and forwards) fold the norm
/// before a projection (staging (x - s) · g, summing each row's statistics as they
/// stage it, normalising by linearity; prelude norm_fold): against the norm then the product
/// (CPU reference), LayerNorm with and without bias and RMSNorm, rows and K off the
/// tile, a dimension far out, K split or whole (bit for bit the same), and a row alone
/// the same bit for bit as in the tile.
#[test]
fn the_tile_matmuls_fold_the_norm_into_their_staging() {
    let (g, fusing) = (gpu(), staging_variants());
    for (m, n, k) in [(1, 64, 48), (70, 192, 100), (40, 72, 1000), (130, 96, 64)] {
        let NormCase {
            mut x,
            gw,
            gb,
            w,
            bias,
        } = NormCase::new(m, n, k, 51);
        if m == 70 {
            // a dimension far out (GPT-2's residual stream has a few): the variance is
            // taken in one pass about each row's first value
            for row in x.chunks_mut(k) {
                row[7] = -250.0;
            }
        }
        let init = rand_vec(m * n, 56, 1.0);
        for norm in NORMS {
            let normed = normed_rows(&x, norm, &gw, &gb, k);
            for &variant in &fusing {
                let name = format!("{variant} {norm:?} {m}x{n}x{k}");
                let seen_a = if variant == "matmul_coop" {
                    let b = norm.bias.then_some(&gb[..]);
                    let eps = norm.eps as f64;
                    reference::layer_norm::folded_rows_f16(&x, &gw, b, k, norm.rms, eps)
                } else {
                    normed.clone()
                };
                let tol = if variant == "matmul_coop" { 2e-3 } else { 1e-4 };
                for (flags, init, gelu) in [
                    (matmul::BIAS | matmul::GELU, None, true),
                    (matmul::BIAS | matmul::ACCUMULATE, Some(&init[..]), false),
                ] {
                    let run = |x: &[f32], init: Option<&[f32]>, split: bool| {
                        matmul::run_matmul_normed(
                            &g.ctx,
                            &g.pipelines,
                            variant,
                            &wgformer::kernels::HostProduct::new(x, &w, n, k).epilogue(
                                Some(&bias),
                                init,
                                flags,
                            ),
                            split,
                            Some((norm, &gw, norm.bias.then_some(&gb[..]))),
                        )
                        .unwrap()
                    };
                    let got = run(&x, init, false);
                    let want = reference::matmul::matmul(
                        &seen_a,
                        &seen_by(variant, &w),
                        Some(&bias),
                        init,
                        m,
                        n,
                        k,
                        gelu,
                    );
                    assert_close(&format!("{name} flags {flags}"), &got, &want, tol, tol);
                    let split = run(&x, init, true);
                    assert!(
                        got == split,
                        "{name} flags {flags}: split K changed a number"
                    );
                    // a row alone: the same numbers as in the tile
                    let r = m / 2;
                    let row_init = init.map(|i| &i[r * n..(r + 1) * n]);
                    let alone = run(&x[r * k..(r + 1) * k], row_init, false);
                    assert!(
                        alone[..] == got[r * n..(r + 1) * n],
                        "{name} flags {flags}: row {r} alone differs from the tile's"
                    );
                }
            }
        }
    }
}

/// The tile matmuls fold SwiGLU into the down projection's staging (flag `GATED`: `a`
/// the gate | up rows, 2 K wide): against silu(gate) · up then the product (CPU
/// reference), rows and K off the tile, K split or whole and a row alone bit for bit.
#[test]
fn the_tile_matmuls_fold_swiglu_into_their_staging() {
    let (g, fusing) = (gpu(), staging_variants());
    let pl = &g.pipelines;
    for (m, n, k) in [(1, 64, 48), (70, 96, 100), (40, 72, 1000)] {
        let gate_up = rand_vec(m * 2 * k, 61, 2.0);
        let w = rand_vec(k * n, 62, 0.5);
        let bias = rand_vec(n, 63, 0.5);
        let init = rand_vec(m * n, 64, 1.0);
        let gated = reference::swiglu::swiglu(&gate_up, k);
        let flags = matmul::BIAS | matmul::ACCUMULATE | matmul::GATED;
        for &variant in &fusing {
            let name = format!("{variant} SwiGLU {m}x{n}x{k}");
            let seen_a = if variant == "matmul_coop" {
                wgformer::gpu::f16::round_to_f16(&gated)
            } else {
                gated.clone()
            };
            let tol = if variant == "matmul_coop" { 2e-3 } else { 1e-4 };
            let run = |x: &[f32], init: &[f32], split: bool| {
                let p = wgformer::kernels::HostProduct::new(x, &w, n, k).epilogue(
                    Some(&bias),
                    Some(init),
                    flags,
                );
                matmul::run_matmul_normed(&g.ctx, pl, variant, &p, split, None).unwrap()
            };
            let got = run(&gate_up, &init, false);
            let want = reference::matmul::matmul(
                &seen_a,
                &seen_by(variant, &w),
                Some(&bias),
                Some(&init),
                m,
                n,
                k,
                false,
            );
            assert_close(&name, &got, &want, tol, tol);
            assert!(
                got == run(&gate_up, &init, true),
                "{name}: split K changed a number"
            );
            let r = m / 2;
            let alone = run(
                &gate_up[r * 2 * k..(r + 1) * 2 * k],
                &init[r * n..(r + 1) * n],
                false,
            );
            assert!(
                alone[..] == got[r * n..(r + 1) * n],
                "{name}: row {r} alone differs from the tile's"
            );
        }
    }
}

/// The hardware LM head's norm prologue: ln_f folded into the product with wte (row
/// groups), against `layer_norm_workgroup` then the same kernel, and the reference;
/// and the same head reading listed rows of x (a prefill step's asked rows, in list
/// order, a row twice), bit for bit the rows it computes in order.
#[test]
fn the_lm_head_folds_the_final_norm() {
    use wgformer::kernels::{matmul_bt, matvec_bt};
    let g = gpu();
    let (ctx, pl) = (&g.ctx, &*g.pipelines);
    for variant in ["matvec_bt_groups", "matvec_bt_f16_groups"] {
        assert!(matvec_bt::fuses_norm(variant));
        // K not a multiple of 8 (a half block of 8 at the end), N not of 32
        for (n, k, rows) in [(300, 64, 1), (75, 36, 3), (1000, 768, 2)] {
            let x: Vec<f32> = rand_vec(rows * k, 61, 2.0)
                .iter()
                .map(|v| v - 1.5)
                .collect();
            let gw: Vec<f32> = rand_vec(k, 62, 0.3).iter().map(|v| v + 1.0).collect();
            let gb = rand_vec(k, 63, 0.5);
            let wte = rand_vec(n * k, 64, 1.0);
            for norm in [Norm::layer(true), Norm::rms(1e-5)] {
                let normed = if norm.rms {
                    reference::layer_norm::rms_norm(&x, &gw, k, norm.eps as f64)
                } else {
                    reference::layer_norm::layer_norm(&x, &gw, Some(&gb), k)
                };
                let name = format!("{variant} {norm:?} {rows}x{n}x{k}");
                let xb = buffers::upload(ctx, "x", &x);
                let gwb = buffers::upload(ctx, "norm w", &gw);
                let gbb = buffers::upload(ctx, "norm b", &gb);
                let wb = buffers::upload(ctx, "wte", &matmul_bt::store_wte(variant, &wte, n, k));
                let ln = buffers::storage(ctx, "ln", rows * k);
                let fused = buffers::storage(ctx, "fused", rows * n);
                let plain = buffers::storage(ctx, "plain", rows * n);
                let io = (&xb, &wb, &fused);
                let norm_b = Some((&gwb, &gbb));
                let fused_op = matvec_bt::matvec_bt_fused_op(ctx, pl, variant, io, norm_b, None);
                let list: Vec<u32> = (0..rows as u32).rev().chain([0]).collect();
                let listed = buffers::storage(ctx, "listed", list.len() * n);
                let bits: Vec<f32> = list.iter().map(|&r| f32::from_bits(r)).collect();
                let list_b = buffers::upload(ctx, "list", &bits);
                let io = (&xb, &wb, &listed);
                let listed_op =
                    matvec_bt::matvec_bt_fused_op(ctx, pl, variant, io, norm_b, Some(&list_b));
                let plain_op = matvec_bt::matvec_bt_op(ctx, pl, variant, &ln, &wb, &plain);
                let ln_op = layer_norm::layer_norm_op(
                    ctx,
                    pl,
                    "layer_norm_workgroup",
                    &xb,
                    &gwb,
                    &gbb,
                    &ln,
                );
                submit_pass(ctx, "lm head norm", |pass| {
                    matvec_bt::encode_matvec_bt_normed(
                        pass,
                        &fused_op,
                        (n, k),
                        (0, rows, 0),
                        Some(norm),
                        false,
                    );
                    let listed_rows = (0, list.len(), 0);
                    let nk = (n, k);
                    let op = &listed_op;
                    matvec_bt::encode_matvec_bt_normed(pass, op, nk, listed_rows, Some(norm), true);
                    layer_norm::encode_layer_norm(pass, &ln_op, rows, k, norm);
                    matvec_bt::encode_matvec_bt(pass, &plain_op, n, k, 0, rows, 0);
                })
                .unwrap();
                let got = buffers::read_floats(ctx, &fused, 0, rows * n).unwrap();
                let two = buffers::read_floats(ctx, &plain, 0, rows * n).unwrap();
                let want =
                    reference::matmul::matmul_bt(&normed, &seen_by(variant, &wte), rows, n, k);
                assert_close(&name, &got, &want, 1e-4, 1e-4);
                assert_close(&format!("{name} against unfused"), &got, &two, 1e-6, 1e-6);
                let by_list = buffers::read_floats(ctx, &listed, 0, list.len() * n).unwrap();
                for (j, &r) in list.iter().enumerate() {
                    let (a, b) = (&by_list[j * n..][..n], &got[r as usize * n..][..n]);
                    let same = a.iter().zip(b).all(|(a, b)| a.to_bits() == b.to_bits());
                    assert!(same, "{name}: listed row {j} (row {r})");
                }
            }
        }
    }
}

/// The dispatches of a prefill chunk of 5 tokens (its first token by the device's
/// argmax) and of the decode step after it, on a 3-block model (GPT-2-shaped unless
/// `extra` says otherwise): recorded by the profiler on this thread only, split-K sums
/// aside.
fn step_dispatches(kernels: &str, dtype: &str, extra: serde_json::Value) -> (usize, usize) {
    let g = gpu();
    let mut value = serde_json::json!({
        "vocab_size": 256, "context_size": 32, "n_layer": 3, "n_head": 2, "n_embed": 64,
        "seed": 9, "kernels": kernels, "dtype": dtype,
    });
    for (k, v) in extra.as_object().unwrap() {
        value[k] = v.clone();
    }
    let cfg = wgformer::ModelConfig::from_value(value).unwrap();
    let model = Model::build(cfg, None, g.ctx.clone(), g.pipelines.clone()).unwrap();
    let mut s = model.kv_reserve(8).unwrap().unwrap();
    let argmax = wgformer::model::Readback::Argmax;
    let ids: &[u32] = &[1, 2, 3, 4, 5];
    let (_, prefill) = wgformer::gpu::profile::profile(&g.ctx, || {
        model.prefill_select(&mut [(&mut s, ids, Some(argmax))])
    })
    .unwrap();
    let (_, decode) = wgformer::gpu::profile::profile(&g.ctx, || {
        model.decode_select(&mut [(&mut s, 6)], &[argmax])
    })
    .unwrap();
    // a tile matmul's split-K sum is its own dispatch, not counted here
    let count = |p: &wgformer::gpu::profile::Profile| {
        p.dispatches
            .iter()
            .filter(|d| d.kernel != "matmul_split_sum")
            .count()
    };
    (count(&prefill), count(&decode))
}

fn decode_dispatches(kernels: &str, dtype: &str, extra: serde_json::Value) -> usize {
    step_dispatches(kernels, dtype, extra).1
}

#[test]
fn a_decode_step_takes_the_fused_dispatches() {
    if !wgformer::gpu::profile::available(&gpu().ctx) {
        eprintln!("no timestamps inside passes on this adapter: dispatches not counted");
        return;
    }
    // per block: GPT-2 with the hardware kernels: qkv (ln_1 folded in, keys and values
    // to the pool), attention, output projection (+ residual), up projection (ln_2
    // folded in, GELU), down projection (+ residual) = 5; the software kernels keep
    // the two norms = 7. Around the blocks: embedding, LM head (ln_f folded in with
    // the hardware kernels), argmax.
    // With the residual adds deferred (`decode_blocks` auto, the hardware kernels'
    // default): qkv (the stream made whole, ln_1 folded in), attention with its output
    // projection, the whole MLP = 3, and the stream made whole before the LM head; the
    // first qkv reads the embedding itself (no embedding dispatch).
    let per_linear = serde_json::json!({"decode_blocks": "per_linear"});
    for dtype in ["float32", "float16"] {
        let deferred = decode_dispatches("hardware", dtype, serde_json::json!({}));
        let hw = decode_dispatches("hardware", dtype, per_linear.clone());
        let sw = decode_dispatches("software", dtype, serde_json::json!({}));
        assert_eq!(deferred, 3 * 3 + 3, "GPT-2 {dtype}, deferred blocks");
        assert_eq!(hw, 3 * 5 + 3, "GPT-2 {dtype}, hardware kernels");
        assert_eq!(sw, 3 * 7 + 4, "GPT-2 {dtype}, software kernels");
    }
    // a Llama block: qkv (RMSNorm folded in, the queries and keys rotated, the keys
    // and values to the pool), attention, output projection, gate | up (RMSNorm folded
    // in), SwiGLU, down = 6 with the hardware kernels (deferred: qkv, attention with
    // its projection, MLP = 3); the software ones keep the two norms = 8 (every
    // class rotates in the qkv projection's epilogue)
    let llama =
        serde_json::json!({"architecture": "llama", "n_kv_head": 1, "intermediate_size": 128});
    let mut llama_per_linear = llama.clone();
    llama_per_linear["decode_blocks"] = "per_linear".into();
    assert_eq!(
        decode_dispatches("hardware", "float32", llama.clone()),
        3 * 3 + 3
    );
    assert_eq!(
        decode_dispatches("hardware", "float32", llama_per_linear),
        3 * 6 + 3
    );
    assert_eq!(
        decode_dispatches("software", "float32", llama.clone()),
        3 * 8 + 4
    );
    // a Qwen3 block adds its head norm after the qkv projection (which then neither
    // rotates nor stores): 4 a deferred block, 9 with the software kernels
    let mut qwen3 = llama.clone();
    qwen3["architecture"] = "qwen3".into();
    assert_eq!(
        decode_dispatches("hardware", "float32", qwen3.clone()),
        3 * 4 + 3
    );
    assert_eq!(decode_dispatches("software", "float32", qwen3), 3 * 9 + 4);
    // a Mixtral block (the MoE families take no deferred blocks): qkv (RMSNorm folded
    // in, rotated, to the pool), attention, output projection, then the experts: the
    // gate, routing, gate | up over the routed rows, SwiGLU, down, the weighted
    // combine. The hardware kernels' gate is one dispatch (`moe_norm_gate`: ln_2, the
    // router and the top-k) = 9; the software kernels dispatch ln_1, ln_2, the router's
    // matmul and `moe_gate` = 12. A step of at most 4 tokens (a decode step here) gates
    // in the experts' gate | up projection: one fewer (8 / 11). A Qwen2-MoE block adds
    // its shared expert: gate | up, SwiGLU, down, and with the software kernels its
    // sigmoid gate's logit (the hardware kernels' gate takes it) = 3 / 4 more.
    let mixtral = serde_json::json!({
        "architecture": "mixtral", "n_kv_head": 1, "intermediate_size": 64,
        "moe_num_experts": 4, "moe_top_k": 2,
    });
    let mut qwen2_moe = mixtral.clone();
    qwen2_moe["architecture"] = "qwen2_moe".into();
    qwen2_moe["moe_shared_expert_size"] = 32.into();
    for (name, extra, (hw_shared, sw_shared)) in [
        ("Mixtral", mixtral, (0, 0)),
        ("Qwen2-MoE", qwen2_moe, (3, 4)),
    ] {
        let (hw_prefill, hw) = step_dispatches("hardware", "float32", extra.clone());
        let (sw_prefill, sw) = step_dispatches("software", "float32", extra);
        // (decode, prefill) in each class; a prefill chunk takes the same blocks, and
        // with the software kernels the last row is gathered before the LM head
        let (hw_blocks, sw_blocks) = (3 * (9 + hw_shared), 3 * (12 + sw_shared));
        assert_eq!(
            (hw, hw_prefill),
            (hw_blocks - 3 + 3, hw_blocks + 3),
            "{name}, hardware"
        );
        assert_eq!(
            (sw, sw_prefill),
            (sw_blocks - 3 + 4, sw_blocks + 5),
            "{name}, software"
        );
    }
    // a prefill chunk (software kernels: no split sums): a GPT-2 block is ln_1, qkv
    // (keys and values to the pool), attention, output projection, ln_2, up, down = 7;
    // a Llama block adds SwiGLU = 8 (rotated in qkv's epilogue). Around
    // the blocks: embedding, ln_f, the last row gathered, LM head, argmax.
    let gpt2 = step_dispatches("software", "float32", serde_json::json!({})).0;
    assert_eq!(gpt2, 3 * 7 + 5, "GPT-2 prefill");
    // a short prefill chunk with the hardware kernels takes the deferred blocks (3 a
    // block, GPT-2 or Llama; the embedding in the first), then the stream made
    // whole, LM head (ln_f folded in, reading the last row where it lies), argmax
    let hw = step_dispatches("hardware", "float32", serde_json::json!({})).0;
    assert_eq!(hw, 3 * 3 + 3, "GPT-2 prefill, deferred blocks");
    let llama_hw = step_dispatches("hardware", "float32", llama.clone()).0;
    assert_eq!(llama_hw, 3 * 3 + 3, "Llama prefill, deferred blocks");
    let llama_sw = step_dispatches("software", "float32", llama.clone()).0;
    assert_eq!(llama_sw, 3 * 8 + 5, "Llama prefill");
    // the matmul path with the hardware kernels (`per_linear`, or a chunk of more than
    // 64 rows): the tile matmuls fold ln_1 and ln_2 into qkv and up, and a Llama
    // block's SwiGLU into down (5 a block, GPT-2 or Llama), the LM
    // head ln_f and the last row's gather: embedding, the blocks, LM head, argmax
    let mut llama_per_linear = llama;
    llama_per_linear["decode_blocks"] = "per_linear".into();
    for dtype in ["float32", "float16"] {
        let gpt2 = step_dispatches("hardware", dtype, per_linear.clone()).0;
        assert_eq!(gpt2, 3 * 5 + 3, "GPT-2 {dtype} prefill, hardware matmuls");
        let llama = step_dispatches("hardware", dtype, llama_per_linear.clone()).0;
        assert_eq!(llama, 3 * 5 + 3, "Llama {dtype} prefill, hardware matmuls");
    }
    // `matmul_fusion` separate: the two norms and SwiGLU dispatched again on the matmul
    // path (7 a GPT-2 block, 8 a Llama one), ln_f still in the LM head
    let mut separate = per_linear;
    separate["matmul_fusion"] = "separate".into();
    let mut llama_separate = llama_per_linear;
    llama_separate["matmul_fusion"] = "separate".into();
    let gpt2 = step_dispatches("hardware", "float32", separate).0;
    assert_eq!(gpt2, 3 * 7 + 3, "GPT-2 prefill, matmul_fusion separate");
    let llama = step_dispatches("hardware", "float32", llama_separate).0;
    assert_eq!(llama, 3 * 8 + 3, "Llama prefill, matmul_fusion separate");
}

/// The deferred blocks' first projection reads the embedding itself
/// (`matvec_embed_staged`, prelude `residual_embed`) where wte is one binding: no
/// embedding dispatch, and the same numbers, bit for bit, as the embedding dispatched
/// (forced here by a binding cap that cuts wte into chunks), for a prefill chunk and
/// decode steps; GPT-2 (learned positions) and Llama (none), f32 and f16 weights.
#[test]
fn the_first_projection_reads_the_embedding_itself() {
    let capped = common::new_gpu(Some(16384));
    for arch in ["gpt2", "llama"] {
        for dtype in ["float32", "float16"] {
            let logits = |g: &common::Gpu, folds: bool| {
                let cfg = wgformer::ModelConfig::from_value(serde_json::json!({
                    "architecture": arch, "vocab_size": 600, "context_size": 32, "n_layer": 2,
                    "n_head": 2, "n_embed": 32, "intermediate_size": 64, "seed": 21,
                    "kernels": "hardware", "dtype": dtype,
                }))
                .unwrap();
                let model = Model::build(cfg, None, g.ctx.clone(), g.pipelines.clone()).unwrap();
                let partials = model.ops.partials.as_ref().expect("deferred blocks");
                assert_eq!(partials.embeds, folds, "{arch} {dtype}");
                assert_eq!(model.weights.wte.chunks.len() == 1, folds);
                let mut kv = model.kv_reserve(16).unwrap().unwrap();
                let mut out = model.extend(&mut kv, &[5, 599, 17, 300, 2]).unwrap();
                for id in [42, 598, 0] {
                    out.extend(model.extend(&mut kv, &[id]).unwrap());
                }
                out
            };
            let (folded, dispatched) = (logits(gpu(), true), logits(&capped, false));
            assert_eq!(folded.len(), dispatched.len());
            let differ = folded
                .iter()
                .zip(&dispatched)
                .filter(|(a, b)| a.to_bits() != b.to_bits())
                .count();
            assert_eq!(differ, 0, "{arch} {dtype}: {differ} logits differ");
        }
    }
}

/// A decode step's draw on the device (`Readback::Sample`) is the host sampler's draw
/// from that step's logits, row by row in a batch, with both kernel classes (the model
/// serves the device's draw with the hardware ones).
#[test]
fn a_decode_step_draws_on_the_device_as_the_host_samples() {
    use wgformer::model::sampling::{Sampler, SamplingParams};
    use wgformer::model::{NextToken, Readback};
    // both classes; and a 16 KiB binding cap, which cuts wte and the logits into 3
    // chunks the kernel reads a row across
    let capped = common::new_gpu(Some(16384));
    for (kernels, g, width) in [
        ("software", gpu(), 64),
        ("hardware", gpu(), 64),
        ("hardware", &capped, 32),
    ] {
        let cfg = wgformer::ModelConfig::from_value(serde_json::json!({
            "vocab_size": 300, "context_size": 32, "n_layer": 2, "n_head": 2, "n_embed": width,
            "seed": 13, "kernels": kernels,
        }))
        .unwrap();
        let model = Model::build(cfg, None, g.ctx.clone(), g.pipelines.clone()).unwrap();
        assert_eq!(model.sample_on_device, kernels == "hardware");
        let chunks = model.weights.lm_head().chunks.len();
        assert_eq!(chunks > 1, width == 32, "{chunks} chunks");
        let samplers: Vec<Sampler> = (0..4)
            .map(|i| {
                Sampler::new(SamplingParams {
                    temperature: [1.0, 0.7, 1.3, 0.9][i],
                    top_k: [0, 10, 0, 40][i],
                    top_p: [1.0, 1.0, 0.8, 0.9][i],
                    seed: 77 + i as u64,
                    ..Default::default()
                })
            })
            .collect();
        // the same four generations twice: one reads its logits, one its draws
        let mut host: Vec<_> = (0..4)
            .map(|_| model.kv_reserve(16).unwrap().unwrap())
            .collect();
        let mut dev: Vec<_> = (0..4)
            .map(|_| model.kv_reserve(16).unwrap().unwrap())
            .collect();
        for (i, (h, d)) in host.iter_mut().zip(dev.iter_mut()).enumerate() {
            let ids: Vec<u32> = (0..3 + i as u32).map(|j| (j * 41 + 5) % 300).collect();
            model.extend(h, &ids).unwrap();
            model.extend(d, &ids).unwrap();
        }
        let mut next = vec![7u32; 4];
        for step in 0..6u64 {
            let mut rows: Vec<_> = host
                .iter_mut()
                .zip(&next)
                .map(|(kv, &id)| (kv, id))
                .collect();
            let logits = model
                .decode_select(&mut rows, &[Readback::Logits; 4])
                .unwrap();
            let want: Vec<u32> = logits
                .iter()
                .zip(&samplers)
                .map(|(n, s)| match n {
                    NextToken::Logits(l) => s.sample(l, step),
                    other => panic!("logits asked, got {other:?}"),
                })
                .collect();
            let asks: Vec<Readback> = samplers
                .iter()
                .map(|s| Readback::Sample(s.draw(step).into()))
                .collect();
            let mut rows: Vec<_> = dev
                .iter_mut()
                .zip(&next)
                .map(|(kv, &id)| (kv, id))
                .collect();
            let got: Vec<u32> = model
                .decode_select(&mut rows, &asks)
                .unwrap()
                .into_iter()
                .map(|n| match n {
                    NextToken::Sampled(id) => id,
                    other => panic!("a draw asked, got {other:?}"),
                })
                .collect();
            assert_eq!(got, want, "{kernels} {chunks} chunks, step {step}");
            next = got;
        }
    }
}

/// Logits of a prefill of 6 then 8 decode steps of a seeded 3-block model of
/// `family` with the hardware kernels and `decode_blocks`, weights `dtype`, cache `kv`.
fn hardware_steps(family: &str, dtype: &str, kv: &str, blocks: &str) -> Vec<Vec<f32>> {
    let g = gpu();
    let cfg = wgformer::ModelConfig::from_value(serde_json::json!({
        "vocab_size": 300, "context_size": 64, "n_layer": 3, "n_head": 4, "n_embed": 64,
        "seed": 5, "kernels": "hardware", "architecture": family, "dtype": dtype,
        "n_kv_head": if family == "gpt2" { 4 } else { 2 },
        "kv_cache_dtype": kv, "decode_blocks": blocks,
        // Mistral: a window shorter than the 14 positions
        "sliding_window": if family == "mistral" { Some(5) } else { None },
    }))
    .unwrap();
    let model = Model::build(cfg, None, g.ctx.clone(), g.pipelines.clone()).unwrap();
    assert_eq!(model.ops.partials.is_some(), blocks == "auto");
    let all: Vec<u32> = (0..14).map(|i| (i * 37 + 11) % 300).collect();
    let mut s = model.kv_reserve(32).unwrap().unwrap();
    let mut out = vec![model.extend(&mut s, &all[..6]).unwrap()];
    for &id in &all[6..] {
        out.push(model.extend(&mut s, &[id]).unwrap());
    }
    out
}

#[test]
fn deferred_decode_blocks_equal_one_dispatch_per_linear() {
    // The decode blocks with their residual adds deferred as partial rows (decode steps
    // and a short prefill chunk) give the logits of one dispatch per linear (the
    // prefill: the matmul) within f32 rounding (the sums are grouped differently, so
    // not bit for bit), for GPT-2 (LayerNorm, biases, GELU) and Llama
    // (RMSNorm, rotary, grouped-query attention, SwiGLU), f32 and half-float weights and
    // caches, over 8 steps: the stream carried from block to block (x, x2, the partial
    // rows) is the stream.
    for family in ["gpt2", "llama"] {
        for (dtype, kv) in [
            ("float32", "float32"),
            ("float16", "float16"),
            ("float32", "float16"),
        ] {
            let deferred = hardware_steps(family, dtype, kv, "auto");
            let per_linear = hardware_steps(family, dtype, kv, "per_linear");
            let name = format!("{family} {dtype} weights, {kv} cache");
            // the prefill of 6 rows takes them too
            for (i, (a, b)) in deferred.iter().zip(&per_linear).enumerate() {
                assert_close(&format!("{name} step {i}"), a, b, 1e-4, 1e-4);
                assert!(
                    a != b,
                    "{name} step {i}: the deferred blocks gave the per-linear logits bit for bit"
                );
            }
        }
    }
    // Qwen2 (biases on q, k, v only: the deferred bias off, the qkv bias on) and Mistral
    // (a sliding window in attention_proj's walk)
    for family in ["qwen2", "mistral"] {
        let deferred = hardware_steps(family, "float32", "float32", "auto");
        let per_linear = hardware_steps(family, "float32", "float32", "per_linear");
        for (i, (a, b)) in deferred.iter().zip(&per_linear).enumerate() {
            assert_close(&format!("{family} step {i}"), a, b, 1e-4, 1e-4);
        }
    }
}

/// `matmul_fusion` separate (the norms and SwiGLU dispatched) gives the logits of the
/// norms and SwiGLU folded into the tile matmuls' staging (`auto`), within f32
/// rounding: a prompt of 70 rows (the matmul path), then two decode steps reading the
/// keys and values it stored; GPT-2 and Llama, f32 and half-float weights.
#[test]
fn matmul_fusion_separate_gives_the_folded_logits() {
    let g = gpu();
    let run = |family: &str, dtype: &str, fusion: &str| -> (Model, Vec<Vec<f32>>) {
        let cfg = wgformer::ModelConfig::from_value(serde_json::json!({
            "vocab_size": 300, "context_size": 96, "n_layer": 2, "n_head": 4, "n_embed": 64,
            "seed": 8, "kernels": "hardware", "architecture": family, "dtype": dtype,
            "intermediate_size": if family == "llama" { Some(160) } else { None },
            "matmul_fusion": fusion,
        }))
        .unwrap();
        let model = Model::build(cfg, None, g.ctx.clone(), g.pipelines.clone()).unwrap();
        let ids: Vec<u32> = (0..72).map(|i| (i * 53 + 7) % 300).collect();
        let mut s = model.kv_reserve(80).unwrap().unwrap();
        let mut out = vec![model.extend(&mut s, &ids[..70]).unwrap()];
        for &id in &ids[70..] {
            out.push(model.extend(&mut s, &[id]).unwrap());
        }
        (model, out)
    };
    for family in ["gpt2", "llama"] {
        for dtype in ["float32", "float16"] {
            let (folded, auto) = run(family, dtype, "auto");
            let (plain, separate) = run(family, dtype, "separate");
            let staged = |m: &Model| m.ops.blocks.iter().all(|b| b.c_attn.staged.is_some());
            assert!(staged(&folded) && !staged(&plain), "{family} {dtype}");
            for (i, (a, b)) in auto.iter().zip(&separate).enumerate() {
                assert_close(&format!("{family} {dtype} step {i}"), a, b, 1e-4, 1e-4);
            }
        }
    }
}

/// A seeded 3-block model of `family` with the hardware kernels (deferred blocks).
fn mixing_model(family: &str, kv: &str) -> Model {
    let g = gpu();
    let cfg = wgformer::ModelConfig::from_value(serde_json::json!({
        "vocab_size": 300, "context_size": 128, "n_layer": 3, "n_head": 4, "n_embed": 64,
        "seed": 21, "kernels": "hardware", "architecture": family,
        "n_kv_head": if family == "gpt2" { 4 } else { 2 }, "kv_cache_dtype": kv,
    }))
    .unwrap();
    Model::build(cfg, None, g.ctx.clone(), g.pipelines.clone()).unwrap()
}

fn logits(n: wgformer::model::NextToken) -> Vec<f32> {
    match n {
        wgformer::model::NextToken::Logits(l) => l,
        other => panic!("logits asked, got {other:?}"),
    }
}

#[test]
fn a_mixed_step_gives_each_row_the_logits_of_its_steps_alone() {
    // Decode rows and prompt chunks in one traversal (`mixed_select`: the deferred
    // blocks, the decode step's LM head over the gathered rows): each generation's
    // logits, step by step, are bit for bit those of the same generation run alone (a
    // prefill step, then decode steps), whatever shares its steps: two prompts
    // prefilled together, a third prompt in two chunks riding on the others' decode
    // steps, a decode step of all three, a prompt of 64 tokens whole beside the three
    // (67 rows), a mixed step of decode rows only.
    use wgformer::model::Readback::Logits;
    let (pa, pb, pc): (&[u32], &[u32], &[u32]) = (
        &[5, 17, 230, 4, 99],
        &[8, 8, 141],
        &[1, 2, 3, 250, 77, 6, 40],
    );
    let pd: Vec<u32> = (0..64).map(|i| (i * 53 + 7) % 300).collect();
    let (da, db, dc) = ([11u32, 12, 13, 14, 15], [21u32, 22, 23, 24], [31u32, 32]);
    for (family, kv) in [("gpt2", "float32"), ("llama", "float16")] {
        let model = mixing_model(family, kv);
        // a short prompt's 64 rows beside a decode batch of 16 (the model's max_batch)
        let rows = MixedRows {
            prompt: 64,
            total: 64 + 16,
        };
        assert_eq!(model.mixed_rows(), Some(rows));
        // alone: the prompt's logits, then each decode token's
        let alone = |prompt: &[u32], decode: &[u32]| {
            let mut s = model
                .kv_reserve(prompt.len() + decode.len())
                .unwrap()
                .unwrap();
            let mut out = vec![model.extend(&mut s, prompt).unwrap()];
            out.extend(
                decode
                    .iter()
                    .map(|&id| model.extend(&mut s, &[id]).unwrap()),
            );
            out
        };
        let want = [
            alone(pa, &da),
            alone(pb, &db),
            alone(pc, &dc),
            alone(&pd, &[]),
        ];
        let [mut a, mut b, mut c] = [0; 3].map(|_| model.kv_reserve(16).unwrap().unwrap());
        let mut d = model.kv_reserve(64).unwrap().unwrap();
        let mut got: [Vec<Vec<f32>>; 4] = Default::default();
        // a and b prefilled together
        let first = model
            .prefill_many(&mut [(&mut a, pa, true), (&mut b, pb, true)])
            .unwrap();
        for (g, l) in got.iter_mut().zip(first) {
            g.push(l.unwrap());
        }
        // their first decode rows with c's first chunk, their second with its rest
        for (i, chunk, asks) in [(0, &pc[..4], None), (1, &pc[4..], Some(Logits))] {
            let (rows, parts) = model
                .mixed_select(
                    &mut [(&mut a, da[i]), (&mut b, db[i])],
                    &[Logits, Logits],
                    &mut [(&mut c, chunk, asks)],
                )
                .unwrap();
            for (g, r) in got.iter_mut().zip(rows) {
                g.push(logits(r));
            }
            assert_eq!(parts.len(), 1);
            if let Some(r) = parts.into_iter().next().unwrap() {
                got[2].push(logits(r));
            }
        }
        // all three in a decode step
        let rows = model
            .decode(&mut [(&mut a, da[2]), (&mut b, db[2]), (&mut c, dc[0])])
            .unwrap();
        for (g, l) in got.iter_mut().zip(rows) {
            g.push(l);
        }
        // d's whole prompt beside the three decode rows
        let (rows, parts) = model
            .mixed_select(
                &mut [(&mut a, da[3]), (&mut b, db[3]), (&mut c, dc[1])],
                &[Logits, Logits, Logits],
                &mut [(&mut d, &pd, Some(Logits))],
            )
            .unwrap();
        for (g, r) in got.iter_mut().zip(rows) {
            g.push(logits(r));
        }
        got[3].push(logits(parts.into_iter().next().unwrap().unwrap()));
        // a mixed step of one decode row
        let (rows, parts) = model
            .mixed_select(&mut [(&mut a, da[4])], &[Logits], &mut [])
            .unwrap();
        assert!(parts.is_empty());
        got[0].push(logits(rows.into_iter().next().unwrap()));
        for (i, (g, w)) in got.iter().zip(&want).enumerate() {
            assert_eq!(g.len(), w.len(), "{family}: generation {i}'s steps");
            for (step, (g, w)) in g.iter().zip(w).enumerate() {
                assert!(
                    g == w,
                    "{family}: generation {i}, step {step}: mixed and alone differ"
                );
            }
        }
    }
}

#[test]
fn a_mixed_step_refuses_what_it_cannot_take() {
    use wgformer::model::Readback::Logits;
    let model = mixing_model("gpt2", "float32");
    let mut a = model.kv_reserve(80).unwrap().unwrap();
    let mut b = model.kv_reserve(80).unwrap().unwrap();
    model.prefill(&mut a, &[1, 2], false).unwrap();
    let long: Vec<u32> = vec![7; 65];
    let err = |r: wgformer::Result<_>| match r {
        Err(e) => e.to_string(),
        Ok(_) => panic!("a step it cannot take ran"),
    };
    // 65 prompt rows: more than a short prompt's 64
    let e = err(model.mixed_select(&mut [(&mut a, 3)], &[Logits], &mut [(&mut b, &long, None)]));
    assert!(
        e.contains("at most 64 of them prompt rows; not 66 with 65"),
        "{e}"
    );
    let e = err(model.mixed_select(&mut [(&mut a, 3)], &[], &mut []));
    assert!(e.contains("1 rows but 0 readbacks"), "{e}");
    let e = err(model.mixed_select(&mut [(&mut a, 300)], &[Logits], &mut []));
    assert!(e.contains("outside the model's vocabulary"), "{e}");
    // nothing was stored or advanced: the sequence goes on where it was
    assert_eq!(a.len(), 2);
    assert_eq!(b.len(), 0);
    // the software kernels' steps cannot mix
    let g = gpu();
    let cfg = wgformer::ModelConfig::from_value(serde_json::json!({
        "vocab_size": 300, "context_size": 64, "n_layer": 1, "n_head": 2, "n_embed": 64,
        "kernels": "software",
    }))
    .unwrap();
    let sw = Model::build(cfg, None, g.ctx.clone(), g.pipelines.clone()).unwrap();
    assert_eq!(sw.mixed_rows(), None);
    let mut s = sw.kv_reserve(8).unwrap().unwrap();
    let e = err(sw.mixed_select(&mut [], &[], &mut [(&mut s, &[1, 2], Some(Logits))]));
    assert!(e.contains("cannot mix decode rows with prompts"), "{e}");
}

/// A burst of short prompts (each at most a short chunk, more rows in all: the matmul
/// path) with the hardware kernels: every row attends through its own pages in one
/// dispatch a block, not one a prompt, and each prompt's logits, and those of the
/// decode step after it (over the keys the burst stored), are the prompt's forward's
/// (the same linears; attention rounded apart). The software kernels keep one
/// dispatch a prompt (each prompt's rows as alone, bit for bit).
#[test]
fn a_burst_of_short_prompts_is_attended_in_one_dispatch_a_block() {
    use wgformer::model::{NextToken, Readback};
    let g = gpu();
    let counted = wgformer::gpu::profile::available(&g.ctx);
    for (family, kv, kernels) in [
        ("gpt2", "float32", "hardware"),
        ("llama", "float16", "hardware"),
        ("mistral", "float32", "hardware"),
        ("gpt2", "float32", "software"),
    ] {
        let cfg = wgformer::ModelConfig::from_value(serde_json::json!({
            "vocab_size": 300, "context_size": 128, "n_layer": 3, "n_head": 4, "n_embed": 64,
            "seed": 17, "kernels": kernels, "architecture": family, "kv_cache_dtype": kv,
            "n_kv_head": if family == "gpt2" { 4 } else { 2 },
            "sliding_window": if family == "mistral" { Some(7) } else { None },
        }))
        .unwrap();
        let model = Model::build(cfg, None, g.ctx.clone(), g.pipelines.clone()).unwrap();
        let name = format!("{family} {kernels}, {kv} cache");
        // 3 prompts of 25-33 tokens: 87 rows
        let prompts: Vec<Vec<u32>> = (0..3)
            .map(|p| {
                (0..25 + 4 * p)
                    .map(|i| (i * 41 + 7 * p + 3) % 300)
                    .collect()
            })
            .collect();
        let mut kvs: Vec<_> = (0..3)
            .map(|_| model.kv_reserve(64).unwrap().unwrap())
            .collect();
        let mut parts: Vec<_> = kvs
            .iter_mut()
            .zip(&prompts)
            .map(|(kv, p)| (kv, p.as_slice(), Some(Readback::Logits)))
            .collect();
        let (got, profile) =
            wgformer::gpu::profile::profile(&g.ctx, || model.prefill_select(&mut parts)).unwrap();
        drop(parts);
        if counted {
            let attention = profile
                .dispatches
                .iter()
                .filter(|d| d.kernel.starts_with("attention"))
                .count();
            let want = if kernels == "hardware" { 3 } else { 3 * 3 };
            assert_eq!(attention, want, "{name}: attention dispatches");
        }
        let next: Vec<u32> = (0..3).map(|p| (p * 53 + 1) as u32).collect();
        let mut batch: Vec<_> = kvs
            .iter_mut()
            .zip(&next)
            .map(|(kv, &id)| (kv, id))
            .collect();
        let decoded = model
            .decode_select(&mut batch, &[Readback::Logits; 3])
            .unwrap();
        for (p, prompt) in prompts.iter().enumerate() {
            let v = 300;
            let mut longer = prompt.clone();
            longer.push(next[p]);
            let full = model.forward_logits(&longer).unwrap();
            let n = prompt.len();
            let Some(NextToken::Logits(first)) = &got[p] else {
                panic!("{name}: prompt {p} asked for its logits, got {:?}", got[p]);
            };
            let at = |i: usize| &full[i * v..(i + 1) * v];
            assert_close(&format!("{name} prompt {p}"), first, at(n - 1), 1e-4, 1e-4);
            let NextToken::Logits(step) = &decoded[p] else {
                panic!("{name}: logits asked");
            };
            assert_close(&format!("{name} prompt {p}, next"), step, at(n), 1e-4, 1e-4);
        }
    }
}
