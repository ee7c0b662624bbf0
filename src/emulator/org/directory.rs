//! The org's directory: queues ("Queue N"), their agents, one open-messaging integration
//! per queue, the wrap-up codes the synthetic agents use; and the real paged-listing shape
//! of `GET /api/v2/routing/queues` and `GET /api/v2/users`.

use serde::{Deserialize, Serialize};
use serde_json::{json, Value};

use super::ids::IdSource;
use super::{OrgError, OrgOptions};

pub(super) struct Queue {
    pub id: String,
    pub name: String,
    pub integration_id: String,
    pub integration_name: String,
    /// Indices into [`Directory::agents`].
    pub agents: Vec<usize>,
}

pub(super) struct Agent {
    pub id: String,
    pub name: String,
    pub email: String,
    pub queue: usize,
}

pub(super) struct WrapupCode {
    pub id: String,
    pub name: String,
}

pub(super) struct Directory {
    pub queues: Vec<Queue>,
    pub agents: Vec<Agent>,
    pub division_id: String,
    /// What a synthetic agent records after finishing a conversation.
    pub resolved: WrapupCode,
    /// What a synthetic agent records after transferring.
    pub transferred: WrapupCode,
}

/// `GET /emulator/v1/org`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct OrgDirectory {
    pub queues: Vec<DirectoryQueue>,
    pub users: Vec<DirectoryUser>,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct DirectoryQueue {
    pub id: String,
    pub name: String,
    pub integration_id: String,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct DirectoryUser {
    pub id: String,
    pub name: String,
    pub queue_id: String,
}

/// Largest `pageSize` the directory listings accept.
const MAX_LISTING_PAGE_SIZE: u64 = 500;
const DEFAULT_LISTING_PAGE_SIZE: u64 = 25;

impl Directory {
    pub(super) fn build(options: &OrgOptions, ids: &mut IdSource) -> Directory {
        let division_id = ids.uuid();
        let resolved = WrapupCode {
            id: ids.uuid(),
            name: "Resolved".to_owned(),
        };
        let transferred = WrapupCode {
            id: ids.uuid(),
            name: "Transferred".to_owned(),
        };
        let mut queues = Vec::with_capacity(options.queues);
        let mut agents = Vec::new();
        for q in 0..options.queues {
            let number = q + 1;
            let mut members = Vec::with_capacity(options.agents_per_queue);
            let id = ids.uuid();
            let integration_id = ids.uuid();
            for _ in 0..options.agents_per_queue {
                let agent_number = agents.len() + 1;
                members.push(agents.len());
                agents.push(Agent {
                    id: ids.uuid(),
                    name: format!("Agent {agent_number}"),
                    email: format!("agent{agent_number}@emulator.invalid"),
                    queue: q,
                });
            }
            queues.push(Queue {
                id,
                name: format!("Queue {number}"),
                integration_id,
                integration_name: format!("Open Messaging {number}"),
                agents: members,
            });
        }
        Directory {
            queues,
            agents,
            division_id,
            resolved,
            transferred,
        }
    }

    pub(super) fn queue_index(&self, id: &str) -> Option<usize> {
        self.queues.iter().position(|q| q.id == id)
    }

    pub(super) fn queue_of_integration(&self, integration_id: &str) -> Option<usize> {
        self.queues
            .iter()
            .position(|q| q.integration_id == integration_id)
    }

    pub(super) fn describe(&self) -> OrgDirectory {
        OrgDirectory {
            queues: self
                .queues
                .iter()
                .map(|q| DirectoryQueue {
                    id: q.id.clone(),
                    name: q.name.clone(),
                    integration_id: q.integration_id.clone(),
                })
                .collect(),
            users: self
                .agents
                .iter()
                .map(|a| DirectoryUser {
                    id: a.id.clone(),
                    name: a.name.clone(),
                    queue_id: self
                        .queues
                        .get(a.queue)
                        .map(|q| q.id.clone())
                        .unwrap_or_default(),
                })
                .collect(),
        }
    }

    pub(super) fn list_queues(
        &self,
        page_size: Option<&str>,
        page_number: Option<&str>,
    ) -> Result<Value, OrgError> {
        let entities: Vec<Value> = self
            .queues
            .iter()
            .map(|q| {
                json!({
                    "id": q.id,
                    "name": q.name,
                    "division": {
                        "id": self.division_id,
                        "name": "Home",
                        "selfUri": format!("/api/v2/authorization/divisions/{}", self.division_id),
                    },
                    "memberCount": q.agents.len(),
                    "userMemberCount": q.agents.len(),
                    "joinedMemberCount": q.agents.len(),
                    "mediaSettings": {
                        "message": { "alertingTimeoutSeconds": 30, "enableAutoAnswer": false },
                        "call": { "alertingTimeoutSeconds": 8, "enableAutoAnswer": false },
                    },
                    "acwSettings": { "wrapupPrompt": "MANDATORY_TIMEOUT", "timeoutMs": 60000 },
                    "skillEvaluationMethod": "ALL",
                    "selfUri": format!("/api/v2/routing/queues/{}", q.id),
                })
            })
            .collect();
        listing(entities, "/api/v2/routing/queues", page_size, page_number)
    }

    pub(super) fn list_users(
        &self,
        page_size: Option<&str>,
        page_number: Option<&str>,
    ) -> Result<Value, OrgError> {
        let entities: Vec<Value> = self
            .agents
            .iter()
            .map(|a| {
                json!({
                    "id": a.id,
                    "name": a.name,
                    "division": {
                        "id": self.division_id,
                        "name": "Home",
                        "selfUri": format!("/api/v2/authorization/divisions/{}", self.division_id),
                    },
                    "email": a.email,
                    "state": "active",
                    "username": a.email,
                    "version": 1,
                    "acdAutoAnswer": false,
                    "selfUri": format!("/api/v2/users/{}", a.id),
                })
            })
            .collect();
        listing(entities, "/api/v2/users", page_size, page_number)
    }
}

fn page_param(value: Option<&str>, name: &str, default: u64) -> Result<u64, OrgError> {
    match value {
        None => Ok(default),
        Some(text) => match text.trim().parse::<u64>() {
            Ok(number) if number >= 1 => Ok(number),
            _ => Err(OrgError::BadRequest(format!(
                "Query parameter {name} must be a positive integer, got {text:?}."
            ))),
        },
    }
}

/// The real paged-listing shape: `entities, pageSize, pageNumber, total, pageCount,
/// firstUri, selfUri, lastUri`, plus `nextUri`/`previousUri` where they exist.
fn listing(
    entities: Vec<Value>,
    path: &str,
    page_size: Option<&str>,
    page_number: Option<&str>,
) -> Result<Value, OrgError> {
    let size = page_param(page_size, "pageSize", DEFAULT_LISTING_PAGE_SIZE)?;
    let number = page_param(page_number, "pageNumber", 1)?;
    if size > MAX_LISTING_PAGE_SIZE {
        return Err(OrgError::BadRequest(format!(
            "Query parameter pageSize must be at most {MAX_LISTING_PAGE_SIZE}, got {size}."
        )));
    }
    let total = entities.len() as u64;
    let page_count = total.div_ceil(size).max(1);
    let skip = usize::try_from(size.saturating_mul(number - 1)).unwrap_or(usize::MAX);
    let take = usize::try_from(size).unwrap_or(usize::MAX);
    let page: Vec<Value> = entities.into_iter().skip(skip).take(take).collect();
    let uri = |n: u64| format!("{path}?pageSize={size}&pageNumber={n}");
    let mut body = json!({
        "entities": page,
        "pageSize": size,
        "pageNumber": number,
        "total": total,
        "pageCount": page_count,
        "firstUri": uri(1),
        "selfUri": uri(number),
        "lastUri": uri(page_count),
    });
    if let Some(object) = body.as_object_mut() {
        if number < page_count {
            object.insert("nextUri".to_owned(), Value::String(uri(number + 1)));
        }
        if number > 1 {
            object.insert(
                "previousUri".to_owned(),
                Value::String(uri((number - 1).min(page_count))),
            );
        }
    }
    Ok(body)
}

#[cfg(test)]
#[allow(clippy::unwrap_used, clippy::expect_used)]
mod tests {
    use super::*;

    fn directory(queues: usize, agents: usize) -> Directory {
        let options = OrgOptions {
            queues,
            agents_per_queue: agents,
            ..OrgOptions::default()
        };
        Directory::build(&options, &mut IdSource::new(1))
    }

    #[test]
    fn queues_are_named_and_own_their_agents_and_an_integration() {
        let directory = directory(2, 3);
        assert_eq!(directory.queues[1].name, "Queue 2");
        assert_eq!(directory.queues[1].agents, vec![3, 4, 5]);
        assert_eq!(directory.agents[4].queue, 1);
        let described = directory.describe();
        assert_eq!(described.users[4].queue_id, directory.queues[1].id);
        assert_eq!(
            described.queues[0].integration_id,
            directory.queues[0].integration_id
        );
    }

    #[test]
    fn user_listing_pages_in_the_real_shape() {
        let directory = directory(3, 3);
        let page = directory.list_users(Some("4"), Some("2")).unwrap();
        assert_eq!(page["entities"].as_array().unwrap().len(), 4);
        assert_eq!(page["total"], 9);
        assert_eq!(page["pageCount"], 3);
        assert_eq!(page["nextUri"], "/api/v2/users?pageSize=4&pageNumber=3");
        assert_eq!(page["previousUri"], "/api/v2/users?pageSize=4&pageNumber=1");
        assert_eq!(page["lastUri"], "/api/v2/users?pageSize=4&pageNumber=3");
        let last = directory.list_users(Some("4"), Some("3")).unwrap();
        assert_eq!(last["entities"].as_array().unwrap().len(), 1);
        assert!(last.get("nextUri").is_none());
        let default = directory.list_queues(None, None).unwrap();
        assert_eq!(default["pageSize"], 25);
        assert_eq!(default["entities"].as_array().unwrap().len(), 3);
    }

    #[test]
    fn bad_paging_parameters_are_rejected() {
        let directory = directory(1, 1);
        assert!(matches!(
            directory.list_users(Some("abc"), None),
            Err(OrgError::BadRequest(_))
        ));
        assert!(matches!(
            directory.list_users(Some("501"), None),
            Err(OrgError::BadRequest(_))
        ));
        assert!(matches!(
            directory.list_queues(None, Some("0")),
            Err(OrgError::BadRequest(_))
        ));
    }
}
