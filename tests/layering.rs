//! The crate's layering, checked from the source (in the manner of rust-analyzer's tidy tests): every
//! `crate::` path in `src/` is read, and the test fails where a module reaches a layer above its own, where one
//! top-level module of a layer reaches another of the same layer, or where files import each other in a
//! circle. ARCHITECTURE.md draws the same layers.
//!
//! Unit tests at the end of a file (`#[cfg(test)]` and what follows) are not read: a test may build its input
//! with a higher layer (the memory planner's test plans the real UNet).

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};

/// The library's top-level modules, lowest layer first. A module may import from layers below its own only.
const LAYERS: &[&[&str]] = &[
    &["error"],
    &["limits"],
    &["diffusion"],
    &["gpu"],
    &["ops"],
    &["graph"],
    &["unet"],
    &["reference", "io"],
    &["model"],
    &["sampler"],
    &["pipeline"],
    &["fuzz"],
];

/// Every `.rs` file under `dir`.
fn rust_files(dir: &Path, out: &mut Vec<PathBuf>) {
    for entry in std::fs::read_dir(dir).unwrap() {
        let path = entry.unwrap().path();
        if path.is_dir() {
            rust_files(&path, out);
        } else if path.extension().is_some_and(|e| e == "rs") {
            out.push(path);
        }
    }
}

/// The module path of a library file: `src/ops/conv2d/tiled.rs` is `["ops", "conv2d", "tiled"]`; a `mod.rs`
/// is its folder's module; `lib.rs` is the root.
fn module_of(src: &Path, file: &Path) -> Vec<String> {
    let rel = file.strip_prefix(src).unwrap().with_extension("");
    let mut parts: Vec<String> =
        rel.components().map(|c| c.as_os_str().to_string_lossy().into_owned()).collect();
    if parts.last().is_some_and(|p| p == "mod" || p == "lib") {
        parts.pop();
    }
    parts
}

/// The code of a file without comments and without its trailing unit tests.
fn code(text: &str) -> String {
    let mut out = String::new();
    for line in text.lines() {
        let trimmed = line.trim_start();
        if trimmed.starts_with("#[cfg(test)]") {
            break;
        }
        if trimmed.starts_with("//") {
            continue;
        }
        out.push_str(line);
        out.push('\n');
    }
    out
}

/// The module paths a file names: every `crate::a::b` path, and `super::` paths resolved against the file's
/// module, including those inside `use` braces (`use crate::a::{b, c::d}` names `a::b` and `a::c::d`).
fn imports(module: &[String], code: &str) -> Vec<Vec<String>> {
    let mut found = Vec::new();
    let flat = code.replace('\n', " ");
    for (root, base) in [
        ("crate::", Vec::new()),
        ("super::", {
            // `super` of `a::b` (file a/b.rs) is `a`; of a mod.rs `a/b/mod.rs` (module a::b) it is `a` too.
            let mut b = module.to_vec();
            b.pop();
            b
        }),
    ] {
        let mut rest = flat.as_str();
        while let Some(i) = rest.find(root) {
            // `crate::` preceded by an identifier character is part of another path (`ddim_wgpu::`).
            let before = &flat[..flat.len() - rest.len() + i];
            rest = &rest[i + root.len()..];
            if before.ends_with(|c: char| c.is_alphanumeric() || c == '_' || c == ':') {
                continue;
            }
            // Paths may break over lines inside braces: read them without white space.
            let compact: String =
                rest.chars().take_while(|&c| c != ';').filter(|c| !c.is_whitespace()).collect();
            for path in expand(&compact) {
                let mut full = base.clone();
                full.extend(path);
                found.push(full);
            }
        }
    }
    found
}

/// The paths at the start of `s`: `a::b::c`, or `a::{b, c::d}` expanded (one level of braces is enough here).
fn expand(s: &str) -> Vec<Vec<String>> {
    let ident = |s: &str| -> usize {
        s.find(|c: char| !(c.is_alphanumeric() || c == '_')).unwrap_or(s.len())
    };
    let mut prefix = Vec::new();
    let mut rest = s;
    loop {
        let n = ident(rest);
        if n == 0 {
            break;
        }
        prefix.push(rest[..n].to_string());
        rest = &rest[n..];
        if let Some(r) = rest.strip_prefix("::") {
            rest = r;
            if let Some(inner) = rest.strip_prefix('{') {
                let end = inner.find('}').unwrap_or(inner.len());
                return inner[..end]
                    .split(',')
                    .filter(|p| !p.is_empty())
                    .map(|p| {
                        let mut full = prefix.clone();
                        full.extend(
                            p.split("::")
                                .take_while(|seg| ident(seg) == seg.len())
                                .map(str::to_string),
                        );
                        full
                    })
                    .collect();
            }
        } else {
            break;
        }
    }
    vec![prefix]
}

