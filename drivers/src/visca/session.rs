//! The VISCA client as a sans-IO state machine (see [`crate::Protocol`]).
//!
//! Three framings, chosen with the `framing` option:
//! - `ip`: Sony VISCA over IP (UDP 52381). Each datagram is one message with an 8-byte
//!   header and a sequence number the camera echoes. The session sends RESET on connect
//!   and is ready on its reply. UDP loses datagrams, so a message that gets no reply
//!   within `resend_interval_ms` goes out again, byte for byte, same sequence number
//!   (so a camera that did get the first copy can tell it is the same message), up to
//!   [`RESENDS`] times. Once the camera has answered anything (an ACK), the session only waits: the
//!   runtime's request timeout covers a Completion that never comes. Replies carrying
//!   any other sequence number are late answers to something given up on, and ignored.
//! - `serial`: bare packets on RS-232/RS-422, for the camera at `address` (1-7) on the
//!   chain. The session sends IF_Clear to that camera on connect and is ready when the
//!   camera answers. No resends: without sequence numbers a resend could run twice.
//! - `tcp`: bare packets on a TCP socket (PTZOptics-style port 5678, or a serial device
//!   server), otherwise as `serial`.
//! - `udp`: bare packets in UDP datagrams, no Sony header (HuddleCam, Avonic and other
//!   non-Sony cameras), otherwise as `serial`.
//!
//! A command completes on its Completion (`z0 5y FF`); the ACK (`z0 4y FF`) before it only
//! says the camera took it. An error (`z0 6y ee FF`) fails it. An inquiry completes on
//! its answer (`z0 50 <data> FF`).
//!
//! # Points
//! - `power`: `"on"` or `"off"` (standby); from the `power` query and after `power`.
//! - `zoom`: zoom position, 0 (wide) to 16384 (`0x4000`, tele end of the optical range
//!   on most Sony models); from the `zoom` query.
//! - `pan`, `tilt`: signed positions from the `pan_tilt` query (camera units).
//! - `preset`: the preset last recalled or stored through this driver.

use std::collections::VecDeque;
use std::time::{Duration, Instant};

use serde::Deserialize;
use serde_json::{Map, Value, json};

use super::frame::{
    self, Command, ErrorCode, Inquiry, IpMessage, Message, PacketReader, Pan, PayloadType,
    PresetAction, Reply, Tilt, Zoom,
};
use crate::{
    DeviceError, DeviceErrorKind, DriverSettings, OptionsError, Output, Protocol, Request,
    SessionError,
};

/// Default wait for a reply before a VISCA over IP message is sent again.
pub const DEFAULT_RESEND_INTERVAL: Duration = Duration::from_millis(300);

/// How many times a VISCA over IP message is sent again before the session gives up.
pub const RESENDS: u8 = 3;

/// How long a serial or TCP camera may take to answer IF_Clear on connect.
pub const HANDSHAKE_TIMEOUT: Duration = Duration::from_secs(5);

/// Pan speed when a `pan_tilt` command names none (the middle of 1..=0x18).
pub const DEFAULT_PAN_SPEED: u8 = 0x0C;
/// Tilt speed when a `pan_tilt` command names none (the middle of 1..=0x14).
pub const DEFAULT_TILT_SPEED: u8 = 0x0A;

/// Builds a session for [`super::DRIVER`].
pub fn build(settings: &DriverSettings) -> Result<Box<dyn Protocol>, String> {
    let options = Options::from_settings(settings).map_err(|e| e.to_string())?;
    Ok(Box::new(Session::new(options)))
}

/// How packets travel.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Framing {
    /// Bare packets on a serial line.
    Serial,
    /// Sony VISCA over IP: one datagram per message, 8-byte header, sequence numbers.
    Ip,
    /// Bare packets on a TCP socket.
    Tcp,
    /// Bare packets in UDP datagrams, without Sony's header: cameras of other vendors
    /// (HuddleCam on 52381, Avonic on 1259). Like `tcp`, but lost datagrams are not
    /// resent: without sequence numbers a resend could run twice.
    Udp,
}

/// The driver's settings, checked once when the profile is loaded.
///
/// - `framing` (default `"ip"`): `"ip"`, `"serial"` or `"tcp"` (see the module docs).
/// - `address` (default 1): the camera's address on a serial chain, 1 to 7 (`serial` and
///   `tcp`). VISCA over IP cameras always answer as 1.
/// - `resend_interval_ms` (default 300): `ip` only; how long to wait for any reply before
///   sending a message again (20 to 5000).
#[derive(Debug, Clone)]
pub struct Options {
    pub framing: Framing,
    pub address: u8,
    pub resend_interval: Duration,
}

impl Default for Options {
    fn default() -> Options {
        Options {
            framing: Framing::Ip,
            address: 1,
            resend_interval: DEFAULT_RESEND_INTERVAL,
        }
    }
}

/// `[options]` as a profile writes them.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct OptionsFile {
    framing: Option<String>,
    address: Option<u64>,
    resend_interval_ms: Option<u64>,
}

