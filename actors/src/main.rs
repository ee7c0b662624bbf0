//! The `convoy` binary: parses the command line and hands each command to the code that
//! owns it. `anyhow` lives only here; the library crates return typed errors.
//!
//! Exit codes: 0 success, 1 a failure at run time (restart budget exceeded, an essential
//! actor died, shutdown deadline passed), 2 invalid configuration or usage, 3 `run` could
//! not start, 4 Genesys refused the OAuth client, 5 no token for
//! `genesys.login_unreachable_exit_after` (see `convoy_actors::supervision`). A closed stdout (`convoy inspect … | head -1`) ends a command quietly with
//! 0, as Unix tools do; any other failed write is an error (1).

mod inspect_cmd;

use std::io::Write;
use std::path::PathBuf;
use std::process::ExitCode;

use anyhow::Context;
use clap::{Args, CommandFactory, Parser, Subcommand, ValueEnum};
use convoy::config::{Config, ConfigErrors};
use convoy_actors::app::RunOptions;
use convoy_actors::config_load::{self, Entry, FlagOverride, Layers, LoadError};
use convoy_actors::logging;
use serde_json::Value;

/// mimalloc instead of glibc's allocator, as Vector ships jemalloc: per frame the live path
/// makes and drops a few dozen small allocations (snapshot parts, records, payload text),
/// and glibc's `malloc`/`free` were ~7 % of `convoy bench core`'s instructions; with
/// mimalloc the pipeline runs ~8 % faster, the memory per live conversation stays under
/// 4 KiB and the restart bench's outbox drain takes as long as with glibc (README,
/// Benchmarks).
#[cfg(unix)]
#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

/// A configuration that does not load (same code as clap's usage errors).
const EXIT_CONFIG: u8 = 2;
/// `run` could not start (admin address taken, metrics recorder unavailable, …).
const EXIT_BOOT: u8 = 3;

/// `convoy --version`: the crate version, the commit and the build profile (stamped by
/// `build.rs`), so a bug report names exactly what ran.
const VERSION: &str = concat!(
    env!("CARGO_PKG_VERSION"),
    " (commit ",
    env!("VERSION_GIT_COMMIT"),
    ", ",
    env!("VERSION_BUILD_PROFILE"),
    " build)"
);

#[derive(Debug, Parser)]
#[command(
    name = "convoy",
    version = VERSION,
    about = "Follows Genesys Cloud conversations in real time and keeps a CRM and QA snapshots correct.",
    long_about = "Follows Genesys Cloud conversations in real time and keeps a CRM and QA \
                  snapshots correct.\n\nConfiguration layers, lowest first: built-in defaults, \
                  the file from --config (or CONVOY_CONFIG), CONVOY_* environment variables \
                  (nested keys joined by \"__\", e.g. CONVOY_GENESYS__REGION=mypurecloud.ie), \
                  then command-line flags. `convoy config show` prints the result and the \
                  source of every value."
)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// Run the daemon: load and check the configuration, then follow the configured queues
    /// and users.
    Run(RunArgs),
    /// Print or check the effective configuration.
    #[command(subcommand)]
    Config(ConfigCommand),
    /// Inspect the durable CRM outbox at outbox.path and put dead letters back. Works while
    /// the daemon runs (through its admin API at admin.listen) or not (on the file).
    #[command(subcommand)]
    Outbox(OutboxCommand),
    /// Take a QA analytics snapshot of [--from, --to): Genesys' conversation details and
    /// aggregates joined with Convoy's SLA outcomes, into DIR/<from>_<to>/ (canonical
    /// JSON, one CSV per table, manifest.json). Works while the daemon runs or not.
    Snapshot(SnapshotCliArgs),
    /// Print what Convoy understands of captured notification frames (JSON, one document
    /// per file or one frame per line).
    Inspect {
        /// The file of frames, or `-` for standard input.
        #[arg(value_name = "FILE|-")]
        path: String,
    },
    /// Replay a recording (`convoy run --record FILE`) offline through the same actors, on
    /// virtual time, with no network; write the CRM records, summaries, SLA outcomes,
    /// final conversation states and attribute writes to --out DIR (same input, same
    /// bytes out).
    Replay(ReplayArgs),
    /// Run the whole pipeline offline: an in-process emulator, the daemon against it,
    /// simulated conversations, then a check that Convoy's state equals the emulator's
    /// ground truth (exit 1 if not).
    #[command(after_help = demo_changes())]
    Demo(DemoArgs),
    /// Run the Genesys Cloud emulator: OAuth, Notifications (channels, subscriptions,
    /// WebSocket), conversations, routing with synthetic agents, analytics, fault injection.
    Emulate(convoy_actors::emulator::cli::EmulateArgs),
    /// Run the CRM test server Convoy syncs to (batches, idempotency, ETags, faults).
    CrmSink(convoy_actors::crm_sink::cli::CrmSinkArgs),
    /// Drive simulated conversations through the emulator (or an open-messaging
    /// integration of a real org) and report the expected outcomes.
    Simulate(convoy_actors::simulator::cli::SimulateArgs),
    /// Measure the live path: `memory` (resident bytes per live conversation) or `burst`
    /// (the 1 000-conversation burst at Genesys' real request budget). Exit 1 when a run
    /// does not converge.
    #[command(subcommand)]
    Bench(convoy_actors::bench::BenchCommand),
    /// Print a shell completion script, e.g. `convoy completions bash >
    /// ~/.local/share/bash-completion/completions/convoy`.
    Completions {
        /// The shell to complete for.
        #[arg(value_enum)]
        shell: CompletionShell,
    },
}

