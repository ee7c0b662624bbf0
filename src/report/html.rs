//! Renders [`ReportData`] as one HTML document with inline CSS and inline SVG.
//!
//! Sections in reading order: the warning (only when the data may be incomplete), the
//! figures' provenance, conversations over time, queues, SLA compliance by clock, breaches,
//! and the conversation list the breaches link into (`#conv-<id>`).

use std::collections::BTreeSet;
use std::fmt::Write as _;

use super::format::{self, NO_DATA};
use super::{Incompleteness, OutcomeCounts, ReportData};
use crate::svg::{self, BarChart, BarGroup, Size, TimeBucket, TimeSeriesChart};

/// The page's style: readable on screen and on paper, no web fonts, no external anything.
const STYLE: &str = "\
body{font-family:system-ui,-apple-system,'Segoe UI',Roboto,sans-serif;color:#222;\
max-width:1100px;margin:0 auto;padding:24px;line-height:1.45}\
h1{font-size:1.6em;margin-bottom:.2em}h2{margin-top:1.8em;border-bottom:1px solid #ddd;\
padding-bottom:.2em}.interval{color:#555;margin-top:0}\
table{border-collapse:collapse;width:100%;margin:.6em 0;font-size:.92em}\
th,td{border:1px solid #ddd;padding:4px 8px;text-align:left;vertical-align:top}\
th{background:#f4f6f8}td.n{text-align:right;font-variant-numeric:tabular-nums}.nw{white-space:nowrap}\
.warning{border:2px solid #c62828;background:#fdecea;padding:10px 16px;border-radius:4px;\
margin:1em 0}.warning strong{color:#b71c1c}\
.ok{border:1px solid #2e7d32;background:#edf7ed;padding:6px 12px;border-radius:4px}\
dl{display:grid;grid-template-columns:max-content auto;gap:4px 16px}dt{font-weight:600}\
dd{margin:0}figure{margin:1em 0}svg{max-width:100%;height:auto}\
.muted{color:#666}code{font-size:.9em}\
ol.ids{columns:3 22em;font-family:ui-monospace,monospace;font-size:.85em}\
ol.ids li:target{background:#fff3bf}";

/// The whole page. Same data, same bytes.
pub fn render_html(data: &ReportData) -> String {
    let mut page = String::with_capacity(32 * 1024);
    let title = svg::escape(&data.title);
    let _ = write!(
        page,
        "<!DOCTYPE html>\n<html lang=\"en\">\n<head>\n<meta charset=\"utf-8\">\n\
         <meta name=\"viewport\" content=\"width=device-width, initial-scale=1\">\n\
         <title>{title}</title>\n<style>{STYLE}</style>\n</head>\n<body>\n\
         <h1>{title}</h1>\n<p class=\"interval\">Interval {} to {} (UTC, end excluded)</p>\n",
        format::instant(data.interval.from),
        format::instant(data.interval.to),
    );
    warning(&mut page, data);
    trust(&mut page, data);
    over_time(&mut page, data);
    queues(&mut page, data);
    sla_by_clock(&mut page, data);
    breaches(&mut page, data);
    conversations(&mut page, data);
    page.push_str("</body>\n</html>\n");
    page
}

fn warning(page: &mut String, data: &ReportData) {
    let reasons = data.incompleteness();
    if reasons.is_empty() {
        return;
    }
    page.push_str(
        "<div class=\"warning\" role=\"alert\" id=\"warning\"><p><strong>Data may be \
         incomplete.</strong> Read the figures below with care:</p>\n<ul>\n",
    );
    for reason in reasons {
        let text = match reason {
            Incompleteness::UnknownWatermark => {
                "The analytics availability watermark (dataAvailabilityDate) is unknown: \
                 conversations near the end of the interval may be missing."
                    .to_owned()
            }
            Incompleteness::WatermarkBeforeIntervalEnd {
                watermark,
                interval_end,
            } => format!(
                "Genesys analytics data is only complete up to {} (dataAvailabilityDate), \
                 before the interval end {}: later conversations may be missing.",
                format::instant(watermark),
                format::instant(interval_end)
            ),
            Incompleteness::Mismatches { count } => format!(
                "The conversation details and the aggregates disagree in {count} {} (see \
                 \u{201c}Reconciliation\u{201d}).",
                if count == 1 { "figure" } else { "figures" }
            ),
        };
        let _ = writeln!(page, "<li>{}</li>", svg::escape(&text));
    }
    page.push_str("</ul></div>\n");
}

