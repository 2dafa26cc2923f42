//! The site file: one TOML file naming the room's devices and the gateway's settings.

use std::collections::{BTreeMap, HashMap};
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use serde::Deserialize;
use toml::Spanned;

use super::auth::{AuthFile, AuthToken};
use super::panel::{Panel, PanelEntry, load_panels};
use super::profile::{
    DataBits, FlowControl, Network, Parity, Poll, Profile, SerialSettings, StopBits,
};
use super::range::RangeCheck;
use super::{ConfigError, ConfigErrors, parse_toml};

/// A checked site: everything the gateway needs to start.
#[derive(Debug, Clone)]
pub struct Site {
    pub server: Server,
    pub journal: JournalSettings,
    pub commands: CommandSettings,
    /// Panel tokens; empty means panels need none.
    pub auth: Vec<AuthToken>,
    /// Problems that do not stop the gateway but deserve fixing (check-config prints
    /// them; the gateway logs them at start).
    pub warnings: Vec<ConfigError>,
    pub devices: Vec<DeviceConfig>,
    /// Panel pages served at `/panel/NAME`.
    pub panels: Vec<Panel>,
    /// `[macros.NAME]`, checked against the devices' profiles.
    pub macros: BTreeMap<String, Arc<super::macros::Macro>>,
    /// `[[schedules]]`: macros run at local times.
    pub schedules: Vec<super::schedules::Schedule>,
    /// `[lease]`: who has the room.
    pub lease: super::lease::LeaseSettings,
    /// Who may scrape `/metrics`.
    pub metrics: crate::metrics::MetricsSettings,
    /// The bridge to an MQTT broker, when `[mqtt]` is configured.
    pub mqtt: Option<crate::mqtt::MqttSettings>,
    pub source: PathBuf,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Server {
    /// Where the HTTP and WebSocket server listens.
    #[serde(default = "default_listen")]
    pub listen: SocketAddr,
    /// How often each panel is pinged; a panel silent for two intervals is dropped.
    #[serde(default = "default_ping_interval", with = "humantime_serde")]
    pub ping_interval: Duration,
    /// Connections open at once (panels, HTTP requests, and sockets that have not said
    /// anything yet). More are closed as soon as they arrive. The gateway lowers it further
    /// if the process's open-file limit would not leave room for the device links.
    #[serde(default = "default_max_connections")]
    pub max_connections: usize,
    /// Connections open at once from one peer address; a reverse proxy in front of the
    /// gateway is one peer for all the panels behind it.
    #[serde(default = "default_max_connections_per_peer")]
    pub max_connections_per_peer: usize,
    /// How long a new connection has to send its HTTP request headers.
    #[serde(default = "default_handshake_timeout", with = "humantime_serde")]
    pub header_read_timeout: Duration,
    /// How long a new panel has to send `hello` after the WebSocket opened.
    #[serde(default = "default_handshake_timeout", with = "humantime_serde")]
    pub hello_timeout: Duration,
    /// Web pages (`https://panels.example.edu`) that may use the WebSocket and the API
    /// besides the gateway's own pages.
    #[serde(default)]
    pub allowed_origins: Vec<Spanned<String>>,
    /// Names the gateway answers to besides IP addresses, `localhost` and the machine's
    /// own name (requests for any other name are refused: DNS rebinding).
    #[serde(default)]
    pub allowed_hosts: Vec<String>,
    /// Reverse proxies (addresses or networks) whose `X-Forwarded-For` names the client.
    #[serde(default)]
    pub trusted_proxies: Vec<ipnet::IpNet>,
    /// HTTPS and wss:// instead of plain HTTP.
    #[serde(default)]
    pub tls: Option<TlsSettings>,
}

impl Default for Server {
    fn default() -> Self {
        Self {
            listen: default_listen(),
            ping_interval: default_ping_interval(),
            max_connections: default_max_connections(),
            max_connections_per_peer: default_max_connections_per_peer(),
            header_read_timeout: default_handshake_timeout(),
            hello_timeout: default_handshake_timeout(),
            allowed_origins: Vec::new(),
            allowed_hosts: Vec::new(),
            trusted_proxies: Vec::new(),
            tls: None,
        }
    }
}

fn default_max_connections() -> usize {
    4096
}

fn default_max_connections_per_peer() -> usize {
    256
}

fn default_handshake_timeout() -> Duration {
    Duration::from_secs(10)
}

/// `[server.tls]`: a certificate and key, or one the gateway makes itself.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TlsSettings {
    /// PEM certificate chain; relative to the site file.
    pub cert: Option<PathBuf>,
    /// PEM private key; relative to the site file.
    pub key: Option<PathBuf>,
    /// Make a certificate for this machine's names and addresses on first start and keep
    /// it in the data directory (`tls/`); its SHA-256 fingerprint is logged at start.
    #[serde(default)]
    pub self_signed: bool,
    /// Extra names or addresses the self-signed certificate covers.
    #[serde(default)]
    pub names: Vec<String>,
}

fn default_listen() -> SocketAddr {
    SocketAddr::from(([127, 0, 0, 1], 8080))
}

