//! `avgate simulate load`: the load generator's flags and start.

use std::net::SocketAddr;

use super::simulator;
use crate::simulate::{
    ProfileUse, RunningSimulator, SimulatorError, SimulatorInfo, SimulatorRequest, StartFuture,
};

pub(super) const SIMULATOR: SimulatorInfo = SimulatorInfo {
    command: "load",
    args: <Flags as clap::Args>::augment_args,
    profile: ProfileUse::None,
    start,
};

/// A load generator: publishes changing values at a set rate, for benchmarks and soak tests.
///
/// Every event carries the next number of one counter (1, 2, 3, ...) on the next of its
/// points (value.0, value.1, ...) in turn, so a panel can spot a gap or a reordering
/// from the values alone. A site uses it with `profile = "load-generator"` and
/// `address` set to --listen; a panel can change the rate with the `rate` command.
///
/// Example: avgate simulate load --rate 1000 --points 50 --listen 127.0.0.1:7010
#[derive(clap::Args)]
struct Flags {
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
}

fn start(request: SimulatorRequest) -> StartFuture {
    Box::pin(async move {
        let Flags {
            listen,
            rate,
            points,
            count,
        } = request.flags()?;
        let sim = simulator::start(simulator::Config {
            listen,
            points,
            rate,
            limit: count,
            record_times: false,
        })
        .map_err(|e| SimulatorError::start("load generator", listen, e))?;
        let limit = count.map_or(String::new(), |n| format!(", {n} events in all"));
        Ok(RunningSimulator::new(
            sim.local_addr(),
            format!(
                "Load generator publishing {rate} events/s over value.0 .. value.{} listening on {}{limit}",
                points - 1,
                sim.local_addr()
            ),
            async move { sim.shutdown().await },
        ))
    })
}
