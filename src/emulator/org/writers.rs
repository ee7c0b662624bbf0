//! Who wrote a conversation's participant attributes lately, so that a stale `If-Match`
//! can be told apart: made stale by the same writer (its own earlier write it did not
//! chain) or by another writer — two writers of one conversation at once.

use std::collections::{BTreeSet, HashMap, VecDeque};

/// The last attribute writes kept per conversation: enough to cover the versions any
/// writer can still hold, small enough that a long rehearsal stays bounded.
const KEPT_PER_CONVERSATION: usize = 8;

/// Per conversation (by index), its last attribute writes as (version after, writer).
#[derive(Debug, Default)]
pub(super) struct AttributeWriters {
    recent: HashMap<usize, VecDeque<(u64, String)>>,
    /// Every writer seen: a run's writers are a handful of processes.
    seen: BTreeSet<String>,
}

impl AttributeWriters {
    pub(super) fn record(&mut self, conversation: usize, version_after: u64, writer: &str) {
        let writes = self.recent.entry(conversation).or_default();
        if writes.len() == KEPT_PER_CONVERSATION {
            writes.pop_front();
        }
        writes.push_back((version_after, writer.to_owned()));
        if !self.seen.contains(writer) {
            self.seen.insert(writer.to_owned());
        }
    }

    /// Every writer that has written attributes, by name.
    pub(super) fn seen(&self) -> impl Iterator<Item = &String> {
        self.seen.iter()
    }

    /// Whether a writer other than `writer` wrote the conversation after version `read`
    /// (the version `writer` last saw).
    pub(super) fn overtaken_by_another(
        &self,
        conversation: usize,
        read: u64,
        writer: &str,
    ) -> bool {
        self.recent.get(&conversation).is_some_and(|writes| {
            writes
                .iter()
                .any(|(version_after, by)| *version_after > read && by != writer)
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_a_later_write_by_someone_else_overtakes() {
        let mut writers = AttributeWriters::default();
        writers.record(0, 3, "a");
        writers.record(0, 5, "b");
        assert!(
            writers.overtaken_by_another(0, 4, "a"),
            "b wrote 5 after a read 4"
        );
        assert!(!writers.overtaken_by_another(0, 5, "a"), "nothing after 5");
        assert!(
            writers.overtaken_by_another(0, 2, "b"),
            "a wrote 3 after b read 2"
        );
        assert!(
            !writers.overtaken_by_another(0, 4, "b"),
            "b's own write does not count"
        );
        assert!(
            !writers.overtaken_by_another(1, 0, "a"),
            "another conversation"
        );
    }

    #[test]
    fn only_the_last_writes_are_kept() {
        let mut writers = AttributeWriters::default();
        writers.record(0, 1, "old");
        for version in 2..=(KEPT_PER_CONVERSATION as u64 + 1) {
            writers.record(0, version, "new");
        }
        assert!(
            !writers.overtaken_by_another(0, 0, "new"),
            "old's write was dropped"
        );
    }
}
