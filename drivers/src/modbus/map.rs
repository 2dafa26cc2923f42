//! The register map a device profile declares: which values live where, how to read them
//! and which may be written.
//!
//! A profile's `[options]` table arrives as JSON; [`RegisterMap::from_options`] reads it
//! into the serde types ([`MapSpec`], [`PointSpec`]) and checks it once, at load time, so a
//! mistake in a profile (a float on a coil, two values sharing registers, a typo in a poll
//! group) is reported by point and field before anything talks to a device.
//!
//! # Addresses
//!
//! `address` is the 0-based address that goes on the wire (the PDU address). Manuals often
//! give the 1-based "Modicon" numbers instead, where the first digit names the table:
//!
//! | manual says | table            | `address`          |
//! |-------------|------------------|--------------------|
//! | 4xxxx       | `holding`        | number − 40001     |
//! | 3xxxx       | `input`          | number − 30001     |
//! | 1xxxx       | `discrete_input` | number − 10001     |
//! | 0xxxx       | `coil`           | number − 1         |
//!
//! So "40001" is holding 0 and "30010" is input 9. Six-digit numbers (400001) work the same
//! way with 400001 etc. When a manual lists plain numbers, check whether its first register
//! is 0 or 1: an off-by-one shows up as exception 02 or as neighbouring values.
//!
//! # Word and byte order
//!
//! Values wider than one register come in four orders, named after the bytes of a 32-bit
//! value `0xAABBCCDD` as they appear on the wire (the libmodbus/Telegraf names):
//!
//! - `ABCD`: big-endian, most significant register first (the Modbus default);
//! - `CDAB`: word-swapped, least significant register first;
//! - `BADC`: byte-swapped inside each register, registers in big-endian order;
//! - `DCBA`: both, i.e. fully little-endian.
//!
//! The same rule applies to every width: the word swap reverses the order of all the
//! point's registers (a u64 in `CDAB` is sent lowest register first), the byte swap swaps
//! the two bytes of each register (on a u16 or a string that is the only effect).

use std::collections::{BTreeMap, HashMap};
use std::fmt;
use std::time::Duration;

use serde::Deserialize;
use serde_json::{Map, Value};

use super::reporting::Reporting;
use super::session::OPTION_KEYS as SESSION_KEYS;

/// Most registers one read may ask for (FC 3/4 limit in the spec).
pub const MAX_REGISTERS_PER_READ: u16 = 125;
/// Most bits one read may ask for (FC 1/2 limit in the spec).
pub const MAX_BITS_PER_READ: u16 = 2000;
/// Most registers one FC 16 write may carry.
pub const MAX_REGISTERS_PER_WRITE: u16 = 123;
/// Most coils one FC 15 write may carry.
pub const MAX_COILS_PER_WRITE: u16 = 1968;
/// The poll group every point belongs to unless it names another.
pub const DEFAULT_POLL_GROUP: &str = "default";
/// How often the default group is read when `poll_groups` does not set it.
pub const DEFAULT_POLL_INTERVAL: Duration = Duration::from_secs(1);
/// Unused registers a read may span to merge two points, unless the map says otherwise.
pub const DEFAULT_MAX_GAP: u16 = 8;

/// The `[options]` keys the register map reads ([`MapSpec`]'s fields).
pub const MAP_KEYS: &[&str] = &[
    "points",
    "poll_groups",
    "max_registers_per_read",
    "max_bits_per_read",
    "max_gap",
    "decimals",
    "deadband",
    "deadband_percent",
];

/// The four Modbus data tables.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Table {
    /// Read-write bits (FC 1 read, FC 5/15 write).
    Coil,
    /// Read-only bits (FC 2).
    DiscreteInput,
    /// Read-write 16-bit registers (FC 3 read, FC 6/16 write).
    Holding,
    /// Read-only 16-bit registers (FC 4).
    Input,
}

impl Table {
    /// Whether the table holds single bits (so reads count bits, not registers).
    pub fn is_bits(self) -> bool {
        matches!(self, Table::Coil | Table::DiscreteInput)
    }

    /// Whether the protocol has any function to write this table.
    pub fn is_writable(self) -> bool {
        matches!(self, Table::Coil | Table::Holding)
    }

    /// The function code that reads this table.
    pub fn read_function(self) -> u8 {
        match self {
            Table::Coil => 1,
            Table::DiscreteInput => 2,
            Table::Holding => 3,
            Table::Input => 4,
        }
    }

    /// The name profiles use.
    pub fn as_str(self) -> &'static str {
        match self {
            Table::Coil => "coil",
            Table::DiscreteInput => "discrete_input",
            Table::Holding => "holding",
            Table::Input => "input",
        }
    }
}

impl fmt::Display for Table {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// The `type` a profile writes for a point.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum DataType {
    Bool,
    U16,
    I16,
    U32,
    I32,
    U64,
    I64,
    F32,
    F64,
    String,
}

impl DataType {
    pub fn as_str(self) -> &'static str {
        match self {
            DataType::Bool => "bool",
            DataType::U16 => "u16",
            DataType::I16 => "i16",
            DataType::U32 => "u32",
            DataType::I32 => "i32",
            DataType::U64 => "u64",
            DataType::I64 => "i64",
            DataType::F32 => "f32",
            DataType::F64 => "f64",
            DataType::String => "string",
        }
    }
}

