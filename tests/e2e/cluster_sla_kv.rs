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
