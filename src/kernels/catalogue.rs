//! The kernel catalogue: every kernel as typed data (its WGSL body, the preludes
//! prepended to it, the op it implements, its adapter class, weight precision and
//! workgroup size). The pipelines, the model's variant choice, the tests and the bench
//! all read this one table.

/// Which adapters a kernel is shaped for (design.md, 12).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum KernelClass {
    /// Serves every adapter (no GPU-shaped twin yet).
    Any,
    /// Shaped for software adapters (lavapipe: one invocation walks a row, no
    /// barriers); a hardware twin exists.
    Software,
    /// Shaped for hardware GPUs (workgroup reductions, coalesced loads).
    Hardware,
}

/// How a kernel reads its weights.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Precision {
    F32,
    /// Packed IEEE half floats (`dtype: "float16"`).
    F16,
}

/// The workgroup size a kernel is compiled with (its `WG` override).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Workgroup {
    /// [`crate::gpu::WORKGROUP`].
    Standard,
    /// One subgroup (the subgroup matrix-vector kernels: their rows are few, so on a
    /// CPU adapter smaller workgroups spread a one-token step over more cores).
    Subgroup,
    /// A fixed size (the workgroup-reduction kernels).
    Fixed(u32),
}

/// One compiled kernel: its WGSL body, the preludes prepended to it, and what it needs.
#[derive(Clone, Copy, Debug)]
pub struct Kernel {
    /// The pipeline's key; variant names are what the model code selects.
    pub name: &'static str,
    /// The op it implements (the portable variant's name): its CPU reference and
    /// golden tests are the op's.
    pub op: &'static str,
    /// Entry point in `body`, named after the op or the technique.
    pub entry: &'static str,
    pub body: &'static str,
    /// Files of `shaders/lib/` prepended at pipeline creation, in order (after the
    /// weights prelude of a kernel with [`Kernel::typed_weights`]).
    pub preludes: &'static [Prelude],
    /// More preludes after those: what a variant adds to a shared list.
    pub extra: &'static [Prelude],
    /// Reads its weights through `load_w` / `load_w4`: prelude `weights_f32` or
    /// `weights_f16` by its [`Precision`] comes first ([`Kernel::all_preludes`]).
    pub typed_weights: bool,
    /// Needs the SUBGROUP feature (subgroups of at least 8 lanes).
    pub subgroups: bool,
    /// Needs cooperative matrices (16×16×16, f16 inputs, f32 accumulators) and f16 in
    /// shaders ([`crate::gpu::GpuContext::cooperative_matrix`]).
    pub cooperative: bool,
    pub class: KernelClass,
    pub precision: Precision,
    pub workgroup: Workgroup,
    /// Declares `override ROWS` (rows of a decode batch per invocation): compiled once
    /// per value of [`BATCH_ROWS`].
    pub batch_rows: bool,
    /// An attention kernel whose workgroup takes the query heads of one key/value head
    /// together, so that each key and value is loaded once for its group: the grid is
    /// blocks of `workgroup / G` queries × NKV (G = NH / NKV), not blocks of
    /// `workgroup` queries × NH.
    pub kv_grouped: bool,
}

/// The `ROWS` values the decode-batch kernels are compiled with: a batch of R rows is
/// dispatched as groups of 8, then 4, then single rows (each row computed by the same
/// expression in every variant).
pub const BATCH_ROWS: [u32; 3] = [8, 4, 1];

/// The most storage buffers a kernel of the catalogue binds (`tests/it/shaders.rs`
/// counts them): what an adapter must allow a shader stage for the service to start
/// on it (the GL drivers' usual 16; Vulkan and Metal GPUs allow more).
pub const MAX_STORAGE_BINDINGS: u32 = 16;

