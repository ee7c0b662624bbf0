//! The pure half of `convoy bench core`: the corpus it measures on and the per-frame work
//! it times. The timing loop (the clock) lives in the shell (`convoy_actors::bench::core`);
//! the criterion benches in `benches/` time the same pieces.
//!
//! - [`corpus`]: realistic snapshot frames, generated from the emulated org with a seed or
//!   read from a capture (`convoy run --record` lines, or bare frames one per line);
//! - [`pipeline`]: everything Convoy does with a frame but I/O — parse and classify, join
//!   into the conversation, transitions, facts, SLA clocks, CRM records and summary.

pub mod corpus;
pub mod pipeline;

pub use corpus::{generate, read_frames, Corpus, CorpusError, CorpusFrame};
pub use pipeline::{CorePipeline, PipelineTotals};
