//! The emulator's routes: twins, query, registry reads and module identity
//! creation, each checked for `api-version`, a shared access signature with
//! the right permission, and the throttle, then answered as IoT Hub does
//! (`reference/iothub-rest-api.md` §2, §4–§7, §10). SQLite work runs on the
//! blocking pool.

use std::sync::Arc;
use std::time::{SystemTime, UNIX_EPOCH};

use axum::Router;
use axum::body::Bytes;
use axum::extract::{Path, State as Shared};
use axum::http::header::{CONTENT_TYPE, ETAG, HOST, IF_MATCH};
use axum::http::{HeaderMap, HeaderValue, Method, StatusCode, Uri};
use axum::response::{IntoResponse as _, Response};
use axum::routing::{get, post};
use base64::Engine as _;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use serde_json::{Value, json};

use crate::emulator::{Rights, State};
use crate::fleet::Twin;
use crate::hub::local::{LocalHub, TwinKind};
use crate::hub::model::StoredTwin;
use crate::hub::throttle::Operation;
use crate::hub::wire::{self, ErrorCode};
use crate::hub::{AuthError, HubError, TwinId, model, sas};
use crate::query::{self, Collection, Selection, Statement};

/// The api-versions the emulator speaks: those since twin arrays (§1).
const API_VERSIONS: [&str; 5] = [
    "2019-10-01",
    "2020-03-13",
    "2020-09-30",
    "2021-04-12",
    "2024-03-31",
];
/// Twins read from the hub per scan step of a query.
const SCAN_BATCH: usize = 500;
/// The most devices `GET /devices` lists.
const MAX_DEVICES_LISTED: usize = 1000;

type Handled = Result<Response, Box<Response>>;

/// Every route, over `state`.
pub(super) fn router(state: Arc<State>) -> Router {
    Router::new()
        .route(
            "/twins/{id}",
            get(get_twin).patch(patch_twin).put(replace_twin),
        )
        .route(
            "/twins/{id}/modules/{mid}",
            get(get_module_twin)
                .patch(patch_module_twin)
                .put(replace_module_twin),
        )
        .route("/devices/query", post(query_twins))
        .route("/devices", get(list_devices))
        .route("/devices/{id}", get(get_device))
        .route("/devices/{id}/modules", get(list_modules))
        .route(
            "/devices/{id}/modules/{mid}",
            get(get_module).put(create_module),
        )
        .fallback(not_found)
        .with_state(state)
}

/// A format A error response with its `iothub-errorcode` (§10).
pub(super) fn error(code: ErrorCode, text: &str) -> Response {
    let tracking = uuid::Uuid::new_v4().simple().to_string();
    let body = wire::error_body(code, text, &tracking, &tracking_time());
    let mut response = (
        StatusCode::from_u16(code.status()).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR),
        axum::Json(body),
    )
        .into_response();
    let headers = response.headers_mut();
    headers.insert("iothub-errorcode", HeaderValue::from_static(code.name));
    finish(headers);
    response
}

/// Headers every answer carries.
fn finish(headers: &mut HeaderMap) {
    headers.insert(
        CONTENT_TYPE,
        HeaderValue::from_static("application/json; charset=utf-8"),
    );
    if let Ok(id) = HeaderValue::from_str(&uuid::Uuid::new_v4().to_string()) {
        headers.insert("x-ms-request-id", id);
    }
}

/// 200 with a JSON body.
fn ok(body: &Value) -> Response {
    let mut response = (StatusCode::OK, axum::Json(body)).into_response();
    finish(response.headers_mut());
    response
}

/// 200 with a twin as stored (`text`, its JSON), its etag also quoted in
/// `ETag` (§4).
fn twin_response(twin: &StoredTwin, text: String) -> Response {
    let mut response = (StatusCode::OK, text).into_response();
    finish(response.headers_mut());
    if let Some(etag) = twin.json.get("etag").and_then(Value::as_str)
        && let Ok(value) = HeaderValue::from_str(&format!("\"{etag}\""))
    {
        response.headers_mut().insert(ETAG, value);
    }
    response
}

