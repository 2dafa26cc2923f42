//! `avgate simulate extron`: the simulated switcher's flags and start.

use std::net::SocketAddr;

use super::simulator;
use crate::simulate::{
    ProfileUse, RunningSimulator, SimulatorError, SimulatorInfo, SimulatorRequest, StartFuture,
};

pub(super) const SIMULATOR: SimulatorInfo = SimulatorInfo {
    command: "extron",
    args: <Flags as clap::Args>::augment_args,
    profile: ProfileUse::None,
    start,
};

/// An Extron SIS matrix switcher on Telnet, and optionally on a pseudo-terminal.
///
/// Example: avgate simulate extron --listen 127.0.0.1:2023 --inputs 8 --outputs 4 --pty
#[derive(clap::Args)]
struct Flags {
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
}

fn start(request: SimulatorRequest) -> StartFuture {
    Box::pin(async move {
        let Flags {
            listen,
            password,
            inputs,
            outputs,
            pty,
        } = request.flags()?;
        let sim = simulator::start(simulator::Config {
            listen,
            password,
            inputs,
            outputs,
            ..simulator::Config::default()
        })
        .await
        .map_err(|e| SimulatorError::start("Extron simulator", listen, e))?;
        let pty = pty.then(|| sim.serve_pty());
        RunningSimulator::new(
            sim.local_addr(),
            format!(
                "Extron SIS switcher simulator ({inputs}x{outputs}) listening on {} (Telnet)",
                sim.local_addr()
            ),
            async move { sim.shutdown().await },
        )
        .with_pty(pty)
    })
}
