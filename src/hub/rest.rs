//! The Azure IoT Hub backend: the service REST API (api-version 2021-04-12)
//! over reqwest and rustls, for real hubs and for the emulator.
//!
//! Every request is paced by the hub's throttle for its kind (twin reads,
//! twin updates, query pages, registry operations; [`crate::hub::throttle`]; twin reads
//! and updates evenly spaced, queries and registry operations in per-minute
//! bursts as the hub counts them), signed
//! with a shared access signature that is renewed before it expires, and
//! retried with exponential backoff and jitter on 429, 5xx, timeouts and
//! dropped connections (honouring `Retry-After`). Other errors are mapped
//! to [`HubError`] from the status and IoT Hub's error code, and never
//! retried. The key, the token and its signature never leave [`Secret`]s
//! and sensitive header values: no message, log line or error holds them.
//! Reference: `reference/iothub-rest-api.md` §1–§6, §10, §11.

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::sync::{Arc, Mutex};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use percent_encoding::{AsciiSet, NON_ALPHANUMERIC, utf8_percent_encode};
use reqwest::header::{
    ACCEPT, AUTHORIZATION, CONTENT_TYPE, HeaderMap, HeaderName, HeaderValue, IF_MATCH, RETRY_AFTER,
};
use reqwest::{Method, StatusCode};
use serde_json::Value;

use crate::fleet::{Device, Fleet, Twin};
use crate::hub::sas::{self, ConnectionString, Secret};
use crate::hub::throttle::{Buckets, Operation, Throttles, Tier};
use crate::hub::wire::{self, ServiceError};
use crate::hub::{AuthError, Hub, HubError, HubIdentity, TwinId};

/// The api-version every request carries.
pub const API_VERSION: &str = "2021-04-12";
/// Items asked for per query page; the service may send fewer.
const QUERY_PAGE_ITEMS: usize = 1000;
/// Lifetime of a signed token.
const TOKEN_LIFETIME_SECONDS: u64 = 3600;
/// A token is renewed when it has less than this left.
const TOKEN_RENEW_SECONDS: u64 = 300;
/// Path segments are percent-encoded but for RFC 3986's unreserved marks.
const SEGMENT: &AsciiSet = &NON_ALPHANUMERIC
    .remove(b'-')
    .remove(b'.')
    .remove(b'_')
    .remove(b'~');

/// `https`, or plain `http` for an emulator started without `--tls`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Scheme {
    /// TLS, with certificates verified.
    Https,
    /// Plain HTTP (the emulator only; the real service is HTTPS only).
    Http,
}

/// How retries back off.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Retry {
    /// Sends per request, the first included.
    pub attempts: u32,
    /// The first delay; it doubles per attempt.
    pub base: Duration,
    /// The longest delay.
    pub cap: Duration,
}

impl Default for Retry {
    fn default() -> Self {
        Self {
            attempts: 8,
            base: Duration::from_millis(250),
            cap: Duration::from_secs(30),
        }
    }
}

/// Everything needed to talk to one hub.
#[derive(Clone, Debug)]
pub struct Settings {
    /// Host and credentials.
    pub connection: ConnectionString,
    /// The hub's tier, for pacing.
    pub tier: Tier,
    /// The hub's unit count, for pacing.
    pub units: u32,
    /// A PEM file of extra trusted CA certificates (the emulator's).
    pub ca_file: Option<PathBuf>,
    /// HTTPS, or plain HTTP for an emulator without TLS.
    pub scheme: Scheme,
    /// Backoff.
    pub retry: Retry,
    /// How long one request may take.
    pub timeout: Duration,
}

/// A token and when to renew it.
#[derive(Debug)]
struct Token {
    header: HeaderValue,
    renew_at: u64,
}

/// A hub reached over the IoT Hub REST API.
#[derive(Debug)]
pub struct RestHub {
    /// `host[:port]`, as in the connection string.
    host: String,
    /// `https://host[:port]`.
    base: String,
    key_name: String,
    key: Secret,
    client: reqwest::Client,
    token: Mutex<Option<Token>>,
    buckets: Buckets,
    retry: Retry,
}

