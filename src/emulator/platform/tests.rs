//! Specification of the platform's rules with synthetic time.

#![allow(clippy::unwrap_used, clippy::expect_used)]

use chrono::TimeZone;

use super::*;

const QUEUE: &str = "ff1633b1-a1f1-4efb-abe7-1a0a9021dd32";
const USER: &str = "c1969995-565b-4c59-881c-83a921a85da9";
const BASE: &str = "ws://127.0.0.1:9";

fn t0() -> DateTime<Utc> {
    Utc.with_ymd_and_hms(2025, 3, 4, 14, 0, 0).unwrap()
}

fn secs(n: i64) -> TimeDelta {
    TimeDelta::seconds(n)
}

fn platform() -> Platform {
    let mut platform = Platform::new(PlatformOptions {
        seed: 42,
        ..PlatformOptions::default()
    });
    platform.set_directory(vec![QUEUE.to_owned()], vec![USER.to_owned()]);
    platform
}

fn credentials() -> Option<ClientCredentials<'static>> {
    Some(ClientCredentials {
        client_id: DEFAULT_CLIENT_ID,
        client_secret: DEFAULT_CLIENT_SECRET,
    })
}

/// Issues a token and authenticates with it.
fn login(platform: &mut Platform, now: DateTime<Utc>) -> (String, Caller) {
    let token = platform
        .issue_token(credentials(), Some("client_credentials"), now)
        .unwrap();
    let caller = platform
        .authenticate(Some(&token.access_token), now)
        .unwrap();
    (token.access_token, caller)
}

fn queue_topic() -> String {
    format!("v2.routing.queues.{QUEUE}.conversations")
}

fn event(topic: &str, n: u32) -> TopicEvent {
    TopicEvent {
        topic: topic.to_owned(),
        body: serde_json::json!({ "n": n }),
    }
}

fn body_n(frame: &str) -> u64 {
    let value: serde_json::Value = serde_json::from_str(frame).unwrap();
    value["eventBody"]["n"].as_u64().unwrap()
}

// ---- OAuth ---------------------------------------------------------------------------

#[test]
fn client_credentials_get_a_bearer_token_for_the_configured_ttl() {
    let mut platform = platform();
    let token = platform
        .issue_token(credentials(), Some("client_credentials"), t0())
        .unwrap();
    assert_eq!(token.token_type, "bearer");
    assert_eq!(token.expires_in, 86_400);
    assert_eq!(token.access_token.len(), 48);
    assert!(token
        .access_token
        .chars()
        .all(|c| c.is_ascii_alphanumeric()));
}

#[test]
fn token_requests_fail_with_the_oauth_error_of_each_cause() {
    let mut platform = platform();
    let unknown = ClientCredentials {
        client_id: "someone-else",
        client_secret: DEFAULT_CLIENT_SECRET,
    };
    let wrong = ClientCredentials {
        client_id: DEFAULT_CLIENT_ID,
        client_secret: "guess",
    };
    let cases = [
        (
            Some(unknown),
            Some("client_credentials"),
            400,
            "invalid_client",
        ),
        (
            Some(wrong),
            Some("client_credentials"),
            401,
            "invalid_client",
        ),
        (None, Some("client_credentials"), 401, "invalid_client"),
        (credentials(), None, 400, "invalid_request"),
        (
            credentials(),
            Some("password"),
            400,
            "unsupported_grant_type",
        ),
    ];
    for (credentials, grant, status, error) in cases {
        let refused = platform.issue_token(credentials, grant, t0()).unwrap_err();
        assert_eq!(refused.status(), status, "{refused:?}");
        assert_eq!(refused.body().error, error, "{refused:?}");
    }
    let unknown = platform
        .issue_token(Some(unknown), Some("client_credentials"), t0())
        .unwrap_err();
    assert_eq!(
        unknown.body().error_description.as_deref(),
        Some("client not found")
    );
}

#[test]
fn the_same_seed_issues_the_same_tokens_and_channel_ids() {
    let run = || {
        let mut platform = platform();
        let (token, caller) = login(&mut platform, t0());
        let (channel, _) = platform.create_channel(&caller, BASE, t0());
        (token, channel.id)
    };
    assert_eq!(run(), run());
}

