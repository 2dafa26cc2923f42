//! The Extron SIS client as a sans-IO state machine (see [`crate::Protocol`]).
//!
//! A connection goes: banner (any number of lines) → `Password:` and login, if the unit
//! asks → verbose mode 3 (`\x1b3CV\r`, confirmed by `Vrb3`) → ready → one request at a
//! time. A unit that never asks for a password is recognised by silence: once no byte has
//! come for [`BANNER_QUIET`] after connecting, the session goes on to verbose mode.
//!
//! In verbose mode the unit reports every change, also those made on its front panel or
//! by another controller, and answers every set with the new state (`Out2 In1 All`,
//! `Out1 Vol50`, `Amt01*1`). So a set needs no read-back: its answer is the update. SIS
//! has no request ids; a line answers the request in flight only if it matches it (same
//! output, same kind, same input for a tie). Every other state line is an unsolicited
//! update, whenever it arrives, and `Exx` is the request's error.
//!
//! # Points
//!
//! Names depend on the output a line is about, so [`super::DRIVER`] lists patterns:
//! - `route.<n>`: input tied to output n for video (`All`, `Vid` and `RGB` ties); 0 is
//!   no tie. `audio_route.<n>`: input tied to output n for audio (`All` and `Aud` ties).
//!   An `All` tie updates both; the runtime only publishes values that changed.
//! - `volume`, `audio_mute`, `video_mute`: single-output products (`Vol82`, `Amt1`,
//!   `Vmt1`). `volume.<n>`, `audio_mute.<n>`, `video_mute.<n>`: output n of a matrix
//!   (`Out01 Vol50`, `Amt01*1`, `Vmt01*1`). The line's form decides, and the form the
//!   session sends follows the `outputs` option, so a profile sees one set or the other.
//! - `part_number`, `firmware` (`info` poll).

use std::collections::VecDeque;
use std::time::{Duration, Instant};

use serde::Deserialize;
use serde_json::{Map, Value, json};

use super::frame::{self, Command, ErrorCode, Item, LineReader, Response, TieKind};
use crate::kit;
use crate::{
    DeviceError, DeviceErrorKind, DriverSettings, OptionsError, Output, Protocol, Request,
    SessionError,
};

/// How long the unit must stay silent after its banner before the session takes it that
/// no `Password:` prompt is coming.
pub const BANNER_QUIET: Duration = Duration::from_millis(500);

/// How long connecting may take, banner to `Vrb3`, before the session gives up.
pub const HANDSHAKE_TIMEOUT: Duration = Duration::from_secs(10);

/// Default top of the raw volume scale (see [`Options`]).
pub const DEFAULT_VOLUME_MAX: u16 = 100;

const AUTH_MISSING: &str =
    "switcher asks for a password; set `password` for this device in the site config";

/// Builds a session for [`super::DRIVER`].
pub fn build(settings: &DriverSettings) -> Result<Box<dyn Protocol>, String> {
    let options = Options::from_settings(settings).map_err(|e| e.to_string())?;
    Ok(Box::new(Session::new(options)))
}

/// The driver's settings, checked once when the profile is loaded.
///
/// - `outputs` (default 1): how many outputs the unit has. `routes` reads each of them;
///   with 1 the unit is treated as a single-output product (`82V`, `1Z`, `1B`), with more
///   as a matrix (`1*50V`, `1*1Z`, `1*1B`, reads `1V`, `1Z`, `1B`).
/// - `inputs` (optional): how many inputs, to refuse out-of-range ties before sending.
/// - `volume_max` (default 100): top of the unit's raw volume scale. SIS volume is a raw
///   integer whose meaning depends on the product: 0-100 on MLA-VC10-style volume
///   controllers (`Vol082`), 0-64 on many matrix audio outputs (64 = 0 dB). The `volume`
///   command takes that raw value, refuses anything outside 0..=`volume_max`, and the unit
///   itself answers E13 to values it cannot take.
#[derive(Debug, Clone)]
pub struct Options {
    inputs: Option<u16>,
    outputs: u16,
    volume_max: u16,
    password: Option<String>,
}

impl Default for Options {
    fn default() -> Options {
        Options {
            inputs: None,
            outputs: 1,
            volume_max: DEFAULT_VOLUME_MAX,
            password: None,
        }
    }
}

/// `[options]` as a profile writes them.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct OptionsFile {
    inputs: Option<u64>,
    outputs: Option<u64>,
    volume_max: Option<u64>,
}

impl Options {
    pub fn from_settings(settings: &DriverSettings) -> Result<Options, OptionsError> {
        let file: OptionsFile = settings.options()?;
        let count = |key: &str, value: Option<u64>| match value {
            None => Ok(None),
            Some(n) if (1..=9999).contains(&n) => Ok(Some(n as u16)),
            Some(n) => Err(OptionsError::at_key(
                key,
                format!("`{key}` must be an integer from 1 to 9999, got {n}"),
            )),
        };
        Ok(Options {
            inputs: count("inputs", file.inputs)?,
            outputs: count("outputs", file.outputs)?.unwrap_or(1),
            volume_max: count("volume_max", file.volume_max)?.unwrap_or(DEFAULT_VOLUME_MAX),
            password: settings.password.clone(),
        })
    }

    fn single_output(&self) -> bool {
        self.outputs == 1
    }
}

/// Where the connection is.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Phase {
    /// No connection, or the last one ended in [`Output::Fatal`]: bytes are ignored.
    Down,
    /// Reading the banner; a `Password:` prompt may follow, or silence.
    Banner,
    /// Sent the password; waiting for `Login Administrator` / `Login User`.
    LoggingIn,
    /// Sent `\x1b3CV\r`; waiting for `Vrb3`.
    Verbose,
    /// Requests may run.
    Ready,
}

/// One command of a request and what answers it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Step {
    Tie {
        input: u16,
        output: u16,
        kind: TieKind,
    },
    ReadTie {
        output: u16,
        audio: bool,
    },
    SetVolume {
        output: Option<u16>,
        level: u16,
    },
    ReadVolume {
        output: Option<u16>,
    },
    SetMute {
        output: Option<u16>,
        video: bool,
        on: bool,
    },
    ReadMute {
        output: Option<u16>,
        video: bool,
    },
    PartNumber,
    Firmware,
}

