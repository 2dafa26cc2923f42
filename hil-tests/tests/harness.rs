//! The harness against the PJLink simulator, through the same rack-file format a real rack
//! uses: if the harness passes here and fails on a rack, the device differs.

use std::time::Duration;

use avgate_drivers::pjlink::simulator as sim;
use avgate_hil_tests::{Report, run_file};

async fn rack_file(body: &str) -> tempfile::NamedTempFile {
    let file = tempfile::NamedTempFile::new().unwrap();
    std::fs::write(file.path(), body).unwrap();
    file
}

/// Runs the harness on a rack file; every check must pass. Returns what it printed.
async fn passing(rack: &std::path::Path) -> String {
    let mut out = Vec::new();
    let report = run_file(rack, &mut out).await.unwrap();
    let out = String::from_utf8(out).unwrap();
    assert_eq!(report.failed, 0, "{out}");
    out
}

#[tokio::test]
async fn every_check_passes_against_the_simulator() {
    let projector = sim::start(sim::Config {
        password: Some("JBMIAProjectorLink".into()),
        warm_up: Duration::from_millis(200),
        ..sim::Config::default()
    })
    .await
    .unwrap();
    let rack = rack_file(&format!(
        "[[pjlink]]\nname = \"sim\"\naddress = \"{}\"\npassword = \"JBMIAProjectorLink\"\nallow_power = true\n",
        projector.local_addr()
    ))
    .await;
    let out = passing(rack.path()).await;
    assert!(out.contains("PASS sim connect"), "{out}");
    assert!(out.contains("PASS sim power on"), "{out}");
    assert!(out.contains("PASS sim lamp"), "{out}");
}

#[tokio::test]
async fn a_wrong_password_fails_connect_with_the_reason() {
    let projector = sim::start(sim::Config {
        password: Some("right".into()),
        ..sim::Config::default()
    })
    .await
    .unwrap();
    let rack = rack_file(&format!(
        "[[pjlink]]\nname = \"sim\"\naddress = \"{}\"\npassword = \"wrong\"\n",
        projector.local_addr()
    ))
    .await;
    let mut out = Vec::new();
    let report = run_file(rack.path(), &mut out).await.unwrap();
    let out = String::from_utf8(out).unwrap();
    assert_eq!(report.failed, 1, "{out}");
    assert!(
        out.contains("FAIL sim connect") && out.contains("password"),
        "{out}"
    );
}

#[tokio::test]
async fn families_without_devices_are_skipped_with_a_reason() {
    let rack = rack_file("").await;
    let mut out = Vec::new();
    let report = run_file(rack.path(), &mut out).await.unwrap();
    assert_eq!(
        report,
        Report {
            passed: 0,
            failed: 0,
            skipped: 7
        }
    );
    let out = String::from_utf8(out).unwrap();
    for family in [
        "pjlink", "extron", "mdc", "visca", "modbus", "scripted", "qsys",
    ] {
        let line = format!("SKIP {family} all: no [[{family}]] devices in the rack file\n");
        assert!(out.contains(&line), "missing `{line}` in:\n{out}");
    }
}

#[tokio::test]
async fn extron_checks_pass_over_telnet_and_rs232() {
    use avgate_drivers::extron::simulator as extron_sim;
    let switcher = extron_sim::start(extron_sim::Config {
        password: Some("extron".into()),
        ..extron_sim::Config::default()
    })
    .await
    .unwrap();
    let pty = switcher.serve_pty().unwrap();
    let rack = rack_file(&format!(
        "[[extron]]\nname = \"telnet\"\naddress = \"{}\"\npassword = \"extron\"\nallow_routing = true\n\
         [[extron]]\nname = \"serial\"\nserial_port = \"{pty}\"\n",
        switcher.local_addr()
    ))
    .await;
    let out = passing(rack.path()).await;
    for line in [
        "PASS telnet connect",
        "PASS telnet routes",
        "PASS telnet re-tie output 1",
        "PASS serial routes",
        "SKIP serial re-tie output 1",
    ] {
        assert!(out.contains(line), "missing `{line}` in:\n{out}");
    }
}

#[tokio::test]
async fn display_camera_and_modbus_checks_pass_against_simulators() {
    use avgate_drivers::mdc::simulator as mdc_sim;
    use avgate_drivers::modbus::simulator as modbus_sim;
    use avgate_drivers::visca::simulator as visca_sim;

    let display = mdc_sim::start(mdc_sim::Config {
        display_ids: vec![3],
        ..mdc_sim::Config::default()
    })
    .await
    .unwrap();
    let camera = visca_sim::start_udp(visca_sim::Config::default())
        .await
        .unwrap();
    // A Modbus device with its own profile, as a rack would have one.
    let dir = tempfile::tempdir().unwrap();
    let profile = "driver = \"modbus\"\nname = \"meter\"\ndescription = \"a meter\"\n\
                   [options]\npoll_groups = { default = \"200ms\" }\n\
                   [[options.points]]\nname = \"kwh\"\ntable = \"input\"\naddress = 4\ntype = \"u32\"\n\
                   [[options.points]]\nname = \"relay\"\ntable = \"coil\"\naddress = 0\nwritable = true\n";
    std::fs::write(dir.path().join("meter.toml"), profile).unwrap();
    let options = match toml::from_str::<toml::Table>(profile).unwrap()["options"].clone() {
        toml::Value::Table(t) => serde_json::to_value(t).unwrap(),
        _ => unreachable!(),
    };
    let map =
        avgate_drivers::modbus::RegisterMap::from_options(options.as_object().unwrap()).unwrap();
    let meter = modbus_sim::start_tcp(modbus_sim::Config {
        units: vec![7],
        ..modbus_sim::Config::new(map)
    })
    .unwrap();
    meter.set_point("kwh", &serde_json::json!(123456)).unwrap();

    let rack_path = dir.path().join("rack.toml");
    std::fs::write(
        &rack_path,
        format!(
            "[[mdc]]\nname = \"tv\"\naddress = \"{}\"\ndisplay_id = 3\nallow_control = true\n\
             [[visca]]\nname = \"cam\"\naddress = \"{}\"\nallow_motion = true\n\
             [[modbus]]\nname = \"meter\"\nprofile = \"meter\"\nprofile_dirs = [\".\"]\naddress = \"{}\"\nunit = 7\n",
            display.local_addr(),
            camera.local_addr(),
            meter.local_addr()
        ),
    )
    .unwrap();
    let out = passing(&rack_path).await;
    for line in [
        "PASS tv connect",
        "PASS tv volume",
        "PASS tv set volume",
        "PASS cam zoom",
        "PASS cam zoom to current",
        "PASS meter kwh",
        "PASS meter relay",
    ] {
        assert!(out.contains(line), "missing `{line}` in:\n{out}");
    }
}

