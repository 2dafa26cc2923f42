//! Puts the parts together: a journal, a task per device, the router, the hub and the
//! HTTP server, with one shutdown for all of them.

use std::net::SocketAddr;
use std::sync::Arc;

use anyhow::Context;
use tokio::net::TcpListener;
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;
use tracing::{info, warn};

use crate::accept;
use crate::config::Site;
use crate::http::{self, AppState, DeviceInfo};
use crate::hub::Hub;
use crate::journal::{Durability, Journal};
use crate::metrics::{Access, Exporter, UPKEEP_EVERY};
use crate::router::Router;
use crate::runtime;
use crate::store::{Retention, Store};

/// A running gateway.
pub struct Gateway {
    addr: SocketAddr,
    journal: Arc<Journal>,
    shutdown: CancellationToken,
    tasks: TaskTracker,
}

impl Gateway {
    /// Starts every device task and the HTTP server on `site.server.listen` (port 0 picks
    /// a free port; see [`Gateway::local_addr`]).
    pub async fn start(site: Site) -> anyhow::Result<Gateway> {
        let listener = TcpListener::bind(site.server.listen)
            .await
            .with_context(|| format!("cannot listen on {}; is another gateway running there? Change [server] listen or --listen", site.server.listen))?;
        let addr = listener.local_addr()?;

        let shutdown = CancellationToken::new();
        let tasks = TaskTracker::new();
        let ids = site.devices.iter().map(|d| d.id.clone());
        // One descriptor per link at most: devices sharing a line or address share it.
        let links = {
            let mut keys: Vec<String> = site.devices.iter().map(|d| d.link.owner_key()).collect();
            keys.sort_unstable();
            keys.dedup();
            keys.len()
        };
        let (journal, store) = open_journal(&site, ids).await?;
        if store.is_some() {
            tasks.spawn(journal.clone().run_committer(shutdown.clone()));
        }
        let handles = runtime::spawn_links(
            &site.devices,
            journal.clone(),
            site.commands.queue,
            shutdown.child_token(),
            &tasks,
        );
        let devices = handles
            .into_iter()
            .zip(site.devices.iter().map(|d| d.profile.clone()));
        let mut router = Router::new(devices.collect::<Vec<_>>(), site.commands.dedupe_window);
        if let Some((store, commands, audit)) = store {
            router = router.with_store(store, &commands, &audit);
        }
        let hub = Arc::new(
            Hub::new(
                journal.clone(),
                router,
                &site.auth,
                site.server.ping_interval,
            )
            .with_hello_timeout(site.server.hello_timeout),
        );
        let metrics = Arc::new(Exporter::install());
        metrics.register_site(&site.devices);
        tasks.spawn(upkeep(metrics.clone(), shutdown.clone()));
        let state = AppState {
            hub,
            devices: Arc::new(DeviceInfo::from_site(&site)),
            shutdown: shutdown.clone(),
            metrics,
            metrics_access: Arc::new(Access::new(&site.metrics)),
        };
        let limits = accept::Limits {
            max_connections: site.server.max_connections,
            max_per_peer: site.server.max_connections_per_peer,
            header_read_timeout: site.server.header_read_timeout,
        }
        .within_open_files(accept::raise_open_file_limit(), links);
        tasks.spawn(accept::serve(
            listener,
            http::router(state),
            limits,
            shutdown.clone(),
            tasks.clone(),
        ));
        tasks.close();
        info!(%addr, devices = site.devices.len(), epoch = journal.epoch(), "gateway running");
        Ok(Gateway {
            addr,
            journal,
            shutdown,
            tasks,
        })
    }

    pub fn local_addr(&self) -> SocketAddr {
        self.addr
    }

    pub fn journal(&self) -> &Arc<Journal> {
        &self.journal
    }

    /// Stops everything: devices disconnect, panels are closed, in-flight commands fail
    /// with `shutting_down`.
    pub async fn shutdown(self) {
        self.shutdown.cancel();
        self.tasks.wait().await;
    }
}

/// Keeps the exporter's histograms folded, so they do not grow between scrapes.
async fn upkeep(metrics: Arc<Exporter>, stop: CancellationToken) {
    let mut every = tokio::time::interval(UPKEEP_EVERY);
    loop {
        tokio::select! {
            _ = stop.cancelled() => return,
            _ = every.tick() => metrics.run_upkeep(),
        }
    }
}

/// What a durable journal brings back for the router: the store, the command ledger and
/// the audit log as they were on disk.
type Restored = (Arc<Store>, Vec<(String, String)>, Vec<(u64, String)>);

/// The journal the site asks for: on disk (continuing what is there) or in memory.
async fn open_journal(
    site: &Site,
    ids: impl Iterator<Item = String>,
) -> anyhow::Result<(Arc<Journal>, Option<Restored>)> {
    let settings = &site.journal;
    if !settings.durable {
        return Ok((Arc::new(Journal::in_memory(settings.window, ids)), None));
    }
    let dir = settings
        .data_dir
        .clone()
        .unwrap_or_else(|| "avgate-data".into());
    let retention = Retention {
        events: settings.retain_events.max(settings.window),
        age: settings.retain_for,
    };
    let window = settings.window;
    let (store, mut recovered) =
        tokio::task::spawn_blocking(move || Store::open(&dir, retention, window)).await??;
    if let Some(why) = &recovered.lost {
        warn!("{why}");
    }
    let store = Arc::new(store);
    let commands = std::mem::take(&mut recovered.commands);
    let audit = std::mem::take(&mut recovered.audit);
    let durability = Durability {
        store: store.clone(),
        recovered,
        max_batch: settings.commit_batch,
    };
    let journal = Arc::new(Journal::durable(window, ids, durability));
    Ok((journal, Some((store, commands, audit))))
}
