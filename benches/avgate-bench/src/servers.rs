//! The two servers under test, each a separate process fed by its own load generator
//! (in this process, so the bench knows when every event left the device): avgate as the
//! real release binary with a generated site file, and the socket.io reference server
//! under Node.js. Also what the kernel says about a process: CPU time and resident memory.

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::sync::Arc;
use std::time::Duration;

use anyhow::{Context, bail};
use avgate_drivers::load::simulator as load_sim;
use tokio::io::{AsyncBufReadExt, BufReader};
use tokio::process::{Child, Command};
use tokio::time::{Instant, timeout};

use crate::panel::{Frame, Panel};

/// How long a server may take to start and see its device.
const START_LIMIT: Duration = Duration::from_secs(20);
/// Points on the load generator: a small room's worth.
pub const POINTS: u32 = 10;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Kind {
    Avgate,
    SocketIo,
}

impl Kind {
    pub fn name(self) -> &'static str {
        match self {
            Kind::Avgate => "avgate",
            Kind::SocketIo => "socket.io",
        }
    }
}

/// How to start avgate for a scenario.
#[derive(Debug, Clone, Copy)]
pub struct AvgateSetup {
    /// The journal on disk (the default) or in memory only.
    pub durable: bool,
    /// Events kept in memory for resuming panels.
    pub window: usize,
}

impl Default for AvgateSetup {
    fn default() -> Self {
        AvgateSetup {
            durable: true,
            window: 10_000,
        }
    }
}

/// Where the programs are; `socketio` is `Err(why)` when it cannot run here.
#[derive(Debug, Clone)]
pub struct Programs {
    pub avgate: PathBuf,
    pub socketio: Result<SocketIo, String>,
}

#[derive(Debug, Clone)]
pub struct SocketIo {
    pub node: PathBuf,
    pub dir: PathBuf,
    /// `node --version`, for the report.
    pub node_version: String,
}

pub struct Server {
    pub kind: Kind,
    pub addr: SocketAddr,
    pub load: Arc<load_sim::Handle>,
    child: Child,
    pid: u32,
    _dir: tempfile::TempDir,
}

/// One sample's value in Prometheus text.
fn sample(text: &str, series: &str) -> anyhow::Result<f64> {
    text.lines()
        .find_map(|line| line.strip_prefix(series)?.trim().parse::<f64>().ok())
        .ok_or_else(|| anyhow::anyhow!("/metrics has no {series}"))
}

impl Server {
    /// avgate's `/metrics` (open to loopback).
    async fn metrics(&self) -> anyhow::Result<String> {
        use tokio::io::{AsyncReadExt, AsyncWriteExt};
        let mut stream = tokio::net::TcpStream::connect(self.addr).await?;
        stream
            .write_all(b"GET /metrics HTTP/1.0\r\nHost: 127.0.0.1\r\n\r\n")
            .await?;
        let mut text = String::new();
        stream.read_to_string(&mut text).await?;
        Ok(text)
    }

    /// The mean time of the journal's group commits so far, and how many there were.
    pub async fn commit_mean(&self) -> anyhow::Result<(Duration, u64)> {
        let text = self.metrics().await?;
        let sum = sample(&text, "avgate_journal_commit_duration_seconds_sum")?;
        let count = sample(&text, "avgate_journal_commit_duration_seconds_count")? as u64;
        anyhow::ensure!(count > 0, "no group commit yet");
        Ok((Duration::from_secs_f64(sum / count as f64), count))
    }

    /// The gateway's own share of the device commands so far
    /// (`avgate_command_gateway_seconds`), at p50 and p99: the upper bound of the bucket
    /// each falls in, in microseconds.
    pub async fn gateway_share(&self) -> anyhow::Result<(f64, f64)> {
        let text = self.metrics().await?;
        let prefix = "avgate_command_gateway_seconds_bucket{le=\"";
        let buckets: Vec<(f64, f64)> = text
            .lines()
            .filter_map(|line| {
                let (bound, count) = line.strip_prefix(prefix)?.split_once("\"}")?;
                let bound = if bound == "+Inf" {
                    f64::INFINITY
                } else {
                    bound.parse().ok()?
                };
                Some((bound, count.trim().parse().ok()?))
            })
            .collect();
        let total = buckets.last().map_or(0.0, |b| b.1);
        anyhow::ensure!(total > 0.0, "/metrics timed no command");
        let at = |q: f64| {
            let bound = buckets
                .iter()
                .find(|(_, count)| *count >= q * total)
                .map_or(f64::INFINITY, |b| b.0);
            bound * 1e6
        };
        Ok((at(0.50), at(0.99)))
    }

