//! The hardware decode block in three dispatches (`kernels::partials`): the residual
//! stream with deferred partial rows made whole, the staged qkv projection, the MLP in
//! one dispatch and attention with its output projection, each against the CPU
//! reference (f32 and half-float weights).

use crate::common::{assert_close, gpu, rand_vec};
use wgformer::config::Heads;
use wgformer::kernels::attention::HostAttention;
use wgformer::kernels::layer_norm::Norm;
use wgformer::kernels::partials::{self, HostMlp, HostResidual, MlpAct, MlpShape};
use wgformer::kernels::{matvec, seen_by, HostProduct};
use wgformer::reference;

/// `rows` rows of a stream of `c` with `p` partial rows each and (with `bias`) a
/// deferred bias: (x, parts, bias).
fn stream(rows: usize, c: usize, p: usize, seed: u64) -> (Vec<f32>, Vec<f32>, Vec<f32>) {
    (
        rand_vec(rows * c, seed, 1.0),
        rand_vec(rows * p * c, seed + 1, 0.5),
        rand_vec(c, seed + 2, 0.3),
    )
}

/// The norm of `x [., c]` as the reference computes it.
fn normed(norm: Norm, x: &[f32], w: &[f32], b: &[f32], c: usize) -> Vec<f32> {
    if norm.rms {
        reference::layer_norm::rms_norm(x, w, c, norm.eps as f64)
    } else {
        reference::layer_norm::layer_norm(x, w, norm.bias.then_some(b), c)
    }
}

#[test]
fn residual_sum_adds_the_bias_and_partial_rows() {
    let g = gpu();
    for (rows, c, p, bias) in [(3, 64, 5, true), (2, 32, 0, true), (1, 96, 3, false)] {
        let (x, parts, b) = stream(rows, c, p, 11);
        let r = HostResidual {
            x: &x,
            parts: &parts,
            bias: bias.then_some(&b[..]),
            c,
        };
        let got = partials::run_residual_sum(&g.ctx, &g.pipelines, &r).unwrap();
        let want = reference::partials::residual(&x, &parts, r.bias, c);
        assert_close(
            &format!("residual {rows}x{c} p {p}"),
            &got,
            &want,
            1e-5,
            1e-5,
        );
    }
}

#[test]
fn the_staged_projection_reads_the_stream_made_whole() {
    // matvec_staged: x + bias + Σ parts, normalised, times w (+ bias); the row's first
    // workgroup writes the stream whole
    let g = gpu();
    for variant in ["matvec_staged", "matvec_f16_staged"] {
        for (rows, k, n, p, norm) in [
            (3, 64, 192, 4, Norm::layer(true)),
            (2, 128, 96, 0, Norm::layer(true)),
            (1, 64, 128, 7, Norm::rms(1e-6)),
        ] {
            let (x, parts, rb) = stream(rows, k, p, 21);
            let (nw, nb) = (rand_vec(k, 24, 1.0), rand_vec(k, 25, 0.2));
            let (w, bias) = (rand_vec(k * n, 26, 0.2), rand_vec(n, 27, 0.1));
            let r = HostResidual {
                x: &x,
                parts: &parts,
                bias: Some(&rb),
                c: k,
            };
            let prod = HostProduct {
                bias: Some(&bias),
                flags: wgformer::kernels::matmul::BIAS,
                ..HostProduct::new(&[], &w, n, k)
            };
            let (got, whole) = matvec::run_matvec_staged(
                &g.ctx,
                &g.pipelines,
                variant,
                &r,
                (norm, &nw, norm.bias.then_some(&nb[..])),
                &prod,
            )
            .unwrap();
            let stream = reference::partials::residual(&x, &parts, Some(&rb), k);
            let xn = normed(norm, &stream, &nw, &nb, k);
            let w_seen = seen_by(variant, &w);
            let want =
                reference::matmul::matmul(&xn, &w_seen, Some(&bias), None, rows, n, k, false);
            let name = format!("{variant} {rows}x{k}->{n} p {p}");
            assert_close(&name, &got, &want, 1e-4, 1e-4);
            assert_close(&format!("{name} stream"), &whole, &stream, 1e-5, 1e-5);
        }
    }
}

