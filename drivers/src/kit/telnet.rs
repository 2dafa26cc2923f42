//! Telnet option negotiation, stepped over: a text protocol on a Telnet port (Biamp
//! Tesira, Extron) may open with `IAC DO/WILL ...`. [`Telnet`] takes those out of the
//! stream and answers each with a refusal (`WONT`/`DONT`), which every such device
//! accepts, so what is left is the protocol's own text.

const IAC: u8 = 255;
const DONT: u8 = 254;
const DO: u8 = 253;
const WONT: u8 = 252;
const WILL: u8 = 251;
const SB: u8 = 250;
const SE: u8 = 240;

/// The longest subnegotiation taken out of the stream (terminal types, window sizes are
/// a few bytes).
const MAX_SUBNEGOTIATION: usize = 64;

/// Where a negotiation split across reads stopped.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
enum State {
    #[default]
    Data,
    Iac,
    /// After `IAC DO/DONT/WILL/WONT`: the option byte comes next.
    Option(u8),
    /// Inside `IAC SB ... IAC SE`, this many bytes in.
    Sub(usize),
    SubIac(usize),
}

#[derive(Debug, Clone, Default)]
pub struct Telnet {
    state: State,
}

impl Telnet {
    /// Splits `input` into the protocol's bytes and the refusals to send back.
    pub fn filter(&mut self, input: &[u8]) -> (Vec<u8>, Vec<u8>) {
        let mut data = Vec::with_capacity(input.len());
        let mut replies = Vec::new();
        for &byte in input {
            self.state = match (self.state, byte) {
                (State::Data, IAC) => State::Iac,
                (State::Data, b) => {
                    data.push(b);
                    State::Data
                }
                (State::Iac, IAC) => {
                    data.push(IAC);
                    State::Data
                }
                (State::Iac, verb @ (DO | DONT | WILL | WONT)) => State::Option(verb),
                (State::Iac, SB) => State::Sub(0),
                (State::Iac, _) => State::Data,
                (State::Option(verb), option) => {
                    match verb {
                        DO => replies.extend_from_slice(&[IAC, WONT, option]),
                        WILL => replies.extend_from_slice(&[IAC, DONT, option]),
                        _ => {}
                    }
                    State::Data
                }
                // A subnegotiation that never ends (line noise) would swallow the
                // protocol for good: past a bound it is given up on.
                (State::Sub(n) | State::SubIac(n), b) if n >= MAX_SUBNEGOTIATION => {
                    data.push(b);
                    State::Data
                }
                (State::Sub(n), IAC) => State::SubIac(n + 1),
                (State::Sub(n), _) => State::Sub(n + 1),
                (State::SubIac(_), SE) => State::Data,
                (State::SubIac(n), _) => State::Sub(n + 1),
            };
        }
        (data, replies)
    }
}

/// What a Tesira sends as a connection opens, for simulators: `IAC WILL ECHO`,
/// `IAC DO TERMINAL-TYPE` and so on, before its welcome line.
pub const TESIRA_NEGOTIATION: &[u8] = &[
    IAC, DO, 0x18, IAC, DO, 0x20, IAC, DO, 0x23, IAC, DO, 0x27, IAC, WILL, 0x01, IAC, WILL, 0x03,
];

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn negotiation_is_refused_and_removed_in_any_chunking() {
        let mut input = TESIRA_NEGOTIATION.to_vec();
        input.extend_from_slice(b"Welcome to the Tesira Text Protocol Server...\r\n");
        let mut telnet = Telnet::default();
        let (mut data, mut replies) = (Vec::new(), Vec::new());
        for chunk in input.chunks(3) {
            let (d, r) = telnet.filter(chunk);
            data.extend(d);
            replies.extend(r);
        }
        assert_eq!(data, b"Welcome to the Tesira Text Protocol Server...\r\n");
        assert_eq!(&replies[..3], &[IAC, WONT, 0x18]);
        assert_eq!(&replies[replies.len() - 3..], &[IAC, DONT, 0x03]);
        assert_eq!(telnet.filter(&[IAC, SB, 0x18, 1, IAC, SE, b'x']).0, b"x");
        let mut endless = vec![IAC, SB];
        endless.extend([7u8; MAX_SUBNEGOTIATION]);
        endless.extend_from_slice(b"+OK");
        assert_eq!(
            telnet.filter(&endless).0,
            b"+OK",
            "an unended subnegotiation is bounded"
        );
    }
}
