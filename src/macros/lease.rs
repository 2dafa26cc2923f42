//! Who has the room: the control lease.
//!
//! The panel that drives the room holds its lease; every panel sees who on the
//! pseudo-device [`DEVICE`] (points `controller` and `last_activity`, journaled like any
//! point). Under the `shared` policy (the default) every command flows and the holder is
//! the last panel that sent one; under `exclusive` a command from another panel is refused
//! with `in_use`, unless its token's `priority` is higher than the holder's or it sends
//! [`TAKE_CONTROL`] first. Either way the previous holder is told on the point
//! `taken_over`. The lease ends after `idle` without a command from the holder, on
//! [`RELEASE`], or when a `released_by` macro (room off) is done.
//!
//! A holder is a panel: its token name and `client`, as command ids are scoped. Runs the
//! gateway starts by itself (schedules) and the steps of a macro run are not panels: they
//! neither need nor move the lease.

use std::collections::HashMap;
use std::sync::{Arc, Mutex, MutexGuard, Weak};

use avgate_drivers::Map;
use serde_json::{Value, json};
use tokio::time::Instant;
use tracing::info;

use crate::command::{ErrorCode, Failure};
use crate::config::lease::{LeaseSettings, Policy};
use crate::journal::Journal;
use crate::router::CommandKey;

/// The pseudo-device the lease is journaled on, and the target of its commands.
pub const DEVICE: &str = "@room";
/// Makes the sender the holder, whoever held the room.
pub const TAKE_CONTROL: &str = "take_control";
/// Ends the sender's lease.
pub const RELEASE: &str = "release";

/// The room's lease and its settings.
pub struct Lease {
    state: Mutex<State>,
    journal: Arc<Journal>,
}

struct State {
    settings: LeaseSettings,
    /// Token name → priority.
    priorities: HashMap<String, i32>,
    holder: Option<Holder>,
    /// Whether a task is waiting to end the lease when it goes idle.
    expiry_armed: bool,
}

#[derive(Debug, Clone, PartialEq, Eq)]
struct Holder {
    owner: String,
    client: String,
    /// When it last sent a command.
    active: Instant,
}

impl Holder {
    fn of(key: &CommandKey) -> Holder {
        Holder {
            owner: key.owner.clone(),
            client: key.client.clone(),
            active: Instant::now(),
        }
    }

    fn same_panel(&self, key: &CommandKey) -> bool {
        self.owner == key.owner && self.client == key.client
    }

    /// What panels are shown: the panel's `client`, and its token's name when it differs.
    fn shown(&self) -> String {
        if self.owner.is_empty() || self.owner == self.client {
            self.client.clone()
        } else {
            format!("{} ({})", self.client, self.owner)
        }
    }
}

/// How a panel took the room from another.
#[derive(Clone, Copy)]
enum Taken {
    Priority,
    TakeControl,
}

impl Lease {
    pub fn new(journal: Arc<Journal>) -> Arc<Lease> {
        Arc::new(Lease {
            state: Mutex::new(State {
                settings: LeaseSettings::default(),
                priorities: HashMap::new(),
                holder: None,
                expiry_armed: false,
            }),
            journal,
        })
    }

    /// New settings and token priorities (start, reload); the holder keeps the room.
    pub fn configure(&self, settings: LeaseSettings, priorities: HashMap<String, i32>) {
        let mut state = self.lock();
        state.settings = settings;
        state.priorities = priorities;
    }

    fn lock(&self) -> MutexGuard<'_, State> {
        self.state.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// A panel's command (`key`) is about to drive the room: refreshes the holder's lease,
    /// or hands the room to the sender, or refuses with `in_use` (exclusive policy).
    pub fn claim(self: &Arc<Self>, key: &CommandKey) -> Result<(), Failure> {
        let mut state = self.lock();
        let priority = |owner: &str| state.priorities.get(owner).copied().unwrap_or(0);
        let taken = match &state.holder {
            None => None,
            Some(holder) if holder.same_panel(key) => None,
            Some(_) if state.settings.policy == Policy::Shared => None,
            Some(holder) if priority(&key.owner) > priority(&holder.owner) => Some(Taken::Priority),
            Some(holder) => {
                let idle_for = holder.active.elapsed();
                return Err(Failure::new(
                    ErrorCode::InUse,
                    format!(
                        "`{}` has control of the room (exclusive lease, last command {} ago); it is free after {} without a command, or take it with {{\"type\":\"command\",\"id\":...,\"device\":\"{DEVICE}\",\"command\":\"{TAKE_CONTROL}\"}} (`{}` is told)",
                        holder.shown(),
                        humantime::format_duration(std::time::Duration::from_secs(
                            idle_for.as_secs()
                        )),
                        humantime::format_duration(state.settings.idle),
                        holder.client,
                    ),
                ));
            }
        };
        self.hand_to(&mut state, key, taken);
        Ok(())
    }

