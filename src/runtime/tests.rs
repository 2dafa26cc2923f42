//! The link task against an in-memory device on a paused clock: what a panel command waits
//! for when the device is slow and a poll group is long.

use std::path::Path;
use std::sync::Arc;
use std::sync::atomic::AtomicU64;
use std::time::Duration;

use avgate_drivers::{Map, Value};
use serde_json::json;
use tokio::io::{AsyncReadExt, AsyncWriteExt, DuplexStream};
use tokio::sync::{Notify, mpsc};
use tokio::time::Instant;
use tokio_util::sync::CancellationToken;

use super::link::LinkTask;
use super::queue::CommandQueue;
use super::unit::Unit;
use super::{DeviceHandle, transport::LinkStream};
use crate::config::{DeviceConfig, Link, Profile};
use crate::journal::Journal;

/// How long the simulated device takes over each request.
const PER_REQUEST: Duration = Duration::from_millis(5);

/// Reads in the meter's poll group: registers 0, 10, ... 90, ten reads with `max_gap = 0`.
const READS_PER_POLL: u16 = 10;

/// A Modbus meter whose one poll group takes [`READS_PER_POLL`] reads, the last of them
/// of the writable `level` register.
fn meter_profile() -> Profile {
    let mut text = String::from(
        "name = \"slow meter\"\ndriver = \"modbus\"\n[options]\nmax_gap = 0\n\
         poll_groups = { default = \"10s\" }\n",
    );
    for i in 0..READS_PER_POLL - 1 {
        text.push_str(&format!(
            "[[options.points]]\nname = \"r{i}\"\ntable = \"holding\"\naddress = {}\n",
            i * 10
        ));
    }
    text.push_str(&format!(
        "[[options.points]]\nname = \"level\"\ntable = \"holding\"\naddress = {}\nwritable = true\n",
        (READS_PER_POLL - 1) * 10
    ));
    Profile::parse("slow-meter", Path::new("slow-meter.toml"), &text).expect("valid profile")
}

fn device(profile: Profile) -> DeviceConfig {
    DeviceConfig {
        id: "meter".into(),
        name: "meter".into(),
        link: Link::Tcp {
            host: "127.0.0.1".into(),
            port: 502,
        },
        password: None,
        command_timeout: Duration::from_secs(1),
        connect_timeout: Duration::from_secs(1),
        pacing: Duration::ZERO,
        options: profile.options.clone(),
        polls: profile.polls.clone(),
        profile: Arc::new(profile),
    }
}

/// The same meter as Modbus unit `unit`, named `id`, on the same link as the others.
fn unit_on_a_shared_link(id: &str, unit: u8) -> DeviceConfig {
    let mut config = device(meter_profile());
    config.id = id.into();
    config.name = id.into();
    config.options.insert("unit".into(), json!(unit));
    config
}

/// One request as the device saw it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct Seen {
    at: Instant,
    unit: u8,
    function: u8,
    address: u16,
}

/// Modbus TCP devices at the far end of `link`, any unit id: each request takes
/// [`PER_REQUEST`]; they keep the holding registers written to them and report every
/// request.
async fn slow_device(mut link: DuplexStream, seen: mpsc::UnboundedSender<Seen>) {
    let mut holding = std::collections::HashMap::<(u8, u16), u16>::new();
    loop {
        let mut header = [0u8; 7];
        if link.read_exact(&mut header).await.is_err() {
            return;
        }
        let length = usize::from(u16::from_be_bytes([header[4], header[5]]));
        let mut pdu = vec![0u8; length - 1];
        if link.read_exact(&mut pdu).await.is_err() {
            return;
        }
        let (function, address) = (pdu[0], u16::from_be_bytes([pdu[1], pdu[2]]));
        let word = u16::from_be_bytes([pdu[3], pdu[4]]);
        let unit = header[6];
        let _ = seen.send(Seen {
            at: Instant::now(),
            unit,
            function,
            address,
        });
        tokio::time::sleep(PER_REQUEST).await;
        let answer = match function {
            3 => {
                let mut answer = vec![3, (2 * word) as u8];
                for register in address..address + word {
                    let value = holding.get(&(unit, register)).copied().unwrap_or(0);
                    answer.extend(value.to_be_bytes());
                }
                answer
            }
            6 => {
                holding.insert((unit, address), word);
                pdu.clone()
            }
            other => vec![other | 0x80, 1],
        };
        let mut frame = header[..4].to_vec();
        frame.extend(((answer.len() + 1) as u16).to_be_bytes());
        frame.push(header[6]);
        frame.extend(answer);
        if link.write_all(&frame).await.is_err() {
            return;
        }
    }
}

/// One link task for `configs` (devices on one link) whose link is an in-memory pipe to
/// [`slow_device`].
fn start_link(configs: Vec<DeviceConfig>) -> (Vec<DeviceHandle>, mpsc::UnboundedReceiver<Seen>) {
    let ids = configs.iter().map(|c| c.id.clone());
    let journal = Arc::new(Journal::in_memory(1024, ids));
    let wake = Arc::new(Notify::new());
    let alive = Arc::new(AtomicU64::new(0));
    let (mut handles, mut units) = (Vec::new(), Vec::new());
    for config in &configs {
        let jobs = Arc::new(CommandQueue::new(32));
        handles.push(DeviceHandle {
            id: config.id.as_str().into(),
            jobs: jobs.clone(),
            profile: config.profile.clone(),
            wake: wake.clone(),
            alive: alive.clone(),
        });
        units.push(Unit::new(config.clone(), journal.clone(), jobs).expect("driver builds"));
    }
    let (seen_tx, seen) = mpsc::unbounded_channel();
    let link = configs[0].link.clone();
    let task = LinkTask::new(link, units, wake, CancellationToken::new())
        .counting_turns(alive)
        .opening_with(Box::new(move |_, _| {
            let (ours, theirs) = tokio::io::duplex(4096);
            tokio::spawn(slow_device(theirs, seen_tx.clone()));
            Box::pin(async move { Ok(Box::new(ours) as Box<dyn LinkStream>) })
        }));
    tokio::spawn(task.run());
    (handles, seen)
}

