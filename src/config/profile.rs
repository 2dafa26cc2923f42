//! Device profiles: one TOML file per device model, data rather than code.
//!
//! A profile says which driver speaks to the model, how to reach it, which points it
//! reports, which commands it takes (with typed arguments the router checks before
//! anything reaches a device) and what to poll how often.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::time::Duration;

use avgate_drivers::{DriverInfo, DriverSettings, Map, Value};
use serde::{Deserialize, Serialize};
use toml::Spanned;

use super::{ConfigError, ConfigErrors, parse_toml, register_map, scripted};

/// Profiles compiled into the binary, so `avgate demo` and a site that uses only stock
/// models work from any directory.
const BUILT_IN: &[(&str, &str)] = &[
    (
        "pjlink-projector",
        include_str!("../../device-profiles/pjlink-projector.toml"),
    ),
    (
        "extron-sis-switcher",
        include_str!("../../device-profiles/extron-sis-switcher.toml"),
    ),
    (
        "extron-in1608",
        include_str!("../../device-profiles/extron-in1608.toml"),
    ),
    (
        "samsung-mdc-display",
        include_str!("../../device-profiles/samsung-mdc-display.toml"),
    ),
    (
        "samsung-qmr",
        include_str!("../../device-profiles/samsung-qmr.toml"),
    ),
    (
        "sony-visca-camera",
        include_str!("../../device-profiles/sony-visca-camera.toml"),
    ),
    (
        "sony-visca-serial",
        include_str!("../../device-profiles/sony-visca-serial.toml"),
    ),
    (
        "sony-srg-300h",
        include_str!("../../device-profiles/sony-srg-300h.toml"),
    ),
    (
        "modbus-power-sequencer-8",
        include_str!("../../device-profiles/modbus-power-sequencer-8.toml"),
    ),
    (
        "modbus-environment-sensor",
        include_str!("../../device-profiles/modbus-environment-sensor.toml"),
    ),
    (
        "kramer-protocol-3000",
        include_str!("../../device-profiles/kramer-protocol-3000.toml"),
    ),
    (
        "shure-ulxd-receiver",
        include_str!("../../device-profiles/shure-ulxd-receiver.toml"),
    ),
    (
        "biamp-tesira",
        include_str!("../../device-profiles/biamp-tesira.toml"),
    ),
    (
        "nec-display",
        include_str!("../../device-profiles/nec-display.toml"),
    ),
    (
        "blackmagic-videohub",
        include_str!("../../device-profiles/blackmagic-videohub.toml"),
    ),
    (
        "load-generator",
        include_str!("../../device-profiles/load-generator.toml"),
    ),
];

/// A checked profile.
#[derive(Debug, Clone, Serialize)]
pub struct Profile {
    /// The name sites use: the file name without `.toml`.
    pub id: String,
    /// Human name of the model.
    pub name: String,
    pub description: String,
    pub driver: String,
    #[serde(skip)]
    pub driver_info: &'static DriverInfo,
    #[serde(skip)]
    pub options: Map<String, Value>,
    #[serde(skip)]
    pub transport: Transport,
    #[serde(skip)]
    pub timing: Timing,
    #[serde(skip)]
    pub polls: Vec<Poll>,
    pub points: BTreeMap<String, PointSpec>,
    pub commands: BTreeMap<String, CommandSpec>,
    /// Where the profile came from, for messages.
    #[serde(skip)]
    pub source: PathBuf,
}

/// How the model is reached. A device's site entry picks the link (`address` for TCP,
/// `serial_port` for RS-232); the profile gives the defaults for each.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Transport {
    /// Default port, used when a device's address gives none.
    pub port: Option<u16>,
    /// What a network address means: a TCP connection (most devices) or UDP datagrams
    /// (VISCA over IP, PJLink class 2 notifications).
    #[serde(default)]
    pub network: Network,
    /// Default line settings on a serial port.
    #[serde(default)]
    pub serial: SerialSettings,
    /// Whether the device keeps one connection open (most do) or closes it after every
    /// reply (`"per_request"`, some projector firmware): then a close between two
    /// requests is expected and never counts against the device.
    #[serde(default)]
    pub connection: Connection,
}

