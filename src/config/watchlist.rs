//! Known plates (`watchlists:` at the top level, `cameras[].watchlists: [name]`): lists of plate
//! texts, each from inline `entries`, a file, an SSM parameter (`ssm:/name`) or an S3 object
//! (`s3://bucket/key`) like the config itself, with a tolerance of `max_distance` edits. An event
//! whose text is within that many edits of an entry carries `watchlist: {name, entry, distance}`.
//!
//! A list's text is one plate per line; `#` starts a comment; entries are normalised as readings
//! are (upper case, `A–Z0–9` only), so `AB12 CDE` and `ab12cde` are one entry. The config layer
//! checks the specs and builds lists from their text; `cli` reads the files and fetches the
//! remote ones at startup (it speaks AWS; this layer does not).

use std::collections::BTreeMap;
use std::sync::Arc;

use serde::{Deserialize, Serialize};

use super::location::ConfigLocation;
use super::text_rules::{edit_distance, normalise};

/// Most edits a list may tolerate: beyond this, different plates match.
pub const MAX_DISTANCE: u32 = 3;
/// Most entries one list may hold (a stolen-vehicle list of a region is far smaller).
pub const MAX_ENTRIES: usize = 100_000;

/// One list as configured.
#[derive(Debug, Clone, PartialEq, Deserialize, Serialize)]
#[serde(default, deny_unknown_fields)]
pub struct WatchlistConfig {
    /// Where more entries come from: a file, `ssm:/name` or `s3://bucket/key`.
    pub from: Option<String>,
    /// Entries written in the config.
    pub entries: Vec<String>,
    /// Edits (insertions, deletions, substitutions) a reading may differ by and still match.
    pub max_distance: u32,
}

impl Default for WatchlistConfig {
    fn default() -> Self {
        Self { from: None, entries: Vec::new(), max_distance: 1 }
    }
}

/// A checked list spec: its name, where its text is, its inline entries.
#[derive(Debug, Clone)]
pub struct WatchlistSpec {
    pub name: String,
    pub from: Option<ConfigLocation>,
    pub entries: Vec<String>,
    pub max_distance: u32,
}

/// A list ready to match against.
#[derive(Debug, Clone, PartialEq)]
pub struct Watchlist {
    pub name: String,
    /// Normalised, sorted, without duplicates.
    entries: Vec<String>,
    max_distance: u32,
}

/// What an event carries when its text is on a list.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct WatchlistMatch {
    /// The list's name.
    pub name: String,
    /// The entry matched (normalised).
    pub entry: String,
    /// Edits between the reading and the entry.
    pub distance: u32,
}

/// Why a list's text cannot be used.
#[derive(Debug, thiserror::Error)]
pub enum WatchlistError {
    #[error("watchlists.{name}: {count} entries, over the limit of {MAX_ENTRIES}")]
    TooMany { name: String, count: usize },
    #[error("watchlists.{name}: no entry (every line is empty or a comment)")]
    Empty { name: String },
}

/// The entries in a list's text: one a line, `#` comments, normalised, empty ones left out.
pub fn parse_entries(text: &str) -> impl Iterator<Item = String> + '_ {
    text.lines().map(|l| normalise(l.split('#').next().unwrap_or_default())).filter(|e| !e.is_empty())
}

impl WatchlistSpec {
    /// The list: the inline entries and those of `text` (the contents of `from`, when set).
    pub fn build(&self, text: Option<&str>) -> Result<Watchlist, WatchlistError> {
        let mut entries: Vec<String> = self
            .entries
            .iter()
            .map(|e| normalise(e))
            .filter(|e| !e.is_empty())
            .chain(text.into_iter().flat_map(parse_entries))
            .collect();
        entries.sort();
        entries.dedup();
        if entries.len() > MAX_ENTRIES {
            return Err(WatchlistError::TooMany { name: self.name.clone(), count: entries.len() });
        }
        if entries.is_empty() {
            return Err(WatchlistError::Empty { name: self.name.clone() });
        }
        Ok(Watchlist { name: self.name.clone(), entries, max_distance: self.max_distance })
    }
}

