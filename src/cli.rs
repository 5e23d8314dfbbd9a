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
        #[arg(long, value_name = "FILE")]
        out: Option<PathBuf>,
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
