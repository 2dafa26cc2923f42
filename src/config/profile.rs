//! Device profiles: one TOML file per device model, data rather than code.
//!
//! A profile says which driver speaks to the model and how to reach it, and narrows and
//! labels the driver's catalog (`avgate_drivers::Catalog`): which of its points the model
//! reports, which of its commands it takes (with tighter argument ranges, fewer enum
//! values, its own descriptions) and what to poll how often. It can never contradict the
//! catalog: check-config says where it does. Without `[points]`, `[commands]` or
//! `[[poll]]` a profile offers everything the catalog has, polled at its default rates.

use std::collections::BTreeMap;
use std::ops::Range;
use std::path::{Path, PathBuf};
use std::time::Duration;

pub use avgate_drivers::{ArgSpec, ArgType, CommandSpec, PointSpec, PointType};
use avgate_drivers::{Catalog, DriverInfo, DriverSettings, Map, Value};
use serde::{Deserialize, Serialize};
use toml::Spanned;

use super::{ConfigError, ConfigErrors, options, parse_toml};

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
        "qsys-core",
        include_str!("../../device-profiles/qsys-core.toml"),
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
    /// `[hints]`: warm-up and cool-down times for panels and macros.
    #[serde(skip_serializing_if = "super::hints::Hints::is_empty")]
    pub hints: super::hints::Hints,
    /// Everything the driver offers with these options; `points` and `commands` are the
    /// part of it this profile narrowed and labelled.
    #[serde(skip)]
    pub catalog: Catalog,
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

