//! The list of configuration keys: which exist (so a typo is an "unknown key" problem, not
//! a silently ignored line), which hold secrets (so every printer redacts them), and which
//! hold text (so the shell keeps an environment value such as `CONVOY_CRM__PASSWORD=0123`
//! as the string it is instead of parsing it into the number 123).

/// How a key's value is written.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum KeyKind {
    /// Text: names, URLs, durations, paths, addresses, enumerations.
    Text,
    /// Text that is a credential: redacted everywhere.
    Secret,
    /// An integer.
    Integer,
    /// A list of ids (`["a", "b"]`, or from the environment `[a,b]` or `a,b`).
    IdList,
    /// A list of texts (names, opening ranges, dates), spelled like [`KeyKind::IdList`].
    TextList,
    /// `true` or `false`.
    Boolean,
}

/// One configuration key, dotted (`genesys.region`). A `*` segment stands for a name the
/// operator chooses (`sla.queues.*.answer`: a queue id; `sla.calendars.*.monday`: a
/// calendar name).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct KeySpec {
    pub key: &'static str,
    pub kind: KeyKind,
}

const fn spec(key: &'static str, kind: KeyKind) -> KeySpec {
    KeySpec { key, kind }
}

/// Every key Convoy reads. The README's configuration table documents the same list.
pub const KEYS: &[KeySpec] = &[
    spec("genesys.region", KeyKind::Text),
    spec("genesys.api_base", KeyKind::Text),
    spec("genesys.login_base", KeyKind::Text),
    spec("genesys.allow_insecure_http", KeyKind::Boolean),
    spec("genesys.client_id", KeyKind::Text),
    spec("genesys.client_secret", KeyKind::Secret),
    spec("genesys.client_secret_file", KeyKind::Text),
    spec("genesys.requests_per_minute", KeyKind::Integer),
    spec("genesys.login_unreachable_exit_after", KeyKind::Text),
    spec("genesys.if_match", KeyKind::Text),
    spec("genesys.write_back", KeyKind::Text),
    spec("genesys.queues", KeyKind::IdList),
    spec("genesys.users", KeyKind::IdList),
    spec("sla.answer", KeyKind::Text),
    spec("sla.first_response", KeyKind::Text),
    spec("sla.next_response", KeyKind::Text),
    spec("sla.delivery", KeyKind::Text),
    spec("sla.read", KeyKind::Text),
    spec("sla.warn_at", KeyKind::Text),
    spec("sla.no_read_receipt", KeyKind::TextList),
    spec("sla.tick", KeyKind::Text),
    spec("sla.queues.*.answer", KeyKind::Text),
    spec("sla.queues.*.first_response", KeyKind::Text),
    spec("sla.queues.*.next_response", KeyKind::Text),
    spec("sla.queues.*.delivery", KeyKind::Text),
    spec("sla.queues.*.read", KeyKind::Text),
    spec("sla.queues.*.calendar", KeyKind::Text),
    spec("sla.messenger_types.*.first_response", KeyKind::Text),
    spec("sla.messenger_types.*.next_response", KeyKind::Text),
    spec("sla.messenger_types.*.delivery", KeyKind::Text),
    spec("sla.messenger_types.*.read", KeyKind::Text),
    spec("sla.calendars.*.time_zone", KeyKind::Text),
    spec("sla.calendars.*.monday", KeyKind::TextList),
    spec("sla.calendars.*.tuesday", KeyKind::TextList),
    spec("sla.calendars.*.wednesday", KeyKind::TextList),
    spec("sla.calendars.*.thursday", KeyKind::TextList),
    spec("sla.calendars.*.friday", KeyKind::TextList),
    spec("sla.calendars.*.saturday", KeyKind::TextList),
    spec("sla.calendars.*.sunday", KeyKind::TextList),
    spec("sla.calendars.*.closed", KeyKind::TextList),
    spec("crm.endpoint", KeyKind::Text),
    spec("crm.allow_insecure_http", KeyKind::Boolean),
    spec("crm.auth", KeyKind::Text),
    spec("crm.token", KeyKind::Secret),
    spec("crm.token_file", KeyKind::Text),
    spec("crm.username", KeyKind::Text),
    spec("crm.password", KeyKind::Secret),
    spec("crm.password_file", KeyKind::Text),
    spec("crm.hmac_secret", KeyKind::Secret),
    spec("crm.hmac_secret_file", KeyKind::Text),
    spec("crm.batch_size", KeyKind::Integer),
    spec("crm.flush_interval", KeyKind::Text),
    spec("crm.max_batch_bytes", KeyKind::Integer),
    spec("crm.max_in_flight", KeyKind::Integer),
    spec("crm.request_timeout", KeyKind::Text),
    spec("crm.retry_max_delay", KeyKind::Text),
    spec("outbox.path", KeyKind::Text),
    spec("outbox.max_records", KeyKind::Integer),
    spec("analytics.schedule", KeyKind::Text),
    spec("analytics.output_dir", KeyKind::Text),
    spec("analytics.keep_outcomes", KeyKind::Text),
    spec("admin.listen", KeyKind::Text),
    spec("admin.token", KeyKind::Secret),
    spec("admin.token_file", KeyKind::Text),
    spec("log.format", KeyKind::Text),
    spec("log.filter", KeyKind::Text),
    spec("stream.max_frame_bytes", KeyKind::Integer),
    spec("stream.ping_after_idle", KeyKind::Text),
    spec("stream.reconnect_after_silence", KeyKind::Text),
    spec("stream.rotate_before_expiry", KeyKind::Text),
    spec("conversations.max_live", KeyKind::Integer),
    spec("conversations.idle_timeout", KeyKind::Text),
    spec("shutdown.deadline", KeyKind::Text),
    spec("cluster.enabled", KeyKind::Boolean),
    spec("cluster.nats_url", KeyKind::Text),
    spec("cluster.partitions", KeyKind::Integer),
    spec("cluster.role", KeyKind::Text),
    spec("cluster.lease_ttl", KeyKind::Text),
    spec("cluster.stream", KeyKind::Text),
    spec("cluster.replicas", KeyKind::Integer),
    spec("cluster.duplicate_window", KeyKind::Text),
];