type Update = (String, Value);

impl Step {
    fn command(self) -> Command {
        match self {
            Step::Tie {
                input,
                output,
                kind,
            } => Command::Tie {
                input,
                output: Some(output),
                kind,
            },
            Step::ReadTie { output, audio } => Command::ReadTie {
                output,
                kind: if audio {
                    TieKind::Audio
                } else {
                    TieKind::Video
                },
            },
            Step::SetVolume { output, level } => Command::SetVolume { output, level },
            Step::ReadVolume { output } => Command::ReadVolume { output },
            Step::SetMute {
                output,
                video: true,
                on,
            } => Command::SetVideoMute { output, on },
            Step::SetMute {
                output,
                video: false,
                on,
            } => Command::SetAudioMute { output, on },
            Step::ReadMute {
                output,
                video: true,
            } => Command::ReadVideoMute { output },
            Step::ReadMute {
                output,
                video: false,
            } => Command::ReadAudioMute { output },
            Step::PartNumber => Command::PartNumber,
            Step::Firmware => Command::Firmware,
        }
    }

    /// The updates `response` carries if it answers this step; `None` if it is about
    /// something else (and so unsolicited). Reads accept the tagged form verbose mode 3
    /// should give and the bare value the manuals show, since the tagged forms of reads
    /// differ between product families.
    fn answer(self, response: &Response, outputs: u16) -> Option<Vec<Update>> {
        let report = || Some(report(response, outputs));
        match (self, response) {
            (
                Step::Tie {
                    input,
                    output,
                    kind,
                },
                Response::Tie {
                    output: o,
                    input: i,
                    kind: k,
                },
            ) if (output, input, kind) == (*o, *i, *k) => report(),
            (
                Step::ReadTie { output, audio },
                Response::Tie {
                    output: o, kind, ..
                },
            ) if output == *o
                && (if audio {
                    kind.has_audio()
                } else {
                    kind.has_video()
                }) =>
            {
                report()
            }
            (Step::ReadTie { output, audio }, Response::Other(text)) => {
                let input = frame::parse_number(text.as_bytes())?;
                let base = if audio { "audio_route" } else { "route" };
                Some(vec![(point(base, Some(output)), json!(input))])
            }
            (
                Step::SetVolume { output, .. } | Step::ReadVolume { output },
                Response::Volume { output: o, .. },
            ) if output == *o => report(),
            (Step::ReadVolume { output }, Response::Other(text)) => {
                let level: i32 = text.parse().ok()?;
                Some(vec![(point("volume", output), json!(level))])
            }
            (
                Step::SetMute {
                    output,
                    video: false,
                    ..
                }
                | Step::ReadMute {
                    output,
                    video: false,
                },
                Response::AudioMute { output: o, .. },
            )
            | (
                Step::SetMute {
                    output,
                    video: true,
                    ..
                }
                | Step::ReadMute {
                    output,
                    video: true,
                },
                Response::VideoMute { output: o, .. },
            ) if output == *o => report(),
            (Step::ReadMute { output, video }, Response::Other(text)) => {
                let on = frame::parse_number(text.as_bytes())? != 0;
                let base = if video { "video_mute" } else { "audio_mute" };
                Some(vec![(point(base, output), json!(on))])
            }
            (Step::PartNumber, Response::Other(text)) => {
                let part = text.strip_prefix("Pno").unwrap_or(text).trim();
                let looks_right =
                    part.starts_with(|c: char| c.is_ascii_digit()) && part.contains('-');
                looks_right.then(|| vec![("part_number".to_string(), json!(part))])
            }
            (Step::Firmware, Response::Other(text)) => {
                let version = match text.strip_prefix("Ver") {
                    Some(tagged) => tagged.rsplit('*').next().unwrap_or(tagged),
                    None => text,
                }
                .trim();
                let looks_right =
                    version.starts_with(|c: char| c.is_ascii_digit()) && version.contains('.');
                looks_right.then(|| vec![("firmware".to_string(), json!(version))])
            }
            _ => None,
        }
    }
}

/// The point updates a state line carries, whether it answers a request or not.
fn report(response: &Response, outputs: u16) -> Vec<Update> {
    let tie = |output: u16, input: u16, kind: TieKind| {
        let video = kind
            .has_video()
            .then(|| (point("route", Some(output)), json!(input)));
        let audio = kind
            .has_audio()
            .then(|| (point("audio_route", Some(output)), json!(input)));
        video.into_iter().chain(audio)
    };
    match *response {
        Response::Tie {
            output,
            input,
            kind,
        } => tie(output, input, kind).collect(),
        Response::TieAll { input, kind } => (1..=outputs)
            .flat_map(|output| tie(output, input, kind))
            .collect(),
        Response::Volume { output, level } => vec![(point("volume", output), json!(level))],
        Response::AudioMute { output, on } => vec![(point("audio_mute", output), json!(on))],
        Response::VideoMute { output, on } => vec![(point("video_mute", output), json!(on))],
        _ => Vec::new(),
    }
}

/// `volume` for a single-output product, `volume.2` for output 2 of a matrix.
fn point(base: &str, output: Option<u16>) -> String {
    match output {
        Some(output) => format!("{base}.{output}"),
        None => base.to_string(),
    }
}

/// The request in flight: the command awaiting its answer and those still to send.
#[derive(Debug)]
struct InFlight {
    sent: Step,
    rest: VecDeque<Step>,
    /// A poll pauses between its reads; a command runs straight through.
    poll: bool,
}

/// One Extron SIS connection's client state.
#[derive(Debug)]
pub struct Session {
    options: Options,
    phase: Phase,
    lines: LineReader,
    /// Whether the password went out on this connection: a prompt after it means "wrong".
    password_sent: bool,
    /// Prompts to let pass while logging in: when the prompt came only after the session
    /// had given up waiting for it and sent `\x1b3CV\r`, the unit takes that line for a
    /// wrong password and prompts once more before our real password is read.
    stray_prompts: u8,
    /// While reading the banner: when silence means "no password".
    quiet_until: Option<Instant>,
    /// When connecting has taken too long.
    handshake_deadline: Option<Instant>,
    request: Option<InFlight>,
    /// The reads a paused poll has still to do, sent on [`Protocol::resume`].
    paused: Option<VecDeque<Step>>,
    outputs: VecDeque<Output>,
}

