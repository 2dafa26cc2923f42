//! Extron SIS wire format, shared by the client session and the switcher model.
//!
//! Everything here is a pure function over bytes or strings, so both directions can be
//! tested with the vectors from Extron's manuals (PROTOCOLS.md §3.2).
//!
//! Commands are ASCII. Simple commands have no terminator: the unit acts on their final
//! character (`1*2!` ties input 1 to output 2). Esc commands (`\x1b3CV\r`, verbose mode)
//! end with a CR. Responses are lines ending CR LF, except the `Password:` prompt, which
//! has no line end at all. Number widths in responses vary by model (`Out2`, `Out02`,
//! `Out003`), so numbers are parsed, never compared as text.

use std::fmt;

use crate::kit::telnet::Telnet;
use crate::kit::{self, Delimited, Framer};

/// Longest response line accepted, line end excluded. Extron lines are short (a copyright
/// banner is about 80 characters); a longer run without a line end means the stream is
/// out of step or not SIS at all.
pub const MAX_LINE: usize = 256;

/// Longest command the switcher model accepts (a password line included).
pub const MAX_COMMAND: usize = 128;

/// The prompt a password-protected unit sends after its banner, without a line end.
pub const PASSWORD_PROMPT: &str = "Password:";

const ESC: u8 = 0x1b;

/// Why bytes could not be read as SIS. Messages quote the offending bytes, escaped.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum FrameError {
    /// More than the allowed number of command bytes arrived without an end.
    #[error("line longer than {max} bytes without a line end: `{start}`")]
    TooLong { max: usize, start: String },
    /// A response line ran past [`MAX_LINE`]; the bytes so far were dropped.
    #[error("line longer than {max} bytes without a line end ({dropped} bytes dropped)")]
    ResponseTooLong { max: usize, dropped: usize },
}

/// Renders wire bytes for a message: printable ASCII as is, everything else escaped.
pub fn escape(bytes: &[u8]) -> String {
    bytes.escape_ascii().to_string()
}

/// Which signals a tie carries, by the command's final character.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum TieKind {
    /// `!`, reported as `All`: audio and video.
    All,
    /// `%`, reported as `Vid`: video only.
    Video,
    /// `&`, reported as `RGB`: RGB (video without sync-separate audio) on older units.
    Rgb,
    /// `$`, reported as `Aud`: audio only.
    Audio,
}

impl TieKind {
    pub fn symbol(self) -> char {
        match self {
            TieKind::All => '!',
            TieKind::Video => '%',
            TieKind::Rgb => '&',
            TieKind::Audio => '$',
        }
    }

    pub fn from_symbol(symbol: u8) -> Option<TieKind> {
        match symbol {
            b'!' => Some(TieKind::All),
            b'%' => Some(TieKind::Video),
            b'&' => Some(TieKind::Rgb),
            b'$' => Some(TieKind::Audio),
            _ => None,
        }
    }

    /// The word a tie response ends with.
    pub fn tag(self) -> &'static str {
        match self {
            TieKind::All => "All",
            TieKind::Video => "Vid",
            TieKind::Rgb => "RGB",
            TieKind::Audio => "Aud",
        }
    }

    pub fn from_tag(tag: &str) -> Option<TieKind> {
        [TieKind::All, TieKind::Video, TieKind::Rgb, TieKind::Audio]
            .into_iter()
            .find(|k| tag.eq_ignore_ascii_case(k.tag()))
    }

    /// Whether a tie of this kind changes the video tie.
    pub fn has_video(self) -> bool {
        self != TieKind::Audio
    }

    /// Whether a tie of this kind changes the audio tie.
    pub fn has_audio(self) -> bool {
        matches!(self, TieKind::All | TieKind::Audio)
    }
}

/// One SIS command. `output: None` means the single-output product form (`82V`, `1Z`)
/// or, for a tie, "to every output" (`5*!`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Command {
    /// `X*Y!` (or `%`, `&`, `$`); `X*!` ties to every output. Input 0 removes the tie.
    Tie {
        input: u16,
        output: Option<u16>,
        kind: TieKind,
    },
    /// `Y!` / `Y%` / `Y$`: which input is tied to output Y.
    ReadTie { output: u16, kind: TieKind },
    /// `Y*vvV` (matrix) or `vvV` (single output).
    SetVolume { output: Option<u16>, level: u16 },
    /// `YV` (matrix) or `V` (single output).
    ReadVolume { output: Option<u16> },
    /// `Y*1Z` / `Y*0Z` (matrix) or `1Z` / `0Z` (single output).
    SetAudioMute { output: Option<u16>, on: bool },
    /// `YZ` (matrix) or `Z`.
    ReadAudioMute { output: Option<u16> },
    /// `Y*1B` / `Y*0B` (matrix) or `1B` / `0B`.
    SetVideoMute { output: Option<u16>, on: bool },
    /// `YB` (matrix) or `B`.
    ReadVideoMute { output: Option<u16> },
    /// `Q`: firmware version.
    Firmware,
    /// `N`: part number.
    PartNumber,
    /// `Esc n CV CR`: verbose mode (3 = verbose + tagged).
    Verbose(u8),
    /// `Esc CV CR`: which verbose mode is on, answered with its digit.
    ReadVerbose,
    /// `I`: the information request (`V8X4 A8X4` on a matrix).
    Information,
    /// `n.`: recall global preset n.
    RecallPreset(u16),
    /// `n,`: save the current ties as global preset n.
    SavePreset(u16),
    /// `nX`: front-panel lock mode (0 off, 1 complete lock, 2 basic lock).
    Lock(u8),
    /// `X`: which front-panel lock mode is on.
    ReadLock,
}

