//! How Convoy's singleton actors survive failure, written once: the restart recipe for
//! actors under `actix::Supervisor` ([`RestartState`]), the escalation when restarting no
//! longer helps ([`Escalation`]), the panic hook ([`install_panic_hook`]) and the guard
//! that turns a dying singleton into a loud process exit ([`PanicGuard`]).
//!
//! What actix really does (ARCHITECTURE.md §3, anchors.md §2.4): a `Supervisor` restarts an
//! actor when it *stops*, keeping the struct and the mailbox and dropping its timers,
//! streams and spawned futures; it does nothing after a *panic*, where the actor silently
//! disappears and `do_send` drops messages. So a singleton stops itself on failure (and is
//! restarted with backoff), and a panicking singleton stops the System: the process
//! supervisor (systemd, Kubernetes) restarts Convoy, and re-subscription plus
//! reconciliation recover the state.
//!
//! This module must never decide *what* an actor does on restart (reconnect, resubscribe):
//! it only decides *whether* and *when*.

use std::collections::VecDeque;
use std::fmt;
use std::sync::{Arc, Once};
use std::time::{Duration, Instant};

use actix::{Actor, AsyncContext, Context, SpawnHandle};

use crate::retry_schedule::RetrySchedule;
use crate::telemetry::{names, ActorMetrics};

/// The exit code of a process stopped by an escalation (restart budget exceeded or an
/// essential actor panicked).
pub const ESCALATION_EXIT_CODE: i32 = 1;
/// The exit code when Genesys keeps refusing the OAuth client (400/401/403 from the token
/// endpoint: unknown client id, wrong secret, grant not allowed). Restarting cannot help;
/// fix `genesys.client_id` / the client secret.
pub const EXIT_CREDENTIALS_REFUSED: i32 = 4;
/// The exit code when the login host could not be reached (or kept failing) for longer
/// than `genesys.login_unreachable_exit_after` while Convoy had no valid token.
pub const EXIT_LOGIN_UNREACHABLE: i32 = 5;

/// At most `max_restarts` restarts within any `window` (Erlang's intensity and period),
/// and at most `max_unrecovered` restarts in a row without the actor recovering in between
/// ([`RestartState::recovered`]); one more gives up.
///
/// The second bound is what makes the budget reachable: the backoff between restarts grows
/// to 30 s, so an actor that can never recover (a refused OAuth client) restarts only a
/// couple of times a minute and would never exceed a per-window intensity.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RestartBudget {
    pub max_restarts: usize,
    pub window: Duration,
    pub max_unrecovered: usize,
}

impl Default for RestartBudget {
    /// Generous on purpose: with backoff between restarts, a plain crash loop restarts
    /// only a handful of times a minute; exceeding 20 means the actor keeps recovering
    /// and failing again at once, which a fresh process may fix.
    fn default() -> Self {
        RestartBudget {
            max_restarts: 20,
            window: Duration::from_secs(60),
            // With the 100 ms … 30 s backoff: about two minutes of failing restarts.
            max_unrecovered: 10,
        }
    }
}

/// What `Supervised::restarting` should lead to.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RestartDecision {
    /// Resume the actor's work after this delay.
    RestartAfter(Duration),
    /// The budget is exhausted and the escalation has run; do no more work.
    GiveUp,
}

/// How `started()` should begin the actor's work, after [`RestartState::next_start`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum StartPlan {
    /// First start: begin at once.
    Now,
    /// A restart: begin after the backoff delay.
    After(Duration),
    /// Given up: begin nothing; the System is stopping.
    Never,
}

/// Why the process is being stopped.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum EscalationCause {
    /// `restarts` within `window`, or (when `window` is zero) in a row without recovering.
    RestartBudgetExceeded {
        actor: &'static str,
        restarts: usize,
        window: Duration,
    },
    EssentialActorPanicked {
        actor: &'static str,
    },
    /// The token endpoint refused the OAuth client this many times in a row.
    CredentialsRefused {
        attempts: u32,
        status: u16,
    },
    /// No token could be obtained for this long (transport errors, 5xx, 429).
    LoginUnreachable {
        failing_for: Duration,
    },
}

