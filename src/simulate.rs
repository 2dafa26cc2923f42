//! `avgate simulate ...`: one device simulator on its own, to build panels or test a
//! driver before the hardware arrives.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::time::Duration;

use anyhow::Context;
use avgate_drivers::extron::simulator as extron_sim;
use avgate_drivers::load::simulator as load_sim;
use avgate_drivers::mdc::simulator as mdc_sim;
use avgate_drivers::modbus::{RegisterMap, simulator as modbus_sim};
use avgate_drivers::pjlink::simulator as pjlink_sim;
use avgate_drivers::visca::simulator as visca_sim;
use clap::Subcommand;

use crate::config::Profile;

#[derive(Subcommand)]
pub enum Simulator {
    /// A PJLink projector (class 1, or class 2 with --class 2).
    ///
    /// Example: avgate simulate pjlink --listen 127.0.0.1:4352 --password secret
    Pjlink {
        #[arg(long, default_value = "127.0.0.1:4352")]
        listen: SocketAddr,
        /// Require PJLink authentication with this password.
        #[arg(long)]
        password: Option<String>,
        /// How long power-on takes (commands answer ERR3 meanwhile).
        #[arg(long, default_value = "2s", value_parser = humantime::parse_duration)]
        warm_up: Duration,
        /// How long power-off takes.
        #[arg(long, default_value = "2s", value_parser = humantime::parse_duration)]
        cool_down: Duration,
        /// PJLink class to report (1 or 2).
        #[arg(long, default_value_t = 1, value_parser = clap::value_parser!(u8).range(1..=2))]
        class: u8,
        /// The projector's name (NAME answer).
        #[arg(long, default_value = "avgate simulator")]
        name: String,
        /// Answer ERR3 to input, mute and input-list queries in standby, as NEC and Epson
        /// projectors do.
        #[arg(long)]
        err3_in_standby: bool,
        /// Close the connection after every reply, as some projector firmware does (drive
        /// it with `connection = "per_request"`).
        #[arg(long)]
        close_after_reply: bool,
    },
    /// An Extron SIS matrix switcher on Telnet, and optionally on a pseudo-terminal.
    ///
    /// Example: avgate simulate extron --listen 127.0.0.1:2023 --inputs 8 --outputs 4 --pty
    Extron {
        #[arg(long, default_value = "127.0.0.1:23")]
        listen: SocketAddr,
        /// Ask Telnet clients for this password.
        #[arg(long)]
        password: Option<String>,
        #[arg(long, default_value_t = 8)]
        inputs: u16,
        #[arg(long, default_value_t = 8)]
        outputs: u16,
        /// Also serve the switcher's RS-232 port on a pseudo-terminal and print its path
        /// (give it to a site as `serial_port`).
        #[arg(long)]
        pty: bool,
    },
    /// Samsung MDC displays on TCP, and optionally on an RS-232 pseudo-terminal.
    ///
    /// Real displays listen on TCP 1515. With --pty the same displays also answer on a
    /// pseudo-terminal, as a daisy chain on one RS-232 line.
    ///
    /// Example: avgate simulate mdc --listen 127.0.0.1:1515 --ids 1,2 --pty
    Mdc {
        #[arg(long, default_value = "127.0.0.1:1515")]
        listen: SocketAddr,
        /// The display ids on the line (as set in each display's menu).
        #[arg(long, value_delimiter = ',', default_value = "1")]
        ids: Vec<u8>,
        /// Also serve the line on a pseudo-terminal and print its path.
        #[arg(long)]
        pty: bool,
    },
    /// A Sony PTZ camera on VISCA over IP (UDP), and optionally on an RS-232 pseudo-terminal.
    ///
    /// Real cameras listen on UDP 52381. With --pty the camera (or a chain of --cameras
    /// of them) also answers raw serial VISCA on a pseudo-terminal.
    ///
    /// Example: avgate simulate visca --listen 127.0.0.1:52381
    Visca {
        #[arg(long, default_value = "127.0.0.1:52381")]
        listen: SocketAddr,
        /// Cameras on the serial chain (addresses 1..=N) when --pty is given.
        #[arg(long, default_value_t = 1, value_parser = clap::value_parser!(u8).range(1..=7))]
        cameras: u8,
        /// Also serve raw serial VISCA on a pseudo-terminal and print its path.
        #[arg(long)]
        pty: bool,
        /// Speak bare VISCA in UDP datagrams, without Sony's header, as many non-Sony
        /// cameras do (drive it with `framing = "udp"`).
        #[arg(long)]
        raw: bool,
    },
    /// A Modbus device built from a profile's register map, on Modbus TCP (and RTU).
    ///
    /// Serves Modbus TCP, and RTU on a pseudo-terminal with --pty. Every mapped point
    /// starts at zero; addresses outside the map answer exception 02 (illegal data
    /// address).
    ///
    /// Example: avgate simulate modbus --profile modbus-power-sequencer-8 --listen 127.0.0.1:1502
    Modbus {
        /// A built-in profile name, or the path of a profile TOML file.
        #[arg(long)]
        profile: String,
        #[arg(long, default_value = "127.0.0.1:502")]
        listen: SocketAddr,
        /// The unit ids that answer (on RTU, several devices on one bus).
        #[arg(long, value_delimiter = ',', default_value = "1")]
        units: Vec<u8>,
        /// Also serve RTU on a pseudo-terminal and print its path.
        #[arg(long)]
        pty: bool,
    },
    /// A Kramer matrix switcher on Protocol 3000 (`#ROUTE`, `~01@` replies), generated from
    /// its scripted profile.
    ///
    /// Example: avgate simulate kramer --listen 127.0.0.1:5000
    Kramer(ScriptedArgs),
    /// A Shure ULX-D wireless receiver on its command strings (`< GET ... >`, TCP 2202).
    ///
    /// Example: avgate simulate shure --listen 127.0.0.1:2202
    Shure(ScriptedArgs),
    /// A Biamp Tesira DSP on the Tesira Text Protocol (Telnet negotiation, +OK/-ERR, subscriptions).
    ///
    /// Example: avgate simulate tesira --listen 127.0.0.1:2323
    Tesira(ScriptedArgs),
    /// An NEC large-format display on its external control protocol (binary frames with an XOR check, TCP 7142).
    ///
    /// Example: avgate simulate nec --listen 127.0.0.1:7142 --pty
    Nec(ScriptedArgs),
    /// A Blackmagic Videohub router (block protocol on TCP 9990): a 4x4 with labels, dumping its state on connect and pushing changes.
    ///
    /// Example: avgate simulate videohub --listen 127.0.0.1:9990
    Videohub(ScriptedArgs),
    /// A Q-SYS Core on QRC (JSON-RPC 2.0, NUL-terminated, TCP 1710) with the controls a
    /// `driver = "qsys"` profile names: Control.Get/Set, Component.Get/Set, change groups
    /// with AutoPoll.
    ///
    /// Example: avgate simulate qsys --listen 127.0.0.1:1710 --password secret
    Qsys {
        /// A built-in profile name, or the path of a profile TOML file (driver = "qsys").
        #[arg(long, default_value = "qsys-core")]
        profile: String,
        /// Address to listen on (TCP); default: 127.0.0.1 on the profile's port.
        #[arg(long)]
        listen: Option<SocketAddr>,
        /// Require a Logon with this password (any user name).
        #[arg(long)]
        password: Option<String>,
    },
    /// Any scripted profile's device (`driver = "scripted"`): a state table that answers
    /// the profile's queries and applies its commands, speaking its framing.
    ///
    /// Example: avgate simulate scripted --profile my-device.toml --listen 127.0.0.1:7000
    Scripted {
        /// A built-in profile name, or the path of a profile TOML file.
        #[arg(long)]
        profile: String,
        #[command(flatten)]
        args: ScriptedArgs,
    },
    /// A load generator: publishes changing values at a set rate, for benchmarks and soak tests.
    ///
    /// Every event carries the next number of one counter (1, 2, 3, ...) on the next of its
    /// points (value.0, value.1, ...) in turn, so a panel can spot a gap or a reordering
    /// from the values alone. A site uses it with `profile = "load-generator"` and
    /// `address` set to --listen; a panel can change the rate with the `rate` command.
    ///
    /// Example: avgate simulate load --rate 1000 --points 50 --listen 127.0.0.1:7010
    Load {
        #[arg(long, default_value = "127.0.0.1:7010")]
        listen: SocketAddr,
        /// Events published per second (0: quiet until a `rate` command).
        #[arg(long, default_value_t = 100)]
        rate: u64,
        /// How many points the events go to in turn (value.0 .. value.M-1).
        #[arg(long, default_value_t = 10, value_parser = clap::value_parser!(u32).range(1..))]
        points: u32,
        /// Stop publishing after this many events (default: never).
        #[arg(long)]
        count: Option<u64>,
    },
}