impl fmt::Display for DataType {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// Register and byte order of a value (see the module docs).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Deserialize)]
pub enum WordOrder {
    /// Big-endian: most significant register first, high byte first.
    #[default]
    #[serde(rename = "ABCD", alias = "abcd")]
    Abcd,
    /// Word-swapped: least significant register first.
    #[serde(rename = "CDAB", alias = "cdab")]
    Cdab,
    /// Byte-swapped: the bytes of each register swapped.
    #[serde(rename = "BADC", alias = "badc")]
    Badc,
    /// Both swaps: fully little-endian.
    #[serde(rename = "DCBA", alias = "dcba")]
    Dcba,
}

impl WordOrder {
    /// Whether registers come least significant first.
    pub fn swaps_words(self) -> bool {
        matches!(self, WordOrder::Cdab | WordOrder::Dcba)
    }

    /// Whether the two bytes of each register are swapped.
    pub fn swaps_bytes(self) -> bool {
        matches!(self, WordOrder::Badc | WordOrder::Dcba)
    }
}

/// The map as a profile writes it, before any checks. Field names are the profile keys.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct MapSpec {
    pub points: Vec<PointSpec>,
    /// Poll group name to interval (`"500ms"`, `"1s"`, `"2m"`, `"1h"`). The `default`
    /// group exists even when not listed (every second).
    #[serde(default)]
    pub poll_groups: BTreeMap<String, String>,
    #[serde(default = "default_max_registers")]
    pub max_registers_per_read: u16,
    #[serde(default = "default_max_bits")]
    pub max_bits_per_read: u16,
    /// Unused addresses (registers, or bits on bit tables) a read may span so that two
    /// points are read together. Devices with holes in their map may answer exception 02
    /// to a read that touches a hole: set 0 for those.
    #[serde(default = "default_max_gap")]
    pub max_gap: u16,
    /// Defaults for every number point (see [`super::reporting`]).
    pub decimals: Option<u8>,
    pub deadband: Option<f64>,
    pub deadband_percent: Option<f64>,
}

fn default_max_registers() -> u16 {
    MAX_REGISTERS_PER_READ
}

fn default_max_bits() -> u16 {
    MAX_BITS_PER_READ
}

fn default_max_gap() -> u16 {
    DEFAULT_MAX_GAP
}

/// One point as a profile writes it. Field names are the profile keys.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct PointSpec {
    pub name: String,
    pub table: Table,
    /// 0-based PDU address (see the module docs for "40001"-style numbers).
    pub address: u16,
    /// Defaults to `bool` on coils and discrete inputs, to `u16` on registers, and to
    /// `bool` when `bit` is given.
    #[serde(rename = "type")]
    pub data_type: Option<DataType>,
    /// Registers a `string` occupies (two characters each).
    pub length: Option<u16>,
    /// A single bit (0 = least significant) of a u16 register, reported as a bool.
    pub bit: Option<u8>,
    #[serde(default)]
    pub order: WordOrder,
    /// value = raw × scale + offset.
    pub scale: Option<f64>,
    pub offset: Option<f64>,
    /// Unit for display (`"A"`, `"V"`, `"°C"`); not interpreted.
    pub unit: Option<String>,
    /// Raw integer (as a string key, which TOML requires) to the name reported instead.
    #[serde(rename = "enum")]
    pub enum_map: Option<BTreeMap<String, String>>,
    /// Whether panels may write the point (coils and holding registers only).
    #[serde(default)]
    pub writable: bool,
    /// Poll group name; `default` unless given.
    pub poll: Option<String>,
    /// Rounding and deadbands of a number point (see [`super::reporting`]).
    pub decimals: Option<u8>,
    pub deadband: Option<f64>,
    pub deadband_percent: Option<f64>,
}

/// What a point holds, after defaults and checks.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Kind {
    /// A coil or discrete input.
    Bool,
    /// One bit (0 = least significant) of a u16 register, as a bool.
    Bit(u8),
    U16,
    I16,
    U32,
    I32,
    U64,
    I64,
    F32,
    F64,
    /// ASCII text, two characters per register, high byte first.
    String {
        length: u16,
    },
}

impl Kind {
    /// Addresses the point occupies in its table: bits on bit tables, registers otherwise.
    pub fn width(self) -> u16 {
        match self {
            Kind::Bool | Kind::Bit(_) | Kind::U16 | Kind::I16 => 1,
            Kind::U32 | Kind::I32 | Kind::F32 => 2,
            Kind::U64 | Kind::I64 | Kind::F64 => 4,
            Kind::String { length } => length,
        }
    }

    /// Whether the raw value is an integer (so `enum` applies and scaling can be exact).
    pub fn is_integer(self) -> bool {
        matches!(
            self,
            Kind::U16 | Kind::I16 | Kind::U32 | Kind::I32 | Kind::U64 | Kind::I64
        )
    }

    /// Whether the value is a number (so `scale` and `offset` apply).
    pub fn is_number(self) -> bool {
        self.is_integer() || matches!(self, Kind::F32 | Kind::F64)
    }

    /// The profile's name for the type.
    pub fn data_type(self) -> DataType {
        match self {
            Kind::Bool | Kind::Bit(_) => DataType::Bool,
            Kind::U16 => DataType::U16,
            Kind::I16 => DataType::I16,
            Kind::U32 => DataType::U32,
            Kind::I32 => DataType::I32,
            Kind::U64 => DataType::U64,
            Kind::I64 => DataType::I64,
            Kind::F32 => DataType::F32,
            Kind::F64 => DataType::F64,
            Kind::String { .. } => DataType::String,
        }
    }
}