impl Watchlist {
    pub fn len(&self) -> usize {
        self.entries.len()
    }

    pub fn is_empty(&self) -> bool {
        self.entries.is_empty()
    }

    /// The entry nearest to `text` within `max_distance` edits (the first in order on a tie).
    fn closest(&self, text: &str) -> Option<(String, u32)> {
        if let Ok(i) = self.entries.binary_search_by(|e| e.as_str().cmp(text)) {
            return Some((self.entries[i].clone(), 0));
        }
        let limit = self.max_distance as usize;
        let mut best: Option<(usize, &String)> = None;
        for e in &self.entries {
            // Lengths apart by more than the limit cannot be within it.
            if e.len().abs_diff(text.len()) > limit {
                continue;
            }
            let d = edit_distance(e, text);
            if d <= limit && best.is_none_or(|b| d < b.0) {
                best = Some((d, e));
            }
        }
        best.map(|(d, e)| (e.clone(), d as u32))
    }
}

/// The best match of `text` on `lists` (the fewest edits; the first list on a tie), if any.
pub fn best_match(lists: &[Arc<Watchlist>], text: &str) -> Option<WatchlistMatch> {
    let text = normalise(text);
    if text.is_empty() {
        return None;
    }
    let mut best: Option<WatchlistMatch> = None;
    for list in lists {
        if let Some((entry, distance)) = list.closest(&text)
            && best.as_ref().is_none_or(|b| distance < b.distance)
        {
            best = Some(WatchlistMatch { name: list.name.clone(), entry, distance });
        }
    }
    best
}

/// The lists by name, as the cameras refer to them.
pub type Watchlists = BTreeMap<String, Arc<Watchlist>>;

#[cfg(test)]
mod tests {
    use super::*;

    fn list(name: &str, entries: &[&str], max_distance: u32, text: Option<&str>) -> Arc<Watchlist> {
        let spec = WatchlistSpec {
            name: name.into(),
            from: None,
            entries: entries.iter().map(|e| e.to_string()).collect(),
            max_distance,
        };
        Arc::new(spec.build(text).expect("list"))
    }

    #[test]
    fn a_lists_text_is_one_normalised_plate_a_line() {
        let l = list(
            "stolen",
            &["ab12 cde"],
            1,
            Some("# stolen, region 4\nXY34 ZZZ  # since May\n\n  AB12CDE\nmh-12-de-1433\n"),
        );
        assert_eq!(l.entries, ["AB12CDE", "MH12DE1433", "XY34ZZZ"]);
        let empty = WatchlistSpec { name: "e".into(), from: None, entries: vec![], max_distance: 1 };
        assert!(matches!(empty.build(Some("# nothing\n")), Err(WatchlistError::Empty { .. })));
    }

    #[test]
    fn readings_match_within_max_distance_and_the_closest_list_wins() {
        let stolen = list("stolen", &["AB12CDE", "XY34ZZZ"], 1, None);
        let vip = list("vip", &["AB12CDF"], 2, None);
        let lists = [stolen, vip];
        let m = |t: &str| best_match(&lists, t).map(|m| (m.name, m.entry, m.distance));
        assert_eq!(m("AB12 CDE"), Some(("stolen".into(), "AB12CDE".into(), 0)));
        assert_eq!(m("XY34ZZ"), Some(("stolen".into(), "XY34ZZZ".into(), 1)), "one character missed");
        assert_eq!(m("AB12CDX"), Some(("stolen".into(), "AB12CDE".into(), 1)), "a tie: the first list");
        assert_eq!(m("AB13CXF"), Some(("vip".into(), "AB12CDF".into(), 2)), "vip tolerates two edits");
        assert_eq!(m("KA01AB1234"), None);
        assert_eq!(m(" - "), None);
    }
}
