//! Kinesis Video Streams fragment metadata, as the service tags in a GetMedia stream carry it.
//!
//! Before the Cluster: `AWS_KINESISVIDEO_FRAGMENT_NUMBER`, `..._SERVER_TIMESTAMP`,
//! `..._PRODUCER_TIMESTAMP` (or `..._ERROR_CODE` / `..._ERROR_ID` on an error fragment). After it:
//! `..._MILLIS_BEHIND_NOW` and `..._CONTINUATION_TOKEN`. Everything else passes through.

use std::cmp::Ordering;
use std::fmt;

use serde::Serialize;

pub const TAG_FRAGMENT_NUMBER: &str = "AWS_KINESISVIDEO_FRAGMENT_NUMBER";
pub const TAG_SERVER_TIMESTAMP: &str = "AWS_KINESISVIDEO_SERVER_TIMESTAMP";
pub const TAG_PRODUCER_TIMESTAMP: &str = "AWS_KINESISVIDEO_PRODUCER_TIMESTAMP";
pub const TAG_MILLIS_BEHIND_NOW: &str = "AWS_KINESISVIDEO_MILLIS_BEHIND_NOW";
pub const TAG_CONTINUATION_TOKEN: &str = "AWS_KINESISVIDEO_CONTINUATION_TOKEN";
pub const TAG_ERROR_CODE: &str = "AWS_KINESISVIDEO_ERROR_CODE";
pub const TAG_ERROR_ID: &str = "AWS_KINESISVIDEO_ERROR_ID";

/// A KVS fragment number: a decimal string of up to ~47 digits (wider than `u128`), ordered
/// numerically. Leading zeros are not significant.
#[derive(Debug, Clone, PartialEq, Eq, Hash, Serialize)]
#[serde(transparent)]
pub struct FragmentNumber(String);

/// AWS documents fragment numbers as 1 to 128 digits; a longer "number" is not one.
pub const MAX_FRAGMENT_NUMBER_DIGITS: usize = 128;

/// Longest error description kept from an error fragment (it reaches logs and `/healthz`).
const MAX_ERROR_TEXT: usize = 256;

/// The error ids GetMedia documents for `AWS_KINESISVIDEO_ERROR_ID`; any other is `other` in
/// metric labels.
const DOCUMENTED_ERROR_IDS: [&str; 10] =
    ["3002", "4000", "4500", "4501", "4502", "4503", "4504", "4505", "4506", "5000"];

impl FragmentNumber {
    /// Accepts 1 to [`MAX_FRAGMENT_NUMBER_DIGITS`] decimal digits only.
    pub fn parse(s: &str) -> Option<Self> {
        if s.is_empty() || s.len() > MAX_FRAGMENT_NUMBER_DIGITS || !s.bytes().all(|b| b.is_ascii_digit()) {
            return None;
        }
        let trimmed = s.trim_start_matches('0');
        Some(Self(if trimmed.is_empty() { "0".to_owned() } else { trimmed.to_owned() }))
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl Ord for FragmentNumber {
    fn cmp(&self, other: &Self) -> Ordering {
        // No leading zeros: a longer number is larger; equal lengths compare digit by digit.
        self.0.len().cmp(&other.0.len()).then_with(|| self.0.cmp(&other.0))
    }
}

impl PartialOrd for FragmentNumber {
    fn partial_cmp(&self, other: &Self) -> Option<Ordering> {
        Some(self.cmp(other))
    }
}

impl fmt::Display for FragmentNumber {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

/// A KVS timestamp, exact to the millisecond: epoch seconds with up to 3 decimals
/// (`1511852109.126`), kept as integer milliseconds so no float ever rounds it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct KvsTimestamp {
    pub millis: i64,
}

impl KvsTimestamp {
    pub fn parse(s: &str) -> Option<Self> {
        let (int, frac) = s.split_once('.').unwrap_or((s, ""));
        if int.is_empty() || !int.bytes().all(|b| b.is_ascii_digit()) || frac.len() > 3 {
            return None;
        }
        if !frac.bytes().all(|b| b.is_ascii_digit()) {
            return None;
        }
        let secs: i64 = int.parse().ok()?;
        let mut ms: i64 = 0;
        for (i, b) in frac.bytes().enumerate() {
            ms += i64::from(b - b'0') * [100, 10, 1][i];
        }
        Some(Self { millis: secs.checked_mul(1000)?.checked_add(ms)? })
    }
}

impl fmt::Display for KvsTimestamp {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}.{:03}", self.millis.div_euclid(1000), self.millis.rem_euclid(1000))
    }
}

