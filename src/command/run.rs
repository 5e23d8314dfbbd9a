//! `twinops run`: the GitOps runner. Keeps its own bare clone of a
//! repository, fetches a branch on every interval and at once on a push
//! webhook, and applies each new commit to the environment (as the commit's
//! own `twinops.toml` defines it); between commits it re-plans and corrects
//! drift. It refuses a branch whose history was rewritten, never applies
//! while another runner holds the hub's lock, and on SIGTERM finishes the
//! twins in flight and stops. Each event is one line on stdout.

use std::io::Write;
use std::path::PathBuf;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};

use serde::{Deserialize, Serialize};
use tokio::sync::Notify;

use crate::apply::{self, Outcome};
use crate::cli::RunArgs;
use crate::command::environment::{self, Seed};
use crate::command::{Failure, Io, git_failure, load_project};
use crate::compile;
use crate::config::{Config, ConfigFailure, operational, secret_from_env};
use crate::diag::{Diagnostics, SourceMap};
use crate::exit::ExitStatus;
use crate::gitops::runner::{self, Hooks, Lock, Metrics};
use crate::gitops::{ApplyNote, CommitInfo, Repository};
use crate::hub::Hub;
use crate::plan::{self, Context, Origin};
use crate::render;

/// What survives a restart: the commit last applied.
#[derive(Debug, Default, Serialize, Deserialize)]
struct State {
    applied: Option<String>,
}

/// The runner between cycles.
struct Runner<'a> {
    config: &'a Config,
    args: &'a RunArgs,
    repository: Repository,
    metrics: Arc<Metrics>,
    state: State,
    /// Where `state` is kept.
    state_file: PathBuf,
    /// Whether the last cycle failed (`--once` exits 1 then).
    failed: bool,
    stop: Arc<AtomicBool>,
    lock_dir: PathBuf,
}

pub(super) fn run(config: &Config, args: &RunArgs, io: &mut Io<'_>) -> Result<ExitStatus, Failure> {
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .map_err(|error| {
            Failure::new(operational(
                format!("cannot start the async runtime: {error}"),
                None,
            ))
        })?;
    runtime.block_on(follow(config, args, io))
}

fn say(out: &mut dyn Write, line: &str) {
    let _ = writeln!(out, "{line}");
    let _ = out.flush();
}

async fn follow(config: &Config, args: &RunArgs, io: &mut Io<'_>) -> Result<ExitStatus, Failure> {
    std::fs::create_dir_all(&args.state).map_err(|error| {
        Failure::new(operational(
            format!("cannot create `{}`: {error}", args.state.display()),
            None,
        ))
    })?;
    let repository = Repository::clone_or_open(&args.repo, &args.state.join("repo.git"))
        .map_err(|error| git_failure(&error))?;
    // One state per environment: runners for two environments share the
    // clone but not what they applied.
    let state_file = args
        .state
        .join(format!("state-{}.json", config.environment));
    let state = std::fs::read(&state_file)
        .ok()
        .and_then(|bytes| serde_json::from_slice(&bytes).ok())
        .unwrap_or_default();
    let stop = Arc::new(AtomicBool::new(false));
    let stopped = Arc::new(Notify::new());
    tokio::spawn(signals(Arc::clone(&stop), Arc::clone(&stopped)));
    let metrics = Arc::new(Metrics::default());
    let (log, mut lines) = tokio::sync::mpsc::unbounded_channel();
    let secret = webhook_secret(args)?;
    let hooks = Arc::new(Hooks {
        secret,
        pushed: Notify::new(),
        metrics: Arc::clone(&metrics),
        log,
    });
    if let Some(address) = &args.webhook {
        serve_hooks(address, &hooks, &stopped, io.out).await?;
    }
    say(
        io.out,
        &format!(
            "Following `{}` of {} into environment `{}`, every {:?}.",
            args.branch,
            crate::gitops::shown_url(&args.repo),
            config.environment,
            args.interval
        ),
    );
    let mut runner = Runner {
        config,
        args,
        repository,
        metrics,
        state,
        state_file,
        failed: false,
        stop: Arc::clone(&stop),
        lock_dir: args
            .lock_dir
            .clone()
            .unwrap_or_else(super::default_lock_dir),
    };
    loop {
        runner.failed = false;
        runner.cycle(io.out).await;
        while let Ok(line) = lines.try_recv() {
            say(io.out, &line);
        }
        if args.once || stop.load(Ordering::SeqCst) {
            break;
        }
        let deadline = tokio::time::sleep(args.interval);
        tokio::pin!(deadline);
        loop {
            tokio::select! {
                () = &mut deadline => break,
                () = hooks.pushed.notified() => {
                    say(io.out, "Push webhook received: fetching.");
                    break;
                }
                Some(line) = lines.recv() => say(io.out, &line),
                () = stopped.notified() => break,
            }
        }
        if stop.load(Ordering::SeqCst) {
            break;
        }
    }
    say(io.out, "Stopped.");
    Ok(if args.once && runner.failed {
        ExitStatus::OperationalError
    } else {
        ExitStatus::Success
    })
}