impl Session {
    pub fn new(options: Options) -> Session {
        Session {
            options,
            phase: Phase::Down,
            lines: LineReader::new(),
            password_sent: false,
            stray_prompts: 0,
            quiet_until: None,
            handshake_deadline: None,
            request: None,
            paused: None,
            outputs: VecDeque::new(),
        }
    }

    fn on_prompt(&mut self) {
        match self.phase {
            Phase::Banner => self.send_password(),
            Phase::Verbose if !self.password_sent => {
                self.stray_prompts = 1;
                self.send_password();
            }
            Phase::LoggingIn if self.stray_prompts > 0 => self.stray_prompts -= 1,
            Phase::LoggingIn | Phase::Verbose => self.rejected("it asked for the password again"),
            Phase::Ready => self.fatal(SessionError::Protocol(
                "switcher asked for a password in the middle of the session".into(),
            )),
            Phase::Down => {}
        }
    }

    fn send_password(&mut self) {
        let Some(password) = &self.options.password else {
            return self.fatal(SessionError::AuthFailed(AUTH_MISSING.into()));
        };
        let bytes = format!("{password}\r").into_bytes();
        self.outputs.push_back(Output::Transmit(bytes));
        self.password_sent = true;
        self.quiet_until = None;
        self.phase = Phase::LoggingIn;
    }

    fn rejected(&mut self, why: &str) {
        let message = format!(
            "switcher rejected the password ({why}); check the device's `password` in the site config"
        );
        self.fatal(SessionError::AuthFailed(message));
    }

    fn on_line(&mut self, line: &str) {
        let response = Response::parse(line);
        match (self.phase, &response) {
            (Phase::Banner | Phase::LoggingIn, Response::Login(_)) => self.start_verbose(),
            (Phase::LoggingIn, Response::Error { code, .. }) => {
                self.rejected(&format!("{code}: {}", code.meaning()));
            }
            (Phase::Verbose, Response::Verbose(3)) => {
                self.phase = Phase::Ready;
                self.handshake_deadline = None;
                self.outputs.push_back(Output::Ready);
            }
            (Phase::Verbose, Response::Verbose(mode)) => {
                let message = format!("asked for verbose mode 3, the switcher answered Vrb{mode}");
                self.fatal(SessionError::Protocol(message));
            }
            (Phase::Verbose, Response::Error { code, detail: None }) => {
                let message = format!(
                    "switcher refused verbose mode 3 ({code}: {}); this driver needs it to see replies and front-panel changes",
                    code.meaning()
                );
                self.fatal(SessionError::Protocol(message));
            }
            (Phase::Ready, _) => self.on_response(&response),
            // Banner, date and blank-ish lines before the session is ready.
            _ => {}
        }
    }

    fn start_verbose(&mut self) {
        self.quiet_until = None;
        self.phase = Phase::Verbose;
        self.transmit(Command::Verbose(3));
    }

    fn on_response(&mut self, response: &Response) {
        if let Response::Error { code, detail: None } = response {
            // SIS errors come in place of the answer; with nothing in flight there is
            // nobody to tell.
            if let Some(flight) = self.request.take() {
                let error = device_error(*code, &flight.sent.command());
                self.outputs.push_back(Output::Completed(Err(error)));
            }
            return;
        }
        let outputs = self.options.outputs;
        let answered = self
            .request
            .as_ref()
            .and_then(|flight| flight.sent.answer(response, outputs));
        match answered {
            Some(updates) => {
                self.emit(updates);
                let flight = self.request.as_mut().expect("answered a request");
                match flight.rest.pop_front() {
                    // Between two reads of a poll, a waiting command may go first.
                    Some(next) if flight.poll => {
                        let mut rest = std::mem::take(&mut flight.rest);
                        rest.push_front(next);
                        self.request = None;
                        self.paused = Some(rest);
                        self.outputs.push_back(Output::Paused);
                    }
                    Some(next) => {
                        flight.sent = next;
                        self.transmit(next.command());
                    }
                    None => {
                        self.request = None;
                        self.outputs.push_back(Output::Completed(Ok(())));
                    }
                }
            }
            None => self.emit(report(response, outputs)),
        }
    }

    fn emit(&mut self, updates: Vec<Update>) {
        self.outputs.extend(
            updates
                .into_iter()
                .map(|(point, value)| Output::Update { point, value }),
        );
    }

    fn transmit(&mut self, command: Command) {
        self.outputs.push_back(Output::Transmit(command.encode()));
    }

    /// The commands a request needs, in order.
    fn plan(&self, request: &Request) -> Result<Vec<Step>, DeviceError> {
        match request {
            Request::Command { name, args } => match name.as_str() {
                "route" => self.plan_route(args),
                "volume" => self.plan_volume(args),
                "mute" => self.plan_mute(args),
                _ => Err(unsupported(format!(
                    "extron-sis has no command `{name}`; it has: {}",
                    super::CATALOG.command_names()
                ))),
            },
            Request::Poll { query } => self.plan_poll(query),
        }
    }

    fn plan_route(&self, args: &Map<String, Value>) -> Result<Vec<Step>, DeviceError> {
        let max_input = self.options.inputs.unwrap_or(9999);
        let input = kit::args::integer(args, "input", 0..=i64::from(max_input))? as u16;
        let output = self
            .output_arg(args)?
            .ok_or_else(|| invalid("`route` needs `output` (an output number)"))?;
        let kind = match args.get("kind") {
            None | Some(Value::Null) => TieKind::All,
            Some(Value::String(kind)) if kind == "all" => TieKind::All,
            Some(Value::String(kind)) if kind == "video" => TieKind::Video,
            Some(Value::String(kind)) if kind == "audio" => TieKind::Audio,
            Some(other) => {
                return Err(invalid(format!(
                    "`kind` must be \"all\", \"video\" or \"audio\", got {other}"
                )));
            }
        };
        Ok(vec![Step::Tie {
            input,
            output,
            kind,
        }])
    }

    /// `level` is on the unit's raw scale, 0 to `volume_max`.
    fn plan_volume(&self, args: &Map<String, Value>) -> Result<Vec<Step>, DeviceError> {
        let max = self.options.volume_max;
        let level = kit::args::integer(args, "level", 0..=i64::from(max))? as u16;
        let output = self.target(args, "volume")?;
        Ok(vec![Step::SetVolume { output, level }])
    }

