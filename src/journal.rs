//! The journal: the one ordered record of everything devices reported.
//!
//! Every change gets the next sequence number of one gap-free series per epoch. The
//! journal keeps the current state of every device (for snapshots) and a bounded window of
//! recent events (for panels that resume).
//!
//! Panels never get their own queue: each session holds a cursor (the last seq it sent)
//! and reads forward from here. A panel that falls behind the window gets a snapshot
//! instead. Each event is serialized to JSON once, when it is recorded; every panel sends
//! the same bytes.
//!
//! With a [`Store`], events are committed to disk in groups by a committer task, and a seq
//! becomes visible to panels (head, window, snapshot) only once it is on disk: a panel can
//! never have seen an event that a crash then takes back. Two states are kept for that:
//! `latest` (what devices said, committed or not: used to detect changes) and `committed`
//! (what panels may see). Both change only through `DeviceState::apply`, so they agree
//! once the pending events are committed.
//!
//! Staleness: while a device is offline, and after a restart until it is read again, its
//! last known values are kept but listed as stale. The next reading of a stale point is
//! always an event, even if the value is the same, so panels learn it is fresh again.

use std::collections::{BTreeMap, BTreeSet, HashMap, VecDeque};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::{Duration, SystemTime};

use axum::extract::ws::Utf8Bytes;
use serde::{Deserialize, Serialize};
use serde_json::Value;
use tokio::sync::watch;
use tokio::time::Instant;
use tokio_util::sync::CancellationToken;
use tracing::{error, info, warn};

use crate::store::{Batch, Health, Recovered, Store, StoreError, new_epoch, unix_millis};

/// The point name that carries a device's connection state.
pub const ONLINE: &str = "online";
/// The point name that carries why a device is offline or failing (`null` when fine).
pub const ERROR: &str = "error";

/// One recorded change, ready to send.
#[derive(Debug)]
pub struct Event {
    pub seq: u64,
    pub device: String,
    pub point: String,
    /// The event as the panel protocol's JSON text, serialized once.
    pub frame: Utf8Bytes,
}

/// What a session gets when it reads forward from its cursor.
pub enum Read {
    /// The next events after the cursor, in order (empty when the cursor is at the head).
    Events(Vec<Arc<Event>>),
    /// The events after the cursor have left the window: the reader needs a snapshot.
    Gap,
}

/// Current state of every device at one sequence number.
#[derive(Debug, Clone, Serialize)]
pub struct Snapshot {
    pub epoch: u64,
    pub seq: u64,
    pub devices: BTreeMap<String, DeviceState>,
}

#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct DeviceState {
    pub online: bool,
    /// Why the device is offline or failing, when it is.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub error: Option<String>,
    pub points: BTreeMap<String, Value>,
    /// Points whose value is the last known one, not a current reading.
    #[serde(default, skip_serializing_if = "BTreeSet::is_empty")]
    pub stale: BTreeSet<String>,
}

impl DeviceState {
    /// The single way state changes, for the latest and the committed state alike.
    fn apply(&mut self, point: &str, value: &Value) {
        match point {
            ONLINE => {
                self.online = value.as_bool().unwrap_or(false);
                if !self.online {
                    self.stale.extend(self.points.keys().cloned());
                }
            }
            ERROR => self.error = value.as_str().map(str::to_string),
            _ => {
                self.points.insert(point.to_string(), value.clone());
                self.stale.remove(point);
            }
        }
    }

    /// Whether recording `value` for `point` tells panels anything new.
    fn changes(&self, point: &str, value: &Value) -> bool {
        match point {
            ONLINE => value.as_bool() != Some(self.online),
            ERROR => value.as_str() != self.error.as_deref(),
            _ => self.points.get(point) != Some(value) || self.stale.contains(point),
        }
    }
}

#[derive(Serialize)]
struct EventFrame<'a> {
    #[serde(rename = "type")]
    kind: &'static str,
    seq: u64,
    ts: String,
    device: &'a str,
    point: &'a str,
    value: &'a Value,
}

/// An event with what it takes to commit it.
struct Pending {
    event: Arc<Event>,
    value: Value,
    ts_ms: u64,
}

/// The journal's storage as health checks see it.
#[derive(Debug, Clone, Serialize)]
pub struct Storage {
    /// Configured to keep events on disk.
    pub durable: bool,
    /// Why the disk cannot be written now; events then flow from memory (see
    /// [`Journal::run_committer`]) and commands are refused with `storage_unavailable`.
    pub failing: Option<String>,
    /// Events waiting for the next commit.
    pub uncommitted: usize,
    /// Command records and audit entries waiting for the next commit.
    pub queued: usize,
    /// How long the oldest uncommitted event has waited, in milliseconds: a disk that
    /// hangs rather than fails shows here.
    pub oldest_uncommitted_ms: u64,
}

