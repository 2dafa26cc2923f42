//! The gateway end to end: PJLink simulators, the real gateway, a real WebSocket panel.

mod common;

use std::time::Duration;

use avgate_drivers::pjlink::simulator::{Fault, PowerState};
use common::*;
use serde_json::{Value, json};

#[tokio::test]
async fn snapshot_on_connect_shows_every_device_and_its_state() {
    let proj = projector(None).await;
    let gw = gateway(&site_toml(&[("proj", proj.local_addr(), None)], "")).await;

    // Wait until the device has been read, then a fresh panel's snapshot must show it.
    let (mut watcher, _) = Panel::hello(&gw, json!({"type": "hello"})).await;
    watcher.until_event("proj", "power", json!("off")).await;

    let (mut panel, welcome) = Panel::hello(&gw, json!({"type": "hello"})).await;
    assert_eq!(welcome["resumed"], false);
    let snapshot = panel.next().await;
    assert_eq!(snapshot["type"], "snapshot", "{snapshot}");
    assert_eq!(snapshot["seq"], welcome["seq"]);
    let device = &snapshot["devices"]["proj"];
    assert_eq!(device["online"], true, "{snapshot}");
    assert_eq!(device["points"]["power"], "off", "{snapshot}");
    gw.shutdown().await;
}

#[tokio::test]
async fn a_command_drives_the_device_and_the_panel_sees_its_events_then_result() {
    for mode in BOTH_MODES {
        a_command_drives_the_device_then_result(mode).await;
    }
}

async fn a_command_drives_the_device_then_result(mode: &str) {
    let proj = projector(None).await;
    let gw = gateway(&site_toml(&[("proj", proj.local_addr(), None)], mode)).await;
    let (mut panel, _) = Panel::hello(&gw, json!({"type": "hello"})).await;
    panel.until_event("proj", "online", json!(true)).await;

    panel
        .command(json!("c1"), "proj", "power", json!({"on": true}))
        .await;
    let accepted = panel.until("accepted", |m| m["type"] == "accepted").await;
    assert_eq!(accepted["id"], "c1");
    // The read-back after the set reports warming before the result arrives.
    panel.until_event("proj", "power", json!("warming")).await;
    let result = panel.result(json!("c1")).await;
    assert_eq!(result["ok"], true, "{result}");
    panel.until_event("proj", "power", json!("on")).await;
    assert_eq!(proj.state().power, PowerState::On);

    panel
        .command(json!(2), "proj", "input", json!({"source": "hdmi2"}))
        .await;
    panel.until_event("proj", "input", json!("hdmi2")).await;
    let second = panel.result(json!(2)).await;
    assert_eq!(second["ok"], true, "{second}");
    assert_eq!(proj.state().input, "32");
    gw.shutdown().await;
}

#[tokio::test]
async fn a_front_panel_change_reaches_the_panel() {
    let proj = projector(None).await;
    let gw = gateway(&site_toml(&[("proj", proj.local_addr(), None)], "")).await;
    let (mut panel, _) = Panel::hello(&gw, json!({"type": "hello"})).await;
    panel.until_event("proj", "input", json!("hdmi1")).await;

    proj.set_input("11");
    panel.until_event("proj", "input", json!("rgb1")).await;
    gw.shutdown().await;
}

#[tokio::test]
async fn a_stopped_device_goes_offline_and_comes_back_with_its_state_reread() {
    let proj = projector(None).await;
    let addr = proj.local_addr();
    let gw = gateway(&site_toml(&[("proj", addr, None)], "")).await;
    let (mut panel, _) = Panel::hello(&gw, json!({"type": "hello"})).await;
    panel.until_event("proj", "input", json!("hdmi1")).await;

    proj.shutdown().await;
    panel.until_event("proj", "online", json!(false)).await;
    // The error arrives with (or right after) the offline event.
    let error = panel.until_set("proj", "error").await;
    let error = error.as_str().unwrap_or_default();
    // Connecting is refused, or (when the session was young) the reset itself is the
    // reason: either way it names what failed.
    assert!(
        error.contains("connect") || error.contains("reset"),
        "the offline reason should say what failed: {error}"
    );

    // A command now fails at once with device_offline instead of hanging.
    panel
        .command(json!("while-off"), "proj", "power", json!({"on": true}))
        .await;
    let result = panel.result(json!("while-off")).await;
    assert_eq!(result["error"]["code"], "device_offline", "{result}");

    // The projector comes back (after someone changed its input by hand).
    let restarted = projector_at(addr, None).await;
    restarted.set_input("32");
    panel.until_event("proj", "online", json!(true)).await;
    panel.until_event("proj", "input", json!("hdmi2")).await;
    gw.shutdown().await;
}