    /// Audio first, then video, each waiting for its answer; an unnamed one stays as is.
    fn plan_mute(&self, args: &Map<String, Value>) -> Result<Vec<Step>, DeviceError> {
        let audio = kit::args::optional_boolean(args, "audio")?;
        let video = kit::args::optional_boolean(args, "video")?;
        if audio.is_none() && video.is_none() {
            return Err(invalid(
                "`mute` needs `audio` and/or `video` (true or false)",
            ));
        }
        let output = self.target(args, "mute")?;
        let audio = audio.map(|on| Step::SetMute {
            output,
            video: false,
            on,
        });
        let video = video.map(|on| Step::SetMute {
            output,
            video: true,
            on,
        });
        Ok(audio.into_iter().chain(video).collect())
    }

    fn plan_poll(&self, query: &str) -> Result<Vec<Step>, DeviceError> {
        let each = self.each_output();
        let steps = match query {
            "routes" => (1..=self.options.outputs)
                .flat_map(|output| [false, true].map(|audio| Step::ReadTie { output, audio }))
                .collect(),
            "volume" => each.map(|output| Step::ReadVolume { output }).collect(),
            "mute" => each
                .flat_map(|output| [false, true].map(|video| Step::ReadMute { output, video }))
                .collect(),
            "info" => vec![Step::PartNumber, Step::Firmware],
            _ => {
                return Err(unsupported(format!(
                    "extron-sis has no query `{query}`; it has: {}",
                    super::CATALOG.query_names()
                )));
            }
        };
        Ok(steps)
    }

    /// The outputs per-output reads cover: `None` alone for a single-output product.
    fn each_output(&self) -> impl Iterator<Item = Option<u16>> + use<> {
        let matrix = (!self.options.single_output()).then_some(1..=self.options.outputs);
        let single = self.options.single_output().then_some(None);
        matrix.into_iter().flatten().map(Some).chain(single)
    }

    fn output_arg(&self, args: &Map<String, Value>) -> Result<Option<u16>, DeviceError> {
        let outputs = self.options.outputs;
        match kit::args::optional_integer(args, "output", 1..=i64::from(outputs)) {
            Ok(output) => Ok(output.map(|o| o as u16)),
            Err(mut error) => {
                error
                    .message
                    .push_str(" (set the `outputs` option for a bigger matrix)");
                Err(error)
            }
        }
    }

    /// The `output` a volume or mute command is for: `None` (single-output form) on a
    /// single-output product, a required output number on a matrix.
    fn target(&self, args: &Map<String, Value>, command: &str) -> Result<Option<u16>, DeviceError> {
        let output = self.output_arg(args)?;
        if self.options.single_output() {
            return Ok(None);
        }
        match output {
            Some(output) => Ok(Some(output)),
            None => Err(invalid(format!(
                "`{command}` needs `output` (1 to {}) on this switcher",
                self.options.outputs
            ))),
        }
    }

    /// Gives up on the connection; nothing more happens until the next `connected`.
    fn fatal(&mut self, error: SessionError) {
        self.phase = Phase::Down;
        self.request = None;
        self.paused = None;
        self.quiet_until = None;
        self.handshake_deadline = None;
        self.lines.clear();
        self.outputs.push_back(Output::Fatal(error));
    }
}

impl Protocol for Session {
    fn check(&self, request: &Request) -> Result<(), DeviceError> {
        self.plan(request).map(|_| ())
    }

    /// The banner, login and verbose mode are timed here, so a stall names its step.
    fn handshake_timeout(&self) -> Option<Duration> {
        Some(HANDSHAKE_TIMEOUT)
    }

    fn connected(&mut self, now: Instant) {
        self.phase = Phase::Banner;
        self.lines.clear();
        self.password_sent = false;
        self.stray_prompts = 0;
        self.quiet_until = Some(now + BANNER_QUIET);
        self.handshake_deadline = Some(now + HANDSHAKE_TIMEOUT);
        self.request = None;
        self.paused = None;
        self.outputs.clear();
    }

    fn received(&mut self, now: Instant, data: &[u8]) {
        if self.phase == Phase::Down {
            return;
        }
        if self.phase == Phase::Banner {
            self.quiet_until = Some(now + BANNER_QUIET);
        }
        self.lines.push(data);
        while self.phase != Phase::Down {
            match self.lines.next_item() {
                Ok(Some(Item::Line(line))) => self.on_line(&line),
                Ok(Some(Item::PasswordPrompt)) => self.on_prompt(),
                Ok(None) => break,
                Err(e) => self.fatal(SessionError::Protocol(e.to_string())),
            }
        }
    }

