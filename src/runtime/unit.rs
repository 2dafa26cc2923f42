//! One device on a link: its protocol session, its queue, its polls, its health, and what
//! it reports to the journal.

use std::collections::BTreeSet;
use std::sync::Arc;
use std::time::Duration;

use avgate_drivers::{CATALOG_POINT, Catalog, DriverSettings, Protocol, Request, Value};
use tokio::time::Instant;
use tracing::{debug, error, info, warn};

use super::backoff::Backoff;
use super::queue::{CommandQueue, Job};
use super::shape::Shape;
use super::turns::Wants;
use crate::command::{ErrorCode, Failure};
use crate::config::DeviceConfig;
use crate::config::profile::Connection;
use crate::journal::Journal;
use crate::trace::{self, Direction, Tap};

/// How much longer than a driver's own handshake timeout the runtime waits before giving
/// up on the greeting itself: the driver's timer fires first and says what it waited for.
pub(super) const HANDSHAKE_GRACE: Duration = Duration::from_secs(1);

/// The offline rule, part one: consecutive failures (an unanswered request, a garbled
/// reply, a connection that dies before the session proved healthy) before the device is
/// declared offline. Fewer only cost a quiet reconnect, so a glitch or two never flaps a
/// device offline.
pub(super) const FAILURES_BEFORE_OFFLINE: u32 = 3;

/// The offline rule, part two: a device that has kept failing this long since its first
/// failure in a row is offline at its next failure, however few there were (a device with
/// a long timeout fails slowly).
pub(super) const FAILING_BEFORE_OFFLINE: Duration = Duration::from_secs(10);

/// A poll that keeps failing is logged at WARN again at most this often.
const POLL_WARN_EVERY: Duration = Duration::from_secs(300);

pub(super) struct Unit {
    pub config: DeviceConfig,
    pub protocol: Box<dyn Protocol>,
    pub jobs: Arc<CommandQueue>,
    pub state: UnitState,
    pub in_flight: Option<InFlight>,
    /// The poll the driver paused between two exchanges (its index in `polls`), to resume
    /// when no command is waiting.
    paused: Option<usize>,
    /// Failures in a row; reset when the device answers a request.
    pub failures: u32,
    /// When the first of those failures happened.
    failing_since: Option<Instant>,
    /// Whether the journal shows the device online: set by a successful answer.
    online: bool,
    pub backoff: Backoff,
    /// When the current session started, to tell an idle close from a failure.
    pub session_started: Instant,
    /// Whether the device sent anything since the session started (a greeting that
    /// stalls half-way is not a device that never greeted).
    pub heard_since_connect: bool,
    /// Whether the device sent anything since the request in flight started.
    pub heard_since_request: bool,
    polls: Vec<PollState>,
    /// Values of the answer being taken in, recorded together by [`Unit::publish_staged`].
    staged: Vec<(String, Value)>,
    /// Points the driver reported that the profile does not declare, warned about once.
    undeclared: BTreeSet<String>,
    /// Points the driver reported with a value their spec does not allow (a driver bug),
    /// logged once each.
    mistyped: BTreeSet<String>,
    /// What the device said it has beyond the static catalog ([`Unit::discovered`]).
    discovered: Option<Catalog>,
    journal: Arc<Journal>,
    /// The outputs and inputs the device is declared with, to drop points beyond them.
    shape: Shape,
    /// Whether a session was started before: the next one is a reconnect.
    connected_before: bool,
    /// The device's wire trace switch and frames (see [`crate::trace`]).
    pub tap: Arc<Tap>,
}

/// Where a device stands on its link.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum UnitState {
    /// Its session must be started (the link was just opened, or the device came back
    /// from resting).
    Idle,
    /// Its session started; the driver is greeting or logging in until this deadline.
    Greeting { deadline: Instant },
    /// Requests may start.
    Ready,
    /// Offline after failures; left alone until then, its commands failing at once.
    Resting { until: Instant },
}

struct PollState {
    query: String,
    every: Duration,
    due: Instant,
    /// Set while the poll's latest attempt failed.
    failing: Option<PollFailure>,
}

/// A poll that is failing: why, and when that was last logged at WARN.
struct PollFailure {
    reason: String,
    last_warned: Instant,
    /// Failures since the last WARN.
    unlogged: u32,
}

