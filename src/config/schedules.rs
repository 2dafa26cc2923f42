//! `[[schedules]]` in the site file: a macro run at a local time on given days.
//!
//! ```toml
//! [[schedules]]
//! macro = "room-off"
//! at = "22:00"
//! days = ["mon", "tue", "wed", "thu", "fri"]   # absent: every day
//! time_zone = "Europe/Berlin"                  # absent: the host's
//! catch_up = false                             # a run missed while the gateway was down
//! warning = "5m"                               # panels count down and may keep the room on
//! ```
//!
//! Times are wall-clock times in the zone, so a schedule keeps its local time across DST
//! changes: a time that does not exist that day (in the spring gap) runs at the first
//! moment after the gap, one that exists twice (in the autumn fold) runs once, the first
//! time.

use std::path::Path;

use jiff::civil::{Time, Weekday};
use jiff::tz::TimeZone;
use jiff::{Timestamp, ToSpan};
use serde::Deserialize;
use toml::Spanned;

use super::ConfigError;

/// A checked schedule.
#[derive(Debug, Clone)]
pub struct Schedule {
    /// The macro it runs.
    pub run: String,
    pub at: Time,
    /// The days it runs on; empty: every day.
    pub days: Vec<Weekday>,
    pub zone: TimeZone,
    /// Whether a run missed while the gateway was down runs when it starts again.
    pub catch_up: bool,
    /// How long before a run panels see a countdown during which they may cancel it
    /// ("Keep on"); `None`: no warning.
    pub warning: Option<std::time::Duration>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct ScheduleFile {
    #[serde(rename = "macro")]
    run: Spanned<String>,
    at: Spanned<String>,
    #[serde(default)]
    days: Vec<Spanned<String>>,
    #[serde(default)]
    time_zone: Option<Spanned<String>>,
    #[serde(default)]
    catch_up: bool,
    #[serde(default, with = "humantime_serde")]
    warning: Option<std::time::Duration>,
}

const DAYS: [(&str, Weekday); 7] = [
    ("mon", Weekday::Monday),
    ("tue", Weekday::Tuesday),
    ("wed", Weekday::Wednesday),
    ("thu", Weekday::Thursday),
    ("fri", Weekday::Friday),
    ("sat", Weekday::Saturday),
    ("sun", Weekday::Sunday),
];

/// Checks every `[[schedules]]`; problems go to `errors`.
pub(super) fn load_schedules(
    path: &Path,
    text: &str,
    files: Vec<ScheduleFile>,
    macros: &[String],
    errors: &mut Vec<ConfigError>,
) -> Vec<Schedule> {
    let here = |span: std::ops::Range<usize>, message: String| {
        ConfigError::at(path, text, Some(span), message)
    };
    let mut schedules = Vec::new();
    for file in files {
        let before = errors.len();
        if !macros.contains(file.run.get_ref()) {
            let known: Vec<&str> = macros.iter().map(String::as_str).collect();
            errors.push(here(
                file.run.span(),
                format!(
                    "no macro `{}` to schedule; this site has: {}",
                    file.run.get_ref(),
                    known.join(", ")
                ),
            ));
        }
        let at = file.at.get_ref().parse::<Time>().map_err(|e| {
            here(
                file.at.span(),
                format!(
                    "`at = \"{}\"` is not a time of day (write \"22:00\" or \"06:30:15\"): {e}",
                    file.at.get_ref()
                ),
            )
        });
        let mut days = Vec::new();
        for day in &file.days {
            match DAYS.iter().find(|(name, _)| name == day.get_ref()) {
                Some((_, weekday)) => days.push(*weekday),
                None => errors.push(here(
                    day.span(),
                    format!(
                        "`{}` is not a day; use mon, tue, wed, thu, fri, sat, sun",
                        day.get_ref()
                    ),
                )),
            }
        }
        let zone = match &file.time_zone {
            None => Ok(TimeZone::system()),
            Some(name) => TimeZone::get(name.get_ref()).map_err(|e| {
                here(
                    name.span(),
                    format!("unknown time zone `{}` (write an IANA name such as \"Europe/Berlin\"): {e}", name.get_ref()),
                )
            }),
        };
        match (at, zone) {
            (Ok(at), Ok(zone)) if errors.len() == before => schedules.push(Schedule {
                run: file.run.into_inner(),
                at,
                days,
                zone,
                catch_up: file.catch_up,
                warning: file.warning.filter(|w| !w.is_zero()),
            }),
            (at, zone) => errors.extend(at.err().into_iter().chain(zone.err())),
        }
    }
    schedules
}

impl Schedule {
    /// The first time this schedule runs strictly after `after`.
    pub fn next_after(&self, after: Timestamp) -> Timestamp {
        let today = after.to_zoned_datetime(self.zone.clone()).date();
        (0..=8)
            .filter_map(|offset| today.checked_add(offset.days()).ok())
            .filter(|date| self.days.is_empty() || self.days.contains(&date.weekday()))
            .filter_map(|date| {
                date.to_datetime(self.at)
                    .to_zoned_datetime(self.zone.clone())
                    .ok()
            })
            .map(|zoned| zoned.timestamp())
            .find(|at| *at > after)
            .expect("every schedule runs within 8 days")
    }

