//! What panels send cannot forge lines in, or send escapes to, the gateway's text log.
//! One test in this file: it installs the process's log subscriber.

mod common;

use std::io::Write;
use std::sync::{Arc, Mutex};

use common::*;
use serde_json::json;

/// Collects everything logged, as the text format writes it.
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
async fn panel_strings_are_escaped_in_text_logs() {
    let captured = Captured::default();
    let writer = captured.clone();
    tracing_subscriber::fmt()
        .with_env_filter("avgate=debug")
        .with_ansi(false)
        .with_writer(move || writer.clone())
        .init();

    let gateway = gateway(&site_toml(&[], "")).await;
    let forged = "proj\n2026-11-30T00:00:00.000000Z  WARN avgate: FORGED line\u{1b}[31m";
    let (mut panel, _) = Panel::hello(&gateway, json!({"type": "hello", "client": forged})).await;
    panel
        .command(json!(forged), forged, forged, json!({}))
        .await;
    let result = panel.result(json!(forged)).await;
    assert_eq!(result["error"]["code"], "unknown_device", "{result}");
    panel.close().await;
    gateway.shutdown().await;

    let log = String::from_utf8(captured.0.lock().unwrap().clone()).unwrap();
    assert!(
        log.contains(r"proj\n2026-11-30T00:00:00.000000Z  WARN avgate: FORGED line\u{1b}[31m"),
        "the panel's strings are in the log, escaped:\n{log}"
    );
    for line in log.lines() {
        assert!(
            !line.contains("FORGED") || line.contains("INFO"),
            "a panel forged a log line: {line:?}"
        );
        assert!(!line.starts_with("2026-11-30T00:00:00.000000Z"), "{line:?}");
    }
    assert!(!log.contains('\u{1b}'), "an escape reached the log");
}