#[derive(Debug, Clone, Copy, ValueEnum)]
enum CompletionShell {
    Bash,
    Zsh,
    Fish,
}

/// `demo --help`'s list of what the demo runs differently from the defaults.
fn demo_changes() -> String {
    let mut text = String::from(
        "Convoy runs with config/default.toml and the emulator with `convoy emulate`'s \
         defaults (30 s heartbeats), except:\n",
    );
    for change in convoy_actors::demo::CHANGES {
        text.push_str("  - ");
        text.push_str(change);
        text.push('\n');
    }
    text
}

#[derive(Debug, Args)]
struct ConfigFileArg {
    /// Configuration file (TOML) layered over the built-in defaults.
    #[arg(
        long = "config",
        short = 'c',
        env = "CONVOY_CONFIG",
        value_name = "FILE"
    )]
    config: Option<PathBuf>,
}

#[derive(Debug, Args)]
struct RunArgs {
    #[command(flatten)]
    file: ConfigFileArg,
    /// Log format (overrides log.format).
    #[arg(long, value_enum, value_name = "FORMAT")]
    log_format: Option<LogFormatArg>,
    /// Address of the /metrics, /healthz and /readyz endpoints (overrides admin.listen).
    #[arg(long, value_name = "ADDR")]
    admin_listen: Option<String>,
    /// Append every received notification frame to FILE as JSON lines
    /// (`{"receivedAt", "frame"}`), for `convoy inspect` or a later replay.
    #[arg(long, value_name = "FILE")]
    record: Option<PathBuf>,
}

#[derive(Debug, Args)]
struct ReplayArgs {
    /// The recording (`convoy run --record FILE`).
    #[arg(value_name = "FILE")]
    recording: PathBuf,
    /// Where the output files go (created if missing; files of an earlier replay are
    /// replaced).
    #[arg(long, value_name = "DIR")]
    out: PathBuf,
    /// `max` (no pause), `realtime` (the recorded gaps) or a factor N (the gaps divided by
    /// N); the output is the same at every speed.
    #[arg(long, default_value = "max", value_name = "max|realtime|N")]
    speed: convoy_actors::replay::Speed,
    #[command(flatten)]
    file: ConfigFileArg,
}

#[derive(Debug, Args)]
struct DemoArgs {
    /// Conversations to simulate.
    #[arg(long, default_value_t = convoy_actors::demo::DEFAULT_CONVERSATIONS)]
    conversations: usize,
    /// Seed of the emulator and the simulator (same seed, same run).
    #[arg(long, default_value_t = 7)]
    seed: u64,
    /// Scenario file (TOML, see the README); default: every shape, fast.
    #[arg(long, value_name = "FILE")]
    scenario: Option<PathBuf>,
}

#[derive(Debug, Subcommand)]
enum ConfigCommand {
    /// Print the effective configuration, secrets redacted, with the source of each value.
    Show {
        #[command(flatten)]
        file: ConfigFileArg,
        /// Output format.
        #[arg(long, value_enum, default_value_t = ShowFormat::Toml)]
        format: ShowFormat,
    },
    /// Check the configuration: print "configuration OK" and the derived topics, or every
    /// problem (exit code 2).
    Check {
        #[command(flatten)]
        file: ConfigFileArg,
    },
}

