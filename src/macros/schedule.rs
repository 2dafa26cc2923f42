//! Running `[[schedules]]`: each schedule's macro at its next local time.
//!
//! A scheduled run is a command like any other, from the client `@schedule`, with an id
//! made from the macro and the moment it is for (`room-off@2026-11-30T21:00:00Z`). The
//! dedupe ledger is on disk, so a run happens at most once whatever restarts do.
//!
//! At start, a schedule's last moment before now is a run the gateway may have missed
//! while it was down: if the ledger has no run for it, it is run when `catch_up` is set
//! (within the dedupe window, the ledger's memory) and otherwise skipped with a log line.
//!
//! A schedule with a `warning` period journals a countdown on the pseudo-device
//! [`DEVICE`] (point: the macro's name) that long before the run; a panel cancels that
//! one run with the command `keep_on` on [`DEVICE`] ([`KEEP_ON`]), which the
//! router dedupes, scopes and audits like any command.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use jiff::Timestamp;
use tokio::sync::watch;
use tokio::time::Instant;
use tokio_util::sync::CancellationToken;
use tracing::{info, warn};

use avgate_drivers::Map;
use serde_json::{Value, json};

use crate::auth::Scopes;
use crate::command::{ErrorCode, Failure};
use crate::config::schedules::Schedule;
use crate::journal::Journal;
use crate::router::{CommandKey, Origin, Router};

/// The client name scheduled runs are sent as.
pub const CLIENT: &str = "@schedule";

/// The pseudo-device scheduled runs count down on, one point per macro, and the target of
/// the `keep_on` command.
pub const DEVICE: &str = "@schedules";

/// The command that cancels a scheduled run during its warning period.
pub const KEEP_ON: &str = "keep_on";

/// The scheduled runs counting down now, by macro name.
#[derive(Default)]
pub struct Warnings {
    counting: Mutex<HashMap<String, Countdown>>,
}

struct Countdown {
    /// The run's id (`room-off@2026-11-30T21:00:00Z`).
    run: String,
    /// The macro's label, for panels ("Room off").
    label: String,
    due: Timestamp,
    kept_on: bool,
}

impl Warnings {
    /// Starts the countdown of `run` (due at `due`) on `@schedules/MACRO`.
    fn count_down(
        &self,
        journal: &Journal,
        macro_name: &str,
        label: &str,
        run: &str,
        due: Timestamp,
        left: Duration,
    ) {
        let mut counting = lock(&self.counting);
        // A reload restarts the schedules mid-countdown: a run kept on stays kept on.
        if counting.get(macro_name).is_some_and(|c| c.run == run) {
            return;
        }
        counting.insert(
            macro_name.to_string(),
            Countdown {
                run: run.to_string(),
                label: label.to_string(),
                due,
                kept_on: false,
            },
        );
        journal.record(
            DEVICE,
            macro_name,
            json!({"state": "warning", "run": run, "label": label, "at": due.to_string(), "seconds": left.as_secs()}),
        );
    }

    /// Forgets the countdowns of macros no longer scheduled (a reload removed them).
    fn keep_only(&self, journal: &Journal, scheduled: &[String]) {
        let mut counting = lock(&self.counting);
        counting.retain(|name, _| {
            let keep = scheduled.contains(name);
            if !keep {
                journal.record(DEVICE, name, Value::Null);
            }
            keep
        });
    }

    /// The countdown of `run` is over: returns whether it was kept on; if not, the point
    /// says it started. Under the lock `keep_on` takes, so a run is either kept on (and
    /// its `keep_on` answered ok) or started, never both.
    fn end(&self, journal: &Journal, macro_name: &str, run: &str) -> bool {
        let mut counting = lock(&self.counting);
        let kept_on = match counting.get(macro_name) {
            Some(countdown) if countdown.run == run => {
                let kept_on = countdown.kept_on;
                counting.remove(macro_name);
                kept_on
            }
            _ => false,
        };
        if !kept_on {
            journal.record(DEVICE, macro_name, json!({"state": "started", "run": run}));
        }
        kept_on
    }

    /// Handles a command on [`DEVICE`]: `keep_on` with `{"macro": NAME}` cancels the run
    /// of NAME counting down now. Keeping on a run already kept on is fine (two panels
    /// pressed "Keep on"); the first one is named on the point.
    pub fn command(
        &self,
        journal: &Journal,
        key: &CommandKey,
        command: &str,
        args: &Map<String, Value>,
    ) -> Result<(), Failure> {
        if command != KEEP_ON {
            return Err(Failure::new(
                ErrorCode::UnknownCommand,
                format!(
                    "`{DEVICE}` has one command, `{KEEP_ON}` (args {{\"macro\": NAME}}), which keeps the room on by cancelling the scheduled run of NAME counting down now"
                ),
            ));
        }
        let name = match (args.get("macro"), args.len()) {
            (Some(Value::String(name)), 1) => name,
            _ => {
                return Err(Failure::new(
                    ErrorCode::InvalidArgs,
                    format!(
                        "{KEEP_ON}: takes exactly {{\"macro\": NAME}}, the macro whose scheduled run to cancel"
                    ),
                ));
            }
        };
        let mut counting = lock(&self.counting);
        let Some(countdown) = counting.get_mut(name.as_str()) else {
            return Err(Failure::new(
                ErrorCode::InvalidArgs,
                format!(
                    "{KEEP_ON}: no scheduled run of `{name}` is counting down now (it has started, or none is due within its warning period); nothing was changed"
                ),
            ));
        };
        if !countdown.kept_on {
            countdown.kept_on = true;
            info!(schedule = %countdown.run, client = %crate::hub::Untrusted(&key.client), "scheduled macro kept on: this run is cancelled");
            journal.record(
                DEVICE,
                name,
                json!({
                    "state": "kept_on",
                    "run": countdown.run,
                    "label": countdown.label,
                    "at": countdown.due.to_string(),
                    "by": {"client": key.client, "id": key.id},
                }),
            );
        }
        Ok(())
    }
}