/// How the journal stores events.
pub struct Durability {
    pub store: Arc<Store>,
    pub recovered: Recovered,
    /// Most events per disk commit.
    pub max_batch: usize,
}

pub struct Journal {
    /// Identifies this series of sequence numbers; a panel's resume point is only
    /// meaningful in the epoch it came from. Changes only when the disk fails
    /// ([`Journal::fall_back`]).
    epoch: AtomicU64,
    inner: Mutex<Inner>,
    /// The latest committed seq, for sessions to wait on. A watch never lags: a slow
    /// reader simply sees the newest value.
    head: watch::Sender<u64>,
    store: Option<Arc<Store>>,
    max_batch: usize,
    /// Cancelled when the committer has stopped: nobody waits for the head any more.
    closed: CancellationToken,
}

struct Inner {
    /// The last seq handed out (committed or not).
    assigned: u64,
    latest: BTreeMap<String, DeviceState>,
    /// The last seq handed out for each device: what a command's result waits for.
    device_seqs: HashMap<String, u64>,
    /// Handed out, not yet on disk, in seq order.
    pending: VecDeque<Pending>,
    committed_seq: u64,
    committed: BTreeMap<String, DeviceState>,
    window: VecDeque<Arc<Event>>,
    capacity: usize,
    /// The disk failed: events are published as they come (under an epoch that was never
    /// on disk) until the store is back.
    unrecorded: bool,
    /// After a fall back to memory, a cursor at or below this seq belongs to the old epoch
    /// and reads a gap, so every panel gets a snapshot of the new one.
    floor: Option<u64>,
}

/// Most command records written per commit (ahead of audit entries: panels wait for them).
const MAX_COMMANDS_PER_COMMIT: usize = 4_096;
/// Most audit entries written per commit: enough to keep up with any panel's pace, few
/// enough that a commit stays short under a flood.
const MAX_AUDIT_PER_COMMIT: usize = 512;
/// Reopening a failed store: first retry after this, doubling up to [`REOPEN_MAX`].
const REOPEN_FIRST: Duration = Duration::from_millis(250);
const REOPEN_MAX: Duration = Duration::from_secs(30);

/// What one commit attempt came to.
enum Committed {
    /// Nothing was waiting.
    Idle,
    /// A batch is on disk; there may be more.
    More,
    Failed(StoreError),
}

impl Journal {
    /// A journal in memory only: a restart starts a new epoch.
    pub fn in_memory(capacity: usize, devices: impl IntoIterator<Item = String>) -> Self {
        let state: BTreeMap<String, DeviceState> = devices
            .into_iter()
            .map(|id| (id, DeviceState::default()))
            .collect();
        Self::build(new_epoch(), 0, state, VecDeque::new(), capacity, None, 1)
    }

    /// A journal continuing what `durability.recovered` holds. Devices no longer in the
    /// site are dropped; restored values are stale until their device is read again.
    pub fn durable(
        capacity: usize,
        devices: impl IntoIterator<Item = String>,
        durability: Durability,
    ) -> Self {
        let Durability {
            store,
            recovered,
            max_batch,
        } = durability;
        let mut stored: BTreeMap<String, DeviceState> = recovered
            .state
            .iter()
            .filter_map(|(id, json)| match serde_json::from_str(json) {
                Ok(state) => Some((id.clone(), state)),
                Err(e) => {
                    warn!(device = %id, "stored state unreadable, starting it empty: {e}");
                    None
                }
            })
            .collect();
        let state = devices
            .into_iter()
            .map(|id| {
                let mut state = stored.remove(&id).unwrap_or_default();
                state.stale = state.points.keys().cloned().collect();
                (id, state)
            })
            .collect();
        let window = recovered
            .events
            .iter()
            .filter_map(|(seq, frame)| event_from_frame(*seq, frame))
            .collect();
        let journal = Self::build(
            recovered.epoch,
            recovered.last_seq,
            state,
            window,
            capacity,
            Some(store),
            max_batch,
        );
        // Panels that resume from before the restart must learn that these devices are
        // not known to be connected any more (and so their points are stale).
        let was_online: Vec<String> = journal
            .lock()
            .latest
            .iter()
            .filter(|(_, s)| s.online)
            .map(|(id, _)| id.clone())
            .collect();
        for id in was_online {
            journal.set_online(
                &id,
                false,
                Some("not reconnected yet since the gateway restarted".into()),
            );
        }
        journal
    }

