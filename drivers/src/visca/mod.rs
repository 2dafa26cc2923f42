//! Sony VISCA: PTZ cameras over serial (RS-232/RS-422), Sony VISCA over IP (UDP 52381)
//! and bare VISCA over TCP (PTZOptics-style port 5678, serial device servers).
//!
//! - [`frame`]: packets, replies and error codes, the stream packet reader, and the VISCA
//!   over IP header with its sequence numbers.
//! - [`session`]: the client ([`Session`]), driven by the gateway's device runtime.
//! - [`model`]: what a camera (or a serial chain of them) answers: power, zoom, pan/tilt,
//!   presets, and the VISCA over IP sequence-number rules.
//! - [`simulator`]: the model on a UDP socket (VISCA over IP), a TCP socket or a
//!   pseudo-terminal, for tests, demos and panels.
//!
//! Profile options (`[options]` table), see [`session::Options`]:
//! - `framing` (default `"ip"`): `"ip"`, `"serial"` or `"tcp"`.
//! - `address` (default 1): the camera's address on a serial chain, 1 to 7.
//! - `resend_interval_ms` (default 300): VISCA over IP wait before a resend.
//!
//! Commands: `power` {on}, `zoom` {action: tele|wide|stop, speed?: 0-7}, `zoom_to`
//! {position: 0-16384}, `pan_tilt` {direction, pan_speed?: 1-24, tilt_speed?: 1-20},
//! `preset` {action: recall|set, number: 0-127}. Queries: `power`, `zoom`, `pan_tilt`.
//! Points: `power`, `zoom`, `pan`, `tilt`, `preset` (see [`session`]).

mod cli;
pub mod frame;
pub mod model;
pub mod session;
pub mod simulator;

pub use session::{Framing, Options, Session};

use std::sync::LazyLock;

use crate::{Catalog, DriverInfo, DriverSettings, OptionsError};

/// The VISCA driver as profiles name it (`driver = "sony-visca"`).
pub const DRIVER: DriverInfo = DriverInfo {
    name: "sony-visca",
    catalog,
    build: session::build,
    link: crate::plain_link,
    simulator: Some(cli::SIMULATOR),
};

/// Everything the driver reports and takes, whatever the options (`catalog.toml`).
static CATALOG: LazyLock<Catalog> =
    LazyLock::new(|| Catalog::from_toml(include_str!("catalog.toml")));

/// The constant catalog, once the options are known to be good.
fn catalog(settings: &DriverSettings) -> Result<Catalog, OptionsError> {
    Options::from_settings(settings)?;
    Ok(CATALOG.clone())
}
