//! The engine on a paused clock, over a journal whose points the tests set by hand.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Duration;

use serde_json::{Value, json};

use super::*;
use crate::auth::Scopes;
use crate::config::macros::Step;

fn journal() -> Arc<Journal> {
    Arc::new(Journal::in_memory(1000, ["proj".to_string()]))
}

fn router(journal: &Arc<Journal>, macros: Vec<Macro>) -> Arc<Router> {
    let book: BTreeMap<String, Arc<Macro>> = macros
        .into_iter()
        .map(|m| (m.name.clone(), Arc::new(m)))
        .collect();
    Arc::new(Router::new([], Duration::from_secs(600), journal.clone()).with_macros(book))
}

fn origin() -> Origin {
    Origin {
        session: "s1".into(),
        token: None,
        scopes: Arc::new(Scopes::everything()),
        peer: None,
        web_origin: None,
    }
}

fn key(client: &str, id: &str) -> CommandKey {
    CommandKey {
        owner: String::new(),
        client: client.into(),
        id: id.into(),
    }
}

fn step(label: &str, action: Action) -> Step {
    Step {
        label: label.into(),
        skip_if: None,
        on_error: OnFail::Fail,
        action,
        expected: None,
    }
}

fn power_is(value: &str) -> Condition {
    Condition::Compare {
        device: "proj".into(),
        point: "power".into(),
        op: Op::Eq,
        value: Value::from(value),
    }
}

fn warm_up(name: &str, group: Option<&str>, mode: RunMode, on_timeout: OnFail) -> Macro {
    Macro {
        name: name.into(),
        label: name.into(),
        group: group.map(str::to_string),
        mode,
        steps: vec![
            step(
                "Warming up projector",
                Action::WaitUntil {
                    condition: power_is("on"),
                    timeout: Duration::from_secs(60),
                    on_timeout,
                },
            ),
            step("Settling", Action::Delay(Duration::from_secs(2))),
        ],
    }
}

fn submit(router: &Arc<Router>, client: &str, id: &str, name: &str) -> Submission {
    router
        .submit_macro(&origin(), key(client, id), name)
        .unwrap_or_else(|f| panic!("{name} refused: {f}"))
}

async fn finish(submission: Submission) -> Outcome {
    match submission {
        Submission::Accepted(w) | Submission::Duplicate(w) => router::outcome(w).await,
    }
}

fn progress(journal: &Journal, name: &str) -> Value {
    journal.snapshot().devices[DEVICE].points[name].clone()
}

#[tokio::test(start_paused = true)]
async fn wait_until_ends_exactly_when_the_point_reports_the_value() {
    let journal = journal();
    journal.record("proj", "power", json!("warming"));
    let router = router(
        &journal,
        vec![warm_up("room-on", None, RunMode::Single, OnFail::Fail)],
    );
    let start = Instant::now();
    let run = tokio::spawn(finish(submit(&router, "p", "r1", "room-on")));
    tokio::time::sleep(Duration::from_secs(30)).await;
    let shown = progress(&journal, "room-on");
    assert_eq!(
        (
            &shown["state"],
            &shown["step"],
            &shown["of"],
            &shown["label"]
        ),
        (
            &json!("running"),
            &json!(1),
            &json!(2),
            &json!("Warming up projector")
        )
    );
    journal.record("proj", "power", json!("on"));
    run.await.unwrap().unwrap();
    // 30 s of warming up and the 2 s delay: the wait ended when the projector was on.
    assert_eq!(start.elapsed(), Duration::from_secs(32));
    assert_eq!(progress(&journal, "room-on")["state"], "done");
}

#[tokio::test(start_paused = true)]
async fn a_wait_that_times_out_fails_the_run_unless_told_to_continue() {
    let journal = journal();
    let router = router(
        &journal,
        vec![
            warm_up("strict", None, RunMode::Single, OnFail::Fail),
            warm_up("lenient", None, RunMode::Single, OnFail::Continue),
        ],
    );
    let start = Instant::now();
    let failure = finish(submit(&router, "p", "r1", "strict"))
        .await
        .unwrap_err();
    assert_eq!(failure.code, ErrorCode::Timeout);
    assert!(
        failure.message.contains("step 1 (Warming up projector)"),
        "{failure}"
    );
    assert_eq!(start.elapsed(), Duration::from_secs(60));
    assert_eq!(progress(&journal, "strict")["state"], "failed");

    finish(submit(&router, "p", "r2", "lenient")).await.unwrap();
    assert_eq!(start.elapsed(), Duration::from_secs(122));
}