impl Command {
    /// The bytes on the wire.
    pub fn encode(&self) -> Vec<u8> {
        let prefix = |output: Option<u16>| output.map(|o| format!("{o}*")).unwrap_or_default();
        let read = |output: Option<u16>| output.map(|o| o.to_string()).unwrap_or_default();
        let text = match *self {
            Command::Tie {
                input,
                output,
                kind,
            } => format!(
                "{input}*{}{}",
                output.map(|o| o.to_string()).unwrap_or_default(),
                kind.symbol()
            ),
            Command::ReadTie { output, kind } => format!("{output}{}", kind.symbol()),
            Command::SetVolume { output, level } => format!("{}{level}V", prefix(output)),
            Command::ReadVolume { output } => format!("{}V", read(output)),
            Command::SetAudioMute { output, on } => format!("{}{}Z", prefix(output), u8::from(on)),
            Command::ReadAudioMute { output } => format!("{}Z", read(output)),
            Command::SetVideoMute { output, on } => format!("{}{}B", prefix(output), u8::from(on)),
            Command::ReadVideoMute { output } => format!("{}B", read(output)),
            Command::Firmware => "Q".into(),
            Command::PartNumber => "N".into(),
            Command::Verbose(mode) => return format!("\x1b{mode}CV\r").into_bytes(),
            Command::ReadVerbose => return b"\x1bCV\r".to_vec(),
            Command::Information => "I".into(),
            Command::RecallPreset(n) => format!("{n}."),
            Command::SavePreset(n) => format!("{n},"),
            Command::Lock(mode) => format!("{mode}X"),
            Command::ReadLock => "X".into(),
        };
        text.into_bytes()
    }

    /// Reads one command as cut by [`CommandReader`], as a unit does. `single_output`
    /// picks the meaning of `nV` / `nZ` / `nB`: a set on a single-output product, a read
    /// of output n on a matrix. `None` for anything the model does not know (E10).
    pub fn parse(command: &[u8], single_output: bool) -> Option<Command> {
        let upper = command.to_ascii_uppercase();
        if let Some(body) = upper
            .strip_prefix(&[ESC][..])
            .or_else(|| upper.strip_prefix(b"W"))
        {
            return match body {
                [mode @ b'0'..=b'9', b'C', b'V'] => Some(Command::Verbose(mode - b'0')),
                [b'C', b'V'] => Some(Command::ReadVerbose),
                _ => None,
            };
        }
        let (&last, prefix) = upper.split_last()?;
        let (first, second) = match prefix.iter().position(|&b| b == b'*') {
            Some(star) => (&prefix[..star], Some(&prefix[star + 1..])),
            None => (prefix, None),
        };
        let number = |digits: &[u8]| parse_number(digits);
        if let Some(kind) = TieKind::from_symbol(last) {
            return match second {
                Some([]) => Some(Command::Tie {
                    input: number(first)?,
                    output: None,
                    kind,
                }),
                Some(output) => Some(Command::Tie {
                    input: number(first)?,
                    output: Some(number(output)?),
                    kind,
                }),
                None => Some(Command::ReadTie {
                    output: number(first)?,
                    kind,
                }),
            };
        }
        let flag = |digits: &[u8]| match digits {
            b"0" => Some(false),
            b"1" => Some(true),
            _ => None,
        };
        match (last, second, first.is_empty()) {
            (b'V', Some(level), _) => Some(Command::SetVolume {
                output: Some(number(first)?),
                level: number(level)?,
            }),
            (b'V', None, true) => Some(Command::ReadVolume { output: None }),
            (b'V', None, false) if single_output => Some(Command::SetVolume {
                output: None,
                level: number(first)?,
            }),
            (b'V', None, false) => Some(Command::ReadVolume {
                output: Some(number(first)?),
            }),
            (b'Z', Some(on), _) => Some(Command::SetAudioMute {
                output: Some(number(first)?),
                on: flag(on)?,
            }),
            (b'Z', None, true) => Some(Command::ReadAudioMute { output: None }),
            (b'Z', None, false) if single_output => Some(Command::SetAudioMute {
                output: None,
                on: flag(first)?,
            }),
            (b'Z', None, false) => Some(Command::ReadAudioMute {
                output: Some(number(first)?),
            }),
            (b'B', Some(on), _) => Some(Command::SetVideoMute {
                output: Some(number(first)?),
                on: flag(on)?,
            }),
            (b'B', None, true) => Some(Command::ReadVideoMute { output: None }),
            (b'B', None, false) if single_output => Some(Command::SetVideoMute {
                output: None,
                on: flag(first)?,
            }),
            (b'B', None, false) => Some(Command::ReadVideoMute {
                output: Some(number(first)?),
            }),
            (b'Q', None, true) => Some(Command::Firmware),
            (b'N', None, true) => Some(Command::PartNumber),
            (b'I', None, true) => Some(Command::Information),
            (b'.', None, false) => Some(Command::RecallPreset(number(first)?)),
            (b',', None, false) => Some(Command::SavePreset(number(first)?)),
            (b'X', None, true) => Some(Command::ReadLock),
            (b'X', None, false) => match first {
                [mode @ b'0'..=b'2'] => Some(Command::Lock(mode - b'0')),
                _ => None,
            },
            _ => None,
        }
    }
}