fn trust(page: &mut String, data: &ReportData) {
    let trust = &data.trust;
    page.push_str("<h2 id=\"trust\">How far these figures can be trusted</h2>\n<dl>\n");
    let _ = writeln!(
        page,
        "<dt>Analytics data complete up to</dt><dd>{}</dd>",
        trust
            .data_availability_date
            .map_or_else(|| "unknown".to_owned(), format::instant),
    );
    if let Some(generated_at) = trust.generated_at {
        let _ = writeln!(
            page,
            "<dt>Generated at</dt><dd>{}</dd>",
            format::instant(generated_at)
        );
    }
    page.push_str("</dl>\n<h3>Queries</h3>\n");
    if trust.queries.is_empty() {
        page.push_str("<p class=\"muted\">No queries recorded.</p>\n");
    } else {
        page.push_str(
            "<table><thead><tr><th>Query</th><th>What it asked</th><th>Requests</th>\
             <th>Rows</th></tr></thead><tbody>\n",
        );
        for query in &trust.queries {
            let _ = writeln!(
                page,
                "<tr><td>{}</td><td><code>{}</code></td><td class=\"n\">{}</td>\
                 <td class=\"n\">{}</td></tr>",
                svg::escape(&query.name),
                svg::escape(&query.description),
                query.requests,
                query.rows
            );
        }
        page.push_str("</tbody></table>\n");
    }
    page.push_str("<h3 id=\"reconciliation\">Reconciliation</h3>\n");
    if trust.mismatches.is_empty() {
        page.push_str(
            "<p class=\"ok\">The conversation details agree with the aggregates on offered, \
             answered and abandoned for every queue.</p>\n",
        );
        return;
    }
    page.push_str(
        "<p>The conversation details and the aggregates count these differently:</p>\n\
         <table><thead><tr><th>Queue</th><th>Media type</th><th>Metric</th>\
         <th>Details count</th><th>Aggregates count</th></tr></thead><tbody>\n",
    );
    for m in &trust.mismatches {
        let _ = writeln!(
            page,
            "<tr><td>{}</td><td>{}</td><td>{}</td><td class=\"n\">{}</td>\
             <td class=\"n\">{}</td></tr>",
            svg::escape(&m.queue),
            svg::escape(&m.media_type),
            svg::escape(&m.metric),
            m.details_count,
            m.aggregates_count
        );
    }
    page.push_str("</tbody></table>\n");
}

fn over_time(page: &mut String, data: &ReportData) {
    let total: u64 = data.conversations_over_time.iter().map(|b| b.count).sum();
    let _ = writeln!(
        page,
        "<h2 id=\"over-time\">Conversations over the interval</h2>\n<p>{total} {} started.</p>",
        if total == 1 {
            "conversation"
        } else {
            "conversations"
        }
    );
    let chart = svg::time_series_chart(&TimeSeriesChart {
        title: "Conversations started per bucket".into(),
        y_title: "conversations".into(),
        buckets: data
            .conversations_over_time
            .iter()
            .map(|b| TimeBucket {
                start: b.start,
                count: b.count,
            })
            .collect(),
        size: Size::default(),
    });
    let _ = writeln!(page, "<figure>{chart}</figure>");
}

