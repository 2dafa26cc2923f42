//! One device on a link: its protocol session, its queue, its polls, its health, and what
//! it reports to the journal.

use std::sync::Arc;
use std::time::Duration;

use avgate_drivers::{DriverSettings, Protocol, Request, Value};
use tokio::time::Instant;
use tracing::{debug, info, warn};

use super::backoff::Backoff;
use super::queue::{CommandQueue, Job};
use super::shape::Shape;
use super::turns::Wants;
use crate::command::{ErrorCode, Failure};
use crate::config::DeviceConfig;
use crate::journal::Journal;
use crate::trace::{self, Direction, Tap};

/// Consecutive failed sessions (an unanswered request, a garbled reply) before the device
/// is declared offline. One lost or garbled reply only costs a quiet reconnect.
pub(super) const FAILURES_BEFORE_OFFLINE: u32 = 2;

pub(super) struct Unit {
    pub config: DeviceConfig,
    pub protocol: Box<dyn Protocol>,
    pub jobs: Arc<CommandQueue>,
    pub state: UnitState,
    pub in_flight: Option<InFlight>,
    /// The poll the driver paused between two exchanges (what it reads), to resume when
    /// no command is waiting.
    paused: Option<String>,
    /// Failed sessions in a row; reset when the device answers a request.
    pub failures: u32,
    pub backoff: Backoff,
    /// When the current session started, to tell an idle close from a failure.
    pub session_started: Instant,
    polls: Vec<PollState>,
    /// Values of the answer being taken in, recorded together by [`Unit::publish_staged`].
    staged: Vec<(String, Value)>,
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
}

