//! Convoy core
