//! The scenarios: each runs against avgate, then socket.io, and adds rows to the table.

use std::collections::BTreeMap;
use std::future::Future;
use std::sync::Arc;
use std::time::Duration;

use tokio::task::JoinSet;
use tokio::time::Instant;

use crate::flock::{self, Flock};
use crate::panel::{Answer, Frame, Panel};
use crate::report::{Better, Cell, Histogram, Latency, Row, millis};
use crate::servers::{AvgateSetup, Kind, Programs, Server};

/// Counts for a run: `--quick` or the full set.
#[derive(Debug, Clone)]
pub struct Sizes {
    pub connects: usize,
    pub commands: usize,
    /// Panels × commands each, all at once.
    pub concurrent_commands: (usize, usize),
    /// Panel counts with the event rates to step through at each.
    pub fanout: Vec<(usize, Vec<u64>)>,
    pub burst: Duration,
    pub replays: Vec<u64>,
    pub storm: usize,
    pub slow_rate: u64,
}

impl Sizes {
    pub fn full() -> Sizes {
        Sizes {
            connects: 200,
            commands: 1000,
            concurrent_commands: (50, 100),
            fanout: vec![
                (
                    1,
                    vec![1_000, 5_000, 10_000, 20_000, 50_000, 100_000, 200_000],
                ),
                (100, vec![100, 500, 1_000, 2_000, 5_000, 10_000, 20_000]),
                (1_000, vec![10, 50, 100, 200, 500, 1_000, 2_000]),
                (5_000, vec![2, 10, 20, 50, 100, 200, 400]),
            ],
            burst: Duration::from_secs(2),
            replays: vec![10_000, 100_000],
            storm: 1_000,
            slow_rate: 500,
        }
    }

    pub fn quick() -> Sizes {
        Sizes {
            connects: 50,
            commands: 100,
            concurrent_commands: (10, 20),
            fanout: vec![
                (1, vec![1_000, 10_000, 50_000]),
                (100, vec![100, 1_000, 5_000]),
                (500, vec![20, 200, 1_000]),
            ],
            burst: Duration::from_secs(1),
            replays: vec![2_000, 10_000],
            storm: 200,
            slow_rate: 500,
        }
    }
}

pub struct Bench {
    pub programs: Programs,
    pub sizes: Sizes,
    pub rows: Vec<Row>,
}

/// Progress and per-step detail, on stderr so the table on stdout stays clean.
macro_rules! say {
    ($($arg:tt)*) => { eprintln!("  {}", format!($($arg)*)) };
}

impl Bench {
    /// Runs `measure` against each server; a server that cannot run (or a measurement
    /// that fails) becomes `Err(why)` for its column.
    async fn both<T, F, Fut>(&self, what: &str, measure: F) -> [Result<T, String>; 2]
    where
        F: Fn(Kind) -> Fut,
        Fut: Future<Output = anyhow::Result<T>>,
    {
        let mut results = Vec::new();
        for kind in [Kind::Avgate, Kind::SocketIo] {
            if let (Kind::SocketIo, Err(why)) = (kind, &self.programs.socketio) {
                let _ = why;
                results.push(Err("socket.io not installed".to_string()));
                continue;
            }
            eprintln!("{what}: {}", kind.name());
            let result = match tokio::time::timeout(MEASUREMENT_LIMIT, measure(kind)).await {
                Ok(Ok(value)) => Ok(value),
                Ok(Err(e)) => {
                    say!("failed: {e:#}");
                    Err(format!("failed: {e}"))
                }
                Err(_) => {
                    say!("gave up after {} s", MEASUREMENT_LIMIT.as_secs());
                    Err(format!("not done in {} s", MEASUREMENT_LIMIT.as_secs()))
                }
            };
            results.push(result);
        }
        let socketio = results.pop().expect("two results");
        let avgate = results.pop().expect("two results");
        [avgate, socketio]
    }

    async fn server(&self, kind: Kind, setup: AvgateSetup) -> anyhow::Result<Server> {
        Server::start(kind, &self.programs, setup).await
    }

