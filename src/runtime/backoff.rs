//! When to try a device again after a failed connection.

use std::time::Duration;

/// First retry delay after a failure.
const BASE: Duration = Duration::from_millis(500);
/// Longest wait between attempts: a device that comes back is found within this.
const CAP: Duration = Duration::from_secs(30);
/// Rejected credentials will not start working by themselves, and hammering a device with
/// wrong passwords can lock an account: wait at least this long.
pub const AUTH_FLOOR: Duration = Duration::from_secs(30);

/// Capped exponential backoff with jitter, so many devices that failed together (a rack
/// power cycle) do not all retry in the same instant.
#[derive(Debug, Default)]
pub struct Backoff {
    failures: u32,
}

impl Backoff {
    /// The delay before the next attempt, growing with each consecutive failure.
    pub fn next_delay(&mut self) -> Duration {
        let exp = BASE.saturating_mul(1 << self.failures.min(16)).min(CAP);
        self.failures = self.failures.saturating_add(1);
        // Half fixed, half random: never shorter than half the nominal delay.
        exp / 2 + exp.mul_f64(fastrand::f64() / 2.0)
    }

    /// A session worked: the next failure starts from the shortest delay again.
    pub fn reset(&mut self) {
        self.failures = 0;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn grows_then_caps_and_resets() {
        let mut backoff = Backoff::default();
        let first = backoff.next_delay();
        assert!(first >= BASE / 2 && first <= BASE, "{first:?}");
        let delays: Vec<Duration> = (0..20).map(|_| backoff.next_delay()).collect();
        assert!(delays[2] >= BASE * 2, "{delays:?}");
        assert!(delays.iter().all(|d| *d <= CAP), "{delays:?}");
        assert!(delays[19] >= CAP / 2, "{delays:?}");
        backoff.reset();
        assert!(backoff.next_delay() <= BASE);
    }
}
