//! Pointing a Convoy configuration file at a CRM: `[crm] endpoint` set in the file's
//! text, every other line (comments included) kept. `convoy crm-sink --write-config FILE`
//! uses it on the file `convoy emulate --write-config` wrote, so the two test servers
//! compose without editing TOML by hand.

/// Why a configuration could not be pointed at the sink.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum EndpointEditError {
    #[error("the file is not valid TOML ({0}); fix it or write a new one")]
    NotToml(String),
    #[error("`crm` is not a table in the file; cannot add crm.endpoint to it")]
    CrmNotTable,
}

/// `text` (a Convoy configuration) with `[crm] endpoint = "{endpoint}"`: the existing
/// `endpoint` line of the `[crm]` table replaced, or one added right under its header, or
/// a `[crm]` table appended; every other line (comments included) unchanged.
pub fn with_crm_endpoint(text: &str, endpoint: &str) -> Result<String, EndpointEditError> {
    let parsed: toml::Table =
        toml::from_str(text).map_err(|error| EndpointEditError::NotToml(error.to_string()))?;
    if parsed.get("crm").is_some_and(|crm| !crm.is_table()) {
        return Err(EndpointEditError::CrmNotTable);
    }
    let line = format!("endpoint = {}", toml::Value::String(endpoint.to_owned()));
    let mut lines: Vec<String> = text.lines().map(str::to_owned).collect();
    // The table a line belongs to: the last `[header]` above it ("" before any).
    let mut table = String::new();
    let mut header_at = None;
    let mut replaced = false;
    for (index, current) in lines.iter_mut().enumerate() {
        let trimmed = current.trim();
        if trimmed.starts_with('[') {
            table = trimmed
                .trim_start_matches('[')
                .split(']')
                .next()
                .unwrap_or_default()
                .trim()
                .to_owned();
            if table == "crm" {
                header_at = Some(index);
            }
            continue;
        }
        let key = trimmed.split('=').next().unwrap_or_default().trim();
        let is_endpoint =
            (table == "crm" && key == "endpoint") || (table.is_empty() && key == "crm.endpoint");
        if is_endpoint && trimmed.contains('=') {
            *current = if table == "crm" {
                line.clone()
            } else {
                format!("crm.{line}")
            };
            replaced = true;
        }
    }
    if !replaced {
        match header_at {
            Some(index) => lines.insert(index + 1, line),
            None => {
                if lines.last().is_some_and(|last| !last.trim().is_empty()) {
                    lines.push(String::new());
                }
                lines.push("[crm]".to_owned());
                lines.push(line);
            }
        }
    }
    let mut edited = lines.join("\n");
    edited.push('\n');
    let check: toml::Table =
        toml::from_str(&edited).map_err(|error| EndpointEditError::NotToml(error.to_string()))?;
    let written = check
        .get("crm")
        .and_then(|crm| crm.get("endpoint"))
        .and_then(toml::Value::as_str);
    if written != Some(endpoint) {
        return Err(EndpointEditError::CrmNotTable);
    }
    Ok(edited)
}

#[cfg(test)]
#[allow(clippy::unwrap_used, clippy::expect_used)]
mod tests {
    use super::*;

    const EMULATE_WROTE: &str = "# Written by `convoy emulate --write-config`.\n\n[genesys]\n\
        api_base = \"http://127.0.0.1:41000\"\nqueues = [\"q1\"]\n";

    fn endpoint_of(text: &str) -> String {
        let table: toml::Table = toml::from_str(text).unwrap();
        table["crm"]["endpoint"].as_str().unwrap().to_owned()
    }

    #[test]
    fn the_endpoint_is_added_to_a_file_without_crm_keeping_every_line() {
        let edited = with_crm_endpoint(EMULATE_WROTE, "http://127.0.0.1:42000").unwrap();
        assert!(edited.starts_with(EMULATE_WROTE), "{edited}");
        assert!(edited.ends_with("\n[crm]\nendpoint = \"http://127.0.0.1:42000\"\n"));
        assert_eq!(endpoint_of(&edited), "http://127.0.0.1:42000");
        let table: toml::Table = toml::from_str(&edited).unwrap();
        assert_eq!(table["genesys"]["queues"][0].as_str(), Some("q1"));
        // An empty (missing) file gets just the table.
        assert_eq!(
            with_crm_endpoint("", "http://x").unwrap(),
            "[crm]\nendpoint = \"http://x\"\n"
        );
    }

    #[test]
    fn an_existing_endpoint_is_replaced_and_other_crm_keys_kept() {
        let first = with_crm_endpoint(EMULATE_WROTE, "http://127.0.0.1:1").unwrap();
        let second = with_crm_endpoint(&first, "http://127.0.0.1:2").unwrap();
        assert_eq!(endpoint_of(&second), "http://127.0.0.1:2");
        assert_eq!(second.matches("endpoint").count(), 1, "{second}");

        let with_keys = "[crm]\nbatch_max_records = 50\nendpoint = \"https://old\" # prod\n\n[sla]\nread = \"2s\"\n";
        let edited = with_crm_endpoint(with_keys, "http://new").unwrap();
        assert_eq!(
            edited,
            "[crm]\nbatch_max_records = 50\nendpoint = \"http://new\"\n\n[sla]\nread = \"2s\"\n"
        );
        // A `[crm]` table without an endpoint gets one under its header.
        let edited = with_crm_endpoint("[crm]\nbatch_max_records = 50\n", "http://new").unwrap();
        assert_eq!(
            edited,
            "[crm]\nendpoint = \"http://new\"\nbatch_max_records = 50\n"
        );
        // A dotted top-level key is replaced where it is.
        let edited =
            with_crm_endpoint("crm.endpoint = \"http://old\"\n[sla]\n", "http://new").unwrap();
        assert_eq!(endpoint_of(&edited), "http://new");
        assert!(!edited.contains("[crm]"));
    }

    #[test]
    fn a_file_that_is_not_toml_is_left_alone() {
        assert!(matches!(
            with_crm_endpoint("[genesys\n", "http://x"),
            Err(EndpointEditError::NotToml(_))
        ));
        assert_eq!(
            with_crm_endpoint("crm = 3\n", "http://x"),
            Err(EndpointEditError::CrmNotTable)
        );
    }
}
