//! What Samsung displays answer, without any I/O.
//!
//! [`Model`] stands for every display on one line: an RS-232 daisy chain (or one display
//! on TCP 1515), each display with its own id and state. A frame addressed to a display
//! in the set is answered by that display; one addressed to an id nobody has gets no
//! answer at all, as on a real chain; the broadcast id 0xFE is carried out by every
//! display and answered by none.
//!
//! Each display knows STATUS (0x00), reads and writes power (0x11), volume (0x12), mute
//! (0x13), input source (0x14) and picture aspect (0x15), and answers the serial number
//! (0x0B), software version (0x0E), model name (0x8A), model number (0x10), error status
//! (0x0D) and video settings (0x04) queries. Everything else, and any value out of range,
//! gets a NAK. Samsung's NAK error codes are not confirmed (PROTOCOLS.md §8), so the two this
//! model sends, [`NAK_UNSUPPORTED`] and [`NAK_BAD_VALUE`], are its own choice.

use std::collections::BTreeMap;

use super::frame::{BROADCAST, Command, Frame, Reply, Setting, Status, source_by_code};

/// NAK code for a command the model does not know (or a data length that does not fit).
pub const NAK_UNSUPPORTED: u8 = 0x01;
/// NAK code for a value out of range: volume over 100, a source the display cannot
/// select, a power or mute value other than those listed in [`Setting`].
pub const NAK_BAD_VALUE: u8 = 0x02;

/// Highest volume a display takes.
pub const VOLUME_MAX: u8 = 100;

/// One display's state.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct DisplayState {
    pub power: bool,
    /// 0 to [`VOLUME_MAX`].
    pub volume: u8,
    pub mute: bool,
    /// A source code (0x21 is HDMI 1).
    pub input: u8,
    /// Picture aspect code, only reported in status (0x10 is PC 16:9).
    pub aspect: u8,
}

impl Default for DisplayState {
    /// In standby, HDMI 1 selected, volume 30: what a fresh display in a meeting room has.
    fn default() -> DisplayState {
        DisplayState {
            power: false,
            volume: 30,
            mute: false,
            input: 0x21,
            aspect: 0x10,
        }
    }
}

impl DisplayState {
    fn status(&self) -> Status {
        Status {
            power: u8::from(self.power),
            volume: self.volume,
            mute: u8::from(self.mute),
            input: self.input,
            aspect: Some(self.aspect),
        }
    }

    fn get(&self, setting: Setting) -> u8 {
        match setting {
            Setting::Power => u8::from(self.power),
            Setting::Volume => self.volume,
            Setting::Mute => u8::from(self.mute),
            Setting::Input => self.input,
        }
    }

    /// Applies a write; `false` for a value the display does not take.
    fn set(&mut self, setting: Setting, value: u8) -> bool {
        match (setting, value) {
            // 2 is reboot: the display comes back on.
            (Setting::Power, 0..=2) => self.power = value != 0,
            (Setting::Volume, 0..=VOLUME_MAX) => self.volume = value,
            (Setting::Mute, 0 | 1) => self.mute = value == 1,
            (Setting::Input, code) if selectable(code) => self.input = code,
            _ => return false,
        }
        true
    }
}

fn selectable(code: u8) -> bool {
    source_by_code(code).is_some_and(|s| s.selectable)
}

/// Why a front-panel change was refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum PanelError {
    #[error("no display with id {0} on this line")]
    NoSuchDisplay(u8),
    #[error("volume {0} is over {VOLUME_MAX}")]
    Volume(u8),
    #[error("0x{0:02x} is not an input source a display can select")]
    Input(u8),
}

/// The displays on one line, by id.
#[derive(Debug, Clone)]
pub struct Model {
    displays: BTreeMap<u8, DisplayState>,
}

impl Model {
    /// Displays with these ids, each starting in `initial`. The broadcast id 0xFE and
    /// the reply marker 0xFF are not display ids and are left out.
    pub fn new(ids: &[u8], initial: DisplayState) -> Model {
        Model {
            displays: ids
                .iter()
                .filter(|id| **id < BROADCAST)
                .map(|id| (*id, initial))
                .collect(),
        }
    }

