//! What the load generator answers, without sockets or clocks: its points and its rate.

use super::frame::{FromDevice, ToDevice};

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Model {
    /// The last value of every point, `value.0` first.
    pub values: Vec<i64>,
    /// Events published per second (0: quiet).
    pub rate: u64,
}

impl Model {
    pub fn new(points: u32, rate: u64) -> Model {
        Model {
            values: vec![0; points as usize],
            rate,
        }
    }

    /// The device's answer to one request line, as bytes to send.
    pub fn answer(&mut self, line: &str) -> String {
        let reply = match ToDevice::parse(line) {
            Ok(ToDevice::Set { point, value }) => match self.values.get_mut(point as usize) {
                Some(slot) => {
                    *slot = value;
                    let event = FromDevice::Event { point, value }.encode();
                    return event + &FromDevice::Ok.encode();
                }
                None => FromDevice::Err(format!(
                    "no point {point}: this device has value.0 to value.{}",
                    self.values.len().saturating_sub(1)
                )),
            },
            Ok(ToDevice::SetRate(n)) => {
                self.rate = n;
                FromDevice::Rate(n)
            }
            Ok(ToDevice::QueryRate) => FromDevice::Rate(self.rate),
            Err(why) => FromDevice::Err(why),
        };
        reply.encode()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn set_reads_back_then_confirms() {
        let mut model = Model::new(2, 0);
        assert_eq!(model.answer("SET 1 7"), "EV 1 7\nOK\n");
        assert_eq!(model.values, [0, 7]);
    }

    #[test]
    fn a_point_out_of_range_is_an_error_naming_the_range() {
        let mut model = Model::new(2, 0);
        assert_eq!(
            model.answer("SET 2 7"),
            "ERR no point 2: this device has value.0 to value.1\n"
        );
    }

    #[test]
    fn rate_is_kept_and_reported() {
        let mut model = Model::new(1, 10);
        assert_eq!(model.answer("RATE?"), "RATE 10\n");
        assert_eq!(model.answer("RATE 250"), "RATE 250\n");
        assert_eq!(model.rate, 250);
        assert!(model.answer("WHAT").starts_with("ERR "));
    }
}
