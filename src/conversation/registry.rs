//! The ConversationRouter's bookkeeping as plain data (anchors.md §2.5): which
//! conversations are live and under which generation, how many may be, and which recently
//! finished ones must not come back.
//!
//! The actor keeps the addresses; this keeps the decisions:
//! - **Generations** model "remove the entry only if the stored `Addr` is the one that
//!   stopped": every incarnation of a conversation's actor gets a fresh [`Generation`], and
//!   a stop notice removes the entry only when its generation is still the stored one, so
//!   a late notice from a dead incarnation never removes its replacement.
//! - **A cap on live conversations** turns growth into back-pressure ([`Admit::AtCapacity`])
//!   instead of unbounded memory.
//! - **Tombstones**, bounded in number and in time, stop a late or duplicated event from
//!   resurrecting a finished conversation (a fresh actor would write its attributes again).
//!
//! Never holds an address, never spawns, never reads the clock: time is a monotonic offset
//! (`Duration` since an arbitrary origin the shell picks), so a wall-clock step cannot
//! expire every tombstone at once.

use std::collections::BTreeMap;
use std::time::Duration;

use serde::Serialize;

use crate::ids::ConversationId;

/// One incarnation of a conversation's actor. Unique across the registry's lifetime.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize)]
pub struct Generation(pub u64);

/// What to do with an event for a conversation.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Admit {
    /// An actor exists: deliver to it (if its address turns out dead, see
    /// [`LiveConversations::replace`]).
    Existing(Generation),
    /// Newly admitted: spawn an actor under this generation.
    New(Generation),
    /// The cap is reached: hold the event (back-pressure) and try again after an eviction.
    AtCapacity,
}

/// The live conversations and their current generations, under a cap.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LiveConversations {
    max_live: usize,
    entries: BTreeMap<ConversationId, Generation>,
    next_generation: u64,
}

impl LiveConversations {
    pub fn new(max_live: usize) -> Self {
        LiveConversations {
            max_live,
            entries: BTreeMap::new(),
            next_generation: 1,
        }
    }

    pub fn max_live(&self) -> usize {
        self.max_live
    }

    pub fn len(&self) -> usize {
        self.entries.len()
    }

    pub fn is_empty(&self) -> bool {
        self.entries.is_empty()
    }

    pub fn generation(&self, id: &ConversationId) -> Option<Generation> {
        self.entries.get(id).copied()
    }

    /// Live conversation ids in order (what a reconciliation re-reads).
    pub fn ids(&self) -> impl Iterator<Item = &ConversationId> {
        self.entries.keys()
    }

    /// Get-or-admit: the existing generation, a new one if there is room, or `AtCapacity`.
    pub fn admit(&mut self, id: &ConversationId) -> Admit {
        if let Some(generation) = self.entries.get(id) {
            return Admit::Existing(*generation);
        }
        if self.entries.len() >= self.max_live {
            return Admit::AtCapacity;
        }
        let generation = self.fresh_generation();
        self.entries.insert(id.clone(), generation);
        Admit::New(generation)
    }

    /// Admits `id` even at the cap: the caller has just retired another conversation
    /// whose actor is still stopping.
    pub fn admit_over_cap(&mut self, id: &ConversationId) -> Generation {
        if let Some(generation) = self.entries.get(id) {
            return *generation;
        }
        let generation = self.fresh_generation();
        self.entries.insert(id.clone(), generation);
        generation
    }

    /// The stored actor is dead (closed mailbox): a new incarnation takes its slot under a
    /// new generation, so the dead one's stop notice can no longer remove it. `None` when
    /// the conversation is not live (admit it instead; that checks the cap).
    pub fn replace(&mut self, id: &ConversationId) -> Option<Generation> {
        if !self.entries.contains_key(id) {
            return None;
        }
        let generation = self.fresh_generation();
        self.entries.insert(id.clone(), generation);
        Some(generation)
    }

    /// An actor stopped: removes the entry only if `generation` is still the stored one.
    /// Returns whether it did.
    pub fn remove_if_current(&mut self, id: &ConversationId, generation: Generation) -> bool {
        if self.entries.get(id) == Some(&generation) {
            self.entries.remove(id);
            true
        } else {
            false
        }
    }