/// One checked point.
#[derive(Debug, Clone, PartialEq)]
pub struct Point {
    pub name: String,
    pub table: Table,
    pub address: u16,
    pub kind: Kind,
    pub order: WordOrder,
    /// 1 unless the profile says otherwise.
    pub scale: f64,
    /// 0 unless the profile says otherwise.
    pub offset: f64,
    pub unit: Option<String>,
    /// Empty unless the profile gives one.
    pub enum_map: BTreeMap<i64, String>,
    pub writable: bool,
    pub poll: String,
}

impl Point {
    /// Addresses the point occupies, in its table's unit.
    pub fn width(&self) -> u16 {
        self.kind.width()
    }

    /// One past the last address the point occupies (may be 65536).
    pub fn end(&self) -> u32 {
        u32::from(self.address) + u32::from(self.width())
    }

    /// Whether raw values are reported as they are (no scale, no offset).
    pub fn is_unscaled(&self) -> bool {
        self.scale == 1.0 && self.offset == 0.0
    }
}

/// A checked register map, ready for planning reads and writes.
#[derive(Debug, Clone, PartialEq)]
pub struct RegisterMap {
    /// In profile order.
    pub points: Vec<Point>,
    /// Every group a point may name, `default` included.
    pub poll_groups: BTreeMap<String, Duration>,
    pub max_registers_per_read: u16,
    pub max_bits_per_read: u16,
    pub max_gap: u16,
    /// Rounding and deadbands by point name, for the number points that have any.
    pub reporting: HashMap<String, Reporting>,
}

impl RegisterMap {
    /// Reads and checks the map from a profile's `[options]` table. The session's keys
    /// ([`SESSION_KEYS`]) may sit next to the map's; any other key is refused.
    pub fn from_options(options: &Map<String, Value>) -> Result<RegisterMap, MapError> {
        let known = |key: &str| MAP_KEYS.contains(&key) || SESSION_KEYS.contains(&key);
        if let Some(key) = options.keys().find(|key| !known(key)) {
            let all: Vec<&str> = MAP_KEYS.iter().chain(SESSION_KEYS).copied().collect();
            return Err(MapError::Format(format!(
                "unknown option `{key}` (known options: {})",
                all.join(", ")
            )));
        }
        let map_options: Map<String, Value> = options
            .iter()
            .filter(|(key, _)| MAP_KEYS.contains(&key.as_str()))
            .map(|(key, value)| (key.clone(), value.clone()))
            .collect();
        // Each point alone first, so a mistake inside one names that point.
        if let Some(Value::Array(points)) = options.get("points") {
            for (index, point) in points.iter().enumerate() {
                if let Err(e) = serde_json::from_value::<PointSpec>(point.clone()) {
                    let reason = e.to_string();
                    let Some(name) = point.get("name").and_then(Value::as_str) else {
                        return Err(MapError::Format(format!("point #{}: {reason}", index + 1)));
                    };
                    // serde names an unknown field first: `unknown field `adress`, ...`.
                    let field = reason
                        .strip_prefix("unknown field `")
                        .and_then(|rest| rest.split('`').next())
                        .map(str::to_string);
                    return Err(MapError::PointFormat {
                        point: name.to_string(),
                        field,
                        reason,
                    });
                }
            }
        }
        let spec: MapSpec = serde_json::from_value(Value::Object(map_options))
            .map_err(|e| MapError::Format(e.to_string()))?;
        spec.validate()
    }

    /// The point with this name.
    pub fn point(&self, name: &str) -> Option<&Point> {
        self.points.iter().find(|p| p.name == name)
    }

    /// The most addresses one read of `table` may cover.
    pub fn max_per_read(&self, table: Table) -> u16 {
        if table.is_bits() {
            self.max_bits_per_read
        } else {
            self.max_registers_per_read
        }
    }
}

/// Why a register map was refused. Point errors name the point and the profile field to fix.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
#[non_exhaustive]
pub enum MapError {
    /// The options do not have the map's shape (missing key, unknown key, wrong type).
    #[error("modbus register map: {0}")]
    Format(String),
    #[error("modbus register map: `points` is empty")]
    NoPoints,
    /// One point does not have a point's shape (a misspelt or missing field, a wrong type).
    #[error("modbus point `{point}`: {reason}")]
    PointFormat {
        point: String,
        /// The field the error is about, when the message names one that is there.
        field: Option<String>,
        reason: String,
    },
    /// A name panels could not subscribe to.
    #[error(
        "modbus point `{point}`, field `name`: point names use letters, digits, `-`, `_` and `.` only (panels subscribe by name), e.g. `{suggestion}`"
    )]
    BadName { point: String, suggestion: String },
    /// A map-level limit (`max_registers_per_read`, `max_bits_per_read`) out of range.
    #[error("modbus register map, field `{field}`: {value} is not in 1..={max}")]
    Limit {
        field: &'static str,
        value: u16,
        max: u16,
    },
    #[error("modbus poll group `{group}`: interval `{value}` is not a duration like 500ms, 1s, 2m")]
    BadInterval { group: String, value: String },
    #[error("modbus point #{index}, field `name`: empty")]
    EmptyName { index: usize },
    #[error("modbus point `{point}`, field `name`: used by another point too")]
    DuplicateName { point: String },
    /// The type cannot live in the table (a number on a coil, a bool on a register
    /// without `bit`).
    #[error("modbus point `{point}`, field `type`: {reason}")]
    TypeTable { point: String, reason: String },
    /// The point runs past the last address, or is wider than one read may be.
    #[error("modbus point `{point}`, field `{field}`: {reason}")]
    TooWide {
        point: String,
        field: &'static str,
        reason: String,
    },
    #[error("modbus point `{point}`, field `bit`: {reason}")]
    Bit { point: String, reason: String },
    #[error("modbus point `{point}`, field `length`: {reason}")]
    Length { point: String, reason: String },
    #[error(
        "modbus point `{point}`, field `writable`: {table} is read-only in Modbus; only coils and holding registers can be written"
    )]
    ReadOnlyTable { point: String, table: Table },
    #[error("modbus point `{point}`, field `scale`: must not be 0 (writes divide by it)")]
    ZeroScale { point: String },
    /// Scale, offset or enum on a type they make no sense for, or an enum key that is not
    /// an integer.
    #[error("modbus point `{point}`, field `{field}`: {reason}")]
    Conversion {
        point: String,
        field: &'static str,
        reason: String,
    },
    #[error(
        "modbus point `{point}`, field `poll`: unknown poll group `{group}` (declare it in `poll_groups`)"
    )]
    UnknownPollGroup { point: String, group: String },
    #[error(
        "modbus point `{point}`, field `address`: overlaps point `{other}` in {table} at {address}"
    )]
    Overlap {
        point: String,
        other: String,
        table: Table,
        address: u16,
    },
}

