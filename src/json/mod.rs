//! Constrained JSON: generation held to one JSON value of a given shape — JSON mode
//! (`response_format` `json_object`: any object, [`Grammar::object`]) or a JSON Schema
//! (`json_schema`, compiled by [`schema::compile`]). A [`Grammar`] is a table of
//! [`Node`]s; [`JsonState`] is how far a text has read into one of its values, a byte at
//! a time ([`Grammar::feed`]): RFC 8259 text, nesting up to [`MAX_DEPTH`] frames, no
//! whitespace before the value, and between the tokens of the structure only the
//! whitespace JSON writers put there — an optional space, then optionally a line break
//! (`\n` or `\r\n`) and an indent of spaces and tabs, at most [`INDENT`] bytes a level
//! of nesting — so a model cannot pad (a random-weight model given the freedom fills
//! its tokens with whitespace). Each step,
//! [`JsonVocab::allowed`] walks the vocabulary's token bytes in sorted order from the
//! state (tokens sharing a prefix share the walk over it) and keeps the tokens whose
//! every byte continues the value; the others' logits are set to -inf before the pick.
//! Once the value closes the generation ends. Special tokens (end-of-text, template
//! markers) never appear inside it, and its strings are valid UTF-8 (a token of a
//! character's first bytes is taken only where the rest can follow).
//!
//! Objects with declared properties are written in the declared order, each
//! property present or (when not required) left out; they get no other keys. Unions
//! (`anyOf`, a list of types) are told apart by the value's first byte.

use std::collections::HashMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, OnceLock};

mod pattern;
mod range;
pub mod schema;

use pattern::Pattern;
use range::{Part, Range, Reg};

/// Most open frames (objects, arrays, the key, string, number or literal being read):
/// a value nests up to about this many levels.
pub const MAX_DEPTH: usize = 32;
/// Most bytes of indent a level of nesting (tabs or spaces): a run of whitespace
/// between tokens `depth` levels deep is at most `3 + INDENT × depth` bytes (a space,
/// `\r\n`, the indent).
pub const INDENT: u8 = 4;

/// How far a run of whitespace between tokens is: ` ?(\r?\n[ \t]*)?`.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
enum Gap {
    None,
    /// After the optional space.
    Space,
    /// After `\r`: `\n` must follow.
    Cr,
    /// After the line break: the indent.
    Indent,
}

/// What one JSON value may be; children are indices into [`Grammar`]'s nodes.
#[derive(Clone, Debug, PartialEq)]
pub enum Node {
    /// An object: the declared `props`, in order; with none declared, any keys whose
    /// values are `values` (none when `values` is `None`: only `{}`).
    Object {
        props: Vec<Prop>,
        values: Option<u16>,
    },
    /// An array of `min..=max` values: the first ones of the `prefix` schemas (a
    /// tuple), the rest of `items`.
    Array {
        items: u16,
        min: u16,
        max: Option<u16>,
        prefix: Vec<u16>,
    },
    /// A string of `min..=max` characters (code points; an escape is one), matching
    /// the grammar's pattern `pattern` if it has one (then without `\u` escapes).
    String {
        min: u16,
        max: Option<u16>,
        pattern: Option<u16>,
    },
    /// A number (`integer`: without a fraction or an exponent), in `range` if bounded
    /// (then without an exponent).
    Number { integer: bool, range: Option<Range> },
    /// Exactly one of these texts (compact JSON, sorted, none empty): `enum`, `const`,
    /// booleans and null.
    Literals(Vec<Vec<u8>>),
    /// One of these nodes (none of them a union), which no two start with the same
    /// byte.
    OneOf(Vec<u16>),
    /// One of several objects told apart by their first property, `tag` (required; its
    /// value a [`Node::Literals`]): once its value is read, the object goes on as
    /// `cases[j]` (a [`Node::Object`] whose first property is the tag) for tag literal
    /// `j` — a discriminated union, or a tool call's `{"name": ..., "parameters": ...}`.
    Tagged { tag: Prop, cases: Vec<u16> },
    /// Plain text (not JSON) that the grammar's pattern `pattern` matches whole: vLLM's
    /// `guided_regex` and `guided_choice`, only as the root. It ends where nothing can
    /// follow; where it may end but more may follow, end-of-text tokens are let through
    /// ([`Grammar::may_end`]).
    Text { pattern: u16 },
}

/// A declared property of an object.
#[derive(Clone, Debug, PartialEq)]
pub struct Prop {
    /// The key as JSON text, quotes included (at most 255 bytes).
    pub key: Vec<u8>,
    pub value: u16,
    pub required: bool,
}

/// The shape a generated value must have: nodes and the root's index.
#[derive(Debug)]
pub struct Grammar {
    /// Tells grammars apart in [`JsonVocab`]'s kept sets.
    id: u64,
    nodes: Vec<Node>,
    root: u16,
    /// The strings' patterns, by index.
    patterns: Vec<Pattern>,
}

