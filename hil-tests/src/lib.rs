//! Hardware-in-the-loop checks: the real gateway against the real devices of a rack.
//!
//! The rack file (named by [`CONFIG_ENV`]) lists devices per family. For each device the
//! harness starts a gateway on loopback with that device, connects as a panel over
//! WebSocket, and checks what a panel relies on. Families with no devices print a SKIP
//! line, so a partial rack still gives a clear report.

use std::collections::BTreeMap;
use std::io::Write;
use std::path::Path;
use std::time::Duration;

use anyhow::Context;
use avgate::Gateway;
use avgate::config::parse_site;
use futures_util::{SinkExt, StreamExt};
use serde::Deserialize;
use serde_json::{Value, json};
use tokio::time::{Instant, timeout};
use tokio_tungstenite::tungstenite::Message;

/// The environment variable naming the rack file.
pub const CONFIG_ENV: &str = "AVGATE_HIL_CONFIG";

/// Real projectors answer slowly (1–2 s per command is normal) and warm up for a minute.
const READ_DEADLINE: Duration = Duration::from_secs(30);
const WARM_UP_DEADLINE: Duration = Duration::from_secs(120);

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Rack {
    #[serde(default)]
    pub pjlink: Vec<PjlinkDevice>,
    #[serde(default)]
    pub extron: Vec<ExtronDevice>,
    #[serde(default)]
    pub mdc: Vec<MdcDevice>,
    #[serde(default)]
    pub visca: Vec<ViscaDevice>,
    #[serde(default)]
    pub modbus: Vec<ModbusDevice>,
    #[serde(default)]
    pub scripted: Vec<ScriptedDevice>,
    #[serde(default)]
    pub qsys: Vec<QsysDevice>,
}

/// A Q-SYS Core on QRC (TCP 1710), with a profile naming controls of its design.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct QsysDevice {
    pub name: String,
    /// A profile with `driver = "qsys"` whose controls the design has: `qsys-core`, or
    /// one of your own found in `profile_dirs`.
    #[serde(default = "default_qsys_profile")]
    pub profile: String,
    #[serde(default)]
    pub profile_dirs: Vec<String>,
    pub address: String,
    /// The password of the design's user (`user` in the profile), if it has users.
    pub password: Option<String>,
    /// Whether the checks may set the first writable number control to the value it
    /// already has.
    #[serde(default)]
    pub allow_control: bool,
}

fn default_qsys_profile() -> String {
    "qsys-core".into()
}

/// A device of a scripted family (Kramer, Shure, Tesira, NEC, Videohub, or a profile of
/// your own with `driver = "scripted"`).
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ScriptedDevice {
    pub name: String,
    /// A built-in scripted profile, or one found in `profile_dirs`.
    pub profile: String,
    #[serde(default)]
    pub profile_dirs: Vec<String>,
    pub address: Option<String>,
    pub serial_port: Option<String>,
    /// Whether the checks may write a value back (the one it already has) with the
    /// family's usual command (a route, a gain, a volume).
    #[serde(default)]
    pub allow_control: bool,
}

/// A Samsung display on MDC.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct MdcDevice {
    pub name: String,
    #[serde(default = "default_mdc_profile")]
    pub profile: String,
    /// On the network (TCP 1515)...
    pub address: Option<String>,
    /// ...or on RS-232.
    pub serial_port: Option<String>,
    /// The display's MDC id (0-254; many displays ship with 0 or 1).
    pub display_id: Option<u8>,
    /// Whether the checks may set the volume (to the value it already has).
    #[serde(default)]
    pub allow_control: bool,
}

fn default_mdc_profile() -> String {
    "samsung-mdc-display".into()
}

/// A PTZ camera on VISCA.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ViscaDevice {
    pub name: String,
    /// `sony-visca-camera` (VISCA over IP) by default; `sony-visca-serial` on RS-232.
    #[serde(default = "default_visca_profile")]
    pub profile: String,
    pub address: Option<String>,
    pub serial_port: Option<String>,
    /// The camera's address on a serial chain (1-7).
    pub camera_address: Option<u8>,
    /// Whether the checks may move the camera (a zoom to where it already is).
    #[serde(default)]
    pub allow_motion: bool,
}

