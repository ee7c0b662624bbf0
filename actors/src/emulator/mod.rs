//! The Genesys Cloud emulator server: actix-web exposing `convoy::emulator` over the real
//! paths (API.md §1–§7) on one base URL, plus the emulator-only control API under
//! `/emulator/v1`. It owns the I/O around the pure state: the HTTP server, the WebSockets,
//! the clock, and the periodic task that advances the org and expires tokens and channels.
//!
//! Layout:
//! - this module: [`EmulatorOptions`], the running [`Emulator`], the state shared by the
//!   handlers ([`EmulatorShared`]) and the periodic task;
//! - [`api`]: the `/api/v2` gate (bearer check, rate limit, correlation ids, faults);
//! - `oauth`, `notifications`, `socket`, `control`: the token endpoint, the Notifications
//!   REST API, the channel WebSockets and the control API;
//! - `org_routes`: the org's REST and control routes (conversations, analytics, truth);
//! - [`cli`]: `convoy emulate`.
//!
//! Rule: a `std::sync::Mutex` guard is never held across an `.await`, and the org and
//! platform locks are never held at the same time.

pub mod api;
pub mod cli;
mod control;
mod notifications;
mod oauth;
mod org_routes;
mod socket;

use std::collections::HashMap;
use std::net::{IpAddr, Ipv4Addr, SocketAddr, TcpListener};
use std::sync::{Mutex, MutexGuard, PoisonError};
use std::time::Duration;

use actix_web::{web, App, HttpServer};
use chrono::{DateTime, TimeDelta, Utc};
use convoy::emulator::org::{Org, OrgOptions};
use convoy::emulator::platform::{
    ChannelClosure, Delivery, Platform, PlatformOptions, SocketId, DEFAULT_CLIENT_ID,
    DEFAULT_CLIENT_SECRET,
};
use convoy::emulator::TopicEvent;

pub use api::RequestContext;
pub use socket::SocketFeed;
use socket::{Outbound, SocketHandle};

/// How often the org advances its synthetic agents and the platform sweeps expired tokens
/// and channels. Short enough that timers in tests resolve quickly, long enough to be idle.
const TICK: Duration = Duration::from_millis(20);

/// How an emulator is started. `Default` is what `convoy emulate` uses without flags.
#[derive(Clone)]
pub struct EmulatorOptions {
    /// Address to bind; port 0 picks a free port.
    pub listen: SocketAddr,
    pub client_id: String,
    pub client_secret: String,
    pub token_ttl: Duration,
    pub channel_ttl: Duration,
    /// Interval of the `WebSocket Heartbeat` frames on every socket.
    pub heartbeat: Duration,
    /// Frames one socket may have queued before the emulator drops it as a slow reader
    /// (default [`socket::OUTBOX_CAPACITY`]). Tests of throughput raise it so a shared,
    /// loaded test machine measures the client rather than this fault model.
    pub socket_outbox: usize,
    /// Requests per minute per token on `/api/v2`; 0 disables the limit.
    pub rate_limit_per_minute: u32,
    /// Seeds every generated id, token and fault draw. Overrides `org.seed`.
    pub seed: u64,
    /// Overrides `org.strict_if_match`.
    pub strict_if_match: bool,
    pub org: OrgOptions,
}

impl Default for EmulatorOptions {
    fn default() -> Self {
        EmulatorOptions {
            listen: SocketAddr::new(IpAddr::V4(Ipv4Addr::LOCALHOST), 0),
            client_id: DEFAULT_CLIENT_ID.to_owned(),
            client_secret: DEFAULT_CLIENT_SECRET.to_owned(),
            token_ttl: Duration::from_secs(24 * 3600),
            channel_ttl: Duration::from_secs(24 * 3600),
            heartbeat: Duration::from_secs(30),
            socket_outbox: socket::OUTBOX_CAPACITY,
            rate_limit_per_minute: 300,
            seed: 0,
            strict_if_match: false,
            org: OrgOptions::default(),
        }
    }
}

impl std::fmt::Debug for EmulatorOptions {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("EmulatorOptions")
            .field("listen", &self.listen)
            .field("client_id", &self.client_id)
            .field("client_secret", &"***")
            .field("token_ttl", &self.token_ttl)
            .field("channel_ttl", &self.channel_ttl)
            .field("heartbeat", &self.heartbeat)
            .field("socket_outbox", &self.socket_outbox)
            .field("rate_limit_per_minute", &self.rate_limit_per_minute)
            .field("seed", &self.seed)
            .field("strict_if_match", &self.strict_if_match)
            .field("org", &self.org)
            .finish()
    }
}

/// Locks a mutex, recovering the data if a handler panicked while holding it: the emulator
/// keeps serving rather than failing every later request.
pub(crate) fn lock<T>(mutex: &Mutex<T>) -> MutexGuard<'_, T> {
    mutex.lock().unwrap_or_else(PoisonError::into_inner)
}