fn queues(page: &mut String, data: &ReportData) {
    page.push_str("<h2 id=\"queues\">Queues</h2>\n");
    if data.queues.is_empty() {
        page.push_str("<p class=\"muted\">No queue had conversations in this interval.</p>\n");
        return;
    }
    page.push_str(
        "<p>Times are the median / 90th percentile. Service level is Genesys' own: answered \
         within the queue's target over answered plus abandoned. Convoy's answer SLA is the \
         share of Convoy's <code>answer</code> clocks that were compliant.</p>\n\
         <table><thead><tr><th>Queue</th><th>Media</th><th>Offered</th><th>Answered</th>\
         <th>Abandoned</th><th>Transferred</th><th>Handle</th><th>Talk</th><th>ACW</th>\
         <th>Service level</th><th>Convoy answer SLA</th></tr></thead><tbody>\n",
    );
    for row in &data.queues {
        let _ = writeln!(
            page,
            "<tr><td>{}</td><td>{}</td><td class=\"n\">{}</td><td class=\"n\">{}</td>\
             <td class=\"n\">{}</td><td class=\"n\">{}</td><td class=\"n\">{}</td>\
             <td class=\"n\">{}</td><td class=\"n\">{}</td><td class=\"n\">{}</td>\
             <td class=\"n\">{}</td></tr>",
            svg::escape(&row.queue),
            svg::escape(&row.media_type),
            row.offered,
            row.answered,
            row.abandoned,
            row.transferred,
            median_p90(row.handle),
            median_p90(row.talk),
            median_p90(row.acw),
            format::optional_percent(row.service_level),
            compliance(&row.answer_sla),
        );
    }
    page.push_str("</tbody></table>\n");
    let chart = svg::bar_chart(&BarChart {
        title: "Offered, answered and abandoned per queue".into(),
        y_title: "conversations".into(),
        series: vec!["offered".into(), "answered".into(), "abandoned".into()],
        groups: data
            .queues
            .iter()
            .map(|row| BarGroup {
                label: format!("{} ({})", row.queue, row.media_type),
                values: vec![
                    row.offered as f64,
                    row.answered as f64,
                    row.abandoned as f64,
                ],
            })
            .collect(),
        size: Size::default(),
    });
    let _ = writeln!(page, "<figure>{chart}</figure>");
}

fn sla_by_clock(page: &mut String, data: &ReportData) {
    page.push_str("<h2 id=\"sla\">SLA compliance by clock</h2>\n");
    if data.sla_by_clock.is_empty() {
        page.push_str("<p class=\"muted\">No SLA clock settled in this interval.</p>\n");
        return;
    }
    page.push_str(
        "<table><thead><tr><th>Clock</th><th>Compliant</th><th>Breached</th><th>Failed</th>\
         <th>Missing receipt</th><th>Abandoned</th><th>Compliance</th></tr></thead><tbody>\n",
    );
    for row in &data.sla_by_clock {
        let o = &row.outcomes;
        let _ = writeln!(
            page,
            "<tr><td>{}</td><td class=\"n\">{}</td><td class=\"n\">{}</td>\
             <td class=\"n\">{}</td><td class=\"n\">{}</td><td class=\"n\">{}</td>\
             <td class=\"n\">{}</td></tr>",
            row.clock.as_str(),
            o.compliant,
            o.breached,
            o.failed,
            o.missing_receipt,
            o.abandoned,
            format::optional_percent(o.compliance())
        );
    }
    page.push_str("</tbody></table>\n");
    let chart = svg::bar_chart(&BarChart {
        title: "SLA outcomes by clock".into(),
        y_title: "clocks".into(),
        series: [
            "compliant",
            "breached",
            "failed",
            "missing receipt",
            "abandoned",
        ]
        .map(String::from)
        .to_vec(),
        groups: data
            .sla_by_clock
            .iter()
            .map(|row| {
                let o = &row.outcomes;
                BarGroup {
                    label: row.clock.as_str().to_owned(),
                    values: [
                        o.compliant,
                        o.breached,
                        o.failed,
                        o.missing_receipt,
                        o.abandoned,
                    ]
                    .map(|n| n as f64)
                    .to_vec(),
                }
            })
            .collect(),
        size: Size::default(),
    });
    let _ = writeln!(page, "<figure>{chart}</figure>");
}

