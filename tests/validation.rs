//! Argument errors are answered before a command is accepted, for every driver: a panel
//! never sees `accepted` for a command that could not run.

mod common;

use common::{Panel, gateway};
use serde_json::{Value, json};

/// One device per driver, at addresses where nothing listens: the checks happen before any
/// device is involved.
fn site() -> String {
    let mut text = String::from(
        "[server]\nlisten = \"127.0.0.1:0\"\nping_interval = \"5s\"\n[journal]\ndurable = false\n",
    );
    for (id, profile, port) in [
        ("proj", "pjlink-projector", 9),
        ("switcher", "extron-sis-switcher", 11),
        ("display", "samsung-mdc-display", 13),
        ("camera", "sony-visca-camera", 15),
        ("sequencer", "modbus-power-sequencer-8", 17),
    ] {
        text +=
            &format!("[devices.{id}]\nprofile = \"{profile}\"\naddress = \"127.0.0.1:{port}\"\n");
    }
    text
}

/// Sends the command and returns the first message about it: it must be its `result`,
/// never `accepted`.
async fn first_answer(
    panel: &mut Panel,
    id: &str,
    device: &str,
    command: &str,
    args: Value,
) -> Value {
    panel.command(json!(id), device, command, args).await;
    let answer = panel
        .until(&format!("an answer to {id}"), |m| m["id"] == id)
        .await;
    assert_eq!(
        answer["type"], "result",
        "answered before acceptance: {answer}"
    );
    assert_eq!(answer["error"]["code"], "invalid_args", "{answer}");
    answer
}

async fn refused(device: &str, cases: &[(&str, Value, &str)]) {
    let gw = gateway(&site()).await;
    let (mut panel, _) = Panel::hello(&gw, json!({"type": "hello"})).await;
    for (i, (command, args, mentions)) in cases.iter().enumerate() {
        let id = format!("{device}-{i}");
        let answer = first_answer(&mut panel, &id, device, command, args.clone()).await;
        let message = answer["error"]["message"].as_str().unwrap_or_default();
        assert!(message.contains(mentions), "{command} {args}: {message}");
    }
}

#[tokio::test]
async fn pjlink_arguments_are_checked_before_acceptance() {
    refused(
        "proj",
        &[
            ("power", json!({"on": "yes"}), "`on`"),
            ("mute", json!({"video": 1}), "`video`"),
            ("input", json!({"source": 31}), "`source`"),
            // Within the schema, but not a name the profile maps nor an input code.
            ("input", json!({"source": "hdmi9"}), "hdmi9"),
            ("mute", json!({}), "`video` and/or `audio`"),
        ],
    )
    .await;
}

#[tokio::test]
async fn extron_arguments_are_checked_before_acceptance() {
    refused(
        "switcher",
        &[
            ("route", json!({"input": "three", "output": 1}), "`input`"),
            ("route", json!({"input": 1, "output": 0}), "out of range"),
            ("volume", json!({"level": -1}), "out of range"),
            // Within the schema, beyond this 8x8 switcher.
            ("route", json!({"input": 9, "output": 1}), "input"),
            ("route", json!({"input": 1, "output": 9}), "output"),
        ],
    )
    .await;
}

#[tokio::test]
async fn samsung_mdc_arguments_are_checked_before_acceptance() {
    refused(
        "display",
        &[
            ("volume", json!({"level": 101}), "out of range"),
            ("power", json!({"on": null}), "missing argument `on`"),
            ("input", json!({"source": "laserdisc"}), "laserdisc"),
        ],
    )
    .await;
}

#[tokio::test]
async fn visca_arguments_are_checked_before_acceptance() {
    refused(
        "camera",
        &[
            ("zoom", json!({"action": "closer"}), "`action`"),
            ("zoom_to", json!({"position": 20000}), "out of range"),
            (
                "pan_tilt",
                json!({"direction": "up", "pan_speed": 30}),
                "out of range",
            ),
        ],
    )
    .await;
}

#[tokio::test]
async fn modbus_write_values_are_checked_against_the_point_before_acceptance() {
    refused(
        "sequencer",
        &[
            (
                "write",
                json!({"point": "outlet.1", "value": "on"}),
                "outlet.1",
            ),
            (
                "write",
                json!({"point": "outlet.1", "value": 2}),
                "outlet.1",
            ),
            ("write", json!({"point": "nope", "value": true}), "`point`"),
        ],
    )
    .await;
}
