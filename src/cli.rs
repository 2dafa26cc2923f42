//! The `avgate` command line.

use std::net::SocketAddr;
use std::path::PathBuf;

use clap::{Parser, Subcommand, ValueEnum};

use crate::config::load_site;
use crate::demo::DemoRoom;
use crate::gateway::Gateway;
use crate::simulate::Simulator;

/// avgate: an AV control gateway.
///
/// Drives a room's projectors, displays, switchers, DSPs and cameras, and streams their
/// state to touch panels over WebSocket (ws://HOST:PORT/ws). Start with `avgate demo`,
/// which needs no hardware and no config.
#[derive(Parser)]
#[command(
    version,
    propagate_version = true,
    after_help = "Logs: set RUST_LOG (e.g. RUST_LOG=avgate=debug) for more detail."
)]
pub struct Cli {
    #[command(subcommand)]
    command: Command,

    /// Log format: human-readable text or one JSON object per line.
    #[arg(long, global = true, value_enum, default_value_t = LogFormat::Text)]
    log_format: LogFormat,
}

#[derive(Clone, Copy, ValueEnum)]
enum LogFormat {
    Text,
    Json,
}

#[derive(Subcommand)]
enum Command {
    /// Run the gateway for a site.
    ///
    /// Example: avgate run --config /etc/avgate/site.toml
    Run {
        /// The site file: devices, server, auth (see README.md, "Configuration").
        #[arg(long, short)]
        config: PathBuf,
        /// Listen here instead of the site's [server] listen.
        #[arg(long)]
        listen: Option<SocketAddr>,
        /// Keep the journal here instead of the site's [journal] data_dir.
        #[arg(long)]
        data_dir: Option<PathBuf>,
    },
    /// Check a site file and the profiles it uses without connecting to anything.
    ///
    /// Prints every problem as FILE:LINE:COLUMN: message and exits 1 if there is any.
    CheckConfig {
        /// The site file to check.
        file: PathBuf,
    },
    /// Run a demo room of simulated devices with the gateway, and print the URL to open.
    Demo {
        /// Where the gateway listens.
        #[arg(long, default_value = "127.0.0.1:8080")]
        listen: SocketAddr,
        /// Print the demo's site file (a starting point for your own) and exit.
        #[arg(long)]
        print_config: bool,
        /// Keep the demo's journal here, so a restarted demo resumes where it stopped.
        /// Without it the demo keeps its journal in memory.
        #[arg(long)]
        data_dir: Option<PathBuf>,
        /// Bridge the demo room to this MQTT broker (`mqtt://host[:port]`, or
        /// `mqtts://host[:port]` trusting the system's roots), commands enabled, under the
        /// topic prefix `avgate/demo` (docs/MQTT.md).
        #[arg(long, value_name = "URL")]
        mqtt: Option<String>,
        /// Which room: `meeting` (projectors, switcher, display, camera, power), or
        /// `venue` (Kramer matrix, Shure mics, Biamp Tesira, NEC display, Videohub).
        #[arg(long, default_value = "meeting", value_parser = ["meeting", "venue"])]
        room: String,
    },
    /// Show the bytes going to and from a device, from a running gateway.
    ///
    /// Switches the device's wire trace on for the given time (it switches itself off
    /// then) and prints every frame, timestamped, as text and hex. Passwords and PJLink
    /// digests are hidden before the gateway keeps a frame.
    ///
    /// Example: avgate trace proj-left --for 10m
    Trace {
        /// The device id, as in the site file.
        device: String,
        /// How long to trace (at most 1h).
        #[arg(long = "for", default_value = "10m", value_parser = humantime::parse_duration)]
        duration: std::time::Duration,
        /// The gateway's address (its [server] listen).
        #[arg(long, default_value = "127.0.0.1:8080")]
        gateway: SocketAddr,
        /// A token, when the site has tokens.
        #[arg(long, env = "AVGATE_TOKEN")]
        token: Option<String>,
    },
    /// Write the systemd unit (Type=notify-reload, watchdog, hardening) and say what next.
    ///
    /// The unit runs /usr/bin/avgate as user `avgate` with /etc/avgate/site.toml and
    /// /var/lib/avgate; see docs/OPERATIONS.md. `--print` writes it to stdout instead.
    InstallUnit {
        /// Where to write the unit.
        #[arg(long, default_value = "/etc/systemd/system/avgate.service")]
        path: PathBuf,
        /// Print the unit instead of writing it.
        #[arg(long)]
        print: bool,
    },
    /// Run a device simulator on its own, to develop panels or test against.
    #[command(subcommand)]
    Simulate(Simulator),
    /// Make panel and API tokens.
    #[command(subcommand)]
    Token(TokenCommand),
}

