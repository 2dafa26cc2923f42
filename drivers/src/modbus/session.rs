//! The Modbus client as a sans-IO state machine (see [`crate::Protocol`]), for Modbus TCP
//! and RTU (on a serial line, or over TCP through a serial device server).
//!
//! Modbus has no greeting, so a session is ready as soon as it is connected. Every request
//! is one or more request/response exchanges, one at a time:
//!
//! - `Poll { query }`: the query is a poll group of the register map. The session sends
//!   the reads [`plan::plan`] chose, and reports the points of each read as its answer
//!   comes in (so a read that fails late in a group does not hide the values before it).
//!   Between two reads it [pauses](Output::Paused), so a panel command can go first: a
//!   command waits for at most the one read in flight, never for the whole group.
//! - `Command { name: "write", args: { point, value } }`: the write
//!   [`write::plan_write`] chose (FC 5/6/15/16, or read, change a bit, write back), then,
//!   with `read_back`, a read of the point, whose value is reported. Without read-back
//!   the written value is reported as given.
//!
//! An exception fails the request with the error [`Exception::device_error`](super::write::Exception::device_error) names; 06
//! (server busy) is first retried after `busy_backoff_ms` × 2^attempt, up to
//! `busy_retries` times. Bytes that cannot be the answer (bad CRC, another transaction id or
//! unit, garbage, anything while idle) end the session with [`Output::Fatal`], since the
//! stream is out of step; the runtime reconnects.
//!
//! The runtime owns per-request timeouts, the RTU inter-frame gap
//! ([`super::frame::rtu_silence`]) and serialising the sessions of several units on one
//! serial line.

use std::collections::{HashSet, VecDeque};
use std::time::{Duration, Instant};

use serde::Deserialize;
use serde_json::{Map, Value};
use tracing::warn;

use super::codec::{self, Data};
use super::frame::{Expected, FrameError, Framing, Mbap, Operation, Reader, Reply};
use super::map::{Point, RegisterMap, Table};
use super::plan::{self, Plan, Read};
use super::reporting::Reporter;
use super::write::{self, BitUpdate, Exception, WritePlan};
use crate::{
    DeviceError, DeviceErrorKind, DriverSettings, OptionsError, Output, Protocol, Request,
    SessionError,
};

/// The session's keys in the profile's `[options]` table; the register map's keys sit next
/// to them (see [`super::map::MAP_KEYS`]).
pub const OPTION_KEYS: &[&str] = &[
    "framing",
    "unit",
    "busy_retries",
    "busy_backoff_ms",
    "read_back",
];

pub const DEFAULT_UNIT: u8 = 1;
pub const DEFAULT_BUSY_RETRIES: u32 = 3;
pub const DEFAULT_BUSY_BACKOFF: Duration = Duration::from_millis(200);

/// The one command the driver has.
pub const WRITE: &str = "write";

/// Builds a session for [`super::DRIVER`].
pub fn build(settings: &DriverSettings) -> Result<Box<dyn Protocol>, String> {
    Ok(Box::new(Session::from_options(&settings.options)?))
}

/// How the session talks, from the profile's `[options]`:
///
/// - `framing`: `"tcp"` (default) or `"rtu"` (serial lines, and serial device servers that
///   pass RTU frames through a TCP port);
/// - `unit` (default 1): the unit id, 1..=247 on RTU (0 is broadcast, which nothing
///   answers); on TCP also 0 or 255, which many TCP-only devices expect;
/// - `busy_retries` (default 3) and `busy_backoff_ms` (default 200): how often and after
///   how long exception 06 (server busy) is retried; the wait doubles each time;
/// - `read_back` (default true): read a point after writing it and report what the device
///   holds, rather than the value sent.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Options {
    pub framing: Framing,
    pub unit: u8,
    pub busy_retries: u32,
    pub busy_backoff: Duration,
    pub read_back: bool,
}

impl Default for Options {
    fn default() -> Options {
        Options {
            framing: Framing::Tcp,
            unit: DEFAULT_UNIT,
            busy_retries: DEFAULT_BUSY_RETRIES,
            busy_backoff: DEFAULT_BUSY_BACKOFF,
            read_back: true,
        }
    }
}

/// The session's keys of `[options]` as a profile writes them; the register map's keys
/// beside them are read (and unknown keys refused) by [`RegisterMap::from_options`].
#[derive(Debug, Deserialize)]
struct OptionsFile {
    framing: Option<String>,
    unit: Option<u64>,
    busy_retries: Option<u64>,
    busy_backoff_ms: Option<u64>,
    read_back: Option<bool>,
}

