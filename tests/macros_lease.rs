//! The room's control lease through the real gateway: two panels on one projector.

mod common;

use common::*;
use serde_json::{Value, json};

const ADMIN: &str =
    "[[auth.tokens]]\nname = \"ops\"\ntoken = \"ops-secret-01\"\nscopes = [\"admin\"]\n";
const ROOM_OFF: &str = "[macros.room-off]\nsteps = [{ delay = \"10ms\", label = \"Settling\" }]\n";

fn token(name: &str, secret: &str, priority: i32) -> String {
    format!(
        "[[auth.tokens]]\nname = \"{name}\"\ntoken_sha256 = \"{}\"\npriority = {priority}\n",
        avgate::auth::Secret::plain(secret).sha256_hex()
    )
}

async fn room(policy: &str) -> (avgate_drivers::pjlink::simulator::Handle, TestGateway) {
    let proj = projector(None).await;
    let extra = format!(
        "{}{}{}{ADMIN}[lease]\npolicy = \"{policy}\"\nidle = \"10m\"\n{ROOM_OFF}",
        token("lectern", "lectern-secret", 0),
        token("door", "door-secret", 0),
        token("desk", "desk-secret", 10),
    );
    let gw = gateway(&site_toml(&[("proj", proj.local_addr(), None)], &extra)).await;
    (proj, gw)
}

async fn panel(gw: &TestGateway, name: &str) -> Panel {
    let hello = json!({"type": "hello", "token": format!("{name}-secret"), "client": name});
    let (mut panel, _) = Panel::hello(gw, hello).await;
    panel.until_event("proj", "online", json!(true)).await;
    panel
}

async fn power(panel: &mut Panel, id: &str, on: bool) -> Value {
    panel
        .command(json!(id), "proj", "power", json!({ "on": on }))
        .await;
    panel.result(json!(id)).await
}

/// The room is on and warm, so a `power on` from any panel is answered ok at once.
async fn warm(panel: &mut Panel) {
    assert_eq!(power(panel, "warm-up", true).await["ok"], true);
    panel.until_event("proj", "power", json!("on")).await;
}

fn power_commands(proj: &avgate_drivers::pjlink::simulator::Handle) -> usize {
    proj.commands_received()
        .iter()
        .filter(|l| l.starts_with("%1POWR ") && !l.starts_with("%1POWR ?"))
        .count()
}

#[tokio::test]
async fn an_exclusive_lease_refuses_another_panel_until_it_takes_control_and_tells_the_holder() {
    let (proj, gw) = room("exclusive").await;
    let mut lectern = panel(&gw, "lectern").await;
    let mut door = panel(&gw, "door").await;

    warm(&mut lectern).await;
    lectern
        .until_event("@room", "controller", json!("lectern"))
        .await;
    assert!(lectern.known("@room", "last_activity").is_string());
    // Every panel sees who has the room.
    door.until_event("@room", "controller", json!("lectern"))
        .await;

    let sent = power_commands(&proj);
    let refused = power(&mut door, "d-1", true).await;
    assert_eq!(refused["error"]["code"], "in_use", "{refused}");
    let message = refused["error"]["message"].as_str().unwrap();
    assert!(
        message.starts_with("`lectern` has control of the room"),
        "{message}"
    );
    assert!(message.contains("take_control"), "{message}");
    assert_eq!(
        power_commands(&proj),
        sent,
        "the refused command never reached the projector"
    );

    door.command(json!("d-2"), "@room", "take_control", json!({}))
        .await;
    assert_eq!(door.result(json!("d-2")).await["ok"], true);
    // The previous holder is told who took the room and how.
    let told = lectern
        .until("taken_over", |m| {
            m["device"] == "@room" && m["point"] == "taken_over"
        })
        .await;
    assert_eq!(
        (
            &told["value"]["from"],
            &told["value"]["by"],
            &told["value"]["how"]
        ),
        (&json!("lectern"), &json!("door"), &json!("take_control")),
        "{told}"
    );
    assert_eq!(lectern.known("@room", "controller"), "door");

    assert_eq!(power(&mut door, "d-3", true).await["ok"], true);
    let refused = power(&mut lectern, "l-2", true).await;
    assert_eq!(refused["error"]["code"], "in_use", "{refused}");
    // A macro from the panel without the room is refused the same way.
    lectern
        .send(json!({"type": "command", "id": "l-3", "macro": "room-off"}))
        .await;
    let refused = lectern.result(json!("l-3")).await;
    assert_eq!(refused["error"]["code"], "in_use", "{refused}");
    // Room off from the holder ends the lease: the room is free for everyone.
    door.send(json!({"type": "command", "id": "d-4", "macro": "room-off"}))
        .await;
    assert_eq!(door.result(json!("d-4")).await["ok"], true);
    lectern
        .until_event("@room", "controller", Value::Null)
        .await;
    assert_eq!(power(&mut lectern, "l-4", true).await["ok"], true);

    let (_, audit) = http_request(
        gw.local_addr(),
        "/api/audit?device=proj",
        Some("ops-secret-01"),
    )
    .await;
    assert!(audit.contains("in_use") && audit.contains("d-1"), "{audit}");
    gw.shutdown().await;
}

#[tokio::test]
async fn a_higher_priority_token_takes_the_room_without_asking() {
    let (_proj, gw) = room("exclusive").await;
    let mut lectern = panel(&gw, "lectern").await;
    let mut desk = panel(&gw, "desk").await;
    warm(&mut lectern).await;
    desk.until_event("@room", "controller", json!("lectern"))
        .await;

    assert_eq!(power(&mut desk, "k-1", true).await["ok"], true);
    let told = lectern
        .until("taken_over", |m| {
            m["device"] == "@room" && m["point"] == "taken_over"
        })
        .await;
    assert_eq!(told["value"]["how"], "priority", "{told}");
    assert_eq!(told["value"]["by"], "desk", "{told}");
    let refused = power(&mut lectern, "l-2", true).await;
    assert_eq!(refused["error"]["code"], "in_use", "{refused}");
    gw.shutdown().await;
}

#[tokio::test]
async fn a_shared_lease_lets_both_panels_drive_and_the_indicator_follows() {
    let (_proj, gw) = room("shared").await;
    let mut lectern = panel(&gw, "lectern").await;
    let mut door = panel(&gw, "door").await;
    warm(&mut lectern).await;
    assert_eq!(power(&mut door, "d-1", true).await["ok"], true);
    lectern
        .until_event("@room", "controller", json!("door"))
        .await;
    gw.shutdown().await;
}
