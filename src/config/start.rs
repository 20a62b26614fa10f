//! The GetMedia start selector as written in a camera's `source.start`: a word or a one-key map,
//! checked while the YAML is read so that a bad one is reported with its path.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

/// GetMedia StartSelector: `now`, `earliest`, or a one-key map such as
/// `{fragment_number: "9134..."}` or `{producer_timestamp: 2026-11-23T10:00:00Z}`.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize, Serialize)]
#[serde(rename_all = "snake_case", try_from = "StartSelectorRepr")]
pub enum StartSelector {
    Now,
    Earliest,
    FragmentNumber(String),
    /// RFC 3339 time.
    ProducerTimestamp(String),
    /// RFC 3339 time.
    ServerTimestamp(String),
}

/// How a start selector is written in YAML, before it is checked.
#[derive(Deserialize)]
#[serde(untagged)]
enum StartSelectorRepr {
    Word(String),
    Map(BTreeMap<String, serde_yaml_ng::Value>),
}

impl TryFrom<StartSelectorRepr> for StartSelector {
    type Error = String;

    fn try_from(repr: StartSelectorRepr) -> Result<Self, String> {
        const EXPECTED: &str =
            "expected now, earliest, or one of {fragment_number, producer_timestamp, server_timestamp}: VALUE";
        match repr {
            StartSelectorRepr::Word(w) => match w.as_str() {
                "now" => Ok(StartSelector::Now),
                "earliest" => Ok(StartSelector::Earliest),
                other => Err(format!("unknown start selector {other:?}; {EXPECTED}")),
            },
            StartSelectorRepr::Map(map) => {
                let mut entries = map.into_iter();
                match (entries.next(), entries.next()) {
                    (Some((key, value)), None) => {
                        let value = match value {
                            serde_yaml_ng::Value::String(s) => s,
                            serde_yaml_ng::Value::Number(n) => n.to_string(),
                            other => return Err(format!("start selector {key}: expected a string, got {other:?}")),
                        };
                        match key.as_str() {
                            "fragment_number" => Ok(StartSelector::FragmentNumber(value)),
                            "producer_timestamp" => Ok(StartSelector::ProducerTimestamp(value)),
                            "server_timestamp" => Ok(StartSelector::ServerTimestamp(value)),
                            other => Err(format!("unknown start selector {other:?}; {EXPECTED}")),
                        }
                    }
                    _ => Err(format!("a start selector map has exactly one key; {EXPECTED}")),
                }
            }
        }
    }
}
