//! Sony VISCA wire format, shared by the client session and the camera model.
//!
//! Everything here is a pure function over bytes, tested with the vectors of
//! PROTOCOLS.md §3.4.
//!
//! A VISCA packet is a header byte, up to 14 message bytes and the terminator `FF`. From
//! the controller the header is `8n` (n = camera address 1-7, 8 = broadcast); from a
//! camera it is `z0` with z = address + 8 (camera 1 answers `90`). A command
//! (`8x 01 ...`) is answered ACK `z0 4y FF` (y = the socket it runs in), then Completion
//! `z0 5y FF`, or an error `z0 6y ee FF`; an inquiry (`8x 09 ...`) is answered
//! `z0 50 <data> FF` directly. A camera's message bytes stay below `0x80`, so in replies a
//! byte from `0x80` on always starts a packet; [`PacketReader`] relies on that to find its
//! way back into a stream after noise. Commands may carry such bytes (preset numbers over
//! 127), so a camera reads them up to the terminator ([`PacketReader::commands`]).
//!
//! Sony's VISCA over IP wraps one packet per UDP datagram in an 8-byte header: payload
//! type, payload length and a sequence number the camera echoes ([`IpMessage`]).

use std::fmt;

/// Longest packet: header, 14 message bytes, terminator.
pub const MAX_PACKET: usize = 16;

pub const TERMINATOR: u8 = 0xFF;

/// The address `88` sends to every camera on a serial chain.
pub const BROADCAST: u8 = 8;

/// Length of the VISCA over IP header.
pub const IP_HEADER: usize = 8;

/// Renders wire bytes for a message: `81 01 04 00 02 FF`.
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

/// Why bytes could not be read as VISCA. Messages quote the offending bytes in hex.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum FrameError {
    #[error("VISCA over IP datagram shorter than its 8-byte header: `{0}`")]
    ShortDatagram(String),
    #[error("VISCA over IP header announces {announced} payload bytes, the datagram has {actual}")]
    LengthMismatch { announced: usize, actual: usize },
    #[error("unknown VISCA over IP payload type {0:04X}")]
    UnknownPayloadType(u16),
    #[error("VISCA over IP payload of {0} bytes; it must be 1 to 16")]
    PayloadLength(usize),
}

/// Zoom drive (`8x 01 04 07 pp FF`). A speed (0 slow to 7 fast) selects the variable
/// form `2p`/`3p`; without one the camera uses its standard speed (`02`/`03`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Zoom {
    Stop,
    Tele(Option<u8>),
    Wide(Option<u8>),
}

/// Fastest variable zoom speed.
pub const ZOOM_SPEED_MAX: u8 = 7;
/// Top of the zoom position scale used by `zoom_to` (`8x 01 04 47 0p 0q 0r 0s FF`).
pub const ZOOM_MAX: u16 = 0x4000;
/// Pan speed range of the drive command (`VV`).
pub const PAN_SPEED_MAX: u8 = 0x18;
/// Tilt speed range of the drive command (`WW`).
pub const TILT_SPEED_MAX: u8 = 0x14;
/// Highest preset number: one byte, anything but the terminator (PTZOptics and others
/// take 0 to 254; many Sony models only 0 to 127, and refuse the rest themselves).
pub const PRESET_MAX: u8 = 0xFE;

/// Pan part of a drive (`XX` byte: 01 left, 02 right, 03 stop).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Pan {
    Left,
    Right,
    Stop,
}

/// Tilt part of a drive (`YY` byte: 01 up, 02 down, 03 stop).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Tilt {
    Up,
    Down,
    Stop,
}

/// `8x 01 04 3F 0a pp FF`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum PresetAction {
    Reset,
    Set,
    Recall,
}

/// A command for one camera (`8x 01 ...`) or the chain (`88 ...`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Command {
    /// `8x 01 00 01 FF`: empties the camera's command buffers; answered `z0 50 FF`.
    IfClear,
    /// `88 01 00 01 FF`: IF_Clear for the whole chain; comes back unchanged.
    IfClearAll,
    /// `88 30 01 FF`: numbers the chain; comes back `88 30 0n FF`, n = cameras + 1.
    AddressSet,
    /// `8x 01 04 00 02 FF` on, `03` standby.
    Power(bool),
    /// `8x 01 04 07 pp FF`.
    Zoom(Zoom),
    /// `8x 01 04 47 0p 0q 0r 0s FF`.
    ZoomTo(u16),
    /// `8x 01 06 01 VV WW XX YY FF`.
    PanTilt {
        pan_speed: u8,
        tilt_speed: u8,
        pan: Pan,
        tilt: Tilt,
    },
    /// `8x 01 06 04 FF`: back to the centre.
    Home,
    /// `8x 01 04 3F 0a pp FF`.
    Preset { action: PresetAction, number: u8 },
    /// `8x 01 06 02 VV WW 0Y 0Y 0Y 0Y 0Z 0Z 0Z 0Z FF`: to an absolute position (16-bit two's
    /// complement, one nibble a byte). Newer Sony models take one speed and `WW` = 0.
    PanTiltTo {
        pan_speed: u8,
        tilt_speed: u8,
        pan: i16,
        tilt: i16,
    },
    /// `8x 01 04 38 02|03|10 FF`: auto focus, manual focus, toggle.
    FocusMode(FocusMode),
    /// `8x 01 04 48 0p 0q 0r 0s FF`: manual focus position.
    FocusTo(u16),
    /// `8x 01 04 35 0p FF`: white balance mode (0 auto, 1 indoor, 2 outdoor, 3 one-push,
    /// 5 manual; 4, ATW, on some models).
    WhiteBalance(u8),
}

