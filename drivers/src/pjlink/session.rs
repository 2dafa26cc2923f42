//! The PJLink client as a sans-IO state machine (see [`crate::Protocol`]).
//!
//! A connection goes: greeting (with an optional MD5 challenge) → ready → one request at a
//! time. PJLink has no unsolicited traffic on TCP and replies only echo the command's
//! class and body, so a request is a short script of lines sent one after another, each
//! waiting for its echo. Every set is followed by a query of the same thing, because the
//! projector's `OK` only means "accepted", and panels should see the state it reports.

use std::collections::{BTreeMap, VecDeque};
use std::time::Instant;

use serde::Deserialize;
use serde_json::{Map, Value, json};

use super::frame::{
    self, Class, Command, ERROR_CATEGORIES, ErrorCode, FrameError, Greeting, MAX_LINE, Mute,
    PowerState, Reply,
};
use crate::kit::{self, Framer};
use crate::{
    DeviceError, DeviceErrorKind, DriverSettings, OptionsError, Output, Protocol, Request,
    SessionError,
};

const AUTH_MISSING: &str =
    "projector requires a password; set `password` for this device in the site config";
const AUTH_REJECTED: &str =
    "projector rejected the password (PJLINK ERRA); check the device's password in the site config";

/// Builds a session for [`super::DRIVER`].
pub fn build(settings: &DriverSettings) -> Result<Box<dyn Protocol>, String> {
    let options = Options::from_settings(settings).map_err(|e| e.to_string())?;
    Ok(Box::new(Session::new(options)))
}

/// The driver's settings, checked once when the profile is loaded.
#[derive(Debug, Clone, Default)]
pub struct Options {
    /// The class the projector speaks; class 2 adds SNUM/SVER to `info` and sends INPT and
    /// INST as class 2 so inputs with letter indexes (`3A`) and type 6 work.
    class: Class,
    inputs: InputNames,
    password: Option<String>,
}

/// `[options]` as a profile writes them.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct OptionsFile {
    class: Option<u64>,
    inputs: Option<Value>,
}

impl Options {
    pub fn from_settings(settings: &DriverSettings) -> Result<Options, OptionsError> {
        let file: OptionsFile = settings.options()?;
        let class = match file.class {
            None | Some(1) => Class::One,
            Some(2) => Class::Two,
            Some(other) => {
                return Err(OptionsError::at_key(
                    "class",
                    format!("`class` must be 1 or 2 (the projector's PJLink class), got {other}"),
                ));
            }
        };
        let inputs = match &file.inputs {
            None => InputNames::default(),
            Some(value) => InputNames::from_option(value, class)
                .map_err(|why| OptionsError::at_key("inputs", why))?,
        };
        Ok(Options {
            class,
            inputs,
            password: settings.password.clone(),
        })
    }
}

/// Friendly input names from the profile, both ways.
#[derive(Debug, Clone, Default)]
struct InputNames {
    codes: BTreeMap<String, String>,
    /// The first name (alphabetically) for each code, used when reporting.
    names: BTreeMap<String, String>,
}

impl InputNames {
    fn from_option(value: &Value, class: Class) -> Result<InputNames, String> {
        let table = value
            .as_object()
            .ok_or("`inputs` must be a table of name = \"code\", e.g. { hdmi1 = \"31\" }")?;
        let mut inputs = InputNames::default();
        for (name, code) in table {
            let code = code
                .as_str()
                .filter(|c| frame::is_input_code(c, class))
                .ok_or_else(|| {
                    format!(
                        "inputs.{name}: {code} is not a PJLink class {} input code {}",
                        class.number(),
                        code_hint(class)
                    )
                })?;
            inputs.codes.insert(name.clone(), code.to_string());
            inputs
                .names
                .entry(code.to_string())
                .or_insert_with(|| name.clone());
        }
        Ok(inputs)
    }

    /// The code to send for a panel's `source`: a configured name, or a raw code.
    fn resolve(&self, source: &str, class: Class) -> Result<String, DeviceError> {
        if let Some(code) = self.codes.get(source) {
            return Ok(code.clone());
        }
        let code = source.to_ascii_uppercase();
        if frame::is_input_code(&code, class) {
            return Ok(code);
        }
        let names: Vec<&str> = self.codes.keys().map(String::as_str).collect();
        let named = if names.is_empty() {
            String::new()
        } else {
            format!("one of {} or ", names.join(", "))
        };
        Err(invalid(format!(
            "unknown input `{source}`; use {named}a raw PJLink input code {}",
            code_hint(class)
        )))
    }

    /// How a code is reported: its configured name, else the code itself.
    fn name(&self, code: &str) -> String {
        self.names
            .get(code)
            .cloned()
            .unwrap_or_else(|| code.to_string())
    }
}

fn code_hint(class: Class) -> &'static str {
    match class {
        Class::One => "(type digit 1-5 then 1-9, e.g. \"31\"; letters and type 6 need `class = 2`)",
        Class::Two => "(type digit 1-6 then 1-9 or A-Z, e.g. \"31\" or \"3A\")",
    }
}

/// Where the connection is.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Phase {
    /// No connection yet, or the last one ended in [`Output::Fatal`]: bytes are ignored.
    Down,
    /// Connected, waiting for `PJLINK 0` / `PJLINK 1 <random>`.
    Greeting,
    /// Sent the digest with a harmless query; the projector's answer says whether the
    /// password is right. Only then is the session ready, so a wrong password never looks
    /// like a working device, not even for a moment.
    LoggingIn,
    /// Requests may run.
    Ready,
}

/// What the projector's answer to one line should be.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Expect {
    /// `OK` to a set.
    Ok,
    /// A value to turn into point updates.
    Report(Query),
}

/// The reads this driver knows; a poll names one or several.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Query {
    Power,
    Input,
    Mute,
    Errors,
    Lamps,
    Inputs,
    Name,
    Manufacturer,
    Product,
    Class,
    SerialNumber,
    SoftwareVersion,
}