impl fmt::Display for Command {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&escape(&self.encode()))
    }
}

/// An `Exx` error code.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ErrorCode(pub u8);

impl ErrorCode {
    /// What the code means, per Extron's error tables (E17 varies between families).
    pub fn meaning(self) -> &'static str {
        match self.0 {
            1 => "invalid input number",
            10 => "invalid command",
            11 => "invalid preset number",
            12 => "invalid port or output number",
            13 => "invalid parameter or value out of range",
            14 => "not valid for this configuration",
            17 => "invalid command for this signal type, or system timed out",
            22 => "busy",
            23 => "checksum error",
            24 => "privilege violation (needs the administrator password)",
            25 => "device not present",
            26 => "maximum number of connections exceeded",
            27 => "invalid event number",
            28 => "bad file name or file not found",
            30 => "hardware failure",
            31 => "port pass-through misuse",
            _ => "unknown error",
        }
    }
}

impl fmt::Display for ErrorCode {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "E{:02}", self.0)
    }
}

/// Who a `Login ...` line says we are.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Role {
    Administrator,
    User,
}

/// One response line, read. `output: None` is the single-output product form.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Response {
    /// `Out2 In1 All` (`Vid`, `RGB`, `Aud`): a tie, answered or from the front panel.
    Tie {
        output: u16,
        input: u16,
        kind: TieKind,
    },
    /// `In5 All`: input tied to every output.
    TieAll { input: u16, kind: TieKind },
    /// `Out1 Vol50` / `Vol082`.
    Volume { output: Option<u16>, level: i32 },
    /// `Amt01*1` / `Amt1`. Any non-zero value is muted.
    AudioMute { output: Option<u16>, on: bool },
    /// `Vmt01*1` / `Vmt1`. Any non-zero value (some units mute sync with 2) is muted.
    VideoMute { output: Option<u16>, on: bool },
    /// `Vrb3`: verbose mode confirmation.
    Verbose(u8),
    /// `E13`; `detail` holds what follows a colon in device-initiated faults (`E30:2`),
    /// which are never the answer to a command.
    Error {
        code: ErrorCode,
        detail: Option<String>,
    },
    /// `Login Administrator` / `Login User`.
    Login(Role),
    /// `Qik`: a quick multi-tie happened.
    Quick,
    /// `Reconfig`: the unit's inputs or configuration changed.
    Reconfig,
    /// `(c) Copyright 2024, Extron Electronics, <model>, Vx.xx, <part>`.
    Banner(String),
    /// Anything else: bare query answers (`3`, `1.23`, `60-1081-01`), date lines, and
    /// notifications this driver does not read.
    Other(String),
}

impl Response {
    /// Reads one line (no line end).
    pub fn parse(line: &str) -> Response {
        let text = line.trim();
        Response::parse_tagged(text).unwrap_or_else(|| {
            if starts_with(text, "(c)") || contains_ignore_case(text, "copyright") {
                Response::Banner(text.to_string())
            } else {
                Response::Other(text.to_string())
            }
        })
    }

