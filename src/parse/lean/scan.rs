//! A hand-written read of a snapshot frame into the lean shapes, without serde's
//! machinery: member names are matched as bytes, skipped values are only checked for
//! JSON's grammar, kept text is borrowed from the frame. Profiling `convoy bench core`
//! showed the derived readers costing twice a plain `IgnoredAny` pass over the same
//! bytes (field visitors, `Option` and `Vec` visitors, large structs moved through
//! `Result`s); this read costs little more than that pass.
//!
//! It never decides anything on its own: it answers `None` for whatever it does not take
//! on — any grammar error, escapes in a member name, a value of another type than the
//! shape wants, a number that is not a plain non-negative integer, a repeated member,
//! nesting deeper than `MAX_DEPTH` — and the frame is then read by serde as before, which
//! decides the answer and names the error. Where it answers, it gives exactly what the
//! derived readers give (tests hold the two together on fixtures, generated corpora and
//! mutated frames).

use std::borrow::Cow;
use std::collections::BTreeMap;
use std::ops::Range;

use chrono::{DateTime, Utc};

use super::{
    AfterCallWork, Attributes, Body, Communication, ConversationBody, Media,
    MessageConversationBody, MessageDetails, MessageParticipant, Participant, Ref, StickerRef,
    Text, Wrapup,
};
use crate::model::{
    AfterCallWorkState, CommunicationState, Direction, DisconnectType, MessageStatus, MessageType,
    Purpose,
};
use crate::parse::timestamp;
use crate::stream::duplicates::BodyShape;

/// Deeper frames are left to serde, whose own limit (128) then decides.
const MAX_DEPTH: u32 = 100;

/// A frame's envelope as the one-pass read needs it: its topic and its body, read with
/// the lean shape, with where the body's text is in the frame.
pub(in crate::parse) struct ScannedEnvelope<'a> {
    pub topic_name: Option<Text<'a>>,
    pub body: Option<(Body<'a>, Range<usize>)>,
}