fn lock<T>(mutex: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    mutex.lock().unwrap_or_else(|p| p.into_inner())
}

/// Wall-clock time that follows tokio's clock, so schedules run on a paused clock in
/// tests exactly as on the real one.
#[derive(Debug, Clone, Copy)]
pub struct Clock {
    wall: Timestamp,
    at: Instant,
}

impl Clock {
    pub fn system() -> Clock {
        Clock::starting_at(Timestamp::now())
    }

    /// A clock that reads `wall` now.
    pub fn starting_at(wall: Timestamp) -> Clock {
        Clock {
            wall,
            at: Instant::now(),
        }
    }

    fn now(&self) -> Timestamp {
        let elapsed = jiff::SignedDuration::try_from(self.at.elapsed()).unwrap_or_default();
        self.wall.checked_add(elapsed).unwrap_or(self.wall)
    }
}

/// Runs every schedule until `stop`; a reload sends a new list through `schedules`, and
/// the schedules run from then on are the new ones. Runs missed while the gateway was down
/// are looked for once, at start, not at a reload.
pub async fn run_schedules(
    router: Arc<Router>,
    mut schedules: watch::Receiver<Vec<Schedule>>,
    clock: Clock,
    stop: CancellationToken,
) {
    let mut starting = true;
    loop {
        let list = schedules.borrow_and_update().clone();
        let macros: Vec<String> = list.iter().map(|s| s.run.clone()).collect();
        router
            .schedule_warnings()
            .keep_only(router.journal(), &macros);
        let runs = futures_util::future::join_all(
            list.into_iter()
                .map(|schedule| run_schedule(&router, schedule, clock, &stop, starting)),
        );
        starting = false;
        tokio::pin!(runs);
        tokio::select! {
            changed = schedules.changed() => {
                if changed.is_err() {
                    // Nobody can reload any more: these schedules are the last.
                    tokio::select! {
                        _ = &mut runs => {}
                        _ = stop.cancelled() => {}
                    }
                    return;
                }
                info!("schedules reloaded");
            }
            _ = &mut runs => return,
            _ = stop.cancelled() => return,
        }
    }
}

async fn run_schedule(
    router: &Arc<Router>,
    schedule: Schedule,
    clock: Clock,
    stop: &CancellationToken,
    at_start: bool,
) {
    let started = clock.now();
    if let Some(last) = schedule.last_at_or_before(started).filter(|_| at_start) {
        let key = key(&schedule, last);
        let missed_for = started.duration_since(last);
        let recent = Duration::try_from(missed_for).is_ok_and(|d| d < router.dedupe_window());
        if recent && !router.knows(&key) {
            if schedule.catch_up {
                info!(schedule = %key.id, "running a scheduled macro missed while the gateway was down (catch_up = true)");
                start(router, &schedule, key);
            } else {
                info!(schedule = %key.id, "a scheduled macro was missed while the gateway was down; skipped (set catch_up = true to run missed ones)");
            }
        }
    }
    // The last run dealt with: the clock may read a hair before it after the sleep, and
    // the next run is the one after it.
    let mut handled = started;
    loop {
        let next = schedule.next_after(clock.now().max(handled));
        handled = next;
        let key = key(&schedule, next);
        let until = |at: Timestamp| {
            let wait = Duration::try_from(clock.now().duration_until(at)).unwrap_or_default();
            tokio::time::sleep(wait)
        };
        let Some(warning) = schedule.warning else {
            tokio::select! {
                _ = until(next) => {}
                _ = stop.cancelled() => return,
            }
            start(router, &schedule, key);
            continue;
        };
        let warn_at = next
            .checked_sub(jiff::SignedDuration::try_from(warning).unwrap_or_default())
            .unwrap_or(next);
        tokio::select! {
            _ = until(warn_at) => {}
            _ = stop.cancelled() => return,
        }
        let left = Duration::try_from(clock.now().duration_until(next)).unwrap_or_default();
        let warnings = router.schedule_warnings();
        let journal = router.journal();
        let label = router
            .macros()
            .get(&schedule.run)
            .map_or_else(|| schedule.run.clone(), |m| m.label.clone());
        warnings.count_down(journal, &schedule.run, &label, &key.id, next, left);
        // Kept on or not, the countdown lasts until the run is due, so a second panel's
        // "Keep on" is answered ok rather than "nothing counting down".
        tokio::select! {
            _ = until(next) => {}
            _ = stop.cancelled() => return,
        }
        if warnings.end(journal, &schedule.run, &key.id) {
            info!(schedule = %key.id, "scheduled macro not run: a panel kept the room on");
            continue;
        }
        start(router, &schedule, key);
    }
}

fn key(schedule: &Schedule, at: Timestamp) -> CommandKey {
    CommandKey {
        owner: String::new(),
        client: CLIENT.into(),
        id: schedule.run_id(at),
    }
}

fn start(router: &Arc<Router>, schedule: &Schedule, key: CommandKey) {
    let origin = Origin {
        session: CLIENT.into(),
        token: None,
        scopes: Arc::new(Scopes::everything()),
        peer: None,
        web_origin: None,
    };
    let id = key.id.clone();
    match router.submit_macro(&origin, key, &schedule.run) {
        Ok(_) => info!(schedule = %id, "scheduled macro started"),
        Err(failure) => warn!(schedule = %id, "scheduled macro not started: {failure}"),
    }
}
