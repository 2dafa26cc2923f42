//! A device's command queue: bounded, first come first served, with set-style commands
//! conflated.
//!
//! A set-style command (the profile's `target`, see [`CommandSpec::target`]) waiting in the
//! queue is replaced by a newer one with the same conflation key (same command, same
//! arguments given, same values of the target arguments). The replaced one is answered
//! `superseded` at once, naming the newer one, so a slider dragged from many panels costs
//! the device one command per turn whatever the drag rate, and never fills the queue.
//!
//! "Newer" is the order the router accepted the commands in ([`Ticket`]), not the order
//! they reach the queue: the router queues each command from its own task, so two
//! commands a panel sent in order can arrive here the other way round. An older command
//! that arrives after a newer one for the same target (queued or already started) is
//! superseded on arrival, so the device always ends on the last value sent.
//!
//! [`CommandSpec::target`]: crate::config::CommandSpec::target

use std::collections::{HashMap, VecDeque};
use std::sync::Mutex;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::time::Duration;

use avgate_drivers::{Map, Value};
use tokio::sync::oneshot;

use crate::command::{ErrorCode, Failure, Outcome};

/// A command's place in the order the router accepted it, from [`DeviceHandle::ticket`](super::DeviceHandle::ticket).
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub struct Ticket(u64);

/// Conflation keys remembered for telling late arrivals from newer commands. A profile's
/// targets are few (outputs, points); past this many the oldest knowledge is dropped,
/// which only lets a very late stale command through, as before conflation existed.
const MAX_TARGETS: usize = 4096;

/// A command on its way to a device, with the way back for its outcome.
pub struct Job {
    pub command: String,
    pub args: Map<String, Value>,
    pub(super) reply: Reply,
    /// The panel's command id, to name this command when it replaces another.
    pub id: String,
    pub ticket: Ticket,
    /// Set-style commands only: what must match for a newer command to replace this one.
    pub key: Option<String>,
}

/// How a queued command ended.
#[derive(Debug)]
pub struct Answered {
    pub outcome: Outcome,
    /// How long the device had it: from the request handed to its driver to the answer
    /// that completed it (zero if it never reached the device). The rest of a command's
    /// time is the gateway's own.
    pub device_time: Duration,
}

/// Where a command's outcome goes, called exactly once: by the link task when the device
/// answers (so the router settles it there, with no task in between), at once when the
/// command is refused, and with `shutting_down` if the command is dropped unanswered.
pub struct Reply(Option<Box<dyn FnOnce(Answered) + Send>>);

impl Reply {
    pub fn new(deliver: impl FnOnce(Answered) + Send + 'static) -> Reply {
        Reply(Some(Box::new(deliver)))
    }

    /// A reply to wait for.
    pub fn channel() -> (Reply, oneshot::Receiver<Answered>) {
        let (tx, rx) = oneshot::channel();
        (
            Reply::new(move |answered| {
                // The waiter may have gone; the outcome has nowhere else to go.
                let _ = tx.send(answered);
            }),
            rx,
        )
    }

    fn send(mut self, answered: Answered) {
        if let Some(deliver) = self.0.take() {
            deliver(answered);
        }
    }
}

impl Drop for Reply {
    fn drop(&mut self) {
        if let Some(deliver) = self.0.take() {
            deliver(Answered {
                outcome: Err(Failure::new(
                    ErrorCode::ShuttingDown,
                    "the gateway stopped before the command finished",
                )),
                device_time: Duration::ZERO,
            });
        }
    }
}

impl Job {
    /// Tells whoever waits how the command ended.
    pub fn answer(self, outcome: Outcome, device_time: Duration) {
        self.reply.send(Answered {
            outcome,
            device_time,
        });
    }

    /// Ends the command before the device had it.
    pub fn refuse(self, failure: Failure) {
        self.answer(Err(failure), Duration::ZERO);
    }
}

pub(super) struct CommandQueue {
    /// Commands waiting at most (`[commands] queue`); a reload may change it.
    capacity: AtomicUsize,
    next_ticket: AtomicU64,
    /// Held for a few operations on a short deque; never across an await.
    state: Mutex<State>,
}

#[derive(Default)]
struct State {
    jobs: VecDeque<Job>,
    closed: bool,
    /// The newest ticket (and its command id) seen for each conflation key.
    newest: HashMap<String, (Ticket, String)>,
}

/// Why a job was not queued (the job comes back with it, for the caller to answer).
#[derive(Debug)]
pub(super) enum Refused {
    Full,
    Closed,
}

impl CommandQueue {
    pub fn new(capacity: usize) -> CommandQueue {
        CommandQueue {
            capacity: AtomicUsize::new(capacity),
            next_ticket: AtomicU64::new(0),
            state: Mutex::new(State::default()),
        }
    }

