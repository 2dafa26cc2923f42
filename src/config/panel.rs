//! Panel pages in TOML: `[panels.NAME] file = "panels/NAME.toml"` in the site file, served
//! at `/panel/NAME`. Every binding (device, point, command, argument values) is checked
//! against the device's profile when the site is loaded, so `check-config` finds a wrong
//! input name before a room user taps it.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::time::Duration;

use serde::{Deserialize, Serialize};
use serde_json::{Map, Value, json};
use toml::Spanned;

use super::site::DeviceConfig;
use super::{ConfigError, parse_toml};

/// A panel the gateway serves at `/panel/NAME`.
#[derive(Debug, Clone)]
pub struct Panel {
    pub name: String,
    pub content: PanelContent,
}

#[derive(Debug, Clone)]
pub enum PanelContent {
    /// A page file, drawn by the built-in widgets.
    Page(PanelPage),
    /// A directory of the site's own HTML, CSS and scripts (using /avgate.js).
    Dir(PathBuf),
}

/// A checked page file, as the browser receives it (JSON).
#[derive(Debug, Clone, Serialize)]
pub struct PanelPage {
    pub name: String,
    pub title: String,
    /// Back to the first page after this long without a touch.
    pub idle_timeout_ms: Option<u64>,
    /// Shown on the connection-lost overlay: who to call.
    pub offline_message: String,
    pub pages: Vec<Page>,
}

#[derive(Debug, Clone, Serialize)]
pub struct Page {
    pub id: String,
    pub title: String,
    pub widgets: Vec<Value>,
}