impl EscalationCause {
    pub fn actor(&self) -> &'static str {
        match self {
            EscalationCause::RestartBudgetExceeded { actor, .. }
            | EscalationCause::EssentialActorPanicked { actor } => actor,
            EscalationCause::CredentialsRefused { .. }
            | EscalationCause::LoginUnreachable { .. } => "token",
        }
    }

    /// The process exit code this cause stops the System with.
    pub fn exit_code(&self) -> i32 {
        match self {
            EscalationCause::RestartBudgetExceeded { .. }
            | EscalationCause::EssentialActorPanicked { .. } => ESCALATION_EXIT_CODE,
            EscalationCause::CredentialsRefused { .. } => EXIT_CREDENTIALS_REFUSED,
            EscalationCause::LoginUnreachable { .. } => EXIT_LOGIN_UNREACHABLE,
        }
    }
}

/// What happens when supervision gives up. The default stops the current actix System
/// with [`ESCALATION_EXIT_CODE`]; tests inject an action they can observe instead of
/// stopping the System they run in.
#[derive(Clone)]
pub struct Escalation {
    action: Arc<dyn Fn(&EscalationCause) + Send + Sync>,
}

impl Escalation {
    /// Stop the actix System of the calling thread with the cause's exit code
    /// ([`EscalationCause::exit_code`]).
    pub fn stop_system() -> Self {
        Escalation::new(stop_system)
    }

    pub fn new(action: impl Fn(&EscalationCause) + Send + Sync + 'static) -> Self {
        Escalation {
            action: Arc::new(action),
        }
    }

    /// Runs the action. Must not panic: it also runs inside a `Drop` during unwinding,
    /// where a second panic aborts the process.
    pub fn escalate(&self, cause: &EscalationCause) {
        (self.action)(cause);
    }
}

impl Default for Escalation {
    fn default() -> Self {
        Escalation::stop_system()
    }
}

impl fmt::Debug for Escalation {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Escalation").finish_non_exhaustive()
    }
}

fn stop_system(cause: &EscalationCause) {
    let code = cause.exit_code();
    // `System::current()` panics without a System; `try_current` cannot.
    match actix::System::try_current() {
        Some(system) => {
            tracing::error!(actor = cause.actor(), cause = ?cause, code, "Stopping the process.");
            system.stop_with_code(code);
        }
        None => {
            // Only reachable from a thread outside any actix System; exiting is still
            // better than running on without a singleton.
            tracing::error!(actor = cause.actor(), cause = ?cause, code, "No actix System on this thread; exiting the process.");
            std::process::exit(code);
        }
    }
}

/// The restart bookkeeping a supervised singleton keeps as a field. actix keeps the actor
/// struct across restarts, so this state (backoff, recent restarts) accumulates across
/// them as intended. A Supervisor restarts a stopped actor only while some `Addr` to it
/// exists; with none left, a stop is final.
///
/// The recipe, in the actor:
/// ```ignore
/// impl Actor for StreamActor {
///     fn started(&mut self, ctx: &mut Context<Self>) {
///         // Timers and streams die with every restart: create them here, never in `new`.
///         self.restart.schedule_start(ctx, |actor, ctx| actor.connect(ctx));
///     }
/// }
/// impl Supervised for StreamActor {
///     fn restarting(&mut self, _ctx: &mut Context<Self>) {
///         self.socket = None; // reset transient fields
///         self.restart.restarting("stream");
///     }
/// }
/// // After a healthy period (e.g. connected and subscribed): self.restart.recovered();
/// ```
pub struct RestartState {
    backoff: RetrySchedule,
    /// Restarts inside the current window, oldest first.
    recent_restarts: VecDeque<Instant>,
    budget: RestartBudget,
    escalation: Escalation,
    /// What the last `restarting` decided, consumed by the next `started()`.
    pending: Option<RestartDecision>,
    /// Restarts since the last [`RestartState::recovered`].
    unrecovered: usize,
    gave_up: bool,
}

