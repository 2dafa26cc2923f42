//! PJLink wire format, shared by the client session and the projector model.
//!
//! Everything here is a pure function over bytes or strings, so both directions can be
//! tested with the byte vectors from the spec and from other implementations.
//!
//! A command is `%` + class digit + 4-letter body + space + parameter + CR, e.g.
//! `%1POWR 1\r`; the projector answers `%1POWR=OK\r` (class and body echoed, `=`, value).
//! On an authenticated connection the first command carries a 32-hex MD5 digest in front.

use std::fmt;

use md5::{Digest, Md5};

use crate::kit::{Delimited, Framer};

/// Longest line the spec allows, CR included: `%1XXXX ` plus a 128-byte parameter.
/// Nothing a real projector sends is longer, so a longer run of bytes without a CR means
/// the stream is out of step (or not PJLink at all).
pub const MAX_LINE: usize = 136;

/// Length of the authentication digest prefixed to the first command (lowercase hex MD5).
pub const DIGEST_LEN: usize = 32;

/// What a projector sends after a wrong (or missing) digest.
pub const AUTH_ERROR: &[u8] = b"PJLINK ERRA\r";

/// Names of the six ERST digits, in wire order; also the keys of the `errors` point.
pub const ERROR_CATEGORIES: [&str; 6] = [
    "fan",
    "lamp",
    "temperature",
    "cover_open",
    "filter",
    "other",
];

/// Why bytes could not be read as PJLink. The message quotes the offending line (escaped),
/// because that is what an integrator needs to see in the log.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum FrameError {
    /// More than `max` bytes (CR included) arrived without a CR; they were dropped.
    #[error("line longer than {max} bytes without a CR ({dropped} bytes dropped)")]
    TooLong { max: usize, dropped: usize },
    /// A line that should be a reply (`%1POWR=...`) is not one.
    #[error("malformed reply `{0}`")]
    MalformedReply(String),
    /// A line that should be a command (`%1POWR ?`) is not one.
    #[error("malformed command `{0}`")]
    MalformedCommand(String),
    /// The first line on a connection is not `PJLINK 0` or `PJLINK 1 <random>`.
    #[error("not a PJLink greeting: `{0}`")]
    BadGreeting(String),
}

/// Renders wire bytes for a message: printable ASCII as is, everything else escaped.
pub fn escape(bytes: &[u8]) -> String {
    bytes.escape_ascii().to_string()
}

/// The PJLink class a command belongs to: class 2 commands are sent as `%2...`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Default)]
pub enum Class {
    #[default]
    One,
    Two,
}

impl Class {
    pub fn digit(self) -> char {
        match self {
            Class::One => '1',
            Class::Two => '2',
        }
    }

    pub fn from_digit(digit: u8) -> Option<Class> {
        match digit {
            b'1' => Some(Class::One),
            b'2' => Some(Class::Two),
            _ => None,
        }
    }

    /// The number a `CLSS` answer and the `class` option use.
    pub fn number(self) -> u8 {
        match self {
            Class::One => 1,
            Class::Two => 2,
        }
    }
}

/// One command line, without the digest and the CR.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Command {
    pub class: Class,
    /// Four uppercase letters/digits, e.g. `POWR`.
    pub body: String,
    /// `?` for a query, else the value to set.
    pub param: String,
}

impl Command {
    pub fn new(class: Class, body: &str, param: impl Into<String>) -> Command {
        Command {
            class,
            body: body.to_string(),
            param: param.into(),
        }
    }

    /// A query (`%1POWR ?`).
    pub fn query(class: Class, body: &str) -> Command {
        Command::new(class, body, "?")
    }

    pub fn is_query(&self) -> bool {
        self.param == "?"
    }

    /// `%1POWR`: what replies echo, and how messages name a command.
    pub fn header(&self) -> String {
        format!("%{}{}", self.class.digit(), self.body)
    }

    /// The line on the wire, CR included.
    pub fn encode(&self) -> Vec<u8> {
        format!("{self}\r").into_bytes()
    }

