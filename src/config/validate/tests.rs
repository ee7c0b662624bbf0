//! Specifications of `validate`: what a good tree becomes, and what each kind of mistake
//! reports.

use serde_json::{json, Value};

use super::*;
use crate::config::REGIONS;

const CLIENT_ID: &str = "7de3af06-c0b3-4f9b-af45-72f4a1403797";
const QUEUE: &str = "4c2b6f0e-2a1d-4b8e-9f3a-0c1d2e3f4a5b";
const USER: &str = "9a8b7c6d-5e4f-4a3b-8c2d-1e0f9a8b7c6d";
const SECRET: &str = "s3cr3t-DO-NOT-PRINT";

fn no_origin(_: &str) -> Option<String> {
    None
}

/// The smallest tree that validates: a region, credentials, one queue.
fn minimal() -> Value {
    json!({
        "genesys": {
            "region": "mypurecloud.ie",
            "client_id": CLIENT_ID,
            "client_secret": SECRET,
            "queues": [QUEUE],
        }
    })
}

fn with(mut tree: Value, key: &str, value: Value) -> Value {
    let (section, name) = key.split_once('.').unwrap();
    let root = tree.as_object_mut().unwrap();
    let table = root.entry(section.to_owned()).or_insert_with(|| json!({}));
    table
        .as_object_mut()
        .unwrap()
        .insert(name.to_owned(), value);
    tree
}

fn without(mut tree: Value, key: &str) -> Value {
    let (section, name) = key.split_once('.').unwrap();
    tree[section].as_object_mut().unwrap().remove(name);
    tree
}

fn problems(tree: &Value) -> Vec<ConfigProblem> {
    validate(tree, &no_origin).unwrap_err().into_problems()
}

fn keys_of(problems: &[ConfigProblem]) -> Vec<&str> {
    problems.iter().map(|p| p.key.as_str()).collect()
}

#[test]
fn a_region_derives_both_hosts_and_defaults_fill_the_rest() {
    let config = validate(&minimal(), &no_origin).unwrap();
    let endpoints = &config.genesys.endpoints;
    assert_eq!(endpoints.region.map(|r| r.name()), Some("eu_west_1"));
    assert_eq!(endpoints.api_base, "https://api.mypurecloud.ie");
    assert_eq!(endpoints.login_base, "https://login.mypurecloud.ie");
    assert_eq!(config.genesys.requests_per_minute, 300);
    assert_eq!(
        config.genesys.login_unreachable_exit_after,
        Duration::from_secs(300)
    );
    assert_eq!(config.crm, None, "no crm.endpoint means CRM sync is off");
    assert_eq!(config.stream.max_frame_bytes, 1024 * 1024);
    assert_eq!(config.stream.ping_after_idle, Duration::from_secs(35));
    assert_eq!(config.conversations.max_live, 10_000);
    assert_eq!(config.outbox.max_records, 1_000_000);
    assert_eq!(config.shutdown.deadline, Duration::from_secs(20));
    assert_eq!(config.admin.listen.to_string(), "127.0.0.1:9464");
    assert_eq!(config.log.format, LogFormat::Text);
    assert_eq!(config.log.filter, "info");
    assert_eq!(
        config
            .genesys
            .client_secret
            .value()
            .map(|s| s.expose_secret().as_str()),
        Some(SECRET)
    );
}

#[test]
fn explicit_bases_point_convoy_at_the_emulator() {
    let tree = with(
        with(
            without(minimal(), "genesys.region"),
            "genesys.api_base",
            json!("http://127.0.0.1:18080/"),
        ),
        "genesys.login_base",
        json!("http://127.0.0.1:18080"),
    );
    let config = validate(&tree, &no_origin).unwrap();
    assert_eq!(config.genesys.endpoints.region, None);
    assert_eq!(config.genesys.endpoints.api_base, "http://127.0.0.1:18080");
    assert_eq!(
        config.genesys.endpoints.login_base,
        "http://127.0.0.1:18080"
    );
}

#[test]
fn topics_derive_from_queues_then_users() {
    let tree = with(minimal(), "genesys.users", json!([USER]));
    let config = validate(&tree, &no_origin).unwrap();
    assert_eq!(
        config.topics(),
        vec![
            format!("v2.routing.queues.{QUEUE}.conversations"),
            format!("v2.routing.queues.{QUEUE}.conversations.messages"),
            format!("v2.users.{USER}.conversations"),
            format!("v2.users.{USER}.conversations.messages"),
        ]
    );
}