/// A response with a status the caller handles.
struct Reply {
    status: StatusCode,
    headers: HeaderMap,
    body: bytes::Bytes,
}

impl RestHub {
    /// A client for the hub `settings` names. Nothing is sent yet.
    ///
    /// # Errors
    /// [`HubError::Client`] when the CA file cannot be read or TLS cannot be
    /// set up.
    pub fn connect(settings: &Settings) -> Result<Self, HubError> {
        if settings.scheme == Scheme::Http && !is_loopback(&settings.connection.host_name) {
            return Err(HubError::Client {
                reason: format!(
                    "plain HTTP is for an emulator on this machine only; `{}` is not a loopback host, and its token would travel in clear text",
                    settings.connection.host_name
                ),
            });
        }
        let client = http_client(settings)?;
        let scheme = match settings.scheme {
            Scheme::Https => "https",
            Scheme::Http => "http",
        };
        Ok(Self {
            host: settings.connection.host_name.clone(),
            base: format!("{scheme}://{}", settings.connection.host_name),
            key_name: settings.connection.key_name.clone(),
            key: settings.connection.key.clone(),
            client,
            token: Mutex::new(None),
            buckets: Buckets::new(&Throttles::for_hub(settings.tier, settings.units).evenly()),
            retry: settings.retry,
        })
    }

    /// Runs a query to its last page; every item of every page.
    ///
    /// # Errors
    /// A [`HubError`] of the first page that fails.
    pub async fn query(&self, statement: &str) -> Result<Vec<Value>, HubError> {
        let body = serde_json::json!({ "query": statement });
        let mut items = Vec::new();
        let mut continuation: Option<HeaderValue> = None;
        let mut seen = std::collections::HashSet::new();
        loop {
            let mut headers = vec![(
                HeaderName::from_static("x-ms-max-item-count"),
                HeaderValue::from(QUERY_PAGE_ITEMS),
            )];
            if let Some(token) = &continuation {
                // Opaque: passed back exactly as received.
                headers.push((HeaderName::from_static("x-ms-continuation"), token.clone()));
            }
            let reply = self
                .send(
                    Operation::Query,
                    Method::POST,
                    "/devices/query",
                    &headers,
                    Some(&body),
                )
                .await?;
            let request = "POST /devices/query";
            if !reply.status.is_success() {
                return Err(self.refusal(request, None, None, &reply));
            }
            let page: Vec<Value> = serde_json::from_slice(&reply.body).map_err(|error| {
                self.protocol(request, &format!("the page is not a JSON array: {error}"))
            })?;
            let next = reply
                .headers
                .get("x-ms-continuation")
                .filter(|token| !token.is_empty())
                .cloned();
            if next
                .as_ref()
                .is_some_and(|token| !seen.insert(token.clone()))
            {
                return Err(self.protocol(
                    request,
                    "a continuation token came back a second time; the query would never end",
                ));
            }
            items.extend(page);
            match next {
                Some(token) => continuation = Some(token),
                None => return Ok(items),
            }
        }
    }

    /// The `Authorization` header: the cached token, or a new one when it
    /// is about to expire.
    fn authorization(&self) -> Result<HeaderValue, HubError> {
        let now = unix_now();
        let mut token = self
            .token
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        if let Some(current) = token.as_ref().filter(|token| token.renew_at > now) {
            return Ok(current.header.clone());
        }
        let expiry = now + TOKEN_LIFETIME_SECONDS;
        let signed = sas::sign(
            &sas::resource_for(&self.host),
            expiry,
            &self.key_name,
            &self.key,
        )
        .map_err(|error| HubError::Unauthorized {
            host: self.host.clone(),
            reason: error.to_string(),
        })?;
        let mut header =
            HeaderValue::from_str(signed.expose()).map_err(|_| HubError::Unauthorized {
                host: self.host.clone(),
                reason: AuthError::ConnectionString {
                    reason: "the key name cannot be sent in a header".to_owned(),
                }
                .to_string(),
            })?;
        header.set_sensitive(true);
        *token = Some(Token {
            header: header.clone(),
            renew_at: expiry - TOKEN_RENEW_SECONDS,
        });
        Ok(header)
    }

