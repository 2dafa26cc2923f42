//! The load generator on a TCP socket: a publisher that paces `EV` lines at the set rate to
//! every connection, and the [`Model`] answering requests.
//!
//! For measurements the simulator can remember when it sent each event and when it took
//! and answered each `SET` ([`Config::record_times`]), on the caller's clock: a bench in
//! the same process then knows a panel's latency from the device's own send, and the
//! device's share of a command's round trip.

use std::collections::HashMap;
use std::fmt::Write as _;
use std::io;
use std::net::SocketAddr;
use std::ops::RangeInclusive;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use tokio::io::{AsyncBufReadExt, AsyncWriteExt, BufReader};
use tokio::net::TcpStream;
use tokio::sync::{broadcast, watch};
use tokio::task::JoinHandle;
use tokio::time::{Instant, sleep_until};
use tracing::warn;

use super::frame::ToDevice;
use super::model::Model;
use crate::sim_server::{Listener, lock};

/// Events put on the wire in one write at most: bounds a batch when the publisher wakes
/// late at a high rate.
const MAX_BATCH: u64 = 10_000;
/// Batches buffered for a connection that is slow to take them before it misses some.
const BATCHES_BUFFERED: usize = 4096;
/// Send times remembered (a ring indexed by the event's value) with `record_times`.
const SEND_TIMES_KEPT: usize = 1 << 20;
/// `SET` timings remembered with `record_times`, until taken.
const COMMAND_TIMES_KEPT: usize = 100_000;

#[derive(Debug, Clone)]
pub struct Config {
    pub listen: SocketAddr,
    /// Points `value.0` .. `value.<points-1>`; events go to them in turn. At least 1.
    pub points: u32,
    /// Events published per second from the start (0: quiet until told).
    pub rate: u64,
    /// Stop publishing after this many events.
    pub limit: Option<u64>,
    /// Remember send and command times (see the module docs).
    pub record_times: bool,
}

impl Default for Config {
    fn default() -> Self {
        Config {
            listen: SocketAddr::from(([127, 0, 0, 1], 0)),
            points: 10,
            rate: 0,
            limit: None,
            record_times: false,
        }
    }
}

/// When the device took a `SET` and when its answer left.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct CommandTimes {
    pub received: Instant,
    pub answered: Instant,
}

/// What the publisher should do.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct Plan {
    rate: u64,
    /// Publish up to this event's value, then stop.
    until: Option<u64>,
}

struct Shared {
    points: u32,
    model: Mutex<Model>,
    plan: watch::Sender<Plan>,
    /// The value of the last event published (0: none yet).
    published: watch::Sender<u64>,
    events: broadcast::Sender<Arc<[u8]>>,
    /// The zero of the recorded times.
    clock: Instant,
    /// Nanoseconds after `clock` (plus one; 0 = not sent) when each event left.
    send_times: Option<Box<[AtomicU64]>>,
    command_times: Option<Mutex<HashMap<i64, CommandTimes>>>,
}

pub struct Handle {
    listener: Listener,
    shared: Arc<Shared>,
    publisher: JoinHandle<()>,
}

/// Starts listening and publishing.
pub fn start(config: Config) -> io::Result<Handle> {
    if config.points == 0 {
        return Err(io::Error::new(
            io::ErrorKind::InvalidInput,
            "a load generator needs at least one point",
        ));
    }
    let plan = watch::Sender::new(Plan {
        rate: config.rate,
        until: config.limit,
    });
    let shared = Arc::new(Shared {
        points: config.points,
        model: Mutex::new(Model::new(config.points, config.rate)),
        published: watch::Sender::new(0),
        events: broadcast::Sender::new(BATCHES_BUFFERED),
        clock: Instant::now(),
        send_times: config
            .record_times
            .then(|| (0..SEND_TIMES_KEPT).map(|_| AtomicU64::new(0)).collect()),
        command_times: config.record_times.then(Mutex::default),
        plan,
    });
    let publisher = tokio::spawn(publish(Arc::clone(&shared), shared.plan.subscribe()));
    let serving = Arc::clone(&shared);
    let listener = Listener::start(config.listen, "load generator", move |stream, _| {
        serve(Arc::clone(&serving), stream)
    });
    match listener {
        Ok(listener) => Ok(Handle {
            listener,
            shared,
            publisher,
        }),
        Err(e) => {
            publisher.abort();
            Err(e)
        }
    }
}

