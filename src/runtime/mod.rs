//! The device runtime: one task owns each device's link.
//!
//! The task connects, reconnects with backoff, runs the driver's session, serializes
//! commands and polls (one request in flight, panel commands ahead of background polls),
//! applies timeouts and reports what the device says to the [`Journal`]. Everything else
//! talks to it only through its bounded command queue, so a device that hangs, lies or
//! drops affects nothing but its own task.
//!
//! [`Journal`]: crate::journal::Journal

mod backoff;
mod device;

use std::sync::Arc;

use avgate_drivers::{Map, Value};
use tokio::sync::{mpsc, oneshot};
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;

use crate::command::{ErrorCode, Failure, Outcome};
use crate::config::DeviceConfig;
use crate::journal::Journal;

/// A command on its way to a device, with the way back for its outcome.
pub struct Job {
    pub command: String,
    pub args: Map<String, Value>,
    pub reply: oneshot::Sender<Outcome>,
}

/// The only way into a device task.
#[derive(Clone)]
pub struct DeviceHandle {
    id: Arc<str>,
    jobs: mpsc::Sender<Job>,
}

impl DeviceHandle {
    pub fn id(&self) -> &str {
        &self.id
    }

    /// Queues a command. Fails at once with `device_busy` when the queue is full, rather
    /// than making the panel wait behind a device that is not keeping up.
    pub fn submit(
        &self,
        command: String,
        args: Map<String, Value>,
    ) -> Result<oneshot::Receiver<Outcome>, Failure> {
        let (reply, outcome) = oneshot::channel();
        match self.jobs.try_send(Job {
            command,
            args,
            reply,
        }) {
            Ok(()) => Ok(outcome),
            Err(mpsc::error::TrySendError::Full(_)) => Err(Failure::new(
                ErrorCode::DeviceBusy,
                format!(
                    "{} has too many commands waiting; try again when earlier ones finish",
                    self.id
                ),
            )),
            Err(mpsc::error::TrySendError::Closed(_)) => Err(Failure::new(
                ErrorCode::ShuttingDown,
                "the gateway is shutting down",
            )),
        }
    }
}

/// Starts the task that owns `config`'s device.
pub fn spawn_device(
    config: DeviceConfig,
    journal: Arc<Journal>,
    queue: usize,
    cancel: CancellationToken,
    tracker: &TaskTracker,
) -> DeviceHandle {
    let (jobs_tx, jobs_rx) = mpsc::channel(queue);
    let handle = DeviceHandle {
        id: config.id.as_str().into(),
        jobs: jobs_tx,
    };
    let span = tracing::info_span!("device", id = %config.id);
    let task = device::DeviceTask::new(config, journal, jobs_rx, cancel);
    tracker.spawn(tracing::Instrument::instrument(task.run(), span));
    handle
}