#[tokio::test(start_paused = true)]
async fn a_run_in_the_same_group_cancels_the_running_one_and_says_who() {
    let journal = journal();
    let room_off = Macro {
        name: "room-off".into(),
        label: "Room off".into(),
        group: Some("room".into()),
        mode: RunMode::Single,
        steps: vec![step("Pause", Action::Delay(Duration::from_secs(1)))],
    };
    let router = router(
        &journal,
        vec![
            warm_up("room-on", Some("room"), RunMode::Single, OnFail::Fail),
            room_off,
        ],
    );
    let on = tokio::spawn(finish(submit(&router, "lectern", "on-1", "room-on")));
    tokio::time::sleep(Duration::from_secs(5)).await;
    let off = finish(submit(&router, "door-panel", "off-1", "room-off"));
    let (on, off) = tokio::join!(on, off);
    off.unwrap();
    let cancelled = on.unwrap().unwrap_err();
    assert_eq!(cancelled.code, ErrorCode::Cancelled);
    assert!(
        cancelled
            .message
            .contains("`room-off` (id `off-1` from client `door-panel`)"),
        "{cancelled}"
    );
    assert_eq!(progress(&journal, "room-on")["state"], "cancelled");
}

#[tokio::test(start_paused = true)]
async fn a_panel_may_not_start_a_macro_it_could_not_finish_nor_cancel_with_it() {
    let journal = journal();
    let off = Macro {
        name: "room-off".into(),
        label: "Room off".into(),
        group: Some("room".into()),
        mode: RunMode::Single,
        steps: vec![step("Outer", Action::Macro("projector-off".into()))],
    };
    let projector_off = Macro {
        name: "projector-off".into(),
        label: "Projector off".into(),
        group: None,
        mode: RunMode::Single,
        steps: vec![step(
            "Projector off",
            Action::Command {
                device: "proj".into(),
                command: "power".into(),
                args: Default::default(),
            },
        )],
    };
    let router = router(
        &journal,
        vec![
            warm_up("room-on", Some("room"), RunMode::Single, OnFail::Fail),
            off,
            projector_off,
        ],
    );
    let on = tokio::spawn(finish(submit(&router, "lectern", "on-1", "room-on")));
    tokio::task::yield_now().await;
    let viewer = Origin {
        scopes: Arc::new(Scopes::parse(["read", "control:proj/input"]).unwrap()),
        ..origin()
    };
    let refused = router
        .submit_macro(&viewer, key("guest", "off-1"), "room-off")
        .err()
        .expect("refused");
    assert_eq!(refused.code, ErrorCode::Forbidden);
    assert!(refused.message.contains("`power` to `proj`"), "{refused}");
    journal.record("proj", "power", json!("on"));
    on.await.unwrap().expect("room-on was not cancelled");
}

#[tokio::test(start_paused = true)]
async fn run_modes_refuse_restart_or_queue_a_second_run() {
    let journal = journal();
    let router = router(
        &journal,
        vec![
            warm_up("single", None, RunMode::Single, OnFail::Fail),
            warm_up("restart", None, RunMode::Restart, OnFail::Fail),
            warm_up("queued", None, RunMode::Queued, OnFail::Fail),
        ],
    );
    let first = submit(&router, "p", "s1", "single");
    let refused = router
        .submit_macro(&origin(), key("p", "s2"), "single")
        .err()
        .unwrap();
    assert_eq!(refused.code, ErrorCode::AlreadyRunning);

    let restarted = tokio::spawn(finish(submit(&router, "p", "r1", "restart")));
    tokio::task::yield_now().await;
    let again = tokio::spawn(finish(submit(&router, "p", "r2", "restart")));
    let failure = restarted.await.unwrap().unwrap_err();
    assert_eq!(failure.code, ErrorCode::Cancelled);
    assert!(
        failure.message.contains("restarted by `restart` (id `r2`"),
        "{failure}"
    );

    let start = Instant::now();
    let one = tokio::spawn(finish(submit(&router, "p", "q1", "queued")));
    tokio::task::yield_now().await;
    let two = tokio::spawn(finish(submit(&router, "p", "q2", "queued")));
    tokio::task::yield_now().await;
    assert_eq!(progress(&journal, "queued")["state"], "queued");
    journal.record("proj", "power", json!("on"));
    one.await.unwrap().unwrap();
    two.await.unwrap().unwrap();
    // The second started only after the first's 2 s delay, then took its own.
    assert_eq!(start.elapsed(), Duration::from_secs(4));
    again.await.unwrap().unwrap();
    finish(first).await.unwrap();
}

