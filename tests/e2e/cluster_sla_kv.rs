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
        beta.save(CONVERSATION, None).await.unwrap(),
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
    use actix::Actor;
    use convoy::config::SlaConfig;
    use convoy::sla::{SlaBook, SlaPolicy};
    use convoy_actors::clock::Clock;
    use convoy_actors::outbox_writer::{OutboxGate, OutboxWriter};
    use convoy_actors::sla::{
        DropPartitionClocks, GetSlaStats, LoadPartitionClocks, SlaActor, SlaSettings,
    };
    use convoy_actors::store::DurableStore;
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
        tick: Duration::from_secs(1),
        keep_records: false,
        clock: Clock::System,
    };
    let sla = SlaActor::new(settings, &outbox, writer, Arc::default())
        .with_cluster_clocks(clocks.clone())
        .start();

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