#[test]
fn bearer_tokens_are_checked_for_presence_validity_expiry_and_revocation() {
    let mut platform = platform();
    let (token, caller) = login(&mut platform, t0());
    assert_eq!(platform.authenticate(None, t0()), Err(AuthError::Missing));
    assert_eq!(
        platform.authenticate(Some(""), t0()),
        Err(AuthError::Missing)
    );
    assert_eq!(
        platform.authenticate(Some("forged"), t0()),
        Err(AuthError::BadCredentials)
    );
    assert_eq!(platform.authenticate(Some(&token), t0()), Ok(caller));
    let just_before = t0() + TimeDelta::hours(24) - TimeDelta::milliseconds(1);
    assert!(platform.authenticate(Some(&token), just_before).is_ok());
    assert_eq!(
        platform.authenticate(Some(&token), t0() + TimeDelta::hours(24)),
        Err(AuthError::BadCredentials)
    );

    let (other, _) = login(&mut platform, t0());
    platform.revoke_tokens(t0());
    assert_eq!(
        platform.authenticate(Some(&other), t0()),
        Err(AuthError::BadCredentials)
    );
}

#[test]
fn each_token_has_its_own_rate_budget() {
    let mut platform = Platform::new(PlatformOptions {
        rate_limit_per_minute: 2,
        ..PlatformOptions::default()
    });
    let (_, first) = login(&mut platform, t0());
    let (_, second) = login(&mut platform, t0());
    assert!(platform.check_rate(first.token, t0()).allowed);
    assert!(platform.check_rate(first.token, t0()).allowed);
    let refused = platform.check_rate(first.token, t0() + secs(15));
    assert!(!refused.allowed);
    assert_eq!(refused.retry_after_secs(), 45);
    assert!(platform.check_rate(second.token, t0() + secs(15)).allowed);
}

#[test]
fn debug_output_never_shows_secrets_or_tokens() {
    let mut platform = platform();
    let (token, _) = login(&mut platform, t0());
    let printed = format!("{platform:?}");
    assert!(!printed.contains(DEFAULT_CLIENT_SECRET));
    assert!(!printed.contains(&token));
    let response = TokenResponse {
        access_token: token.clone(),
        token_type: "bearer".to_owned(),
        expires_in: 1,
    };
    assert!(!format!("{response:?}").contains(&token));
}

// ---- channels ------------------------------------------------------------------------

#[test]
fn a_new_channel_has_a_streaming_id_a_connect_uri_and_expires_after_the_channel_ttl() {
    let mut platform = platform();
    let (_, caller) = login(&mut platform, t0());
    let now = t0() + TimeDelta::microseconds(345_678);
    let (channel, closures) = platform.create_channel(&caller, "ws://127.0.0.1:9/", now);
    assert!(closures.is_empty());
    let suffix = channel.id.strip_prefix("streaming-0-").unwrap();
    assert_eq!(suffix.len(), 26);
    assert!(suffix
        .chars()
        .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit()));
    assert_eq!(
        channel.connect_uri,
        format!("ws://127.0.0.1:9/channels/{}", channel.id)
    );
    let expires = channel.expires.unwrap();
    assert_eq!(
        expires,
        t0() + TimeDelta::milliseconds(345) + TimeDelta::hours(24)
    );
    assert!(platform.channel_exists(&caller, &channel.id, now));
    assert!(!platform.channel_exists(&caller, "streaming-0-unknown", now));
    assert!(!platform.channel_exists(&caller, &channel.id, expires));
}

#[test]
fn the_twenty_first_channel_evicts_the_oldest_last_used() {
    let mut platform = platform();
    let (_, caller) = login(&mut platform, t0());
    let ids: Vec<String> = (0..20)
        .map(|i| platform.create_channel(&caller, BASE, t0() + secs(i)).0.id)
        .collect();
    // Using the oldest channel makes the second-oldest the least recently used.
    platform
        .subscriptions(&caller, &ids[0], t0() + secs(30))
        .unwrap();

    let (_, closures) = platform.create_channel(&caller, BASE, t0() + secs(31));
    assert_eq!(closures.len(), 1);
    assert_eq!(closures[0].channel.as_str(), ids[1]);
    assert_eq!(closures[0].reason, ClosureReason::Evicted);
    assert!(!platform.channel_exists(&caller, &ids[1], t0() + secs(31)));
    assert!(platform.channel_exists(&caller, &ids[0], t0() + secs(31)));
    let listed = platform.list_channels(&caller, ChannelListScope::Token, t0() + secs(31));
    assert_eq!(listed.entities.len(), MAX_CHANNELS_PER_CLIENT);
}

