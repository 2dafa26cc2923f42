//! What a VISCA camera answers, without any I/O.
//!
//! [`Model`] is a serial chain of one or more cameras (addresses 1..=n). Each camera has
//! power, a zoom lens and a pan/tilt head that move over time toward a target or at a
//! drive speed ([`Model::advance`] moves them; [`Model::settle`] finishes every move at
//! once), and a preset memory. It answers one packet at a time: a command gets ACK then
//! Completion (alternating sockets 1 and 2), an inquiry its answer, an unknown message a
//! syntax error, a motion command while in standby "not executable". A packet for an
//! address nobody on the chain has comes back unchanged, as it does round a real chain.
//!
//! [`IpPeer`] adds what Sony's VISCA over IP does per client: RESET, sequence numbers, and
//! answering a message that comes again with the same sequence number by repeating the
//! answer instead of carrying it out twice.

use std::collections::BTreeMap;
use std::time::Duration;

use super::frame::{
    self, Command, ErrorCode, FocusMode, Inquiry, IpMessage, Message, Pan, PayloadType,
    PresetAction, Reply, Tilt, Zoom,
};

/// Pan range of the modelled head, camera units (about ±170° on Sony EVI heads).
pub const PAN_LIMIT: i16 = 0x0990;
/// Tilt range of the modelled head, camera units.
pub const TILT_LIMIT: i16 = 0x04B0;

/// Zoom units per second at drive speed p: `(p + 1) * ZOOM_RATE` (speed 7 crosses the
/// whole range in two seconds); direct moves travel at the top speed.
const ZOOM_RATE: i32 = 1024;
/// Pan/tilt units per second per speed step.
const PAN_TILT_RATE: i32 = 100;
/// Drive speed when a zoom command names none.
const STANDARD_ZOOM_SPEED: u8 = 3;

/// How the modelled cameras start.
#[derive(Debug, Clone)]
pub struct Settings {
    /// Cameras on the chain (1 to 7); over IP only camera 1 answers.
    pub cameras: u8,
    pub power: bool,
    pub zoom: u16,
    pub pan: i16,
    pub tilt: i16,
}

impl Default for Settings {
    fn default() -> Settings {
        Settings {
            cameras: 1,
            power: true,
            zoom: 0,
            pan: 0,
            tilt: 0,
        }
    }
}

/// Where a preset points the camera.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct Position {
    pub zoom: u16,
    pub pan: i16,
    pub tilt: i16,
}

/// A snapshot of one camera, for tests to assert on.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CameraState {
    pub power: bool,
    pub zoom: u16,
    pub pan: i16,
    pub tilt: i16,
    /// Whether zoom, pan or tilt is still moving.
    pub moving: bool,
    pub presets: BTreeMap<u8, Position>,
}

/// How an axis moves.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Motion {
    Still,
    /// Units per second, signed.
    Drive(i32),
    /// Toward this position at the given units per second.
    Toward(i32, i32),
}

#[derive(Debug, Clone, Copy)]
struct Axis {
    position: i32,
    min: i32,
    max: i32,
    motion: Motion,
    /// Movement of less than one unit carried to the next step, so short steps add up.
    carry: f64,
}

impl Axis {
    fn new(position: i32, min: i32, max: i32) -> Axis {
        Axis {
            position: position.clamp(min, max),
            min,
            max,
            motion: Motion::Still,
            carry: 0.0,
        }
    }

    fn advance(&mut self, elapsed: Duration) {
        let rate = match self.motion {
            Motion::Still => return,
            Motion::Drive(rate) => rate,
            Motion::Toward(target, speed) => speed * (target - self.position).signum(),
        };
        self.carry += f64::from(rate) * elapsed.as_secs_f64();
        let step = self.carry.trunc();
        self.carry -= step;
        let step = step as i32;
        let mut next = self.position.saturating_add(step);
        if let Motion::Toward(target, _) = self.motion {
            let passed = (target - self.position).signum() != (target - next).signum();
            if next == target || passed {
                next = target;
                self.stop();
            }
        }
        self.position = next.clamp(self.min, self.max);
        // A drive stops at the end of the range, as the motor does.
        let at_end =
            (rate > 0 && self.position == self.max) || (rate < 0 && self.position == self.min);
        if at_end && matches!(self.motion, Motion::Drive(_)) {
            self.stop();
        }
    }