    fn row<T>(
        &mut self,
        scenario: impl Into<String>,
        results: &[Result<T, String>; 2],
        better: Better,
        cell: impl Fn(&T) -> Cell,
    ) {
        let cell = |r: &Result<T, String>| match r {
            Ok(value) => cell(value),
            Err(why) => Cell::na(why.clone()),
        };
        self.rows.push(Row::new(
            scenario,
            cell(&results[0]),
            cell(&results[1]),
            better,
        ));
    }

    /// Connect latency: avgate from the TCP connect to the snapshot after `hello`;
    /// socket.io from the TCP connect to the namespace joined and the snapshot event.
    pub async fn connect(&mut self) {
        let n = self.sizes.connects;
        let bench = &*self;
        let results = bench
            .both("connect", |kind| async move {
                let server = bench.server(kind, AvgateSetup::default()).await?;
                let latency = Histogram::default();
                for i in 0..n {
                    let started = Instant::now();
                    let (panel, _) = Panel::join(kind, server.addr, &format!("c{i}"), None).await?;
                    latency.record(started.elapsed());
                    panel.close().await;
                }
                server.stop().await;
                let latency = Latency::of(&latency).expect("samples");
                say!("p50 {} p99 {}", millis(latency.p50), millis(latency.p99));
                Ok(latency)
            })
            .await;
        self.row(
            format!("connect → snapshot, p50 / p99 ({n} in a row)"),
            &results,
            Better::Lower,
            |l| Cell::new(l.p50, format!("{} / {}", millis(l.p50), millis(l.p99))),
        );
    }

    /// Command round trips one after another from one panel, and many panels at once.
    pub async fn command(&mut self) {
        let bench = &*self;
        let results = bench
            .both("command", |kind| async move {
                let server = bench.server(kind, AvgateSetup::default()).await?;
                let measured = bench.commands(&server).await;
                server.stop().await;
                measured
            })
            .await;
        self.command_rows("", &results);
    }

    async fn commands(&self, server: &Server) -> anyhow::Result<Commands> {
        let n = self.sizes.commands;
        let (end_to_end, gateway) = (Histogram::default(), Histogram::default());
        // The two halves of the server's share, from the device's own timestamps: the
        // panel's send to the device reading the request, and the device's answer leaving
        // to the panel reading the result.
        let (inbound, outbound) = (Histogram::default(), Histogram::default());
        let (mut panel, _) = Panel::join(server.kind, server.addr, "commander", None).await?;
        let mut failed = 0;
        for i in 0..n as u64 {
            let value = 1_000_000_000 + i;
            let started = Instant::now();
            let ok = panel.command(i + 1, value).await? == Answer::Ok;
            let ended = Instant::now();
            let took = ended - started;
            failed += u64::from(!ok);
            end_to_end.record(took);
            if let Some(device) = server.load.take_command_times(value as i64) {
                let to_device = device.received.saturating_duration_since(started);
                let to_panel = ended.saturating_duration_since(device.answered);
                inbound.record(to_device);
                outbound.record(to_panel);
                gateway.record(to_device + to_panel);
            }
        }
        panel.close().await;
        let own_share = match server.kind {
            Kind::Avgate => Some(server.gateway_share().await?),
            Kind::SocketIo => None,
        };
        let end_to_end = Latency::of(&end_to_end).expect("samples");
        let no_times = || anyhow::anyhow!("no device times");
        let gateway = Latency::of(&gateway).ok_or_else(no_times)?;
        let inbound = Latency::of(&inbound).ok_or_else(no_times)?;
        let outbound = Latency::of(&outbound).ok_or_else(no_times)?;
        say!(
            "one at a time: end to end p50 {} p99 {}; server share p50 {} p99 {} (panel → device p50 {} p99 {}, device → panel p50 {} p99 {}); {failed} failed",
            millis(end_to_end.p50),
            millis(end_to_end.p99),
            millis(gateway.p50),
            millis(gateway.p99),
            millis(inbound.p50),
            millis(inbound.p99),
            millis(outbound.p50),
            millis(outbound.p99),
        );
        if let Some((p50, p99)) = own_share {
            say!(
                "  by avgate's own metrics, its share: p50 ≤ {} p99 ≤ {}",
                millis(p50),
                millis(p99)
            );
        }

        let (panels, each) = self.sizes.concurrent_commands;
        let mut senders = JoinSet::new();
        for p in 0..panels as u64 {
            let (kind, addr) = (server.kind, server.addr);
            senders.spawn(async move {
                let (mut panel, _) = Panel::join(kind, addr, &format!("busy-{p}"), None).await?;
                let mut answers = BTreeMap::<String, u64>::new();
                for c in 0..each as u64 {
                    let value = 2_000_000_000 + p * 1_000_000 + c;
                    let answer = match panel.command(c + 1, value).await? {
                        Answer::Ok => "ok".to_string(),
                        Answer::Superseded => "superseded".to_string(),
                        Answer::Refused(code) => code,
                    };
                    *answers.entry(answer).or_default() += 1;
                }
                panel.close().await;
                anyhow::Ok(answers)
            });
        }
        let started = Instant::now();
        let mut answers = BTreeMap::<String, u64>::new();
        while let Some(done) = senders.join_next().await {
            for (answer, count) in done?? {
                *answers.entry(answer).or_default() += count;
            }
        }
        let ok = answers.remove("ok").unwrap_or(0);
        let took = started.elapsed();
        let total = (panels * each) as u64;
        say!(
            "{panels} panels × {each} at once: {ok} of {total} ok in {:.2} s; the others: {}",
            took.as_secs_f64(),
            not_ok(&answers)
        );
        Ok(Commands {
            end_to_end,
            gateway,
            inbound,
            outbound,
            own_share,
            concurrent_ok: ok,
            concurrent_not_ok: answers,
            concurrent_total: total,
            concurrent_took: took,
        })
    }