fn default_visca_profile() -> String {
    "sony-visca-camera".into()
}

/// Any Modbus device with a profile: the checks read every point the profile maps.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ModbusDevice {
    pub name: String,
    /// The profile with the device's register map (its directory in `profile_dirs`).
    pub profile: String,
    /// Directories to look for the profile in, relative to the rack file's directory.
    #[serde(default)]
    pub profile_dirs: Vec<String>,
    pub address: Option<String>,
    pub serial_port: Option<String>,
    /// The unit id (1-247).
    pub unit: Option<u8>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ExtronDevice {
    pub name: String,
    /// A profile name (default `extron-sis-switcher`), so the checks know the unit's size.
    #[serde(default = "default_extron_profile")]
    pub profile: String,
    /// On the network (Telnet)...
    pub address: Option<String>,
    /// ...or on RS-232.
    pub serial_port: Option<String>,
    pub password: Option<String>,
    /// Whether the checks may re-tie output 1's current input (a visible blink on some
    /// units).
    #[serde(default)]
    pub allow_routing: bool,
}

fn default_extron_profile() -> String {
    "extron-sis-switcher".into()
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct PjlinkDevice {
    pub name: String,
    pub address: String,
    pub password: Option<String>,
    /// Whether the checks may turn the projector on.
    #[serde(default)]
    pub allow_power: bool,
}

#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub struct Report {
    pub passed: usize,
    pub failed: usize,
    pub skipped: usize,
}

impl Report {
    fn line(
        &mut self,
        out: &mut dyn Write,
        device: &str,
        check: &str,
        result: Result<Option<String>, String>,
    ) {
        let _ = match result {
            Ok(None) => {
                self.passed += 1;
                writeln!(out, "PASS {device} {check}")
            }
            Ok(Some(why)) => {
                self.skipped += 1;
                writeln!(out, "SKIP {device} {check}: {why}")
            }
            Err(why) => {
                self.failed += 1;
                writeln!(out, "FAIL {device} {check}: {why}")
            }
        };
    }
}

/// Reads the rack file and runs every check, writing one line per check to `out`.
pub async fn run_file(path: &Path, out: &mut dyn Write) -> anyhow::Result<Report> {
    let text = std::fs::read_to_string(path)
        .with_context(|| format!("cannot read rack file {}", path.display()))?;
    let mut rack: Rack =
        toml::from_str(&text).map_err(|e| anyhow::anyhow!("{}: {e}", path.display()))?;
    // Profile directories are written relative to the rack file, wherever it is run from.
    let base = path.parent().unwrap_or(Path::new("."));
    let profile_dirs = rack
        .modbus
        .iter_mut()
        .map(|d| &mut d.profile_dirs)
        .chain(rack.qsys.iter_mut().map(|d| &mut d.profile_dirs))
        .chain(rack.scripted.iter_mut().map(|d| &mut d.profile_dirs));
    for dirs in profile_dirs {
        for dir in dirs {
            *dir = base.join(&*dir).display().to_string();
        }
    }
    Ok(run(&rack, out).await)
}

pub async fn run(rack: &Rack, out: &mut dyn Write) -> Report {
    let mut report = Report::default();
    if rack.pjlink.is_empty() {
        report.line(
            out,
            "pjlink",
            "all",
            Ok(Some("no [[pjlink]] devices in the rack file".into())),
        );
    }
    for device in &rack.pjlink {
        check_pjlink(device, &mut report, out).await;
    }
    if rack.extron.is_empty() {
        report.line(
            out,
            "extron",
            "all",
            Ok(Some("no [[extron]] devices in the rack file".into())),
        );
    }
    for device in &rack.extron {
        check_extron(device, &mut report, out).await;
    }
    if rack.mdc.is_empty() {
        report.line(
            out,
            "mdc",
            "all",
            Ok(Some("no [[mdc]] devices in the rack file".into())),
        );
    }
    for device in &rack.mdc {
        check_mdc(device, &mut report, out).await;
    }
    if rack.visca.is_empty() {
        report.line(
            out,
            "visca",
            "all",
            Ok(Some("no [[visca]] devices in the rack file".into())),
        );
    }
    for device in &rack.visca {
        check_visca(device, &mut report, out).await;
    }
    if rack.modbus.is_empty() {
        report.line(
            out,
            "modbus",
            "all",
            Ok(Some("no [[modbus]] devices in the rack file".into())),
        );
    }
    for device in &rack.modbus {
        check_modbus(device, &mut report, out).await;
    }
    if rack.scripted.is_empty() {
        report.line(
            out,
            "scripted",
            "all",
            Ok(Some("no [[scripted]] devices in the rack file".into())),
        );
    }
    for device in &rack.scripted {
        check_scripted(device, &mut report, out).await;
    }
    if rack.qsys.is_empty() {
        report.line(
            out,
            "qsys",
            "all",
            Ok(Some("no [[qsys]] devices in the rack file".into())),
        );
    }
    for device in &rack.qsys {
        check_qsys(device, &mut report, out).await;
    }
    report
}