fn default_ping_interval() -> Duration {
    Duration::from_secs(15)
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct JournalSettings {
    /// How many recent events are kept in memory for panels that resume.
    #[serde(default = "default_window")]
    pub window: usize,
    /// Keep the journal on disk, so a restart (or power cut) loses nothing committed and
    /// panels resume across it. Off: a restart starts a new epoch.
    #[serde(default = "default_durable")]
    pub durable: bool,
    /// Where the journal lives; relative to the site file. Default: `avgate-data` beside it.
    #[serde(default)]
    pub data_dir: Option<PathBuf>,
    /// Events kept on disk at most.
    #[serde(default = "default_retain_events")]
    pub retain_events: usize,
    /// Events older than this are dropped from disk.
    #[serde(default = "default_retain_for", with = "humantime_serde")]
    pub retain_for: Duration,
    /// Most events written per disk commit (each commit is one sync).
    #[serde(default = "default_commit_batch")]
    pub commit_batch: usize,
    /// Audit entries kept on disk at most, and for how long.
    #[serde(default = "default_retain_audit")]
    pub retain_audit: usize,
    #[serde(default = "default_retain_audit_for", with = "humantime_serde")]
    pub retain_audit_for: Duration,
    /// Command records (the dedupe ledger) kept on disk at most; they are kept for
    /// `[commands] dedupe_window`.
    #[serde(default = "default_retain_commands")]
    pub retain_commands: usize,
}

impl Default for JournalSettings {
    fn default() -> Self {
        Self {
            window: default_window(),
            durable: default_durable(),
            data_dir: None,
            retain_events: default_retain_events(),
            retain_for: default_retain_for(),
            commit_batch: default_commit_batch(),
            retain_audit: default_retain_audit(),
            retain_audit_for: default_retain_audit_for(),
            retain_commands: default_retain_commands(),
        }
    }
}

fn default_retain_audit() -> usize {
    100_000
}

fn default_retain_audit_for() -> Duration {
    Duration::from_secs(90 * 24 * 3600)
}

fn default_retain_commands() -> usize {
    100_000
}

/// The most audit entries or command records a site may keep on disk.
const MAX_RETAINED_RECORDS: usize = 10_000_000;

fn default_required() -> bool {
    true
}

fn default_durable() -> bool {
    true
}

fn default_retain_events() -> usize {
    1_000_000
}

fn default_retain_for() -> Duration {
    Duration::from_secs(30 * 24 * 3600)
}

fn default_commit_batch() -> usize {
    1_000
}

fn default_window() -> usize {
    10_000
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct CommandSettings {
    /// How long a command id's outcome is remembered, so a re-sent command is not run again.
    #[serde(default = "default_dedupe_window", with = "humantime_serde")]
    pub dedupe_window: Duration,
    /// Commands waiting per device before new ones are refused with `device_busy`.
    #[serde(default = "default_queue")]
    pub queue: usize,
    /// Commands one panel connection may send per second, sustained.
    #[serde(default = "default_panel_rate")]
    pub panel_rate: u32,
    /// Commands one panel connection may send at once before `panel_rate` applies.
    #[serde(default = "default_panel_burst")]
    pub panel_burst: u32,
}

impl Default for CommandSettings {
    fn default() -> Self {
        Self {
            dedupe_window: default_dedupe_window(),
            queue: default_queue(),
            panel_rate: default_panel_rate(),
            panel_burst: default_panel_burst(),
        }
    }
}

fn default_panel_rate() -> u32 {
    500
}

fn default_panel_burst() -> u32 {
    1000
}

fn default_dedupe_window() -> Duration {
    Duration::from_secs(600)
}

fn default_queue() -> usize {
    32
}

/// One device of the site, with its profile resolved and overrides applied.
#[derive(Debug, Clone)]
pub struct DeviceConfig {
    pub id: String,
    /// Human name for panels; the id when not given.
    pub name: String,
    pub profile: Arc<Profile>,
    pub link: Link,
    pub password: Option<String>,
    pub command_timeout: Duration,
    pub connect_timeout: Duration,
    /// See [`Timing::pacing`](crate::config::profile::Timing::pacing).
    pub pacing: Duration,
    /// See [`Transport::connection`](crate::config::profile::Transport::connection).
    pub connection: crate::config::profile::Connection,
    /// The profile's `[options]` with the link's forced options and then the device's
    /// `overrides.options` laid over them.
    pub options: avgate_drivers::Map<String, avgate_drivers::Value>,
    /// Whether the device may close an idle connection (see
    /// [`LinkTuning::idle_close`](avgate_drivers::LinkTuning::idle_close)).
    pub idle_close: bool,
    pub polls: Vec<Poll>,
    /// Whether `/healthz` counts this device being offline against the site (`required =
    /// false` for a device that may be switched off at the wall).
    pub required: bool,
}

/// How a device is reached.
#[derive(Debug, Clone, PartialEq)]
pub enum Link {
    Tcp {
        host: String,
        port: u16,
    },
    /// Datagrams to and from one address; each write is one datagram.
    Udp {
        host: String,
        port: u16,
    },
    /// A serial port by path; `/dev/serial/by-id/...` paths survive a USB adapter being
    /// replugged (it may come back as another /dev/ttyUSBn).
    Serial {
        path: PathBuf,
        settings: SerialSettings,
    },
}

impl Link {
    /// Devices with the same key share one link and the one task that owns it: several
    /// addressed devices on a serial line, or units behind one Modbus gateway address.
    pub fn owner_key(&self) -> String {
        match self {
            Link::Tcp { .. } => format!("tcp://{self}"),
            Link::Udp { host, port } if host.contains(':') => format!("udp://[{host}]:{port}"),
            Link::Udp { host, port } => format!("udp://{host}:{port}"),
            Link::Serial { path, .. } => format!("serial://{}", path.display()),
        }
    }

    /// Whether the device may close the link on purpose when idle (TCP servers do; a
    /// serial port that reads end-of-file is gone).
    pub fn closes_when_idle(&self) -> bool {
        matches!(self, Link::Tcp { .. })
    }
}

impl std::fmt::Display for Link {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Link::Tcp { host, port } if host.contains(':') => write!(f, "[{host}]:{port}"),
            Link::Tcp { host, port } => write!(f, "{host}:{port}"),
            Link::Udp { host, port } if host.contains(':') => write!(f, "udp [{host}]:{port}"),
            Link::Udp { host, port } => write!(f, "udp {host}:{port}"),
            Link::Serial { path, settings } => {
                let parity = match settings.parity {
                    Parity::None => 'N',
                    Parity::Even => 'E',
                    Parity::Odd => 'O',
                };
                let data = if settings.data_bits == DataBits::Seven {
                    7
                } else {
                    8
                };
                let stop = if settings.stop_bits == StopBits::Two {
                    2
                } else {
                    1
                };
                write!(
                    f,
                    "{} ({} {data}{parity}{stop})",
                    path.display(),
                    settings.baud
                )
            }
        }
    }
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct SiteFile {
    /// Extra directories searched for `<profile>.toml`, relative to the site file.
    #[serde(default)]
    profile_dirs: Vec<PathBuf>,
    #[serde(default)]
    server: Server,
    #[serde(default)]
    journal: JournalSettings,
    #[serde(default)]
    commands: CommandSettings,
    #[serde(default)]
    auth: AuthFile,
    #[serde(default)]
    metrics: crate::metrics::MetricsSettings,
    #[serde(default)]
    mqtt: Option<crate::mqtt::config::MqttFile>,
    #[serde(default)]
    devices: BTreeMap<Spanned<String>, DeviceFile>,
    #[serde(default)]
    panels: BTreeMap<Spanned<String>, PanelEntry>,
    #[serde(default)]
    macros: BTreeMap<Spanned<String>, super::macros::MacroFile>,
    /// More files of `[macros.NAME]`, relative to the site file.
    #[serde(default)]
    macro_files: Vec<Spanned<String>>,
    #[serde(default)]
    schedules: Vec<super::schedules::ScheduleFile>,
    #[serde(default)]
    lease: super::lease::LeaseFile,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct DeviceFile {
    profile: Spanned<String>,
    /// `host`, `host:port` or `[v6]:port`, for a device on the network.
    address: Option<Spanned<String>>,
    /// The path of a serial port, for a device on RS-232.
    serial_port: Option<Spanned<String>>,
    name: Option<String>,
    password: Option<String>,
    /// `false`: `/healthz` does not count this device being offline.
    #[serde(default = "default_required")]
    required: bool,
    #[serde(default)]
    overrides: Overrides,
}

#[derive(Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct Overrides {
    #[serde(default, with = "humantime_serde")]
    command_timeout: Option<Duration>,
    #[serde(default, with = "humantime_serde")]
    connect_timeout: Option<Duration>,
    #[serde(default, with = "humantime_serde")]
    pacing: Option<Duration>,
    connection: Option<crate::config::profile::Connection>,
    /// Driver options replacing the profile's, key by key (a display's id on a shared
    /// line, say).
    options: Option<Spanned<toml::Table>>,
    /// Poll intervals by query name, replacing the profile's.
    #[serde(default)]
    poll: BTreeMap<Spanned<String>, Spanned<String>>,
    /// Line settings replacing the profile's, each optional.
    #[serde(default)]
    serial: SerialOverrides,
}

#[derive(Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct SerialOverrides {
    baud: Option<u32>,
    data_bits: Option<DataBits>,
    parity: Option<Parity>,
    stop_bits: Option<StopBits>,
    flow_control: Option<FlowControl>,
}

