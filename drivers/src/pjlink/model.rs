//! What a PJLink projector answers, without any I/O.
//!
//! [`Model`] is the projector's state (power with warm-up and cool-down, input, mutes,
//! lamps, error status) and answers one command line at a time. Time is a parameter, so
//! tests step through warm-up by passing instants instead of sleeping. [`Login`] is the
//! per-connection authentication check, because a projector's challenge is fresh for
//! every connection while its state is shared by all of them.

use std::time::{Duration, Instant};

use super::frame::{self, Class, Command, ErrorCode, Greeting, Lamp, Mute, PowerState, Reply};

/// The projector being modelled: identity, inputs, lamps and timing.
#[derive(Debug, Clone)]
pub struct Settings {
    /// How long `Warming` lasts after power on.
    pub warm_up: Duration,
    /// How long `Cooling` lasts after power off.
    pub cool_down: Duration,
    /// NAME answer.
    pub name: String,
    /// INF1 answer.
    pub manufacturer: String,
    /// INF2 answer.
    pub product: String,
    /// INFO answer.
    pub info: String,
    /// CLSS answer; class 2 also answers `%2` commands.
    pub class: Class,
    /// SNUM answer (class 2).
    pub serial_number: String,
    /// SVER answer (class 2).
    pub software_version: String,
    /// INST answer: the input codes the projector has.
    pub inputs: Vec<String>,
    /// Hours of each lamp; empty for a laser projector (LAMP answers ERR1).
    pub lamps: Vec<u32>,
    /// The input selected at start.
    pub input: String,
    /// Whether the projector starts on (no warm-up) rather than in standby.
    pub powered_on: bool,
    /// Answer ERR3 to input, mute and input-list queries in standby, as many projectors
    /// do (NEC, Epson); others answer them normally.
    pub err3_in_standby: bool,
}

/// Class 2 answers that need no state of their own.
const RECOMMENDED_RESOLUTION: &str = "1920x1080";
const LAMP_MODEL: &str = "LMP-SIM1";
const FILTER_MODEL: &str = "FLT-SIM1";

/// A snapshot of the projector's state, for tests to assert on.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct State {
    pub power: PowerState,
    pub input: String,
    pub video_mute: bool,
    pub audio_mute: bool,
    pub lamps: Vec<Lamp>,
    /// ERST digits in [`frame::ERROR_CATEGORIES`] order: 0 ok, 1 warning, 2 error.
    pub error_status: [u8; 6],
}

/// Power, with the deadline of a transition in progress.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Power {
    Off,
    On,
    Warming { until: Instant },
    Cooling { until: Instant },
}

/// The projector.
#[derive(Debug, Clone)]
pub struct Model {
    settings: Settings,
    power: Power,
    input: String,
    mute: Mute,
    lamp_hours: Vec<u32>,
    /// Lamp-on time counted so far, and since when the lamp has been lit: lamp hours
    /// (and filter hours) grow while it is.
    lit_before: Duration,
    lit_since: Option<Instant>,
    frozen: bool,
    error_status: [u8; 6],
}

type Answer = Result<String, ErrorCode>;

impl Model {
    pub fn new(settings: Settings) -> Model {
        Model {
            power: if settings.powered_on {
                Power::On
            } else {
                Power::Off
            },
            input: settings.input.clone(),
            mute: Mute::default(),
            lamp_hours: settings.lamps.clone(),
            lit_before: Duration::ZERO,
            lit_since: None,
            frozen: false,
            error_status: [0; 6],
            settings,
        }
    }

    /// The power state at `now`, finishing a warm-up or cool-down whose time has come.
    pub fn power(&mut self, now: Instant) -> PowerState {
        self.power = match self.power {
            Power::Warming { until } if now >= until => Power::On,
            Power::Cooling { until } if now >= until => Power::Off,
            other => other,
        };
        match self.power {
            Power::Off => PowerState::Off,
            Power::On => PowerState::On,
            Power::Warming { .. } => PowerState::Warming,
            Power::Cooling { .. } => PowerState::Cooling,
        }
    }

