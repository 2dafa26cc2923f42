//! Modbus TCP and RTU, driven by a register map the device profile declares: power
//! sequencers, PDUs, HVAC and lighting gateways, PLCs, anything that exposes its state as
//! coils and registers.
//!
//! Unlike the other families there is no fixed command set: the profile lists the points
//! (which table, which address, which type), and the driver reads them in poll groups and
//! writes the writable ones. This module is the pure part of that, with no I/O:
//!
//! - [`map`]: the profile's register map ([`RegisterMap`]), read from `[options]` and
//!   checked at load time, with errors naming the point and field to fix. The module docs
//!   there explain addresses ("40001" is holding 0) and the four word orders.
//! - [`codec`]: registers and bits to JSON values and back, for every type and word order,
//!   with scale, offset and enum names.
//! - [`plan`]: the fewest reads that cover a poll group ([`plan::plan`]), and taking the
//!   answers apart into point values ([`plan::decode`]).
//! - [`write`](mod@write): which function a write uses (FC 5/6/15/16, or a read-modify-write for a bit
//!   of a register), and what exception codes mean ([`write::Exception`]).
//!
//! Not here yet: the session and transport. Modbus framing is left to tokio-modbus (TCP,
//! and RTU on a serial bus whose one owner task serialises requests for every device on
//! it), so the session will turn [`plan::Read`]s and [`write::WritePlan`]s into
//! tokio-modbus calls with a timeout each, retry exception 06 with a backoff, and publish
//! what [`plan::decode`] returns. The `DriverInfo` comes with it.
//!
//! # Profile example
//!
//! ```toml
//! driver = "modbus"
//!
//! [options]
//! poll_groups = { fast = "500ms", slow = "10s" }
//!
//! [[options.points]]
//! name = "outlet1"
//! table = "coil"
//! address = 0           # 00001
//! writable = true
//!
//! [[options.points]]
//! name = "current1"
//! table = "input"
//! address = 100         # 30101
//! type = "f32"
//! order = "CDAB"
//! unit = "A"
//! poll = "fast"
//!
//! [[options.points]]
//! name = "voltage"
//! table = "input"
//! address = 0           # 30001
//! scale = 0.1
//! unit = "V"
//! poll = "slow"
//!
//! [[options.points]]
//! name = "overcurrent"
//! table = "input"
//! address = 1           # 30002, bit 0
//! bit = 0
//! ```

pub mod codec;
pub mod map;
pub mod plan;
pub mod write;

pub use map::{MapError, Point, RegisterMap};
pub use plan::{Plan, Read, Response};
pub use write::{Exception, WritePlan, WriteRequest};

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::{Value, json};

    /// The power sequencer from the report: 8 outlet coils, a current per outlet, the mains
    /// voltage and a fault word, read and written end to end through the pure pieces.
    fn sequencer() -> RegisterMap {
        let mut points = Vec::new();
        for i in 0..8u16 {
            points.push(json!({ "name": format!("outlet{}", i + 1), "table": "coil",
                                "address": i, "writable": true }));
            points.push(
                json!({ "name": format!("current{}", i + 1), "table": "input",
                                "address": 100 + 2 * i, "type": "f32", "unit": "A",
                                "poll": "fast" }),
            );
        }
        points.push(json!({ "name": "voltage", "table": "input", "address": 0,
                            "scale": 0.1, "unit": "V" }));
        for (bit, name) in ["overcurrent", "overtemp", "surge"].iter().enumerate() {
            points.push(json!({ "name": name, "table": "input", "address": 1, "bit": bit }));
        }
        let Value::Object(options) = json!({
            "poll_groups": { "fast": "500ms" },
            "points": points,
        }) else {
            unreachable!()
        };
        RegisterMap::from_options(&options).unwrap()
    }

    #[test]
    fn a_power_sequencer_polls_in_three_reads() {
        let map = sequencer();
        let default = plan::plan(&map, "default").unwrap();
        assert_eq!(default.reads.len(), 2, "{:?}", default.reads);
        let fast = plan::plan(&map, "fast").unwrap();
        assert_eq!(
            fast.reads,
            [Read {
                table: map::Table::Input,
                start: 100,
                count: 16
            }]
        );
        let values = plan::decode(
            &default,
            &[
                Response::Bits(vec![true, false, true, false, false, false, false, true]),
                Response::Registers(vec![2304, 0b101]),
            ],
        )
        .unwrap();
        let find = |name: &str| values.iter().find(|(n, _)| n == name).unwrap().1.clone();
        assert_eq!(find("outlet3"), json!(true));
        assert_eq!(find("outlet8"), json!(true));
        assert_eq!(find("outlet2"), json!(false));
        assert_eq!(find("voltage"), json!(230.4));
        assert_eq!(find("overcurrent"), json!(true));
        assert_eq!(find("overtemp"), json!(false));
        assert_eq!(find("surge"), json!(true));
    }

    #[test]
    fn a_power_sequencer_outlet_is_one_coil_write() {
        let map = sequencer();
        let plan = write::plan_write(map.point("outlet4").unwrap(), &json!(false)).unwrap();
        assert_eq!(
            plan,
            WritePlan::Direct(WriteRequest::SingleCoil {
                address: 3,
                value: false
            })
        );
        let error = write::plan_write(map.point("voltage").unwrap(), &json!(230)).unwrap_err();
        assert_eq!(error.kind, crate::DeviceErrorKind::Unsupported);
    }
}
