//! A scripted profile's `[options]`: the wire protocol as data ([`Definition`], as
//! written), checked and compiled into [`Script`] (templates parsed, maps and points
//! cross-checked) before anything runs. Every error names the key at fault as a path
//! (`commands.route.send`), which check-config turns into file:line:column.

use std::collections::BTreeMap;
use std::time::Duration;

use serde::{Deserialize, Serialize};
use serde_json::Value;

use super::template::{Maps, Template};
use crate::kit::{Block, Checked, CheckedLayout, Delimited, Framer};

/// The protocol as the profile writes it under `[options]`.
#[derive(Debug, Clone, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct Definition {
    pub framing: FramingSpec,
    /// Exchanges before the session is ready: a greeting to wait for, a login to send.
    #[serde(default)]
    pub handshake: Vec<Step>,
    /// Replies that mean the request in flight failed.
    #[serde(default)]
    pub errors: Vec<ErrorRule>,
    /// Value maps: wire text to the value a panel sees.
    #[serde(default)]
    pub maps: Maps,
    /// Every point the device reports (`route.*` for one per output).
    #[serde(default)]
    pub points: BTreeMap<String, PointDecl>,
    #[serde(default)]
    pub commands: BTreeMap<String, Exchange>,
    /// Background reads, polled every `every`.
    #[serde(default)]
    pub queries: BTreeMap<String, Exchange>,
    /// What the device sends unprompted (front-panel changes), and how it maps to points.
    #[serde(default)]
    pub reports: Vec<Report>,
    #[serde(default)]
    pub simulator: SimulatorSpec,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum FramingKind {
    /// Frames end with `end` (`"\r\n"`, `"\r"`).
    Line,
    /// Frames end with one byte (`"\u0000"` for Q-SYS, `">"` for Shure).
    Delimiter,
    /// Lines up to an empty line (Videohub).
    Block,
    /// Header + length + checksum (`checked` says where each is).
    Checked,
}

#[derive(Debug, Clone, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct FramingSpec {
    pub kind: FramingKind,
    /// What ends a frame from the device (line and delimiter framing).
    #[serde(default)]
    pub end: Option<String>,
    /// What the gateway appends to each request; the device's `end` if not given.
    #[serde(default)]
    pub send_end: Option<String>,
    /// What the simulator appends to each reply; `end` if not given.
    #[serde(default)]
    pub reply_end: Option<String>,
    /// Trim spaces and stray CR/LF around each frame (default true).
    #[serde(default = "yes")]
    pub trim: bool,
    /// The port speaks Telnet: negotiation is refused and taken out of the stream.
    #[serde(default)]
    pub telnet: bool,
    /// The longest frame kept; longer ones are dropped (default 4096 bytes).
    #[serde(default = "default_max_frame")]
    pub max_frame: usize,
    #[serde(default)]
    pub checked: Option<CheckedLayout>,
}

fn yes() -> bool {
    true
}

fn default_max_frame() -> usize {
    4096
}

#[derive(Debug, Clone, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct Step {
    /// Sent first, if given.
    #[serde(default)]
    pub send: Option<String>,
    /// The reply that ends the step (other frames before it are ignored).
    pub expect: String,
}

#[derive(Debug, Clone, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct ErrorRule {
    pub pattern: String,
    /// What the panel is told; may use the pattern's fields (`Kramer error {code}`).
    pub message: String,
    #[serde(default)]
    pub kind: ErrorKind,
}

#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Deserialize, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum ErrorKind {
    #[default]
    Failed,
    Invalid,
    Unsupported,
    Busy,
}

/// A point as a panel sees it. The same keys as a profile's `[points]`.
#[derive(Debug, Clone, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct PointDecl {
    #[serde(rename = "type")]
    pub kind: PointKind,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub values: Vec<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub unit: Option<String>,
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub description: String,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum PointKind {
    Bool,
    Integer,
    Number,
    String,
    Enum,
}