    fn fresh_generation(&mut self) -> Generation {
        let generation = Generation(self.next_generation);
        self.next_generation = self.next_generation.saturating_add(1);
        generation
    }
}

/// A finished conversation's marker.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
pub struct Tombstone {
    /// The conversation's last version, so a deliberate rebuild continues above it.
    pub version: u64,
    /// When it was (last) tombstoned, on the shell's monotonic clock.
    pub at: Duration,
}

/// Recently finished conversations: at most `capacity` of them (the oldest go first), each
/// for at most `ttl`. Past that, version idempotency is the second line of defence.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Tombstones {
    capacity: usize,
    ttl: Duration,
    /// Insertion sequence of each id's current entry in `by_age`.
    by_id: BTreeMap<ConversationId, u64>,
    /// Entries oldest first. A sequence number, not the time, orders them, so a repeated
    /// `now` (or a clock that stalls) cannot collide two entries.
    by_age: BTreeMap<u64, (ConversationId, Tombstone)>,
    next_sequence: u64,
}

impl Tombstones {
    pub fn new(capacity: usize, ttl: Duration) -> Self {
        Tombstones {
            capacity,
            ttl,
            by_id: BTreeMap::new(),
            by_age: BTreeMap::new(),
            next_sequence: 0,
        }
    }

    /// Entries held, expired ones included until [`Self::purge_expired`] or the next
    /// [`Self::tombstone`].
    pub fn len(&self) -> usize {
        self.by_id.len()
    }

    pub fn is_empty(&self) -> bool {
        self.by_id.is_empty()
    }

    /// Marks `id` finished at `version`. Re-marking refreshes its time and keeps the higher
    /// version. Expired entries are dropped first, then the oldest while over capacity.
    pub fn tombstone(&mut self, id: &ConversationId, version: u64, now: Duration) {
        self.purge_expired(now);
        let previous = self.lift(id);
        let version = previous.map_or(version, |old| old.version.max(version));
        if self.capacity == 0 {
            return;
        }
        while self.by_id.len() >= self.capacity {
            let Some((_, (oldest, _))) = self.by_age.pop_first() else {
                break;
            };
            self.by_id.remove(&oldest);
        }
        let sequence = self.next_sequence;
        self.next_sequence = self.next_sequence.saturating_add(1);
        self.by_id.insert(id.clone(), sequence);
        self.by_age
            .insert(sequence, (id.clone(), Tombstone { version, at: now }));
    }

    /// The unexpired tombstone of `id`.
    pub fn get(&self, id: &ConversationId, now: Duration) -> Option<Tombstone> {
        let sequence = self.by_id.get(id)?;
        let (_, tombstone) = self.by_age.get(sequence)?;
        (!self.expired(tombstone, now)).then_some(*tombstone)
    }

    pub fn is_tombstoned(&self, id: &ConversationId, now: Duration) -> bool {
        self.get(id, now).is_some()
    }

    /// Removes `id`'s tombstone (e.g. reconciliation found the conversation active again:
    /// a messaging conversation can be re-opened). Returns it, expired or not.
    pub fn lift(&mut self, id: &ConversationId) -> Option<Tombstone> {
        let sequence = self.by_id.remove(id)?;
        self.by_age
            .remove(&sequence)
            .map(|(_, tombstone)| tombstone)
    }

    /// Drops expired entries; returns how many.
    pub fn purge_expired(&mut self, now: Duration) -> usize {
        let ttl = self.ttl;
        let mut purged = 0;
        while let Some(entry) = self.by_age.first_entry() {
            if !expired(&entry.get().1, ttl, now) {
                break;
            }
            let (id, _) = entry.remove();
            self.by_id.remove(&id);
            purged += 1;
        }
        purged
    }

    fn expired(&self, tombstone: &Tombstone, now: Duration) -> bool {
        expired(tombstone, self.ttl, now)
    }
}

fn expired(tombstone: &Tombstone, ttl: Duration, now: Duration) -> bool {
    now.saturating_sub(tombstone.at) >= ttl
}