/// Every control the profile names reads through the change group; with
/// `allow_control`, the first writable number control is set to the value it has.
async fn check_qsys(device: &QsysDevice, report: &mut Report, out: &mut dyn Write) {
    let name = device.name.as_str();
    let dut = device_toml(
        &device.profile,
        Some(&device.address),
        None,
        device.password.as_deref(),
    );
    let top = profile_dirs_line(&device.profile_dirs);
    let site = format!("{top}[devices.dut]\n{dut}");
    let (points, writable) = match parse_site(Path::new("hil-site.toml"), &site) {
        Ok(site) => {
            let profile = &site.devices[0].profile;
            let points: Vec<String> = profile.points.keys().cloned().collect();
            // A number control is written back most safely: the same value, no toggle.
            let writable = profile
                .commands
                .iter()
                .find(|(_, spec)| {
                    spec.args
                        .get("value")
                        .is_some_and(|arg| arg.kind == avgate_drivers::ArgType::Number)
                })
                .and_then(|(command, _)| {
                    let point = command.strip_prefix(avgate_drivers::qsys::SET_PREFIX)?;
                    Some((command.clone(), point.to_string()))
                });
            (points, writable)
        }
        Err(e) => {
            report.line(out, name, "profile", Err(e.to_string()));
            return;
        }
    };
    let Some((gateway, mut panel)) = connect_dut_with(name, &top, &dut, report, out).await else {
        return;
    };
    let points: Vec<&str> = points.iter().map(String::as_str).collect();
    check_points(&mut panel, name, &points, report, out).await;
    let result = match writable {
        None => Ok(Some(format!(
            "profile {} has no writable number control",
            device.profile
        ))),
        Some(_) if !device.allow_control => {
            Ok(Some("allow_control = false for this device".into()))
        }
        Some((command, point)) => match panel.points.get(&point).cloned() {
            Some(value) => panel
                .command(&command, json!({ "value": value }))
                .await
                .map(|_| None),
            None => Err(format!("`{point}` is unknown")),
        },
    };
    report.line(out, name, "write back", result);
    gateway.shutdown().await;
}

/// For each built-in scripted family, a write-back that nobody in the room notices: the
/// point read, the command, its value argument and the arguments that name the target.
const SCRIPTED_REWRITES: &[(&str, &str, &str, &str, &str)] = &[
    (
        "kramer-protocol-3000",
        "route.1",
        "route",
        "input",
        r#"{"output": 1}"#,
    ),
    (
        "shure-ulxd-receiver",
        "gain.1",
        "gain",
        "gain",
        r#"{"channel": 1}"#,
    ),
    (
        "biamp-tesira",
        "level.1",
        "level",
        "level",
        r#"{"channel": 1}"#,
    ),
    ("nec-display", "volume", "volume", "volume", "{}"),
    (
        "blackmagic-videohub",
        "route.1",
        "route",
        "input",
        r#"{"output": 1}"#,
    ),
];