#[tokio::test(start_paused = true)]
async fn a_re_sent_run_id_never_runs_twice() {
    let journal = journal();
    journal.record("proj", "power", json!("on"));
    let router = router(
        &journal,
        vec![warm_up("room-on", None, RunMode::Queued, OnFail::Fail)],
    );
    let first = submit(&router, "p", "r1", "room-on");
    let again = submit(&router, "p", "r1", "room-on");
    assert!(matches!(first, Submission::Accepted(_)));
    assert!(matches!(again, Submission::Duplicate(_)));
    let start = Instant::now();
    finish(again).await.unwrap();
    finish(first).await.unwrap();
    assert_eq!(
        start.elapsed(),
        Duration::from_secs(2),
        "one run, not two queued"
    );
}

#[tokio::test(start_paused = true)]
async fn skip_if_skips_and_on_error_continue_goes_on_past_a_failed_command() {
    let journal = journal();
    journal.record("proj", "power", json!("on"));
    let mut skipped = step("Never", Action::Delay(Duration::from_secs(100)));
    skipped.skip_if = Some(power_is("on"));
    let mut failing = step(
        "Missing device",
        Action::Command {
            device: "gone".into(),
            command: "power".into(),
            args: Default::default(),
        },
    );
    failing.on_error = OnFail::Continue;
    let strict = Macro {
        name: "strict".into(),
        label: "strict".into(),
        group: None,
        mode: RunMode::Single,
        steps: vec![step("Missing device", failing.action.clone())],
    };
    let lenient = Macro {
        name: "lenient".into(),
        label: "lenient".into(),
        group: None,
        mode: RunMode::Single,
        steps: vec![
            skipped,
            failing,
            step("Inner", Action::Macro("strict".into())),
        ],
    };
    let router = router(&journal, vec![lenient, strict]);
    let start = Instant::now();
    let failure = finish(submit(&router, "p", "x", "lenient"))
        .await
        .unwrap_err();
    assert_eq!(
        start.elapsed(),
        Duration::ZERO,
        "the 100 s delay was skipped"
    );
    assert_eq!(failure.code, ErrorCode::UnknownDevice);
    // The nested macro's step is numbered inside the outer one's.
    assert!(
        failure
            .message
            .contains("step 3 (Inner): step 3.1 (Missing device)"),
        "{failure}"
    );
}

mod schedules {
    use super::*;
    use crate::config::parse_site;
    use crate::macros::schedule::{CLIENT, Clock, run_schedules};
    use tokio_util::sync::CancellationToken;

    fn schedule(extra: &str) -> crate::config::schedules::Schedule {
        let text = format!(
            "[macros.room-off]\nsteps = [{{ delay = \"1s\" }}]\n[[schedules]]\nmacro = \"room-off\"\nat = \"22:00\"\ntime_zone = \"Europe/Berlin\"\n{extra}"
        );
        parse_site(std::path::Path::new("site.toml"), &text)
            .unwrap()
            .schedules
            .remove(0)
    }

    fn room_off() -> Macro {
        Macro {
            name: "room-off".into(),
            label: "Room off".into(),
            group: None,
            mode: RunMode::Single,
            steps: vec![step("Pause", Action::Delay(Duration::from_secs(1)))],
        }
    }

    fn ran(journal: &Journal) -> Option<Value> {
        let snapshot = journal.snapshot();
        Some(
            snapshot
                .devices
                .get(DEVICE)?
                .points
                .get("room-off")?
                .clone(),
        )
    }

