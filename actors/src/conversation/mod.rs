//! One actor per conversation and the router that owns them.
//!
//! - [`router::ConversationRouter`] owns the map from conversation id to actor:
//!   get-or-spawn, replace a dead actor, evict only the incarnation that stopped, bounded
//!   tombstones against resurrection, a cap on live conversations with back-pressure, and
//!   the reconciliation sweep after stream gaps.
//! - [`actor::ConversationActor`] owns one conversation's joined state, participant
//!   lifecycle and version, and performs the effects: Convoy's attribute writes to Genesys
//!   (If-Match, 409/412 → re-read, re-join, recompute, retry, as one atomic step) and
//!   domain events for the downstream actors.

pub mod actor;
pub mod messages;
pub mod router;

pub use actor::{ConversationActor, ConversationDeps, DomainEvents};
pub use messages::{ConversationInput, Reconcile, RouteError, RouteEvent};
pub use router::{ConversationRouter, RouterSettings, ShutdownConversations};
