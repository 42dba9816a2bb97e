//! Text ↔ token ids through the Hugging Face `tokenizers` crate. The default is the
//! GPT-2 byte-level BPE bundled in `assets/gpt2-tokenizer.json` (made from the
//! vocabulary and merges shipped with tiktoken-rs by `examples/make_tokenizer.rs`).

use crate::error::{Error, Result};

/// The bundled GPT-2 tokenizer.json.
pub const GPT2_TOKENIZER_JSON: &[u8] = include_bytes!("../assets/gpt2-tokenizer.json");

/// GPT-2's end-of-text token.
pub const END_OF_TEXT: u32 = 50256;

/// A token of a text and the bytes `start .. end` of the text it came from.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct TokenSpan {
    pub id: u32,
    pub start: usize,
    pub end: usize,
}

/// A generation's text, decoded as its tokens come: each token decodes a window of the
/// last few tokens (the tokenizers crate's stream decoding: left context for decoders
/// whose pieces depend on it, and bytes of a character split over tokens held back
/// until it is whole), not the whole generation again, so a token costs the same at
/// position 10 and at 1,000.
#[derive(Debug, Default)]
pub struct TextStream {
    text: String,
    /// the window: tokens whose text is `prefix`, and those after it not yet shown
    ids: Vec<u32>,
    prefix: String,
    prefix_index: usize,
}

impl TextStream {
    /// The text of the tokens so far, less bytes of a character not yet complete.
    pub fn text(&self) -> &str {
        &self.text
    }
}

/// A loaded tokenizer.
pub struct Tokenizer {
    inner: tokenizers::Tokenizer,
    /// Apply the tokenizer's post-processor (its special tokens) as `transformers`'
    /// `AutoTokenizer(text)` does: on for model directories, off for a bare
    /// tokenizer.json (GPT-2's adds none).
    add_special: bool,
    /// Make sure the ids start with this BOS (`add_bos_token`), never twice.
    bos: Option<u32>,
    /// The model's chat templates (model directories that carry one).
    chat: Option<std::sync::Arc<crate::chat::ChatTemplates>>,
    /// The vocabulary's bytes for constrained JSON, made on first use.
    json: std::sync::OnceLock<std::sync::Arc<crate::json::JsonVocab>>,
}

impl Tokenizer {
    /// The bundled GPT-2 BPE.
    pub fn gpt2() -> Result<Self> {
        let inner = tokenizers::Tokenizer::from_bytes(GPT2_TOKENIZER_JSON)
            .map_err(|e| Error::Tokenizer(format!("bundled tokenizer: {e}")))?;
        Ok(Tokenizer::plain(inner))
    }

    fn plain(inner: tokenizers::Tokenizer) -> Self {
        Tokenizer {
            inner,
            add_special: false,
            bos: None,
            chat: None,
            json: std::sync::OnceLock::new(),
        }
    }

    /// Every token that may appear inside generated text, as its bytes, for constrained
    /// JSON
    /// (special tokens left out), made once.
    pub fn json_vocab(&self) -> std::sync::Arc<crate::json::JsonVocab> {
        self.json
            .get_or_init(|| {
                let special: std::collections::HashSet<u32> = self
                    .inner
                    .get_added_tokens_decoder()
                    .into_iter()
                    .filter(|(_, t)| t.special)
                    .map(|(id, _)| id)
                    .collect();
                let tokens = (0..self.vocab_size() as u32)
                    .filter(|id| !special.contains(id))
                    .map(|id| (self.token_bytes(id), id))
                    .collect();
                std::sync::Arc::new(crate::json::JsonVocab::new(tokens))
            })
            .clone()
    }

    /// With the model's chat templates.
    pub fn with_chat(self, chat: Option<std::sync::Arc<crate::chat::ChatTemplates>>) -> Self {
        Tokenizer { chat, ..self }
    }

    /// The model's chat templates, if it has any.
    pub fn chat(&self) -> Option<&crate::chat::ChatTemplates> {
        self.chat.as_deref()
    }

    /// Token ids of `text` with no special tokens added: a rendered chat template
    /// already holds them (its BOS included), so they are not added a second time.
    pub fn encode_plain(&self, text: &str) -> Result<Vec<u32>> {
        self.inner
            .encode(text, false)
            .map(|e| e.get_ids().to_vec())
            .map_err(|e| Error::Tokenizer(e.to_string()))
    }

    /// As a model directory's tokenizer: special tokens added by its post-processor,
    /// and `bos` first when `tokenizer_config.json` says `add_bos_token` (`false` there
    /// turns the special tokens off).
    pub fn with_special_tokens(self, add_bos: Option<bool>, bos: Option<u32>) -> Self {
        Tokenizer {
            add_special: add_bos != Some(false),
            bos: if add_bos == Some(true) { bos } else { None },
            ..self
        }
    }

    /// A Hugging Face `tokenizer.json` at `path`.
    pub fn from_file(path: &str) -> Result<Self> {
        let inner = tokenizers::Tokenizer::from_file(path)
            .map_err(|e| Error::Config(format!("tokenizer: cannot load {path}: {e}")))?;
        Ok(Tokenizer::plain(inner))
    }

