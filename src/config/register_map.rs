//! Profiles whose points are data: a Modbus profile lists its points in a register map
//! under `[[options.points]]`, so the points panels see, the polls and the `write` command
//! are derived from that map instead of being declared by hand.

use std::collections::BTreeMap;
use std::ops::Range;

use avgate_drivers::modbus::{MapError, RegisterMap, map::Kind};
use avgate_drivers::{Map, Value};

use super::profile::{ArgSpec, ArgType, CommandSpec, PointSpec, PointType, Poll};

/// What a register map gives a profile.
pub struct Derived {
    pub points: BTreeMap<String, PointSpec>,
    pub commands: BTreeMap<String, CommandSpec>,
    pub polls: Vec<Poll>,
}

/// A map error with where in the profile text it points, when that can be found.
pub struct Located {
    pub message: String,
    pub span: Option<Range<usize>>,
}

/// Derives points, the `write` command and the polls from the map in `options`.
pub fn derive(options: &Map<String, Value>, text: &str) -> Result<Derived, Located> {
    let map = RegisterMap::from_options(options).map_err(|e| locate(&e, text))?;
    let mut points = BTreeMap::new();
    for point in &map.points {
        let kind = match point.kind {
            Kind::Bool | Kind::Bit(_) => PointType::Bool,
            Kind::String { .. } => PointType::String,
            _ if !point.enum_map.is_empty() => PointType::Enum,
            kind if kind.is_integer() && point.is_unscaled() => PointType::Integer,
            _ => PointType::Number,
        };
        let description = format!(
            "{} {}{}",
            point.table,
            point.address,
            if point.writable { ", writable" } else { "" }
        );
        points.insert(
            point.name.clone(),
            PointSpec {
                kind,
                values: point.enum_map.values().cloned().collect(),
                unit: point.unit.clone(),
                description,
            },
        );
    }
    let writable: Vec<String> = map
        .points
        .iter()
        .filter(|p| p.writable)
        .map(|p| p.name.clone())
        .collect();
    let mut commands = BTreeMap::new();
    if !writable.is_empty() {
        let args = BTreeMap::from([
            (
                "point".to_string(),
                ArgSpec::new(ArgType::Enum, "The point to write.").values(writable),
            ),
            (
                "value".to_string(),
                ArgSpec::new(
                    ArgType::Any,
                    "The new value, as the point reports it (bool, number or enum name).",
                ),
            ),
        ]);
        commands.insert(
            "write".to_string(),
            CommandSpec {
                description: "Write a writable point; the result follows the device's read-back."
                    .into(),
                args,
            },
        );
    }
    // Groups without points would poll nothing.
    let polls = map
        .poll_groups
        .iter()
        .filter(|(group, _)| map.points.iter().any(|p| &p.poll == *group))
        .map(|(group, every)| Poll {
            query: group.clone(),
            every: *every,
        })
        .collect();
    Ok(Derived {
        points,
        commands,
        polls,
    })
}

/// Points at the line of the offending field: the point's `name = "..."` line in the
/// profile, then the first line after it that sets the field.
fn locate(error: &MapError, text: &str) -> Located {
    let message = error.to_string();
    let Some(point) = error.point() else {
        return Located {
            message,
            span: text.find("[options").map(|at| at..at + 1),
        };
    };
    let name_at = [format!("name = \"{point}\""), format!("name=\"{point}\"")]
        .iter()
        .find_map(|needle| text.find(needle.as_str()));
    let Some(name_at) = name_at else {
        return Located {
            message,
            span: None,
        };
    };
    // The point's own lines run to the next table header.
    let end = text[name_at..]
        .find("\n[")
        .map_or(text.len(), |at| name_at + at);
    let field_at = error.field().and_then(|field| {
        let mut offset = name_at;
        for line in text[name_at..end].split_inclusive('\n') {
            let key = line.trim_start();
            if key.starts_with(field) && key[field.len()..].trim_start().starts_with('=') {
                return Some(offset + (line.len() - key.len()));
            }
            offset += line.len();
        }
        None
    });
    let at = field_at.unwrap_or(name_at);
    Located {
        message,
        span: Some(at..at + 1),
    }
}