/// Where an object or array is, between its tokens.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
enum Phase {
    /// After `{` or `[`.
    Open,
    /// After a `,`.
    Next,
    /// A key is being read (a frame above).
    Key,
    /// After a key: `:`.
    Colon,
    /// After `:`: the value.
    Value,
    /// A value is being read (a frame above).
    Inside,
    /// After a value: `,` or the close.
    After,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
enum Esc {
    None,
    /// After `\`.
    Backslash,
    /// Hex digits of a `\u` escape still to come (`left`), what the digits so far say
    /// of a surrogate, and whether this escape must be a low surrogate (the second
    /// of a pair: JSON parsers refuse a lone one).
    Hex {
        left: u8,
        sur: Sur,
        low: bool,
    },
    /// After a high surrogate's escape: `\u` (`u` when `after_backslash`) and a low
    /// one must follow.
    Pair {
        after_backslash: bool,
    },
    /// Inside a UTF-8 sequence: `left` continuation bytes to come, the next in
    /// `lo..=hi` (RFC 3629: no overlong forms, surrogates or code points past U+10FFFF).
    Utf8 {
        left: u8,
        lo: u8,
        hi: u8,
    },
}

/// What the digits of a `\u` escape so far say of a surrogate (U+D800..U+DFFF).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
enum Sur {
    /// No digit yet.
    Start,
    /// The first digit is `D`: the second tells.
    D,
    /// A high surrogate (`D8`..`DB`).
    High,
    /// A low surrogate (`DC`..`DF`).
    Low,
    /// Not a surrogate.
    No,
}

/// What a frame has read.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
enum Local {
    /// An object; `next`: its first declared property not yet passed.
    Obj {
        phase: Phase,
        next: u8,
    },
    /// An array of `count` values so far (counted up to the bound that matters).
    Arr {
        phase: Phase,
        count: u16,
    },
    /// A string (a value, or a key of an object of any keys) of `len` characters so
    /// far (counted up to the bound that matters).
    Str {
        esc: Esc,
        len: u16,
    },
    /// A declared key: its first `i` bytes, those of property `j`'s key (the first
    /// property they fit).
    Key {
        j: u8,
        i: u8,
    },
    Num(Num),
    /// A literal: its first `i` bytes, those of literal `j` (the first they fit).
    Lit {
        j: u8,
        i: u16,
    },
    /// Plain text (its pattern's state in the `JsonState`).
    Raw,
}

/// One open value: its node and what it has read.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
struct Frame {
    node: u16,
    at: Local,
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
    fn first(b: u8) -> Option<Num> {
        match b {
            b'-' => Some(Num::Minus),
            b'0' => Some(Num::Zero),
            b'1'..=b'9' => Some(Num::Int),
            _ => None,
        }
    }

    /// Whether the number may end here.
    fn complete(self) -> bool {
        matches!(self, Num::Zero | Num::Int | Num::Frac | Num::ExpInt)
    }

    /// The state after `b`, if `b` continues the number (with a `fraction` and an
    /// `exponent` where they are allowed).
    fn next(self, b: u8, fraction: bool, exponent: bool) -> Option<Num> {
        let digit = b.is_ascii_digit();
        Some(match (self, b) {
            // (an integer's zero is `0`, never `-0`)
            (Num::Minus, b'0') if fraction => Num::Zero,
            (Num::Minus, b'1'..=b'9') => Num::Int,
            (Num::Int, _) if digit => Num::Int,
            (Num::Zero | Num::Int, b'.') if fraction => Num::Dot,
            (Num::Dot | Num::Frac, _) if digit => Num::Frac,
            (Num::Zero | Num::Int | Num::Frac, b'e' | b'E') if exponent => Num::Exp,
            (Num::Exp, b'+' | b'-') => Num::ExpSign,
            (Num::Exp | Num::ExpSign | Num::ExpInt, _) if digit => Num::ExpInt,
            _ => return None,
        })
    }

    /// The part of a bounded number (which has no exponent).
    fn part(self) -> Part {
        match self {
            Num::Minus => Part::Minus,
            Num::Zero => Part::Zero,
            Num::Int => Part::Int,
            Num::Dot => Part::Dot,
            Num::Frac => Part::Frac,
            _ => unreachable!("a bounded number has no exponent"),
        }
    }
}

/// How far a text is into one value of a [`Grammar`] (a small `Copy` value: the walk
/// over the vocabulary copies it at every branch). Only the open frames count for
/// equality and hashing.
#[derive(Clone, Copy, Debug)]
pub struct JsonState {
    frames: [Frame; MAX_DEPTH],
    depth: u8,
    space: u8,
    gap: Gap,
    done: bool,
    /// The value of the bounded number being read (zero otherwise).
    num: Reg,
    /// The pattern's state in the patterned string being read (zero otherwise).
    pat: u32,
}

impl PartialEq for JsonState {
    fn eq(&self, o: &Self) -> bool {
        (
            self.depth, self.space, self.gap, self.done, self.num, self.pat,
        ) == (o.depth, o.space, o.gap, o.done, o.num, o.pat)
            && self.open() == o.open()
    }
}

impl Eq for JsonState {}

impl std::hash::Hash for JsonState {
    fn hash<H: std::hash::Hasher>(&self, h: &mut H) {
        (self.space, self.gap, self.done, self.num, self.pat).hash(h);
        self.open().hash(h);
    }
}

impl JsonState {
    /// Whether the value is closed (nothing may follow).
    pub fn done(&self) -> bool {
        self.done
    }

    fn open(&self) -> &[Frame] {
        &self.frames[..self.depth as usize]
    }

    fn top(&self) -> Option<Frame> {
        self.open().last().copied()
    }

    fn set_top(&mut self, at: Local) {
        self.frames[self.depth as usize - 1].at = at;
    }

    fn push(&mut self, f: Frame) -> bool {
        if self.depth as usize == MAX_DEPTH {
            return false;
        }
        self.frames[self.depth as usize] = f;
        self.depth += 1;
        true
    }
}

/// Grammar ids, one per grammar made.
static GRAMMARS: AtomicU64 = AtomicU64::new(0);

/// Grammars by what they were made of, the most recently asked last.
type Kept = Vec<(String, Arc<Grammar>)>;

/// Most grammars [`cached`] keeps, and most bytes they may hold together.
const KEPT_GRAMMARS: usize = 32;
const KEPT_BYTES: usize = 32 << 20;

/// The grammar made from `key` (what it is made of, as text) by `make`, made once
/// while it is among the most recently asked: a client that sends the same schema
/// with every request has it compiled once, and the vocabulary walk's kept sets (by
/// grammar) carry over from request to request. Errors are not kept.
pub fn cached<E>(
    key: String,
    make: impl FnOnce() -> Result<Grammar, E>,
) -> Result<Arc<Grammar>, E> {
    static KEPT: OnceLock<std::sync::Mutex<Kept>> = OnceLock::new();
    let kept = KEPT.get_or_init(Default::default);
    let lock = || kept.lock().unwrap_or_else(|e| e.into_inner());
    {
        let mut k = lock();
        if let Some(i) = k.iter().position(|(s, _)| *s == key) {
            // the most recent last
            let hit = k.remove(i);
            let g = hit.1.clone();
            k.push(hit);
            return Ok(g);
        }
    }
    let g = Arc::new(make()?);
    let mut k = lock();
    k.retain(|(s, _)| *s != key);
    k.push((key, g.clone()));
    while k.len() > KEPT_GRAMMARS || k.iter().map(|(_, g)| g.bytes()).sum::<usize>() > KEPT_BYTES {
        k.remove(0);
    }
    Ok(g)
}

impl Grammar {
    /// From its nodes (checked by [`schema::compile`]: children in range, unions of
    /// non-unions told apart by their first byte).
    fn new(nodes: Vec<Node>, root: u16, patterns: Vec<Pattern>) -> Grammar {
        Grammar {
            id: GRAMMARS.fetch_add(1, Ordering::Relaxed),
            nodes,
            root,
            patterns,
        }
    }

