//! The live path's read of snapshot frames and bodies, by hand: member names matched as
//! bytes, the values Convoy does not keep only checked for JSON's grammar, kept text
//! borrowed from the frame until it goes into the domain snapshot, which is built as the
//! members come ([`ConversationSnapshot`] and its parts, no wire structs in between).
//!
//! The owned wire model (`crate::model`) keeps every field Genesys documents, each string
//! in its own allocation, because the emulator builds and serialises it and `inspect`
//! shows it; a live frame needs a tenth of that. Profiling `convoy bench core` showed
//! serde's derived readers of a lean wire shape still costing three times an `IgnoredAny`
//! pass over the same bytes (field visitors, `Option` and `Vec` visitors, large wire
//! structs moved through `Result`s, then converted); this read costs little more than
//! that pass.
//!
//! It never decides an error: it answers `None` for whatever it does not take on — any
//! grammar error, a value of another type than the snapshot wants, a number that is not a
//! plain integer, a repeated member, a missing or empty id or attachment URL, nesting
//! deeper than `MAX_DEPTH`, a struct written as an array — and the body is then read by
//! the owned model with path tracking (`parse::read_snapshot_owned`), which gives the
//! error and its JSON path, or the snapshot where it accepts what this read declined.
//! Member names with escapes are unescaped and matched as serde matches them; unknown
//! enum text is kept as the `Unknown` variant; participant attributes keep string values,
//! drop `null` and keep any other value as its JSON text. Tests hold this read to the
//! owned model on every fixture, generated corpora and mutated frames.

use std::borrow::Cow;
use std::collections::BTreeMap;
use std::ops::Range;

use chrono::{DateTime, Utc};

use super::timestamp;
use crate::conversation::snapshot::{
    Attachment, CommunicationSnapshot, ConversationSnapshot, Medium, MessageSnapshot,
    ParticipantSnapshot, Sticker, WrapupRecord,
};
use crate::ids::{CommunicationId, ConversationId, IdText, MessageId, ParticipantId};
use crate::model::{
    AfterCallWorkState, CommunicationState, Direction, DisconnectType, MessageStatus, MessageType,
    Purpose,
};
use crate::stream::duplicates::BodyShape;

/// Deeper frames are left to serde, whose own limit (128) then decides.
const MAX_DEPTH: u32 = 100;

/// A frame's envelope as the one-pass read needs it: its topic, and its body read into a
/// snapshot with where the body's text is in the frame.
pub(super) struct ScannedEnvelope<'a> {
    pub topic_name: Option<Cow<'a, str>>,
    pub body: Option<(ConversationSnapshot, Range<usize>)>,
}

/// Reads a whole frame (an envelope object, then only whitespace) with its `eventBody` in
/// `shape`. `None`: left to the full path (see the module's documentation).
pub(super) fn envelope(text: &str, shape: BodyShape) -> Option<ScannedEnvelope<'_>> {
    let mut scanner = Scanner::new(text);
    let (mut topic_name, mut body, mut result) = (None, None, None);
    scanner.object(|s, name| match name {
        "topicName" => once(&mut topic_name, s.text()),
        "eventBody" => {
            let start = s.value_start()?;
            let snapshot = s.snapshot(shape)?;
            once(&mut body, Some((snapshot, start..s.at)))
        }
        "result" => once(&mut result, s.skip()),
        _ => s.skip(),
    })?;
    scanner.end()?;
    Some(ScannedEnvelope {
        topic_name: topic_name.flatten(),
        body,
    })
}

/// Reads the members of an envelope that follow its `eventBody` and its comma — the text
/// from there to the envelope's closing brace and trailing whitespace — as serde reads the
/// rest of that envelope: the `topicName` member's value if it has one (`Some(None)` for
/// `null`). `None` (left to the full path) for a second `eventBody`, a repeated
/// `topicName` or `result`, or anything else this read does not take on.
pub(super) fn envelope_rest(members: &str) -> Option<Option<Option<Cow<'_, str>>>> {
    let mut scanner = Scanner::new(members);
    let (mut topic_name, mut result) = (None, None);
    // The envelope's `{` came before its body, one level up.
    scanner.enter()?;
    scanner.members(|s, name| match name {
        "topicName" => once(&mut topic_name, s.text()),
        "eventBody" => None,
        "result" => once(&mut result, s.skip()),
        _ => s.skip(),
    })?;
    scanner.end()?;
    Some(topic_name)
}

