//! JSON Schema → [`Grammar`] (`response_format` `json_schema`, vLLM's `guided_json`,
//! forced tool calls' parameters): the keywords that shape a value are enforced token
//! by token; those that only describe it are ignored; assertions the grammar cannot
//! hold (`multipleOf`, `uniqueItems`, ...) are refused by name, so a caller never gets
//! a reply that only looks as if it were checked.
//!
//! Enforced: `type` (one or a list), `properties` (written in the declared order),
//! `required`, `additionalProperties` (for objects without declared properties: `false`
//! → `{}`, a schema → any keys with such values), `items`, `prefixItems` (and draft
//! 4's list of `items` with `additionalItems`), `minItems`, `maxItems`, `minLength`,
//! `maxLength`, `pattern` (a DFA, `json/pattern.rs`), `minimum`, `maximum`,
//! `exclusiveMinimum`, `exclusiveMaximum` (`json/range.rs`), `enum`, `const`, `anyOf`
//! / `oneOf` (alternatives told apart by their first byte, objects by a tag property),
//! `allOf` of one schema, OpenAPI's `nullable`, and local `$ref`s (`#`, `#/$defs/...`,
//! `#/definitions/...`, recursion included). Ignored: `format` (an annotation in JSON
//! Schema 2020-12), `title`, `description`, `default`, `examples` and any keyword the
//! specification does not define.

use super::pattern::{Pattern, UNBOUNDED};
use super::range::{decimal, Bound, Range, FRACTION};
use super::{any_value, Grammar, Node, Prop};
use serde_json::{Map, Value};
use std::collections::HashMap;

/// Keywords the grammar cannot enforce.
const REFUSED: &[&str] = &[
    "multipleOf",
    "uniqueItems",
    "contains",
    "minContains",
    "maxContains",
    "unevaluatedItems",
    "unevaluatedProperties",
    "patternProperties",
    "propertyNames",
    "minProperties",
    "maxProperties",
    "dependentRequired",
    "dependentSchemas",
    "dependencies",
    "if",
    "then",
    "else",
    "not",
    "$dynamicRef",
    "$recursiveRef",
];

/// Keywords that shape a value (the rest describe it).
const SHAPING: &[&str] = &[
    "type",
    "properties",
    "required",
    "additionalProperties",
    "items",
    "prefixItems",
    "additionalItems",
    "minItems",
    "maxItems",
    "minLength",
    "maxLength",
    "pattern",
    "minimum",
    "maximum",
    "exclusiveMinimum",
    "exclusiveMaximum",
    "enum",
    "const",
    "anyOf",
    "oneOf",
    "allOf",
    "$ref",
    "nullable",
];

/// Most declared properties of an object, literals of an `enum`, and bytes of a key.
const MAX_PROPS: usize = 250;
const MAX_LITERALS: usize = 256;
const MAX_KEY: usize = 255;
/// Most bytes of one literal, and nodes of a grammar.
const MAX_LITERAL: usize = u16::MAX as usize;
const MAX_NODES: usize = 60_000;
/// Most patterns a schema may hold (each a DFA of up to a few MiB).
const MAX_PATTERNS: usize = 16;

/// The grammar of the values `schema` allows. The error names the place in the schema
/// (a JSON pointer) and what is wrong there.
pub fn compile(schema: &Value) -> Result<Grammar, String> {
    let mut c = Compiler::new(schema);
    let root = c.reference("#", "#")?;
    c.finish(root)
}

/// The grammar of one function's arguments (`tool_choice` naming it): an object of
/// its `parameters` schema (none: no arguments, `{}`).
pub fn arguments(parameters: Option<&Value>) -> Result<Grammar, String> {
    let none = serde_json::json!({"type": "object", "additionalProperties": false});
    let g = compile(parameters.unwrap_or(&none))?;
    match g.nodes[g.root as usize] {
        Node::Object { .. } | Node::Tagged { .. } => Ok(g),
        _ => Err("the parameters must be an object schema (\"type\": \"object\")".into()),
    }
}

/// The grammar of forced tool calls (`tool_choice` `required`): a JSON array of one or
/// more `{"name": ..., "parameters": {...}}`, each a tool of `tools` (its name and
/// parameters schema) with its arguments. The error names the tool's index.
pub fn tool_calls(tools: &[(String, Option<Value>)]) -> Result<Grammar, (usize, String)> {
    let none = serde_json::json!({"type": "object", "additionalProperties": false});
    let mut c = Compiler::new(&none);
    let mut calls = Vec::with_capacity(tools.len());
    for (i, (name, parameters)) in tools.iter().enumerate() {
        // each schema's references are its own
        c.root = parameters.as_ref().unwrap_or(&none);
        c.refs.clear();
        let at = |e| (i, e);
        let args = c.reference("#", "#").map_err(at)?;
        if !matches!(
            c.nodes[args as usize],
            Node::Object { .. } | Node::Tagged { .. } | Node::OneOf(_)
        ) {
            return Err(at(
                "the parameters must be an object schema (\"type\": \"object\")".into(),
            ));
        }
        let name = c
            .literals(
                vec![serde_json::to_vec(name).expect("a string serializes")],
                "#",
            )
            .map_err(at)?;
        let prop = |key: &str, value| Prop {
            key: serde_json::to_vec(key).expect("a string serializes"),
            value,
            required: true,
        };
        let call = Node::Object {
            props: vec![prop("name", name), prop("parameters", args)],
            values: None,
        };
        calls.push(c.add(call).map_err(at)?);
    }
    let one = c.union(calls, "#").map_err(|e| (0, e))?;
    let root = c
        .add(Node::Array {
            items: one,
            min: 1,
            max: None,
            prefix: Vec::new(),
        })
        .map_err(|e| (0, e))?;
    c.finish(root).map_err(|e| (0, e))
}

struct Compiler<'a> {
    root: &'a Value,
    nodes: Vec<Node>,
    /// `$ref` → its node (made before its schema is read, so references recurse).
    refs: HashMap<String, u16>,
    /// Any value's union, once made.
    any: Option<u16>,
    /// Where the unions were made, for [`Compiler::check`].
    unions: HashMap<u16, String>,
    /// The strings' patterns.
    patterns: Vec<Pattern>,
}

impl<'a> Compiler<'a> {
    fn new(root: &'a Value) -> Compiler<'a> {
        Compiler {
            root,
            nodes: Vec::new(),
            refs: HashMap::new(),
            any: None,
            unions: HashMap::new(),
            patterns: Vec::new(),
        }
    }

    /// The grammar of `root`'s values, once every node is made.
    fn finish(mut self, root: u16) -> Result<Grammar, String> {
        self.settle()?;
        self.check()?;
        if !self.delimited(root) {
            return Err("the root must be an object, an array or a string (where a value ends must be told from its text: a number's cannot)".into());
        }
        Ok(Grammar::new(self.nodes, root, self.patterns))
    }
}

fn kind_of(v: &Value) -> &'static str {
    match v {
        Value::Null => "null",
        Value::Bool(_) => "boolean",
        Value::Number(n) if n.is_i64() || n.is_u64() => "integer",
        Value::Number(n) if n.as_f64().is_some_and(|f| f.fract() == 0.0) => "integer",
        Value::Number(_) => "number",
        Value::String(_) => "string",
        Value::Array(_) => "array",
        Value::Object(_) => "object",
    }
}