    fn parse_tagged(text: &str) -> Option<Response> {
        let words: Vec<&str> = text.split_whitespace().collect();
        match words.as_slice() {
            [out, input, kind] => {
                let output = number_after(out, "Out")?;
                let input = number_after(input, "In")?;
                let kind = TieKind::from_tag(kind)?;
                Some(Response::Tie {
                    output,
                    input,
                    kind,
                })
            }
            [input, kind] if starts_with(input, "In") => Some(Response::TieAll {
                input: number_after(input, "In")?,
                kind: TieKind::from_tag(kind)?,
            }),
            [out, vol] if starts_with(out, "Out") => Some(Response::Volume {
                output: Some(number_after(out, "Out")?),
                level: signed_after(vol, "Vol")?,
            }),
            [login, role] if login.eq_ignore_ascii_case("Login") => {
                if role.eq_ignore_ascii_case("Administrator") {
                    Some(Response::Login(Role::Administrator))
                } else if role.eq_ignore_ascii_case("User") {
                    Some(Response::Login(Role::User))
                } else {
                    None
                }
            }
            [word] => Response::parse_word(word),
            _ => None,
        }
    }

    fn parse_word(word: &str) -> Option<Response> {
        if word.eq_ignore_ascii_case("Qik") {
            return Some(Response::Quick);
        }
        if word.eq_ignore_ascii_case("Reconfig") {
            return Some(Response::Reconfig);
        }
        if let Some(level) = signed_after(word, "Vol") {
            return Some(Response::Volume {
                output: None,
                level,
            });
        }
        if let Some((output, on)) = mute_after(word, "Amt") {
            return Some(Response::AudioMute { output, on });
        }
        if let Some((output, on)) = mute_after(word, "Vmt") {
            return Some(Response::VideoMute { output, on });
        }
        if let Some(mode) = number_after(word, "Vrb") {
            return Some(Response::Verbose(u8::try_from(mode).ok()?));
        }
        let rest = word.strip_prefix('E')?;
        let (digits, detail) = match rest.split_once(':') {
            Some((digits, detail)) => (digits, Some(detail.to_string())),
            None => (rest, None),
        };
        if digits.len() != 2 {
            return None;
        }
        let code = u8::try_from(parse_number(digits.as_bytes())?).ok()?;
        Some(Response::Error {
            code: ErrorCode(code),
            detail,
        })
    }

    /// The line as a unit sends it, CR LF included. Numbers are zero-padded to two digits
    /// as CrossPoint-style units do, so clients must parse them.
    pub fn encode(&self) -> Vec<u8> {
        format!("{self}\r\n").into_bytes()
    }
}

impl fmt::Display for Response {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Response::Tie {
                output,
                input,
                kind,
            } => write!(f, "Out{output:02} In{input:02} {}", kind.tag()),
            Response::TieAll { input, kind } => write!(f, "In{input:02} {}", kind.tag()),
            Response::Volume {
                output: Some(o),
                level,
            } => write!(f, "Out{o:02} Vol{level}"),
            Response::Volume {
                output: None,
                level,
            } => write!(f, "Vol{level}"),
            Response::AudioMute {
                output: Some(o),
                on,
            } => write!(f, "Amt{o:02}*{}", u8::from(*on)),
            Response::AudioMute { output: None, on } => write!(f, "Amt{}", u8::from(*on)),
            Response::VideoMute {
                output: Some(o),
                on,
            } => write!(f, "Vmt{o:02}*{}", u8::from(*on)),
            Response::VideoMute { output: None, on } => write!(f, "Vmt{}", u8::from(*on)),
            Response::Verbose(mode) => write!(f, "Vrb{mode}"),
            Response::Error { code, detail: None } => write!(f, "{code}"),
            Response::Error {
                code,
                detail: Some(d),
            } => write!(f, "{code}:{d}"),
            Response::Login(Role::Administrator) => f.write_str("Login Administrator"),
            Response::Login(Role::User) => f.write_str("Login User"),
            Response::Quick => f.write_str("Qik"),
            Response::Reconfig => f.write_str("Reconfig"),
            Response::Banner(text) | Response::Other(text) => f.write_str(text),
        }
    }
}

fn starts_with(text: &str, prefix: &str) -> bool {
    text.get(..prefix.len())
        .is_some_and(|head| head.eq_ignore_ascii_case(prefix))
}

fn contains_ignore_case(text: &str, needle: &str) -> bool {
    text.to_ascii_lowercase().contains(needle)
}

/// `Out02` → 2 for prefix `Out`.
fn number_after(word: &str, prefix: &str) -> Option<u16> {
    if !starts_with(word, prefix) {
        return None;
    }
    parse_number(&word.as_bytes()[prefix.len()..])
}