impl SerialOverrides {
    fn apply(&self, mut settings: SerialSettings) -> SerialSettings {
        settings.baud = self.baud.unwrap_or(settings.baud);
        settings.data_bits = self.data_bits.unwrap_or(settings.data_bits);
        settings.parity = self.parity.unwrap_or(settings.parity);
        settings.stop_bits = self.stop_bits.unwrap_or(settings.stop_bits);
        settings.flow_control = self.flow_control.unwrap_or(settings.flow_control);
        settings
    }
}

/// Reads and checks a site file.
/// An allowed origin is `scheme://host[:port]`, as browsers send it.
fn check_origin(origin: &str) -> Result<(), String> {
    let hint = "write it as the browser sends it, e.g. `https://panels.example.edu` or `http://10.20.0.5:8080`";
    let Some((scheme, authority)) = origin.split_once("://") else {
        return Err(format!("allowed origin `{origin}` has no scheme; {hint}"));
    };
    if !matches!(scheme, "http" | "https") {
        return Err(format!(
            "allowed origin `{origin}` must start with http:// or https://; {hint}"
        ));
    }
    if authority.is_empty() || authority.trim_end_matches('/').contains('/') {
        return Err(format!(
            "allowed origin `{origin}` must have a host and no path; {hint}"
        ));
    }
    Ok(())
}

