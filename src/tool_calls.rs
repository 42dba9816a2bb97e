//! Tool calls read out of a chat reply, in the format the model's chat template teaches
//! it (as vLLM's `--tool-call-parser`, picked here from the template itself):
//!
//! - `hermes` (Qwen2 / Qwen2.5, Hermes, …): `<tool_call>{"name": …, "arguments": {…}}</tool_call>`,
//!   one block per call, text before them the message's content;
//! - `mistral`: `[TOOL_CALLS]` then a JSON array of `{"name", "arguments"}`;
//! - `llama3_json` (Llama 3.1 / 3.2): the reply is `{"name": …, "parameters": {…}}`
//!   (optionally after `<|python_tag|>`; several separated by `;`).
//!
//! A reply that does not parse as calls whole stays plain content: nothing is lost.

use serde_json::Value;

/// How a template's model writes its tool calls.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ToolFormat {
    Hermes,
    Mistral,
    Llama3Json,
}

/// One call read out of a reply.
#[derive(Clone, Debug, PartialEq)]
pub struct ToolCall {
    pub name: String,
    /// The arguments as a JSON text (OpenAI's `function.arguments`).
    pub arguments: String,
}

const HERMES_OPEN: &str = "<tool_call>";
const HERMES_CLOSE: &str = "</tool_call>";
const MISTRAL: &str = "[TOOL_CALLS]";
const PYTHON_TAG: &str = "<|python_tag|>";

impl ToolFormat {
    /// The format a chat template's source teaches, if it teaches one.
    pub fn detect(template: &str) -> Option<ToolFormat> {
        if template.contains(HERMES_OPEN) {
            Some(ToolFormat::Hermes)
        } else if template.contains(MISTRAL) {
            Some(ToolFormat::Mistral)
        } else if template.contains(PYTHON_TAG) || template.contains("\"parameters\": dictionary") {
            Some(ToolFormat::Llama3Json)
        } else {
            None
        }
    }

    /// Where in `text` (the reply so far) a call starts or may yet start: a stream
    /// shows the content before it and holds back the rest until the reply ends.
    pub fn start(self, text: &str) -> Option<usize> {
        self.start_after(text, 0)
    }

    /// [`ToolFormat::start`] when no call starts before byte `from` (the text a stream
    /// has shown): only the rest is searched, so that a reply read token by token is
    /// searched once, not once a token.
    pub fn start_after(self, text: &str, from: usize) -> Option<usize> {
        let rest = text.get(from..).unwrap_or("");
        let at = |marker| marker_start(rest, marker).map(|i| i + from);
        match self {
            ToolFormat::Hermes => at(HERMES_OPEN),
            ToolFormat::Mistral => at(MISTRAL),
            ToolFormat::Llama3Json => {
                let lead = text.len() - text.trim_start().len();
                let rest = &text[lead..];
                let may = rest.is_empty()
                    || rest.starts_with('{')
                    || rest.starts_with(PYTHON_TAG)
                    || PYTHON_TAG.starts_with(rest);
                may.then_some(0)
            }
        }
    }

    /// The reply's content and calls, if it holds calls that all parse.
    pub fn parse(self, text: &str) -> Option<(Option<String>, Vec<ToolCall>)> {
        let (content, calls) = match self {
            ToolFormat::Hermes => {
                let first = text.find(HERMES_OPEN)?;
                let mut calls = Vec::new();
                let mut rest = &text[first..];
                while let Some(body) = rest.strip_prefix(HERMES_OPEN) {
                    let (inner, after) = match body.find(HERMES_CLOSE) {
                        Some(end) => (&body[..end], &body[end + HERMES_CLOSE.len()..]),
                        None => (body, ""), // the reply ended inside the last block
                    };
                    calls.push(call(
                        &serde_json::from_str(inner.trim()).ok()?,
                        "arguments",
                    )?);
                    rest = after.trim_start();
                }
                if !rest.is_empty() {
                    return None;
                }
                (&text[..first], calls)
            }
            ToolFormat::Mistral => {
                let at = text.find(MISTRAL)?;
                let list: Vec<Value> =
                    serde_json::from_str(text[at + MISTRAL.len()..].trim()).ok()?;
                let calls = list
                    .iter()
                    .map(|c| call(c, "arguments"))
                    .collect::<Option<Vec<_>>>()?;
                (&text[..at], calls)
            }
            ToolFormat::Llama3Json => {
                let body = text.trim();
                let body = body.strip_prefix(PYTHON_TAG).unwrap_or(body);
                let calls = body
                    .split(';')
                    .filter(|part| !part.trim().is_empty())
                    .map(|part| call(&serde_json::from_str(part.trim()).ok()?, "parameters"))
                    .collect::<Option<Vec<_>>>()?;
                ("", calls)
            }
        };
        if calls.is_empty() {
            return None;
        }
        let content = content.trim();
        Some(((!content.is_empty()).then(|| content.to_string()), calls))
    }
}

/// A call object: `name` and its arguments under `key` (or `arguments`), an object or
/// a JSON text.
fn call(v: &Value, key: &str) -> Option<ToolCall> {
    let name = v.get("name")?.as_str()?.to_string();
    let args = v.get(key).or_else(|| v.get("arguments"));
    let arguments = match args {
        None | Some(Value::Null) => "{}".to_string(),
        Some(Value::String(s)) => s.clone(),
        Some(a @ Value::Object(_)) => a.to_string(),
        Some(_) => return None,
    };
    Some(ToolCall { name, arguments })
}