async fn check_scripted(device: &ScriptedDevice, report: &mut Report, out: &mut dyn Write) {
    let name = device.name.as_str();
    let dut = device_toml(
        &device.profile,
        device.address.as_deref(),
        device.serial_port.as_deref(),
        None,
    );
    let top = profile_dirs_line(&device.profile_dirs);
    // Every point the profile declares; a numbered one (`route.*`) as its first.
    let site = format!("{top}[devices.dut]\n{dut}");
    let points: Vec<String> = match parse_site(Path::new("hil-site.toml"), &site) {
        Ok(site) => site.devices[0]
            .profile
            .points
            .keys()
            .map(|p| p.replace('*', "1"))
            .collect(),
        Err(e) => {
            report.line(out, name, "profile", Err(e.to_string()));
            return;
        }
    };
    let Some((gateway, mut panel)) = connect_dut_with(name, &top, &dut, report, out).await else {
        return;
    };
    let points: Vec<&str> = points.iter().map(String::as_str).collect();
    check_points(&mut panel, name, &points, report, out).await;
    let rewrite = SCRIPTED_REWRITES
        .iter()
        .find(|(profile, ..)| *profile == device.profile);
    let result = match rewrite {
        None => Ok(Some(format!(
            "no write-back is known for profile {}",
            device.profile
        ))),
        Some(_) if !device.allow_control => {
            Ok(Some("allow_control = false for this device".into()))
        }
        Some((_, point, command, arg, target)) => match panel.points.get(*point).cloned() {
            Some(value) => {
                let mut args: Value = serde_json::from_str(target).expect("valid JSON");
                args[*arg] = value;
                panel.command(command, args).await.map(|_| None)
            }
            None => Err(format!("`{point}` is unknown")),
        },
    };
    report.line(out, name, "write back", result);
    gateway.shutdown().await;
}

/// Starts a gateway with the device under test as `dut`, connects a panel and runs the
/// `connect` check. `None` when there is nothing more to check.
async fn connect_dut(
    name: &str,
    device: &str,
    report: &mut Report,
    out: &mut dyn Write,
) -> Option<(Gateway, Panel)> {
    connect_dut_with(name, "", device, report, out).await
}

/// [`connect_dut`] with lines for the top of the site file (`profile_dirs`).
async fn connect_dut_with(
    name: &str,
    top: &str,
    device: &str,
    report: &mut Report,
    out: &mut dyn Write,
) -> Option<(Gateway, Panel)> {
    let site = format!(
        "{top}[server]\nlisten = \"127.0.0.1:0\"\n[journal]\ndurable = false\n[devices.dut]\n{device}"
    );
    let gateway = match parse_site(Path::new("hil-site.toml"), &site) {
        Ok(site) => Gateway::start(site).await.map_err(|e| e.to_string()),
        Err(e) => Err(e.to_string()),
    };
    let gateway = match gateway {
        Ok(g) => g,
        Err(why) => {
            report.line(out, name, "gateway", Err(why));
            return None;
        }
    };
    let mut panel = match Panel::connect(&gateway).await {
        Ok(p) => p,
        Err(why) => {
            report.line(out, name, "panel", Err(why));
            gateway.shutdown().await;
            return None;
        }
    };
    // The first attempt decides: online, or an error that says why not.
    let _ = panel
        .wait(READ_DEADLINE, |s| s.online || s.error.is_some())
        .await;
    let result = match (&panel.online, &panel.error) {
        (true, _) => Ok(None),
        (false, Some(error)) => Err(error.clone()),
        (false, None) => Err(format!("no answer within {READ_DEADLINE:?}")),
    };
    report.line(out, name, "connect", result);
    if !panel.online {
        gateway.shutdown().await;
        return None;
    }
    Some((gateway, panel))
}

/// The site lines for a device's profile, link and password.
fn device_toml(
    profile: &str,
    address: Option<&str>,
    serial_port: Option<&str>,
    password: Option<&str>,
) -> String {
    let quote = |s: &str| toml::Value::String(s.to_string()).to_string();
    let mut lines = format!("profile = {}\n", quote(profile));
    if let Some(address) = address {
        lines += &format!("address = {}\n", quote(address));
    }
    if let Some(port) = serial_port {
        lines += &format!("serial_port = {}\n", quote(port));
    }
    if let Some(password) = password {
        lines += &format!("password = {}\n", quote(password));
    }
    lines
}