impl Kernel {
    const fn new(name: &'static str, body: &'static str) -> Kernel {
        Kernel {
            name,
            op: name,
            entry: name,
            body,
            preludes: &[],
            extra: &[],
            typed_weights: false,
            subgroups: false,
            cooperative: false,
            class: KernelClass::Any,
            precision: Precision::F32,
            workgroup: Workgroup::Standard,
            batch_rows: false,
            kv_grouped: false,
        }
    }
    /// Takes a key/value head's query heads together ([`Kernel::kv_grouped`]).
    const fn kv_grouped(mut self) -> Kernel {
        self.kv_grouped = true;
        self
    }
    /// Compiled for each of [`BATCH_ROWS`] (`override ROWS`).
    const fn batch(mut self) -> Kernel {
        self.batch_rows = true;
        self
    }
    /// A variant of `op`.
    const fn of(mut self, op: &'static str) -> Kernel {
        self.op = op;
        self
    }
    const fn entry(mut self, entry: &'static str) -> Kernel {
        self.entry = entry;
        self
    }
    const fn with(mut self, preludes: &'static [Prelude]) -> Kernel {
        self.preludes = preludes;
        self
    }
    /// `preludes` after [`Kernel::preludes`] (a variant's own).
    const fn and(mut self, preludes: &'static [Prelude]) -> Kernel {
        self.extra = preludes;
        self
    }
    /// The same kernel under another name (a variant differing in its preludes).
    const fn rename(mut self, name: &'static str) -> Kernel {
        self.name = name;
        self
    }
    /// Reads its weights through the weights prelude of its precision.
    const fn weights(mut self) -> Kernel {
        self.typed_weights = true;
        self
    }
    /// The half-float twin of an f32 kernel with typed weights: the same file, entry,
    /// op and preludes, named `name`, reading packed half floats.
    const fn f16_twin(mut self, name: &'static str) -> Kernel {
        assert!(self.typed_weights && matches!(self.precision, Precision::F32));
        self.name = name;
        self.precision = Precision::F16;
        self
    }
    /// A subgroup variant (implies the feature).
    const fn subgroup(mut self) -> Kernel {
        self.subgroups = true;
        self
    }
    const fn cooperative(mut self) -> Kernel {
        self.cooperative = true;
        self
    }
    const fn class(mut self, class: KernelClass) -> Kernel {
        self.class = class;
        self
    }
    const fn half(mut self) -> Kernel {
        self.precision = Precision::F16;
        self
    }
    const fn workgroup(mut self, w: Workgroup) -> Kernel {
        self.workgroup = w;
        self
    }

    /// The preludes prepended to the body, in order: the weights prelude of its
    /// precision (a kernel with typed weights), [`Kernel::preludes`], then
    /// [`Kernel::extra`].
    pub fn all_preludes(&self) -> impl Iterator<Item = &'static Prelude> {
        let weights = match self.precision {
            Precision::F32 => &prelude::WEIGHTS_F32,
            Precision::F16 => &prelude::WEIGHTS_F16,
        };
        self.typed_weights
            .then_some(weights)
            .into_iter()
            .chain(self.preludes)
            .chain(self.extra)
    }

    /// Whether the kernel attends over heads (prelude `attention`): it has wide
    /// pipelines too, for heads of more than [`NARROW_HEAD_SIZE`].
    pub fn attends(&self) -> bool {
        self.all_preludes().any(|p| p.name == "attention")
    }

    /// [`Kernel::source`] for heads of up to [`crate::config::MAX_HEAD_SIZE`]: the
    /// `attention` prelude's bound `MAX_HS4` raised from 32 to 64 (each size that
    /// derives from it with it), every other line the same, so the pipelines of
    /// narrower heads stay as they are.
    pub fn wide_source(&self) -> String {
        const NARROW: &str = "const MAX_HS4: u32 = 32u;";
        let s = self.source();
        assert!(s.contains(NARROW), "{}: no MAX_HS4 to widen", self.name);
        s.replace(NARROW, "const MAX_HS4: u32 = 64u;")
    }

    /// The source handed to the compiler: the body's `enable` directives (WGSL wants
    /// them first), the preludes, then the rest of the body.
    pub fn source(&self) -> String {
        let is_enable = |l: &&str| l.trim_start().starts_with("enable ");
        let mut s = String::new();
        for l in self.body.lines().filter(is_enable) {
            s.push_str(l);
            s.push('\n');
        }
        for p in self.all_preludes() {
            s.push_str(p.source);
            s.push('\n');
        }
        for l in self.body.lines().filter(|l| !is_enable(l)) {
            s.push_str(l);
            s.push('\n');
        }
        s
    }
}

