//! `[hints]` in a device profile: how long the model usually takes to warm up and cool
//! down. Nothing waits on a hint; panels show it ("Warming up… about 30 s") and macros put
//! it on the progress of a `wait_until` that waits for the power to change.
//!
//! ```toml
//! [hints]
//! warm_up = "30s"
//! cool_down = "60s"
//! ```

use std::time::Duration;

use serde::{Deserialize, Serialize, Serializer};

#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct Hints {
    /// From `power on` to `on`; panels see it as `warm_up_s`.
    #[serde(
        default,
        deserialize_with = "humantime_serde::deserialize",
        rename(serialize = "warm_up_s"),
        serialize_with = "seconds",
        skip_serializing_if = "Option::is_none"
    )]
    pub warm_up: Option<Duration>,
    /// From `power off` to `off`; panels see it as `cool_down_s`.
    #[serde(
        default,
        deserialize_with = "humantime_serde::deserialize",
        rename(serialize = "cool_down_s"),
        serialize_with = "seconds",
        skip_serializing_if = "Option::is_none"
    )]
    pub cool_down: Option<Duration>,
}

impl Hints {
    pub fn is_empty(&self) -> bool {
        *self == Hints::default()
    }

    /// How long reaching the power state `value` usually takes: the warm-up for `"on"`,
    /// the cool-down for `"off"`.
    pub fn to_reach_power(&self, value: &serde_json::Value) -> Option<Duration> {
        match value.as_str()? {
            "on" => self.warm_up,
            "off" => self.cool_down,
            _ => None,
        }
    }
}

fn seconds<S: Serializer>(value: &Option<Duration>, serializer: S) -> Result<S::Ok, S::Error> {
    match value {
        Some(d) => serializer.serialize_u64(d.as_secs()),
        None => serializer.serialize_none(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn hints_read_as_durations_and_reach_panels_in_seconds() {
        let hints: Hints = toml::from_str("warm_up = \"30s\"\ncool_down = \"1m\"\n").unwrap();
        assert_eq!(hints.warm_up, Some(Duration::from_secs(30)));
        assert_eq!(
            serde_json::to_value(hints).unwrap(),
            serde_json::json!({"warm_up_s": 30, "cool_down_s": 60})
        );
        assert_eq!(
            hints.to_reach_power(&serde_json::json!("off")),
            Some(Duration::from_secs(60))
        );
        assert!(toml::from_str::<Hints>("warmup = \"30s\"\n").is_err());
    }
}
