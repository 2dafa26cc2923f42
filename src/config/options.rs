//! Where in a TOML file a driver's `[options]` problem is. A driver names the field at
//! fault by its path inside the options (`points[1].writable`); this finds that key in the
//! spanned document, so check-config can say file:line:column without searching the text.

use std::ops::Range;

use avgate_drivers::PathKey;
use toml::de::{DeTable, DeValue};

/// The span of the key (or array element) at `path` inside the table at `table` (the
/// profile's `options`, or a site device's `overrides.options`) of the TOML `text`: the
/// deepest part of the path that exists, so a missing field points at its parent.
pub fn locate(text: &str, table: &[&str], path: &[PathKey]) -> Option<Range<usize>> {
    let document = DeTable::parse(text).ok()?;
    let mut span = None;
    let mut value: Option<&DeValue> = None;
    let mut current: &DeTable = document.get_ref();
    let keys = table.iter().map(|k| PathKey::Key(k.to_string()));
    for key in keys.chain(path.iter().cloned()) {
        let next = match (&key, value) {
            (PathKey::Key(name), _) => current
                .get_key_value(name.as_str())
                .map(|(k, v)| (k.span(), v)),
            (PathKey::Index(i), Some(DeValue::Array(items))) => {
                items.get(*i).map(|item| (item.span(), item))
            }
            (PathKey::Index(_), _) => None,
        };
        let Some((key_span, next)) = next else {
            break;
        };
        span = Some(key_span);
        value = Some(next.get_ref());
        if let DeValue::Table(table) = next.get_ref() {
            current = table;
        }
    }
    span
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
                && error.contains("poll `fast`")
                && error.contains("100ms")
                && error.lines().count() == 1,
            "{error}"
        );
        let error = parse(&format!("{point}[options.poll_groups]\nfast = \"99ms\"\n")).unwrap_err();
        assert!(error.starts_with("m.toml:11:1:"), "{error}");
        assert!(parse(&format!("poll_groups = {{ fast = \"100ms\" }}\n{point}")).is_ok());
    }

    #[test]
    fn a_profile_labels_mapped_points_and_cannot_retype_them() {
        let map = "[[options.points]]\nname = \"ok\"\ntable = \"coil\"\naddress = 0\n";
        let profile = parse(&format!("{map}[points.ok]\nlabel = \"Outlet\"\n")).unwrap();
        assert_eq!(profile.points["ok"].label.as_deref(), Some("Outlet"));
        let error = parse(&format!("{map}[points.ok]\ntype = \"integer\"\n")).unwrap_err();
        // Line 10 column 8: the `"integer"` of the narrowing.
        assert!(
            error.starts_with("m.toml:10:8:") && error.contains("is a bool"),
            "{error}"
        );
        let error = parse(&format!("{map}[points.other]\n")).unwrap_err();
        assert!(
            error.starts_with("m.toml:9:9:") && error.contains("point `other`"),
            "{error}"
        );
    }

    #[test]
    fn a_key_path_is_found_through_arrays_and_inline_tables() {
        use avgate_drivers::PathKey::{Index, Key};
        let text = "[options]\nlimits = { low = 1, high = 2 }\n[[options.points]]\nname = \"a\"\n[[options.points]]\nname = \"b\"\nbit = 3\n";
        let at = |path: &[avgate_drivers::PathKey]| {
            super::locate(text, &["options"], path).map(|span| &text[span])
        };
        assert_eq!(
            at(&[Key("limits".into()), Key("high".into())]),
            Some("high")
        );
        assert_eq!(
            at(&[Key("points".into()), Index(1), Key("bit".into())]),
            Some("bit")
        );
        // A field that is not there points at the nearest part that is.
        assert!(at(&[Key("points".into()), Index(0), Key("bit".into())]).is_some());
        assert_eq!(at(&[]), Some("options"));
    }
}