fn breaches(page: &mut String, data: &ReportData) {
    let _ = writeln!(
        page,
        "<h2 id=\"breaches\">Breaches</h2>\n<p>{} {} missed {} deadline.</p>",
        data.breaches.len(),
        if data.breaches.len() == 1 {
            "clock"
        } else {
            "clocks"
        },
        if data.breaches.len() == 1 {
            "its"
        } else {
            "their"
        },
    );
    if data.breaches.is_empty() {
        return;
    }
    page.push_str(
        "<table><thead><tr><th>Conversation</th><th>Clock</th><th>Subject</th>\
         <th>Deadline</th><th>Fulfilled</th><th>Late by</th></tr></thead><tbody>\n",
    );
    for breach in &data.breaches {
        let id = svg::escape(&breach.conversation_id);
        let (fulfilled, late) = match breach.fulfilled_at {
            Some(at) => {
                let late_ms = (at - breach.deadline).num_milliseconds().max(0) as u64;
                (format::instant(at), format::duration_ms(late_ms))
            }
            None => ("never".to_owned(), NO_DATA.to_owned()),
        };
        let _ = writeln!(
            page,
            "<tr><td><a href=\"#conv-{id}\">{id}</a></td><td>{}</td><td>{}</td>\
             <td class=\"nw\">{}</td><td class=\"nw\">{fulfilled}</td>\
             <td class=\"n nw\">{late}</td></tr>",
            breach.clock.as_str(),
            svg::escape(&breach.subject),
            format::instant(breach.deadline),
        );
    }
    page.push_str("</tbody></table>\n");
}

fn conversations(page: &mut String, data: &ReportData) {
    // Every breach links here, so its conversation is listed even if the snapshot's list
    // missed it; sorted and deduplicated so the order never depends on how ids arrived.
    let ids: BTreeSet<&str> = data
        .conversation_ids
        .iter()
        .map(String::as_str)
        .chain(data.breaches.iter().map(|b| b.conversation_id.as_str()))
        .collect();
    let _ = writeln!(
        page,
        "<h2 id=\"conversations\">Conversations</h2>\n<p>{} {} in this interval.</p>",
        ids.len(),
        if ids.len() == 1 {
            "conversation"
        } else {
            "conversations"
        }
    );
    if ids.is_empty() {
        return;
    }
    page.push_str("<ol class=\"ids\">\n");
    for id in ids {
        let id = svg::escape(id);
        let _ = writeln!(page, "<li id=\"conv-{id}\">{id}</li>");
    }
    page.push_str("</ol>\n");
}

fn median_p90(stats: super::DurationStats) -> String {
    if stats.median_ms.is_none() && stats.p90_ms.is_none() {
        return NO_DATA.to_owned();
    }
    // No-break spaces inside each duration: a narrow column wraps at the slash only, never
    // between a number and its unit.
    format!(
        "{} / {}",
        format::optional_duration_ms(stats.median_ms).replace(' ', "\u{a0}"),
        format::optional_duration_ms(stats.p90_ms).replace(' ', "\u{a0}")
    )
}

