//! `cameras[].ocr.text_rules`: which readings are number plates. A reading is normalised (upper
//! case, only `A–Z` and `0–9` kept), then must fit one of the built-in plate `formats` or one of
//! the user's `patterns`; with `repair`, the six look-alike pairs (O/0, I/1, B/8, S/5, Z/2, G/6)
//! are swapped where a format requires the other class at that position. A reading that fits
//! nothing neither starts nor confirms a track (`pipeline::tracker`) and is counted
//! (`texts_rejected_total`).
//!
//! The config, its check ([`TextRulesConfig::build`]) and the built rules ([`TextRules`]) live
//! here together.
//!
//! A format is one or more templates, each a sequence of positions: `L` a letter, `D` a digit,
//! `A` either, `[XYZ]` one of those letters, each optionally followed by `{n}`, `{m,n}` or `?`.
//! Britain's current plates are `LLDDLLL` (`AB12CDE`).

use regex::Regex;
use serde::{Deserialize, Serialize};

/// `cameras[].ocr.text_rules` as written.
#[derive(Debug, Clone, PartialEq, Deserialize, Serialize)]
#[serde(default, deny_unknown_fields)]
pub struct TextRulesConfig {
    /// Built-in plate formats by name ([`FORMATS`]).
    pub formats: Vec<String>,
    /// The user's own regular expressions, matched against the whole normalised text.
    pub patterns: Vec<String>,
    /// Swap look-alike characters where a format requires the other class.
    pub repair: bool,
}

impl Default for TextRulesConfig {
    fn default() -> Self {
        Self { formats: Vec::new(), patterns: Vec::new(), repair: true }
    }
}

/// The built-in formats: name, templates, where they come from.
pub const FORMATS: &[(&str, &[&str], &str)] = &[
    ("gb", &["LLDDLLL"], "Great Britain since 2001: AB12 CDE"),
    ("de", &["L{2,5}D{1,4}[EH]?"], "Germany: district (1-3 letters), 1-2 letters, 1-4 digits, E or H suffix"),
    ("fr", &["LLDDDLL"], "France, SIV since 2009: AB-123-CD"),
    ("it", &["LLDDDLL"], "Italy since 1994: AB 123 CD"),
    ("es", &["DDDD[BCDFGHJKLMNPRSTVWXYZ]{3}"], "Spain since 2000: 1234 BCD (no vowels)"),
    (
        "nl",
        &[
            "LLDDDD", "DDDDLL", "DDLLDD", "LLDDLL", "LLLLDD", "DDLLLL", "DDLLLD", "DLLLDD", "LLDDDL", "LDDDLL",
            "LLLDDL", "LDDLLL", "DLLDDD", "DDDLLD",
        ],
        "the Netherlands, side codes 1-14: AB-12-34 … 123-AB-4",
    ),
    ("be", &["DLLLDDD"], "Belgium since 2010: 1-ABC-123"),
    ("in", &["LLD{1,2}L{0,3}DDDD", "DDBHDDDDL{1,2}"], "India: MH 12 AB 1234, and the BH series 22 BH 1234 AA"),
    ("us-ca", &["DLLLDDD"], "California since 1980: 7ABC123"),
    ("us-ny", &["LLLDDDD"], "New York: ABC-1234"),
    ("us-tx", &["LLLDDDD"], "Texas since 2009: ABC-1234"),
];

/// Longest normalised text a rule looks at (no plate is longer; bounds the matcher's work).
const MAX_TEXT: usize = 16;

/// Why a format or pattern was refused.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RuleProblem {
    /// `formats[i]` or `patterns[i]`.
    pub path: String,
    pub message: String,
}

/// The checked rules of one camera.
#[derive(Debug, Clone)]
pub struct TextRules {
    formats: Vec<Format>,
    patterns: Vec<(String, Regex)>,
    repair: bool,
}

