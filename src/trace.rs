//! Wire traces: the bytes that went to and came from a device, for a limited time.
//!
//! `POST /api/trace?device=ID&for=10m` switches a device's trace on (`avgate trace` does
//! it for you); `GET /api/trace?device=ID&after=N` reads the frames recorded since frame
//! `N`. Each frame is timestamped, marked `tx` or `rx`, and shown as hex and as text. A
//! trace switches itself off when its time is up; its last [`RING`] frames stay readable
//! until the next one starts.
//!
//! Credentials are hidden before a frame is stored: the device's password wherever it
//! appears, and whatever the driver says derives from it (a PJLink digest, see
//! `Protocol::redact`). What is never stored cannot leak through the API or a log.
//!
//! Off, a trace costs the link task one relaxed atomic load per chunk read or written.

use std::borrow::Cow;
use std::collections::{HashMap, VecDeque};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::{Duration, SystemTime};

use serde::Serialize;
use tokio::time::Instant;
use tracing::info;

/// Frames kept per device; older ones make room.
pub const RING: usize = 256;
/// Bytes of a frame kept; the rest is counted in `len` but not shown.
pub const FRAME_BYTES: usize = 256;
/// The longest a trace may run at once; start it again for more.
pub const MAX_DURATION: Duration = Duration::from_secs(3600);

/// Which way a frame went.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Direction {
    /// To the device.
    Tx,
    /// From the device.
    Rx,
}

/// One chunk of bytes on the wire, as a trace shows it.
#[derive(Debug, Clone, Serialize)]
pub struct Frame {
    /// Numbered from 1 per device, across traces; read on with `after = n`.
    pub n: u64,
    pub ts: String,
    pub dir: Direction,
    /// Bytes on the wire (the shown ones are at most [`FRAME_BYTES`]).
    pub len: usize,
    pub hex: String,
    /// Printable ASCII as is, everything else escaped (`\r`, `\x02`).
    pub text: String,
}

/// One device's trace switch and ring of frames.
#[derive(Default)]
pub struct Tap {
    /// The fast path when off: checked before anything else is touched.
    armed: AtomicBool,
    inner: Mutex<TapInner>,
}

#[derive(Default)]
struct TapInner {
    until: Option<Instant>,
    last: u64,
    frames: VecDeque<Frame>,
}

impl Tap {
    /// Whether frames are being recorded now; switches the trace off when its time is up.
    pub fn is_on(&self, device: &str) -> bool {
        if !self.armed.load(Ordering::Relaxed) {
            return false;
        }
        let mut inner = self.lock();
        match inner.until {
            Some(until) if Instant::now() < until => true,
            _ => {
                inner.until = None;
                self.armed.store(false, Ordering::Relaxed);
                info!(
                    device,
                    frames = inner.frames.len(),
                    "wire trace ended: its time is up"
                );
                false
            }
        }
    }

    /// Starts (or extends) the trace for `duration` (at most [`MAX_DURATION`]); returns
    /// how long it will run.
    pub fn start(&self, duration: Duration) -> Duration {
        let duration = duration.min(MAX_DURATION);
        let mut inner = self.lock();
        if inner.until.is_none() {
            inner.frames.clear();
        }
        inner.until = Some(Instant::now() + duration);
        self.armed.store(true, Ordering::Relaxed);
        duration
    }

    /// Records `bytes`, already redacted.
    pub fn record(&self, dir: Direction, bytes: &[u8]) {
        let shown = &bytes[..bytes.len().min(FRAME_BYTES)];
        let mut inner = self.lock();
        inner.last += 1;
        let frame = Frame {
            n: inner.last,
            ts: humantime::format_rfc3339_millis(SystemTime::now()).to_string(),
            dir,
            len: bytes.len(),
            hex: shown.iter().map(|b| format!("{b:02x}")).collect(),
            text: shown.escape_ascii().to_string(),
        };
        if inner.frames.len() == RING {
            inner.frames.pop_front();
        }
        inner.frames.push_back(frame);
    }

