//! What the external-peer tests share: finding the Python that has the peers installed,
//! and running a peer script to its end.

use std::time::Duration;

/// The Python named by `AVGATE_PEERS_PYTHON` (CI installs tests/peers/requirements.txt
/// into it), or None after printing a SKIP line naming `peer`, the package the test needs.
pub fn python(peer: &str) -> Option<String> {
    match std::env::var("AVGATE_PEERS_PYTHON") {
        Ok(python) if !python.is_empty() => Some(python),
        _ => {
            println!("SKIP {peer} peer: set AVGATE_PEERS_PYTHON to a python with {peer}");
            None
        }
    }
}

/// Runs `script` with `args` and fails the test if it does not finish within `limit` or
/// any of its checks failed; its output is shown either way.
pub async fn run_script(python: &str, script: &str, args: &[&str], limit: Duration) {
    let mut command = tokio::process::Command::new(python);
    command.arg(script).args(args).kill_on_drop(true);
    let output = tokio::time::timeout(limit, command.output())
        .await
        .unwrap_or_else(|_| panic!("{script} did not finish within {limit:?}"))
        .unwrap_or_else(|e| panic!("cannot run {python}: {e}"));
    let stdout = String::from_utf8_lossy(&output.stdout);
    let stderr = String::from_utf8_lossy(&output.stderr);
    print!("{stdout}");
    assert!(
        output.status.success(),
        "{script} {args:?} failed ({}):\n{stdout}\n{stderr}",
        output.status
    );
}
