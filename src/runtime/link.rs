//! The task that owns one link (a TCP connection, a UDP peer or a serial port) and every
//! device on it.
//!
//! Most links carry one device. A serial line can carry several addressed devices (Samsung
//! displays by id, VISCA cameras by address, Modbus units on an RTU bus): they are still
//! separate devices to the rest of the gateway, but their exchanges must not overlap on the
//! wire, so one task serializes them. At most one device is *active* at a time (greeting,
//! or with a request in flight) and it gets what the link receives; when none is, every
//! device's session sees the bytes (unsolicited reports), and each keeps only what is
//! addressed to it. Turns go round, panel commands ahead of background polls.
//!
//! After a timeout or a protocol error the link is reopened, because a late reply would
//! otherwise be taken for the answer to the next request, whoever's it is. Only the device
//! that failed counts the failure; after [`FAILURES_BEFORE_OFFLINE`] in a row (or failing
//! for [`FAILING_BEFORE_OFFLINE`]) it is offline and rests for its backoff delay while the
//! others go on.

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use avgate_drivers::{Output, SessionError};
use tokio::io::{AsyncReadExt, AsyncWriteExt, WriteHalf};
use tokio::sync::Notify;
use tokio::time::{Instant, sleep_until, timeout};
use tokio_util::sync::CancellationToken;
use tracing::{debug, warn};

use super::backoff::AUTH_FLOOR;
use super::transport::{self, LinkStream};
use super::turns::{Turn, Turns};
#[allow(unused_imports)] // named in the module docs
use super::unit::{FAILING_BEFORE_OFFLINE, FAILURES_BEFORE_OFFLINE};
use super::unit::{Unit, UnitState};
use crate::command::{ErrorCode, Failure};
use crate::config::Link;
use crate::config::profile::Connection;
use crate::trace::Direction;

/// A session that worked at least this long before the device closed it is taken to have
/// been closed on purpose (PJLink projectors drop idle connections): reconnect at once,
/// quietly. One that dies sooner counts as a failure, so a device that accepts and drops
/// at once gets backoff rather than a busy loop.
const HEALTHY_SESSION: Duration = Duration::from_secs(1);

/// Bytes read from the link at a time.
const READ_CHUNK: usize = 2048;

/// Opens the link; tests swap in an in-memory device.
pub(super) type Opener =
    Box<dyn Fn(&Link, Duration) -> BoxFuture<Result<Box<dyn LinkStream>, String>> + Send + Sync>;

type BoxFuture<T> = std::pin::Pin<Box<dyn std::future::Future<Output = T> + Send>>;

pub(super) struct LinkTask {
    link: Link,
    /// The link as metrics and logs name it.
    label: String,
    open: Opener,
    units: Vec<Unit>,
    /// Rung when a command is queued for any device here.
    wake: Arc<Notify>,
    cancel: CancellationToken,
    /// Whose turn it is, and not before the pacing.
    turns: Turns,
    connect_timeout: Duration,
    write_timeout: Duration,
    /// Counts turns of the task's loops, for the watchdog (see `DeviceHandle::probe`).
    turns_taken: Arc<AtomicU64>,
}

/// Why an open link was given up.
enum LinkEnd {
    Shutdown,
    Reopen,
}

impl LinkTask {
    pub(super) fn new(
        link: Link,
        units: Vec<Unit>,
        wake: Arc<Notify>,
        cancel: CancellationToken,
    ) -> LinkTask {
        let max = |f: fn(&Unit) -> Duration| units.iter().map(f).max().unwrap_or_default();
        LinkTask {
            open: Box::new(|link, limit| {
                let link = link.clone();
                Box::pin(async move { transport::open(&link, limit).await })
            }),
            turns: Turns::new(max(|u| u.config.pacing)),
            connect_timeout: max(|u| u.config.connect_timeout),
            write_timeout: max(|u| u.config.command_timeout),
            label: link.to_string(),
            turns_taken: Arc::default(),
            link,
            units,
            wake,
            cancel,
        }
    }

    /// Counts the loop's turns in `counter`.
    pub(super) fn counting_turns(mut self, counter: Arc<AtomicU64>) -> LinkTask {
        self.turns_taken = counter;
        self
    }

    fn turn(&self) {
        self.turns_taken.fetch_add(1, Ordering::Relaxed);
    }

    /// Opens the link with `open` instead of the real transport.
    #[cfg(test)]
    pub(super) fn opening_with(mut self, open: Opener) -> LinkTask {
        self.open = open;
        self
    }

