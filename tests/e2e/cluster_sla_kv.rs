//! SLA clock books in NATS KV against a real `nats-server -js`: the owner of a partition
//! mirrors a conversation's book; after a handover the new owner loads it (the clock
//! survives), the old owner's writes are refused, and only the partition's books load.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::collections::BTreeSet;
use std::sync::{Arc, Mutex};

use async_nats::jetstream;
use convoy::cluster::Partitions;
use convoy_actors::cluster::sla_kv::{OwnsPartition, SaveOutcome, SlaClockStore};
use serde_json::json;

use crate::nats::NatsServer;

const STREAM: &str = "SLA_TEST";
const CONVERSATION: &str = "3f1c2a9e-7b8d-4c1e-9a2f-0d6b5e4c3a21";

type Owned = Arc<Mutex<BTreeSet<u16>>>;

async fn store_of(js: &jetstream::Context, owned: &Owned) -> SlaClockStore {
    let owned = Arc::clone(owned);
    let owns: OwnsPartition = Arc::new(move |partition| owned.lock().unwrap().contains(&partition));
    SlaClockStore::open_with(js, STREAM, 1, Partitions::new(16).unwrap(), owns)
        .await
        .expect("open the SLA bucket")
}

/// A cluster worker's SlaActor mirroring into `clocks`, with its outbox (in the returned
/// temporary folder); `keep_records`: a CRM is configured.
fn cluster_sla_actor(
    clocks: &SlaClockStore,
    keep_records: bool,
) -> (
    actix::Addr<convoy_actors::sla::SlaActor>,
    Arc<convoy_actors::store::DurableStore>,
    tempfile::TempDir,
) {
    use actix::Actor;
    use convoy::config::SlaConfig;
    use convoy::sla::SlaPolicy;
    use convoy_actors::clock::Clock;
    use convoy_actors::outbox_writer::{OutboxGate, OutboxWriter};
    use convoy_actors::sla::{SlaActor, SlaSettings};
    use convoy_actors::store::DurableStore;

    let folder = tempfile::tempdir().unwrap();
    let outbox = Arc::new(DurableStore::open(&folder.path().join("outbox.redb")).unwrap());
    let writer = OutboxWriter::start(
        Arc::clone(&outbox),
        Arc::new(OutboxGate::new(1_000, 0)),
        Box::new(|_| {}),
    )
    .unwrap();
    let settings = SlaSettings {
        policy: SlaPolicy::from_config(&SlaConfig::default()),
        tick: std::time::Duration::from_secs(1),
        keep_records,
        clock: Clock::System,
    };
    let sla = SlaActor::new(settings, &outbox, writer, Arc::default())
        .with_cluster_clocks(clocks.clone())
        .start();
    (sla, outbox, folder)
}

/// A conversation id in another partition than [`CONVERSATION`].
fn elsewhere(store: &SlaClockStore) -> String {
    (0..)
        .map(|n| format!("other-{n}"))
        .find(|id| store.partition_of(id) != store.partition_of(CONVERSATION))
        .unwrap()
}

#[actix_rt::test]
async fn a_conversations_clocks_move_with_its_partition() {
    crate::support::install_crypto();
    let server = NatsServer::start();
    let js = jetstream::new(async_nats::connect(server.url()).await.unwrap());
    let alpha_owns: Owned = Arc::default();
    let beta_owns: Owned = Arc::default();
    let alpha = store_of(&js, &alpha_owns).await;
    let beta = store_of(&js, &beta_owns).await;
    let partition = alpha.partition_of(CONVERSATION);
    let other = elsewhere(&alpha);

    alpha_owns
        .lock()
        .unwrap()
        .extend([partition, alpha.partition_of(&other)]);
    let opened = json!({"book": {"clocks": ["delivery"]}, "summary": null});
    assert_eq!(
        alpha.save(CONVERSATION, Some(&opened)).await.unwrap(),
        SaveOutcome::Saved
    );
    assert_eq!(
        alpha.save(&other, Some(&json!({"x": 1}))).await.unwrap(),
        SaveOutcome::Saved
    );
    let advanced = json!({"book": {"clocks": ["delivery", "read"]}, "summary": null});
    assert_eq!(
        alpha.save(CONVERSATION, Some(&advanced)).await.unwrap(),
        SaveOutcome::Saved
    );
    assert_eq!(
        beta.save(CONVERSATION, Some(&json!({"stale": true})))
            .await
            .unwrap(),
        SaveOutcome::NotOwner,
        "a worker that does not own the partition writes nothing"
    );

    // Handover: alpha is told Lost, beta Acquired and loads the partition.
    alpha_owns.lock().unwrap().remove(&partition);
    beta_owns.lock().unwrap().insert(partition);
    let loaded = beta.load_partition(partition).await.unwrap();
    assert_eq!(loaded.len(), 1, "only the partition's books: {loaded:?}");
    assert_eq!(loaded[0].conversation, CONVERSATION);
    assert_eq!(
        loaded[0].book, advanced,
        "the newest book survives the handover"
    );

    assert_eq!(
        alpha
            .save(CONVERSATION, Some(&json!({"late": true})))
            .await
            .unwrap(),
        SaveOutcome::NotOwner
    );
    let settled = json!({"settled_at": "2026-12-02T16:00:00Z", "tallies": {}});
    assert_eq!(
        beta.save(CONVERSATION, Some(&settled)).await.unwrap(),
        SaveOutcome::Saved
    );
    assert_eq!(
        beta.load_partition(partition).await.unwrap()[0].book,
        settled
    );

    // Retention ends: the book is deleted and no longer loads.
    assert_eq!(
        beta.save(CONVERSATION, None::<&serde_json::Value>)
            .await
            .unwrap(),
        SaveOutcome::Saved
    );
    assert!(beta.load_partition(partition).await.unwrap().is_empty());
    assert_eq!(
        alpha
            .load_partition(alpha.partition_of(&other))
            .await
            .unwrap()
            .len(),
        1
    );
}