    /// About how many bytes it holds.
    fn bytes(&self) -> usize {
        self.nodes.len() * std::mem::size_of::<Node>()
            + self.patterns.iter().map(Pattern::bytes).sum::<usize>()
    }

    /// JSON mode's: one object of any keys and values (made once).
    pub fn object() -> Arc<Grammar> {
        static OBJECT: OnceLock<Arc<Grammar>> = OnceLock::new();
        OBJECT
            .get_or_init(|| {
                let mut nodes = Vec::new();
                let root = any_value(&mut nodes);
                let Node::OneOf(alts) = &nodes[root as usize] else {
                    unreachable!()
                };
                let object = alts[0];
                Arc::new(Grammar::new(nodes, object, Vec::new()))
            })
            .clone()
    }

    /// The state before the first byte.
    pub fn start(&self) -> JsonState {
        let idle = Frame {
            node: 0,
            at: Local::Num(Num::Minus),
        };
        JsonState {
            frames: [idle; MAX_DEPTH],
            depth: 0,
            space: 0,
            gap: Gap::None,
            done: false,
            num: Reg::default(),
            pat: 0,
        }
    }

    /// The state after `bytes` from `s`, if they continue the value.
    pub fn after(&self, mut s: JsonState, bytes: &[u8]) -> Option<JsonState> {
        bytes.iter().all(|&b| self.feed(&mut s, b)).then_some(s)
    }

    fn node(&self, i: u16) -> &Node {
        &self.nodes[i as usize]
    }

    /// Read byte `b`: false (the state then unspecified) if the text can no longer be
    /// the start of a value of the grammar.
    pub fn feed(&self, s: &mut JsonState, b: u8) -> bool {
        let space = matches!(b, b' ' | b'\t' | b'\n' | b'\r');
        let top = s.top();
        // between the tokens of an object or array (none before the value: padding
        // would only delay it)
        if space && top.is_some_and(|f| matches!(f.at, Local::Obj { .. } | Local::Arr { .. })) {
            s.space += 1;
            s.gap = match (s.gap, b) {
                (Gap::None, b' ') => Gap::Space,
                (Gap::None | Gap::Space, b'\r') => Gap::Cr,
                (Gap::None | Gap::Space | Gap::Cr, b'\n') => Gap::Indent,
                (Gap::Indent, b' ' | b'\t') => Gap::Indent,
                _ => return false,
            };
            return s.space <= 3 + INDENT * s.depth;
        }
        s.space = 0;
        if s.gap == Gap::Cr {
            return false;
        }
        s.gap = Gap::None;
        let Some(Frame { node, at }) = top else {
            return !s.done && self.begin(s, self.root, b);
        };
        match at {
            Local::Obj { phase, next } => self.in_object(s, node, phase, next, b),
            Local::Arr { phase, count } => self.in_array(s, node, phase, count, b),
            Local::Str { esc, len } => self.string(s, node, esc, len, b),
            Local::Key { j, i } => self.key(s, j, i, b),
            Local::Num(n) => self.number(s, node, n, b),
            Local::Lit { j, i } => self.literal(s, node, j as usize, i as usize, b),
            Local::Raw => self.raw(s, node, b),
        }
    }

    /// A byte of plain text: the value ends where nothing can follow.
    fn raw(&self, s: &mut JsonState, node: u16, b: u8) -> bool {
        let Node::Text { pattern } = *self.node(node) else {
            unreachable!()
        };
        let Some((t, (_, most))) = self.patterns[pattern as usize].next(s.pat, b) else {
            return false;
        };
        s.pat = t;
        if most == 0 {
            s.pat = 0;
            self.end_value(s);
        }
        true
    }

    /// Whether the text may end at `s` though more may follow (plain text only: a JSON
    /// value ends when it closes): then end-of-text tokens may be picked.
    pub fn may_end(&self, s: &JsonState) -> bool {
        let text = |node: u16, pat: u32| match *self.node(node) {
            Node::Text { pattern } => self.patterns[pattern as usize].ends(pat),
            _ => false,
        };
        match s.top() {
            Some(Frame {
                node,
                at: Local::Raw,
            }) => text(node, s.pat),
            None if !s.done => match *self.node(self.root) {
                Node::Text { pattern } => text(self.root, self.patterns[pattern as usize].start()),
                _ => false,
            },
            _ => false,
        }
    }

    /// Plain text that `pattern` matches whole (vLLM's `guided_regex`).
    pub fn regex(pattern: &str) -> Result<Grammar, String> {
        Ok(Grammar::text(Pattern::whole(pattern)?))
    }

    /// Exactly one of `choices` (vLLM's `guided_choice`).
    pub fn choice(choices: &[String]) -> Result<Grammar, String> {
        if choices.is_empty() || choices.iter().any(String::is_empty) {
            return Err("the choices must be non-empty strings, at least one".into());
        }
        Ok(Grammar::text(Pattern::one_of(choices)?))
    }

    fn text(p: Pattern) -> Grammar {
        Grammar::new(vec![Node::Text { pattern: 0 }], 0, vec![p])
    }

