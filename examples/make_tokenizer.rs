//! Builds `assets/gpt2-tokenizer.json` (a Hugging Face tokenizer) from the GPT-2
//! vocabulary (`encoder.json`) and merges (`vocab.bpe`) that ship in the tiktoken-rs
//! crate, so the bundled tokenizer is reproducible from the registry:
//!
//! ```text
//! cargo run --release --example make_tokenizer -- [ASSETS_DIR] [OUT]
//! ```
//! ASSETS_DIR defaults to tiktoken-rs's `assets/` in the cargo registry; OUT to
//! `assets/gpt2-tokenizer.json`.

use std::path::PathBuf;

use tokenizers::decoders::byte_level::ByteLevel as ByteLevelDecoder;
use tokenizers::models::bpe::BPE;
use tokenizers::pre_tokenizers::byte_level::ByteLevel;
use tokenizers::{AddedToken, Tokenizer};

fn find_assets() -> Option<PathBuf> {
    let home = std::env::var_os("CARGO_HOME")
        .map(PathBuf::from)
        .or_else(|| std::env::var_os("HOME").map(|h| PathBuf::from(h).join(".cargo")))?;
    let src = home.join("registry").join("src");
    let mut found = Vec::new();
    for index in std::fs::read_dir(src).ok()?.flatten() {
        for krate in std::fs::read_dir(index.path()).ok()?.flatten() {
            let name = krate.file_name().to_string_lossy().to_string();
            let assets = krate.path().join("assets");
            if name.starts_with("tiktoken-rs-") && assets.join("encoder.json").exists() {
                found.push(assets);
            }
        }
    }
    found.sort();
    found.pop()
}

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let assets = match args.first() {
        Some(a) => PathBuf::from(a),
        None => find_assets().ok_or("tiktoken-rs assets not found; pass ASSETS_DIR")?,
    };
    let out = args
        .get(1)
        .cloned()
        .unwrap_or_else(|| "assets/gpt2-tokenizer.json".into());
    let vocab = assets.join("encoder.json");
    let merges = assets.join("vocab.bpe");
    let bpe = BPE::from_file(&vocab.to_string_lossy(), &merges.to_string_lossy())
        .build()
        .map_err(|e| format!("BPE: {e}"))?;
    let mut tok = Tokenizer::new(bpe);
    tok.with_pre_tokenizer(Some(
        ByteLevel::default()
            .add_prefix_space(false)
            .trim_offsets(true),
    ));
    tok.with_decoder(Some(ByteLevelDecoder::default()));
    tok.with_post_processor(Some(ByteLevel::default().trim_offsets(false)));
    tok.add_special_tokens(&[AddedToken::from("<|endoftext|>", true)]);
    tok.save(&out, false).map_err(|e| format!("save: {e}"))?;
    println!(
        "wrote {out} from {} ({} ids)",
        assets.display(),
        tok.get_vocab_size(true)
    );
    Ok(())
}