#[test]
fn three_mistakes_are_reported_at_once() {
    let tree = with(
        with(
            with(minimal(), "genesys.region", json!("mypurecloud.xx")),
            "sla.read",
            json!("ten minutes"),
        ),
        "genesys.regoin",
        json!("mypurecloud.ie"),
    );
    let found = problems(&tree);
    assert_eq!(
        keys_of(&found),
        vec!["genesys.regoin", "genesys.region", "sla.read"],
        "{found:#?}"
    );
    assert!(found[0].reason.contains("did you mean genesys.region?"));
    assert_eq!(found[1].value.as_deref(), Some("\"mypurecloud.xx\""));
    assert!(found[2].reason.contains("\"1h30m\""), "{}", found[2].reason);
}

#[test]
fn an_unknown_region_lists_every_known_one() {
    let tree = with(minimal(), "genesys.region", json!("mypurecloud.xx"));
    let found = problems(&tree);
    assert_eq!(keys_of(&found), vec!["genesys.region"]);
    for region in REGIONS {
        assert!(
            found[0].reason.contains(region.domain()),
            "{}",
            found[0].reason
        );
    }
}

#[test]
fn an_sdk_region_name_suggests_its_domain() {
    let tree = with(minimal(), "genesys.region", json!("eu_west_1"));
    assert!(problems(&tree)[0]
        .reason
        .contains("did you mean mypurecloud.ie?"));
}

#[test]
fn problems_name_the_source_of_the_value() {
    let tree = with(minimal(), "sla.read", json!("10"));
    let origin = |key: &str| (key == "sla.read").then(|| "env CONVOY_SLA__READ".to_owned());
    let errors = validate(&tree, &origin).unwrap_err();
    assert_eq!(
        errors.to_string(),
        "1 configuration problem:\n  - sla.read = \"10\" (from env CONVOY_SLA__READ): \
         the number 10 has no unit; add one of ms, s, m, h, d (e.g. \"10s\")"
    );
}

#[test]
fn secrets_never_appear_in_config_debug_or_in_errors() {
    let good = with(
        with(
            with(
                minimal(),
                "crm.endpoint",
                json!("https://crm.example.com/ingest"),
            ),
            "crm.auth",
            json!("basic"),
        ),
        "crm.username",
        json!("convoy"),
    );
    let good = with(good, "crm.password", json!(SECRET));
    let config = validate(
        &with(good.clone(), "admin.token", json!(SECRET)),
        &no_origin,
    )
    .unwrap();
    assert_eq!(
        config
            .admin
            .token
            .as_ref()
            .map(|t| t.expose_secret().as_str()),
        Some(SECRET)
    );
    let debug = format!("{config:?} {config:#?}");
    assert!(!debug.contains(SECRET), "{debug}");
    assert!(debug.contains("***"));

    // A secret in the wrong place, a mistyped secret key, a URL carrying a password, a
    // secret of the wrong type: every problem mentions the key, none shows the value.
    let bad = with(good.clone(), "crm.token", json!(SECRET));
    let bad = with(bad, "genesys.client_secrt", json!(SECRET));
    let bad = with(
        bad,
        "crm.endpoint",
        json!(format!("https://u:{SECRET}@crm.example.com")),
    );
    let bad = with(bad, "crm.hmac_secret", json!([SECRET]));
    let errors = validate(&bad, &no_origin).unwrap_err();
    let shown = format!("{errors} {errors:?}");
    assert!(!shown.contains(SECRET), "{shown}");
    assert_eq!(
        keys_of(errors.problems()),
        vec![
            "genesys.client_secrt",
            "crm.endpoint",
            "crm.hmac_secret",
            "crm.token",
            "crm.hmac_secret"
        ],
        "{errors}"
    );
    assert!(shown.contains("crm.token = ***"), "{shown}");
}

#[test]
fn region_and_explicit_bases_conflict() {
    let tree = with(minimal(), "genesys.api_base", json!("http://127.0.0.1:1"));
    let found = problems(&tree);
    assert_eq!(keys_of(&found), vec!["genesys.region"]);
    assert!(found[0].reason.contains("conflicts with genesys.api_base"));
}

#[test]
fn one_base_without_the_other_is_incomplete() {
    let tree = with(
        without(minimal(), "genesys.region"),
        "genesys.api_base",
        json!("http://127.0.0.1:1"),
    );
    let found = problems(&tree);
    assert_eq!(keys_of(&found), vec!["genesys.login_base"]);
    assert_eq!(found[0].value, None);
}

#[test]
fn bases_must_be_bare_http_origins() {
    let tree = with(
        with(
            without(minimal(), "genesys.region"),
            "genesys.api_base",
            json!("ftp://127.0.0.1:1"),
        ),
        "genesys.login_base",
        json!("https://login.mypurecloud.ie/oauth/token"),
    );
    let found = problems(&tree);
    assert_eq!(
        keys_of(&found),
        vec!["genesys.api_base", "genesys.login_base"]
    );
    assert!(found[0].reason.contains("http://"));
    assert!(found[1].reason.contains("scheme://host[:port]"));
}

