//! Every kernel's composed source (preludes + body) parses and validates with naga
//! (no GPU needed) and has its entry point, and its uniform struct has the size and
//! offsets of the Rust twin.

use naga::valid::{Capabilities, ValidationFlags, Validator};
use wgformer::kernels::catalogue::prelude;
use wgformer::kernels::KERNELS;
use wgformer::kernels::{
    attention, embedding, kv_store, layer_norm, logit_lens, matmul, matmul_bt, matvec, matvec_bt,
    moe, partials, row_norm, swiglu, token_rank,
};

fn module(name: &str) -> naga::Module {
    let src = wgformer::kernels::shader_source(name).unwrap();
    naga::front::wgsl::parse_str(&src)
        .unwrap_or_else(|e| panic!("{name}: {}", e.emit_to_string(&src)))
}

#[test]
fn every_kernel_fits_the_storage_bindings_the_service_asks_for() {
    // an adapter allowing MAX_STORAGE_BINDINGS storage buffers a stage (the GL drivers'
    // usual 16, lavapipe's GL included) compiles every kernel; the start-up refuses one
    // allowing fewer with that number (Pipelines::new)
    use wgformer::kernels::catalogue::MAX_STORAGE_BINDINGS;
    let mut most = (0, "");
    for k in KERNELS {
        let m = module(k.name);
        let storage = m
            .global_variables
            .iter()
            .filter(|(_, g)| matches!(g.space, naga::AddressSpace::Storage { .. }))
            .count() as u32;
        assert!(
            storage <= MAX_STORAGE_BINDINGS,
            "{} declares {storage} storage buffers",
            k.name
        );
        most = most.max((storage, k.name));
    }
    // the staged projection reading the embedding binds the most
    assert_eq!(most, (16, "matvec_f16_embed_staged"));
    // an adapter allowing fewer is refused with the numbers, before any kernel fails
    let mut ctx = wgformer::gpu::GpuContext::new(&crate::common::choice()).unwrap();
    ctx.limits.max_storage_buffers_per_shader_stage = MAX_STORAGE_BINDINGS - 1;
    let err = wgformer::kernels::Pipelines::new(&ctx)
        .err()
        .expect("refused");
    let text = err.to_string();
    assert!(
        text.contains("allows 15 storage buffers") && text.contains("up to 16"),
        "{text}"
    );
}

#[test]
fn every_shader_validates_and_names_its_entry_point() {
    for k in KERNELS {
        let (name, src) = (k.name, k.source());
        let m = module(name);
        Validator::new(ValidationFlags::all(), Capabilities::all())
            .validate(&m)
            .unwrap_or_else(|e| panic!("{name}: {}", e.emit_to_string(&src)));
        assert!(
            m.entry_points.iter().any(|e| e.name == k.entry),
            "{name}: no entry point named {}",
            k.entry
        );
        // a precision twin shares its body (and entry point) with the kernel it is named after
        assert!(
            k.entry == k.name
                || KERNELS
                    .iter()
                    .any(|o| o.name == k.entry && o.body == k.body),
            "{name}: entry point {} is named after neither the kernel nor its body's kernel",
            k.entry
        );
        assert!(
            m.overrides
                .iter()
                .any(|(_, o)| o.name.as_deref() == Some("WG")),
            "{name}: no WG override"
        );
    }
}

/// The bindings a kernel's shader declares, by number: (binding, name, storage access).
fn bindings(name: &str) -> Vec<(u32, String, String)> {
    let m = module(name);
    let mut b: Vec<_> = m
        .global_variables
        .iter()
        .filter_map(|(_, g)| {
            let r = g.binding.as_ref()?;
            Some((r.binding, g.name.clone()?, format!("{:?}", g.space)))
        })
        .collect();
    b.sort();
    b
}

#[test]
fn the_tensor_core_matmul_binds_as_the_tiled_kernel_does() {
    // The ops bind buffers by position (`KernelOp`), and `matmul_fused_op` gives the
    // tensor-core kernel the tiled kernel's list; lavapipe has no cooperative matrices,
    // so only the tiled kernel's list is exercised here: the two must declare the same
    // bindings, numbered 0.. without gaps.
    let tiled = bindings("matmul_f16_tiled");
    assert_eq!(bindings("matmul_coop"), tiled);
    assert!(
        tiled.iter().enumerate().all(|(i, b)| b.0 == i as u32),
        "{tiled:?}"
    );
    let names: Vec<&str> = tiled.iter().map(|b| b.1.as_str()).collect();
    assert!(names.ends_with(&["positions", "rope"]), "{names:?}");
}