/// Where a simulator generated from a scripted profile listens.
#[derive(clap::Args)]
pub struct ScriptedArgs {
    /// Address to listen on (TCP); default: 127.0.0.1 on the profile's port.
    #[arg(long)]
    listen: Option<SocketAddr>,
    /// Also serve the device on a pseudo-terminal (its RS-232 port) and print the path.
    #[arg(long)]
    pty: bool,
}

/// Runs a simulator until Ctrl-C or SIGTERM.
pub async fn run(simulator: Simulator) -> anyhow::Result<()> {
    match simulator {
        Simulator::Pjlink {
            listen,
            password,
            warm_up,
            cool_down,
            class,
            name,
            err3_in_standby,
            close_after_reply,
        } => {
            let sim = pjlink_sim::start(pjlink_sim::Config {
                listen,
                password,
                warm_up,
                cool_down,
                class: if class == 2 {
                    pjlink_sim::Class::Two
                } else {
                    pjlink_sim::Class::One
                },
                name,
                err3_in_standby,
                close_after_reply,
                ..pjlink_sim::Config::default()
            })
            .await
            .with_context(|| format!("cannot start the PJLink simulator on {listen}"))?;
            println!(
                "PJLink projector simulator listening on {}",
                sim.local_addr()
            );
            crate::cli::wait_for_stop().await;
            sim.shutdown().await;
        }
        Simulator::Extron {
            listen,
            password,
            inputs,
            outputs,
            pty,
        } => {
            let sim = extron_sim::start(extron_sim::Config {
                listen,
                password,
                inputs,
                outputs,
                ..extron_sim::Config::default()
            })
            .await
            .with_context(|| format!("cannot start the Extron simulator on {listen}"))?;
            println!(
                "Extron SIS switcher simulator ({inputs}x{outputs}) listening on {} (Telnet)",
                sim.local_addr()
            );
            if pty {
                print_pty(sim.serve_pty())?;
            }
            crate::cli::wait_for_stop().await;
            sim.shutdown().await;
        }
        Simulator::Mdc { listen, ids, pty } => {
            let sim = mdc_sim::start(mdc_sim::Config {
                listen,
                display_ids: ids.clone(),
                ..mdc_sim::Config::default()
            })
            .await
            .with_context(|| format!("cannot start the MDC simulator on {listen}"))?;
            println!(
                "Samsung MDC simulator (display ids {ids:?}) listening on {} (TCP)",
                sim.local_addr()
            );
            if pty {
                print_pty(sim.serve_pty())?;
            }
            crate::cli::wait_for_stop().await;
            sim.shutdown().await;
        }
        Simulator::Visca {
            listen,
            cameras,
            pty,
            raw,
        } => {
            let config = visca_sim::Config {
                listen,
                cameras,
                ..visca_sim::Config::default()
            };
            let (sim, framing) = if raw {
                (
                    visca_sim::start_udp_raw(config).await,
                    "bare VISCA over UDP",
                )
            } else {
                (visca_sim::start_udp(config).await, "VISCA over IP, UDP")
            };
            let sim =
                sim.with_context(|| format!("cannot start the VISCA simulator on {listen}"))?;
            println!(
                "Sony VISCA camera simulator listening on {} ({framing})",
                sim.local_addr()
            );
            if pty {
                print_pty(sim.serve_pty())?;
            }
            crate::cli::wait_for_stop().await;
            sim.shutdown().await;
        }
        Simulator::Modbus {
            profile,
            listen,
            units,
            pty,
        } => {
            let map = register_map(&profile)?;
            let points = map.points.len();
            let sim = modbus_sim::start_tcp(modbus_sim::Config {
                listen,
                map,
                units: units.clone(),
            })
            .with_context(|| format!("cannot start the Modbus simulator on {listen}"))?;
            println!(
                "Modbus simulator of `{profile}` ({points} points, units {units:?}) listening on {} (Modbus TCP)",
                sim.local_addr()
            );
            if pty {
                print_pty(sim.serve_rtu_pty())?;
            }
            crate::cli::wait_for_stop().await;
            sim.shutdown().await;
        }
        Simulator::Kramer(args) => run_scripted("kramer-protocol-3000", args).await?,
        Simulator::Shure(args) => run_scripted("shure-ulxd-receiver", args).await?,
        Simulator::Tesira(args) => run_scripted("biamp-tesira", args).await?,
        Simulator::Nec(args) => run_scripted("nec-display", args).await?,
        Simulator::Videohub(args) => run_scripted("blackmagic-videohub", args).await?,
        Simulator::Scripted { profile, args } => run_scripted(&profile, args).await?,
        Simulator::Qsys {
            profile,
            listen,
            password,
        } => run_qsys(&profile, listen, password).await?,
        Simulator::Load {
            listen,
            rate,
            points,
            count,
        } => {
            let sim = load_sim::start(load_sim::Config {
                listen,
                points,
                rate,
                limit: count,
                record_times: false,
            })
            .with_context(|| format!("cannot start the load generator on {listen}"))?;
            let limit = count.map_or(String::new(), |n| format!(", {n} events in all"));
            println!(
                "Load generator publishing {rate} events/s over value.0 .. value.{} listening on {}{limit}",
                points - 1,
                sim.local_addr()
            );
            crate::cli::wait_for_stop().await;
            sim.shutdown().await;
        }
    }
    Ok(())
}