#[test]
fn no_way_to_reach_genesys_is_a_missing_region() {
    let found = problems(&without(minimal(), "genesys.region"));
    assert_eq!(keys_of(&found), vec!["genesys.region"]);
    assert!(found[0].reason.starts_with("required"));
}

#[test]
fn exactly_one_client_secret_source_is_required() {
    let both = with(
        minimal(),
        "genesys.client_secret_file",
        json!("/run/secrets/genesys"),
    );
    assert_eq!(keys_of(&problems(&both)), vec!["genesys.client_secret"]);

    let neither = without(minimal(), "genesys.client_secret");
    let found = problems(&neither);
    assert_eq!(keys_of(&found), vec!["genesys.client_secret"]);
    assert!(found[0].reason.contains("client_secret_file"));

    let file = with(
        neither,
        "genesys.client_secret_file",
        json!("/run/secrets/genesys"),
    );
    let config = validate(&file, &no_origin).unwrap();
    assert_eq!(
        config.genesys.client_secret,
        ClientSecret::File(PathBuf::from("/run/secrets/genesys"))
    );
    assert_eq!(config.genesys.client_secret.value(), None);
}

#[test]
fn the_client_id_must_be_a_uuid() {
    let found = problems(&with(minimal(), "genesys.client_id", json!("my-client")));
    assert_eq!(keys_of(&found), vec!["genesys.client_id"]);
    let found = problems(&without(minimal(), "genesys.client_id"));
    assert_eq!(keys_of(&found), vec!["genesys.client_id"]);
}

#[test]
fn something_must_be_followed() {
    let found = problems(&without(minimal(), "genesys.queues"));
    assert_eq!(keys_of(&found), vec!["genesys.queues"]);
    assert!(found[0].reason.contains("genesys.users"));

    let users_only = with(
        without(minimal(), "genesys.queues"),
        "genesys.users",
        json!([USER]),
    );
    assert!(validate(&users_only, &no_origin).is_ok());
}

#[test]
fn id_lists_from_the_environment_accept_comma_separated_text_and_drop_duplicates() {
    let tree = with(
        minimal(),
        "genesys.queues",
        json!(format!("{QUEUE}, {USER},{QUEUE}")),
    );
    let from_env = |key: &str| Some(format!("env {}", crate::config::env_var_name(key)));
    let config = validate(&tree, &from_env).unwrap();
    assert_eq!(
        config.genesys.queues,
        vec![QUEUE.to_owned(), USER.to_owned()]
    );
}

#[test]
fn a_string_for_a_list_in_a_file_is_refused() {
    let from_file = |_: &str| Some("file convoy.toml".to_owned());
    let tree = with(
        minimal(),
        "genesys.queues",
        json!(format!("{QUEUE},{USER}")),
    );
    let found = validate(&tree, &from_file).unwrap_err().into_problems();
    assert_eq!(keys_of(&found), vec!["genesys.queues"]);
    assert!(
        found[0].reason.contains("found a string"),
        "{}",
        found[0].reason
    );
    // Nor may one item of a list hold several ids.
    let tree = with(
        minimal(),
        "genesys.queues",
        json!([format!("{QUEUE},{USER}")]),
    );
    let found = validate(&tree, &from_file).unwrap_err().into_problems();
    assert!(found[0].reason.contains("not UUIDs"), "{}", found[0].reason);
}

#[test]
fn ids_that_are_not_uuids_are_named() {
    let found = problems(&with(
        minimal(),
        "genesys.queues",
        json!([QUEUE, "support", 7]),
    ));
    assert_eq!(keys_of(&found), vec!["genesys.queues"]);
    assert!(
        found[0].reason.contains("\"support\", 7"),
        "{}",
        found[0].reason
    );
}

#[test]
fn more_ids_than_one_channel_holds_is_refused() {
    let ids: Vec<String> = (0..501)
        .map(|i| format!("00000000-0000-4000-8000-{i:012}"))
        .collect();
    let found = problems(&with(minimal(), "genesys.queues", json!(ids)));
    assert_eq!(keys_of(&found), vec!["genesys.queues"]);
    assert!(
        found[0].reason.contains("1002 topics"),
        "{}",
        found[0].reason
    );
}

