//! TokenActor against the emulator's real `/oauth/token`.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::Duration;

use actix::Actor;
use convoy::config::Secret;
use convoy_actors::emulator::{Emulator, EmulatorOptions};
use convoy_actors::genesys::oauth::{TokenEndpoint, TokenError};
use convoy_actors::token::{GetToken, InvalidateToken, TokenActor, TokenStats};

use crate::support::{client, eventually, install_crypto};

fn endpoint(emulator: &Emulator, secret: &str) -> TokenEndpoint {
    TokenEndpoint {
        login_base: emulator.base_url(),
        client_id: emulator.client_id().to_owned(),
        client_secret: Secret::new(secret.to_owned()),
    }
}

#[actix_rt::test]
async fn concurrent_askers_share_one_refresh() {
    install_crypto();
    let emulator = Emulator::start(EmulatorOptions::default()).await.unwrap();
    let stats = Arc::new(TokenStats::default());
    let actor =
        TokenActor::new(endpoint(&emulator, emulator.client_secret()), stats.clone()).start();
    let asks: Vec<_> = (0..20).map(|_| actor.send(GetToken)).collect();
    let tokens: Vec<_> = futures_util::future::join_all(asks)
        .await
        .into_iter()
        .map(|reply| reply.unwrap().unwrap())
        .collect();
    assert!(tokens.windows(2).all(|pair| pair[0] == pair[1]));
    assert_eq!(stats.refreshes.load(Ordering::Relaxed), 1);
    emulator.stop().await;
}

#[actix_rt::test]
async fn a_wrong_secret_is_a_configuration_error_not_a_retry_loop() {
    install_crypto();
    let emulator = Emulator::start(EmulatorOptions::default()).await.unwrap();
    let stats = Arc::new(TokenStats::default());
    let actor = TokenActor::new(endpoint(&emulator, "not-the-secret"), stats.clone()).start();
    let error = actor.send(GetToken).await.unwrap().unwrap_err();
    match &error {
        TokenError::Rejected { status, error, .. } => {
            assert_eq!(*status, 401);
            assert_eq!(error, "invalid_client");
        }
        other => panic!("expected a rejection, got {other:?}"),
    }
    assert!(!error.is_retryable());
    assert!(!format!("{error:?} {error}").contains("not-the-secret"));
    emulator.stop().await;
}

#[actix_rt::test]
async fn tokens_are_refreshed_ahead_of_expiry() {
    install_crypto();
    let options = EmulatorOptions {
        token_ttl: Duration::from_secs(2),
        ..EmulatorOptions::default()
    };
    let emulator = Emulator::start(options).await.unwrap();
    let stats = Arc::new(TokenStats::default());
    let actor =
        TokenActor::new(endpoint(&emulator, emulator.client_secret()), stats.clone()).start();
    let first = actor.send(GetToken).await.unwrap().unwrap();
    let refreshed = eventually(Duration::from_secs(30), || {
        let stats = stats.clone();
        async move { stats.refreshes.load(Ordering::Relaxed) >= 3 }
    })
    .await;
    assert!(
        refreshed,
        "the token was not refreshed ahead of its 2 s expiry"
    );
    let later = actor.send(GetToken).await.unwrap().unwrap();
    assert_ne!(first, later);
    emulator.stop().await;
}

#[actix_rt::test]
async fn a_401_invalidates_the_token_and_the_next_ask_gets_a_working_one() {
    let http = client();
    let emulator = Emulator::start(EmulatorOptions::default()).await.unwrap();
    let stats = Arc::new(TokenStats::default());
    let actor =
        TokenActor::new(endpoint(&emulator, emulator.client_secret()), stats.clone()).start();
    let token = actor.send(GetToken).await.unwrap().unwrap();
    let channels = format!("{}/api/v2/notifications/channels", emulator.base_url());
    let response = http
        .get(&channels)
        .insert_header(("Authorization", token.bearer_header()))
        .send()
        .await
        .unwrap();
    assert_eq!(response.status().as_u16(), 200);

    http.post(format!("{}/emulator/v1/tokens/revoke", emulator.base_url()))
        .send()
        .await
        .unwrap();
    let response = http
        .get(&channels)
        .insert_header(("Authorization", token.bearer_header()))
        .send()
        .await
        .unwrap();
    assert_eq!(response.status().as_u16(), 401);

    actor
        .send(InvalidateToken {
            token: token.clone(),
        })
        .await
        .unwrap();
    // A second report of the same stale token does not trigger another refresh.
    actor
        .send(InvalidateToken {
            token: token.clone(),
        })
        .await
        .unwrap();
    let fresh = actor.send(GetToken).await.unwrap().unwrap();
    assert_ne!(fresh, token);
    let response = http
        .get(&channels)
        .insert_header(("Authorization", fresh.bearer_header()))
        .send()
        .await
        .unwrap();
    assert_eq!(response.status().as_u16(), 200);
    assert_eq!(stats.invalidations.load(Ordering::Relaxed), 1);
    emulator.stop().await;
}