/// `[panels.NAME]` in the site file.
#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct PanelEntry {
    file: Option<Spanned<String>>,
    dir: Option<Spanned<String>>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct PanelFile {
    title: String,
    #[serde(default, with = "humantime_serde")]
    idle_timeout: Option<Duration>,
    #[serde(default)]
    offline_message: String,
    pages: Vec<Spanned<PageFile>>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct PageFile {
    id: Spanned<String>,
    title: Option<String>,
    #[serde(default)]
    widgets: Vec<Spanned<WidgetFile>>,
}

/// One widget; which fields it takes depends on `type` (see docs/PANELS.md).
#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct WidgetFile {
    #[serde(rename = "type")]
    kind: Spanned<String>,
    device: Option<Spanned<String>>,
    label: Option<String>,
    point: Option<Spanned<String>>,
    command: Option<Spanned<String>>,
    args: Option<Spanned<toml::Table>>,
    /// The argument a `toggle` sets to true or false.
    arg: Option<Spanned<String>>,
    sources: Option<Vec<Spanned<SourceFile>>>,
    /// The switcher output a `route` or `volume` widget controls.
    output: Option<Spanned<i64>>,
    outputs: Option<Spanned<Vec<i64>>>,
    presets: Option<Vec<Spanned<PresetFile>>>,
    page: Option<Spanned<String>>,
    unit: Option<String>,
    /// The site macro a `macro` widget runs.
    #[serde(rename = "macro")]
    run: Option<Spanned<String>>,
    /// What a `macro` widget asks before it runs ("Turn the room off?").
    confirm: Option<String>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct SourceFile {
    label: String,
    /// For `source_select`: the input's name as the device's `input` command takes it.
    value: Option<String>,
    /// For `route`: the switcher input number.
    input: Option<i64>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct PresetFile {
    label: String,
    number: i64,
}

const WIDGET_TYPES: &[&str] = &[
    "display_power",
    "source_select",
    "volume",
    "route",
    "camera",
    "button",
    "toggle",
    "status",
    "page_link",
    "macro",
    "lease",
];

/// Reads and checks every `[panels.NAME]`; problems go to `errors`.
pub(super) fn load_panels(
    site_path: &Path,
    site_text: &str,
    entries: BTreeMap<Spanned<String>, PanelEntry>,
    devices: &[DeviceConfig],
    macros: &[String],
    read: &dyn Fn(&Path) -> std::io::Result<String>,
    errors: &mut Vec<ConfigError>,
) -> Vec<Panel> {
    let base = site_path.parent().unwrap_or(Path::new("."));
    let mut panels = Vec::new();
    for (name, entry) in entries {
        let here = |span, message| ConfigError::at(site_path, site_text, span, message);
        let plain = |c: char| c.is_ascii_alphanumeric() || matches!(c, '-' | '_');
        if name.get_ref().is_empty() || !name.get_ref().chars().all(plain) {
            errors.push(here(
                Some(name.span()),
                format!(
                    "panel name `{}` may use only letters, digits, `-` and `_` (it is part of the URL /panel/NAME)",
                    name.get_ref()
                ),
            ));
            continue;
        }
        let content = match (entry.file, entry.dir) {
            (Some(file), None) => {
                let path = base.join(file.get_ref());
                let text = match read(&path) {
                    Ok(text) => text,
                    Err(e) => {
                        errors.push(here(
                            Some(file.span()),
                            format!(
                                "cannot read panel page {}: {e}; the path is relative to the site file",
                                path.display()
                            ),
                        ));
                        continue;
                    }
                };
                match parse_panel_page(name.get_ref(), &path, &text, devices, macros) {
                    Ok(page) => PanelContent::Page(page),
                    Err(mut errs) => {
                        errors.append(&mut errs);
                        continue;
                    }
                }
            }
            (None, Some(dir)) => {
                let path = base.join(dir.get_ref());
                if !path.join("index.html").is_file() {
                    errors.push(here(
                        Some(dir.span()),
                        format!(
                            "panel directory {} has no index.html; it is served at /panel/{}/",
                            path.display(),
                            name.get_ref()
                        ),
                    ));
                    continue;
                }
                PanelContent::Dir(path)
            }
            _ => {
                errors.push(here(
                    Some(name.span()),
                    format!(
                        "panel `{}` needs exactly one of `file = \"panels/{}.toml\"` (a page file) or `dir = \"...\"` (your own HTML)",
                        name.get_ref(),
                        name.get_ref()
                    ),
                ));
                continue;
            }
        };
        panels.push(Panel {
            name: name.into_inner(),
            content,
        });
    }
    panels
}

/// Checks a panel page file against the site's devices; errors name this file.
pub fn parse_panel_page(
    name: &str,
    path: &Path,
    text: &str,
    devices: &[DeviceConfig],
    macros: &[String],
) -> Result<PanelPage, Vec<ConfigError>> {
    let file: PanelFile = parse_toml(path, text).map_err(|e| vec![e])?;
    let mut errors = Vec::new();
    if file.pages.is_empty() {
        errors.push(ConfigError::file(
            path,
            "a panel needs at least one `[[pages]]` (the first is the home page)".into(),
        ));
    }
    let page_ids: Vec<&str> = file
        .pages
        .iter()
        .map(|p| p.get_ref().id.get_ref().as_str())
        .collect();
    let mut pages = Vec::new();
    for page in &file.pages {
        let page = page.get_ref();
        let mut widgets = Vec::new();
        for widget in &page.widgets {
            let checker = Checker {
                path,
                text,
                devices,
                macros,
                page_ids: &page_ids,
                errors: &mut errors,
                span: widget.span(),
            };
            if let Some(w) = checker.widget(widget.get_ref()) {
                widgets.push(w);
            }
        }
        pages.push(Page {
            id: page.id.get_ref().clone(),
            title: page
                .title
                .clone()
                .unwrap_or_else(|| page.id.get_ref().clone()),
            widgets,
        });
    }
    if !errors.is_empty() {
        return Err(errors);
    }
    Ok(PanelPage {
        name: name.to_string(),
        title: file.title,
        idle_timeout_ms: file.idle_timeout.map(|d| d.as_millis() as u64),
        offline_message: file.offline_message,
        pages,
    })
}

/// Checks one widget's bindings, pushing errors at the field at fault.
struct Checker<'a> {
    path: &'a Path,
    text: &'a str,
    devices: &'a [DeviceConfig],
    /// The site's macro names, for `macro` widgets.
    macros: &'a [String],
    page_ids: &'a [&'a str],
    errors: &'a mut Vec<ConfigError>,
    /// The whole widget, for problems with no field of their own.
    span: std::ops::Range<usize>,
}