    /// Reads a command line (no digest, no CR), as a projector does.
    pub fn parse(line: &[u8]) -> Result<Command, FrameError> {
        let malformed = || FrameError::MalformedCommand(escape(line));
        let (class, body, rest) = split_header(line).ok_or_else(malformed)?;
        let param = rest.strip_prefix(b" ").ok_or_else(malformed)?;
        if param.len() > MAX_LINE - 8 || !param.iter().all(|b| (0x20..0x7f).contains(b)) {
            return Err(malformed());
        }
        Ok(Command {
            class,
            body,
            param: String::from_utf8_lossy(param).into_owned(),
        })
    }
}

impl fmt::Display for Command {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{} {}", self.header(), self.param)
    }
}

/// One reply line, without the CR.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Reply {
    pub class: Class,
    pub body: String,
    /// `OK`, `ERR1`..`ERR4`, or the queried value.
    pub value: String,
}

impl Reply {
    pub fn new(class: Class, body: &str, value: impl Into<String>) -> Reply {
        Reply {
            class,
            body: body.to_string(),
            value: value.into(),
        }
    }

    /// The line on the wire, CR included.
    pub fn encode(&self) -> Vec<u8> {
        format!("{self}\r").into_bytes()
    }

    /// Reads a reply line (no CR), as a controller does.
    pub fn parse(line: &[u8]) -> Result<Reply, FrameError> {
        let malformed = || FrameError::MalformedReply(escape(line));
        let (class, body, rest) = split_header(line).ok_or_else(malformed)?;
        let value = rest.strip_prefix(b"=").ok_or_else(malformed)?;
        // Values are ASCII except names, which class 2 allows to be UTF-8; a projector that
        // sends another encoding still gets its name shown, with replacement characters.
        Ok(Reply {
            class,
            body,
            value: String::from_utf8_lossy(value).into_owned(),
        })
    }

    /// Whether this reply echoes `command`'s class and body (the only way PJLink matches
    /// replies to commands).
    pub fn answers(&self, command: &Command) -> bool {
        self.class == command.class && self.body.eq_ignore_ascii_case(&command.body)
    }

    /// The projector's error code, if the value is one.
    pub fn error(&self) -> Option<ErrorCode> {
        ErrorCode::parse(&self.value)
    }
}

impl fmt::Display for Reply {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "%{}{}={}", self.class.digit(), self.body, self.value)
    }
}

/// `%` + class digit + 4 alphanumeric bytes, then the rest of the line.
/// `%`, the class digit and a 4-character body at the start of `line`, and what follows.
pub fn split_header(line: &[u8]) -> Option<(Class, String, &[u8])> {
    let (head, rest) = line.split_at_checked(6)?;
    let [b'%', class, body @ ..] = head else {
        return None;
    };
    let class = Class::from_digit(*class)?;
    if !body.iter().all(u8::is_ascii_alphanumeric) {
        return None;
    }
    Some((class, String::from_utf8_lossy(body).into_owned(), rest))
}

/// The error answers of §2.2 of the spec.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ErrorCode {
    /// `ERR1`: undefined command (or, for LAMP, "no lamp").
    Undefined,
    /// `ERR2`: parameter out of range.
    OutOfParameter,
    /// `ERR3`: unavailable now, typically warming up or cooling down.
    Unavailable,
    /// `ERR4`: projector or display failure.
    Failure,
}

impl ErrorCode {
    pub fn as_str(self) -> &'static str {
        match self {
            ErrorCode::Undefined => "ERR1",
            ErrorCode::OutOfParameter => "ERR2",
            ErrorCode::Unavailable => "ERR3",
            ErrorCode::Failure => "ERR4",
        }
    }

    pub fn parse(value: &str) -> Option<ErrorCode> {
        [
            ErrorCode::Undefined,
            ErrorCode::OutOfParameter,
            ErrorCode::Unavailable,
            ErrorCode::Failure,
        ]
        .into_iter()
        .find(|code| value.eq_ignore_ascii_case(code.as_str()))
    }
}

/// The first line a projector sends on every connection.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Greeting {
    /// `PJLINK 0`: no authentication.
    Open,
    /// `PJLINK 1 <random>`: the first command must carry md5(random + password).
    Challenge(String),
}

impl Greeting {
    pub fn encode(&self) -> Vec<u8> {
        match self {
            Greeting::Open => b"PJLINK 0\r".to_vec(),
            Greeting::Challenge(random) => format!("PJLINK 1 {random}\r").into_bytes(),
        }
    }

