//! What panels send cannot forge lines in, or send escapes to, the gateway's text log.
//! One test in this file: it installs the process's log subscriber.

mod common;

use common::*;
use serde_json::json;

#[tokio::test]
async fn panel_strings_are_escaped_in_text_logs() {
    let captured = CapturedLog::install("avgate=debug");

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

    let log = captured.text();
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