impl Options {
    /// Reads the session's keys; the map's keys are left to [`RegisterMap::from_options`].
    pub fn from_options(options: &Map<String, Value>) -> Result<Options, OptionsError> {
        let file: OptionsFile = crate::catalog::options_from(options)?;
        let framing = match file.framing.as_deref() {
            None | Some("tcp") => Framing::Tcp,
            Some("rtu") => Framing::Rtu,
            Some(other) => {
                return Err(OptionsError::at_key(
                    "framing",
                    format!("modbus option `framing`: \"{other}\" is neither \"tcp\" nor \"rtu\""),
                ));
            }
        };
        let mut parsed = Options {
            framing,
            ..Options::default()
        };
        let at_most = |key: &str, value: Option<u64>, max: u64| match value {
            Some(n) if n > max => Err(OptionsError::at_key(
                key,
                format!("modbus option `{key}`: {n} is not an integer from 0 to {max}"),
            )),
            other => Ok(other),
        };
        if let Some(unit) = at_most("unit", file.unit, 255)? {
            let unit = unit as u8;
            let allowed = match parsed.framing {
                Framing::Rtu => (1..=247).contains(&unit),
                Framing::Tcp => unit <= 247 || unit == 255,
            };
            if !allowed {
                return Err(OptionsError::at_key(
                    "unit",
                    format!(
                        "modbus option `unit`: {unit} is not a unit id for {} framing (use 1..=247{})",
                        parsed.framing.as_str(),
                        match parsed.framing {
                            Framing::Rtu => "; 0 is broadcast, which no device answers",
                            Framing::Tcp => ", 0 or 255",
                        }
                    ),
                ));
            }
            parsed.unit = unit;
        }
        if let Some(retries) = at_most("busy_retries", file.busy_retries, 10)? {
            parsed.busy_retries = retries as u32;
        }
        if let Some(backoff) = at_most("busy_backoff_ms", file.busy_backoff_ms, 60_000)? {
            parsed.busy_backoff = Duration::from_millis(backoff);
        }
        if let Some(read_back) = file.read_back {
            parsed.read_back = read_back;
        }
        Ok(parsed)
    }
}

/// One Modbus device on one connection.
#[derive(Debug)]
pub struct Session {
    options: Options,
    map: RegisterMap,
    reader: Reader,
    /// Connected and in step; bytes are ignored otherwise.
    up: bool,
    /// The last MBAP transaction id used.
    transaction: u16,
    job: Option<Job>,
    /// A poll set aside between two reads, with its next read ready to send on
    /// [`Protocol::resume`].
    paused: Option<Job>,
    outputs: VecDeque<Output>,
    /// Rounding and deadbands: which readings are news.
    reporter: Reporter,
    /// Points already warned about for implausible floats (once each).
    implausible: HashSet<String>,
}

/// The request in flight and the exchange it is at.
#[derive(Debug)]
struct Job {
    task: Task,
    operation: Operation,
    /// How logs and errors name the exchange (`read holding 0..=9 (FC 3)`).
    label: String,
    transaction: u16,
    /// Busy answers to this exchange so far.
    busy: u32,
    /// Set while waiting to repeat the exchange after a busy answer.
    retry_at: Option<Instant>,
}

#[derive(Debug)]
enum Task {
    Poll {
        plan: Plan,
        /// Index of the read in flight.
        read: usize,
    },
    Write {
        point: Point,
        value: Value,
        step: WriteStep,
    },
}

#[derive(Debug, Clone, Copy)]
enum WriteStep {
    /// Reading the register whose bit is to change.
    ReadRegister(BitUpdate),
    Write,
    ReadBack,
}

impl Session {
    pub fn new(options: Options, map: RegisterMap) -> Session {
        Session {
            reader: Reader::new(options.framing),
            options,
            up: false,
            transaction: 0,
            job: None,
            paused: None,
            outputs: VecDeque::new(),
            reporter: Reporter::new(map.reporting.clone()),
            implausible: HashSet::new(),
            map,
        }
    }

    /// Reads session options and register map from a profile's `[options]` table.
    pub fn from_options(options: &Map<String, Value>) -> Result<Session, String> {
        let session_options = Options::from_options(options).map_err(|e| e.to_string())?;
        let map = RegisterMap::from_options(options).map_err(|e| e.to_string())?;
        Ok(Session::new(session_options, map))
    }

    pub fn map(&self) -> &RegisterMap {
        &self.map
    }

    fn begin(&self, request: &Request) -> Result<Option<(Task, Operation, String)>, DeviceError> {
        match request {
            Request::Poll { query } => {
                let plan = plan::plan(&self.map, query).map_err(|_| {
                    let groups: Vec<&str> =
                        self.map.poll_groups.keys().map(String::as_str).collect();
                    DeviceError::new(
                        DeviceErrorKind::Unsupported,
                        format!(
                            "unknown modbus poll group `{query}`; the register map has: {}",
                            groups.join(", ")
                        ),
                    )
                })?;
                let Some(&first) = plan.reads.first() else {
                    return Ok(None);
                };
                Ok(Some((
                    Task::Poll { plan, read: 0 },
                    Operation::Read(first),
                    first.to_string(),
                )))
            }
            Request::Command { name, args } if name == WRITE => {
                let point_name = args.get("point").and_then(Value::as_str).ok_or_else(|| {
                    invalid("`write` needs `point`, the name of a point in the register map")
                })?;
                let value = args
                    .get("value")
                    .ok_or_else(|| invalid("`write` needs `value`"))?;
                let point = self.map.point(point_name).ok_or_else(|| {
                    invalid(format!("no point `{point_name}` in the register map"))
                })?;
                let label = format!("write point `{point_name}`");
                let (step, operation) = match write::plan_write(point, value)? {
                    WritePlan::Direct(request) => (WriteStep::Write, Operation::Write(request)),
                    WritePlan::ReadModifyWrite(update) => (
                        WriteStep::ReadRegister(update),
                        Operation::Read(update.read()),
                    ),
                };
                let task = Task::Write {
                    point: point.clone(),
                    value: value.clone(),
                    step,
                };
                Ok(Some((task, operation, label)))
            }
            Request::Command { name, .. } => Err(DeviceError::new(
                DeviceErrorKind::Unsupported,
                format!("modbus has no command `{name}`; use `{WRITE}`"),
            )),
        }
    }

