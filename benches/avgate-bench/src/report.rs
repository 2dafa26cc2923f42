//! Latency histograms shared by many panels, and the table the bench prints.

use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

/// Exact below 1024 µs; above that 64 buckets per doubling (within 1.6 %), up to ~1 hour.
const LINEAR: u64 = 1024;
const PER_OCTAVE: u64 = 64;
const OCTAVES: u64 = 22;

/// A lock-free latency histogram in microseconds, filled by many tasks at once.
pub struct Histogram {
    buckets: Vec<AtomicU64>,
}

impl Default for Histogram {
    fn default() -> Self {
        Histogram {
            buckets: (0..LINEAR + PER_OCTAVE * OCTAVES)
                .map(|_| AtomicU64::new(0))
                .collect(),
        }
    }
}

impl Histogram {
    pub fn record(&self, latency: Duration) {
        let micros = latency.as_micros().min(u128::from(u64::MAX)) as u64;
        let index = if micros < LINEAR {
            micros
        } else {
            let octave = u64::from(63 - micros.leading_zeros()) - 10;
            let fraction = (micros >> (octave + 10 - 6)) - PER_OCTAVE;
            (LINEAR + octave * PER_OCTAVE + fraction).min(LINEAR + PER_OCTAVE * OCTAVES - 1)
        };
        self.buckets[index as usize].fetch_add(1, Ordering::Relaxed);
    }

    pub fn count(&self) -> u64 {
        self.buckets.iter().map(|b| b.load(Ordering::Relaxed)).sum()
    }

    /// The latency below which `quantile` (0..1) of the samples fall, in microseconds.
    pub fn quantile(&self, quantile: f64) -> Option<f64> {
        let total = self.count();
        if total == 0 {
            return None;
        }
        let rank = ((quantile * total as f64).ceil() as u64).clamp(1, total);
        let mut seen = 0;
        for (index, bucket) in self.buckets.iter().enumerate() {
            seen += bucket.load(Ordering::Relaxed);
            if seen >= rank {
                return Some(bucket_value(index as u64));
            }
        }
        None
    }

    pub fn clear(&self) {
        self.buckets
            .iter()
            .for_each(|b| b.store(0, Ordering::Relaxed));
    }
}

fn bucket_value(index: u64) -> f64 {
    if index < LINEAR {
        return index as f64;
    }
    let octave = (index - LINEAR) / PER_OCTAVE;
    let fraction = (index - LINEAR) % PER_OCTAVE;
    ((PER_OCTAVE + fraction) << (octave + 10 - 6)) as f64
}

/// Latency percentiles, in microseconds.
#[derive(Debug, Clone, Copy)]
pub struct Latency {
    pub p50: f64,
    pub p99: f64,
    pub p999: f64,
}

impl Latency {
    pub fn of(histogram: &Histogram) -> Option<Latency> {
        Some(Latency {
            p50: histogram.quantile(0.50)?,
            p99: histogram.quantile(0.99)?,
            p999: histogram.quantile(0.999)?,
        })
    }

    pub fn show(&self) -> String {
        format!(
            "{} / {} / {}",
            millis(self.p50),
            millis(self.p99),
            millis(self.p999)
        )
    }
}

/// Microseconds as milliseconds, with the digits that matter.
pub fn millis(micros: f64) -> String {
    let ms = micros / 1000.0;
    if ms < 1.0 {
        format!("{ms:.3} ms")
    } else if ms < 100.0 {
        format!("{ms:.2} ms")
    } else {
        format!("{ms:.0} ms")
    }
}

/// Which way a measurement is better, for the ratio column.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Better {
    /// Times, memory, CPU: ratio = socket.io ÷ avgate.
    Lower,
    /// Rates: ratio = avgate ÷ socket.io.
    Higher,
}

/// One side's measurement: a number to compare and how to show it, or why there is none.
#[derive(Debug, Clone)]
pub enum Cell {
    Value { value: f64, shown: String },
    Missing(String),
}

impl Cell {
    pub fn new(value: f64, shown: impl Into<String>) -> Cell {
        Cell::Value {
            value,
            shown: shown.into(),
        }
    }

