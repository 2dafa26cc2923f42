//! Which devices and points a panel wants: patterns such as `proj-*`, `*/power` or
//! `switcher/route.*`.
//!
//! A pattern is `DEVICE` (every point of the device) or `DEVICE/POINT`; `*` in either part
//! matches any run of characters. A device's own `online` and `error` points go to every
//! panel with a pattern whose device part matches, whatever its point part, so a panel
//! watching `proj-1/power` still learns that proj-1 went offline.

use std::collections::BTreeMap;
use std::sync::Arc;

use crate::auth::Scopes;
use crate::command::{ErrorCode, Failure};
use crate::journal::{DeviceState, ONLINE, Snapshot};
use crate::pattern::{MAX_PATTERN, Pattern};

/// Most patterns per session: every event is matched against each of them.
pub const MAX_PATTERNS: usize = 64;

/// A pattern from a panel, with the code its refusal takes.
fn parse(text: &str) -> Result<Pattern, Failure> {
    if text.len() > MAX_PATTERN {
        return Err(Failure::new(
            ErrorCode::TooLarge,
            format!(
                "a pattern of {} bytes is too long: patterns have 1 to {MAX_PATTERN} characters",
                text.len()
            ),
        ));
    }
    Pattern::parse(text).map_err(|why| Failure::new(ErrorCode::InvalidMessage, why))
}

/// A panel's patterns. The default, everything, is `*`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Subscription {
    patterns: Vec<Pattern>,
    /// What the panel's token may read, when that is not everything: nothing outside it
    /// is ever sent, whatever the patterns ask for.
    readable: Option<Arc<Scopes>>,
}

impl Default for Subscription {
    fn default() -> Self {
        Self {
            patterns: vec![Pattern::any()],
            readable: None,
        }
    }
}

impl Subscription {
    /// A subscription to exactly `patterns` (none: no events at all).
    pub fn new(patterns: &[String]) -> Result<Subscription, Failure> {
        let mut subscription = Subscription {
            patterns: Vec::new(),
            readable: None,
        };
        subscription.add(patterns)?;
        Ok(subscription)
    }

    /// Adds patterns (ignoring ones already there). All are checked first: on an error
    /// nothing changes.
    pub fn add(&mut self, patterns: &[String]) -> Result<(), Failure> {
        let too_many = || {
            Failure::new(
                ErrorCode::TooLarge,
                format!(
                    "a session takes at most {MAX_PATTERNS} patterns; use wildcards (`proj-*`) or unsubscribe some first"
                ),
            )
        };
        if patterns.len() > MAX_PATTERNS {
            return Err(too_many());
        }
        let parsed = patterns
            .iter()
            .map(|p| parse(p))
            .collect::<Result<Vec<_>, _>>()?;
        let mut grown = self.patterns.clone();
        for pattern in parsed {
            if !grown.contains(&pattern) {
                grown.push(pattern);
            }
        }
        if grown.len() > MAX_PATTERNS {
            return Err(too_many());
        }
        self.patterns = grown;
        Ok(())
    }

    /// Removes patterns given exactly as they were added.
    pub fn remove(&mut self, patterns: &[String]) {
        self.patterns
            .retain(|p| !patterns.iter().any(|t| t == p.as_str()));
    }

    pub fn patterns(&self) -> Vec<String> {
        self.patterns
            .iter()
            .map(|p| p.as_str().to_string())
            .collect()
    }

    /// Limits this subscription to what `scopes` may read.
    pub fn within(mut self, scopes: &Arc<Scopes>) -> Subscription {
        self.readable = (!scopes.reads_everything()).then(|| scopes.clone());
        self
    }

    /// Whether this covers everything (the default, for a token that may read it all):
    /// such a panel can be sent the snapshot every such panel shares.
    pub fn is_everything(&self) -> bool {
        self.readable.is_none() && self.patterns.iter().any(|p| p.as_str() == "*")
    }

    pub fn matches(&self, device: &str, point: &str) -> bool {
        self.patterns.iter().any(|p| p.matches_point(device, point))
            && self
                .readable
                .as_ref()
                .is_none_or(|scopes| scopes.can_read(device, point))
    }

