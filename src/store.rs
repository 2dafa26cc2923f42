//! The durable store: the journal's events and state, command records and the audit log,
//! in one embedded redb file, so a restart (or a power cut) loses nothing committed.
//!
//! One writer: the journal's committer task is the only thing that writes. Command records
//! and audit entries are queued here ([`Store::enqueue`]) and ride the next group commit
//! together with the events, so a burst of commands costs one disk sync per batch, not one
//! per record. A caller that must know its record is on disk (a command is recorded as
//! pending before it runs) waits for its ticket ([`Store::written`]).
//!
//! redb has one writer at a time and every durable commit syncs to disk (milliseconds), so
//! everything here runs on blocking threads, never on the async executor, and no write
//! transaction is ever held across an `.await`.
//!
//! A damaged file must never become a crash loop: opening and checking it runs inside a
//! panic guard (redb panics on some corruptions), and a file that fails is moved aside. A
//! storage error (a full disk) leaves redb refusing every later write until the database is
//! reopened, so after one the store reports itself failing until [`Store::reopen`] and a
//! commit succeed again.

use std::collections::VecDeque;
use std::panic::{AssertUnwindSafe, catch_unwind};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Mutex, MutexGuard};
use std::time::{Duration, SystemTime};

use redb::{Database, ReadableDatabase, ReadableTable, ReadableTableMetadata, TableDefinition};
use tokio::sync::{Notify, watch};
use tracing::{error, info, warn};

/// `epoch` and `last_seq`: where the sequence series stands.
const META: TableDefinition<&str, u64> = TableDefinition::new("meta");
/// seq → (milliseconds since the Unix epoch, the event as sent to panels).
const EVENTS: TableDefinition<u64, (u64, &str)> = TableDefinition::new("events");
/// device id → its state (JSON).
const STATE: TableDefinition<&str, &str> = TableDefinition::new("state");
/// "client\0id" → a command's record (JSON).
const COMMANDS: TableDefinition<&str, &str> = TableDefinition::new("commands");
/// (first recorded, milliseconds since the Unix epoch; "client\0id") → (): the order
/// command records are pruned in.
const COMMAND_TIMES: TableDefinition<(u64, &str), ()> = TableDefinition::new("command_times");
/// sequence → (milliseconds since the Unix epoch, one audit entry as JSON).
const AUDIT: TableDefinition<u64, (u64, &str)> = TableDefinition::new("audit_log");

/// The store file's name inside the data directory.
pub const FILE_NAME: &str = "journal.redb";

/// Most old rows removed per table per commit, so retention work never makes one commit
/// slow: a backlog is worked off over the next commits.
const PRUNE_PER_COMMIT: usize = 2_000;

/// Records waiting for the next commit, at most. Beyond this (only while the disk is
/// failing: a healthy committer drains the queue every commit) new audit entries for
/// refused commands are counted instead of queued; nothing a panel was told was recorded
/// is ever dropped, because nothing is accepted while the store is failing.
pub const MAX_QUEUED: usize = 50_000;

#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    #[error(
        "cannot create data directory {path}: {source}; check the path and permissions ([journal] data_dir or --data-dir)"
    )]
    CreateDir {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error(
        "journal {path} is in use by another avgate process; stop it or use another --data-dir"
    )]
    InUse { path: PathBuf },
    #[error("journal {path}: {source}")]
    Database { path: PathBuf, source: redb::Error },
    #[error(
        "journal {path} is not open after a storage error; it is reopened with backoff (check free space and the disk)"
    )]
    Closed { path: PathBuf },
    #[error("journal {path}: redb panicked: {message}")]
    Panicked { path: PathBuf, message: String },
}

impl StoreError {
    /// Whether the disk (full, read-only, no permission), not the file, is at fault.
    pub fn is_environment(&self) -> bool {
        use std::io::ErrorKind::*;
        match self {
            StoreError::Database {
                source: redb::Error::Io(e),
                ..
            } => {
                matches!(
                    e.kind(),
                    StorageFull | QuotaExceeded | PermissionDenied | ReadOnlyFilesystem
                )
            }
            _ => false,
        }
    }
}

/// How long and how much to keep on disk, per kind of record.
#[derive(Debug, Clone, Copy)]
pub struct Retention {
    pub events: usize,
    pub age: Duration,
    /// Audit entries kept at most, and for how long.
    pub audit: usize,
    pub audit_age: Duration,
    /// Command records kept at most, and for how long (the dedupe window: an older record
    /// is never consulted).
    pub commands: usize,
    pub commands_age: Duration,
}

impl Retention {
    /// Events as given; audit and command records with the defaults.
    pub fn events(events: usize, age: Duration) -> Self {
        Self {
            events,
            age,
            audit: 100_000,
            audit_age: Duration::from_secs(90 * 24 * 3600),
            commands: 100_000,
            commands_age: Duration::from_secs(600),
        }
    }
}