/// The request on the wire and who is waiting for it.
pub(super) struct InFlight {
    pub what: String,
    pub job: Option<Job>,
    /// The poll it is (its index in `polls`), when it is one.
    pub poll: Option<usize>,
    pub deadline: Instant,
    /// When the exchange started, for the duration metrics.
    pub started: Instant,
}

impl Unit {
    /// Builds the device's driver session. Profiles are checked at load, so an error here
    /// means the driver refused settings the check let through.
    pub fn new(
        config: DeviceConfig,
        journal: Arc<Journal>,
        jobs: Arc<CommandQueue>,
    ) -> Result<Unit, String> {
        let settings = DriverSettings {
            options: config.options.clone(),
            password: config.password.clone(),
        };
        let protocol = match (config.profile.driver_info.build)(&settings) {
            Ok(protocol) => protocol,
            Err(why) => {
                return Err(format!(
                    "driver `{}` cannot start: {why}",
                    config.profile.driver
                ));
            }
        };
        let polls = config
            .polls
            .iter()
            .map(|p| PollState {
                query: p.query.clone(),
                every: p.every,
                due: Instant::now(),
                failing: None,
            })
            .collect();
        let shape = Shape::of(&config.options);
        // Every declared point is unknown until the device is read: panels see it listed as
        // stale rather than not at all.
        let declared = config
            .profile
            .points
            .keys()
            .filter(|name| !name.ends_with('*'))
            .cloned();
        journal.expect_points(&config.id, declared);
        Ok(Unit {
            config,
            protocol,
            jobs,
            state: UnitState::Idle,
            in_flight: None,
            paused: None,
            failures: 0,
            failing_since: None,
            online: false,
            backoff: Backoff::default(),
            session_started: Instant::now(),
            heard_since_connect: false,
            heard_since_request: false,
            polls,
            staged: Vec::new(),
            undeclared: BTreeSet::new(),
            mistyped: BTreeSet::new(),
            discovered: None,
            journal,
            shape,
            connected_before: false,
            tap: Arc::default(),
        })
    }

    pub fn id(&self) -> &str {
        &self.config.id
    }

    /// Whether the device has answered successfully since it last went offline.
    pub fn is_online(&self) -> bool {
        self.online
    }

    /// Adds `bytes` to the device's wire trace, if one is on, with credentials hidden.
    pub fn trace(&self, dir: Direction, bytes: &[u8]) {
        if self.tap.is_on(&self.config.id) {
            let shown = trace::redact(self.protocol.redact(bytes), self.config.password.as_deref());
            self.tap.record(dir, &shown);
        }
    }

    /// Starts the driver's session on a freshly opened link (or after resting).
    pub fn connect(&mut self) {
        let now = Instant::now();
        if self.connected_before {
            metrics::counter!(crate::metrics::DEVICE_RECONNECTS, "device" => self.config.id.clone())
                .increment(1);
        }
        self.connected_before = true;
        self.session_started = now;
        self.heard_since_connect = false;
        // A new connection starts a new session: the driver forgets a paused poll.
        self.paused = None;
        self.state = UnitState::Greeting {
            deadline: now + self.greeting_allowance(),
        };
        self.protocol.connected(now.into_std());
    }

    /// How long the session's greeting may take once the link is open. The profile's
    /// `connect_timeout` covers opening the link; a driver that times its own handshake
    /// (Extron's login, VISCA's IF_Clear) gets its own time plus [`HANDSHAKE_GRACE`], so
    /// its error, which names the step it waited for, comes first.
    pub fn greeting_allowance(&self) -> Duration {
        self.protocol
            .handshake_timeout()
            .map_or(self.config.connect_timeout, |own| own + HANDSHAKE_GRACE)
    }

    /// The driver finished its greeting.
    pub fn ready(&mut self) {
        self.state = UnitState::Ready;
        // A new connection re-reads everything, since the device may have changed while
        // nobody listened; a connect-per-request device gets a new connection for every
        // request, so its polls keep their schedule (else only the first would ever run).
        if self.config.connection == Connection::Persistent {
            for poll in &mut self.polls {
                poll.due = Instant::now();
            }
        }
    }

    /// The device answered a request, successfully or with its own error: the link to it
    /// works. Only a successful answer brings it online (a Modbus gateway answering for a
    /// unit missing from its bus is not the unit).
    pub fn answered(&mut self, success: bool) {
        // The answer's values go in before anything it leads to.
        self.publish_staged();
        self.failures = 0;
        self.failing_since = None;
        self.backoff.reset();
        if success && !self.online {
            self.online = true;
            self.report_health();
        }
    }

