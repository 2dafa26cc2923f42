//! `[macros.NAME]` in the site file: sequences of device commands, waits and delays,
//! checked against the devices' profiles before anything runs.
//!
//! Conditions (`wait_until`, `skip_if`) are a tiny language on points, written the way
//! subscriptions name them (`DEVICE/POINT`):
//!
//! ```text
//! proj/power == "on"        proj/volume > 10        proj/input in ["hdmi1", "hdmi2"]
//! online(proj)              proj/power != "off" and online(switcher)
//! ```
//!
//! Every device, point and value is checked against the profile, with the file, line and
//! column of the offending token.

use std::collections::{BTreeMap, HashMap};
use std::ops::Range;
use std::sync::Arc;
use std::time::Duration;

use avgate_drivers::{Map, Value};
use serde::Deserialize;
use toml::Spanned;

use super::ConfigError;
use super::profile::{PointType, Profile};
use super::site::DeviceConfig;

/// A checked macro.
#[derive(Debug, Clone, PartialEq)]
pub struct Macro {
    pub name: String,
    /// What panels show; the name when not given.
    pub label: String,
    /// One run per group: a new run cancels the running one of another macro in it.
    pub group: Option<String>,
    pub mode: RunMode,
    pub steps: Vec<Step>,
}

/// What a new run of a macro does while the same macro is running.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum RunMode {
    /// The new run is refused (`already_running`).
    #[default]
    Single,
    /// The running one is cancelled and the new one starts.
    Restart,
    /// The new run waits for the running one to end, then runs.
    Queued,
}

/// What a failed step (or a `wait_until` that timed out) does to the run.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum OnFail {
    /// The run stops and fails with the step's error.
    #[default]
    Fail,
    /// The run goes on with the next step.
    Continue,
}

#[derive(Debug, Clone, PartialEq)]
pub struct Step {
    /// What panels show while the step runs ("Warming up projector").
    pub label: String,
    /// The step is skipped when this holds as it is reached.
    pub skip_if: Option<Condition>,
    pub on_error: OnFail,
    pub action: Action,
    /// How long the step usually takes, from the profiles' `[hints]` (a `wait_until` for
    /// a power state: the warm-up or cool-down), for panels to show.
    pub expected: Option<Duration>,
}

#[derive(Debug, Clone, PartialEq)]
pub enum Action {
    Command {
        device: String,
        command: String,
        args: Map<String, Value>,
    },
    WaitUntil {
        condition: Condition,
        timeout: Duration,
        on_timeout: OnFail,
    },
    Delay(Duration),
    /// Runs another macro's steps in place.
    Macro(String),
}

