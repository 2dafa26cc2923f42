//! `driver = "qsys"`: a Q-SYS Core over QRC (JSON-RPC 2.0 on TCP 1710, each message ended
//! by a NUL). Data-driven, like Modbus: the profile's `[options.controls]` name the Core's
//! named controls (or component controls) it exposes, and the catalog is computed from
//! them: a point per control and a `set_<point>` command per writable one.
//!
//! - [`frame`]: JSON-RPC messages and the NUL framing.
//! - [`session`]: the client, a sans-IO [`crate::Protocol`]: logon, one change group with
//!   AutoPoll for every control, `Control.Set`/`Component.Set`, `NoOp` keep-alive.
//! - [`model`]: the simulated Core, a [`crate::kit::DeviceModel`].
//!
//! QRC cannot be scripted (`driver = "scripted"`): replies are matched by `id`, keys come
//! in any order and nest, and change groups push lists of changes.

mod cli;
pub mod frame;
pub mod model;
pub mod session;

use std::collections::{BTreeMap, BTreeSet};
use std::net::SocketAddr;
use std::time::Duration;

use serde::Deserialize;

pub use model::Model;
pub use session::Session;

use crate::{
    ArgSpec, ArgType, Catalog, CommandSpec, DriverInfo, DriverSettings, OptionsError, PathKey,
    PointSpec, PointType, Protocol, QuerySpec,
};

/// The Q-SYS driver as profiles name it.
pub const DRIVER: DriverInfo = DriverInfo {
    name: "qsys",
    catalog,
    build,
    link: crate::plain_link,
    simulator: Some(cli::SIMULATOR),
};

/// The port a Core serves QRC on.
pub const PORT: u16 = 1710;

/// A Core closes a socket that stayed silent for 60 s; the manual's clients speak every
/// 30 s, which leaves room for a lost packet.
const DEFAULT_KEEPALIVE: Duration = Duration::from_secs(30);
const MAX_KEEPALIVE: Duration = Duration::from_secs(55);
/// What a Core's panels use for AutoPoll; fast enough for a fader, light on the Core.
const DEFAULT_POLL_RATE: Duration = Duration::from_millis(200);

/// The profile's `[options]`.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Options {
    /// How often the Core pushes the change group's changes (`ChangeGroup.AutoPoll`'s
    /// `Rate`).
    #[serde(default = "default_poll_rate", with = "humantime_serde")]
    pub poll_rate: Duration,
    /// How long the session may stay silent before it sends a `NoOp`.
    #[serde(default = "default_keepalive", with = "humantime_serde")]
    pub keepalive: Duration,
    /// The user to log on as when the site gives a password (`Logon`).
    #[serde(default)]
    pub user: Option<String>,
    /// The controls exposed, by point name.
    pub controls: BTreeMap<String, ControlOptions>,
}

fn default_poll_rate() -> Duration {
    DEFAULT_POLL_RATE
}

fn default_keepalive() -> Duration {
    DEFAULT_KEEPALIVE
}

/// One control the profile exposes as a point.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ControlOptions {
    /// The control's name in the design (a named control, or a control of `component`).
    pub control: String,
    /// The named component the control belongs to; absent for a named control.
    #[serde(default)]
    pub component: Option<String>,
    #[serde(rename = "type")]
    pub kind: ControlType,
    /// Range of a `number` control, checked before a set reaches the Core.
    #[serde(default)]
    pub min: Option<f64>,
    #[serde(default)]
    pub max: Option<f64>,
    /// Whether panels may set it (a `set_<point>` command).
    #[serde(default)]
    pub writable: bool,
    #[serde(default)]
    pub unit: Option<String>,
    #[serde(default)]
    pub label: Option<String>,
    #[serde(default)]
    pub description: String,
}

/// How a control's value reads: QRC carries every control as a `Value` (a number, 0/1
/// for a button) and a `String`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum ControlType {
    /// The `Value` as a number (a gain in dB).
    Number,
    /// The `Value` as on (non-zero) or off (a mute).
    Bool,
    /// The `String` (a text box, a status).
    String,
}

impl ControlOptions {
    /// Where the Core knows it: `(component, control)`.
    pub fn key(&self) -> (Option<&str>, &str) {
        (self.component.as_deref(), &self.control)
    }
}

/// The point that shows the Core's engine state (`Active`, `Standby`, `Idle`), read by
/// the [`STATUS_QUERY`] and pushed by the Core as `EngineStatus`.
pub const STATE_POINT: &str = "core_state";
/// The query that reads the Core's status (`StatusGet`); polled by default every 30 s,
/// it also tells the gateway the Core answers.
pub const STATUS_QUERY: &str = "status";
/// The engine states a Core reports.
pub const ENGINE_STATES: [&str; 3] = ["Active", "Standby", "Idle"];

/// The prefix of the command that sets a point.
pub const SET_PREFIX: &str = "set_";