    /// Frames numbered after `after`, and how long the trace still runs (`None`: off).
    pub fn read(&self, after: u64) -> (Vec<Frame>, Option<Duration>) {
        let inner = self.lock();
        let frames = inner
            .frames
            .iter()
            .filter(|f| f.n > after)
            .cloned()
            .collect();
        let left = inner
            .until
            .map(|until| until.saturating_duration_since(Instant::now()))
            .filter(|left| !left.is_zero());
        (frames, left)
    }

    fn lock(&self) -> MutexGuard<'_, TapInner> {
        self.inner.lock().unwrap_or_else(|p| p.into_inner())
    }
}

/// Every device's tap, by device id.
#[derive(Default)]
pub struct Traces {
    taps: Mutex<HashMap<String, Arc<Tap>>>,
}

impl Traces {
    /// The device's tap, made on first use (a device restarted by a reload keeps it).
    pub fn tap(&self, device: &str) -> Arc<Tap> {
        let mut taps = self.taps.lock().unwrap_or_else(|p| p.into_inner());
        taps.entry(device.to_string()).or_default().clone()
    }
}

/// `/api/trace` parameters.
#[derive(serde::Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TraceQuery {
    device: String,
    /// POST: how long to trace, such as `10m` (default 10m, at most 1h).
    #[serde(rename = "for")]
    duration: Option<String>,
    /// GET: only frames numbered after this one.
    after: Option<u64>,
}

/// What `/api/trace` answers.
#[derive(Serialize)]
pub struct TraceReply {
    device: String,
    /// Seconds the trace still runs; 0 once it is off.
    remaining_s: f64,
    frames: Vec<Frame>,
}

/// The tap of a device the site has, or why there is none.
fn known_tap(state: &crate::http::AppState, device: &str) -> Result<Arc<Tap>, String> {
    let devices = state.devices.load();
    if devices.iter().any(|d| d.id == device) {
        return Ok(state.traces.tap(device));
    }
    let known: Vec<&str> = devices.iter().map(|d| d.id.as_str()).collect();
    Err(format!(
        "no device `{device}`; this site has: {}",
        known.join(", ")
    ))
}

/// The device's tap, for a caller with the `admin` scope; else the answer to send.
fn admin_tap(
    state: &crate::http::AppState,
    caller: &crate::auth::Principal,
    device: &str,
) -> Result<Arc<Tap>, Box<axum::response::Response>> {
    if !caller.scopes.is_admin() {
        return Err(Box::new(crate::http::forbidden(
            "wire traces need a token with the `admin` scope",
        )));
    }
    known_tap(state, device).map_err(|why| {
        Box::new(crate::http::refuse(
            axum::http::StatusCode::NOT_FOUND,
            "unknown_device",
            &why,
        ))
    })
}

/// `POST /api/trace?device=ID&for=10m`: switches the device's trace on.
pub async fn api_start(
    axum::extract::State(state): axum::extract::State<crate::http::AppState>,
    crate::http::Caller(caller): crate::http::Caller,
    axum::extract::Query(query): axum::extract::Query<TraceQuery>,
) -> axum::response::Response {
    use axum::response::IntoResponse;
    let tap = match admin_tap(&state, &caller, &query.device) {
        Ok(tap) => tap,
        Err(refused) => return *refused,
    };
    let duration = match query.duration.as_deref().map(humantime::parse_duration) {
        None => Duration::from_secs(600),
        Some(Ok(d)) if !d.is_zero() => d,
        Some(Ok(_)) | Some(Err(_)) => {
            return crate::http::refuse(
                axum::http::StatusCode::BAD_REQUEST,
                "invalid_args",
                "for: write a duration such as 10m or 90s (at most 1h)",
            );
        }
    };
    let granted = tap.start(duration);
    info!(device = %query.device, "wire trace on for {}", humantime::format_duration(granted));
    let (_, left) = tap.read(u64::MAX);
    axum::Json(TraceReply {
        device: query.device,
        remaining_s: left.unwrap_or_default().as_secs_f64(),
        frames: Vec::new(),
    })
    .into_response()
}