fn compliance(counts: &OutcomeCounts) -> String {
    match counts.compliance() {
        None => NO_DATA.to_owned(),
        Some(share) => format!(
            "{} <span class=\"muted\">({} of {})</span>",
            format::percent(share),
            counts.compliant,
            counts.total()
        ),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::report::{Breach, Interval, Trust};
    use crate::sla::ClockKind;

    fn empty() -> ReportData {
        let example = ReportData::example();
        ReportData {
            title: "Empty".into(),
            interval: example.interval,
            trust: Trust {
                data_availability_date: Some(example.interval.to),
                generated_at: example.trust.generated_at,
                queries: Vec::new(),
                mismatches: Vec::new(),
            },
            queues: Vec::new(),
            sla_by_clock: Vec::new(),
            breaches: Vec::new(),
            conversations_over_time: Vec::new(),
            conversation_ids: Vec::new(),
        }
    }

    #[test]
    fn the_same_data_renders_byte_identical_html() {
        let data = ReportData::example();
        let first = render_html(&data);
        let json = serde_json::to_string(&data).unwrap_or_default();
        let again: ReportData = serde_json::from_str(&json).unwrap_or_else(|e| panic!("{e}"));
        assert_eq!(first, render_html(&again));
    }

    #[test]
    fn the_page_is_self_contained_and_needs_no_script() {
        let html = render_html(&ReportData::example());
        assert!(html.starts_with("<!DOCTYPE html>"));
        assert!(!html.contains("<script"));
        assert!(
            !html.contains("src="),
            "no images, frames or scripts from anywhere"
        );
        assert!(!html.contains("<link"), "no external style sheet");
        assert!(
            html.matches("http://www.w3.org/2000/svg").count() == 3,
            "the only URLs are the three charts' SVG namespace"
        );
        assert!(!html.contains("https://"));
    }

    #[test]
    fn queue_names_and_other_outside_text_are_escaped() {
        let mut data = ReportData::example();
        data.title = "<script>alert(1)</script>".into();
        data.conversation_ids.push("id\" onmouseover=\"x".into());
        let html = render_html(&data);
        assert!(!html.contains("<script>"));
        assert!(html.contains("&lt;script&gt;alert(1)&lt;/script&gt;"));
        assert!(html.contains("Support &amp; Returns &lt;EU&gt;"));
        assert!(!html.contains("<EU>"));
        assert!(html.contains("id=\"conv-id&quot; onmouseover=&quot;x\""));
    }

    #[test]
    fn the_warning_names_the_watermark_and_the_mismatches() {
        let html = render_html(&ReportData::example());
        assert!(html.contains("class=\"warning\""));
        assert!(html.contains("Data may be incomplete."));
        assert!(html.contains("complete up to 2026-03-02T14:00:00Z"));
        assert!(html.contains("disagree in 1 figure"));
        assert!(html.contains("<td>abandoned</td><td class=\"n\">3</td><td class=\"n\">4</td>"));
    }

    #[test]
    fn complete_data_shows_no_warning() {
        let mut data = ReportData::example();
        data.trust.data_availability_date = Some(data.interval.to);
        data.trust.mismatches.clear();
        let html = render_html(&data);
        assert!(!html.contains("class=\"warning\""));
        assert!(html.contains("agree with the aggregates"));
    }

    #[test]
    fn queue_rows_show_human_durations_and_both_service_levels() {
        let html = render_html(&ReportData::example());
        assert!(
            html.contains("<td class=\"n\">5m\u{a0}12s / 10m\u{a0}18s</td>"),
            "handle of Sales voice"
        );
        assert!(
            html.contains("<td class=\"n\">81.0%</td>"),
            "Genesys service level"
        );
        assert!(
            html.contains("78.6% <span class=\"muted\">(33 of 42)</span>"),
            "Convoy's answer SLA beside it"
        );
        assert!(
            html.contains("<td>Billing</td><td>email</td>")
                && html.contains("<td class=\"n\">—</td>"),
            "no talk time for email reads as a dash"
        );
    }

    #[test]
    fn every_breach_links_to_a_listed_conversation() {
        let mut data = ReportData::example();
        data.breaches.push(Breach {
            conversation_id: "not-in-the-list".into(),
            clock: ClockKind::Answer,
            subject: "participant/p".into(),
            deadline: data.interval.from,
            fulfilled_at: None,
        });
        let html = render_html(&data);
        for breach in &data.breaches {
            let id = &breach.conversation_id;
            assert!(html.contains(&format!("<a href=\"#conv-{id}\">")));
            assert_eq!(
                html.matches(&format!("id=\"conv-{id}\"")).count(),
                1,
                "{id}"
            );
        }
        assert!(html.contains("<td class=\"nw\">never</td>"));
        assert!(
            html.contains("<td class=\"n nw\">4m 12s</td>"),
            "answer breach 4m 12s late"
        );
    }

    #[test]
    fn empty_data_renders_a_page_that_says_there_is_nothing() {
        let html = render_html(&empty());
        assert!(!html.contains("class=\"warning\""));
        assert!(html.contains("No queue had conversations in this interval."));
        assert!(html.contains("No SLA clock settled in this interval."));
        assert!(html.contains("0 clocks missed their deadline."));
        assert!(html.contains("0 conversations in this interval."));
        assert!(
            html.contains(">no data<"),
            "the time chart says it has no data"
        );
        assert!(html.ends_with("</html>\n"));
    }

    #[test]
    fn the_interval_heads_the_page() {
        let mut data = empty();
        data.interval = Interval {
            from: data.interval.from,
            to: data.interval.from + chrono::TimeDelta::hours(1),
        };
        let html = render_html(&data);
        assert!(html
            .contains("Interval 2026-03-02T09:00:00Z to 2026-03-02T10:00:00Z (UTC, end excluded)"));
    }
}