#[test]
fn eviction_prefers_channels_without_a_socket() {
    let mut platform = platform();
    let (_, caller) = login(&mut platform, t0());
    let ids: Vec<String> = (0..20)
        .map(|i| platform.create_channel(&caller, BASE, t0() + secs(i)).0.id)
        .collect();
    // Every channel but the newest has a socket: the newest goes, although it is the
    // most recently used.
    for id in &ids[..19] {
        platform.attach_socket(id, t0() + secs(20)).unwrap();
    }
    let (_, closures) = platform.create_channel(&caller, BASE, t0() + secs(40));
    assert_eq!(closures.len(), 1);
    assert_eq!(closures[0].channel.as_str(), ids[19]);
    assert_eq!(closures[0].socket, None);

    // With a socket on every channel, the oldest last-used goes and its socket is named.
    let newest = platform
        .list_channels(&caller, ChannelListScope::Token, t0() + secs(40))
        .entities
        .last()
        .unwrap()["id"]
        .as_str()
        .unwrap()
        .to_owned();
    let attached = platform.attach_socket(&newest, t0() + secs(41)).unwrap();
    let (_, closures) = platform.create_channel(&caller, BASE, t0() + secs(42));
    assert_eq!(closures[0].channel.as_str(), ids[0]);
    assert!(closures[0].socket.is_some());
    assert_ne!(closures[0].socket, Some(attached.socket));
    let farewell: serde_json::Value =
        serde_json::from_str(&platform.farewell_frame(&closures[0])).unwrap();
    assert_eq!(farewell["topicName"], "v2.system.no_longer_subscribed");
    assert_eq!(farewell["eventBody"]["channelId"], ids[0].as_str());
}

#[test]
fn listing_by_oauth_client_shows_other_tokens_channels_without_ids() {
    let mut platform = platform();
    let (_, first) = login(&mut platform, t0());
    let (_, second) = login(&mut platform, t0());
    let (mine, _) = platform.create_channel(&first, BASE, t0());
    platform.create_channel(&second, BASE, t0() + secs(1));
    let by_token = platform.list_channels(&first, ChannelListScope::Token, t0() + secs(2));
    assert_eq!(by_token.entities.len(), 1);
    assert_eq!(by_token.entities[0]["id"], mine.id.as_str());
    let by_client = platform.list_channels(&first, ChannelListScope::OAuthClient, t0() + secs(2));
    assert_eq!(by_client.entities.len(), 2);
    assert!(by_client.entities[1].get("id").is_none());
    assert!(by_client.entities[1].get("expires").is_some());
}

#[test]
fn a_channel_dies_with_its_token_and_on_its_own_expiry() {
    let mut platform = Platform::new(PlatformOptions {
        token_ttl: secs(60),
        channel_ttl: secs(30),
        ..PlatformOptions::default()
    });
    let (_, caller) = login(&mut platform, t0());
    let (short, _) = platform.create_channel(&caller, BASE, t0());
    let (kept, _) = platform.create_channel(&caller, BASE, t0());
    let attached = platform.attach_socket(&kept.id, t0()).unwrap();
    // Re-subscribing extends `kept` to 20 + 30 = 50 s, still under the token's 60 s.
    platform
        .subscribe(
            &caller,
            &kept.id,
            &[],
            SubscribeMode::Replace,
            true,
            t0() + secs(20),
        )
        .unwrap();

    let closures = platform.sweep(t0() + secs(30));
    assert_eq!(closures.len(), 1);
    assert_eq!(closures[0].channel.as_str(), short.id);
    assert_eq!(closures[0].reason, ClosureReason::ChannelExpired);

    platform
        .subscribe(
            &caller,
            &kept.id,
            &[],
            SubscribeMode::Replace,
            true,
            t0() + secs(45),
        )
        .unwrap();
    let closures = platform.sweep(t0() + secs(60));
    assert_eq!(closures.len(), 1);
    assert_eq!(closures[0].channel.as_str(), kept.id);
    assert_eq!(closures[0].reason, ClosureReason::TokenExpired);
    assert_eq!(closures[0].socket, Some(attached.socket));
    assert_eq!(
        platform.farewell_frame(&closures[0]),
        frames::channel_gone_frame()
    );
    assert!(platform.attach_socket(&kept.id, t0() + secs(60)).is_err());
}