/// Settles a command's `target` from the profile's `target`/`conflate` and the vocabulary's
/// default for a command named `name`; says what is wrong with them otherwise.
fn settle_target(spec: &mut CommandSpec, name: &str) -> Result<(), String> {
    let default = || {
        SET_STYLE
            .iter()
            .find(|(set_style, _)| *set_style == name)
            .map(|(_, target)| {
                target
                    .iter()
                    .filter(|arg| spec.args.contains_key(**arg))
                    .map(|arg| arg.to_string())
                    .collect::<Vec<_>>()
            })
    };
    spec.target = match (spec.conflate, spec.target.take()) {
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
    if let Some(unknown) = spec
        .target
        .iter()
        .flatten()
        .find(|arg| !spec.args.contains_key(*arg))
    {
        let known: Vec<&str> = spec.args.keys().map(String::as_str).collect();
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
    points: BTreeMap<Spanned<String>, PointNarrowing>,
    #[serde(default)]
    commands: BTreeMap<Spanned<String>, CommandNarrowing>,
    #[serde(default)]
    hints: super::hints::Hints,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct PollFile {
    query: Spanned<String>,
    #[serde(with = "humantime_serde")]
    every: Duration,
}

/// A profile's `[points.NAME]`: what it narrows or labels of the catalog's point. Every
/// field is optional; one that is given must agree with the catalog.
#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct PointNarrowing {
    #[serde(rename = "type")]
    kind: Option<Spanned<PointType>>,
    values: Option<Spanned<Vec<String>>>,
    unit: Option<Spanned<String>>,
    label: Option<String>,
    description: Option<String>,
}

/// A profile's `[commands.NAME]`: the command is offered, with these narrowings.
#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct CommandNarrowing {
    description: Option<String>,
    label: Option<String>,
    #[serde(default)]
    args: BTreeMap<Spanned<String>, ArgNarrowing>,
    target: Option<Vec<String>>,
    conflate: Option<bool>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct ArgNarrowing {
    #[serde(rename = "type")]
    kind: Option<Spanned<ArgType>>,
    optional: Option<Spanned<bool>>,
    values: Option<Spanned<Vec<String>>>,
    min: Option<Spanned<f64>>,
    max: Option<Spanned<f64>>,
    description: Option<String>,
}

/// A narrowing that contradicts the catalog: where, and why.
type Contradiction = (Range<usize>, String);

/// `values` narrowed to a subset of `allowed` (all of them when the profile gives none).
fn narrow_values(
    what: &str,
    allowed: &[String],
    given: Option<&Spanned<Vec<String>>>,
    found: &mut Vec<Contradiction>,
) -> Vec<String> {
    let Some(given) = given else {
        return allowed.to_vec();
    };
    let extra: Vec<&str> = given
        .get_ref()
        .iter()
        .filter(|v| !allowed.is_empty() && !allowed.contains(v))
        .map(String::as_str)
        .collect();
    if !extra.is_empty() {
        found.push((
            given.span(),
            format!(
                "{what}: {} not among the values the driver has ({}); a profile can only leave values out",
                extra.join(", "),
                allowed.join(", ")
            ),
        ));
    }
    given.get_ref().clone()
}

/// The catalog's point as the profile narrows and labels it.
fn narrow_point(
    name: &str,
    spec: &PointSpec,
    profile: PointNarrowing,
) -> Result<PointSpec, Vec<Contradiction>> {
    let mut found = Vec::new();
    let mut narrowed = spec.clone();
    let what = format!("point `{name}`");
    if let Some(kind) = &profile.kind {
        let narrows = *kind.get_ref() == spec.kind
            || (spec.kind == PointType::String && *kind.get_ref() == PointType::Enum);
        if narrows {
            narrowed.kind = *kind.get_ref();
        } else {
            found.push((
                kind.span(),
                format!(
                    "{what} is {} in the driver's catalog; a profile cannot make it {} (leave `type` out)",
                    spec.kind,
                    kind.get_ref()
                ),
            ));
        }
    }
    if profile.values.is_some() || narrowed.kind == PointType::Enum {
        narrowed.values = narrow_values(&what, &spec.values, profile.values.as_ref(), &mut found);
        if narrowed.kind != PointType::Enum {
            let span = profile
                .values
                .as_ref()
                .map(Spanned::span)
                .unwrap_or_default();
            found.push((
                span,
                format!(
                    "{what}: `values` is for enum points; this one is {}",
                    narrowed.kind
                ),
            ));
        } else if narrowed.values.is_empty() {
            let span = profile.kind.as_ref().map(Spanned::span).unwrap_or_default();
            found.push((span, format!("enum point `{name}` needs `values = [...]`")));
        }
    }
    if let Some(unit) = profile.unit {
        match &spec.unit {
            Some(theirs) if theirs != unit.get_ref() => found.push((
                unit.span(),
                format!(
                    "{what} is in {theirs} in the driver's catalog, not {}",
                    unit.get_ref()
                ),
            )),
            _ => narrowed.unit = Some(unit.into_inner()),
        }
    }
    narrowed.label = profile.label.or(narrowed.label);
    narrowed.description = profile.description.unwrap_or(narrowed.description);
    if found.is_empty() {
        Ok(narrowed)
    } else {
        Err(found)
    }
}

/// The catalog's argument as the profile narrows it.
fn narrow_arg(
    command: &str,
    name: &str,
    spec: &ArgSpec,
    profile: ArgNarrowing,
    found: &mut Vec<Contradiction>,
) -> ArgSpec {
    let mut narrowed = spec.clone();
    let what = format!("command `{command}`, argument `{name}`");
    if let Some(kind) = &profile.kind {
        let narrows = *kind.get_ref() == spec.kind
            || spec.kind == ArgType::Any
            || (spec.kind == ArgType::String && *kind.get_ref() == ArgType::Enum)
            || (spec.kind == ArgType::Number && *kind.get_ref() == ArgType::Integer);
        if narrows {
            narrowed.kind = *kind.get_ref();
        } else {
            found.push((
                kind.span(),
                format!(
                    "{what} is {} in the driver's catalog; a profile cannot make it {} (leave `type` out)",
                    spec.kind,
                    kind.get_ref()
                ),
            ));
        }
    }
    if profile.values.is_some() || narrowed.kind == ArgType::Enum {
        narrowed.values = narrow_values(&what, &spec.values, profile.values.as_ref(), found);
        if narrowed.kind == ArgType::Enum && narrowed.values.is_empty() {
            let span = profile.kind.as_ref().map(Spanned::span).unwrap_or_default();
            found.push((span, format!("{what}: an enum needs `values = [...]`")));
        }
    }
    if let Some(optional) = &profile.optional {
        if *optional.get_ref() && !spec.optional {
            found.push((
                optional.span(),
                format!("{what} is required by the driver; a profile cannot make it optional"),
            ));
        } else {
            narrowed.optional = *optional.get_ref();
        }
    }
    if let Some(min) = &profile.min {
        match spec.min {
            Some(theirs) if *min.get_ref() < theirs => found.push((
                min.span(),
                format!(
                    "{what}: min {} is below the driver's {theirs}; a profile can only raise it",
                    min.get_ref()
                ),
            )),
            _ => narrowed.min = Some(*min.get_ref()),
        }
    }
    if let Some(max) = &profile.max {
        match spec.max {
            Some(theirs) if *max.get_ref() > theirs => found.push((
                max.span(),
                format!(
                    "{what}: max {} is above the driver's {theirs}; a profile can only lower it",
                    max.get_ref()
                ),
            )),
            _ => narrowed.max = Some(*max.get_ref()),
        }
    }
    if let (Some(min), Some(max)) = (narrowed.min, narrowed.max)
        && min > max
    {
        let span = profile
            .max
            .as_ref()
            .or(profile.min.as_ref())
            .map(Spanned::span)
            .unwrap_or_default();
        found.push((span, format!("{what}: min {min} is above max {max}")));
    }
    narrowed.description = profile.description.unwrap_or(narrowed.description);
    narrowed
}

/// The catalog's command as the profile narrows and labels it.
fn narrow_command(
    name: &str,
    spec: &CommandSpec,
    profile: CommandNarrowing,
) -> Result<CommandSpec, Vec<Contradiction>> {
    let mut found = Vec::new();
    let mut narrowed = spec.clone();
    for (arg, narrowing) in profile.args {
        match spec.args.get(arg.get_ref()) {
            Some(theirs) => {
                let narrowed_arg = narrow_arg(name, arg.get_ref(), theirs, narrowing, &mut found);
                narrowed.args.insert(arg.get_ref().clone(), narrowed_arg);
            }
            None => found.push((
                arg.span(),
                format!(
                    "command `{name}` has no argument `{}` in the driver's catalog; it takes: {}",
                    arg.get_ref(),
                    if spec.args.is_empty() {
                        "no arguments".to_string()
                    } else {
                        spec.args
                            .keys()
                            .map(String::as_str)
                            .collect::<Vec<_>>()
                            .join(", ")
                    }
                ),
            )),
        }
    }
    narrowed.description = profile.description.unwrap_or(narrowed.description);
    narrowed.label = profile.label.or(narrowed.label);
    if profile.target.is_some() || profile.conflate.is_some() {
        narrowed.target = profile.target;
        narrowed.conflate = profile.conflate;
    }
    if found.is_empty() {
        Ok(narrowed)
    } else {
        Err(found)
    }
}

impl Profile {
    /// Parses and checks a profile against its driver's catalog. `id` is the name sites
    /// refer to.
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
        let driver = driver_info.name;

        let options = match file
            .options
            .as_ref()
            .map(|o| serde_json::to_value(o.get_ref()))
        {
            Some(Ok(Value::Object(map))) => map,
            _ => Map::new(),
        };
        let catalog = match (driver_info.catalog)(&DriverSettings::with_options(options.clone())) {
            Ok(catalog) => catalog,
            Err(found) => {
                for error in found.all() {
                    let span = options::locate(text, &["options"], &error.at)
                        .or_else(|| file.options.as_ref().map(|o| o.span()))
                        .or(Some(file.driver.span()));
                    err(span, format!("[options]: {}", error.message));
                }
                return Err(ConfigErrors(errors));
            }
        };

        // Without a [points] or [commands] table the profile offers all the catalog has.
        let mut points = BTreeMap::new();
        if file.points.is_empty() {
            points = catalog.points.clone();
        }
        for (name, narrowing) in file.points {
            let Some(spec) = catalog.points.get(name.get_ref()) else {
                err(
                    Some(name.span()),
                    format!(
                        "point `{}` is not one the {driver} driver reports; it has: {}",
                        name.get_ref(),
                        catalog
                            .points
                            .keys()
                            .map(String::as_str)
                            .collect::<Vec<_>>()
                            .join(", ")
                    ),
                );
                continue;
            };
            match narrow_point(name.get_ref(), spec, narrowing) {
                Ok(narrowed) => {
                    points.insert(name.into_inner(), narrowed);
                }
                Err(found) => found
                    .into_iter()
                    .for_each(|(span, why)| err(Some(span), why)),
            }
        }
        let mut commands = BTreeMap::new();
        let mut command_spans = BTreeMap::new();
        if file.commands.is_empty() {
            commands = catalog.commands.clone();
        }
        for (name, narrowing) in file.commands {
            let Some(spec) = catalog.commands.get(name.get_ref()) else {
                err(
                    Some(name.span()),
                    format!(
                        "command `{}` is not one the {driver} driver understands; it has: {}",
                        name.get_ref(),
                        catalog.command_names()
                    ),
                );
                continue;
            };
            match narrow_command(name.get_ref(), spec, narrowing) {
                Ok(narrowed) => {
                    command_spans.insert(name.get_ref().clone(), name.span());
                    commands.insert(name.into_inner(), narrowed);
                }
                Err(found) => found
                    .into_iter()
                    .for_each(|(span, why)| err(Some(span), why)),
            }
        }
        for (name, spec) in &mut commands {
            if let Err(why) = settle_target(spec, name) {
                err(command_spans.get(name).cloned(), why);
            }
        }

        // Without [[poll]] entries the catalog's default polls run.
        let mut polls = Vec::new();
        if file.poll.is_empty() {
            for spec in &catalog.queries {
                let query = &spec.name;
                let Some(every) = spec.every else { continue };
                if every < MIN_POLL_INTERVAL {
                    let span = options::locate(text, &["options"], &spec.defined_at)
                        .or(Some(file.driver.span()));
                    err(
                        span,
                        format!(
                            "poll `{query}` every {every:?} is faster than the {MIN_POLL_INTERVAL:?} every poll is held to; \
                             set it to at least \"{}ms\"",
                            MIN_POLL_INTERVAL.as_millis()
                        ),
                    );
                }
                polls.push(Poll {
                    query: query.clone(),
                    every,
                });
            }
        }
        for poll in file.poll {
            if catalog.query(poll.query.get_ref()).is_none() {
                err(
                    Some(poll.query.span()),
                    format!(
                        "poll query `{}` is not one the {driver} driver has; it has: {}",
                        poll.query.get_ref(),
                        catalog.query_names()
                    ),
                );
            }
            if poll.every < MIN_POLL_INTERVAL {
                err(
                    Some(poll.query.span()),
                    format!("poll `every` must be at least {MIN_POLL_INTERVAL:?}"),
                );
            }
            polls.push(Poll {
                query: poll.query.into_inner(),
                every: poll.every,
            });
        }
        if !errors.is_empty() {
            return Err(ConfigErrors(errors));
        }
        Ok(Profile {
            id: id.to_string(),
            name: file.name,
            description: file.description,
            driver: file.driver.into_inner(),
            driver_info,
            options,
            transport: file.transport,
            timing: file.timing,
            polls,
            points,
            commands,
            hints: file.hints,
            catalog,
            source: path.to_path_buf(),
        })
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
        avgate_drivers::catalog::point_in(&self.points, name)
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
                .catalog
                .points
                .keys()
                .map(String::as_str)
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

    #[test]
    fn a_profile_narrows_the_catalog_and_never_contradicts_it() {
        let parse = |body: &str| {
            let text = format!("name = \"x\"\ndriver = \"sony-visca\"\n{body}");
            Profile::parse("x", Path::new("x.toml"), &text).map_err(|e| e.to_string())
        };
        // A subset of commands, a tighter range, fewer values, its own words.
        let profile = parse(
            "[commands.preset]\nargs.number = { max = 15 }\nargs.action = { values = [\"recall\"] }\n\
             description = \"Recall one of 16.\"\n",
        )
        .unwrap();
        assert_eq!(profile.commands.keys().collect::<Vec<_>>(), ["preset"]);
        let preset = &profile.commands["preset"];
        assert_eq!(preset.args["number"].max, Some(15.0));
        assert_eq!(
            preset.args["number"].min,
            Some(0.0),
            "kept from the catalog"
        );
        assert_eq!(preset.args["action"].kind, ArgType::Enum);
        assert_eq!(preset.description, "Recall one of 16.");
        // Without [points] and [[poll]] the catalog's points and default polls apply.
        assert!(profile.point("zoom").is_some());
        assert_eq!(profile.polls.len(), 3);

        for (body, at, says) in [
            (
                "[commands.preset]\nargs.number = { max = 200 }\n",
                "x.toml:4:23:",
                "above the driver's 127",
            ),
            (
                "[commands.zoom]\nargs.action = { values = [\"tele\", \"spin\"] }\n",
                "x.toml:4:26:",
                "spin not among",
            ),
            (
                "[commands.power]\nargs.on = { type = \"integer\" }\n",
                "x.toml:4:20:",
                "is bool in the driver's catalog",
            ),
            (
                "[commands.power]\nargs.fast = { type = \"bool\" }\n",
                "x.toml:4:6:",
                "no argument `fast`",
            ),
            (
                "[commands.preset]\nargs.number = { optional = true }\n",
                "x.toml:4:28:",
                "cannot make it optional",
            ),
            (
                "[points.power]\nvalues = [\"on\", \"asleep\"]\n",
                "x.toml:4:10:",
                "asleep not among",
            ),
            ("[points.zoom]\nunit = \"mm\"\n", "", ""),
        ] {
            let result = parse(body);
            if at.is_empty() {
                assert!(result.is_ok(), "{body}: {result:?}");
                continue;
            }
            let error = result.unwrap_err();
            assert!(
                error.starts_with(at) && error.contains(says),
                "{body}: {error}"
            );
        }
    }

    #[test]
    fn a_bad_option_is_reported_at_its_key() {
        let parse = |options: &str| {
            let text = format!("name = \"x\"\ndriver = \"pjlink\"\n[options]\n{options}");
            Profile::parse("x", Path::new("x.toml"), &text).map_err(|e| e.to_string())
        };
        let error = parse("inputs = { hdmi1 = \"31\" }\nclass = 3\n").unwrap_err();
        assert!(
            error.starts_with("x.toml:5:1: [options]: `class` must be 1 or 2"),
            "{error}"
        );
        let error = parse("clas = 2\n").unwrap_err();
        assert!(
            error.starts_with("x.toml:4:1: [options]: `clas`: unknown field `clas`"),
            "{error}"
        );
        let error = parse("class = \"2\"\n").unwrap_err();
        assert!(
            error.starts_with("x.toml:4:1: [options]: `class`: invalid type"),
            "{error}"
        );
    }
}