/// A condition on the journal's state.
#[derive(Debug, Clone, PartialEq)]
pub enum Condition {
    Online(String),
    Compare {
        device: String,
        point: String,
        op: Op,
        value: Value,
    },
    In {
        device: String,
        point: String,
        values: Vec<Value>,
    },
    All(Vec<Condition>),
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Op {
    Eq,
    Ne,
    Lt,
    Gt,
}

/// How long a `wait_until` waits when the step gives no `timeout`.
pub const DEFAULT_WAIT: Duration = Duration::from_secs(60);

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct MacroFile {
    #[serde(default)]
    label: Option<String>,
    #[serde(default)]
    group: Option<String>,
    #[serde(default)]
    mode: RunMode,
    steps: Vec<Spanned<StepFile>>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct StepFile {
    #[serde(default)]
    label: Option<String>,
    #[serde(default)]
    device: Option<Spanned<String>>,
    #[serde(default)]
    command: Option<Spanned<String>>,
    #[serde(default)]
    args: Map<String, Value>,
    #[serde(default)]
    wait_until: Option<Spanned<String>>,
    #[serde(default, with = "humantime_serde")]
    timeout: Option<Duration>,
    #[serde(default)]
    on_timeout: OnFail,
    #[serde(default, with = "humantime_serde")]
    delay: Option<Duration>,
    #[serde(default)]
    skip_if: Option<Spanned<String>>,
    #[serde(default)]
    on_error: OnFail,
    #[serde(default, rename = "macro")]
    run: Option<Spanned<String>>,
}

/// A file's `[macros.NAME]` tables: the site file's own, or one of its `macro_files`.
pub(super) struct MacroSource {
    pub path: std::path::PathBuf,
    pub text: String,
    pub macros: BTreeMap<Spanned<String>, MacroFile>,
}

/// What a macro file (`macro_files = [...]` in the site file) may hold.
#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct MacroFileSet {
    #[serde(default)]
    pub macros: BTreeMap<Spanned<String>, MacroFile>,
}

/// Checks every `[macros.NAME]` of every source against the site's devices (a macro may
/// run one from another file); problems go to `errors`, at their file, line and column.
pub(super) fn load_macros(
    sources: &[MacroSource],
    devices: &[DeviceConfig],
    errors: &mut Vec<ConfigError>,
    warnings: &mut Vec<ConfigError>,
) -> BTreeMap<String, Arc<Macro>> {
    let profiles: HashMap<&str, &Profile> = devices
        .iter()
        .map(|d| (d.id.as_str(), d.profile.as_ref()))
        .collect();
    let mut names: Vec<&str> = Vec::new();
    for source in sources {
        for name in source.macros.keys() {
            if !names.contains(&name.get_ref().as_str()) {
                names.push(name.get_ref());
            }
        }
    }
    names.sort_unstable();
    let mut macros = BTreeMap::new();
    // Where each name was first declared, to report a second declaration.
    let mut declared: HashMap<&str, String> = HashMap::new();
    let mut calls: Vec<(String, String, Range<usize>, usize)> = Vec::new();
    for (index, source) in sources.iter().enumerate() {
        let here = |span: Range<usize>, message: String| {
            ConfigError::at(&source.path, &source.text, Some(span), message)
        };
        for (name, file) in &source.macros {
            let before = errors.len();
            if let Err(why) = check_name(name.get_ref()) {
                errors.push(here(name.span(), why));
                continue;
            }
            let at = here(name.span(), String::new());
            let (line, column) = at.position.unwrap_or((1, 1));
            let position = format!("{}:{line}:{column}", at.file.display());
            if let Some(first) = declared.get(name.get_ref().as_str()) {
                errors.push(here(
                name.span(),
                format!(
                    "macro `{}` is declared twice (first at {first}); give one of them another name",
                    name.get_ref()
                ),
            ));
                continue;
            }
            declared.insert(name.get_ref(), position);
            if file.steps.is_empty() {
                errors.push(here(
                    name.span(),
                    format!(
                        "macro `{}` has no steps; give it `steps = [...]`",
                        name.get_ref()
                    ),
                ));
            }
            let mut steps = Vec::new();
            for step in &file.steps {
                let span = step.span();
                let step = step.get_ref();
                let condition = |source: &Spanned<String>, errors: &mut Vec<ConfigError>| {
                    // The text starts one byte after the opening quote.
                    let start = source.span().start + 1;
                    match parse_condition(source.get_ref(), &profiles) {
                        Ok(c) => Some(c),
                        Err((at, why)) => {
                            errors.push(here(start + at..start + at, why));
                            None
                        }
                    }
                };
                let skip_if = step.skip_if.as_ref().and_then(|s| condition(s, errors));
                let kinds = [
                    step.command.is_some() || step.device.is_some(),
                    step.wait_until.is_some(),
                    step.delay.is_some(),
                    step.run.is_some(),
                ];
                if kinds.iter().filter(|k| **k).count() != 1 {
                    errors.push(here(
                    span,
                    "a step does exactly one thing: `device` + `command` (with `args`), `wait_until` (with `timeout`, `on_timeout`), `delay` or `macro`".into(),
                ));
                    continue;
                }
                let mut expected = None;
                let (action, default_label) = if let Some(source) = &step.wait_until {
                    let Some(condition) = condition(source, errors) else {
                        continue;
                    };
                    expected = expected_wait(&condition, &profiles);
                    let timeout = step.timeout.unwrap_or(DEFAULT_WAIT);
                    if let Some(expected) = expected.filter(|e| *e > timeout) {
                        warnings.push(here(
                            source.span(),
                            format!(
                                "this wait gives up after {}, but the profiles' [hints] say reaching it usually takes about {}; give the step `timeout = \"{}\"` or more",
                                humantime::format_duration(timeout),
                                humantime::format_duration(expected),
                                humantime::format_duration(expected * 2),
                            ),
                        ));
                    }
                    let action = Action::WaitUntil {
                        condition,
                        timeout,
                        on_timeout: step.on_timeout,
                    };
                    (action, format!("waiting until {}", source.get_ref()))
                } else if let Some(delay) = step.delay {
                    (
                        Action::Delay(delay),
                        format!("waiting {}", humantime::format_duration(delay)),
                    )
                } else if let Some(run) = &step.run {
                    if !names.contains(&run.get_ref().as_str()) {
                        errors.push(here(
                            run.span(),
                            format!(
                                "no macro `{}`; this site has: {}",
                                run.get_ref(),
                                names.join(", ")
                            ),
                        ));
                        continue;
                    }
                    calls.push((
                        name.get_ref().clone(),
                        run.get_ref().clone(),
                        run.span(),
                        index,
                    ));
                    (Action::Macro(run.get_ref().clone()), run.get_ref().clone())
                } else {
                    let (Some(device), Some(command)) = (&step.device, &step.command) else {
                        errors.push(here(
                            span,
                            "a command step needs both `device` and `command`".into(),
                        ));
                        continue;
                    };
                    let Some(profile) = profiles.get(device.get_ref().as_str()) else {
                        errors.push(here(
                            device.span(),
                            unknown_device(device.get_ref(), &profiles),
                        ));
                        continue;
                    };
                    let Some(spec) = profile.commands.get(command.get_ref()) else {
                        let known: Vec<&str> =
                            profile.commands.keys().map(String::as_str).collect();
                        errors.push(here(
                            command.span(),
                            format!(
                                "`{}` ({}) has no command `{}`; it has: {}",
                                device.get_ref(),
                                profile.id,
                                command.get_ref(),
                                known.join(", ")
                            ),
                        ));
                        continue;
                    };
                    if let Err(why) = spec.check_args(&step.args) {
                        errors.push(here(span, format!("{}: {why}", command.get_ref())));
                        continue;
                    }
                    let action = Action::Command {
                        device: device.get_ref().clone(),
                        command: command.get_ref().clone(),
                        args: step.args.clone(),
                    };
                    (
                        action,
                        format!("{} {}", device.get_ref(), command.get_ref()),
                    )
                };
                steps.push(Step {
                    label: step.label.clone().unwrap_or(default_label),
                    skip_if,
                    on_error: step.on_error,
                    action,
                    expected,
                });
            }
            if errors.len() == before {
                let name = name.get_ref().clone();
                let checked = Macro {
                    label: file.label.clone().unwrap_or_else(|| name.clone()),
                    group: file.group.clone(),
                    mode: file.mode,
                    steps,
                    name: name.clone(),
                };
                macros.insert(name, Arc::new(checked));
            }
        }
    }
    // A macro that runs itself, directly or through others, would never end.
    for (caller, callee, span, index) in &calls {
        if reaches(callee, caller, &calls, &mut Vec::new()) {
            let source = &sources[*index];
            errors.push(ConfigError::at(
                &source.path,
                &source.text,
                Some(span.clone()),
                format!("macro `{caller}` runs `{callee}`, which runs `{caller}` again: a macro may not run itself"),
            ));
        }
    }
    macros
}

/// The longest warm-up or cool-down `condition` waits for: a device's `power` equal to
/// `"on"` or `"off"`, by its profile's `[hints]`. `in [...]` holds on any of its values,
/// so it takes the shortest, and none when one of them (`'cooling'`) has no hint.
fn expected_wait(condition: &Condition, profiles: &HashMap<&str, &Profile>) -> Option<Duration> {
    let hints = |device: &str| profiles.get(device).map(|p| p.hints);
    match condition {
        Condition::Compare {
            device,
            point,
            op: Op::Eq,
            value,
        } if point == "power" => hints(device)?.to_reach_power(value),
        Condition::In {
            device,
            point,
            values,
        } if point == "power" => {
            let hints = hints(device)?;
            values
                .iter()
                .map(|v| hints.to_reach_power(v))
                .collect::<Option<Vec<_>>>()?
                .into_iter()
                .min()
        }
        Condition::All(parts) => parts
            .iter()
            .filter_map(|c| expected_wait(c, profiles))
            .max(),
        _ => None,
    }
}

fn reaches<'a>(
    from: &'a str,
    target: &str,
    calls: &'a [(String, String, Range<usize>, usize)],
    seen: &mut Vec<&'a str>,
) -> bool {
    if from == target {
        return true;
    }
    if seen.contains(&from) {
        return false;
    }
    seen.push(from);
    calls
        .iter()
        .filter(|(caller, ..)| caller == from)
        .any(|(_, callee, ..)| reaches(callee, target, calls, seen))
}

