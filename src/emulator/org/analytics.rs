//! Analytics computed from the conversations the emulator actually ran: the synchronous
//! details query (interval, order, paging with the 100 000-result cap, conversation and
//! segment filters), the aggregates query (metrics × groupBy × granularity) and the shared
//! pieces the async details jobs use. Nothing is canned: every session, segment and metric
//! is derived from the stored participants' times and states.
//!
//! Order is total — `(conversationStart, conversationId)` — so paging a fixed data set never
//! repeats or skips a conversation.

use std::collections::BTreeMap;

use chrono::{DateTime, Duration, Utc};
use serde::Deserialize;
use serde_json::{json, Value};

use crate::model::{DisconnectType, Purpose};

use super::conversations::{Conv, Media, Part};
use super::directory::Directory;
use super::{iso, read_body, Org, OrgError};

/// Default `paging.pageSize` of the details query.
pub const DEFAULT_PAGE_SIZE: u64 = 25;
/// Largest `paging.pageSize` of the details query.
pub const MAX_PAGE_SIZE: u64 = 100;
/// `pageSize × pageNumber` may not go beyond this.
pub const MAX_RESULTS: u64 = 100_000;

/// A filter: `{type: and|or, predicates[], clauses[]}`.
#[derive(Debug, Clone, Deserialize)]
pub(super) struct Filter {
    #[serde(rename = "type")]
    kind: String,
    #[serde(default)]
    predicates: Vec<Predicate>,
    #[serde(default)]
    clauses: Vec<Filter>,
}

#[derive(Debug, Clone, Deserialize)]
pub(super) struct Predicate {
    #[serde(rename = "type", default)]
    kind: Option<String>,
    #[serde(default)]
    dimension: Option<String>,
    #[serde(default)]
    operator: Option<String>,
    #[serde(default)]
    value: Option<String>,
}

/// A validated predicate.
#[derive(Debug, Clone)]
pub(super) enum Check {
    Matches { dimension: String, value: String },
    Exists { dimension: String },
    NotExists { dimension: String },
}

impl Check {
    fn dimension(&self) -> &str {
        match self {
            Check::Matches { dimension, .. }
            | Check::Exists { dimension }
            | Check::NotExists { dimension } => dimension,
        }
    }

    fn holds(&self, value: Option<&str>) -> bool {
        match self {
            Check::Matches { value: wanted, .. } => value == Some(wanted.as_str()),
            Check::Exists { .. } => value.is_some(),
            Check::NotExists { .. } => value.is_none(),
        }
    }
}

/// A validated filter.
#[derive(Debug, Clone)]
pub(super) struct Rule {
    any: bool,
    checks: Vec<Check>,
    clauses: Vec<Rule>,
}

impl Rule {
    /// Evaluates the rule with `lookup` answering each predicate.
    fn eval(&self, lookup: &dyn Fn(&Check) -> bool) -> bool {
        let mut results = self
            .checks
            .iter()
            .map(lookup)
            .chain(self.clauses.iter().map(|clause| clause.eval(lookup)));
        if self.any {
            results.any(|r| r)
        } else {
            results.all(|r| r)
        }
    }
}

/// Conversation-level dimensions.
const CONVERSATION_DIMENSIONS: &[&str] = &[
    "conversationId",
    "conversationStart",
    "conversationEnd",
    "originatingDirection",
    "conversationInitiator",
    "customerParticipation",
    "divisionId",
    "externalTag",
];

/// Segment-level dimensions (with their participant and session).
const SEGMENT_DIMENSIONS: &[&str] = &[
    "mediaType",
    "messageType",
    "direction",
    "sessionId",
    "peerId",
    "provider",
    "addressFrom",
    "addressTo",
    "purpose",
    "userId",
    "participantId",
    "participantName",
    "queueId",
    "segmentType",
    "disconnectType",
    "wrapUpCode",
    "wrapUpNote",
];

/// Dimensions of aggregate metrics (filter and `groupBy`).
const AGGREGATE_DIMENSIONS: &[&str] = &[
    "queueId",
    "mediaType",
    "userId",
    "purpose",
    "direction",
    "messageType",
    "conversationId",
    "originatingDirection",
];

/// Metrics the aggregates query computes.
const AGGREGATE_METRICS: &[&str] = &[
    "nOffered",
    "nConnected",
    "nTransferred",
    "tAnswered",
    "tTalk",
    "tTalkComplete",
    "tAcw",
    "tHandle",
    "tAlert",
    "tAcd",
    "tAbandon",
];