#[test]
fn every_file_in_shaders_lib_is_a_prelude() {
    // a kernel names its preludes by constant (a typo does not compile); this checks
    // the other direction: no file in shaders/lib is left out of the table
    let dir = concat!(env!("CARGO_MANIFEST_DIR"), "/shaders/lib");
    let mut files: Vec<String> = std::fs::read_dir(dir)
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .filter_map(|n| n.strip_suffix(".wgsl").map(str::to_owned))
        .collect();
    files.sort();
    let mut table: Vec<String> = prelude::ALL.iter().map(|p| p.name.to_owned()).collect();
    table.sort();
    assert_eq!(files, table);
    for p in prelude::ALL {
        let used = KERNELS
            .iter()
            .any(|k| k.all_preludes().any(|q| q.name == p.name));
        assert!(used, "prelude {} is prepended to no kernel", p.name);
    }
}

/// (size, member offsets) of the struct named `ty` in shader `name`.
fn layout(name: &str, ty: &str) -> (u32, Vec<u32>) {
    let m = module(name);
    for (_, t) in m.types.iter() {
        if t.name.as_deref() == Some(ty) {
            if let naga::TypeInner::Struct { members, span } = &t.inner {
                return (*span, members.iter().map(|x| x.offset).collect());
            }
        }
    }
    panic!("{name}: struct {ty} not found");
}

macro_rules! check_twin {
    ($shader:expr, $ty:ident, $rust:ty, [$($field:ident),*]) => {{
        let (size, offsets) = layout($shader, stringify!($ty));
        assert_eq!(size as usize, std::mem::size_of::<$rust>(), "{} size", stringify!($ty));
        let want: Vec<u32> = vec![$(std::mem::offset_of!($rust, $field) as u32),*];
        assert_eq!(&offsets[..want.len()], &want[..], "{} offsets", stringify!($ty));
    }};
}

