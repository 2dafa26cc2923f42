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
use super::{DeviceHandle, Reply, transport::LinkStream};
use crate::config::{DeviceConfig, Link, Profile};
use crate::journal::{DeviceState, Journal, ONLINE, Read};

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
        required: true,
        connection: profile.transport.connection,
        options: profile.options.clone(),
        idle_close: true,
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

/// How the in-memory device misbehaves; tests change it while it runs.
#[derive(Debug, Clone, Copy, Default)]
struct Behaviour {
    /// Reads are answered with this Modbus exception code.
    read_exception: Option<u8>,
    /// Requests are taken in but never answered.
    silent: bool,
    /// The connection is closed right after each reply (connect-per-request firmware).
    close_after_reply: bool,
}

/// The in-memory device's controls: its behaviour, and a way to drop its connection.
#[derive(Clone, Default)]
struct Controls {
    behaviour: Arc<std::sync::Mutex<Behaviour>>,
    drop_connection: Arc<Notify>,
}

impl Controls {
    fn set(&self, change: impl FnOnce(&mut Behaviour)) {
        change(&mut self.behaviour.lock().expect("not poisoned"));
    }

    fn get(&self) -> Behaviour {
        *self.behaviour.lock().expect("not poisoned")
    }
}

/// Modbus TCP devices at the far end of `link`, any unit id: each request takes
/// [`PER_REQUEST`]; they keep the holding registers written to them and report every
/// request, and behave as `controls` say.
async fn slow_device(
    mut link: DuplexStream,
    seen: mpsc::UnboundedSender<Seen>,
    controls: Controls,
) {
    let mut holding = std::collections::HashMap::<(u8, u16), u16>::new();
    loop {
        let mut header = [0u8; 7];
        let read = tokio::select! {
            read = link.read_exact(&mut header) => read,
            _ = controls.drop_connection.notified() => return,
        };
        if read.is_err() {
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
        let behaviour = controls.get();
        if behaviour.silent {
            continue;
        }
        tokio::time::sleep(PER_REQUEST).await;
        let answer = match (function, behaviour.read_exception) {
            (3, Some(code)) => vec![3 | 0x80, code],
            (3, None) => {
                let mut answer = vec![3, (2 * word) as u8];
                for register in address..address + word {
                    let value = holding.get(&(unit, register)).copied().unwrap_or(0);
                    answer.extend(value.to_be_bytes());
                }
                answer
            }
            (6, _) => {
                holding.insert((unit, address), word);
                pdu.clone()
            }
            (other, _) => vec![other | 0x80, 1],
        };
        let mut frame = header[..4].to_vec();
        frame.extend(((answer.len() + 1) as u16).to_be_bytes());
        frame.push(header[6]);
        frame.extend(answer);
        if link.write_all(&frame).await.is_err() || behaviour.close_after_reply {
            return;
        }
    }
}

/// A running link task under test.
struct Running {
    handles: Vec<DeviceHandle>,
    seen: mpsc::UnboundedReceiver<Seen>,
    journal: Arc<Journal>,
    controls: Controls,
}

/// One link task for `configs` (devices on one link) whose link is an in-memory pipe to
/// [`slow_device`].
fn run_link(configs: Vec<DeviceConfig>) -> Running {
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
            checker: None,
            alive: alive.clone(),
        });
        units.push(Unit::new(config.clone(), journal.clone(), jobs).expect("driver builds"));
    }
    let (seen_tx, seen) = mpsc::unbounded_channel();
    let controls = Controls::default();
    let device_controls = controls.clone();
    let link = configs[0].link.clone();
    let task = LinkTask::new(link, units, wake, CancellationToken::new())
        .counting_turns(alive)
        .opening_with(Box::new(move |_, _| {
            let (ours, theirs) = tokio::io::duplex(4096);
            tokio::spawn(slow_device(
                theirs,
                seen_tx.clone(),
                device_controls.clone(),
            ));
            Box::pin(async move { Ok(Box::new(ours) as Box<dyn LinkStream>) })
        }));
    tokio::spawn(task.run());
    Running {
        handles,
        seen,
        journal,
        controls,
    }
}

