//! Topics across channels, and what Genesys said about them.
//!
//! A channel takes at most 1 000 topics; more is an HTTP 400 (API.md §3.4). Queue topics
//! grow with queues and user topics with agents, so a large configuration needs several
//! channels. [`plan_channels`] spreads topics deterministically (the same set always gives
//! the same channels, so a rotation re-creates exactly the channel it replaces), loses
//! none and subscribes none twice (the same event would otherwise arrive twice per
//! channel). [`subscription_verdict`] reads the subscription response: with
//! `ignoreErrors=true` a refused topic comes back `Rejected` with a reason instead of
//! failing the call, and the daemon must say so (logs, metrics, `/readyz`).
//!
//! Owns planning and reading only; never calls the API.

use std::collections::{BTreeMap, BTreeSet};

use serde::Serialize;

use crate::model::ChannelTopic;

/// Genesys' limit of topics per channel.
pub const MAX_TOPICS_PER_CHANNEL: usize = 1_000;

/// Splits `topics` into per-channel subscription lists of at most `per_channel_limit`
/// topics (a limit of 0 is treated as 1).
///
/// Duplicates collapse to one, topics are sorted, and channels are filled evenly
/// (1 001 topics give 501 + 500, not 1 000 + 1) so every channel keeps headroom. No
/// topics, no channels.
pub fn plan_channels(topics: &[String], per_channel_limit: usize) -> Vec<Vec<String>> {
    let unique: Vec<&String> = topics.iter().collect::<BTreeSet<_>>().into_iter().collect();
    if unique.is_empty() {
        return Vec::new();
    }
    let limit = per_channel_limit.max(1);
    let channels = unique.len().div_ceil(limit);
    // The first `remainder` channels take one topic more than the others.
    let base = unique.len() / channels;
    let remainder = unique.len() % channels;
    let mut rest = unique.as_slice();
    let mut plan = Vec::with_capacity(channels);
    for channel in 0..channels {
        let size = if channel < remainder { base + 1 } else { base };
        let (this, after) = rest.split_at(size.min(rest.len()));
        plan.push(this.iter().map(|topic| (*topic).clone()).collect());
        rest = after;
    }
    plan
}

/// Which channel takes one more topic, given how many each holds now: the first with room,
/// so channels fill up before a new one is opened; `None` when all are full (open one).
pub fn place_topic(loads: &[usize], per_channel_limit: usize) -> Option<usize> {
    loads
        .iter()
        .position(|load| *load < per_channel_limit.max(1))
}

/// One topic Genesys did not subscribe, with why.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct RejectedTopic {
    pub topic: String,
    /// Genesys' `rejectionReason`, or what Convoy inferred when it gave none.
    pub reason: String,
    pub missing_permissions: Vec<String>,
}

/// What a subscription response says about the topics one channel asked for.
#[derive(Debug, Clone, PartialEq, Eq, Default, Serialize)]
pub struct SubscriptionVerdict {
    /// Subscribed and flowing, sorted.
    pub permitted: Vec<String>,
    /// Refused by Genesys, sorted by topic.
    pub rejected: Vec<RejectedTopic>,
}

impl SubscriptionVerdict {
    /// Every requested topic is subscribed (what `/readyz` reports).
    pub fn all_permitted(&self) -> bool {
        self.rejected.is_empty()
    }
}