#[test]
fn crm_credentials_are_required_exactly_when_their_auth_is_chosen() {
    let crm = with(
        minimal(),
        "crm.endpoint",
        json!("https://crm.example.com/ingest"),
    );

    let bearer_without_token = with(crm.clone(), "crm.auth", json!("bearer"));
    let found = problems(&bearer_without_token);
    assert_eq!(keys_of(&found), vec!["crm.token"]);
    assert!(found[0]
        .reason
        .contains("required when crm.auth = \"bearer\""));

    let hmac_with_leftover_token = with(
        with(
            with(crm.clone(), "crm.auth", json!("hmac")),
            "crm.hmac_secret",
            json!(SECRET),
        ),
        "crm.token",
        json!(SECRET),
    );
    let found = problems(&hmac_with_leftover_token);
    assert_eq!(keys_of(&found), vec!["crm.token"]);
    assert!(found[0]
        .reason
        .contains("only used when crm.auth = \"bearer\""));

    let hmac = with(
        with(crm.clone(), "crm.auth", json!("hmac")),
        "crm.hmac_secret",
        json!(SECRET),
    );
    let config = validate(&hmac, &no_origin).unwrap();
    let crm_config = config.crm.unwrap();
    assert!(
        matches!(&crm_config.auth, CrmAuth::Hmac { secret } if secret.expose_secret() == SECRET)
    );
    assert_eq!(crm_config.batch_size, 100);

    let unknown_auth = with(crm, "crm.auth", json!("oauth"));
    assert_eq!(keys_of(&problems(&unknown_auth)), vec!["crm.auth"]);
}

#[test]
fn crm_auth_without_an_endpoint_is_a_mistake_not_a_silent_off() {
    let tree = with(
        with(minimal(), "crm.auth", json!("hmac")),
        "crm.hmac_secret",
        json!(SECRET),
    );
    assert_eq!(keys_of(&problems(&tree)), vec!["crm.endpoint"]);
}

#[test]
fn crm_batch_size_is_bounded() {
    let crm = with(
        minimal(),
        "crm.endpoint",
        json!("https://crm.example.com/ingest"),
    );
    assert_eq!(
        keys_of(&problems(&with(crm.clone(), "crm.batch_size", json!(0)))),
        vec!["crm.batch_size"]
    );
    assert_eq!(
        keys_of(&problems(&with(crm.clone(), "crm.batch_size", json!(1001)))),
        vec!["crm.batch_size"]
    );
    assert_eq!(
        keys_of(&problems(&with(crm.clone(), "crm.batch_size", json!("50")))),
        vec!["crm.batch_size"]
    );
}

#[test]
fn crm_delivery_limits_are_bounded_and_default() {
    let crm = with(
        minimal(),
        "crm.endpoint",
        json!("https://crm.example.com/ingest"),
    );
    let config = validate(&crm, &no_origin).unwrap().crm.unwrap();
    assert_eq!(config.max_batch_bytes, 1024 * 1024);
    assert_eq!(config.max_in_flight, 8);
    assert_eq!(config.request_timeout, Duration::from_secs(30));
    assert_eq!(config.retry_max_delay, Duration::from_secs(60));

    for (key, bad) in [
        ("crm.max_batch_bytes", json!(1023)),
        ("crm.max_in_flight", json!(0)),
        ("crm.max_in_flight", json!(257)),
        ("crm.request_timeout", json!("10ms")),
        ("crm.retry_max_delay", json!("0s")),
        ("crm.max_attempts", json!(10)),
    ] {
        assert_eq!(
            keys_of(&problems(&with(crm.clone(), key, bad.clone()))),
            vec![key],
            "{key} = {bad}"
        );
    }
    let tuned = with(
        with(crm, "crm.max_in_flight", json!(2)),
        "crm.request_timeout",
        json!("5s"),
    );
    let config = validate(&tuned, &no_origin).unwrap().crm.unwrap();
    assert_eq!(config.max_in_flight, 2);
    assert_eq!(config.request_timeout, Duration::from_secs(5));
}

#[test]
fn the_watchdog_must_wait_longer_than_the_ping() {
    let tree = with(
        with(minimal(), "stream.ping_after_idle", json!("60s")),
        "stream.reconnect_after_silence",
        json!("1m"),
    );
    assert_eq!(
        keys_of(&problems(&tree)),
        vec!["stream.reconnect_after_silence"]
    );
}

#[test]
fn the_login_unreachable_bound_is_a_duration_of_at_least_a_second() {
    let tree = with(
        minimal(),
        "genesys.login_unreachable_exit_after",
        json!("90s"),
    );
    assert_eq!(
        validate(&tree, &no_origin)
            .unwrap()
            .genesys
            .login_unreachable_exit_after,
        Duration::from_secs(90)
    );
    let tree = with(
        minimal(),
        "genesys.login_unreachable_exit_after",
        json!("0s"),
    );
    assert_eq!(
        keys_of(&problems(&tree)),
        vec!["genesys.login_unreachable_exit_after"]
    );
}

