//! Reads one sample back out of Prometheus text, so tests (unit and end-to-end) can assert
//! on what `/metrics` really serves. It understands the subset of the exposition format
//! the exporter writes; it is not a general Prometheus parser and the daemon never uses it.

/// The value of the series `name` whose label set is exactly `labels` (in any order), or
/// `None` when the text has no such series.
pub fn value(text: &str, name: &str, labels: &[(&str, &str)]) -> Option<f64> {
    text.lines()
        .filter(|line| !line.starts_with('#'))
        .filter_map(parse_line)
        .find(|line| line.name == name && same_labels(&line.labels, labels))
        .map(|line| line.value)
}

struct Line<'a> {
    name: &'a str,
    labels: Vec<(&'a str, String)>,
    value: f64,
}

fn parse_line(line: &str) -> Option<Line<'_>> {
    let line = line.trim();
    let name_end = line.find(['{', ' '])?;
    let name = line.get(..name_end)?;
    let rest = line.get(name_end..)?;
    let (labels, value_text) = match rest.strip_prefix('{') {
        Some(inside) => {
            let (labels, after) = parse_labels(inside)?;
            (labels, after)
        }
        None => (Vec::new(), rest),
    };
    // `value [timestamp]`: the exporter writes no timestamps, but tolerate one.
    let value = value_text.split_whitespace().next()?;
    let value = match value {
        "+Inf" => f64::INFINITY,
        "-Inf" => f64::NEG_INFINITY,
        other => other.parse().ok()?,
    };
    Some(Line {
        name,
        labels,
        value,
    })
}

/// Parses `key="value",key2="value2"}` and returns the pairs and the text after `}`.
fn parse_labels(mut text: &str) -> Option<(Vec<(&str, String)>, &str)> {
    let mut labels = Vec::new();
    loop {
        text = text.trim_start_matches([',', ' ']);
        if let Some(after) = text.strip_prefix('}') {
            return Some((labels, after));
        }
        let eq = text.find('=')?;
        let key = text.get(..eq)?.trim();
        let mut chars = text.get(eq + 1..)?.char_indices();
        if chars.next()?.1 != '"' {
            return None;
        }
        let mut value = String::new();
        let end = loop {
            let (index, c) = chars.next()?;
            match c {
                '\\' => match chars.next()?.1 {
                    'n' => value.push('\n'),
                    other => value.push(other),
                },
                '"' => break index,
                other => value.push(other),
            }
        };
        labels.push((key, value));
        text = text.get(eq + 1 + end + 1..)?;
    }
}

fn same_labels(found: &[(&str, String)], wanted: &[(&str, &str)]) -> bool {
    found.len() == wanted.len()
        && wanted
            .iter()
            .all(|(key, value)| found.iter().any(|(k, v)| k == key && v == value))
}

#[cfg(test)]
#[allow(clippy::unwrap_used, clippy::expect_used)]
mod tests {
    use super::*;

    const TEXT: &str = "\
# HELP convoy_actor_restarts_total Actor restarts.
# TYPE convoy_actor_restarts_total counter
convoy_actor_restarts_total{actor=\"stream\"} 3
convoy_actor_restarts_total{actor=\"token\"} 0

# TYPE convoy_genesys_requests_total counter
convoy_genesys_requests_total{route=\"GET /api/v2/conversations/{id}\",class=\"2xx\"} 12
# TYPE convoy_conversations_live gauge
convoy_conversations_live 7
convoy_odd{note=\"a \\\"quoted\\\" word\"} 1.5
";

    #[test]
    fn finds_a_series_by_exact_label_set_in_any_order() {
        assert_eq!(
            value(TEXT, "convoy_actor_restarts_total", &[("actor", "stream")]),
            Some(3.0)
        );
        assert_eq!(
            value(
                TEXT,
                "convoy_genesys_requests_total",
                &[
                    ("class", "2xx"),
                    ("route", "GET /api/v2/conversations/{id}")
                ]
            ),
            Some(12.0)
        );
        assert_eq!(value(TEXT, "convoy_conversations_live", &[]), Some(7.0));
        assert_eq!(
            value(TEXT, "convoy_odd", &[("note", "a \"quoted\" word")]),
            Some(1.5)
        );
    }

    #[test]
    fn a_missing_series_or_a_partial_label_set_is_none() {
        assert_eq!(
            value(TEXT, "convoy_actor_restarts_total", &[("actor", "crm")]),
            None
        );
        assert_eq!(
            value(TEXT, "convoy_genesys_requests_total", &[("class", "2xx")]),
            None
        );
        assert_eq!(value(TEXT, "convoy_actor_restarts_total", &[]), None);
        assert_eq!(value(TEXT, "convoy_nothing", &[]), None);
    }
}
