//! The device side of Modbus, sans-IO: a register bank laid out by a [`RegisterMap`], as a
//! PDU, a PLC or a lighting gateway would hold it.
//!
//! Each table spans from the lowest to the highest address the map uses in it (gaps
//! between points read as zero, as on most devices whose registers come in blocks);
//! anything outside is exception 02, and a table the map does not use has no addresses at
//! all. Every value starts at zero. Front-panel changes go through [`Model::set_point`],
//! with the same codec the client decodes with, so a test states values as points.
//!
//! For fault injection the model can answer the next request with an exception
//! ([`Model::fail_next`]) or leave the next requests unanswered ([`Model::silence`]).

use std::ops::Range;

use serde_json::Value;

use super::codec::{self, Data, Encoded};
use super::frame::Operation;
use super::map::{Kind, MAX_BITS_PER_READ, MAX_REGISTERS_PER_READ, Point, RegisterMap, Table};
use super::plan::Read;
use super::write::{Exception, WriteRequest};

/// What the device does with a request.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Answer {
    /// FC 1 or 2: the bits asked for.
    Bits(Vec<bool>),
    /// FC 3 or 4: the registers asked for.
    Registers(Vec<u16>),
    /// FC 5, 6, 15 or 16 done; the reply echoes the request.
    Written,
    Exception(Exception),
    /// No reply at all (a fault injected with [`Model::silence`]).
    Silent,
}

/// One table's addresses, `start..start + values.len()`.
#[derive(Debug, Clone, Default)]
struct Bank<T> {
    start: u16,
    values: Vec<T>,
}

impl<T: Clone + Default> Bank<T> {
    /// A bank covering every address the map's points in `table` occupy.
    fn for_table(map: &RegisterMap, table: Table) -> Bank<T> {
        let points = map.points.iter().filter(|p| p.table == table);
        let start = points.clone().map(|p| p.address).min();
        let end = points.map(Point::end).max();
        match (start, end) {
            (Some(start), Some(end)) => Bank {
                start,
                values: vec![T::default(); (end - u32::from(start)) as usize],
            },
            _ => Bank::default(),
        }
    }

    /// Indexes of `count` addresses from `address`, if all exist.
    fn range(&self, address: u16, count: usize) -> Option<Range<usize>> {
        let first = usize::from(address.checked_sub(self.start)?);
        let end = first + count;
        (end <= self.values.len()).then_some(first..end)
    }
}

/// A simulated device's tables, with request counting and fault injection.
#[derive(Debug, Clone)]
pub struct Model {
    map: RegisterMap,
    coils: Bank<bool>,
    discrete_inputs: Bank<bool>,
    holding: Bank<u16>,
    input: Bank<u16>,
    requests: usize,
    fail_next: Option<Exception>,
    silent: usize,
}

impl Model {
    pub fn new(map: RegisterMap) -> Model {
        Model {
            coils: Bank::for_table(&map, Table::Coil),
            discrete_inputs: Bank::for_table(&map, Table::DiscreteInput),
            holding: Bank::for_table(&map, Table::Holding),
            input: Bank::for_table(&map, Table::Input),
            map,
            requests: 0,
            fail_next: None,
            silent: 0,
        }
    }

    pub fn map(&self) -> &RegisterMap {
        &self.map
    }

    /// Requests received so far, answered or not.
    pub fn requests_received(&self) -> usize {
        self.requests
    }

    /// Answers the next request with `exception` instead of doing it.
    pub fn fail_next(&mut self, exception: Exception) {
        self.fail_next = Some(exception);
    }

    /// Leaves the next `count` requests unanswered.
    pub fn silence(&mut self, count: usize) {
        self.silent = count;
    }

    /// Counts the request and applies an injected fault, if any is pending.
    fn fault(&mut self) -> Option<Answer> {
        self.requests += 1;
        if self.silent > 0 {
            self.silent -= 1;
            return Some(Answer::Silent);
        }
        self.fail_next.take().map(Answer::Exception)
    }

    /// A function the model does not implement: exception 01.
    pub fn unsupported(&mut self) -> Answer {
        self.fault()
            .unwrap_or(Answer::Exception(Exception::IllegalFunction))
    }

    /// Performs a read or write as the device would.
    pub fn answer(&mut self, operation: &Operation) -> Answer {
        if let Some(fault) = self.fault() {
            return fault;
        }
        let result = match operation {
            Operation::Read(read) => self.read(read),
            Operation::Write(write) => self.write(write).map(|()| Answer::Written),
        };
        result.unwrap_or_else(Answer::Exception)
    }