#[tokio::test]
async fn every_scripted_family_passes_against_its_generated_simulator() {
    use std::sync::Arc;
    let mut sims = Vec::new();
    let mut body = String::new();
    for profile in [
        "kramer-protocol-3000",
        "shure-ulxd-receiver",
        "biamp-tesira",
        "nec-display",
        "blackmagic-videohub",
    ] {
        let loaded = avgate::config::Profile::find(profile, &[])
            .unwrap()
            .unwrap();
        let script = avgate_drivers::scripted::from_options(&loaded.options).unwrap();
        let sim = avgate_drivers::scripted::serve(Arc::new(script), "127.0.0.1:0".parse().unwrap())
            .unwrap();
        body += &format!(
            "[[scripted]]\nname = \"{profile}\"\nprofile = \"{profile}\"\naddress = \"{}\"\nallow_control = true\n",
            sim.local_addr()
        );
        sims.push(sim);
    }
    let rack = rack_file(&body).await;
    let out = passing(rack.path()).await;
    for profile in ["kramer-protocol-3000", "nec-display", "blackmagic-videohub"] {
        assert!(out.contains(&format!("PASS {profile} write back")), "{out}");
    }
    assert!(out.contains("PASS shure-ulxd-receiver battery.1"), "{out}");
    for sim in sims {
        sim.shutdown().await;
    }
}

#[tokio::test]
async fn a_scripted_profile_of_the_rack_is_found_beside_the_rack_file() {
    use std::sync::Arc;
    // A site's own model: a stock profile under another name, in a folder next to the
    // rack file, which is not the directory the harness runs in.
    let dir = tempfile::tempdir().unwrap();
    std::fs::create_dir(dir.path().join("profiles")).unwrap();
    let text = std::fs::read_to_string(concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/../device-profiles/kramer-protocol-3000.toml"
    ))
    .unwrap();
    std::fs::write(dir.path().join("profiles/lab-matrix.toml"), &text).unwrap();
    let loaded = avgate::config::Profile::find("lab-matrix", &[dir.path().join("profiles")])
        .unwrap()
        .unwrap();
    let script = avgate_drivers::scripted::from_options(&loaded.options).unwrap();
    let sim =
        avgate_drivers::scripted::serve(Arc::new(script), "127.0.0.1:0".parse().unwrap()).unwrap();
    let rack_path = dir.path().join("rack.toml");
    std::fs::write(
        &rack_path,
        format!(
            "[[scripted]]\nname = \"matrix\"\nprofile = \"lab-matrix\"\nprofile_dirs = [\"profiles\"]\naddress = \"{}\"\n",
            sim.local_addr()
        ),
    )
    .unwrap();
    let out = passing(&rack_path).await;
    assert!(out.contains("PASS matrix connect"), "{out}");
    sim.shutdown().await;
}

#[tokio::test]
async fn qsys_checks_pass_against_the_simulated_core() {
    use avgate_drivers::{DriverSettings, qsys};
    let loaded = avgate::config::Profile::find("qsys-core", &[])
        .unwrap()
        .unwrap();
    let options =
        qsys::Options::from_settings(&DriverSettings::with_options(loaded.options.clone()))
            .unwrap();
    let core = qsys::serve(
        &options,
        Some("hil-pass".into()),
        "127.0.0.1:0".parse().unwrap(),
    )
    .unwrap();
    core.change(|m| m.front_panel(None, "ProgramGain", serde_json::json!(-20)));
    let rack = rack_file(&format!(
        "[[qsys]]\nname = \"core\"\naddress = \"{}\"\npassword = \"hil-pass\"\nallow_control = true\n",
        core.local_addr()
    ))
    .await;
    let out = passing(rack.path()).await;
    for line in [
        "PASS core connect",
        "PASS core gain",
        "PASS core mute",
        "PASS core core_state",
        "PASS core write back",
    ] {
        assert!(out.contains(line), "missing `{line}` in:\n{out}");
    }
    assert_eq!(
        core.with(|m| m.value(None, "ProgramGain").cloned()),
        Some(serde_json::json!(-20.0))
    );
    core.shutdown().await;
}
