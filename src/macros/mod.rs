//! Room macros: running a site's `[macros.NAME]` as one command.
//!
//! A run is admitted by the router like a command (its id deduplicated, written down
//! before it runs, its outcome kept for the dedupe window), then its steps run here in
//! order. Each device step is an ordinary command submitted through the router under the
//! sender's origin, so scopes, dedupe and audit apply to it; its id is the run's id with
//! `#` and the step number (`room-on-7#2`, `room-on-7#5.1` inside a nested macro).
//!
//! Progress is journaled on the pseudo-device [`DEVICE`], one point per macro, so every
//! panel sees it in order with the events the steps cause. Waits read the journal's
//! committed state and wake on its head ([`Journal::watch`]): no polling.
//!
//! This module owns who is running: one run per macro under its run mode, one per group.
//! Cancelling a run stops it between steps or during a wait; a device command already
//! sent is not recalled (a projector told to power on powers on).

use std::collections::BTreeMap;
use std::future::Future;
use std::pin::Pin;
use std::sync::{Arc, Mutex, MutexGuard};

use serde::Serialize;
use serde_json::{Value, json};
use tokio::sync::watch;
use tokio::time::Instant;
use tokio_util::sync::CancellationToken;

use crate::auth::Scopes;
use crate::command::{ErrorCode, Failure, Outcome};
use crate::config::macros::{Action, Condition, Macro, OnFail, Op, RunMode};
use crate::journal::Journal;
use crate::router::{self, CommandKey, Origin, Router, Submission};

/// The pseudo-device macro progress is journaled on (`@` never appears in a device id).
pub const DEVICE: &str = "@macros";

/// The site's macros and the runs going on.
#[derive(Default)]
pub struct Engine {
    /// Replaced whole by a reload.
    book: Mutex<Arc<BTreeMap<String, Arc<Macro>>>>,
    active: Mutex<Active>,
}

#[derive(Default)]
struct Active {
    next: u64,
    runs: Vec<Running>,
}

struct Running {
    serial: u64,
    name: String,
    group: Option<String>,
    stop: Stop,
    ended: watch::Receiver<bool>,
}

/// Cancels a run and says who did.
#[derive(Clone, Default)]
struct Stop {
    token: CancellationToken,
    by: Arc<Mutex<Option<String>>>,
}

impl Stop {
    fn cancel(&self, why: String) {
        lock(&self.by).get_or_insert(why);
        self.token.cancel();
    }

    fn failure(&self) -> Failure {
        let why = lock(&self.by).clone().unwrap_or_else(|| "cancelled".into());
        Failure::new(ErrorCode::Cancelled, why)
    }
}

/// A run the engine let in: what to run, and what it must wait for first.
pub struct Admission {
    serial: u64,
    pub(crate) run: Arc<Macro>,
    /// A queued run starts once the one before it ended.
    after: Option<watch::Receiver<bool>>,
    stop: Stop,
    ended: watch::Sender<bool>,
}

/// What one step of a run came to, in the run's `result` and its last progress event.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct StepReport {
    /// The step's number: `2`, or `5.1` for the first step of the macro step 5 runs.
    pub step: String,
    pub label: String,
    pub outcome: StepOutcome,
    /// Why it failed (`failed`, `continued`).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub error: Option<Failure>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum StepOutcome {
    Ok,
    /// Its `skip_if` held.
    Skipped,
    /// It failed and ended the run.
    Failed,
    /// It failed and the run went on (`on_error = "continue"`).
    Continued,
    /// The run was cancelled while this step ran.
    Cancelled,
}

/// A macro as the panels' `/api/macros` lists it.
#[derive(Debug, Clone, Serialize)]
pub struct Listed {
    pub name: String,
    pub label: String,
    pub group: Option<String>,
    pub steps: usize,
}

/// Who started a run, for the messages of the runs it cancels.
pub fn who(key: &CommandKey, name: &str) -> String {
    format!("`{name}` (id `{}` from client `{}`)", key.id, key.client)
}

impl Engine {
    pub fn new(macros: BTreeMap<String, Arc<Macro>>) -> Engine {
        Engine {
            book: Mutex::new(Arc::new(macros)),
            active: Mutex::default(),
        }
    }

