//! Room macros through the real gateway, against the PJLink projector simulator (which
//! warms up for 300 ms after `power on`).

mod common;

use common::*;
use serde_json::{Value, json};

const ROOM: &str = r#"
[macros.room-on]
label = "Room on"
group = "room"
steps = [
  { device = "proj", command = "power", args = { on = true }, label = "Projector on" },
  { wait_until = "proj/power == 'on'", timeout = "10s", label = "Warming up projector" },
]

[macros.long]
group = "room"
steps = [{ delay = "1h", label = "Waiting an hour" }]
"#;

fn site(proj: std::net::SocketAddr, extra: &str) -> String {
    site_toml(&[("proj", proj, None)], extra) + ROOM
}

fn power_ons(proj: &avgate_drivers::pjlink::simulator::Handle) -> usize {
    proj.commands_received()
        .iter()
        .filter(|line| line.starts_with("%1POWR 1"))
        .count()
}

#[tokio::test]
async fn room_on_powers_the_projector_waits_for_warm_up_and_reports_progress_then_result() {
    let proj = projector(None).await;
    let gw = gateway(&site(proj.local_addr(), "")).await;
    let (mut panel, _) = Panel::hello(&gw, json!({"type": "hello", "client": "lectern"})).await;
    panel.until_event("proj", "online", json!(true)).await;

    panel
        .send(json!({"type": "command", "id": "on-1", "macro": "room-on"}))
        .await;
    let accepted = panel.until("accepted", |m| m["type"] == "accepted").await;
    assert_eq!(accepted["id"], "on-1");
    let mut seen: Vec<Value> = Vec::new();
    let result = loop {
        let message = panel.next().await;
        match message["type"].as_str() {
            Some("event") if message["device"] == "@macros" => seen.push(message["value"].clone()),
            Some("event") if message["device"] == "proj" && message["point"] == "power" => {
                seen.push(message["value"].clone())
            }
            Some("result") => break message,
            _ => {}
        }
    };
    assert_eq!(result["ok"], true, "{result}");
    assert_eq!(
        result["steps"],
        json!([
            {"step": "1", "label": "Projector on", "outcome": "ok"},
            {"step": "2", "label": "Warming up projector", "outcome": "ok"},
        ]),
        "{result}"
    );
    let steps: Vec<(&Value, &Value)> = seen
        .iter()
        .filter(|v| v.is_object())
        .map(|v| (&v["state"], &v["step"]))
        .collect();
    assert_eq!(
        steps,
        [
            (&json!("running"), &json!(1)),
            (&json!("running"), &json!(2)),
            (&json!("done"), &json!(2))
        ],
        "{seen:?}"
    );
    // The wait ended on the projector's own `on`, which came before the run's end.
    let on = seen
        .iter()
        .position(|v| *v == json!("on"))
        .expect("power on seen");
    let done = seen.iter().position(|v| v["state"] == "done").unwrap();
    assert!(on < done, "{seen:?}");
    assert_eq!(seen[done]["label"], "Room on");
    // The wait for `on` carries the profile's warm-up hint; the command step has none.
    let running: Vec<&Value> = seen.iter().filter(|v| v["state"] == "running").collect();
    assert_eq!(running[0]["expected_s"], Value::Null);
    assert_eq!(running[1]["expected_s"], 30);
    assert_eq!(seen[done]["of"], 2);

    // Every step is in the audit log with the run's id, and the run itself too.
    let audit: Value =
        serde_json::from_str(&http_get(gw.local_addr(), "/api/audit").await).unwrap();
    let rows: Vec<(&str, &str, &str)> = audit
        .as_array()
        .unwrap()
        .iter()
        .map(|e| {
            (
                e["id"].as_str().unwrap(),
                e["device"].as_str().unwrap(),
                e["command"].as_str().unwrap(),
            )
        })
        .collect();
    let step_rows: Vec<_> = rows.iter().filter(|r| r.0.starts_with("on-1#")).collect();
    assert_eq!(step_rows, [&("on-1#1", "proj", "power")], "{rows:?}");
    assert!(rows.contains(&("on-1", "@macros", "room-on")), "{rows:?}");
    assert_eq!(power_ons(&proj), 1);
    gw.shutdown().await;
}

#[tokio::test]
async fn a_panel_that_reconnects_mid_macro_and_re_sends_does_not_run_it_twice() {
    let proj = projector(None).await;
    let gw = gateway(&site(proj.local_addr(), "")).await;
    let hello = json!({"type": "hello", "client": "lectern"});
    let (mut panel, _) = Panel::hello(&gw, hello.clone()).await;
    panel.until_event("proj", "online", json!(true)).await;
    panel
        .send(json!({"type": "command", "id": "on-2", "macro": "room-on"}))
        .await;
    panel
        .until("the warm-up step", |m| {
            m["device"] == "@macros" && m["value"]["step"] == 2
        })
        .await;
    panel.close().await;

    let (mut again, _) = Panel::hello(&gw, hello).await;
    again
        .send(json!({"type": "command", "id": "on-2", "macro": "room-on"}))
        .await;
    let accepted = again.until("accepted", |m| m["type"] == "accepted").await;
    assert_eq!(accepted["duplicate"], true, "{accepted}");
    let result = again.result(json!("on-2")).await;
    assert_eq!(result["ok"], true, "{result}");
    assert_eq!(again.known("@macros", "room-on")["state"], "done");
    assert_eq!(power_ons(&proj), 1, "{:?}", proj.commands_received());
    gw.shutdown().await;
}