/// `GET /api/trace?device=ID&after=N`: the frames recorded after frame `N`.
pub async fn api_read(
    axum::extract::State(state): axum::extract::State<crate::http::AppState>,
    crate::http::Caller(caller): crate::http::Caller,
    axum::extract::Query(query): axum::extract::Query<TraceQuery>,
) -> axum::response::Response {
    use axum::response::IntoResponse;
    let tap = match admin_tap(&state, &caller, &query.device) {
        Ok(tap) => tap,
        Err(refused) => return *refused,
    };
    // Reading also notices a trace whose time is up.
    tap.is_on(&query.device);
    let (frames, left) = tap.read(query.after.unwrap_or(0));
    axum::Json(TraceReply {
        device: query.device,
        remaining_s: left.unwrap_or_default().as_secs_f64(),
        frames,
    })
    .into_response()
}

/// Why `avgate trace` stopped early.
#[derive(Debug, thiserror::Error)]
pub enum ClientError {
    #[error(
        "cannot reach the gateway at {addr}: {source}; is it running, and is --gateway its [server] listen?"
    )]
    Unreachable {
        addr: std::net::SocketAddr,
        source: std::io::Error,
    },
    #[error("HTTP to the gateway failed: {0}")]
    Http(#[from] hyper::Error),
    #[error("the gateway answered {status}: {body}")]
    Refused {
        status: axum::http::StatusCode,
        body: String,
    },
    #[error("the gateway's answer is not a trace: {0}")]
    Unreadable(#[from] serde_json::Error),
}

/// `avgate trace DEVICE --for 10m`: switches the device's trace on in the gateway at
/// `gateway`, then prints its frames as they come until the trace is over.
pub async fn follow(
    gateway: std::net::SocketAddr,
    token: Option<&str>,
    device: &str,
    duration: Duration,
) -> Result<(), ClientError> {
    let device_q = form_urlencoded(device);
    let for_q = form_urlencoded(&humantime::format_duration(duration).to_string());
    let started: serde_json::Value = request(
        gateway,
        token,
        axum::http::Method::POST,
        &format!("/api/trace?device={device_q}&for={for_q}"),
    )
    .await?;
    println!(
        "tracing {device} for {:.0}s (Ctrl-C stops reading; the trace stops by itself)",
        started["remaining_s"].as_f64().unwrap_or_default()
    );
    let mut after = 0;
    loop {
        let reply: serde_json::Value = request(
            gateway,
            token,
            axum::http::Method::GET,
            &format!("/api/trace?device={device_q}&after={after}"),
        )
        .await?;
        for frame in reply["frames"].as_array().into_iter().flatten() {
            after = frame["n"].as_u64().unwrap_or(after);
            println!(
                "{} {} {:>4}B  {}\n{:>33}{}",
                frame["ts"].as_str().unwrap_or_default(),
                frame["dir"].as_str().unwrap_or_default().to_uppercase(),
                frame["len"],
                frame["text"].as_str().unwrap_or_default(),
                "",
                frame["hex"].as_str().unwrap_or_default(),
            );
        }
        if reply["remaining_s"].as_f64().unwrap_or_default() <= 0.0 {
            println!("trace of {device} ended");
            return Ok(());
        }
        tokio::time::sleep(Duration::from_millis(500)).await;
    }
}

/// Percent-encodes a query value (device ids are plain, but durations have spaces).
fn form_urlencoded(value: &str) -> String {
    value
        .bytes()
        .map(|b| match b {
            b'A'..=b'Z' | b'a'..=b'z' | b'0'..=b'9' | b'-' | b'_' | b'.' => (b as char).to_string(),
            _ => format!("%{b:02X}"),
        })
        .collect()
}

async fn request(
    gateway: std::net::SocketAddr,
    token: Option<&str>,
    method: axum::http::Method,
    path: &str,
) -> Result<serde_json::Value, ClientError> {
    use http_body_util::BodyExt;
    let stream = tokio::net::TcpStream::connect(gateway)
        .await
        .map_err(|source| ClientError::Unreachable {
            addr: gateway,
            source,
        })?;
    let (mut sender, connection) =
        hyper::client::conn::http1::handshake(hyper_util::rt::TokioIo::new(stream)).await?;
    tokio::spawn(connection);
    let mut builder = axum::http::Request::builder()
        .method(method)
        .uri(path)
        .header(axum::http::header::HOST, gateway.to_string());
    if let Some(token) = token {
        builder = builder.header(axum::http::header::AUTHORIZATION, format!("Bearer {token}"));
    }
    let request = builder
        .body(http_body_util::Empty::<bytes::Bytes>::new())
        .expect("a request of valid parts");
    let response = sender.send_request(request).await?;
    let status = response.status();
    let body = response.into_body().collect().await?.to_bytes();
    if !status.is_success() {
        return Err(ClientError::Refused {
            status,
            body: String::from_utf8_lossy(&body).into_owned(),
        });
    }
    Ok(serde_json::from_slice(&body)?)
}

/// `bytes` with `password` replaced by `*` wherever it appears, after the driver's own
/// redaction.
pub fn redact<'a>(bytes: Cow<'a, [u8]>, password: Option<&str>) -> Cow<'a, [u8]> {
    let Some(secret) = password.map(str::as_bytes).filter(|p| !p.is_empty()) else {
        return bytes;
    };
    if !bytes.windows(secret.len()).any(|w| w == secret) {
        return bytes;
    }
    let mut shown = Vec::with_capacity(bytes.len());
    let mut rest: &[u8] = &bytes;
    while !rest.is_empty() {
        if rest.starts_with(secret) {
            shown.extend(std::iter::repeat_n(b'*', secret.len()));
            rest = &rest[secret.len()..];
        } else {
            shown.push(rest[0]);
            rest = &rest[1..];
        }
    }
    Cow::Owned(shown)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test(start_paused = true)]
    async fn a_trace_records_until_its_time_is_up_then_switches_itself_off() {
        let tap = Tap::default();
        assert!(!tap.is_on("proj"));
        assert_eq!(
            tap.start(Duration::from_secs(600)),
            Duration::from_secs(600)
        );
        assert!(tap.is_on("proj"));
        tap.record(Direction::Tx, b"%1POWR 1\r");
        tokio::time::advance(Duration::from_secs(599)).await;
        assert!(tap.is_on("proj"));
        tap.record(Direction::Rx, b"%1POWR=OK\r");
        tokio::time::advance(Duration::from_secs(1)).await;
        assert!(!tap.is_on("proj"), "off once the time is up");
        let (frames, left) = tap.read(0);
        assert_eq!(left, None);
        assert_eq!(frames.len(), 2, "what it recorded stays readable");
        assert_eq!(frames[0].text, "%1POWR 1\\r");
        assert_eq!(frames[0].hex, "2531504f575220310d");
        assert_eq!((frames[1].n, frames[1].dir), (2, Direction::Rx));
        assert_eq!(tap.read(1).0.len(), 1);
    }

    #[tokio::test(start_paused = true)]
    async fn the_ring_keeps_the_newest_frames_and_a_long_trace_is_capped() {
        let tap = Tap::default();
        assert_eq!(tap.start(Duration::from_secs(24 * 3600)), MAX_DURATION);
        for i in 0..RING + 10 {
            tap.record(Direction::Rx, format!("{i}").as_bytes());
        }
        tap.record(Direction::Tx, &[b'x'; FRAME_BYTES * 4]);
        let (frames, _) = tap.read(0);
        assert_eq!(frames.len(), RING);
        assert_eq!(frames[0].text, "11");
        let last = frames.last().unwrap();
        assert_eq!(
            (last.len, last.hex.len()),
            (FRAME_BYTES * 4, FRAME_BYTES * 2)
        );
    }

    #[test]
    fn the_password_never_shows() {
        let shown = redact(Cow::Borrowed(b"secret\r\nsecretsecret-x"), Some("secret"));
        assert_eq!(&*shown, b"******\r\n************-x");
        let untouched = redact(Cow::Borrowed(b"%1POWR 1\r"), Some("secret"));
        assert!(matches!(untouched, Cow::Borrowed(_)));
    }
}
