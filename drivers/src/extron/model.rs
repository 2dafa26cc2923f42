//! What an Extron switcher answers, without any I/O.
//!
//! [`Model`] is an N-input × M-output switcher: separate video and audio ties, and volume,
//! audio mute and video mute per output. It answers one command (as cut by
//! [`CommandReader`](super::frame::CommandReader)) at a time. With one output it behaves
//! like a single-output product (`82V` sets the volume, answered `Vol82`); with more, like
//! a matrix (`1*50V`, answered `Out01 Vol50`; `2V` reads output 2). Verbose mode and
//! login are per connection and live in the simulator.

use super::frame::{Command, ErrorCode, Response, TieKind};

/// The switcher being modelled.
#[derive(Debug, Clone)]
pub struct Settings {
    pub inputs: u16,
    pub outputs: u16,
    /// Top of the raw volume scale; higher values get E13.
    pub volume_max: u16,
    /// Volume of every output at start.
    pub volume: u16,
    /// `Q` answer.
    pub firmware: String,
    /// `N` answer.
    pub part_number: String,
}

/// One output's state.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct OutputState {
    /// Input tied for video; 0 = none.
    pub video: u16,
    /// Input tied for audio; 0 = none.
    pub audio: u16,
    pub volume: u16,
    pub audio_mute: bool,
    pub video_mute: bool,
}

/// A snapshot of the switcher's state, for tests to assert on. `outputs[0]` is output 1.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct State {
    pub outputs: Vec<OutputState>,
}

/// The switcher.
#[derive(Debug, Clone)]
pub struct Model {
    settings: Settings,
    outputs: Vec<OutputState>,
    /// Global presets: the video and audio ties of every output.
    presets: std::collections::BTreeMap<u16, Vec<(u16, u16)>>,
    /// Front-panel lock mode (`X`): 0 off, 1 complete, 2 basic.
    lock: u8,
}

/// Highest global preset number.
pub const PRESET_MAX: u16 = 32;

const INVALID_INPUT: ErrorCode = ErrorCode(1);
const INVALID_COMMAND: ErrorCode = ErrorCode(10);
const INVALID_OUTPUT: ErrorCode = ErrorCode(12);
const INVALID_VALUE: ErrorCode = ErrorCode(13);
/// E11: a preset number out of range, or one never saved.
const INVALID_PRESET: ErrorCode = ErrorCode(11);

impl Model {
    pub fn new(settings: Settings) -> Model {
        let output = OutputState {
            volume: settings.volume.min(settings.volume_max),
            ..OutputState::default()
        };
        Model {
            outputs: vec![output; usize::from(settings.outputs.max(1))],
            settings,
            presets: std::collections::BTreeMap::new(),
            lock: 0,
        }
    }

    pub fn single_output(&self) -> bool {
        self.outputs.len() == 1
    }

    pub fn state(&self) -> State {
        State {
            outputs: self.outputs.clone(),
        }
    }

    /// Answers one command; anything it does not know gets E10, as a unit does.
    pub fn answer(&mut self, command: &[u8]) -> Response {
        self.answer_tagged(command, false)
    }

    /// Answers one command in a verbose mode that tags query answers (2 and 3): a read
    /// answers with the same prefix a set does (`Out02 Vol30`, not `30`).
    pub fn answer_tagged(&mut self, command: &[u8], tagged: bool) -> Response {
        match Command::parse(command, self.single_output()) {
            Some(command) if tagged => self.tagged(&command).unwrap_or_else(error),
            Some(command) => self.apply(&command).unwrap_or_else(error),
            None => error(INVALID_COMMAND),
        }
    }

    fn tagged(&mut self, command: &Command) -> Result<Response, ErrorCode> {
        Ok(match *command {
            Command::ReadTie { output, kind } => {
                let state = self.output(output)?;
                let input = if kind == TieKind::Audio {
                    state.audio
                } else {
                    state.video
                };
                Response::Tie {
                    output,
                    input,
                    kind,
                }
            }
            Command::ReadVolume { output } => Response::Volume {
                output,
                level: i32::from(self.output(self.target(output)?)?.volume),
            },
            Command::ReadAudioMute { output } => Response::AudioMute {
                output,
                on: self.output(self.target(output)?)?.audio_mute,
            },
            Command::ReadVideoMute { output } => Response::VideoMute {
                output,
                on: self.output(self.target(output)?)?.video_mute,
            },
            Command::Firmware => Response::Other(format!("Ver{}", self.settings.firmware)),
            Command::PartNumber => Response::Other(format!("Pno{}", self.settings.part_number)),
            Command::ReadLock => Response::Other(format!("Exe{}", self.lock)),
            _ => return self.apply(command),
        })
    }