    /// Runs started from now on use `macros`; runs going on finish as they began.
    pub fn replace(&self, macros: BTreeMap<String, Arc<Macro>>) {
        *lock(&self.book) = Arc::new(macros);
    }

    pub(crate) fn get(&self, name: &str) -> Option<Arc<Macro>> {
        lock(&self.book).get(name).cloned()
    }

    /// The first device step of `name` (nested macros included) that `scopes` may not
    /// send, as its device and command: a panel may only start a run it could finish, so
    /// it cannot cancel another run of the group with a macro it may not run.
    pub fn forbidden_step(&self, name: &str, scopes: &Scopes) -> Option<(String, String)> {
        let book = lock(&self.book).clone();
        let mut pending = vec![name.to_string()];
        let mut seen = Vec::new();
        while let Some(name) = pending.pop() {
            if seen.contains(&name) {
                continue;
            }
            let Some(run) = book.get(&name) else { continue };
            for step in &run.steps {
                match &step.action {
                    Action::Command {
                        device, command, ..
                    } if !scopes.can_control(device, command) => {
                        return Some((device.clone(), command.clone()));
                    }
                    Action::Macro(inner) => pending.push(inner.clone()),
                    _ => {}
                }
            }
            seen.push(name);
        }
        None
    }

    /// The macros `scopes` may run (none of their steps is out of scope).
    pub fn listed(&self, scopes: &Scopes) -> Vec<Listed> {
        let book = lock(&self.book).clone();
        book.values()
            .filter(|m| self.forbidden_step(&m.name, scopes).is_none())
            .map(|m| Listed {
                name: m.name.clone(),
                label: m.label.clone(),
                group: m.group.clone(),
                steps: m.steps.len(),
            })
            .collect()
    }

    /// Lets a run of `name` in under its run mode, cancelling what it replaces: a running
    /// one of the same macro (mode `restart`) and the runs of other macros in its group.
    pub fn admit(&self, name: &str, started_by: &str) -> Result<Admission, Failure> {
        let Some(run) = self.get(name) else {
            let book = lock(&self.book).clone();
            let known: Vec<&str> = book.keys().map(String::as_str).collect();
            return Err(Failure::new(
                ErrorCode::UnknownCommand,
                format!("no macro `{name}`; this site has: {}", known.join(", ")),
            ));
        };
        let mut active = lock(&self.active);
        let mut after = None;
        for running in active.runs.iter().filter(|r| r.name == name) {
            match run.mode {
                RunMode::Single => {
                    return Err(Failure::new(
                        ErrorCode::AlreadyRunning,
                        format!(
                            "macro `{name}` is running already; wait for its result (its progress is the `{DEVICE}` point `{name}`)"
                        ),
                    ));
                }
                RunMode::Restart => running.stop.cancel(format!("restarted by {started_by}")),
                RunMode::Queued => after = Some(running.ended.clone()),
            }
        }
        if let Some(group) = &run.group {
            for running in &active.runs {
                if running.name != name && running.group.as_ref() == Some(group) {
                    running
                        .stop
                        .cancel(format!("cancelled by {started_by} in group `{group}`"));
                }
            }
        }
        active.next += 1;
        let serial = active.next;
        let (ended, ended_rx) = watch::channel(false);
        let stop = Stop::default();
        active.runs.push(Running {
            serial,
            name: name.to_string(),
            group: run.group.clone(),
            stop: stop.clone(),
            ended: ended_rx,
        });
        Ok(Admission {
            serial,
            run,
            after,
            stop,
            ended,
        })
    }

    /// The run is over (or was never started): the next queued one may go.
    pub fn finish(&self, admission: &Admission) {
        lock(&self.active)
            .runs
            .retain(|r| r.serial != admission.serial);
        admission.ended.send_replace(true);
    }
}

/// Where a run reports its progress.
struct Progress<'a> {
    journal: &'a Journal,
    name: &'a str,
    key: &'a CommandKey,
    of: usize,
}

