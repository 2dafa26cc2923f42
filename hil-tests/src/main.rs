//! `cargo run -p avgate-hil-tests`: runs the checks against the devices listed in the file
//! named by AVGATE_HIL_CONFIG, printing PASS / FAIL / SKIP lines. Exits 1 if any check fails.

use std::path::PathBuf;
use std::process::ExitCode;

#[tokio::main]
async fn main() -> ExitCode {
    let Some(path) = std::env::var_os(avgate_hil_tests::CONFIG_ENV).map(PathBuf::from) else {
        println!(
            "SKIP all: {} is not set; point it at a TOML file listing the rack's devices (see hil-tests/README.md)",
            avgate_hil_tests::CONFIG_ENV
        );
        return ExitCode::SUCCESS;
    };
    match avgate_hil_tests::run_file(&path, &mut std::io::stdout()).await {
        Ok(report) if report.failed == 0 => ExitCode::SUCCESS,
        Ok(_) => ExitCode::FAILURE,
        Err(e) => {
            eprintln!("error: {e:#}");
            ExitCode::FAILURE
        }
    }
}
