//! The exact bytes the emulated platform answers with, as pure builders: API `ErrorBody`s
//! (API.md §2.2), OAuth errors (§1.2) and the non-event WebSocket frames (§3.3). Kept in one
//! place so the shapes match the captured payloads and the shell never improvises JSON.

use serde_json::{json, Value};

use crate::emulator::{envelope, TopicEvent};
use crate::model::OAuthError;

/// A full `ErrorBody` as the API sends it (`messageParams`, `details` and `errors` present
/// even when empty, as in the captured payloads).
pub fn error_body(status: u16, code: &str, message: &str, context_id: &str) -> Value {
    json!({
        "message": message,
        "code": code,
        "status": status,
        "messageParams": {},
        "contextId": context_id,
        "details": [],
        "errors": [],
    })
}

/// 401 without an `Authorization: Bearer` header.
pub fn authentication_required(context_id: &str) -> Value {
    error_body(
        401,
        "authentication.required",
        "No authentication bearer token specified in authorization header.",
        context_id,
    )
}

/// 401 for an unknown, expired or revoked token: the short shape of the live capture.
pub fn bad_credentials(context_id: &str) -> Value {
    json!({
        "message": "Invalid login credentials.",
        "code": "bad.credentials",
        "status": 401,
        "contextId": context_id,
    })
}

/// 429 with the wait in the message and in `messageParams.seconds`.
pub fn too_many_requests(retry_after_secs: u64, context_id: &str) -> Value {
    let mut body = error_body(
        429,
        "too.many.requests.retry.after",
        &format!(
            "Rate limit exceeded the maximum. Retry the request in [{retry_after_secs}] seconds"
        ),
        context_id,
    );
    body["messageParams"] = json!({ "seconds": retry_after_secs.to_string() });
    body
}

/// 404 `not.found`.
pub fn not_found(context_id: &str) -> Value {
    error_body(
        404,
        "not.found",
        "The requested resource was not found.",
        context_id,
    )
}

/// 500 `internal.server.error`.
pub fn internal_server_error(context_id: &str) -> Value {
    error_body(
        500,
        "internal.server.error",
        "The server encountered an unexpected condition which prevented it from fulfilling the request.",
        context_id,
    )
}

/// 503 `service.unavailable`.
pub fn service_unavailable(context_id: &str) -> Value {
    error_body(
        503,
        "service.unavailable",
        "Service Unavailable - The server is currently unavailable (because it is overloaded or down for maintenance).",
        context_id,
    )
}

/// 400 `bad.request` with a specific message.
pub fn bad_request(message: &str, context_id: &str) -> Value {
    error_body(400, "bad.request", message, context_id)
}

/// The OAuth endpoint's three-field error.
pub fn oauth_error(error: &str, description: &str) -> OAuthError {
    OAuthError {
        error: error.to_owned(),
        description: Some(description.to_owned()),
        error_description: Some(description.to_owned()),
    }
}

/// `{"topicName":"channel.metadata","eventBody":{"message":"WebSocket Heartbeat"}}`.
pub fn heartbeat_frame() -> String {
    json!({"topicName": "channel.metadata", "eventBody": {"message": "WebSocket Heartbeat"}})
        .to_string()
}

/// The answer to the client's `{"message":"ping"}`.
pub fn pong_frame() -> String {
    json!({"topicName": "channel.metadata", "eventBody": {"message": "pong"}}).to_string()
}

/// `v2.system.socket_closing`: the service is about to close the socket; reconnect.
pub fn socket_closing_frame(correlation_id: &str) -> String {
    let event = TopicEvent {
        topic: "v2.system.socket_closing".to_owned(),
        body: json!({"message": "Socket is closing for maintenance; reconnect"}),
    };
    envelope(&event, correlation_id).to_string()
}

/// A `v2.system.<type>` frame with a `SystemMessageSystemMessage` body, sent on a channel's
/// socket just before the channel is taken away from it.
pub fn system_frame(
    system_topic_type: &str,
    reason: &str,
    message: &str,
    channel_id: &str,
    oauth_client_id: &str,
    correlation_id: &str,
) -> String {
    let event = TopicEvent {
        topic: format!("v2.system.{system_topic_type}"),
        body: json!({
            "channelId": channel_id,
            "systemTopicType": system_topic_type,
            "reason": reason,
            "message": message,
            "correlationId": correlation_id,
            "oauthClientId": oauth_client_id,
        }),
    };
    envelope(&event, correlation_id).to_string()
}

