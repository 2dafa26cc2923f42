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
//! Both records ride the journal's group commit (nothing is written before a command is
//! checked); while the disk cannot take them, commands are refused with
//! `storage_unavailable`. Every command, accepted or refused, also goes to the audit log.
//!
//! An outcome carries the seq of the last event its device reported before answering;
//! [`outcome`] returns only once panels may see that seq, so a session that sends the
//! `result` after it has sent every event up to the head sends it after those events.

use std::collections::{BTreeMap, HashMap, VecDeque};
use std::future::Future;
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::{Duration, SystemTime};

use avgate_drivers::{Map, Value};
use serde::{Deserialize, Serialize};
use tokio::sync::watch;
use tokio::time::Instant;
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;
use tracing::warn;

use crate::audit::{ArgsSummary, AuditEntry, AuditLog, AuditQuery, Record};
use crate::auth::Scopes;
use crate::command::{ErrorCode, Failure, Outcome};
use crate::config::{Macro, Profile};
use crate::journal::Journal;
use crate::macros::StepReport;
use crate::runtime::{Answered, DeviceHandle, Reply, Ticket};
use crate::store::{Health, Store, Write, unix_millis};

/// Outcomes remembered at most, whatever the window: a panel that floods the gateway with
/// fresh ids costs bounded memory (about 200 bytes each). Past it new commands are
/// refused, never old ones forgotten: forgetting an id within the window could let its
/// re-send run twice.
const MAX_REMEMBERED: usize = 100_000;
/// Outcomes remembered at most for one panel (token name and `client`): 33 commands a
/// second for the default ten-minute window, far beyond what a person sends. One
/// panel's flood is refused at its own quota and never touches another panel's ids.
const MAX_REMEMBERED_PER_PANEL: usize = 20_000;
/// The same for all the panels of one token together, so a token cannot fill the ledger
/// by inventing `client` names.
const MAX_REMEMBERED_PER_TOKEN: usize = 50_000;

/// Identifies a command across reconnects: who sent it and the id they gave it.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct CommandKey {
    /// The name of the token the panel presented (empty on a site without tokens): two
    /// tokens never share ids, whatever `client` names they claim.
    pub owner: String,
    /// The panel's stable name from `hello.client`, or its session id when it gave none.
    pub client: String,
    pub id: String,
}

/// Marks a stored key that has an owner (keys from sites without tokens have none, and
/// keep the form they always had).
const OWNED: char = '\u{1}';

impl CommandKey {
    fn stored(&self) -> String {
        if self.owner.is_empty() {
            format!("{}\0{}", self.client, self.id)
        } else {
            format!("{OWNED}{}\0{}\0{}", self.owner, self.client, self.id)
        }
    }

    fn from_stored(key: &str) -> Option<CommandKey> {
        let (owner, rest) = match key.strip_prefix(OWNED) {
            Some(owned) => owned.split_once('\0')?,
            None => ("", key),
        };
        let (client, id) = rest.split_once('\0')?;
        Some(CommandKey {
            owner: owner.into(),
            client: client.into(),
            id: id.into(),
        })
    }

    /// Whose quota this command counts against.
    fn panel(&self) -> (String, String) {
        (self.owner.clone(), self.client.clone())
    }
}

/// Who sent a command: what it may do, and what the audit log records.
#[derive(Debug, Clone)]
pub struct Origin {
    pub session: String,
    /// The name the panel's token was issued to, when the site uses tokens.
    pub token: Option<String>,
    /// What the token may control.
    pub scopes: Arc<Scopes>,
    /// The client's address.
    pub peer: Option<String>,
    /// The web page's origin, when a browser sent it.
    pub web_origin: Option<String>,
}

impl Origin {
    /// A command the gateway itself records (one restored after a restart): it may do
    /// what it did, and nothing new.
    fn restored(session: String, token: Option<String>) -> Origin {
        Origin {
            session,
            token,
            scopes: Arc::new(Scopes::parse([]).expect("no scopes parse")),
            peer: None,
            web_origin: None,
        }
    }
}

/// A command's outcome and the seq of the last event its device reported before it.
#[derive(Debug, Clone)]
struct Settled {
    outcome: Outcome,
    after_seq: u64,
    /// A macro run's steps and what each came to.
    steps: Option<Arc<[StepReport]>>,
    /// A device command's time with the device ([`crate::runtime::Answered`]).
    device_time: Option<Duration>,
}

