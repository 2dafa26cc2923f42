//! Running a session against a model in memory, on a clock the test moves: no sockets,
//! no tokio, no sleeps. What the quinn-proto tests do with two endpoints.

use std::time::{Duration, Instant};

use crate::kit::model::DeviceModel;
use crate::{DeviceError, Output, Protocol, Request};

/// A [`Protocol`] session wired to a [`DeviceModel`]: every byte one sends the other
/// receives at once, on the harness's clock [`Pair::now`].
pub struct Pair<P: Protocol, M: DeviceModel> {
    pub session: P,
    pub model: M,
    connection: M::Connection,
    pub now: Instant,
    /// Every byte string either side wrote, in order: `(from_session, bytes)`.
    pub wire: Vec<(bool, Vec<u8>)>,
}

impl<P: Protocol, M: DeviceModel> Pair<P, M> {
    pub fn new(session: P, model: M) -> Pair<P, M> {
        Pair {
            session,
            model,
            connection: M::Connection::default(),
            now: Instant::now(),
            wire: Vec::new(),
        }
    }

    /// Opens a connection (greeting included) and returns what the session put out up to
    /// the point where both sides are quiet.
    pub fn connect(&mut self) -> Vec<Output> {
        self.connection = M::Connection::default();
        self.session.connected(self.now);
        let hello = self.model.greeting(&mut self.connection, self.now);
        if !hello.is_empty() {
            self.wire.push((false, hello.clone()));
            self.session.received(self.now, &hello);
        }
        self.pump()
    }

    /// Starts `request` and runs both sides until quiet; a paused poll is resumed, as the
    /// runtime does when no command waits.
    pub fn run(&mut self, request: &Request) -> Result<Vec<Output>, DeviceError> {
        self.session.start(self.now, request)?;
        Ok(self.pump())
    }

    /// The device says `bytes` unprompted.
    pub fn device_says(&mut self, bytes: &[u8]) -> Vec<Output> {
        self.wire.push((false, bytes.to_vec()));
        self.session.received(self.now, bytes);
        self.pump()
    }

    /// Moves the clock on, firing the session's timer if it comes due.
    pub fn advance(&mut self, by: Duration) -> Vec<Output> {
        self.now += by;
        if self.session.poll_timeout().is_some_and(|at| at <= self.now) {
            self.session.handle_timeout(self.now);
        }
        self.pump()
    }

    /// Delivers bytes back and forth until neither side has anything to say; returns the
    /// session's outputs other than its transmissions.
    pub fn pump(&mut self) -> Vec<Output> {
        let mut outputs = Vec::new();
        // Bounded, so a session and a model that keep answering each other fail the test
        // instead of hanging it.
        for _ in 0..10_000 {
            let Some(output) = self.session.poll_output() else {
                return outputs;
            };
            match output {
                Output::Transmit(bytes) => {
                    self.wire.push((true, bytes.clone()));
                    let reply = self.model.received(&mut self.connection, self.now, &bytes);
                    if !reply.is_empty() {
                        self.wire.push((false, reply.clone()));
                        self.session.received(self.now, &reply);
                    }
                }
                Output::Paused => self.session.resume(self.now),
                other => outputs.push(other),
            }
        }
        panic!("session and model never went quiet: {:?}", self.wire.last());
    }
}
