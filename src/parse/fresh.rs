//! The live path's read of a frame: [`classify_bytes_fresh`] drops a snapshot body
//! byte-identical to a recent one (the same change on another topic, see
//! [`crate::stream::duplicates`]) and reads a fresh snapshot frame in one pass.
//!
//! Every frame gets exactly the answer [`super::classify`] gives it (a test holds the two
//! together), but a snapshot frame costs one scan of its bytes instead of three:
//!
//! - **A copy of a recent body** in a compact envelope (as Genesys writes them) is found
//!   without reading its body at all: if the bytes at its `eventBody` position start with
//!   a recent body, that is its body, and only the envelope around it is read.
//! - **A fresh snapshot** is read in one pass over the whole frame (`super::scan`): the
//!   envelope's members as `RawEnvelope` reads them, and its `eventBody` straight into the
//!   domain snapshot, read with the shape of its topic. Where the body starts and ends —
//!   the bytes the duplicate filter keys on — is where that read found it, not the result
//!   of a separate scan of the body. The topic usually follows the body (a
//!   serialised map's keys are sorted); it is looked for at the end of the frame first,
//!   as a guess that only picks the shape: the topic read from the envelope decides.
//!
//! Anything this read does not take on — an error anywhere, a value it leaves to serde, a
//! topic not found where it is looked for, a shape guessed wrong — is read again by the
//! full path (`read_envelope`, then the scan or the owned read of the body), which decides
//! the answer and names any error's path exactly as before.

use std::borrow::Cow;

use super::scan;
use super::{
    classify, classify_envelope, frame_text, read_envelope, snapshot_topic, snapshot_topic_parts,
    Classified, ParseError, SnapshotShape,
};
use crate::stream::duplicates::{BodyKey, BodyShape, RecentBodies};

/// What [`classify_bytes_fresh`] made of a frame.
#[derive(Debug, Clone, PartialEq)]
// Returned by value once per frame, as `Classified` itself is; boxing would cost an
// allocation per frame to save stack bytes.
#[allow(clippy::large_enum_variant)]
pub enum Fresh {
    /// A frame read in full, as [`super::classify_bytes`] reads it.
    Frame(Classified),
    /// A conversation snapshot whose body is byte for byte one of `RecentBodies`, with
    /// the same shape: the same change, sent again on another topic. Not read again;
    /// joining it would change nothing.
    Duplicate,
}

/// Like [`super::classify_bytes`], but a snapshot body byte-identical to a recent one
/// (same shape) is reported as [`Fresh::Duplicate`] without its typed parse, and every
/// snapshot read is remembered in `recent`. See [`crate::stream::duplicates`].
pub fn classify_bytes_fresh(bytes: &[u8], recent: &mut RecentBodies) -> Result<Fresh, ParseError> {
    if is_recent_copy(bytes, recent) {
        return Ok(Fresh::Duplicate);
    }
    let text = frame_text(bytes)?;
    if !text.trim_start().starts_with('{') {
        return classify(text).map(Fresh::Frame);
    }
    if let Some(fresh) = read_in_one_pass(text, recent) {
        return fresh;
    }
    classify_fresh_in_full(text, recent)
}

/// The full path of [`classify_bytes_fresh`] for a frame that starts with `{`: the
/// envelope read with its body as raw text, the body looked up in `recent`, then read as
/// [`super::classify`] reads it. What the fast paths must agree with.
fn classify_fresh_in_full(text: &str, recent: &mut RecentBodies) -> Result<Fresh, ParseError> {
    let envelope = read_envelope(text)?;
    let body_key = match (&envelope.topic_name, envelope.event_body) {
        (Some(topic), Some(body)) if body.get() != "null" => snapshot_topic(topic).map(|topic| {
            let shape = body_shape(&topic.shape);
            (BodyKey::of(shape, body.get().as_bytes()), body.get())
        }),
        _ => None,
    };
    if let Some((key, body)) = &body_key {
        if recent.contains(key, body.as_bytes()) {
            return Ok(Fresh::Duplicate);
        }
    }
    let classified = classify_envelope(text, envelope)?;
    if let (Some((key, body)), Classified::Snapshot { .. }) = (body_key, &classified) {
        recent.remember(key, body.as_bytes());
    }
    Ok(Fresh::Frame(classified))
}

pub(super) fn body_shape(shape: &SnapshotShape) -> BodyShape {
    match shape {
        SnapshotShape::AllMedia => BodyShape::AllMedia,
        SnapshotShape::Messages | SnapshotShape::Medium(_) => BodyShape::PerParticipant,
    }
}

/// JSON's whitespace (`str::trim` would also take Unicode spaces JSON refuses).
fn is_json_space(byte: u8) -> bool {
    matches!(byte, b' ' | b'\t' | b'\n' | b'\r')
}

