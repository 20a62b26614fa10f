//! EBML primitives: variable-length integers, element ids, and the Matroska element table.
//!
//! Only the elements this service reads or must step over are named; any other id is skipped by
//! its size. Each known element records its parent so that an unknown-size element can be closed
//! when an element that cannot be its child starts (the Matroska rule).

/// An element id, with its length marker bits kept (as written in specs: `0x1A45DFA3`).
pub type ElementId = u32;

pub const EBML: ElementId = 0x1A45_DFA3;
pub const EBML_VERSION: ElementId = 0x4286;
pub const DOC_TYPE: ElementId = 0x4282;
pub const SEGMENT: ElementId = 0x1853_8067;
pub const SEEK_HEAD: ElementId = 0x114D_9B74;
pub const INFO: ElementId = 0x1549_A966;
pub const TIMECODE_SCALE: ElementId = 0x2A_D7B1;
pub const TRACKS: ElementId = 0x1654_AE6B;
pub const TRACK_ENTRY: ElementId = 0xAE;
pub const TRACK_NUMBER: ElementId = 0xD7;
pub const TRACK_TYPE: ElementId = 0x83;
pub const CODEC_ID: ElementId = 0x86;
pub const CODEC_PRIVATE: ElementId = 0x63A2;
pub const VIDEO: ElementId = 0xE0;
pub const AUDIO: ElementId = 0xE1;
pub const PIXEL_WIDTH: ElementId = 0xB0;
pub const PIXEL_HEIGHT: ElementId = 0xBA;
pub const CLUSTER: ElementId = 0x1F43_B675;
pub const TIMECODE: ElementId = 0xE7;
pub const SIMPLE_BLOCK: ElementId = 0xA3;
pub const BLOCK_GROUP: ElementId = 0xA0;
pub const BLOCK: ElementId = 0xA1;
pub const REFERENCE_BLOCK: ElementId = 0xFB;
pub const CUES: ElementId = 0x1C53_BB6B;
pub const CHAPTERS: ElementId = 0x1043_A770;
pub const ATTACHMENTS: ElementId = 0x1941_A469;
pub const TAGS: ElementId = 0x1254_C367;
pub const TAG: ElementId = 0x7373;
pub const TARGETS: ElementId = 0x63C0;
pub const SIMPLE_TAG: ElementId = 0x67C8;
pub const TAG_NAME: ElementId = 0x45A3;
pub const TAG_STRING: ElementId = 0x4487;
pub const VOID: ElementId = 0xEC;
pub const CRC32: ElementId = 0xBF;

/// The 4 bytes that start every Matroska document (the EBML header id).
pub const EBML_MAGIC: [u8; 4] = [0x1A, 0x45, 0xDF, 0xA3];

/// How the demuxer treats an element.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Kind {
    /// Descend into its children.
    Master,
    /// Read its payload.
    Leaf,
    /// Step over it (payload or whole subtree) without buffering.
    Skip,
}

