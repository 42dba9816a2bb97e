//! JSON mode (`response_format: {"type": "json_object"}`): generation constrained to
//! one JSON object. [`JsonState`] reads the text a byte at a time and says whether it
//! is still the start of a JSON object (RFC 8259 values inside; nesting up to
//! [`MAX_DEPTH`]; no whitespace before the object, and at most [`MAX_SPACE`] bytes of
//! it in a row outside strings, so a model cannot pad forever). Each step, [`JsonVocab::allowed`] walks the vocabulary's
//! token bytes in sorted order from the state (tokens sharing a prefix share the walk
//! over it) and keeps the tokens whose every byte continues the object; the others'
//! logits are set to -inf before the pick. Once the object closes the generation ends.
//! Special tokens (end-of-text, template markers) never appear inside the object.

use std::collections::HashMap;
use std::sync::Arc;

/// Deepest nesting of objects and arrays.
pub const MAX_DEPTH: u32 = 64;
/// Most whitespace bytes in a row outside strings.
pub const MAX_SPACE: u8 = 32;

/// What the next byte may be.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
enum At {
    /// Before the top-level object: only `{`.
    Start,
    /// After `{`: a key or `}`.
    KeyOrClose,
    /// After a `,` in an object: a key.
    Key,
    /// After a key: `:`.
    Colon,
    /// After `:` or a `,` in an array: a value.
    Value,
    /// After `[`: a value or `]`.
    ValueOrClose,
    /// After a value inside an object or array: `,` or its close.
    CommaOrClose,
    /// Inside a string (a key when `key`).
    Str { key: bool, esc: Esc },
    /// Inside a number.
    Num(Num),
    /// Inside `true`, `false` or `null`: `word`'s byte `i` comes next.
    Lit { word: Word, i: u8 },
    /// The object is closed.
    Done,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
enum Esc {
    None,
    /// After `\`.
    Backslash,
    /// Hex digits of a `\u` escape still to come.
    Hex(u8),
}

/// The parts of a number, by what was read last.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
enum Num {
    Minus,
    Zero,
    Int,
    Dot,
    Frac,
    Exp,
    ExpSign,
    ExpInt,
}

impl Num {
    /// Whether the number may end here.
    fn complete(self) -> bool {
        matches!(self, Num::Zero | Num::Int | Num::Frac | Num::ExpInt)
    }

    /// The state after `b`, if `b` continues the number.
    fn next(self, b: u8) -> Option<Num> {
        let digit = b.is_ascii_digit();
        Some(match (self, b) {
            (Num::Minus, b'0') => Num::Zero,
            (Num::Minus, _) if digit => Num::Int,
            (Num::Int, _) if digit => Num::Int,
            (Num::Zero | Num::Int, b'.') => Num::Dot,
            (Num::Dot | Num::Frac, _) if digit => Num::Frac,
            (Num::Zero | Num::Int | Num::Frac, b'e' | b'E') => Num::Exp,
            (Num::Exp, b'+' | b'-') => Num::ExpSign,
            (Num::Exp | Num::ExpSign | Num::ExpInt, _) if digit => Num::ExpInt,
            _ => return None,
        })
    }
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
enum Word {
    True,
    False,
    Null,
}

impl Word {
    fn bytes(self) -> &'static [u8] {
        match self {
            Word::True => b"true",
            Word::False => b"false",
            Word::Null => b"null",
        }
    }
}

/// How far a text is into one JSON object (a small `Copy` value: the walk over the
/// vocabulary copies it at every branch).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct JsonState {
    at: At,
    /// Open containers, innermost in bit 0: 1 an object, 0 an array.
    stack: u64,
    depth: u32,
    space: u8,
}

impl Default for JsonState {
    fn default() -> Self {
        JsonState {
            at: At::Start,
            stack: 0,
            depth: 0,
            space: 0,
        }
    }
}

impl JsonState {
    /// Whether the object is closed (nothing may follow).
    pub fn done(&self) -> bool {
        self.at == At::Done
    }

