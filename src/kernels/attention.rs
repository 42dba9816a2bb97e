//! Causal multi-head attention with per-row entropy (`shaders/attention.wgsl`).

use bytemuck::{Pod, Zeroable};

use super::{submit_pass, KernelOp};
use crate::error::Result;
use crate::gpu::{buffers, GpuContext, Pipelines};

/// Mirrors `AttentionParams` in the WGSL.
#[repr(C)]
#[derive(Clone, Copy, Debug, Pod, Zeroable)]
pub struct AttentionParams {
    pub t: u32,
    pub c4: u32,
    pub hs4: u32,
    pub nh: u32,
    pub scale: f32,
    pub pos: u32,
    pub kv_stride4: u32,
    pub k_off4: u32,
    pub v_off4: u32,
    /// Tokens per block (sparse_attention only).
    pub block: u32,
    /// Positions per page of the paged KV pool (0: keys at row j).
    pub page: u32,
    /// Row of query 0 in qkv and out; start of the page table in `tables`.
    pub t0: u32,
    pub table0: u32,
    /// `attention_weights`: float offset of the layer's `[NH, T, T]` in its output.
    pub w0: u32,
    pub _pad: [u32; 2],
}

impl AttentionParams {
    /// The uniform of `t` queries over keys laid out as `kv`, `nh` heads, width `c`,
    /// sparse block size `block` (0: dense, where the kernels read it as such).
    fn new(t: usize, c: usize, nh: usize, kv: KvLayout, block: usize) -> Self {
        let hs = c / nh;
        AttentionParams {
            t: t as u32,
            c4: (c / 4) as u32,
            hs4: (hs / 4) as u32,
            nh: nh as u32,
            scale: 1.0 / (hs as f32).sqrt(),
            pos: kv.pos as u32,
            kv_stride4: (kv.stride / 4) as u32,
            k_off4: (kv.k_off / 4) as u32,
            v_off4: (kv.v_off / 4) as u32,
            block: block as u32,
            page: kv.page as u32,
            t0: kv.row0 as u32,
            table0: kv.table0 as u32,
            w0: 0,
            _pad: [0; 2],
        }
    }
}

/// Where keys and values live, in floats: row stride, offsets of K and V in a row,
/// and the absolute position of query 0.
#[derive(Clone, Copy, Debug)]
pub struct KvLayout {
    pub pos: usize,
    pub stride: usize,
    pub k_off: usize,
    pub v_off: usize,
    /// Positions per page when keys and values live in the paged pool (row `j` at
    /// `tables[table0 + j / page] * page + j % page`), 0 when row `j` is row `j`.
    pub page: usize,
    pub table0: usize,
    /// Row of query 0 in qkv and out (one prompt's rows among a prefill's).
    pub row0: usize,
}

impl KvLayout {
    /// Keys and values inside the fused qkv buffer of the same pass.
    pub fn fused(c: usize) -> Self {
        KvLayout {
            pos: 0,
            stride: 3 * c,
            k_off: c,
            v_off: 2 * c,
            page: 0,
            table0: 0,
            row0: 0,
        }
    }

    /// A generation's KV cache (`[context, C]` each); queries start at `pos`.
    pub fn cache(c: usize, pos: usize) -> Self {
        KvLayout {
            pos,
            stride: c,
            k_off: 0,
            v_off: 0,
            page: 0,
            table0: 0,
            row0: 0,
        }
    }

    /// One sequence's keys and values in the paged pool (`[pool rows, C]` each, its
    /// page table bound as `tables`, pages of `page` positions); queries start at `pos`.
    pub fn paged(c: usize, pos: usize, page: usize) -> Self {
        KvLayout {
            page,
            ..Self::cache(c, pos)
        }
    }

    /// The queries at rows `row0 ..` of qkv (and out), the page table at `table0`.
    pub fn at(self, row0: usize, table0: usize) -> Self {
        KvLayout {
            row0,
            table0,
            ..self
        }
    }
}

