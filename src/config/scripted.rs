//! Profiles whose protocol is data (`driver = "scripted"`): the points, commands (with
//! their argument schemas) and polls come from the script under `[options]`, as a Modbus
//! profile's come from its register map.

use avgate_drivers::scripted;

use super::profile::{CommandSpec, MIN_POLL_INTERVAL, PointSpec, Poll};
use super::register_map::{Derived, Located};

/// Compiles the script in the profile `text` and derives what panels see from it.
pub fn derive(text: &str) -> Result<Derived, Vec<Located>> {
    let located = |l: scripted::Located| Located {
        message: l.message,
        span: l.span,
    };
    let script = scripted::load(text)
        .map_err(|errors| errors.into_iter().map(located).collect::<Vec<_>>())?;
    let catalog = scripted::catalog(&script);
    let mut errors = Vec::new();
    let mut at = |path: &[&str], message: String| {
        let path: Vec<String> = path.iter().map(|p| p.to_string()).collect();
        errors.push(Located {
            span: scripted::span_of(text, &path),
            message: format!("{}: {message}", path.join(".")),
        })
    };
    let mut derived = Derived {
        points: Default::default(),
        commands: Default::default(),
        polls: Vec::new(),
    };
    for (name, spec) in catalog.points {
        match serde_json::from_value::<PointSpec>(spec) {
            Ok(spec) => {
                derived.points.insert(name, spec);
            }
            Err(e) => at(&["options", "points", &name], e.to_string()),
        }
    }
    for (name, spec) in catalog.commands {
        match serde_json::from_value::<CommandSpec>(spec) {
            Ok(spec) => {
                derived.commands.insert(name, spec);
            }
            Err(e) => at(&["options", "commands", &name, "args"], e.to_string()),
        }
    }
    for (query, every) in catalog.polls {
        if every < MIN_POLL_INTERVAL {
            at(
                &["options", "queries", &query, "every"],
                format!("must be at least {MIN_POLL_INTERVAL:?}"),
            );
        }
        derived.polls.push(Poll { query, every });
    }
    if errors.is_empty() {
        Ok(derived)
    } else {
        Err(errors)
    }
}