#[derive(Subcommand)]
enum TokenCommand {
    /// Make a fresh random token: prints the secret once (give it to the panel) and the
    /// [[auth.tokens]] stanza to paste into the site file, which holds only its SHA-256.
    ///
    /// Scopes: read (every device), read:PATTERN, control, control:DEVICE[/COMMAND],
    /// admin (audit log and every device), metrics. PATTERN is DEVICE or DEVICE/POINT with
    /// `*` wildcards, as in subscriptions: proj-*, */power, switcher/route.*.
    ///
    /// Example: avgate token new lobby-panel --scopes read --scopes control:proj-*
    New {
        /// Who holds the token: recorded with every command it sends.
        name: String,
        /// What the token may do (repeat, or separate with commas).
        #[arg(long, value_delimiter = ',', default_values_t = ["read".to_string(), "control".to_string()])]
        scopes: Vec<String>,
    },
}

pub async fn run(cli: Cli) -> anyhow::Result<()> {
    init_logging(cli.log_format);
    match cli.command {
        Command::Run {
            config,
            listen,
            data_dir,
        } => {
            let mut site = load_site(&config).map_err(|e| anyhow::anyhow!("{e}"))?;
            if let Some(listen) = listen {
                site.server.listen = listen;
            }
            if let Some(dir) = data_dir {
                site.journal.data_dir = Some(dir);
            }
            let gateway = Gateway::start(site).await?;
            println!(
                "avgate listening on {}/ (panels: {})",
                gateway.url(),
                gateway.ws_url()
            );
            let supervised = crate::systemd::supervise(&gateway, &config).await;
            gateway.shutdown().await;
            supervised?;
        }
        Command::Trace {
            device,
            duration,
            gateway,
            token,
        } => crate::trace::follow(gateway, token.as_deref(), &device, duration).await?,
        Command::InstallUnit { path, print } => {
            if print {
                print!("{}", crate::systemd::UNIT);
                return Ok(());
            }
            std::fs::write(&path, crate::systemd::UNIT).map_err(|e| {
                anyhow::anyhow!(
                    "cannot write {}: {e}; run as root, or use --print and put it in place yourself",
                    path.display()
                )
            })?;
            println!("wrote {}", path.display());
            println!(
                "next: install the binary as /usr/bin/avgate, create the `avgate` user (in group dialout),"
            );
            println!(
                "      put the site in /etc/avgate/site.toml, then: systemctl daemon-reload && systemctl enable --now avgate"
            );
        }
        Command::CheckConfig { file } => match load_site(&file) {
            Ok(site) => {
                for warning in &site.warnings {
                    eprintln!("warning: {warning}");
                }
                println!("{}: ok: {} device(s)", file.display(), site.devices.len());
                for device in &site.devices {
                    println!("  {} ({}) at {}", device.id, device.profile.id, device.link);
                }
                for panel in &site.panels {
                    println!("  panel {} at /panel/{}", panel.name, panel.name);
                }
            }
            Err(errors) => {
                eprintln!("{errors}");
                eprintln!("{} problem(s) found in {}", errors.0.len(), file.display());
                std::process::exit(1);
            }
        },
        Command::Demo {
            listen,
            print_config,
            data_dir,
            mqtt,
            room,
        } if room == "venue" => {
            if mqtt.is_some() {
                anyhow::bail!("--mqtt goes with the meeting room only");
            }
            let venue = crate::demo_venue::VenueRoom::start(listen, data_dir.as_deref()).await?;
            if print_config {
                print!("{}", venue.site_toml);
                venue.shutdown().await;
                return Ok(());
            }
            let gateway = Gateway::start(venue.site.clone()).await?;
            let addr = gateway.local_addr();
            println!();
            println!("  avgate demo venue is running: open http://{addr}/ in a browser.");
            for ((id, sim), (_, name, profile)) in
                venue.simulators.iter().zip(crate::demo_venue::DEVICES)
            {
                println!(
                    "  {id}: {name}, simulated from profile {profile} at {}",
                    sim.local_addr()
                );
            }
            println!("  Stop with Ctrl-C.");
            println!();
            wait_for_stop().await;
            gateway.shutdown().await;
            venue.shutdown().await;
        }
        Command::Demo {
            listen,
            print_config,
            data_dir,
            mqtt,
            room: _,
        } => {
            let room =
                DemoRoom::start_with_mqtt(listen, data_dir.as_deref(), mqtt.as_deref()).await?;
            if print_config {
                print!("{}", room.site_toml);
                room.shutdown().await;
                return Ok(());
            }
            let gateway = Gateway::start(room.site.clone()).await?;
            let addr = gateway.local_addr();
            println!();
            println!("  avgate demo room is running.");
            println!("  Open http://{addr}/ in a browser (panels connect to ws://{addr}/ws).");
            println!(
                "  A panel page from TOML: http://{addr}/panel/demo; the status page: http://{addr}/status"
            );
            for (id, sim) in &room.projectors {
                println!("  {id}: simulated PJLink projector at {}", sim.local_addr());
            }
            println!(
                "  switcher: simulated Extron SIS matrix (8x8) at {}",
                room.switcher.local_addr()
            );
            println!(
                "  display: simulated Samsung MDC display at {}",
                room.display.local_addr()
            );
            println!(
                "  camera: simulated Sony VISCA over IP camera at udp {}",
                room.camera.local_addr()
            );
            println!(
                "  sequencer: simulated Modbus TCP power sequencer at {}",
                room.sequencer.local_addr()
            );
            if let Some(url) = &mqtt {
                println!(
                    "  MQTT: state under avgate/demo/# at {url}; commands to avgate/demo/<device>/<command>/set"
                );
            }
            println!(
                "  proj-right needs password `{}`. Stop with Ctrl-C.",
                crate::demo::DEMO_PASSWORD
            );
            println!();
            wait_for_stop().await;
            gateway.shutdown().await;
            room.shutdown().await;
        }
        Command::Simulate(simulator) => crate::simulate::run(simulator).await?,
        Command::Token(TokenCommand::New { name, scopes }) => {
            print!("{}", new_token(&name, &scopes)?);
        }
    }
    Ok(())
}