impl MapError {
    /// The point the error is about, if it is about one.
    pub fn point(&self) -> Option<&str> {
        match self {
            MapError::DuplicateName { point }
            | MapError::PointFormat { point, .. }
            | MapError::BadName { point, .. }
            | MapError::TypeTable { point, .. }
            | MapError::TooWide { point, .. }
            | MapError::Bit { point, .. }
            | MapError::Length { point, .. }
            | MapError::ReadOnlyTable { point, .. }
            | MapError::ZeroScale { point }
            | MapError::Conversion { point, .. }
            | MapError::UnknownPollGroup { point, .. }
            | MapError::Overlap { point, .. } => Some(point),
            _ => None,
        }
    }

    /// The profile field to fix, if the error names one.
    pub fn field(&self) -> Option<&str> {
        Some(match self {
            MapError::Format(_) => return None,
            MapError::PointFormat { field, .. } => return field.as_deref(),
            MapError::BadName { .. } => "name",
            MapError::NoPoints => "points",
            MapError::Limit { field, .. } => field,
            MapError::BadInterval { .. } => "poll_groups",
            MapError::EmptyName { .. } | MapError::DuplicateName { .. } => "name",
            MapError::TypeTable { .. } => "type",
            MapError::TooWide { field, .. } | MapError::Conversion { field, .. } => field,
            MapError::Bit { .. } => "bit",
            MapError::Length { .. } => "length",
            MapError::ReadOnlyTable { .. } => "writable",
            MapError::ZeroScale { .. } => "scale",
            MapError::UnknownPollGroup { .. } => "poll",
            MapError::Overlap { .. } => "address",
        })
    }
}

impl MapSpec {
    /// Applies defaults and checks everything that can be checked without a device.
    pub fn validate(self) -> Result<RegisterMap, MapError> {
        check_limit(
            "max_registers_per_read",
            self.max_registers_per_read,
            MAX_REGISTERS_PER_READ,
        )?;
        check_limit(
            "max_bits_per_read",
            self.max_bits_per_read,
            MAX_BITS_PER_READ,
        )?;
        if self.points.is_empty() {
            return Err(MapError::NoPoints);
        }
        let mut poll_groups = BTreeMap::new();
        poll_groups.insert(DEFAULT_POLL_GROUP.to_string(), DEFAULT_POLL_INTERVAL);
        for (group, value) in &self.poll_groups {
            let interval = parse_interval(value).ok_or_else(|| MapError::BadInterval {
                group: group.clone(),
                value: value.clone(),
            })?;
            poll_groups.insert(group.clone(), interval);
        }
        let mut map = RegisterMap {
            points: Vec::with_capacity(self.points.len()),
            poll_groups,
            max_registers_per_read: self.max_registers_per_read,
            max_bits_per_read: self.max_bits_per_read,
            max_gap: self.max_gap,
            reporting: HashMap::new(),
        };
        let defaults = Reporting {
            decimals: self.decimals,
            deadband: self.deadband,
            deadband_percent: self.deadband_percent,
        };
        defaults
            .check()
            .map_err(|(field, reason)| MapError::Format(format!("`{field}`: {reason}")))?;
        let mut names = HashMap::new();
        for (index, spec) in self.points.into_iter().enumerate() {
            if spec.name.is_empty() {
                return Err(MapError::EmptyName { index });
            }
            if names.insert(spec.name.clone(), index).is_some() {
                return Err(MapError::DuplicateName { point: spec.name });
            }
            let plain = |c: char| c.is_ascii_alphanumeric() || matches!(c, '-' | '_' | '.');
            if !spec.name.chars().all(plain) {
                let suggestion = spec
                    .name
                    .chars()
                    .map(|c| if plain(c) { c } else { '_' })
                    .collect();
                return Err(MapError::BadName {
                    point: spec.name,
                    suggestion,
                });
            }
            let own = Reporting {
                decimals: spec.decimals,
                deadband: spec.deadband,
                deadband_percent: spec.deadband_percent,
            };
            let point = spec.validate(&map)?;
            let conversion = |field: &'static str, reason: String| MapError::Conversion {
                point: point.name.clone(),
                field,
                reason,
            };
            own.check()
                .map_err(|(field, reason)| conversion(field, reason))?;
            let number = point.kind.is_number() && point.enum_map.is_empty();
            if !number && !own.is_plain() {
                let field = if own.decimals.is_some() {
                    "decimals"
                } else if own.deadband.is_some() {
                    "deadband"
                } else {
                    "deadband_percent"
                };
                return Err(conversion(
                    field,
                    "only number points (not bool, string or enum) are rounded or have a deadband"
                        .into(),
                ));
            }
            let reporting = own.or(defaults);
            if number && !reporting.is_plain() {
                map.reporting.insert(point.name.clone(), reporting);
            }
            map.points.push(point);
        }
        check_overlaps(&map.points)?;
        Ok(map)
    }
}

