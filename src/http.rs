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
use crate::hub::{self, Hub, MAX_MESSAGE, MAX_WRITE_BUFFER, READ_BUFFER, WRITE_BUFFER};

/// The status page: live state and a button for every command, built from /api/devices.
const INDEX_HTML: &str = include_str!("web/index.html");

#[derive(Clone)]
pub struct AppState {
    pub hub: Arc<Hub>,
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
}

impl DeviceInfo {
    pub fn from_site(site: &Site) -> Vec<DeviceInfo> {
        site.devices
            .iter()
            .map(|d| DeviceInfo {
                id: d.id.clone(),
                name: d.name.clone(),
                profile: d.profile.clone(),
            })
            .collect()
    }
}

pub fn router(state: AppState) -> Router {
    Router::new()
        .route("/", get(index))
        .route("/status", get(index))
        .route("/healthz", get(healthz))
        .route("/api/state", get(api_state))
        .route("/api/devices", get(api_devices))
        .route("/api/audit", get(api_audit))
        .route("/ws", get(websocket))
        .route("/metrics", get(crate::metrics::serve))
        .route("/api/history", get(crate::history::api))
        .route(
            "/api/trace",
            get(crate::trace::api_read).post(crate::trace::api_start),
        )
        .with_state(state)
}

async fn index() -> Html<&'static str> {
    Html(INDEX_HTML)
}

async fn healthz(State(state): State<AppState>) -> Json<serde_json::Value> {
    let snapshot = state.hub.journal.snapshot();
    let online = snapshot.devices.values().filter(|d| d.online).count();
    Json(json!({
        "status": "ok",
        "epoch": snapshot.epoch,
        "seq": snapshot.seq,
        "devices": snapshot.devices.len(),
        "devices_online": online,
        "journal_uncommitted": state.hub.journal.uncommitted(),
        "panels": state.hub.panels(),
    }))
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
    Json(state.devices.load()).into_response()
}

#[derive(serde::Deserialize)]
#[serde(deny_unknown_fields)]
struct AuditQuery {
    device: Option<String>,
    /// RFC 3339 time: only entries from then on.
    since: Option<String>,
    /// Most entries returned, newest first (default 100, at most 1000).
    limit: Option<usize>,
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
    let limit = query.limit.unwrap_or(100).min(1000);
    Json(
        state
            .hub
            .router
            .audit_log(query.device.as_deref(), since, limit),
    )
    .into_response()
}

async fn websocket(
    State(state): State<AppState>,
    ConnectInfo(peer): ConnectInfo<SocketAddr>,
    upgrade: WebSocketUpgrade,
) -> Response {
    // tungstenite's defaults suit few large messages; panels are many small ones, and
    // mostly idle: both buffers are kept for the connection's life at their largest.
    upgrade
        .read_buffer_size(READ_BUFFER)
        .write_buffer_size(WRITE_BUFFER)
        .max_write_buffer_size(MAX_WRITE_BUFFER)
        .max_message_size(MAX_MESSAGE)
        .max_frame_size(MAX_MESSAGE)
        .on_failed_upgrade(move |e| warn!(%peer, "WebSocket upgrade failed: {e}"))
        .on_upgrade(move |socket| hub::serve(socket, peer, state.hub, state.shutdown))
}

/// When the site has tokens, the JSON API wants one too, as `Authorization: Bearer ...`.
pub(crate) fn refuse_without_bearer(state: &AppState, headers: &HeaderMap) -> Option<Response> {
    if !state.hub.auth_required() {
        return None;
    }
    let token = headers
        .get(header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.strip_prefix("Bearer "));
    match state.hub.authorize(token) {
        Some(_) => None,
        None => {
            metrics::counter!(crate::metrics::AUTH_FAILURES, "surface" => "http").increment(1);
            Some(
            (
                StatusCode::UNAUTHORIZED,
                Json(json!({"code": "unauthorized", "message": "send Authorization: Bearer <token>"})),
            )
                .into_response(),
            )
        }
    }
}
