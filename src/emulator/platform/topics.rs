//! Which notification topics the emulated org accepts (API.md §3.5): the conversation topic
//! families Convoy uses, checked against the org's directory. Decides Permitted/Rejected for
//! one topic name; the subscription rules (limits, ignoreErrors) live in `platform`.

use std::collections::BTreeSet;

/// The media suffixes of `v2.users.{id}.conversations.{medium}` and the queue equivalent.
const MEDIA: &[&str] = &[
    "calls",
    "callbacks",
    "chats",
    "cobrowsesessions",
    "emails",
    "messages",
    "screenshares",
    "socialexpressions",
    "videos",
];

/// Event types of `v2.detail.events.conversation.{id}.<event>`.
const DETAIL_EVENTS: &[&str] = &[
    "acd.start",
    "acd.end",
    "customer.start",
    "customer.end",
    "user.start",
    "user.end",
    "acw",
    "wrapup",
    "attributes",
    "contact",
    "outbound",
    "flow.start",
    "flow.end",
    "voicemail.start",
    "voicemail.end",
];

/// The queue and user ids a subscription may name: the org's directory.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Directory {
    pub queues: BTreeSet<String>,
    pub users: BTreeSet<String>,
}

/// The verdict on one requested topic.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum TopicVerdict {
    Permitted,
    /// The name is not a topic this org offers (unknown family, malformed, or a topic
    /// delivered implicitly such as `channel.metadata` and `v2.system.*`). Without
    /// `ignoreErrors` the call fails with 400.
    Invalid(String),
    /// A well-formed topic naming a queue or user the org does not have: real Genesys
    /// answers such topics with a permission rejection, so without `ignoreErrors` the call
    /// fails with 403.
    Forbidden(String),
}

impl TopicVerdict {
    pub fn is_permitted(&self) -> bool {
        matches!(self, TopicVerdict::Permitted)
    }

    /// The `rejectionReason` text of a rejected topic.
    pub fn rejection_reason(&self) -> Option<&str> {
        match self {
            TopicVerdict::Permitted => None,
            TopicVerdict::Invalid(reason) | TopicVerdict::Forbidden(reason) => Some(reason),
        }
    }
}

/// An id segment: non-empty, no dots, nothing outside the characters Genesys ids use.
fn is_id(segment: &str) -> bool {
    !segment.is_empty()
        && segment
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || c == '-' || c == '_')
}

/// `conversations` or `conversations.<medium>` after an entity id.
fn is_conversation_suffix(rest: &str) -> bool {
    match rest.strip_prefix("conversations") {
        Some("") => true,
        Some(medium) => medium
            .strip_prefix('.')
            .is_some_and(|medium| MEDIA.contains(&medium)),
        None => false,
    }
}

/// Splits `<id>.<rest>` at the first dot.
fn split_id(text: &str) -> Option<(&str, &str)> {
    let (id, rest) = text.split_once('.')?;
    is_id(id).then_some((id, rest))
}

/// Classifies one topic name against the directory.
pub fn classify(topic: &str, directory: &Directory) -> TopicVerdict {
    if topic == "channel.metadata" || topic.starts_with("v2.system.") {
        return TopicVerdict::Invalid(format!(
            "Topic {topic} is delivered on every channel and cannot be subscribed"
        ));
    }
    if let Some(rest) = topic.strip_prefix("v2.users.") {
        if let Some((user, suffix)) = split_id(rest) {
            if is_conversation_suffix(suffix) {
                return if directory.users.contains(user) {
                    TopicVerdict::Permitted
                } else {
                    TopicVerdict::Forbidden(format!("User {user} not found or not permitted"))
                };
            }
        }
    }
    if let Some(rest) = topic.strip_prefix("v2.routing.queues.") {
        if let Some((queue, suffix)) = split_id(rest) {
            if is_conversation_suffix(suffix) {
                return if directory.queues.contains(queue) {
                    TopicVerdict::Permitted
                } else {
                    TopicVerdict::Forbidden(format!("Queue {queue} not found or not permitted"))
                };
            }
        }
    }
    if let Some(rest) = topic.strip_prefix("v2.conversations.") {
        if let Some((_, "transcription")) = split_id(rest) {
            return TopicVerdict::Permitted;
        }
    }
    if let Some(rest) = topic.strip_prefix("v2.detail.events.conversation.") {
        if let Some((_, event)) = split_id(rest) {
            if DETAIL_EVENTS.contains(&event) {
                return TopicVerdict::Permitted;
            }
        }
    }
    TopicVerdict::Invalid(format!("Topic {topic} is not a valid topic"))
}

#[cfg(test)]
#[allow(clippy::unwrap_used, clippy::expect_used)]
mod tests {
    use super::*;

    const QUEUE: &str = "ff1633b1-a1f1-4efb-abe7-1a0a9021dd32";
    const USER: &str = "c1969995-565b-4c59-881c-83a921a85da9";

    fn directory() -> Directory {
        Directory {
            queues: [QUEUE.to_owned()].into(),
            users: [USER.to_owned()].into(),
        }
    }

    #[test]
    fn conversation_topics_of_known_queues_and_users_are_permitted() {
        for topic in [
            format!("v2.routing.queues.{QUEUE}.conversations"),
            format!("v2.routing.queues.{QUEUE}.conversations.messages"),
            format!("v2.users.{USER}.conversations"),
            format!("v2.users.{USER}.conversations.calls"),
            "v2.conversations.bc806344-066c-4947-b770-9d25dee501a3.transcription".to_owned(),
            "v2.detail.events.conversation.bc806344.acd.start".to_owned(),
            "v2.detail.events.conversation.bc806344.acw".to_owned(),
        ] {
            assert_eq!(
                classify(&topic, &directory()),
                TopicVerdict::Permitted,
                "{topic}"
            );
        }
    }

    #[test]
    fn unknown_queue_or_user_ids_are_forbidden() {
        let verdict = classify("v2.routing.queues.nope.conversations", &directory());
        assert!(matches!(verdict, TopicVerdict::Forbidden(_)));
        assert!(verdict.rejection_reason().unwrap().contains("nope"));
        let verdict = classify("v2.users.nobody.conversations.messages", &directory());
        assert!(matches!(verdict, TopicVerdict::Forbidden(_)));
    }

    #[test]
    fn malformed_or_implicit_topics_are_invalid() {
        for topic in [
            "",
            "v2.users",
            "v2.users..conversations",
            &format!("v2.users.{USER}.conversations.faxes"),
            &format!("v2.users.{USER}.presence"),
            &format!("v2.routing.queues.{QUEUE}.conversationsmessages"),
            "v2.conversations.abc",
            "v2.detail.events.conversation.abc.nonsense",
            "channel.metadata",
            "v2.system.socket_closing",
            "v2.analytics.whatever",
        ] {
            assert!(
                matches!(classify(topic, &directory()), TopicVerdict::Invalid(_)),
                "{topic}"
            );
        }
    }
}