#[test]
fn revoking_tokens_kills_their_channels_with_a_token_revoked_frame() {
    let mut platform = platform();
    let (_, caller) = login(&mut platform, t0());
    let (channel, _) = platform.create_channel(&caller, BASE, t0());
    let closures = platform.revoke_tokens(t0());
    assert_eq!(closures.len(), 1);
    assert_eq!(closures[0].channel.as_str(), channel.id);
    assert_eq!(closures[0].reason, ClosureReason::TokenRevoked);
    let frame: serde_json::Value =
        serde_json::from_str(&platform.farewell_frame(&closures[0])).unwrap();
    assert_eq!(frame["topicName"], "v2.system.token_revoked");
}

// ---- subscriptions -------------------------------------------------------------------

#[test]
fn with_ignore_errors_unknown_topics_come_back_rejected_and_are_not_kept() {
    let mut platform = platform();
    let (_, caller) = login(&mut platform, t0());
    let (channel, _) = platform.create_channel(&caller, BASE, t0());
    let topics = vec![
        queue_topic(),
        "v2.routing.queues.unknown-queue.conversations".to_owned(),
        "v2.nonsense".to_owned(),
        queue_topic(),
    ];
    let listing = platform
        .subscribe(
            &caller,
            &channel.id,
            &topics,
            SubscribeMode::Replace,
            true,
            t0(),
        )
        .unwrap();
    let states: Vec<(&str, &str)> = listing
        .entities
        .iter()
        .map(|t| (t.id.as_str(), t.state.as_deref().unwrap()))
        .collect();
    assert_eq!(
        states,
        vec![
            (queue_topic().as_str(), "Permitted"),
            ("v2.routing.queues.unknown-queue.conversations", "Rejected"),
            ("v2.nonsense", "Rejected"),
        ]
    );
    assert!(listing.entities[1].rejection_reason.is_some());
    assert_eq!(
        listing.entities[0].self_uri.as_deref(),
        Some(
            format!(
                "/api/v2/notifications/channels/{}/subscriptions",
                channel.id
            )
            .as_str()
        )
    );
    let kept = platform.subscriptions(&caller, &channel.id, t0()).unwrap();
    assert_eq!(kept.entities.len(), 1);
}

#[test]
fn without_ignore_errors_a_bad_topic_fails_the_whole_call() {
    let mut platform = platform();
    let (_, caller) = login(&mut platform, t0());
    let (channel, _) = platform.create_channel(&caller, BASE, t0());
    let invalid = platform
        .subscribe(
            &caller,
            &channel.id,
            &[queue_topic(), "v2.nonsense".to_owned()],
            SubscribeMode::Replace,
            false,
            t0(),
        )
        .unwrap_err();
    assert!(matches!(invalid, NotifyError::InvalidTopics(ref t) if t.len() == 1));
    assert_eq!(invalid.status(), 400);
    let forbidden = platform
        .subscribe(
            &caller,
            &channel.id,
            &[
                format!("v2.users.{USER}.conversations"),
                "v2.users.ghost.conversations".to_owned(),
            ],
            SubscribeMode::Replace,
            false,
            t0(),
        )
        .unwrap_err();
    assert_eq!(forbidden.status(), 403);
    assert_eq!(forbidden.body("c")["code"], "not.authorized");
    // Nothing was applied.
    assert!(platform
        .subscriptions(&caller, &channel.id, t0())
        .unwrap()
        .entities
        .is_empty());
}

#[test]
fn post_adds_put_replaces_and_delete_clears() {
    let mut platform = platform();
    let (_, caller) = login(&mut platform, t0());
    let (channel, _) = platform.create_channel(&caller, BASE, t0());
    let user = format!("v2.users.{USER}.conversations");
    platform
        .subscribe(
            &caller,
            &channel.id,
            &[queue_topic()],
            SubscribeMode::Add,
            false,
            t0(),
        )
        .unwrap();
    let listing = platform
        .subscribe(
            &caller,
            &channel.id,
            std::slice::from_ref(&user),
            SubscribeMode::Add,
            false,
            t0(),
        )
        .unwrap();
    assert_eq!(listing.entities.len(), 2);
    let listing = platform
        .subscribe(
            &caller,
            &channel.id,
            std::slice::from_ref(&user),
            SubscribeMode::Replace,
            false,
            t0(),
        )
        .unwrap();
    assert_eq!(listing.entities.len(), 1);
    assert_eq!(listing.entities[0].id, user);
    platform
        .unsubscribe_all(&caller, &channel.id, t0())
        .unwrap();
    assert!(platform
        .subscriptions(&caller, &channel.id, t0())
        .unwrap()
        .entities
        .is_empty());
}

