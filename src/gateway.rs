//! Puts the parts together: a journal, a task per device, the router, the hub and the
//! HTTP server, with one shutdown for all of them.

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

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
use crate::reload::{Links, Live, ReloadError, Spawner, Summary, Swap};
use crate::router::Router;
use crate::runtime::{self, DeviceHandle};
use crate::store::{Retention, Store};
use crate::trace::Traces;

/// How long shutdown waits for tasks (the journal's last commit among them).
pub const SHUTDOWN_TIMEOUT: Duration = Duration::from_secs(5);

/// A running gateway.
pub struct Gateway {
    addr: SocketAddr,
    /// Serving HTTPS and wss://.
    tls: bool,
    journal: Arc<Journal>,
    live: Arc<Live>,
    shutdown: CancellationToken,
    tasks: TaskTracker,
}

impl Gateway {
    /// Starts every device task and the HTTP server on `site.server.listen` (port 0 picks
    /// a free port; see [`Gateway::local_addr`]).
    pub async fn start(site: Site) -> anyhow::Result<Gateway> {
        for warning in &site.warnings {
            warn!("{warning}");
        }
        if site.auth.is_empty() {
            warn!(
                "no [[auth.tokens]] configured: anyone who can reach {} can watch and control every device; see docs/SECURITY.md",
                site.server.listen
            );
        }
        let listener = TcpListener::bind(site.server.listen)
            .await
            .with_context(|| format!("cannot listen on {}; is another gateway running there? Change [server] listen or --listen", site.server.listen))?;
        let addr = listener.local_addr()?;

        let shutdown = CancellationToken::new();
        let tasks = TaskTracker::new();
        let ids = site.devices.iter().map(|d| d.id.clone());
        // One descriptor per link at most: devices sharing a line or address share it.
        let links = runtime::group_by_link(&site.devices).len();
        let (journal, store) = open_journal(&site, ids).await?;
        if store.is_some() {
            tasks.spawn(journal.clone().run_committer(shutdown.clone()));
        }
        let traces = Arc::new(Traces::default());
        let spawner = Spawner {
            journal: journal.clone(),
            traces: traces.clone(),
            queue: site.commands.queue.into(),
            cancel: shutdown.child_token(),
            tracker: tasks.clone(),
        };
        let running = Links::start(&site.devices, &spawner);
        let mut router = Router::new(
            running.routes(),
            site.commands.dedupe_window,
            journal.clone(),
        )
        .with_macros(site.macros.clone())
        .with_shutdown(shutdown.child_token(), tasks.clone());
        let history = store.as_ref().map(|(store, _, _)| store.clone());
        if let Some((store, commands, audit)) = store {
            router = router.with_store(store, &commands, &audit);
        }
        router.configure_lease(site.lease.clone(), &site.auth);
        let hub = Arc::new(
            Hub::new(
                journal.clone(),
                router,
                &site.auth,
                site.server.ping_interval,
            )
            .with_limits(crate::reload::panel_limits(&site)),
        );
        if let Some(mqtt) = &site.mqtt {
            let data_dir = site
                .journal
                .durable
                .then(|| site.journal.data_dir.clone())
                .flatten();
            tasks.spawn(crate::mqtt::run(
                Arc::new(mqtt.clone()),
                journal.clone(),
                hub.clone(),
                data_dir,
                crate::mqtt::discovery::announcements(mqtt, &site.devices),
                shutdown.clone(),
            ));
        }
        let (schedules, scheduled) = tokio::sync::watch::channel(site.schedules.clone());
        tasks.spawn(crate::macros::schedule::run_schedules(
            hub.router.clone(),
            scheduled,
            crate::macros::schedule::Clock::system(),
            shutdown.child_token(),
        ));
        let web = Arc::new(Swap::new(crate::reload::web_policy(&site.server)));
        let metrics = Arc::new(Exporter::install());
        metrics.register_site(&site.devices);
        tasks.spawn(upkeep(metrics.clone(), shutdown.clone()));
        let panels = Arc::new(Swap::new(site.panels.clone()));
        let gate = accept::Gate::new(
            accept::Limits::of(&site.server),
            accept::raise_open_file_limit(),
            links,
        );
        let live = Arc::new(Live {
            journal: journal.clone(),
            hub: hub.clone(),
            devices: Arc::new(Swap::new(DeviceInfo::from_site(&site))),
            panels: panels.clone(),
            schedules,
            metrics_access: Arc::new(Swap::new(Access::new(&site.metrics).with_credential({
                // A token with the `metrics` scope scrapes from anywhere; wrong ones count
                // towards the address's lockout like any other.
                let hub = Arc::downgrade(&hub);
                Arc::new(move |peer, headers: &axum::http::HeaderMap| {
                    let token = headers
                        .get(axum::http::header::AUTHORIZATION)
                        .and_then(|v| v.to_str().ok())
                        .and_then(|v| v.strip_prefix("Bearer "));
                    token.is_some()
                        && hub.upgrade().is_some_and(|hub| {
                            hub.auth_required()
                                && hub
                                    .authenticate(peer, token)
                                    .is_ok_and(|p| p.scopes.has_metrics())
                        })
                })
            }))),
            web: web.clone(),
            gate: gate.clone(),
            addr,
            spawner,
            current: tokio::sync::Mutex::new((running, site.clone())),
        });
        let state = AppState {
            hub,
            web,
            devices: live.devices.clone(),
            shutdown: shutdown.clone(),
            metrics,
            metrics_access: live.metrics_access.clone(),
            traces,
            history,
        };
        if let Some(settings) = &site.server.tls {
            let dir = crate::reload::data_dir(&site);
            gate.set_tls(Some(crate::reload::tls_acceptor(settings, &dir, addr)?));
        }
        tasks.spawn(accept::serve(
            listener,
            http::router(state).merge(crate::web::router(panels, site.server.ping_interval)),
            gate,
            shutdown.clone(),
            tasks.clone(),
        ));
        tasks.close();
        info!(%addr, devices = site.devices.len(), epoch = journal.epoch(), "gateway running");
        Ok(Gateway {
            addr,
            tls: site.server.tls.is_some(),
            journal,
            live,
            shutdown,
            tasks,
        })
    }