    /// Reads a greeting line (no CR). `PJLINK ERRA` is not a greeting: check
    /// [`is_auth_error`] first.
    pub fn parse(line: &[u8]) -> Result<Greeting, FrameError> {
        let bad = || FrameError::BadGreeting(escape(line));
        let (prefix, rest) = line.split_at_checked(7).ok_or_else(bad)?;
        if !prefix.eq_ignore_ascii_case(b"PJLINK ") {
            return Err(bad());
        }
        match rest {
            b"0" => Ok(Greeting::Open),
            [b'1', b' ', random @ ..]
                if !random.is_empty() && random.iter().all(u8::is_ascii_alphanumeric) =>
            {
                Ok(Greeting::Challenge(
                    String::from_utf8_lossy(random).into_owned(),
                ))
            }
            _ => Err(bad()),
        }
    }
}

/// Whether a line is the projector's authentication error (`PJLINK ERRA`), which may come
/// instead of the greeting or instead of the first reply.
pub fn is_auth_error(line: &[u8]) -> bool {
    line.eq_ignore_ascii_case(&AUTH_ERROR[..AUTH_ERROR.len() - 1])
}

/// The digest for an authenticated connection: lowercase hex MD5 of random + password,
/// no separator (spec §5).
pub fn auth_digest(random: &str, password: &str) -> String {
    let digest = Md5::new()
        .chain_update(random)
        .chain_update(password)
        .finalize();
    format!("{digest:x}")
}

/// Splits a leading digest off a command line, if the line starts with one (32 hex
/// characters followed by `%`).
pub fn split_digest(line: &[u8]) -> (Option<&str>, &[u8]) {
    match line.split_at_checked(DIGEST_LEN) {
        Some((digest, rest))
            if rest.first() == Some(&b'%') && digest.iter().all(u8::is_ascii_hexdigit) =>
        {
            (std::str::from_utf8(digest).ok(), rest)
        }
        _ => (None, line),
    }
}

/// The kit's line framer set up for PJLink: CR-terminated lines of at most `max` bytes
/// CR included, tolerating an LF after the CR (some projectors and serial servers add one).
pub fn line_framer(max: usize) -> Framer {
    Framer::Delimited(Delimited::new(b"\r", false, max - 1).skip_leading(b"\n"))
}

/// The POWR states.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum PowerState {
    /// `0`: standby.
    Off,
    /// `1`: lamp on.
    On,
    /// `2`: cooling down after power off.
    Cooling,
    /// `3`: warming up after power on.
    Warming,
}

impl PowerState {
    pub fn code(self) -> &'static str {
        match self {
            PowerState::Off => "0",
            PowerState::On => "1",
            PowerState::Cooling => "2",
            PowerState::Warming => "3",
        }
    }

    pub fn parse(value: &str) -> Option<PowerState> {
        match value {
            "0" => Some(PowerState::Off),
            "1" => Some(PowerState::On),
            "2" => Some(PowerState::Cooling),
            "3" => Some(PowerState::Warming),
            _ => None,
        }
    }

    /// The value of the `power` point.
    pub fn as_str(self) -> &'static str {
        match self {
            PowerState::Off => "off",
            PowerState::On => "on",
            PowerState::Cooling => "cooling",
            PowerState::Warming => "warming",
        }
    }
}

/// A/V mute state, as AVMT reports it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct Mute {
    pub video: bool,
    pub audio: bool,
}

impl Mute {
    /// The AVMT query answer: `11` video only, `21` audio only, `31` both, `30` neither.
    pub fn code(self) -> &'static str {
        match (self.video, self.audio) {
            (true, true) => "31",
            (true, false) => "11",
            (false, true) => "21",
            (false, false) => "30",
        }
    }

    /// Reads an AVMT query answer. `10` and `20` are not in the spec's answer list but
    /// some projectors send them for "nothing muted", so they are read that way too.
    pub fn parse(value: &str) -> Option<Mute> {
        let (video, audio) = match value {
            "11" => (true, false),
            "21" => (false, true),
            "31" => (true, true),
            "30" | "10" | "20" => (false, false),
            _ => return None,
        };
        Some(Mute { video, audio })
    }
}

/// One ERST digit.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ErrorLevel {
    Ok,
    Warning,
    Error,
}