    fn command_rows(&mut self, suffix: &str, results: &[Result<Commands, String>; 2]) {
        let n = self.sizes.commands;
        let (panels, each) = self.sizes.concurrent_commands;
        self.row(
            format!("command → result, end to end, p50 / p99 ({n} in a row){suffix}"),
            results,
            Better::Lower,
            |c| {
                Cell::new(
                    c.end_to_end.p50,
                    format!(
                        "{} / {}",
                        millis(c.end_to_end.p50),
                        millis(c.end_to_end.p99)
                    ),
                )
            },
        );
        self.row(
            format!("command: server's share, p50 / p99 (in + out at p99){suffix}"),
            results,
            Better::Lower,
            |c| Cell::new(c.gateway.p50, share_text(c)),
        );
        self.row(
            format!("command: the server's own account of its share, p50 / p99{suffix}"),
            results,
            Better::Lower,
            own_share_cell,
        );
        self.row(
            format!("{panels} panels × {each} commands at once: ok commands/s{suffix}"),
            results,
            Better::Higher,
            |c| {
                let rate = c.concurrent_ok as f64 / c.concurrent_took.as_secs_f64();
                Cell::new(
                    rate,
                    format!(
                        "{rate:.0}/s ({} of {} ok; {})",
                        c.concurrent_ok,
                        c.concurrent_total,
                        not_ok(&c.concurrent_not_ok)
                    ),
                )
            },
        );
    }

    /// Fan-out at each panel count: idle memory per panel, then stepped rates up to the
    /// highest at which every panel gets every event in order. With `steps` off, only the
    /// memory.
    pub async fn fanout(&mut self, steps: bool) {
        for (panels, rates) in self.sizes.fanout.clone() {
            if !steps && panels == 1 {
                continue;
            }
            let what = format!("fan-out to {panels} panel(s)");
            let bench = &*self;
            let results = bench
                .both(&what, |kind| {
                    let rates = rates.clone();
                    async move {
                        let server = bench.server(kind, AvgateSetup::default()).await?;
                        let measured = bench.fanout_one(&server, panels, &rates, steps).await;
                        server.stop().await;
                        measured
                    }
                })
                .await;
            if panels > 1 {
                self.row(
                    format!("idle memory per panel ({panels} panels, RSS growth ÷ panels)"),
                    &results,
                    Better::Lower,
                    |f| Cell::new(f.memory_kib, format!("{:.1} KiB", f.memory_kib)),
                );
            }
            if steps {
                self.fanout_rows(panels, &rates, &results);
            }
        }
    }