    /// Counts a failure of the device's session; returns whether the offline rule now
    /// says offline ([`FAILURES_BEFORE_OFFLINE`] in a row, or failing for
    /// [`FAILING_BEFORE_OFFLINE`]).
    pub fn count_failure(&mut self) -> bool {
        let now = Instant::now();
        self.failures += 1;
        let since = *self.failing_since.get_or_insert(now);
        self.failures >= FAILURES_BEFORE_OFFLINE || now - since >= FAILING_BEFORE_OFFLINE
    }

    /// What this device could start now, for the link's turn order.
    pub fn wants(&self, now: Instant) -> Wants {
        let free = self.state == UnitState::Ready && self.in_flight.is_none();
        Wants {
            connect: self.state == UnitState::Idle,
            command: free && !self.jobs.is_empty(),
            paused_poll: free && self.paused.is_some(),
            poll_due: free && self.polls.iter().any(|p| p.due <= now),
        }
    }

    /// Starts the panel command that has waited longest.
    pub fn start_command(&mut self) {
        let job = self.jobs.pop();
        self.report_queue_depth();
        if let Some(job) = job {
            let request = Request::Command {
                name: job.command.clone(),
                args: job.args.clone(),
            };
            self.start(request, Some(job), None);
        }
    }

    /// Starts the most overdue poll, rescheduled from now.
    pub fn start_poll(&mut self, now: Instant) {
        let Some((index, poll)) = self
            .polls
            .iter_mut()
            .enumerate()
            .filter(|(_, p)| p.due <= now)
            .min_by_key(|(_, p)| p.due)
        else {
            return;
        };
        poll.due = now + poll.every;
        let request = Request::Poll {
            query: poll.query.clone(),
        };
        self.start(request, None, Some(index));
    }

    /// The driver paused the poll in flight between two exchanges.
    pub fn pause(&mut self) {
        match self.in_flight.take() {
            Some(InFlight {
                job: None,
                poll: Some(poll),
                ..
            }) => {
                // Its exchange went through: the poll reads.
                self.poll_finished(poll, Ok(()));
                self.paused = Some(poll);
            }
            // Commands never pause; carry on rather than lose whoever waits for it.
            Some(command) => {
                warn!(device = %self.config.id, "{} paused; resuming it", command.what);
                self.in_flight = Some(command);
                self.protocol.resume(Instant::now().into_std());
            }
            None => {}
        }
    }

    /// Carries on with the paused poll, with a fresh timeout for its next exchange.
    pub fn resume(&mut self) {
        if let Some(poll) = self.paused.take() {
            let now = Instant::now();
            self.in_flight = Some(InFlight {
                what: format!("poll {}", self.polls[poll].query),
                job: None,
                poll: Some(poll),
                deadline: now + self.config.command_timeout,
                started: now,
            });
            self.protocol.resume(now.into_std());
        }
    }

    /// When this device next has a poll to start, if it is ready for one.
    pub fn next_poll(&self) -> Option<Instant> {
        if self.state != UnitState::Ready || self.in_flight.is_some() {
            return None;
        }
        if self.paused.is_some() {
            return Some(Instant::now());
        }
        self.polls.iter().map(|p| p.due).min()
    }

    /// Hands a request to the driver; a request it cannot express fails at once.
    fn start(&mut self, request: Request, job: Option<Job>, poll: Option<usize>) {
        let what = match &request {
            Request::Command { name, .. } => name.clone(),
            Request::Poll { query } => format!("poll {query}"),
        };
        self.heard_since_request = false;
        match self.protocol.start(Instant::now().into_std(), &request) {
            Ok(()) => {
                let now = Instant::now();
                self.in_flight = Some(InFlight {
                    what,
                    job,
                    poll,
                    deadline: now + self.config.command_timeout,
                    started: now,
                });
            }
            Err(e) => match job {
                Some(job) => job.refuse(e.into()),
                None => {
                    warn!(device = %self.config.id, "{what} cannot be sent: {e}");
                    if let Some(poll) = poll {
                        self.poll_finished(poll, Err(e.message));
                    }
                }
            },
        }
    }

