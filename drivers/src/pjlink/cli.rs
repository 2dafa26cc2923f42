//! `avgate simulate pjlink`: the simulated projector's flags and start.

use std::net::SocketAddr;
use std::time::Duration;

use super::simulator::{self, Class};
use crate::simulate::{
    ProfileUse, RunningSimulator, SimulatorError, SimulatorInfo, SimulatorRequest, StartFuture,
};

pub(super) const SIMULATOR: SimulatorInfo = SimulatorInfo {
    command: "pjlink",
    args: <Flags as clap::Args>::augment_args,
    profile: ProfileUse::None,
    start,
};

/// A PJLink projector (class 1, or class 2 with --class 2).
///
/// Example: avgate simulate pjlink --listen 127.0.0.1:4352 --password secret
#[derive(clap::Args)]
struct Flags {
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
}

fn start(request: SimulatorRequest) -> StartFuture {
    Box::pin(async move {
        let flags: Flags = request.flags()?;
        let listen = flags.listen;
        let sim = simulator::start(simulator::Config {
            listen,
            password: flags.password,
            warm_up: flags.warm_up,
            cool_down: flags.cool_down,
            class: if flags.class == 2 {
                Class::Two
            } else {
                Class::One
            },
            name: flags.name,
            err3_in_standby: flags.err3_in_standby,
            close_after_reply: flags.close_after_reply,
            ..simulator::Config::default()
        })
        .await
        .map_err(|e| SimulatorError::start("PJLink simulator", listen, e))?;
        Ok(RunningSimulator::new(
            sim.local_addr(),
            format!(
                "PJLink projector simulator listening on {}",
                sim.local_addr()
            ),
            async move { sim.shutdown().await },
        ))
    })
}