impl fmt::Debug for RestartState {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("RestartState")
            .field("recent_restarts", &self.recent_restarts.len())
            .field("budget", &self.budget)
            .field("pending", &self.pending)
            .field("gave_up", &self.gave_up)
            .finish_non_exhaustive()
    }
}

impl RestartState {
    /// Backoff from 100 ms up to 30 s between restarts; see [`RestartState::with_backoff`].
    pub fn new(budget: RestartBudget) -> Self {
        RestartState {
            backoff: RetrySchedule::new(Duration::from_millis(100), Duration::from_secs(30)),
            recent_restarts: VecDeque::new(),
            budget,
            escalation: Escalation::default(),
            pending: None,
            unrecovered: 0,
            gave_up: false,
        }
    }

    pub fn with_backoff(mut self, initial: Duration, max: Duration) -> Self {
        self.backoff = RetrySchedule::new(initial, max);
        self
    }

    pub fn with_escalation(mut self, escalation: Escalation) -> Self {
        self.escalation = escalation;
        self
    }

    /// Call from `Supervised::restarting`: counts the restart and decides when the actor
    /// resumes, or gives up (logs ERROR and escalates) when the budget is exhausted.
    pub fn restarting(&mut self, actor: &'static str) -> RestartDecision {
        self.restarting_at(actor, Instant::now())
    }

    /// [`RestartState::restarting`] with the clock as an argument.
    pub fn restarting_at(&mut self, actor: &'static str, now: Instant) -> RestartDecision {
        // The Supervisor restarts the actor whatever we decide: count every restart.
        ActorMetrics::restarted(actor);
        let decision = if self.gave_up {
            RestartDecision::GiveUp
        } else {
            self.decide(actor, now)
        };
        self.pending = Some(decision);
        decision
    }

    fn decide(&mut self, actor: &'static str, now: Instant) -> RestartDecision {
        while let Some(oldest) = self.recent_restarts.front() {
            if now.saturating_duration_since(*oldest) > self.budget.window {
                self.recent_restarts.pop_front();
            } else {
                break;
            }
        }
        self.recent_restarts.push_back(now);
        self.unrecovered += 1;
        let restarts = self.recent_restarts.len();
        let exceeded = if restarts > self.budget.max_restarts {
            Some((restarts, self.budget.window))
        } else if self.unrecovered > self.budget.max_unrecovered {
            Some((self.unrecovered, Duration::ZERO))
        } else {
            None
        };
        if let Some((restarts, window)) = exceeded {
            self.gave_up = true;
            tracing::error!(
                actor,
                restarts,
                window_secs = window.as_secs_f64(),
                unrecovered = self.unrecovered,
                "Restart budget exceeded; giving up on the actor."
            );
            self.escalation
                .escalate(&EscalationCause::RestartBudgetExceeded {
                    actor,
                    restarts,
                    window,
                });
            return RestartDecision::GiveUp;
        }
        let delay = self.backoff.next_delay();
        tracing::warn!(
            actor,
            restarts,
            delay_ms = delay.as_millis() as u64,
            "Restarting the actor after a delay."
        );
        RestartDecision::RestartAfter(delay)
    }

    /// The actor did useful work again (connected, subscribed, answered): the next restart
    /// starts from the shortest delay. The budget window is not reset: flapping (recover,
    /// fail at once, repeat) must still exhaust it.
    pub fn recovered(&mut self) {
        self.backoff.reset();
        self.unrecovered = 0;
    }

    /// Call from `started()`: how to begin the actor's work this time.
    pub fn next_start(&mut self) -> StartPlan {
        match self.pending.take() {
            None if self.gave_up => StartPlan::Never,
            None => StartPlan::Now,
            Some(RestartDecision::RestartAfter(delay)) => StartPlan::After(delay),
            Some(RestartDecision::GiveUp) => StartPlan::Never,
        }
    }

    /// Call from `started()`: runs `work` now (first start) or after the backoff delay
    /// (restart), or never (given up). `work` runs as a context timer, so a restart drops
    /// it with everything else the context held.
    pub fn schedule_start<A, F>(&mut self, ctx: &mut Context<A>, work: F) -> Option<SpawnHandle>
    where
        A: Actor<Context = Context<A>>,
        F: FnOnce(&mut A, &mut Context<A>) + 'static,
    {
        match self.next_start() {
            StartPlan::Now => Some(ctx.run_later(Duration::ZERO, work)),
            StartPlan::After(delay) => Some(ctx.run_later(delay, work)),
            StartPlan::Never => None,
        }
    }

