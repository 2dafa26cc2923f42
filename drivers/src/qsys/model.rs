//! A simulated Q-SYS Core, as a [`DeviceModel`]: named and component controls with values,
//! `Logon`, `Control.Get/Set`, `Component.Get/Set/GetComponents`, change groups with
//! AutoPoll, and the JSON-RPC errors a Core answers to what it cannot read.
//!
//! A model answers bytes and has no clock, so AutoPoll pushes a change as soon as it
//! happens (a set, or [`Model::front_panel`]) instead of on the next tick of `Rate`; a
//! Core with a short `Rate` looks the same to a client. Change groups belong to the
//! device here, not to one connection; a client re-creating its group on reconnect, as a
//! real Core requires, finds it as it left it.

use std::collections::{BTreeMap, BTreeSet};
use std::time::Instant;

use serde_json::{Value, json};

use super::frame::{self, Message, RpcError, code};
use super::{ControlType, Options};
use crate::kit::{DeviceModel, Framer};

/// Where a Core knows a control: `(component, control)`; `None` for a named control.
pub type ControlKey = (Option<String>, String);

/// One control of the design.
#[derive(Debug, Clone, PartialEq)]
pub struct Control {
    /// A number (a gain, a button's 0/1) or a string (a text box).
    pub value: Value,
    pub min: Option<f64>,
    pub max: Option<f64>,
}

impl Control {
    pub fn number(value: f64, min: f64, max: f64) -> Control {
        Control {
            value: json!(value),
            min: Some(min),
            max: Some(max),
        }
    }

    /// The control's `String`, as a Core formats it.
    fn string(&self) -> String {
        match &self.value {
            Value::String(text) => text.clone(),
            other => other.to_string(),
        }
    }

    /// Where `Value` sits in the control's range, 0 to 1.
    fn position(&self) -> f64 {
        match (self.value.as_f64(), self.min, self.max) {
            (Some(v), Some(min), Some(max)) if max > min => (v - min) / (max - min),
            (Some(v), _, _) if v != 0.0 => 1.0,
            _ => 0.0,
        }
    }
}

#[derive(Debug, Default)]
struct Group {
    controls: BTreeSet<ControlKey>,
    /// Controls changed since the group last reported (a control added starts dirty).
    dirty: BTreeSet<ControlKey>,
    auto_poll: bool,
}

/// The simulated Core.
#[derive(Debug)]
pub struct Model {
    pub controls: BTreeMap<ControlKey, Control>,
    /// When set, every method but `Logon` and `NoOp` needs a `Logon` with it first.
    pub password: Option<String>,
    pub design_name: String,
    groups: BTreeMap<String, Group>,
    /// How many `NoOp`s arrived, so a test can see the keep-alive.
    pub noops: usize,
}

/// What one connection remembers.
pub struct Connection {
    framer: Framer,
    logged_on: bool,
}

impl Default for Connection {
    fn default() -> Connection {
        Connection {
            framer: frame::framer(),
            logged_on: false,
        }
    }
}

impl Model {
    pub fn new(controls: BTreeMap<ControlKey, Control>, password: Option<String>) -> Model {
        Model {
            controls,
            password,
            design_name: "avgate-demo".into(),
            groups: BTreeMap::new(),
            noops: 0,
        }
    }

    /// A Core whose design has exactly the controls a profile names, at rest: numbers at
    /// 0 (or the end of their range nearest to it), buttons off, text empty.
    pub fn from_options(options: &Options, password: Option<String>) -> Model {
        let controls = options
            .controls
            .values()
            .map(|c| {
                let value = match c.kind {
                    ControlType::Number => json!(0.0_f64.clamp(
                        c.min.unwrap_or(f64::MIN),
                        c.max.unwrap_or(f64::MAX).max(c.min.unwrap_or(f64::MIN))
                    )),
                    ControlType::Bool => json!(0),
                    ControlType::String => json!(""),
                };
                let (min, max) = match c.kind {
                    ControlType::Bool => (Some(0.0), Some(1.0)),
                    _ => (c.min, c.max),
                };
                (
                    (c.component.clone(), c.control.clone()),
                    Control { value, min, max },
                )
            })
            .collect();
        Model::new(controls, password)
    }

