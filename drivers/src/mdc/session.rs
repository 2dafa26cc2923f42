//! The Samsung MDC client as a sans-IO state machine (see [`crate::Protocol`]).
//!
//! MDC has no greeting and no login on a plain connection: the session is ready as soon
//! as it is connected. One frame goes out per request and the display answers it with an
//! ACK or a NAK that echoes the command and the display id. Displays never speak unasked,
//! so state comes from the answers: a set's ACK carries the new value, and the `status`
//! query (command 0x00) reads everything at once; poll it every few seconds.
//!
//! # Matching replies
//!
//! A reply answers the request in flight when it echoes both our display id and the
//! command sent. Everything else is dropped from matching, never taken as an error:
//! - **Another display id**: on an RS-232 daisy chain every display shares the wire, and
//!   the gateway hands each display's session everything the line carries while none of
//!   them has a request out. It is someone else's answer.
//! - **Our id, another command**: displays send nothing unasked, so this is a late answer
//!   to an earlier request (a reply that came after the runtime gave up on it). The real
//!   answer may still follow; if not, the runtime's command timeout ends the wait. An ACK
//!   of this kind still says what the display's state was, so its values are published.
//!
//! A frame whose checksum is wrong fails the request in flight at once (it was most
//! likely the answer, damaged on the line) rather than letting it time out; the reader
//! steps over the damaged bytes, so the connection goes on. Noise between frames is
//! skipped.
//!
//! # Points
//!
//! - `power`: `"on"` or `"off"`.
//! - `volume`: 0 to 100. Models without audio report 0xFF in status; no value is published.
//! - `mute`: `true` or `false` (likewise not published for models without audio).
//! - `input`: the source's friendly name from the `inputs` option if it has one, else its
//!   standard name (`hdmi1`, `displayport`, see [`frame::SOURCES`]), else its code
//!   (`"0x5a"`).
//! - `aspect`: picture aspect from status (`pc_16_9`, `video_auto_wide`, or `"0x5a"`).

use std::collections::VecDeque;
use std::time::Instant;

use serde::Deserialize;
use serde_json::{Map, Value, json};
use tracing::debug;

use super::frame::{
    self, BROADCAST, Command, Frame, FrameError, FrameReader, NO_AUDIO, Reply, STATUS, Setting,
    Status,
};
use crate::{
    DeviceError, DeviceErrorKind, DriverSettings, OptionsError, Output, Protocol, Request,
    SessionError,
};

/// The display id when the profile does not set one (Samsung's factory default).
pub const DEFAULT_DISPLAY_ID: u8 = 1;

/// What a display with "Secured protocol" on sends first on TCP 1515, before TLS.
const TLS_BANNER: &[u8] = b"MDCSTART<<TLS>>";

/// Builds a session for [`super::DRIVER`].
pub fn build(settings: &DriverSettings) -> Result<Box<dyn Protocol>, String> {
    let options = Options::from_settings(settings).map_err(|e| e.to_string())?;
    Ok(Box::new(Session::new(options)))
}

/// The driver's settings, checked once when the profile is loaded.
///
/// - `display_id` (0 to 253, default 1): the id set in the display's menu. On RS-232 it
///   tells daisy-chained displays apart; on TCP the display still checks it. The broadcast
///   id 254 (0xFE) is refused: every display acts on it and none answers, so no command
///   could ever be confirmed.
/// - `inputs` (optional): friendly names for sources, `{ laptop = "hdmi1", podium = "0x25" }`.
///   The `input` command takes them (as well as the standard names) and the `input` point
///   reports them. Each value is a standard source name or a code in hex; a friendly name
///   may not be another source's standard name, and two names may not share a source.
///
/// A site `password` is not used: MDC has none on a plain connection. Displays with
/// "Secured protocol" on want TLS and a PIN instead, which this driver does not speak;
/// connecting to one fails with a message saying so.
#[derive(Debug, Clone)]
pub struct Options {
    display_id: u8,
    /// Friendly name as configured, and its source code.
    inputs: Vec<(String, u8)>,
}

impl Default for Options {
    fn default() -> Options {
        Options {
            display_id: DEFAULT_DISPLAY_ID,
            inputs: Vec::new(),
        }
    }
}

/// `[options]` as a profile writes them.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct OptionsFile {
    display_id: Option<u64>,
    inputs: Option<Value>,
}