/// Reads a whole text that is one snapshot body of `shape` (trailing whitespace allowed,
/// as `serde_json::from_str` allows it).
pub(super) fn body(text: &str, shape: BodyShape) -> Option<ConversationSnapshot> {
    let mut scanner = Scanner::new(text);
    let snapshot = scanner.snapshot(shape)?;
    scanner.end()?;
    Some(snapshot)
}

/// Records a member's value the first time it is seen; a second time is serde's
/// `duplicate field` error, so `None`.
fn once<T>(slot: &mut Option<T>, value: Option<T>) -> Option<()> {
    if slot.is_some() {
        return None;
    }
    *slot = Some(value?);
    Some(())
}

/// What `parse::required` accepts: present and not empty.
fn required(text: Option<Option<Cow<'_, str>>>) -> Option<Cow<'_, str>> {
    text.flatten().filter(|text| !text.is_empty())
}

fn owned(text: Option<Option<Cow<'_, str>>>) -> Option<String> {
    text.flatten().map(Cow::into_owned)
}

fn id_text(text: Option<Option<Cow<'_, str>>>) -> Option<IdText> {
    text.flatten().map(|text| IdText::new(&text))
}

/// A message's id: `messageId`, else `message.id` (both `null` or absent: none).
fn message_id<'a>(
    message_id: Option<Option<Cow<'a, str>>>,
    message: Option<Option<Option<Cow<'a, str>>>>,
) -> Option<Cow<'a, str>> {
    required(message_id.flatten().map(Some).or_else(|| message.flatten()))
}

/// Which bytes end a run of plain string content: `"`, `\` and the control characters
/// JSON refuses inside strings.
const STRING_SPECIAL: [bool; 256] = {
    let mut table = [false; 256];
    let mut byte = 0;
    while byte < 0x20 {
        table[byte] = true;
        byte += 1;
    }
    table[b'"' as usize] = true;
    table[b'\\' as usize] = true;
    table
};

/// What a number is, as serde tells integers from floats.
#[derive(Clone, Copy, PartialEq, Eq)]
enum NumberKind {
    Unsigned,
    Negative,
    Float,
}

struct Scanner<'a> {
    text: &'a str,
    bytes: &'a [u8],
    at: usize,
    depth: u32,
}