pub fn load_site(path: &Path) -> Result<Site, ConfigErrors> {
    let text = std::fs::read_to_string(path).map_err(|e| {
        ConfigError::file(
            path,
            format!("cannot read site config: {e}; pass the path of a site TOML file"),
        )
    })?;
    parse_site(path, &text)
}

/// Checks a site given as text; `path` is used for messages and to find profile dirs
/// and panel files.
pub fn parse_site(path: &Path, text: &str) -> Result<Site, ConfigErrors> {
    parse_site_with(path, text, &|p| std::fs::read_to_string(p))
}

/// [`parse_site`], reading the files it refers to (panel pages) through `read`.
pub fn parse_site_with(
    path: &Path,
    text: &str,
    read: &dyn Fn(&Path) -> std::io::Result<String>,
) -> Result<Site, ConfigErrors> {
    let file: SiteFile = parse_toml(path, text)?;
    let base = path.parent().unwrap_or(Path::new("."));
    let dirs: Vec<PathBuf> = file.profile_dirs.iter().map(|d| base.join(d)).collect();

    let mut errors = Vec::new();
    let mut ranges = RangeCheck::new(path, text);
    check_settings(&mut ranges, &file.server, &file.journal, &file.commands);
    let mut profiles: HashMap<String, Option<Arc<Profile>>> = HashMap::new();
    let mut devices = Vec::new();
    for (id, device) in file.devices {
        let here = |span, message| ConfigError::at(path, text, span, message);
        if let Err(why) = check_device_id(id.get_ref()) {
            errors.push(here(Some(id.span()), why));
            continue;
        }
        let profile_name = device.profile.get_ref();
        let profile = profiles
            .entry(profile_name.clone())
            .or_insert_with(|| match Profile::find(profile_name, &dirs) {
                Some(Ok(p)) => Some(Arc::new(p)),
                Some(Err(errs)) => {
                    errors.extend(errs.0);
                    None
                }
                None => {
                    let built_in: Vec<&str> = Profile::built_in_names().collect();
                    errors.push(here(
                        Some(device.profile.span()),
                        format!(
                            "no profile named `{profile_name}`: looked for {profile_name}.toml in {} and among the built-in profiles ({})",
                            if dirs.is_empty() { "no profile_dirs".to_string() } else { format!("{dirs:?}") },
                            built_in.join(", ")
                        ),
                    ));
                    None
                }
            })
            .clone();
        let Some(profile) = profile else { continue };

        let link = match (&device.address, &device.serial_port) {
            (Some(address), None) => match split_address(address.get_ref(), profile.transport.port)
            {
                Ok((host, port)) => match profile.transport.network {
                    Network::Tcp => Link::Tcp { host, port },
                    Network::Udp => Link::Udp { host, port },
                },
                Err(why) => {
                    errors.push(here(Some(address.span()), why));
                    continue;
                }
            },
            (None, Some(path)) => Link::Serial {
                path: PathBuf::from(path.get_ref()),
                settings: device.overrides.serial.apply(profile.transport.serial),
            },
            (Some(address), Some(_)) => {
                errors.push(here(
                    Some(address.span()),
                    format!("device `{}` has both `address` and `serial_port`: keep the one it is wired to", id.get_ref()),
                ));
                continue;
            }
            (None, None) => {
                errors.push(here(
                    Some(id.span()),
                    format!(
                        "device `{}` needs `address = \"host[:port]\"` (network) or `serial_port = \"/dev/serial/by-id/...\"` (RS-232)",
                        id.get_ref()
                    ),
                ));
                continue;
            }
        };

        let mut polls = profile.polls.clone();
        for (query, every) in &device.overrides.poll {
            let Some(poll) = polls.iter_mut().find(|p| &p.query == query.get_ref()) else {
                let known: Vec<&str> = profile.polls.iter().map(|p| p.query.as_str()).collect();
                errors.push(here(
                    Some(query.span()),
                    format!(
                        "profile `{}` polls no `{}`; it polls: {}",
                        profile.id,
                        query.get_ref(),
                        known.join(", ")
                    ),
                ));
                continue;
            };
            match humantime::parse_duration(every.get_ref()) {
                Ok(d) if POLL.contains(&d) => poll.every = d,
                Ok(_) => errors.push(here(
                    Some(every.span()),
                    "poll interval must be at least 100ms and at most 1 day".into(),
                )),
                Err(e) => errors.push(here(
                    Some(every.span()),
                    format!("{e}; write a duration such as \"2s\" or \"500ms\""),
                )),
            }
        }

        // What the driver needs from this kind of link: options it forces (Modbus on a
        // serial line is RTU; the device's own overrides still win), a least gap.
        let tuning = (profile.driver_info.link)(match &link {
            Link::Serial { settings, .. } => avgate_drivers::LinkKind::Serial {
                baud: settings.baud,
            },
            _ => avgate_drivers::LinkKind::Network,
        });
        let mut options = profile.options.clone();
        options.extend(tuning.options.clone());
        if let Some(table) = &device.overrides.options
            && let Ok(serde_json::Value::Object(extra)) = serde_json::to_value(table.get_ref())
        {
            options.extend(extra);
        }
        if device.overrides.options.is_some() || !tuning.options.is_empty() {
            let settings = avgate_drivers::DriverSettings {
                options: options.clone(),
                password: device.password.clone(),
            };
            if let Err(found) = (profile.driver_info.catalog)(&settings) {
                for why in found.all() {
                    let span = device.overrides.options.as_ref().map(|table| {
                        let at = super::options::locate(
                            text,
                            &["devices", id.get_ref(), "overrides", "options"],
                            &why.at,
                        );
                        at.unwrap_or_else(|| table.span())
                    });
                    errors.push(here(span, format!("overrides.options: {}", why.message)));
                }
                continue;
            }
        }

        if let Link::Serial {
            path: port,
            settings,
        } = &link
            && let Some((other, theirs)) =
                devices.iter().find_map(|d: &DeviceConfig| match &d.link {
                    Link::Serial {
                        path,
                        settings: theirs,
                    } if path == port && theirs != settings => Some((&d.id, theirs)),
                    _ => None,
                })
        {
            errors.push(here(
                device.serial_port.as_ref().map(|p| p.span()),
                format!(
                    "device `{}` shares {} with `{other}` but with other line settings ({settings}, not {theirs}); devices on one line must agree: fix overrides.serial",
                    id.get_ref(),
                    port.display(),
                ),
            ));
            continue;
        }

        check_overrides(&mut ranges, id.get_ref(), &device.overrides);
        let pacing = device
            .overrides
            .pacing
            .unwrap_or(profile.timing.pacing)
            .max(tuning.min_gap);

        devices.push(DeviceConfig {
            required: device.required,
            name: device.name.unwrap_or_else(|| id.get_ref().clone()),
            id: id.into_inner(),
            link,
            password: device.password,
            command_timeout: device
                .overrides
                .command_timeout
                .unwrap_or(profile.timing.command_timeout),
            connect_timeout: device
                .overrides
                .connect_timeout
                .unwrap_or(profile.timing.connect_timeout),
            pacing,
            connection: device
                .overrides
                .connection
                .unwrap_or(profile.transport.connection),
            options,
            idle_close: tuning.idle_close,
            polls,
            profile,
        });
    }

    let mut warnings = Vec::new();
    let auth = super::auth::check(path, text, file.auth, &mut errors, &mut warnings);
    for origin in &file.server.allowed_origins {
        if let Err(why) = check_origin(origin.get_ref()) {
            errors.push(ConfigError::at(path, text, Some(origin.span()), why));
        }
    }
    let mut server = file.server;
    if let Some(tls) = &mut server.tls {
        match (tls.self_signed, &tls.cert, &tls.key) {
            (true, None, None) | (false, Some(_), Some(_)) => {}
            (true, _, _) => errors.push(ConfigError::file(
                path,
                "[server.tls] has self_signed = true and a cert or key: use one or the other"
                    .into(),
            )),
            (false, _, _) => errors.push(ConfigError::file(
                path,
                "[server.tls] needs both `cert` and `key` (PEM files), or `self_signed = true`"
                    .into(),
            )),
        }
        tls.cert = tls.cert.as_ref().map(|p| base.join(p));
        tls.key = tls.key.as_ref().map(|p| base.join(p));
    }
    errors.append(&mut ranges.errors);
    let mqtt = file
        .mqtt
        .and_then(|m| crate::mqtt::config::check(path, text, m, &auth, &mut errors, &mut warnings));

    let mut macro_sources = vec![super::macros::MacroSource {
        path: path.to_path_buf(),
        text: text.to_string(),
        macros: file.macros,
    }];
    for name in &file.macro_files {
        let macro_path = base.join(name.get_ref());
        let loaded = read(&macro_path)
            .map_err(|e| {
                ConfigError::at(
                    path,
                    text,
                    Some(name.span()),
                    format!(
                        "cannot read macro file {}: {e}; the path is relative to the site file",
                        macro_path.display()
                    ),
                )
            })
            .and_then(|macro_text| {
                let set: super::macros::MacroFileSet = super::parse_toml(&macro_path, &macro_text)?;
                Ok(super::macros::MacroSource {
                    path: macro_path.clone(),
                    text: macro_text,
                    macros: set.macros,
                })
            });
        match loaded {
            Ok(source) => macro_sources.push(source),
            Err(error) => errors.push(error),
        }
    }
    // Schedules and panels name macros as declared: one with a mistake of its own is
    // reported once.
    let macro_names: Vec<String> = macro_sources
        .iter()
        .flat_map(|s| s.macros.keys().map(|k| k.get_ref().clone()))
        .collect();
    let panels = load_panels(
        path,
        text,
        file.panels,
        &devices,
        &macro_names,
        read,
        &mut errors,
    );
    let macros = super::macros::load_macros(&macro_sources, &devices, &mut errors, &mut warnings);
    let schedules =
        super::schedules::load_schedules(path, text, file.schedules, &macro_names, &mut errors);
    let lease = super::lease::check(path, text, file.lease, &macro_names, &mut errors);

    if !errors.is_empty() {
        // This file top to bottom, then problems inside the profiles it uses.
        errors.sort_by_key(|e| (e.file != path, e.file.clone(), e.position));
        return Err(ConfigErrors(errors));
    }
    let mut journal = file.journal;
    journal.data_dir = Some(
        base.join(
            journal
                .data_dir
                .unwrap_or_else(|| PathBuf::from("avgate-data")),
        ),
    );
    Ok(Site {
        server,
        journal,
        commands: file.commands,
        auth,
        warnings,
        devices,
        panels,
        macros,
        schedules,
        lease,
        metrics: file.metrics,
        mqtt,
        source: path.to_path_buf(),
    })
}