/// The spec of a known key (`*` segments of a spec match any one segment).
pub fn key_spec(key: &str) -> Option<&'static KeySpec> {
    KEYS.iter().find(|spec| pattern_matches(spec.key, key))
}

/// True when `key` names a table that holds keys (`sla.queues`, `sla.queues.<id>`), not a
/// key itself.
pub fn is_table(key: &str) -> bool {
    let depth = key.split('.').count();
    KEYS.iter().any(|spec| {
        spec.key.split('.').count() > depth
            && segments_match(spec.key.split('.').take(depth), key.split('.'))
    })
}

fn pattern_matches(pattern: &str, key: &str) -> bool {
    pattern.split('.').count() == key.split('.').count()
        && segments_match(pattern.split('.'), key.split('.'))
}

fn segments_match<'a>(
    pattern: impl Iterator<Item = &'a str>,
    key: impl Iterator<Item = &'a str>,
) -> bool {
    pattern
        .zip(key)
        .all(|(want, have)| want == have || (want == "*" && !have.is_empty()))
}

/// True when `key` is a top-level section (`genesys`, `crm`, ...).
pub fn is_section(name: &str) -> bool {
    KEYS.iter().any(|spec| section_of(spec.key) == name)
}

fn section_of(key: &str) -> &str {
    key.split_once('.').map_or(key, |(section, _)| section)
}

/// True when a value under `key` must never be printed. Unknown keys that look like
/// credentials (`genesys.client_secrt`, a typo) are treated as secrets too: a typo must not
/// leak the value it was meant to protect.
pub fn is_secret_key(key: &str) -> bool {
    if let Some(spec) = key_spec(key) {
        return spec.kind == KeyKind::Secret;
    }
    let typo_of_secret = closest_key(key)
        .and_then(|known| key_spec(&known))
        .is_some_and(|spec| spec.kind == KeyKind::Secret);
    let leaf = key.rsplit('.').next().unwrap_or(key).to_ascii_lowercase();
    typo_of_secret
        || ["secret", "token", "password", "passwd", "credential", "key"]
            .iter()
            .any(|word| leaf.contains(word))
}

/// True when an environment value for `key` must be kept as raw text rather than parsed
/// (secrets and text keys; unknown keys too, since only their name gets reported).
pub fn env_value_is_text(key: &str) -> bool {
    key_spec(key).is_none_or(|spec| matches!(spec.kind, KeyKind::Text | KeyKind::Secret))
}