    pub(super) async fn run(mut self) {
        loop {
            self.turn();
            if !self.wait_for_a_device().await {
                break;
            }
            let opened = tokio::select! {
                _ = self.cancel.cancelled() => break,
                opened = (self.open)(&self.link, self.connect_timeout) => opened,
            };
            match opened {
                Ok(stream) => match self.run_open(stream).await {
                    LinkEnd::Shutdown => break,
                    LinkEnd::Reopen => continue,
                },
                Err(error) => {
                    for unit in self.awake_units() {
                        unit.failed_to_connect(error.clone());
                    }
                }
            }
        }
        for unit in &mut self.units {
            unit.fail_all(ErrorCode::ShuttingDown, "the gateway is shutting down");
        }
    }

    fn awake_units(&mut self) -> impl Iterator<Item = &mut Unit> {
        self.units
            .iter_mut()
            .filter(|u| !matches!(u.state, UnitState::Resting { .. }))
    }

    /// Waits until some device here is not resting; commands for resting devices fail at
    /// once meanwhile. Returns false on shutdown.
    async fn wait_for_a_device(&mut self) -> bool {
        loop {
            self.turn();
            let now = Instant::now();
            let mut next_wake: Option<Instant> = None;
            for unit in &mut self.units {
                match unit.state {
                    UnitState::Resting { until } if until <= now => unit.state = UnitState::Idle,
                    UnitState::Resting { until } => {
                        next_wake = Some(next_wake.map_or(until, |t| t.min(until)));
                    }
                    _ => {}
                }
            }
            let Some(until) = next_wake.filter(|_| self.awake_units().next().is_none()) else {
                return true;
            };
            tokio::select! {
                _ = self.cancel.cancelled() => return false,
                _ = self.wake.notified() => self.units.iter_mut().for_each(Unit::refuse_waiting),
                _ = sleep_until(until) => {}
            }
        }
    }

