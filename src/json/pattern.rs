//! A string's `pattern` (JSON Schema: an ECMA-262 regular expression that matches
//! somewhere in the string) as a dense DFA over the string's bytes, read as the string
//! is written: a character is taken only while some way to go on matches. The pattern
//! is searched as `(?s:.*)(?:pattern)(?s:.*)` matched whole; `\d`, `\w` and `\b` are
//! ECMA's ASCII ones. Patterns the `regex` syntax does not have (look-around,
//! back-references) or whose DFA would be too large are refused.

use regex_automata::dfa::{dense, Automaton, StartKind};
use regex_automata::util::primitives::StateID;
use regex_automata::util::start;
use regex_automata::Anchored;
use std::collections::HashMap;

/// Most bytes a pattern's DFA may take, and states it may have.
const MAX_DFA_BYTES: usize = 4 << 20;
const MAX_STATES: usize = 20_000;

/// A compiled pattern.
pub struct Pattern {
    dfa: dense::DFA<Vec<u32>>,
    start: u32,
    /// The states from which the string may still end matched, with the fewest and the
    /// most characters it may still take to get there ([`UNBOUNDED`]: no most).
    live: HashMap<u32, (u16, u16)>,
}

/// The most characters of a pattern that loops.
pub const UNBOUNDED: u16 = u16::MAX;

impl std::fmt::Debug for Pattern {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "Pattern({} live states)", self.live.len())
    }
}

impl Pattern {
    /// The DFA of `pattern` searched in a string (JSON Schema's `pattern`), or why
    /// there is none.
    pub fn compile(pattern: &str) -> Result<Pattern, String> {
        Pattern::build(&format!("(?s:.*)(?:{})(?s:.*)", ecma(pattern)))
    }

    /// The DFA of `pattern` matching a whole text (vLLM's `guided_regex`; the `regex`
    /// crate's syntax).
    pub fn whole(pattern: &str) -> Result<Pattern, String> {
        Pattern::build(&format!("(?:{pattern})$"))
    }

    /// The DFA of exactly one of `texts`.
    pub fn one_of(texts: &[String]) -> Result<Pattern, String> {
        let alts: Vec<String> = texts.iter().map(|t| escape(t)).collect();
        Pattern::build(&format!("(?:{})$", alts.join("|")))
    }

    /// The DFA of `whole`, anchored at the start.
    fn build(whole: &str) -> Result<Pattern, String> {
        let dfa = dense::Builder::new()
            .configure(
                dense::Config::new()
                    .start_kind(StartKind::Anchored)
                    .dfa_size_limit(Some(MAX_DFA_BYTES))
                    .determinize_size_limit(Some(MAX_DFA_BYTES)),
            )
            .build(whole)
            .map_err(|e| {
                let e = e.to_string();
                if e.contains("exceeded") || e.contains("limit") {
                    "its DFA would be too large (simplify it)".to_string()
                } else {
                    format!("not a pattern the grammar can hold ({e}; look-around and back-references are not supported)")
                }
            })?;
        let start = dfa
            .start_state(&start::Config::new().anchored(Anchored::Yes))
            .map_err(|e| e.to_string())?
            .as_u32();
        // every state reachable from the start; edges weigh 1 where a character
        // starts (0 for a UTF-8 continuation byte)
        let mut index: HashMap<u32, usize> = HashMap::from([(start, 0)]);
        let mut states = vec![start];
        let mut out: Vec<Vec<(usize, u16)>> = vec![Vec::new()];
        let mut accepting = Vec::new();
        let mut i = 0;
        while i < states.len() {
            let s = id(states[i]);
            if dfa.is_match_state(dfa.next_eoi_state(s)) {
                accepting.push(i);
            }
            for b in 0..=255u8 {
                let t = dfa.next_state(s, b);
                if dfa.is_dead_state(t) || dfa.is_quit_state(t) {
                    continue;
                }
                let j = *index.entry(t.as_u32()).or_insert_with(|| {
                    states.push(t.as_u32());
                    out.push(Vec::new());
                    states.len() - 1
                });
                out[i].push((j, (b & 0xc0 != 0x80) as u16));
            }
            if states.len() > MAX_STATES {
                return Err("its DFA would be too large (simplify it)".into());
            }
            i += 1;
        }
        let (fewest, most) = lengths(&out, &accepting);
        if fewest[0].is_none() {
            return Err("no string matches it".into());
        }
        let live = (0..states.len())
            .filter_map(|i| fewest[i].map(|f| (states[i], (f, most[i]))))
            .collect();
        Ok(Pattern { dfa, start, live })
    }

    /// About how many bytes it holds.
    pub fn bytes(&self) -> usize {
        self.dfa.memory_usage() + self.live.len() * 16
    }

