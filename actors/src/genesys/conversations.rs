//! `GET /api/v2/conversations/{id}`, read as a snapshot: the one REST read of a
//! conversation, shared by the router's reconciliation, the writer's conflict path and the
//! stream's re-read of events the router missed. Background priority: it restores or
//! checks what the stream already carries, so it never goes before the stream's own calls.

use convoy::conversation::ConversationSnapshot;
use convoy::ids::ConversationId;
use convoy::parse::read_conversation_body;

use super::rest::{path_segment, GenesysRest, RestError, RestRequest};

const ROUTE: &str = "GET /api/v2/conversations/{id}";

/// A conversation as REST shows it now.
#[derive(Debug, Clone)]
pub struct ConversationRead {
    pub snapshot: ConversationSnapshot,
    /// The conversation's ETag, when the server sends one (the emulator in strict mode).
    pub etag: Option<String>,
}

pub async fn read_conversation(
    rest: &GenesysRest,
    id: &ConversationId,
) -> Result<ConversationRead, RestError> {
    let id = id.text();
    let id = path_segment(&id, "conversation id", ROUTE)?;
    let response = rest
        .call(RestRequest::get(format!("/api/v2/conversations/{id}"), ROUTE).background())
        .await?;
    let value: serde_json::Value = response.json(ROUTE)?;
    let snapshot = read_conversation_body(value, "").map_err(|error| RestError::Malformed {
        route: ROUTE,
        detail: error.to_string(),
    })?;
    Ok(ConversationRead {
        snapshot,
        etag: response.etag,
    })
}
