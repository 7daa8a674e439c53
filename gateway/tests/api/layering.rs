//! The gateway's layering, read from its sources: the modules import each other without
//! a cycle, and only the HTTP layer (and the composition root above it) knows actix-web
//! and the HTTP module. A file is a module (`mod.rs` is its folder's); an import is any
//! `crate::…`, `super::…` or child-module path, in a `use` line or inline.

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};

/// The modules above the HTTP layer: they build it and run it.
const ABOVE_HTTP: &[&str] = &["main", "startup", "demo"];

struct Module {
    /// Its path in the crate, e.g. `["otp", "batch"]` (`[]` for lib.rs).
    path: Vec<String>,
    source: String,
}

fn modules(src: &Path) -> Vec<Module> {
    let mut out = Vec::new();
    let mut stack = vec![src.to_path_buf()];
    while let Some(dir) = stack.pop() {
        for entry in std::fs::read_dir(&dir).unwrap() {
            let p = entry.unwrap().path();
            if p.is_dir() {
                stack.push(p);
                continue;
            }
            if p.extension().and_then(|e| e.to_str()) != Some("rs") {
                continue;
            }
            let rel: PathBuf = p.strip_prefix(src).unwrap().with_extension("");
            let mut path: Vec<String> = rel
                .components()
                .map(|c| c.as_os_str().to_string_lossy().into_owned())
                .collect();
            if matches!(path.last().map(String::as_str), Some("mod" | "lib")) {
                path.pop();
            }
            let source = strip_comments(&std::fs::read_to_string(&p).unwrap());
            out.push(Module {
                path,
                source: without_tests(&source).to_owned(),
            });
        }
    }
    out.sort_by(|a, b| a.path.cmp(&b.path));
    out
}

/// The source without `//` comments and string literals, raw ones included (neither
/// imports anything).
fn strip_comments(source: &str) -> String {
    let mut out = String::with_capacity(source.len());
    let mut chars = source.chars().peekable();
    let mut in_string = false;
    let mut prev = ' ';
    while let Some(c) = chars.next() {
        let before = std::mem::replace(&mut prev, c);
        if !in_string && c == 'r' && !(before.is_alphanumeric() || before == '_') {
            let ahead: String = chars.clone().take_while(|&c| c == '#').collect();
            if chars.clone().nth(ahead.len()) == Some('"') {
                for _ in 0..=ahead.len() {
                    chars.next();
                }
                let close = format!("\"{ahead}");
                let mut seen = String::new();
                for c in chars.by_ref() {
                    seen.push(c);
                    if c == '\n' {
                        out.push('\n');
                    }
                    if seen.ends_with(&close) {
                        break;
                    }
                }
                out.push_str("\"\"");
                prev = '"';
                continue;
            }
        }
        if in_string {
            match c {
                '\\' => {
                    chars.next();
                }
                '"' => in_string = false,
                '\n' => out.push('\n'),
                _ => {}
            }
            continue;
        }
        match c {
            '"' => {
                in_string = true;
                out.push_str("\"\"");
            }
            // A char literal holding a quote must not open a string.
            '\'' if chars.peek() == Some(&'"') => {
                chars.next();
                chars.next();
            }
            '/' if chars.peek() == Some(&'/') => {
                for c in chars.by_ref() {
                    if c == '\n' {
                        out.push('\n');
                        break;
                    }
                }
            }
            _ => out.push(c),
        }
    }
    out
}

/// The source before its unit tests (`#[cfg(test)] mod …`, at the end of a file by
/// convention): what tests import is not the product's layering, and their `super` is
/// the file itself.
fn without_tests(source: &str) -> &str {
    let mut from = 0;
    while let Some(k) = source[from..].find("#[cfg(test)]") {
        let at = from + k;
        let after = source[at + "#[cfg(test)]".len()..].trim_start();
        if after.starts_with("mod ") {
            return &source[..at];
        }
        from = at + 1;
    }
    source
}

/// Every path written in the source (`a::b::c`), with `use` groups expanded.
fn paths(source: &str) -> Vec<Vec<String>> {
    let mut out = Vec::new();
    // `use` items, braces expanded.
    let mut rest = source;
    while let Some(i) = find_word(rest, "use") {
        let after = &rest[i + 3..];
        let end = after.find(';').unwrap_or(after.len());
        expand(after[..end].trim(), &mut Vec::new(), &mut out);
        rest = &after[end..];
    }
    // Inline paths: a word followed by `::`.
    let bytes = source.as_bytes();
    let is_ident = |b: u8| b.is_ascii_alphanumeric() || b == b'_';
    let mut i = 0;
    while i < bytes.len() {
        if is_ident(bytes[i]) && (i == 0 || !(is_ident(bytes[i - 1]) || bytes[i - 1] == b':')) {
            let mut j = i;
            let mut segs = Vec::new();
            loop {
                let start = j;
                while j < bytes.len() && is_ident(bytes[j]) {
                    j += 1;
                }
                segs.push(source[start..j].to_owned());
                if source[j..].starts_with("::") && j + 2 < bytes.len() && is_ident(bytes[j + 2]) {
                    j += 2;
                } else {
                    break;
                }
            }
            if segs.len() > 1 {
                out.push(segs);
            }
            i = j.max(i + 1);
        } else {
            i += 1;
        }
    }
    out
}