fn layer_of(top: &str) -> Option<usize> {
    LAYERS.iter().position(|layer| layer.contains(&top))
}

/// The file a module path lands in: the longest prefix of it that is a module of the crate.
fn file_of<'a>(
    modules: &'a BTreeMap<Vec<String>, PathBuf>,
    path: &[String],
) -> Option<&'a PathBuf> {
    (1..=path.len()).rev().find_map(|n| modules.get(&path[..n]))
}

#[test]
fn no_module_imports_from_a_layer_above_it_and_no_files_import_each_other() {
    let src = Path::new(env!("CARGO_MANIFEST_DIR")).join("src");
    let mut files = Vec::new();
    rust_files(&src, &mut files);
    // The binary is a front end: it may use any layer, and nothing may use it.
    files.retain(|f| !f.starts_with(src.join("bin")) && f != &src.join("main.rs"));
    let modules: BTreeMap<Vec<String>, PathBuf> =
        files.iter().map(|f| (module_of(&src, f), f.clone())).collect();

    let mut upward = Vec::new();
    let mut edges: BTreeMap<PathBuf, BTreeSet<PathBuf>> = BTreeMap::new();
    for file in &files {
        let module = module_of(&src, file);
        let text = std::fs::read_to_string(file).unwrap();
        let is_mod = file.ends_with("mod.rs") || file.ends_with("lib.rs");
        let code = code(&text);
        // A module's facade (`pub use` and `mod` lines of a mod.rs) re-exports its children: not a dependency.
        let logic: String = if is_mod {
            code.lines()
                .filter(|l| !l.trim_start().starts_with("pub use") && !l.contains("mod "))
                .collect::<Vec<_>>()
                .join("\n")
        } else {
            code
        };
        for path in imports(&module, &logic) {
            let Some(top) = path.first() else { continue };
            if let (Some(own), Some(theirs)) =
                (module.first().and_then(|m| layer_of(m)), layer_of(top))
                && (theirs > own || (theirs == own && Some(top) != module.first()))
            {
                upward.push(format!(
                    "{} uses crate::{} (layer {theirs} from layer {own})",
                    file.strip_prefix(&src).unwrap().display(),
                    path.join("::")
                ));
            }
            if let Some(target) = file_of(&modules, &path)
                && target != file
            {
                edges.entry(file.clone()).or_default().insert(target.clone());
            }
        }
    }
    for m in modules.keys() {
        if let Some(top) = m.first() {
            assert!(
                layer_of(top).is_some(),
                "module `{top}` has no layer: add it to LAYERS and ARCHITECTURE.md"
            );
        }
    }
    assert!(upward.is_empty(), "imports that run up the layers:\n{}", upward.join("\n"));

    // Files that import each other, directly or around a circle.
    let mut circles = Vec::new();
    for (a, targets) in &edges {
        for b in targets {
            let mut seen = BTreeSet::new();
            let mut stack = vec![b.clone()];
            while let Some(f) = stack.pop() {
                if &f == a {
                    circles.push(format!(
                        "{} -> {} -> ... -> {}",
                        a.strip_prefix(&src).unwrap().display(),
                        b.strip_prefix(&src).unwrap().display(),
                        a.strip_prefix(&src).unwrap().display()
                    ));
                    break;
                }
                if seen.insert(f.clone())
                    && let Some(next) = edges.get(&f)
                {
                    stack.extend(next.iter().cloned());
                }
            }
        }
    }
    assert!(circles.is_empty(), "files that import each other:\n{}", circles.join("\n"));
}

/// The checker itself: an upward import and a circle are seen, a path of another crate (`my_crate::`) is not taken for ours.
#[test]
fn the_checker_reads_paths_as_rust_writes_them() {
    let module: Vec<String> = vec!["ops".into(), "conv2d".into(), "tiled".into()];
    let found = imports(
        &module,
        "use crate::gpu::{Gpu, check::dim};\nuse super::shape::ConvShape;\nlet x = my_crate::graph::Graph;",
    );
    let joined: Vec<String> = found.iter().map(|p| p.join("::")).collect();
    assert_eq!(joined, ["gpu::Gpu", "gpu::check::dim", "ops::conv2d::shape::ConvShape"]);
    assert_eq!(layer_of("ops").unwrap() + 1, layer_of("graph").unwrap());
    assert!(layer_of("cli").is_none());
}