/// How a device treats its TCP connection.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Connection {
    #[default]
    Persistent,
    PerRequest,
}

#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Network {
    #[default]
    Tcp,
    Udp,
}

/// RS-232 line settings.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize, Serialize)]
#[serde(deny_unknown_fields, default)]
pub struct SerialSettings {
    pub baud: u32,
    pub data_bits: DataBits,
    pub parity: Parity,
    pub stop_bits: StopBits,
    pub flow_control: FlowControl,
}

impl std::fmt::Display for SerialSettings {
    /// The way manuals write it: `9600 8N1`, plus the flow control when there is one.
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let data = match self.data_bits {
            DataBits::Seven => 7,
            DataBits::Eight => 8,
        };
        let parity = match self.parity {
            Parity::None => 'N',
            Parity::Even => 'E',
            Parity::Odd => 'O',
        };
        let stop = match self.stop_bits {
            StopBits::One => 1,
            StopBits::Two => 2,
        };
        write!(f, "{} {data}{parity}{stop}", self.baud)?;
        match self.flow_control {
            FlowControl::None => Ok(()),
            FlowControl::Software => f.write_str(" XON/XOFF"),
            FlowControl::Hardware => f.write_str(" RTS/CTS"),
        }
    }
}

impl Default for SerialSettings {
    /// 9600 8N1, no flow control: what most AV equipment ships with.
    fn default() -> Self {
        Self {
            baud: 9600,
            data_bits: DataBits::Eight,
            parity: Parity::None,
            stop_bits: StopBits::One,
            flow_control: FlowControl::None,
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize, Serialize)]
pub enum DataBits {
    #[serde(rename = "7")]
    Seven,
    #[serde(rename = "8")]
    Eight,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Parity {
    None,
    Even,
    Odd,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize, Serialize)]
pub enum StopBits {
    #[serde(rename = "1")]
    One,
    #[serde(rename = "2")]
    Two,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum FlowControl {
    None,
    Software,
    Hardware,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Timing {
    /// How long a command or poll may take before it fails with `timeout`.
    #[serde(default = "default_command_timeout", with = "humantime_serde")]
    pub command_timeout: Duration,
    /// How long connecting plus the device's greeting may take.
    #[serde(default = "default_connect_timeout", with = "humantime_serde")]
    pub connect_timeout: Duration,
    /// Quiet time on the link between the end of one exchange and the next transmission,
    /// for devices that drop a command sent hard on the heels of the last answer.
    #[serde(default, with = "humantime_serde")]
    pub pacing: Duration,
}

impl Default for Timing {
    fn default() -> Self {
        Self {
            command_timeout: default_command_timeout(),
            connect_timeout: default_connect_timeout(),
            pacing: Duration::ZERO,
        }
    }
}

fn default_command_timeout() -> Duration {
    Duration::from_secs(5)
}

fn default_connect_timeout() -> Duration {
    Duration::from_secs(5)
}

/// The shortest poll interval a profile or site may set: faster polling floods the link and
/// the journal for no benefit a panel can see.
pub const MIN_POLL_INTERVAL: Duration = Duration::from_millis(100);

#[derive(Debug, Clone)]
pub struct Poll {
    pub query: String,
    pub every: Duration,
}

#[derive(Debug, Clone, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct PointSpec {
    #[serde(rename = "type")]
    pub kind: PointType,
    /// Allowed values of an `enum` point.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub values: Vec<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub unit: Option<String>,
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub description: String,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum PointType {
    Bool,
    Integer,
    Number,
    String,
    Enum,
    Array,
    Object,
}

#[derive(Debug, Clone, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct CommandSpec {
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub description: String,
    #[serde(default)]
    pub args: BTreeMap<String, ArgSpec>,
    /// For a set-style command, the arguments that name what it sets (`output` for
    /// `volume`), as opposed to the value (`level`): a newer command with the same
    /// arguments given and the same target replaces a queued older one, which is answered
    /// `superseded`. `None`: every command runs. After [`Profile::parse`], the profile's
    /// own `target` or the shared vocabulary's default ([`SET_STYLE`]).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub target: Option<Vec<String>>,
    /// `false` turns conflation off for a command the vocabulary calls set-style; `true`
    /// turns it on with `target` (or no target: one value for the whole device).
    #[serde(default, skip_serializing)]
    pub conflate: Option<bool>,
}

/// Set-style commands of the shared vocabulary, with the arguments that (when a profile
/// declares them) name what is set. A profile's `target` or `conflate` overrides this.
/// `preset` is not here: storing a preset is an action, not a value.
pub const SET_STYLE: &[(&str, &[&str])] = &[
    ("power", &[]),
    ("input", &["output"]),
    ("volume", &["output", "channel"]),
    ("mute", &["output", "channel"]),
    ("route", &["output", "kind"]),
    ("zoom_to", &[]),
    ("write", &["point"]),
];

impl CommandSpec {
    /// Settles `target` from the profile's `target`/`conflate` and the vocabulary's default
    /// for a command named `name`; says what is wrong with them otherwise.
    fn settle_target(&mut self, name: &str) -> Result<(), String> {
        let default = || {
            SET_STYLE
                .iter()
                .find(|(set_style, _)| *set_style == name)
                .map(|(_, target)| {
                    target
                        .iter()
                        .filter(|arg| self.args.contains_key(**arg))
                        .map(|arg| arg.to_string())
                        .collect::<Vec<_>>()
                })
        };
        self.target = match (self.conflate, self.target.take()) {
            (Some(false), Some(_)) => {
                return Err(format!(
                    "command `{name}`: `target` makes it set-style but `conflate = false` says it is not; drop one"
                ));
            }
            (Some(false), None) => None,
            (_, Some(target)) => Some(target),
            (Some(true), None) => Some(default().unwrap_or_default()),
            (None, None) => default(),
        };
        if let Some(unknown) = self
            .target
            .iter()
            .flatten()
            .find(|arg| !self.args.contains_key(*arg))
        {
            let known: Vec<&str> = self.args.keys().map(String::as_str).collect();
            return Err(format!(
                "command `{name}`: `target` names `{unknown}`, which is not one of its arguments ({})",
                if known.is_empty() {
                    "it has none".to_string()
                } else {
                    known.join(", ")
                }
            ));
        }
        Ok(())
    }
}

#[derive(Debug, Clone, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct ArgSpec {
    #[serde(rename = "type")]
    pub kind: ArgType,
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub optional: bool,
    /// Allowed values of an `enum` argument.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub values: Vec<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub min: Option<f64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub max: Option<f64>,
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub description: String,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum ArgType {
    Bool,
    Integer,
    Number,
    String,
    Enum,
    /// A bool, number or string: the device checks it against what it expects (a Modbus
    /// `write` takes whatever the point's type is).
    Any,
}

impl ArgSpec {
    pub fn new(kind: ArgType, description: &str) -> ArgSpec {
        ArgSpec {
            kind,
            optional: false,
            values: Vec::new(),
            min: None,
            max: None,
            description: description.to_string(),
        }
    }

