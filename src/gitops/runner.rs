//! The runner's parts that are not the loop itself: push webhooks checked
//! against GitHub's `X-Hub-Signature-256` (HMAC-SHA256, compared in
//! constant time), Prometheus metrics, `/healthz`, and the lock that keeps
//! two runners on one hub from applying at once.
//!
//! The lock is an advisory file lock (`flock`) on a file named after the
//! hub: the kernel releases it when its holder dies, so a crashed runner
//! never blocks the next one, and a runner waiting for it applies as soon as
//! it is free. Runners on one machine (or sharing the lock directory over a
//! file system with working locks) exclude each other.

use std::fmt::Write as _;
use std::fs::File;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::Mutex;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::Duration;

use axum::Router;
use axum::body::Bytes;
use axum::extract::State;
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse as _, Response};
use axum::routing::{get, post};
use hmac::{Hmac, KeyInit, Mac};
use sha2::Sha256;
use tokio::sync::Notify;

use crate::hub::sas::Secret;

/// Why a webhook was refused.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Refusal {
    /// No `X-Hub-Signature-256` header.
    Unsigned,
    /// A header that is not `sha256=<64 hex digits>`.
    Malformed,
    /// A signature that does not match the body.
    Forged,
}

impl std::fmt::Display for Refusal {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            Self::Unsigned => "no X-Hub-Signature-256 header",
            Self::Malformed => "a malformed X-Hub-Signature-256 header",
            Self::Forged => "a signature that does not match the body",
        })
    }
}

/// Checks GitHub's `X-Hub-Signature-256: sha256=<hex>` for `body`.
///
/// # Errors
/// A [`Refusal`] saying what is wrong (never the secret or the signature).
pub fn verify_signature(secret: &Secret, body: &[u8], header: Option<&str>) -> Result<(), Refusal> {
    let header = header.ok_or(Refusal::Unsigned)?;
    let hex = header.strip_prefix("sha256=").ok_or(Refusal::Malformed)?;
    if hex.len() != 64 {
        return Err(Refusal::Malformed);
    }
    let claimed: Vec<u8> = (0..32)
        .map(|at| u8::from_str_radix(hex.get(at * 2..at * 2 + 2).unwrap_or("zz"), 16))
        .collect::<Result<_, _>>()
        .map_err(|_| Refusal::Malformed)?;
    let mut mac =
        Hmac::<Sha256>::new_from_slice(secret.expose().as_bytes()).map_err(|_| Refusal::Forged)?;
    mac.update(body);
    // `verify_slice` compares in constant time.
    mac.verify_slice(&claimed).map_err(|_| Refusal::Forged)
}

/// The runner's counters, for `/metrics`.
#[derive(Debug, Default)]
pub struct Metrics {
    /// The last commit applied (or found converged).
    pub last_applied: Mutex<Option<String>>,
    /// Runs that applied a new commit.
    pub applies: AtomicU64,
    /// Twins written, over all runs.
    pub twins_changed: AtomicU64,
    /// Runs that failed: fetch, invalid policies, refused history, twins
    /// that failed or were stale.
    pub failures: AtomicU64,
    /// Twins found drifted (changed without a new commit) and corrected.
    pub drift_found: AtomicU64,
    /// Webhooks refused for their signature.
    pub webhooks_rejected: AtomicU64,
    /// Webhooks accepted.
    pub webhooks_accepted: AtomicU64,
}