impl ErrorLevel {
    pub fn as_str(self) -> &'static str {
        match self {
            ErrorLevel::Ok => "ok",
            ErrorLevel::Warning => "warning",
            ErrorLevel::Error => "error",
        }
    }

    fn from_digit(digit: char) -> Option<ErrorLevel> {
        match digit {
            '0' => Some(ErrorLevel::Ok),
            '1' => Some(ErrorLevel::Warning),
            '2' => Some(ErrorLevel::Error),
            _ => None,
        }
    }
}

/// Reads an ERST answer: six digits in [`ERROR_CATEGORIES`] order.
pub fn parse_error_status(value: &str) -> Option<[ErrorLevel; 6]> {
    let levels: Vec<ErrorLevel> = value
        .chars()
        .map(ErrorLevel::from_digit)
        .collect::<Option<_>>()?;
    levels.try_into().ok()
}

/// One lamp as LAMP reports it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Lamp {
    /// Usage hours (0 when the projector does not count them).
    pub hours: u32,
    pub on: bool,
}

/// Reads a LAMP answer: `<hours> <0|1>` pairs, one per lamp (up to 8).
pub fn parse_lamps(value: &str) -> Option<Vec<Lamp>> {
    let fields: Vec<&str> = value.split(' ').collect();
    // split always yields at least one field, so "even" also means "at least one lamp".
    if !fields.len().is_multiple_of(2) || fields.len() > 16 {
        return None;
    }
    fields
        .chunks(2)
        .map(|pair| {
            let hours = parse_digits(pair[0])?;
            let on = match pair[1] {
                "0" => false,
                "1" => true,
                _ => return None,
            };
            Some(Lamp { hours, on })
        })
        .collect()
}

/// A decimal number made of digits only (`str::parse` would also take a sign).
fn parse_digits(text: &str) -> Option<u32> {
    text.bytes()
        .all(|b| b.is_ascii_digit())
        .then(|| text.parse().ok())
        .flatten()
}

/// Writes a LAMP answer.
pub fn encode_lamps(lamps: &[Lamp]) -> String {
    let pairs: Vec<String> = lamps
        .iter()
        .map(|l| format!("{} {}", l.hours, u8::from(l.on)))
        .collect();
    pairs.join(" ")
}

/// Whether `code` is an input code usable with `class`: a type digit and an index.
/// Class 1 has types 1-5 (RGB, video, digital, storage, network) and indexes 1-9; class 2
/// adds type 6 (internal) and indexes A-Z.
pub fn is_input_code(code: &str, class: Class) -> bool {
    let [kind, index] = code.as_bytes() else {
        return false;
    };
    match class {
        Class::One => (b'1'..=b'5').contains(kind) && (b'1'..=b'9').contains(index),
        Class::Two => {
            (b'1'..=b'6').contains(kind)
                && ((b'1'..=b'9').contains(index) || index.is_ascii_uppercase())
        }
    }
}