/// `8x 01 04 38 ...`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum FocusMode {
    Auto,
    Manual,
    Toggle,
}

/// Highest white balance mode code (`8x 01 04 35 0p FF`).
pub const WHITE_BALANCE_MAX: u8 = 5;

/// An inquiry (`8x 09 ...`), answered `z0 50 <data> FF`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Inquiry {
    /// `8x 09 04 00 FF` → `z0 50 02 FF` on, `03` standby.
    Power,
    /// `8x 09 04 47 FF` → `z0 50 0p 0q 0r 0s FF`.
    Zoom,
    /// `8x 09 06 12 FF` → `z0 50 0p 0p 0p 0p 0t 0t 0t 0t FF`: pan then tilt, each a 16-bit
    /// two's complement number in four nibbles (the form of Sony's EVI/SRG manuals).
    PanTilt,
    /// `8x 09 04 38 FF` → `z0 50 02 FF` auto focus, `03` manual.
    FocusMode,
    /// `8x 09 04 48 FF` → `z0 50 0p 0q 0r 0s FF`.
    Focus,
    /// `8x 09 04 35 FF` → `z0 50 0p FF`.
    WhiteBalance,
}

/// What a controller sends: a command or an inquiry.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Message {
    Command(Command),
    Inquiry(Inquiry),
}

impl Command {
    /// The packet for camera `address`; chain-wide commands always go to `88`.
    pub fn encode(&self, address: u8) -> Vec<u8> {
        let header = 0x80 | address;
        let mut packet = match *self {
            Command::IfClear => vec![header, 0x01, 0x00, 0x01],
            Command::IfClearAll => vec![0x88, 0x01, 0x00, 0x01],
            Command::AddressSet => vec![0x88, 0x30, 0x01],
            Command::Power(on) => vec![header, 0x01, 0x04, 0x00, if on { 0x02 } else { 0x03 }],
            Command::Zoom(zoom) => {
                let p = match zoom {
                    Zoom::Stop => 0x00,
                    Zoom::Tele(None) => 0x02,
                    Zoom::Wide(None) => 0x03,
                    Zoom::Tele(Some(speed)) => 0x20 | (speed & 0x07),
                    Zoom::Wide(Some(speed)) => 0x30 | (speed & 0x07),
                };
                vec![header, 0x01, 0x04, 0x07, p]
            }
            Command::ZoomTo(position) => {
                let mut packet = vec![header, 0x01, 0x04, 0x47];
                packet.extend(nibbles(position));
                packet
            }
            Command::PanTilt {
                pan_speed,
                tilt_speed,
                pan,
                tilt,
            } => {
                let pan = match pan {
                    Pan::Left => 0x01,
                    Pan::Right => 0x02,
                    Pan::Stop => 0x03,
                };
                let tilt = match tilt {
                    Tilt::Up => 0x01,
                    Tilt::Down => 0x02,
                    Tilt::Stop => 0x03,
                };
                vec![header, 0x01, 0x06, 0x01, pan_speed, tilt_speed, pan, tilt]
            }
            Command::Home => vec![header, 0x01, 0x06, 0x04],
            Command::Preset { action, number } => {
                let action = match action {
                    PresetAction::Reset => 0x00,
                    PresetAction::Set => 0x01,
                    PresetAction::Recall => 0x02,
                };
                vec![header, 0x01, 0x04, 0x3F, action, number]
            }
            Command::PanTiltTo {
                pan_speed,
                tilt_speed,
                pan,
                tilt,
            } => {
                let mut packet = vec![header, 0x01, 0x06, 0x02, pan_speed, tilt_speed];
                packet.extend(nibbles(pan as u16));
                packet.extend(nibbles(tilt as u16));
                packet
            }
            Command::FocusMode(mode) => {
                let m = match mode {
                    FocusMode::Auto => 0x02,
                    FocusMode::Manual => 0x03,
                    FocusMode::Toggle => 0x10,
                };
                vec![header, 0x01, 0x04, 0x38, m]
            }
            Command::FocusTo(position) => {
                let mut packet = vec![header, 0x01, 0x04, 0x48];
                packet.extend(nibbles(position));
                packet
            }
            Command::WhiteBalance(mode) => vec![header, 0x01, 0x04, 0x35, mode],
        };
        packet.push(TERMINATOR);
        packet
    }
}

