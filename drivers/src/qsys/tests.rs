//! The session against the simulated Core in memory (paused time via [`Pair`]), the
//! options, and the receive path under arbitrary bytes.

use std::time::Duration;

use serde_json::{Map, Value, json};

use super::frame;
use super::*;
use crate::kit::fuzz;
use crate::kit::{DeviceModel, Pair};
use crate::{DeviceErrorKind, Output, Request, SessionError};

fn options(extra: Value) -> Map<String, Value> {
    let mut options = json!({
        "controls": {
            "gain": {"control": "MainGain", "type": "number", "min": -100, "max": 20,
                     "writable": true, "unit": "dB"},
            "mute": {"control": "MainMute", "type": "bool", "writable": true},
            "source": {"control": "source.name", "component": "Lobby", "type": "string",
                       "writable": true},
            "level": {"control": "level", "component": "Lobby", "type": "number"},
        }
    });
    for (key, value) in extra.as_object().cloned().unwrap_or_default() {
        options[key] = value;
    }
    options.as_object().unwrap().clone()
}

fn settings(extra: Value, password: Option<&str>) -> DriverSettings {
    DriverSettings {
        options: options(extra),
        password: password.map(str::to_string),
    }
}

fn pair(password: Option<&str>, core_password: Option<&str>) -> Pair<Session, Model> {
    let settings = settings(json!({"user": "panel"}), password);
    let options = Options::from_settings(&settings).unwrap();
    let model = Model::from_options(&options, core_password.map(str::to_string));
    Pair::new(Session::new(options, settings.password), model)
}

fn set(point: &str, value: Value) -> Request {
    Request::Command {
        name: format!("set_{point}"),
        args: json!({"value": value}).as_object().unwrap().clone(),
    }
}

fn updates(outputs: &[Output]) -> Vec<(String, Value)> {
    outputs
        .iter()
        .filter_map(|o| match o {
            Output::Update { point, value } => Some((point.clone(), value.clone())),
            _ => None,
        })
        .collect()
}

fn sent(pair: &Pair<Session, Model>) -> Vec<Value> {
    pair.wire
        .iter()
        .filter(|(from_session, _)| *from_session)
        .map(|(_, bytes)| serde_json::from_slice(&bytes[..bytes.len() - 1]).unwrap())
        .collect()
}

#[test]
fn catalog_follows_the_controls() {
    let catalog = catalog(&settings(json!({}), None)).unwrap();
    assert_eq!(
        catalog.point_names(),
        vec!["core_state", "gain", "level", "mute", "source"]
    );
    assert_eq!(catalog.points["gain"].kind, PointType::Number);
    assert_eq!(catalog.points["gain"].unit.as_deref(), Some("dB"));
    assert_eq!(catalog.points["mute"].kind, PointType::Bool);
    let commands: Vec<&String> = catalog.commands.keys().collect();
    assert_eq!(commands, ["set_gain", "set_mute", "set_source"]);
    let value = &catalog.commands["set_gain"].args["value"];
    assert_eq!((value.min, value.max), (Some(-100.0), Some(20.0)));
    assert_eq!(catalog.queries.len(), 1);
    assert_eq!(catalog.queries[0].name, STATUS_QUERY);
    assert_eq!(catalog.queries[0].every, Some(Duration::from_secs(30)));
    let reserved = json!({"controls": {"core_state": {"control": "X", "type": "string"}}});
    let error = super::catalog(&DriverSettings::with_options(
        reserved.as_object().unwrap().clone(),
    ))
    .unwrap_err();
    assert!(
        error.message.contains("cannot name a point"),
        "{}",
        error.message
    );
}

#[test]
fn bad_options_name_their_key() {
    let wrong_type = json!({"controls": {"gain": {"control": "G", "type": "fader"}}});
    let error = catalog(&DriverSettings::with_options(
        wrong_type.as_object().unwrap().clone(),
    ))
    .unwrap_err();
    assert_eq!(
        error.at,
        [
            PathKey::Key("controls".into()),
            PathKey::Key("gain".into()),
            PathKey::Key("type".into())
        ]
    );
    let error = catalog(&settings(json!({"keepalive": "90s"}), None)).unwrap_err();
    assert_eq!(error.at, [PathKey::Key("keepalive".into())]);
    assert!(error.message.contains("60s"), "{}", error.message);
    let twice = json!({"controls": {
        "a": {"control": "G", "type": "number"},
        "b": {"control": "G", "type": "number"}}});
    let error = catalog(&DriverSettings::with_options(
        twice.as_object().unwrap().clone(),
    ))
    .unwrap_err();
    assert_eq!(error.at[1], PathKey::Key("b".into()));
    let range = json!({"controls": {"m": {"control": "M", "type": "bool", "min": 0}}});
    let error = catalog(&DriverSettings::with_options(
        range.as_object().unwrap().clone(),
    ))
    .unwrap_err();
    assert!(error.message.contains("`number` controls only"));
    let none = json!({"controls": {}});
    assert!(
        catalog(&DriverSettings::with_options(
            none.as_object().unwrap().clone()
        ))
        .is_err()
    );
}