impl Handle {
    pub fn local_addr(&self) -> SocketAddr {
        self.listener.local_addr()
    }

    /// Publishes `per_second` events a second from now on, without end.
    pub fn set_rate(&self, per_second: u64) {
        lock(&self.shared.model).rate = per_second;
        self.shared.plan.send_replace(Plan {
            rate: per_second,
            until: None,
        });
    }

    /// Publishes `count` events at `per_second`, then goes quiet; returns once the last one
    /// is on its way, with the values the burst used.
    pub async fn publish(&self, per_second: u64, count: u64) -> RangeInclusive<u64> {
        let first = *self.shared.published.borrow() + 1;
        let last = first + count - 1;
        lock(&self.shared.model).rate = per_second;
        self.shared.plan.send_replace(Plan {
            rate: per_second,
            until: Some(last),
        });
        let mut published = self.shared.published.subscribe();
        let _ = published.wait_for(|&n| n >= last).await;
        first..=last
    }

    /// The value of the last event published (0: none yet).
    pub fn published(&self) -> u64 {
        *self.shared.published.borrow()
    }

    /// When the event with this value left, with `record_times`, if it is among the last
    /// million.
    pub fn sent_at(&self, value: u64) -> Option<Instant> {
        let times = self.shared.send_times.as_ref()?;
        let slot = &times[value as usize % times.len()];
        match slot.load(Ordering::Relaxed) {
            0 => None,
            nanos => Some(self.shared.clock + Duration::from_nanos(nanos - 1)),
        }
    }

    /// When the `SET` of this value came in and its answer left (taken: asked once).
    pub fn take_command_times(&self, value: i64) -> Option<CommandTimes> {
        lock(self.shared.command_times.as_ref()?).remove(&value)
    }

    pub fn connection_count(&self) -> usize {
        self.listener.connection_count()
    }

    /// Stops publishing and listening, and closes every connection.
    pub async fn shutdown(&self) {
        self.publisher.abort();
        self.listener.shutdown().await;
    }
}

/// Paces events by the plan: on each wake-up it sends, as one write, every event due by
/// then, so a late wake-up catches up instead of slowing the rate.
async fn publish(shared: Arc<Shared>, mut plans: watch::Receiver<Plan>) {
    let mut last = 0u64;
    loop {
        let plan = *plans.borrow_and_update();
        let done = plan.until.is_some_and(|until| last >= until);
        if plan.rate == 0 || done {
            if plans.changed().await.is_err() {
                return;
            }
            continue;
        }
        let (start, base) = (Instant::now(), last);
        let per_event = 1.0 / plan.rate as f64;
        loop {
            let next = start + Duration::from_secs_f64((last - base + 1) as f64 * per_event);
            tokio::select! {
                _ = sleep_until(next) => {}
                changed = plans.changed() => match changed {
                    Ok(()) => break,
                    Err(_) => return,
                },
            }
            let due = base + (start.elapsed().as_secs_f64() * plan.rate as f64) as u64;
            let upto = due
                .max(last + 1)
                .min(last + MAX_BATCH)
                .min(plan.until.unwrap_or(u64::MAX));
            let batch = shared.batch(last + 1..=upto);
            last = upto;
            // Nobody connected is fine: the device publishes regardless.
            let _ = shared.events.send(batch);
            shared.published.send_replace(last);
            if plan.until.is_some_and(|until| last >= until) {
                break;
            }
        }
    }
}

impl Shared {
    fn batch(&self, values: RangeInclusive<u64>) -> Arc<[u8]> {
        let mut lines = String::with_capacity(24 * (values.end() - values.start() + 1) as usize);
        let stamp = (self.clock.elapsed().as_nanos() as u64).saturating_add(1);
        for value in values {
            let point = (value - 1) % u64::from(self.points);
            let _ = writeln!(lines, "EV {point} {value}");
            if let Some(times) = &self.send_times {
                times[value as usize % times.len()].store(stamp, Ordering::Relaxed);
            }
        }
        lines.into_bytes().into()
    }
}

