//! HTTP: the WebSocket endpoint and a small JSON API. The pages a browser loads are in
//! [`crate::web`].

use std::net::{IpAddr, SocketAddr};
use std::sync::Arc;

use axum::extract::{ConnectInfo, FromRequestParts, Query, Request, State, WebSocketUpgrade};
use axum::http::request::Parts;
use axum::http::{HeaderMap, Method, StatusCode, header};
use axum::middleware::{self, Next};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use axum::{Json, Router};
use serde::Serialize;
use serde_json::json;
use tokio_util::sync::CancellationToken;
use tracing::{debug, warn};

use crate::auth::{Principal, WebPolicy};
use crate::config::Site;
use crate::hub::subscription::Subscription;
use crate::hub::{self, Hub, MAX_MESSAGE, MAX_WRITE_BUFFER, READ_BUFFER, WRITE_BUFFER};

#[derive(Clone)]
pub struct AppState {
    pub hub: Arc<Hub>,
    /// Which pages, names and proxies browsers' requests are checked against.
    pub web: Arc<crate::reload::Swap<WebPolicy>>,
    /// The panel pages' device list; a reload replaces it.
    pub devices: Arc<crate::reload::Swap<Vec<DeviceInfo>>>,
    pub shutdown: CancellationToken,
    pub metrics: Arc<crate::metrics::Exporter>,
    /// Who may read `/metrics`; see [`crate::metrics::Access::with_credential`].
    pub metrics_access: Arc<crate::reload::Swap<crate::metrics::Access>>,
    /// Wire traces by device (`/api/trace`).
    pub traces: Arc<crate::trace::Traces>,
    /// The durable store, for `/api/history`; none with an in-memory journal.
    pub history: Option<Arc<crate::store::Store>>,
}

/// What panels need to know about a device to draw it.
#[derive(Serialize)]
pub struct DeviceInfo {
    pub id: String,
    pub name: String,
    pub profile: Arc<crate::config::Profile>,
    /// The inputs a panel can choose from, when the profile's options say: a count (a
    /// switcher's `inputs = 8`) or names (a projector's input table).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub inputs: Option<serde_json::Value>,
    /// Counted by `/healthz` when offline (the site's `required`).
    #[serde(skip)]
    pub required: bool,
}

impl DeviceInfo {
    pub fn from_site(site: &Site) -> Vec<DeviceInfo> {
        site.devices
            .iter()
            .map(|d| DeviceInfo {
                id: d.id.clone(),
                name: d.name.clone(),
                profile: d.profile.clone(),
                inputs: panel_inputs(&d.options),
                required: d.required,
            })
            .collect()
    }
}

fn panel_inputs(
    options: &avgate_drivers::Map<String, avgate_drivers::Value>,
) -> Option<serde_json::Value> {
    match options.get("inputs")? {
        serde_json::Value::Number(n) => Some(serde_json::Value::Number(n.clone())),
        serde_json::Value::Object(names) => Some(names.keys().cloned().collect()),
        _ => None,
    }
}

pub fn router(state: AppState) -> Router {
    Router::new()
        .route("/healthz", get(healthz))
        .route("/api/state", get(api_state))
        .route("/api/devices", get(api_devices))
        .route("/api/macros", get(api_macros))
        .route("/api/audit", get(api_audit))
        .route("/ws", get(websocket))
        .route("/metrics", get(crate::metrics::serve))
        .route("/api/history", get(crate::history::api))
        .route(
            "/api/trace",
            get(crate::trace::api_read).post(crate::trace::api_start),
        )
        .layer(middleware::from_fn_with_state(state.clone(), guard))
        .with_state(state)
}