impl Options {
    pub fn from_settings(settings: &DriverSettings) -> Result<Options, OptionsError> {
        let file: OptionsFile = settings.options()?;
        let framing = match file.framing.as_deref() {
            None | Some("ip") => Framing::Ip,
            Some("serial") => Framing::Serial,
            Some("tcp") => Framing::Tcp,
            Some("udp") => Framing::Udp,
            Some(other) => {
                return Err(OptionsError::at_key(
                    "framing",
                    format!(
                        "`framing` must be \"ip\" (Sony VISCA over IP), \"serial\", \"tcp\" or \"udp\" (bare VISCA), got \"{other}\""
                    ),
                ));
            }
        };
        let address = match file.address {
            None => 1,
            Some(a) if (1..=7).contains(&a) => a as u8,
            Some(a) => {
                return Err(OptionsError::at_key(
                    "address",
                    format!("`address` must be an integer from 1 to 7, got {a}"),
                ));
            }
        };
        if framing == Framing::Ip && address != 1 {
            return Err(OptionsError::at_key(
                "address",
                format!(
                    "`address` {address} does not apply to VISCA over IP, where the camera is always 1; remove it or use framing \"serial\"/\"tcp\""
                ),
            ));
        }
        let resend_interval = match file.resend_interval_ms {
            None => DEFAULT_RESEND_INTERVAL,
            Some(ms) if (20..=5000).contains(&ms) => Duration::from_millis(ms),
            Some(ms) => {
                return Err(OptionsError::at_key(
                    "resend_interval_ms",
                    format!("`resend_interval_ms` must be an integer from 20 to 5000, got {ms}"),
                ));
            }
        };
        Ok(Options {
            framing,
            address,
            resend_interval,
        })
    }
}

/// Where the connection is.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Phase {
    /// No connection, or the last one ended in [`Output::Fatal`]: bytes are ignored.
    Down,
    /// Sent RESET (ip) or IF_Clear (serial, tcp); waiting for the answer.
    Handshake,
    Ready,
}

/// What the message in flight is waiting for.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Awaiting {
    /// VISCA over IP RESET, answered by a control reply.
    Reset,
    /// IF_Clear to our camera, answered `z0 50 FF`.
    IfClear,
    Command(Command),
    Inquiry(Inquiry),
}

/// The message in flight.
#[derive(Debug)]
struct InFlight {
    awaiting: Awaiting,
    /// The VISCA packet (for messages).
    packet: Vec<u8>,
    /// Sequence number and datagram, VISCA over IP only.
    sequence: u32,
    datagram: Vec<u8>,
    /// How many times it went out.
    sends: u8,
    /// When to send it again: VISCA over IP until any reply to it arrived.
    resend_at: Option<Instant>,
    /// The socket the camera's ACK named.
    socket: Option<u8>,
}

type Update = (String, Value);

/// One VISCA connection's client state.
#[derive(Debug)]
pub struct Session {
    options: Options,
    phase: Phase,
    packets: PacketReader,
    /// Next VISCA over IP sequence number.
    sequence: u32,
    flight: Option<InFlight>,
    /// Serial and TCP: when waiting for IF_Clear's answer has taken too long.
    handshake_deadline: Option<Instant>,
    outputs: VecDeque<Output>,
}

impl Session {
    pub fn new(options: Options) -> Session {
        Session {
            options,
            phase: Phase::Down,
            packets: PacketReader::new(),
            sequence: 1,
            flight: None,
            handshake_deadline: None,
            outputs: VecDeque::new(),
        }
    }

    /// Sends a message and keeps it as the one in flight.
    fn send(&mut self, now: Instant, awaiting: Awaiting) {
        let address = self.options.address;
        let (kind, packet) = match awaiting {
            Awaiting::Reset => (PayloadType::Control, frame::CONTROL_RESET.to_vec()),
            Awaiting::IfClear => (PayloadType::Command, Command::IfClear.encode(address)),
            Awaiting::Command(command) => (PayloadType::Command, command.encode(address)),
            Awaiting::Inquiry(inquiry) => (PayloadType::Inquiry, inquiry.encode(address)),
        };
        let sequence = self.sequence;
        let (datagram, resend_at) = if self.options.framing == Framing::Ip {
            self.sequence = self.sequence.wrapping_add(1);
            let datagram = IpMessage::new(kind, sequence, &packet).encode();
            (datagram, Some(now + self.options.resend_interval))
        } else {
            (packet.clone(), None)
        };
        self.outputs.push_back(Output::Transmit(datagram.clone()));
        self.flight = Some(InFlight {
            awaiting,
            packet,
            sequence,
            datagram,
            sends: 1,
            resend_at,
            socket: None,
        });
    }

    fn on_datagram(&mut self, datagram: &[u8]) {
        let message = match IpMessage::parse(datagram) {
            Ok(message) => message,
            Err(e) => {
                tracing::debug!(error = %e, "sony-visca: datagram ignored");
                return;
            }
        };
        let current = self.flight.as_ref().map(|f| f.sequence);
        if current != Some(message.sequence) {
            tracing::debug!(
                sequence = message.sequence,
                "sony-visca: reply with a stale sequence number ignored"
            );
            return;
        }
        match message.kind {
            PayloadType::Reply => self.on_reply(Reply::parse(&message.payload)),
            PayloadType::ControlReply => self.on_control_reply(&message.payload),
            _ => {}
        }
    }

    fn on_control_reply(&mut self, payload: &[u8]) {
        if let Some(meaning) = frame::control_error_meaning(payload) {
            let sent = self.flight.as_ref().map(|f| frame::hex(&f.datagram));
            let message = format!(
                "camera answered `{}` with a VISCA over IP control error ({meaning}); reconnecting resets the sequence numbers",
                sent.unwrap_or_default()
            );
            return self.fatal(SessionError::Protocol(message));
        }
        let resetting = self
            .flight
            .as_ref()
            .is_some_and(|f| f.awaiting == Awaiting::Reset);
        if resetting && payload == frame::CONTROL_RESET {
            self.flight = None;
            self.phase = Phase::Ready;
            self.outputs.push_back(Output::Ready);
        }
    }

