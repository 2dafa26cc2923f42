//! Samsung MDC wire format, shared by the client session and the display model.
//!
//! Pure functions over bytes, tested with the vectors of PROTOCOLS.md §3.3 (produced by
//! python-samsung-mdc's own encoder and seen on the wire against its CLI).
//!
//! Every frame, either way, is `AA | CMD | ID | LEN | DATA… | CHK`: a 0xAA header, the
//! command, the display id, the data length, the data, and a checksum that is the sum of
//! every byte after the header, modulo 256. A read ("GET") is the command with no data; a
//! write ("SET") carries the new value. Replies use command 0xFF and start their data with
//! `A` (ACK) or `N` (NAK) and the command they answer:
//!
//! ```text
//! AA 12 01 01 32 46           volume 50 for display 1
//! AA FF 01 03 41 12 32 88     ACK: volume is now 50
//! AA FF 01 03 4E 11 01 63     NAK to a power command, error code 1
//! ```
//!
//! The same frames travel over RS-232 (several displays daisy-chained, told apart by id)
//! and TCP 1515. Nothing in a frame marks where one ends except its length byte, so
//! [`FrameReader`] finds frames by the 0xAA header and steps over anything else.

use std::fmt;

/// First byte of every frame.
pub const HEADER: u8 = 0xAA;
/// Command byte of every reply.
pub const REPLY: u8 = 0xFF;
/// First data byte of a reply that accepts the command.
pub const ACK: u8 = b'A';
/// First data byte of a reply that refuses the command; one error-code byte follows the
/// command echo.
pub const NAK: u8 = b'N';
/// Display id every display acts on. None of them answers it.
pub const BROADCAST: u8 = 0xFE;

/// Fixed bytes around the data: header, command, id, length, checksum.
const OVERHEAD: usize = 5;

/// Renders bytes as the manuals and logs show them: `AA 11 01 00 12`.
pub fn hex(bytes: &[u8]) -> String {
    let mut text = String::with_capacity(bytes.len() * 3);
    for (i, byte) in bytes.iter().enumerate() {
        if i > 0 {
            text.push(' ');
        }
        text.push_str(&format!("{byte:02X}"));
    }
    text
}

/// Sum of `bytes` modulo 256: the checksum of a frame is this over everything after 0xAA.
pub fn checksum(bytes: &[u8]) -> u8 {
    bytes.iter().fold(0u8, |sum, b| sum.wrapping_add(*b))
}

/// One frame, either way, without header, length and checksum.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Frame {
    pub cmd: u8,
    pub id: u8,
    /// At most 255 bytes (the length is one byte); a sub-command is the first data byte.
    pub data: Vec<u8>,
}

impl Frame {
    pub fn new(cmd: u8, id: u8, data: impl Into<Vec<u8>>) -> Frame {
        Frame {
            cmd,
            id,
            data: data.into(),
        }
    }

    /// The bytes on the wire.
    ///
    /// # Panics
    ///
    /// If the data is longer than 255 bytes, which no MDC command has: a bug in the caller.
    pub fn encode(&self) -> Vec<u8> {
        let len = u8::try_from(self.data.len()).expect("MDC frame data is at most 255 bytes");
        let mut bytes = Vec::with_capacity(self.data.len() + OVERHEAD);
        bytes.extend_from_slice(&[HEADER, self.cmd, self.id, len]);
        bytes.extend_from_slice(&self.data);
        bytes.push(checksum(&bytes[1..]));
        bytes
    }
}

impl fmt::Display for Frame {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&hex(&self.encode()))
    }
}

/// The settings the driver reads and writes, by command code. Each is one data byte.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Setting {
    /// 0x11: 0 off, 1 on, 2 reboot.
    Power,
    /// 0x12: 0 to 100.
    Volume,
    /// 0x13: 0 off, 1 on (0xFF in a status reply: the model has no audio).
    Mute,
    /// 0x14: a source code, see [`SOURCES`].
    Input,
}

impl Setting {
    pub const ALL: [Setting; 4] = [
        Setting::Power,
        Setting::Volume,
        Setting::Mute,
        Setting::Input,
    ];

    pub fn code(self) -> u8 {
        match self {
            Setting::Power => 0x11,
            Setting::Volume => 0x12,
            Setting::Mute => 0x13,
            Setting::Input => 0x14,
        }
    }

