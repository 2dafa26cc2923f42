//! Reloading the site file without a restart (SIGHUP, `systemctl reload`).
//!
//! A reload reads and checks the whole file first, exactly as `avgate check-config` does,
//! and changes nothing if anything is wrong. Otherwise it compares devices by id and
//! restarts only the links whose devices were added, removed or changed (devices sharing
//! a serial line or a gateway address share one task, so they restart together); every
//! other device keeps its connection. Tokens, the panel pages (`/api/devices`), the
//! metrics networks and the limits are swapped whole: the connection caps and deadlines
//! judge the next connection, the browser policy the next request, the command rate and
//! the device queues the next command, sessions already open included. The TLS
//! certificate is read again and serves the next connection. The few keys that
//! cannot change under a running gateway are named in the log ([`Summary::needs_restart`]).
//! The reload is recorded in the journal as a `devices` event of [`SITE`], which
//! connected panels receive like any other event.

use std::path::Path;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};

use serde_json::json;
use tokio::task::JoinHandle;
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;
use tracing::{info, warn};

use crate::accept::{self, Gate};
use crate::auth::WebPolicy;
use crate::config::site::{CommandSettings, Server};
use crate::config::{ConfigErrors, DeviceConfig, Profile, Site, load_site};
use crate::http::DeviceInfo;
use crate::hub::Hub;
use crate::hub::limits::PanelLimits;
use crate::journal::Journal;
use crate::metrics::{self, Access};
use crate::runtime::{self, DeviceHandle};
use crate::trace::Traces;

/// The pseudo-device whose events are about the site itself. `@` cannot appear in a
/// device id, so it never collides with one.
pub const SITE: &str = "@site";

/// A value replaced whole by a reload; readers take whichever is current.
pub struct Swap<T>(Mutex<Arc<T>>);

impl<T> Swap<T> {
    pub fn new(value: T) -> Swap<T> {
        Swap(Mutex::new(Arc::new(value)))
    }

    pub fn load(&self) -> Arc<T> {
        self.0.lock().unwrap_or_else(|p| p.into_inner()).clone()
    }

    pub fn store(&self, value: T) {
        *self.0.lock().unwrap_or_else(|p| p.into_inner()) = Arc::new(value);
    }
}

/// Why a reload changed nothing.
#[derive(Debug, thiserror::Error)]
pub enum ReloadError {
    /// The site file does not pass the check; each error names file:line:column.
    #[error("the site file has problems; nothing was changed:\n{0}")]
    Invalid(ConfigErrors),
    /// The check could not run to its end.
    #[error("checking the site file failed: {0}")]
    CheckFailed(String),
    /// `[server.tls]` names a certificate or key that cannot be used (a renewal half
    /// written, a wrong path); the gateway keeps serving the one it has.
    #[error("nothing was changed: {0}")]
    Tls(#[from] crate::tls::TlsError),
}

/// What a reload did.
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct Summary {
    pub added: Vec<String>,
    pub removed: Vec<String>,
    pub changed: Vec<String>,
    /// Devices restarted only because they share a link with a changed one.
    pub restarted_with_link: Vec<String>,
    /// Keys (`server.ping_interval`) or whole sections (`journal`) that changed but take
    /// effect only after a restart.
    pub needs_restart: Vec<&'static str>,
}

/// The running link tasks, by link.
pub struct Links {
    running: Vec<RunningLink>,
}

struct RunningLink {
    key: String,
    devices: Vec<DeviceConfig>,
    handles: Vec<DeviceHandle>,
    cancel: CancellationToken,
    task: Option<JoinHandle<()>>,
}

impl Links {
    /// Starts a task for every link of `devices`.
    pub fn start(devices: &[DeviceConfig], spawner: &Spawner) -> Links {
        let running = runtime::group_by_link(devices)
            .into_iter()
            .map(|(key, members)| {
                let group: Vec<DeviceConfig> =
                    members.iter().map(|&i| devices[i].clone()).collect();
                spawner.spawn(key, group)
            })
            .collect();
        Links { running }
    }

