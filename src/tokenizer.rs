//! Text ↔ token ids through the Hugging Face `tokenizers` crate. The default is the
//! GPT-2 byte-level BPE bundled in `assets/gpt2-tokenizer.json` (made from the
//! vocabulary and merges shipped with tiktoken-rs by `examples/make_tokenizer.rs`).

use crate::error::{Error, Result};

/// The bundled GPT-2 tokenizer.json.
pub const GPT2_TOKENIZER_JSON: &[u8] = include_bytes!("../assets/gpt2-tokenizer.json");

/// GPT-2's end-of-text token.
pub const END_OF_TEXT: u32 = 50256;

/// A loaded tokenizer.
pub struct Tokenizer {
    inner: tokenizers::Tokenizer,
}

impl Tokenizer {
    /// The bundled GPT-2 BPE.
    pub fn gpt2() -> Result<Self> {
        let inner = tokenizers::Tokenizer::from_bytes(GPT2_TOKENIZER_JSON)
            .map_err(|e| Error::Tokenizer(format!("bundled tokenizer: {e}")))?;
        Ok(Tokenizer { inner })
    }

    /// A Hugging Face `tokenizer.json` at `path`.
    pub fn from_file(path: &str) -> Result<Self> {
        let inner = tokenizers::Tokenizer::from_file(path)
            .map_err(|e| Error::Config(format!("tokenizer: cannot load {path}: {e}")))?;
        Ok(Tokenizer { inner })
    }

    /// A Hugging Face `tokenizer.json` from its bytes; `name` names it in errors.
    pub fn from_bytes(bytes: &[u8], name: &str) -> Result<Self> {
        let inner = tokenizers::Tokenizer::from_bytes(bytes)
            .map_err(|e| Error::Config(format!("tokenizer {name:?} cannot be loaded: {e}")))?;
        Ok(Tokenizer { inner })
    }

    /// The bundled tokenizer, or the file at `path` when given.
    pub fn load(path: Option<&str>) -> Result<Self> {
        match path {
            Some(p) => Self::from_file(p),
            None => Self::gpt2(),
        }
    }

    /// Token ids of `text` (no special tokens added).
    pub fn encode(&self, text: &str) -> Result<Vec<u32>> {
        self.inner
            .encode(text, false)
            .map(|e| e.get_ids().to_vec())
            .map_err(|e| Error::Tokenizer(e.to_string()))
    }

    /// Text of `ids`.
    pub fn decode(&self, ids: &[u32]) -> Result<String> {
        self.inner
            .decode(ids, false)
            .map_err(|e| Error::Tokenizer(e.to_string()))
    }

    /// Id of a token given by its text, if the vocabulary has it.
    pub fn token_id(&self, token: &str) -> Option<u32> {
        self.inner.token_to_id(token)
    }

    /// Number of ids the tokenizer can produce (added tokens included).
    pub fn vocab_size(&self) -> usize {
        self.inner.get_vocab_size(true)
    }
}