    /// The last time this schedule ran (or should have) at or before `at`, if within 8 days.
    pub fn last_at_or_before(&self, at: Timestamp) -> Option<Timestamp> {
        let today = at.to_zoned_datetime(self.zone.clone()).date();
        (0..=8)
            .filter_map(|offset| today.checked_sub(offset.days()).ok())
            .filter(|date| self.days.is_empty() || self.days.contains(&date.weekday()))
            .filter_map(|date| {
                date.to_datetime(self.at)
                    .to_zoned_datetime(self.zone.clone())
                    .ok()
            })
            .map(|zoned| zoned.timestamp())
            .find(|fired| *fired <= at)
    }

    /// The command id a run at `at` gets: the same for every gateway that computes it, so
    /// the dedupe ledger (on disk) makes a run happen at most once, across restarts too.
    pub fn run_id(&self, at: Timestamp) -> String {
        format!("{}@{}", self.run, at)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::parse_site;

    fn schedule(at: &str, days: &str) -> Result<Schedule, String> {
        let text = format!(
            "[macros.room-off]\nsteps = [{{ delay = \"1s\" }}]\n[[schedules]]\nmacro = \"room-off\"\nat = \"{at}\"\n{days}time_zone = \"Europe/Berlin\"\n"
        );
        parse_site(Path::new("site.toml"), &text)
            .map(|mut s| s.schedules.remove(0))
            .map_err(|e| e.to_string())
    }

    fn ts(text: &str) -> Timestamp {
        text.parse().unwrap()
    }

    #[test]
    fn across_both_dst_changes_a_schedule_fires_once_a_day_at_its_local_time() {
        // 02:30 does not exist in Berlin on 2026-03-29 and exists twice on 2026-10-25.
        let night = schedule("02:30", "").unwrap();
        let mut fired = Vec::new();
        let mut now = ts("2026-03-27T12:00:00Z");
        for _ in 0..4 {
            now = night.next_after(now);
            fired.push(now.to_string());
        }
        assert_eq!(
            fired,
            [
                "2026-03-28T01:30:00Z", // 02:30 CET
                "2026-03-29T01:30:00Z", // in the gap: 03:30 CEST, the first moment after it
                "2026-03-30T00:30:00Z", // 02:30 CEST
                "2026-03-31T00:30:00Z",
            ]
        );
        let mut fired = Vec::new();
        let mut now = ts("2026-10-24T12:00:00Z");
        for _ in 0..3 {
            now = night.next_after(now);
            fired.push(now.to_string());
        }
        assert_eq!(
            fired,
            [
                "2026-10-25T00:30:00Z", // the first 02:30 (CEST) of the fold, and only it
                "2026-10-26T01:30:00Z", // 02:30 CET
                "2026-10-27T01:30:00Z",
            ]
        );
    }

    #[test]
    fn days_limit_when_it_runs_and_the_last_run_is_found() {
        let weekdays = schedule("22:00", "days = [\"mon\", \"fri\"]\n").unwrap();
        // Saturday 2026-11-28 noon: next is Monday 22:00 CET.
        let next = weekdays.next_after(ts("2026-11-28T12:00:00Z"));
        assert_eq!(next.to_string(), "2026-11-30T21:00:00Z");
        let last = weekdays
            .last_at_or_before(ts("2026-11-28T12:00:00Z"))
            .unwrap();
        assert_eq!(last.to_string(), "2026-11-27T21:00:00Z");
        assert_eq!(weekdays.run_id(last), "room-off@2026-11-27T21:00:00Z");
    }

    #[test]
    fn bad_schedules_name_the_place_and_the_fix() {
        let err = schedule("25:00", "").unwrap_err();
        assert!(
            err.starts_with("site.toml:5:6:") && err.contains("not a time of day"),
            "{err}"
        );
        let err = schedule("22:00", "days = [\"monday\"]\n").unwrap_err();
        assert!(err.contains("`monday` is not a day"), "{err}");
        let text =
            "[[schedules]]\nmacro = \"nope\"\nat = \"22:00\"\ntime_zone = \"Mars/Olympus\"\n";
        let err = parse_site(Path::new("site.toml"), text)
            .unwrap_err()
            .to_string();
        assert!(
            err.contains("no macro `nope`") && err.contains("unknown time zone"),
            "{err}"
        );
    }
}