/// Poll intervals: often enough to matter, rarely enough that a device is not flooded.
const POLL: std::ops::RangeInclusive<Duration> =
    Duration::from_millis(100)..=Duration::from_secs(24 * 3600);

const fn secs(s: u64) -> Duration {
    Duration::from_secs(s)
}

/// The gateway-wide settings, each within what it can sensibly run with.
fn check_settings(
    check: &mut RangeCheck<'_>,
    server: &Server,
    journal: &JournalSettings,
    commands: &CommandSettings,
) {
    check.duration(
        &["server", "ping_interval"],
        server.ping_interval,
        secs(1)..=secs(300),
        "a panel silent for two intervals is dropped",
    );
    check.duration(
        &["server", "header_read_timeout"],
        server.header_read_timeout,
        secs(1)..=secs(300),
        "how long a new connection may take to send its request",
    );
    check.duration(
        &["server", "hello_timeout"],
        server.hello_timeout,
        secs(1)..=secs(300),
        "how long a new panel may take to say hello",
    );
    check.size(
        &["server", "max_connections"],
        server.max_connections,
        1..=1_000_000,
        "connections open at once",
    );
    if server.max_connections >= 1 {
        check.size(
            &["server", "max_connections_per_peer"],
            server.max_connections_per_peer,
            1..=server.max_connections,
            "connections from one address, at most max_connections",
        );
    }
    check.size(
        &["journal", "window"],
        journal.window,
        1..=10_000_000,
        "events kept in memory for resuming panels",
    );
    check.size(
        &["journal", "retain_events"],
        journal.retain_events,
        1..=1_000_000_000,
        "events kept on disk",
    );
    check.duration(
        &["journal", "retain_for"],
        journal.retain_for,
        // humantime's year: ten of them print as "10years".
        secs(60)..=secs(10 * 31_557_600),
        "how long events stay on disk",
    );
    check.size(
        &["journal", "commit_batch"],
        journal.commit_batch,
        1..=1_000_000,
        "events per disk commit",
    );
    check.size(
        &["journal", "retain_audit"],
        journal.retain_audit,
        1..=MAX_RETAINED_RECORDS,
        "audit entries kept on disk, each up to ~2 KiB",
    );
    check.duration(
        &["journal", "retain_audit_for"],
        journal.retain_audit_for,
        secs(60)..=secs(10 * 31_557_600),
        "how long audit entries stay on disk",
    );
    check.size(
        &["journal", "retain_commands"],
        journal.retain_commands,
        1..=MAX_RETAINED_RECORDS,
        "command records kept on disk, each up to ~1.5 KiB",
    );
    check.duration(
        &["commands", "dedupe_window"],
        commands.dedupe_window,
        secs(1)..=secs(7 * 24 * 3600),
        "how long a command id is remembered",
    );
    check.size(
        &["commands", "queue"],
        commands.queue,
        1..=10_000,
        "commands waiting per device",
    );
    check.size(
        &["commands", "panel_rate"],
        commands.panel_rate,
        1..=100_000,
        "commands a second per panel",
    );
    check.size(
        &["commands", "panel_burst"],
        commands.panel_burst,
        1..=100_000,
        "commands at once per panel",
    );
}

