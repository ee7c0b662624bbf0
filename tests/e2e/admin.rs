//! The admin server over real HTTP: `/healthz`, `/readyz` following the health board,
//! `/metrics` in Prometheus text, `/conversations` and `/conversations/{id}`.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::sync::Arc;
use std::time::{Duration, Instant};

use convoy::conversation::Conversation;
use convoy::ids::ConversationId;
use convoy_actors::admin::{AdminServer, ConversationViews, HealthBoard, WriteStatuses};
use convoy_actors::conversation::actor::SharedConversation;
use convoy_actors::conversation::view::{ConversationView, Residence};
use convoy_actors::telemetry::{names, sample, ActorMetrics, Telemetry};
use serde_json::{json, Value};

use convoy_actors::admin::OutboxView;
use convoy_actors::outbox_writer::OutboxGate;
use convoy_actors::sla::SlaViews;

use crate::support::client;

struct Admin {
    server: AdminServer,
    board: Arc<HealthBoard>,
    views: ConversationViews,
    base: String,
}

fn start_admin() -> Admin {
    let board = Arc::new(HealthBoard::new(Duration::from_secs(60)));
    let views = ConversationViews::default();
    let server = AdminServer::start(
        "127.0.0.1:0".parse().unwrap(),
        Arc::clone(&board),
        Arc::clone(&views),
        WriteStatuses::default(),
        Telemetry::install().unwrap(),
        OutboxView {
            gate: Arc::new(OutboxGate::new(1_000, 0)),
            sla: SlaViews::default(),
        },
        None,
    )
    .unwrap();
    let base = format!("http://{}", server.local_addr());
    Admin {
        server,
        board,
        views,
        base,
    }
}

/// GETs `path` and returns the status and the JSON body.
async fn get_json(admin: &Admin, path: &str) -> (u16, Value) {
    let mut response = client()
        .get(format!("{}{path}", admin.base))
        .send()
        .await
        .unwrap();
    let status = response.status().as_u16();
    (status, response.json().await.unwrap())
}

#[actix_rt::test]
async fn readyz_turns_ready_only_once_every_check_passes_and_not_while_shutting_down() {
    let admin = start_admin();
    let board = &admin.board;

    assert_eq!(
        get_json(&admin, "/healthz").await,
        (200, json!({"alive": true}))
    );

    let (status, body) = get_json(&admin, "/readyz").await;
    assert_eq!(status, 503);
    assert_eq!(body["ready"], false);
    for check in ["token", "socket", "subscriptions", "last_frame"] {
        assert_eq!(body["checks"][check]["ok"], false, "{check}: {body}");
        assert!(
            body["checks"][check]["detail"].is_string(),
            "{check}: {body}"
        );
    }

    board.set_token_valid_until(Some(Instant::now() + Duration::from_secs(3600)));
    let (status, body) = get_json(&admin, "/readyz").await;
    assert_eq!(status, 503);
    assert_eq!(body["checks"]["token"], json!({"ok": true}));

    board.set_channels(1, 0);
    let (_, body) = get_json(&admin, "/readyz").await;
    assert_eq!(
        body["checks"]["socket"],
        json!({"ok": false, "detail": "0 of 1 channels connected"})
    );
    board.set_channels(1, 1);

    board.set_subscriptions(
        3,
        vec![(
            "v2.users.6f1c3a5e-0000-4000-8000-000000000001.conversations".to_owned(),
            "Permission denied".to_owned(),
        )],
    );
    let (status, body) = get_json(&admin, "/readyz").await;
    assert_eq!(status, 503);
    assert_eq!(body["checks"]["socket"], json!({"ok": true}));
    assert_eq!(
        body["checks"]["subscriptions"]["rejected"],
        json!([{
            "topic": "v2.users.6f1c3a5e-0000-4000-8000-000000000001.conversations",
            "reason": "Permission denied",
        }])
    );
    board.set_subscriptions(4, Vec::new());

    // Connected and subscribed, no heartbeat due yet: a fresh connection is ready.
    let (status, body) = get_json(&admin, "/readyz").await;
    assert_eq!(status, 200, "fresh connection: {body}");
    assert_eq!(body["checks"]["last_frame"]["ok"], true);
    assert!(body["checks"]["last_frame"]["age_ms"].is_null(), "{body}");

    board.frame_seen(Instant::now());
    let (status, body) = get_json(&admin, "/readyz").await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(body["ready"], true);
    assert_eq!(body["checks"]["last_frame"]["ok"], true);
    assert!(body["checks"]["last_frame"]["age_ms"].is_u64(), "{body}");

    board.set_shutting_down();
    let (status, body) = get_json(&admin, "/readyz").await;
    assert_eq!(status, 503);
    assert_eq!(
        body["checks"]["shutdown"],
        json!({"ok": false, "detail": "shutting down"})
    );
    // Still alive while draining.
    assert_eq!(get_json(&admin, "/healthz").await.0, 200);

    admin.server.stop().await;
}

