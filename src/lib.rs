//! avgate: an AV control gateway.
//!
//! Drivers talk to a room's AV equipment; what the devices report becomes numbered
//! events; a WebSocket hub streams them to touch panels and carries the panels' commands
//! back. ARCHITECTURE.md has the picture; docs/PROTOCOL.md the panel protocol.
//!
//! # Layout
//!
//! - [`config`]: the site file and device profiles, checked up front with errors that
//!   name file, line and field.
//! - [`runtime`]: one task per link (and the devices on it): connection, reconnect with
//!   backoff, the command queues, polls, timeouts. Drives the sans-IO protocol cores in `avgate-drivers`.
//! - [`journal`]: the numbered record of every change, the current state, and the window
//!   of recent events that resuming panels replay.
//! - [`store`]: the embedded redb file behind the journal, the command ledger and the
//!   audit log; group commits, retention, recovery.
//! - [`router`]: checks a panel's command against the profile, drops duplicate ids, queues
//!   it on the device, keeps its outcome (durably, with a store).
//! - [`audit`]: every command, who sent it and what came of it.
//! - [`hub`]: WebSocket sessions: hello, snapshot or replay, a cursor into the journal.
//! - [`accept`]: the accept loop: connection caps, header deadline, TCP_NODELAY.
//! - [`http`]: the axum server: `/ws`, `/api/*` and `/healthz`.
//! - [`web`]: what browsers load: the room page, `/avgate.js`, panel pages, the status page.
//! - [`metrics`]: the Prometheus metrics and who may read `/metrics`.
//! - [`mqtt`]: the bridge to an MQTT broker: the journal's state as retained messages.
//! - [`history`]: `GET /api/history`, past events read back from the store.
//! - [`command`]: command outcomes and the error codes panels see.
//! - [`reload`]: applying a changed site file to the running gateway (SIGHUP).
//! - [`gateway`]: wires the parts together and shuts them down as one.
//! - [`systemd`]: readiness, reload, watchdog and status notifications to systemd.
//! - [`trace`]: wire traces of a device's bytes, on for a limited time, credentials hidden.
//! - [`demo`]: the simulated demo room; [`cli`]: the `avgate` command; [`simulate`]:
//!   `avgate simulate`, one device simulator on its own.

pub mod accept;
pub mod audit;
pub mod auth;
pub mod cli;
pub mod command;
pub mod config;
pub mod demo;
pub mod demo_venue;
pub mod gateway;
pub mod history;
pub mod http;
pub mod hub;
pub mod journal;
pub mod macros;
pub mod metrics;
pub mod mqtt;
pub mod pattern;
pub mod reload;
pub mod router;
pub mod runtime;
pub mod simulate;
pub mod store;
pub mod systemd;
pub mod tls;
pub mod trace;
pub mod web;

pub use gateway::Gateway;