/// The environment variable that sets `key`: `genesys.region` → `CONVOY_GENESYS__REGION`.
pub fn env_var_name(key: &str) -> String {
    format!("CONVOY_{}", key.to_ascii_uppercase().replace('.', "__"))
}

/// The prefix of every environment variable the configuration loader reads.
pub const ENV_PREFIX: &str = "CONVOY_";

/// Environment variables under [`ENV_PREFIX`] that belong to Convoy's tools (`convoy
/// simulate`, `convoy crm-sink`, `convoy emulate`, `convoy demo`), not to the daemon's
/// configuration: the loader leaves them alone, so `CONVOY_SIM_CLIENT_SECRET` set for the
/// simulator does not break `convoy run` in the same shell. A configuration variable always
/// has `__` after its section, so no key can collide with these.
pub const TOOL_ENV_PREFIXES: &[&str] = &[
    "CONVOY_SIM_",
    "CONVOY_SIMULATE_",
    "CONVOY_CRM_SINK_",
    "CONVOY_EMULATE_",
    "CONVOY_DEMO_",
];

/// `CONVOY_CONFIG` names the configuration file; it is not a key.
pub const CONFIG_FILE_ENV: &str = "CONVOY_CONFIG";

/// What the configuration loader makes of one environment variable name.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum EnvName {
    /// Sets the dotted key (`CONVOY_SLA__READ` → `sla.read`; unknown keys included, so
    /// validation can report them).
    Key(String),
    /// Not the loader's: another program's variable, `CONVOY_CONFIG`, or a tool's.
    Ignored,
    /// Meant for Convoy but not upper case (`convoy_sla__read`): refused, because a
    /// problem report naming `CONVOY_SLA__READ` would send the reader to a variable that
    /// is not set.
    NotUpperCase { suggestion: String },
}

/// Classifies an environment variable name (see [`EnvName`]).
pub fn env_name(name: &str) -> EnvName {
    let upper = name.to_ascii_uppercase();
    let Some(rest) = upper.strip_prefix(ENV_PREFIX) else {
        return EnvName::Ignored;
    };
    let is_tool = TOOL_ENV_PREFIXES
        .iter()
        .any(|prefix| upper.starts_with(prefix));
    if upper == CONFIG_FILE_ENV || is_tool || rest.is_empty() {
        return EnvName::Ignored;
    }
    if name != upper {
        return EnvName::NotUpperCase { suggestion: upper };
    }
    EnvName::Key(rest.to_ascii_lowercase().replace("__", "."))
}

/// The known key or section closest to an unknown one, when it is close enough to be a
/// typo. A `*` segment of a spec takes the unknown key's segment, so a typo inside
/// `sla.queues.<id>.` is matched against that queue's keys.
pub fn closest_key(unknown: &str) -> Option<String> {
    let unknown = unknown.to_ascii_lowercase();
    let given: Vec<&str> = unknown.split('.').collect();
    KEYS.iter()
        .flat_map(|spec| {
            let filled: Vec<&str> = spec
                .key
                .split('.')
                .enumerate()
                .map(|(index, part)| match (part, given.get(index)) {
                    ("*", Some(name)) => name,
                    _ => part,
                })
                .collect();
            [filled.join("."), section_of(spec.key).to_owned()]
        })
        .filter(|known| !known.contains('*'))
        .map(|known| (edit_distance(&unknown, &known), known))
        .filter(|(distance, key)| *distance <= 2.max(key.len() / 6))
        .min_by_key(|(distance, _)| *distance)
        .map(|(_, key)| key)
}

