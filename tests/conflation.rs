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

/// `journal`: the site's `[journal]` table.
fn site(addr: SocketAddr, journal: &str) -> String {
    format!(
        "[server]\nlisten = \"127.0.0.1:0\"\n[journal]\n{journal}\n\
         [devices.sw]\nprofile = \"extron-sis-switcher\"\naddress = \"{addr}\"\n\
         [devices.sw.overrides]\ncommand_timeout = \"5s\"\n"
    )
}

async fn volume(panel: &mut Panel, id: &str, output: usize, level: u64) {
    let args = json!({"output": output, "level": level});
    panel.command(json!(id), "sw", "volume", args).await;
}

/// Reads `panel`'s messages, keeping every `result` in `results`, until `done` holds for
/// one of them.
async fn read_until(
    panel: &mut Panel,
    results: &mut BTreeMap<String, Value>,
    done: impl Fn(&Value, &BTreeMap<String, Value>) -> bool,
) {
    loop {
        let message = panel.next().await;
        if message["type"] == "result" {
            let id = message["id"].as_str().expect("string id").to_string();
            assert!(
                results.insert(id, message.clone()).is_none(),
                "one result per command: {message}"
            );
        }
        if done(&message, results) {
            return;
        }
    }
}

/// Counts results by outcome: `ok` or the error code.
fn tally<'a>(results: impl IntoIterator<Item = &'a Value>) -> BTreeMap<String, usize> {
    let mut outcomes = BTreeMap::new();
    for result in results {
        let outcome = match result["ok"].as_bool() {
            Some(true) => "ok".to_string(),
            _ => result["error"]["code"].as_str().unwrap_or("?").to_string(),
        };
        *outcomes.entry(outcome).or_default() += 1;
    }
    outcomes
}

/// Every command answered `ok` or `superseded`; each `superseded` names a newer command.
fn assert_all_answered(outcomes: &BTreeMap<String, usize>, results: &[Value], sent: usize) {
    assert_eq!(results.len(), sent);
    let answered = outcomes.get("ok").unwrap_or(&0) + outcomes.get("superseded").unwrap_or(&0);
    assert_eq!(
        answered, sent,
        "every command ok or superseded, none refused: {outcomes:?}"
    );
    for superseded in results.iter().filter(|r| r["ok"] == false) {
        let message = superseded["error"]["message"].as_str().unwrap_or_default();
        assert!(
            message.contains("`volume` command `"),
            "names the newer command: {superseded}"
        );
    }
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
        volume(&mut panel, &format!("p{panel_no}-{step}"), output, level).await;
    }
    let mut results = BTreeMap::new();
    read_until(&mut panel, &mut results, |_, results| {
        results.len() == PER_PANEL
    })
    .await;
    panel.close().await;
    results.into_values().collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sliders_dragged_from_fifty_panels_converge_without_device_busy() {
    let switcher = sim::start(sim::Config::default())
        .await
        .expect("switcher simulator starts");
    let gw = gateway(&site(switcher.local_addr(), "durable = false")).await;
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

    let outcomes = tally(&results);
    let sent_to_device = volume_commands(&switcher) - volume_commands_before;
    eprintln!(
        "{} commands from {PANELS} panels: {outcomes:?}; {sent_to_device} volume commands reached the switcher",
        results.len()
    );
    assert_all_answered(&outcomes, &results, PANELS * PER_PANEL);
    assert!(outcomes["superseded"] > 0, "{outcomes:?}");
    let state = switcher.state();
    assert_eq!(u64::from(state.outputs[0].volume), FINAL_LEVEL[0]);
    assert_eq!(u64::from(state.outputs[1].volume), FINAL_LEVEL[1]);
    gw.shutdown().await;
}

/// Two panels drag one slider with durable commands, where recording each command on disk
/// before it is queued reorders them on their way to the device: the device still ends on
/// the value sent last.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_slider_dragged_from_two_panels_ends_on_the_last_value_sent() {
    let switcher = sim::start(sim::Config::default())
        .await
        .expect("switcher simulator starts");
    let data = tempfile::tempdir().unwrap();
    let journal = format!("data_dir = \"{}\"", data.path().display());
    let gw = gateway(&site(switcher.local_addr(), &journal)).await;
    let (mut left, _) = Panel::hello(&gw, json!({"type": "hello"})).await;
    let (mut right, _) = Panel::hello(&gw, json!({"type": "hello"})).await;
    left.until_event("sw", "online", json!(true)).await;
    right.until_event("sw", "online", json!(true)).await;

    tokio::join!(
        drag_without_letting_go(&mut left, "l"),
        drag_without_letting_go(&mut right, "r")
    );
    // The left panel lets go first; once its last value is accepted, the right one's.
    let (mut left_results, mut right_results) = (BTreeMap::new(), BTreeMap::new());
    let last = |side: &str| format!("{side}-{}", PER_PANEL - 1);
    volume(&mut left, &last("l"), 1, 20).await;
    read_until(&mut left, &mut left_results, |m, _| {
        m["type"] == "accepted" && m["id"] == last("l")
    })
    .await;
    volume(&mut right, &last("r"), 1, 55).await;
    let all_in = |_: &Value, results: &BTreeMap<String, Value>| results.len() == PER_PANEL;
    read_until(&mut left, &mut left_results, all_in).await;
    read_until(&mut right, &mut right_results, all_in).await;

    assert_eq!(right_results[&last("r")]["ok"], true, "the last value runs");
    let results: Vec<Value> = left_results
        .into_values()
        .chain(right_results.into_values())
        .collect();
    let outcomes = tally(&results);
    eprintln!(
        "{} commands from 2 durable panels: {outcomes:?}",
        results.len()
    );
    assert_all_answered(&outcomes, &results, 2 * PER_PANEL);
    assert_eq!(switcher.state().outputs[0].volume, 55);
    gw.shutdown().await;
}

/// Sends all but the last of a drag's values for output 1, without waiting.
async fn drag_without_letting_go(panel: &mut Panel, side: &str) {
    for step in 0..PER_PANEL - 1 {
        volume(panel, &format!("{side}-{step}"), 1, (step % 60) as u64).await;
    }
}

/// Volume commands (`1*40V`-style) the switcher has received so far.
fn volume_commands(switcher: &sim::Handle) -> usize {
    switcher
        .commands_received()
        .iter()
        .filter(|c| c.ends_with('V') && c.contains('*'))
        .count()
}
