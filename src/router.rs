//! The router: from a panel's command to a device's queue, exactly once.
//!
//! It checks the command against the device's profile, drops a command id it has seen
//! within the dedupe window (the caller gets the stored outcome instead), queues the rest
//! on the device, and keeps each outcome for the window so a panel that re-sends after a
//! reconnect learns what happened without driving the device twice.

use std::collections::{HashMap, VecDeque};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use avgate_drivers::{Map, Value};
use tokio::sync::watch;
use tokio::time::Instant;

use crate::command::{ErrorCode, Failure, Outcome};
use crate::config::Profile;
use crate::runtime::DeviceHandle;

/// Outcomes remembered at most, whatever the window: a panel that floods the gateway with
/// fresh ids costs bounded memory (about 200 bytes each). The oldest go first.
const MAX_REMEMBERED: usize = 100_000;

/// Identifies a command across reconnects: who sent it and the id they gave it.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct CommandKey {
    /// The panel's stable name from `hello.client`, or its session id when it gave none.
    pub client: String,
    pub id: String,
}

/// Becomes `Some` when the command's outcome is known.
pub type OutcomeWatch = watch::Receiver<Option<Outcome>>;

pub enum Submission {
    /// Queued on the device for the first time.
    Accepted(OutcomeWatch),
    /// This id was seen within the window; the device is not driven again.
    Duplicate(OutcomeWatch),
}

pub struct Router {
    devices: HashMap<String, (DeviceHandle, Arc<Profile>)>,
    window: Duration,
    ledger: Mutex<Ledger>,
}

#[derive(Default)]
struct Ledger {
    outcomes: HashMap<CommandKey, OutcomeWatch>,
    /// Keys in the order they were first seen, for expiry.
    order: VecDeque<(Instant, CommandKey)>,
}

impl Router {
    pub fn new(
        devices: impl IntoIterator<Item = (DeviceHandle, Arc<Profile>)>,
        window: Duration,
    ) -> Self {
        let devices = devices
            .into_iter()
            .map(|(h, p)| (h.id().to_string(), (h, p)))
            .collect();
        Self {
            devices,
            window,
            ledger: Mutex::new(Ledger::default()),
        }
    }

    pub fn submit(
        &self,
        key: CommandKey,
        device: &str,
        command: &str,
        args: Map<String, Value>,
    ) -> Result<Submission, Failure> {
        let mut ledger = self.ledger.lock().unwrap_or_else(|p| p.into_inner());
        ledger.expire(self.window);
        if let Some(seen) = ledger.outcomes.get(&key) {
            return Ok(Submission::Duplicate(seen.clone()));
        }

        let Some((handle, profile)) = self.devices.get(device) else {
            let mut known: Vec<&str> = self.devices.keys().map(String::as_str).collect();
            known.sort_unstable();
            return Err(Failure::new(
                ErrorCode::UnknownDevice,
                format!("no device `{device}`; this site has: {}", known.join(", ")),
            ));
        };
        let Some(spec) = profile.commands.get(command) else {
            let known: Vec<&str> = profile.commands.keys().map(String::as_str).collect();
            return Err(Failure::new(
                ErrorCode::UnknownCommand,
                format!(
                    "`{device}` ({}) has no command `{command}`; it has: {}",
                    profile.name,
                    known.join(", ")
                ),
            ));
        };
        spec.check_args(&args)
            .map_err(|why| Failure::new(ErrorCode::InvalidArgs, format!("{command}: {why}")))?;

        let reply = handle.submit(command.to_string(), args)?;
        let (tx, rx) = watch::channel(None);
        ledger.remember(key, rx.clone());
        drop(ledger);
        tokio::spawn(async move {
            let outcome = reply.await.unwrap_or_else(|_| {
                Err(Failure::new(
                    ErrorCode::ShuttingDown,
                    "the gateway stopped before the command finished",
                ))
            });
            tx.send_replace(Some(outcome));
        });
        Ok(Submission::Accepted(rx))
    }
}

impl Ledger {
    fn remember(&mut self, key: CommandKey, outcome: OutcomeWatch) {
        if self.order.len() >= MAX_REMEMBERED
            && let Some((_, oldest)) = self.order.pop_front()
        {
            self.outcomes.remove(&oldest);
        }
        self.order.push_back((Instant::now(), key.clone()));
        self.outcomes.insert(key, outcome);
    }

    fn expire(&mut self, window: Duration) {
        let now = Instant::now();
        while let Some((seen, _)) = self.order.front() {
            if now.duration_since(*seen) < window {
                break;
            }
            if let Some((_, key)) = self.order.pop_front() {
                self.outcomes.remove(&key);
            }
        }
    }
}

/// Waits for a submission's outcome.
pub async fn outcome(mut watch: OutcomeWatch) -> Outcome {
    match watch.wait_for(Option::is_some).await {
        Ok(outcome) => outcome.clone().unwrap_or(Ok(())),
        Err(_) => Err(Failure::new(
            ErrorCode::ShuttingDown,
            "the gateway stopped before the command finished",
        )),
    }
}