#[test]
fn uniform_structs_match_rust_twins() {
    for shader in ["embedding", "embedding_f16"] {
        check_twin!(
            shader,
            EmbeddingParams,
            embedding::EmbeddingParams,
            [t, c4, row_start, rows]
        );
    }
    check_twin!("swiglu", SwigluParams, swiglu::SwigluParams, [t, h4, flags]);
    check_twin!(
        "token_target",
        TargetParams,
        token_rank::TargetParams,
        [rows, n, row_start, tv0]
    );
    check_twin!(
        "token_rank",
        RankParams,
        token_rank::RankParams,
        [rows, n, row_start, tv0, out0]
    );
    for shader in ["layer_norm", "layer_norm_workgroup"] {
        check_twin!(
            shader,
            LayerNormParams,
            layer_norm::LayerNormParams,
            [t, c4, flags, eps]
        );
    }
    for shader in ["matmul", "matmul_tiled", "matmul_coop"] {
        check_twin!(
            shader,
            MatmulParams,
            matmul::MatmulParams,
            [m, n4, k4, flags, p4, ks, split, kv_q4, kv4, norm, eps]
        );
    }
    check_twin!(
        "matmul_subgroup",
        MatmulParams,
        matmul::MatmulParams,
        [m, n4, k4, flags, p4]
    );
    for shader in [
        "matmul_bt",
        "matmul_bt_subgroup",
        "matmul_bt_f16",
        "matmul_bt_f16_subgroup",
    ] {
        check_twin!(
            shader,
            MatmulBtParams,
            matmul_bt::MatmulBtParams,
            [m, n, k4, a_row0]
        );
    }
    check_twin!(
        "matvec",
        MatvecParams,
        matvec::MatvecParams,
        [n4, k4, flags, p4, rows, row0]
    );
    check_twin!(
        "attention_paged",
        AttentionParams,
        attention::AttentionParams,
        [t, c4, hs4, nh, scale, pos, kv_stride4, k_off4, v_off4, block, page, t0, table0]
    );
    check_twin!(
        "attention_tiled",
        AttentionParams,
        attention::AttentionParams,
        [t, c4, hs4, nh, scale, pos, kv_stride4, k_off4, v_off4, block]
    );
    check_twin!(
        "attention",
        AttentionParams,
        attention::AttentionParams,
        [t, c4, hs4, nh, scale, pos, kv_stride4, k_off4, v_off4]
    );
    check_twin!(
        "attention_proj",
        AttentionParams,
        attention::AttentionParams,
        [
            t, c4, hs4, nh, scale, pos, kv_stride4, k_off4, v_off4, block, page, t0, table0, w0,
            nkv, window, proj_n4, proj_p4
        ]
    );
    check_twin!(
        "matvec_staged",
        MatvecParams,
        matvec::MatvecParams,
        [n4, k4, flags, p4, rows, row0, row_end, kv_q4, kv4, norm, eps, parts]
    );
    check_twin!(
        "mlp_partial",
        MlpParams,
        partials::MlpParams,
        [k4, parts, norm, eps, flags, h4, chunk4, up_p4, down_p4]
    );
    check_twin!(
        "residual_sum",
        ResidualParams,
        partials::ResidualParams,
        [k4, parts, norm, rows]
    );
    check_twin!(
        "copy_rows",
        CopyParams,
        logit_lens::CopyParams,
        [n4, src0, dst0, c4]
    );
    for shader in ["matvec_bt", "matvec_bt_f16", "matvec_bt_f16_subgroup"] {
        check_twin!(
            shader,
            MatvecBtParams,
            matvec_bt::MatvecBtParams,
            [n, k4, a_row0, out_row0]
        );
    }
    check_twin!(
        "sparse_attention",
        AttentionParams,
        attention::AttentionParams,
        [t, c4, hs4, nh, scale, pos, kv_stride4, k_off4, v_off4, block]
    );
    for shader in ["moe_gate", "moe_norm_gate"] {
        check_twin!(
            shader,
            MoeGateParams,
            moe::MoeGateParams,
            [t, e, e4, k, renorm, c4, norm, eps, with_shared]
        );
    }
    check_twin!(
        "moe_route",
        MoeRouteParams,
        moe::MoeRouteParams,
        [t, e, k, rows]
    );
    check_twin!(
        "moe_matmul",
        MoeMatmulParams,
        moe::MoeMatmulParams,
        [rows, n4, k4, flags, p4]
    );
    check_twin!(
        "moe_matmul_subgroup",
        MoeMatmulParams,
        moe::MoeMatmulParams,
        [rows, n4, k4, flags, p4]
    );
    for shader in ["matmul_f16", "matmul_f16_subgroup"] {
        let (size, _) = layout(shader, "MatmulParams");
        assert_eq!(
            size as usize,
            std::mem::size_of::<matmul::MatmulParams>(),
            "{shader}"
        );
    }
    for shader in ["moe_matmul_f16", "moe_matmul_f16_subgroup"] {
        let (size, _) = layout(shader, "MoeMatmulParams");
        assert_eq!(
            size as usize,
            std::mem::size_of::<moe::MoeMatmulParams>(),
            "{shader}"
        );
    }
    for shader in [
        "matvec_f16",
        "matvec_f16_subgroup",
        "matvec_splitk",
        "matvec_f16_splitk",
        "matvec_f16_staged",
        "matvec_embed_staged",
        "matvec_f16_embed_staged",
    ] {
        let (size, _) = layout(shader, "MatvecParams");
        assert_eq!(
            size as usize,
            std::mem::size_of::<matvec::MatvecParams>(),
            "{shader}"
        );
    }
    check_twin!(
        "moe_combine",
        MoeCombineParams,
        moe::MoeCombineParams,
        [t, c4, k]
    );
    for shader in ["attention_subgroup", "sparse_attention_subgroup"] {
        let (size, offsets) = layout(shader, "AttentionParams");
        assert_eq!(
            size as usize,
            std::mem::size_of::<attention::AttentionParams>(),
            "{shader}"
        );
        assert_eq!(
            offsets[9] as usize,
            std::mem::offset_of!(attention::AttentionParams, block),
            "{shader}"
        );
    }
    check_twin!(
        "kv_store",
        KvStoreParams,
        kv_store::KvStoreParams,
        [t, kv4, q4]
    );
    check_twin!(
        "row_norm",
        RowNormParams,
        row_norm::RowNormParams,
        [t, c4, offset]
    );
}