/// A hub failure as IoT Hub answers it.
fn hub_error(failure: &HubError) -> Response {
    let code = match failure {
        HubError::DeviceNotFound { .. } => wire::DEVICE_NOT_FOUND,
        HubError::ModuleNotFound { .. } => wire::MODULE_NOT_FOUND,
        HubError::ModuleExists { .. } => wire::MODULE_ALREADY_EXISTS,
        HubError::PreconditionFailed { .. } => wire::PRECONDITION_FAILED,
        HubError::InvalidTwin { .. } => wire::ARGUMENT_INVALID,
        _ => {
            tracing::error!(%failure, "local hub failed");
            return error(wire::SERVER_ERROR, "Internal server error.");
        }
    };
    error(code, &failure.to_string())
}

async fn not_found(method: Method, uri: Uri) -> Response {
    error(
        ErrorCode {
            number: 404_000,
            name: "NotFound",
        },
        &format!("No route for {method} {}.", uri.path()),
    )
}

/// The checks before any work: api-version, signature and permission, throttle.
async fn admit(
    state: &State,
    uri: &Uri,
    headers: &HeaderMap,
    needs: fn(Rights) -> bool,
    operation: Operation,
) -> Result<(), Box<Response>> {
    match query_parameter(uri, "api-version") {
        None => {
            return Err(Box::new(error(
                wire::INVALID_PROTOCOL_VERSION,
                "The api-version query parameter is required.",
            )));
        }
        Some(version) if !supported(&version) => {
            return Err(Box::new(error(
                wire::INVALID_PROTOCOL_VERSION,
                &format!("Invalid or unsupported api-version `{version}`."),
            )));
        }
        Some(_) => {}
    }
    let host = headers
        .get(HOST)
        .and_then(|host| host.to_str().ok())
        .unwrap_or_default();
    let authorization = headers
        .get(axum::http::header::AUTHORIZATION)
        .and_then(|value| value.to_str().ok());
    let name = sas::validate(authorization, &state.keys, host, unix_now()).map_err(|refusal| {
        tracing::info!(%refusal, "request refused");
        match refusal {
            AuthError::Missing => error(wire::UNAUTHORIZED, "Authorization header missing."),
            other => error(wire::UNAUTHORIZED_ACCESS, &other.to_string()),
        }
    })?;
    let allowed = state
        .rights
        .iter()
        .find(|(policy, _)| *policy == name)
        .is_some_and(|(_, rights)| needs(*rights));
    if !allowed {
        return Err(Box::new(error(
            wire::UNAUTHORIZED,
            &format!("Shared access policy `{name}` lacks the permission for this operation."),
        )));
    }
    if let Some(buckets) = &state.buckets {
        match buckets.of(operation).admit(state.backlog) {
            Some(start) => tokio::time::sleep_until(start).await,
            None => {
                return Err(Box::new(error(
                    wire::THROTTLING_BACKLOG_TIMEOUT,
                    &format!(
                        "The request has been throttled. Wait 10 seconds and try again. Operation type: {operation:?}"
                    ),
                )));
            }
        }
    }
    Ok(())
}

/// Whether the emulator speaks `version` (§1: unknown versions are refused).
fn supported(version: &str) -> bool {
    API_VERSIONS.contains(&version)
}

/// A query-string parameter, percent-decoded.
fn query_parameter(uri: &Uri, name: &str) -> Option<String> {
    uri.query()?.split('&').find_map(|pair| {
        let (key, value) = pair.split_once('=').unwrap_or((pair, ""));
        (key == name).then(|| {
            percent_encoding::percent_decode_str(value)
                .decode_utf8_lossy()
                .into_owned()
        })
    })
}

fn unix_now() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |since| since.as_secs())
}

/// `MM/dd/yyyy HH:mm:ss`, as IoT Hub's tracking ids carry the time.
fn tracking_time() -> String {
    let iso = model::timestamp(
        SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .unwrap_or_default(),
    );
    // `2026-11-26T13:00:00.0000000Z`
    match (
        iso.get(0..4),
        iso.get(5..7),
        iso.get(8..10),
        iso.get(11..19),
    ) {
        (Some(year), Some(month), Some(day), Some(time)) => {
            format!("{month}/{day}/{year} {time}")
        }
        _ => iso,
    }
}

