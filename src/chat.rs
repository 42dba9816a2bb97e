//! Chat templates as Hugging Face `transformers` renders them (`apply_chat_template`):
//! Jinja with `trim_blocks` and `lstrip_blocks`, Python's string / list / dict methods
//! (`minijinja-contrib`'s pycompat), `raise_exception`, `strftime_now`, and `tojson` as
//! Python's `json.dumps(..., ensure_ascii=False)` spaces it. The template comes from a
//! model directory's `chat_template.jinja`, else `tokenizer_config.json`'s
//! `chat_template` (a string, or a list of named templates: `default`, and `tool_use`
//! when tools are given). A template is compiled once, when the model loads; each
//! request renders it once.

use std::sync::Arc;

use minijinja::value::{Kwargs, Value as JValue};
use minijinja::{Environment, ErrorKind};
use serde_json::Value;

use crate::error::{Error, Result};

/// The named templates of a model and the special tokens they may write.
pub struct ChatTemplates {
    env: Environment<'static>,
    /// Names of the compiled templates (`default`, `tool_use`, …) and their sources
    /// (read on every chat request for the formats they teach).
    names: Vec<(String, String)>,
    pub bos_token: String,
    pub eos_token: String,
}

impl std::fmt::Debug for ChatTemplates {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ChatTemplates")
            .field(
                "names",
                &self.names.iter().map(|(n, _)| n).collect::<Vec<_>>(),
            )
            .finish()
    }
}

/// What a template is given besides the messages.
#[derive(Debug, Default, Clone)]
pub struct RenderOptions {
    pub add_generation_prompt: bool,
    /// Leave the last message open (transformers' `continue_final_message`): the text
    /// is cut after that message's content, so the model continues it.
    pub continue_final_message: bool,
    /// The request's `tools` (OpenAI's shape), passed as `tools`.
    pub tools: Option<Value>,
    /// Further variables (a request's `chat_template_kwargs`; tests pin `date_string`
    /// with it).
    pub extra: serde_json::Map<String, Value>,
}

/// `raise_exception(message)`: the template refuses the conversation; its words reach
/// the client as a 400.
fn raise_exception(message: String) -> std::result::Result<String, minijinja::Error> {
    Err(minijinja::Error::new(ErrorKind::InvalidOperation, message))
}

/// `strftime_now(format)`: the current UTC time formatted as Python's `strftime`.
fn strftime_now(format: String) -> String {
    let secs = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_secs() as i64);
    strftime(secs, &format)
}

/// Python's `strftime` for the specifiers chat templates use (`%d %b %Y`, `%B`, …) of
/// the UTC time `secs` seconds after the epoch.
pub fn strftime(secs: i64, format: &str) -> String {
    const MONTHS: [&str; 12] = [
        "January",
        "February",
        "March",
        "April",
        "May",
        "June",
        "July",
        "August",
        "September",
        "October",
        "November",
        "December",
    ];
    const DAYS: [&str; 7] = [
        "Thursday",
        "Friday",
        "Saturday",
        "Sunday",
        "Monday",
        "Tuesday",
        "Wednesday",
    ];
    let days = secs.div_euclid(86_400);
    let rem = secs.rem_euclid(86_400);
    // civil date from days since 1970-01-01 (Howard Hinnant's algorithm)
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z - era * 146_097;
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let day = doy - (153 * mp + 2) / 5 + 1;
    let month = if mp < 10 { mp + 3 } else { mp - 9 };
    let year = yoe + era * 400 + i64::from(month <= 2);
    let weekday = DAYS[days.rem_euclid(7) as usize];
    let month_name = MONTHS[(month - 1) as usize];
    let (h, m, s) = (rem / 3600, rem % 3600 / 60, rem % 60);
    let mut out = String::new();
    let mut chars = format.chars();
    while let Some(c) = chars.next() {
        if c != '%' {
            out.push(c);
            continue;
        }
        match chars.next() {
            Some('d') => out.push_str(&format!("{day:02}")),
            Some('e') => out.push_str(&format!("{day:>2}")),
            Some('m') => out.push_str(&format!("{month:02}")),
            Some('Y') => out.push_str(&year.to_string()),
            Some('y') => out.push_str(&format!("{:02}", year.rem_euclid(100))),
            Some('B') => out.push_str(month_name),
            Some('b') | Some('h') => out.push_str(&month_name[..3]),
            Some('A') => out.push_str(weekday),
            Some('a') => out.push_str(&weekday[..3]),
            Some('H') => out.push_str(&format!("{h:02}")),
            Some('I') => out.push_str(&format!("{:02}", (h + 11) % 12 + 1)),
            Some('p') => out.push_str(if h < 12 { "AM" } else { "PM" }),
            Some('M') => out.push_str(&format!("{m:02}")),
            Some('S') => out.push_str(&format!("{s:02}")),
            Some('j') => out.push_str(&format!("{:03}", day_of_year(year, month, day))),
            Some('%') => out.push('%'),
            Some(other) => {
                out.push('%');
                out.push(other);
            }
            None => out.push('%'),
        }
    }
    out
}

