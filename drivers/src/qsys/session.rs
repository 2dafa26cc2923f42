//! The QRC client as a sans-IO [`Protocol`].
//!
//! On connect: `Logon` when the site gives a password, then one change group holding every
//! control the profile exposes, set to AutoPoll, so the Core reports each control once
//! (a control added to a group starts dirty) and then every change as it happens. Sets
//! are `Control.Set`/`Component.Set`, answered by `id`. A `NoOp` goes out whenever the
//! session has been silent for `keepalive`, because a Core closes idle sockets.

use std::collections::{BTreeMap, VecDeque};
use std::time::Instant;

use serde_json::{Value, json};

use super::frame::{self, Message, RpcError, code};
use super::{
    ControlOptions, ControlType, ENGINE_STATES, Options, SET_PREFIX, STATE_POINT, STATUS_QUERY,
};
use crate::kit::Framer;
use crate::{DeviceError, DeviceErrorKind, Output, Protocol, Request, SessionError};

/// The change group this session creates; a Core deletes it when the connection drops.
pub const GROUP: &str = "avgate";

/// One QRC session.
pub struct Session {
    options: Options,
    password: Option<String>,
    /// Point names by where the Core knows the control: `(component, control)`.
    points: BTreeMap<(Option<String>, String), String>,
    framer: Framer,
    next_id: u64,
    phase: Phase,
    /// The request in flight: its `id`.
    in_flight: Option<u64>,
    /// Whether the request in flight is the status query.
    reading_status: bool,
    outputs: VecDeque<Output>,
    /// When the session last wrote, for the keep-alive.
    last_sent: Option<Instant>,
}

#[derive(Debug)]
enum Phase {
    Closed,
    /// The setup requests not answered yet, with what each was for.
    Setup(BTreeMap<u64, Step>),
    Ready,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
enum Step {
    Logon,
    AddControls,
    AddComponentControls,
    AutoPoll,
}

impl Step {
    fn describe(self) -> &'static str {
        match self {
            Step::Logon => "the answer to Logon",
            Step::AddControls => "the answer to ChangeGroup.AddControl",
            Step::AddComponentControls => "the answer to ChangeGroup.AddComponentControl",
            Step::AutoPoll => "the answer to ChangeGroup.AutoPoll",
        }
    }
}

impl Session {
    pub fn new(options: Options, password: Option<String>) -> Session {
        let points = options
            .controls
            .iter()
            .map(|(point, control)| {
                (
                    (control.component.clone(), control.control.clone()),
                    point.clone(),
                )
            })
            .collect();
        Session {
            options,
            password,
            points,
            framer: frame::framer(),
            next_id: 1,
            phase: Phase::Closed,
            in_flight: None,
            reading_status: false,
            outputs: VecDeque::new(),
            last_sent: None,
        }
    }

    /// Bytes the framer holds for an unfinished message.
    pub fn buffered(&self) -> usize {
        self.framer.buffered()
    }

    fn send(&mut self, now: Instant, method: &str, params: Value) -> u64 {
        let id = self.next_id;
        self.next_id += 1;
        self.transmit(now, frame::request(id, method, params));
        id
    }

    fn transmit(&mut self, now: Instant, bytes: Vec<u8>) {
        self.last_sent = Some(now);
        self.outputs.push_back(Output::Transmit(bytes));
    }

    fn set_up(&mut self, now: Instant) {
        let mut steps = BTreeMap::new();
        if let Some(password) = self.password.clone() {
            let user = self.options.user.clone().unwrap_or_default();
            let id = self.send(now, "Logon", json!({"User": user, "Password": password}));
            steps.insert(id, Step::Logon);
        }
        let named: Vec<String> = self
            .options
            .controls
            .values()
            .filter(|c| c.component.is_none())
            .map(|c| c.control.clone())
            .collect();
        if !named.is_empty() {
            let id = self.send(
                now,
                "ChangeGroup.AddControl",
                json!({"Id": GROUP, "Controls": named}),
            );
            steps.insert(id, Step::AddControls);
        }
        let mut by_component: BTreeMap<String, Vec<Value>> = BTreeMap::new();
        for control in self.options.controls.values() {
            if let Some(component) = &control.component {
                by_component
                    .entry(component.clone())
                    .or_default()
                    .push(json!({"Name": control.control}));
            }
        }
        for (component, controls) in by_component {
            let id = self.send(
                now,
                "ChangeGroup.AddComponentControl",
                json!({"Id": GROUP, "Component": {"Name": component, "Controls": controls}}),
            );
            steps.insert(id, Step::AddComponentControls);
        }
        let id = self.send(
            now,
            "ChangeGroup.AutoPoll",
            json!({"Id": GROUP, "Rate": self.options.poll_rate.as_secs_f64()}),
        );
        steps.insert(id, Step::AutoPoll);
        self.phase = Phase::Setup(steps);
    }