    /// Every device's handle and profile, for the router.
    pub fn routes(&self) -> Vec<(DeviceHandle, Arc<Profile>)> {
        self.running
            .iter()
            .flat_map(|link| {
                link.handles
                    .iter()
                    .cloned()
                    .zip(link.devices.iter().map(|d| d.profile.clone()))
            })
            .collect()
    }

    /// One handle per running link, to probe its task (see [`DeviceHandle::probe`]).
    pub fn probes(&self) -> Vec<(String, DeviceHandle)> {
        self.running
            .iter()
            .filter(|link| link.task.is_some())
            .filter_map(|link| Some((link.key.clone(), link.handles.first()?.clone())))
            .collect()
    }
}

/// Starts link tasks under the gateway's shutdown.
pub struct Spawner {
    pub journal: Arc<Journal>,
    pub traces: Arc<Traces>,
    /// `[commands] queue` for links started from now on.
    pub queue: AtomicUsize,
    pub cancel: CancellationToken,
    pub tracker: TaskTracker,
}

impl Spawner {
    fn spawn(&self, key: String, devices: Vec<DeviceConfig>) -> RunningLink {
        let cancel = self.cancel.child_token();
        let (handles, task) = runtime::spawn_link(
            &devices,
            self.journal.clone(),
            &self.traces,
            self.queue.load(Ordering::Relaxed),
            cancel.clone(),
            &self.tracker,
        );
        RunningLink {
            key,
            devices,
            handles,
            cancel,
            task,
        }
    }
}

/// Everything a reload may touch.
pub struct Live {
    pub journal: Arc<Journal>,
    pub hub: Arc<Hub>,
    pub devices: Arc<Swap<Vec<DeviceInfo>>>,
    /// The panel pages served at `/panel/NAME`.
    pub panels: Arc<Swap<Vec<crate::config::Panel>>>,
    /// The schedules running; a reload sends the new list.
    pub schedules: tokio::sync::watch::Sender<Vec<crate::config::schedules::Schedule>>,
    pub metrics_access: Arc<Swap<Access>>,
    /// Which pages, names and proxies browsers' requests are checked against.
    pub web: Arc<Swap<WebPolicy>>,
    /// The connection caps, the header deadline and the certificate.
    pub gate: Gate,
    /// Where the gateway listens (the certificate covers it).
    pub addr: std::net::SocketAddr,
    pub spawner: Spawner,
    /// The links and the site they run; one reload at a time holds it.
    pub current: tokio::sync::Mutex<(Links, Site)>,
}

impl Live {
    /// Reads and checks `path`; if it passes, applies it (see the module docs).
    pub async fn reload(&self, path: &Path) -> Result<Summary, ReloadError> {
        let owned = path.to_path_buf();
        let checked = tokio::task::spawn_blocking(move || load_site(&owned))
            .await
            .map_err(|e| ReloadError::CheckFailed(e.to_string()))?;
        let mut site = match checked {
            Ok(site) => site,
            Err(errors) => {
                metrics::reloaded("rejected");
                return Err(ReloadError::Invalid(errors));
            }
        };
        let mut current = self.current.lock().await;
        let (links, running_site) = &mut *current;
        // Where the gateway listens and keeps its journal was settled at start (and may
        // have come from the command line); a reload does not move them.
        // Certificate files are read again whenever TLS stays on, so a reload after a
        // renewal serves the new certificate; if they cannot be used, nothing changes.
        let renewed_tls = match (&running_site.server.tls, &site.server.tls) {
            (Some(_), Some(settings)) => {
                let (settings, addr) = (settings.clone(), self.addr);
                let dir = data_dir(running_site);
                let loaded =
                    tokio::task::spawn_blocking(move || tls_acceptor(&settings, &dir, addr))
                        .await
                        .map_err(|e| ReloadError::CheckFailed(e.to_string()))?;
                match loaded {
                    Ok(acceptor) => Some(acceptor),
                    Err(e) => {
                        metrics::reloaded("rejected");
                        return Err(ReloadError::Tls(e));
                    }
                }
            }
            _ => None,
        };
        let needs_restart = restart_only_changes(running_site, &site);
        site.server.listen = running_site.server.listen;
        site.journal = running_site.journal.clone();
        // What runs is kept as the running site, so the next reload names these keys
        // again until a restart applies them.
        site.server.ping_interval = running_site.server.ping_interval;
        if site.server.tls.is_some() != running_site.server.tls.is_some() {
            site.server.tls = running_site.server.tls.clone();
        }
        site.commands.dedupe_window = running_site.commands.dedupe_window;

        let summary = self.apply_devices(links, &site).await;
        let summary = Summary {
            needs_restart,
            ..summary
        };
        self.apply_limits(links, &site);
        if let Some(acceptor) = renewed_tls {
            self.gate.set_tls(Some(acceptor));
        }
        self.hub.router.replace_devices(links.routes());
        self.hub.router.replace_macros(site.macros.clone());
        self.hub
            .router
            .configure_lease(site.lease.clone(), &site.auth);
        self.hub.replace_tokens(&site.auth);
        self.devices.store(DeviceInfo::from_site(&site));
        self.panels.store(site.panels.clone());
        if format!("{:?}", self.schedules.borrow()) != format!("{:?}", site.schedules) {
            self.schedules.send_replace(site.schedules.clone());
        }
        let access = self.metrics_access.load().renewed(&site.metrics);
        self.metrics_access.store(access);
        for device in &site.devices {
            metrics::register_device(device);
        }
        let ids: Vec<&str> = site.devices.iter().map(|d| d.id.as_str()).collect();
        self.journal.record(
            SITE,
            "devices",
            json!({
                "devices": ids,
                "added": summary.added,
                "removed": summary.removed,
                "changed": summary.changed,
                "at": humantime::format_rfc3339_millis(std::time::SystemTime::now()).to_string(),
            }),
        );
        if !summary.needs_restart.is_empty() {
            warn!(
                "changed in the site file but kept as they were until the gateway restarts: {}",
                summary.needs_restart.join(", ")
            );
        }
        info!(
            added = ?summary.added,
            removed = ?summary.removed,
            changed = ?summary.changed,
            restarted_with_link = ?summary.restarted_with_link,
            "site reloaded from {}",
            path.display()
        );
        metrics::reloaded("applied");
        *running_site = site;
        Ok(summary)
    }

