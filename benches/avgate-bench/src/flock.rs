//! Many panels following the load generator at once: each in its own task, all sharing
//! one latency histogram and counting, per burst, who has every event and who saw one out
//! of place.

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::time::Duration;

use avgate_drivers::load::simulator::Handle;
use tokio::sync::{Notify, Semaphore, watch};
use tokio::task::JoinSet;
use tokio::time::{Instant, sleep_until};

use crate::panel::{Frame, Panel, Resume};
use crate::report::Histogram;
use crate::servers::{Kind, Server};

/// Panels connecting at the same time while a flock gathers; past a few hundred, SYN
/// backlogs overflow and the numbers measure the kernel's retry timer instead.
const CONNECTING_AT_ONCE: usize = 100;

pub struct Flock {
    pub latency: Histogram,
    /// Events that did not follow the previous one (a gap, a duplicate, a reordering).
    pub out_of_order: AtomicU64,
    /// Panels that reached `target`.
    pub done: AtomicUsize,
    /// Panels whose connection failed.
    pub broken: AtomicUsize,
    target: AtomicU64,
    changed: Notify,
    load: Arc<Handle>,
    stop: watch::Sender<bool>,
}

/// A panel's task hands back where it was when told to stop.
pub struct Followed {
    pub panel: Option<Panel>,
    pub last_value: u64,
}

impl Flock {
    pub fn new(load: Arc<Handle>) -> Arc<Flock> {
        Arc::new(Flock {
            latency: Histogram::default(),
            out_of_order: AtomicU64::new(0),
            done: AtomicUsize::new(0),
            broken: AtomicUsize::new(0),
            target: AtomicU64::new(u64::MAX),
            changed: Notify::new(),
            load,
            stop: watch::Sender::new(false),
        })
    }

    /// Clears the counts and sets the value every panel must reach next.
    pub fn expect(&self, target: u64) {
        self.latency.clear();
        self.out_of_order.store(0, Ordering::SeqCst);
        self.done.store(0, Ordering::SeqCst);
        self.target.store(target, Ordering::SeqCst);
    }

    /// Waits until `panels` reached the target, or `deadline`; returns how many did.
    pub async fn wait(&self, panels: usize, deadline: Instant) -> usize {
        loop {
            let changed = self.changed.notified();
            let done = self.done.load(Ordering::SeqCst);
            if done + self.broken.load(Ordering::SeqCst) >= panels {
                return done;
            }
            tokio::select! {
                _ = changed => {}
                _ = sleep_until(deadline) => return self.done.load(Ordering::SeqCst),
            }
        }
    }

    /// Tells every following task to hand its panel back.
    pub fn stop(&self) {
        self.stop.send_replace(true);
    }

    /// Follows the generator's values on one panel until told to stop.
    pub async fn follow(self: Arc<Self>, mut panel: Panel, mut last_value: u64) -> Followed {
        let mut stop = self.stop.subscribe();
        loop {
            tokio::select! {
                biased;
                _ = stop.wait_for(|stop| *stop) => return Followed { panel: Some(panel), last_value },
                frame = panel.next() => match frame {
                    Ok(Frame::Value(value)) => {
                        if let Some(sent) = self.load.sent_at(value) {
                            self.latency.record(Instant::now().saturating_duration_since(sent));
                        }
                        if value != last_value + 1 {
                            self.out_of_order.fetch_add(1, Ordering::Relaxed);
                        }
                        last_value = value;
                        if value == self.target.load(Ordering::Relaxed) {
                            self.done.fetch_add(1, Ordering::SeqCst);
                            self.changed.notify_waiters();
                        }
                    }
                    Ok(_) => {}
                    Err(_) => {
                        self.broken.fetch_add(1, Ordering::SeqCst);
                        self.changed.notify_waiters();
                        return Followed { panel: None, last_value };
                    }
                },
            }
        }
    }
}

/// Connects `count` panels (a bounded number at a time) and returns them joined.
pub async fn gather(server: &Server, count: usize, name: &str) -> anyhow::Result<Vec<Panel>> {
    let gate = Arc::new(Semaphore::new(CONNECTING_AT_ONCE));
    let mut joining = JoinSet::new();
    for i in 0..count {
        let (gate, kind, addr) = (Arc::clone(&gate), server.kind, server.addr);
        let client = format!("{name}-{i}");
        joining.spawn(async move {
            let _permit = gate.acquire_owned().await;
            Panel::join(kind, addr, &client, None).await.map(|(p, _)| p)
        });
    }
    let mut panels = Vec::with_capacity(count);
    while let Some(joined) = joining.join_next().await {
        panels.push(joined??);
    }
    Ok(panels)
}

/// Starts a following task per panel.
pub fn follow_all(flock: &Arc<Flock>, panels: Vec<Panel>, last_value: u64) -> JoinSet<Followed> {
    let mut tasks = JoinSet::new();
    for panel in panels {
        tasks.spawn(Arc::clone(flock).follow(panel, last_value));
    }
    tasks
}

/// Stops every task and collects what they held.
pub async fn recall(flock: &Flock, mut tasks: JoinSet<Followed>) -> Vec<Followed> {
    flock.stop();
    let mut followed = Vec::new();
    while let Some(done) = tasks.join_next().await {
        if let Ok(done) = done {
            followed.push(done);
        }
    }
    flock.stop.send_replace(false);
    followed
}

/// One burst of `count` events at `rate` to every panel of the flock: did all of them get
/// every event in order within the burst's own length plus `grace`?
pub struct Burst {
    pub delivered: bool,
    pub reached: usize,
    pub out_of_order: u64,
    /// Server CPU while the burst ran and was delivered, % of one core.
    pub server_cpu: f64,
    /// This process's CPU (the load client and the generator), % of one core.
    pub client_cpu: f64,
}

pub async fn burst(
    server: &Server,
    flock: &Flock,
    panels: usize,
    rate: u64,
    count: u64,
    grace: Duration,
) -> Burst {
    let last = server.load.published() + count;
    flock.expect(last);
    let started = Instant::now();
    let (server_before, client_before) = (server.cpu_ticks(), own_cpu_ticks());
    server.load.publish(rate, count).await;
    let reached = flock.wait(panels, Instant::now() + grace).await;
    let server_cpu = crate::servers::cpu_percent(server.cpu_ticks() - server_before, started);
    let client_cpu = crate::servers::cpu_percent(own_cpu_ticks() - client_before, started);
    let out_of_order = flock.out_of_order.load(Ordering::SeqCst);
    Burst {
        delivered: reached == panels && out_of_order == 0,
        reached,
        out_of_order,
        server_cpu,
        client_cpu,
    }
}

fn own_cpu_ticks() -> u64 {
    crate::servers::cpu_ticks("/proc/self/stat").unwrap_or(0)
}

/// Whose resume points to use when the flock comes back.
pub fn resume_points(followed: Vec<Followed>, kind: Kind) -> Vec<(Resume, u64)> {
    followed
        .into_iter()
        .filter_map(|f| {
            let panel = f.panel?;
            debug_assert_eq!(panel.kind, kind);
            Some((panel.drop_connection(), f.last_value))
        })
        .collect()
}