fn day_of_year(year: i64, month: i64, day: i64) -> i64 {
    const BEFORE: [i64; 12] = [0, 31, 59, 90, 120, 151, 181, 212, 243, 273, 304, 334];
    let leap = (year % 4 == 0 && year % 100 != 0) || year % 400 == 0;
    BEFORE[(month - 1) as usize] + day + i64::from(leap && month > 2)
}

/// `tojson(value, indent=None, separators=None, sort_keys=False)` as transformers
/// defines it: Python's `json.dumps(value, ensure_ascii=False, …)`: `", "` and `": "`
/// between items on one line, `","` and `": "` with `indent` (then a newline and the
/// indent per level), non-ASCII kept, floats as Python writes them.
fn tojson(value: JValue, kwargs: Kwargs) -> std::result::Result<JValue, minijinja::Error> {
    let indent: Option<JValue> = kwargs.get("indent")?;
    let sort_keys: Option<bool> = kwargs.get("sort_keys")?;
    let separators: Option<JValue> = kwargs.get("separators")?;
    let _: Option<bool> = kwargs.get("ensure_ascii")?;
    kwargs.assert_all_used()?;
    let indent = match indent {
        None => None,
        Some(v) if v.is_none() => None,
        Some(v) => match v.as_usize() {
            Some(n) => Some(" ".repeat(n)),
            None => Some(v.as_str().map(str::to_string).ok_or_else(|| {
                minijinja::Error::new(
                    ErrorKind::InvalidOperation,
                    "tojson: indent must be a number or a string",
                )
            })?),
        },
    };
    let (item_sep, key_sep) = match separators {
        Some(s) if !s.is_none() => {
            let parts: Vec<String> = s
                .try_iter()?
                .map(|p| p.as_str().unwrap_or_default().to_string())
                .collect();
            match &parts[..] {
                [a, b] => (a.clone(), b.clone()),
                _ => {
                    return Err(minijinja::Error::new(
                        ErrorKind::InvalidOperation,
                        "tojson: separators must be two strings",
                    ))
                }
            }
        }
        _ => (
            if indent.is_some() { "," } else { ", " }.to_string(),
            ": ".to_string(),
        ),
    };
    let json: Value = serde_json::to_value(&value)
        .map_err(|e| minijinja::Error::new(ErrorKind::InvalidOperation, e.to_string()))?;
    let mut out = String::new();
    let style = JsonStyle {
        indent,
        item_sep,
        key_sep,
        sort_keys: sort_keys.unwrap_or(false),
    };
    write_json(&mut out, &json, &style, 0);
    Ok(JValue::from_safe_string(out))
}

struct JsonStyle {
    indent: Option<String>,
    item_sep: String,
    key_sep: String,
    sort_keys: bool,
}