    fn settle(&mut self) {
        if let Motion::Toward(target, _) = self.motion {
            self.position = target.clamp(self.min, self.max);
        }
        self.stop();
    }

    fn stop(&mut self) {
        self.motion = Motion::Still;
        self.carry = 0.0;
    }

    fn go_to(&mut self, target: i32, speed: i32) {
        self.carry = 0.0;
        self.motion = Motion::Toward(target.clamp(self.min, self.max), speed);
    }
}

/// One camera on the chain.
#[derive(Debug, Clone)]
struct Camera {
    power: bool,
    zoom: Axis,
    pan: Axis,
    tilt: Axis,
    presets: BTreeMap<u8, Position>,
    focus_auto: bool,
    /// Manual focus position, `0x1000` (far) to `0xF000` (near) on Sony's scale.
    focus: u16,
    white_balance: u8,
    /// The socket the next command runs in (1 or 2).
    next_socket: u8,
}

impl Camera {
    fn new(settings: &Settings) -> Camera {
        Camera {
            power: settings.power,
            zoom: Axis::new(settings.zoom.into(), 0, frame::ZOOM_MAX.into()),
            pan: Axis::new(settings.pan.into(), -i32::from(PAN_LIMIT), PAN_LIMIT.into()),
            tilt: Axis::new(
                settings.tilt.into(),
                -i32::from(TILT_LIMIT),
                TILT_LIMIT.into(),
            ),
            presets: BTreeMap::new(),
            focus_auto: true,
            focus: 0x1000,
            white_balance: 0,
            next_socket: 1,
        }
    }

    fn axes(&mut self) -> [&mut Axis; 3] {
        [&mut self.zoom, &mut self.pan, &mut self.tilt]
    }

    fn position(&self) -> Position {
        Position {
            zoom: self.zoom.position as u16,
            pan: self.pan.position as i16,
            tilt: self.tilt.position as i16,
        }
    }

    fn state(&self) -> CameraState {
        let position = self.position();
        CameraState {
            power: self.power,
            zoom: position.zoom,
            pan: position.pan,
            tilt: position.tilt,
            moving: [self.zoom, self.pan, self.tilt]
                .iter()
                .any(|a| a.motion != Motion::Still),
            presets: self.presets.clone(),
        }
    }

    fn set_power(&mut self, on: bool) {
        self.power = on;
        if !on {
            for axis in self.axes() {
                axis.stop();
            }
        }
    }

    fn recall(&mut self, number: u8) {
        let target = self.presets.get(&number).copied().unwrap_or_default();
        let top = ZOOM_RATE * i32::from(frame::ZOOM_SPEED_MAX + 1);
        let pan_tilt = PAN_TILT_RATE * i32::from(frame::PAN_SPEED_MAX);
        self.zoom.go_to(target.zoom.into(), top);
        self.pan.go_to(target.pan.into(), pan_tilt);
        self.tilt.go_to(target.tilt.into(), pan_tilt);
    }

