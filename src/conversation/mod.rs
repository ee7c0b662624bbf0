//! A conversation as Convoy tracks it: what one snapshot says ([`snapshot`]), the
//! participant lifecycle ([`lifecycle`]), and the joined state with its transitions
//! ([`state`]). Pure: no I/O, no clock.

pub mod lifecycle;
pub mod snapshot;
pub mod state;

pub use lifecycle::Lifecycle;
pub use snapshot::*;
pub use state::*;

pub mod effects;
pub mod facts;
#[cfg(test)]
mod properties;
pub mod registry;
pub mod writeback;