    async fn run_open(&mut self, stream: Box<dyn LinkStream>) -> LinkEnd {
        let (mut reader, mut writer) = tokio::io::split(stream);
        let mut buf = vec![0u8; READ_CHUNK];
        for unit in self.awake_units() {
            unit.state = UnitState::Idle;
        }
        loop {
            self.turn();
            // Act on everything the drivers have to say before waiting again.
            for i in 0..self.units.len() {
                while let Some(output) = self.units[i].protocol.poll_output() {
                    let output = match output {
                        Output::Update { point, value } => {
                            self.units[i].stage(point, value);
                            continue;
                        }
                        Output::Discovered(catalog) => {
                            self.units[i].discovered(catalog);
                            continue;
                        }
                        // The values of one answer reach the journal together, and before
                        // whatever follows them (the outcome, the next request).
                        other => {
                            self.units[i].publish_staged();
                            other
                        }
                    };
                    if let Output::Transmit(bytes) = &output {
                        self.units[i].trace(Direction::Tx, bytes);
                        let sent = write(&mut writer, bytes, &self.link, self.write_timeout).await;
                        if let Err(error) = sent {
                            self.lost(&error);
                            return LinkEnd::Reopen;
                        }
                        crate::metrics::link_bytes(
                            crate::metrics::LINK_BYTES_OUT,
                            &self.label,
                            bytes.len(),
                        );
                        continue;
                    }
                    let unit = &mut self.units[i];
                    match output {
                        Output::Transmit(_) | Output::Update { .. } | Output::Discovered(_) => {}
                        Output::Ready => {
                            unit.ready();
                            self.turns.exchange_ended(Instant::now());
                        }
                        Output::Completed(result) => {
                            // The outcome first, so a poll that reads again has cleared
                            // its failure before the device is reported healthy.
                            let success = result.is_ok();
                            unit.finish(result.map_err(Failure::from));
                            unit.answered(success);
                            self.turns.exchange_ended(Instant::now());
                            if unit.config.connection == Connection::PerRequest {
                                // The device closes after each reply: close first, and
                                // open a new connection for the next request.
                                unit.state = UnitState::Idle;
                                return LinkEnd::Reopen;
                            }
                        }
                        // The exchange is over, so the link is free for a waiting command.
                        Output::Paused => {
                            unit.pause();
                            unit.answered(true);
                            self.turns.exchange_ended(Instant::now());
                        }
                        Output::Fatal(err) => {
                            warn!(device = %unit.id(), "{err}");
                            let floor = match err {
                                SessionError::AuthFailed(_) => Some(AUTH_FLOOR),
                                _ => None,
                            };
                            let failure = Failure::new(ErrorCode::DeviceError, err.to_string());
                            self.unit_failed(i, failure, floor);
                            return LinkEnd::Reopen;
                        }
                    }
                }
                self.units[i].publish_staged();
            }

            let now = Instant::now();
            for unit in &mut self.units {
                if matches!(unit.state, UnitState::Resting { until } if until <= now) {
                    unit.state = UnitState::Idle;
                }
            }
            if self.awake_units().next().is_none() {
                // Everyone is resting: close the link until one is due again.
                return LinkEnd::Reopen;
            }
            let active = self.active();
            if active.is_none() && self.start_next(now) {
                continue;
            }

            let deadline = active.and_then(|i| {
                let unit = &self.units[i];
                match (&unit.in_flight, unit.state) {
                    (Some(f), _) => Some(f.deadline),
                    (None, UnitState::Greeting { deadline }) => Some(deadline),
                    _ => None,
                }
            });
            // With nobody active, wake at the end of the quiet time (a command may be
            // waiting for it), else for the next poll or the end of a device's rest.
            let next_turn = match active {
                Some(_) => None,
                None => self.turns.quiet_until(now).or_else(|| {
                    self.units
                        .iter()
                        .filter_map(|u| match u.state {
                            UnitState::Resting { until } => Some(until),
                            _ => u.next_poll(),
                        })
                        .min()
                }),
            };
            let driver_timer = self
                .units
                .iter()
                .filter_map(|u| u.protocol.poll_timeout())
                .min()
                .map(Instant::from_std);
            tokio::select! {
                _ = self.cancel.cancelled() => {
                    for unit in &mut self.units {
                        unit.abort(Failure::new(ErrorCode::ShuttingDown, "the gateway is shutting down"));
                    }
                    return LinkEnd::Shutdown;
                }
                read = reader.read(&mut buf) => match read {
                    Ok(0) => {
                        let error = match &self.link {
                            Link::Serial { path, .. } => format!("serial port {} is gone (adapter unplugged?)", path.display()),
                            _ => format!("{} closed the connection", self.link),
                        };
                        self.lost(&error);
                        return LinkEnd::Reopen;
                    }
                    Ok(n) => {
                        crate::metrics::link_bytes(crate::metrics::LINK_BYTES_IN, &self.label, n);
                        self.deliver(active, &buf[..n]);
                    }
                    Err(e) => {
                        self.lost(&format!("link {} failed: {e}", self.link));
                        return LinkEnd::Reopen;
                    }
                },
                _ = self.wake.notified() => self.units.iter_mut().for_each(Unit::refuse_waiting),
                _ = sleep_until(deadline.unwrap_or_else(Instant::now)), if deadline.is_some() => {
                    let i = active.expect("a deadline belongs to the active device");
                    self.timed_out(i);
                    return LinkEnd::Reopen;
                }
                _ = sleep_until(next_turn.unwrap_or_else(Instant::now)), if next_turn.is_some() => {}
                _ = sleep_until(driver_timer.unwrap_or_else(Instant::now)), if driver_timer.is_some() => {
                    let now = Instant::now();
                    for unit in &mut self.units {
                        if unit.protocol.poll_timeout().is_some_and(|t| Instant::from_std(t) <= now) {
                            unit.protocol.handle_timeout(now.into_std());
                        }
                    }
                }
            }
        }
    }

    /// The device greeting or with a request in flight, if any.
    fn active(&self) -> Option<usize> {
        self.units
            .iter()
            .position(|u| u.in_flight.is_some() || matches!(u.state, UnitState::Greeting { .. }))
    }

    /// Gives the link to the next device with something to do (see [`turns`] for the
    /// order). Returns whether anything happened.
    fn start_next(&mut self, now: Instant) -> bool {
        let units = &self.units;
        let Some(turn) = self.turns.next(now, units.len(), |i| units[i].wants(now)) else {
            return false;
        };
        let unit = &mut self.units[turn.device()];
        match turn {
            Turn::Connect(_) => unit.connect(),
            Turn::Command(_) => unit.start_command(),
            Turn::Resume(_) => unit.resume(),
            Turn::Poll(_) => unit.start_poll(now),
        }
        true
    }

    /// Bytes from the link: the active device's answer, or unsolicited news for whoever
    /// it concerns.
    fn deliver(&mut self, active: Option<usize>, data: &[u8]) {
        let now = Instant::now().into_std();
        match active {
            Some(i) => {
                self.units[i].heard_since_connect = true;
                self.units[i].heard_since_request = true;
                self.units[i].trace(Direction::Rx, data);
                self.units[i].protocol.received(now, data);
            }
            None => {
                for unit in &mut self.units {
                    if matches!(unit.state, UnitState::Ready | UnitState::Greeting { .. }) {
                        unit.trace(Direction::Rx, data);
                        unit.protocol.received(now, data);
                    }
                }
            }
        }
    }