    /// The value of a control.
    pub fn value(&self, component: Option<&str>, control: &str) -> Option<&Value> {
        self.controls
            .get(&(component.map(str::to_string), control.to_string()))
            .map(|c| &c.value)
    }

    /// Someone moves a control on the Core (a UCI, a wall plate); returns the pushes of
    /// the AutoPoll groups that hold it, for [`crate::kit::Served::change`].
    pub fn front_panel(&mut self, component: Option<&str>, control: &str, value: Value) -> Vec<u8> {
        let key = (component.map(str::to_string), control.to_string());
        match self.apply(&key, &value) {
            Ok(()) => self.auto_poll_pushes(),
            Err(_) => Vec::new(),
        }
    }

    fn apply(&mut self, key: &ControlKey, value: &Value) -> Result<(), RpcError> {
        let control = self.controls.get_mut(key).ok_or_else(|| unknown(key))?;
        let value = match (value, &control.value) {
            (Value::String(text), Value::String(_)) => Value::String(text.clone()),
            (Value::Bool(on), Value::Number(_)) => json!(if *on { 1 } else { 0 }),
            (Value::Number(n), Value::Number(_)) => {
                let n = n.as_f64().unwrap_or(0.0);
                // A Core clamps a value to the control's range rather than refusing it.
                let n = n.clamp(
                    control.min.unwrap_or(f64::MIN),
                    control.max.unwrap_or(f64::MAX),
                );
                json!(n)
            }
            _ => {
                return Err(RpcError::new(
                    code::INVALID_PARAMS,
                    format!(
                        "Invalid params: {value} is not a value for {}",
                        describe(key)
                    ),
                ));
            }
        };
        if control.value != value {
            control.value = value;
            for group in self.groups.values_mut() {
                if group.controls.contains(key) {
                    group.dirty.insert(key.clone());
                }
            }
        }
        Ok(())
    }

    fn entry(&self, key: &ControlKey) -> Value {
        let control = &self.controls[key];
        let mut entry = json!({
            "Name": key.1,
            "Value": control.value,
            "String": control.string(),
            "Position": control.position(),
        });
        if let Some(component) = &key.0 {
            entry["Component"] = json!(component);
        }
        entry
    }

    /// Takes a group's dirty controls as a `Changes` list.
    fn take_changes(&mut self, id: &str) -> Vec<Value> {
        let dirty = self
            .groups
            .get_mut(id)
            .map(|g| std::mem::take(&mut g.dirty))
            .unwrap_or_default();
        dirty.iter().map(|key| self.entry(key)).collect()
    }

    /// A `ChangeGroup.Poll` notification for every AutoPoll group with changes.
    fn auto_poll_pushes(&mut self) -> Vec<u8> {
        let ids: Vec<String> = self
            .groups
            .iter()
            .filter(|(_, g)| g.auto_poll && !g.dirty.is_empty())
            .map(|(id, _)| id.clone())
            .collect();
        let mut out = Vec::new();
        for id in ids {
            let changes = self.take_changes(&id);
            out.extend(frame::notification(
                "ChangeGroup.Poll",
                json!({"Id": id, "Changes": changes}),
            ));
        }
        out
    }