/// Runs SQLite work on the blocking pool.
async fn blocking<T: Send + 'static>(
    state: &Arc<State>,
    work: impl FnOnce(&LocalHub) -> T + Send + 'static,
) -> Result<T, Box<Response>> {
    let state = Arc::clone(state);
    tokio::task::spawn_blocking(move || work(&state.hub))
        .await
        .map_err(|failure| {
            tracing::error!(%failure, "hub task failed");
            Box::new(error(wire::SERVER_ERROR, "Internal server error."))
        })
}

/// The `If-Match` header as sent (the model compares quoted and unquoted
/// values, and `*`).
fn if_match(headers: &HeaderMap) -> Option<String> {
    headers
        .get(IF_MATCH)
        .and_then(|value| value.to_str().ok())
        .map(str::to_owned)
}

/// A JSON request body.
fn json_body(body: &Bytes) -> Result<Value, Box<Response>> {
    serde_json::from_slice(body).map_err(|failure| {
        Box::new(error(
            wire::IOT_HUB_FORMAT_ERROR,
            &format!("The request body is not valid JSON: {failure}."),
        ))
    })
}

fn device_twin_id(id: String) -> TwinId {
    TwinId {
        device_id: id,
        module_id: None,
    }
}

fn module_twin_id((id, mid): (String, String)) -> TwinId {
    TwinId {
        device_id: id,
        module_id: Some(mid),
    }
}

fn service(rights: Rights) -> bool {
    rights.service_connect
}

fn registry_read(rights: Rights) -> bool {
    rights.registry_read
}

fn registry_write(rights: Rights) -> bool {
    rights.registry_write
}

/// What a twin request does.
enum TwinWrite {
    Read,
    Patch(Bytes),
    Replace(Bytes),
}

async fn twin_request(
    state: &Arc<State>,
    uri: &Uri,
    headers: &HeaderMap,
    id: TwinId,
    write: TwinWrite,
) -> Handled {
    let operation = match write {
        TwinWrite::Read => Operation::TwinRead,
        TwinWrite::Patch(_) | TwinWrite::Replace(_) => Operation::TwinUpdate,
    };
    admit(state, uri, headers, service, operation).await?;
    let if_match = if_match(headers);
    let done = match write {
        TwinWrite::Read => blocking(state, move |hub| hub.read_twin_text(&id)).await?,
        TwinWrite::Patch(body) => {
            let patch = json_body(&body)?;
            blocking(state, move |hub| {
                hub.patch_twin_text(&id, &patch, if_match.as_deref())
            })
            .await?
        }
        TwinWrite::Replace(body) => {
            let twin = json_body(&body)?;
            blocking(state, move |hub| {
                hub.replace_twin_text(&id, &twin, if_match.as_deref())
            })
            .await?
        }
    };
    done.map(|(twin, text)| twin_response(&twin, text))
        .map_err(|failure| Box::new(hub_error(&failure)))
}

fn either(handled: Handled) -> Response {
    handled.unwrap_or_else(|response| *response)
}

async fn get_twin(
    Shared(state): Shared<Arc<State>>,
    Path(id): Path<String>,
    uri: Uri,
    headers: HeaderMap,
) -> Response {
    either(twin_request(&state, &uri, &headers, device_twin_id(id), TwinWrite::Read).await)
}

async fn patch_twin(
    Shared(state): Shared<Arc<State>>,
    Path(id): Path<String>,
    uri: Uri,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    let write = TwinWrite::Patch(body);
    either(twin_request(&state, &uri, &headers, device_twin_id(id), write).await)
}

async fn replace_twin(
    Shared(state): Shared<Arc<State>>,
    Path(id): Path<String>,
    uri: Uri,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    let write = TwinWrite::Replace(body);
    either(twin_request(&state, &uri, &headers, device_twin_id(id), write).await)
}

async fn get_module_twin(
    Shared(state): Shared<Arc<State>>,
    Path(ids): Path<(String, String)>,
    uri: Uri,
    headers: HeaderMap,
) -> Response {
    either(twin_request(&state, &uri, &headers, module_twin_id(ids), TwinWrite::Read).await)
}

async fn patch_module_twin(
    Shared(state): Shared<Arc<State>>,
    Path(ids): Path<(String, String)>,
    uri: Uri,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    let write = TwinWrite::Patch(body);
    either(twin_request(&state, &uri, &headers, module_twin_id(ids), write).await)
}