    /// Sends a request, paced and retried; returns the first answer that is
    /// a success or an error no retry can fix.
    async fn send(
        &self,
        operation: Operation,
        method: Method,
        path: &str,
        headers: &[(HeaderName, HeaderValue)],
        body: Option<&Value>,
    ) -> Result<Reply, HubError> {
        let url = format!("{}{path}?api-version={API_VERSION}", self.base);
        let body = body.map(Value::to_string);
        let request_name = format!("{method} {path}");
        let mut last_failure = String::new();
        for attempt in 1..=self.retry.attempts.max(1) {
            self.buckets.of(operation).ready().await;
            let mut request = self
                .client
                .request(method.clone(), &url)
                .header(AUTHORIZATION, self.authorization()?)
                .header(ACCEPT, "application/json");
            for (name, value) in headers {
                request = request.header(name, value);
            }
            if let Some(body) = &body {
                request = request
                    .header(CONTENT_TYPE, "application/json; charset=utf-8")
                    .body(body.clone());
            }
            let started = tokio::time::Instant::now();
            let delay = match self.attempt(request).await {
                Ok(reply) if !is_transient(&reply) => {
                    tracing::debug!(
                        request = %request_name,
                        status = reply.status.as_u16(),
                        attempt,
                        elapsed_ms = started.elapsed().as_millis(),
                        "IoT Hub answered"
                    );
                    return Ok(reply);
                }
                Ok(reply) => {
                    let error = service_error(&reply);
                    last_failure = format!(
                        "{}{}",
                        reply.status,
                        error
                            .code()
                            .map(|code| format!(" ({code})"))
                            .unwrap_or_default()
                    );
                    retry_after(&reply.headers, self.retry.cap)
                        .unwrap_or_else(|| self.backoff(attempt))
                }
                Err(error) if is_permanent(&error) => {
                    return Err(HubError::Client {
                        reason: format!("{request_name}: {}", transport_failure(&error)),
                    });
                }
                Err(error) => {
                    last_failure = transport_failure(&error);
                    self.backoff(attempt)
                }
            };
            if attempt < self.retry.attempts {
                tracing::info!(
                    request = %request_name,
                    attempt,
                    failure = %last_failure,
                    retry_in_ms = delay.as_millis(),
                    "retrying"
                );
                tokio::time::sleep(delay).await;
            }
        }
        Err(HubError::Unavailable {
            host: self.host.clone(),
            request: request_name,
            attempts: self.retry.attempts.max(1),
            reason: last_failure,
        })
    }

    /// One send: the response with its whole body.
    async fn attempt(&self, request: reqwest::RequestBuilder) -> Result<Reply, reqwest::Error> {
        let response = request.send().await?;
        let status = response.status();
        let headers = response.headers().clone();
        let body = response.bytes().await?;
        Ok(Reply {
            status,
            headers,
            body,
        })
    }

    /// The delay before attempt `attempt + 1`: exponential, capped, with
    /// jitter over its upper half so that parallel requests spread out.
    fn backoff(&self, attempt: u32) -> Duration {
        let exponential = self
            .retry
            .base
            .saturating_mul(1 << attempt.saturating_sub(1).min(20));
        exponential
            .min(self.retry.cap)
            .mul_f64(0.5 + fastrand::f64() * 0.5)
    }

