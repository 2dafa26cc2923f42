//! Subscriptions: a panel that asks for some devices and points gets just those, in
//! snapshots, live and on resume, and can still tell a gap from a filtered-out event.
//!
//! Events are recorded straight into the journal; the devices are never reached.

mod common;

use common::*;
use serde_json::{Value, json};

fn site() -> String {
    let mut toml =
        "[server]\nlisten = \"127.0.0.1:0\"\nping_interval = \"1s\"\n[journal]\ndurable = false\n"
            .to_string();
    for id in ["proj-1", "proj-2", "switcher"] {
        toml.push_str(&format!(
            "[devices.{id}]\nprofile = \"pjlink-projector\"\naddress = \"127.0.0.1:9\"\n"
        ));
    }
    toml
}

/// A device's `online` and `error` reach every panel that watches any of its points.
fn presence(point: &str) -> bool {
    point == "online" || point == "error"
}

fn strings(value: &Value) -> Vec<String> {
    value
        .as_array()
        .expect("array")
        .iter()
        .map(|v| v.as_str().expect("string").to_string())
        .collect()
}

/// Reads until the panel is told about `seq` (by an event or a `position`), checking that
/// every event on the way is one `wanted` accepts; returns the events.
async fn events_through(
    panel: &mut Panel,
    seq: u64,
    wanted: impl Fn(&str, &str) -> bool,
) -> Vec<(String, String, Value)> {
    let mut seen = Vec::new();
    while panel.at.is_none_or(|at| at < seq) {
        let message = panel.next().await;
        if message["type"] == "event" {
            let device = message["device"].as_str().unwrap().to_string();
            let point = message["point"].as_str().unwrap().to_string();
            assert!(wanted(&device, &point), "not subscribed: {message}");
            seen.push((device, point, message["value"].clone()));
        }
    }
    assert_eq!(panel.at, Some(seq), "told exactly up to {seq}");
    seen
}

#[tokio::test]
async fn a_point_pattern_gets_that_point_and_presence_of_every_device() {
    let gw = gateway(&site()).await;
    let journal = gw.journal();
    journal.record("proj-1", "input", json!("hdmi1"));
    journal.record("proj-1", "power", json!("off"));
    let (mut panel, _) =
        Panel::hello(&gw, json!({"type": "hello", "subscribe": ["*/power"]})).await;
    panel.filtered = true;
    let snapshot = panel.until("snapshot", |m| m["type"] == "snapshot").await;
    let proj = &snapshot["devices"]["proj-1"];
    assert_eq!(proj["points"]["power"], "off", "{snapshot}");
    assert!(
        proj["points"].get("input").is_none(),
        "input is not subscribed: {snapshot}"
    );
    assert!(
        proj.get("online").is_some(),
        "presence always comes along: {snapshot}"
    );

    journal.record("proj-1", "input", json!("hdmi2"));
    journal.record("proj-2", "power", json!("warming"));
    journal.record("switcher", "lamp_hours", json!(12));
    journal.set_online("proj-1", true, None);
    let last = journal.record("proj-1", "power", json!("on")).unwrap();
    // Ends on a skipped event, so the panel is told where it stands by a `position`.
    let head = journal.record("proj-2", "input", json!("rgb1")).unwrap();

    let seen = events_through(&mut panel, head, |_, point| {
        point == "power" || presence(point)
    })
    .await;
    let power: Vec<_> = seen.iter().filter(|(_, p, _)| p == "power").collect();
    assert_eq!(
        power,
        [
            &("proj-2".to_string(), "power".to_string(), json!("warming")),
            &("proj-1".to_string(), "power".to_string(), json!("on")),
        ]
    );
    assert!(
        seen.iter()
            .any(|(d, p, v)| d == "proj-1" && p == "online" && *v == json!(true)),
        "online reached a power-only panel: {seen:?}"
    );
    assert!(panel.seqs.contains(&last));
    assert!(
        !panel.seqs.contains(&head),
        "the last event was not subscribed"
    );
    gw.shutdown().await;
}

