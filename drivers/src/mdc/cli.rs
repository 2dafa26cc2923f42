//! `avgate simulate mdc`: the simulated displays' flags and start.

use std::net::SocketAddr;

use super::simulator;
use crate::simulate::{
    ProfileUse, RunningSimulator, SimulatorError, SimulatorInfo, SimulatorRequest, StartFuture,
};

pub(super) const SIMULATOR: SimulatorInfo = SimulatorInfo {
    command: "mdc",
    args: <Flags as clap::Args>::augment_args,
    profile: ProfileUse::None,
    start,
};

/// Samsung MDC displays on TCP, and optionally on an RS-232 pseudo-terminal.
///
/// Real displays listen on TCP 1515. With --pty the same displays also answer on a
/// pseudo-terminal, as a daisy chain on one RS-232 line.
///
/// Example: avgate simulate mdc --listen 127.0.0.1:1515 --ids 1,2 --pty
#[derive(clap::Args)]
struct Flags {
    #[arg(long, default_value = "127.0.0.1:1515")]
    listen: SocketAddr,
    /// The display ids on the line (as set in each display's menu).
    #[arg(long, value_delimiter = ',', default_value = "1")]
    ids: Vec<u8>,
    /// Also serve the line on a pseudo-terminal and print its path.
    #[arg(long)]
    pty: bool,
}

fn start(request: SimulatorRequest) -> StartFuture {
    Box::pin(async move {
        let Flags { listen, ids, pty } = request.flags()?;
        let sim = simulator::start(simulator::Config {
            listen,
            display_ids: ids.clone(),
            ..simulator::Config::default()
        })
        .await
        .map_err(|e| SimulatorError::start("MDC simulator", listen, e))?;
        let pty = pty.then(|| sim.serve_pty());
        RunningSimulator::new(
            sim.local_addr(),
            format!(
                "Samsung MDC simulator (display ids {ids:?}) listening on {} (TCP)",
                sim.local_addr()
            ),
            async move { sim.shutdown().await },
        )
        .with_pty(pty)
    })
}
