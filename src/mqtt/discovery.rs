//! Home Assistant MQTT discovery: one retained config message per entity, built from the
//! devices' profiles, and the timing of announcing them again after Home Assistant starts.
//!
//! The common vocabulary maps onto Home Assistant's entities: `power` and `mute` (with an
//! `on` argument) are switches, `input` is a select, `volume` (with a `level` argument) a
//! number; every other scalar point is a sensor (a binary sensor for a bool). Controls
//! appear only when the bridge takes commands; without commands every point is a sensor.
//! The command topics are the bridge's own `<prefix>/<device>/<command>/set`.

use std::time::Duration;

use serde_json::{Map, Value, json};
use tokio::time::Instant;

use super::MqttSettings;
use crate::config::profile::{ArgType, PointType, Profile};
use crate::config::site::DeviceConfig;

/// How long after Home Assistant's birth message the bridge announces again: Home
/// Assistant subscribes to discovery only once its MQTT integration is up, a moment after
/// it says `online`, and a burst of births (a restart loop) is answered once.
pub const ANNOUNCE_DELAY: Duration = Duration::from_secs(5);

/// One retained discovery config.
#[derive(Debug, Clone, PartialEq)]
pub struct Announcement {
    pub topic: String,
    pub payload: Value,
}

/// Every discovery config for `devices`, under `settings.discovery` (none when off).
pub fn announcements(settings: &MqttSettings, devices: &[DeviceConfig]) -> Vec<Announcement> {
    let Some(discovery_prefix) = &settings.discovery else {
        return Vec::new();
    };
    let node = node_id(&settings.prefix);
    let mut out = Vec::new();
    for device in devices {
        let entities = entities(settings, &device.id, &device.profile, &device.options);
        for entity in entities {
            let object_id = format!("{}_{}", sanitize(&device.id), sanitize(&entity.key));
            let mut payload = entity.config;
            payload.insert("name".into(), json!(entity.name));
            payload.insert("unique_id".into(), json!(format!("{node}_{object_id}")));
            payload.insert("object_id".into(), json!(format!("{node}_{object_id}")));
            payload.insert(
                "availability".into(),
                json!([
                    { "topic": super::status_topic(settings) },
                    { "topic": format!("{}/{}/availability", settings.prefix, device.id) },
                ]),
            );
            payload.insert("availability_mode".into(), json!("all"));
            payload.insert("payload_available".into(), json!("online"));
            payload.insert("payload_not_available".into(), json!("offline"));
            payload.insert(
                "device".into(),
                json!({
                    "identifiers": [format!("{node}_{}", sanitize(&device.id))],
                    "name": device.name,
                    "model": device.profile.name,
                    "manufacturer": "avgate",
                }),
            );
            out.push(Announcement {
                topic: format!(
                    "{discovery_prefix}/{}/{node}/{object_id}/config",
                    entity.component
                ),
                payload: Value::Object(payload),
            });
        }
    }
    out
}

/// The topic Home Assistant announces itself on (`online` after it starts).
pub fn birth_topic(discovery_prefix: &str) -> String {
    format!("{discovery_prefix}/status")
}

struct Entity {
    component: &'static str,
    /// The point (or command) it stands for; part of its ids.
    key: String,
    name: String,
    config: Map<String, Value>,
}

