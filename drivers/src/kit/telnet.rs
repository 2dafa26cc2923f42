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

/// Where a negotiation split across reads stopped.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
enum State {
    #[default]
    Data,
    Iac,
    /// After `IAC DO/DONT/WILL/WONT`: the option byte comes next.
    Option(u8),
    /// Inside `IAC SB ... IAC SE`.
    Sub,
    SubIac,
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
                (State::Iac, SB) => State::Sub,
                (State::Iac, _) => State::Data,
                (State::Option(verb), option) => {
                    match verb {
                        DO => replies.extend_from_slice(&[IAC, WONT, option]),
                        WILL => replies.extend_from_slice(&[IAC, DONT, option]),
                        _ => {}
                    }
                    State::Data
                }
                (State::Sub, IAC) => State::SubIac,
                (State::Sub, _) => State::Sub,
                (State::SubIac, SE) => State::Data,
                (State::SubIac, _) => State::Sub,
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
    }
}
