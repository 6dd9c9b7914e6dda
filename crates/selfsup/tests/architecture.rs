//! The workspace's shape, checked: crates depend only on the layers below them, no two modules
//! of a crate import each other in a circle, the `selfsup` binary is a thin layer over the
//! library, and no code asks a config which modality it is.

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};

fn workspace() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../..")
}

fn rust_files(dir: &Path) -> Vec<PathBuf> {
    let mut out = Vec::new();
    for e in std::fs::read_dir(dir).into_iter().flatten().flatten() {
        let p = e.path();
        if p.is_dir() {
            out.extend(rust_files(&p));
        } else if p.extension().is_some_and(|x| x == "rs") {
            out.push(p);
        }
    }
    out
}

/// The crates bottom up: each may depend only on crates before it.
const LAYERS: &[&str] = &[
    "selfsup-kernels",
    "selfsup-dist",
    "selfsup-data",
    "selfsup-optim",
    "selfsup-eval",
    "selfsup-models",
    "selfsup-methods",
    "selfsup-core",
    "selfsup-image",
    "selfsup-audio",
    "selfsup-text",
    "selfsup",
    "selfsup-bench",
];

/// The `selfsup-*` dependencies of a crate's `[dependencies]`.
fn selfsup_dependencies(manifest: &Path) -> Vec<String> {
    let text = std::fs::read_to_string(manifest).unwrap();
    let table: toml::Table = toml::from_str(&text).unwrap();
    table
        .get("dependencies")
        .and_then(|d| d.as_table())
        .map(|d| {
            d.keys()
                .filter(|k| k.starts_with("selfsup"))
                .cloned()
                .collect()
        })
        .unwrap_or_default()
}

#[test]
fn crates_depend_only_on_the_layers_below() {
    let crates = workspace().join("crates");
    let mut seen = 0;
    for dir in std::fs::read_dir(&crates).unwrap().flatten() {
        let name = dir.file_name().to_string_lossy().into_owned();
        let Some(level) = LAYERS.iter().position(|l| *l == name) else {
            panic!("crate {name} is not in LAYERS: place it in the layering");
        };
        seen += 1;
        for dep in selfsup_dependencies(&dir.path().join("Cargo.toml")) {
            let dep_level = LAYERS
                .iter()
                .position(|l| *l == dep)
                .unwrap_or_else(|| panic!("{name} depends on unknown crate {dep}"));
            assert!(
                dep_level < level,
                "{name} depends on {dep}, which is not below it"
            );
            // Modalities are plug-ins of the core: none depends on another.
            let modality =
                |c: &str| matches!(c, "selfsup-image" | "selfsup-audio" | "selfsup-text");
            assert!(
                !(modality(&name) && modality(&dep)),
                "modality crate {name} depends on modality crate {dep}"
            );
        }
    }
    assert!(seen >= 10, "found {seen} crates under {}", crates.display());
}

/// The module of `file` under `src` (its first path component: `config/keys.rs` → `config`);
/// `None` for the crate root.
fn module_of(src: &Path, file: &Path) -> Option<String> {
    let rel = file.strip_prefix(src).ok()?;
    let first = rel
        .components()
        .next()?
        .as_os_str()
        .to_string_lossy()
        .into_owned();
    let name = first.trim_end_matches(".rs").to_string();
    (!matches!(name.as_str(), "lib" | "main")).then_some(name)
}

/// The top-level modules a source file refers to through `crate::`.
fn crate_references(text: &str) -> BTreeSet<String> {
    let mut out = BTreeSet::new();
    for (i, _) in text.match_indices("crate::") {
        let rest = &text[i + 7..];
        if let Some(group) = rest.strip_prefix('{') {
            // `use crate::{a, b::c, d::{e, f}}`: the first path element of each item.
            let mut depth = 0;
            let mut item = String::new();
            let mut first_elements = Vec::new();
            let mut at_start = true;
            for c in group.chars() {
                match c {
                    '{' => depth += 1,
                    '}' if depth == 0 => break,
                    '}' => depth -= 1,
                    ',' if depth == 0 => {
                        first_elements.push(std::mem::take(&mut item));
                        at_start = true;
                        continue;
                    }
                    _ => {}
                }
                if depth == 0 && at_start {
                    if c == ':' {
                        at_start = false;
                    } else if !c.is_whitespace() {
                        item.push(c);
                    }
                }
            }
            first_elements.push(item);
            out.extend(first_elements.into_iter().filter(|s| !s.is_empty()));
        } else {
            let ident: String = rest
                .chars()
                .take_while(|c| c.is_alphanumeric() || *c == '_')
                .collect();
            out.insert(ident);
        }
    }
    out
}