fn check_limit(field: &'static str, value: u16, max: u16) -> Result<(), MapError> {
    if value == 0 || value > max {
        return Err(MapError::Limit { field, value, max });
    }
    Ok(())
}

/// Reads `500ms`, `1s`, `1.5s`, `2m`, `1h`. Zero is refused: a group polled continuously
/// would starve every other request on the link.
pub fn parse_interval(text: &str) -> Option<Duration> {
    let text = text.trim();
    let split = text
        .find(|c: char| !(c.is_ascii_digit() || c == '.'))
        .unwrap_or(text.len());
    let (number, unit) = text.split_at(split);
    let number: f64 = number.parse().ok()?;
    let seconds = match unit.trim() {
        "ms" => number / 1000.0,
        "s" => number,
        "m" | "min" => number * 60.0,
        "h" => number * 3600.0,
        _ => return None,
    };
    let interval = Duration::try_from_secs_f64(seconds).ok()?;
    (!interval.is_zero()).then_some(interval)
}

impl PointSpec {
    fn validate(self, map: &RegisterMap) -> Result<Point, MapError> {
        let kind = self.kind()?;
        let name = self.name.clone();
        let point_error = |field: &'static str, reason: String| MapError::TooWide {
            point: name.clone(),
            field,
            reason,
        };
        let field = if matches!(kind, Kind::String { .. }) {
            "length"
        } else {
            "type"
        };
        let end = u32::from(self.address) + u32::from(kind.width());
        if end > 65536 {
            return Err(point_error(
                "address",
                format!(
                    "{} at {} needs {} addresses and runs past the last address 65535",
                    kind.data_type(),
                    self.address,
                    kind.width()
                ),
            ));
        }
        let max = map.max_per_read(self.table);
        if kind.width() > max {
            return Err(point_error(
                field,
                format!(
                    "{} registers do not fit one read (max_registers_per_read = {max})",
                    kind.width()
                ),
            ));
        }
        if self.writable && !self.table.is_writable() {
            return Err(MapError::ReadOnlyTable {
                point: self.name,
                table: self.table,
            });
        }
        if self.writable && kind.width() > MAX_REGISTERS_PER_WRITE {
            return Err(point_error(
                field,
                format!(
                    "{} registers do not fit one write (FC 16 carries at most {MAX_REGISTERS_PER_WRITE})",
                    kind.width()
                ),
            ));
        }
        let conversion = |field: &'static str, reason: String| MapError::Conversion {
            point: self.name.clone(),
            field,
            reason,
        };
        if (self.scale.is_some() || self.offset.is_some()) && !kind.is_number() {
            let field = if self.scale.is_some() {
                "scale"
            } else {
                "offset"
            };
            return Err(conversion(
                field,
                format!("applies to numbers, not to {}", kind.data_type()),
            ));
        }
        let scale = self.scale.unwrap_or(1.0);
        let offset = self.offset.unwrap_or(0.0);
        if scale == 0.0 {
            return Err(MapError::ZeroScale {
                point: self.name.clone(),
            });
        }
        let mut enum_map = BTreeMap::new();
        if let Some(names) = &self.enum_map {
            if !kind.is_integer() {
                return Err(conversion(
                    "enum",
                    format!("applies to integer types, not to {}", kind.data_type()),
                ));
            }
            if scale != 1.0 || offset != 0.0 {
                return Err(conversion(
                    "enum",
                    "names raw values, so it cannot be combined with scale or offset".into(),
                ));
            }
            for (key, value) in names {
                let raw: i64 = key
                    .trim()
                    .parse()
                    .map_err(|_| conversion("enum", format!("key `{key}` is not an integer")))?;
                enum_map.insert(raw, value.clone());
            }
        }
        let poll = self
            .poll
            .clone()
            .unwrap_or_else(|| DEFAULT_POLL_GROUP.to_string());
        if !map.poll_groups.contains_key(&poll) {
            return Err(MapError::UnknownPollGroup {
                point: self.name,
                group: poll,
            });
        }
        Ok(Point {
            name: self.name,
            table: self.table,
            address: self.address,
            kind,
            order: self.order,
            scale,
            offset,
            unit: self.unit,
            enum_map,
            writable: self.writable,
            poll,
        })
    }

    /// The point's kind after defaults, refusing types that cannot live in its table.
    fn kind(&self) -> Result<Kind, MapError> {
        let type_error = |reason: String| MapError::TypeTable {
            point: self.name.clone(),
            reason,
        };
        let bit_error = |reason: String| MapError::Bit {
            point: self.name.clone(),
            reason,
        };
        let length_error = |reason: &str| MapError::Length {
            point: self.name.clone(),
            reason: reason.to_string(),
        };
        if self.length.is_some() && self.data_type != Some(DataType::String) {
            return Err(length_error("only strings take a length"));
        }
        if self.table.is_bits() {
            if self.bit.is_some() {
                return Err(bit_error(format!(
                    "a {} is a single bit already; `bit` selects a bit of a u16 register",
                    self.table
                )));
            }
            return match self.data_type {
                None | Some(DataType::Bool) => Ok(Kind::Bool),
                Some(other) => Err(type_error(format!(
                    "{other} does not fit a {}: coils and discrete inputs hold one bit (use bool)",
                    self.table
                ))),
            };
        }
        if let Some(bit) = self.bit {
            return match self.data_type {
                None | Some(DataType::Bool) | Some(DataType::U16) if bit <= 15 => {
                    Ok(Kind::Bit(bit))
                }
                None | Some(DataType::Bool) | Some(DataType::U16) => Err(bit_error(format!(
                    "{bit} is not a bit of a 16-bit register (0..=15)"
                ))),
                Some(other) => Err(bit_error(format!(
                    "selects a bit of a u16 register, not of {other}"
                ))),
            };
        }
        Ok(match self.data_type.unwrap_or(DataType::U16) {
            DataType::Bool => {
                return Err(type_error(format!(
                    "a {} register holds 16 bits: give `bit` (0..=15) for a flag, or use u16",
                    self.table
                )));
            }
            DataType::U16 => Kind::U16,
            DataType::I16 => Kind::I16,
            DataType::U32 => Kind::U32,
            DataType::I32 => Kind::I32,
            DataType::U64 => Kind::U64,
            DataType::I64 => Kind::I64,
            DataType::F32 => Kind::F32,
            DataType::F64 => Kind::F64,
            DataType::String => match self.length {
                None => return Err(length_error("strings need a length in registers")),
                Some(0) => return Err(length_error("must be at least 1 register")),
                Some(length) => Kind::String { length },
            },
        })
    }
}

