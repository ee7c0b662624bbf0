//! The Notifications REST calls the StreamActor needs (API.md §3.1): create a channel,
//! check that a channel still exists (HEAD), and replace a channel's subscriptions.
//!
//! Owns the paths, route labels and response shapes of these three calls, built on
//! [`GenesysRest::call`] (token, rate limit, retries). It never opens a WebSocket, never
//! decides what to subscribe (that is `convoy::stream::topics`) and never judges the
//! subscription verdict (that is `convoy::stream::subscription_verdict`).

use convoy::model::{Channel, ChannelTopic, EntityListing, TopicRequest};

use crate::genesys::rest::{GenesysRest, RestError, RestRequest};

pub const ROUTE_CREATE_CHANNEL: &str = "POST /api/v2/notifications/channels";
pub const ROUTE_HEAD_CHANNEL: &str = "HEAD /api/v2/notifications/channels/{id}";
pub const ROUTE_PUT_SUBSCRIPTIONS: &str = "PUT /api/v2/notifications/channels/{id}/subscriptions";

/// `POST /api/v2/notifications/channels`: a fresh channel bound to the current token.
///
/// The body is empty (not `{}`), as the official SDKs send it.
pub async fn create_channel(rest: &GenesysRest) -> Result<Channel, RestError> {
    let request = RestRequest {
        method: awc::http::Method::POST,
        ..RestRequest::get("/api/v2/notifications/channels", ROUTE_CREATE_CHANNEL)
    };
    let response = rest.call(request).await?;
    let channel: Channel = response.json(ROUTE_CREATE_CHANNEL)?;
    // The id ends up in later request paths; refuse one that would need escaping rather
    // than build a path from whatever the service returned.
    checked_channel_id(&channel.id, ROUTE_CREATE_CHANNEL)?;
    if channel.connect_uri.is_empty() {
        return Err(RestError::Malformed {
            route: ROUTE_CREATE_CHANNEL,
            detail: "the channel has an empty connectUri".to_owned(),
        });
    }
    Ok(channel)
}

/// `HEAD /api/v2/notifications/channels/{id}`: whether the channel still exists and is
/// valid (true on 200, false on 404). It does not extend the channel's life.
pub async fn channel_exists(rest: &GenesysRest, channel_id: &str) -> Result<bool, RestError> {
    let id = checked_channel_id(channel_id, ROUTE_HEAD_CHANNEL)?;
    let request = RestRequest::head(
        format!("/api/v2/notifications/channels/{id}"),
        ROUTE_HEAD_CHANNEL,
    );
    match rest.call(request).await {
        Ok(_) => Ok(true),
        Err(error) if error.is_not_found() => Ok(false),
        Err(error) => Err(error),
    }
}

/// `PUT /api/v2/notifications/channels/{id}/subscriptions?ignoreErrors=true` with
/// `[{"id": topic}, …]`: replaces the channel's subscriptions and returns the listing.
///
/// `ignoreErrors=true` so one refused topic (a queue the client may not see, a typo) comes
/// back `Rejected` with its reason instead of failing the whole call with a 403; the caller
/// reports it.
pub async fn replace_subscriptions(
    rest: &GenesysRest,
    channel_id: &str,
    topics: &[String],
) -> Result<Vec<ChannelTopic>, RestError> {
    let id = checked_channel_id(channel_id, ROUTE_PUT_SUBSCRIPTIONS)?;
    let body: Vec<TopicRequest> = topics
        .iter()
        .map(|topic| TopicRequest { id: topic.clone() })
        .collect();
    let body = serde_json::to_value(body).map_err(|error| RestError::Malformed {
        route: ROUTE_PUT_SUBSCRIPTIONS,
        detail: format!("encoding the topics: {error}"),
    })?;
    let request = RestRequest::put(
        format!("/api/v2/notifications/channels/{id}/subscriptions?ignoreErrors=true"),
        ROUTE_PUT_SUBSCRIPTIONS,
        body,
    );
    let response = rest.call(request).await?;
    let listing: EntityListing<ChannelTopic> = response.json(ROUTE_PUT_SUBSCRIPTIONS)?;
    Ok(listing.entities)
}

/// Channel ids are `streaming-0-<26 chars>` on Genesys and similar on the emulator. Only
/// unreserved URL characters are accepted, so the id is safe in a path without escaping.
fn checked_channel_id<'a>(id: &'a str, route: &'static str) -> Result<&'a str, RestError> {
    let safe = !id.is_empty()
        && id
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'-' | b'_' | b'.' | b'~'))
        // `.` and `..` would be resolved as relative segments.
        && !id.bytes().all(|b| b == b'.');
    if safe {
        Ok(id)
    } else {
        Err(RestError::Malformed {
            route,
            detail: format!(
                "channel id {id:?} contains characters that are not allowed in a path segment"
            ),
        })
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used, clippy::expect_used)]
mod tests {
    use super::*;

    #[test]
    fn genesys_shaped_channel_ids_are_accepted() {
        assert!(checked_channel_id("streaming-0-abcdefghijklmnopqrstuvwxyz", "r").is_ok());
    }

    #[test]
    fn ids_that_would_change_the_path_are_refused() {
        for id in ["", "a/b", "a?b", "..%2f", "a b", "ü", ".", ".."] {
            assert!(checked_channel_id(id, "r").is_err(), "{id:?}");
        }
    }
}