fn start(config: DeviceConfig) -> (DeviceHandle, mpsc::UnboundedReceiver<Seen>) {
    let (mut handles, seen) = start_link(vec![config]);
    (handles.remove(0), seen)
}

fn args(value: Value) -> Map<String, Value> {
    value.as_object().cloned().expect("an object")
}

#[tokio::test(start_paused = true)]
async fn a_command_waits_for_the_one_read_in_flight_not_the_whole_poll_group() {
    let (meter, mut seen) = start(device(meter_profile()));

    // The first poll group is under way: its third read has just reached the device.
    let mut reads = Vec::new();
    while reads.len() < 3 {
        reads.push(seen.recv().await.expect("device running"));
    }
    assert!(reads.iter().all(|r| r.function == 3), "{reads:?}");
    let submitted = Instant::now();
    let write = args(json!({"point": "level", "value": 7}));
    let outcome = meter
        .submit(meter.ticket(), "w1", "write".into(), write)
        .expect("queued");

    let write = loop {
        let request = seen.recv().await.expect("device running");
        if request.function == 6 {
            break request;
        }
        reads.push(request);
    };
    let waited = write.at - submitted;
    assert_eq!(outcome.await.expect("answered"), Ok(()));
    let result_after = Instant::now() - submitted;
    eprintln!(
        "command waited {waited:?} before reaching the device, result after {result_after:?} \
         ({} of {READS_PER_POLL} reads of the poll group done first)",
        reads.len()
    );
    assert!(
        waited <= PER_REQUEST,
        "the command waited {waited:?} (for {} reads) instead of at most the one read in flight",
        reads.len() - 3 + 1
    );

    // The poll group then carries on where it stopped: after the write's read-back, the
    // reads it had not done yet, each once.
    let mut rest = Vec::new();
    while rest.len() < usize::from(READS_PER_POLL) - reads.len() + 1 {
        rest.push(seen.recv().await.expect("device running"));
    }
    let read_back = rest.remove(0);
    assert_eq!((read_back.function, read_back.address), (3, 90));
    let mut addresses: Vec<u16> = reads.iter().chain(&rest).map(|r| r.address).collect();
    addresses.sort_unstable();
    let all: Vec<u16> = (0..READS_PER_POLL).map(|i| i * 10).collect();
    assert_eq!(addresses, all, "every read of the group exactly once");
}

#[tokio::test(start_paused = true)]
async fn the_pacing_holds_between_the_reads_of_a_poll_group() {
    // An RTU bus needs its silence between frames; a fussy device needs its pacing.
    let pacing = Duration::from_millis(20);
    let (_meter, mut seen) = start(DeviceConfig {
        pacing,
        ..device(meter_profile())
    });
    let mut reads = Vec::new();
    while reads.len() < usize::from(READS_PER_POLL) {
        reads.push(seen.recv().await.expect("device running"));
    }
    for pair in reads.windows(2) {
        assert_eq!(
            pair[1].at - pair[0].at,
            PER_REQUEST + pacing,
            "each read waits for the answer before it, then the pacing: {reads:?}"
        );
    }
}

#[tokio::test(start_paused = true)]
async fn a_command_for_one_unit_goes_between_two_reads_of_another_units_poll() {
    let (meters, mut seen) = start_link(vec![
        unit_on_a_shared_link("meter-a", 1),
        unit_on_a_shared_link("meter-b", 2),
    ]);
    // Unit 2's poll group is under way: its third read has just reached the bus.
    let mut unit_two_reads = 0;
    while unit_two_reads < 3 {
        let request = seen.recv().await.expect("device running");
        if request.unit == 2 {
            unit_two_reads += 1;
        }
    }
    let submitted = Instant::now();
    let write = args(json!({"point": "level", "value": 3}));
    let outcome = meters[0]
        .submit(meters[0].ticket(), "a1", "write".into(), write)
        .expect("queued");
    let next = seen.recv().await.expect("device running");
    assert_eq!(
        (next.unit, next.function),
        (1, 6),
        "unit 1's write is the very next request on the bus"
    );
    assert!(
        next.at - submitted <= PER_REQUEST,
        "waited {:?}",
        next.at - submitted
    );
    assert_eq!(outcome.await.expect("answered"), Ok(()));
    // Then unit 2's poll carries on (after unit 1's read-back).
    let read_back = seen.recv().await.expect("device running");
    assert_eq!((read_back.unit, read_back.address), (1, 90));
    let resumed = seen.recv().await.expect("device running");
    assert_eq!((resumed.unit, resumed.address), (2, 30));
}

#[tokio::test(start_paused = true)]
async fn a_link_task_turns_when_probed_so_the_watchdog_can_tell_it_is_alive() {
    let (meter, mut seen) = start(device(meter_profile()));
    // Mid-request: the task waits for the device, with no timer due for a while.
    seen.recv().await.expect("device running");
    let before = meter.probe();
    tokio::time::sleep(Duration::from_millis(1)).await;
    let after = meter.probe();
    assert!(
        after > before,
        "the probe woke the task: {before} -> {after}"
    );
}
