//! `convoy run`: the boot order and the supervision tree, written out in one place, with
//! every dependency passed explicitly (no registry, no globals but the metrics recorder).
//!
//! ```text
//! telemetry, panic hook
//! TokenActor (essential)  ─┐
//! shared token bucket      ├─ RestContext ─┬─ ConversationRouter (essential) ─ ConversationActors
//!                          │               └─ StreamActor (supervised, essential) → router
//! HealthBoard, views ──────┴─ AdminServer (/metrics /healthz /readyz /conversations)
//!
//! ConversationActors ─Handover→ SlaActor (own arbiter) ─Commit→ OutboxWriter (thread,
//!   group commit into the redb outbox) ─OutboxChanged→ CrmBatchActor (own arbiter) → CRM
//! OutboxGate: outbox full or commits failing → the stream stops reading (back-pressure)
//! AnalyticsActor (own arbiter): on analytics.schedule, REST (background) + outbox
//!   SLA outcomes → QA snapshot files in analytics.output_dir
//!
//! cluster.enabled (NATS JetStream; one connection, the stream ensured at start):
//!   ingest | both: StreamActor → FramePublisher → convoy.frames.<partition> (frames);
//!                  Reconcile / re-reads → IngestActor → REST → the stream (`reread`)
//!   worker | both: LeaseActor (KV leases) ─PartitionChange→ ConsumerActor (a task per
//!                  owned partition: SLA books from KV → SlaActor, REST rebuild, then
//!                  the stream) → RouteConfirmed → router; ack once applied and
//!                  committed. Attribute writes go through a per-conversation fence in
//!                  KV; SLA books are mirrored into KV. A worker starts no StreamActor.
//! ```
//!
//! Shutdown (SIGTERM/SIGINT/SIGHUP): readiness goes 503, the stream stops taking frames,
//! what is owed is persisted, the SLA actor commits what it was handed, the CRM batcher
//! sends what it can until the deadline (the rest stays in the outbox), the admin server
//! stops; all under `shutdown.deadline`. Exit 0 on a clean stop; a restart budget
//! exceeded or an essential actor panicking stops the System with a non-zero code.

use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use actix::{Actor, Addr, Arbiter, AsyncContext, Supervisor};
use convoy::config::{ClientSecret, ClusterRole, Config};
use convoy::sla::SlaPolicy;
use dashmap::DashMap;

use crate::admin::{AdminServer, HealthBoard, OutboxView};
use crate::analytics::{AnalyticsActor, AnalyticsSettings};
use crate::clock::Clock;
use crate::cluster::fence::Fence;
use crate::cluster::ingest::{FramePublisher, IngestActor};
use crate::cluster::kv::KvError;
use crate::cluster::nats::{connect, ensure_stream, ClusterError, Nats};
use crate::cluster::sla_kv::SlaClockStore;
use crate::cluster::worker::{ConsumerActor, ConsumerSettings, StopConsuming};
use crate::cluster::{this_process_worker_id, LeaseActor, LeaseSettings, ReleaseAndStop};
use crate::conversation::router::{ConnectTranscription, ShutdownConversations};
use crate::conversation::writer::StopWrites;
use crate::conversation::{
    start_conversations, AttributeWriter, ConversationRouter, ConversationViews,
    ConversationsSetup, RouterSettings, WriteStatuses, WriterSettings,
};
use crate::crm::{CrmBatchActor, CrmSettings, FlushAndStop, OutboxChanged};
use crate::genesys::oauth::TokenEndpoint;
use crate::genesys::rest::{RestContext, RestTransport, SharedBucket};
use crate::outbox_writer::{AfterCommit, CommitLatency, OutboxGate, OutboxWriter};
use crate::sla::{SlaActor, SlaSettings, SlaViews, StopSla};
use crate::store::{DurableStore, StoreError};
use crate::stream::recorder::Recorder;
use crate::stream::{StopStream, StreamActor, StreamSettings};
use crate::supervision::install_panic_hook;
use crate::telemetry::{Telemetry, TelemetryError};
use crate::token::{TokenActor, TokenPolicy, TokenStats};

/// Process-level options that are not configuration (one-off flags).
#[derive(Debug, Clone, Default)]
pub struct RunOptions {
    /// `--record FILE`: raw capture of every received frame and REST answer to a read.
    pub record: Option<PathBuf>,
    /// What `convoy bench` changes or observes; nothing for `convoy run`.
    pub bench: BenchHooks,
}