impl Options {
    pub fn from_settings(settings: &DriverSettings) -> Result<Options, OptionsError> {
        let file: OptionsFile = settings.options()?;
        let display_id = match file.display_id {
            None => DEFAULT_DISPLAY_ID,
            Some(id) if id < u64::from(BROADCAST) => id as u8,
            Some(id) if id == u64::from(BROADCAST) => {
                return Err(OptionsError::at_key(
                    "display_id",
                    "`display_id` 254 (0xFE) is the broadcast id: every display acts on it \
                     and none answers, so no command could be confirmed; give each display \
                     its own id from 0 to 253",
                ));
            }
            Some(id) => {
                return Err(OptionsError::at_key(
                    "display_id",
                    format!(
                        "`display_id` must be an integer from 0 to 253 (the ID in the display's menu), got {id}"
                    ),
                ));
            }
        };
        let inputs = match file.inputs {
            None => Vec::new(),
            Some(Value::Object(table)) => {
                friendly_inputs(&table).map_err(|why| OptionsError::at_key("inputs", why))?
            }
            Some(other) => {
                return Err(OptionsError::at_key(
                    "inputs",
                    format!(
                        "`inputs` must be a table of names to sources, such as {{ laptop = \"hdmi1\" }}, got {other}"
                    ),
                ));
            }
        };
        Ok(Options { display_id, inputs })
    }

    pub fn display_id(&self) -> u8 {
        self.display_id
    }

    /// The source code a name stands for: a friendly name (ignoring case) first, then a
    /// standard name or hex code.
    fn source(&self, name: &str) -> Result<u8, DeviceError> {
        if let Some((_, code)) = self
            .inputs
            .iter()
            .find(|(friendly, _)| friendly.eq_ignore_ascii_case(name.trim()))
        {
            return Ok(*code);
        }
        match frame::parse_source(name) {
            Some(code) => match frame::source_by_code(code) {
                Some(source) if !source.selectable => {
                    let instead = match source.name.strip_suffix("_pc") {
                        Some(port) => format!("; select `{port}`"),
                        None => String::new(),
                    };
                    Err(invalid(format!(
                        "`{name}` is a source the display reports but cannot select{instead}"
                    )))
                }
                _ => Ok(code),
            },
            None => {
                let mut known: Vec<&str> = self.inputs.iter().map(|(n, _)| n.as_str()).collect();
                known.extend(
                    frame::SOURCES
                        .iter()
                        .filter(|s| s.selectable)
                        .map(|s| s.name),
                );
                Err(invalid(format!(
                    "unknown input source `{name}`; use one of {} or a code such as 0x21",
                    known.join(", ")
                )))
            }
        }
    }

    /// How a source code is reported on the `input` point.
    fn source_name(&self, code: u8) -> String {
        match self.inputs.iter().find(|(_, c)| *c == code) {
            Some((name, _)) => name.clone(),
            None => frame::source_name(code),
        }
    }
}

/// Reads the `inputs` table.
fn friendly_inputs(table: &Map<String, Value>) -> Result<Vec<(String, u8)>, String> {
    let mut inputs: Vec<(String, u8)> = Vec::new();
    for (name, value) in table {
        let code = match value {
            Value::String(source) => frame::parse_source(source),
            Value::Number(n) => n.as_u64().and_then(|n| u8::try_from(n).ok()),
            _ => None,
        }
        .ok_or_else(|| {
            format!(
                "`inputs.{name}`: {value} is not an input source; use a name such as \"hdmi1\" or a code such as \"0x21\""
            )
        })?;
        if frame::source_by_code(code).is_some_and(|s| !s.selectable) {
            return Err(format!(
                "`inputs.{name}`: {value} is a source the display only reports; it cannot be selected"
            ));
        }
        if name.trim().is_empty() {
            return Err("`inputs` has an empty name".into());
        }
        if let Some(standard) = frame::source_by_name(name)
            && standard.code != code
        {
            return Err(format!(
                "`inputs.{name}` would hide the standard source `{}` (0x{:02x}); pick another name",
                standard.name, standard.code
            ));
        }
        if let Some((other, _)) = inputs
            .iter()
            .find(|(n, c)| *c == code || n.eq_ignore_ascii_case(name))
        {
            return Err(format!(
                "`inputs.{name}` and `inputs.{other}` name the same source; keep one"
            ));
        }
        inputs.push((name.clone(), code));
    }
    Ok(inputs)
}

/// What a request sends.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Step {
    Status,
    Power(bool),
    Volume(u8),
    Mute(bool),
    Input(u8),
}

impl Step {
    fn command(self) -> Command {
        match self {
            Step::Status => Command::Status,
            Step::Power(on) => Command::Set(Setting::Power, u8::from(on)),
            Step::Volume(level) => Command::Set(Setting::Volume, level),
            Step::Mute(on) => Command::Set(Setting::Mute, u8::from(on)),
            Step::Input(code) => Command::Set(Setting::Input, code),
        }
    }

    /// The request in words, for messages: `input hdmi3 (0x31)`.
    fn describe(self, options: &Options) -> String {
        let on_off = |on: bool| if on { "on" } else { "off" };
        match self {
            Step::Status => "status".into(),
            Step::Power(on) => format!("power {}", on_off(on)),
            Step::Volume(level) => format!("volume {level}"),
            Step::Mute(on) => format!("mute {}", on_off(on)),
            Step::Input(code) => format!("input {} (0x{code:02x})", options.source_name(code)),
        }
    }
}

