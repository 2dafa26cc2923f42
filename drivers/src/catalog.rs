//! What a driver offers: its catalog of points, commands and queries.
//!
//! The catalog is the source of truth for a device's vocabulary. A static driver returns
//! a constant one (read from the `catalog.toml` beside its module); a data-driven driver
//! (Modbus) computes it from its options. A profile can only narrow and label it: a
//! subset of the points and commands, tighter ranges and fewer enum values, its own
//! descriptions. The router checks a panel's arguments against the narrowed command, and
//! the runtime checks every value a driver emits against the point's declared type.

use std::collections::BTreeMap;
use std::fmt;
use std::time::Duration;

use serde::{Deserialize, Serialize};
use serde_json::{Map, Value};

/// Points, commands and queries a driver offers for one set of options.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Catalog {
    /// Point names (or patterns such as `route.*`, standing for `route.1`, `route.2`, ...)
    /// and what their values are.
    #[serde(default)]
    pub points: BTreeMap<String, PointSpec>,
    /// Commands and their argument schemas.
    #[serde(default)]
    pub commands: BTreeMap<String, CommandSpec>,
    /// Named background reads, with how often to run them when a profile says nothing,
    /// in the order a fresh connection runs them (cheap and important first).
    #[serde(default)]
    pub queries: Vec<QuerySpec>,
}

impl Catalog {
    /// Reads a constant catalog written in TOML (a driver's `catalog.toml`). Panics on a
    /// malformed one: it is compiled in, and every driver's test suite reads it.
    pub fn from_toml(text: &str) -> Catalog {
        toml::from_str(text).unwrap_or_else(|e| panic!("a driver's catalog.toml is invalid: {e}"))
    }

    /// The point names (and patterns).
    pub fn point_names(&self) -> Vec<&str> {
        self.points.keys().map(String::as_str).collect()
    }

    /// The command names, for a message listing them.
    pub fn command_names(&self) -> String {
        self.commands
            .keys()
            .map(String::as_str)
            .collect::<Vec<_>>()
            .join(", ")
    }

    /// The query names, for a message listing them.
    pub fn query_names(&self) -> String {
        self.queries
            .iter()
            .map(|q| q.name.as_str())
            .collect::<Vec<_>>()
            .join(", ")
    }

    /// The query of this name.
    pub fn query(&self, name: &str) -> Option<&QuerySpec> {
        self.queries.iter().find(|q| q.name == name)
    }

    /// The spec of a point, by its exact name or by a pattern such as `route.*`.
    pub fn point(&self, name: &str) -> Option<&PointSpec> {
        point_in(&self.points, name)
    }
}

/// Looks `name` up in `points`, where a key ending in `*` stands for one more name part
/// (`route.*` matches `route.3`, not `route.3.1`).
pub fn point_in<'a, T>(points: &'a BTreeMap<String, T>, name: &str) -> Option<&'a T> {
    points.get(name).or_else(|| {
        points.iter().find_map(|(pattern, spec)| {
            let prefix = pattern.strip_suffix('*')?;
            let rest = name.strip_prefix(prefix)?;
            (!rest.is_empty() && !rest.contains('.')).then_some(spec)
        })
    })
}

/// A named background read.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct QuerySpec {
    /// What `Request::Poll` and a profile's `[[poll]] query` call it.
    pub name: String,
    /// How often to run it when the profile has no `[[poll]]` list; `None`: only when a
    /// profile asks for it.
    #[serde(
        default,
        with = "humantime_serde",
        skip_serializing_if = "Option::is_none"
    )]
    pub every: Option<Duration>,
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub description: String,
    /// Where in `[options]` a data-driven driver got it from (a Modbus poll group), so a
    /// problem with it can be shown there.
    #[serde(skip)]
    pub defined_at: OptionsPath,
}

#[derive(Debug, Clone, PartialEq, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct PointSpec {
    #[serde(rename = "type")]
    pub kind: PointType,
    /// Allowed values of an `enum` point.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub values: Vec<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub unit: Option<String>,
    /// A short name for a panel to show, when the point's own name will not do.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub label: Option<String>,
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub description: String,
}

impl PointSpec {
    pub fn new(kind: PointType, description: impl Into<String>) -> PointSpec {
        PointSpec {
            kind,
            values: Vec::new(),
            unit: None,
            label: None,
            description: description.into(),
        }
    }

