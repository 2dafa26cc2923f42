//! Sane ranges for the durations and sizes of a site file.
//!
//! Serde checks that a value has the right type; this checks that it makes sense at run
//! time (a `ping_interval` of `0s` would make every panel writer spin, `1ms` would drop
//! every panel). A value out of range is reported at its own line and column.

use std::fmt::Debug;
use std::ops::{Range, RangeInclusive};
use std::path::Path;
use std::time::Duration;

use toml::Spanned;
use toml::de::{DeTable, DeValue};

use super::ConfigError;

/// Checks values of one file against their ranges, collecting an error for each one out
/// of range.
pub struct RangeCheck<'a> {
    path: &'a Path,
    text: &'a str,
    /// The file's syntax tree with spans, to point at the offending value. `None` if the
    /// file does not parse (serde already reported why).
    tree: Option<Spanned<DeTable<'a>>>,
    pub errors: Vec<ConfigError>,
}

impl<'a> RangeCheck<'a> {
    pub fn new(path: &'a Path, text: &'a str) -> Self {
        Self {
            path,
            text,
            tree: DeTable::parse(text).ok(),
            errors: Vec::new(),
        }
    }

    /// A duration at `key` (a path of table keys, such as `["server", "ping_interval"]`)
    /// must be within `range`; `why` says what the bound protects.
    pub fn duration(
        &mut self,
        key: &[&str],
        value: Duration,
        range: RangeInclusive<Duration>,
        why: &str,
    ) {
        if !range.contains(&value) {
            let shown = |d: &Duration| humantime::format_duration(*d).to_string();
            self.out_of_range(
                key,
                format!(
                    "{} = \"{}\" is out of range: use {} to {} ({why})",
                    key.join("."),
                    shown(&value),
                    shown(range.start()),
                    shown(range.end()),
                ),
            );
        }
    }

    /// A count or size at `key` must be within `range`.
    pub fn size<T: PartialOrd + Debug>(
        &mut self,
        key: &[&str],
        value: T,
        range: RangeInclusive<T>,
        why: &str,
    ) {
        if !range.contains(&value) {
            self.out_of_range(
                key,
                format!(
                    "{} = {value:?} is out of range: use {:?} to {:?} ({why})",
                    key.join("."),
                    range.start(),
                    range.end(),
                ),
            );
        }
    }

    fn out_of_range(&mut self, key: &[&str], message: String) {
        let span = self.span(key);
        self.errors
            .push(ConfigError::at(self.path, self.text, span, message));
    }

    /// Where the value at `key` is written, if it is written at all (a default out of
    /// range cannot happen, but a missing span still gets an error about the file).
    fn span<'b>(&'b self, key: &[&str]) -> Option<Range<usize>> {
        let find = |table: &'b DeTable<'a>, part: &str| {
            table
                .iter()
                .find(|(k, _)| k.get_ref().as_ref() == part)
                .map(|(_, v)| v)
        };
        let (first, rest) = key.split_first()?;
        let mut node: &Spanned<DeValue<'a>> = find(self.tree.as_ref()?.get_ref(), first)?;
        for part in rest {
            let DeValue::Table(table) = node.get_ref() else {
                return None;
            };
            node = find(table, part)?;
        }
        Some(node.span())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_out_of_range_value_is_reported_where_it_is_written() {
        let text = "[server]\nlisten = \"127.0.0.1:0\"\nping_interval = \"0s\"\n";
        let mut check = RangeCheck::new(Path::new("site.toml"), text);
        check.duration(
            &["server", "ping_interval"],
            Duration::ZERO,
            Duration::from_secs(1)..=Duration::from_secs(300),
            "how often panels are pinged",
        );
        check.size(&["server", "listen"], 5, 1..=10, "in range");
        let shown: Vec<String> = check.errors.iter().map(ToString::to_string).collect();
        assert_eq!(
            shown,
            [
                "site.toml:3:17: server.ping_interval = \"0s\" is out of range: use 1s to 5m (how often panels are pinged)"
            ]
        );
    }
}