/// A command's outcome as its `result` reports it.
#[derive(Debug, Clone)]
pub struct Report {
    pub outcome: Outcome,
    /// For a macro run: what each step came to (absent for a run answered from the
    /// ledger on disk after a restart, which keeps outcomes only).
    pub steps: Option<Arc<[StepReport]>>,
    /// For a command a device ran: how long the device had it. The rest of the time from
    /// the panel's command to its result is the gateway's own.
    pub device_time: Option<Duration>,
}

/// Becomes ready when the command's outcome is known (see [`outcome`]).
#[derive(Clone)]
pub struct OutcomeWatch {
    settled: watch::Receiver<Option<Settled>>,
    journal: Arc<Journal>,
}

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
    /// The arguments, when short (see [`ArgsSummary`]).
    #[serde(default)]
    args: Map<String, Value>,
}

/// One accepted command on its way through [`execute`].
struct Accepted {
    key: CommandKey,
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
            args: ArgsSummary::of(&self.args).args,
        }
    }

    fn write(&self, at_ms: u64, outcome: Option<Outcome>) -> Write {
        Write::Command {
            key: self.key.stored(),
            first_ms: at_ms,
            json: serde_json::to_string(&self.record(at_ms, outcome)).expect("records serialize"),
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
    journal: Arc<Journal>,
    /// The site's macros and their runs.
    macros: crate::macros::Engine,
    /// Macro runs stop when this is cancelled (the gateway stopping), without an outcome:
    /// their record stays pending, so a re-send after the restart is `outcome_unknown`.
    stopping: CancellationToken,
    /// Where macro runs are spawned, so shutdown waits until they let go of the store.
    runs: TaskTracker,
    /// Scheduled runs counting down, which `keep_on` on `@schedules` cancels.
    warnings: crate::macros::schedule::Warnings,
    /// Who has the room.
    lease: Arc<crate::macros::lease::Lease>,
}

#[derive(Default)]
struct Ledger {
    outcomes: HashMap<CommandKey, OutcomeWatch>,
    /// Keys in the order they were first seen, for expiry.
    order: VecDeque<(Instant, CommandKey)>,
    /// Outcomes remembered per panel (token name, `client`) and per token name.
    per_panel: HashMap<(String, String), usize>,
    per_token: HashMap<String, usize>,
}

type Devices = HashMap<String, (DeviceHandle, Arc<Profile>)>;

impl Router {
    pub fn new(
        devices: impl IntoIterator<Item = (DeviceHandle, Arc<Profile>)>,
        window: Duration,
        journal: Arc<Journal>,
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
            macros: crate::macros::Engine::default(),
            stopping: CancellationToken::new(),
            runs: TaskTracker::new(),
            warnings: crate::macros::schedule::Warnings::default(),
            lease: crate::macros::lease::Lease::new(journal.clone()),
            journal,
        }
    }

    /// Stops macro runs when `stopping` is cancelled; `tasks` tracks them.
    pub fn with_shutdown(mut self, stopping: CancellationToken, tasks: TaskTracker) -> Self {
        self.stopping = stopping;
        self.runs = tasks;
        self
    }

    /// Runs `macros` when a panel asks (see [`Router::submit_macro`]).
    pub fn with_macros(self, macros: BTreeMap<String, Arc<Macro>>) -> Self {
        self.macros.replace(macros);
        self
    }

    /// Macro runs started from now on use `macros` (a reload).
    pub fn replace_macros(&self, macros: BTreeMap<String, Arc<Macro>>) {
        self.macros.replace(macros);
    }

    /// The macros `scopes` may run, by name, with their labels (`/api/macros`).
    pub fn runnable_macros(&self, scopes: &Scopes) -> Vec<crate::macros::Listed> {
        self.macros.listed(scopes)
    }

    pub(crate) fn macros(&self) -> &crate::macros::Engine {
        &self.macros
    }

    pub(crate) fn schedule_warnings(&self) -> &crate::macros::schedule::Warnings {
        &self.warnings
    }

    /// The room's lease under `settings`, with each token's priority (at start and on
    /// every reload; the holder keeps the room).
    pub fn configure_lease(
        &self,
        settings: crate::config::lease::LeaseSettings,
        tokens: &[crate::config::AuthToken],
    ) {
        let priorities = tokens
            .iter()
            .map(|t| (t.name.clone(), t.priority))
            .collect();
        self.lease.configure(settings, priorities);
    }

    /// How long command ids are remembered.
    pub fn dedupe_window(&self) -> Duration {
        self.window
    }

    /// Whether `key` is in the ledger (run, running or refused for good within the window).
    pub fn knows(&self, key: &CommandKey) -> bool {
        let mut ledger = lock(&self.ledger);
        ledger.expire(self.window);
        ledger.outcomes.contains_key(key)
    }

    pub(crate) fn journal(&self) -> &Journal {
        &self.journal
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
                warn!(
                    client = %crate::hub::Untrusted(&key.client),
                    id = %crate::hub::Untrusted(&key.id),
                    "command was running when the gateway stopped: its outcome is unknown"
                );
                let failure = Failure::new(
                    ErrorCode::OutcomeUnknown,
                    "the gateway stopped while this command was running, so it may or may not have reached the device; check the device's state before sending it again with a new id",
                );
                let origin = Origin::restored(record.session.clone(), record.token.clone());
                self.audit_refusal(
                    &origin,
                    &key,
                    &record.device,
                    &record.command,
                    &record.args,
                    &failure,
                );
                record.outcome = Some(Err(failure));
                let json = serde_json::to_string(&record).expect("records serialize");
                store.enqueue(Write::Command {
                    key: stored.clone(),
                    first_ms: record.at_ms,
                    json,
                });
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
            let settled = Settled {
                outcome,
                after_seq: 0,
                steps: None,
                device_time: None,
            };
            let watch = OutcomeWatch {
                settled: watch::channel(Some(settled)).1,
                journal: self.journal.clone(),
            };
            ledger.restore(seen, key, watch);
        }
        drop(ledger);
        self.store = Some(store);
        self
    }

    /// A command's outcome to come: the sender that settles it and the watch the ledger
    /// keeps.
    fn pending_outcome(&self) -> (watch::Sender<Option<Settled>>, OutcomeWatch) {
        let (tx, rx) = watch::channel(None);
        let watch = OutcomeWatch {
            settled: rx,
            journal: self.journal.clone(),
        };
        (tx, watch)
    }

    /// Audits a command refused before it was queued (the refusal is the caller's to
    /// return).
    fn audit_refusal(
        &self,
        origin: &Origin,
        key: &CommandKey,
        device: &str,
        command: &str,
        args: &Map<String, Value>,
        failure: &Failure,
    ) {
        self.audit.record(audit_record(
            origin,
            key,
            device,
            command,
            args,
            Err(failure),
        ));
    }

    /// Checks and queues a panel's command; see [`Submission`]. It needs the room's lease
    /// (see [`crate::macros::lease`]).
    pub fn submit(
        &self,
        origin: &Origin,
        key: CommandKey,
        device: &str,
        command: &str,
        args: Map<String, Value>,
    ) -> Result<Submission, Failure> {
        let lease = Leased::from_panel(&key);
        self.submit_checked(origin, key, device, command, args, lease)
    }

    /// Like [`Router::submit`], for a step of a macro run: the run took the lease.
    pub(crate) fn submit_step(
        &self,
        origin: &Origin,
        key: CommandKey,
        device: &str,
        command: &str,
        args: Map<String, Value>,
    ) -> Result<Submission, Failure> {
        self.submit_checked(origin, key, device, command, args, Leased::No)
    }

    fn submit_checked(
        &self,
        origin: &Origin,
        key: CommandKey,
        device: &str,
        command: &str,
        args: Map<String, Value>,
        lease: Leased,
    ) -> Result<Submission, Failure> {
        if !origin.scopes.can_control(device, command) {
            let failure = Failure::new(
                ErrorCode::Forbidden,
                format!(
                    "this panel's token ({}) may not send `{command}` to `{device}`; ask the integrator for a token with control of it",
                    origin.token.as_deref().unwrap_or("none")
                ),
            );
            warn!(
                token = origin.token.as_deref().unwrap_or(""),
                peer = origin.peer.as_deref().unwrap_or(""),
                device = %crate::hub::Untrusted(device),
                command = %crate::hub::Untrusted(command),
                "command refused: outside the token's control scopes"
            );
            self.audit_refusal(origin, &key, device, command, &args, &failure);
            return Err(failure);
        }
        let mut ledger = lock(&self.ledger);
        ledger.expire(self.window);
        if let Some(seen) = ledger.outcomes.get(&key) {
            metrics::counter!(crate::metrics::COMMANDS_DEDUPLICATED).increment(1);
            return Ok(Submission::Duplicate(seen.clone()));
        }
        if device == crate::macros::schedule::DEVICE {
            let act = |key: &CommandKey| self.warnings.command(&self.journal, key, command, &args);
            return self.submit_to_gateway(ledger, origin, key, device, command, &args, act);
        }
        if device == crate::macros::lease::DEVICE {
            let act = |key: &CommandKey| self.lease.command(key, command, &args);
            return self.submit_to_gateway(ledger, origin, key, device, command, &args, act);
        }
        let checked = self
            .check(origin, device, command, &args)
            .and_then(|handle| match self.store.as_ref().map(|s| s.health()) {
                Some(Health::Failing(why)) => Err(storage_unavailable(&why)),
                _ => Ok(handle),
            })
            .and_then(|handle| match lease {
                Leased::Needed => self.lease.claim(&key).map(|()| handle),
                Leased::No => Ok(handle),
            });
        let handle = match checked {
            Ok(handle) => handle,
            Err(failure) => {
                crate::metrics::command_finished(failure.code.as_str());
                self.audit_refusal(origin, &key, device, command, &args, &failure);
                return Err(failure);
            }
        };
        let (tx, watch) = self.pending_outcome();
        if let Err(failure) = ledger.remember(Instant::now(), key.clone(), watch.clone()) {
            drop(ledger);
            self.audit_refusal(origin, &key, device, command, &args, &failure);
            return Err(failure);
        }
        drop(ledger);

        let ticket = handle.ticket();
        let finish = Finish {
            store: self.store.clone(),
            audit: self.audit.clone(),
            journal: self.journal.clone(),
            accepted: Accepted {
                key,
                origin: origin.clone(),
                device: device.to_string(),
                command: command.to_string(),
                args,
            },
            at_ms: unix_millis(SystemTime::now()),
            tx,
        };
        match &self.store {
            // Nothing to write down first: into the device's queue now. The device's link
            // task settles it when the device answers, so no task stands between the
            // answer and the panel's session.
            None => finish.queue_on(&handle, ticket),
            // Written down as pending first, so a crash can never lead to a silent second
            // run; the outcome's record then rides the next group commit.
            Some(store) => {
                let store = store.clone();
                tokio::spawn(async move {
                    match pending_written(&store, &finish.accepted, finish.at_ms).await {
                        Ok(()) => finish.queue_on(&handle, ticket),
                        Err(failure) => finish.settle(Answered {
                            outcome: Err(failure),
                            device_time: Duration::ZERO,
                        }),
                    }
                });
            }
        }
        Ok(Submission::Accepted(watch))
    }

    /// A command on one of the gateway's own pseudo-devices (`@schedules`, `@room`):
    /// done at once (`act`), then remembered, written down and audited like a device
    /// command.
    #[allow(clippy::too_many_arguments)]
    fn submit_to_gateway(
        &self,
        mut ledger: MutexGuard<'_, Ledger>,
        origin: &Origin,
        key: CommandKey,
        device: &str,
        command: &str,
        args: &Map<String, Value>,
        act: impl FnOnce(&CommandKey) -> Result<(), Failure>,
    ) -> Result<Submission, Failure> {
        let done = match self.store.as_ref().map(|s| s.health()) {
            Some(Health::Failing(why)) => Err(storage_unavailable(&why)),
            _ => act(&key),
        };
        let remembered = done.and_then(|()| {
            let (tx, watch) = self.pending_outcome();
            ledger.remember(Instant::now(), key.clone(), watch.clone())?;
            tx.send_replace(Some(Settled {
                outcome: Ok(()),
                after_seq: self.journal.device_seq(device),
                steps: None,
                device_time: None,
            }));
            Ok(watch)
        });
        drop(ledger);
        crate::metrics::command_finished(match &remembered {
            Ok(_) => "ok",
            Err(failure) => failure.code.as_str(),
        });
        self.audit.record(audit_record(
            origin,
            &key,
            device,
            command,
            args,
            remembered.as_ref().map(|_| ()),
        ));
        let watch = remembered?;
        if let Some(store) = &self.store {
            let accepted = Accepted {
                key,
                origin: origin.clone(),
                device: device.to_string(),
                command: command.to_string(),
                args: args.clone(),
            };
            store.enqueue(accepted.write(unix_millis(SystemTime::now()), Some(Ok(()))));
        }
        Ok(Submission::Accepted(watch))
    }

    /// Admits a run of macro `name` as the command `key`: deduplicated, written down and
    /// audited like a device command (device `@macros`, command the macro's name), then
    /// run step by step ([`crate::macros::run`]), each step a command of its own.
    pub fn submit_macro(
        self: &Arc<Self>,
        origin: &Origin,
        key: CommandKey,
        name: &str,
    ) -> Result<Submission, Failure> {
        let device = crate::macros::DEVICE;
        let no_args = Map::new();
        let refuse = |failure: Failure| {
            crate::metrics::command_finished(failure.code.as_str());
            self.audit_refusal(origin, &key, device, name, &no_args, &failure);
            Err(failure)
        };
        let mut ledger = lock(&self.ledger);
        ledger.expire(self.window);
        if let Some(seen) = ledger.outcomes.get(&key) {
            metrics::counter!(crate::metrics::COMMANDS_DEDUPLICATED).increment(1);
            return Ok(Submission::Duplicate(seen.clone()));
        }
        if let Some(Health::Failing(why)) = self.store.as_ref().map(|s| s.health()) {
            drop(ledger);
            return refuse(storage_unavailable(&why));
        }
        if let Some((step_device, step_command)) = self.macros.forbidden_step(name, &origin.scopes)
        {
            drop(ledger);
            return refuse(Failure::new(
                ErrorCode::Forbidden,
                format!(
                    "this panel's token ({}) may not send `{step_command}` to `{step_device}`, a step of macro `{name}`; nothing was run or cancelled; ask the integrator for a token with control of it",
                    origin.token.as_deref().unwrap_or("none")
                ),
            ));
        }
        if Leased::from_panel(&key) == Leased::Needed
            && let Err(failure) = self.lease.claim(&key)
        {
            drop(ledger);
            return refuse(failure);
        }
        let admission = match self.macros.admit(name, &crate::macros::who(&key, name)) {
            Ok(admission) => admission,
            Err(failure) => {
                drop(ledger);
                return refuse(failure);
            }
        };
        let (tx, watch) = self.pending_outcome();
        if let Err(failure) = ledger.remember(Instant::now(), key.clone(), watch.clone()) {
            drop(ledger);
            self.macros.finish(&admission);
            return refuse(failure);
        }
        drop(ledger);
        let router = self.clone();
        let accepted = Accepted {
            key,
            origin: origin.clone(),
            device: device.to_string(),
            command: name.to_string(),
            args: no_args,
        };
        let stopping = self.stopping.clone();
        self.runs.spawn(async move {
            let mut steps = None;
            let work = async {
                let (outcome, reports) =
                    crate::macros::run(&router, &accepted.origin, &accepted.key, &admission).await;
                steps = Some(Arc::from(reports));
                outcome
            };
            let outcome = tokio::select! {
                outcome = recorded(router.store.as_ref(), &accepted, work) => outcome,
                // The gateway is stopping mid-run: no outcome is written, so the record
                // stays pending and the next start reports it `outcome_unknown`. Waiting
                // panels get `shutting_down` (the sender is dropped).
                _ = stopping.cancelled() => return,
            };
            router.macros.finish(&admission);
            if outcome.is_ok() {
                router.lease.macro_done(&admission.run.name);
            }
            let after_seq = router.journal.device_seq(device);
            let detail = Detail {
                steps,
                device_time: None,
            };
            settle(&router.audit, &accepted, outcome, after_seq, detail, &tx);
        });
        Ok(Submission::Accepted(watch))
    }

    fn check(
        &self,
        origin: &Origin,
        device: &str,
        command: &str,
        args: &Map<String, Value>,
    ) -> Result<DeviceHandle, Failure> {
        let devices = lock(&self.devices).clone();
        let Some((handle, profile)) = devices.get(device) else {
            // Only the devices this token may see: the list must not leak the others.
            let mut known: Vec<&str> = devices
                .keys()
                .map(String::as_str)
                .filter(|d| origin.scopes.can_see_device(d))
                .collect();
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
        handle.check(command, args)?;
        Ok(handle.clone())
    }

    /// One page of the audit log, newest first.
    pub async fn audit_log(&self, query: &AuditQuery<'_>) -> Vec<AuditEntry> {
        self.audit.query(query).await
    }
}