#[test]
fn rotation_must_start_within_the_channel_lifetime() {
    let tree = with(minimal(), "stream.rotate_before_expiry", json!("1d"));
    assert_eq!(
        keys_of(&problems(&tree)),
        vec!["stream.rotate_before_expiry"]
    );
}

#[test]
fn analytics_can_be_switched_off_or_scheduled() {
    let off = with(minimal(), "analytics.schedule", json!("off"));
    assert_eq!(
        validate(&off, &no_origin).unwrap().analytics.schedule,
        AnalyticsSchedule::Off
    );
    let hourly = with(minimal(), "analytics.schedule", json!("1h30m"));
    assert_eq!(
        validate(&hourly, &no_origin).unwrap().analytics.schedule,
        AnalyticsSchedule::Every(Duration::from_secs(5_400))
    );
    let bad = with(minimal(), "analytics.schedule", json!("sometimes"));
    assert_eq!(keys_of(&problems(&bad)), vec!["analytics.schedule"]);
}

#[test]
fn sla_outcomes_are_kept_35_days_unless_configured() {
    assert_eq!(
        validate(&minimal(), &no_origin)
            .unwrap()
            .analytics
            .keep_outcomes,
        Duration::from_secs(35 * 24 * 3_600)
    );
    let week = with(minimal(), "analytics.keep_outcomes", json!("7d"));
    assert_eq!(
        validate(&week, &no_origin).unwrap().analytics.keep_outcomes,
        Duration::from_secs(7 * 24 * 3_600)
    );
    let short = with(minimal(), "analytics.keep_outcomes", json!("1h"));
    assert_eq!(keys_of(&problems(&short)), vec!["analytics.keep_outcomes"]);
}

#[test]
fn listen_address_and_log_format_are_checked() {
    let tree = with(
        with(minimal(), "admin.listen", json!("localhost:9464")),
        "log.format",
        json!("yaml"),
    );
    assert_eq!(
        keys_of(&problems(&tree)),
        vec!["admin.listen", "log.format"]
    );
}

#[test]
fn a_section_of_the_wrong_type_is_one_problem() {
    let mut tree = minimal();
    tree["sla"] = json!("5m");
    tree["genesys"] = json!(["mypurecloud.ie"]);
    let found = problems(&tree);
    assert_eq!(keys_of(&found), vec!["genesys", "sla"], "{found:#?}");
    assert!(found[0].reason.contains("expected a table"));
}

#[test]
fn an_unknown_section_is_reported() {
    let mut tree = minimal();
    tree["genesis"] = json!({ "region": "mypurecloud.ie" });
    let found = problems(&tree);
    assert_eq!(keys_of(&found), vec!["genesis"]);
    assert!(
        found[0].reason.contains("did you mean genesys?"),
        "{}",
        found[0].reason
    );
}

#[test]
fn wrong_types_say_what_was_expected_and_found() {
    let tree = with(
        with(minimal(), "genesys.requests_per_minute", json!("300")),
        "sla.delivery",
        json!(60),
    );
    let found = problems(&tree);
    assert_eq!(
        keys_of(&found),
        vec!["genesys.requests_per_minute", "sla.delivery"]
    );
    assert_eq!(found[0].reason, "expected an integer, found a string");
    assert_eq!(found[1].reason, "expected a string, found an integer");
}

#[test]
fn an_outbox_cap_below_a_useful_size_is_refused() {
    let config = validate(
        &with(minimal(), "outbox.max_records", json!(5_000)),
        &no_origin,
    )
    .unwrap();
    assert_eq!(config.outbox.max_records, 5_000);
    let found = problems(&with(minimal(), "outbox.max_records", json!(10)));
    assert_eq!(keys_of(&found), vec!["outbox.max_records"], "{found:#?}");
    assert!(
        found[0].reason.contains("between 1000"),
        "{}",
        found[0].reason
    );
}

// ---- sla ------------------------------------------------------------------------------

fn with_sla(sla: Value) -> Value {
    let mut tree = minimal();
    tree["sla"] = sla;
    tree
}

#[test]
fn sla_defaults_apply_when_nothing_is_set() {
    let sla = validate(&minimal(), &no_origin).unwrap().sla;
    assert_eq!(sla, SlaConfig::default());
    assert_eq!(sla.answer, Duration::from_secs(20));
    assert_eq!(sla.next_response, Duration::from_secs(300));
    assert_eq!(sla.warn_at.basis_points(), 8_000);
    assert_eq!(sla.no_read_receipt, vec!["sms".to_owned()]);
    assert_eq!(sla.tick, Duration::from_secs(1));
}