impl Compiler<'_> {
    fn add(&mut self, n: Node) -> Result<u16, String> {
        if self.nodes.len() >= MAX_NODES {
            return Err(format!("the schema is too large (over {MAX_NODES} nodes)"));
        }
        self.nodes.push(n);
        Ok(self.nodes.len() as u16 - 1)
    }

    fn any(&mut self) -> u16 {
        *self.any.get_or_insert_with(|| any_value(&mut self.nodes))
    }

    /// The node of the schema at local reference `r` (made once).
    fn reference(&mut self, r: &str, path: &str) -> Result<u16, String> {
        if let Some(&id) = self.refs.get(r) {
            return Ok(id);
        }
        let target = r
            .strip_prefix('#')
            .and_then(|p| self.root.pointer(p))
            .ok_or_else(|| {
                format!("at {path}: $ref {r:?} is not in the schema (only local references, \"#/...\", are followed)")
            })?;
        // an empty union until the schema is read
        let slot = self.add(Node::OneOf(Vec::new()))?;
        self.refs.insert(r.to_string(), slot);
        let id = self.schema(target, r)?;
        self.nodes[slot as usize] = self.nodes[id as usize].clone();
        if let Some(p) = self.unions.get(&id).cloned() {
            self.unions.insert(slot, p);
        }
        Ok(slot)
    }

    fn schema(&mut self, s: &Value, path: &str) -> Result<u16, String> {
        let m = match s {
            Value::Bool(true) => return Ok(self.any()),
            Value::Bool(false) => {
                return Err(format!("at {path}: the schema false allows no value"))
            }
            Value::Object(m) => m,
            _ => {
                return Err(format!(
                    "at {path}: a schema must be an object or a boolean"
                ))
            }
        };
        if let Some(k) = REFUSED.iter().find(|k| m.contains_key(**k)) {
            return Err(format!(
                "at {path}: keyword {k:?} is not supported (the grammar enforces type, properties, required, additionalProperties, items, prefixItems, minItems, maxItems, minLength, maxLength, pattern, minimum, maximum, exclusiveMinimum, exclusiveMaximum, enum, const, anyOf, oneOf, allOf of one schema and local $ref)"
            ));
        }
        // keywords that stand alone
        for k in ["$ref", "allOf", "anyOf", "oneOf"] {
            let Some(v) = m.get(k) else { continue };
            if let Some(other) = SHAPING.iter().find(|o| **o != k && m.contains_key(**o)) {
                return Err(format!("at {path}: {k:?} beside {other:?} is not supported (put the other keywords inside its schemas)"));
            }
            let here = format!("{path}/{k}");
            let list = || {
                v.as_array()
                    .filter(|a| !a.is_empty())
                    .ok_or_else(|| format!("at {here}: must be a non-empty array of schemas"))
            };
            return match k {
                "$ref" => {
                    let r = v
                        .as_str()
                        .ok_or_else(|| format!("at {here}: must be a string"))?;
                    self.reference(r, &here)
                }
                "allOf" => match list()?.as_slice() {
                    [one] => self.schema(one, &format!("{here}/0")),
                    _ => Err(format!(
                        "at {here}: allOf of more than one schema is not supported"
                    )),
                },
                _ => {
                    let alts = list()?
                        .iter()
                        .enumerate()
                        .map(|(i, a)| self.schema(a, &format!("{here}/{i}")))
                        .collect::<Result<Vec<_>, _>>()?;
                    self.union(alts, &here)
                }
            };
        }
        let mut kinds: Vec<&str> = match m.get("type") {
            None => Vec::new(),
            Some(Value::String(t)) => vec![t.as_str()],
            Some(Value::Array(ts)) if !ts.is_empty() => ts
                .iter()
                .map(|t| {
                    t.as_str()
                        .ok_or_else(|| format!("at {path}/type: must hold type names"))
                })
                .collect::<Result<_, _>>()?,
            Some(_) => {
                return Err(format!(
                    "at {path}/type: must be a type name or a list of them"
                ))
            }
        };
        if m.get("nullable") == Some(&Value::Bool(true))
            && !kinds.is_empty()
            && !kinds.contains(&"null")
        {
            kinds.push("null");
        }
        // exact values
        let values = match (m.get("enum"), m.get("const")) {
            (Some(_), Some(_)) => {
                return Err(format!("at {path}: enum beside const is not supported"))
            }
            (Some(Value::Array(vs)), _) if !vs.is_empty() => Some(vs.clone()),
            (Some(_), _) => return Err(format!("at {path}/enum: must be a non-empty array")),
            (_, Some(v)) => Some(vec![v.clone()]),
            _ => None,
        };
        if let Some(values) = values {
            let fits = |v: &Value| {
                let k = kind_of(v);
                kinds.is_empty()
                    || kinds.contains(&k)
                    || (k == "integer" && kinds.contains(&"number"))
            };
            let lits: Vec<Vec<u8>> = values
                .iter()
                .filter(|v| fits(v))
                .map(|v| serde_json::to_vec(v).expect("a JSON value serializes"))
                .collect();
            if lits.is_empty() {
                return Err(format!(
                    "at {path}: no value of enum/const has the schema's type"
                ));
            }
            return self.literals(lits, path);
        }
        if kinds.is_empty() {
            // the kind the keywords are about, if any
            let about = |ks: &[&str]| ks.iter().any(|k| m.contains_key(*k));
            if about(&["properties", "required", "additionalProperties"]) {
                kinds.push("object");
            } else if about(&["items", "prefixItems", "minItems", "maxItems"]) {
                kinds.push("array");
            } else if about(&["minLength", "maxLength", "pattern"]) {
                kinds.push("string");
            } else if about(&["minimum", "maximum", "exclusiveMinimum", "exclusiveMaximum"]) {
                kinds.push("number");
            } else {
                return Ok(self.any());
            }
        }
        if kinds.contains(&"number") {
            kinds.retain(|k| *k != "integer");
        }
        let alts = kinds
            .iter()
            .map(|k| self.typed(m, k, path))
            .collect::<Result<Vec<_>, _>>()?;
        match alts.as_slice() {
            [one] => Ok(*one),
            _ => self.union(alts, path),
        }
    }

    /// A value of type `kind` with `m`'s keywords.
    fn typed(&mut self, m: &Map<String, Value>, kind: &str, path: &str) -> Result<u16, String> {
        let count = |k: &str| -> Result<Option<u64>, String> {
            m.get(k)
                .map(|v| {
                    v.as_u64()
                        .ok_or_else(|| format!("at {path}/{k}: must be a non-negative integer"))
                })
                .transpose()
        };
        // a lower and an upper bound (none above u16::MAX: no context holds more)
        let bounds = |lo: &str, hi: &str| -> Result<(u16, Option<u16>), String> {
            let (min, max) = (count(lo)?.unwrap_or(0), count(hi)?);
            if max.is_some_and(|max| max < min) {
                return Err(format!("at {path}: {lo} is above {hi}"));
            }
            let min = u16::try_from(min)
                .map_err(|_| format!("at {path}/{lo}: too large (at most {})", u16::MAX))?;
            Ok((min, max.and_then(|m| u16::try_from(m).ok())))
        };
        let node = match kind {
            "object" => return self.object(m, path),
            "array" => {
                let (min, mut max) = bounds("minItems", "maxItems")?;
                // a tuple's first items: prefixItems, or draft 4's list of items (then
                // additionalItems is the rest's schema)
                let (tuple, rest_key) = match (m.get("prefixItems"), m.get("items")) {
                    (Some(p), _) => (Some(("prefixItems", p)), "items"),
                    (None, Some(i @ Value::Array(_))) => (Some(("items", i)), "additionalItems"),
                    _ => (None, "items"),
                };
                let mut prefix = Vec::new();
                if let Some((key, list)) = tuple {
                    let list = list
                        .as_array()
                        .ok_or_else(|| format!("at {path}/{key}: must be an array of schemas"))?;
                    for (i, s) in list.iter().enumerate() {
                        prefix.push(self.schema(s, &format!("{path}/{key}/{i}"))?);
                    }
                }
                let items = match m.get(rest_key) {
                    None | Some(Value::Bool(true)) => self.any(),
                    Some(Value::Bool(false)) => {
                        let n = prefix.len() as u16;
                        max = Some(max.map_or(n, |m| m.min(n)));
                        self.any()
                    }
                    Some(s) => self.schema(s, &format!("{path}/{rest_key}"))?,
                };
                if max.is_some_and(|max| max < min) {
                    return Err(format!(
                        "at {path}: {rest_key} false leaves fewer items than minItems"
                    ));
                }
                Node::Array {
                    items,
                    min,
                    max,
                    prefix,
                }
            }
            "string" => {
                let (min, max) = bounds("minLength", "maxLength")?;
                let pattern = match m.get("pattern") {
                    None => None,
                    Some(Value::String(p)) => {
                        if self.patterns.len() == MAX_PATTERNS {
                            return Err(format!("at {path}/pattern: more than {MAX_PATTERNS} patterns in the schema"));
                        }
                        let p =
                            Pattern::compile(p).map_err(|e| format!("at {path}/pattern: {e}"))?;
                        let (fewest, most) = p.lengths();
                        if max.is_some_and(|m| fewest > m) || (most != UNBOUNDED && most < min) {
                            return Err(format!(
                                "at {path}: the pattern and the length bounds leave no string"
                            ));
                        }
                        self.patterns.push(p);
                        Some(self.patterns.len() as u16 - 1)
                    }
                    Some(_) => return Err(format!("at {path}/pattern: must be a string")),
                };
                Node::String { min, max, pattern }
            }
            "number" | "integer" => {
                let integer = kind == "integer";
                let range = number_range(m, path)?.map(|r| if integer { r.integral() } else { r });
                if range.is_some_and(|r| r.is_empty()) {
                    return Err(format!("at {path}: the bounds leave no {kind}"));
                }
                Node::Number { integer, range }
            }
            "boolean" => return self.literals(vec![b"false".to_vec(), b"true".to_vec()], path),
            "null" => return self.literals(vec![b"null".to_vec()], path),
            other => return Err(format!("at {path}/type: unknown type {other:?}")),
        };
        self.add(node)
    }

    fn object(&mut self, m: &Map<String, Value>, path: &str) -> Result<u16, String> {
        let declared = match m.get("properties") {
            None => Map::new(),
            Some(Value::Object(p)) => p.clone(),
            Some(_) => return Err(format!("at {path}/properties: must be an object")),
        };
        if declared.len() > MAX_PROPS {
            return Err(format!(
                "at {path}/properties: more than {MAX_PROPS} properties"
            ));
        }
        let required: Vec<&str> = match m.get("required") {
            None => Vec::new(),
            Some(Value::Array(r)) => r
                .iter()
                .map(|k| {
                    k.as_str()
                        .ok_or_else(|| format!("at {path}/required: must hold property names"))
                })
                .collect::<Result<_, _>>()?,
            Some(_) => return Err(format!("at {path}/required: must be an array of names")),
        };
        if let Some(k) = required.iter().find(|k| !declared.contains_key(**k)) {
            return Err(format!("at {path}/required: {k:?} is not among the declared properties (only declared properties are written)"));
        }
        let mut props = Vec::with_capacity(declared.len());
        for (k, s) in &declared {
            let key = serde_json::to_vec(k).expect("a string serializes");
            if key.len() > MAX_KEY {
                return Err(format!(
                    "at {path}/properties: key {k:?} is longer than {MAX_KEY} bytes"
                ));
            }
            let value = self.schema(s, &format!("{path}/properties/{}", pointer_escape(k)))?;
            props.push(Prop {
                key,
                value,
                required: required.contains(&k.as_str()),
            });
        }
        // with properties declared no others are written (the reply still validates)
        let values = if !props.is_empty() {
            None
        } else {
            match m.get("additionalProperties") {
                None | Some(Value::Bool(true)) => Some(self.any()),
                Some(Value::Bool(false)) => None,
                Some(s) => Some(self.schema(s, &format!("{path}/additionalProperties"))?),
            }
        };
        self.add(Node::Object { props, values })
    }

    fn literals(&mut self, mut lits: Vec<Vec<u8>>, path: &str) -> Result<u16, String> {
        lits.sort();
        lits.dedup();
        if lits.len() > MAX_LITERALS {
            return Err(format!(
                "at {path}: more than {MAX_LITERALS} values in enum"
            ));
        }
        if lits.iter().any(|l| l.len() > MAX_LITERAL) {
            return Err(format!(
                "at {path}: a value of enum/const is longer than {MAX_LITERAL} bytes"
            ));
        }
        self.add(Node::Literals(lits))
    }

    /// One of `alts`: unions inside are opened, literals merged, an integer dropped
    /// beside a number; the rest is checked once every node is made ([`Compiler::check`]).
    fn union(&mut self, alts: Vec<u16>, path: &str) -> Result<u16, String> {
        let mut flat = Vec::new();
        for a in alts {
            match &self.nodes[a as usize] {
                // (a $ref still being read stays as it is until `settle`)
                Node::OneOf(inner) if !inner.is_empty() => flat.extend(inner.iter().copied()),
                _ => flat.push(a),
            }
        }
        let is_number = |c: &Self, a: u16, integer: bool| {
            c.nodes[a as usize]
                == Node::Number {
                    integer,
                    range: None,
                }
        };
        if flat.iter().any(|&a| is_number(self, a, false)) {
            flat.retain(|&a| !is_number(self, a, true));
        }
        let (lits, mut rest): (Vec<u16>, Vec<u16>) = flat
            .into_iter()
            .partition(|&a| matches!(self.nodes[a as usize], Node::Literals(_)));
        if !lits.is_empty() {
            let all = lits
                .iter()
                .flat_map(|&a| match &self.nodes[a as usize] {
                    Node::Literals(l) => l.clone(),
                    _ => unreachable!(),
                })
                .collect();
            rest.push(self.literals(all, path)?);
        }
        // objects told apart by a tag
        let objects: Vec<u16> = rest
            .iter()
            .copied()
            .filter(|&a| matches!(self.nodes[a as usize], Node::Object { .. }))
            .collect();
        if objects.len() > 1 {
            if let Some(t) = self.tagged(&objects)? {
                rest.retain(|a| !objects.contains(a));
                rest.push(t);
            }
        }
        rest.dedup();
        match rest.as_slice() {
            [one] => Ok(*one),
            _ => {
                let id = self.add(Node::OneOf(rest))?;
                self.unions.insert(id, path.to_string());
                Ok(id)
            }
        }
    }

    /// `objects` as one tagged union, if a property tells them apart: the first
    /// required property of the first object that every one declares, required, with
    /// exact values (enum / const), no two objects sharing a value. Each object's case
    /// writes that property first.
    fn tagged(&mut self, objects: &[u16]) -> Result<Option<u16>, String> {
        let props: Vec<Vec<Prop>> = objects
            .iter()
            .map(|&o| match &self.nodes[o as usize] {
                Node::Object { props, .. } => props.clone(),
                _ => unreachable!(),
            })
            .collect();
        'key: for tag in props[0].iter().filter(|p| p.required) {
            // (literal, the object it picks) for every object's values of the tag
            let mut picks: Vec<(Vec<u8>, usize)> = Vec::new();
            for (i, ps) in props.iter().enumerate() {
                let p = ps.iter().find(|p| p.key == tag.key && p.required);
                match p.map(|p| &self.nodes[p.value as usize]) {
                    Some(Node::Literals(l)) => picks.extend(l.iter().map(|l| (l.clone(), i))),
                    _ => continue 'key,
                }
            }
            picks.sort();
            if picks.windows(2).any(|w| w[0].0 == w[1].0) {
                continue;
            }
            let mut cases = Vec::with_capacity(objects.len());
            for ps in &props {
                let mut ordered: Vec<Prop> =
                    ps.iter().filter(|p| p.key == tag.key).cloned().collect();
                ordered.extend(ps.iter().filter(|p| p.key != tag.key).cloned());
                cases.push(self.add(Node::Object {
                    props: ordered,
                    values: None,
                })?);
            }
            let value = self.literals(picks.iter().map(|(l, _)| l.clone()).collect(), "")?;
            let node = Node::Tagged {
                tag: Prop {
                    key: tag.key.clone(),
                    value,
                    required: true,
                },
                // (in the literals' sorted order)
                cases: picks.iter().map(|&(_, i)| cases[i]).collect(),
            };
            return self.add(node).map(Some);
        }
        Ok(None)
    }

    /// The first bytes a value of `node` may have.
    fn firsts(&self, node: u16) -> [bool; 256] {
        let mut f = [false; 256];
        match &self.nodes[node as usize] {
            Node::Object { .. } | Node::Tagged { .. } => f[b'{' as usize] = true,
            Node::Array { .. } => f[b'[' as usize] = true,
            Node::String { .. } => f[b'"' as usize] = true,
            Node::Number { .. } => b"-0123456789".iter().for_each(|&b| f[b as usize] = true),
            Node::Literals(lits) => lits.iter().for_each(|l| f[l[0] as usize] = true),
            Node::Text { .. } => unreachable!("plain text is only a root"),
            Node::OneOf(alts) => {
                for &a in alts {
                    let g = self.firsts(a);
                    (0..256).for_each(|b| f[b] |= g[b]);
                }
            }
        }
        f
    }

    /// Open the unions that hold a `$ref` read after them (a union reached again is
    /// left out: `A = B | null, B = A | string` is `null | string`).
    fn settle(&mut self) -> Result<(), String> {
        for id in 0..self.nodes.len() {
            let Node::OneOf(alts) = &self.nodes[id] else {
                continue;
            };
            let mut todo = alts.clone();
            let mut seen = vec![id as u16];
            let mut flat = Vec::new();
            while let Some(a) = todo.pop() {
                if seen.contains(&a) {
                    continue;
                }
                seen.push(a);
                match &self.nodes[a as usize] {
                    Node::OneOf(inner) => todo.extend(inner.iter().rev()),
                    _ => flat.push(a),
                }
            }
            if flat.is_empty() {
                return Err("a $ref that leads only to itself allows no value".into());
            }
            self.nodes[id] = Node::OneOf(flat);
        }
        Ok(())
    }

    /// Every union holds non-unions that start differently.
    fn check(&self) -> Result<(), String> {
        for (id, n) in self.nodes.iter().enumerate() {
            let Node::OneOf(alts) = n else { continue };
            let path = self
                .unions
                .get(&(id as u16))
                .map_or("a $ref", |p| p.as_str());
            let mut seen = [false; 256];
            for &a in alts {
                let f = self.firsts(a);
                if let Some(b) = (0..256).find(|&b| f[b] && seen[b]) {
                    return Err(format!(
                        "at {path}: anyOf/oneOf alternatives (or a list of types) must start differently (object, array, string, number, true/false, null, or distinct enum values): two can start with {:?}",
                        (b as u8) as char
                    ));
                }
                (0..256).for_each(|b| seen[b] |= f[b]);
            }
        }
        Ok(())
    }

    /// Whether where a value of `node` ends is told by its own last byte.
    fn delimited(&self, node: u16) -> bool {
        match &self.nodes[node as usize] {
            Node::Object { .. }
            | Node::Tagged { .. }
            | Node::Array { .. }
            | Node::String { .. }
            | Node::Text { .. } => true,
            Node::Number { .. } => false,
            Node::Literals(lits) => lits.iter().all(|l| !l.last().unwrap().is_ascii_digit()),
            Node::OneOf(alts) => alts.iter().all(|&a| self.delimited(a)),
        }
    }
}

