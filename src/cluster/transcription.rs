//! Which voice calls the ingest follows the transcription topic of. In one process the
//! conversation actor asks the stream while its call is live; in a cluster the ingest
//! holds the Genesys channels but no conversation actors, so it decides from the
//! snapshots it publishes — by these rules — and the workers get the transcription
//! frames through the stream like any other frame of the conversation.

use crate::conversation::lifecycle::leg_lifecycle;
use crate::conversation::snapshot::{ConversationSnapshot, Medium};

/// What one snapshot shows of a conversation's voice legs.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum CallLiveness {
    /// No voice leg in it (not a call, or a frame that does not show legs).
    Silent,
    /// A voice leg that has not ended.
    Live,
    /// Voice legs, every one ended (or the conversation ended).
    Ended,
}

/// The call state a snapshot shows. Only the legs themselves count: a participant's own
/// `endTime` or the conversation's ends them all.
pub fn call_liveness(snapshot: &ConversationSnapshot) -> CallLiveness {
    let mut calls = false;
    for participant in &snapshot.participants {
        for leg in &participant.communications {
            if leg.medium != Medium::Calls {
                continue;
            }
            calls = true;
            let ended = snapshot.end_time.is_some()
                || participant.end_time.is_some()
                || leg.disconnected_time.is_some()
                || leg_lifecycle(leg.state.as_ref(), leg.disconnect_type.as_ref(), leg.error)
                    .is_ended();
            if !ended {
                return CallLiveness::Live;
            }
        }
    }
    if calls {
        CallLiveness::Ended
    } else {
        CallLiveness::Silent
    }
}

/// Whether the stream should start or stop following a conversation's transcription.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum WatchChange {
    Watch,
    Unwatch,
}

/// One conversation's transcription following, as the ingest tracks it.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub enum CallFollow {
    #[default]
    NotFollowed,
    Following,
    /// Its call was seen ended: never followed again, since a snapshot older than the
    /// end (two channels, two topics, a re-read) may still arrive showing it live.
    Finished,
}

impl CallFollow {
    /// The next state after a snapshot showing `liveness`, and the change to ask of the
    /// stream, if any.
    pub fn observe(self, liveness: CallLiveness) -> (CallFollow, Option<WatchChange>) {
        match (self, liveness) {
            (CallFollow::NotFollowed, CallLiveness::Live) => {
                (CallFollow::Following, Some(WatchChange::Watch))
            }
            (CallFollow::Following, CallLiveness::Ended) => {
                (CallFollow::Finished, Some(WatchChange::Unwatch))
            }
            (_, CallLiveness::Ended) | (CallFollow::Finished, _) => (CallFollow::Finished, None),
            (state, _) => (state, None),
        }
    }

    /// What forgetting the conversation (no frame of it for a long time) asks of the
    /// stream.
    pub fn forget(self) -> Option<WatchChange> {
        (self == CallFollow::Following).then_some(WatchChange::Unwatch)
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;
    use crate::parse::{classify_bytes, Classified};

    fn fixture_snapshot(name: &str) -> ConversationSnapshot {
        let path = format!(
            "{}/tests/fixtures/genesys/{name}",
            env!("CARGO_MANIFEST_DIR")
        );
        let bytes = std::fs::read(&path).unwrap_or_else(|error| panic!("{path}: {error}"));
        match classify_bytes(&bytes) {
            Ok(Classified::Snapshot { snapshot, .. }) => snapshot,
            other => panic!("{name}: not a snapshot: {other:?}"),
        }
    }

    #[test]
    fn a_terminated_call_is_ended_and_a_message_is_silent() {
        let call = fixture_snapshot("ws_event_queue_conversations_call_terminated.json");
        assert_eq!(call_liveness(&call), CallLiveness::Ended);
        let message = fixture_snapshot("ws_event_queue_conversations_message_connected.json");
        assert_eq!(call_liveness(&message), CallLiveness::Silent);
    }

    #[test]
    fn one_leg_not_ended_makes_the_call_live_until_the_conversation_ends() {
        let mut call = fixture_snapshot("ws_event_queue_conversations_call_terminated.json");
        let agent = call
            .participants
            .iter_mut()
            .find(|participant| !participant.communications.is_empty())
            .unwrap();
        agent.end_time = None;
        let leg = &mut agent.communications[0];
        leg.state = Some(crate::model::CommunicationState::Connected);
        leg.disconnected_time = None;
        leg.disconnect_type = None;
        assert_eq!(call_liveness(&call), CallLiveness::Live);
        call.end_time = Some(chrono::Utc::now());
        assert_eq!(call_liveness(&call), CallLiveness::Ended);
    }

    #[test]
    fn following_starts_on_live_stops_on_ended_and_never_restarts() {
        use CallFollow::*;
        use CallLiveness::*;
        assert_eq!(NotFollowed.observe(Silent), (NotFollowed, None));
        assert_eq!(
            NotFollowed.observe(Live),
            (Following, Some(WatchChange::Watch))
        );
        assert_eq!(Following.observe(Live), (Following, None));
        assert_eq!(Following.observe(Silent), (Following, None));
        assert_eq!(
            Following.observe(Ended),
            (Finished, Some(WatchChange::Unwatch))
        );
        assert_eq!(NotFollowed.observe(Ended), (Finished, None));
        assert_eq!(Finished.observe(Live), (Finished, None), "a stale snapshot");
        assert_eq!(Following.forget(), Some(WatchChange::Unwatch));
        assert_eq!(NotFollowed.forget(), None);
        assert_eq!(Finished.forget(), None);
    }
}