    /// The fewest and most characters of a string it matches.
    pub fn lengths(&self) -> (u16, u16) {
        self.live[&self.start]
    }

    /// The state before the string's first byte.
    pub fn start(&self) -> u32 {
        self.start
    }

    /// The state after byte `b` of the string, if the string may still match, with the
    /// fewest and most characters still to come after the one `b` is part of.
    pub fn next(&self, s: u32, b: u8) -> Option<(u32, (u16, u16))> {
        let t = self.dfa.next_state(id(s), b).as_u32();
        self.live.get(&t).map(|&l| (t, l))
    }

    /// Whether the string may end here.
    pub fn ends(&self, s: u32) -> bool {
        self.dfa.is_match_state(self.dfa.next_eoi_state(id(s)))
    }
}

/// For each state of the graph `out` (edges with their weights), the least and the
/// greatest weight of a path to an accepting state: `None` where none leads there,
/// [`UNBOUNDED`] where a path of any weight does (a loop).
fn lengths(out: &[Vec<(usize, u16)>], accepting: &[usize]) -> (Vec<Option<u16>>, Vec<u16>) {
    let n = out.len();
    let mut into: Vec<Vec<(usize, u16)>> = vec![Vec::new(); n];
    for (i, edges) in out.iter().enumerate() {
        for &(j, w) in edges {
            into[j].push((i, w));
        }
    }
    // fewest: 0-1 breadth-first from the accepting states, backwards
    let mut fewest: Vec<Option<u16>> = vec![None; n];
    let mut queue = std::collections::VecDeque::new();
    for &a in accepting {
        fewest[a] = Some(0);
        queue.push_back(a);
    }
    while let Some(j) = queue.pop_front() {
        let d = fewest[j].unwrap();
        for &(i, w) in &into[j] {
            let nd = d.saturating_add(w);
            if fewest[i].is_none_or(|f| nd < f) {
                fewest[i] = Some(nd);
                if w == 0 {
                    queue.push_front(i);
                } else {
                    queue.push_back(i);
                }
            }
        }
    }
    // most, over the live states: strongly connected components (Kosaraju); a
    // component with an edge of weight 1 inside loops
    let live: Vec<bool> = fewest.iter().map(Option::is_some).collect();
    let mut order = Vec::with_capacity(n);
    let mut seen = vec![false; n];
    for root in (0..n).filter(|&r| live[r]) {
        if seen[root] {
            continue;
        }
        seen[root] = true;
        let mut stack = vec![(root, 0usize)];
        while let Some((v, k)) = stack.pop() {
            match out[v].get(k) {
                Some(&(w, _)) => {
                    stack.push((v, k + 1));
                    if live[w] && !seen[w] {
                        seen[w] = true;
                        stack.push((w, 0));
                    }
                }
                None => order.push(v),
            }
        }
    }
    let mut comp = vec![usize::MAX; n];
    let mut comps = 0;
    for &root in order.iter().rev() {
        if comp[root] != usize::MAX {
            continue;
        }
        comp[root] = comps;
        let mut stack = vec![root];
        while let Some(v) = stack.pop() {
            for &(u, _) in &into[v] {
                if live[u] && comp[u] == usize::MAX {
                    comp[u] = comps;
                    stack.push(u);
                }
            }
        }
        comps += 1;
    }
    // components come out in topological order (edges run from lower to higher or
    // within one): the greatest weights, from the last component back. One with an
    // edge inside loops, and adds characters as it does (no cycle of a DFA over UTF-8
    // is all continuation bytes: at most three come in a row)
    let mut loops = vec![false; comps];
    let mut members: Vec<Vec<usize>> = vec![Vec::new(); comps];
    for v in (0..n).filter(|&v| live[v]) {
        members[comp[v]].push(v);
        if out[v].iter().any(|&(u, _)| live[u] && comp[u] == comp[v]) {
            loops[comp[v]] = true;
        }
    }
    let mut most = vec![0u16; n];
    for c in (0..comps).rev() {
        let m = if loops[c] {
            UNBOUNDED
        } else {
            let after = members[c].iter().flat_map(|&v| &out[v]);
            after
                .filter(|&&(u, _)| live[u] && comp[u] != c)
                .map(|&(u, w)| most[u].saturating_add(w))
                .max()
                .unwrap_or(0)
        };
        for &v in &members[c] {
            most[v] = m;
        }
    }
    (fewest, most)
}

/// `text` as a pattern that matches it alone.
fn escape(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    for c in text.chars() {
        if "\\.+*?()|[]{}^$#&-~".contains(c) {
            out.push('\\');
        }
        out.push(c);
    }
    out
}

fn id(s: u32) -> StateID {
    StateID::new_unchecked(s as usize)
}