#[test]
fn connects_with_one_auto_polled_change_group_and_reports_every_control() {
    let mut pair = pair(None, None);
    let outputs = pair.connect();
    assert!(outputs.contains(&Output::Ready), "{outputs:?}");
    let methods: Vec<Value> = sent(&pair).iter().map(|m| m["method"].clone()).collect();
    assert_eq!(
        methods,
        [
            "ChangeGroup.AddControl",
            "ChangeGroup.AddComponentControl",
            "ChangeGroup.AutoPoll"
        ]
    );
    assert_eq!(
        sent(&pair)[2]["params"],
        json!({"Id": "avgate", "Rate": 0.2})
    );
    let mut reported = updates(&outputs);
    reported.sort_by(|a, b| a.0.cmp(&b.0));
    assert_eq!(
        reported,
        [
            ("core_state".to_string(), json!("Active")),
            ("gain".to_string(), json!(0.0)),
            ("level".to_string(), json!(0.0)),
            ("mute".to_string(), json!(false)),
            ("source".to_string(), json!("")),
        ]
    );
}

#[test]
fn sets_are_answered_by_id_and_come_back_through_the_group() {
    let mut pair = pair(None, None);
    pair.connect();
    let outputs = pair.run(&set("gain", json!(-12.5))).unwrap();
    assert!(outputs.contains(&Output::Completed(Ok(()))), "{outputs:?}");
    assert_eq!(updates(&outputs), [("gain".to_string(), json!(-12.5))]);
    assert_eq!(pair.model.value(None, "MainGain"), Some(&json!(-12.5)));

    let outputs = pair.run(&set("mute", json!(true))).unwrap();
    assert_eq!(updates(&outputs), [("mute".to_string(), json!(true))]);
    assert_eq!(
        sent(&pair).last().unwrap()["params"],
        json!({"Name": "MainMute", "Value": 1})
    );

    let outputs = pair.run(&set("source", json!("Laptop"))).unwrap();
    assert_eq!(updates(&outputs), [("source".to_string(), json!("Laptop"))]);
    assert_eq!(
        sent(&pair).last().unwrap()["params"],
        json!({"Name": "Lobby", "Controls": [{"Name": "source.name", "Value": "Laptop"}]})
    );
}

#[test]
fn the_status_query_reads_the_engine_state() {
    let mut pair = pair(None, None);
    let outputs = pair.connect();
    // The greeting's EngineStatus already says it.
    assert!(updates(&outputs).contains(&("core_state".to_string(), json!("Active"))));
    let outputs = pair
        .run(&Request::Poll {
            query: STATUS_QUERY.into(),
        })
        .unwrap();
    assert_eq!(
        outputs,
        [
            Output::Update {
                point: "core_state".into(),
                value: json!("Active")
            },
            Output::Completed(Ok(()))
        ]
    );
    assert_eq!(sent(&pair).last().unwrap()["method"], "StatusGet");
    let standby = frame::notification("EngineStatus", json!({"State": "Standby"}));
    assert_eq!(
        updates(&pair.device_says(&standby)),
        [("core_state".to_string(), json!("Standby"))]
    );
    let odd = frame::notification("EngineStatus", json!({"State": "Dancing"}));
    assert!(updates(&pair.device_says(&odd)).is_empty());
}

#[test]
fn a_front_panel_change_arrives_unasked() {
    let mut pair = pair(None, None);
    pair.connect();
    let push = pair.model.front_panel(None, "MainGain", json!(-30));
    let outputs = pair.device_says(&push);
    assert_eq!(updates(&outputs), [("gain".to_string(), json!(-30.0))]);
    // A push for another client's group is not ours.
    let other = frame::notification(
        "ChangeGroup.Poll",
        json!({"Id": "theirs", "Changes": [{"Name": "MainGain", "Value": 5}]}),
    );
    assert!(updates(&pair.device_says(&other)).is_empty());
}

