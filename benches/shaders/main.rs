//! Shader microbenchmark: every kernel at GPT-2-small shapes (T = 1, 16, 128, 1024),
//! each checked against its CPU reference before it is timed, then timed on the
//! adapter (warm-up, median of batches, clock stopped after the GPU finished, no
//! read-back inside the clock) next to the same operation on the CPU in the same run.
//!
//! ```text
//! cargo bench --bench shaders [-- --json] [--quick] [--filter NAME] [--device auto|gpu|cpu]
//! ```
//!
//! `harness.rs` times and reports, `kernels.rs` has the kernel rows, `model.rs` the
//! model-step rows.

mod harness;
mod kernels;
mod model;

use clap::{Parser, ValueEnum};
use harness::Bench;
use harness::BATCH;
use wgformer::config::DeviceChoice;
use wgformer::gpu::GpuContext;
use wgformer::kernels::Pipelines;

#[derive(Clone, Copy, Debug, ValueEnum)]
enum Device {
    Auto,
    Gpu,
    Cpu,
}

/// The shader microbenchmark (rows whose name contains `--filter`, or all).
#[derive(Parser, Debug)]
#[command(name = "shaders")]
struct Args {
    /// Print the rows as one JSON document instead of a table.
    #[arg(long)]
    json: bool,
    /// Fewer shapes (T = 16, 128) and fewer timed batches.
    #[arg(long)]
    quick: bool,
    /// Only rows whose group name contains this (e.g. `matmul`, `gpt2_fwd`).
    #[arg(long)]
    filter: Option<String>,
    /// Which adapter to measure.
    #[arg(long, value_enum, default_value = "auto")]
    device: Device,
    /// Passed by `cargo bench`; ignored.
    #[arg(long, hide = true)]
    bench: bool,
}

fn main() {
    let args = Args::parse();
    let device = match args.device {
        Device::Gpu => DeviceChoice::Gpu,
        Device::Cpu => DeviceChoice::Cpu,
        Device::Auto => DeviceChoice::Auto,
    };
    let ctx = GpuContext::new(&device).expect("no adapter");
    let pl = Pipelines::new(&ctx).expect("pipelines");
    let mut b = Bench {
        ctx,
        pl,
        json: args.json,
        quick: args.quick,
        filter: args.filter,
        rows: Vec::new(),
    };
    if !b.json {
        println!(
            "adapter: {} ({}, driver {} {})",
            b.ctx.details.label(),
            b.ctx.details.device_type,
            b.ctx.details.driver,
            b.ctx.details.driver_info
        );
        println!(
            "{:<26} {:<26} {:>13} {:>17} CPU, same run",
            "kernel", "shape", "adapter", "rate"
        );
    }
    let (c, v, nh) = (768, 50304, 12);
    let ts: &[usize] = if b.quick {
        &[16, 128]
    } else {
        &[1, 16, 128, 1024]
    };
    if b.wants("roofline") {
        b.rooflines();
    }
    if b.wants("matmul") {
        b.matmul(1024, 1024, 1024);
        for &t in ts {
            b.matmul(t, c, 3 * c);
            b.matmul(t, c, c);
            b.matmul(t, c, 4 * c);
            b.matmul(t, 4 * c, c);
        }
    }
    if b.wants("matmul_bt") {
        for &t in ts {
            b.matmul_bt(t, c, v);
        }
    }
    if b.wants("matvec") {
        b.matvec(c, 3 * c);
        b.matvec(c, 4 * c);
        b.matvec(4 * c, c);
        b.matvec_bt(c, v);
    }
    if b.wants("layer_norm") {
        for &t in ts {
            b.layer_norm(t, c);
        }
    }
    if b.wants("attention") {
        for &t in ts {
            b.attention(t, c, nh);
        }
    }
    if b.wants("attention_paged") {
        for rows in [1, BATCH / 2, BATCH] {
            for pos in [64, 512] {
                b.decode_attention(rows, pos, c, nh);
            }
        }
    }
    if b.wants("sparse_attention") {
        for &t in ts {
            b.sparse_attention(t, c, nh);
        }
    }
    if b.wants("embedding") {
        for &t in ts {
            b.embedding(t, v, c);
        }
    }
    if b.wants("gpt2_fwd") {
        model::gpt2_fwd(&mut b, &device);
    }
    if b.wants("encoder_embed") {
        model::encoder_embed(&mut b, &device);
    }
    if b.wants("llama_vs_gpt2") || b.wants("llama_1b") {
        model::llama_vs_gpt2(&mut b, &device);
    }
    if b.wants("gpt2_chain") {
        model::gpt2_chain(&mut b, &device);
    }
    if b.wants("gpt2_profile") {
        model::gpt2_profile(&mut b, &device);
    }
    if b.wants("gpt2_blocks") {
        model::gpt2_blocks(&mut b, &device);
    }
    if b.wants("gpt2_staging") {
        model::gpt2_staging(&mut b, &device);
    }
    if b.wants("moe") {
        model::moe(&mut b, &device);
    }
    if b.json {
        let out = serde_json::json!({"adapter": b.ctx.details, "results": b.rows});
        println!("{}", serde_json::to_string_pretty(&out).unwrap());
    }
}
