//! The source files import each other without circles (ARCHITECTURE.md, "Layers"): every
//! `crate::` and `super::` path a file names is resolved to the file that defines its module,
//! and the graph of those edges must have no cycle. A circle is printed file by file.

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};

/// Every `.rs` file under `dir`, as a module path (`["pipeline", "batch"]`) → file.
fn modules(src: &Path) -> BTreeMap<Vec<String>, PathBuf> {
    let mut out = BTreeMap::new();
    let mut stack = vec![src.to_path_buf()];
    while let Some(dir) = stack.pop() {
        for entry in std::fs::read_dir(&dir).unwrap() {
            let path = entry.unwrap().path();
            if path.is_dir() {
                stack.push(path);
                continue;
            }
            if path.extension().is_none_or(|e| e != "rs") {
                continue;
            }
            let rel = path.strip_prefix(src).unwrap();
            let mut parts: Vec<String> = rel
                .with_extension("")
                .components()
                .map(|c| c.as_os_str().to_string_lossy().into_owned())
                .collect();
            if matches!(
                parts.last().map(String::as_str),
                Some("mod" | "lib" | "main")
            ) {
                parts.pop();
            }
            // main.rs is the binary's root, beside the library's: it imports the library as
            // `sluice::`, so it has no edges here.
            if rel != Path::new("main.rs") {
                out.insert(parts, path);
            }
        }
    }
    out
}

/// The module paths a file names: `crate::a::b` and `super::c` (resolved against `module`).
fn named_paths(text: &str, module: &[String]) -> Vec<Vec<String>> {
    let mut out = Vec::new();
    let code: String = text
        .lines()
        .map(|l| l.split("//").next().unwrap_or(""))
        .collect::<Vec<_>>()
        .join("\n");
    for (prefix, base) in [
        ("crate::", Vec::new()),
        ("super::", module[..module.len().saturating_sub(1)].to_vec()),
    ] {
        let mut rest = code.as_str();
        while let Some(at) = rest.find(prefix) {
            let before = rest[..at].chars().last();
            rest = &rest[at + prefix.len()..];
            if before.is_some_and(|c| c.is_alphanumeric() || c == '_') {
                continue;
            }
            let mut path = base.clone();
            let mut tail = rest;
            // `use crate::{a, b::c}`: each branch of a group is a path of its own.
            if let Some(group) = tail.strip_prefix('{') {
                out.extend(branches(&path, group));
                continue;
            }
            loop {
                let seg: String = tail
                    .chars()
                    .take_while(|c| c.is_alphanumeric() || *c == '_')
                    .collect();
                if seg.is_empty() {
                    break;
                }
                path.push(seg.clone());
                tail = &tail[seg.len()..];
                match tail.strip_prefix("::") {
                    Some(next) if next.starts_with('{') => {
                        out.extend(branches(&path, &next[1..]));
                        break;
                    }
                    Some(next) => tail = next,
                    None => break,
                }
            }
            out.push(path);
        }
    }
    out
}

/// The paths of a `{a, b::c}` group (given without its `{`) under `prefix`.
fn branches(prefix: &[String], group: &str) -> Vec<Vec<String>> {
    let end = group.find('}').unwrap_or(group.len());
    group[..end]
        .split(',')
        .map(|branch| {
            let mut p = prefix.to_vec();
            p.extend(segments(branch.trim()));
            p
        })
        .collect()
}

fn segments(path: &str) -> Vec<String> {
    path.split("::")
        .map(|s| {
            s.chars()
                .take_while(|c| c.is_alphanumeric() || *c == '_')
                .collect::<String>()
        })
        .filter(|s| !s.is_empty() && s != "self")
        .collect()
}

/// The file defining the longest prefix of `path` that is a module.
fn resolve<'a>(
    path: &[String],
    modules: &'a BTreeMap<Vec<String>, PathBuf>,
) -> Option<&'a PathBuf> {
    (1..=path.len()).rev().find_map(|n| modules.get(&path[..n]))
}

#[test]
fn the_source_files_import_without_circles() {
    let src = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("src");
    let modules = modules(&src);
    let mut edges: BTreeMap<&PathBuf, BTreeSet<&PathBuf>> = BTreeMap::new();
    for (module, file) in &modules {
        let text = std::fs::read_to_string(file).unwrap();
        // Unit tests inside a file may reach anywhere; they are not part of the layering.
        let text = text.split("#[cfg(test)]").next().unwrap_or("");
        for path in named_paths(text, module) {
            if let Some(target) = resolve(&path, &modules) {
                if target != file {
                    edges.entry(file).or_default().insert(target);
                }
            }
        }
    }
    assert!(
        edges.values().map(BTreeSet::len).sum::<usize>() > 100,
        "the import graph was not read"
    );
    // Depth-first search for a back edge; the stack is the circle when one is found.
    fn visit<'a>(
        node: &'a PathBuf,
        edges: &BTreeMap<&'a PathBuf, BTreeSet<&'a PathBuf>>,
        state: &mut BTreeMap<&'a PathBuf, bool>,
        stack: &mut Vec<&'a PathBuf>,
    ) -> Option<Vec<&'a PathBuf>> {
        match state.get(node) {
            Some(true) => return None,
            Some(false) => {
                let from = stack.iter().position(|n| *n == node).unwrap_or(0);
                return Some(stack[from..].to_vec());
            }
            None => {}
        }
        state.insert(node, false);
        stack.push(node);
        for next in edges.get(node).into_iter().flatten() {
            if let Some(circle) = visit(next, edges, state, stack) {
                return Some(circle);
            }
        }
        stack.pop();
        state.insert(node, true);
        None
    }
    let mut state = BTreeMap::new();
    for file in modules.values() {
        let mut stack = Vec::new();
        if let Some(circle) = visit(file, &edges, &mut state, &mut stack) {
            let names: Vec<String> = circle
                .iter()
                .map(|p| p.strip_prefix(&src).unwrap().display().to_string())
                .collect();
            panic!(
                "an import circle: {} → back to the first",
                names.join(" → ")
            );
        }
    }
}