    pub fn from_code(code: u8) -> Option<Setting> {
        Setting::ALL.into_iter().find(|s| s.code() == code)
    }

    pub fn name(self) -> &'static str {
        match self {
            Setting::Power => "power",
            Setting::Volume => "volume",
            Setting::Mute => "mute",
            Setting::Input => "input",
        }
    }
}

/// Command code of STATUS, which reads power, volume, mute, input and aspect at once.
pub const STATUS: u8 = 0x00;

/// A command the driver sends (and the model understands).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Command {
    /// 0x00 with no data; answered with a [`Status`].
    Status,
    /// A setting's command with no data; answered with its value.
    Get(Setting),
    /// A setting's command with the new value; answered with the value now in force.
    Set(Setting, u8),
}

impl Command {
    pub fn code(self) -> u8 {
        match self {
            Command::Status => STATUS,
            Command::Get(setting) | Command::Set(setting, _) => setting.code(),
        }
    }

    /// The frame for display `id`.
    pub fn frame(self, id: u8) -> Frame {
        let data = match self {
            Command::Status | Command::Get(_) => Vec::new(),
            Command::Set(_, value) => vec![value],
        };
        Frame::new(self.code(), id, data)
    }

    /// Reads a received command frame as a display does; `None` for a command this
    /// crate does not know or a data length that does not fit it.
    pub fn from_frame(frame: &Frame) -> Option<Command> {
        match (frame.cmd, frame.data.as_slice()) {
            (STATUS, []) => Some(Command::Status),
            (code, []) => Setting::from_code(code).map(Command::Get),
            (code, [value]) => Setting::from_code(code).map(|s| Command::Set(s, *value)),
            _ => None,
        }
    }
}

impl fmt::Display for Command {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Command::Status => f.write_str("status"),
            Command::Get(setting) => write!(f, "{} read", setting.name()),
            Command::Set(setting, value) => write!(f, "{} 0x{value:02x}", setting.name()),
        }
    }
}

/// A display's answer.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Reply {
    /// `A`: done; `data` is what the command reports (a sub-command echo first, if any).
    Ack { id: u8, cmd: u8, data: Vec<u8> },
    /// `N`: refused, with an error code. Samsung's meanings for the codes are not
    /// confirmed (PROTOCOLS.md §8), so they are only ever quoted.
    Nak { id: u8, cmd: u8, code: u8 },
}

impl Reply {
    pub fn id(&self) -> u8 {
        match self {
            Reply::Ack { id, .. } | Reply::Nak { id, .. } => *id,
        }
    }

    /// The command this reply answers.
    pub fn cmd(&self) -> u8 {
        match self {
            Reply::Ack { cmd, .. } | Reply::Nak { cmd, .. } => *cmd,
        }
    }

    pub fn frame(&self) -> Frame {
        match self {
            Reply::Ack { id, cmd, data } => {
                let mut bytes = vec![ACK, *cmd];
                bytes.extend_from_slice(data);
                Frame::new(REPLY, *id, bytes)
            }
            Reply::Nak { id, cmd, code } => Frame::new(REPLY, *id, [NAK, *cmd, *code]),
        }
    }

    pub fn encode(&self) -> Vec<u8> {
        self.frame().encode()
    }

    /// Reads a frame as a reply.
    pub fn from_frame(frame: &Frame) -> Result<Reply, FrameError> {
        let malformed = |why: &str| FrameError::Malformed {
            frame: frame.to_string(),
            why: why.to_string(),
        };
        if frame.cmd != REPLY {
            return Err(malformed("not a reply (command byte is not 0xFF)"));
        }
        match frame.data.as_slice() {
            [ACK, cmd, data @ ..] => Ok(Reply::Ack {
                id: frame.id,
                cmd: *cmd,
                data: data.to_vec(),
            }),
            [NAK, cmd, code] => Ok(Reply::Nak {
                id: frame.id,
                cmd: *cmd,
                code: *code,
            }),
            [NAK, ..] => Err(malformed("a NAK carries exactly one error-code byte")),
            _ => Err(malformed("a reply starts with 'A' or 'N' and the command")),
        }
    }
}