    fn start(&mut self, _now: Instant, request: &Request) -> Result<(), DeviceError> {
        if self.phase != Phase::Ready || self.request.is_some() {
            return Err(DeviceError::new(
                DeviceErrorKind::Busy,
                "the Extron SIS session is not ready for a request",
            ));
        }
        let poll = matches!(request, Request::Poll { .. });
        if poll && self.paused.is_some() {
            return Err(DeviceError::new(
                DeviceErrorKind::Busy,
                "another Extron SIS poll is paused; resume it first",
            ));
        }
        let mut steps: VecDeque<Step> = self.plan(request)?.into();
        let Some(first) = steps.pop_front() else {
            self.outputs.push_back(Output::Completed(Ok(())));
            return Ok(());
        };
        self.transmit(first.command());
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
            self.transmit(next.command());
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

    fn poll_timeout(&self) -> Option<Instant> {
        match self.phase {
            Phase::Banner => self.quiet_until.min(self.handshake_deadline),
            Phase::LoggingIn | Phase::Verbose => self.handshake_deadline,
            Phase::Ready | Phase::Down => None,
        }
    }

    fn handle_timeout(&mut self, now: Instant) {
        if self.handshake_deadline.is_some_and(|d| now >= d) {
            let waiting = match self.phase {
                Phase::Banner => "its banner",
                Phase::LoggingIn => "`Login Administrator` / `Login User` after the password",
                Phase::Verbose => "`Vrb3` after switching on verbose mode",
                Phase::Ready | Phase::Down => return,
            };
            let message = format!(
                "switcher did not send {waiting} within {}s",
                HANDSHAKE_TIMEOUT.as_secs()
            );
            return self.fatal(SessionError::Protocol(message));
        }
        if self.phase == Phase::Banner && self.quiet_until.is_some_and(|q| now >= q) {
            self.start_verbose();
        }
    }
}

/// What an `Exx` answer means for the request.
fn device_error(code: ErrorCode, command: &Command) -> DeviceError {
    let kind = match code.0 {
        1 | 11 | 12 | 13 => DeviceErrorKind::InvalidArgs,
        10 | 14 => DeviceErrorKind::Unsupported,
        22 => DeviceErrorKind::Busy,
        _ => DeviceErrorKind::Failed,
    };
    DeviceError::new(
        kind,
        format!(
            "switcher answered {code} ({}) to `{command}`",
            code.meaning()
        ),
    )
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
    use crate::extron::DRIVER;
    use crate::testing::*;

    /// Banner as a CrossPoint-style unit sends it on Telnet connect, password prompt last.
    const BANNER: &[u8] = b"(c) Copyright 2024, Extron Electronics, DXP 88 HDMI, V1.05, 60-1071-01\r\nTue, 04 Jun 2024 10:21:07\r\n";

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

    /// A session through banner, password and verbose mode, outputs drained.
    fn ready(options: Value) -> Session {
        let mut s = session_with(options, Some("extron"));
        let t0 = Instant::now();
        s.connected(t0);
        feed(&mut s, BANNER);
        assert_eq!(feed(&mut s, b"\r\nPassword:"), [tx(b"extron\r")]);
        assert_eq!(
            feed(&mut s, b"\r\nLogin Administrator\r\n"),
            [tx(b"\x1b3CV\r")]
        );
        assert_eq!(feed(&mut s, b"Vrb3\r\n"), [Output::Ready]);
        s
    }

    fn matrix() -> Session {
        ready(json!({"outputs": 4, "inputs": 12}))
    }

    #[test]
    fn password_login_verbose_and_a_tie_end_to_end() {
        let mut s = session_with(json!({"outputs": 4}), Some("extron"));
        let t0 = Instant::now();
        s.connected(t0);
        assert_eq!(s.poll_timeout(), Some(t0 + BANNER_QUIET));
        assert_eq!(feed(&mut s, BANNER), []);
        assert_eq!(feed(&mut s, b"\r\nPassword:"), [tx(b"extron\r")]);
        assert_eq!(
            feed(&mut s, b"\r\nLogin Administrator\r\n"),
            [tx(b"\x1b3CV\r")]
        );
        assert_eq!(feed(&mut s, b"Vrb3\r\n"), [Output::Ready]);
        assert_eq!(s.poll_timeout(), None);
        assert_eq!(
            start(&mut s, command("route", json!({"input": 1, "output": 2}))),
            [tx(b"1*2!")]
        );
        assert_eq!(
            feed(&mut s, b"Out2 In1 All\r\n"),
            [
                update("route.2", json!(1)),
                update("audio_route.2", json!(1)),
                done()
            ]
        );
    }

    #[test]
    fn login_user_is_accepted_too() {
        let mut s = session_with(json!({}), Some("pw"));
        s.connected(Instant::now());
        assert_eq!(feed(&mut s, b"\r\nPassword:"), [tx(b"pw\r")]);
        assert_eq!(feed(&mut s, b"\r\nLogin User\r\n"), [tx(b"\x1b3CV\r")]);
    }

    #[test]
    fn no_password_prompt_means_verbose_after_a_quiet_banner() {
        // Several banner lines, in pieces; each piece restarts the quiet wait.
        let mut s = session_with(json!({}), Some("unused"));
        let t0 = Instant::now();
        s.connected(t0);
        s.received(
            t0,
            b"(c) Copyright 2024, Extron Electronics, MLA-VC10, V1.00\r\n",
        );
        let t1 = t0 + Duration::from_millis(300);
        s.received(t1, b"Extra line\r\nTue, 04 Jun 2024 10:21:07\r\n");
        assert_eq!(s.poll_timeout(), Some(t1 + BANNER_QUIET));
        s.handle_timeout(t0 + BANNER_QUIET);
        assert_eq!(drain(&mut s), []);
        s.handle_timeout(t1 + BANNER_QUIET);
        assert_eq!(drain(&mut s), [tx(b"\x1b3CV\r")]);
        assert_eq!(feed(&mut s, b"Vrb3\r\n"), [Output::Ready]);

        // A unit that sends nothing at all (RS-232 through a device server).
        let mut s = session_with(json!({}), None);
        s.connected(t0);
        s.handle_timeout(t0 + BANNER_QUIET);
        assert_eq!(drain(&mut s), [tx(b"\x1b3CV\r")]);
        assert_eq!(feed(&mut s, b"Vrb3\r\n"), [Output::Ready]);
    }

    #[test]
    fn a_late_password_prompt_is_still_answered() {
        let mut s = session_with(json!({}), Some("extron"));
        let t0 = Instant::now();
        s.connected(t0);
        s.handle_timeout(t0 + BANNER_QUIET);
        assert_eq!(drain(&mut s), [tx(b"\x1b3CV\r")]);
        assert_eq!(feed(&mut s, b"\r\nPassword:"), [tx(b"extron\r")]);
        // The unit took `\x1b3CV\r` for a wrong password and prompts once more, then
        // reads ours.
        assert_eq!(feed(&mut s, b"\r\nPassword:"), []);
        assert_eq!(
            feed(&mut s, b"\r\nLogin Administrator\r\n"),
            [tx(b"\x1b3CV\r")]
        );
        assert_eq!(feed(&mut s, b"Vrb3\r\n"), [Output::Ready]);
    }

    #[test]
    fn wrong_password_is_fatal() {
        let mut s = session_with(json!({}), Some("wrong"));
        s.connected(Instant::now());
        feed(&mut s, BANNER);
        assert_eq!(feed(&mut s, b"\r\nPassword:"), [tx(b"wrong\r")]);
        let error = fatal(&feed(&mut s, b"\r\nPassword:"));
        assert!(
            matches!(&error, SessionError::AuthFailed(m) if m.starts_with("switcher rejected the password")),
            "{error}"
        );
        // Nothing more until the runtime reconnects.
        assert_eq!(feed(&mut s, b"Login Administrator\r\n"), []);

        let mut s = session_with(json!({}), Some("wrong"));
        s.connected(Instant::now());
        feed(&mut s, b"Password:");
        let error = fatal(&feed(&mut s, b"E24\r\n"));
        assert!(
            matches!(&error, SessionError::AuthFailed(m) if m.contains("E24")),
            "{error}"
        );
    }

    #[test]
    fn missing_password_is_fatal() {
        let mut s = session_with(json!({}), None);
        s.connected(Instant::now());
        feed(&mut s, BANNER);
        let error = fatal(&feed(&mut s, b"\r\nPassword:"));
        assert_eq!(error, SessionError::AuthFailed(AUTH_MISSING.into()));
        assert!(AUTH_MISSING.contains("set `password` for this device in the site config"));
    }

    #[test]
    fn refused_verbose_mode_is_fatal() {
        let mut s = session_with(json!({}), None);
        let t0 = Instant::now();
        s.connected(t0);
        s.handle_timeout(t0 + BANNER_QUIET);
        drain(&mut s);
        let error = fatal(&feed(&mut s, b"E10\r\n"));
        assert!(
            matches!(&error, SessionError::Protocol(m) if m.contains("E10") && m.contains("verbose mode 3")),
            "{error}"
        );
    }

    #[test]
    fn a_silent_handshake_times_out() {
        let mut s = session_with(json!({}), None);
        let t0 = Instant::now();
        s.connected(t0);
        s.handle_timeout(t0 + BANNER_QUIET);
        assert_eq!(drain(&mut s), [tx(b"\x1b3CV\r")]);
        assert_eq!(s.poll_timeout(), Some(t0 + HANDSHAKE_TIMEOUT));
        s.handle_timeout(t0 + HANDSHAKE_TIMEOUT);
        let error = fatal(&drain(&mut s));
        assert!(
            matches!(&error, SessionError::Protocol(m) if m.contains("Vrb3")),
            "{error}"
        );
    }

    #[test]
    fn requests_wait_for_ready_and_for_each_other() {
        let mut s = session_with(json!({}), None);
        s.connected(Instant::now());
        assert_eq!(
            s.start(Instant::now(), &poll("volume")).unwrap_err().kind,
            DeviceErrorKind::Busy
        );
        let mut s = ready(json!({}));
        start(&mut s, poll("volume"));
        assert_eq!(
            s.start(Instant::now(), &poll("volume")).unwrap_err().kind,
            DeviceErrorKind::Busy
        );
    }

    #[test]
    fn exact_bytes_for_each_request() {
        let matrix_cases = [
            (
                command("route", json!({"input": 1, "output": 3})),
                &b"1*3!"[..],
            ),
            (
                command("route", json!({"input": 7, "output": 4, "kind": "video"})),
                b"7*4%",
            ),
            (
                command("route", json!({"input": 12, "output": 4, "kind": "audio"})),
                b"12*4$",
            ),
            (command("route", json!({"input": 0, "output": 1})), b"0*1!"),
            (
                command("volume", json!({"level": 50, "output": 1})),
                b"1*50V",
            ),
            (
                command("mute", json!({"audio": true, "output": 1})),
                b"1*1Z",
            ),
            (
                command("mute", json!({"video": false, "output": 2})),
                b"2*0B",
            ),
            (poll("routes"), b"1%"),
            (poll("volume"), b"1V"),
            (poll("mute"), b"1Z"),
            (poll("info"), b"N"),
        ];
        for (request, bytes) in matrix_cases {
            let mut s = matrix();
            assert_eq!(start(&mut s, request.clone()), [tx(bytes)], "{request:?}");
        }
        let single_cases = [
            (command("volume", json!({"level": 82})), &b"82V"[..]),
            (command("volume", json!({"level": 82, "output": 1})), b"82V"),
            (command("mute", json!({"audio": true})), b"1Z"),
            (command("mute", json!({"audio": false})), b"0Z"),
            (command("mute", json!({"video": true})), b"1B"),
            (poll("volume"), b"V"),
            (poll("mute"), b"Z"),
            (poll("routes"), b"1%"),
        ];
        for (request, bytes) in single_cases {
            let mut s = ready(json!({}));
            assert_eq!(start(&mut s, request.clone()), [tx(bytes)], "{request:?}");
        }
    }

    #[test]
    fn sets_complete_from_their_own_response() {
        let mut s = matrix();
        start(
            &mut s,
            command("route", json!({"input": 7, "output": 4, "kind": "video"})),
        );
        assert_eq!(
            feed(&mut s, b"Out04 In07 Vid\r\n"),
            [update("route.4", json!(7)), done()]
        );
        start(
            &mut s,
            command("route", json!({"input": 12, "output": 4, "kind": "audio"})),
        );
        assert_eq!(
            feed(&mut s, b"Out04 In12 Aud\r\n"),
            [update("audio_route.4", json!(12)), done()]
        );
        start(&mut s, command("volume", json!({"level": 50, "output": 1})));
        assert_eq!(
            feed(&mut s, b"Out01 Vol50\r\n"),
            [update("volume.1", json!(50)), done()]
        );
        start(
            &mut s,
            command("mute", json!({"audio": true, "video": true, "output": 1})),
        );
        assert_eq!(
            feed(&mut s, b"Amt01*1\r\n"),
            [update("audio_mute.1", json!(true)), tx(b"1*1B")]
        );
        assert_eq!(
            feed(&mut s, b"Vmt01*1\r\n"),
            [update("video_mute.1", json!(true)), done()]
        );

        let mut s = ready(json!({}));
        start(&mut s, command("volume", json!({"level": 82})));
        assert_eq!(
            feed(&mut s, b"Vol082\r\n"),
            [update("volume", json!(82)), done()]
        );
        start(&mut s, command("mute", json!({"audio": false})));
        assert_eq!(
            feed(&mut s, b"Amt0\r\n"),
            [update("audio_mute", json!(false)), done()]
        );
    }

    #[test]
    fn unsolicited_tie_during_a_pending_volume_request() {
        let mut s = matrix();
        assert_eq!(
            start(&mut s, command("volume", json!({"level": 40, "output": 2}))),
            [tx(b"2*40V")]
        );
        // A front-panel tie and another output's volume are not the answer.
        assert_eq!(
            feed(&mut s, b"Out2 In3 All\r\nOut01 Vol10\r\n"),
            [
                update("route.2", json!(3)),
                update("audio_route.2", json!(3)),
                update("volume.1", json!(10)),
            ]
        );
        assert_eq!(
            feed(&mut s, b"Out02 Vol40\r\n"),
            [update("volume.2", json!(40)), done()]
        );
    }

    #[test]
    fn a_tie_for_another_output_is_unsolicited() {
        let mut s = matrix();
        start(&mut s, command("route", json!({"input": 1, "output": 2})));
        assert_eq!(
            feed(&mut s, b"Out3 In1 All\r\n"),
            [
                update("route.3", json!(1)),
                update("audio_route.3", json!(1))
            ]
        );
        // Same output, different input: someone else's tie racing ours.
        assert_eq!(
            feed(&mut s, b"Out2 In5 Vid\r\n"),
            [update("route.2", json!(5))]
        );
        assert_eq!(
            feed(&mut s, b"Out2 In1 All\r\n"),
            [
                update("route.2", json!(1)),
                update("audio_route.2", json!(1)),
                done()
            ]
        );
    }

    #[test]
    fn unsolicited_lines_while_idle_become_updates() {
        let mut s = matrix();
        assert_eq!(
            feed(&mut s, b"In5 Vid\r\n"),
            (1..=4)
                .map(|o| update(&format!("route.{o}"), json!(5)))
                .collect::<Vec<_>>()
        );
        assert_eq!(
            feed(
                &mut s,
                b"Amt03*1\r\nVmt2*0\r\nQik\r\nReconfig\r\nE30:2\r\nE13\r\nSig 1 0\r\n"
            ),
            [
                update("audio_mute.3", json!(true)),
                update("video_mute.2", json!(false)),
            ]
        );
    }

    #[test]
    fn a_device_fault_does_not_fail_the_request() {
        let mut s = matrix();
        start(&mut s, command("volume", json!({"level": 1, "output": 1})));
        assert_eq!(feed(&mut s, b"E30:2\r\n"), []);
        assert_eq!(
            feed(&mut s, b"Out1 Vol1\r\n"),
            [update("volume.1", json!(1)), done()]
        );
    }

    #[test]
    fn error_codes_map_to_device_errors() {
        let cases = [
            ("E01", DeviceErrorKind::InvalidArgs, "invalid input number"),
            ("E10", DeviceErrorKind::Unsupported, "invalid command"),
            ("E11", DeviceErrorKind::InvalidArgs, "invalid preset"),
            (
                "E12",
                DeviceErrorKind::InvalidArgs,
                "invalid port or output",
            ),
            ("E13", DeviceErrorKind::InvalidArgs, "invalid parameter"),
            (
                "E14",
                DeviceErrorKind::Unsupported,
                "not valid for this configuration",
            ),
            ("E17", DeviceErrorKind::Failed, "signal type"),
            ("E22", DeviceErrorKind::Busy, "busy"),
            ("E24", DeviceErrorKind::Failed, "privilege violation"),
            ("E25", DeviceErrorKind::Failed, "device not present"),
            (
                "E26",
                DeviceErrorKind::Failed,
                "maximum number of connections",
            ),
            ("E99", DeviceErrorKind::Failed, "unknown error"),
        ];
        for (code, kind, meaning) in cases {
            let mut s = matrix();
            start(&mut s, command("route", json!({"input": 9, "output": 1})));
            let (got_kind, message) = failed_with(&feed(&mut s, format!("{code}\r\n").as_bytes()));
            assert_eq!(got_kind, kind, "{code}");
            assert!(message.contains(code), "{code}: {message}");
            assert!(message.contains(meaning), "{code}: {message}");
            assert!(message.contains("`9*1!`"), "{code}: {message}");
            // The unit said no, the stream is in step: the session goes on.
            assert_eq!(start(&mut s, poll("info")), [tx(b"N")]);
        }
    }

    #[test]
    fn routes_reads_each_output_video_then_audio() {
        let mut s = ready(json!({"outputs": 2}));
        assert_eq!(start(&mut s, poll("routes")), [tx(b"1%")]);
        // The poll pauses after each read, so a waiting command can go first.
        assert_eq!(
            feed(&mut s, b"3\r\n"),
            [update("route.1", json!(3)), Output::Paused]
        );
        let mute = command("mute", json!({"output": 2, "audio": true}));
        assert_eq!(start(&mut s, mute), [tx(b"2*1Z")]);
        assert_eq!(
            feed(&mut s, b"Amt02*1\r\n"),
            [update("audio_mute.2", json!(true)), done()]
        );
        s.resume(Instant::now());
        assert_eq!(drain(&mut s), [tx(b"1$")]);
        assert_eq!(
            feed_resuming(&mut s, b"4\r\n"),
            [update("audio_route.1", json!(4)), tx(b"2%")]
        );
        // Tagged answers (verbose mode 3 on some families) are read too.
        assert_eq!(
            feed_resuming(&mut s, b"Out02 In00 Vid\r\n"),
            [update("route.2", json!(0)), tx(b"2$")]
        );
        assert_eq!(
            feed_resuming(&mut s, b"Out02 In01 Aud\r\n"),
            [update("audio_route.2", json!(1)), done()]
        );
    }

    #[test]
    fn volume_mute_and_info_polls() {
        let mut s = ready(json!({"outputs": 2}));
        assert_eq!(start(&mut s, poll("volume")), [tx(b"1V")]);
        assert_eq!(
            feed_resuming(&mut s, b"30\r\n"),
            [update("volume.1", json!(30)), tx(b"2V")]
        );
        assert_eq!(
            feed_resuming(&mut s, b"Out2 Vol31\r\n"),
            [update("volume.2", json!(31)), done()]
        );
        assert_eq!(start(&mut s, poll("mute")), [tx(b"1Z")]);
        assert_eq!(
            feed_resuming(&mut s, b"1\r\n"),
            [update("audio_mute.1", json!(true)), tx(b"1B")]
        );
        assert_eq!(
            feed_resuming(&mut s, b"0\r\n"),
            [update("video_mute.1", json!(false)), tx(b"2Z")]
        );
        assert_eq!(
            feed_resuming(&mut s, b"Amt02*0\r\n"),
            [update("audio_mute.2", json!(false)), tx(b"2B")]
        );
        assert_eq!(
            feed_resuming(&mut s, b"Vmt02*1\r\n"),
            [update("video_mute.2", json!(true)), done()]
        );
        assert_eq!(start(&mut s, poll("info")), [tx(b"N")]);
        assert_eq!(
            feed_resuming(&mut s, b"60-1071-01\r\n"),
            [update("part_number", json!("60-1071-01")), tx(b"Q")]
        );
        assert_eq!(
            feed_resuming(&mut s, b"1.05\r\n"),
            [update("firmware", json!("1.05")), done()]
        );

        let mut s = ready(json!({}));
        assert_eq!(start(&mut s, poll("volume")), [tx(b"V")]);
        assert_eq!(
            feed_resuming(&mut s, b"Vol082\r\n"),
            [update("volume", json!(82)), done()]
        );
    }

    #[test]
    fn lines_split_across_chunks() {
        let mut s = matrix();
        start(&mut s, command("route", json!({"input": 1, "output": 2})));
        assert_eq!(feed_resuming(&mut s, b"Out"), []);
        assert_eq!(feed_resuming(&mut s, b"2 In1 A"), []);
        assert_eq!(
            feed_resuming(&mut s, b"ll\r"),
            [
                update("route.2", json!(1)),
                update("audio_route.2", json!(1)),
                done()
            ]
        );
        assert_eq!(feed_resuming(&mut s, b"\n"), []);
    }

    #[test]
    fn overlong_line_is_fatal() {
        let mut s = matrix();
        start(&mut s, poll("info"));
        let error = fatal(&feed_resuming(&mut s, &[b'x'; frame::MAX_LINE + 1]));
        assert!(
            matches!(&error, SessionError::Protocol(m) if m.contains("longer than 256")),
            "{error}"
        );
    }

    #[test]
    fn abandon_forgets_the_request() {
        let mut s = matrix();
        start(&mut s, poll("routes"));
        s.abandon();
        assert_eq!(start(&mut s, poll("info")), [tx(b"N")]);
    }

    #[test]
    fn arguments_are_checked_without_touching_the_wire() {
        let bad = [
            command("route", json!({"output": 1})),
            command("route", json!({"input": 1})),
            command("route", json!({"input": 13, "output": 1})),
            command("route", json!({"input": -1, "output": 1})),
            command("route", json!({"input": 1, "output": 5})),
            command("route", json!({"input": 1, "output": 0})),
            command("route", json!({"input": 1, "output": 1, "kind": "rgb"})),
            command("route", json!({"input": "1", "output": 1})),
            command("volume", json!({"output": 1})),
            command("volume", json!({"level": 101, "output": 1})),
            command("volume", json!({"level": -1, "output": 1})),
            command("volume", json!({"level": 1.5, "output": 1})),
            command("volume", json!({"level": 10})),
            command("mute", json!({"output": 1})),
            command("mute", json!({"audio": 1, "output": 1})),
            command("mute", json!({"audio": true})),
        ];
        for request in bad {
            let mut s = matrix();
            let err = s.start(Instant::now(), &request).unwrap_err();
            assert_eq!(err.kind, DeviceErrorKind::InvalidArgs, "{request:?}");
            assert_eq!(drain(&mut s), [], "{request:?}");
        }
        let mut s = ready(json!({"volume_max": 64}));
        let err = s
            .start(Instant::now(), &command("volume", json!({"level": 65})))
            .unwrap_err();
        assert!(
            err.message.contains("out of range 0..=64"),
            "{}",
            err.message
        );
    }

    #[test]
    fn unknown_commands_and_queries_are_unsupported() {
        let mut s = matrix();
        let err = s
            .start(Instant::now(), &command("power", json!({})))
            .unwrap_err();
        assert_eq!(err.kind, DeviceErrorKind::Unsupported);
        assert!(
            err.message.contains("mute, route, volume"),
            "{}",
            err.message
        );
        let err = s.start(Instant::now(), &poll("lamp")).unwrap_err();
        assert_eq!(err.kind, DeviceErrorKind::Unsupported);
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
            "`foo`: unknown field `foo`, expected one of `inputs`, `outputs`, `volume_max`"
        );
        assert!(check(json!({"outputs": 0})).contains("`outputs` must be an integer from 1"));
        assert!(check(json!({"inputs": "8"})).contains("invalid type: string"));
        assert!(check(json!({"volume_max": -3})).contains("invalid value: integer `-3`"));
        assert!((DRIVER.build)(&DriverSettings::default()).is_ok());
    }

