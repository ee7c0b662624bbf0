//! Write fences against a real `nats-server -js`: two workers racing for one
//! conversation's fence, exactly one wins (the one holding the partition's lease); after a
//! handover the old owner can neither take the fence back nor record a write on its old
//! token.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use async_nats::jetstream::{self, kv};
use convoy::cluster::{Partitions, WorkerId};
use convoy_actors::cluster::fence::{Fence, FenceError};
use convoy_actors::cluster::kv::leases_bucket;

use crate::nats::NatsServer;

const STREAM: &str = "FENCE_TEST";
const CONVERSATION: &str = "3f1c2a9e-7b8d-4c1e-9a2f-0d6b5e4c3a21";

async fn fence_of(js: &jetstream::Context, worker: &str) -> Fence {
    Fence::open_with(
        js,
        STREAM,
        1,
        Partitions::new(16).unwrap(),
        WorkerId(worker.to_owned()),
    )
    .await
    .expect("open the fence buckets")
}

/// Writes the partition's lease as the lease actor would (the holder's id as value).
async fn hand_lease_to(leases: &kv::Store, worker: &str) {
    let partition = Partitions::new(16).unwrap().of(CONVERSATION);
    leases
        .put(
            format!("p{}", partition.0),
            worker.as_bytes().to_vec().into(),
        )
        .await
        .unwrap();
}

#[actix_rt::test]
async fn of_two_workers_racing_for_a_conversation_exactly_one_writes() {
    crate::support::install_crypto();
    let server = NatsServer::start();
    let js = jetstream::new(async_nats::connect(server.url()).await.unwrap());
    let alpha = fence_of(&js, "alpha").await;
    let beta = fence_of(&js, "beta").await;
    let leases = js.get_key_value(leases_bucket(STREAM)).await.unwrap();

    // No lease yet: nobody may write.
    assert!(matches!(
        alpha.acquire(CONVERSATION).await,
        Err(FenceError::NotOwner { .. })
    ));

    hand_lease_to(&leases, "alpha").await;
    for _ in 0..5 {
        let (a, b) =
            futures_util::future::join(alpha.acquire(CONVERSATION), beta.acquire(CONVERSATION))
                .await;
        assert!(a.is_ok(), "the lease holder takes its fence: {a:?}");
        assert!(
            matches!(b, Err(FenceError::NotOwner { .. })),
            "the other worker may not: {b:?}"
        );
    }
    let token = alpha.acquire(CONVERSATION).await.unwrap();
    let token = alpha
        .advance(&token, token.record.version + 1)
        .await
        .unwrap();
    assert_eq!(token.record.version, 1);
    assert_eq!(token.record.worker, "alpha");

    // Handover: beta's lease (a newer revision) takes the fence and keeps the version.
    hand_lease_to(&leases, "beta").await;
    let taken = beta.acquire(CONVERSATION).await.unwrap();
    assert_eq!(taken.record.worker, "beta");
    assert_eq!(taken.record.version, 1, "the version moves with the fence");
    assert!(taken.record.lease_revision > token.record.lease_revision);

    // The old owner, not yet aware of the handover, cannot record a write on its token…
    assert!(matches!(
        alpha.advance(&token, 2).await,
        Err(FenceError::Conflict { .. })
    ));
    // …nor take the fence back, even if its stale lease were still in KV: a lease of an
    // older revision never beats the holder's.
    assert!(matches!(
        alpha.acquire(CONVERSATION).await,
        Err(FenceError::NotOwner { .. })
    ));
    let advanced = beta.advance(&taken, 2).await.unwrap();
    assert_eq!(advanced.record.version, 2);
}