    /// Ends the request in flight, if any, telling whoever waits for it.
    pub fn finish(&mut self, outcome: Result<(), Failure>) {
        // The outcome's waiters look for the events before it: record them first.
        self.publish_staged();
        if let Some(InFlight {
            job, poll, started, ..
        }) = self.in_flight.take()
        {
            let name = match job {
                Some(_) => crate::metrics::DEVICE_COMMAND_DURATION,
                None => crate::metrics::DEVICE_POLL_DURATION,
            };
            let device_time = started.elapsed();
            metrics::histogram!(name, "device" => self.config.id.clone())
                .record(device_time.as_secs_f64());
            if let Err(failure) = &outcome
                && failure.code != ErrorCode::ShuttingDown
            {
                crate::metrics::device_error(&self.config.id, failure.code.as_str());
            }
            match (job, poll) {
                // The panel may have gone; its outcome is still kept by the router.
                (Some(job), _) => job.answer(outcome, device_time),
                (None, Some(poll)) => self.poll_finished(poll, outcome.map_err(|e| e.message)),
                (None, None) => {}
            }
        }
    }

    /// Ends the request in flight because the session failed (a timeout, a garbled
    /// reply, a lost link, shutdown): whoever waits for it is told, but a poll's health
    /// is not judged by it, since the offline rule already accounts for the session.
    pub fn abort(&mut self, failure: Failure) {
        self.publish_staged();
        if let Some(InFlight {
            job: Some(job),
            started,
            ..
        }) = self.in_flight.take()
        {
            job.answer(Err(failure), started.elapsed());
        }
    }

    /// Keeps each poll's health: the first failure of a poll is a WARN, a poll that keeps
    /// failing is logged again only every [`POLL_WARN_EVERY`], and recovery is logged once.
    fn poll_finished(&mut self, index: usize, outcome: Result<(), String>) {
        let now = Instant::now();
        let device = &self.config.id;
        let poll = &mut self.polls[index];
        match (outcome, &mut poll.failing) {
            (Ok(()), None) => return,
            (Ok(()), Some(_)) => {
                info!(device = %device, query = %poll.query, "poll reads again");
                poll.failing = None;
            }
            (Err(reason), None) => {
                warn!(device = %device, query = %poll.query, "poll failed: {reason}");
                poll.failing = Some(PollFailure {
                    reason,
                    last_warned: now,
                    unlogged: 0,
                });
            }
            (Err(reason), Some(failing)) => {
                failing.unlogged += 1;
                if now - failing.last_warned >= POLL_WARN_EVERY || reason != failing.reason {
                    warn!(
                        device = %device,
                        query = %poll.query,
                        "poll still failing ({} more times since last logged): {reason}",
                        failing.unlogged
                    );
                    failing.last_warned = now;
                    failing.unlogged = 0;
                } else {
                    debug!(device = %device, query = %poll.query, "poll failed again: {reason}");
                }
                failing.reason = reason;
            }
        }
        self.report_health();
    }

    /// Why the device is not healthy although it may be connected: every one of its polls
    /// failed its latest attempt.
    fn poll_error(&self) -> Option<String> {
        if self.polls.is_empty() || self.polls.iter().any(|p| p.failing.is_none()) {
            return None;
        }
        let reasons: Vec<&str> = self
            .polls
            .iter()
            .filter_map(|p| p.failing.as_ref().map(|f| f.reason.as_str()))
            .collect();
        Some(format!("every poll fails: {}", reasons.join("; ")))
    }

    /// Tells the journal where the device stands: online or not, and the error that
    /// explains what is wrong (`null` when nothing is).
    fn report_health(&self) {
        let error = self.poll_error();
        if !self.online && error.is_none() {
            // Offline for a reason already recorded (or never connected yet).
            return;
        }
        if self
            .journal
            .set_online(&self.config.id, self.online, error.clone())
            .is_some()
        {
            match error {
                Some(error) => warn!(device = %self.config.id, online = self.online, "{error}"),
                None => info!(device = %self.config.id, "online"),
            }
        }
    }

    /// The link could not be opened, or died before the session proved healthy: offline
    /// when the offline rule says so, else a quiet retry after the backoff delay, still
    /// online (its commands wait for the retry).
    pub fn failed_to_connect(&mut self, error: String) {
        if self.count_failure() || !self.online {
            self.rest(error, Duration::ZERO);
        } else {
            debug!(device = %self.config.id, "{error}; retrying");
            self.state = UnitState::Resting {
                until: Instant::now() + self.backoff.next_delay(),
            };
        }
    }