async fn replace_module_twin(
    Shared(state): Shared<Arc<State>>,
    Path(ids): Path<(String, String)>,
    uri: Uri,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    let write = TwinWrite::Replace(body);
    either(twin_request(&state, &uri, &headers, module_twin_id(ids), write).await)
}

/// Where a query stopped: after which twin, with how many rows returned.
#[derive(Debug, serde::Serialize, serde::Deserialize)]
struct Continuation {
    device: String,
    module: Option<String>,
    returned: usize,
}

impl Continuation {
    fn token(&self) -> String {
        URL_SAFE_NO_PAD.encode(serde_json::to_vec(self).unwrap_or_default())
    }

    fn read(token: &str) -> Option<Self> {
        URL_SAFE_NO_PAD
            .decode(token)
            .ok()
            .and_then(|bytes| serde_json::from_slice(&bytes).ok())
    }
}

/// `POST /devices/query` (§6): a bare array per page, `x-ms-item-type`, and
/// `x-ms-continuation` on every page but the last.
async fn query_twins(
    Shared(state): Shared<Arc<State>>,
    uri: Uri,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    either(query_page(&state, &uri, &headers, &body).await)
}

async fn query_page(state: &Arc<State>, uri: &Uri, headers: &HeaderMap, body: &Bytes) -> Handled {
    admit(state, uri, headers, service, Operation::Query).await?;
    let body = json_body(body)?;
    let Some(text) = body.get("query").and_then(Value::as_str) else {
        return Err(Box::new(error(
            wire::ARGUMENT_INVALID,
            "The body must be {\"query\": \"SELECT ...\"}.",
        )));
    };
    let statement = query::statement(text).map_err(|failure| {
        error(
            wire::ARGUMENT_INVALID,
            &format!("Invalid query: {failure}."),
        )
    })?;
    let page_size = headers
        .get("x-ms-max-item-count")
        .and_then(|value| value.to_str().ok())
        .and_then(|value| value.trim().parse::<usize>().ok())
        .filter(|size| *size > 0)
        .map_or(state.page_size, |size| size.min(state.page_size));
    let after = match headers.get("x-ms-continuation") {
        None => None,
        Some(token) => Some(
            token
                .to_str()
                .ok()
                .and_then(Continuation::read)
                .ok_or_else(|| error(wire::ARGUMENT_INVALID, "Invalid continuation token."))?,
        ),
    };
    let item_type = match statement.selection {
        Selection::All => "Twin",
        Selection::Count { .. } | Selection::Fields(_) => "Raw",
    };
    let (items, next) = blocking(state, move |hub| {
        scan(hub, &statement, after.as_ref(), page_size)
    })
    .await?
    .map_err(|failure| hub_error(&failure))?;
    let mut response = ok(&Value::Array(items));
    let headers = response.headers_mut();
    headers.insert("x-ms-item-type", HeaderValue::from_static(item_type));
    if let Some(next) = next.and_then(|next| HeaderValue::from_str(&next.token()).ok()) {
        headers.insert("x-ms-continuation", next);
    }
    Ok(response)
}

/// One page of a query: the rows after `after`, and where the next page
/// starts when there is one (found by looking for one more match).
fn scan(
    hub: &LocalHub,
    statement: &Statement,
    after: Option<&Continuation>,
    page_size: usize,
) -> Result<(Vec<Value>, Option<Continuation>), HubError> {
    let kind = match statement.collection {
        Collection::Devices => TwinKind::Device,
        Collection::Modules => TwinKind::Module,
    };
    let mut cursor = after.map(|after| TwinId {
        device_id: after.device.clone(),
        module_id: after.module.clone(),
    });
    if let Selection::Count { .. } = statement.selection {
        let mut matching = 0_usize;
        loop {
            let batch = hub.twins(kind, cursor.as_ref(), SCAN_BATCH)?;
            let Some(last) = batch.last() else { break };
            cursor = Some(TwinId::from(last));
            matching += batch
                .iter()
                .filter(|twin| statement.matches(&twin.json))
                .count();
        }
        return Ok((statement.count_rows(matching), None));
    }
    let returned = after.map_or(0, |after| after.returned);
    let left = statement
        .top
        .map_or(usize::MAX, |top| top.saturating_sub(returned));
    let wanted = page_size.min(left);
    let mut rows = Vec::new();
    let mut last: Option<TwinId> = None;
    let mut more = false;
    'scan: loop {
        if wanted == 0 {
            break;
        }
        let batch = hub.twins(kind, cursor.as_ref(), SCAN_BATCH)?;
        let Some(end) = batch.last() else { break };
        cursor = Some(TwinId::from(end));
        for twin in batch.iter().filter(|twin| statement.matches(&twin.json)) {
            if rows.len() == wanted {
                more = wanted < left;
                break 'scan;
            }
            last = Some(TwinId::from(twin));
            rows.push(statement.project(&twin.json));
        }
    }
    let next = match (more, last) {
        (true, Some(last)) => Some(Continuation {
            device: last.device_id,
            module: last.module_id,
            returned: returned.saturating_add(rows.len()),
        }),
        _ => None,
    };
    Ok((rows, next))
}