fn find_word(s: &str, word: &str) -> Option<usize> {
    let b = s.as_bytes();
    let mut from = 0;
    while let Some(k) = s[from..].find(word) {
        let i = from + k;
        let before = i == 0 || !(b[i - 1].is_ascii_alphanumeric() || b[i - 1] == b'_');
        let after = b
            .get(i + word.len())
            .is_none_or(|c| c.is_ascii_whitespace());
        if before && after {
            return Some(i);
        }
        from = i + word.len();
    }
    None
}

/// `a::{b, c::{d, e}}` → `a::b`, `a::c::d`, `a::c::e`.
fn expand(tree: &str, prefix: &mut Vec<String>, out: &mut Vec<Vec<String>>) {
    let tree = tree.trim();
    if let Some(open) = tree.find('{') {
        let head: Vec<String> = tree[..open]
            .split("::")
            .map(str::trim)
            .filter(|s| !s.is_empty())
            .map(str::to_owned)
            .collect();
        let inner = &tree[open + 1..tree.rfind('}').unwrap_or(tree.len())];
        let n = prefix.len();
        prefix.extend(head);
        let mut depth = 0;
        let mut start = 0;
        for (k, c) in inner.char_indices() {
            match c {
                '{' => depth += 1,
                '}' => depth -= 1,
                ',' if depth == 0 => {
                    expand(&inner[start..k], prefix, out);
                    start = k + 1;
                }
                _ => {}
            }
        }
        expand(&inner[start..], prefix, out);
        prefix.truncate(n);
    } else if !tree.is_empty() {
        let name = tree.split(" as ").next().unwrap_or(tree);
        let mut p = prefix.clone();
        p.extend(name.split("::").map(|s| s.trim().to_owned()));
        out.push(p);
    }
}

/// The module a path in `from` names, if it is one of the crate's.
fn resolve(from: &[String], path: &[String], known: &BTreeSet<Vec<String>>) -> Option<Vec<String>> {
    let mut base: Vec<String> = match path.first().map(String::as_str) {
        Some("crate") => Vec::new(),
        Some("super") => from[..from.len().saturating_sub(1)].to_vec(),
        Some("self") => from.to_vec(),
        Some(first) => {
            let mut child = from.to_vec();
            child.push(first.to_owned());
            if !known.contains(&child) {
                return None;
            }
            from.to_vec()
        }
        None => return None,
    };
    let mut rest = &path[usize::from(matches!(path[0].as_str(), "crate" | "super" | "self"))..];
    while rest.first().map(String::as_str) == Some("super") {
        base.pop();
        rest = &rest[1..];
    }
    let mut found = None;
    let mut cur = base.clone();
    if !cur.is_empty() && known.contains(&cur) {
        found = Some(cur.clone());
    }
    for seg in rest {
        cur.push(seg.clone());
        if known.contains(&cur) {
            found = Some(cur.clone());
        } else {
            break;
        }
    }
    found
}

fn name(path: &[String]) -> String {
    if path.is_empty() {
        "lib".into()
    } else {
        path.join("::")
    }
}

fn graph(src: &Path) -> (Vec<Module>, BTreeMap<String, BTreeSet<String>>) {
    let mods = modules(src);
    let known: BTreeSet<Vec<String>> = mods.iter().map(|m| m.path.clone()).collect();
    let mut edges: BTreeMap<String, BTreeSet<String>> = BTreeMap::new();
    for m in &mods {
        let from = name(&m.path);
        let entry = edges.entry(from.clone()).or_default();
        if m.path.is_empty() {
            continue; // lib.rs declares the modules; it imports none of them.
        }
        for p in paths(&m.source) {
            if let Some(to) = resolve(&m.path, &p, &known) {
                // A module's own items, and its ancestors' declarations of it, are not
                // imports; the crate root holds nothing else.
                if to != m.path && !to.is_empty() {
                    entry.insert(name(&to));
                }
            }
        }
    }
    (mods, edges)
}