/// Whether a command needs the room's lease.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Leased {
    /// A panel's: it takes or refreshes the lease, or is refused with `in_use`.
    Needed,
    /// A macro step (its run took the lease) or a run the gateway started (a schedule).
    No,
}

impl Leased {
    fn from_panel(key: &CommandKey) -> Leased {
        if key.owner.is_empty() && key.client == crate::macros::schedule::CLIENT {
            Leased::No
        } else {
            Leased::Needed
        }
    }
}

fn storage_unavailable(why: &str) -> Failure {
    Failure::new(
        ErrorCode::StorageUnavailable,
        format!(
            "the command was not run because it cannot be recorded on disk ({why}); the gateway retries the disk by itself: send it again with a new id once /healthz shows the journal ok"
        ),
    )
}

/// What a result carries besides its outcome.
struct Detail {
    steps: Option<Arc<[StepReport]>>,
    device_time: Option<Duration>,
}

/// A finished command counted, audited and handed to whoever waits for its `result`,
/// which goes out once the journal has committed up to `after_seq`.
fn settle(
    audit: &AuditLog,
    accepted: &Accepted,
    outcome: Outcome,
    after_seq: u64,
    detail: Detail,
    tx: &watch::Sender<Option<Settled>>,
) {
    crate::metrics::command_finished(match &outcome {
        Ok(_) => "ok",
        Err(failure) => failure.code.as_str(),
    });
    audit.record(audit_record(
        &accepted.origin,
        &accepted.key,
        &accepted.device,
        &accepted.command,
        &accepted.args,
        outcome.as_ref().map(|_| ()),
    ));
    tx.send_replace(Some(Settled {
        outcome,
        after_seq,
        steps: detail.steps,
        device_time: detail.device_time,
    }));
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
        peer: origin.peer.as_deref(),
        origin: origin.web_origin.as_deref(),
        id: &key.id,
        device,
        command,
        args,
        outcome,
    }
}

