//! The read planner: which requests read a poll group, and which point sits where in the
//! answers.
//!
//! Modbus links are slow (9600 baud RTU moves about 900 bytes a second) and most devices
//! take one request at a time, so the number of requests per poll is what matters. Points
//! of one table are read together when they touch or are at most `max_gap` addresses apart,
//! as long as a read stays within the table's limit (`max_registers_per_read`, 125 at
//! most, or `max_bits_per_read`, 2000 at most). Points are never split across reads.
//!
//! Sorting the points by address and extending the current read while the next point
//! fits gives the fewest reads: any plan must start a new read where this one does.

use std::fmt;

use serde_json::Value;

use super::codec::{self, CodecError, Data};
use super::map::{Point, RegisterMap, Table};

/// One read request: function 1, 2, 3 or 4 by table.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Read {
    pub table: Table,
    /// First address (0-based PDU address).
    pub start: u16,
    /// Bits for coils and discrete inputs, registers otherwise.
    pub count: u16,
}

impl Read {
    pub fn function_code(&self) -> u8 {
        self.table.read_function()
    }

    /// One past the last address read.
    pub fn end(&self) -> u32 {
        u32::from(self.start) + u32::from(self.count)
    }
}

impl fmt::Display for Read {
    /// `read holding 200..=209 (FC 3)`: how logs and error messages name a read.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "read {} {}..={} (FC {})",
            self.table,
            self.start,
            self.end() - 1,
            self.function_code()
        )
    }
}

/// What the transport got back for one [`Read`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Response {
    /// FC 1/2. May be longer than the read's count (the wire pads to whole bytes).
    Bits(Vec<bool>),
    /// FC 3/4.
    Registers(Vec<u16>),
}

/// Where a point's value sits in the answers.
#[derive(Debug, Clone, PartialEq)]
struct Slot {
    point: Point,
    /// Index into [`Plan::reads`].
    read: usize,
    /// Address offset from the read's start.
    offset: u16,
}

/// The reads for one poll group, and how to take their answers apart.
#[derive(Debug, Clone, PartialEq)]
pub struct Plan {
    pub group: String,
    /// In table, then address order.
    pub reads: Vec<Read>,
    slots: Vec<Slot>,
}

#[derive(Debug, Clone, PartialEq, thiserror::Error)]
#[non_exhaustive]
pub enum PlanError {
    #[error("unknown modbus poll group `{0}`")]
    UnknownGroup(String),
}