#[tokio::test]
async fn each_step_is_checked_against_the_senders_scopes() {
    let proj = projector(None).await;
    let tokens = format!(
        "[[auth.tokens]]\nname = \"guest\"\ntoken_sha256 = \"{}\"\nscopes = [\"read\", \"control:proj/input\"]\n",
        avgate::auth::Secret::plain("guest-secret-01").sha256_hex()
    );
    let gw = gateway(&site(proj.local_addr(), &tokens)).await;
    let hello = json!({"type": "hello", "token": "guest-secret-01", "client": "guest"});
    let (mut panel, _) = Panel::hello(&gw, hello).await;
    panel.until_event("proj", "online", json!(true)).await;
    panel
        .send(json!({"type": "command", "id": "sneak", "macro": "room-on"}))
        .await;
    let result = panel.result(json!("sneak")).await;
    assert_eq!(result["ok"], false);
    assert_eq!(result["error"]["code"], "forbidden", "{result}");
    let message = result["error"]["message"].as_str().unwrap();
    assert!(
        message.contains("may not send `power` to `proj`, a step of macro `room-on`"),
        "{result}"
    );
    // Refused before it started: no progress of it ever reaches a panel.
    let quiet = std::time::Duration::from_millis(300);
    while let Some(message) = panel.try_next(quiet).await {
        assert_ne!(message["device"], "@macros", "{message}");
    }
    assert_eq!(power_ons(&proj), 0);
    gw.shutdown().await;
}

#[tokio::test]
async fn a_run_cut_off_by_a_restart_is_answered_outcome_unknown_not_run_again() {
    let proj = projector(None).await;
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("site.toml");
    let text = site(proj.local_addr(), "[journal]\ndata_dir = \"data\"\n");
    let start = || async {
        let site = avgate::config::parse_site(&path, &text).unwrap();
        avgate::Gateway::start(site).await.unwrap()
    };
    let first = start().await;
    let hello = json!({"type": "hello", "client": "lectern"});
    let (mut panel, _) = Panel::hello(&first, hello.clone()).await;
    panel
        .send(json!({"type": "command", "id": "long-1", "macro": "long"}))
        .await;
    panel
        .until("the hour's wait", |m| {
            m["device"] == "@macros" && m["value"]["state"] == "running"
        })
        .await;
    first.shutdown().await;

    let second = start().await;
    let (mut again, _) = Panel::hello(&second, hello).await;
    again
        .send(json!({"type": "command", "id": "long-1", "macro": "long"}))
        .await;
    let accepted = again.until("accepted", |m| m["type"] == "accepted").await;
    assert_eq!(accepted["duplicate"], true, "{accepted}");
    let result = again.result(json!("long-1")).await;
    assert_eq!(result["error"]["code"], "outcome_unknown", "{result}");
    let audit = http_get(second.local_addr(), "/api/audit?device=@macros").await;
    assert!(
        audit.contains("outcome_unknown") && audit.contains("long-1"),
        "{audit}"
    );
    second.shutdown().await;
}

#[tokio::test]
async fn a_run_of_another_macro_in_the_group_cancels_and_the_first_panel_sees_who() {
    let proj = projector(None).await;
    let gw = gateway(&site(proj.local_addr(), "")).await;
    let (mut first, _) = Panel::hello(&gw, json!({"type": "hello", "client": "lectern"})).await;
    let (mut second, _) = Panel::hello(&gw, json!({"type": "hello", "client": "door"})).await;
    first.until_event("proj", "online", json!(true)).await;
    first
        .send(json!({"type": "command", "id": "wait-1", "macro": "long"}))
        .await;
    first
        .until("the hour's wait", |m| {
            m["device"] == "@macros" && m["value"]["state"] == "running"
        })
        .await;

    second
        .send(json!({"type": "command", "id": "on-9", "macro": "room-on"}))
        .await;
    let cancelled = first.result(json!("wait-1")).await;
    assert_eq!(cancelled["error"]["code"], "cancelled", "{cancelled}");
    let message = cancelled["error"]["message"].as_str().unwrap();
    assert!(
        message.contains("`room-on` (id `on-9` from client `door`) in group `room` at step 1"),
        "{cancelled}"
    );
    assert_eq!(
        cancelled["steps"],
        json!([{"step": "1", "label": "Waiting an hour", "outcome": "cancelled"}])
    );
    assert_eq!(first.known("@macros", "long")["state"], "cancelled");
    assert_eq!(second.result(json!("on-9")).await["ok"], true);
    gw.shutdown().await;
}