    /// Whether a display with this id is on the line (and so answers it).
    pub fn answers(&self, id: u8) -> bool {
        self.displays.contains_key(&id)
    }

    pub fn state(&self, id: u8) -> Option<DisplayState> {
        self.displays.get(&id).copied()
    }

    /// Carries out a frame. `None` when nobody answers: an id not on the line, or a
    /// broadcast (carried out by every display).
    pub fn answer(&mut self, frame: &Frame) -> Option<Reply> {
        if frame.id == BROADCAST {
            for state in self.displays.values_mut() {
                let _ = execute(state, frame);
            }
            return None;
        }
        let state = self.displays.get_mut(&frame.id)?;
        Some(match execute(state, frame) {
            Ok(data) => Reply::Ack {
                id: frame.id,
                cmd: frame.cmd,
                data,
            },
            Err(code) => Reply::Nak {
                id: frame.id,
                cmd: frame.cmd,
                code,
            },
        })
    }

    /// Front panel or remote control: power button.
    pub fn set_power(&mut self, id: u8, on: bool) -> Result<(), PanelError> {
        self.display(id)?.power = on;
        Ok(())
    }

    pub fn set_volume(&mut self, id: u8, level: u8) -> Result<(), PanelError> {
        if level > VOLUME_MAX {
            return Err(PanelError::Volume(level));
        }
        self.display(id)?.volume = level;
        Ok(())
    }

    pub fn set_mute(&mut self, id: u8, on: bool) -> Result<(), PanelError> {
        self.display(id)?.mute = on;
        Ok(())
    }

    /// Source button: `code` must be a source a display can select.
    pub fn set_input(&mut self, id: u8, code: u8) -> Result<(), PanelError> {
        if !selectable(code) {
            return Err(PanelError::Input(code));
        }
        self.display(id)?.input = code;
        Ok(())
    }

    fn display(&mut self, id: u8) -> Result<&mut DisplayState, PanelError> {
        self.displays
            .get_mut(&id)
            .ok_or(PanelError::NoSuchDisplay(id))
    }
}

/// Read-only identity and health queries (python-samsung-mdc's names), answered with
/// what a display of the QM series reports. Strings run to the end of the data.
pub const SERIAL_NUMBER: u8 = 0x0B;
pub const SOFTWARE_VERSION: u8 = 0x0E;
pub const MODEL_NAME: u8 = 0x8A;
/// Species (2: LCD), model code, TV support (0: none).
pub const MODEL_NUMBER: u8 = 0x10;
/// Lamp, temperature, brightness sensor and no-sync errors (0: fine), the temperature in
/// °C, the fan error.
pub const DISPLAY_STATUS: u8 = 0x0D;
/// Contrast, brightness, sharpness, colour, tint, colour tone, colour temperature.
pub const VIDEO: u8 = 0x04;
/// The picture aspect, read and written.
pub const PICTURE_ASPECT: u8 = 0x15;

/// What the model's displays report for [`SERIAL_NUMBER`], [`SOFTWARE_VERSION`] and
/// [`MODEL_NAME`].
pub const SIM_SERIAL_NUMBER: &str = "0K1F3CAM200123T";
pub const SIM_SOFTWARE_VERSION: &str = "S-KTM4WWC-1010.3";
pub const SIM_MODEL_NAME: &str = "QM55R";