/// A fresh token for `name` and the site-file stanza that accepts it.
fn new_token(name: &str, scopes: &[String]) -> anyhow::Result<String> {
    let parsed = crate::auth::Scopes::parse(scopes.iter().map(String::as_str))
        .map_err(|why| anyhow::anyhow!("--scopes: {why}"))?;
    let secret = crate::auth::new_secret()?;
    let digest = crate::auth::Secret::plain(&secret).sha256_hex();
    let list: Vec<String> = scopes.iter().map(|s| format!("{s:?}")).collect();
    Ok(format!(
        "# The secret for {name} (shown once; enter it on the panel's sign-in screen):\n#   {secret}\n# Scopes: {parsed}\n# Paste into the site file:\n[[auth.tokens]]\nname = {name:?}\ntoken_sha256 = \"{digest}\"\nscopes = [{}]\n",
        list.join(", ")
    ))
}

/// Waits for Ctrl-C or SIGTERM. SIGTERM is caught from the call on, not from the first
/// poll, so one sent as soon as the caller has printed where it listens is not lost.
pub(crate) fn wait_for_stop() -> impl std::future::Future<Output = ()> {
    #[cfg(unix)]
    let mut term = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate())
        .expect("SIGTERM handler");
    async move {
        let ctrl_c = tokio::signal::ctrl_c();
        #[cfg(unix)]
        tokio::select! {
            _ = ctrl_c => {}
            _ = term.recv() => {}
        }
        #[cfg(not(unix))]
        let _ = ctrl_c.await;
        tracing::info!("stopping");
    }
}

fn init_logging(format: LogFormat) {
    use tracing_subscriber::EnvFilter;
    let filter = EnvFilter::try_from_default_env().unwrap_or_else(|_| EnvFilter::new("info"));
    // Colours only for a person at a terminal; a journal or a file gets plain text.
    let ansi = std::io::IsTerminal::is_terminal(&std::io::stderr());
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_ansi(ansi)
        .with_writer(std::io::stderr);
    let _ = match format {
        LogFormat::Text => builder.try_init(),
        LogFormat::Json => builder.json().try_init(),
    };
}
