//! The ConversationRouter and ConversationActors against the emulator, without the
//! stream: reconciliation discovers conversations through analytics, re-reads them through
//! REST, writes Convoy's participant attributes, and the result equals the ground truth.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::sync::Arc;
use std::time::Duration;

use actix::{Actor, Addr};
use chrono::Utc;
use convoy::config::Secret;
use convoy::ids::ConversationId;
use convoy_actors::conversation::actor::ActorCensus;
use convoy_actors::conversation::messages::RereadConversation;
use convoy_actors::conversation::router::LookupConversation;
use convoy_actors::conversation::{
    start_conversations, ConversationRouter, ConversationViews, ConversationsSetup, Reconcile,
    RouterSettings, WriterSettings,
};
use convoy_actors::emulator::{Emulator, EmulatorOptions};
use convoy_actors::genesys::oauth::TokenEndpoint;
use convoy_actors::genesys::rest::{RestContext, SharedBucket};
use convoy_actors::store::DurableStore;
use convoy_actors::token::{TokenActor, TokenStats};
use dashmap::DashMap;
use serde_json::{json, Value};

use convoy_actors::demo::{differences, unwritten_attributes};

use crate::support::{self, client, eventually};

/// Router knobs a test may change.
#[derive(Clone)]
pub struct HarnessSettings {
    pub max_live: usize,
    pub idle_timeout: Duration,
    pub store: Option<Arc<DurableStore>>,
}

impl Default for HarnessSettings {
    fn default() -> Self {
        HarnessSettings {
            max_live: 10_000,
            idle_timeout: Duration::from_secs(600),
            store: None,
        }
    }
}

pub struct Harness {
    pub emulator: Emulator,
    pub router: Addr<ConversationRouter>,
    pub census: Arc<ActorCensus>,
    pub views: ConversationViews,
    pub http: awc::Client,
    pub integrations: Vec<String>,
}

impl Harness {
    pub async fn start(options: EmulatorOptions) -> Harness {
        Harness::start_with(options, HarnessSettings::default()).await
    }

    pub async fn start_with(options: EmulatorOptions, settings: HarnessSettings) -> Harness {
        let http = client();
        let strict = options.strict_if_match;
        let emulator = Emulator::start(EmulatorOptions {
            rate_limit_per_minute: 0,
            ..options
        })
        .await
        .unwrap();
        let tokens = TokenActor::new(
            TokenEndpoint {
                login_base: emulator.base_url(),
                client_id: emulator.client_id().to_owned(),
                client_secret: Secret::new(emulator.client_secret().to_owned()),
            },
            Arc::new(TokenStats::default()),
        )
        .start();
        let rest = RestContext {
            api_base: emulator.base_url(),
            tokens,
            bucket: Arc::new(SharedBucket::new(60_000)),
            transport: Default::default(),
        };
        let views: ConversationViews = Arc::new(DashMap::new());
        let census = Arc::new(ActorCensus::default());
        let (router, _writer) = start_conversations(ConversationsSetup {
            rest,
            views: views.clone(),
            write_statuses: Arc::new(DashMap::new()),
            router: RouterSettings {
                max_live: settings.max_live,
                tombstone_capacity: 10_000,
                tombstone_ttl: Duration::from_secs(3600),
                finished_views: 10_000,
                idle_timeout: settings.idle_timeout,
                reread_concurrency: 2,
            },
            writer: WriterSettings {
                max_in_flight: 4,
                conditional_writes: strict,
                fence: None,
            },
            write_back: true,
            store: settings.store.clone(),
            handover: None,
            census: Some(Arc::clone(&census)),
            board: None,
        });
        let mut harness = Harness {
            emulator,
            router,
            census,
            views,
            http,
            integrations: Vec::new(),
        };
        let org = harness.control("GET", "/org", None).await;
        harness.integrations = org["queues"]
            .as_array()
            .unwrap()
            .iter()
            .map(|q| q["integrationId"].as_str().unwrap().to_owned())
            .collect();
        harness
    }