    /// The error an answer that is not a success stands for.
    fn refusal(
        &self,
        request: &str,
        id: Option<&TwinId>,
        if_match: Option<&str>,
        reply: &Reply,
    ) -> HubError {
        let error = service_error(reply);
        let twin = id.map(TwinId::display).unwrap_or_default();
        match reply.status.as_u16() {
            401 => HubError::Unauthorized {
                host: self.host.clone(),
                reason: if error.message.is_empty() {
                    "401 Unauthorized".to_owned()
                } else {
                    sas::redacted(&error.message)
                },
            },
            403 if error.is(wire::QUOTA_EXCEEDED) => HubError::QuotaExceeded {
                host: self.host.clone(),
            },
            404 if id.is_some() => {
                let id = id.cloned().unwrap_or_default();
                match id.module_id {
                    Some(module) if !error.is(wire::DEVICE_NOT_FOUND) => HubError::ModuleNotFound {
                        device: id.device_id,
                        module,
                    },
                    _ => HubError::DeviceNotFound {
                        device: id.device_id,
                    },
                }
            }
            409 if error.is(wire::MODULE_ALREADY_EXISTS) => {
                let id = id.cloned().unwrap_or_default();
                HubError::ModuleExists {
                    device: id.device_id,
                    module: id.module_id.unwrap_or_default(),
                }
            }
            412 => HubError::PreconditionFailed {
                twin,
                expected: if_match.unwrap_or("*").to_owned(),
                actual: "another (the hub does not say which)".to_owned(),
            },
            400 if id.is_some() && error.is(wire::ARGUMENT_INVALID) => HubError::InvalidTwin {
                twin,
                reason: sas::redacted(&error.message),
            },
            _ => HubError::Service {
                host: self.host.clone(),
                request: request.to_owned(),
                status: match error.code() {
                    Some(code) => format!("{} ({code})", reply.status.as_u16()),
                    None => reply.status.to_string(),
                },
                message: match error.tracking_id {
                    Some(tracking) => {
                        format!("{} (tracking id {tracking})", sas::redacted(&error.message))
                    }
                    None => sas::redacted(&error.message),
                },
            },
        }
    }

    fn protocol(&self, request: &str, reason: &str) -> HubError {
        HubError::Protocol {
            host: self.host.clone(),
            request: request.to_owned(),
            reason: reason.to_owned(),
        }
    }

    /// A twin request: `GET`, `PATCH` or `PUT` on `/twins/{id}[/modules/{mid}]`,
    /// answered with the twin.
    async fn twin_request(
        &self,
        method: Method,
        id: &TwinId,
        body: Option<&Value>,
        if_match: Option<&str>,
    ) -> Result<Twin, HubError> {
        let (request, reply) = self.twin_reply(method, id, body, if_match).await?;
        let json: Value = serde_json::from_slice(&reply.body)
            .ok()
            .filter(Value::is_object)
            .ok_or_else(|| self.protocol(&request, "the twin is not a JSON object"))?;
        Ok(Twin {
            device_id: id.device_id.clone(),
            module_id: id.module_id.clone(),
            json,
        })
    }

    /// Sends a twin request; the request's name and the success answer.
    async fn twin_reply(
        &self,
        method: Method,
        id: &TwinId,
        body: Option<&Value>,
        if_match: Option<&str>,
    ) -> Result<(String, Reply), HubError> {
        let path = twin_path(id);
        let mut headers = Vec::new();
        if body.is_some() {
            // Official clients always quote, and send `"*"` for unconditional writes (§4).
            let quoted = quote(if_match.unwrap_or("*"));
            let value = HeaderValue::from_str(&quoted)
                .map_err(|_| self.protocol(&path, "the etag cannot be sent in a header"))?;
            headers.push((IF_MATCH, value));
        }
        let operation = if method == Method::GET {
            Operation::TwinRead
        } else {
            Operation::TwinUpdate
        };
        let request = format!("{method} {path}");
        let reply = self.send(operation, method, &path, &headers, body).await?;
        if !reply.status.is_success() {
            return Err(self.refusal(&request, Some(id), if_match, &reply));
        }
        Ok((request, reply))
    }
}

