//! awc adapters for Genesys Cloud: OAuth client credentials ([`oauth`]). Each maps awc's
//! non-`Send` errors into Convoy's own error types before they leave the adapter.

pub mod conversations;
pub mod notifications;
pub mod oauth;
pub mod rest;
