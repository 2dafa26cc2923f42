//! Extron SIS (Simple Instruction Set): ASCII over RS-232 and Telnet.
//!
//! - [`frame`]: commands, response lines, the `Password:` prompt and `Exx` codes.
//! - [`session`]: the client ([`Session`]), driven by the gateway's device runtime.
//! - [`model`]: what a switcher answers: ties, volume and mutes per output.
//! - [`simulator`]: the model on a TCP socket (Telnet-like), for tests, demos and panels.
//!
//! Profile options (`[options]` table), see [`session::Options`]:
//! - `outputs` (default 1): number of outputs; 1 means a single-output product.
//! - `inputs` (optional): number of inputs, to refuse out-of-range ties up front.
//! - `volume_max` (default 100): top of the unit's raw volume scale.
//!
//! Points are per output, so [`DRIVER`] lists patterns (`route.*` stands for `route.1`,
//! `route.2`, ...); see [`session`] for exactly what each means.

mod cli;
pub mod frame;
pub mod model;
pub mod session;
pub mod simulator;

pub use session::{Options, Session};

use std::sync::LazyLock;

use crate::{Catalog, DriverInfo, DriverSettings, OptionsError};

/// The Extron SIS driver as profiles name it (`driver = "extron-sis"`).
pub const DRIVER: DriverInfo = DriverInfo {
    name: "extron-sis",
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