async fn check_pjlink(device: &PjlinkDevice, report: &mut Report, out: &mut dyn Write) {
    let name = device.name.as_str();
    let dut = device_toml(
        "pjlink-projector",
        Some(&device.address),
        None,
        device.password.as_deref(),
    );
    let Some((gateway, mut panel)) = connect_dut(name, &dut, report, out).await else {
        return;
    };

    for (check, point) in [
        ("power", "power"),
        ("input", "input"),
        ("inputs", "inputs"),
        ("errors", "errors"),
        ("info", "name"),
    ] {
        let read = panel
            .wait(READ_DEADLINE, |s| s.points.contains_key(point))
            .await;
        let result = read
            .map(|_| None)
            .map_err(|_| format!("no `{point}` within {READ_DEADLINE:?}"));
        report.line(
            out,
            name,
            check,
            result.and_then(|ok| validate(point, &panel.points[point]).map(|_| ok)),
        );
    }
    let lamp = panel
        .wait(READ_DEADLINE, |s| s.points.contains_key("lamps"))
        .await;
    report.line(
        out,
        name,
        "lamp",
        Ok(lamp
            .err()
            .map(|_| "no lamp reported (laser or LED light source?)".to_string())),
    );

    // Re-selecting the current input changes nothing on the projector but exercises the
    // whole command path: accepted, the device's OK, the read-back, the result.
    let result = match panel
        .points
        .get("input")
        .and_then(Value::as_str)
        .map(str::to_string)
    {
        Some(current) if panel.points.get("power") == Some(&json!("on")) => panel
            .command("input", json!({"source": current}))
            .await
            .map(|_| None),
        _ => Ok(Some(
            "projector is not on (inputs can only be selected when on)".into(),
        )),
    };
    report.line(out, name, "select input", result);

    let result = if !device.allow_power {
        Ok(Some("allow_power = false for this device".to_string()))
    } else {
        match panel.command("power", json!({"on": true})).await {
            Ok(()) => panel
                .wait(WARM_UP_DEADLINE, |s| {
                    s.points.get("power") == Some(&json!("on"))
                })
                .await
                .map(|_| None)
                .map_err(|_| format!("not on within {WARM_UP_DEADLINE:?}")),
            Err(why) => Err(why),
        }
    };
    report.line(out, name, "power on", result);
    gateway.shutdown().await;
}

async fn check_extron(device: &ExtronDevice, report: &mut Report, out: &mut dyn Write) {
    let name = device.name.as_str();
    let dut = device_toml(
        &device.profile,
        device.address.as_deref(),
        device.serial_port.as_deref(),
        device.password.as_deref(),
    );
    let Some((gateway, mut panel)) = connect_dut(name, &dut, report, out).await else {
        return;
    };

    let routes = panel
        .wait(READ_DEADLINE, |s| s.points.contains_key("route.1"))
        .await;
    let result = match (routes, panel.points.get("route.1")) {
        (Ok(()), Some(v)) if v.is_u64() => Ok(None),
        (Ok(()), Some(v)) => Err(format!("unexpected `route.1` value {v}")),
        _ => Err(format!("no `route.1` within {READ_DEADLINE:?}")),
    };
    report.line(out, name, "routes", result);
    let info = panel
        .wait(READ_DEADLINE, |s| s.points.contains_key("firmware"))
        .await;
    report.line(
        out,
        name,
        "info",
        info.map(|_| None)
            .map_err(|_| format!("no `firmware` within {READ_DEADLINE:?}")),
    );

    let result = match panel.points.get("route.1").and_then(Value::as_u64) {
        _ if !device.allow_routing => Ok(Some("allow_routing = false for this device".to_string())),
        Some(input) => panel
            .command("route", json!({"input": input, "output": 1}))
            .await
            .map(|_| None),
        None => Err("output 1's route is unknown".to_string()),
    };
    report.line(out, name, "re-tie output 1", result);
    gateway.shutdown().await;
}

/// Waits for each point and reports it as one check named after it.
async fn check_points(
    panel: &mut Panel,
    name: &str,
    points: &[&str],
    report: &mut Report,
    out: &mut dyn Write,
) {
    for &point in points {
        let read = panel
            .wait(READ_DEADLINE, |s| s.points.contains_key(point))
            .await;
        let result = read
            .map(|_| None)
            .map_err(|_| format!("no `{point}` within {READ_DEADLINE:?}"))
            .and_then(|ok| validate(point, &panel.points[point]).map(|_| ok));
        report.line(out, name, point, result);
    }
}