/// Where `marker` starts in `text`, or where an end of `text` could still become it.
fn marker_start(text: &str, marker: &str) -> Option<usize> {
    if let Some(i) = text.find(marker) {
        return Some(i);
    }
    (1..marker.len())
        .rev()
        .find(|&k| text.ends_with(&marker[..k]))
        .map(|k| text.len() - k)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn calls(v: &[(&str, &str)]) -> Vec<ToolCall> {
        v.iter()
            .map(|(n, a)| ToolCall {
                name: n.to_string(),
                arguments: a.to_string(),
            })
            .collect()
    }

    #[test]
    fn formats_are_read_from_the_templates_that_teach_them() {
        let fixture: Value = serde_json::from_str(
            &std::fs::read_to_string(concat!(
                env!("CARGO_MANIFEST_DIR"),
                "/tests/fixtures/chat/templates.json"
            ))
            .unwrap(),
        )
        .unwrap();
        let found: Vec<(String, Option<ToolFormat>)> = fixture["templates"]
            .as_array()
            .unwrap()
            .iter()
            .map(|t| {
                let name = t["name"].as_str().unwrap().to_string();
                (name, ToolFormat::detect(t["template"].as_str().unwrap()))
            })
            .collect();
        for (name, f) in &found {
            let want = match name.as_str() {
                "llama-3.2" => Some(ToolFormat::Llama3Json),
                "qwen3" => Some(ToolFormat::Hermes),
                _ => None,
            };
            assert_eq!(*f, want, "{name}");
        }
        assert_eq!(
            ToolFormat::detect("{% for t in tools %}<tool_call>{{ t }}</tool_call>{% endfor %}"),
            Some(ToolFormat::Hermes)
        );
        assert_eq!(
            ToolFormat::detect("{{ '[AVAILABLE_TOOLS]' }}{{ '[TOOL_CALLS]' }}"),
            Some(ToolFormat::Mistral)
        );
    }

    #[test]
    fn hermes_blocks_become_calls_and_the_text_before_them_content() {
        let f = ToolFormat::Hermes;
        let text = "Let me check.\n<tool_call>\n{\"name\": \"get_weather\", \"arguments\": {\"city\": \"Paris\"}}\n</tool_call>\n<tool_call>{\"name\": \"now\", \"arguments\": {}}</tool_call>";
        let (content, got) = f.parse(text).unwrap();
        assert_eq!(content.as_deref(), Some("Let me check."));
        assert_eq!(
            got,
            calls(&[("get_weather", r#"{"city":"Paris"}"#), ("now", "{}")])
        );
        // unclosed at the end (the reply stopped at the close tag's token): still a call
        let (content, got) = f
            .parse("<tool_call>{\"name\": \"f\", \"arguments\": \"{\\\"x\\\": 1}\"}")
            .unwrap();
        assert_eq!((content, got), (None, calls(&[("f", r#"{"x": 1}"#)])));
        // not calls: plain content
        assert!(f.parse("no calls here").is_none());
        assert!(f.parse("<tool_call>{\"name\": 3}</tool_call>").is_none());
        assert!(f.parse("<tool_call>{broken</tool_call>").is_none());
        assert!(f
            .parse("<tool_call>{\"name\": \"f\"}</tool_call> and then text")
            .is_none());
        // the stream holds back from where a block starts or may start
        assert_eq!(f.start("Sure <tool_call>{"), Some(5));
        assert_eq!(f.start("Sure <tool_"), Some(5));
        assert_eq!(f.start("Sure <"), Some(5));
        assert_eq!(f.start("Sure"), None);
        // searched from where a stream stopped showing: the same starts
        assert_eq!(f.start_after("Sure <tool_call>{", 3), Some(5));
        assert_eq!(f.start_after("Sure <tool_", 5), Some(5));
        assert_eq!(f.start_after("Sure", 4), None);
    }

    #[test]
    fn mistral_and_llama_calls() {
        let m = ToolFormat::Mistral;
        let (content, got) = m
            .parse("[TOOL_CALLS] [{\"name\": \"add\", \"arguments\": {\"a\": 1, \"b\": 2}}, {\"name\": \"noop\"}]")
            .unwrap();
        assert_eq!(
            (content, got),
            (None, calls(&[("add", r#"{"a":1,"b":2}"#), ("noop", "{}")]))
        );
        assert!(m.parse("[TOOL_CALLS] [{\"name\": \"add\"").is_none());
        assert_eq!(m.start("text [TOOL"), Some(5));
        let l = ToolFormat::Llama3Json;
        let (content, got) = l
            .parse("<|python_tag|>{\"name\": \"search\", \"parameters\": {\"q\": \"rust\"}}; {\"name\": \"time\", \"parameters\": {}}")
            .unwrap();
        assert_eq!(
            (content, got),
            (
                None,
                calls(&[("search", r#"{"q":"rust"}"#), ("time", "{}")])
            )
        );
        assert_eq!(
            l.parse(" {\"name\": \"f\", \"parameters\": {\"x\": [1]}}")
                .unwrap()
                .1,
            calls(&[("f", r#"{"x":[1]}"#)])
        );
        assert!(l.parse("The answer is 4.").is_none());
        assert!(l.parse("{\"not\": \"a call\"}").is_none());
        assert_eq!(l.start("  {\"na"), Some(0));
        assert_eq!(l.start("<|pyth"), Some(0));
        assert_eq!(l.start(""), Some(0));
        assert_eq!(l.start("Hello"), None);
    }
}