/// Every kernel's composed source translated to SPIR-V, as wgpu does for Vulkan (its
/// override constants resolved first). Kernels the CI adapter skips (the tensor-core
/// one: lavapipe has no cooperative matrices) are only checked here.
fn spirv(k: &wgformer::kernels::catalogue::Kernel) -> Vec<u32> {
    let src = k.source();
    let m = module(k.name);
    let info = Validator::new(ValidationFlags::all(), Capabilities::all())
        .validate(&m)
        .unwrap_or_else(|e| panic!("{}: {}", k.name, e.emit_to_string(&src)));
    let mut constants = naga::back::PipelineConstants::default();
    constants.insert("WG".to_string(), 64.0);
    let (m, info) = naga::back::pipeline_constants::process_overrides(
        &m,
        &info,
        Some((naga::ShaderStage::Compute, k.entry)),
        &constants,
    )
    .unwrap_or_else(|e| panic!("{}: overrides: {e:?}", k.name));
    naga::back::spv::write_vec(&m, &info, &naga::back::spv::Options::default(), None)
        .unwrap_or_else(|e| panic!("{}: SPIR-V: {e:?}", k.name))
}

#[test]
fn every_attention_kernel_has_a_wide_source_that_validates() {
    // heads of up to 256 (Gemma): the kernels with prelude `attention` compile a second
    // module with MAX_HS4 raised, every size derived from it; it must validate and fit
    // the workgroup memory of the narrow one (the tiles keep 512 vec4s)
    let mut wide = 0;
    for k in KERNELS.iter().filter(|k| k.attends()) {
        let src = k.wide_source();
        assert!(src.contains("const MAX_HS4: u32 = 64u;"), "{}", k.name);
        let m = naga::front::wgsl::parse_str(&src)
            .unwrap_or_else(|e| panic!("{} wide: {}", k.name, e.emit_to_string(&src)));
        Validator::new(ValidationFlags::all(), Capabilities::all())
            .validate(&m)
            .unwrap_or_else(|e| panic!("{} wide: {}", k.name, e.emit_to_string(&src)));
        let workgroup_bytes = |m: &naga::Module| -> u32 {
            m.global_variables
                .iter()
                .filter(|(_, g)| g.space == naga::AddressSpace::WorkGroup)
                .map(|(_, g)| m.types[g.ty].inner.size(m.to_ctx()))
                .sum()
        };
        let narrow = module(k.name);
        assert!(
            workgroup_bytes(&m) <= workgroup_bytes(&narrow).max(16 << 10),
            "{}: the wide module's workgroup memory",
            k.name
        );
        wide += 1;
    }
    assert!(wide >= 10, "{wide} attention kernels");
}

#[test]
fn every_kernel_translates_to_spirv() {
    for k in KERNELS {
        let words = spirv(k);
        assert_eq!(words[0], 0x0723_0203, "{}: SPIR-V magic number", k.name);
    }
}

/// The tensor-core kernel cannot run on the CI's software adapter (no cooperative
/// matrices): its SPIR-V, what the Vulkan driver receives, is checked here instead.
#[test]
fn cooperative_matrix_kernel_translates_to_spirv() {
    let k = wgformer::kernels::kernel("matmul_coop").unwrap();
    assert!(k.cooperative);
    let src = k.source();
    assert!(
        src.starts_with("enable f16;\nenable wgpu_cooperative_matrix;\n"),
        "{src}"
    );
    let words = spirv(k);
    // the cooperative-matrix instructions made it through
    let has_op = |op: u32| words.iter().any(|w| w & 0xffff == op);
    for (name, op) in [
        ("OpTypeCooperativeMatrixKHR", 4456),
        ("OpCooperativeMatrixLoadKHR", 4457),
        ("OpCooperativeMatrixStoreKHR", 4458),
        ("OpCooperativeMatrixMulAddKHR", 4459),
    ] {
        assert!(has_op(op), "no {name} in the SPIR-V");
    }
}