impl Serialize for KvsTimestamp {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.collect_str(self)
    }
}

/// One SimpleTag: name and string value (trailing NULs stripped and counted).
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Tag {
    pub name: String,
    pub value: String,
    #[serde(skip_serializing_if = "is_zero")]
    pub trailing_nuls: usize,
    /// Seen after the fragment's first Cluster started.
    pub after_cluster: bool,
}

fn is_zero(n: &usize) -> bool {
    *n == 0
}

/// An error the KVS service reported inside the stream instead of media: its description
/// (`..._ERROR_CODE`, cut to 256 bytes) and integer code (`..._ERROR_ID`).
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct KvsStreamError {
    pub code: String,
    pub id: Option<String>,
}

impl KvsStreamError {
    /// The bounded label for `kvs_error_fragments_total{code}`: a documented error id, else
    /// `other`.
    pub fn label(&self) -> &'static str {
        let id = self.id.as_deref().unwrap_or_default();
        DOCUMENTED_ERROR_IDS.into_iter().find(|d| *d == id).unwrap_or("other")
    }
}

/// `s` cut to at most `max` bytes, on a character boundary, marked when cut.
pub fn truncated(s: &str, max: usize) -> String {
    if s.len() <= max {
        return s.to_owned();
    }
    let mut end = max;
    while !s.is_char_boundary(end) {
        end -= 1;
    }
    format!("{}… ({} bytes)", &s[..end], s.len())
}

/// What a fragment's tags say about it. Built up as tags arrive.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
pub struct FragmentMeta {
    pub fragment_number: Option<FragmentNumber>,
    pub server_timestamp: Option<KvsTimestamp>,
    pub producer_timestamp: Option<KvsTimestamp>,
    pub millis_behind_now: Option<u64>,
    pub continuation_token: Option<String>,
    pub error: Option<KvsStreamError>,
    /// Every tag that is not one of the service tags above, in order.
    pub other_tags: Vec<Tag>,
}

impl FragmentMeta {
    /// Folds one tag in. Returns `false` if a service tag's value did not parse (kept in
    /// `other_tags` so nothing is lost).
    pub fn apply(&mut self, tag: &Tag) -> bool {
        match self.apply_service(tag) {
            Some(true) => true,
            parsed => {
                self.other_tags.push(tag.clone());
                parsed.is_none()
            }
        }
    }

