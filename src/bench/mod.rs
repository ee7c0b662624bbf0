//! The pure half of `convoy bench`: the corpus it measures on, the per-frame work `core`
//! times, and what `e2e` offers and how it searches. The clocks live in the shell
//! (`convoy_actors::bench`); the criterion benches in `benches/` time the same pieces.
//!
//! - [`corpus`]: realistic snapshot frames, generated from the emulated org with a seed or
//!   read from a capture (`convoy run --record` lines, or bare frames one per line);
//! - [`pipeline`]: everything Convoy does with a frame but I/O — parse and classify, join
//!   into the conversation, transitions, facts, SLA clocks, CRM records and summary;
//! - [`replay`]: a corpus replayed endlessly under fresh conversation ids (`e2e`'s load);
//! - [`search`]: the highest rate within the latency target (`e2e`).

pub mod corpus;
pub mod pipeline;
pub mod replay;
pub mod search;

pub use corpus::{generate, read_frames, Corpus, CorpusError, CorpusFrame};
pub use pipeline::{CorePipeline, PipelineTotals};
pub use replay::Replay;
pub use search::RateSearch;
