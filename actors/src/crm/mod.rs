//! Convoy's side of the CRM contract (`convoy::crm`): the HTTP client. The decisions —
//! batching, adaptive concurrency, what an answer means — live in the core; this folder
//! does the I/O.

pub mod client;