/// Reads a whole frame (an envelope object, then only whitespace) with its `eventBody` in
/// `shape`. `None`: left to serde (see the module's documentation).
pub(in crate::parse) fn envelope(text: &str, shape: BodyShape) -> Option<ScannedEnvelope<'_>> {
    let mut scanner = Scanner::new(text);
    let (mut topic_name, mut body, mut result) = (None, None, None);
    scanner.object(|s, name| match name {
        "topicName" => once(&mut topic_name, s.text()),
        "eventBody" => {
            let start = s.value_start()?;
            let read = match shape {
                BodyShape::AllMedia => Body::AllMedia(s.conversation_body()?),
                BodyShape::PerParticipant => Body::PerParticipant(s.message_conversation_body()?),
            };
            once(&mut body, Some((read, start..s.at)))
        }
        "result" => once(&mut result, s.skip()),
        _ => s.skip(),
    })?;
    scanner.space();
    (scanner.at == scanner.bytes.len()).then(|| ScannedEnvelope {
        topic_name: topic_name.flatten(),
        body,
    })
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
    fn string(&mut self) -> Option<Cow<'a, str>> {
        let (content, escaped) = self.raw_string()?;
        if escaped {
            let quoted = &self.text[content.start - 1..content.end + 1];
            serde_json::from_str::<String>(quoted).ok().map(Cow::Owned)
        } else {
            Some(Cow::Borrowed(&self.text[content]))
        }
    }

    /// A member name without escapes (serde would match an escaped one to a field: left
    /// to serde).
    fn name(&mut self) -> Option<&'a str> {
        let (content, escaped) = self.raw_string()?;
        (!escaped).then(|| &self.text[content])
    }

    fn enter(&mut self) -> Option<()> {
        self.depth += 1;
        (self.depth <= MAX_DEPTH).then_some(())
    }

    /// An object; `member` is given each name and must consume its value.
    fn object(&mut self, mut member: impl FnMut(&mut Self, &'a str) -> Option<()>) -> Option<()> {
        self.eat(b'{')?;
        self.enter()?;
        if self.peek()? == b'}' {
            self.at += 1;
        } else {
            loop {
                if self.peek()? != b'"' {
                    return None;
                }
                let name = self.name()?;
                self.eat(b':')?;
                member(self, name)?;
                match self.peek()? {
                    b',' => self.at += 1,
                    b'}' => {
                        self.at += 1;
                        break;
                    }
                    _ => return None,
                }
            }
        }
        self.depth -= 1;
        Some(())
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
                match self.peek()? {
                    b',' => self.at += 1,
                    b']' => {
                        self.at += 1;
                        break;
                    }
                    _ => return None,
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

    /// A number in JSON's grammar; `Some(true)` if it is a plain non-negative integer.
    fn number(&mut self) -> Option<bool> {
        let negative = self.bytes.get(self.at) == Some(&b'-');
        self.at += usize::from(negative);
        let first = *self.bytes.get(self.at)?;
        let integer_digits = self.digits();
        if integer_digits == 0 || (first == b'0' && integer_digits > 1) {
            return None;
        }
        let mut plain = !negative;
        if self.bytes.get(self.at) == Some(&b'.') {
            self.at += 1;
            if self.digits() == 0 {
                return None;
            }
            plain = false;
        }
        if let Some(b'e' | b'E') = self.bytes.get(self.at) {
            self.at += 1;
            if let Some(b'+' | b'-') = self.bytes.get(self.at) {
                self.at += 1;
            }
            if self.digits() == 0 {
                return None;
            }
            plain = false;
        }
        Some(plain)
    }

    /// `null` (`Some(None)`) or a non-negative integer that fits `T`. Anything else (a
    /// fraction, an exponent, a sign, out of range: serde refuses each as an integer, or
    /// reads `-0` as a float) is left to serde.
    fn integer<T: TryFrom<u64>>(&mut self) -> Option<Option<T>> {
        if self.null()? {
            return Some(None);
        }
        let start = self.at;
        if !self.number()? {
            return None;
        }
        let value: u64 = self.text[start..self.at].parse().ok()?;
        T::try_from(value).ok().map(Some)
    }

    fn boolean(&mut self) -> Option<Option<bool>> {
        match self.peek()? {
            b'n' => self.literal(b"null").map(|()| None),
            b't' => self.literal(b"true").map(|()| Some(true)),
            b'f' => self.literal(b"false").map(|()| Some(false)),
            _ => None,
        }
    }

    fn text(&mut self) -> Option<Option<Text<'a>>> {
        if self.null()? {
            return Some(None);
        }
        self.string().map(|text| Some(Text(text)))
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
    fn optional<T>(&mut self, read: fn(&mut Self) -> Option<T>) -> Option<Option<T>> {
        if self.null()? {
            return Some(None);
        }
        read(self).map(Some)
    }

    /// A list whose `null` reads as empty.
    fn list<T>(&mut self, read: fn(&mut Self) -> Option<T>) -> Option<Vec<T>> {
        let mut items = Vec::new();
        if !self.null()? {
            self.array(|s| {
                items.push(read(s)?);
                Some(())
            })?;
        }
        Some(items)
    }

    /// Participant attributes as `lean::Attributes` reads them.
    fn attributes(&mut self) -> Option<Attributes> {
        let mut map = BTreeMap::new();
        if self.null()? {
            return Some(Attributes(map));
        }
        self.object(|s, key| {
            // Attribute names are data: `name()` took this one whole (escapes are left to
            // serde).
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
        Some(Attributes(map))
    }

    fn reference(&mut self) -> Option<Ref<'a>> {
        let mut id = None;
        self.object(|s, name| match name {
            "id" => once(&mut id, s.text()),
            _ => s.skip(),
        })?;
        Some(Ref { id: id.flatten() })
    }

    fn wrapup(&mut self) -> Option<Wrapup<'a>> {
        let (mut code, mut name_, mut notes, mut duration, mut end) =
            (None, None, None, None, None);
        self.object(|s, name| match name {
            "code" => once(&mut code, s.text()),
            "name" => once(&mut name_, s.text()),
            "notes" => once(&mut notes, s.text()),
            "durationSeconds" => once(&mut duration, s.integer::<i64>()),
            "endTime" => once(&mut end, s.time()),
            _ => s.skip(),
        })?;
        Some(Wrapup {
            code: code.flatten(),
            name: name_.flatten(),
            notes: notes.flatten(),
            duration_seconds: duration.flatten(),
            end_time: end.flatten(),
        })
    }

    fn after_call_work(&mut self) -> Option<AfterCallWork> {
        let mut state = None;
        self.object(|s, name| match name {
            "state" => once(&mut state, s.wire(AfterCallWorkState::from_wire)),
            _ => s.skip(),
        })?;
        Some(AfterCallWork {
            state: state.flatten(),
        })
    }

    fn media(&mut self) -> Option<Media<'a>> {
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
        Some(Media {
            id: id.flatten(),
            url: url.flatten(),
            media_type: media_type.flatten(),
            content_length_bytes: length.flatten(),
            name: name_.flatten(),
        })
    }

    fn sticker(&mut self) -> Option<StickerRef<'a>> {
        let (mut id, mut url) = (None, None);
        self.object(|s, name| match name {
            "id" => once(&mut id, s.text()),
            "url" => once(&mut url, s.text()),
            _ => s.skip(),
        })?;
        Some(StickerRef {
            id: id.flatten(),
            url: url.flatten(),
        })
    }

    fn message_details(&mut self) -> Option<MessageDetails<'a>> {
        let (mut message_id, mut message, mut time, mut status, mut segments) =
            (None, None, None, None, None);
        let (mut media, mut stickers) = (None, None);
        self.object(|s, name| match name {
            "messageId" => once(&mut message_id, s.text()),
            "message" => once(&mut message, s.optional(Self::reference)),
            "messageTime" => once(&mut time, s.time()),
            "messageStatus" => once(&mut status, s.wire(MessageStatus::from_wire)),
            "messageSegmentCount" => once(&mut segments, s.integer::<u32>()),
            "media" => once(&mut media, s.list(Self::media)),
            "stickers" => once(&mut stickers, s.list(Self::sticker)),
            _ => s.skip(),
        })?;
        Some(MessageDetails {
            message_id: message_id.flatten(),
            message: message.flatten(),
            message_time: time.flatten(),
            message_status: status.flatten(),
            message_segment_count: segments.flatten(),
            media: media.unwrap_or_default(),
            stickers: stickers.unwrap_or_default(),
        })
    }

    fn communication(&mut self) -> Option<Communication<'a>> {
        let (mut id, mut state, mut direction, mut disconnect_type) = (None, None, None, None);
        let (mut connected, mut disconnected, mut error_info, mut message_type) =
            (None, None, None, None);
        let (mut messages, mut transcript, mut wrapup, mut acw) = (None, None, None, None);
        self.object(|s, name| match name {
            "id" => once(&mut id, s.text()),
            "state" => once(&mut state, s.wire(CommunicationState::from_wire)),
            "direction" => once(&mut direction, s.wire(Direction::from_wire)),
            "disconnectType" => once(&mut disconnect_type, s.wire(DisconnectType::from_wire)),
            "connectedTime" => once(&mut connected, s.time()),
            "disconnectedTime" => once(&mut disconnected, s.time()),
            "errorInfo" => once(&mut error_info, s.present()),
            "type" => once(&mut message_type, s.wire(MessageType::from_wire)),
            "messages" => once(&mut messages, s.list(Self::message_details)),
            "messagesTranscriptUri" => once(&mut transcript, s.text()),
            "wrapup" => once(&mut wrapup, s.optional(Self::wrapup)),
            "afterCallWork" => once(&mut acw, s.optional(Self::after_call_work)),
            _ => s.skip(),
        })?;
        Some(Communication {
            id: id.flatten(),
            state: state.flatten(),
            direction: direction.flatten(),
            disconnect_type: disconnect_type.flatten(),
            connected_time: connected.flatten(),
            disconnected_time: disconnected.flatten(),
            error_info: error_info.flatten().map(|()| serde::de::IgnoredAny),
            message_type: message_type.flatten(),
            messages: messages.unwrap_or_default(),
            messages_transcript_uri: transcript.flatten(),
            wrapup: wrapup.flatten(),
            after_call_work: acw.flatten(),
        })
    }

    fn participant(&mut self) -> Option<Participant<'a>> {
        let (mut id, mut connected, mut end, mut user_id, mut name_, mut queue_id) =
            (None, None, None, None, None, None);
        let (mut purpose, mut wrapup_required, mut wrapup, mut attributes) =
            (None, None, None, None);
        // The media arrays, in the order `lean::participant_snapshot` takes them.
        let mut media: [Option<Vec<Communication<'a>>>; 10] = Default::default();
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
            "calls" => once(&mut media[0], s.list(Self::communication)),
            "callbacks" => once(&mut media[1], s.list(Self::communication)),
            "chats" => once(&mut media[2], s.list(Self::communication)),
            "cobrowsesessions" => once(&mut media[3], s.list(Self::communication)),
            "emails" => once(&mut media[4], s.list(Self::communication)),
            "messages" => once(&mut media[5], s.list(Self::communication)),
            "internalMessages" => once(&mut media[6], s.list(Self::communication)),
            "screenshares" => once(&mut media[7], s.list(Self::communication)),
            "socialExpressions" => once(&mut media[8], s.list(Self::communication)),
            "videos" => once(&mut media[9], s.list(Self::communication)),
            _ => s.skip(),
        })?;
        let [calls, callbacks, chats, cobrowsesessions, emails, messages, internal_messages, screenshares, social_expressions, videos] =
            media.map(Option::unwrap_or_default);
        Some(Participant {
            id: id.flatten(),
            connected_time: connected.flatten(),
            end_time: end.flatten(),
            user_id: user_id.flatten(),
            name: name_.flatten(),
            queue_id: queue_id.flatten(),
            purpose: purpose.flatten(),
            wrapup_required: wrapup_required.flatten(),
            wrapup: wrapup.flatten(),
            attributes: attributes.unwrap_or_default(),
            calls,
            callbacks,
            chats,
            cobrowsesessions,
            emails,
            messages,
            internal_messages,
            screenshares,
            social_expressions,
            videos,
        })
    }

    fn conversation_body(&mut self) -> Option<ConversationBody<'a>> {
        let (mut id, mut start, mut end, mut participants) = (None, None, None, None);
        self.object(|s, name| match name {
            "id" => once(&mut id, s.text()),
            "startTime" => once(&mut start, s.time()),
            "endTime" => once(&mut end, s.time()),
            "participants" => once(&mut participants, s.list(Self::participant)),
            _ => s.skip(),
        })?;
        Some(ConversationBody {
            id: id.flatten(),
            start_time: start.flatten(),
            end_time: end.flatten(),
            participants: participants.unwrap_or_default(),
        })
    }

    fn message_participant(&mut self) -> Option<MessageParticipant<'a>> {
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
            "messages" => once(&mut messages, s.list(Self::message_details)),
            _ => s.skip(),
        })?;
        Some(MessageParticipant {
            id: id.flatten(),
            name: name_.flatten(),
            connected_time: connected.flatten(),
            end_time: end.flatten(),
            purpose: purpose.flatten(),
            state: state.flatten(),
            disconnect_type: disconnect_type.flatten(),
            wrapup_required: wrapup_required.flatten(),
            wrapup_skipped: wrapup_skipped.flatten(),
            wrapup: wrapup.flatten(),
            user: user.flatten(),
            queue: queue.flatten(),
            error_info: error_info.flatten().map(|()| serde::de::IgnoredAny),
            attributes: attributes.unwrap_or_default(),
            messages: messages.unwrap_or_default(),
        })
    }

    fn message_conversation_body(&mut self) -> Option<MessageConversationBody<'a>> {
        let (mut id, mut participants) = (None, None);
        self.object(|s, name| match name {
            "id" => once(&mut id, s.text()),
            "participants" => once(&mut participants, s.list(Self::message_participant)),
            _ => s.skip(),
        })?;
        Some(MessageConversationBody {
            id: id.flatten(),
            participants: participants.unwrap_or_default(),
        })
    }
}
