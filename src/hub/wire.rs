//! The panel protocol's messages, as they appear on the wire (docs/PROTOCOL.md).

use avgate_drivers::{Map, Value};
use serde::{Deserialize, Serialize};

use crate::command::{ErrorCode, Failure};
use std::collections::BTreeMap;

use crate::journal::{DeviceState, Snapshot};

/// A message from a panel.
#[derive(Debug, Deserialize)]
#[serde(tag = "type", rename_all = "snake_case", deny_unknown_fields)]
pub enum ClientMessage {
    Hello {
        #[serde(default)]
        token: Option<String>,
        #[serde(default)]
        resume: Option<Resume>,
        /// A stable name for the panel ("lobby-panel"), so its command ids stay its own
        /// across reconnects. Without it, ids are deduplicated per session only.
        #[serde(default)]
        client: Option<String>,
        /// Patterns of the devices and points wanted (absent: everything).
        #[serde(default)]
        subscribe: Option<Vec<String>>,
    },
    /// A device command (`device`, `command`, `args`), or a run of one of the site's
    /// macros (`macro`, nothing else).
    Command {
        /// The panel's id for this command: a string or an integer.
        id: Value,
        #[serde(default)]
        device: Option<String>,
        #[serde(default)]
        command: Option<String>,
        #[serde(default)]
        args: Map<String, Value>,
        #[serde(default, rename = "macro")]
        run: Option<String>,
    },
    /// Everything up to and including `seq` has been received (cumulative).
    Ack { seq: u64 },
    /// Adds patterns to the session's subscription.
    Subscribe { patterns: Vec<String> },
    /// Removes patterns, given exactly as they were added.
    Unsubscribe { patterns: Vec<String> },
    /// Application-level keepalive for clients that cannot send WebSocket pings.
    Ping,
}

#[derive(Debug, Clone, Copy, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Resume {
    pub epoch: u64,
    pub seq: u64,
}

/// A message to a panel (events are pre-serialized by the journal and not listed here).
#[derive(Debug, Serialize)]
#[serde(tag = "type", rename_all = "snake_case")]
pub enum ServerMessage<'a> {
    Welcome {
        session: &'a str,
        epoch: u64,
        seq: u64,
        resumed: bool,
    },
    Snapshot {
        #[serde(flatten)]
        snapshot: &'a Snapshot,
        /// Why a snapshot comes mid-session: `"lagged"` when the panel fell behind the
        /// retained window.
        #[serde(skip_serializing_if = "Option::is_none")]
        reason: Option<&'static str>,
    },
    /// One part of a snapshot too big for one message (docs/PROTOCOL.md).
    #[serde(rename = "snapshot")]
    SnapshotPart {
        epoch: u64,
        seq: u64,
        /// 1-based.
        part: usize,
        parts: usize,
        #[serde(skip_serializing_if = "Option::is_none")]
        reason: Option<&'static str>,
        devices: &'a BTreeMap<String, DeviceState>,
    },
    Accepted {
        id: &'a Value,
        #[serde(skip_serializing_if = "std::ops::Not::not")]
        duplicate: bool,
    },
    Result {
        id: &'a Value,
        ok: bool,
        #[serde(skip_serializing_if = "Option::is_none")]
        error: Option<&'a Failure>,
        /// A macro run's steps and what each came to.
        #[serde(skip_serializing_if = "Option::is_none")]
        steps: Option<&'a [crate::macros::StepReport]>,
    },
    Error {
        code: ErrorCode,
        message: &'a str,
        #[serde(skip_serializing_if = "Option::is_none")]
        id: Option<&'a Value>,
    },
    Pong,
    /// The session's patterns after a `subscribe` or `unsubscribe`.
    Subscribed {
        patterns: &'a [String],
    },
    /// The panel is up to date through `seq`: events after its last one were all outside
    /// its subscription. Its resume point moves here.
    Position {
        seq: u64,
    },
}

impl ServerMessage<'_> {
    pub fn to_text(&self) -> String {
        serde_json::to_string(self).expect("server messages always serialize")
    }
}

/// Parses a panel's text frame, or says precisely what is wrong with it.
pub fn parse(text: &str) -> Result<ClientMessage, Failure> {
    let value: Value = serde_json::from_str(text)
        .map_err(|e| Failure::new(ErrorCode::Malformed, format!("not valid JSON: {e}")))?;
    serde_json::from_value(value).map_err(|e| {
        Failure::new(
            ErrorCode::InvalidMessage,
            format!("{e}; expected an object with \"type\": hello, command, ack, subscribe, unsubscribe or ping"),
        )
    })
}