impl Progress<'_> {
    /// Step `shown` is running; its expected time (a warm-up) goes along when known.
    fn report_running(&self, shown: usize, step: &crate::config::macros::Step) {
        let mut value = json!({
            "state": "running",
            "step": shown,
            "of": self.of,
            "label": step.label,
            "run": self.key.id,
            "client": self.key.client,
        });
        if let Some(expected) = step.expected {
            value["expected_s"] = json!(expected.as_secs());
        }
        self.journal.record(DEVICE, self.name, value);
    }

    fn report(&self, state: &str, step: usize, label: &str, error: Option<&Failure>) {
        self.report_with(state, step, label, error, None);
    }

    fn report_with(
        &self,
        state: &str,
        step: usize,
        label: &str,
        error: Option<&Failure>,
        steps: Option<&[StepReport]>,
    ) {
        let mut value = json!({
            "state": state,
            "step": step,
            "of": self.of,
            "label": label,
            "run": self.key.id,
            "client": self.key.client,
        });
        if let Some(failure) = error {
            value["error"] = json!({"code": failure.code, "message": failure.message});
        }
        if let Some(steps) = steps {
            value["steps"] = serde_json::to_value(steps).expect("step reports serialize");
        }
        self.journal.record(DEVICE, self.name, value);
    }
}

/// Runs an admitted macro to its end: each step in order, each waiting for its outcome.
/// Returns the run's outcome and what each step came to.
pub async fn run(
    router: &Arc<Router>,
    origin: &Origin,
    key: &CommandKey,
    admission: &Admission,
) -> (Outcome, Vec<StepReport>) {
    let progress = Progress {
        journal: router.journal(),
        name: &admission.run.name,
        key,
        of: admission.run.steps.len(),
    };
    if let Some(mut before) = admission.after.clone() {
        progress.report("queued", 0, &admission.run.label, None);
        tokio::select! {
            _ = before.wait_for(|ended| *ended) => {}
            _ = admission.stop.token.cancelled() => {}
        }
    }
    let runner = Runner {
        router,
        origin,
        key,
        stop: &admission.stop,
        progress: &progress,
        outcomes: Mutex::default(),
    };
    let outcome = if admission.stop.token.is_cancelled() {
        Err(admission.stop.failure())
    } else {
        runner.steps(&admission.run, "", None).await
    };
    let (state, step) = match &outcome {
        Ok(()) => ("done", progress.of),
        Err(f) if f.code == ErrorCode::Cancelled => ("cancelled", 0),
        Err(_) => ("failed", 0),
    };
    let steps = std::mem::take(&mut *lock(&runner.outcomes));
    progress.report_with(
        state,
        step,
        &admission.run.label,
        outcome.as_ref().err(),
        Some(&steps),
    );
    (outcome, steps)
}

struct Runner<'a> {
    router: &'a Arc<Router>,
    origin: &'a Origin,
    key: &'a CommandKey,
    stop: &'a Stop,
    progress: &'a Progress<'a>,
    /// Each step's outcome so far, for the run's result and last progress event.
    outcomes: Mutex<Vec<StepReport>>,
}