/// When each live conversation was last active: the eviction order at the cap (least
/// recent first) and the idle sweep. A sequence number breaks ties of equal times.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Recency {
    by_id: BTreeMap<ConversationId, (Duration, u64)>,
    by_time: BTreeMap<(Duration, u64), ConversationId>,
    next_sequence: u64,
}

impl Recency {
    pub fn touch(&mut self, id: &ConversationId, now: Duration) {
        self.remove(id);
        let key = (now, self.next_sequence);
        self.next_sequence = self.next_sequence.saturating_add(1);
        self.by_id.insert(id.clone(), key);
        self.by_time.insert(key, id.clone());
    }

    pub fn remove(&mut self, id: &ConversationId) {
        if let Some(key) = self.by_id.remove(id) {
            self.by_time.remove(&key);
        }
    }

    pub fn least_recent(&self) -> Option<&ConversationId> {
        self.by_time.values().next()
    }

    /// Ids last active before `cutoff`, least recent first.
    pub fn older_than(&self, cutoff: Duration) -> impl Iterator<Item = &ConversationId> {
        self.by_time.range(..(cutoff, 0)).map(|(_, id)| id)
    }

    pub fn len(&self) -> usize {
        self.by_id.len()
    }

    pub fn is_empty(&self) -> bool {
        self.by_id.is_empty()
    }
}

/// Where an event for a conversation goes.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Route {
    /// To the live actor of this generation.
    Deliver(Generation),
    /// Spawn an actor under this generation (rebuilt from REST), then deliver.
    Spawn(Generation),
    /// Finished recently: drop the event (count it).
    Tombstoned { version: u64 },
    /// Live cap reached: `evict` (the least recently active live conversation, already
    /// removed from the live set) must retire to make room; then spawn under `generation`.
    /// Nothing is turned away: the evicted conversation comes back from REST or its next
    /// snapshot, with its version, when it is active again.
    SpawnEvicting {
        generation: Generation,
        evict: ConversationId,
        evicted_generation: Generation,
    },
}

/// Live conversations plus tombstones: the router's whole routing decision.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ConversationRegistry {
    live: LiveConversations,
    tombstones: Tombstones,
    recency: Recency,
}

impl ConversationRegistry {
    pub fn new(max_live: usize, tombstone_capacity: usize, tombstone_ttl: Duration) -> Self {
        ConversationRegistry {
            live: LiveConversations::new(max_live),
            tombstones: Tombstones::new(tombstone_capacity, tombstone_ttl),
            recency: Recency::default(),
        }
    }

    /// Live conversations not active since `cutoff`, least recent first (idle sweep).
    pub fn idle_since(&self, cutoff: Duration) -> Vec<(ConversationId, Generation)> {
        self.recency
            .older_than(cutoff)
            .filter_map(|id| self.live.generation(id).map(|g| (id.clone(), g)))
            .collect()
    }

    pub fn live(&self) -> &LiveConversations {
        &self.live
    }

    pub fn tombstones(&self) -> &Tombstones {
        &self.tombstones
    }

    /// Routes an event. A live actor wins over a tombstone (it was deliberately rebuilt);
    /// otherwise a tombstone drops the event; otherwise the conversation is admitted.
    pub fn route(&mut self, id: &ConversationId, now: Duration) -> Route {
        if let Some(generation) = self.live.generation(id) {
            self.recency.touch(id, now);
            return Route::Deliver(generation);
        }
        if let Some(tombstone) = self.tombstones.get(id, now) {
            return Route::Tombstoned {
                version: tombstone.version,
            };
        }
        self.admit(id, now)
    }

    /// Admits `id` (not live), evicting the least recently active conversation at the cap.
    fn admit(&mut self, id: &ConversationId, now: Duration) -> Route {
        match self.live.admit(id) {
            Admit::Existing(generation) => {
                self.recency.touch(id, now);
                Route::Deliver(generation)
            }
            Admit::New(generation) => {
                self.recency.touch(id, now);
                Route::Spawn(generation)
            }
            Admit::AtCapacity => {
                let Some(evict) = self.recency.least_recent().cloned() else {
                    // A cap of zero: nothing to evict. Admit over the cap rather than
                    // turn a conversation away (validation forbids 0 anyway).
                    let generation = self.live.admit_over_cap(id);
                    self.recency.touch(id, now);
                    return Route::Spawn(generation);
                };
                let evicted_generation = self.live.generation(&evict);
                self.recency.remove(&evict);
                let Some(evicted_generation) = evicted_generation else {
                    return self.admit(id, now);
                };
                self.live.remove_if_current(&evict, evicted_generation);
                let generation = self.live.admit_over_cap(id);
                self.recency.touch(id, now);
                Route::SpawnEvicting {
                    generation,
                    evict,
                    evicted_generation,
                }
            }
        }
    }