/// A number's bounds (`minimum`, `maximum`, `exclusiveMinimum`, `exclusiveMaximum`;
/// draft 4's boolean `exclusiveMinimum` / `exclusiveMaximum` too), if any.
fn number_range(m: &Map<String, Value>, path: &str) -> Result<Option<Range>, String> {
    let num = |k: &str| -> Result<Option<i128>, String> {
        match m.get(k) {
            None | Some(Value::Bool(_)) => Ok(None),
            Some(Value::Number(n)) => decimal(n).map(Some).ok_or_else(|| {
                format!("at {path}/{k}: a bound has at most {FRACTION} fraction digits and a magnitude up to 10^15")
            }),
            Some(_) => Err(format!("at {path}/{k}: must be a number")),
        }
    };
    let flag = |k: &str| m.get(k) == Some(&Value::Bool(true));
    let mut lo = num("minimum")?.map(|at| Bound {
        at,
        open: flag("exclusiveMinimum"),
    });
    let mut hi = num("maximum")?.map(|at| Bound {
        at,
        open: flag("exclusiveMaximum"),
    });
    // both given: the tighter holds
    if let Some(at) = num("exclusiveMinimum")? {
        if lo.is_none_or(|l| at >= l.at) {
            lo = Some(Bound { at, open: true });
        }
    }
    if let Some(at) = num("exclusiveMaximum")? {
        if hi.is_none_or(|h| at <= h.at) {
            hi = Some(Bound { at, open: true });
        }
    }
    Ok((lo.is_some() || hi.is_some()).then_some(Range { lo, hi }))
}