    fn in_object(&self) -> bool {
        self.stack & 1 == 1
    }

    fn open(&mut self, object: bool) -> bool {
        if self.depth == MAX_DEPTH {
            return false;
        }
        self.stack = (self.stack << 1) | object as u64;
        self.depth += 1;
        self.at = if object {
            At::KeyOrClose
        } else {
            At::ValueOrClose
        };
        true
    }

    /// Close the innermost container with `b` (`}` or `]`), if it is that one.
    fn close(&mut self, b: u8) -> bool {
        if self.depth == 0 || self.in_object() != (b == b'}') {
            return false;
        }
        self.stack >>= 1;
        self.depth -= 1;
        self.after_value();
        true
    }

    fn after_value(&mut self) {
        self.at = if self.depth == 0 {
            At::Done
        } else {
            At::CommaOrClose
        };
    }

    /// A value starting with `b`.
    fn value(&mut self, b: u8) -> bool {
        match b {
            b'{' => return self.open(true),
            b'[' => return self.open(false),
            b'"' => {
                self.at = At::Str {
                    key: false,
                    esc: Esc::None,
                }
            }
            b'-' => self.at = At::Num(Num::Minus),
            b'0' => self.at = At::Num(Num::Zero),
            b'1'..=b'9' => self.at = At::Num(Num::Int),
            b't' => {
                self.at = At::Lit {
                    word: Word::True,
                    i: 1,
                }
            }
            b'f' => {
                self.at = At::Lit {
                    word: Word::False,
                    i: 1,
                }
            }
            b'n' => {
                self.at = At::Lit {
                    word: Word::Null,
                    i: 1,
                }
            }
            _ => return false,
        }
        true
    }

    /// Read byte `b`: false (the state then unspecified) if the text can no longer be
    /// the start of a JSON object.
    pub fn feed(&mut self, b: u8) -> bool {
        let space = matches!(b, b' ' | b'\t' | b'\n' | b'\r');
        // (none before the object: padding would only delay it)
        let structural = !matches!(
            self.at,
            At::Start | At::Str { .. } | At::Num(_) | At::Lit { .. } | At::Done
        );
        if space && structural {
            self.space += 1;
            return self.space <= MAX_SPACE;
        }
        self.space = 0;
        match self.at {
            At::Start => b == b'{' && self.open(true),
            At::KeyOrClose if b == b'}' => self.close(b),
            At::KeyOrClose | At::Key => {
                self.at = At::Str {
                    key: true,
                    esc: Esc::None,
                };
                b == b'"'
            }
            At::Colon => {
                self.at = At::Value;
                b == b':'
            }
            At::ValueOrClose if b == b']' => self.close(b),
            At::Value | At::ValueOrClose => self.value(b),
            At::CommaOrClose => match b {
                b',' => {
                    self.at = if self.in_object() { At::Key } else { At::Value };
                    true
                }
                b'}' | b']' => self.close(b),
                _ => false,
            },
            At::Str { key, esc } => {
                let esc = match esc {
                    Esc::None => match b {
                        b'"' => {
                            if key {
                                self.at = At::Colon;
                            } else {
                                self.after_value();
                            }
                            return true;
                        }
                        b'\\' => Esc::Backslash,
                        0..=0x1f => return false,
                        _ => Esc::None,
                    },
                    Esc::Backslash => match b {
                        b'"' | b'\\' | b'/' | b'b' | b'f' | b'n' | b'r' | b't' => Esc::None,
                        b'u' => Esc::Hex(4),
                        _ => return false,
                    },
                    Esc::Hex(n) if b.is_ascii_hexdigit() => {
                        if n == 1 {
                            Esc::None
                        } else {
                            Esc::Hex(n - 1)
                        }
                    }
                    Esc::Hex(_) => return false,
                };
                self.at = At::Str { key, esc };
                true
            }
            At::Num(n) => match n.next(b) {
                Some(n) => {
                    self.at = At::Num(n);
                    true
                }
                // the number ended: `b` is what follows it
                None if n.complete() => {
                    self.after_value();
                    self.feed(b)
                }
                None => false,
            },
            At::Lit { word, i } => {
                let w = word.bytes();
                if w[i as usize] != b {
                    return false;
                }
                if i as usize + 1 == w.len() {
                    self.after_value();
                } else {
                    self.at = At::Lit { word, i: i + 1 };
                }
                true
            }
            At::Done => false,
        }
    }

