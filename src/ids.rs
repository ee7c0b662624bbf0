//! Identifier newtypes, so a participant id can never be passed where a conversation id is
//! expected. Genesys ids are UUID strings, but message ids are 32-hex strings in captures
//! (API.md §2.1): all are treated as opaque text, and every id reads back exactly as it
//! was given.
//!
//! Held compactly ([`IdText`]): a live conversation holds some 35 ids (its participants',
//! legs', messages', and the router's and registry's copies of its own), and as `String`s
//! each cost 24 bytes inline plus a 48-byte heap chunk for its text. A UUID or a 32-hex
//! id is 128 bits: held as 16 bytes inline with its shape and letter case, it needs no
//! heap at all. Anything else keeps its text, boxed.

use std::borrow::Cow;
use std::cmp::Ordering;
use std::fmt;

use serde::{Deserialize, Deserializer, Serialize, Serializer};

/// The text of an id: inline 128 bits when it is a UUID (`8-4-4-4-12`) or 32 hex digits in
/// one letter case, else the boxed text. The representation is canonical (one text, one
/// representation), so equality and hashing compare texts; the order is the texts' order.
#[derive(Clone, PartialEq, Eq, Hash)]
pub struct IdText(Repr);

#[derive(Clone, PartialEq, Eq, Hash)]
enum Repr {
    Bits { bits: [u8; 16], shape: Shape },
    Text(Box<str>),
}

/// How 128 bits are written: Genesys writes lower case, but the case is kept so an id is
/// echoed back exactly as it came.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
enum Shape {
    UuidLower,
    UuidUpper,
    HexLower,
    HexUpper,
}

impl Shape {
    fn hyphenated(self) -> bool {
        matches!(self, Shape::UuidLower | Shape::UuidUpper)
    }

    fn digits(self) -> &'static [u8; 16] {
        match self {
            Shape::UuidLower | Shape::HexLower => b"0123456789abcdef",
            Shape::UuidUpper | Shape::HexUpper => b"0123456789ABCDEF",
        }
    }

    fn len(self) -> usize {
        if self.hyphenated() {
            36
        } else {
            32
        }
    }
}

/// Where a UUID's text has its hyphens.
const UUID_HYPHENS: [usize; 4] = [8, 13, 18, 23];

/// Where the 32 digits of a hyphenated UUID sit in its text: every place but the hyphens'.
const UUID_DIGITS: [usize; 32] = {
    let mut at = [0; 32];
    let (mut digit, mut position, mut hyphen) = (0, 0, 0);
    while digit < 32 {
        if hyphen < UUID_HYPHENS.len() && position == UUID_HYPHENS[hyphen] {
            hyphen += 1;
        } else {
            at[digit] = position;
            digit += 1;
        }
        position += 1;
    }
    at
};

/// A byte that is no hex digit.
const NOT_HEX: u8 = 0xff;
/// Marks a lower-case (`a`–`f`) and an upper-case (`A`–`F`) digit beside its value.
const LOWER: u8 = 0x10;
const UPPER: u8 = 0x20;

/// Each byte's hex value, with its letter case, or `NOT_HEX`: ids are parsed by the
/// dozen in every snapshot, so a digit is one lookup, not a chain of range tests.
const HEX: [u8; 256] = {
    let mut table = [NOT_HEX; 256];
    let mut byte = 0;
    while byte < 256 {
        table[byte] = match byte as u8 {
            b'0'..=b'9' => byte as u8 - b'0',
            b'a'..=b'f' => (byte as u8 - b'a' + 10) | LOWER,
            b'A'..=b'F' => (byte as u8 - b'A' + 10) | UPPER,
            _ => NOT_HEX,
        };
        byte += 1;
    }
    table
};

/// The 128 bits and shape of `text`, when it is a UUID or 32 hex digits in one case.
fn parse_bits(text: &str) -> Option<Repr> {
    let bytes = text.as_bytes();
    let hyphenated = match bytes.len() {
        36 => true,
        32 => false,
        _ => return None,
    };
    if hyphenated && UUID_HYPHENS.iter().any(|&at| bytes[at] != b'-') {
        return None;
    }
    let digit_at = |digit: usize| {
        if hyphenated {
            bytes[UUID_DIGITS[digit]]
        } else {
            bytes[digit]
        }
    };
    let mut bits = [0u8; 16];
    // Every entry's case bits, and whether any byte was no digit at all.
    let mut seen = 0u8;
    for (index, pair) in bits.iter_mut().enumerate() {
        let high = HEX[usize::from(digit_at(2 * index))];
        let low = HEX[usize::from(digit_at(2 * index + 1))];
        seen |= high | low;
        *pair = (high & 0x0f) << 4 | (low & 0x0f);
    }
    // `NOT_HEX` sets every bit, so both case bits: refused with mixed case below.
    let upper = match seen & (LOWER | UPPER) {
        0 | LOWER => false,
        UPPER => true,
        _ => return None,
    };
    let shape = match (hyphenated, upper) {
        (true, false) => Shape::UuidLower,
        (true, true) => Shape::UuidUpper,
        (false, false) => Shape::HexLower,
        (false, true) => Shape::HexUpper,
    };
    Some(Repr::Bits { bits, shape })
}

