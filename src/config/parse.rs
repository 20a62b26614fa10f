//! Text → [`RawConfig`], defensively: the size and the nesting depth are checked before the YAML
//! parser sees the text (deeply nested flow sequences take it quadratic time), bad UTF-8 is
//! reported with its line and column, and every type error and unknown key comes out at once.
//!
//! Type errors are collected by rounds: deserialize; on an error, record it, remove the value it
//! names from the document, and deserialize again. The first round reads the text (its error
//! carries a line and column), later ones the parsed document.

use std::collections::BTreeMap;

use serde::Deserialize;
use serde_yaml_ng::Value;

use super::{ConfigError, RawConfig, Violation};

/// Largest config file read.
pub const MAX_CONFIG_BYTES: usize = 1024 * 1024;
/// Deepest nesting of mappings and sequences (the real schema needs 6).
pub const MAX_NESTING: usize = 32;
/// Most type errors collected from one file before giving up on the rest.
const MAX_ROUNDS: usize = 64;

/// Size, encoding and nesting checks on the raw bytes; the text when they pass.
pub fn check_text<'a>(bytes: &'a [u8], origin: &str) -> Result<&'a str, ConfigError> {
    if bytes.len() > MAX_CONFIG_BYTES {
        return Err(ConfigError::TooLarge { origin: origin.to_owned(), bytes: bytes.len(), max: MAX_CONFIG_BYTES });
    }
    let text = std::str::from_utf8(bytes).map_err(|e| {
        let (line, column) = position(bytes, e.valid_up_to());
        let byte = bytes.get(e.valid_up_to()).copied().unwrap_or(0);
        ConfigError::Encoding { origin: origin.to_owned(), line, column, byte }
    })?;
    if let Some((line, depth)) = too_deep(text) {
        return Err(ConfigError::TooDeep { origin: origin.to_owned(), line, depth, max: MAX_NESTING });
    }
    Ok(text)
}

/// 1-based line and column (in bytes) of `offset`.
fn position(bytes: &[u8], offset: usize) -> (usize, usize) {
    let before = &bytes[..offset.min(bytes.len())];
    let line = before.iter().filter(|&&b| b == b'\n').count() + 1;
    let column = offset - before.iter().rposition(|&b| b == b'\n').map_or(0, |p| p + 1) + 1;
    (line, column)
}

/// The first line where block indentation plus flow brackets nest deeper than [`MAX_NESTING`],
/// and the depth there. Quoted strings and comments are skipped.
fn too_deep(text: &str) -> Option<(usize, usize)> {
    let mut indents: Vec<usize> = Vec::new();
    let mut flow = 0usize;
    for (n, line) in text.lines().enumerate() {
        let content = line.trim_start_matches(' ');
        if flow == 0 && !content.is_empty() && !content.starts_with('#') {
            let indent = line.len() - content.len();
            while indents.last().is_some_and(|&top| top >= indent) {
                indents.pop();
            }
            indents.push(indent);
            // `- - - x` opens a sequence per dash on one line.
            let dashes = content.split_inclusive("- ").take_while(|p| *p == "- ").count();
            if indents.len() + dashes > MAX_NESTING {
                return Some((n + 1, indents.len() + dashes));
            }
        }
        let mut quote: Option<char> = None;
        let mut escaped = false;
        for c in line.chars() {
            match (quote, c) {
                (Some('"'), '\\') if !escaped => {
                    escaped = true;
                    continue;
                }
                (Some(q), c) if c == q && !escaped => quote = None,
                (Some(_), _) => {}
                (None, '"' | '\'') => quote = Some(c),
                (None, '#') => break,
                (None, '[' | '{') => {
                    flow += 1;
                    if indents.len() + flow > MAX_NESTING {
                        return Some((n + 1, indents.len() + flow));
                    }
                }
                (None, ']' | '}') => flow = flow.saturating_sub(1),
                _ => {}
            }
            escaped = false;
        }
    }
    None
}

/// A document parsed despite its problems.
pub struct Parsed {
    pub raw: RawConfig,
    /// Type errors and unknown keys.
    pub problems: Vec<Violation>,
    /// Keys removed after a type error: what validation says under them repeats that error.
    pub removed: Vec<String>,
}

/// YAML text → [`RawConfig`] and the problems found on the way (type errors, unknown keys). A
/// syntax error, or a type error that cannot be stepped over, ends it with what was found.
pub fn parse(yaml: &str, origin: &str) -> Result<Parsed, ConfigError> {
    // An empty file is an empty mapping, so validation can say what is missing.
    let yaml = if yaml.trim().is_empty() { "{}" } else { yaml };
    let mut found = Found::default();
    let first = attempt(serde_yaml_ng::Deserializer::from_str(yaml), &mut found);
    let (path, message) = match first {
        Ok(raw) => return Ok(found.into_parsed(raw)),
        Err(e) => e,
    };
    let mut document: Value = match serde_yaml_ng::from_str(yaml) {
        Ok(v) => v,
        Err(source) => return Err(ConfigError::Syntax { origin: origin.to_owned(), source }),
    };
    let mut failure = Some((path, message));
    for _ in 0..MAX_ROUNDS {
        let Some((path, message)) = failure.take() else { break };
        let consequence = found.removed.iter().any(|r| r.starts_with(&render(&path)));
        if !consequence {
            found.errors.push(Violation { path: render(&path), message });
        }
        if !remove(&mut document, &path) {
            break;
        }
        found.removed.push(render(&path));
        match attempt(document.clone(), &mut found) {
            Ok(raw) => return Ok(found.into_parsed(raw)),
            Err(next) => failure = Some(next),
        }
    }
    Err(ConfigError::Invalid { origin: origin.to_owned(), violations: found.into_violations() })
}