#[test]
fn more_than_a_thousand_topics_on_a_channel_is_refused() {
    let mut platform = platform();
    let (_, caller) = login(&mut platform, t0());
    let (channel, _) = platform.create_channel(&caller, BASE, t0());
    let topics: Vec<String> = (0..1001)
        .map(|i| format!("v2.conversations.c{i}.transcription"))
        .collect();
    let refused = platform
        .subscribe(
            &caller,
            &channel.id,
            &topics,
            SubscribeMode::Replace,
            true,
            t0(),
        )
        .unwrap_err();
    assert_eq!(
        refused,
        NotifyError::TooManyTopics {
            requested: 1001,
            limit: 1000
        }
    );
    assert_eq!(refused.status(), 400);
    platform
        .subscribe(
            &caller,
            &channel.id,
            &topics[..1000],
            SubscribeMode::Replace,
            true,
            t0(),
        )
        .unwrap();
    // Adding one more to a full channel is refused as well.
    let refused = platform
        .subscribe(
            &caller,
            &channel.id,
            &topics[1000..],
            SubscribeMode::Add,
            true,
            t0(),
        )
        .unwrap_err();
    assert!(matches!(refused, NotifyError::TooManyTopics { .. }));
}

#[test]
fn another_clients_or_a_dead_channel_is_not_found() {
    let mut platform = platform();
    let (_, caller) = login(&mut platform, t0());
    let (channel, _) = platform.create_channel(&caller, BASE, t0());
    let stranger = Caller {
        token: caller.token,
        client_id: "other-client".to_owned(),
    };
    assert_eq!(
        platform.subscriptions(&stranger, &channel.id, t0()),
        Err(NotifyError::ChannelNotFound)
    );
    platform.expire_channels(t0());
    assert_eq!(
        platform.subscriptions(&caller, &channel.id, t0()),
        Err(NotifyError::ChannelNotFound)
    );
}

// ---- sockets and fan-out -------------------------------------------------------------

/// A platform with one channel subscribed to the queue topic, with a socket.
fn listening() -> (Platform, ChannelId, SocketId) {
    let mut platform = platform();
    let (_, caller) = login(&mut platform, t0());
    let (channel, _) = platform.create_channel(&caller, BASE, t0());
    platform
        .subscribe(
            &caller,
            &channel.id,
            &[queue_topic()],
            SubscribeMode::Replace,
            false,
            t0(),
        )
        .unwrap();
    let attached = platform.attach_socket(&channel.id, t0()).unwrap();
    (platform, ChannelId(channel.id), attached.socket)
}

#[test]
fn events_reach_subscribed_channels_with_a_socket_in_the_real_envelope() {
    let (mut platform, channel, socket) = listening();
    assert_eq!(
        platform.route(&event(&queue_topic(), 1)),
        vec![channel.clone()]
    );
    assert!(platform
        .route(&event("v2.users.x.conversations", 1))
        .is_empty());
    let deliveries = platform.deliver(&[event(&queue_topic(), 1)], t0());
    assert_eq!(deliveries.len(), 1);
    assert_eq!(deliveries[0].socket, socket);
    let frame: serde_json::Value = serde_json::from_str(&deliveries[0].frame).unwrap();
    assert_eq!(frame["topicName"], queue_topic().as_str());
    assert_eq!(frame["version"], "2");
    assert_eq!(frame["eventBody"]["n"], 1);
    assert_eq!(
        frame["metadata"]["CorrelationId"].as_str().unwrap().len(),
        36
    );
}

#[test]
fn events_published_while_no_socket_is_attached_are_never_replayed() {
    let (mut platform, channel, socket) = listening();
    platform.detach_socket(&channel, socket, t0());
    assert!(platform
        .deliver(&[event(&queue_topic(), 1)], t0())
        .is_empty());
    let again = platform.attach_socket(channel.as_str(), t0()).unwrap();
    assert_eq!(again.replaced, None);
    let deliveries = platform.deliver(&[event(&queue_topic(), 2)], t0());
    assert_eq!(deliveries.len(), 1);
    assert_eq!(body_n(&deliveries[0].frame), 2);
}