#[test]
fn bad_sets_fail_before_the_wire_and_core_errors_map_to_kinds() {
    let mut pair = pair(None, None);
    pair.connect();
    let before = pair.wire.len();
    let error = pair.run(&set("gain", json!(50))).unwrap_err();
    assert_eq!(error.kind, DeviceErrorKind::InvalidArgs);
    assert!(error.message.contains("-100..=20"), "{}", error.message);
    assert_eq!(
        pair.run(&set("level", json!(1))).unwrap_err().kind,
        DeviceErrorKind::Unsupported
    );
    assert_eq!(
        pair.run(&set("mute", json!(1))).unwrap_err().kind,
        DeviceErrorKind::InvalidArgs
    );
    assert_eq!(pair.wire.len(), before);
    // The design lost the control: the Core's error 8 reaches the panel as invalid args.
    pair.model.controls.remove(&(None, "MainGain".to_string()));
    let outputs = pair.run(&set("gain", json!(1))).unwrap();
    let Some(Output::Completed(Err(error))) = outputs.last() else {
        panic!("{outputs:?}");
    };
    assert_eq!(error.kind, DeviceErrorKind::InvalidArgs);
    assert!(error.message.contains("error 8"), "{}", error.message);
}

#[test]
fn logs_on_and_never_shows_the_password() {
    let mut pair = pair(Some("s3cret"), Some("s3cret"));
    assert!(pair.connect().contains(&Output::Ready));
    let logon = &pair.wire[1];
    assert!(logon.0);
    assert!(String::from_utf8_lossy(&logon.1).contains("s3cret"));
    let shown = pair.session.redact(&logon.1);
    let shown = String::from_utf8_lossy(&shown);
    assert!(
        !shown.contains("s3cret") && shown.contains("***") && shown.ends_with('\0'),
        "{shown}"
    );
    let other = frame::request(1, "Control.Get", json!(["s3cret"]));
    assert_eq!(&*pair.session.redact(&other), &other[..]);

    let mut wrong = super::tests::pair(Some("guess"), Some("s3cret"));
    let outputs = wrong.connect();
    assert!(
        matches!(
            outputs.last(),
            Some(Output::Fatal(SessionError::AuthFailed(_)))
        ),
        "{outputs:?}"
    );
    // Without a logon a protected Core refuses the change group: error 10, and what to do.
    let mut none = super::tests::pair(None, Some("s3cret"));
    let outputs = none.connect();
    let Some(Output::Fatal(SessionError::AuthFailed(why))) = outputs.last() else {
        panic!("{outputs:?}");
    };
    assert!(
        why.contains("error 10") && why.contains("`password`"),
        "{why}"
    );
    // A design without a control the profile names: the Core's error 8, and where to look.
    let mut lacking = super::tests::pair(None, None);
    lacking
        .model
        .controls
        .remove(&(None, "MainMute".to_string()));
    let outputs = lacking.connect();
    let Some(Output::Fatal(SessionError::Protocol(why))) = outputs.last() else {
        panic!("{outputs:?}");
    };
    assert!(
        why.contains("error 8")
            && why.contains("MainMute")
            && why.contains("ChangeGroup.AddControl"),
        "{why}"
    );
}

#[test]
fn keeps_the_socket_alive_while_quiet() {
    let mut pair = pair(None, None);
    pair.connect();
    pair.advance(Duration::from_secs(29));
    assert_eq!(pair.model.noops, 0);
    pair.advance(Duration::from_secs(1));
    assert_eq!(pair.model.noops, 1);
    // A set is traffic too: the next NoOp is 30 s after it.
    pair.advance(Duration::from_secs(10));
    pair.run(&set("gain", json!(1))).unwrap();
    pair.advance(Duration::from_secs(29));
    assert_eq!(pair.model.noops, 1);
    pair.advance(Duration::from_secs(1));
    assert_eq!(pair.model.noops, 2);
}