    /// Power on or off, from the remote or the front panel: refused mid-transition, as
    /// real projectors do (ERR3).
    pub fn switch_power(&mut self, now: Instant, on: bool) -> Result<(), ErrorCode> {
        // The lamp's lit time is counted up to the switch, and from it.
        self.lit(now);
        self.power = match (self.power(now), on) {
            (PowerState::Warming | PowerState::Cooling, _) => return Err(ErrorCode::Unavailable),
            (PowerState::Off, true) => Power::Warming {
                until: now + self.settings.warm_up,
            },
            (PowerState::On, false) => Power::Cooling {
                until: now + self.settings.cool_down,
            },
            (PowerState::On, true) | (PowerState::Off, false) => self.power,
        };
        self.lit(now);
        Ok(())
    }

    /// Front-panel input change: no checks, so tests can set any code.
    pub fn set_input(&mut self, code: &str) {
        self.input = code.to_string();
    }

    /// Front-panel mute change.
    pub fn set_mute(&mut self, video: bool, audio: bool) {
        self.mute = Mute { video, audio };
    }

    pub fn set_error_status(&mut self, status: [u8; 6]) {
        self.error_status = status;
    }

    /// Sets one lamp's hours; out-of-range lamps are ignored.
    pub fn set_lamp_hours(&mut self, lamp: usize, hours: u32) {
        if let Some(h) = self.lamp_hours.get_mut(lamp) {
            *h = hours;
        }
    }

    pub fn state(&mut self, now: Instant) -> State {
        State {
            power: self.power(now),
            input: self.input.clone(),
            video_mute: self.mute.video,
            audio_mute: self.mute.audio,
            lamps: self.lamps(now),
            error_status: self.error_status,
        }
    }

    /// Lamps are lit while warming up and on, and count their hours meanwhile.
    fn lamps(&mut self, now: Instant) -> Vec<Lamp> {
        let on = self.lit(now);
        let grown = self.lit_hours(now);
        self.lamp_hours
            .iter()
            .map(|&hours| Lamp {
                hours: hours.saturating_add(grown),
                on,
            })
            .collect()
    }

    /// Whether the lamp is lit at `now`, keeping the lit-time count up to date.
    fn lit(&mut self, now: Instant) -> bool {
        let on = matches!(self.power(now), PowerState::On | PowerState::Warming);
        match (on, self.lit_since) {
            (true, None) => self.lit_since = Some(now),
            (false, Some(since)) => {
                self.lit_before += now.saturating_duration_since(since);
                self.lit_since = None;
            }
            _ => {}
        }
        on
    }

    /// Whole hours the lamp has been lit since the model started.
    fn lit_hours(&mut self, now: Instant) -> u32 {
        self.lit(now);
        let lit = self.lit_before
            + self
                .lit_since
                .map_or(Duration::ZERO, |since| now.saturating_duration_since(since));
        u32::try_from(lit.as_secs() / 3600).unwrap_or(u32::MAX)
    }

    /// Answers one command line (digest already checked and removed). A line with a
    /// command header but no space before its parameter (`%1POWR?`) is an undefined
    /// command (ERR1), one with a space but a parameter of bad characters is out of
    /// parameter (ERR2), as projectors answer. Returns `None` for a line without even a
    /// header, which a projector ignores.
    pub fn answer_line(&mut self, now: Instant, line: &[u8]) -> Option<Reply> {
        match Command::parse(line) {
            Ok(command) => Some(self.answer(now, &command)),
            Err(_) => {
                let (class, body, rest) = frame::split_header(line)?;
                let code = match rest.first() {
                    Some(b' ') => ErrorCode::OutOfParameter,
                    _ => ErrorCode::Undefined,
                };
                Some(Reply::new(class, &body, code.as_str().to_string()))
            }
        }
    }

    /// Answers one command.
    pub fn answer(&mut self, now: Instant, command: &Command) -> Reply {
        let value = self
            .dispatch(now, command)
            .unwrap_or_else(|code| code.as_str().to_string());
        Reply::new(command.class, &command.body, value)
    }