impl<'a> Scanner<'a> {
    fn new(text: &'a str) -> Scanner<'a> {
        Scanner {
            text,
            bytes: text.as_bytes(),
            at: 0,
            depth: 0,
        }
    }

    fn space(&mut self) {
        while let Some(b' ' | b'\n' | b'\r' | b'\t') = self.bytes.get(self.at) {
            self.at += 1;
        }
    }

    /// The next byte that is not whitespace, not consumed.
    fn peek(&mut self) -> Option<u8> {
        self.space();
        self.bytes.get(self.at).copied()
    }

    fn eat(&mut self, byte: u8) -> Option<()> {
        (self.peek()? == byte).then(|| self.at += 1)
    }

    /// Where the next value starts (after whitespace).
    fn value_start(&mut self) -> Option<usize> {
        self.peek().map(|_| self.at)
    }

    fn literal(&mut self, word: &[u8]) -> Option<()> {
        self.bytes[self.at..]
            .starts_with(word)
            .then(|| self.at += word.len())
    }

    /// Consumes `null` if it comes next.
    fn null(&mut self) -> Option<bool> {
        if self.peek()? == b'n' {
            self.literal(b"null")?;
            return Some(true);
        }
        Some(false)
    }

    /// Moves past the plain bytes of a string's content, eight at a time where it can.
    fn skip_plain(&mut self) {
        const ONES: u64 = u64::from_ne_bytes([0x01; 8]);
        const HIGH: u64 = u64::from_ne_bytes([0x80; 8]);
        let has_zero = |word: u64| word.wrapping_sub(ONES) & !word & HIGH;
        while let Some(chunk) = self.bytes.get(self.at..self.at + 8) {
            let mut word = [0; 8];
            word.copy_from_slice(chunk);
            let word = u64::from_le_bytes(word);
            let special = has_zero(word ^ u64::from_ne_bytes([b'"'; 8]))
                | has_zero(word ^ u64::from_ne_bytes([b'\\'; 8]))
                | (word.wrapping_sub(ONES * 0x20) & !word & HIGH);
            if special != 0 {
                // The lowest flagged byte is exact (a borrow only runs upwards from it).
                self.at += (special.trailing_zeros() / 8) as usize;
                return;
            }
            self.at += 8;
        }
        while self
            .bytes
            .get(self.at)
            .is_some_and(|byte| !STRING_SPECIAL[usize::from(*byte)])
        {
            self.at += 1;
        }
    }

    /// A string at the current position (after whitespace): the range of its content and
    /// whether it holds escapes. Escapes are checked as serde checks a skipped string
    /// (a `\u` needs four hex digits, nothing more).
    // Inlined into its callers: as a call, its result (a range and a flag) went
    // through memory and the position could not stay in a register across the hundreds
    // of strings in a frame. `convoy bench core`: 6 % fewer instructions, ~100 -> ~94 ms.
    #[inline(always)]
    fn raw_string(&mut self) -> Option<(Range<usize>, bool)> {
        self.eat(b'"')?;
        let start = self.at;
        let mut escaped = false;
        loop {
            self.skip_plain();
            match *self.bytes.get(self.at)? {
                b'"' => {
                    self.at += 1;
                    return Some((start..self.at - 1, escaped));
                }
                b'\\' => {
                    escaped = true;
                    match *self.bytes.get(self.at + 1)? {
                        b'"' | b'\\' | b'/' | b'b' | b'f' | b'n' | b'r' | b't' => self.at += 2,
                        b'u' => {
                            let digits = self.bytes.get(self.at + 2..self.at + 6)?;
                            if !digits.iter().all(u8::is_ascii_hexdigit) {
                                return None;
                            }
                            self.at += 6;
                        }
                        _ => return None,
                    }
                }
                _ => return None,
            }
        }
    }

    /// A string's text: borrowed unless it holds escapes, which serde then reads (and
    /// refuses, as it would, where an escape is not a character, e.g. a lone surrogate).
    /// Member names are read the same way (serde matches `"i\u0064"` to `id`).
    // Inlined for the same reason as `raw_string`: once per member name and per kept
    // string, and as a call its `Cow` went back through memory (3.5 % more instructions
    // in `convoy bench core` than with it inlined).
    #[inline(always)]
    fn string(&mut self) -> Option<Cow<'a, str>> {
        let (content, escaped) = self.raw_string()?;
        if escaped {
            let quoted = &self.text[content.start - 1..content.end + 1];
            serde_json::from_str::<String>(quoted).ok().map(Cow::Owned)
        } else {
            Some(Cow::Borrowed(&self.text[content]))
        }
    }

    /// Only whitespace is left.
    fn end(&mut self) -> Option<()> {
        self.space();
        (self.at == self.bytes.len()).then_some(())
    }

    fn enter(&mut self) -> Option<()> {
        self.depth += 1;
        (self.depth <= MAX_DEPTH).then_some(())
    }

    /// An object; `member` is given each name and must consume its value.
    fn object(&mut self, member: impl FnMut(&mut Self, &str) -> Option<()>) -> Option<()> {
        self.eat(b'{')?;
        self.enter()?;
        if self.peek()? == b'}' {
            self.at += 1;
            self.depth -= 1;
            Some(())
        } else {
            self.members(member)
        }
    }

    /// An object's members (at least one) and its closing brace, after its `{` and
    /// [`Self::enter`]; `member` as in [`Self::object`].
    fn members(&mut self, mut member: impl FnMut(&mut Self, &str) -> Option<()>) -> Option<()> {
        loop {
            if self.peek()? != b'"' {
                return None;
            }
            let name = self.string()?;
            self.eat(b':')?;
            member(self, &name)?;
            if !self.separator(b'}')? {
                break;
            }
        }
        self.depth -= 1;
        Some(())
    }

