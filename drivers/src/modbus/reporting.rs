//! Which readings of a number point become events: rounded to the point's `decimals`, and
//! only when they moved beyond its deadband since the value last reported. A real meter's
//! floats change at every read; without this, ten points read every second make close to
//! a million events a day.
//!
//! Profile keys, per point or as a default for every number point under `[options]`:
//! `decimals` (0..=15), `deadband` (absolute, in the point's unit after scale and offset)
//! and `deadband_percent` (of the value last reported). With both deadbands a change must
//! exceed both. A point's own key replaces the default; `deadband = 0` turns the default
//! off for it.

use std::collections::HashMap;

use serde_json::Value;

/// How one number point is reported. All `None`: every reading as it is.
#[derive(Debug, Clone, Copy, Default, PartialEq)]
pub struct Reporting {
    pub decimals: Option<u8>,
    pub deadband: Option<f64>,
    pub deadband_percent: Option<f64>,
}

impl Reporting {
    /// This point's settings, with the profile's defaults for what it does not set.
    pub fn or(self, defaults: Reporting) -> Reporting {
        Reporting {
            decimals: self.decimals.or(defaults.decimals),
            deadband: self.deadband.or(defaults.deadband),
            deadband_percent: self.deadband_percent.or(defaults.deadband_percent),
        }
    }

    pub fn is_plain(&self) -> bool {
        *self == Reporting::default()
    }

    /// Checks the settings; the error names the field.
    pub fn check(&self) -> Result<(), (&'static str, String)> {
        if let Some(decimals) = self.decimals
            && decimals > 15
        {
            return Err(("decimals", format!("{decimals} is more than 15")));
        }
        for (field, value) in [
            ("deadband", self.deadband),
            ("deadband_percent", self.deadband_percent),
        ] {
            if let Some(value) = value
                && !(value.is_finite() && value >= 0.0)
            {
                return Err((field, format!("{value} is not a number ≥ 0")));
            }
        }
        Ok(())
    }

    fn round(&self, value: f64) -> f64 {
        match self.decimals {
            Some(decimals) => {
                let factor = 10f64.powi(i32::from(decimals));
                (value * factor).round() / factor
            }
            None => value,
        }
    }

    /// Whether moving from `last` to `now` is news.
    fn exceeds(&self, last: f64, now: f64) -> bool {
        let change = (now - last).abs();
        let absolute = self.deadband.is_none_or(|band| change > band);
        let relative = self
            .deadband_percent
            .is_none_or(|percent| change > last.abs() * percent / 100.0);
        change > 0.0 && absolute && relative
    }
}

/// The values last reported for the points that have reporting settings, for one
/// connection: the first reading after a (re)connect is always reported.
#[derive(Debug, Default)]
pub struct Reporter {
    settings: HashMap<String, Reporting>,
    last: HashMap<String, f64>,
}

impl Reporter {
    pub fn new(settings: HashMap<String, Reporting>) -> Reporter {
        Reporter {
            settings,
            last: HashMap::new(),
        }
    }

    /// A new connection: whatever comes next is reported.
    pub fn reset(&mut self) {
        self.last.clear();
    }

    /// The value to report for a reading of `point`, or `None` when it stays within the
    /// deadband. `always` reports it anyway (the read-back after a write).
    pub fn admit(&mut self, point: &str, value: Value, always: bool) -> Option<Value> {
        let (Some(settings), Some(reading)) = (self.settings.get(point), value.as_f64()) else {
            return Some(value);
        };
        let rounded = settings.round(reading);
        if !always
            && let Some(&last) = self.last.get(point)
            && !settings.exceeds(last, rounded)
        {
            return None;
        }
        self.last.insert(point.to_string(), rounded);
        let value = match (value.is_f64(), settings.decimals) {
            // Integers stay integers unless decimals made them something else.
            (false, _) | (true, None) if rounded == reading => value,
            _ => serde_json::Number::from_f64(rounded).map_or(value, Value::Number),
        };
        Some(value)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn reporter(settings: Reporting) -> Reporter {
        Reporter::new(HashMap::from([("v".to_string(), settings)]))
    }

    #[test]
    fn readings_within_the_absolute_deadband_are_not_news() {
        let mut r = reporter(Reporting {
            deadband: Some(0.5),
            ..Reporting::default()
        });
        assert_eq!(r.admit("v", json!(230.0), false), Some(json!(230.0)));
        assert_eq!(r.admit("v", json!(230.4), false), None);
        assert_eq!(r.admit("v", json!(229.6), false), None);
        assert_eq!(r.admit("v", json!(230.6), false), Some(json!(230.6)));
        // Measured from the last value reported, so a slow drift is reported too.
        assert_eq!(r.admit("v", json!(231.0), false), None);
        assert_eq!(r.admit("v", json!(231.2), false), Some(json!(231.2)));
    }

    #[test]
    fn the_percent_deadband_is_of_the_last_value_reported() {
        let mut r = reporter(Reporting {
            deadband_percent: Some(1.0),
            ..Reporting::default()
        });
        r.admit("v", json!(200.0), false);
        assert_eq!(r.admit("v", json!(201.9), false), None);
        assert_eq!(r.admit("v", json!(202.1), false), Some(json!(202.1)));
    }

    #[test]
    fn decimals_round_before_the_comparison() {
        let mut r = reporter(Reporting {
            decimals: Some(1),
            ..Reporting::default()
        });
        assert_eq!(r.admit("v", json!(49.98731), false), Some(json!(50.0)));
        assert_eq!(r.admit("v", json!(50.0214), false), None, "still 50.0");
        assert_eq!(r.admit("v", json!(50.06), false), Some(json!(50.1)));
    }

    #[test]
    fn after_a_reconnect_and_for_a_read_back_the_value_is_always_reported() {
        let mut r = reporter(Reporting {
            deadband: Some(10.0),
            ..Reporting::default()
        });
        r.admit("v", json!(1), false);
        assert_eq!(r.admit("v", json!(2), true), Some(json!(2)));
        r.reset();
        assert_eq!(r.admit("v", json!(3), false), Some(json!(3)));
        assert_eq!(r.admit("other", json!(3.25), false), Some(json!(3.25)));
    }
}
