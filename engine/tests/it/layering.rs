//! The engine's modules import one way: no cycle among its files, nor among its top-level
//! modules (a directory counts as one). Read from the source as text: every `crate::a::b`
//! and `super::x` path outside `#[cfg(test)]` modules is an edge to the deepest module it
//! names (a parent and its own children are not counted: a directory's `mod.rs` declares
//! and re-exports them).

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};

type Module = Vec<String>;

fn rust_files(dir: &Path, out: &mut Vec<PathBuf>) {
    for entry in std::fs::read_dir(dir).unwrap() {
        let p = entry.unwrap().path();
        if p.is_dir() {
            rust_files(&p, out);
        } else if p.extension().is_some_and(|e| e == "rs") {
            out.push(p);
        }
    }
}

fn module_of(src: &Path, file: &Path) -> Module {
    let rel = file.strip_prefix(src).unwrap().with_extension("");
    let mut m: Module = rel
        .iter()
        .map(|c| c.to_string_lossy().into_owned())
        .collect();
    if matches!(m.last().map(String::as_str), Some("mod" | "lib")) {
        m.pop();
    }
    m
}

/// The source without comments and without `#[cfg(test)] mod name { ... }` blocks; `None`
/// for a file that is only a test module (declared `#[cfg(test)] mod tests;`).
fn code_of(text: &str) -> String {
    let mut out = String::new();
    let mut lines = text.lines().peekable();
    while let Some(line) = lines.next() {
        let t = line.trim_start();
        if t.starts_with("#[cfg(test)]") {
            if let Some(next) = lines.peek() {
                let n = next.trim_start();
                if n.starts_with("mod ") && n.trim_end().ends_with('{') {
                    let mut depth = 0i32;
                    for l in lines.by_ref() {
                        depth += l.matches('{').count() as i32 - l.matches('}').count() as i32;
                        if depth <= 0 {
                            break;
                        }
                    }
                    continue;
                }
            }
        }
        let code = line.split("//").next().unwrap_or("");
        out.push_str(code);
        out.push('\n');
    }
    out
}

/// Paths that follow `prefix` (`crate::` or `super::`), with `{a, b::c}` groups expanded.
fn paths_after(code: &str, prefix: &str) -> Vec<(usize, Vec<String>)> {
    let mut found = Vec::new();
    let mut at = 0;
    while let Some(i) = code[at..].find(prefix) {
        let start = at + i;
        at = start + prefix.len();
        let before = code[..start].chars().last();
        if before.is_some_and(|c| c.is_alphanumeric() || c == '_' || c == ':') {
            continue;
        }
        // Count `super::super::` chains.
        let mut ups = 1;
        let mut rest = &code[at..];
        while prefix == "super::" && rest.starts_with("super::") {
            ups += 1;
            rest = &rest["super::".len()..];
        }
        let mut base: Vec<String> = Vec::new();
        let mut r = rest;
        loop {
            let ident: String = r
                .chars()
                .take_while(|c| c.is_alphanumeric() || *c == '_')
                .collect();
            if ident.is_empty() {
                break;
            }
            base.push(ident.clone());
            r = &r[ident.len()..];
            if let Some(after) = r.strip_prefix("::") {
                r = after;
            } else {
                break;
            }
        }
        if let Some(group) = r.strip_prefix('{') {
            let inner = &group[..group.find('}').unwrap_or(group.len())];
            for item in inner.split(',') {
                let item = item.split(" as ").next().unwrap_or("").trim();
                if item.is_empty() || item == "self" {
                    continue;
                }
                let mut p = base.clone();
                p.extend(item.split("::").map(|s| s.trim().to_string()));
                found.push((ups, p));
            }
        }
        found.push((ups, base));
    }
    found
}

fn resolve(modules: &BTreeSet<Module>, path: &[String]) -> Option<Module> {
    (1..=path.len())
        .rev()
        .map(|k| path[..k].to_vec())
        .find(|m| modules.contains(m))
}

fn graph(src: &Path) -> BTreeMap<Module, BTreeSet<Module>> {
    let mut files = Vec::new();
    rust_files(src, &mut files);
    let modules: BTreeSet<Module> = files.iter().map(|f| module_of(src, f)).collect();
    let mut g: BTreeMap<Module, BTreeSet<Module>> = BTreeMap::new();
    for f in &files {
        let m = module_of(src, f);
        // Test modules in files of their own (`#[cfg(test)] mod tests;`) are not edges.
        if m.last().is_some_and(|n| n == "tests") {
            continue;
        }
        let code = code_of(&std::fs::read_to_string(f).unwrap());
        let mut targets = BTreeSet::new();
        for (_, p) in paths_after(&code, "crate::") {
            targets.extend(resolve(&modules, &p));
        }
        for (ups, p) in paths_after(&code, "super::") {
            let Some(keep) = m.len().checked_sub(ups) else {
                continue;
            };
            let mut full = m[..keep].to_vec();
            full.extend(p);
            if let Some(t) = resolve(&modules, &full) {
                if t.len() > keep {
                    targets.insert(t);
                }
            }
        }
        targets.remove(&m);
        g.entry(m).or_default().extend(targets);
    }
    g
}