/// A shared piece of WGSL in `shaders/lib/`, prepended to the kernels that name it.
/// Named by a constant (not a string), so a misspelt prelude does not compile.
#[derive(Clone, Copy, Debug)]
pub struct Prelude {
    /// The file's stem in `shaders/lib/`.
    pub name: &'static str,
    pub source: &'static str,
}

macro_rules! preludes {
    ($($(#[$doc:meta])* $konst:ident = $file:literal;)*) => {
        $($(#[$doc])* pub const $konst: Prelude = Prelude {
            name: $file,
            source: include_str!(concat!("../../shaders/lib/", $file, ".wgsl")),
        };)*
        /// Every prelude (`shaders/lib/` holds exactly these files).
        pub const ALL: &[Prelude] = &[$($konst),*];
    };
}

/// The largest head the attention kernels' narrow pipelines take (prelude `attention`'s
/// `MAX_HS4` of 32 vec4s); wider heads take the wide ones ([`Kernel::wide_source`]).
pub const NARROW_HEAD_SIZE: usize = 128;

/// The preludes, by name: `prelude::GELU`, `prelude::ATTENTION`, ...
pub mod prelude {
    use super::Prelude;

    preludes! {
        /// The activations: GELU (tanh approximation, as GPT-2 computes it), SiLU and
        /// SwiGLU's gating.
        GELU = "gelu";
        /// How an f32 weight is loaded (`load_w`, `load_w4`).
        WEIGHTS_F32 = "weights_f32";
        /// How a packed half-float weight is loaded.
        WEIGHTS_F16 = "weights_f16";
        /// `AttentionParams`, the KV layouts, the online softmax.
        ATTENTION = "attention";
        /// The tiled (hardware) attention kernels' shared tiles.
        ATTENTION_TILES = "attention_tiles";
        /// `MatmulParams`.
        MATMUL_PARAMS = "matmul_params";
        /// `MatvecParams` and `store_row`.
        MATVEC_PARAMS = "matvec_params";
        /// `MatvecBtParams` and `store4`.
        MATVEC_BT_PARAMS = "matvec_bt_params";
        /// `LayerNormParams`.
        LAYER_NORM_PARAMS = "layer_norm_params";
        /// The matmul epilogue: bias, activation, accumulate, the KV store.
        EPILOGUE = "epilogue";
        /// Stores to the paged KV pool: f32, or half floats (`put_key`, `put_value`).
        KV_WRITE = "kv_write";
        /// The attention kernels' key and value loads: f32, or the pool's half floats.
        KV_READ = "kv_read";
        /// Sums and maxima across a workgroup.
        WORKGROUP_REDUCE = "workgroup_reduce";
        /// The flags of a norm folded into the kernel after it.
        NORM_FLAGS = "norm_flags";
        /// A row normalised with its statistics (`norm4`: the matrix-vector kernels).
        NORM_APPLY = "norm_apply";
        /// The norm folded into the tile matmuls by linearity (`norm_fold`, `stats_at`).
        NORM_FOLD = "norm_fold";
        /// A row's norm statistics across a workgroup (`row_stats`: the hardware
        /// norm kernel and every norm prologue).
        ROW_STATS = "row_stats";
        /// The folded norm's statistics by its flags (`norm_stats`: the hardware
        /// matrix-vector kernels).
        NORM_PROLOGUE = "norm_prologue";
        /// How the tile matmuls stage `a`: for a folded norm (`row_shift`, the sums of
        /// `row_lanes_sum`) or gated.
        STAGE_TILE = "stage_tile";
        /// The paged attention kernels' walk bindings (rows, tables, row offsets, cols).
        PAGED_WALK = "paged_walk";
        /// A head-64 query held in sixteen vec4 variables (the subgroup attention kernels).
        QUERY64 = "query64";
        /// The subgroup walk over keys of the forward's head-64 attention kernels.
        KEYS64 = "keys64";
        /// 16 rows × a vec4 of columns by subgroup broadcasts (the subgroup matmuls).
        TILE16_SUBGROUP = "tile16_subgroup";
        /// That tile's weights in column panels (`matmul`'s layout).
        TILE16_PANELS = "tile16_panels";
        /// The grouped expert matmuls' params, bindings, row sources and store.
        MOE_MATMUL = "moe_matmul";
        /// `matvec_splitk`'s row read from x as it is (`x_begin`, `x_at`).
        MATVEC_X = "matvec_x";
        /// The residual stream with deferred partial rows (`residual_at`).
        RESIDUAL_PARTS = "residual_parts";
        /// Its base rows from `x` (`residual_base`).
        RESIDUAL_X = "residual_x";
        /// Its base rows from the embedding (the first block of a decode step).
        RESIDUAL_EMBED = "residual_embed";
        /// Where a row of wte starts in its row groups (`row_base`, `col_step`).
        ROW_GROUPS = "row_groups";
        /// The residual stream's row staged and normalised in workgroup memory.
        STAGE_X = "stage_x";
        /// A query row's attention of one head by one invocation (the software
        /// kernels: `row_start`, `row_key`, `row_finish`).
        ATTEND_ROW = "attend_row";
        /// A decode row's attention of one head by a workgroup (`attend`).
        ATTEND_WORKGROUP = "attend_workgroup";
        /// The split-K sum of the hardware matrix-vector kernels (`sum_groups`).
        SPLITK_REDUCE = "splitk_reduce";
        /// `MoeGateParams` and a token's softmax and top-k over its router logits
        /// (`choose_experts`).
        MOE_TOPK = "moe_topk";
    }
}

macro_rules! wgsl {
    ($file:literal) => {
        include_str!(concat!("../../shaders/", $file, ".wgsl"))
    };
}

// The lists below leave out the weight type: a kernel marked `.weights()` gets prelude
// `weights_f32` or `weights_f16` by its precision (`Kernel::all_preludes`).
const MATMUL: &[Prelude] = &[
    prelude::MATMUL_PARAMS,
    prelude::GELU,
    prelude::EPILOGUE,
    prelude::KV_WRITE,
];
// the tiled (hardware) matmuls: the norm before the projection folded into the staging
const MATMUL_TILED: &[Prelude] = &[
    prelude::MATMUL_PARAMS,
    prelude::GELU,
    prelude::EPILOGUE,
    prelude::KV_WRITE,
    prelude::NORM_FLAGS,
    prelude::NORM_FOLD,
    prelude::STAGE_TILE,
];
const MATVEC: &[Prelude] = &[
    prelude::MATVEC_PARAMS,
    prelude::GELU,
    prelude::EPILOGUE,
    prelude::KV_WRITE,
];
// the hardware matrix-vector kernels: their norm prologue reduces across the workgroup
const MATVEC_SPLITK: &[Prelude] = &[
    prelude::MATVEC_PARAMS,
    prelude::GELU,
    prelude::EPILOGUE,
    prelude::KV_WRITE,
    prelude::WORKGROUP_REDUCE,
    prelude::NORM_FLAGS,
    prelude::NORM_APPLY,
    prelude::ROW_STATS,
    prelude::NORM_PROLOGUE,
    prelude::SPLITK_REDUCE,
];
// where the split-K kernels' row comes from (`.and`): x as it is, or the residual
// stream with deferred partial rows staged, its base rows from x or (the first
// block's) from the embedding
const X_AS_IT_IS: &[Prelude] = &[prelude::MATVEC_X];
const X_STAGED: &[Prelude] = &[
    prelude::RESIDUAL_PARTS,
    prelude::STAGE_X,
    prelude::RESIDUAL_X,
];
const EMBEDDING_STAGED: &[Prelude] = &[
    prelude::RESIDUAL_PARTS,
    prelude::STAGE_X,
    prelude::RESIDUAL_EMBED,
    prelude::ROW_GROUPS,
];
// the whole MLP of a decode row, its residual add deferred
const MLP_PARTIAL: &[Prelude] = &[
    prelude::GELU,
    prelude::WORKGROUP_REDUCE,
    prelude::NORM_FLAGS,
    prelude::NORM_APPLY,
    prelude::ROW_STATS,
    prelude::NORM_PROLOGUE,
    prelude::RESIDUAL_PARTS,
    prelude::RESIDUAL_X,
    prelude::STAGE_X,
    prelude::SPLITK_REDUCE,
];
// the hardware LM head: row groups of wte, the final norm folded in
const MATVEC_BT_GROUPS: &[Prelude] = &[
    prelude::MATVEC_BT_PARAMS,
    prelude::WORKGROUP_REDUCE,
    prelude::NORM_FLAGS,
    prelude::NORM_APPLY,
    prelude::ROW_STATS,
    prelude::NORM_PROLOGUE,
];
const MATVEC_BT: &[Prelude] = &[prelude::MATVEC_BT_PARAMS, prelude::ROW_GROUPS];
// the matmul kernels without a weight type: tensor cores, the split-K sum
const MATMUL_UNTYPED: &[Prelude] = &[
    prelude::MATMUL_PARAMS,
    prelude::GELU,
    prelude::EPILOGUE,
    prelude::KV_WRITE,
    prelude::NORM_FLAGS,
    prelude::NORM_FOLD,
];
const MATMUL_COOP: &[Prelude] = &[
    prelude::MATMUL_PARAMS,
    prelude::GELU,
    prelude::EPILOGUE,
    prelude::KV_WRITE,
    prelude::NORM_FLAGS,
    prelude::NORM_FOLD,
    prelude::STAGE_TILE,
];
const LAYER_NORM: &[Prelude] = &[prelude::LAYER_NORM_PARAMS];
const LAYER_NORM_WG: &[Prelude] = &[
    prelude::LAYER_NORM_PARAMS,
    prelude::WORKGROUP_REDUCE,
    prelude::ROW_STATS,
];
// the attention kernels reading keys and values (`k`, `v`), and attention_weights
const ATTENTION: &[Prelude] = &[prelude::ATTENTION, prelude::KV_READ, prelude::ATTEND_ROW];
const ATTENTION_WEIGHTS: &[Prelude] = &[prelude::ATTENTION];
const ATTENTION_TILES: &[Prelude] = &[
    prelude::ATTENTION,
    prelude::KV_READ,
    prelude::ATTENTION_TILES,
];
// the paged (generation) attention kernels: which keys a row walks
const ATTENTION_PAGED: &[Prelude] = &[
    prelude::ATTENTION,
    prelude::KV_READ,
    prelude::PAGED_WALK,
    prelude::ATTEND_ROW,
];
// the same by a workgroup, and with the output projection's partial rows (`.weights()`)
const ATTENTION_PAGED_WG: &[Prelude] = &[
    prelude::ATTENTION,
    prelude::KV_READ,
    prelude::PAGED_WALK,
    prelude::WORKGROUP_REDUCE,
    prelude::ATTEND_WORKGROUP,
];
// the subgroup kernels (head size 64): their query in separate variables
const ATTENTION_SUBGROUP: &[Prelude] = &[
    prelude::ATTENTION,
    prelude::KV_READ,
    prelude::QUERY64,
    prelude::KEYS64,
];
const ATTENTION_PAGED_SUBGROUP: &[Prelude] = &[
    prelude::ATTENTION,
    prelude::KV_READ,
    prelude::PAGED_WALK,
    prelude::QUERY64,
];
const REDUCE: &[Prelude] = &[prelude::WORKGROUP_REDUCE];
const MATMUL_SUBGROUP: &[Prelude] = &[
    prelude::MATMUL_PARAMS,
    prelude::GELU,
    prelude::EPILOGUE,
    prelude::KV_WRITE,
    prelude::TILE16_SUBGROUP,
    prelude::TILE16_PANELS,
];
const MOE_MATMUL: &[Prelude] = &[prelude::GELU, prelude::MOE_MATMUL];
// the gate with the norm before it and the router (hardware: a workgroup a token)
const MOE_NORM_GATE: &[Prelude] = &[
    prelude::MOE_TOPK,
    prelude::WORKGROUP_REDUCE,
    prelude::NORM_FLAGS,
    prelude::NORM_APPLY,
    prelude::ROW_STATS,
    prelude::NORM_PROLOGUE,
];
const MOE_MATMUL_SUBGROUP: &[Prelude] = &[
    prelude::GELU,
    prelude::MOE_MATMUL,
    prelude::TILE16_SUBGROUP,
    prelude::TILE16_PANELS,
];
use KernelClass::{Hardware, Software};

// The f32 kernels whose half-float twin shares their file, entry and preludes
// (`Kernel::f16_twin`).
const EMBEDDING_K: Kernel = Kernel::new("embedding", wgsl!("embedding"))
    .with(&[prelude::ROW_GROUPS])
    .weights();
const MATMUL_K: Kernel = Kernel::new("matmul", wgsl!("matmul"))
    .with(MATMUL)
    .weights();
const MATMUL_SUBGROUP_K: Kernel = Kernel::new("matmul_subgroup", wgsl!("matmul_subgroup"))
    .with(MATMUL_SUBGROUP)
    .weights()
    .of("matmul")
    .subgroup();
const MATMUL_TILED_K: Kernel = Kernel::new("matmul_tiled", wgsl!("matmul_tiled"))
    .with(MATMUL_TILED)
    .weights()
    .of("matmul")
    .class(Hardware)
    .workgroup(Workgroup::Fixed(256));
const MATMUL_BT_K: Kernel = Kernel::new("matmul_bt", wgsl!("matmul_bt"))
    .with(&[prelude::ROW_GROUPS])
    .weights();
const MATMUL_BT_SUBGROUP_K: Kernel = Kernel::new("matmul_bt_subgroup", wgsl!("matmul_bt_subgroup"))
    .of("matmul_bt")
    .with(&[prelude::TILE16_SUBGROUP, prelude::ROW_GROUPS])
    .weights()
    .subgroup();
const MATVEC_K: Kernel = Kernel::new("matvec", wgsl!("matvec"))
    .with(MATVEC)
    .weights()
    .class(Software)
    .batch();
const MATVEC_SPLITK_K: Kernel = Kernel::new("matvec_splitk", wgsl!("matvec_splitk"))
    .with(MATVEC_SPLITK)
    .and(X_AS_IT_IS)
    .weights()
    .of("matvec")
    .class(Hardware)
    .workgroup(Workgroup::Fixed(256));
const MATVEC_STAGED_K: Kernel = Kernel::new("matvec_staged", wgsl!("matvec_splitk"))
    .with(MATVEC_SPLITK)
    .and(X_STAGED)
    .weights()
    .entry("matvec_splitk")
    .class(Hardware)
    .workgroup(Workgroup::Fixed(256));
const MATVEC_EMBED_STAGED_K: Kernel = MATVEC_STAGED_K
    .rename("matvec_embed_staged")
    .and(EMBEDDING_STAGED)
    .of("matvec_staged");
const MLP_PARTIAL_K: Kernel = Kernel::new("mlp_partial", wgsl!("mlp_partial"))
    .with(MLP_PARTIAL)
    .weights()
    .class(Hardware)
    .workgroup(Workgroup::Fixed(256));
const MATVEC_BT_K: Kernel = Kernel::new("matvec_bt", wgsl!("matvec_bt"))
    .with(MATVEC_BT)
    .weights()
    .class(Software)
    .batch();
const MATVEC_BT_GROUPS_K: Kernel = Kernel::new("matvec_bt_groups", wgsl!("matvec_bt_groups"))
    .of("matvec_bt")
    .with(MATVEC_BT_GROUPS)
    .weights()
    .class(Hardware)
    .workgroup(Workgroup::Fixed(256));
const ATTENTION_PROJ_K: Kernel = Kernel::new("attention_proj", wgsl!("attention_proj"))
    .with(ATTENTION_PAGED_WG)
    .weights()
    .class(Hardware)
    .workgroup(Workgroup::Fixed(64));
const MOE_MATMUL_K: Kernel = Kernel::new("moe_matmul", wgsl!("moe_matmul"))
    .with(MOE_MATMUL)
    .weights();
const MOE_MATMUL_SUBGROUP_K: Kernel =
    Kernel::new("moe_matmul_subgroup", wgsl!("moe_matmul_subgroup"))
        .of("moe_matmul")
        .with(MOE_MATMUL_SUBGROUP)
        .weights()
        .subgroup();

/// Every kernel: the typed table the pipelines, the model's variant choice, the tests
/// and the bench read (one op per WGSL file; variants that differ only in the weight
/// type share the file and differ in their weights prelude).
pub const KERNELS: &[Kernel] = &[
    EMBEDDING_K,
    EMBEDDING_K.f16_twin("embedding_f16"),
    Kernel::new("layer_norm", wgsl!("layer_norm"))
        .with(LAYER_NORM)
        .class(Software),
    Kernel::new("layer_norm_workgroup", wgsl!("layer_norm_workgroup"))
        .with(LAYER_NORM_WG)
        .of("layer_norm")
        .class(Hardware)
        .workgroup(Workgroup::Fixed(256)),
    MATMUL_K,
    MATMUL_SUBGROUP_K,
    MATMUL_K.f16_twin("matmul_f16"),
    MATMUL_SUBGROUP_K.f16_twin("matmul_f16_subgroup"),
    MATMUL_TILED_K,
    MATMUL_TILED_K.f16_twin("matmul_f16_tiled"),
    Kernel::new("matmul_split_sum", wgsl!("matmul_split_sum"))
        .with(MATMUL_UNTYPED)
        .class(Hardware),
    Kernel::new("matmul_coop", wgsl!("matmul_coop"))
        .with(MATMUL_COOP)
        .of("matmul")
        .class(Hardware)
        .half()
        .cooperative()
        .workgroup(Workgroup::Fixed(128)),
    MATMUL_BT_K,
    MATMUL_BT_SUBGROUP_K,
    MATMUL_BT_K.f16_twin("matmul_bt_f16"),
    MATMUL_BT_SUBGROUP_K.f16_twin("matmul_bt_f16_subgroup"),
    MATVEC_K,
    MATVEC_K.f16_twin("matvec_f16"),
    Kernel::new("matvec_f16_subgroup", wgsl!("matvec_f16_subgroup"))
        .with(MATVEC)
        .of("matvec")
        .subgroup()
        .class(Software)
        .half()
        .workgroup(Workgroup::Subgroup)
        .batch(),
    MATVEC_SPLITK_K,
    MATVEC_SPLITK_K.f16_twin("matvec_f16_splitk"),
    MATVEC_STAGED_K,
    MATVEC_STAGED_K.f16_twin("matvec_f16_staged"),
    MATVEC_EMBED_STAGED_K,
    MATVEC_EMBED_STAGED_K.f16_twin("matvec_f16_embed_staged"),
    MLP_PARTIAL_K,
    MLP_PARTIAL_K.f16_twin("mlp_partial_f16"),
    Kernel::new("residual_sum", wgsl!("residual_sum"))
        .with(&[prelude::RESIDUAL_PARTS, prelude::RESIDUAL_X]),
    MATVEC_BT_K,
    MATVEC_BT_K.f16_twin("matvec_bt_f16"),
    MATVEC_BT_GROUPS_K,
    MATVEC_BT_GROUPS_K.f16_twin("matvec_bt_f16_groups"),
    Kernel::new("matvec_bt_f16_subgroup", wgsl!("matvec_bt_f16_subgroup"))
        .of("matvec_bt")
        .with(&[prelude::MATVEC_BT_PARAMS])
        .class(Software)
        .batch()
        .subgroup()
        .half()
        .workgroup(Workgroup::Subgroup),
    Kernel::new("attention", wgsl!("attention")).with(ATTENTION),
    Kernel::new("attention_subgroup", wgsl!("attention_subgroup"))
        .with(ATTENTION_SUBGROUP)
        .of("attention")
        .subgroup(),
    Kernel::new("attention_tiled", wgsl!("attention_tiled"))
        .with(ATTENTION_TILES)
        .of("attention")
        .class(Hardware)
        .workgroup(Workgroup::Fixed(64))
        .kv_grouped(),
    Kernel::new("sparse_attention", wgsl!("sparse_attention")).with(ATTENTION),
    Kernel::new(
        "sparse_attention_subgroup",
        wgsl!("sparse_attention_subgroup"),
    )
    .with(ATTENTION_SUBGROUP)
    .of("sparse_attention")
    .subgroup(),
    Kernel::new("sparse_attention_tiled", wgsl!("sparse_attention_tiled"))
        .with(ATTENTION_TILES)
        .of("sparse_attention")
        .class(Hardware)
        .workgroup(Workgroup::Fixed(64))
        .kv_grouped(),
    Kernel::new("attention_paged", wgsl!("attention_paged"))
        .with(ATTENTION_PAGED)
        .class(Software),
    Kernel::new(
        "attention_paged_subgroup",
        wgsl!("attention_paged_subgroup"),
    )
    .with(ATTENTION_PAGED_SUBGROUP)
    .of("attention_paged")
    .class(Software)
    .subgroup()
    .workgroup(Workgroup::Subgroup),
    Kernel::new(
        "attention_paged_workgroup",
        wgsl!("attention_paged_workgroup"),
    )
    .with(ATTENTION_PAGED_WG)
    .of("attention_paged")
    .class(Hardware)
    .workgroup(Workgroup::Fixed(64)),
    ATTENTION_PROJ_K,
    ATTENTION_PROJ_K.f16_twin("attention_proj_f16"),
    Kernel::new("attention_weights", wgsl!("attention_weights")).with(ATTENTION_WEIGHTS),
    Kernel::new("kv_store", wgsl!("kv_store")),
    Kernel::new("head_norm", wgsl!("head_norm")).with(&[
        prelude::GELU,
        prelude::EPILOGUE,
        prelude::KV_WRITE,
    ]),
    Kernel::new("copy_rows", wgsl!("copy_rows")),
    Kernel::new("logit_cap", wgsl!("logit_cap")),
    Kernel::new("top_k_rows", wgsl!("top_k_rows"))
        .with(REDUCE)
        .workgroup(Workgroup::Fixed(64)),
    Kernel::new("token_target", wgsl!("token_target")),
    Kernel::new("token_rank", wgsl!("token_rank"))
        .with(REDUCE)
        .workgroup(Workgroup::Fixed(64)),
    Kernel::new("moe_gate", wgsl!("moe_gate")).with(&[prelude::MOE_TOPK]),
    Kernel::new("moe_norm_gate", wgsl!("moe_norm_gate"))
        .with(MOE_NORM_GATE)
        .class(Hardware)
        .workgroup(Workgroup::Fixed(256)),
    Kernel::new("moe_route", wgsl!("moe_route")).workgroup(Workgroup::Fixed(64)),
    MOE_MATMUL_K,
    MOE_MATMUL_SUBGROUP_K,
    MOE_MATMUL_K.f16_twin("moe_matmul_f16"),
    MOE_MATMUL_SUBGROUP_K.f16_twin("moe_matmul_f16_subgroup"),
    Kernel::new("moe_combine", wgsl!("moe_combine")),
    Kernel::new("row_norm", wgsl!("row_norm")),
    Kernel::new("sample_rows", wgsl!("sample_rows"))
        .with(&[prelude::WORKGROUP_REDUCE])
        .workgroup(Workgroup::Fixed(256)),
    Kernel::new("swiglu", wgsl!("swiglu")).with(&[prelude::GELU]),
];

/// The table entry of kernel `name`.
pub fn kernel(name: &str) -> Option<&'static Kernel> {
    KERNELS.iter().find(|k| k.name == name)
}

/// The composed source of kernel `name` (preludes, then its body).
pub fn shader_source(name: &str) -> Option<String> {
    kernel(name).map(Kernel::source)
}

/// The workgroup size `k` is compiled with on a device whose subgroups have at most
/// `subgroup_max` lanes.
pub fn workgroup_for(k: &Kernel, subgroup_max: u32) -> u32 {
    match k.workgroup {
        Workgroup::Standard => crate::gpu::WORKGROUP,
        Workgroup::Subgroup => subgroup_max.clamp(8, 256),
        Workgroup::Fixed(n) => n,
    }
}