    fn on_reply(&mut self, reply: Reply) {
        let address = self.options.address;
        let camera = match &reply {
            Reply::Ack { camera, .. }
            | Reply::Completion { camera, .. }
            | Reply::Error { camera, .. } => *camera,
            // Broadcast echoes, network-change notices, packets for others on the chain.
            _ => return,
        };
        let Some(flight) = self.flight.as_mut() else {
            return;
        };
        // RESET is answered by a control reply, never by a VISCA packet.
        if camera != address || flight.awaiting == Awaiting::Reset {
            return;
        }
        flight.resend_at = None;
        match (flight.awaiting, reply) {
            (Awaiting::IfClear, Reply::Completion { .. }) => {
                self.flight = None;
                self.handshake_deadline = None;
                self.phase = Phase::Ready;
                self.outputs.push_back(Output::Ready);
            }
            (Awaiting::IfClear, Reply::Error { code, .. }) => {
                let message = format!(
                    "camera {address} answered IF_Clear with {code} ({}); check that `address` is the camera's and `framing` is right",
                    code.meaning()
                );
                self.fatal(SessionError::Protocol(message));
            }
            (Awaiting::Command(_), Reply::Ack { socket, .. }) => flight.socket = Some(socket),
            (Awaiting::Command(command), Reply::Completion { socket, .. })
                if flight.socket.is_none_or(|s| s == socket) =>
            {
                self.finish(Ok(updates_after(command)));
            }
            (Awaiting::Command(_) | Awaiting::Inquiry(_), Reply::Error { socket, code, .. })
                if socket == 0 || flight.socket.is_none_or(|s| s == socket) =>
            {
                let error = device_error(code, &flight.packet);
                self.finish(Err(error));
            }
            (Awaiting::Inquiry(inquiry), Reply::Completion { data, .. }) => {
                let answer = decode_answer(inquiry, &data).ok_or_else(|| {
                    DeviceError::new(
                        DeviceErrorKind::Failed,
                        format!(
                            "camera answered `{}` with data `{}`, which does not fit that inquiry",
                            frame::hex(&flight.packet),
                            frame::hex(&data)
                        ),
                    )
                });
                self.finish(answer);
            }
            // An ACK to an inquiry, a Completion from another socket (a command given up
            // on earlier): not the answer.
            _ => {}
        }
    }

    /// Ends the request in flight with its updates or error.
    fn finish(&mut self, result: Result<Vec<Update>, DeviceError>) {
        self.flight = None;
        let result = result.map(|updates| {
            self.outputs.extend(
                updates
                    .into_iter()
                    .map(|(point, value)| Output::Update { point, value }),
            );
        });
        self.outputs.push_back(Output::Completed(result));
    }

    /// What a request sends.
    fn plan(&self, request: &Request) -> Result<Message, DeviceError> {
        match request {
            Request::Command { name, args } => {
                let command = match name.as_str() {
                    "power" => Command::Power(bool_arg(args, "on")?),
                    "zoom" => plan_zoom(args)?,
                    "zoom_to" => {
                        let position = int_arg(args, "position")?.ok_or_else(|| {
                            invalid(format!(
                                "`zoom_to` needs `position` (0 to {})",
                                frame::ZOOM_MAX
                            ))
                        })?;
                        Command::ZoomTo(in_range(position, "position", 0, frame::ZOOM_MAX)?)
                    }
                    "pan_tilt" => plan_pan_tilt(args)?,
                    "preset" => plan_preset(args)?,
                    _ => {
                        return Err(unsupported(format!(
                            "sony-visca has no command `{name}`; it has: {}",
                            super::CATALOG.command_names()
                        )));
                    }
                };
                Ok(Message::Command(command))
            }
            Request::Poll { query } => {
                let inquiry = match query.as_str() {
                    "power" => Inquiry::Power,
                    "zoom" => Inquiry::Zoom,
                    "pan_tilt" => Inquiry::PanTilt,
                    _ => {
                        return Err(unsupported(format!(
                            "sony-visca has no query `{query}`; it has: {}",
                            super::CATALOG.query_names()
                        )));
                    }
                };
                Ok(Message::Inquiry(inquiry))
            }
        }
    }

    /// Gives up on the connection; nothing more happens until the next `connected`.
    fn fatal(&mut self, error: SessionError) {
        self.phase = Phase::Down;
        self.flight = None;
        self.handshake_deadline = None;
        self.packets.clear();
        self.outputs.push_back(Output::Fatal(error));
    }
}

impl Protocol for Session {
    fn check(&self, request: &Request) -> Result<(), DeviceError> {
        self.plan(request).map(|_| ())
    }

    /// On a serial chain the IF_Clear greeting is timed here; VISCA over IP resends its
    /// reset and leaves the greeting to the runtime's `connect_timeout`.
    fn handshake_timeout(&self) -> Option<Duration> {
        (self.options.framing != Framing::Ip).then_some(HANDSHAKE_TIMEOUT)
    }

    fn connected(&mut self, now: Instant) {
        self.phase = Phase::Handshake;
        self.packets.clear();
        self.outputs.clear();
        self.flight = None;
        self.sequence = 1;
        if self.options.framing == Framing::Ip {
            self.handshake_deadline = None;
            self.send(now, Awaiting::Reset);
        } else {
            self.handshake_deadline = Some(now + HANDSHAKE_TIMEOUT);
            self.send(now, Awaiting::IfClear);
        }
    }

    fn received(&mut self, _now: Instant, data: &[u8]) {
        if self.phase == Phase::Down {
            return;
        }
        if self.options.framing == Framing::Ip {
            return self.on_datagram(data);
        }
        self.packets.push(data);
        let discarded = self.packets.take_discarded();
        if discarded > 0 {
            tracing::debug!(discarded, "sony-visca: bytes outside any packet skipped");
        }
        while self.phase != Phase::Down {
            let Some(packet) = self.packets.next_packet() else {
                break;
            };
            self.on_reply(Reply::parse(&packet));
        }
    }