impl Query {
    /// The queries behind a poll name, in the order they are sent.
    fn for_poll(name: &str, class: Class) -> Option<Vec<Query>> {
        let queries = match name {
            "power" => vec![Query::Power],
            "input" => vec![Query::Input],
            "mute" => vec![Query::Mute],
            "errors" => vec![Query::Errors],
            "lamp" => vec![Query::Lamps],
            "inputs" => vec![Query::Inputs],
            "info" if class == Class::Two => vec![
                Query::Name,
                Query::Manufacturer,
                Query::Product,
                Query::Class,
                Query::SerialNumber,
                Query::SoftwareVersion,
            ],
            "info" => vec![
                Query::Name,
                Query::Manufacturer,
                Query::Product,
                Query::Class,
            ],
            _ => return None,
        };
        Some(queries)
    }

    /// The query line; `class` is the projector's class, used where class 2 has a richer
    /// variant of a class 1 command.
    fn command(self, class: Class) -> Command {
        let (class, body) = match self {
            Query::Power => (Class::One, "POWR"),
            Query::Input => (class, "INPT"),
            Query::Mute => (Class::One, "AVMT"),
            Query::Errors => (Class::One, "ERST"),
            Query::Lamps => (Class::One, "LAMP"),
            Query::Inputs => (class, "INST"),
            Query::Name => (Class::One, "NAME"),
            Query::Manufacturer => (Class::One, "INF1"),
            Query::Product => (Class::One, "INF2"),
            Query::Class => (Class::One, "CLSS"),
            Query::SerialNumber => (Class::Two, "SNUM"),
            Query::SoftwareVersion => (Class::Two, "SVER"),
        };
        Command::query(class, body)
    }
}

/// One line of a request and what its answer should be.
#[derive(Debug, Clone)]
struct Step {
    command: Command,
    expect: Expect,
}

impl Step {
    fn set(class: Class, body: &str, param: impl Into<String>) -> Step {
        Step {
            command: Command::new(class, body, param),
            expect: Expect::Ok,
        }
    }

    fn query(query: Query, class: Class) -> Step {
        Step {
            command: query.command(class),
            expect: Expect::Report(query),
        }
    }
}

/// The request in flight: the line awaiting its answer and the lines still to send.
#[derive(Debug)]
struct InFlight {
    sent: Step,
    rest: VecDeque<Step>,
    /// A poll pauses between its queries; a command runs straight through.
    poll: bool,
}

