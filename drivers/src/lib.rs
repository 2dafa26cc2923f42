//! Protocol cores and device simulators for avgate.
//!
//! # Layout
//!
//! Every protocol family lives in its own module with the same shape, so a newcomer can
//! guess where anything is:
//!
//! - `<family>/frame.rs`: the wire format: encoding requests, parsing replies. Pure
//!   functions over bytes, tested with byte vectors.
//! - `<family>/session.rs`: the client side as a sans-IO state machine implementing
//!   [`Protocol`]: bytes and time in; bytes to send, point updates and request outcomes out.
//!   No sockets, no tokio, no clock reads, so it is deterministic and fuzzable.
//! - `<family>/model.rs`: the device side, also sans-IO: what a real device would answer.
//! - `<family>/simulator.rs`: the model served on a real socket (this part uses tokio),
//!   with a [`Handle`](pjlink::simulator::Handle) for front-panel changes and fault
//!   injection.
//!
//! The gateway's device runtime owns sockets, timers, retries and queueing once for every
//! driver; a driver only says what to send and what the device meant.

pub mod extron;
pub mod kit;
pub mod load;
pub mod mdc;
pub mod modbus;
pub mod pjlink;
pub mod scripted;
pub mod sim_server;
pub mod visca;

#[cfg(test)]
mod testing;

use std::time::Instant;

pub use serde_json::{Map, Value};

/// One unit of work the runtime asks a driver to perform on an established session.
///
/// The runtime starts at most one request at a time per session and waits for its
/// [`Output::Completed`] (or gives up after the profile's timeout). A poll that takes
/// several exchanges may pause between two of them ([`Output::Paused`]) so that a panel
/// command never waits for more than the one exchange in flight.
#[derive(Debug, Clone, PartialEq)]
pub enum Request {
    /// A command from a panel, already checked against the profile's argument schema.
    Command {
        name: String,
        args: Map<String, Value>,
    },
    /// A background read of one of the driver's named queries (see [`DriverInfo::queries`]).
    Poll { query: String },
}

/// What a driver wants the runtime to do next. Drained with [`Protocol::poll_output`].
#[derive(Debug, Clone, PartialEq)]
pub enum Output {
    /// Write these bytes to the device.
    Transmit(Vec<u8>),
    /// The session is established (greeting and authentication done): requests may start.
    Ready,
    /// The device reported this value for a point. The runtime publishes it only if it
    /// differs from the last published value.
    Update { point: String, value: Value },
    /// The request in flight finished.
    Completed(Result<(), DeviceError>),
    /// The poll in flight finished one exchange and has more to do; it waits, with nothing
    /// on the wire, until [`Protocol::resume`]. Meanwhile the runtime may run another
    /// request (a panel command) on the session. A poll is a background read, so setting it
    /// aside costs nothing but freshness; a command is never paused.
    Paused,
    /// The session cannot go on (wrong password, protocol violation): the runtime closes
    /// the connection, fails whatever is in flight and reconnects after a backoff.
    Fatal(SessionError),
}

/// A driver's client-side state machine for one device session (one connection).
///
/// The runtime calls [`Protocol::connected`] on every new connection, then feeds bytes and
/// requests and drains outputs after each call.
pub trait Protocol: Send {
    /// A new connection is up: forget everything tied to the previous one.
    fn connected(&mut self, now: Instant);

    /// Bytes arrived from the device (any chunking).
    fn received(&mut self, now: Instant, data: &[u8]);

    /// Begin a request. Only called after [`Output::Ready`] and while no request is in
    /// flight; a [paused](Output::Paused) poll does not count, but the runtime resumes it
    /// before starting another poll. A request the driver cannot express fails with `Err`
    /// without touching the wire.
    fn start(&mut self, now: Instant, request: &Request) -> Result<(), DeviceError>;

    /// Carries on with the poll that [paused](Output::Paused); called while no other
    /// request is in flight. Drivers that never pause need not implement it.
    fn resume(&mut self, _now: Instant) {}

    /// The runtime gave up on the request in flight (its timeout passed). The driver
    /// forgets it; the runtime reconnects, because a late reply would otherwise be
    /// taken for the answer to the next request.
    fn abandon(&mut self);

    /// The next output, if any.
    fn poll_output(&mut self) -> Option<Output>;

