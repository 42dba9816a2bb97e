//! Reasoning read out of a reply: what a thinking model writes between `<think>` and
//! `</think>` before its answer (Qwen3, DeepSeek-R1 and its distills), returned beside
//! the content as `reasoning_content`, the field DeepSeek's API, llama.cpp's server and
//! vLLM's reasoning parsers fill. The text is split as it is, tags dropped, nothing
//! trimmed, so that a streamed reply's pieces add up to the whole one's.

/// The tag a reasoning opens with.
pub const OPEN: &str = "<think>";
/// The tag it closes with.
pub const CLOSE: &str = "</think>";

/// Whether a chat template teaches its model to reason in `<think>` … `</think>`.
pub fn taught(template: &str) -> bool {
    template.contains(OPEN) && template.contains(CLOSE)
}

/// Whether a rendered prompt leaves its reply inside a reasoning: its generation
/// prompt ends opening one (DeepSeek-R1's `<｜Assistant｜><think>\n`). (A tag anywhere
/// else, in a user's question say, opens nothing.)
pub fn opened_by(prompt: &str) -> bool {
    prompt.trim_end().ends_with(OPEN)
}

/// Whether a final message that is continued stops inside a reasoning: its last
/// `<think>` is not closed.
pub fn left_open(message: &str) -> bool {
    match (message.rfind(OPEN), message.rfind(CLOSE)) {
        (Some(open), Some(close)) => open > close,
        (Some(_), None) => true,
        _ => false,
    }
}

/// Where a reply's reasoning lies and where its content starts.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Split {
    /// The reasoning's bytes (between the tags).
    pub reasoning: std::ops::Range<usize>,
    /// Where the content starts (after `</think>`); `None` while the reasoning goes on.
    pub content: Option<usize>,
}

/// The split of `reply` (whole, or the text so far): a reasoning when the prompt left
/// the reply inside one (`opened`) or the reply opens one (after whitespace); `None`
/// when the reply is content only.
pub fn split(reply: &str, opened: bool) -> Option<Split> {
    split_after(reply, opened, 0)
}

/// [`split`] when the reasoning does not close before byte `from` (the reasoning a
/// stream has shown): only the rest is searched for `</think>`, so that a reply read
/// token by token is searched once, not once a token.
fn split_after(reply: &str, opened: bool, from: usize) -> Option<Split> {
    let lead = reply.len() - reply.trim_start().len();
    let start = if reply[lead..].starts_with(OPEN) {
        lead + OPEN.len()
    } else if opened {
        0
    } else {
        return None;
    };
    let from = from.clamp(start, reply.len());
    Some(match reply.get(from..).and_then(|r| r.find(CLOSE)) {
        Some(i) => Split {
            reasoning: start..from + i,
            content: Some(from + i + CLOSE.len()),
        },
        None => Split {
            reasoning: start..reply.len(),
            content: None,
        },
    })
}

/// A whole reply's reasoning (`None`: it has none) and content.
pub fn whole(reply: &str, opened: bool) -> (Option<&str>, &str) {
    match split(reply, opened) {
        None => (None, reply),
        Some(s) => (
            Some(&reply[s.reasoning.clone()]),
            s.content.map_or("", |c| &reply[c..]),
        ),
    }
}

/// The length of the longest end of `text` that is a proper start of `tag`: text that
/// may be the tag arriving, held back while a reply streams.
fn partial(text: &str, tag: &str) -> usize {
    (1..tag.len())
        .rev()
        .find(|&n| text.ends_with(&tag[..n]))
        .unwrap_or(0)
}

