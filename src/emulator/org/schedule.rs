//! The two indexes that keep the org's per-tick work proportional to what is due, not to
//! how many conversations exist (Convoy issue #11: with 10 000 conversations open, a tick
//! that scanned every conversation, and an agent pick that counted every agent's load
//! over every conversation, took a whole core):
//! - [`DueIndex`]: conversations with routing steps still to run, ordered by when their
//!   next step is due, so a tick touches only the conversations it advances;
//! - [`AgentLoad`]: per agent, its live legs in conversations with steps still to run (what
//!   "least busy" means when routing), kept up to date as conversations change.
//!
//! Both are derived from the conversations and re-derived for one conversation whenever it
//! changes (`Org::reindex`), so they never disagree with the state they summarise.

use std::collections::{BTreeSet, HashMap};

use chrono::{DateTime, Utc};

/// Conversations with routing steps still to run, keyed by their first step's time.
#[derive(Debug, Default)]
pub(super) struct DueIndex {
    by_time: BTreeSet<(DateTime<Utc>, usize)>,
    /// Conversation index → its key in `by_time`.
    next_of: HashMap<usize, DateTime<Utc>>,
}

impl DueIndex {
    /// Records when conversation `index`'s next step is due (`None`: no step left).
    pub(super) fn set(&mut self, index: usize, next: Option<DateTime<Utc>>) {
        let previous = match next {
            Some(at) => self.next_of.insert(index, at),
            None => self.next_of.remove(&index),
        };
        if previous == next {
            return;
        }
        if let Some(at) = previous {
            self.by_time.remove(&(at, index));
        }
        if let Some(at) = next {
            self.by_time.insert((at, index));
        }
    }

    /// Removes the conversations with a step due at or before `now`; returns them in
    /// creation order, the order the steps of one tick have always run in (it decides which
    /// conversation draws the next ids and which agent is least busy).
    pub(super) fn take_due(&mut self, now: DateTime<Utc>) -> Vec<usize> {
        let mut due = Vec::new();
        while let Some(&(at, index)) = self.by_time.first() {
            if at > now {
                break;
            }
            self.by_time.pop_first();
            self.next_of.remove(&index);
            due.push(index);
        }
        due.sort_unstable();
        due
    }

    /// Conversations with steps still to run.
    pub(super) fn len(&self) -> usize {
        self.next_of.len()
    }
}

/// Live agent legs per agent, counted over the conversations with routing steps still to
/// run (as the pick of the least busy agent has always counted them).
#[derive(Debug, Default)]
pub(super) struct AgentLoad {
    /// Indexed like `Directory::agents`.
    per_agent: Vec<usize>,
    /// Conversation index → the agents its counted legs belong to (one entry per leg).
    counted: HashMap<usize, Vec<usize>>,
}

impl AgentLoad {
    pub(super) fn new(agents: usize) -> AgentLoad {
        AgentLoad {
            per_agent: vec![0; agents],
            counted: HashMap::new(),
        }
    }

    /// Replaces what conversation `index` counts against the agents with `legs` (agent
    /// indices, one per live agent leg).
    pub(super) fn recount(&mut self, index: usize, legs: Vec<usize>) {
        let previous = if legs.is_empty() {
            self.counted.remove(&index)
        } else {
            self.counted.insert(index, legs.clone())
        };
        for agent in previous.unwrap_or_default() {
            if let Some(load) = self.per_agent.get_mut(agent) {
                *load = load.saturating_sub(1);
            }
        }
        for agent in legs {
            if let Some(load) = self.per_agent.get_mut(agent) {
                *load += 1;
            }
        }
    }

    /// The agent's live legs in conversations still being routed.
    pub(super) fn of(&self, agent: usize) -> usize {
        self.per_agent.get(agent).copied().unwrap_or(0)
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]

    use chrono::{Duration, TimeZone};

    use super::*;

    fn t(ms: i64) -> DateTime<Utc> {
        Utc.with_ymd_and_hms(2025, 3, 4, 14, 0, 0).unwrap() + Duration::milliseconds(ms)
    }

    #[test]
    fn due_conversations_come_out_in_creation_order_and_only_once() {
        let mut due = DueIndex::default();
        due.set(7, Some(t(100)));
        due.set(3, Some(t(300)));
        due.set(5, Some(t(50)));
        due.set(9, Some(t(1_000)));
        due.set(3, Some(t(200)));
        due.set(9, None);
        assert_eq!(due.len(), 3);
        assert!(due.take_due(t(49)).is_empty());
        assert_eq!(due.take_due(t(250)), vec![3, 5, 7]);
        assert!(due.take_due(t(250)).is_empty());
        assert_eq!(due.len(), 0);
        due.set(5, Some(t(400)));
        assert_eq!(due.take_due(t(10_000)), vec![5]);
    }

    #[test]
    fn a_recount_replaces_what_the_conversation_counted() {
        let mut load = AgentLoad::new(3);
        load.recount(0, vec![0, 1]);
        load.recount(1, vec![1]);
        assert_eq!((load.of(0), load.of(1), load.of(2)), (1, 2, 0));
        load.recount(0, vec![2]);
        assert_eq!((load.of(0), load.of(1), load.of(2)), (0, 1, 1));
        load.recount(1, Vec::new());
        load.recount(0, Vec::new());
        assert_eq!((load.of(0), load.of(1), load.of(2)), (0, 0, 0));
        assert_eq!(load.of(99), 0, "an unknown agent carries no load");
    }
}