    /// Handles a command on [`DEVICE`]: [`TAKE_CONTROL`] or [`RELEASE`], without args.
    pub fn command(
        self: &Arc<Self>,
        key: &CommandKey,
        command: &str,
        args: &Map<String, Value>,
    ) -> Result<(), Failure> {
        if !args.is_empty() {
            return Err(Failure::new(
                ErrorCode::InvalidArgs,
                format!("{command}: takes no args"),
            ));
        }
        let mut state = self.lock();
        match command {
            TAKE_CONTROL => {
                let taken = state
                    .holder
                    .as_ref()
                    .is_some_and(|h| !h.same_panel(key))
                    .then_some(Taken::TakeControl);
                self.hand_to(&mut state, key, taken);
                Ok(())
            }
            RELEASE => match &state.holder {
                Some(holder) if holder.same_panel(key) => {
                    self.end(&mut state, "released");
                    Ok(())
                }
                _ => Err(Failure::new(
                    ErrorCode::InvalidArgs,
                    "release: this panel does not hold the room; nothing was changed",
                )),
            },
            _ => Err(Failure::new(
                ErrorCode::UnknownCommand,
                format!(
                    "`{DEVICE}` has the commands `{TAKE_CONTROL}` (take the room, telling its holder) and `{RELEASE}` (give it up)"
                ),
            )),
        }
    }

    /// A run of macro `name` is done: a `released_by` macro ends the lease.
    pub fn macro_done(&self, name: &str) {
        let mut state = self.lock();
        if state.holder.is_some() && state.settings.released_by.iter().any(|m| m == name) {
            self.end(&mut state, &format!("macro `{name}` is done"));
        }
    }

    fn hand_to(self: &Arc<Self>, state: &mut State, key: &CommandKey, taken: Option<Taken>) {
        let before = state.holder.replace(Holder::of(key));
        let holder = state.holder.as_ref().expect("just set");
        let mut points = vec![
            ("controller".to_string(), Value::from(holder.shown())),
            ("last_activity".to_string(), Value::from(wall_now())),
        ];
        if let (Some(taken), Some(before)) = (taken, &before) {
            let how = match taken {
                Taken::Priority => "priority",
                Taken::TakeControl => TAKE_CONTROL,
            };
            info!(from = %before.shown(), by = %holder.shown(), how, "room control taken over");
            points.push((
                "taken_over".to_string(),
                json!({
                    "from": before.client,
                    "from_token": before.owner,
                    "by": holder.client,
                    "by_token": holder.owner,
                    "how": how,
                    "at": wall_now(),
                }),
            ));
        }
        self.journal.record_all(DEVICE, &points);
        if !state.expiry_armed {
            state.expiry_armed = true;
            tokio::spawn(expire_when_idle(Arc::downgrade(self)));
        }
    }

    fn end(&self, state: &mut State, why: &str) {
        if let Some(holder) = state.holder.take() {
            info!(holder = %holder.shown(), "room lease ended: {why}");
            self.journal.record_all(
                DEVICE,
                &[
                    ("controller".to_string(), Value::Null),
                    ("last_activity".to_string(), Value::Null),
                ],
            );
        }
    }
}

/// Ends the lease once its holder has been idle for the `idle` time; sleeps again when a
/// command came meanwhile. One such task runs while the room is held. It holds the lease
/// only weakly while it sleeps, so a stopping gateway drops its journal (and closes the
/// store) without waiting for it.
async fn expire_when_idle(lease: Weak<Lease>) {
    loop {
        let deadline = {
            let Some(lease) = lease.upgrade() else { return };
            let mut state = lease.lock();
            match &state.holder {
                None => {
                    state.expiry_armed = false;
                    return;
                }
                Some(holder) => holder.active + state.settings.idle,
            }
        };
        tokio::time::sleep_until(deadline).await;
        let Some(lease) = lease.upgrade() else { return };
        let mut state = lease.lock();
        let idle = state.settings.idle;
        if state
            .holder
            .as_ref()
            .is_some_and(|h| h.active.elapsed() >= idle)
        {
            let why = format!("idle for {}", humantime::format_duration(idle));
            lease.end(&mut state, &why);
            state.expiry_armed = false;
            return;
        }
    }
}

