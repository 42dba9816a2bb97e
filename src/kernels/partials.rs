//! The hardware decode block in three dispatches: the residual adds of attention's
//! output projection and of the MLP's down projection are deferred. Each leaves its
//! share of the sum as partial rows (`attention_proj`: one per head; `mlp_partial`: one
//! per chunk of hidden units), and the next kernel reads the residual stream as
//! `x + bias + Σ partials`, in order (prelude `residual_parts`): `matvec_staged` (the
//! qkv projection with the norm folded in), `mlp_partial` itself, and `residual_sum`
//! (the stream made whole for the LM head). WGSL has no grid-wide barrier, so a block's
//! four all-to-all dependencies otherwise cost four dispatches and a fifth for the
//! attention; here a GPT-2 block is qkv, attention + output projection, MLP.

use bytemuck::{Pod, Zeroable};

use super::attention::{AttentionParams, Heads, KvLayout, PagedBuffers};
use super::layer_norm::Norm;
use super::matmul::{panel_width, store_weights};
use super::{submit_pass, KernelOp, Pipelines, Spec};
use crate::error::Result;
use crate::gpu::{buffers, GpuContext};

pub use super::fusion::{Deferred, STAGE_BIAS, STAGE_WPE};

/// Floats of a row the staging kernels hold in workgroup memory (`MAX_STAGE4` of
/// prelude `stage_x`).
pub const MAX_STAGE: usize = 2048;

/// Partial rows a kernel may read per row: each of its workgroups sums them all.
pub const MAX_PARTS: usize = 32;

/// The MLP's activation in `mlp_partial`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum MlpAct {
    /// GPT-2: gelu(x · w_up + b).
    Gelu,
    /// The Llama families: silu(gate) · up, w_up = gate | up.
    SwiGlu,
}

/// `mlp_partial`'s flags.
pub const MLP_BIAS: u32 = 1;
pub const MLP_GELU: u32 = 2;
pub const MLP_SWIGLU: u32 = 4;

/// The hidden units one `mlp_partial` workgroup takes for a hidden layer of `h`: the
/// fewest (4, 8, …, 128) that leave at most [`MAX_PARTS`] partial rows, or `None`
/// when none does (the MLP then keeps its two dispatches).
pub fn mlp_chunk(h: usize) -> Option<usize> {
    [4, 8, 16, 32, 64, 128]
        .into_iter()
        .find(|&ch| h.is_multiple_of(ch) && h / ch <= MAX_PARTS)
}

/// Mirrors `MlpParams` in the WGSL.
#[repr(C)]
#[derive(Clone, Copy, Debug, Pod, Zeroable)]
pub struct MlpParams {
    pub k4: u32,
    pub parts: u32,
    pub norm: u32,
    pub eps: f32,
    pub flags: u32,
    pub h4: u32,
    pub chunk4: u32,
    pub up_p4: u32,
    pub down_p4: u32,
    pub _pad: [u32; 3],
}

/// Mirrors `ResidualParams` in the WGSL.
#[repr(C)]
#[derive(Clone, Copy, Debug, Pod, Zeroable)]
pub struct ResidualParams {
    pub k4: u32,
    pub parts: u32,
    pub norm: u32,
    pub rows: u32,
}

/// An MLP of `c` → `h` → `c` whose workgroups take `chunk` hidden units each.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct MlpShape {
    pub c: usize,
    pub h: usize,
    pub chunk: usize,
    pub act: MlpAct,
    /// w_up has a bias.
    pub up_bias: bool,
}

impl MlpShape {
    /// Partial rows it leaves per row.
    pub fn parts(&self) -> usize {
        self.h / self.chunk
    }

    /// w_up's outputs (SwiGLU: gate | up).
    pub fn up_width(&self) -> usize {
        match self.act {
            MlpAct::Gelu => self.h,
            MlpAct::SwiGlu => 2 * self.h,
        }
    }
}

/// What `mlp_partial` binds: the residual stream's base rows, partial rows and
/// deferred bias (any buffer when unused), the row written whole (`x_out`), the
/// norm's weight and bias, w_up (its bias), w_down, and the partial rows it leaves.
pub struct MlpBuffers<'a> {
    pub x: &'a wgpu::Buffer,
    pub parts: &'a wgpu::Buffer,
    pub res_bias: &'a wgpu::Buffer,
    pub x_out: &'a wgpu::Buffer,
    pub norm_w: &'a wgpu::Buffer,
    pub norm_b: &'a wgpu::Buffer,
    pub w_up: &'a wgpu::Buffer,
    pub b_up: &'a wgpu::Buffer,
    pub w_down: &'a wgpu::Buffer,
    pub out: &'a wgpu::Buffer,
}

/// The `mlp_partial` variant for the weights' type.
pub fn mlp_variant(half: bool) -> &'static str {
    if half {
        "mlp_partial_f16"
    } else {
        "mlp_partial"
    }
}

/// The `matvec_staged` variant for the weights' type.
pub fn staged_variant(half: bool) -> &'static str {
    if half {
        "matvec_f16_staged"
    } else {
        "matvec_staged"
    }
}