impl Hub for RestHub {
    fn identity(&self) -> HubIdentity {
        HubIdentity {
            kind: "iothub".to_owned(),
            id: self.host.to_lowercase(),
        }
    }

    /// Two queries, `devices` then `devices.modules`, joined by device id.
    /// Queries are eventually consistent: a module whose device the first
    /// query did not return is left out, and a twin returned twice is kept
    /// once.
    async fn fleet(&self) -> Result<Fleet, HubError> {
        let request = "POST /devices/query";
        let mut devices: BTreeMap<String, Device> = BTreeMap::new();
        for json in self.query("SELECT * FROM devices").await? {
            let id = twin_id(&json)
                .filter(|id| id.module_id.is_none())
                .ok_or_else(|| {
                    self.protocol(request, "a device twin without a string `deviceId`")
                })?;
            devices.insert(
                id.device_id.clone(),
                Device {
                    twin: Twin {
                        device_id: id.device_id,
                        module_id: None,
                        json,
                    },
                    modules: BTreeMap::new(),
                },
            );
        }
        for json in self.query("SELECT * FROM devices.modules").await? {
            let Some(TwinId {
                device_id,
                module_id: Some(module_id),
            }) = twin_id(&json)
            else {
                return Err(self.protocol(
                    request,
                    "a module twin without a string `deviceId` and `moduleId`",
                ));
            };
            if let Some(device) = devices.get_mut(&device_id) {
                device.modules.insert(
                    module_id.clone(),
                    Twin {
                        device_id,
                        module_id: Some(module_id),
                        json,
                    },
                );
            } else {
                tracing::warn!(device = %device_id, module = %module_id, "module twin of a device the device query did not return; left out");
            }
        }
        Ok(Fleet {
            devices: devices.into_values().collect(),
        })
    }

    async fn twin(&self, id: &TwinId) -> Result<Twin, HubError> {
        self.twin_request(Method::GET, id, None, None).await
    }

    async fn patch(
        &self,
        id: &TwinId,
        patch: &Value,
        if_match: Option<&str>,
    ) -> Result<String, HubError> {
        let (request, reply) = self
            .twin_reply(Method::PATCH, id, Some(patch), if_match)
            .await?;
        written_etag(&reply.body).ok_or_else(|| {
            self.protocol(
                &request,
                "the twin is not a JSON object with a string `etag`",
            )
        })
    }

    async fn replace(
        &self,
        id: &TwinId,
        twin: &Value,
        if_match: Option<&str>,
    ) -> Result<Twin, HubError> {
        self.twin_request(Method::PUT, id, Some(twin), if_match)
            .await
    }

    async fn create_module(&self, device_id: &str, module_id: &str) -> Result<Twin, HubError> {
        let id = TwinId {
            device_id: device_id.to_owned(),
            module_id: Some(module_id.to_owned()),
        };
        let path = format!(
            "/devices/{}/modules/{}",
            segment(device_id),
            segment(module_id)
        );
        let body = serde_json::json!({ "deviceId": device_id, "moduleId": module_id });
        let reply = self
            .send(Operation::Registry, Method::PUT, &path, &[], Some(&body))
            .await?;
        if !reply.status.is_success() {
            let error = service_error(&reply);
            // A 404 here is about the device: the module is being created.
            if reply.status == StatusCode::NOT_FOUND && !error.is(wire::MODULE_NOT_FOUND) {
                return Err(HubError::DeviceNotFound {
                    device: device_id.to_owned(),
                });
            }
            return Err(self.refusal(&format!("PUT {path}"), Some(&id), None, &reply));
        }
        self.twin(&id).await
    }
}