/// `Vol-12` → -12 for prefix `Vol` (some DSP-style units report attenuation below 0).
fn signed_after(word: &str, prefix: &str) -> Option<i32> {
    if !starts_with(word, prefix) {
        return None;
    }
    let rest = &word[prefix.len()..];
    match rest.strip_prefix('-') {
        Some(digits) => parse_number(digits.as_bytes()).map(|n| -i32::from(n)),
        None => parse_number(rest.as_bytes()).map(i32::from),
    }
}

/// `Amt01*1` → (Some(1), true), `Amt0` → (None, false).
fn mute_after(word: &str, prefix: &str) -> Option<(Option<u16>, bool)> {
    if !starts_with(word, prefix) {
        return None;
    }
    let rest = &word[prefix.len()..];
    let (output, value) = match rest.split_once('*') {
        Some((output, value)) => (Some(parse_number(output.as_bytes())?), value),
        None => (None, rest),
    };
    Some((output, parse_number(value.as_bytes())? != 0))
}

/// A decimal number of 1 to 5 digits (no sign).
pub fn parse_number(digits: &[u8]) -> Option<u16> {
    if digits.is_empty() || digits.len() > 5 || !digits.iter().all(u8::is_ascii_digit) {
        return None;
    }
    std::str::from_utf8(digits).ok()?.parse().ok()
}

/// What [`LineReader`] cut from the stream.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Item {
    /// A complete line, line end removed (never empty).
    Line(String),
    /// `Password:`, which comes without a line end.
    PasswordPrompt,
}

/// Cuts a response stream into lines. A line ends at CR, LF or CR LF (empty lines are
/// skipped); the `Password:` prompt is recognised without a line end; runaway lines are
/// refused. Telnet negotiation is dropped unanswered: Extron units send plain text on
/// port 23, but a serial device server may negotiate.
#[derive(Debug)]
pub struct LineReader {
    telnet: Telnet,
    lines: Framer,
}

impl Default for LineReader {
    fn default() -> Self {
        LineReader::new()
    }
}

impl LineReader {
    pub fn new() -> LineReader {
        LineReader {
            telnet: Telnet::default(),
            lines: Framer::Delimited(Delimited::any_of(b"\r\n", MAX_LINE).skip_leading(b"\r\n")),
        }
    }

    /// Adds bytes, dropping Telnet negotiation.
    pub fn push(&mut self, data: &[u8]) {
        let (text, _refusals) = self.telnet.filter(data);
        self.lines.push(&text);
    }

    /// The next line or prompt, `None` if more bytes are needed.
    pub fn next_item(&mut self) -> Result<Option<Item>, FrameError> {
        match self.lines.next_frame() {
            Some(Ok(line)) => Ok(Some(Item::Line(
                String::from_utf8_lossy(&line).into_owned(),
            ))),
            Some(Err(kit::FrameError::TooLong { dropped, .. })) => {
                Err(FrameError::ResponseTooLong {
                    max: MAX_LINE,
                    dropped,
                })
            }
            // A line framer reports nothing else.
            Some(Err(_)) => Ok(None),
            None if is_prompt(self.lines.pending()) => {
                self.lines.clear();
                Ok(Some(Item::PasswordPrompt))
            }
            None => Ok(None),
        }
    }

    /// Forgets buffered bytes (new connection, or the stream is out of step).
    pub fn clear(&mut self) {
        self.lines.clear();
        self.telnet = Telnet::default();
    }
}

fn is_prompt(buf: &[u8]) -> bool {
    buf.trim_ascii_end()
        .eq_ignore_ascii_case(PASSWORD_PROMPT.as_bytes())
}

/// Cuts a command stream as a unit does: a simple command ends with its first character
/// that is not a digit, `*`, `+` or `-`; an Esc or `W` command ends with CR (or LF).
/// Used by the switcher model; [`CommandReader::next_line`] reads a password line.
#[derive(Debug, Default)]
pub struct CommandReader {
    buf: Vec<u8>,
}

impl CommandReader {
    pub fn new() -> CommandReader {
        CommandReader::default()
    }

    pub fn push(&mut self, data: &[u8]) {
        self.buf.extend_from_slice(data);
    }