impl Inquiry {
    pub fn encode(&self, address: u8) -> Vec<u8> {
        let header = 0x80 | address;
        match self {
            Inquiry::Power => vec![header, 0x09, 0x04, 0x00, TERMINATOR],
            Inquiry::Zoom => vec![header, 0x09, 0x04, 0x47, TERMINATOR],
            Inquiry::PanTilt => vec![header, 0x09, 0x06, 0x12, TERMINATOR],
            Inquiry::FocusMode => vec![header, 0x09, 0x04, 0x38, TERMINATOR],
            Inquiry::Focus => vec![header, 0x09, 0x04, 0x48, TERMINATOR],
            Inquiry::WhiteBalance => vec![header, 0x09, 0x04, 0x35, TERMINATOR],
        }
    }
}

impl Message {
    pub fn encode(&self, address: u8) -> Vec<u8> {
        match self {
            Message::Command(command) => command.encode(address),
            Message::Inquiry(inquiry) => inquiry.encode(address),
        }
    }

    /// Reads a controller's packet (terminator included): the address it is for (8 =
    /// broadcast) and the message, or `None` for the address alone when the message is
    /// not one this module knows (a camera answers that with a syntax error).
    pub fn parse(packet: &[u8]) -> Option<(u8, Option<Message>)> {
        let (&header, rest) = packet.split_first()?;
        if header & 0xF0 != 0x80 || packet.last() != Some(&TERMINATOR) {
            return None;
        }
        let address = header & 0x0F;
        let body = &rest[..rest.len() - 1];
        let message = match (address, body) {
            (BROADCAST, [0x01, 0x00, 0x01]) => Some(Message::Command(Command::IfClearAll)),
            (BROADCAST, [0x30, 0x01]) => Some(Message::Command(Command::AddressSet)),
            (BROADCAST, _) => None,
            (_, body) => parse_for_camera(body),
        };
        Some((address, message))
    }
}

fn parse_for_camera(body: &[u8]) -> Option<Message> {
    let command = |c| Some(Message::Command(c));
    let speed = |s: u8| (s <= ZOOM_SPEED_MAX).then_some(s);
    match *body {
        [0x01, 0x00, 0x01] => command(Command::IfClear),
        [0x01, 0x04, 0x00, 0x02] => command(Command::Power(true)),
        [0x01, 0x04, 0x00, 0x03] => command(Command::Power(false)),
        [0x01, 0x04, 0x07, p] => {
            let zoom = match p {
                0x00 => Zoom::Stop,
                0x02 => Zoom::Tele(None),
                0x03 => Zoom::Wide(None),
                0x20..=0x27 => Zoom::Tele(speed(p & 0x0F)),
                0x30..=0x37 => Zoom::Wide(speed(p & 0x0F)),
                _ => return None,
            };
            command(Command::Zoom(zoom))
        }
        [0x01, 0x04, 0x47, p, q, r, s] => command(Command::ZoomTo(from_nibbles([p, q, r, s])?)),
        [0x01, 0x06, 0x01, pan_speed, tilt_speed, pan, tilt] => {
            let pan = match pan {
                0x01 => Pan::Left,
                0x02 => Pan::Right,
                0x03 => Pan::Stop,
                _ => return None,
            };
            let tilt = match tilt {
                0x01 => Tilt::Up,
                0x02 => Tilt::Down,
                0x03 => Tilt::Stop,
                _ => return None,
            };
            command(Command::PanTilt {
                pan_speed,
                tilt_speed,
                pan,
                tilt,
            })
        }
        [0x01, 0x06, 0x04] => command(Command::Home),
        [0x01, 0x04, 0x3F, action, number] if number <= PRESET_MAX => {
            let action = match action {
                0x00 => PresetAction::Reset,
                0x01 => PresetAction::Set,
                0x02 => PresetAction::Recall,
                _ => return None,
            };
            command(Command::Preset { action, number })
        }
        [0x09, 0x04, 0x00] => Some(Message::Inquiry(Inquiry::Power)),
        [0x09, 0x04, 0x47] => Some(Message::Inquiry(Inquiry::Zoom)),
        [0x09, 0x06, 0x12] => Some(Message::Inquiry(Inquiry::PanTilt)),
        [
            0x01,
            0x06,
            0x02,
            pan_speed,
            tilt_speed,
            p1,
            p2,
            p3,
            p4,
            t1,
            t2,
            t3,
            t4,
        ] => command(Command::PanTiltTo {
            pan_speed,
            tilt_speed,
            pan: from_nibbles([p1, p2, p3, p4])? as i16,
            tilt: from_nibbles([t1, t2, t3, t4])? as i16,
        }),
        [0x01, 0x04, 0x38, mode] => command(Command::FocusMode(match mode {
            0x02 => FocusMode::Auto,
            0x03 => FocusMode::Manual,
            0x10 => FocusMode::Toggle,
            _ => return None,
        })),
        [0x01, 0x04, 0x48, p, q, r, s] => command(Command::FocusTo(from_nibbles([p, q, r, s])?)),
        [0x01, 0x04, 0x35, mode] if mode <= WHITE_BALANCE_MAX => {
            command(Command::WhiteBalance(mode))
        }
        [0x09, 0x04, 0x38] => Some(Message::Inquiry(Inquiry::FocusMode)),
        [0x09, 0x04, 0x48] => Some(Message::Inquiry(Inquiry::Focus)),
        [0x09, 0x04, 0x35] => Some(Message::Inquiry(Inquiry::WhiteBalance)),
        _ => None,
    }
}