/// What a streamed reply shows next, now that its text is `full`: the reasoning to show
/// (from byte `shown` of `full`, which it advances; what may be a tag arriving is held
/// back until the `last` event) and where the content starts once it does (`None`
/// while the reasoning goes on, or while the reply's start may still be `<think>`).
pub fn stream(full: &str, opened: bool, shown: &mut usize, last: bool) -> (String, Option<usize>) {
    let lead = full.trim_start();
    if !opened && !last && OPEN.starts_with(lead) {
        return (String::new(), None); // whitespace, or `<think>` arriving
    }
    let Some(s) = split_after(full, opened, *shown) else {
        return (String::new(), Some(0));
    };
    let end = match s.content {
        None if !last => s.reasoning.end - partial(&full[s.reasoning.clone()], CLOSE),
        _ => s.reasoning.end,
    };
    let from = (*shown).max(s.reasoning.start).min(end);
    *shown = end;
    (full[from..end].to_string(), s.content)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_reply_splits_at_its_tags() {
        let r = "<think>\nAdd them.\n</think>\n\n4";
        assert_eq!(whole(r, false), (Some("\nAdd them.\n"), "\n\n4"));
        // opened by the prompt: no opening tag in the reply
        assert_eq!(whole("Add.</think>4", true), (Some("Add."), "4"));
        // whitespace before the tag; a reply cut inside its reasoning
        assert_eq!(whole("\n<think>a</think>b", false), (Some("a"), "b"));
        assert_eq!(
            whole("<think>still going", false),
            (Some("still going"), "")
        );
        assert_eq!(whole("still going", true), (Some("still going"), ""));
        // no reasoning: the reply is content, a tag later in it included
        assert_eq!(
            whole("4 <think>x</think>", false),
            (None, "4 <think>x</think>")
        );
        assert_eq!(whole("", false), (None, ""));
    }

    #[test]
    fn prompts_open_a_reasoning_when_their_last_tag_opens_one() {
        assert!(opened_by("<|Assistant|><think>\n"));
        assert!(!opened_by("<|im_start|>assistant\n<think>\n\n</think>\n\n"));
        assert!(!opened_by("plain"));
        // a question about the tag opens nothing
        assert!(!opened_by("user: what is <think> for?\nassistant:"));
        assert!(left_open("<think>a</think> then <think>b"));
        assert!(!left_open("<think>a</think> done") && !left_open("plain"));
        assert!(taught("{{ '<think>' }}{{ '</think>' }}") && !taught("{{ '<think>' }}"));
    }

    /// Every way of cutting a reply into streamed pieces shows the whole reply's
    /// reasoning, then its content from the start the last event gives.
    #[test]
    fn streamed_pieces_add_up_to_the_whole_split() {
        let replies = [
            ("<think>\nAdd them.\n</think>\n\n4", false),
            ("Add.</think>4", true),
            ("  <think>a</thin", false),
            ("<think>a</think", false),
            ("<thi", false),
            ("plain content", false),
            ("x </think> y", false),
            ("<think>a<</think>b</think>c", false),
        ];
        for (reply, opened) in replies {
            let (want_r, want_c) = whole(reply, opened);
            for step in 1..=reply.len() {
                let (mut shown, mut reasoning, mut content) = (0, String::new(), None);
                let mut at = 0;
                while at < reply.len() {
                    at = (at + step).min(reply.len());
                    while !reply.is_char_boundary(at) {
                        at += 1;
                    }
                    let (r, c) = stream(&reply[..at], opened, &mut shown, false);
                    reasoning.push_str(&r);
                    // once the content has started, its start stays
                    if let (Some(c), Some(before)) = (c, content) {
                        assert_eq!(c, before, "{reply:?} in pieces of {step}");
                    }
                    content = content.or(c);
                }
                let (r, c) = stream(reply, opened, &mut shown, true);
                reasoning.push_str(&r);
                assert!(
                    content.is_none() || c == content,
                    "{reply:?} in pieces of {step}"
                );
                match want_r {
                    Some(w) => assert_eq!(reasoning, w, "{reply:?} in pieces of {step}"),
                    None => assert!(reasoning.is_empty(), "{reply:?} in pieces of {step}"),
                }
                let got_c = c.map_or("", |c| &reply[c..]);
                assert_eq!(got_c, want_c, "{reply:?} in pieces of {step}");
            }
        }
    }
}