/// A command or a query: what to send, what answer completes it, which points the answer
/// sets.
#[derive(Debug, Clone, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct Exchange {
    #[serde(default)]
    pub description: String,
    pub send: String,
    /// The reply that completes it; without one, the request completes once sent.
    #[serde(default)]
    pub expect: Option<String>,
    /// What the device sends before `expect` (Videohub's `ACK`): the simulator sends it;
    /// the session needs nothing from it.
    #[serde(default)]
    pub reply_first: Option<String>,
    /// A looser reply that also completes the request, for a device that may answer with
    /// more or other than `expect` (a Videohub status block that carries other clients'
    /// changes too). The points then come from the reports alone, never from `set`: the
    /// device said what it did. The simulator always answers `expect`.
    #[serde(default)]
    pub done_when: Option<String>,
    /// Points the reply sets: `"route.{output}" = "{input}"`, or with arithmetic
    /// `{ value = "{gain}", scale = 1, offset = -18 }`.
    #[serde(default)]
    pub set: BTreeMap<String, SetValue>,
    /// A command's arguments, as a profile's `[commands.NAME.args]`.
    #[serde(default)]
    pub args: BTreeMap<String, Value>,
    /// A query's poll interval.
    #[serde(default, with = "humantime_serde")]
    pub every: Option<Duration>,
    /// A query sent once per value of a field: `{ field = "output", from = 1, to = 8 }`.
    #[serde(default)]
    pub repeat: Option<Repeat>,
}

#[derive(Debug, Clone, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct Repeat {
    pub field: String,
    pub from: i64,
    pub to: i64,
}

#[derive(Debug, Clone, Deserialize, Serialize)]
#[serde(untagged)]
pub enum SetValue {
    Plain(String),
    Scaled {
        value: String,
        #[serde(default = "one")]
        scale: f64,
        #[serde(default)]
        offset: f64,
    },
}

fn one() -> f64 {
    1.0
}

#[derive(Debug, Clone, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct Report {
    pub pattern: String,
    /// Split the field `items` of `pattern` by this separator and match each part with
    /// `each` (a routing table in one reply).
    #[serde(default)]
    pub split: Option<String>,
    #[serde(default)]
    pub each: Option<String>,
    pub set: BTreeMap<String, SetValue>,
}

#[derive(Debug, Clone, Default, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct SimulatorSpec {
    /// What the simulated device says as a connection opens.
    #[serde(default)]
    pub greeting: Option<String>,
    /// The answer to a request it does not understand.
    #[serde(default)]
    pub unknown: Option<String>,
    /// Sent after the greeting and the state dumps (Videohub's `END PRELUDE:`). Between
    /// the two, each report with `split` is sent with every point it covers, as devices
    /// that dump their state on connect do.
    #[serde(default)]
    pub greeting_end: Option<String>,
    /// Point values at start.
    #[serde(default)]
    pub initial: BTreeMap<String, Value>,
}

/// A definition error: the key path at fault and what to do.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DefinitionError {
    pub path: Vec<String>,
    pub message: String,
}

impl std::fmt::Display for DefinitionError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        if self.path.is_empty() {
            f.write_str(&self.message)
        } else {
            write!(f, "{}: {}", self.path.join("."), self.message)
        }
    }
}

/// A `set` entry compiled: the point name template, the value template, the arithmetic.
#[derive(Debug, Clone)]
pub struct Setter {
    pub point: Template,
    pub value: Template,
    pub scale: f64,
    pub offset: f64,
}

#[derive(Debug, Clone)]
pub struct CompiledExchange {
    pub send: Template,
    pub expect: Option<Template>,
    pub reply_first: Option<Template>,
    pub done_when: Option<Template>,
    pub set: Vec<Setter>,
    pub repeat: Option<Repeat>,
}

#[derive(Debug, Clone)]
pub struct CompiledReport {
    pub pattern: Template,
    pub split: Option<(String, Template)>,
    pub set: Vec<Setter>,
}

#[derive(Debug, Clone)]
pub struct CompiledError {
    pub pattern: Template,
    pub message: Template,
    pub kind: ErrorKind,
}