    /// The state after `bytes`, if they continue the object.
    pub fn after(mut self, bytes: &[u8]) -> Option<JsonState> {
        bytes.iter().all(|&b| self.feed(b)).then_some(self)
    }
}

/// A tokenizer's vocabulary as byte strings, sorted, for [`JsonVocab::allowed`]:
/// special tokens and tokens with no bytes are left out.
pub struct JsonVocab {
    tokens: Vec<(Vec<u8>, u32)>,
    /// The sets of recent states (a long string is the same state token after token).
    recent: std::sync::Mutex<HashMap<(JsonState, usize), Set>>,
}

/// A set of tokens: a flag per token id.
type Set = Arc<Vec<bool>>;

/// States whose sets [`JsonVocab`] keeps (a set is a byte per token).
const RECENT: usize = 64;

impl JsonVocab {
    /// From `(bytes, id)` of every token that may appear inside the text.
    pub fn new(mut tokens: Vec<(Vec<u8>, u32)>) -> JsonVocab {
        tokens.retain(|(b, _)| !b.is_empty());
        tokens.sort();
        JsonVocab {
            tokens,
            recent: Default::default(),
        }
    }

    /// Mark in `allowed` (indexed by token id; ids past it are skipped) every token
    /// whose bytes continue the object from `state`.
    pub fn allowed(&self, state: JsonState, allowed: &mut [bool]) {
        let key = (state, allowed.len());
        let lock = || self.recent.lock().unwrap_or_else(|e| e.into_inner());
        if let Some(set) = lock().get(&key).cloned() {
            allowed.copy_from_slice(&set);
            return;
        }
        self.walk(0, self.tokens.len(), 0, state, allowed);
        let mut recent = lock();
        if recent.len() >= RECENT {
            recent.clear();
        }
        recent.insert(key, Arc::new(allowed.to_vec()));
    }

    /// Set to -inf the `logits` of the tokens that do not continue the object from
    /// `state` (all left as they are if none does: the generation then ends).
    pub fn mask(&self, state: JsonState, logits: &mut [f32]) {
        let mut ok = vec![false; logits.len()];
        self.allowed(state, &mut ok);
        if ok.iter().any(|&o| o) {
            for (x, ok) in logits.iter_mut().zip(ok) {
                if !ok {
                    *x = f32::NEG_INFINITY;
                }
            }
        }
    }