    pub async fn control(&self, method: &str, path: &str, body: Option<Value>) -> Value {
        support::control(&self.http, &self.emulator, method, path, body).await
    }

    /// Fast synthetic agents so a conversation runs its whole life in well under a second.
    pub async fn fast_routing(&self) {
        self.control(
            "PUT",
            "/routing",
            Some(json!({"answer_after_ms": 40, "reply_after_ms": 40, "agent_replies": 1, "wrapup_after_ms": 40})),
        )
        .await;
    }

    /// A customer writes in through open messaging; returns the conversation id.
    pub async fn inbound(&self, queue: usize, sender: &str) -> String {
        let token = self.token().await;
        let url = format!(
            "{}/api/v2/conversations/messages/{}/inbound/open/message?prefetchConversationId=true",
            self.emulator.base_url(),
            self.integrations[queue % self.integrations.len()]
        );
        let body = json!({
            "channel": {"from": {"id": sender, "idType": "Opaque", "nickname": sender}, "time": Utc::now().to_rfc3339()},
            "text": "hello",
        });
        let mut response = self
            .http
            .post(url)
            .insert_header(("Authorization", format!("Bearer {token}")))
            .send_json(&body)
            .await
            .unwrap();
        assert!(
            response.status().is_success(),
            "inbound: {}",
            response.status()
        );
        let value: Value = response.json().await.unwrap();
        value["conversationId"].as_str().unwrap().to_owned()
    }

    async fn token(&self) -> String {
        support::emulator_token(&self.http, &self.emulator).await
    }

    pub async fn truth(&self) -> Vec<Value> {
        support::truth(&self.http, &self.emulator).await
    }

    /// Whether every conversation in the truth has ended and its wrap-ups are recorded.
    pub async fn all_finished_in_truth(&self, expected: usize) -> bool {
        let truth = self.truth().await;
        truth.len() == expected && support::all_finished(&truth)
    }
}

#[actix_rt::test]
async fn reconciliation_discovers_missed_conversations_and_converges_to_the_truth() {
    let h = Harness::start(EmulatorOptions::default()).await;
    h.fast_routing().await;
    for n in 0..8 {
        h.inbound(n, &format!("customer-{n}")).await;
    }
    assert!(
        eventually(Duration::from_secs(60), || h.all_finished_in_truth(8)).await,
        "the emulator did not finish its conversations"
    );
    // Convoy saw none of it (no stream): a start-up reconciliation must find them all.
    h.router.do_send(Reconcile {
        gap_started_at: Utc::now() - chrono::Duration::hours(1),
        reason: "startup",
    });
    let converged = eventually(Duration::from_secs(60), || async {
        let truth = h.truth().await;
        differences(&h.views, &truth).is_empty() && unwritten_attributes(&truth).is_empty()
    })
    .await;
    let truth = h.truth().await;
    assert!(
        converged,
        "{:?} {:?}",
        differences(&h.views, &truth),
        unwritten_attributes(&truth)
    );
    // Finished conversations stopped their actors but stay visible.
    for conversation in &truth {
        let id = ConversationId::from(conversation["id"].as_str().unwrap());
        let gone = eventually(Duration::from_secs(30), || async {
            h.router
                .send(LookupConversation(id.clone()))
                .await
                .unwrap()
                .is_none()
        })
        .await;
        assert!(gone, "the actor of finished conversation {id} did not stop");
        assert_eq!(h.views.get(&id).unwrap().to_json(None)["finished"], true);
    }
    h.emulator.stop().await;
}