/// The reqwest client: rustls with the system's roots plus the CA file.
fn http_client(settings: &Settings) -> Result<reqwest::Client, HubError> {
    let failure = |reason: String| HubError::Client { reason };
    let mut roots = rustls::RootCertStore::empty();
    for certificate in rustls_native_certs::load_native_certs().certs {
        // A system certificate rustls cannot use is skipped, as browsers do.
        let _ = roots.add(certificate);
    }
    if let Some(ca_file) = &settings.ca_file {
        use rustls::pki_types::CertificateDer;
        use rustls::pki_types::pem::PemObject as _;
        let shown = ca_file.display();
        let certificates = CertificateDer::pem_file_iter(ca_file)
            .and_then(Iterator::collect::<Result<Vec<_>, _>>)
            .map_err(|error| failure(format!("cannot read CA file `{shown}`: {error}")))?;
        if certificates.is_empty() {
            return Err(failure(format!(
                "CA file `{shown}` holds no PEM certificate"
            )));
        }
        for certificate in certificates {
            roots.add(certificate).map_err(|error| {
                failure(format!("CA file `{shown}`: unusable certificate: {error}"))
            })?;
        }
    }
    if roots.is_empty() && settings.scheme == Scheme::Https {
        return Err(failure(
            "no trusted CA certificates: install the system's CA bundle, or name one with `ca_file`"
                .to_owned(),
        ));
    }
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let mut tls = rustls::ClientConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .map_err(|error| failure(format!("TLS: {error}")))?
        .with_root_certificates(roots)
        .with_no_client_auth();
    tls.alpn_protocols = vec![b"http/1.1".to_vec()];
    reqwest::Client::builder()
        .tls_backend_preconfigured(tls)
        .http1_only()
        .connect_timeout(Duration::from_secs(10))
        .timeout(settings.timeout)
        .pool_max_idle_per_host(64)
        .user_agent(concat!("twinops/", env!("CARGO_PKG_VERSION")))
        .build()
        .map_err(|error| failure(format!("HTTP client: {error}")))
}

/// The etag of the twin a write answered with, `""` when it has none;
/// `None` when the answer is not a JSON object or its etag not a string. The
/// rest of the twin is read over as JSON but never built.
fn written_etag(body: &[u8]) -> Option<String> {
    /// The one field of a twin a write's answer is read for.
    #[derive(serde::Deserialize)]
    struct Etag {
        #[serde(default)]
        etag: Option<String>,
    }
    // A derived struct would also take a JSON array.
    if !body.trim_ascii_start().starts_with(b"{") {
        return None;
    }
    serde_json::from_slice::<Etag>(body)
        .ok()
        .map(|twin| twin.etag.unwrap_or_default())
}

/// Whether a retry may fix this answer: throttling, server errors, timeouts.
fn is_transient(reply: &Reply) -> bool {
    matches!(reply.status.as_u16(), 408 | 429 | 500 | 502 | 503 | 504)
}

/// What an error answer says.
fn service_error(reply: &Reply) -> ServiceError {
    let header = reply
        .headers
        .get("iothub-errorcode")
        .and_then(|value| value.to_str().ok());
    ServiceError::read(header, &reply.body)
}

/// `Retry-After` in seconds, when present and sane.
fn retry_after(headers: &HeaderMap, cap: Duration) -> Option<Duration> {
    let seconds: u64 = headers
        .get(RETRY_AFTER)?
        .to_str()
        .ok()?
        .trim()
        .parse()
        .ok()?;
    Some(Duration::from_secs(seconds).min(cap))
}

/// Whether no retry can fix a transport failure: a request that cannot be
/// built, or TLS refusing the hub's certificate.
fn is_permanent(error: &reqwest::Error) -> bool {
    if error.is_builder() {
        return true;
    }
    let mut source = std::error::Error::source(error);
    while let Some(cause) = source {
        let tls = cause.downcast_ref::<rustls::Error>().is_some()
            || cause
                .downcast_ref::<std::io::Error>()
                .and_then(std::io::Error::get_ref)
                .is_some_and(|inner| inner.downcast_ref::<rustls::Error>().is_some());
        if tls {
            return true;
        }
        source = cause.source();
    }
    false
}

