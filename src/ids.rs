//! Identifier newtypes, so a participant id can never be passed where a conversation id is
//! expected. Genesys ids are UUID strings, but message ids are 32-hex strings in captures
//! (API.md §2.1): all are treated as opaque text.

use serde::{Deserialize, Serialize};

macro_rules! id_type {
    ($(#[$meta:meta])* $name:ident) => {
        $(#[$meta])*
        #[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
        #[serde(transparent)]
        pub struct $name(pub String);

        impl $name {
            pub fn as_str(&self) -> &str {
                &self.0
            }
        }

        impl std::fmt::Display for $name {
            fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
                f.write_str(&self.0)
            }
        }

        impl From<&str> for $name {
            fn from(text: &str) -> Self {
                $name(text.to_owned())
            }
        }

        impl From<String> for $name {
            fn from(text: String) -> Self {
                $name(text)
            }
        }
    };
}

id_type!(
    /// A conversation id: the partition key of everything Convoy keeps.
    ConversationId
);
id_type!(
    /// A participant id, unique within its conversation.
    ParticipantId
);
id_type!(
    /// A communication (leg of one medium) id; detail events call it `sessionId`.
    CommunicationId
);
id_type!(
    /// A message id (`messageId` or `message.id`).
    MessageId
);