    fn build(
        epoch: u64,
        seq: u64,
        state: BTreeMap<String, DeviceState>,
        mut window: VecDeque<Arc<Event>>,
        capacity: usize,
        store: Option<Arc<Store>>,
        max_batch: usize,
    ) -> Self {
        let capacity = capacity.max(1);
        while window.len() > capacity {
            window.pop_front();
        }
        Self {
            epoch: AtomicU64::new(epoch),
            inner: Mutex::new(Inner {
                assigned: seq,
                latest: state.clone(),
                device_seqs: HashMap::new(),
                pending: VecDeque::new(),
                committed_seq: seq,
                committed: state,
                window,
                capacity,
                unrecorded: false,
                floor: None,
            }),
            head: watch::channel(seq).0,
            store,
            max_batch: max_batch.max(1),
            closed: CancellationToken::new(),
        }
    }

    pub fn epoch(&self) -> u64 {
        self.epoch.load(Ordering::SeqCst)
    }

    /// The latest seq panels may see.
    pub fn head(&self) -> u64 {
        *self.head.borrow()
    }

    /// Wakes whenever the head moves.
    pub fn watch(&self) -> watch::Receiver<u64> {
        self.head.subscribe()
    }

    /// Waits until panels may see `seq` (the head reached it), or the journal stopped.
    pub async fn wait_for(&self, seq: u64) {
        let mut head = self.head.subscribe();
        tokio::select! {
            _ = head.wait_for(|h| *h >= seq) => {}
            _ = self.closed.cancelled() => {}
        }
    }

    /// The last seq handed out for `device` (0 if none yet). A command's outcome carries
    /// it, so its result can wait until the events its device reported before answering
    /// are visible.
    pub fn device_seq(&self, device: &str) -> u64 {
        self.lock().device_seqs.get(device).copied().unwrap_or(0)
    }

    /// The store behind this journal, if it is durable.
    pub fn store(&self) -> Option<&Arc<Store>> {
        self.store.as_ref()
    }

    /// Records a point's value; returns its seq, or `None` when it tells nothing new.
    pub fn record(&self, device: &str, point: &str, value: Value) -> Option<u64> {
        let mut inner = self.lock();
        let event = self.append_if_changed(&mut inner, device, point, value)?;
        let seq = event.event.seq;
        self.settle(&mut inner, vec![event]);
        Some(seq)
    }

    /// Records everything one device answer reported, in order, and wakes panel writers
    /// once for all of it. Returns each update's seq (`None`: nothing new).
    pub fn record_all(&self, device: &str, updates: &[(String, Value)]) -> Vec<Option<u64>> {
        let mut inner = self.lock();
        let mut events = Vec::new();
        let seqs = updates
            .iter()
            .map(|(point, value)| {
                let event = self.append_if_changed(&mut inner, device, point, value.clone())?;
                let seq = event.event.seq;
                events.push(event);
                Some(seq)
            })
            .collect();
        self.settle(&mut inner, events);
        seqs
    }

    /// Lists the points a device declares but has not reported yet as stale (unknown: in
    /// `stale`, absent from `points`), so panels see every point, read or not.
    pub fn expect_points(&self, device: &str, points: impl IntoIterator<Item = String>) {
        let mut inner = self.lock();
        let points: Vec<String> = points.into_iter().collect();
        let Inner {
            latest, committed, ..
        } = &mut *inner;
        for state in [latest, committed] {
            let state = state.entry(device.to_string()).or_default();
            let unread = points.iter().filter(|p| !state.points.contains_key(*p));
            state.stale.extend(unread.cloned());
        }
    }

    /// Records a device going online or offline, with the reason when offline.
    pub fn set_online(&self, device: &str, online: bool, error: Option<String>) -> Option<u64> {
        let mut inner = self.lock();
        let online_event = self.append_if_changed(&mut inner, device, ONLINE, Value::Bool(online));
        let error_event = self.append_if_changed(
            &mut inner,
            device,
            ERROR,
            error.map_or(Value::Null, Value::String),
        );
        let seq = error_event
            .as_ref()
            .or(online_event.as_ref())
            .map(|e| e.event.seq);
        let events = online_event.into_iter().chain(error_event).collect();
        self.settle(&mut inner, events);
        seq
    }

