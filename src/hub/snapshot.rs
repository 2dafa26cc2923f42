//! Snapshots as they go on the wire: encoded once, shared by every panel that needs the
//! same one, and cut into parts when big.
//!
//! A WebSocket message over the write buffer's cap cannot be sent at all, and a big one
//! leaves a buffer that big behind in every panel's connection. So a snapshot whose JSON
//! is over [`PART`] bytes goes as several `snapshot` messages with `part` and `parts`
//! (docs/PROTOCOL.md), each at most [`PART`] bytes: any number of devices can be delivered, and
//! what a panel keeps after the snapshot does not depend on its size. A small one is a
//! single message, exactly as before parts existed.

use std::collections::{BTreeMap, BTreeSet};
use std::sync::{Arc, Mutex};

use axum::extract::ws::Utf8Bytes;
use serde::Serialize;

use super::wire::ServerMessage;
use crate::journal::{DeviceState, Journal, Snapshot};

/// Largest snapshot message, in bytes of JSON (a single point value bigger than this
/// still goes out whole, in a part of its own).
pub const PART: usize = 4 * 1024;

/// Room left in a part for the envelope (`type`, `epoch`, `seq`, `part`, `reason`).
const ENVELOPE: usize = 256;

/// A snapshot ready to send: its seq and its messages, in order.
#[derive(Debug)]
pub struct Encoded {
    pub seq: u64,
    pub messages: Vec<Utf8Bytes>,
}

/// Encodes `snapshot` as one message, or as parts if it is big.
pub fn encode(snapshot: &Snapshot, reason: Option<&'static str>) -> Encoded {
    let whole = ServerMessage::Snapshot { snapshot, reason }.to_text();
    if whole.len() <= PART {
        return Encoded {
            seq: snapshot.seq,
            messages: vec![whole.into()],
        };
    }
    drop(whole);
    let parts = pack(pieces(snapshot));
    let count = parts.len();
    let messages = parts
        .iter()
        .enumerate()
        .map(|(i, devices)| {
            let message = ServerMessage::SnapshotPart {
                epoch: snapshot.epoch,
                seq: snapshot.seq,
                part: i + 1,
                parts: count,
                reason,
                devices,
            };
            message.to_text().into()
        })
        .collect();
    Encoded {
        seq: snapshot.seq,
        messages,
    }
}

/// One device, or a share of a device's points when the device alone is too big for a
/// part.
struct Piece<'a> {
    id: &'a str,
    state: DeviceState,
    size: usize,
}

fn json_len(value: &impl Serialize) -> usize {
    serde_json::to_vec(value).map_or(0, |v| v.len())
}

/// The snapshot's devices as pieces no bigger than a part (but for a single huge value).
fn pieces(snapshot: &Snapshot) -> Vec<Piece<'_>> {
    let budget = PART - ENVELOPE;
    let mut pieces = Vec::new();
    for (id, state) in &snapshot.devices {
        let size = id.len() + json_len(state) + 4;
        if size <= budget {
            pieces.push(Piece {
                id,
                state: state.clone(),
                size,
            });
            continue;
        }
        // Too big for one part: its points shared out; every share carries `online` and
        // `error`, so each part is a valid view of the device.
        let empty = |state: &DeviceState| DeviceState {
            online: state.online,
            error: state.error.clone(),
            points: BTreeMap::new(),
            stale: BTreeSet::new(),
        };
        let base = id.len() + json_len(&empty(state)) + 16;
        let mut share = empty(state);
        let mut size = base;
        for (point, value) in &state.points {
            let grows = point.len() * 2 + json_len(value) + 8;
            if size + grows > budget && !share.points.is_empty() {
                pieces.push(Piece {
                    id,
                    state: std::mem::replace(&mut share, empty(state)),
                    size,
                });
                size = base;
            }
            share.points.insert(point.clone(), value.clone());
            if state.stale.contains(point) {
                share.stale.insert(point.clone());
            }
            size += grows;
        }
        pieces.push(Piece {
            id,
            state: share,
            size,
        });
    }
    pieces
}

/// Packs pieces into parts in order; a device's shares go to consecutive parts.
fn pack(pieces: Vec<Piece<'_>>) -> Vec<BTreeMap<String, DeviceState>> {
    let budget = PART - ENVELOPE;
    let mut parts = Vec::new();
    let mut part: BTreeMap<String, DeviceState> = BTreeMap::new();
    let mut size = 0;
    for piece in pieces {
        if !part.is_empty() && (size + piece.size > budget || part.contains_key(piece.id)) {
            parts.push(std::mem::take(&mut part));
            size = 0;
        }
        size += piece.size;
        part.insert(piece.id.to_string(), piece.state);
    }
    if !part.is_empty() || parts.is_empty() {
        parts.push(part);
    }
    parts
}