type Update = (String, Value);

/// One Samsung MDC connection's client state.
#[derive(Debug)]
pub struct Session {
    options: Options,
    /// Connected and not given up: bytes are read, requests taken.
    up: bool,
    reader: FrameReader,
    /// The first bytes of the connection while they may still be the secured-protocol
    /// banner; `None` once they cannot be.
    opening: Option<Vec<u8>>,
    request: Option<Step>,
    outputs: VecDeque<Output>,
}

impl Session {
    pub fn new(options: Options) -> Session {
        Session {
            options,
            up: false,
            reader: FrameReader::replies(),
            opening: None,
            request: None,
            outputs: VecDeque::new(),
        }
    }

    /// Watches the first bytes of the connection for `MDCSTART<<TLS>>`.
    fn check_opening(&mut self, data: &[u8]) {
        let Some(opening) = &mut self.opening else {
            return;
        };
        let room = TLS_BANNER.len() - opening.len();
        opening.extend_from_slice(&data[..data.len().min(room)]);
        if !TLS_BANNER.starts_with(opening) {
            self.opening = None;
        } else if opening.len() == TLS_BANNER.len() {
            self.opening = None;
            self.fatal(SessionError::Protocol(
                "the display wants MDC's secured protocol (TLS and a PIN), which this driver \
                 does not speak; turn \"Secured protocol\" off in the display's network menu, \
                 or connect over RS-232"
                    .into(),
            ));
        }
    }

    fn on_frame(&mut self, frame: &Frame) {
        let id = self.options.display_id;
        if frame.id != id {
            debug!(%frame, "samsung-mdc display {id}: ignoring a reply from display {}", frame.id);
            return;
        }
        let echoed = frame.data.get(1).copied();
        let asked = self
            .request
            .filter(|step| Some(step.command().code()) == echoed);
        let outcome = match Reply::from_frame(frame) {
            Ok(Reply::Ack { cmd, data, .. }) => self
                .report(cmd, &data)
                .map_err(|why| format!("{why}: {frame}")),
            Ok(Reply::Nak { code, .. }) => {
                match asked {
                    Some(step) => self.refused(step, code),
                    None => {
                        debug!(%frame, "samsung-mdc display {id}: ignoring a NAK nobody waits for")
                    }
                }
                return;
            }
            Err(e) => Err(format!("a malformed reply ({e})")),
        };
        match (outcome, asked) {
            (Ok(updates), asked) => {
                self.emit(updates);
                match asked {
                    Some(_) => self.complete(Ok(())),
                    None => debug!(%frame, "samsung-mdc display {id}: a late or unasked reply"),
                }
            }
            (Err(why), Some(step)) => {
                let message = format!(
                    "display {id} answered `{}` with {why}",
                    step.describe(&self.options)
                );
                self.complete(Err(failed(message)));
            }
            (Err(why), None) => debug!("samsung-mdc display {id}: {why}"),
        }
    }

    /// The display answered `step` with a NAK.
    fn refused(&mut self, step: Step, code: u8) {
        let (kind, hint) = match step {
            // The display has no such input: the argument is what is wrong.
            Step::Input(_) => (
                DeviceErrorKind::InvalidArgs,
                "; this model may not have that input",
            ),
            _ => (DeviceErrorKind::Failed, ""),
        };
        let message = format!(
            "display {} refused `{}` (NAK, error code {code}){hint}",
            self.options.display_id,
            step.describe(&self.options)
        );
        self.complete(Err(DeviceError::new(kind, message)));
    }

    /// The point updates an ACK of command `cmd` carries; `Err` if its data cannot be what
    /// the command reports.
    fn report(&self, cmd: u8, data: &[u8]) -> Result<Vec<Update>, String> {
        if cmd == STATUS {
            let status = Status::parse(data).ok_or_else(|| {
                format!(
                    "a status of {} byte(s), too short to hold power, volume, mute and input",
                    data.len()
                )
            })?;
            let mut updates: Vec<Update> = power_update(status.power).into_iter().collect();
            if status.volume != NO_AUDIO {
                updates.push(("volume".into(), json!(status.volume)));
            }
            if status.mute != NO_AUDIO {
                updates.extend(mute_update(status.mute));
            }
            updates.push((
                "input".into(),
                json!(self.options.source_name(status.input)),
            ));
            if let Some(aspect) = status.aspect {
                updates.push(("aspect".into(), json!(frame::aspect_name(aspect))));
            }
            return Ok(updates);
        }
        let Some(setting) = Setting::from_code(cmd) else {
            // A command this driver never sends: nothing to read.
            return Ok(Vec::new());
        };
        let value = match data {
            // Accepted, without saying the new value: the next status shows it.
            [] => return Ok(Vec::new()),
            [value] => *value,
            _ => return Err(format!("{} bytes of {} data", data.len(), setting.name())),
        };
        Ok(match setting {
            Setting::Power => power_update(value).into_iter().collect(),
            Setting::Volume => vec![("volume".into(), json!(value))],
            Setting::Mute => mute_update(value).into_iter().collect(),
            Setting::Input => vec![("input".into(), json!(self.options.source_name(value)))],
        })
    }

