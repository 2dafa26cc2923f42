//! `[lease]` in the site file: who has the room, and whether others may drive it.
//!
//! ```toml
//! [lease]
//! policy = "exclusive"        # or "shared" (the default)
//! idle = "10m"                # the lease ends after this long without a command
//! released_by = ["room-off"]  # macros whose run ends the lease when it is done
//! ```

use std::path::Path;
use std::time::Duration;

use serde::Deserialize;
use toml::Spanned;

use super::ConfigError;

/// What a panel that does not hold the room may do.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Policy {
    /// Its commands flow, and it becomes the holder: the indicator follows the last panel
    /// that drove the room.
    #[default]
    Shared,
    /// Its commands are refused with `in_use`, unless its token has a higher `priority`
    /// or it takes control.
    Exclusive,
}

/// A checked `[lease]`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LeaseSettings {
    pub policy: Policy,
    /// How long without a command from the holder until the lease ends by itself.
    pub idle: Duration,
    /// Macros whose successful run ends the lease ("room off": the room is free again).
    pub released_by: Vec<String>,
}

/// Long enough that a presenter talking for a while keeps the room; short enough that a
/// forgotten lease does not lock out the next meeting.
const DEFAULT_IDLE: Duration = Duration::from_secs(10 * 60);

/// The macro that ends the lease when `released_by` is not given (if the site has it).
const ROOM_OFF: &str = "room-off";

impl Default for LeaseSettings {
    fn default() -> Self {
        LeaseSettings {
            policy: Policy::Shared,
            idle: DEFAULT_IDLE,
            released_by: Vec::new(),
        }
    }
}

#[derive(Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct LeaseFile {
    #[serde(default)]
    policy: Policy,
    #[serde(default)]
    idle: Option<Spanned<String>>,
    #[serde(default)]
    released_by: Option<Vec<Spanned<String>>>,
}

/// Checks `[lease]` against the site's macros; problems go to `errors`.
pub(super) fn check(
    path: &Path,
    text: &str,
    file: LeaseFile,
    macros: &[String],
    errors: &mut Vec<ConfigError>,
) -> LeaseSettings {
    let idle = match &file.idle {
        None => DEFAULT_IDLE,
        Some(idle) => match humantime::parse_duration(idle.get_ref()) {
            Ok(parsed) if !parsed.is_zero() => parsed,
            parsed => {
                let why = parsed.err().map(|e| format!(": {e}")).unwrap_or_default();
                errors.push(ConfigError::at(
                    path,
                    text,
                    Some(idle.span()),
                    format!(
                        "[lease] idle = \"{}\" is not a duration longer than 0s{why}; write \"10m\" to free a forgotten room after ten minutes",
                        idle.get_ref()
                    ),
                ));
                DEFAULT_IDLE
            }
        },
    };
    let released_by = match file.released_by {
        None => macros.iter().filter(|m| *m == ROOM_OFF).cloned().collect(),
        Some(names) => {
            for name in &names {
                if !macros.contains(name.get_ref()) {
                    errors.push(ConfigError::at(
                        path,
                        text,
                        Some(name.span()),
                        format!(
                            "[lease] released_by names no macro `{}`; this site has: {}",
                            name.get_ref(),
                            macros.join(", ")
                        ),
                    ));
                }
            }
            names.into_iter().map(Spanned::into_inner).collect()
        }
    };
    LeaseSettings {
        policy: file.policy,
        idle,
        released_by,
    }
}

#[cfg(test)]
mod tests {
    use crate::config::parse_site;
    use std::path::Path;

    #[test]
    fn a_released_by_macro_that_does_not_exist_is_reported_where_it_is() {
        let text = "[macros.room-off]\nsteps = [{ delay = \"1s\" }]\n\n[lease]\npolicy = \"exclusive\"\nreleased_by = [\"room-of\"]\n";
        let error = parse_site(Path::new("site.toml"), text)
            .unwrap_err()
            .to_string();
        assert!(
            error.contains("site.toml:6:16: [lease] released_by names no macro `room-of`"),
            "{error}"
        );
    }

    #[test]
    fn defaults_are_shared_ten_minutes_and_room_off() {
        let text = "[macros.room-off]\nsteps = [{ delay = \"1s\" }]\n";
        let site = parse_site(Path::new("site.toml"), text).unwrap();
        assert_eq!(site.lease.policy, super::Policy::Shared);
        assert_eq!(site.lease.idle.as_secs(), 600);
        assert_eq!(site.lease.released_by, ["room-off"]);
    }
}