/// A 16-bit value as four `0n` bytes, most significant first.
pub fn nibbles(value: u16) -> [u8; 4] {
    [12, 8, 4, 0].map(|shift| ((value >> shift) & 0x0F) as u8)
}

/// The value of four `0n` bytes; `None` if a byte has its high nibble set.
pub fn from_nibbles(bytes: [u8; 4]) -> Option<u16> {
    bytes.iter().try_fold(0u16, |value, &b| {
        (b <= 0x0F).then_some((value << 4) | u16::from(b))
    })
}

/// A camera's error code (`z0 6y ee FF`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct ErrorCode(pub u8);

impl ErrorCode {
    pub const MESSAGE_LENGTH: ErrorCode = ErrorCode(0x01);
    pub const SYNTAX: ErrorCode = ErrorCode(0x02);
    pub const BUFFER_FULL: ErrorCode = ErrorCode(0x03);
    pub const CANCELLED: ErrorCode = ErrorCode(0x04);
    pub const NO_SOCKET: ErrorCode = ErrorCode(0x05);
    pub const NOT_EXECUTABLE: ErrorCode = ErrorCode(0x41);

    /// What the code means, as Sony's manuals put it.
    pub fn meaning(self) -> &'static str {
        match self.0 {
            0x01 => "message length error",
            0x02 => "syntax error: the camera does not know this command",
            0x03 => "command buffer full: both sockets are busy",
            0x04 => "command cancelled",
            0x05 => "no socket: nothing to cancel in that socket",
            0x41 => {
                "command not executable in the camera's current state (powered off, or a conflicting mode)"
            }
            _ => "unknown error",
        }
    }
}

impl fmt::Display for ErrorCode {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "error {:02X}", self.0)
    }
}

/// A packet from a camera (or from the chain, for broadcasts).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Reply {
    /// `z0 4y FF`: command accepted into socket y.
    Ack { camera: u8, socket: u8 },
    /// `z0 5y FF` for a command, `z0 50 <data> FF` for an inquiry.
    Completion {
        camera: u8,
        socket: u8,
        data: Vec<u8>,
    },
    /// `z0 6y ee FF`.
    Error {
        camera: u8,
        socket: u8,
        code: ErrorCode,
    },
    /// `88 30 0n FF`: the chain is numbered; n - 1 cameras answered.
    AddressSet { next: u8 },
    /// `88 01 00 01 FF`: the broadcast IF_Clear came back round the chain.
    IfClearAll,
    /// Anything else that is framed as a packet (`z0 38 FF` network change, our own
    /// packet coming back round a chain, noise).
    Other(Vec<u8>),
}

impl Reply {
    /// Reads one packet, terminator included.
    pub fn parse(packet: &[u8]) -> Reply {
        let other = || Reply::Other(packet.to_vec());
        let Some((&header, rest)) = packet.split_first() else {
            return other();
        };
        let Some((&TERMINATOR, body)) = rest.split_last() else {
            return other();
        };
        if header == 0x88 {
            return match body {
                [0x30, next] => Reply::AddressSet { next: *next },
                [0x01, 0x00, 0x01] => Reply::IfClearAll,
                _ => other(),
            };
        }
        if header & 0x8F != 0x80 || header < 0x90 {
            return other();
        }
        let camera = (header >> 4) - 8;
        let Some((&kind, data)) = body.split_first() else {
            return other();
        };
        let socket = kind & 0x0F;
        match (kind & 0xF0, data) {
            (0x40, []) => Reply::Ack { camera, socket },
            (0x50, data) => Reply::Completion {
                camera,
                socket,
                data: data.to_vec(),
            },
            (0x60, [code]) => Reply::Error {
                camera,
                socket,
                code: ErrorCode(*code),
            },
            _ => other(),
        }
    }

    pub fn encode(&self) -> Vec<u8> {
        let from = |camera: u8| (camera + 8) << 4;
        let mut packet = match self {
            Reply::Ack { camera, socket } => vec![from(*camera), 0x40 | socket],
            Reply::Completion {
                camera,
                socket,
                data,
            } => {
                let mut packet = vec![from(*camera), 0x50 | socket];
                packet.extend_from_slice(data);
                packet
            }
            Reply::Error {
                camera,
                socket,
                code,
            } => vec![from(*camera), 0x60 | socket, code.0],
            Reply::AddressSet { next } => vec![0x88, 0x30, *next],
            Reply::IfClearAll => vec![0x88, 0x01, 0x00, 0x01],
            Reply::Other(bytes) => return bytes.clone(),
        };
        packet.push(TERMINATOR);
        packet
    }
}