#[test]
fn a_second_socket_replaces_the_first() {
    let (mut platform, channel, first) = listening();
    let second = platform.attach_socket(channel.as_str(), t0()).unwrap();
    assert_eq!(second.replaced, Some(first));
    // The late close notice of the first socket leaves the second attached.
    platform.detach_socket(&channel, first, t0());
    let deliveries = platform.deliver(&[event(&queue_topic(), 1)], t0());
    assert_eq!(deliveries.len(), 1);
    assert_eq!(deliveries[0].socket, second.socket);
}

#[test]
fn the_duplicate_fault_sends_an_event_twice() {
    let (mut platform, _, _) = listening();
    platform
        .set_faults(FaultSettings {
            duplicate_ratio: 1.0,
            ..FaultSettings::default()
        })
        .unwrap();
    let deliveries = platform.deliver(&[event(&queue_topic(), 1)], t0());
    assert_eq!(deliveries.len(), 2);
    assert_eq!(deliveries[0].frame, deliveries[1].frame);
}

#[test]
fn the_reorder_fault_sends_a_held_event_after_the_next_one_or_after_the_hold() {
    let (mut platform, _, _) = listening();
    platform
        .set_faults(FaultSettings {
            reorder_ratio: 1.0,
            ..FaultSettings::default()
        })
        .unwrap();
    assert!(platform
        .deliver(&[event(&queue_topic(), 1)], t0())
        .is_empty());
    let deliveries = platform.deliver(&[event(&queue_topic(), 2)], t0());
    let order: Vec<u64> = deliveries.iter().map(|d| body_n(&d.frame)).collect();
    assert_eq!(order, vec![2, 1]);

    assert!(platform
        .deliver(&[event(&queue_topic(), 3)], t0())
        .is_empty());
    assert!(platform
        .release_held(t0() + TimeDelta::milliseconds(499))
        .is_empty());
    let released = platform.release_held(t0() + TimeDelta::milliseconds(500));
    assert_eq!(released.len(), 1);
    assert_eq!(body_n(&released[0].frame), 3);
}

#[test]
fn clients_can_ping_and_subscribe_over_the_socket() {
    let (mut platform, channel, _) = listening();
    assert_eq!(
        platform.ws_command(&channel, r#"{"message":"ping"}"#, t0()),
        WsCommandOutcome::Reply(frames::pong_frame())
    );
    let user = format!("v2.users.{USER}.conversations");
    let command =
        serde_json::json!({"message": "subscribe", "topics": [user], "correlationId": "c-1"});
    let WsCommandOutcome::Reply(ack) = platform.ws_command(&channel, &command.to_string(), t0())
    else {
        panic!("expected a reply");
    };
    let ack: serde_json::Value = serde_json::from_str(&ack).unwrap();
    assert_eq!(ack["result"], "200");
    assert_eq!(ack["status"], "subscribed");
    assert_eq!(ack["correlationId"], "c-1");
    assert_eq!(platform.route(&event(&user, 1)), vec![channel.clone()]);

    let bad = serde_json::json!({"message": "subscribe", "topics": ["v2.nope"]});
    let WsCommandOutcome::Reply(refusal) = platform.ws_command(&channel, &bad.to_string(), t0())
    else {
        panic!("expected a reply");
    };
    let refusal: serde_json::Value = serde_json::from_str(&refusal).unwrap();
    assert_eq!(refusal["result"], "400");

    platform.expire_channels(t0());
    assert_eq!(
        platform.ws_command(&channel, r#"{"message":"ping"}"#, t0()),
        WsCommandOutcome::ChannelGone
    );
}

#[test]
fn request_faults_follow_the_settings() {
    let mut platform = platform();
    assert_eq!(platform.draw_request_fault(), None);
    platform
        .set_faults(FaultSettings {
            error_ratio: 1.0,
            ..FaultSettings::default()
        })
        .unwrap();
    assert!(matches!(
        platform.draw_request_fault(),
        Some(RequestFault::InternalServerError | RequestFault::ServiceUnavailable)
    ));
    assert!(platform
        .set_faults(FaultSettings {
            error_ratio: -0.1,
            ..FaultSettings::default()
        })
        .is_err());
}