/// A checked definition, ready to drive a session or a simulator.
#[derive(Debug, Clone)]
pub struct Script {
    pub definition: Definition,
    pub handshake: Vec<(Option<Template>, Template)>,
    pub errors: Vec<CompiledError>,
    pub commands: BTreeMap<String, CompiledExchange>,
    pub queries: BTreeMap<String, CompiledExchange>,
    pub reports: Vec<CompiledReport>,
    pub greeting: Option<Template>,
    pub greeting_end: Option<Template>,
    pub unknown: Option<Template>,
    pub length_width: usize,
}

fn at(path: &[&str], message: impl Into<String>) -> DefinitionError {
    DefinitionError {
        path: path.iter().map(|p| p.to_string()).collect(),
        message: message.into(),
    }
}

fn unescape_end(end: &Option<String>) -> Vec<u8> {
    end.as_deref().unwrap_or("").as_bytes().to_vec()
}

impl Script {
    /// Checks and compiles a definition; every problem found, each at its key.
    pub fn compile(definition: Definition) -> Result<Script, Vec<DefinitionError>> {
        let errors = std::cell::RefCell::new(Vec::new());
        let framing = &definition.framing;
        let length_width = framing
            .checked
            .as_ref()
            .map_or(0, |layout| layout.length.width());
        match framing.kind {
            FramingKind::Line | FramingKind::Delimiter
                if framing.end.as_deref().is_none_or(str::is_empty) =>
            {
                errors.borrow_mut().push(at(
                    &["framing", "end"],
                    "line and delimiter framing need `end`, the bytes that end a frame (\"\\r\\n\", \"\\u0000\")",
                ));
            }
            FramingKind::Delimiter if framing.end.as_ref().is_some_and(|e| e.len() != 1) => {
                errors.borrow_mut().push(at(
                    &["framing", "end"],
                    "delimiter framing ends frames with one byte; use kind = \"line\" for more",
                ));
            }
            FramingKind::Checked if framing.checked.is_none() => errors.borrow_mut().push(at(
                &["framing", "kind"],
                "checked framing needs [options.framing.checked] with start, header, length_at, length and checksum",
            )),
            FramingKind::Checked => {
                let layout = framing.checked.as_ref().expect("checked above");
                if layout.length_at + layout.length.width() > layout.header {
                    errors.borrow_mut().push(at(
                        &["framing", "checked", "length_at"],
                        "the length field must lie inside the header",
                    ));
                }
            }
            _ => {}
        }
        let template = |path: &[&str], source: &str| match Template::parse(source, length_width) {
            Ok(t) => Some(t),
            Err(why) => {
                errors.borrow_mut().push(at(path, why));
                None
            }
        };
        let handshake = definition
            .handshake
            .iter()
            .enumerate()
            .filter_map(|(i, step)| {
                let i = i.to_string();
                let send = match &step.send {
                    Some(send) => Some(template(&["handshake", &i, "send"], send)?),
                    None => None,
                };
                Some((send, template(&["handshake", &i, "expect"], &step.expect)?))
            })
            .collect();
        let error_rules = definition
            .errors
            .iter()
            .enumerate()
            .filter_map(|(i, rule)| {
                let i = i.to_string();
                Some(CompiledError {
                    pattern: template(&["errors", &i, "pattern"], &rule.pattern)?,
                    message: template(&["errors", &i, "message"], &rule.message)?,
                    kind: rule.kind,
                })
            })
            .collect();
        let setters = |path: &[&str], set: &BTreeMap<String, SetValue>| -> Vec<Setter> {
            set.iter()
                .filter_map(|(point, value)| {
                    let mut p: Vec<&str> = path.to_vec();
                    p.push(point);
                    let (value, scale, offset) = match value {
                        SetValue::Plain(v) => (v.as_str(), 1.0, 0.0),
                        SetValue::Scaled {
                            value,
                            scale,
                            offset,
                        } => (value.as_str(), *scale, *offset),
                    };
                    Some(Setter {
                        point: template(&p, point)?,
                        value: template(&p, value)?,
                        scale,
                        offset,
                    })
                })
                .collect()
        };
        let exchanges = |kind: &str, table: &BTreeMap<String, Exchange>| {
            table
                .iter()
                .filter_map(|(name, ex)| {
                    let send = template(&[kind, name, "send"], &ex.send);
                    let expect = match &ex.expect {
                        Some(e) => template(&[kind, name, "expect"], e).map(Some),
                        None => Some(None),
                    };
                    let set = setters(&[kind, name, "set"], &ex.set);
                    let reply_first = match &ex.reply_first {
                        Some(r) => template(&[kind, name, "reply_first"], r).map(Some),
                        None => Some(None),
                    };
                    let done_when = match &ex.done_when {
                        Some(d) => template(&[kind, name, "done_when"], d).map(Some),
                        None => Some(None),
                    };
                    Some((
                        name.clone(),
                        CompiledExchange {
                            send: send?,
                            expect: expect?,
                            reply_first: reply_first?,
                            done_when: done_when?,
                            set,
                            repeat: ex.repeat.clone(),
                        },
                    ))
                })
                .collect::<BTreeMap<_, _>>()
        };
        let commands = exchanges("commands", &definition.commands);
        let queries = exchanges("queries", &definition.queries);
        let reports = definition
            .reports
            .iter()
            .enumerate()
            .filter_map(|(i, report)| {
                let i = i.to_string();
                let pattern = template(&["reports", &i, "pattern"], &report.pattern)?;
                let split = match (&report.split, &report.each) {
                    (Some(sep), Some(each)) => {
                        Some((sep.clone(), template(&["reports", &i, "each"], each)?))
                    }
                    (None, None) => None,
                    _ => {
                        errors.borrow_mut().push(at(
                            &["reports", &i, "split"],
                            "`split` and `each` go together: the separator and the pattern of each part",
                        ));
                        return None;
                    }
                };
                Some(CompiledReport {
                    pattern,
                    split,
                    set: setters(&["reports", &i, "set"], &report.set),
                })
            })
            .collect();
        let greeting = definition
            .simulator
            .greeting
            .as_ref()
            .and_then(|g| template(&["simulator", "greeting"], g));
        let unknown = definition
            .simulator
            .unknown
            .as_ref()
            .and_then(|u| template(&["simulator", "unknown"], u));
        let greeting_end = definition
            .simulator
            .greeting_end
            .as_ref()
            .and_then(|g| template(&["simulator", "greeting_end"], g));
        let script = Script {
            greeting_end,
            handshake,
            errors: error_rules,
            commands,
            queries,
            reports,
            greeting,
            unknown,
            length_width,
            definition,
        };
        let mut errors = errors.into_inner();
        script.cross_check(&mut errors);
        if errors.is_empty() {
            Ok(script)
        } else {
            Err(errors)
        }
    }