    fn start(&mut self, now: Instant, request: &Request) -> Result<(), DeviceError> {
        if self.phase != Phase::Ready || self.flight.is_some() {
            return Err(DeviceError::new(
                DeviceErrorKind::Busy,
                "the VISCA session is not ready for a request",
            ));
        }
        let awaiting = match self.plan(request)? {
            Message::Command(command) => Awaiting::Command(command),
            Message::Inquiry(inquiry) => Awaiting::Inquiry(inquiry),
        };
        self.send(now, awaiting);
        Ok(())
    }

    fn abandon(&mut self) {
        self.flight = None;
    }

    fn poll_output(&mut self) -> Option<Output> {
        self.outputs.pop_front()
    }

    fn poll_timeout(&self) -> Option<Instant> {
        let resend = self.flight.as_ref().and_then(|f| f.resend_at);
        match (resend, self.handshake_deadline) {
            (Some(a), Some(b)) => Some(a.min(b)),
            (a, b) => a.or(b),
        }
    }

    fn handle_timeout(&mut self, now: Instant) {
        if self.handshake_deadline.is_some_and(|d| now >= d) {
            let message = format!(
                "camera {} did not answer IF_Clear within {}s; check the cable or address, the baud rate (usually 9600) and `address`",
                self.options.address,
                HANDSHAKE_TIMEOUT.as_secs()
            );
            return self.fatal(SessionError::Protocol(message));
        }
        let interval = self.options.resend_interval;
        let Some(flight) = self.flight.as_mut() else {
            return;
        };
        if flight.resend_at.is_none_or(|at| now < at) {
            return;
        }
        if flight.sends <= RESENDS {
            flight.sends += 1;
            flight.resend_at = Some(now + interval);
            let datagram = flight.datagram.clone();
            self.outputs.push_back(Output::Transmit(datagram));
            return;
        }
        let what = match flight.awaiting {
            Awaiting::Reset => "RESET".to_string(),
            _ => format!("`{}`", frame::hex(&flight.packet)),
        };
        let message = format!(
            "camera did not answer {what} (sequence number {}) after {} tries {} ms apart; check the address, that VISCA over IP is on (UDP 52381) and the network",
            flight.sequence,
            flight.sends,
            interval.as_millis()
        );
        if flight.awaiting == Awaiting::Reset {
            self.fatal(SessionError::Protocol(message));
        } else {
            self.finish(Err(DeviceError::new(DeviceErrorKind::Failed, message)));
        }
    }
}

/// The updates a completed command implies; positions come from the inquiries.
fn updates_after(command: Command) -> Vec<Update> {
    match command {
        Command::Power(on) => vec![("power".into(), json!(power_word(on)))],
        Command::Preset { number, .. } => vec![("preset".into(), json!(number))],
        _ => Vec::new(),
    }
}

fn power_word(on: bool) -> &'static str {
    if on { "on" } else { "off" }
}

/// The updates an inquiry's answer carries, `None` if the data does not fit.
fn decode_answer(inquiry: Inquiry, data: &[u8]) -> Option<Vec<Update>> {
    match (inquiry, data) {
        (Inquiry::Power, [0x02]) => Some(vec![("power".into(), json!("on"))]),
        (Inquiry::Power, [0x03]) => Some(vec![("power".into(), json!("off"))]),
        (Inquiry::Zoom, &[p, q, r, s]) => {
            let zoom = frame::from_nibbles([p, q, r, s])?;
            Some(vec![("zoom".into(), json!(zoom))])
        }
        (Inquiry::PanTilt, &[p0, p1, p2, p3, t0, t1, t2, t3]) => {
            let pan = frame::from_nibbles([p0, p1, p2, p3])? as i16;
            let tilt = frame::from_nibbles([t0, t1, t2, t3])? as i16;
            Some(vec![
                ("pan".into(), json!(pan)),
                ("tilt".into(), json!(tilt)),
            ])
        }
        _ => None,
    }
}

/// What a camera's error means for the request.
fn device_error(code: ErrorCode, packet: &[u8]) -> DeviceError {
    let kind = match code {
        ErrorCode::SYNTAX => DeviceErrorKind::Unsupported,
        ErrorCode::BUFFER_FULL | ErrorCode::NOT_EXECUTABLE => DeviceErrorKind::Busy,
        _ => DeviceErrorKind::Failed,
    };
    DeviceError::new(
        kind,
        format!(
            "camera answered {code} ({}) to `{}`",
            code.meaning(),
            frame::hex(packet)
        ),
    )
}

fn plan_zoom(args: &Map<String, Value>) -> Result<Command, DeviceError> {
    let speed = int_arg(args, "speed")?
        .map(|s| in_range(s, "speed", 0, frame::ZOOM_SPEED_MAX))
        .transpose()?;
    let zoom = match str_arg(args, "action")? {
        "tele" => Zoom::Tele(speed),
        "wide" => Zoom::Wide(speed),
        "stop" => Zoom::Stop,
        other => {
            return Err(invalid(format!(
                "zoom `action` must be \"tele\", \"wide\" or \"stop\", got \"{other}\""
            )));
        }
    };
    Ok(Command::Zoom(zoom))
}