/// A key as a JSON pointer token.
fn pointer_escape(k: &str) -> String {
    k.replace('~', "~0").replace('/', "~1")
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::json::JsonState;
    use serde_json::json;

    fn grammar(schema: Value) -> Grammar {
        compile(&schema).unwrap_or_else(|e| panic!("{schema}: {e}"))
    }

    fn read(g: &Grammar, text: &str) -> Option<JsonState> {
        g.after(g.start(), text.as_bytes())
    }

    /// `text` is read whole, and every cut of it is open.
    fn whole(g: &Grammar, text: &str) {
        assert!(read(g, text).is_some_and(|s| s.done()), "refused {text:?}");
        for cut in 0..text.len() {
            let s = g.after(g.start(), &text.as_bytes()[..cut]);
            assert!(s.is_some_and(|s| !s.done()), "{text:?} cut at {cut}");
        }
    }

    /// `text` is not read whole (refused, or left open).
    fn not_whole(g: &Grammar, text: &str) {
        assert!(read(g, text).is_none_or(|s| !s.done()), "accepted {text:?}");
    }

    /// Whether `v` is valid under `s` (the keywords `compile` enforces, written
    /// independently of it): the judge of the random walks below.
    fn valid(v: &Value, s: &Value, root: &Value) -> bool {
        let m = match s {
            Value::Bool(b) => return *b,
            Value::Object(m) => m,
            _ => panic!("schema {s}"),
        };
        if let Some(r) = m.get("$ref").and_then(Value::as_str) {
            return valid(v, root.pointer(&r[1..]).unwrap(), root);
        }
        if let Some(a) = m.get("anyOf").and_then(Value::as_array) {
            return a.iter().any(|s| valid(v, s, root));
        }
        if let Some(a) = m.get("oneOf").and_then(Value::as_array) {
            return a.iter().filter(|s| valid(v, s, root)).count() == 1;
        }
        if let Some(a) = m.get("allOf").and_then(Value::as_array) {
            return a.iter().all(|s| valid(v, s, root));
        }
        if let Some(e) = m.get("enum").and_then(Value::as_array) {
            if !e.contains(v) {
                return false;
            }
        }
        if m.get("const").is_some_and(|c| c != v) {
            return false;
        }
        let mut types: Vec<&str> = match m.get("type") {
            Some(Value::String(t)) => vec![t.as_str()],
            Some(Value::Array(ts)) => ts.iter().map(|t| t.as_str().unwrap()).collect(),
            _ => vec![],
        };
        if m.get("nullable") == Some(&json!(true)) {
            types.push("null");
        }
        let k = kind_of(v);
        let typed = types.contains(&k) || (k == "integer" && types.contains(&"number"));
        if !types.is_empty() && !typed {
            return false;
        }
        let n = |k: &str| m.get(k).and_then(Value::as_u64);
        match v {
            Value::Object(o) => {
                let props = m.get("properties").and_then(Value::as_object);
                let required = m.get("required").and_then(Value::as_array);
                if required.is_some_and(|r| r.iter().any(|k| !o.contains_key(k.as_str().unwrap())))
                {
                    return false;
                }
                o.iter().all(|(k, x)| match props.and_then(|p| p.get(k)) {
                    Some(ps) => valid(x, ps, root),
                    None => match m.get("additionalProperties") {
                        None => true,
                        Some(a) => valid(x, a, root),
                    },
                })
            }
            Value::Array(a) => {
                // (a tuple: prefixItems, or draft 4's list of items and additionalItems)
                let (first, rest) = match (m.get("prefixItems"), m.get("items")) {
                    (Some(Value::Array(p)), r) => (p.clone(), r),
                    (None, Some(Value::Array(p))) => (p.clone(), m.get("additionalItems")),
                    (_, r) => (Vec::new(), r),
                };
                n("minItems").is_none_or(|lo| a.len() as u64 >= lo)
                    && n("maxItems").is_none_or(|hi| a.len() as u64 <= hi)
                    && a.iter().enumerate().all(|(i, x)| match first.get(i) {
                        Some(s) => valid(x, s, root),
                        None => rest.is_none_or(|r| valid(x, r, root)),
                    })
            }
            Value::Number(x) => {
                let x = x.as_f64().unwrap();
                let f = |k: &str| m.get(k).and_then(Value::as_f64);
                f("minimum").is_none_or(|b| x >= b)
                    && f("maximum").is_none_or(|b| x <= b)
                    && f("exclusiveMinimum").is_none_or(|b| x > b)
                    && f("exclusiveMaximum").is_none_or(|b| x < b)
            }
            Value::String(t) => {
                if let Some(p) = m.get("pattern").and_then(Value::as_str) {
                    if !regex::Regex::new(p).unwrap().is_match(t) {
                        return false;
                    }
                }
                let c = t.chars().count() as u64;
                n("minLength").is_none_or(|lo| c >= lo) && n("maxLength").is_none_or(|hi| c <= hi)
            }
            _ => true,
        }
    }

    /// Random texts the grammar reads whole (a walk over printable ASCII, each byte
    /// drawn among those it takes, closing bytes favoured as the text grows): each is
    /// JSON that `valid` accepts. Returns how many of `tries` closed.
    fn walks(schema: &Value, tries: usize, seed: u64) -> usize {
        let g = grammar(schema.clone());
        let mut r = seed;
        let mut next = || {
            r = r
                .wrapping_mul(6364136223846793005)
                .wrapping_add(1442695040888963407);
            r >> 33
        };
        let alphabet: Vec<u8> = (0x20u8..0x7f).chain([b'\n']).collect();
        let mut closed = 0;
        for _ in 0..tries {
            let mut s = g.start();
            let mut text = Vec::new();
            while !s.done() && text.len() < 600 {
                let ok: Vec<(u8, JsonState)> = alphabet
                    .iter()
                    .filter_map(|&b| g.after(s, &[b]).map(|t| (b, t)))
                    .collect();
                assert!(
                    !ok.is_empty(),
                    "stuck after {:?}",
                    String::from_utf8_lossy(&text)
                );
                let closing: Vec<&(u8, JsonState)> =
                    ok.iter().filter(|(b, _)| b"}]\"".contains(b)).collect();
                let pick = if !closing.is_empty() && next() % 600 < text.len() as u64 {
                    *closing[next() as usize % closing.len()]
                } else {
                    ok[next() as usize % ok.len()]
                };
                text.push(pick.0);
                s = pick.1;
            }
            if !s.done() {
                continue;
            }
            closed += 1;
            let t = String::from_utf8(text).unwrap();
            let v: Value = match serde_json::from_str(&t) {
                Ok(v) => v,
                // (the grammar allows numbers past f64's range; serde_json refuses them)
                Err(e) if e.to_string().contains("number out of range") => continue,
                Err(e) => panic!("{t:?}: {e}"),
            };
            assert!(valid(&v, schema, schema), "{t} is not valid under {schema}");
        }
        closed
    }

    fn person() -> Value {
        json!({
            "type": "object",
            "properties": {
                "name": {"type": "string", "minLength": 1, "maxLength": 8},
                "age": {"type": "integer"},
                "email": {"anyOf": [{"type": "string"}, {"type": "null"}]},
                "tags": {"type": "array", "items": {"enum": ["a", "b", "ab"]}, "maxItems": 3},
                "role": {"$ref": "#/$defs/Role"},
                "ok": {"type": "boolean"}
            },
            "required": ["name", "age", "role"],
            "$defs": {"Role": {"type": "string", "enum": ["admin", "user"]}}
        })
    }

    #[test]
    fn an_object_schema_reads_its_values_and_refuses_the_rest() {
        let g = grammar(person());
        for doc in [
            r#"{"name":"Ann","age":30,"role":"user"}"#,
            r#"{"name": "Ann", "age": -3, "email": null, "role": "admin"}"#,
            "{\n  \"name\": \"é😀\",\n  \"age\": 0,\n  \"email\": \"a@b\",\n  \"tags\": [\"ab\", \"a\"],\n  \"role\": \"user\",\n  \"ok\": false\n}",
            r#"{"name":"12345678","age":1,"tags":[],"role":"user","ok":true}"#,
        ] {
            whole(&g, doc);
        }
        for bad in [
            r#"{"age":30,"name":"Ann","role":"user"}"#, // out of order
            r#"{"name":"Ann","role":"user"}"#,          // age required
            r#"{"name":"","age":1,"role":"user"}"#,     // minLength
            r#"{"name":"123456789","age":1,"role":"user"}"#, // maxLength
            r#"{"name":"A","age":1.5,"role":"user"}"#,  // integer
            r#"{"name":"A","age":1e3,"role":"user"}"#,
            r#"{"name":"A","age":1,"role":"root"}"#, // enum
            r#"{"name":"A","age":1,"role":"user","x":1}"#, // undeclared
            r#"{"name":"A","age":1,"tags":["a","a","a","a"],"role":"user"}"#, // maxItems
            r#"{"name":"A","age":1,"tags":["c"],"role":"user"}"#,
            r#"{"name":"A","age":1,"email":1,"role":"user"}"#,
            r#"{"name":"A","age":1,"role":"user","ok":null}"#,
            r#"["name"]"#,
        ] {
            not_whole(&g, bad);
        }
    }

    #[test]
    fn enums_of_numbers_end_where_they_cannot_go_on() {
        let g = grammar(json!({"type": "object", "properties": {
            "n": {"enum": [1, 12, 2.5, "x", null, [1], {"a": 1}]},
            "k": {"const": 7}
        }, "required": ["n", "k"]}));
        for n in ["1", "12", "2.5", "\"x\"", "null", "[1]", "{\"a\":1}"] {
            whole(&g, &format!("{{\"n\":{n},\"k\":7}}"));
            whole(&g, &format!("{{\"n\": {n} , \"k\": 7}}"));
        }
        for n in ["123", "2", "2.", "[1 ]", "{\"a\": 1}", "3"] {
            not_whole(&g, &format!("{{\"n\":{n},\"k\":7}}"));
        }
        not_whole(&g, r#"{"n":1,"k":8}"#);
    }

    #[test]
    fn optional_keys_may_be_left_out_but_required_ones_not_skipped() {
        let g = grammar(json!({"type": "object", "properties": {
            "a": {"type": "number"}, "b": {"type": "number"}, "c": {"type": "number"}, "d": {"type": "number"}
        }, "required": ["c"]}));
        for doc in [
            r#"{"c":1}"#,
            r#"{"a":1,"c":2}"#,
            r#"{"b":1,"c":2,"d":3}"#,
            r#"{"a":1,"b":2,"c":3,"d":4}"#,
        ] {
            whole(&g, doc);
        }
        for bad in [
            r#"{}"#,
            r#"{"d":1}"#,
            r#"{"a":1,"d":2}"#,
            r#"{"c":1,"a":2}"#,
            r#"{"c":1,"c":2}"#,
            r#"{"c":1,}"#,
        ] {
            not_whole(&g, bad);
        }
        // keys sharing a start
        let g = grammar(json!({"type": "object", "properties": {
            "ab": {"type": "null"}, "a": {"type": "null"}, "abc": {"type": "null"}
        }}));
        for doc in [
            r#"{}"#,
            r#"{"a":null}"#,
            r#"{"ab":null,"abc":null}"#,
            r#"{"ab":null,"a":null,"abc":null}"#,
        ] {
            whole(&g, doc);
        }
        not_whole(&g, r#"{"a":null,"ab":null}"#);
    }

    #[test]
    fn free_objects_arrays_and_recursion() {
        let g = grammar(json!({"type": "object", "additionalProperties": {"type": "integer"}}));
        whole(&g, r#"{"x":1,"y":-2,"x y":3}"#);
        not_whole(&g, r#"{"x":"1"}"#);
        let g = grammar(json!({"type": "object", "additionalProperties": false}));
        whole(&g, "{}");
        not_whole(&g, r#"{"a":1}"#);
        let g = grammar(
            json!({"type": "array", "items": {"type": ["string", "null"]}, "minItems": 2, "maxItems": 3}),
        );
        whole(&g, r#"["a",null]"#);
        whole(&g, r#"[null, null, "b"]"#);
        for bad in ["[]", r#"["a"]"#, r#"[1,2]"#, r#"["a","b","c","d"]"#] {
            not_whole(&g, bad);
        }
        // a tree through $ref, and the root itself
        let tree = json!({"$ref": "#/$defs/Node", "$defs": {"Node": {"type": "object",
            "properties": {"v": {"type": "integer"}, "kids": {"type": "array", "items": {"$ref": "#/$defs/Node"}}},
            "required": ["v"]}}});
        let g = grammar(tree);
        whole(
            &g,
            r#"{"v":1,"kids":[{"v":2},{"v":3,"kids":[{"v":4,"kids":[]}]}]}"#,
        );
        not_whole(&g, r#"{"v":1,"kids":[{"kids":[]}]}"#);
        let g = grammar(
            json!({"type": "object", "properties": {"next": {"anyOf": [{"$ref": "#"}, {"type": "null"}]}}, "required": ["next"]}),
        );
        whole(&g, r#"{"next":{"next":{"next":null}}}"#);
        // the nesting limit holds
        let deep = format!("{}null{}", r#"{"next":"#.repeat(40), "}".repeat(40));
        assert!(read(&g, &deep).is_none());
        // untyped schemas: any value there
        let g = grammar(
            json!({"type": "object", "properties": {"x": {}, "y": true}, "required": ["x", "y"]}),
        );
        whole(&g, r#"{"x":[1,{"a":"b"}],"y":null}"#);
    }

    fn pets() -> Value {
        json!({"type": "object", "properties": {"pet": {"oneOf": [{"$ref": "#/$defs/Cat"}, {"$ref": "#/$defs/Dog"}],
            "discriminator": {"propertyName": "pet_type"}}}, "required": ["pet"],
        "$defs": {
            "Cat": {"type": "object", "properties": {"meows": {"type": "integer"}, "pet_type": {"const": "cat", "type": "string"}},
                    "required": ["meows", "pet_type"]},
            "Dog": {"type": "object", "properties": {"pet_type": {"enum": ["dog", "puppy"]}, "barks": {"type": "number"},
                    "name": {"type": "string"}}, "required": ["pet_type", "barks"]},
            "Id": {"type": "object", "properties": {"pet_type": {"const": 7}}, "required": ["pet_type"]}
        }})
    }

    #[test]
    fn bounded_numbers_stay_in_their_range() {
        let object =
            |n: Value| json!({"type": "object", "properties": {"n": n}, "required": ["n"]});
        // integers, every one from -150 to 150, against the bounds by arithmetic
        for (schema, lo, hi) in [
            (
                json!({"type": "integer", "minimum": 10, "maximum": 20}),
                10,
                20,
            ),
            (
                json!({"type": "integer", "exclusiveMinimum": 0}),
                1,
                i64::MAX,
            ),
            (
                json!({"type": "integer", "minimum": -7.5, "exclusiveMaximum": 100}),
                -7,
                99,
            ),
            (
                json!({"type": "integer", "maximum": -3, "minimum": -120}),
                -120,
                -3,
            ),
            (
                json!({"type": "integer", "minimum": 5, "exclusiveMinimum": true, "maximum": 5.9}),
                6,
                5,
            ),
        ] {
            let Ok(g) = compile(&object(schema.clone())) else {
                assert!(lo > hi, "{schema}");
                continue;
            };
            for n in -150i64..=150 {
                let doc = format!("{{\"n\":{n}}}");
                if (lo..=hi).contains(&n) {
                    whole(&g, &doc);
                } else {
                    not_whole(&g, &doc);
                }
            }
            not_whole(&g, r#"{"n":-0}"#);
            not_whole(&g, &format!("{{\"n\":{lo}.0}}"));
            not_whole(&g, &format!("{{\"n\":{lo}e0}}"));
        }
        let g = grammar(object(
            json!({"type": "integer", "minimum": 10, "maximum": 20}),
        ));
        assert!(
            read(&g, r#"{"n":3"#).is_none(),
            "no number from 3 lands in [10, 20]"
        );
        assert!(read(&g, r#"{"n":-"#).is_none());
        assert!(read(&g, r#"{"n":0"#).is_none());
        // numbers
        for (schema, ok, bad) in [
            (
                json!({"minimum": 0, "maximum": 1}),
                &[
                    "0",
                    "1",
                    "0.5",
                    "0.999",
                    "1.0",
                    "1.000",
                    "0.000000000000000001",
                ][..],
                &[
                    "1.01",
                    "-0.1",
                    "2",
                    "1e0",
                    "10",
                    "1.0000000000000000001",
                    "-0",
                    "-0.0",
                ][..],
            ),
            (
                json!({"type": "number", "exclusiveMinimum": 0, "exclusiveMaximum": 1}),
                &["0.5", "0.99", "0.01"],
                &["0", "1", "1.0", "0.0", "-0.5"],
            ),
            (
                json!({"type": "number", "minimum": -2.5, "maximum": -1}),
                &["-2.5", "-1", "-1.75", "-2.50", "-1.0"],
                &["-2.6", "-0.5", "0", "-2.51", "-3"],
            ),
            (
                json!({"type": ["number", "null"], "minimum": 100.25}),
                &["100.25", "101", "1000000", "null"],
                &["100.2", "99", "-1"],
            ),
        ] {
            let g = grammar(object(schema.clone()));
            for n in ok {
                whole(&g, &format!("{{\"n\":{n}}}"));
            }
            for n in bad {
                not_whole(&g, &format!("{{\"n\":{n}}}"));
            }
        }
    }

    #[test]
    fn patterned_strings_match_their_pattern() {
        let object =
            |n: Value| json!({"type": "object", "properties": {"s": n}, "required": ["s"]});
        for (schema, ok, bad) in [
            (
                json!({"pattern": "^[A-Z]{2}-\\d{3}$"}),
                &["AB-123"][..],
                &["AB-12", "ab-123", "AB-1234", ""][..],
            ),
            (
                json!({"type": "string", "pattern": "^a\nb/$"}),
                &["a\\nb\\/", "a\\nb/"],
                &["a\\u000ab/", "ab/", "a\\tb/"],
            ),
            (
                json!({"type": "string", "pattern": "é"}),
                &["café", "éé", "x\\\"é"],
                &["cafe", "e"],
            ),
            (
                json!({"type": "string", "pattern": "^a+$", "maxLength": 3}),
                &["a", "aaa"],
                &["aaaa", "", "ab"],
            ),
        ] {
            let g = grammar(object(schema.clone()));
            for t in ok {
                whole(&g, &format!("{{\"s\":\"{t}\"}}"));
            }
            for t in bad {
                not_whole(&g, &format!("{{\"s\":\"{t}\"}}"));
            }
        }
        // a prefix nothing can finish is refused at once
        let g = grammar(object(json!({"pattern": "^[A-Z]{2}-\\d{3}$"})));
        assert!(read(&g, r#"{"s":"A1"#).is_none());
        assert!(read(&g, r#"{"s":"AB-"#).is_some());
        // an escape only where one can go on; lengths and the pattern together
        assert!(
            read(&g, r#"{"s":"AB\\"#).is_none(),
            "no escape stands for '-'"
        );
        let g = grammar(object(json!({"pattern": "x|yz", "maxLength": 4})));
        assert!(read(&g, r#"{"s":"aaay"#).is_none(), "yz no longer fits");
        whole(&g, r#"{"s":"aaax"}"#);
        whole(&g, r#"{"s":"aayz"}"#);
        let g = grammar(object(json!({"pattern": "^a{1,3}b?$", "minLength": 3})));
        assert!(read(&g, r#"{"s":"ab"#).is_none(), "ab cannot grow to 3");
        whole(&g, r#"{"s":"aab"}"#);
        whole(&g, r#"{"s":"aaa"}"#);
        not_whole(&g, r#"{"s":"aa"}"#);
        let e = compile(&object(json!({"pattern": "^a{5}$", "maxLength": 4}))).unwrap_err();
        assert!(e.contains("leave no string"), "{e}");
        let e = compile(&object(json!({"type": "string", "pattern": "^(?=a)"}))).unwrap_err();
        assert!(
            e.contains("#/properties/s/pattern") && e.contains("look-around"),
            "{e}"
        );
    }

    #[test]
    fn tuples_hold_each_position_to_its_schema() {
        let g = grammar(
            json!({"type": "array", "prefixItems": [{"type": "integer"}, {"type": "string"}], "minItems": 2, "maxItems": 2}),
        );
        whole(&g, r#"[1,"a"]"#);
        for bad in [r#"[1]"#, r#"["a",1]"#, r#"[1,"a",2]"#, "[]"] {
            not_whole(&g, bad);
        }
        // draft 4: a list of items, then additionalItems for the rest
        let g = grammar(
            json!({"type": "array", "items": [{"type": "integer"}], "additionalItems": {"type": "string"}}),
        );
        for doc in ["[]", "[1]", r#"[1,"a","b"]"#] {
            whole(&g, doc);
        }
        for bad in [r#"["a"]"#, "[1,2]"] {
            not_whole(&g, bad);
        }
        let g = grammar(
            json!({"type": "array", "prefixItems": [{"type": "null"}, {"type": "null"}], "items": false}),
        );
        whole(&g, "[null,null]");
        whole(&g, "[null]");
        not_whole(&g, "[null,null,null]");
    }

    #[test]
    fn objects_told_apart_by_a_tag_are_a_union() {
        let g = grammar(pets());
        for doc in [
            r#"{"pet":{"pet_type":"cat","meows":3}}"#,
            r#"{"pet":{"pet_type":"dog","barks":1.5}}"#,
            r#"{"pet": {"pet_type": "puppy", "barks": 2, "name": "Rex"}}"#,
        ] {
            whole(&g, doc);
        }
        for bad in [
            r#"{"pet":{"meows":3,"pet_type":"cat"}}"#, // the tag first
            r#"{"pet":{"pet_type":"dog","meows":3}}"#, // the dog's properties
            r#"{"pet":{"pet_type":"cat","meows":3,"barks":1}}"#,
            r#"{"pet":{"pet_type":"cow","meows":3}}"#,
            r#"{"pet":{"pet_type":"cat"}}"#, // meows required
            r#"{"pet":{}}"#,
        ] {
            not_whole(&g, bad);
        }
        // numbers as tags end where the next byte cannot continue them
        let mut s = pets();
        s["properties"]["pet"]["oneOf"] = json!([{"$ref": "#/$defs/Cat"}, {"$ref": "#/$defs/Id"}]);
        let g = grammar(s);
        whole(&g, r#"{"pet":{"pet_type":7}}"#);
        whole(&g, r#"{"pet":{"pet_type": 7 }}"#);
        whole(&g, r#"{"pet":{"pet_type":"cat","meows":0}}"#);
        not_whole(&g, r#"{"pet":{"pet_type":77}}"#);
        // two objects sharing a tag value cannot be told apart
        let e = compile(&json!({"type": "object", "properties": {"u": {"anyOf": [
            {"type": "object", "properties": {"k": {"const": "a"}}, "required": ["k"]},
            {"type": "object", "properties": {"k": {"enum": ["b", "a"]}}, "required": ["k"]}]}}}))
        .unwrap_err();
        assert!(
            e.contains("#/properties/u/anyOf") && e.contains("'{'"),
            "{e}"
        );
    }

    #[test]
    fn forced_tool_calls_are_calls_of_the_tools() {
        let weather = json!({"type": "object", "properties": {"city": {"type": "string"},
            "unit": {"$ref": "#/$defs/Unit"}}, "required": ["city"],
            "$defs": {"Unit": {"enum": ["C", "F"]}}});
        let tools = [
            ("get_weather".to_string(), Some(weather.clone())),
            ("get_time".to_string(), None),
            (
                "add".to_string(),
                Some(
                    json!({"type": "object", "properties": {"a": {"type": "number"}, "b": {"type": "number"}}, "required": ["a", "b"]}),
                ),
            ),
        ];
        let g = tool_calls(&tools).unwrap();
        for doc in [
            r#"[{"name":"get_weather","parameters":{"city":"Paris","unit":"C"}}]"#,
            r#"[{"name": "get_time", "parameters": {}}, {"name": "add", "parameters": {"a": 1, "b": 2.5}}]"#,
        ] {
            whole(&g, doc);
        }
        for bad in [
            "[]",
            r#"[{"name":"get_weather","parameters":{"unit":"C"}}]"#,
            r#"[{"name":"get_weather","parameters":{"city":"Paris","unit":"K"}}]"#,
            r#"[{"name":"get_time","parameters":{"x":1}}]"#,
            r#"[{"name":"sub","parameters":{}}]"#,
            r#"[{"parameters":{},"name":"get_time"}]"#,
            r#"{"name":"get_time","parameters":{}}"#,
        ] {
            not_whole(&g, bad);
        }
        // one tool named: its arguments alone
        let g = arguments(Some(&weather)).unwrap();
        whole(&g, r#"{"city":"Oslo"}"#);
        not_whole(&g, r#"{"unit":"F"}"#);
        let g = arguments(None).unwrap();
        whole(&g, "{}");
        not_whole(&g, r#"{"a":1}"#);
        assert!(arguments(Some(&json!({"type": "array"})))
            .unwrap_err()
            .contains("object schema"));
        let bad = [
            ("f".to_string(), Some(json!({"type": "object"}))),
            (
                "g".to_string(),
                Some(
                    json!({"type": "object", "properties": {"x": {"type": "array", "uniqueItems": true}}}),
                ),
            ),
        ];
        let (i, e) = tool_calls(&bad).err().unwrap();
        assert!(
            i == 1 && e.contains("#/properties/x") && e.contains("uniqueItems"),
            "{i} {e}"
        );
    }

    #[test]
    fn random_walks_are_valid_values() {
        let schemas = [
            person(),
            json!({"type": "object", "properties": {"items": {"type": "array", "minItems": 1, "maxItems": 4,
                "items": {"type": "object", "properties": {"id": {"type": "integer"}, "price": {"type": "number"},
                "name": {"type": "string", "maxLength": 5}}, "required": ["id", "price"]}}}, "required": ["items"]}),
            json!({"type": "object", "additionalProperties": {"type": "array", "items": {"enum": [true, 0, "z"]}}}),
            json!({"type": "object", "properties": {"v": {"type": ["integer", "string", "null", "boolean"]},
                "w": {"oneOf": [{"type": "object", "properties": {"a": {"const": "x"}}}, {"type": "array"}]}}}),
            json!({"type": "object"}),
            pets(),
            json!({"$ref": "#/definitions/T", "definitions": {"T": {"type": "object", "properties": {
                "t": {"anyOf": [{"$ref": "#/definitions/T"}, {"type": "null"}]}, "n": {"type": "number", "nullable": true}},
                "required": ["t"]}}}),
        ];
        let tuples = json!({"type": "object", "properties": {
            "pair": {"type": "array", "prefixItems": [{"type": "integer"}, {"type": "string", "maxLength": 2}], "minItems": 2, "maxItems": 2},
            "old": {"type": "array", "items": [{"type": "boolean"}], "additionalItems": {"type": "null"}, "maxItems": 3},
            "head": {"type": "array", "prefixItems": [{"const": "h"}], "items": false}
        }, "required": ["pair", "old", "head"]});
        let bounded = json!({"type": "object", "properties": {
            "age": {"type": "integer", "minimum": 18, "maximum": 120},
            "p": {"type": "number", "exclusiveMinimum": 0, "maximum": 1},
            "t": {"type": "number", "minimum": -2.5, "exclusiveMaximum": -1},
            "n": {"type": "array", "items": {"type": "integer", "exclusiveMaximum": 0}, "maxItems": 3},
            "code": {"type": "string", "pattern": "^[A-Z]{2}-\\d{2}$"},
            "tag": {"type": "string", "pattern": "x|yz", "maxLength": 4}
        }, "required": ["age", "p", "t", "n", "code", "tag"]});
        for (i, s) in schemas.iter().chain([&bounded, &tuples]).enumerate() {
            let closed = walks(s, 60, 17 + i as u64);
            assert!(closed >= 30, "schema {i}: only {closed} of 60 walks closed");
        }
    }

    #[test]
    fn what_the_grammar_cannot_hold_is_refused_by_name_and_place() {
        for (schema, words) in [
            (
                json!({"type": "object", "properties": {"a": {"type": "array", "uniqueItems": true}}}),
                &["#/properties/a", "\"uniqueItems\""][..],
            ),
            (
                json!({"type": "object", "properties": {"n": {"type": "integer", "multipleOf": 2}}}),
                &["#/properties/n", "\"multipleOf\""],
            ),
            (
                json!({"type": "object", "properties": {"n": {"type": "integer", "minimum": 0.5, "maximum": 0.9}}}),
                &["#/properties/n", "no integer"],
            ),
            (
                json!({"type": "object", "properties": {"n": {"type": "number", "exclusiveMinimum": 1, "maximum": 1}}}),
                &["#/properties/n", "no number"],
            ),
            (
                json!({"type": "object", "properties": {"n": {"type": "number", "minimum": 1e20}}}),
                &["#/properties/n/minimum", "10^15"],
            ),
            (
                json!({"type": "object", "properties": {"n": {"type": "number", "maximum": "1"}}}),
                &["#/properties/n/maximum", "must be a number"],
            ),
            (
                json!({"type": "object", "properties": {"u": {"anyOf": [{"type": "object"}, {"type": "object", "properties": {"a": {}}}]}}}),
                &["#/properties/u/anyOf", "'{'"],
            ),
            (
                json!({"type": "object", "properties": {"u": {"anyOf": [{"type": "string"}, {"enum": ["a"]}]}}}),
                &["#/properties/u/anyOf", "'\"'"],
            ),
            (
                json!({"type": "object", "properties": {"r": {"$ref": "#/$defs/Missing"}}}),
                &["#/properties/r/$ref", "Missing"],
            ),
            (
                json!({"type": "object", "properties": {"r": {"$ref": "https://example.com/s.json"}}}),
                &["only local"],
            ),
            (
                json!({"type": "object", "required": ["a"]}),
                &["#/required", "\"a\""],
            ),
            (json!({"type": "integer"}), &["root"]),
            (json!({"enum": [1, 2]}), &["root"]),
            (
                json!({"type": "object", "properties": {"a": {"allOf": [{"type": "string"}, {"maxLength": 3}]}}}),
                &["#/properties/a/allOf", "more than one"],
            ),
            (
                json!({"type": "object", "properties": {"a": {"type": "string", "anyOf": [{"maxLength": 3}]}}}),
                &["#/properties/a", "\"anyOf\" beside \"type\""],
            ),
            (
                json!({"type": "object", "properties": {"a": {"type": "string", "enum": [1]}}}),
                &["#/properties/a", "enum/const"],
            ),
            (
                json!({"type": "object", "properties": {"a": {"type": "date"}}}),
                &["#/properties/a/type", "\"date\""],
            ),
            (
                json!({"type": "object", "properties": {"a": {"type": "array", "minItems": 3, "maxItems": 2}}}),
                &["#/properties/a", "minItems is above maxItems"],
            ),
            (
                json!({"type": "object", "properties": {"a": {"type": "array", "prefixItems": [{"type": "string"}], "items": false, "minItems": 2}}}),
                &["#/properties/a", "fewer items than minItems"],
            ),
            (
                json!({"$ref": "#/$defs/A", "$defs": {"A": {"$ref": "#/$defs/A"}}}),
                &["itself"],
            ),
            (
                json!({"type": "object", "properties": {"a": false}}),
                &["#/properties/a", "false"],
            ),
            (
                json!({"type": "object", "properties": {"a/b": {"type": "string", "maxLength": -1}}}),
                &["#/properties/a~1b/maxLength"],
            ),
        ] {
            let e = compile(&schema)
                .err()
                .unwrap_or_else(|| panic!("{schema} compiled"));
            for w in words {
                assert!(e.contains(w), "{schema}: {e:?} lacks {w:?}");
            }
        }
        // described, not shaped: accepted and ignored
        grammar(
            json!({"type": "object", "title": "T", "description": "d", "$schema": "https://json-schema.org/draft/2020-12/schema",
            "properties": {"when": {"type": "string", "format": "date-time", "default": "x", "examples": ["y"]}}, "x-vendor": 1}),
        );
    }

    #[test]
    fn the_walk_over_a_vocabulary_follows_the_schema() {
        use crate::json::JsonVocab;
        let words = [
            "{",
            "{\"",
            "\"",
            "name",
            "\":",
            "\": \"",
            "age",
            "role",
            "\",",
            ",",
            "\"age",
            "\"role\":",
            "1",
            "12",
            "1.5",
            "\"user",
            "\"admin\"",
            "user\"}",
            "}",
            " ",
            "A",
            "nn",
            "null",
            "\"ok\":",
            "true",
        ];
        let vocab: Vec<(Vec<u8>, u32)> = words
            .iter()
            .enumerate()
            .map(|(i, w)| (w.as_bytes().to_vec(), i as u32))
            .collect();
        let v = JsonVocab::new(vocab.clone());
        let g = grammar(person());
        for prefix in [
            "",
            "{",
            "{\"",
            "{\"name\":\"A",
            "{\"name\":\"A\",",
            "{\"name\":\"A\",\"age\":1",
            "{\"name\":\"A\",\"age\":1,\"role\":",
        ] {
            let state = read(&g, prefix).unwrap_or_else(|| panic!("{prefix:?}"));
            let mut got = vec![false; words.len()];
            v.allowed(&g, state, &mut got);
            let want: Vec<bool> = vocab
                .iter()
                .map(|(b, _)| g.after(state, b).is_some())
                .collect();
            assert_eq!(got, want, "after {prefix:?}");
            assert!(got.iter().any(|&a| a), "{prefix:?}");
        }
        // the sets kept for JSON mode are not another grammar's
        let object = crate::json::Grammar::object();
        let mut free = vec![false; words.len()];
        v.allowed(
            &object,
            object.after(object.start(), b"{\"").unwrap(),
            &mut free,
        );
        let mut declared = vec![false; words.len()];
        v.allowed(&g, read(&g, "{\"").unwrap(), &mut declared);
        assert!(
            free[3] && !free[6] || free != declared,
            "{free:?} {declared:?}"
        );
        assert!(!declared[21], "\"nn\" is no key of the schema");
    }
}