    /// The next command (terminator kept for simple commands, CR dropped for Esc/W
    /// commands), `None` if more bytes are needed.
    pub fn next_command(&mut self) -> Result<Option<Vec<u8>>, FrameError> {
        let skip = self
            .buf
            .iter()
            .take_while(|b| matches!(b, b'\r' | b'\n' | b' ' | 0))
            .count();
        self.buf.drain(..skip);
        let Some(&first) = self.buf.first() else {
            return Ok(None);
        };
        let (end, keep) = if first == ESC || first.eq_ignore_ascii_case(&b'W') {
            // A byte no Esc or W command carries (another Esc, a control character,
            // non-ASCII) means line noise: the command so far is cut there and refused
            // (E10), so the commands after the noise are answered, not swallowed until a
            // line end.
            let noise = |(i, &b): (usize, &u8)| {
                i > 0 && (b == ESC || b >= 0x7F || (b < 0x20 && !matches!(b, b'\r' | b'\n')))
            };
            let cut = self.buf.iter().enumerate().find_map(|(i, b)| {
                if matches!(b, b'\r' | b'\n') {
                    Some((i, false))
                } else {
                    noise((i, b)).then_some((i, true))
                }
            });
            match cut {
                Some((end, false)) => (end, end),
                // A new Esc starts the next command; other noise is dropped.
                Some((end, true)) if self.buf[end] == ESC => {
                    let command = self.buf[..end].to_vec();
                    self.buf.drain(..end);
                    return Ok(Some(command));
                }
                Some((end, true)) => (end, end),
                None => return self.wait(),
            }
        } else {
            match self
                .buf
                .iter()
                .position(|&b| !(b.is_ascii_digit() || matches!(b, b'*' | b'+' | b'-')))
            {
                Some(end) => (end, end + 1),
                None => return self.wait(),
            }
        };
        if end >= MAX_COMMAND {
            return Err(self.too_long());
        }
        let command = self.buf[..keep].to_vec();
        self.buf.drain(..=end);
        Ok(Some(command))
    }

    /// The next line up to CR or LF (a password), `None` if more bytes are needed.
    pub fn next_line(&mut self) -> Result<Option<Vec<u8>>, FrameError> {
        match self.buf.iter().position(|&b| b == b'\r' || b == b'\n') {
            Some(end) if end < MAX_COMMAND => {
                let line = self.buf[..end].to_vec();
                self.buf.drain(..=end);
                if self.buf.first() == Some(&b'\n') {
                    self.buf.remove(0);
                }
                Ok(Some(line))
            }
            None if self.buf.len() < MAX_COMMAND => Ok(None),
            _ => Err(self.too_long()),
        }
    }

    fn wait(&self) -> Result<Option<Vec<u8>>, FrameError> {
        if self.buf.len() >= MAX_COMMAND {
            Err(self.too_long())
        } else {
            Ok(None)
        }
    }