    /// Swaps in every limit `site` sets that a running gateway can change.
    fn apply_limits(&self, links: &Links, site: &Site) {
        let queue = site.commands.queue;
        self.spawner.queue.store(queue, Ordering::Relaxed);
        for (handle, _) in links.routes() {
            handle.set_queue_capacity(queue);
        }
        self.hub.replace_limits(panel_limits(site));
        self.gate.set_limits(
            accept::Limits::of(&site.server),
            runtime::group_by_link(&site.devices).len(),
        );
        self.web.store(web_policy(&site.server));
    }

    /// Stops the links whose devices changed and starts them as `site` has them; the
    /// rest keep running untouched.
    async fn apply_devices(&self, links: &mut Links, site: &Site) -> Summary {
        let old: Vec<&DeviceConfig> = links.running.iter().flat_map(|l| &l.devices).collect();
        let find_old = |id: &str| old.iter().find(|d| d.id == id).copied();
        let mut summary = Summary::default();
        for device in &site.devices {
            match find_old(&device.id) {
                None => summary.added.push(device.id.clone()),
                Some(was) if !same_device(was, device) => summary.changed.push(device.id.clone()),
                Some(_) => {}
            }
        }
        for was in &old {
            if !site.devices.iter().any(|d| d.id == was.id) {
                summary.removed.push(was.id.clone());
            }
        }

        let groups = runtime::group_by_link(&site.devices);
        let mut keep: Vec<RunningLink> = Vec::new();
        let mut start: Vec<(String, Vec<DeviceConfig>)> = Vec::new();
        let mut old_links = std::mem::take(&mut links.running);
        for (key, members) in groups {
            let group: Vec<DeviceConfig> =
                members.iter().map(|&i| site.devices[i].clone()).collect();
            let unchanged = old_links.iter().position(|l| {
                l.key == key
                    && l.devices.len() == group.len()
                    && l.devices.iter().zip(&group).all(|(a, b)| same_device(a, b))
            });
            match unchanged {
                Some(i) => keep.push(old_links.swap_remove(i)),
                None => start.push((key, group)),
            }
        }
        // Whatever is left is stopped before its replacement starts: a serial port opens
        // for one owner at a time.
        for link in &old_links {
            link.cancel.cancel();
        }
        for link in old_links {
            if let Some(task) = link.task {
                let _ = task.await;
            }
        }
        for id in &summary.removed {
            self.journal
                .set_online(id, false, Some("removed from the site by a reload".into()));
        }
        for (key, group) in start {
            for device in &group {
                let named = |list: &Vec<String>| list.contains(&device.id);
                if !named(&summary.added) && !named(&summary.changed) {
                    summary.restarted_with_link.push(device.id.clone());
                }
            }
            keep.push(self.spawner.spawn(key, group));
        }
        links.running = keep;
        summary
    }
}

/// Whether a device is configured exactly as before, its profile included. Every part of
/// a device's configuration is plain data with a stable `Debug` form (maps are ordered),
/// which spares each of them a hand-written comparison that could forget a field.
fn same_device(a: &DeviceConfig, b: &DeviceConfig) -> bool {
    format!("{a:?}") == format!("{b:?}")
}

/// The limits `site` sets for panels.
pub fn panel_limits(site: &Site) -> PanelLimits {
    PanelLimits::new(
        site.server.hello_timeout,
        site.commands.panel_rate,
        site.commands.panel_burst,
    )
}

/// Where the gateway keeps its files (a self-signed certificate among them).
pub fn data_dir(site: &Site) -> std::path::PathBuf {
    site.journal
        .data_dir
        .clone()
        .unwrap_or_else(|| "avgate-data".into())
}

/// The certificate `[server.tls]` names (or the self-signed one kept in `data_dir`),
/// ready to serve connections to `addr`; its fingerprint is logged.
pub fn tls_acceptor(
    settings: &crate::config::site::TlsSettings,
    data_dir: &Path,
    addr: std::net::SocketAddr,
) -> Result<tokio_rustls::TlsAcceptor, crate::tls::TlsError> {
    let tls = crate::tls::load(settings, data_dir, addr)?;
    info!(fingerprint = %tls.fingerprint, "serving HTTPS and wss:// (certificate SHA-256)");
    if let Some(path) = &tls.self_signed {
        info!(path = %path.display(), "self-signed certificate: install this file on tablets to trust it (docs/SECURITY.md)");
    }
    Ok(tokio_rustls::TlsAcceptor::from(tls.config))
}

/// The browser policy `[server]` sets: allowed origins and hosts, trusted proxies.
pub fn web_policy(server: &Server) -> WebPolicy {
    WebPolicy::new(
        server
            .allowed_origins
            .iter()
            .map(|o| o.get_ref().clone())
            .collect(),
        server.allowed_hosts.clone(),
        server.trusted_proxies.clone(),
    )
}

/// The keys (or whole sections) a reload cannot apply to a running gateway.
fn restart_only_changes(running: &Site, new: &Site) -> Vec<&'static str> {
    let mut keys = Vec::new();
    // Named field by field, so that a key added to `[server]` or `[commands]` must be
    // sorted here into "reloads" or "needs a restart" before the code compiles.
    let Server {
        // Settled at start (it may come from the command line); never compared.
        listen: _,
        // Browser panels read it with avgate.js and judge the gateway's liveness by it;
        // a gateway that changed it under them would look dead to them.
        ping_interval,
        max_connections: _,
        max_connections_per_peer: _,
        header_read_timeout: _,
        hello_timeout: _,
        allowed_origins: _,
        allowed_hosts: _,
        trusted_proxies: _,
        // Certificate and key files reload; switching TLS on or off changes the scheme
        // every panel and page uses, so that waits for a restart.
        tls,
    } = &new.server;
    if *ping_interval != running.server.ping_interval {
        keys.push("server.ping_interval");
    }
    if tls.is_some() != running.server.tls.is_some() {
        keys.push("server.tls");
    }
    let CommandSettings {
        // The store prunes command records by the window it was opened with; a longer
        // window here would promise dedupe the disk no longer backs after a restart.
        dedupe_window,
        queue: _,
        panel_rate: _,
        panel_burst: _,
    } = &new.commands;
    if *dedupe_window != running.commands.dedupe_window {
        keys.push("commands.dedupe_window");
    }
    let mut journal = new.journal.clone();
    journal.data_dir = running.journal.data_dir.clone();
    if format!("{:?}", running.journal) != format!("{journal:?}") {
        keys.push("journal");
    }
    // The bridge keeps its broker connection and identity until the gateway restarts.
    if format!("{:?}", running.mqtt) != format!("{:?}", new.mqtt) {
        keys.push("mqtt");
    }
    keys
}

