//! The simulated device of a scripted profile, generated from the same definition: a
//! state table of point values that answers each query from the table and applies each
//! command to it, speaking the profile's framing.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Instant;

use serde_json::Value;

use super::definition::{CompiledExchange, Script};
use super::eval;
use super::template::Vars;
use crate::kit::telnet::{TESIRA_NEGOTIATION, Telnet};
use crate::kit::{DeviceModel, Framer};

pub struct Model {
    script: Arc<Script>,
    /// Every point's current value, by concrete name (`route.2`).
    pub state: BTreeMap<String, Value>,
    /// Requests answered with the `unknown` reply (or nothing).
    pub not_understood: usize,
}

#[derive(Default)]
pub struct Connection {
    framer: Option<Framer>,
    telnet: Telnet,
}

impl Model {
    pub fn new(script: Arc<Script>) -> Model {
        let state = script.definition.simulator.initial.clone();
        Model {
            script,
            state,
            not_understood: 0,
        }
    }

    fn seal(&self, framer: &Framer, content: Vec<u8>) -> Vec<u8> {
        framer.seal(&content, &self.script.reply_end())
    }

    /// The reply frames to one request frame (unsealed), and the state change it makes.
    fn answer(&mut self, frame: &[u8]) -> Vec<Vec<u8>> {
        let script = Arc::clone(&self.script);
        let maps = &script.definition.maps;
        for (send, expect) in &script.handshake {
            if send
                .as_ref()
                .is_some_and(|s| s.capture(frame, maps).is_some())
            {
                return expect
                    .render(&Vars::new(), maps, script.length_width, &|_| None)
                    .into_iter()
                    .collect();
            }
        }
        let exchanges = script.commands.values().map(|e| (true, e));
        let queries = script.queries.values().map(|e| (false, e));
        for (is_command, exchange) in exchanges.chain(queries) {
            let Some(vars) = exchange.send.capture(frame, maps) else {
                continue;
            };
            if is_command {
                for (point, value) in eval::apply(&script, &exchange.set, &vars)
                    .into_iter()
                    .flatten()
                {
                    self.state.insert(point, value);
                }
            }
            let mut frames = Vec::new();
            if let Some(first) = &exchange.reply_first
                && let Ok(bytes) = first.render(&vars, maps, script.length_width, &|_| None)
            {
                frames.push(bytes);
            }
            frames.extend(self.reply(exchange, &vars));
            return frames;
        }
        self.not_understood += 1;
        script
            .unknown
            .iter()
            .filter_map(|u| {
                u.render(&Vars::new(), maps, script.length_width, &|_| None)
                    .ok()
            })
            .collect()
    }

    fn reply(&self, exchange: &CompiledExchange, vars: &Vars) -> Option<Vec<u8>> {
        let expect = exchange.expect.as_ref()?;
        let script = &self.script;
        let lookup = |field: &str| eval::lookup(script, &exchange.set, vars, &self.state, field);
        expect
            .render(vars, &script.definition.maps, script.length_width, &lookup)
            .ok()
    }

    /// Every report with `split` rendered from the whole state (`only`: from that one
    /// point), as a device dumps its tables; each sealed for the wire.
    fn dumps(&self, only: Option<&str>) -> Vec<u8> {
        let script = &self.script;
        let maps = &script.definition.maps;
        let mut out = Vec::new();
        for report in &script.reports {
            let Some((separator, each)) = &report.split else {
                continue;
            };
            let mut items = Vec::new();
            for setter in &report.set {
                for point in self.state.keys().filter(|p| only.is_none_or(|o| o == *p)) {
                    let Some(vars) = setter.point.capture(point.as_bytes(), maps) else {
                        continue;
                    };
                    let lookup =
                        |field: &str| eval::lookup(script, &report.set, &vars, &self.state, field);
                    if let Ok(item) = each.render(&vars, maps, script.length_width, &lookup) {
                        items.push((point_order(point), item));
                    }
                }
            }
            if items.is_empty() {
                continue;
            }
            items.sort();
            let joined: Vec<Vec<u8>> = items.into_iter().map(|(_, item)| item).collect();
            let joined = String::from_utf8_lossy(&joined.join(separator.as_bytes())).into_owned();
            let vars = Vars::from([("items".to_string(), Value::String(joined))]);
            if let Ok(bytes) = report
                .pattern
                .render(&vars, maps, script.length_width, &|_| None)
            {
                out.extend(self.seal(&script.framer(false), bytes));
            }
        }
        out
    }

    /// Sets a point as the device's front panel would, and returns the unsolicited report
    /// the device sends about it (sealed for the wire), if the profile has one.
    pub fn set_point(&mut self, point: &str, value: Value) -> Vec<u8> {
        self.state.insert(point.to_string(), value);
        let dump = self.dumps(Some(point));
        if !dump.is_empty() {
            return dump;
        }
        let script = Arc::clone(&self.script);
        let maps = &script.definition.maps;
        for report in script.reports.iter().filter(|r| r.split.is_none()) {
            for setter in &report.set {
                let Some(vars) = setter.point.capture(point.as_bytes(), maps) else {
                    continue;
                };
                let lookup =
                    |field: &str| eval::lookup(&script, &report.set, &vars, &self.state, field);
                if let Ok(bytes) = report
                    .pattern
                    .render(&vars, maps, script.length_width, &lookup)
                {
                    return self.seal(&script.framer(false), bytes);
                }
            }
        }
        Vec::new()
    }
}

impl DeviceModel for Model {
    type Connection = Connection;

    fn greeting(&mut self, connection: &mut Connection, _now: Instant) -> Vec<u8> {
        connection.framer = Some(self.script.framer(true));
        let mut hello = Vec::new();
        if self.script.definition.framing.telnet {
            hello.extend_from_slice(TESIRA_NEGOTIATION);
        }
        if let Some(greeting) = &self.script.greeting
            && let Ok(bytes) =
                greeting.render(&Vars::new(), &self.script.definition.maps, 0, &|_| None)
        {
            hello.extend(self.seal(&self.script.framer(false), bytes));
            hello.extend(self.dumps(None));
            if let Some(end) = &self.script.greeting_end
                && let Ok(bytes) =
                    end.render(&Vars::new(), &self.script.definition.maps, 0, &|_| None)
            {
                hello.extend(self.seal(&self.script.framer(false), bytes));
            }
        }
        hello
    }

    fn received(&mut self, connection: &mut Connection, _now: Instant, data: &[u8]) -> Vec<u8> {
        let data = if self.script.definition.framing.telnet {
            connection.telnet.filter(data).0
        } else {
            data.to_vec()
        };
        let framer = connection
            .framer
            .get_or_insert_with(|| self.script.framer(true));
        framer.push(&data);
        let mut frames = Vec::new();
        while let Some(frame) = framer.next_frame() {
            // A frame the device cannot read is dropped, as a real one would.
            if let Ok(frame) = frame {
                frames.push(frame);
            }
        }
        let reply_framer = self.script.framer(false);
        let mut out = Vec::new();
        for frame in frames {
            for reply in self.answer(&frame) {
                out.extend(self.seal(&reply_framer, reply));
            }
        }
        out
    }
}

/// Sorts `route.10` after `route.9`: by name with each number compared as a number.
fn point_order(point: &str) -> (String, u64) {
    match point.rsplit_once('.') {
        Some((base, n)) => (base.to_string(), n.parse().unwrap_or(u64::MAX)),
        None => (point.to_string(), 0),
    }
}