/// The SlaActor's side of a handover: on `Acquired` it resumes the partition's books from
/// KV (and keeps them in its own outbox, so its own restart resumes them too); on `Lost`
/// it forgets them locally while KV keeps them for the next owner.
#[actix_rt::test]
async fn the_sla_actor_resumes_a_partitions_clocks_and_forgets_them_when_lost() {
    use convoy::sla::SlaBook;
    use convoy_actors::sla::{DropPartitionClocks, GetSlaStats, LoadPartitionClocks};
    use std::time::Duration;

    crate::support::install_crypto();
    let server = NatsServer::start();
    let js = jetstream::new(async_nats::connect(server.url()).await.unwrap());
    let owned: Owned = Arc::default();
    let clocks = store_of(&js, &owned).await;
    let partition = clocks.partition_of(CONVERSATION);
    owned.lock().unwrap().insert(partition);
    // What the previous owner's SlaActor mirrored: an open book.
    let book = json!({
        "book": serde_json::to_value(SlaBook::new(CONVERSATION)).unwrap(),
        "summary": null,
    });
    assert_eq!(
        clocks.save(CONVERSATION, Some(&book)).await.unwrap(),
        SaveOutcome::Saved
    );

    let (sla, outbox, _folder) = cluster_sla_actor(&clocks, false);

    let loaded = sla
        .send(LoadPartitionClocks { partition })
        .await
        .unwrap()
        .unwrap();
    assert_eq!(loaded, 1);
    assert_eq!(sla.send(GetSlaStats).await.unwrap().conversations, 1);
    let in_outbox = || {
        outbox
            .sla_books()
            .unwrap()
            .iter()
            .any(|(id, _)| id == CONVERSATION)
    };
    assert!(
        crate::support::eventually(Duration::from_secs(30), || async { in_outbox() }).await,
        "the loaded book is kept in this worker's outbox"
    );

    let dropped = sla.send(DropPartitionClocks { partition }).await.unwrap();
    assert_eq!(dropped, 1);
    assert_eq!(sla.send(GetSlaStats).await.unwrap().conversations, 0);
    assert!(
        crate::support::eventually(Duration::from_secs(30), || async { !in_outbox() }).await,
        "a lost partition's books leave this worker's outbox"
    );
    assert_eq!(
        clocks.load_partition(partition).await.unwrap().len(),
        1,
        "KV keeps them for the next owner"
    );
}

/// A partition's load reads exactly its own keys, however many there are: `p1.` must
/// not take `p10.`–`p15.` (the key filter ends at the partition's token), and every
/// book of a busy partition arrives.
#[actix_rt::test]
async fn a_partition_loads_exactly_its_own_books() {
    crate::support::install_crypto();
    let server = NatsServer::start();
    let js = jetstream::new(async_nats::connect(server.url()).await.unwrap());
    let owned: Owned = Arc::new(Mutex::new((0..16).collect()));
    let store = store_of(&js, &owned).await;
    let mut expected = std::collections::BTreeMap::<u16, BTreeSet<String>>::new();
    for n in 0..400 {
        let id = format!("conversation-{n}");
        store.save(&id, Some(&json!({ "n": n }))).await.unwrap();
        expected
            .entry(store.partition_of(&id))
            .or_default()
            .insert(id);
    }
    assert!(expected.contains_key(&1) && expected.contains_key(&10));
    for partition in 0..16 {
        let loaded: BTreeSet<String> = store
            .load_partition(partition)
            .await
            .unwrap()
            .into_iter()
            .map(|clocks| clocks.conversation)
            .collect();
        assert_eq!(
            loaded,
            expected.remove(&partition).unwrap_or_default(),
            "partition {partition}"
        );
    }
}