/// Runs one accepted command (`work`): written down as pending first (so a crash can
/// never lead to a silent second run), then run, then its outcome written down. Both
/// records ride the journal's group commit; only the first is waited for.
async fn recorded(
    store: Option<&Arc<Store>>,
    accepted: &Accepted,
    work: impl Future<Output = Outcome>,
) -> Outcome {
    let at_ms = unix_millis(SystemTime::now());
    if let Some(store) = store
        && let Err(failure) = pending_written(store, accepted, at_ms).await
    {
        // Written once the disk is back, so the record never reads as pending.
        store.enqueue(accepted.write(at_ms, Some(Err(failure.clone()))));
        return Err(failure);
    }
    let outcome = work.await;
    if let Some(store) = store {
        // Not waited for: if it never reaches the disk, a re-send after a restart reports
        // outcome_unknown, never a second run.
        store.enqueue(accepted.write(at_ms, Some(outcome.clone())));
    }
    outcome
}

/// Writes `accepted` down as pending and waits until it is on disk. If the disk fails,
/// that failure is the command's outcome (the caller writes it down: once the disk is
/// back, so the record never reads as pending).
async fn pending_written(store: &Store, accepted: &Accepted, at_ms: u64) -> Result<(), Failure> {
    let ticket = store.enqueue(accepted.write(at_ms, None));
    match store.written(ticket).await {
        Ok(()) => Ok(()),
        Err(Health::Failing(why)) => Err(storage_unavailable(&why)),
        Err(Health::Ok) => Err(storage_unavailable("the journal stopped")),
    }
}