/// What was on disk at start-up.
#[derive(Debug, Default)]
pub struct Recovered {
    pub epoch: u64,
    pub last_seq: u64,
    /// The newest events (seq, frame), oldest first, up to the requested count.
    pub events: Vec<(u64, String)>,
    /// device id → state JSON.
    pub state: Vec<(String, String)>,
    /// (key, record JSON) of every remembered command.
    pub commands: Vec<(String, String)>,
    /// The newest audit entries (sequence, JSON), oldest first.
    pub audit: Vec<(u64, String)>,
    /// Why history was lost, if it was: the log says so and panels get a new epoch.
    pub lost: Option<String>,
}

/// A record that rides the next group commit.
#[derive(Debug, Clone)]
pub enum Write {
    /// A command's record, under "client\0id"; `first_ms` is when it was first recorded.
    Command {
        key: String,
        first_ms: u64,
        json: String,
    },
    /// One audit entry.
    Audit { seq: u64, at_ms: u64, json: String },
}

/// One group commit.
#[derive(Default)]
pub struct Batch<'a> {
    pub events: &'a [(u64, u64, &'a str)],
    pub state: &'a [(&'a str, String)],
    pub writes: &'a [Write],
}

/// Whether the store can take writes now.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub enum Health {
    #[default]
    Ok,
    /// The last write failed (the reason); writes wait until a reopen and a commit succeed.
    Failing(String),
}

#[derive(Default)]
struct Queue {
    /// Command records with their tickets: someone may be waiting for them, so they go
    /// into the next commit ahead of audit entries.
    commands: VecDeque<(u64, Write)>,
    /// Audit entries: nobody waits for them; a bounded number rides each commit, so a
    /// flood of them never makes a commit (and the commands in it) slow.
    audit: VecDeque<Write>,
    /// The last ticket handed out.
    issued: u64,
    /// Audit entries not queued because the queue was full, since the last report.
    dropped: u64,
}

pub struct Store {
    /// `None` between a failed write's close and a successful reopen.
    db: Mutex<Option<Database>>,
    path: PathBuf,
    retention: Retention,
    queue: Mutex<Queue>,
    /// Wakes the committer: events or records are waiting.
    pub(crate) wake: Notify,
    /// The last ticket on disk.
    durable: watch::Sender<u64>,
    health: watch::Sender<Health>,
    /// Test switch: every write fails as a full disk would.
    fail_writes: AtomicBool,
}

impl Store {
    /// Opens (or creates) the store in `dir`. A file that cannot be opened, fails redb's
    /// integrity check or makes redb panic is moved aside (`journal.redb.corrupt-<time>`)
    /// and a fresh one started, so a damaged disk never turns into a crash loop;
    /// [`Recovered::lost`] says what happened.
    pub fn open(
        dir: &Path,
        retention: Retention,
        keep_events: usize,
    ) -> Result<(Store, Recovered), StoreError> {
        std::fs::create_dir_all(dir).map_err(|source| StoreError::CreateDir {
            path: dir.to_path_buf(),
            source,
        })?;
        let path = dir.join(FILE_NAME);
        let existed = path.exists();
        let (db, mut recovered) = match open_checked(&path, keep_events) {
            Ok(opened) => opened,
            Err(e @ StoreError::InUse { .. }) => return Err(e),
            // The file may be fine and the disk full or read-only: moving it aside would
            // throw history away for nothing.
            Err(e) if e.is_environment() => return Err(e),
            Err(e) if existed => {
                let aside =
                    path.with_extension(format!("redb.corrupt-{}", unix_millis(SystemTime::now())));
                let why = format!(
                    "journal {} could not be read ({e}); moved it to {} and started a new one: panels will get a fresh snapshot. Keep the old file for inspection or delete it",
                    path.display(),
                    aside.display()
                );
                error!("{why}");
                std::fs::rename(&path, &aside).map_err(|source| StoreError::CreateDir {
                    path: aside.clone(),
                    source,
                })?;
                let (db, mut recovered) = open_checked(&path, keep_events)?;
                recovered.lost = Some(why);
                (db, recovered)
            }
            Err(e) => return Err(e),
        };
        let store = Store {
            db: Mutex::new(Some(db)),
            path,
            retention,
            queue: Mutex::default(),
            wake: Notify::new(),
            durable: watch::channel(0).0,
            health: watch::channel(Health::Ok).0,
            fail_writes: AtomicBool::new(false),
        };
        if recovered.epoch == 0 {
            recovered.epoch = new_epoch();
            if recovered.lost.is_none() && existed {
                recovered.lost = Some(format!(
                    "journal {} held no epoch; starting a new one",
                    store.path.display()
                ));
            }
            store.write(|txn| {
                txn.open_table(META)?.insert("epoch", recovered.epoch)?;
                Ok(())
            })?;
            info!(epoch = recovered.epoch, path = %store.path.display(), "new journal");
        } else {
            info!(epoch = recovered.epoch, seq = recovered.last_seq, path = %store.path.display(), "journal recovered");
        }
        Ok((store, recovered))
    }