    /// After a member or an element: a `,` (`Some(true)`: another follows) or the
    /// container's `close` (`Some(false)`), consumed; anything else is not JSON.
    fn separator(&mut self, close: u8) -> Option<bool> {
        let more = match self.peek()? {
            b',' => true,
            byte if byte == close => false,
            _ => return None,
        };
        self.at += 1;
        Some(more)
    }

    /// An array; `element` must consume each element.
    fn array(&mut self, mut element: impl FnMut(&mut Self) -> Option<()>) -> Option<()> {
        self.eat(b'[')?;
        self.enter()?;
        if self.peek()? == b']' {
            self.at += 1;
        } else {
            loop {
                element(self)?;
                if !self.separator(b']')? {
                    break;
                }
            }
        }
        self.depth -= 1;
        Some(())
    }

    /// Any value, checked for JSON's grammar and dropped.
    fn skip(&mut self) -> Option<()> {
        match self.peek()? {
            b'"' => self.raw_string().map(drop),
            b'{' => self.object(|s, _| s.skip()),
            b'[' => self.array(Self::skip),
            b't' => self.literal(b"true"),
            b'f' => self.literal(b"false"),
            b'n' => self.literal(b"null"),
            _ => self.number().map(drop),
        }
    }

    fn digits(&mut self) -> usize {
        let start = self.at;
        while self.bytes.get(self.at).is_some_and(u8::is_ascii_digit) {
            self.at += 1;
        }
        self.at - start
    }

    /// A number in JSON's grammar, and its kind.
    fn number(&mut self) -> Option<NumberKind> {
        let negative = self.bytes.get(self.at) == Some(&b'-');
        self.at += usize::from(negative);
        let first = *self.bytes.get(self.at)?;
        let integer_digits = self.digits();
        if integer_digits == 0 || (first == b'0' && integer_digits > 1) {
            return None;
        }
        let mut kind = if negative {
            NumberKind::Negative
        } else {
            NumberKind::Unsigned
        };
        if self.bytes.get(self.at) == Some(&b'.') {
            self.at += 1;
            if self.digits() == 0 {
                return None;
            }
            kind = NumberKind::Float;
        }
        if let Some(b'e' | b'E') = self.bytes.get(self.at) {
            self.at += 1;
            if let Some(b'+' | b'-') = self.bytes.get(self.at) {
                self.at += 1;
            }
            if self.digits() == 0 {
                return None;
            }
            kind = NumberKind::Float;
        }
        Some(kind)
    }

    /// `null` (`Some(None)`) or a non-negative integer that fits `T`. Anything else (a
    /// fraction, an exponent, a sign, out of range: serde refuses each for an unsigned
    /// field) is left to the full path.
    fn integer<T: TryFrom<u64>>(&mut self) -> Option<Option<T>> {
        if self.null()? {
            return Some(None);
        }
        let start = self.at;
        if self.number()? != NumberKind::Unsigned {
            return None;
        }
        let value: u64 = self.text[start..self.at].parse().ok()?;
        T::try_from(value).ok().map(Some)
    }

    /// `null` or an integer that fits `i64` (serde reads `-0` as a float and refuses it).
    fn signed(&mut self) -> Option<Option<i64>> {
        if self.null()? {
            return Some(None);
        }
        let start = self.at;
        if self.number()? == NumberKind::Float {
            return None;
        }
        let text = &self.text[start..self.at];
        if text == "-0" {
            return None;
        }
        let value: i64 = text.parse().ok()?;
        Some(Some(value))
    }

    fn boolean(&mut self) -> Option<Option<bool>> {
        match self.peek()? {
            b'n' => self.literal(b"null").map(|()| None),
            b't' => self.literal(b"true").map(|()| Some(true)),
            b'f' => self.literal(b"false").map(|()| Some(false)),
            _ => None,
        }
    }