    fn timed_out(&mut self, i: usize) {
        let unit = &mut self.units[i];
        let failure = match &unit.in_flight {
            Some(f) => Failure::new(
                ErrorCode::Timeout,
                format!(
                    "{} did not answer `{}` within {:?}",
                    unit.id(),
                    f.what,
                    unit.config.command_timeout
                ),
            ),
            None => {
                let (id, waited) = (unit.id(), unit.greeting_allowance());
                let message = match (unit.heard_since_connect, unit.protocol.waiting_for()) {
                    (false, _) => format!(
                        "{id} accepted the connection but sent nothing within {waited:?} (no greeting)"
                    ),
                    (true, Some(what)) => format!(
                        "{id} began its greeting but did not send {what} within {waited:?} of connecting"
                    ),
                    (true, None) => format!(
                        "{id} answered but did not finish starting its session within {waited:?} of connecting"
                    ),
                };
                Failure::new(ErrorCode::DeviceOffline, message)
            }
        };
        if unit.in_flight.is_some() {
            unit.protocol.abandon();
            self.unit_failed(i, failure, None);
        } else {
            // A device that accepts but never greets is not a passing glitch.
            unit.abort(failure.clone());
            unit.count_failure();
            unit.rest(failure.message, Duration::ZERO);
            self.quiet_others(i);
        }
    }

    /// Device `i` failed its session: a quiet retry the first time, offline after that
    /// (or at once, resting at least `floor`, when it refused our credentials). The others
    /// reconnect quietly with the link.
    fn unit_failed(&mut self, i: usize, failure: Failure, floor: Option<Duration>) {
        let unit = &mut self.units[i];
        unit.abort(failure.clone());
        // A device never online yet has nothing to flap: its first failure is reported.
        let offline = unit.count_failure() || !unit.is_online();
        match floor {
            Some(floor) => unit.rest(failure.message, floor),
            None if offline => unit.rest(failure.message, Duration::ZERO),
            None => {
                debug!(device = %unit.id(), "{}; reconnecting", failure.message);
                unit.state = UnitState::Idle;
            }
        }
        self.quiet_others(i);
    }

    fn quiet_others(&mut self, failed: usize) {
        for (j, unit) in self.units.iter_mut().enumerate() {
            if j != failed && !matches!(unit.state, UnitState::Resting { .. }) {
                unit.state = UnitState::Idle;
            }
        }
    }

    /// The link itself failed or was closed: every device on it is affected alike. A
    /// close after a healthy session, or between two requests on a connect-per-request
    /// link, is expected: reconnect quietly. Any other counts as a failure.
    fn lost(&mut self, error: &str) {
        let idle_close = self.link.closes_when_idle();
        for unit in self.awake_units() {
            let per_request = unit.config.connection == Connection::PerRequest;
            let between_requests = unit.state == UnitState::Ready && unit.in_flight.is_none();
            // A command whose first exchange was answered has been carried out: the device
            // closed before the driver's read-back, which the next poll does instead.
            // (A driver ends a request at once on an error answer.)
            let command_done = per_request
                && unit.heard_since_request
                && unit.in_flight.as_ref().is_some_and(|f| f.job.is_some());
            if command_done {
                debug!(device = %unit.id(), "{error} after answering; the next poll reads back");
                unit.finish(Ok(()));
                unit.answered(true);
                unit.state = UnitState::Idle;
                continue;
            }
            let expected = idle_close
                && unit.config.idle_close
                && unit.state == UnitState::Ready
                && (unit.session_started.elapsed() >= HEALTHY_SESSION
                    || (between_requests && per_request));
            unit.abort(Failure::new(ErrorCode::DeviceOffline, error));
            if expected {
                debug!(device = %unit.id(), "{error}; reconnecting");
                unit.state = UnitState::Idle;
            } else {
                unit.failed_to_connect(error.to_string());
            }
        }
    }
}

async fn write(
    writer: &mut WriteHalf<Box<dyn LinkStream>>,
    bytes: &[u8],
    link: &Link,
    limit: Duration,
) -> Result<(), String> {
    match timeout(limit, writer.write_all(bytes)).await {
        Ok(Ok(())) => Ok(()),
        Ok(Err(e)) => Err(format!("writing to {link} failed: {e}")),
        Err(_) => Err(format!("{link} stopped accepting data")),
    }
}