#[test]
fn sla_overrides_and_calendars_build_the_policy() {
    let tree = with_sla(json!({
        "answer": "30s",
        "warn_at": "75%",
        "no_read_receipt": ["sms", "line"],
        "tick": "250ms",
        "queues": { QUEUE: { "first_response": "2m", "calendar": "office" } },
        "messenger_types": { "sms": { "first_response": "10m", "delivery": "5m" } },
        "calendars": { "office": {
            "time_zone": "Europe/Berlin",
            "monday": ["09:00-12:00", "13:00-18:00"],
            "friday": ["09:00-16:00"],
            "saturday": ["22:00-06:00"],
            "closed": ["2026-12-25"],
        }},
    }));
    let sla = validate(&tree, &no_origin).unwrap().sla;
    assert_eq!(sla.answer, Duration::from_secs(30));
    assert_eq!(sla.warn_at.basis_points(), 7_500);
    assert_eq!(sla.tick, Duration::from_millis(250));
    assert_eq!(sla.no_read_receipt, vec!["sms", "line"]);
    assert_eq!(sla.queues[QUEUE].calendar.as_deref(), Some("office"));
    assert!(sla.calendars.contains_key("office"));

    let policy = crate::sla::SlaPolicy::from_config(&sla);
    let first = |queue, messenger| policy.threshold(ClockKind::FirstResponse, queue, messenger);
    assert_eq!(first(Some(QUEUE), Some("sms")), Duration::from_secs(120));
    assert_eq!(first(None, Some("sms")), Duration::from_secs(600));
    assert_eq!(first(None, None), Duration::from_secs(300));
    assert_eq!(
        policy.threshold(ClockKind::Delivery, Some(QUEUE), Some("sms")),
        Duration::from_secs(300)
    );
    assert_eq!(policy.calendar_of(Some(QUEUE)), Some("office"));
    assert!(!policy.has_read_receipts(Some("line")));

    // The share may be a plain number too.
    let tree = with_sla(json!({ "warn_at": 0.9 }));
    let sla = validate(&tree, &no_origin).unwrap().sla;
    assert_eq!(sla.warn_at.basis_points(), 9_000);
}

#[test]
fn every_bad_sla_value_is_a_problem_naming_its_key() {
    let tree = with_sla(json!({
        "warn_at": 1.5,
        "tick": "5m",
        "queues": {
            "sales": { "answer": "20s" },
            QUEUE: { "calendar": "ofice", "answr": "10s", "read": "soon" },
        },
        "messenger_types": { "sms": { "answer": "10s" } },
        "calendars": {
            "office": {
                "time_zone": "Europe/Berln",
                "monday": ["09:00-25:00"],
                "closed": ["2026-02-30"],
            },
            "empty": { "time_zone": "UTC" },
            "zoneless": { "monday": ["09:00-17:00"] },
            "flat": { "time_zone": "UTC", "tuesday": "09:00-17:00" },
        },
    }));
    let found = problems(&tree);
    let reason = |key: &str| {
        found
            .iter()
            .find(|problem| problem.key == key)
            .map(|problem| problem.reason.clone())
            .unwrap_or_else(|| panic!("no problem for {key}: {found:#?}"))
    };
    let queue = format!("sla.queues.{QUEUE}");
    assert!(reason(&format!("{queue}.answr")).contains(&format!("did you mean {queue}.answer?")));
    assert!(reason("sla.messenger_types.sms.answer").starts_with("unknown key"));
    assert!(reason("sla.warn_at").contains("between 0 and 1"));
    assert!(reason("sla.tick").contains("at most"));
    assert!(reason("sla.queues.sales").contains("UUID"));
    assert!(reason(&format!("{queue}.calendar")).contains("no calendar of that name"));
    assert!(reason(&format!("{queue}.read")).contains("expected a number"));
    assert!(reason("sla.calendars.office.time_zone").contains("unknown time zone"));
    assert!(reason("sla.calendars.office.monday").contains("09:00-25:00"));
    assert!(reason("sla.calendars.office.closed").contains("2026-02-30"));
    assert!(reason("sla.calendars.empty").contains("no opening hours"));
    assert!(reason("sla.calendars.zoneless.time_zone").starts_with("required"));
    assert!(reason("sla.calendars.flat.tuesday").contains("expected a list"));
    assert_eq!(found.len(), 13, "{found:#?}");
}

#[test]
fn bad_shares_are_refused_in_every_spelling() {
    for bad in [
        json!(0),
        json!(1),
        json!("100%"),
        json!("0%"),
        json!("most"),
        json!(true),
    ] {
        let found = problems(&with_sla(json!({ "warn_at": bad })));
        assert_eq!(keys_of(&found), vec!["sla.warn_at"], "{bad}");
    }
}

