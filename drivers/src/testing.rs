//! Helpers the drivers' unit tests share: driving a [`Protocol`] by hand and naming what
//! it should put out.

use std::time::Instant;

use serde_json::Value;

use crate::{DeviceErrorKind, Output, Protocol, Request, SessionError};

/// Every output the session has ready.
pub fn drain<P: Protocol + ?Sized>(session: &mut P) -> Vec<Output> {
    std::iter::from_fn(|| session.poll_output()).collect()
}

/// Bytes from the device, and what the session made of them.
pub fn feed<P: Protocol + ?Sized>(session: &mut P, bytes: &[u8]) -> Vec<Output> {
    session.received(Instant::now(), bytes);
    drain(session)
}

/// Bytes from the device, and what the session made of them; a poll that pauses between
/// two exchanges is resumed at once, as the runtime does when no command is waiting.
pub fn feed_resuming<P: Protocol + ?Sized>(session: &mut P, bytes: &[u8]) -> Vec<Output> {
    let mut outputs = feed(session, bytes);
    if outputs.last() == Some(&Output::Paused) {
        outputs.pop();
        session.resume(Instant::now());
        outputs.extend(drain(session));
    }
    outputs
}

/// Starts a request the session must accept, and returns what it put out.
pub fn start<P: Protocol + ?Sized>(session: &mut P, request: Request) -> Vec<Output> {
    session.start(Instant::now(), &request).unwrap();
    drain(session)
}

/// A panel command; `args` must be a JSON object.
pub fn command(name: &str, args: Value) -> Request {
    let Value::Object(args) = args else {
        panic!("args must be an object")
    };
    Request::Command {
        name: name.into(),
        args,
    }
}

pub fn poll(query: &str) -> Request {
    Request::Poll {
        query: query.into(),
    }
}

pub fn tx(bytes: &[u8]) -> Output {
    Output::Transmit(bytes.to_vec())
}

pub fn update(point: &str, value: Value) -> Output {
    Output::Update {
        point: point.into(),
        value,
    }
}

pub fn done() -> Output {
    Output::Completed(Ok(()))
}

/// The kind and message of the one failed completion in `outputs`.
pub fn failed_with(outputs: &[Output]) -> (DeviceErrorKind, String) {
    match outputs {
        [Output::Completed(Err(e))] => (e.kind, e.message.clone()),
        other => panic!("expected one failed completion, got {other:?}"),
    }
}

/// The one fatal error in `outputs`.
pub fn fatal(outputs: &[Output]) -> SessionError {
    match outputs {
        [Output::Fatal(e)] => e.clone(),
        other => panic!("expected one fatal error, got {other:?}"),
    }
}
