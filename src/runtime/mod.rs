//! The device runtime: one task owns each link and the devices on it.
//!
//! The task connects, reconnects with backoff, runs each device's driver session,
//! serializes commands and polls (one request in flight per link, panel commands ahead of
//! background polls, even between two reads of one poll group: see `turns.rs`), applies
//! timeouts and reports what the devices say to the
//! [`Journal`]. Everything else talks to a device only through its bounded command queue,
//! so a device that hangs, lies or drops affects nothing but its own link, and on a shared
//! serial line nothing but its own turns (see `link.rs`).
//!
//! [`Journal`]: crate::journal::Journal

mod backoff;
mod link;
mod queue;
mod shape;
mod transport;
mod turns;
mod unit;

pub use backoff::Backoff;
pub use queue::{Answered, Job, Reply, Ticket};
use queue::{CommandQueue, Refused};

#[cfg(test)]
mod tests;

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};

use avgate_drivers::{DriverSettings, Map, Protocol, Request, Value};
use tokio::sync::Notify;
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;

use crate::command::{ErrorCode, Failure};
use crate::config::{DeviceConfig, Profile};
use crate::journal::Journal;
use crate::trace::Traces;

/// The only way into a device task.
#[derive(Clone)]
pub struct DeviceHandle {
    id: Arc<str>,
    jobs: Arc<CommandQueue>,
    profile: Arc<Profile>,
    /// The link task's doorbell: it may be busy with another device on the same link.
    wake: Arc<Notify>,
    /// A driver session of this device's own, never connected, that checks commands'
    /// arguments as the live one would (with this device's options).
    checker: Option<Arc<std::sync::Mutex<Box<dyn Protocol>>>>,
    /// Turns of the link task's loop, to tell a live task from a wedged one.
    alive: Arc<AtomicU64>,
}

impl DeviceHandle {
    pub fn id(&self) -> &str {
        &self.id
    }

    /// Refuses commands with `device_busy` past `capacity` waiting (a reload of
    /// `[commands] queue`); commands already queued stay.
    pub fn set_queue_capacity(&self, capacity: usize) {
        self.jobs.set_capacity(capacity);
    }

    /// Whether the driver can carry out `command` with `args` (the names and ranges the
    /// device's options give: an input name, an output number), so that a command it
    /// cannot is refused before it is accepted. The profile's schema is checked first,
    /// by the router.
    pub fn check(&self, command: &str, args: &Map<String, Value>) -> Result<(), Failure> {
        let Some(checker) = &self.checker else {
            return Ok(());
        };
        let request = Request::Command {
            name: command.to_string(),
            args: args.clone(),
        };
        let checker = checker.lock().unwrap_or_else(|e| e.into_inner());
        checker.check(&request).map_err(|e| {
            let failure = Failure::from(e);
            Failure::new(failure.code, format!("{command}: {}", failure.message))
        })
    }

    /// Rings the link task and returns how many turns its loop has taken so far: a task
    /// that is alive has taken more by the next probe, even on an idle link.
    pub fn probe(&self) -> u64 {
        let turns = self.alive.load(Ordering::Relaxed);
        self.wake.notify_one();
        turns
    }

    /// A command's place in line. Take it when the command is accepted, in the order
    /// commands arrive: it decides which of two set-style commands for the same target is
    /// the newer, however late either reaches [`DeviceHandle::submit`].
    pub fn ticket(&self) -> Ticket {
        self.jobs.ticket()
    }

    /// Queues command `id`; its outcome goes to `reply`, from the link task once the device
    /// answers. A set-style command replaces a waiting older one for the same target
    /// (answered `superseded`). A full queue answers `device_busy` at once, rather than
    /// making the panel wait behind a device that is not keeping up.
    pub fn submit(
        &self,
        ticket: Ticket,
        id: &str,
        command: String,
        args: Map<String, Value>,
        reply: Reply,
    ) {
        let key = self
            .profile
            .commands
            .get(&command)
            .and_then(|spec| spec.target.as_deref())
            .map(|target| queue::conflation_key(&command, &args, target));
        let job = Job {
            command,
            args,
            reply,
            id: id.to_string(),
            ticket,
            key,
        };
        match self.jobs.push(job) {
            Ok(()) => {
                metrics::gauge!(crate::metrics::DEVICE_QUEUE_DEPTH, "device" => self.id.to_string())
                    .set(self.jobs.len() as f64);
                self.wake.notify_one();
            }
            Err((Refused::Full, job)) => job.refuse(Failure::new(
                ErrorCode::DeviceBusy,
                format!(
                    "{} has too many commands waiting; try again when earlier ones finish",
                    self.id
                ),
            )),
            Err((Refused::Closed, job)) => job.refuse(Failure::new(
                ErrorCode::ShuttingDown,
                "the gateway is shutting down",
            )),
        }
    }
}

/// A never-connected driver session for checking `config`'s commands; `None` if the
/// driver refuses the settings (the device then fails to start anyway).
fn checker(config: &DeviceConfig) -> Option<Arc<std::sync::Mutex<Box<dyn Protocol>>>> {
    let settings = DriverSettings {
        options: config.options.clone(),
        password: config.password.clone(),
    };
    let session = (config.profile.driver_info.build)(&settings).ok()?;
    Some(Arc::new(std::sync::Mutex::new(session)))
}

/// The indexes of `devices` by the link they share (see [`crate::config::Link::owner_key`]),
/// in the order links first appear.
pub fn group_by_link(devices: &[DeviceConfig]) -> Vec<(String, Vec<usize>)> {
    let mut groups: Vec<(String, Vec<usize>)> = Vec::new();
    for (i, device) in devices.iter().enumerate() {
        let key = device.link.owner_key();
        match groups.iter_mut().find(|(k, _)| *k == key) {
            Some((_, members)) => members.push(i),
            None => groups.push((key, vec![i])),
        }
    }
    groups
}

/// Starts the task for one link and `devices`, which all share it. Returns their handles
/// in order, and the task (none when no device could start), which ends once `cancel`
/// is cancelled and its devices' commands are answered.
pub fn spawn_link(
    devices: &[DeviceConfig],
    journal: Arc<Journal>,
    traces: &Traces,
    queue: usize,
    cancel: CancellationToken,
    tracker: &TaskTracker,
) -> (Vec<DeviceHandle>, Option<tokio::task::JoinHandle<()>>) {
    let wake = Arc::new(Notify::new());
    let alive = Arc::new(AtomicU64::new(0));
    let mut units = Vec::new();
    let mut handles = Vec::new();
    for config in devices {
        let jobs = Arc::new(CommandQueue::new(queue));
        handles.push(DeviceHandle {
            id: config.id.as_str().into(),
            jobs: jobs.clone(),
            profile: config.profile.clone(),
            wake: wake.clone(),
            alive: alive.clone(),
            checker: checker(config),
        });
        match unit::Unit::new(config.clone(), journal.clone(), jobs) {
            Ok(mut unit) => {
                unit.tap = traces.tap(&config.id);
                units.push(unit);
            }
            // Profiles are checked at load, so this only happens with a broken build;
            // the device's queue closes and its commands fail as shutting down.
            Err(why) => {
                journal.set_online(&config.id, false, Some(why.clone()));
                tracing::error!(device = %config.id, "{why}");
            }
        }
    }
    if units.is_empty() {
        return (handles, None);
    }
    let link = devices[0].link.clone();
    let span = tracing::info_span!("link", link = %link);
    let task = link::LinkTask::new(link, units, wake, cancel).counting_turns(alive);
    let task = tracker.spawn(tracing::Instrument::instrument(task.run(), span));
    (handles, Some(task))
}