    fn dispatch(&mut self, now: Instant, command: &Command) -> Answer {
        if !self.understands(command) {
            return Err(ErrorCode::Undefined);
        }
        let param = command.param.as_str();
        match command.body.as_str() {
            "POWR" => self.powr(now, param),
            "INPT" => self.inpt(now, command.class, param),
            "AVMT" => self.avmt(now, param),
            "ERST" => query(param, || {
                self.error_status
                    .iter()
                    .map(|&d| char::from(b'0' + d.min(9)))
                    .collect()
            }),
            "LAMP" => self.lamp(now, param),
            "INST" => {
                self.refuse_query_in_standby(now)?;
                query(param, || self.settings.inputs.join(" "))
            }
            "NAME" => query(param, || self.settings.name.clone()),
            "INF1" => query(param, || self.settings.manufacturer.clone()),
            "INF2" => query(param, || self.settings.product.clone()),
            "INFO" => query(param, || self.settings.info.clone()),
            "CLSS" => query(param, || self.settings.class.number().to_string()),
            "SNUM" => query(param, || self.settings.serial_number.clone()),
            "SVER" => query(param, || self.settings.software_version.clone()),
            "INNM" => self.innm(param),
            "IRES" => {
                let on = self.power(now) == PowerState::On;
                // `-` is "no signal": nothing is shown in standby.
                query(param, || {
                    if on { RECOMMENDED_RESOLUTION } else { "-" }.into()
                })
            }
            "RRES" => query(param, || RECOMMENDED_RESOLUTION.into()),
            "FILT" => {
                let hours = self.lit_hours(now);
                query(param, || hours.to_string())
            }
            "RLMP" => query(param, || LAMP_MODEL.into()),
            "RFIL" => query(param, || FILTER_MODEL.into()),
            "FREZ" => self.frez(now, param),
            _ => Err(ErrorCode::Undefined),
        }
    }

    /// Whether this projector knows the command in this class: class 1 commands as `%1`;
    /// on a class 2 projector also the class 2 commands and the class 2 input variants.
    fn understands(&self, command: &Command) -> bool {
        const CLASS_1: &[&str] = &[
            "POWR", "INPT", "AVMT", "ERST", "LAMP", "INST", "NAME", "INF1", "INF2", "INFO", "CLSS",
        ];
        const CLASS_2: &[&str] = &[
            "INPT", "INST", "SNUM", "SVER", "INNM", "IRES", "RRES", "FILT", "RLMP", "RFIL", "FREZ",
        ];
        let body = command.body.as_str();
        match command.class {
            Class::One => CLASS_1.contains(&body),
            Class::Two => self.settings.class == Class::Two && CLASS_2.contains(&body),
        }
    }

    fn powr(&mut self, now: Instant, param: &str) -> Answer {
        let on = match param {
            "?" => return Ok(self.power(now).code().to_string()),
            "1" => true,
            "0" => false,
            _ => return Err(ErrorCode::OutOfParameter),
        };
        self.switch_power(now, on).map(|()| ok())
    }

    /// In standby, a projector set up like NEC's or Epson's refuses the queries about
    /// what it shows.
    fn refuse_query_in_standby(&mut self, now: Instant) -> Result<(), ErrorCode> {
        if self.settings.err3_in_standby && self.power(now) == PowerState::Off {
            return Err(ErrorCode::Unavailable);
        }
        Ok(())
    }

    /// FREZ (class 2): freeze the picture; only while on.
    fn frez(&mut self, now: Instant, param: &str) -> Answer {
        if param == "?" {
            return Ok(if self.frozen { "1" } else { "0" }.into());
        }
        let frozen = match param {
            "1" => true,
            "0" => false,
            _ => return Err(ErrorCode::OutOfParameter),
        };
        if self.power(now) != PowerState::On {
            return Err(ErrorCode::Unavailable);
        }
        self.frozen = frozen;
        Ok(ok())
    }

    fn inpt(&mut self, now: Instant, class: Class, param: &str) -> Answer {
        if param == "?" {
            self.refuse_query_in_standby(now)?;
            return Ok(self.input.clone());
        }
        if !frame::is_input_code(param, class) || !self.settings.inputs.iter().any(|i| i == param) {
            return Err(ErrorCode::OutOfParameter);
        }
        self.refuse_in_transition(now)?;
        self.input = param.to_string();
        Ok(ok())
    }