    pub async fn start(
        kind: Kind,
        programs: &Programs,
        setup: AvgateSetup,
    ) -> anyhow::Result<Server> {
        let load = Arc::new(load_sim::start(load_sim::Config {
            points: POINTS,
            record_times: true,
            ..load_sim::Config::default()
        })?);
        let dir = tempfile::tempdir()?;
        let mut command = match kind {
            Kind::Avgate => {
                let site = dir.path().join("site.toml");
                std::fs::write(&site, site_file(load.local_addr(), setup))?;
                let mut command = Command::new(&programs.avgate);
                command.arg("run").arg("--config").arg(&site);
                command.env("RUST_LOG", "warn");
                command
            }
            Kind::SocketIo => {
                let socketio = programs
                    .socketio
                    .as_ref()
                    .map_err(|why| anyhow::anyhow!("{why}"))?;
                let mut command = Command::new(&socketio.node);
                command
                    .arg(socketio.dir.join("server.js"))
                    .arg("--load")
                    .arg(load.local_addr().to_string())
                    .current_dir(&socketio.dir);
                command
            }
        };
        let mut child = command
            .stdout(Stdio::piped())
            .stderr(Stdio::inherit())
            .stdin(Stdio::null())
            .kill_on_drop(true)
            .spawn()
            .with_context(|| format!("cannot start {}", kind.name()))?;
        let pid = child.id().context("the server exited at once")?;
        let stdout = child.stdout.take().context("no stdout")?;
        let port = timeout(START_LIMIT, listening_port(kind, stdout))
            .await
            .with_context(|| format!("{} did not say it was listening", kind.name()))??;
        let addr = SocketAddr::from(([127, 0, 0, 1], port));
        let server = Server {
            kind,
            addr,
            load,
            child,
            pid,
            _dir: dir,
        };
        timeout(START_LIMIT, server.wait_for_device())
            .await
            .with_context(|| format!("{} never connected to the load generator", kind.name()))??;
        Ok(server)
    }

    /// Waits until the server passes the generator's events on: one event every 100 ms
    /// until the probe panel sees one (avgate may still be connecting to the device).
    async fn wait_for_device(&self) -> anyhow::Result<()> {
        let (mut panel, _) = Panel::join(self.kind, self.addr, "bench-probe", None).await?;
        let first = self.load.published() + 1;
        let mut tick = tokio::time::interval(Duration::from_millis(100));
        loop {
            tokio::select! {
                _ = tick.tick() => {
                    self.load.publish(1000, 1).await;
                }
                frame = panel.next() => {
                    if matches!(frame?, Frame::Value(v) if v >= first) {
                        break;
                    }
                }
            }
        }
        panel.close().await;
        Ok(())
    }

    /// CPU time the server process has used, in clock ticks.
    pub fn cpu_ticks(&self) -> u64 {
        cpu_ticks(&format!("/proc/{}/stat", self.pid)).unwrap_or(0)
    }

    /// Resident memory of the server process, in KiB.
    pub fn rss_kib(&self) -> u64 {
        std::fs::read_to_string(format!("/proc/{}/status", self.pid))
            .ok()
            .and_then(|status| {
                status
                    .lines()
                    .find_map(|l| l.strip_prefix("VmRSS:"))
                    .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
            })
            .unwrap_or(0)
    }

    pub async fn stop(mut self) {
        // SIGTERM first so avgate closes its journal cleanly; then make sure.
        let _ = Command::new("kill")
            .arg(self.pid.to_string())
            .status()
            .await;
        if timeout(Duration::from_secs(5), self.child.wait())
            .await
            .is_err()
        {
            let _ = self.child.kill().await;
        }
        self.load.shutdown().await;
    }
}