/// A cycle in `graph`, if any (depth-first search).
fn find_cycle(graph: &BTreeMap<String, BTreeSet<String>>) -> Option<Vec<String>> {
    fn visit(
        node: &str,
        graph: &BTreeMap<String, BTreeSet<String>>,
        stack: &mut Vec<String>,
        done: &mut BTreeSet<String>,
    ) -> Option<Vec<String>> {
        if let Some(at) = stack.iter().position(|n| n == node) {
            let mut cycle = stack[at..].to_vec();
            cycle.push(node.to_string());
            return Some(cycle);
        }
        if done.contains(node) {
            return None;
        }
        stack.push(node.to_string());
        for next in graph.get(node).into_iter().flatten() {
            if let Some(c) = visit(next, graph, stack, done) {
                return Some(c);
            }
        }
        stack.pop();
        done.insert(node.to_string());
        None
    }
    let mut done = BTreeSet::new();
    for node in graph.keys() {
        if let Some(c) = visit(node, graph, &mut Vec::new(), &mut done) {
            return Some(c);
        }
    }
    None
}

#[test]
fn no_two_modules_import_each_other_in_a_circle() {
    let mut checked = 0;
    for dir in std::fs::read_dir(workspace().join("crates"))
        .unwrap()
        .flatten()
    {
        let src = dir.path().join("src");
        let files = rust_files(&src);
        let modules: BTreeSet<String> = files.iter().filter_map(|f| module_of(&src, f)).collect();
        let mut graph: BTreeMap<String, BTreeSet<String>> = BTreeMap::new();
        for f in &files {
            let Some(module) = module_of(&src, f) else {
                continue;
            };
            let text = std::fs::read_to_string(f).unwrap();
            let refs: Vec<String> = crate_references(&text)
                .into_iter()
                .filter(|r| modules.contains(r) && *r != module)
                .collect();
            graph.entry(module).or_default().extend(refs);
        }
        if let Some(cycle) = find_cycle(&graph) {
            panic!(
                "{}: modules import each other in a circle: {}",
                dir.path().display(),
                cycle.join(" → ")
            );
        }
        checked += 1;
    }
    assert!(checked >= 10);
    // The check sees real edges: these two files refer to each other's crate items.
    let refs = crate_references(
        "use crate::{bail, error::{Context, Result}, fs::temp_path};\nlet x = crate::device::select(\"cpu\");",
    );
    assert_eq!(
        refs,
        ["bail", "device", "error", "fs"].map(String::from).into()
    );
    let mut cyclic = BTreeMap::new();
    cyclic.insert("a".to_string(), BTreeSet::from(["b".to_string()]));
    cyclic.insert("b".to_string(), BTreeSet::from(["a".to_string()]));
    assert!(find_cycle(&cyclic).is_some());
}

#[test]
fn the_binary_is_a_thin_layer_over_the_library() {
    let src = Path::new(env!("CARGO_MANIFEST_DIR")).join("src");
    let main = std::fs::read_to_string(src.join("main.rs")).unwrap();
    let lines = main.lines().count();
    assert!(lines <= 1000, "main.rs has {lines} lines");
    // No training, data or model code: it reaches the system through the `selfsup` library only.
    for crate_name in [
        "burn",
        "selfsup_core::pretrain",
        "selfsup_data",
        "selfsup_models",
        "selfsup_methods",
        "selfsup_image",
        "selfsup_audio",
        "selfsup_text",
        "selfsup_eval",
        "Tensor",
    ] {
        assert!(!main.contains(crate_name), "main.rs uses {crate_name}");
    }
    let bin_modules = main
        .lines()
        .filter(|l| l.trim_start().starts_with("mod ") && !l.contains("mod tests"))
        .count();
    assert_eq!(bin_modules, 0, "the binary has modules of its own");
}

#[test]
fn no_code_asks_which_modality_a_config_is() {
    for f in rust_files(&workspace().join("crates")) {
        let text = std::fs::read_to_string(&f).unwrap();
        for needle in ["is_audio(", "is_text(", "is_audio_method", "is_text_method"] {
            assert!(
                !text.contains(needle) || f.ends_with("architecture.rs"),
                "{} calls {needle}",
                f.display()
            );
        }
    }
}
