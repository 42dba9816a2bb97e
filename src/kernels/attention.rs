//! Causal multi-head attention with per-row entropy (`shaders/attention.wgsl` and its
//! variants), grouped-query heads and a sliding window as [`Heads`] says.

use bytemuck::{Pod, Zeroable};

use super::Pipelines;
use super::{submit_pass, KernelOp, Spec};
pub use crate::config::Heads;
use crate::error::Result;
use crate::gpu::{buffers, GpuContext};
use crate::sparse::BlockLayout;

/// A block layout's `(row_offsets, cols)` as device buffers (the sparse kernels'
/// bindings).
pub fn upload_layout(ctx: &GpuContext, layout: &BlockLayout) -> (wgpu::Buffer, wgpu::Buffer) {
    let cast = |v: &[u32]| -> Vec<f32> { v.iter().map(|&x| f32::from_bits(x)).collect() };
    (
        buffers::upload(ctx, "sparse row_offsets", &cast(&layout.row_offsets)),
        buffers::upload(ctx, "sparse cols", &cast(&layout.cols)),
    )
}

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
    pub nkv: u32,
    pub window: u32,
    /// `attention_proj`: vec4s of the output projection's outputs, its panel width / 4.
    pub proj_n4: u32,
    pub proj_p4: u32,
    /// The scores' soft cap (0: none); `scale` is then divided by it.
    pub softcap: f32,
    /// 1: every query sees every key of its text (an encoder's attention).
    pub bidirectional: u32,
}