    /// Whether `value` is what this point declares; says what was expected otherwise.
    pub fn admits(&self, value: &Value) -> Result<(), String> {
        let ok = match self.kind {
            PointType::Bool => value.is_boolean(),
            PointType::Integer => value.is_i64() || value.is_u64(),
            PointType::Number => value.is_number(),
            PointType::String => value.is_string(),
            PointType::Enum => value
                .as_str()
                .is_some_and(|s| self.values.iter().any(|v| v == s)),
            PointType::Array => value.is_array(),
            PointType::Object => value.is_object(),
        };
        if ok {
            return Ok(());
        }
        Err(match self.kind {
            PointType::Enum => format!("expected one of {}, got {value}", self.values.join(", ")),
            kind => format!("expected {kind}, got {value}"),
        })
    }
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

impl fmt::Display for PointType {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            PointType::Bool => "a bool",
            PointType::Integer => "an integer",
            PointType::Number => "a number",
            PointType::String => "a string",
            PointType::Enum => "an enum",
            PointType::Array => "an array",
            PointType::Object => "an object",
        })
    }
}

#[derive(Debug, Clone, Default, PartialEq, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct CommandSpec {
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub description: String,
    /// A short name for a panel to show.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub label: Option<String>,
    #[serde(default)]
    pub args: BTreeMap<String, ArgSpec>,
    /// For a set-style command, the arguments that name what it sets (`output` for
    /// `volume`), as opposed to the value (`level`): a newer command with the same
    /// arguments given and the same target replaces a queued older one, which is answered
    /// `superseded`. `None`: every command runs. A loaded profile settles it from its own
    /// `target`/`conflate` and the shared vocabulary's default.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub target: Option<Vec<String>>,
    /// `false` turns conflation off for a command the vocabulary calls set-style; `true`
    /// turns it on with `target` (or no target: one value for the whole device).
    #[serde(default, skip_serializing)]
    pub conflate: Option<bool>,
}

impl CommandSpec {
    pub fn new(description: impl Into<String>) -> CommandSpec {
        CommandSpec {
            description: description.into(),
            ..CommandSpec::default()
        }
    }

    pub fn arg(mut self, name: &str, spec: ArgSpec) -> CommandSpec {
        self.args.insert(name.to_string(), spec);
        self
    }

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

#[derive(Debug, Clone, PartialEq, Deserialize, Serialize)]
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

impl fmt::Display for ArgType {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            ArgType::Bool => "bool",
            ArgType::Integer => "integer",
            ArgType::Number => "number",
            ArgType::String => "string",
            ArgType::Enum => "enum",
            ArgType::Any => "any",
        })
    }
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

    pub fn describe(&self) -> String {
        match self.kind {
            ArgType::Enum => format!("one of {}", self.values.join(", ")),
            ArgType::Bool => "true or false".into(),
            ArgType::Integer => "an integer".into(),
            ArgType::Number => "a number".into(),
            ArgType::String => "a string".into(),
            ArgType::Any => "a bool, number or string".into(),
        }
    }

    pub fn check(&self, value: &Value) -> Result<(), String> {
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

/// Where inside a profile's `[options]` table something is: `points[1].writable` is
/// `[Key("points"), Index(1), Key("writable")]`. Empty: the table as a whole. The
/// configuration layer turns it into a file:line:column.
pub type OptionsPath = Vec<PathKey>;

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum PathKey {
    Key(String),
    Index(usize),
}

impl fmt::Display for PathKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            PathKey::Key(key) => f.write_str(key),
            PathKey::Index(i) => write!(f, "[{i}]"),
        }
    }
}

/// Options a driver cannot work with, and where in `[options]` the problem is.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{message}")]
pub struct OptionsError {
    /// What is wrong and what to write instead.
    pub message: String,
    /// The offending field (empty: the table as a whole, or unknown).
    pub at: OptionsPath,
    /// Further problems found in the same pass (a data-driven driver checks its whole
    /// definition at once), each with its own place, so one check-config run lists them all.
    pub more: Vec<OptionsError>,
}

