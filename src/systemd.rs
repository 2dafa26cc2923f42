//! Running under systemd (`Type=notify-reload`): readiness, reloads, the watchdog and a
//! status line, told to the service manager over `$NOTIFY_SOCKET`.
//!
//! - `READY=1` once [`Gateway::start`] returned: the listener is bound and the journal
//!   recovered.
//! - SIGHUP: `RELOADING=1` with `MONOTONIC_USEC`, the reload (which changes nothing if
//!   the file has problems), then `READY=1` again either way, as systemd expects.
//! - `WATCHDOG=1` every half `WatchdogSec`, but only while [`Liveness`] finds the journal
//!   committer and every link task moving: a wedged gateway stops petting the watchdog
//!   and systemd restarts it. A bare timer would keep a wedged process alive.
//! - `STATUS=` with devices online and panels connected, at readiness, after a reload
//!   and every [`STATUS_EVERY`].
//!
//! Without `$NOTIFY_SOCKET` (not under systemd) every notification is a no-op.
//!
//! [`Liveness`]: crate::gateway::Liveness

use std::path::Path;
use std::time::Duration;

use sd_notify::NotifyState;
use tracing::{error, info, warn};

use crate::gateway::{Gateway, Marks};

/// How often the status line is refreshed.
pub const STATUS_EVERY: Duration = Duration::from_secs(10);

/// The unit file `avgate install-unit` writes (also in `packaging/avgate.service`).
pub const UNIT: &str = include_str!("../packaging/avgate.service");

/// Sends `states` to the service manager, if there is one; a failure is logged, never
/// fatal (the gateway serves the room whether or not systemd hears about it).
fn notify(states: &[NotifyState]) {
    if let Err(e) = sd_notify::notify(states) {
        warn!("cannot notify systemd: {e}");
    }
}

/// Runs `gateway` until SIGTERM or Ctrl-C, reloading `config` on SIGHUP and keeping
/// systemd informed throughout.
pub async fn supervise(gateway: &Gateway, config: &Path) -> anyhow::Result<()> {
    use tokio::signal::unix::{SignalKind, signal};
    let mut hangup = signal(SignalKind::hangup())?;
    let mut terminate = signal(SignalKind::terminate())?;
    let status = |gateway: &Gateway| gateway.status().to_string();
    notify(&[NotifyState::Ready, NotifyState::Status(&status(gateway))]);

    // Half the watchdog period, as sd_watchdog_enabled(3) advises; without a watchdog the
    // timer only refreshes the status line.
    let watchdog = sd_notify::watchdog_enabled();
    let mut watchdog_tick = tokio::time::interval(watchdog.map_or(STATUS_EVERY, |d| d / 2));
    let mut status_tick =
        tokio::time::interval_at(tokio::time::Instant::now() + STATUS_EVERY, STATUS_EVERY);
    let mut marks = Marks::default();
    loop {
        tokio::select! {
            _ = tokio::signal::ctrl_c() => break,
            _ = terminate.recv() => break,
            _ = hangup.recv() => {
                match sd_notify::NotifyState::monotonic_usec_now() {
                    Ok(now) => notify(&[NotifyState::Reloading, now]),
                    Err(e) => {
                        warn!("cannot read the monotonic clock: {e}");
                        notify(&[NotifyState::Reloading]);
                    }
                }
                info!("SIGHUP: reloading {}", config.display());
                if let Err(e) = gateway.reload(config).await {
                    error!("reload refused: {e}");
                }
                notify(&[NotifyState::Ready, NotifyState::Status(&status(gateway))]);
            }
            _ = watchdog_tick.tick(), if watchdog.is_some() => {
                match gateway.liveness().await.check(&mut marks) {
                    Ok(()) => notify(&[NotifyState::Watchdog]),
                    Err(stuck) => error!("not petting the watchdog: {stuck}"),
                }
            }
            _ = status_tick.tick() => notify(&[NotifyState::Status(&status(gateway))]),
        }
    }
    info!("stopping");
    notify(&[NotifyState::Stopping]);
    Ok(())
}
