//! The load generator client as a sans-IO state machine (see [`crate::Protocol`]).
//!
//! There is no greeting: a connection is ready at once. Events arrive at any time, also
//! while a request is in flight; a request is answered by `OK` (`SET`), `RATE <n>`
//! (`RATE`, `RATE?`) or `ERR`.

use std::collections::VecDeque;
use std::time::Instant;

use serde_json::{Map, Value};

use super::frame::{FromDevice, LineReader, ToDevice};
use crate::{
    DeviceError, DeviceErrorKind, DriverSettings, Output, Protocol, Request, SessionError,
};

/// Builds a session for [`super::DRIVER`].
pub fn build(settings: &DriverSettings) -> Result<Box<dyn Protocol>, String> {
    check_options(settings).map_err(|e| e.to_string())?;
    Ok(Box::new(Session::default()))
}

/// The load generator takes no options: an empty `[options]` table, if any.
#[derive(serde::Deserialize)]
#[serde(deny_unknown_fields)]
struct NoOptions {}

pub fn check_options(settings: &DriverSettings) -> Result<(), crate::OptionsError> {
    settings.options::<NoOptions>().map(|_| ())
}

#[derive(Debug, Default)]
pub struct Session {
    lines: LineReader,
    /// The answer the request on the wire waits for.
    awaiting: Option<Answer>,
    outputs: VecDeque<Output>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Answer {
    Ok,
    Rate,
}

impl Protocol for Session {
    fn connected(&mut self, _now: Instant) {
        self.lines.clear();
        self.awaiting = None;
        self.outputs.clear();
        self.outputs.push_back(Output::Ready);
    }

    fn received(&mut self, _now: Instant, data: &[u8]) {
        let mut parsed = Vec::new();
        let framing = self
            .lines
            .push(data, |line| parsed.push(FromDevice::parse(line)));
        for line in parsed {
            match line {
                Ok(line) => self.handle(line),
                Err(why) => return self.fatal(why),
            }
        }
        if let Err(why) = framing {
            self.fatal(why);
        }
    }

    fn start(&mut self, _now: Instant, request: &Request) -> Result<(), DeviceError> {
        let (line, answer) = match request {
            Request::Command { name, args } if name == "set" => (
                ToDevice::Set {
                    point: integer(args, "point")?,
                    value: integer(args, "value")?,
                },
                Answer::Ok,
            ),
            Request::Command { name, args } if name == "rate" => (
                ToDevice::SetRate(integer(args, "per_second")?),
                Answer::Rate,
            ),
            Request::Poll { query } if query == "rate" => (ToDevice::QueryRate, Answer::Rate),
            other => {
                return Err(DeviceError::new(
                    DeviceErrorKind::Unsupported,
                    format!("the load generator has no {other:?}"),
                ));
            }
        };
        self.awaiting = Some(answer);
        self.outputs.push_back(Output::Transmit(line.encode()));
        Ok(())
    }

    fn abandon(&mut self) {
        self.awaiting = None;
    }

    fn poll_output(&mut self) -> Option<Output> {
        self.outputs.pop_front()
    }
}

impl Session {
    fn handle(&mut self, line: FromDevice) {
        match line {
            FromDevice::Event { point, value } => self.outputs.push_back(Output::Update {
                point: format!("value.{point}"),
                value: value.into(),
            }),
            FromDevice::Rate(n) => {
                self.outputs.push_back(Output::Update {
                    point: "rate".into(),
                    value: n.into(),
                });
                if self.awaiting == Some(Answer::Rate) {
                    self.complete(Ok(()));
                }
            }
            FromDevice::Ok if self.awaiting == Some(Answer::Ok) => self.complete(Ok(())),
            FromDevice::Ok => self.fatal("`OK` with no SET in flight".into()),
            FromDevice::Err(text) if self.awaiting.is_some() => {
                self.complete(Err(DeviceError::new(DeviceErrorKind::Failed, text)))
            }
            FromDevice::Err(text) => self.fatal(format!("`ERR {text}` with nothing in flight")),
        }
    }