    pub fn values(mut self, values: Vec<String>) -> ArgSpec {
        self.values = values;
        self
    }
}

impl CommandSpec {
    /// Checks a panel's arguments against the schema. The message names the argument and
    /// what was expected, for the panel developer.
    pub fn check_args(&self, args: &Map<String, Value>) -> Result<(), String> {
        if let Some(unknown) = args.keys().find(|k| !self.args.contains_key(*k)) {
            let known: Vec<&str> = self.args.keys().map(String::as_str).collect();
            return Err(format!(
                "unknown argument `{unknown}`; this command takes: {}",
                if known.is_empty() {
                    "no arguments".to_string()
                } else {
                    known.join(", ")
                }
            ));
        }
        for (name, spec) in &self.args {
            match args.get(name) {
                None | Some(Value::Null) if spec.optional => {}
                None | Some(Value::Null) => {
                    return Err(format!("missing argument `{name}` ({})", spec.describe()));
                }
                Some(value) => spec
                    .check(value)
                    .map_err(|why| format!("argument `{name}`: {why}"))?,
            }
        }
        Ok(())
    }
}

impl ArgSpec {
    fn describe(&self) -> String {
        match self.kind {
            ArgType::Enum => format!("one of {}", self.values.join(", ")),
            ArgType::Bool => "true or false".into(),
            ArgType::Integer => "an integer".into(),
            ArgType::Number => "a number".into(),
            ArgType::String => "a string".into(),
            ArgType::Any => "a bool, number or string".into(),
        }
    }