    fn avmt(&mut self, now: Instant, param: &str) -> Answer {
        if param == "?" {
            self.refuse_query_in_standby(now)?;
            return Ok(self.mute.code().to_string());
        }
        let (target, on) = match param.as_bytes() {
            [target @ b'1'..=b'3', on @ (b'0' | b'1')] => (*target, *on == b'1'),
            _ => return Err(ErrorCode::OutOfParameter),
        };
        self.refuse_in_transition(now)?;
        if target != b'2' {
            self.mute.video = on;
        }
        if target != b'1' {
            self.mute.audio = on;
        }
        Ok(ok())
    }

    fn lamp(&mut self, now: Instant, param: &str) -> Answer {
        if self.lamp_hours.is_empty() {
            return Err(ErrorCode::Undefined);
        }
        let lamps = self.lamps(now);
        query(param, || frame::encode_lamps(&lamps))
    }

    /// INNM `?<code>`: a name made from the input type, e.g. "DIGITAL 1".
    fn innm(&self, param: &str) -> Answer {
        let code = param.strip_prefix('?').ok_or(ErrorCode::OutOfParameter)?;
        if !self.settings.inputs.iter().any(|i| i == code) {
            return Err(ErrorCode::OutOfParameter);
        }
        let (kind, index) = code.split_at_checked(1).ok_or(ErrorCode::OutOfParameter)?;
        let kind = match kind {
            "1" => "RGB",
            "2" => "VIDEO",
            "3" => "DIGITAL",
            "4" => "STORAGE",
            "5" => "NETWORK",
            _ => "INTERNAL",
        };
        Ok(format!("{kind} {index}"))
    }

    fn refuse_in_transition(&mut self, now: Instant) -> Result<(), ErrorCode> {
        match self.power(now) {
            PowerState::Warming | PowerState::Cooling => Err(ErrorCode::Unavailable),
            PowerState::On | PowerState::Off => Ok(()),
        }
    }
}

fn ok() -> String {
    "OK".to_string()
}

/// A query-only command: `?` gets the value, anything else is out of range.
fn query(param: &str, value: impl FnOnce() -> String) -> Answer {
    if param == "?" {
        Ok(value())
    } else {
        Err(ErrorCode::OutOfParameter)
    }
}

/// The first command on an authenticated connection did not carry the right digest.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
#[error("wrong or missing PJLink digest")]
pub struct AuthRejected;

/// One connection's authentication: the challenge sent, and whether it was met.
#[derive(Debug, Clone)]
pub struct Login {
    /// The digest the first command must carry; `None` once passed, or with no password.
    expected: Option<String>,
}

impl Login {
    /// Starts a connection; `random` is this connection's challenge (8 hex characters
    /// on real projectors). Returns the greeting to send.
    pub fn new(password: Option<&str>, random: &str) -> (Login, Greeting) {
        match password {
            Some(password) => {
                let login = Login {
                    expected: Some(frame::auth_digest(random, password)),
                };
                (login, Greeting::Challenge(random.to_string()))
            }
            None => (Login { expected: None }, Greeting::Open),
        }
    }

