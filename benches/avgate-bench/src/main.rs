//! avgate and a socket.io 4.8 server side by side, driven by the same load client.
//!
//! Both servers get their events from the same kind of device, a load generator running
//! in this process (`drivers/src/load`), which notes when it sent each event and when it
//! took and answered each command; the panels run here too, so every latency is measured
//! on one clock from the device's send to the panel's receipt.
//!
//! # Layout
//! - `servers`: starting avgate (the release binary, a generated site) and the socket.io
//!   server (`benches/socketio/server.js`), and reading their CPU time and memory.
//! - `panel`: one panel speaking avgate's protocol or socket.io over engine.io.
//! - `flock`: many panels following the generator at once, and bursts of events to them.
//! - `scenarios`: what is measured; `report`: histograms and the table.

mod flock;
mod panel;
mod report;
mod scenarios;
mod servers;

use std::path::PathBuf;

use clap::{Parser, ValueEnum};

use crate::scenarios::{Bench, Sizes};

#[derive(Parser)]
#[command(
    about = "avgate side by side with a socket.io 4.8 server, under the same load client",
    long_about = "avgate side by side with a socket.io 4.8 server, under the same load client.

Both servers are fed by a load generator in this process (a simulated device publishing \
counter values at a set rate on loopback) and read by panels in this process, so \
latencies run from the device's send to the panel's receipt on one clock. Each run \
starts fresh servers, is bounded in time and count, and ends with a table.

Before the first run:
  cargo build --release -p avgate          # the bench runs target/release/avgate
  npm ci --prefix benches/socketio         # socket.io 4.8 (Node.js 18+); else its column is n/a

Then:
  cargo run --release -p avgate-bench -- all            # everything, about 5 minutes on 2 cores
  cargo run --release -p avgate-bench -- all --quick    # small counts, under 2 minutes
  cargo run --release -p avgate-bench -- fanout         # one scenario

The ratio column compares the first figure of each cell and reads as how far avgate is \
ahead (> 1) or behind (< 1): socket.io ÷ \
avgate for times, memory and CPU; avgate ÷ socket.io for rates.",
    after_help = "Progress and per-step detail go to stderr; the table goes to stdout."
)]
struct Cli {
    /// What to measure.
    #[arg(value_enum)]
    scenario: Scenario,
    /// Small counts (a smoke run, under 2 minutes); the numbers are noisier.
    #[arg(long)]
    quick: bool,
    /// The avgate binary (default: target/release/avgate of this workspace).
    #[arg(long)]
    avgate: Option<PathBuf>,
    /// The Node.js binary for the socket.io server (default: `node` on PATH).
    #[arg(long)]
    node: Option<PathBuf>,
}

#[derive(Clone, Copy, PartialEq, Eq, ValueEnum)]
enum Scenario {
    /// Every scenario below, in this order.
    All,
    /// Connect latency: hello → welcome + snapshot (socket.io: open → connect + snapshot).
    Connect,
    /// Command round trips (end to end, and the server's share without the device's time),
    /// one at a time and many panels at once.
    Command,
    /// Fan-out at 1, 100, 1,000 and 5,000 panels with stepped rates: the highest rate with
    /// every event delivered in order, latency p50/p99/p999, server CPU; and idle memory.
    Fanout,
    /// Idle memory per panel only (RSS growth of the server ÷ panels).
    Memory,
    /// A panel that missed 10k and 100k events comes back (socket.io: connection state
    /// recovery).
    Replay,
    /// 1,000 panels drop at once and resume at once.
    Storm,
    /// One panel that stops reading among 99: the others' p99 with and without it.
    Slow,
    /// avgate's journal on disk (the default) against in memory.
    Durable,
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let cli = Cli::parse();
    let programs = servers::find_programs(cli.avgate, cli.node)?;
    let mut bench = Bench {
        programs,
        sizes: if cli.quick {
            Sizes::quick()
        } else {
            Sizes::full()
        },
        rows: Vec::new(),
    };
    print_header(&bench, cli.quick);
    let started = std::time::Instant::now();
    let all = cli.scenario == Scenario::All;
    let run = |s: Scenario| all || cli.scenario == s;
    if run(Scenario::Connect) {
        bench.connect().await;
    }
    if run(Scenario::Command) {
        bench.command().await;
    }
    if run(Scenario::Fanout) {
        bench.fanout(true).await;
    } else if cli.scenario == Scenario::Memory {
        bench.fanout(false).await;
    }
    if run(Scenario::Replay) {
        bench.replay().await;
    }
    if run(Scenario::Storm) {
        bench.storm().await;
    }
    if run(Scenario::Slow) {
        bench.slow().await;
    }
    if run(Scenario::Durable) {
        bench.durable().await;
    }
    println!();
    report::print_table(&bench.rows);
    println!();
    println!(
        "ratio: compares the first figure of each cell; > 1 means avgate is ahead (socket.io ÷ avgate for times, memory, CPU; avgate ÷ socket.io for rates). Took {:.0} s.",
        started.elapsed().as_secs_f64()
    );
    Ok(())
}

fn print_header(bench: &Bench, quick: bool) {
    let cores = std::thread::available_parallelism().map_or(0, |n| n.get());
    let cpu = std::fs::read_to_string("/proc/cpuinfo")
        .ok()
        .and_then(|info| {
            info.lines()
                .find_map(|l| l.strip_prefix("model name"))
                .map(|l| l.trim_start_matches([' ', '\t', ':']).to_string())
        })
        .unwrap_or_else(|| "unknown CPU".into());
    let workspace = concat!(env!("CARGO_MANIFEST_DIR"), "/../..");
    let git = |args: &[&str]| {
        std::process::Command::new("git")
            .args(args)
            .current_dir(workspace)
            .output()
            .ok()
            .filter(|o| o.status.success())
            .map(|o| String::from_utf8_lossy(&o.stdout).trim().to_string())
    };
    let commit = git(&["rev-parse", "--short=12", "HEAD"]).unwrap_or_else(|| "unknown".into());
    let dirty =
        git(&["status", "--porcelain", "--untracked-files=no"]).is_some_and(|s| !s.is_empty());
    // Other work on the machine shows in every number; say how busy it was.
    let load = std::fs::read_to_string("/proc/loadavg")
        .ok()
        .and_then(|l| l.split(' ').next().map(str::to_string))
        .unwrap_or_else(|| "?".into());
    println!("avgate bench ({})", if quick { "quick" } else { "full" });
    println!("machine: {cores} cores, {cpu}, load average {load} at the start");
    println!(
        "commit:  {commit}{}",
        if dirty {
            " (with uncommitted changes)"
        } else {
            ""
        }
    );
    println!("avgate:  {}", bench.programs.avgate.display());
    match &bench.programs.socketio {
        Ok(s) => println!(
            "socket.io: {} on Node.js {}",
            socketio_version(&s.dir).unwrap_or_else(|| "?".into()),
            s.node_version
        ),
        Err(why) => println!("socket.io: n/a: {why}"),
    }
    println!();
}

fn socketio_version(dir: &std::path::Path) -> Option<String> {
    let manifest = std::fs::read_to_string(dir.join("node_modules/socket.io/package.json")).ok()?;
    let at = manifest.find("\"version\"")?;
    let rest = &manifest[at + 9..];
    let start = rest.find('"')? + 1;
    let len = rest[start..].find('"')?;
    Some(rest[start..start + len].to_string())
}
