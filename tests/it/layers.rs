//! The house rules of `src/`, read from the source: no import from a lower layer to a
//! higher one (server > engine > model > kernels > reference > gpu > the leaves), and
//! no import circle among the files. Paths are followed as the compiler would for the
//! forms the crate uses (`crate::a::b`, `super::a`, `self::a`, a child module by name,
//! `use x::{a, b::c}`); re-exports (`pub use`), module declarations, comments and
//! `#[cfg(test)]` modules are not imports.

use std::collections::{BTreeMap, BTreeSet};
use std::path::Path;

/// Top-level modules, highest layer first; a module may import only from later rows.
const LAYERS: &[&[&str]] = &[
    &["main"],
    &["server"],
    &["engine"],
    &["model"],
    &["kernels"],
    &["reference"],
    &["gpu"],
    &["config", "sparse", "files", "tokenizer", "stats"],
    &["chat", "json", "reasoning", "tool_calls"],
    &["error"],
];

fn layer_of(top: &str) -> Option<usize> {
    LAYERS.iter().position(|row| row.contains(&top))
}

/// Module path of a file relative to `src/` (`engine/mod.rs` → `[engine]`).
fn module_path(rel: &str) -> Vec<String> {
    let mut parts: Vec<String> = rel
        .trim_end_matches(".rs")
        .split('/')
        .map(String::from)
        .collect();
    if parts.last().is_some_and(|p| p == "mod" || p == "lib") {
        parts.pop();
    }
    parts
}

fn is_ident(c: char) -> bool {
    c.is_ascii_alphanumeric() || c == '_'
}

/// The paths a line names through `prefix::` (e.g. `crate`), braces expanded one level.
fn paths_after(line: &str, prefix: &str) -> Vec<Vec<String>> {
    let mut out = Vec::new();
    let pat = format!("{prefix}::");
    let mut from = 0;
    while let Some(i) = line[from..].find(&pat) {
        let start = from + i;
        from = start + pat.len();
        if line[..start]
            .chars()
            .last()
            .is_some_and(|c| is_ident(c) || c == ':')
        {
            continue;
        }
        let rest = &line[from..];
        let mut path = Vec::new();
        let mut j = 0;
        loop {
            let seg: String = rest[j..].chars().take_while(|&c| is_ident(c)).collect();
            if seg.is_empty() {
                break;
            }
            j += seg.len();
            path.push(seg);
            if rest[j..].starts_with("::") {
                j += 2;
            } else {
                break;
            }
        }
        if rest[j..].starts_with('{') {
            let inner = &rest[j + 1..rest[j..].find('}').map_or(rest.len(), |k| j + k)];
            for item in inner.split(',') {
                let mut p = path.clone();
                p.extend(
                    item.trim()
                        .split("::")
                        .map(|s| s.chars().take_while(|&c| is_ident(c)).collect::<String>())
                        .filter(|s| !s.is_empty()),
                );
                out.push(p);
            }
        } else {
            out.push(path);
        }
    }
    out
}