fn entities(
    settings: &MqttSettings,
    device: &str,
    profile: &Profile,
    options: &Map<String, Value>,
) -> Vec<Entity> {
    let topic = |leaf: &str| format!("{}/{device}/{leaf}", settings.prefix);
    let controls = settings.commands.as_ref();
    let can = |command: &str| {
        controls.is_some_and(|identity| identity.scopes.can_control(device, command))
            && settings.publishes(device, command)
            && profile.commands.contains_key(command)
            && profile.points.contains_key(command)
    };
    let arg = |command: &str, name: &str| profile.commands.get(command)?.args.get(name);
    let mut taken = Vec::new();
    let mut out = Vec::new();

    // Power and mute are switches taking `{"on": bool}`.
    let switches = [
        // A projector warming up is on its way on: the switch shows on.
        (
            "power",
            "Power",
            "{{ 'ON' if value_json.value in ['on', 'warming', true] else 'OFF' }}",
        ),
        ("mute", "Mute", "{{ 'ON' if value_json.value else 'OFF' }}"),
    ];
    for (key, name, value_template) in switches {
        if can(key) && arg(key, "on").is_some_and(|a| a.kind == ArgType::Bool) {
            taken.push(key);
            out.push(Entity {
                component: "switch",
                key: key.into(),
                name: name.into(),
                config: object(json!({
                    "state_topic": topic(key),
                    "value_template": value_template,
                    "command_topic": topic(&format!("{key}/set")),
                    "payload_on": r#"{"on": true}"#,
                    "payload_off": r#"{"on": false}"#,
                    "state_on": "ON",
                    "state_off": "OFF",
                })),
            });
        }
    }
    if can("input")
        && let Some(source) = arg("input", "source")
    {
        let choices = input_choices(profile, options, &source.values);
        if !choices.is_empty() {
            taken.push("input");
            out.push(Entity {
                component: "select",
                key: "input".into(),
                name: "Input".into(),
                config: object(json!({
                    "state_topic": topic("input"),
                    "value_template": "{{ value_json.value }}",
                    "command_topic": topic("input/set"),
                    "command_template": r#"{"source": {{ value | tojson }}}"#,
                    "options": choices,
                })),
            });
        }
    }
    if can("volume")
        && let Some(level) = arg("volume", "level")
        && matches!(level.kind, ArgType::Integer | ArgType::Number)
    {
        taken.push("volume");
        let mut config = object(json!({
            "state_topic": topic("volume"),
            "value_template": "{{ value_json.value }}",
            "command_topic": topic("volume/set"),
            "command_template": r#"{"level": {{ value }}}"#,
            "min": level.min.unwrap_or(0.0),
            "max": level.max.unwrap_or(100.0),
            "step": if level.kind == ArgType::Integer { 1.0 } else { 0.1 },
        }));
        if let Some(unit) = profile.points.get("volume").and_then(|p| p.unit.clone()) {
            config.insert("unit_of_measurement".into(), json!(unit));
        }
        out.push(Entity {
            component: "number",
            key: "volume".into(),
            name: "Volume".into(),
            config,
        });
    }
    for (point, spec) in &profile.points {
        if taken.contains(&point.as_str()) || !settings.publishes(device, point) {
            continue;
        }
        let (component, template) = match spec.kind {
            PointType::Bool => ("binary_sensor", "{{ 'ON' if value_json.value else 'OFF' }}"),
            PointType::Integer | PointType::Number | PointType::String | PointType::Enum => {
                ("sensor", "{{ value_json.value }}")
            }
            // Lists and objects have no Home Assistant state; they stay on their topics.
            PointType::Array | PointType::Object => continue,
        };
        let mut config = object(json!({
            "state_topic": topic(point),
            "value_template": template,
        }));
        if let Some(unit) = &spec.unit {
            config.insert("unit_of_measurement".into(), json!(unit));
        }
        if spec.kind == PointType::Enum {
            config.insert("device_class".into(), json!("enum"));
            config.insert("options".into(), json!(spec.values));
        }
        out.push(Entity {
            component,
            key: point.clone(),
            name: title(point),
            config,
        });
    }
    out
}

/// The inputs a select offers: the command's enum values, else the `input` point's, else
/// the names of the device's `[options].inputs` map.
fn input_choices(
    profile: &Profile,
    options: &Map<String, Value>,
    declared: &[String],
) -> Vec<String> {
    if !declared.is_empty() {
        return declared.to_vec();
    }
    if let Some(point) = profile.points.get("input")
        && !point.values.is_empty()
    {
        return point.values.clone();
    }
    match options.get("inputs") {
        Some(Value::Object(names)) => names.keys().cloned().collect(),
        Some(Value::Array(names)) => names
            .iter()
            .filter_map(|n| n.as_str().map(str::to_string))
            .collect(),
        _ => Vec::new(),
    }
}

fn object(value: Value) -> Map<String, Value> {
    match value {
        Value::Object(map) => map,
        _ => unreachable!("built from an object literal"),
    }
}

/// Home Assistant's ids allow `[a-zA-Z0-9_-]`: everything else becomes `_`.
fn sanitize(text: &str) -> String {
    text.chars()
        .map(|c| {
            if c.is_ascii_alphanumeric() || c == '_' || c == '-' {
                c
            } else {
                '_'
            }
        })
        .collect()
}

/// Every discovery config this gateway may ever have published, current or not: what
/// the bridge reads back after connecting to clear the entities of devices and points
/// that are gone from the site.
pub fn own_configs_filter(discovery_prefix: &str, prefix: &str) -> String {
    format!("{discovery_prefix}/+/{}/+/config", node_id(prefix))
}

/// One gateway's node id: its topic prefix, which is unique on the broker.
fn node_id(prefix: &str) -> String {
    sanitize(prefix)
}

/// `lamp_hours` → `Lamp hours`.
fn title(point: &str) -> String {
    let words = point.replace('_', " ");
    let mut chars = words.chars();
    match chars.next() {
        Some(first) => first.to_uppercase().chain(chars).collect(),
        None => words,
    }
}

/// When to announce again: a birth message asks for it [`ANNOUNCE_DELAY`] later, and
/// births in the meantime push it back, so one announcement answers a burst.
#[derive(Debug, Default)]
pub struct Reannounce {
    due: Option<Instant>,
}

impl Reannounce {
    /// Home Assistant said `online` at `now`.
    pub fn birth(&mut self, now: Instant) {
        self.due = Some(now + ANNOUNCE_DELAY);
    }

    /// When the announcement is due, if one is.
    pub fn due(&self) -> Option<Instant> {
        self.due
    }