    async fn fanout_one(
        &self,
        server: &Server,
        panels: usize,
        rates: &[u64],
        steps: bool,
    ) -> anyhow::Result<Fanout> {
        let rss_before = server.rss_kib();
        let gathered = flock::gather(server, panels, "fan").await?;
        // Let the server finish sending snapshots and settle before reading its memory.
        tokio::time::sleep(Duration::from_secs(1)).await;
        let memory_kib = server.rss_kib().saturating_sub(rss_before) as f64 / panels as f64;
        say!("{panels} panels connected: {memory_kib:.1} KiB each");
        let mut fanout = Fanout {
            memory_kib,
            steps: Vec::new(),
        };
        if !steps {
            return Ok(fanout);
        }
        let herd = Flock::new(Arc::clone(&server.load));
        let tasks = flock::follow_all(&herd, gathered, server.load.published());
        for &rate in rates {
            let count = ((rate as f64 * self.sizes.burst.as_secs_f64()) as u64).max(10);
            let burst = flock::burst(server, &herd, panels, rate, count, KEEPING_UP).await;
            let latency = Latency::of(&herd.latency);
            say!(
                "{rate} ev/s × {panels}: {}; p50/p99/p999 {}; server CPU {:.0}%, client CPU {:.0}%",
                if burst.delivered {
                    "all delivered in order".to_string()
                } else {
                    format!(
                        "{} of {panels} panels complete, {} out of order",
                        burst.reached, burst.out_of_order
                    )
                },
                latency.map_or("-".into(), |l| l.show()),
                burst.server_cpu,
                burst.client_cpu
            );
            fanout.steps.push(Step {
                rate,
                delivered: burst.delivered,
                latency,
                server_cpu: burst.server_cpu,
            });
            if !burst.delivered {
                break;
            }
        }
        flock::recall(&herd, tasks).await;
        Ok(fanout)
    }

    fn fanout_rows(&mut self, panels: usize, rates: &[u64], results: &[Result<Fanout, String>; 2]) {
        let best = |f: &Fanout| f.steps.iter().rev().find(|s| s.delivered).map(|s| s.rate);
        self.row(
            format!("fan-out {panels} panel(s): highest rate, every event in order within 1 s"),
            results,
            Better::Higher,
            |f| match best(f) {
                Some(rate) => Cell::new(
                    (rate * panels as u64) as f64,
                    format!(
                        "{}{rate} ev/s = {} msg/s",
                        if Some(&rate) == rates.last() {
                            "≥ "
                        } else {
                            ""
                        },
                        rate * panels as u64
                    ),
                ),
                None => Cell::new(0.0, format!("< {} ev/s", rates[0])),
            },
        );
        // Compare latency and CPU where both kept up: the highest rate both passed.
        let common = results
            .iter()
            .filter_map(|r| r.as_ref().ok().map(best))
            .collect::<Option<Vec<u64>>>()
            .and_then(|rates| rates.into_iter().min());
        let Some(common) = common else { return };
        let at = |f: &Fanout| f.steps.iter().find(|s| s.rate == common).cloned();
        self.row(
            format!("  latency p50 / p99 / p999 at {common} ev/s"),
            results,
            Better::Lower,
            |f| match at(f).and_then(|s| s.latency) {
                Some(l) => Cell::new(l.p50, l.show()),
                None => Cell::na("no samples"),
            },
        );
        self.row(
            format!("  server CPU at {common} ev/s (% of one core)"),
            results,
            Better::Lower,
            |f| match at(f) {
                Some(s) => Cell::new(s.server_cpu.max(0.5), format!("{:.0}%", s.server_cpu)),
                None => Cell::na("not run"),
            },
        );
    }