    /// Retires a live conversation on the shell's initiative (idle): frees its slot, no
    /// tombstone. Returns whether `generation` was the live one.
    pub fn retire(&mut self, id: &ConversationId, generation: Generation) -> bool {
        let removed = self.live.remove_if_current(id, generation);
        if removed {
            self.recency.remove(id);
        }
        removed
    }

    /// The stored actor is dead: see [`LiveConversations::replace`].
    pub fn replace(&mut self, id: &ConversationId) -> Option<Generation> {
        self.live.replace(id)
    }

    /// The actor of `generation` finished its conversation and stopped: free its slot and
    /// tombstone the id. A notice from a superseded generation changes nothing (the newer
    /// incarnation is still live, and tombstoning would block it once it stops for another
    /// reason). Returns whether the entry was removed.
    pub fn finished(
        &mut self,
        id: &ConversationId,
        generation: Generation,
        version: u64,
        now: Duration,
    ) -> bool {
        let removed = self.live.remove_if_current(id, generation);
        if removed {
            self.recency.remove(id);
            self.tombstones.tombstone(id, version, now);
        }
        removed
    }

    /// Tombstones a conversation that is no longer live (its retirement completed).
    pub fn tombstone(&mut self, id: &ConversationId, version: u64, now: Duration) {
        self.tombstones.tombstone(id, version, now);
    }

    /// The actor of `generation` stopped without finishing (idle timeout, crash): free its
    /// slot, no tombstone, so the next event rebuilds it from REST.
    pub fn stopped(&mut self, id: &ConversationId, generation: Generation) -> bool {
        self.retire(id, generation)
    }

    /// Lets a tombstoned conversation be admitted again (reconciliation found it active).
    pub fn lift(&mut self, id: &ConversationId) -> Option<Tombstone> {
        self.tombstones.lift(id)
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used, clippy::expect_used)]
mod tests {
    use proptest::prelude::*;

    use super::*;

    fn id(text: &str) -> ConversationId {
        ConversationId::from(text)
    }

    fn secs(s: u64) -> Duration {
        Duration::from_secs(s)
    }

    #[test]
    fn admit_is_get_or_insert_under_the_cap() {
        let mut live = LiveConversations::new(2);
        let Admit::New(first) = live.admit(&id("a")) else {
            panic!("a should be new");
        };
        assert_eq!(live.admit(&id("a")), Admit::Existing(first));
        assert!(matches!(live.admit(&id("b")), Admit::New(_)));
        assert_eq!(live.admit(&id("c")), Admit::AtCapacity);
        assert_eq!(live.len(), 2);
    }

    #[test]
    fn a_stop_notice_of_a_replaced_incarnation_removes_nothing() {
        let mut live = LiveConversations::new(10);
        let Admit::New(dead) = live.admit(&id("a")) else {
            panic!("a should be new");
        };
        let current = live.replace(&id("a")).unwrap();
        assert_ne!(dead, current);
        assert!(!live.remove_if_current(&id("a"), dead));
        assert_eq!(live.generation(&id("a")), Some(current));
        assert!(live.remove_if_current(&id("a"), current));
        assert!(live.is_empty());
    }

    #[test]
    fn replace_does_not_admit_past_the_cap() {
        let mut live = LiveConversations::new(1);
        live.admit(&id("a"));
        assert_eq!(live.replace(&id("b")), None);
        assert_eq!(live.len(), 1);
    }

    #[test]
    fn generations_are_never_reused_even_for_a_readmitted_id() {
        let mut live = LiveConversations::new(10);
        let Admit::New(first) = live.admit(&id("a")) else {
            panic!("a should be new");
        };
        live.remove_if_current(&id("a"), first);
        let Admit::New(second) = live.admit(&id("a")) else {
            panic!("a should be new again");
        };
        assert!(second > first);
    }