/// The dense kernel for this device and head size: with hardware kernels the tiled
/// (flash-style) one; else the subgroup variant (head size 64, subgroups of at least 8
/// lanes) or the portable one.
pub fn attention_variant(pipelines: &Pipelines, head_size: usize, hardware: bool) -> &'static str {
    if hardware {
        "attention_tiled"
    } else if head_size == 64 && pipelines.has("attention_subgroup") {
        "attention_subgroup"
    } else {
        "attention"
    }
}

/// The decode (paged) attention kernel for this device and head size: with hardware
/// kernels the workgroup one; else the subgroup variant (head size 64) or the portable
/// one.
pub fn paged_attention_variant(
    pipelines: &Pipelines,
    head_size: usize,
    hardware: bool,
) -> &'static str {
    if hardware {
        "attention_paged_workgroup"
    } else if head_size == 64 && pipelines.has("attention_paged_subgroup") {
        "attention_paged_subgroup"
    } else {
        "attention_paged"
    }
}

/// The block-sparse kernel for this device, head size and block size: with hardware
/// kernels the tiled one; else the subgroup variant (blocks a multiple of the subgroup
/// size) or the portable one.
pub fn sparse_attention_variant(
    ctx: &GpuContext,
    pipelines: &Pipelines,
    head_size: usize,
    block: usize,
    hardware: bool,
) -> &'static str {
    let sg = ctx.subgroup_max_size.max(1) as usize;
    if hardware {
        "sparse_attention_tiled"
    } else if head_size == 64
        && block.is_multiple_of(sg)
        && pipelines.has("sparse_attention_subgroup")
    {
        "sparse_attention_subgroup"
    } else {
        "sparse_attention"
    }
}

/// Op: bindings qkv `[T, 3C]` (queries), k, v (the same qkv, cache buffers, or the
/// paged pool), out `[T, C]`, entropy `[NH, T]`, the page table (any buffer unless the
/// layout is paged). `variant`: `attention`, `attention_subgroup` or `attention_tiled`.
#[allow(clippy::too_many_arguments)]
pub fn attention_op(
    ctx: &GpuContext,
    pipelines: &Pipelines,
    variant: &'static str,
    qkv: &wgpu::Buffer,
    k: &wgpu::Buffer,
    v: &wgpu::Buffer,
    out: &wgpu::Buffer,
    entropy: &wgpu::Buffer,
    tables: &wgpu::Buffer,
) -> KernelOp {
    KernelOp::new::<AttentionParams>(ctx, pipelines, variant, &[qkv, k, v, out, entropy, tables])
}

/// Block-sparse op: the bindings of [`attention_op`] but with the CSR layout
/// (`row_offsets` `[query blocks + 1]`, `cols` `[listed blocks]`, both u32) before the
/// page table.
#[allow(clippy::too_many_arguments)]
pub fn sparse_attention_op(
    ctx: &GpuContext,
    pipelines: &Pipelines,
    variant: &'static str,
    qkv: &wgpu::Buffer,
    k: &wgpu::Buffer,
    v: &wgpu::Buffer,
    out: &wgpu::Buffer,
    entropy: &wgpu::Buffer,
    row_offsets: &wgpu::Buffer,
    cols: &wgpu::Buffer,
    tables: &wgpu::Buffer,
) -> KernelOp {
    KernelOp::new::<AttentionParams>(
        ctx,
        pipelines,
        variant,
        &[qkv, k, v, out, entropy, row_offsets, cols, tables],
    )
}

/// Record causal attention of `t` queries over keys laid out as `kv`, `nh` heads, width
/// `c`; `block` is the layout's block size for a sparse op (ignored by the dense one).
#[allow(clippy::too_many_arguments)]
pub fn encode_attention(
    queue: &wgpu::Queue,
    pass: &mut wgpu::ComputePass<'_>,
    pipelines: &Pipelines,
    op: &KernelOp,
    t: usize,
    c: usize,
    nh: usize,
    kv: KvLayout,
    block: usize,
) {
    // the dense kernels ignore the block size, the sparse ones divide by it
    let p = AttentionParams::new(t, c, nh, kv, block.max(1));
    // one query per lane (the tiled kernel: a block of queries per workgroup)
    let gx = t.div_ceil(pipelines.workgroup(op.name) as usize) as u32;
    op.encode(queue, pass, pipelines, &p, (gx, nh as u32, 1));
}

