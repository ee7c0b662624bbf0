//! WebSocket continuation reassembly under a byte cap and a fragment-count cap.
//!
//! awc hands fragmented messages to the application as raw continuation items (actix-http
//! `ws::Item`: `FirstText`, `FirstBinary`, `Continue`, `Last`). Naive reassembly grows
//! without bound — even empty continuation frames grow the bookkeeping (actix-extras#651)
//! — and a codec bug once let a data frame in the middle of a fragmented message
//! (actix-web#4215). So this reassembler caps the total bytes *and* the number of
//! fragments, and refuses a new data frame while a message is open (anchors.md §3 #11).
//!
//! Owns the state machine only; never reads a socket. Control frames (Ping, Pong, Close)
//! may legally arrive between fragments; the shell answers them and never pushes them
//! here. After any error the partial message is dropped: framing is lost, the shell closes
//! the connection and reconnects.

use serde::Serialize;

/// What kind of data message (RFC 6455 opcode 1 or 2).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum DataKind {
    Text,
    Binary,
}

/// One data frame as the WebSocket client delivered it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum FramePart {
    /// A whole text message in one frame.
    Text(Vec<u8>),
    /// A whole binary message in one frame.
    Binary(Vec<u8>),
    /// The first fragment of a message (actix `Item::FirstText` / `Item::FirstBinary`).
    ContinueFirst { text: bool, bytes: Vec<u8> },
    /// A middle fragment (actix `Item::Continue`).
    Continue(Vec<u8>),
    /// The final fragment (actix `Item::Last`).
    ContinueLast(Vec<u8>),
}

/// A complete message.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Reassembled {
    pub kind: DataKind,
    pub bytes: Vec<u8>,
}

/// Why a frame was refused. Each one means the connection is no longer trustworthy.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ReassemblyError {
    #[error("message of at least {size} bytes exceeds the cap of {max_bytes} bytes")]
    TooLarge { max_bytes: usize, size: usize },
    #[error("message exceeds the cap of {max_fragments} fragments")]
    TooManyFragments { max_fragments: usize },
    #[error("continuation frame without a message in progress")]
    UnexpectedContinuation,
    #[error("new data frame while a fragmented message is still open")]
    InterleavedDataFrame,
}

impl ReassemblyError {
    /// Low-cardinality label for metrics.
    pub fn as_str(&self) -> &'static str {
        match self {
            ReassemblyError::TooLarge { .. } => "too_large",
            ReassemblyError::TooManyFragments { .. } => "too_many_fragments",
            ReassemblyError::UnexpectedContinuation => "unexpected_continuation",
            ReassemblyError::InterleavedDataFrame => "interleaved_data_frame",
        }
    }
}

#[derive(Debug, Clone, PartialEq, Eq)]
struct Partial {
    kind: DataKind,
    bytes: Vec<u8>,
    fragments: usize,
}

/// Reassembles one connection's data frames.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Reassembler {
    max_bytes: usize,
    max_fragments: usize,
    open: Option<Partial>,
}

impl Reassembler {
    /// `max_bytes`: largest message, whole or reassembled. `max_fragments`: most frames one
    /// message may span (a single-frame message is one fragment, so at least 1 applies).
    pub fn new(max_bytes: usize, max_fragments: usize) -> Self {
        Reassembler {
            max_bytes,
            max_fragments: max_fragments.max(1),
            open: None,
        }
    }

    /// Bytes held for the message in progress (never more than `max_bytes`).
    pub fn buffered_bytes(&self) -> usize {
        self.open.as_ref().map_or(0, |partial| partial.bytes.len())
    }

    /// A fragmented message is open.
    pub fn in_message(&self) -> bool {
        self.open.is_some()
    }

    /// Feeds one frame; returns the message it completes, if any.
    pub fn push(&mut self, part: FramePart) -> Result<Option<Reassembled>, ReassemblyError> {
        let result = self.step(part);
        if result.is_err() {
            self.open = None;
        }
        result
    }

    fn step(&mut self, part: FramePart) -> Result<Option<Reassembled>, ReassemblyError> {
        match part {
            FramePart::Text(bytes) => self.whole(DataKind::Text, bytes),
            FramePart::Binary(bytes) => self.whole(DataKind::Binary, bytes),
            FramePart::ContinueFirst { text, bytes } => {
                if self.open.is_some() {
                    return Err(ReassemblyError::InterleavedDataFrame);
                }
                self.check_size(bytes.len())?;
                // Below two fragments no fragmented message can ever complete; say so now
                // rather than after buffering.
                if self.max_fragments < 2 {
                    return Err(ReassemblyError::TooManyFragments {
                        max_fragments: self.max_fragments,
                    });
                }
                let kind = if text {
                    DataKind::Text
                } else {
                    DataKind::Binary
                };
                self.open = Some(Partial {
                    kind,
                    bytes,
                    fragments: 1,
                });
                Ok(None)
            }
            FramePart::Continue(bytes) => {
                self.append(&bytes)?;
                Ok(None)
            }
            FramePart::ContinueLast(bytes) => {
                self.append(&bytes)?;
                Ok(self.open.take().map(|partial| Reassembled {
                    kind: partial.kind,
                    bytes: partial.bytes,
                }))
            }
        }
    }