/// One display carries out one frame: the ACK data, or a NAK code.
fn execute(state: &mut DisplayState, frame: &Frame) -> Result<Vec<u8>, u8> {
    match (frame.cmd, frame.data.as_slice()) {
        (SERIAL_NUMBER, []) => return Ok(SIM_SERIAL_NUMBER.as_bytes().to_vec()),
        (SOFTWARE_VERSION, []) => return Ok(SIM_SOFTWARE_VERSION.as_bytes().to_vec()),
        (MODEL_NAME, []) => return Ok(SIM_MODEL_NAME.as_bytes().to_vec()),
        (MODEL_NUMBER, []) => return Ok(vec![0x02, 0x01, 0x00]),
        (DISPLAY_STATUS, []) => return Ok(vec![0, 0, 0, u8::from(!state.power), 38, 0]),
        (VIDEO, []) => return Ok(vec![50, 50, 50, 50, 50, 2, 0]),
        (PICTURE_ASPECT, []) => return Ok(vec![state.aspect]),
        (PICTURE_ASPECT, [aspect]) => {
            state.aspect = *aspect;
            return Ok(vec![*aspect]);
        }
        _ => {}
    }
    match Command::from_frame(frame).ok_or(NAK_UNSUPPORTED)? {
        Command::Status => Ok(state.status().encode()),
        Command::Get(setting) => Ok(vec![state.get(setting)]),
        Command::Set(setting, value) => {
            if state.set(setting, value) {
                Ok(vec![value])
            } else {
                Err(NAK_BAD_VALUE)
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::mdc::frame::hex;

    fn ask(model: &mut Model, frame: Frame) -> Option<String> {
        model.answer(&frame).map(|reply| hex(&reply.encode()))
    }

    fn set(setting: Setting, value: u8, id: u8) -> Frame {
        Command::Set(setting, value).frame(id)
    }

    #[test]
    fn answers_the_vectors() {
        let mut m = Model::new(
            &[0, 1],
            DisplayState {
                power: true,
                volume: 25,
                ..DisplayState::default()
            },
        );
        assert_eq!(
            ask(&mut m, Command::Status.frame(0)).as_deref(),
            Some("AA FF 00 09 41 00 01 19 00 21 10 00 00 94")
        );
        assert_eq!(
            ask(&mut m, set(Setting::Power, 1, 1)).as_deref(),
            Some("AA FF 01 03 41 11 01 56")
        );
        assert_eq!(
            ask(&mut m, set(Setting::Volume, 50, 1)).as_deref(),
            Some("AA FF 01 03 41 12 32 88")
        );
        assert_eq!(
            ask(&mut m, set(Setting::Volume, 0x18, 0)).as_deref(),
            Some("AA FF 00 03 41 12 18 6D")
        );
        assert_eq!(
            ask(&mut m, Command::Get(Setting::Volume).frame(1)).as_deref(),
            Some("AA FF 01 03 41 12 32 88")
        );
    }

    #[test]
    fn identity_error_status_video_and_aspect_queries_are_answered() {
        let mut m = Model::new(&[1], DisplayState::default());
        let ack = |cmd: u8, data: &[u8]| {
            Some(hex(&Reply::Ack {
                id: 1,
                cmd,
                data: data.to_vec(),
            }
            .encode()))
        };
        assert_eq!(
            ask(&mut m, Frame::new(SERIAL_NUMBER, 1, [])),
            ack(SERIAL_NUMBER, b"0K1F3CAM200123T")
        );
        assert_eq!(
            ask(&mut m, Frame::new(SOFTWARE_VERSION, 1, [])),
            ack(SOFTWARE_VERSION, b"S-KTM4WWC-1010.3")
        );
        assert_eq!(
            ask(&mut m, Frame::new(MODEL_NAME, 1, [])).as_deref(),
            Some("AA FF 01 07 41 8A 51 4D 35 35 52 2C"),
            "the vector for QM55R"
        );
        assert_eq!(
            ask(&mut m, Frame::new(MODEL_NUMBER, 1, [])),
            ack(MODEL_NUMBER, &[2, 1, 0])
        );
        assert_eq!(
            ask(&mut m, Frame::new(DISPLAY_STATUS, 1, [])),
            ack(DISPLAY_STATUS, &[0, 0, 0, 1, 38, 0]),
            "no sync in standby"
        );
        assert_eq!(
            ask(&mut m, Frame::new(VIDEO, 1, [])),
            ack(VIDEO, &[50, 50, 50, 50, 50, 2, 0])
        );
        assert_eq!(
            ask(&mut m, Frame::new(PICTURE_ASPECT, 1, [0x18])),
            ack(PICTURE_ASPECT, &[0x18])
        );
        assert_eq!(
            ask(&mut m, Frame::new(PICTURE_ASPECT, 1, [])),
            ack(PICTURE_ASPECT, &[0x18])
        );
        assert_eq!(m.state(1).unwrap().aspect, 0x18);
    }

    #[test]
    fn each_display_keeps_its_own_state() {
        let mut m = Model::new(&[1, 2], DisplayState::default());
        ask(&mut m, set(Setting::Power, 1, 1));
        ask(&mut m, set(Setting::Input, 0x31, 2));
        ask(&mut m, set(Setting::Mute, 1, 2));
        let (one, two) = (m.state(1).unwrap(), m.state(2).unwrap());
        assert!(one.power && !two.power);
        assert_eq!((one.input, two.input), (0x21, 0x31));
        assert!(!one.mute && two.mute);
        // Nobody on the line has id 3: no answer at all.
        assert_eq!(ask(&mut m, Command::Status.frame(3)), None);
        assert_eq!(m.state(3), None);
        // Broadcast: everyone acts, nobody answers.
        assert_eq!(ask(&mut m, set(Setting::Volume, 70, BROADCAST)), None);
        assert_eq!(m.state(1).unwrap().volume, 70);
        assert_eq!(m.state(2).unwrap().volume, 70);
        assert!(!Model::new(&[BROADCAST, 0xFF], DisplayState::default()).answers(BROADCAST));
    }

    #[test]
    fn unsupported_commands_and_values_get_a_nak() {
        let mut m = Model::new(&[1], DisplayState::default());
        let nak = |cmd: u8, code: u8| Some(hex(&Reply::Nak { id: 1, cmd, code }.encode()));
        assert_eq!(
            ask(&mut m, set(Setting::Power, 3, 1)),
            nak(0x11, NAK_BAD_VALUE)
        );
        assert_eq!(
            ask(&mut m, set(Setting::Volume, 101, 1)),
            nak(0x12, NAK_BAD_VALUE)
        );
        assert_eq!(
            ask(&mut m, set(Setting::Mute, 2, 1)),
            nak(0x13, NAK_BAD_VALUE)
        );
        // Unknown, and report-only (HDMI 1 with a PC signal).
        assert_eq!(
            ask(&mut m, set(Setting::Input, 0x5A, 1)),
            nak(0x14, NAK_BAD_VALUE)
        );
        assert_eq!(
            ask(&mut m, set(Setting::Input, 0x22, 1)),
            nak(0x14, NAK_BAD_VALUE)
        );
        assert_eq!(
            ask(&mut m, Frame::new(0x1B, 1, [0x85])),
            nak(0x1B, NAK_UNSUPPORTED)
        );
        assert_eq!(
            ask(&mut m, Frame::new(0x12, 1, [1, 2])),
            nak(0x12, NAK_UNSUPPORTED)
        );
        assert_eq!(m.state(1), Some(DisplayState::default()));
    }

    #[test]
    fn power_reboot_comes_back_on() {
        let mut m = Model::new(&[1], DisplayState::default());
        assert_eq!(
            ask(&mut m, set(Setting::Power, 2, 1)).as_deref(),
            Some("AA FF 01 03 41 11 02 57")
        );
        assert!(m.state(1).unwrap().power);
    }

    #[test]
    fn front_panel() {
        let mut m = Model::new(&[1], DisplayState::default());
        m.set_power(1, true).unwrap();
        m.set_volume(1, 100).unwrap();
        m.set_mute(1, true).unwrap();
        m.set_input(1, 0x25).unwrap();
        assert_eq!(
            m.state(1),
            Some(DisplayState {
                power: true,
                volume: 100,
                mute: true,
                input: 0x25,
                aspect: 0x10
            })
        );
        assert_eq!(m.set_power(2, true), Err(PanelError::NoSuchDisplay(2)));
        assert_eq!(m.set_volume(1, 101), Err(PanelError::Volume(101)));
        assert_eq!(m.set_input(1, 0x22), Err(PanelError::Input(0x22)));
        assert_eq!(
            PanelError::Input(0x5a).to_string(),
            "0x5a is not an input source a display can select"
        );
    }
}
