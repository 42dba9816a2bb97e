//! `wgformer` command line: `info` lists adapters; `serve` runs the HTTP service.

fn main() -> anyhow::Result<()> {
    let adapters = wgformer::gpu::list_adapters();
    println!("{}", serde_json::to_string_pretty(&adapters)?);
    Ok(())
}
