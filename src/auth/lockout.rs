//! Throttling token guesses per peer address: a few failures per window, then a lockout
//! that always ends. While an address is locked out every attempt from it is refused
//! without looking at the token, so guessing gains nothing.

use std::collections::HashMap;
use std::net::IpAddr;
use std::time::Duration;

use tokio::time::Instant;

/// Failed attempts allowed per address within [`WINDOW`] before a lockout.
pub const MAX_FAILURES: u32 = 5;
/// The window failures are counted in.
pub const WINDOW: Duration = Duration::from_secs(60);
/// How long a locked-out address waits.
pub const LOCK_FOR: Duration = Duration::from_secs(60);
/// Addresses tracked at most: a scan from many addresses costs bounded memory.
const TRACKED: usize = 4096;

/// Whether an address may try a token now.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Attempt {
    Allowed,
    /// Locked out; try again after this long.
    Locked {
        retry_in: Duration,
    },
}

#[derive(Debug, Clone, Copy)]
struct Record {
    since: Instant,
    failures: u32,
    locked_until: Option<Instant>,
}

impl Record {
    fn expired(&self, now: Instant) -> bool {
        match self.locked_until {
            Some(until) => now >= until,
            None => now.duration_since(self.since) >= WINDOW,
        }
    }
}

#[derive(Debug, Default)]
pub struct Lockout {
    records: HashMap<IpAddr, Record>,
}

impl Lockout {
    /// Whether `peer` may try now.
    pub fn check(&mut self, peer: IpAddr, now: Instant) -> Attempt {
        match self.records.get(&peer) {
            Some(record) if record.expired(now) => {
                self.records.remove(&peer);
                Attempt::Allowed
            }
            Some(Record {
                locked_until: Some(until),
                ..
            }) => Attempt::Locked {
                retry_in: until.duration_since(now),
            },
            _ => Attempt::Allowed,
        }
    }

    /// Counts a failed attempt; returns true when it starts a lockout (log it once, then).
    pub fn failed(&mut self, peer: IpAddr, now: Instant) -> bool {
        if !self.records.contains_key(&peer) && self.records.len() >= TRACKED {
            self.make_room(now);
        }
        let record = self.records.entry(peer).or_insert(Record {
            since: now,
            failures: 0,
            locked_until: None,
        });
        if record.expired(now) {
            *record = Record {
                since: now,
                failures: 0,
                locked_until: None,
            };
        }
        if record.locked_until.is_some() {
            return false;
        }
        record.failures += 1;
        if record.failures >= MAX_FAILURES {
            record.locked_until = Some(now + LOCK_FOR);
            return true;
        }
        false
    }

    /// Drops expired records, and if none were, the oldest one.
    fn make_room(&mut self, now: Instant) {
        self.records.retain(|_, r| !r.expired(now));
        if self.records.len() >= TRACKED
            && let Some(oldest) = self
                .records
                .iter()
                .min_by_key(|(_, r)| r.since)
                .map(|(ip, _)| *ip)
        {
            self.records.remove(&oldest);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const A: IpAddr = IpAddr::V4(std::net::Ipv4Addr::new(127, 0, 0, 2));
    const B: IpAddr = IpAddr::V4(std::net::Ipv4Addr::new(127, 0, 0, 3));

    #[tokio::test(start_paused = true)]
    async fn five_failures_lock_the_address_for_a_minute_and_no_longer() {
        let mut lockout = Lockout::default();
        for _ in 0..MAX_FAILURES - 1 {
            assert!(!lockout.failed(A, Instant::now()));
        }
        assert_eq!(lockout.check(A, Instant::now()), Attempt::Allowed);
        assert!(
            lockout.failed(A, Instant::now()),
            "the fifth starts a lockout"
        );
        assert!(!lockout.failed(A, Instant::now()), "reported once");
        assert!(matches!(
            lockout.check(A, Instant::now()),
            Attempt::Locked { retry_in } if retry_in == LOCK_FOR
        ));
        assert_eq!(lockout.check(B, Instant::now()), Attempt::Allowed);
        tokio::time::advance(LOCK_FOR - Duration::from_millis(1)).await;
        assert!(matches!(
            lockout.check(A, Instant::now()),
            Attempt::Locked { .. }
        ));
        tokio::time::advance(Duration::from_millis(1)).await;
        assert_eq!(lockout.check(A, Instant::now()), Attempt::Allowed);
        assert!(!lockout.failed(A, Instant::now()), "counting starts over");
    }

    #[tokio::test(start_paused = true)]
    async fn failures_spread_beyond_the_window_never_lock() {
        let mut lockout = Lockout::default();
        for _ in 0..20 {
            assert!(!lockout.failed(A, Instant::now()));
            tokio::time::advance(WINDOW / (MAX_FAILURES - 1)).await;
            if lockout.check(A, Instant::now()) != Attempt::Allowed {
                panic!("locked by failures spread over more than a window");
            }
        }
    }

    #[tokio::test(start_paused = true)]
    async fn memory_stays_bounded_under_a_scan_from_many_addresses() {
        let mut lockout = Lockout::default();
        for i in 0..(TRACKED as u32 * 3) {
            let ip = IpAddr::V4(std::net::Ipv4Addr::from(0x7f00_0000 + i));
            lockout.failed(ip, Instant::now());
        }
        assert!(lockout.records.len() <= TRACKED);
    }
}