    /// Whether a value of `node` may start with `b`.
    fn starts(&self, node: u16, b: u8) -> bool {
        match self.node(node) {
            Node::Object { .. } | Node::Tagged { .. } => b == b'{',
            Node::Array { .. } => b == b'[',
            Node::String { .. } => b == b'"',
            Node::Number { .. } => Num::first(b).is_some(),
            Node::Literals(lits) => lits.iter().any(|l| l[0] == b),
            Node::OneOf(alts) => alts.iter().any(|&a| self.starts(a, b)),
            Node::Text { pattern } => {
                let p = &self.patterns[*pattern as usize];
                p.next(p.start(), b).is_some()
            }
        }
    }

    /// A value of `node` starting with `b`.
    fn begin(&self, s: &mut JsonState, node: u16, b: u8) -> bool {
        let at = match self.node(node) {
            Node::Text { pattern } => {
                s.pat = self.patterns[*pattern as usize].start();
                return s.push(Frame {
                    node,
                    at: Local::Raw,
                }) && self.raw(s, node, b);
            }
            Node::OneOf(alts) => {
                return alts
                    .iter()
                    .find(|&&a| self.starts(a, b))
                    .is_some_and(|&a| self.begin(s, a, b));
            }
            Node::Object { .. } | Node::Tagged { .. } if b == b'{' => Local::Obj {
                phase: Phase::Open,
                next: 0,
            },
            Node::Array { .. } if b == b'[' => Local::Arr {
                phase: Phase::Open,
                count: 0,
            },
            Node::String { pattern, .. } if b == b'"' => {
                if let Some(p) = pattern {
                    s.pat = self.patterns[*p as usize].start();
                }
                Local::Str {
                    esc: Esc::None,
                    len: 0,
                }
            }
            Node::Number { integer, range } => match Num::first(b) {
                Some(n) => {
                    if let Some(r) = range {
                        let Some(reg) = Reg::default().next(n.part(), b) else {
                            return false;
                        };
                        if !r.reachable(*integer, n.part(), &reg) {
                            return false;
                        }
                        s.num = reg;
                    }
                    Local::Num(n)
                }
                None => return false,
            },
            Node::Literals(lits) => match lits.iter().position(|l| l[0] == b) {
                Some(j) => {
                    if !s.push(Frame {
                        node,
                        at: Local::Lit { j: j as u8, i: 1 },
                    }) {
                        return false;
                    }
                    if whole(lits, j, 1) {
                        self.end_value(s);
                    }
                    return true;
                }
                None => return false,
            },
            _ => return false,
        };
        s.push(Frame { node, at })
    }

    /// Close the top frame's value: its parent (if any) goes on after it.
    fn end_value(&self, s: &mut JsonState) {
        s.depth -= 1;
        let closed = s.frames[s.depth as usize];
        let Some(Frame { node, at }) = s.top() else {
            s.done = true;
            return;
        };
        match at {
            // a tag read: the object goes on as its case, after the tag
            Local::Obj {
                phase: Phase::Inside,
                ..
            } if matches!(self.node(node), Node::Tagged { .. }) => {
                let (Node::Tagged { cases, .. }, Local::Lit { j, .. }) =
                    (self.node(node), closed.at)
                else {
                    unreachable!()
                };
                s.frames[s.depth as usize - 1] = Frame {
                    node: cases[j as usize],
                    at: Local::Obj {
                        phase: Phase::After,
                        next: 1,
                    },
                };
            }
            Local::Obj { phase, next } => s.set_top(Local::Obj {
                phase: if phase == Phase::Key {
                    Phase::Colon
                } else {
                    Phase::After
                },
                next,
            }),
            Local::Arr { count, .. } => s.set_top(Local::Arr {
                phase: Phase::After,
                count: (count + 1).min(self.counted(node)),
            }),
            _ => unreachable!("only objects and arrays hold values"),
        }
    }

    /// An object's declared properties and the node of its other keys' values (a tagged
    /// union's, until its tag is read: the tag alone).
    fn props(&self, node: u16) -> (&[Prop], Option<u16>) {
        match self.node(node) {
            Node::Object { props, values } => (props, *values),
            Node::Tagged { tag, .. } => (std::slice::from_ref(tag), None),
            _ => unreachable!("not an object"),
        }
    }

    /// A byte between the tokens of an object.
    fn in_object(&self, s: &mut JsonState, node: u16, phase: Phase, next: u8, b: u8) -> bool {
        let (props, values) = self.props(node);
        let rest = &props[next as usize..];
        let set = |s: &mut JsonState, phase| {
            s.set_top(Local::Obj { phase, next });
            true
        };
        match (phase, b) {
            // every required property passed
            (Phase::Open | Phase::After, b'}') => {
                rest.iter().all(|p| !p.required) && {
                    self.end_value(s);
                    true
                }
            }
            (Phase::Open | Phase::Next, b'"') => {
                let at = if !rest.is_empty() {
                    Local::Key { j: next, i: 1 }
                } else if props.is_empty() && values.is_some() {
                    Local::Str {
                        esc: Esc::None,
                        len: 0,
                    }
                } else {
                    return false;
                };
                set(s, Phase::Key);
                s.push(Frame { node, at })
            }
            (Phase::After, b',') => {
                (!rest.is_empty() || (props.is_empty() && values.is_some())) && set(s, Phase::Next)
            }
            (Phase::Colon, b':') => set(s, Phase::Value),
            (Phase::Value, _) => {
                let value = match next.checked_sub(1) {
                    Some(p) if !props.is_empty() => props[p as usize].value,
                    _ => values.expect("a key was read"),
                };
                set(s, Phase::Inside);
                self.begin(s, value, b)
            }
            _ => false,
        }
    }

    /// How far an array's values are counted: up to the bound that matters, or past
    /// its first items' own schemas.
    fn counted(&self, node: u16) -> u16 {
        let Node::Array {
            min, max, prefix, ..
        } = self.node(node)
        else {
            unreachable!()
        };
        max.unwrap_or(*min).max(prefix.len() as u16)
    }

