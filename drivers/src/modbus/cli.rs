//! `avgate simulate modbus`: a device built from a profile's register map, its flags and
//! start.

use std::net::SocketAddr;

use super::map::RegisterMap;
use super::simulator;
use crate::simulate::{
    ProfileUse, RunningSimulator, SimulatorError, SimulatorInfo, SimulatorRequest, StartFuture,
};

pub(super) const SIMULATOR: SimulatorInfo = SimulatorInfo {
    command: "modbus",
    args: <Flags as clap::Args>::augment_args,
    profile: ProfileUse::Required,
    start,
};

/// A Modbus device built from a profile's register map, on Modbus TCP (and RTU).
///
/// Serves Modbus TCP, and RTU on a pseudo-terminal with --pty. Every mapped point
/// starts at zero; addresses outside the map answer exception 02 (illegal data
/// address).
///
/// Example: avgate simulate modbus --profile modbus-power-sequencer-8 --listen 127.0.0.1:1502
#[derive(clap::Args)]
struct Flags {
    #[arg(long, default_value = "127.0.0.1:502")]
    listen: SocketAddr,
    /// The unit ids that answer (on RTU, several devices on one bus).
    #[arg(long, value_delimiter = ',', default_value = "1")]
    units: Vec<u8>,
    /// Also serve RTU on a pseudo-terminal and print its path.
    #[arg(long)]
    pty: bool,
}

fn start(request: SimulatorRequest) -> StartFuture {
    Box::pin(async move {
        let Flags { listen, units, pty } = request.flags()?;
        let profile = request.profile()?;
        let map = RegisterMap::from_options(&profile.options)
            .map_err(|e| profile.refuse(format!("has no register map to serve: {e}")))?;
        let points = map.points.len();
        let sim = simulator::start_tcp(simulator::Config {
            listen,
            map,
            units: units.clone(),
        })
        .map_err(|e| SimulatorError::start("Modbus simulator", listen, e))?;
        let pty = pty.then(|| sim.serve_rtu_pty());
        RunningSimulator::new(
            sim.local_addr(),
            format!(
                "Modbus simulator of `{}` ({points} points, units {units:?}) listening on {} (Modbus TCP)",
                profile.id,
                sim.local_addr()
            ),
            async move { sim.shutdown().await },
        )
        .with_pty(pty)
    })
}
