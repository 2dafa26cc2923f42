//! The QRC wire format: JSON-RPC 2.0 messages, each ended by a NUL byte. Encoding
//! requests and notifications, and reading what arrives into [`Message`]s. Pure functions.

use serde_json::{Map, Value, json};

use crate::kit::{Delimited, Framer};

/// The largest message either side accepts; a design's full `Control.Get` answer stays
/// far below it, and a stream with no NUL in it costs at most this much memory.
pub const MAX_MESSAGE: usize = 256 * 1024;

/// The framer for QRC: NUL-terminated messages, whitespace around them ignored.
pub fn framer() -> Framer {
    Framer::Delimited(Delimited::new(b"\0", true, MAX_MESSAGE))
}

/// A request the peer must answer, with `id`.
pub fn request(id: u64, method: &str, params: Value) -> Vec<u8> {
    seal(&json!({"jsonrpc": "2.0", "id": id, "method": method, "params": params}))
}

/// A message that gets no answer (no `id`): `NoOp`, pushes.
pub fn notification(method: &str, params: Value) -> Vec<u8> {
    seal(&json!({"jsonrpc": "2.0", "method": method, "params": params}))
}

/// A successful answer to request `id`.
pub fn result(id: &Value, result: Value) -> Vec<u8> {
    seal(&json!({"jsonrpc": "2.0", "id": id, "result": result}))
}

/// A failed answer to request `id` (`null` when the request could not be read).
pub fn error(id: &Value, error: &RpcError) -> Vec<u8> {
    seal(&json!({
        "jsonrpc": "2.0",
        "id": id,
        "error": {"code": error.code, "message": error.message},
    }))
}

fn seal(message: &Value) -> Vec<u8> {
    let mut bytes = serde_json::to_vec(message).expect("a JSON value serializes");
    bytes.push(0);
    bytes
}

/// A JSON-RPC error as a Core reports it.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("error {code}: {message}")]
pub struct RpcError {
    pub code: i64,
    pub message: String,
}

impl RpcError {
    pub fn new(code: i64, message: impl Into<String>) -> RpcError {
        RpcError {
            code,
            message: message.into(),
        }
    }
}

/// Error codes a Core uses (JSON-RPC's own, then QRC's).
pub mod code {
    pub const PARSE_ERROR: i64 = -32700;
    pub const INVALID_REQUEST: i64 = -32600;
    pub const METHOD_NOT_FOUND: i64 = -32601;
    pub const INVALID_PARAMS: i64 = -32602;
    pub const STANDBY: i64 = -32604;
    pub const UNKNOWN_CHANGE_GROUP: i64 = 6;
    pub const UNKNOWN_COMPONENT: i64 = 7;
    pub const UNKNOWN_CONTROL: i64 = 8;
    pub const LOGON_REQUIRED: i64 = 10;
}

/// One message read from the wire.
#[derive(Debug, Clone, PartialEq)]
pub enum Message {
    /// An answer to the request with this `id`.
    Reply {
        id: u64,
        outcome: Result<Value, RpcError>,
    },
    /// A request (`id` is `Some`) or a notification (`None`): what a Core receives, and
    /// what it pushes (`EngineStatus`, `ChangeGroup.Poll`).
    Call {
        id: Option<Value>,
        method: String,
        params: Value,
    },
}

/// Reads one frame (without its NUL). The error is the JSON-RPC error a Core answers.
pub fn parse(frame: &[u8]) -> Result<Message, RpcError> {
    let value: Value = serde_json::from_slice(frame)
        .map_err(|e| RpcError::new(code::PARSE_ERROR, format!("Parse error: {e}")))?;
    let Value::Object(mut object) = value else {
        return Err(RpcError::new(
            code::INVALID_REQUEST,
            "Invalid Request: a message is a JSON object",
        ));
    };
    if object.get("jsonrpc") != Some(&Value::from("2.0")) {
        return Err(RpcError::new(
            code::INVALID_REQUEST,
            "Invalid Request: `jsonrpc` must be \"2.0\"",
        ));
    }
    if let Some(method) = object.remove("method") {
        let Value::String(method) = method else {
            return Err(RpcError::new(
                code::INVALID_REQUEST,
                "Invalid Request: `method` must be a string",
            ));
        };
        return Ok(Message::Call {
            id: object.remove("id"),
            method,
            params: object.remove("params").unwrap_or(Value::Null),
        });
    }
    let id = object.get("id").and_then(Value::as_u64).ok_or_else(|| {
        RpcError::new(
            code::INVALID_REQUEST,
            "Invalid Request: neither a `method` nor a numeric `id`",
        )
    })?;
    let outcome = match (object.remove("result"), object.remove("error")) {
        (_, Some(error)) => Err(rpc_error(&error)),
        (Some(result), None) => Ok(result),
        (None, None) => Ok(Value::Null),
    };
    Ok(Message::Reply { id, outcome })
}