    /// Sends the device to rest after a failure, offline, for its backoff delay (at least
    /// `floor`).
    pub fn rest(&mut self, error: String, floor: Duration) {
        self.go_offline(error);
        let delay = self.backoff.next_delay().max(floor);
        self.state = UnitState::Resting {
            until: Instant::now() + delay,
        };
    }

    /// Holds a value the driver reported until the rest of its answer is in. Only points
    /// the profile declares (or the device's discovered catalog adds) are kept; anything
    /// else stays out of the panel protocol, with a WARN the first time each point shows up
    /// (the profile is likely missing it). A value that is not what its point declares is
    /// a driver bug: logged once per point as an error and not published.
    pub fn stage(&mut self, point: String, value: Value) {
        let discovered = self.discovered.as_ref().and_then(|c| c.point(&point));
        let Some(spec) = self.config.profile.point(&point).or(discovered) else {
            if self.undeclared.insert(point.clone()) {
                warn!(
                    device = %self.config.id,
                    point,
                    %value,
                    "the driver reports a point profile `{}` does not declare; ignored \
                     (declare it under [points] to publish it)",
                    self.config.profile.id
                );
            }
            return;
        };
        if let Err(why) = spec.admits(&value) {
            if self.mistyped.insert(point.clone()) {
                error!(
                    device = %self.config.id,
                    point,
                    "the {} driver reported a value its catalog does not allow: {why}; \
                     not published (this and later wrong values of this point)",
                    self.config.profile.driver
                );
            }
            return;
        }
        if !self.shape.admits(&self.config.id, &point, &value) {
            return;
        }
        self.staged.push((point, value));
    }

    /// The device told what it has beyond the driver's static catalog: published as its
    /// `catalog` point, and the points it declares are accepted from now on.
    pub fn discovered(&mut self, catalog: Catalog) {
        match serde_json::to_value(&catalog) {
            Ok(value) => self.staged.push((CATALOG_POINT.to_string(), value)),
            Err(why) => warn!(device = %self.config.id, "discovered catalog not published: {why}"),
        }
        self.discovered = Some(catalog);
    }

    /// Records the values of one answer, in the order the driver reported them, in one
    /// go: panel writers wake once per device answer, not once per value.
    pub fn publish_staged(&mut self) {
        if self.staged.is_empty() {
            return;
        }
        let staged = std::mem::take(&mut self.staged);
        let seqs = self.journal.record_all(&self.config.id, &staged);
        for ((point, value), seq) in staged.iter().zip(seqs) {
            if let Some(seq) = seq {
                debug!(device = %self.config.id, point, seq, %value, "changed");
            }
        }
    }

    pub fn go_offline(&mut self, error: String) {
        self.online = false;
        self.publish_staged();
        if self
            .journal
            .set_online(&self.config.id, false, Some(error.clone()))
            .is_some()
        {
            warn!(device = %self.config.id, "offline: {error}");
        }
    }

    /// Publishes how many commands wait, after the queue changed.
    pub fn report_queue_depth(&self) {
        metrics::gauge!(crate::metrics::DEVICE_QUEUE_DEPTH, "device" => self.config.id.clone())
            .set(self.jobs.len() as f64);
    }

    /// Fails every queued command at once: the device is resting and nobody knows when it
    /// will be back.
    pub fn refuse_waiting(&mut self) {
        let UnitState::Resting { until } = self.state else {
            return;
        };
        if self.online {
            // A quiet retry: the device is expected back at once.
            return;
        }
        while let Some(job) = self.jobs.pop() {
            self.report_queue_depth();
            let why = self
                .journal
                .device_error(&self.config.id)
                .unwrap_or_else(|| "not connected".into());
            let secs = until
                .saturating_duration_since(Instant::now())
                .as_secs_f32();
            job.refuse(Failure::new(
                ErrorCode::DeviceOffline,
                format!(
                    "{} is offline ({why}); next attempt in {secs:.1}s",
                    self.config.id
                ),
            ));
        }
    }

    /// On shutdown: nothing more will run.
    pub fn fail_all(&mut self, code: ErrorCode, message: &str) {
        self.abort(Failure::new(code, message));
        for job in self.jobs.close() {
            job.refuse(Failure::new(code, message));
        }
    }
}