    fn append_if_changed(
        &self,
        inner: &mut Inner,
        device: &str,
        point: &str,
        value: Value,
    ) -> Option<Pending> {
        let state = inner.latest.entry(device.to_string()).or_default();
        if !state.changes(point, &value) {
            return None;
        }
        state.apply(point, &value);
        inner.assigned += 1;
        let seq = inner.assigned;
        inner.device_seqs.insert(device.to_string(), seq);
        let now = SystemTime::now();
        let frame = EventFrame {
            kind: "event",
            seq,
            ts: humantime::format_rfc3339_millis(now).to_string(),
            device,
            point,
            value: &value,
        };
        let text = serde_json::to_string(&frame).expect("an event always serializes");
        let event = Arc::new(Event {
            seq,
            device: device.to_string(),
            point: point.to_string(),
            frame: text.into(),
        });
        Some(Pending {
            event,
            value,
            ts_ms: unix_millis(now),
        })
    }

    /// Sends new events on their way: to the committer with a working store, else
    /// straight to panels.
    fn settle(&self, inner: &mut Inner, events: Vec<Pending>) {
        if events.is_empty() {
            return;
        }
        match &self.store {
            Some(store) if !inner.unrecorded => {
                inner.pending.extend(events);
                store.wake.notify_one();
            }
            _ => self.publish(inner, events.into_iter()),
        }
    }

    /// Makes committed events visible: state, window, head. Called with the lock held, in
    /// seq order, so heads are announced in order; panel writers wake once per call.
    fn publish(&self, inner: &mut Inner, committed: impl Iterator<Item = Pending>) {
        let before = inner.committed_seq;
        for Pending { event, value, .. } in committed {
            inner
                .committed
                .entry(event.device.clone())
                .or_default()
                .apply(&event.point, &value);
            inner.committed_seq = event.seq;
            if inner.window.len() == inner.capacity {
                inner.window.pop_front();
            }
            inner.window.push_back(event);
        }
        if inner.committed_seq != before {
            self.head.send_replace(inner.committed_seq);
        }
    }

    /// Commits pending events and queued records to the store in groups until `stop`,
    /// then commits what is left. Each group is one disk sync, however many events and
    /// records it holds, so the rate of syncs stays bounded while events flow at any rate.
    ///
    /// After a storage error the journal falls back to memory (`Journal::fall_back`) and
    /// the committer reopens the store with backoff until a commit succeeds again.
    pub async fn run_committer(self: Arc<Self>, stop: CancellationToken) {
        let Some(store) = self.store.clone() else {
            return;
        };
        let mut retry: Option<(Instant, Duration)> = None;
        loop {
            let stopping = tokio::select! {
                _ = store.wake.notified() => false,
                _ = stop.cancelled() => true,
                _ = tokio::time::sleep_until(retry.map_or_else(Instant::now, |r| r.0)), if retry.is_some() => false,
            };
            if let Some((at, delay)) = retry {
                if stopping {
                    break;
                }
                if Instant::now() >= at {
                    retry = match self.recover_store(&store).await {
                        Ok(()) => None,
                        Err(e) => {
                            let delay = (delay * 2).min(REOPEN_MAX);
                            warn!("{e}; next attempt in {delay:?}");
                            Some((Instant::now() + delay, delay))
                        }
                    };
                }
                continue;
            }
            loop {
                match self.commit_once(&store).await {
                    Committed::More => continue,
                    Committed::Idle => break,
                    Committed::Failed(e) => {
                        store.failed(&e);
                        self.fall_back(&e);
                        retry = Some((Instant::now() + REOPEN_FIRST, REOPEN_FIRST));
                        break;
                    }
                }
            }
            if stopping {
                break;
            }
        }
        self.closed.cancel();
    }

    /// The disk failed: panels must keep getting events, but nothing a panel saw may be
    /// taken back by a restart, and the disk cannot say what was seen. So the series moves
    /// to a new epoch that was never on disk: pending events are published under it, every
    /// panel gets a snapshot of it, and a restart (which resumes the old epoch from disk)
    /// gives every panel a fresh snapshot instead of replaying something else under seqs
    /// it already saw.
    fn fall_back(&self, why: &StoreError) {
        let mut inner = self.lock();
        if inner.unrecorded {
            return;
        }
        let epoch = new_epoch().max(self.epoch() + 1);
        self.epoch.store(epoch, Ordering::SeqCst);
        inner.unrecorded = true;
        let pending: Vec<Pending> = inner.pending.drain(..).collect();
        self.publish(&mut inner, pending.into_iter());
        // A panel behind this point gets the snapshot at once, one at the head with the
        // next event (nothing it has is wrong until then).
        inner.floor = Some(inner.committed_seq);
        error!(
            epoch,
            seq = inner.committed_seq,
            "{why}; the journal runs in memory under a new epoch until the disk is back: panels get a fresh snapshot, commands are refused with storage_unavailable"
        );
    }