#[derive(Debug, Clone)]
struct Format {
    name: String,
    templates: Vec<Vec<Slot>>,
}

/// One position class with its repetition.
#[derive(Debug, Clone, PartialEq, Eq)]
struct Slot {
    class: Class,
    min: usize,
    max: usize,
}

#[derive(Debug, Clone, PartialEq, Eq)]
enum Class {
    Letter,
    Digit,
    Any,
    OneOf(Vec<u8>),
}

impl Class {
    fn accepts(&self, c: u8) -> bool {
        match self {
            Class::Letter => c.is_ascii_uppercase(),
            Class::Digit => c.is_ascii_digit(),
            Class::Any => c.is_ascii_uppercase() || c.is_ascii_digit(),
            Class::OneOf(set) => set.contains(&c),
        }
    }
}

/// What the rules make of a reading.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Judgement {
    /// It fits: the normalised (and repaired) text, and the format or pattern it fits.
    Fits { text: String, rule: String, repaired: usize },
    /// It fits nothing; `reason` is the metric label.
    Rejected { reason: &'static str },
}

/// The look-alike pairs: (letter, digit).
const LOOK_ALIKES: [(u8, u8); 6] = [(b'O', b'0'), (b'I', b'1'), (b'B', b'8'), (b'S', b'5'), (b'Z', b'2'), (b'G', b'6')];

/// Levenshtein distance: the fewest insertions, deletions and substitutions (of characters)
/// that turn `a` into `b`.
pub fn edit_distance(a: &str, b: &str) -> usize {
    let (a, b): (Vec<char>, Vec<char>) = (a.chars().collect(), b.chars().collect());
    edit_row(&a, &b, false)[b.len()]
}

/// The last row of the edit-distance table of `a` against `b`: entry `j` is the fewest edits
/// that turn `a` into `b[..j]`, or, `anywhere`, into some stretch of `b` ending at `j` (free to
/// start anywhere: the distance to the best part of `b` is the row's minimum).
pub fn edit_row(a: &[char], b: &[char], anywhere: bool) -> Vec<usize> {
    let mut row: Vec<usize> = if anywhere { vec![0; b.len() + 1] } else { (0..=b.len()).collect() };
    for (i, ca) in a.iter().enumerate() {
        let mut diagonal = row[0];
        row[0] = i + 1;
        for (j, cb) in b.iter().enumerate() {
            let substitution = diagonal + usize::from(ca != cb);
            diagonal = row[j + 1];
            row[j + 1] = substitution.min(row[j] + 1).min(row[j + 1] + 1);
        }
    }
    row
}

/// Upper case, `A–Z` and `0–9` only.
pub fn normalise(text: &str) -> String {
    text.chars().map(|c| c.to_ascii_uppercase()).filter(char::is_ascii_alphanumeric).collect()
}

impl TextRulesConfig {
    /// The rules, or every format and pattern that is wrong (paths relative to `text_rules`).
    pub fn build(&self) -> Result<TextRules, Vec<RuleProblem>> {
        let mut problems = Vec::new();
        let mut formats = Vec::new();
        for (i, name) in self.formats.iter().enumerate() {
            match FORMATS.iter().find(|(n, ..)| n.eq_ignore_ascii_case(name)) {
                Some((n, templates, _)) => {
                    let templates = templates.iter().map(|t| parse_template(t)).collect::<Option<Vec<_>>>();
                    match templates {
                        Some(templates) => formats.push(Format { name: (*n).to_owned(), templates }),
                        None => problems.push(RuleProblem {
                            path: format!("formats[{i}]"),
                            message: format!("built-in format {n:?} does not parse (a bug)"),
                        }),
                    }
                }
                None => problems.push(RuleProblem {
                    path: format!("formats[{i}]"),
                    message: format!(
                        "unknown format {name:?}; known: {}",
                        FORMATS.iter().map(|(n, ..)| *n).collect::<Vec<_>>().join(", ")
                    ),
                }),
            }
        }
        let mut patterns = Vec::new();
        for (i, p) in self.patterns.iter().enumerate() {
            // Checked as written (so an error quotes the user's text), used anchored.
            match Regex::new(p).and_then(|_| Regex::new(&format!("^(?:{p})$"))) {
                Ok(re) => patterns.push((p.clone(), re)),
                Err(e) => problems.push(RuleProblem { path: format!("patterns[{i}]"), message: format!("{e}") }),
            }
        }
        if formats.is_empty() && patterns.is_empty() && problems.is_empty() {
            problems.push(RuleProblem {
                path: "formats".into(),
                message: "name at least one format or pattern (or leave text_rules out)".into(),
            });
        }
        if problems.is_empty() { Ok(TextRules { formats, patterns, repair: self.repair }) } else { Err(problems) }
    }
}