/// The data of a STATUS (0x00) ACK: `power, volume, mute, input, aspect, N_TIME_NF,
/// F_TIME_NF`. The last two are old timer flags, always 0 on current models.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Status {
    pub power: u8,
    /// 0xFF on models without audio.
    pub volume: u8,
    /// 0xFF on models without audio.
    pub mute: u8,
    pub input: u8,
    /// `None` if the display sent only the first four bytes.
    pub aspect: Option<u8>,
}

/// Volume or mute byte of a status reply from a model without audio.
pub const NO_AUDIO: u8 = 0xFF;

impl Status {
    /// Reads the data after `A 00`. Needs at least the first four fields; more than the
    /// seven known are tolerated (newer firmware may append).
    pub fn parse(data: &[u8]) -> Option<Status> {
        match data {
            [power, volume, mute, input, rest @ ..] => Some(Status {
                power: *power,
                volume: *volume,
                mute: *mute,
                input: *input,
                aspect: rest.first().copied(),
            }),
            _ => None,
        }
    }

    /// The seven data bytes a current display sends.
    pub fn encode(&self) -> Vec<u8> {
        vec![
            self.power,
            self.volume,
            self.mute,
            self.input,
            self.aspect.unwrap_or(0),
            0,
            0,
        ]
    }
}

/// One input source code of command 0x14.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Source {
    pub code: u8,
    /// The name the driver reports.
    pub name: &'static str,
    /// Other names accepted when selecting (python-samsung-mdc's and PlaceOS' spellings).
    pub aliases: &'static [&'static str],
    /// `false` for the sources a display only reports (`hdmi1_pc`: HDMI 1 carrying a PC
    /// signal); selecting one is refused.
    pub selectable: bool,
}

const fn source(code: u8, name: &'static str, aliases: &'static [&'static str]) -> Source {
    Source {
        code,
        name,
        aliases,
        selectable: true,
    }
}

const fn reported(code: u8, name: &'static str, aliases: &'static [&'static str]) -> Source {
    Source {
        code,
        name,
        aliases,
        selectable: false,
    }
}

/// Input sources of command 0x14, from the MDC specification v15 as python-samsung-mdc
/// 1.18.0 lists them (PROTOCOLS.md §3.3). Which ones a display has depends on its model.
pub const SOURCES: &[Source] = &[
    source(0x04, "s_video", &[]),
    source(0x08, "component", &[]),
    source(0x0C, "av", &[]),
    source(0x0D, "av2", &[]),
    source(0x0E, "scart1", &["scart"]),
    source(0x14, "pc", &["vga"]),
    source(0x18, "dvi", &[]),
    source(0x1E, "bnc", &[]),
    reported(0x1F, "dvi_video", &[]),
    source(0x20, "magicinfo", &["magic_info"]),
    source(0x21, "hdmi1", &["hdmi"]),
    reported(0x22, "hdmi1_pc", &["hdmi_pc"]),
    source(0x23, "hdmi2", &[]),
    reported(0x24, "hdmi2_pc", &[]),
    source(
        0x25,
        "displayport",
        &["displayport1", "display_port_1", "dp", "dp1"],
    ),
    source(0x26, "displayport2", &["display_port_2", "dp2"]),
    source(0x27, "displayport3", &["display_port_3", "dp3"]),
    source(0x30, "rf_tv", &["tv"]),
    source(0x31, "hdmi3", &[]),
    reported(0x32, "hdmi3_pc", &[]),
    source(0x33, "hdmi4", &[]),
    reported(0x34, "hdmi4_pc", &[]),
    source(0x40, "dtv", &["tv_dtv"]),
    source(0x50, "plug_in_mode", &[]),
    source(0x55, "hdbaset", &["hd_base_t"]),
    source(0x56, "ocm", &[]),
    source(0x60, "magicinfo_s", &["media_magic_info_s", "media"]),
    source(0x61, "screen_mirroring", &["widi_screen_mirroring", "widi"]),
    source(0x62, "internal_usb", &["usb"]),
    source(0x63, "url_launcher", &[]),
    source(0x64, "whiteboard", &["iwb"]),
    source(0x65, "web_browser", &[]),
    source(0x66, "remote_workspace", &[]),
];

/// The source with this code, if the specification names it.
pub fn source_by_code(code: u8) -> Option<&'static Source> {
    SOURCES.iter().find(|s| s.code == code)
}

/// The source a name stands for: its name or an alias, ignoring case, `_`, `-` and
/// spaces (`HDMI1`, `display-port-1`, `DISPLAY_PORT_1` all work).
pub fn source_by_name(name: &str) -> Option<&'static Source> {
    let wanted = normalize(name);
    SOURCES
        .iter()
        .find(|s| normalize(s.name) == wanted || s.aliases.iter().any(|a| normalize(a) == wanted))
}