#[derive(Debug, clap::Args)]
struct SnapshotCliArgs {
    /// Start of the interval (RFC 3339, e.g. 2025-03-04T00:00:00Z), included.
    #[arg(long, value_name = "RFC3339")]
    from: String,
    /// End of the interval (RFC 3339), excluded.
    #[arg(long, value_name = "RFC3339")]
    to: String,
    #[command(flatten)]
    file: ConfigFileArg,
    /// Folder the snapshot's own folder is written in [default: analytics.output_dir].
    #[arg(long, value_name = "DIR")]
    out: Option<PathBuf>,
    /// Files to write besides manifest.json: any of json, csv, html.
    #[arg(long, value_name = "LIST", default_value = "json,csv,html")]
    format: String,
}

#[derive(Debug, Subcommand)]
enum OutboxCommand {
    /// Pending records, the oldest one's age, dead letters, pending summaries, open SLA
    /// books.
    Status {
        #[command(flatten)]
        file: ConfigFileArg,
        #[arg(long, value_enum, default_value_t = OutboxFormat::Text)]
        format: OutboxFormat,
    },
    /// Every dead-lettered record with its reason and the context of its last attempt.
    Dead {
        #[command(flatten)]
        file: ConfigFileArg,
        #[arg(long, value_enum, default_value_t = OutboxFormat::Text)]
        format: OutboxFormat,
    },
    /// Move dead letters back to the end of the outbox, to be sent again. Exit 1 when a
    /// given id is not a dead letter.
    #[command(group(clap::ArgGroup::new("which").required(true).args(["ids", "all"])))]
    RetryDead {
        #[command(flatten)]
        file: ConfigFileArg,
        /// A record id to retry (repeat for several).
        #[arg(long = "id", value_name = "ID", num_args = 1..)]
        ids: Vec<String>,
        /// Retry every dead letter.
        #[arg(long)]
        all: bool,
    },
}

type OutboxFormat = convoy_actors::outbox_cmd::Format;