/// Run `op` (bound to `out` and `ent`) for `t` queries and read back `(out, entropy)`.
#[allow(clippy::too_many_arguments)]
fn run_bound(
    ctx: &GpuContext,
    pipelines: &Pipelines,
    make_op: impl FnOnce(&wgpu::Buffer, &wgpu::Buffer) -> KernelOp,
    t: usize,
    c: usize,
    nh: usize,
    kv: KvLayout,
    block: usize,
) -> Result<(Vec<f32>, Vec<f32>)> {
    let out = buffers::storage(ctx, "out", t * c);
    let ent = buffers::storage(ctx, "entropy", nh * t);
    let op = make_op(&out, &ent);
    submit_pass(ctx, op.name, |pass| {
        encode_attention(&ctx.queue, pass, pipelines, &op, t, c, nh, kv, block)
    })?;
    let mut r = buffers::read_many(ctx, &[(&out, 0, t * c), (&ent, 0, nh * t)])?;
    let e = r.pop().unwrap_or_default();
    let o = r.pop().unwrap_or_default();
    Ok((o, e))
}

/// Upload, run, read back `(out[T, C], entropy[NH, T])`.
pub fn run_attention(
    ctx: &GpuContext,
    pipelines: &Pipelines,
    variant: &'static str,
    qkv: &[f32],
    c: usize,
    nh: usize,
) -> Result<(Vec<f32>, Vec<f32>)> {
    let t = qkv.len() / (3 * c);
    let q = buffers::upload(ctx, "qkv", qkv);
    let none = buffers::storage(ctx, "tables", 1);
    let make = |out: &wgpu::Buffer, ent: &wgpu::Buffer| {
        attention_op(ctx, pipelines, variant, &q, &q, &q, out, ent, &none)
    };
    run_bound(ctx, pipelines, make, t, c, nh, KvLayout::fused(c), 0)
}

/// Upload, run with keys and values in separate cache buffers, read back
/// `(out[T, C], entropy[NH, T])`: queries `qkv [T, 3C]` at positions `pos..pos + T`,
/// caches `[rows, C]` holding at least `pos + T` rows.
#[allow(clippy::too_many_arguments)]
pub fn run_attention_cached(
    ctx: &GpuContext,
    pipelines: &Pipelines,
    variant: &'static str,
    qkv: &[f32],
    k_cache: &[f32],
    v_cache: &[f32],
    pos: usize,
    c: usize,
    nh: usize,
) -> Result<(Vec<f32>, Vec<f32>)> {
    let t = qkv.len() / (3 * c);
    let q = buffers::upload(ctx, "qkv", qkv);
    let k = buffers::upload(ctx, "k_cache", k_cache);
    let v = buffers::upload(ctx, "v_cache", v_cache);
    let none = buffers::storage(ctx, "tables", 1);
    let make = |out: &wgpu::Buffer, ent: &wgpu::Buffer| {
        attention_op(ctx, pipelines, variant, &q, &k, &v, out, ent, &none)
    };
    run_bound(ctx, pipelines, make, t, c, nh, KvLayout::cache(c, pos), 0)
}

/// Upload, run block-sparse attention with `layout`, read back `(out[T, C], entropy[NH, T])`.
pub fn run_sparse_attention(
    ctx: &GpuContext,
    pipelines: &Pipelines,
    variant: &'static str,
    qkv: &[f32],
    c: usize,
    nh: usize,
    layout: &crate::model::sparse::BlockLayout,
) -> Result<(Vec<f32>, Vec<f32>)> {
    let t = qkv.len() / (3 * c);
    let q = buffers::upload(ctx, "qkv", qkv);
    let (ro, cols) = layout.upload(ctx);
    let none = buffers::storage(ctx, "tables", 1);
    let make = |out: &wgpu::Buffer, ent: &wgpu::Buffer| {
        sparse_attention_op(
            ctx, pipelines, variant, &q, &q, &q, out, ent, &ro, &cols, &none,
        )
    };
    run_bound(
        ctx,
        pipelines,
        make,
        t,
        c,
        nh,
        KvLayout::fused(c),
        layout.block,
    )
}