    /// A byte between the tokens of an array.
    fn in_array(&self, s: &mut JsonState, node: u16, phase: Phase, count: u16, b: u8) -> bool {
        let Node::Array {
            items,
            min,
            max,
            prefix,
        } = self.node(node)
        else {
            unreachable!()
        };
        let (min, max) = (*min, *max);
        let items = prefix.get(count as usize).copied().unwrap_or(*items);
        let room = max.is_none_or(|m| count < m);
        match (phase, b) {
            (Phase::Open | Phase::After, b']') => {
                count >= min && {
                    self.end_value(s);
                    true
                }
            }
            (Phase::Open | Phase::Next, _) if room => {
                s.set_top(Local::Arr {
                    phase: Phase::Inside,
                    count,
                });
                self.begin(s, items, b)
            }
            (Phase::After, b',') if room => {
                s.set_top(Local::Arr {
                    phase: Phase::Next,
                    count,
                });
                true
            }
            _ => false,
        }
    }

    /// A byte of a string: a value (its node a [`Node::String`]) or a key (its node the
    /// object).
    fn string(&self, s: &mut JsonState, node: u16, esc: Esc, len: u16, b: u8) -> bool {
        let (min, max, pattern) = match *self.node(node) {
            Node::String { min, max, pattern } => {
                (min, max, pattern.map(|p| &self.patterns[p as usize]))
            }
            _ => (0, None, None),
        };
        // a character more (lengths are counted up to the bound that matters)
        let more = || (max.is_none_or(|m| len < m)).then(|| (len + 1).min(max.unwrap_or(min)));
        // the string's byte `b` stands for, if any (a pattern reads the string itself)
        let byte = match (esc, b) {
            (Esc::None, b'"' | b'\\') | (Esc::Hex { .. } | Esc::Pair { .. }, _) => None,
            (Esc::Backslash, b'u') if pattern.is_some() => return false,
            (Esc::Backslash, b'b') => Some(0x08),
            (Esc::Backslash, b'f') => Some(0x0c),
            (Esc::Backslash, b'n') => Some(b'\n'),
            (Esc::Backslash, b'r') => Some(b'\r'),
            (Esc::Backslash, b't') => Some(b'\t'),
            _ => Some(b),
        };
        // the pattern's state after the string's byte `x`, if the string may still
        // match within its length bounds (`l` characters so far)
        let step = |p: &Pattern, pat: u32, x: u8, l: u16| {
            let (t, (fewest, most)) = p.next(pat, x)?;
            let short = max.is_some_and(|m| l as u32 + fewest as u32 > m as u32);
            let long = most != pattern::UNBOUNDED && (l as u32 + most as u32) < min as u32;
            (!short && !long).then_some(t)
        };
        let (esc, len) = match esc {
            Esc::None => match b {
                b'"' => {
                    return len >= min && pattern.is_none_or(|p| p.ends(s.pat)) && {
                        s.pat = 0;
                        self.end_value(s);
                        true
                    };
                }
                b'\\' => match more() {
                    // (with a pattern, only if some escape may follow)
                    Some(len)
                        if pattern.is_none_or(|p| {
                            ESCAPED.iter().any(|&x| step(p, s.pat, x, len).is_some())
                        }) =>
                    {
                        (Esc::Backslash, len)
                    }
                    _ => return false,
                },
                0..=0x1f => return false,
                0x20..=0x7f => match more() {
                    Some(len) => (Esc::None, len),
                    None => return false,
                },
                // the first byte of a multi-byte character
                _ => {
                    let (left, lo, hi) = match b {
                        0xc2..=0xdf => (1, 0x80, 0xbf),
                        0xe0 => (2, 0xa0, 0xbf),
                        0xed => (2, 0x80, 0x9f),
                        0xe1..=0xef => (2, 0x80, 0xbf),
                        0xf0 => (3, 0x90, 0xbf),
                        0xf1..=0xf3 => (3, 0x80, 0xbf),
                        0xf4 => (3, 0x80, 0x8f),
                        _ => return false,
                    };
                    match more() {
                        Some(len) => (Esc::Utf8 { left, lo, hi }, len),
                        None => return false,
                    }
                }
            },
            Esc::Utf8 { left, lo, hi } if (lo..=hi).contains(&b) => {
                let esc = if left == 1 {
                    Esc::None
                } else {
                    Esc::Utf8 {
                        left: left - 1,
                        lo: 0x80,
                        hi: 0xbf,
                    }
                };
                (esc, len)
            }
            Esc::Utf8 { .. } => return false,
            Esc::Backslash => match b {
                b'"' | b'\\' | b'/' | b'b' | b'f' | b'n' | b'r' | b't' => (Esc::None, len),
                b'u' => (
                    Esc::Hex {
                        left: 4,
                        sur: Sur::Start,
                        low: false,
                    },
                    len,
                ),
                _ => return false,
            },
            Esc::Hex { left, sur, low } if b.is_ascii_hexdigit() => {
                let sur = match (sur, b.to_ascii_lowercase()) {
                    (Sur::Start, b'd') => Sur::D,
                    (Sur::Start, _) => Sur::No,
                    (Sur::D, b'8'..=b'b') => Sur::High,
                    (Sur::D, b'c'..=b'f') => Sur::Low,
                    (Sur::D, _) => Sur::No,
                    (known, _) => known,
                };
                // a low surrogate only as a pair's second, and there nothing else
                let decided = !matches!(sur, Sur::Start | Sur::D);
                if decided && (sur == Sur::Low) != low {
                    return false;
                }
                let esc = match (left, sur) {
                    (1, Sur::High) => Esc::Pair {
                        after_backslash: false,
                    },
                    (1, _) => Esc::None,
                    _ => Esc::Hex {
                        left: left - 1,
                        sur,
                        low,
                    },
                };
                (esc, len)
            }
            Esc::Hex { .. } => return false,
            // (the pair is one character, counted at its first backslash)
            Esc::Pair {
                after_backslash: false,
            } if b == b'\\' => (
                Esc::Pair {
                    after_backslash: true,
                },
                len,
            ),
            Esc::Pair {
                after_backslash: true,
            } if b == b'u' => (
                Esc::Hex {
                    left: 4,
                    sur: Sur::Start,
                    low: true,
                },
                len,
            ),
            Esc::Pair { .. } => return false,
        };
        if let (Some(p), Some(byte)) = (pattern, byte) {
            match step(p, s.pat, byte, len) {
                Some(t) => s.pat = t,
                None => return false,
            }
        }
        s.set_top(Local::Str { esc, len });
        true
    }