pub(super) fn rules(
    filters: &[Filter],
    allowed: &[&[&str]],
    path: &str,
) -> Result<Vec<Rule>, OrgError> {
    filters
        .iter()
        .enumerate()
        .map(|(index, filter)| rule(filter, allowed, &format!("{path}[{index}]")))
        .collect()
}

fn rule(filter: &Filter, allowed: &[&[&str]], path: &str) -> Result<Rule, OrgError> {
    let any = match filter.kind.as_str() {
        "and" => false,
        "or" => true,
        other => {
            return Err(OrgError::BadRequest(format!(
                "{path}.type must be \"and\" or \"or\", got {other:?}."
            )))
        }
    };
    if filter.predicates.is_empty() && filter.clauses.is_empty() {
        return Err(OrgError::BadRequest(format!(
            "{path} needs predicates or clauses."
        )));
    }
    let checks = filter
        .predicates
        .iter()
        .enumerate()
        .map(|(index, predicate)| check(predicate, allowed, &format!("{path}.predicates[{index}]")))
        .collect::<Result<Vec<_>, _>>()?;
    let clauses = filter
        .clauses
        .iter()
        .enumerate()
        .map(|(index, clause)| rule(clause, allowed, &format!("{path}.clauses[{index}]")))
        .collect::<Result<Vec<_>, _>>()?;
    Ok(Rule {
        any,
        checks,
        clauses,
    })
}

fn check(predicate: &Predicate, allowed: &[&[&str]], path: &str) -> Result<Check, OrgError> {
    match predicate.kind.as_deref() {
        None | Some("dimension") => {}
        Some(other) => {
            return Err(OrgError::BadRequest(format!(
                "{path}.type {other:?} is not emulated: only dimension predicates."
            )))
        }
    }
    let dimension = predicate
        .dimension
        .clone()
        .ok_or_else(|| OrgError::BadRequest(format!("{path}.dimension is required.")))?;
    if !allowed.iter().any(|set| set.contains(&dimension.as_str())) {
        return Err(OrgError::BadRequest(format!(
            "{path}.dimension {dimension:?} is not a supported dimension."
        )));
    }
    match predicate.operator.as_deref().unwrap_or("matches") {
        "matches" => {
            let value = predicate.value.clone().ok_or_else(|| {
                OrgError::BadRequest(format!("{path}.value is required with operator matches."))
            })?;
            Ok(Check::Matches { dimension, value })
        }
        "exists" => Ok(Check::Exists { dimension }),
        "notExists" => Ok(Check::NotExists { dimension }),
        other => Err(OrgError::BadRequest(format!(
            "{path}.operator must be matches, exists or notExists, got {other:?}."
        ))),
    }
}

/// Parses `start/end`.
pub(super) fn interval(text: &str) -> Result<(DateTime<Utc>, DateTime<Utc>), OrgError> {
    let bad = || {
        OrgError::BadRequest(format!(
            "interval must be two ISO-8601 instants separated by '/', got {text:?}."
        ))
    };
    let (start, end) = text.split_once('/').ok_or_else(bad)?;
    let start = DateTime::parse_from_rfc3339(start.trim())
        .map_err(|_| bad())?
        .with_timezone(&Utc);
    let end = DateTime::parse_from_rfc3339(end.trim())
        .map_err(|_| bad())?
        .with_timezone(&Utc);
    if end <= start {
        return Err(OrgError::BadRequest(format!(
            "interval end must be after its start, got {text:?}."
        )));
    }
    Ok((start, end))
}

/// One metric of a session, as the details query shows it.
#[derive(Debug, Clone)]
pub(super) struct Metric {
    pub name: &'static str,
    pub value: i64,
    pub emit: DateTime<Utc>,
}

#[derive(Debug, Clone)]
pub(super) struct Segment {
    pub kind: &'static str,
    pub start: DateTime<Utc>,
    pub end: Option<DateTime<Utc>>,
    pub queue_id: Option<String>,
    pub disconnect_type: Option<String>,
    pub wrapup_code: Option<String>,
    pub wrapup_note: Option<String>,
}

/// One participant with its (single) session.
#[derive(Debug, Clone)]
pub(super) struct Session {
    pub participant_id: String,
    pub participant_name: String,
    pub purpose: Purpose,
    pub user_id: Option<String>,
    pub queue_id: Option<String>,
    pub session_id: String,
    pub media_type: &'static str,
    pub message_type: Option<&'static str>,
    pub direction: String,
    pub peer_id: Option<String>,
    pub provider: &'static str,
    pub address_from: Option<String>,
    pub address_to: Option<String>,
    pub metrics: Vec<Metric>,
    pub segments: Vec<Segment>,
}