    fn call(
        &mut self,
        connection: &mut Connection,
        method: &str,
        params: &Value,
    ) -> Result<Value, RpcError> {
        if method == "Logon" {
            let given = params.get("Password").and_then(Value::as_str);
            return match &self.password {
                Some(password) if given != Some(password.as_str()) => Err(RpcError::new(
                    code::LOGON_REQUIRED,
                    "Logon required: wrong user name or password",
                )),
                _ => {
                    connection.logged_on = true;
                    Ok(json!(true))
                }
            };
        }
        if method == "NoOp" {
            self.noops += 1;
            return Ok(json!(true));
        }
        if self.password.is_some() && !connection.logged_on {
            return Err(RpcError::new(code::LOGON_REQUIRED, "Logon required"));
        }
        match method {
            "StatusGet" => Ok(json!({
                "Platform": "Core 110f", "State": "Active", "DesignName": self.design_name,
                "DesignCode": "avgate", "IsRedundant": false, "IsEmulator": true,
                "Status": {"Code": 0, "String": "OK"},
            })),
            "Control.Get" => {
                let names = params
                    .as_array()
                    .ok_or_else(|| invalid("a list of control names"))?;
                names
                    .iter()
                    .map(|name| {
                        let name = name
                            .as_str()
                            .ok_or_else(|| invalid("control names as strings"))?;
                        let key = (None, name.to_string());
                        if !self.controls.contains_key(&key) {
                            return Err(unknown(&key));
                        }
                        Ok(self.entry(&key))
                    })
                    .collect::<Result<Vec<_>, _>>()
                    .map(Value::from)
            }
            "Control.Set" => {
                let name = str_param(params, "Name")?;
                let value = params.get("Value").ok_or_else(|| invalid("`Value`"))?;
                self.apply(&(None, name.to_string()), value)?;
                Ok(json!(true))
            }
            "Component.GetComponents" => {
                let names: BTreeSet<&String> = self
                    .controls
                    .keys()
                    .filter_map(|(c, _)| c.as_ref())
                    .collect();
                Ok(names
                    .into_iter()
                    .map(|name| json!({"ID": name, "Name": name, "Type": "custom", "Properties": []}))
                    .collect())
            }
            "Component.Get" | "Component.Set" => {
                let component = str_param(params, "Name")?.to_string();
                if !self
                    .controls
                    .keys()
                    .any(|(c, _)| c.as_ref() == Some(&component))
                {
                    return Err(RpcError::new(
                        code::UNKNOWN_COMPONENT,
                        format!("Unknown component name: {component}"),
                    ));
                }
                let controls = params
                    .get("Controls")
                    .and_then(Value::as_array)
                    .ok_or_else(|| invalid("`Controls`, a list"))?;
                let mut entries = Vec::new();
                for control in controls {
                    let key = (
                        Some(component.clone()),
                        str_param(control, "Name")?.to_string(),
                    );
                    if method == "Component.Set" {
                        let value = control.get("Value").ok_or_else(|| invalid("`Value`"))?;
                        self.apply(&key, value)?;
                    } else if self.controls.contains_key(&key) {
                        let mut entry = self.entry(&key);
                        entry
                            .as_object_mut()
                            .expect("an object")
                            .remove("Component");
                        entries.push(entry);
                    } else {
                        return Err(unknown(&key));
                    }
                }
                Ok(match method {
                    "Component.Set" => json!(true),
                    _ => json!({"Name": component, "Controls": entries}),
                })
            }
            "ChangeGroup.AddControl" | "ChangeGroup.AddComponentControl" => {
                let id = str_param(params, "Id")?.to_string();
                let keys: Vec<ControlKey> = if method == "ChangeGroup.AddControl" {
                    params
                        .get("Controls")
                        .and_then(Value::as_array)
                        .ok_or_else(|| invalid("`Controls`, a list of names"))?
                        .iter()
                        .map(|n| {
                            n.as_str()
                                .map(|n| (None, n.to_string()))
                                .ok_or_else(|| invalid("control names as strings"))
                        })
                        .collect::<Result<_, _>>()?
                } else {
                    let component = params
                        .get("Component")
                        .ok_or_else(|| invalid("`Component`"))?;
                    let name = str_param(component, "Name")?;
                    component
                        .get("Controls")
                        .and_then(Value::as_array)
                        .ok_or_else(|| invalid("`Component.Controls`, a list"))?
                        .iter()
                        .map(|c| Ok((Some(name.to_string()), str_param(c, "Name")?.to_string())))
                        .collect::<Result<_, RpcError>>()?
                };
                if let Some(missing) = keys.iter().find(|k| !self.controls.contains_key(*k)) {
                    return Err(unknown(missing));
                }
                let group = self.groups.entry(id).or_default();
                for key in keys {
                    group.dirty.insert(key.clone());
                    group.controls.insert(key);
                }
                Ok(json!(true))
            }
            "ChangeGroup.Poll" => {
                let id = str_param(params, "Id")?.to_string();
                self.group(&id)?;
                let changes = self.take_changes(&id);
                Ok(json!({"Id": id, "Changes": changes}))
            }
            "ChangeGroup.AutoPoll" => {
                let id = str_param(params, "Id")?.to_string();
                params
                    .get("Rate")
                    .and_then(Value::as_f64)
                    .filter(|rate| *rate > 0.0)
                    .ok_or_else(|| invalid("`Rate`, seconds above 0"))?;
                self.group(&id)?.auto_poll = true;
                Ok(json!(true))
            }
            "ChangeGroup.Destroy" | "ChangeGroup.Clear" => {
                let id = str_param(params, "Id")?.to_string();
                self.group(&id)?;
                if method == "ChangeGroup.Destroy" {
                    self.groups.remove(&id);
                } else if let Some(group) = self.groups.get_mut(&id) {
                    group.controls.clear();
                    group.dirty.clear();
                }
                Ok(json!(true))
            }
            _ => Err(RpcError::new(
                code::METHOD_NOT_FOUND,
                format!("Method not found: {method}"),
            )),
        }
    }

