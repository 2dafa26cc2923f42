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
//! (what panels may see). Both change only through [`DeviceState::apply`], so they agree
//! once the pending events are committed.
//!
//! Staleness: while a device is offline, and after a restart until it is read again, its
//! last known values are kept but listed as stale. The next reading of a stale point is
//! always an event, even if the value is the same, so panels learn it is fresh again.

use std::collections::{BTreeMap, BTreeSet, VecDeque};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::{Duration, SystemTime};

use axum::extract::ws::Utf8Bytes;
use serde::{Deserialize, Serialize};
use serde_json::Value;
use tokio::sync::{Notify, watch};
use tokio_util::sync::CancellationToken;
use tracing::{error, warn};

use crate::store::{Batch, Recovered, Store, new_epoch, unix_millis};

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
                    self.stale = self.points.keys().cloned().collect();
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

/// How the journal stores events.
pub struct Durability {
    pub store: Arc<Store>,
    pub recovered: Recovered,
    /// Most events per disk commit.
    pub max_batch: usize,
}

pub struct Journal {
    /// Identifies this series of sequence numbers; a panel's resume point is only
    /// meaningful in the epoch it came from.
    epoch: u64,
    inner: Mutex<Inner>,
    /// The latest committed seq, for sessions to wait on. A watch never lags: a slow
    /// reader simply sees the newest value.
    head: watch::Sender<u64>,
    store: Option<Arc<Store>>,
    /// Wakes the committer when events are pending.
    wake: Notify,
    max_batch: usize,
}

struct Inner {
    /// The last seq handed out (committed or not).
    assigned: u64,
    latest: BTreeMap<String, DeviceState>,
    /// Handed out, not yet on disk, in seq order.
    pending: VecDeque<Pending>,
    committed_seq: u64,
    committed: BTreeMap<String, DeviceState>,
    window: VecDeque<Arc<Event>>,
    capacity: usize,
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
            epoch,
            inner: Mutex::new(Inner {
                assigned: seq,
                latest: state.clone(),
                pending: VecDeque::new(),
                committed_seq: seq,
                committed: state,
                window,
                capacity,
            }),
            head: watch::channel(seq).0,
            store,
            wake: Notify::new(),
            max_batch: max_batch.max(1),
        }
    }

    pub fn epoch(&self) -> u64 {
        self.epoch
    }

    /// The latest seq panels may see.
    pub fn head(&self) -> u64 {
        *self.head.borrow()
    }

    /// Wakes whenever the head moves.
    pub fn watch(&self) -> watch::Receiver<u64> {
        self.head.subscribe()
    }

    /// Records a point's value; returns its seq, or `None` when it tells nothing new.
    pub fn record(&self, device: &str, point: &str, value: Value) -> Option<u64> {
        let mut inner = self.lock();
        self.append_if_changed(&mut inner, device, point, value)
    }

    /// Records a device going online or offline, with the reason when offline.
    pub fn set_online(&self, device: &str, online: bool, error: Option<String>) -> Option<u64> {
        let mut inner = self.lock();
        let online_seq = self.append_if_changed(&mut inner, device, ONLINE, Value::Bool(online));
        let error_seq = self.append_if_changed(
            &mut inner,
            device,
            ERROR,
            error.map_or(Value::Null, Value::String),
        );
        error_seq.or(online_seq)
    }

    fn append_if_changed(
        &self,
        inner: &mut Inner,
        device: &str,
        point: &str,
        value: Value,
    ) -> Option<u64> {
        let state = inner.latest.entry(device.to_string()).or_default();
        if !state.changes(point, &value) {
            return None;
        }
        state.apply(point, &value);
        inner.assigned += 1;
        let seq = inner.assigned;
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
        let pending = Pending {
            event,
            value,
            ts_ms: unix_millis(now),
        };
        if self.store.is_some() {
            inner.pending.push_back(pending);
            self.wake.notify_one();
        } else {
            self.publish(inner, std::iter::once(pending));
        }
        Some(seq)
    }

    /// Makes committed events visible: state, window, head. Called with the lock held, in
    /// seq order, so heads are announced in order.
    fn publish(&self, inner: &mut Inner, committed: impl Iterator<Item = Pending>) {
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
        self.head.send_replace(inner.committed_seq);
    }

    /// Commits pending events to the store in groups until `stop`, then commits what is
    /// left. Each group is one disk sync, however many events it holds, so the rate of
    /// syncs stays bounded while events flow at any rate.
    pub async fn run_committer(self: Arc<Self>, stop: CancellationToken) {
        let Some(store) = self.store.clone() else {
            return;
        };
        loop {
            let stopping = tokio::select! {
                _ = self.wake.notified() => false,
                _ = stop.cancelled() => true,
            };
            while self.commit_once(&store).await {}
            if stopping {
                break;
            }
        }
    }

    /// Commits up to one batch; returns whether there may be more to do.
    async fn commit_once(&self, store: &Arc<Store>) -> bool {
        let (events, state, count) = {
            let inner = self.lock();
            if inner.pending.is_empty() {
                return false;
            }
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
        let writer = store.clone();
        let started = std::time::Instant::now();
        let written = tokio::task::spawn_blocking(move || {
            let events: Vec<(u64, u64, &str)> = events
                .iter()
                .map(|(s, t, f)| (*s, *t, f.as_str()))
                .collect();
            let state: Vec<(&str, String)> =
                state.iter().map(|(d, s)| (d.as_str(), s.clone())).collect();
            writer.commit(&Batch {
                events: &events,
                state: &state,
            })
        })
        .await;
        match written {
            Ok(Ok(())) => {
                metrics::histogram!(crate::metrics::JOURNAL_COMMIT_DURATION)
                    .record(started.elapsed().as_secs_f64());
                let mut inner = self.lock();
                let committed: Vec<Pending> = inner.pending.drain(..count).collect();
                self.publish(&mut inner, committed.into_iter());
                true
            }
            Ok(Err(e)) => {
                // Nothing is published until it is on disk; keep the events and retry.
                error!("{e}; events wait in memory and are retried in 1 s");
                tokio::time::sleep(Duration::from_secs(1)).await;
                true
            }
            Err(e) => {
                error!("journal commit task failed: {e}");
                false
            }
        }
    }

    /// Up to `max` events after `cursor`, or [`Read::Gap`] when some of them are gone.
    pub fn read_after(&self, cursor: u64, max: usize) -> Read {
        let inner = self.lock();
        if cursor >= inner.committed_seq {
            return Read::Events(Vec::new());
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
        if epoch != self.epoch {
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
            epoch: self.epoch,
            seq: inner.committed_seq,
            devices: inner.committed.clone(),
        }
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
        let retention = Retention {
            events: 10_000,
            age: Duration::from_secs(3600),
        };
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
}