/// A conversation as analytics sees it.
#[derive(Debug, Clone)]
pub(super) struct Analyzed {
    pub id: String,
    pub start: DateTime<Utc>,
    pub end: Option<DateTime<Utc>>,
    pub originating_direction: String,
    pub initiator: &'static str,
    pub division_id: String,
    pub sessions: Vec<Session>,
}

fn millis(from: DateTime<Utc>, to: DateTime<Utc>) -> i64 {
    (to - from).num_milliseconds().max(0)
}

fn session_metrics(part: &Part, conv: &Conv) -> Vec<Metric> {
    let mut metrics = Vec::new();
    let mut push = |name: &'static str, value: i64, emit: DateTime<Utc>| {
        metrics.push(Metric { name, value, emit });
    };
    match part.purpose {
        Purpose::Customer => {
            if let Some(connected) = part.connected {
                push("nConnected", 1, connected);
            }
        }
        Purpose::Acd => {
            push("nOffered", 1, part.start);
            if let Some(end) = part.end {
                push("tAcd", millis(part.start, end), end);
                let answered = conv
                    .participants
                    .iter()
                    .any(|p| p.purpose == Purpose::Agent && p.connected.is_some());
                if !answered && part.disconnect_type != Some(DisconnectType::Transfer) {
                    push("tAbandon", millis(part.start, end), end);
                }
            }
        }
        Purpose::Agent => {
            match (part.connected, part.end) {
                (Some(connected), _) => push("tAlert", millis(part.start, connected), connected),
                (None, Some(end)) => push("tAlert", millis(part.start, end), end),
                (None, None) => {}
            }
            if let Some(connected) = part.connected {
                push("nConnected", 1, connected);
                push("tAnswered", millis(part.offered_at, connected), connected);
                if let Some(end) = part.end {
                    let talk = millis(connected, end);
                    push("tTalk", talk, end);
                    push("tTalkComplete", talk, end);
                    if part.disconnect_type == Some(DisconnectType::Transfer) {
                        push("nTransferred", 1, end);
                    }
                    match (part.acw_start, part.acw_end) {
                        (Some(acw_start), Some(acw_end)) => {
                            let acw = millis(acw_start, acw_end);
                            push("tAcw", acw, acw_end);
                            push("tHandle", talk + acw, acw_end);
                        }
                        (None, _) if !part.wrapup_required => push("tHandle", talk, end),
                        _ => {}
                    }
                }
            }
        }
        _ => {}
    }
    metrics
}

fn session_segments(part: &Part, conv: &Conv, queue_id: Option<&String>) -> Vec<Segment> {
    let segment = |kind: &'static str,
                   start: DateTime<Utc>,
                   end: Option<DateTime<Utc>>,
                   disconnect: Option<&DisconnectType>| Segment {
        kind,
        start,
        end,
        queue_id: queue_id.cloned(),
        disconnect_type: disconnect.map(|d| d.as_str().to_owned()),
        wrapup_code: None,
        wrapup_note: None,
    };
    let disconnect = part.disconnect_type.as_ref();
    match part.purpose {
        Purpose::Acd => vec![segment("delay", part.start, part.end, disconnect)],
        Purpose::Agent => {
            let mut segments = Vec::new();
            match part.connected {
                Some(connected) => {
                    segments.push(segment("alert", part.start, Some(connected), None));
                    segments.push(segment("interact", connected, part.end, disconnect));
                }
                None => segments.push(segment("alert", part.start, part.end, disconnect)),
            }
            if let Some(acw_start) = part.acw_start {
                let mut wrapup = segment("wrapup", acw_start, part.acw_end, None);
                wrapup.wrapup_code = part.wrapup.as_ref().and_then(|w| w.code.clone());
                wrapup.wrapup_note = part.wrapup.as_ref().and_then(|w| w.notes.clone());
                segments.push(wrapup);
            }
            segments
        }
        _ => {
            let start = part.connected.unwrap_or(part.start);
            let kind = if part.connected.is_none() && conv.media == Media::Voice {
                "contacting"
            } else {
                "interact"
            };
            vec![segment(kind, start, part.end, disconnect)]
        }
    }
}

