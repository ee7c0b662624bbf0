//! One actor per conversation, the router that owns them, and the attribute writer.
//!
//! - [`router::ConversationRouter`] owns the map from conversation id to actor:
//!   get-or-spawn, one actor per conversation at any time (retirement holds inputs), the
//!   live cap with least-recently-active eviction, bounded tombstones against
//!   resurrection, and the reconciliation set worked off in the background.
//! - [`actor::ConversationActor`] owns one conversation's joined state, participant
//!   lifecycle and version; it applies every input at once and hands what Genesys is
//!   owed to the writer and what happened to the downstream actors.
//! - [`writer::AttributeWriter`] writes Convoy's participant attributes to Genesys, fairly
//!   across conversations inside the token bucket, latest state only, retried until done.
//! - [`view`]: what `/conversations` shows, shared without copies.

pub mod actor;
pub mod messages;
pub mod router;
pub mod view;
pub mod writer;

pub use actor::{ConversationActor, ConversationDeps};
pub use messages::{ConversationInput, Reconcile, RouteError, RouteEvent};
pub use router::{ConversationRouter, RouterSettings, ShutdownConversations};
pub use view::{ConversationView, ConversationViews, WriteStatuses};
pub use writer::{AttributeWriter, WriterSettings};

use std::cell::Cell;
use std::rc::Rc;
use std::sync::Arc;

use actix::{Actor, Addr, AsyncContext};

use crate::clock::Clock;
use crate::genesys::rest::RestContext;
use crate::store::DurableStore;

/// Everything the conversation side of the live path is built from.
pub struct ConversationsSetup {
    pub rest: RestContext,
    pub views: ConversationViews,
    pub write_statuses: WriteStatuses,
    pub router: RouterSettings,
    pub writer: WriterSettings,
    /// `genesys.write_back = "lifecycle"`.
    pub write_back: bool,
    pub store: Option<Arc<DurableStore>>,
    /// Where facts go (the SlaActor); `None`: not kept.
    pub handover: Option<actix::Recipient<crate::sla::Handover>>,
    /// Tests only: counts actors per conversation.
    pub census: Option<Arc<actor::ActorCensus>>,
    /// Where the router reports its live count against the cap (`/readyz`).
    pub board: Option<Arc<crate::admin::HealthBoard>>,
}

/// Starts the router and the attribute writer, which address each other (debts one way,
/// re-read snapshots the other), both with `do_send`, so neither ever waits on the other.
/// Must run inside an actix System.
pub fn start_conversations(
    setup: ConversationsSetup,
) -> (Addr<ConversationRouter>, Addr<AttributeWriter>) {
    start_conversations_with_clock(setup, Clock::System)
}

/// [`start_conversations`] on `clock` (`convoy replay`: a virtual one).
pub fn start_conversations_with_clock(
    setup: ConversationsSetup,
    clock: Clock,
) -> (Addr<ConversationRouter>, Addr<AttributeWriter>) {
    let writer_slot: Rc<Cell<Option<Addr<AttributeWriter>>>> = Rc::default();
    let slot = Rc::clone(&writer_slot);
    let router = ConversationRouter::create(move |ctx| {
        let writer = AttributeWriter::new(
            setup.rest.clone(),
            ctx.address().recipient(),
            setup.writer,
            setup.write_statuses,
        )
        .start();
        slot.set(Some(writer.clone()));
        ConversationRouter::new(
            ConversationDeps {
                views: setup.views,
                handover: setup.handover,
                writer: setup.write_back.then(|| writer.clone().recipient()),
                transcription: None,
                census: setup.census,
                tallies: Arc::default(),
                clock,
            },
            setup.router,
            setup.rest,
            Some(writer.recipient()),
            setup.store,
        )
        .with_board(setup.board)
    });
    // `create` runs its closure before returning: the slot is always filled here.
    let writer = match writer_slot.take() {
        Some(writer) => writer,
        None => unreachable_writer(),
    };
    (router, writer)
}

#[allow(clippy::panic)]
fn unreachable_writer() -> ! {
    panic!("actix::Actor::create did not run its closure")
}