    /// What compiling alone cannot see: maps that are not declared, points that are set
    /// but not declared, fields that have no source.
    fn cross_check(&self, errors: &mut Vec<DefinitionError>) {
        let d = &self.definition;
        let check_maps = |path: &[&str], t: &Template, errors: &mut Vec<DefinitionError>| {
            for (field, map) in t.fields() {
                if let Some(map) = map
                    && !d.maps.contains_key(map)
                {
                    errors.push(at(
                        path,
                        format!(
                            "field `{field}` uses map `{map}`, which [options.maps] does not declare"
                        ),
                    ));
                }
            }
        };
        let check_set = |path: &[&str], set: &[Setter], errors: &mut Vec<DefinitionError>| {
            for setter in set {
                let mut p = path.to_vec();
                p.push(&setter.point.source);
                if self.point(&setter.point.source).is_none() {
                    errors.push(at(
                        &p,
                        format!(
                            "sets point `{}`, which [options.points] does not declare; declared: {}",
                            setter.point.source,
                            d.points.keys().cloned().collect::<Vec<_>>().join(", ")
                        ),
                    ));
                }
                check_maps(&p, &setter.value, errors);
            }
        };
        for (kind, table) in [("commands", &self.commands), ("queries", &self.queries)] {
            for (name, ex) in table {
                check_maps(&[kind, name, "send"], &ex.send, errors);
                if let Some(expect) = &ex.expect {
                    check_maps(&[kind, name, "expect"], expect, errors);
                }
                check_set(&[kind, name, "set"], &ex.set, errors);
                let source = &d.definition_exchange(kind, name).args;
                for (field, _) in ex.send.fields() {
                    let repeated = ex.repeat.as_ref().is_some_and(|r| r.field == field);
                    if kind == "commands" && !source.contains_key(field) {
                        errors.push(at(
                            &[kind, name, "send"],
                            format!(
                                "field `{{{field}}}` is not one of the command's args ({})",
                                source.keys().cloned().collect::<Vec<_>>().join(", ")
                            ),
                        ));
                    } else if kind == "queries" && !repeated {
                        errors.push(at(
                            &[kind, name, "send"],
                            format!(
                                "field `{{{field}}}` has no value: a query's fields come from `repeat`"
                            ),
                        ));
                    }
                }
                if kind == "queries" && ex.expect.is_none() {
                    errors.push(at(
                        &[kind, name],
                        "a query needs `expect`, the reply it reads",
                    ));
                }
                if kind == "queries" && d.queries[name].every.is_none() {
                    errors.push(at(
                        &[kind, name],
                        "a query needs `every`, how often to poll it (\"10s\")",
                    ));
                }
            }
        }
        for (i, report) in self.reports.iter().enumerate() {
            let i = i.to_string();
            check_maps(&["reports", &i, "pattern"], &report.pattern, errors);
            check_set(&["reports", &i, "set"], &report.set, errors);
        }
        for (point, decl) in &d.points {
            if decl.kind == PointKind::Enum && decl.values.is_empty() {
                errors.push(at(
                    &["points", point],
                    "an enum point needs `values = [...]`",
                ));
            }
        }
        for point in d.simulator.initial.keys() {
            if self.point(point).is_none() {
                errors.push(at(
                    &["simulator", "initial", point],
                    format!("`{point}` is not a declared point"),
                ));
            }
        }
    }