pub(super) fn analyze(conv: &Conv, directory: &Directory) -> Analyzed {
    let queue_id = directory.queues.get(conv.queue).map(|q| q.id.clone());
    let integration = directory
        .queues
        .get(conv.queue)
        .map(|q| q.integration_id.clone());
    let sessions = conv
        .participants
        .iter()
        .map(|part| {
            let segment_queue = part.queue_id.as_ref().or(if conv.agentless {
                None
            } else {
                queue_id.as_ref()
            });
            let (address_from, address_to) = match (conv.media, part.purpose == Purpose::Customer) {
                (Media::Message, true) if conv.originating == crate::model::Direction::Inbound => {
                    (Some(conv.address.clone()), integration.clone())
                }
                (Media::Message, true) => (integration.clone(), Some(conv.address.clone())),
                (Media::Voice, true) => (Some(conv.address.clone()), None),
                _ => (None, None),
            };
            Session {
                participant_id: part.id.clone(),
                participant_name: part.name.clone(),
                purpose: part.purpose.clone(),
                user_id: part.user_id.clone(),
                queue_id: part.queue_id.clone(),
                session_id: part.comm_id.clone(),
                media_type: conv.media.analytics_name(),
                message_type: (conv.media == Media::Message).then_some("open"),
                direction: part.direction.as_str().to_owned(),
                peer_id: part.peer.clone(),
                provider: match conv.media {
                    Media::Message => "PureCloud Messaging",
                    Media::Voice => "Edge",
                },
                address_from,
                address_to,
                metrics: session_metrics(part, conv),
                segments: session_segments(part, conv, segment_queue),
            }
        })
        .collect();
    Analyzed {
        id: conv.id.clone(),
        start: conv.start,
        end: conv.end,
        originating_direction: conv.originating.as_str().to_owned(),
        initiator: if conv.agentless { "agent" } else { "customer" },
        division_id: directory.division_id.clone(),
        sessions,
    }
}

impl Analyzed {
    fn conversation_dimension(&self, dimension: &str) -> Option<String> {
        match dimension {
            "conversationId" => Some(self.id.clone()),
            "conversationStart" => Some(iso(self.start)),
            "conversationEnd" => self.end.map(iso),
            "originatingDirection" => Some(self.originating_direction.clone()),
            "conversationInitiator" => Some(self.initiator.to_owned()),
            "customerParticipation" => Some("true".to_owned()),
            "divisionId" => Some(self.division_id.clone()),
            _ => None,
        }
    }

    fn segment_dimension(
        &self,
        dimension: &str,
        session: &Session,
        segment: &Segment,
    ) -> Option<String> {
        if CONVERSATION_DIMENSIONS.contains(&dimension) {
            return self.conversation_dimension(dimension);
        }
        match dimension {
            "mediaType" => Some(session.media_type.to_owned()),
            "messageType" => session.message_type.map(str::to_owned),
            "direction" => Some(session.direction.clone()),
            "sessionId" => Some(session.session_id.clone()),
            "peerId" => session.peer_id.clone(),
            "provider" => Some(session.provider.to_owned()),
            "addressFrom" => session.address_from.clone(),
            "addressTo" => session.address_to.clone(),
            "purpose" => Some(session.purpose.as_str().to_owned()),
            "userId" => session.user_id.clone(),
            "participantId" => Some(session.participant_id.clone()),
            "participantName" => Some(session.participant_name.clone()),
            "queueId" => segment.queue_id.clone(),
            "segmentType" => Some(segment.kind.to_owned()),
            "disconnectType" => segment.disconnect_type.clone(),
            "wrapUpCode" => segment.wrapup_code.clone(),
            "wrapUpNote" => segment.wrapup_note.clone(),
            _ => None,
        }
    }

    fn segments(&self) -> impl Iterator<Item = (&Session, &Segment)> {
        self.sessions.iter().flat_map(|session| {
            session
                .segments
                .iter()
                .map(move |segment| (session, segment))
        })
    }

    /// A conversation filter: conversation dimensions read the conversation; a segment
    /// dimension holds when any segment satisfies that predicate.
    fn matches_conversation_rule(&self, rule: &Rule) -> bool {
        rule.eval(&|check: &Check| {
            let dimension = check.dimension();
            if CONVERSATION_DIMENSIONS.contains(&dimension) {
                check.holds(self.conversation_dimension(dimension).as_deref())
            } else {
                self.segments().any(|(session, segment)| {
                    check.holds(
                        self.segment_dimension(dimension, session, segment)
                            .as_deref(),
                    )
                })
            }
        })
    }

    /// A segment filter holds when one segment satisfies all of it.
    fn matches_segment_rule(&self, rule: &Rule) -> bool {
        self.segments().any(|(session, segment)| {
            rule.eval(&|check: &Check| {
                check.holds(
                    self.segment_dimension(check.dimension(), session, segment)
                        .as_deref(),
                )
            })
        })
    }