    pub fn path(&self) -> &Path {
        &self.path
    }

    /// Whether the store takes writes now, and why not.
    pub fn health(&self) -> Health {
        self.health.borrow().clone()
    }

    pub fn watch_health(&self) -> watch::Receiver<Health> {
        self.health.subscribe()
    }

    /// Makes every later write fail as a full disk would (`true`) or work again (`false`):
    /// how the tests exercise storage errors without filling a disk.
    #[doc(hidden)]
    pub fn fail_writes(&self, fail: bool) {
        self.fail_writes.store(fail, Ordering::SeqCst);
    }

    /// Queues a record for the next group commit; returns its ticket for
    /// [`Store::written`].
    pub fn enqueue(&self, write: Write) -> u64 {
        let mut queue = self.lock_queue();
        queue.issued += 1;
        let ticket = queue.issued;
        queue.commands.push_back((ticket, write));
        drop(queue);
        self.wake.notify_one();
        ticket
    }

    /// Queues an audit entry unless [`MAX_QUEUED`] are already waiting (a failing disk,
    /// or a flood faster than the disk); the entries left out are counted and reported in
    /// the log, and stay queryable in memory.
    pub fn enqueue_audit(&self, seq: u64, at_ms: u64, json: String) {
        let mut queue = self.lock_queue();
        if queue.audit.len() >= MAX_QUEUED {
            queue.dropped += 1;
            if queue.dropped.is_power_of_two() {
                warn!(
                    dropped = queue.dropped,
                    "audit entries not written to disk: the journal is failing or flooded and its queue is full; they stay queryable in memory while they are among the newest"
                );
            }
            return;
        }
        queue.audit.push_back(Write::Audit { seq, at_ms, json });
        drop(queue);
        self.wake.notify_one();
    }

    /// Records waiting for a commit.
    pub fn queued(&self) -> usize {
        let queue = self.lock_queue();
        queue.commands.len() + queue.audit.len()
    }

    /// Waits until the record with `ticket` is on disk. Fails at once when the store is
    /// failing: the record stays queued and is written once the disk is back, but the
    /// caller must not act as if it were durable.
    pub async fn written(&self, ticket: u64) -> Result<(), Health> {
        let mut durable = self.durable.subscribe();
        let mut health = self.health.subscribe();
        loop {
            if *durable.borrow_and_update() >= ticket {
                return Ok(());
            }
            if let Health::Failing(why) = &*health.borrow_and_update() {
                return Err(Health::Failing(why.clone()));
            }
            tokio::select! {
                changed = durable.changed() => if changed.is_err() { return Err(Health::Failing("the journal closed".into())) },
                changed = health.changed() => if changed.is_err() { return Err(Health::Failing("the journal closed".into())) },
            }
        }
    }

    /// Up to `max_commands` queued command records, then up to `max_audit` audit entries,
    /// each oldest first, with the last command ticket among them.
    pub(crate) fn take_writes(&self, max_commands: usize, max_audit: usize) -> (Vec<Write>, u64) {
        let mut queue = self.lock_queue();
        let n = queue.commands.len().min(max_commands);
        let mut last = 0;
        let mut writes: Vec<Write> = queue
            .commands
            .drain(..n)
            .map(|(ticket, write)| {
                last = ticket;
                write
            })
            .collect();
        let n = queue.audit.len().min(max_audit);
        writes.extend(queue.audit.drain(..n));
        (writes, last)
    }

    /// Puts records back at the front after a failed commit, in their order.
    pub(crate) fn return_writes(&self, writes: Vec<Write>, last_ticket: u64) {
        let mut queue = self.lock_queue();
        let mut ticket = last_ticket;
        for write in writes.into_iter().rev() {
            match write {
                Write::Audit { .. } => queue.audit.push_front(write),
                Write::Command { .. } => {
                    queue.commands.push_front((ticket, write));
                    ticket -= 1;
                }
            }
        }
    }

    /// Marks records up to `ticket` durable and the store healthy.
    pub(crate) fn committed(&self, ticket: u64) {
        if ticket > 0 {
            self.durable.send_if_modified(|d| {
                let moved = ticket > *d;
                *d = (*d).max(ticket);
                moved
            });
        }
        self.health.send_if_modified(|h| {
            let was_failing = *h != Health::Ok;
            *h = Health::Ok;
            was_failing
        });
    }

