//! Profiles whose points are data: a Modbus profile lists its points in a register map
//! under `[[options.points]]`, so the points panels see, the polls and the `write` command
//! are derived from that map instead of being declared by hand.

use std::collections::BTreeMap;
use std::ops::Range;

use avgate_drivers::modbus::{MapError, RegisterMap, map::Kind};
use avgate_drivers::{Map, Value};

use serde::Deserialize;
use toml::Spanned;

use super::profile::{
    ArgSpec, ArgType, CommandSpec, MIN_POLL_INTERVAL, PointSpec, PointType, Poll,
};

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
pub fn derive(options: &Map<String, Value>, text: &str) -> Result<Derived, Vec<Located>> {
    let map = RegisterMap::from_options(options).map_err(|e| vec![locate(&e, text)])?;
    let too_fast = too_fast_poll_groups(&map, text);
    if !too_fast.is_empty() {
        return Err(too_fast);
    }
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
                target: None,
                conflate: None,
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

/// Poll groups set faster than [`MIN_POLL_INTERVAL`], the floor every poll is held to,
/// each at its `group = "..."` entry.
fn too_fast_poll_groups(map: &RegisterMap, text: &str) -> Vec<Located> {
    // Only the spans are wanted here; the map itself was read (and checked) above.
    #[derive(Deserialize)]
    struct File {
        options: Option<Options>,
    }
    #[derive(Deserialize)]
    struct Options {
        #[serde(default)]
        poll_groups: BTreeMap<Spanned<String>, Spanned<toml::Value>>,
    }
    let spans: BTreeMap<String, Range<usize>> = toml::from_str::<File>(text)
        .ok()
        .and_then(|file| file.options)
        .map(|options| {
            options
                .poll_groups
                .into_iter()
                .map(|(group, value)| {
                    let span = group.span().start..value.span().end;
                    (group.into_inner(), span)
                })
                .collect()
        })
        .unwrap_or_default();
    map.poll_groups
        .iter()
        .filter(|(_, every)| **every < MIN_POLL_INTERVAL)
        .map(|(group, every)| Located {
            message: format!(
                "poll group `{group}` every {every:?} is faster than the {MIN_POLL_INTERVAL:?} every poll is held to; \
                 set `poll_groups.{group}` to at least \"{}ms\"",
                MIN_POLL_INTERVAL.as_millis()
            ),
            span: spans.get(group).cloned(),
        })
        .collect()
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

#[cfg(test)]
mod tests {
    use std::path::Path;

    use crate::config::Profile;

    const HEAD: &str = "driver = \"modbus\"\nname = \"m\"\ndescription = \"d\"\n[options]\n";

    fn parse(points: &str) -> Result<Profile, String> {
        Profile::parse("m", Path::new("m.toml"), &format!("{HEAD}{points}"))
            .map_err(|e| e.to_string())
    }

    #[test]
    fn points_polls_and_write_come_from_the_map() {
        let profile = parse(
            "poll_groups = { fast = \"500ms\" }\n\
             [[options.points]]\nname = \"relay\"\ntable = \"coil\"\naddress = 0\nwritable = true\npoll = \"fast\"\n\
             [[options.points]]\nname = \"temp\"\ntable = \"input\"\naddress = 3\ntype = \"i16\"\nscale = 0.1\nunit = \"°C\"\n",
        )
        .unwrap();
        assert_eq!(profile.points["temp"].unit.as_deref(), Some("°C"));
        assert_eq!(
            profile.points["temp"].kind,
            crate::config::profile::PointType::Number
        );
        let write = &profile.commands["write"];
        assert_eq!(write.args["point"].values, ["relay"]);
        let polls: Vec<_> = profile.polls.iter().map(|p| p.query.as_str()).collect();
        assert_eq!(polls, ["default", "fast"]);
    }

    #[test]
    fn a_bad_point_is_reported_at_its_field() {
        let error = parse(
            "[[options.points]]\nname = \"ok\"\ntable = \"coil\"\naddress = 0\n\
             [[options.points]]\nname = \"volts\"\ntable = \"input\"\naddress = 1\nwritable = true\n",
        )
        .unwrap_err();
        // Line 13: `writable = true` of the second point, and nothing else.
        assert!(
            error.starts_with("m.toml:13:1:")
                && error.contains("read-only")
                && error.lines().count() == 1,
            "{error}"
        );
    }

    #[test]
    fn a_point_name_with_a_space_is_refused_at_its_name() {
        let error = parse(
            "[[options.points]]\nname = \"grid frequency\"\ntable = \"input\"\naddress = 0\n",
        )
        .unwrap_err();
        assert!(
            error.starts_with("m.toml:6:1:")
                && error.contains("`grid frequency`")
                && error.contains("`grid_frequency`"),
            "{error}"
        );
    }

    #[test]
    fn a_typo_inside_a_point_names_the_point_and_its_line() {
        let error = parse(
            "[[options.points]]\nname = \"ok\"\ntable = \"coil\"\naddress = 0\n\
             [[options.points]]\nname = \"volts\"\ntable = \"input\"\nadress = 1\n",
        )
        .unwrap_err();
        // Line 12: `adress = 1` of the point `volts`.
        assert!(
            error.starts_with("m.toml:12:1:")
                && error.contains("modbus point `volts`")
                && error.contains("unknown field `adress`"),
            "{error}"
        );
    }

    #[test]
    fn poll_groups_are_held_to_the_poll_floor() {
        let point =
            "[[options.points]]\nname = \"a\"\ntable = \"coil\"\naddress = 0\npoll = \"fast\"\n";
        let error = parse(&format!(
            "poll_groups = {{ slow = \"5s\", fast = \"1ms\" }}\n{point}"
        ))
        .unwrap_err();
        // Line 5 column 30: the `fast = "1ms"` entry of the inline table.
        assert!(
            error.starts_with("m.toml:5:30:")
                && error.contains("poll group `fast`")
                && error.contains("100ms")
                && error.lines().count() == 1,
            "{error}"
        );
        let error = parse(&format!("{point}[options.poll_groups]\nfast = \"99ms\"\n")).unwrap_err();
        assert!(error.starts_with("m.toml:11:1:"), "{error}");
        assert!(parse(&format!("poll_groups = {{ fast = \"100ms\" }}\n{point}")).is_ok());
    }

    #[test]
    fn hand_written_points_are_refused_in_a_modbus_profile() {
        let error = parse(
            "[[options.points]]\nname = \"ok\"\ntable = \"coil\"\naddress = 0\n[points.ok]\ntype = \"bool\"\n",
        )
        .unwrap_err();
        assert!(error.contains("takes no [points]"), "{error}");
    }
}