    /// A Hugging Face `tokenizer.json` from its bytes; `name` names it in errors.
    pub fn from_bytes(bytes: &[u8], name: &str) -> Result<Self> {
        let mut inner = tokenizers::Tokenizer::from_bytes(bytes)
            .map_err(|e| Error::Config(format!("tokenizer {name:?} cannot be loaded: {e}")))?;
        // a text is its own tokens: the file's padding (all-MiniLM's pads every text to
        // 128 tokens) and truncation are for batches of fixed shape, and transformers
        // applies neither unless a call asks
        inner.with_padding(None);
        inner
            .with_truncation(None)
            .map_err(|e| Error::Config(format!("tokenizer {name:?}: {e}")))?;
        Ok(Tokenizer::plain(inner))
    }

    /// The bundled tokenizer, or the file at `path` when given.
    pub fn load(path: Option<&str>) -> Result<Self> {
        match path {
            Some(p) => Self::from_file(p),
            None => Self::gpt2(),
        }
    }

    /// Token ids of `text`, with the special tokens the model's tokenizer adds (a model
    /// directory's BOS; none for GPT-2's).
    pub fn encode(&self, text: &str) -> Result<Vec<u32>> {
        Ok(self.encode_spans(text)?.iter().map(|s| s.id).collect())
    }

    /// The tokens of `text` (special tokens as [`Tokenizer::encode`]) with the byte
    /// range of `text` each came from (an added BOS: the empty range at 0).
    pub fn encode_spans(&self, text: &str) -> Result<Vec<TokenSpan>> {
        let e = self
            .inner
            .encode(text, self.add_special)
            .map_err(|e| Error::Tokenizer(e.to_string()))?;
        let mut spans: Vec<TokenSpan> = e
            .get_ids()
            .iter()
            .zip(e.get_offsets())
            .map(|(&id, &(start, end))| TokenSpan { id, start, end })
            .collect();
        if let Some(bos) = self.bos {
            if spans.first().map(|s| s.id) != Some(bos) {
                spans.insert(
                    0,
                    TokenSpan {
                        id: bos,
                        start: 0,
                        end: 0,
                    },
                );
            }
        }
        Ok(spans)
    }

    /// Token ids of a pair of texts as a cross-encoder reads them (the tokenizer's pair
    /// template: `[CLS] a [SEP] b [SEP]`, `<s> a </s></s> b </s>`), and where the
    /// second segment starts: the first token of type 1, or the length when the
    /// template gives every token type 0 (XLM-RoBERTa's).
    pub fn encode_pair(&self, a: &str, b: &str) -> Result<(Vec<u32>, usize)> {
        let e = self
            .inner
            .encode((a, b), true)
            .map_err(|e| Error::Tokenizer(e.to_string()))?;
        let ids = e.get_ids().to_vec();
        let second = e
            .get_type_ids()
            .iter()
            .position(|&t| t == 1)
            .unwrap_or(ids.len());
        Ok((ids, second))
    }

    /// Text of `ids`.
    pub fn decode(&self, ids: &[u32]) -> Result<String> {
        self.inner
            .decode(ids, false)
            .map_err(|e| Error::Tokenizer(e.to_string()))
    }

    /// Add the last of `generated` (every token so far) to `stream`'s text. Should the
    /// window's decoding not extend what it showed (a decoder that rewrites earlier
    /// text), the text is decoded whole and the window starts again.
    pub fn stream_step(&self, stream: &mut TextStream, generated: &[u32]) -> Result<()> {
        let Some(&id) = generated.last() else {
            return Ok(());
        };
        let step = tokenizers::tokenizer::step_decode_stream(
            &self.inner,
            vec![id],
            false,
            &mut stream.ids,
            &mut stream.prefix,
            &mut stream.prefix_index,
        );
        match step {
            Ok(Some(piece)) => stream.text.push_str(&piece),
            Ok(None) => {}
            Err(_) => {
                *stream = TextStream {
                    text: self.decode(generated)?,
                    ..TextStream::default()
                };
            }
        }
        Ok(())
    }

    /// The text of every token of `stream`, held-back bytes included (as replacement
    /// characters where a character stays incomplete): what decoding them all gives.
    pub fn stream_finish(&self, stream: &TextStream) -> Result<String> {
        let window = self.decode(&stream.ids)?;
        let mut text = stream.text.clone();
        if let Some(rest) = window.strip_prefix(stream.prefix.as_str()) {
            text.push_str(rest);
        }
        Ok(text)
    }