/// A float as Python's `repr` writes it: shortest digits, `.0` on whole numbers,
/// exponent `e-05` / `e+16` outside [1e-4, 1e16).
fn python_float(f: f64) -> String {
    if f.is_nan() {
        return "NaN".into();
    }
    if f.is_infinite() {
        return if f > 0.0 { "Infinity" } else { "-Infinity" }.into();
    }
    let a = f.abs();
    if a != 0.0 && !(1e-4..1e16).contains(&a) {
        let s = format!("{f:e}"); // shortest digits: 1e-5, 1.5e20
        let (mant, exp) = s.split_once('e').unwrap_or((&s, "0"));
        let exp: i32 = exp.parse().unwrap_or(0);
        let sign = if exp < 0 { '-' } else { '+' };
        return format!("{mant}e{sign}{:02}", exp.abs());
    }
    let s = format!("{f}");
    if s.contains('.') {
        s
    } else {
        format!("{s}.0")
    }
}

fn write_json(out: &mut String, v: &Value, st: &JsonStyle, depth: usize) {
    let newline = |out: &mut String, depth: usize| {
        if let Some(ind) = &st.indent {
            out.push('\n');
            for _ in 0..depth {
                out.push_str(ind);
            }
        }
    };
    match v {
        Value::Null => out.push_str("null"),
        Value::Bool(b) => out.push_str(if *b { "true" } else { "false" }),
        Value::Number(n) => match (n.as_i64(), n.as_u64(), n.as_f64()) {
            (Some(i), _, _) => out.push_str(&i.to_string()),
            (_, Some(u), _) => out.push_str(&u.to_string()),
            (_, _, Some(f)) => out.push_str(&python_float(f)),
            _ => out.push_str(&n.to_string()),
        },
        Value::String(s) => out.push_str(&serde_json::to_string(s).unwrap_or_default()),
        Value::Array(items) => {
            if items.is_empty() {
                out.push_str("[]");
                return;
            }
            out.push('[');
            for (i, item) in items.iter().enumerate() {
                if i > 0 {
                    out.push_str(&st.item_sep);
                }
                newline(out, depth + 1);
                write_json(out, item, st, depth + 1);
            }
            newline(out, depth);
            out.push(']');
        }
        Value::Object(map) => {
            if map.is_empty() {
                out.push_str("{}");
                return;
            }
            let mut entries: Vec<(&String, &Value)> = map.iter().collect();
            if st.sort_keys {
                entries.sort_by(|a, b| a.0.cmp(b.0));
            }
            out.push('{');
            for (i, (k, item)) in entries.into_iter().enumerate() {
                if i > 0 {
                    out.push_str(&st.item_sep);
                }
                newline(out, depth + 1);
                out.push_str(&serde_json::to_string(k).unwrap_or_default());
                out.push_str(&st.key_sep);
                write_json(out, item, st, depth + 1);
            }
            newline(out, depth);
            out.push('}');
        }
    }
}

/// The templates a model carries: `chat_template.jinja` when present, else
/// `tokenizer_config.json`'s `chat_template` (a string, or a list of
/// `{"name", "template"}`).
pub fn templates_of(
    jinja_file: Option<String>,
    tokenizer_config: Option<&Value>,
) -> std::result::Result<Vec<(String, String)>, String> {
    if let Some(t) = jinja_file {
        return Ok(vec![("default".into(), t)]);
    }
    match tokenizer_config.and_then(|c| c.get("chat_template")) {
        None | Some(Value::Null) => Ok(Vec::new()),
        Some(Value::String(s)) => Ok(vec![("default".into(), s.clone())]),
        Some(Value::Array(list)) => list
            .iter()
            .map(|t| {
                match (
                    t.get("name").and_then(Value::as_str),
                    t.get("template").and_then(Value::as_str),
                ) {
                    (Some(n), Some(s)) => Ok((n.to_string(), s.to_string())),
                    _ => Err(
                        "chat_template: each entry of the list needs a name and a template"
                            .to_string(),
                    ),
                }
            })
            .collect(),
        Some(_) => Err("chat_template must be a string or a list of named templates".into()),
    }
}