/// The webhook secret `--webhook-secret-env` names; it must be set.
fn webhook_secret(args: &RunArgs) -> Result<Option<crate::hub::sas::Secret>, Failure> {
    let Some(variable) = args.webhook_secret_env.as_deref() else {
        return Ok(None);
    };
    secret_from_env(variable)
        .filter(|secret| !secret.expose().is_empty())
        .map(Some)
        .ok_or_else(|| {
            Failure::new(operational(
                format!("the webhook secret variable `${variable}` is not set, or empty"),
                Some("set it to the secret configured on the repository's webhook"),
            ))
        })
}

/// Serves webhooks, `/healthz` and `/metrics` on `address` until stopped.
async fn serve_hooks(
    address: &str,
    hooks: &Arc<Hooks>,
    stopped: &Arc<Notify>,
    out: &mut dyn Write,
) -> Result<(), Failure> {
    let listener = tokio::net::TcpListener::bind(address)
        .await
        .map_err(|error| {
            Failure::new(operational(
                format!("cannot listen on `{address}`: {error}"),
                None,
            ))
        })?;
    let bound = listener
        .local_addr()
        .map_or_else(|_| address.to_owned(), |bound| bound.to_string());
    if hooks.secret.is_none() {
        say(
            out,
            "Warning: no webhook secret (`--webhook-secret-env`): every webhook is rejected.",
        );
    }
    say(
        out,
        &format!("Webhooks, /healthz and /metrics on http://{bound}"),
    );
    let router = runner::router(Arc::clone(hooks));
    let stopped = Arc::clone(stopped);
    tokio::spawn(async move {
        let _ = axum::serve(listener, router)
            .with_graceful_shutdown(async move { stopped.notified().await })
            .await;
    });
    Ok(())
}

/// Sets `stop` and wakes everyone on SIGTERM or Ctrl-C.
async fn signals(stop: Arc<AtomicBool>, stopped: Arc<Notify>) {
    #[cfg(unix)]
    {
        use tokio::signal::unix::{SignalKind, signal};
        if let Ok(mut terminate) = signal(SignalKind::terminate()) {
            tokio::select! {
                _ = tokio::signal::ctrl_c() => {}
                _ = terminate.recv() => {}
            }
        } else {
            let _ = tokio::signal::ctrl_c().await;
        }
    }
    #[cfg(not(unix))]
    let _ = tokio::signal::ctrl_c().await;
    stop.store(true, Ordering::SeqCst);
    stopped.notify_waiters();
    stopped.notify_one();
}