impl TextRules {
    /// Judges one reading: the formats first (in the order given, fewest repairs winning), then
    /// the patterns on the normalised text as read.
    pub fn judge(&self, reading: &str) -> Judgement {
        let text = normalise(reading);
        if text.is_empty() {
            return Judgement::Rejected { reason: "empty" };
        }
        if text.len() > MAX_TEXT {
            return Judgement::Rejected { reason: "format" };
        }
        let mut best: Option<(usize, String, &str)> = None;
        for format in &self.formats {
            for template in &format.templates {
                if let Some((repaired, fixed)) = fit(template, text.as_bytes(), self.repair)
                    && best.as_ref().is_none_or(|b| repaired < b.0)
                {
                    best = Some((repaired, fixed, &format.name));
                }
            }
        }
        if let Some((repaired, text, rule)) = best {
            return Judgement::Fits { text, rule: rule.to_owned(), repaired };
        }
        for (source, re) in &self.patterns {
            if re.is_match(&text) {
                return Judgement::Fits { text, rule: source.clone(), repaired: 0 };
            }
        }
        Judgement::Rejected { reason: "format" }
    }
}

/// `L`, `D`, `A`, `[ABC]`, each with `{n}`, `{m,n}` or `?`. `None`: not a template.
fn parse_template(t: &str) -> Option<Vec<Slot>> {
    let b = t.as_bytes();
    let mut slots = Vec::new();
    let mut i = 0;
    while i < b.len() {
        let class = match b[i] {
            b'L' => Class::Letter,
            b'D' => Class::Digit,
            b'A' => Class::Any,
            b'[' => {
                let end = i + t[i..].find(']')?;
                let set: Vec<u8> = b[i + 1..end].to_vec();
                if set.is_empty() || !set.iter().all(u8::is_ascii_uppercase) {
                    return None;
                }
                i = end;
                Class::OneOf(set)
            }
            // A literal letter inside a template (the BH series): a one-letter set.
            c if c.is_ascii_uppercase() => Class::OneOf(vec![c]),
            _ => return None,
        };
        i += 1;
        let (min, max) = match b.get(i) {
            Some(b'?') => {
                i += 1;
                (0, 1)
            }
            Some(b'{') => {
                let end = i + t[i..].find('}')?;
                let inner = &t[i + 1..end];
                i = end + 1;
                match inner.split_once(',') {
                    Some((lo, hi)) => (lo.parse().ok()?, hi.parse().ok()?),
                    None => {
                        let n = inner.parse().ok()?;
                        (n, n)
                    }
                }
            }
            _ => (1, 1),
        };
        if min > max || max == 0 {
            return None;
        }
        slots.push(Slot { class, min, max });
    }
    (!slots.is_empty()).then_some(slots)
}