/// Reads a subscription response (`entities` of the PUT/POST reply) against the topics
/// that were requested.
///
/// - `state` `Permitted`, or no state at all (being in the listing means subscribed):
///   permitted;
/// - `Rejected`: rejected with Genesys' reason and missing permissions;
/// - any other state: rejected, naming the state, so an unexpected answer is visible
///   rather than silently trusted;
/// - requested but absent from the listing: rejected ("not in the subscription response").
///
/// Topics in the listing that were not requested (a POST adds to an existing set) are
/// ignored: this channel's verdict is about what it asked for.
pub fn subscription_verdict(
    requested: &[String],
    response: &[ChannelTopic],
) -> SubscriptionVerdict {
    let listed: BTreeMap<&str, &ChannelTopic> = response
        .iter()
        .map(|entry| (entry.id.as_str(), entry))
        .collect();
    let wanted: BTreeSet<&String> = requested.iter().collect();
    let mut verdict = SubscriptionVerdict::default();
    for topic in wanted {
        let Some(entry) = listed.get(topic.as_str()) else {
            verdict.rejected.push(RejectedTopic {
                topic: topic.clone(),
                reason: "not in the subscription response".to_owned(),
                missing_permissions: Vec::new(),
            });
            continue;
        };
        match entry.state.as_deref() {
            None => verdict.permitted.push(topic.clone()),
            Some(state) if state.eq_ignore_ascii_case("permitted") => {
                verdict.permitted.push(topic.clone());
            }
            Some(state) => {
                let reason = if state.eq_ignore_ascii_case("rejected") {
                    entry
                        .rejection_reason
                        .clone()
                        .unwrap_or_else(|| "rejected without a reason".to_owned())
                } else {
                    format!("unrecognised subscription state \"{state}\"")
                };
                verdict.rejected.push(RejectedTopic {
                    topic: topic.clone(),
                    reason,
                    missing_permissions: entry.missing_permissions.clone(),
                });
            }
        }
    }
    verdict
}

#[cfg(test)]
#[allow(clippy::unwrap_used, clippy::expect_used)]
mod tests {
    use proptest::prelude::*;

    use super::*;

    fn topics(n: usize) -> Vec<String> {
        (0..n)
            .map(|i| format!("v2.routing.queues.q{i:04}.conversations"))
            .collect()
    }

    fn entry(id: &str, state: Option<&str>, reason: Option<&str>) -> ChannelTopic {
        ChannelTopic {
            id: id.to_owned(),
            state: state.map(str::to_owned),
            rejection_reason: reason.map(str::to_owned),
            missing_permissions: Vec::new(),
            self_uri: None,
        }
    }

    #[test]
    fn up_to_the_limit_fits_one_channel() {
        let plan = plan_channels(&topics(1_000), MAX_TOPICS_PER_CHANNEL);
        assert_eq!(plan.len(), 1);
        assert_eq!(plan[0].len(), 1_000);
    }

    #[test]
    fn one_over_the_limit_splits_evenly_over_two_channels() {
        let plan = plan_channels(&topics(1_001), MAX_TOPICS_PER_CHANNEL);
        let sizes: Vec<usize> = plan.iter().map(Vec::len).collect();
        assert_eq!(sizes, [501, 500]);
    }

    #[test]
    fn no_topics_need_no_channel() {
        assert!(plan_channels(&[], MAX_TOPICS_PER_CHANNEL).is_empty());
    }

    #[test]
    fn duplicates_are_subscribed_once_and_order_does_not_matter() {
        let mut input = topics(5);
        input.push(input[0].clone());
        let mut reversed = input.clone();
        reversed.reverse();
        let plan = plan_channels(&input, 2);
        assert_eq!(plan, plan_channels(&reversed, 2));
        assert_eq!(plan.concat(), topics(5));
    }

    #[test]
    fn a_zero_limit_still_places_every_topic() {
        let plan = plan_channels(&topics(3), 0);
        assert_eq!(plan.len(), 3);
    }

    #[test]
    fn channel_sizes_differ_by_at_most_one() {
        let sizes: Vec<usize> = plan_channels(&topics(7), 3).iter().map(Vec::len).collect();
        assert_eq!(sizes, [3, 2, 2]);
    }