    /// Puts the job's exchange on the wire, with a fresh transaction id.
    fn send(&mut self) {
        let Some(job) = self.job.as_mut() else {
            return;
        };
        self.transaction = self.transaction.wrapping_add(1);
        job.transaction = self.transaction;
        let pdu = job.operation.encode();
        let frame = match self.options.framing {
            Framing::Tcp => super::frame::tcp_wrap(
                Mbap {
                    transaction: job.transaction,
                    unit: self.options.unit,
                },
                &pdu,
            ),
            Framing::Rtu => super::frame::rtu_wrap(self.options.unit, &pdu),
        };
        self.reader.clear();
        self.outputs.push_back(Output::Transmit(frame));
    }

    /// Moves on to the next exchange of the job.
    fn finish(&mut self, result: Result<(), DeviceError>) {
        self.job = None;
        self.outputs.push_back(Output::Completed(result));
    }

    fn fatal(&mut self, error: FrameError) {
        self.job = None;
        self.up = false;
        self.reader.clear();
        self.outputs
            .push_back(Output::Fatal(SessionError::Protocol(error.to_string())));
    }

    /// A float that looks like the wrong word order is a WARN, once per point.
    fn check_plausible(&mut self, name: &str, value: &Value) {
        let Some(point) = self.map.point(name) else {
            return;
        };
        if let Some(hint) = codec::implausible(point, value)
            && self.implausible.insert(name.to_string())
        {
            warn!("{hint}");
        }
    }

    fn on_reply(&mut self, now: Instant, reply: Reply) {
        let Some(mut job) = self.job.take() else {
            return;
        };
        let mut updates = Vec::new();
        let outcome = match reply {
            Reply::Exception(exception)
                if exception.is_retryable() && job.busy < self.options.busy_retries =>
            {
                job.retry_at = Some(now + self.options.busy_backoff * 2u32.pow(job.busy));
                job.busy += 1;
                self.job = Some(job);
                return;
            }
            Reply::Exception(exception) => {
                let mut error = exception.device_error(&job.label);
                if let Operation::Read(read) = &job.operation {
                    error.message.push_str(&read_hint(exception, read));
                }
                Err(error)
            }
            Reply::Data(response) => {
                job.advance(Some(response), self.options.read_back, &mut updates)
            }
            Reply::Written => job.advance(None, self.options.read_back, &mut updates),
        };
        // A poll's readings are news only beyond their deadband; a write's read-back is
        // always reported, since the command's result follows it.
        let always = !matches!(job.task, Task::Poll { .. });
        for (point, value) in updates {
            self.check_plausible(&point, &value);
            if let Some(value) = self.reporter.admit(&point, value, always) {
                self.outputs.push_back(Output::Update { point, value });
            }
        }
        match outcome {
            Ok(Some((operation, label))) => {
                job.operation = operation;
                job.label = label;
                job.busy = 0;
                if matches!(job.task, Task::Poll { .. }) {
                    self.paused = Some(job);
                    self.outputs.push_back(Output::Paused);
                } else {
                    self.job = Some(job);
                    self.send();
                }
            }
            Ok(None) => self.finish(Ok(())),
            Err(error) => self.finish(Err(error)),
        }
    }
}

/// What a refused read most likely means for a new profile, and where to fix it.
fn read_hint(exception: Exception, read: &Read) -> String {
    match exception {
        Exception::IllegalDataAddress => format!(
            "; profile addresses are 0-based: the manual's 30001 is input 0 and 40001 is \
             holding 0, so this read starts at the manual's {} (device-profiles/README.md, \
             \"Addresses\")",
            manual_number(read)
        ),
        Exception::IllegalDataValue => format!(
            "; this read asks for {} at once: if the device takes fewer, set \
             `max_registers_per_read` (or `max_bits_per_read`) under [options] to its limit",
            read.count
        ),
        Exception::ServerDeviceFailure => "; a Modbus gateway answers 04 for a unit that is \
            not on its bus: check `unit` and the wiring behind the gateway"
            .to_string(),
        _ => String::new(),
    }
}

/// The 1-based "Modicon" number a manual would print for the first address of `read`.
fn manual_number(read: &Read) -> u32 {
    let base = match read.table {
        Table::Coil => 1,
        Table::DiscreteInput => 10_001,
        Table::Input => 30_001,
        Table::Holding => 40_001,
    };
    base + u32::from(read.start)
}