impl AttentionParams {
    /// The uniform of `t` queries of `heads` over keys laid out as `kv`, sparse block
    /// size `block` (0: dense, where the kernels read it as such).
    pub(super) fn new(t: usize, heads: Heads, kv: KvLayout, block: usize) -> Self {
        let hs = heads.hs;
        // a capped score is cap · tanh(s / cap): the kernels scale by 1 / (√HS · cap)
        let cap = if heads.softcap > 0.0 {
            heads.softcap
        } else {
            1.0
        };
        AttentionParams {
            t: t as u32,
            c4: (heads.q_width() / 4) as u32,
            hs4: (hs / 4) as u32,
            nh: heads.nh as u32,
            scale: 1.0 / ((hs as f32).sqrt() * cap),
            pos: kv.pos as u32,
            kv_stride4: (kv.stride / 4) as u32,
            k_off4: (kv.k_off / 4) as u32,
            v_off4: (kv.v_off / 4) as u32,
            block: block as u32,
            page: kv.page as u32,
            t0: kv.row0 as u32,
            table0: kv.table0 as u32,
            w0: 0,
            nkv: heads.nkv as u32,
            window: heads.window as u32,
            proj_n4: 0,
            proj_p4: 0,
            softcap: heads.softcap.max(0.0),
            bidirectional: heads.bidirectional as u32,
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
    pub fn fused(heads: Heads) -> Self {
        KvLayout {
            pos: 0,
            stride: heads.qkv_width(),
            k_off: heads.q_width(),
            v_off: heads.q_width() + heads.kv_width(),
            page: 0,
            table0: 0,
            row0: 0,
        }
    }

    /// A generation's KV cache (`[context, KV]` each); queries start at `pos`.
    pub fn cache(heads: Heads, pos: usize) -> Self {
        KvLayout {
            pos,
            stride: heads.kv_width(),
            k_off: 0,
            v_off: 0,
            page: 0,
            table0: 0,
            row0: 0,
        }
    }

    /// One sequence's keys and values in the paged pool (`[pool rows, KV]` each, its
    /// page table bound as `tables`, pages of `page` positions); queries start at `pos`.
    pub fn paged(heads: Heads, pos: usize, page: usize) -> Self {
        KvLayout {
            page,
            ..Self::cache(heads, pos)
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
    if hardware {
        "sparse_attention_tiled"
    } else if head_size == 64
        && runs_chunk(ctx, "sparse_attention_subgroup", block, 0)
        && pipelines.has("sparse_attention_subgroup")
    {
        "sparse_attention_subgroup"
    } else {
        "sparse_attention"
    }
}

/// Whether attention kernel `variant` can run queries from position `start` over a
/// block-sparse layout of `block`-token blocks on this device. Only
/// `sparse_attention_subgroup` cannot run every chunk: a subgroup's queries must share
/// a query block, so the block and the chunk's start are multiples of the subgroup size
/// (the largest the device may run: a multiple of it is one of every smaller power of
/// two).
pub fn runs_chunk(ctx: &GpuContext, variant: &str, block: usize, start: usize) -> bool {
    let sg = ctx.subgroup_max_size.max(1) as usize;
    variant != "sparse_attention_subgroup" || (block.is_multiple_of(sg) && start.is_multiple_of(sg))
}

/// The buffers an attention kernel binds after its parameters: queries `qkv [T, Q + 2 KV]`,
/// keys and values (the same qkv, cache buffers, or a paged pool), out `[T, Q]`,
/// entropy `[NH, T]`, the page table (any buffer unless the layout is paged), and for
/// the block-sparse kernels the CSR layout (`row_offsets` `[query blocks + 1]`, `cols`
/// `[listed blocks]`, both u32), bound before the page table.
pub struct AttentionBuffers<'a> {
    pub qkv: &'a wgpu::Buffer,
    pub k: &'a wgpu::Buffer,
    pub v: &'a wgpu::Buffer,
    pub out: &'a wgpu::Buffer,
    pub entropy: &'a wgpu::Buffer,
    pub tables: &'a wgpu::Buffer,
    /// `(row_offsets, cols)` for a block-sparse `variant`.
    pub sparse: Option<(&'a wgpu::Buffer, &'a wgpu::Buffer)>,
    /// `k` and `v` are a paged pool of half floats (the kernel compiled with
    /// `KV_HALF`, prelude `kv_read`).
    pub half: bool,
    /// The head size it attends over (past 128, the kernel's wide pipeline).
    pub head_size: usize,
}

/// Op of a forward's attention: `variant` of op `attention` (`attention`,
/// `attention_subgroup`, `attention_tiled`) or, with `b.sparse`, of `sparse_attention`.
pub fn attention_op(
    ctx: &GpuContext,
    pipelines: &Pipelines,
    variant: &'static str,
    b: &AttentionBuffers,
) -> KernelOp {
    let mut bind = vec![b.qkv, b.k, b.v, b.out, b.entropy];
    if let Some((row_offsets, cols)) = b.sparse {
        bind.extend([row_offsets, cols]);
    }
    bind.push(b.tables);
    let spec = Spec::reader(b.half).heads(b.head_size);
    KernelOp::with_spec::<AttentionParams>(ctx, pipelines, variant, spec, &bind)
}

/// Record causal attention of `t` queries of `heads` over keys laid out as `kv`;
/// `block` is the layout's block size for a sparse op (ignored by the dense one).
pub fn encode_attention(
    pass: &mut wgpu::ComputePass<'_>,
    op: &KernelOp,
    t: usize,
    heads: Heads,
    kv: KvLayout,
    block: usize,
) {
    // the dense kernels ignore the block size, the sparse ones divide by it
    let p = AttentionParams::new(t, heads, kv, block.max(1));
    // one query per lane (the tiled kernels: a block of queries per workgroup); a
    // grouped kernel's workgroup takes a key/value head's G query heads together
    let (per_group, groups) = if op.kernel.kv_grouped {
        let g = heads.nh / heads.nkv;
        (op.workgroup as usize / g, heads.nkv)
    } else {
        (op.workgroup as usize, heads.nh)
    };
    let gx = t.div_ceil(per_group.max(1)) as u32;
    op.encode(pass, &p, (gx, groups as u32, 1));
}

/// An attention problem on the host, for the `run_*` helpers (the tests and the bench):
/// queries `qkv [T, Q + 2 KV]` of `heads`, and where the keys and values are.
#[derive(Clone, Copy)]
pub struct HostAttention<'a> {
    pub qkv: &'a [f32],
    pub heads: Heads,
    /// Keys and values `[rows, KV]` apart from `qkv` (a cache, or a paged pool); `None`:
    /// the keys and values of `qkv`.
    pub kv: Option<(&'a [f32], &'a [f32])>,
    /// Position of the first query.
    pub pos: usize,
    /// A paged pool's page table and positions per page.
    pub paged: Option<(&'a [u32], usize)>,
    pub layout: Option<&'a BlockLayout>,
    /// The paged pool holds half floats (uploaded rounded and packed, as a pool of
    /// `kv_cache_dtype` float16 holds them).
    pub half: bool,
}

impl<'a> HostAttention<'a> {
    /// Causal multi-head attention of `nh` heads over width `c` within `qkv`.
    pub fn new(qkv: &'a [f32], c: usize, nh: usize) -> Self {
        Self::with_heads(qkv, Heads::mha(c, nh))
    }

    /// Causal attention of `heads` (grouped-query, windowed) within `qkv`.
    pub fn with_heads(qkv: &'a [f32], heads: Heads) -> Self {
        HostAttention {
            qkv,
            heads,
            kv: None,
            pos: 0,
            paged: None,
            layout: None,
            half: false,
        }
    }

    /// Over keys and values in cache buffers `[rows, KV]`, queries at `pos ..`.
    pub fn cached(self, k: &'a [f32], v: &'a [f32], pos: usize) -> Self {
        HostAttention {
            kv: Some((k, v)),
            pos,
            ..self
        }
    }

    /// Over a paged pool `[pool rows, KV]` with pages of `page` positions listed in
    /// `table`, queries at `pos ..`.
    pub fn paged(
        self,
        k: &'a [f32],
        v: &'a [f32],
        table: &'a [u32],
        page: usize,
        pos: usize,
    ) -> Self {
        HostAttention {
            paged: Some((table, page)),
            ..self.cached(k, v, pos)
        }
    }

    /// The paged pool as half floats (or not).
    pub fn half(self, half: bool) -> Self {
        HostAttention { half, ..self }
    }

    /// Upload a key or value pool as the kernels read it: f32, or packed half floats.
    fn upload_pool(&self, ctx: &GpuContext, label: &str, pool: &[f32]) -> wgpu::Buffer {
        if self.half && self.paged.is_some() {
            buffers::upload(ctx, label, &crate::gpu::f16::pack_f16(pool))
        } else {
            buffers::upload(ctx, label, pool)
        }
    }

    /// With a block-sparse layout (a `sparse_attention` variant), or dense (`None`).
    pub fn layout(self, layout: Option<&'a BlockLayout>) -> Self {
        HostAttention { layout, ..self }
    }

    fn t(&self) -> usize {
        self.qkv.len() / self.heads.qkv_width()
    }

    pub(super) fn block(&self) -> usize {
        self.layout.map_or(0, |l| l.block)
    }
}

/// Upload `h`, run `variant` (a kernel of op `attention` or `sparse_attention`), read
/// back `(out[T, Q], entropy[NH, T])`.
pub fn run_attention(
    ctx: &GpuContext,
    pipelines: &Pipelines,
    variant: &'static str,
    h: &HostAttention,
) -> Result<(Vec<f32>, Vec<f32>)> {
    let (t, heads) = (h.t(), h.heads);
    let (c, nh) = (heads.q_width(), heads.nh);
    let q = buffers::upload(ctx, "qkv", h.qkv);
    let (k, v) = match h.kv {
        Some((k, v)) => (h.upload_pool(ctx, "k", k), h.upload_pool(ctx, "v", v)),
        None => (q.clone(), q.clone()),
    };
    let tables = match h.paged {
        Some((table, _)) => buffers::upload(ctx, "tables", bytemuck::cast_slice(table)),
        None => buffers::storage(ctx, "tables", 1),
    };
    let sparse = h.layout.map(|l| upload_layout(ctx, l));
    let out = buffers::storage(ctx, "out", t * c);
    let entropy = buffers::storage(ctx, "entropy", nh * t);
    let bufs = AttentionBuffers {
        qkv: &q,
        k: &k,
        v: &v,
        out: &out,
        entropy: &entropy,
        tables: &tables,
        sparse: sparse.as_ref().map(|(r, c)| (r, c)),
        half: h.half && h.paged.is_some(),
        head_size: heads.hs,
    };
    let op = attention_op(ctx, pipelines, variant, &bufs);
    let kv = match (h.kv, h.paged) {
        (_, Some((_, page))) => KvLayout::paged(heads, h.pos, page),
        (Some(_), None) => KvLayout::cache(heads, h.pos),
        (None, None) => KvLayout::fused(heads),
    };
    submit_pass(ctx, op.name, |pass| {
        encode_attention(pass, &op, t, heads, kv, h.block())
    })?;
    let mut r = buffers::read_many(ctx, &[(&out, 0, t * c), (&entropy, 0, nh * t)])?;
    let e = r.pop().unwrap_or_default();
    let o = r.pop().unwrap_or_default();
    Ok((o, e))
}

/// The buffers a paged (generation) attention kernel binds after its parameters:
/// queries `qkv [T, Q + 2 KV]`, the layer's pools `[pool rows, KV]`, out `[T, Q]`, per-row
/// `(table offset, position)` pairs, the page tables, and the sparse layout's CSR
/// (`row_offsets`, `cols`; any buffer when dense).
pub struct PagedBuffers<'a> {
    pub qkv: &'a wgpu::Buffer,
    pub k_pool: &'a wgpu::Buffer,
    pub v_pool: &'a wgpu::Buffer,
    pub out: &'a wgpu::Buffer,
    pub rows: &'a wgpu::Buffer,
    pub tables: &'a wgpu::Buffer,
    pub row_offsets: &'a wgpu::Buffer,
    pub cols: &'a wgpu::Buffer,
    /// The pools hold half floats (the kernel compiled with `KV_HALF`).
    pub half: bool,
    /// The head size it attends over (past 128, the kernel's wide pipeline).
    pub head_size: usize,
}

impl PagedBuffers<'_> {
    /// The buffers in binding order (1 ..).
    pub fn bindings(&self) -> [&wgpu::Buffer; 8] {
        [
            self.qkv,
            self.k_pool,
            self.v_pool,
            self.out,
            self.rows,
            self.tables,
            self.row_offsets,
            self.cols,
        ]
    }
}

/// Op of a paged kernel (`variant` of op `attention_paged`).
pub fn attention_paged_op(
    ctx: &GpuContext,
    pipelines: &Pipelines,
    variant: &'static str,
    b: &PagedBuffers,
) -> KernelOp {
    KernelOp::with_spec::<AttentionParams>(
        ctx,
        pipelines,
        variant,
        Spec::reader(b.half).heads(b.head_size),
        &b.bindings(),
    )
}

/// Record attention of `t` rows of `heads` over the paged pool with pages of `page`
/// positions; `block` is the sparse layout's block size, 0 when dense.
pub fn encode_attention_paged(
    pass: &mut wgpu::ComputePass<'_>,
    op: &KernelOp,
    t: usize,
    heads: Heads,
    page: usize,
    block: usize,
) {
    let p = AttentionParams::new(t, heads, KvLayout::paged(heads, 0, page), block);
    // the portable kernel takes a row a lane, its twins (subgroup, workgroup) a row a
    // workgroup
    let per_workgroup = op.kernel.name != op.kernel.op;
    let gx = if per_workgroup {
        t
    } else {
        t.div_ceil(op.workgroup as usize)
    };
    op.encode(pass, &p, (gx as u32, heads.nh as u32, 1));
}

/// Upload, run the paged kernel `variant`, read back `out[T, Q]`: one query row of
/// `h.qkv` per entry of `rows` (`(table offset, position)`), keys and values in
/// `h`'s paged pool (its table holding every row's pages), `h`'s optional layout.
pub fn run_attention_paged(
    ctx: &GpuContext,
    pipelines: &Pipelines,
    variant: &'static str,
    h: &HostAttention,
    rows: &[[u32; 2]],
) -> Result<Vec<f32>> {
    let (t, c) = (rows.len(), h.heads.q_width());
    let up = PagedUpload::new(ctx, h, rows, t * c)?;
    let op = attention_paged_op(ctx, pipelines, variant, &up.buffers());
    submit_pass(ctx, op.name, |pass| {
        encode_attention_paged(pass, &op, t, h.heads, up.page, h.block())
    })?;
    buffers::read_floats(ctx, &up.out, 0, t * c)
}

/// The device copies of a paged attention's host data (`run_attention_paged` and the
/// kernels reading the same bindings), `out` of `out_floats`.
pub(super) struct PagedUpload {
    q: wgpu::Buffer,
    k: wgpu::Buffer,
    v: wgpu::Buffer,
    rows: wgpu::Buffer,
    tables: wgpu::Buffer,
    row_offsets: wgpu::Buffer,
    cols: wgpu::Buffer,
    pub out: wgpu::Buffer,
    pub page: usize,
    half: bool,
    head_size: usize,
}

impl PagedUpload {
    /// Upload `h` (which must hold a paged pool) and `rows` (`(table offset,
    /// position)` per query row).
    pub(super) fn new(
        ctx: &GpuContext,
        h: &HostAttention,
        rows: &[[u32; 2]],
        out_floats: usize,
    ) -> Result<Self> {
        let ((k_pool, v_pool), (tables, page)) = match (h.kv, h.paged) {
            (Some(kv), Some(paged)) => (kv, paged),
            _ => {
                return Err(crate::error::Error::InvalidInput(
                    "a paged attention kernel needs a paged pool (HostAttention::paged)".into(),
                ))
            }
        };
        let (row_offsets, cols) = match h.layout {
            Some(l) => upload_layout(ctx, l),
            None => (
                buffers::storage(ctx, "row_offsets", 4),
                buffers::storage(ctx, "cols", 4),
            ),
        };
        Ok(PagedUpload {
            q: buffers::upload(ctx, "qkv", h.qkv),
            k: h.upload_pool(ctx, "k_pool", k_pool),
            v: h.upload_pool(ctx, "v_pool", v_pool),
            rows: buffers::upload(ctx, "rows", bytemuck::cast_slice(rows)),
            tables: buffers::upload(ctx, "tables", bytemuck::cast_slice(tables)),
            row_offsets,
            cols,
            out: buffers::storage(ctx, "out", out_floats),
            page,
            half: h.half,
            head_size: h.heads.hs,
        })
    }