/// The fewest look-alike swaps that make `text` fit `template` (no swaps without `repair`), and
/// the text with them made. Texts are short (at most [`MAX_TEXT`]): a plain search does.
///
/// Repair corrects a misread, it does not invent a plate: a fit whose digits (or letters) all
/// came from swaps is refused (`BUS ONLY` is not `BU5 0NLY`).
fn fit(template: &[Slot], text: &[u8], repair: bool) -> Option<(usize, String)> {
    let mut out = Vec::with_capacity(text.len());
    let repaired = fit_from(template, text, repair, &mut out)?;
    let genuine = |class: fn(&u8) -> bool| {
        let made = out.iter().filter(|c| class(c)).count();
        made == 0 || out.iter().zip(text).any(|(o, t)| class(o) && o == t)
    };
    if !(genuine(u8::is_ascii_digit) && genuine(u8::is_ascii_uppercase)) {
        return None;
    }
    Some((repaired, String::from_utf8(out).ok()?))
}

fn fit_from(template: &[Slot], text: &[u8], repair: bool, out: &mut Vec<u8>) -> Option<usize> {
    let Some((slot, rest)) = template.split_first() else {
        return text.is_empty().then_some(0);
    };
    let mut best: Option<(usize, Vec<u8>)> = None;
    let start = out.len();
    // Positions this slot has taken so far, and the swaps they needed.
    let mut swaps = 0;
    for taken in 0..=slot.max.min(text.len()) {
        if taken > 0 {
            let c = text[taken - 1];
            let made = if slot.class.accepts(c) {
                c
            } else if let Some(swapped) = repair.then(|| look_alike(c)).flatten().filter(|s| slot.class.accepts(*s)) {
                swaps += 1;
                swapped
            } else {
                break;
            };
            out.push(made);
        }
        if taken >= slot.min {
            let mut tail = Vec::new();
            if let Some(r) = fit_from(rest, &text[taken..], repair, &mut tail)
                && best.as_ref().is_none_or(|b| swaps + r < b.0)
            {
                let mut whole = out[start..].to_vec();
                whole.extend_from_slice(&tail);
                best = Some((swaps + r, whole));
            }
        }
    }
    out.truncate(start);
    let (n, made) = best?;
    out.extend_from_slice(&made);
    Some(n)
}