/// What settles an accepted device command once its device answered (or it was refused):
/// the outcome's record, the audit entry, and the outcome for the panel.
struct Finish {
    store: Option<Arc<Store>>,
    audit: Arc<AuditLog>,
    journal: Arc<Journal>,
    accepted: Accepted,
    /// When it was accepted, the key of its record.
    at_ms: u64,
    tx: watch::Sender<Option<Settled>>,
}

impl Finish {
    /// Queues the command on its device, in its place in the line (`ticket`); whatever
    /// happens to it then settles it.
    fn queue_on(self, handle: &DeviceHandle, ticket: Ticket) {
        let (id, command, args) = (
            self.accepted.key.id.clone(),
            self.accepted.command.clone(),
            self.accepted.args.clone(),
        );
        handle.submit(
            ticket,
            &id,
            command,
            args,
            Reply::new(move |answered| self.settle(answered)),
        );
    }

    fn settle(self, answered: Answered) {
        if let Some(store) = &self.store {
            // Not waited for: if it never reaches the disk, a re-send after a restart
            // reports outcome_unknown, never a second run.
            store.enqueue(
                self.accepted
                    .write(self.at_ms, Some(answered.outcome.clone())),
            );
        }
        // The device's events up to its answer are recorded by now: the result waits for
        // them (see [`outcome`]).
        let after_seq = self.journal.device_seq(&self.accepted.device);
        let detail = Detail {
            steps: None,
            device_time: Some(answered.device_time),
        };
        settle(
            &self.audit,
            &self.accepted,
            answered.outcome,
            after_seq,
            detail,
            &self.tx,
        );
    }
}

