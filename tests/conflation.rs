//! Volume sliders dragged from many panels at once, through the real gateway: set-style
//! commands for the same target replace each other while they wait, so every command is
//! answered (`ok`, or `superseded` by a newer one), none is refused `device_busy`, and the
//! device ends on the last value sent.

mod common;

use std::collections::BTreeMap;
use std::net::SocketAddr;

use avgate_drivers::extron::simulator as sim;
use common::*;
use futures_util::future::join_all;
use serde_json::{Value, json};

const PANELS: usize = 50;
const PER_PANEL: usize = 100;

/// Where each slider stops: output 1 (even panels) and output 2 (odd panels).
const FINAL_LEVEL: [u64; 2] = [40, 60];

fn site(addr: SocketAddr) -> String {
    format!(
        "[server]\nlisten = \"127.0.0.1:0\"\n[journal]\ndurable = false\n\
         [devices.sw]\nprofile = \"extron-sis-switcher\"\naddress = \"{addr}\"\n\
         [devices.sw.overrides]\ncommand_timeout = \"2s\"\n"
    )
}

/// Drags output `output`'s slider through `PER_PANEL` values ending at its final level,
/// sending each without waiting for the last; returns each command's result.
async fn drag(mut panel: Panel, panel_no: usize, output: usize) -> Vec<Value> {
    for step in 0..PER_PANEL {
        let level = if step == PER_PANEL - 1 {
            FINAL_LEVEL[output - 1]
        } else {
            // Within the profile's 0..=64 raw scale.
            ((panel_no * 7 + step * 3) % 60) as u64
        };
        panel
            .command(
                json!(format!("p{panel_no}-{step}")),
                "sw",
                "volume",
                json!({"output": output, "level": level}),
            )
            .await;
    }
    let mut results = BTreeMap::new();
    while results.len() < PER_PANEL {
        let result = panel.until("a result", |m| m["type"] == "result").await;
        let id = result["id"].as_str().expect("string id").to_string();
        assert!(
            results.insert(id, result.clone()).is_none(),
            "one result per command: {result}"
        );
    }
    panel.close().await;
    results.into_values().collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sliders_dragged_from_fifty_panels_converge_without_device_busy() {
    let switcher = sim::start(sim::Config::default())
        .await
        .expect("switcher simulator starts");
    let gw = gateway(&site(switcher.local_addr())).await;
    let mut panels = Vec::new();
    for _ in 0..PANELS {
        let (mut panel, _) = Panel::hello(&gw, json!({"type": "hello"})).await;
        panel.until_event("sw", "online", json!(true)).await;
        panels.push(panel);
    }
    let volume_commands_before = volume_commands(&switcher);

    let drags = panels
        .into_iter()
        .enumerate()
        .map(|(panel_no, panel)| drag(panel, panel_no, 1 + panel_no % 2));
    let results: Vec<Value> = join_all(drags).await.into_iter().flatten().collect();

    let mut outcomes = BTreeMap::<String, usize>::new();
    for result in &results {
        let outcome = match result["ok"].as_bool() {
            Some(true) => "ok".to_string(),
            _ => result["error"]["code"].as_str().unwrap_or("?").to_string(),
        };
        *outcomes.entry(outcome).or_default() += 1;
    }
    let sent_to_device = volume_commands(&switcher) - volume_commands_before;
    eprintln!(
        "{} commands from {PANELS} panels: {outcomes:?}; {sent_to_device} volume commands reached the switcher",
        results.len()
    );
    assert_eq!(results.len(), PANELS * PER_PANEL);
    let answered = outcomes.get("ok").unwrap_or(&0) + outcomes.get("superseded").unwrap_or(&0);
    assert_eq!(
        answered,
        PANELS * PER_PANEL,
        "every command ok or superseded, none refused: {outcomes:?}"
    );
    assert!(outcomes["superseded"] > 0, "{outcomes:?}");
    for superseded in results.iter().filter(|r| r["ok"] == false) {
        let message = superseded["error"]["message"].as_str().unwrap_or_default();
        assert!(
            message.contains("`volume` command `p"),
            "names the newer command: {superseded}"
        );
    }
    let state = switcher.state();
    assert_eq!(u64::from(state.outputs[0].volume), FINAL_LEVEL[0]);
    assert_eq!(u64::from(state.outputs[1].volume), FINAL_LEVEL[1]);
    gw.shutdown().await;
}

/// Volume commands (`1*40V`-style) the switcher has received so far.
fn volume_commands(switcher: &sim::Handle) -> usize {
    switcher
        .commands_received()
        .iter()
        .filter(|c| c.ends_with('V') && c.contains('*'))
        .count()
}