    #[tokio::test(start_paused = true)]
    async fn a_schedule_runs_its_macro_at_the_local_time_and_not_before() {
        let journal = journal();
        let router = router(&journal, vec![room_off()]);
        let stop = CancellationToken::new();
        // 21:59 in Berlin (CET): the run is due in one minute.
        let clock = Clock::starting_at("2026-11-30T20:59:00Z".parse().unwrap());
        let task = tokio::spawn(run_schedules(
            router.clone(),
            tokio::sync::watch::channel(vec![schedule("")]).1,
            clock,
            stop.clone(),
        ));
        tokio::time::sleep(Duration::from_secs(59)).await;
        assert_eq!(ran(&journal), None, "not before 22:00");
        tokio::time::sleep(Duration::from_secs(3)).await;
        let shown = ran(&journal).expect("ran at 22:00");
        assert_eq!(shown["state"], "done");
        assert_eq!(shown["run"], "room-off@2026-11-30T21:00:00Z");
        assert_eq!(shown["client"], CLIENT);
        stop.cancel();
        task.await.unwrap();
    }

    #[tokio::test(start_paused = true)]
    async fn a_run_missed_while_down_is_skipped_unless_catch_up() {
        // Started at 22:05: the 22:00 run was missed.
        let at = "2026-11-30T21:05:00Z".parse().unwrap();
        for (extra, runs) in [("", false), ("catch_up = true\n", true)] {
            let journal = journal();
            let router = router(&journal, vec![room_off()]);
            let stop = CancellationToken::new();
            let clock = Clock::starting_at(at);
            let task = tokio::spawn(run_schedules(
                router.clone(),
                tokio::sync::watch::channel(vec![schedule(extra)]).1,
                clock,
                stop.clone(),
            ));
            tokio::time::sleep(Duration::from_secs(5)).await;
            assert_eq!(ran(&journal).is_some(), runs, "{extra}");
            if runs {
                assert_eq!(
                    ran(&journal).unwrap()["run"],
                    "room-off@2026-11-30T21:00:00Z"
                );
            }
            stop.cancel();
            task.await.unwrap();
        }
    }

    fn countdown(journal: &Journal) -> Option<Value> {
        let snapshot = journal.snapshot();
        Some(
            snapshot
                .devices
                .get(schedule::DEVICE)?
                .points
                .get("room-off")?
                .clone(),
        )
    }

    fn keep_on(router: &Arc<Router>, client: &str, id: &str) -> Result<Submission, Failure> {
        let mut args = avgate_drivers::Map::new();
        args.insert("macro".into(), json!("room-off"));
        router.submit(
            &origin(),
            key(client, id),
            schedule::DEVICE,
            schedule::KEEP_ON,
            args,
        )
    }

    #[tokio::test(start_paused = true)]
    async fn a_warning_counts_down_before_the_run_and_then_it_runs() {
        let journal = journal();
        let router = router(&journal, vec![room_off()]);
        let stop = CancellationToken::new();
        // 21:50 in Berlin: the warning starts at 21:55, the run at 22:00.
        let clock = Clock::starting_at("2026-11-30T20:50:00Z".parse().unwrap());
        let task = tokio::spawn(run_schedules(
            router.clone(),
            tokio::sync::watch::channel(vec![schedule("warning = \"5m\"\n")]).1,
            clock,
            stop.clone(),
        ));
        tokio::time::sleep(Duration::from_secs(299)).await;
        assert_eq!(countdown(&journal), None, "no warning before 21:55");
        let refused = keep_on(&router, "door", "k-0")
            .err()
            .expect("nothing to keep on");
        assert_eq!(refused.code, ErrorCode::InvalidArgs, "{refused}");
        tokio::time::sleep(Duration::from_secs(2)).await;
        assert_eq!(
            countdown(&journal),
            Some(
                json!({"state": "warning", "run": "room-off@2026-11-30T21:00:00Z", "label": "Room off", "at": "2026-11-30T21:00:00Z", "seconds": 300})
            )
        );
        assert_eq!(ran(&journal), None);
        tokio::time::sleep(Duration::from_secs(303)).await;
        assert_eq!(ran(&journal).expect("ran at 22:00")["state"], "done");
        assert_eq!(countdown(&journal).unwrap()["state"], "started");
        stop.cancel();
        task.await.unwrap();
    }