/// The same taking the stream's base from the embedding (the first block).
pub fn embed_staged_variant(half: bool) -> &'static str {
    if half {
        "matvec_f16_embed_staged"
    } else {
        "matvec_embed_staged"
    }
}

/// The `attention_proj` variant for the weights' type.
pub fn attention_proj_variant(half: bool) -> &'static str {
    if half {
        "attention_proj_f16"
    } else {
        "attention_proj"
    }
}

pub fn mlp_partial_op(
    ctx: &GpuContext,
    pipelines: &Pipelines,
    variant: &'static str,
    b: &MlpBuffers,
) -> KernelOp {
    KernelOp::new::<MlpParams>(
        ctx,
        pipelines,
        variant,
        &[
            b.x, b.parts, b.res_bias, b.x_out, b.norm_w, b.norm_b, b.w_up, b.b_up, b.w_down, b.out,
        ],
    )
}

/// Record `mlp_partial` for `rows` rows reading the stream as `input`, normalised by
/// `norm`.
pub fn encode_mlp_partial(
    pass: &mut wgpu::ComputePass<'_>,
    op: &KernelOp,
    rows: usize,
    shape: MlpShape,
    input: Deferred,
    norm: Norm,
) {
    let act = match shape.act {
        MlpAct::Gelu => MLP_GELU,
        MlpAct::SwiGlu => MLP_SWIGLU,
    };
    let p = MlpParams {
        k4: (shape.c / 4) as u32,
        parts: input.parts as u32,
        norm: input.flags(Some(norm)),
        eps: norm.eps,
        flags: act | if shape.up_bias { MLP_BIAS } else { 0 },
        h4: (shape.h / 4) as u32,
        chunk4: (shape.chunk / 4) as u32,
        up_p4: (panel_width(shape.up_width()) / 4) as u32,
        down_p4: (panel_width(shape.c) / 4) as u32,
        _pad: [0; 3],
    };
    op.encode(pass, &p, (shape.parts() as u32, rows as u32, 1));
}

/// Op of `attention_proj` (`variant` for w_o's type): the paged attention's buffers,
/// `out` the partial rows `[T, NH, N]`, then w_o `[Q, N]` stored as the matvec
/// kernels read it.
pub fn attention_proj_op(
    ctx: &GpuContext,
    pipelines: &Pipelines,
    variant: &'static str,
    b: &PagedBuffers,
    w_o: &wgpu::Buffer,
) -> KernelOp {
    let mut all = b.bindings().to_vec();
    all.push(w_o);
    let spec = Spec::reader(b.half).heads(b.head_size);
    KernelOp::with_spec::<AttentionParams>(ctx, pipelines, variant, spec, &all)
}

/// Record attention of `t` rows of `heads` over the paged pool (pages of `page`
/// positions; `block` the sparse block size, 0 dense), each head's output times its
/// rows of w_o `[Q, n]` to its partial row.
pub fn encode_attention_proj(
    pass: &mut wgpu::ComputePass<'_>,
    op: &KernelOp,
    t: usize,
    heads: Heads,
    (page, block): (usize, usize),
    n: usize,
) {
    let p = AttentionParams {
        proj_n4: (n / 4) as u32,
        proj_p4: (panel_width(n) / 4) as u32,
        ..AttentionParams::new(t, heads, KvLayout::paged(heads, 0, page), block)
    };
    op.encode(pass, &p, (t as u32, heads.nh as u32, 1));
}

/// Op of `residual_sum`: x (made whole in place), its partial rows, the deferred bias.
pub fn residual_sum_op(
    ctx: &GpuContext,
    pipelines: &Pipelines,
    x: &wgpu::Buffer,
    parts: &wgpu::Buffer,
    res_bias: &wgpu::Buffer,
) -> KernelOp {
    KernelOp::new::<ResidualParams>(ctx, pipelines, "residual_sum", &[x, parts, res_bias])
}

/// Record `x = x + bias + Σ parts` for `rows` rows of `c`.
pub fn encode_residual_sum(
    pass: &mut wgpu::ComputePass<'_>,
    op: &KernelOp,
    rows: usize,
    c: usize,
    input: Deferred,
) {
    let p = ResidualParams {
        k4: (c / 4) as u32,
        parts: input.parts as u32,
        norm: input.flags(None),
        rows: rows as u32,
    };
    let gx = (c / 4).div_ceil(op.workgroup as usize) as u32;
    op.encode(pass, &p, (gx, rows as u32, 1));
}

/// A residual stream on the host: `rows` rows of `x [rows, c]`, `parts` partial rows
/// per row (`[rows, P, c]`), the deferred bias.
pub struct HostResidual<'a> {
    pub x: &'a [f32],
    pub parts: &'a [f32],
    pub bias: Option<&'a [f32]>,
    pub c: usize,
}

