//! Site configuration and device profiles: reading, checking, and errors that point at the
//! file, line and field at fault.
//!
//! A site file names the devices in a room; each device names a profile (one TOML per
//! device model, in `device-profiles/` or a directory the site adds). Everything is
//! checked up front, before anything connects: [`load_site`] either returns a site
//! every part of the gateway can trust, or every problem it found.

mod auth;
mod error;
pub mod hints;
pub mod lease;
pub mod macros;
mod options;
pub mod panel;
pub mod profile;
mod range;
pub mod schedules;
pub mod simulate;
pub mod site;

pub use auth::AuthToken;
pub use error::{ConfigError, ConfigErrors};
pub use macros::Macro;
pub use panel::{Panel, PanelContent, PanelPage};
pub use profile::{ArgSpec, ArgType, CommandSpec, PointSpec, Profile};
pub use site::{DeviceConfig, Link, Site, load_site, parse_site, parse_site_with};

use std::path::Path;

/// Deserializes `text` (the contents of `path`) with serde, turning a toml error into a
/// [`ConfigError`] that carries the line and column.
fn parse_toml<T: serde::de::DeserializeOwned>(path: &Path, text: &str) -> Result<T, ConfigError> {
    toml::from_str(text).map_err(|err| {
        ConfigError::at(path, text, err.span(), err.message().trim_end().to_string())
    })
}

/// 1-based line and column of a byte offset.
fn line_col(text: &str, offset: usize) -> (usize, usize) {
    let before = &text[..offset.min(text.len())];
    let line = before.matches('\n').count() + 1;
    let column = before.rsplit('\n').next().map_or(0, |l| l.chars().count()) + 1;
    (line, column)
}