/// A registry device (§7) from a device twin; keys are not kept, so they
/// are null.
fn device_identity(twin: &Value) -> Value {
    let field = |name: &str, default: Value| twin.get(name).cloned().unwrap_or(default);
    json!({
        "deviceId": field("deviceId", Value::Null),
        "generationId": "",
        "etag": field("deviceEtag", json!("")),
        "connectionState": field("connectionState", json!("Disconnected")),
        "status": field("status", json!("enabled")),
        "statusReason": field("statusReason", Value::Null),
        "connectionStateUpdatedTime": "0001-01-01T00:00:00Z",
        "statusUpdatedTime": field("statusUpdateTime", json!("0001-01-01T00:00:00Z")),
        "lastActivityTime": field("lastActivityTime", json!("0001-01-01T00:00:00Z")),
        "cloudToDeviceMessageCount": field("cloudToDeviceMessageCount", json!(0)),
        "authentication": {
            "symmetricKey": { "primaryKey": null, "secondaryKey": null },
            "x509Thumbprint": { "primaryThumbprint": null, "secondaryThumbprint": null },
            "type": field("authenticationType", json!("sas")),
        },
        "capabilities": field("capabilities", json!({ "iotEdge": false })),
    })
}

/// A registry module (§7) from a module twin.
fn module_identity(twin: &Value) -> Value {
    let field = |name: &str, default: Value| twin.get(name).cloned().unwrap_or(default);
    json!({
        "moduleId": field("moduleId", Value::Null),
        "deviceId": field("deviceId", Value::Null),
        "managedBy": "",
        "generationId": "",
        "etag": field("deviceEtag", json!("")),
        "connectionState": field("connectionState", json!("Disconnected")),
        "connectionStateUpdatedTime": "0001-01-01T00:00:00Z",
        "lastActivityTime": field("lastActivityTime", json!("0001-01-01T00:00:00Z")),
        "cloudToDeviceMessageCount": field("cloudToDeviceMessageCount", json!(0)),
        "authentication": {
            "symmetricKey": { "primaryKey": null, "secondaryKey": null },
            "x509Thumbprint": { "primaryThumbprint": null, "secondaryThumbprint": null },
            "type": field("authenticationType", json!("sas")),
        },
    })
}

/// `GET /devices?top=N`: the first devices, no paging (§7).
async fn list_devices(Shared(state): Shared<Arc<State>>, uri: Uri, headers: HeaderMap) -> Response {
    either(
        async {
            admit(&state, &uri, &headers, registry_read, Operation::Registry).await?;
            let top = query_parameter(&uri, "top")
                .and_then(|top| top.parse::<usize>().ok())
                .map_or(MAX_DEVICES_LISTED, |top| top.min(MAX_DEVICES_LISTED));
            let twins = blocking(&state, move |hub| hub.twins(TwinKind::Device, None, top))
                .await?
                .map_err(|failure| hub_error(&failure))?;
            Ok(ok(&Value::Array(
                twins
                    .iter()
                    .map(|twin| device_identity(&twin.json))
                    .collect(),
            )))
        }
        .await,
    )
}

async fn get_device(
    Shared(state): Shared<Arc<State>>,
    Path(id): Path<String>,
    uri: Uri,
    headers: HeaderMap,
) -> Response {
    let id = device_twin_id(id);
    either(identity(&state, &uri, &headers, id, device_identity).await)
}