    fn check(&self, value: &Value) -> Result<(), String> {
        let type_ok = match self.kind {
            ArgType::Bool => value.is_boolean(),
            ArgType::Integer => value.is_i64() || value.is_u64(),
            ArgType::Number => value.is_number(),
            ArgType::String => value.is_string(),
            ArgType::Enum => value
                .as_str()
                .is_some_and(|s| self.values.iter().any(|v| v == s)),
            ArgType::Any => value.is_boolean() || value.is_number() || value.is_string(),
        };
        if !type_ok {
            return Err(format!("expected {}, got {value}", self.describe()));
        }
        if let Some(n) = value.as_f64()
            && (self.min.is_some_and(|min| n < min) || self.max.is_some_and(|max| n > max))
        {
            return Err(format!(
                "{n} is out of range {}..={}",
                self.min.map_or("".into(), |v| v.to_string()),
                self.max.map_or("".into(), |v| v.to_string())
            ));
        }
        Ok(())
    }
}

/// The file as written; checked and turned into a [`Profile`] by [`Profile::parse`].
#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct ProfileFile {
    name: String,
    #[serde(default)]
    description: String,
    driver: Spanned<String>,
    /// Driver-specific settings, checked by the driver itself.
    #[serde(default)]
    options: Option<Spanned<toml::Table>>,
    #[serde(default)]
    transport: Transport,
    #[serde(default)]
    timing: Timing,
    #[serde(default)]
    poll: Vec<PollFile>,
    #[serde(default)]
    points: BTreeMap<Spanned<String>, PointSpec>,
    #[serde(default)]
    commands: BTreeMap<Spanned<String>, CommandSpec>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct PollFile {
    query: Spanned<String>,
    #[serde(with = "humantime_serde")]
    every: Duration,
}

impl Profile {
    /// Parses and checks a profile against its driver. `id` is the name sites refer to.
    pub fn parse(id: &str, path: &Path, text: &str) -> Result<Profile, ConfigErrors> {
        let file: ProfileFile = parse_toml(path, text)?;
        let mut errors = Vec::new();
        let mut err =
            |span, message: String| errors.push(ConfigError::at(path, text, span, message));

        let Some(driver_info) = avgate_drivers::driver(file.driver.get_ref()) else {
            let known: Vec<&str> = avgate_drivers::drivers().iter().map(|d| d.name).collect();
            err(
                Some(file.driver.span()),
                format!(
                    "unknown driver `{}`; this build has: {}",
                    file.driver.get_ref(),
                    known.join(", ")
                ),
            );
            return Err(ConfigErrors(errors));
        };

        let options = match file
            .options
            .as_ref()
            .map(|o| serde_json::to_value(o.get_ref()))
        {
            Some(Ok(Value::Object(map))) => map,
            _ => Map::new(),
        };
        // A register map, or a script, declares the points, polls and commands itself.
        let is_scripted = driver_info.name == avgate_drivers::scripted::DRIVER.name;
        let derived = if driver_info.name == avgate_drivers::modbus::DRIVER.name || is_scripted {
            for (what, span) in [
                ("[points]", file.points.keys().next().map(|k| k.span())),
                ("[commands]", file.commands.keys().next().map(|k| k.span())),
                ("[[poll]]", file.poll.first().map(|p| p.query.span())),
            ] {
                if span.is_some() {
                    let message = if is_scripted {
                        format!(
                            "a scripted profile takes no {what}: its points, commands and polls come from [options.points], [options.commands] and [options.queries]"
                        )
                    } else {
                        format!(
                            "a modbus profile takes no {what}: its points, polls and the `write` command come from [[options.points]] and poll_groups"
                        )
                    };
                    err(span, message);
                }
            }
            let derived = if is_scripted {
                scripted::derive(text)
            } else {
                register_map::derive(&options, text)
            };
            match derived {
                Ok(derived) => Some(derived),
                Err(located) => {
                    errors.extend(
                        located.into_iter().map(|located| {
                            ConfigError::at(path, text, located.span, located.message)
                        }),
                    );
                    return Err(ConfigErrors(errors));
                }
            }
        } else {
            None
        };
        let settings = DriverSettings {
            options: options.clone(),
            password: None,
        };
        if let Err(why) = (driver_info.build)(&settings) {
            err(
                file.options.as_ref().map(|o| o.span()),
                format!("[options]: {why}"),
            );
        }
        let mut commands: BTreeMap<String, CommandSpec> = BTreeMap::new();
        for (name, spec) in &file.commands {
            let mut spec = spec.clone();
            match spec.settle_target(name.get_ref()) {
                Ok(()) => {
                    commands.insert(name.get_ref().clone(), spec);
                }
                Err(why) => err(Some(name.span()), why),
            }
            if !driver_info.commands.contains(&name.get_ref().as_str()) {
                err(
                    Some(name.span()),
                    format!(
                        "command `{}` is not one the {} driver understands; it has: {}",
                        name.get_ref(),
                        driver_info.name,
                        driver_info.commands.join(", ")
                    ),
                );
            }
        }
        for (name, spec) in &file.points {
            if !driver_info.points.contains(&name.get_ref().as_str()) {
                err(
                    Some(name.span()),
                    format!(
                        "point `{}` is not one the {} driver reports; it has: {}",
                        name.get_ref(),
                        driver_info.name,
                        driver_info.points.join(", ")
                    ),
                );
            }
            if spec.kind == PointType::Enum && spec.values.is_empty() {
                err(
                    Some(name.span()),
                    format!("enum point `{}` needs `values = [...]`", name.get_ref()),
                );
            }
        }
        for poll in &file.poll {
            if !driver_info.queries.contains(&poll.query.get_ref().as_str()) {
                err(
                    Some(poll.query.span()),
                    format!(
                        "poll query `{}` is not one the {} driver has; it has: {}",
                        poll.query.get_ref(),
                        driver_info.name,
                        driver_info.queries.join(", ")
                    ),
                );
            }
            if poll.every < MIN_POLL_INTERVAL {
                err(
                    Some(poll.query.span()),
                    format!("poll `every` must be at least {MIN_POLL_INTERVAL:?}"),
                );
            }
        }
        if !errors.is_empty() {
            return Err(ConfigErrors(errors));
        }
        let mut profile = Profile {
            id: id.to_string(),
            name: file.name,
            description: file.description,
            driver: file.driver.into_inner(),
            driver_info,
            options,
            transport: file.transport,
            timing: file.timing,
            polls: file
                .poll
                .into_iter()
                .map(|p| Poll {
                    query: p.query.into_inner(),
                    every: p.every,
                })
                .collect(),
            points: file
                .points
                .into_iter()
                .map(|(k, v)| (k.into_inner(), v))
                .collect(),
            commands,
            source: path.to_path_buf(),
        };
        if let Some(derived) = derived {
            profile.points = derived.points;
            profile.commands = derived.commands;
            profile.polls = derived.polls;
            for (name, spec) in &mut profile.commands {
                spec.settle_target(name)
                    .expect("derived commands declare their arguments");
            }
        }
        Ok(profile)
    }