impl OptionsError {
    /// A problem with the options as a whole.
    pub fn new(message: impl Into<String>) -> OptionsError {
        OptionsError::at(Vec::new(), message)
    }

    /// A problem with one top-level key of `[options]`.
    pub fn at_key(key: &str, message: impl Into<String>) -> OptionsError {
        OptionsError::at(vec![PathKey::Key(key.to_string())], message)
    }

    /// A problem at one field.
    pub fn at(at: OptionsPath, message: impl Into<String>) -> OptionsError {
        OptionsError {
            message: message.into(),
            at,
            more: Vec::new(),
        }
    }

    /// This problem and every further one.
    pub fn all(&self) -> impl Iterator<Item = &OptionsError> {
        std::iter::once(self).chain(self.more.iter())
    }
}

impl From<String> for OptionsError {
    /// A driver's own check of its options as a whole.
    fn from(message: String) -> OptionsError {
        OptionsError::new(message)
    }
}

/// Reads a driver's typed options from the `[options]` table; a field the type does not
/// know (with `#[serde(deny_unknown_fields)]`) or a value of the wrong type is reported at
/// its path.
pub fn options_from<T: serde::de::DeserializeOwned>(
    options: &Map<String, Value>,
) -> Result<T, OptionsError> {
    let value = Value::Object(options.clone());
    serde_path_to_error::deserialize(value).map_err(|error| {
        let at: OptionsPath = error
            .path()
            .iter()
            .filter_map(|segment| match segment {
                serde_path_to_error::Segment::Map { key } => Some(PathKey::Key(key.clone())),
                serde_path_to_error::Segment::Seq { index } => Some(PathKey::Index(*index)),
                serde_path_to_error::Segment::Enum { variant } => {
                    Some(PathKey::Key(variant.clone()))
                }
                serde_path_to_error::Segment::Unknown => None,
            })
            .collect();
        let mut message = error.into_inner().to_string();
        // Serde's words name the expected type, not the field: say which one.
        if !at.is_empty() {
            let shown: Vec<String> = at.iter().map(PathKey::to_string).collect();
            message = format!("`{}`: {message}", shown.join(".").replace(".[", "["));
        }
        OptionsError::at(at, message)
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[derive(Debug, Deserialize)]
    #[serde(deny_unknown_fields)]
    #[allow(dead_code)]
    struct Inner {
        bit: Option<u8>,
    }

    #[derive(Debug, Deserialize)]
    #[serde(deny_unknown_fields)]
    #[allow(dead_code)]
    struct Typed {
        unit: Option<u8>,
        #[serde(default)]
        points: Vec<Inner>,
    }

    fn error(options: Value) -> OptionsError {
        let Value::Object(options) = options else {
            unreachable!()
        };
        options_from::<Typed>(&options).unwrap_err()
    }

    #[test]
    fn typed_options_errors_name_the_field_by_its_path() {
        let key = |k: &str| PathKey::Key(k.into());
        let wrong = error(json!({ "unit": "one" }));
        assert_eq!(wrong.at, [key("unit")]);
        assert!(wrong.message.starts_with("`unit`: invalid type"), "{wrong}");
        let deep = error(json!({ "points": [{}, { "bit": 300 }] }));
        assert_eq!(deep.at, [key("points"), PathKey::Index(1), key("bit")]);
        assert!(deep.message.starts_with("`points[1].bit`: "), "{deep}");
        let unknown = error(json!({ "points": [{ "bti": 3 }] }));
        assert_eq!(unknown.at, [key("points"), PathKey::Index(0), key("bti")]);
        assert!(unknown.message.contains("unknown field `bti`"), "{unknown}");
    }

    #[test]
    fn a_point_spec_admits_only_its_type() {
        let power = PointSpec {
            values: vec!["on".into(), "off".into()],
            ..PointSpec::new(PointType::Enum, "")
        };
        assert!(power.admits(&json!("on")).is_ok());
        assert!(power.admits(&json!("warming")).is_err());
        assert!(
            PointSpec::new(PointType::Integer, "")
                .admits(&json!(1.5))
                .is_err()
        );
        assert!(
            PointSpec::new(PointType::Number, "")
                .admits(&json!(1))
                .is_ok()
        );
        assert!(
            PointSpec::new(PointType::Array, "")
                .admits(&json!({}))
                .is_err()
        );
    }
}