    #[test]
    fn a_tombstone_lasts_for_its_ttl() {
        let mut tombstones = Tombstones::new(10, secs(60));
        tombstones.tombstone(&id("a"), 7, secs(100));
        assert_eq!(
            tombstones.get(&id("a"), secs(159)),
            Some(Tombstone {
                version: 7,
                at: secs(100)
            })
        );
        assert!(!tombstones.is_tombstoned(&id("a"), secs(160)));
        assert_eq!(tombstones.purge_expired(secs(160)), 1);
        assert!(tombstones.is_empty());
    }

    #[test]
    fn over_capacity_the_oldest_tombstone_goes_first() {
        let mut tombstones = Tombstones::new(2, secs(600));
        tombstones.tombstone(&id("a"), 1, secs(1));
        tombstones.tombstone(&id("b"), 1, secs(2));
        // Re-marking `a` makes it the newest.
        tombstones.tombstone(&id("a"), 3, secs(3));
        tombstones.tombstone(&id("c"), 1, secs(4));
        assert!(!tombstones.is_tombstoned(&id("b"), secs(5)));
        assert_eq!(
            tombstones.get(&id("a"), secs(5)).map(|t| t.version),
            Some(3)
        );
        assert!(tombstones.is_tombstoned(&id("c"), secs(5)));
        assert_eq!(tombstones.len(), 2);
    }

    #[test]
    fn re_marking_keeps_the_higher_version() {
        let mut tombstones = Tombstones::new(10, secs(600));
        tombstones.tombstone(&id("a"), 9, secs(1));
        tombstones.tombstone(&id("a"), 4, secs(2));
        assert_eq!(
            tombstones.get(&id("a"), secs(2)).map(|t| t.version),
            Some(9)
        );
    }

    #[test]
    fn a_zero_capacity_keeps_no_tombstones() {
        let mut tombstones = Tombstones::new(0, secs(600));
        tombstones.tombstone(&id("a"), 1, secs(1));
        assert!(!tombstones.is_tombstoned(&id("a"), secs(1)));
    }

    #[test]
    fn a_finished_conversation_is_not_resurrected_by_a_late_event() {
        let mut registry = ConversationRegistry::new(10, 100, secs(600));
        let Route::Spawn(generation) = registry.route(&id("a"), secs(0)) else {
            panic!("a should spawn");
        };
        assert_eq!(
            registry.route(&id("a"), secs(1)),
            Route::Deliver(generation)
        );
        assert!(registry.finished(&id("a"), generation, 12, secs(2)));
        assert_eq!(
            registry.route(&id("a"), secs(3)),
            Route::Tombstoned { version: 12 }
        );
        assert!(registry.live().is_empty());
        // After the TTL a new event is a new conversation again.
        assert!(matches!(
            registry.route(&id("a"), secs(700)),
            Route::Spawn(_)
        ));
    }

    #[test]
    fn a_lifted_tombstone_lets_the_conversation_back_in() {
        let mut registry = ConversationRegistry::new(10, 100, secs(600));
        let Route::Spawn(generation) = registry.route(&id("a"), secs(0)) else {
            panic!("a should spawn");
        };
        registry.finished(&id("a"), generation, 12, secs(1));
        assert_eq!(registry.lift(&id("a")).map(|t| t.version), Some(12));
        assert!(matches!(registry.route(&id("a"), secs(2)), Route::Spawn(_)));
    }

    #[test]
    fn an_idle_stop_frees_the_slot_without_a_tombstone() {
        let mut registry = ConversationRegistry::new(1, 100, secs(600));
        let Route::Spawn(generation) = registry.route(&id("a"), secs(0)) else {
            panic!("a should spawn");
        };
        assert!(registry.stopped(&id("a"), generation));
        assert!(matches!(registry.route(&id("b"), secs(1)), Route::Spawn(_)));
        assert!(!registry.tombstones().is_tombstoned(&id("a"), secs(1)));
    }