    fn complete(&mut self, outcome: Result<(), DeviceError>) {
        self.awaiting = None;
        self.outputs.push_back(Output::Completed(outcome));
    }

    fn fatal(&mut self, why: String) {
        self.awaiting = None;
        self.outputs
            .push_back(Output::Fatal(SessionError::Protocol(format!(
                "load generator: {why}"
            ))));
    }
}

/// An integer argument; the profile's schema has checked it is there and whole, so a
/// miss here is a profile that promises more than the driver takes.
fn integer<T: TryFrom<i64>>(args: &Map<String, Value>, name: &str) -> Result<T, DeviceError> {
    args.get(name)
        .and_then(Value::as_i64)
        .and_then(|n| T::try_from(n).ok())
        .ok_or_else(|| {
            DeviceError::new(
                DeviceErrorKind::InvalidArgs,
                format!("`{name}` must be a whole number in range"),
            )
        })
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;
    use crate::testing::{command, drain, feed, poll, start};

    fn ready() -> Session {
        let mut session = Session::default();
        session.connected(Instant::now());
        assert_eq!(drain(&mut session), [Output::Ready]);
        session
    }

    fn update(point: &str, value: i64) -> Output {
        Output::Update {
            point: point.into(),
            value: value.into(),
        }
    }

    #[test]
    fn events_arrive_unasked_in_any_chunking() {
        let mut session = ready();
        assert_eq!(feed(&mut session, b"EV 0 1\nEV 1"), [update("value.0", 1)]);
        assert_eq!(feed(&mut session, b" 2\n"), [update("value.1", 2)]);
    }

    #[test]
    fn set_completes_on_ok_after_its_read_back() {
        let mut session = ready();
        let sent = start(
            &mut session,
            command("set", json!({"point": 2, "value": 9})),
        );
        assert_eq!(sent, [Output::Transmit(b"SET 2 9\n".to_vec())]);
        // An event published meanwhile does not end the request.
        assert_eq!(feed(&mut session, b"EV 0 5\n"), [update("value.0", 5)]);
        assert_eq!(
            feed(&mut session, b"EV 2 9\nOK\n"),
            [update("value.2", 9), Output::Completed(Ok(()))]
        );
    }

    #[test]
    fn rate_is_a_command_and_a_poll() {
        let mut session = ready();
        let sent = start(&mut session, command("rate", json!({"per_second": 500})));
        assert_eq!(sent, [Output::Transmit(b"RATE 500\n".to_vec())]);
        assert_eq!(
            feed(&mut session, b"RATE 500\n"),
            [update("rate", 500), Output::Completed(Ok(()))]
        );
        assert_eq!(
            start(&mut session, poll("rate")),
            [Output::Transmit(b"RATE?\n".to_vec())]
        );
    }

    #[test]
    fn a_device_error_fails_the_request_only() {
        let mut session = ready();
        start(
            &mut session,
            command("set", json!({"point": 99, "value": 1})),
        );
        let outputs = feed(&mut session, b"ERR no point 99\n");
        assert!(
            matches!(&outputs[..], [Output::Completed(Err(e))] if e.message == "no point 99"),
            "{outputs:?}"
        );
    }

    #[test]
    fn an_answer_nobody_asked_for_ends_the_session() {
        let mut session = ready();
        let outputs = feed(&mut session, b"OK\n");
        assert!(matches!(&outputs[..], [Output::Fatal(_)]), "{outputs:?}");
        let outputs = feed(&mut session, b"GARBAGE\n");
        assert!(matches!(&outputs[..], [Output::Fatal(_)]), "{outputs:?}");
    }

    #[test]
    fn a_negative_point_is_refused_before_the_wire() {
        let mut session = ready();
        let request = command("set", json!({"point": -1, "value": 1}));
        let error = session.start(Instant::now(), &request).unwrap_err();
        assert_eq!(error.kind, DeviceErrorKind::InvalidArgs);
        assert!(drain(&mut session).is_empty());
    }
}