/// Cuts a byte stream (serial, raw TCP) into packets, whatever the chunking. Bytes before
/// a header (`0x80`-`0xFE`) are noise and skipped; a header in the middle of a packet
/// starts a new one (the partial packet was cut short); a packet that grows past
/// [`MAX_PACKET`] without a terminator is dropped. So the buffer stays bounded and the
/// reader is back in step at the next packet after any noise.
#[derive(Debug, Default)]
pub struct PacketReader {
    /// Only the terminator ends a packet: a byte from `0x80` on inside one is data (a
    /// preset number over 127), as for a camera reading commands.
    terminator_only: bool,
    packet: Vec<u8>,
    /// Bytes thrown away since the last [`PacketReader::take_discarded`].
    discarded: usize,
    ready: std::collections::VecDeque<Vec<u8>>,
}

impl PacketReader {
    pub fn new() -> PacketReader {
        PacketReader::default()
    }

    /// A camera's reader: a packet runs to its terminator, so command bytes from `0x80`
    /// on (presets 128 to 254) are taken as data rather than as the start of a packet.
    pub fn commands() -> PacketReader {
        PacketReader {
            terminator_only: true,
            ..PacketReader::default()
        }
    }

    pub fn push(&mut self, data: &[u8]) {
        for &byte in data {
            match byte {
                TERMINATOR if self.packet.is_empty() => self.discarded += 1,
                TERMINATOR => {
                    self.packet.push(byte);
                    self.ready.push_back(std::mem::take(&mut self.packet));
                }
                0x80.. if !self.terminator_only || self.packet.is_empty() => {
                    self.discarded += self.packet.len();
                    self.packet.clear();
                    self.packet.push(byte);
                }
                _ if self.packet.is_empty() => self.discarded += 1,
                _ if self.packet.len() + 1 >= MAX_PACKET => {
                    self.discarded += self.packet.len() + 1;
                    self.packet.clear();
                }
                _ => self.packet.push(byte),
            }
        }
    }

    /// The next complete packet, terminator included.
    pub fn next_packet(&mut self) -> Option<Vec<u8>> {
        self.ready.pop_front()
    }

    /// How many bytes were skipped as noise since the last call.
    pub fn take_discarded(&mut self) -> usize {
        std::mem::take(&mut self.discarded)
    }

    /// Forgets everything buffered (a new connection).
    pub fn clear(&mut self) {
        self.packet.clear();
        self.ready.clear();
        self.discarded = 0;
    }
}

/// What a VISCA over IP datagram carries (its first two header bytes).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum PayloadType {
    /// `01 00`: a VISCA command.
    Command,
    /// `01 10`: a VISCA inquiry.
    Inquiry,
    /// `01 11`: a VISCA reply (ACK, Completion, inquiry answer, error).
    Reply,
    /// `01 20`: device setting command.
    DeviceSetting,
    /// `02 00`: control command (RESET).
    Control,
    /// `02 01`: control reply.
    ControlReply,
}

impl PayloadType {
    pub fn code(self) -> u16 {
        match self {
            PayloadType::Command => 0x0100,
            PayloadType::Inquiry => 0x0110,
            PayloadType::Reply => 0x0111,
            PayloadType::DeviceSetting => 0x0120,
            PayloadType::Control => 0x0200,
            PayloadType::ControlReply => 0x0201,
        }
    }

    pub fn from_code(code: u16) -> Option<PayloadType> {
        [
            PayloadType::Command,
            PayloadType::Inquiry,
            PayloadType::Reply,
            PayloadType::DeviceSetting,
            PayloadType::Control,
            PayloadType::ControlReply,
        ]
        .into_iter()
        .find(|t| t.code() == code)
    }
}

/// Control payload `01`: RESET (the camera restarts its sequence numbers), and its reply.
pub const CONTROL_RESET: &[u8] = &[0x01];
/// Control reply payload `0F 01`: abnormal sequence number.
pub const CONTROL_ERROR_SEQUENCE: &[u8] = &[0x0F, 0x01];
/// Control reply payload `0F 02`: abnormal message type.
pub const CONTROL_ERROR_MESSAGE: &[u8] = &[0x0F, 0x02];

/// What a control reply's error payload means.
pub fn control_error_meaning(payload: &[u8]) -> Option<&'static str> {
    match payload {
        CONTROL_ERROR_SEQUENCE => Some("abnormal sequence number"),
        CONTROL_ERROR_MESSAGE => Some("abnormal message type"),
        _ => None,
    }
}

/// One VISCA over IP datagram: header and payload.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct IpMessage {
    pub kind: PayloadType,
    pub sequence: u32,
    pub payload: Vec<u8>,
}