/// Reads an INST answer: space-separated input codes (may be empty).
pub fn parse_inputs(value: &str) -> Option<Vec<String>> {
    value
        .split(' ')
        .filter(|code| !code.is_empty())
        .map(|code| is_input_code(code, Class::Two).then(|| code.to_string()))
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn digest_matches_the_spec_vector() {
        assert_eq!(
            auth_digest("498e4a67", "JBMIAProjectorLink"),
            "5d8409bc1c3fa39749434aa3a5c38682"
        );
    }

    #[test]
    fn commands_encode_as_the_spec_shows() {
        assert_eq!(Command::query(Class::One, "POWR").encode(), b"%1POWR ?\r");
        assert_eq!(
            Command::new(Class::One, "POWR", "1").encode(),
            b"%1POWR 1\r"
        );
        assert_eq!(
            Command::new(Class::One, "INPT", "31").encode(),
            b"%1INPT 31\r"
        );
        assert_eq!(Command::query(Class::Two, "SNUM").encode(), b"%2SNUM ?\r");
    }

    #[test]
    fn commands_parse_on_the_device_side() {
        let command = Command::parse(b"%1AVMT 31").unwrap();
        assert_eq!(command, Command::new(Class::One, "AVMT", "31"));
        assert_eq!(Command::parse(b"%2INNM ?31").unwrap().param, "?31");
        for bad in [
            &b"%1POWR"[..],
            b"%1POWR=1",
            b"%3POWR ?",
            b"1POWR ?",
            b"%1PO R ?",
            b"%1POWR \x01",
            b"",
        ] {
            assert!(
                matches!(Command::parse(bad), Err(FrameError::MalformedCommand(_))),
                "{}",
                escape(bad)
            );
        }
    }

    #[test]
    fn replies_parse_and_encode() {
        let reply = Reply::parse(b"%1POWR=OK").unwrap();
        assert_eq!(reply, Reply::new(Class::One, "POWR", "OK"));
        assert_eq!(reply.encode(), b"%1POWR=OK\r");
        assert_eq!(Reply::parse(b"%1NAME=").unwrap().value, "");
        assert_eq!(
            Reply::parse(b"%1LAMP=100 1 200 0 300 1").unwrap().value,
            "100 1 200 0 300 1"
        );
        for bad in [
            &b"%1POWR 1"[..],
            b"%1POW",
            b"PJLINK 0",
            b"%9POWR=1",
            b"%1P-WR=1",
        ] {
            assert!(
                matches!(Reply::parse(bad), Err(FrameError::MalformedReply(_))),
                "{}",
                escape(bad)
            );
        }
    }

    #[test]
    fn replies_match_commands_by_class_and_body() {
        let command = Command::query(Class::One, "POWR");
        assert!(Reply::parse(b"%1POWR=0").unwrap().answers(&command));
        assert!(Reply::parse(b"%1powr=0").unwrap().answers(&command));
        assert!(!Reply::parse(b"%1ROWP=A").unwrap().answers(&command));
        assert!(!Reply::parse(b"%2POWR=0").unwrap().answers(&command));
    }

    #[test]
    fn error_codes_are_recognised() {
        let code = |v: &str| Reply::new(Class::One, "POWR", v).error();
        assert_eq!(code("ERR1"), Some(ErrorCode::Undefined));
        assert_eq!(code("ERR2"), Some(ErrorCode::OutOfParameter));
        assert_eq!(code("ERR3"), Some(ErrorCode::Unavailable));
        assert_eq!(code("ERR4"), Some(ErrorCode::Failure));
        assert_eq!(code("OK"), None);
        assert_eq!(code("1"), None);
    }

    #[test]
    fn greetings() {
        assert_eq!(Greeting::parse(b"PJLINK 0"), Ok(Greeting::Open));
        assert_eq!(
            Greeting::parse(b"PJLINK 1 498e4a67"),
            Ok(Greeting::Challenge("498e4a67".into()))
        );
        for bad in [
            &b"PJLINK XXX"[..],
            b"PJLINK 1",
            b"PJLINK 1 ",
            b"PJLINK 2",
            b"HELLO",
            b"%1POWR=0",
        ] {
            assert!(
                matches!(Greeting::parse(bad), Err(FrameError::BadGreeting(_))),
                "{}",
                escape(bad)
            );
        }
        assert_eq!(
            Greeting::Challenge("498e4a67".into()).encode(),
            b"PJLINK 1 498e4a67\r"
        );
        assert_eq!(Greeting::Open.encode(), b"PJLINK 0\r");
        assert!(is_auth_error(b"PJLINK ERRA"));
        assert!(!is_auth_error(b"PJLINK 0"));
    }

    #[test]
    fn digests_split_off_the_first_command() {
        let line = b"5d8409bc1c3fa39749434aa3a5c38682%1POWR ?";
        assert_eq!(
            split_digest(line),
            (Some("5d8409bc1c3fa39749434aa3a5c38682"), &b"%1POWR ?"[..])
        );
        assert_eq!(split_digest(b"%1POWR ?"), (None, &b"%1POWR ?"[..]));
    }

    #[test]
    fn lines_split_across_chunks_and_tolerate_lf() {
        let mut reader = line_framer(MAX_LINE);
        reader.push(b"PJLI");
        assert_eq!(reader.next_frame(), None);
        reader.push(b"NK 0\r\n%1POWR=");
        assert_eq!(reader.next_frame(), Some(Ok(b"PJLINK 0".to_vec())));
        assert_eq!(reader.next_frame(), None);
        reader.push(b"OK\r%1POWR=1\r");
        assert_eq!(reader.next_frame(), Some(Ok(b"%1POWR=OK".to_vec())));
        assert_eq!(reader.next_frame(), Some(Ok(b"%1POWR=1".to_vec())));
        assert_eq!(reader.next_frame(), None);
    }

    #[test]
    fn overlong_lines_are_refused() {
        let mut reader = line_framer(MAX_LINE);
        reader.push(&[b'A'; MAX_LINE - 1]);
        assert_eq!(reader.next_frame(), None);
        reader.push(b"A");
        assert!(matches!(reader.next_frame(), Some(Err(_))));

        let mut reader = line_framer(MAX_LINE);
        let mut longest = vec![b'\n'];
        longest.extend_from_slice(&[b'A'; MAX_LINE - 1]);
        longest.push(b'\r');
        reader.push(&longest);
        assert_eq!(
            reader.next_frame().map(|l| l.unwrap().len()),
            Some(MAX_LINE - 1)
        );
    }

    #[test]
    fn power_states() {
        let states: Vec<_> = ["0", "1", "2", "3"]
            .into_iter()
            .map(PowerState::parse)
            .collect();
        use PowerState::*;
        assert_eq!(states, [Some(Off), Some(On), Some(Cooling), Some(Warming)]);
        assert_eq!(PowerState::parse("4"), None);
        assert_eq!(Warming.code(), "3");
    }

    #[test]
    fn mute_states() {
        let m = |video, audio| Some(Mute { video, audio });
        assert_eq!(Mute::parse("11"), m(true, false));
        assert_eq!(Mute::parse("21"), m(false, true));
        assert_eq!(Mute::parse("31"), m(true, true));
        assert_eq!(Mute::parse("30"), m(false, false));
        assert_eq!(Mute::parse("10"), m(false, false));
        assert_eq!(Mute::parse("20"), m(false, false));
        assert_eq!(Mute::parse("12"), None);
        assert_eq!(
            Mute {
                video: true,
                audio: false
            }
            .code(),
            "11"
        );
    }

    #[test]
    fn error_status_digits_map_in_order() {
        use ErrorLevel::*;
        assert_eq!(parse_error_status("000000"), Some([Ok; 6]));
        assert_eq!(
            parse_error_status("000010"),
            Some([Ok, Ok, Ok, Ok, Warning, Ok])
        );
        assert_eq!(
            parse_error_status("120000"),
            Some([Warning, Error, Ok, Ok, Ok, Ok])
        );
        assert_eq!(parse_error_status("00000"), None);
        assert_eq!(parse_error_status("000003"), None);
    }

    #[test]
    fn lamps() {
        assert_eq!(
            parse_lamps("1234 0"),
            Some(vec![Lamp {
                hours: 1234,
                on: false
            }])
        );
        let many = parse_lamps("100 1 200 0 300 1").unwrap();
        assert_eq!(
            many.iter().map(|l| (l.hours, l.on)).collect::<Vec<_>>(),
            [(100, true), (200, false), (300, true)]
        );
        assert_eq!(encode_lamps(&many), "100 1 200 0 300 1");
        for bad in ["", "100", "100 2", "x 1", "100 1 200", "+5 1"] {
            assert_eq!(parse_lamps(bad), None, "{bad}");
        }
    }

    #[test]
    fn input_codes() {
        assert!(is_input_code("31", Class::One));
        assert!(!is_input_code("3A", Class::One));
        assert!(!is_input_code("61", Class::One));
        assert!(is_input_code("3A", Class::Two));
        assert!(is_input_code("61", Class::Two));
        assert!(!is_input_code("30", Class::Two));
        assert!(!is_input_code("3a", Class::Two));
        assert!(!is_input_code("311", Class::Two));
        assert_eq!(
            parse_inputs("11 31 32"),
            Some(vec!["11".into(), "31".into(), "32".into()])
        );
        assert_eq!(parse_inputs(""), Some(vec![]));
        assert_eq!(parse_inputs("11 xx"), None);
    }

    #[test]
    fn class_numbers() {
        assert_eq!(Class::from_digit(b'2').map(Class::number), Some(2));
        assert_eq!(Class::from_digit(b'3'), None);
    }
}