#[test]
fn the_mlp_in_one_dispatch_leaves_each_chunks_share() {
    // mlp_partial: per chunk of hidden units, act(x̂ · w_up[:, chunk] + b) ·
    // w_down[chunk, :]; GPT-2's GELU MLP after a LayerNorm, the Llama families'
    // SwiGLU after an RMSNorm; chunks of 4 to 64 hidden units
    let g = gpu();
    for variant in ["mlp_partial", "mlp_partial_f16"] {
        for (rows, c, h, p, act, norm) in [
            (3, 64, 256, 3, MlpAct::Gelu, Norm::layer(true)),
            (2, 96, 128, 0, MlpAct::Gelu, Norm::layer(false)),
            (2, 64, 128, 2, MlpAct::SwiGlu, Norm::rms(1e-5)),
            (1, 32, 2048, 1, MlpAct::SwiGlu, Norm::rms(1e-5)),
        ] {
            let chunk = partials::mlp_chunk(h).unwrap();
            let shape = MlpShape {
                c,
                h,
                chunk,
                act,
                up_bias: act == MlpAct::Gelu,
            };
            let (x, parts, rb) = stream(rows, c, p, 31);
            let (nw, nb) = (rand_vec(c, 34, 1.0), rand_vec(c, 35, 0.2));
            let w_up = rand_vec(c * shape.up_width(), 36, 0.2);
            let b_up = rand_vec(shape.up_width(), 37, 0.1);
            let w_down = rand_vec(h * c, 38, 0.2);
            let r = HostResidual {
                x: &x,
                parts: &parts,
                bias: Some(&rb),
                c,
            };
            let m = HostMlp {
                shape,
                w_up: &w_up,
                b_up: shape.up_bias.then_some(&b_up[..]),
                w_down: &w_down,
                norm,
                norm_w: &nw,
                norm_b: norm.bias.then_some(&nb[..]),
            };
            let (got, whole) =
                partials::run_mlp_partial(&g.ctx, &g.pipelines, variant, &r, &m).unwrap();
            let stream = reference::partials::residual(&x, &parts, Some(&rb), c);
            let xn = normed(norm, &stream, &nw, &nb, c);
            let want = reference::partials::mlp_partial(
                &xn,
                (&seen_by(variant, &w_up), m.b_up),
                &seen_by(variant, &w_down),
                (c, h, chunk),
                act == MlpAct::SwiGlu,
            );
            let name = format!("{variant} {act:?} {rows}x{c}x{h} chunk {chunk} p {p}");
            assert_eq!(got.len(), rows * (h / chunk) * c, "{name}");
            assert_close(&name, &got, &want, 1e-4, 1e-4);
            assert_close(&format!("{name} stream"), &whole, &stream, 1e-5, 1e-5);
        }
    }
}

#[test]
fn attention_with_its_projection_leaves_each_heads_share() {
    // attention_proj: the last rows of a sequence over its pages (f32 and half-float
    // pools), each head's output times its rows of w_o, against the reference
    // attention of the whole sequence; grouped-query heads, heads of 128 and 256
    // (the wide pipeline) and soft-capped scores included
    let g = gpu();
    for (c, nh, nkv, n, len, page, softcap) in [
        (64, 4, 4, 64, 40, 8, 0.0),
        (128, 4, 2, 96, 700, 16, 0.0),
        (128, 1, 1, 128, 30, 16, 0.0),
        (512, 2, 1, 64, 50, 16, 0.0),
        (64, 4, 2, 64, 40, 8, 0.2),
    ] {
        let heads = Heads::mha(c, nh).grouped(nkv).softcap(softcap);
        let (q, kv) = (heads.q_width(), heads.kv_width());
        let qs = rand_vec(len * heads.qkv_width(), 41, 1.5);
        let pages = len.div_ceil(page);
        // the pages in reverse order
        let table: Vec<u32> = (0..pages as u32).rev().collect();
        let slots: Vec<u32> = (0..len)
            .map(|j| table[j / page] * page as u32 + (j % page) as u32)
            .collect();
        let (mut k_pool, mut v_pool) = (vec![0.0; pages * page * kv], vec![0.0; pages * page * kv]);
        reference::kv_store::kv_store(&qs, &mut k_pool, &mut v_pool, heads, &slots);
        let w_o = rand_vec(q * n, 42, 0.2);
        let first = len - 3;
        let rows: Vec<[u32; 2]> = (first..len).map(|p| [0, p as u32]).collect();
        let (att, _) = reference::attention::attention(&qs, heads);
        for half in [false, true] {
            for variant in ["attention_proj", "attention_proj_f16"] {
                let h = HostAttention::with_heads(&qs[first * heads.qkv_width()..], heads)
                    .paged(&k_pool, &v_pool, &table, page, first)
                    .half(half);
                let got =
                    partials::run_attention_proj(&g.ctx, &g.pipelines, variant, &h, &rows, &w_o, n)
                        .unwrap();
                let want = reference::partials::attention_proj(
                    &att[first * q..],
                    &seen_by(variant, &w_o),
                    nh,
                    c / nh,
                    n,
                );
                // a half pool rounds every key and value
                let tol = if half { 2e-2 } else { 1e-4 };
                let name = format!(
                    "{variant} c {c} nh {nh} nkv {nkv} len {len} half {half} cap {softcap}"
                );
                assert_close(&name, &got, &want, tol, tol);
            }
        }
    }
}