#[tokio::test]
async fn subscribe_and_unsubscribe_confirm_and_send_what_the_patterns_cover_now() {
    let gw = gateway(&site()).await;
    let journal = gw.journal();
    journal.record("proj-1", "power", json!("on"));
    journal.record("switcher", "input", json!("hdmi3"));
    let (mut panel, _) = Panel::hello(&gw, json!({"type": "hello", "subscribe": ["proj-1"]})).await;
    panel.filtered = true;
    let first = panel.until("snapshot", |m| m["type"] == "snapshot").await;
    let devices: Vec<_> = first["devices"].as_object().unwrap().keys().collect();
    assert_eq!(devices, ["proj-1"], "{first}");

    panel
        .send(json!({"type": "subscribe", "patterns": ["switcher/input", "proj-1"]}))
        .await;
    let subscribed = panel
        .until("subscribed", |m| m["type"] == "subscribed")
        .await;
    assert_eq!(
        strings(&subscribed["patterns"]),
        ["proj-1", "switcher/input"]
    );
    let snapshot = panel.next().await;
    assert_eq!(snapshot["type"], "snapshot", "{snapshot}");
    assert_eq!(snapshot["reason"], "subscription");
    assert_eq!(
        snapshot["devices"]["switcher"]["points"],
        json!({"input": "hdmi3"})
    );
    assert_eq!(snapshot["devices"]["proj-1"]["points"]["power"], "on");

    panel
        .send(json!({"type": "unsubscribe", "patterns": ["proj-1"]}))
        .await;
    let subscribed = panel
        .until("subscribed", |m| m["type"] == "subscribed")
        .await;
    assert_eq!(strings(&subscribed["patterns"]), ["switcher/input"]);
    let snapshot = panel.next().await;
    let devices: Vec<_> = snapshot["devices"].as_object().unwrap().keys().collect();
    assert_eq!(devices, ["switcher"], "{snapshot}");

    // Live events follow the new patterns.
    journal.record("proj-1", "power", json!("cooling"));
    let head = journal.record("switcher", "input", json!("hdmi4")).unwrap();
    let seen = events_through(&mut panel, head, |d, p| {
        d == "switcher" && (p == "input" || presence(p))
    })
    .await;
    assert!(
        seen.iter().any(|(_, _, v)| *v == json!("hdmi4")),
        "{seen:?}"
    );
    gw.shutdown().await;
}

#[tokio::test]
async fn bad_patterns_are_refused_with_the_reason() {
    let gw = gateway(&site()).await;
    let (mut panel, _) = Panel::hello(&gw, json!({"type": "hello"})).await;
    panel.until("snapshot", |m| m["type"] == "snapshot").await;
    panel
        .send(json!({"type": "subscribe", "patterns": ["proj-1/power/extra"]}))
        .await;
    let error = panel.until("error", |m| m["type"] == "error").await;
    assert_eq!(error["code"], "invalid_message");
    assert!(
        error["message"].as_str().unwrap().contains("DEVICE/POINT"),
        "{error}"
    );

    // In hello, the panel is told why and may say hello again.
    let mut panel = Panel::connect(&gw).await;
    panel
        .send(json!({"type": "hello", "subscribe": ["proj 1"]}))
        .await;
    let error = panel.next().await;
    assert_eq!(error["type"], "error", "{error}");
    assert_eq!(error["code"], "invalid_message");
    panel
        .send(json!({"type": "hello", "subscribe": ["proj-1"]}))
        .await;
    assert_eq!(panel.next().await["type"], "welcome");
    gw.shutdown().await;
}

#[tokio::test]
async fn a_filtered_panel_resumes_from_its_position_with_only_its_missed_events() {
    let gw = gateway(&site()).await;
    let journal = gw.journal();
    let hello = json!({"type": "hello", "subscribe": ["proj-*/power"]});
    let (mut panel, welcome) = Panel::hello(&gw, hello).await;
    let epoch = welcome["epoch"].as_u64().unwrap();
    panel.filtered = true;
    panel.until("snapshot", |m| m["type"] == "snapshot").await;
    journal.record("proj-1", "power", json!("on"));
    let head = journal.record("switcher", "power", json!("on")).unwrap();
    events_through(&mut panel, head, |d, p| {
        d.starts_with("proj-") && (p == "power" || presence(p))
    })
    .await;
    let resume_from = panel.at.unwrap();
    panel.close().await;

    // Missed while away: some wanted, some not.
    let mut wanted = Vec::new();
    for i in 0..20 {
        let value = json!(format!("state-{i}"));
        journal.record("switcher", "power", value.clone());
        let seq = journal.record("proj-2", "power", value.clone()).unwrap();
        journal.record("proj-1", "input", value);
        wanted.push(seq);
    }
    let head = journal.head();

    let hello = json!({
        "type": "hello",
        "subscribe": ["proj-*/power"],
        "resume": {"epoch": epoch, "seq": resume_from},
    });
    let (mut panel, welcome) = Panel::hello(&gw, hello).await;
    assert_eq!(welcome["resumed"], true, "{welcome}");
    panel.filtered = true;
    panel.at = Some(resume_from);
    events_through(&mut panel, head, |d, p| {
        d.starts_with("proj-") && (p == "power" || presence(p))
    })
    .await;
    let replayed: Vec<u64> = panel
        .seqs
        .iter()
        .copied()
        .filter(|s| wanted.contains(s))
        .collect();
    assert_eq!(replayed, wanted, "every missed power event, in order, once");
    gw.shutdown().await;
}