#[actix_rt::test]
async fn metrics_shows_every_family_before_first_use_and_counts_what_happens() {
    let admin = start_admin();
    let fetch = || async {
        let mut response = client()
            .get(format!("{}/metrics", admin.base))
            .send()
            .await
            .unwrap();
        assert_eq!(response.status().as_u16(), 200);
        let content_type = response
            .headers()
            .get("content-type")
            .unwrap()
            .to_str()
            .unwrap()
            .to_owned();
        assert!(content_type.starts_with("text/plain"), "{content_type}");
        String::from_utf8(response.body().await.unwrap().to_vec()).unwrap()
    };

    let text = fetch().await;
    assert!(text.contains(&format!("# TYPE {} counter", names::ACTOR_RESTARTS)));
    assert!(text.contains(&format!("# HELP {} ", names::ACTOR_PANICS)));
    for actor in names::ACTOR_TYPES {
        assert!(
            sample::value(&text, names::ACTOR_RESTARTS, &[("actor", actor)]).is_some(),
            "{actor}: {text}"
        );
    }
    assert!(sample::value(&text, names::CONVERSATIONS_LIVE, &[]).is_some());
    assert!(sample::value(
        &text,
        names::STREAM_RECONNECTS,
        &[("reason", "socket_closing")]
    )
    .is_some());

    // A label no other test uses, so the expected value is exact.
    let actor = "admin_e2e";
    assert_eq!(
        sample::value(&text, names::ACTOR_HANDLER_ERRORS, &[("actor", actor)]),
        None
    );
    ActorMetrics::handler_error(actor);
    ActorMetrics::handler_error(actor);
    let text = fetch().await;
    assert_eq!(
        sample::value(&text, names::ACTOR_HANDLER_ERRORS, &[("actor", actor)]),
        Some(2.0)
    );

    admin.server.stop().await;
}

#[actix_rt::test]
async fn conversations_lists_every_view_and_serves_one_by_id() {
    let admin = start_admin();

    assert_eq!(
        get_json(&admin, "/conversations").await,
        (200, json!({"count": 0, "conversations": []}))
    );

    let view = |id: &str, version: u64, residence: Residence| {
        let mut conversation = Conversation::new(ConversationId::from(id));
        conversation.raise_version_to(version);
        ConversationView {
            conversation: SharedConversation::new(conversation),
            residence,
        }
    };
    let first = view("c-1", 3, Residence::Live);
    let second = view("c-2", 9, Residence::Finished);
    // Inserted out of order: the list is sorted by id.
    admin
        .views
        .insert(ConversationId::from("c-2"), second.clone());
    admin
        .views
        .insert(ConversationId::from("c-1"), first.clone());
    let (first, second) = (first.to_json(None), second.to_json(None));
    assert_eq!(first["version"], 3);
    assert_eq!(second["residence"], "finished");

    assert_eq!(
        get_json(&admin, "/conversations").await,
        (
            200,
            json!({"count": 2, "conversations": [first.clone(), second.clone()]})
        )
    );
    // One conversation's page adds its open SLA clocks (none here) to the list's entry.
    let mut detailed = second.clone();
    detailed["slaClocks"] = json!([]);
    assert_eq!(
        get_json(&admin, "/conversations/c-2").await,
        (200, detailed)
    );

    let (status, body) = get_json(&admin, "/conversations/c-404").await;
    assert_eq!(status, 404);
    assert_eq!(body["conversationId"], "c-404");

    // A finished conversation the router removed is gone from both endpoints.
    admin.views.remove(&ConversationId::from("c-1"));
    assert_eq!(get_json(&admin, "/conversations/c-1").await.0, 404);
    assert_eq!(get_json(&admin, "/conversations").await.1["count"], 1);

    admin.server.stop().await;
}

#[actix_rt::test]
async fn a_stopped_admin_server_refuses_connections() {
    let admin = start_admin();
    assert_eq!(get_json(&admin, "/healthz").await.0, 200);
    admin.server.stop().await;
    // A fresh client: a pooled keep-alive connection could outlive the listener.
    let refused = awc::Client::default()
        .get(format!("{}/healthz", admin.base))
        .send()
        .await;
    assert!(refused.is_err(), "{refused:?}");
}