    /// A panel drops, misses `count` events, and comes back: how long until it is current?
    pub async fn replay(&mut self) {
        for count in self.sizes.replays.clone() {
            let setup = AvgateSetup {
                window: (count as usize) * 6 / 5,
                ..AvgateSetup::default()
            };
            let bench = &*self;
            let results = bench
                .both(&format!("replay {count}"), |kind| async move {
                    let server = bench.server(kind, setup).await?;
                    let measured = replay_one(&server, count).await;
                    server.stop().await;
                    measured
                })
                .await;
            self.row(
                format!("replay {count} missed events: reconnect → current"),
                &results,
                Better::Lower,
                |r| match r {
                    Replayed::Resumed { took, out_of_order } => Cell::new(
                        took.as_secs_f64(),
                        format!(
                            "{} ({:.0}k ev/s){}",
                            millis(took.as_secs_f64() * 1e6),
                            count as f64 / took.as_secs_f64() / 1000.0,
                            if *out_of_order > 0 {
                                format!(", {out_of_order} gaps/dupes")
                            } else {
                                String::new()
                            }
                        ),
                    ),
                    Replayed::Snapshot => Cell::na("no resume: got a fresh snapshot"),
                },
            );
        }
    }

    /// Many panels drop at once and all come back at once, having missed events.
    pub async fn storm(&mut self) {
        let panels = self.sizes.storm;
        let bench = &*self;
        let results = bench
            .both(&format!("reconnect storm of {panels}"), |kind| async move {
                let server = bench.server(kind, AvgateSetup::default()).await?;
                let measured = storm_one(&server, panels).await;
                server.stop().await;
                measured
            })
            .await;
        self.row(
            format!("reconnect storm: {panels} panels resume at once → all current"),
            &results,
            Better::Lower,
            |s| {
                Cell::new(
                    s.took.as_secs_f64(),
                    format!(
                        "{:.2} s, {} gaps/dupes, {} snapshots{}",
                        s.took.as_secs_f64(),
                        s.out_of_order,
                        s.snapshots,
                        if s.reached < panels {
                            format!(", only {} current", s.reached)
                        } else {
                            String::new()
                        }
                    ),
                )
            },
        );
    }

    /// The others' p99 with one panel that never reads among them, against without.
    pub async fn slow(&mut self) {
        let rate = self.sizes.slow_rate;
        let bench = &*self;
        let results = bench
            .both("one slow panel among 99", |kind| async move {
                let server = bench.server(kind, AvgateSetup::default()).await?;
                let measured = slow_one(&server, rate, bench.sizes.burst * 2).await;
                server.stop().await;
                measured
            })
            .await;
        self.row(
            format!("99 panels at {rate} ev/s, one more not reading: their p99"),
            &results,
            Better::Lower,
            |s| {
                Cell::new(
                    s.with.p99,
                    format!(
                        "{} (without it: {}){}",
                        millis(s.with.p99),
                        millis(s.without.p99),
                        if s.all_delivered {
                            ""
                        } else {
                            " (events lost)"
                        }
                    ),
                )
            },
        );
    }