impl IdText {
    pub fn new(text: &str) -> Self {
        IdText(parse_bits(text).unwrap_or_else(|| Repr::Text(text.into())))
    }

    fn from_string(text: String) -> Self {
        IdText(parse_bits(&text).unwrap_or_else(|| Repr::Text(text.into_boxed_str())))
    }

    /// The id's text (rendered on the stack when held as bits).
    pub fn text(&self) -> IdStr<'_> {
        match &self.0 {
            Repr::Text(text) => IdStr(Rendered::Borrowed(text)),
            Repr::Bits { bits, shape } => {
                // The 32 digits side by side, then each in its place: where `parse_bits`
                // reads them from (`UUID_DIGITS`), or in a row.
                let digits = shape.digits();
                let mut hex = [0u8; 32];
                for (pair, byte) in hex.chunks_exact_mut(2).zip(bits) {
                    pair[0] = digits[usize::from(byte >> 4)];
                    pair[1] = digits[usize::from(byte & 0x0f)];
                }
                let mut buffer = [b'-'; 36];
                if shape.hyphenated() {
                    for (digit, &at) in hex.iter().zip(&UUID_DIGITS) {
                        buffer[at] = *digit;
                    }
                } else {
                    buffer[..32].copy_from_slice(&hex);
                }
                IdStr(Rendered::Inline {
                    buffer,
                    len: shape.len() as u8,
                })
            }
        }
    }

    /// Whether the id is held inline (no heap text).
    pub fn is_inline(&self) -> bool {
        matches!(self.0, Repr::Bits { .. })
    }
}

impl Ord for IdText {
    fn cmp(&self, other: &Self) -> Ordering {
        match (&self.0, &other.0) {
            // Same shape: hex digits of one case sort as their values, hyphens sit at the
            // same places, so the bits compare as the texts would.
            // As two big-endian numbers: the same order as the bytes', without a call to
            // `memcmp` (the join looks ids up by the dozen per snapshot).
            (Repr::Bits { bits: a, shape: sa }, Repr::Bits { bits: b, shape: sb }) if sa == sb => {
                u128::from_be_bytes(*a).cmp(&u128::from_be_bytes(*b))
            }
            _ => (*self.text()).cmp(&*other.text()),
        }
    }
}

impl PartialOrd for IdText {
    fn partial_cmp(&self, other: &Self) -> Option<Ordering> {
        Some(self.cmp(other))
    }
}

impl fmt::Display for IdText {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.text())
    }
}

impl fmt::Debug for IdText {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fmt::Debug::fmt(&*self.text(), f)
    }
}

impl Serialize for IdText {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        serializer.serialize_str(&self.text())
    }
}

impl<'de> Deserialize<'de> for IdText {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        let text = <Cow<'de, str>>::deserialize(deserializer)?;
        Ok(IdText::new(&text))
    }
}

/// An id's text: borrowed from the id, or rendered from its bits into a stack buffer.
/// Dereferences to `str`.
#[derive(Clone, Copy)]
pub struct IdStr<'a>(Rendered<'a>);

#[derive(Clone, Copy)]
enum Rendered<'a> {
    Borrowed(&'a str),
    Inline { buffer: [u8; 36], len: u8 },
}

impl IdStr<'_> {
    pub fn as_str(&self) -> &str {
        self
    }
}

impl std::ops::Deref for IdStr<'_> {
    type Target = str;

    fn deref(&self) -> &str {
        match &self.0 {
            Rendered::Borrowed(text) => text,
            // Only ASCII hex digits and hyphens are ever written into the buffer.
            Rendered::Inline { buffer, len } => {
                std::str::from_utf8(&buffer[..usize::from(*len)]).unwrap_or_default()
            }
        }
    }
}

impl AsRef<str> for IdStr<'_> {
    fn as_ref(&self) -> &str {
        self
    }
}

impl fmt::Display for IdStr<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self)
    }
}

impl fmt::Debug for IdStr<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fmt::Debug::fmt(&**self, f)
    }
}

impl PartialEq<str> for IdStr<'_> {
    fn eq(&self, other: &str) -> bool {
        **self == *other
    }
}

impl PartialEq<&str> for IdStr<'_> {
    fn eq(&self, other: &&str) -> bool {
        **self == **other
    }
}

