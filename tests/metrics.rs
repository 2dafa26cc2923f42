//! `GET /metrics`: what it counts after real traffic, that an independent parser reads it,
//! and that names and types only change on purpose (tests/golden/metrics.txt).
//!
//! The metrics recorder is one per process, so everything that reads counters is one test.

mod common;
mod peer_support;

use std::collections::BTreeSet;
use std::time::Duration;

use common::{DEADLINE, Panel, gateway, http_request, projector, site_toml};
use serde_json::json;

/// The value of the sample `series` (name and labels exactly as rendered).
fn sample(text: &str, series: &str) -> Option<f64> {
    text.lines()
        .filter(|l| !l.starts_with('#'))
        .find_map(|l| l.strip_prefix(series)?.strip_prefix(' '))
        .map(|v| v.trim().parse().expect("a number"))
}

/// `name type` for every family, from the `# TYPE` lines.
fn families(text: &str) -> BTreeSet<String> {
    text.lines()
        .filter_map(|l| l.strip_prefix("# TYPE "))
        .map(str::to_string)
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn metrics_count_devices_commands_panels_and_the_journal() {
    let sim = projector(None).await;
    let data = tempfile::tempdir().unwrap();
    let journal = format!(
        "[journal]\ndurable = true\ndata_dir = \"{}\"\n",
        data.path().display()
    );
    let gw = gateway(&site_toml(&[("proj", sim.local_addr(), None)], &journal)).await;
    let addr = gw.local_addr();

    let (mut panel, _) = Panel::hello(&gw, json!({"type": "hello", "client": "m"})).await;
    panel.until_event("proj", "online", json!(true)).await;
    let sent = std::time::Instant::now();
    panel
        .command(json!("c1"), "proj", "power", json!({"on": true}))
        .await;
    assert_eq!(panel.result(json!("c1")).await["ok"], true);
    let round_trip = sent.elapsed().as_secs_f64();
    // The same id again is answered from the ledger.
    panel
        .command(json!("c1"), "proj", "power", json!({"on": true}))
        .await;
    panel.result(json!("c1")).await;
    panel.close().await;

    // The panel's end, a poll's answer and the journal's commit land on their own time;
    // nothing outside the gateway can await them, so scrape until they show.
    let text = tokio::time::timeout(DEADLINE, async {
        loop {
            let (status, text) = http_request(addr, "/metrics", None).await;
            assert!(status.starts_with("HTTP/1.1 200"), "{status}: {text}");
            let dropped = sample(&text, "avgate_panels_dropped_total{reason=\"closed\"}");
            let committed = sample(&text, "avgate_journal_commit_duration_seconds_count");
            let polled = sample(
                &text,
                "avgate_device_poll_duration_seconds_count{device=\"proj\"}",
            );
            if dropped >= Some(1.0) && committed >= Some(1.0) && polled >= Some(1.0) {
                return text;
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    })
    .await
    .expect("the panel's end, a poll and a journal commit show in /metrics");

    assert_eq!(
        sample(&text, "avgate_device_up{device=\"proj\"}"),
        Some(1.0)
    );
    assert!(
        sample(&text, "avgate_commands_total{outcome=\"ok\"}") >= Some(1.0),
        "{text}"
    );
    assert!(
        sample(&text, "avgate_commands_deduplicated_total") >= Some(1.0),
        "{text}"
    );
    assert!(
        sample(&text, "avgate_panel_sessions_total{outcome=\"snapshot\"}") >= Some(1.0),
        "{text}"
    );
    assert!(sample(&text, "avgate_journal_seq") >= Some(2.0), "{text}");
    assert_eq!(sample(&text, "avgate_panels_connected"), Some(0.0));
    let link = format!("link=\"{}\"", sim.local_addr());
    assert!(
        sample(&text, &format!("avgate_link_bytes_in_total{{{link}}}")) > Some(0.0),
        "{text}"
    );
    assert!(
        sample(&text, &format!("avgate_link_bytes_out_total{{{link}}}")) > Some(0.0),
        "{text}"
    );
    assert!(
        sample(
            &text,
            "avgate_device_command_duration_seconds_count{device=\"proj\"}"
        ) >= Some(1.0),
        "{text}"
    );
    assert!(
        sample(
            &text,
            "avgate_device_poll_duration_seconds_count{device=\"proj\"}"
        ) >= Some(1.0),
        "{text}"
    );
    assert_eq!(
        sample(
            &text,
            "avgate_device_errors_total{device=\"proj\",kind=\"timeout\"}"
        ),
        Some(0.0)
    );
    // The gateway's share of c1 (the duplicate did not run again, so it is not timed) and
    // the device's time fit in the round trip the panel saw.
    assert_eq!(
        sample(&text, "avgate_command_gateway_seconds_count"),
        Some(1.0),
        "{text}"
    );
    let gateway_share = sample(&text, "avgate_command_gateway_seconds_sum").unwrap();
    let device_time = sample(
        &text,
        "avgate_device_command_duration_seconds_sum{device=\"proj\"}",
    )
    .unwrap();
    assert!(gateway_share > 0.0, "{text}");
    assert!(
        gateway_share + device_time <= round_trip,
        "gateway {gateway_share} s + device {device_time} s within the panel's {round_trip} s"
    );
    assert!(
        !text.contains("\"c1\"") && !text.contains("\"m\""),
        "no command ids or panel names in labels: {text}"
    );

    // Names and types are a contract with dashboards and alerts: a change must be a
    // deliberate edit of the golden file.
    let golden: BTreeSet<String> = include_str!("golden/metrics.txt")
        .lines()
        .filter(|l| !l.is_empty() && !l.starts_with("//"))
        .map(str::to_string)
        .collect();
    let rendered = families(&text);
    assert_eq!(
        rendered, golden,
        "metric families changed; if on purpose, update tests/golden/metrics.txt"
    );

    // An independent parser reads it: the official Prometheus Python client.
    if let Some(python) = peer_support::python("prometheus-client") {
        let file = data.path().join("metrics.txt");
        std::fs::write(&file, &text).unwrap();
        let expected: Vec<String> = golden.iter().map(|l| l.replace(' ', ":")).collect();
        let mut args = vec![file.to_str().unwrap()];
        args.extend(expected.iter().map(String::as_str));
        peer_support::run_script(&python, "tests/peers/prometheus_parse.py", &args, DEADLINE).await;
    }
    gw.shutdown().await;
}