/// Before any route: the real client address (behind a trusted proxy), the `Host` check
/// against DNS rebinding, and the `Origin` check for the WebSocket and the API, so a page
/// from elsewhere is refused before an upgrade or a token check.
async fn guard(State(state): State<AppState>, mut request: Request, next: Next) -> Response {
    // One policy for the whole request, even if a reload replaces it meanwhile.
    let web = state.web.load();
    let forwarded_for = request
        .headers()
        .get("x-forwarded-for")
        .and_then(|v| v.to_str().ok());
    if let Some(ConnectInfo(peer)) = request.extensions().get::<ConnectInfo<SocketAddr>>() {
        let client = web.client_addr(peer.ip(), forwarded_for);
        if client != peer.ip() {
            let real = SocketAddr::new(client, peer.port());
            request.extensions_mut().insert(ConnectInfo(real));
        }
    }
    let headers = request.headers();
    let host = headers.get(header::HOST).and_then(|v| v.to_str().ok());
    match host {
        Some(host) if web.host_allowed(host) => {}
        Some(host) => {
            debug!(host = ?host, "refused a request for another host name");
            return refuse(
                StatusCode::MISDIRECTED_REQUEST,
                "bad_host",
                &format!(
                    "this gateway does not answer to the name {host:?}; reach it by its address or add the name to [server] allowed_hosts"
                ),
            );
        }
        None => return refuse(StatusCode::BAD_REQUEST, "bad_host", "send a Host header"),
    }
    let path = request.uri().path();
    let guarded = path == "/ws" || path.starts_with("/api/") || request.method() != Method::GET;
    if guarded && let Some(origin) = headers.get(header::ORIGIN) {
        let origin = origin.to_str().unwrap_or("");
        if !web.origin_allowed(origin, host) {
            debug!(origin = ?origin, path, "refused a request from another web page");
            return refuse(
                StatusCode::FORBIDDEN,
                "forbidden",
                &format!(
                    "pages from {origin:?} may not use this gateway; add the origin to [server] allowed_origins if it should"
                ),
            );
        }
    }
    next.run(request).await
}

/// An error answer in the API's one shape: `{"code": ..., "message": ...}`.
pub(crate) fn refuse(status: StatusCode, code: &str, message: &str) -> Response {
    (status, Json(json!({"code": code, "message": message}))).into_response()
}

/// The status model (docs/PROTOCOL.md, "Health"): `failing` (HTTP 503) when the room is
/// dead: every required device offline; `degraded` (200) when some required device is
/// offline or failing (online with an `error`), the journal's disk cannot be written (commands are refused meanwhile) or its
/// commits have stalled for more than 5 s;
/// `ok` (200) otherwise. Devices with `required = false` are listed but never counted.
async fn healthz(State(state): State<AppState>) -> Response {
    let snapshot = state.hub.journal.snapshot();
    let storage = state.hub.journal.storage();
    let online = snapshot.devices.values().filter(|d| d.online).count();
    let mut problems: Vec<String> = Vec::new();
    let mut required = 0;
    let mut required_offline = 0;
    let mut devices = serde_json::Map::new();
    for info in state.devices.load().iter() {
        let device = snapshot.devices.get(&info.id);
        let is_online = device.is_some_and(|d| d.online);
        if info.required {
            required += 1;
            if !is_online {
                required_offline += 1;
                let why = device
                    .and_then(|d| d.error.as_deref())
                    .unwrap_or("not connected yet");
                problems.push(format!("device {} is offline: {why}", info.id));
            } else if let Some(why) = device.and_then(|d| d.error.as_deref()) {
                // Connected, but failing: every poll refused, say.
                problems.push(format!("device {} is failing: {why}", info.id));
            }
        }
        devices.insert(
            info.id.clone(),
            json!({
                "online": is_online,
                "required": info.required,
                "error": device.and_then(|d| d.error.clone()),
            }),
        );
    }
    if let Some(why) = &storage.failing {
        problems.push(format!(
            "journal cannot write to disk ({why}): events are served from memory, commands are refused with storage_unavailable"
        ));
    }
    // A commit takes milliseconds; events waiting this long mean a hung disk.
    if storage.oldest_uncommitted_ms > 5_000 {
        problems.push(format!(
            "journal commits are stalled: the oldest event has waited {} ms for the disk",
            storage.oldest_uncommitted_ms
        ));
    }
    let status = if required > 0 && required_offline == required {
        "failing"
    } else if !problems.is_empty() {
        "degraded"
    } else {
        "ok"
    };
    let code = if status == "failing" {
        StatusCode::SERVICE_UNAVAILABLE
    } else {
        StatusCode::OK
    };
    let body = json!({
        "status": status,
        "problems": problems,
        "epoch": snapshot.epoch,
        "seq": snapshot.seq,
        "devices": snapshot.devices.len(),
        "devices_online": online,
        "device_status": devices,
        "journal": storage,
        "journal_uncommitted": storage.uncommitted,
        "panels": state.hub.panels(),
    });
    (code, Json(body)).into_response()
}

async fn api_state(State(state): State<AppState>, Caller(caller): Caller) -> Response {
    let snapshot = state.hub.journal.snapshot();
    if caller.scopes.reads_everything() {
        return Json(snapshot).into_response();
    }
    Json(
        Subscription::default()
            .within(&caller.scopes)
            .filter(&snapshot),
    )
    .into_response()
}

