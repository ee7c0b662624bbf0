//! What `/conversations` shows: each conversation's joined state as Convoy believes it,
//! shared with the admin server without copies and serialised only on request.
//!
//! A conversation actor keeps its state in an `Arc` and publishes that same `Arc` here after
//! every change (copy-on-write: the next change builds a new state and swaps the pointer),
//! so a live conversation's state exists once in memory, not once in the actor and once
//! as a JSON tree. The router bounds the views of conversations that are no longer live.

use std::sync::Arc;

use convoy::conversation::writeback::ConversationWriteStatus;
use convoy::ids::ConversationId;
use dashmap::DashMap;
use serde::Serialize;
use serde_json::{json, Value};

use super::actor::SharedConversation;

/// Where a conversation stands in Convoy's memory.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Residence {
    /// An actor holds it.
    Live,
    /// Finished and retired; a late receipt can bring it back.
    Finished,
    /// Made room at the `conversations.max_live` cap, or idle past
    /// `conversations.idle_timeout`; its next event rebuilds it.
    Evicted,
    /// Its actor died; its next event rebuilds it from REST.
    Crashed,
}

/// One conversation's view.
#[derive(Debug, Clone)]
pub struct ConversationView {
    pub conversation: SharedConversation,
    pub residence: Residence,
}

impl ConversationView {
    pub fn to_json(&self, write_back: Option<&ConversationWriteStatus>) -> Value {
        let conversation = self.conversation.read();
        let mut view = convoy::inspect::describe_state(&conversation.state);
        if let Value::Object(map) = &mut view {
            map.insert("version".to_owned(), json!(conversation.version));
            map.insert("residence".to_owned(), json!(self.residence));
            if let Some(status) = write_back {
                map.insert("writeBack".to_owned(), json!(status));
            }
        }
        view
    }
}

/// Conversation actors insert, the router marks and bounds, the admin server reads. Never
/// hold an entry guard across an `.await` (dashmap deadlocks).
pub type ConversationViews = Arc<DashMap<ConversationId, ConversationView>>;

/// Write-back status of the conversations that owe writes (the writer keeps it current).
pub type WriteStatuses = Arc<DashMap<ConversationId, ConversationWriteStatus>>;

/// The JSON view of one conversation, with its write-back status if it owes writes.
pub fn describe(
    views: &ConversationViews,
    writes: &WriteStatuses,
    id: &ConversationId,
) -> Option<Value> {
    let view = views.get(id).map(|entry| entry.value().clone())?;
    let status = writes.get(id).map(|entry| entry.value().clone());
    Some(view.to_json(status.as_ref()))
}
