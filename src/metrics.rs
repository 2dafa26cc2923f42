//! Prometheus metrics: what the gateway counts, and `GET /metrics`.
//!
//! Call sites record through the `metrics` facade with the names below, so instrumenting
//! a part of the gateway costs it one line and no plumbing. Gauges that mirror state the
//! gateway already holds (devices up, the journal's seq, panels connected) are not kept
//! up to date as they change: they are read when scraped ([`Exporter::render`]).
//!
//! Labels are only ever the site's own names (device ids, link addresses) or a fixed set
//! of words (error codes, drop reasons): never anything a panel chooses, so the number of
//! series is bounded by the site file.

use std::net::IpAddr;
use std::sync::{Arc, OnceLock};
use std::time::Duration;

use ipnet::IpNet;
use metrics::{Unit, counter, describe_counter, describe_gauge, describe_histogram, gauge};
use metrics_exporter_prometheus::{Matcher, PrometheusBuilder, PrometheusHandle};
use serde::Deserialize;

use crate::config::DeviceConfig;
use crate::journal::Journal;

pub const DEVICE_UP: &str = "avgate_device_up";
pub const DEVICE_RECONNECTS: &str = "avgate_device_reconnects_total";
pub const DEVICE_ERRORS: &str = "avgate_device_errors_total";
pub const DEVICE_COMMAND_DURATION: &str = "avgate_device_command_duration_seconds";
pub const DEVICE_POLL_DURATION: &str = "avgate_device_poll_duration_seconds";
pub const DEVICE_QUEUE_DEPTH: &str = "avgate_device_queue_depth";
pub const LINK_BYTES_IN: &str = "avgate_link_bytes_in_total";
pub const LINK_BYTES_OUT: &str = "avgate_link_bytes_out_total";
pub const JOURNAL_SEQ: &str = "avgate_journal_seq";
pub const JOURNAL_COMMIT_DURATION: &str = "avgate_journal_commit_duration_seconds";
pub const JOURNAL_UNCOMMITTED: &str = "avgate_journal_uncommitted";
pub const PANELS_CONNECTED: &str = "avgate_panels_connected";
pub const PANEL_SESSIONS: &str = "avgate_panel_sessions_total";
pub const PANELS_DROPPED: &str = "avgate_panels_dropped_total";
pub const COMMANDS: &str = "avgate_commands_total";
pub const COMMANDS_DEDUPLICATED: &str = "avgate_commands_deduplicated_total";
pub const COMMAND_GATEWAY_TIME: &str = "avgate_command_gateway_seconds";
pub const AUTH_FAILURES: &str = "avgate_auth_failures_total";
pub const RELOADS: &str = "avgate_reloads_total";

/// Every `errors_total{kind}` a device can count: the error codes a device failure has.
const ERROR_KINDS: [&str; 4] = ["timeout", "device_offline", "device_error", "unsupported"];

/// Every `panels_dropped_total{reason}`: the panel closed, reading from it failed, the
/// gateway stopped, it stopped reading or answering pings, its writer failed.
pub const PANEL_DROP_REASONS: [&str; 5] = [
    "closed",
    "read_failed",
    "shutdown",
    "unresponsive",
    "writer_failed",
];

/// Histogram buckets, in seconds: device exchanges take milliseconds on a LAN and up to
/// the command timeout on a slow serial line; a durable commit is one disk sync, a few
/// hundred microseconds on an SSD.
const DURATION_BUCKETS: [f64; 15] = [
    0.0001, 0.00025, 0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0,
];

/// Buckets for the gateway's own share of a command, which is tens of microseconds
/// in memory and a disk sync or two with the journal on disk.
const GATEWAY_TIME_BUCKETS: [f64; 20] = [
    0.000025, 0.00005, 0.000075, 0.0001, 0.000125, 0.00015, 0.000175, 0.0002, 0.00025, 0.0003,
    0.0004, 0.0005, 0.00075, 0.001, 0.0015, 0.002, 0.003, 0.005, 0.01, 0.05,
];