    /// Checks a command line: the first one must start with the expected digest, which is
    /// removed. Later lines pass unchanged.
    pub fn admit<'a>(&mut self, line: &'a [u8]) -> Result<&'a [u8], AuthRejected> {
        let Some(expected) = self.expected.take() else {
            return Ok(line);
        };
        match frame::split_digest(line) {
            (Some(digest), command) if digest == expected => Ok(command),
            _ => {
                self.expected = Some(expected);
                Err(AuthRejected)
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn settings() -> Settings {
        Settings {
            warm_up: Duration::from_secs(20),
            cool_down: Duration::from_secs(10),
            name: "Room 1".into(),
            manufacturer: "ACME".into(),
            product: "P-100".into(),
            info: "".into(),
            class: Class::One,
            serial_number: "SN1".into(),
            software_version: "1.0".into(),
            inputs: vec!["11".into(), "31".into(), "32".into()],
            lamps: vec![1234],
            input: "11".into(),
            powered_on: false,
            err3_in_standby: false,
        }
    }

    fn ask(model: &mut Model, now: Instant, line: &str) -> String {
        model
            .answer_line(now, line.as_bytes())
            .map(|r| r.to_string())
            .unwrap_or_default()
    }

    #[test]
    fn a_malformed_line_gets_err1_or_err2_as_from_a_projector() {
        let t0 = Instant::now();
        let mut model = Model::new(settings());
        assert_eq!(ask(&mut model, t0, "%1POWR?"), "%1POWR=ERR1");
        assert_eq!(ask(&mut model, t0, "%1POWR\t?"), "%1POWR=ERR1");
        assert_eq!(ask(&mut model, t0, "%1INPT \u{7}"), "%1INPT=ERR2");
        assert_eq!(ask(&mut model, t0, "hello"), "", "no header: ignored");
    }

    #[test]
    fn lamp_hours_grow_while_the_lamp_is_lit_and_only_then() {
        let t0 = Instant::now();
        let hour = Duration::from_secs(3600);
        let mut model = Model::new(Settings {
            powered_on: true,
            ..settings()
        });
        assert_eq!(ask(&mut model, t0, "%1LAMP ?"), "%1LAMP=1234 1");
        assert_eq!(ask(&mut model, t0 + 2 * hour, "%1LAMP ?"), "%1LAMP=1236 1");
        assert_eq!(ask(&mut model, t0 + 2 * hour, "%1POWR 0"), "%1POWR=OK");
        assert_eq!(ask(&mut model, t0 + 9 * hour, "%1LAMP ?"), "%1LAMP=1236 0");
    }

    #[test]
    fn a_strict_projector_refuses_input_and_mute_queries_in_standby() {
        let t0 = Instant::now();
        let mut model = Model::new(Settings {
            err3_in_standby: true,
            ..settings()
        });
        assert_eq!(ask(&mut model, t0, "%1POWR ?"), "%1POWR=0");
        assert_eq!(ask(&mut model, t0, "%1INPT ?"), "%1INPT=ERR3");
        assert_eq!(ask(&mut model, t0, "%1AVMT ?"), "%1AVMT=ERR3");
        assert_eq!(ask(&mut model, t0, "%1INST ?"), "%1INST=ERR3");
        let mut lenient = Model::new(settings());
        assert_eq!(ask(&mut lenient, t0, "%1INPT ?"), "%1INPT=11");
    }

    #[test]
    fn class_2_answers_its_resolution_filter_lamp_model_and_freeze_commands() {
        let t0 = Instant::now();
        let mut model = Model::new(Settings {
            class: Class::Two,
            powered_on: true,
            ..settings()
        });
        assert_eq!(ask(&mut model, t0, "%2IRES ?"), "%2IRES=1920x1080");
        assert_eq!(ask(&mut model, t0, "%2RRES ?"), "%2RRES=1920x1080");
        assert_eq!(ask(&mut model, t0, "%2FILT ?"), "%2FILT=0");
        assert_eq!(ask(&mut model, t0, "%2RLMP ?"), "%2RLMP=LMP-SIM1");
        assert_eq!(ask(&mut model, t0, "%2RFIL ?"), "%2RFIL=FLT-SIM1");
        assert_eq!(ask(&mut model, t0, "%2FREZ 1"), "%2FREZ=OK");
        assert_eq!(ask(&mut model, t0, "%2FREZ ?"), "%2FREZ=1");
        assert_eq!(ask(&mut model, t0, "%2FREZ 7"), "%2FREZ=ERR2");
        let mut class_one = Model::new(settings());
        assert_eq!(ask(&mut class_one, t0, "%2IRES ?"), "%2IRES=ERR1");
    }

    #[test]
    fn power_on_warms_up_then_is_on() {
        let t0 = Instant::now();
        let mut model = Model::new(settings());
        assert_eq!(ask(&mut model, t0, "%1POWR ?"), "%1POWR=0");
        assert_eq!(ask(&mut model, t0, "%1POWR 1"), "%1POWR=OK");
        assert_eq!(ask(&mut model, t0, "%1POWR ?"), "%1POWR=3");
        let later = t0 + Duration::from_secs(19);
        assert_eq!(ask(&mut model, later, "%1POWR 0"), "%1POWR=ERR3");
        assert_eq!(ask(&mut model, later, "%1INPT 31"), "%1INPT=ERR3");
        assert_eq!(ask(&mut model, later, "%1AVMT 31"), "%1AVMT=ERR3");
        assert_eq!(ask(&mut model, later, "%1INPT ?"), "%1INPT=11");
        let on = t0 + Duration::from_secs(20);
        assert_eq!(ask(&mut model, on, "%1POWR ?"), "%1POWR=1");
        assert_eq!(ask(&mut model, on, "%1POWR 1"), "%1POWR=OK");
        assert_eq!(ask(&mut model, on, "%1INPT 31"), "%1INPT=OK");
        assert_eq!(model.state(on).input, "31");
    }

    #[test]
    fn power_off_cools_down_then_is_off() {
        let t0 = Instant::now();
        let mut model = Model::new(Settings {
            powered_on: true,
            ..settings()
        });
        assert_eq!(ask(&mut model, t0, "%1POWR 0"), "%1POWR=OK");
        assert_eq!(ask(&mut model, t0, "%1POWR ?"), "%1POWR=2");
        assert_eq!(
            ask(&mut model, t0 + Duration::from_secs(5), "%1POWR 1"),
            "%1POWR=ERR3"
        );
        assert_eq!(
            ask(&mut model, t0 + Duration::from_secs(10), "%1POWR ?"),
            "%1POWR=0"
        );
        assert_eq!(
            ask(&mut model, t0 + Duration::from_secs(10), "%1POWR 0"),
            "%1POWR=OK"
        );
    }

    #[test]
    fn out_of_range_and_unknown_commands() {
        let now = Instant::now();
        let mut model = Model::new(Settings {
            powered_on: true,
            ..settings()
        });
        assert_eq!(ask(&mut model, now, "%1POWR 3"), "%1POWR=ERR2");
        assert_eq!(ask(&mut model, now, "%1INPT 21"), "%1INPT=ERR2");
        assert_eq!(ask(&mut model, now, "%1INPT 3A"), "%1INPT=ERR2");
        assert_eq!(ask(&mut model, now, "%1AVMT 41"), "%1AVMT=ERR2");
        assert_eq!(ask(&mut model, now, "%1ERST 0"), "%1ERST=ERR2");
        assert_eq!(ask(&mut model, now, "%1XYZW ?"), "%1XYZW=ERR1");
        assert_eq!(ask(&mut model, now, "%2SNUM ?"), "%2SNUM=ERR1");
        assert_eq!(ask(&mut model, now, "%1SNUM ?"), "%1SNUM=ERR1");
        assert_eq!(model.answer_line(now, b"garbage"), None);
    }

    #[test]
    fn mutes() {
        let now = Instant::now();
        let mut model = Model::new(settings());
        assert_eq!(ask(&mut model, now, "%1AVMT ?"), "%1AVMT=30");
        assert_eq!(ask(&mut model, now, "%1AVMT 11"), "%1AVMT=OK");
        assert_eq!(ask(&mut model, now, "%1AVMT ?"), "%1AVMT=11");
        assert_eq!(ask(&mut model, now, "%1AVMT 21"), "%1AVMT=OK");
        assert_eq!(ask(&mut model, now, "%1AVMT ?"), "%1AVMT=31");
        assert_eq!(ask(&mut model, now, "%1AVMT 10"), "%1AVMT=OK");
        assert_eq!(ask(&mut model, now, "%1AVMT ?"), "%1AVMT=21");
        assert_eq!(ask(&mut model, now, "%1AVMT 30"), "%1AVMT=OK");
        assert_eq!(ask(&mut model, now, "%1AVMT ?"), "%1AVMT=30");
    }

    #[test]
    fn status_and_identity() {
        let now = Instant::now();
        let mut model = Model::new(Settings {
            lamps: vec![100, 200],
            ..settings()
        });
        model.set_error_status([0, 0, 0, 0, 1, 0]);
        assert_eq!(ask(&mut model, now, "%1ERST ?"), "%1ERST=000010");
        assert_eq!(ask(&mut model, now, "%1LAMP ?"), "%1LAMP=100 0 200 0");
        assert_eq!(ask(&mut model, now, "%1INST ?"), "%1INST=11 31 32");
        assert_eq!(ask(&mut model, now, "%1NAME ?"), "%1NAME=Room 1");
        assert_eq!(ask(&mut model, now, "%1INF1 ?"), "%1INF1=ACME");
        assert_eq!(ask(&mut model, now, "%1INF2 ?"), "%1INF2=P-100");
        assert_eq!(ask(&mut model, now, "%1INFO ?"), "%1INFO=");
        assert_eq!(ask(&mut model, now, "%1CLSS ?"), "%1CLSS=1");
    }

    #[test]
    fn laser_projectors_have_no_lamp() {
        let mut model = Model::new(Settings {
            lamps: vec![],
            ..settings()
        });
        assert_eq!(ask(&mut model, Instant::now(), "%1LAMP ?"), "%1LAMP=ERR1");
    }

    #[test]
    fn class_two_commands() {
        let now = Instant::now();
        let inputs = vec!["31".into(), "3A".into(), "61".into()];
        let mut model = Model::new(Settings {
            class: Class::Two,
            inputs,
            powered_on: true,
            ..settings()
        });
        assert_eq!(ask(&mut model, now, "%1CLSS ?"), "%1CLSS=2");
        assert_eq!(ask(&mut model, now, "%2SNUM ?"), "%2SNUM=SN1");
        assert_eq!(ask(&mut model, now, "%2SVER ?"), "%2SVER=1.0");
        assert_eq!(ask(&mut model, now, "%2INNM ?3A"), "%2INNM=DIGITAL A");
        assert_eq!(ask(&mut model, now, "%2INNM ?22"), "%2INNM=ERR2");
        assert_eq!(ask(&mut model, now, "%1INPT 3A"), "%1INPT=ERR2");
        assert_eq!(ask(&mut model, now, "%2INPT 3A"), "%2INPT=OK");
        assert_eq!(ask(&mut model, now, "%2INPT ?"), "%2INPT=3A");
        assert_eq!(ask(&mut model, now, "%2POWR ?"), "%2POWR=ERR1");
    }

    #[test]
    fn lamps_follow_power() {
        let t0 = Instant::now();
        let mut model = Model::new(settings());
        assert!(!model.state(t0).lamps[0].on);
        model.switch_power(t0, true).unwrap();
        assert!(model.state(t0).lamps[0].on);
        model.set_lamp_hours(0, 99);
        model.set_lamp_hours(5, 1);
        assert_eq!(ask(&mut model, t0, "%1LAMP ?"), "%1LAMP=99 1");
    }

    #[test]
    fn login_accepts_the_right_digest_once() {
        let (mut login, greeting) = Login::new(Some("JBMIAProjectorLink"), "498e4a67");
        assert_eq!(greeting, Greeting::Challenge("498e4a67".into()));
        assert_eq!(
            login.admit(b"5d8409bc1c3fa39749434aa3a5c38682%1POWR ?"),
            Ok(&b"%1POWR ?"[..])
        );
        assert_eq!(login.admit(b"%1POWR ?"), Ok(&b"%1POWR ?"[..]));
    }

    #[test]
    fn login_rejects_a_wrong_or_missing_digest() {
        let (mut login, _) = Login::new(Some("JBMIAProjectorLink"), "498e4a67");
        assert_eq!(
            login.admit(b"6e1f94dfe98193e11ec62f43ceaa43af%1POWR ?"),
            Err(AuthRejected)
        );
        assert_eq!(login.admit(b"%1POWR ?"), Err(AuthRejected));
    }

    #[test]
    fn login_without_password_is_open() {
        let (mut login, greeting) = Login::new(None, "498e4a67");
        assert_eq!(greeting, Greeting::Open);
        assert_eq!(login.admit(b"%1POWR ?"), Ok(&b"%1POWR ?"[..]));
    }
}