    /// Every point the session emits fits a declared name or pattern.
    #[test]
    fn emitted_points_are_declared() {
        let mut outputs = Vec::new();
        let mut s = ready(json!({"outputs": 2}));
        outputs.extend(feed(
            &mut s,
            b"Out1 In2 All\r\nIn1 Aud\r\nOut2 Vol3\r\nAmt1*1\r\nVmt2*1\r\n",
        ));
        start(&mut s, poll("info"));
        outputs.extend(feed_resuming(&mut s, b"60-1071-01\r\n"));
        outputs.extend(feed(&mut s, b"1.05\r\n"));
        let mut s = ready(json!({}));
        outputs.extend(feed(&mut s, b"Vol3\r\nAmt1\r\nVmt1\r\n"));
        let declared = |point: &str| {
            super::super::CATALOG
                .point_names()
                .iter()
                .any(|p| match p.strip_suffix('*') {
                    Some(prefix) => point
                        .strip_prefix(prefix)
                        .is_some_and(|n| n.parse::<u16>().is_ok()),
                    None => p == &point,
                })
        };
        let mut seen: Vec<&str> = Vec::new();
        for output in &outputs {
            if let Output::Update { point, .. } = output {
                assert!(declared(point), "{point} is not declared");
                let pattern = super::super::CATALOG
                    .point_names()
                    .into_iter()
                    .find(|p| {
                        p.strip_suffix('*')
                            .map_or(*p == point.as_str(), |prefix| point.starts_with(prefix))
                    })
                    .unwrap();
                seen.push(pattern);
            }
        }
        seen.sort();
        seen.dedup();
        let mut all = super::super::CATALOG.point_names().to_vec();
        all.sort();
        assert_eq!(seen, all);
    }
}