    #[test]
    fn the_verdict_names_rejected_topics_with_their_reasons() {
        let requested = vec![
            "v2.users.u1.conversations".to_owned(),
            "v2.routing.queues.q1.conversations".to_owned(),
            "v2.routing.queues.q2.conversations".to_owned(),
            "v2.routing.queues.q3.conversations".to_owned(),
        ];
        let mut refused = entry(
            "v2.routing.queues.q1.conversations",
            Some("Rejected"),
            Some("Missing permissions"),
        );
        refused.missing_permissions = vec!["routing:queue:view".to_owned()];
        let response = vec![
            entry("v2.users.u1.conversations", Some("Permitted"), None),
            refused,
            entry("v2.routing.queues.q2.conversations", None, None),
            entry(
                "v2.users.someone-else.conversations",
                Some("Permitted"),
                None,
            ),
        ];
        let verdict = subscription_verdict(&requested, &response);
        assert_eq!(
            verdict.permitted,
            [
                "v2.routing.queues.q2.conversations",
                "v2.users.u1.conversations"
            ]
        );
        assert_eq!(
            verdict.rejected,
            [
                RejectedTopic {
                    topic: "v2.routing.queues.q1.conversations".to_owned(),
                    reason: "Missing permissions".to_owned(),
                    missing_permissions: vec!["routing:queue:view".to_owned()],
                },
                RejectedTopic {
                    topic: "v2.routing.queues.q3.conversations".to_owned(),
                    reason: "not in the subscription response".to_owned(),
                    missing_permissions: Vec::new(),
                },
            ]
        );
        assert!(!verdict.all_permitted());
    }

    #[test]
    fn an_unknown_state_is_reported_not_trusted() {
        let requested = vec!["v2.users.u1.conversations".to_owned()];
        let response = vec![entry("v2.users.u1.conversations", Some("Pending"), None)];
        let verdict = subscription_verdict(&requested, &response);
        assert_eq!(
            verdict.rejected[0].reason,
            "unrecognised subscription state \"Pending\""
        );
    }

    proptest! {
        #[test]
        fn every_topic_lands_in_exactly_one_channel_within_the_limit(
            input in prop::collection::vec("[a-e]{1,3}", 0..200),
            limit in 1usize..40,
        ) {
            let plan = plan_channels(&input, limit);
            let expected: BTreeSet<&String> = input.iter().collect();
            let placed: Vec<&String> = plan.iter().flatten().collect();
            let placed_set: BTreeSet<&String> = placed.iter().copied().collect();
            prop_assert_eq!(placed.len(), placed_set.len(), "a topic was placed twice");
            prop_assert_eq!(&placed_set, &expected);
            prop_assert!(plan.iter().all(|channel| !channel.is_empty() && channel.len() <= limit));
            // As few channels as the limit allows.
            prop_assert_eq!(plan.len(), expected.len().div_ceil(limit));
            let sizes: Vec<usize> = plan.iter().map(Vec::len).collect();
            let spread = sizes.iter().max().unwrap_or(&0) - sizes.iter().min().unwrap_or(&0);
            prop_assert!(spread <= 1, "uneven channels {:?}", sizes);
        }

        #[test]
        fn the_plan_does_not_depend_on_input_order(
            input in prop::collection::vec("[a-e]{1,3}", 0..100),
            limit in 1usize..20,
        ) {
            let mut reversed = input.clone();
            reversed.reverse();
            prop_assert_eq!(plan_channels(&input, limit), plan_channels(&reversed, limit));
        }
    }

    #[test]
    fn a_topic_goes_to_the_first_channel_with_room_or_to_a_new_one() {
        assert_eq!(place_topic(&[], MAX_TOPICS_PER_CHANNEL), None);
        assert_eq!(
            place_topic(&[1_000, 999, 10], MAX_TOPICS_PER_CHANNEL),
            Some(1)
        );
        assert_eq!(place_topic(&[1_000, 1_000], MAX_TOPICS_PER_CHANNEL), None);
        assert_eq!(
            place_topic(&[0], 0),
            Some(0),
            "a limit of 0 is treated as 1"
        );
    }
}