    /// Restarts counted in the current window (for `/readyz` details and tests).
    pub fn recent_restarts(&self) -> usize {
        self.recent_restarts.len()
    }
}

/// A field of an actor that notices when the actor dies unwinding from a panic: counts
/// `ACTOR_PANICS{actor}`, logs, and for an essential actor (a singleton) escalates, by
/// default stopping the System. Declare it in every singleton; a conversation actor may
/// carry a non-essential one to be counted.
///
/// Why this works: when a handler panics, tokio's task harness drops the actor's future
/// (and with it the actor struct) while still unwinding, so `std::thread::panicking()` is
/// true in this `Drop` and false on every ordinary stop.
#[derive(Debug)]
pub struct PanicGuard {
    actor: &'static str,
    essential: bool,
    escalation: Escalation,
}

impl PanicGuard {
    /// A singleton: its death stops the System.
    pub fn essential(actor: &'static str) -> Self {
        PanicGuard {
            actor,
            essential: true,
            escalation: Escalation::default(),
        }
    }

    /// An actor that may die alone (a conversation): its death is only counted and logged.
    pub fn counted(actor: &'static str) -> Self {
        PanicGuard {
            actor,
            essential: false,
            escalation: Escalation::default(),
        }
    }

    pub fn with_escalation(mut self, escalation: Escalation) -> Self {
        self.escalation = escalation;
        self
    }

    pub fn actor(&self) -> &'static str {
        self.actor
    }

    pub fn is_essential(&self) -> bool {
        self.essential
    }
}

impl Drop for PanicGuard {
    fn drop(&mut self) {
        if !std::thread::panicking() {
            return;
        }
        // Everything below runs during unwinding: nothing here may panic.
        ActorMetrics::panicked(self.actor);
        if self.essential {
            tracing::error!(
                actor = self.actor,
                "Essential actor died from a panic; stopping the process."
            );
            self.escalation
                .escalate(&EscalationCause::EssentialActorPanicked { actor: self.actor });
        } else {
            tracing::error!(actor = self.actor, "Actor died from a panic.");
        }
    }
}

/// Installs (once per process) a panic hook that logs every panic through `tracing` with
/// the thread name and location, counts it in `PANICS`, then runs the previous hook.
///
/// The previous hook still runs so nothing is lost when logging is not set up yet, and so
/// test harness output and `RUST_BACKTRACE` keep working.
pub fn install_panic_hook() {
    static INSTALL: Once = Once::new();
    INSTALL.call_once(|| {
        let previous = std::panic::take_hook();
        std::panic::set_hook(Box::new(move |info| {
            metrics::counter!(names::PANICS).increment(1);
            let thread = std::thread::current();
            let thread = thread.name().unwrap_or("<unnamed>");
            let location = info
                .location()
                .map(|location| format!("{}:{}", location.file(), location.line()))
                .unwrap_or_default();
            let payload = info.payload();
            let message = payload
                .downcast_ref::<&str>()
                .copied()
                .or_else(|| payload.downcast_ref::<String>().map(String::as_str))
                .unwrap_or("<non-string panic payload>");
            tracing::error!(thread, location, message, "Panic.");
            previous(info);
        }));
    });
}

#[cfg(test)]
#[allow(clippy::unwrap_used, clippy::expect_used)]
mod tests {
    use std::sync::Mutex;

    use actix::{ActorContext, Handler, Message, Supervised, Supervisor, System};
    use tokio::sync::mpsc;

    use super::*;
    use crate::telemetry::{sample, Telemetry};

    fn counter(name: &str, actor: &str) -> f64 {
        let text = Telemetry::install().unwrap().render();
        sample::value(&text, name, &[("actor", actor)]).unwrap_or(0.0)
    }

