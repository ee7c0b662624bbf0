//! The emulated Genesys Cloud org as plain state: no sockets, no clock (time is an
//! argument). The actix-web server in `convoy_actors::emulator` exposes it over the real
//! Genesys paths. Two halves:
//! - [`platform`]: OAuth clients and tokens, per-token rate limits, Notifications channels
//!   and subscriptions, fault-injection settings;
//! - [`org`]: queues and agents, conversations (message and voice), routing with synthetic
//!   agents, open messaging, analytics computed from what actually ran.
//!
//! They meet in [`TopicEvent`]: every change to a conversation yields the topic events
//! Genesys would publish, and the platform fans them out to the channels subscribed to
//! those topics.

pub mod org;
pub mod platform;

use serde::Serialize;

/// One notification Genesys would publish: a concrete topic name and its body.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct TopicEvent {
    pub topic: String,
    pub body: serde_json::Value,
}

/// Wraps a topic event in the WebSocket envelope (`topicName`, `version`, `eventBody`,
/// `metadata.CorrelationId`), as sent on a channel's socket.
pub fn envelope(event: &TopicEvent, correlation_id: &str) -> serde_json::Value {
    serde_json::json!({
        "topicName": event.topic,
        "version": "2",
        "eventBody": event.body,
        "metadata": { "CorrelationId": correlation_id },
    })
}