/// A transport failure in words, without anything of the request but its URL.
fn transport_failure(error: &reqwest::Error) -> String {
    let kind = if error.is_timeout() {
        "timed out"
    } else if error.is_connect() {
        "could not connect"
    } else {
        "connection failed"
    };
    let mut reason = kind.to_owned();
    let mut source = std::error::Error::source(error);
    while let Some(cause) = source {
        reason.push_str(": ");
        reason.push_str(&cause.to_string());
        source = cause.source();
    }
    reason
}

/// Whether `host[:port]` names this machine.
fn is_loopback(host: &str) -> bool {
    let name = match host.rsplit_once(':') {
        Some((name, port)) if port.bytes().all(|b| b.is_ascii_digit()) => name,
        _ => host,
    };
    let name = name.trim_start_matches('[').trim_end_matches(']');
    name.eq_ignore_ascii_case("localhost")
        || name
            .parse::<std::net::IpAddr>()
            .is_ok_and(|address| address.is_loopback())
}

/// `/twins/{id}` or `/twins/{id}/modules/{mid}`.
fn twin_path(id: &TwinId) -> String {
    match &id.module_id {
        Some(module) => format!(
            "/twins/{}/modules/{}",
            segment(&id.device_id),
            segment(module)
        ),
        None => format!("/twins/{}", segment(&id.device_id)),
    }
}

/// One path segment, fully percent-encoded (`dev/1 é` → `dev%2F1%20%C3%A9`).
fn segment(id: &str) -> String {
    utf8_percent_encode(id, SEGMENT).to_string()
}

/// An etag as official clients send it: in double quotes (§4).
fn quote(etag: &str) -> String {
    if etag.len() >= 2 && etag.starts_with('"') && etag.ends_with('"') {
        etag.to_owned()
    } else {
        format!("\"{etag}\"")
    }
}

/// A twin's address from its JSON.
fn twin_id(json: &Value) -> Option<TwinId> {
    let device_id = json.get("deviceId")?.as_str()?.to_owned();
    let module_id = match json.get("moduleId") {
        None | Some(Value::Null) => None,
        Some(Value::String(module)) if module.is_empty() => None,
        Some(Value::String(module)) => Some(module.clone()),
        Some(_) => return None,
    };
    Some(TwinId {
        device_id,
        module_id,
    })
}