#[test]
fn a_table_of_named_entries_of_the_wrong_type_is_one_problem() {
    let found = problems(&with_sla(json!({ "queues": "all" })));
    assert_eq!(keys_of(&found), vec!["sla.queues"]);
    assert!(found[0].reason.contains("expected a table"));
}

#[test]
fn sla_lists_and_shares_from_the_environment_are_text() {
    let tree = with_sla(json!({
        "warn_at": "0.9",
        "no_read_receipt": "[sms,line]",
        "calendars": { "office": {
            "time_zone": "UTC",
            "monday": "09:00-12:00,13:00-17:00",
        }},
    }));
    let from_env = |key: &str| Some(format!("env {}", crate::config::env_var_name(key)));
    let sla = validate(&tree, &from_env).unwrap().sla;
    assert_eq!(sla.warn_at.basis_points(), 9_000);
    assert_eq!(sla.no_read_receipt, vec!["sms", "line"]);
    let calendar = &sla.calendars["office"];
    let monday = chrono::DateTime::parse_from_rfc3339("2026-01-19T00:00:00Z")
        .unwrap()
        .with_timezone(&chrono::Utc);
    assert_eq!(
        calendar.open_time_between(monday, monday + chrono::TimeDelta::days(1)),
        Duration::from_secs(7 * 3_600)
    );
}

/// The emulator's and a proxy's bases: plain http, as Genesys itself never is.
fn with_bases(api_base: &str, login_base: &str) -> Value {
    with(
        with(
            without(minimal(), "genesys.region"),
            "genesys.api_base",
            json!(api_base),
        ),
        "genesys.login_base",
        json!(login_base),
    )
}

#[test]
fn plain_http_off_loopback_is_refused_because_credentials_would_travel_in_clear() {
    let tree = with(
        with_bases("http://genesys-proxy.internal", "http://10.1.2.3:8080"),
        "crm.endpoint",
        json!("http://crm.example.com/ingest"),
    );
    let found = problems(&tree);
    assert_eq!(
        keys_of(&found),
        vec!["genesys.api_base", "genesys.login_base", "crm.endpoint"]
    );
    assert!(found[0].reason.contains("client secret"), "{}", found[0]);
    assert!(found[0].reason.contains("clear text"), "{}", found[0]);
    assert!(
        found[0]
            .reason
            .contains("genesys.allow_insecure_http = true"),
        "{}",
        found[0]
    );
    assert!(found[2].reason.contains("crm.allow_insecure_http = true"));
}

#[test]
fn plain_http_is_fine_on_loopback_or_when_explicitly_allowed() {
    for (api, login, crm) in [
        (
            "http://127.0.0.1:18080",
            "http://localhost:18080",
            "http://[::1]:9000/in",
        ),
        (
            "https://api.example.com",
            "https://login.example.com",
            "https://crm.example.com/in",
        ),
    ] {
        let tree = with(with_bases(api, login), "crm.endpoint", json!(crm));
        assert!(validate(&tree, &no_origin).is_ok(), "{api} {login} {crm}");
    }
    let tree = with(
        with(
            with(
                with_bases("http://genesys-proxy.internal", "http://10.1.2.3:8080"),
                "genesys.allow_insecure_http",
                json!(true),
            ),
            "crm.endpoint",
            json!("http://crm.example.com/ingest"),
        ),
        "crm.allow_insecure_http",
        json!(true),
    );
    let config = validate(&tree, &no_origin).unwrap();
    assert_eq!(
        config.genesys.endpoints.api_base,
        "http://genesys-proxy.internal"
    );
}

#[test]
fn allow_insecure_http_must_be_a_boolean() {
    let tree = with(
        with_bases("http://127.0.0.1:1", "http://127.0.0.1:1"),
        "genesys.allow_insecure_http",
        json!("yes"),
    );
    let found = problems(&tree);
    assert_eq!(keys_of(&found), vec!["genesys.allow_insecure_http"]);
    assert!(found[0].reason.contains("true or false"));
}

#[test]
fn an_admin_api_off_loopback_is_a_warning_that_says_whether_a_token_guards_it() {
    let config = validate(&minimal(), &no_origin).unwrap();
    assert!(config.warnings().is_empty(), "{:?}", config.warnings());

    let open = with(minimal(), "admin.listen", json!("0.0.0.0:9464"));
    let warnings = validate(&open, &no_origin).unwrap().warnings();
    assert_eq!(warnings.len(), 1, "{warnings:?}");
    assert!(
        warnings[0].contains("not a loopback address"),
        "{}",
        warnings[0]
    );
    assert!(
        warnings[0].contains("without admin.token"),
        "{}",
        warnings[0]
    );

    let guarded = with(open, "admin.token", json!(SECRET));
    let warnings = validate(&guarded, &no_origin).unwrap().warnings();
    assert!(
        warnings[0].contains("admin.token guards"),
        "{}",
        warnings[0]
    );
    assert!(!warnings[0].contains(SECRET));
}