/// JSON-RPC errors of the simulated Core, as a real Core answers them.
#[test]
fn the_simulated_core_is_strict() {
    let mut model = Model::from_options(
        &Options::from_settings(&settings(json!({}), None)).unwrap(),
        None,
    );
    let mut connection = Default::default();
    let mut ask = |bytes: &[u8]| -> Value {
        let reply = model.received(&mut connection, std::time::Instant::now(), bytes);
        serde_json::from_slice(&reply[..reply.len() - 1]).unwrap()
    };
    assert_eq!(ask(b"{oops\0")["error"]["code"], -32700);
    assert_eq!(ask(b"{oops\0")["id"], Value::Null);
    assert_eq!(ask(b"[]\0")["error"]["code"], -32600);
    let call = |id: u64, method: &str, params: Value| frame::request(id, method, params);
    let reply = ask(&call(1, "Mixer.Frobnicate", json!({})));
    assert_eq!(
        (reply["id"].clone(), reply["error"]["code"].clone()),
        (json!(1), json!(-32601))
    );
    assert_eq!(
        ask(&call(2, "Control.Get", json!(["Nope"])))["error"]["code"],
        8
    );
    assert_eq!(
        ask(&call(3, "Control.Set", json!({"Value": 1})))["error"]["code"],
        -32602
    );
    assert_eq!(
        ask(&call(
            4,
            "Component.Get",
            json!({"Name": "Nope", "Controls": []})
        ))["error"]["code"],
        7
    );
    assert_eq!(
        ask(&call(
            5,
            "ChangeGroup.AutoPoll",
            json!({"Id": "x", "Rate": 1})
        ))["error"]["code"],
        6
    );
    let reply = ask(&call(6, "Control.Get", json!(["MainGain"])));
    assert_eq!(reply["result"][0]["Name"], "MainGain");
    assert_eq!(reply["result"][0]["Value"], 0.0);
    let reply = ask(&call(
        7,
        "Component.Get",
        json!({"Name": "Lobby", "Controls": [{"Name": "level"}]}),
    ));
    assert_eq!(reply["result"]["Controls"][0]["Name"], "level");
    let reply = ask(&call(8, "Component.GetComponents", Value::Null));
    assert_eq!(reply["result"][0]["Name"], "Lobby");
    // A clamped set: a Core keeps a value inside the control's range.
    ask(&call(
        9,
        "Control.Set",
        json!({"Name": "MainGain", "Value": 99}),
    ));
    assert_eq!(
        ask(&call(10, "Control.Get", json!(["MainGain"])))["result"][0]["Value"],
        20.0
    );
}

/// Arbitrary bytes into the receive path: no panic, a bounded buffer, and the next whole
/// message after a NUL is still read.
#[test]
fn fuzz_receive_path_resyncs_at_the_next_nul() {
    let mut rng = fuzz::rng();
    let push = frame::notification(
        "ChangeGroup.Poll",
        json!({"Id": "avgate", "Changes": [{"Name": "MainGain", "Value": -7}]}),
    );
    for case in 0..fuzz::cases(300) {
        let mut pair = pair(None, None);
        pair.connect();
        let mut input = fuzz::garbage(&mut rng, b"\0{}[]\":,Id", 512);
        input.push(0);
        input.extend_from_slice(&push);
        let mut seen = false;
        for chunk in fuzz::chunks(&mut rng, &input) {
            let outputs = pair.device_says(chunk);
            seen |= updates(&outputs).contains(&("gain".to_string(), json!(-7.0)));
            assert!(
                pair.session.buffered() <= frame::MAX_MESSAGE + 1,
                "case {case}"
            );
            assert!(
                !outputs.iter().any(|o| matches!(o, Output::Fatal(_))),
                "case {case}: {outputs:?}"
            );
        }
        assert!(seen, "case {case}: no resync on {input:?}");
    }
    // A stream that never sends a NUL costs at most one message's worth of memory.
    let mut pair = pair(None, None);
    pair.connect();
    for _ in 0..300 {
        pair.device_says(&[b'x'; 4096]);
        assert!(pair.session.buffered() <= frame::MAX_MESSAGE + 1);
    }
    let outputs = pair.device_says(&[b"\0".as_slice(), &push].concat());
    assert_eq!(updates(&outputs), [("gain".to_string(), json!(-7.0))]);
}

/// Arbitrary bytes into the simulated Core: no panic, and the request after the next NUL
/// is answered by its `id`.
#[test]
fn fuzz_the_simulated_core_answers_after_garbage() {
    let mut rng = fuzz::rng();
    let options = Options::from_settings(&settings(json!({}), None)).unwrap();
    let question = frame::request(4242, "Control.Get", json!(["MainGain"]));
    for case in 0..fuzz::cases(300) {
        let mut model = Model::from_options(&options, None);
        let mut connection = Default::default();
        let mut input = fuzz::garbage(&mut rng, b"\0{}[]\":,jsonrpc2.0", 512);
        input.push(0);
        input.extend_from_slice(&question);
        let mut answers = Vec::new();
        for chunk in fuzz::chunks(&mut rng, &input) {
            answers.extend(model.received(&mut connection, std::time::Instant::now(), chunk));
        }
        let last = answers[..answers.len() - 1]
            .rsplit(|b| *b == 0)
            .next()
            .unwrap();
        let reply: Value =
            serde_json::from_slice(last).unwrap_or_else(|e| panic!("case {case}: {e}: {input:?}"));
        assert_eq!(reply["id"], 4242, "case {case}: {reply}");
        assert_eq!(reply["result"][0]["Name"], "MainGain", "case {case}");
    }
}