    fn text(&mut self) -> Option<Option<Cow<'a, str>>> {
        if self.null()? {
            return Some(None);
        }
        self.string().map(Some)
    }

    fn time(&mut self) -> Option<Option<DateTime<Utc>>> {
        if self.null()? {
            return Some(None);
        }
        timestamp::parse(&self.string()?).ok().map(Some)
    }

    /// A wire enum: any string is a value (unknown text is its `Unknown` variant).
    fn wire<T>(&mut self, from_wire: fn(&str) -> T) -> Option<Option<T>> {
        if self.null()? {
            return Some(None);
        }
        self.string().map(|text| Some(from_wire(&text)))
    }

    /// `Option<IgnoredAny>`: whether a value other than `null` is there.
    fn present(&mut self) -> Option<Option<()>> {
        if self.null()? {
            return Some(None);
        }
        self.skip().map(Some)
    }

    /// An `Option` of an object read by `read`.
    fn optional<T>(&mut self, read: impl FnOnce(&mut Self) -> Option<T>) -> Option<Option<T>> {
        if self.null()? {
            return Some(None);
        }
        read(self).map(Some)
    }

    /// A list whose `null` reads as empty; `read` consumes one element.
    fn list(&mut self, mut read: impl FnMut(&mut Self) -> Option<()>) -> Option<()> {
        if !self.null()? {
            self.array(|s| read(s))?;
        }
        Some(())
    }

    /// A list of `read`'s values (`null`: empty).
    fn collect<T>(&mut self, read: fn(&mut Self) -> Option<T>) -> Option<Vec<T>> {
        let mut items = Vec::new();
        self.list(|s| {
            items.push(read(s)?);
            Some(())
        })?;
        Some(items)
    }

    /// Participant attributes as the owned model's `lenient_attributes` reads them:
    /// string values kept, `null` dropped (a later `null` removes an earlier value of the
    /// same name), any other value kept as its JSON text.
    fn attributes(&mut self) -> Option<BTreeMap<String, String>> {
        let mut map = BTreeMap::new();
        if self.null()? {
            return Some(map);
        }
        self.object(|s, key| {
            match s.peek()? {
                b'n' => {
                    s.literal(b"null")?;
                    map.remove(key);
                }
                b'"' => {
                    let value = s.string()?.into_owned();
                    map.insert(key.to_owned(), value);
                }
                _ => {
                    let start = s.at;
                    s.skip()?;
                    let value = serde_json::from_str::<serde_json::Value>(&s.text[start..s.at])
                        .ok()?
                        .to_string();
                    map.insert(key.to_owned(), value);
                }
            }
            Some(())
        })?;
        Some(map)
    }

    /// `{"id": …}` (a user, a queue, a message): the id.
    fn reference(&mut self) -> Option<Option<Cow<'a, str>>> {
        let mut id = None;
        self.object(|s, name| match name {
            "id" => once(&mut id, s.text()),
            _ => s.skip(),
        })?;
        Some(id.flatten())
    }

    fn wrapup(&mut self) -> Option<WrapupRecord> {
        let (mut code, mut name_, mut notes, mut duration, mut end) =
            (None, None, None, None, None);
        self.object(|s, name| match name {
            "code" => once(&mut code, s.text()),
            "name" => once(&mut name_, s.text()),
            "notes" => once(&mut notes, s.text()),
            "durationSeconds" => once(&mut duration, s.signed()),
            "endTime" => once(&mut end, s.time()),
            _ => s.skip(),
        })?;
        Some(WrapupRecord {
            end_time: end.flatten(),
            code: owned(code),
            name: owned(name_),
            notes: owned(notes),
            duration_seconds: duration.flatten(),
        })
    }

    /// `afterCallWork`: its state.
    fn after_call_work(&mut self) -> Option<Option<AfterCallWorkState>> {
        let mut state = None;
        self.object(|s, name| match name {
            "state" => once(&mut state, s.wire(AfterCallWorkState::from_wire)),
            _ => s.skip(),
        })?;
        Some(state.flatten())
    }

    fn attachment(&mut self) -> Option<Attachment> {
        let (mut id, mut url, mut media_type, mut length, mut name_) =
            (None, None, None, None, None);
        self.object(|s, name| match name {
            "id" => once(&mut id, s.text()),
            "url" => once(&mut url, s.text()),
            "mediaType" => once(&mut media_type, s.text()),
            "contentLengthBytes" => once(&mut length, s.integer::<u64>()),
            "name" => once(&mut name_, s.text()),
            _ => s.skip(),
        })?;
        Some(Attachment {
            url: required(url)?.into_owned(),
            id: owned(id),
            mime_type: owned(media_type),
            size_bytes: length.flatten(),
            name: owned(name_),
        })
    }

    fn sticker(&mut self) -> Option<Sticker> {
        let (mut id, mut url) = (None, None);
        self.object(|s, name| match name {
            "id" => once(&mut id, s.text()),
            "url" => once(&mut url, s.text()),
            _ => s.skip(),
        })?;
        Some(Sticker {
            id: owned(id),
            url: owned(url),
        })
    }

    /// One entry of a `messages` list, without the communication it belongs to (the
    /// caller adds it and the transcript URI).
    fn message(&mut self) -> Option<MessageSnapshot> {
        let (mut message_id_, mut message, mut time, mut status, mut segments) =
            (None, None, None, None, None);
        let (mut media, mut stickers) = (None, None);
        self.object(|s, name| match name {
            "messageId" => once(&mut message_id_, s.text()),
            "message" => once(&mut message, s.optional(Self::reference)),
            "messageTime" => once(&mut time, s.time()),
            "messageStatus" => once(&mut status, s.wire(MessageStatus::from_wire)),
            "messageSegmentCount" => once(&mut segments, s.integer::<u32>()),
            "media" => once(&mut media, s.collect(Self::attachment)),
            "stickers" => once(&mut stickers, s.collect(Self::sticker)),
            _ => s.skip(),
        })?;
        Some(MessageSnapshot {
            id: MessageId::from(message_id(message_id_, message)?.as_ref()),
            communication_id: None,
            status: status.flatten(),
            message_time: time.flatten(),
            segment_count: segments.flatten(),
            media: media.unwrap_or_default(),
            stickers: stickers.unwrap_or_default(),
            transcript_uri: None,
        })
    }

    /// One communication of `medium`; its messages go to `messages`, with its id and
    /// transcript URI.
    fn communication(
        &mut self,
        medium: Medium,
        messages: &mut Vec<MessageSnapshot>,
    ) -> Option<CommunicationSnapshot> {
        let (mut id, mut state, mut direction, mut disconnect_type) = (None, None, None, None);
        let (mut connected, mut disconnected, mut error_info, mut message_type) =
            (None, None, None, None);
        let (mut transcript, mut wrapup, mut acw) = (None, None, None);
        let first_message = messages.len();
        let mut listed = false;
        self.object(|s, name| match name {
            "id" => once(&mut id, s.text()),
            "state" => once(&mut state, s.wire(CommunicationState::from_wire)),
            "direction" => once(&mut direction, s.wire(Direction::from_wire)),
            "disconnectType" => once(&mut disconnect_type, s.wire(DisconnectType::from_wire)),
            "connectedTime" => once(&mut connected, s.time()),
            "disconnectedTime" => once(&mut disconnected, s.time()),
            "errorInfo" => once(&mut error_info, s.present()),
            "type" => once(&mut message_type, s.wire(MessageType::from_wire)),
            "messages" => {
                if std::mem::replace(&mut listed, true) {
                    return None;
                }
                s.list(|s| {
                    messages.push(s.message()?);
                    Some(())
                })
            }
            "messagesTranscriptUri" => once(&mut transcript, s.text()),
            "wrapup" => once(&mut wrapup, s.optional(Self::wrapup)),
            "afterCallWork" => once(&mut acw, s.optional(Self::after_call_work)),
            _ => s.skip(),
        })?;
        let id = CommunicationId::from(required(id)?.as_ref());
        let transcript_uri = owned(transcript);
        for message in &mut messages[first_message..] {
            message.communication_id = Some(id.clone());
            message.transcript_uri.clone_from(&transcript_uri);
        }
        Some(CommunicationSnapshot {
            id,
            medium,
            state: state.flatten(),
            direction: direction.flatten(),
            disconnect_type: disconnect_type.flatten(),
            error: error_info.flatten().is_some(),
            connected_time: connected.flatten(),
            disconnected_time: disconnected.flatten(),
            message_type: message_type.flatten(),
            transcript_uri,
            after_call_work: acw.flatten().flatten(),
            wrapup: wrapup.flatten(),
        })
    }

    /// A participant of the all-media shape. Its communications are taken medium by
    /// medium in `Medium`'s order (as the owned conversion takes the arrays), whatever
    /// the order of the arrays in the text; their messages likewise.
    fn participant(&mut self) -> Option<ParticipantSnapshot> {
        let (mut id, mut connected, mut end, mut user_id, mut name_, mut queue_id) =
            (None, None, None, None, None, None);
        let (mut purpose, mut wrapup_required, mut wrapup, mut attributes) =
            (None, None, None, None);
        // Per communication: its medium's rank, and where its messages end.
        let mut communications: Vec<(usize, CommunicationSnapshot, usize)> = Vec::new();
        let mut messages = Vec::new();
        let mut arrays_seen = [false; MEDIA.len()];
        self.object(|s, name| match name {
            "id" => once(&mut id, s.text()),
            "connectedTime" => once(&mut connected, s.time()),
            "endTime" => once(&mut end, s.time()),
            "userId" => once(&mut user_id, s.text()),
            "name" => once(&mut name_, s.text()),
            "queueId" => once(&mut queue_id, s.text()),
            "purpose" => once(&mut purpose, s.wire(Purpose::from_wire)),
            "wrapupRequired" => once(&mut wrapup_required, s.boolean()),
            "wrapup" => once(&mut wrapup, s.optional(Self::wrapup)),
            "attributes" => once(&mut attributes, s.attributes()),
            _ => match MEDIA.iter().position(|(array, _)| *array == name) {
                Some(rank) => {
                    if std::mem::replace(&mut arrays_seen[rank], true) {
                        return None;
                    }
                    let medium = MEDIA[rank].1;
                    s.list(|s| {
                        let communication = s.communication(medium, &mut messages)?;
                        communications.push((rank, communication, messages.len()));
                        Some(())
                    })
                }
                None => s.skip(),
            },
        })?;
        let (communications, messages) = in_medium_order(communications, messages);
        Some(ParticipantSnapshot {
            id: ParticipantId::from(required(id)?.as_ref()),
            purpose: purpose.flatten(),
            name: owned(name_),
            user_id: id_text(user_id),
            queue_id: id_text(queue_id),
            state: None,
            disconnect_type: None,
            error: false,
            connected_time: connected.flatten(),
            end_time: end.flatten(),
            wrapup_required: wrapup_required.flatten(),
            wrapup_skipped: None,
            wrapup: wrapup.flatten(),
            attributes: attributes.unwrap_or_default(),
            communications,
            messages,
        })
    }

    /// A participant of the per-participant shape (`.messages` and other media topics).
    fn message_participant(&mut self) -> Option<ParticipantSnapshot> {
        let (mut id, mut name_, mut connected, mut end, mut purpose, mut state) =
            (None, None, None, None, None, None);
        let (mut disconnect_type, mut wrapup_required, mut wrapup_skipped, mut wrapup) =
            (None, None, None, None);
        let (mut user, mut queue, mut error_info, mut attributes, mut messages) =
            (None, None, None, None, None);
        self.object(|s, name| match name {
            "id" => once(&mut id, s.text()),
            "name" => once(&mut name_, s.text()),
            "connectedTime" => once(&mut connected, s.time()),
            "endTime" => once(&mut end, s.time()),
            "purpose" => once(&mut purpose, s.wire(Purpose::from_wire)),
            "state" => once(&mut state, s.wire(CommunicationState::from_wire)),
            "disconnectType" => once(&mut disconnect_type, s.wire(DisconnectType::from_wire)),
            "wrapupRequired" => once(&mut wrapup_required, s.boolean()),
            "wrapupSkipped" => once(&mut wrapup_skipped, s.boolean()),
            "wrapup" => once(&mut wrapup, s.optional(Self::wrapup)),
            "user" => once(&mut user, s.optional(Self::reference)),
            "queue" => once(&mut queue, s.optional(Self::reference)),
            "errorInfo" => once(&mut error_info, s.present()),
            "attributes" => once(&mut attributes, s.attributes()),
            "messages" => once(&mut messages, s.collect(Self::message)),
            _ => s.skip(),
        })?;
        Some(ParticipantSnapshot {
            id: ParticipantId::from(required(id)?.as_ref()),
            purpose: purpose.flatten(),
            name: owned(name_),
            user_id: id_text(user.flatten()),
            queue_id: id_text(queue.flatten()),
            state: state.flatten(),
            disconnect_type: disconnect_type.flatten(),
            error: error_info.flatten().is_some(),
            connected_time: connected.flatten(),
            end_time: end.flatten(),
            wrapup_required: wrapup_required.flatten(),
            wrapup_skipped: wrapup_skipped.flatten(),
            wrapup: wrapup.flatten(),
            attributes: attributes.unwrap_or_default(),
            communications: Vec::new(),
            messages: messages.unwrap_or_default(),
        })
    }

    /// A snapshot body of `shape`.
    fn snapshot(&mut self, shape: BodyShape) -> Option<ConversationSnapshot> {
        let (mut id, mut start, mut end, mut participants) = (None, None, None, None);
        let all_media = shape == BodyShape::AllMedia;
        self.object(|s, name| match name {
            "id" => once(&mut id, s.text()),
            "startTime" if all_media => once(&mut start, s.time()),
            "endTime" if all_media => once(&mut end, s.time()),
            "participants" if all_media => once(&mut participants, s.collect(Self::participant)),
            "participants" => once(&mut participants, s.collect(Self::message_participant)),
            _ => s.skip(),
        })?;
        Some(ConversationSnapshot {
            conversation_id: ConversationId::from(required(id)?.as_ref()),
            start_time: start.flatten(),
            end_time: end.flatten(),
            participants: participants.unwrap_or_default(),
        })
    }
}

