//! The README's first command, `avgate demo`: every simulated device in the demo room comes
//! online through the gateway and answers a command.

mod common;

use avgate::Gateway;
use avgate::demo::DemoRoom;
use common::*;
use serde_json::json;

#[tokio::test]
async fn every_device_in_the_demo_room_comes_online_and_takes_commands() {
    let room = DemoRoom::start("127.0.0.1:0".parse().unwrap(), None)
        .await
        .expect("demo room starts");
    let gw = Gateway::start(room.site.clone())
        .await
        .expect("gateway starts");
    let (mut panel, _) = Panel::hello(&gw, json!({"type": "hello"})).await;
    let ids: Vec<String> = room.site.devices.iter().map(|d| d.id.clone()).collect();
    assert_eq!(ids.len(), 6, "{ids:?}");
    for id in &ids {
        panel.until_event(id, "online", json!(true)).await;
    }

    let commands = [
        ("switcher", "route", json!({"input": 2, "output": 1})),
        ("display", "input", json!({"source": "room_pc"})),
        ("camera", "preset", json!({"action": "recall", "number": 1})),
        (
            "sequencer",
            "write",
            json!({"point": "outlet.3", "value": true}),
        ),
        ("proj-left", "power", json!({"on": true})),
    ];
    for (n, (device, command, args)) in commands.into_iter().enumerate() {
        panel.command(json!(n), device, command, args).await;
        let result = panel.result(json!(n)).await;
        assert_eq!(result["ok"], true, "{device} {command}: {result}");
    }
    panel
        .until_event("display", "input", json!("room_pc"))
        .await;
    panel
        .until_event("sequencer", "outlet.3", json!(true))
        .await;
    assert_eq!(panel.until_set("sequencer", "voltage").await, json!(229.8));

    // The demo's macros: Room on skips powering the projector already warming up and
    // waits for it to be on (2 s).
    panel
        .send(json!({"type": "command", "id": "on", "macro": "room-on"}))
        .await;
    let result = panel.result(json!("on")).await;
    assert_eq!(result["ok"], true, "{result}");
    assert_eq!(panel.known("proj-left", "power"), &json!("on"));
    assert_eq!(panel.known("@macros", "room-on")["state"], "done");
    assert_eq!(room.site.schedules.len(), 1);
    gw.shutdown().await;
    room.shutdown().await;
}