impl Job {
    /// Takes in the answer to the exchange in flight (`None` for a write's); returns the
    /// next exchange, or `None` when the request is done.
    fn advance(
        &mut self,
        response: Option<plan::Response>,
        read_back: bool,
        updates: &mut Vec<(String, Value)>,
    ) -> Result<Option<(Operation, String)>, DeviceError> {
        let unexpected = || failed(format!("{}: unexpected reply", self.label));
        match &mut self.task {
            Task::Poll { plan, read } => {
                let response = response.ok_or_else(unexpected)?;
                let values = plan
                    .decode_read(*read, &response)
                    .map_err(|e| failed(format!("{}: {e}", self.label)))?;
                updates.extend(values);
                *read += 1;
                Ok(plan
                    .reads
                    .get(*read)
                    .map(|next| (Operation::Read(*next), next.to_string())))
            }
            Task::Write { point, value, step } => match (*step, response) {
                (WriteStep::ReadRegister(update), Some(plan::Response::Registers(words))) => {
                    let current = *words.first().ok_or_else(unexpected)?;
                    *step = WriteStep::Write;
                    Ok(Some((
                        Operation::Write(update.apply(current)),
                        self.label.clone(),
                    )))
                }
                (WriteStep::Write, None) if read_back => {
                    *step = WriteStep::ReadBack;
                    let read = Read {
                        table: point.table,
                        start: point.address,
                        count: point.width(),
                    };
                    Ok(Some((
                        Operation::Read(read),
                        format!("read back point `{}`", point.name),
                    )))
                }
                (WriteStep::Write, None) => {
                    updates.push((point.name.clone(), value.clone()));
                    Ok(None)
                }
                (WriteStep::ReadBack, Some(response)) => {
                    let data = match &response {
                        plan::Response::Bits(bits) => Data::Bits(bits),
                        plan::Response::Registers(words) => Data::Registers(words),
                    };
                    updates.push((point.name.clone(), codec::decode(point, data)?));
                    Ok(None)
                }
                // The frame reader only returns the reply shape the operation asks for.
                _ => Err(unexpected()),
            },
        }
    }
}

impl Protocol for Session {
    fn check(&self, request: &Request) -> Result<(), DeviceError> {
        self.begin(request).map(|_| ())
    }

    fn connected(&mut self, _now: Instant) {
        self.up = true;
        self.job = None;
        self.paused = None;
        self.reader.clear();
        self.reporter.reset();
        self.outputs.clear();
        self.outputs.push_back(Output::Ready);
    }

    fn received(&mut self, now: Instant, data: &[u8]) {
        if !self.up || data.is_empty() {
            return;
        }
        let Some(job) = self.job.as_ref().filter(|job| job.retry_at.is_none()) else {
            return self.fatal(FrameError::Unsolicited(data.len()));
        };
        let expected = Expected {
            operation: job.operation.clone(),
            unit: self.options.unit,
            transaction: job.transaction,
        };
        match self.reader.push(data, &expected) {
            Ok(Some(reply)) => self.on_reply(now, reply),
            Ok(None) => {}
            Err(error) => self.fatal(error),
        }
    }

    fn start(&mut self, _now: Instant, request: &Request) -> Result<(), DeviceError> {
        if !self.up {
            return Err(failed("not connected to the modbus device"));
        }
        if self.job.is_some() {
            return Err(DeviceError::new(
                DeviceErrorKind::Busy,
                "another modbus request is in flight",
            ));
        }
        if self.paused.is_some() && matches!(request, Request::Poll { .. }) {
            return Err(DeviceError::new(
                DeviceErrorKind::Busy,
                "another modbus poll is paused; resume it first",
            ));
        }
        match self.begin(request)? {
            Some((task, operation, label)) => {
                self.job = Some(Job {
                    task,
                    operation,
                    label,
                    transaction: 0,
                    busy: 0,
                    retry_at: None,
                });
                self.send();
            }
            // A poll group with no points: nothing to read.
            None => self.outputs.push_back(Output::Completed(Ok(()))),
        }
        Ok(())
    }

    fn abandon(&mut self) {
        self.job = None;
        self.reader.clear();
    }

    fn resume(&mut self, _now: Instant) {
        if self.job.is_none()
            && let Some(job) = self.paused.take()
        {
            self.job = Some(job);
            self.send();
        }
    }

    fn poll_output(&mut self) -> Option<Output> {
        self.outputs.pop_front()
    }

    fn poll_timeout(&self) -> Option<Instant> {
        self.job.as_ref().and_then(|job| job.retry_at)
    }

    fn handle_timeout(&mut self, now: Instant) {
        let due = self
            .job
            .as_mut()
            .filter(|job| job.retry_at.is_some_and(|at| at <= now));
        if let Some(job) = due {
            job.retry_at = None;
            self.send();
        }
    }
}

fn invalid(message: impl Into<String>) -> DeviceError {
    DeviceError::new(DeviceErrorKind::InvalidArgs, message)
}