fn check_name(name: &str) -> Result<(), String> {
    let ok = !name.is_empty()
        && name.len() <= 64
        && name
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || matches!(c, '-' | '_' | '.'));
    if ok {
        Ok(())
    } else {
        Err(format!(
            "macro name `{name}`: use 1 to 64 letters, digits, `-`, `_` or `.`"
        ))
    }
}

fn unknown_device(device: &str, profiles: &HashMap<&str, &Profile>) -> String {
    let mut known: Vec<&str> = profiles.keys().copied().collect();
    known.sort_unstable();
    format!("no device `{device}`; this site has: {}", known.join(", "))
}

/// A token of a condition and the byte offset it starts at.
#[derive(Debug, Clone, PartialEq)]
enum Token {
    Word(String),
    Literal(Value),
    Op(Op),
    In,
    And,
    Open,
    Close,
    OpenList,
    CloseList,
    Comma,
}

fn tokens(source: &str) -> Result<Vec<(usize, Token)>, (usize, String)> {
    let mut out = Vec::new();
    let bytes = source.as_bytes();
    let mut i = 0;
    while i < bytes.len() {
        let c = bytes[i] as char;
        let start = i;
        if c.is_ascii_whitespace() {
            i += 1;
            continue;
        }
        let two = source.get(i..i + 2);
        let token = match (c, two) {
            (_, Some("==")) => {
                i += 2;
                Token::Op(Op::Eq)
            }
            (_, Some("!=")) => {
                i += 2;
                Token::Op(Op::Ne)
            }
            ('<', _) => {
                i += 1;
                Token::Op(Op::Lt)
            }
            ('>', _) => {
                i += 1;
                Token::Op(Op::Gt)
            }
            ('(', _) | (')', _) | ('[', _) | (']', _) | (',', _) => {
                i += 1;
                match c {
                    '(' => Token::Open,
                    ')' => Token::Close,
                    '[' => Token::OpenList,
                    ']' => Token::CloseList,
                    _ => Token::Comma,
                }
            }
            ('"', _) | ('\'', _) => {
                let Some(len) = source[i + 1..].find(c) else {
                    return Err((start, format!("string not closed: add a closing {c}")));
                };
                let text = &source[i + 1..i + 1 + len];
                i += len + 2;
                Token::Literal(Value::String(text.to_string()))
            }
            _ if c.is_ascii_digit() || c == '-' => {
                let len = source[i..]
                    .find(|ch: char| !(ch.is_ascii_digit() || matches!(ch, '.' | '-')))
                    .unwrap_or(source.len() - i);
                let text = &source[i..i + len];
                i += len;
                let number: serde_json::Number = text
                    .parse()
                    .map_err(|_| (start, format!("`{text}` is not a number")))?;
                Token::Literal(Value::Number(number))
            }
            _ if c.is_ascii_alphanumeric() || c == '_' => {
                let len = source[i..]
                    .find(|ch: char| {
                        !(ch.is_ascii_alphanumeric() || matches!(ch, '-' | '_' | '.' | '/' | '*'))
                    })
                    .unwrap_or(source.len() - i);
                let word = &source[i..i + len];
                i += len;
                match word {
                    "in" => Token::In,
                    "and" => Token::And,
                    "true" => Token::Literal(Value::Bool(true)),
                    "false" => Token::Literal(Value::Bool(false)),
                    _ => Token::Word(word.to_string()),
                }
            }
            _ => return Err((start, format!("unexpected `{c}` in the condition"))),
        };
        out.push((start, token));
    }
    Ok(out)
}

