//! What a token may do: `read`, `read:PATTERN`, `control`, `control:DEVICE[/COMMAND]`,
//! `admin` and `metrics`, in the one pattern language (`crate::pattern`).
//!
//! Reading is filtered everywhere a token receives state (snapshot, events, `position`,
//! the JSON API), so an out-of-scope point never leaks. A control scope also lets its
//! holder read the devices it names: a panel that can switch a projector must see it.
//! `admin` reads everything (audit, reload and traces show it all anyway).

use std::fmt;

use crate::pattern::Pattern;

/// One entry of a token's `scopes`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Scope {
    Read(Pattern),
    Control(Pattern),
    Admin,
    Metrics,
}

impl Scope {
    pub fn parse(text: &str) -> Result<Scope, String> {
        let (kind, pattern) = match text.split_once(':') {
            Some((kind, pattern)) => (kind, Some(pattern)),
            None => (text, None),
        };
        let parsed = || pattern.map_or(Ok(Pattern::any()), Pattern::parse);
        match (kind, pattern) {
            ("read", _) => Ok(Scope::Read(parsed()?)),
            ("control", _) => Ok(Scope::Control(parsed()?)),
            ("admin", None) => Ok(Scope::Admin),
            ("metrics", None) => Ok(Scope::Metrics),
            ("admin" | "metrics", Some(_)) => Err(format!(
                "scope `{}` takes no pattern; write `{kind}`",
                text.escape_default()
            )),
            _ => Err(format!(
                "unknown scope `{}`; use read, read:PATTERN, control, control:DEVICE[/COMMAND], admin or metrics",
                text.escape_default()
            )),
        }
    }
}

impl fmt::Display for Scope {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Scope::Read(p) if p.as_str() == "*" => f.write_str("read"),
            Scope::Read(p) => write!(f, "read:{}", p.as_str()),
            Scope::Control(p) if p.as_str() == "*" => f.write_str("control"),
            Scope::Control(p) => write!(f, "control:{}", p.as_str()),
            Scope::Admin => f.write_str("admin"),
            Scope::Metrics => f.write_str("metrics"),
        }
    }
}

/// Everything one token may do.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Scopes(Vec<Scope>);

impl Scopes {
    /// A site without tokens is open: anyone may do anything.
    pub fn everything() -> Scopes {
        Scopes(vec![
            Scope::Read(Pattern::any()),
            Scope::Control(Pattern::any()),
            Scope::Admin,
            Scope::Metrics,
        ])
    }

    /// What a token without a `scopes` list gets: what every token could do before
    /// scopes existed, reading and controlling every device (not admin).
    pub fn panel_default() -> Scopes {
        Scopes(vec![
            Scope::Read(Pattern::any()),
            Scope::Control(Pattern::any()),
        ])
    }

    pub fn parse<'a>(texts: impl IntoIterator<Item = &'a str>) -> Result<Scopes, String> {
        texts
            .into_iter()
            .map(Scope::parse)
            .collect::<Result<_, _>>()
            .map(Scopes)
    }

    pub fn is_admin(&self) -> bool {
        self.0.contains(&Scope::Admin)
    }

    pub fn has_metrics(&self) -> bool {
        self.0.contains(&Scope::Metrics) || self.is_admin()
    }

    /// Whether the token may see this point of this device.
    pub fn can_read(&self, device: &str, point: &str) -> bool {
        self.0.iter().any(|scope| match scope {
            Scope::Read(p) => p.matches_point(device, point),
            // A control scope names devices (and commands, not points): it reads them whole.
            Scope::Control(p) => p.matches_device(device),
            Scope::Admin => true,
            Scope::Metrics => false,
        })
    }

    /// Whether the token may see the device at all (its presence, `online` and `error`).
    pub fn can_see_device(&self, device: &str) -> bool {
        self.can_read(device, crate::journal::ONLINE)
    }

    /// Whether the token may send this command to this device.
    pub fn can_control(&self, device: &str, command: &str) -> bool {
        self.0.iter().any(|scope| match scope {
            Scope::Control(p) => p.matches_command(device, command),
            _ => false,
        })
    }

    /// Whether every point is readable: filtering can be skipped.
    pub fn reads_everything(&self) -> bool {
        self.0.iter().any(|scope| match scope {
            Scope::Read(p) | Scope::Control(p) => p.as_str() == "*",
            Scope::Admin => true,
            Scope::Metrics => false,
        })
    }
}

impl fmt::Display for Scopes {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        for (i, scope) in self.0.iter().enumerate() {
            if i > 0 {
                f.write_str(" ")?;
            }
            write!(f, "{scope}")?;
        }
        Ok(())
    }
}
