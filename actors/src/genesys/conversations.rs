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
    let raw = read_conversation_raw(rest, id).await?;
    let snapshot = parse_conversation_read(&raw.body)?;
    Ok(ConversationRead {
        snapshot,
        etag: raw.etag,
    })
}

/// A conversation's REST body as Genesys sent it, unparsed: the cluster's ingest publishes
/// these exact bytes as a `reread` so a worker parses them with [`parse_conversation_read`],
/// the same parser as a single process.
#[derive(Debug, Clone)]
pub struct RawConversationRead {
    pub body: bytes::Bytes,
    pub etag: Option<String>,
}

pub async fn read_conversation_raw(
    rest: &GenesysRest,
    id: &ConversationId,
) -> Result<RawConversationRead, RestError> {
    let id = id.text();
    let id = path_segment(&id, "conversation id", ROUTE)?;
    let response = rest
        .call(RestRequest::get(format!("/api/v2/conversations/{id}"), ROUTE).background())
        .await?;
    Ok(RawConversationRead {
        body: response.body,
        etag: response.etag,
    })
}

/// Parses a `GET /api/v2/conversations/{id}` body into a snapshot.
pub fn parse_conversation_read(body: &[u8]) -> Result<ConversationSnapshot, RestError> {
    let value: serde_json::Value =
        serde_json::from_slice(body).map_err(|error| RestError::Malformed {
            route: ROUTE,
            detail: error.to_string(),
        })?;
    read_conversation_body(value, "").map_err(|error| RestError::Malformed {
        route: ROUTE,
        detail: error.to_string(),
    })
}