impl ChatTemplates {
    /// Compile `templates` (`(name, source)`), with the special tokens they write. A
    /// syntax error is the error of the template named.
    pub fn new(
        templates: Vec<(String, String)>,
        bos_token: Option<String>,
        eos_token: Option<String>,
    ) -> Result<Arc<ChatTemplates>> {
        let mut env = Environment::new();
        // as transformers' ImmutableSandboxedEnvironment(trim_blocks=True, lstrip_blocks=True)
        let syntax = minijinja::syntax::SyntaxConfig::builder()
            .trim_blocks(true)
            .lstrip_blocks(true)
            .build()
            .map_err(|e| Error::Config(format!("chat template syntax: {e}")))?;
        env.set_syntax(syntax);
        env.set_unknown_method_callback(minijinja_contrib::pycompat::unknown_method_callback);
        env.add_function("raise_exception", raise_exception);
        env.add_function("strftime_now", strftime_now);
        env.add_filter("tojson", tojson);
        let mut names = Vec::with_capacity(templates.len());
        for (name, source) in templates {
            env.add_template_owned(name.clone(), source.clone())
                .map_err(|e| {
                    Error::Config(format!(
                        "chat template {name:?} does not compile: {}",
                        describe(&e)
                    ))
                })?;
            names.push((name, source));
        }
        Ok(Arc::new(ChatTemplates {
            env,
            names,
            bos_token: bos_token.unwrap_or_default(),
            eos_token: eos_token.unwrap_or_default(),
        }))
    }

    /// The source of template `name`, if the model has it.
    pub fn source(&self, name: &str) -> Option<&str> {
        let found = self.names.iter().find(|(n, _)| n == name);
        found.map(|(_, s)| s.as_str())
    }

    /// Whether a template named `name` exists.
    pub fn has(&self, name: &str) -> bool {
        self.names.iter().any(|(n, _)| n == name)
    }

    /// Render `messages` (OpenAI's shape, `content` already text) as
    /// `apply_chat_template(messages, tokenize=False, ...)` does. The template's own
    /// refusals (`raise_exception`) and render errors are `InvalidInput` with its words.
    pub fn render(&self, messages: &Value, opts: &RenderOptions) -> Result<String> {
        let name = if opts.tools.is_some() && self.has("tool_use") {
            "tool_use"
        } else if self.has("default") {
            "default"
        } else {
            self.names
                .first()
                .map(|(n, _)| n.as_str())
                .unwrap_or("default")
        };
        let tmpl = self.env.get_template(name).map_err(|_| {
            Error::InvalidInput("the model has no chat template: use /v1/completions".into())
        })?;
        let mut ctx = serde_json::Map::new();
        ctx.insert("messages".into(), messages.clone());
        ctx.insert(
            "add_generation_prompt".into(),
            Value::Bool(opts.add_generation_prompt),
        );
        ctx.insert("bos_token".into(), Value::String(self.bos_token.clone()));
        ctx.insert("eos_token".into(), Value::String(self.eos_token.clone()));
        if let Some(tools) = &opts.tools {
            ctx.insert("tools".into(), tools.clone());
        }
        for (k, v) in &opts.extra {
            ctx.insert(k.clone(), v.clone());
        }
        let text = tmpl.render(minijinja::value::Serde(&ctx)).map_err(|e| {
            Error::InvalidInput(format!(
                "the model's chat template refused the conversation: {}",
                describe(&e)
            ))
        })?;
        if !opts.continue_final_message {
            return Ok(text);
        }
        // transformers' rule: cut after the last occurrence of the final message's
        // content (or of it trimmed, for templates that trim messages)
        let last = messages
            .as_array()
            .and_then(|m| m.last())
            .and_then(|m| m.get("content"))
            .and_then(Value::as_str)
            .ok_or_else(|| {
                Error::InvalidInput(
                    "continue_final_message needs a last message with text content".into(),
                )
            })?;
        for content in [last, last.trim()] {
            if let Some(at) = text.rfind(content).filter(|_| !content.is_empty()) {
                return Ok(text[..at + content.len()].to_string());
            }
        }
        Err(Error::InvalidInput(
            "continue_final_message: the chat template does not write the final message's content as given, so it cannot be left open".into(),
        ))
    }
}