#[tokio::test]
async fn a_resuming_panel_gets_exactly_the_events_it_missed_in_order() {
    let proj = projector(None).await;
    let gw = gateway(&site_toml(&[("proj", proj.local_addr(), None)], "")).await;
    let (mut panel, welcome) = Panel::hello(&gw, json!({"type": "hello"})).await;
    let epoch = welcome["epoch"].as_u64().unwrap();
    panel.until_event("proj", "input", json!("hdmi1")).await;
    let last_seen = panel.at.unwrap();
    panel.close().await;

    // While it is away: three changes, seen by another panel.
    let (mut other, _) = Panel::hello(&gw, json!({"type": "hello"})).await;
    for (code, name) in [("11", "rgb1"), ("32", "hdmi2"), ("31", "hdmi1")] {
        proj.set_input(code);
        other.until_event("proj", "input", json!(name)).await;
    }
    let head = other.at.unwrap();
    assert!(head >= last_seen + 3);

    let hello = json!({"type": "hello", "resume": {"epoch": epoch, "seq": last_seen}});
    let (mut back, welcome) = Panel::hello(&gw, hello).await;
    assert_eq!(welcome["resumed"], true, "{welcome}");
    back.at = Some(last_seen);
    // Every missed event arrives, in order, without a snapshot (the harness asserts each
    // seq is exactly one more than the last).
    while back.at.unwrap() < head {
        let message = back.next().await;
        assert_eq!(
            message["type"], "event",
            "expected only replayed events, got {message}"
        );
    }
    assert_eq!(back.seqs.first(), Some(&(last_seen + 1)));

    // A resume from another epoch gets a snapshot instead.
    let hello = json!({"type": "hello", "resume": {"epoch": epoch + 1, "seq": last_seen}});
    let (mut stranger, welcome) = Panel::hello(&gw, hello).await;
    assert_eq!(welcome["resumed"], false);
    assert_eq!(stranger.next().await["type"], "snapshot");
    gw.shutdown().await;
}

#[tokio::test]
async fn the_same_command_id_twice_runs_once() {
    let proj = projector(None).await;
    let gw = gateway(&site_toml(&[("proj", proj.local_addr(), None)], "")).await;
    let hello = json!({"type": "hello", "client": "lobby-panel"});
    let (mut panel, _) = Panel::hello(&gw, hello.clone()).await;
    panel.until_event("proj", "online", json!(true)).await;

    panel
        .command(json!("once"), "proj", "power", json!({"on": true}))
        .await;
    assert_eq!(panel.result(json!("once")).await["ok"], true);
    panel.close().await;

    // The same panel reconnects and re-sends: it gets the stored outcome.
    let (mut again, _) = Panel::hello(&gw, hello).await;
    again
        .command(json!("once"), "proj", "power", json!({"on": true}))
        .await;
    let accepted = again.until("accepted", |m| m["type"] == "accepted").await;
    assert_eq!(accepted["duplicate"], true, "{accepted}");
    assert_eq!(again.result(json!("once")).await["ok"], true);

    let sets = proj
        .commands_received()
        .iter()
        .filter(|line| line.starts_with("%1POWR 1"))
        .count();
    assert_eq!(
        sets,
        1,
        "power on must reach the projector once: {:?}",
        proj.commands_received()
    );
    gw.shutdown().await;
}

