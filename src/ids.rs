//! Identifier newtypes, so a participant id can never be passed where a conversation id is
//! expected. Genesys ids are UUID strings, but message ids are 32-hex strings in captures
//! (API.md §2.1): all are treated as opaque text.

use std::borrow::Cow;

use serde::{Deserialize, Serialize};

macro_rules! id_type {
    ($(#[$meta:meta])* $name:ident) => {
        $(#[$meta])*
        #[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
        #[serde(transparent)]
        pub struct $name(pub String);

        impl $name {
            pub fn as_str(&self) -> &str {
                &self.0
            }
        }

        impl std::fmt::Display for $name {
            fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
                f.write_str(&self.0)
            }
        }

        impl From<&str> for $name {
            fn from(text: &str) -> Self {
                $name(text.to_owned())
            }
        }

        impl From<String> for $name {
            fn from(text: String) -> Self {
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
mod tests {
    use super::*;

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