    /// Marks the store failing after a storage error and closes the database: redb refuses
    /// every write after an I/O error until it is reopened.
    pub(crate) fn failed(&self, why: &StoreError) {
        let text = why.to_string();
        self.health.send_if_modified(|h| {
            let changed = *h != Health::Failing(text.clone());
            *h = Health::Failing(text.clone());
            changed
        });
        if !matches!(why, StoreError::Closed { .. }) {
            *self.lock_db() = None;
        }
    }

    /// Opens the database again after a storage error (with the same guard as at start).
    pub fn reopen(&self) -> Result<(), StoreError> {
        let mut db = self.lock_db();
        *db = None;
        let (opened, _) = open_checked(&self.path, 0)?;
        *db = Some(opened);
        info!(path = %self.path.display(), "journal reopened");
        Ok(())
    }

    /// Commits one group: events, the state they produced and the queued records, with one
    /// sync, and prunes a bounded number of rows that fell out of retention.
    pub fn commit(&self, batch: &Batch<'_>) -> Result<(), StoreError> {
        self.write(|txn| {
            let now = unix_millis(SystemTime::now());
            let mut events = txn.open_table(EVENTS)?;
            let mut last = None;
            for (seq, ts, frame) in batch.events {
                events.insert(*seq, (*ts, *frame))?;
                last = Some(*seq);
            }
            let cutoff = now.saturating_sub(self.retention.age.as_millis() as u64);
            prune(&mut events, self.retention.events, |(ts, _)| ts < cutoff)?;
            drop(events);
            if let Some(last) = last {
                txn.open_table(META)?.insert("last_seq", last)?;
            }
            let mut state = txn.open_table(STATE)?;
            for (device, json) in batch.state {
                state.insert(*device, json.as_str())?;
            }
            drop(state);
            self.write_records(txn, batch.writes, now)
        })
    }

    fn write_records(
        &self,
        txn: &redb::WriteTransaction,
        writes: &[Write],
        now: u64,
    ) -> Result<(), redb::Error> {
        let mut commands = txn.open_table(COMMANDS)?;
        let mut times = txn.open_table(COMMAND_TIMES)?;
        let mut audit = txn.open_table(AUDIT)?;
        for write in writes {
            match write {
                Write::Command {
                    key,
                    first_ms,
                    json,
                } => {
                    commands.insert(key.as_str(), json.as_str())?;
                    times.insert((*first_ms, key.as_str()), ())?;
                }
                Write::Audit { seq, at_ms, json } => {
                    audit.insert(*seq, (*at_ms, json.as_str()))?;
                }
            }
        }
        let cutoff = now.saturating_sub(self.retention.audit_age.as_millis() as u64);
        prune(&mut audit, self.retention.audit, |(at, _)| at < cutoff)?;
        // Commands: the time index says which go first; each takes its record along.
        let cutoff = now.saturating_sub(self.retention.commands_age.as_millis() as u64);
        let excess = (times.len()? as usize).saturating_sub(self.retention.commands);
        let mut removed = 0;
        while removed < PRUNE_PER_COMMIT {
            let Some((at, key)) = times
                .first()?
                .map(|(k, _)| (k.value().0, k.value().1.to_string()))
            else {
                break;
            };
            if removed >= excess && at >= cutoff {
                break;
            }
            times.remove((at, key.as_str()))?;
            commands.remove(key.as_str())?;
            removed += 1;
        }
        Ok(())
    }

    /// Starts the on-disk series again at `epoch` and `seq` with `state` as it is now,
    /// after a time without the disk: the events of that time were never written, so the
    /// events on disk (of an older epoch) are dropped, and the queued records written.
    pub fn anchor(
        &self,
        epoch: u64,
        seq: u64,
        state: &[(String, String)],
        writes: &[Write],
    ) -> Result<(), StoreError> {
        self.write(|txn| {
            txn.delete_table(EVENTS)?;
            txn.delete_table(STATE)?;
            let mut meta = txn.open_table(META)?;
            meta.insert("epoch", epoch)?;
            meta.insert("last_seq", seq)?;
            drop(meta);
            let mut table = txn.open_table(STATE)?;
            for (device, json) in state {
                table.insert(device.as_str(), json.as_str())?;
            }
            drop(table);
            self.write_records(txn, writes, unix_millis(SystemTime::now()))
        })
    }

    /// Up to `limit` audit entries (JSON) with a sequence below `before`, newest first,
    /// read from disk without loading the rest.
    pub fn audit_before(&self, before: u64, limit: usize) -> Result<Vec<String>, StoreError> {
        let db = self.lock_db();
        let Some(db) = db.as_ref() else {
            return Err(StoreError::Closed {
                path: self.path.clone(),
            });
        };
        let read = || -> Result<Vec<String>, redb::Error> {
            let txn = db.begin_read()?;
            let Ok(audit) = txn.open_table(AUDIT) else {
                return Ok(Vec::new());
            };
            audit
                .range(..before)?
                .rev()
                .take(limit)
                .map(|row| row.map(|(_, v)| v.value().1.to_string()))
                .collect::<Result<_, _>>()
                .map_err(Into::into)
        };
        read().map_err(|source| self.error(source))
    }