/// How often the exporter's histograms are folded, so their memory stays bounded.
pub const UPKEEP_EVERY: Duration = Duration::from_secs(5);

/// `[metrics]` in the site file: who may scrape `/metrics`.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct MetricsSettings {
    /// Networks allowed to scrape besides loopback, e.g. `["10.0.0.0/8"]`.
    #[serde(default)]
    pub allow: Vec<IpNet>,
}

/// Decides whether a scrape is let in by its address; [`Access::with_credential`] adds
/// a second way in (a token carrying the `metrics` scope).
#[derive(Clone, Default)]
pub struct Access {
    allow: Vec<IpNet>,
    credential: Option<CredentialCheck>,
}

/// Looks at a request (its client's address and headers) and says whether it carries a
/// credential that may read metrics.
pub type CredentialCheck = Arc<dyn Fn(IpAddr, &axum::http::HeaderMap) -> bool + Send + Sync>;

impl Access {
    pub fn new(settings: &MetricsSettings) -> Access {
        Access {
            allow: settings.allow.clone(),
            credential: None,
        }
    }

    /// The same credential check with the networks of `settings` (a reload).
    pub fn renewed(&self, settings: &MetricsSettings) -> Access {
        Access {
            allow: settings.allow.clone(),
            credential: self.credential.clone(),
        }
    }

    /// Also lets in a request whose headers `check` accepts, from any address.
    pub fn with_credential(mut self, check: CredentialCheck) -> Access {
        self.credential = Some(check);
        self
    }

    pub fn allows(&self, peer: IpAddr, headers: &axum::http::HeaderMap) -> bool {
        let peer = peer.to_canonical();
        peer.is_loopback()
            || self.allow.iter().any(|net| net.contains(&peer))
            || self
                .credential
                .as_ref()
                .is_some_and(|check| check(peer, headers))
    }
}

/// The process's metrics recorder. The facade allows one per process, so gateways in
/// one process (tests) share it; the gauges read at scrape time come from the gateway
/// being scraped.
pub struct Exporter {
    handle: PrometheusHandle,
}

static HANDLE: OnceLock<PrometheusHandle> = OnceLock::new();

impl Exporter {
    /// Installs the recorder on first use and describes every metric.
    pub fn install() -> Exporter {
        let handle = HANDLE.get_or_init(|| {
            let recorder = PrometheusBuilder::new()
                .set_buckets_for_metric(Matcher::Suffix("_seconds".into()), &DURATION_BUCKETS)
                .expect("the buckets are not empty")
                // A full name is matched before a suffix.
                .set_buckets_for_metric(
                    Matcher::Full(COMMAND_GATEWAY_TIME.into()),
                    &GATEWAY_TIME_BUCKETS,
                )
                .expect("the buckets are not empty")
                .build_recorder();
            let handle = recorder.handle();
            if metrics::set_global_recorder(recorder).is_err() {
                tracing::warn!("another metrics recorder is installed; /metrics stays empty");
            }
            describe();
            handle
        });
        Exporter {
            handle: handle.clone(),
        }
    }

    /// Creates every series the site will have, at zero, so a scrape shows all of them
    /// (a rate over a series that appears with its first error misses that error).
    pub fn register_site(&self, devices: &[DeviceConfig]) {
        for device in devices {
            register_device(device);
        }
        for outcome in ["resumed", "snapshot", "refused"] {
            counter!(PANEL_SESSIONS, "outcome" => outcome).absolute(0);
        }
        for reason in PANEL_DROP_REASONS {
            counter!(PANELS_DROPPED, "reason" => reason).absolute(0);
        }
        counter!(COMMANDS, "outcome" => "ok").absolute(0);
        counter!(COMMANDS_DEDUPLICATED).absolute(0);
        for result in ["applied", "rejected"] {
            counter!(RELOADS, "result" => result).absolute(0);
        }
        for surface in ["websocket", "http"] {
            counter!(AUTH_FAILURES, "surface" => surface).absolute(0);
        }
    }