/// The other member of a look-alike pair.
fn look_alike(c: u8) -> Option<u8> {
    LOOK_ALIKES.iter().find_map(|&(l, d)| {
        if c == l {
            Some(d)
        } else if c == d {
            Some(l)
        } else {
            None
        }
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn rules(formats: &[&str], patterns: &[&str], repair: bool) -> TextRules {
        TextRulesConfig {
            formats: formats.iter().map(|s| s.to_string()).collect(),
            patterns: patterns.iter().map(|s| s.to_string()).collect(),
            repair,
        }
        .build()
        .expect("rules")
    }

    fn fits(r: &TextRules, reading: &str) -> Option<(String, String)> {
        match r.judge(reading) {
            Judgement::Fits { text, rule, .. } => Some((text, rule)),
            Judgement::Rejected { .. } => None,
        }
    }

    #[test]
    fn every_built_in_format_parses() {
        for (name, templates, _) in FORMATS {
            for t in *templates {
                assert!(parse_template(t).is_some(), "{name}: {t}");
            }
        }
        assert_eq!(
            parse_template("L{2,5}D?"),
            Some(vec![Slot { class: Class::Letter, min: 2, max: 5 }, Slot { class: Class::Digit, min: 0, max: 1 }])
        );
        assert_eq!(
            parse_template("BH"),
            Some(vec![
                Slot { class: Class::OneOf(vec![b'B']), min: 1, max: 1 },
                Slot { class: Class::OneOf(vec![b'H']), min: 1, max: 1 }
            ])
        );
        for bad in ["", "x", "L{3,1}", "L{", "[ab]", "[]", "D-D"] {
            assert!(parse_template(bad).is_none(), "{bad:?}");
        }
    }

    #[test]
    fn readings_are_normalised_and_matched_to_a_format() {
        let r = rules(&["gb", "fr", "us-ca"], &[], true);
        assert_eq!(fits(&r, "ab12 cde"), Some(("AB12CDE".into(), "gb".into())));
        assert_eq!(fits(&r, "AB-123-CD"), Some(("AB123CD".into(), "fr".into())));
        assert_eq!(fits(&r, "7ABC123"), Some(("7ABC123".into(), "us-ca".into())));
        // Two swaps would make it `BU50NLY`, but then none of its digits was read as a digit.
        assert_eq!(r.judge("BUS ONLY"), Judgement::Rejected { reason: "format" });
        assert_eq!(r.judge("STOP"), Judgement::Rejected { reason: "format" });
        assert_eq!(r.judge(" - "), Judgement::Rejected { reason: "empty" });
        assert_eq!(r.judge("AB12CDEFGHIJKLMNOPQ"), Judgement::Rejected { reason: "format" });
    }

    #[test]
    fn repair_swaps_look_alikes_only_where_the_format_needs_the_other_class() {
        let r = rules(&["gb"], &[], true);
        // O→0 and I→1 in the digit positions, 8→B and 5→S in the letter ones.
        assert_eq!(r.judge("AB1O 8SE"), Judgement::Fits { text: "AB10BSE".into(), rule: "gb".into(), repaired: 2 });
        assert_eq!(fits(&r, "A8I2 C5E"), Some(("AB12CSE".into(), "gb".into())));
        // A letter with no digit look-alike cannot stand in a digit position.
        assert_eq!(r.judge("ABX2CDE"), Judgement::Rejected { reason: "format" });
        // Every digit from a swap: refused.
        assert_eq!(r.judge("ABOICDE"), Judgement::Rejected { reason: "format" });
        let strict = rules(&["gb"], &[], false);
        assert_eq!(strict.judge("AB1O8SE"), Judgement::Rejected { reason: "format" });
        assert_eq!(fits(&strict, "AB10BSE"), Some(("AB10BSE".into(), "gb".into())));
    }

    #[test]
    fn variable_formats_take_the_reading_with_the_fewest_repairs() {
        let r = rules(&["de", "in"], &[], true);
        assert_eq!(fits(&r, "B MW 1234"), Some(("BMW1234".into(), "de".into())));
        assert_eq!(fits(&r, "M AB 123 E"), Some(("MAB123E".into(), "de".into())));
        assert_eq!(fits(&r, "MH 12 AB 1234"), Some(("MH12AB1234".into(), "in".into())));
        assert_eq!(fits(&r, "22 BH 1234 AA"), Some(("22BH1234AA".into(), "in".into())));
        // A German plate read with a 0 for the O of the district still fits, repaired.
        assert_eq!(fits(&r, "K0 AB 12"), Some(("KOAB12".into(), "de".into())));
    }

    #[test]
    fn patterns_match_the_whole_normalised_text() {
        let r = rules(&[], &["GATE[0-9]{2}", "[A-Z]{3}[0-9]{3}"], true);
        assert_eq!(fits(&r, "gate 07"), Some(("GATE07".into(), "GATE[0-9]{2}".into())));
        assert_eq!(fits(&r, "ABC 123"), Some(("ABC123".into(), "[A-Z]{3}[0-9]{3}".into())));
        assert!(fits(&r, "XABC123").is_none(), "anchored");
    }

    #[test]
    fn wrong_rules_name_what_and_where() {
        let cfg = TextRulesConfig { formats: vec!["gb".into(), "xx".into()], patterns: vec!["(".into()], repair: true };
        let problems = cfg.build().expect_err("problems");
        assert_eq!(problems.len(), 2, "{problems:?}");
        assert_eq!(problems[0].path, "formats[1]");
        assert!(problems[0].message.contains("unknown format \"xx\"") && problems[0].message.contains("gb"));
        assert_eq!(problems[1].path, "patterns[0]");
        let empty = TextRulesConfig::default().build().expect_err("nothing to match");
        assert_eq!(empty[0].path, "formats");
    }
}