type Update = (&'static str, Value);

/// One PJLink connection's client state.
#[derive(Debug)]
pub struct Session {
    options: Options,
    phase: Phase,
    lines: Framer,
    /// The digest still to be prefixed to the first command of this connection.
    digest: Option<String>,
    request: Option<InFlight>,
    /// The queries a paused poll has still to send, on [`Protocol::resume`].
    paused: Option<VecDeque<Step>>,
    outputs: VecDeque<Output>,
    /// The power state last read on this connection, to say what an ERR3 means.
    power: Option<PowerState>,
}

impl Session {
    pub fn new(options: Options) -> Session {
        Session {
            options,
            phase: Phase::Down,
            lines: frame::line_framer(MAX_LINE),
            digest: None,
            request: None,
            paused: None,
            outputs: VecDeque::new(),
            power: None,
        }
    }

    fn class(&self) -> Class {
        self.options.class
    }

    fn on_line(&mut self, line: &[u8]) {
        if frame::is_auth_error(line) {
            return self.fatal(SessionError::AuthFailed(AUTH_REJECTED.into()));
        }
        match self.phase {
            Phase::Greeting => self.on_greeting(line),
            Phase::LoggingIn => self.on_login_reply(line),
            Phase::Ready => self.on_reply(line),
            Phase::Down => {}
        }
    }

    fn on_greeting(&mut self, line: &[u8]) {
        match Greeting::parse(line) {
            Ok(Greeting::Open) => self.ready(),
            Ok(Greeting::Challenge(random)) => match &self.options.password {
                Some(password) => {
                    self.digest = Some(frame::auth_digest(&random, password));
                    self.phase = Phase::LoggingIn;
                    self.send(&Query::Class.command(Class::One));
                }
                None => self.fatal(SessionError::AuthFailed(AUTH_MISSING.into())),
            },
            Err(e) => self.fatal(SessionError::Protocol(e.to_string())),
        }
    }

    /// Any proper answer to the login query means the digest was accepted (a rejection is
    /// `PJLINK ERRA`, handled for every phase in [`Session::on_line`]).
    fn on_login_reply(&mut self, line: &[u8]) {
        match Reply::parse(line) {
            Ok(reply) if reply.answers(&Query::Class.command(Class::One)) => self.ready(),
            Ok(_) | Err(_) => {
                let message = format!(
                    "expected the answer to %1CLSS after logging in, got {}",
                    frame::escape(line)
                );
                self.fatal(SessionError::Protocol(message));
            }
        }
    }

    fn ready(&mut self) {
        self.phase = Phase::Ready;
        self.outputs.push_back(Output::Ready);
    }

    fn on_reply(&mut self, line: &[u8]) {
        let Some(mut flight) = self.request.take() else {
            let message = format!(
                "projector sent `{}` while no request was in flight",
                frame::escape(line)
            );
            return self.fatal(SessionError::Protocol(message));
        };
        let reply = match Reply::parse(line) {
            Ok(reply) => reply,
            Err(e) => return self.fatal(SessionError::Protocol(e.to_string())),
        };
        if !reply.answers(&flight.sent.command) {
            let message = format!(
                "expected reply to {}, got {}",
                flight.sent.command.header(),
                frame::escape(line)
            );
            return self.fatal(SessionError::Protocol(message));
        }
        match self.outcome(&flight.sent, &reply) {
            Err(e) => self.complete(Err(e)),
            Ok(updates) => {
                if flight.sent.expect == Expect::Report(Query::Power) {
                    self.power = PowerState::parse(&reply.value);
                }
                let updates = updates.into_iter().map(|(point, value)| Output::Update {
                    point: point.into(),
                    value,
                });
                self.outputs.extend(updates);
                match flight.rest.pop_front() {
                    // Between two queries of a poll, a waiting command may go first.
                    Some(next) if flight.poll => {
                        flight.rest.push_front(next);
                        self.paused = Some(flight.rest);
                        self.outputs.push_back(Output::Paused);
                    }
                    Some(next) => {
                        self.send(&next.command);
                        flight.sent = next;
                        self.request = Some(flight);
                    }
                    None => self.complete(Ok(())),
                }
            }
        }
    }

    /// What a matching reply means for the request.
    fn outcome(&self, step: &Step, reply: &Reply) -> Result<Vec<Update>, DeviceError> {
        if let Some(code) = reply.error() {
            // A laser projector has no lamp and says so with ERR1: nothing to report.
            if code == ErrorCode::Undefined && step.expect == Expect::Report(Query::Lamps) {
                return Ok(Vec::new());
            }
            return Err(projector_error(code, &step.command, self.power));
        }
        match step.expect {
            Expect::Ok if reply.value.eq_ignore_ascii_case("OK") => Ok(Vec::new()),
            Expect::Ok => Err(nonsense(&step.command, &reply.value, "expected OK")),
            Expect::Report(query) => self
                .report(query, &reply.value)
                .map_err(|why| nonsense(&step.command, &reply.value, why)),
        }
    }

    /// Turns a query answer into point updates; `Err` says what was expected instead.
    fn report(&self, query: Query, value: &str) -> Result<Vec<Update>, &'static str> {
        let text = |point| vec![(point, json!(value))];
        Ok(match query {
            Query::Power => {
                let state = PowerState::parse(value).ok_or("expected 0, 1, 2 or 3")?;
                vec![("power", json!(state.as_str()))]
            }
            Query::Input => vec![("input", json!(self.input_name(value)?))],
            Query::Mute => {
                let mute = Mute::parse(value).ok_or("expected 11, 21, 31 or 30")?;
                vec![
                    ("video_mute", json!(mute.video)),
                    ("audio_mute", json!(mute.audio)),
                ]
            }
            Query::Errors => vec![("errors", errors_value(value)?)],
            Query::Lamps => lamp_updates(value)?,
            Query::Inputs => {
                let codes =
                    frame::parse_inputs(value).ok_or("expected space-separated input codes")?;
                let names: Vec<String> = codes
                    .iter()
                    .map(|code| self.options.inputs.name(code))
                    .collect();
                vec![("inputs", json!(names))]
            }
            Query::Class => vec![("pjlink_class", json!(class_number(value)?))],
            Query::Name => text("name"),
            Query::Manufacturer => text("manufacturer"),
            Query::Product => text("product"),
            Query::SerialNumber => text("serial_number"),
            Query::SoftwareVersion => text("software_version"),
        })
    }

    /// The `input` point for an INPT answer. Any two alphanumerics are taken, not just
    /// codes of the configured class: a projector knows its inputs better than we do.
    fn input_name(&self, value: &str) -> Result<String, &'static str> {
        if value.len() != 2 || !value.bytes().all(|b| b.is_ascii_alphanumeric()) {
            return Err("expected a 2-character input code");
        }
        Ok(self.options.inputs.name(value))
    }

    /// The lines a request needs, in order.
    fn plan(&self, request: &Request) -> Result<Vec<Step>, DeviceError> {
        match request {
            Request::Command { name, args } => match name.as_str() {
                "power" => self.plan_power(args),
                "input" => self.plan_input(args),
                "mute" => self.plan_mute(args),
                _ => Err(unsupported(format!(
                    "pjlink has no command `{name}`; it has: {}",
                    super::CATALOG.command_names()
                ))),
            },
            Request::Poll { query } => {
                let queries = Query::for_poll(query, self.class()).ok_or_else(|| {
                    unsupported(format!(
                        "pjlink has no query `{query}`; it has: {}",
                        super::CATALOG.query_names()
                    ))
                })?;
                Ok(queries
                    .into_iter()
                    .map(|q| Step::query(q, self.class()))
                    .collect())
            }
        }
    }

    fn plan_power(&self, args: &Map<String, Value>) -> Result<Vec<Step>, DeviceError> {
        let on = kit::args::boolean(args, "on")?;
        Ok(vec![
            Step::set(Class::One, "POWR", digit(on)),
            Step::query(Query::Power, self.class()),
        ])
    }

    fn plan_input(&self, args: &Map<String, Value>) -> Result<Vec<Step>, DeviceError> {
        let source = kit::args::text(args, "source")?;
        let code = self.options.inputs.resolve(source, self.class())?;
        Ok(vec![
            Step::set(self.class(), "INPT", code),
            Step::query(Query::Input, self.class()),
        ])
    }

    /// Both mutes to the same value go in one `3x`; otherwise video (`1x`) and audio
    /// (`2x`) are set one after the other, leaving an unnamed one as it is.
    fn plan_mute(&self, args: &Map<String, Value>) -> Result<Vec<Step>, DeviceError> {
        let video = kit::args::optional_boolean(args, "video")?;
        let audio = kit::args::optional_boolean(args, "audio")?;
        let params = match (video, audio) {
            (None, None) => {
                return Err(invalid(
                    "`mute` needs `video` and/or `audio` (true or false)",
                ));
            }
            (Some(v), Some(a)) if v == a => vec![format!("3{}", digit(v))],
            (v, a) => {
                let video = v.map(|v| format!("1{}", digit(v)));
                let audio = a.map(|a| format!("2{}", digit(a)));
                video.into_iter().chain(audio).collect()
            }
        };
        let sets = params.into_iter().map(|p| Step::set(Class::One, "AVMT", p));
        Ok(sets
            .chain([Step::query(Query::Mute, self.class())])
            .collect())
    }

    /// Queues a line, with the connection's digest if it is the first.
    fn send(&mut self, command: &Command) {
        let mut bytes = self
            .digest
            .take()
            .map(String::into_bytes)
            .unwrap_or_default();
        bytes.extend(command.encode());
        self.outputs.push_back(Output::Transmit(bytes));
    }

    fn complete(&mut self, result: Result<(), DeviceError>) {
        self.request = None;
        self.outputs.push_back(Output::Completed(result));
    }

    /// Gives up on the connection; nothing more happens until the next `connected`.
    fn fatal(&mut self, error: SessionError) {
        self.phase = Phase::Down;
        self.request = None;
        self.paused = None;
        self.lines.clear();
        self.outputs.push_back(Output::Fatal(error));
    }
}

impl Protocol for Session {
    fn check(&self, request: &Request) -> Result<(), DeviceError> {
        self.plan(request).map(|_| ())
    }

