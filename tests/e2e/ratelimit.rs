//! The shared REST token bucket against the emulator's rate-limit faults: a server pause is
//! obeyed but clamped, shows on `/readyz`'s health board, and traffic resumes after it.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::sync::Arc;
use std::time::{Duration, Instant};

use actix::Actor;
use convoy::config::Secret;
use convoy::ratelimit::TokenBucket;
use convoy_actors::admin::HealthBoard;
use convoy_actors::emulator::{Emulator, EmulatorOptions};
use convoy_actors::genesys::oauth::TokenEndpoint;
use convoy_actors::genesys::rest::{GenesysRest, RestContext, RestRequest, SharedBucket};
use convoy_actors::token::{TokenActor, TokenStats};
use serde_json::json;

use crate::support::{client, control};

/// A 429 asking for ten years (`Retry-After: 315360000`, and a used-up window resetting
/// in a day) pauses REST for the clamp only; the call then succeeds.
#[actix_rt::test]
async fn an_absurd_retry_after_pauses_only_for_the_clamp_then_traffic_resumes() {
    let http = client();
    let emulator = Emulator::start(EmulatorOptions {
        rate_limit_per_minute: 0,
        ..EmulatorOptions::default()
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
    let board = Arc::new(HealthBoard::default());
    let clamp = Duration::from_secs(2);
    let bucket = Arc::new(
        SharedBucket::with_bucket(TokenBucket::new(60_000, 100).with_max_server_pause(clamp))
            .with_health(Arc::clone(&board)),
    );
    let rest = GenesysRest::new(RestContext {
        api_base: emulator.base_url(),
        tokens,
        bucket: Arc::clone(&bucket),
        transport: Default::default(),
    });
    control(
        &http,
        &emulator,
        "PUT",
        "/faults",
        Some(json!({"rate_limit_next": 1, "retry_after_s": 315_360_000u64})),
    )
    .await;

    let started = Instant::now();
    let call = rest.call(RestRequest::get(
        "/api/v2/notifications/channels",
        "GET /api/v2/notifications/channels",
    ));
    let response = actix_rt::time::timeout(Duration::from_secs(60), call)
        .await
        .expect("REST traffic resumed after the clamped pause")
        .expect("the retried call succeeds");
    assert_eq!(response.status, 200);
    assert!(
        started.elapsed() >= clamp,
        "the pause was obeyed up to the clamp"
    );
    let faults = control(&http, &emulator, "GET", "/faults", None).await;
    assert_eq!(
        faults["rate_limit_next"].as_u64().unwrap_or(0),
        0,
        "the 429 was served"
    );

    // The same through a used-up `inin-ratelimit-*` window resetting in a day: /readyz
    // shows the pause while it lasts, and it ends within the clamp.
    control(
        &http,
        &emulator,
        "PUT",
        "/faults",
        Some(json!({"rate_limit_next": 1, "retry_after_s": 315_360_000u64, "ratelimit_reset_s": 86_400})),
    )
    .await;
    let call = rest.call(RestRequest::get(
        "/api/v2/notifications/channels",
        "GET /api/v2/notifications/channels",
    ));
    let (outcome, paused_seen) = futures_util::future::join(
        actix_rt::time::timeout(Duration::from_secs(60), call),
        async {
            let deadline = Instant::now() + Duration::from_secs(30);
            while Instant::now() < deadline {
                let check = board.readiness_now().checks.rest;
                if !check.ok {
                    return check.detail;
                }
                actix_rt::time::sleep(Duration::from_millis(10)).await;
            }
            None
        },
    )
    .await;
    outcome
        .expect("traffic resumed")
        .expect("the call succeeds");
    let detail = paused_seen.expect("/readyz showed the paused bucket");
    assert!(detail.contains("asked for 315360000 s"), "{detail}");
    assert!(bucket.paused_for().is_none_or(|left| left <= clamp));
    emulator.stop().await;
}