fn start_link(configs: Vec<DeviceConfig>) -> (Vec<DeviceHandle>, mpsc::UnboundedReceiver<Seen>) {
    let running = run_link(configs);
    (running.handles, running.seen)
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
    let (reply, outcome) = Reply::channel();
    meter.submit(meter.ticket(), "w1", "write".into(), write, reply);

    let write = loop {
        let request = seen.recv().await.expect("device running");
        if request.function == 6 {
            break request;
        }
        reads.push(request);
    };
    let waited = write.at - submitted;
    let answered = outcome.await.expect("answered");
    assert_eq!(answered.outcome, Ok(()));
    let result_after = Instant::now() - submitted;
    // The device had it for the write and its read-back; the wait before was the queue's.
    assert!(
        answered.device_time >= 2 * PER_REQUEST && answered.device_time <= result_after - waited,
        "device time {:?}: the write and its read-back take {:?}, the result came {result_after:?} after a wait of {waited:?}",
        answered.device_time,
        2 * PER_REQUEST
    );
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
    let (reply, outcome) = Reply::channel();
    meters[0].submit(meters[0].ticket(), "a1", "write".into(), write, reply);
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
    assert_eq!(outcome.await.expect("answered").outcome, Ok(()));
    // Then unit 2's poll carries on (after unit 1's read-back).
    let read_back = seen.recv().await.expect("device running");
    assert_eq!((read_back.unit, read_back.address), (1, 90));
    let resumed = seen.recv().await.expect("device running");
    assert_eq!((resumed.unit, resumed.address), (2, 30));
}

/// The device's state in the journal once `done` holds, checked at every change.
async fn state_when(
    journal: &Journal,
    id: &str,
    done: impl Fn(&DeviceState) -> bool,
) -> DeviceState {
    let mut head = journal.watch();
    let wait = async {
        loop {
            let state = journal.snapshot().devices[id].clone();
            if done(&state) {
                return state;
            }
            head.changed().await.expect("journal alive");
        }
    };
    tokio::time::timeout(Duration::from_secs(600), wait)
        .await
        .unwrap_or_else(|_| panic!("{id}: {:?}", journal.snapshot().devices[id]))
}

/// Every `online` value recorded for `id`, in order.
fn online_history(journal: &Journal, id: &str) -> Vec<bool> {
    let Read::Events(events) = journal.read_after(0, 100_000) else {
        panic!("the window holds everything");
    };
    events
        .iter()
        .filter(|e| e.device == id && e.point == ONLINE)
        .map(|e| {
            let frame: Value = serde_json::from_str(e.frame.as_str()).expect("json");
            frame["value"].as_bool().expect("a bool")
        })
        .collect()
}

#[tokio::test(start_paused = true)]
async fn a_point_never_read_is_listed_stale_until_its_first_reading() {
    let running = run_link(vec![device(meter_profile())]);
    let before = running.journal.snapshot().devices["meter"].clone();
    assert!(before.points.is_empty());
    let declared: Vec<String> = (0..READS_PER_POLL - 1)
        .map(|i| format!("r{i}"))
        .chain(["level".to_string()])
        .collect();
    for point in &declared {
        assert!(before.stale.contains(point), "{point} unknown: {before:?}");
    }

    let read = state_when(&running.journal, "meter", |s| s.stale.is_empty()).await;
    assert_eq!(read.points.len(), declared.len(), "{read:?}");
    assert!(read.online);
}

#[tokio::test(start_paused = true)]
async fn a_device_whose_every_read_fails_is_not_online_and_says_why() {
    // Addresses written the manual's way: the meter refuses every one.
    let running = run_link(vec![device(meter_profile())]);
    running.controls.set(|b| b.read_exception = Some(2));

    let failing = state_when(&running.journal, "meter", |s| s.error.is_some()).await;
    let error = failing.error.expect("an error");
    assert!(!failing.online, "no successful answer yet: {error}");
    assert!(error.starts_with("every poll fails: "), "{error}");
    assert!(error.contains("illegal data address (02)"), "{error}");
    assert!(error.contains("30001 is input 0"), "{error}");
    assert_eq!(
        online_history(&running.journal, "meter"),
        Vec::<bool>::new()
    );

    // Fixed at the device: the next poll reads and clears the error.
    running.controls.set(|b| b.read_exception = None);
    let healthy = state_when(&running.journal, "meter", |s| s.online).await;
    assert_eq!(healthy.error, None);
}

#[tokio::test(start_paused = true)]
async fn a_connected_device_whose_reads_start_failing_stays_online_with_the_reason() {
    let running = run_link(vec![device(meter_profile())]);
    state_when(&running.journal, "meter", |s| s.online).await;
    // A read bigger than the meter takes.
    running.controls.set(|b| b.read_exception = Some(3));
    let failing = state_when(&running.journal, "meter", |s| s.error.is_some()).await;
    assert!(failing.online);
    let error = failing.error.expect("an error");
    assert!(error.contains("max_registers_per_read"), "{error}");
}