    fn too_long(&self) -> FrameError {
        FrameError::TooLong {
            max: MAX_COMMAND,
            start: escape(&self.buf[..self.buf.len().min(40)]),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn tie(input: u16, output: u16, kind: TieKind) -> Command {
        Command::Tie {
            input,
            output: Some(output),
            kind,
        }
    }

    #[test]
    fn commands_encode_as_the_manuals_show() {
        let cases: &[(Command, &[u8])] = &[
            (tie(1, 2, TieKind::All), b"1*2!"),
            (tie(1, 3, TieKind::All), b"1*3!"),
            (tie(10, 4, TieKind::Rgb), b"10*4&"),
            (tie(7, 5, TieKind::Video), b"7*5%"),
            (tie(12, 4, TieKind::Audio), b"12*4$"),
            (
                Command::Tie {
                    input: 5,
                    output: None,
                    kind: TieKind::All,
                },
                b"5*!",
            ),
            (
                Command::ReadTie {
                    output: 3,
                    kind: TieKind::Video,
                },
                b"3%",
            ),
            (
                Command::SetVolume {
                    output: Some(1),
                    level: 50,
                },
                b"1*50V",
            ),
            (
                Command::SetVolume {
                    output: None,
                    level: 82,
                },
                b"82V",
            ),
            (Command::ReadVolume { output: Some(2) }, b"2V"),
            (Command::ReadVolume { output: None }, b"V"),
            (
                Command::SetAudioMute {
                    output: Some(1),
                    on: true,
                },
                b"1*1Z",
            ),
            (
                Command::SetAudioMute {
                    output: None,
                    on: false,
                },
                b"0Z",
            ),
            (Command::ReadAudioMute { output: None }, b"Z"),
            (
                Command::SetVideoMute {
                    output: Some(4),
                    on: true,
                },
                b"4*1B",
            ),
            (
                Command::SetVideoMute {
                    output: None,
                    on: true,
                },
                b"1B",
            ),
            (Command::ReadVideoMute { output: Some(4) }, b"4B"),
            (Command::Firmware, b"Q"),
            (Command::PartNumber, b"N"),
            (Command::Verbose(3), b"\x1b3CV\r"),
        ];
        for (command, bytes) in cases {
            assert_eq!(command.encode(), *bytes, "{command:?}");
            // The model reads back what the client wrote (matrix and single forms).
            let single = matches!(
                command,
                Command::SetVolume { output: None, .. }
                    | Command::SetAudioMute { output: None, .. }
                    | Command::SetVideoMute { output: None, .. }
            );
            let stripped = bytes.strip_suffix(b"\r").unwrap_or(bytes);
            assert_eq!(
                Command::parse(stripped, single),
                Some(*command),
                "{}",
                escape(bytes)
            );
        }
    }

    #[test]
    fn ambiguous_commands_depend_on_the_product() {
        assert_eq!(
            Command::parse(b"2V", false),
            Some(Command::ReadVolume { output: Some(2) })
        );
        assert_eq!(
            Command::parse(b"2V", true),
            Some(Command::SetVolume {
                output: None,
                level: 2
            })
        );
        assert_eq!(
            Command::parse(b"1Z", false),
            Some(Command::ReadAudioMute { output: Some(1) })
        );
        assert_eq!(
            Command::parse(b"w3cv", true),
            Some(Command::Verbose(3)),
            "Extron's own modules send lowercase w3cv"
        );
        for bad in [
            &b"ZZZ!"[..],
            b"1*2*3!",
            b"1*2Z",
            b"+V",
            b"*!",
            b"9X",
            b"\x1b3XX",
            b"",
        ] {
            assert_eq!(Command::parse(bad, false), None, "{}", escape(bad));
        }
    }

    #[test]
    fn responses_parse() {
        use Response as R;
        let cases = [
            (
                "Out2 In1 All",
                R::Tie {
                    output: 2,
                    input: 1,
                    kind: TieKind::All,
                },
            ),
            (
                "Out03 In01 All",
                R::Tie {
                    output: 3,
                    input: 1,
                    kind: TieKind::All,
                },
            ),
            (
                "Out04 In10 RGB",
                R::Tie {
                    output: 4,
                    input: 10,
                    kind: TieKind::Rgb,
                },
            ),
            (
                "Out05 In07 Vid",
                R::Tie {
                    output: 5,
                    input: 7,
                    kind: TieKind::Video,
                },
            ),
            (
                "Out004 In012 Aud",
                R::Tie {
                    output: 4,
                    input: 12,
                    kind: TieKind::Audio,
                },
            ),
            (
                "In05 All",
                R::TieAll {
                    input: 5,
                    kind: TieKind::All,
                },
            ),
            (
                "Out01 Vol50",
                R::Volume {
                    output: Some(1),
                    level: 50,
                },
            ),
            (
                "Vol082",
                R::Volume {
                    output: None,
                    level: 82,
                },
            ),
            (
                "Vol-12",
                R::Volume {
                    output: None,
                    level: -12,
                },
            ),
            (
                "Amt01*1",
                R::AudioMute {
                    output: Some(1),
                    on: true,
                },
            ),
            (
                "Amt1",
                R::AudioMute {
                    output: None,
                    on: true,
                },
            ),
            (
                "Amt0",
                R::AudioMute {
                    output: None,
                    on: false,
                },
            ),
            (
                "Vmt3*2",
                R::VideoMute {
                    output: Some(3),
                    on: true,
                },
            ),
            ("Vrb3", R::Verbose(3)),
            (
                "E10",
                R::Error {
                    code: ErrorCode(10),
                    detail: None,
                },
            ),
            (
                "E01",
                R::Error {
                    code: ErrorCode(1),
                    detail: None,
                },
            ),
            (
                "E30:2",
                R::Error {
                    code: ErrorCode(30),
                    detail: Some("2".into()),
                },
            ),
            ("Login Administrator", R::Login(Role::Administrator)),
            ("Login User", R::Login(Role::User)),
            ("Qik", R::Quick),
            ("Reconfig", R::Reconfig),
            (
                "(c) Copyright 2024, Extron Electronics, DXP 88 HDMI, V1.05, 60-1071-01",
                R::Banner(
                    "(c) Copyright 2024, Extron Electronics, DXP 88 HDMI, V1.05, 60-1071-01".into(),
                ),
            ),
            (
                "Tue, 04 Jun 2024 10:21:07",
                R::Other("Tue, 04 Jun 2024 10:21:07".into()),
            ),
            ("3", R::Other("3".into())),
            ("60-1071-01", R::Other("60-1071-01".into())),
            ("E1", R::Other("E1".into())),
            ("Out2 InX All", R::Other("Out2 InX All".into())),
        ];
        for (line, expected) in cases {
            assert_eq!(Response::parse(line), expected, "{line}");
        }
    }

    #[test]
    fn responses_encode_with_padding_and_crlf() {
        let tie = Response::Tie {
            output: 2,
            input: 1,
            kind: TieKind::All,
        };
        assert_eq!(tie.encode(), b"Out02 In01 All\r\n");
        assert_eq!(Response::parse("Out02 In01 All"), tie);
        assert_eq!(Response::Verbose(3).encode(), b"Vrb3\r\n");
        assert_eq!(
            Response::Error {
                code: ErrorCode(13),
                detail: None
            }
            .encode(),
            b"E13\r\n"
        );
        assert_eq!(
            Response::AudioMute {
                output: Some(1),
                on: true
            }
            .encode(),
            b"Amt01*1\r\n"
        );
        assert_eq!(
            Response::Volume {
                output: None,
                level: 82
            }
            .encode(),
            b"Vol82\r\n"
        );
    }

    #[test]
    fn error_meanings() {
        assert_eq!(ErrorCode(1).meaning(), "invalid input number");
        assert_eq!(ErrorCode(22).meaning(), "busy");
        assert_eq!(ErrorCode(99).meaning(), "unknown error");
        assert_eq!(ErrorCode(1).to_string(), "E01");
    }

    fn items(reader: &mut LineReader) -> Vec<Item> {
        std::iter::from_fn(|| reader.next_item().unwrap()).collect()
    }

    fn line(text: &str) -> Item {
        Item::Line(text.into())
    }

    #[test]
    fn banner_then_password_prompt_without_line_end() {
        let mut reader = LineReader::new();
        reader.push(b"(c) Copyright 2024, Extron Electronics, DXP 88, V1.05, 60-1071-01\r\n");
        reader.push(b"Tue, 04 Jun 2024 10:21:07\r\n\r\nPass");
        assert_eq!(
            items(&mut reader),
            [
                line("(c) Copyright 2024, Extron Electronics, DXP 88, V1.05, 60-1071-01"),
                line("Tue, 04 Jun 2024 10:21:07"),
            ]
        );
        reader.push(b"word:");
        assert_eq!(items(&mut reader), [Item::PasswordPrompt]);
        reader.push(b"\r\nLogin Administrator\r\n");
        assert_eq!(items(&mut reader), [line("Login Administrator")]);
    }

    #[test]
    fn lines_split_across_chunks_and_any_line_end() {
        let mut reader = LineReader::new();
        reader.push(b"Out2 In");
        assert_eq!(items(&mut reader), []);
        reader.push(b"1 All\r");
        assert_eq!(items(&mut reader), [line("Out2 In1 All")]);
        reader.push(b"\nVol50\nAmt1\r\n");
        assert_eq!(items(&mut reader), [line("Vol50"), line("Amt1")]);
    }

    #[test]
    fn telnet_negotiation_is_stripped() {
        let mut reader = LineReader::new();
        reader.push(b"\xff\xfb\x01Vr");
        reader.push(b"b3\xff");
        reader.push(b"\xfd\x03\xff\xfa\x18\x01\xff\xf0\r\n");
        assert_eq!(items(&mut reader), [line("Vrb3")]);
    }

    #[test]
    fn overlong_lines_are_refused() {
        let mut reader = LineReader::new();
        reader.push(&[b'A'; MAX_LINE]);
        assert_eq!(reader.next_item(), Ok(None));
        reader.push(b"\r\n");
        assert_eq!(
            reader.next_item().unwrap(),
            Some(Item::Line("A".repeat(MAX_LINE)))
        );
        reader.push(&[b'A'; MAX_LINE + 1]);
        assert!(matches!(
            reader.next_item(),
            Err(FrameError::ResponseTooLong { max: MAX_LINE, .. })
        ));
    }

    #[test]
    fn command_reader_cuts_on_the_final_character() {
        let mut reader = CommandReader::new();
        reader.push(b"1*1!02*02&003*003%\x1b3CV\r1*5");
        let mut commands = Vec::new();
        while let Some(c) = reader.next_command().unwrap() {
            commands.push(c);
        }
        assert_eq!(
            commands,
            [
                b"1*1!".to_vec(),
                b"02*02&".to_vec(),
                b"003*003%".to_vec(),
                b"\x1b3CV".to_vec()
            ]
        );
        reader.push(b"0V\r\nw3cv\r\n");
        assert_eq!(reader.next_command().unwrap(), Some(b"1*50V".to_vec()));
        assert_eq!(reader.next_command().unwrap(), Some(b"w3cv".to_vec()));
        assert_eq!(reader.next_command().unwrap(), None);
        reader.push(&[b'1'; MAX_COMMAND]);
        assert!(reader.next_command().is_err());
    }

    #[test]
    fn command_reader_reads_a_password_line() {
        let mut reader = CommandReader::new();
        reader.push(b"extr");
        assert_eq!(reader.next_line().unwrap(), None);
        reader.push(b"on\r\n1*2!");
        assert_eq!(reader.next_line().unwrap(), Some(b"extron".to_vec()));
        assert_eq!(reader.next_command().unwrap(), Some(b"1*2!".to_vec()));
    }
}
