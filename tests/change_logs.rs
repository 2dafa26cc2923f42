//! The debug log says what changed to what, on which link, in words that read naturally.
//! One test in this file: it installs the process's log subscriber.

mod common;

use common::*;
use serde_json::json;

#[tokio::test]
async fn a_change_is_logged_with_its_value_under_its_link() {
    let captured = CapturedLog::install("avgate=debug");

    let sim = projector(None).await;
    let gateway = gateway(&site_toml(&[("proj", sim.local_addr(), None)], "")).await;
    let (mut panel, _) = Panel::hello(&gateway, json!({"type": "hello"})).await;
    panel.until_event("proj", "power", json!("off")).await;
    gateway.shutdown().await;

    let log = captured.text();
    let change = log
        .lines()
        .find(|l| l.contains("changed") && l.contains("point=\"power\""))
        .unwrap_or_else(|| panic!("no change of power logged:\n{log}"));
    assert!(change.contains("value=\"off\""), "{change}");
    assert!(
        change.contains(&format!("link{{link={}}}", sim.local_addr())),
        "the link is named as it is written: {change}"
    );
}
