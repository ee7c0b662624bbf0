//! TokenActor against the emulator's real `/oauth/token`.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::Duration;

use actix::Actor;
use convoy::config::Secret;
use convoy_actors::emulator::{Emulator, EmulatorOptions};
use convoy_actors::genesys::oauth::{TokenEndpoint, TokenError};
use convoy_actors::supervision::{
    Escalation, EscalationCause, EXIT_CREDENTIALS_REFUSED, EXIT_LOGIN_UNREACHABLE,
};
use convoy_actors::telemetry::{names, sample, Telemetry};
use convoy_actors::token::{
    GetToken, InvalidateToken, TokenActor, TokenPolicy, TokenStats, MIN_REFRESH_INTERVAL,
};
use serde_json::json;

use crate::support::{client, control, eventually, install_crypto};

/// An escalation that records its causes instead of stopping the test's System.
fn recorded() -> (Escalation, Arc<std::sync::Mutex<Vec<EscalationCause>>>) {
    let causes: Arc<std::sync::Mutex<Vec<EscalationCause>>> = Arc::default();
    let sink = Arc::clone(&causes);
    let escalation = Escalation::new(move |cause| sink.lock().unwrap().push(cause.clone()));
    (escalation, causes)
}

fn failures_metric(telemetry: &Telemetry) -> f64 {
    sample::value(&telemetry.render(), names::TOKEN_REFRESH_FAILURES, &[]).unwrap_or(0.0)
}

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
    let (escalation, _) = recorded();
    let actor = TokenActor::new(endpoint(&emulator, "not-the-secret"), stats.clone())
        .with_escalation(escalation)
        .start();
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

#[actix_rt::test]
async fn a_refused_client_stops_the_process_with_the_credentials_exit_code_after_bounded_attempts()
{
    install_crypto();
    let telemetry = Telemetry::install().unwrap();
    let before = failures_metric(&telemetry);
    let emulator = Emulator::start(EmulatorOptions::default()).await.unwrap();
    let stats = Arc::new(TokenStats::default());
    let (escalation, causes) = recorded();
    let _actor = TokenActor::new(endpoint(&emulator, "not-the-secret"), stats.clone())
        .with_policy(TokenPolicy {
            credential_attempts: 3,
            retry_initial: Duration::from_millis(50),
            ..TokenPolicy::default()
        })
        .with_escalation(escalation)
        .start();
    let escalated = eventually(Duration::from_secs(30), || {
        let causes = causes.clone();
        async move { !causes.lock().unwrap().is_empty() }
    })
    .await;
    assert!(escalated, "a refused client never stopped the process");
    let cause = causes.lock().unwrap()[0].clone();
    assert_eq!(
        cause,
        EscalationCause::CredentialsRefused {
            attempts: 3,
            status: 401
        }
    );
    assert_eq!(cause.exit_code(), EXIT_CREDENTIALS_REFUSED);
    // No attempt after giving up.
    actix_rt::time::sleep(Duration::from_millis(300)).await;
    assert_eq!(stats.refresh_failures.load(Ordering::Relaxed), 3);
    assert!(failures_metric(&telemetry) - before >= 3.0);
    emulator.stop().await;
}

#[actix_rt::test]
async fn an_unreachable_login_host_stops_the_process_after_the_configured_time() {
    install_crypto();
    let telemetry = Telemetry::install().unwrap();
    let before = failures_metric(&telemetry);
    // A port nobody listens on: bound, then released.
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let stats = Arc::new(TokenStats::default());
    let (escalation, causes) = recorded();
    let actor = TokenActor::new(
        TokenEndpoint {
            login_base: format!("http://127.0.0.1:{port}"),
            client_id: "client".to_owned(),
            client_secret: Secret::new("secret".to_owned()),
        },
        stats.clone(),
    )
    .with_policy(TokenPolicy {
        unreachable_exit_after: Duration::from_secs(1),
        retry_initial: Duration::from_millis(50),
        ..TokenPolicy::default()
    })
    .with_escalation(escalation)
    .start();
    let asker = actix_rt::spawn(actor.send(GetToken));
    let escalated = eventually(Duration::from_secs(60), || {
        let causes = causes.clone();
        async move { !causes.lock().unwrap().is_empty() }
    })
    .await;
    assert!(
        escalated,
        "an unreachable login host never stopped the process"
    );
    let cause = causes.lock().unwrap()[0].clone();
    match cause {
        EscalationCause::LoginUnreachable { failing_for } => {
            assert!(failing_for >= Duration::from_secs(1), "{failing_for:?}");
        }
        other => panic!("expected LoginUnreachable, got {other:?}"),
    }
    assert_eq!(cause.exit_code(), EXIT_LOGIN_UNREACHABLE);
    // The asker waiting meanwhile is answered, not left hanging.
    let answer = actix_rt::time::timeout(Duration::from_secs(30), asker)
        .await
        .unwrap()
        .unwrap()
        .unwrap();
    assert!(answer.is_err());
    let failures = stats.refresh_failures.load(Ordering::Relaxed);
    assert!(failures >= 2, "{failures}");
    assert!(failures_metric(&telemetry) - before >= 2.0);
}

#[actix_rt::test]
async fn an_expires_in_near_u64_max_is_clamped_and_the_actor_keeps_working() {
    let http = client();
    let emulator = Emulator::start(EmulatorOptions::default()).await.unwrap();
    control(
        &http,
        &emulator,
        "PUT",
        "/faults",
        Some(json!({"token_expires_in_s": u64::MAX})),
    )
    .await;
    let stats = Arc::new(TokenStats::default());
    let (escalation, causes) = recorded();
    let actor = TokenActor::new(endpoint(&emulator, emulator.client_secret()), stats.clone())
        .with_escalation(escalation)
        .start();
    let first = actor.send(GetToken).await.unwrap().unwrap();
    let again = actor.send(GetToken).await.unwrap().unwrap();
    assert_eq!(first, again, "the cached token is served");
    let expires_at = stats.expires_at().expect("an expiry is known");
    assert!(expires_at > std::time::Instant::now());
    assert!(causes.lock().unwrap().is_empty());
    emulator.stop().await;
}

#[actix_rt::test]
async fn an_expires_in_of_zero_does_not_loop() {
    let http = client();
    let emulator = Emulator::start(EmulatorOptions::default()).await.unwrap();
    control(
        &http,
        &emulator,
        "PUT",
        "/faults",
        Some(json!({"token_expires_in_s": 0})),
    )
    .await;
    let stats = Arc::new(TokenStats::default());
    let actor =
        TokenActor::new(endpoint(&emulator, emulator.client_secret()), stats.clone()).start();
    let started = std::time::Instant::now();
    // Ask as fast as possible for a while: every ask finds the token "expired".
    while started.elapsed() < Duration::from_secs(3) {
        actor.send(GetToken).await.unwrap().unwrap();
        actix_rt::time::sleep(Duration::from_millis(10)).await;
    }
    let elapsed = started.elapsed();
    let refreshes = stats.refreshes.load(Ordering::Relaxed);
    // At most one token request per MIN_REFRESH_INTERVAL (plus the first one).
    let bound = elapsed.as_millis() / MIN_REFRESH_INTERVAL.as_millis() + 2;
    assert!(
        u128::from(refreshes) <= bound,
        "{refreshes} token requests in {elapsed:?}"
    );
    emulator.stop().await;
}
