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
//! - `<family>/cli.rs`: `avgate simulate <command>`: the simulator's flags and how to start
//!   it ([`SimulatorInfo`]).
//! - `<family>/catalog.toml` (static drivers) or `catalog.rs` (data-driven ones): what the
//!   driver reports and takes ([`Catalog`]); profiles narrow and label it.
//! - `<family>/mod.rs`: the family's [`DriverInfo`], its entry in [`drivers`].
//!
//! # The driver contract
//!
//! A driver registers with one [`DriverInfo`] in [`drivers`]: its name, a
//! [`catalog`](DriverInfo::catalog) hook that checks the options and returns the catalog
//! (constant, or computed from the options), a [`build`](DriverInfo::build) for sessions,
//! a [`link`](DriverInfo::link) tuning (forced options, least gap, idle closes) and its
//! [`simulator`](DriverInfo::simulator) for `avgate simulate`. The gateway never names a
//! driver: it checks profiles against the catalog, values against point types, sessions
//! against the [`Protocol`] trait, and builds `avgate simulate` from the registry. That
//! list is all a new driver touches outside its own module; a protocol written as data
//! (`driver = "scripted"`) is a profile file and touches nothing.
//!
//! The gateway's device runtime owns sockets, timers, retries and queueing once for every
//! driver; a driver only says what to send and what the device meant.

pub mod catalog;
pub mod extron;
pub mod kit;
pub mod load;
pub mod mdc;
pub mod modbus;
pub mod pjlink;
pub mod qsys;
pub mod scripted;
pub mod sim_server;
pub mod simulate;
pub mod visca;

#[cfg(test)]
mod testing;

use std::time::{Duration, Instant};

pub use catalog::{
    ArgSpec, ArgType, Catalog, CommandSpec, OptionsError, OptionsPath, PathKey, PointSpec,
    PointType, QuerySpec,
};
pub use serde_json::{Map, Value};
pub use simulate::{
    ProfileUse, RunningSimulator, SimulatorError, SimulatorInfo, SimulatorProfile, SimulatorRequest,
};

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
    /// A background read of one of the driver's named queries (see [`Catalog::queries`]).
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
    /// differs from the last published value, and only if it is what the point's spec
    /// declares: a mismatch is logged as a driver bug (once per point) and dropped.
    Update { point: String, value: Value },
    /// The device told what it has beyond the driver's static catalog (a switcher's
    /// input and output labels, a DSP's named controls). The runtime publishes it as the
    /// device's `catalog` point ([`CATALOG_POINT`]) and from then on also accepts updates of
    /// the points it declares.
    Discovered(Catalog),
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

    /// How long this session's greeting and login may take once the link is open, when
    /// the driver times them itself (through [`Protocol::poll_timeout`], ending in an
    /// [`Output::Fatal`] that names the step it waited for). `None`: the runtime allows the
    /// profile's `connect_timeout` for the greeting, as it does for opening the link.
    fn handshake_timeout(&self) -> Option<Duration> {
        None
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

/// Settings a driver is built from: the profile's `[options]` table (with the link's
/// [forced options](LinkTuning::options) and the site's overrides merged in) and the site's
/// per-device credentials.
#[derive(Debug, Clone, Default)]
pub struct DriverSettings {
    /// Profile `[options]` table (driver-specific keys such as input names).
    pub options: Map<String, Value>,
    /// Password from the site configuration, if any.
    pub password: Option<String>,
}

impl DriverSettings {
    /// Settings with these options and no password.
    pub fn with_options(options: Map<String, Value>) -> DriverSettings {
        DriverSettings {
            options,
            password: None,
        }
    }

    /// The options read as the driver's own typed options (see [`catalog::options_from`]).
    pub fn options<T: serde::de::DeserializeOwned>(&self) -> Result<T, OptionsError> {
        catalog::options_from(&self.options)
    }
}

/// What carries a device's bytes, as far as a driver's tuning cares.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum LinkKind {
    /// A TCP connection or UDP peer.
    Network,
    /// A serial line at this many bits per second.
    Serial { baud: u32 },
}

/// What a driver needs from a link of some kind, beyond the profile's own settings.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct LinkTuning {
    /// Options this kind of link forces, set over the profile's (the site's overrides
    /// still win): Modbus on a serial line is RTU whatever the profile says.
    pub options: Map<String, Value>,
    /// The least quiet time between the end of one exchange and the next transmission,
    /// raised over the profile's `pacing` (Modbus RTU's 3.5 characters).
    pub min_gap: Duration,
    /// Whether the device may close a connection that has been idle for a while (most
    /// network devices do): such a close after a healthy session is reconnected at once,
    /// not counted as a failure. `false`: every close is a failure.
    pub idle_close: bool,
}

/// The tuning of a driver that needs nothing special: idle closes are expected on a
/// network link (a serial port never closes by itself), no forced options, no gap.
pub fn plain_link(link: LinkKind) -> LinkTuning {
    LinkTuning {
        idle_close: link == LinkKind::Network,
        ..LinkTuning::default()
    }
}

/// The point a device's [discovered catalog](Output::Discovered) is published as.
pub const CATALOG_POINT: &str = "catalog";

/// One driver, as the registry ([`drivers`]) lists it. Adding a driver is: a module, a
/// `DriverInfo` in it, one line in [`drivers`], and a profile in `device-profiles/` (built
/// in with no list to edit). Nothing else: `avgate simulate` offers its simulator, the
/// gateway checks its profiles and runs its sessions, all through this entry.
///
/// ```text
/// pub const DRIVER: DriverInfo = DriverInfo {
///     name: "pjlink",                 // profiles say driver = "pjlink"
///     catalog: catalog,               // fn(&DriverSettings) -> Result<Catalog, OptionsError>
///     build: session::build,          // fn(&DriverSettings) -> Result<Box<dyn Protocol>, String>
///     link: crate::plain_link,        // fn(LinkKind) -> LinkTuning
///     simulator: Some(cli::SIMULATOR), // `avgate simulate pjlink`: flags and start
/// };
/// ```
#[derive(Debug, Clone, Copy)]
pub struct DriverInfo {
    /// The name profiles use in `driver = "..."`.
    pub name: &'static str,
    /// The driver's points, commands and queries for these options; this is also where
    /// the options are checked (an `Err` names the field at fault), so it runs for every
    /// profile and every site override at load. A static driver checks its options and
    /// returns a constant catalog ([`Catalog::from_toml`] of its `catalog.toml`); a
    /// data-driven one (Modbus) computes it from them.
    pub catalog: fn(&DriverSettings) -> Result<Catalog, OptionsError>,
    /// Builds one session state machine. Only called with options [`DriverInfo::catalog`]
    /// accepted.
    pub build: fn(&DriverSettings) -> Result<Box<dyn Protocol>, String>,
    /// What the driver needs from a link of this kind.
    pub link: fn(LinkKind) -> LinkTuning,
    /// Its device simulator as `avgate simulate <command>` runs it, if it has one.
    pub simulator: Option<SimulatorInfo>,
}

/// Every driver this build knows, by profile name: the one list a new driver joins.
pub fn drivers() -> &'static [DriverInfo] {
    &[
        pjlink::DRIVER,
        extron::DRIVER,
        mdc::DRIVER,
        visca::DRIVER,
        modbus::DRIVER,
        load::DRIVER,
        scripted::DRIVER,
        qsys::DRIVER,
    ]
}

/// Looks a driver up by the name a profile uses.
pub fn driver(name: &str) -> Option<&'static DriverInfo> {
    drivers().iter().find(|d| d.name == name)
}
