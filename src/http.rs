//! HTTP: the WebSocket endpoint, a small JSON API and the built-in status page.

use std::net::SocketAddr;
use std::sync::Arc;

use axum::extract::{ConnectInfo, Query, State, WebSocketUpgrade};
use axum::http::{HeaderMap, StatusCode, header};
use axum::response::{Html, IntoResponse, Response};
use axum::routing::get;
use axum::{Json, Router};
use serde::Serialize;
use serde_json::json;
use tokio_util::sync::CancellationToken;
use tracing::warn;

use crate::config::Site;
use crate::hub::{self, Hub, MAX_MESSAGE, MAX_WRITE_BUFFER};

/// The status page: live state and a button for every command, built from /api/devices.
const INDEX_HTML: &str = include_str!("web/index.html");

#[derive(Clone)]
pub struct AppState {
    pub hub: Arc<Hub>,
    pub devices: Arc<Vec<DeviceInfo>>,
    pub shutdown: CancellationToken,
}

/// What panels need to know about a device to draw it.
#[derive(Serialize)]
pub struct DeviceInfo {
    pub id: String,
    pub name: String,
    pub profile: Arc<crate::config::Profile>,
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
                required: d.required,
            })
            .collect()
    }
}

pub fn router(state: AppState) -> Router {
    Router::new()
        .route("/", get(index))
        .route("/healthz", get(healthz))
        .route("/api/state", get(api_state))
        .route("/api/devices", get(api_devices))
        .route("/api/audit", get(api_audit))
        .route("/ws", get(websocket))
        .with_state(state)
}

async fn index() -> Html<&'static str> {
    Html(INDEX_HTML)
}

/// The status model (docs/PROTOCOL.md, "Health"): `failing` (HTTP 503) when the room is
/// dead: every required device offline; `degraded` (200) when some required device is
/// offline, the journal's disk cannot be written (commands are refused meanwhile) or its
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
    for info in state.devices.iter() {
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

async fn api_state(State(state): State<AppState>, headers: HeaderMap) -> Response {
    if let Some(refused) = refuse_without_bearer(&state, &headers) {
        return refused;
    }
    Json(state.hub.journal.snapshot()).into_response()
}

async fn api_devices(State(state): State<AppState>, headers: HeaderMap) -> Response {
    if let Some(refused) = refuse_without_bearer(&state, &headers) {
        return refused;
    }
    Json(state.devices.as_ref()).into_response()
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
    headers: HeaderMap,
    query: Query<AuditQuery>,
) -> Response {
    if let Some(refused) = refuse_without_bearer(&state, &headers) {
        return refused;
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
    upgrade: WebSocketUpgrade,
) -> Response {
    // tungstenite's defaults suit few large messages; panels are many small ones.
    upgrade
        .read_buffer_size(8 * 1024)
        .write_buffer_size(8 * 1024)
        .max_write_buffer_size(MAX_WRITE_BUFFER)
        .max_message_size(MAX_MESSAGE)
        .max_frame_size(MAX_MESSAGE)
        .on_failed_upgrade(move |e| warn!(%peer, "WebSocket upgrade failed: {e}"))
        .on_upgrade(move |socket| hub::serve(socket, peer, state.hub, state.shutdown))
}

/// When the site has tokens, the JSON API wants one too, as `Authorization: Bearer ...`.
fn refuse_without_bearer(state: &AppState, headers: &HeaderMap) -> Option<Response> {
    if !state.hub.auth_required() {
        return None;
    }
    let token = headers
        .get(header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.strip_prefix("Bearer "));
    match state.hub.authorize(token) {
        Some(_) => None,
        None => Some(
            (
                StatusCode::UNAUTHORIZED,
                Json(json!({"code": "unauthorized", "message": "send Authorization: Bearer <token>"})),
            )
                .into_response(),
        ),
    }
}