    fn waiting_for(&self) -> Option<String> {
        match self.phase {
            Phase::Greeting => Some("its greeting (`PJLINK 0` or `PJLINK 1 <seed>`)".into()),
            Phase::LoggingIn => Some(
                "an answer to the login (the first command, sent with the password digest)".into(),
            ),
            Phase::Ready | Phase::Down => None,
        }
    }

    /// The digest that opens an authenticated connection's first command is as good as
    /// the password for that connection.
    fn redact<'a>(&self, frame: &'a [u8]) -> std::borrow::Cow<'a, [u8]> {
        match frame::split_digest(frame) {
            (Some(digest), rest) => {
                let mut shown = vec![b'*'; digest.len()];
                shown.extend_from_slice(rest);
                std::borrow::Cow::Owned(shown)
            }
            (None, _) => std::borrow::Cow::Borrowed(frame),
        }
    }

    fn connected(&mut self, _now: Instant) {
        self.phase = Phase::Greeting;
        self.lines.clear();
        self.digest = None;
        self.request = None;
        self.paused = None;
        self.outputs.clear();
        self.power = None;
    }

    fn received(&mut self, _now: Instant, data: &[u8]) {
        if self.phase == Phase::Down {
            return;
        }
        self.lines.push(data);
        while self.phase != Phase::Down {
            match self.lines.next_frame() {
                Some(Ok(line)) => self.on_line(&line),
                None => break,
                Some(Err(kit::FrameError::TooLong { dropped, .. })) => {
                    let error = FrameError::TooLong {
                        max: MAX_LINE,
                        dropped,
                    };
                    self.fatal(SessionError::Protocol(error.to_string()))
                }
                Some(Err(e)) => self.fatal(SessionError::Protocol(e.to_string())),
            }
        }
    }

    fn start(&mut self, _now: Instant, request: &Request) -> Result<(), DeviceError> {
        if self.phase != Phase::Ready || self.request.is_some() {
            return Err(DeviceError::new(
                DeviceErrorKind::Busy,
                "the PJLink session is not ready for a request",
            ));
        }
        let poll = matches!(request, Request::Poll { .. });
        if poll && self.paused.is_some() {
            return Err(DeviceError::new(
                DeviceErrorKind::Busy,
                "another PJLink poll is paused; resume it first",
            ));
        }
        let mut steps: VecDeque<Step> = self.plan(request)?.into();
        let Some(first) = steps.pop_front() else {
            self.outputs.push_back(Output::Completed(Ok(())));
            return Ok(());
        };
        self.send(&first.command);
        self.request = Some(InFlight {
            sent: first,
            rest: steps,
            poll,
        });
        Ok(())
    }

    fn abandon(&mut self) {
        self.request = None;
    }

    fn resume(&mut self, _now: Instant) {
        if self.request.is_some() {
            return;
        }
        let Some(mut rest) = self.paused.take() else {
            return;
        };
        if let Some(next) = rest.pop_front() {
            self.send(&next.command);
            self.request = Some(InFlight {
                sent: next,
                rest,
                poll: true,
            });
        }
    }

    fn poll_output(&mut self) -> Option<Output> {
        self.outputs.pop_front()
    }
}

/// The `errors` point for an ERST answer: `{"fan": "ok", ...}`.
fn errors_value(value: &str) -> Result<Value, &'static str> {
    let levels = frame::parse_error_status(value).ok_or("expected six digits 0-2")?;
    let object: Map<String, Value> = ERROR_CATEGORIES
        .iter()
        .zip(levels)
        .map(|(name, level)| (name.to_string(), json!(level.as_str())))
        .collect();
    Ok(Value::Object(object))
}

/// `lamp_hours` (lamp 1) and `lamps` (all) for a LAMP answer.
fn lamp_updates(value: &str) -> Result<Vec<Update>, &'static str> {
    let lamps = frame::parse_lamps(value).ok_or("expected pairs of hours and 0/1")?;
    let first = lamps.first().ok_or("expected at least one lamp")?;
    let list: Vec<Value> = lamps
        .iter()
        .map(|l| json!({"hours": l.hours, "on": l.on}))
        .collect();
    Ok(vec![
        ("lamp_hours", json!(first.hours)),
        ("lamps", Value::Array(list)),
    ])
}

/// The `pjlink_class` point for a CLSS answer: one digit.
fn class_number(value: &str) -> Result<u8, &'static str> {
    match value.as_bytes() {
        [digit @ b'1'..=b'9'] => Ok(digit - b'0'),
        _ => Err("expected a class digit"),
    }
}

fn digit(on: bool) -> char {
    if on { '1' } else { '0' }
}

fn invalid(message: impl Into<String>) -> DeviceError {
    DeviceError::new(DeviceErrorKind::InvalidArgs, message)
}

fn unsupported(message: impl Into<String>) -> DeviceError {
    DeviceError::new(DeviceErrorKind::Unsupported, message)
}

/// A well-framed answer whose value makes no sense for the command.
fn nonsense(command: &Command, value: &str, expected: &str) -> DeviceError {
    DeviceError::new(
        DeviceErrorKind::Failed,
        format!(
            "projector answered `{}` to `{command}`; {expected}",
            frame::escape(value.as_bytes())
        ),
    )
}

