//! `cargo bench --bench commands`: what durability costs a room full of panels sending
//! commands.
//!
//! 50 panels, 100 commands each (an input change, which the projector reads back as an
//! event), against ten simulated PJLink projectors through the real gateway, once with the
//! journal on disk (every command recorded as pending before it runs and again with its
//! outcome, events committed before panels see them) and once in memory. Each panel sends
//! its next command when the previous result arrives. Prints commands per second, result
//! latency and the ratio of the two modes, measured the same way in the same run.

use std::net::SocketAddr;
use std::time::{Duration, Instant};

use avgate::Gateway;
use avgate::config::parse_site;
use avgate_drivers::pjlink::simulator as sim;
use futures_util::{SinkExt, StreamExt};
use serde_json::{Value, json};
use tokio_tungstenite::connect_async;
use tokio_tungstenite::tungstenite::Message;

const PANELS: usize = 50;
const COMMANDS: usize = 100;
const PROJECTORS: usize = 10;

#[tokio::main]
async fn main() {
    let mut projectors = Vec::new();
    for _ in 0..PROJECTORS {
        let config = sim::Config {
            listen: "127.0.0.1:0".parse().unwrap(),
            ..sim::Config::default()
        };
        projectors.push(sim::start(config).await.expect("simulator starts"));
    }
    let addrs: Vec<SocketAddr> = projectors.iter().map(|p| p.local_addr()).collect();

    let durable = run(&addrs, true).await;
    let memory = run(&addrs, false).await;
    println!(
        "{PANELS} panels x {COMMANDS} commands over {PROJECTORS} PJLink simulators, each panel waiting for its result before the next"
    );
    println!("  mode       commands/s   p50 ms   p99 ms   total s");
    for (name, r) in [("durable", &durable), ("in memory", &memory)] {
        println!(
            "  {name:<9} {:>11.0} {:>8.2} {:>8.2} {:>9.2}",
            r.rate, r.p50, r.p99, r.total
        );
    }
    println!(
        "  durable time / in-memory time = {:.2} (target: at most 2)",
        durable.total / memory.total
    );
}

struct Run {
    rate: f64,
    p50: f64,
    p99: f64,
    total: f64,
}

async fn run(projectors: &[SocketAddr], durable: bool) -> Run {
    let dir = tempfile::tempdir().expect("temp dir");
    let mut toml = format!(
        "[server]\nlisten = \"127.0.0.1:0\"\n[journal]\ndurable = {durable}\n[commands]\nqueue = 64\n"
    );
    for (i, addr) in projectors.iter().enumerate() {
        toml += &format!(
            "[devices.p{i}]\nprofile = \"pjlink-projector\"\naddress = \"{addr}\"\n[devices.p{i}.overrides]\npoll = {{ power = \"5s\", input = \"5s\" }}\n"
        );
    }
    let site = parse_site(&dir.path().join("site.toml"), &toml).expect("bench site");
    let gateway = Gateway::start(site).await.expect("gateway starts");
    // A bench may poll: wait until every projector is connected.
    while gateway
        .journal()
        .snapshot()
        .devices
        .values()
        .any(|d| !d.online)
    {
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    let addr = gateway.local_addr();
    let started = Instant::now();
    let panels: Vec<_> = (0..PANELS)
        .map(|i| tokio::spawn(panel(addr, i, format!("p{}", i % PROJECTORS))))
        .collect();
    let mut latencies = Vec::with_capacity(PANELS * COMMANDS);
    for panel in panels {
        latencies.extend(panel.await.expect("panel ran"));
    }
    let total = started.elapsed().as_secs_f64();
    gateway.shutdown().await;
    latencies.sort_by(f64::total_cmp);
    let at = |p: f64| latencies[((latencies.len() - 1) as f64 * p) as usize];
    Run {
        rate: latencies.len() as f64 / total,
        p50: at(0.5),
        p99: at(0.99),
        total,
    }
}

/// One panel: hello, then its commands one after another; returns each result's latency
/// in milliseconds.
async fn panel(addr: SocketAddr, index: usize, device: String) -> Vec<f64> {
    let (mut ws, _) = connect_async(format!("ws://{addr}/ws"))
        .await
        .expect("panel connects");
    let hello = json!({"type": "hello", "client": format!("bench-{index}"), "subscribe": [format!("{device}/*")]});
    ws.send(Message::Text(hello.to_string().into()))
        .await
        .unwrap();
    let mut latencies = Vec::with_capacity(COMMANDS);
    for n in 0..COMMANDS {
        let source = if (n + index).is_multiple_of(2) {
            "hdmi1"
        } else {
            "hdmi2"
        };
        let command = json!({"type": "command", "id": n, "device": device, "command": "input", "args": {"source": source}});
        let sent = Instant::now();
        ws.send(Message::Text(command.to_string().into()))
            .await
            .unwrap();
        loop {
            let Some(Ok(message)) = ws.next().await else {
                panic!("panel {index} lost its connection");
            };
            let Message::Text(text) = message else {
                continue;
            };
            let message: Value = serde_json::from_str(&text).unwrap();
            if message["type"] == "result" && message["id"] == n {
                assert_eq!(message["ok"], true, "{message}");
                break;
            }
        }
        latencies.push(sent.elapsed().as_secs_f64() * 1000.0);
    }
    let _ = ws.close(None).await;
    latencies
}
