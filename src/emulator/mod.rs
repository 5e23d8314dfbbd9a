//! The emulator: a local hub served over IoT Hub's REST API
//! (`reference/iothub-rest-api.md`), for testing the REST client end to
//! end and for trying twinops, or one's own scripts and the official SDKs,
//! without Azure.
//!
//! [`start`] serves a [`LocalHub`] on a bound listener, over HTTP or HTTPS
//! ([`cert`]), until the returned [`Running`] is stopped. Requests are
//! checked for an `api-version`, a shared access signature of one of the
//! hub's policies (kept in the hub file, so a restart keeps the connection
//! string), and the throttle of the configured tier; [`faults`] can answer
//! a share of them 429 or 503, delay them, or drop the connection.
//! Handlers live in [`routes`]. No compile or plan here: twins go in and
//! out in IoT Hub's wire shape.

pub mod cert;
pub mod faults;
mod routes;

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use base64::Engine as _;
use hyper::body::Incoming;
use hyper_util::rt::TokioIo;
use miette::Diagnostic;
use thiserror::Error;
use tokio::net::TcpListener;
use tokio::sync::oneshot;
use tokio::task::JoinHandle;
use tower::ServiceExt as _;

use crate::emulator::faults::{Fault, Faults};
use crate::hub::HubError;
use crate::hub::local::LocalHub;
use crate::hub::sas::{Policy, Secret};
use crate::hub::throttle::{Buckets, Throttles};
use crate::hub::wire;

/// Items per query page unless the client asks for fewer (§6).
pub const DEFAULT_PAGE_SIZE: usize = 100;
/// How long a request may wait for its throttle slot before it is refused
/// with 429, as IoT Hub first shapes traffic and then refuses it (§11.1).
pub const DEFAULT_BACKLOG: Duration = Duration::from_secs(1);

/// The emulator could not start.
#[derive(Debug, Error, Diagnostic)]
pub enum EmulatorError {
    /// The TLS identity could not be made or used.
    #[error("emulator TLS: {reason}")]
    #[diagnostic(code(twinops::emulator::tls))]
    Tls {
        /// What failed.
        reason: String,
    },
    /// The listening address could not be bound.
    #[error("cannot listen on `{address}`: {reason}")]
    #[diagnostic(code(twinops::emulator::listen))]
    Listen {
        /// The address.
        address: String,
        /// What the OS said.
        reason: String,
    },
    /// The hub file failed.
    #[error(transparent)]
    #[diagnostic(transparent)]
    Hub(#[from] HubError),
}

/// What a shared access policy may do (§3.5).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) struct Rights {
    /// Read the identity registry.
    registry_read: bool,
    /// Write the identity registry.
    registry_write: bool,
    /// Twins and queries.
    service_connect: bool,
}

/// The hub's shared access policies, as IoT Hub creates them for a new hub.
const POLICIES: [(&str, Rights); 4] = [
    (
        "iothubowner",
        Rights {
            registry_read: true,
            registry_write: true,
            service_connect: true,
        },
    ),
    (
        "service",
        Rights {
            registry_read: false,
            registry_write: false,
            service_connect: true,
        },
    ),
    (
        "registryRead",
        Rights {
            registry_read: true,
            registry_write: false,
            service_connect: false,
        },
    ),
    (
        "registryReadWrite",
        Rights {
            registry_read: true,
            registry_write: true,
            service_connect: false,
        },
    ),
];

/// How the emulator behaves.
#[derive(Debug)]
pub struct Options {
    /// The throttles to enforce; `None` serves as fast as it can.
    pub throttles: Option<Throttles>,
    /// How long a request may queue for its throttle slot before a 429.
    pub backlog: Duration,
    /// The largest query page.
    pub page_size: usize,
    /// Faults to inject.
    pub faults: Faults,
}

impl Default for Options {
    fn default() -> Self {
        Self {
            throttles: None,
            backlog: DEFAULT_BACKLOG,
            page_size: DEFAULT_PAGE_SIZE,
            faults: Faults::none(),
        }
    }
}

/// What every request handler shares.
#[derive(Debug)]
pub(crate) struct State {
    hub: LocalHub,
    /// The shared access policies and their keys.
    keys: Vec<Policy>,
    /// What each policy may do, by name.
    rights: Vec<(&'static str, Rights)>,
    buckets: Option<Buckets>,
    backlog: Duration,
    page_size: usize,
    faults: Faults,
}

/// A running emulator.
#[derive(Debug)]
pub struct Running {
    /// Where it listens.
    pub address: SocketAddr,
    /// Whether it serves HTTPS.
    pub tls: bool,
    owner_key: Secret,
    stop: Option<oneshot::Sender<()>>,
    task: JoinHandle<()>,
}

impl Running {
    /// The host clients on this machine name: `localhost:PORT` under TLS
    /// (the certificate covers it; plain `localhost` on 443, as the Node SDK
    /// ignores a port), else the bound address (`127.0.0.1` for a wildcard).
    #[must_use]
    pub fn host(&self) -> String {
        let ip = self.address.ip();
        let local = ip.is_loopback() || ip.is_unspecified();
        match (self.tls && local, self.address.port()) {
            (true, 443) => "localhost".to_owned(),
            (true, port) => format!("localhost:{port}"),
            (false, port) if ip.is_unspecified() => format!("127.0.0.1:{port}"),
            (false, _) => self.address.to_string(),
        }
    }

    /// The `iothubowner` connection string. It holds the key: show it only
    /// where the user asked for it.
    #[must_use]
    pub fn connection_string(&self) -> Secret {
        Secret::new(format!(
            "HostName={};SharedAccessKeyName=iothubowner;SharedAccessKey={}",
            self.host(),
            self.owner_key.expose()
        ))
    }