/// The last full snapshot encoded for panels with no subscription, so panels that join
/// (or fall behind) at the same seq share its bytes instead of each encoding a copy.
#[derive(Default)]
pub struct Shared {
    last: Mutex<Option<(Option<&'static str>, Arc<Encoded>)>>,
}

impl Shared {
    /// The whole current state, encoded: the shared copy if the journal has not moved
    /// since it was made.
    pub fn current(&self, journal: &Journal, reason: Option<&'static str>) -> Arc<Encoded> {
        let head = journal.head();
        {
            let last = self.last.lock().unwrap_or_else(|e| e.into_inner());
            if let Some((why, encoded)) = last.as_ref()
                && encoded.seq == head
                && *why == reason
            {
                return encoded.clone();
            }
        }
        let encoded = Arc::new(encode(&journal.snapshot(), reason));
        *self.last.lock().unwrap_or_else(|e| e.into_inner()) = Some((reason, encoded.clone()));
        encoded
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::{Value, json};

    fn snapshot(devices: usize, points: usize, value_len: usize) -> Snapshot {
        let devices = (0..devices)
            .map(|d| {
                let points = (0..points)
                    .map(|p| (format!("route.{p}"), json!("v".repeat(value_len))))
                    .collect();
                let state = DeviceState {
                    online: d % 2 == 0,
                    error: Some(format!("device {d} is unreachable")),
                    points,
                    stale: ["route.1".to_string()].into(),
                };
                (format!("dev-{d:04}"), state)
            })
            .collect();
        Snapshot {
            epoch: 7,
            seq: 42,
            devices,
        }
    }

    /// What a panel does with the parts: merge them, device by device.
    fn reassemble(messages: &[Utf8Bytes]) -> Value {
        let mut devices = json!({});
        for (i, text) in messages.iter().enumerate() {
            assert!(text.len() <= PART, "part {i} is {} bytes", text.len());
            let message: Value = serde_json::from_str(text).unwrap();
            assert_eq!(message["type"], "snapshot");
            assert_eq!(
                (message["epoch"].as_u64(), message["seq"].as_u64()),
                (Some(7), Some(42))
            );
            assert_eq!(message["part"], i + 1);
            assert_eq!(message["parts"], messages.len());
            for (id, share) in message["devices"].as_object().unwrap() {
                let device = &mut devices[id];
                device["online"] = share["online"].clone();
                device["error"] = share["error"].clone();
                for (point, value) in share["points"].as_object().unwrap() {
                    device["points"][point] = value.clone();
                }
                for point in share["stale"].as_array().into_iter().flatten() {
                    let mut stale = device["stale"].as_array().cloned().unwrap_or_default();
                    stale.push(point.clone());
                    device["stale"] = Value::Array(stale);
                }
            }
        }
        devices
    }

    #[test]
    fn panels_joining_at_the_same_seq_share_one_encoding() {
        let journal = Journal::in_memory(100, ["proj".to_string()]);
        let shared = Shared::default();
        let first = shared.current(&journal, None);
        assert!(Arc::ptr_eq(&first, &shared.current(&journal, None)));
        assert!(!Arc::ptr_eq(
            &first,
            &shared.current(&journal, Some("lagged"))
        ));
        journal.record("proj", "power", json!("on"));
        let moved = shared.current(&journal, None);
        assert!(moved.seq > first.seq);
        assert!(moved.messages[0].contains("\"power\":\"on\""));
    }

    #[test]
    fn a_small_snapshot_is_one_message_as_before() {
        let small = snapshot(3, 2, 4);
        let encoded = encode(&small, None);
        assert_eq!(encoded.messages.len(), 1);
        let message: Value = serde_json::from_str(&encoded.messages[0]).unwrap();
        assert!(message.get("part").is_none(), "{message}");
        assert_eq!(
            message["devices"],
            serde_json::to_value(&small.devices).unwrap()
        );
    }

    #[test]
    fn a_big_site_comes_in_parts_that_add_up_to_the_whole() {
        let big = snapshot(2_000, 3, 20);
        let encoded = encode(&big, Some("lagged"));
        assert!(
            encoded.messages.len() > 8,
            "{} parts",
            encoded.messages.len()
        );
        assert!(encoded.messages[0].contains("\"reason\":\"lagged\""));
        assert_eq!(
            reassemble(&encoded.messages),
            serde_json::to_value(&big.devices).unwrap()
        );
    }

    #[test]
    fn one_device_bigger_than_a_part_is_spread_over_several() {
        let huge = snapshot(2, 40_000, 4);
        let encoded = encode(&huge, None);
        assert!(
            encoded.messages.len() > 2 * 10,
            "{} parts",
            encoded.messages.len()
        );
        assert_eq!(
            reassemble(&encoded.messages),
            serde_json::to_value(&huge.devices).unwrap()
        );
    }
}