fn plan_pan_tilt(args: &Map<String, Value>) -> Result<Command, DeviceError> {
    let (pan, tilt) = match str_arg(args, "direction")? {
        "up" => (Pan::Stop, Tilt::Up),
        "down" => (Pan::Stop, Tilt::Down),
        "left" => (Pan::Left, Tilt::Stop),
        "right" => (Pan::Right, Tilt::Stop),
        "up_left" => (Pan::Left, Tilt::Up),
        "up_right" => (Pan::Right, Tilt::Up),
        "down_left" => (Pan::Left, Tilt::Down),
        "down_right" => (Pan::Right, Tilt::Down),
        "stop" => (Pan::Stop, Tilt::Stop),
        other => {
            return Err(invalid(format!(
                "`direction` must be up, down, left, right, up_left, up_right, down_left, down_right or stop, got \"{other}\""
            )));
        }
    };
    let pan_speed = int_arg(args, "pan_speed")?
        .map(|s| in_range(s, "pan_speed", 1, frame::PAN_SPEED_MAX))
        .transpose()?
        .unwrap_or(DEFAULT_PAN_SPEED);
    let tilt_speed = int_arg(args, "tilt_speed")?
        .map(|s| in_range(s, "tilt_speed", 1, frame::TILT_SPEED_MAX))
        .transpose()?
        .unwrap_or(DEFAULT_TILT_SPEED);
    Ok(Command::PanTilt {
        pan_speed,
        tilt_speed,
        pan,
        tilt,
    })
}

fn plan_preset(args: &Map<String, Value>) -> Result<Command, DeviceError> {
    let action = match str_arg(args, "action")? {
        "recall" => PresetAction::Recall,
        "set" => PresetAction::Set,
        other => {
            return Err(invalid(format!(
                "preset `action` must be \"recall\" or \"set\", got \"{other}\""
            )));
        }
    };
    let number = int_arg(args, "number")?.ok_or_else(|| {
        invalid(format!(
            "`preset` needs `number` (0 to {})",
            frame::PRESET_MAX
        ))
    })?;
    let number = in_range(number, "number", 0, frame::PRESET_MAX)?;
    Ok(Command::Preset { action, number })
}

fn in_range<T>(value: i64, name: &str, min: T, max: T) -> Result<T, DeviceError>
where
    T: TryFrom<i64> + PartialOrd + std::fmt::Display + Copy,
{
    T::try_from(value)
        .ok()
        .filter(|v| *v >= min && *v <= max)
        .ok_or_else(|| invalid(format!("`{name}` must be {min} to {max}, got {value}")))
}

/// An optional integer argument; present but not an integer is the caller's mistake.
fn int_arg(args: &Map<String, Value>, name: &str) -> Result<Option<i64>, DeviceError> {
    match args.get(name) {
        None | Some(Value::Null) => Ok(None),
        Some(value) => value
            .as_i64()
            .map(Some)
            .ok_or_else(|| invalid(format!("`{name}` must be an integer, got {value}"))),
    }
}

fn bool_arg(args: &Map<String, Value>, name: &str) -> Result<bool, DeviceError> {
    match args.get(name) {
        Some(Value::Bool(b)) => Ok(*b),
        None | Some(Value::Null) => Err(invalid(format!("`{name}` (true or false) is required"))),
        Some(other) => Err(invalid(format!(
            "`{name}` must be true or false, got {other}"
        ))),
    }
}

fn str_arg<'a>(args: &'a Map<String, Value>, name: &str) -> Result<&'a str, DeviceError> {
    match args.get(name) {
        Some(Value::String(s)) => Ok(s),
        None | Some(Value::Null) => Err(invalid(format!("`{name}` is required"))),
        Some(other) => Err(invalid(format!("`{name}` must be a string, got {other}"))),
    }
}

fn invalid(message: impl Into<String>) -> DeviceError {
    DeviceError::new(DeviceErrorKind::InvalidArgs, message)
}