/// The WebSocket-side reply when the channel no longer exists.
pub fn channel_gone_frame() -> String {
    json!({"result": "404", "message": "Channel not found or expired"}).to_string()
}

/// The WebSocket-side reply to a successful `subscribe`/`unsubscribe`.
pub fn ws_ack_frame(status: &str, topics: &[String], correlation_id: Option<&str>) -> String {
    let mut frame = json!({"result": "200", "status": status, "topics": topics});
    if let Some(correlation_id) = correlation_id {
        frame["correlationId"] = json!(correlation_id);
    }
    frame.to_string()
}

/// The WebSocket-side reply to a refused `subscribe` or an unreadable command.
pub fn ws_failure_frame(message: &str, correlation_id: Option<&str>) -> String {
    let mut frame = json!({"result": "400", "status": "failure", "message": message});
    if let Some(correlation_id) = correlation_id {
        frame["correlationId"] = json!(correlation_id);
    }
    frame.to_string()
}

#[cfg(test)]
#[allow(clippy::unwrap_used, clippy::expect_used)]
mod tests {
    use super::*;

    fn payload(name: &str) -> Value {
        let path = format!(
            "{}/tests/fixtures/genesys/{name}",
            env!("CARGO_MANIFEST_DIR")
        );
        serde_json::from_str(&std::fs::read_to_string(path).unwrap()).unwrap()
    }

    /// The payload with its (invented) correlation id replaced by ours.
    fn with_context(mut value: Value, field: &str, context_id: &str) -> Value {
        value[field] = json!(context_id);
        value
    }

    #[test]
    fn error_bodies_match_the_captured_shapes() {
        let id = "ctx-1";
        assert_eq!(
            authentication_required(id),
            with_context(
                payload("api_error_401_authentication_required.json"),
                "contextId",
                id
            )
        );
        assert_eq!(
            bad_credentials(id),
            with_context(
                payload("api_error_401_bad_credentials.json"),
                "contextId",
                id
            )
        );
        assert_eq!(
            too_many_requests(23, id),
            with_context(
                payload("api_error_429_too_many_requests.json"),
                "contextId",
                id
            )
        );
        assert_eq!(
            not_found(id),
            with_context(payload("api_error_404_not_found.json"), "contextId", id)
        );
    }

    #[test]
    fn oauth_errors_match_the_captured_shapes() {
        let unknown =
            serde_json::to_value(oauth_error("invalid_client", "client not found")).unwrap();
        assert_eq!(unknown, payload("oauth_error_400_client_not_found.json"));
        let wrong =
            serde_json::to_value(oauth_error("invalid_client", "authentication failed")).unwrap();
        assert_eq!(wrong, payload("oauth_error_401_authentication_failed.json"));
    }

    #[test]
    fn channel_frames_match_the_captured_shapes() {
        let parse = |text: String| serde_json::from_str::<Value>(&text).unwrap();
        assert_eq!(parse(heartbeat_frame()), payload("ws_heartbeat.json"));
        assert_eq!(parse(pong_frame()), payload("ws_pong.json"));
        assert_eq!(
            parse(channel_gone_frame()),
            payload("ws_channel_gone_404.json")
        );
        let closing = parse(socket_closing_frame("604f3ede-5453-48d0-9dee-1e5cca1cf11c"));
        assert_eq!(closing, payload("ws_socket_closing.json"));
        let ack = parse(ws_ack_frame(
            "subscribed",
            &[
                "v2.routing.queues.ff1633b1-a1f1-4efb-abe7-1a0a9021dd32.conversations".to_owned(),
                "v2.routing.queues.ff1633b1-a1f1-4efb-abe7-1a0a9021dd32.conversations.messages"
                    .to_owned(),
            ],
            Some("q8F3kLx0aZ2m9PtR"),
        ));
        assert_eq!(ack, payload("ws_subscribe_ack.json"));
    }

    #[test]
    fn the_no_longer_subscribed_frame_carries_the_system_message_fields() {
        let frame: Value = serde_json::from_str(&system_frame(
            "no_longer_subscribed",
            "another_channel_subscribed",
            "channel superseded",
            "streaming-0-7a4tmty0t5qvt7wt3uyi01e90p",
            "f678bb6e-060c-4f39-9c5b-d68c290fb2d6",
            "3185aeda-0536-440b-a9b1-f65dcb322ceb",
        ))
        .unwrap();
        let mut expected = payload("ws_system_no_longer_subscribed.json");
        // The emulated org has no organization id to report.
        expected["eventBody"]
            .as_object_mut()
            .unwrap()
            .remove("organizationId");
        assert_eq!(frame, expected);
    }
}