    /// The part of a snapshot this subscription covers: devices any pattern names (with
    /// their `online` and `error`), and of their points the matching ones.
    pub fn filter(&self, snapshot: &Snapshot) -> Snapshot {
        let devices: BTreeMap<String, DeviceState> = snapshot
            .devices
            .iter()
            .filter(|(id, _)| self.matches(id, ONLINE))
            .map(|(id, state)| {
                let mut state = state.clone();
                state.points.retain(|point, _| self.matches(id, point));
                state.stale.retain(|point| self.matches(id, point));
                (id.clone(), state)
            })
            .collect();
        Snapshot {
            epoch: snapshot.epoch,
            seq: snapshot.seq,
            devices,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::journal::ERROR;

    fn sub(patterns: &[&str]) -> Subscription {
        Subscription::new(&patterns.iter().map(|p| p.to_string()).collect::<Vec<_>>()).unwrap()
    }

    #[test]
    fn patterns_select_devices_and_points() {
        let s = sub(&["*/power", "switcher/route.*"]);
        assert!(s.matches("proj-1", "power"));
        assert!(!s.matches("proj-1", "input"));
        assert!(s.matches("switcher", "route.3"));
        assert!(!s.matches("switcher", "volume"));
        let all_of_one = sub(&["proj-1"]);
        assert!(all_of_one.matches("proj-1", "input"));
        assert!(!all_of_one.matches("proj-2", "input"));
        assert!(Subscription::default().matches("anything", "at.all"));
        assert!(!sub(&[]).matches("proj-1", "power"));
    }

    #[test]
    fn online_and_error_follow_the_device_part() {
        let s = sub(&["proj-1/power"]);
        assert!(s.matches("proj-1", ONLINE));
        assert!(s.matches("proj-1", ERROR));
        assert!(!s.matches("proj-2", ONLINE));
    }

    #[test]
    fn bad_patterns_are_refused_with_the_reason_and_change_nothing() {
        let mut s = sub(&["proj-1"]);
        for bad in ["", "a/b/c", "/power", "proj/", "proj 1", "proj#1"] {
            let err = s.add(&["x".to_string(), bad.to_string()]).unwrap_err();
            assert_eq!(err.code, ErrorCode::InvalidMessage, "{bad}: {err}");
            assert!(err.message.contains("pattern"), "{bad}: {err}");
        }
        assert_eq!(s.patterns(), vec!["proj-1"]);
    }

    #[test]
    fn patterns_are_bounded_in_length_and_number() {
        let mut s = sub(&["proj-1"]);
        let long = s.add(&["p".repeat(129)]).unwrap_err();
        assert_eq!(long.code, ErrorCode::TooLarge, "{long}");
        let many: Vec<String> = (0..MAX_PATTERNS).map(|i| format!("dev-{i}")).collect();
        let err = s.add(&many).unwrap_err();
        assert_eq!(err.code, ErrorCode::TooLarge, "{err}");
        assert_eq!(s.patterns(), vec!["proj-1"], "nothing changed");
        s.add(&many[1..]).unwrap();
        assert_eq!(s.patterns().len(), MAX_PATTERNS);
    }

    #[test]
    fn add_and_remove_by_exact_text() {
        let mut s = sub(&["proj-*"]);
        s.add(&["*/power".into(), "proj-*".into()]).unwrap();
        assert_eq!(s.patterns(), vec!["proj-*", "*/power"]);
        s.remove(&["proj-*".into()]);
        assert_eq!(s.patterns(), vec!["*/power"]);
    }

    #[test]
    fn snapshots_keep_only_what_matches() {
        let mut devices = BTreeMap::new();
        for id in ["proj-1", "switcher"] {
            let mut state = DeviceState {
                online: true,
                ..DeviceState::default()
            };
            state.points.insert("power".into(), "on".into());
            state.points.insert("input".into(), "hdmi1".into());
            devices.insert(id.to_string(), state);
        }
        let snapshot = Snapshot {
            epoch: 1,
            seq: 9,
            devices,
        };
        let filtered = sub(&["proj-*/power"]).filter(&snapshot);
        assert_eq!(filtered.seq, 9);
        assert_eq!(filtered.devices.keys().collect::<Vec<_>>(), vec!["proj-1"]);
        assert_eq!(
            filtered.devices["proj-1"].points.keys().collect::<Vec<_>>(),
            vec!["power"]
        );
        assert!(filtered.devices["proj-1"].online);
    }
}
