//! `avgate simulate visca`: the simulated cameras' flags and start.

use std::net::SocketAddr;

use super::simulator;
use crate::simulate::{
    ProfileUse, RunningSimulator, SimulatorError, SimulatorInfo, SimulatorRequest, StartFuture,
};

pub(super) const SIMULATOR: SimulatorInfo = SimulatorInfo {
    command: "visca",
    args: <Flags as clap::Args>::augment_args,
    profile: ProfileUse::None,
    start,
};

/// A Sony PTZ camera on VISCA over IP (UDP), and optionally on an RS-232 pseudo-terminal.
///
/// Real cameras listen on UDP 52381. With --pty the camera (or a chain of --cameras
/// of them) also answers raw serial VISCA on a pseudo-terminal.
///
/// Example: avgate simulate visca --listen 127.0.0.1:52381
#[derive(clap::Args)]
struct Flags {
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
}

fn start(request: SimulatorRequest) -> StartFuture {
    Box::pin(async move {
        let Flags {
            listen,
            cameras,
            pty,
            raw,
        } = request.flags()?;
        let config = simulator::Config {
            listen,
            cameras,
            ..simulator::Config::default()
        };
        let (sim, framing) = if raw {
            (
                simulator::start_udp_raw(config).await,
                "bare VISCA over UDP",
            )
        } else {
            (simulator::start_udp(config).await, "VISCA over IP, UDP")
        };
        let sim = sim.map_err(|e| SimulatorError::start("VISCA simulator", listen, e))?;
        let pty = pty.then(|| sim.serve_pty());
        RunningSimulator::new(
            sim.local_addr(),
            format!(
                "Sony VISCA camera simulator listening on {} ({framing})",
                sim.local_addr()
            ),
            async move { sim.shutdown().await },
        )
        .with_pty(pty)
    })
}