    /// Folds in a KVS service tag whose value parses (`Some(true)`); `Some(false)`: a service
    /// tag whose value does not; `None`: not a service tag. Nothing is kept otherwise, so a
    /// flood of service tags takes no memory (the demuxer counts the others against its limit).
    pub fn apply_service(&mut self, tag: &Tag) -> Option<bool> {
        let v = tag.value.as_str();
        let parsed = match tag.name.as_str() {
            TAG_FRAGMENT_NUMBER => FragmentNumber::parse(v).map(|n| self.fragment_number = Some(n)).is_some(),
            TAG_SERVER_TIMESTAMP => KvsTimestamp::parse(v).map(|t| self.server_timestamp = Some(t)).is_some(),
            TAG_PRODUCER_TIMESTAMP => KvsTimestamp::parse(v).map(|t| self.producer_timestamp = Some(t)).is_some(),
            TAG_MILLIS_BEHIND_NOW => v.parse().ok().map(|m| self.millis_behind_now = Some(m)).is_some(),
            // The token is the last fragment's number.
            TAG_CONTINUATION_TOKEN => {
                FragmentNumber::parse(v).map(|_| self.continuation_token = Some(v.to_owned())).is_some()
            }
            TAG_ERROR_CODE => {
                let id = self.error.take().and_then(|e| e.id);
                self.error = Some(KvsStreamError { code: truncated(v, MAX_ERROR_TEXT), id });
                true
            }
            TAG_ERROR_ID => {
                let code = self.error.take().map(|e| e.code).unwrap_or_default();
                self.error = Some(KvsStreamError { code, id: Some(truncated(v, 32)) });
                true
            }
            _ => return None,
        };
        Some(parsed)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn fragment_numbers_order_numerically_beyond_u128() {
        let a = FragmentNumber::parse("91343852333181432392682062607743920146264440287").expect("digits");
        let b = FragmentNumber::parse("91343852333181432397684000000000000000000000000").expect("digits");
        let short = FragmentNumber::parse("999").expect("digits");
        assert!(a < b);
        assert!(short < a, "fewer digits is smaller, whatever the first digit");
        assert_eq!(FragmentNumber::parse("00042"), FragmentNumber::parse("42"));
        assert_eq!(FragmentNumber::parse("0"), FragmentNumber::parse("000"));
        assert!(FragmentNumber::parse("12a").is_none());
        assert!(FragmentNumber::parse("").is_none());
        assert!(FragmentNumber::parse(&"9".repeat(128)).is_some());
        assert!(FragmentNumber::parse(&"9".repeat(129)).is_none(), "AWS documents 1..128 digits");
    }

    #[test]
    fn timestamps_are_exact_milliseconds() {
        let t = KvsTimestamp::parse("1511852109.126").expect("ts");
        assert_eq!(t.millis, 1_511_852_109_126);
        assert_eq!(t.to_string(), "1511852109.126");
        assert_eq!(KvsTimestamp::parse("5.5").expect("ts").millis, 5_500);
        assert_eq!(KvsTimestamp::parse("0.000").expect("ts").to_string(), "0.000");
        assert_eq!(KvsTimestamp::parse("12").expect("ts").millis, 12_000);
        assert!(KvsTimestamp::parse("1.2345").is_none(), "sub-millisecond precision is not KVS's");
        assert!(KvsTimestamp::parse("-1.0").is_none());
        assert!(KvsTimestamp::parse("1.x").is_none());
    }

    #[test]
    fn error_tags_make_a_typed_error_in_either_order() {
        let tag = |name: &str, value: &str| Tag {
            name: name.into(),
            value: value.into(),
            trailing_nuls: 0,
            after_cluster: false,
        };
        let mut m = FragmentMeta::default();
        m.apply(&tag(TAG_ERROR_ID, "4242"));
        m.apply(&tag(TAG_ERROR_CODE, "STREAM_NOT_FOUND"));
        assert_eq!(m.error, Some(KvsStreamError { code: "STREAM_NOT_FOUND".into(), id: Some("4242".into()) }));
        let mut m = FragmentMeta::default();
        assert!(!m.apply(&tag(TAG_SERVER_TIMESTAMP, "soon")));
        assert_eq!(m.other_tags.len(), 1, "an unparsable service tag is kept, not lost");
        assert_eq!(m.error.as_ref().map(KvsStreamError::label), None);
        let mut m = FragmentMeta::default();
        m.apply(&tag(TAG_ERROR_ID, "4000"));
        assert_eq!(m.error.as_ref().map(KvsStreamError::label), Some("4000"));
        m.apply(&tag(TAG_ERROR_ID, "123456"));
        m.apply(&tag(TAG_ERROR_CODE, &"X".repeat(100_000)));
        let e = m.error.expect("error");
        assert_eq!(e.label(), "other", "undocumented ids share one label");
        assert!(e.code.len() < 300, "the description is cut: {} bytes", e.code.len());
        let mut m = FragmentMeta::default();
        assert!(!m.apply(&tag(TAG_CONTINUATION_TOKEN, &"1".repeat(5000))), "not a fragment number");
        assert_eq!(m.continuation_token, None);
    }
}