    /// Carries out a command the camera accepted.
    fn execute(&mut self, command: Command) {
        match command {
            Command::Power(on) => self.set_power(on),
            Command::Zoom(zoom) => {
                let rate = |speed: Option<u8>| {
                    ZOOM_RATE * (i32::from(speed.unwrap_or(STANDARD_ZOOM_SPEED)) + 1)
                };
                self.zoom.carry = 0.0;
                self.zoom.motion = match zoom {
                    Zoom::Stop => Motion::Still,
                    Zoom::Tele(speed) => Motion::Drive(rate(speed)),
                    Zoom::Wide(speed) => Motion::Drive(-rate(speed)),
                };
            }
            Command::ZoomTo(position) => {
                let top = ZOOM_RATE * i32::from(frame::ZOOM_SPEED_MAX + 1);
                self.zoom.go_to(position.into(), top);
            }
            Command::PanTilt {
                pan_speed,
                tilt_speed,
                pan,
                tilt,
            } => {
                let pan_rate = PAN_TILT_RATE * i32::from(pan_speed);
                let tilt_rate = PAN_TILT_RATE * i32::from(tilt_speed);
                self.pan.carry = 0.0;
                self.tilt.carry = 0.0;
                self.pan.motion = match pan {
                    Pan::Left => Motion::Drive(-pan_rate),
                    Pan::Right => Motion::Drive(pan_rate),
                    Pan::Stop => Motion::Still,
                };
                self.tilt.motion = match tilt {
                    Tilt::Up => Motion::Drive(tilt_rate),
                    Tilt::Down => Motion::Drive(-tilt_rate),
                    Tilt::Stop => Motion::Still,
                };
            }
            Command::Home => {
                let speed = PAN_TILT_RATE * i32::from(frame::PAN_SPEED_MAX);
                self.pan.go_to(0, speed);
                self.tilt.go_to(0, speed);
            }
            Command::Preset { action, number } => match action {
                PresetAction::Set => {
                    let position = self.position();
                    self.presets.insert(number, position);
                }
                PresetAction::Reset => {
                    self.presets.remove(&number);
                }
                PresetAction::Recall => self.recall(number),
            },
            Command::PanTiltTo {
                pan_speed,
                tilt_speed,
                pan,
                tilt,
            } => {
                // One speed for both on newer models (`WW` = 0).
                let tilt_speed = if tilt_speed == 0 {
                    pan_speed
                } else {
                    tilt_speed
                };
                self.pan
                    .go_to(pan.into(), PAN_TILT_RATE * i32::from(pan_speed.max(1)));
                self.tilt
                    .go_to(tilt.into(), PAN_TILT_RATE * i32::from(tilt_speed.max(1)));
            }
            Command::FocusMode(mode) => {
                self.focus_auto = match mode {
                    FocusMode::Auto => true,
                    FocusMode::Manual => false,
                    FocusMode::Toggle => !self.focus_auto,
                }
            }
            Command::FocusTo(position) => self.focus = position,
            Command::WhiteBalance(mode) => self.white_balance = mode,
            Command::IfClear | Command::IfClearAll | Command::AddressSet => {}
        }
    }

    /// Why the camera refuses a command in its current state, if it does: manual focus
    /// while in auto focus is not executable, as on Sony cameras.
    fn refuses(&self, command: Command) -> bool {
        (!self.power && needs_power(command))
            || (self.focus_auto && matches!(command, Command::FocusTo(_)))
    }

    fn inquire(&self, inquiry: Inquiry) -> Vec<u8> {
        let position = self.position();
        match inquiry {
            Inquiry::Power => vec![if self.power { 0x02 } else { 0x03 }],
            Inquiry::Zoom => frame::nibbles(position.zoom).to_vec(),
            Inquiry::PanTilt => {
                let mut data = frame::nibbles(position.pan as u16).to_vec();
                data.extend(frame::nibbles(position.tilt as u16));
                data
            }
            Inquiry::FocusMode => vec![if self.focus_auto { 0x02 } else { 0x03 }],
            Inquiry::Focus => frame::nibbles(self.focus).to_vec(),
            Inquiry::WhiteBalance => vec![self.white_balance],
        }
    }

    fn take_socket(&mut self) -> u8 {
        let socket = self.next_socket;
        self.next_socket = if socket == 1 { 2 } else { 1 };
        socket
    }
}

/// Commands a camera in standby refuses.
fn needs_power(command: Command) -> bool {
    !matches!(
        command,
        Command::Power(_) | Command::IfClear | Command::IfClearAll | Command::AddressSet
    )
}

/// The chain of cameras.
#[derive(Debug, Clone)]
pub struct Model {
    cameras: Vec<Camera>,
}

impl Model {
    pub fn new(settings: Settings) -> Model {
        let count = settings.cameras.clamp(1, 7);
        Model {
            cameras: (0..count).map(|_| Camera::new(&settings)).collect(),
        }
    }

    /// Camera `address`'s state, if the chain has it.
    pub fn camera(&self, address: u8) -> Option<CameraState> {
        self.index(address).map(|i| self.cameras[i].state())
    }

    /// Moves every axis on by `elapsed`.
    pub fn advance(&mut self, elapsed: Duration) {
        for camera in &mut self.cameras {
            for axis in camera.axes() {
                axis.advance(elapsed);
            }
        }
    }

    /// Finishes every move toward a target and stops every drive.
    pub fn settle(&mut self) {
        for camera in &mut self.cameras {
            for axis in camera.axes() {
                axis.settle();
            }
        }
    }

    /// Front panel: power on or standby.
    pub fn set_power(&mut self, address: u8, on: bool) -> bool {
        self.with(address, |c| c.set_power(on))
    }

