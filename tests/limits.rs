//! Limits on what one panel may send, each answered with a specific error while the
//! connection keeps working.

mod common;

use avgate_drivers::pjlink::simulator::Fault;
use common::*;
use serde_json::json;

#[tokio::test]
async fn oversized_fields_get_too_large_and_the_connection_keeps_working() {
    let projector = projector(None).await;
    let gw = gateway(&site_toml(&[("proj", projector.local_addr(), None)], "")).await;

    // A client name longer than any label is refused in hello; a fixed hello works.
    let mut panel = Panel::connect(&gw).await;
    panel
        .send(json!({"type": "hello", "client": "c".repeat(129)}))
        .await;
    let refused = panel.next().await;
    assert_eq!(
        (refused["type"].as_str(), refused["code"].as_str()),
        (Some("error"), Some("too_large")),
        "{refused}"
    );
    assert!(
        refused["message"].as_str().unwrap().contains("client"),
        "{refused}"
    );
    panel
        .send(json!({"type": "hello", "client": "lobby"}))
        .await;
    assert_eq!(panel.next().await["type"], "welcome");
    panel.until_set("proj", "power").await;

    let long = "x".repeat(129);
    let cases = [
        (
            "device",
            json!({"type": "command", "id": 1, "device": long, "command": "power", "args": {}}),
        ),
        (
            "command",
            json!({"type": "command", "id": 2, "device": "proj", "command": long, "args": {}}),
        ),
        (
            "bytes of JSON",
            json!({"type": "command", "id": 3, "device": "proj", "command": "power", "args": {"on": "y".repeat(5000)}}),
        ),
        (
            "nested",
            json!({"type": "command", "id": 4, "device": "proj", "command": "power", "args": {"on": [[[[[[[[true]]]]]]]]}}),
        ),
    ];
    for (what, command) in cases {
        let id = command["id"].clone();
        panel.send(command).await;
        let error = panel
            .until("the refusal", |m| m["type"] == "error" && m["id"] == id)
            .await;
        assert_eq!(error["code"], "too_large", "{error}");
        assert!(
            error["message"].as_str().unwrap().contains(what),
            "{what}: {error}"
        );
    }

    let patterns: Vec<String> = (0..65).map(|i| format!("dev-{i}")).collect();
    panel
        .send(json!({"type": "subscribe", "patterns": patterns}))
        .await;
    let error = panel.until("the refusal", |m| m["type"] == "error").await;
    assert_eq!(error["code"], "too_large", "{error}");

    // Still usable.
    panel
        .command(json!(5), "proj", "power", json!({"on": true}))
        .await;
    assert_eq!(panel.result(json!(5)).await["ok"], true);
    gw.shutdown().await;
}

#[tokio::test]
async fn commands_in_flight_are_capped_per_connection() {
    let projector = projector(None).await;
    // A projector whose mute commands are not conflated, so each one waits its turn (set-
    // style commands would replace each other in the queue and never pile up).
    let profiles = tempfile::tempdir().unwrap();
    let profile = std::fs::read_to_string(concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/device-profiles/pjlink-projector.toml"
    ))
    .unwrap()
        + "\n[commands.power]\n[commands.input]\n[commands.mute]\nconflate = false\n";
    std::fs::write(profiles.path().join("stubborn-projector.toml"), profile).unwrap();
    let site = format!(
        "profile_dirs = [{:?}]\n{}",
        profiles.path(),
        // A queue longer than the in-flight cap, so the cap is what refuses.
        site_toml(
            &[("proj", projector.local_addr(), None)],
            "[commands]\nqueue = 1000\n"
        )
        .replace("command_timeout = \"1s\"", "command_timeout = \"30s\"")
        .replace("\"pjlink-projector\"", "\"stubborn-projector\"")
    );
    let gw = gateway(&site).await;
    let (mut panel, _) = Panel::hello(&gw, json!({"type": "hello"})).await;
    panel.until_set("proj", "power").await;

    // The projector stops answering: commands pile up, each waiting for its result.
    projector.inject(Fault::StallReplies(true));
    for i in 0..avgate::hub::limits::MAX_IN_FLIGHT {
        panel
            .command(json!(i), "proj", "mute", json!({"audio": i % 2 == 0}))
            .await;
        let accepted = panel
            .until("accepted", |m| m["type"] == "accepted" && m["id"] == i)
            .await;
        assert_eq!(accepted["id"], i);
    }
    panel
        .command(json!(999), "proj", "mute", json!({"audio": true}))
        .await;
    let refused = panel.result(json!(999)).await;
    assert_eq!(refused["error"]["code"], "rate_limited", "{refused}");

    // Once results come, there is room again.
    projector.inject(Fault::StallReplies(false));
    panel.result(json!(0)).await;
    panel
        .command(json!(33), "proj", "mute", json!({"audio": false}))
        .await;
    let accepted = panel
        .until("an answer to 33", |m| {
            m["id"] == 33 && (m["type"] == "accepted" || m["type"] == "result")
        })
        .await;
    assert_ne!(accepted["error"]["code"], "rate_limited", "{accepted}");
    gw.shutdown().await;
}

#[tokio::test]
async fn subscription_changes_are_rate_limited() {
    let gw = gateway(&site_toml(&[], "")).await;
    let (mut panel, _) = Panel::hello(&gw, json!({"type": "hello"})).await;
    panel.filtered = true;
    for _ in 0..5 {
        panel
            .send(json!({"type": "subscribe", "patterns": ["proj-*"]}))
            .await;
    }
    panel
        .send(json!({"type": "subscribe", "patterns": ["proj-*"]}))
        .await;
    let mut subscribed = 0;
    let refused = loop {
        let message = panel.next().await;
        match message["type"].as_str() {
            Some("subscribed") => subscribed += 1,
            Some("error") => break message,
            _ => {}
        }
    };
    assert_eq!(refused["code"], "rate_limited", "{refused}");
    assert_eq!(subscribed, 5, "the burst is served");
    gw.shutdown().await;
}
