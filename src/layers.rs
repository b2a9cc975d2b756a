//! The layers of the crate, checked on every test run so that an import cycle cannot come back:
//! each top-level module uses only modules of a lower layer, and the files inside a module form
//! no cycle either.

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};

/// Each top-level module and its layer: a module may use only modules of a lower layer.
const LAYERS: [(&str, u8); 14] = [
    ("gucs", 0),
    ("selected", 0),
    ("xact", 0),
    ("error", 0),
    ("compat", 0),
    ("expiry", 1),
    ("codec", 1),
    ("access", 1),
    ("shmem", 1),
    ("bgw", 1),
    ("feed", 2),
    ("store", 3),
    ("worker", 4),
    ("api", 4),
];

fn layer(module: &str) -> Option<u8> {
    LAYERS.iter().find(|(name, _)| *name == module).map(|(_, layer)| *layer)
}

/// Every `.rs` file under `dir`.
fn files(dir: &Path) -> Vec<PathBuf> {
    let mut found = Vec::new();
    for entry in std::fs::read_dir(dir).expect("a readable source directory") {
        let path = entry.expect("a directory entry").path();
        if path.is_dir() {
            found.extend(files(&path));
        } else if path.extension().is_some_and(|extension| extension == "rs") {
            found.push(path);
        }
    }
    found
}

/// The code of a file before its test module: tests may reach anything.
fn code(path: &Path) -> String {
    let text = std::fs::read_to_string(path).expect("a readable source file");
    let end = ["#[cfg(test)]", "#[cfg(any(test"].iter().filter_map(|marker| text.find(marker)).min();
    text[..end.unwrap_or(text.len())].to_owned()
}

/// The module path of a file relative to `src`: `store/mod.rs` is `store`, `store/eviction.rs`
/// is `store::eviction`.
fn module_of(relative: &Path) -> Vec<String> {
    let mut parts: Vec<String> =
        relative.iter().map(|part| part.to_string_lossy().trim_end_matches(".rs").to_owned()).collect();
    if parts.last().is_some_and(|last| last == "mod") {
        parts.pop();
    }
    parts
}

/// The identifiers that follow `prefix` in `code` (`crate::store` gives `store`), including each
/// name of a `prefix{a, b::c}` group.
fn names_after(code: &str, prefix: &str) -> BTreeSet<String> {
    let identifier =
        |text: &str| -> String { text.chars().take_while(|c| c.is_alphanumeric() || *c == '_').collect() };
    let mut names = BTreeSet::new();
    for (at, _) in code.match_indices(prefix) {
        let rest = &code[at + prefix.len()..];
        if let Some(group) = rest.strip_prefix('{') {
            let group = &group[..group.find('}').unwrap_or(group.len())];
            names
                .extend(group.split(',').map(|item| identifier(item.trim())).filter(|name| !name.is_empty()));
        } else {
            names.insert(identifier(rest));
        }
    }
    names.remove("self");
    names.remove("");
    names
}

fn sources() -> Vec<(Vec<String>, String)> {
    let src = Path::new(env!("CARGO_MANIFEST_DIR")).join("src");
    files(&src)
        .into_iter()
        .map(|path| (module_of(path.strip_prefix(&src).expect("under src")), code(&path)))
        .filter(|(module, _)| !module.is_empty() && module[0] != "lib" && module[0] != "layers")
        .collect()
}

#[test]
fn every_top_level_module_has_a_layer() {
    for (module, _) in sources() {
        assert!(layer(&module[0]).is_some(), "src/{} has no layer in LAYERS", module[0]);
    }
}

#[test]
fn modules_use_only_lower_layers() {
    let mut wrong = Vec::new();
    for (module, code) in sources() {
        let own = layer(&module[0]).expect("checked above");
        for used in names_after(&code, "crate::") {
            if used == module[0] {
                continue;
            }
            match layer(&used) {
                Some(theirs) if theirs < own => {}
                _ => wrong.push(format!("{} uses crate::{used}", module.join("::"))),
            }
        }
    }
    assert!(wrong.is_empty(), "uses of the same or a higher layer: {wrong:?}");
}

#[test]
fn files_inside_a_module_form_no_cycle() {
    let sources = sources();
    let known: BTreeSet<Vec<String>> = sources.iter().map(|(module, _)| module.clone()).collect();
    // Edges between files of one top-level module: `super::x` from a child file, `x::` of a
    // child from its parent, and `crate::top::x`.
    let mut edges: BTreeMap<Vec<String>, BTreeSet<Vec<String>>> = BTreeMap::new();
    for (module, code) in &sources {
        let parent: Vec<String> = module[..module.len().saturating_sub(1)].to_vec();
        let mut targets = BTreeSet::new();
        if module.len() > 1 {
            for name in names_after(code, "super::") {
                let sibling = [parent.clone(), vec![name]].concat();
                targets.insert(if known.contains(&sibling) { sibling } else { parent.clone() });
            }
        }
        for name in names_after(code, &format!("crate::{}::", module[0])) {
            let child = vec![module[0].clone(), name];
            targets.insert(if known.contains(&child) { child } else { vec![module[0].clone()] });
        }
        for line in code.lines().filter(|line| line.starts_with("use ") || line.starts_with("pub use ")) {
            let path = line.trim_start_matches("pub ").trim_start_matches("use ");
            let first: String = path.chars().take_while(|c| c.is_alphanumeric() || *c == '_').collect();
            let child = [module.clone(), vec![first]].concat();
            if known.contains(&child) {
                targets.insert(child);
            }
        }
        targets.remove(module);
        edges.entry(module.clone()).or_default().extend(targets);
    }
    // Depth-first search for a path back to where it started.
    fn reaches(
        edges: &BTreeMap<Vec<String>, BTreeSet<Vec<String>>>,
        from: &Vec<String>,
        to: &Vec<String>,
        seen: &mut BTreeSet<Vec<String>>,
    ) -> bool {
        edges
            .get(from)
            .into_iter()
            .flatten()
            .any(|next| next == to || (seen.insert(next.clone()) && reaches(edges, next, to, seen)))
    }
    let cycles: Vec<String> = edges
        .keys()
        .filter(|module| reaches(&edges, module, module, &mut BTreeSet::new()))
        .map(|module| module.join("::"))
        .collect();
    assert!(cycles.is_empty(), "files in a cycle of uses: {cycles:?}");
}
