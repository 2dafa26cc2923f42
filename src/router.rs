//! The router: from a panel's command to a device's queue, exactly once.
//!
//! It checks the command against the device's profile, drops a command id it has seen
//! within the dedupe window (the caller gets the stored outcome instead), queues the rest
//! on the device, and keeps each outcome for the window so a panel that re-sends after a
//! reconnect learns what happened without driving the device twice.
//!
//! With a store, a command is written down as pending before it reaches the device and
//! again with its outcome, so the ledger survives a restart: a re-sent id gets the stored
//! outcome, or `outcome_unknown` if the gateway died while it ran, never a second run.
//! Every command, accepted or refused, also goes to the audit log.

use std::collections::{HashMap, VecDeque};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::{Duration, SystemTime};

use avgate_drivers::{Map, Value};
use serde::{Deserialize, Serialize};
use tokio::sync::watch;
use tokio::time::Instant;
use tracing::warn;

use crate::audit::{AuditEntry, AuditLog, Record};
use crate::command::{ErrorCode, Failure, Outcome};
use crate::config::Profile;
use crate::runtime::{DeviceHandle, Ticket};
use crate::store::{Store, unix_millis};

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

impl CommandKey {
    fn stored(&self) -> String {
        format!("{}\0{}", self.client, self.id)
    }

    fn from_stored(key: &str) -> Option<CommandKey> {
        let (client, id) = key.split_once('\0')?;
        Some(CommandKey {
            client: client.into(),
            id: id.into(),
        })
    }
}

/// Who sent a command, for the audit log.
#[derive(Debug, Clone, Default)]
pub struct Origin {
    pub session: String,
    /// The name the panel's token was issued to, when the site uses tokens.
    pub token: Option<String>,
}

/// Becomes `Some` when the command's outcome is known.
pub type OutcomeWatch = watch::Receiver<Option<Outcome>>;

pub enum Submission {
    /// Queued on the device for the first time.
    Accepted(OutcomeWatch),
    /// This id was seen within the window; the device is not driven again.
    Duplicate(OutcomeWatch),
}

/// A command's durable record.
#[derive(Serialize, Deserialize)]
struct CommandRecord {
    at_ms: u64,
    /// `None` while it runs.
    outcome: Option<Result<(), Failure>>,
    /// What the audit log needs if the gateway dies before the outcome is known.
    #[serde(default)]
    session: String,
    #[serde(default)]
    token: Option<String>,
    #[serde(default)]
    device: String,
    #[serde(default)]
    command: String,
    #[serde(default)]
    args: Map<String, Value>,
}

/// One accepted command on its way through [`execute`].
struct Accepted {
    key: CommandKey,
    /// Its place in the device's line, taken as it was accepted.
    ticket: Ticket,
    origin: Origin,
    device: String,
    command: String,
    args: Map<String, Value>,
}

impl Accepted {
    fn record(&self, at_ms: u64, outcome: Option<Outcome>) -> CommandRecord {
        CommandRecord {
            at_ms,
            outcome,
            session: self.origin.session.clone(),
            token: self.origin.token.clone(),
            device: self.device.clone(),
            command: self.command.clone(),
            args: self.args.clone(),
        }
    }
}

pub struct Router {
    /// Replaced whole by a reload ([`Router::replace_devices`]).
    devices: Mutex<Arc<Devices>>,
    window: Duration,
    ledger: Mutex<Ledger>,
    audit: Arc<AuditLog>,
    store: Option<Arc<Store>>,
}

#[derive(Default)]
struct Ledger {
    outcomes: HashMap<CommandKey, OutcomeWatch>,
    /// Keys in the order they were first seen, for expiry.
    order: VecDeque<(Instant, CommandKey)>,
}

