//! Command-line flags as clap parses them; they never leave the CLI layer
//! (`config` resolves them into a [`crate::config::Config`]).

use std::path::PathBuf;

use clap::{Parser, Subcommand, ValueEnum};

/// Policy-as-code for Azure IoT Hub twins.
#[derive(Debug, Parser)]
#[command(name = "twinops", version, about, long_about = None)]
pub struct Cli {
    /// Project file (default: `twinops.toml` in this directory or above).
    #[arg(long, global = true, value_name = "FILE")]
    pub config: Option<PathBuf>,
    /// How diagnostics are written to stderr.
    #[arg(long, global = true, value_enum, default_value_t = ErrorFormat::Human)]
    pub error_format: ErrorFormat,
    /// When to colour output (`NO_COLOR` always wins).
    #[arg(long, global = true, value_enum, default_value_t = ColorChoice::Auto)]
    pub color: ColorChoice,
    /// The environment (hub) to work on, from `twinops.toml`.
    #[arg(long, global = true, value_name = "NAME", default_value = "local")]
    pub env: String,
    /// Read policies, schemas and `twinops.toml` as they are at this git
    /// revision (from git objects; the work tree is not used).
    #[arg(long, global = true, value_name = "REV")]
    pub rev: Option<String>,
    /// More log lines on stderr: `-v` info, `-vv` debug, `-vvv` trace
    /// (`TWINOPS_LOG` takes a full filter, such as `twinops=debug`).
    #[arg(short, long, global = true, action = clap::ArgAction::Count)]
    pub verbose: u8,
    /// What to do.
    #[command(subcommand)]
    pub command: Command,
}

/// The subcommands.
#[derive(Debug, Subcommand)]
pub enum Command {
    /// Check policies and schemas; with a fleet, also every per-device conflict and merged value.
    Validate {
        /// Fleet snapshot (NDJSON) to check per-device results against (default: `[fleet] snapshot` of twinops.toml).
        #[arg(long, value_name = "FILE", conflicts_with = "no_fleet")]
        fleet: Option<PathBuf>,
        /// Check policies and schemas alone, without a fleet.
        #[arg(long)]
        no_fleet: bool,
        /// Output format of the result on stdout.
        #[arg(long, value_enum, default_value_t = ValidateFormat::Human)]
        format: ValidateFormat,
    },
    /// Show the desired state of each targeted twin, with provenance per leaf.
    Compile {
        /// Fleet snapshot (NDJSON) to compile for (default: `[fleet] snapshot` of twinops.toml).
        #[arg(long, value_name = "FILE")]
        fleet: Option<PathBuf>,
        /// Only this device.
        #[arg(long, value_name = "ID")]
        device: Option<String>,
        /// Output format on stdout.
        #[arg(long, value_enum, default_value_t = OutputFormat::Human)]
        format: OutputFormat,
    },
    /// Show what apply would change on each twin, and why.
    Plan {
        /// Plan against a fleet snapshot instead of the environment's hub (cannot be applied).
        #[arg(long, value_name = "FILE")]
        fleet: Option<PathBuf>,
        /// Save the plan for `twinops apply FILE`.
        #[arg(long, value_name = "FILE", conflicts_with = "base")]
        out: Option<PathBuf>,
        /// Preview a change: compile the policies at the merge base of REV
        /// and HEAD (or `--rev`) and at the head, over the fleet, and show
        /// what the change does; then the head's live plan when the
        /// environment is reachable.
        #[arg(long, value_name = "REV")]
        base: Option<String>,
        /// Output format on stdout.
        #[arg(long, value_enum, default_value_t = PlanFormat::Human)]
        format: PlanFormat,
        /// Exit 2 when there are changes, 0 when there are none.
        #[arg(long)]
        detailed_exitcode: bool,
    },
    /// Apply a saved plan, or plan and apply after confirmation.
    Apply {
        /// A plan saved with `twinops plan --out`.
        plan: Option<PathBuf>,
        /// Apply without asking.
        #[arg(long)]
        auto_approve: bool,
        /// Write the per-twin result as JSON to this file.
        #[arg(long, value_name = "FILE")]
        report: Option<PathBuf>,
        /// With `--rev`: apply even though policies, schemas or
        /// `twinops.toml` have uncommitted changes in the work tree.
        #[arg(long)]
        allow_dirty: bool,
        /// With `--rev`: push the apply report note (`refs/notes/twinops`)
        /// to this remote.
        #[arg(long, value_name = "REMOTE", num_args = 0..=1, default_missing_value = "origin")]
        push_notes: Option<String>,
    },
    /// Ownership, drift and convergence across the fleet.
    Status {
        /// Read a fleet snapshot instead of the environment's hub.
        #[arg(long, value_name = "FILE")]
        fleet: Option<PathBuf>,
        /// List the twins of each class.
        #[arg(long)]
        twins: bool,
        /// Output format on stdout.
        #[arg(long, value_enum, default_value_t = OutputFormat::Human)]
        format: OutputFormat,
    },
    /// Export the environment's hub as an NDJSON fleet snapshot.
    Snapshot {
        /// The file to write.
        #[arg(long, value_name = "FILE")]
        out: PathBuf,
    },
    /// Work on the local hub.
    Hub {
        /// What to do.
        #[command(subcommand)]
        command: HubCommand,
    },
    /// Keep an environment in line with a branch: apply each new commit,
    /// correct drift on every interval, fetch at once on a push webhook.
    Run(RunArgs),
    /// The commits that changed policies, and what each did to the fleet.
    History {
        /// Only commits that changed this device's configuration.
        #[arg(long, value_name = "ID")]
        device: Option<String>,
        /// Only commits after this revision.
        #[arg(long, value_name = "REV")]
        since: Option<String>,
        /// Compile over this fleet snapshot (default: the project's, else the environment's hub).
        #[arg(long, value_name = "FILE")]
        fleet: Option<PathBuf>,
        /// Output format on stdout.
        #[arg(long, value_enum, default_value_t = OutputFormat::Human)]
        format: OutputFormat,
    },
    /// Who set each value a device receives: policy line, commit, author, date.
    Blame {
        /// The device.
        #[arg(long, value_name = "ID")]
        device: String,
        /// Only this property (`telemetry.intervalSeconds` or a JSON pointer).
        #[arg(long, value_name = "PATH")]
        property: Option<String>,
        /// Read twins from this snapshot instead of the environment's hub.
        #[arg(long, value_name = "FILE")]
        fleet: Option<PathBuf>,
        /// Output format on stdout.
        #[arg(long, value_enum, default_value_t = OutputFormat::Human)]
        format: OutputFormat,
    },
    /// Print a bundled schema, or list them.
    Schema {
        /// `policy`, or a twin configuration schema name such as `azureiotsecurity`.
        name: Option<String>,
    },
}