/// The request on the wire and who is waiting for it.
pub(super) struct InFlight {
    pub what: String,
    pub job: Option<Job>,
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
            })
            .collect();
        let shape = Shape::of(&config.options);
        Ok(Unit {
            config,
            protocol,
            jobs,
            state: UnitState::Idle,
            in_flight: None,
            paused: None,
            failures: 0,
            backoff: Backoff::default(),
            session_started: Instant::now(),
            polls,
            staged: Vec::new(),
            journal,
            shape,
            connected_before: false,
            tap: Arc::default(),
        })
    }

    pub fn id(&self) -> &str {
        &self.config.id
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
        // A new connection starts a new session: the driver forgets a paused poll.
        self.paused = None;
        self.state = UnitState::Greeting {
            deadline: now + self.config.connect_timeout,
        };
        self.protocol.connected(now.into_std());
    }

    /// The driver finished its greeting.
    pub fn ready(&mut self) {
        self.state = UnitState::Ready;
        for poll in &mut self.polls {
            poll.due = Instant::now();
        }
        // A device that greets but has stopped answering stays offline until it answers
        // something.
        if self.failures < FAILURES_BEFORE_OFFLINE {
            self.go_online();
        }
    }

    /// The device answered a request (successfully or with its own error): it is there.
    pub fn answered(&mut self) {
        self.failures = 0;
        self.backoff.reset();
        self.go_online();
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
            self.start(request, Some(job));
        }
    }

    /// Starts the most overdue poll, rescheduled from now.
    pub fn start_poll(&mut self, now: Instant) {
        let Some(poll) = self
            .polls
            .iter_mut()
            .filter(|p| p.due <= now)
            .min_by_key(|p| p.due)
        else {
            return;
        };
        poll.due = now + poll.every;
        let request = Request::Poll {
            query: poll.query.clone(),
        };
        self.start(request, None);
    }

    /// The driver paused the poll in flight between two exchanges.
    pub fn pause(&mut self) {
        match self.in_flight.take() {
            Some(InFlight {
                what, job: None, ..
            }) => self.paused = Some(what),
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
        if let Some(what) = self.paused.take() {
            let now = Instant::now();
            self.in_flight = Some(InFlight {
                what,
                job: None,
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
    fn start(&mut self, request: Request, job: Option<Job>) {
        let what = match &request {
            Request::Command { name, .. } => name.clone(),
            Request::Poll { query } => format!("poll {query}"),
        };
        match self.protocol.start(Instant::now().into_std(), &request) {
            Ok(()) => {
                let now = Instant::now();
                self.in_flight = Some(InFlight {
                    what,
                    job,
                    deadline: now + self.config.command_timeout,
                    started: now,
                });
            }
            Err(e) => match job {
                Some(job) => {
                    let _ = job.reply.send(Err(e.into()));
                }
                None => warn!(device = %self.config.id, "{what} cannot be sent: {e}"),
            },
        }
    }

    /// Ends the request in flight, if any, telling whoever waits for it.
    pub fn finish(&mut self, outcome: Result<(), Failure>) {
        if let Some(InFlight {
            job, what, started, ..
        }) = self.in_flight.take()
        {
            let name = match job {
                Some(_) => crate::metrics::DEVICE_COMMAND_DURATION,
                None => crate::metrics::DEVICE_POLL_DURATION,
            };
            metrics::histogram!(name, "device" => self.config.id.clone())
                .record(started.elapsed().as_secs_f64());
            if let Err(failure) = &outcome
                && failure.code != ErrorCode::ShuttingDown
            {
                crate::metrics::device_error(&self.config.id, failure.code.as_str());
            }
            match job {
                // The panel may have gone; its outcome is still kept by the router.
                Some(job) => {
                    let _ = job.reply.send(outcome);
                }
                None => {
                    if let Err(e) = outcome {
                        debug!(device = %self.config.id, query = %what, "poll failed: {}", e.message);
                    }
                }
            }
        }
    }

    /// Sends the device to rest after a failure, offline, for its backoff delay (at least
    /// `floor`).
    pub fn rest(&mut self, error: String, floor: Duration) {
        self.go_offline(error);
        let delay = self.backoff.next().max(floor);
        self.state = UnitState::Resting {
            until: Instant::now() + delay,
        };
    }

    /// Holds a value the driver reported until the rest of its answer is in. Only points
    /// the profile declares are kept; anything else the driver reports is noise for this
    /// model and stays out of the panel protocol.
    pub fn stage(&mut self, point: String, value: Value) {
        if self.config.profile.point(&point).is_none() {
            debug!(device = %self.config.id, point, %value, "not in the profile; ignored");
            return;
        }
        if !self.shape.admits(&self.config.id, &point, &value) {
            return;
        }
        self.staged.push((point, value));
    }

    /// Records the values of one answer, in the order the driver reported them.
    pub fn publish_staged(&mut self) {
        let logging = tracing::enabled!(tracing::Level::DEBUG);
        for (point, value) in self.staged.drain(..) {
            // A copy only when it will be logged: the journal takes the value.
            let shown = logging.then(|| value.clone());
            if let Some(seq) = self.journal.record(&self.config.id, &point, value) {
                let value = shown.unwrap_or_default();
                debug!(device = %self.config.id, point, seq, %value, "changed");
            }
        }
    }

    fn go_online(&self) {
        if self
            .journal
            .set_online(&self.config.id, true, None)
            .is_some()
        {
            info!(device = %self.config.id, "online");
        }
    }

    pub fn go_offline(&self, error: String) {
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
        while let Some(job) = self.jobs.pop() {
            self.report_queue_depth();
            let why = self
                .journal
                .device_error(&self.config.id)
                .unwrap_or_else(|| "not connected".into());
            let secs = until
                .saturating_duration_since(Instant::now())
                .as_secs_f32();
            let _ = job.reply.send(Err(Failure::new(
                ErrorCode::DeviceOffline,
                format!(
                    "{} is offline ({why}); next attempt in {secs:.1}s",
                    self.config.id
                ),
            )));
        }
    }

    /// On shutdown: nothing more will run.
    pub fn fail_all(&mut self, code: ErrorCode, message: &str) {
        self.finish(Err(Failure::new(code, message)));
        for job in self.jobs.close() {
            let _ = job.reply.send(Err(Failure::new(code, message)));
        }
    }
}
