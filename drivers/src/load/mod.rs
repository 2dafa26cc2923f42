//! A load generator: a pretend device that publishes a stream of changing values at a set
//! rate, for benchmarks, soak tests and sizing a site before the hardware arrives.
//!
//! - [`frame`]: the line protocol (`EV 3 1042`, `SET 0 7`, `RATE 500`, `OK`, `ERR ...`).
//! - [`session`]: the client ([`Session`]), driven by the gateway's device runtime.
//! - [`model`]: what the device answers to each request.
//! - [`simulator`]: the model on a TCP socket plus the publisher that paces the events;
//!   `avgate simulate load` and the bench run it.
//!
//! The device has `points` integer points, `value.0` .. `value.<points-1>`. Every event
//! it publishes carries the next number of one counter (1, 2, 3, ...) on the next point in
//! turn, so every event is a change and a reader can tell a gap or a reordering from the
//! values alone. The driver takes no `[options]`.

mod cli;
pub mod frame;
pub mod model;
pub mod session;
pub mod simulator;

pub use session::Session;

use std::sync::LazyLock;

use crate::{Catalog, DriverInfo, DriverSettings, OptionsError};

/// The load driver as profiles name it (`driver = "load"`).
pub const DRIVER: DriverInfo = DriverInfo {
    name: "load",
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
    session::check_options(settings)?;
    Ok(CATALOG.clone())
}