fn rpc_error(error: &Value) -> RpcError {
    RpcError::new(
        error.get("code").and_then(Value::as_i64).unwrap_or(0),
        error
            .get("message")
            .and_then(Value::as_str)
            .unwrap_or("no message"),
    )
}

/// One entry of a change group's `Changes`: a named control, or a component's control.
#[derive(Debug, Clone, PartialEq)]
pub struct Change {
    pub component: Option<String>,
    pub name: String,
    pub value: Value,
    pub string: Option<String>,
}

/// The `Id` and `Changes` of a `ChangeGroup.Poll` (pushed, or the result of a poll).
/// Entries that are not objects with a `Name` are skipped.
pub fn changes(params: &Value) -> Option<(&str, Vec<Change>)> {
    let id = params.get("Id")?.as_str()?;
    let changes = params
        .get("Changes")?
        .as_array()?
        .iter()
        .filter_map(|entry| {
            let entry: &Map<String, Value> = entry.as_object()?;
            Some(Change {
                component: entry
                    .get("Component")
                    .and_then(Value::as_str)
                    .map(str::to_string),
                name: entry.get("Name")?.as_str()?.to_string(),
                value: entry.get("Value").cloned().unwrap_or(Value::Null),
                string: entry
                    .get("String")
                    .and_then(Value::as_str)
                    .map(str::to_string),
            })
        })
        .collect();
    Some((id, changes))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn requests_are_json_rpc_ended_by_nul() {
        let bytes = request(7, "Control.Set", json!({"Name": "MainGain", "Value": -12}));
        assert_eq!(bytes.last(), Some(&0));
        let sent: Value = serde_json::from_slice(&bytes[..bytes.len() - 1]).unwrap();
        assert_eq!(
            sent,
            json!({"jsonrpc": "2.0", "id": 7, "method": "Control.Set",
                   "params": {"Name": "MainGain", "Value": -12}})
        );
        let noop = notification("NoOp", json!({}));
        assert!(!String::from_utf8_lossy(&noop).contains("\"id\""));
    }

    #[test]
    fn reads_replies_in_any_key_order() {
        let reply = br#"{"result":[{"Value":-12,"Name":"MainGain"}],"id":3,"jsonrpc":"2.0"}"#;
        assert_eq!(
            parse(reply).unwrap(),
            Message::Reply {
                id: 3,
                outcome: Ok(json!([{"Name": "MainGain", "Value": -12}]))
            }
        );
        let failed = br#"{"jsonrpc":"2.0","id":4,"error":{"code":8,"message":"Unknown control"}}"#;
        assert_eq!(
            parse(failed).unwrap(),
            Message::Reply {
                id: 4,
                outcome: Err(RpcError::new(8, "Unknown control"))
            }
        );
    }

    #[test]
    fn reads_a_real_core_push() {
        // Captured from a Core (a C# sample's log), `Indeterminate` included.
        let push = br#"{"jsonrpc":"2.0","method":"ChangeGroup.Poll","params":{"Id":"MyChangeGroup","Changes":[{"Name":"Mic/ControlPageStation-2Gain","String":"-42.1dB","Value":-42.09999847,"Position":0.48250001,"Indeterminate":true}]}}"#;
        let Message::Call { id, method, params } = parse(push).unwrap() else {
            panic!("a push is a call");
        };
        assert_eq!((id, method.as_str()), (None, "ChangeGroup.Poll"));
        let (group, changes) = changes(&params).unwrap();
        assert_eq!(group, "MyChangeGroup");
        assert_eq!(
            changes,
            vec![Change {
                component: None,
                name: "Mic/ControlPageStation-2Gain".into(),
                value: json!(-42.09999847),
                string: Some("-42.1dB".into()),
            }]
        );
        let component = json!({"Id": "g", "Changes": [
            {"Component": "APM", "Name": "gain", "Value": 1}, "junk", {"Value": 2}]});
        let (_, changes) = super::changes(&component).unwrap();
        assert_eq!(changes.len(), 1);
        assert_eq!(changes[0].component.as_deref(), Some("APM"));
    }

    #[test]
    fn malformed_messages_get_the_core_error_codes() {
        assert_eq!(parse(b"{not json").unwrap_err().code, code::PARSE_ERROR);
        assert_eq!(parse(b"[1,2]").unwrap_err().code, code::INVALID_REQUEST);
        assert_eq!(
            parse(br#"{"id":1,"method":"NoOp"}"#).unwrap_err().code,
            code::INVALID_REQUEST
        );
        assert_eq!(
            parse(br#"{"jsonrpc":"2.0","method":5}"#).unwrap_err().code,
            code::INVALID_REQUEST
        );
        assert_eq!(
            parse(br#"{"jsonrpc":"2.0","id":"x"}"#).unwrap_err().code,
            code::INVALID_REQUEST
        );
    }
}