/// Whether a compact frame (as Genesys writes them) carries, as its `eventBody`, a body
/// `recent` holds with the same shape — found without reading the body at all: a frame
/// whose body position starts with a recent body holds exactly that body (a JSON value
/// ends where its bytes say), so only the envelope around it is read, and it must be as
/// valid as [`read_envelope`] requires. The body's bytes are not even checked for UTF-8:
/// they equal a body read before (the envelope around it is checked, so a frame is a
/// copy only if it is valid text as a whole). Anything unusual (whitespace, escapes or
/// other members before the body, a repeated member) answers `false`, and the frame
/// takes the full path, which finds a copy too.
fn is_recent_copy(bytes: &[u8], recent: &RecentBodies) -> bool {
    let Some((prefix_topic, start)) = compact_prefix(bytes) else {
        return false;
    };
    let Some(found) = recent.prefix_of(&bytes[start..]) else {
        return false;
    };
    let end = start + found.body_len();
    // The body starts with `{` and ends with `}`: the text around it splits at characters.
    let Ok(rest) = std::str::from_utf8(&bytes[end..]) else {
        return false;
    };
    let topic = if let Some(members) = rest.strip_prefix(',') {
        // The scan refuses `,}` (a trailing comma) as serde does.
        match (prefix_topic, scan::envelope_rest(members)) {
            (Some(topic), Some(None)) => Cow::Borrowed(topic),
            (None, Some(Some(Some(topic)))) => topic,
            _ => return false,
        }
    } else if rest
        .strip_prefix('}')
        .is_some_and(|end| end.bytes().all(is_json_space))
    {
        match prefix_topic {
            Some(topic) => Cow::Borrowed(topic),
            None => return false,
        }
    } else {
        return false;
    };
    let Some(topic) = snapshot_topic_parts(&topic) else {
        return false;
    };
    let shape = topic.body_shape();
    if found.shape() == shape {
        return true;
    }
    // The same bytes were seen with the other shape; with this one too, perhaps earlier.
    let body = &bytes[start..end];
    recent.contains(&BodyKey::of(shape, body), body)
}

/// Reads `{"topicName":"…","version":"…","eventBody":` (the first two optional, in either
/// order, without whitespace or escapes) at the start of a frame's bytes: the topic, if it
/// came first, and where the body starts. Only the two values are checked for UTF-8 (the
/// rest is the ASCII matched here).
fn compact_prefix(bytes: &[u8]) -> Option<(Option<&str>, usize)> {
    let mut at = bytes.strip_prefix(b"{")?;
    let mut topic = None;
    let mut version = None;
    loop {
        if let Some(rest) = at.strip_prefix(b"\"eventBody\":") {
            return Some((topic, bytes.len() - rest.len()));
        }
        let (member, rest) = if let Some(rest) = at.strip_prefix(b"\"topicName\":\"") {
            (&mut topic, rest)
        } else if let Some(rest) = at.strip_prefix(b"\"version\":\"") {
            (&mut version, rest)
        } else {
            return None;
        };
        let end = rest.iter().position(|byte| matches!(byte, b'"' | b'\\'))?;
        let value = std::str::from_utf8(&rest[..end]).ok()?;
        if member.is_some()
            || !rest[end..].starts_with(b"\",")
            || value.chars().any(char::is_control)
        {
            return None;
        }
        *member = Some(value);
        at = &rest[end + 2..];
    }
}

/// How far from the end of a frame its topic is looked for when it does not come first:
/// after the body there are only the topic, the version and Genesys' small `metadata`.
const TOPIC_SEARCH_TAIL: usize = 1024;

/// The topic a frame probably has, to pick the shape its body is read with before the
/// envelope has been read: a `topicName` member first in the frame, else the last one in
/// its tail. A guess (the name may belong to an object inside the body); the envelope's
/// own member decides.
fn topic_hint(text: &str) -> Option<&str> {
    const NAME: &str = "\"topicName\"";
    let first = trim_json_space_start(text)
        .strip_prefix('{')
        .map(trim_json_space_start)
        .and_then(|members| members.strip_prefix(NAME));
    let after_name = match first {
        Some(rest) => rest,
        None => {
            let mut from = text.len().saturating_sub(TOPIC_SEARCH_TAIL);
            while !text.is_char_boundary(from) {
                from += 1;
            }
            &text[from + last_at(&text.as_bytes()[from..], NAME.as_bytes())? + NAME.len()..]
        }
    };
    let value = trim_json_space_start(trim_json_space_start(after_name).strip_prefix(':')?)
        .strip_prefix('"')?;
    let end = value.find(['"', '\\'])?;
    value[end..].starts_with('"').then(|| &value[..end])
}

/// Where `needle` (which must not be empty) last starts in `haystack`. The topic is
/// usually within a few dozen bytes of the end: a backward walk from its first byte's
/// last occurrence finds it sooner than `str::rfind`, which first builds a two-way
/// searcher for the needle (a profile showed that setup as 1 % of the pipeline).
fn last_at(haystack: &[u8], needle: &[u8]) -> Option<usize> {
    let first = *needle.first()?;
    let mut end = haystack.len();
    while let Some(at) = haystack[..end].iter().rposition(|&byte| byte == first) {
        if haystack[at..].starts_with(needle) {
            return Some(at);
        }
        end = at;
    }
    None
}

fn trim_json_space_start(text: &str) -> &str {
    text.trim_start_matches(|c: char| c.is_ascii() && is_json_space(c as u8))
}

/// Reads a fresh snapshot frame in one pass (see the module's documentation). `None`: the
/// frame is left to the full path, which decides.
fn read_in_one_pass(text: &str, recent: &mut RecentBodies) -> Option<Result<Fresh, ParseError>> {
    let hint = topic_hint(text)?;
    let hinted = snapshot_topic(hint)?;
    let shape = body_shape(&hinted.shape);
    let envelope = scan::envelope(text, shape)?;
    let (snapshot, span) = envelope.body?;
    let topic_name = envelope.topic_name?;
    let topic = if topic_name == hint {
        hinted
    } else {
        let topic = snapshot_topic(&topic_name)?;
        if body_shape(&topic.shape) != shape {
            return None;
        }
        topic
    };
    let bytes = &text.as_bytes()[span];
    let key = BodyKey::of(shape, bytes);
    if recent.contains(&key, bytes) {
        return Some(Ok(Fresh::Duplicate));
    }
    recent.remember(key, bytes);
    Some(Ok(Fresh::Frame(Classified::Snapshot { topic, snapshot })))
}

#[cfg(test)]
#[path = "fresh_tests.rs"]
mod tests;