    fn on_bad_bytes(&mut self, error: &FrameError) {
        let id = self.options.display_id;
        match (error, self.request) {
            (FrameError::Checksum { .. }, Some(step)) => {
                let message = format!(
                    "the answer to `{}` from display {id} was damaged on the line ({error}); check the cabling",
                    step.describe(&self.options)
                );
                self.complete(Err(failed(message)));
            }
            _ => debug!("samsung-mdc display {id}: {error}"),
        }
    }

    fn emit(&mut self, updates: Vec<Update>) {
        self.outputs.extend(
            updates
                .into_iter()
                .map(|(point, value)| Output::Update { point, value }),
        );
    }

    fn complete(&mut self, result: Result<(), DeviceError>) {
        self.request = None;
        self.outputs.push_back(Output::Completed(result));
    }

    /// What a request sends.
    fn plan(&self, request: &Request) -> Result<Step, DeviceError> {
        match request {
            Request::Command { name, args } => match name.as_str() {
                "power" => Ok(Step::Power(bool_arg(args, "power", "on")?)),
                "mute" => Ok(Step::Mute(bool_arg(args, "mute", "on")?)),
                "volume" => {
                    let level = args
                        .get("level")
                        .and_then(Value::as_u64)
                        .filter(|l| *l <= 100)
                        .ok_or_else(|| {
                            invalid(format!(
                                "`volume` needs `level`, an integer from 0 to 100, got {}",
                                args.get("level").unwrap_or(&Value::Null)
                            ))
                        })?;
                    Ok(Step::Volume(level as u8))
                }
                "input" => match args.get("source") {
                    Some(Value::String(source)) => Ok(Step::Input(self.options.source(source)?)),
                    other => Err(invalid(format!(
                        "`input` needs `source`, a source name such as \"hdmi1\", got {}",
                        other.unwrap_or(&Value::Null)
                    ))),
                },
                _ => Err(DeviceError::new(
                    DeviceErrorKind::Unsupported,
                    format!(
                        "samsung-mdc has no command `{name}`; it has: {}",
                        super::CATALOG.command_names()
                    ),
                )),
            },
            Request::Poll { query } if query == "status" => Ok(Step::Status),
            Request::Poll { query } => Err(DeviceError::new(
                DeviceErrorKind::Unsupported,
                format!(
                    "samsung-mdc has no query `{query}`; it has: {}",
                    super::CATALOG.query_names()
                ),
            )),
        }
    }

    /// Gives up on the connection; nothing more happens until the next `connected`.
    fn fatal(&mut self, error: SessionError) {
        self.up = false;
        self.request = None;
        self.reader.clear();
        self.outputs.push_back(Output::Fatal(error));
    }
}

impl Protocol for Session {
    fn check(&self, request: &Request) -> Result<(), DeviceError> {
        self.plan(request).map(|_| ())
    }

    fn connected(&mut self, _now: Instant) {
        self.up = true;
        self.reader.clear();
        self.opening = Some(Vec::new());
        self.request = None;
        self.outputs.clear();
        self.outputs.push_back(Output::Ready);
    }

    fn received(&mut self, _now: Instant, data: &[u8]) {
        if !self.up {
            return;
        }
        self.check_opening(data);
        self.reader.push(data);
        while self.up {
            match self.reader.next_frame() {
                Some(Ok(frame)) => self.on_frame(&frame),
                Some(Err(error)) => self.on_bad_bytes(&error),
                None => break,
            }
        }
    }

    fn start(&mut self, _now: Instant, request: &Request) -> Result<(), DeviceError> {
        if !self.up || self.request.is_some() {
            return Err(DeviceError::new(
                DeviceErrorKind::Busy,
                "the Samsung MDC session is not ready for a request",
            ));
        }
        let step = self.plan(request)?;
        let frame = step.command().frame(self.options.display_id);
        self.outputs.push_back(Output::Transmit(frame.encode()));
        self.request = Some(step);
        Ok(())
    }

    fn abandon(&mut self) {
        self.request = None;
    }

    fn poll_output(&mut self) -> Option<Output> {
        self.outputs.pop_front()
    }
}

fn power_update(value: u8) -> Option<Update> {
    let state = match value {
        0 => "off",
        // 2 is "rebooting", which ends on.
        1 | 2 => "on",
        _ => return None,
    };
    Some(("power".into(), json!(state)))
}

fn mute_update(value: u8) -> Option<Update> {
    match value {
        0 | 1 => Some(("mute".into(), json!(value == 1))),
        _ => None,
    }
}

