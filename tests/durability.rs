//! Delivery across gateway restarts: the real `avgate` binary, killed with SIGKILL and
//! started again on the same data directory, with simulators and panels in this process.

mod common;

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use avgate_drivers::pjlink::simulator::Fault;
use common::*;
use serde_json::json;
use tokio::process::{Child, Command};

/// The gateway binary running a site; killed when dropped.
struct GatewayProcess {
    child: Child,
    addr: SocketAddr,
    log: PathBuf,
}

impl GatewayProcess {
    async fn start(site: &Path, log: PathBuf) -> GatewayProcess {
        let addr = free_port();
        let child = Command::new(env!("CARGO_BIN_EXE_avgate"))
            .args(["run", "--config"])
            .arg(site)
            .args(["--listen", &addr.to_string()])
            .env("RUST_LOG", "info")
            .stdout(Stdio::null())
            .stderr(
                std::fs::OpenOptions::new()
                    .create(true)
                    .append(true)
                    .open(&log)
                    .unwrap(),
            )
            .kill_on_drop(true)
            .spawn()
            .expect("the avgate binary starts");
        let gateway = GatewayProcess { child, addr, log };
        gateway.wait_until_serving().await;
        gateway
    }

    /// Another process has no event to await: poll its port, bounded by the deadline.
    async fn wait_until_serving(&self) {
        let deadline = tokio::time::Instant::now() + DEADLINE;
        while tokio::net::TcpStream::connect(self.addr).await.is_err() {
            assert!(
                tokio::time::Instant::now() < deadline,
                "gateway not serving: {}",
                self.log_text()
            );
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }

    /// SIGKILL: no shutdown code runs, exactly like a power cut for the process.
    async fn kill9(mut self) {
        self.child.kill().await.expect("kill");
    }

    fn log_text(&self) -> String {
        std::fs::read_to_string(&self.log).unwrap_or_default()
    }
}

fn free_port() -> SocketAddr {
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    listener.local_addr().unwrap()
}

fn write_site(dir: &Path, projector: SocketAddr) -> PathBuf {
    let site = format!(
        "[journal]\ndata_dir = \"data\"\n\
         [devices.proj]\nprofile = \"pjlink-projector\"\naddress = \"{projector}\"\n\
         [devices.proj.overrides]\ncommand_timeout = \"1s\"\nconnect_timeout = \"1s\"\npoll = {{ power = \"200ms\", input = \"100ms\" }}\n"
    );
    let path = dir.join("site.toml");
    std::fs::write(&path, site).unwrap();
    path
}

/// Flips the projector's input from its "front panel" until stopped, so events keep
/// flowing while the gateway is killed.
fn keep_changing_input(projector: avgate_drivers::pjlink::simulator::Handle) -> Arc<AtomicBool> {
    let running = Arc::new(AtomicBool::new(true));
    let flag = running.clone();
    tokio::spawn(async move {
        let mut interval = tokio::time::interval(Duration::from_millis(60));
        let mut toggle = false;
        while flag.load(Ordering::Relaxed) {
            interval.tick().await;
            toggle = !toggle;
            projector.set_input(if toggle { "32" } else { "31" });
        }
    });
    running
}

#[tokio::test]
async fn after_kill_9_a_resuming_panel_gets_every_event_once_and_commands_do_not_rerun() {
    let projector = projector(None).await;
    let dir = tempfile::tempdir().unwrap();
    let site = write_site(dir.path(), projector.local_addr());
    let gateway = GatewayProcess::start(&site, dir.path().join("gateway.log")).await;

    let hello = json!({"type": "hello", "client": "wall-panel"});
    let (mut panel, welcome) = Panel::hello_to(gateway.addr, hello).await;
    let epoch = welcome["epoch"].as_u64().unwrap();
    panel.until_event("proj", "online", json!(true)).await;
    panel
        .command(json!("power-1"), "proj", "power", json!({"on": true}))
        .await;
    assert_eq!(panel.result(json!("power-1")).await["ok"], true);

    // Mid-stream: events are flowing when the gateway is killed.
    let changing = keep_changing_input(projector.clone());
    let first = panel.seqs.len();
    while panel.seqs.len() < first + 5 {
        panel.next().await;
    }
    gateway.kill9().await;
    // Drain what was sent before the kill (the harness checks every seq is one more).
    while panel.try_next(DEADLINE).await.is_some() {}
    let last_seen = panel.at.expect("the panel saw events");

    let restarted = GatewayProcess::start(&site, dir.path().join("gateway.log")).await;
    let hello = json!({"type": "hello", "client": "wall-panel", "resume": {"epoch": epoch, "seq": last_seen}});
    let (mut panel, welcome) = Panel::hello_to(restarted.addr, hello).await;
    assert_eq!(
        welcome["epoch"], epoch,
        "a restart keeps the epoch: {welcome}"
    );
    assert_eq!(welcome["resumed"], true, "{welcome}");
    assert!(
        welcome["seq"].as_u64().unwrap() >= last_seen,
        "nothing a panel saw is taken back"
    );
    panel.at = Some(last_seen);
    // The restart is visible: the device is offline (its values stale) until it is read
    // again, then online. Every seq arrives exactly once, in order.
    panel.until_event("proj", "online", json!(false)).await;
    panel.until_event("proj", "online", json!(true)).await;
    changing.store(false, Ordering::Relaxed);
    assert_eq!(panel.seqs.first(), Some(&(last_seen + 1)));

    // The same command id, re-sent after the restart, is answered from the ledger.
    panel
        .command(json!("power-1"), "proj", "power", json!({"on": true}))
        .await;
    let accepted = panel.until("accepted", |m| m["type"] == "accepted").await;
    assert_eq!(accepted["duplicate"], true, "{accepted}");
    assert_eq!(panel.result(json!("power-1")).await["ok"], true);
    let sets = projector
        .commands_received()
        .iter()
        .filter(|l| l.starts_with("%1POWR 1"))
        .count();
    assert_eq!(
        sets,
        1,
        "power on reached the projector once: {:?}",
        projector.commands_received()
    );
    restarted.kill9().await;
}

/// Ways a journal file gets damaged: (what, how).
type Damage = (&'static str, fn(&Path));

const DAMAGES: [Damage; 3] = [
    ("garbage over the whole file", |path| {
        std::fs::write(path, vec![0xA5; 8192]).unwrap();
    }),
    ("4 KiB of random bytes in the middle", |path| {
        let mut garbage = vec![0u8; 4096];
        fastrand::Rng::with_seed(10).fill(&mut garbage);
        overwrite_live_data(path, &garbage);
    }),
    ("64 KiB of zeros", |path| {
        overwrite_live_data(path, &[0u8; 64 * 1024])
    }),
];

/// Writes `bytes` over the 4 KiB page holding the middle one of the stored events (found by
/// their text), so the damage hits live data rather than free space.
fn overwrite_live_data(path: &Path, bytes: &[u8]) {
    use std::io::{Seek, SeekFrom, Write};
    let content = std::fs::read(path).unwrap();
    let needle = b"lamp_hours";
    let hits: Vec<usize> = content
        .windows(needle.len())
        .enumerate()
        .filter(|(_, w)| w == needle)
        .map(|(i, _)| i)
        .collect();
    assert!(hits.len() > 100, "the journal holds the events");
    let middle = hits[hits.len() / 2] as u64;
    let mut file = std::fs::OpenOptions::new().write(true).open(path).unwrap();
    file.seek(SeekFrom::Start(middle / 4096 * 4096)).unwrap();
    file.write_all(bytes).unwrap();
}

#[tokio::test]
async fn a_damaged_journal_starts_a_new_epoch_with_a_clear_log_line() {
    for (what, damage) in DAMAGES {
        damaged_journal_starts_a_new_epoch(what, damage).await;
    }
}

/// A journal with a history big enough that damage in its middle hits live data: 3000
/// events, written the way the gateway writes them. Returns its epoch.
fn journal_with_history(data: &Path) -> u64 {
    use avgate::store::{Batch, Retention, Store};
    let retention = Retention::events(1_000_000, Duration::from_secs(3600));
    let (store, recovered) = Store::open(data, retention, 10).unwrap();
    let frame = r#"{"type":"event","seq":0,"ts":"2026-11-30T12:00:00.000Z","device":"proj","point":"lamp_hours","value":1234}"#;
    let now = avgate::store::unix_millis(std::time::SystemTime::now());
    for start in (1..=3_000u64).step_by(500) {
        let events: Vec<(u64, u64, &str)> = (start..start + 500).map(|s| (s, now, frame)).collect();
        store
            .commit(&Batch {
                events: &events,
                ..Batch::default()
            })
            .unwrap();
    }
    recovered.epoch
}

async fn damaged_journal_starts_a_new_epoch(what: &str, damage: fn(&Path)) {
    let projector = projector(None).await;
    let dir = tempfile::tempdir().unwrap();
    let site = write_site(dir.path(), projector.local_addr());
    let old_epoch = journal_with_history(&dir.path().join("data"));
    damage(&dir.path().join("data/journal.redb"));

    let restarted = GatewayProcess::start(&site, dir.path().join("gateway.log")).await;
    let hello = json!({"type": "hello", "resume": {"epoch": old_epoch, "seq": 3000}});
    let (mut panel, welcome) = Panel::hello_to(restarted.addr, hello).await;
    assert_ne!(
        welcome["epoch"],
        old_epoch,
        "{what}: history was lost: a new epoch: {}",
        restarted.log_text()
    );
    assert_eq!(welcome["resumed"], false);
    assert_eq!(panel.next().await["type"], "snapshot");
    let log = restarted.log_text();
    assert!(
        log.contains("could not be read") && log.contains("moved it to"),
        "{what}: the log says what happened: {log}"
    );
    // And the fresh journal works: the device's events flow.
    panel.until_event("proj", "online", json!(true)).await;
    restarted.kill9().await;
}

#[tokio::test]
async fn a_graceful_restart_also_continues_the_series() {
    let projector = projector(None).await;
    let dir = tempfile::tempdir().unwrap();
    let site = write_site(dir.path(), projector.local_addr());
    let mut gateway = GatewayProcess::start(&site, dir.path().join("gateway.log")).await;
    let (mut panel, welcome) = Panel::hello_to(gateway.addr, json!({"type": "hello"})).await;
    panel.until_event("proj", "input", json!("hdmi1")).await;
    let last_seen = panel.at.unwrap();

    // SIGTERM: the gateway commits what it has and stops.
    let pid = gateway.child.id().expect("running") as i32;
    std::process::Command::new("kill")
        .args(["-TERM", &pid.to_string()])
        .status()
        .unwrap();
    let status = tokio::time::timeout(DEADLINE, gateway.child.wait())
        .await
        .expect("stops in time")
        .unwrap();
    assert!(status.success(), "a graceful stop exits 0: {status}");

    let restarted = GatewayProcess::start(&site, dir.path().join("gateway.log")).await;
    let hello = json!({"type": "hello", "resume": {"epoch": welcome["epoch"], "seq": last_seen}});
    let (_, welcome) = Panel::hello_to(restarted.addr, hello).await;
    assert_eq!(welcome["resumed"], true, "{welcome}");
    restarted.kill9().await;
}

#[tokio::test]
async fn a_command_running_when_the_gateway_dies_is_reported_not_rerun() {
    let projector = projector(None).await;
    let dir = tempfile::tempdir().unwrap();
    let site = write_site(dir.path(), projector.local_addr());
    let gateway = GatewayProcess::start(&site, dir.path().join("gateway.log")).await;
    let hello = json!({"type": "hello", "client": "desk"});
    let (mut panel, _) = Panel::hello_to(gateway.addr, hello.clone()).await;
    panel.until_event("proj", "online", json!(true)).await;

    // The projector takes the command and never answers; the gateway dies meanwhile.
    projector.inject(Fault::StallReplies(true));
    panel
        .command(json!("mute-1"), "proj", "mute", json!({"video": true}))
        .await;
    panel.until("accepted", |m| m["type"] == "accepted").await;
    let deadline = tokio::time::Instant::now() + DEADLINE;
    while !projector
        .commands_received()
        .iter()
        .any(|l| l.starts_with("%1AVMT 11"))
    {
        assert!(
            tokio::time::Instant::now() < deadline,
            "the command never reached the projector"
        );
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    gateway.kill9().await;
    projector.inject(Fault::StallReplies(false));

    let restarted = GatewayProcess::start(&site, dir.path().join("gateway.log")).await;
    let (mut panel, _) = Panel::hello_to(restarted.addr, hello).await;
    panel
        .command(json!("mute-1"), "proj", "mute", json!({"video": true}))
        .await;
    let result = panel.result(json!("mute-1")).await;
    assert_eq!(result["error"]["code"], "outcome_unknown", "{result}");
    let sent = projector
        .commands_received()
        .iter()
        .filter(|l| l.starts_with("%1AVMT 11"))
        .count();
    assert_eq!(sent, 1, "never re-run by the gateway itself");

    // The audit log on disk says what happened, across the restart.
    let audit = http_get(restarted.addr, "/api/audit?device=proj").await;
    let entries: serde_json::Value = serde_json::from_str(&audit).unwrap();
    let codes: Vec<&str> = entries
        .as_array()
        .unwrap()
        .iter()
        .filter_map(|e| e["error"]["code"].as_str())
        .collect();
    assert!(codes.contains(&"outcome_unknown"), "{audit}");
    restarted.kill9().await;
}