/// File-to-file imports of `files` (`relative path → source`).
fn imports(files: &BTreeMap<String, String>) -> BTreeMap<String, BTreeSet<String>> {
    let modules: BTreeMap<Vec<String>, String> =
        files.keys().map(|f| (module_path(f), f.clone())).collect();
    // the longest prefix of `path` that is a file of the crate
    let resolve = |path: &[String]| {
        (1..=path.len())
            .rev()
            .find_map(|n| modules.get(&path[..n]).cloned())
    };
    let mut graph = BTreeMap::new();
    for (file, src) in files {
        let me = module_path(file);
        let mut deps = BTreeSet::new();
        // inline modules (`pub mod prelude {`) open a scope `super` and `self` start from
        let mut inline: Vec<(String, i64)> = Vec::new();
        let mut depth: i64 = 0;
        // code before the test module; a `//!` or `//` line is not code
        let code = src.split("#[cfg(test)]\nmod ").next().unwrap_or("");
        let mut block = String::new();
        for line in code.lines() {
            let t = line.trim_start();
            if t.starts_with("//") {
                continue;
            }
            let opens = t.matches('{').count() as i64;
            let closes = t.matches('}').count() as i64;
            let inline_mod = t
                .strip_prefix("pub mod ")
                .or_else(|| t.strip_prefix("mod "))
                .and_then(|r| r.strip_suffix('{'))
                .map(|name| name.trim().to_string());
            if let Some(name) = inline_mod {
                inline.push((name, depth));
            }
            depth += opens - closes;
            while inline.last().is_some_and(|(_, d)| depth <= *d) {
                inline.pop();
            }
            if t.starts_with("pub use") || t.starts_with("mod ") || t.starts_with("pub mod ") {
                continue;
            }
            let scope: Vec<String> = me
                .iter()
                .cloned()
                .chain(inline.iter().map(|(n, _)| n.clone()))
                .collect();
            let parent = scope[..scope.len().saturating_sub(1)].to_vec();
            // a `use` may span lines: join it up to its `;`
            if !block.is_empty() || t.starts_with("use ") || t.starts_with("pub(crate) use") {
                block.push_str(t);
                block.push(' ');
                if !t.contains(';') {
                    continue;
                }
            }
            let text = if block.is_empty() {
                line.to_string()
            } else {
                std::mem::take(&mut block)
            };
            for (prefix, base) in [
                ("crate", Vec::new()),
                ("super", parent.clone()),
                ("self", scope.clone()),
            ] {
                for p in paths_after(&text, prefix) {
                    let mut full = base.clone();
                    full.extend(p);
                    if let Some(f) = resolve(&full) {
                        deps.insert(f);
                    }
                }
            }
            // a child module named bare (`scheduler::run`)
            for (child_path, f) in &modules {
                if child_path.len() == me.len() + 1 && child_path[..me.len()] == me[..] {
                    let name = &child_path[me.len()];
                    if !paths_after(&text, name).is_empty() {
                        deps.insert(f.clone());
                    }
                }
            }
        }
        deps.remove(file);
        graph.insert(file.clone(), deps);
    }
    graph
}

/// Upward imports (`file → dependency`) between top-level modules.
fn upward(graph: &BTreeMap<String, BTreeSet<String>>) -> Vec<String> {
    let top = |f: &str| module_path(f).first().cloned().unwrap_or_default();
    let mut bad = Vec::new();
    for (f, deps) in graph {
        if f == "lib.rs" {
            continue; // declares the modules, imports nothing
        }
        let (Some(mine), ft) = (layer_of(&top(f)), top(f)) else {
            bad.push(format!("{f}: module {} is in no layer of LAYERS", top(f)));
            continue;
        };
        for d in deps {
            let dt = top(d);
            match layer_of(&dt) {
                Some(theirs) if dt == ft || theirs > mine => {}
                _ => bad.push(format!("{f} imports {d} (layer of {dt} is not below {ft})")),
            }
        }
    }
    bad
}

/// One import circle, if any (as the files along it).
fn circle(graph: &BTreeMap<String, BTreeSet<String>>) -> Option<Vec<String>> {
    fn visit(
        f: &str,
        graph: &BTreeMap<String, BTreeSet<String>>,
        state: &mut BTreeMap<String, u8>,
        stack: &mut Vec<String>,
    ) -> Option<Vec<String>> {
        state.insert(f.to_string(), 1);
        stack.push(f.to_string());
        for d in graph.get(f).into_iter().flatten() {
            match state.get(d.as_str()) {
                Some(1) => {
                    let at = stack.iter().position(|s| s == d).unwrap_or(0);
                    let mut c = stack[at..].to_vec();
                    c.push(d.clone());
                    return Some(c);
                }
                Some(_) => {}
                None => {
                    if let Some(c) = visit(d, graph, state, stack) {
                        return Some(c);
                    }
                }
            }
        }
        stack.pop();
        state.insert(f.to_string(), 2);
        None
    }
    let mut state = BTreeMap::new();
    for f in graph.keys() {
        if !state.contains_key(f) {
            if let Some(c) = visit(f, graph, &mut state, &mut Vec::new()) {
                return Some(c);
            }
        }
    }
    None
}