/// `overrides.options` lines for a device's address on its line.
fn options_toml(key: &str, value: Option<u8>) -> String {
    value.map_or(String::new(), |v| {
        format!("[devices.dut.overrides]\noptions = {{ {key} = {v} }}\n")
    })
}

/// A command that writes back a value the device already has: it exercises the whole
/// command path (accepted, the device's answer, the read-back, the result) without anyone
/// in the room noticing.
struct Rewrite {
    check: &'static str,
    /// Whether the rack file allows it, and the SKIP reason when not.
    allowed: Result<(), &'static str>,
    /// The point whose current value is written back, and the command and argument.
    point: &'static str,
    command: &'static str,
    arg: &'static str,
    /// Only while `power` is `on` (cameras refuse motion in standby).
    needs_power: bool,
}

/// Connects, reads `points`, then tries `rewrite`.
async fn check_device(
    name: &str,
    dut: &str,
    points: &[&str],
    rewrite: Rewrite,
    report: &mut Report,
    out: &mut dyn Write,
) {
    let Some((gateway, mut panel)) = connect_dut(name, dut, report, out).await else {
        return;
    };
    check_points(&mut panel, name, points, report, out).await;
    let current = panel.points.get(rewrite.point).cloned();
    let result = match (rewrite.allowed, current) {
        (Err(why), _) => Ok(Some(why.to_string())),
        _ if rewrite.needs_power && panel.points.get("power") != Some(&json!("on")) => {
            Ok(Some("the device is in standby".into()))
        }
        (Ok(()), Some(value)) => panel
            .command(rewrite.command, json!({ rewrite.arg: value }))
            .await
            .map(|_| None),
        (Ok(()), None) => Err(format!("`{}` is unknown", rewrite.point)),
    };
    report.line(out, name, rewrite.check, result);
    gateway.shutdown().await;
}

async fn check_mdc(device: &MdcDevice, report: &mut Report, out: &mut dyn Write) {
    let dut = device_toml(
        &device.profile,
        device.address.as_deref(),
        device.serial_port.as_deref(),
        None,
    ) + &options_toml("display_id", device.display_id);
    let rewrite = Rewrite {
        check: "set volume",
        allowed: device
            .allow_control
            .then_some(())
            .ok_or("allow_control = false for this device"),
        point: "volume",
        command: "volume",
        arg: "level",
        needs_power: false,
    };
    let points = ["power", "volume", "mute", "input"];
    check_device(&device.name, &dut, &points, rewrite, report, out).await;
}

async fn check_visca(device: &ViscaDevice, report: &mut Report, out: &mut dyn Write) {
    let dut = device_toml(
        &device.profile,
        device.address.as_deref(),
        device.serial_port.as_deref(),
        None,
    ) + &options_toml("address", device.camera_address);
    let rewrite = Rewrite {
        check: "zoom to current",
        allowed: device
            .allow_motion
            .then_some(())
            .ok_or("allow_motion = false for this device"),
        point: "zoom",
        command: "zoom_to",
        arg: "position",
        needs_power: true,
    };
    let points = ["power", "zoom", "pan", "tilt"];
    check_device(&device.name, &dut, &points, rewrite, report, out).await;
}

async fn check_modbus(device: &ModbusDevice, report: &mut Report, out: &mut dyn Write) {
    let name = device.name.as_str();
    let dut = device_toml(
        &device.profile,
        device.address.as_deref(),
        device.serial_port.as_deref(),
        None,
    ) + &options_toml("unit", device.unit);
    let top = profile_dirs_line(&device.profile_dirs);
    // The points to read are the ones the profile maps.
    let site = format!("{top}[devices.dut]\n{dut}");
    let points: Vec<String> = match parse_site(Path::new("hil-site.toml"), &site) {
        Ok(site) => site.devices[0]
            .profile
            .points
            .keys()
            .filter(|p| !p.contains('*'))
            .cloned()
            .collect(),
        Err(e) => {
            report.line(out, name, "profile", Err(e.to_string()));
            return;
        }
    };
    let Some((gateway, mut panel)) = connect_dut_with(name, &top, &dut, report, out).await else {
        return;
    };
    let points: Vec<&str> = points.iter().map(String::as_str).collect();
    check_points(&mut panel, name, &points, report, out).await;
    gateway.shutdown().await;
}