    pub fn na(why: impl Into<String>) -> Cell {
        Cell::Missing(why.into())
    }

    fn shown(&self) -> String {
        match self {
            Cell::Value { shown, .. } => shown.clone(),
            Cell::Missing(why) => format!("n/a ({why})"),
        }
    }
}

pub struct Row {
    pub scenario: String,
    pub avgate: Cell,
    pub socketio: Cell,
    pub better: Better,
}

impl Row {
    pub fn new(scenario: impl Into<String>, avgate: Cell, socketio: Cell, better: Better) -> Row {
        Row {
            scenario: scenario.into(),
            avgate,
            socketio,
            better,
        }
    }

    /// > 1 when avgate is ahead.
    fn ratio(&self) -> String {
        let (Cell::Value { value: a, .. }, Cell::Value { value: s, .. }) =
            (&self.avgate, &self.socketio)
        else {
            return String::new();
        };
        let ratio = match self.better {
            Better::Lower => s / a,
            Better::Higher => a / s,
        };
        if !ratio.is_finite() || ratio <= 0.0 {
            return String::new();
        }
        // Two significant figures below 1 (0.0046×), two decimals above.
        let decimals = if ratio < 1.0 {
            (1 - ratio.log10().floor() as i32).max(2) as usize
        } else {
            2
        };
        format!("{ratio:.decimals$}×")
    }
}

/// Prints the rows as a Markdown table (readable in a terminal, pasteable in the README).
pub fn print_table(rows: &[Row]) {
    let header = ["scenario", "avgate", "socket.io", "ratio"];
    let cells: Vec<[String; 4]> = rows
        .iter()
        .map(|r| {
            [
                r.scenario.clone(),
                r.avgate.shown(),
                r.socketio.shown(),
                r.ratio(),
            ]
        })
        .collect();
    let mut widths = header.map(|h| h.chars().count());
    for row in &cells {
        for (w, c) in widths.iter_mut().zip(row) {
            *w = (*w).max(c.chars().count());
        }
    }
    let line = |row: [&str; 4]| {
        let padded: Vec<String> = row
            .iter()
            .zip(widths)
            .map(|(c, w)| format!("{c}{}", " ".repeat(w - c.chars().count())))
            .collect();
        println!("| {} |", padded.join(" | "));
    };
    line(header);
    let rule: Vec<String> = widths.iter().map(|w| "-".repeat(*w)).collect();
    println!("|-{}-|", rule.join("-|-"));
    for row in &cells {
        line([&row[0], &row[1], &row[2], &row[3]]);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn quantiles_are_exact_below_a_millisecond_and_close_above() {
        let histogram = Histogram::default();
        for micros in 1..=1000 {
            histogram.record(Duration::from_micros(micros));
        }
        assert_eq!(histogram.quantile(0.5), Some(500.0));
        assert_eq!(histogram.quantile(0.99), Some(990.0));
        histogram.clear();
        histogram.record(Duration::from_micros(123_456));
        let p50 = histogram.quantile(0.5).unwrap();
        assert!((p50 - 123_456.0).abs() / 123_456.0 < 0.016, "{p50}");
    }

    #[test]
    fn the_ratio_reads_as_how_far_avgate_is_ahead() {
        let faster = Row::new("t", Cell::new(1.0, "1"), Cell::new(4.0, "4"), Better::Lower);
        assert_eq!(faster.ratio(), "4.00×");
        let slower = Row::new(
            "r",
            Cell::new(1.0, "1"),
            Cell::new(4.0, "4"),
            Better::Higher,
        );
        assert_eq!(slower.ratio(), "0.25×");
        let far_behind = Row::new(
            "f",
            Cell::new(215.0, "a"),
            Cell::new(1.0, "s"),
            Better::Lower,
        );
        assert_eq!(far_behind.ratio(), "0.0047×");
        let missing = Row::new("m", Cell::new(1.0, "1"), Cell::na("why"), Better::Lower);
        assert_eq!(missing.ratio(), "");
    }
}
