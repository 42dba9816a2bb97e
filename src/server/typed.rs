//! Replies streamed as typed events (OpenAI's Responses API, Anthropic's Messages
//! API): one generation, each of its events drawn as zero or more named SSE events by
//! an API's [`Drawing`], over the part they share, [`Unfolding`] — what of the reply
//! is reasoning, what text to show as it comes (held back where a tool call may
//! start), what a named call's arguments, and at its end the calls read out of it.

use std::convert::Infallible;
use std::sync::Arc;

use axum::response::sse::{Event, KeepAlive, Sse};
use axum::response::{IntoResponse, Response};
use futures_util::StreamExt;
use serde_json::{json, Value};

use super::chat::{self, Calls, Reading, ToolCallOut};
use super::error::ApiError;
use super::guard::Client;
use super::openai::{ChoiceBuilder, Running};
use super::state::AppState;
use crate::engine::GenEvent;
use crate::error::Error;
use crate::tokenizer::Tokenizer;

/// A new id: `prefix` and 128 random bits (a stored response's id is all a client
/// without keys needs to read it).
pub(super) fn new_id(prefix: &str) -> String {
    format!("{prefix}_{:032x}", rand::random::<u128>())
}

/// How an API draws a streamed reply.
pub(super) trait Drawing: Send + 'static {
    /// Before the first generation event.
    fn opening(&mut self) -> Vec<Event>;
    /// After the builder applied an event that did not end the reply: its new `text`;
    /// its logprobs from `raw_from` on are the event's.
    fn step(&mut self, b: &ChoiceBuilder, text: String, raw_from: usize) -> Vec<Event>;
    /// After the event that ended the reply.
    fn closing(&mut self, b: &ChoiceBuilder, raw_from: usize) -> Vec<Event>;
    /// The reply failed (the engine's error, its stopping).
    fn failed(&mut self, e: ApiError) -> Vec<Event>;
}

/// Stream a reply as `draw` draws it, each token charged to the client's rate limit.
/// Dropping the stream (the client went away) cancels the generation.
pub(super) fn stream<D: Drawing>(
    st: AppState,
    client: Option<Client>,
    running: Running,
    draw: D,
) -> Response {
    // (the generation and its drawing; whether it opened)
    let events = futures_util::stream::unfold(Some((running, draw, false)), move |state| {
        let (st, client) = (st.clone(), client.clone());
        async move {
            let (mut r, mut d, opened) = state?;
            if !opened {
                let evs = d.opening();
                return Some((evs, Some((r, d, true))));
            }
            let Some(ev) = r.stream.recv().await else {
                let evs = d.failed(Error::Unavailable("the engine stopped".into()).into());
                return Some((evs, None));
            };
            let is_token = matches!(ev, GenEvent::Token { .. });
            let last = ev.is_final();
            let raw_from = r.builder.raw.len();
            match r.builder.apply(ev) {
                Ok((text, _)) => {
                    if is_token {
                        st.charge_tokens(client.as_ref(), 1);
                    }
                    if last {
                        Some((d.closing(&r.builder, raw_from), None))
                    } else {
                        let evs = d.step(&r.builder, text, raw_from);
                        Some((evs, Some((r, d, true))))
                    }
                }
                Err(e) => Some((d.failed(e.into()), None)),
            }
        }
    })
    .flat_map(futures_util::stream::iter)
    .map(Ok::<_, Infallible>);
    Sse::new(events)
        .keep_alive(KeepAlive::default())
        .into_response()
}

/// What a step of a streamed reply shows.
pub(super) enum Shown {
    /// Reasoning (`<think>` … `</think>`, a reply read for it), before any text.
    Reasoning(String),
    /// Text, with the logprobs of the tokens that wrote it (when asked).
    Text(String, Vec<Value>),
    /// A piece of the named function's arguments.
    Arguments(String),
}

/// The end of a streamed reply: the rest of its text (possibly empty) with the
/// logprobs not yet given, and the calls read out of it (none for a named call: its
/// arguments are the reply).
pub(super) struct Unfolded {
    /// The rest of the reasoning (what was held back as a tag that might be arriving).
    pub(super) reasoning: String,
    pub(super) text: String,
    pub(super) logprobs: Vec<Value>,
    pub(super) calls: Vec<ToolCallOut>,
}