fn failed(message: impl Into<String>) -> DeviceError {
    DeviceError::new(DeviceErrorKind::Failed, message)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::modbus::frame::{crc16, rtu_unwrap, rtu_wrap, tcp_unwrap, tcp_wrap};
    use crate::testing::*;
    use serde_json::json;

    fn options(value: Value) -> Map<String, Value> {
        match value {
            Value::Object(map) => map,
            _ => panic!("not an object"),
        }
    }

    fn session(value: Value) -> Session {
        let mut session = Session::from_options(&options(value)).unwrap();
        session.connected(Instant::now());
        assert_eq!(session.poll_output(), Some(Output::Ready));
        session
    }

    fn transmitted(outputs: &[Output]) -> Vec<Vec<u8>> {
        outputs
            .iter()
            .filter_map(|o| match o {
                Output::Transmit(bytes) => Some(bytes.clone()),
                _ => None,
            })
            .collect()
    }

    fn updates(outputs: &[Output]) -> Vec<(String, Value)> {
        outputs
            .iter()
            .filter_map(|o| match o {
                Output::Update { point, value } => Some((point.clone(), value.clone())),
                _ => None,
            })
            .collect()
    }

    fn completed(outputs: &[Output]) -> Option<Result<(), DeviceError>> {
        outputs.iter().find_map(|o| match o {
            Output::Completed(result) => Some(result.clone()),
            _ => None,
        })
    }

    fn poll(group: &str) -> Request {
        Request::Poll {
            query: group.into(),
        }
    }

    fn write(point: &str, value: Value) -> Request {
        Request::Command {
            name: WRITE.into(),
            args: options(json!({ "point": point, "value": value })),
        }
    }

    /// The TCP answer to `request` (a whole frame) with `pdu`.
    fn tcp_reply(request: &[u8], pdu: &[u8]) -> Vec<u8> {
        let (header, _) = tcp_unwrap(request).unwrap();
        tcp_wrap(header, pdu)
    }

    /// The PDU of a read answer carrying `words`.
    fn registers(function: u8, words: &[u16]) -> Vec<u8> {
        let mut pdu = vec![function, (2 * words.len()) as u8];
        pdu.extend(words.iter().flat_map(|w| w.to_be_bytes()));
        pdu
    }

    /// Starts `request`, then answers each request the session sends with the next PDU.
    fn exchange(session: &mut Session, request: Request, answers: &[Vec<u8>]) -> Vec<Output> {
        let now = Instant::now();
        session.start(now, &request).unwrap();
        let mut all = Vec::new();
        for answer in answers {
            let mut outputs = drain(session);
            if outputs.last() == Some(&Output::Paused) {
                session.resume(now);
                outputs.extend(drain(session));
            }
            let sent = transmitted(&outputs);
            assert_eq!(sent.len(), 1, "one request at a time: {outputs:?}");
            all.extend(outputs);
            session.received(now, &tcp_reply(&sent[0], answer));
        }
        all.extend(drain(session));
        all
    }

    fn sequencer() -> Value {
        json!({
            "poll_groups": { "fast": "500ms" },
            "points": [
                { "name": "outlet1", "table": "coil", "address": 0, "writable": true, "poll": "fast" },
                { "name": "outlet2", "table": "coil", "address": 1, "writable": true, "poll": "fast" },
                { "name": "current1", "table": "input", "address": 100, "type": "f32", "poll": "fast" },
                { "name": "current2", "table": "input", "address": 106, "type": "f32", "poll": "fast" },
                { "name": "voltage", "table": "input", "address": 0, "scale": 0.1 },
                { "name": "mode", "table": "holding", "address": 10, "writable": true,
                  "enum": { "0": "off", "1": "auto" } },
                { "name": "alarm", "table": "holding", "address": 11, "bit": 3, "writable": true },
            ]
        })
    }

    #[test]
    fn near_ranges_are_read_together() {
        let mut session = session(sequencer());
        let outputs = exchange(
            &mut session,
            poll("fast"),
            &[
                vec![1, 1, 0b10],
                registers(4, &[0x41B4, 0, 0, 0, 0, 0, 0x4020, 0]),
            ],
        );
        let sent = transmitted(&outputs);
        assert_eq!(sent.len(), 2, "coils and one read spanning both currents");
        assert_eq!(
            sent[0],
            [0, 1, 0, 0, 0, 6, 1, 1, 0, 0, 0, 2],
            "FC 1, coils 0..=1"
        );
        assert_eq!(
            sent[1],
            [0, 2, 0, 0, 0, 6, 1, 4, 0, 100, 0, 8],
            "FC 4, inputs 100..=107"
        );
        assert_eq!(
            updates(&outputs),
            [
                ("outlet1".into(), json!(false)),
                ("outlet2".into(), json!(true)),
                ("current1".into(), json!(22.5)),
                ("current2".into(), json!(2.5)),
            ]
        );
        assert_eq!(completed(&outputs), Some(Ok(())));
    }

    #[test]
    fn a_write_runs_between_two_reads_of_a_paused_poll() {
        let mut session = session(sequencer());
        let now = Instant::now();
        session.start(now, &poll("fast")).unwrap();
        let coils = transmitted(&drain(&mut session));
        assert_eq!(coils.len(), 1);
        session.received(now, &tcp_reply(&coils[0], &[1, 1, 0b01]));
        let outputs = drain(&mut session);
        assert_eq!(
            updates(&outputs).len(),
            2,
            "the first read's points at once"
        );
        assert_eq!(outputs.last(), Some(&Output::Paused), "{outputs:?}");
        assert!(
            transmitted(&outputs).is_empty(),
            "nothing on the wire while paused"
        );
        assert!(
            session.start(now, &poll("default")).is_err(),
            "a second poll waits for the paused one"
        );

        // A command goes in the gap; the poll stays paused until resumed.
        let mode = write("mode", json!("auto"));
        let outputs = exchange(
            &mut session,
            mode,
            &[vec![6, 0, 10, 0, 1], registers(3, &[1])],
        );
        assert_eq!(updates(&outputs), [("mode".into(), json!("auto"))]);
        assert_eq!(completed(&outputs), Some(Ok(())));
        assert!(drain(&mut session).is_empty());

        session.resume(now);
        let currents = transmitted(&drain(&mut session));
        assert_eq!(currents.len(), 1);
        assert_eq!(
            currents[0][7], 4,
            "the poll goes on with its second read (FC 4)"
        );
        session.received(now, &tcp_reply(&currents[0], &registers(4, &[0; 8])));
        let outputs = drain(&mut session);
        assert_eq!(updates(&outputs).len(), 2);
        assert_eq!(completed(&outputs), Some(Ok(())));
    }

    #[test]
    fn a_reconnect_forgets_a_paused_poll() {
        let mut session = session(sequencer());
        let now = Instant::now();
        session.start(now, &poll("fast")).unwrap();
        let coils = transmitted(&drain(&mut session));
        session.received(now, &tcp_reply(&coils[0], &[1, 1, 0]));
        assert_eq!(drain(&mut session).last(), Some(&Output::Paused));
        session.connected(now);
        assert_eq!(drain(&mut session), [Output::Ready]);
        session.resume(now);
        assert!(drain(&mut session).is_empty(), "nothing left to resume");
        assert!(session.start(now, &poll("fast")).is_ok());
    }

    #[test]
    fn every_type_decodes() {
        let mut session = session(json!({ "points": [
            { "name": "u16", "table": "holding", "address": 0 },
            { "name": "i16", "table": "holding", "address": 1, "type": "i16" },
            { "name": "u32", "table": "holding", "address": 2, "type": "u32", "order": "CDAB" },
            { "name": "i32", "table": "holding", "address": 4, "type": "i32" },
            { "name": "u64", "table": "holding", "address": 6, "type": "u64" },
            { "name": "i64", "table": "holding", "address": 10, "type": "i64" },
            { "name": "f32", "table": "holding", "address": 14, "type": "f32", "order": "BADC" },
            { "name": "f64", "table": "holding", "address": 16, "type": "f64" },
            { "name": "text", "table": "holding", "address": 20, "type": "string", "length": 2 },
            { "name": "flag", "table": "holding", "address": 22, "bit": 1 },
            { "name": "state", "table": "holding", "address": 23, "enum": { "2": "on" } },
            { "name": "volts", "table": "holding", "address": 24, "scale": 0.1 },
            { "name": "contact", "table": "discrete_input", "address": 0 },
        ]}));
        let mut words = vec![
            7, 0xFFFB, 0xE240, 0x0001, 0xFFFF, 0xFFFE, 0, 0, 0, 1, 0xFFFF, 0xFFFF, 0xFFFF, 0xFFFF,
            0xB441, 0x0000,
        ];
        words.extend(
            1.5f64
                .to_bits()
                .to_be_bytes()
                .chunks(2)
                .map(|p| u16::from_be_bytes([p[0], p[1]])),
        );
        words.extend([
            u16::from_be_bytes(*b"Hi"),
            u16::from_be_bytes(*b"!\0"),
            0b10,
            2,
            2304,
        ]);
        let outputs = exchange(
            &mut session,
            poll("default"),
            &[vec![2, 1, 1], registers(3, &words)],
        );
        assert_eq!(completed(&outputs), Some(Ok(())));
        let values: Map<String, Value> = updates(&outputs).into_iter().collect();
        assert_eq!(
            Value::Object(values),
            json!({
                "u16": 7, "i16": -5, "u32": 123456, "i32": -2, "u64": 1, "i64": -1,
                "f32": 22.5, "f64": 1.5, "text": "Hi!", "flag": true, "state": "on",
                "volts": 230.4, "contact": true,
            })
        );
    }

    fn voltmeter() -> Value {
        json!({ "points": [{ "name": "voltage", "table": "input", "address": 0, "scale": 0.1 }] })
    }

    #[test]
    fn a_reading_within_the_deadband_is_no_update_and_decimals_round() {
        // Volts × 0.01: 23000 is 230.00 V. Default one decimal; this point ±0.5 V.
        let mut session = session(json!({
            "decimals": 1,
            "points": [
                { "name": "voltage", "table": "input", "address": 0, "scale": 0.01, "deadband": 0.5 },
                { "name": "frequency", "table": "input", "address": 1, "scale": 0.001 },
            ]
        }));
        let read = |session: &mut Session, volts: u16, millihertz: u16| {
            updates(&exchange(
                session,
                poll("default"),
                &[registers(4, &[volts, millihertz])],
            ))
        };
        assert_eq!(
            read(&mut session, 23000, 49987),
            [
                ("voltage".to_string(), json!(230.0)),
                ("frequency".to_string(), json!(50.0))
            ]
        );
        assert_eq!(read(&mut session, 23041, 50012), [], "within both");
        assert_eq!(
            read(&mut session, 23062, 50061),
            [
                ("voltage".to_string(), json!(230.6)),
                ("frequency".to_string(), json!(50.1))
            ]
        );
        session.connected(Instant::now());
        drain(&mut session);
        assert_eq!(
            read(&mut session, 23062, 50061).len(),
            2,
            "news after a reconnect"
        );
    }

    #[test]
    fn deadbands_are_for_number_points_only() {
        let Err(error) = Session::from_options(&options(json!({ "points": [
            { "name": "relay", "table": "coil", "address": 0, "deadband": 1 },
        ]}))) else {
            panic!("a deadband on a coil is refused");
        };
        assert!(error.contains("`relay`, field `deadband`"), "{error}");
    }

    #[test]
    fn illegal_address_fails_the_poll_with_a_named_error() {
        let mut session = session(voltmeter());
        let outputs = exchange(&mut session, poll("default"), &[vec![0x84, 0x02]]);
        let error = completed(&outputs).unwrap().unwrap_err();
        assert_eq!(error.kind, DeviceErrorKind::InvalidArgs);
        assert!(error.message.contains("read input 0..=0 (FC 4)"), "{error}");
        assert!(error.message.contains("illegal data address"), "{error}");
        assert!(updates(&outputs).is_empty());
    }

    #[test]
    fn busy_is_retried_with_a_growing_backoff() {
        let mut session = session(voltmeter());
        let start = Instant::now();
        session.start(start, &poll("default")).unwrap();
        let mut request = transmitted(&drain(&mut session)).remove(0);
        let mut now = start;
        for wait_ms in [200, 400] {
            session.received(now, &tcp_reply(&request, &[0x84, 0x06]));
            assert!(drain(&mut session).is_empty(), "no output while waiting");
            let due = session.poll_timeout().expect("a retry is scheduled");
            assert_eq!(due - now, Duration::from_millis(wait_ms));
            session.handle_timeout(due - Duration::from_millis(1));
            assert!(drain(&mut session).is_empty(), "not before it is due");
            now = due;
            session.handle_timeout(now);
            let retry = transmitted(&drain(&mut session)).remove(0);
            assert_eq!(retry[6..], request[6..], "the same read again");
            assert_ne!(retry[..2], request[..2], "with a new transaction id");
            request = retry;
        }
        session.received(now, &tcp_reply(&request, &registers(4, &[2301])));
        let outputs = drain(&mut session);
        assert_eq!(updates(&outputs), [("voltage".into(), json!(230.1))]);
        assert_eq!(completed(&outputs), Some(Ok(())));
        assert_eq!(session.poll_timeout(), None);
    }

    #[test]
    fn busy_gives_up_after_the_retries() {
        let mut session = session(json!({ "busy_retries": 1, "busy_backoff_ms": 10,
            "points": [{ "name": "v", "table": "input", "address": 0 }] }));
        let now = Instant::now();
        session.start(now, &poll("default")).unwrap();
        let request = transmitted(&drain(&mut session)).remove(0);
        session.received(now, &tcp_reply(&request, &[0x84, 0x06]));
        session.handle_timeout(now + Duration::from_millis(10));
        let retry = transmitted(&drain(&mut session)).remove(0);
        session.received(now, &tcp_reply(&retry, &[0x84, 0x06]));
        let error = completed(&drain(&mut session)).unwrap().unwrap_err();
        assert_eq!(error.kind, DeviceErrorKind::Busy);
        assert!(error.message.contains("busy"), "{error}");
    }

    #[test]
    fn bad_crc_is_fatal() {
        let mut session = session(json!({ "framing": "rtu", "unit": 17, "points": [
            { "name": "v", "table": "holding", "address": 107 },
            { "name": "w", "table": "holding", "address": 108, "type": "u32" },
        ] }));
        session.start(Instant::now(), &poll("default")).unwrap();
        let request = transmitted(&drain(&mut session)).remove(0);
        assert_eq!(request, [0x11, 0x03, 0x00, 0x6B, 0x00, 0x03, 0x76, 0x87]);
        assert_eq!(rtu_unwrap(&request).unwrap().0, 17);
        let mut reply = rtu_wrap(17, &registers(3, &[5, 0, 1]));
        let last = reply.len() - 1;
        reply[last] ^= 0xFF;
        session.received(Instant::now(), &reply);
        let outputs = drain(&mut session);
        let [Output::Fatal(SessionError::Protocol(message))] = &outputs[..] else {
            panic!("{outputs:?}")
        };
        assert!(message.contains("bad CRC"), "{message}");
        assert!(message.contains("baud rate"), "{message}");
        session.received(Instant::now(), &[1, 2, 3]);
        assert!(drain(&mut session).is_empty(), "ignored until reconnected");
    }

    #[test]
    fn rtu_replies_in_pieces_complete_the_poll() {
        let mut session = session(json!({ "framing": "rtu",
            "points": [{ "name": "v", "table": "holding", "address": 0, "type": "u32" }] }));
        session.start(Instant::now(), &poll("default")).unwrap();
        drain(&mut session);
        let reply = rtu_wrap(1, &registers(3, &[1, 2]));
        assert_eq!(crc16(&reply), 0, "a whole frame checks to zero");
        for byte in &reply {
            session.received(Instant::now(), &[*byte]);
        }
        let outputs = drain(&mut session);
        assert_eq!(updates(&outputs), [("v".into(), json!(65538))]);
        assert_eq!(completed(&outputs), Some(Ok(())));
    }

    #[test]
    fn wrong_transaction_id_is_fatal() {
        let mut session = session(sequencer());
        session.start(Instant::now(), &poll("default")).unwrap();
        let mut request = transmitted(&drain(&mut session)).remove(0);
        request[1] = request[1].wrapping_add(1);
        session.received(Instant::now(), &tcp_reply(&request, &registers(4, &[1])));
        let outputs = drain(&mut session);
        assert!(
            matches!(&outputs[..], [Output::Fatal(SessionError::Protocol(m))] if m.contains("transaction id")),
            "{outputs:?}"
        );
    }

    #[test]
    fn bytes_while_idle_are_fatal() {
        let mut session = session(sequencer());
        session.received(Instant::now(), &[0, 1, 0, 0]);
        assert!(matches!(
            &drain(&mut session)[..],
            [Output::Fatal(SessionError::Protocol(m))] if m.contains("no request in flight")
        ));
    }

    #[test]
    fn a_coil_write_reads_back() {
        let mut session = session(sequencer());
        let outputs = exchange(
            &mut session,
            write("outlet2", json!(true)),
            &[vec![5, 0, 1, 0xFF, 0], vec![1, 1, 1]],
        );
        let sent = transmitted(&outputs);
        assert_eq!(sent[0][7..], [5, 0, 1, 0xFF, 0]);
        assert_eq!(sent[1][7..], [1, 0, 1, 0, 1]);
        assert_eq!(updates(&outputs), [("outlet2".into(), json!(true))]);
        assert_eq!(completed(&outputs), Some(Ok(())));
    }

    #[test]
    fn without_read_back_the_written_value_is_reported() {
        let mut options = sequencer();
        options["read_back"] = json!(false);
        let mut session = session(options);
        let outputs = exchange(
            &mut session,
            write("mode", json!("auto")),
            &[vec![6, 0, 10, 0, 1]],
        );
        assert_eq!(transmitted(&outputs)[0][7..], [6, 0, 10, 0, 1]);
        assert_eq!(updates(&outputs), [("mode".into(), json!("auto"))]);
        assert_eq!(completed(&outputs), Some(Ok(())));
    }

    #[test]
    fn a_bit_write_is_read_modify_write() {
        let mut session = session(sequencer());
        let outputs = exchange(
            &mut session,
            write("alarm", json!(true)),
            &[
                registers(3, &[0x8001]),
                vec![6, 0, 11, 0x80, 0x09],
                registers(3, &[0x8009]),
            ],
        );
        let sent = transmitted(&outputs);
        assert_eq!(sent[0][7..], [3, 0, 11, 0, 1]);
        assert_eq!(sent[1][7..], [6, 0, 11, 0x80, 0x09], "other bits kept");
        assert_eq!(sent[2][7..], [3, 0, 11, 0, 1]);
        assert_eq!(updates(&outputs), [("alarm".into(), json!(true))]);
        assert_eq!(completed(&outputs), Some(Ok(())));
    }

    #[test]
    fn bad_requests_fail_without_touching_the_wire() {
        let mut session = session(sequencer());
        let now = Instant::now();
        let cases = [
            (poll("slow"), DeviceErrorKind::Unsupported, "default, fast"),
            (
                write("nope", json!(1)),
                DeviceErrorKind::InvalidArgs,
                "`nope`",
            ),
            (
                write("voltage", json!(1)),
                DeviceErrorKind::Unsupported,
                "read-only",
            ),
            (
                write("mode", json!("manual")),
                DeviceErrorKind::InvalidArgs,
                "manual",
            ),
            (
                Request::Command {
                    name: "route".into(),
                    args: Map::new(),
                },
                DeviceErrorKind::Unsupported,
                "`route`",
            ),
        ];
        for (request, kind, text) in cases {
            let error = session.start(now, &request).unwrap_err();
            assert_eq!(error.kind, kind, "{request:?}: {error}");
            assert!(error.message.contains(text), "{error}");
        }
        assert!(drain(&mut session).is_empty());
    }

    #[test]
    fn options_are_checked() {
        let points = json!([{ "name": "v", "table": "coil", "address": 0 }]);
        let parse = |extra: Value| {
            let mut all = options(extra);
            all.insert("points".into(), points.clone());
            Session::from_options(&all).map(|s| s.options)
        };
        assert_eq!(parse(json!({})).unwrap(), Options::default());
        let rtu = parse(json!({ "framing": "rtu", "unit": 247, "busy_retries": 0,
                                "busy_backoff_ms": 50, "read_back": false }))
        .unwrap();
        assert_eq!(
            rtu,
            Options {
                framing: Framing::Rtu,
                unit: 247,
                busy_retries: 0,
                busy_backoff: Duration::from_millis(50),
                read_back: false,
            }
        );
        assert_eq!(parse(json!({ "unit": 255 })).unwrap().unit, 255);
        for (bad, text) in [
            (json!({ "framing": "ascii" }), "`framing`"),
            (json!({ "framing": "rtu", "unit": 0 }), "broadcast"),
            (json!({ "unit": 300 }), "`unit`"),
            (json!({ "read_back": "yes" }), "`read_back`"),
            (json!({ "unit_id": 3 }), "unknown option `unit_id`"),
        ] {
            let error = parse(bad.clone()).unwrap_err();
            assert!(error.contains(text), "{bad}: {error}");
        }
    }

    #[test]
    fn the_catalog_lists_points_writes_and_poll_groups() {
        let catalog =
            |value| crate::modbus::catalog::catalog(&DriverSettings::with_options(options(value)));
        let listed = catalog(sequencer()).unwrap();
        assert_eq!(listed.points.len(), 7);
        assert_eq!(
            listed.commands[WRITE].args["point"].values,
            ["outlet1", "outlet2", "mode", "alarm"]
        );
        let every: Vec<(&str, Option<Duration>)> = listed
            .queries
            .iter()
            .map(|query| (query.name.as_str(), query.every))
            .collect();
        assert_eq!(
            every,
            [
                ("default", Some(Duration::from_secs(1))),
                ("fast", Some(Duration::from_millis(500)))
            ]
        );
        assert!(catalog(json!({ "points": [] })).is_err());
    }

    #[test]
    fn abandon_forgets_the_request() {
        let mut session = session(sequencer());
        session.start(Instant::now(), &poll("default")).unwrap();
        drain(&mut session);
        session.abandon();
        session.start(Instant::now(), &poll("fast")).unwrap();
        assert_eq!(transmitted(&drain(&mut session)).len(), 1);
    }
}