    /// Reopens the store and writes the current state as the start of the series on disk;
    /// from then on events are committed again before panels see them.
    async fn recover_store(&self, store: &Arc<Store>) -> Result<(), StoreError> {
        let reopening = store.clone();
        let reopened = tokio::task::spawn_blocking(move || reopening.reopen()).await;
        match reopened {
            Ok(Ok(())) => {}
            Ok(Err(e)) => return Err(e),
            Err(e) => {
                return Err(StoreError::Panicked {
                    path: store.path().to_path_buf(),
                    message: e.to_string(),
                });
            }
        }
        let (epoch, seq, state) = {
            let mut inner = self.lock();
            // Events from here on wait for the disk again.
            inner.unrecorded = false;
            let state: Vec<(String, String)> = inner
                .committed
                .iter()
                .map(|(id, s)| {
                    let json = serde_json::to_string(s).expect("state serializes");
                    (id.clone(), json)
                })
                .collect();
            (self.epoch(), inner.committed_seq, state)
        };
        let (writes, last_ticket) =
            store.take_writes(MAX_COMMANDS_PER_COMMIT, MAX_AUDIT_PER_COMMIT);
        let writer = store.clone();
        let anchored = tokio::task::spawn_blocking(move || {
            let result = writer.anchor(epoch, seq, &state, &writes);
            (result, writes)
        })
        .await;
        let failure = match anchored {
            Ok((Ok(()), _)) => {
                store.committed(last_ticket);
                info!(
                    epoch,
                    seq, "journal writable again: the series continues on disk from here"
                );
                store.wake.notify_one();
                return Ok(());
            }
            Ok((Err(e), writes)) => {
                store.return_writes(writes, last_ticket);
                e
            }
            Err(e) => StoreError::Panicked {
                path: store.path().to_path_buf(),
                message: e.to_string(),
            },
        };
        store.failed(&failure);
        let mut inner = self.lock();
        inner.unrecorded = true;
        let pending: Vec<Pending> = inner.pending.drain(..).collect();
        self.publish(&mut inner, pending.into_iter());
        Err(failure)
    }

    /// Commits up to one batch of events and queued records.
    async fn commit_once(&self, store: &Arc<Store>) -> Committed {
        let (events, state, count) = {
            let inner = self.lock();
            let batch: Vec<&Pending> = inner.pending.iter().take(self.max_batch).collect();
            let events: Vec<(u64, u64, String)> = batch
                .iter()
                .map(|p| (p.event.seq, p.ts_ms, p.event.frame.as_str().to_string()))
                .collect();
            // The state each touched device will have once this batch is committed.
            let mut touched: BTreeMap<&str, DeviceState> = BTreeMap::new();
            for p in &batch {
                touched
                    .entry(p.event.device.as_str())
                    .or_insert_with(|| {
                        inner
                            .committed
                            .get(&p.event.device)
                            .cloned()
                            .unwrap_or_default()
                    })
                    .apply(&p.event.point, &p.value);
            }
            let state: Vec<(String, String)> = touched
                .into_iter()
                .map(|(id, s)| {
                    (
                        id.to_string(),
                        serde_json::to_string(&s).expect("state serializes"),
                    )
                })
                .collect();
            (events, state, batch.len())
        };
        let (writes, last_ticket) =
            store.take_writes(MAX_COMMANDS_PER_COMMIT, MAX_AUDIT_PER_COMMIT);
        if count == 0 && writes.is_empty() {
            return Committed::Idle;
        }
        let writer = store.clone();
        let started = std::time::Instant::now();
        let written = tokio::task::spawn_blocking(move || {
            let events: Vec<(u64, u64, &str)> = events
                .iter()
                .map(|(s, t, f)| (*s, *t, f.as_str()))
                .collect();
            let state: Vec<(&str, String)> =
                state.iter().map(|(d, s)| (d.as_str(), s.clone())).collect();
            let result = writer.commit(&Batch {
                events: &events,
                state: &state,
                writes: &writes,
            });
            (result, writes)
        })
        .await;
        match written {
            Ok((Ok(()), _)) => {
                metrics::histogram!(crate::metrics::JOURNAL_COMMIT_DURATION)
                    .record(started.elapsed().as_secs_f64());
                let mut inner = self.lock();
                let committed: Vec<Pending> = inner.pending.drain(..count).collect();
                self.publish(&mut inner, committed.into_iter());
                drop(inner);
                store.committed(last_ticket);
                Committed::More
            }
            Ok((Err(e), writes)) => {
                // Nothing is published as committed until it is on disk; the records go
                // back to the front of the queue for the store's return.
                store.return_writes(writes, last_ticket);
                Committed::Failed(e)
            }
            Err(e) => Committed::Failed(StoreError::Panicked {
                path: store.path().to_path_buf(),
                message: e.to_string(),
            }),
        }
    }