const GRAMMAR: &str = "write `DEVICE/POINT == VALUE` (or !=, <, >), `DEVICE/POINT in [V1, V2]` or `online(DEVICE)`, joined by `and`";

/// Parses and type-checks a condition; an error carries its byte offset in `source`.
pub fn parse_condition(
    source: &str,
    profiles: &HashMap<&str, &Profile>,
) -> Result<Condition, (usize, String)> {
    let tokens = tokens(source)?;
    let mut parts = Vec::new();
    let mut rest = &tokens[..];
    loop {
        let (condition, after) = atom(rest, source.len(), profiles)?;
        parts.push(condition);
        match after.split_first() {
            None => break,
            Some(((_, Token::And), more)) => rest = more,
            Some(((at, _), _)) => {
                return Err((*at, format!("expected `and` or the end; {GRAMMAR}")));
            }
        }
    }
    Ok(if parts.len() == 1 {
        parts.remove(0)
    } else {
        Condition::All(parts)
    })
}

type Parsed<'a> = Result<(Condition, &'a [(usize, Token)]), (usize, String)>;

fn atom<'a>(
    tokens: &'a [(usize, Token)],
    end: usize,
    profiles: &HashMap<&str, &Profile>,
) -> Parsed<'a> {
    let at = |i: usize| tokens.get(i).map_or(end, |(at, _)| *at);
    let token = |i: usize| tokens.get(i).map(|(_, t)| t);
    match (token(0), token(1)) {
        (Some(Token::Word(w)), Some(Token::Open)) if w == "online" => {
            let Some(Token::Word(device)) = token(2) else {
                return Err((
                    at(2),
                    format!("expected a device id in online(...); {GRAMMAR}"),
                ));
            };
            if !profiles.contains_key(device.as_str()) {
                return Err((at(2), unknown_device(device, profiles)));
            }
            if token(3) != Some(&Token::Close) {
                return Err((at(3), "expected `)` after the device id".into()));
            }
            Ok((Condition::Online(device.clone()), &tokens[4..]))
        }
        (Some(Token::Word(target)), _) => {
            let Some((device, point)) = target.split_once('/') else {
                return Err((at(0), format!("`{target}` names no point; {GRAMMAR}")));
            };
            let Some(profile) = profiles.get(device) else {
                return Err((at(0), unknown_device(device, profiles)));
            };
            let kind = match point {
                crate::journal::ONLINE => PointType::Bool,
                _ => match profile.point(point) {
                    Some(spec) => spec.kind,
                    None => {
                        let known: Vec<&str> = profile.points.keys().map(String::as_str).collect();
                        return Err((
                            at(0),
                            format!(
                                "`{device}` ({}) has no point `{point}`; it has: {}",
                                profile.id,
                                known.join(", ")
                            ),
                        ));
                    }
                },
            };
            let values_of = |spec_point: &str| {
                profile
                    .point(spec_point)
                    .map(|s| s.values.clone())
                    .unwrap_or_default()
            };
            let check = |value: &Value, at: usize| -> Result<(), (usize, String)> {
                let fits = match kind {
                    PointType::Bool => value.is_boolean(),
                    PointType::Integer => value.is_i64() || value.is_u64(),
                    PointType::Number => value.is_number(),
                    PointType::String => value.is_string(),
                    PointType::Enum => value
                        .as_str()
                        .is_some_and(|v| values_of(point).iter().any(|known| known == v)),
                    PointType::Array | PointType::Object => false,
                };
                if fits {
                    return Ok(());
                }
                let expected = match kind {
                    PointType::Enum => format!("one of {:?}", values_of(point)),
                    PointType::Array | PointType::Object => {
                        "nothing: array and object points cannot be compared".into()
                    }
                    other => format!("a {other:?}").to_lowercase(),
                };
                Err((
                    at,
                    format!("`{target}` is never {value}: expected {expected}"),
                ))
            };
            let (device, point) = (device.to_string(), point.to_string());
            match token(1) {
                Some(Token::Op(op)) => {
                    let Some(Token::Literal(value)) = token(2) else {
                        return Err((
                            at(2),
                            format!("expected a value after the operator; {GRAMMAR}"),
                        ));
                    };
                    check(value, at(2))?;
                    if matches!(op, Op::Lt | Op::Gt) && !value.is_number() {
                        return Err((
                            at(1),
                            format!("`<` and `>` compare numbers; `{target}` is not one"),
                        ));
                    }
                    let condition = Condition::Compare {
                        device,
                        point,
                        op: *op,
                        value: value.clone(),
                    };
                    Ok((condition, &tokens[3..]))
                }
                Some(Token::In) => {
                    if token(2) != Some(&Token::OpenList) {
                        return Err((at(2), "expected `[` after `in`".into()));
                    }
                    let mut values = Vec::new();
                    let mut i = 3;
                    loop {
                        match token(i) {
                            Some(Token::Literal(value)) => {
                                check(value, at(i))?;
                                values.push(value.clone());
                            }
                            _ => return Err((at(i), "expected a value in the list".into())),
                        }
                        match token(i + 1) {
                            Some(Token::Comma) => i += 2,
                            Some(Token::CloseList) => break,
                            _ => return Err((at(i + 1), "expected `,` or `]`".into())),
                        }
                    }
                    Ok((
                        Condition::In {
                            device,
                            point,
                            values,
                        },
                        &tokens[i + 2..],
                    ))
                }
                _ => Err((
                    at(1),
                    format!("expected ==, !=, <, > or in after `{target}`"),
                )),
            }
        }
        _ => Err((at(0), format!("expected a condition; {GRAMMAR}"))),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::parse_site;
    use std::path::Path;

    const DEVICES: &str = r#"
[devices.proj]
profile = "pjlink-projector"
address = "127.0.0.1:4352"
"#;

    fn parse(macros: &str) -> Result<crate::config::Site, String> {
        parse_site(Path::new("site.toml"), &format!("{DEVICES}{macros}")).map_err(|e| e.to_string())
    }

    #[test]
    fn a_room_macro_parses_with_every_kind_of_step() {
        let site = parse(
            r#"
[macros.room-on]
label = "Room on"
group = "room"
mode = "restart"
steps = [
  { device = "proj", command = "power", args = { on = true }, label = "Projector on" },
  { wait_until = "proj/power == 'on'", timeout = "90s", on_timeout = "continue" },
  { delay = "2s" },
  { skip_if = "proj/input in ['HDMI1', 'HDMI2'] and online(proj)", device = "proj", command = "power", args = { on = true }, on_error = "continue" },
  { macro = "unmute" },
]
[macros.unmute]
steps = [{ wait_until = "online(proj)" }]
"#,
        )
        .unwrap();
        let room_on = &site.macros["room-on"];
        assert_eq!(room_on.mode, RunMode::Restart);
        assert_eq!(room_on.group.as_deref(), Some("room"));
        assert_eq!(room_on.steps.len(), 5);
        // The projector profile's `[hints] warm_up` is what waiting for `on` takes.
        assert_eq!(room_on.steps[1].expected, Some(Duration::from_secs(30)));
        assert_eq!(room_on.steps[0].expected, None);
        assert!(site.warnings.is_empty(), "{:?}", site.warnings);
        // A wait shorter than the warm-up it waits for is worth a warning, not an error.
        let short = parse(
            "[macros.m]\nsteps = [{ wait_until = \"proj/power == 'on'\", timeout = \"10s\" }]\n",
        )
        .unwrap();
        let warning = short.warnings[0].to_string();
        assert!(
            warning.starts_with("site.toml:6:25: this wait gives up after 10s, but the profiles' [hints] say reaching it usually takes about 30s; give the step `timeout = \"1m\"` or more"),
            "{warning}"
        );
        assert_eq!(room_on.steps[0].label, "Projector on");
        assert_eq!(
            room_on.steps[1].action,
            Action::WaitUntil {
                condition: Condition::Compare {
                    device: "proj".into(),
                    point: "power".into(),
                    op: Op::Eq,
                    value: Value::from("on"),
                },
                timeout: Duration::from_secs(90),
                on_timeout: OnFail::Continue,
            }
        );
        assert!(
            matches!(room_on.steps[3].skip_if, Some(Condition::All(ref parts)) if parts.len() == 2)
        );
        assert_eq!(room_on.steps[4].action, Action::Macro("unmute".into()));
    }

    #[test]
    fn the_worked_room_in_the_docs_is_a_valid_site() {
        let doc = include_str!("../../docs/MACROS.md");
        let start = doc.find("```toml\n").expect("a toml block") + "```toml\n".len();
        let block = &doc[start..start + doc[start..].find("```").unwrap()];
        let site = parse_site(Path::new("site.toml"), block).unwrap_or_else(|e| panic!("{e}"));
        assert_eq!(site.macros["room-on"].steps.len(), 5);
        assert_eq!(site.macros["room-off"].mode, RunMode::Restart);
        assert!(site.warnings.is_empty(), "{:?}", site.warnings);
        assert_eq!(site.schedules[0].warning, Some(Duration::from_secs(300)));
        assert_eq!(site.lease.policy, crate::config::lease::Policy::Exclusive);
        assert_eq!(site.lease.released_by, ["room-off"]);
    }

    #[test]
    fn conditions_are_checked_against_the_profile_with_a_position() {
        let err = parse("[macros.m]\nsteps = [{ wait_until = \"proj/power == 'sideways'\" }]\n")
            .unwrap_err();
        // Line 6 of the whole file; the value starts at its column inside the string.
        assert!(err.starts_with("site.toml:6:40:"), "{err}");
        assert!(err.contains("expected one of"), "{err}");
        let err = parse("[macros.m]\nsteps = [{ wait_until = \"proj/lamp == 1\" }]\n").unwrap_err();
        assert!(
            err.contains("no point `lamp`") && err.starts_with("site.toml:6:26:"),
            "{err}"
        );
        let err = parse("[macros.m]\nsteps = [{ skip_if = \"online(nope)\", delay = \"1s\" }]\n")
            .unwrap_err();
        assert!(err.contains("no device `nope`"), "{err}");
        let err =
            parse("[macros.m]\nsteps = [{ wait_until = \"proj/power > 'on'\" }]\n").unwrap_err();
        assert!(err.contains("compare numbers"), "{err}");
    }

    #[test]
    fn steps_are_checked_against_devices_commands_and_other_macros() {
        let err =
            parse("[macros.m]\nsteps = [{ device = \"proj\", command = \"fly\" }]\n").unwrap_err();
        assert!(
            err.contains("has no command `fly`") && err.starts_with("site.toml:6:"),
            "{err}"
        );
        let err = parse(
            "[macros.m]\nsteps = [{ device = \"proj\", command = \"power\", args = { on = 3 } }]\n",
        )
        .unwrap_err();
        assert!(err.contains("power:"), "{err}");
        let err = parse("[macros.m]\nsteps = [{ delay = \"1s\", macro = \"m\" }]\n").unwrap_err();
        assert!(err.contains("exactly one thing"), "{err}");
        let err = parse(
            "[macros.a]\nsteps = [{ macro = \"b\" }]\n[macros.b]\nsteps = [{ macro = \"a\" }]\n",
        )
        .unwrap_err();
        assert!(err.contains("may not run itself"), "{err}");
    }

    #[test]
    fn macros_in_files_the_site_names_are_checked_where_they_are_and_work_together() {
        let site_text = format!(
            "macro_files = [\"macros/room.toml\"]\n{DEVICES}[macros.room-off]\nsteps = [{{ macro = \"warm\" }}]\n[[schedules]]\nmacro = \"room-on\"\nat = \"07:00\"\n"
        );
        let files = |room: &'static str| {
            move |path: &Path| {
                assert_eq!(path, Path::new("macros/room.toml"));
                Ok(room.to_string())
            }
        };
        let good = "[macros.room-on]\nsteps = [{ macro = \"warm\" }]\n[macros.warm]\nsteps = [{ wait_until = \"proj/power == 'on'\" }]\n";
        let site = crate::config::parse_site_with(Path::new("site.toml"), &site_text, &files(good))
            .unwrap();
        let names: Vec<&str> = site.macros.keys().map(String::as_str).collect();
        assert_eq!(names, ["room-off", "room-on", "warm"]);
        assert_eq!(site.schedules[0].run, "room-on");

        let bad = "[macros.room-on]\nsteps = [{ wait_until = \"proj/power == 'sideways'\" }]\n[macros.room-off]\nsteps = [{ delay = \"1s\" }]\n";
        let err = crate::config::parse_site_with(Path::new("site.toml"), &site_text, &files(bad))
            .unwrap_err()
            .to_string();
        assert!(
            err.contains("macros/room.toml:2:40: `proj/power` is never \"sideways\""),
            "{err}"
        );
        assert!(
            err.contains(
                "macros/room.toml:3:9: macro `room-off` is declared twice (first at site.toml:6:9)"
            ),
            "{err}"
        );
        assert!(err.contains("site.toml:7:20: no macro `warm`"), "{err}");

        let missing = crate::config::parse_site_with(Path::new("site.toml"), &site_text, &|_| {
            Err(std::io::Error::from(std::io::ErrorKind::NotFound))
        })
        .unwrap_err()
        .to_string();
        assert!(
            missing.contains("site.toml:1:16: cannot read macro file macros/room.toml"),
            "{missing}"
        );
    }
}
