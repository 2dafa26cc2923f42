//! The debug log says what changed to what, on which link, in words that read naturally.
//! One test in this file: it installs the process's log subscriber.

mod common;

use std::io::Write;
use std::sync::{Arc, Mutex};

use common::*;
use serde_json::json;

#[derive(Clone, Default)]
struct Captured(Arc<Mutex<Vec<u8>>>);

impl Write for Captured {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        self.0.lock().unwrap().extend_from_slice(buf);
        Ok(buf.len())
    }

    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

#[tokio::test]
async fn a_change_is_logged_with_its_value_under_its_link() {
    let captured = Captured::default();
    let writer = captured.clone();
    tracing_subscriber::fmt()
        .with_env_filter("avgate=debug")
        .with_ansi(false)
        .with_writer(move || writer.clone())
        .init();

    let sim = projector(None).await;
    let gateway = gateway(&site_toml(&[("proj", sim.local_addr(), None)], "")).await;
    let (mut panel, _) = Panel::hello(&gateway, json!({"type": "hello"})).await;
    panel.until_event("proj", "power", json!("off")).await;
    gateway.shutdown().await;

    let log = String::from_utf8(captured.0.lock().unwrap().clone()).unwrap();
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
