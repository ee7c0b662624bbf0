//! ReplayRest: the Genesys REST API as a recording saw it. The replay driver offers each
//! recorded answer when its line comes up; a read takes the oldest answer offered for its
//! method and path. Writes (attribute PATCHes) are never in a recording: a deterministic
//! fake accepts each one (the conversation's write count is its new version) and logs it
//! for `writes.jsonl`.

use std::collections::{HashMap, VecDeque};
use std::sync::{Mutex, MutexGuard, PoisonError};

use bytes::Bytes;
use chrono::SecondsFormat;
use convoy::model::ErrorBody;
use convoy::recording::RestExchange;
use serde_json::{json, Value};

use crate::clock::Clock;
use crate::genesys::rest::{RestError, RestRequest, RestResponse};

/// One write Convoy attempted during the replay.
#[derive(Debug, Clone, PartialEq)]
pub struct WriteAttempt {
    /// 1-based, in the order the writes were attempted.
    pub seq: u64,
    /// The virtual time of the attempt.
    pub at: String,
    pub method: String,
    pub path: String,
    pub body: Value,
    /// The fake's answer: this conversation's writes so far.
    pub version: u64,
}

impl WriteAttempt {
    pub fn to_json(&self) -> Value {
        json!({
            "seq": self.seq,
            "at": self.at,
            "method": self.method,
            "path": self.path,
            "body": self.body,
            "version": self.version,
        })
    }
}

#[derive(Debug, Default)]
struct State {
    answers: HashMap<(String, String), VecDeque<RestExchange>>,
    writes: Vec<WriteAttempt>,
    versions: HashMap<String, u64>,
    unanswered: u64,
}

/// See the module docs.
#[derive(Debug)]
pub struct ReplayRest {
    clock: Clock,
    state: Mutex<State>,
}

impl ReplayRest {
    pub fn new(clock: Clock) -> Self {
        ReplayRest {
            clock,
            state: Mutex::default(),
        }
    }

    fn lock(&self) -> MutexGuard<'_, State> {
        self.state.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// A recorded answer, available to reads from now on.
    pub fn offer(&self, exchange: RestExchange) {
        self.lock()
            .answers
            .entry((exchange.method.clone(), exchange.path.clone()))
            .or_default()
            .push_back(exchange);
    }

    /// The writes attempted so far, in order.
    pub fn writes(&self) -> Vec<WriteAttempt> {
        self.lock().writes.clone()
    }

    /// Reads asked for that the recording had no answer to (answered 404).
    pub fn unanswered(&self) -> u64 {
        self.lock().unanswered
    }

    /// Recorded answers nobody asked for.
    pub fn unused(&self) -> usize {
        self.lock().answers.values().map(VecDeque::len).sum()
    }

    /// Answers `request` as `GenesysRest::call` would have: 2xx → the response, 409/412 →
    /// a conflict, any other status → a rejection.
    pub fn answer(&self, request: &RestRequest) -> Result<RestResponse, RestError> {
        let route = request.route;
        let method = request.method.as_str().to_owned();
        let is_write = matches!(method.as_str(), "PATCH" | "PUT" | "DELETE")
            || (method == "POST" && !request.path.starts_with("/api/v2/analytics/"));
        let mut state = self.lock();
        if is_write {
            let conversation = request
                .path
                .split('/')
                .nth(4)
                .unwrap_or_default()
                .to_owned();
            let version = {
                let count = state.versions.entry(conversation).or_insert(0);
                *count += 1;
                *count
            };
            let seq = state.writes.len() as u64 + 1;
            state.writes.push(WriteAttempt {
                seq,
                at: self
                    .clock
                    .now()
                    .to_rfc3339_opts(SecondsFormat::Millis, true),
                method,
                path: request.path.clone(),
                body: request.body.clone().unwrap_or(Value::Null),
                version,
            });
            return Ok(RestResponse {
                status: 200,
                etag: None,
                correlation_id: None,
                body: Bytes::from(json!({ "version": version }).to_string()),
            });
        }
        let recorded = state
            .answers
            .get_mut(&(method, request.path.clone()))
            .and_then(VecDeque::pop_front);
        let Some(exchange) = recorded else {
            state.unanswered += 1;
            return Err(RestError::Rejected {
                route,
                status: 404,
                code: Some("not.recorded".to_owned()),
                message: Some("the recording holds no answer to this read".to_owned()),
                correlation_id: None,
            });
        };
        match exchange.status {
            200..=299 => Ok(RestResponse {
                status: exchange.status,
                etag: exchange.etag().map(str::to_owned),
                correlation_id: None,
                body: Bytes::from(exchange.body),
            }),
            409 | 412 => Err(RestError::Conflict {
                route,
                status: exchange.status,
                correlation_id: None,
            }),
            status => {
                let error: ErrorBody = serde_json::from_str(&exchange.body).unwrap_or_default();
                Err(RestError::Rejected {
                    route,
                    status,
                    code: error.code,
                    message: error.message,
                    correlation_id: error.context_id,
                })
            }
        }
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used, clippy::expect_used)]
mod tests {
    use super::*;
    use chrono::{DateTime, Utc};

    fn rest() -> ReplayRest {
        let at = DateTime::parse_from_rfc3339("2026-11-24T10:00:00Z")
            .unwrap()
            .with_timezone(&Utc);
        ReplayRest::new(Clock::virtual_at(at))
    }

    #[test]
    fn reads_take_the_recorded_answers_of_their_path_in_order() {
        let rest = rest();
        let path = "/api/v2/conversations/c1";
        rest.offer(RestExchange::new(
            "GET",
            path,
            200,
            [("etag", "\"1\"")],
            b"one",
        ));
        rest.offer(RestExchange::new(
            "GET",
            path,
            404,
            [],
            br#"{"code":"not.found"}"#,
        ));
        let first = rest.answer(&RestRequest::get(path, "r")).unwrap();
        assert_eq!(&first.body[..], b"one");
        assert_eq!(first.etag.as_deref(), Some("\"1\""));
        let second = rest.answer(&RestRequest::get(path, "r")).unwrap_err();
        assert!(second.is_not_found(), "{second}");
        // Nothing left: a read the recording cannot answer is a 404, counted.
        assert!(rest
            .answer(&RestRequest::get(path, "r"))
            .unwrap_err()
            .is_not_found());
        assert_eq!(rest.unanswered(), 1);
        assert_eq!(rest.unused(), 0);
    }

    #[test]
    fn writes_are_accepted_logged_and_versioned_per_conversation() {
        let rest = rest();
        for path in [
            "/api/v2/conversations/c1/participants/p1/attributes",
            "/api/v2/conversations/c1/participants/p2/attributes",
            "/api/v2/conversations/c2/participants/p1/attributes",
        ] {
            rest.answer(&RestRequest::patch(path, "w", json!({"attributes": {}})))
                .unwrap();
        }
        let versions: Vec<(u64, u64)> = rest
            .writes()
            .iter()
            .map(|write| (write.seq, write.version))
            .collect();
        assert_eq!(versions, [(1, 1), (2, 2), (3, 1)]);
        assert_eq!(rest.writes()[0].at, "2026-11-24T10:00:00.000Z");
    }
}