impl HostResidual<'_> {
    fn rows(&self) -> usize {
        self.x.len() / self.c
    }

    pub(super) fn deferred(&self) -> Deferred {
        Deferred {
            parts: self.parts.len() / self.x.len(),
            bias: self.bias.is_some(),
            wpe: false,
        }
    }

    pub(super) fn upload(&self, ctx: &GpuContext) -> (wgpu::Buffer, wgpu::Buffer, wgpu::Buffer) {
        let or_one = |v: &[f32]| {
            if v.is_empty() {
                vec![0.0; 4]
            } else {
                v.to_vec()
            }
        };
        (
            buffers::upload(ctx, "x", self.x),
            buffers::upload(ctx, "parts", &or_one(self.parts)),
            buffers::upload(ctx, "res_bias", &or_one(self.bias.unwrap_or(&[]))),
        )
    }
}

/// Upload `r`, run `residual_sum`, read back the whole rows.
pub fn run_residual_sum(
    ctx: &GpuContext,
    pipelines: &Pipelines,
    r: &HostResidual,
) -> Result<Vec<f32>> {
    let (x, parts, bias) = r.upload(ctx);
    let op = residual_sum_op(ctx, pipelines, &x, &parts, &bias);
    submit_pass(ctx, "residual_sum", |pass| {
        encode_residual_sum(pass, &op, r.rows(), r.c, r.deferred())
    })?;
    buffers::read_floats(ctx, &x, 0, r.x.len())
}

/// An MLP's weights on the host: w_up `[c, up_width]` (its bias), w_down `[h, c]`, and
/// the norm before it (weight, bias).
pub struct HostMlp<'a> {
    pub shape: MlpShape,
    pub w_up: &'a [f32],
    pub b_up: Option<&'a [f32]>,
    pub w_down: &'a [f32],
    pub norm: Norm,
    pub norm_w: &'a [f32],
    pub norm_b: Option<&'a [f32]>,
}

/// Upload, run `variant` of `mlp_partial` over the stream `r`, read back
/// `(the partial rows [rows, h / chunk, c], the rows written whole [rows, c])`.
pub fn run_mlp_partial(
    ctx: &GpuContext,
    pipelines: &Pipelines,
    variant: &'static str,
    r: &HostResidual,
    m: &HostMlp,
) -> Result<(Vec<f32>, Vec<f32>)> {
    let (s, rows) = (m.shape, r.rows());
    let (x, parts, res_bias) = r.upload(ctx);
    let dummy = buffers::storage(ctx, "dummy", 4);
    let up = buffers::upload(
        ctx,
        "w_up",
        &store_weights(variant, m.w_up, s.c, s.up_width()),
    );
    let down = buffers::upload(ctx, "w_down", &store_weights(variant, m.w_down, s.h, s.c));
    let b_up = m.b_up.map(|b| buffers::upload(ctx, "b_up", b));
    let norm_w = buffers::upload(ctx, "norm_w", m.norm_w);
    let norm_b = m.norm_b.map(|b| buffers::upload(ctx, "norm_b", b));
    let x_out = buffers::storage(ctx, "x_out", rows * s.c);
    let out = buffers::storage(ctx, "out", rows * s.parts() * s.c);
    let b = MlpBuffers {
        x: &x,
        parts: &parts,
        res_bias: &res_bias,
        x_out: &x_out,
        norm_w: &norm_w,
        norm_b: norm_b.as_ref().unwrap_or(&dummy),
        w_up: &up,
        b_up: b_up.as_ref().unwrap_or(&dummy),
        w_down: &down,
        out: &out,
    };
    let op = mlp_partial_op(ctx, pipelines, variant, &b);
    let shape = MlpShape {
        up_bias: m.b_up.is_some(),
        ..s
    };
    submit_pass(ctx, variant, |pass| {
        encode_mlp_partial(pass, &op, rows, shape, r.deferred(), m.norm)
    })?;
    let mut got = buffers::read_many(
        ctx,
        &[(&out, 0, rows * s.parts() * s.c), (&x_out, 0, rows * s.c)],
    )?;
    let whole = got.pop().unwrap_or_default();
    Ok((got.pop().unwrap_or_default(), whole))
}

/// Upload, run `variant` of `attention_proj` over `h`'s paged pool (one query row of
/// `h.qkv` per entry of `rows`, as [`super::attention::run_attention_paged`]) with w_o
/// `[Q, n]`, read back the partial rows `[T, NH, n]`.
pub fn run_attention_proj(
    ctx: &GpuContext,
    pipelines: &Pipelines,
    variant: &'static str,
    h: &super::attention::HostAttention,
    rows: &[[u32; 2]],
    w_o: &[f32],
    n: usize,
) -> Result<Vec<f32>> {
    let (t, heads) = (rows.len(), h.heads);
    let floats = t * heads.nh * n;
    let up = super::attention::PagedUpload::new(ctx, h, rows, floats)?;
    let w = buffers::upload(ctx, "w_o", &store_weights(variant, w_o, heads.q_width(), n));
    let op = attention_proj_op(ctx, pipelines, variant, &up.buffers(), &w);
    submit_pass(ctx, variant, |pass| {
        encode_attention_proj(pass, &op, t, heads, (up.page, h.block()), n)
    })?;
    buffers::read_floats(ctx, &up.out, 0, floats)
}