type Devices = HashMap<String, (DeviceHandle, Arc<Profile>)>;

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
            devices: Mutex::new(Arc::new(devices)),
            window,
            ledger: Mutex::default(),
            audit: Arc::default(),
            store: None,
        }
    }

    /// Routes commands to `devices` from now on; commands already queued stay where they
    /// are. The ledger is kept, so a re-sent id is still answered from it.
    pub fn replace_devices(&self, devices: impl IntoIterator<Item = (DeviceHandle, Arc<Profile>)>) {
        let devices = devices
            .into_iter()
            .map(|(h, p)| (h.id().to_string(), (h, p)))
            .collect();
        *lock(&self.devices) = Arc::new(devices);
    }

    /// Keeps the ledger and the audit log in `store`, starting from what it held.
    pub fn with_store(
        mut self,
        store: Arc<Store>,
        commands: &[(String, String)],
        audit: &[(u64, String)],
    ) -> Self {
        self.audit = Arc::new(AuditLog::durable(store.clone(), audit));
        let now_ms = unix_millis(SystemTime::now());
        let mut restored: Vec<(u64, CommandKey, Outcome)> = Vec::new();
        for (stored, json) in commands {
            let (Some(key), Ok(mut record)) = (
                CommandKey::from_stored(stored),
                serde_json::from_str::<CommandRecord>(json),
            ) else {
                continue;
            };
            if record.outcome.is_none() {
                // It was running when the gateway died: say so once, in the log, the audit
                // and the ledger, so the next restart does not report it again.
                warn!(client = %key.client, id = %key.id, "command was running when the gateway stopped: its outcome is unknown");
                let failure = Failure::new(
                    ErrorCode::OutcomeUnknown,
                    "the gateway stopped while this command was running, so it may or may not have reached the device; check the device's state before sending it again with a new id",
                );
                let origin = Origin {
                    session: record.session.clone(),
                    token: record.token.clone(),
                };
                self.audit.record(audit_record(
                    &origin,
                    &key,
                    &record.device,
                    &record.command,
                    &record.args,
                    Err(&failure),
                ));
                record.outcome = Some(Err(failure));
                let json = serde_json::to_string(&record).expect("records serialize");
                if let Err(e) = store.put_command(stored, &json) {
                    warn!("{e}");
                }
            }
            let outcome = record.outcome.unwrap_or(Ok(()));
            restored.push((record.at_ms, key, outcome));
        }
        restored.sort_by_key(|(at, _, _)| *at);
        let mut ledger = lock(&self.ledger);
        for (at_ms, key, outcome) in restored {
            let age = Duration::from_millis(now_ms.saturating_sub(at_ms));
            if age >= self.window {
                continue;
            }
            let seen = Instant::now().checked_sub(age).unwrap_or_else(Instant::now);
            ledger.remember_at(seen, key, watch::channel(Some(outcome)).1);
        }
        drop(ledger);
        self.store = Some(store);
        self
    }

    /// Checks and queues a command; see [`Submission`].
    pub fn submit(
        &self,
        origin: &Origin,
        key: CommandKey,
        device: &str,
        command: &str,
        args: Map<String, Value>,
    ) -> Result<Submission, Failure> {
        let mut ledger = lock(&self.ledger);
        let expired = ledger.expire(self.window);
        self.forget(expired);
        if let Some(seen) = ledger.outcomes.get(&key) {
            metrics::counter!(crate::metrics::COMMANDS_DEDUPLICATED).increment(1);
            return Ok(Submission::Duplicate(seen.clone()));
        }
        let handle = match self.check(device, command, &args) {
            Ok(handle) => handle,
            Err(failure) => {
                crate::metrics::command_finished(failure.code.as_str());
                self.audit.record(audit_record(
                    origin,
                    &key,
                    device,
                    command,
                    &args,
                    Err(&failure),
                ));
                return Err(failure);
            }
        };
        let (tx, rx) = watch::channel(None);
        ledger.remember_at(Instant::now(), key.clone(), rx.clone());
        drop(ledger);

        let store = self.store.clone();
        let audit = self.audit.clone();
        let accepted = Accepted {
            ticket: handle.ticket(),
            key,
            origin: origin.clone(),
            device: device.to_string(),
            command: command.to_string(),
            args,
        };
        tokio::spawn(async move {
            let outcome = execute(store.as_ref(), &handle, &accepted).await;
            crate::metrics::command_finished(match &outcome {
                Ok(_) => "ok",
                Err(failure) => failure.code.as_str(),
            });
            let Accepted {
                key,
                origin,
                device,
                command,
                args,
                ..
            } = &accepted;
            audit.record(audit_record(
                origin,
                key,
                device,
                command,
                args,
                outcome.as_ref().map(|_| ()),
            ));
            tx.send_replace(Some(outcome));
        });
        Ok(Submission::Accepted(rx))
    }

    fn check(
        &self,
        device: &str,
        command: &str,
        args: &Map<String, Value>,
    ) -> Result<DeviceHandle, Failure> {
        let devices = lock(&self.devices).clone();
        let Some((handle, profile)) = devices.get(device) else {
            let mut known: Vec<&str> = devices.keys().map(String::as_str).collect();
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
        spec.check_args(args)
            .map_err(|why| Failure::new(ErrorCode::InvalidArgs, format!("{command}: {why}")))?;
        Ok(handle.clone())
    }

    /// The newest audit entries first, optionally for one device and since a time.
    pub fn audit_log(
        &self,
        device: Option<&str>,
        since: Option<SystemTime>,
        limit: usize,
    ) -> Vec<AuditEntry> {
        self.audit.query(device, since, limit)
    }

    fn forget(&self, expired: Vec<CommandKey>) {
        if let (Some(store), false) = (&self.store, expired.is_empty()) {
            let store = store.clone();
            let keys: Vec<String> = expired.iter().map(CommandKey::stored).collect();
            tokio::task::spawn_blocking(move || store.remove_commands(&keys));
        }
    }
}