/// Wall-clock time to the second, as panels show it.
fn wall_now() -> String {
    humantime::format_rfc3339_seconds(std::time::SystemTime::now()).to_string()
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    fn key(owner: &str, client: &str) -> CommandKey {
        CommandKey {
            owner: owner.into(),
            client: client.into(),
            id: "1".into(),
        }
    }

    fn lease(policy: Policy) -> (Arc<Journal>, Arc<Lease>) {
        let journal = Arc::new(Journal::in_memory(100, Vec::<String>::new()));
        let lease = Lease::new(journal.clone());
        let settings = LeaseSettings {
            policy,
            idle: Duration::from_secs(600),
            released_by: vec!["room-off".into()],
        };
        let priorities = HashMap::from([("desk".to_string(), 10), ("lectern".to_string(), 0)]);
        lease.configure(settings, priorities);
        (journal, lease)
    }

    fn point(journal: &Journal, name: &str) -> Value {
        journal
            .snapshot()
            .devices
            .get(DEVICE)
            .and_then(|d| d.points.get(name).cloned())
            .unwrap_or(Value::Null)
    }

    #[tokio::test(start_paused = true)]
    async fn an_exclusive_lease_refuses_another_panel_with_in_use() {
        let (journal, lease) = lease(Policy::Exclusive);
        lease.claim(&key("lectern", "lectern")).unwrap();
        assert_eq!(point(&journal, "controller"), "lectern");
        assert!(point(&journal, "last_activity").is_string());
        let refused = lease.claim(&key("lectern", "door")).unwrap_err();
        assert_eq!(refused.code, ErrorCode::InUse);
        assert!(
            refused
                .message
                .starts_with("`lectern` has control of the room"),
            "{refused}"
        );
        assert!(refused.message.contains("take_control"), "{refused}");
        // The holder goes on; the indicator did not move.
        lease.claim(&key("lectern", "lectern")).unwrap();
        assert_eq!(point(&journal, "controller"), "lectern");
    }

    #[tokio::test(start_paused = true)]
    async fn a_shared_lease_lets_every_command_through_and_follows_the_last_sender() {
        let (journal, lease) = lease(Policy::Shared);
        lease.claim(&key("", "lectern")).unwrap();
        lease.claim(&key("", "door")).unwrap();
        assert_eq!(point(&journal, "controller"), "door");
        assert_eq!(point(&journal, "taken_over"), Value::Null);
    }

    #[tokio::test(start_paused = true)]
    async fn a_higher_priority_token_takes_over_and_the_holder_is_told() {
        let (journal, lease) = lease(Policy::Exclusive);
        lease.claim(&key("lectern", "lectern")).unwrap();
        lease.claim(&key("desk", "desk")).unwrap();
        assert_eq!(point(&journal, "controller"), "desk");
        let told = point(&journal, "taken_over");
        assert_eq!(
            (&told["from"], &told["by"], &told["how"]),
            (&json!("lectern"), &json!("desk"), &json!("priority"))
        );
        // Lower priority does not take it back.
        let refused = lease.claim(&key("lectern", "lectern")).unwrap_err();
        assert_eq!(refused.code, ErrorCode::InUse);
    }

    #[tokio::test(start_paused = true)]
    async fn take_control_hands_over_and_tells_the_previous_holder() {
        let (journal, lease) = lease(Policy::Exclusive);
        lease.claim(&key("desk", "desk")).unwrap();
        lease
            .command(&key("lectern", "lectern"), TAKE_CONTROL, &Map::new())
            .unwrap();
        assert_eq!(point(&journal, "controller"), "lectern");
        let told = point(&journal, "taken_over");
        assert_eq!(
            (&told["from"], &told["by"], &told["how"]),
            (&json!("desk"), &json!("lectern"), &json!("take_control"))
        );
        assert_eq!(
            lease.claim(&key("desk", "desk")).map_err(|f| f.code),
            Ok(()),
            "higher priority takes it back"
        );
    }

    #[tokio::test(start_paused = true)]
    async fn the_lease_ends_after_the_idle_time_and_not_before() {
        let (journal, lease) = lease(Policy::Exclusive);
        lease.claim(&key("lectern", "lectern")).unwrap();
        tokio::time::sleep(Duration::from_secs(300)).await;
        // A command halfway through restarts the idle time.
        lease.claim(&key("lectern", "lectern")).unwrap();
        tokio::time::sleep(Duration::from_secs(599)).await;
        assert_eq!(point(&journal, "controller"), "lectern");
        assert!(lease.claim(&key("lectern", "door")).is_err());
        tokio::time::sleep(Duration::from_secs(2)).await;
        assert_eq!(point(&journal, "controller"), Value::Null);
        assert_eq!(point(&journal, "last_activity"), Value::Null);
        lease.claim(&key("lectern", "door")).unwrap();
        assert_eq!(point(&journal, "controller"), "door (lectern)");
    }

    #[tokio::test(start_paused = true)]
    async fn room_off_and_release_end_the_lease() {
        let (journal, lease) = lease(Policy::Exclusive);
        lease.claim(&key("", "lectern")).unwrap();
        lease.macro_done("room-on");
        assert_eq!(point(&journal, "controller"), "lectern");
        lease.macro_done("room-off");
        assert_eq!(point(&journal, "controller"), Value::Null);

        lease.claim(&key("", "lectern")).unwrap();
        let refused = lease.command(&key("", "door"), RELEASE, &Map::new());
        assert_eq!(refused.map_err(|f| f.code), Err(ErrorCode::InvalidArgs));
        lease
            .command(&key("", "lectern"), RELEASE, &Map::new())
            .unwrap();
        assert_eq!(point(&journal, "controller"), Value::Null);
    }
}