    /// An escalation that records its causes instead of stopping anything.
    fn recording() -> (Escalation, Arc<Mutex<Vec<EscalationCause>>>) {
        let causes = Arc::new(Mutex::new(Vec::new()));
        let sink = Arc::clone(&causes);
        let escalation = Escalation::new(move |cause| sink.lock().unwrap().push(cause.clone()));
        (escalation, causes)
    }

    fn budget(max_restarts: usize) -> RestartBudget {
        RestartBudget {
            max_restarts,
            window: Duration::from_secs(60),
            max_unrecovered: 1_000,
        }
    }

    /// An actor that never recovers, restarted with the real backoff (delays summed as
    /// the clock), exceeds the default budget: a wrong secret cannot restart forever.
    #[test]
    fn the_default_budget_is_exceeded_by_an_actor_that_never_recovers() {
        let (escalation, causes) = recording();
        let mut state = RestartState::new(RestartBudget::default()).with_escalation(escalation);
        let mut now = Instant::now();
        let mut restarts = 0;
        let gave_up = loop {
            match state.restarting_at("test_unit_unrecovered", now) {
                RestartDecision::RestartAfter(delay) => now += delay,
                RestartDecision::GiveUp => break true,
            }
            restarts += 1;
            if restarts > 1_000 {
                break false;
            }
        };
        assert!(gave_up, "the budget was never exceeded");
        assert_eq!(restarts, RestartBudget::default().max_unrecovered);
        assert_eq!(
            *causes.lock().unwrap(),
            vec![EscalationCause::RestartBudgetExceeded {
                actor: "test_unit_unrecovered",
                restarts: 11,
                window: Duration::ZERO,
            }]
        );
    }

    #[test]
    fn recovering_between_restarts_keeps_the_in_a_row_bound_away() {
        let (escalation, causes) = recording();
        let mut state = RestartState::new(RestartBudget {
            max_restarts: 1_000,
            window: Duration::from_secs(60),
            max_unrecovered: 2,
        })
        .with_escalation(escalation);
        let mut now = Instant::now();
        for _ in 0..10 {
            now += Duration::from_secs(120);
            assert!(matches!(
                state.restarting_at("test_unit_recovering", now),
                RestartDecision::RestartAfter(_)
            ));
            state.recovered();
        }
        assert!(causes.lock().unwrap().is_empty());
    }

    #[test]
    fn restarts_within_the_budget_get_growing_delays() {
        let (escalation, causes) = recording();
        let mut state = RestartState::new(budget(5))
            .with_backoff(Duration::from_millis(100), Duration::from_secs(10))
            .with_escalation(escalation);
        let start = Instant::now();
        let delays: Vec<Duration> = (0..5)
            .map(
                |i| match state.restarting_at("test_unit_grow", start + Duration::from_secs(i)) {
                    RestartDecision::RestartAfter(delay) => delay,
                    RestartDecision::GiveUp => panic!("gave up at restart {i}"),
                },
            )
            .collect();
        // ±30 % jitter around 100, 200, 400, 800, 1600 ms.
        assert!(delays[0] <= Duration::from_millis(130), "{delays:?}");
        assert!(delays[2] > delays[0], "{delays:?}");
        assert!(delays[4] > delays[2], "{delays:?}");
        assert!(causes.lock().unwrap().is_empty());
        assert_eq!(state.recent_restarts(), 5);
    }

    #[test]
    fn one_restart_more_than_the_budget_gives_up_and_escalates_once() {
        let (escalation, causes) = recording();
        let mut state = RestartState::new(budget(2)).with_escalation(escalation);
        let now = Instant::now();
        assert!(matches!(
            state.restarting_at("test_unit_budget", now),
            RestartDecision::RestartAfter(_)
        ));
        assert!(matches!(
            state.restarting_at("test_unit_budget", now),
            RestartDecision::RestartAfter(_)
        ));
        assert_eq!(
            state.restarting_at("test_unit_budget", now),
            RestartDecision::GiveUp
        );
        assert_eq!(state.next_start(), StartPlan::Never);
        // Later restarts stay given up without escalating again.
        assert_eq!(
            state.restarting_at("test_unit_budget", now + Duration::from_secs(3600)),
            RestartDecision::GiveUp
        );
        assert_eq!(state.next_start(), StartPlan::Never);
        assert_eq!(
            *causes.lock().unwrap(),
            vec![EscalationCause::RestartBudgetExceeded {
                actor: "test_unit_budget",
                restarts: 3,
                window: Duration::from_secs(60),
            }]
        );
    }