fn audit_record<'a>(
    origin: &'a Origin,
    key: &'a CommandKey,
    device: &'a str,
    command: &'a str,
    args: &'a Map<String, Value>,
    outcome: Result<(), &'a Failure>,
) -> Record<'a> {
    Record {
        session: &origin.session,
        client: &key.client,
        token: origin.token.as_deref(),
        id: &key.id,
        device,
        command,
        args,
        outcome,
    }
}

/// Runs one accepted command: written down as pending first (so a crash can never lead
/// to a silent second run), then queued on the device, then its outcome written down.
async fn execute(
    store: Option<&Arc<Store>>,
    handle: &DeviceHandle,
    accepted: &Accepted,
) -> Outcome {
    let at_ms = unix_millis(SystemTime::now());
    if let Some(store) = store
        && let Err(e) = persist(store, &accepted.key, &accepted.record(at_ms, None)).await
    {
        return Err(Failure::new(
            ErrorCode::Internal,
            format!("the command was not run because it could not be recorded: {e}"),
        ));
    }
    let outcome = match handle.submit(
        accepted.ticket,
        &accepted.key.id,
        accepted.command.clone(),
        accepted.args.clone(),
    ) {
        Ok(reply) => reply.await.unwrap_or_else(|_| {
            Err(Failure::new(
                ErrorCode::ShuttingDown,
                "the gateway stopped before the command finished",
            ))
        }),
        Err(failure) => Err(failure),
    };
    if let Some(store) = store
        && let Err(e) = persist(
            store,
            &accepted.key,
            &accepted.record(at_ms, Some(outcome.clone())),
        )
        .await
    {
        warn!(id = %accepted.key.id, "outcome not recorded: {e}; a re-send after a restart will report outcome_unknown");
    }
    outcome
}

async fn persist(
    store: &Arc<Store>,
    key: &CommandKey,
    record: &CommandRecord,
) -> Result<(), String> {
    let (store, key, json) = (
        store.clone(),
        key.stored(),
        serde_json::to_string(record).expect("records serialize"),
    );
    match tokio::task::spawn_blocking(move || store.put_command(&key, &json)).await {
        Ok(Ok(())) => Ok(()),
        Ok(Err(e)) => Err(e.to_string()),
        Err(e) => Err(e.to_string()),
    }
}

impl Ledger {
    fn remember_at(&mut self, seen: Instant, key: CommandKey, outcome: OutcomeWatch) {
        if self.order.len() >= MAX_REMEMBERED
            && let Some((_, oldest)) = self.order.pop_front()
        {
            self.outcomes.remove(&oldest);
        }
        self.order.push_back((seen, key.clone()));
        self.outcomes.insert(key, outcome);
    }

    /// Drops what is older than the window; returns the keys dropped.
    fn expire(&mut self, window: Duration) -> Vec<CommandKey> {
        let now = Instant::now();
        let mut expired = Vec::new();
        while let Some((seen, _)) = self.order.front() {
            if now.duration_since(*seen) < window {
                break;
            }
            if let Some((_, key)) = self.order.pop_front() {
                self.outcomes.remove(&key);
                expired.push(key);
            }
        }
        expired
    }
}

fn lock<T>(mutex: &Mutex<T>) -> MutexGuard<'_, T> {
    mutex.lock().unwrap_or_else(|p| p.into_inner())
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