    /// Refuses new commands past `capacity` from now on; commands already waiting stay.
    pub fn set_capacity(&self, capacity: usize) {
        self.capacity.store(capacity, Ordering::Relaxed);
    }

    fn capacity(&self) -> usize {
        self.capacity.load(Ordering::Relaxed)
    }

    pub fn ticket(&self) -> Ticket {
        Ticket(self.next_ticket.fetch_add(1, Ordering::Relaxed))
    }

    /// Queues `job`, replacing a waiting older command with the same conflation key (or
    /// answering `job` itself `superseded` when a newer one was already seen).
    pub fn push(&self, job: Job) -> Result<(), (Refused, Box<Job>)> {
        let mut state = self.lock();
        if state.closed {
            return Err((Refused::Closed, Box::new(job)));
        }
        let Some(key) = job.key.clone() else {
            if state.jobs.len() >= self.capacity() {
                return Err((Refused::Full, Box::new(job)));
            }
            state.jobs.push_back(job);
            return Ok(());
        };
        if let Some((newest, id)) = state.newest.get(&key)
            && *newest > job.ticket
        {
            let failure = superseded(&job.command, id);
            // Answered outside the lock: a reply runs the router's bookkeeping.
            drop(state);
            job.refuse(failure);
            return Ok(());
        }
        let replaced = state
            .jobs
            .iter()
            .position(|queued| queued.key.as_ref() == Some(&key))
            .and_then(|at| state.jobs.remove(at));
        if replaced.is_none() && state.jobs.len() >= self.capacity() {
            return Err((Refused::Full, Box::new(job)));
        }
        if state.newest.len() >= MAX_TARGETS && !state.newest.contains_key(&key) {
            state.newest.clear();
        }
        state.newest.insert(key, (job.ticket, job.id.clone()));
        let failure = replaced.as_ref().map(|_| superseded(&job.command, &job.id));
        state.jobs.push_back(job);
        drop(state);
        if let (Some(old), Some(failure)) = (replaced, failure) {
            old.refuse(failure);
        }
        Ok(())
    }

    /// The command that has waited longest.
    pub fn pop(&self) -> Option<Job> {
        self.lock().jobs.pop_front()
    }

    pub fn is_empty(&self) -> bool {
        self.lock().jobs.is_empty()
    }

    /// Commands waiting now.
    pub fn len(&self) -> usize {
        self.lock().jobs.len()
    }