impl Ledger {
    /// Remembers a new command, unless its panel, its token or the whole ledger already
    /// holds as many as they may: then the command is refused, and nothing remembered is
    /// forgotten early.
    fn remember(
        &mut self,
        seen: Instant,
        key: CommandKey,
        outcome: OutcomeWatch,
    ) -> Result<(), Failure> {
        let refuse = |what: String| {
            Failure::new(
                ErrorCode::RateLimited,
                format!(
                    "{what} within the dedupe window; wait a moment before sending more (ids are remembered so a re-sent command never runs twice)"
                ),
            )
        };
        let panel = key.panel();
        if self.per_panel.get(&panel).copied().unwrap_or(0) >= MAX_REMEMBERED_PER_PANEL {
            return Err(refuse(format!(
                "this panel sent {MAX_REMEMBERED_PER_PANEL} commands"
            )));
        }
        if !key.owner.is_empty()
            && self.per_token.get(&key.owner).copied().unwrap_or(0) >= MAX_REMEMBERED_PER_TOKEN
        {
            return Err(refuse(format!(
                "the panels of this token sent {MAX_REMEMBERED_PER_TOKEN} commands"
            )));
        }
        if self.order.len() >= MAX_REMEMBERED {
            return Err(refuse(format!(
                "the gateway holds {MAX_REMEMBERED} commands from all panels"
            )));
        }
        self.restore(seen, key, outcome);
        Ok(())
    }