#[tokio::test(start_paused = true)]
async fn offline_after_three_failures_in_a_row_not_two() {
    let mut running = run_link(vec![device(meter_profile())]);
    state_when(&running.journal, "meter", |s| s.online).await;
    while running.seen.try_recv().is_ok() {}
    running.controls.set(|b| b.silent = true);

    let first = running.seen.recv().await.expect("device running");
    running
        .seen
        .recv()
        .await
        .expect("retried after one timeout");
    running
        .seen
        .recv()
        .await
        .expect("retried after two timeouts");
    assert!(
        running.journal.snapshot().devices["meter"].online,
        "two failures are not enough"
    );
    let offline = state_when(&running.journal, "meter", |s| !s.online).await;
    let failing_for = Instant::now() - first.at;
    assert_eq!(failing_for, 3 * Duration::from_secs(1), "the third timeout");
    assert!(
        offline
            .error
            .as_deref()
            .unwrap_or("")
            .contains("did not answer"),
        "{offline:?}"
    );
    assert_eq!(online_history(&running.journal, "meter"), [true, false]);
}

#[tokio::test(start_paused = true)]
async fn offline_after_failing_for_ten_seconds_even_with_fewer_failures() {
    // A device with a long timeout fails slowly: two failures take 22 s.
    let timeout = Duration::from_secs(11);
    let mut running = run_link(vec![DeviceConfig {
        command_timeout: timeout,
        ..device(meter_profile())
    }]);
    state_when(&running.journal, "meter", |s| s.online).await;
    while running.seen.try_recv().is_ok() {}
    running.controls.set(|b| b.silent = true);

    let first = running.seen.recv().await.expect("device running");
    running
        .seen
        .recv()
        .await
        .expect("retried after one timeout");
    state_when(&running.journal, "meter", |s| !s.online).await;
    assert_eq!(Instant::now() - first.at, 2 * timeout);
    assert!(
        running.seen.try_recv().is_err(),
        "offline at the second failure, without a third attempt"
    );
}

#[tokio::test(start_paused = true)]
async fn two_drops_a_moment_apart_do_not_flap_the_device_offline() {
    let mut running = run_link(vec![device(meter_profile())]);
    state_when(&running.journal, "meter", |s| s.online).await;
    tokio::time::sleep(Duration::from_secs(2)).await;
    while running.seen.try_recv().is_ok() {}

    running.controls.drop_connection.notify_one();
    running.seen.recv().await.expect("reconnected and re-read");
    tokio::time::sleep(Duration::from_millis(300)).await;
    while running.seen.try_recv().is_ok() {}
    running.controls.drop_connection.notify_one();
    running.seen.recv().await.expect("reconnected and re-read");

    assert_eq!(online_history(&running.journal, "meter"), [true]);
    assert!(running.journal.snapshot().devices["meter"].online);
}

#[tokio::test(start_paused = true)]
async fn a_connect_per_request_device_shows_every_value_and_never_goes_offline() {
    let profile = Profile::parse(
        "one-shot-meter",
        Path::new("one-shot-meter.toml"),
        "name = \"one-shot meter\"\ndriver = \"modbus\"\n\
         [transport]\nconnection = \"per_request\"\n\
         [options]\npoll_groups = { fast = \"1s\", slow = \"5s\" }\n\
         [[options.points]]\nname = \"a\"\ntable = \"holding\"\naddress = 0\npoll = \"fast\"\n\
         [[options.points]]\nname = \"b\"\ntable = \"holding\"\naddress = 100\npoll = \"slow\"\n",
    )
    .expect("valid profile");
    let running = run_link(vec![device(profile)]);
    running.controls.set(|b| b.close_after_reply = true);

    let read = state_when(&running.journal, "meter", |s| s.stale.is_empty()).await;
    assert_eq!(read.points.len(), 2, "{read:?}");
    tokio::time::sleep(Duration::from_secs(15)).await;
    assert_eq!(online_history(&running.journal, "meter"), [true]);
}

thread_local! {
    /// What was logged at WARN on this thread: a test's runtime is current-thread, so
    /// everything its tasks log lands here.
    static WARNINGS: std::cell::RefCell<Vec<u8>> = const { std::cell::RefCell::new(Vec::new()) };
}

/// Writes log lines into this thread's [`WARNINGS`].
struct ThisThread;

