//! The one pattern language: `DEVICE` or `DEVICE/NAME`, where `*` matches any run of
//! characters. Subscriptions use it for points (`proj-*`, `*/power`,
//! `switcher/route.*`); token scopes for what a token may read (`read:proj-*`) and which
//! commands it may send (`control:switcher/route`).

use crate::journal::{ERROR, ONLINE};

/// Longest pattern accepted; device ids, point and command names are short.
pub const MAX_PATTERN: usize = 128;

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Pattern {
    text: String,
    /// Byte offset of the `/`, if there is a name part.
    slash: Option<usize>,
}

impl Pattern {
    /// Everything: `*`.
    pub fn any() -> Pattern {
        Pattern {
            text: "*".into(),
            slash: None,
        }
    }

    pub fn parse(text: &str) -> Result<Pattern, String> {
        let allowed =
            |c: char| c.is_ascii_alphanumeric() || matches!(c, '-' | '_' | '.' | '*' | '/');
        if text.is_empty() || text.len() > MAX_PATTERN {
            return Err(format!(
                "pattern `{}` must have 1 to {MAX_PATTERN} characters",
                text.escape_default()
            ));
        }
        // The gateway's own pseudo-devices (`@site`, `@macros`) start with `@`.
        let named = text.strip_prefix('@').unwrap_or(text);
        if let Some(bad) = named.chars().find(|c| !allowed(*c)) {
            return Err(format!(
                "pattern `{}` has `{}`; use device ids, point names, `*` and one `/` (e.g. `proj-*`, `*/power`)",
                text.escape_default(),
                bad.escape_default()
            ));
        }
        let slash = text.find('/');
        if let Some(at) = slash
            && (text[at + 1..].contains('/') || at == 0 || at + 1 == text.len())
        {
            return Err(format!(
                "pattern `{text}` must be DEVICE or DEVICE/POINT (DEVICE/COMMAND in a control scope), with one `/` and both parts"
            ));
        }
        Ok(Pattern {
            text: text.to_string(),
            slash,
        })
    }

    pub fn as_str(&self) -> &str {
        &self.text
    }

    fn device_part(&self) -> &str {
        self.slash.map_or(&self.text[..], |at| &self.text[..at])
    }

    fn name_part(&self) -> Option<&str> {
        self.slash.map(|at| &self.text[at + 1..])
    }

    /// Whether a device's point is covered. A device's own `online` and `error` follow the
    /// device part alone, so watching `proj-1/power` still tells when proj-1 goes offline.
    pub fn matches_point(&self, device: &str, point: &str) -> bool {
        if !glob(self.device_part(), device) {
            return false;
        }
        match self.name_part() {
            None => true,
            Some(_) if point == ONLINE || point == ERROR => true,
            Some(part) => glob(part, point),
        }
    }

    /// Whether the device part covers this device, whatever the name part says.
    pub fn matches_device(&self, device: &str) -> bool {
        glob(self.device_part(), device)
    }

    /// Whether a device's command is covered (the name part, when there is one, is the
    /// command's name).
    pub fn matches_command(&self, device: &str, command: &str) -> bool {
        glob(self.device_part(), device) && self.name_part().is_none_or(|c| glob(c, command))
    }
}

/// `*` matches any run of characters (also none); everything else matches itself.
/// Iterative with one backtrack point, so no allocation and linear time in practice.
pub fn glob(pattern: &str, text: &str) -> bool {
    let (p, t) = (pattern.as_bytes(), text.as_bytes());
    let (mut pi, mut ti) = (0, 0);
    let mut star: Option<(usize, usize)> = None;
    while ti < t.len() {
        if pi < p.len() && p[pi] == b'*' {
            star = Some((pi, ti));
            pi += 1;
        } else if pi < p.len() && p[pi] == t[ti] {
            pi += 1;
            ti += 1;
        } else if let Some((star_pi, star_ti)) = star {
            pi = star_pi + 1;
            ti = star_ti + 1;
            star = Some((star_pi, star_ti + 1));
        } else {
            return false;
        }
    }
    p[pi..].iter().all(|&c| c == b'*')
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn globs_match_runs_of_characters() {
        assert!(glob("*", ""));
        assert!(glob("proj-*", "proj-left"));
        assert!(!glob("proj-*", "display-1"));
        assert!(glob("route.*", "route.12"));
        assert!(glob("*-left", "proj-left"));
        assert!(glob("p*j*t", "projector-left"));
        assert!(!glob("p*j*x", "projector-left"));
        assert!(glob("power", "power"));
        assert!(!glob("power", "powered"));
    }

    #[test]
    fn points_and_commands_follow_the_name_part() {
        let route = Pattern::parse("switcher/route").unwrap();
        assert!(route.matches_command("switcher", "route"));
        assert!(!route.matches_command("switcher", "volume"));
        assert!(!route.matches_command("proj-1", "route"));
        let any_proj = Pattern::parse("proj-*").unwrap();
        assert!(any_proj.matches_command("proj-2", "power"));
        assert!(any_proj.matches_point("proj-2", "lamp_hours"));
        let power = Pattern::parse("*/power").unwrap();
        assert!(power.matches_point("proj-1", "power"));
        assert!(power.matches_point("proj-1", ONLINE));
        assert!(!power.matches_point("proj-1", "input"));
    }

    #[test]
    fn the_gateways_pseudo_devices_can_be_named() {
        let macros = Pattern::parse("@macros/room-on").unwrap();
        assert!(macros.matches_point("@macros", "room-on"));
        assert!(!macros.matches_point("@macros", "room-off"));
        assert!(Pattern::parse("@site").unwrap().matches_device("@site"));
    }

    #[test]
    fn bad_patterns_say_why() {
        for bad in [
            "", "a/b/c", "/power", "proj/", "proj 1", "proj#1", "proj\n1", "proj@1", "@@x",
        ] {
            let err = Pattern::parse(bad).unwrap_err();
            assert!(err.contains("pattern"), "{bad}: {err}");
            assert!(!err.contains('\n'), "control characters are escaped: {err}");
        }
    }
}
