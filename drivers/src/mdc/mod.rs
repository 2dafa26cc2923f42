//! Samsung MDC (Multiple Display Control): binary frames over RS-232 and TCP 1515.
//!
//! - [`frame`]: `AA | CMD | ID | LEN | DATA | CHK` frames, ACK/NAK replies, the stream
//!   reader, input source and aspect names.
//! - [`session`]: the client ([`Session`]), driven by the gateway's device runtime.
//! - [`model`]: what the displays on one line answer, each by its id.
//! - [`simulator`]: the model on a TCP socket and on a pseudo-terminal (an RS-232 daisy
//!   chain), for tests, demos and panels.
//!
//! Profile options (`[options]` table), see [`session::Options`]:
//! - `display_id` (0 to 253, default 1): the ID set in the display's menu.
//! - `inputs` (optional): friendly source names, `{ laptop = "hdmi1" }`.
//!
//! Commands: `power {on}`, `volume {level: 0..=100}`, `mute {on}`, `input {source}`.
//! Query: `status`. Points: `power` ("on"/"off"), `volume`, `mute`, `input`, `aspect`;
//! see [`session`] for how replies are matched and what each point holds.

mod cli;
pub mod frame;
pub mod model;
pub mod session;
pub mod simulator;

pub use session::{Options, Session};

use std::sync::LazyLock;

use crate::{Catalog, DriverInfo, DriverSettings, OptionsError};

/// The Samsung MDC driver as profiles name it (`driver = "samsung-mdc"`).
pub const DRIVER: DriverInfo = DriverInfo {
    name: "samsung-mdc",
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