    /// A byte of a number read to `n`.
    fn number(&self, s: &mut JsonState, node: u16, n: Num, b: u8) -> bool {
        let Node::Number { integer, range } = *self.node(node) else {
            unreachable!()
        };
        match n.next(b, !integer, !integer && range.is_none()) {
            Some(n) => {
                if let Some(r) = range {
                    match s.num.next(n.part(), b) {
                        Some(reg) if r.reachable(integer, n.part(), &reg) => s.num = reg,
                        _ => return false,
                    }
                }
                s.set_top(Local::Num(n));
                true
            }
            // the number ended: `b` is what follows it
            None if n.complete() && range.is_none_or(|r| r.ends(&s.num)) => {
                s.num = Reg::default();
                self.end_value(s);
                self.feed(s, b)
            }
            None => false,
        }
    }

    /// A byte of a declared key: its first `i` bytes are those of property `j`'s.
    fn key(&self, s: &mut JsonState, j: u8, i: u8, b: u8) -> bool {
        let parent = s.frames[s.depth as usize - 2];
        let Local::Obj { next, .. } = parent.at else {
            unreachable!()
        };
        let (props, _) = self.props(parent.node);
        let (j, i) = (j as usize, i as usize);
        // the keys that may come: up to the first required one
        let last = (next as usize..props.len())
            .find(|&k| props[k].required)
            .unwrap_or(props.len() - 1);
        let read = &props[j].key[..i];
        let Some(k) = (j..=last).find(|&k| {
            let key = &props[k].key;
            key.len() > i && key.starts_with(read) && key[i] == b
        }) else {
            return false;
        };
        if props[k].key.len() == i + 1 {
            // (a key's closing quote ends it: no key is the start of another)
            s.depth -= 1;
            s.set_top(Local::Obj {
                phase: Phase::Colon,
                next: k as u8 + 1,
            });
        } else {
            s.set_top(Local::Key {
                j: k as u8,
                i: i as u8 + 1,
            });
        }
        true
    }

    /// A byte of a literal: its first `i` bytes are those of literal `j`.
    fn literal(&self, s: &mut JsonState, node: u16, j: usize, i: usize, b: u8) -> bool {
        let Node::Literals(lits) = self.node(node) else {
            unreachable!()
        };
        // those that fit what was read follow `j` (they are sorted)
        let read = &lits[j][..i];
        let fits = lits[j..].iter().take_while(|l| l.starts_with(read));
        if let Some(k) = fits
            .enumerate()
            .find(|(_, l)| l.len() > i && l[i] == b)
            .map(|(k, _)| j + k)
        {
            s.set_top(Local::Lit {
                j: k as u8,
                i: i as u16 + 1,
            });
            if whole(lits, k, i + 1) {
                self.end_value(s);
            }
            true
        } else if lits[j].len() == i {
            // a whole literal that others extend (a number): `b` is what follows it
            self.end_value(s);
            self.feed(s, b)
        } else {
            false
        }
    }
}

/// The characters a JSON escape may stand for (but `\u`'s).
const ESCAPED: [u8; 8] = [b'"', b'\\', b'/', 0x08, 0x0c, b'\n', b'\r', b'\t'];

/// Whether literal `k`, read to `i` bytes, is whole and no other extends it (then it
/// ends at once; else at the first byte that does not continue another).
fn whole(lits: &[Vec<u8>], k: usize, i: usize) -> bool {
    lits[k].len() == i && !lits.get(k + 1).is_some_and(|n| n.starts_with(&lits[k]))
}

/// Push the nodes of any JSON value onto `nodes`: the union's index (its first
/// alternative the object).
pub(crate) fn any_value(nodes: &mut Vec<Node>) -> u16 {
    let base = nodes.len() as u16;
    let any = base + 5;
    nodes.extend([
        Node::Object {
            props: Vec::new(),
            values: Some(any),
        },
        Node::Array {
            items: any,
            min: 0,
            max: None,
            prefix: Vec::new(),
        },
        Node::String {
            min: 0,
            max: None,
            pattern: None,
        },
        Node::Number {
            integer: false,
            range: None,
        },
        Node::Literals(vec![b"false".to_vec(), b"null".to_vec(), b"true".to_vec()]),
        Node::OneOf((base..base + 5).collect()),
    ]);
    any
}

/// A tokenizer's vocabulary as byte strings, sorted, for [`JsonVocab::allowed`]:
/// special tokens and tokens with no bytes are left out.
pub struct JsonVocab {
    tokens: Vec<(Vec<u8>, u32)>,
    /// The sets of recent states (a long string is the same state token after token),
    /// by grammar, state and length.
    recent: std::sync::Mutex<HashMap<(u64, JsonState, usize), Set>>,
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
    /// whose bytes continue `g`'s value from `state`.
    pub fn allowed(&self, g: &Grammar, state: JsonState, allowed: &mut [bool]) {
        let key = (g.id, state, allowed.len());
        let lock = || self.recent.lock().unwrap_or_else(|e| e.into_inner());
        if let Some(set) = lock().get(&key).cloned() {
            allowed.copy_from_slice(&set);
            return;
        }
        self.walk(g, 0, self.tokens.len(), 0, state, allowed);
        let mut recent = lock();
        if recent.len() >= RECENT {
            recent.clear();
        }
        recent.insert(key, Arc::new(allowed.to_vec()));
    }

