//! The StreamActor's message handlers: reports from its connection tasks, the shutdown
//! step, the status query, and the router's transcription watch requests. Each one only updates link state and lets
//! `StreamActor::drive` act; none of them waits on the network.

use actix::prelude::*;
use chrono::Utc;

use super::actor::{ACTOR, STOP_DEADLINE};
use super::{
    GapReason, GetStreamStatus, Need, SocketEvent, SocketSignal, StopStream, StreamActor,
    StreamStatus, WatchTranscription,
};
use crate::telemetry::ActorMetrics;

impl Handler<SocketEvent> for StreamActor {
    type Result = ();

    fn handle(&mut self, event: SocketEvent, ctx: &mut Self::Context) {
        // The socket task counted the send.
        ActorMetrics::handled(ACTOR);
        let index = event.link;
        if let SocketSignal::Undelivered { conversation_id } = event.signal {
            // Whichever socket it came from (a retiring one drains too), it is owed.
            self.owe_reread(conversation_id);
            return;
        }
        let Some(link) = self.links.get_mut(index) else {
            return;
        };
        let is_current = link
            .current
            .as_ref()
            .is_some_and(|socket| socket.connection == event.connection);
        if !is_current {
            // A retired socket (rotated away, rebuilt, stopped): its last words concern a
            // channel that is being dropped anyway.
            if let SocketSignal::Ended(_) = event.signal {
                link.retiring
                    .retain(|socket| socket.connection != event.connection);
            } else {
                tracing::debug!(
                    link = index,
                    connection = event.connection,
                    signal = ?event.signal,
                    "Ignoring a report from a retired socket."
                );
            }
            return;
        }
        match event.signal {
            SocketSignal::SocketClosing => {
                if let Some(state) = link.channel.as_mut() {
                    state.schedule.socket_closing(Utc::now());
                }
                self.drive(index, ctx);
            }
            SocketSignal::System {
                topic,
                system_topic_type,
                reason,
            } => {
                let kind = system_topic_type
                    .as_deref()
                    .or_else(|| topic.strip_prefix("v2.system."))
                    .unwrap_or("");
                let (gap, renew_token) = match kind {
                    "token_revoked" => (GapReason::TokenRevoked, true),
                    "no_longer_subscribed" => (GapReason::NoLongerSubscribed, false),
                    _ => (GapReason::System, false),
                };
                tracing::warn!(
                    link = index,
                    %topic,
                    kind,
                    reason = reason.as_deref().unwrap_or(""),
                    "Genesys took the channel away; rebuilding it."
                );
                self.lose_connection(
                    index,
                    Need {
                        reason: gap,
                        fresh_channel: true,
                        renew_token,
                    },
                    ctx,
                );
            }
            SocketSignal::ChannelGone { message } => {
                tracing::warn!(
                    link = index,
                    message = message.as_deref().unwrap_or(""),
                    "Genesys says the channel no longer exists; rebuilding it."
                );
                self.lose_connection(
                    index,
                    Need {
                        reason: GapReason::ChannelGone,
                        fresh_channel: true,
                        renew_token: false,
                    },
                    ctx,
                );
            }
            SocketSignal::Undelivered { .. } => {}
            SocketSignal::Ended(end) => {
                tracing::debug!(link = index, ?end, "Current notification socket ended.");
                self.lose_connection(
                    index,
                    Need {
                        reason: end.gap_reason(),
                        fresh_channel: false,
                        renew_token: false,
                    },
                    ctx,
                );
            }
        }
    }
}

impl Handler<StopStream> for StreamActor {
    type Result = ResponseActFuture<Self, ()>;

    fn handle(&mut self, _: StopStream, ctx: &mut Self::Context) -> Self::Result {
        let first = !self.stopping;
        self.stopping = true;
        let sockets = self.take_sockets(ctx);
        if first {
            tracing::info!(sockets = sockets.len(), "Stopping the notification stream.");
        }
        for socket in &sockets {
            // No drain: shutdown stops accepting frames now.
            socket.close(false);
        }
        self.publish_health();
        let joins: Vec<_> = sockets
            .into_iter()
            .map(|socket| socket.into_join())
            .collect();
        let aborts: Vec<_> = joins.iter().map(|join| join.abort_handle()).collect();
        Box::pin(
            async move {
                let all = futures_util::future::join_all(joins);
                if actix_rt::time::timeout(STOP_DEADLINE, all).await.is_err() {
                    tracing::warn!("Notification sockets did not close in time; aborting them.");
                    for abort in aborts {
                        abort.abort();
                    }
                }
            }
            .into_actor(self),
        )
    }
}

impl Handler<GetStreamStatus> for StreamActor {
    type Result = StreamStatus;

    fn handle(&mut self, _: GetStreamStatus, _: &mut Self::Context) -> StreamStatus {
        self.status()
    }
}

impl Handler<WatchTranscription> for StreamActor {
    type Result = ();

    fn handle(&mut self, message: WatchTranscription, ctx: &mut Self::Context) {
        self.watch_transcription(&message.conversation_id, message.watch, ctx);
    }
}