impl Checker<'_> {
    fn error(&mut self, span: Option<std::ops::Range<usize>>, message: String) {
        let span = span.unwrap_or_else(|| self.span.clone());
        self.errors
            .push(ConfigError::at(self.path, self.text, Some(span), message));
    }

    /// The widget as JSON for the browser, or None after recording what is wrong.
    fn widget(mut self, w: &WidgetFile) -> Option<Value> {
        let kind = w.kind.get_ref().as_str();
        if !WIDGET_TYPES.contains(&kind) {
            self.error(
                Some(w.kind.span()),
                format!(
                    "unknown widget type `{kind}`; use one of: {}",
                    WIDGET_TYPES.join(", ")
                ),
            );
            return None;
        }
        let before = self.errors.len();
        let mut out = json!({"type": kind});
        if let Some(label) = &w.label {
            out["label"] = json!(label);
        }
        if kind == "lease" {
            return Some(out);
        }
        if kind == "macro" {
            let Some(run) = &w.run else {
                self.error(
                    None,
                    "a `macro` widget needs `macro = \"NAME\"`, one of the site's [macros.NAME]"
                        .into(),
                );
                return None;
            };
            if !self.macros.contains(run.get_ref()) {
                self.error(
                    Some(run.span()),
                    format!(
                        "no macro `{}` in this site; its macros are: {}",
                        run.get_ref(),
                        if self.macros.is_empty() {
                            "none".into()
                        } else {
                            self.macros.join(", ")
                        }
                    ),
                );
                return None;
            }
            out["macro"] = json!(run.get_ref());
            if let Some(confirm) = &w.confirm {
                out["confirm"] = json!(confirm);
            }
            return Some(out);
        }
        if kind == "page_link" {
            let Some(page) = &w.page else {
                self.error(None, "a `page_link` needs `page = \"ID\"`".into());
                return None;
            };
            if !self.page_ids.contains(&page.get_ref().as_str()) {
                self.error(
                    Some(page.span()),
                    format!(
                        "no page `{}` in this panel; its pages are: {}",
                        page.get_ref(),
                        self.page_ids.join(", ")
                    ),
                );
            }
            out["page"] = json!(page.get_ref());
            out["label"] = json!(w.label.clone().unwrap_or_else(|| page.get_ref().clone()));
            return (self.errors.len() == before).then_some(out);
        }

        let Some(device_name) = &w.device else {
            self.error(None, format!("a `{kind}` widget needs `device = \"ID\"`"));
            return None;
        };
        let Some(device) = self.devices.iter().find(|d| &d.id == device_name.get_ref()) else {
            let known: Vec<&str> = self.devices.iter().map(|d| d.id.as_str()).collect();
            self.error(
                Some(device_name.span()),
                format!(
                    "no device `{}` in this site; its devices are: {}",
                    device_name.get_ref(),
                    known.join(", ")
                ),
            );
            return None;
        };
        out["device"] = json!(device.id);
        let device_span = Some(device_name.span());
        match kind {
            "display_power" => {
                let hints = serde_json::to_value(device.profile.hints).expect("hints serialize");
                if let Some(hints) = hints.as_object() {
                    for (name, seconds) in hints {
                        out[name] = seconds.clone();
                    }
                }
                self.point(device, "power", device_span.clone());
                self.call(device, "power", &json!({"on": true}), device_span);
            }
            "source_select" => {
                let command = text_or(&w.command, "input");
                let arg = text_or(&w.arg, "source");
                let point = text_or(&w.point, "input");
                self.point(
                    device,
                    &point,
                    w.point.as_ref().map(|p| p.span()).or(device_span.clone()),
                );
                let mut sources = Vec::new();
                for source in w.sources.iter().flatten() {
                    let Some(value) = &source.get_ref().value else {
                        self.error(
                            Some(source.span()),
                            "each source needs `value`: the input's name as the device takes it"
                                .into(),
                        );
                        continue;
                    };
                    self.call(
                        device,
                        &command,
                        &json!({ arg.clone(): value }),
                        Some(source.span()),
                    );
                    sources.push(json!({"label": source.get_ref().label, "value": value}));
                }
                if sources.is_empty() && device.profile.point("inputs").is_none() {
                    self.error(device_span, format!("device `{}` does not list its inputs: give `sources = [{{ label = \"Laptop\", value = \"...\" }}]`", device.id));
                }
                out["command"] = json!(command);
                out["arg"] = json!(arg);
                out["point"] = json!(point);
                out["sources"] = json!(sources);
            }
            "volume" => {
                let output = w.output.as_ref().map(|o| *o.get_ref());
                let suffix = output.map_or(String::new(), |o| format!(".{o}"));
                self.point(device, &format!("volume{suffix}"), device_span.clone());
                let mut args = json!({"level": 0});
                if let Some(o) = output {
                    args["output"] = json!(o);
                    out["output"] = json!(o);
                }
                let level = device
                    .profile
                    .commands
                    .get("volume")
                    .and_then(|c| c.args.get("level"));
                if let Some(level) = level {
                    args["level"] = json!(level.min.unwrap_or(0.0) as i64);
                    out["min"] = json!(level.min.unwrap_or(0.0));
                    out["max"] = json!(level.max.unwrap_or(100.0));
                }
                self.call(
                    device,
                    "volume",
                    &args,
                    w.output.as_ref().map(|o| o.span()).or(device_span.clone()),
                );
                let mute_on = device
                    .profile
                    .commands
                    .get("mute")
                    .is_some_and(|c| c.args.contains_key("on"));
                out["mute"] =
                    json!(mute_on && device.profile.point(&format!("mute{suffix}")).is_some());
            }
            "route" => {
                let outputs: Vec<i64> = match (&w.outputs, &w.output) {
                    (Some(list), _) => list.get_ref().clone(),
                    (None, Some(o)) => vec![*o.get_ref()],
                    (None, None) => vec![],
                };
                let out_span = w
                    .outputs
                    .as_ref()
                    .map(|o| o.span())
                    .or(w.output.as_ref().map(|o| o.span()));
                for o in &outputs {
                    self.point(
                        device,
                        &format!("route.{o}"),
                        out_span.clone().or(device_span.clone()),
                    );
                    self.call(
                        device,
                        "route",
                        &json!({"input": 0, "output": o}),
                        out_span.clone().or(device_span.clone()),
                    );
                }
                if outputs.is_empty() {
                    self.point(device, "route.1", device_span.clone());
                }
                let mut sources = Vec::new();
                for source in w.sources.iter().flatten() {
                    let Some(input) = source.get_ref().input else {
                        self.error(
                            Some(source.span()),
                            "each route source needs `input`: the switcher's input number".into(),
                        );
                        continue;
                    };
                    self.call(
                        device,
                        "route",
                        &json!({"input": input, "output": outputs.first().copied().unwrap_or(1)}),
                        Some(source.span()),
                    );
                    sources.push(json!({"label": source.get_ref().label, "input": input}));
                }
                out["outputs"] = json!(outputs);
                out["sources"] = json!(sources);
            }
            "camera" => {
                if !device.profile.commands.contains_key("pan_tilt")
                    && !device.profile.commands.contains_key("zoom")
                {
                    self.error(device_span.clone(), format!("device `{}` ({}) has no `pan_tilt` or `zoom` command: it is not a camera", device.id, device.profile.id));
                }
                let mut presets = Vec::new();
                for preset in w.presets.iter().flatten() {
                    let number = preset.get_ref().number;
                    self.call(
                        device,
                        "preset",
                        &json!({"action": "recall", "number": number}),
                        Some(preset.span()),
                    );
                    presets.push(json!({"label": preset.get_ref().label, "number": number}));
                }
                out["presets"] = json!(presets);
            }
            "button" | "toggle" => {
                let Some(command) = &w.command else {
                    self.error(
                        None,
                        format!("a `{kind}` widget needs `command = \"NAME\"`"),
                    );
                    return None;
                };
                let args = w.args.as_ref().map_or(Map::new(), |a| {
                    match serde_json::to_value(a.get_ref()) {
                        Ok(Value::Object(map)) => map,
                        _ => Map::new(),
                    }
                });
                let args_span = w.args.as_ref().map(|a| a.span()).or(Some(command.span()));
                out["command"] = json!(command.get_ref());
                out["args"] = Value::Object(args.clone());
                if kind == "toggle" {
                    let Some(point) = &w.point else {
                        self.error(None, "a `toggle` needs `point = \"NAME\"`: the bool point that shows its state".into());
                        return None;
                    };
                    self.point(device, point.get_ref(), Some(point.span()));
                    let arg = text_or(&w.arg, "on");
                    let mut with = args;
                    with.insert(arg.clone(), Value::Bool(true));
                    self.call(
                        device,
                        command.get_ref(),
                        &Value::Object(with),
                        w.arg.as_ref().map(|a| a.span()).or(args_span),
                    );
                    out["point"] = json!(point.get_ref());
                    out["arg"] = json!(arg);
                } else {
                    if w.label.is_none() {
                        self.error(
                            None,
                            "a `button` needs `label = \"...\"`: the words on it".into(),
                        );
                    }
                    self.call(device, command.get_ref(), &Value::Object(args), args_span);
                }
            }
            "status" => {
                let Some(point) = &w.point else {
                    self.error(None, "a `status` widget needs `point = \"NAME\"`".into());
                    return None;
                };
                self.point(device, point.get_ref(), Some(point.span()));
                out["point"] = json!(point.get_ref());
                if let Some(unit) = w.unit.clone().or_else(|| {
                    device
                        .profile
                        .point(point.get_ref())
                        .and_then(|p| p.unit.clone())
                }) {
                    out["unit"] = json!(unit);
                }
            }
            _ => unreachable!("every type in WIDGET_TYPES is handled"),
        }
        (self.errors.len() == before).then_some(out)
    }

    /// The device reports `point` (its profile declares it, or it is `online`/`error`).
    fn point(&mut self, device: &DeviceConfig, point: &str, span: Option<std::ops::Range<usize>>) {
        if matches!(point, "online" | "error") || device.profile.point(point).is_some() {
            return;
        }
        let known: Vec<&str> = device.profile.points.keys().map(String::as_str).collect();
        self.error(
            span,
            format!(
                "device `{}` ({}) has no point `{point}`; its points are: {}",
                device.id,
                device.profile.id,
                known.join(", ")
            ),
        );
    }

    /// The device takes `command` with these arguments (types, ranges, enum values).
    fn call(
        &mut self,
        device: &DeviceConfig,
        command: &str,
        args: &Value,
        span: Option<std::ops::Range<usize>>,
    ) {
        let Some(spec) = device.profile.commands.get(command) else {
            let known: Vec<&str> = device.profile.commands.keys().map(String::as_str).collect();
            self.error(
                span,
                format!(
                    "device `{}` ({}) has no command `{command}`; its commands are: {}",
                    device.id,
                    device.profile.id,
                    known.join(", ")
                ),
            );
            return;
        };
        let empty = Map::new();
        let args = args.as_object().unwrap_or(&empty);
        if let Err(why) = spec.check_args(args) {
            self.error(
                span,
                format!("`{command}` on device `{}`: {why}", device.id),
            );
        }
    }
}