/// Refuses points that share addresses in a way no device means: anything sharing a bit,
/// or a multi-register value sharing a register with anything. Several single-register
/// views of one register are fine (a u16 status word and flags from its bits), but not two
/// points on the same bit.
fn check_overlaps(points: &[Point]) -> Result<(), MapError> {
    let mut sorted: Vec<&Point> = points.iter().collect();
    sorted.sort_by_key(|p| (p.table, p.address));
    for (i, a) in sorted.iter().enumerate() {
        for b in &sorted[i + 1..] {
            if b.table != a.table || u32::from(b.address) >= a.end() {
                break;
            }
            let views_of_one_register = !a.table.is_bits()
                && a.width() == 1
                && b.width() == 1
                && !matches!((a.kind, b.kind), (Kind::Bit(x), Kind::Bit(y)) if x == y);
            if !views_of_one_register {
                return Err(MapError::Overlap {
                    point: b.name.clone(),
                    other: a.name.clone(),
                    table: a.table,
                    address: b.address,
                });
            }
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn options(value: Value) -> Map<String, Value> {
        match value {
            Value::Object(map) => map,
            _ => panic!("not an object"),
        }
    }

    fn map(points: Value) -> Result<RegisterMap, MapError> {
        RegisterMap::from_options(&options(json!({ "points": points })))
    }

    /// Asserts the map is refused with an error naming `point` and `field`.
    fn refused(points: Value, point: &str, field: &str) -> MapError {
        let error = map(points).expect_err("map should be refused");
        assert_eq!(error.point(), Some(point), "{error}");
        assert_eq!(error.field(), Some(field), "{error}");
        let message = error.to_string();
        assert!(message.contains(&format!("`{point}`")), "{message}");
        assert!(message.contains(&format!("`{field}`")), "{message}");
        error
    }

    #[test]
    fn defaults_fill_in() {
        let map = map(json!([
            { "name": "power", "table": "coil", "address": 0, "writable": true },
            { "name": "level", "table": "holding", "address": 3 },
            { "name": "fault", "table": "input", "address": 7, "bit": 2 },
        ]))
        .unwrap();
        assert_eq!(map.max_registers_per_read, 125);
        assert_eq!(map.max_bits_per_read, 2000);
        assert_eq!(map.max_gap, 8);
        assert_eq!(map.poll_groups["default"], Duration::from_secs(1));
        let power = map.point("power").unwrap();
        assert_eq!(power.kind, Kind::Bool);
        assert!(power.writable);
        assert_eq!(power.poll, "default");
        let level = map.point("level").unwrap();
        assert_eq!(level.kind, Kind::U16);
        assert_eq!(level.order, WordOrder::Abcd);
        assert!(level.is_unscaled());
        assert!(!level.writable);
        assert_eq!(map.point("fault").unwrap().kind, Kind::Bit(2));
    }

    #[test]
    fn full_point_reads() {
        let map = RegisterMap::from_options(&options(json!({
            "poll_groups": { "fast": "250ms", "slow": "1m" },
            "max_registers_per_read": 64,
            "max_bits_per_read": 800,
            "max_gap": 0,
            "points": [
                { "name": "current", "table": "input", "address": 100, "type": "f32",
                  "order": "CDAB", "scale": 0.001, "offset": 1.5, "unit": "A", "poll": "fast" },
                { "name": "mode", "table": "holding", "address": 5, "type": "u16",
                  "enum": { "0": "off", "1": "on", "-1": "fault" }, "writable": true, "poll": "slow" },
                { "name": "label", "table": "holding", "address": 10, "type": "string", "length": 8 },
            ]
        })))
        .unwrap();
        assert_eq!(map.max_registers_per_read, 64);
        assert_eq!(map.max_bits_per_read, 800);
        assert_eq!(map.max_gap, 0);
        assert_eq!(map.poll_groups["fast"], Duration::from_millis(250));
        assert_eq!(map.poll_groups["slow"], Duration::from_secs(60));
        let current = map.point("current").unwrap();
        assert_eq!(current.kind, Kind::F32);
        assert_eq!(current.order, WordOrder::Cdab);
        assert_eq!((current.scale, current.offset), (0.001, 1.5));
        assert_eq!(current.unit.as_deref(), Some("A"));
        let mode = map.point("mode").unwrap();
        assert_eq!(mode.enum_map[&-1], "fault");
        assert_eq!(mode.enum_map[&1], "on");
        assert_eq!(map.point("label").unwrap().kind, Kind::String { length: 8 });
    }

    #[test]
    fn unknown_keys_are_refused() {
        let error = map(json!([{ "name": "a", "table": "coil", "address": 0, "writeable": true }]))
            .unwrap_err();
        assert!(
            matches!(&error, MapError::PointFormat { point, field: Some(field), .. }
                if point == "a" && field == "writeable"),
            "{error}"
        );
        let error = RegisterMap::from_options(&options(json!({ "points": [], "max_regs": 3 })))
            .unwrap_err();
        assert!(
            matches!(&error, MapError::Format(m) if m.contains("max_regs")),
            "{error}"
        );
        let error = map(json!([{ "name": "a", "table": "holdings", "address": 0 }])).unwrap_err();
        assert!(
            matches!(&error, MapError::PointFormat { point, .. } if point == "a"),
            "{error}"
        );
        let error =
            map(json!([{ "name": "a", "table": "holding", "address": 0, "order": "ACBD" }]))
                .unwrap_err();
        assert!(
            matches!(&error, MapError::PointFormat { point, .. } if point == "a"),
            "{error}"
        );
        let error =
            map(json!([{ "name": "a", "table": "holding", "address": 70000 }])).unwrap_err();
        assert!(
            matches!(&error, MapError::PointFormat { point, .. } if point == "a"),
            "{error}"
        );
    }

    #[test]
    fn types_must_fit_their_table() {
        let error = refused(
            json!([{ "name": "amps", "table": "coil", "address": 0, "type": "f32" }]),
            "amps",
            "type",
        );
        assert!(error.to_string().contains("f32 does not fit a coil"));
        refused(
            json!([{ "name": "amps", "table": "discrete_input", "address": 0, "type": "u16" }]),
            "amps",
            "type",
        );
        refused(
            json!([{ "name": "on", "table": "holding", "address": 0, "type": "bool" }]),
            "on",
            "type",
        );
        let error = refused(
            json!([{ "name": "energy", "table": "holding", "address": 65533, "type": "u64" }]),
            "energy",
            "address",
        );
        assert!(error.to_string().contains("65535"), "{error}");
        map(json!([{ "name": "e", "table": "holding", "address": 65532, "type": "u64" }])).unwrap();
        refused(
            json!([{ "name": "c", "table": "coil", "address": 65535 }, { "name": "d", "table": "input", "address": 65535, "type": "u32" }]),
            "d",
            "address",
        );
    }

    #[test]
    fn points_wider_than_a_read_or_write_are_refused() {
        refused(
            json!([{ "name": "blob", "table": "input", "address": 0, "type": "string", "length": 126 }]),
            "blob",
            "length",
        );
        map(json!([{ "name": "blob", "table": "input", "address": 0, "type": "string", "length": 125 }]))
            .unwrap();
        refused(
            json!([{ "name": "blob", "table": "holding", "address": 0, "type": "string",
                     "length": 124, "writable": true }]),
            "blob",
            "length",
        );
        let error = RegisterMap::from_options(&options(json!({
            "max_registers_per_read": 2,
            "points": [{ "name": "big", "table": "holding", "address": 0, "type": "f64" }]
        })))
        .unwrap_err();
        assert_eq!((error.point(), error.field()), (Some("big"), Some("type")));
    }

    #[test]
    fn bits_only_select_from_u16_registers() {
        refused(
            json!([{ "name": "f", "table": "coil", "address": 0, "bit": 1 }]),
            "f",
            "bit",
        );
        let error = refused(
            json!([{ "name": "f", "table": "holding", "address": 0, "type": "u32", "bit": 1 }]),
            "f",
            "bit",
        );
        assert!(error.to_string().contains("not of u32"), "{error}");
        refused(
            json!([{ "name": "f", "table": "input", "address": 0, "bit": 16 }]),
            "f",
            "bit",
        );
        let map = map(json!([
            { "name": "a", "table": "input", "address": 0, "bit": 15, "type": "u16" },
            { "name": "b", "table": "input", "address": 0, "bit": 0, "type": "bool" },
        ]))
        .unwrap();
        assert_eq!(map.point("a").unwrap().kind, Kind::Bit(15));
        assert_eq!(map.point("b").unwrap().kind, Kind::Bit(0));
    }

    #[test]
    fn read_only_tables_cannot_be_writable() {
        for table in ["discrete_input", "input"] {
            let error = refused(
                json!([{ "name": "x", "table": table, "address": 0, "writable": true }]),
                "x",
                "writable",
            );
            assert!(error.to_string().contains(table), "{error}");
        }
        map(json!([
            { "name": "c", "table": "coil", "address": 0, "writable": true },
            { "name": "h", "table": "holding", "address": 0, "writable": true },
        ]))
        .unwrap();
    }

    #[test]
    fn overlaps_that_make_no_sense_are_refused() {
        let error = refused(
            json!([
                { "name": "volts", "table": "holding", "address": 10, "type": "f32" },
                { "name": "amps", "table": "holding", "address": 11, "type": "f32" },
            ]),
            "amps",
            "address",
        );
        assert!(error.to_string().contains("`volts`"), "{error}");
        refused(
            json!([
                { "name": "word", "table": "holding", "address": 11 },
                { "name": "wide", "table": "holding", "address": 10, "type": "u32" },
            ]),
            "word",
            "address",
        );
        refused(
            json!([
                { "name": "a", "table": "coil", "address": 3 },
                { "name": "b", "table": "coil", "address": 3 },
            ]),
            "b",
            "address",
        );
        refused(
            json!([
                { "name": "a", "table": "input", "address": 3, "bit": 4 },
                { "name": "b", "table": "input", "address": 3, "bit": 4 },
            ]),
            "b",
            "address",
        );
        // Views of one register, and the same address in different tables, are fine.
        map(json!([
            { "name": "status", "table": "input", "address": 3 },
            { "name": "fault", "table": "input", "address": 3, "bit": 0 },
            { "name": "alarm", "table": "input", "address": 3, "bit": 1 },
            { "name": "signed", "table": "input", "address": 3, "type": "i16" },
            { "name": "next", "table": "input", "address": 4, "type": "u32" },
            { "name": "other", "table": "holding", "address": 3, "type": "u32" },
            { "name": "coil", "table": "coil", "address": 3 },
            { "name": "contact", "table": "discrete_input", "address": 3 },
        ]))
        .unwrap();
    }

    #[test]
    fn scale_offset_and_enum_are_checked() {
        refused(
            json!([{ "name": "v", "table": "input", "address": 0, "scale": 0 }]),
            "v",
            "scale",
        );
        refused(
            json!([{ "name": "v", "table": "coil", "address": 0, "scale": 2 }]),
            "v",
            "scale",
        );
        refused(
            json!([{ "name": "v", "table": "input", "address": 0, "type": "string", "length": 2, "offset": 2 }]),
            "v",
            "offset",
        );
        refused(
            json!([{ "name": "v", "table": "input", "address": 0, "type": "f32", "enum": { "1": "on" } }]),
            "v",
            "enum",
        );
        refused(
            json!([{ "name": "v", "table": "input", "address": 0, "enum": { "one": "on" } }]),
            "v",
            "enum",
        );
        refused(
            json!([{ "name": "v", "table": "input", "address": 0, "scale": 0.1, "enum": { "1": "on" } }]),
            "v",
            "enum",
        );
    }

    #[test]
    fn strings_need_a_length() {
        refused(
            json!([{ "name": "s", "table": "holding", "address": 0, "type": "string", "length": 0 }]),
            "s",
            "length",
        );
        refused(
            json!([{ "name": "s", "table": "holding", "address": 0, "type": "string" }]),
            "s",
            "length",
        );
        refused(
            json!([{ "name": "s", "table": "holding", "address": 0, "type": "u16", "length": 2 }]),
            "s",
            "length",
        );
    }

    #[test]
    fn names_must_be_unique() {
        refused(
            json!([
                { "name": "a", "table": "coil", "address": 0 },
                { "name": "a", "table": "coil", "address": 1 },
            ]),
            "a",
            "name",
        );
        let error = map(json!([{ "name": "", "table": "coil", "address": 0 }])).unwrap_err();
        assert_eq!(error, MapError::EmptyName { index: 0 });
    }

    #[test]
    fn poll_groups_must_exist_and_parse() {
        let error = refused(
            json!([{ "name": "a", "table": "coil", "address": 0, "poll": "fast" }]),
            "a",
            "poll",
        );
        assert!(error.to_string().contains("`fast`"), "{error}");
        for bad in ["", "0s", "fast", "1 parsec", "-1s", "s"] {
            let error = RegisterMap::from_options(&options(json!({
                "poll_groups": { "g": bad },
                "points": [{ "name": "a", "table": "coil", "address": 0, "poll": "g" }]
            })))
            .unwrap_err();
            assert!(
                matches!(error, MapError::BadInterval { .. }),
                "{bad}: {error}"
            );
            assert_eq!(error.field(), Some("poll_groups"));
        }
        assert_eq!(parse_interval("1.5s"), Some(Duration::from_millis(1500)));
        assert_eq!(parse_interval("100ms"), Some(Duration::from_millis(100)));
        assert_eq!(parse_interval("1h"), Some(Duration::from_secs(3600)));
        assert_eq!(parse_interval("5 min"), Some(Duration::from_secs(300)));
    }

    #[test]
    fn map_limits_are_checked() {
        for (field, value) in [
            ("max_registers_per_read", 126),
            ("max_registers_per_read", 0),
            ("max_bits_per_read", 2001),
            ("max_bits_per_read", 0),
        ] {
            let error = RegisterMap::from_options(&options(json!({
                field: value,
                "points": [{ "name": "a", "table": "coil", "address": 0 }]
            })))
            .unwrap_err();
            assert_eq!(error.field(), Some(field), "{error}");
        }
        assert_eq!(map(json!([])).unwrap_err(), MapError::NoPoints);
    }
}