#[actix_rt::test]
async fn conflicting_writers_are_resolved_by_rereading_with_strict_if_match() {
    let h = Harness::start(EmulatorOptions {
        strict_if_match: true,
        ..EmulatorOptions::default()
    })
    .await;
    h.fast_routing().await;
    for n in 0..4 {
        h.inbound(n, &format!("strict-{n}")).await;
    }
    assert!(eventually(Duration::from_secs(60), || h.all_finished_in_truth(4)).await);
    // Another writer changes every conversation before Convoy writes.
    for conversation in h.truth().await {
        let id = conversation["id"].as_str().unwrap();
        h.control("POST", &format!("/conversations/{id}/touch"), None)
            .await;
    }
    h.router.do_send(Reconcile {
        gap_started_at: Utc::now() - chrono::Duration::hours(1),
        reason: "startup",
    });
    let converged = eventually(Duration::from_secs(60), || async {
        let truth = h.truth().await;
        differences(&h.views, &truth).is_empty() && unwritten_attributes(&truth).is_empty()
    })
    .await;
    let truth = h.truth().await;
    assert!(
        converged,
        "{:?} {:?}",
        differences(&h.views, &truth),
        unwritten_attributes(&truth)
    );
    // The other writer's attribute survived: Convoy only writes its own keys.
    assert!(truth.iter().any(|c| c["participants"]
        .as_array()
        .unwrap()
        .iter()
        .any(|p| p["attributes"].get("other.writer").is_some())));
    h.emulator.stop().await;
}

#[actix_rt::test]
async fn a_conversation_the_stream_could_not_hand_over_is_re_read_by_the_router() {
    let h = Harness::start(EmulatorOptions::default()).await;
    h.fast_routing().await;
    let id = ConversationId::from(h.inbound(0, "missed-event").await.as_str());
    assert!(eventually(Duration::from_secs(60), || h.all_finished_in_truth(1)).await);
    // No stream and no reconciliation: only the stream's report of a missed event.
    h.router.do_send(RereadConversation {
        conversation_id: id.clone(),
    });
    let converged = eventually(Duration::from_secs(60), || async {
        h.views.contains_key(&id) && differences(&h.views, &h.truth().await).is_empty()
    })
    .await;
    assert!(converged, "{:?}", differences(&h.views, &h.truth().await));
    h.emulator.stop().await;
}

/// Cluster worker role: a lost partition's live conversations are retired from this
/// worker (their new owner rebuilds them), and no other conversation is touched.
#[actix_rt::test]
async fn releasing_a_lost_partition_retires_exactly_its_conversations() {
    use convoy::cluster::Partitions;
    use convoy_actors::conversation::router::ReleasePartition;

    let h = Harness::start(EmulatorOptions::default()).await;
    // No routing speed-up: the conversations wait in their queues, alive.
    let mut ids = Vec::new();
    for n in 0..12 {
        ids.push(ConversationId::from(
            h.inbound(n, &format!("waiting-{n}")).await.as_str(),
        ));
    }
    for id in &ids {
        h.router.do_send(RereadConversation {
            conversation_id: id.clone(),
        });
    }
    let live = |id: ConversationId| {
        let router = h.router.clone();
        async move { router.send(LookupConversation(id)).await.unwrap().is_some() }
    };
    let all_live = eventually(Duration::from_secs(60), || async {
        for id in &ids {
            if !live(id.clone()).await {
                return false;
            }
        }
        true
    })
    .await;
    assert!(all_live, "the conversations did not all come alive");

    let partitions = Partitions::new(3).unwrap();
    let partition = partitions.of(ids[0].text().as_str()).0;
    let (lost, kept): (Vec<_>, Vec<_>) = ids
        .iter()
        .cloned()
        .partition(|id| partitions.of(id.text().as_str()).0 == partition);
    assert!(!kept.is_empty(), "12 ids all in one of 3 partitions");
    let retired = h
        .router
        .send(ReleasePartition {
            partitions,
            partition,
        })
        .await
        .unwrap();
    assert_eq!(retired, lost.len());
    let gone = eventually(Duration::from_secs(30), || async {
        for id in &lost {
            if live(id.clone()).await {
                return false;
            }
        }
        true
    })
    .await;
    assert!(gone, "a lost partition's conversation is still alive here");
    for id in &kept {
        assert!(
            live(id.clone()).await,
            "{id} of another partition was retired"
        );
    }
    h.emulator.stop().await;
}