    #[test]
    fn restarts_older_than_the_window_no_longer_count() {
        let (escalation, causes) = recording();
        let mut state = RestartState::new(budget(2)).with_escalation(escalation);
        let start = Instant::now();
        for minute in 0..10 {
            let now = start + Duration::from_secs(61 * minute);
            assert!(matches!(
                state.restarting_at("test_unit_window", now),
                RestartDecision::RestartAfter(_)
            ));
            assert!(matches!(
                state.restarting_at("test_unit_window", now),
                RestartDecision::RestartAfter(_)
            ));
        }
        assert!(causes.lock().unwrap().is_empty());
        assert_eq!(state.recent_restarts(), 2);
    }

    #[test]
    fn recovering_resets_the_backoff_but_not_the_budget() {
        let (escalation, causes) = recording();
        let mut state = RestartState::new(budget(3))
            .with_backoff(Duration::from_millis(100), Duration::from_secs(10))
            .with_escalation(escalation);
        let now = Instant::now();
        for _ in 0..3 {
            let RestartDecision::RestartAfter(delay) =
                state.restarting_at("test_unit_recover", now)
            else {
                panic!("gave up too early");
            };
            // Without the reset the third delay would be ~400 ms.
            assert!(delay <= Duration::from_millis(130), "{delay:?}");
            state.recovered();
        }
        assert_eq!(
            state.restarting_at("test_unit_recover", now),
            RestartDecision::GiveUp
        );
        assert_eq!(causes.lock().unwrap().len(), 1);
    }

    #[test]
    fn first_start_is_immediate_and_a_restart_waits_its_delay() {
        let mut state = RestartState::new(budget(3)).with_escalation(recording().0);
        assert_eq!(state.next_start(), StartPlan::Now);
        let RestartDecision::RestartAfter(delay) =
            state.restarting_at("test_unit_plan", Instant::now())
        else {
            panic!("gave up");
        };
        assert_eq!(state.next_start(), StartPlan::After(delay));
        // The decision is consumed: a later `started()` without a restart starts now.
        assert_eq!(state.next_start(), StartPlan::Now);
    }

    // ---- Under a real `actix::Supervisor` ----

    #[derive(Debug, Clone, PartialEq)]
    enum Seen {
        Worked,
        Decided(RestartDecision),
    }

    /// Stops itself `stops_left` times, each time from the work `started()` scheduled.
    struct Flaky {
        actor: &'static str,
        restart: RestartState,
        stops_left: u32,
        seen: mpsc::UnboundedSender<Seen>,
    }

    impl Actor for Flaky {
        type Context = Context<Self>;

        fn started(&mut self, ctx: &mut Context<Self>) {
            self.restart
                .schedule_start(ctx, |actor, ctx| actor.work(ctx));
        }
    }

    impl Flaky {
        fn work(&mut self, ctx: &mut Context<Self>) {
            let _ = self.seen.send(Seen::Worked);
            if self.stops_left > 0 {
                self.stops_left -= 1;
                ctx.stop();
            }
        }
    }

    impl Supervised for Flaky {
        fn restarting(&mut self, _ctx: &mut Context<Self>) {
            let decision = self.restart.restarting(self.actor);
            let _ = self.seen.send(Seen::Decided(decision));
        }
    }

    async fn next(seen: &mut mpsc::UnboundedReceiver<Seen>) -> Seen {
        actix_rt::time::timeout(Duration::from_secs(20), seen.recv())
            .await
            .expect("the actor went quiet")
            .expect("the actor is gone")
    }