fn unix_now() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |since| since.as_secs())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ids_are_encoded_as_one_segment_each() {
        let id = TwinId {
            device_id: "dev/1 é".to_owned(),
            module_id: Some("$edge".to_owned()),
        };
        assert_eq!(twin_path(&id), "/twins/dev%2F1%20%C3%A9/modules/%24edge");
    }

    #[test]
    fn a_write_is_answered_with_the_etag_of_a_twin_object() {
        let twin = br#" {"deviceId":"d","etag":"AAAAAAAAAAI=","properties":{"desired":{"a":[1,{"b":null}]}}}"#;
        assert_eq!(written_etag(twin).as_deref(), Some("AAAAAAAAAAI="));
        assert_eq!(written_etag(br#"{"deviceId":"d"}"#).as_deref(), Some(""));
        for refused in [
            &br#"["AAAAAAAAAAI="]"#[..],
            br#"{"etag":2}"#,
            br#"{"etag":"x","tags":{"#,
            b"",
            b"not json",
        ] {
            assert_eq!(
                written_etag(refused),
                None,
                "{}",
                String::from_utf8_lossy(refused)
            );
        }
    }

    #[test]
    fn etags_are_quoted_once() {
        assert_eq!(quote("AAAAAAAAAAE="), "\"AAAAAAAAAAE=\"");
        assert_eq!(quote("\"AAAAAAAAAAE=\""), "\"AAAAAAAAAAE=\"");
        assert_eq!(quote("*"), "\"*\"");
    }

    #[test]
    fn plain_http_is_refused_for_hosts_that_are_not_this_machine() {
        let settings = |host: &str| {
            Settings {
            connection: format!(
                "HostName={host};SharedAccessKeyName=iothubowner;SharedAccessKey=dGVzdGtleXRlc3RrZXl0ZXN0a2V5dGVzdGtleTEyMzQ="
            )
            .parse()
            .unwrap(),
            tier: Tier::S1,
            units: 1,
            ca_file: None,
            scheme: Scheme::Http,
            retry: Retry::default(),
            timeout: Duration::from_secs(1),
        }
        };
        match RestHub::connect(&settings("myhub.azure-devices.net")) {
            Err(HubError::Client { reason }) => assert!(reason.contains("clear text"), "{reason}"),
            other => panic!("expected a refusal, got {other:?}"),
        }
        for host in ["localhost:8080", "127.0.0.1:8080", "[::1]:8080"] {
            assert!(RestHub::connect(&settings(host)).is_ok(), "{host}");
        }
    }

    #[test]
    fn backoff_doubles_within_its_cap_and_retry_after_wins() {
        let hub = RestHub::connect(&Settings {
            connection: "HostName=localhost:1;SharedAccessKeyName=a;SharedAccessKey=dGVzdGtleXRlc3RrZXl0ZXN0a2V5dGVzdGtleTEyMzQ="
                .parse()
                .unwrap(),
            tier: Tier::S1,
            units: 1,
            ca_file: None,
            scheme: Scheme::Http,
            retry: Retry {
                attempts: 8,
                base: Duration::from_millis(100),
                cap: Duration::from_secs(1),
            },
            timeout: Duration::from_secs(1),
        })
        .unwrap();
        for (attempt, full) in [(1, 100), (2, 200), (3, 400), (4, 800), (5, 1000), (9, 1000)] {
            let delay = hub.backoff(attempt);
            let full = Duration::from_millis(full);
            assert!(
                delay >= full / 2 && delay <= full,
                "attempt {attempt}: {delay:?}"
            );
        }
        let mut headers = HeaderMap::new();
        headers.insert(RETRY_AFTER, HeaderValue::from_static("7"));
        assert_eq!(
            retry_after(&headers, Duration::from_secs(30)),
            Some(Duration::from_secs(7))
        );
        assert_eq!(
            retry_after(&headers, Duration::from_secs(5)),
            Some(Duration::from_secs(5))
        );
        headers.insert(
            RETRY_AFTER,
            HeaderValue::from_static("Wed, 21 Oct 2015 07:28:00 GMT"),
        );
        assert_eq!(retry_after(&headers, Duration::from_secs(5)), None);
    }

    #[test]
    fn debug_output_never_shows_the_key_or_a_token() {
        let key = "dGVzdGtleXRlc3RrZXl0ZXN0a2V5dGVzdGtleTEyMzQ=";
        let settings = Settings {
            connection: format!("HostName=localhost:1;SharedAccessKeyName=o;SharedAccessKey={key}")
                .parse()
                .unwrap(),
            tier: Tier::S1,
            units: 1,
            ca_file: None,
            scheme: Scheme::Http,
            retry: Retry::default(),
            timeout: Duration::from_secs(1),
        };
        let hub = RestHub::connect(&settings).unwrap();
        let token = hub.authorization().unwrap();
        assert!(token.is_sensitive());
        for shown in [format!("{settings:?}"), format!("{hub:?}")] {
            assert!(!shown.contains(key), "{shown}");
            assert!(!shown.contains("SharedAccessSignature sr="), "{shown}");
            assert!(!shown.contains("sig="), "{shown}");
        }
    }

    #[test]
    fn module_ids_come_from_the_twin() {
        let module = serde_json::json!({"deviceId": "d", "moduleId": "m"});
        assert_eq!(twin_id(&module).unwrap().module_id.as_deref(), Some("m"));
        let device = serde_json::json!({"deviceId": "d", "moduleId": null});
        assert_eq!(twin_id(&device).unwrap().module_id, None);
        assert!(twin_id(&serde_json::json!({"deviceId": 3})).is_none());
    }
}