/// What an error code means for `command`, given the power state last read (ERR3 means
/// different things warming up, in standby and when on).
fn projector_error(code: ErrorCode, command: &Command, power: Option<PowerState>) -> DeviceError {
    let header = command.header();
    let (kind, message) = match code {
        ErrorCode::Undefined => (
            DeviceErrorKind::Unsupported,
            format!("projector does not support {header} (ERR1)"),
        ),
        ErrorCode::OutOfParameter => (
            DeviceErrorKind::InvalidArgs,
            format!(
                "projector rejected the parameter `{}` for {header} (ERR2)",
                command.param
            ),
        ),
        ErrorCode::Unavailable => (
            DeviceErrorKind::Busy,
            match power {
                Some(PowerState::Warming) => format!(
                    "projector is warming up and refused {header} (ERR3); try again when it is on"
                ),
                Some(PowerState::Cooling) => format!(
                    "projector is cooling down and refused {header} (ERR3); try again when it is off"
                ),
                Some(PowerState::Off) => format!(
                    "projector is in standby and refused {header} (ERR3); many projectors only take it when on"
                ),
                Some(PowerState::On) => format!(
                    "projector is on but refused {header} as unavailable for now (ERR3: busy, or not possible in its current mode); try again shortly"
                ),
                None => format!(
                    "projector refused {header} as unavailable for now (ERR3); its power state has not been read yet"
                ),
            },
        ),
        ErrorCode::Failure => (
            DeviceErrorKind::Failed,
            format!(
                "projector reports a failure (ERR4) for {header}; check its error status (lamp, fan, cover, temperature)"
            ),
        ),
    };
    DeviceError::new(kind, message)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::pjlink::DRIVER;
    use crate::testing::*;

    const VECTOR_GREETING: &[u8] = b"PJLINK 1 498e4a67\r";
    const VECTOR_PASSWORD: &str = "JBMIAProjectorLink";
    const VECTOR_DIGEST: &str = "5d8409bc1c3fa39749434aa3a5c38682";

    fn settings(options: Value, password: Option<&str>) -> DriverSettings {
        let Value::Object(options) = options else {
            panic!("options must be an object")
        };
        DriverSettings {
            options,
            password: password.map(str::to_string),
        }
    }

    fn session_with(options: Value, password: Option<&str>) -> Session {
        Session::new(Options::from_settings(&settings(options, password)).unwrap())
    }

    /// A session past an open greeting, outputs drained.
    fn ready(options: Value) -> Session {
        let mut s = session_with(options, None);
        s.connected(Instant::now());
        s.received(Instant::now(), b"PJLINK 0\r");
        assert_eq!(drain(&mut s), [Output::Ready]);
        s
    }

    /// Runs a one-line poll and returns what its reply produced.
    fn poll_reply(s: &mut Session, query: &str, expect_sent: &[u8], reply: &[u8]) -> Vec<Output> {
        assert_eq!(start(s, poll(query)), [tx(expect_sent)]);
        feed(s, reply)
    }

    #[test]
    fn power_on_with_authentication_end_to_end() {
        let mut s = session_with(json!({}), Some(VECTOR_PASSWORD));
        s.connected(Instant::now());
        let login = format!("{VECTOR_DIGEST}%1CLSS ?\r");
        assert_eq!(feed(&mut s, VECTOR_GREETING), [tx(login.as_bytes())]);
        assert_eq!(feed(&mut s, b"%1CLSS=1\r"), [Output::Ready]);
        assert_eq!(
            start(&mut s, command("power", json!({"on": true}))),
            [tx(b"%1POWR 1\r")]
        );
        assert_eq!(feed(&mut s, b"%1POWR=OK\r"), [tx(b"%1POWR ?\r")]);
        assert_eq!(
            feed(&mut s, b"%1POWR=3\r"),
            [update("power", json!("warming")), done()]
        );
        // The digest goes with the first line of the connection only.
        assert_eq!(start(&mut s, poll("power")), [tx(b"%1POWR ?\r")]);
        assert_eq!(
            feed(&mut s, b"%1POWR=1\r"),
            [update("power", json!("on")), done()]
        );
    }

    #[test]
    fn digest_on_first_line_of_each_connection() {
        let mut s = session_with(json!({}), Some(VECTOR_PASSWORD));
        for _ in 0..2 {
            s.connected(Instant::now());
            let login = format!("{VECTOR_DIGEST}%1CLSS ?\r");
            assert_eq!(feed(&mut s, VECTOR_GREETING), [tx(login.as_bytes())]);
            assert_eq!(feed(&mut s, b"%1CLSS=2\r"), [Output::Ready]);
            assert_eq!(start(&mut s, poll("power")), [tx(b"%1POWR ?\r")]);
        }
    }

    #[test]
    fn no_digest_on_an_open_projector_even_with_a_password() {
        let mut s = session_with(json!({}), Some("secret"));
        s.connected(Instant::now());
        assert_eq!(feed(&mut s, b"PJLINK 0\r"), [Output::Ready]);
        assert_eq!(start(&mut s, poll("power")), [tx(b"%1POWR ?\r")]);
    }

    #[test]
    fn exact_bytes_for_each_request() {
        let cases = [
            (command("power", json!({"on": true})), &b"%1POWR 1\r"[..]),
            (command("power", json!({"on": false})), b"%1POWR 0\r"),
            (command("input", json!({"source": "hdmi1"})), b"%1INPT 32\r"),
            (command("input", json!({"source": "31"})), b"%1INPT 31\r"),
            (
                command("mute", json!({"video": true, "audio": true})),
                b"%1AVMT 31\r",
            ),
            (
                command("mute", json!({"video": false, "audio": false})),
                b"%1AVMT 30\r",
            ),
            (command("mute", json!({"video": true})), b"%1AVMT 11\r"),
            (command("mute", json!({"audio": false})), b"%1AVMT 20\r"),
            (
                command("mute", json!({"video": false, "audio": true})),
                b"%1AVMT 10\r",
            ),
            (poll("power"), b"%1POWR ?\r"),
            (poll("input"), b"%1INPT ?\r"),
            (poll("mute"), b"%1AVMT ?\r"),
            (poll("errors"), b"%1ERST ?\r"),
            (poll("lamp"), b"%1LAMP ?\r"),
            (poll("inputs"), b"%1INST ?\r"),
            (poll("info"), b"%1NAME ?\r"),
        ];
        for (request, bytes) in cases {
            let mut s = ready(json!({"inputs": {"hdmi1": "32"}}));
            assert_eq!(start(&mut s, request.clone()), [tx(bytes)], "{request:?}");
        }
    }

    #[test]
    fn input_set_reads_back_and_reports_the_friendly_name() {
        let mut s = ready(json!({"inputs": {"hdmi1": "32", "rgb1": "11"}}));
        assert_eq!(
            start(&mut s, command("input", json!({"source": "hdmi1"}))),
            [tx(b"%1INPT 32\r")]
        );
        assert_eq!(feed(&mut s, b"%1INPT=OK\r"), [tx(b"%1INPT ?\r")]);
        assert_eq!(
            feed(&mut s, b"%1INPT=32\r"),
            [update("input", json!("hdmi1")), done()]
        );
        let out = poll_reply(&mut s, "input", b"%1INPT ?\r", b"%1INPT=31\r");
        assert_eq!(out, [update("input", json!("31")), done()]);
    }

    #[test]
    fn unknown_input_is_refused_without_touching_the_wire() {
        let mut s = ready(json!({"inputs": {"hdmi1": "32", "rgb1": "11"}}));
        for source in ["hdmi9", "3A", "61", "0"] {
            let err = s
                .start(Instant::now(), &command("input", json!({"source": source})))
                .unwrap_err();
            assert_eq!(err.kind, DeviceErrorKind::InvalidArgs);
            assert!(err.message.contains("hdmi1, rgb1"), "{}", err.message);
        }
        assert_eq!(drain(&mut s), []);
    }

    #[test]
    fn class_two_inputs_use_class_two_lines() {
        let mut s = ready(json!({"class": 2}));
        assert_eq!(
            start(&mut s, command("input", json!({"source": "3a"}))),
            [tx(b"%2INPT 3A\r")]
        );
        assert_eq!(feed(&mut s, b"%2INPT=OK\r"), [tx(b"%2INPT ?\r")]);
        assert_eq!(
            feed(&mut s, b"%2INPT=3A\r"),
            [update("input", json!("3A")), done()]
        );
    }

    #[test]
    fn mute_with_different_values_sends_two_lines_then_reads_back() {
        let mut s = ready(json!({}));
        assert_eq!(
            start(
                &mut s,
                command("mute", json!({"video": true, "audio": false}))
            ),
            [tx(b"%1AVMT 11\r")]
        );
        assert_eq!(feed(&mut s, b"%1AVMT=OK\r"), [tx(b"%1AVMT 20\r")]);
        assert_eq!(feed(&mut s, b"%1AVMT=OK\r"), [tx(b"%1AVMT ?\r")]);
        let out = feed(&mut s, b"%1AVMT=11\r");
        assert_eq!(
            out,
            [
                update("video_mute", json!(true)),
                update("audio_mute", json!(false)),
                done()
            ]
        );
    }

    #[test]
    fn mute_needs_an_argument() {
        let mut s = ready(json!({}));
        let err = s
            .start(Instant::now(), &command("mute", json!({})))
            .unwrap_err();
        assert_eq!(err.kind, DeviceErrorKind::InvalidArgs);
        let err = s
            .start(Instant::now(), &command("power", json!({"on": "yes"})))
            .unwrap_err();
        assert_eq!(err.kind, DeviceErrorKind::InvalidArgs);
    }

    #[test]
    fn power_replies() {
        for (value, state) in [
            ("0", "off"),
            ("1", "on"),
            ("2", "cooling"),
            ("3", "warming"),
        ] {
            let mut s = ready(json!({}));
            let out = poll_reply(
                &mut s,
                "power",
                b"%1POWR ?\r",
                format!("%1POWR={value}\r").as_bytes(),
            );
            assert_eq!(out, [update("power", json!(state)), done()]);
        }
        let mut s = ready(json!({}));
        let out = poll_reply(&mut s, "power", b"%1POWR ?\r", b"%1POWR=7\r");
        assert_eq!(failed_with(&out).0, DeviceErrorKind::Failed);
    }

    #[test]
    fn mute_replies() {
        for (value, video, audio) in [
            ("11", true, false),
            ("21", false, true),
            ("31", true, true),
            ("30", false, false),
        ] {
            let mut s = ready(json!({}));
            let out = poll_reply(
                &mut s,
                "mute",
                b"%1AVMT ?\r",
                format!("%1AVMT={value}\r").as_bytes(),
            );
            assert_eq!(
                out,
                [
                    update("video_mute", json!(video)),
                    update("audio_mute", json!(audio)),
                    done()
                ]
            );
        }
    }

    #[test]
    fn error_status_replies() {
        let mut s = ready(json!({}));
        let out = poll_reply(&mut s, "errors", b"%1ERST ?\r", b"%1ERST=000010\r");
        let expected = json!({"fan": "ok", "lamp": "ok", "temperature": "ok", "cover_open": "ok", "filter": "warning", "other": "ok"});
        assert_eq!(out, [update("errors", expected), done()]);
        let out = poll_reply(&mut s, "errors", b"%1ERST ?\r", b"%1ERST=210000\r");
        let expected = json!({"fan": "error", "lamp": "warning", "temperature": "ok", "cover_open": "ok", "filter": "ok", "other": "ok"});
        assert_eq!(out, [update("errors", expected), done()]);
    }

    #[test]
    fn lamp_replies() {
        let mut s = ready(json!({}));
        let out = poll_reply(&mut s, "lamp", b"%1LAMP ?\r", b"%1LAMP=1234 0\r");
        assert_eq!(
            out,
            [
                update("lamp_hours", json!(1234)),
                update("lamps", json!([{"hours": 1234, "on": false}])),
                done()
            ]
        );
        let out = poll_reply(&mut s, "lamp", b"%1LAMP ?\r", b"%1LAMP=100 1 200 0 300 1\r");
        let lamps = json!([{"hours": 100, "on": true}, {"hours": 200, "on": false}, {"hours": 300, "on": true}]);
        assert_eq!(
            out,
            [
                update("lamp_hours", json!(100)),
                update("lamps", lamps),
                done()
            ]
        );
    }

    #[test]
    fn laser_projector_lamp_query_is_not_an_error() {
        let mut s = ready(json!({}));
        assert_eq!(
            poll_reply(&mut s, "lamp", b"%1LAMP ?\r", b"%1LAMP=ERR1\r"),
            [done()]
        );
    }

    #[test]
    fn input_list_uses_friendly_names() {
        let mut s = ready(json!({"inputs": {"hdmi1": "32", "rgb1": "11"}}));
        let out = poll_reply(&mut s, "inputs", b"%1INST ?\r", b"%1INST=11 31 32\r");
        assert_eq!(
            out,
            [update("inputs", json!(["rgb1", "31", "hdmi1"])), done()]
        );
    }

    #[test]
    fn info_reads_four_lines_in_turn() {
        let mut s = ready(json!({}));
        assert_eq!(start(&mut s, poll("info")), [tx(b"%1NAME ?\r")]);
        // The poll pauses after each line, so a waiting command can go first.
        assert_eq!(
            feed(&mut s, b"%1NAME=Room 1\r"),
            [update("name", json!("Room 1")), Output::Paused]
        );
        let mute = command("mute", json!({"video": true}));
        assert_eq!(start(&mut s, mute), [tx(b"%1AVMT 11\r")]);
        assert_eq!(
            feed(&mut s, b"%1AVMT=OK\r").last(),
            Some(&tx(b"%1AVMT ?\r"))
        );
        assert_eq!(
            feed(&mut s, b"%1AVMT=11\r").last(),
            Some(&done()),
            "the command ran to its end"
        );
        s.resume(Instant::now());
        assert_eq!(drain(&mut s), [tx(b"%1INF1 ?\r")]);
        assert_eq!(
            feed_resuming(&mut s, b"%1INF1=ACME\r"),
            [update("manufacturer", json!("ACME")), tx(b"%1INF2 ?\r")]
        );
        assert_eq!(
            feed_resuming(&mut s, b"%1INF2=P-1\r"),
            [update("product", json!("P-1")), tx(b"%1CLSS ?\r")]
        );
        assert_eq!(
            feed_resuming(&mut s, b"%1CLSS=2\r"),
            [update("pjlink_class", json!(2)), done()]
        );
    }

    #[test]
    fn class_two_info_adds_serial_and_version() {
        let mut s = ready(json!({"class": 2}));
        start(&mut s, poll("info"));
        feed_resuming(&mut s, b"%1NAME=n\r");
        feed_resuming(&mut s, b"%1INF1=m\r");
        feed_resuming(&mut s, b"%1INF2=p\r");
        assert_eq!(
            feed_resuming(&mut s, b"%1CLSS=2\r"),
            [update("pjlink_class", json!(2)), tx(b"%2SNUM ?\r")]
        );
        assert_eq!(
            feed_resuming(&mut s, b"%2SNUM=SN1\r"),
            [update("serial_number", json!("SN1")), tx(b"%2SVER ?\r")]
        );
        assert_eq!(
            feed_resuming(&mut s, b"%2SVER=1.0\r"),
            [update("software_version", json!("1.0")), done()]
        );
    }

    #[test]
    fn projector_errors_map_to_device_errors() {
        let cases = [
            (
                "ERR1",
                DeviceErrorKind::Unsupported,
                "projector does not support %1POWR",
            ),
            (
                "ERR2",
                DeviceErrorKind::InvalidArgs,
                "projector rejected the parameter",
            ),
            (
                "ERR3",
                DeviceErrorKind::Busy,
                "projector refused %1POWR as unavailable for now (ERR3)",
            ),
            (
                "ERR4",
                DeviceErrorKind::Failed,
                "projector reports a failure",
            ),
        ];
        for (code, kind, message) in cases {
            let mut s = ready(json!({}));
            start(&mut s, command("power", json!({"on": true})));
            let (got_kind, got_message) =
                failed_with(&feed(&mut s, format!("%1POWR={code}\r").as_bytes()));
            assert_eq!(got_kind, kind, "{code}");
            assert!(got_message.contains(message), "{code}: {got_message}");
            // The session stays usable: the projector said no, the stream is in step.
            assert_eq!(start(&mut s, poll("power")), [tx(b"%1POWR ?\r")]);
        }
    }

    #[test]
    fn err3_says_what_the_projector_was_doing() {
        for (power, says) in [
            ("0", "in standby and refused %1INPT"),
            ("1", "on but refused %1INPT"),
            ("2", "cooling down and refused %1INPT"),
            ("3", "warming up and refused %1INPT"),
        ] {
            let mut s = ready(json!({}));
            poll_reply(
                &mut s,
                "power",
                b"%1POWR ?\r",
                format!("%1POWR={power}\r").as_bytes(),
            );
            start(&mut s, command("input", json!({"source": "31"})));
            let (kind, message) = failed_with(&feed(&mut s, b"%1INPT=ERR3\r"));
            assert_eq!(kind, DeviceErrorKind::Busy);
            assert!(message.contains(says), "power {power}: {message}");
            assert!(
                power == "2" || power == "3" || !message.contains("warming"),
                "{message}"
            );
        }
    }

    #[test]
    fn a_set_answered_with_something_else_than_ok_fails() {
        let mut s = ready(json!({}));
        start(&mut s, command("power", json!({"on": true})));
        let (kind, message) = failed_with(&feed(&mut s, b"%1POWR=1\r"));
        assert_eq!(kind, DeviceErrorKind::Failed);
        assert!(message.contains("expected OK"), "{message}");
    }

    #[test]
    fn auth_errors_are_fatal() {
        let mut s = session_with(json!({}), None);
        s.connected(Instant::now());
        let error = fatal(&feed(&mut s, VECTOR_GREETING));
        assert_eq!(error, SessionError::AuthFailed(AUTH_MISSING.into()));

        // The login query's answer is where a wrong password shows; never Ready first.
        let mut s = session_with(json!({}), Some("wrong"));
        s.connected(Instant::now());
        assert!(!feed(&mut s, VECTOR_GREETING).contains(&Output::Ready));
        let error = fatal(&feed(&mut s, b"PJLINK ERRA\r"));
        assert!(
            matches!(&error, SessionError::AuthFailed(m) if m.contains("site config")),
            "{error}"
        );

        let mut s = session_with(json!({}), Some("x"));
        s.connected(Instant::now());
        assert!(matches!(
            fatal(&feed(&mut s, b"PJLINK ERRA\r")),
            SessionError::AuthFailed(_)
        ));
    }

    #[test]
    fn wrong_echo_is_fatal() {
        let mut s = ready(json!({}));
        start(&mut s, poll("power"));
        let error = fatal(&feed(&mut s, b"%1ROWP=A\r"));
        assert_eq!(
            error,
            SessionError::Protocol("expected reply to %1POWR, got %1ROWP=A".into())
        );
        // Nothing more until the runtime reconnects.
        assert_eq!(feed(&mut s, b"%1POWR=1\r"), []);
    }

    #[test]
    fn bad_greeting_is_fatal() {
        let mut s = session_with(json!({}), None);
        s.connected(Instant::now());
        let error = fatal(&feed(&mut s, b"PJLINK XXX\r"));
        assert!(
            matches!(&error, SessionError::Protocol(m) if m.contains("PJLINK XXX")),
            "{error}"
        );
    }

    #[test]
    fn malformed_lines_are_fatal_and_escaped() {
        let mut s = ready(json!({}));
        start(&mut s, poll("power"));
        let error = fatal(&feed(&mut s, b"%1POWR\x07 1\r"));
        assert_eq!(
            error,
            SessionError::Protocol("malformed reply `%1POWR\\x07 1`".into())
        );
    }

    #[test]
    fn lines_split_across_chunks() {
        let mut s = session_with(json!({}), None);
        s.connected(Instant::now());
        assert_eq!(feed(&mut s, b"PJLI"), []);
        assert_eq!(feed(&mut s, b"NK 0\r\n"), [Output::Ready]);
        start(&mut s, poll("power"));
        assert_eq!(feed(&mut s, b"%1PO"), []);
        assert_eq!(feed(&mut s, b"WR="), []);
        assert_eq!(
            feed(&mut s, b"1\r\n"),
            [update("power", json!("on")), done()]
        );
    }

    #[test]
    fn overlong_line_is_fatal() {
        let mut s = ready(json!({}));
        start(&mut s, poll("info"));
        let error = fatal(&feed(&mut s, &[b'x'; MAX_LINE]));
        assert!(
            matches!(&error, SessionError::Protocol(m) if m.contains("longer than 136")),
            "{error}"
        );
    }

    #[test]
    fn data_while_idle_is_fatal() {
        let mut s = ready(json!({}));
        let error = fatal(&feed(&mut s, b"%1POWR=1\r"));
        assert!(
            matches!(&error, SessionError::Protocol(m) if m.contains("no request")),
            "{error}"
        );
    }

    #[test]
    fn abandon_forgets_the_request() {
        let mut s = ready(json!({}));
        start(&mut s, poll("power"));
        s.abandon();
        assert_eq!(start(&mut s, poll("input")), [tx(b"%1INPT ?\r")]);
        s.abandon();
        // A late reply now has nothing to answer: the stream is out of step.
        assert!(matches!(
            fatal(&feed(&mut s, b"%1INPT=31\r")),
            SessionError::Protocol(_)
        ));
    }

    #[test]
    fn requests_wait_for_ready_and_for_each_other() {
        let mut s = session_with(json!({}), None);
        s.connected(Instant::now());
        assert_eq!(
            s.start(Instant::now(), &poll("power")).unwrap_err().kind,
            DeviceErrorKind::Busy
        );
        feed(&mut s, b"PJLINK 0\r");
        start(&mut s, poll("power"));
        assert_eq!(
            s.start(Instant::now(), &poll("power")).unwrap_err().kind,
            DeviceErrorKind::Busy
        );
    }

    #[test]
    fn unknown_commands_and_queries_are_unsupported() {
        let mut s = ready(json!({}));
        let err = s
            .start(Instant::now(), &command("volume", json!({})))
            .unwrap_err();
        assert_eq!(err.kind, DeviceErrorKind::Unsupported);
        let err = s.start(Instant::now(), &poll("volume")).unwrap_err();
        assert_eq!(err.kind, DeviceErrorKind::Unsupported);
        assert!(
            err.message.contains("power, input, mute, errors, lamp"),
            "{}",
            err.message
        );
    }

    #[test]
    fn options_are_checked() {
        let check = |options: Value| {
            Options::from_settings(&settings(options, None))
                .map(|_| ())
                .unwrap_err()
                .to_string()
        };
        assert_eq!(
            check(json!({"foo": 1})),
            "`foo`: unknown field `foo`, expected `class` or `inputs`"
        );
        assert!(check(json!({"class": 3})).contains("`class` must be 1 or 2"));
        assert!(check(json!({"inputs": ["31"]})).contains("`inputs` must be a table"));
        assert!(
            check(json!({"inputs": {"hdmi1": "3A"}}))
                .starts_with("inputs.hdmi1: \"3A\" is not a PJLink class 1")
        );
        assert!(check(json!({"inputs": {"hdmi1": 31}})).starts_with("inputs.hdmi1: 31 is not"));
        assert!(
            Options::from_settings(&settings(
                json!({"class": 2, "inputs": {"int": "6A"}}),
                None
            ))
            .is_ok()
        );
        assert!((DRIVER.build)(&DriverSettings::default()).is_ok());
    }

    /// Every point the session can emit is declared, so profiles can be checked up front.
    #[test]
    fn emitted_points_are_declared() {
        let mut s = ready(json!({"class": 2}));
        let mut outputs = Vec::new();
        outputs.extend(poll_reply(&mut s, "power", b"%1POWR ?\r", b"%1POWR=1\r"));
        outputs.extend(poll_reply(&mut s, "input", b"%2INPT ?\r", b"%2INPT=31\r"));
        outputs.extend(poll_reply(&mut s, "mute", b"%1AVMT ?\r", b"%1AVMT=30\r"));
        outputs.extend(poll_reply(
            &mut s,
            "errors",
            b"%1ERST ?\r",
            b"%1ERST=000000\r",
        ));
        outputs.extend(poll_reply(&mut s, "lamp", b"%1LAMP ?\r", b"%1LAMP=1 1\r"));
        outputs.extend(poll_reply(&mut s, "inputs", b"%2INST ?\r", b"%2INST=31\r"));
        start(&mut s, poll("info"));
        for line in [
            "%1NAME=a\r",
            "%1INF1=b\r",
            "%1INF2=c\r",
            "%1CLSS=2\r",
            "%2SNUM=d\r",
            "%2SVER=e\r",
        ] {
            outputs.extend(feed_resuming(&mut s, line.as_bytes()));
        }
        let mut points: Vec<&str> = outputs
            .iter()
            .filter_map(|o| match o {
                Output::Update { point, .. } => Some(point.as_str()),
                _ => None,
            })
            .collect();
        points.sort();
        let mut declared = super::super::CATALOG.point_names().to_vec();
        declared.sort();
        assert_eq!(points, declared);
    }
}
