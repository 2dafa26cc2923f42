//! The durable store: the journal's events and state, command outcomes and the audit log,
//! in one embedded redb file, so a restart (or a power cut) loses nothing committed.
//!
//! redb has one writer at a time and every durable commit syncs to disk (milliseconds),
//! so callers batch: the journal commits events in groups, and everything here runs on
//! blocking threads, never on the async executor. No write transaction is ever held across
//! an `.await`.

use std::path::{Path, PathBuf};
use std::time::{Duration, SystemTime};

use redb::{Database, ReadableDatabase, ReadableTable, ReadableTableMetadata, TableDefinition};
use tracing::{error, info, warn};

/// `epoch` and `last_seq`: where the sequence series stands.
const META: TableDefinition<&str, u64> = TableDefinition::new("meta");
/// seq → (milliseconds since the Unix epoch, the event as sent to panels).
const EVENTS: TableDefinition<u64, (u64, &str)> = TableDefinition::new("events");
/// device id → its state (JSON).
const STATE: TableDefinition<&str, &str> = TableDefinition::new("state");
/// "client\0id" → a command's record (JSON).
const COMMANDS: TableDefinition<&str, &str> = TableDefinition::new("commands");
/// sequence → one audit entry (JSON).
const AUDIT: TableDefinition<u64, &str> = TableDefinition::new("audit");

/// The store file's name inside the data directory.
pub const FILE_NAME: &str = "journal.redb";

/// Most old rows removed per commit, so retention work never makes one commit slow.
const PRUNE_PER_COMMIT: usize = 2_000;

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
}

/// How long and how much to keep on disk.
#[derive(Debug, Clone, Copy)]
pub struct Retention {
    pub events: usize,
    pub age: Duration,
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

/// One group commit of the journal.
pub struct Batch<'a> {
    pub events: &'a [(u64, u64, &'a str)],
    pub state: &'a [(&'a str, String)],
}

pub struct Store {
    db: Database,
    path: PathBuf,
    retention: Retention,
}