    /// Folds histogram samples; call every [`UPKEEP_EVERY`].
    pub fn run_upkeep(&self) {
        self.handle.run_upkeep();
    }

    /// The text exposition, with the state-mirroring gauges read from `journal` and
    /// `panels` now.
    pub fn render(&self, journal: &Journal, panels: usize) -> String {
        let snapshot = journal.snapshot();
        for (id, state) in &snapshot.devices {
            gauge!(DEVICE_UP, "device" => id.clone()).set(if state.online { 1.0 } else { 0.0 });
        }
        gauge!(JOURNAL_SEQ).set(snapshot.seq as f64);
        gauge!(JOURNAL_UNCOMMITTED).set(journal.uncommitted() as f64);
        gauge!(PANELS_CONNECTED).set(panels as f64);
        self.handle.render()
    }
}

/// Creates a device's series at zero (also when a reload adds it).
pub fn register_device(device: &DeviceConfig) {
    let id = device.id.clone();
    counter!(DEVICE_RECONNECTS, "device" => id.clone()).absolute(0);
    for kind in ERROR_KINDS {
        counter!(DEVICE_ERRORS, "device" => id.clone(), "kind" => kind).absolute(0);
    }
    gauge!(DEVICE_QUEUE_DEPTH, "device" => id.clone()).set(0.0);
    let link = device.link.to_string();
    counter!(LINK_BYTES_IN, "link" => link.clone()).absolute(0);
    counter!(LINK_BYTES_OUT, "link" => link).absolute(0);
}

fn describe() {
    describe_gauge!(
        DEVICE_UP,
        "1 while the device is online, 0 while it is not."
    );
    describe_counter!(
        DEVICE_RECONNECTS,
        "Sessions started with the device after its first one."
    );
    describe_counter!(
        DEVICE_ERRORS,
        "Failed requests and sessions, by kind (timeout, device_offline, device_error, unsupported)."
    );
    describe_histogram!(
        DEVICE_COMMAND_DURATION,
        Unit::Seconds,
        "Time from sending a panel command to the device until it completed."
    );
    describe_histogram!(
        COMMAND_GATEWAY_TIME,
        Unit::Seconds,
        "The gateway's own share of a panel's device command: from its frame read to its result written, less the device's time (avgate_device_command_duration_seconds). With the journal on disk it includes the two syncs a command waits for."
    );
    describe_histogram!(
        DEVICE_POLL_DURATION,
        Unit::Seconds,
        "Time a poll's (last) exchange with the device took."
    );
    describe_gauge!(
        DEVICE_QUEUE_DEPTH,
        "Commands waiting in the device's queue."
    );
    describe_counter!(LINK_BYTES_IN, Unit::Bytes, "Bytes read from the link.");
    describe_counter!(LINK_BYTES_OUT, Unit::Bytes, "Bytes written to the link.");
    describe_gauge!(JOURNAL_SEQ, "The last sequence number handed out.");
    describe_histogram!(
        JOURNAL_COMMIT_DURATION,
        Unit::Seconds,
        "Time one group commit to disk took."
    );
    describe_gauge!(JOURNAL_UNCOMMITTED, "Events recorded but not yet on disk.");
    describe_gauge!(PANELS_CONNECTED, "Panels connected now (past hello).");
    describe_counter!(
        PANEL_SESSIONS,
        "Panel hellos, by outcome: resumed, snapshot or refused."
    );
    describe_counter!(PANELS_DROPPED, "Panel sessions that ended, by reason.");
    describe_counter!(
        COMMANDS,
        "Commands that finished, by outcome (ok or the error code)."
    );
    describe_counter!(
        COMMANDS_DEDUPLICATED,
        "Commands answered from the ledger because their id was seen before."
    );
    describe_counter!(
        AUTH_FAILURES,
        "Requests with a missing or wrong token, by surface."
    );
    describe_counter!(
        RELOADS,
        "Configuration reloads, by result (applied or rejected)."
    );
}