/// A template error in words a caller can act on: the template's own message
/// (`raise_exception`), or the kind and detail of the failure with its line.
fn describe(e: &minijinja::Error) -> String {
    let mut s = match e.detail() {
        Some(d) => d.to_string(),
        None => e.kind().to_string(),
    };
    if e.kind() != ErrorKind::InvalidOperation {
        if let Some(line) = e.line() {
            s = format!("{s} (line {line})");
        }
    }
    s
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn one(src: &str) -> Arc<ChatTemplates> {
        ChatTemplates::new(
            vec![("default".into(), src.into())],
            Some("<s>".into()),
            Some("</s>".into()),
        )
        .unwrap()
    }

    #[test]
    fn tojson_spaces_as_python() {
        let t = one("{{ x | tojson }}|{{ x | tojson(indent=2) }}|{{ y | tojson }}");
        let opts = RenderOptions {
            extra: json!({"x": {"a": [1, 2.5, "é"], "b": {}}, "y": [1e-5, 3.0, 1e20]})
                .as_object()
                .unwrap()
                .clone(),
            ..Default::default()
        };
        let got = t.render(&json!([]), &opts).unwrap();
        assert_eq!(
            got,
            "{\"a\": [1, 2.5, \"é\"], \"b\": {}}|{\n  \"a\": [\n    1,\n    2.5,\n    \"é\"\n  ],\n  \"b\": {}\n}|[1e-05, 3.0, 1e+20]"
        );
    }

    /// transformers' `continue_final_message`: the text ends with the last message's
    /// content, the template's end of that message (here `</s>`) cut off; a template
    /// that trims messages is cut after the trimmed content.
    #[test]
    fn a_final_message_left_open_ends_the_text() {
        let t = one(
            "{{ bos_token }}{% for m in messages %}[{{ m.role }}] {{ m.content }}</s>{% endfor %}{% if add_generation_prompt %}[assistant]{% endif %}",
        );
        let conv = json!([{"role": "user", "content": "Hi"}, {"role": "assistant", "content": "The answer is "}]);
        let open = RenderOptions {
            continue_final_message: true,
            ..Default::default()
        };
        assert_eq!(
            t.render(&conv, &open).unwrap(),
            "<s>[user] Hi</s>[assistant] The answer is "
        );
        let trims = one("{% for m in messages %}{{ m.content | trim }}</s>{% endfor %}");
        assert_eq!(trims.render(&conv, &open).unwrap(), "Hi</s>The answer is");
        let e = t
            .render(&json!([{"role": "user", "content": [1]}]), &open)
            .unwrap_err();
        assert!(e.to_string().contains("text content"), "{e}");
        let hides = one("{% for m in messages %}x{% endfor %}");
        assert!(hides.render(&conv, &open).is_err());
    }

    #[test]
    fn strftime_formats_as_python() {
        // 2024-07-26 13:25:09 UTC, a Friday (Python's datetime.strftime agrees)
        let t = 1_722_000_309;
        assert_eq!(strftime(t, "%d %b %Y"), "26 Jul 2024");
        assert_eq!(
            strftime(t, "%A %B %j %H:%M:%S %p %y %%"),
            "Friday July 208 13:25:09 PM 24 %"
        );
        assert_eq!(strftime(0, "%Y-%m-%d %a"), "1970-01-01 Thu");
    }

    #[test]
    fn raise_exception_and_syntax_errors_are_clear() {
        let t = one(
            "{% if messages|length == 0 %}{{ raise_exception('No messages given!') }}{% endif %}ok",
        );
        let e = t.render(&json!([]), &RenderOptions::default()).unwrap_err();
        assert_eq!(e.code(), "INVALID_INPUT");
        assert!(e.to_string().contains("No messages given!"), "{e}");
        let e = ChatTemplates::new(vec![("default".into(), "{% if %}".into())], None, None)
            .unwrap_err();
        assert!(e.to_string().contains("does not compile"), "{e}");
    }

    #[test]
    fn python_methods_and_blocks_trim_as_transformers() {
        let t = one(
            "{% for m in messages %}\n  {{ m['content'].strip() | upper }}{% if not loop.last %},{% endif %}\n{% endfor %}",
        );
        let got = t
            .render(
                &json!([{"content": "  a "}, {"content": "b"}]),
                &RenderOptions::default(),
            )
            .unwrap();
        // Jinja2 with transformers' settings gives '  A,  B'
        assert_eq!(got, "  A,  B");
    }
}
