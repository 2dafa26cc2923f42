//! `cargo bench --bench journal`: what durability costs.
//!
//! Records the same stream of events into an in-memory journal and into a durable one
//! (redb, group commit) and reports committed events per second for each, and the ratio,
//! measured the same way in the same run. "Committed" means visible to panels: for the
//! durable journal, on disk.

use std::sync::Arc;
use std::time::{Duration, Instant};

use avgate::journal::{Durability, Journal};
use avgate::store::{Retention, Store};
use serde_json::json;
use tokio_util::sync::CancellationToken;

/// Events per run: enough for the disk to dominate, small enough to finish in seconds.
const EVENTS: u64 = 200_000;
/// Devices the events are spread over, like a busy room.
const DEVICES: usize = 20;

#[tokio::main]
async fn main() {
    let devices: Vec<String> = (0..DEVICES).map(|i| format!("dev-{i}")).collect();

    let memory = Arc::new(Journal::in_memory(10_000, devices.clone()));
    let memory_rate = ingest(&memory).await;

    let dir = tempfile::tempdir().expect("temp dir");
    let retention = Retention::events(1_000_000, Duration::from_secs(86_400));
    let (store, recovered) = Store::open(dir.path(), retention, 10_000).expect("store");
    let durable = Arc::new(Journal::durable(
        10_000,
        devices,
        Durability {
            store: Arc::new(store),
            recovered,
            max_batch: 1_000,
        },
    ));
    let stop = CancellationToken::new();
    let committer = tokio::spawn(durable.clone().run_committer(stop.clone()));
    let durable_rate = ingest(&durable).await;
    stop.cancel();
    committer.await.expect("committer");

    println!(
        "journal ingest, {EVENTS} events over {DEVICES} devices, committed = visible to panels"
    );
    println!("  in memory : {memory_rate:>12.0} events/s");
    println!(
        "  durable   : {durable_rate:>12.0} events/s  (redb, group commit, every commit synced)"
    );
    println!("  durable / in memory = {:.3}", durable_rate / memory_rate);
}

/// Records every event as fast as one producer can and waits until the last is committed.
async fn ingest(journal: &Arc<Journal>) -> f64 {
    let start_seq = journal.head();
    let mut head = journal.watch();
    let started = Instant::now();
    for i in 0..EVENTS {
        let device = format!("dev-{}", i as usize % DEVICES);
        journal.record(&device, "volume", json!(i));
        if i % 1_000 == 0 {
            // Let the committer run between bursts, as device tasks would.
            tokio::task::yield_now().await;
        }
    }
    let target = start_seq + EVENTS;
    head.wait_for(|h| *h >= target)
        .await
        .expect("journal alive");
    EVENTS as f64 / started.elapsed().as_secs_f64()
}