/// Op of a paged kernel (`variant` of op `attention_paged`): queries `qkv [T, 3C]`, the layer's pools
/// `[pool rows, C]`, out `[T, C]`, per-row `(table offset, position)` pairs, the page
/// tables, and the sparse layout's CSR (`row_offsets`, `cols`; any buffer when dense).
#[allow(clippy::too_many_arguments)]
pub fn attention_paged_op(
    ctx: &GpuContext,
    pipelines: &Pipelines,
    variant: &'static str,
    qkv: &wgpu::Buffer,
    k_pool: &wgpu::Buffer,
    v_pool: &wgpu::Buffer,
    out: &wgpu::Buffer,
    rows: &wgpu::Buffer,
    tables: &wgpu::Buffer,
    row_offsets: &wgpu::Buffer,
    cols: &wgpu::Buffer,
) -> KernelOp {
    KernelOp::new::<AttentionParams>(
        ctx,
        pipelines,
        variant,
        &[qkv, k_pool, v_pool, out, rows, tables, row_offsets, cols],
    )
}

/// Record attention of `t` rows over the paged pool with pages of `page` positions;
/// `block` is the sparse layout's block size, 0 when dense.
#[allow(clippy::too_many_arguments)]
pub fn encode_attention_paged(
    queue: &wgpu::Queue,
    pass: &mut wgpu::ComputePass<'_>,
    pipelines: &Pipelines,
    op: &KernelOp,
    t: usize,
    c: usize,
    nh: usize,
    page: usize,
    block: usize,
) {
    let p = AttentionParams::new(t, c, nh, KvLayout::paged(c, 0, page), block);
    // the portable kernel takes a row a lane, its twins (subgroup, workgroup) a row a
    // workgroup
    let per_workgroup = crate::gpu::kernel(op.name).is_some_and(|k| k.name != k.op);
    let gx = if per_workgroup {
        t
    } else {
        t.div_ceil(pipelines.workgroup(op.name) as usize)
    };
    op.encode(queue, pass, pipelines, &p, (gx as u32, nh as u32, 1));
}

/// Upload, run the paged kernel, read back `out[T, C]`: queries `qkv [T, 3C]`, pools
/// `[pool rows, C]` with pages of `page` positions, per-row `(table offset, position)`,
/// the page tables, and an optional sparse layout.
#[allow(clippy::too_many_arguments)]
pub fn run_attention_paged(
    ctx: &GpuContext,
    pipelines: &Pipelines,
    variant: &'static str,
    qkv: &[f32],
    k_pool: &[f32],
    v_pool: &[f32],
    rows: &[[u32; 2]],
    tables: &[u32],
    page: usize,
    c: usize,
    nh: usize,
    layout: Option<&crate::model::sparse::BlockLayout>,
) -> Result<Vec<f32>> {
    let t = rows.len();
    let q = buffers::upload(ctx, "qkv", qkv);
    let k = buffers::upload(ctx, "k_pool", k_pool);
    let v = buffers::upload(ctx, "v_pool", v_pool);
    let rb = buffers::upload(ctx, "rows", bytemuck::cast_slice(rows));
    let tb = buffers::upload(ctx, "tables", bytemuck::cast_slice(tables));
    let out = buffers::storage(ctx, "out", t * c);
    let (ro, cols) = match layout {
        Some(l) => l.upload(ctx),
        None => (
            buffers::storage(ctx, "row_offsets", 4),
            buffers::storage(ctx, "cols", 4),
        ),
    };
    let op = attention_paged_op(
        ctx, pipelines, variant, &q, &k, &v, &out, &rb, &tb, &ro, &cols,
    );
    let block = layout.map_or(0, |l| l.block);
    submit_pass(ctx, op.name, |pass| {
        encode_attention_paged(&ctx.queue, pass, pipelines, &op, t, c, nh, page, block)
    })?;
    buffers::read_floats(ctx, &out, 0, t * c)
}