impl Runner<'_> {
    fn fail(&mut self, out: &mut dyn Write, line: &str) {
        self.failed = true;
        Metrics::count(&self.metrics.failures, 1);
        say(out, line);
    }

    fn remember(&mut self, commit: &CommitInfo) {
        self.state.applied = Some(commit.id.clone());
        *self
            .metrics
            .last_applied
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner) = Some(commit.id.clone());
        let text = serde_json::to_vec(&self.state).unwrap_or_default();
        let _ = environment::write_atomically(&self.state_file, &text);
    }

    /// Whether `tip` continues the history last applied (or a rewrite is
    /// allowed); says why not.
    fn follows_history(&mut self, out: &mut dyn Write, tip: &CommitInfo) -> bool {
        let Some(last) = self.state.applied.clone() else {
            return true;
        };
        match self.repository.is_ancestor(&last, &tip.id) {
            Ok(true) => true,
            Ok(false) if self.args.allow_rewrite => {
                say(
                    out,
                    &format!(
                        "The history of `{}` was rewritten; following it to {} (--allow-rewrite).",
                        self.args.branch, tip.short
                    ),
                );
                true
            }
            Ok(false) => {
                self.fail(
                    out,
                    &format!(
                        "Refused {}: the history of `{}` was rewritten ({} is not an ancestor); nothing applied. Pass --allow-rewrite to follow it.",
                        tip.short,
                        self.args.branch,
                        last.chars().take(12).collect::<String>()
                    ),
                );
                false
            }
            Err(error) => {
                self.fail(out, &format!("Cannot compare histories: {error}."));
                false
            }
        }
    }

    /// The project as `tip` has it (its `twinops.toml`), or why not.
    fn config_at(&mut self, out: &mut dyn Write, tip: &CommitInfo) -> Option<Config> {
        let base = Config {
            environment: self.config.environment.clone(),
            terminal: self.config.terminal,
            ..Config::defaults(self.repository.root())
        };
        let why = match base.at_revision(&tip.id) {
            Ok(at) => return Some(at),
            Err(ConfigFailure::Operational(diagnostic)) => {
                format!("Cannot read {}: {}.", tip.short, diagnostic.message)
            }
            Err(ConfigFailure::Invalid(invalid)) => format!(
                "Invalid project file at {}: {}.",
                tip.short, invalid.0.message
            ),
        };
        self.fail(out, &why);
        None
    }

    /// One fetch, plan and apply.
    async fn cycle(&mut self, out: &mut dyn Write) {
        let tip = match self.repository.fetch(&self.args.branch) {
            Ok(tip) => tip,
            Err(error) => return self.fail(out, &format!("Fetch failed: {error}.")),
        };
        let new_commit = self.state.applied.as_deref() != Some(tip.id.as_str());
        if new_commit && !self.follows_history(out, &tip) {
            return;
        }
        let Some(at) = self.config_at(out, &tip) else {
            return;
        };
        let mut sources = SourceMap::new();
        let mut diags = Diagnostics::new();
        let project = match load_project(&at, &mut sources, &mut diags) {
            Ok(project) => project,
            Err(failure) => {
                return self.fail(
                    out,
                    &format!("Cannot load {}: {}.", tip.short, failure.message),
                );
            }
        };
        if diags.has_errors() {
            return self.invalid(out, &tip, diags, &sources);
        }
        let mut opening = Vec::new();
        let (chosen, hub) = match environment::open(&at, Seed::OnCreate, &mut opening) {
            Ok(opened) => opened,
            Err(failure) => {
                return self.fail(
                    out,
                    &format!(
                        "Cannot open environment `{}`: {}.",
                        at.environment, failure.message
                    ),
                );
            }
        };
        let lock_path = runner::lock_path(&self.lock_dir, &hub.identity().id);
        let stop = Arc::clone(&self.stop);
        let Ok(_lock) = Lock::acquire(&lock_path, &stop, || {
            say(
                out,
                "Waiting for another runner to finish applying to this hub.",
            );
        })
        .await
        else {
            if stop.load(Ordering::SeqCst) {
                return;
            }
            return self.fail(out, &format!("Cannot lock `{}`.", lock_path.display()));
        };
        let fleet = match hub.fleet().await {
            Ok(fleet) => fleet,
            Err(error) => return self.fail(out, &format!("Cannot read the hub: {error}.")),
        };
        let desired = compile::fleet(&project.policies, &project.schemas, &fleet, &mut diags);
        if diags.has_errors() {
            return self.invalid(out, &tip, diags, &sources);
        }
        let context = Context {
            origin: Origin {
                hub: Some(hub.identity()),
                policy_set: plan::policy_set_digest(&project.policies, &project.schemas),
                commit: Some(tip.id.clone()),
            },
            create_modules: chosen.create_modules,
        };
        let plan = plan::diff(
            &desired,
            &fleet,
            &project.policies,
            &project.schemas,
            &sources,
            &context,
        );
        if plan.changes.is_empty() {
            if new_commit {
                say(out, &format!("{} is in effect: no changes.", tip.short));
                self.remember(&tip);
            }
            return;
        }
        self.apply(out, &tip, &plan, &hub, &chosen, new_commit)
            .await;
    }

    /// Applies `plan` of `tip`, counts and logs what happened, and records
    /// it (a note on the commit, the state file).
    async fn apply(
        &mut self,
        out: &mut dyn Write,
        tip: &CommitInfo,
        plan: &plan::Plan,
        hub: &crate::hub::AnyHub,
        chosen: &crate::config::Environment,
        new_commit: bool,
    ) {
        let count = plan.changes.len();
        if new_commit {
            say(
                out,
                &format!(
                    "Applying {} ({}) to `{}`: {}.",
                    tip.short,
                    tip.summary,
                    chosen.name,
                    render::count(count, "twin")
                ),
            );
        } else {
            Metrics::count(&self.metrics.drift_found, count as u64);
            say(
                out,
                &format!(
                    "Drift at {}: correcting {}.",
                    tip.short,
                    render::count(count, "twin")
                ),
            );
        }
        let report =
            apply::execute_until(plan, hub, chosen.concurrency, &mut |_| {}, &self.stop).await;
        let changed = report.count(|o| matches!(o, Outcome::Applied { .. }));
        let stale = report.count(|o| matches!(o, Outcome::Stale { .. }));
        let failed = report.count(|o| matches!(o, Outcome::Failed { .. }));
        Metrics::count(&self.metrics.twins_changed, changed as u64);
        let line = format!(
            "Applied {}: {changed} changed, {stale} stale, {failed} failed.",
            tip.short
        );
        if self.stop.load(Ordering::SeqCst) && !report.succeeded() {
            // A stop is not a failure: the next run applies the rest.
            say(out, &line);
            say(
                out,
                "Stopping: the twins in flight finished; the rest are applied by the next run.",
            );
            return;
        }
        if report.succeeded() {
            say(out, &line);
        } else {
            self.fail(out, &line);
        }
        if new_commit {
            Metrics::count(&self.metrics.applies, 1);
        }
        let note = ApplyNote {
            environment: chosen.name.clone(),
            hub: hub.identity(),
            by: format!("twinops run ({})", self.repository.who()),
            at: crate::hub::model::timestamp(
                std::time::SystemTime::now()
                    .duration_since(std::time::UNIX_EPOCH)
                    .unwrap_or_default(),
            ),
            changed,
            stale,
            failed,
        };
        let _ = self.repository.add_note(&tip.id, &note.line());
        self.remember(tip);
    }

    /// Invalid policies at `tip`: nothing is applied; the errors go to the log.
    fn invalid(
        &mut self,
        out: &mut dyn Write,
        tip: &CommitInfo,
        diags: Diagnostics,
        sources: &SourceMap,
    ) {
        let errors = diags.into_sorted();
        self.fail(
            out,
            &format!(
                "Invalid policies at {} ({}): nothing applied.",
                tip.short,
                render::count(errors.len(), "error")
            ),
        );
        let mut text = Vec::new();
        let _ = render::diagnostics_human(&mut text, &errors, sources, false);
        let _ = out.write_all(&text);
        let _ = out.flush();
    }
}