/// The worker acknowledges a frame once the SlaActor answers its handover, so that answer
/// must wait for the books to be in NATS KV as well as in the outbox: when it is `Ok`,
/// the next owner already loads them; when NATS cannot take them, it is refused (the
/// conversation hands the facts over again and the frame stays unacknowledged).
#[actix_rt::test]
async fn a_handover_is_answered_only_once_its_clocks_are_in_kv() {
    use convoy::conversation::facts::facts;
    use convoy::conversation::Conversation;
    use convoy::crm::records::ConversationSummary;
    use convoy::parse::{classify_bytes, Classified};
    use convoy_actors::sla::{Handover, HandoverRefused, HandoverStep};

    crate::support::install_crypto();
    let server = NatsServer::start();
    let js = jetstream::new(async_nats::connect(server.url()).await.unwrap());
    let owned: Owned = Arc::new(Mutex::new((0..16).collect()));
    let clocks = store_of(&js, &owned).await;
    let (sla, _outbox, _folder) = cluster_sla_actor(&clocks, false);

    let frame =
        include_bytes!("../fixtures/genesys/ws_event_queue_conversations_message_connected.json");
    let Ok(Classified::Snapshot { snapshot, .. }) = classify_bytes(frame) else {
        panic!("the fixture is a conversation snapshot");
    };
    let id = snapshot.conversation_id.clone();
    let mut conversation = Conversation::new(id.clone());
    let outcome = conversation.apply_snapshot(&snapshot).unwrap();
    let handover = || Handover {
        conversation_id: id.clone(),
        steps: Arc::from(vec![HandoverStep {
            observed_at: chrono::Utc::now(),
            facts: facts(&conversation.state, &outcome),
            finished: false,
        }]),
        summary: ConversationSummary::of(&conversation.state, 1),
    };

    assert_eq!(sla.send(handover()).await.unwrap(), Ok(()));
    let partition = clocks.partition_of(id.text().as_str());
    let mirrored = clocks.load_partition(partition).await.unwrap();
    assert!(
        mirrored
            .iter()
            .any(|stored| stored.conversation == id.text().as_str()),
        "answered before its book was in KV: {mirrored:?}"
    );

    drop(server);
    assert_eq!(
        sla.send(handover()).await.unwrap(),
        Err(HandoverRefused::NotMirrored),
        "committed locally, but its book could not reach KV"
    );
}

/// A worker killed after committing an SLA outcome to its own outbox, before the CRM got
/// it: nobody sends that outbox any more, and the book in KV has already settled the
/// clock, so the next owner would never emit the outcome again. Loading a partition
/// therefore re-commits the records of everything its books already emitted (same ids;
/// the CRM de-duplicates).
#[actix_rt::test]
async fn a_taken_over_book_re_commits_the_records_it_already_emitted() {
    use chrono::{TimeZone, Utc};
    use convoy::config::SlaConfig;
    use convoy::sla::{Observation, SlaBook, SlaPolicy};
    use convoy_actors::sla::LoadPartitionClocks;

    crate::support::install_crypto();
    let server = NatsServer::start();
    let js = jetstream::new(async_nats::connect(server.url()).await.unwrap());
    let owned: Owned = Arc::new(Mutex::new((0..16).collect()));
    let clocks = store_of(&js, &owned).await;

    // The dead worker's book: a customer waited 5 s in the queue, then an agent answered.
    let policy = SlaPolicy::from_config(&SlaConfig::default());
    let started = Utc.with_ymd_and_hms(2026, 12, 3, 9, 0, 0).unwrap();
    let mut book = SlaBook::new(CONVERSATION);
    let mut emitted = book.observe(
        &policy,
        &[Observation::QueueJoined {
            participant_id: "acd-leg".to_owned(),
            queue_id: Some("queue-1".to_owned()),
        }],
        started,
    );
    emitted.extend(book.observe(
        &policy,
        &[Observation::AgentConnected {
            participant_id: "agent-leg".to_owned(),
            queue_id: Some("queue-1".to_owned()),
            user_id: Some("user-1".to_owned()),
        }],
        started + chrono::Duration::seconds(5),
    ));
    assert_eq!(emitted.len(), 1, "the answer clock's outcome: {emitted:?}");
    let stored = json!({ "book": book, "summary": null });
    assert_eq!(
        clocks.save(CONVERSATION, Some(&stored)).await.unwrap(),
        SaveOutcome::Saved
    );

    let (sla, outbox, _folder) = cluster_sla_actor(&clocks, true);
    let partition = clocks.partition_of(CONVERSATION);
    assert_eq!(
        sla.send(LoadPartitionClocks { partition })
            .await
            .unwrap()
            .unwrap(),
        1
    );
    let expected = format!("{CONVERSATION}/sla/answer/acd-leg/outcome");
    let recommitted = crate::support::eventually(std::time::Duration::from_secs(30), || async {
        outbox
            .pending_records(None, 100)
            .unwrap()
            .iter()
            .any(|pending| pending.record.id == expected)
    })
    .await;
    assert!(
        recommitted,
        "{expected} not in the new owner's outbox: {:?}",
        outbox.pending_records(None, 100).unwrap()
    );
}