    /// Up to `max` events after `cursor`, or [`Read::Gap`] when some of them are gone.
    pub fn read_after(&self, cursor: u64, max: usize) -> Read {
        let inner = self.lock();
        if cursor >= inner.committed_seq {
            return Read::Events(Vec::new());
        }
        if inner.floor.is_some_and(|floor| cursor <= floor) {
            return Read::Gap;
        }
        let Some(first) = inner.window.front().map(|e| e.seq) else {
            return Read::Gap;
        };
        if cursor + 1 < first {
            return Read::Gap;
        }
        let start = (cursor + 1 - first) as usize;
        Read::Events(inner.window.range(start..).take(max).cloned().collect())
    }

    /// Whether a panel that last saw `seq` of `epoch` can be brought up to date by replay.
    pub fn can_resume(&self, epoch: u64, seq: u64) -> bool {
        if epoch != self.epoch() {
            return false;
        }
        let inner = self.lock();
        seq == inner.committed_seq
            || inner
                .window
                .front()
                .is_some_and(|e| seq + 1 >= e.seq && seq <= inner.committed_seq)
    }

    pub fn snapshot(&self) -> Snapshot {
        let inner = self.lock();
        Snapshot {
            epoch: self.epoch(),
            seq: inner.committed_seq,
            devices: inner.committed.clone(),
        }
    }

    /// One device's state as panels may see it (committed), if the journal knows it.
    pub fn device_state(&self, device: &str) -> Option<DeviceState> {
        self.lock().committed.get(device).cloned()
    }

    /// Whether the device is online now (a cheap check for the router).
    pub fn is_online(&self, device: &str) -> bool {
        self.lock().latest.get(device).is_some_and(|d| d.online)
    }

    /// Why the device is offline or failing, if it is.
    pub fn device_error(&self, device: &str) -> Option<String> {
        self.lock().latest.get(device).and_then(|d| d.error.clone())
    }

    /// Events recorded but not yet on disk (0 without a store).
    pub fn uncommitted(&self) -> usize {
        self.lock().pending.len()
    }

    /// How the journal's storage stands, for health checks.
    pub fn storage(&self) -> Storage {
        let (uncommitted, oldest) = {
            let inner = self.lock();
            (inner.pending.len(), inner.pending.front().map(|p| p.ts_ms))
        };
        let oldest_uncommitted_ms =
            oldest.map_or(0, |at| unix_millis(SystemTime::now()).saturating_sub(at));
        match &self.store {
            None => Storage {
                durable: false,
                failing: None,
                uncommitted,
                queued: 0,
                oldest_uncommitted_ms,
            },
            Some(store) => Storage {
                durable: true,
                failing: match store.health() {
                    Health::Ok => None,
                    Health::Failing(why) => Some(why),
                },
                uncommitted,
                queued: store.queued(),
                oldest_uncommitted_ms,
            },
        }
    }

    fn lock(&self) -> MutexGuard<'_, Inner> {
        // A panic while holding this lock cannot leave the data half-written (every
        // mutation is a single push or insert), so a poisoned lock is still usable.
        self.inner.lock().unwrap_or_else(|p| p.into_inner())
    }
}