async fn serve(shared: Arc<Shared>, stream: TcpStream) {
    // A real device answers at once; Nagle here would be the simulator's delay, not the
    // gateway's.
    let _ = stream.set_nodelay(true);
    let mut events = shared.events.subscribe();
    let (read, mut write) = stream.into_split();
    let mut lines = BufReader::new(read).lines();
    loop {
        tokio::select! {
            line = lines.next_line() => {
                let Ok(Some(line)) = line else { return };
                let received = Instant::now();
                let line = line.trim_end_matches('\r');
                let (answer, rate) = {
                    let mut model = lock(&shared.model);
                    let before = model.rate;
                    let answer = model.answer(line);
                    (answer, (model.rate != before).then_some(model.rate))
                };
                if let Some(rate) = rate {
                    shared.plan.send_modify(|plan| plan.rate = rate);
                }
                if write.write_all(answer.as_bytes()).await.is_err() {
                    return;
                }
                if let (Some(times), Ok(ToDevice::Set { value, .. })) =
                    (&shared.command_times, ToDevice::parse(line))
                {
                    let mut times = lock(times);
                    if times.len() < COMMAND_TIMES_KEPT {
                        times.insert(value, CommandTimes { received, answered: Instant::now() });
                    }
                }
            }
            batch = events.recv() => match batch {
                Ok(batch) => {
                    if write.write_all(&batch).await.is_err() {
                        return;
                    }
                }
                Err(broadcast::error::RecvError::Lagged(missed)) => {
                    warn!("load generator: a connection too slow to take events missed {missed} batches");
                }
                Err(broadcast::error::RecvError::Closed) => return,
            },
        }
    }
}

#[cfg(test)]
mod tests {
    use tokio::io::AsyncReadExt;

    use super::*;

    async fn read_lines(stream: &mut TcpStream, count: usize) -> Vec<String> {
        let mut text = String::new();
        let mut buf = [0u8; 4096];
        while text.lines().count() < count || !text.ends_with('\n') {
            let n = stream.read(&mut buf).await.unwrap();
            assert!(n > 0, "the simulator closed after {text:?}");
            text.push_str(std::str::from_utf8(&buf[..n]).unwrap());
        }
        text.lines().map(str::to_string).collect()
    }

    #[tokio::test]
    async fn a_burst_is_every_value_in_order_on_the_points_in_turn() {
        let sim = start(Config {
            points: 3,
            record_times: true,
            ..Config::default()
        })
        .unwrap();
        let mut client = TcpStream::connect(sim.local_addr()).await.unwrap();
        // The connection must be subscribed before the burst starts.
        client.write_all(b"RATE?\n").await.unwrap();
        assert_eq!(read_lines(&mut client, 1).await, ["RATE 0"]);

        let values = sim.publish(5000, 5).await;
        assert_eq!(values, 1..=5);
        let lines = read_lines(&mut client, 5).await;
        assert_eq!(lines, ["EV 0 1", "EV 1 2", "EV 2 3", "EV 0 4", "EV 1 5"]);
        assert!(sim.sent_at(5).is_some() && sim.sent_at(6).is_none());
        assert_eq!(sim.published(), 5);
        sim.shutdown().await;
    }

    #[tokio::test]
    async fn set_is_answered_and_timed_and_rate_starts_publishing() {
        let sim = start(Config {
            points: 1,
            record_times: true,
            ..Config::default()
        })
        .unwrap();
        let mut client = TcpStream::connect(sim.local_addr()).await.unwrap();
        client.write_all(b"SET 0 -7\n").await.unwrap();
        assert_eq!(read_lines(&mut client, 2).await, ["EV 0 -7", "OK"]);
        let times = sim.take_command_times(-7).expect("the SET was timed");
        assert!(times.answered >= times.received);
        assert_eq!(sim.take_command_times(-7), None, "taken once");

        client.write_all(b"RATE 1000\n").await.unwrap();
        let lines = read_lines(&mut client, 3).await;
        assert_eq!(lines[..3], ["RATE 1000", "EV 0 1", "EV 0 2"]);
        sim.shutdown().await;
    }

    #[tokio::test]
    async fn no_points_is_refused() {
        let error = start(Config {
            points: 0,
            ..Config::default()
        })
        .err()
        .expect("refused");
        assert!(error.to_string().contains("at least one point"));
    }
}
