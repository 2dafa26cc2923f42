//! PJLink (JBMIA) class 1 and 2 over TCP: the control protocol nearly every network
//! projector speaks, and many flat panels.
//!
//! - [`frame`]: commands, replies, greetings and the MD5 digest on the wire.
//! - [`session`]: the client ([`Session`]), driven by the gateway's device runtime.
//! - [`model`]: what a projector answers, including warm-up and cool-down.
//! - [`simulator`]: the model on a TCP socket, for tests, demos and panel work.
//!
//! Profile options (`[options]` table):
//! - `inputs`: friendly input names to PJLink codes, e.g. `{ hdmi1 = "32" }`. Panels may
//!   also send raw codes; reports use the friendly name when a code has one.
//! - `class`: `1` (default) or `2`. Class 2 sends INPT/INST as class 2 (letter indexes,
//!   type 6) and adds the serial number and software version to the `info` poll.

mod cli;
pub mod frame;
pub mod model;
pub mod session;
pub mod simulator;

pub use session::{Options, Session};

use std::sync::LazyLock;

use crate::{Catalog, DriverInfo, DriverSettings, OptionsError};

/// The PJLink driver as profiles name it (`driver = "pjlink"`).
pub const DRIVER: DriverInfo = DriverInfo {
    name: "pjlink",
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