    pub(super) fn matches(&self, conversation_rules: &[Rule], segment_rules: &[Rule]) -> bool {
        conversation_rules
            .iter()
            .all(|rule| self.matches_conversation_rule(rule))
            && segment_rules
                .iter()
                .all(|rule| self.matches_segment_rule(rule))
    }

    /// The `AnalyticsConversation` JSON.
    pub(super) fn to_json(&self) -> Value {
        let mut participants: Vec<Value> = Vec::new();
        for session in &self.sessions {
            let metrics: Vec<Value> = session
                .metrics
                .iter()
                .map(|m| json!({ "name": m.name, "value": m.value, "emitDate": iso(m.emit) }))
                .collect();
            let segments: Vec<Value> = session
                .segments
                .iter()
                .map(|s| {
                    let mut segment = json!({
                        "segmentStart": iso(s.start),
                        "segmentType": s.kind,
                        "conference": false,
                    });
                    if let Some(object) = segment.as_object_mut() {
                        let mut put = |key: &str, value: Option<String>| {
                            if let Some(value) = value {
                                object.insert(key.to_owned(), Value::String(value));
                            }
                        };
                        put("segmentEnd", s.end.map(iso));
                        put("queueId", s.queue_id.clone());
                        put("disconnectType", s.disconnect_type.clone());
                        put("wrapUpCode", s.wrapup_code.clone());
                        put("wrapUpNote", s.wrapup_note.clone());
                    }
                    segment
                })
                .collect();
            let mut session_json = json!({
                "sessionId": session.session_id,
                "mediaType": session.media_type,
                "direction": session.direction,
                "provider": session.provider,
                "metrics": metrics,
                "segments": segments,
            });
            if let Some(object) = session_json.as_object_mut() {
                let mut put = |key: &str, value: Option<String>| {
                    if let Some(value) = value {
                        object.insert(key.to_owned(), Value::String(value));
                    }
                };
                put("messageType", session.message_type.map(str::to_owned));
                put("peerId", session.peer_id.clone());
                put("addressFrom", session.address_from.clone());
                put("addressTo", session.address_to.clone());
                if session.purpose == Purpose::Customer {
                    put("remote", Some(session.participant_name.clone()));
                }
                if session.purpose == Purpose::Agent {
                    object.insert("requestedRoutings".to_owned(), json!(["Standard"]));
                    object.insert("usedRouting".to_owned(), json!("Standard"));
                }
            }
            let mut participant = json!({
                "participantId": session.participant_id,
                "participantName": session.participant_name,
                "purpose": session.purpose.as_str(),
                "sessions": [session_json],
            });
            if let (Some(user), Some(object)) = (&session.user_id, participant.as_object_mut()) {
                object.insert("userId".to_owned(), json!(user));
            }
            participants.push(participant);
        }
        let mut conversation = json!({
            "conversationId": self.id,
            "conversationStart": iso(self.start),
            "originatingDirection": self.originating_direction,
            "divisionIds": [self.division_id],
            "conversationInitiator": self.initiator,
            "customerParticipation": true,
            "participants": participants,
        });
        if let (Some(end), Some(object)) = (self.end, conversation.as_object_mut()) {
            object.insert("conversationEnd".to_owned(), json!(iso(end)));
        }
        conversation
    }
}

#[derive(Debug, Clone, Deserialize)]
#[serde(rename_all = "camelCase")]
struct Paging {
    page_size: i64,
    page_number: i64,
}

/// `ConversationQuery` (synchronous) and `AsyncConversationQuery` (jobs).
#[derive(Debug, Clone, Deserialize)]
#[serde(rename_all = "camelCase")]
pub(super) struct DetailsQuery {
    interval: String,
    #[serde(default)]
    order: Option<String>,
    #[serde(default)]
    order_by: Option<String>,
    #[serde(default)]
    paging: Option<Paging>,
    #[serde(default)]
    conversation_filters: Vec<Filter>,
    #[serde(default)]
    segment_filters: Vec<Filter>,
}

/// A validated details query.
#[derive(Debug, Clone)]
pub(super) struct Selection {
    pub start: DateTime<Utc>,
    pub end: DateTime<Utc>,
    descending: bool,
    by_end: bool,
    conversation_rules: Vec<Rule>,
    segment_rules: Vec<Rule>,
}

impl DetailsQuery {
    pub(super) fn parse(body: &Value, what: &str) -> Result<DetailsQuery, OrgError> {
        read_body(body, what)
    }