    /// avgate's journal on disk (the default) against in memory only.
    pub async fn durable(&mut self) {
        let disk = match tokio::task::spawn_blocking(|| disk_syncs(SYNC_PROBES)).await {
            Ok(Ok(latency)) => Cell::new(
                latency.p50,
                format!("{} / {}", millis(latency.p50), millis(latency.p99)),
            ),
            Ok(Err(e)) => Cell::na(format!("failed: {e}")),
            Err(e) => Cell::na(format!("failed: {e}")),
        };
        self.rows.push(Row::new(
            "disk: append 1 KiB + fsync, p50 / p99 (a durable command waits for two)",
            disk,
            Cell::na("no journal"),
            Better::Lower,
        ));
        let mut measured = Vec::new();
        let mut commit_mean = None;
        for durable in [true, false] {
            let mode = if durable { "durable" } else { "in-memory" };
            eprintln!("journal {mode}: avgate");
            let setup = AvgateSetup {
                durable,
                ..AvgateSetup::default()
            };
            let result = async {
                let server = self.server(Kind::Avgate, setup).await?;
                let commands = self.commands(&server).await;
                let events = event_latency(&server, 1_000, self.sizes.burst).await;
                let commits = match durable {
                    true => Some(server.commit_mean().await),
                    false => None,
                };
                server.stop().await;
                if let Some(commits) = commits {
                    let (mean, count) = commits?;
                    say!(
                        "group commits: {count}, mean {}",
                        millis(mean.as_micros() as f64)
                    );
                    commit_mean = Some(mean);
                }
                anyhow::Ok((commands?, events?))
            }
            .await
            .map_err(|e| {
                say!("failed: {e:#}");
                format!("failed: {e}")
            });
            measured.push((mode, result));
        }
        let socketio = || Cell::na("no journal");
        let commit = match commit_mean {
            Some(mean) => {
                let micros = mean.as_micros() as f64;
                Cell::new(micros, millis(micros))
            }
            None => Cell::na("not measured"),
        };
        self.rows.push(Row::new(
            "journal durable: one group commit (events, state, records, audit), mean",
            commit,
            socketio(),
            Better::Lower,
        ));
        for (mode, result) in &measured {
            let (commands, events) = match result {
                Ok((c, e)) => (
                    Cell::new(
                        c.end_to_end.p50,
                        format!(
                            "{} / {}",
                            millis(c.end_to_end.p50),
                            millis(c.end_to_end.p99)
                        ),
                    ),
                    Cell::new(e.p99, e.show()),
                ),
                Err(why) => (Cell::na(why.clone()), Cell::na(why.clone())),
            };
            let concurrent = match result {
                Ok((c, _)) => {
                    let rate = c.concurrent_ok as f64 / c.concurrent_took.as_secs_f64();
                    Cell::new(
                        rate,
                        format!("{rate:.0} ok/s ({})", not_ok(&c.concurrent_not_ok)),
                    )
                }
                Err(why) => Cell::na(why.clone()),
            };
            let share = match result {
                Ok((c, _)) => Cell::new(c.gateway.p50, share_text(c)),
                Err(why) => Cell::na(why.clone()),
            };
            let own_share = match result {
                Ok((c, _)) => own_share_cell(c),
                Err(why) => Cell::na(why.clone()),
            };
            let (panels, each) = self.sizes.concurrent_commands;
            self.rows.push(Row::new(
                format!("journal {mode}: command p50 / p99"),
                commands,
                socketio(),
                Better::Lower,
            ));
            self.rows.push(Row::new(
                format!("journal {mode}: command, server's share p50 / p99 (in + out)"),
                share,
                socketio(),
                Better::Lower,
            ));
            self.rows.push(Row::new(
                format!("journal {mode}: command, avgate's own account of its share, p50 / p99"),
                own_share,
                socketio(),
                Better::Lower,
            ));
            self.rows.push(Row::new(
                format!("journal {mode}: {panels} × {each} commands at once"),
                concurrent,
                socketio(),
                Better::Higher,
            ));
            self.rows.push(Row::new(
                format!("journal {mode}: 1 panel, 1000 ev/s, p50 / p99 / p999"),
                events,
                socketio(),
                Better::Lower,
            ));
        }
    }
}

/// avgate's own account of its share of a command (`avgate_command_gateway_seconds`):
/// from the panel's frame read to the result written, less the device's time. Unlike the
/// share measured from outside, it leaves out the wake-ups of the processes around it.
fn own_share_cell(c: &Commands) -> Cell {
    match c.own_share {
        Some((p50, p99)) => Cell::new(p50, format!("≤ {} / ≤ {}", millis(p50), millis(p99))),
        None => Cell::na("no such metric"),
    }
}

/// How many syncs the disk probe times.
const SYNC_PROBES: usize = 200;

/// What one group commit costs on this disk at least: an append and an fsync of a file
/// in the directory the servers' journals use, timed one after another.
fn disk_syncs(count: usize) -> anyhow::Result<Latency> {
    use std::io::Write;
    let dir = tempfile::tempdir()?;
    let mut file = std::fs::File::create(dir.path().join("probe"))?;
    let block = [0x5a_u8; 1024];
    let syncs = Histogram::default();
    for _ in 0..count {
        let started = std::time::Instant::now();
        file.write_all(&block)?;
        file.sync_data()?;
        syncs.record(started.elapsed());
    }
    Latency::of(&syncs).ok_or_else(|| anyhow::anyhow!("no syncs timed"))
}

/// The server's share of a command's round trip, and its halves at p99: panel → device
/// write ("in"), device answer → panel result ("out").
fn share_text(c: &Commands) -> String {
    format!(
        "{} / {} (in {} + out {})",
        millis(c.gateway.p50),
        millis(c.gateway.p99),
        millis(c.inbound.p99),
        millis(c.outbound.p99)
    )
}