/// A reply as it is streamed.
pub(super) struct Unfolding {
    calls: Option<Calls>,
    /// Whether the reply is read for reasoning ([`Reading::think`]).
    think: Option<bool>,
    tokenizer: Arc<Tokenizer>,
    /// Alternatives per token, when logprobs were asked for.
    logprobs: Option<usize>,
    /// Bytes of the reply shown as reasoning.
    thought: usize,
    /// Bytes of the reply's content shown (text is held back where a call may start).
    shown: usize,
    /// Logprobs of tokens whose text is still held back.
    pending: Vec<Value>,
}

impl Unfolding {
    pub(super) fn new(
        Reading { calls, think }: Reading,
        tokenizer: Arc<Tokenizer>,
        logprobs: Option<usize>,
    ) -> Self {
        Unfolding {
            calls,
            think,
            tokenizer,
            logprobs,
            thought: 0,
            shown: 0,
            pending: Vec::new(),
        }
    }

    /// The function whose arguments the reply is, when a call was forced by name.
    pub(super) fn named(&self) -> Option<&str> {
        match &self.calls {
            Some(Calls::Named(n)) => Some(n),
            _ => None,
        }
    }

    /// The reasoning to show now that the reply is `full` (`last`: it ended), and
    /// where its content starts once it does.
    fn thinking(&mut self, full: &str, last: bool) -> (String, Option<usize>) {
        match self.think {
            Some(opened) => crate::reasoning::stream(full, opened, &mut self.thought, last),
            None => (String::new(), Some(0)),
        }
    }

    /// Hold the logprobs of the tokens from `raw_from` on for the text they wrote:
    /// none in a reply with reasoning (whose tokens are not told apart from the
    /// text's; those held before the reply turned out to have one are dropped), as in
    /// a whole reply.
    fn hold_logprobs(&mut self, b: &ChoiceBuilder, raw_from: usize) {
        let reasoned = self
            .think
            .is_some_and(|o| crate::reasoning::split(&b.text, o).is_some());
        if reasoned {
            self.pending.clear();
        } else {
            let lp = logprobs_from(b, &self.tokenizer, self.logprobs, raw_from);
            self.pending.extend(lp);
        }
    }

    /// What the reply shows after an event that did not end it: reasoning, then text.
    pub(super) fn step(&mut self, b: &ChoiceBuilder, text: String, raw_from: usize) -> Vec<Shown> {
        match &self.calls {
            Some(Calls::Named(_)) if text.is_empty() => return Vec::new(),
            Some(Calls::Named(_)) => return vec![Shown::Arguments(text)],
            Some(Calls::Required) => return Vec::new(),
            _ => {}
        }
        let (thought, content) = self.thinking(&b.text, false);
        self.hold_logprobs(b, raw_from);
        let mut out = Vec::new();
        if !thought.is_empty() {
            out.push(Shown::Reasoning(thought));
        }
        let Some(c) = content else { return out };
        let content = &b.text[c..];
        let piece = match &self.calls {
            Some(Calls::Read(f)) => chat::tool_split(*f, content, &mut self.shown, false).0,
            _ => {
                let piece = content.get(self.shown..).unwrap_or("").to_string();
                self.shown = content.len();
                piece
            }
        };
        if !piece.is_empty() {
            out.push(Shown::Text(piece, std::mem::take(&mut self.pending)));
        }
        out
    }