fn time_delta(duration: Duration) -> TimeDelta {
    TimeDelta::from_std(duration).unwrap_or(TimeDelta::MAX)
}

/// State shared by every handler and task (`web::Data<EmulatorShared>`).
pub struct EmulatorShared {
    pub org: Mutex<Org>,
    pub platform: Mutex<Platform>,
    /// The live sockets' outboxes. Locked only briefly, never with `org` or `platform`.
    sockets: Mutex<HashMap<SocketId, SocketHandle>>,
    /// `ws://HOST:PORT`, the origin of every channel's `connectUri`.
    ws_base: String,
    heartbeat: Duration,
    /// Frames a socket may have queued before the emulator drops it.
    socket_outbox: usize,
}

impl std::fmt::Debug for EmulatorShared {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("EmulatorShared")
            .field("ws_base", &self.ws_base)
            .field("heartbeat", &self.heartbeat)
            .finish_non_exhaustive()
    }
}

impl EmulatorShared {
    /// The emulator's clock: the only place it reads the time.
    pub fn now(&self) -> DateTime<Utc> {
        Utc::now()
    }

    /// Fans topic events out to the sockets of the channels subscribed to them. Channels
    /// without a socket miss them for good (no replay), as on Genesys.
    pub fn publish(&self, events: Vec<TopicEvent>) {
        if events.is_empty() {
            return;
        }
        let deliveries = lock(&self.platform).deliver(&events, self.now());
        self.dispatch(deliveries);
    }

    /// Every live socket's outbox, for a load generator that writes pre-rendered frames
    /// itself (`convoy bench e2e`): it waits for room instead of being dropped as a slow
    /// reader, and bypasses the org model (no lock, no re-serialising per frame).
    pub fn socket_feeds(&self) -> Vec<SocketFeed> {
        lock(&self.sockets)
            .values()
            .map(SocketHandle::feed)
            .collect()
    }

    /// Queues frames on their sockets. A socket whose bounded outbox is full is dropped:
    /// a client that does not read must not make the emulator buffer without bound.
    pub(crate) fn dispatch(&self, deliveries: Vec<Delivery>) {
        if deliveries.is_empty() {
            return;
        }
        let sockets = lock(&self.sockets);
        for delivery in deliveries {
            if let Some(handle) = sockets.get(&delivery.socket) {
                handle.send(Outbound::Frame(delivery.frame));
            }
        }
    }

    /// Says goodbye on the sockets of channels that ceased to exist and closes them.
    pub(crate) fn close_channels(&self, closures: Vec<ChannelClosure>) {
        let farewells: Vec<(SocketId, String)> = {
            let mut platform = lock(&self.platform);
            closures
                .iter()
                .filter_map(|closure| {
                    let socket = closure.socket?;
                    Some((socket, platform.farewell_frame(closure)))
                })
                .collect()
        };
        for closure in &closures {
            tracing::info!(channel = %closure.channel, reason = ?closure.reason, "Emulator channel closed.");
        }
        let sockets = lock(&self.sockets);
        for (socket, farewell) in farewells {
            if let Some(handle) = sockets.get(&socket) {
                handle.send(Outbound::Close(Some(farewell)));
            }
        }
    }

    /// Sends one message to each of these sockets.
    pub(crate) fn signal_sockets(&self, sockets: &[SocketId], message: impl Fn() -> Outbound) {
        let registry = lock(&self.sockets);
        for socket in sockets {
            if let Some(handle) = registry.get(socket) {
                handle.send(message());
            }
        }
    }

    /// Advances the org and the platform's clocks: org timers, token and channel expiry,
    /// reorder-held events.
    fn tick(&self) {
        let now = self.now();
        let events = lock(&self.org).tick(now);
        self.publish(events);
        let (closures, released) = {
            let mut platform = lock(&self.platform);
            (platform.sweep(now), platform.release_held(now))
        };
        self.close_channels(closures);
        self.dispatch(released);
    }
}

/// Mounts the application: token endpoint, gated `/api/v2`, channel WebSockets, control
/// API. The caller adds the `web::Data<EmulatorShared>`.
fn routes(cfg: &mut web::ServiceConfig) {
    cfg.app_data(api::json_config())
        .app_data(api::query_config())
        .app_data(api::path_config())
        .route("/oauth/token", web::post().to(oauth::token))
        .route("/channels/{channel_id}", web::get().to(socket::connect))
        .service(
            web::scope("/api/v2")
                .wrap(actix_web::middleware::from_fn(api::gate))
                .configure(notifications::configure)
                .configure(org_routes::configure)
                .default_service(web::to(api::not_found)),
        )
        .service(
            web::scope("/emulator/v1")
                .configure(control::configure)
                .configure(org_routes::configure_control),
        );
}