#[cfg(test)]
mod tests {
    use std::path::Path;

    use super::restart_only_changes;
    use crate::config::parse_site;

    #[test]
    fn a_changed_mqtt_section_needs_a_restart() {
        let site = |mqtt: &str| {
            parse_site(
                Path::new("room.toml"),
                &format!("[devices.proj]\nprofile = \"pjlink-projector\"\naddress = \"192.0.2.7\"\n{mqtt}"),
            )
            .unwrap()
        };
        let without = site("");
        let with = site("[mqtt]\nbroker = \"mqtt://a\"\n");
        let moved = site("[mqtt]\nbroker = \"mqtt://b\"\n");
        assert_eq!(restart_only_changes(&without, &with), ["mqtt"]);
        assert_eq!(restart_only_changes(&with, &moved), ["mqtt"]);
        assert!(restart_only_changes(&with, &with).is_empty());
    }

    #[test]
    fn limits_reload_and_only_the_listener_settings_need_a_restart() {
        let site = |extra: &str| {
            parse_site(
                Path::new("room.toml"),
                &format!("[devices.proj]\nprofile = \"pjlink-projector\"\naddress = \"192.0.2.7\"\n{extra}"),
            )
            .unwrap()
        };
        let before = site("");
        let limits = site(
            "[server]\nlisten = \"127.0.0.1:9999\"\nmax_connections = 10\nmax_connections_per_peer = 5\n\
             header_read_timeout = \"3s\"\nhello_timeout = \"3s\"\nallowed_hosts = [\"av.example\"]\n\
             [commands]\npanel_rate = 5\npanel_burst = 5\nqueue = 4\n",
        );
        assert!(
            restart_only_changes(&before, &limits).is_empty(),
            "{:?}",
            restart_only_changes(&before, &limits)
        );
        let fixed = site(
            "[server]\nping_interval = \"5s\"\n[server.tls]\nself_signed = true\n\
             [commands]\ndedupe_window = \"20m\"\n",
        );
        assert_eq!(
            restart_only_changes(&before, &fixed),
            [
                "server.ping_interval",
                "server.tls",
                "commands.dedupe_window"
            ]
        );
    }
}