    /// The declaration of a point by name (`route.3`), or of a set template
    /// (`route.{output}`), through a `route.*` pattern.
    pub fn point(&self, name: &str) -> Option<&PointDecl> {
        let points = &self.definition.points;
        points.get(name).or_else(|| {
            points.iter().find_map(|(pattern, decl)| {
                let prefix = pattern.strip_suffix('*')?;
                let rest = name.strip_prefix(prefix)?;
                (!rest.is_empty() && !rest.contains('.')).then_some(decl)
            })
        })
    }

    /// The framer for frames from the device (`to_device`: for frames to it, as the
    /// simulator reads them).
    pub fn framer(&self, to_device: bool) -> Framer {
        let f = &self.definition.framing;
        let end = if to_device {
            self.send_end()
        } else {
            unescape_end(&f.end)
        };
        match f.kind {
            FramingKind::Line | FramingKind::Delimiter => {
                Framer::Delimited(Delimited::new(&end, f.trim, f.max_frame))
            }
            FramingKind::Block => Framer::Block(Block::new(f.max_frame)),
            FramingKind::Checked => Framer::Checked(Checked::new(
                f.checked.clone().expect("checked framing has a layout"),
                f.max_frame,
            )),
        }
    }

    /// What ends a request on the wire.
    pub fn send_end(&self) -> Vec<u8> {
        let f = &self.definition.framing;
        match (&f.send_end, f.kind) {
            (Some(end), _) => end.as_bytes().to_vec(),
            (None, FramingKind::Block) => b"\n\n".to_vec(),
            (None, _) => unescape_end(&f.end),
        }
    }

    /// What ends a simulated reply.
    pub fn reply_end(&self) -> Vec<u8> {
        let f = &self.definition.framing;
        match (&f.reply_end, f.kind) {
            (Some(end), _) => end.as_bytes().to_vec(),
            (None, FramingKind::Block) => b"\n\n".to_vec(),
            (None, _) => unescape_end(&f.end),
        }
    }
}

impl Definition {
    fn definition_exchange(&self, kind: &str, name: &str) -> &Exchange {
        match kind {
            "commands" => &self.commands[name],
            _ => &self.queries[name],
        }
    }
}
