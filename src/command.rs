//! What a command's outcome can be, shared by the runtime that runs it, the router that
//! dedupes it and the hub that reports it. The error codes are part of the panel protocol
//! (docs/PROTOCOL.md): panels branch on them, so they never change meaning.

use avgate_drivers::{DeviceError, DeviceErrorKind};
use serde::{Deserialize, Serialize};

/// `Ok(())`, or why the command did not do what was asked.
pub type Outcome = Result<(), Failure>;

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Failure {
    pub code: ErrorCode,
    /// What happened and what to do, for the person at the panel or its developer.
    pub message: String,
}

impl Failure {
    pub fn new(code: ErrorCode, message: impl Into<String>) -> Self {
        Self {
            code,
            message: message.into(),
        }
    }
}

impl std::fmt::Display for Failure {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}: {}", self.code.as_str(), self.message)
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum ErrorCode {
    /// No device with that id in this site.
    UnknownDevice,
    /// The device's profile has no such command.
    UnknownCommand,
    /// Arguments missing, unknown, of the wrong type or out of range.
    InvalidArgs,
    /// The device is not connected; the message says why and when it is retried.
    DeviceOffline,
    /// The device (or its command queue) cannot take it now: warming up, queue full.
    DeviceBusy,
    /// The device did not answer within the profile's command timeout.
    Timeout,
    /// A newer command for the same device, command and target (a set-style command such
    /// as `volume` on one output) replaced this one before it started; the message names
    /// the newer command, whose result says what the device did.
    Superseded,
    /// The device refused or reported a failure.
    DeviceError,
    /// The device does not support what was asked.
    Unsupported,
    /// The panel has no valid token (missing, wrong, or its address is locked out).
    Unauthorized,
    /// The panel's token is valid but its scopes do not allow this command.
    Forbidden,
    /// The message from the panel was not JSON.
    Malformed,
    /// The message was JSON but not a message of this protocol.
    InvalidMessage,
    /// A message other than `hello` came before `hello`.
    HelloRequired,
    /// A field of the message is longer, deeper or more numerous than the gateway takes
    /// from a panel (see docs/PROTOCOL.md, "Limits").
    TooLarge,
    /// The panel has too many commands in flight, or changes its subscription too often;
    /// wait for results (or a moment) and send it again.
    RateLimited,
    /// The gateway is stopping.
    ShuttingDown,
    /// The gateway stopped (crash, power cut) while the command was running: it may or
    /// may not have reached the device. It is never re-run by itself.
    OutcomeUnknown,
    /// The gateway could not record the command durably, so it did not run it.
    Internal,
    /// The journal's disk cannot take writes now (full, failing), so the command, which
    /// must be recorded before it runs, was not run. The gateway retries the disk by
    /// itself; `/healthz` says when it is back.
    StorageUnavailable,
    /// A macro run was cancelled (by a run of another macro in its group, or a restart of
    /// the same macro); the message says by whom and at which step.
    Cancelled,
    /// A macro whose run mode is `single` is running already.
    AlreadyRunning,
    /// Another panel holds the room under an exclusive lease; the message names it and
    /// says how to take control.
    InUse,
}

impl ErrorCode {
    pub fn as_str(self) -> &'static str {
        match self {
            Self::UnknownDevice => "unknown_device",
            Self::UnknownCommand => "unknown_command",
            Self::InvalidArgs => "invalid_args",
            Self::DeviceOffline => "device_offline",
            Self::DeviceBusy => "device_busy",
            Self::Timeout => "timeout",
            Self::Superseded => "superseded",
            Self::DeviceError => "device_error",
            Self::Unsupported => "unsupported",
            Self::Unauthorized => "unauthorized",
            Self::Forbidden => "forbidden",
            Self::Malformed => "malformed",
            Self::InvalidMessage => "invalid_message",
            Self::HelloRequired => "hello_required",
            Self::TooLarge => "too_large",
            Self::RateLimited => "rate_limited",
            Self::ShuttingDown => "shutting_down",
            Self::OutcomeUnknown => "outcome_unknown",
            Self::Internal => "internal",
            Self::StorageUnavailable => "storage_unavailable",
            Self::Cancelled => "cancelled",
            Self::AlreadyRunning => "already_running",
            Self::InUse => "in_use",
        }
    }
}

impl From<DeviceError> for Failure {
    fn from(err: DeviceError) -> Self {
        let code = match err.kind {
            DeviceErrorKind::InvalidArgs => ErrorCode::InvalidArgs,
            DeviceErrorKind::Unsupported => ErrorCode::Unsupported,
            DeviceErrorKind::Busy => ErrorCode::DeviceBusy,
            _ => ErrorCode::DeviceError,
        };
        Failure::new(code, err.message)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn codes_serialize_as_their_protocol_names() {
        for code in [
            ErrorCode::UnknownDevice,
            ErrorCode::DeviceOffline,
            ErrorCode::HelloRequired,
            ErrorCode::Superseded,
            ErrorCode::TooLarge,
            ErrorCode::RateLimited,
            ErrorCode::StorageUnavailable,
        ] {
            assert_eq!(serde_json::to_value(code).unwrap(), code.as_str());
        }
    }
}