/// The most one scenario may take against one server, so every run ends.
const MEASUREMENT_LIMIT: Duration = Duration::from_secs(240);
/// How long after the last event of a fan-out step left the device every panel must have
/// it: a server further behind than this is not keeping up, even if it gets there later.
const KEEPING_UP: Duration = Duration::from_secs(1);
/// How long the other scenarios wait beyond a burst's own length before giving up.
const GRACE: Duration = Duration::from_secs(5);

struct Commands {
    end_to_end: Latency,
    /// Panel → device write plus device answer → panel result: the device's own time
    /// taken out.
    gateway: Latency,
    inbound: Latency,
    outbound: Latency,
    /// avgate only: its own account of its share (p50, p99 bucket bounds, µs), which
    /// leaves out the operating system's wake-ups on either side.
    own_share: Option<(f64, f64)>,
    concurrent_ok: u64,
    /// The other answers by code: `superseded` (a newer set of the same point replaced it
    /// while queued, by design), `device_busy` (the device's queue was full), ...
    concurrent_not_ok: BTreeMap<String, u64>,
    concurrent_total: u64,
    concurrent_took: Duration,
}

struct Fanout {
    memory_kib: f64,
    steps: Vec<Step>,
}

#[derive(Clone)]
struct Step {
    rate: u64,
    delivered: bool,
    latency: Option<Latency>,
    server_cpu: f64,
}

enum Replayed {
    Resumed { took: Duration, out_of_order: u64 },
    Snapshot,
}

async fn replay_one(server: &Server, count: u64) -> anyhow::Result<Replayed> {
    // The panel sees one event, so it has a resume point (socket.io needs an offset).
    let (mut leaver, _) = Panel::join(server.kind, server.addr, "leaver", None).await?;
    let (mut observer, _) = Panel::join(server.kind, server.addr, "observer", None).await?;
    let seen = server.load.published() + 1;
    let (_, first) = tokio::join!(
        server.load.publish(1000, 1),
        value_at_least(&mut leaver, seen)
    );
    first?;
    let resume = leaver.drop_connection();

    let last = seen + count;
    let (_, observed) = tokio::join!(
        server.load.publish(20_000, count),
        value_at_least(&mut observer, last)
    );
    observed?;
    say!("{count} events published while the panel was away");

    let started = Instant::now();
    let (mut back, resumed) =
        Panel::join(server.kind, server.addr, "leaver", Some(&resume)).await?;
    if !resumed {
        return Ok(Replayed::Snapshot);
    }
    let mut previous = seen;
    let mut out_of_order = 0;
    while previous < last {
        if let Frame::Value(value) = back.next().await? {
            out_of_order += u64::from(value != previous + 1);
            previous = value;
        }
    }
    let took = started.elapsed();
    say!("caught up in {}", millis(took.as_secs_f64() * 1e6));
    back.close().await;
    observer.close().await;
    Ok(Replayed::Resumed { took, out_of_order })
}

async fn value_at_least(panel: &mut Panel, value: u64) -> anyhow::Result<()> {
    loop {
        if matches!(panel.next().await?, Frame::Value(v) if v >= value) {
            return Ok(());
        }
    }
}

struct Storm {
    took: Duration,
    reached: usize,
    out_of_order: u64,
    snapshots: usize,
}