/// CPU ticks (user + system) of a process from its `stat` file.
pub fn cpu_ticks(stat: &str) -> Option<u64> {
    let text = std::fs::read_to_string(stat).ok()?;
    // Fields after the command name, which may hold spaces: state is field 3, utime 14.
    let rest = &text[text.rfind(')')? + 2..];
    let fields: Vec<&str> = rest.split(' ').collect();
    let utime: u64 = fields.get(11)?.parse().ok()?;
    let stime: u64 = fields.get(12)?.parse().ok()?;
    Some(utime + stime)
}

/// Clock ticks per second (USER_HZ), 100 on every Linux the bench targets.
pub const TICKS_PER_SECOND: f64 = 100.0;

async fn listening_port(kind: Kind, stdout: tokio::process::ChildStdout) -> anyhow::Result<u16> {
    let mut lines = BufReader::new(stdout).lines();
    while let Some(line) = lines.next_line().await? {
        let port = match kind {
            // "avgate listening on http://127.0.0.1:PORT/ (panels: ...)"
            Kind::Avgate => line
                .strip_prefix("avgate listening on http://")
                .and_then(|rest| rest.split('/').next())
                .and_then(|addr| addr.rsplit(':').next())
                .and_then(|port| port.parse().ok()),
            Kind::SocketIo => line
                .strip_prefix("listening ")
                .and_then(|port| port.trim().parse().ok()),
        };
        if let Some(port) = port {
            // Keep draining stdout so the server never blocks on a full pipe.
            tokio::spawn(async move { while let Ok(Some(_)) = lines.next_line().await {} });
            return Ok(port);
        }
    }
    bail!("{} exited before listening", kind.name())
}

fn site_file(load: SocketAddr, setup: AvgateSetup) -> String {
    format!(
        r#"[server]
listen = "127.0.0.1:0"
# Every bench panel comes from 127.0.0.1: one address for thousands of panels, as behind
# a reverse proxy.
max_connections = 20000
max_connections_per_peer = 20000

[commands]
# The bench's command scenarios send as fast as the gateway answers.
panel_rate = 100000
panel_burst = 100000

[journal]
durable = {durable}
window = {window}
data_dir = "data"

[devices.load]
profile = "load-generator"
address = "{load}"
"#,
        durable = setup.durable,
        window = setup.window,
    )
}

/// Finds avgate and, if it can run here, the socket.io server.
pub fn find_programs(avgate: Option<PathBuf>, node: Option<PathBuf>) -> anyhow::Result<Programs> {
    let workspace = Path::new(env!("CARGO_MANIFEST_DIR")).join("../..");
    let workspace = workspace.canonicalize().unwrap_or(workspace);
    let avgate = avgate.unwrap_or_else(|| {
        let target = std::env::var_os("CARGO_TARGET_DIR")
            .map_or_else(|| workspace.join("target"), PathBuf::from);
        target.join("release/avgate")
    });
    if !avgate.is_file() {
        bail!(
            "no avgate binary at {}: build it first with `cargo build --release -p avgate`, or give --avgate PATH",
            avgate.display()
        );
    }
    let dir = workspace.join("benches/socketio");
    let node = node.unwrap_or_else(|| PathBuf::from("node"));
    let socketio = match std::process::Command::new(&node).arg("--version").output() {
        Err(_) => Err(format!(
            "Node.js not found (`{}`): install Node.js 18+ and run `npm ci --prefix benches/socketio`",
            node.display()
        )),
        Ok(out) if !dir.join("node_modules/socket.io").is_dir() => Err(format!(
            "socket.io is not installed (Node.js {} found): run `npm ci --prefix benches/socketio`",
            String::from_utf8_lossy(&out.stdout).trim()
        )),
        Ok(out) => Ok(SocketIo {
            node,
            dir: dir.canonicalize()?,
            node_version: String::from_utf8_lossy(&out.stdout).trim().to_string(),
        }),
    };
    Ok(Programs { avgate, socketio })
}

/// Per cent of one core the process used between two readings.
pub fn cpu_percent(ticks: u64, since: Instant) -> f64 {
    ticks as f64 / TICKS_PER_SECOND / since.elapsed().as_secs_f64() * 100.0
}