    /// Finds a profile by name: first `<dir>/<id>.toml` in each of `dirs`, then the
    /// profiles built into the binary.
    pub fn find(id: &str, dirs: &[PathBuf]) -> Option<Result<Profile, ConfigErrors>> {
        for dir in dirs {
            let path = dir.join(format!("{id}.toml"));
            if path.is_file() {
                return Some(match std::fs::read_to_string(&path) {
                    Ok(text) => Profile::parse(id, &path, &text),
                    Err(e) => {
                        Err(ConfigError::file(&path, format!("cannot read profile: {e}")).into())
                    }
                });
            }
        }
        BUILT_IN
            .iter()
            .find(|(name, _)| *name == id)
            .map(|(name, text)| {
                let path = PathBuf::from(format!("device-profiles/{name}.toml (built in)"));
                Profile::parse(name, &path, text)
            })
    }

    /// The spec of a point this profile declares: by its exact name, or by a pattern such
    /// as `route.*` that stands for `route.1`, `route.2`, ... (one per output).
    pub fn point(&self, name: &str) -> Option<&PointSpec> {
        self.points.get(name).or_else(|| {
            self.points.iter().find_map(|(pattern, spec)| {
                let prefix = pattern.strip_suffix('*')?;
                let rest = name.strip_prefix(prefix)?;
                (!rest.is_empty() && !rest.contains('.')).then_some(spec)
            })
        })
    }