/// Rebuilds a window entry from the frame stored on disk.
fn event_from_frame(seq: u64, frame: &str) -> Option<Arc<Event>> {
    let value: Value = serde_json::from_str(frame).ok()?;
    let device = value["device"].as_str()?.to_string();
    let point = value["point"].as_str()?.to_string();
    Some(Arc::new(Event {
        seq,
        device,
        point,
        frame: frame.to_string().into(),
    }))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::store::Retention;
    use serde_json::json;

    fn seqs(read: Read) -> Vec<u64> {
        match read {
            Read::Events(events) => events.iter().map(|e| e.seq).collect(),
            Read::Gap => panic!("unexpected gap"),
        }
    }

    fn memory(capacity: usize) -> Journal {
        Journal::in_memory(capacity, ["p".to_string()])
    }

    #[test]
    fn unchanged_values_are_not_recorded() {
        let journal = memory(10);
        assert_eq!(journal.record("p", "power", json!("on")), Some(1));
        assert_eq!(journal.record("p", "power", json!("on")), None);
        assert_eq!(journal.record("p", "power", json!("off")), Some(2));
        assert_eq!(journal.head(), 2);
    }

    #[test]
    fn readers_get_exactly_what_follows_their_cursor() {
        let journal = memory(100);
        for i in 0..10 {
            journal.record("p", "volume", json!(i));
        }
        assert_eq!(
            seqs(journal.read_after(0, 100)),
            (1..=10).collect::<Vec<_>>()
        );
        assert_eq!(seqs(journal.read_after(7, 100)), vec![8, 9, 10]);
        assert_eq!(seqs(journal.read_after(3, 2)), vec![4, 5]);
        assert!(seqs(journal.read_after(10, 100)).is_empty());
    }

    #[test]
    fn a_cursor_behind_the_window_reads_a_gap() {
        let journal = memory(5);
        for i in 0..12 {
            journal.record("p", "volume", json!(i));
        }
        assert!(matches!(journal.read_after(6, 10), Read::Gap));
        assert_eq!(seqs(journal.read_after(7, 10)), vec![8, 9, 10, 11, 12]);
        assert!(journal.can_resume(journal.epoch(), 7));
        assert!(!journal.can_resume(journal.epoch(), 6));
        assert!(!journal.can_resume(journal.epoch() + 1, 12));
        assert!(!journal.can_resume(journal.epoch(), 13));
    }

    #[test]
    fn events_are_serialized_once_in_protocol_form() {
        let journal = memory(5);
        journal.record("p", "power", json!("warming"));
        let Read::Events(events) = journal.read_after(0, 1) else {
            panic!()
        };
        let parsed: Value = serde_json::from_str(events[0].frame.as_str()).unwrap();
        assert_eq!(parsed["type"], "event");
        assert_eq!(parsed["seq"], 1);
        assert_eq!(parsed["device"], "p");
        assert_eq!(parsed["point"], "power");
        assert_eq!(parsed["value"], "warming");
        assert!(humantime::parse_rfc3339(parsed["ts"].as_str().unwrap()).is_ok());
    }

    #[test]
    fn online_and_error_are_events_and_in_the_snapshot() {
        let journal = memory(10);
        assert_eq!(journal.set_online("p", true, None), Some(1));
        assert_eq!(journal.set_online("p", true, None), None);
        assert_eq!(
            journal.set_online("p", false, Some("refused".into())),
            Some(3)
        );
        let snap = journal.snapshot();
        assert_eq!(snap.seq, 3);
        assert!(!snap.devices["p"].online);
        assert_eq!(snap.devices["p"].error.as_deref(), Some("refused"));
    }

    #[test]
    fn offline_makes_points_stale_and_the_next_reading_is_an_event_even_if_equal() {
        let journal = memory(10);
        journal.set_online("p", true, None);
        journal.record("p", "power", json!("on"));
        journal.set_online("p", false, Some("gone".into()));
        assert_eq!(
            journal.snapshot().devices["p"].stale,
            BTreeSet::from(["power".to_string()])
        );
        journal.set_online("p", true, None);
        assert!(
            journal.record("p", "power", json!("on")).is_some(),
            "a stale point's reading is news"
        );
        assert!(journal.snapshot().devices["p"].stale.is_empty());
        assert_eq!(journal.record("p", "power", json!("on")), None);
    }

    fn durable(dir: &std::path::Path) -> Arc<Journal> {
        let retention = Retention::events(10_000, Duration::from_secs(3600));
        let (store, recovered) = Store::open(dir, retention, 100).unwrap();
        let durability = Durability {
            store: Arc::new(store),
            recovered,
            max_batch: 64,
        };
        Arc::new(Journal::durable(100, ["p".to_string()], durability))
    }

    #[tokio::test]
    async fn durable_events_are_visible_only_once_committed_and_survive_a_restart() {
        let dir = tempfile::tempdir().unwrap();
        let journal = durable(dir.path());
        let stop = CancellationToken::new();
        let committer = tokio::spawn(journal.clone().run_committer(stop.clone()));
        let mut head = journal.watch();

        journal.set_online("p", true, None);
        journal.record("p", "power", json!("on"));
        // Seqs are handed out at once but published only after the commit.
        head.wait_for(|h| *h == 2).await.unwrap();
        assert_eq!(journal.uncommitted(), 0);
        let epoch = journal.epoch();
        stop.cancel();
        committer.await.unwrap();
        drop(journal);

        let restarted = durable(dir.path());
        assert_eq!(restarted.epoch(), epoch, "same epoch after a restart");
        assert_eq!(restarted.head(), 2, "the sequence continues");
        assert!(
            restarted.can_resume(epoch, 1),
            "resume points from before the restart still work"
        );
        assert_eq!(seqs(restarted.read_after(1, 10)), vec![2]);
        let snap = restarted.snapshot();
        assert_eq!(
            snap.devices["p"].points["power"], "on",
            "last known value restored"
        );
        assert!(
            snap.devices["p"].stale.contains("power"),
            "but marked stale"
        );
    }

    #[tokio::test]
    async fn nothing_uncommitted_is_ever_published() {
        let dir = tempfile::tempdir().unwrap();
        let journal = durable(dir.path());
        // No committer running: recorded events stay pending and invisible.
        journal.record("p", "power", json!("on"));
        assert_eq!(journal.head(), 0);
        assert!(seqs(journal.read_after(0, 10)).is_empty());
        assert!(journal.snapshot().devices["p"].points.is_empty());
        assert_eq!(journal.uncommitted(), 1);
        drop(journal);
        // Lost in the "crash", and never seen by anyone: the series continues from 0.
        let restarted = durable(dir.path());
        assert_eq!(restarted.head(), 0);
    }

    #[test]
    fn one_device_answer_is_recorded_at_once_and_each_device_knows_its_last_seq() {
        let journal = Journal::in_memory(10, ["p".to_string(), "q".to_string()]);
        let mut head = journal.watch();
        head.borrow_and_update();
        let updates = vec![
            ("power".to_string(), json!("on")),
            ("input".to_string(), json!("hdmi1")),
            ("power".to_string(), json!("on")),
        ];
        assert_eq!(
            journal.record_all("p", &updates),
            vec![Some(1), Some(2), None]
        );
        assert!(head.has_changed().unwrap());
        assert_eq!(
            *head.borrow_and_update(),
            2,
            "one head for the whole answer"
        );
        journal.record("q", "power", json!("off"));
        assert_eq!(journal.device_seq("p"), 2);
        assert_eq!(journal.device_seq("q"), 3);
        assert_eq!(journal.device_seq("nobody"), 0);
    }

    #[tokio::test]
    async fn a_failing_disk_moves_events_to_a_new_epoch_in_memory_until_it_is_back() {
        let dir = tempfile::tempdir().unwrap();
        let journal = durable(dir.path());
        let store = journal.store().unwrap().clone();
        let stop = CancellationToken::new();
        let committer = tokio::spawn(journal.clone().run_committer(stop.clone()));
        let old_epoch = journal.epoch();

        journal.record("p", "power", json!("on"));
        journal.wait_for(1).await;
        store.fail_writes(true);
        let mut health = store.watch_health();
        journal.record("p", "power", json!("off"));
        health
            .wait_for(|h| matches!(h, Health::Failing(_)))
            .await
            .unwrap();
        // Events keep flowing, under an epoch that was never on disk.
        journal.wait_for(2).await;
        assert_ne!(journal.epoch(), old_epoch);
        assert!(journal.storage().failing.is_some());
        assert!(
            matches!(journal.read_after(1, 10), Read::Gap),
            "a panel from the old epoch gets a snapshot"
        );
        assert_eq!(journal.record("p", "input", json!("hdmi2")), Some(3));
        assert_eq!(journal.head(), 3, "published without the disk");
        assert!(
            matches!(journal.read_after(2, 10), Read::Gap),
            "so does one that was at the head"
        );
        assert!(!journal.can_resume(old_epoch, 1));
        let new_epoch = journal.epoch();
        let snapshot = journal.snapshot();
        assert_eq!((snapshot.epoch, snapshot.seq), (new_epoch, 3));
        assert_eq!(seqs(journal.read_after(3, 10)), Vec::<u64>::new());

        // The disk comes back: the committer reopens it and the series goes on on disk.
        store.fail_writes(false);
        health.wait_for(|h| *h == Health::Ok).await.unwrap();
        journal.record("p", "input", json!("hdmi1"));
        journal.wait_for(4).await;
        assert_eq!(journal.uncommitted(), 0);
        stop.cancel();
        committer.await.unwrap();
        drop(journal);
        drop(store);

        let restarted = durable(dir.path());
        assert_eq!(restarted.epoch(), new_epoch, "the new epoch is on disk");
        assert_eq!(restarted.head(), 4);
        assert_eq!(restarted.snapshot().devices["p"].points["input"], "hdmi1");
        assert!(
            restarted.can_resume(new_epoch, 4),
            "events after the disk came back resume"
        );
        assert!(
            !restarted.can_resume(new_epoch, 2),
            "events from the time without a disk are not replayed"
        );
    }
}
