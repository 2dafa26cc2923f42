//! Event history from the durable journal: `GET /api/history`.
//!
//! "When did the projector go offline last night?" is a question for the events the store
//! keeps (its retention: `[journal] retain_events`, `retain_for`), not for the logs. Events
//! come newest first, filtered by device, point and time, a page at a time: a page ends
//! at `limit` events or after [`SCAN_PER_PAGE`] stored events were looked at, and
//! `next_before` says where the next page starts.

use serde::{Deserialize, Serialize};
use serde_json::Value;

use crate::store::{Store, StoreError, unix_millis};

/// Most events returned in one page.
pub const MAX_LIMIT: usize = 1000;
/// Stored events looked at per page, so one request never reads the whole store.
pub const SCAN_PER_PAGE: usize = 200_000;

/// What to look for.
#[derive(Debug, Default, Clone)]
pub struct Filter {
    pub device: Option<String>,
    pub point: Option<String>,
    /// Milliseconds since the Unix epoch, inclusive.
    pub since_ms: Option<u64>,
    pub until_ms: Option<u64>,
    /// Only events with a seq below this (the previous page's `next_before`).
    pub before: Option<u64>,
    pub limit: usize,
}

/// One page of history.
#[derive(Debug, Serialize)]
pub struct Page {
    pub events: Vec<HistoryEvent>,
    /// Pass as `before` for the next (older) page; `null` when there is none.
    pub next_before: Option<u64>,
}

/// An event as the journal recorded it.
#[derive(Debug, Serialize, Deserialize, PartialEq)]
pub struct HistoryEvent {
    pub seq: u64,
    pub ts: String,
    pub device: String,
    pub point: String,
    pub value: Value,
}

/// Reads one page from `store`; blocking (call it on a blocking thread).
pub fn page(store: &Store, filter: &Filter) -> Result<Page, StoreError> {
    let limit = filter.limit.clamp(1, MAX_LIMIT);
    // A cheap look at the JSON before parsing it: most rows are other devices'.
    let device_marker = filter
        .device
        .as_ref()
        .map(|d| format!("\"device\":{}", serde_json::to_string(d).expect("a string")));
    let mut events = Vec::new();
    let mut scanned = 0;
    let mut last_seq = None;
    let mut reached_start = true;
    store.scan_events_back(filter.before, |seq, ts, frame| {
        if events.len() == limit || scanned == SCAN_PER_PAGE {
            reached_start = false;
            return false;
        }
        scanned += 1;
        last_seq = Some(seq);
        if filter.since_ms.is_some_and(|since| ts < since) {
            // Older than asked for; events are stored in time order.
            return false;
        }
        if filter.until_ms.is_some_and(|until| ts > until) {
            return true;
        }
        if device_marker
            .as_ref()
            .is_some_and(|m| !frame.contains(m.as_str()))
        {
            return true;
        }
        let Ok(event) = serde_json::from_str::<HistoryEvent>(frame) else {
            return true;
        };
        let wanted = filter.device.as_ref().is_none_or(|d| *d == event.device)
            && filter.point.as_ref().is_none_or(|p| *p == event.point);
        if wanted {
            events.push(event);
        }
        true
    })?;
    // `before` is exclusive: the next page starts with the row this one did not take.
    let next_before = if reached_start { None } else { last_seq };
    Ok(Page {
        events,
        next_before,
    })
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub struct HistoryQuery {
    device: Option<String>,
    point: Option<String>,
    /// RFC 3339: from then on.
    since: Option<String>,
    /// RFC 3339: up to then.
    until: Option<String>,
    /// The previous page's `next_before`.
    before: Option<u64>,
    /// Events per page (default 100, at most 1000).
    limit: Option<usize>,
}

/// `GET /api/history?device=&point=&since=&until=&before=&limit=`.
pub async fn api(
    axum::extract::State(state): axum::extract::State<crate::http::AppState>,
    crate::http::Caller(caller): crate::http::Caller,
    axum::extract::Query(query): axum::extract::Query<HistoryQuery>,
) -> axum::response::Response {
    use axum::http::StatusCode;
    use axum::response::IntoResponse;
    let problem = |status: StatusCode, code: &str, message: String| {
        crate::http::refuse(status, code, &message)
    };
    // A token that may not read everything asks for what it may read, by name, so no
    // page ever holds an event outside its scopes.
    if !caller.scopes.reads_everything() {
        let allowed = match (&query.device, &query.point) {
            (Some(device), Some(point)) => caller.scopes.can_read(device, point),
            (Some(device), None) => caller.scopes.can_read(device, "*"),
            (None, _) => false,
        };
        if !allowed {
            return problem(
                StatusCode::FORBIDDEN,
                "forbidden",
                "this token may read only some devices or points: ask for one of them with device= (and point=)".into(),
            );
        }
    }
    let Some(store) = state.history.clone() else {
        return problem(
            StatusCode::CONFLICT,
            "no_history",
            "history is kept only with a durable journal: set [journal] durable = true".into(),
        );
    };
    let time = |field: &str, value: Option<&str>| -> Result<Option<u64>, String> {
        value
            .map(|v| {
                humantime::parse_rfc3339_weak(v)
                    .map(unix_millis)
                    .map_err(|e| {
                        format!("{field}: {e}; write an RFC 3339 time such as 2026-11-25T09:00:00Z")
                    })
            })
            .transpose()
    };
    let (since_ms, until_ms) = match (
        time("since", query.since.as_deref()),
        time("until", query.until.as_deref()),
    ) {
        (Ok(since), Ok(until)) => (since, until),
        (Err(why), _) | (_, Err(why)) => {
            return problem(StatusCode::BAD_REQUEST, "invalid_args", why);
        }
    };
    let filter = Filter {
        device: query.device,
        point: query.point,
        since_ms,
        until_ms,
        before: query.before,
        limit: query.limit.unwrap_or(100),
    };
    match tokio::task::spawn_blocking(move || page(&store, &filter)).await {
        Ok(Ok(page)) => axum::Json(page).into_response(),
        Ok(Err(e)) => problem(
            StatusCode::SERVICE_UNAVAILABLE,
            "store_error",
            e.to_string(),
        ),
        Err(e) => problem(StatusCode::INTERNAL_SERVER_ERROR, "internal", e.to_string()),
    }
}