/// What the rounds found.
#[derive(Default)]
struct Found {
    errors: Vec<Violation>,
    /// Unknown keys by path (each round sees them again).
    unknown: BTreeMap<String, Violation>,
    /// Paths removed from the document after their error.
    removed: Vec<String>,
}

impl Found {
    fn into_parsed(self, raw: RawConfig) -> Parsed {
        let removed = self.removed.clone();
        Parsed { raw, problems: self.into_violations(), removed }
    }

    fn into_violations(self) -> Vec<Violation> {
        self.errors.into_iter().chain(self.unknown.into_values()).collect()
    }
}

type Segments = Vec<serde_path_to_error::Segment>;

/// One deserialization; an error comes with the path it happened at and its message.
fn attempt<'de, D>(de: D, found: &mut Found) -> Result<RawConfig, (Segments, String)>
where
    D: serde::Deserializer<'de>,
    D::Error: std::fmt::Display,
{
    let mut track = serde_path_to_error::Track::new();
    let result = {
        let mut on_unknown = |path: serde_ignored::Path<'_>| {
            let path = dotted(&path);
            found.unknown.insert(path.clone(), Violation { path, message: "unknown key".into() });
        };
        let de = serde_ignored::Deserializer::new(de, &mut on_unknown);
        RawConfig::deserialize(serde_path_to_error::Deserializer::new(de, &mut track))
    };
    result.map_err(|e| {
        let path = track.path();
        let segments: Segments = path.iter().cloned().collect();
        let message = message(&render(&segments), &e.to_string());
        (segments, message)
    })
}

/// The error text without the path twice when the YAML error already starts with it.
fn message(path: &str, inner: &str) -> String {
    // serde_yaml_ng prefixes its own (sometimes shorter) path; the tracked one is kept.
    match inner.split_once(": ") {
        Some((head, rest)) if !path.is_empty() && path.starts_with(head) => rest.to_owned(),
        _ => inner.to_owned(),
    }
}

/// `cameras[2].roi[0].points`, as the rest of the config errors name keys.
fn render(path: &[serde_path_to_error::Segment]) -> String {
    use serde_path_to_error::Segment as S;
    let mut out = String::new();
    for segment in path {
        match segment {
            S::Seq { index } => out.push_str(&format!("[{index}]")),
            S::Map { key } => {
                if !out.is_empty() {
                    out.push('.');
                }
                out.push_str(key);
            }
            S::Enum { .. } | S::Unknown => {}
        }
    }
    out
}

/// Removes the mapping key `path` names; `false` when it names something else (the root, a
/// sequence element): then the rounds stop.
fn remove(document: &mut Value, path: &[serde_path_to_error::Segment]) -> bool {
    use serde_path_to_error::Segment as S;
    let Some((last, parents)) = path.split_last() else { return false };
    let mut node = document;
    for segment in parents {
        let next = match segment {
            S::Seq { index } => node.as_sequence_mut().and_then(|s| s.get_mut(*index)),
            S::Map { key } => node.as_mapping_mut().and_then(|m| m.get_mut(key.as_str())),
            S::Enum { .. } | S::Unknown => Some(node),
        };
        let Some(next) = next else { return false };
        node = next;
    }
    match last {
        S::Map { key } => node.as_mapping_mut().and_then(|m| m.remove(key.as_str())).is_some(),
        _ => false,
    }
}

/// `cameras.2.roi.0.foo` → `cameras[2].roi[0].foo`.
fn dotted(path: &serde_ignored::Path<'_>) -> String {
    use serde_ignored::Path as P;
    match path {
        P::Root => String::new(),
        P::Seq { parent, index } => format!("{}[{index}]", dotted(parent)),
        P::Map { parent, key } => {
            let head = dotted(parent);
            if head.is_empty() { key.clone() } else { format!("{head}.{key}") }
        }
        P::Some { parent } | P::NewtypeStruct { parent } | P::NewtypeVariant { parent } => dotted(parent),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn nesting_counts_blocks_and_flow_but_not_quotes_or_comments() {
        assert_eq!(too_deep("a:\n  b:\n    c: [1, [2]]\n"), None);
        let flow = format!("a: {}{}\n", "[".repeat(40), "]".repeat(40));
        assert_eq!(too_deep(&flow).map(|(line, _)| line), Some(1));
        let blocks: String = (0..40).map(|i| format!("{}k{i}:\n", " ".repeat(i))).collect();
        assert_eq!(too_deep(&blocks).map(|(line, _)| line), Some(MAX_NESTING + 1));
        let quoted = format!("a: \"{}\" # {}\n", "[".repeat(40), "{".repeat(40));
        assert_eq!(too_deep(&quoted), None);
    }

    #[test]
    fn positions_are_one_based() {
        assert_eq!(position(b"ab\ncd", 4), (2, 2));
        assert_eq!(position(b"x", 0), (1, 1));
    }
}