/// What a `command` message asks for.
#[derive(Debug)]
pub enum Wanted {
    Device { device: String, command: String },
    Macro(String),
}

/// Tells a device command from a macro run, or says what is missing.
pub fn wanted(
    device: Option<String>,
    command: Option<String>,
    run: Option<String>,
    args: &Map<String, Value>,
) -> Result<Wanted, Failure> {
    let invalid = |why: &str| Err(Failure::new(ErrorCode::InvalidMessage, why));
    match (device, command, run) {
        (None, None, Some(name)) if args.is_empty() => Ok(Wanted::Macro(name)),
        (_, _, Some(_)) => invalid(
            "a macro command names only its `macro` (no `device`, `command` or `args`): {\"type\":\"command\",\"id\":1,\"macro\":\"room-on\"}",
        ),
        (Some(device), Some(command), None) => Ok(Wanted::Device { device, command }),
        _ => invalid(
            "missing field `device` or `command`: a command names a `device` and its `command` (with `args`), or a `macro`",
        ),
    }
}

/// The command id as the dedupe key: strings as they are, integers in decimal.
pub fn id_key(id: &Value) -> Option<String> {
    match id {
        Value::String(s) if !s.is_empty() && s.len() <= 128 => Some(s.clone()),
        Value::Number(n) if n.is_i64() || n.is_u64() => Some(n.to_string()),
        _ => None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_each_client_message() {
        assert!(matches!(
            parse(r#"{"type":"hello"}"#),
            Ok(ClientMessage::Hello { .. })
        ));
        let hello =
            parse(r#"{"type":"hello","token":"t","resume":{"epoch":1,"seq":5},"client":"lobby"}"#)
                .unwrap();
        let ClientMessage::Hello {
            resume: Some(r),
            client: Some(c),
            ..
        } = hello
        else {
            panic!()
        };
        assert_eq!((r.epoch, r.seq, c.as_str()), (1, 5, "lobby"));
        let cmd =
            parse(r#"{"type":"command","id":7,"device":"p","command":"power","args":{"on":true}}"#)
                .unwrap();
        assert!(matches!(cmd, ClientMessage::Command { .. }));
        assert!(matches!(
            parse(r#"{"type":"ack","seq":9}"#),
            Ok(ClientMessage::Ack { seq: 9 })
        ));
    }

    fn command_wanted(text: &str) -> Result<Wanted, Failure> {
        let ClientMessage::Command {
            device,
            command,
            args,
            run,
            ..
        } = parse(text)?
        else {
            panic!("not a command: {text}")
        };
        wanted(device, command, run, &args)
    }

    #[test]
    fn bad_messages_get_specific_codes() {
        assert_eq!(parse("{nope").unwrap_err().code, ErrorCode::Malformed);
        assert_eq!(
            parse(r#"{"type":"launch"}"#).unwrap_err().code,
            ErrorCode::InvalidMessage
        );
        let missing = command_wanted(r#"{"type":"command","id":1,"device":"p"}"#).unwrap_err();
        assert_eq!(missing.code, ErrorCode::InvalidMessage);
        assert!(missing.message.contains("`command`"), "{}", missing.message);
        let mixed = command_wanted(r#"{"type":"command","id":1,"device":"p","macro":"room-on"}"#)
            .unwrap_err();
        assert!(
            mixed.message.contains("only its `macro`"),
            "{}",
            mixed.message
        );
        assert!(matches!(
            command_wanted(r#"{"type":"command","id":1,"macro":"room-on"}"#),
            Ok(Wanted::Macro(name)) if name == "room-on"
        ));
        let extra = parse(r#"{"type":"ack","seq":1,"sqe":2}"#).unwrap_err();
        assert!(extra.message.contains("sqe"), "{}", extra.message);
    }

    #[test]
    fn ids_may_be_strings_or_integers() {
        assert_eq!(id_key(&Value::from("a-1")), Some("a-1".into()));
        assert_eq!(id_key(&Value::from(42)), Some("42".into()));
        assert_eq!(id_key(&Value::from(1.5)), None);
        assert_eq!(id_key(&Value::from("")), None);
    }
}