impl IpMessage {
    pub fn new(kind: PayloadType, sequence: u32, payload: &[u8]) -> IpMessage {
        IpMessage {
            kind,
            sequence,
            payload: payload.to_vec(),
        }
    }

    pub fn encode(&self) -> Vec<u8> {
        let mut datagram = Vec::with_capacity(IP_HEADER + self.payload.len());
        datagram.extend_from_slice(&self.kind.code().to_be_bytes());
        datagram.extend_from_slice(&(self.payload.len() as u16).to_be_bytes());
        datagram.extend_from_slice(&self.sequence.to_be_bytes());
        datagram.extend_from_slice(&self.payload);
        datagram
    }

    /// Reads one whole datagram.
    pub fn parse(datagram: &[u8]) -> Result<IpMessage, FrameError> {
        let Some((header, payload)) = datagram.split_first_chunk::<IP_HEADER>() else {
            return Err(FrameError::ShortDatagram(hex(datagram)));
        };
        let code = u16::from_be_bytes([header[0], header[1]]);
        let announced = usize::from(u16::from_be_bytes([header[2], header[3]]));
        let sequence = u32::from_be_bytes([header[4], header[5], header[6], header[7]]);
        let kind = PayloadType::from_code(code).ok_or(FrameError::UnknownPayloadType(code))?;
        if announced != payload.len() {
            return Err(FrameError::LengthMismatch {
                announced,
                actual: payload.len(),
            });
        }
        if !(1..=MAX_PACKET).contains(&payload.len()) {
            return Err(FrameError::PayloadLength(payload.len()));
        }
        Ok(IpMessage {
            kind,
            sequence,
            payload: payload.to_vec(),
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// `"01 02 FF"` as bytes.
    fn bytes(text: &str) -> Vec<u8> {
        text.split_whitespace()
            .map(|b| u8::from_str_radix(b, 16).unwrap())
            .collect()
    }

    #[test]
    fn commands_encode_as_in_the_manuals() {
        let cases = [
            (Command::IfClear, 1, "81 01 00 01 FF"),
            (Command::IfClearAll, 3, "88 01 00 01 FF"),
            (Command::AddressSet, 1, "88 30 01 FF"),
            (Command::Power(true), 1, "81 01 04 00 02 FF"),
            (Command::Power(false), 2, "82 01 04 00 03 FF"),
            (Command::Zoom(Zoom::Stop), 1, "81 01 04 07 00 FF"),
            (Command::Zoom(Zoom::Tele(None)), 1, "81 01 04 07 02 FF"),
            (Command::Zoom(Zoom::Wide(None)), 1, "81 01 04 07 03 FF"),
            (Command::Zoom(Zoom::Tele(Some(5))), 1, "81 01 04 07 25 FF"),
            (Command::Zoom(Zoom::Wide(Some(0))), 1, "81 01 04 07 30 FF"),
            (Command::ZoomTo(0x1234), 1, "81 01 04 47 01 02 03 04 FF"),
            (Command::ZoomTo(ZOOM_MAX), 1, "81 01 04 47 04 00 00 00 FF"),
            (
                Command::PanTilt {
                    pan_speed: 5,
                    tilt_speed: 3,
                    pan: Pan::Right,
                    tilt: Tilt::Up,
                },
                1,
                "81 01 06 01 05 03 02 01 FF",
            ),
            (
                Command::PanTilt {
                    pan_speed: 0x18,
                    tilt_speed: 0x14,
                    pan: Pan::Stop,
                    tilt: Tilt::Stop,
                },
                1,
                "81 01 06 01 18 14 03 03 FF",
            ),
            (Command::Home, 1, "81 01 06 04 FF"),
            (
                Command::Preset {
                    action: PresetAction::Recall,
                    number: 2,
                },
                1,
                "81 01 04 3F 02 02 FF",
            ),
            (
                Command::Preset {
                    action: PresetAction::Set,
                    number: 127,
                },
                1,
                "81 01 04 3F 01 7F FF",
            ),
        ];
        for (command, address, wire) in cases {
            let packet = command.encode(address);
            assert_eq!(hex(&packet), wire, "{command:?}");
            let expected_address = if wire.starts_with("88") { 8 } else { address };
            assert_eq!(
                Message::parse(&packet),
                Some((expected_address, Some(Message::Command(command)))),
                "{wire}"
            );
        }
    }

    #[test]
    fn inquiries_encode_as_in_the_manuals() {
        let cases = [
            (Inquiry::Power, "81 09 04 00 FF"),
            (Inquiry::Zoom, "81 09 04 47 FF"),
            (Inquiry::PanTilt, "81 09 06 12 FF"),
        ];
        for (inquiry, wire) in cases {
            assert_eq!(hex(&inquiry.encode(1)), wire);
            assert_eq!(
                Message::parse(&bytes(wire)),
                Some((1, Some(Message::Inquiry(inquiry))))
            );
        }
    }

    #[test]
    fn unknown_or_malformed_controller_packets() {
        // Known address, unknown message: a camera answers a syntax error.
        assert_eq!(Message::parse(&bytes("81 01 7E 01 FF")), Some((1, None)));
        assert_eq!(Message::parse(&bytes("81 01 04 07 45 FF")), Some((1, None)));
        assert_eq!(
            Message::parse(&bytes("81 01 04 47 01 12 03 04 FF")),
            Some((1, None)),
            "a nibble byte above 0F"
        );
        assert_eq!(Message::parse(&bytes("88 09 04 00 FF")), Some((8, None)));
        // Not a controller packet at all.
        assert_eq!(Message::parse(&bytes("90 41 FF")), None);
        assert_eq!(Message::parse(&bytes("81 01 04")), None);
        assert_eq!(Message::parse(&[]), None);
    }

    #[test]
    fn replies_parse_and_encode() {
        let cases = [
            (
                "90 41 FF",
                Reply::Ack {
                    camera: 1,
                    socket: 1,
                },
            ),
            (
                "90 51 FF",
                Reply::Completion {
                    camera: 1,
                    socket: 1,
                    data: vec![],
                },
            ),
            (
                "A0 52 FF",
                Reply::Completion {
                    camera: 2,
                    socket: 2,
                    data: vec![],
                },
            ),
            (
                "90 50 02 FF",
                Reply::Completion {
                    camera: 1,
                    socket: 0,
                    data: vec![2],
                },
            ),
            (
                "90 50 01 02 03 04 FF",
                Reply::Completion {
                    camera: 1,
                    socket: 0,
                    data: vec![1, 2, 3, 4],
                },
            ),
            (
                "90 60 02 FF",
                Reply::Error {
                    camera: 1,
                    socket: 0,
                    code: ErrorCode::SYNTAX,
                },
            ),
            (
                "F0 61 41 FF",
                Reply::Error {
                    camera: 7,
                    socket: 1,
                    code: ErrorCode::NOT_EXECUTABLE,
                },
            ),
            ("88 30 02 FF", Reply::AddressSet { next: 2 }),
            ("88 01 00 01 FF", Reply::IfClearAll),
        ];
        for (wire, reply) in cases {
            assert_eq!(Reply::parse(&bytes(wire)), reply, "{wire}");
            assert_eq!(hex(&reply.encode()), wire);
        }
        for other in [
            "90 38 FF",
            "81 01 04 00 02 FF",
            "90 41",
            "90 FF",
            "80 41 FF",
        ] {
            assert_eq!(
                Reply::parse(&bytes(other)),
                Reply::Other(bytes(other)),
                "{other}"
            );
        }
    }

    #[test]
    fn every_error_code_has_words() {
        for (code, words) in [
            (ErrorCode::MESSAGE_LENGTH, "message length"),
            (ErrorCode::SYNTAX, "syntax"),
            (ErrorCode::BUFFER_FULL, "buffer full"),
            (ErrorCode::CANCELLED, "cancelled"),
            (ErrorCode::NO_SOCKET, "no socket"),
            (ErrorCode::NOT_EXECUTABLE, "not executable"),
            (ErrorCode(0x77), "unknown"),
        ] {
            assert!(code.meaning().contains(words), "{code}");
        }
        assert_eq!(ErrorCode::NOT_EXECUTABLE.to_string(), "error 41");
    }

    #[test]
    fn nibbles_round_trip() {
        assert_eq!(nibbles(0x1234), [1, 2, 3, 4]);
        assert_eq!(from_nibbles([0, 0x0F, 0, 1]), Some(0x0F01));
        assert_eq!(from_nibbles([0x10, 0, 0, 0]), None);
        assert_eq!(nibbles(0xFFF0), [0x0F, 0x0F, 0x0F, 0]);
    }

    #[test]
    fn reader_handles_any_chunking() {
        let stream = bytes("90 41 FF 90 51 FF 90 50 01 02 03 04 FF");
        for chunk in 1..=stream.len() {
            let mut reader = PacketReader::new();
            let mut packets = Vec::new();
            for piece in stream.chunks(chunk) {
                reader.push(piece);
                packets.extend(std::iter::from_fn(|| reader.next_packet()));
            }
            assert_eq!(
                packets.iter().map(|p| hex(p)).collect::<Vec<_>>(),
                ["90 41 FF", "90 51 FF", "90 50 01 02 03 04 FF"],
                "chunks of {chunk}"
            );
            assert_eq!(reader.take_discarded(), 0);
        }
    }

    #[test]
    fn a_camera_reads_preset_numbers_over_127_as_data() {
        let mut camera = PacketReader::commands();
        camera.push(&bytes("81 01 04 3F 02 C8 FF"));
        let packet = camera.next_packet().expect("one packet");
        assert_eq!(hex(&packet), "81 01 04 3F 02 C8 FF");
        assert_eq!(
            Message::parse(&packet),
            Some((
                1,
                Some(Message::Command(Command::Preset {
                    action: PresetAction::Recall,
                    number: 200
                }))
            ))
        );
        assert_eq!(
            Message::parse(&bytes("81 01 04 3F 02 FF")).and_then(|(_, m)| m),
            None,
            "no number"
        );
    }

    #[test]
    fn reader_resyncs_after_noise() {
        let mut reader = PacketReader::new();
        // Noise, a stray terminator, a packet cut short by a new header, then good ones.
        reader.push(&bytes("12 34 FF 7F 90 50 90 41 FF"));
        assert_eq!(
            reader.next_packet().map(|p| hex(&p)).as_deref(),
            Some("90 41 FF")
        );
        assert_eq!(reader.take_discarded(), 6);
        // A runaway packet is dropped, and the next one read.
        let mut runaway = vec![0x90];
        runaway.extend([0x01; 20]);
        reader.push(&runaway);
        reader.push(&bytes("90 51 FF"));
        assert_eq!(
            reader.next_packet().map(|p| hex(&p)).as_deref(),
            Some("90 51 FF")
        );
        assert_eq!(reader.next_packet(), None);
        assert!(reader.take_discarded() >= 21);
        assert!(reader.packet.len() < MAX_PACKET);
    }

    #[test]
    fn ip_datagrams_match_the_recorded_vectors() {
        let cases = [
            (
                IpMessage::new(PayloadType::Control, 1, CONTROL_RESET),
                "02 00 00 01 00 00 00 01 01",
            ),
            (
                IpMessage::new(PayloadType::ControlReply, 1, CONTROL_RESET),
                "02 01 00 01 00 00 00 01 01",
            ),
            (
                IpMessage::new(PayloadType::Command, 2, &Command::IfClear.encode(1)),
                "01 00 00 05 00 00 00 02 81 01 00 01 FF",
            ),
            (
                IpMessage::new(PayloadType::Reply, 2, &bytes("90 50 FF")),
                "01 11 00 03 00 00 00 02 90 50 FF",
            ),
            (
                IpMessage::new(PayloadType::Command, 3, &Command::Power(true).encode(1)),
                "01 00 00 06 00 00 00 03 81 01 04 00 02 FF",
            ),
            (
                IpMessage::new(PayloadType::Reply, 3, &bytes("90 41 FF")),
                "01 11 00 03 00 00 00 03 90 41 FF",
            ),
            (
                IpMessage::new(PayloadType::Reply, 7, &bytes("90 50 01 02 03 04 FF")),
                "01 11 00 07 00 00 00 07 90 50 01 02 03 04 FF",
            ),
            (
                IpMessage::new(
                    PayloadType::Command,
                    8,
                    &Command::PanTilt {
                        pan_speed: 5,
                        tilt_speed: 3,
                        pan: Pan::Right,
                        tilt: Tilt::Up,
                    }
                    .encode(1),
                ),
                "01 00 00 09 00 00 00 08 81 01 06 01 05 03 02 01 FF",
            ),
            (
                IpMessage::new(
                    PayloadType::Command,
                    9,
                    &Command::Preset {
                        action: PresetAction::Recall,
                        number: 2,
                    }
                    .encode(1),
                ),
                "01 00 00 07 00 00 00 09 81 01 04 3F 02 02 FF",
            ),
            (
                IpMessage::new(PayloadType::Inquiry, 0x0102_0304, &Inquiry::Zoom.encode(1)),
                "01 10 00 05 01 02 03 04 81 09 04 47 FF",
            ),
            (
                IpMessage::new(PayloadType::ControlReply, 5, CONTROL_ERROR_SEQUENCE),
                "02 01 00 02 00 00 00 05 0F 01",
            ),
        ];
        for (message, wire) in cases {
            assert_eq!(hex(&message.encode()), wire);
            assert_eq!(IpMessage::parse(&bytes(wire)), Ok(message), "{wire}");
        }
        assert_eq!(
            control_error_meaning(CONTROL_ERROR_MESSAGE),
            Some("abnormal message type")
        );
    }

    #[test]
    fn bad_ip_datagrams_are_refused() {
        assert_eq!(
            IpMessage::parse(&bytes("01 11 00 03 00 00")),
            Err(FrameError::ShortDatagram("01 11 00 03 00 00".into()))
        );
        assert_eq!(
            IpMessage::parse(&bytes("01 11 00 04 00 00 00 01 90 41 FF")),
            Err(FrameError::LengthMismatch {
                announced: 4,
                actual: 3
            })
        );
        assert_eq!(
            IpMessage::parse(&bytes("FF 41 00 03 00 00 00 01 90 41 FF")),
            Err(FrameError::UnknownPayloadType(0xFF41))
        );
        assert_eq!(
            IpMessage::parse(&bytes("01 11 00 00 00 00 00 01")),
            Err(FrameError::PayloadLength(0))
        );
        assert!(
            FrameError::LengthMismatch {
                announced: 4,
                actual: 3
            }
            .to_string()
            .contains("announces 4 payload bytes")
        );
    }
}