fn print_pty(path: std::io::Result<String>) -> anyhow::Result<()> {
    let path = path.context("cannot create a pseudo-terminal")?;
    println!("RS-232 port on pseudo-terminal {path} (give it to a site as `serial_port`)");
    Ok(())
}

/// Serves the simulated device of a scripted profile until Ctrl-C or SIGTERM.
async fn run_scripted(profile: &str, args: ScriptedArgs) -> anyhow::Result<()> {
    let profile = load_profile(profile)?;
    let script = avgate_drivers::scripted::from_options(&profile.options).map_err(|errors| {
        anyhow::anyhow!(
            "profile `{}` is not a scripted profile (driver = \"scripted\"): {}",
            profile.id,
            errors
                .iter()
                .map(ToString::to_string)
                .collect::<Vec<_>>()
                .join("; ")
        )
    })?;
    let listen = args
        .listen
        .unwrap_or_else(|| SocketAddr::from(([127, 0, 0, 1], profile.transport.port.unwrap_or(0))));
    let sim = avgate_drivers::scripted::serve(std::sync::Arc::new(script), listen)
        .with_context(|| format!("cannot start the simulator of `{}` on {listen}", profile.id))?;
    println!(
        "{} simulator (from profile `{}`) listening on {} (TCP)",
        profile.name,
        profile.id,
        sim.local_addr()
    );
    if args.pty {
        print_pty(sim.serve_pty())?;
    }
    crate::cli::wait_for_stop().await;
    sim.shutdown().await;
    Ok(())
}