    /// Stops accepting connections and waits for the accept loop to end.
    pub async fn stop(mut self) {
        if let Some(stop) = self.stop.take() {
            let _ = stop.send(());
        }
        let _ = (&mut self.task).await;
    }
}

/// Serves `hub` on `listener` (HTTPS with `tls`) until stopped.
///
/// # Errors
/// [`EmulatorError::Hub`] when the hub's access keys cannot be read or made.
pub fn start(
    hub: LocalHub,
    listener: TcpListener,
    tls: Option<Arc<rustls::ServerConfig>>,
    options: Options,
) -> Result<Running, EmulatorError> {
    let address = listener
        .local_addr()
        .map_err(|error| EmulatorError::Listen {
            address: "the listener".to_owned(),
            reason: error.to_string(),
        })?;
    let keys = access_policies(&hub)?;
    let owner_key = keys
        .iter()
        .find(|policy| policy.name == "iothubowner")
        .map_or_else(
            || Secret::new(String::new()),
            |policy| policy.primary.clone(),
        );
    let state = Arc::new(State {
        hub,
        keys,
        rights: POLICIES.to_vec(),
        buckets: options.throttles.as_ref().map(Buckets::new),
        backlog: options.backlog,
        page_size: options.page_size.max(1),
        faults: options.faults,
    });
    let router = routes::router(Arc::clone(&state));
    let serves_tls = tls.is_some();
    let acceptor = tls.map(tokio_rustls::TlsAcceptor::from);
    let (stop, stopped) = oneshot::channel();
    let task = tokio::spawn(accept(listener, acceptor, state, router, stopped));
    Ok(Running {
        address,
        tls: serves_tls,
        owner_key,
        stop: Some(stop),
        task,
    })
}

/// The hub's policies, with keys made on first use and kept in the hub
/// file's `meta` table (like a real hub's keys, they are the hub's own: a
/// copy of the file carries them).
fn access_policies(hub: &LocalHub) -> Result<Vec<Policy>, HubError> {
    POLICIES
        .iter()
        .map(|(name, _)| {
            let primary =
                hub.meta_or_insert(&format!("emulator.key.{name}.primary"), &new_key())?;
            let secondary =
                hub.meta_or_insert(&format!("emulator.key.{name}.secondary"), &new_key())?;
            Ok(Policy {
                name: (*name).to_owned(),
                primary: Secret::new(primary),
                secondary: Some(Secret::new(secondary)),
            })
        })
        .collect()
}

/// A new 256-bit key, base64, from the OS's random source.
fn new_key() -> String {
    let mut bytes = Vec::with_capacity(32);
    bytes.extend_from_slice(uuid::Uuid::new_v4().as_bytes());
    bytes.extend_from_slice(uuid::Uuid::new_v4().as_bytes());
    base64::engine::general_purpose::STANDARD.encode(bytes)
}

/// Accepts connections until told to stop; each is served on its own task.
async fn accept(
    listener: TcpListener,
    tls: Option<tokio_rustls::TlsAcceptor>,
    state: Arc<State>,
    router: axum::Router,
    mut stopped: oneshot::Receiver<()>,
) {
    loop {
        let stream = tokio::select! {
            accepted = listener.accept() => match accepted {
                Ok((stream, _)) => stream,
                Err(error) => {
                    // Out of descriptors, say: let connections finish.
                    tracing::warn!(%error, "cannot accept a connection");
                    tokio::time::sleep(Duration::from_millis(50)).await;
                    continue;
                }
            },
            _ = &mut stopped => return,
        };
        let _ = stream.set_nodelay(true);
        let (state, router, tls) = (Arc::clone(&state), router.clone(), tls.clone());
        tokio::spawn(async move {
            let service = hyper::service::service_fn(move |request: hyper::Request<Incoming>| {
                handle(Arc::clone(&state), router.clone(), request)
            });
            let http = hyper::server::conn::http1::Builder::new();
            let served = match tls {
                Some(acceptor) => match acceptor.accept(stream).await {
                    Ok(stream) => http.serve_connection(TokioIo::new(stream), service).await,
                    Err(error) => {
                        tracing::debug!(%error, "TLS handshake failed");
                        return;
                    }
                },
                None => http.serve_connection(TokioIo::new(stream), service).await,
            };
            if let Err(error) = served {
                tracing::debug!(%error, "connection ended");
            }
        });
    }
}

/// The connection was dropped on purpose (an injected fault).
#[derive(Debug, Error)]
#[error("connection dropped (injected fault)")]
struct Dropped;

/// One request: an injected fault, or the router.
async fn handle(
    state: Arc<State>,
    router: axum::Router,
    request: hyper::Request<Incoming>,
) -> Result<axum::response::Response, Dropped> {
    let request = request.map(axum::body::Body::new);
    match state.faults.draw() {
        Fault::None => {}
        Fault::Throttle => {
            return Ok(routes::error(
                wire::THROTTLING,
                "The request has been throttled (injected fault).",
            ));
        }
        Fault::Unavailable => {
            return Ok(routes::error(
                wire::SERVICE_UNAVAILABLE,
                "The service is unavailable (injected fault).",
            ));
        }
        Fault::QuotaExceeded => {
            return Ok(routes::error(
                wire::QUOTA_EXCEEDED,
                "Total number of messages on IotHub exceeded the allocated quota (injected fault).",
            ));
        }
        Fault::Delay(delay) => tokio::time::sleep(delay).await,
        Fault::Drop {
            after_serving: false,
        } => return Err(Dropped),
        Fault::Drop {
            after_serving: true,
        } => {
            let _ = router.oneshot(request).await;
            return Err(Dropped);
        }
    }
    match router.oneshot(request).await {
        Ok(response) => Ok(response),
        Err(infallible) => match infallible {},
    }
}