    fn whole(
        &mut self,
        kind: DataKind,
        bytes: Vec<u8>,
    ) -> Result<Option<Reassembled>, ReassemblyError> {
        if self.open.is_some() {
            return Err(ReassemblyError::InterleavedDataFrame);
        }
        self.check_size(bytes.len())?;
        Ok(Some(Reassembled { kind, bytes }))
    }

    /// Adds a continuation to the open message, refusing it *before* growing the buffer.
    fn append(&mut self, bytes: &[u8]) -> Result<(), ReassemblyError> {
        let max_fragments = self.max_fragments;
        let max_bytes = self.max_bytes;
        let partial = self
            .open
            .as_mut()
            .ok_or(ReassemblyError::UnexpectedContinuation)?;
        if partial.fragments >= max_fragments {
            return Err(ReassemblyError::TooManyFragments { max_fragments });
        }
        let size = partial.bytes.len().saturating_add(bytes.len());
        if size > max_bytes {
            return Err(ReassemblyError::TooLarge { max_bytes, size });
        }
        partial.bytes.extend_from_slice(bytes);
        partial.fragments += 1;
        Ok(())
    }

    fn check_size(&self, size: usize) -> Result<(), ReassemblyError> {
        if size > self.max_bytes {
            Err(ReassemblyError::TooLarge {
                max_bytes: self.max_bytes,
                size,
            })
        } else {
            Ok(())
        }
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used, clippy::expect_used)]
mod tests {
    use proptest::prelude::*;

    use super::*;

    fn text(bytes: &[u8]) -> Option<Reassembled> {
        Some(Reassembled {
            kind: DataKind::Text,
            bytes: bytes.to_vec(),
        })
    }

    /// The frames of `message` cut at `cuts` (taken modulo its length + 1, so repeated
    /// cuts make empty fragments). At least one cut means at least two fragments.
    fn fragments(message: &[u8], cuts: &[usize], is_text: bool) -> Vec<FramePart> {
        let mut inner: Vec<usize> = cuts.iter().map(|cut| cut % (message.len() + 1)).collect();
        inner.sort_unstable();
        let mut bounds = vec![0];
        bounds.extend(inner);
        bounds.push(message.len());
        let pieces: Vec<Vec<u8>> = bounds
            .windows(2)
            .map(|pair| message[pair[0]..pair[1]].to_vec())
            .collect();
        let last = pieces.len() - 1;
        pieces
            .into_iter()
            .enumerate()
            .map(|(i, bytes)| match i {
                0 => FramePart::ContinueFirst {
                    text: is_text,
                    bytes,
                },
                i if i == last => FramePart::ContinueLast(bytes),
                _ => FramePart::Continue(bytes),
            })
            .collect()
    }

    #[test]
    fn a_whole_frame_passes_straight_through() {
        let mut reassembler = Reassembler::new(16, 4);
        assert_eq!(
            reassembler.push(FramePart::Text(b"hi".to_vec())),
            Ok(text(b"hi"))
        );
        assert_eq!(
            reassembler.push(FramePart::Binary(vec![1, 2])),
            Ok(Some(Reassembled {
                kind: DataKind::Binary,
                bytes: vec![1, 2]
            }))
        );
    }

    #[test]
    fn fragments_are_joined_in_order_with_the_first_frames_kind() {
        let mut reassembler = Reassembler::new(16, 4);
        let parts = [
            FramePart::ContinueFirst {
                text: true,
                bytes: b"{\"a\"".to_vec(),
            },
            FramePart::Continue(b":".to_vec()),
            FramePart::ContinueLast(b"1}".to_vec()),
        ];
        let results: Vec<_> = parts
            .into_iter()
            .map(|part| reassembler.push(part).unwrap())
            .collect();
        assert_eq!(results, [None, None, text(b"{\"a\":1}")]);
        assert!(!reassembler.in_message());
    }

    #[test]
    fn a_continuation_without_a_first_frame_is_refused() {
        let mut reassembler = Reassembler::new(16, 4);
        assert_eq!(
            reassembler.push(FramePart::Continue(b"x".to_vec())),
            Err(ReassemblyError::UnexpectedContinuation)
        );
        assert_eq!(
            reassembler.push(FramePart::ContinueLast(b"x".to_vec())),
            Err(ReassemblyError::UnexpectedContinuation)
        );
    }