#[tokio::test]
async fn bad_input_gets_a_specific_error_and_the_connection_keeps_working() {
    let proj = projector(None).await;
    let gw = gateway(&site_toml(&[("proj", proj.local_addr(), None)], "")).await;
    let (mut panel, _) = Panel::hello(&gw, json!({"type": "hello"})).await;
    panel.until_event("proj", "online", json!(true)).await;

    panel.send_raw("{this is not json").await;
    let error = panel.until("error", |m| m["type"] == "error").await;
    assert_eq!(error["code"], "malformed", "{error}");

    panel
        .send(json!({"type": "launch", "what": "rocket"}))
        .await;
    assert_eq!(
        panel.until("error", |m| m["type"] == "error").await["code"],
        "invalid_message"
    );

    panel
        .command(json!("a"), "nope", "power", json!({"on": true}))
        .await;
    let result = panel.result(json!("a")).await;
    assert_eq!(
        (result["ok"].clone(), result["error"]["code"].clone()),
        (json!(false), json!("unknown_device"))
    );

    panel
        .command(json!("b"), "proj", "self_destruct", json!({}))
        .await;
    assert_eq!(
        panel.result(json!("b")).await["error"]["code"],
        "unknown_command"
    );

    panel
        .command(json!("c"), "proj", "power", json!({"on": "yes please"}))
        .await;
    let result = panel.result(json!("c")).await;
    assert_eq!(result["error"]["code"], "invalid_args");
    assert!(
        result["error"]["message"].as_str().unwrap().contains("on"),
        "{result}"
    );

    panel
        .command(json!("d"), "proj", "input", json!({"source": "hdmi9"}))
        .await;
    assert_eq!(
        panel.result(json!("d")).await["error"]["code"],
        "invalid_args"
    );

    // Still usable.
    panel
        .command(json!("e"), "proj", "mute", json!({"video": true}))
        .await;
    panel.until_event("proj", "video_mute", json!(true)).await;
    assert_eq!(panel.result(json!("e")).await["ok"], true);
    gw.shutdown().await;
}