#[derive(Debug, Clone, Copy, ValueEnum)]
enum LogFormatArg {
    Text,
    Json,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
enum ShowFormat {
    Toml,
    Json,
}

fn main() -> ExitCode {
    // Exactly one TLS backend is compiled in; awc needs it installed before any client.
    // Err means one is installed already, which is what we want.
    let _ = rustls::crypto::ring::default_provider().install_default();

    let cli = Cli::parse();
    let outcome = match cli.command {
        Command::Run(args) => run(args),
        Command::Config(ConfigCommand::Show { file, format }) => show_config(file, format),
        Command::Config(ConfigCommand::Check { file }) => check_config(file),
        Command::Outbox(command) => outbox(command),
        Command::Inspect { path } => {
            inspect_cmd::run(&path).context("cannot write to standard output")
        }
        Command::Replay(args) => replay(args),
        Command::Demo(args) => demo(args),
        Command::Emulate(args) => serve(convoy_actors::emulator::cli::run(args)),
        Command::CrmSink(args) => match args.check() {
            Ok(()) => serve(convoy_actors::crm_sink::cli::run(args)),
            Err(problem) => usage_error("crm-sink", &problem),
        },
        Command::Simulate(args) => Ok(convoy_actors::simulator::cli::main(args)),
        Command::Bench(command) => Ok(convoy_actors::bench::main(command)),
        Command::Completions { shell } => completions(shell),
        Command::Snapshot(args) => snapshot(args),
    };
    match outcome {
        Ok(code) => code,
        Err(error) if is_broken_pipe(&error) => ExitCode::SUCCESS,
        Err(error) => {
            eprintln!("convoy: {}", render_chain(&error));
            ExitCode::FAILURE
        }
    }
}

/// Reports a command-line problem clap could not see, the way clap reports its own
/// (usage, exit code 2).
fn usage_error(subcommand: &str, problem: &str) -> ! {
    let mut cli = Cli::command();
    let mut command = cli
        .find_subcommand_mut(subcommand)
        .map(|command| command.clone().bin_name(format!("convoy {subcommand}")))
        .unwrap_or(cli);
    command
        .error(clap::error::ErrorKind::ValueValidation, problem)
        .exit()
}

/// Whether the error is a write to a closed pipe (the reader went away: `| head`).
fn is_broken_pipe(error: &anyhow::Error) -> bool {
    error.chain().any(|cause| {
        cause
            .downcast_ref::<std::io::Error>()
            .is_some_and(|io| io.kind() == std::io::ErrorKind::BrokenPipe)
    })
}

/// The error and its causes joined by ": ", leaving out a cause whose text the message
/// before it already contains (many errors print their source too; saying it twice helps
/// nobody).
fn render_chain(error: &anyhow::Error) -> String {
    let mut rendered = String::new();
    let mut previous = String::new();
    for cause in error.chain() {
        let text = cause.to_string();
        if !previous.is_empty() && previous.contains(&text) {
            continue;
        }
        if !rendered.is_empty() {
            rendered.push_str(": ");
        }
        rendered.push_str(&text);
        previous = text;
    }
    rendered
}

/// Writes a shell completion script for `convoy` to stdout.
fn completions(shell: CompletionShell) -> anyhow::Result<ExitCode> {
    let shell = match shell {
        CompletionShell::Bash => clap_complete::Shell::Bash,
        CompletionShell::Zsh => clap_complete::Shell::Zsh,
        CompletionShell::Fish => clap_complete::Shell::Fish,
    };
    // clap_complete writes in small pieces and cannot report a failed write, so render
    // into memory first and write once, where a closed pipe is seen.
    let mut script = Vec::new();
    clap_complete::generate(shell, &mut Cli::command(), "convoy", &mut script);
    write_stdout(&script)?;
    Ok(ExitCode::SUCCESS)
}

/// Writes `bytes` to stdout and flushes; errors (a closed pipe, a full disk) are returned
/// rather than panicking as `println!` would.
fn write_stdout(bytes: &[u8]) -> anyhow::Result<()> {
    let mut stdout = std::io::stdout().lock();
    stdout
        .write_all(bytes)
        .and_then(|()| stdout.flush())
        .context("cannot write to standard output")
}

/// Runs an async command on an actix System (awc and actix-web need its local set) and
/// maps success to exit code 0.
fn serve(
    command: impl std::future::Future<Output = anyhow::Result<()>>,
) -> anyhow::Result<ExitCode> {
    actix_rt::System::new().block_on(command)?;
    Ok(ExitCode::SUCCESS)
}

fn replay(args: ReplayArgs) -> anyhow::Result<ExitCode> {
    let merged = match config_load::merge(&layers(args.file)) {
        Ok(merged) => merged,
        Err(error) => return Ok(report_load_error(&error)),
    };
    let config = match merged.validate_for_replay() {
        Ok(config) => config,
        Err(errors) => return Ok(report_problems(&errors)),
    };
    logging::init(&convoy::config::LogConfig {
        format: convoy::config::LogFormat::Text,
        filter: "warn".to_owned(),
    })
    .context("cannot start logging")?;
    let options = convoy_actors::replay::ReplayOptions {
        recording: args.recording,
        out: args.out,
        speed: args.speed,
    };
    let summary = actix_rt::System::new()
        .block_on(async { convoy_actors::replay::run(&config, &options).await })?;
    write_stdout(
        format!(
            "Replayed {} lines ({} frames, {} REST answers) into {}: {} conversations, {} CRM records ({} SLA outcomes), {} summaries, {} attribute writes.\n",
            summary.lines,
            summary.frames,
            summary.rest_answers,
            options.out.display(),
            summary.conversations,
            summary.records,
            summary.sla_outcomes,
            summary.summaries,
            summary.writes,
        )
        .as_bytes(),
    )?;
    Ok(ExitCode::SUCCESS)
}

fn demo(args: DemoArgs) -> anyhow::Result<ExitCode> {
    logging::init(&convoy::config::LogConfig {
        format: convoy::config::LogFormat::Text,
        filter: "warn".to_owned(),
    })
    .context("cannot start logging")?;
    let options = convoy_actors::demo::DemoOptions {
        scenario: args.scenario,
        progress: std::io::IsTerminal::is_terminal(&std::io::stderr()),
        ..convoy_actors::demo::DemoOptions::new(args.conversations, args.seed)
    };
    write_stdout(
        format!(
            "Starting the emulator and Convoy (defaults but for `convoy demo --help`'s list), \
             then simulating {} conversations…\n",
            options.conversations
        )
        .as_bytes(),
    )?;
    let report = match actix_rt::System::new().block_on(convoy_actors::demo::run(options)) {
        Ok(report) => report,
        Err(error) => {
            eprintln!("convoy: the demo could not run: {error}");
            return Ok(if error.is_usage() {
                ExitCode::from(EXIT_CONFIG)
            } else {
                ExitCode::FAILURE
            });
        }
    };
    let mut out = format!(
        "Convoy's admin server was at http://{} (stopped now).\n",
        report.admin
    );
    for line in &report.metrics {
        out.push_str(&format!("  {line}\n"));
    }
    out.push_str(&report.table());
    if let Some(snapshot) = &report.snapshot {
        out.push_str(&format!(
            "QA snapshot of the demo: {}\nQA report: {}\n",
            snapshot.folder.display(),
            snapshot.folder.join("report.html").display()
        ));
    }
    let code = if report.converged() {
        out.push_str(&format!(
            "OK: all {} conversations Convoy tracked equal the emulator's ground truth, every participant carries Convoy's convoy.participant_state attribute, and the CRM holds the expected SLA outcomes and summaries.\n",
            report.conversations
        ));
        ExitCode::SUCCESS
    } else {
        let problems = report.problems();
        out.push_str(&format!(
            "MISMATCH ({} differences; waited until {} s passed without progress):\n",
            problems.len(),
            convoy_actors::demo::SETTLE_WITHOUT_PROGRESS.as_secs()
        ));
        for line in problems.iter().take(20) {
            out.push_str(&format!("  {line}\n"));
        }
        ExitCode::FAILURE
    };
    write_stdout(out.as_bytes())?;
    Ok(code)
}

fn run(args: RunArgs) -> anyhow::Result<ExitCode> {
    let mut layers = layers(args.file);
    if let Some(format) = args.log_format {
        let value = match format {
            LogFormatArg::Text => "text",
            LogFormatArg::Json => "json",
        };
        layers.flags.push(FlagOverride {
            key: "log.format",
            flag: "--log-format",
            value: value.to_owned(),
        });
    }
    if let Some(address) = args.admin_listen {
        layers.flags.push(FlagOverride {
            key: "admin.listen",
            flag: "--admin-listen",
            value: address,
        });
    }
    let merged = match config_load::merge(&layers) {
        Ok(merged) => merged,
        Err(error) => return Ok(report_load_error(&error)),
    };
    let config = match merged.validate() {
        Ok(config) => config,
        Err(errors) => return Ok(report_problems(&errors)),
    };
    logging::init(&config.log).context("cannot start logging")?;
    for warning in merged.warnings(&config) {
        tracing::warn!("{warning}");
    }
    // A taken admin address fails the start with exit code 3 before anything talks to
    // Genesys: the daemon binds it first (`app::Daemon::start`).
    run_daemon(config, args.record)
}

/// The daemon: an actix System running `app::run_until_signal`. The System's exit code
/// is the process's: 0 after a clean SIGTERM/SIGINT/SIGHUP shutdown, non-zero when a restart
/// budget is exceeded or an essential actor panics (they stop the System with a code).
fn run_daemon(config: Config, record: Option<PathBuf>) -> anyhow::Result<ExitCode> {
    let endpoints = &config.genesys.endpoints;
    tracing::info!(
        region = endpoints.region.map(|region| region.domain()),
        api_base = %endpoints.api_base,
        login_base = %endpoints.login_base,
        client_id = %config.genesys.client_id,
        "Configuration loaded."
    );
    let system = actix_rt::System::new();
    system.runtime().spawn(async move {
        let code = match convoy_actors::app::run_until_signal(
            config,
            RunOptions {
                record,
                ..RunOptions::default()
            },
        )
        .await
        {
            Ok(code) => code,
            Err(error) => {
                tracing::error!(%error, "Convoy could not start.");
                eprintln!("convoy: {error}");
                EXIT_BOOT.into()
            }
        };
        actix_rt::System::current().stop_with_code(code);
    });
    let code = system.run_with_code().context("the actor system failed")?;
    Ok(ExitCode::from(u8::try_from(code).unwrap_or(1)))
}

/// `convoy outbox …`: loads the configuration like `run` (same file, same layers), then
/// hands over to `convoy_actors::outbox_cmd`. Exit 0, 1 when a retry named an id that was
/// not a dead letter or the store could not be read, 2 for a configuration problem.
fn outbox(command: OutboxCommand) -> anyhow::Result<ExitCode> {
    use convoy_actors::outbox_cmd::{self, Selection};
    let file = match &command {
        OutboxCommand::Status { file, .. }
        | OutboxCommand::Dead { file, .. }
        | OutboxCommand::RetryDead { file, .. } => ConfigFileArg {
            config: file.config.clone(),
        },
    };
    let merged = match config_load::merge(&layers(file)) {
        Ok(merged) => merged,
        Err(error) => return Ok(report_load_error(&error)),
    };
    let config = match merged.validate() {
        Ok(config) => config,
        Err(errors) => return Ok(report_problems(&errors)),
    };
    let now = chrono::Utc::now();
    let report = actix_rt::System::new().block_on(async {
        match command {
            OutboxCommand::Status { format, .. } => outbox_cmd::status(&config, format, now).await,
            OutboxCommand::Dead { format, .. } => outbox_cmd::dead(&config, format).await,
            OutboxCommand::RetryDead { ids, all, .. } => {
                let selection = if all {
                    Selection::All
                } else {
                    Selection::Ids(ids)
                };
                outbox_cmd::retry(&config, &selection, now).await
            }
        }
    })?;
    write_stdout(report.text.as_bytes())?;
    Ok(if report.complete {
        ExitCode::SUCCESS
    } else {
        ExitCode::FAILURE
    })
}

/// `convoy snapshot`: loads the configuration like `run`, then hands over to
/// `convoy_actors::analytics::cli`. Exit 0, 1 when the snapshot could not be taken, 2 for
/// a configuration problem or a bad `--from`, `--to` or `--format`.
fn snapshot(args: SnapshotCliArgs) -> anyhow::Result<ExitCode> {
    use convoy_actors::analytics::cli::{run_snapshot, SnapshotArgs};
    let merged = match config_load::merge(&layers(args.file)) {
        Ok(merged) => merged,
        Err(error) => return Ok(report_load_error(&error)),
    };
    let config = match merged.validate() {
        Ok(config) => config,
        Err(errors) => return Ok(report_problems(&errors)),
    };
    logging::init(&config.log)?;
    let request = SnapshotArgs {
        from: args.from,
        to: args.to,
        out: args.out,
        format: args.format,
        progress: true,
    };
    let report = actix_rt::System::new().block_on(async { run_snapshot(&config, &request).await });
    match report {
        Ok(report) => {
            write_stdout(report.text().as_bytes())?;
            Ok(ExitCode::SUCCESS)
        }
        Err(error) => {
            eprintln!("convoy snapshot: {error}");
            Ok(if error.is_usage() {
                ExitCode::from(2)
            } else {
                ExitCode::FAILURE
            })
        }
    }
}

fn show_config(file: ConfigFileArg, format: ShowFormat) -> anyhow::Result<ExitCode> {
    let merged = match config_load::merge(&layers(file)) {
        Ok(merged) => merged,
        Err(error) => return Ok(report_load_error(&error)),
    };
    // Show the configuration even when it does not validate: that is when it helps most.
    let validated = merged.validate();
    let entries = merged.entries(validated.as_ref().ok());
    let text = match format {
        ShowFormat::Json => render_json(&entries)?,
        ShowFormat::Toml => render_toml(&entries),
    };
    write_stdout(text.as_bytes())?;
    Ok(match validated {
        Ok(_) => ExitCode::SUCCESS,
        Err(errors) => report_problems(&errors),
    })
}

fn check_config(file: ConfigFileArg) -> anyhow::Result<ExitCode> {
    let merged = match config_load::merge(&layers(file)) {
        Ok(merged) => merged,
        Err(error) => return Ok(report_load_error(&error)),
    };
    let config = match merged.validate() {
        Ok(config) => config,
        Err(errors) => return Ok(report_problems(&errors)),
    };
    for warning in merged.warnings(&config) {
        eprintln!("convoy: warning: {warning}");
    }
    let endpoints = &config.genesys.endpoints;
    let mut out = format!(
        "configuration OK\napi base:   {}\nlogin base: {}\ntopics:\n",
        endpoints.api_base, endpoints.login_base
    );
    for topic in config.topics() {
        out.push_str(&format!("  {topic}\n"));
    }
    out.push_str(&match &config.cluster {
        None => "cluster:    off (one process, no NATS)\n".to_owned(),
        Some(cluster) => format!(
            "cluster:    {} via {}, {} partitions, stream {}\n",
            cluster.role.as_str(),
            cluster.nats_url,
            cluster.partitions,
            cluster.stream
        ),
    });
    write_stdout(out.as_bytes())?;
    Ok(ExitCode::SUCCESS)
}

fn layers(file: ConfigFileArg) -> Layers {
    Layers {
        file: file.config,
        ..Layers::default()
    }
}

fn report_load_error(error: &LoadError) -> ExitCode {
    match error {
        LoadError::Invalid(errors) => report_problems(errors),
        other => {
            eprintln!("convoy: {other}");
            ExitCode::from(EXIT_CONFIG)
        }
    }
}

fn report_problems(errors: &ConfigErrors) -> ExitCode {
    eprintln!("convoy: invalid configuration, {errors}");
    ExitCode::from(EXIT_CONFIG)
}

/// `{ "key": { "value": ..., "source": ... } }`, keys in file order.
fn render_json(entries: &[Entry]) -> anyhow::Result<String> {
    let mut object = serde_json::Map::new();
    for entry in entries {
        object.insert(
            entry.key.clone(),
            serde_json::json!({ "value": entry.value, "source": entry.source }),
        );
    }
    let mut text = serde_json::to_string_pretty(&Value::Object(object))?;
    text.push('\n');
    Ok(text)
}

/// TOML grouped by section, each line ending in `# from <source>`.
fn render_toml(entries: &[Entry]) -> String {
    let mut out = String::new();
    let mut current_section: Option<&str> = None;
    // Top-level leaves (only unknown keys can be there) must precede every table, and a
    // table's leaves must stay together: `sla.read` sorts after `sla.queues.<id>.answer`,
    // but belongs under the one `[sla]` header (a stable sort keeps the order within).
    let (top, mut nested): (Vec<&Entry>, Vec<&Entry>) =
        entries.iter().partition(|entry| !entry.key.contains('.'));
    nested.sort_by(|a, b| table_of(&a.key).cmp(table_of(&b.key)));
    for entry in top.into_iter().chain(nested) {
        let (section, name) = match entry.key.rsplit_once('.') {
            Some((section, name)) => (Some(section), name),
            None => (None, entry.key.as_str()),
        };
        if section != current_section {
            if let Some(section) = section {
                if !out.is_empty() {
                    out.push('\n');
                }
                out.push_str(&format!("[{}]\n", toml_key_path(section)));
            }
            current_section = section;
        }
        out.push_str(&format!(
            "{} = {}",
            toml_key(name),
            toml_value(&entry.value)
        ));
        match &entry.source {
            Some(source) if source.starts_with("derived") => {
                out.push_str(&format!("  # {source}"));
            }
            Some(source) => out.push_str(&format!("  # from {source}")),
            None => {}
        }
        out.push('\n');
    }
    out
}

/// The table a dotted key's leaf is written under.
fn table_of(key: &str) -> &str {
    key.rsplit_once('.').map_or("", |(table, _)| table)
}

fn toml_key_path(path: &str) -> String {
    path.split('.').map(toml_key).collect::<Vec<_>>().join(".")
}

fn toml_key(key: &str) -> String {
    let bare = !key.is_empty()
        && key
            .bytes()
            .all(|byte| byte.is_ascii_alphanumeric() || byte == b'_' || byte == b'-');
    if bare {
        key.to_owned()
    } else {
        Value::String(key.to_owned()).to_string()
    }
}

/// A JSON value as TOML: JSON's string escapes, numbers and booleans are valid TOML, so
/// only tables (inline) and null (absent in TOML; never produced by the layers) differ.
fn toml_value(value: &Value) -> String {
    match value {
        Value::Null => "\"\"".to_owned(),
        Value::Bool(_) | Value::Number(_) | Value::String(_) => value.to_string(),
        Value::Array(items) => {
            let items: Vec<String> = items.iter().map(toml_value).collect();
            format!("[{}]", items.join(", "))
        }
        Value::Object(table) => {
            let items: Vec<String> = table
                .iter()
                .map(|(key, value)| format!("{} = {}", toml_key(key), toml_value(value)))
                .collect();
            if items.is_empty() {
                "{}".to_owned()
            } else {
                format!("{{ {} }}", items.join(", "))
            }
        }
    }
}