    /// Front panel: put the lens at `zoom` at once.
    pub fn set_zoom(&mut self, address: u8, zoom: u16) -> bool {
        self.with(address, |c| {
            c.zoom = Axis::new(zoom.into(), c.zoom.min, c.zoom.max);
        })
    }

    /// Front panel: put the head at `pan`, `tilt` at once.
    pub fn set_pan_tilt(&mut self, address: u8, pan: i16, tilt: i16) -> bool {
        self.with(address, |c| {
            c.pan = Axis::new(pan.into(), c.pan.min, c.pan.max);
            c.tilt = Axis::new(tilt.into(), c.tilt.min, c.tilt.max);
        })
    }

    /// Front panel: store `position` as preset `number`.
    pub fn store_preset(&mut self, address: u8, number: u8, position: Position) -> bool {
        self.with(address, |c| {
            c.presets.insert(number, position);
        })
    }

    /// Answers one packet (terminator included) with the packets a chain sends back, in
    /// order; none for bytes that are not a controller's packet.
    pub fn answer(&mut self, packet: &[u8]) -> Vec<Vec<u8>> {
        let Some((address, message)) = Message::parse(packet) else {
            return Vec::new();
        };
        if address == frame::BROADCAST {
            return match message {
                Some(Message::Command(Command::IfClearAll)) => vec![Reply::IfClearAll.encode()],
                Some(Message::Command(Command::AddressSet)) => {
                    let next = self.cameras.len() as u8 + 1;
                    vec![Reply::AddressSet { next }.encode()]
                }
                _ => Vec::new(),
            };
        }
        let Some(index) = self.index(address) else {
            return vec![packet.to_vec()];
        };
        let camera = &mut self.cameras[index];
        let reply = |reply: Reply| reply.encode();
        let error = |socket: u8, code: ErrorCode| {
            reply(Reply::Error {
                camera: address,
                socket,
                code,
            })
        };
        if packet.len() > frame::MAX_PACKET {
            return vec![error(0, ErrorCode::MESSAGE_LENGTH)];
        }
        match message {
            None => vec![error(0, ErrorCode::SYNTAX)],
            Some(Message::Inquiry(inquiry)) => vec![reply(Reply::Completion {
                camera: address,
                socket: 0,
                data: camera.inquire(inquiry),
            })],
            Some(Message::Command(Command::IfClear)) => vec![reply(Reply::Completion {
                camera: address,
                socket: 0,
                data: Vec::new(),
            })],
            Some(Message::Command(command)) => {
                let socket = camera.take_socket();
                if camera.refuses(command) {
                    return vec![error(socket, ErrorCode::NOT_EXECUTABLE)];
                }
                camera.execute(command);
                vec![
                    reply(Reply::Ack {
                        camera: address,
                        socket,
                    }),
                    reply(Reply::Completion {
                        camera: address,
                        socket,
                        data: Vec::new(),
                    }),
                ]
            }
        }
    }

    fn index(&self, address: u8) -> Option<usize> {
        let index = usize::from(address).checked_sub(1)?;
        (index < self.cameras.len()).then_some(index)
    }

    fn with(&mut self, address: u8, change: impl FnOnce(&mut Camera)) -> bool {
        match self.index(address) {
            Some(index) => {
                change(&mut self.cameras[index]);
                true
            }
            None => false,
        }
    }
}

/// One VISCA over IP client as the camera sees it.
#[derive(Debug, Default)]
pub struct IpPeer {
    /// The last message carried out and the reply datagrams it got.
    last: Option<(u32, Vec<IpMessage>)>,
}

/// What a datagram came to.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct IpAnswer {
    /// Reply datagrams, in order.
    pub replies: Vec<IpMessage>,
    /// The VISCA packet the datagram carried, if it carried one.
    pub packet: Option<Vec<u8>>,
    /// The packet came again with the last sequence number: its answer was repeated and
    /// nothing was carried out.
    pub repeated: bool,
}