    pub fn local_addr(&self) -> SocketAddr {
        self.addr
    }

    /// The base URL of the pages (`http://` or `https://`, with the address).
    pub fn url(&self) -> String {
        let scheme = if self.tls { "https" } else { "http" };
        format!("{scheme}://{}", self.addr)
    }

    /// The WebSocket URL panels connect to.
    pub fn ws_url(&self) -> String {
        let scheme = if self.tls { "wss" } else { "ws" };
        format!("{scheme}://{}/ws", self.addr)
    }

    pub fn journal(&self) -> &Arc<Journal> {
        &self.journal
    }

    /// Applies the site file at `path` if it passes the check; see [`crate::reload`].
    pub async fn reload(&self, path: &std::path::Path) -> Result<Summary, ReloadError> {
        self.live.reload(path).await
    }

    /// Devices online, devices in all, panels connected: for a status line.
    pub fn status(&self) -> Status {
        // The site's devices, not the journal's: a device just added by a reload has no
        // state yet, and one just removed keeps its last.
        let devices = self.live.devices.load();
        let snapshot = self.journal.snapshot();
        let online = devices
            .iter()
            .filter(|d| snapshot.devices.get(&d.id).is_some_and(|s| s.online))
            .count();
        Status {
            devices_online: online,
            devices: devices.len(),
            panels: self.live.hub.panels(),
        }
    }

    /// Whether the parts that must keep moving do: see [`Liveness`].
    pub async fn liveness(&self) -> Liveness {
        let probes = self.live.current.lock().await.0.probes();
        Liveness {
            journal: self.journal.clone(),
            probes,
        }
    }

    /// Stops everything: devices disconnect, panels are closed, in-flight commands fail
    /// with `shutting_down`, the journal commits what it has. Returns within
    /// [`SHUTDOWN_TIMEOUT`] whatever the disk does (a task still stuck then is abandoned
    /// with a log line; the process exits anyway).
    pub async fn shutdown(self) {
        self.shutdown.cancel();
        if tokio::time::timeout(SHUTDOWN_TIMEOUT, self.tasks.wait())
            .await
            .is_err()
        {
            warn!(
                "shutdown: some tasks did not stop within {SHUTDOWN_TIMEOUT:?} (a hung disk?); stopping without them"
            );
        }
    }
}

/// How the gateway is doing, in numbers.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Status {
    pub devices_online: usize,
    pub devices: usize,
    pub panels: usize,
}

impl std::fmt::Display for Status {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "{}/{} devices online, {} panel(s) connected",
            self.devices_online, self.devices, self.panels
        )
    }
}

/// A check, repeated, that the journal committer and every link task still make
/// progress: between two calls of [`Liveness::check`] each link task must have taken a
/// turn of its loop (it is rung at every call, so an idle one turns too), and a journal
/// with events waiting for the disk must have committed some.
pub struct Liveness {
    journal: Arc<Journal>,
    probes: Vec<(String, DeviceHandle)>,
}