/// Serves a simulated Q-SYS Core with the controls of a qsys profile until Ctrl-C or
/// SIGTERM.
async fn run_qsys(
    profile: &str,
    listen: Option<SocketAddr>,
    password: Option<String>,
) -> anyhow::Result<()> {
    use avgate_drivers::qsys;
    let profile = load_profile(profile)?;
    let options = qsys::Options::from_settings(&avgate_drivers::DriverSettings::with_options(
        profile.options.clone(),
    ))
    .map_err(|e| {
        anyhow::anyhow!(
            "profile `{}` is not a Q-SYS profile (driver = \"qsys\"): {e}",
            profile.id
        )
    })?;
    let listen = listen
        .unwrap_or_else(|| SocketAddr::from(([127, 0, 0, 1], profile.transport.port.unwrap_or(0))));
    let sim = qsys::serve(&options, password, listen)
        .with_context(|| format!("cannot start the Q-SYS simulator on {listen}"))?;
    println!(
        "{} simulator (from profile `{}`) listening on {} (TCP)",
        profile.name,
        profile.id,
        sim.local_addr()
    );
    crate::cli::wait_for_stop().await;
    sim.shutdown().await;
    Ok(())
}

/// A built-in profile, or a profile file.
fn load_profile(profile: &str) -> anyhow::Result<Profile> {
    let path = PathBuf::from(profile);
    let loaded = if path.is_file() {
        let text = std::fs::read_to_string(&path)
            .with_context(|| format!("cannot read profile {}", path.display()))?;
        let id = path
            .file_stem()
            .map_or(profile.into(), |s| s.to_string_lossy());
        Profile::parse(&id, &path, &text)
    } else {
        Profile::find(profile, &[]).with_context(|| {
            format!(
                "`{profile}` is neither a profile file nor a built-in profile ({})",
                Profile::built_in_names().collect::<Vec<_>>().join(", ")
            )
        })?
    };
    loaded.map_err(|e| anyhow::anyhow!("{e}"))
}

/// The register map of a built-in profile, or of a profile file.
fn register_map(profile: &str) -> anyhow::Result<RegisterMap> {
    let profile = load_profile(profile)?;
    if profile.driver != avgate_drivers::modbus::DRIVER.name {
        anyhow::bail!(
            "profile `{}` uses the {} driver; give a Modbus profile (driver = \"modbus\")",
            profile.id,
            profile.driver
        );
    }
    RegisterMap::from_options(&profile.options).map_err(|e| anyhow::anyhow!("{e}"))
}