    /// What the reply shows at its end.
    pub(super) fn close(&mut self, b: &ChoiceBuilder, raw_from: usize) -> Unfolded {
        self.hold_logprobs(b, raw_from);
        let mut lp = std::mem::take(&mut self.pending);
        let (reasoning, content) = self.thinking(&b.text, true);
        let content = content.map_or("", |c| &b.text[c..]);
        let (text, calls) = match &self.calls {
            Some(Calls::Named(_)) => {
                return Unfolded {
                    reasoning,
                    text: String::new(),
                    logprobs: Vec::new(),
                    calls: Vec::new(),
                }
            }
            Some(Calls::Required) => match chat::reply(content, self.calls.as_ref()) {
                (_, Some(c)) => (String::new(), c),
                // cut before the calls closed: the text as it is
                (content, None) => {
                    lp = logprobs_from(b, &self.tokenizer, self.logprobs, 0);
                    return Unfolded {
                        reasoning,
                        text: content.unwrap_or_default(),
                        logprobs: lp,
                        calls: Vec::new(),
                    };
                }
            },
            Some(Calls::Read(f)) => {
                let (text, calls) = chat::tool_split(*f, content, &mut self.shown, true);
                (text, calls.unwrap_or_default())
            }
            // (text held back while the reply's start might have opened a reasoning)
            None => (
                content.get(self.shown..).unwrap_or("").to_string(),
                Vec::new(),
            ),
        };
        Unfolded {
            reasoning,
            text,
            logprobs: lp,
            calls,
        }
    }
}