    /// Set to -inf the `logits` of the tokens that do not continue `g`'s value from
    /// `state`. Where the text may end there ([`Grammar::may_end`]), or where no token
    /// continues it (a vocabulary without the bytes it needs, the nesting limit), the
    /// `ends` (end-of-text ids) are left as they are too: the generation then ends with
    /// the text a whole or a cut value, never a token that breaks it. If nothing with a
    /// finite logit is left, all are left as they are.
    pub fn mask(&self, g: &Grammar, state: JsonState, logits: &mut [f32], ends: &[u32]) {
        let mut ok = vec![false; logits.len()];
        self.allowed(g, state, &mut ok);
        if g.may_end(&state) || !ok.iter().any(|&o| o) {
            for &e in ends {
                if let Some(o) = ok.get_mut(e as usize) {
                    *o = true;
                }
            }
        }
        if ok
            .iter()
            .zip(logits.iter())
            .any(|(&o, x)| o && x.is_finite())
        {
            for (x, ok) in logits.iter_mut().zip(ok) {
                if !ok {
                    *x = f32::NEG_INFINITY;
                }
            }
        }
    }

    /// Tokens `lo..hi` share their first `depth` bytes, which led to `state`.
    fn walk(
        &self,
        g: &Grammar,
        mut lo: usize,
        hi: usize,
        depth: usize,
        state: JsonState,
        allowed: &mut [bool],
    ) {
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
            if g.feed(&mut next, b) {
                self.walk(g, lo, end, depth + 1, next, allowed);
            }
            lo = end;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn accepts(text: &str) -> Option<JsonState> {
        let g = Grammar::object();
        g.after(g.start(), text.as_bytes())
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
                let g = Grammar::object();
                let p = g.after(g.start(), &doc.as_bytes()[..cut]);
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
        let deep = format!("{{\"a\":{}", "[".repeat(MAX_DEPTH - 1));
        assert!(accepts(&deep).is_some());
        assert!(accepts(&format!("{deep}[")).is_none());
        // (one level deep: 3 + 4 bytes; two levels: 3 + 8)
        assert!(accepts("{ \r\n\t  \t").is_some());
        assert!(accepts("{ \r\n\t  \t ").is_none());
        assert!(accepts("{\"a\":[\n          1").is_some());
        assert!(accepts("{\"a\":[\n           1").is_none());
        for gap in [" ", "\n", "\r\n", " \n", " \r\n\t\t", "\n    "] {
            let doc = format!("{{{gap}\"a\"{gap}:{gap}[{gap}1{gap},{gap}2{gap}]{gap}}}");
            assert!(accepts(&doc).is_some_and(|s| s.done()), "{doc:?}");
        }
        for gap in ["  ", "\t", "\n\n", "\r", "\r ", "\n \n", " \n\r\n"] {
            assert!(accepts(&format!("{{{gap}\"a\"")).is_none(), "{gap:?}");
            assert!(accepts(&format!("{{\"a\":1{gap}}}")).is_none(), "{gap:?}");
        }
        assert!(
            accepts(&format!("{{\"{}\"", " ".repeat(200))).is_some(),
            "spaces in strings are free"
        );
        // UTF-8 inside strings: whole characters, and a character's first bytes open
        let g = Grammar::object();
        let read = |b: &[u8]| g.after(g.start(), b);
        for ok in [
            &b"\xc3\xa9"[..],
            b"\xe2\x82\xac",
            b"\xf0\x9f\x98\x80",
            b"\xf4\x8f\xbf\xbf",
            b"\xed\x9f\xbf",
        ] {
            let doc = [&b"{\"a\":\""[..], ok, b"\"}"].concat();
            assert!(read(&doc).is_some_and(|s| s.done()), "{ok:x?}");
            assert!(read(&doc[..6 + ok.len() - 1]).is_some(), "{ok:x?} cut");
        }
        for bad in [
            &b"\x80"[..],
            b"\xc3\x28",
            b"\xc0\xaf",
            b"\xe0\x80\x80",
            b"\xed\xa0\x80",
            b"\xf4\x90\x80\x80",
            b"\xf5",
            b"\xe2\x82\"",
        ] {
            assert!(
                read(&[&b"{\"a\":\""[..], bad].concat()).is_none(),
                "{bad:x?}"
            );
        }
        // \u escapes: surrogates only in pairs (JSON parsers refuse lone ones)
        for ok in [
            r"\u00e9",
            r"\ud83d\ude00",
            r"\uD800\uDC00",
            r"\uDBFF\uDFFF",
            r"\uE000",
        ] {
            let doc = format!("{{\"a\":\"{ok}\"}}");
            assert!(read(doc.as_bytes()).is_some_and(|s| s.done()), "{ok}");
            assert!(
                serde_json::from_str::<serde_json::Value>(&doc).is_ok(),
                "{ok}"
            );
        }
        for bad in [
            r"\ud83d",
            r"\ude00",
            r"\ud83d\u0041",
            r"\ud83dx",
            r"\ud83d\ud83d",
            r"\uDC00\uD800",
        ] {
            let doc = format!("{{\"a\":\"{bad}\"}}");
            assert!(read(doc.as_bytes()).is_none(), "{bad}");
            assert!(
                serde_json::from_str::<serde_json::Value>(&doc).is_err(),
                "{bad}"
            );
        }
    }

    #[test]
    fn plain_text_ends_where_nothing_can_follow_and_may_end_where_it_matches() {
        let g = Grammar::choice(&["yes".into(), "no".into(), "yes, sure".into()]).unwrap();
        let s = g.after(g.start(), b"no").unwrap();
        assert!(s.done(), "nothing can follow no");
        let s = g.after(g.start(), b"yes").unwrap();
        assert!(!s.done() && g.may_end(&s), "yes may end, or go on");
        assert!(g.after(s, b", sure").is_some_and(|s| s.done()));
        assert!(g.after(s, b"!").is_none());
        assert!(!g.may_end(&g.after(g.start(), b"ye").unwrap()));
        assert!(!g.may_end(&g.start()) && g.after(g.start(), b"x").is_none());
        let g = Grammar::regex("[0-9]{3}-[a-z]{2,4}").unwrap();
        for (text, done, may) in [
            ("123-ab", false, true),
            ("123-abcd", true, false),
            ("123-", false, false),
        ] {
            let s = g.after(g.start(), text.as_bytes()).unwrap();
            assert_eq!((s.done(), g.may_end(&s)), (done, may), "{text}");
        }
        assert!(g.after(g.start(), b"12a").is_none());
        let e = Grammar::regex("a*").unwrap();
        assert!(e.may_end(&e.start()), "the empty text matches");
        assert!(Grammar::choice(&[]).is_err() && Grammar::regex("(?=a)").is_err());
        // the vocabulary's walk, and end-of-text let through where the text may end
        let words = ["y", "yes", "es", "no", ", sure", "n", "o", "x"];
        let v = JsonVocab::new(
            words
                .iter()
                .enumerate()
                .map(|(i, w)| (w.as_bytes().to_vec(), i as u32))
                .collect(),
        );
        let g = Grammar::choice(&["yes".into(), "no".into(), "yes, sure".into()]).unwrap();
        let mut logits = vec![0.0f32; words.len() + 1];
        v.mask(&g, g.start(), &mut logits, &[8]);
        let open = |l: &[f32]| l.iter().map(|x| x.is_finite()).collect::<Vec<_>>();
        assert_eq!(
            open(&logits),
            [true, true, false, true, false, true, false, false, false]
        );
        let mut logits = vec![0.0f32; words.len() + 1];
        v.mask(&g, g.after(g.start(), b"yes").unwrap(), &mut logits, &[8]);
        assert_eq!(
            open(&logits),
            [false, false, false, false, true, false, false, false, true]
        );
        // stuck (no token holds the byte the text needs): end-of-text only; with that
        // suppressed too, everything as it was
        let g = Grammar::choice(&["yes".into(), "nz".into()]).unwrap();
        let stuck = g.after(g.start(), b"n").unwrap();
        let mut logits = vec![0.0f32; words.len() + 1];
        v.mask(&g, stuck, &mut logits, &[8]);
        assert_eq!(
            open(&logits),
            [false, false, false, false, false, false, false, false, true]
        );
        let mut logits = vec![0.0f32; words.len() + 1];
        logits[8] = f32::NEG_INFINITY;
        v.mask(&g, stuck, &mut logits, &[8]);
        assert_eq!(
            open(&logits),
            [true, true, true, true, true, true, true, true, false]
        );
    }

    #[test]
    fn grammars_are_kept_by_what_they_are_made_of() {
        let make = |p: &str| {
            let p = p.to_string();
            move || Grammar::regex(&p)
        };
        let a = cached("test:a".into(), make("a+")).unwrap();
        let again = cached("test:a".into(), || -> Result<Grammar, String> {
            panic!("made again")
        })
        .unwrap();
        assert!(Arc::ptr_eq(&a, &again));
        assert!(cached("test:bad".into(), make("(?=a)")).is_err());
        assert!(
            cached("test:bad".into(), make("b")).is_ok(),
            "errors are not kept"
        );
        // the least recently asked go first
        for i in 0..KEPT_GRAMMARS {
            cached(format!("test:{i}"), make("c")).unwrap();
        }
        let a2 = cached("test:a".into(), make("a+")).unwrap();
        assert!(!Arc::ptr_eq(&a, &a2), "pushed out by newer ones");
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

    /// Whether every run of whitespace outside strings in `text` is one JSON writers
    /// put between tokens: ` ?(\r?\n[ \t]*)?`, at most `3 + INDENT` bytes a level.
    fn gaps_as_writers_put_them(text: &[u8]) -> bool {
        let (mut in_str, mut esc, mut run, mut depth) = (false, false, Vec::new(), 0);
        for &b in text.iter().chain(b"x") {
            if in_str {
                (in_str, esc) = (esc || b != b'"', !esc && b == b'\\');
                continue;
            }
            if b.is_ascii_whitespace() {
                run.push(b);
                continue;
            }
            let r = run.strip_prefix(b" ").unwrap_or(&run);
            let ok = match r.strip_prefix(b"\r\n").or(r.strip_prefix(b"\n")) {
                Some(indent) => indent.iter().all(|&c| c == b' ' || c == b'\t'),
                None => r.is_empty(),
            };
            if !ok || run.len() > 3 + INDENT as usize * depth {
                return false;
            }
            match b {
                b'{' | b'[' => depth += 1,
                b'}' | b']' => depth -= 1,
                _ => {}
            }
            run.clear();
            in_str = b == b'"';
        }
        true
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
                let g = Grammar::object();
                let ours = g.after(g.start(), &m).is_some_and(|s| s.done());
                // (strings must be valid UTF-8 for both)
                let parsed = serde_json::from_slice::<serde_json::Value>(&m);
                // (the grammar allows numbers past f64's range; serde_json refuses them)
                if parsed
                    .as_ref()
                    .is_err_and(|e| e.to_string().contains("number out of range"))
                {
                    continue;
                }
                let theirs = parsed.is_ok_and(|v| v.is_object())
                    && !m[0].is_ascii_whitespace()
                    && !m.last().unwrap().is_ascii_whitespace()
                    && gaps_as_writers_put_them(&m);
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
        let g = Grammar::object();
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
            v.allowed(&g, state, &mut got);
            let want: Vec<bool> = vocab
                .iter()
                .map(|(b, _)| !b.is_empty() && g.after(state, b).is_some())
                .collect();
            assert_eq!(got, want, "after {prefix:?}");
            // again, from the sets kept
            let mut again = vec![false; words.len() + 1];
            v.allowed(&g, state, &mut again);
            assert_eq!(again, want, "after {prefix:?}, kept");
            let mut logits = vec![1.0f32; words.len() + 1];
            v.mask(&g, state, &mut logits, &[]);
            let open: Vec<bool> = logits.iter().map(|x| x.is_finite()).collect();
            assert_eq!(open, want, "mask after {prefix:?}");
            assert!(got.iter().any(|&a| a), "{prefix:?}");
        }
    }
}
