//! The client side of a scripted protocol: the kit's framer, the handshake steps, one
//! request in flight, and every frame checked against the error rules, the reports and the
//! reply the request waits for.

use std::collections::VecDeque;
use std::sync::Arc;
use std::time::Instant;

use serde_json::Value;
use tracing::debug;

use super::definition::{CompiledExchange, ErrorKind, Script};
use super::eval;
use super::template::Vars;
use crate::kit::Framer;
use crate::kit::args::as_text;
use crate::kit::telnet::Telnet;
use crate::{DeviceError, DeviceErrorKind, Output, Protocol, Request};

/// How a frame answered the request in flight.
enum Awaited {
    /// It is `expect`, with what it captured: the request's `set` applies.
    Expected(Vars),
    /// It is `done_when`: the device said what it did, in the reports.
    Done,
}

/// What is in flight.
struct InFlight {
    exchange: CompiledExchange,
    vars: Vars,
    /// For a repeated query: the field's next value, if any remain.
    next: Option<i64>,
}

pub struct Session {
    script: Arc<Script>,
    framer: Framer,
    telnet: Option<Telnet>,
    /// The handshake step waited for; `None` once ready.
    step: Option<usize>,
    in_flight: Option<InFlight>,
    /// Between two exchanges of a repeated query, set aside for a command.
    paused: Option<InFlight>,
    outputs: VecDeque<Output>,
}

impl Session {
    pub fn new(script: Arc<Script>) -> Session {
        Session {
            framer: script.framer(false),
            telnet: script.definition.framing.telnet.then(Telnet::default),
            script,
            step: None,
            in_flight: None,
            paused: None,
            outputs: VecDeque::new(),
        }
    }

    /// Bytes held for a frame not yet complete.
    pub fn buffered(&self) -> usize {
        self.framer.buffered()
    }

    fn transmit(&mut self, content: Vec<u8>) {
        let sealed = self.framer.seal(&content, &self.script.send_end());
        self.outputs.push_back(Output::Transmit(sealed));
    }

    fn render(&self, exchange: &CompiledExchange, vars: &Vars) -> Result<Vec<u8>, DeviceError> {
        exchange
            .send
            .render(
                vars,
                &self.script.definition.maps,
                self.script.length_width,
                &|_| None,
            )
            .map_err(|why| DeviceError::new(DeviceErrorKind::InvalidArgs, why))
    }

    /// Sends the handshake step `i`, or declares the session ready after the last.
    fn handshake(&mut self, i: usize) {
        let Some((send, _)) = self.script.handshake.get(i) else {
            self.step = None;
            self.outputs.push_back(Output::Ready);
            return;
        };
        self.step = Some(i);
        if let Some(send) = send {
            let bytes = send
                .render(
                    &Vars::new(),
                    &self.script.definition.maps,
                    self.script.length_width,
                    &|_| None,
                )
                .expect("handshake templates have no fields to fill");
            self.transmit(bytes);
        }
    }

    /// Builds what a request sends, without sending it.
    fn prepare(&self, request: &Request) -> Result<(InFlight, Vec<u8>), DeviceError> {
        let (exchange, vars) = match request {
            Request::Command { name, args } => {
                let exchange = self.script.commands.get(name).ok_or_else(|| {
                    DeviceError::new(
                        DeviceErrorKind::Unsupported,
                        format!("this profile has no command `{name}`"),
                    )
                })?;
                let declared = &self.script.definition.commands[name].args;
                for (arg, schema) in declared {
                    let optional = schema.get("optional").and_then(Value::as_bool) == Some(true);
                    if !optional {
                        crate::kit::args::required(args, arg)?;
                    }
                }
                (exchange, args.clone().into_iter().collect::<Vars>())
            }
            Request::Poll { query } => {
                let exchange = self.script.queries.get(query).ok_or_else(|| {
                    DeviceError::new(
                        DeviceErrorKind::Unsupported,
                        format!("this profile has no query `{query}`"),
                    )
                })?;
                let mut vars = Vars::new();
                if let Some(repeat) = &exchange.repeat {
                    vars.insert(repeat.field.clone(), Value::from(repeat.from));
                }
                (exchange, vars)
            }
        };
        let bytes = self.render(exchange, &vars)?;
        let next = exchange
            .repeat
            .as_ref()
            .and_then(|r| (r.from < r.to).then_some(r.from + 1));
        Ok((
            InFlight {
                exchange: exchange.clone(),
                vars,
                next,
            },
            bytes,
        ))
    }