/// Checks a point's value has the shape panels rely on.
fn validate(point: &str, value: &Value) -> Result<(), String> {
    let ok = match point {
        "power" => value
            .as_str()
            .is_some_and(|v| ["off", "on", "warming", "cooling"].contains(&v)),
        "errors" => value.as_object().is_some_and(|o| o.len() == 6),
        "inputs" => value.as_array().is_some_and(|a| !a.is_empty()),
        _ => !value.is_null(),
    };
    if ok {
        Ok(())
    } else {
        Err(format!("unexpected `{point}` value {value}"))
    }
}

/// A minimal panel that tracks one device's state from the event stream.
struct Panel {
    ws: tokio_tungstenite::WebSocketStream<
        tokio_tungstenite::MaybeTlsStream<tokio::net::TcpStream>,
    >,
    online: bool,
    error: Option<String>,
    points: BTreeMap<String, Value>,
    next_id: u64,
    results: BTreeMap<u64, Value>,
}

impl Panel {
    async fn connect(gateway: &Gateway) -> Result<Panel, String> {
        let url = format!("ws://{}/ws", gateway.local_addr());
        let (ws, _) = tokio_tungstenite::connect_async(url)
            .await
            .map_err(|e| e.to_string())?;
        let mut panel = Panel {
            ws,
            online: false,
            error: None,
            points: BTreeMap::new(),
            next_id: 1,
            results: BTreeMap::new(),
        };
        panel
            .send(json!({"type": "hello", "client": "hil"}))
            .await?;
        Ok(panel)
    }

    async fn send(&mut self, message: Value) -> Result<(), String> {
        self.ws
            .send(Message::Text(message.to_string().into()))
            .await
            .map_err(|e| e.to_string())
    }

    /// Reads messages until `done` holds for the state, or the deadline passes.
    async fn wait(&mut self, deadline: Duration, done: impl Fn(&Panel) -> bool) -> Result<(), ()> {
        let until = Instant::now() + deadline;
        while !done(self) {
            let left = until.saturating_duration_since(Instant::now());
            match timeout(left, self.ws.next()).await {
                Ok(Some(Ok(Message::Text(text)))) => self.apply(&text),
                Ok(Some(Ok(_))) => {}
                _ => return Err(()),
            }
        }
        Ok(())
    }

    fn apply(&mut self, text: &str) {
        let Ok(message) = serde_json::from_str::<Value>(text) else {
            return;
        };
        match message["type"].as_str() {
            Some("snapshot") => {
                let device = &message["devices"]["dut"];
                self.online = device["online"] == true;
                self.error = device["error"].as_str().map(str::to_string);
                if let Some(points) = device["points"].as_object() {
                    self.points = points.iter().map(|(k, v)| (k.clone(), v.clone())).collect();
                }
            }
            Some("event") => match message["point"].as_str() {
                Some("online") => self.online = message["value"] == true,
                Some("error") => self.error = message["value"].as_str().map(str::to_string),
                Some(point) => {
                    self.points
                        .insert(point.to_string(), message["value"].clone());
                }
                None => {}
            },
            Some("result") => {
                if let Some(id) = message["id"].as_u64() {
                    self.results.insert(id, message);
                }
            }
            _ => {}
        }
    }

    /// Sends a command and waits for its result.
    async fn command(&mut self, command: &str, args: Value) -> Result<(), String> {
        let id = self.next_id;
        self.next_id += 1;
        self.send(
            json!({"type": "command", "id": id, "device": "dut", "command": command, "args": args}),
        )
        .await?;
        self.wait(READ_DEADLINE, |p| p.results.contains_key(&id))
            .await
            .map_err(|_| format!("no result for {command} within {READ_DEADLINE:?}"))?;
        let result = &self.results[&id];
        if result["ok"] == true {
            Ok(())
        } else {
            Err(format!("{command} failed: {}", result["error"]))
        }
    }
}

/// The site file's `profile_dirs = [...]` line for a rack entry's profile directories.
fn profile_dirs_line(dirs: &[String]) -> String {
    let dirs = toml::Value::Array(
        dirs.iter()
            .map(|d| toml::Value::String(d.clone()))
            .collect(),
    );
    format!("profile_dirs = {dirs}\n")
}
