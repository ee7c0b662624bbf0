//! Metrics and internal events. Metric names live in [`names`].

pub mod names;