/// What is known of an id: its kind and its parent (`None` = top level or global).
pub fn describe(id: ElementId) -> Option<(Kind, Option<ElementId>)> {
    use Kind::*;
    Some(match id {
        EBML => (Master, None),
        SEGMENT => (Master, None),
        // EBML header children
        0x4286 | 0x42F7 | 0x42F2 | 0x42F3 | 0x4282 | 0x4287 | 0x4285 => (Leaf, Some(EBML)),
        // Segment children
        SEEK_HEAD | CUES | CHAPTERS | ATTACHMENTS => (Skip, Some(SEGMENT)),
        INFO | TRACKS | TAGS | CLUSTER => (Master, Some(SEGMENT)),
        TIMECODE_SCALE => (Leaf, Some(INFO)),
        // Info children we do not read
        0x4489 | 0x4D80 | 0x5741 | 0x73A4 | 0x7BA9 | 0x4461 => (Skip, Some(INFO)),
        TRACK_ENTRY => (Master, Some(TRACKS)),
        TRACK_NUMBER | TRACK_TYPE | CODEC_ID | CODEC_PRIVATE => (Leaf, Some(TRACK_ENTRY)),
        VIDEO | AUDIO => (Master, Some(TRACK_ENTRY)),
        // TrackUID, DefaultDuration, Language, CodecName, Name, FlagLacing, FlagDefault, ...
        0x73C5 | 0x23E383 | 0x22B59C | 0x258688 | 0x536E | 0x9C | 0x88 | 0xB9 | 0x55AA | 0x56AA | 0x56BB => {
            (Skip, Some(TRACK_ENTRY))
        }
        PIXEL_WIDTH | PIXEL_HEIGHT => (Leaf, Some(VIDEO)),
        0xB5 | 0x9F | 0x6264 => (Skip, Some(AUDIO)),
        TIMECODE | SIMPLE_BLOCK => (Leaf, Some(CLUSTER)),
        BLOCK_GROUP => (Master, Some(CLUSTER)),
        0xA7 | 0xAB | 0x5854 => (Skip, Some(CLUSTER)),
        BLOCK | REFERENCE_BLOCK => (Leaf, Some(BLOCK_GROUP)),
        0x9B | 0x75A2 | 0xA4 => (Skip, Some(BLOCK_GROUP)),
        TAG => (Master, Some(TAGS)),
        TARGETS => (Skip, Some(TAG)),
        // SimpleTag nests inside Tag and inside SimpleTag; both count as its parent.
        SIMPLE_TAG => (Master, Some(TAG)),
        TAG_NAME | TAG_STRING => (Leaf, Some(SIMPLE_TAG)),
        0x447A | 0x4484 | 0x4485 | 0x447B => (Skip, Some(SIMPLE_TAG)),
        VOID | CRC32 => (Skip, None),
        _ => return None,
    })
}

/// Can an element `child` appear directly inside `parent`?
pub fn is_child_of(child: ElementId, parent: ElementId) -> bool {
    match describe(child) {
        // Unknown ids are taken as children of whatever is open (and skipped).
        None => true,
        Some((_, None)) => child == VOID || child == CRC32,
        Some((_, Some(p))) => p == parent || (child == SIMPLE_TAG && parent == SIMPLE_TAG),
    }
}

/// Result of reading a variable-length integer from the front of a buffer.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Vint {
    /// `value` (marker removed, or the raw id with marker), `len` bytes, all-ones = unknown size.
    Value { value: u64, len: usize, unknown: bool },
    /// More bytes are needed.
    Incomplete,
    /// The first byte has no length marker within the allowed width.
    Invalid,
}

/// Reads an element size (1 to 8 bytes). All value bits set means "unknown size".
pub fn read_size(buf: &[u8]) -> Vint {
    read_vint(buf, 8, true)
}

/// Reads an element id (1 to 4 bytes), keeping the marker bits as ids are written.
pub fn read_id(buf: &[u8]) -> Vint {
    match read_vint(buf, 4, false) {
        // A 1-byte id of all ones (0xFF) is reserved and not a valid id.
        Vint::Value { len: 1, value: 0xFF, .. } => Vint::Invalid,
        other => other,
    }
}

fn read_vint(buf: &[u8], max_len: usize, strip_marker: bool) -> Vint {
    let Some(&first) = buf.first() else {
        return Vint::Incomplete;
    };
    let len = first.leading_zeros() as usize + 1;
    if len > max_len {
        return Vint::Invalid;
    }
    if buf.len() < len {
        return Vint::Incomplete;
    }
    let mut value = if strip_marker { u64::from(first) & (0xFF >> len) } else { u64::from(first) };
    for &b in &buf[1..len] {
        value = (value << 8) | u64::from(b);
    }
    let unknown = strip_marker && value == (1u64 << (7 * len)) - 1;
    Vint::Value { value, len, unknown }
}

/// Big-endian unsigned integer payload (0 to 8 bytes).
pub fn read_uint(payload: &[u8]) -> Option<u64> {
    if payload.len() > 8 {
        return None;
    }
    Some(payload.iter().fold(0u64, |acc, &b| (acc << 8) | u64::from(b)))
}