/// Strongly connected components with more than one member (Tarjan).
fn cycles(g: &BTreeMap<Module, BTreeSet<Module>>) -> Vec<Vec<Module>> {
    struct T<'a> {
        g: &'a BTreeMap<Module, BTreeSet<Module>>,
        index: BTreeMap<&'a Module, usize>,
        low: BTreeMap<&'a Module, usize>,
        stack: Vec<&'a Module>,
        on: BTreeSet<&'a Module>,
        next: usize,
        out: Vec<Vec<Module>>,
    }
    fn visit<'a>(t: &mut T<'a>, v: &'a Module) {
        t.index.insert(v, t.next);
        t.low.insert(v, t.next);
        t.next += 1;
        t.stack.push(v);
        t.on.insert(v);
        let g = t.g;
        for w in g.get(v).into_iter().flatten() {
            let w = g.get_key_value(w).map_or(w, |(k, _)| k);
            if !t.index.contains_key(w) {
                visit(t, w);
                let lw = t.low[w];
                let lv = t.low.get_mut(v).unwrap();
                *lv = (*lv).min(lw);
            } else if t.on.contains(w) {
                let iw = t.index[w];
                let lv = t.low.get_mut(v).unwrap();
                *lv = (*lv).min(iw);
            }
        }
        if t.low[v] == t.index[v] {
            let mut scc = Vec::new();
            while let Some(w) = t.stack.pop() {
                t.on.remove(w);
                scc.push(w.clone());
                if w == v {
                    break;
                }
            }
            if scc.len() > 1 {
                t.out.push(scc);
            }
        }
    }
    let mut t = T {
        g,
        index: BTreeMap::new(),
        low: BTreeMap::new(),
        stack: Vec::new(),
        on: BTreeSet::new(),
        next: 0,
        out: Vec::new(),
    };
    for v in g.keys() {
        if !t.index.contains_key(v) {
            visit(&mut t, v);
        }
    }
    t.out
}

fn src() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("src")
}

fn no_cycles(g: &BTreeMap<Module, BTreeSet<Module>>, what: &str) {
    let c = cycles(g);
    let named: Vec<Vec<String>> = c
        .iter()
        .map(|s| s.iter().map(|m| m.join("::")).collect())
        .collect();
    assert!(named.is_empty(), "{what} import cycles: {named:?}");
}

#[test]
fn no_file_imports_another_that_imports_it_back() {
    let g = graph(&src());
    assert!(g.len() > 50, "read {} modules only", g.len());
    // Parent and child are one unit (a directory declares its files).
    let g: BTreeMap<Module, BTreeSet<Module>> = g
        .into_iter()
        .map(|(a, ts)| {
            let ts = ts
                .into_iter()
                .filter(|b| !(b.starts_with(&a) || a.starts_with(b)))
                .collect();
            (a, ts)
        })
        .collect();
    no_cycles(&g, "file");
}

#[test]
fn no_top_level_module_imports_another_that_imports_it_back() {
    let mut top: BTreeMap<Module, BTreeSet<Module>> = BTreeMap::new();
    for (a, ts) in graph(&src()) {
        let ta = a.first().cloned().into_iter().collect::<Module>();
        let e = top.entry(ta.clone()).or_default();
        for b in ts {
            let tb: Module = b.first().cloned().into_iter().collect();
            if tb != ta {
                e.insert(tb);
            }
        }
    }
    no_cycles(&top, "top-level module");
}

/// The checker finds a cycle when there is one (the engine's `render` <-> `cilium_glue`
/// cycle as it was).
#[test]
fn the_checker_sees_a_cycle() {
    let m = |s: &str| -> Module { s.split("::").map(str::to_string).collect() };
    let g = BTreeMap::from([
        (m("render"), BTreeSet::from([m("cilium_glue"), m("event")])),
        (m("cilium_glue"), BTreeSet::from([m("render")])),
        (m("event"), BTreeSet::new()),
    ]);
    assert_eq!(cycles(&g).len(), 1);
    let code = code_of("use crate::render::{Names, x::Y};\nuse super::super::a;\n");
    let p = paths_after(&code, "crate::");
    assert!(p.contains(&(1, m("render::Names"))));
    assert!(p.contains(&(1, m("render::x::Y"))));
    assert_eq!(paths_after(&code, "super::"), vec![(2, m("a"))]);
}
