//! One device on a link: its protocol session, its queue, its polls, its health, and what
//! it reports to the journal.

use std::cell::RefCell;
use std::sync::Arc;
use std::time::Duration;

use avgate_drivers::{DriverSettings, Protocol, Request, Value};
use tokio::sync::mpsc;
use tokio::time::Instant;
use tracing::{debug, info, warn};

use super::Job;
use super::backoff::Backoff;
use crate::command::{ErrorCode, Failure};
use crate::config::DeviceConfig;
use crate::journal::Journal;

/// Consecutive failed sessions (an unanswered request, a garbled reply) before the device
/// is declared offline. One lost or garbled reply only costs a quiet reconnect.
pub(super) const FAILURES_BEFORE_OFFLINE: u32 = 2;

pub(super) struct Unit {
    pub config: DeviceConfig,
    pub protocol: Box<dyn Protocol>,
    pub jobs: mpsc::Receiver<Job>,
    pub state: UnitState,
    pub in_flight: Option<InFlight>,
    /// Failed sessions in a row; reset when the device answers a request.
    pub failures: u32,
    pub backoff: Backoff,
    /// When the current session started, to tell an idle close from a failure.
    pub session_started: Instant,
    polls: Vec<PollState>,
    journal: Arc<Journal>,
    /// Updates from the driver's current output, recorded together by
    /// [`Unit::flush_updates`] so panel writers wake once per device answer.
    updates: RefCell<Vec<(String, Value)>>,
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
}

impl Unit {
    /// Builds the device's driver session. Profiles are checked at load, so an error here
    /// means the driver refused settings the check let through.
    pub fn new(
        config: DeviceConfig,
        journal: Arc<Journal>,
        jobs: mpsc::Receiver<Job>,
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
        Ok(Unit {
            config,
            protocol,
            jobs,
            state: UnitState::Idle,
            in_flight: None,
            failures: 0,
            backoff: Backoff::default(),
            session_started: Instant::now(),
            polls,
            journal,
            updates: RefCell::default(),
        })
    }

    pub fn id(&self) -> &str {
        &self.config.id
    }

    /// Starts the driver's session on a freshly opened link (or after resting).
    pub fn connect(&mut self) {
        let now = Instant::now();
        self.session_started = now;
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
        self.flush_updates();
        self.failures = 0;
        self.backoff.reset();
        self.go_online();
    }

    /// The next request this device wants to run: a waiting panel command, else (when
    /// `polls_too`) the most overdue poll, which is rescheduled from now.
    pub fn next_request(&mut self, polls_too: bool) -> Option<(Request, Option<Job>)> {
        if let Ok(job) = self.jobs.try_recv() {
            let request = Request::Command {
                name: job.command.clone(),
                args: job.args.clone(),
            };
            return Some((request, Some(job)));
        }
        if !polls_too {
            return None;
        }
        let now = Instant::now();
        let poll = self
            .polls
            .iter_mut()
            .filter(|p| p.due <= now)
            .min_by_key(|p| p.due)?;
        poll.due = now + poll.every;
        Some((
            Request::Poll {
                query: poll.query.clone(),
            },
            None,
        ))
    }

    /// When this device next has a poll due, if it is ready for one.
    pub fn next_poll(&self) -> Option<Instant> {
        if self.state != UnitState::Ready || self.in_flight.is_some() {
            return None;
        }
        self.polls.iter().map(|p| p.due).min()
    }

    /// Hands a request to the driver; a request it cannot express fails at once.
    pub fn start(&mut self, request: Request, job: Option<Job>) -> bool {
        let what = match &request {
            Request::Command { name, .. } => name.clone(),
            Request::Poll { query } => format!("poll {query}"),
        };
        match self.protocol.start(Instant::now().into_std(), &request) {
            Ok(()) => {
                self.in_flight = Some(InFlight {
                    what,
                    job,
                    deadline: Instant::now() + self.config.command_timeout,
                });
                true
            }
            Err(e) => {
                match job {
                    Some(job) => {
                        let _ = job.reply.send(Err(e.into()));
                    }
                    None => warn!(device = %self.config.id, "{what} cannot be sent: {e}"),
                }
                false
            }
        }
    }

    /// Ends the request in flight, if any, telling whoever waits for it.
    pub fn finish(&mut self, outcome: Result<(), Failure>) {
        // The outcome's waiters look for the events before it: record them first.
        self.flush_updates();
        if let Some(InFlight { job, what, .. }) = self.in_flight.take() {
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

    /// Records a point the profile declares; anything else the driver reports is noise
    /// for this model and stays out of the panel protocol.
    pub fn publish(&self, point: &str, value: Value) {
        if self.config.profile.point(point).is_none() {
            debug!(device = %self.config.id, point, %value, "not in the profile; ignored");
            return;
        }
        self.updates.borrow_mut().push((point.to_string(), value));
    }

    /// Records the updates gathered since the last flush, in order, in one go.
    pub fn flush_updates(&self) {
        let updates = std::mem::take(&mut *self.updates.borrow_mut());
        if updates.is_empty() {
            return;
        }
        let seqs = self.journal.record_all(&self.config.id, &updates);
        for ((point, _), seq) in updates.iter().zip(seqs) {
            if let Some(seq) = seq {
                debug!(device = %self.config.id, point, seq, "changed");
            }
        }
    }

    fn go_online(&self) {
        self.flush_updates();
        if self
            .journal
            .set_online(&self.config.id, true, None)
            .is_some()
        {
            info!(device = %self.config.id, "online");
        }
    }

    pub fn go_offline(&self, error: String) {
        self.flush_updates();
        if self
            .journal
            .set_online(&self.config.id, false, Some(error.clone()))
            .is_some()
        {
            warn!(device = %self.config.id, "offline: {error}");
        }
    }

    /// Fails every queued command at once: the device is resting and nobody knows when it
    /// will be back.
    pub fn refuse_waiting(&mut self) {
        let UnitState::Resting { until } = self.state else {
            return;
        };
        while let Ok(job) = self.jobs.try_recv() {
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
        self.jobs.close();
        while let Ok(job) = self.jobs.try_recv() {
            let _ = job.reply.send(Err(Failure::new(code, message)));
        }
    }
}