fn read_tree(dir: &Path, root: &Path, out: &mut BTreeMap<String, String>) {
    for e in std::fs::read_dir(dir).unwrap() {
        let p = e.unwrap().path();
        if p.is_dir() {
            read_tree(&p, root, out);
        } else if p.extension().is_some_and(|x| x == "rs") {
            let rel = p
                .strip_prefix(root)
                .unwrap()
                .to_string_lossy()
                .replace('\\', "/");
            out.insert(rel, std::fs::read_to_string(&p).unwrap());
        }
    }
}

fn crate_sources() -> BTreeMap<String, String> {
    let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("src");
    let mut files = BTreeMap::new();
    read_tree(&root, &root, &mut files);
    files
}

#[test]
fn no_import_runs_up_the_layers() {
    let graph = imports(&crate_sources());
    assert!(graph.len() > 40, "read {} files", graph.len());
    // the reading sees real imports (so that an empty graph cannot pass)
    assert!(graph["engine/scheduler.rs"].contains("model/mod.rs"));
    assert!(graph["kernels/matmul.rs"].contains("gpu/mod.rs"));
    let bad = upward(&graph);
    assert!(bad.is_empty(), "imports up the layers:\n{}", bad.join("\n"));
}

#[test]
fn no_import_circle_among_the_files() {
    let graph = imports(&crate_sources());
    if let Some(c) = circle(&graph) {
        panic!("import circle: {}", c.join(" -> "));
    }
}

#[test]
fn the_checks_catch_a_circle_and_an_upward_import() {
    let files: BTreeMap<String, String> = [
        ("gpu/mod.rs", "use crate::kernels::KernelOp;\n"),
        ("kernels/mod.rs", "use crate::gpu::{buffers, GpuContext};\n"),
        ("model/mod.rs", "// crate::server::x in a comment is no import\nuse super::x;\n"),
        (
            "engine/mod.rs",
            "mod scheduler;\npub use scheduler::run;\n#[cfg(test)]\nmod tests {\n    use crate::server::y;\n}\n",
        ),
        ("engine/scheduler.rs", "use super::{options::EngineOptions, Job};\n"),
        ("engine/options.rs", "pub struct EngineOptions;\n"),
        (
            "kernels/catalogue.rs",
            "pub struct Prelude;\npub mod prelude {\n    use super::Prelude;\n}\n",
        ),
    ]
    .into_iter()
    .map(|(a, b)| (a.to_string(), b.to_string()))
    .collect();
    let graph = imports(&files);
    assert_eq!(
        graph["engine/scheduler.rs"],
        BTreeSet::from(["engine/options.rs".to_string(), "engine/mod.rs".to_string()])
    );
    assert!(
        graph["engine/mod.rs"].is_empty(),
        "{:?}",
        graph["engine/mod.rs"]
    );
    assert!(
        graph["model/mod.rs"].is_empty(),
        "{:?}",
        graph["model/mod.rs"]
    );
    let bad = upward(&graph);
    assert_eq!(bad.len(), 1, "{bad:?}");
    assert!(
        bad[0].starts_with("gpu/mod.rs imports kernels/mod.rs"),
        "{bad:?}"
    );
    let c = circle(&graph).expect("gpu <-> kernels");
    assert_eq!(c.first(), c.last());
    assert!(c.contains(&"gpu/mod.rs".to_string()) && c.contains(&"kernels/mod.rs".to_string()));
}