    fn read(&self, read: &Read) -> Result<Answer, Exception> {
        let limit = if read.table.is_bits() {
            MAX_BITS_PER_READ
        } else {
            MAX_REGISTERS_PER_READ
        };
        if read.count == 0 || read.count > limit {
            return Err(Exception::IllegalDataValue);
        }
        let count = usize::from(read.count);
        let bits = |bank: &Bank<bool>| {
            bank.range(read.start, count)
                .map(|r| Answer::Bits(bank.values[r].to_vec()))
        };
        let registers = |bank: &Bank<u16>| {
            bank.range(read.start, count)
                .map(|r| Answer::Registers(bank.values[r].to_vec()))
        };
        match read.table {
            Table::Coil => bits(&self.coils),
            Table::DiscreteInput => bits(&self.discrete_inputs),
            Table::Holding => registers(&self.holding),
            Table::Input => registers(&self.input),
        }
        .ok_or(Exception::IllegalDataAddress)
    }

    fn write(&mut self, write: &WriteRequest) -> Result<(), Exception> {
        let address = write.address();
        match write {
            WriteRequest::SingleCoil { value, .. } => {
                store(&mut self.coils, address, std::slice::from_ref(value))
            }
            WriteRequest::MultipleCoils { values, .. } => store(&mut self.coils, address, values),
            WriteRequest::SingleRegister { value, .. } => {
                store(&mut self.holding, address, std::slice::from_ref(value))
            }
            WriteRequest::MultipleRegisters { values, .. } => {
                store(&mut self.holding, address, values)
            }
        }
    }

    /// Sets a point as the device's own front panel or sensors would, read-only tables
    /// included.
    pub fn set_point(&mut self, name: &str, value: &Value) -> Result<(), String> {
        let point = self
            .map
            .point(name)
            .ok_or_else(|| format!("no point `{name}` in the register map"))?
            .clone();
        let address_error =
            || format!("point `{name}` lies outside the simulated tables (a bug in the model)");
        match (
            codec::encode(&point, value).map_err(|e| e.to_string())?,
            point.kind,
        ) {
            (Encoded::Bit(on), Kind::Bit(bit)) => {
                let bank = self.registers_mut(point.table);
                let range = bank.range(point.address, 1).ok_or_else(address_error)?;
                let mask = 1u16 << bit;
                let mask = if point.order.swaps_bytes() {
                    mask.swap_bytes()
                } else {
                    mask
                };
                let word = &mut bank.values[range.start];
                *word = if on { *word | mask } else { *word & !mask };
                Ok(())
            }
            (Encoded::Bit(on), _) => {
                let bank = match point.table {
                    Table::DiscreteInput => &mut self.discrete_inputs,
                    _ => &mut self.coils,
                };
                store(bank, point.address, &[on]).map_err(|_| address_error())
            }
            (Encoded::Registers(words), _) => {
                store(self.registers_mut(point.table), point.address, &words)
                    .map_err(|_| address_error())
            }
        }
    }

    /// A point's value as the device holds it now.
    pub fn point(&self, name: &str) -> Option<Value> {
        let point = self.map.point(name)?;
        let count = usize::from(point.width());
        let data = match point.table {
            Table::Coil => Data::Bits(&self.coils.values[self.coils.range(point.address, count)?]),
            Table::DiscreteInput => Data::Bits(
                &self.discrete_inputs.values[self.discrete_inputs.range(point.address, count)?],
            ),
            Table::Holding => {
                Data::Registers(&self.holding.values[self.holding.range(point.address, count)?])
            }
            Table::Input => {
                Data::Registers(&self.input.values[self.input.range(point.address, count)?])
            }
        };
        codec::decode(point, data).ok()
    }

    fn registers_mut(&mut self, table: Table) -> &mut Bank<u16> {
        match table {
            Table::Input => &mut self.input,
            _ => &mut self.holding,
        }
    }
}