fn unsupported(message: impl Into<String>) -> DeviceError {
    DeviceError::new(DeviceErrorKind::Unsupported, message)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::testing::*;
    use crate::visca::DRIVER;

    /// `"01 02 FF"` as bytes.
    fn bytes(text: &str) -> Vec<u8> {
        text.split_whitespace()
            .map(|b| u8::from_str_radix(b, 16).unwrap())
            .collect()
    }

    fn settings(options: Value) -> DriverSettings {
        let Value::Object(options) = options else {
            panic!("options must be an object")
        };
        DriverSettings {
            options,
            password: None,
        }
    }

    fn session(options: Value) -> Session {
        Session::new(Options::from_settings(&settings(options)).unwrap())
    }

    fn feed(s: &mut Session, wire: &str) -> Vec<Output> {
        s.received(Instant::now(), &bytes(wire));
        drain(s)
    }

    fn tx(wire: &str) -> Output {
        Output::Transmit(bytes(wire))
    }

    fn failed_with(outputs: &[Output]) -> DeviceError {
        match outputs {
            [Output::Completed(Err(e))] => e.clone(),
            other => panic!("expected one failed completion, got {other:?}"),
        }
    }

    /// A serial session for camera `address`, IF_Clear answered.
    fn serial(address: u8) -> Session {
        let mut s = session(json!({"framing": "serial", "address": address}));
        s.connected(Instant::now());
        assert_eq!(
            drain(&mut s),
            [Output::Transmit(Command::IfClear.encode(address))]
        );
        let answer = format!("{:X}0 50 FF", address + 8);
        assert_eq!(feed(&mut s, &answer), [Output::Ready]);
        s
    }

    /// A VISCA over IP session after RESET (sequence 1); the next message is sequence 2.
    fn ip(t0: Instant) -> Session {
        let mut s = session(json!({"framing": "ip"}));
        s.connected(t0);
        assert_eq!(drain(&mut s), [tx("02 00 00 01 00 00 00 01 01")]);
        assert_eq!(feed(&mut s, "02 01 00 01 00 00 00 01 01"), [Output::Ready]);
        assert_eq!(s.poll_timeout(), None);
        s
    }

    #[test]
    fn serial_ack_then_completion() {
        let mut s = serial(1);
        assert_eq!(
            start(&mut s, command("power", json!({"on": true}))),
            [tx("81 01 04 00 02 FF")]
        );
        // The ACK alone does not complete the command.
        assert_eq!(feed(&mut s, "90 41 FF"), []);
        assert_eq!(
            feed(&mut s, "90 51 FF"),
            [update("power", json!("on")), done()]
        );
        assert_eq!(
            s.poll_timeout(),
            None,
            "no resends without sequence numbers"
        );
    }

    #[test]
    fn a_completion_from_another_socket_is_not_ours() {
        let mut s = serial(1);
        start(
            &mut s,
            command("preset", json!({"action": "set", "number": 4})),
        );
        assert_eq!(feed(&mut s, "90 42 FF"), []);
        // Socket 1's Completion belongs to a command given up on earlier.
        assert_eq!(feed(&mut s, "90 51 FF"), []);
        assert_eq!(
            feed(&mut s, "90 52 FF"),
            [update("preset", json!(4)), done()]
        );
    }

    #[test]
    fn a_completion_without_ack_still_completes() {
        let mut s = serial(1);
        start(&mut s, command("zoom", json!({"action": "stop"})));
        assert_eq!(feed(&mut s, "90 52 FF"), [done()]);
    }

    #[test]
    fn errors_fail_the_request_with_clear_words() {
        let cases = [
            ("90 60 02 FF", DeviceErrorKind::Unsupported, "syntax error"),
            ("90 60 03 FF", DeviceErrorKind::Busy, "buffer full"),
            ("90 61 04 FF", DeviceErrorKind::Failed, "cancelled"),
            ("90 61 05 FF", DeviceErrorKind::Failed, "no socket"),
            ("90 61 41 FF", DeviceErrorKind::Busy, "not executable"),
            ("90 60 01 FF", DeviceErrorKind::Failed, "message length"),
        ];
        for (wire, kind, words) in cases {
            let mut s = serial(1);
            start(
                &mut s,
                command("zoom", json!({"action": "tele", "speed": 3})),
            );
            // ACK first, then the error, as a camera may do.
            assert_eq!(feed(&mut s, "90 41 FF"), []);
            let error = failed_with(&feed(&mut s, wire));
            assert_eq!(error.kind, kind, "{wire}");
            assert!(error.message.contains(words), "{wire}: {}", error.message);
            assert!(
                error.message.contains("`81 01 04 07 23 FF`"),
                "{}",
                error.message
            );
            // The camera said no; the session goes on.
            assert_eq!(start(&mut s, poll("power")), [tx("81 09 04 00 FF")]);
        }
    }

    #[test]
    fn inquiries_update_points() {
        let mut s = serial(1);
        assert_eq!(start(&mut s, poll("power")), [tx("81 09 04 00 FF")]);
        assert_eq!(
            feed(&mut s, "90 50 03 FF"),
            [update("power", json!("off")), done()]
        );
        assert_eq!(start(&mut s, poll("zoom")), [tx("81 09 04 47 FF")]);
        assert_eq!(
            feed(&mut s, "90 50 01 02 03 04 FF"),
            [update("zoom", json!(0x1234)), done()]
        );
        assert_eq!(start(&mut s, poll("pan_tilt")), [tx("81 09 06 12 FF")]);
        assert_eq!(
            feed(&mut s, "90 50 0F 0F 0F 00 00 01 02 0C FF"),
            [
                update("pan", json!(-16)),
                update("tilt", json!(0x12C)),
                done()
            ]
        );
        start(&mut s, poll("power"));
        let error = failed_with(&feed(&mut s, "90 50 04 FF"));
        assert_eq!(error.kind, DeviceErrorKind::Failed);
        assert!(
            error.message.contains("`81 09 04 00 FF` with data `04`"),
            "{}",
            error.message
        );
    }

    #[test]
    fn serial_chunks_noise_and_other_cameras() {
        let mut s = serial(2);
        assert_eq!(start(&mut s, poll("zoom")), [tx("82 09 04 47 FF")]);
        // Noise, camera 1's answer, our own packet round the chain, a network-change
        // notice, then ours in pieces.
        assert_eq!(feed(&mut s, "00 12 FF 90 50 00 00 00 00 FF"), []);
        assert_eq!(feed(&mut s, "82 09 04 47 FF A0 38 FF"), []);
        assert_eq!(feed(&mut s, "A0"), []);
        assert_eq!(feed(&mut s, "50 00 04"), []);
        assert_eq!(
            feed(&mut s, "00 00 FF"),
            [update("zoom", json!(0x400)), done()]
        );
    }

    #[test]
    fn tcp_is_serial_framing_with_address_one() {
        let mut s = session(json!({"framing": "tcp"}));
        s.connected(Instant::now());
        assert_eq!(drain(&mut s), [tx("81 01 00 01 FF")]);
        assert_eq!(feed(&mut s, "90 50 FF"), [Output::Ready]);
        assert_eq!(
            start(
                &mut s,
                command("preset", json!({"action": "recall", "number": 2}))
            ),
            [tx("81 01 04 3F 02 02 FF")]
        );
    }

    #[test]
    fn serial_handshake_times_out_or_fails() {
        let mut s = session(json!({"framing": "serial", "address": 3}));
        let t0 = Instant::now();
        s.connected(t0);
        drain(&mut s);
        assert_eq!(s.poll_timeout(), Some(t0 + HANDSHAKE_TIMEOUT));
        s.handle_timeout(t0 + HANDSHAKE_TIMEOUT);
        let error = fatal(&drain(&mut s));
        assert!(
            error
                .to_string()
                .contains("camera 3 did not answer IF_Clear"),
            "{error}"
        );

        let mut s = session(json!({"framing": "serial"}));
        s.connected(t0);
        drain(&mut s);
        let error = fatal(&feed(&mut s, "90 60 02 FF"));
        assert!(error.to_string().contains("syntax error"), "{error}");
        assert_eq!(feed(&mut s, "90 50 FF"), [], "nothing until reconnected");
    }

    #[test]
    fn ip_ack_then_completion_with_sequence_numbers() {
        let mut s = ip(Instant::now());
        assert_eq!(
            start(&mut s, command("power", json!({"on": true}))),
            [tx("01 00 00 06 00 00 00 02 81 01 04 00 02 FF")]
        );
        assert_eq!(feed(&mut s, "01 11 00 03 00 00 00 02 90 41 FF"), []);
        assert_eq!(s.poll_timeout(), None, "heard from the camera: no resend");
        assert_eq!(
            feed(&mut s, "01 11 00 03 00 00 00 02 90 51 FF"),
            [update("power", json!("on")), done()]
        );
        assert_eq!(
            start(&mut s, poll("zoom")),
            [tx("01 10 00 05 00 00 00 03 81 09 04 47 FF")]
        );
        assert_eq!(
            feed(&mut s, "01 11 00 07 00 00 00 03 90 50 01 02 03 04 FF"),
            [update("zoom", json!(0x1234)), done()]
        );
    }

    #[test]
    fn ip_resends_the_same_datagram_then_gives_up() {
        let t0 = Instant::now();
        let mut s = ip(t0);
        let sent = "01 00 00 07 00 00 00 02 81 01 04 3F 01 05 FF";
        s.start(
            t0,
            &command("preset", json!({"action": "set", "number": 5})),
        )
        .unwrap();
        assert_eq!(drain(&mut s), [tx(sent)]);
        let mut at = t0;
        for _ in 0..RESENDS {
            at += DEFAULT_RESEND_INTERVAL;
            assert_eq!(s.poll_timeout(), Some(at));
            s.handle_timeout(at);
            assert_eq!(
                drain(&mut s),
                [tx(sent)],
                "same bytes, same sequence number"
            );
        }
        at += DEFAULT_RESEND_INTERVAL;
        s.handle_timeout(at);
        let error = failed_with(&drain(&mut s));
        assert!(error.message.contains("after 4 tries"), "{}", error.message);
        // A late answer to it is stale now, and the next request takes sequence 3.
        assert_eq!(feed(&mut s, "01 11 00 03 00 00 00 02 90 51 FF"), []);
        assert_eq!(
            start(&mut s, poll("power")),
            [tx("01 10 00 05 00 00 00 03 81 09 04 00 FF")]
        );
    }

    #[test]
    fn ip_resend_then_answer() {
        let t0 = Instant::now();
        let mut s = ip(t0);
        s.start(t0, &poll("power")).unwrap();
        let sent = drain(&mut s);
        s.handle_timeout(t0 + DEFAULT_RESEND_INTERVAL);
        assert_eq!(drain(&mut s), sent);
        assert_eq!(
            feed(&mut s, "01 11 00 04 00 00 00 02 90 50 02 FF"),
            [update("power", json!("on")), done()]
        );
        // A duplicate answer (the camera answered both copies) is stale.
        assert_eq!(feed(&mut s, "01 11 00 04 00 00 00 02 90 50 02 FF"), []);
    }

    #[test]
    fn ip_ignores_stale_and_broken_datagrams() {
        let mut s = ip(Instant::now());
        start(&mut s, command("power", json!({"on": false})));
        assert_eq!(
            feed(&mut s, "01 11 00 03 00 00 00 01 90 51 FF"),
            [],
            "stale"
        );
        assert_eq!(
            feed(&mut s, "01 11 00 03 00 00 00 09 90 51 FF"),
            [],
            "future"
        );
        assert_eq!(feed(&mut s, "FF 15 90 00 00 00 00 02 03 00"), [], "garbled");
        assert_eq!(
            feed(&mut s, "01 11 00 09 00 00 00 02 90 51 FF"),
            [],
            "bad length"
        );
        assert_eq!(
            feed(&mut s, "01 11 00 03 00 00 00 02 90 51 FF"),
            [update("power", json!("off")), done()]
        );
    }

    #[test]
    fn ip_control_error_is_fatal() {
        let mut s = ip(Instant::now());
        start(&mut s, poll("power"));
        let error = fatal(&feed(&mut s, "02 01 00 02 00 00 00 02 0F 01"));
        assert!(
            error.to_string().contains("abnormal sequence number"),
            "{error}"
        );
    }

    #[test]
    fn ip_reset_unanswered_is_fatal() {
        let t0 = Instant::now();
        let mut s = session(json!({"resend_interval_ms": 50}));
        s.connected(t0);
        let reset = drain(&mut s);
        // A VISCA reply with RESET's sequence number is not its answer.
        assert_eq!(feed(&mut s, "01 11 00 03 00 00 00 01 90 51 FF"), []);
        assert_eq!(s.poll_timeout(), Some(t0 + Duration::from_millis(50)));
        let mut at = t0;
        for _ in 0..RESENDS {
            at += Duration::from_millis(50);
            s.handle_timeout(at);
            assert_eq!(drain(&mut s), reset);
        }
        s.handle_timeout(at + Duration::from_millis(50));
        let error = fatal(&drain(&mut s));
        assert!(
            error.to_string().contains("did not answer RESET"),
            "{error}"
        );
    }

    #[test]
    fn exact_bytes_for_each_request() {
        let cases = [
            (command("power", json!({"on": false})), "81 01 04 00 03 FF"),
            (
                command("zoom", json!({"action": "tele"})),
                "81 01 04 07 02 FF",
            ),
            (
                command("zoom", json!({"action": "wide", "speed": 7})),
                "81 01 04 07 37 FF",
            ),
            (
                command("zoom", json!({"action": "stop", "speed": 2})),
                "81 01 04 07 00 FF",
            ),
            (
                command("zoom_to", json!({"position": 16384})),
                "81 01 04 47 04 00 00 00 FF",
            ),
            (
                command("pan_tilt", json!({"direction": "up"})),
                "81 01 06 01 0C 0A 03 01 FF",
            ),
            (
                command(
                    "pan_tilt",
                    json!({"direction": "down_right", "pan_speed": 24, "tilt_speed": 20}),
                ),
                "81 01 06 01 18 14 02 02 FF",
            ),
            (
                command(
                    "pan_tilt",
                    json!({"direction": "up_left", "pan_speed": 1, "tilt_speed": 1}),
                ),
                "81 01 06 01 01 01 01 01 FF",
            ),
            (
                command("pan_tilt", json!({"direction": "left"})),
                "81 01 06 01 0C 0A 01 03 FF",
            ),
            (
                command("pan_tilt", json!({"direction": "stop"})),
                "81 01 06 01 0C 0A 03 03 FF",
            ),
            (
                command("preset", json!({"action": "recall", "number": 127})),
                "81 01 04 3F 02 7F FF",
            ),
            (poll("pan_tilt"), "81 09 06 12 FF"),
        ];
        for (request, wire) in cases {
            let mut s = serial(1);
            assert_eq!(start(&mut s, request.clone()), [tx(wire)], "{request:?}");
        }
    }

    #[test]
    fn arguments_are_checked_without_touching_the_wire() {
        let bad = [
            command("power", json!({})),
            command("power", json!({"on": "yes"})),
            command("zoom", json!({"action": "in"})),
            command("zoom", json!({"action": "tele", "speed": 8})),
            command("zoom", json!({"speed": 1})),
            command("zoom_to", json!({"position": 16385})),
            command("zoom_to", json!({"position": -1})),
            command("zoom_to", json!({})),
            command("pan_tilt", json!({"direction": "north"})),
            command("pan_tilt", json!({"direction": "up", "pan_speed": 0})),
            command("pan_tilt", json!({"direction": "up", "tilt_speed": 21})),
            command("preset", json!({"action": "recall", "number": 255})),
            command("preset", json!({"action": "reset", "number": 1})),
            command("preset", json!({"action": "set"})),
        ];
        for request in bad {
            let mut s = serial(1);
            let err = s.start(Instant::now(), &request).unwrap_err();
            assert_eq!(err.kind, DeviceErrorKind::InvalidArgs, "{request:?}");
            assert_eq!(drain(&mut s), [], "{request:?}");
        }
        let mut s = serial(1);
        let err = s
            .start(
                Instant::now(),
                &command("zoom_to", json!({"position": 20000})),
            )
            .unwrap_err();
        assert_eq!(err.message, "`position` must be 0 to 16384, got 20000");
        let err = s
            .start(Instant::now(), &command("focus", json!({})))
            .unwrap_err();
        assert_eq!(err.kind, DeviceErrorKind::Unsupported);
        assert!(
            err.message
                .contains("pan_tilt, power, preset, zoom, zoom_to")
        );
        let err = s.start(Instant::now(), &poll("focus")).unwrap_err();
        assert_eq!(err.kind, DeviceErrorKind::Unsupported);
    }

    #[test]
    fn requests_wait_for_ready_and_for_each_other() {
        let mut s = session(json!({"framing": "serial"}));
        s.connected(Instant::now());
        assert_eq!(
            s.start(Instant::now(), &poll("power")).unwrap_err().kind,
            DeviceErrorKind::Busy
        );
        let mut s = serial(1);
        start(&mut s, poll("power"));
        assert_eq!(
            s.start(Instant::now(), &poll("power")).unwrap_err().kind,
            DeviceErrorKind::Busy
        );
        s.abandon();
        assert_eq!(start(&mut s, poll("zoom")), [tx("81 09 04 47 FF")]);
    }

    #[test]
    fn options_are_checked() {
        let check = |options: Value| {
            Options::from_settings(&settings(options))
                .map(|_| ())
                .unwrap_err()
                .to_string()
        };
        assert_eq!(
            check(json!({"baud": 9600})),
            "`baud`: unknown field `baud`, expected one of `framing`, `address`, `resend_interval_ms`"
        );
        assert!(check(json!({"framing": "pigeon"})).contains("`framing` must be \"ip\""));
        assert!(check(json!({"framing": "serial", "address": 8})).contains("1 to 7"));
        assert!(check(json!({"framing": "ip", "address": 2})).contains("always 1"));
        assert!(check(json!({"resend_interval_ms": 5})).contains("20 to 5000"));
        let options = Options::from_settings(&settings(json!({}))).unwrap();
        assert_eq!(options.framing, Framing::Ip);
        assert_eq!(options.resend_interval, DEFAULT_RESEND_INTERVAL);
        assert!((DRIVER.build)(&DriverSettings::default()).is_ok());
    }

    #[test]
    fn emitted_points_are_declared() {
        let mut s = serial(1);
        let mut seen = Vec::new();
        for (request, answer) in [
            (command("power", json!({"on": true})), "90 41 FF 90 51 FF"),
            (
                command("preset", json!({"action": "recall", "number": 1})),
                "90 51 FF",
            ),
            (poll("zoom"), "90 50 00 00 00 00 FF"),
            (poll("pan_tilt"), "90 50 00 00 00 00 00 00 00 00 FF"),
        ] {
            start(&mut s, request);
            for output in feed(&mut s, answer) {
                if let Output::Update { point, .. } = output {
                    assert!(
                        super::super::CATALOG
                            .point_names()
                            .contains(&point.as_str()),
                        "{point}"
                    );
                    seen.push(point);
                }
            }
        }
        seen.sort();
        let mut all: Vec<String> = super::super::CATALOG
            .point_names()
            .iter()
            .map(|p| p.to_string())
            .collect();
        all.sort();
        assert_eq!(seen, all);
    }
}