    /// Remembers a command whatever the quotas (one restored from the store).
    fn restore(&mut self, seen: Instant, key: CommandKey, outcome: OutcomeWatch) {
        *self.per_panel.entry(key.panel()).or_default() += 1;
        if !key.owner.is_empty() {
            *self.per_token.entry(key.owner.clone()).or_default() += 1;
        }
        self.order.push_back((seen, key.clone()));
        self.outcomes.insert(key, outcome);
    }

    /// Drops what is older than the window (the store prunes its records by the same age).
    fn expire(&mut self, window: Duration) {
        let now = Instant::now();
        while let Some((seen, _)) = self.order.front() {
            if now.duration_since(*seen) < window {
                break;
            }
            if let Some((_, key)) = self.order.pop_front() {
                self.outcomes.remove(&key);
                decrement(&mut self.per_panel, &key.panel());
                if !key.owner.is_empty() {
                    decrement(&mut self.per_token, &key.owner);
                }
            }
        }
    }
}

fn decrement<K: std::hash::Hash + Eq>(counts: &mut HashMap<K, usize>, key: &K) {
    if let Some(count) = counts.get_mut(key) {
        *count -= 1;
        if *count == 0 {
            counts.remove(key);
        }
    }
}

fn lock<T>(mutex: &Mutex<T>) -> MutexGuard<'_, T> {
    mutex.lock().unwrap_or_else(|p| p.into_inner())
}