    /// Whether to announce at `now`; a `true` is given once per pending announcement.
    pub fn take(&mut self, now: Instant) -> bool {
        match self.due {
            Some(due) if due <= now => {
                self.due = None;
                true
            }
            _ => false,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::parse_site;
    use std::path::Path;

    fn site(mqtt: &str) -> crate::config::Site {
        let text = format!(
            "[devices.proj]\nprofile = \"pjlink-projector\"\naddress = \"192.0.2.7\"\n\
             [devices.display]\nprofile = \"samsung-mdc-display\"\naddress = \"192.0.2.8\"\nname = \"Wall display\"\n\
             [mqtt]\nbroker = \"mqtt://b\"\n{mqtt}"
        );
        parse_site(Path::new("room-101.toml"), &text).unwrap()
    }

    fn find<'a>(all: &'a [Announcement], topic: &str) -> &'a Value {
        &all.iter()
            .find(|a| a.topic == topic)
            .unwrap_or_else(|| {
                panic!(
                    "no {topic} in {:?}",
                    all.iter().map(|a| &a.topic).collect::<Vec<_>>()
                )
            })
            .payload
    }

    #[test]
    fn off_by_default() {
        let site = site("commands = true\n");
        assert!(announcements(site.mqtt.as_ref().unwrap(), &site.devices).is_empty());
    }

    #[test]
    fn the_vocabulary_becomes_switches_a_select_a_number_and_sensors() {
        let site = site("commands = true\ndiscovery = true\n");
        let all = announcements(site.mqtt.as_ref().unwrap(), &site.devices);
        let node = "avgate_room-101";

        let power = find(
            &all,
            &format!("homeassistant/switch/{node}/display_power/config"),
        );
        assert_eq!(power["command_topic"], "avgate/room-101/display/power/set");
        assert_eq!(power["state_topic"], "avgate/room-101/display/power");
        assert_eq!(power["payload_on"], r#"{"on": true}"#);
        assert_eq!(power["unique_id"], format!("{node}_display_power"));
        assert_eq!(power["device"]["name"], "Wall display");
        assert_eq!(
            power["device"]["identifiers"],
            json!([format!("{node}_display")])
        );
        assert_eq!(
            power["availability"],
            json!([{"topic": "avgate/room-101/status"}, {"topic": "avgate/room-101/display/availability"}])
        );

        let volume = find(
            &all,
            &format!("homeassistant/number/{node}/display_volume/config"),
        );
        assert_eq!(
            (volume["min"].as_f64(), volume["max"].as_f64()),
            (Some(0.0), Some(100.0))
        );
        assert_eq!(volume["command_template"], r#"{"level": {{ value }}}"#);
        find(
            &all,
            &format!("homeassistant/switch/{node}/display_mute/config"),
        );

        // PJLink's input names come from the profile's [options].inputs.
        let input = find(
            &all,
            &format!("homeassistant/select/{node}/proj_input/config"),
        );
        let options: Vec<&str> = input["options"]
            .as_array()
            .unwrap()
            .iter()
            .map(|o| o.as_str().unwrap())
            .collect();
        assert!(
            options.contains(&"hdmi1") && options.contains(&"network1"),
            "{options:?}"
        );

        let lamp = find(
            &all,
            &format!("homeassistant/sensor/{node}/proj_lamp_hours/config"),
        );
        assert_eq!(lamp["unit_of_measurement"], "h");
        assert!(lamp.get("command_topic").is_none());
        find(
            &all,
            &format!("homeassistant/binary_sensor/{node}/proj_video_mute/config"),
        );
        // Lists and objects are not entities.
        assert!(!all.iter().any(|a| a.topic.contains("proj_lamps/")));
        assert!(!all.iter().any(|a| a.topic.contains("proj_errors/")));
    }

    #[test]
    fn without_commands_or_scope_the_points_are_sensors() {
        let site = site("discovery = true\ndiscovery_prefix = \"ha\"\n");
        let all = announcements(site.mqtt.as_ref().unwrap(), &site.devices);
        assert!(!all.is_empty());
        assert!(
            all.iter().all(|a| a.payload.get("command_topic").is_none()),
            "{all:?}"
        );
        find(&all, "ha/sensor/avgate_room-101/display_power/config");
    }

    #[tokio::test(start_paused = true)]
    async fn a_birth_is_answered_once_after_the_delay_and_a_burst_once() {
        let mut reannounce = Reannounce::default();
        assert!(reannounce.due().is_none());
        let start = Instant::now();
        reannounce.birth(start);
        assert!(!reannounce.take(Instant::now()));
        tokio::time::advance(ANNOUNCE_DELAY / 2).await;
        // A second birth before the first was answered: one announcement, later.
        reannounce.birth(Instant::now());
        tokio::time::advance(ANNOUNCE_DELAY / 2).await;
        assert!(
            !reannounce.take(Instant::now()),
            "pushed back by the second birth"
        );
        tokio::time::sleep_until(reannounce.due().unwrap()).await;
        assert_eq!(Instant::now() - start, ANNOUNCE_DELAY * 3 / 2);
        assert!(reannounce.take(Instant::now()));
        assert!(!reannounce.take(Instant::now()), "once");
        assert!(reannounce.due().is_none());
    }
}
