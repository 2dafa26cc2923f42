//! Builds the list of profiles compiled into the binary from `device-profiles/*.toml`, so a
//! profile dropped into that directory is built in with no list to edit.

use std::fmt::Write as _;
use std::path::Path;

fn main() {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("device-profiles");
    // A directory: cargo reruns this script when any file in it changes, appears or goes.
    println!("cargo:rerun-if-changed={}", dir.display());

    let mut profiles: Vec<(String, String)> = std::fs::read_dir(&dir)
        .unwrap_or_else(|e| panic!("cannot read {}: {e}", dir.display()))
        .map(|entry| entry.expect("a readable directory entry").path())
        .filter(|path| path.extension().is_some_and(|ext| ext == "toml"))
        .map(|path| {
            let id = path
                .file_stem()
                .and_then(|stem| stem.to_str())
                .unwrap_or_else(|| panic!("{}: a profile's name must be UTF-8", path.display()))
                .to_string();
            let path = path
                .to_str()
                .unwrap_or_else(|| panic!("{}: the path must be UTF-8", path.display()))
                .to_string();
            (id, path)
        })
        .collect();
    // Sorted, so the binary does not depend on the order the file system lists them in.
    profiles.sort();

    let mut code = String::from("&[\n");
    for (id, path) in &profiles {
        // `{:?}` writes a Rust string literal, escapes and all.
        writeln!(code, "    ({id:?}, include_str!({path:?})),").expect("writing to a String");
    }
    code.push(']');
    let out = Path::new(&std::env::var("OUT_DIR").expect("cargo sets OUT_DIR"))
        .join("built_in_profiles.rs");
    std::fs::write(&out, code).unwrap_or_else(|e| panic!("cannot write {}: {e}", out.display()));
}