impl Store {
    /// Opens (or creates) the store in `dir`. A file that cannot be read is moved aside
    /// (`journal.redb.corrupt-<time>`) and a fresh one started, so a damaged disk never
    /// turns into a crash loop; [`Recovered::lost`] says what happened.
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
        let (db, lost) = match Database::create(&path) {
            Ok(db) => (db, None),
            Err(redb::DatabaseError::DatabaseAlreadyOpen) => {
                return Err(StoreError::InUse { path });
            }
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
                let db = Database::create(&path).map_err(|e| StoreError::Database {
                    path: path.clone(),
                    source: e.into(),
                })?;
                (db, Some(why))
            }
            Err(e) => {
                return Err(StoreError::Database {
                    path,
                    source: e.into(),
                });
            }
        };
        let store = Store {
            db,
            path,
            retention,
        };
        let mut recovered = store
            .recover(keep_events)
            .map_err(|source| store.error(source))?;
        if recovered.epoch == 0 {
            recovered.epoch = new_epoch();
            recovered.lost = lost.or_else(|| {
                existed.then(|| {
                    format!(
                        "journal {} held no epoch; starting a new one",
                        store.path.display()
                    )
                })
            });
            store
                .set_epoch(recovered.epoch)
                .map_err(|source| store.error(source))?;
            info!(epoch = recovered.epoch, path = %store.path.display(), "new journal");
        } else {
            info!(epoch = recovered.epoch, seq = recovered.last_seq, path = %store.path.display(), "journal recovered");
        }
        Ok((store, recovered))
    }

    fn error(&self, source: redb::Error) -> StoreError {
        StoreError::Database {
            path: self.path.clone(),
            source,
        }
    }

    fn recover(&self, keep_events: usize) -> Result<Recovered, redb::Error> {
        let txn = self.db.begin_read()?;
        let mut recovered = Recovered::default();
        // Tables appear with the first write; a new file has none yet.
        let Ok(meta) = txn.open_table(META) else {
            return Ok(recovered);
        };
        recovered.epoch = meta.get("epoch")?.map_or(0, |v| v.value());
        recovered.last_seq = meta.get("last_seq")?.map_or(0, |v| v.value());
        if let Ok(events) = txn.open_table(EVENTS) {
            let mut newest: Vec<(u64, String)> = events
                .iter()?
                .rev()
                .take(keep_events)
                .map(|row| row.map(|(k, v)| (k.value(), v.value().1.to_string())))
                .collect::<Result<_, _>>()?;
            newest.reverse();
            recovered.events = newest;
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
            let mut newest: Vec<(u64, String)> = audit
                .iter()?
                .rev()
                .take(keep_events)
                .map(|row| row.map(|(k, v)| (k.value(), v.value().to_string())))
                .collect::<Result<_, _>>()?;
            newest.reverse();
            recovered.audit = newest;
        }
        Ok(recovered)
    }

    fn set_epoch(&self, epoch: u64) -> Result<(), redb::Error> {
        let txn = self.db.begin_write()?;
        txn.open_table(META)?.insert("epoch", epoch)?;
        txn.commit()?;
        Ok(())
    }

    /// Commits one group of events and the state they produced, durably, and prunes a
    /// bounded number of rows that fell out of retention.
    pub fn commit(&self, batch: &Batch<'_>) -> Result<(), StoreError> {
        self.write(|txn| {
            let mut events = txn.open_table(EVENTS)?;
            let mut last = None;
            for (seq, ts, frame) in batch.events {
                events.insert(*seq, (*ts, *frame))?;
                last = Some(*seq);
            }
            self.prune_events(&mut events)?;
            drop(events);
            if let Some(last) = last {
                txn.open_table(META)?.insert("last_seq", last)?;
            }
            let mut state = txn.open_table(STATE)?;
            for (device, json) in batch.state {
                state.insert(*device, json.as_str())?;
            }
            Ok(())
        })
    }

    /// Drops events beyond the retained count or age, oldest first, a bounded number at a
    /// time: a backlog is worked off over the next commits instead of stalling one.
    fn prune_events(&self, events: &mut redb::Table<u64, (u64, &str)>) -> Result<(), redb::Error> {
        let excess = (events.len()? as usize).saturating_sub(self.retention.events);
        let cutoff =
            unix_millis(SystemTime::now()).saturating_sub(self.retention.age.as_millis() as u64);
        let mut removed = 0;
        while removed < PRUNE_PER_COMMIT {
            let Some((seq, ts)) = events.first()?.map(|(k, v)| (k.value(), v.value().0)) else {
                break;
            };
            if removed >= excess && ts >= cutoff {
                break;
            }
            events.remove(seq)?;
            removed += 1;
        }
        Ok(())
    }

    /// Visits stored events newest first, starting below seq `before` (all when `None`),
    /// as (seq, milliseconds since the Unix epoch, the event's JSON), until `visit`
    /// returns false. Read-only: it runs beside the writer without blocking it.
    pub fn scan_events_back(
        &self,
        before: Option<u64>,
        mut visit: impl FnMut(u64, u64, &str) -> bool,
    ) -> Result<(), StoreError> {
        let mut scan = || -> Result<(), redb::Error> {
            let txn = self.db.begin_read()?;
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
        scan().map_err(|source| StoreError::Database {
            path: self.path.clone(),
            source,
        })
    }

    /// Records a command's state durably (before it runs, and when it finishes).
    pub fn put_command(&self, key: &str, record: &str) -> Result<(), StoreError> {
        self.write(|txn| {
            txn.open_table(COMMANDS)?.insert(key, record)?;
            Ok(())
        })
    }

    /// Forgets commands older than the dedupe window.
    pub fn remove_commands(&self, keys: &[String]) -> Result<(), StoreError> {
        self.write(|txn| {
            let mut table = txn.open_table(COMMANDS)?;
            for key in keys {
                table.remove(key.as_str())?;
            }
            Ok(())
        })
    }

    /// Appends one audit entry; keeps the audit log within the events' retention count.
    pub fn put_audit(&self, seq: u64, entry: &str) -> Result<(), StoreError> {
        self.write(|txn| {
            let mut audit = txn.open_table(AUDIT)?;
            audit.insert(seq, entry)?;
            let excess = (audit.len()? as usize)
                .saturating_sub(self.retention.events)
                .min(PRUNE_PER_COMMIT);
            for _ in 0..excess {
                audit.pop_first()?;
            }
            Ok(())
        })
    }

    fn write(
        &self,
        body: impl FnOnce(&redb::WriteTransaction) -> Result<(), redb::Error>,
    ) -> Result<(), StoreError> {
        let run = || -> Result<(), redb::Error> {
            let txn = self.db.begin_write()?;
            body(&txn)?;
            txn.commit()?;
            Ok(())
        };
        run().map_err(|source| {
            warn!(path = %self.path.display(), "journal write failed: {source}");
            self.error(source)
        })
    }
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

    const RETAIN: Retention = Retention {
        events: 1_000,
        age: Duration::from_secs(3600),
    };

    #[test]
    fn events_state_and_epoch_survive_reopening() {
        let dir = tempfile::tempdir().unwrap();
        let epoch = {
            let (store, recovered) = Store::open(dir.path(), RETAIN, 10).unwrap();
            assert_eq!(recovered.last_seq, 0);
            assert!(recovered.lost.is_none());
            let now = unix_millis(SystemTime::now());
            let events: Vec<(u64, u64, &str)> = (1..=20).map(|s| (s, now, "{}")).collect();
            let state = [("proj", "{\"online\":true}".to_string())];
            store
                .commit(&Batch {
                    events: &events,
                    state: &state,
                })
                .unwrap();
            recovered.epoch
        };
        let (_, recovered) = Store::open(dir.path(), RETAIN, 10).unwrap();
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
        let retain = Retention {
            events: 50,
            age: Duration::from_secs(3600),
        };
        let (store, _) = Store::open(dir.path(), retain, 1_000).unwrap();
        let now = unix_millis(SystemTime::now());
        for chunk in (1..=200u64).collect::<Vec<_>>().chunks(40) {
            let events: Vec<(u64, u64, &str)> = chunk.iter().map(|s| (*s, now, "{}")).collect();
            store
                .commit(&Batch {
                    events: &events,
                    state: &[],
                })
                .unwrap();
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
        let retain = Retention {
            events: 1_000,
            age: Duration::from_secs(60),
        };
        let (store, _) = Store::open(dir.path(), retain, 1_000).unwrap();
        let now = unix_millis(SystemTime::now());
        let old: Vec<(u64, u64, &str)> = (1..=5).map(|s| (s, now - 3_600_000, "{}")).collect();
        store
            .commit(&Batch {
                events: &old,
                state: &[],
            })
            .unwrap();
        let fresh: Vec<(u64, u64, &str)> = (6..=8).map(|s| (s, now, "{}")).collect();
        store
            .commit(&Batch {
                events: &fresh,
                state: &[],
            })
            .unwrap();
        drop(store);
        let (_, recovered) = Store::open(dir.path(), retain, 1_000).unwrap();
        let seqs: Vec<u64> = recovered.events.iter().map(|e| e.0).collect();
        assert_eq!(seqs, vec![6, 7, 8]);
    }

    #[test]
    fn a_corrupt_file_is_moved_aside_and_a_new_epoch_starts() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(
            dir.path().join(FILE_NAME),
            b"this is not a redb file at all, just garbage bytes",
        )
        .unwrap();
        let (_, recovered) = Store::open(dir.path(), RETAIN, 10).unwrap();
        let lost = recovered.lost.expect("the loss is reported");
        assert!(
            lost.contains("could not be read") && lost.contains("corrupt"),
            "{lost}"
        );
        assert!(recovered.epoch > 0);
        let aside = std::fs::read_dir(dir.path())
            .unwrap()
            .filter_map(|e| e.ok())
            .any(|e| e.file_name().to_string_lossy().contains(".corrupt-"));
        assert!(aside, "the damaged file is kept for inspection");
    }

    #[test]
    fn a_second_process_is_refused_with_a_clear_error() {
        let dir = tempfile::tempdir().unwrap();
        let (_first, _) = Store::open(dir.path(), RETAIN, 10).unwrap();
        let err = Store::open(dir.path(), RETAIN, 10)
            .err()
            .expect("second open fails");
        assert!(
            err.to_string().contains("in use by another avgate process"),
            "{err}"
        );
    }
}