    /// Refuses every later command and hands back the waiting ones.
    pub fn close(&self) -> Vec<Job> {
        let mut state = self.lock();
        state.closed = true;
        state.jobs.drain(..).collect()
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, State> {
        // A panic elsewhere while holding it left a deque, still usable.
        self.state.lock().unwrap_or_else(|e| e.into_inner())
    }
}

fn superseded(command: &str, newer: &str) -> Failure {
    Failure::new(
        ErrorCode::Superseded,
        format!(
            "replaced by the newer `{command}` command `{newer}` for the same target before it started"
        ),
    )
}

/// What must match for one command to replace another: the command, the arguments given,
/// and the values of the `target` arguments.
pub(super) fn conflation_key(
    command: &str,
    args: &Map<String, Value>,
    target: &[String],
) -> String {
    let given: Vec<&str> = args
        .iter()
        .filter(|(_, value)| !value.is_null())
        .map(|(name, _)| name.as_str())
        .collect();
    let targets: Vec<Option<&Value>> = target.iter().map(|arg| args.get(arg)).collect();
    serde_json::to_string(&(command, given, targets)).expect("JSON values serialize")
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    struct Sent {
        outcome: oneshot::Receiver<Answered>,
    }

    impl Sent {
        fn result(&mut self) -> Option<Outcome> {
            self.outcome.try_recv().ok().map(|a| a.outcome)
        }
    }

    fn job(queue: &CommandQueue, id: &str, command: &str, args: Value) -> (Job, Sent) {
        let args = args.as_object().cloned().unwrap();
        let target = ["output".to_string()];
        let key = (command == "volume").then(|| conflation_key(command, &args, &target));
        let (reply, outcome) = Reply::channel();
        let job = Job {
            command: command.into(),
            args,
            reply,
            id: id.into(),
            ticket: queue.ticket(),
            key,
        };
        (job, Sent { outcome })
    }

    fn push(queue: &CommandQueue, id: &str, command: &str, args: Value) -> Sent {
        let (job, sent) = job(queue, id, command, args);
        assert!(queue.push(job).is_ok(), "{id} queued");
        sent
    }

    fn ids(queue: &CommandQueue) -> Vec<String> {
        std::iter::from_fn(|| queue.pop()).map(|j| j.id).collect()
    }

    #[test]
    fn a_changed_capacity_judges_the_next_command_and_keeps_the_queued_ones() {
        let queue = CommandQueue::new(4);
        let _held: Vec<Sent> = (0..3)
            .map(|i| push(&queue, &format!("c{i}"), "power", json!({"on": true})))
            .collect();
        queue.set_capacity(2);
        let (over, _) = job(&queue, "c3", "power", json!({"on": true}));
        assert!(matches!(queue.push(over), Err((Refused::Full, _))));
        assert_eq!(ids(&queue), ["c0", "c1", "c2"], "the queued ones stay");
        queue.set_capacity(1);
        let _one = push(&queue, "c4", "power", json!({"on": false}));
        let (two, _) = job(&queue, "c5", "power", json!({"on": true}));
        assert!(matches!(queue.push(two), Err((Refused::Full, _))));
    }

    #[test]
    fn a_newer_value_for_the_same_target_replaces_the_waiting_one() {
        let queue = CommandQueue::new(8);
        let mut first = push(&queue, "v1", "volume", json!({"output": 1, "level": 10}));
        let _other_output = push(&queue, "v2", "volume", json!({"output": 2, "level": 10}));
        let _mute = push(&queue, "m1", "mute", json!({"output": 1, "audio": true}));
        let _newer = push(&queue, "v3", "volume", json!({"output": 1, "level": 30}));
        let failure = first.result().expect("answered at once").unwrap_err();
        assert_eq!(failure.code, ErrorCode::Superseded);
        assert!(failure.message.contains("`v3`"), "{failure}");
        // The newest value takes the place of the last one sent; the others keep theirs.
        assert_eq!(ids(&queue), ["v2", "m1", "v3"]);
    }

    #[test]
    fn different_arguments_given_are_different_targets() {
        let queue = CommandQueue::new(8);
        push(&queue, "a", "volume", json!({"level": 10}));
        push(&queue, "b", "volume", json!({"level": 20, "output": 1}));
        assert_eq!(ids(&queue), ["a", "b"]);
    }

    #[test]
    fn a_stale_command_arriving_late_is_superseded_on_arrival() {
        let queue = CommandQueue::new(8);
        let (older, mut older_sent) = job(&queue, "v1", "volume", json!({"output": 1, "level": 1}));
        let (newer, _) = job(&queue, "v2", "volume", json!({"output": 1, "level": 2}));
        assert!(queue.push(newer).is_ok());
        // The newer one has even started already.
        assert_eq!(queue.pop().map(|j| j.id), Some("v2".into()));
        assert!(queue.push(older).is_ok());
        let failure = older_sent.result().expect("answered at once").unwrap_err();
        assert_eq!(failure.code, ErrorCode::Superseded);
        assert!(failure.message.contains("`v2`"), "{failure}");
        assert!(queue.is_empty(), "the stale value never runs");
    }

    #[test]
    fn conflation_never_fills_the_queue_but_other_commands_do() {
        let queue = CommandQueue::new(2);
        for i in 0..100 {
            push(
                &queue,
                &format!("v{i}"),
                "volume",
                json!({"output": 1, "level": i}),
            );
        }
        push(&queue, "p1", "power", json!({"on": true}));
        let (extra, _) = job(&queue, "p2", "power", json!({"on": false}));
        assert!(matches!(queue.push(extra), Err((Refused::Full, _))));
        assert_eq!(ids(&queue), ["v99", "p1"]);
    }

    #[test]
    fn a_closed_queue_refuses_and_hands_back_what_waited() {
        let queue = CommandQueue::new(2);
        push(&queue, "p1", "power", json!({"on": true}));
        let waiting = queue.close();
        assert_eq!(waiting.len(), 1);
        let (late, _) = job(&queue, "p2", "power", json!({"on": true}));
        assert!(matches!(queue.push(late), Err((Refused::Closed, _))));
    }

    #[test]
    fn a_command_dropped_unanswered_is_answered_shutting_down_once() {
        let queue = CommandQueue::new(2);
        let mut first = push(&queue, "p1", "power", json!({"on": true}));
        drop(queue.close());
        let outcome = first.result().expect("answered when dropped");
        assert_eq!(outcome.unwrap_err().code, ErrorCode::ShuttingDown);

        let calls = std::sync::Arc::new(AtomicUsize::new(0));
        let counted = calls.clone();
        let reply = Reply::new(move |_| {
            counted.fetch_add(1, Ordering::Relaxed);
        });
        reply.send(Answered {
            outcome: Ok(()),
            device_time: Duration::ZERO,
        });
        assert_eq!(
            calls.load(Ordering::Relaxed),
            1,
            "answered, then not again on drop"
        );
    }
}