impl Options {
    /// Reads and checks the options; each problem names its key.
    pub fn from_settings(settings: &DriverSettings) -> Result<Options, OptionsError> {
        let options: Options = settings.options()?;
        options.check()?;
        Ok(options)
    }

    fn check(&self) -> Result<(), OptionsError> {
        let at = |keys: &[&str]| -> Vec<PathKey> {
            keys.iter().map(|k| PathKey::Key(k.to_string())).collect()
        };
        if self.controls.is_empty() {
            return Err(OptionsError::at_key(
                "controls",
                "name at least one control: [options.controls.<point>] with `control` and `type`",
            ));
        }
        if self.poll_rate < Duration::from_millis(50) || self.poll_rate > Duration::from_secs(60) {
            return Err(OptionsError::at(
                at(&["poll_rate"]),
                "`poll_rate` must be between 50ms and 60s",
            ));
        }
        if self.keepalive < Duration::from_secs(1) || self.keepalive > MAX_KEEPALIVE {
            return Err(OptionsError::at(
                at(&["keepalive"]),
                "`keepalive` must be between 1s and 55s: a Core closes a socket silent for 60s",
            ));
        }
        let mut seen = BTreeSet::new();
        for (point, control) in &self.controls {
            let here = |key: &str| at(&["controls", point, key]);
            if point == crate::CATALOG_POINT || point == STATE_POINT || point.is_empty() {
                return Err(OptionsError::at(
                    at(&["controls", point]),
                    format!("`{point}` cannot name a point; choose another name"),
                ));
            }
            if !seen.insert(control.key()) {
                return Err(OptionsError::at(
                    here("control"),
                    format!(
                        "control `{}` is already exposed by another point",
                        control.control
                    ),
                ));
            }
            if control.kind != ControlType::Number
                && (control.min.is_some() || control.max.is_some())
            {
                return Err(OptionsError::at(
                    here("min"),
                    "`min` and `max` apply to `number` controls only",
                ));
            }
            if let (Some(min), Some(max)) = (control.min, control.max)
                && min > max
            {
                return Err(OptionsError::at(
                    here("max"),
                    format!("`max` ({max}) is below `min` ({min})"),
                ));
            }
        }
        Ok(())
    }
}

/// The points and commands the profile's controls give.
pub fn catalog(settings: &DriverSettings) -> Result<Catalog, OptionsError> {
    let options = Options::from_settings(settings)?;
    let mut catalog = Catalog::default();
    for (point, control) in &options.controls {
        let kind = match control.kind {
            ControlType::Number => PointType::Number,
            ControlType::Bool => PointType::Bool,
            ControlType::String => PointType::String,
        };
        let description = if control.description.is_empty() {
            match &control.component {
                Some(component) => format!("control `{}` of `{component}`", control.control),
                None => format!("named control `{}`", control.control),
            }
        } else {
            control.description.clone()
        };
        let mut spec = PointSpec::new(kind, description.clone());
        spec.unit = control.unit.clone();
        spec.label = control.label.clone();
        catalog.points.insert(point.clone(), spec);
        if control.writable {
            let mut value = ArgSpec::new(
                match control.kind {
                    ControlType::Number => ArgType::Number,
                    ControlType::Bool => ArgType::Bool,
                    ControlType::String => ArgType::String,
                },
                "the new value",
            );
            value.min = control.min;
            value.max = control.max;
            let mut command = CommandSpec::new(format!("Sets {description}.")).arg("value", value);
            command.label = control.label.clone();
            // A newer set of the same control replaces a queued older one.
            command.conflate = Some(true);
            catalog
                .commands
                .insert(format!("{SET_PREFIX}{point}"), command);
        }
    }
    let mut state = PointSpec::new(PointType::Enum, "the Core's engine state");
    state.values = ENGINE_STATES.iter().map(|s| s.to_string()).collect();
    catalog.points.insert(STATE_POINT.into(), state);
    catalog.queries.push(QuerySpec {
        name: STATUS_QUERY.into(),
        every: Some(Duration::from_secs(30)),
        description: "the Core's status (StatusGet)".into(),
        defined_at: Vec::new(),
    });
    Ok(catalog)
}

fn build(settings: &DriverSettings) -> Result<Box<dyn Protocol>, String> {
    let options = Options::from_settings(settings).map_err(|e| e.to_string())?;
    Ok(Box::new(Session::new(options, settings.password.clone())))
}

/// Serves a simulated Core with the controls of `options` on TCP at `listen`.
pub fn serve(
    options: &Options,
    password: Option<String>,
    listen: SocketAddr,
) -> std::io::Result<crate::kit::Served<Model>> {
    crate::kit::serve_tcp(
        Model::from_options(options, password),
        listen,
        "Q-SYS simulator",
    )
}

#[cfg(test)]
mod tests;