/// A device's timing overrides, each within what a link can sensibly run with.
fn check_overrides(check: &mut RangeCheck<'_>, id: &str, overrides: &Overrides) {
    let key = |name| ["devices", id, "overrides", name];
    let timeouts = Duration::from_millis(50)..=secs(300);
    if let Some(timeout) = overrides.command_timeout {
        check.duration(
            &key("command_timeout"),
            timeout,
            timeouts.clone(),
            "how long a command may wait for the device",
        );
    }
    if let Some(timeout) = overrides.connect_timeout {
        check.duration(
            &key("connect_timeout"),
            timeout,
            timeouts,
            "how long connecting may take",
        );
    }
    if let Some(pacing) = overrides.pacing {
        check.duration(
            &key("pacing"),
            pacing,
            Duration::ZERO..=secs(10),
            "the quiet gap between requests",
        );
    }
}

/// Device ids appear in events, URLs and subscription patterns, so they stay plain.
fn check_device_id(id: &str) -> Result<(), String> {
    let plain = |c: char| c.is_ascii_alphanumeric() || matches!(c, '-' | '_' | '.');
    if id.is_empty() || !id.chars().all(plain) {
        return Err(format!(
            "device id `{id}` may use only letters, digits, `-`, `_` and `.` (it appears in events and patterns)"
        ));
    }
    Ok(())
}