    fn handle(&mut self, message: Message) {
        match message {
            Message::Reply { id, outcome } => self.reply(id, outcome),
            Message::Call { method, params, .. } if method == "ChangeGroup.Poll" => {
                if let Some((GROUP, changes)) = frame::changes(&params) {
                    for change in changes {
                        let key = (change.component.clone(), change.name.clone());
                        let Some(point) = self.points.get(&key) else {
                            continue;
                        };
                        let control = &self.options.controls[point];
                        if let Some(value) = point_value(control, &change.value, &change.string) {
                            self.outputs.push_back(Output::Update {
                                point: point.clone(),
                                value,
                            });
                        }
                    }
                }
            }
            Message::Call { method, params, .. } if method == "EngineStatus" => {
                self.engine_state(&params);
            }
            // Anything else a Core announces carries nothing the points show.
            Message::Call { .. } => {}
        }
    }

    fn engine_state(&mut self, status: &Value) {
        if let Some(state) = status
            .get("State")
            .and_then(Value::as_str)
            .filter(|state| ENGINE_STATES.contains(state))
        {
            self.outputs.push_back(Output::Update {
                point: STATE_POINT.into(),
                value: Value::from(state),
            });
        }
    }

    fn reply(&mut self, id: u64, outcome: Result<Value, RpcError>) {
        if let Phase::Setup(steps) = &mut self.phase {
            let Some(step) = steps.remove(&id) else {
                return;
            };
            let done = steps.is_empty();
            match outcome {
                Err(error) if error.code == code::LOGON_REQUIRED && step != Step::Logon => {
                    self.fail(SessionError::AuthFailed(format!(
                        "the Core requires a logon ({error}): give the device a `password` in the site, and the profile a `user`"
                    )));
                }
                Err(error) if step == Step::Logon => {
                    self.fail(SessionError::AuthFailed(format!(
                        "the Core refused the logon ({error}); check the device's password and `user`"
                    )));
                }
                Err(error) => self.fail(SessionError::Protocol(format!(
                    "the Core refused {} ({error}); check that the design has every control the profile names",
                    step.describe().trim_start_matches("the answer to ")
                ))),
                Ok(_) if done => {
                    self.phase = Phase::Ready;
                    self.outputs.push_back(Output::Ready);
                }
                Ok(_) => {}
            }
            return;
        }
        if self.in_flight != Some(id) {
            // A late answer to an abandoned request: nothing waits for it.
            return;
        }
        self.in_flight = None;
        if let Ok(status) = &outcome
            && self.reading_status
        {
            self.engine_state(status);
        }
        let result = outcome.map(|_| ()).map_err(device_error);
        self.outputs.push_back(Output::Completed(result));
    }

    fn fail(&mut self, error: SessionError) {
        self.phase = Phase::Closed;
        self.outputs.push_back(Output::Fatal(error));
    }

    fn control_for<'a>(
        &'a self,
        request: &'a Request,
    ) -> Result<(&'a str, &'a ControlOptions, &'a Value), DeviceError> {
        let Request::Command { name, args } = request else {
            return Err(DeviceError::new(
                DeviceErrorKind::Unsupported,
                format!(
                    "the only query is `{STATUS_QUERY}`: the Core pushes every control's changes"
                ),
            ));
        };
        let unknown = || {
            DeviceError::new(
                DeviceErrorKind::Unsupported,
                format!(
                    "`{name}` is not a command of this profile; the commands are `set_<point>` for writable controls"
                ),
            )
        };
        let point = name.strip_prefix(SET_PREFIX).ok_or_else(unknown)?;
        let (point, control) = self
            .options
            .controls
            .get_key_value(point)
            .ok_or_else(unknown)?;
        if !control.writable {
            return Err(DeviceError::new(
                DeviceErrorKind::Unsupported,
                format!("`{point}` is read-only in this profile (`writable = false`)"),
            ));
        }
        let value = args.get("value").ok_or_else(|| {
            DeviceError::new(DeviceErrorKind::InvalidArgs, "missing argument `value`")
        })?;
        check_value(control, value)?;
        Ok((point, control, value))
    }
}

/// A control's reported value as its point's type; `None` when the Core sent something
/// that cannot be read as that type.
fn point_value(control: &ControlOptions, value: &Value, string: &Option<String>) -> Option<Value> {
    match control.kind {
        ControlType::Number => value
            .as_f64()
            .and_then(|n| serde_json::Number::from_f64(n).map(Value::Number)),
        ControlType::Bool => match value {
            Value::Bool(on) => Some(Value::Bool(*on)),
            Value::Number(n) => n.as_f64().map(|n| Value::Bool(n != 0.0)),
            _ => None,
        },
        ControlType::String => match (string, value) {
            (Some(text), _) => Some(Value::String(text.clone())),
            (None, Value::String(text)) => Some(Value::String(text.clone())),
            _ => None,
        },
    }
}