/// A source as a user may write it: a name ([`source_by_name`]) or a code in hex
/// (`0x5a`), so any code a display reports can be selected back.
pub fn parse_source(text: &str) -> Option<u8> {
    let text = text.trim();
    if let Some(digits) = text.strip_prefix("0x").or_else(|| text.strip_prefix("0X")) {
        return u8::from_str_radix(digits, 16).ok();
    }
    source_by_name(text).map(|s| s.code)
}

/// How a source code is reported: its name, or `0x5a` for a code the specification
/// does not name.
pub fn source_name(code: u8) -> String {
    match source_by_code(code) {
        Some(source) => source.name.to_string(),
        None => format!("0x{code:02x}"),
    }
}

/// Picture aspect codes (command 0x15, also the fifth byte of a status reply).
pub const ASPECTS: &[(u8, &str)] = &[
    (0x00, "video_auto_wide"),
    (0x01, "video_16_9"),
    (0x04, "video_zoom"),
    (0x05, "video_zoom_1"),
    (0x06, "video_zoom_2"),
    (0x09, "video_screen_fit"),
    (0x0B, "video_4_3"),
    (0x0C, "video_wide_fit"),
    (0x0D, "video_custom"),
    (0x0E, "video_smart_view_1"),
    (0x0F, "video_smart_view_2"),
    (0x10, "pc_16_9"),
    (0x18, "pc_4_3"),
    (0x20, "pc_original_ratio"),
    (0x21, "pc_21_9"),
    (0x22, "pc_custom"),
    (0x31, "video_wide_zoom"),
    (0x32, "video_21_9"),
];

/// How an aspect code is reported: its name, or `0x5a` if unknown.
pub fn aspect_name(code: u8) -> String {
    match ASPECTS.iter().find(|(c, _)| *c == code) {
        Some((_, name)) => (*name).to_string(),
        None => format!("0x{code:02x}"),
    }
}

/// Lowercase, without `_`, `-` or spaces: the form names are compared in.
pub fn normalize(name: &str) -> String {
    name.chars()
        .filter(|c| !matches!(c, '_' | '-' | ' '))
        .map(|c| c.to_ascii_lowercase())
        .collect()
}

/// What [`FrameReader`] could not read. Each is reported once and stepped over; the
/// reader never stops.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum FrameError {
    /// Bytes that are not the start of a frame were skipped (line noise, a partial frame
    /// from before a reconnect, a frame going the other way).
    #[error("skipped {} byte(s) that are not an MDC frame: {bytes}", count)]
    Garbage { count: usize, bytes: String },
    /// A frame whose checksum does not add up; only its 0xAA is dropped, so a real frame
    /// inside it is still found.
    #[error("frame {frame} has checksum 0x{got:02X}, expected 0x{expected:02X}")]
    Checksum {
        frame: String,
        got: u8,
        expected: u8,
    },
    /// A well-formed frame that is not a well-formed reply.
    #[error("frame {frame} is malformed: {why}")]
    Malformed { frame: String, why: String },
}

/// Which frames a [`FrameReader`] looks for, so a 0xAA in noise is not taken for a
/// header when the bytes after it cannot start such a frame.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Expect {
    /// Replies (command 0xFF, data starting `A` or `N` and the command): the client side.
    Replies,
    /// Commands (any command but 0xFF): the display side.
    Commands,
}

/// Longest skipped run quoted in a [`FrameError::Garbage`].
const QUOTE: usize = 32;

/// Cuts a byte stream into frames, whatever the chunking: finds a 0xAA whose next bytes
/// can start the expected kind of frame, waits for the length it announces, checks the
/// checksum. Anything else is skipped and reported.
#[derive(Debug)]
pub struct FrameReader {
    buf: Vec<u8>,
    expect: Expect,
}

