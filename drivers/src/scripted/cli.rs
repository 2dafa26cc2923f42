//! `avgate simulate scripted --profile X` (and the commands scripted profiles name for
//! themselves, such as `avgate simulate kramer`): the device a script describes, served
//! by its generated model.

use std::net::SocketAddr;
use std::sync::Arc;

use crate::simulate::{
    ProfileUse, RunningSimulator, SimulatorError, SimulatorInfo, SimulatorRequest, StartFuture,
};

pub(super) const SIMULATOR: SimulatorInfo = SimulatorInfo {
    command: "scripted",
    args: <Flags as clap::Args>::augment_args,
    profile: ProfileUse::Required,
    start,
};

/// Any scripted profile's device (`driver = "scripted"`): a state table that answers
/// the profile's queries and applies its commands, speaking its framing.
///
/// Example: avgate simulate scripted --profile my-device.toml --listen 127.0.0.1:7000
#[derive(clap::Args)]
struct Flags {
    /// Address to listen on (TCP); default: 127.0.0.1 on the profile's port.
    #[arg(long)]
    listen: Option<SocketAddr>,
    /// Also serve the device on a pseudo-terminal (its RS-232 port) and print the path.
    #[arg(long)]
    pty: bool,
}

fn start(request: SimulatorRequest) -> StartFuture {
    Box::pin(async move {
        let Flags { listen, pty } = request.flags()?;
        let profile = request.profile()?;
        let script = super::from_options(&profile.options).map_err(|errors| {
            profile.refuse(format!(
                "is not a scripted profile (driver = \"scripted\"): {}",
                errors
                    .iter()
                    .map(ToString::to_string)
                    .collect::<Vec<_>>()
                    .join("; ")
            ))
        })?;
        let listen = profile.listen_or_default(listen);
        let sim = super::serve(Arc::new(script), listen).map_err(|e| {
            SimulatorError::start(format!("simulator of `{}`", profile.id), listen, e)
        })?;
        let pty = pty.then(|| sim.serve_pty());
        RunningSimulator::new(
            sim.local_addr(),
            format!(
                "{} simulator (from profile `{}`) listening on {} (TCP)",
                profile.name,
                profile.id,
                sim.local_addr()
            ),
            async move { sim.shutdown().await },
        )
        .with_pty(pty)
    })
}