/// `twinops hub` subcommands.
#[derive(Debug, Subcommand)]
pub enum HubCommand {
    /// Load an NDJSON fleet snapshot into the environment's local hub, all or nothing.
    Import {
        /// The snapshot.
        file: PathBuf,
    },
    /// Serve a local hub over IoT Hub's REST API (an emulator for the REST
    /// backend, scripts and the official SDKs); prints the connection string.
    Serve(ServeArgs),
}

/// Flags of `twinops run`.
#[derive(Debug, clap::Args)]
pub struct RunArgs {
    /// The repository to follow: https or ssh URL, `file://` URL or path.
    #[arg(long, value_name = "URL|PATH")]
    pub repo: String,
    /// The branch whose commits are applied.
    #[arg(long, value_name = "BRANCH", default_value = "main")]
    pub branch: String,
    /// How often to fetch and correct drift without a push: `30s`, `5m`, `1h`.
    #[arg(long, value_name = "DURATION", default_value = "5m", value_parser = duration)]
    pub interval: std::time::Duration,
    /// Serve push webhooks, `/healthz` and `/metrics` on this address.
    #[arg(long, value_name = "ADDR")]
    pub webhook: Option<String>,
    /// The environment variable holding the webhook secret.
    #[arg(long, value_name = "VAR", requires = "webhook")]
    pub webhook_secret_env: Option<String>,
    /// Where the runner keeps its clone and state.
    #[arg(long, value_name = "DIR", default_value = ".twinops/runner")]
    pub state: PathBuf,
    /// Where runners on this machine lock each hub (default: the system's
    /// temporary directory).
    #[arg(long, value_name = "DIR")]
    pub lock_dir: Option<PathBuf>,
    /// Follow the branch even when its history was rewritten (force-pushed).
    #[arg(long)]
    pub allow_rewrite: bool,
    /// Run one cycle (fetch, plan, apply) and exit.
    #[arg(long)]
    pub once: bool,
}