    /// Visits stored events newest first, starting below seq `before` (all when `None`),
    /// as (seq, milliseconds since the Unix epoch, the event's JSON), until `visit`
    /// returns false. Read-only: it runs beside the writer without blocking it.
    pub fn scan_events_back(
        &self,
        before: Option<u64>,
        mut visit: impl FnMut(u64, u64, &str) -> bool,
    ) -> Result<(), StoreError> {
        let db = self.lock_db();
        let Some(db) = db.as_ref() else {
            return Err(StoreError::Closed {
                path: self.path.clone(),
            });
        };
        let mut scan = || -> Result<(), redb::Error> {
            let txn = db.begin_read()?;
            let Ok(events) = txn.open_table(EVENTS) else {
                return Ok(());
            };
            for row in events.range(..before.unwrap_or(u64::MAX))?.rev() {
                let (seq, value) = row?;
                let (ts, frame) = value.value();
                if !visit(seq.value(), ts, frame) {
                    break;
                }
            }
            Ok(())
        };
        scan().map_err(|source| self.error(source))
    }

    fn error(&self, source: redb::Error) -> StoreError {
        StoreError::Database {
            path: self.path.clone(),
            source,
        }
    }

    fn write(
        &self,
        body: impl FnOnce(&redb::WriteTransaction) -> Result<(), redb::Error>,
    ) -> Result<(), StoreError> {
        if self.fail_writes.load(Ordering::SeqCst) {
            let full = std::io::Error::from_raw_os_error(28); // ENOSPC
            return Err(self.error(redb::Error::Io(full)));
        }
        let db = self.lock_db();
        let Some(db) = db.as_ref() else {
            return Err(StoreError::Closed {
                path: self.path.clone(),
            });
        };
        let run = || -> Result<(), redb::Error> {
            let txn = db.begin_write()?;
            body(&txn)?;
            txn.commit()?;
            Ok(())
        };
        match catch_unwind(AssertUnwindSafe(run)) {
            Ok(Ok(())) => Ok(()),
            Ok(Err(source)) => {
                warn!(path = %self.path.display(), "journal write failed: {source}");
                Err(self.error(source))
            }
            Err(panic) => Err(StoreError::Panicked {
                path: self.path.clone(),
                message: panic_message(&panic),
            }),
        }
    }

    fn lock_db(&self) -> MutexGuard<'_, Option<Database>> {
        self.db.lock().unwrap_or_else(|p| p.into_inner())
    }

    fn lock_queue(&self) -> MutexGuard<'_, Queue> {
        self.queue.lock().unwrap_or_else(|p| p.into_inner())
    }
}

/// Removes the oldest rows beyond `keep` rows or for which `too_old` holds, at most
/// [`PRUNE_PER_COMMIT`] at a time.
fn prune<V: redb::Value + 'static>(
    table: &mut redb::Table<u64, V>,
    keep: usize,
    too_old: impl Fn(V::SelfType<'_>) -> bool,
) -> Result<(), redb::Error> {
    let excess = (table.len()? as usize).saturating_sub(keep);
    let mut removed = 0;
    while removed < PRUNE_PER_COMMIT {
        let Some((key, old)) = table.first()?.map(|(k, v)| (k.value(), too_old(v.value()))) else {
            break;
        };
        if removed >= excess && !old {
            break;
        }
        table.remove(key)?;
        removed += 1;
    }
    Ok(())
}

/// Opens the database, checks it and reads it back, with redb's panics turned into errors.
fn open_checked(path: &Path, keep_events: usize) -> Result<(Database, Recovered), StoreError> {
    let opened = catch_unwind(AssertUnwindSafe(
        || -> Result<(Database, Recovered), StoreError> {
            let database_error = |e: redb::DatabaseError| match e {
                redb::DatabaseError::DatabaseAlreadyOpen => StoreError::InUse {
                    path: path.to_path_buf(),
                },
                e => StoreError::Database {
                    path: path.to_path_buf(),
                    source: e.into(),
                },
            };
            let mut db = Database::create(path).map_err(database_error)?;
            if !db.check_integrity().map_err(database_error)? {
                // redb repaired what it could; what it reads back below is checked again.
                warn!(path = %path.display(), "journal failed redb's integrity check and was repaired");
            }
            let recovered = recover(&db, keep_events).map_err(|source| StoreError::Database {
                path: path.to_path_buf(),
                source,
            })?;
            Ok((db, recovered))
        },
    ));
    opened.unwrap_or_else(|panic| {
        Err(StoreError::Panicked {
            path: path.to_path_buf(),
            message: panic_message(&panic),
        })
    })
}