    /// Carries out a parsed command. Sets answer with the verbose-mode report of the new
    /// state; reads with the bare value, as the manuals show.
    pub fn apply(&mut self, command: &Command) -> Result<Response, ErrorCode> {
        match *command {
            Command::Tie {
                input,
                output: Some(output),
                kind,
            } => self.tie(input, output, kind),
            Command::Tie {
                input,
                output: None,
                kind,
            } => {
                self.check_input(input)?;
                for output in 1..=self.outputs.len() as u16 {
                    self.tie(input, output, kind)?;
                }
                Ok(Response::TieAll { input, kind })
            }
            Command::ReadTie { output, kind } => {
                let state = self.output(output)?;
                let input = if kind == TieKind::Audio {
                    state.audio
                } else {
                    state.video
                };
                Ok(bare(input))
            }
            Command::SetVolume { output, level } => self.set_volume(output, level),
            Command::ReadVolume { output } => Ok(bare(self.output(self.target(output)?)?.volume)),
            Command::SetAudioMute { output, on } => self.set_audio_mute(output, on),
            Command::ReadAudioMute { output } => Ok(bare(u8::from(
                self.output(self.target(output)?)?.audio_mute,
            ))),
            Command::SetVideoMute { output, on } => self.set_video_mute(output, on),
            Command::ReadVideoMute { output } => Ok(bare(u8::from(
                self.output(self.target(output)?)?.video_mute,
            ))),
            Command::Firmware => Ok(Response::Other(self.settings.firmware.clone())),
            Command::PartNumber => Ok(Response::Other(self.settings.part_number.clone())),
            Command::Verbose(mode) => Ok(Response::Verbose(mode)),
            // The simulator answers it from the connection's mode; a bare model has none.
            Command::ReadVerbose => Ok(bare(0)),
            Command::Information if self.single_output() => {
                let state = self.outputs[0];
                Ok(Response::Other(format!(
                    "In{} Vid In{} Aud Ausw0 Vmt{} Amt{}",
                    state.video,
                    state.audio,
                    u8::from(state.video_mute),
                    u8::from(state.audio_mute)
                )))
            }
            Command::Information => {
                let (inputs, outputs) = (self.settings.inputs, self.outputs.len());
                Ok(Response::Other(format!(
                    "V{inputs}X{outputs} A{inputs}X{outputs} Exe{}",
                    self.lock
                )))
            }
            Command::SavePreset(number) => {
                self.check_preset(number)?;
                let ties = self.outputs.iter().map(|o| (o.video, o.audio)).collect();
                self.presets.insert(number, ties);
                Ok(Response::Other(format!("Spr{number:02}")))
            }
            Command::RecallPreset(number) => {
                self.check_preset(number)?;
                let ties = self.presets.get(&number).ok_or(INVALID_PRESET)?.clone();
                for (state, (video, audio)) in self.outputs.iter_mut().zip(ties) {
                    (state.video, state.audio) = (video, audio);
                }
                Ok(Response::Other(format!("Rpr{number:02}")))
            }
            Command::Lock(mode) => {
                self.lock = mode;
                Ok(Response::Other(format!("Exe{mode}")))
            }
            Command::ReadLock => Ok(bare(self.lock)),
        }
    }

    fn check_preset(&self, number: u16) -> Result<(), ErrorCode> {
        if (1..=PRESET_MAX).contains(&number) {
            Ok(())
        } else {
            Err(INVALID_PRESET)
        }
    }

    /// Ties `input` (0 = none) to `output`, from a command or the front panel.
    pub fn tie(&mut self, input: u16, output: u16, kind: TieKind) -> Result<Response, ErrorCode> {
        self.check_input(input)?;
        let state = self.output_mut(output)?;
        if kind.has_video() {
            state.video = input;
        }
        if kind.has_audio() {
            state.audio = input;
        }
        Ok(Response::Tie {
            output,
            input,
            kind,
        })
    }