impl IpPeer {
    /// Handles one datagram; `answer` carries out a VISCA packet (normally
    /// [`Model::answer`]). Malformed datagrams get no answer, as from a camera; a payload
    /// type a camera does not take is answered with the control error "abnormal message
    /// type".
    pub fn datagram(
        &mut self,
        datagram: &[u8],
        answer: impl FnOnce(&[u8]) -> Vec<Vec<u8>>,
    ) -> IpAnswer {
        let mut result = IpAnswer {
            replies: Vec::new(),
            packet: None,
            repeated: false,
        };
        let Ok(message) = IpMessage::parse(datagram) else {
            return result;
        };
        let sequence = message.sequence;
        match message.kind {
            PayloadType::Control if message.payload == frame::CONTROL_RESET => {
                self.last = None;
                result.replies.push(IpMessage::new(
                    PayloadType::ControlReply,
                    sequence,
                    frame::CONTROL_RESET,
                ));
            }
            // Clients send inquiries as `01 00` too (visca-over-ip does); the packet
            // itself says which it is.
            PayloadType::Command | PayloadType::Inquiry => {
                result.packet = Some(message.payload.clone());
                match &self.last {
                    Some((last, replies)) if *last == sequence => {
                        result.repeated = true;
                        result.replies = replies.clone();
                    }
                    _ => {
                        result.replies = answer(&message.payload)
                            .iter()
                            .map(|packet| IpMessage::new(PayloadType::Reply, sequence, packet))
                            .collect();
                        self.last = Some((sequence, result.replies.clone()));
                    }
                }
            }
            _ => result.replies.push(IpMessage::new(
                PayloadType::ControlReply,
                sequence,
                frame::CONTROL_ERROR_MESSAGE,
            )),
        }
        result
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::visca::frame::hex;

    fn bytes(text: &str) -> Vec<u8> {
        text.split_whitespace()
            .map(|b| u8::from_str_radix(b, 16).unwrap())
            .collect()
    }

    fn ask(model: &mut Model, wire: &str) -> Vec<String> {
        model.answer(&bytes(wire)).iter().map(|p| hex(p)).collect()
    }

    #[test]
    fn commands_get_ack_then_completion_in_alternating_sockets() {
        let mut m = Model::new(Settings::default());
        assert_eq!(ask(&mut m, "81 01 04 00 03 FF"), ["90 41 FF", "90 51 FF"]);
        assert!(!m.camera(1).unwrap().power);
        assert_eq!(ask(&mut m, "81 09 04 00 FF"), ["90 50 03 FF"]);
        assert_eq!(ask(&mut m, "81 01 04 00 02 FF"), ["90 42 FF", "90 52 FF"]);
        assert_eq!(ask(&mut m, "81 09 04 00 FF"), ["90 50 02 FF"]);
        assert_eq!(ask(&mut m, "81 01 00 01 FF"), ["90 50 FF"]);
    }

    #[test]
    fn errors() {
        let mut m = Model::new(Settings::default());
        assert_eq!(ask(&mut m, "81 01 7E 01 FF"), ["90 60 02 FF"]);
        assert_eq!(ask(&mut m, "81 09 7E 7E FF"), ["90 60 02 FF"]);
        let long = format!("81 01 {} FF", ["01"; 15].join(" "));
        assert_eq!(ask(&mut m, &long), ["90 60 01 FF"]);
        ask(&mut m, "81 01 04 00 03 FF");
        assert_eq!(ask(&mut m, "81 01 04 47 01 00 00 00 FF"), ["90 62 41 FF"]);
        assert_eq!(ask(&mut m, "81 01 06 01 05 05 01 03 FF"), ["90 61 41 FF"]);
        assert_eq!(m.camera(1).unwrap().zoom, 0, "standby: nothing moved");
        assert_eq!(ask(&mut m, "90 41 FF"), Vec::<String>::new());
    }

    #[test]
    fn absolute_pan_tilt_moves_to_the_position_and_reports_it() {
        let mut m = Model::new(Settings::default());
        // Pan +45° (0x0288), tilt −3 units, on the computed vector's speeds.
        let answer = ask(&mut m, "81 01 06 02 18 14 00 02 08 08 0F 0F 0F 0D FF");
        assert_eq!(answer, ["90 41 FF", "90 51 FF"]);
        m.settle();
        let camera = m.camera(1).unwrap();
        assert_eq!((camera.pan, camera.tilt), (0x0288, -3));
        assert_eq!(
            ask(&mut m, "81 09 06 12 FF"),
            ["90 50 00 02 08 08 0F 0F 0F 0D FF"]
        );
        // Newer models: one speed, second byte 00.
        ask(&mut m, "81 01 06 02 10 00 0F 0D 07 08 00 00 00 00 FF");
        m.settle();
        assert_eq!(m.camera(1).unwrap().pan, -0x0288);
    }

    #[test]
    fn focus_is_auto_until_set_manual_and_then_takes_a_position() {
        let mut m = Model::new(Settings::default());
        assert_eq!(ask(&mut m, "81 09 04 38 FF"), ["90 50 02 FF"]);
        assert_eq!(
            ask(&mut m, "81 01 04 48 02 00 00 00 FF"),
            ["90 61 41 FF"],
            "manual focus while in auto is not executable"
        );
        assert_eq!(ask(&mut m, "81 01 04 38 03 FF"), ["90 42 FF", "90 52 FF"]);
        assert_eq!(
            ask(&mut m, "81 01 04 48 02 00 00 00 FF"),
            ["90 41 FF", "90 51 FF"]
        );
        assert_eq!(ask(&mut m, "81 09 04 48 FF"), ["90 50 02 00 00 00 FF"]);
        assert_eq!(ask(&mut m, "81 09 04 38 FF"), ["90 50 03 FF"]);
    }

    #[test]
    fn presets_above_127_are_stored_and_recalled() {
        let mut m = Model::new(Settings::default());
        m.with(1, |camera| camera.pan.position = 300);
        assert_eq!(
            ask(&mut m, "81 01 04 3F 01 C8 FF"),
            ["90 41 FF", "90 51 FF"]
        );
        assert_eq!(m.camera(1).unwrap().presets[&200].pan, 300);
        assert_eq!(
            ask(&mut m, "81 01 04 3F 02 FE FF"),
            ["90 42 FF", "90 52 FF"]
        );
    }

    #[test]
    fn white_balance_modes_are_set_and_read() {
        let mut m = Model::new(Settings::default());
        assert_eq!(ask(&mut m, "81 09 04 35 FF"), ["90 50 00 FF"]);
        assert_eq!(ask(&mut m, "81 01 04 35 02 FF"), ["90 41 FF", "90 51 FF"]);
        assert_eq!(ask(&mut m, "81 09 04 35 FF"), ["90 50 02 FF"]);
        assert_eq!(ask(&mut m, "81 01 04 35 09 FF"), ["90 60 02 FF"]);
    }

    #[test]
    fn zoom_moves_toward_its_target_over_time() {
        let mut m = Model::new(Settings::default());
        ask(&mut m, "81 01 04 47 01 00 00 00 FF");
        assert!(m.camera(1).unwrap().moving);
        m.advance(Duration::from_millis(250));
        let zoom = m.camera(1).unwrap().zoom;
        assert!(zoom > 0 && zoom < 0x1000, "{zoom:#x}");
        m.advance(Duration::from_secs(5));
        let camera = m.camera(1).unwrap();
        assert_eq!((camera.zoom, camera.moving), (0x1000, false));
        assert_eq!(ask(&mut m, "81 09 04 47 FF"), ["90 50 01 00 00 00 FF"]);
        // Tele drive until the end of the range, then wide and stop.
        ask(&mut m, "81 01 04 07 27 FF");
        m.advance(Duration::from_secs(10));
        assert_eq!(m.camera(1).unwrap().zoom, frame::ZOOM_MAX);
        assert!(!m.camera(1).unwrap().moving);
        ask(&mut m, "81 01 04 07 30 FF");
        m.advance(Duration::from_secs(1));
        ask(&mut m, "81 01 04 07 00 FF");
        let zoom = m.camera(1).unwrap().zoom;
        assert_eq!(zoom, frame::ZOOM_MAX - 1024);
        m.advance(Duration::from_secs(1));
        assert_eq!(m.camera(1).unwrap().zoom, zoom, "stopped");
    }

    #[test]
    fn pan_tilt_drives_and_reports_signed_positions() {
        let mut m = Model::new(Settings::default());
        // Left and down at speed 5: -500 and -500 units per second.
        ask(&mut m, "81 01 06 01 05 05 01 02 FF");
        m.advance(Duration::from_millis(100));
        ask(&mut m, "81 01 06 01 05 05 03 03 FF");
        let camera = m.camera(1).unwrap();
        assert_eq!((camera.pan, camera.tilt), (-50, -50));
        assert_eq!(
            ask(&mut m, "81 09 06 12 FF"),
            ["90 50 0F 0F 0C 0E 0F 0F 0C 0E FF"]
        );
        ask(&mut m, "81 01 06 04 FF");
        m.settle();
        assert_eq!(
            ask(&mut m, "81 09 06 12 FF"),
            ["90 50 00 00 00 00 00 00 00 00 FF"]
        );
    }

    #[test]
    fn presets_store_and_recall() {
        let mut m = Model::new(Settings::default());
        m.set_pan_tilt(1, 300, -20);
        m.set_zoom(1, 0x2000);
        assert_eq!(
            ask(&mut m, "81 01 04 3F 01 05 FF"),
            ["90 41 FF", "90 51 FF"]
        );
        m.set_pan_tilt(1, 0, 0);
        m.set_zoom(1, 0);
        ask(&mut m, "81 01 04 3F 02 05 FF");
        m.settle();
        let camera = m.camera(1).unwrap();
        assert_eq!((camera.zoom, camera.pan, camera.tilt), (0x2000, 300, -20));
        assert_eq!(
            camera.presets.get(&5),
            Some(&Position {
                zoom: 0x2000,
                pan: 300,
                tilt: -20
            })
        );
    }

    #[test]
    fn a_chain_of_cameras() {
        let mut m = Model::new(Settings {
            cameras: 3,
            ..Settings::default()
        });
        assert_eq!(ask(&mut m, "88 30 01 FF"), ["88 30 04 FF"]);
        assert_eq!(ask(&mut m, "88 01 00 01 FF"), ["88 01 00 01 FF"]);
        assert_eq!(ask(&mut m, "83 01 04 00 03 FF"), ["B0 41 FF", "B0 51 FF"]);
        assert_eq!(ask(&mut m, "82 01 00 01 FF"), ["A0 50 FF"]);
        assert!(m.camera(1).unwrap().power);
        assert!(!m.camera(3).unwrap().power);
        // Nobody is camera 5: the packet comes back round the chain.
        assert_eq!(ask(&mut m, "85 09 04 00 FF"), ["85 09 04 00 FF"]);
        assert_eq!(m.camera(5), None);
        assert!(!m.set_power(5, true));
    }

    #[test]
    fn ip_peer_repeats_the_answer_to_a_resent_message() {
        let mut m = Model::new(Settings::default());
        let mut peer = IpPeer::default();
        let mut ask_ip = |m: &mut Model, wire: &str| {
            let answer = peer.datagram(&bytes(wire), |p| m.answer(p));
            let replies: Vec<String> = answer.replies.iter().map(|r| hex(&r.encode())).collect();
            (replies, answer.repeated)
        };
        assert_eq!(
            ask_ip(&mut m, "02 00 00 01 00 00 00 01 01"),
            (vec!["02 01 00 01 00 00 00 01 01".to_string()], false)
        );
        // Zoom tele drive twice with the same sequence number: one drive.
        let tele = "01 00 00 06 00 00 00 02 81 01 04 07 27 FF";
        let first = ask_ip(&mut m, tele);
        assert_eq!(
            first,
            (
                vec![
                    "01 11 00 03 00 00 00 02 90 41 FF".to_string(),
                    "01 11 00 03 00 00 00 02 90 51 FF".to_string()
                ],
                false
            )
        );
        assert_eq!(ask_ip(&mut m, tele), (first.0.clone(), true));
        // The next sequence number is carried out: socket 2 now, not 3 sockets in.
        let (replies, repeated) = ask_ip(&mut m, "01 00 00 06 00 00 00 03 81 01 04 07 00 FF");
        assert!(!repeated);
        assert_eq!(replies[0], "01 11 00 03 00 00 00 03 90 42 FF");
        // Inquiries sent as `01 00`, as visca-over-ip does, are answered too.
        let (replies, _) = ask_ip(&mut m, "01 00 00 05 00 00 00 04 81 09 04 00 FF");
        assert_eq!(replies, ["01 11 00 04 00 00 00 04 90 50 02 FF"]);
        // Unknown payload types get the control error; garbage gets nothing.
        let (replies, _) = ask_ip(&mut m, "01 20 00 01 00 00 00 05 01");
        assert_eq!(replies, ["02 01 00 02 00 00 00 05 0F 02"]);
        assert_eq!(ask_ip(&mut m, "01 00 00").0, Vec::<String>::new());
    }
}