    pub(super) fn buffers(&self) -> PagedBuffers<'_> {
        PagedBuffers {
            qkv: &self.q,
            k_pool: &self.k,
            v_pool: &self.v,
            out: &self.out,
            rows: &self.rows,
            tables: &self.tables,
            row_offsets: &self.row_offsets,
            cols: &self.cols,
            half: self.half,
            head_size: self.head_size,
        }
    }
}

/// Op of `attention_weights`: a forward's `qkv [T, Q + 2 KV]`, the weights buffer (each
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

/// Record the attention weights of a forward of `t` tokens of `heads` (keys in its
/// fused qkv) to floats `w0 ..` of the op's weights buffer; `block` the sparse block
/// size, 0 dense.
pub fn encode_attention_weights(
    pass: &mut wgpu::ComputePass<'_>,
    op: &KernelOp,
    t: usize,
    heads: Heads,
    block: usize,
    w0: usize,
) {
    let p = AttentionParams {
        w0: w0 as u32,
        ..AttentionParams::new(t, heads, KvLayout::fused(heads), block)
    };
    let gx = t.div_ceil(op.workgroup as usize) as u32;
    op.encode(pass, &p, (gx, heads.nh as u32, 1));
}

/// Upload `qkv [T, Q + 2 KV]`, run `attention_weights`, read back `[NH, T, T]`.
pub fn run_attention_weights(
    ctx: &GpuContext,
    pipelines: &Pipelines,
    qkv: &[f32],
    heads: Heads,
    layout: Option<&BlockLayout>,
) -> Result<Vec<f32>> {
    let (t, nh) = (qkv.len() / heads.qkv_width(), heads.nh);
    let q = buffers::upload(ctx, "qkv", qkv);
    let w = buffers::storage(ctx, "attention weights", nh * t * t);
    let none = buffers::storage(ctx, "tables", 1);
    let (ro, cols) = match layout {
        Some(l) => upload_layout(ctx, l),
        None => (
            buffers::storage(ctx, "row_offsets", 4),
            buffers::storage(ctx, "cols", 4),
        ),
    };
    let op = attention_weights_op(ctx, pipelines, &q, &w, &ro, &cols, &none);
    let block = layout.map_or(0, |l| l.block);
    submit_pass(ctx, op.name, |pass| {
        encode_attention_weights(pass, &op, t, heads, block, 0)
    })?;
    buffers::read_floats(ctx, &w, 0, nh * t * t)
}