    /// Sets a volume; `output: None` is the single-output form (output 1).
    pub fn set_volume(&mut self, output: Option<u16>, level: u16) -> Result<Response, ErrorCode> {
        if level > self.settings.volume_max {
            return Err(INVALID_VALUE);
        }
        let index = self.target(output)?;
        self.output_mut(index)?.volume = level;
        Ok(Response::Volume {
            output,
            level: i32::from(level),
        })
    }

    pub fn set_audio_mute(&mut self, output: Option<u16>, on: bool) -> Result<Response, ErrorCode> {
        let index = self.target(output)?;
        self.output_mut(index)?.audio_mute = on;
        Ok(Response::AudioMute { output, on })
    }

    pub fn set_video_mute(&mut self, output: Option<u16>, on: bool) -> Result<Response, ErrorCode> {
        let index = self.target(output)?;
        self.output_mut(index)?.video_mute = on;
        Ok(Response::VideoMute { output, on })
    }

    /// The form a front-panel change on `output` is reported in: single-output products
    /// report `Vol82`, matrices `Out01 Vol82`. E12 for an output the unit does not have.
    pub fn report_form(&self, output: u16) -> Result<Option<u16>, ErrorCode> {
        self.output(output)?;
        Ok((!self.single_output()).then_some(output))
    }

    /// Output 1 for the single-output form; the single-output form on a matrix is not a
    /// thing (its `nV` is a read), so `None` there never reaches here.
    fn target(&self, output: Option<u16>) -> Result<u16, ErrorCode> {
        Ok(output.unwrap_or(1))
    }

    fn check_input(&self, input: u16) -> Result<(), ErrorCode> {
        if input > self.settings.inputs {
            Err(INVALID_INPUT)
        } else {
            Ok(())
        }
    }

    fn output(&self, output: u16) -> Result<&OutputState, ErrorCode> {
        let index = usize::from(output).checked_sub(1).ok_or(INVALID_OUTPUT)?;
        self.outputs.get(index).ok_or(INVALID_OUTPUT)
    }

    fn output_mut(&mut self, output: u16) -> Result<&mut OutputState, ErrorCode> {
        let index = usize::from(output).checked_sub(1).ok_or(INVALID_OUTPUT)?;
        self.outputs.get_mut(index).ok_or(INVALID_OUTPUT)
    }
}

fn bare(value: impl ToString) -> Response {
    Response::Other(value.to_string())
}