/// Upload, run `variant` (a dense or block-sparse kernel of the forward) over one
/// sequence's keys and values in a paged pool, read back `out[T, C]`: queries
/// `qkv [T, 3C]` at positions `pos ..`, the sequence's page `table`.
#[allow(clippy::too_many_arguments)]
pub fn run_attention_paged_chunk(
    ctx: &GpuContext,
    pipelines: &Pipelines,
    variant: &'static str,
    qkv: &[f32],
    k_pool: &[f32],
    v_pool: &[f32],
    table: &[u32],
    pos: usize,
    page: usize,
    c: usize,
    nh: usize,
    layout: Option<&crate::model::sparse::BlockLayout>,
) -> Result<Vec<f32>> {
    let t = qkv.len() / (3 * c);
    let q = buffers::upload(ctx, "qkv", qkv);
    let k = buffers::upload(ctx, "k_pool", k_pool);
    let v = buffers::upload(ctx, "v_pool", v_pool);
    let tb = buffers::upload(ctx, "tables", bytemuck::cast_slice(table));
    let make = |out: &wgpu::Buffer, ent: &wgpu::Buffer| match layout {
        Some(l) => {
            let (ro, cols) = l.upload(ctx);
            sparse_attention_op(
                ctx, pipelines, variant, &q, &k, &v, out, ent, &ro, &cols, &tb,
            )
        }
        None => attention_op(ctx, pipelines, variant, &q, &k, &v, out, ent, &tb),
    };
    let block = layout.map_or(0, |l| l.block);
    let (out, _) = run_bound(
        ctx,
        pipelines,
        make,
        t,
        c,
        nh,
        KvLayout::paged(c, pos, page),
        block,
    )?;
    Ok(out)
}

/// Op of `attention_weights`: a forward's `qkv [T, 3C]`, the weights buffer (each
/// captured layer's `[NH, T, T]` at its offset), the sparse layout's CSR (any buffer
/// when dense), and a page-table buffer the prelude declares (unused).
pub fn attention_weights_op(
    ctx: &GpuContext,
    pipelines: &Pipelines,
    qkv: &wgpu::Buffer,
    weights: &wgpu::Buffer,
    row_offsets: &wgpu::Buffer,
    cols: &wgpu::Buffer,
    tables: &wgpu::Buffer,
) -> KernelOp {
    KernelOp::new::<AttentionParams>(
        ctx,
        pipelines,
        "attention_weights",
        &[qkv, weights, row_offsets, cols, tables],
    )
}

/// Record the attention weights of a forward of `t` tokens (keys in its fused qkv) to
/// floats `w0 ..` of the op's weights buffer; `block` the sparse block size, 0 dense.
#[allow(clippy::too_many_arguments)]
pub fn encode_attention_weights(
    queue: &wgpu::Queue,
    pass: &mut wgpu::ComputePass<'_>,
    pipelines: &Pipelines,
    op: &KernelOp,
    t: usize,
    c: usize,
    nh: usize,
    block: usize,
    w0: usize,
) {
    let p = AttentionParams {
        w0: w0 as u32,
        ..AttentionParams::new(t, c, nh, KvLayout::fused(c), block)
    };
    let gx = t.div_ceil(pipelines.workgroup(op.name) as usize) as u32;
    op.encode(queue, pass, pipelines, &p, (gx, nh as u32, 1));
}

/// Upload `qkv [T, 3C]`, run `attention_weights`, read back `[NH, T, T]`.
pub fn run_attention_weights(
    ctx: &GpuContext,
    pipelines: &Pipelines,
    qkv: &[f32],
    c: usize,
    nh: usize,
    layout: Option<&crate::model::sparse::BlockLayout>,
) -> Result<Vec<f32>> {
    let t = qkv.len() / (3 * c);
    let q = buffers::upload(ctx, "qkv", qkv);
    let w = buffers::storage(ctx, "attention weights", nh * t * t);
    let none = buffers::storage(ctx, "tables", 1);
    let (ro, cols) = match layout {
        Some(l) => l.upload(ctx),
        None => (
            buffers::storage(ctx, "row_offsets", 4),
            buffers::storage(ctx, "cols", 4),
        ),
    };
    let op = attention_weights_op(ctx, pipelines, &q, &w, &ro, &cols, &none);
    let block = layout.map_or(0, |l| l.block);
    submit_pass(ctx, op.name, |pass| {
        encode_attention_weights(&ctx.queue, pass, pipelines, &op, t, c, nh, block, 0)
    })?;
    buffers::read_floats(ctx, &w, 0, nh * t * t)
}