impl Runner<'_> {
    fn note(&self, number: &str, label: &str, outcome: StepOutcome, error: Option<&Failure>) {
        lock(&self.outcomes).push(StepReport {
            step: number.to_string(),
            label: label.to_string(),
            outcome,
            error: error.cloned(),
        });
    }

    /// Runs `run`'s steps; `prefix` numbers the steps of a nested macro (`5.`), and `top`
    /// is the step of the outer macro it runs in (progress counts the outer steps).
    fn steps<'s>(
        &'s self,
        run: &'s Macro,
        prefix: &'s str,
        top: Option<usize>,
    ) -> Pin<Box<dyn Future<Output = Outcome> + Send + 's>> {
        Box::pin(async move {
            for (index, step) in run.steps.iter().enumerate() {
                let number = format!("{prefix}{}", index + 1);
                let shown = top.unwrap_or(index + 1);
                if step
                    .skip_if
                    .as_ref()
                    .is_some_and(|c| holds(self.router.journal(), c))
                {
                    self.note(&number, &step.label, StepOutcome::Skipped, None);
                    continue;
                }
                self.progress.report_running(shown, step);
                let action = async {
                    match &step.action {
                        Action::Command {
                            device,
                            command,
                            args,
                        } => self.command(&number, device, command, args.clone()).await,
                        Action::Delay(delay) => {
                            tokio::time::sleep(*delay).await;
                            Ok(())
                        }
                        Action::WaitUntil {
                            condition,
                            timeout,
                            on_timeout,
                        } => {
                            let reached =
                                wait_until(self.router.journal(), condition, *timeout).await;
                            match (reached, on_timeout) {
                                (true, _) | (false, OnFail::Continue) => Ok(()),
                                (false, OnFail::Fail) => Err(Failure::new(
                                    ErrorCode::Timeout,
                                    format!(
                                        "not reached within {}",
                                        humantime::format_duration(*timeout)
                                    ),
                                )),
                            }
                        }
                        Action::Macro(name) => match self.router.macros().get(name) {
                            Some(inner) => {
                                self.steps(&inner, &format!("{number}."), Some(shown)).await
                            }
                            None => Err(Failure::new(
                                ErrorCode::UnknownCommand,
                                format!("macro `{name}` is no longer in the site"),
                            )),
                        },
                    }
                };
                let outcome = tokio::select! {
                    outcome = action => outcome,
                    _ = self.stop.token.cancelled() => {
                        let mut failure = self.stop.failure();
                        failure.message = format!("{} at step {number} ({}); the steps before it were done", failure.message, step.label);
                        self.note(&number, &step.label, StepOutcome::Cancelled, None);
                        return Err(failure);
                    }
                };
                if outcome.is_ok() {
                    self.note(&number, &step.label, StepOutcome::Ok, None);
                }
                if let Err(failure) = outcome {
                    let waits = matches!(step.action, Action::WaitUntil { .. });
                    if step.on_error == OnFail::Continue && !waits {
                        self.note(&number, &step.label, StepOutcome::Continued, Some(&failure));
                        continue;
                    }
                    self.note(&number, &step.label, StepOutcome::Failed, Some(&failure));
                    return Err(Failure::new(
                        failure.code,
                        format!("step {number} ({}): {}", step.label, failure.message),
                    ));
                }
            }
            Ok(())
        })
    }

    async fn command(
        &self,
        number: &str,
        device: &str,
        command: &str,
        args: avgate_drivers::Map<String, Value>,
    ) -> Outcome {
        let key = CommandKey {
            id: format!("{}#{number}", self.key.id),
            ..self.key.clone()
        };
        match self
            .router
            .submit_step(self.origin, key, device, command, args)?
        {
            Submission::Accepted(watch) | Submission::Duplicate(watch) => {
                router::outcome(watch).await
            }
        }
    }
}

/// Waits until `condition` holds in what panels may see, or `timeout` passes; returns
/// whether it held.
pub async fn wait_until(
    journal: &Journal,
    condition: &Condition,
    timeout: std::time::Duration,
) -> bool {
    let deadline = Instant::now() + timeout;
    let mut head = journal.watch();
    loop {
        head.borrow_and_update();
        if holds(journal, condition) {
            return true;
        }
        tokio::select! {
            changed = head.changed() => if changed.is_err() { return false },
            _ = tokio::time::sleep_until(deadline) => return holds(journal, condition),
        }
    }
}

/// Whether `condition` holds now. A point that is stale (its device offline, or not read
/// since a restart) or never read is unknown, and a comparison with it does not hold.
pub fn holds(journal: &Journal, condition: &Condition) -> bool {
    let current = |device: &str, point: &str| {
        let state = journal.device_state(device)?;
        if point == crate::journal::ONLINE {
            return Some(Value::Bool(state.online));
        }
        if state.stale.contains(point) {
            return None;
        }
        state.points.get(point).cloned()
    };
    match condition {
        Condition::Online(device) => journal.device_state(device).is_some_and(|s| s.online),
        Condition::Compare {
            device,
            point,
            op,
            value,
        } => current(device, point).is_some_and(|now| match op {
            Op::Eq => now == *value,
            Op::Ne => now != *value,
            Op::Lt => number(&now).zip(number(value)).is_some_and(|(a, b)| a < b),
            Op::Gt => number(&now).zip(number(value)).is_some_and(|(a, b)| a > b),
        }),
        Condition::In {
            device,
            point,
            values,
        } => current(device, point).is_some_and(|now| values.contains(&now)),
        Condition::All(parts) => parts.iter().all(|c| holds(journal, c)),
    }
}

fn number(value: &Value) -> Option<f64> {
    value.as_f64()
}

fn lock<T>(mutex: &Mutex<T>) -> MutexGuard<'_, T> {
    mutex.lock().unwrap_or_else(|p| p.into_inner())
}

pub mod lease;
pub mod schedule;

#[cfg(test)]
mod tests;