/// A duration such as `500ms`, `30s`, `5m` or `1h`.
fn duration(text: &str) -> Result<std::time::Duration, String> {
    let split = text
        .find(|c: char| !c.is_ascii_digit())
        .unwrap_or(text.len());
    let (number, unit) = text.split_at(split);
    let number: u64 = number
        .parse()
        .map_err(|_| format!("`{text}` is not a duration such as `30s`, `5m` or `1h`"))?;
    let seconds = match unit {
        "ms" => return Ok(std::time::Duration::from_millis(number.max(1))),
        "s" | "" => number,
        "m" => number.saturating_mul(60),
        "h" => number.saturating_mul(3600),
        _ => return Err(format!("`{text}`: the unit must be ms, s, m or h")),
    };
    Ok(std::time::Duration::from_secs(seconds.max(1)))
}

/// Flags of `twinops hub serve`.
#[derive(Debug, clap::Args)]
pub struct ServeArgs {
    /// The local hub file (default: the environment's database).
    #[arg(long, value_name = "FILE")]
    pub db: Option<PathBuf>,
    /// A snapshot loaded when the hub file is new.
    #[arg(long, value_name = "FILE")]
    pub seed: Option<PathBuf>,
    /// The address to listen on (port 0 picks a free port).
    #[arg(long, value_name = "ADDR", default_value = "127.0.0.1:8443")]
    pub listen: String,
    /// Serve HTTPS with a self-signed certificate for `localhost` and `127.0.0.1`.
    #[arg(long)]
    pub tls: bool,
    /// Where the TLS files (`ca.pem`, `cert.pem`, `key.pem`) are kept
    /// (default: `emulator/` beside the hub file).
    #[arg(long, value_name = "DIR", requires = "tls")]
    pub cert_dir: Option<PathBuf>,
    /// The tier whose throttles are enforced.
    #[arg(long, value_name = "TIER", default_value = "S1")]
    pub tier: String,
    /// The unit count whose throttles are enforced.
    #[arg(long, value_name = "N", default_value_t = 1)]
    pub units: u32,
    /// Enforce no throttle at all.
    #[arg(long, conflicts_with_all = ["tier", "units"])]
    pub unthrottled: bool,
    /// The largest query page.
    #[arg(long, value_name = "N", default_value_t = 100)]
    pub page_size: usize,
    /// Shares of requests to fail: `429=0.05,503=0.05,quota=0.01,drop=0.05,delay=0.1[:MS]`.
    #[arg(long, value_name = "SPEC")]
    pub faults: Option<String>,
    /// Seed of the fault draws, to repeat a run.
    #[arg(long, value_name = "N", requires = "faults")]
    pub fault_seed: Option<u64>,
}

impl Command {
    /// Whether the command needs a project (`twinops.toml`); the others run
    /// anywhere, with defaults.
    #[must_use]
    pub fn needs_project(&self) -> bool {
        !matches!(
            self,
            Self::Schema { .. }
                | Self::Run(_)
                | Self::Hub {
                    command: HubCommand::Serve(ServeArgs { db: Some(_), .. })
                }
        )
    }
}

/// Formats of `plan`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum PlanFormat {
    /// Terraform-like `+ ~ -` text.
    Human,
    /// The plan document (the same as a saved plan).
    Json,
    /// A pull-request comment.
    Markdown,
}

/// Formats of `validate`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum ValidateFormat {
    /// A summary line.
    Human,
    /// A JSON document with the diagnostics.
    Json,
    /// SARIF 2.1.0, for code scanning.
    Sarif,
}

/// Formats of result output.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum OutputFormat {
    /// Text for people.
    Human,
    /// JSON with a `format_version`.
    Json,
}

/// Formats of diagnostics on stderr.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum ErrorFormat {
    /// Source snippets with underlines.
    Human,
    /// One JSON document.
    Json,
}

/// Colour choice.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum ColorChoice {
    /// On a terminal without `NO_COLOR`.
    Auto,
    /// Always (unless `NO_COLOR`).
    Always,
    /// Never.
    Never,
}