/// Whether `value` may be sent for `control`: the type and the profile's range.
fn check_value(control: &ControlOptions, value: &Value) -> Result<(), DeviceError> {
    let invalid = |why: String| DeviceError::new(DeviceErrorKind::InvalidArgs, why);
    match control.kind {
        ControlType::Number => {
            let n = value
                .as_f64()
                .ok_or_else(|| invalid(format!("`value` must be a number, got {value}")))?;
            if control.min.is_some_and(|min| n < min) || control.max.is_some_and(|max| n > max) {
                return Err(invalid(format!(
                    "`value` {n} is outside {}..={}",
                    control.min.map_or(String::new(), |v| v.to_string()),
                    control.max.map_or(String::new(), |v| v.to_string())
                )));
            }
        }
        ControlType::Bool if !value.is_boolean() => {
            return Err(invalid(format!(
                "`value` must be true or false, got {value}"
            )));
        }
        ControlType::String if !value.is_string() => {
            return Err(invalid(format!("`value` must be a string, got {value}")));
        }
        _ => {}
    }
    Ok(())
}

/// The wire `Value` for a checked point value: buttons take 1 and 0.
fn wire_value(control: &ControlOptions, value: &Value) -> Value {
    match (control.kind, value) {
        (ControlType::Bool, Value::Bool(on)) => json!(if *on { 1 } else { 0 }),
        _ => value.clone(),
    }
}

fn device_error(error: RpcError) -> DeviceError {
    let kind = match error.code {
        code::UNKNOWN_CONTROL | code::UNKNOWN_COMPONENT | code::INVALID_PARAMS => {
            DeviceErrorKind::InvalidArgs
        }
        code::METHOD_NOT_FOUND => DeviceErrorKind::Unsupported,
        code::STANDBY => DeviceErrorKind::Busy,
        _ => DeviceErrorKind::Failed,
    };
    DeviceError::new(kind, format!("the Core answered {error}"))
}

impl Protocol for Session {
    fn connected(&mut self, now: Instant) {
        self.framer.clear();
        self.in_flight = None;
        self.outputs.clear();
        self.set_up(now);
    }

    fn received(&mut self, _now: Instant, data: &[u8]) {
        self.framer.push(data);
        while let Some(frame) = self.framer.next_frame() {
            if matches!(self.phase, Phase::Closed) {
                return;
            }
            // A message that cannot be read is dropped: the NUL after it has already put
            // the stream back in step, and its `id`, if any, is lost with it (the request
            // then times out).
            if let Ok(Ok(message)) = frame.map(|bytes| frame::parse(&bytes)) {
                self.handle(message);
            }
        }
    }

    fn start(&mut self, now: Instant, request: &Request) -> Result<(), DeviceError> {
        if matches!(request, Request::Poll { query } if query == STATUS_QUERY) {
            let id = self.send(now, "StatusGet", json!(0));
            self.in_flight = Some(id);
            self.reading_status = true;
            return Ok(());
        }
        self.reading_status = false;
        let (_, control, value) = self.control_for(request)?;
        let value = wire_value(control, value);
        let (method, params) = match &control.component {
            None => (
                "Control.Set",
                json!({"Name": control.control, "Value": value}),
            ),
            Some(component) => (
                "Component.Set",
                json!({"Name": component, "Controls": [{"Name": control.control, "Value": value}]}),
            ),
        };
        let id = self.send(now, method, params);
        self.in_flight = Some(id);
        Ok(())
    }

    fn abandon(&mut self) {
        self.in_flight = None;
    }

    fn poll_output(&mut self) -> Option<Output> {
        self.outputs.pop_front()
    }

    fn poll_timeout(&self) -> Option<Instant> {
        match self.phase {
            Phase::Closed => None,
            _ => self.last_sent.map(|at| at + self.options.keepalive),
        }
    }

    fn handle_timeout(&mut self, now: Instant) {
        if self.poll_timeout().is_some_and(|due| due <= now) {
            self.transmit(now, frame::notification("NoOp", json!({})));
        }
    }

    fn check(&self, request: &Request) -> Result<(), DeviceError> {
        if matches!(request, Request::Poll { query } if query == STATUS_QUERY) {
            return Ok(());
        }
        self.control_for(request).map(|_| ())
    }

    fn waiting_for(&self) -> Option<String> {
        match &self.phase {
            Phase::Setup(steps) => steps
                .values()
                .next()
                .map(|step| step.describe().to_string()),
            _ => None,
        }
    }

    fn redact<'a>(&self, frame: &'a [u8]) -> std::borrow::Cow<'a, [u8]> {
        redact_logon(frame)
    }
}

/// `frame` with a `Logon`'s password replaced by `***`, so traces never show it.
pub fn redact_logon(frame: &[u8]) -> std::borrow::Cow<'_, [u8]> {
    let body = frame.strip_suffix(b"\0").unwrap_or(frame);
    let Ok(mut message) = serde_json::from_slice::<Value>(body) else {
        return std::borrow::Cow::Borrowed(frame);
    };
    if message.get("method").and_then(Value::as_str) != Some("Logon") {
        return std::borrow::Cow::Borrowed(frame);
    }
    if let Some(password) = message.pointer_mut("/params/Password") {
        *password = Value::from("***");
    }
    let mut bytes = serde_json::to_vec(&message).expect("a JSON value serializes");
    if frame.ends_with(b"\0") {
        bytes.push(0);
    }
    std::borrow::Cow::Owned(bytes)
}