#[tokio::test]
async fn a_wrong_password_is_reported_and_backed_off() {
    let proj = projector(Some("right")).await;
    let gw = gateway(&site_toml(
        &[("proj", proj.local_addr(), Some("wrong"))],
        "",
    ))
    .await;
    let (mut panel, _) = Panel::hello(&gw, json!({"type": "hello"})).await;
    let error = panel
        .until("auth error", |m| {
            m["type"] == "event" && m["point"] == "error" && !m["value"].is_null()
        })
        .await;
    let message = error["value"].as_str().unwrap();
    assert!(
        message.contains("password"),
        "the error should name the password: {message}"
    );

    // No busy reconnect loop: the gateway waits (at least 30 s) before trying again.
    let attempts = proj.connection_count();
    let deadline = tokio::time::Instant::now() + Duration::from_secs(2);
    while tokio::time::Instant::now() < deadline {
        assert_eq!(
            proj.connection_count(),
            attempts,
            "reconnected right after an authentication failure"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    gw.shutdown().await;
}

#[tokio::test]
async fn the_right_password_works() {
    let proj = projector(Some("JBMIAProjectorLink")).await;
    let gw = gateway(&site_toml(
        &[("proj", proj.local_addr(), Some("JBMIAProjectorLink"))],
        "",
    ))
    .await;
    let (mut panel, _) = Panel::hello(&gw, json!({"type": "hello"})).await;
    panel.until_event("proj", "power", json!("off")).await;
    gw.shutdown().await;
}

#[tokio::test]
async fn with_tokens_a_panel_without_one_is_refused_and_closed() {
    let proj = projector(None).await;
    let auth = "[[auth.tokens]]\nname = \"lobby\"\ntoken = \"s3cret-token-1\"\nscopes = [\"read\", \"control\", \"admin\"]\n";
    let gw = gateway(&site_toml(&[("proj", proj.local_addr(), None)], auth)).await;

    let mut panel = Panel::connect(&gw).await;
    panel.send(json!({"type": "hello", "token": "guess"})).await;
    let error = panel.next().await;
    assert_eq!(error["code"], "unauthorized", "{error}");
    assert!(
        panel.try_next(DEADLINE).await.is_none(),
        "the socket must close"
    );

    let (mut panel, welcome) =
        Panel::hello(&gw, json!({"type": "hello", "token": "s3cret-token-1"})).await;
    assert_eq!(welcome["type"], "welcome");
    // Commands are audited under the token's name.
    panel
        .command(json!("t1"), "proj", "mute", json!({"audio": true}))
        .await;
    panel.result(json!("t1")).await;
    let (status, body) = http_request(gw.local_addr(), "/api/audit", Some("s3cret-token-1")).await;
    assert!(status.starts_with("HTTP/1.1 200"), "{status}");
    let audit: Value = serde_json::from_str(&body).unwrap();
    assert_eq!(audit[0]["token"], "lobby", "{audit}");
    gw.shutdown().await;
}

#[tokio::test]
async fn messages_before_hello_are_refused_but_hello_still_works() {
    let proj = projector(None).await;
    let gw = gateway(&site_toml(&[("proj", proj.local_addr(), None)], "")).await;
    let mut panel = Panel::connect(&gw).await;
    panel.send(json!({"type": "ack", "seq": 1})).await;
    assert_eq!(panel.next().await["code"], "hello_required");
    panel.send(json!({"type": "hello"})).await;
    assert_eq!(panel.next().await["type"], "welcome");
    gw.shutdown().await;
}

#[tokio::test]
async fn http_endpoints_serve_state_health_and_the_page() {
    let proj = projector(None).await;
    let gw = gateway(&site_toml(&[("proj", proj.local_addr(), None)], "")).await;
    let (mut panel, _) = Panel::hello(&gw, json!({"type": "hello"})).await;
    panel.until_event("proj", "power", json!("off")).await;

    let state: Value =
        serde_json::from_str(&http_get(gw.local_addr(), "/api/state").await).unwrap();
    assert_eq!(
        state["devices"]["proj"]["points"]["power"], "off",
        "{state}"
    );
    let health: Value = serde_json::from_str(&http_get(gw.local_addr(), "/healthz").await).unwrap();
    assert_eq!(health["status"], "ok");
    assert_eq!(health["devices_online"], 1);
    let devices: Value =
        serde_json::from_str(&http_get(gw.local_addr(), "/api/devices").await).unwrap();
    assert!(
        devices[0]["profile"]["commands"]["power"].is_object(),
        "{devices}"
    );
    assert!(
        http_get(gw.local_addr(), "/status")
            .await
            .contains("<title>avgate</title>")
    );
    assert!(http_get(gw.local_addr(), "/").await.contains("/panel.js"));
    gw.shutdown().await;
}

#[tokio::test]
async fn every_command_is_in_the_audit_log_newest_first() {
    let proj = projector(None).await;
    let gw = gateway(&site_toml(&[("proj", proj.local_addr(), None)], "")).await;
    let (mut panel, welcome) =
        Panel::hello(&gw, json!({"type": "hello", "client": "lectern"})).await;
    panel.until_event("proj", "online", json!(true)).await;
    panel
        .command(json!("a"), "proj", "mute", json!({"audio": true}))
        .await;
    assert_eq!(panel.result(json!("a")).await["ok"], true);
    panel
        .command(json!("b"), "proj", "power", json!({"on": "maybe"}))
        .await;
    assert_eq!(panel.result(json!("b")).await["ok"], false);
    panel
        .command(json!("c"), "ghost", "power", json!({"on": true}))
        .await;
    panel.result(json!("c")).await;

    let all: Value = serde_json::from_str(&http_get(gw.local_addr(), "/api/audit").await).unwrap();
    let ids: Vec<&str> = all
        .as_array()
        .unwrap()
        .iter()
        .map(|e| e["id"].as_str().unwrap())
        .collect();
    assert_eq!(ids, ["c", "b", "a"], "newest first: {all}");
    let first = &all[2];
    assert_eq!(first["client"], "lectern");
    assert_eq!(first["session"], welcome["session"]);
    assert_eq!(first["device"], "proj");
    assert_eq!(first["command"], "mute");
    assert_eq!(first["args"], json!({"audio": true}));
    assert_eq!(first["ok"], true);
    assert_eq!(all[1]["error"]["code"], "invalid_args");

    let proj_only: Value =
        serde_json::from_str(&http_get(gw.local_addr(), "/api/audit?device=proj&limit=1").await)
            .unwrap();
    assert_eq!(proj_only.as_array().unwrap().len(), 1);
    assert_eq!(proj_only[0]["id"], "b");
    let future: Value = serde_json::from_str(
        &http_get(gw.local_addr(), "/api/audit?since=2999-01-01T00:00:00Z").await,
    )
    .unwrap();
    assert_eq!(future, json!([]));
    gw.shutdown().await;
}

#[tokio::test]
async fn a_hung_device_never_holds_up_another() {
    let stuck = projector(None).await;
    let fine = projector(None).await;
    let gw = gateway(&site_toml(
        &[
            ("stuck", stuck.local_addr(), None),
            ("fine", fine.local_addr(), None),
        ],
        "",
    ))
    .await;
    let (mut panel, _) = Panel::hello(&gw, json!({"type": "hello"})).await;
    panel.until_event("stuck", "online", json!(true)).await;
    panel.until_event("fine", "online", json!(true)).await;

    stuck.inject(Fault::StallReplies(true));
    panel
        .command(json!("s"), "stuck", "power", json!({"on": true}))
        .await;
    panel
        .command(json!("f"), "fine", "power", json!({"on": true}))
        .await;

    // The healthy projector answers while the stuck one is still being waited for.
    let first = panel.until("a result", |m| m["type"] == "result").await;
    assert_eq!(
        first["id"], "f",
        "the healthy device must not wait behind the stuck one: {first}"
    );
    assert_eq!(first["ok"], true);
    let stuck_result = panel.result(json!("s")).await;
    assert_eq!(stuck_result["error"]["code"], "timeout", "{stuck_result}");
    gw.shutdown().await;
}

#[tokio::test]
async fn a_lost_reply_fails_one_command_and_the_device_carries_on() {
    let proj = projector(None).await;
    // No polls after the first round (`info`, read last, ends with `pjlink_class`), so
    // the dropped reply is the command's.
    let site = site_toml(&[("proj", proj.local_addr(), None)], "").replace(
        "poll = { power = \"200ms\", input = \"300ms\" }",
        "poll = { power = \"1h\", input = \"1h\", mute = \"1h\", errors = \"1h\", lamp = \"1h\", inputs = \"1h\", info = \"1h\" }",
    );
    let gw = gateway(&site).await;
    let (mut panel, _) = Panel::hello(&gw, json!({"type": "hello"})).await;
    panel.until_set("proj", "pjlink_class").await;

    // No reply: the command times out; the gateway reconnects and the next one works.
    proj.inject(Fault::DropNextReply);
    panel
        .command(json!(1), "proj", "mute", json!({"audio": true}))
        .await;
    let first = panel.result(json!(1)).await;
    assert_eq!(first["error"]["code"], "timeout", "{first}");
    panel
        .command(json!(2), "proj", "mute", json!({"video": true}))
        .await;
    let second = panel.result(json!(2)).await;
    assert_eq!(second["ok"], true, "{second}");

    // A garbled reply is a protocol error: that command fails, the session is reset, and
    // the device is still usable. A poll may get there first and take the garbled reply
    // (the command then waits for its record on disk, then for the poll): then the next
    // command meets the fault.
    let mut id = 3;
    loop {
        proj.inject(Fault::GarbleNextReply);
        panel
            .command(json!(id), "proj", "input", json!({"source": "hdmi2"}))
            .await;
        let result = panel.result(json!(id)).await;
        if result["ok"] == false {
            break;
        }
        assert!(id < 10, "no command ever met the garbled reply");
        id += 1;
    }
    panel
        .command(json!(100), "proj", "input", json!({"source": "hdmi2"}))
        .await;
    assert_eq!(panel.result(json!(100)).await["ok"], true);
    panel.until_event("proj", "input", json!("hdmi2")).await;
    gw.shutdown().await;
}

#[tokio::test]
async fn an_idle_close_is_a_quiet_reconnect_not_an_offline_spell() {
    // Projectors drop connections that are idle too long (PJLink: 30 s). Here 1.2 s, with
    // polls only every 5 s, so the projector keeps closing on the gateway.
    let proj =
        avgate_drivers::pjlink::simulator::start(avgate_drivers::pjlink::simulator::Config {
            idle_timeout: Duration::from_millis(1200),
            ..avgate_drivers::pjlink::simulator::Config::default()
        })
        .await
        .unwrap();
    let site = format!(
        "[server]\nlisten = \"127.0.0.1:0\"\n[journal]\ndurable = false\n\
         [devices.proj]\nprofile = \"pjlink-projector\"\naddress = \"{}\"\n\
         [devices.proj.overrides]\npoll = {{ power = \"5s\", input = \"5s\", mute = \"5s\" }}\n",
        proj.local_addr()
    );
    let gw = gateway(&site).await;
    let (mut panel, _) = Panel::hello(&gw, json!({"type": "hello"})).await;
    panel.until_event("proj", "online", json!(true)).await;

    // Three idle closes later, and at each the gateway was back at once. The panel has
    // heard no `online = false` (the harness tracks every event into `known`).
    let deadline = tokio::time::Instant::now() + DEADLINE;
    while proj.connection_count() < 3 {
        assert!(
            tokio::time::Instant::now() < deadline,
            "the gateway did not reconnect"
        );
        let _ = panel.try_next(Duration::from_millis(100)).await;
        assert_eq!(
            *panel.known("proj", "online"),
            json!(true),
            "an idle close must not look like an outage"
        );
    }
    // A command still works right away on the fresh connection.
    panel
        .command(json!("idle-1"), "proj", "mute", json!({"audio": true}))
        .await;
    assert_eq!(panel.result(json!("idle-1")).await["ok"], true);
    assert_eq!(*panel.known("proj", "online"), json!(true));
    gw.shutdown().await;
}
