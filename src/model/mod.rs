//! Wire types exactly as Genesys Cloud sends them: no behaviour, everything the API may omit
//! optional, unknown fields ignored, unknown enum values kept. `parse` turns them into the
//! domain types of `conversation`.

pub mod conversation;
pub mod enums;
pub mod error_body;
pub mod notification;
pub mod wire_enum;

pub use conversation::*;
pub use enums::*;
pub use error_body::*;
pub use notification::*;