    #[test]
    fn a_data_frame_inside_a_fragmented_message_is_refused_and_the_message_dropped() {
        for intruder in [
            FramePart::Text(b"x".to_vec()),
            FramePart::Binary(b"x".to_vec()),
            FramePart::ContinueFirst {
                text: true,
                bytes: b"x".to_vec(),
            },
        ] {
            let mut reassembler = Reassembler::new(16, 4);
            reassembler
                .push(FramePart::ContinueFirst {
                    text: true,
                    bytes: b"ab".to_vec(),
                })
                .unwrap();
            assert_eq!(
                reassembler.push(intruder),
                Err(ReassemblyError::InterleavedDataFrame)
            );
            assert_eq!(reassembler.buffered_bytes(), 0);
            assert!(!reassembler.in_message());
        }
    }

    #[test]
    fn bytes_over_the_cap_are_refused_before_buffering() {
        let mut reassembler = Reassembler::new(4, 10);
        reassembler
            .push(FramePart::ContinueFirst {
                text: true,
                bytes: b"abc".to_vec(),
            })
            .unwrap();
        assert_eq!(
            reassembler.push(FramePart::Continue(b"de".to_vec())),
            Err(ReassemblyError::TooLarge {
                max_bytes: 4,
                size: 5
            })
        );
        assert_eq!(
            Reassembler::new(4, 10).push(FramePart::Text(b"abcde".to_vec())),
            Err(ReassemblyError::TooLarge {
                max_bytes: 4,
                size: 5
            })
        );
    }

    #[test]
    fn empty_continuations_count_against_the_fragment_cap() {
        let mut reassembler = Reassembler::new(1_024, 3);
        reassembler
            .push(FramePart::ContinueFirst {
                text: true,
                bytes: Vec::new(),
            })
            .unwrap();
        reassembler.push(FramePart::Continue(Vec::new())).unwrap();
        reassembler.push(FramePart::Continue(Vec::new())).unwrap();
        assert_eq!(
            reassembler.push(FramePart::Continue(Vec::new())),
            Err(ReassemblyError::TooManyFragments { max_fragments: 3 })
        );
    }

    #[test]
    fn the_reassembler_is_reusable_after_an_error() {
        let mut reassembler = Reassembler::new(4, 4);
        let _ = reassembler.push(FramePart::Continue(b"x".to_vec()));
        assert_eq!(
            reassembler.push(FramePart::Text(b"ok".to_vec())),
            Ok(text(b"ok"))
        );
    }

    proptest! {
        #[test]
        fn any_split_within_the_caps_reassembles_to_the_same_bytes(
            message in prop::collection::vec(any::<u8>(), 0..200),
            cuts in prop::collection::vec(0usize..200, 1..12),
            is_text in any::<bool>(),
        ) {
            let parts = fragments(&message, &cuts, is_text);
            let mut reassembler = Reassembler::new(message.len(), parts.len());
            let mut completed = Vec::new();
            for part in parts {
                if let Some(done) = reassembler.push(part).unwrap() {
                    completed.push(done);
                }
            }
            let kind = if is_text { DataKind::Text } else { DataKind::Binary };
            prop_assert_eq!(completed, vec![Reassembled { kind, bytes: message }]);
            prop_assert!(!reassembler.in_message());
        }

        #[test]
        fn over_the_caps_it_errors_and_never_buffers_past_the_byte_cap(
            message in prop::collection::vec(any::<u8>(), 1..200),
            cuts in prop::collection::vec(0usize..200, 1..12),
            byte_shortfall in 0usize..50,
            fragment_shortfall in 0usize..3,
        ) {
            let parts = fragments(&message, &cuts, true);
            // At least one cap is below what the message needs.
            let max_bytes = message.len().saturating_sub(byte_shortfall + 1);
            let max_fragments = parts.len().saturating_sub(fragment_shortfall);
            let mut reassembler = Reassembler::new(max_bytes, max_fragments);
            let mut error = None;
            for part in parts {
                match reassembler.push(part) {
                    Ok(Some(done)) => prop_assert!(false, "over-cap message completed: {:?}", done),
                    Ok(None) => prop_assert!(reassembler.buffered_bytes() <= max_bytes),
                    Err(refused) => {
                        error = Some(refused);
                        break;
                    }
                }
            }
            prop_assert!(
                matches!(
                    error,
                    Some(ReassemblyError::TooLarge { .. } | ReassemblyError::TooManyFragments { .. })
                ),
                "expected a cap error, got {:?}",
                error
            );
            prop_assert_eq!(reassembler.buffered_bytes(), 0);
        }
    }
}