fn text_or(value: &Option<Spanned<String>>, default: &str) -> String {
    value
        .as_ref()
        .map_or(default.to_string(), |v| v.get_ref().clone())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::{ConfigErrors, Site, parse_site_with};

    const SITE: &str = r#"
[devices.proj]
profile = "pjlink-projector"
address = "192.0.2.7"

[devices.sw]
profile = "extron-sis-switcher"
address = "192.0.2.8"

[panels.lobby]
file = "panels/lobby.toml"
"#;

    fn site_with_page(page: &str) -> Result<Site, ConfigErrors> {
        let page = page.to_string();
        parse_site_with(Path::new("site.toml"), SITE, &move |path: &Path| {
            assert_eq!(path, Path::new("panels/lobby.toml"));
            Ok(page.clone())
        })
    }

    fn errors(page: &str) -> String {
        site_with_page(page)
            .expect_err("the page is wrong")
            .to_string()
    }

    #[test]
    fn a_macro_widget_names_a_site_macro_and_the_lease_indicator_needs_nothing() {
        let page = r#"title = "Lobby"
[[pages]]
id = "home"
[[pages.widgets]]
type = "macro"
macro = "room-on"
label = "Room on"
confirm = "Turn the room on?"
[[pages.widgets]]
type = "lease"
[[pages.widgets]]
type = "macro"
macro = "room-of"
"#;
        let with_macro = format!("{SITE}\n[macros.room-on]\nsteps = [{{ delay = \"1s\" }}]\n");
        let read = |_: &Path| Ok(page.to_string());
        let error = parse_site_with(Path::new("site.toml"), &with_macro, &read)
            .expect_err("room-of is no macro")
            .to_string();
        assert!(
            error.contains(
                "lobby.toml:13:9: no macro `room-of` in this site; its macros are: room-on"
            ),
            "{error}"
        );
        let good = page.rsplit_once("[[pages.widgets]]").unwrap().0;
        let read = |_: &Path| Ok(good.to_string());
        let site = parse_site_with(Path::new("site.toml"), &with_macro, &read).unwrap();
        let PanelContent::Page(page) = &site.panels[0].content else {
            panic!("a page")
        };
        let widgets = serde_json::to_value(page).unwrap()["pages"][0]["widgets"].clone();
        assert_eq!(
            widgets,
            json!([
                {"type": "macro", "macro": "room-on", "label": "Room on", "confirm": "Turn the room on?"},
                {"type": "lease"},
            ])
        );
    }

    #[test]
    fn a_good_page_is_checked_and_given_to_the_browser_as_json() {
        let site = site_with_page(
            r#"title = "Lobby"
idle_timeout = "90s"
offline_message = "Call 555-0100"

[[pages]]
id = "home"
title = "Home"

[[pages.widgets]]
type = "source_select"
device = "proj"
sources = [{ label = "Laptop", value = "hdmi1" }]

[[pages.widgets]]
type = "route"
device = "sw"
outputs = [1, 2]
sources = [{ label = "Lectern", input = 3 }]

[[pages.widgets]]
type = "toggle"
label = "Picture mute"
device = "proj"
point = "video_mute"
command = "mute"
arg = "video"
"#,
        )
        .expect("valid");
        let PanelContent::Page(page) = &site.panels[0].content else {
            panic!("a page file")
        };
        assert_eq!(site.panels[0].name, "lobby");
        assert_eq!(page.idle_timeout_ms, Some(90_000));
        assert_eq!(page.offline_message, "Call 555-0100");
        let widgets = &page.pages[0].widgets;
        assert_eq!(
            widgets[0]["sources"],
            json!([{"label": "Laptop", "value": "hdmi1"}])
        );
        assert_eq!(widgets[0]["command"], "input");
        assert_eq!(widgets[1]["outputs"], json!([1, 2]));
        assert_eq!(widgets[2]["arg"], "video");
    }

    #[test]
    fn each_bad_binding_is_named_at_its_line_and_column() {
        let found = errors(
            r#"title = "Lobby"

[[pages]]
id = "home"

[[pages.widgets]]
type = "display_power"
device = "projector-9"

[[pages.widgets]]
type = "status"
device = "proj"
point = "lamp_minutes"

[[pages.widgets]]
type = "route"
device = "sw"
output = 300

[[pages.widgets]]
type = "button"
label = "Mute"
device = "proj"
command = "mute"
args = { video = "yes" }

[[pages.widgets]]
type = "page_link"
page = "camera"

[[pages.widgets]]
type = "slider"
"#,
        );
        let lines: Vec<&str> = found.lines().collect();
        assert_eq!(lines.len(), 6, "{found}");
        assert!(lines[0].starts_with("panels/lobby.toml:8:10: no device `projector-9` in this site; its devices are: proj, sw"), "{found}");
        assert!(lines[1].starts_with("panels/lobby.toml:13:9: device `proj` (pjlink-projector) has no point `lamp_minutes`; its points are:"), "{found}");
        assert!(lines[2].starts_with("panels/lobby.toml:18:10: `route` on device `sw`: argument `output`: 300 is out of range 1..=256"), "{found}");
        assert!(lines[3].starts_with("panels/lobby.toml:25:8: `mute` on device `proj`: argument `video`: expected true or false"), "{found}");
        assert!(
            lines[4].starts_with(
                "panels/lobby.toml:29:8: no page `camera` in this panel; its pages are: home"
            ),
            "{found}"
        );
        assert!(
            lines[5].starts_with(
                "panels/lobby.toml:32:8: unknown widget type `slider`; use one of: display_power,"
            ),
            "{found}"
        );
    }

    #[test]
    fn a_panel_needs_one_file_or_dir_that_exists() {
        let text = "[panels.a]\n\n[panels.b]\nfile = \"missing.toml\"\n\n[panels.c]\ndir = \"no-such-dir\"\n\n[panels.\"bad name\"]\nfile = \"x.toml\"\n";
        let found = parse_site_with(Path::new("site.toml"), text, &|_: &Path| {
            Err(std::io::Error::from(std::io::ErrorKind::NotFound))
        })
        .expect_err("all wrong")
        .to_string();
        assert!(
            found.contains("site.toml:1:9: panel `a` needs exactly one of `file"),
            "{found}"
        );
        assert!(
            found.contains("site.toml:4:8: cannot read panel page missing.toml:"),
            "{found}"
        );
        assert!(
            found.contains("site.toml:7:7: panel directory no-such-dir has no index.html"),
            "{found}"
        );
        assert!(
            found.contains("site.toml:9:9: panel name `bad name` may use only letters"),
            "{found}"
        );
    }
}
