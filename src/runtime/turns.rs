//! Whose turn it is on a link, and when, decided from what each device wants and the time
//! it is told, so the rule can be read in one place and tested without a link or a clock.
//!
//! The rule: sessions to start first (nothing else can happen on a device until it has
//! greeted), then panel commands, then polls that paused between two exchanges, then due
//! polls. A poll group that takes several requests pauses after each one
//! ([`avgate_drivers::Output::Paused`]), so a command never waits for more than the one
//! request in flight. Within each kind, devices take turns starting after the one that
//! went last. Nothing starts until the pacing has passed since the last exchange ended.

use std::time::Duration;

use tokio::time::Instant;

/// What one device on the link could start now.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub(super) struct Wants {
    /// Its session must be started (link just opened, or back from resting).
    pub connect: bool,
    /// A panel command is waiting in its queue.
    pub command: bool,
    /// One of its polls paused between two exchanges and must finish before another starts.
    pub paused_poll: bool,
    /// One of its polls is due.
    pub poll_due: bool,
}

/// What to start, and on which device (its index on the link).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Turn {
    Connect(usize),
    Command(usize),
    Resume(usize),
    Poll(usize),
}

impl Turn {
    pub fn device(self) -> usize {
        match self {
            Turn::Connect(i) | Turn::Command(i) | Turn::Resume(i) | Turn::Poll(i) => i,
        }
    }
}

/// The link's turn keeper.
#[derive(Debug)]
pub(super) struct Turns {
    /// Quiet time between the end of one exchange and the next transmission.
    pacing: Duration,
    quiet_until: Option<Instant>,
    /// The device to consider first next time, so turns go round.
    first: usize,
}

impl Turns {
    pub fn new(pacing: Duration) -> Turns {
        Turns {
            pacing,
            quiet_until: None,
            first: 0,
        }
    }

    /// An exchange ended at `now` (an answer, a finished greeting): the link stays quiet
    /// for the pacing.
    pub fn exchange_ended(&mut self, now: Instant) {
        self.quiet_until = Some(now + self.pacing);
    }

    /// When the quiet time ends, if it is still running at `now`.
    pub fn quiet_until(&self, now: Instant) -> Option<Instant> {
        self.quiet_until.filter(|&until| until > now)
    }

    /// What to start at `now` on an idle link of `count` devices, if anything may start;
    /// `wants(i)` says what device `i` could start.
    pub fn next(
        &mut self,
        now: Instant,
        count: usize,
        wants: impl Fn(usize) -> Wants,
    ) -> Option<Turn> {
        if self.quiet_until(now).is_some() {
            return None;
        }
        let turn = next_turn(count, self.first, wants)?;
        self.first = turn.device() + 1;
        Some(turn)
    }
}

/// The next thing to start on an idle link among `count` devices, considering device
/// `first` first; `wants(i)` says what device `i` could start.
pub(super) fn next_turn(
    count: usize,
    first: usize,
    wants: impl Fn(usize) -> Wants,
) -> Option<Turn> {
    let first_wanting = |wanted: fn(&Wants) -> bool| {
        (0..count)
            .map(|k| (first + k) % count)
            .find(|&i| wanted(&wants(i)))
    };
    first_wanting(|w| w.connect)
        .map(Turn::Connect)
        .or_else(|| first_wanting(|w| w.command).map(Turn::Command))
        .or_else(|| first_wanting(|w| w.paused_poll).map(Turn::Resume))
        .or_else(|| first_wanting(|w| w.poll_due).map(Turn::Poll))
}

#[cfg(test)]
mod tests {
    use super::*;

    const IDLE: Wants = Wants {
        connect: false,
        command: false,
        paused_poll: false,
        poll_due: false,
    };
    const COMMAND: Wants = Wants {
        command: true,
        ..IDLE
    };
    const PAUSED: Wants = Wants {
        paused_poll: true,
        ..IDLE
    };
    const DUE: Wants = Wants {
        poll_due: true,
        ..IDLE
    };

    fn turn(devices: &[Wants], first: usize) -> Option<Turn> {
        next_turn(devices.len(), first, |i| devices[i])
    }

    #[test]
    fn a_command_goes_before_the_rest_of_a_paused_poll() {
        let both = Wants {
            command: true,
            paused_poll: true,
            poll_due: true,
            ..IDLE
        };
        assert_eq!(turn(&[both], 0), Some(Turn::Command(0)));
        // A paused poll finishes before any poll starts, its own or another device's.
        let paused = Wants {
            poll_due: true,
            ..PAUSED
        };
        assert_eq!(turn(&[DUE, paused], 0), Some(Turn::Resume(1)));
        // Another device's command also goes first.
        assert_eq!(turn(&[PAUSED, COMMAND], 0), Some(Turn::Command(1)));
    }

    #[test]
    fn sessions_start_before_anything_else() {
        let connect = Wants {
            connect: true,
            ..IDLE
        };
        assert_eq!(turn(&[COMMAND, connect], 0), Some(Turn::Connect(1)));
    }

    #[test]
    fn devices_take_turns_within_each_kind() {
        let devices = [COMMAND, COMMAND, DUE];
        assert_eq!(turn(&devices, 0), Some(Turn::Command(0)));
        assert_eq!(turn(&devices, 1), Some(Turn::Command(1)));
        assert_eq!(turn(&devices, 2), Some(Turn::Command(0)));
        assert_eq!(turn(&[DUE, DUE], 1), Some(Turn::Poll(1)));
    }

    #[test]
    fn nothing_starts_before_the_pacing_has_passed() {
        let start = Instant::now();
        let pacing = Duration::from_millis(50);
        let mut turns = Turns::new(pacing);
        let devices = [COMMAND, DUE];
        let wants = |i: usize| devices[i];
        assert_eq!(turns.next(start, 2, wants), Some(Turn::Command(0)));
        turns.exchange_ended(start + Duration::from_millis(5));
        let end = start + Duration::from_millis(55);
        for early in [
            start + Duration::from_millis(5),
            end - Duration::from_millis(1),
        ] {
            assert_eq!(turns.quiet_until(early), Some(end));
            assert_eq!(turns.next(early, 2, wants), None, "quiet until {end:?}");
        }
        assert_eq!(turns.quiet_until(end), None);
        // A waiting command comes first whoever it is for; otherwise the turn goes round
        // (device 0 went last, so device 1 is considered first).
        assert_eq!(turns.next(end, 2, wants), Some(Turn::Command(0)));
        assert_eq!(turns.next(end, 2, |_| DUE), Some(Turn::Poll(1)));
    }

    #[test]
    fn nothing_wanted_is_no_turn() {
        assert_eq!(turn(&[IDLE, IDLE], 0), None);
        assert_eq!(turn(&[], 0), None);
    }
}