    /// The raw bytes token `id` stands for (OpenAI's logprob `bytes`): through the
    /// byte-level alphabet for byte-level BPE tokenizers (GPT-2, Llama 3, Qwen), a byte
    /// fallback token `<0xHH>` as its byte, `▁` as a space for SentencePiece ones; a
    /// token holding part of a multi-byte character gives just its bytes.
    pub fn token_bytes(&self, id: u32) -> Vec<u8> {
        let Some(tok) = self.inner.id_to_token(id) else {
            return Vec::new();
        };
        if tok.len() == 6 && tok.starts_with("<0x") && tok.ends_with('>') {
            if let Ok(b) = u8::from_str_radix(&tok[3..5], 16) {
                return vec![b];
            }
        }
        let byte_level = matches!(
            self.inner.get_decoder(),
            Some(tokenizers::DecoderWrapper::ByteLevel(_))
        );
        if byte_level {
            let table = byte_level_inverse();
            if let Some(bytes) = tok.chars().map(|c| table.get(&c).copied()).collect() {
                return bytes;
            }
        }
        tok.replace('\u{2581}', " ").into_bytes()
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

/// GPT-2's byte-level alphabet inverted: the char each byte is written as → the byte
/// (printable bytes stand for themselves, the others for U+0100 onwards in order).
fn byte_level_inverse() -> &'static std::collections::HashMap<char, u8> {
    static TABLE: std::sync::OnceLock<std::collections::HashMap<char, u8>> =
        std::sync::OnceLock::new();
    TABLE.get_or_init(|| {
        let printable =
            |b: u8| (b'!'..=b'~').contains(&b) || (0xA1..=0xAC).contains(&b) || b >= 0xAE;
        let mut next = 0x100u32;
        (0..=255u8)
            .map(|b| {
                let c = if printable(b) {
                    char::from(b)
                } else {
                    let c = char::from_u32(next).unwrap_or('\u{FFFD}');
                    next += 1;
                    c
                };
                (c, b)
            })
            .collect()
    })
}

#[cfg(test)]
mod tests {

    #[test]
    fn token_bytes_are_the_raw_bytes_of_byte_level_tokens() {
        // GPT-2: "é" is two tokens of one byte each, " the" one token with its space
        let t = Tokenizer::gpt2().unwrap();
        let ids = t.encode("é the").unwrap();
        let bytes: Vec<u8> = ids.iter().flat_map(|&id| t.token_bytes(id)).collect();
        assert_eq!(bytes, "é the".as_bytes());
        assert!(ids.iter().any(|&id| t.token_bytes(id) == b" the"));
    }

    use super::*;

    #[test]
    fn streamed_text_is_the_text_of_every_token() {
        // characters split over byte-level tokens (accents, CJK, an emoji), spaces,
        // the end-of-text token; cut anywhere, the streamed text is the decoding of
        // every token with an incomplete last character held back, and finished it
        // is exactly that decoding
        let t = Tokenizer::gpt2().unwrap();
        let mut ids = t
            .encode("Naïve café — 日本語のテキスト 🎉🎉 done.\n  x")
            .unwrap();
        ids.push(END_OF_TEXT);
        ids.extend(t.encode(" ünïcödé").unwrap());
        // single bytes of a multi-byte character, alone and repeated
        let bytes: Vec<u32> = t.encode("🎉").unwrap();
        assert!(bytes.len() > 1, "the emoji takes several tokens");
        ids.extend(&bytes[..1]);
        ids.extend(&bytes);
        let mut s = TextStream::default();
        for n in 1..=ids.len() {
            t.stream_step(&mut s, &ids[..n]).unwrap();
            let whole = t.decode(&ids[..n]).unwrap();
            let shown = s.text();
            assert!(whole.starts_with(shown), "{n}: {shown:?} vs {whole:?}");
            assert!(!shown.ends_with('\u{FFFD}'));
            if !whole.ends_with('\u{FFFD}') {
                assert_eq!(shown, whole, "nothing held back after {n} tokens");
            }
            assert_eq!(t.stream_finish(&s).unwrap(), whole, "after {n} tokens");
        }
    }

    #[test]
    fn spans_are_byte_ranges_that_cover_the_text() {
        let t = Tokenizer::gpt2().unwrap();
        let text = "Hello wörld, naïve café — 42!";
        let spans = t.encode_spans(text).unwrap();
        let ids: Vec<u32> = spans.iter().map(|s| s.id).collect();
        assert_eq!(ids, t.encode(text).unwrap());
        assert_eq!(spans[0].start, 0);
        assert_eq!(spans.last().unwrap().end, text.len());
        for w in spans.windows(2) {
            assert_eq!(w[0].end, w[1].start, "{w:?}");
        }
        // a character split over several byte-level tokens: each of them names the
        // character's bytes (ranges stay on character boundaries, in order)
        let crab = "a 🦀 b";
        let spans = t.encode_spans(crab).unwrap();
        assert_eq!(spans.last().unwrap().end, crab.len());
        for w in spans.windows(2) {
            assert!(w[0].start <= w[1].start && w[0].end <= w[1].end, "{w:?}");
        }
        for s in &spans {
            assert!(
                crab.is_char_boundary(s.start) && crab.is_char_boundary(s.end),
                "{s:?}"
            );
        }
        // a word's token includes its leading space
        let hello = t.encode_spans("Hello world").unwrap();
        assert_eq!(
            hello
                .iter()
                .map(|s| &"Hello world"[s.start..s.end])
                .collect::<Vec<_>>(),
            ["Hello", " world"]
        );
    }
}