/// `pattern` with ECMA's `\d` and `\w` (ASCII) for the `regex` syntax's (Unicode).
fn ecma(pattern: &str) -> String {
    let mut out = String::with_capacity(pattern.len());
    let (mut chars, mut in_class) = (pattern.chars(), false);
    while let Some(c) = chars.next() {
        match c {
            '\\' => match chars.next() {
                Some('d') => out.push_str(if in_class { "0-9" } else { "[0-9]" }),
                Some('w') => out.push_str(if in_class {
                    "0-9A-Za-z_"
                } else {
                    "[0-9A-Za-z_]"
                }),
                // (ECMA's word boundaries are ASCII's too; a DFA has no Unicode ones)
                Some(e @ ('b' | 'B')) if !in_class => {
                    out.push_str("(?-u:\\");
                    out.push(e);
                    out.push(')');
                }
                Some(e) => {
                    out.push('\\');
                    out.push(e);
                }
                None => out.push('\\'),
            },
            '[' => {
                in_class = true;
                out.push(c);
            }
            ']' => {
                in_class = false;
                out.push(c);
            }
            _ => out.push(c),
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn matches(p: &Pattern, text: &str) -> bool {
        let mut s = p.start();
        for &b in text.as_bytes() {
            match p.next(s, b) {
                Some((t, _)) => s = t,
                None => return false,
            }
        }
        p.ends(s)
    }

    /// Against the `regex` crate's search, for patterns where ECMA and it agree.
    #[test]
    fn patterns_match_as_a_search_does() {
        for (pattern, texts) in [
            ("^[a-z]+$", &["abc", "", "aBc", "z", "abc1"][..]),
            (
                "^\\d{3}-\\d{4}$",
                &["555-1234", "55-1234", "555-12345", "٣٣٣-1234"],
            ),
            ("ab", &["ab", "xaby", "a", "ba", ""]),
            (
                "^(foo|bar)\\.(com|org)$",
                &["foo.com", "bar.org", "foo.net", "foocom"],
            ),
            ("^.{2,3}$", &["é😀", "abc", "a", "abcd", "ééé"]),
            (
                "^\\w+@\\w+\\.[a-z]{2,}$",
                &["a@b.io", "a@b.c", "@b.io", "a_1@x.com"],
            ),
        ] {
            let p = Pattern::compile(pattern).unwrap();
            let re = regex::Regex::new(&ecma(pattern)).unwrap();
            for t in texts {
                assert_eq!(matches(&p, t), re.is_match(t), "{pattern:?} on {t:?}");
            }
        }
        // a prefix is refused as soon as nothing after it can match
        let p = Pattern::compile("^[a-z]{2}[0-9]$").unwrap();
        let (s, left) = p.next(p.start(), b'a').unwrap();
        assert_eq!(left, (2, 2), "two characters to go, exactly");
        assert!(p.next(s, b'1').is_none());
        assert!(!p.ends(s));
        // the fewest and most characters still to come
        let p = Pattern::compile("^(ab|é{3})c?$").unwrap();
        assert_eq!(p.live[&p.start()], (2, 4));
        let (s, left) = p.next(p.start(), 0xc3).unwrap();
        assert_eq!(
            left,
            (2, 3),
            "{s}: the é begun was counted at its first byte"
        );
        let p = Pattern::compile("^a+$").unwrap();
        assert_eq!(p.live[&p.start()], (1, UNBOUNDED));
    }

    #[test]
    fn whole_texts_and_choices() {
        let p = Pattern::whole("[a-z]+@[a-z]+").unwrap();
        assert!(matches(&p, "ab@cd"));
        assert!(!matches(&p, "ab@cd!"));
        assert!(!matches(&p, "x ab@cd"));
        let choices = [
            "yes".to_string(),
            "no".into(),
            "yes, sure".into(),
            "a.b (c)*".into(),
        ];
        let p = Pattern::one_of(&choices).unwrap();
        for c in &choices {
            assert!(matches(&p, c), "{c}");
        }
        for c in ["ye", "yes,", "no!", "aXb (c)*", "a.b (c)"] {
            assert!(!matches(&p, c), "{c}");
        }
        // after "yes", more may come (", sure") or not; after "no", nothing
        let after = |t: &str| t.bytes().fold(p.start(), |s, b| p.next(s, b).unwrap().0);
        assert_eq!(p.live[&after("yes")], (0, 6));
        assert_eq!(p.live[&after("no")], (0, 0));
    }

    #[test]
    fn what_a_dfa_cannot_hold_is_refused() {
        for (pattern, words) in [
            ("^(?=a)a$", "look-around"),
            ("^(a)\\1$", "back-references"),
            ("[z-a]", "not a pattern"),
            ("a.{60}$", "too large"),
            ("^a\\bb$", "no string"),
        ] {
            let e = Pattern::compile(pattern).unwrap_err();
            assert!(e.contains(words), "{pattern:?}: {e}");
        }
    }
}