impl Metrics {
    /// Prometheus text exposition.
    #[must_use]
    pub fn render(&self) -> String {
        let mut out = String::new();
        let counters = [
            (
                "twinops_runner_applies_total",
                "Runs that applied a new commit.",
                &self.applies,
            ),
            (
                "twinops_runner_twins_changed_total",
                "Twins written.",
                &self.twins_changed,
            ),
            (
                "twinops_runner_failures_total",
                "Runs that failed.",
                &self.failures,
            ),
            (
                "twinops_runner_drift_found_total",
                "Drifted twins corrected.",
                &self.drift_found,
            ),
            (
                "twinops_runner_webhooks_rejected_total",
                "Webhooks refused for their signature.",
                &self.webhooks_rejected,
            ),
            (
                "twinops_runner_webhooks_accepted_total",
                "Webhooks accepted.",
                &self.webhooks_accepted,
            ),
        ];
        for (name, help, value) in counters {
            let _ = writeln!(
                out,
                "# HELP {name} {help}\n# TYPE {name} counter\n{name} {}",
                value.load(Ordering::SeqCst)
            );
        }
        let last = self
            .last_applied
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .clone();
        let _ = writeln!(
            out,
            "# HELP twinops_runner_last_applied_commit_info The last commit applied.\n# TYPE twinops_runner_last_applied_commit_info gauge"
        );
        if let Some(commit) = last {
            let _ = writeln!(
                out,
                "twinops_runner_last_applied_commit_info{{commit=\"{commit}\"}} 1"
            );
        }
        out
    }

    /// Adds `by` to `counter`.
    pub fn count(counter: &AtomicU64, by: u64) {
        counter.fetch_add(by, Ordering::SeqCst);
    }
}

/// What the webhook server shares with the loop.
#[derive(Debug)]
pub struct Hooks {
    /// The webhook secret; without one, every push webhook is refused.
    pub secret: Option<Secret>,
    /// Woken on every accepted push.
    pub pushed: Notify,
    /// The counters.
    pub metrics: Arc<Metrics>,
    /// Lines for the runner's log.
    pub log: tokio::sync::mpsc::UnboundedSender<String>,
}

/// `/healthz`, `/metrics`, and push webhooks on `POST /` or `POST /webhook`.
pub fn router(hooks: Arc<Hooks>) -> Router {
    Router::new()
        .route("/healthz", get(|| async { "ok\n" }))
        .route(
            "/metrics",
            get(|State(hooks): State<Arc<Hooks>>| async move {
                (
                    [("content-type", "text/plain; version=0.0.4")],
                    hooks.metrics.render(),
                )
            }),
        )
        .route("/", post(webhook))
        .route("/webhook", post(webhook))
        .with_state(hooks)
}

async fn webhook(State(hooks): State<Arc<Hooks>>, headers: HeaderMap, body: Bytes) -> Response {
    let signature = headers
        .get("x-hub-signature-256")
        .and_then(|value| value.to_str().ok());
    let checked = match &hooks.secret {
        Some(secret) => verify_signature(secret, &body, signature),
        None => Err(Refusal::Unsigned),
    };
    if let Err(refusal) = checked {
        Metrics::count(&hooks.metrics.webhooks_rejected, 1);
        let _ = hooks.log.send(format!("Rejected a webhook: {refusal}."));
        return (StatusCode::UNAUTHORIZED, format!("rejected: {refusal}\n")).into_response();
    }
    Metrics::count(&hooks.metrics.webhooks_accepted, 1);
    let event = headers
        .get("x-github-event")
        .and_then(|value| value.to_str().ok())
        .unwrap_or("push");
    if event == "ping" {
        return (StatusCode::OK, "pong\n").into_response();
    }
    hooks.pushed.notify_one();
    (StatusCode::ACCEPTED, "fetching\n").into_response()
}

/// The lock file of one hub in `directory`.
#[must_use]
pub fn lock_path(directory: &Path, hub: &str) -> PathBuf {
    let name: String = hub
        .chars()
        .map(|c| {
            if c.is_ascii_alphanumeric() || c == '-' || c == '.' {
                c
            } else {
                '_'
            }
        })
        .collect();
    directory.join(format!("{name}.lock"))
}

/// A held lock; released when dropped (or when the process dies).
#[derive(Debug)]
pub struct Lock {
    file: File,
}