    #[tokio::test(start_paused = true)]
    async fn keep_on_during_the_warning_cancels_that_run_only() {
        let journal = journal();
        let router = router(&journal, vec![room_off()]);
        let stop = CancellationToken::new();
        // 21:58 in Berlin: inside the warning already, two minutes left.
        let clock = Clock::starting_at("2026-11-30T20:58:00Z".parse().unwrap());
        let task = tokio::spawn(run_schedules(
            router.clone(),
            tokio::sync::watch::channel(vec![schedule("warning = \"5m\"\n")]).1,
            clock,
            stop.clone(),
        ));
        tokio::time::sleep(Duration::from_secs(1)).await;
        assert_eq!(countdown(&journal).unwrap()["seconds"], 120);
        let Ok(Submission::Accepted(watch)) = keep_on(&router, "door", "k-1") else {
            panic!("keep_on accepted");
        };
        assert_eq!(router::outcome(watch).await, Ok(()));
        let kept = countdown(&journal).unwrap();
        assert_eq!(kept["state"], "kept_on");
        assert_eq!(kept["by"], json!({"client": "door", "id": "k-1"}));
        // A second panel pressing "Keep on" too is fine, and the first stays named.
        assert!(keep_on(&router, "lectern", "k-2").is_ok());
        assert_eq!(countdown(&journal).unwrap()["by"]["client"], "door");

        tokio::time::sleep(Duration::from_secs(180)).await;
        assert_eq!(ran(&journal), None, "kept on: not run at 22:00");
        assert!(!router.knows(&key(CLIENT, "room-off@2026-11-30T21:00:00Z")));
        // The next day's run warns and runs as usual.
        tokio::time::sleep(Duration::from_secs(24 * 3600)).await;
        assert_eq!(
            ran(&journal).expect("ran the next day")["run"],
            "room-off@2026-12-01T21:00:00Z"
        );
        stop.cancel();
        task.await.unwrap();
    }

    #[tokio::test(start_paused = true)]
    async fn a_reload_moves_a_schedule_without_a_restart() {
        let journal = journal();
        let router = router(&journal, vec![room_off()]);
        let stop = CancellationToken::new();
        // 21:59 in Berlin; the 22:00 run is moved to 23:00 before it is due.
        let clock = Clock::starting_at("2026-11-30T20:59:00Z".parse().unwrap());
        let (reload, schedules) = tokio::sync::watch::channel(vec![schedule("")]);
        let task = tokio::spawn(run_schedules(
            router.clone(),
            schedules,
            clock,
            stop.clone(),
        ));
        tokio::time::sleep(Duration::from_secs(30)).await;
        let later = schedule("").at.with().hour(23).build().unwrap();
        let mut moved = schedule("");
        moved.at = later;
        reload.send_replace(vec![moved]);
        tokio::time::sleep(Duration::from_secs(3600)).await;
        assert_eq!(ran(&journal), None, "nothing at 22:00 any more");
        tokio::time::sleep(Duration::from_secs(60)).await;
        assert_eq!(
            ran(&journal).expect("ran at 23:00")["run"],
            "room-off@2026-11-30T22:00:00Z"
        );
        stop.cancel();
        task.await.unwrap();
    }

    #[tokio::test(start_paused = true)]
    async fn a_schedule_in_the_autumn_fold_fires_once() {
        let journal = journal();
        let router = router(&journal, vec![room_off()]);
        let stop = CancellationToken::new();
        // 01:00 CEST on the night Berlin's clocks go from 03:00 CEST back to 02:00 CET:
        // 02:30 happens twice, at 00:30Z and at 01:30Z.
        let clock = Clock::starting_at("2026-10-24T23:00:00Z".parse().unwrap());
        let mut at_half_past_two = schedule("");
        at_half_past_two.at = "02:30".parse().unwrap();
        let (_reload, schedules) = tokio::sync::watch::channel(vec![at_half_past_two]);
        let task = tokio::spawn(run_schedules(
            router.clone(),
            schedules,
            clock,
            stop.clone(),
        ));
        let first = key(CLIENT, "room-off@2026-10-25T00:30:00Z");
        let second = key(CLIENT, "room-off@2026-10-25T01:30:00Z");
        // Just after the first 02:30.
        tokio::time::sleep(Duration::from_secs(90 * 60 + 60)).await;
        assert!(router.knows(&first), "ran at the first 02:30");
        assert_eq!(ran(&journal).unwrap()["run"], first.id);
        // Just after the second: the last run is still the first one.
        tokio::time::sleep(Duration::from_secs(3600)).await;
        assert!(!router.knows(&second), "not again at the second 02:30");
        assert_eq!(ran(&journal).unwrap()["run"], first.id);
        stop.cancel();
        task.await.unwrap();
    }
}