/// Benchmark-only switches of an in-process daemon (`convoy bench e2e|restart`).
#[derive(Debug, Clone, Default)]
pub struct BenchHooks {
    /// Commit the outbox without fsync (redb `Durability::None`): what per-commit fsync
    /// costs. Never for production: a crash may lose what was acknowledged.
    pub no_fsync: bool,
    /// Record each frame's receipt-to-durable latency here.
    pub commit_latency: Option<Arc<CommitLatency>>,
}

/// Why the daemon could not start.
#[derive(Debug, thiserror::Error)]
pub enum BootError {
    #[error("metrics: {0}")]
    Telemetry(#[from] TelemetryError),
    #[error("genesys.client_secret_file was not resolved to a secret")]
    SecretNotLoaded,
    #[error("durable store: {0}")]
    Store(#[from] StoreError),
    #[error("cannot start the outbox writer thread: {0}")]
    OutboxWriter(std::io::Error),
    #[error("cluster: {0}")]
    Cluster(#[from] ClusterError),
    #[error("cluster: {0}")]
    ClusterKv(#[from] KvError),
    #[error("cannot serve admin.listen {listen}: {source}")]
    Admin {
        listen: std::net::SocketAddr,
        source: std::io::Error,
    },
}

/// How far back the first reconciliation looks for conversations Convoy never saw.
const STARTUP_LOOKBACK: Duration = Duration::from_secs(3600);
/// Conversations no longer live (finished, evicted) kept on `/conversations`.
const FINISHED_VIEWS: usize = 10_000;
/// Attribute writes in flight at once; they queue in the token bucket, a few keep it busy.
const WRITES_IN_FLIGHT: usize = 4;
/// Of the shutdown deadline, kept back from the CRM flush for what follows it.
const FLUSH_MARGIN: Duration = Duration::from_millis(500);
/// How long shutdown waits for the SLA, CRM and analytics threads to end.
const ARBITERS_JOIN: Duration = Duration::from_secs(5);
/// Background re-reads in flight at once.
const REREADS_IN_FLIGHT: usize = 2;

/// The router's settings `convoy run` uses (`conversations.max_live`,
/// `conversations.idle_timeout`); benchmarks build the same.
pub fn router_settings(max_live: usize, idle_timeout: Duration) -> RouterSettings {
    RouterSettings {
        max_live,
        tombstone_capacity: max_live.max(FINISHED_VIEWS),
        tombstone_ttl: Duration::from_secs(24 * 3600),
        finished_views: FINISHED_VIEWS,
        idle_timeout,
        reread_concurrency: REREADS_IN_FLIGHT,
    }
}

/// The attribute writer's settings `convoy run` uses (`genesys.if_match`).
pub fn writer_settings(conditional_writes: bool) -> WriterSettings {
    WriterSettings {
        max_in_flight: WRITES_IN_FLIGHT,
        conditional_writes,
        fence: None,
    }
}

/// A cluster worker's pieces that exist before the conversation side: the lease actor
/// is built (not started) against the address its consumers will have, so its ownership
/// view can key the SLA clock mirror before the SlaActor starts, and the write fence can
/// go into the attribute writer — while the consumers themselves need the router.
struct ClusterWorker {
    nats: Nats,
    consumer_settings: ConsumerSettings,
    consumer_context: actix::Context<ConsumerActor>,
    lease_actor: LeaseActor,
    clocks: SlaClockStore,
    fence: Fence,
}

impl ClusterWorker {
    async fn prepare(
        nats: Nats,
        config: &convoy::config::ClusterConfig,
        partitions: convoy::cluster::Partitions,
        stream: &str,
    ) -> Result<ClusterWorker, BootError> {
        let worker = this_process_worker_id(chrono::Utc::now());
        let settings = LeaseSettings::from_config(config, worker.clone()).map_err(|error| {
            ClusterError::Stream {
                stream: stream.to_owned(),
                detail: error.to_string(),
            }
        })?;
        tracing::info!(worker = %worker.0, "Cluster worker: taking partition leases.");
        let consumer_context = actix::Context::<ConsumerActor>::new();
        let lease_actor = LeaseActor::new(
            settings,
            nats.jetstream.clone(),
            consumer_context.address().recipient(),
        );
        let clocks = SlaClockStore::open(&nats.jetstream, config, lease_actor.status()).await?;
        let fence = Fence::open(&nats.jetstream, config, worker).await?;
        Ok(ClusterWorker {
            consumer_settings: ConsumerSettings {
                stream: stream.to_owned(),
                partitions,
            },
            nats,
            consumer_context,
            lease_actor,
            clocks,
            fence,
        })
    }
}

/// A running daemon: every singleton's address, for the shutdown and for tests.
pub struct Daemon {
    pub admin: AdminServer,
    pub router: Addr<ConversationRouter>,
    /// `None` for a cluster worker (`cluster.role = worker`): it holds no Genesys channel.
    pub stream: Option<Addr<StreamActor>>,
    /// The cluster's partition consumers (`cluster.role = worker | both`).
    pub consumers: Option<Addr<ConsumerActor>>,
    /// The cluster's re-read publisher (`cluster.role = ingest | both`).
    pub ingest: Option<Addr<IngestActor>>,
    /// The worker's partition leases (`cluster.role = worker | both`).
    pub leases: Option<Addr<LeaseActor>>,
    pub tokens: Addr<TokenActor>,
    pub writer: Addr<AttributeWriter>,
    pub bucket: Arc<SharedBucket>,
    pub board: Arc<HealthBoard>,
    pub views: ConversationViews,
    pub write_statuses: WriteStatuses,
    pub telemetry: Telemetry,
    pub sla: Addr<SlaActor>,
    /// `None` when `crm.endpoint` is not set.
    pub crm: Option<Addr<CrmBatchActor>>,
    pub gate: Arc<OutboxGate>,
    pub sla_views: SlaViews,
    pub analytics: Addr<AnalyticsActor>,
    /// The SLA actor's, the CRM batcher's and the analytics actor's threads (their disk calls block them only).
    arbiters: Vec<Arbiter>,
    shutdown_deadline: Duration,
}

impl Daemon {
    /// Starts everything in boot order. Must run inside an actix System.
    pub async fn start(config: &Config, options: RunOptions) -> Result<Daemon, BootError> {
        let telemetry = Telemetry::install()?;
        install_panic_hook();

        let ClientSecret::Value(secret) = &config.genesys.client_secret else {
            return Err(BootError::SecretNotLoaded);
        };
        // The board and the admin server come first: /healthz answers and a taken admin
        // port fails the start before anything talks to Genesys.
        let board = Arc::new(HealthBoard::new(config.stream.reconnect_after_silence));
        let views: ConversationViews = Arc::new(DashMap::new());
        let write_statuses: WriteStatuses = Arc::new(DashMap::new());
        let sla_views: SlaViews = Arc::new(DashMap::new());
        let gate = Arc::new(OutboxGate::new(config.outbox.max_records, 0));
        let admin = AdminServer::start(
            config.admin.listen,
            Arc::clone(&board),
            Arc::clone(&views),
            Arc::clone(&write_statuses),
            telemetry.clone(),
            OutboxView {
                gate: Arc::clone(&gate),
                sla: Arc::clone(&sla_views),
            },
            config.admin.token.clone(),
        )
        .map_err(|source| BootError::Admin {
            listen: config.admin.listen,
            source,
        })?;
        let mut store = DurableStore::open(&config.outbox.path)?;
        if options.bench.no_fsync {
            store.set_fsync(false);
        }
        let store = Arc::new(store);
        // `convoy outbox` reaches the store through the admin API while this process holds it.
        admin.attach_outbox(Arc::clone(&store));
        gate.set_pending(store.status()?.pending);

        // The business output: SLA clocks and CRM records, through the outbox.
        let crm_arbiter = Arbiter::new();
        let crm = config.crm.clone().map(|crm_config| {
            let store = Arc::clone(&store);
            let gate = Arc::clone(&gate);
            CrmBatchActor::start_in_arbiter(&crm_arbiter.handle(), move |_| {
                CrmBatchActor::new(
                    CrmSettings {
                        config: crm_config,
                        in_process: None,
                    },
                    store,
                    gate,
                )
            })
        });
        let notify = crm.clone().map(|crm| crm.recipient::<OutboxChanged>());
        let after_commit: AfterCommit = Box::new(move |report| {
            if let Some(crm) = &notify {
                crm.do_send(OutboxChanged {
                    records: report.appended,
                    summaries: report.summaries.clone(),
                });
            }
        });
        let writer_thread = OutboxWriter::start_timed(
            Arc::clone(&store),
            Arc::clone(&gate),
            after_commit,
            options.bench.commit_latency.clone(),
        )
        .map_err(BootError::OutboxWriter)?;
        // The cluster (`cluster.enabled`): the ingest publishes what the stream reads, the
        // worker consumes its partitions into the router. Off: neither exists, no NATS.
        let cluster = match &config.cluster {
            None => None,
            Some(cluster) => {
                let role = cluster.role;
                let nats = connect(cluster, &format!("convoy-{}", role.as_str())).await?;
                ensure_stream(&nats, cluster).await?;
                let partitions =
                    convoy::cluster::Partitions::new(cluster.partitions).map_err(|error| {
                        ClusterError::Stream {
                            stream: cluster.stream.clone(),
                            detail: error.to_string(),
                        }
                    })?;
                Some((nats, role, partitions, cluster.stream.clone()))
            }
        };
        // The worker role's pieces, built before the conversation side they plug into:
        // the write fence goes into the attribute writer, the SLA clock mirror into the
        // SlaActor, both keyed on the leases the lease actor will hold.
        let worker = match (&cluster, &config.cluster) {
            (
                Some((nats, ClusterRole::Worker | ClusterRole::Both, partitions, stream)),
                Some(cluster_config),
            ) => Some(
                ClusterWorker::prepare(nats.clone(), cluster_config, *partitions, stream).await?,
            ),
            _ => None,
        };
        let lease_status = worker.as_ref().map(|worker| worker.lease_actor.status());
        let consuming = Arc::new(std::sync::atomic::AtomicUsize::new(0));

        let sla_arbiter = Arbiter::new();
        let sla_settings = SlaSettings {
            policy: SlaPolicy::from_config(&config.sla),
            tick: config.sla.tick,
            keep_records: config.crm.is_some(),
            clock: Clock::System,
        };
        let sla = {
            let store = Arc::clone(&store);
            let sla_views = Arc::clone(&sla_views);
            let clocks = worker.as_ref().map(|worker| worker.clocks.clone());
            SlaActor::start_in_arbiter(&sla_arbiter.handle(), move |_| {
                let sla = SlaActor::new(sla_settings, &store, writer_thread, sla_views);
                match clocks {
                    Some(clocks) => sla.with_cluster_clocks(clocks),
                    None => sla,
                }
            })
        };

        let token_stats = Arc::new(TokenStats::default());
        let tokens = TokenActor::new(
            TokenEndpoint {
                login_base: config.genesys.endpoints.login_base.clone(),
                client_id: config.genesys.client_id.clone(),
                client_secret: secret.clone(),
            },
            Arc::clone(&token_stats),
        )
        .with_policy(TokenPolicy {
            unreachable_exit_after: config.genesys.login_unreachable_exit_after,
            ..TokenPolicy::default()
        })
        .start();
        let bucket = Arc::new(
            SharedBucket::new(config.genesys.requests_per_minute).with_health(Arc::clone(&board)),
        );
        // `--record`: the REST client appends its answers to reads beside the frames.
        let record = options
            .record
            .as_deref()
            .and_then(Recorder::open)
            .map(|recorder| Arc::new(std::sync::Mutex::new(recorder)));
        let rest = RestContext {
            api_base: config.genesys.endpoints.api_base.clone(),
            tokens: tokens.clone(),
            bucket: Arc::clone(&bucket),
            transport: RestTransport::Http { record },
        };

        let analytics_arbiter = Arbiter::new();
        let analytics = {
            let settings = AnalyticsSettings {
                every: match config.analytics.schedule {
                    convoy::config::AnalyticsSchedule::Off => None,
                    convoy::config::AnalyticsSchedule::Every(every) => Some(every),
                },
                output_dir: config.analytics.output_dir.clone(),
                keep_outcomes: config.analytics.keep_outcomes,
                take: crate::analytics::cli::take_settings(config),
            };
            let store = Arc::clone(&store);
            let rest = rest.clone();
            AnalyticsActor::start_in_arbiter(&analytics_arbiter.handle(), move |_| {
                AnalyticsActor::new(settings, store, rest)
            })
        };

        let (router, writer) = start_conversations(ConversationsSetup {
            rest: rest.clone(),
            views: Arc::clone(&views),
            write_statuses: Arc::clone(&write_statuses),
            router: router_settings(
                config.conversations.max_live,
                config.conversations.idle_timeout,
            ),
            writer: WriterSettings {
                fence: worker.as_ref().map(|worker| worker.fence.clone()),
                ..writer_settings(config.genesys.conditional_writes)
            },
            write_back: config.genesys.write_back,
            store: Some(store),
            handover: Some(sla.clone().recipient()),
            census: None,
            board: Some(Arc::clone(&board)),
        });

        let ingests = cluster
            .as_ref()
            .is_none_or(|(_, role, _, _)| matches!(role, ClusterRole::Ingest | ClusterRole::Both));
        let publisher = cluster.as_ref().and_then(|(nats, role, partitions, _)| {
            matches!(role, ClusterRole::Ingest | ClusterRole::Both).then(|| {
                FramePublisher::new(nats.clone(), *partitions, config.conversations.idle_timeout)
            })
        });
        let ingest = publisher
            .clone()
            .map(|publisher| IngestActor::new(publisher, rest.clone()).start());
        // The worker's consumers start now that the router exists (the lease actor was
        // built against their address before); the lease actor after them.
        let (consumers, leases) = match worker {
            Some(worker) => {
                let consumers = worker.consumer_context.run(
                    ConsumerActor::new(worker.nats, worker.consumer_settings, router.clone())
                        .with_health(Arc::clone(&consuming))
                        .with_rebuild(rest.clone())
                        .with_sla_clocks(sla.clone()),
                );
                (Some(consumers), Some(worker.lease_actor.start()))
            }
            None => (None, None),
        };
        if let Some((nats, role, _, _)) = &cluster {
            let connected = nats.clone();
            let leases_ready = lease_status.clone().map(|status| {
                let check: crate::admin::LeaseCheck = Arc::new(move || {
                    status
                        .readiness(std::time::Instant::now())
                        .map_err(|error| error.to_string())
                });
                check
            });
            board.set_cluster(crate::admin::ClusterHealth {
                role: *role,
                nats_connected: Arc::new(move || connected.connected()),
                consuming: Arc::clone(&consuming),
                leases_ready,
            });
        }

        let stream = if ingests {
            let expiry_stats = Arc::clone(&token_stats);
            let mut stream_actor = StreamActor::new(
                StreamSettings {
                    topics: config.topics(),
                    stream: config.stream,
                    record: options.record,
                    startup_lookback: STARTUP_LOOKBACK,
                },
                rest,
                router.clone().recipient(),
                match &ingest {
                    Some(ingest) => ingest.clone().recipient(),
                    None => router.clone().recipient(),
                },
                Arc::clone(&board),
            )
            .with_token_expiry(Arc::new(move || expiry_stats.expires_at()))
            .with_gate(Arc::clone(&gate));
            let transcriptions_by_ingest = publisher.clone();
            stream_actor = match (&ingest, publisher) {
                // The ingest re-reads and publishes what could not be published.
                (Some(ingest), Some(publisher)) => stream_actor
                    .with_rereads(ingest.clone().recipient())
                    .with_publisher(publisher),
                _ => stream_actor.with_rereads(router.clone().recipient()),
            };
            // Supervised: a stopped stream (dead socket it could not recover in place) is
            // restarted with backoff; its restart budget escalates to a process exit.
            let stream = Supervisor::start(move |_| stream_actor);
            // Voice calls ask the stream for their transcription topics (the stream needs
            // the router's address, so this edge is connected once both exist): in one
            // process their conversation actors do; in the ingest role the publisher does,
            // from the snapshots it publishes, since the actors live on the workers.
            match transcriptions_by_ingest {
                Some(publisher) => publisher.follow_transcriptions(stream.clone().recipient()),
                None => router.do_send(ConnectTranscription(stream.clone().recipient())),
            }
            Some(stream)
        } else {
            None
        };

        // The board's token check follows the TokenActor's bookkeeping.
        let board_for_token = Arc::clone(&board);
        actix_rt::spawn(async move {
            let mut interval = actix_rt::time::interval(Duration::from_millis(500));
            loop {
                interval.tick().await;
                board_for_token.set_token_valid_until(token_stats.expires_at());
            }
        });

        Ok(Daemon {
            admin,
            router,
            stream,
            consumers,
            ingest,
            leases,
            tokens,
            writer,
            bucket,
            board,
            views,
            write_statuses,
            telemetry,
            sla,
            crm,
            gate,
            sla_views,
            analytics,
            arbiters: vec![sla_arbiter, crm_arbiter, analytics_arbiter],
            shutdown_deadline: config.shutdown.deadline,
        })
    }

    /// The ordered, bounded shutdown. Returns whether it finished within the deadline.
    pub async fn shutdown(self) -> bool {
        self.board.set_shutting_down();
        // A stream paused by back-pressure must see the stop.
        self.gate.release();
        let deadline = self.shutdown_deadline;
        let started = std::time::Instant::now();
        let drained = actix_rt::time::timeout(deadline, async {
            // 1. No new frames (from Genesys, or from the cluster's stream: what a worker
            //    has not acknowledged is delivered again to the partition's next owner).
            if let Some(stream) = &self.stream {
                let _ = stream.send(StopStream).await;
            }
            //    The leases are released first (the consumers hear `Lost` before each
            //    release is written), so the other workers take the partitions over now
            //    instead of after a TTL.
            if let Some(leases) = &self.leases {
                let _ = leases.send(ReleaseAndStop).await;
            }
            if let Some(consumers) = &self.consumers {
                let _ = consumers.send(StopConsuming).await;
            }
            // 2. No new writes; what is still owed is handed over...
            let also_owed = self.writer.send(StopWrites).await.unwrap_or_default();
            // 3. ...and persisted with every conversation still open or owed a re-read:
            //    the next start re-reads them, whatever their age.
            let persisted = self
                .router
                .send(ShutdownConversations { also_owed })
                .await
                .unwrap_or(0);
            tracing::info!(
                conversations = persisted,
                "Conversations persisted for the next start."
            );
            // 4. Requests still waiting for a token give up at once instead of holding the
            //    shutdown (what they were for is persisted above).
            self.bucket.close();
            // 5. What the conversations handed over is committed; the clocks' state with it.
            let _ = self.sla.send(StopSla).await;
            // 6. The CRM gets what it can take in the time left (a margin kept for the
            //    rest); what it does not stays in the outbox for the next start.
            if let Some(crm) = &self.crm {
                let flush_until = started + deadline.saturating_sub(FLUSH_MARGIN);
                let _ = crm
                    .send(FlushAndStop {
                        deadline: flush_until,
                    })
                    .await;
            }
        })
        .await
        .is_ok();
        // The arbiters' actors hold the outbox file open (redb locks it): it is closed only
        // once their threads have ended, so wait for them — a start right after this one
        // (a supervisor's restart, a test) must be able to open it. Off the event loop;
        // an idle arbiter ends at once, one busy writing a snapshot gets a few seconds.
        for arbiter in &self.arbiters {
            arbiter.stop();
        }
        let arbiters = self.arbiters;
        let joined = actix_rt::time::timeout(
            ARBITERS_JOIN,
            actix_rt::task::spawn_blocking(move || {
                for arbiter in arbiters {
                    let _ = arbiter.join();
                }
            }),
        )
        .await;
        if joined.is_err() {
            tracing::warn!("An actor thread did not end in time; the outbox may stay locked until the process exits.");
        }
        if !drained {
            tracing::warn!(
                deadline_ms = deadline.as_millis() as u64,
                "Shutdown deadline passed; stopping anyway."
            );
        }
        self.admin.stop().await;
        drained
    }
}

/// Runs the daemon until SIGTERM or SIGINT, then shuts it down. Returns the exit code.
pub async fn run_until_signal(config: Config, options: RunOptions) -> Result<i32, BootError> {
    let daemon = Daemon::start(&config, options).await?;
    tracing::info!(
        admin = %daemon.admin.local_addr(),
        topics = config.topics().len(),
        api_base = %config.genesys.endpoints.api_base,
        "Convoy is running."
    );
    let signal = wait_for_signal().await;
    tracing::info!(signal, "Shutting down.");
    let clean = daemon.shutdown().await;
    Ok(if clean { 0 } else { 1 })
}

/// Waits for SIGTERM, SIGINT or SIGHUP and names it. SIGHUP (a closed terminal, or a
/// reload request from a service manager) shuts down gracefully like SIGTERM: nothing in
/// the configuration is reloaded in place, and restarting re-reads all of it (and
/// reconciles every conversation) — far better than the default of dying on the spot.
async fn wait_for_signal() -> &'static str {
    #[cfg(unix)]
    {
        use tokio::signal::unix::{signal, SignalKind};
        match (
            signal(SignalKind::terminate()),
            signal(SignalKind::interrupt()),
            signal(SignalKind::hangup()),
        ) {
            (Ok(mut terminate), Ok(mut interrupt), Ok(mut hangup)) => {
                tokio::select! {
                    _ = terminate.recv() => "SIGTERM",
                    _ = interrupt.recv() => "SIGINT",
                    _ = hangup.recv() => "SIGHUP",
                }
            }
            _ => {
                let _ = tokio::signal::ctrl_c().await;
                "SIGINT"
            }
        }
    }
    #[cfg(not(unix))]
    {
        let _ = tokio::signal::ctrl_c().await;
        "SIGINT"
    }
}