macro_rules! id_type {
    ($(#[$meta:meta])* $name:ident) => {
        $(#[$meta])*
        #[derive(Clone, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
        #[serde(transparent)]
        pub struct $name(IdText);

        impl $name {
            /// The id's text, exactly as it was given.
            pub fn text(&self) -> IdStr<'_> {
                self.0.text()
            }

            /// The compact text itself.
            pub fn id_text(&self) -> &IdText {
                &self.0
            }
        }

        impl std::fmt::Display for $name {
            fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
                std::fmt::Display::fmt(&self.0, f)
            }
        }

        impl std::fmt::Debug for $name {
            fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
                f.debug_tuple(stringify!($name)).field(&self.0).finish()
            }
        }

        impl From<&str> for $name {
            fn from(text: &str) -> Self {
                $name(IdText::new(text))
            }
        }

        impl From<String> for $name {
            fn from(text: String) -> Self {
                $name(IdText::from_string(text))
            }
        }

        impl From<&String> for $name {
            fn from(text: &String) -> Self {
                $name(IdText::new(text))
            }
        }

        impl From<IdText> for $name {
            fn from(text: IdText) -> Self {
                $name(text)
            }
        }
    };
}

id_type!(
    /// A conversation id: the partition key of everything Convoy keeps.
    ConversationId
);
id_type!(
    /// A participant id, unique within its conversation.
    ParticipantId
);
id_type!(
    /// A communication (leg of one medium) id; detail events call it `sessionId`.
    CommunicationId
);
id_type!(
    /// A message id (`messageId` or `message.id`).
    MessageId
);

/// Why an id cannot be one segment of a REST path.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum PathSegmentError {
    #[error("an empty id would leave the path one segment short")]
    Empty,
    /// `.` and `..` are resolved by URL normalisation (in a proxy, in the server) even
    /// when percent-escaped, so they would name a different resource.
    #[error("an id of only dots would be read as a relative path segment")]
    DotSegment,
}

