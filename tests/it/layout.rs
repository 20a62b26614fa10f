//! The shape ARCHITECTURE.md promises: imports point down the layers, and neither binary builds
//! the other's dependencies.

use std::collections::BTreeSet;
use std::path::Path;

/// Each top-level module of `src/` and its layer; a module may import only from lower layers
/// (and from itself). `source` and `infer` share a layer and may not import each other.
const LAYERS: &[(&str, u8)] = &[
    ("geometry", 0),
    ("config", 1),
    ("metrics", 2),
    ("aws", 2),
    ("health", 3),
    ("shutdown", 4),
    ("media", 5),
    ("source", 6),
    ("infer", 6),
    ("pipeline", 7),
    ("sink", 8),
    ("fleet", 8),
    ("server", 9),
    ("startup", 9),
    ("service", 10),
    ("cli", 11),
];

fn layer(module: &str) -> u8 {
    LAYERS
        .iter()
        .find(|(m, _)| *m == module)
        .map(|(_, l)| *l)
        .unwrap_or_else(|| panic!("src/{module} is not in the layer table of tests/it/layout.rs (and ARCHITECTURE.md)"))
}

fn rust_files(dir: &Path, out: &mut Vec<std::path::PathBuf>) {
    for entry in std::fs::read_dir(dir).expect("read src") {
        let path = entry.expect("entry").path();
        if path.is_dir() {
            rust_files(&path, out);
        } else if path.extension().is_some_and(|e| e == "rs") {
            out.push(path);
        }
    }
}

/// The top-level modules a file names through `crate::`, outside its tests.
fn imports(source: &str) -> BTreeSet<String> {
    let code = source.split("#[cfg(test)]").next().unwrap_or(source);
    let mut found = BTreeSet::new();
    for (i, _) in code.match_indices("crate::") {
        let rest = &code[i + "crate::".len()..];
        let name: String = rest.chars().take_while(|c| c.is_ascii_alphanumeric() || *c == '_').collect();
        let before = code[..i].chars().last();
        // `kvs_infer_common::...` and doc links are not imports of this crate's modules.
        if !name.is_empty() && !matches!(before, Some(c) if c.is_ascii_alphanumeric() || c == '_') {
            found.insert(name);
        }
    }
    found
}

#[test]
fn imports_point_down_the_layers() {
    let mut files = Vec::new();
    rust_files(Path::new("src"), &mut files);
    let mut wrong = Vec::new();
    for file in files {
        let rel = file.strip_prefix("src").expect("under src");
        let Some(first) = rel.components().next().and_then(|c| c.as_os_str().to_str()) else { continue };
        let module = first.trim_end_matches(".rs");
        if matches!(module, "lib" | "main") {
            continue;
        }
        let text = std::fs::read_to_string(&file).expect("read");
        for target in imports(&text) {
            if target == module {
                continue;
            }
            let (from, to) = (layer(module), layer(&target));
            if to >= from {
                wrong.push(format!("{} imports crate::{target} (layer {to} from layer {from})", file.display()));
            }
        }
    }
    assert!(wrong.is_empty(), "imports that point up or sideways:\n{}", wrong.join("\n"));
}

/// Files stay small enough to say what they own (the workspace's sources, tests included).
#[test]
fn no_source_file_is_over_600_lines() {
    let mut files = Vec::new();
    for dir in ["src", "crates", "tests/it", "benches"] {
        rust_files(Path::new(dir), &mut files);
    }
    let long: Vec<String> = files
        .iter()
        .filter_map(|f| {
            let lines = std::fs::read_to_string(f).expect("read").lines().count();
            (lines > 600).then(|| format!("{}: {lines} lines", f.display()))
        })
        .collect();
    assert!(long.is_empty(), "split these:\n{}", long.join("\n"));
}

/// `cargo tree` for one package (normal and build dependencies), offline.
fn tree(package: &str) -> String {
    let out = std::process::Command::new(env!("CARGO"))
        .args(["tree", "--offline", "--prefix", "none", "-e", "normal,build", "-p", package])
        .output()
        .expect("run cargo tree");
    assert!(out.status.success(), "cargo tree -p {package}: {}", String::from_utf8_lossy(&out.stderr));
    String::from_utf8_lossy(&out.stdout).into_owned()
}

fn crates_in(tree: &str) -> BTreeSet<String> {
    tree.lines().filter_map(|l| l.split_whitespace().next()).map(str::to_owned).collect()
}

#[test]
fn neither_binary_builds_the_others_dependencies() {
    let service = crates_in(&tree("kvs-infer"));
    for lambda_only in ["aws-sdk-ec2", "aws-sdk-ecs", "aws-sdk-sns", "lambda_runtime"] {
        assert!(!service.contains(lambda_only), "the service builds {lambda_only}");
    }
    let recovery = crates_in(&tree("kvs-infer-recovery"));
    for service_only in ["ort", "ffmpeg-next", "axum", "redb", "image", "kvs-infer"] {
        assert!(!recovery.contains(service_only), "the recovery function builds {service_only}");
    }
}