/// What a [`Liveness`] check remembers from the previous one.
#[derive(Default)]
pub struct Marks {
    turns: std::collections::HashMap<String, u64>,
    head: Option<(u64, usize)>,
}

impl Liveness {
    /// Compares with `marks` (from the previous check) and updates them. Returns what
    /// is stuck, if anything.
    pub fn check(&self, marks: &mut Marks) -> Result<(), String> {
        let mut stuck = Vec::new();
        let mut turns = std::collections::HashMap::new();
        for (link, handle) in &self.probes {
            let now = handle.probe();
            if marks.turns.get(link).is_some_and(|&before| before == now) {
                stuck.push(format!("link {link} has not turned since the last check"));
            }
            turns.insert(link.clone(), now);
        }
        marks.turns = turns;
        let head = (self.journal.head(), self.journal.uncommitted());
        if let Some((before, waiting)) = marks.head
            && waiting > 0
            && head.1 > 0
            && head.0 == before
        {
            stuck.push(format!(
                "the journal has committed nothing since the last check ({} events waiting)",
                head.1
            ));
        }
        marks.head = Some(head);
        if stuck.is_empty() {
            Ok(())
        } else {
            Err(stuck.join("; "))
        }
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
        audit: settings.retain_audit,
        audit_age: settings.retain_audit_for,
        commands: settings.retain_commands,
        commands_age: site.commands.dedupe_window,
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

#[cfg(test)]
mod tests {
    use std::path::Path;
    use std::time::Duration;

    use super::*;
    use crate::config::parse_site;
    use crate::trace::Traces;

    #[tokio::test]
    async fn a_committer_that_stops_committing_fails_the_liveness_check() {
        let dir = tempfile::tempdir().unwrap();
        let retention = Retention::events(100, Duration::from_secs(3600));
        let (store, recovered) = Store::open(dir.path(), retention, 100).unwrap();
        let durability = Durability {
            store: Arc::new(store),
            recovered,
            max_batch: 10,
        };
        let journal = Arc::new(Journal::durable(100, ["proj".to_string()], durability));
        let liveness = Liveness {
            journal: journal.clone(),
            probes: Vec::new(),
        };
        let mut marks = Marks::default();
        assert_eq!(liveness.check(&mut marks), Ok(()));
        // An event waits for the disk, and no committer runs.
        journal.record("proj", "power", serde_json::json!("on"));
        assert_eq!(
            liveness.check(&mut marks),
            Ok(()),
            "one check sees no lack of progress"
        );
        let stuck = liveness.check(&mut marks).unwrap_err();
        assert!(stuck.contains("committed nothing"), "{stuck}");

        // Once the committer runs, the next check passes again.
        let stop = CancellationToken::new();
        let committer = tokio::spawn(journal.clone().run_committer(stop.clone()));
        let mut head = journal.watch();
        head.wait_for(|seq| *seq > 0).await.unwrap();
        assert_eq!(liveness.check(&mut marks), Ok(()));
        stop.cancel();
        committer.await.unwrap();
    }

    #[tokio::test]
    async fn a_link_task_that_is_gone_fails_the_liveness_check() {
        let site = parse_site(
            Path::new("test.toml"),
            "[devices.proj]\nprofile = \"pjlink-projector\"\naddress = \"127.0.0.1:1\"\n",
        )
        .unwrap();
        let journal = Arc::new(Journal::in_memory(100, ["proj".to_string()]));
        let cancel = CancellationToken::new();
        let tracker = TaskTracker::new();
        let (handles, task) = runtime::spawn_link(
            &site.devices,
            journal.clone(),
            &Traces::default(),
            8,
            cancel.clone(),
            &tracker,
        );
        let liveness = Liveness {
            journal,
            probes: vec![("127.0.0.1:1".into(), handles[0].clone())],
        };
        let mut marks = Marks::default();
        liveness.check(&mut marks).unwrap();
        // The probe rang the task; it turns, so the next check passes.
        let ready = async {
            loop {
                tokio::task::yield_now().await;
                if handles[0].probe() > marks.turns["127.0.0.1:1"] {
                    break;
                }
            }
        };
        tokio::time::timeout(Duration::from_secs(10), ready)
            .await
            .unwrap();
        liveness.check(&mut marks).unwrap();

        cancel.cancel();
        task.unwrap().await.unwrap();
        liveness.check(&mut marks).unwrap_or_default();
        let stuck = liveness.check(&mut marks).unwrap_err();
        assert!(stuck.contains("has not turned"), "{stuck}");
    }
}