/// Levenshtein distance over bytes; keys are ASCII.
fn edit_distance(a: &str, b: &str) -> usize {
    let b = b.as_bytes();
    let mut previous: Vec<usize> = (0..=b.len()).collect();
    for (i, ca) in a.bytes().enumerate() {
        let mut current = vec![i + 1; b.len() + 1];
        for (j, cb) in b.iter().enumerate() {
            let substitution = previous[j] + usize::from(ca != *cb);
            current[j + 1] = substitution.min(previous[j + 1] + 1).min(current[j] + 1);
        }
        previous = current;
    }
    previous[b.len()]
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn env_names_use_double_underscores_for_nesting() {
        assert_eq!(env_var_name("genesys.region"), "CONVOY_GENESYS__REGION");
        assert_eq!(
            env_var_name("sla.first_response"),
            "CONVOY_SLA__FIRST_RESPONSE"
        );
    }

    #[test]
    fn typos_of_secret_keys_are_still_secret() {
        assert!(is_secret_key("genesys.client_secret"));
        assert!(is_secret_key("genesys.client_secrt"));
        assert!(is_secret_key("crm.tokn"));
        assert!(!is_secret_key("genesys.region"));
        assert!(!is_secret_key("genesys.client_secret_file"));
        for path_key in [
            "crm.token_file",
            "crm.password_file",
            "crm.hmac_secret_file",
            "admin.token_file",
        ] {
            assert!(
                !is_secret_key(path_key),
                "{path_key} holds a path, not a secret"
            );
        }
    }

    #[test]
    fn close_typos_suggest_the_key() {
        let closest = |key| closest_key(key);
        assert_eq!(closest("genesys.regoin").as_deref(), Some("genesys.region"));
        assert_eq!(closest("genesys_region").as_deref(), Some("genesys.region"));
        assert_eq!(
            closest("sla.frist_response").as_deref(),
            Some("sla.first_response")
        );
        assert_eq!(closest("completely.different"), None);
    }

    #[test]
    fn pattern_keys_match_any_name_and_typos_inside_them_are_suggested() {
        let queue = "sla.queues.2f6b1c1e-0d3a-4b8e-9a57-0c1f2e3d4a5b";
        assert!(key_spec(&format!("{queue}.answer")).is_some());
        assert!(key_spec("sla.calendars.office.monday").is_some());
        assert!(key_spec("sla.queues.answer").is_none());
        assert!(key_spec("sla.queues..answer").is_none());
        assert!(is_table("sla.queues"));
        assert!(is_table(queue));
        assert!(is_table("sla.calendars.office"));
        assert!(!is_table("sla.answer"));
        assert!(!is_table("sla.queues.x.answer"));
        assert_eq!(
            closest_key(&format!("{queue}.answr")),
            Some(format!("{queue}.answer"))
        );
        assert_eq!(
            closest_key("sla.calendars.office.timezone").as_deref(),
            Some("sla.calendars.office.time_zone")
        );
        assert_eq!(
            closest_key("sla.messenger_type.sms.read").as_deref(),
            Some("sla.messenger_types.sms.read")
        );
        assert_eq!(
            env_var_name("sla.queues.*.answer"),
            "CONVOY_SLA__QUEUES__*__ANSWER"
        );
    }

    #[test]
    fn environment_names_map_to_keys_and_leave_the_tools_alone() {
        assert_eq!(
            env_name("CONVOY_SLA__READ"),
            EnvName::Key("sla.read".to_owned())
        );
        assert_eq!(
            env_name("CONVOY_SLAA__READ"),
            EnvName::Key("slaa.read".to_owned())
        );
        // A single underscore is still read, so the typo can be reported with a hint.
        assert_eq!(
            env_name("CONVOY_GENESYS_REGION"),
            EnvName::Key("genesys_region".to_owned())
        );
        for tool in [
            "CONVOY_SIM_CLIENT_SECRET",
            "CONVOY_SIM_CLIENT_ID",
            "CONVOY_CRM_SINK_AUTH",
            "CONVOY_EMULATE_CLIENT_SECRET",
            "CONVOY_DEMO_SEED",
            "CONVOY_CONFIG",
            "PATH",
            "CONVOYX",
        ] {
            assert_eq!(env_name(tool), EnvName::Ignored, "{tool}");
        }
        // The CRM sink's prefix must not swallow the CRM section's keys.
        assert_eq!(
            env_name("CONVOY_CRM__AUTH"),
            EnvName::Key("crm.auth".to_owned())
        );
        assert_eq!(
            env_name("convoy_sla__read"),
            EnvName::NotUpperCase {
                suggestion: "CONVOY_SLA__READ".to_owned()
            }
        );
        assert_eq!(env_name("convoy_sim_client_id"), EnvName::Ignored);
    }

    #[test]
    fn only_text_keys_keep_raw_environment_values() {
        assert!(env_value_is_text("crm.password"));
        assert!(env_value_is_text("genesys.region"));
        assert!(!env_value_is_text("crm.batch_size"));
        assert!(!env_value_is_text("genesys.queues"));
        assert!(!env_value_is_text("sla.no_read_receipt"));
        assert!(!env_value_is_text("sla.calendars.office.monday"));
        assert!(env_value_is_text("sla.calendars.office.time_zone"));
    }
}