    pub(super) fn selection(&self) -> Result<Selection, OrgError> {
        let (start, end) = interval(&self.interval)?;
        let descending = match self.order.as_deref() {
            None | Some("asc") | Some("unordered") => false,
            Some("desc") => true,
            Some(other) => {
                return Err(OrgError::BadRequest(format!(
                    "order must be asc, desc or unordered, got {other:?}."
                )))
            }
        };
        let by_end = match self.order_by.as_deref() {
            None | Some("conversationStart") => false,
            Some("conversationEnd") => true,
            Some(other) => {
                return Err(OrgError::BadRequest(format!(
                    "orderBy {other:?} is not emulated: conversationStart or conversationEnd."
                )))
            }
        };
        let conversation_dimensions: &[&[&str]] = &[CONVERSATION_DIMENSIONS, SEGMENT_DIMENSIONS];
        Ok(Selection {
            start,
            end,
            descending,
            by_end,
            conversation_rules: rules(
                &self.conversation_filters,
                conversation_dimensions,
                "conversationFilters",
            )?,
            segment_rules: rules(
                &self.segment_filters,
                conversation_dimensions,
                "segmentFilters",
            )?,
        })
    }

    /// `(pageSize, pageNumber)`, validated.
    fn page(&self) -> Result<(u64, u64), OrgError> {
        let Some(paging) = &self.paging else {
            return Ok((DEFAULT_PAGE_SIZE, 1));
        };
        let size = u64::try_from(paging.page_size)
            .ok()
            .filter(|&s| s >= 1)
            .ok_or_else(|| {
                OrgError::BadRequest(format!(
                    "paging.pageSize must be at least 1, got {}.",
                    paging.page_size
                ))
            })?;
        let number = u64::try_from(paging.page_number)
            .ok()
            .filter(|&n| n >= 1)
            .ok_or_else(|| {
                OrgError::BadRequest(format!(
                    "paging.pageNumber must be at least 1, got {}.",
                    paging.page_number
                ))
            })?;
        if size > MAX_PAGE_SIZE {
            return Err(OrgError::BadRequest(format!(
                "paging.pageSize must be at most {MAX_PAGE_SIZE}, got {size}."
            )));
        }
        if size.saturating_mul(number) > MAX_RESULTS {
            return Err(OrgError::PaginationLimit);
        }
        Ok((size, number))
    }
}

impl Selection {
    /// The matching conversations in query order. `any_activity` selects conversations
    /// active at any time in the interval (jobs); otherwise those that started in it.
    pub(super) fn select(
        &self,
        conversations: &[Conv],
        directory: &Directory,
        any_activity: bool,
        now: DateTime<Utc>,
    ) -> Vec<Analyzed> {
        let mut selected: Vec<Analyzed> = conversations
            .iter()
            .filter(|conv| {
                if any_activity {
                    conv.start < self.end && conv.end.unwrap_or(now) >= self.start
                } else {
                    conv.start >= self.start && conv.start < self.end
                }
            })
            .map(|conv| analyze(conv, directory))
            .filter(|analyzed| analyzed.matches(&self.conversation_rules, &self.segment_rules))
            .collect();
        let far = DateTime::<Utc>::MAX_UTC;
        selected.sort_by(|a, b| {
            let key_a = (
                if self.by_end {
                    a.end.unwrap_or(far)
                } else {
                    a.start
                },
                &a.id,
            );
            let key_b = (
                if self.by_end {
                    b.end.unwrap_or(far)
                } else {
                    b.start
                },
                &b.id,
            );
            key_a.cmp(&key_b)
        });
        if self.descending {
            selected.reverse();
        }
        selected
    }
}

/// A fact for aggregation: one metric emission with its dimensions.
struct Fact<'a> {
    metric: &'static str,
    value: i64,
    /// The time that places it in a bucket.
    at: DateTime<Utc>,
    conversation: &'a Analyzed,
    session: &'a Session,
}

impl Fact<'_> {
    fn dimension(&self, dimension: &str) -> Option<String> {
        match dimension {
            "queueId" => self.session.queue_id.clone().or_else(|| {
                self.session
                    .segments
                    .iter()
                    .find_map(|segment| segment.queue_id.clone())
            }),
            "mediaType" => Some(self.session.media_type.to_owned()),
            "userId" => self.session.user_id.clone(),
            "purpose" => Some(self.session.purpose.as_str().to_owned()),
            "direction" => Some(self.session.direction.clone()),
            "messageType" => self.session.message_type.map(str::to_owned),
            "conversationId" => Some(self.conversation.id.clone()),
            "originatingDirection" => Some(self.conversation.originating_direction.clone()),
            _ => None,
        }
    }
}