    /// Names of the profiles built into the binary.
    pub fn built_in_names() -> impl Iterator<Item = &'static str> {
        BUILT_IN.iter().map(|(name, _)| *name)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn built_in(id: &str) -> Profile {
        Profile::find(id, &[])
            .expect("profile exists")
            .expect("profile is valid")
    }

    #[test]
    fn point_patterns_stand_for_numbered_points() {
        let profile = built_in("extron-sis-switcher");
        assert!(profile.point("route.3").is_some());
        assert!(profile.point("route.").is_none());
        assert!(profile.point("route.3.1").is_none());
        assert!(profile.point("routes").is_none());
        assert!(profile.point("part_number").is_some());
    }

    #[test]
    fn every_point_a_built_in_profile_can_be_sent_is_declared() {
        for id in Profile::built_in_names() {
            let profile = built_in(id);
            let undeclared: Vec<&str> = profile
                .driver_info
                .points
                .iter()
                .copied()
                .filter(|point| {
                    let example = point.replace('*', "1");
                    // A matrix switcher names its output in every volume and mute point
                    // (`volume.3`); a one-output model uses the bare names.
                    let outputs = profile.options.get("outputs").and_then(Value::as_u64);
                    let bare = ["volume", "audio_mute", "video_mute"];
                    let unused = match point.strip_suffix(".*") {
                        Some(base) => outputs == Some(1) && bare.contains(&base),
                        None => outputs > Some(1) && bare.contains(point),
                    };
                    !unused && profile.point(&example).is_none()
                })
                .collect();
            assert!(
                undeclared.is_empty(),
                "{id} drops points its driver reports: {undeclared:?}"
            );
        }
    }

    #[test]
    fn every_built_in_profile_is_valid() {
        for id in Profile::built_in_names() {
            built_in(id);
        }
    }

    #[test]
    fn unknown_field_names_line_and_field() {
        let text = "name = \"x\"\ndriver = \"pjlink\"\ncolour = \"red\"\n";
        let errs = Profile::parse("x", Path::new("x.toml"), text).unwrap_err();
        let shown = errs.to_string();
        assert!(
            shown.starts_with("x.toml:3:1: unknown field `colour`"),
            "{shown}"
        );
    }