    /// When the driver next needs [`Protocol::handle_timeout`] called (protocol-level
    /// timers such as resends or inter-frame gaps), if ever.
    fn poll_timeout(&self) -> Option<Instant> {
        None
    }

    /// A time returned by [`Protocol::poll_timeout`] has passed.
    fn handle_timeout(&mut self, _now: Instant) {}

    /// Whether `request` can be expressed, without touching the session: the same
    /// argument checks [`Protocol::start`] makes (an input name the profile does not map,
    /// an output the switcher lacks), so the gateway can refuse a command before
    /// accepting it.
    fn check(&self, _request: &Request) -> Result<(), DeviceError> {
        Ok(())
    }

    /// Before [`Output::Ready`]: what the session still waits for from the device, in
    /// words for an error message (`the answer to the login`), so a device that stalls
    /// half-way through its greeting is reported as such. `None` when the driver cannot
    /// say.
    fn waiting_for(&self) -> Option<String> {
        None
    }

    /// `frame` (bytes this session sent or received) as a wire trace may show it, with
    /// whatever credential the protocol carries in it hidden (a PJLink digest, say). The
    /// runtime also hides the configured password wherever it appears; a driver whose
    /// protocol derives secrets from it overrides this.
    fn redact<'a>(&self, frame: &'a [u8]) -> std::borrow::Cow<'a, [u8]> {
        std::borrow::Cow::Borrowed(frame)
    }
}

/// Why a request failed on the device side. The gateway maps `kind` to the error code a
/// panel sees.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{message}")]
pub struct DeviceError {
    pub kind: DeviceErrorKind,
    /// What happened, in words an integrator can act on.
    pub message: String,
}

impl DeviceError {
    pub fn new(kind: DeviceErrorKind, message: impl Into<String>) -> Self {
        Self {
            kind,
            message: message.into(),
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub enum DeviceErrorKind {
    /// The arguments cannot be expressed in this protocol (unknown input name, out of range).
    InvalidArgs,
    /// The device does not support this command or query.
    Unsupported,
    /// The device refused for now and may accept later (warming up, cooling down, busy).
    Busy,
    /// The device reported a failure or answered something that makes no sense.
    Failed,
}

/// Why a session had to be abandoned.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum SessionError {
    /// The device rejected our credentials. Reconnecting soon will not help.
    #[error("authentication failed: {0}")]
    AuthFailed(String),
    /// The device said something that does not fit the protocol; the stream is out of step.
    #[error("protocol error: {0}")]
    Protocol(String),
}

/// Settings a driver is built from: the profile's `[options]` table merged with the site's
/// per-device credentials.
#[derive(Debug, Clone, Default)]
pub struct DriverSettings {
    /// Profile `[options]` table (driver-specific keys such as input names).
    pub options: Map<String, Value>,
    /// Password from the site configuration, if any.
    pub password: Option<String>,
}

impl DriverSettings {
    /// Refuses any `[options]` key the driver does not know, naming the ones it does, so a
    /// typo in a profile never passes silently.
    pub fn check_keys(&self, driver: &str, known: &[&str]) -> Result<(), String> {
        match self.options.keys().find(|k| !known.contains(&k.as_str())) {
            Some(key) => Err(format!(
                "unknown option `{key}` for {driver}; expected: {}",
                known.join(", ")
            )),
            None => Ok(()),
        }
    }
}

/// What a driver offers, so configuration can be checked before anything runs.
#[derive(Debug, Clone, Copy)]
pub struct DriverInfo {
    /// The name profiles use in `driver = "..."`.
    pub name: &'static str,
    /// Commands the driver understands.
    pub commands: &'static [&'static str],
    /// Named background reads, usable in a profile's `[[poll]]` entries.
    pub queries: &'static [&'static str],
    /// Points the driver can report.
    pub points: &'static [&'static str],
    /// Builds one session state machine.
    pub build: fn(&DriverSettings) -> Result<Box<dyn Protocol>, String>,
}

/// Every driver this build knows, by profile name.
pub fn drivers() -> &'static [DriverInfo] {
    &[
        pjlink::DRIVER,
        extron::DRIVER,
        mdc::DRIVER,
        visca::DRIVER,
        modbus::DRIVER,
        load::DRIVER,
        scripted::DRIVER,
    ]
}

/// Looks a driver up by the name a profile uses.
pub fn driver(name: &str) -> Option<&'static DriverInfo> {
    drivers().iter().find(|d| d.name == name)
}