/// A string payload with trailing NULs removed, and how many there were.
pub fn read_string(payload: &[u8]) -> (String, usize) {
    let end = payload.iter().rposition(|&b| b != 0).map_or(0, |p| p + 1);
    (String::from_utf8_lossy(&payload[..end]).into_owned(), payload.len() - end)
}

/// Matroska element name for logs and errors.
pub fn name(id: ElementId) -> &'static str {
    match id {
        EBML => "EBML",
        SEGMENT => "Segment",
        SEEK_HEAD => "SeekHead",
        INFO => "Info",
        TRACKS => "Tracks",
        TRACK_ENTRY => "TrackEntry",
        CLUSTER => "Cluster",
        SIMPLE_BLOCK => "SimpleBlock",
        BLOCK_GROUP => "BlockGroup",
        BLOCK => "Block",
        CUES => "Cues",
        TAGS => "Tags",
        TAG => "Tag",
        SIMPLE_TAG => "SimpleTag",
        TIMECODE => "Timecode",
        TAG_NAME => "TagName",
        TAG_STRING => "TagString",
        TRACK_NUMBER => "TrackNumber",
        CODEC_ID => "CodecID",
        TIMECODE_SCALE => "TimecodeScale",
        CODEC_PRIVATE => "CodecPrivate",
        VOID => "Void",
        CRC32 => "CRC-32",
        _ => "element",
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sizes_in_every_width_and_unknown_forms() {
        assert_eq!(read_size(&[0x81]), Vint::Value { value: 1, len: 1, unknown: false });
        assert_eq!(read_size(&[0x40, 0x02]), Vint::Value { value: 2, len: 2, unknown: false });
        assert_eq!(read_size(&[0xFF]), Vint::Value { value: 127, len: 1, unknown: true });
        assert_eq!(
            read_size(&[0x01, 0xFF, 0xFF, 0xFF, 0xFF, 0xFF, 0xFF, 0xFF]),
            Vint::Value { value: (1 << 56) - 1, len: 8, unknown: true }
        );
        assert_eq!(read_size(&[0x01, 0, 0, 0, 0, 0, 0x01, 0x00]), Vint::Value { value: 256, len: 8, unknown: false });
        assert_eq!(read_size(&[0x00]), Vint::Invalid);
        assert_eq!(read_size(&[0x10, 0x00]), Vint::Incomplete);
        assert_eq!(read_size(&[]), Vint::Incomplete);
    }

    #[test]
    fn ids_keep_their_marker() {
        assert_eq!(read_id(&EBML_MAGIC), Vint::Value { value: 0x1A45_DFA3, len: 4, unknown: false });
        assert_eq!(read_id(&[0xA3]), Vint::Value { value: 0xA3, len: 1, unknown: false });
        assert_eq!(read_id(&[0x08, 0, 0, 0, 0]), Vint::Invalid, "ids are at most 4 bytes");
        assert_eq!(read_id(&[0xFF]), Vint::Invalid);
    }

    #[test]
    fn strings_lose_trailing_nuls() {
        assert_eq!(read_string(b"00:00:10.000\0\0"), ("00:00:10.000".to_owned(), 2));
        assert_eq!(read_string(b"\0"), (String::new(), 1));
        assert_eq!(read_uint(&[0x0F, 0x42, 0x40]), Some(1_000_000));
        assert_eq!(read_uint(&[0; 9]), None);
    }

    #[test]
    fn unknown_size_closing_rule() {
        assert!(is_child_of(SIMPLE_BLOCK, CLUSTER));
        assert!(!is_child_of(TAGS, CLUSTER), "Tags after an unknown-size Cluster closes it");
        assert!(!is_child_of(CLUSTER, CLUSTER), "a new Cluster closes the previous one");
        assert!(is_child_of(VOID, CLUSTER));
        assert!(is_child_of(0x4DBB, CLUSTER), "unknown ids are skipped as children");
        assert!(is_child_of(SIMPLE_TAG, SIMPLE_TAG));
    }
}
