//! QA analytics snapshots in the shell: the REST calls and files of one snapshot
//! ([`snapshot`]), `convoy snapshot` on demand ([`cli`]) and the [`AnalyticsActor`] that
//! takes them on `analytics.schedule`. What a snapshot contains and how it is read is
//! decided in the pure core, `convoy::analytics`.

pub mod actor;
pub mod cli;
pub mod snapshot;

pub use actor::{AnalyticsActor, AnalyticsSettings, AnalyticsStats, GetAnalyticsStats};