/// `ConversationAggregationQuery`.
#[derive(Debug, Clone, Deserialize)]
#[serde(rename_all = "camelCase")]
struct AggregateQuery {
    interval: String,
    metrics: Vec<String>,
    #[serde(default)]
    granularity: Option<String>,
    #[serde(default)]
    time_zone: Option<String>,
    #[serde(default)]
    group_by: Vec<String>,
    #[serde(default)]
    filter: Option<Filter>,
    #[serde(default)]
    alternate_time_dimension: Option<String>,
}

/// Parses an ISO-8601 period (`PT30M`, `PT1H`, `P1D`, `P1W`, `P1DT12H`, …).
pub(super) fn period(text: &str) -> Result<Duration, OrgError> {
    let bad = || {
        OrgError::BadRequest(format!(
            "granularity must be an ISO-8601 period such as PT30M, PT1H or P1D, got {text:?}."
        ))
    };
    let rest = text.strip_prefix('P').ok_or_else(bad)?;
    let (date, time) = match rest.split_once('T') {
        Some((date, time)) => (date, Some(time)),
        None => (rest, None),
    };
    let mut total = Duration::zero();
    let mut read = |part: &str, units: &[(char, i64)]| -> Result<(), OrgError> {
        let mut number = String::new();
        for c in part.chars() {
            if c.is_ascii_digit() {
                number.push(c);
                continue;
            }
            let seconds = units
                .iter()
                .find(|(unit, _)| *unit == c)
                .map(|(_, seconds)| *seconds)
                .ok_or_else(bad)?;
            let count: i64 = number.parse().map_err(|_| bad())?;
            number.clear();
            let part = count
                .checked_mul(seconds)
                .and_then(Duration::try_seconds)
                .ok_or_else(bad)?;
            total = total.checked_add(&part).ok_or_else(bad)?;
        }
        if number.is_empty() {
            Ok(())
        } else {
            Err(bad())
        }
    };
    read(date, &[('W', 7 * 86_400), ('D', 86_400)])?;
    if let Some(time) = time {
        if time.is_empty() {
            return Err(bad());
        }
        read(time, &[('H', 3_600), ('M', 60), ('S', 1)])?;
    }
    if total <= Duration::zero() {
        return Err(bad());
    }
    Ok(total)
}

#[derive(Default)]
struct Stats {
    count: i64,
    sum: i64,
    min: Option<i64>,
    max: Option<i64>,
}

impl Stats {
    fn add(&mut self, value: i64) {
        self.count += 1;
        self.sum += value;
        self.min = Some(self.min.map_or(value, |m| m.min(value)));
        self.max = Some(self.max.map_or(value, |m| m.max(value)));
    }

    fn to_json(&self, metric: &str) -> Value {
        if metric.starts_with('n') {
            json!({ "count": self.sum })
        } else {
            json!({
                "max": self.max.unwrap_or(0),
                "min": self.min.unwrap_or(0),
                "count": self.count,
                "sum": self.sum,
            })
        }
    }
}

impl Org {
    /// `POST /api/v2/analytics/conversations/details/query`.
    pub fn details_query(&self, body: &Value) -> Result<Value, OrgError> {
        let query = DetailsQuery::parse(body, "ConversationQuery")?;
        let selection = query.selection()?;
        let (size, number) = query.page()?;
        let selected = selection.select(&self.conversations, &self.directory, false, self.last_now);
        let total = selected.len();
        let skip = usize::try_from(size * (number - 1)).unwrap_or(usize::MAX);
        let take = usize::try_from(size).unwrap_or(usize::MAX);
        let page: Vec<Value> = selected
            .iter()
            .skip(skip)
            .take(take)
            .map(Analyzed::to_json)
            .collect();
        Ok(json!({ "conversations": page, "totalHits": total }))
    }