/// A running emulator.
pub struct Emulator {
    shared: web::Data<EmulatorShared>,
    base_url: String,
    client_id: String,
    client_secret: String,
    server: actix_web::dev::ServerHandle,
    tasks: Vec<actix_rt::task::JoinHandle<()>>,
}

impl std::fmt::Debug for Emulator {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Emulator")
            .field("base_url", &self.base_url)
            .field("client_id", &self.client_id)
            .finish_non_exhaustive()
    }
}

impl Emulator {
    /// Binds, starts serving with one worker and starts the periodic task. Must run inside
    /// an actix System (`#[actix_rt::test]`, `actix_rt::System::new().block_on`).
    pub async fn start(options: EmulatorOptions) -> std::io::Result<Emulator> {
        let listener = TcpListener::bind(options.listen)?;
        let bound = listener.local_addr()?;
        // A wildcard bind is still reached through loopback by local clients.
        let host = if bound.ip().is_unspecified() {
            IpAddr::V4(Ipv4Addr::LOCALHOST)
        } else {
            bound.ip()
        };
        let authority = SocketAddr::new(host, bound.port());
        let base_url = format!("http://{authority}");

        let now = Utc::now();
        let mut org_options = options.org.clone();
        org_options.seed = options.seed;
        org_options.strict_if_match = options.strict_if_match;
        let org = Org::new(org_options, now);
        let mut platform = Platform::new(PlatformOptions {
            client_id: options.client_id.clone(),
            client_secret: options.client_secret.clone(),
            token_ttl: time_delta(options.token_ttl),
            channel_ttl: time_delta(options.channel_ttl),
            rate_limit_per_minute: options.rate_limit_per_minute,
            seed: options.seed,
        });
        platform.set_directory(org.queue_ids(), org.user_ids());

        let shared = web::Data::new(EmulatorShared {
            org: Mutex::new(org),
            platform: Mutex::new(platform),
            sockets: Mutex::new(HashMap::new()),
            ws_base: format!("ws://{authority}"),
            // tokio intervals refuse a zero period.
            heartbeat: options.heartbeat.max(Duration::from_millis(1)),
            socket_outbox: options.socket_outbox.max(1),
        });

        let factory_shared = shared.clone();
        let server = HttpServer::new(move || {
            App::new()
                .app_data(factory_shared.clone())
                .configure(routes)
        })
        .keep_alive(crate::SERVER_KEEP_ALIVE)
        .workers(1)
        // The owner (CLI or test) decides when to stop; actix must not grab SIGINT.
        .disable_signals()
        .shutdown_timeout(1)
        .listen(listener)?
        .run();
        let handle = server.handle();
        let server_task = actix_rt::spawn(async move {
            if let Err(error) = server.await {
                tracing::error!(%error, "Emulator server failed.");
            }
        });
        let ticker_shared = shared.clone();
        let ticker = actix_rt::spawn(async move {
            let mut interval = tokio::time::interval(TICK);
            interval.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
            loop {
                interval.tick().await;
                // A panic in one tick must not silently end expiry and routing for good;
                // the mutexes recover from poisoning (see `lock`).
                let ticked = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
                    ticker_shared.tick();
                }));
                if ticked.is_err() {
                    tracing::error!("Emulator tick panicked; continuing with the next tick.");
                }
            }
        });
        tracing::info!(%base_url, "Emulator listening.");
        Ok(Emulator {
            shared,
            base_url,
            client_id: options.client_id,
            client_secret: options.client_secret,
            server: handle,
            tasks: vec![ticker, server_task],
        })
    }

    /// `http://127.0.0.1:PORT`: the token endpoint and `/api/v2` are both under it.
    pub fn base_url(&self) -> String {
        self.base_url.clone()
    }

    pub fn client_id(&self) -> &str {
        &self.client_id
    }

    pub fn client_secret(&self) -> &str {
        &self.client_secret
    }

    /// The org's queue ids (what a daemon pointed at this emulator follows).
    pub fn queue_ids(&self) -> Vec<String> {
        lock(&self.shared.org).queue_ids()
    }

    /// The shared state, for in-process tests that inspect or drive the org directly.
    pub fn shared(&self) -> &web::Data<EmulatorShared> {
        &self.shared
    }

    /// Drops every socket, stops the periodic task and the server.
    pub async fn stop(self) {
        let sockets: Vec<SocketId> = lock(&self.shared.platform)
            .detach_all_sockets(self.shared.now())
            .into_iter()
            .map(|(_, socket)| socket)
            .collect();
        self.shared.signal_sockets(&sockets, || Outbound::Drop);
        self.server.stop(false).await;
        for task in self.tasks {
            task.abort();
        }
    }
}