/// `GET /metrics`: the text exposition, to loopback, the configured networks, or a
/// request [`Access`] accepts by its credential.
pub async fn serve(
    axum::extract::State(state): axum::extract::State<crate::http::AppState>,
    axum::extract::ConnectInfo(peer): axum::extract::ConnectInfo<std::net::SocketAddr>,
    headers: axum::http::HeaderMap,
) -> axum::response::Response {
    use axum::http::{StatusCode, header};
    use axum::response::IntoResponse;
    if !state.metrics_access.load().allows(peer.ip(), &headers) {
        let message = format!(
            "{} may not read metrics; add its network to [metrics] allow in the site file",
            peer.ip()
        );
        return (
            StatusCode::FORBIDDEN,
            axum::Json(serde_json::json!({"code": "forbidden", "message": message})),
        )
            .into_response();
    }
    let text = state.metrics.render(&state.hub.journal, state.hub.panels());
    (
        [(
            header::CONTENT_TYPE,
            "text/plain; version=0.0.4; charset=utf-8",
        )],
        text,
    )
        .into_response()
}

/// Counts a reload by its result: `applied` or `rejected`.
pub fn reloaded(result: &'static str) {
    counter!(RELOADS, "result" => result).increment(1);
}

/// Counts a finished panel command.
pub fn command_finished(outcome: &'static str) {
    counter!(COMMANDS, "outcome" => outcome).increment(1);
}

/// Counts a device failure of `kind` (an error code).
pub fn device_error(device: &str, kind: &'static str) {
    counter!(DEVICE_ERRORS, "device" => device.to_string(), "kind" => kind).increment(1);
}

/// A tiny wrapper so the link task's hot path reads as one call per chunk.
pub fn link_bytes(name: &'static str, link: &str, n: usize) {
    counter!(name, "link" => link.to_string()).increment(n as u64);
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn loopback_and_configured_networks_are_let_in_others_are_not() {
        let settings: MetricsSettings = toml::from_str(r#"allow = ["10.0.0.0/8"]"#).unwrap();
        let access = Access::new(&settings);
        let headers = axum::http::HeaderMap::new();
        assert!(access.allows("127.0.0.1".parse().unwrap(), &headers));
        assert!(access.allows("::1".parse().unwrap(), &headers));
        assert!(access.allows("::ffff:127.0.0.1".parse().unwrap(), &headers));
        assert!(access.allows("10.1.2.3".parse().unwrap(), &headers));
        assert!(!access.allows("192.168.1.5".parse().unwrap(), &headers));

        let with_token = access.with_credential(Arc::new(|_, h: &axum::http::HeaderMap| {
            h.get("authorization").is_some_and(|v| v == "Bearer m")
        }));
        let mut headers = axum::http::HeaderMap::new();
        assert!(!with_token.allows("192.168.1.5".parse().unwrap(), &headers));
        headers.insert("authorization", "Bearer m".parse().unwrap());
        assert!(with_token.allows("192.168.1.5".parse().unwrap(), &headers));

        // A reload changes the networks and keeps the credential check.
        let reloaded = with_token.renewed(&MetricsSettings {
            allow: vec!["192.168.1.0/24".parse().unwrap()],
        });
        assert!(reloaded.allows(
            "192.168.1.5".parse().unwrap(),
            &axum::http::HeaderMap::new()
        ));
        assert!(!reloaded.allows("10.1.2.3".parse().unwrap(), &axum::http::HeaderMap::new()));
        assert!(reloaded.allows("172.16.0.1".parse().unwrap(), &headers));
    }

    #[test]
    fn a_network_that_is_not_one_is_refused_when_the_site_is_read() {
        let err = toml::from_str::<MetricsSettings>(r#"allow = ["10.0.0.0/33"]"#).unwrap_err();
        assert!(
            err.to_string().contains("invalid IP address syntax"),
            "{err}"
        );
    }
}