/// What the bytes from a 0xAA on look like.
enum Candidate {
    /// Could be a frame; more bytes needed.
    Incomplete,
    /// Cannot start the expected kind of frame: the 0xAA is noise.
    Implausible,
    /// A frame of this many bytes, header and checksum included.
    Complete(usize),
}

impl FrameReader {
    pub fn new(expect: Expect) -> FrameReader {
        FrameReader {
            buf: Vec::new(),
            expect,
        }
    }

    /// A reader for a client: replies only.
    pub fn replies() -> FrameReader {
        FrameReader::new(Expect::Replies)
    }

    /// A reader for a display: commands only.
    pub fn commands() -> FrameReader {
        FrameReader::new(Expect::Commands)
    }

    pub fn push(&mut self, data: &[u8]) {
        self.buf.extend_from_slice(data);
    }

    /// The next frame, or what was wrong with the bytes before it; `None` when more
    /// bytes are needed. Call until `None`.
    pub fn next_frame(&mut self) -> Option<Result<Frame, FrameError>> {
        let mut start = 0;
        loop {
            match self.buf[start..].iter().position(|&b| b == HEADER) {
                Some(offset) => start += offset,
                None => {
                    start = self.buf.len();
                    break;
                }
            }
            match self.candidate(&self.buf[start..]) {
                Candidate::Implausible => start += 1,
                Candidate::Incomplete => break,
                Candidate::Complete(len) => {
                    if start > 0 {
                        break;
                    }
                    let bytes = &self.buf[..len];
                    let expected = checksum(&bytes[1..len - 1]);
                    let got = bytes[len - 1];
                    if got != expected {
                        let frame = hex(bytes);
                        // Only the header goes: if it was noise, a real frame may start
                        // inside what looked like its body.
                        self.buf.drain(..1);
                        return Some(Err(FrameError::Checksum {
                            frame,
                            got,
                            expected,
                        }));
                    }
                    let frame = Frame::new(bytes[1], bytes[2], &bytes[4..len - 1]);
                    self.buf.drain(..len);
                    return Some(Ok(frame));
                }
            }
        }
        // Bytes before `start` cannot begin a frame: report them, then carry on.
        (start > 0).then(|| {
            let skipped: Vec<u8> = self.buf.drain(..start).collect();
            let mut bytes = hex(&skipped[..skipped.len().min(QUOTE)]);
            if skipped.len() > QUOTE {
                bytes.push_str(" …");
            }
            Err(FrameError::Garbage {
                count: skipped.len(),
                bytes,
            })
        })
    }

    fn candidate(&self, bytes: &[u8]) -> Candidate {
        let replies = self.expect == Expect::Replies;
        let plausible = match bytes {
            [_, cmd, ..] if (*cmd == REPLY) != replies => false,
            // Ids run 0x00 to 0xFE.
            [_, _, REPLY, ..] => false,
            // A reply holds at least `A`/`N` and the command it answers.
            [_, _, _, len, ..] if replies && *len < 2 => false,
            [_, _, _, _, ack, ..] if replies && !matches!(*ack, ACK | NAK) => false,
            _ => true,
        };
        if !plausible {
            return Candidate::Implausible;
        }
        match bytes.get(3) {
            Some(&len) if bytes.len() >= usize::from(len) + OVERHEAD => {
                Candidate::Complete(usize::from(len) + OVERHEAD)
            }
            _ => Candidate::Incomplete,
        }
    }

