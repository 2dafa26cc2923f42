//! The device's declared shape, as a check on what its driver reports.
//!
//! A profile's pattern points (`route.*`) stand for one point per output; a device that
//! reports outputs (or inputs) it was never declared to have is lying or broken, and each
//! such point would be a new entry in every snapshot. A rogue switcher reporting ties for
//! 20,000 outputs must not grow the state by 40,000 points, so points numbered beyond the
//! device's `outputs` option, and routes to an input beyond its `inputs`, are dropped with
//! a warning.

use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use avgate_drivers::{Map, Value};
use tokio::time::Instant;
use tracing::{debug, warn};

/// At most one warning per device per this interval; the rest are debug lines.
const WARN_EVERY: Duration = Duration::from_secs(60);

/// Point families whose value is an input number (0 = nothing).
const ROUTES: &[&str] = &["route", "audio_route"];

pub struct Shape {
    outputs: Option<u64>,
    inputs: Option<u64>,
    /// Points refused since the last warning.
    refused: AtomicU64,
    /// Milliseconds after `start` of the last warning (0: none yet).
    warned_at: AtomicU64,
    start: Instant,
}

impl Shape {
    /// The shape a device's driver options declare (`outputs`, `inputs`); without them,
    /// nothing is refused.
    pub fn of(options: &Map<String, Value>) -> Shape {
        let count = |key| options.get(key).and_then(Value::as_u64);
        Shape {
            outputs: count("outputs"),
            inputs: count("inputs"),
            refused: AtomicU64::new(0),
            warned_at: AtomicU64::new(0),
            start: Instant::now(),
        }
    }

    /// Whether `point` = `value` fits the device; logs (sparingly) when it does not.
    pub fn admits(&self, device: &str, point: &str, value: &Value) -> bool {
        let Some(why) = self.outside(point, value) else {
            return true;
        };
        let refused = self.refused.fetch_add(1, Ordering::Relaxed) + 1;
        let now = self.start.elapsed().as_millis() as u64 + 1;
        let last = self.warned_at.load(Ordering::Relaxed);
        if (last == 0 || now - last >= WARN_EVERY.as_millis() as u64)
            && self
                .warned_at
                .compare_exchange(last, now, Ordering::Relaxed, Ordering::Relaxed)
                .is_ok()
        {
            self.refused.store(0, Ordering::Relaxed);
            warn!(
                device,
                point,
                refused,
                "the device reported {why}; such points are dropped (check the profile's inputs/outputs options, or the device)"
            );
        } else {
            debug!(device, point, "dropped: {why}");
        }
        false
    }

    fn outside(&self, point: &str, value: &Value) -> Option<String> {
        let (family, number) = point.rsplit_once('.')?;
        let output: u64 = number.parse().ok()?;
        if let Some(outputs) = self.outputs
            && (output == 0 || output > outputs)
        {
            return Some(format!(
                "output {output}, but it is declared with {outputs} output(s)"
            ));
        }
        if let (Some(inputs), true) = (self.inputs, ROUTES.contains(&family))
            && let Some(input) = value.as_u64()
            && input > inputs
        {
            return Some(format!(
                "input {input} on output {output}, but it is declared with {inputs} input(s)"
            ));
        }
        None
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[tokio::test]
    async fn points_beyond_the_declared_outputs_and_inputs_are_refused() {
        let Value::Object(options) = json!({"inputs": 8, "outputs": 4, "volume_max": 64}) else {
            unreachable!()
        };
        let shape = Shape::of(&options);
        assert!(shape.admits("sw", "route.4", &json!(8)));
        assert!(shape.admits("sw", "route.1", &json!(0)), "0 = nothing tied");
        assert!(
            shape.admits("sw", "volume.2", &json!(64)),
            "volume is not an input"
        );
        assert!(shape.admits("sw", "firmware", &json!("1.2")));
        assert!(!shape.admits("sw", "route.5", &json!(1)));
        assert!(!shape.admits("sw", "audio_mute.20000", &json!(true)));
        assert!(!shape.admits("sw", "route.0", &json!(1)));
        assert!(!shape.admits("sw", "audio_route.2", &json!(9)));
        let free = Shape::of(&Map::new());
        assert!(
            free.admits("proj", "route.20000", &json!(99)),
            "no declared shape"
        );
    }
}