/// Reads back what the journal, the router and the audit log start from (redb's integrity
/// check has already verified every page's checksum).
/// The newest `count` rows of a table of timestamped text (events, audit entries), as
/// (key, text), oldest first.
fn newest(
    table: &impl ReadableTable<u64, (u64, &'static str)>,
    count: usize,
) -> Result<Vec<(u64, String)>, redb::Error> {
    let mut rows: Vec<(u64, String)> = table
        .iter()?
        .rev()
        .take(count)
        .map(|row| row.map(|(k, v)| (k.value(), v.value().1.to_string())))
        .collect::<Result<_, _>>()?;
    rows.reverse();
    Ok(rows)
}

fn recover(db: &Database, keep_events: usize) -> Result<Recovered, redb::Error> {
    let keep_audit = crate::audit::IN_MEMORY;
    let txn = db.begin_read()?;
    let mut recovered = Recovered::default();
    // Tables appear with the first write; a new file has none yet.
    let Ok(meta) = txn.open_table(META) else {
        return Ok(recovered);
    };
    recovered.epoch = meta.get("epoch")?.map_or(0, |v| v.value());
    recovered.last_seq = meta.get("last_seq")?.map_or(0, |v| v.value());
    if let Ok(events) = txn.open_table(EVENTS) {
        recovered.events = newest(&events, keep_events)?;
    }
    if let Ok(state) = txn.open_table(STATE) {
        for row in state.iter()? {
            let (k, v) = row?;
            recovered
                .state
                .push((k.value().to_string(), v.value().to_string()));
        }
    }
    if let Ok(commands) = txn.open_table(COMMANDS) {
        for row in commands.iter()? {
            let (k, v) = row?;
            recovered
                .commands
                .push((k.value().to_string(), v.value().to_string()));
        }
    }
    if let Ok(audit) = txn.open_table(AUDIT) {
        recovered.audit = newest(&audit, keep_audit)?;
    }
    Ok(recovered)
}

fn panic_message(panic: &Box<dyn std::any::Any + Send>) -> String {
    panic
        .downcast_ref::<&str>()
        .map(|s| s.to_string())
        .or_else(|| panic.downcast_ref::<String>().cloned())
        .unwrap_or_else(|| "unknown panic".into())
}

pub fn unix_millis(at: SystemTime) -> u64 {
    at.duration_since(SystemTime::UNIX_EPOCH)
        .map_or(0, |d| d.as_millis() as u64)
}

/// A new epoch: the current time in milliseconds, so epochs also sort by when they began.
pub fn new_epoch() -> u64 {
    unix_millis(SystemTime::now()).max(1)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn retain() -> Retention {
        Retention::events(1_000, Duration::from_secs(3600))
    }

    fn events(seqs: std::ops::RangeInclusive<u64>, ts: u64) -> Vec<(u64, u64, &'static str)> {
        seqs.map(|s| (s, ts, "{}")).collect()
    }

    fn commit_events(store: &Store, events: &[(u64, u64, &str)]) {
        store
            .commit(&Batch {
                events,
                ..Batch::default()
            })
            .unwrap();
    }

    #[test]
    fn events_state_and_epoch_survive_reopening() {
        let dir = tempfile::tempdir().unwrap();
        let epoch = {
            let (store, recovered) = Store::open(dir.path(), retain(), 10).unwrap();
            assert_eq!(recovered.last_seq, 0);
            assert!(recovered.lost.is_none());
            let now = unix_millis(SystemTime::now());
            let state = [("proj", "{\"online\":true}".to_string())];
            store
                .commit(&Batch {
                    events: &events(1..=20, now),
                    state: &state,
                    writes: &[],
                })
                .unwrap();
            recovered.epoch
        };
        let (_, recovered) = Store::open(dir.path(), retain(), 10).unwrap();
        assert_eq!(recovered.epoch, epoch);
        assert_eq!(recovered.last_seq, 20);
        let seqs: Vec<u64> = recovered.events.iter().map(|e| e.0).collect();
        assert_eq!(
            seqs,
            (11..=20).collect::<Vec<_>>(),
            "the newest events, oldest first"
        );
        assert_eq!(
            recovered.state,
            vec![("proj".to_string(), "{\"online\":true}".to_string())]
        );
    }

    #[test]
    fn retention_by_count_keeps_the_newest() {
        let dir = tempfile::tempdir().unwrap();
        let retain = Retention::events(50, Duration::from_secs(3600));
        let (store, _) = Store::open(dir.path(), retain, 1_000).unwrap();
        let now = unix_millis(SystemTime::now());
        for start in (1..=200u64).step_by(40) {
            commit_events(&store, &events(start..=start + 39, now));
        }
        drop(store);
        let (_, recovered) = Store::open(dir.path(), retain, 1_000).unwrap();
        assert_eq!(recovered.events.len(), 50);
        assert_eq!(recovered.events[0].0, 151);
        assert_eq!(recovered.last_seq, 200);
    }

    #[test]
    fn retention_by_age_drops_old_events() {
        let dir = tempfile::tempdir().unwrap();
        let retain = Retention::events(1_000, Duration::from_secs(60));
        let (store, _) = Store::open(dir.path(), retain, 1_000).unwrap();
        let now = unix_millis(SystemTime::now());
        commit_events(&store, &events(1..=5, now - 3_600_000));
        commit_events(&store, &events(6..=8, now));
        drop(store);
        let (_, recovered) = Store::open(dir.path(), retain, 1_000).unwrap();
        let seqs: Vec<u64> = recovered.events.iter().map(|e| e.0).collect();
        assert_eq!(seqs, vec![6, 7, 8]);
    }

    fn audit(seq: u64, at_ms: u64) -> Write {
        Write::Audit {
            seq,
            at_ms,
            json: format!("{{\"seq\":{seq}}}"),
        }
    }

    fn command(n: u64, first_ms: u64) -> Write {
        Write::Command {
            key: format!("panel\0c{n}"),
            first_ms,
            json: format!("{{\"n\":{n}}}"),
        }
    }

    #[test]
    fn audit_and_command_records_have_their_own_caps_by_count_and_age() {
        let dir = tempfile::tempdir().unwrap();
        let retain = Retention {
            audit: 30,
            audit_age: Duration::from_secs(3600),
            commands: 20,
            commands_age: Duration::from_secs(600),
            ..Retention::events(1_000, Duration::from_secs(3600))
        };
        let (store, _) = Store::open(dir.path(), retain, 1_000).unwrap();
        let now = unix_millis(SystemTime::now());
        let hours_ago = now - 2 * 3_600_000;
        // Five of each too old, then more fresh ones than the caps allow.
        let mut writes: Vec<Write> = (1..=5).map(|s| audit(s, hours_ago)).collect();
        writes.extend((6..=50).map(|s| audit(s, now)));
        writes.extend((1..=5).map(|n| command(n, hours_ago)));
        writes.extend((6..=40).map(|n| command(n, now + n)));
        store
            .commit(&Batch {
                writes: &writes,
                ..Batch::default()
            })
            .unwrap();
        drop(store);
        let (_, recovered) = Store::open(dir.path(), retain, 1_000).unwrap();
        let audit_seqs: Vec<u64> = recovered.audit.iter().map(|a| a.0).collect();
        assert_eq!(audit_seqs, (21..=50).collect::<Vec<_>>(), "the newest 30");
        let mut commands: Vec<&str> = recovered.commands.iter().map(|c| c.1.as_str()).collect();
        commands.sort_by_key(|json| json[5..json.len() - 1].parse::<u64>().unwrap());
        assert_eq!(commands.len(), 20, "{commands:?}");
        assert_eq!(commands[0], "{\"n\":21}", "the newest 20 commands");
    }

    #[test]
    fn audit_pages_from_disk_newest_first() {
        let dir = tempfile::tempdir().unwrap();
        let (store, _) = Store::open(dir.path(), retain(), 1_000).unwrap();
        let now = unix_millis(SystemTime::now());
        let writes: Vec<Write> = (1..=25).map(|s| audit(s, now)).collect();
        store
            .commit(&Batch {
                writes: &writes,
                ..Batch::default()
            })
            .unwrap();
        let page = store.audit_before(u64::MAX, 10).unwrap();
        assert_eq!(page.first().unwrap(), "{\"seq\":25}");
        assert_eq!(page.len(), 10);
        let next = store.audit_before(16, 10).unwrap();
        assert_eq!(next.first().unwrap(), "{\"seq\":15}");
        assert_eq!(store.audit_before(3, 10).unwrap().len(), 2);
    }

    #[tokio::test]
    async fn queued_records_become_durable_with_the_next_commit() {
        let dir = tempfile::tempdir().unwrap();
        let (store, _) = Store::open(dir.path(), retain(), 10).unwrap();
        let first = store.enqueue(command(1, 1));
        let second = store.enqueue(command(2, 2));
        assert_eq!(store.queued(), 2);
        let (writes, last) = store.take_writes(10, 10);
        assert_eq!((writes.len(), last), (2, second));
        store
            .commit(&Batch {
                writes: &writes,
                ..Batch::default()
            })
            .unwrap();
        store.committed(last);
        store.written(first).await.unwrap();
        store.written(second).await.unwrap();
    }

    #[tokio::test]
    async fn a_storage_error_fails_waiters_keeps_their_records_and_a_reopen_recovers() {
        let dir = tempfile::tempdir().unwrap();
        let (store, _) = Store::open(dir.path(), retain(), 10).unwrap();
        store.fail_writes(true);
        let ticket = store.enqueue(command(1, 1));
        let (writes, last) = store.take_writes(10, 10);
        let err = store
            .commit(&Batch {
                writes: &writes,
                ..Batch::default()
            })
            .unwrap_err();
        assert!(err.to_string().contains("No space left"), "{err}");
        store.return_writes(writes, last);
        store.failed(&err);
        assert!(matches!(store.health(), Health::Failing(_)));
        assert!(store.written(ticket).await.is_err(), "nobody waits forever");
        assert_eq!(store.queued(), 1, "the record waits for the disk");

        store.fail_writes(false);
        assert!(
            matches!(
                store.commit(&Batch::default()),
                Err(StoreError::Closed { .. })
            ),
            "closed until reopened"
        );
        store.reopen().unwrap();
        let (writes, last) = store.take_writes(10, 10);
        assert_eq!(last, ticket);
        store
            .commit(&Batch {
                writes: &writes,
                ..Batch::default()
            })
            .unwrap();
        store.committed(last);
        assert_eq!(store.health(), Health::Ok);
        store.written(ticket).await.unwrap();
    }

    /// Writes a journal with some history, then damages it with `damage`; the next open
    /// must not panic, must move the file aside and start a new epoch.
    fn damaged_file_starts_afresh(damage: impl FnOnce(&mut std::fs::File, u64)) {
        use std::io::Write as _;
        let dir = tempfile::tempdir().unwrap();
        let old_epoch = {
            let (store, recovered) = Store::open(dir.path(), retain(), 10).unwrap();
            let frame =
                "{\"type\":\"event\",\"device\":\"proj\",\"point\":\"volume\",\"value\":12345678}";
            let now = unix_millis(SystemTime::now());
            for start in (1..=3_000u64).step_by(500) {
                let batch: Vec<(u64, u64, &str)> =
                    (start..start + 500).map(|s| (s, now, frame)).collect();
                commit_events(&store, &batch);
            }
            recovered.epoch
        };
        let path = dir.path().join(FILE_NAME);
        let mut file = std::fs::OpenOptions::new()
            .read(true)
            .write(true)
            .open(&path)
            .unwrap();
        let len = file.metadata().unwrap().len();
        assert!(
            len > 256 * 1024,
            "a file with something in its middle: {len}"
        );
        damage(&mut file, len);
        file.flush().unwrap();
        drop(file);

        let (store, recovered) = Store::open(dir.path(), retain(), 10).expect("opens");
        let lost = recovered.lost.expect("the loss is reported");
        assert!(lost.contains("moved it to"), "{lost}");
        assert_ne!(recovered.epoch, old_epoch, "a new epoch");
        assert_eq!(recovered.last_seq, 0);
        commit_events(&store, &events(1..=3, 1));
        let aside = std::fs::read_dir(dir.path())
            .unwrap()
            .filter_map(|e| e.ok())
            .any(|e| e.file_name().to_string_lossy().contains(".corrupt-"));
        assert!(aside, "the damaged file is kept for inspection");
    }

    #[test]
    fn random_garbage_in_the_middle_of_the_file_starts_a_new_epoch() {
        damaged_file_starts_afresh(|file, len| {
            use std::io::{Seek, SeekFrom, Write as _};
            let mut garbage = vec![0u8; 4096];
            let mut rng = fastrand::Rng::with_seed(7);
            rng.fill(&mut garbage);
            file.seek(SeekFrom::Start(len / 2 / 4096 * 4096)).unwrap();
            file.write_all(&garbage).unwrap();
        });
    }

    #[test]
    fn zeros_over_64_kib_start_a_new_epoch() {
        damaged_file_starts_afresh(|file, len| {
            use std::io::{Seek, SeekFrom, Write as _};
            file.seek(SeekFrom::Start(len / 3 / 4096 * 4096)).unwrap();
            file.write_all(&vec![0u8; 64 * 1024]).unwrap();
        });
    }

    #[test]
    fn a_file_that_is_not_a_journal_is_moved_aside() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(
            dir.path().join(FILE_NAME),
            b"this is not a redb file at all, just garbage bytes",
        )
        .unwrap();
        let (_, recovered) = Store::open(dir.path(), retain(), 10).unwrap();
        let lost = recovered.lost.expect("the loss is reported");
        assert!(
            lost.contains("could not be read") && lost.contains("corrupt"),
            "{lost}"
        );
        assert!(recovered.epoch > 0);
    }

    #[test]
    fn a_second_process_is_refused_with_a_clear_error() {
        let dir = tempfile::tempdir().unwrap();
        let (_first, _) = Store::open(dir.path(), retain(), 10).unwrap();
        let err = Store::open(dir.path(), retain(), 10)
            .err()
            .expect("second open fails");
        assert!(
            err.to_string().contains("in use by another avgate process"),
            "{err}"
        );
    }
}