/// A required boolean argument.
fn bool_arg(args: &Map<String, Value>, command: &str, name: &str) -> Result<bool, DeviceError> {
    match args.get(name) {
        Some(Value::Bool(b)) => Ok(*b),
        other => Err(invalid(format!(
            "`{command}` needs `{name}`, true or false, got {}",
            other.unwrap_or(&Value::Null)
        ))),
    }
}

fn invalid(message: impl Into<String>) -> DeviceError {
    DeviceError::new(DeviceErrorKind::InvalidArgs, message)
}

fn failed(message: impl Into<String>) -> DeviceError {
    DeviceError::new(DeviceErrorKind::Failed, message)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::mdc::DRIVER;
    use crate::testing::*;

    fn settings(options: Value) -> DriverSettings {
        let Value::Object(options) = options else {
            panic!("options must be an object")
        };
        DriverSettings {
            options,
            password: None,
        }
    }

    /// A connected session with these options.
    fn ready(options: Value) -> Session {
        let mut s = Session::new(Options::from_settings(&settings(options)).unwrap());
        s.connected(Instant::now());
        assert_eq!(drain(&mut s), [Output::Ready]);
        s
    }

    fn status() -> Request {
        Request::Poll {
            query: "status".into(),
        }
    }

    /// `AA 11 01 00 12` → bytes.
    fn bytes(text: &str) -> Vec<u8> {
        text.split_whitespace()
            .map(|b| u8::from_str_radix(b, 16).unwrap())
            .collect()
    }

    fn tx(text: &str) -> Output {
        Output::Transmit(bytes(text))
    }

    fn failed_with(outputs: &[Output]) -> (DeviceErrorKind, String) {
        match outputs {
            [Output::Completed(Err(e))] => (e.kind, e.message.clone()),
            other => panic!("expected one failure, got {other:?}"),
        }
    }

    #[test]
    fn ready_at_once_and_commands_encode() {
        let cases = [
            (command("power", json!({"on": true})), "AA 11 01 01 01 14"),
            (command("power", json!({"on": false})), "AA 11 01 01 00 13"),
            (command("volume", json!({"level": 50})), "AA 12 01 01 32 46"),
            (command("mute", json!({"on": true})), "AA 13 01 01 01 16"),
            (
                command("input", json!({"source": "hdmi1"})),
                "AA 14 01 01 21 37",
            ),
            (
                command("input", json!({"source": "HDMI2"})),
                "AA 14 01 01 23 39",
            ),
            (
                command("input", json!({"source": "0x5a"})),
                "AA 14 01 01 5A 70",
            ),
            (status(), "AA 00 01 00 01"),
        ];
        for (request, expected) in cases {
            let mut s = ready(json!({}));
            assert_eq!(
                start(&mut s, request.clone()),
                [tx(expected)],
                "{request:?}"
            );
        }
        let mut s = ready(json!({"display_id": 0}));
        assert_eq!(start(&mut s, status()), [tx("AA 00 00 00 00")]);
        let mut s = ready(json!({"display_id": 0}));
        assert_eq!(
            start(&mut s, command("volume", json!({"level": 24}))),
            [tx("AA 12 00 01 18 2B")]
        );
    }

    #[test]
    fn a_sets_ack_carries_the_new_value() {
        let mut s = ready(json!({}));
        start(&mut s, command("power", json!({"on": true})));
        assert_eq!(
            feed(&mut s, &bytes("AA FF 01 03 41 11 01 56")),
            [update("power", json!("on")), done()]
        );
        start(&mut s, command("volume", json!({"level": 55})));
        assert_eq!(
            feed(&mut s, &bytes("AA FF 01 03 41 12 37 8D")),
            [update("volume", json!(55)), done()]
        );
        start(&mut s, command("mute", json!({"on": false})));
        assert_eq!(
            feed(&mut s, &bytes("AA FF 01 03 41 13 00 57")),
            [update("mute", json!(false)), done()]
        );
        start(&mut s, command("input", json!({"source": "displayport"})));
        assert_eq!(
            feed(&mut s, &bytes("AA FF 01 03 41 14 25 7D")),
            [update("input", json!("displayport")), done()]
        );
        // An ACK without the value: accepted, the next status shows it.
        start(&mut s, command("mute", json!({"on": true})));
        assert_eq!(feed(&mut s, &bytes("AA FF 01 02 41 13 56")), [done()]);
    }

    #[test]
    fn status_reports_every_point() {
        let mut s = ready(json!({}));
        start(&mut s, status());
        assert_eq!(
            feed(&mut s, &bytes("AA FF 01 09 41 00 01 1E 00 21 10 00 00 9A")),
            [
                update("power", json!("on")),
                update("volume", json!(30)),
                update("mute", json!(false)),
                update("input", json!("hdmi1")),
                update("aspect", json!("pc_16_9")),
                done()
            ]
        );
        // No audio (0xFF), an unnamed source, no aspect byte.
        let mut s = ready(json!({"display_id": 0}));
        start(&mut s, status());
        let reply = Reply::Ack {
            id: 0,
            cmd: 0,
            data: vec![0, 0xFF, 0xFF, 0x5A],
        };
        assert_eq!(
            feed(&mut s, &reply.encode()),
            [
                update("power", json!("off")),
                update("input", json!("0x5a")),
                done()
            ]
        );
        // Too short to be a status.
        start(&mut s, status());
        let reply = Reply::Ack {
            id: 0,
            cmd: 0,
            data: vec![1, 2],
        };
        let (kind, message) = failed_with(&feed(&mut s, &reply.encode()));
        assert_eq!(kind, DeviceErrorKind::Failed);
        assert!(message.contains("too short"), "{message}");
    }

    #[test]
    fn a_nak_fails_the_request_with_its_code() {
        let mut s = ready(json!({}));
        start(&mut s, command("power", json!({"on": true})));
        let (kind, message) = failed_with(&feed(&mut s, &bytes("AA FF 01 03 4E 11 01 63")));
        assert_eq!(kind, DeviceErrorKind::Failed);
        assert!(
            message == "display 1 refused `power on` (NAK, error code 1)",
            "{message}"
        );

        start(&mut s, command("input", json!({"source": "hdmi4"})));
        let nak = Reply::Nak {
            id: 1,
            cmd: 0x14,
            code: 2,
        };
        let (kind, message) = failed_with(&feed(&mut s, &nak.encode()));
        assert_eq!(kind, DeviceErrorKind::InvalidArgs);
        assert_eq!(
            message,
            "display 1 refused `input hdmi4 (0x33)` (NAK, error code 2); this model may not have that input"
        );
        // The stream is in step: the session goes on.
        assert_eq!(start(&mut s, status()), [tx("AA 00 01 00 01")]);
    }

    #[test]
    fn replies_for_another_display_are_ignored() {
        let mut s = ready(json!({"display_id": 2}));
        start(&mut s, command("volume", json!({"level": 40})));
        // Display 1's answer (same command) and its NAK: not ours.
        let theirs = Reply::Ack {
            id: 1,
            cmd: 0x12,
            data: vec![40],
        };
        assert_eq!(feed(&mut s, &theirs.encode()), []);
        let theirs = Reply::Nak {
            id: 1,
            cmd: 0x12,
            code: 1,
        };
        assert_eq!(feed(&mut s, &theirs.encode()), []);
        let ours = Reply::Ack {
            id: 2,
            cmd: 0x12,
            data: vec![40],
        };
        assert_eq!(
            feed(&mut s, &ours.encode()),
            [update("volume", json!(40)), done()]
        );
        // Idle: another display's status is not ours either.
        let theirs = Reply::Ack {
            id: 1,
            cmd: 0,
            data: vec![1, 10, 0, 0x21, 0x10, 0, 0],
        };
        assert_eq!(feed(&mut s, &theirs.encode()), []);
    }

    #[test]
    fn a_reply_to_another_command_does_not_answer() {
        let mut s = ready(json!({}));
        start(&mut s, command("volume", json!({"level": 40})));
        // A late power ACK: its value is published, the volume request still waits.
        assert_eq!(
            feed(&mut s, &bytes("AA FF 01 03 41 11 00 55")),
            [update("power", json!("off"))]
        );
        // A late NAK to something else: nothing.
        assert_eq!(feed(&mut s, &bytes("AA FF 01 03 4E 11 01 63")), []);
        assert_eq!(
            feed(&mut s, &bytes("AA FF 01 03 41 12 28 7E")),
            [update("volume", json!(40)), done()]
        );
        // A late ACK while idle still tells the state.
        assert_eq!(
            feed(&mut s, &bytes("AA FF 01 03 41 12 32 88")),
            [update("volume", json!(50))]
        );
    }

    #[test]
    fn garbage_is_skipped() {
        let mut s = ready(json!({}));
        start(&mut s, status());
        let mut stream = bytes("00 13 AA 11 3C FE");
        stream.extend(bytes("AA FF 01 09 41 00 00 0A 01 23 10 00 00 88"));
        stream.extend(bytes("42 42"));
        let outputs = feed(&mut s, &stream);
        assert_eq!(
            outputs,
            [
                update("power", json!("off")),
                update("volume", json!(10)),
                update("mute", json!(true)),
                update("input", json!("hdmi2")),
                update("aspect", json!("pc_16_9")),
                done()
            ]
        );
    }

    #[test]
    fn replies_split_across_chunks() {
        let reply = bytes("AA FF 01 03 41 12 32 88");
        for step in 1..reply.len() {
            let mut s = ready(json!({}));
            start(&mut s, command("volume", json!({"level": 50})));
            let mut outputs = Vec::new();
            for chunk in reply.chunks(step) {
                outputs.extend(feed(&mut s, chunk));
            }
            assert_eq!(
                outputs,
                [update("volume", json!(50)), done()],
                "step {step}"
            );
        }
    }

    #[test]
    fn a_damaged_answer_fails_the_request_and_the_next_one_works() {
        let mut s = ready(json!({}));
        start(&mut s, command("power", json!({"on": true})));
        let (kind, message) = failed_with(&feed(&mut s, &bytes("AA FF 01 03 41 11 01 57")));
        assert_eq!(kind, DeviceErrorKind::Failed);
        assert!(
            message.contains("answer to `power on` from display 1 was damaged"),
            "{message}"
        );
        assert!(
            message.contains("checksum 0x57, expected 0x56"),
            "{message}"
        );
        start(&mut s, command("power", json!({"on": true})));
        assert_eq!(
            feed(&mut s, &bytes("AA FF 01 03 41 11 01 56")),
            [update("power", json!("on")), done()]
        );
        // While idle, a damaged frame is only logged.
        assert_eq!(feed(&mut s, &bytes("AA FF 01 03 41 11 01 57")), []);
    }

    #[test]
    fn a_malformed_answer_fails_the_request() {
        let mut s = ready(json!({}));
        start(&mut s, command("volume", json!({"level": 5})));
        let reply = Reply::Ack {
            id: 1,
            cmd: 0x12,
            data: vec![5, 6],
        };
        let (_, message) = failed_with(&feed(&mut s, &reply.encode()));
        assert!(message.contains("2 bytes of volume data"), "{message}");
        start(&mut s, command("power", json!({"on": false})));
        let (_, message) = failed_with(&feed(&mut s, &bytes("AA FF 01 02 4E 11 61")));
        assert!(message.contains("one error-code byte"), "{message}");
    }

    #[test]
    fn the_secured_protocol_banner_is_fatal_with_advice() {
        for chunks in [
            &[&b"MDCSTART<<TLS>>"[..]][..],
            &[b"MDCST", b"ART<<T", b"LS>>"],
        ] {
            let mut s = ready(json!({}));
            let mut outputs = Vec::new();
            for chunk in chunks {
                outputs.extend(feed(&mut s, chunk));
            }
            match outputs.as_slice() {
                [Output::Fatal(SessionError::Protocol(m))] => {
                    assert!(m.contains("Secured protocol"), "{m}")
                }
                other => panic!("{other:?}"),
            }
            // Nothing more until the next connection.
            assert_eq!(feed(&mut s, &bytes("AA FF 01 03 41 11 01 56")), []);
        }
        // Something else that starts alike is not the banner.
        let mut s = ready(json!({}));
        assert_eq!(feed(&mut s, b"MDCSTART<<XX>>!"), []);
        assert_eq!(
            feed(&mut s, &bytes("AA FF 01 03 41 11 01 56")),
            [update("power", json!("on"))]
        );
    }

    #[test]
    fn friendly_input_names() {
        let mut s = ready(json!({"inputs": {"Laptop": "hdmi2", "Podium": "0x25", "Wall": 49}}));
        assert_eq!(
            start(&mut s, command("input", json!({"source": "laptop"}))),
            [tx("AA 14 01 01 23 39")]
        );
        assert_eq!(
            feed(&mut s, &bytes("AA FF 01 03 41 14 23 7B")),
            [update("input", json!("Laptop")), done()]
        );
        // Standard names still work; a source without a friendly name reports its own.
        start(&mut s, command("input", json!({"source": "hdmi1"})));
        assert_eq!(
            feed(&mut s, &bytes("AA FF 01 03 41 14 21 79")),
            [update("input", json!("hdmi1")), done()]
        );
        assert_eq!(
            start(&mut s, command("input", json!({"source": "Wall"}))),
            [tx("AA 14 01 01 31 47")]
        );
        let nak = Reply::Nak {
            id: 1,
            cmd: 0x14,
            code: 2,
        };
        let (_, message) = failed_with(&feed(&mut s, &nak.encode()));
        assert!(message.contains("`input Wall (0x31)`"), "{message}");
    }

    #[test]
    fn arguments_are_checked_without_touching_the_wire() {
        let bad = [
            (command("power", json!({})), "`power` needs `on`"),
            (command("power", json!({"on": 1})), "true or false, got 1"),
            (command("mute", json!({"on": "yes"})), "`mute` needs `on`"),
            (command("volume", json!({})), "got null"),
            (
                command("volume", json!({"level": 101})),
                "0 to 100, got 101",
            ),
            (command("volume", json!({"level": -1})), "got -1"),
            (command("volume", json!({"level": 2.5})), "got 2.5"),
            (command("input", json!({})), "`input` needs `source`"),
            (command("input", json!({"source": 33})), "got 33"),
            (
                command("input", json!({"source": "hdmi9"})),
                "unknown input source `hdmi9`; use one of s_video",
            ),
            (
                command("input", json!({"source": "hdmi1_pc"})),
                "cannot select; select `hdmi1`",
            ),
            (
                command("input", json!({"source": "0x1ff"})),
                "unknown input",
            ),
        ];
        for (request, why) in bad {
            let mut s = ready(json!({}));
            let err = s.start(Instant::now(), &request).unwrap_err();
            assert_eq!(err.kind, DeviceErrorKind::InvalidArgs, "{request:?}");
            assert!(err.message.contains(why), "{request:?}: {}", err.message);
            assert_eq!(drain(&mut s), [], "{request:?}");
        }
        let mut s = ready(json!({"inputs": {"laptop": "hdmi2"}}));
        let err = s
            .start(Instant::now(), &command("input", json!({"source": "x"})))
            .unwrap_err();
        assert!(
            err.message.contains("use one of laptop, s_video"),
            "{}",
            err.message
        );
    }

    #[test]
    fn unknown_commands_and_queries_are_unsupported() {
        let mut s = ready(json!({}));
        let err = s
            .start(Instant::now(), &command("route", json!({})))
            .unwrap_err();
        assert_eq!(err.kind, DeviceErrorKind::Unsupported);
        assert!(
            err.message.contains("input, mute, power, volume"),
            "{}",
            err.message
        );
        let err = s
            .start(
                Instant::now(),
                &Request::Poll {
                    query: "lamp".into(),
                },
            )
            .unwrap_err();
        assert_eq!(err.kind, DeviceErrorKind::Unsupported);
        assert!(err.message.contains("it has: status"), "{}", err.message);
    }

    #[test]
    fn one_request_at_a_time_and_abandon_forgets_it() {
        let mut s = Session::new(Options::default());
        let err = s.start(Instant::now(), &status()).unwrap_err();
        assert_eq!(err.kind, DeviceErrorKind::Busy, "not connected yet");
        s.connected(Instant::now());
        drain(&mut s);
        start(&mut s, status());
        let err = s.start(Instant::now(), &status()).unwrap_err();
        assert_eq!(err.kind, DeviceErrorKind::Busy);
        s.abandon();
        assert_eq!(
            start(&mut s, command("power", json!({"on": false}))),
            [tx("AA 11 01 01 00 13")]
        );
        // A new connection forgets the request and any half frame.
        feed(&mut s, &bytes("AA FF 01"));
        s.connected(Instant::now());
        assert_eq!(drain(&mut s), [Output::Ready]);
        start(&mut s, status());
        assert_eq!(feed(&mut s, &bytes("03 41 11 00 55")), []);
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
            check(json!({"id": 1})),
            "`id`: unknown field `id`, expected `display_id` or `inputs`"
        );
        assert!(check(json!({"display_id": 254})).contains("broadcast id"));
        assert!(check(json!({"display_id": 255})).contains("from 0 to 253"));
        assert!(check(json!({"display_id": -1})).contains("invalid value: integer `-1`"));
        assert!(check(json!({"display_id": "1"})).contains("invalid type: string"));
        assert!(check(json!({"inputs": ["hdmi1"]})).contains("must be a table"));
        assert!(check(json!({"inputs": {"a": "hdmi9"}})).contains("`inputs.a`"));
        assert!(check(json!({"inputs": {"a": 300}})).contains("not an input source"));
        assert!(check(json!({"inputs": {"a": "hdmi1_pc"}})).contains("only reports"));
        assert!(check(json!({"inputs": {"hdmi2": "hdmi1"}})).contains("hide the standard"));
        assert!(check(json!({"inputs": {"a": "hdmi1", "b": "0x21"}})).contains("same source"));
        assert!(check(json!({"inputs": {" ": "hdmi1"}})).contains("empty name"));
        // A name that is the standard name of the same source is fine.
        let options = Options::from_settings(&settings(json!({
            "display_id": 0,
            "inputs": {"HDMI1": "hdmi1"}
        })))
        .unwrap();
        assert_eq!(options.display_id(), 0);
        assert!((DRIVER.build)(&DriverSettings::default()).is_ok());
    }

    /// Every point the session emits is declared, and every declared point is emitted.
    #[test]
    fn emitted_points_are_declared() {
        let mut s = ready(json!({}));
        start(&mut s, status());
        let mut seen: Vec<String> =
            feed(&mut s, &bytes("AA FF 01 09 41 00 01 1E 00 21 10 00 00 9A"))
                .into_iter()
                .filter_map(|o| match o {
                    Output::Update { point, .. } => Some(point),
                    _ => None,
                })
                .collect();
        seen.sort();
        let mut declared: Vec<&str> = super::super::CATALOG.point_names().to_vec();
        declared.sort();
        assert_eq!(seen, declared);
    }
}