/// A participant's media arrays, in the order the owned conversion takes them.
const MEDIA: [(&str, Medium); 10] = [
    ("calls", Medium::Calls),
    ("callbacks", Medium::Callbacks),
    ("chats", Medium::Chats),
    ("cobrowsesessions", Medium::Cobrowsesessions),
    ("emails", Medium::Emails),
    ("messages", Medium::Messages),
    ("internalMessages", Medium::InternalMessages),
    ("screenshares", Medium::Screenshares),
    ("socialExpressions", Medium::SocialExpressions),
    ("videos", Medium::Videos),
];

/// The communications (each with its medium's rank and where its messages end in
/// `messages`) and their messages, reordered by medium; within a medium the text's order
/// stays.
fn in_medium_order(
    communications: Vec<(usize, CommunicationSnapshot, usize)>,
    messages: Vec<MessageSnapshot>,
) -> (Vec<CommunicationSnapshot>, Vec<MessageSnapshot>) {
    if communications.windows(2).all(|pair| pair[0].0 <= pair[1].0) {
        let communications = communications
            .into_iter()
            .map(|(_, communication, _)| communication)
            .collect();
        return (communications, messages);
    }
    let mut spans = Vec::with_capacity(communications.len());
    let mut start = 0;
    for (rank, communication, end) in communications {
        spans.push((rank, communication, start..end));
        start = end;
    }
    // Stable: the text's order within a medium stays.
    spans.sort_by_key(|(rank, _, _)| *rank);
    let mut slots: Vec<Option<MessageSnapshot>> = messages.into_iter().map(Some).collect();
    let mut ordered_messages = Vec::with_capacity(slots.len());
    let mut ordered = Vec::with_capacity(spans.len());
    for (_, communication, span) in spans {
        ordered_messages.extend(slots[span].iter_mut().filter_map(Option::take));
        ordered.push(communication);
    }
    (ordered, ordered_messages)
}