impl std::io::Write for ThisThread {
    fn write(&mut self, bytes: &[u8]) -> std::io::Result<usize> {
        WARNINGS.with(|w| w.borrow_mut().extend_from_slice(bytes));
        Ok(bytes.len())
    }
    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

/// The WARN lines logged on this thread from now on.
struct Warnings;

impl Warnings {
    /// One global subscriber for the whole test binary (a scoped one races with other
    /// threads over which call sites are enabled), writing per thread.
    fn capture() -> Warnings {
        static INSTALL: std::sync::Once = std::sync::Once::new();
        INSTALL.call_once(|| {
            let subscriber = tracing_subscriber::fmt()
                .with_max_level(tracing::Level::WARN)
                .with_ansi(false)
                .with_writer(|| ThisThread)
                .finish();
            tracing::subscriber::set_global_default(subscriber)
                .expect("no other global subscriber in the library's tests");
        });
        WARNINGS.with(|w| w.borrow_mut().clear());
        Warnings
    }

    fn lines_with(&self, text: &str) -> usize {
        WARNINGS.with(|w| {
            String::from_utf8_lossy(&w.borrow())
                .lines()
                .filter(|line| line.contains(text))
                .count()
        })
    }
}

#[tokio::test(start_paused = true)]
async fn a_failing_poll_is_a_warning_once_then_again_only_after_five_minutes() {
    let warnings = Warnings::capture();
    let mut running = run_link(vec![device(meter_profile())]);
    running.controls.set(|b| b.read_exception = Some(2));
    state_when(&running.journal, "meter", |s| s.error.is_some()).await;
    assert_eq!(warnings.lines_with("poll failed"), 1);

    // The group is polled every 10 s: many more failures, no more warnings for a while.
    tokio::time::sleep(Duration::from_secs(120)).await;
    let mut polls = 0;
    while running.seen.try_recv().is_ok() {
        polls += 1;
    }
    assert!(polls >= 10, "{polls} polls");
    assert_eq!(warnings.lines_with("poll failed"), 1);
    assert_eq!(warnings.lines_with("poll still failing"), 0);

    tokio::time::sleep(Duration::from_secs(200)).await;
    assert_eq!(warnings.lines_with("poll still failing"), 1);
}

#[test]
fn a_point_the_profile_does_not_declare_is_a_warning_once() {
    let warnings = Warnings::capture();
    let profile = Profile::parse(
        "bare-projector",
        Path::new("bare-projector.toml"),
        "name = \"bare\"\ndriver = \"pjlink\"\n[points.power]\n",
    )
    .expect("valid profile");
    let journal = Arc::new(Journal::in_memory(16, ["meter".to_string()]));
    let mut unit =
        Unit::new(device(profile), journal, Arc::new(CommandQueue::new(4))).expect("driver builds");
    unit.stage("serial_number".into(), json!("SN1"));
    unit.stage("serial_number".into(), json!("SN1"));
    unit.stage("power".into(), json!("on"));
    assert_eq!(warnings.lines_with("serial_number"), 1);
    assert_eq!(warnings.lines_with("does not declare"), 1);
}

#[test]
fn a_value_its_point_does_not_allow_is_an_error_once_and_never_published() {
    let warnings = Warnings::capture();
    let profile = Profile::find("pjlink-projector", &[]).unwrap().unwrap();
    let journal = Arc::new(Journal::in_memory(16, ["meter".to_string()]));
    let mut unit = Unit::new(
        device(profile),
        journal.clone(),
        Arc::new(CommandQueue::new(4)),
    )
    .expect("driver builds");
    unit.stage("power".into(), json!("exploded"));
    unit.stage("power".into(), json!(1));
    unit.stage("lamp_hours".into(), json!(1200));
    unit.publish_staged();
    let points = &journal.snapshot().devices["meter"].points;
    assert_eq!(points.get("power"), None);
    assert_eq!(points.get("lamp_hours"), Some(&json!(1200)));
    assert_eq!(warnings.lines_with("its catalog does not allow"), 1);
    assert_eq!(warnings.lines_with("exploded"), 1);
}

#[test]
fn a_discovered_catalog_is_published_and_admits_its_points() {
    let profile = Profile::find("pjlink-projector", &[]).unwrap().unwrap();
    let journal = Arc::new(Journal::in_memory(16, ["meter".to_string()]));
    let mut unit = Unit::new(
        device(profile),
        journal.clone(),
        Arc::new(CommandQueue::new(4)),
    )
    .expect("driver builds");
    unit.stage("label.1".into(), json!("Lectern"));
    let mut found = avgate_drivers::Catalog::default();
    found.points.insert(
        "label.*".into(),
        avgate_drivers::PointSpec::new(avgate_drivers::PointType::String, "Input label."),
    );
    unit.discovered(found);
    unit.stage("label.1".into(), json!("Lectern"));
    unit.stage("label.2".into(), json!(2));
    unit.publish_staged();
    let points = &journal.snapshot().devices["meter"].points;
    assert_eq!(points.get("label.1"), Some(&json!("Lectern")));
    assert_eq!(
        points.get("label.2"),
        None,
        "a discovered point is type-checked too"
    );
    assert_eq!(
        points[avgate_drivers::CATALOG_POINT]["points"]["label.*"]["type"],
        json!("string")
    );
}

/// A device that runs `script` on each connection, for one device of `profile`.
fn run_scripted(
    mut config: DeviceConfig,
    script: fn(DuplexStream) -> std::pin::Pin<Box<dyn Future<Output = ()> + Send>>,
) -> Arc<Journal> {
    config.id = "proj".into();
    let journal = Arc::new(Journal::in_memory(1024, ["proj".to_string()]));
    let jobs = Arc::new(CommandQueue::new(4));
    let unit = Unit::new(config.clone(), journal.clone(), jobs).expect("driver builds");
    let task = LinkTask::new(
        config.link.clone(),
        vec![unit],
        Arc::new(Notify::new()),
        CancellationToken::new(),
    )
    .opening_with(Box::new(move |_, _| {
        let (ours, theirs) = tokio::io::duplex(4096);
        tokio::spawn(script(theirs));
        Box::pin(async move { Ok(Box::new(ours) as Box<dyn LinkStream>) })
    }));
    tokio::spawn(task.run());
    journal
}

fn projector() -> DeviceConfig {
    let profile = Profile::find("pjlink-projector", &[])
        .expect("built in")
        .expect("valid");
    DeviceConfig {
        password: Some("JBMIAProjectorLink".into()),
        ..device(profile)
    }
}

#[tokio::test(start_paused = true)]
async fn a_projector_that_greets_then_falls_silent_is_not_said_to_have_skipped_its_greeting() {
    let journal = run_scripted(projector(), |mut link| {
        Box::pin(async move {
            let _ = link.write_all(b"PJLINK 1 498e4a67\r").await;
            // Takes the login in and never answers it.
            let mut sink = [0u8; 256];
            while matches!(link.read(&mut sink).await, Ok(n) if n > 0) {}
        })
    });
    let state = state_when(&journal, "proj", |s| s.error.is_some()).await;
    let error = state.error.expect("an error");
    assert!(error.contains("began its greeting"), "{error}");
    assert!(error.contains("answer to the login"), "{error}");
}

#[tokio::test(start_paused = true)]
async fn a_driver_that_times_its_own_login_is_given_its_time_and_names_the_step() {
    let profile = Profile::find("extron-sis-switcher", &[])
        .expect("built in")
        .expect("valid");
    // The connect timeout covers opening the link only: the switcher's login has 10 s.
    let config = DeviceConfig {
        password: Some("secret".into()),
        connect_timeout: Duration::from_secs(1),
        ..device(profile)
    };
    let started = tokio::time::Instant::now();
    let journal = run_scripted(config, |mut link| {
        Box::pin(async move {
            let _ = link.write_all(b"\r\nPassword:").await;
            // Takes the password in and never says whether it was right.
            let mut sink = [0u8; 256];
            while matches!(link.read(&mut sink).await, Ok(n) if n > 0) {}
        })
    });
    let state = state_when(&journal, "proj", |s| s.error.is_some()).await;
    let error = state.error.expect("an error");
    assert!(error.contains("after the password within 10s"), "{error}");
    assert!(started.elapsed() >= avgate_drivers::extron::session::HANDSHAKE_TIMEOUT);
}

#[tokio::test(start_paused = true)]
async fn a_projector_that_says_nothing_at_all_is_said_to_send_nothing() {
    let journal = run_scripted(projector(), |mut link| {
        Box::pin(async move {
            let mut sink = [0u8; 256];
            while matches!(link.read(&mut sink).await, Ok(n) if n > 0) {}
        })
    });
    let state = state_when(&journal, "proj", |s| s.error.is_some()).await;
    let error = state.error.expect("an error");
    assert!(error.contains("sent nothing"), "{error}");
}

#[tokio::test(start_paused = true)]
async fn a_unit_absent_from_the_start_never_shows_online_and_says_why_at_its_first_timeout() {
    let mut running = run_link(vec![device(meter_profile())]);
    running.controls.set(|b| b.silent = true);
    let first = running.seen.recv().await.expect("device running");
    let state = state_when(&running.journal, "meter", |s| s.error.is_some()).await;
    assert!(!state.online);
    assert!(state.error.unwrap_or_default().contains("did not answer"));
    assert_eq!(
        Instant::now() - first.at,
        Duration::from_secs(1),
        "the first timeout"
    );
    assert_eq!(
        online_history(&running.journal, "meter"),
        Vec::<bool>::new()
    );
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