fn error(code: ErrorCode) -> Response {
    Response::Error { code, detail: None }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn settings(outputs: u16) -> Settings {
        Settings {
            inputs: 12,
            outputs,
            volume_max: 100,
            volume: 50,
            firmware: "1.05".into(),
            part_number: "60-1071-01".into(),
        }
    }

    fn ask(model: &mut Model, command: &str) -> String {
        model.answer(command.as_bytes()).to_string()
    }

    #[test]
    fn matrix_answers_the_manual_vectors() {
        let mut m = Model::new(settings(8));
        assert_eq!(ask(&mut m, "1*2!"), "Out02 In01 All");
        assert_eq!(ask(&mut m, "1*3!"), "Out03 In01 All");
        assert_eq!(ask(&mut m, "10*4&"), "Out04 In10 RGB");
        assert_eq!(ask(&mut m, "7*5%"), "Out05 In07 Vid");
        assert_eq!(ask(&mut m, "12*4$"), "Out04 In12 Aud");
        assert_eq!(ask(&mut m, "1*50V"), "Out01 Vol50");
        assert_eq!(ask(&mut m, "1*1Z"), "Amt01*1");
        assert_eq!(ask(&mut m, "3*1B"), "Vmt03*1");
        assert_eq!(ask(&mut m, "ZZZ!"), "E10");
        assert_eq!(ask(&mut m, "99*1!"), "E01");
        assert_eq!(ask(&mut m, "1*9!"), "E12");
        assert_eq!(ask(&mut m, "1*101V"), "E13");
        assert_eq!(ask(&mut m, "\x1b3CV"), "Vrb3");
        assert_eq!(ask(&mut m, "Q"), "1.05");
        assert_eq!(ask(&mut m, "N"), "60-1071-01");
    }

    #[test]
    fn information_presets_and_front_panel_lock() {
        let mut m = Model::new(settings(4));
        assert_eq!(ask(&mut m, "I"), "V12X4 A12X4 Exe0");
        ask(&mut m, "3*2!");
        assert_eq!(ask(&mut m, "5,"), "Spr05");
        ask(&mut m, "7*2!");
        assert_eq!(ask(&mut m, "5."), "Rpr05");
        assert_eq!(ask(&mut m, "2!"), "3", "the preset's tie is back");
        assert_eq!(ask(&mut m, "6."), "E11", "never saved");
        assert_eq!(ask(&mut m, "99,"), "E11");
        assert_eq!(ask(&mut m, "1X"), "Exe1");
        assert_eq!(ask(&mut m, "X"), "1");
        assert_eq!(ask(&mut m, "I"), "V12X4 A12X4 Exe1");
        assert_eq!(ask(&mut m, "7X"), "E10");
        let mut scaler = Model::new(settings(1));
        ask(&mut scaler, "3*1!");
        assert_eq!(ask(&mut scaler, "I"), "In3 Vid In3 Aud Ausw0 Vmt0 Amt0");
    }

    #[test]
    fn tagged_modes_answer_reads_with_the_set_prefix() {
        let mut m = Model::new(settings(4));
        ask(&mut m, "7*2%");
        let tagged = |m: &mut Model, c: &str| m.answer_tagged(c.as_bytes(), true).to_string();
        assert_eq!(tagged(&mut m, "2%"), "Out02 In07 Vid");
        assert_eq!(tagged(&mut m, "2V"), "Out02 Vol50");
        assert_eq!(tagged(&mut m, "2Z"), "Amt02*0");
        assert_eq!(tagged(&mut m, "Q"), "Ver1.05");
        assert_eq!(tagged(&mut m, "N"), "Pno60-1071-01");
        assert_eq!(ask(&mut m, "2V"), "50", "untagged modes answer bare");
    }

    #[test]
    fn ties_are_separate_for_audio_and_video_and_read_back() {
        let mut m = Model::new(settings(4));
        ask(&mut m, "7*4%");
        ask(&mut m, "12*4$");
        assert_eq!(ask(&mut m, "4%"), "7");
        assert_eq!(ask(&mut m, "4$"), "12");
        assert_eq!(ask(&mut m, "4&"), "7");
        assert_eq!(ask(&mut m, "5%"), "E12");
        assert_eq!(ask(&mut m, "5*!"), "In05 All");
        assert!(
            m.state()
                .outputs
                .iter()
                .all(|o| (o.video, o.audio) == (5, 5))
        );
        assert_eq!(ask(&mut m, "0*2!"), "Out02 In00 All");
        assert_eq!(ask(&mut m, "2!"), "0");
    }

    #[test]
    fn matrix_reads_volume_and_mutes_per_output() {
        let mut m = Model::new(settings(4));
        assert_eq!(ask(&mut m, "2V"), "50");
        ask(&mut m, "2*30V");
        assert_eq!(ask(&mut m, "2V"), "30");
        assert_eq!(ask(&mut m, "1V"), "50");
        ask(&mut m, "2*1Z");
        assert_eq!(ask(&mut m, "2Z"), "1");
        assert_eq!(ask(&mut m, "1Z"), "0");
        assert_eq!(ask(&mut m, "2B"), "0");
        assert_eq!(ask(&mut m, "9V"), "E12");
        let state = m.state().outputs[1];
        assert_eq!((state.volume, state.audio_mute), (30, true));
    }

    #[test]
    fn single_output_product_uses_the_short_forms() {
        let mut m = Model::new(settings(1));
        assert_eq!(ask(&mut m, "82V"), "Vol82");
        assert_eq!(ask(&mut m, "V"), "82");
        assert_eq!(ask(&mut m, "1Z"), "Amt1");
        assert_eq!(ask(&mut m, "Z"), "1");
        assert_eq!(ask(&mut m, "0Z"), "Amt0");
        assert_eq!(ask(&mut m, "1B"), "Vmt1");
        assert_eq!(ask(&mut m, "B"), "1");
        assert_eq!(ask(&mut m, "101V"), "E13");
        assert_eq!(ask(&mut m, "3*1!"), "Out01 In03 All");
        assert_eq!(m.report_form(1), Ok(None));
        assert_eq!(m.report_form(2), Err(ErrorCode(12)));
        assert_eq!(Model::new(settings(2)).report_form(1), Ok(Some(1)));
    }
}