    /// Forgets buffered bytes (a new connection).
    pub fn clear(&mut self) {
        self.buf.clear();
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// `AA 11 01 00 12` → bytes.
    fn bytes(text: &str) -> Vec<u8> {
        text.split_whitespace()
            .map(|b| u8::from_str_radix(b, 16).unwrap())
            .collect()
    }

    #[test]
    fn commands_encode_as_python_samsung_mdc_does() {
        let cases = [
            (Command::Get(Setting::Power).frame(1), "AA 11 01 00 12"),
            (
                Command::Set(Setting::Power, 1).frame(1),
                "AA 11 01 01 01 14",
            ),
            (
                Command::Set(Setting::Power, 0).frame(1),
                "AA 11 01 01 00 13",
            ),
            (
                Command::Set(Setting::Volume, 50).frame(1),
                "AA 12 01 01 32 46",
            ),
            (
                Command::Set(Setting::Input, 0x21).frame(1),
                "AA 14 01 01 21 37",
            ),
            (Command::Status.frame(0), "AA 00 00 00 00"),
            (
                Command::Get(Setting::Power).frame(BROADCAST),
                "AA 11 FE 00 0F",
            ),
            // [RUN] against the CLI.
            (Command::Status.frame(1), "AA 00 01 00 01"),
            (
                Command::Set(Setting::Volume, 55).frame(1),
                "AA 12 01 01 37 4B",
            ),
            (
                Command::Set(Setting::Input, 0x23).frame(1),
                "AA 14 01 01 23 39",
            ),
            (
                Command::Set(Setting::Volume, 42).frame(1),
                "AA 12 01 01 2A 3E",
            ),
            // [CODE] PlaceOS, display 0.
            (
                Command::Set(Setting::Volume, 0x18).frame(0),
                "AA 12 00 01 18 2B",
            ),
            // A sub-command is the first data byte (network mode GET).
            (Frame::new(0x1B, 1, [0x85]), "AA 1B 01 01 85 A2"),
        ];
        for (frame, expected) in cases {
            assert_eq!(frame.encode(), bytes(expected), "{expected}");
            assert_eq!(frame.to_string(), expected);
        }
    }

    #[test]
    fn commands_read_back() {
        for command in [
            Command::Status,
            Command::Get(Setting::Mute),
            Command::Set(Setting::Mute, 1),
            Command::Set(Setting::Input, 0x31),
        ] {
            assert_eq!(Command::from_frame(&command.frame(7)), Some(command));
        }
        assert_eq!(Command::from_frame(&Frame::new(0x1B, 1, [0x85])), None);
        assert_eq!(Command::from_frame(&Frame::new(0x00, 1, [1])), None);
        assert_eq!(Command::from_frame(&Frame::new(0x12, 1, [1, 2])), None);
    }

    #[test]
    fn replies_encode_and_parse() {
        let cases = [
            (
                Reply::Ack {
                    id: 1,
                    cmd: 0x11,
                    data: vec![1],
                },
                "AA FF 01 03 41 11 01 56",
            ),
            (
                Reply::Ack {
                    id: 1,
                    cmd: 0x12,
                    data: vec![50],
                },
                "AA FF 01 03 41 12 32 88",
            ),
            (
                Reply::Ack {
                    id: 0,
                    cmd: 0x00,
                    data: vec![0x01, 0x19, 0x00, 0x21, 0x10, 0x00, 0x00],
                },
                "AA FF 00 09 41 00 01 19 00 21 10 00 00 94",
            ),
            (
                Reply::Nak {
                    id: 1,
                    cmd: 0x11,
                    code: 1,
                },
                "AA FF 01 03 4E 11 01 63",
            ),
            (
                Reply::Ack {
                    id: 1,
                    cmd: 0x1B,
                    data: vec![0x85, 0x01],
                },
                "AA FF 01 04 41 1B 85 01 E6",
            ),
            // [RUN] replies the CLI accepted, and PlaceOS vectors.
            (
                Reply::Ack {
                    id: 1,
                    cmd: 0x00,
                    data: vec![0x01, 0x1E, 0x00, 0x21, 0x10, 0x00, 0x00],
                },
                "AA FF 01 09 41 00 01 1E 00 21 10 00 00 9A",
            ),
            (
                Reply::Ack {
                    id: 1,
                    cmd: 0x12,
                    data: vec![0x37],
                },
                "AA FF 01 03 41 12 37 8D",
            ),
            (
                Reply::Ack {
                    id: 0,
                    cmd: 0x12,
                    data: vec![0x18],
                },
                "AA FF 00 03 41 12 18 6D",
            ),
            (
                Reply::Ack {
                    id: 0,
                    cmd: 0xF9,
                    data: vec![0x01],
                },
                "AA FF 00 03 41 F9 01 3D",
            ),
            (
                Reply::Ack {
                    id: 0,
                    cmd: 0x00,
                    data: vec![0x01, 0x06, 0x00, 0x14, 0x00, 0x00, 0x00],
                },
                "AA FF 00 09 41 00 01 06 00 14 00 00 00 64",
            ),
        ];
        for (reply, expected) in cases {
            assert_eq!(reply.encode(), bytes(expected), "{expected}");
            let mut reader = FrameReader::replies();
            reader.push(&bytes(expected));
            let frame = reader.next_frame().unwrap().unwrap();
            assert_eq!(Reply::from_frame(&frame), Ok(reply), "{expected}");
            assert!(reader.next_frame().is_none());
        }
    }

    #[test]
    fn malformed_replies_are_refused() {
        for (frame, why) in [
            (Frame::new(0x11, 1, [1]), "not a reply"),
            (Frame::new(REPLY, 1, [NAK, 0x11]), "one error-code byte"),
            (
                Frame::new(REPLY, 1, [NAK, 0x11, 1, 2]),
                "one error-code byte",
            ),
            (Frame::new(REPLY, 1, [ACK]), "starts with 'A' or 'N'"),
            (Frame::new(REPLY, 1, [b'X', 0x11]), "starts with 'A' or 'N'"),
        ] {
            let error = Reply::from_frame(&frame).unwrap_err();
            assert!(error.to_string().contains(why), "{frame}: {error}");
        }
    }

    #[test]
    fn status_data() {
        let status = Status::parse(&[0x01, 0x19, 0x00, 0x21, 0x10, 0x00, 0x00]).unwrap();
        assert_eq!(
            status,
            Status {
                power: 1,
                volume: 25,
                mute: 0,
                input: 0x21,
                aspect: Some(0x10)
            }
        );
        assert_eq!(status.encode(), [0x01, 0x19, 0x00, 0x21, 0x10, 0x00, 0x00]);
        assert_eq!(Status::parse(&[1, 2, 3, 4]).unwrap().aspect, None);
        assert_eq!(Status::parse(&[1, 2, 3]), None);
    }

    #[test]
    fn sources_by_name_alias_and_code() {
        let code = |name: &str| parse_source(name);
        assert_eq!(code("hdmi1"), Some(0x21));
        assert_eq!(code("HDMI"), Some(0x21));
        assert_eq!(code("hdmi2"), Some(0x23));
        assert_eq!(code("hdmi3"), Some(0x31));
        assert_eq!(code("hdmi4"), Some(0x33));
        assert_eq!(code("displayport"), Some(0x25));
        assert_eq!(code("DISPLAY_PORT_1"), Some(0x25));
        assert_eq!(code("dp2"), Some(0x26));
        assert_eq!(code("dvi"), Some(0x18));
        assert_eq!(code("pc"), Some(0x14));
        assert_eq!(code("av"), Some(0x0C));
        assert_eq!(code("HD_BASE_T"), Some(0x55));
        assert_eq!(code("media_magic_info_s"), Some(0x60));
        assert_eq!(code("0x5a"), Some(0x5A));
        assert_eq!(code("0X21"), Some(0x21));
        assert_eq!(code("0x"), None);
        assert_eq!(code("0x100"), None);
        assert_eq!(code("hdmi9"), None);
        assert_eq!(source_name(0x21), "hdmi1");
        assert_eq!(source_name(0x25), "displayport");
        assert_eq!(source_name(0x5A), "0x5a");
        assert!(!source_by_code(0x22).unwrap().selectable);
        assert_eq!(aspect_name(0x10), "pc_16_9");
        assert_eq!(aspect_name(0x77), "0x77");
        // Every name and alias stands for one code only.
        for a in SOURCES {
            for name in std::iter::once(&a.name).chain(a.aliases) {
                assert_eq!(source_by_name(name).map(|s| s.code), Some(a.code), "{name}");
            }
        }
    }

    fn frames(reader: &mut FrameReader) -> Vec<Result<Frame, FrameError>> {
        std::iter::from_fn(|| reader.next_frame()).collect()
    }

    #[test]
    fn frames_are_found_in_any_chunking() {
        let stream = bytes("AA FF 01 03 41 11 01 56 AA FF 01 03 41 12 32 88");
        for split in 0..stream.len() {
            for step in 1..=3 {
                let mut reader = FrameReader::replies();
                let mut found = Vec::new();
                reader.push(&stream[..split]);
                found.extend(frames(&mut reader));
                for chunk in stream[split..].chunks(step) {
                    reader.push(chunk);
                    found.extend(frames(&mut reader));
                }
                assert_eq!(
                    found,
                    [
                        Ok(Frame::new(REPLY, 1, [ACK, 0x11, 1])),
                        Ok(Frame::new(REPLY, 1, [ACK, 0x12, 50]))
                    ],
                    "split at {split}, step {step}"
                );
            }
        }
    }

    #[test]
    fn garbage_is_skipped_and_reported() {
        let mut reader = FrameReader::replies();
        // Noise, a stray 0xAA that cannot start a reply, then a reply.
        reader.push(&bytes("00 13 AA 11 3C AA FF 01 03 41 11 01 56 7F"));
        assert_eq!(
            frames(&mut reader),
            [
                Err(FrameError::Garbage {
                    count: 5,
                    bytes: "00 13 AA 11 3C".into()
                }),
                Ok(Frame::new(REPLY, 1, [ACK, 0x11, 1])),
                Err(FrameError::Garbage {
                    count: 1,
                    bytes: "7F".into()
                }),
            ]
        );
        // A 0xAA at the very end waits for what follows.
        reader.push(&[0xAA]);
        assert!(reader.next_frame().is_none());
        reader.push(&bytes("FF 01 03 4E 11 01 63"));
        assert_eq!(
            frames(&mut reader),
            [Ok(Frame::new(REPLY, 1, [NAK, 0x11, 1]))]
        );
        // Headers that cannot start a reply: an id of 0xFF, a length under 2, no A/N.
        reader.push(&bytes(
            "AA FF FF 02 41 11 AA FF 01 01 41 AA FF 01 03 42 11 01 57",
        ));
        assert!(matches!(
            frames(&mut reader).as_slice(),
            [Err(FrameError::Garbage { count: 19, .. })]
        ));
        // Long runs are quoted in part.
        reader.push(&[0x55; 100]);
        match frames(&mut reader).as_slice() {
            [Err(FrameError::Garbage { count, bytes })] => {
                assert_eq!(*count, 100);
                assert!(bytes.ends_with(" …"), "{bytes}");
            }
            other => panic!("expected garbage, got {other:?}"),
        }
    }

    #[test]
    fn wrong_checksums_are_reported_and_stepped_over() {
        let mut reader = FrameReader::replies();
        reader.push(&bytes("AA FF 01 03 41 11 01 57 AA FF 01 03 41 12 32 88"));
        assert_eq!(
            frames(&mut reader),
            [
                Err(FrameError::Checksum {
                    frame: "AA FF 01 03 41 11 01 57".into(),
                    got: 0x57,
                    expected: 0x56
                }),
                Err(FrameError::Garbage {
                    count: 7,
                    bytes: "FF 01 03 41 11 01 57".into()
                }),
                Ok(Frame::new(REPLY, 1, [ACK, 0x12, 50])),
            ]
        );
        // A noise 0xAA whose "frame" swallows a real one: the real one is still found.
        reader.push(&bytes("AA FF 01 07 41 AA FF 01 03 41 12 32 88 00"));
        let found = frames(&mut reader);
        assert!(
            matches!(found[0], Err(FrameError::Checksum { .. })),
            "{found:?}"
        );
        assert!(
            found.contains(&Ok(Frame::new(REPLY, 1, [ACK, 0x12, 50]))),
            "{found:?}"
        );
    }

    #[test]
    fn a_display_reads_commands_and_skips_replies() {
        let mut reader = FrameReader::commands();
        reader.push(&bytes("AA FF 01 03 41 11 01 56 AA 12 01 01 32 46 AA 00 01"));
        let found = frames(&mut reader);
        assert!(
            matches!(found[0], Err(FrameError::Garbage { count: 8, .. })),
            "{found:?}"
        );
        assert_eq!(found[1], Ok(Frame::new(0x12, 1, [50])));
        assert_eq!(found.len(), 2);
        reader.push(&[0x00, 0x01]);
        assert_eq!(frames(&mut reader), [Ok(Frame::new(0x00, 1, []))]);
        reader.clear();
        reader.push(&[0xAA, 0x12]);
        reader.clear();
        assert!(reader.next_frame().is_none());
    }
}