async fn storm_one(server: &Server, panels: usize) -> anyhow::Result<Storm> {
    let herd = Flock::new(Arc::clone(&server.load));
    let gathered = flock::gather(server, panels, "storm").await?;
    let tasks = flock::follow_all(&herd, gathered, server.load.published());
    let before = flock::burst(server, &herd, panels, 1000, 1, GRACE).await;
    anyhow::ensure!(
        before.delivered,
        "the panels did not all see the first event"
    );
    let away = flock::resume_points(flock::recall(&herd, tasks).await, server.kind);
    anyhow::ensure!(away.len() == panels, "some panels broke before the storm");

    // What they miss while away; an observer says when the server has all of it.
    let (mut observer, _) = Panel::join(server.kind, server.addr, "observer", None).await?;
    let missed = 1_000;
    let last = server.load.published() + missed;
    let (_, observed) = tokio::join!(
        server.load.publish(5_000, missed),
        value_at_least(&mut observer, last)
    );
    observed?;
    herd.expect(last);

    let started = Instant::now();
    let mut joining = JoinSet::new();
    for (i, (resume, last_value)) in away.into_iter().enumerate() {
        let (herd, kind, addr) = (Arc::clone(&herd), server.kind, server.addr);
        joining.spawn(async move {
            let (panel, resumed) =
                Panel::join(kind, addr, &format!("storm-{i}"), Some(&resume)).await?;
            // A snapshot instead of a resume shows as a gap to the follower; count it too.
            let follower = tokio::spawn(herd.follow(panel, last_value));
            anyhow::Ok((resumed, follower))
        });
    }
    let mut followers = Vec::new();
    let mut snapshots = 0;
    while let Some(joined) = joining.join_next().await {
        match joined? {
            Ok((resumed, follower)) => {
                snapshots += usize::from(!resumed);
                followers.push(follower);
            }
            Err(e) => say!("a panel could not come back: {e:#}"),
        }
    }
    let reached = herd
        .wait(panels, Instant::now() + Duration::from_secs(60))
        .await;
    let took = started.elapsed();
    let out_of_order = herd.out_of_order.load(std::sync::atomic::Ordering::SeqCst);
    say!(
        "{reached} of {panels} current after {:.2} s, {out_of_order} gaps/dupes, {snapshots} snapshots",
        took.as_secs_f64()
    );
    herd.stop();
    for follower in followers {
        let _ = follower.await;
    }
    observer.close().await;
    Ok(Storm {
        took,
        reached,
        out_of_order,
        snapshots,
    })
}

struct Slow {
    without: Latency,
    with: Latency,
    all_delivered: bool,
}

async fn slow_one(server: &Server, rate: u64, length: Duration) -> anyhow::Result<Slow> {
    let herd = Flock::new(Arc::clone(&server.load));
    let gathered = flock::gather(server, 99, "steady").await?;
    let tasks = flock::follow_all(&herd, gathered, server.load.published());
    let count = (rate as f64 * length.as_secs_f64()) as u64;
    // A first burst warms both servers up (socket.io's JIT above all), so that "without"
    // is not paying for it.
    flock::burst(server, &herd, 99, rate, count / 4, GRACE).await;
    let without = flock::burst(server, &herd, 99, rate, count, GRACE).await;
    let without_latency = Latency::of(&herd.latency).expect("samples");
    // Joins, then never reads again: its socket buffers fill and stay full.
    let (stuck, _) = Panel::join(server.kind, server.addr, "stuck", None).await?;
    let with = flock::burst(server, &herd, 99, rate, count, GRACE).await;
    let with_latency = Latency::of(&herd.latency).expect("samples");
    say!(
        "p99 without {} with {}",
        millis(without_latency.p99),
        millis(with_latency.p99)
    );
    drop(stuck);
    flock::recall(&herd, tasks).await;
    Ok(Slow {
        without: without_latency,
        with: with_latency,
        all_delivered: without.delivered && with.delivered,
    })
}

/// One panel's event latency at `rate` for `length`.
async fn event_latency(server: &Server, rate: u64, length: Duration) -> anyhow::Result<Latency> {
    let herd = Flock::new(Arc::clone(&server.load));
    let gathered = flock::gather(server, 1, "one").await?;
    let tasks = flock::follow_all(&herd, gathered, server.load.published());
    let count = (rate as f64 * length.as_secs_f64()) as u64;
    let burst = flock::burst(server, &herd, 1, rate, count, GRACE).await;
    anyhow::ensure!(burst.delivered, "not every event arrived in order");
    let latency = Latency::of(&herd.latency).expect("samples");
    say!("1 panel at {rate} ev/s: {}", latency.show());
    flock::recall(&herd, tasks).await;
    Ok(latency)
}

/// The answers other than ok, by code: `750 device_busy, 12 superseded`, or `all ok`.
fn not_ok(answers: &BTreeMap<String, u64>) -> String {
    if answers.is_empty() {
        return "all ok".into();
    }
    answers
        .iter()
        .map(|(code, count)| format!("{count} {code}"))
        .collect::<Vec<_>>()
        .join(", ")
}