/// `id` as one REST path segment: every byte outside RFC 3986's unreserved characters
/// (`A-Z a-z 0-9 - . _ ~`) percent-escaped, so `/`, `?`, `#`, `%` and spaces in an id taken
/// from a notification frame can never change which resource a request (carrying Convoy's
/// bearer token) reaches. Genesys ids are UUIDs or 32-hex strings: for them this borrows
/// the id unchanged.
pub fn path_segment(id: &str) -> Result<Cow<'_, str>, PathSegmentError> {
    if id.is_empty() {
        return Err(PathSegmentError::Empty);
    }
    if id.bytes().all(|b| b == b'.') {
        return Err(PathSegmentError::DotSegment);
    }
    let unreserved = |b: u8| b.is_ascii_alphanumeric() || matches!(b, b'-' | b'.' | b'_' | b'~');
    if id.bytes().all(unreserved) {
        return Ok(Cow::Borrowed(id));
    }
    let mut escaped = String::with_capacity(id.len() * 3);
    for byte in id.bytes() {
        if unreserved(byte) {
            escaped.push(char::from(byte));
        } else {
            const HEX: &[u8; 16] = b"0123456789ABCDEF";
            escaped.push('%');
            escaped.push(char::from(HEX[usize::from(byte >> 4)]));
            escaped.push(char::from(HEX[usize::from(byte & 0x0f)]));
        }
    }
    Ok(Cow::Owned(escaped))
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    #[test]
    fn ids_read_back_exactly_as_given() {
        for text in [
            "4c2b6f0e-2a1d-4b8e-9f3a-0c1d2e3f4a5b",
            "4C2B6F0E-2A1D-4B8E-9F3A-0C1D2E3F4A5B",
            "0123456789abcdef0123456789abcdef",
            "0123456789ABCDEF0123456789ABCDEF",
            "01234567-8901-2345-6789-012345678901",
            "4c2b6f0e-2a1d-4B8E-9f3a-0c1d2e3f4a5b",
            "4c2b6f0e_2a1d-4b8e-9f3a-0c1d2e3f4a5b",
            "0123456789abcdef0123456789abcdeg",
            "agent",
            "",
            "ü-ünïcode",
        ] {
            let id = ParticipantId::from(text);
            assert_eq!(&*id.text(), text);
            assert_eq!(id.to_string(), text);
            assert_eq!(ParticipantId::from(text.to_owned()), id);
            assert_eq!(
                serde_json::to_string(&id).unwrap(),
                serde_json::to_string(text).unwrap()
            );
            let back: ParticipantId =
                serde_json::from_str(&serde_json::to_string(text).unwrap()).unwrap();
            assert_eq!(back, id);
        }
        assert!(ConversationId::from("4c2b6f0e-2a1d-4b8e-9f3a-0c1d2e3f4a5b")
            .id_text()
            .is_inline());
        assert!(MessageId::from("0123456789ABCDEF0123456789ABCDEF")
            .id_text()
            .is_inline());
        assert!(!MessageId::from("0123456789ABCDEF0123456789abcdef")
            .id_text()
            .is_inline());
        assert_ne!(
            ParticipantId::from("4c2b6f0e-2a1d-4b8e-9f3a-0c1d2e3f4a5b"),
            ParticipantId::from("4C2B6F0E-2A1D-4B8E-9F3A-0C1D2E3F4A5B")
        );
        assert_eq!(std::mem::size_of::<ConversationId>(), 24);
        assert_eq!(std::mem::size_of::<Option<ConversationId>>(), 24);
    }

    proptest::proptest! {
        /// Ids order exactly as their texts do, whatever mix of UUIDs (either case), 32-hex
        /// ids and other text, so every map keyed by ids iterates in the same order as
        /// before they were compact.
        #[test]
        fn ids_order_and_compare_as_their_texts(
            texts in proptest::collection::vec(
                proptest::prop_oneof![
                    "[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}",
                    "[0-9A-F]{8}-[0-9A-F]{4}-[0-9A-F]{4}-[0-9A-F]{4}-[0-9A-F]{12}",
                    "[0-9a-f]{32}",
                    "[0-9A-F]{32}",
                    "[0-9a-fA-F-]{0,36}",
                    "[0-9]{2}[a-z0-9]{0,3}",
                ],
                2..12,
            )
        ) {
            for a in &texts {
                for b in &texts {
                    let (x, y) = (CommunicationId::from(a.as_str()), CommunicationId::from(b.as_str()));
                    proptest::prop_assert_eq!(x.cmp(&y), a.cmp(b), "{} vs {}", a, b);
                    proptest::prop_assert_eq!(x == y, a == b);
                }
            }
        }
    }

    proptest::proptest! {
        /// Any text of an id's length, digits, letters of both cases, hyphens anywhere or
        /// other characters, reads back exactly; it is held inline exactly when it is a
        /// UUID or 32 hex digits in one letter case.
        #[test]
        fn texts_near_an_id_read_back_exactly(
            text in proptest::prop_oneof![
                "[0-9a-fA-F]{8}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{12}",
                "[0-9a-gA-G\\-]{36}",
                "[0-9a-fA-F:/ü]{32}",
                "[0-9a-fA-F]{31,37}",
            ]
        ) {
            let id = MessageId::from(text.as_str());
            proptest::prop_assert_eq!(&*id.text(), text.as_str());
            let digits: Vec<char> = text.chars().filter(|c| *c != '-').collect();
            let hyphens_in_place = text.len() == 36
                && text.char_indices().all(|(at, c)| (c == '-') == UUID_HYPHENS.contains(&at));
            let one_case = !(text.chars().any(|c| c.is_ascii_lowercase())
                && text.chars().any(|c| c.is_ascii_uppercase()));
            let expected_inline = digits.iter().all(char::is_ascii_hexdigit)
                && digits.len() == 32
                && one_case
                && (hyphens_in_place || text.len() == 32);
            proptest::prop_assert_eq!(id.id_text().is_inline(), expected_inline, "{}", text);
        }
    }

    #[test]
    fn genesys_ids_go_into_paths_unchanged() {
        for id in [
            "4c2b6f0e-2a1d-4b8e-9f3a-0c1d2e3f4a5b",
            "0123456789abcdef0123456789abcdef",
            "streaming-0-abc_DEF~1.2",
        ] {
            assert_eq!(path_segment(id), Ok(Cow::Borrowed(id)));
        }
    }

    #[test]
    fn ids_that_would_change_the_path_are_escaped_or_refused() {
        for (id, segment) in [
            ("a/b", "a%2Fb"),
            ("x?y=1", "x%3Fy%3D1"),
            ("frag#top", "frag%23top"),
            ("../users", "..%2Fusers"),
            ("a..b", "a..b"),
            ("50%", "50%25"),
            ("sp ace", "sp%20ace"),
            ("ü", "%C3%BC"),
        ] {
            let escaped = path_segment(id);
            assert_eq!(escaped.as_deref(), Ok(segment), "{id:?}");
            let escaped = escaped.unwrap_or_default();
            assert!(!escaped.contains(['/', '?', '#']), "{id:?}");
        }
        assert_eq!(path_segment(""), Err(PathSegmentError::Empty));
        assert_eq!(path_segment("."), Err(PathSegmentError::DotSegment));
        assert_eq!(path_segment(".."), Err(PathSegmentError::DotSegment));
    }
}