impl Lock {
    /// Takes the lock at `path`, waiting while another runner holds it
    /// (`waiting` is called once if it has to) until `stop` is set.
    ///
    /// # Errors
    /// When the lock file cannot be made or locked, or `stop` was set
    /// while waiting (`Interrupted`).
    pub async fn acquire(
        path: &Path,
        stop: &AtomicBool,
        waiting: impl FnOnce(),
    ) -> std::io::Result<Self> {
        if let Some(parent) = path.parent() {
            std::fs::create_dir_all(parent)?;
        }
        let file = std::fs::OpenOptions::new()
            .create(true)
            .truncate(false)
            .write(true)
            .open(path)?;
        let mut waiting = Some(waiting);
        loop {
            match file.try_lock() {
                Ok(()) => return Ok(Self { file }),
                Err(std::fs::TryLockError::WouldBlock) => {
                    if stop.load(Ordering::SeqCst) {
                        return Err(std::io::ErrorKind::Interrupted.into());
                    }
                    if let Some(waiting) = waiting.take() {
                        waiting();
                    }
                    tokio::time::sleep(Duration::from_millis(100)).await;
                }
                Err(std::fs::TryLockError::Error(error)) => return Err(error),
            }
        }
    }
}

impl Drop for Lock {
    fn drop(&mut self) {
        let _ = self.file.unlock();
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sign(secret: &str, body: &[u8]) -> String {
        let mut mac = Hmac::<Sha256>::new_from_slice(secret.as_bytes()).unwrap();
        mac.update(body);
        let bytes = mac.finalize().into_bytes();
        format!("sha256={}", crate::plan::ownership::hex(&bytes))
    }

    #[test]
    fn webhook_signatures_are_checked() {
        let secret = Secret::new("It's a Secret to Everybody");
        let body = b"Hello, World!";
        // GitHub's documented example.
        assert_eq!(
            sign(secret.expose(), body),
            "sha256=757107ea0eb2509fc211221cce984b8a37570b6d7586c22c46f4379c8b043e17"
        );
        assert_eq!(
            verify_signature(&secret, body, Some(&sign(secret.expose(), body))),
            Ok(())
        );
        assert_eq!(
            verify_signature(&secret, body, None),
            Err(Refusal::Unsigned)
        );
        assert_eq!(
            verify_signature(&secret, body, Some("sha1=abc")),
            Err(Refusal::Malformed)
        );
        assert_eq!(
            verify_signature(&secret, body, Some(&sign("another secret", body))),
            Err(Refusal::Forged)
        );
        assert_eq!(
            verify_signature(
                &secret,
                b"Hello, World?",
                Some(&sign(secret.expose(), body))
            ),
            Err(Refusal::Forged)
        );
        let bad_hex = format!("sha256={}", "zz".repeat(32));
        assert_eq!(
            verify_signature(&secret, body, Some(&bad_hex)),
            Err(Refusal::Malformed)
        );
    }

    #[tokio::test]
    async fn one_lock_holder_at_a_time_and_release_on_drop() {
        let directory = std::env::temp_dir().join(format!("twinops-lock-{}", std::process::id()));
        let path = lock_path(&directory, "localhost:8443");
        assert!(path.ends_with("localhost_8443.lock"));
        let held = Lock::acquire(&path, &AtomicBool::new(false), || {})
            .await
            .unwrap();
        let second = std::fs::OpenOptions::new().write(true).open(&path).unwrap();
        assert!(matches!(
            second.try_lock(),
            Err(std::fs::TryLockError::WouldBlock)
        ));
        drop(held);
        assert!(second.try_lock().is_ok());
        let _ = std::fs::remove_dir_all(&directory);
    }

    #[test]
    fn metrics_are_prometheus_text() {
        let metrics = Metrics::default();
        Metrics::count(&metrics.applies, 2);
        *metrics.last_applied.lock().unwrap() = Some("abc".to_owned());
        let text = metrics.render();
        assert!(text.contains("twinops_runner_applies_total 2\n"));
        assert!(text.contains("twinops_runner_last_applied_commit_info{commit=\"abc\"} 1\n"));
        assert!(text.contains("# TYPE twinops_runner_failures_total counter"));
    }
}