    /// `POST /api/v2/analytics/conversations/aggregates/query`.
    pub fn aggregates_query(&self, body: &Value) -> Result<Value, OrgError> {
        let query: AggregateQuery = read_body(body, "ConversationAggregationQuery")?;
        let (start, end) = interval(&query.interval)?;
        if query.metrics.is_empty() {
            return Err(OrgError::BadRequest(
                "metrics must not be empty.".to_owned(),
            ));
        }
        for (index, metric) in query.metrics.iter().enumerate() {
            if !AGGREGATE_METRICS.contains(&metric.as_str()) {
                return Err(OrgError::BadRequest(format!(
                    "metrics[{index}] {metric:?} is not emulated; supported: {}.",
                    AGGREGATE_METRICS.join(", ")
                )));
            }
        }
        for (index, dimension) in query.group_by.iter().enumerate() {
            if !AGGREGATE_DIMENSIONS.contains(&dimension.as_str()) {
                return Err(OrgError::BadRequest(format!(
                    "groupBy[{index}] {dimension:?} is not emulated; supported: {}.",
                    AGGREGATE_DIMENSIONS.join(", ")
                )));
            }
        }
        match query.time_zone.as_deref() {
            None | Some("UTC") | Some("Etc/UTC") => {}
            Some(other) => {
                return Err(OrgError::BadRequest(format!(
                    "timeZone {other:?} is not emulated: only UTC."
                )))
            }
        }
        let by_event_time = match query.alternate_time_dimension.as_deref() {
            None => false,
            Some("eventTime") => true,
            Some(other) => {
                return Err(OrgError::BadRequest(format!(
                    "alternateTimeDimension must be eventTime, got {other:?}."
                )))
            }
        };
        let granularity = query.granularity.as_deref().map(period).transpose()?;
        let filter = match &query.filter {
            Some(filter) => Some(rule(filter, &[AGGREGATE_DIMENSIONS], "filter")?),
            None => None,
        };
        let analyzed: Vec<Analyzed> = self
            .conversations
            .iter()
            .map(|conv| analyze(conv, &self.directory))
            .collect();
        // group → bucket → metric → stats
        type Buckets = BTreeMap<i64, BTreeMap<String, Stats>>;
        let mut groups: BTreeMap<Vec<(String, String)>, Buckets> = BTreeMap::new();
        for conversation in &analyzed {
            for session in &conversation.sessions {
                if !matches!(session.purpose, Purpose::Acd | Purpose::Agent) {
                    continue;
                }
                for metric in &session.metrics {
                    if !query.metrics.iter().any(|m| m == metric.name) {
                        continue;
                    }
                    let fact = Fact {
                        metric: metric.name,
                        value: metric.value,
                        at: if by_event_time {
                            metric.emit
                        } else {
                            conversation.start
                        },
                        conversation,
                        session,
                    };
                    if fact.at < start || fact.at >= end {
                        continue;
                    }
                    if let Some(filter) = &filter {
                        if !filter.eval(&|check: &Check| {
                            check.holds(fact.dimension(check.dimension()).as_deref())
                        }) {
                            continue;
                        }
                    }
                    let group: Vec<(String, String)> = query
                        .group_by
                        .iter()
                        .filter_map(|d| fact.dimension(d).map(|v| (d.clone(), v)))
                        .collect();
                    let bucket = match granularity {
                        Some(step) => {
                            let step_ms = step.num_milliseconds().max(1);
                            millis(start, fact.at) / step_ms
                        }
                        None => 0,
                    };
                    groups
                        .entry(group)
                        .or_default()
                        .entry(bucket)
                        .or_default()
                        .entry(fact.metric.to_owned())
                        .or_default()
                        .add(fact.value);
                }
            }
        }
        let results: Vec<Value> = groups
            .into_iter()
            .map(|(group, buckets)| {
                let group: serde_json::Map<String, Value> = group
                    .into_iter()
                    .map(|(k, v)| (k, Value::String(v)))
                    .collect();
                let data: Vec<Value> = buckets
                    .into_iter()
                    .map(|(bucket, metrics)| {
                        let (from, to) = match granularity {
                            Some(step) => {
                                let offset = i32::try_from(bucket)
                                    .ok()
                                    .and_then(|k| step.checked_mul(k))
                                    .unwrap_or_else(Duration::zero);
                                let from = start.checked_add_signed(offset).unwrap_or(start);
                                let to = from.checked_add_signed(step).unwrap_or(end).min(end);
                                (from, to)
                            }
                            None => (start, end),
                        };
                        let metrics: Vec<Value> = query
                            .metrics
                            .iter()
                            .filter_map(|name| {
                                metrics.get(name).map(|stats| {
                                    json!({ "metric": name, "stats": stats.to_json(name) })
                                })
                            })
                            .collect();
                        json!({ "interval": format!("{}/{}", iso(from), iso(to)), "metrics": metrics })
                    })
                    .collect();
                json!({ "group": group, "data": data })
            })
            .collect();
        Ok(json!({ "results": results }))
    }
}