/// Each generated token's logprob (the chat shape: token, logprob, bytes,
/// top_logprobs) from the builder's `from`-th on; none unless `k` asks.
pub(super) fn logprobs_from(
    b: &ChoiceBuilder,
    t: &Tokenizer,
    k: Option<usize>,
    from: usize,
) -> Vec<Value> {
    let Some(k) = k else { return Vec::new() };
    // (each logprob as the f32 it is prints, as the chat shape's: a JSON value of an
    // f32 would carry the f64 digits of its binary value)
    let short = |x: f32| x.to_string().parse::<f64>().unwrap_or(f64::from(x));
    b.raw[from.min(b.raw.len())..]
        .iter()
        .map(|(id, l)| {
            let c = chat::content_logprob(t, *id, l, k);
            let top: Vec<Value> = c
                .top_logprobs
                .iter()
                .map(|a| json!({"token": a.token, "logprob": short(a.logprob), "bytes": a.bytes}))
                .collect();
            json!({"token": c.token, "logprob": short(c.logprob), "bytes": c.bytes,
                "top_logprobs": top})
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::tool_calls::ToolFormat;

    fn tokenizer() -> Arc<Tokenizer> {
        let dir = concat!(env!("CARGO_MANIFEST_DIR"), "/tests/fixtures/families/llama");
        let d =
            crate::model::directory::ModelDir::open("llama", std::path::Path::new(dir)).unwrap();
        Arc::new(d.load_tokenizer(1 << 20).unwrap().unwrap())
    }

    /// Feed `pieces` as a reply's events: what each step shows, and the end.
    fn unfold(calls: Option<Calls>, pieces: &[&str]) -> (Vec<Shown>, Unfolded) {
        unfold_read(Reading { calls, think: None }, pieces)
    }

    fn unfold_read(reading: Reading, pieces: &[&str]) -> (Vec<Shown>, Unfolded) {
        let t = tokenizer();
        let mut b = ChoiceBuilder::new(0, t.clone(), None);
        let mut u = Unfolding::new(reading, t, None);
        let mut shown = Vec::new();
        for p in pieces {
            b.text.push_str(p);
            shown.extend(u.step(&b, p.to_string(), 0));
        }
        b.finish = Some("stop");
        (shown, u.close(&b, 0))
    }

    fn texts(shown: &[Shown]) -> String {
        shown
            .iter()
            .map(|s| match s {
                Shown::Text(t, _) => t.as_str(),
                Shown::Arguments(_) => panic!("arguments where text was"),
                Shown::Reasoning(_) => "",
            })
            .collect()
    }

    /// Read out in the template's format: text shows up to where a call may start,
    /// the calls come at the end; text that was no call after all shows whole.
    #[test]
    fn a_reply_unfolds_text_then_calls() {
        let read = || Some(Calls::Read(ToolFormat::Hermes));
        let (shown, end) = unfold(
            read(),
            &[
                "Checking",
                " now. <",
                "tool_",
                "call>{\"name\": \"get\", ",
                "\"arguments\": {\"q\": 1}}</tool_call>",
            ],
        );
        assert_eq!(texts(&shown), "Checking now. ");
        assert!(end.text.trim().is_empty(), "{:?}", end.text);
        assert_eq!(end.calls.len(), 1);
        assert_eq!(end.calls[0].function.name, "get");
        assert_eq!(end.calls[0].function.arguments, r#"{"q":1}"#);
        let (shown, end) = unfold(read(), &["a < b", " and <tool", "box>"]);
        assert_eq!(texts(&shown) + &end.text, "a < b and <toolbox>");
        assert!(end.calls.is_empty());
        // no tools: every piece as it comes
        let (shown, end) = unfold(None, &["one", "", " two"]);
        assert_eq!(shown.len(), 2);
        assert_eq!(
            (texts(&shown), end.text),
            ("one two".to_string(), String::new())
        );
        // a named call: its arguments as they come, nothing at the end
        let (shown, end) = unfold(Some(Calls::Named("get".into())), &["{\"q\"", ": 1}"]);
        let args: String = shown
            .iter()
            .map(|s| match s {
                Shown::Arguments(a) => a.as_str(),
                _ => panic!("text of a named call"),
            })
            .collect();
        assert_eq!(args, r#"{"q": 1}"#);
        assert!(end.calls.is_empty() && end.text.is_empty());
        // required: nothing until the end, then the calls; cut before it closed, the text
        let (shown, end) = unfold(
            Some(Calls::Required),
            &["[{\"name\": \"get\", ", "\"parameters\": {}}]"],
        );
        assert!(shown.is_empty());
        assert_eq!(end.calls.len(), 1);
        let (_, end) = unfold(Some(Calls::Required), &["[{\"name\": \"ge"]);
        assert!(end.calls.is_empty());
        assert_eq!(end.text, "[{\"name\": \"ge");
    }

    /// Read for reasoning: the reasoning first (a closing tag held back as it arrives),
    /// then the text, and the tool calls read out of the text only.
    #[test]
    fn a_reply_unfolds_reasoning_then_text_then_calls() {
        let reading = |calls| Reading {
            calls,
            think: Some(false),
        };
        let thought = |shown: &[Shown]| -> String {
            shown
                .iter()
                .filter_map(|s| match s {
                    Shown::Reasoning(r) => Some(r.as_str()),
                    _ => None,
                })
                .collect()
        };
        let pieces = [
            "<th",
            "ink>Hm, <tool_call> no",
            ".</th",
            "ink>\n\nIt",
            " is 4.",
        ];
        let (shown, end) = unfold_read(reading(None), &pieces);
        assert_eq!(thought(&shown) + &end.reasoning, "Hm, <tool_call> no.");
        assert_eq!(texts(&shown) + &end.text, "\n\nIt is 4.");
        // the reasoning comes before any text
        let first_text = shown.iter().position(|s| matches!(s, Shown::Text(..)));
        let last_thought = shown.iter().rposition(|s| matches!(s, Shown::Reasoning(_)));
        assert!(last_thought < first_text, "reasoning after text");
        let (shown, end) = unfold_read(
            reading(Some(Calls::Read(ToolFormat::Hermes))),
            &[
                "<think>call get</think>",
                "<tool_call>{\"name\": \"get\", \"arguments\": {}}</tool_call>",
            ],
        );
        assert_eq!(thought(&shown) + &end.reasoning, "call get");
        assert!((texts(&shown) + &end.text).is_empty());
        assert_eq!(end.calls.len(), 1);
        // a reply that starts like a tag but is none: held back, then text
        let (shown, end) = unfold_read(reading(None), &["<th", "ere"]);
        assert_eq!(texts(&shown) + &end.text, "<there");
        assert_eq!(thought(&shown) + &end.reasoning, "");
        // cut inside its reasoning: reasoning only
        let (shown, end) = unfold_read(reading(None), &["<think>long", " </thi"]);
        assert_eq!(thought(&shown) + &end.reasoning, "long </thi");
        assert!((texts(&shown) + &end.text).is_empty());
    }
}