    #[actix_rt::test]
    async fn a_supervised_actor_that_stops_is_restarted_with_growing_backoff_and_counted() {
        let actor = "test_supervised_flaky";
        let before = counter(names::ACTOR_RESTARTS, actor);
        let (escalation, causes) = recording();
        let (tx, mut seen) = mpsc::unbounded_channel();
        let restart = RestartState::new(budget(5))
            .with_backoff(Duration::from_millis(10), Duration::from_millis(500))
            .with_escalation(escalation);
        let _addr = Supervisor::start(move |_| Flaky {
            actor,
            restart,
            stops_left: 3,
            seen: tx,
        });

        let mut delays = Vec::new();
        assert_eq!(next(&mut seen).await, Seen::Worked);
        for _ in 0..3 {
            match next(&mut seen).await {
                Seen::Decided(RestartDecision::RestartAfter(delay)) => delays.push(delay),
                other => panic!("expected a restart, got {other:?}"),
            }
            assert_eq!(next(&mut seen).await, Seen::Worked);
        }
        // ±30 % jitter around 10, 20, 40 ms.
        assert!(delays[2] > delays[0], "{delays:?}");
        assert_eq!(counter(names::ACTOR_RESTARTS, actor) - before, 3.0);
        assert!(causes.lock().unwrap().is_empty());
        // Healthy now: nothing more happens.
        assert!(
            actix_rt::time::timeout(Duration::from_millis(100), seen.recv())
                .await
                .is_err()
        );
    }

    #[actix_rt::test]
    async fn a_supervised_actor_over_its_budget_escalates_and_does_no_more_work() {
        let actor = "test_supervised_budget";
        let (escalation, causes) = recording();
        let (tx, mut seen) = mpsc::unbounded_channel();
        let restart = RestartState::new(budget(2))
            .with_backoff(Duration::from_millis(1), Duration::from_millis(5))
            .with_escalation(escalation);
        let _addr = Supervisor::start(move |_| Flaky {
            actor,
            restart,
            stops_left: u32::MAX,
            seen: tx,
        });
        let mut events = Vec::new();
        while !matches!(events.last(), Some(Seen::Decided(RestartDecision::GiveUp))) {
            events.push(next(&mut seen).await);
        }
        assert_eq!(
            events.iter().filter(|e| **e == Seen::Worked).count(),
            3,
            "{events:?}"
        );
        assert_eq!(
            *causes.lock().unwrap(),
            vec![EscalationCause::RestartBudgetExceeded {
                actor,
                restarts: 3,
                window: Duration::from_secs(60),
            }]
        );
        assert!(
            actix_rt::time::timeout(Duration::from_millis(100), seen.recv())
                .await
                .is_err(),
            "a given-up actor must not work again"
        );
    }