/// Waits for a submission's outcome, and then until panels may see every event its
/// device reported before answering: a session that sends the journal up to the head
/// before the `result` sends the result after those events, in durable mode too.
pub async fn outcome(watch: OutcomeWatch) -> Outcome {
    report(watch).await.outcome
}

/// Like [`outcome`], with the steps of a macro run.
pub async fn report(mut watch: OutcomeWatch) -> Report {
    let settled = match watch.settled.wait_for(Option::is_some).await {
        Ok(settled) => settled.clone(),
        Err(_) => None,
    };
    let Some(Settled {
        outcome,
        after_seq,
        steps,
        device_time,
    }) = settled
    else {
        return Report {
            outcome: Err(Failure::new(
                ErrorCode::ShuttingDown,
                "the gateway stopped before the command finished",
            )),
            steps: None,
            device_time: None,
        };
    };
    watch.journal.wait_for(after_seq).await;
    Report {
        outcome,
        steps,
        device_time,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn key(owner: &str, client: &str, id: usize) -> CommandKey {
        CommandKey {
            owner: owner.into(),
            client: client.into(),
            id: id.to_string(),
        }
    }

    fn done(journal: &Arc<Journal>) -> OutcomeWatch {
        let settled = Settled {
            outcome: Ok(()),
            after_seq: 0,
            steps: None,
            device_time: None,
        };
        OutcomeWatch {
            settled: watch::channel(Some(settled)).1,
            journal: journal.clone(),
        }
    }

    #[tokio::test]
    async fn a_flood_from_one_panel_never_pushes_out_another_panels_ids() {
        let journal = Arc::new(Journal::in_memory(10, Vec::<String>::new()));
        let mut ledger = Ledger::default();
        let now = Instant::now();
        ledger
            .remember(now, key("lobby", "lobby-panel", 7), done(&journal))
            .unwrap();
        let mut refused = 0;
        for i in 0..100_000 {
            if let Err(failure) = ledger.remember(now, key("guest", "flood", i), done(&journal)) {
                assert_eq!(failure.code, ErrorCode::RateLimited);
                refused += 1;
            }
        }
        assert_eq!(refused, 100_000 - MAX_REMEMBERED_PER_PANEL);
        assert!(
            ledger
                .outcomes
                .contains_key(&key("lobby", "lobby-panel", 7)),
            "the victim's id is still remembered, so its re-send is a duplicate"
        );
        // A token inventing client names is held at its own quota too.
        let mut more = 0;
        for i in 0..100_000 {
            let client = format!("flood-{}", i / 1000);
            if ledger
                .remember(now, key("guest", &client, i), done(&journal))
                .is_ok()
            {
                more += 1;
            }
        }
        assert_eq!(more + MAX_REMEMBERED_PER_PANEL, MAX_REMEMBERED_PER_TOKEN);
        assert!(
            ledger
                .outcomes
                .contains_key(&key("lobby", "lobby-panel", 7))
        );
        ledger
            .remember(now, key("lobby", "lobby-panel", 8), done(&journal))
            .unwrap();
    }

    #[tokio::test(start_paused = true)]
    async fn quotas_free_up_as_the_window_passes() {
        let journal = Arc::new(Journal::in_memory(10, Vec::<String>::new()));
        let mut ledger = Ledger::default();
        for i in 0..MAX_REMEMBERED_PER_PANEL {
            ledger
                .remember(Instant::now(), key("", "p", i), done(&journal))
                .unwrap();
        }
        assert!(
            ledger
                .remember(Instant::now(), key("", "p", 0xffff_ffff), done(&journal))
                .is_err()
        );
        tokio::time::advance(Duration::from_secs(601)).await;
        ledger.expire(Duration::from_secs(600));
        assert!(ledger.per_panel.is_empty() && ledger.outcomes.is_empty());
        ledger
            .remember(Instant::now(), key("", "p", 0xffff_ffff), done(&journal))
            .unwrap();
    }

    #[test]
    fn stored_keys_keep_their_owner_and_read_old_ones() {
        let owned = key("lobby", "lobby-panel", 3);
        assert_eq!(CommandKey::from_stored(&owned.stored()), Some(owned));
        let open = key("", "lobby-panel", 4);
        assert_eq!(open.stored(), "lobby-panel\x004");
        assert_eq!(CommandKey::from_stored("lobby-panel\x004"), Some(open));
    }
}
