//! The journal: the one ordered record of everything devices reported.
//!
//! Every change gets the next sequence number of one gap-free series. The journal keeps
//! the current state of every device (for snapshots) and a bounded window of recent
//! events (for panels that resume), both updated under one short lock so a snapshot and
//! its sequence number always agree.
//!
//! Panels never get their own queue: each session holds a cursor (the last seq it sent)
//! and reads forward from here. A panel that falls behind the window gets a snapshot
//! instead. Each event is serialized to JSON once, when it is recorded; every panel sends
//! the same bytes.

use std::collections::{BTreeMap, VecDeque};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::SystemTime;

use axum::extract::ws::Utf8Bytes;
use serde::Serialize;
use serde_json::Value;
use tokio::sync::watch;

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

#[derive(Debug, Clone, Default, Serialize)]
pub struct DeviceState {
    pub online: bool,
    /// Why the device is offline or failing, when it is.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub error: Option<String>,
    pub points: BTreeMap<String, Value>,
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

pub struct Journal {
    /// Identifies this series of sequence numbers; a panel's resume point is only
    /// meaningful in the epoch it came from.
    epoch: u64,
    inner: Mutex<Inner>,
    /// The latest seq, for sessions to wait on. A watch never lags: a slow reader simply
    /// sees the newest value.
    head: watch::Sender<u64>,
}

struct Inner {
    seq: u64,
    window: VecDeque<Arc<Event>>,
    capacity: usize,
    devices: BTreeMap<String, DeviceState>,
}

impl Journal {
    /// A journal that keeps the last `capacity` events for resuming panels.
    pub fn new(capacity: usize, devices: impl IntoIterator<Item = String>) -> Self {
        let epoch = SystemTime::now()
            .duration_since(SystemTime::UNIX_EPOCH)
            .map_or(1, |d| d.as_millis() as u64);
        let devices = devices
            .into_iter()
            .map(|id| (id, DeviceState::default()))
            .collect();
        Self {
            epoch,
            inner: Mutex::new(Inner {
                seq: 0,
                window: VecDeque::with_capacity(capacity.min(4096)),
                capacity: capacity.max(1),
                devices,
            }),
            head: watch::channel(0).0,
        }
    }

    pub fn epoch(&self) -> u64 {
        self.epoch
    }

    /// The latest seq.
    pub fn head(&self) -> u64 {
        *self.head.borrow()
    }

    /// Wakes whenever the head moves.
    pub fn watch(&self) -> watch::Receiver<u64> {
        self.head.subscribe()
    }

    /// Records a point's value; returns its seq, or `None` when the value did not change.
    pub fn record(&self, device: &str, point: &str, value: Value) -> Option<u64> {
        let mut inner = self.lock();
        let state = inner.devices.entry(device.to_string()).or_default();
        if state.points.get(point) == Some(&value) {
            return None;
        }
        state.points.insert(point.to_string(), value.clone());
        Some(self.append(&mut inner, device, point, &value))
    }

    /// Records a device going online or offline, with the reason when offline.
    pub fn set_online(&self, device: &str, online: bool, error: Option<String>) -> Option<u64> {
        let mut inner = self.lock();
        let state = inner.devices.entry(device.to_string()).or_default();
        let error_changed = state.error != error;
        state.error = error.clone();
        let mut seq = None;
        if state.online != online {
            state.online = online;
            seq = Some(self.append(&mut inner, device, ONLINE, &Value::Bool(online)));
        }
        if error_changed {
            let value = error.map_or(Value::Null, Value::String);
            seq = Some(self.append(&mut inner, device, ERROR, &value));
        }
        seq
    }

    fn append(&self, inner: &mut Inner, device: &str, point: &str, value: &Value) -> u64 {
        inner.seq += 1;
        let seq = inner.seq;
        let frame = EventFrame {
            kind: "event",
            seq,
            ts: humantime::format_rfc3339_millis(SystemTime::now()).to_string(),
            device,
            point,
            value,
        };
        let text = serde_json::to_string(&frame).expect("an event always serializes");
        let event = Arc::new(Event {
            seq,
            device: device.to_string(),
            point: point.to_string(),
            frame: text.into(),
        });
        if inner.window.len() == inner.capacity {
            inner.window.pop_front();
        }
        inner.window.push_back(event);
        // Publish while still holding the lock so heads are announced in order.
        self.head.send_replace(seq);
        seq
    }

    /// Up to `max` events after `cursor`, or [`Read::Gap`] when some of them are gone.
    pub fn read_after(&self, cursor: u64, max: usize) -> Read {
        let inner = self.lock();
        if cursor >= inner.seq {
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
        seq == inner.seq
            || inner
                .window
                .front()
                .is_some_and(|e| seq + 1 >= e.seq && seq <= inner.seq)
    }

    pub fn snapshot(&self) -> Snapshot {
        let inner = self.lock();
        Snapshot {
            epoch: self.epoch,
            seq: inner.seq,
            devices: inner.devices.clone(),
        }
    }

    /// Whether the device is online now (a cheap check for the router).
    pub fn is_online(&self, device: &str) -> bool {
        self.lock().devices.get(device).is_some_and(|d| d.online)
    }

    /// Why the device is offline or failing, if it is.
    pub fn device_error(&self, device: &str) -> Option<String> {
        self.lock()
            .devices
            .get(device)
            .and_then(|d| d.error.clone())
    }

    fn lock(&self) -> MutexGuard<'_, Inner> {
        // A panic while holding this lock cannot leave the data half-written (every
        // mutation is a single push or insert), so a poisoned lock is still usable.
        self.inner.lock().unwrap_or_else(|p| p.into_inner())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn seqs(read: Read) -> Vec<u64> {
        match read {
            Read::Events(events) => events.iter().map(|e| e.seq).collect(),
            Read::Gap => panic!("unexpected gap"),
        }
    }

    #[test]
    fn unchanged_values_are_not_recorded() {
        let journal = Journal::new(10, ["p".to_string()]);
        assert_eq!(journal.record("p", "power", json!("on")), Some(1));
        assert_eq!(journal.record("p", "power", json!("on")), None);
        assert_eq!(journal.record("p", "power", json!("off")), Some(2));
        assert_eq!(journal.head(), 2);
    }

    #[test]
    fn readers_get_exactly_what_follows_their_cursor() {
        let journal = Journal::new(100, ["p".to_string()]);
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
        let journal = Journal::new(5, ["p".to_string()]);
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
        let journal = Journal::new(5, ["p".to_string()]);
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
        let journal = Journal::new(10, ["p".to_string()]);
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
}