    fn frame(&mut self, frame: &[u8]) {
        let script = Arc::clone(&self.script);
        let maps = &script.definition.maps;
        if let Some(i) = self.step {
            if self.script.handshake[i].1.capture(frame, maps).is_some() {
                self.handshake(i + 1);
            }
            return;
        }
        for rule in &script.errors {
            if let Some(vars) = rule.pattern.capture(frame, maps) {
                let message = rule
                    .message
                    .render(&vars, maps, 0, &|_| None)
                    .map(|m| String::from_utf8_lossy(&m).into_owned())
                    .unwrap_or_else(|_| rule.message.source.clone());
                match self.in_flight.take() {
                    Some(_) => {
                        let kind = match rule.kind {
                            ErrorKind::Failed => DeviceErrorKind::Failed,
                            ErrorKind::Invalid => DeviceErrorKind::InvalidArgs,
                            ErrorKind::Unsupported => DeviceErrorKind::Unsupported,
                            ErrorKind::Busy => DeviceErrorKind::Busy,
                        };
                        self.outputs
                            .push_back(Output::Completed(Err(DeviceError::new(kind, message))));
                    }
                    None => debug!(%message, "device reported an error with nothing in flight"),
                }
                return;
            }
        }
        // A frame can be both a report and the answer awaited: its points go out once.
        let mut updates = Vec::new();
        for report in &script.reports {
            let Some(vars) = report.pattern.capture(frame, maps) else {
                continue;
            };
            match &report.split {
                None => updates.extend(eval::apply(&self.script, &report.set, &vars)),
                Some((separator, each)) => {
                    let items = vars
                        .get("items")
                        .map(crate::kit::args::as_text)
                        .unwrap_or_default();
                    for item in items.split(separator.as_str()) {
                        if let Some(mut item_vars) = each.capture(item.trim().as_bytes(), maps) {
                            item_vars.extend(vars.clone());
                            updates.extend(eval::apply(&self.script, &report.set, &item_vars));
                        }
                    }
                }
            }
        }
        let Some(awaited) = self.awaited(frame) else {
            self.publish(updates);
            return;
        };
        let mut flight = self.in_flight.take().expect("checked above");
        if let Awaited::Expected(captured) = awaited {
            let mut vars = captured;
            for (k, v) in &flight.vars {
                vars.entry(k.clone()).or_insert_with(|| v.clone());
            }
            updates.extend(eval::apply(&self.script, &flight.exchange.set, &vars));
        }
        self.publish(updates);
        match flight.next {
            Some(value) => {
                let repeat = flight
                    .exchange
                    .repeat
                    .clone()
                    .expect("only repeats have a next");
                flight.vars.insert(repeat.field.clone(), Value::from(value));
                flight.next = (value < repeat.to).then_some(value + 1);
                self.paused = Some(flight);
                self.outputs.push_back(Output::Paused);
            }
            None => self.outputs.push_back(Output::Completed(Ok(()))),
        }
    }

    /// Whether `frame` is the reply the request in flight waits for. A reply about another
    /// channel or output is not (it was a report).
    fn awaited(&self, frame: &[u8]) -> Option<Awaited> {
        let flight = self.in_flight.as_ref()?;
        let maps = &self.script.definition.maps;
        let expected = flight.exchange.expect.as_ref().and_then(|expect| {
            let captured = expect.capture(frame, maps)?;
            let agrees = flight.vars.iter().all(|(k, v)| {
                captured
                    .get(k)
                    .is_none_or(|c| as_text(c).trim() == as_text(v).trim())
            });
            agrees.then_some(captured)
        });
        match expected {
            Some(captured) => Some(Awaited::Expected(captured)),
            None => flight
                .exchange
                .done_when
                .as_ref()?
                .capture(frame, maps)
                .map(|_| Awaited::Done),
        }
    }

    fn publish(&mut self, mut updates: Vec<Result<(String, Value), String>>) {
        let mut seen = std::collections::HashSet::new();
        // The last value for a point wins; it goes out once.
        updates.reverse();
        updates.retain(|u| {
            u.as_ref()
                .map_or(true, |(point, _)| seen.insert(point.clone()))
        });
        updates.reverse();
        for update in updates {
            match update {
                Ok((point, value)) => self.outputs.push_back(Output::Update { point, value }),
                Err(why) => debug!(%why, "a reply did not give a point value"),
            }
        }
    }
}

impl Protocol for Session {
    fn connected(&mut self, _now: Instant) {
        self.framer.clear();
        self.telnet = self.script.definition.framing.telnet.then(Telnet::default);
        self.in_flight = None;
        self.paused = None;
        self.outputs.clear();
        self.handshake(0);
    }

    fn received(&mut self, _now: Instant, data: &[u8]) {
        let data = match &mut self.telnet {
            Some(telnet) => {
                let (data, refusals) = telnet.filter(data);
                if !refusals.is_empty() {
                    self.outputs.push_back(Output::Transmit(refusals));
                }
                data
            }
            None => data.to_vec(),
        };
        self.framer.push(&data);
        while let Some(frame) = self.framer.next_frame() {
            match frame {
                Ok(frame) => self.frame(&frame),
                Err(e) => debug!(error = %e, "dropped bytes from the device"),
            }
        }
    }

    fn start(&mut self, _now: Instant, request: &Request) -> Result<(), DeviceError> {
        let (flight, bytes) = self.prepare(request)?;
        self.transmit(bytes);
        if flight.exchange.expect.is_none() {
            let updates = eval::apply(&self.script, &flight.exchange.set, &flight.vars);
            self.publish(updates);
            self.outputs.push_back(Output::Completed(Ok(())));
        } else {
            self.in_flight = Some(flight);
        }
        Ok(())
    }

    fn resume(&mut self, _now: Instant) {
        if let Some(flight) = self.paused.take() {
            match self.render(&flight.exchange, &flight.vars) {
                Ok(bytes) => {
                    self.transmit(bytes);
                    self.in_flight = Some(flight);
                }
                Err(e) => self.outputs.push_back(Output::Completed(Err(e))),
            }
        }
    }

    fn abandon(&mut self) {
        self.in_flight = None;
        self.paused = None;
    }

    fn poll_output(&mut self) -> Option<Output> {
        self.outputs.pop_front()
    }

    fn check(&self, request: &Request) -> Result<(), DeviceError> {
        self.prepare(request).map(|_| ())
    }

    fn waiting_for(&self) -> Option<String> {
        let (_, expect) = self.script.handshake.get(self.step?)?;
        Some(format!("the reply `{}`", expect.source.escape_debug()))
    }
}