    /// Tokens `lo..hi` share their first `depth` bytes, which led to `state`.
    fn walk(&self, mut lo: usize, hi: usize, depth: usize, state: JsonState, allowed: &mut [bool]) {
        // those that end here (they sort first)
        while lo < hi && self.tokens[lo].0.len() == depth {
            if let Some(a) = allowed.get_mut(self.tokens[lo].1 as usize) {
                *a = true;
            }
            lo += 1;
        }
        // the rest, grouped by their next byte
        while lo < hi {
            let b = self.tokens[lo].0[depth];
            let end = lo + self.tokens[lo..hi].partition_point(|t| t.0[depth] == b);
            let mut next = state;
            if next.feed(b) {
                self.walk(lo, end, depth + 1, next, allowed);
            }
            lo = end;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn accepts(text: &str) -> Option<JsonState> {
        JsonState::default().after(text.as_bytes())
    }

    #[test]
    fn whole_objects_close_and_their_prefixes_are_open() {
        for doc in [
            r#"{}"#,
            r#"{"a":1}"#,
            "{\n  \"a\" : [1, -2.5e+3, 0, 0.25E2, true, false, null],\n  \"b\": {\"c\": \"\\u00e9\\n\\\"x\\\"\"}\n}",
            r#"{"nested":[[[]],{"k":[{}]}],"s":"😀 é"}"#,
            r#"{"n":-0.0e-0}"#,
        ] {
            assert!(serde_json::from_str::<serde_json::Value>(doc).is_ok(), "{doc}");
            let s = accepts(doc).unwrap_or_else(|| panic!("refused {doc:?}"));
            assert!(s.done(), "{doc:?} did not close");
            for cut in 0..doc.len() {
                let p = JsonState::default().after(&doc.as_bytes()[..cut]);
                assert!(p.is_some_and(|p| !p.done()), "cut at {cut} of {doc:?}");
            }
            // nothing after the close
            assert!(accepts(&format!("{doc} ")).is_none());
        }
    }

    #[test]
    fn what_json_does_not_allow_is_refused() {
        for bad in [
            "[]",
            " {}",
            "\"a\"",
            "{a",
            "{\"a\" 1",
            "{\"a\":}",
            "{\"a\":01",
            "{\"a\":1.}",
            "{\"a\":.5",
            "{\"a\":1e}",
            "{\"a\":-}",
            "{\"a\":tru}",
            "{\"a\":nul1",
            "{\"a\":1,}",
            "{\"a\":[1,]",
            "{\"a\":[1}",
            "{\"a\":{]",
            "{\"a\":\"\\x\"",
            "{\"a\":\"\\u12g4\"",
            "{\"a\":\"tab\there\"",
            "{,",
            "{\"a\":1}}",
        ] {
            assert!(
                accepts(bad).is_none_or(|s| !s.done()),
                "{bad:?} accepted as whole"
            );
        }
        for bad in [
            "[",
            "{a",
            "{\"a\":1.}",
            "{\"a\":01",
            "{\"a\":\"\\x",
            "{\"a\":1,}",
            "{\"a\":{]",
        ] {
            assert!(accepts(bad).is_none(), "{bad:?} accepted as a start");
        }
        // depth and whitespace limits
        let deep = format!("{{\"a\":{}", "[".repeat(MAX_DEPTH as usize - 1));
        assert!(accepts(&deep).is_some());
        assert!(accepts(&format!("{deep}[")).is_none());
        let pad = " ".repeat(MAX_SPACE as usize);
        assert!(accepts(&format!("{{{pad}")).is_some());
        assert!(accepts(&format!("{{{pad} ")).is_none());
        assert!(
            accepts(&format!("{{\"{pad} \"")).is_some(),
            "spaces in strings are free"
        );
    }

    /// A random JSON value (splitmix64 draws), up to `depth` levels deep.
    fn random_value(r: &mut u64, depth: u32) -> serde_json::Value {
        use serde_json::json;
        let mut next = || {
            *r = r.wrapping_add(0x9E37_79B9_7F4A_7C15);
            let mut z = *r;
            z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
            z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
            z ^ (z >> 31)
        };
        let pick = next() % if depth == 0 { 6 } else { 8 };
        let n = next();
        match pick {
            0 => json!(null),
            1 => json!(n % 2 == 0),
            2 => json!((n % 2001) as i64 - 1000),
            3 => json!(f64::from_bits(0x3FF0_0000_0000_0000 | (n >> 12)) * 1e-3 - 7.5),
            4 | 5 => {
                let chars = ["a", "é", "\"", "\\", "\n", "\u{1}", "😀", " ", "/", "\t"];
                let len = (n % 6) as usize;
                json!((0..len)
                    .map(|i| chars[((n >> (i * 4)) % 10) as usize])
                    .collect::<String>())
            }
            6 => serde_json::Value::Array((0..n % 4).map(|_| random_value(r, depth - 1)).collect()),
            _ => serde_json::Value::Object(
                (0..n % 4)
                    .map(|i| (format!("k{i}"), random_value(r, depth - 1)))
                    .collect(),
            ),
        }
    }

    /// Against serde_json: every object it writes (compact and pretty) is read whole,
    /// and of many one-byte changes to them, those read whole are objects serde_json
    /// reads too, and those serde_json reads as objects are read whole (unless they
    /// break the whitespace rule).
    #[test]
    fn objects_agree_with_serde_json() {
        let mut r = 7u64;
        let (mut agreed, mut changed) = (0, 0);
        for i in 0..300 {
            let mut obj = serde_json::Map::new();
            obj.insert("v".into(), random_value(&mut r, 4));
            let v = serde_json::Value::Object(obj);
            let text = if i % 2 == 0 {
                serde_json::to_string(&v).unwrap()
            } else {
                serde_json::to_string_pretty(&v).unwrap()
            };
            assert!(accepts(&text).is_some_and(|s| s.done()), "{text}");
            agreed += 1;
            let bytes = text.as_bytes();
            for k in 0..8usize {
                let at = (k * 7919 + i * 31) % bytes.len();
                let mut m = bytes.to_vec();
                match k % 3 {
                    0 => {
                        m.remove(at);
                    }
                    1 => m.insert(at, b"{}[],:\"0-e.tn "[(k + i) % 14]),
                    _ => m[at] = b"}]\":,1 x"[(k + i) % 8],
                }
                let ours = JsonState::default().after(&m).is_some_and(|s| s.done());
                // (bytes are read as the service decodes them: a broken UTF-8
                // sequence inside a string becomes U+FFFD, still a string)
                let parsed =
                    serde_json::from_str::<serde_json::Value>(&String::from_utf8_lossy(&m));
                // (the grammar allows numbers past f64's range; serde_json refuses them)
                if parsed
                    .as_ref()
                    .is_err_and(|e| e.to_string().contains("number out of range"))
                {
                    continue;
                }
                let theirs = parsed.is_ok_and(|v| v.is_object())
                    && !m[0].is_ascii_whitespace()
                    && !m.last().unwrap().is_ascii_whitespace();
                assert_eq!(ours, theirs, "{:?}", String::from_utf8_lossy(&m));
                changed += 1;
            }
        }
        assert_eq!(agreed, 300);
        assert!(changed > 2300, "{changed}");
    }

    #[test]
    fn the_walk_keeps_exactly_the_tokens_that_continue_the_object() {
        let words = [
            "{", "{\"", "\"", "\":", ":", " ", "  ", "\n", "}", "},", ",", "a", "ab", "abc", "\\",
            "\\\"", "1", "12", "1.", ".5", "e", "-", "true", "tr", "ue", "null", "[", "]", "[]",
            "x\"}", "\"}", "é", "\t", "\u{1}", "r", "rue",
        ];
        let vocab: Vec<(Vec<u8>, u32)> = words
            .iter()
            .enumerate()
            .map(|(i, w)| (w.as_bytes().to_vec(), i as u32))
            .chain([(Vec::new(), words.len() as u32)])
            .collect();
        let v = JsonVocab::new(vocab.clone());
        for prefix in [
            "",
            "{",
            "{\"k",
            "{\"k\"",
            "{\"k\":",
            "{\"k\":1",
            "{\"k\":[",
            "{\"k\":t",
            "{\"k\":\"a\\",
            "{\"k\":{}",
        ] {
            let state = accepts(prefix).unwrap();
            let mut got = vec![false; words.len() + 1];
            v.allowed(state, &mut got);
            let want: Vec<bool> = vocab
                .iter()
                .map(|(b, _)| !b.is_empty() && state.after(b).is_some())
                .collect();
            assert_eq!(got, want, "after {prefix:?}");
            // again, from the sets kept
            let mut again = vec![false; words.len() + 1];
            v.allowed(state, &mut again);
            assert_eq!(again, want, "after {prefix:?}, kept");
            let mut logits = vec![1.0f32; words.len() + 1];
            v.mask(state, &mut logits);
            let open: Vec<bool> = logits.iter().map(|x| x.is_finite()).collect();
            assert_eq!(open, want, "mask after {prefix:?}");
            assert!(got.iter().any(|&a| a), "{prefix:?}");
        }
    }
}