    #[test]
    fn at_the_cap_the_least_recently_active_conversation_makes_room() {
        let mut registry = ConversationRegistry::new(2, 100, secs(600));
        let Route::Spawn(a) = registry.route(&id("a"), secs(0)) else {
            panic!("a should spawn");
        };
        assert!(matches!(registry.route(&id("b"), secs(1)), Route::Spawn(_)));
        // `a` is active again: `b` is now the least recent.
        assert_eq!(registry.route(&id("a"), secs(2)), Route::Deliver(a));
        let Route::SpawnEvicting { evict, .. } = registry.route(&id("c"), secs(3)) else {
            panic!("c should evict");
        };
        assert_eq!(evict, id("b"));
        assert_eq!(registry.live().len(), 2);
        assert!(!registry.tombstones().is_tombstoned(&id("b"), secs(3)));
        // `b` comes back: it is admitted again, evicting the least recent (`a`).
        let Route::SpawnEvicting { evict, .. } = registry.route(&id("b"), secs(4)) else {
            panic!("b should evict");
        };
        assert_eq!(evict, id("a"));
    }

    #[test]
    fn the_idle_sweep_lists_conversations_inactive_since_the_cutoff() {
        let mut registry = ConversationRegistry::new(10, 100, secs(600));
        registry.route(&id("old"), secs(0));
        registry.route(&id("new"), secs(100));
        let idle: Vec<ConversationId> = registry
            .idle_since(secs(50))
            .into_iter()
            .map(|(id, _)| id)
            .collect();
        assert_eq!(idle, vec![id("old")]);
    }

    #[test]
    fn a_superseded_incarnation_finishing_neither_removes_nor_tombstones() {
        let mut registry = ConversationRegistry::new(10, 100, secs(600));
        let Route::Spawn(dead) = registry.route(&id("a"), secs(0)) else {
            panic!("a should spawn");
        };
        let current = registry.replace(&id("a")).unwrap();
        assert!(!registry.finished(&id("a"), dead, 3, secs(1)));
        assert_eq!(registry.route(&id("a"), secs(2)), Route::Deliver(current));
        assert!(!registry.tombstones().is_tombstoned(&id("a"), secs(2)));
    }

    proptest! {
        #[test]
        fn tombstones_never_exceed_their_capacity(
            capacity in 0usize..8,
            marks in prop::collection::vec((0u8..20, 0u64..5), 0..100),
        ) {
            let mut tombstones = Tombstones::new(capacity, secs(1_000));
            for (step, (which, version)) in marks.into_iter().enumerate() {
                let now = secs(step as u64);
                let conversation = id(&format!("c{which}"));
                tombstones.tombstone(&conversation, version, now);
                prop_assert!(tombstones.len() <= capacity);
                prop_assert_eq!(tombstones.by_id.len(), tombstones.by_age.len());
                if capacity > 0 {
                    prop_assert!(tombstones.is_tombstoned(&conversation, now));
                }
            }
        }

        #[test]
        fn live_conversations_never_exceed_the_cap(
            max_live in 0usize..6,
            events in prop::collection::vec((0u8..10, any::<bool>()), 0..100),
        ) {
            let mut live = LiveConversations::new(max_live);
            for (which, stop) in events {
                let conversation = id(&format!("c{which}"));
                match live.admit(&conversation) {
                    Admit::Existing(generation) | Admit::New(generation) if stop => {
                        prop_assert!(live.remove_if_current(&conversation, generation));
                    }
                    _ => {}
                }
                prop_assert!(live.len() <= max_live);
            }
        }

        #[test]
        fn the_registry_never_holds_more_than_the_cap_and_never_turns_one_away(
            max_live in 1usize..6,
            events in prop::collection::vec(0u8..10, 0..100),
        ) {
            let mut registry = ConversationRegistry::new(max_live, 100, secs(600));
            for (tick, which) in events.into_iter().enumerate() {
                let conversation = id(&format!("c{which}"));
                let route = registry.route(&conversation, secs(tick as u64));
                prop_assert!(!matches!(route, Route::Tombstoned { .. }), "turned away");
                prop_assert!(registry.live().generation(&conversation).is_some());
                prop_assert!(registry.live().len() <= max_live);
            }
        }
    }
}