    fn group(&mut self, id: &str) -> Result<&mut Group, RpcError> {
        self.groups.get_mut(id).ok_or_else(|| {
            RpcError::new(
                code::UNKNOWN_CHANGE_GROUP,
                format!("Unknown change group: {id}"),
            )
        })
    }
}

fn describe(key: &ControlKey) -> String {
    match &key.0 {
        Some(component) => format!("control `{}` of component `{component}`", key.1),
        None => format!("control `{}`", key.1),
    }
}

fn unknown(key: &ControlKey) -> RpcError {
    RpcError::new(
        code::UNKNOWN_CONTROL,
        format!("Unknown control: {}", describe(key)),
    )
}

fn invalid(what: &str) -> RpcError {
    RpcError::new(
        code::INVALID_PARAMS,
        format!("Invalid params: expected {what}"),
    )
}

fn str_param<'a>(params: &'a Value, key: &str) -> Result<&'a str, RpcError> {
    params
        .get(key)
        .and_then(Value::as_str)
        .ok_or_else(|| invalid(&format!("`{key}`, a string")))
}

impl DeviceModel for Model {
    type Connection = Connection;

    /// A Core announces its state as a client connects.
    fn greeting(&mut self, _: &mut Connection, _: Instant) -> Vec<u8> {
        frame::notification(
            "EngineStatus",
            json!({"State": "Active", "DesignName": self.design_name, "DesignCode": "avgate",
                   "IsRedundant": false, "IsEmulator": true}),
        )
    }

    fn received(&mut self, connection: &mut Connection, _: Instant, data: &[u8]) -> Vec<u8> {
        connection.framer.push(data);
        let mut out = Vec::new();
        while let Some(next) = connection.framer.next_frame() {
            let Ok(bytes) = next else {
                out.extend(frame::error(
                    &Value::Null,
                    &RpcError::new(code::PARSE_ERROR, "Parse error: message too long"),
                ));
                continue;
            };
            let (id, method, params) = match frame::parse(&bytes) {
                Ok(Message::Call { id, method, params }) => (id, method, params),
                // A client has nothing to answer; a Core ignores it.
                Ok(Message::Reply { .. }) => continue,
                Err(error) => {
                    out.extend(frame::error(&Value::Null, &error));
                    continue;
                }
            };
            let outcome = self.call(connection, &method, &params);
            if let Some(id) = id {
                out.extend(match &outcome {
                    Ok(result) => frame::result(&id, result.clone()),
                    Err(error) => frame::error(&id, error),
                });
            }
            out.extend(self.auto_poll_pushes());
        }
        out
    }
}