async fn api_devices(State(state): State<AppState>, Caller(caller): Caller) -> Response {
    let devices = state.devices.load();
    let visible: Vec<&DeviceInfo> = devices
        .iter()
        .filter(|d| caller.scopes.can_see_device(&d.id))
        .collect();
    Json(visible).into_response()
}

/// The site's macros this caller may run (every step within its scopes), for the room
/// page's buttons.
async fn api_macros(State(state): State<AppState>, Caller(caller): Caller) -> Response {
    Json(state.hub.router.runnable_macros(&caller.scopes)).into_response()
}

#[derive(serde::Deserialize)]
#[serde(deny_unknown_fields)]
struct AuditQuery {
    device: Option<String>,
    /// RFC 3339 time: only entries from then on.
    since: Option<String>,
    /// Most entries returned, newest first (default 100, at most 1000).
    limit: Option<usize>,
    /// Only entries with a `seq` below this: the next page after one ending at that seq.
    before: Option<u64>,
}

async fn api_audit(
    State(state): State<AppState>,
    Caller(caller): Caller,
    query: Query<AuditQuery>,
) -> Response {
    if !caller.scopes.is_admin() {
        return forbidden("the audit log needs a token with the `admin` scope");
    }
    let since = match query.since.as_deref().map(humantime::parse_rfc3339_weak) {
        None => None,
        Some(Ok(t)) => Some(t),
        Some(Err(e)) => {
            let message =
                format!("since: {e}; write an RFC 3339 time such as 2026-11-25T09:00:00Z");
            return (
                StatusCode::BAD_REQUEST,
                Json(json!({"code": "invalid_args", "message": message})),
            )
                .into_response();
        }
    };
    let page = crate::audit::AuditQuery {
        device: query.device.as_deref(),
        since,
        before: query.before,
        limit: query.limit.unwrap_or(100).min(1000),
    };
    Json(state.hub.router.audit_log(&page).await).into_response()
}

async fn websocket(
    State(state): State<AppState>,
    ConnectInfo(peer): ConnectInfo<SocketAddr>,
    headers: HeaderMap,
    upgrade: WebSocketUpgrade,
) -> Response {
    let web_origin = headers
        .get(header::ORIGIN)
        .and_then(|o| o.to_str().ok())
        .map(str::to_string);
    // tungstenite's defaults suit few large messages; panels are many small ones, and
    // mostly idle: both buffers are kept for the connection's life at their largest.
    upgrade
        .read_buffer_size(READ_BUFFER)
        .write_buffer_size(WRITE_BUFFER)
        .max_write_buffer_size(MAX_WRITE_BUFFER)
        .max_message_size(MAX_MESSAGE)
        .max_frame_size(MAX_MESSAGE)
        .on_failed_upgrade(move |e| warn!(%peer, "WebSocket upgrade failed: {e}"))
        .on_upgrade(move |socket| hub::serve(socket, peer, web_origin, state.hub, state.shutdown))
}

/// Who is calling the JSON API: with tokens configured, `Authorization: Bearer <token>`
/// resolved to its principal (wrong tokens count towards the caller's lockout).
pub struct Caller(pub Principal);

impl FromRequestParts<AppState> for Caller {
    type Rejection = Response;

    async fn from_request_parts(parts: &mut Parts, state: &AppState) -> Result<Self, Response> {
        if !state.hub.auth_required() {
            return Ok(Caller(Principal::open()));
        }
        let token = parts
            .headers
            .get(header::AUTHORIZATION)
            .and_then(|v| v.to_str().ok())
            .and_then(|v| v.strip_prefix("Bearer "));
        let peer = parts
            .extensions
            .get::<ConnectInfo<SocketAddr>>()
            .map_or(IpAddr::from([0, 0, 0, 0]), |c| c.0.ip());
        match state.hub.authenticate(peer, token) {
            Ok(principal) => Ok(Caller(principal)),
            Err(refused) => Err({
                metrics::counter!(crate::metrics::AUTH_FAILURES, "surface" => "http").increment(1);
                (
                StatusCode::UNAUTHORIZED,
                Json(json!({"code": "unauthorized", "message": format!("{}; send Authorization: Bearer <token>", refused.message())})),
            )
                .into_response()
            }),
        }
    }
}

pub(crate) fn forbidden(message: &str) -> Response {
    refuse(StatusCode::FORBIDDEN, "forbidden", message)
}