/// Why answers could not be taken apart. All of these mean the transport or the device
/// misbehaved: a well-formed answer to a planned read always decodes.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
#[non_exhaustive]
pub enum DecodeError {
    #[error("{got} answers for a plan of {expected} reads")]
    ResponseCount { expected: usize, got: usize },
    #[error("{read}: answer has {got} values")]
    Short { read: Read, got: usize },
    #[error("{read}: answered with {got} instead")]
    WrongShape { read: Read, got: &'static str },
    #[error("no read #{0} in this plan")]
    NoSuchRead(usize),
    #[error(transparent)]
    Codec(#[from] CodecError),
}

/// The fewest reads that cover every point of `group`.
pub fn plan(map: &RegisterMap, group: &str) -> Result<Plan, PlanError> {
    if !map.poll_groups.contains_key(group) {
        return Err(PlanError::UnknownGroup(group.to_string()));
    }
    let mut points: Vec<&Point> = map.points.iter().filter(|p| p.poll == group).collect();
    // Stable: views of the same register keep profile order.
    points.sort_by_key(|p| (p.table, p.address));
    let mut plan = Plan {
        group: group.to_string(),
        reads: Vec::new(),
        slots: Vec::with_capacity(points.len()),
    };
    for point in points {
        let max = u32::from(map.max_per_read(point.table));
        let joins_last = plan.reads.last().is_some_and(|read| {
            read.table == point.table
                && u32::from(point.address) <= read.end() + u32::from(map.max_gap)
                && point.end().max(read.end()) - u32::from(read.start) <= max
        });
        if !joins_last {
            plan.reads.push(Read {
                table: point.table,
                start: point.address,
                count: 0,
            });
        }
        let index = plan.reads.len() - 1;
        let read = &mut plan.reads[index];
        // Fits in u16: validation keeps every point within one read's limit.
        read.count = (point.end().max(read.end()) - u32::from(read.start)) as u16;
        plan.slots.push(Slot {
            point: point.clone(),
            read: index,
            offset: point.address - read.start,
        });
    }
    Ok(plan)
}

impl Plan {
    /// Whether the group has no points (nothing to read).
    pub fn is_empty(&self) -> bool {
        self.reads.is_empty()
    }

    /// The points of one read with their values. Lets the caller publish what it has when
    /// another read of the same poll failed.
    pub fn decode_read(
        &self,
        index: usize,
        response: &Response,
    ) -> Result<Vec<(String, Value)>, DecodeError> {
        let read = *self
            .reads
            .get(index)
            .ok_or(DecodeError::NoSuchRead(index))?;
        let count = usize::from(read.count);
        let (data, got, shape): (Data<'_>, usize, &'static str) = match response {
            Response::Bits(bits) => (Data::Bits(bits), bits.len(), "bits"),
            Response::Registers(words) => (Data::Registers(words), words.len(), "registers"),
        };
        if read.table.is_bits() != matches!(data, Data::Bits(_)) {
            return Err(DecodeError::WrongShape { read, got: shape });
        }
        // Bit answers come in whole bytes, so extra bits are padding; extra registers are
        // not, but are as harmless.
        if got < count {
            return Err(DecodeError::Short { read, got });
        }
        self.slots
            .iter()
            .filter(|slot| slot.read == index)
            .map(|slot| {
                let range = usize::from(slot.offset)..usize::from(slot.offset + slot.point.width());
                let data = match data {
                    Data::Bits(bits) => Data::Bits(&bits[range]),
                    Data::Registers(words) => Data::Registers(&words[range]),
                };
                Ok((slot.point.name.clone(), codec::decode(&slot.point, data)?))
            })
            .collect()
    }
}

/// Every point of the plan with its value, from the answers to all its reads in order.
pub fn decode(plan: &Plan, responses: &[Response]) -> Result<Vec<(String, Value)>, DecodeError> {
    if responses.len() != plan.reads.len() {
        return Err(DecodeError::ResponseCount {
            expected: plan.reads.len(),
            got: responses.len(),
        });
    }
    let mut values = Vec::with_capacity(plan.slots.len());
    for (index, response) in responses.iter().enumerate() {
        values.extend(plan.decode_read(index, response)?);
    }
    Ok(values)
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::{Map, json};

    fn map(options: Value) -> RegisterMap {
        let Value::Object(options) = options else {
            panic!("not an object")
        };
        RegisterMap::from_options(&options).unwrap()
    }

    fn points(points: Value) -> RegisterMap {
        map(json!({ "points": points }))
    }

    fn reads(map: &RegisterMap) -> Vec<Read> {
        plan(map, "default").unwrap().reads
    }

    fn read(table: Table, start: u16, count: u16) -> Read {
        Read {
            table,
            start,
            count,
        }
    }

    /// `count` points of `type` starting at `start`, `step` apart.
    fn run(table: &str, kind: &str, start: u16, count: u16, step: u16) -> Vec<Value> {
        (0..count)
            .map(|i| {
                json!({ "name": format!("{table}{}", start + i * step), "table": table,
                        "address": start + i * step, "type": kind })
            })
            .collect()
    }

    #[test]
    fn eight_coils_are_one_read() {
        let map = points(Value::Array(run("coil", "bool", 0, 8, 1)));
        assert_eq!(reads(&map), [read(Table::Coil, 0, 8)]);
        assert_eq!(reads(&map)[0].function_code(), 1);
    }

    #[test]
    fn distant_blocks_are_separate_reads() {
        let mut list = run("holding", "u16", 0, 10, 1);
        list.extend(run("holding", "u16", 200, 10, 1));
        let map = points(Value::Array(list));
        assert_eq!(
            reads(&map),
            [read(Table::Holding, 0, 10), read(Table::Holding, 200, 10)]
        );
    }

    #[test]
    fn long_spans_split_at_the_read_limit() {
        let map = points(Value::Array(run("holding", "u16", 0, 300, 1)));
        assert_eq!(
            reads(&map),
            [
                read(Table::Holding, 0, 125),
                read(Table::Holding, 125, 125),
                read(Table::Holding, 250, 50),
            ]
        );
        // Points are never split: 2-register values end each read on a whole value.
        let map = points(Value::Array(run("input", "f32", 0, 100, 2)));
        assert_eq!(
            reads(&map),
            [read(Table::Input, 0, 124), read(Table::Input, 124, 76),]
        );
        let map = map_with(
            json!({ "max_registers_per_read": 10 }),
            run("input", "u32", 0, 10, 2),
        );
        assert_eq!(reads(&map).len(), 2);
        assert!(reads(&map).iter().all(|r| r.count == 10));
    }

    fn map_with(settings: Value, list: Vec<Value>) -> RegisterMap {
        let Value::Object(mut options) = settings else {
            panic!()
        };
        options.insert("points".into(), Value::Array(list));
        map(Value::Object(options))
    }

    #[test]
    fn bits_split_at_the_bit_limit() {
        let list = run("discrete_input", "bool", 0, 2500, 1);
        let map = points(Value::Array(list.clone()));
        assert_eq!(
            reads(&map),
            [
                read(Table::DiscreteInput, 0, 2000),
                read(Table::DiscreteInput, 2000, 500),
            ]
        );
        let map = map_with(json!({ "max_bits_per_read": 1000 }), list);
        assert_eq!(reads(&map).len(), 3);
    }

    #[test]
    fn gaps_merge_up_to_max_gap() {
        // Points at 0, 10 and 30: gaps of 9 and 19 registers.
        let list = vec![
            json!({ "name": "a", "table": "holding", "address": 0 }),
            json!({ "name": "b", "table": "holding", "address": 10 }),
            json!({ "name": "c", "table": "holding", "address": 30, "type": "u32" }),
        ];
        let reads_with = |gap: u16| reads(&map_with(json!({ "max_gap": gap }), list.clone()));
        assert_eq!(
            reads_with(0),
            [
                read(Table::Holding, 0, 1),
                read(Table::Holding, 10, 1),
                read(Table::Holding, 30, 2),
            ]
        );
        assert_eq!(reads_with(8).len(), 3, "default gap of 8 does not bridge 9");
        assert_eq!(
            reads_with(9),
            [read(Table::Holding, 0, 11), read(Table::Holding, 30, 2)]
        );
        assert_eq!(reads_with(19), [read(Table::Holding, 0, 32)]);
        // Contiguous points merge even with max_gap 0.
        let map = map_with(json!({ "max_gap": 0 }), run("coil", "bool", 0, 4, 1));
        assert_eq!(reads(&map), [read(Table::Coil, 0, 4)]);
    }

    #[test]
    fn tables_and_groups_are_read_separately() {
        let map = map(json!({
            "poll_groups": { "slow": "10s" },
            "points": [
                { "name": "h", "table": "holding", "address": 0 },
                { "name": "i", "table": "input", "address": 1 },
                { "name": "c", "table": "coil", "address": 0 },
                { "name": "d", "table": "discrete_input", "address": 0 },
                { "name": "h2", "table": "holding", "address": 1, "poll": "slow" },
            ]
        }));
        assert_eq!(
            reads(&map),
            [
                read(Table::Coil, 0, 1),
                read(Table::DiscreteInput, 0, 1),
                read(Table::Holding, 0, 1),
                read(Table::Input, 1, 1),
            ]
        );
        let slow = plan(&map, "slow").unwrap();
        assert_eq!(slow.reads, [read(Table::Holding, 1, 1)]);
        assert_eq!(
            plan(&map, "fast"),
            Err(PlanError::UnknownGroup("fast".into()))
        );
        let empty = map_with(
            json!({ "poll_groups": { "idle": "1m" } }),
            run("coil", "bool", 0, 1, 1),
        );
        assert!(plan(&empty, "idle").unwrap().is_empty());
    }

    #[test]
    fn views_of_one_register_share_it() {
        let map = points(json!([
            { "name": "status", "table": "input", "address": 5 },
            { "name": "fault", "table": "input", "address": 5, "bit": 0 },
            { "name": "overload", "table": "input", "address": 5, "bit": 3 },
            { "name": "next", "table": "input", "address": 6 },
        ]));
        let plan = plan(&map, "default").unwrap();
        assert_eq!(plan.reads, [read(Table::Input, 5, 2)]);
        let values = decode(&plan, &[Response::Registers(vec![0b1001, 7])]).unwrap();
        assert_eq!(
            values,
            [
                ("status".to_string(), json!(9)),
                ("fault".to_string(), json!(true)),
                ("overload".to_string(), json!(true)),
                ("next".to_string(), json!(7)),
            ]
        );
    }

    #[test]
    fn answers_decode_into_point_values() {
        let map = points(json!([
            { "name": "outlet1", "table": "coil", "address": 0 },
            { "name": "outlet3", "table": "coil", "address": 2 },
            { "name": "volts", "table": "input", "address": 0, "scale": 0.1 },
            { "name": "amps", "table": "input", "address": 4, "type": "f32", "order": "CDAB" },
            { "name": "model", "table": "holding", "address": 100, "type": "string", "length": 2 },
        ]));
        let plan = plan(&map, "default").unwrap();
        assert_eq!(
            plan.reads,
            [
                read(Table::Coil, 0, 3),
                read(Table::Holding, 100, 2),
                read(Table::Input, 0, 6),
            ]
        );
        let responses = [
            // Padded to a whole byte, as the wire does.
            Response::Bits(vec![true, true, false, false, false, false, false, false]),
            Response::Registers(vec![0x5053, 0x3800]),
            Response::Registers(vec![2301, 0, 0, 0, 0x0000, 0x41B4]),
        ];
        let values: Map<String, Value> = decode(&plan, &responses).unwrap().into_iter().collect();
        assert_eq!(
            Value::Object(values),
            json!({ "outlet1": true, "outlet3": false, "volts": 230.1, "amps": 22.5, "model": "PS8" })
        );
        assert_eq!(
            plan.decode_read(1, &responses[1]).unwrap(),
            [("model".to_string(), json!("PS8"))]
        );
    }

    #[test]
    fn bad_answers_are_reported() {
        let map = points(json!([
            { "name": "a", "table": "holding", "address": 0, "type": "u32" },
            { "name": "c", "table": "coil", "address": 0 },
        ]));
        let plan = plan(&map, "default").unwrap();
        let ok = [Response::Bits(vec![true]), Response::Registers(vec![0, 1])];
        assert_eq!(decode(&plan, &ok).unwrap().len(), 2);
        assert_eq!(
            decode(&plan, &ok[..1]),
            Err(DecodeError::ResponseCount {
                expected: 2,
                got: 1
            })
        );
        let short = plan
            .decode_read(1, &Response::Registers(vec![0]))
            .unwrap_err();
        assert_eq!(
            short.to_string(),
            "read holding 0..=1 (FC 3): answer has 1 values"
        );
        assert!(matches!(
            plan.decode_read(0, &Response::Registers(vec![0])),
            Err(DecodeError::WrongShape { .. })
        ));
        assert_eq!(plan.decode_read(2, &ok[0]), Err(DecodeError::NoSuchRead(2)));
    }
}
