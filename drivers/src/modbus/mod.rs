//! Modbus TCP and RTU, driven by a register map the device profile declares: power
//! sequencers, PDUs, HVAC and lighting gateways, PLCs, anything that exposes its state as
//! coils and registers.
//!
//! Unlike the other families there is no fixed command set: the profile lists the points
//! (which table, which address, which type), and the driver reads them in poll groups and
//! writes the writable ones. The pure part of that, with no I/O:
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
//! On top of those, the parts that talk:
//!
//! - [`frame`]: request PDUs, Modbus TCP (MBAP) and RTU (CRC) framing, and a reader that
//!   tells when a response is complete and whether it answers the request in flight.
//! - [`session`]: the client ([`Session`]), a sans-IO [`crate::Protocol`] driven by the
//!   gateway's device runtime, which owns the socket or serial port, the per-request
//!   timeout and the RTU inter-frame gap ([`frame::rtu_silence`]). Its options and
//!   requests are documented there.
//! - [`catalog`](mod@catalog): the driver's catalog computed from the map: points, the
//!   `write` command, a query per poll group.
//! - [`model`]: the device side, a register bank laid out by the map.
//! - [`simulator`]: the model served by tokio-modbus's server over TCP and over RTU on a
//!   pseudo-terminal, for tests and demos.
//!
//! Points and poll groups come from the profile's map, so the catalog is computed from the
//! options ([`catalog::catalog`]); on a serial line the driver forces RTU framing and its
//! inter-frame silence ([`link`]). Each poll group is a query
//! (`Request::Poll { query: "fast" }`); the one command is `write` with `point` and
//! `value`.
//!
//! # Profile example
//!
//! ```toml
//! driver = "modbus"
//!
//! [options]
//! framing = "tcp"       # or "rtu"; see session::Options for unit, busy_retries, ...
//! unit = 1
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

pub mod catalog;
mod cli;
pub mod codec;
pub mod frame;
pub mod map;
pub mod model;
pub mod plan;
pub mod reporting;
pub mod session;
pub mod simulator;
pub mod write;

pub use frame::{Framing, rtu_silence};
pub use map::{MapError, Point, RegisterMap};
pub use plan::{Plan, Read, Response};
pub use session::{Options, Session};
pub use write::{Exception, WritePlan, WriteRequest};

use crate::{DriverInfo, LinkKind, LinkTuning};

/// The Modbus driver as profiles name it (`driver = "modbus"`). Its points and queries
/// (poll groups) come from the profile's register map: see [`catalog::catalog`].
pub const DRIVER: DriverInfo = DriverInfo {
    name: "modbus",
    catalog: catalog::catalog,
    build: session::build,
    link,
    simulator: Some(cli::SIMULATOR),
};

/// Modbus on a serial line is RTU, whatever the profile's network default, and keeps
/// RTU's silence of 3.5 characters between frames. A serial line never closes by itself;
/// a Modbus TCP gateway may close an idle connection.
pub fn link(kind: LinkKind) -> LinkTuning {
    match kind {
        LinkKind::Serial { baud } => LinkTuning {
            options: serde_json::Map::from_iter([("framing".to_string(), "rtu".into())]),
            min_gap: rtu_silence(baud),
            idle_close: false,
        },
        LinkKind::Network => crate::plain_link(kind),
    }
}

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