/// A registry read of one identity: the twin, as a device or module identity.
async fn identity(
    state: &Arc<State>,
    uri: &Uri,
    headers: &HeaderMap,
    id: TwinId,
    shape: fn(&Value) -> Value,
) -> Handled {
    admit(state, uri, headers, registry_read, Operation::Registry).await?;
    let twin = blocking(state, move |hub| hub.read_twin(&id))
        .await?
        .map_err(|failure| hub_error(&failure))?;
    Ok(ok(&shape(&twin.json)))
}

async fn list_modules(
    Shared(state): Shared<Arc<State>>,
    Path(id): Path<String>,
    uri: Uri,
    headers: HeaderMap,
) -> Response {
    either(
        async {
            admit(&state, &uri, &headers, registry_read, Operation::Registry).await?;
            let modules = blocking(&state, move |hub| modules_of(hub, &id))
                .await?
                .map_err(|failure| hub_error(&failure))?;
            Ok(ok(&Value::Array(
                modules
                    .iter()
                    .map(|twin| module_identity(&twin.json))
                    .collect(),
            )))
        }
        .await,
    )
}

/// The module twins of device `id` (404 when there is no such device).
fn modules_of(hub: &LocalHub, id: &str) -> Result<Vec<Twin>, HubError> {
    let device = device_twin_id(id.to_owned());
    hub.read_twin(&device)?;
    let mut modules = hub.twins(
        TwinKind::Module,
        Some(&device),
        model::MAX_MODULES_PER_DEVICE + 1,
    )?;
    modules.retain(|twin| twin.device_id == id);
    Ok(modules)
}

async fn get_module(
    Shared(state): Shared<Arc<State>>,
    Path(ids): Path<(String, String)>,
    uri: Uri,
    headers: HeaderMap,
) -> Response {
    let id = module_twin_id(ids);
    either(identity(&state, &uri, &headers, id, module_identity).await)
}

/// `PUT /devices/{id}/modules/{mid}`: creates a module identity with an
/// empty twin; an existing one is a 409 unless `If-Match` asks to update it
/// (nothing of a module identity is kept to update, so it is returned).
async fn create_module(
    Shared(state): Shared<Arc<State>>,
    Path(ids): Path<(String, String)>,
    uri: Uri,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    either(
        async {
            admit(&state, &uri, &headers, registry_write, Operation::Registry).await?;
            if !body.is_empty() {
                let module = json_body(&body)?;
                let named = |field: &str, id: &str| {
                    module
                        .get(field)
                        .and_then(Value::as_str)
                        .is_none_or(|given| given == id)
                };
                if !(named("deviceId", &ids.0) && named("moduleId", &ids.1)) {
                    return Err(Box::new(error(
                        wire::ARGUMENT_INVALID,
                        "The module's deviceId and moduleId must match the path.",
                    )));
                }
            }
            let update = headers.contains_key(IF_MATCH);
            let id = module_twin_id(ids);
            let created = blocking(&state, move |hub| {
                match hub.add_module(&id.device_id, id.module_id.as_deref().unwrap_or_default()) {
                    Err(HubError::ModuleExists { .. }) if update => hub.read_twin(&id),
                    other => other,
                }
            })
            .await?
            .map_err(|failure| hub_error(&failure))?;
            Ok(ok(&module_identity(&created.json)))
        }
        .await,
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn api_versions_from_2019_10_01_are_spoken() {
        assert!(supported("2021-04-12"));
        assert!(supported("2019-10-01"));
        assert!(!supported("2017-11-08-preview"));
        assert!(supported("2024-03-31"));
        assert!(!supported("2019-03-30"), "before twin arrays");
        assert!(!supported("2020-13-45"));
        assert!(!supported("2099-01-01"));
        assert!(!supported("latest"));
    }

    #[test]
    fn continuation_tokens_round_trip_and_refuse_garbage() {
        let token = Continuation {
            device: "dev/1".to_owned(),
            module: Some("m".to_owned()),
            returned: 7,
        }
        .token();
        let read = Continuation::read(&token).unwrap();
        assert_eq!((read.device.as_str(), read.returned), ("dev/1", 7));
        assert!(Continuation::read("not a token").is_none());
    }

    #[test]
    fn tracking_times_read_like_iot_hubs() {
        let time = tracking_time();
        assert_eq!(time.len(), 19, "{time}");
        assert_eq!(&time[2..3], "/");
    }
}