/// Splits `host[:port]` (or `[v6]:port`), falling back to the profile's port.
fn split_address(address: &str, default_port: Option<u16>) -> Result<(String, u16), String> {
    if let Ok(sock) = address.parse::<SocketAddr>() {
        return Ok((sock.ip().to_string(), sock.port()));
    }
    let (host, port) = match address.rsplit_once(':') {
        Some((host, port)) if !host.contains(':') => {
            let port = port
                .parse::<u16>()
                .map_err(|_| format!("`{port}` in address `{address}` is not a port number"))?;
            (host, Some(port))
        }
        _ => (address.trim_start_matches('[').trim_end_matches(']'), None),
    };
    if host.is_empty() {
        return Err(format!(
            "address `{address}` has no host; write `host` or `host:port`"
        ));
    }
    let port = port
        .or(default_port)
        .ok_or_else(|| format!("address `{address}` needs a port: the profile has no default"))?;
    Ok((host.to_string(), port))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(text: &str) -> Result<Site, ConfigErrors> {
        parse_site(Path::new("site.toml"), text)
    }

    #[test]
    fn minimal_site_gets_defaults_and_profile_port() {
        let site =
            parse("[devices.proj]\nprofile = \"pjlink-projector\"\naddress = \"192.0.2.7\"\n")
                .unwrap();
        assert_eq!(site.server.listen.port(), 8080);
        assert_eq!(
            site.devices[0].link,
            Link::Tcp {
                host: "192.0.2.7".into(),
                port: 4352
            }
        );
        assert_eq!(site.devices[0].name, "proj");
    }

    #[test]
    fn overrides_replace_poll_intervals_and_timeouts() {
        let site = parse(
            "[devices.proj]\nprofile = \"pjlink-projector\"\naddress = \"127.0.0.1:14352\"\n\
             [devices.proj.overrides]\ncommand_timeout = \"2s\"\npoll = { power = \"1s\" }\n",
        )
        .unwrap();
        let dev = &site.devices[0];
        assert_eq!(
            dev.link,
            Link::Tcp {
                host: "127.0.0.1".into(),
                port: 14352
            }
        );
        assert_eq!(dev.command_timeout, Duration::from_secs(2));
        let power = dev.polls.iter().find(|p| p.query == "power").unwrap();
        assert_eq!(power.every, Duration::from_secs(1));
    }

    #[test]
    fn every_problem_is_reported_with_its_line() {
        let errs = parse(
            "[devices.\"a b\"]\nprofile = \"pjlink-projector\"\naddress = \"x\"\n\
             [devices.tv]\nprofile = \"no-such-model\"\naddress = \"x\"\n\
             [devices.proj]\nprofile = \"pjlink-projector\"\naddress = \"h:notaport\"\n",
        )
        .unwrap_err();
        let shown = errs.to_string();
        assert_eq!(errs.0.len(), 3, "{shown}");
        assert!(shown.contains("site.toml:1:"), "{shown}");
        assert!(
            shown.contains("site.toml:5:11: no profile named `no-such-model`"),
            "{shown}"
        );
        assert!(
            shown.contains("site.toml:9:11: `notaport` in address"),
            "{shown}"
        );
        let lines: Vec<usize> = errs
            .0
            .iter()
            .filter_map(|e| e.position.map(|p| p.0))
            .collect();
        assert_eq!(lines, vec![1, 5, 9], "errors come in file order: {shown}");
    }

    #[test]
    fn serial_devices_take_profile_defaults_and_overrides() {
        let site = parse(
            "[devices.sw]\nprofile = \"extron-sis-switcher\"\nserial_port = \"/dev/serial/by-id/usb-FTDI-if00\"\n\
             [devices.sw.overrides]\nserial = { baud = 38400, parity = \"even\" }\n",
        )
        .unwrap();
        let Link::Serial { path, settings } = &site.devices[0].link else {
            panic!("a serial link")
        };
        assert_eq!(path, Path::new("/dev/serial/by-id/usb-FTDI-if00"));
        assert_eq!(
            (settings.baud, settings.parity, settings.data_bits),
            (38400, Parity::Even, DataBits::Eight)
        );
        assert_eq!(
            site.devices[0].link.to_string(),
            "/dev/serial/by-id/usb-FTDI-if00 (38400 8E1)"
        );
    }

    #[test]
    fn devices_on_one_serial_line_must_agree_on_its_settings() {
        let line = "serial_port = \"/dev/serial/by-id/usb-FTDI-if00\"\n";
        let shared = parse(&format!(
            "[devices.a]\nprofile = \"extron-sis-switcher\"\n{line}\
             [devices.b]\nprofile = \"extron-sis-switcher\"\n{line}"
        ))
        .unwrap();
        assert_eq!(
            shared.devices[0].link.owner_key(),
            shared.devices[1].link.owner_key()
        );
        let clash = parse(&format!(
            "[devices.a]\nprofile = \"extron-sis-switcher\"\n{line}\
             [devices.b]\nprofile = \"extron-sis-switcher\"\n{line}\
             [devices.b.overrides]\nserial = {{ baud = 38400 }}\n"
        ))
        .unwrap_err()
        .to_string();
        assert!(
            clash.contains("site.toml:6:")
                && clash.contains("shares /dev/serial/by-id/usb-FTDI-if00 with `a`")
                && clash.contains("38400 8N1, not 9600 8N1"),
            "{clash}"
        );
    }

    #[test]
    fn option_overrides_are_checked_by_the_driver() {
        let site = parse(
            "[devices.sw]\nprofile = \"extron-sis-switcher\"\naddress = \"h\"\n\
             [devices.sw.overrides.options]\noutputs = 4\n",
        )
        .unwrap();
        assert_eq!(site.devices[0].options["outputs"], 4);
        let bad = parse(
            "[devices.sw]\nprofile = \"extron-sis-switcher\"\naddress = \"h\"\n\
             [devices.sw.overrides.options]\noutptus = 4\n",
        )
        .unwrap_err()
        .to_string();
        // Line 5: the misspelt key itself.
        assert!(
            bad.starts_with("site.toml:5:1: overrides.options") && bad.contains("outptus"),
            "{bad}"
        );
    }

    #[test]
    fn a_serial_line_gets_the_driver_link_tuning() {
        let site = parse(
            "[devices.pdu]\nprofile = \"modbus-power-sequencer-8\"\nserial_port = \"/dev/x\"\n\
             [devices.pdu.overrides]\nserial = { baud = 9600 }\n\
             [devices.net]\nprofile = \"modbus-power-sequencer-8\"\naddress = \"h\"\n",
        )
        .unwrap();
        let device = |id: &str| site.devices.iter().find(|d| d.id == id).unwrap();
        let (serial, network) = (device("pdu"), device("net"));
        assert_eq!(serial.options["framing"], "rtu");
        // 3.5 characters of 11 bits at 9600 baud.
        assert!(
            serial.pacing >= Duration::from_micros(4_000),
            "{:?}",
            serial.pacing
        );
        assert!(!serial.idle_close);
        assert_ne!(network.options.get("framing"), Some(&"rtu".into()));
        assert!(network.idle_close);
    }

    #[test]
    fn a_device_needs_exactly_one_link() {
        let neither = parse("[devices.sw]\nprofile = \"extron-sis-switcher\"\n")
            .unwrap_err()
            .to_string();
        assert!(
            neither.contains("needs `address") && neither.contains("serial_port"),
            "{neither}"
        );
        let both = parse("[devices.sw]\nprofile = \"extron-sis-switcher\"\naddress = \"h\"\nserial_port = \"/dev/x\"\n")
            .unwrap_err()
            .to_string();
        assert!(both.contains("both `address` and `serial_port`"), "{both}");
        let baud = parse("[devices.sw]\nprofile = \"extron-sis-switcher\"\nserial_port = \"/dev/x\"\n[devices.sw.overrides]\nserial = { parity = \"mark\" }\n")
            .unwrap_err()
            .to_string();
        assert!(
            baud.contains("site.toml:5:") && baud.contains("mark"),
            "{baud}"
        );
    }

    #[test]
    fn unknown_field_in_device_is_rejected_at_its_line() {
        let errs = parse(
            "[devices.proj]\nprofile = \"pjlink-projector\"\naddress = \"x\"\npasword = \"typo\"\n",
        )
        .unwrap_err();
        let shown = errs.to_string();
        assert!(
            shown.starts_with("site.toml:4:1: unknown field `pasword`"),
            "{shown}"
        );
    }

    #[test]
    fn durations_and_sizes_out_of_range_are_refused_where_they_are_written() {
        let errs = parse(
            "[server]\nping_interval = \"0s\"\nmax_connections = 0\n\
             [journal]\nwindow = 0\nretain_for = \"1s\"\n\
             [commands]\ndedupe_window = \"100ms\"\nqueue = 0\n\
             [devices.proj]\nprofile = \"pjlink-projector\"\naddress = \"x\"\n\
             [devices.proj.overrides]\ncommand_timeout = \"1ms\"\npacing = \"1h\"\npoll = { power = \"2d\" }\n",
        )
        .unwrap_err();
        let shown = errs.to_string();
        for expected in [
            "site.toml:2:17: server.ping_interval = \"0s\" is out of range: use 1s to 5m",
            "site.toml:3:19: server.max_connections = 0 is out of range",
            "site.toml:5:10: journal.window = 0",
            "site.toml:6:14: journal.retain_for = \"1s\"",
            "site.toml:8:17: commands.dedupe_window = \"100ms\"",
            "site.toml:9:9: commands.queue = 0",
            "site.toml:14:19: devices.proj.overrides.command_timeout = \"1ms\" is out of range: use 50ms to 5m",
            "site.toml:15:10: devices.proj.overrides.pacing = \"1h\"",
            "site.toml:16:18: poll interval must be at least 100ms and at most 1 day",
        ] {
            assert!(
                shown.contains(expected),
                "missing {expected:?} in:\n{shown}"
            );
        }
        assert_eq!(errs.0.len(), 9, "{shown}");
        let ok = parse("[server]\nping_interval = \"1s\"\nmax_connections = 10\nmax_connections_per_peer = 10\n").unwrap();
        assert_eq!(ok.server.max_connections_per_peer, 10);
        let per_peer = parse("[server]\nmax_connections = 10\nmax_connections_per_peer = 11\n")
            .unwrap_err()
            .to_string();
        assert!(per_peer.contains("site.toml:3:28:"), "{per_peer}");
    }

    #[test]
    fn addresses_split_with_default_port() {
        assert_eq!(
            split_address("proj.local", Some(4352)).unwrap(),
            ("proj.local".into(), 4352)
        );
        assert_eq!(split_address("[::1]:99", None).unwrap(), ("::1".into(), 99));
        assert_eq!(
            split_address("10.0.0.1:23", Some(4352)).unwrap(),
            ("10.0.0.1".into(), 23)
        );
        assert!(split_address("proj.local", None).is_err());
    }
}