fn store<T: Clone + Default>(
    bank: &mut Bank<T>,
    address: u16,
    values: &[T],
) -> Result<(), Exception> {
    let range = bank
        .range(address, values.len())
        .ok_or(Exception::IllegalDataAddress)?;
    bank.values[range].clone_from_slice(values);
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn model() -> Model {
        let Value::Object(options) = json!({ "points": [
            { "name": "outlet1", "table": "coil", "address": 0, "writable": true },
            { "name": "outlet2", "table": "coil", "address": 1, "writable": true },
            { "name": "door", "table": "discrete_input", "address": 5 },
            { "name": "current", "table": "input", "address": 100, "type": "f32", "order": "CDAB" },
            { "name": "voltage", "table": "input", "address": 104, "scale": 0.1 },
            { "name": "mode", "table": "holding", "address": 10, "writable": true },
            { "name": "alarm", "table": "holding", "address": 11, "bit": 2, "order": "BADC" },
        ]}) else {
            unreachable!()
        };
        Model::new(RegisterMap::from_options(&options).unwrap())
    }

    fn read(table: Table, start: u16, count: u16) -> Operation {
        Operation::Read(Read {
            table,
            start,
            count,
        })
    }

    #[test]
    fn reads_cover_the_mapped_span_and_nothing_else() {
        let mut model = model();
        model.set_point("current", &json!(22.5)).unwrap();
        model.set_point("voltage", &json!(230.4)).unwrap();
        assert_eq!(
            model.answer(&read(Table::Input, 100, 5)),
            Answer::Registers(vec![0, 0x41B4, 0, 0, 2304]),
            "gaps inside the span read as zero"
        );
        for (table, start, count) in [
            (Table::Input, 99, 2),
            (Table::Input, 104, 2),
            (Table::Holding, 0, 1),
            (Table::Coil, 2, 1),
            (Table::DiscreteInput, 0, 1),
        ] {
            assert_eq!(
                model.answer(&read(table, start, count)),
                Answer::Exception(Exception::IllegalDataAddress),
                "{table} {start}+{count}"
            );
        }
        assert_eq!(
            model.answer(&read(Table::Input, 100, 126)),
            Answer::Exception(Exception::IllegalDataValue)
        );
        assert_eq!(
            model.unsupported(),
            Answer::Exception(Exception::IllegalFunction)
        );
        assert_eq!(model.requests_received(), 8);
    }

    #[test]
    fn writes_change_what_reads_and_points_return() {
        let mut model = model();
        let write = |request| Operation::Write(request);
        assert_eq!(
            model.answer(&write(WriteRequest::SingleCoil {
                address: 1,
                value: true
            })),
            Answer::Written
        );
        assert_eq!(model.point("outlet2"), Some(json!(true)));
        assert_eq!(
            model.answer(&write(WriteRequest::MultipleCoils {
                address: 0,
                values: vec![true, false]
            })),
            Answer::Written
        );
        assert_eq!(
            model.answer(&read(Table::Coil, 0, 2)),
            Answer::Bits(vec![true, false])
        );
        assert_eq!(
            model.answer(&write(WriteRequest::SingleRegister {
                address: 10,
                value: 7
            })),
            Answer::Written
        );
        assert_eq!(model.point("mode"), Some(json!(7)));
        assert_eq!(
            model.answer(&write(WriteRequest::MultipleRegisters {
                address: 11,
                values: vec![1, 2]
            })),
            Answer::Exception(Exception::IllegalDataAddress),
            "runs past the last mapped register"
        );
        assert_eq!(
            model.point("mode"),
            Some(json!(7)),
            "a refused write changes nothing"
        );
    }

    #[test]
    fn front_panel_changes_use_the_points_encoding() {
        let mut model = model();
        model.set_point("alarm", &json!(true)).unwrap();
        assert_eq!(
            model.answer(&read(Table::Holding, 11, 1)),
            Answer::Registers(vec![0x0400]),
            "bit 2 of a byte-swapped register"
        );
        assert_eq!(model.point("alarm"), Some(json!(true)));
        model.set_point("door", &json!(true)).unwrap();
        assert_eq!(
            model.answer(&read(Table::DiscreteInput, 5, 1)),
            Answer::Bits(vec![true])
        );
        assert!(
            model
                .set_point("nope", &json!(1))
                .unwrap_err()
                .contains("`nope`")
        );
        assert!(model.set_point("mode", &json!("x")).is_err());
    }

    #[test]
    fn faults_apply_to_the_next_requests() {
        let mut model = model();
        model.fail_next(Exception::ServerDeviceBusy);
        assert_eq!(
            model.answer(&read(Table::Coil, 0, 1)),
            Answer::Exception(Exception::ServerDeviceBusy)
        );
        assert_eq!(
            model.answer(&read(Table::Coil, 0, 1)),
            Answer::Bits(vec![false])
        );
        model.silence(2);
        assert_eq!(model.answer(&read(Table::Coil, 0, 1)), Answer::Silent);
        assert_eq!(model.unsupported(), Answer::Silent);
        assert_eq!(
            model.answer(&read(Table::Coil, 0, 1)),
            Answer::Bits(vec![false])
        );
        assert_eq!(model.requests_received(), 5);
    }
}