/// The cycles of a directed graph (its strongly connected components of two or more).
fn cycles(edges: &BTreeMap<String, BTreeSet<String>>) -> Vec<Vec<String>> {
    // Tarjan's algorithm.
    struct T<'a> {
        edges: &'a BTreeMap<String, BTreeSet<String>>,
        index: BTreeMap<&'a str, usize>,
        low: BTreeMap<&'a str, usize>,
        stack: Vec<&'a str>,
        on: BTreeSet<&'a str>,
        out: Vec<Vec<String>>,
    }
    fn visit<'a>(t: &mut T<'a>, v: &'a str) {
        let i = t.index.len();
        t.index.insert(v, i);
        t.low.insert(v, i);
        t.stack.push(v);
        t.on.insert(v);
        if let Some(next) = t.edges.get(v) {
            for w in next {
                let w = w.as_str();
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
        }
        if t.low[v] == t.index[v] {
            let mut comp = Vec::new();
            while let Some(w) = t.stack.pop() {
                t.on.remove(w);
                comp.push(w.to_owned());
                if w == v {
                    break;
                }
            }
            if comp.len() > 1 {
                comp.sort();
                t.out.push(comp);
            }
        }
    }
    let mut t = T {
        edges,
        index: BTreeMap::new(),
        low: BTreeMap::new(),
        stack: Vec::new(),
        on: BTreeSet::new(),
        out: Vec::new(),
    };
    for v in edges.keys() {
        if !t.index.contains_key(v.as_str()) {
            visit(&mut t, v);
        }
    }
    t.out
}

fn src() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("src")
}

#[test]
fn the_gateways_modules_import_each_other_without_a_cycle() {
    let (_, edges) = graph(&src());
    let found = cycles(&edges);
    let described: Vec<String> = found
        .iter()
        .map(|c| {
            let arrows: Vec<String> = c
                .iter()
                .flat_map(|a| {
                    edges[a]
                        .iter()
                        .filter(|b| c.contains(b))
                        .map(move |b| format!("{a} -> {b}"))
                })
                .collect();
            arrows.join(", ")
        })
        .collect();
    assert!(found.is_empty(), "import cycles: {described:#?}");
}

#[test]
fn nothing_below_the_http_layer_knows_it_or_actix_web() {
    let (mods, edges) = graph(&src());
    let mut wrong = Vec::new();
    for m in &mods {
        let top = m.path.first().map(String::as_str).unwrap_or("lib");
        if top == "http" || ABOVE_HTTP.contains(&top) || top == "lib" {
            continue;
        }
        let from = name(&m.path);
        if paths(&m.source).iter().any(|p| p[0] == "actix_web") {
            wrong.push(format!("{from} uses actix_web"));
        }
        for to in &edges[&from] {
            let head = to.split("::").next().unwrap();
            if head == "http" || ABOVE_HTTP.contains(&head) {
                wrong.push(format!("{from} imports {to}"));
            }
        }
    }
    assert!(wrong.is_empty(), "{wrong:#?}");
}

/// The reader sees what the two checks above rely on: a cycle, a `use` group, `super`,
/// a child module, inline paths, and not what is in comments and strings.
#[test]
fn the_layering_reader_finds_imports_and_cycles() {
    let dir = std::env::temp_dir().join(format!("layering-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(dir.join("a")).unwrap();
    let write = |p: &str, s: &str| std::fs::write(dir.join(p), s).unwrap();
    write("lib.rs", "pub mod a;\npub mod b;\npub mod c;\npub mod d;\n");
    write("a/mod.rs", "pub mod child;\nfn f() { child::g(); }\n");
    write("a/child.rs", "use super::{X, Y as Z};\n");
    write(
        "b.rs",
        "use crate::{c::{self, C}, a};\n// crate::d::x\nconst S: &str = \"crate::d::y\";\n",
    );
    write(
        "c.rs",
        "fn f() { let _ = crate::b::B; }\n#[cfg(test)]\nmod tests {\n    use super::*;\n    use crate::d;\n}\n",
    );
    write(
        "d.rs",
        "use actix_web::web;\nconst R: &str = r#\"x \" crate::b::y \"#;\n",
    );
    let (mods, edges) = graph(&dir);
    assert_eq!(mods.len(), 6);
    assert_eq!(
        edges["a"],
        BTreeSet::from(["a::child".to_owned()]),
        "{edges:?}"
    );
    assert_eq!(edges["a::child"], BTreeSet::from(["a".to_owned()]));
    assert_eq!(
        edges["b"],
        BTreeSet::from(["a".to_owned(), "c".to_owned()]),
        "comments and strings are not imports"
    );
    assert_eq!(edges["c"], BTreeSet::from(["b".to_owned()]));
    assert!(edges["d"].is_empty(), "raw strings are not imports");
    let mut found = cycles(&edges);
    found.sort();
    assert_eq!(
        found,
        vec![
            vec!["a".to_owned(), "a::child".to_owned()],
            vec!["b".to_owned(), "c".to_owned()]
        ]
    );
    assert!(
        paths(&mods.iter().find(|m| m.path == ["d"]).unwrap().source)
            .iter()
            .any(|p| p[0] == "actix_web")
    );
    let _ = std::fs::remove_dir_all(&dir);
}