// ---- cluster.* -----------------------------------------------------------------------

#[test]
fn the_cluster_is_off_by_default_and_one_process_runs_without_nats() {
    let config = validate(&minimal(), &no_origin).unwrap();
    assert_eq!(config.cluster, None);
    let prepared = with(
        with(minimal(), "cluster.nats_url", json!("nats://10.0.0.5:4222")),
        "cluster.role",
        json!("worker"),
    );
    let config = validate(&prepared, &no_origin).unwrap();
    assert_eq!(
        config.cluster, None,
        "keys without cluster.enabled change nothing"
    );
}

#[test]
fn cluster_keys_are_checked_even_while_the_cluster_is_off() {
    let mut tree = minimal();
    for (key, value) in [
        ("cluster.nats_url", json!("http://10.0.0.5:4222")),
        ("cluster.partitions", json!(0)),
        ("cluster.role", json!("leader")),
        ("cluster.lease_ttl", json!("1s")),
        ("cluster.stream", json!("convoy frames")),
        ("cluster.replicas", json!(7)),
        ("cluster.duplicate_window", json!("2m")),
    ] {
        tree = with(tree, key, value);
    }
    let found = problems(&tree);
    assert_eq!(
        keys_of(&found),
        [
            "cluster.nats_url",
            "cluster.partitions",
            "cluster.role",
            "cluster.lease_ttl",
            "cluster.stream",
            "cluster.replicas",
            "cluster.duplicate_window",
        ]
    );
    assert!(found[6]
        .reason
        .contains("stream.rotate_before_expiry (10m)"));
}

#[test]
fn an_enabled_cluster_needs_a_nats_url() {
    let tree = with(minimal(), "cluster.enabled", json!(true));
    let found = problems(&tree);
    assert_eq!(keys_of(&found), ["cluster.nats_url"]);
    assert!(found[0]
        .reason
        .contains("required when cluster.enabled = true"));
}

#[test]
fn nats_urls_name_a_host_and_carry_no_credentials() {
    for (url, reason) in [
        ("127.0.0.1:4222", "expected nats://host:port"),
        ("https://nats:4222", "scheme nats:// or tls://"),
        ("nats://convoy:hunter2@nats:4222", "credentials"),
        ("nats://:4222", "no host"),
        ("nats://nats:0", "port"),
        ("nats://nats:http", "port"),
    ] {
        let found = problems(&with(minimal(), "cluster.nats_url", json!(url)));
        assert_eq!(keys_of(&found), ["cluster.nats_url"], "{url}");
        assert!(
            found[0].reason.contains(reason),
            "{url}: {}",
            found[0].reason
        );
    }
    for url in [
        "nats://127.0.0.1:4222",
        "tls://nats.example.com:4222",
        "nats://nats",
        "nats://[::1]:4222",
        "nats://[::1]",
    ] {
        assert!(nats_url_problem(url).is_none(), "{url}");
    }
}

#[test]
fn every_role_is_accepted_with_a_nats_url() {
    let enabled = with(
        with(minimal(), "cluster.enabled", json!(true)),
        "cluster.nats_url",
        json!("nats://127.0.0.1:4222"),
    );
    for (role, expected) in [
        (None, ClusterRole::Both),
        (Some("both"), ClusterRole::Both),
        (Some("worker"), ClusterRole::Worker),
        (Some("ingest"), ClusterRole::Ingest),
    ] {
        let tree = match role {
            Some(role) => with(enabled.clone(), "cluster.role", json!(role)),
            None => enabled.clone(),
        };
        let config = validate(&tree, &no_origin).unwrap_or_else(|problems| {
            panic!("{role:?}: {problems:?}");
        });
        let cluster = config.cluster.expect("an enabled cluster");
        assert_eq!(cluster.role, expected);
        assert_eq!(cluster.nats_url, "nats://127.0.0.1:4222");
    }
}

#[test]
fn the_duplicate_window_follows_a_shorter_rotation_margin() {
    let tree = with(
        with(minimal(), "stream.rotate_before_expiry", json!("1m")),
        "cluster.duplicate_window",
        json!("2m"),
    );
    assert!(validate(&tree, &no_origin).is_ok());
}
