//! The participant lifecycle Convoy exposes, and the one table that maps Genesys
//! communication states and disconnect types onto it.
//!
//! ```text
//! pending ─► joined ─► active ─► left
//!                 │         └──► failed
//!                 └──────────────► left | failed
//! ```
//! The order `Pending < Joined < Active < Left < Failed` is the order of progress: a
//! participant's lifecycle only moves up, and a snapshot that would move it down is stale.

use serde::{Deserialize, Serialize};

use crate::model::{CommunicationState, DisconnectType};

/// Where a participant is in its life within the conversation.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Lifecycle {
    /// Known to the conversation, no leg offered yet (no state, `none`, or a state Convoy
    /// does not know).
    Pending,
    /// Being offered or set up: alerting, offering, contacting, dialing, scheduled.
    Joined,
    /// Connected (parked and media-processing states count as still active).
    Active,
    /// Its legs ended normally.
    Left,
    /// Its legs ended in error: error or transport-failure disconnects, or an `errorInfo`
    /// on an ended leg (how Genesys reports a failed delivery).
    Failed,
}

impl Lifecycle {
    pub fn as_str(self) -> &'static str {
        match self {
            Lifecycle::Pending => "pending",
            Lifecycle::Joined => "joined",
            Lifecycle::Active => "active",
            Lifecycle::Left => "left",
            Lifecycle::Failed => "failed",
        }
    }

    /// Left or failed: nothing more will happen on this participant's legs.
    pub fn is_ended(self) -> bool {
        matches!(self, Lifecycle::Left | Lifecycle::Failed)
    }
}

/// THE mapping from Genesys communication states to the lifecycle. Every known state is
/// listed; an unknown state maps to `Pending` (no progress claimed on text we do not know).
pub const STATE_LIFECYCLE: &[(CommunicationState, Lifecycle)] = &[
    (CommunicationState::None, Lifecycle::Pending),
    (CommunicationState::Scheduled, Lifecycle::Joined),
    (CommunicationState::Contacting, Lifecycle::Joined),
    (CommunicationState::Dialing, Lifecycle::Joined),
    (CommunicationState::Offering, Lifecycle::Joined),
    (CommunicationState::Alerting, Lifecycle::Joined),
    (CommunicationState::Connected, Lifecycle::Active),
    (CommunicationState::Parked, Lifecycle::Active),
    (CommunicationState::Uploading, Lifecycle::Active),
    (CommunicationState::Converting, Lifecycle::Active),
    (CommunicationState::Transmitting, Lifecycle::Active),
    (CommunicationState::Disconnected, Lifecycle::Left),
    (CommunicationState::Terminated, Lifecycle::Left),
];

/// Disconnect types that turn an ended leg into a failure rather than a normal departure.
pub const FAILURE_DISCONNECT_TYPES: &[DisconnectType] = &[
    DisconnectType::Error,
    DisconnectType::TransportFailure,
    DisconnectType::Uncallable,
];

/// Progress order of communication states, used by the join: a state only moves up.
/// Within one lifecycle stage the order is fixed but arbitrary, so that a join of two
/// conflicting snapshots is still deterministic. Unknown states rank lowest.
pub fn state_rank(state: &CommunicationState) -> u8 {
    match state {
        CommunicationState::Unknown(_) => 0,
        CommunicationState::None => 1,
        CommunicationState::Scheduled => 2,
        CommunicationState::Contacting => 3,
        CommunicationState::Dialing => 4,
        CommunicationState::Offering => 5,
        CommunicationState::Alerting => 6,
        CommunicationState::Connected => 7,
        CommunicationState::Parked => 8,
        CommunicationState::Uploading => 9,
        CommunicationState::Converting => 10,
        CommunicationState::Transmitting => 11,
        CommunicationState::Disconnected => 12,
        CommunicationState::Terminated => 13,
    }
}

/// Lifecycle stage of one leg (or of a participant-level state), from the table.
pub fn leg_lifecycle(
    state: Option<&CommunicationState>,
    disconnect_type: Option<&DisconnectType>,
    error: bool,
) -> Lifecycle {
    let stage = state
        .and_then(|state| {
            STATE_LIFECYCLE
                .iter()
                .find(|(known, _)| known == state)
                .map(|(_, stage)| *stage)
        })
        .unwrap_or(Lifecycle::Pending);
    let failed =
        error || disconnect_type.is_some_and(|kind| FAILURE_DISCONNECT_TYPES.contains(kind));
    if stage == Lifecycle::Left && failed {
        Lifecycle::Failed
    } else {
        stage
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_known_state_is_in_the_table_exactly_once() {
        for state in CommunicationState::KNOWN {
            let rows = STATE_LIFECYCLE
                .iter()
                .filter(|(known, _)| known == state)
                .count();
            assert_eq!(rows, 1, "{state} must appear once in STATE_LIFECYCLE");
        }
    }

    #[test]
    fn ranks_follow_lifecycle_order() {
        for (a, stage_a) in STATE_LIFECYCLE {
            for (b, stage_b) in STATE_LIFECYCLE {
                if stage_a < stage_b {
                    assert!(state_rank(a) < state_rank(b), "{a} must rank below {b}");
                }
            }
        }
    }

    #[test]
    fn an_ended_leg_with_an_error_disconnect_failed() {
        let stage = leg_lifecycle(
            Some(&CommunicationState::Disconnected),
            Some(&DisconnectType::TransportFailure),
            false,
        );
        assert_eq!(stage, Lifecycle::Failed);
        let stage = leg_lifecycle(Some(&CommunicationState::Disconnected), None, true);
        assert_eq!(stage, Lifecycle::Failed);
        let stage = leg_lifecycle(
            Some(&CommunicationState::Terminated),
            Some(&DisconnectType::Peer),
            false,
        );
        assert_eq!(stage, Lifecycle::Left);
    }

    #[test]
    fn an_error_on_a_live_leg_is_not_yet_a_failure() {
        let stage = leg_lifecycle(Some(&CommunicationState::Connected), None, true);
        assert_eq!(stage, Lifecycle::Active);
    }

    #[test]
    fn unknown_states_claim_no_progress() {
        let state = CommunicationState::Unknown("hovering".to_owned());
        assert_eq!(leg_lifecycle(Some(&state), None, false), Lifecycle::Pending);
        assert_eq!(leg_lifecycle(None, None, false), Lifecycle::Pending);
    }
}
