//! Running `[[schedules]]`: each schedule's macro at its next local time.
//!
//! A scheduled run is a command like any other, from the client `@schedule`, with an id
//! made from the macro and the moment it is for (`room-off@2026-11-30T21:00:00Z`). The
//! dedupe ledger is on disk, so a run happens at most once whatever restarts do.
//!
//! At start, a schedule's last moment before now is a run the gateway may have missed
//! while it was down: if the ledger has no run for it, it is run when `catch_up` is set
//! (within the dedupe window, the ledger's memory) and otherwise skipped with a log line.

use std::sync::Arc;
use std::time::Duration;

use jiff::Timestamp;
use tokio::time::Instant;
use tokio_util::sync::CancellationToken;
use tracing::{info, warn};

use crate::auth::Scopes;
use crate::config::schedules::Schedule;
use crate::router::{CommandKey, Origin, Router};

/// The client name scheduled runs are sent as.
pub const CLIENT: &str = "@schedule";

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

/// Runs every schedule until `stop`.
pub async fn run_schedules(
    router: Arc<Router>,
    schedules: Vec<Schedule>,
    clock: Clock,
    stop: CancellationToken,
) {
    let runs = schedules
        .into_iter()
        .map(|schedule| run_schedule(&router, schedule, clock, &stop));
    futures_util::future::join_all(runs).await;
}

async fn run_schedule(
    router: &Arc<Router>,
    schedule: Schedule,
    clock: Clock,
    stop: &CancellationToken,
) {
    let started = clock.now();
    if let Some(last) = schedule.last_at_or_before(started) {
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
    loop {
        let next = schedule.next_after(clock.now());
        let wait = Duration::try_from(clock.now().duration_until(next)).unwrap_or_default();
        tokio::select! {
            _ = tokio::time::sleep(wait) => {}
            _ = stop.cancelled() => return,
        }
        start(router, &schedule, key(&schedule, next));
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