    /// Runs `body` in a fresh System on its own thread and returns the System's exit code,
    /// so the default escalation (stop the System) can be observed without stopping the
    /// test's own runtime. What `body` returns (an `Addr`) lives until the System ends: a
    /// Supervisor restarts an actor only while an address to it exists. A watchdog exits
    /// with 99 if nothing stops the System.
    fn exit_code_of<K: 'static>(body: impl FnOnce() -> K + Send + 'static) -> i32 {
        std::thread::spawn(move || {
            let system = System::new();
            let keep = system.block_on(async move {
                actix_rt::spawn(async {
                    actix_rt::time::sleep(Duration::from_secs(20)).await;
                    System::current().stop_with_code(99);
                });
                body()
            });
            let code = system.run_with_code().unwrap();
            drop(keep);
            code
        })
        .join()
        .unwrap()
    }

    #[test]
    fn exceeding_the_budget_stops_the_system_with_a_non_zero_code() {
        let code = exit_code_of(|| {
            let (tx, _seen) = mpsc::unbounded_channel();
            let restart = RestartState::new(budget(2))
                .with_backoff(Duration::from_millis(1), Duration::from_millis(5));
            Supervisor::start(move |_| Flaky {
                actor: "test_system_budget",
                restart,
                stops_left: u32::MAX,
                seen: tx,
            })
        });
        assert_eq!(code, ESCALATION_EXIT_CODE);
    }

    // ---- Panics ----

    #[derive(Message)]
    #[rtype(result = "()")]
    struct Boom;

    #[derive(Message)]
    #[rtype(result = "u32")]
    struct Ping;

    struct Fragile {
        _guard: PanicGuard,
    }

    impl Actor for Fragile {
        type Context = Context<Self>;
    }

    impl Handler<Boom> for Fragile {
        type Result = ();
        fn handle(&mut self, _: Boom, _: &mut Context<Self>) {
            panic!("injected panic");
        }
    }

    impl Handler<Ping> for Fragile {
        type Result = u32;
        fn handle(&mut self, _: Ping, _: &mut Context<Self>) -> u32 {
            7
        }
    }

    #[actix_rt::test]
    async fn an_essential_actor_dying_from_a_panic_is_counted_and_escalates() {
        let actor = "test_essential_panic";
        let before = counter(names::ACTOR_PANICS, actor);
        let (escalation, causes) = recording();
        let addr = Fragile {
            _guard: PanicGuard::essential(actor).with_escalation(escalation),
        }
        .start();
        assert_eq!(addr.send(Ping).await.unwrap(), 7);
        assert!(causes.lock().unwrap().is_empty(), "no panic yet");

        assert!(addr.send(Boom).await.is_err());
        assert!(addr.send(Ping).await.is_err(), "the actor is gone");
        assert_eq!(
            *causes.lock().unwrap(),
            vec![EscalationCause::EssentialActorPanicked { actor }]
        );
        assert_eq!(counter(names::ACTOR_PANICS, actor) - before, 1.0);
    }

    #[actix_rt::test]
    async fn a_counted_actor_dying_from_a_panic_is_counted_without_escalating() {
        let actor = "test_counted_panic";
        let before = counter(names::ACTOR_PANICS, actor);
        let (escalation, causes) = recording();
        let addr = Fragile {
            _guard: PanicGuard::counted(actor).with_escalation(escalation),
        }
        .start();
        assert!(addr.send(Boom).await.is_err());
        assert!(causes.lock().unwrap().is_empty());
        assert_eq!(counter(names::ACTOR_PANICS, actor) - before, 1.0);
    }

    #[actix_rt::test]
    async fn an_actor_stopping_normally_is_not_a_panic() {
        let actor = "test_clean_stop";
        let before = counter(names::ACTOR_PANICS, actor);
        let (escalation, causes) = recording();
        let addr = Fragile {
            _guard: PanicGuard::essential(actor).with_escalation(escalation),
        }
        .start();
        assert_eq!(addr.send(Ping).await.unwrap(), 7);
        // The actor stops once its last address is gone, dropping its guard and with it
        // the escalation's clone of `causes`.
        drop(addr);
        let dropped = async {
            while Arc::strong_count(&causes) > 1 {
                actix_rt::time::sleep(Duration::from_millis(5)).await;
            }
        };
        actix_rt::time::timeout(Duration::from_secs(20), dropped)
            .await
            .expect("the actor never stopped");
        assert!(causes.lock().unwrap().is_empty());
        assert_eq!(counter(names::ACTOR_PANICS, actor) - before, 0.0);
    }

    #[test]
    fn an_essential_actor_panicking_stops_the_system_with_a_non_zero_code() {
        let code = exit_code_of(|| {
            let addr = Fragile {
                _guard: PanicGuard::essential("test_system_panic"),
            }
            .start();
            addr.do_send(Boom);
            addr
        });
        assert_eq!(code, ESCALATION_EXIT_CODE);
    }

    #[test]
    fn the_panic_hook_counts_every_panic() {
        Telemetry::install().unwrap();
        install_panic_hook();
        install_panic_hook(); // idempotent: one count per panic, not two
        let total = || {
            let text = Telemetry::install().unwrap().render();
            sample::value(&text, names::PANICS, &[]).unwrap_or(0.0)
        };
        let before = total();
        let result = std::thread::Builder::new()
            .name("test-panicking-thread".to_owned())
            .spawn(|| panic!("counted by the hook"))
            .unwrap()
            .join();
        assert!(result.is_err());
        // Other tests in this binary panic on purpose too, concurrently: at least ours.
        assert!(total() >= before + 1.0);
    }
}