    #[test]
    fn unknown_command_and_query_are_each_reported_at_their_line() {
        let text = "name = \"x\"\ndriver = \"pjlink\"\n\
                    [[poll]]\nquery = \"weather\"\nevery = \"5s\"\n[commands.launch]\n";
        let errs = Profile::parse("x", Path::new("x.toml"), text).unwrap_err();
        assert_eq!(errs.0.len(), 2, "{errs}");
        assert_eq!(errs.0[0].position.map(|p| p.0), Some(6), "{errs}");
        assert!(errs.0[0].message.contains("command `launch`"), "{errs}");
        assert_eq!(errs.0[1].position.map(|p| p.0), Some(4), "{errs}");
        assert!(errs.0[1].message.contains("poll query `weather`"), "{errs}");
    }

    #[test]
    fn set_style_commands_get_the_vocabulary_targets() {
        let target = |id: &str, command: &str| built_in(id).commands[command].target.clone();
        let owned = |names: &[&str]| Some(names.iter().map(|n| n.to_string()).collect());
        assert_eq!(target("extron-sis-switcher", "volume"), owned(&["output"]));
        assert_eq!(
            target("extron-sis-switcher", "route"),
            owned(&["output", "kind"])
        );
        assert_eq!(target("samsung-mdc-display", "volume"), owned(&[]));
        assert_eq!(target("pjlink-projector", "input"), owned(&[]));
        assert_eq!(
            target("modbus-power-sequencer-8", "write"),
            owned(&["point"])
        );
        // Actions are never conflated: a stored preset or a started move must run.
        assert_eq!(target("sony-visca-camera", "preset"), None);
        assert_eq!(target("sony-visca-camera", "pan_tilt"), None);
    }

    #[test]
    fn a_profile_sets_or_turns_off_conflation() {
        let parse = |command: &str| {
            let text = format!(
                "name = \"x\"\ndriver = \"extron-sis\"\n[commands.volume]\n\
                 args.level = {{ type = \"integer\" }}\nargs.output = {{ type = \"integer\" }}\n{command}"
            );
            Profile::parse("x", Path::new("x.toml"), &text)
        };
        let commands = |command: &str| parse(command).unwrap().commands;
        assert_eq!(commands("conflate = false\n")["volume"].target, None);
        assert_eq!(
            commands("conflate = true\n")["volume"].target,
            Some(vec!["output".to_string()])
        );
        assert_eq!(
            commands("target = []\n")["volume"].target,
            Some(Vec::new()),
            "one value for every output"
        );
        let error = parse("target = [\"zone\"]\n").unwrap_err().to_string();
        assert!(
            error.starts_with("x.toml:3:11:")
                && error.contains("`zone`")
                && error.contains("level, output"),
            "{error}"
        );
        let error = parse("target = [\"output\"]\nconflate = false\n")
            .unwrap_err()
            .to_string();
        assert!(error.contains("drop one"), "{error}");
    }

    #[test]
    fn args_are_checked_by_type_presence_and_name() {
        let profile = built_in("pjlink-projector");
        let power = &profile.commands["power"];
        let args = |v: Value| v.as_object().cloned().unwrap();
        assert!(
            power
                .check_args(&args(serde_json::json!({"on": true})))
                .is_ok()
        );
        let missing = power.check_args(&Map::new()).unwrap_err();
        assert!(missing.contains("missing argument `on`"), "{missing}");
        let wrong = power
            .check_args(&args(serde_json::json!({"on": "yes"})))
            .unwrap_err();
        assert!(wrong.contains("expected true or false"), "{wrong}");
        let extra = power
            .check_args(&args(serde_json::json!({"on": true, "fast": 1})))
            .unwrap_err();
        assert!(extra.contains("unknown argument `fast`"), "{extra}");
    }
}
